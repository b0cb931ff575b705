//! Selecting over process channels: [`ProcSelector`], one sleep for all the channels of a
//! select, across processes.
//!
//! A select registers with each channel exactly as a blocking `recv` or `send` does before
//! it sleeps: it raises the sleeper flag of the channel's wait word (`recv_wait` for a
//! receive, `send_wait` for a send) and keeps the value it got, then re-checks every
//! operation. If none is ready, it sleeps on all the words at once (`futex_waitv` on Linux,
//! see [`platform::WaitSet`]): a notifier that changes a channel sees the flag, bumps the word
//! and wakes every sleeper on it, so the select wakes, whichever process sent. Nothing
//! changes on the notify path: a program that never selects pays nothing for it.
//!
//! Before it sleeps, the select spins as a blocking `recv` does (the adaptive [`Backoff`] of
//! its first channel), polling the words it registered on: a peer that answers within the
//! spin is seen without a futex sleep and wake-up. The select loop's own short spin before
//! registering is not enough for a ping-pong between two processes, where the answer often
//! comes a few microseconds later (`benches/select_process.rs` measures it).
//!
//! Each sleep is bounded by [`SLICE`], after which the select looks for dead peers on each of
//! its channels, as a blocking `recv` does: a peer killed while the select waits (the last
//! sender of a watched channel) makes that receive fire with `Disconnected`.
//!
//! Since a notifier wakes every sleeper of a word, a select that is woken for an operation it
//! does not perform takes no wake-up from anyone: unregistering has nothing to pass on.
//!
//! `select_async` hands the same set of words to one thread of the waiter pool
//! ([`WaitWord::any`]), which sleeps on all of them and wakes the task.

use std::task::{Context, Poll};

use uniconc_core::select::{SelectRecv, SelectSend, Selector};

use super::*;
use crate::platform::WaitSet;

/// How a thread (or task) of this process sleeps until any of several process channels
/// changes: the [`Selector`] of the process backend's channels, used by
/// [`Select`](uniconc_core::select::Select) and the [`select!`](uniconc_core::select!) macro.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{JoinHandle as _, Sender as _};
///
/// let (jobs_tx, jobs) = uniconc::process::channel::<u32>(8)?;
/// let (stop_tx, stop) = uniconc::process::channel::<()>(1)?;
/// let child = uniconc::process::spawn(move || {
///     jobs_tx.send(1).unwrap();
///     jobs_tx.send(2).unwrap();
///     stop_tx.send(()).unwrap();
/// })?;
/// let mut total = 0;
/// loop {
///     uniconc::select! {
///         recv(jobs) -> job => match job {
///             Ok(job) => total += job,
///             Err(_) => break, // the child is gone: `jobs` is disconnected
///         },
///         recv(stop) -> _ => break,
///         default(Duration::from_secs(30)) => panic!("the child never sent"),
///     }
/// }
/// child.join()?;
/// # let _ = total;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct ProcSelector {
    /// The words registered in this round, with the values to sleep on.
    set: WaitSet,
    /// The channels of those words: keeps their mappings alive while the set names them, and
    /// is where to look for dead peers after each sleep.
    chans: Vec<Arc<Chan>>,
    /// A receive of this round found a message claimed and not yet published: its sender may
    /// have read the sleeper flag before it was raised, so sleep briefly (see [`claimed_nap`]).
    claimed: bool,
    /// Brief sleeps in a row for a claimed message (the blocking form's `naps`).
    naps: u32,
    /// Times in a row `poll_wait` yielded to the executor for a claimed message.
    yields: u32,
    /// The async wait of this round, once made.
    fut: Option<WaitWord>,
}

impl std::fmt::Debug for ProcSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcSelector")
            .field("words", &self.set.len())
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

impl ProcSelector {
    /// Registers `w` (a wait word of `chan`), on which the caller raised the sleeper flag
    /// and got `seq`.
    fn watch(&mut self, chan: &Arc<Chan>, w: &WaitWords, seq: u32, claimed: bool) {
        if !self.chans.iter().any(|c| Arc::ptr_eq(c, chan)) {
            self.chans.push(chan.clone());
        }
        // SAFETY: `w` lives in `chan`'s mapping, which `self.chans` keeps mapped until the set
        // is cleared (`begin`, which clears the set first) or dropped (declared before
        // `chans`, so dropped first); a clone handed to the waiter pool is kept with its own
        // references to the channels (`poll_wait`).
        unsafe { self.set.push(&w.word, seq) };
        self.claimed |= claimed;
    }

    /// After a sleep: look for dead peers on every channel (at most once per [`SLICE`] and
    /// process each), as a blocking `recv` does after each slice.
    fn reap(&self) {
        for chan in &self.chans {
            chan.maybe_reap();
        }
    }
}

impl Selector for ProcSelector {
    fn new() -> Self {
        Self::default()
    }

    fn begin(&mut self) {
        // The set first: it must not name words of channels no longer kept.
        self.set.clear();
        self.chans.clear();
        self.claimed = false;
        self.fut = None;
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        // The adaptive spin of a blocking `recv` (the first channel's), polling the words: a
        // notifier that sees our flag bumps its word, so a peer answering within the spin is
        // seen without a sleep and a wake-up.
        let Some(first) = self.chans.first() else {
            // Only timers.
            if let Some(d) = deadline {
                std::thread::sleep(d.saturating_duration_since(Instant::now()).min(SLICE));
            } else {
                std::thread::sleep(SLICE);
            }
            return;
        };
        let mut backoff = Backoff::new(first);
        while backoff.snooze() {
            if self.set.changed() {
                backoff.succeeded();
                return;
            }
        }
        let slice = if self.claimed {
            self.naps += 1;
            claimed_nap(self.naps - 1)
        } else {
            self.naps = 0;
            SLICE
        };
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                left.min(slice)
            }
            None => slice,
        };
        if backoff.limit == 0 {
            // Nothing to learn (one CPU: never spins): spare the two clock reads.
            self.set.wait(timeout);
        } else {
            let start = Instant::now();
            self.set.wait(timeout);
            backoff.slept(start.elapsed());
        }
        self.reap();
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.len() == 0 {
            // Only timers: the select's timer wakes the task.
            return Poll::Pending;
        }
        if self.fut.is_none() {
            if self.claimed && self.yields < 16 {
                // A message is being written: let the executor run something else, then look
                // again (a few times, as `recv_async` does).
                self.yields += 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.yields = 0;
            let keep: Arc<dyn std::any::Any + Send + Sync> = Arc::new(self.chans.clone());
            // SAFETY: the words of the set live in the mappings of `self.chans`, which `keep`
            // holds references to.
            self.fut = Some(unsafe { WaitWord::any(self.set.clone(), keep) });
        }
        let fut = self.fut.as_mut().expect("made above");
        match std::pin::Pin::new(fut).poll(cx) {
            Poll::Ready(()) => {
                self.fut = None;
                self.reap();
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A select receives from a process channel as a blocking `recv` does: a look at the front
/// of the ring, then a registration on `recv_wait` (see the module docs of `select`).
///
/// A look does not wait for a message that a sender is still writing at the front of the
/// ring (`try_recv` does, briefly): a blocking select sleeps briefly and looks again, and
/// `try_select` may report nothing ready in that instant.
impl<T: Message> SelectRecv<T, ProcSelector> for Receiver<T> {
    fn select_try_recv(&self) -> Result<T, TryRecvError> {
        match self.try_recv_inner(false) {
            Look::Got(r) => r,
            Look::Empty | Look::InFlight => Err(TryRecvError::Empty),
        }
    }

    fn recv_ready(&self) -> bool {
        len_of(&self.chan) > 0 || self.chan.senders_gone()
    }

    fn watch_recv(&self, sel: &mut ProcSelector, _: &mut Option<usize>) {
        let (seq, claimed) = self.prepare_sleep();
        sel.watch(&self.chan, &self.chan.hdr().recv_wait, seq, claimed);
    }

    /// Nothing to pass on: a notifier wakes every sleeper of the word.
    fn unwatch_recv(&self, _: &mut ProcSelector, _: &mut Option<usize>, _: bool) {}
}

/// A select sends on a process channel as a blocking `send` does: an attempt, then a
/// registration on `send_wait`.
impl<T: Message> SelectSend<T, ProcSelector> for Sender<T> {
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_send_inner(value) {
            Ok(()) => Ok(()),
            Err(TrySend::Full(v)) => Err(TrySendError::Full(v)),
            Err(TrySend::Err(e)) => Err(e.into()),
        }
    }

    fn send_ready(&self) -> bool {
        self.chan.receivers_gone()
            || self
                .chan
                .cap
                .is_none_or(|c| (len_of(&self.chan) as u64) < c)
    }

    fn watch_send(&self, sel: &mut ProcSelector, _: &mut Option<usize>) {
        let seq = self.prepare_sleep();
        sel.watch(&self.chan, &self.chan.hdr().send_wait, seq, false);
    }

    /// Nothing to pass on: a notifier wakes every sleeper of the word.
    fn unwatch_send(&self, _: &mut ProcSelector, _: &mut Option<usize>, _: bool) {}
}
