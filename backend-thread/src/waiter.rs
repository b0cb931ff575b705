//! The waker registry behind every `_async` form, and [`Monitor`], a mutex + condvar + waker
//! registry that the synchronisation primitives are built on.
//!
//! # Protocol (no lost wake-ups)
//!
//! An async waiter *registers, then re-checks*: it puts its waker in a [`WakerSet`], then tries
//! its operation once more before returning `Pending`. A notifier *changes state, then
//! notifies*. Either the re-check sees the new state, or the notifier sees the registration:
//!
//! - Under a [`Monitor`], registration and state changes happen under the same mutex, which
//!   orders them.
//! - Beside a crossbeam channel (whose state lives outside our mutex) the two sides are
//!   ordered by `SeqCst` operations: the waiter does `register (count += 1); fence(SeqCst);
//!   re-check`, the notifier does `state change; fence(SeqCst); load count`
//!   ([`WakerSet::notify_all_after_change`], used for close and disconnection). By the fence
//!   rules of the C++20 memory model (which Rust follows), at least one of the two loads sees
//!   the other side's write.
//! - On the hot path (after every successful send or receive) the notifier skips its fence:
//!   see [`WakerSet::notify_one_after_transfer`] for why crossbeam's own `SeqCst` read-modify-
//!   write of the channel index serves as that fence.
//!
//! # Hand-over on cancellation
//!
//! A notified waiter's entry is marked *notified*. If its future is dropped before it could
//! use what it was woken for, [`WakerSet::unregister`] reports that and the future passes the
//! notification on to another waiter, so a cancelled `recv_async` or `take_async` never
//! swallows a wake-up that another waiter needed.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::primitive::{self, AtomicUsize, Ordering, fence, seq_cst_point};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// One registered async waiter.
#[derive(Debug)]
struct Entry {
    /// `None` once notified (the waker was taken to be woken).
    waker: Option<Waker>,
    /// `true` while the slot is occupied by a live future.
    used: bool,
}

#[derive(Debug, Default)]
struct Entries {
    slots: Vec<Entry>,
    free: Vec<usize>,
}

/// A set of async waiters, cheap to check when empty.
#[derive(Debug, Default)]
pub(crate) struct WakerSet {
    /// Number of registered waiters that have not been notified yet. Written only under
    /// `entries`' mutex; read without it by notifiers to skip the mutex when nobody waits.
    waiting: AtomicUsize,
    entries: primitive::Mutex<Entries>,
}

impl WakerSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> primitive::MutexGuard<'_, Entries> {
        // A panic while holding this mutex cannot leave `Entries` inconsistent (every update
        // is a single assignment), so poisoning is ignored.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or refreshes) the waker of the waiter whose slot is `key`, then issues the
    /// `SeqCst` fence of the protocol: the caller re-checks its condition right after.
    pub(crate) fn register(&self, key: &mut Option<usize>, waker: &Waker) {
        let mut e = self.entries();
        match *key {
            Some(k) => {
                let slot = &mut e.slots[k];
                match &mut slot.waker {
                    Some(w) => {
                        if !w.will_wake(waker) {
                            *w = waker.clone();
                        }
                    }
                    None => {
                        // Notified earlier, waiting again.
                        slot.waker = Some(waker.clone());
                        // Relaxed: the counter is only written under the mutex; the fence below
                        // orders this write before the caller's re-check.
                        self.waiting.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            None => {
                let entry = Entry {
                    waker: Some(waker.clone()),
                    used: true,
                };
                let k = match e.free.pop() {
                    Some(k) => {
                        e.slots[k] = entry;
                        k
                    }
                    None => {
                        e.slots.push(entry);
                        e.slots.len() - 1
                    }
                };
                *key = Some(k);
                // Relaxed: as above.
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(e);
        // SeqCst fence: pairs with the fence in `notify_*_after_change` (see module docs).
        fence(Ordering::SeqCst);
    }

    /// Removes the waiter's slot. Returns `true` if it had been notified and not re-registered
    /// since: a future dropped in that state should pass the notification on.
    pub(crate) fn unregister(&self, key: &mut Option<usize>) -> bool {
        let Some(k) = key.take() else { return false };
        let mut e = self.entries();
        let slot = &mut e.slots[k];
        debug_assert!(slot.used);
        let notified = slot.waker.take().is_none();
        slot.used = false;
        if !notified {
            // Relaxed: written under the mutex (see the field doc).
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        e.free.push(k);
        notified
    }

    /// Wakes one waiting waiter, if any. For callers that changed state under a mutex that
    /// the waiters also hold while registering.
    pub(crate) fn notify_one(&self) {
        // Relaxed: callers order this load themselves (a mutex, or the fence in
        // `notify_all_after_change`).
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let waker = {
            let mut e = self.entries();
            let w = e
                .slots
                .iter_mut()
                .find_map(|s| if s.used { s.waker.take() } else { None });
            if w.is_some() {
                // Relaxed: written under the mutex.
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            w
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes every waiting waiter.
    pub(crate) fn notify_all(&self) {
        // Relaxed: as in `notify_one`.
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut e = self.entries();
            let ws: Vec<Waker> = e
                .slots
                .iter_mut()
                .filter(|s| s.used)
                .filter_map(|s| s.waker.take())
                .collect();
            // Relaxed: written under the mutex.
            self.waiting.fetch_sub(ws.len(), Ordering::Relaxed);
            ws
        };
        for w in wakers {
            w.wake();
        }
    }

    /// [`notify_one`](Self::notify_one) right after a successful crossbeam `send` or `recv`,
    /// without a fence of our own.
    ///
    /// # Memory ordering
    ///
    /// A successful crossbeam (0.5, array and list flavours) push ends the sender's claim of a
    /// slot with a `SeqCst` compare-exchange on the channel's `tail` index, and a pop does the
    /// same on `head`. Their `try_recv`/`try_send` report `Empty`/`Full` only after a
    /// `fence(SeqCst)` followed by a load of the other index. Our load of `waiting` below is
    /// `SeqCst` and comes after that compare-exchange; the waiter's registration is followed by
    /// our `fence(SeqCst)` and then crossbeam's. So in the single total order of `SeqCst`
    /// operations either our load comes after the waiter's fence (and sees its registration) or
    /// before it, and then the index update precedes the waiter's fences and its re-check sees
    /// the new index ([atomics.order] fence rules). Either way the waiter is not left asleep.
    /// This keeps the sync hot path at one plain load (on x86) when nobody waits
    /// asynchronously; `notify_all_after_change` is the fenced form for state we own.
    #[inline]
    pub(crate) fn notify_one_after_transfer(&self) {
        // SeqCst: see the ordering argument above.
        seq_cst_point(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.notify_one();
    }

    /// [`notify_all`](Self::notify_all) for a state change made outside our mutex (close,
    /// disconnection): the `SeqCst` fence pairs with the one in [`register`](Self::register).
    pub(crate) fn notify_all_after_change(&self) {
        fence(Ordering::SeqCst);
        self.notify_all();
    }

    /// Number of waiters registered and not yet notified (tests).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// A state behind a mutex, with a condvar for blocking waiters and a [`WakerSet`] for async
/// ones. Every state change that could unblock someone is followed by `notify_one` or
/// `notify_all`; blocking and async waiters re-check their condition under the mutex.
#[derive(Debug, Default)]
pub(crate) struct Monitor<S> {
    state: Mutex<S>,
    cond: Condvar,
    wakers: WakerSet,
}

impl<S> Monitor<S> {
    pub(crate) fn new(state: S) -> Self {
        Self {
            state: Mutex::new(state),
            cond: Condvar::new(),
            wakers: WakerSet::new(),
        }
    }

    /// Locks the state. The primitives keep their own poison flags (a panicking *user* is
    /// what poisons a `Lock`), and no code of ours panics with this mutex held, so std's
    /// poisoning is ignored.
    pub(crate) fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until `attempt` returns `Some` (it runs under the mutex) or `deadline` passes
    /// (then `None`).
    pub(crate) fn wait_deadline<R>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut S) -> Option<R>,
    ) -> Option<R> {
        let mut s = self.state();
        loop {
            if let Some(r) = attempt(&mut s) {
                return Some(r);
            }
            s = match deadline {
                None => self.cond.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.cond
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// One poll of an async waiter: runs `attempt` under the mutex; if it yields nothing,
    /// registers the waker (under the same mutex, so no notification can slip between).
    pub(crate) fn poll_wait<R>(
        &self,
        key: &mut Option<usize>,
        cx: &mut Context<'_>,
        attempt: impl FnOnce(&mut S) -> Option<R>,
    ) -> Poll<R> {
        let mut s = self.state();
        if let Some(r) = attempt(&mut s) {
            drop(s);
            self.wakers.unregister(key);
            return Poll::Ready(r);
        }
        self.wakers.register(key, cx.waker());
        Poll::Pending
    }

    /// Drops a cancelled async waiter's registration. If it had been notified and not used
    /// the wake-up, the wake-up is passed on to another async waiter (blocking waiters were
    /// woken through the condvar on their own).
    pub(crate) fn cancel_wait(&self, key: &mut Option<usize>) {
        if self.wakers.unregister(key) {
            self.wakers.notify_one();
        }
    }

    /// Wakes one blocking waiter and one async waiter (call after the state change, with the
    /// mutex released or held).
    pub(crate) fn notify_one(&self) {
        self.cond.notify_one();
        self.wakers.notify_one();
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.cond.notify_all();
        self.wakers.notify_all();
    }
}

#[cfg(all(test, uniconc_loom))]
#[path = "waiter_loom.rs"]
mod loom_tests;

#[cfg(all(test, not(uniconc_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    #[test]
    fn register_notify_unregister() {
        let set = WakerSet::new();
        let (f1, w1) = waker();
        let (f2, w2) = waker();
        let (mut k1, mut k2) = (None, None);
        set.register(&mut k1, &w1);
        set.register(&mut k2, &w2);
        assert_eq!(set.waiting(), 2);
        set.notify_one();
        assert_eq!(set.waiting(), 1);
        assert!(f1.0.load(Ordering::SeqCst) ^ f2.0.load(Ordering::SeqCst));
        // The notified one is told so on unregister (to pass it on); the other is not.
        let (notified_key, other_key) = if f1.0.load(Ordering::SeqCst) {
            (&mut k1, &mut k2)
        } else {
            (&mut k2, &mut k1)
        };
        assert!(set.unregister(notified_key));
        assert!(!set.unregister(other_key));
        assert_eq!(set.waiting(), 0);
    }

    #[test]
    fn re_register_after_notify_counts_again() {
        let set = WakerSet::new();
        let (_f, w) = waker();
        let mut k = None;
        set.register(&mut k, &w);
        set.notify_all();
        assert_eq!(set.waiting(), 0);
        set.register(&mut k, &w);
        assert_eq!(set.waiting(), 1);
        assert!(!set.unregister(&mut k));
        assert_eq!(set.waiting(), 0);
        // Slots are reused.
        set.register(&mut k, &w);
        assert_eq!(k, Some(0));
        set.unregister(&mut k);
    }

    #[test]
    fn notify_without_waiters_is_a_no_op() {
        let set = WakerSet::new();
        set.notify_one_after_transfer();
        set.notify_all_after_change();
        assert_eq!(set.waiting(), 0);
    }

    #[test]
    fn monitor_wait_deadline_times_out_and_succeeds() {
        let m = Arc::new(Monitor::new(0u32));
        assert_eq!(
            m.wait_deadline(Some(Instant::now()), |s| (*s > 0).then_some(*s)),
            None
        );
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            *m2.state() = 7;
            m2.notify_all();
        });
        assert_eq!(m.wait_deadline(None, |s| (*s > 0).then_some(*s)), Some(7));
        t.join().unwrap();
    }
}
