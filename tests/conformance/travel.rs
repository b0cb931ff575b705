//! Handles that travel: a `Sender` (or `Lock`, `Event`) sent through a channel, stored in a
//! `Map` or returned from a pool task works where it lands. On the thread and tokio backends
//! a channel carries the handle itself; on the process backend the handle is serialized and
//! maps the same memory in the receiving process (`uniconc_process`'s `travel` module).
//!
//! The rule of a handle in flight, checked here: it keeps its channel connected while it is in
//! flight; once it is dropped unread — its message dropped with the channel that carried it,
//! and the unit that sent it ended — the receiver sees `Disconnected`, never waits forever.

use std::time::Duration;

use uniconc::prelude::*;
use uniconc::{Message, RecvError, RecvTimeoutError};

const LONG: Duration = Duration::from_secs(30);

/// A worker makes a reply channel and sends its `Sender` back; the caller answers through it.
pub(crate) fn travel_worker_sends_back_its_reply_sender<B: Backend>()
where
    B::Sender<u64>: Message,
{
    let (back_tx, back_rx) = B::channel::<B::Sender<u64>>(1).unwrap();
    let worker = B::spawn(move || {
        let (tx, rx) = B::channel::<u64>(4).unwrap();
        back_tx.send(tx).unwrap();
        let got = rx.recv().unwrap();
        // The caller's copy was the only sender left.
        let then = rx.recv();
        (got, then == Err(RecvError::Disconnected))
    })
    .unwrap();
    let reply = back_rx.recv_timeout(LONG).unwrap();
    reply.send(42).unwrap();
    drop(reply);
    assert_eq!(worker.join().unwrap(), (42, true));
}

/// A worker started before the channel existed gets its `Sender` through another channel.
pub(crate) fn travel_sender_reaches_a_worker_started_before_the_channel<B: Backend>()
where
    B::Sender<u64>: Message,
{
    let (jobs_tx, jobs_rx) = B::channel::<B::Sender<u64>>(1).unwrap();
    let worker = B::spawn(move || {
        let mut n = 0;
        for reply in jobs_rx.iter() {
            reply.send(n * 10).unwrap();
            n += 1;
        }
        n
    })
    .unwrap();
    for i in 0..3u64 {
        let (tx, rx) = B::channel::<u64>(1).unwrap();
        jobs_tx.send(tx).unwrap();
        assert_eq!(rx.recv_timeout(LONG), Ok(i * 10));
        assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    }
    drop(jobs_tx);
    assert_eq!(worker.join().unwrap(), 3);
}

/// A `Lock` and an `Event` sent through a channel are the same lock and event where they land.
pub(crate) fn travel_lock_and_event_through_a_channel<B: Backend>()
where
    B::Lock: Message,
    B::Event: Message,
    B::Receiver<u64>: Message,
{
    let (jobs_tx, jobs_rx) = B::channel::<(B::Lock, B::Event, B::Receiver<u64>)>(1).unwrap();
    let worker = B::spawn(move || {
        let (lock, event, rx) = jobs_rx.recv().unwrap();
        let guard = lock.lock().unwrap();
        event.set();
        // Holds the lock until the caller disconnects `rx`.
        let _ = rx.recv();
        drop(guard);
    })
    .unwrap();
    let lock = B::lock().unwrap();
    let event = B::event().unwrap();
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    jobs_tx.send((lock.clone(), event.clone(), rx)).unwrap();
    event.wait_timeout(LONG).unwrap();
    assert!(lock.try_lock().is_err(), "the worker holds the lock");
    drop(tx);
    drop(lock.lock().unwrap());
    worker.join().unwrap();
}

/// A `Sender` stored in a `Map` and read back, and a channel returned from a pool task, work.
pub(crate) fn travel_through_a_map_and_a_pool_task<B: Backend>()
where
    B::Sender<u64>: Message,
    B::Receiver<u64>: Message,
{
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let map = B::map::<String, B::Sender<u64>>().unwrap();
    assert!(map.insert("reply".into(), tx).unwrap().is_none());
    let tx = map
        .remove("reply")
        .unwrap()
        .expect("the sender is in the map");
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(rx.recv_timeout(LONG), Ok(5));
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));

    if !B::POOL_CLOSURES {
        return;
    }
    let pool = B::pool(1).unwrap();
    let h = pool
        .submit(
            |n: u64| {
                let (tx, rx) = B::channel::<u64>(4).unwrap();
                tx.send(n).unwrap();
                (tx, rx)
            },
            9,
        )
        .unwrap();
    let (tx, rx) = h.wait().unwrap();
    assert_eq!(rx.recv_timeout(LONG), Ok(9));
    tx.send(10).unwrap();
    assert_eq!(rx.recv_timeout(LONG), Ok(10));
    drop(tx);
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
}

/// While the only `Sender` is inside a message, the channel stays connected.
pub(crate) fn travel_sender_in_flight_keeps_the_channel_connected<B: Backend>()
where
    B::Sender<u64>: Message,
{
    let (carrier_tx, carrier_rx) = B::unbounded::<B::Sender<u64>>().unwrap();
    let (go_tx, go_rx) = B::channel::<()>(1).unwrap();
    let worker = B::spawn(move || {
        go_rx.recv().unwrap();
        let tx = carrier_rx.recv().unwrap();
        tx.send(7).unwrap();
    })
    .unwrap();
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    carrier_tx.send(tx).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout),
        "a sender in flight still counts"
    );
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(LONG), Ok(7));
    worker.join().unwrap();
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
}

/// A `Sender` whose message is dropped unread, once the unit that sent it ended and the
/// channel that carried it is gone, no longer keeps the receiver waiting.
pub(crate) fn travel_sender_dropped_in_flight_disconnects<B: Backend>()
where
    B::Sender<u64>: Message,
{
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let (carrier_tx, carrier_rx) = B::unbounded::<B::Sender<u64>>().unwrap();
    let worker = B::spawn(move || {
        carrier_tx.send(tx).unwrap();
    })
    .unwrap();
    worker.join().unwrap();
    drop(carrier_rx); // the message is dropped unread
    // Bounded by the test's watchdog: a dead process's ends are reaped within a few slices.
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}
