//! Select over Redis channels: [`RedisSelector`], and the [`SelectRecv`] / [`SelectSend`]
//! implementations of [`Receiver`] and [`Sender`], so that `uniconc::select!` and
//! [`Select`](uniconc_core::select::Select) wait on several Redis channels at once (of one
//! server or several), with timers, from plain threads and from async code.
//!
//! ```
//! use std::time::Duration;
//! use uniconc_core::Sender as _;
//! use uniconc_core::select::Select;
//! # let server = uniconc_redis::testing::RedisServer::start();
//! # let url = server.url();
//!
//! let conn = uniconc_redis::connect(&url)?; // e.g. "redis://127.0.0.1:6379"
//! let (jobs_tx, jobs) = conn.channel::<u32>(8)?;
//! let (_stop_tx, stop) = conn.channel::<()>(1)?;
//! jobs_tx.send(7).unwrap();
//!
//! let mut sel = Select::new();
//! let job = sel.recv(&jobs);
//! let _stop = sel.recv(&stop);
//! let oper = sel.select_timeout(Duration::from_secs(10)).unwrap();
//! assert_eq!(oper.index(), job);
//! assert_eq!(oper.recv(&jobs), Ok(7));
//! # Ok::<(), uniconc_core::Error>(())
//! ```
//!
//! # How a select waits
//!
//! Each operation is tried with one script (as `try_recv` / `try_send`). When none is ready,
//! the select registers with every channel: it makes sure this process is subscribed to the
//! channel's wake-up channel `uc:{<id>}:w` (one `SUBSCRIBE` round trip the first time; the
//! subscription then lasts as long as this process holds a handle to the channel) and takes a
//! receiver of the process's wake-up counter for it, created only once the subscription is live
//! on the server. Then every operation is tried once more, and the thread sleeps until a
//! wake-up arrives for any of the channels, or [`POLL`] passes, or the deadline.
//!
//! - **No lost wake-up.** A message (or room, or a disconnection) that lands after the
//!   registration publishes to a live subscription and wakes the sleep; one that landed before
//!   it is seen by the second try.
//! - **Wake-ups are broadcast**: every waiter subscribed to a channel is woken by each
//!   notification and tries again, so a select that is woken and performs another operation
//!   takes nothing that another waiter needed; there is nothing to pass on.
//! - **Peers that die.** A process killed while holding the last sender (receiver) publishes
//!   nothing: the select notices at its next [`POLL`] re-check once the process's lease has
//!   lapsed, at most [`LEASE`](crate::LEASE) after its last renewal, and the operation fires
//!   with `Disconnected`, as a plain `recv` (`send`) does.
//! - **Async.** [`Select::select_async`](uniconc_core::select::Select::select_async) sleeps
//!   without blocking the executor (a small task on this crate's runtime forwards the wake-up to
//!   the select's task), but each try is one script whose round trip blocks the polling
//!   thread, as the `try_` forms do. In async code that waits mostly on one channel, prefer
//!   `tokio::select!` over `recv_async` / `send_async`, which are cancel-safe.
//! - **Costs.** A select that sleeps costs one script per operation before and after each
//!   sleep (it does not spin: each try is a round trip), and wakes at least every [`POLL`] (250 ms) to re-check: an idle 2-way select sends
//!   about 16 scripts a second.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use uniconc_core::select::{SelectRecv, SelectSend, Selector};
use uniconc_core::{Error, ErrorKind, TryRecvError, TrySendError};

use crate::channel::{Receiver, Sender};
use crate::conn::{self, Live, POLL};

/// How a thread (or task) sleeps until any of several Redis channels changes: the
/// [`Selector`] of a [`Select`](uniconc_core::select::Select) over this crate's [`Sender`]s and
/// [`Receiver`]s (see the [module docs](self)). Code never makes one itself: the select does.
pub struct RedisSelector {
    /// This round's wake-up receivers, one per watched channel, each made after the process's
    /// subscription to the channel was live on the server.
    watched: Vec<watch::Receiver<u64>>,
    /// Whether some channel was watched this round (subscribed or not: a subscription that
    /// failed leaves the channel to the [`POLL`] re-check), so that a wait is bounded by
    /// [`POLL`]: a lease that lapses publishes nothing.
    polling: bool,
    /// The task that forwards a wake-up to an async select's waker (`poll_wait`).
    forward: Option<Forward>,
}

/// A task on the crate's runtime that waits for this round's wake-ups (or [`POLL`]) and then
/// wakes the select's task.
struct Forward {
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<ForwardState>>,
}

/// Shared by a [`Forward`] task and `poll_wait`, under one mutex: a wake-up either finds the
/// waker stored by `poll_wait`, or is seen by `poll_wait` as `fired`.
#[derive(Default)]
struct ForwardState {
    fired: bool,
    waker: Option<Waker>,
}

impl fmt::Debug for RedisSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSelector")
            .field("watched", &self.watched.len())
            .field("polling", &self.polling)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisSelector {
    fn drop(&mut self) {
        self.stop_forward();
    }
}

impl RedisSelector {
    /// Registers a channel whose connection is `live` and wake-up channel `wake`: returns once
    /// this process's subscription is live (or could not be made: the channel is then only
    /// re-checked every [`POLL`]).
    fn watch(&mut self, live: &Arc<Live>, wake: &str) {
        self.polling = true;
        if !live.is_ours() {
            // A forked child that could not connect: every operation fails at once anyway.
            return;
        }
        let rx = match live.subscribed_waker(wake) {
            Some(rx) => Some(rx),
            // A failure (the server unreachable) is reported by the operation's next try.
            None => conn::block_on_short(live.waker(wake)).ok(),
        };
        self.watched.extend(rx);
    }

    /// Whether a wake-up already came for a watched channel since it was watched. A receiver
    /// whose channel this process stopped listening to (its last handle of one side dropped)
    /// counts as woken: the next round subscribes again.
    fn woken(&self) -> bool {
        self.watched
            .iter()
            .any(|rx| rx.has_changed().unwrap_or(true))
    }

    /// When a wait that began now must end: the deadline, bounded by [`POLL`] while channels
    /// are watched.
    fn until(&self, deadline: Option<Instant>) -> Option<Instant> {
        if !self.polling {
            return deadline;
        }
        let poll = Instant::now() + POLL;
        Some(deadline.map_or(poll, |d| d.min(poll)))
    }

    fn stop_forward(&mut self) {
        if let Some(f) = self.forward.take() {
            f.task.abort();
        }
    }
}

/// Resolves when any of `watched` sees a wake-up (or its sender is gone).
async fn any_changed(watched: &mut [watch::Receiver<u64>]) {
    type Changed<'a> =
        Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;
    // Each `changed` future lives across polls: dropping one would drop its registration.
    let mut changed: Vec<Changed<'_>> = watched
        .iter_mut()
        .map(|rx| Box::pin(rx.changed()) as Changed<'_>)
        .collect();
    std::future::poll_fn(|cx| {
        if changed.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

impl Selector for RedisSelector {
    /// No spinning: every try is a round trip (a spin round would cost one script per
    /// operation); a select that finds nothing ready registers and sleeps at once.
    const SPIN: bool = false;

    fn new() -> Self {
        Self {
            watched: Vec::new(),
            polling: false,
            forward: None,
        }
    }

    fn begin(&mut self) {
        self.watched.clear();
        self.polling = false;
        self.stop_forward();
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        if self.woken() {
            return;
        }
        let until = self.until(deadline);
        if self.watched.is_empty() {
            // Nothing to be woken by: sleep until the deadline (or POLL), or for good (a select
            // of timers that will not fire, as crossbeam's `never`); spurious returns are fine.
            match until {
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
            return;
        }
        let watched = &mut self.watched;
        conn::block_on(async move {
            match until {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), any_changed(watched)).await;
                }
                None => any_changed(watched).await,
            }
        });
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken() {
            return Poll::Ready(());
        }
        if !self.polling {
            // Only timers: the select's own timer wakes the task.
            return Poll::Pending;
        }
        let watched = &self.watched;
        let forward = self.forward.get_or_insert_with(|| {
            let state = Arc::new(Mutex::new(ForwardState::default()));
            let shared = state.clone();
            // Clones keep the version each receiver has seen: a wake-up since the watch counts.
            let mut rxs = watched.clone();
            let task = conn::runtime().spawn(async move {
                let _ = tokio::time::timeout(POLL, any_changed(&mut rxs)).await;
                let waker = {
                    let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                    st.fired = true;
                    st.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            });
            Forward { task, state }
        });
        let mut st = forward.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.fired {
            return Poll::Ready(());
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Whether an error from `state()` means the operation would end at once (the channel's data
/// gone, a forked child's foreign handle) rather than wait (the server unreachable: `Os`).
fn ends_at_once(e: &Error) -> bool {
    e.kind() != ErrorKind::Os
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SelectRecv<T, RedisSelector>
    for Receiver<T>
{
    fn select_try_recv(&self) -> Result<T, TryRecvError> {
        uniconc_core::Receiver::try_recv(self)
    }

    /// One script: a message is queued, or the channel is disconnected.
    fn recv_ready(&self) -> bool {
        match self.state() {
            Ok((len, closed)) => len > 0 || closed,
            Err(e) => ends_at_once(&e),
        }
    }

    fn watch_recv(&self, sel: &mut RedisSelector, _key: &mut Option<usize>) {
        let (live, wake) = self.wake_up();
        sel.watch(live, wake);
    }

    /// Nothing to undo: wake-ups are broadcast, and the subscription stays for the handle's
    /// next wait.
    fn unwatch_recv(&self, _sel: &mut RedisSelector, _key: &mut Option<usize>, _fired: bool) {}
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SelectSend<T, RedisSelector> for Sender<T> {
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        uniconc_core::Sender::try_send(self, value)
    }

    /// One script: there is room, or the channel is disconnected.
    fn send_ready(&self) -> bool {
        match self.state() {
            Ok((len, closed)) => {
                closed || uniconc_core::Sender::capacity(self).is_none_or(|cap| len < cap)
            }
            Err(e) => ends_at_once(&e),
        }
    }

    fn watch_send(&self, sel: &mut RedisSelector, _key: &mut Option<usize>) {
        let (live, wake) = self.wake_up();
        sel.watch(live, wake);
    }

    /// As [`unwatch_recv`](SelectRecv::unwatch_recv): nothing to undo.
    fn unwatch_send(&self, _sel: &mut RedisSelector, _key: &mut Option<usize>, _fired: bool) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uniconc_core::Sender as _;

    use super::*;
    use crate::testing::RedisServer;

    /// Waits until the selector has seen a wake-up. A registration that returned before its
    /// subscription was live (or that missed the publication) never sees it: the test then
    /// hangs until its watchdog thread aborts it.
    fn until_woken(sel: &RedisSelector) {
        let start = Instant::now();
        while !sel.woken() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a send after the registration did not wake the selector"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The registration protocol: a message sent after `watch_recv` returned (and before the
    /// select sleeps) wakes the selector, whether the registration subscribed just now (first
    /// watch of the channel in this process) or found the subscription already there.
    #[test]
    fn a_send_after_the_registration_wakes_the_selector() {
        let server = RedisServer::start();
        let conn = crate::connect(&server.url()).unwrap();
        for _ in 0..2 {
            let (tx, rx) = conn.channel::<u32>(4).unwrap();
            let mut sel = RedisSelector::new();
            for round in 0..3 {
                sel.begin();
                rx.watch_recv(&mut sel, &mut None);
                assert!(!sel.woken(), "round {round}: woken before any send");
                // 0 -> 1 message: the send script publishes the wake-up.
                tx.send(round).unwrap();
                until_woken(&sel);
                assert_eq!(rx.select_try_recv(), Ok(round));
            }
            // A send arm on a full channel: woken by the receive that makes room.
            let (tx, rx) = conn.channel::<u32>(1).unwrap();
            tx.send(0).unwrap();
            sel.begin();
            tx.watch_send(&mut sel, &mut None);
            assert!(!sel.woken());
            assert!(!tx.send_ready());
            assert_eq!(uniconc_core::Receiver::recv(&rx), Ok(0));
            until_woken(&sel);
            assert!(tx.send_ready());
        }
    }
}
