//! Loom models of the waker registry's wake-up protocol: a waiter that registers and then
//! re-checks the channel, against a peer that transfers a message and then notifies.
//!
//! crossbeam-channel cannot run under loom, so the channel's state is one loom atomic, `tail`,
//! touched as crossbeam touches its index: a `SeqCst` compare-exchange for the transfer, and
//! `fence(SeqCst)` then a relaxed load for the re-check of `try_recv` reporting `Empty`. The
//! code under test is the real [`WakerSet`].
//!
//! Run: `RUSTFLAGS="--cfg uniconc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p uniconc-thread
//! --release --lib --target-dir target/loom -- loom_`.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{Wake, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize};

use super::WakerSet;
use crate::primitive::fence;

/// A waker that records that it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

fn waker() -> (std::sync::Arc<Flag>, Waker) {
    let f = std::sync::Arc::new(Flag(AtomicBool::new(false)));
    (f.clone(), Waker::from(f))
}

/// Stand-in for a crossbeam `send` that succeeded: its `SeqCst` compare-exchange of the index.
fn transfer(tail: &AtomicUsize) {
    let t = tail.load(Relaxed);
    tail.compare_exchange(t, t + 1, SeqCst, Relaxed)
        .expect("one sender");
}

/// Stand-in for a crossbeam `try_recv`'s verdict: `fence(SeqCst)` then a relaxed load.
fn has_message(tail: &AtomicUsize) -> bool {
    fence(SeqCst);
    tail.load(Relaxed) > 0
}

/// No lost wake-up on the hot path: a waiter registers and re-checks, a sender transfers and
/// calls [`WakerSet::notify_one_after_transfer`]. Either the re-check sees the message or
/// the waiter's waker is woken.
///
/// Mutation this model catches (made, seen failing, reverted): weakening the load of
/// `waiting` in `notify_one_after_transfer` (and its `seq_cst_point`) to `Acquire`. Removing
/// the `fence(SeqCst)` at the end of [`WakerSet::register`] alone is *not* a bug here, and the
/// model passes: crossbeam's own `fence(SeqCst)` in the re-check plays its part.
#[test]
fn loom_transfer_wakes_a_registered_waiter() {
    loom::model(|| {
        let set = Arc::new(WakerSet::new());
        let tail = Arc::new(AtomicUsize::new(0));
        let sender = {
            let (set, tail) = (set.clone(), tail.clone());
            loom::thread::spawn(move || {
                transfer(&tail);
                set.notify_one_after_transfer();
            })
        };
        let (woken, w) = waker();
        let mut key = None;
        set.register(&mut key, &w);
        let seen = has_message(&tail);
        sender.join().unwrap();
        assert!(seen || woken.0.load(SeqCst), "lost wake-up");
        set.unregister(&mut key);
    });
}

/// Two async waiters, one message: the sender's notification reaches one of them, and if
/// that one is cancelled before it could use it, the hand-on ([`WakerSet::unregister`]
/// returning `true`, then `notify_one`) reaches the other. Either the second waiter's
/// re-check sees the message or it is woken.
///
/// Mutation this model catches (made, seen failing, reverted): `unregister` always reporting
/// `false`, so the cancelled waiter swallows the wake-up.
#[test]
fn loom_cancelled_waiter_hands_its_wake_up_on() {
    loom::model(|| {
        let set = Arc::new(WakerSet::new());
        let tail = Arc::new(AtomicUsize::new(0));
        let (_woken1, w1) = waker();
        let mut key1 = None;
        set.register(&mut key1, &w1);
        let sender = {
            let (set, tail) = (set.clone(), tail.clone());
            loom::thread::spawn(move || {
                transfer(&tail);
                set.notify_one_after_transfer();
            })
        };
        let waiter2 = {
            let (set, tail) = (set.clone(), tail.clone());
            loom::thread::spawn(move || {
                let (woken2, w2) = waker();
                let mut key2 = None;
                set.register(&mut key2, &w2);
                let seen = has_message(&tail);
                (seen, woken2, key2)
            })
        };
        // Waiter 1 is cancelled (it never re-checks): it passes a wake-up it got on.
        if set.unregister(&mut key1) {
            set.notify_one();
        }
        sender.join().unwrap();
        let (seen, woken2, mut key2) = waiter2.join().unwrap();
        assert!(seen || woken2.0.load(SeqCst), "lost wake-up");
        set.unregister(&mut key2);
    });
}
