//! Loom models of the channel's cancellation hand-on: a waiter woken and then dropped
//! (its future cancelled) before it used the wake-up passes the wake-up on to the next
//! waiter, so no other waiter is left asleep beside a message (or a free slot).
//!
//! The code under test is the real channel: its futures polled by hand with wakers that
//! record being woken, its `Shared` behind the loom mutex of the `primitive` shim.
//!
//! Run: `RUSTFLAGS="--cfg uniconc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p uniconc-async
//! --release --lib --target-dir target/loom -- loom_`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Wake, Waker};

use loom::sync::atomic::AtomicBool;
use uniconc_core::{Receiver as _, Sender as _};

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

/// Polls `fut` once with `w`; it must wait.
fn poll_pending<F: Future + Unpin>(fut: &mut F, w: &Waker) {
    let mut cx = Context::from_waker(w);
    assert!(Pin::new(fut).poll(&mut cx).is_pending());
}

/// Two receivers wait on an empty channel; a sender sends one message while the first
/// receiver's future is dropped. Whichever comes first, the second receiver is woken: by the
/// send if the first had already unlisted itself, or by the first's hand-on if the send had
/// woken it.
///
/// Mutation this model catches (made, seen failing, reverted): `RecvFuture`'s `Drop` not
/// passing the wake-up on (`pass_on` always `None`).
#[test]
fn loom_cancelled_receiver_hands_its_wake_up_on() {
    loom::model(|| {
        let (tx, rx) = super::channel::<u8>(1).expect("channel");
        let tx2 = tx.clone(); // keeps the channel connected after the sender thread ends
        let (_woken_a, wa) = waker();
        let (woken_b, wb) = waker();
        let mut a = rx.recv_async();
        let mut b = rx.recv_async();
        poll_pending(&mut a, &wa);
        poll_pending(&mut b, &wb);
        let sender = loom::thread::spawn(move || tx.try_send(1).expect("room"));
        drop(a); // cancelled
        sender.join().unwrap();
        assert!(
            woken_b.0.load(SeqCst),
            "lost wake-up: a message waits, b sleeps"
        );
        drop(b);
        let st = rx.shared.lock();
        assert!(st.recv_waiters.is_empty() && st.send_waiters.is_empty());
        drop(st);
        drop(tx2);
    });
}

/// Two senders wait on a full channel; a receiver takes the message while the first
/// sender's future is dropped. The second sender is woken for the free slot, directly or
/// through the first's hand-on.
///
/// Mutation this model catches (made, seen failing, reverted): `SendFuture`'s `Drop` not
/// passing the wake-up on.
#[test]
fn loom_cancelled_sender_hands_its_wake_up_on() {
    loom::model(|| {
        let (tx, rx) = super::channel::<u8>(1).expect("channel");
        let rx2 = rx.clone(); // keeps the channel connected after the receiver thread ends
        tx.try_send(0).expect("room");
        let (_woken_a, wa) = waker();
        let (woken_b, wb) = waker();
        let mut a = tx.send_async(1);
        let mut b = tx.send_async(2);
        poll_pending(&mut a, &wa);
        poll_pending(&mut b, &wb);
        let receiver = loom::thread::spawn(move || rx.try_recv().expect("a message"));
        drop(a); // cancelled
        assert_eq!(receiver.join().unwrap(), 0);
        assert!(
            woken_b.0.load(SeqCst),
            "lost wake-up: a slot is free, b sleeps"
        );
        drop(b);
        let st = rx2.shared.lock();
        assert!(st.recv_waiters.is_empty() && st.send_waiters.is_empty());
        drop(st);
        drop(rx2);
    });
}
