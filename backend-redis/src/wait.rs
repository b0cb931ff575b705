//! The one wait loop every blocking operation runs (a receive, a send to a full channel, a lock,
//! a permit, an event, a barrier), blocking and `_async` alike.
//!
//! Each round runs the operation's attempt (one script: atomic on the server) and reads what it
//! found:
//!
//! - done: the wait ends with the result;
//! - not yet: subscribe to the object's wake-up channel (`uc:{<id>}:w`) the first time, then
//!   check again at once (a wake-up published before the subscription would be missed
//!   otherwise); afterwards sleep until a wake-up, [`POLL`](crate::conn::POLL) (250 ms: a
//!   missed wake-up costs at most that), the deadline, or cancellation. If this process
//!   stops listening to the channel meanwhile (its last handle of one side of a channel
//!   dropped), the next round subscribes again. [`wait_until_asking`] takes the wake-up
//!   receiver before the first attempt when this process already listens to the channel,
//!   so that a first attempt that finds "not yet" sleeps at once, without the re-check;
//! - a transient failure (the server unreachable): back off and retry, until the deadline.
//!
//! A deadline that has passed, or a cancelled `_async` call, ends the wait without a result.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::conn::{self, Cancel, Live, POLL, backoff, expired};

/// Naps that a wake-up ended, in this process.
static WOKEN: AtomicU64 = AtomicU64::new(0);
/// Naps that ran their whole [`POLL`] without a wake-up, in this process.
static POLLED: AtomicU64 = AtomicU64::new(0);

/// (naps ended by a wake-up, naps that ran their whole [`POLL`] without one) in this process
/// so far (for `testing::wait_counts`).
#[cfg(feature = "testing")]
pub(crate) fn counts() -> (u64, u64) {
    // Relaxed: two statistics counters, read for a report; nothing is published with them.
    (
        WOKEN.load(Ordering::Relaxed),
        POLLED.load(Ordering::Relaxed),
    )
}

/// What one attempt of a wait found.
pub(crate) enum Attempt<T> {
    /// Finished: the wait returns this.
    Done(T),
    /// Not yet: sleep until a wake-up.
    Wait,
    /// Not yet, and a wake-up may never come: sleep at most this long (a lock whose holder's
    /// lease runs out publishes nothing).
    WaitAtMost(Duration),
    /// A transient failure: back off and try again.
    Retry,
}

/// Runs `attempt` until it is [`Attempt::Done`], waking on the wake-up channel `wake`.
/// `Ok(None)` when `deadline` passes or `cancel` is set first; an error from `attempt` ends the
/// wait at once.
pub(crate) async fn wait_until<T, E, F, Fut>(
    live: &Live,
    wake: &str,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
    attempt: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, E>>,
{
    wait(live, wake, deadline, cancel, false, attempt).await
}

/// As [`wait_until`], for an `attempt` that asks the server every time (never answers "not
/// yet" from what its caller saw before the wait began, as a channel's first attempt after the
/// caller's own check does). When this process already listens to `wake`, the receiver is
/// taken before the first attempt: a wake-up published after that attempt ran on the server
/// reaches it, so "not yet" sleeps at once instead of checking again first: one round trip
/// less per wait. (The receiver may then see this process's own last release, published just
/// before, and wake once for nothing.)
pub(crate) async fn wait_until_asking<T, E, F, Fut>(
    live: &Live,
    wake: &str,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
    attempt: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, E>>,
{
    wait(live, wake, deadline, cancel, true, attempt).await
}

/// [`wait_until`], or with `early` [`wait_until_asking`].
async fn wait<T, E, F, Fut>(
    live: &Live,
    wake: &str,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
    early: bool,
    mut attempt: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, E>>,
{
    // Taken before the first attempt (no round trip: only if the subscription is already
    // acknowledged), so that the attempt's "not yet" is as good as a check after subscribing.
    let mut waker = if early {
        live.subscribed_waker(wake)
    } else {
        None
    };
    loop {
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Ok(None);
        }
        let at_most = match attempt().await? {
            Attempt::Done(t) => return Ok(Some(t)),
            Attempt::Wait => None,
            Attempt::WaitAtMost(left) => Some(left),
            Attempt::Retry => {
                if expired(deadline) {
                    return Ok(None);
                }
                backoff(deadline).await;
                continue;
            }
        };
        if expired(deadline) {
            return Ok(None);
        }
        match &mut waker {
            None => match live.waker(wake).await {
                // Subscribed now: check again before sleeping, a wake-up may have been missed.
                Ok(w) => waker = Some(w),
                Err(_) => backoff(deadline).await,
            },
            Some(w) => {
                let until = match at_most {
                    None => deadline,
                    Some(left) => {
                        let at = Instant::now() + left + Duration::from_millis(1);
                        Some(deadline.map_or(at, |d| d.min(at)))
                    }
                };
                // A wake-up that came during the attempt ends the nap at once. (Read in this
                // order, a wake-up arriving in between counts: it changes the value after
                // `seen`, or it is `pending`.)
                let seen = *w.borrow();
                let pending = w.has_changed().unwrap_or(false);
                let full = until.is_none_or(|u| u >= Instant::now() + POLL);
                match cancel {
                    Some(c) => c.nap(w, until).await,
                    None => conn::nap(w, until).await,
                }
                let closed = w.has_changed().is_err();
                // Relaxed: statistics counters (see `counts`).
                if pending || *w.borrow() != seen {
                    WOKEN.fetch_add(1, Ordering::Relaxed);
                } else if full && !closed && !cancel.is_some_and(Cancel::is_cancelled) {
                    POLLED.fetch_add(1, Ordering::Relaxed);
                }
                // This process stopped listening to the channel meanwhile (its last handle of
                // the object's other side was dropped): the closed receiver would end every
                // nap at once. Subscribe again at the next round (and check again after it).
                if closed {
                    waker = None;
                }
            }
        }
    }
}
