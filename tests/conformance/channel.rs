//! Channel behaviour: order, MPMC without loss or duplicates, try/timeout forms, capacity,
//! close, disconnection both ways, iterators.

use std::time::Instant;

use uniconc::prelude::*;
use uniconc::{
    ErrorKind, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use crate::support::{LONG, SHORT, pause, scale, stress};

pub(crate) fn channel_fifo<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(1024).unwrap();
    for i in 0..1000 {
        tx.send(i).unwrap();
    }
    for i in 0..1000 {
        assert_eq!(rx.recv(), Ok(i));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

pub(crate) fn channel_fifo_across_units<B: Backend>() {
    let n = 10_000 * scale() as u64;
    let (tx, rx) = B::channel::<u64>(16).unwrap();
    let producer = B::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    })
    .unwrap();
    for i in 0..n {
        assert_eq!(rx.recv_timeout(LONG), Ok(i));
    }
    producer.join().unwrap();
}

/// Per consumer: (count, sum, sum of squares) of what it received.
type Tally = (u64, u64, u64);

pub(crate) fn channel_mpmc_no_loss_no_duplicates<B: Backend>() {
    let producers = 4u64;
    let consumers = 4;
    let per_producer = stress(25_000) as u64; // >= 100k messages in all (in memory)
    let total = producers * per_producer;
    let (tx, rx) = B::channel::<u64>(256).unwrap();
    let mut senders = Vec::new();
    for p in 0..producers {
        let tx = tx.clone();
        senders.push(
            B::spawn(move || {
                for i in 0..per_producer {
                    tx.send(p * per_producer + i).unwrap();
                }
            })
            .unwrap(),
        );
    }
    let mut receivers = Vec::new();
    for _ in 0..consumers {
        let rx = rx.clone();
        receivers.push(
            B::spawn(move || -> Tally {
                let (mut count, mut sum, mut squares) = (0u64, 0u64, 0u64);
                while let Ok(v) = rx.recv() {
                    count += 1;
                    sum = sum.wrapping_add(v);
                    squares = squares.wrapping_add(v.wrapping_mul(v));
                }
                (count, sum, squares)
            })
            .unwrap(),
        );
    }
    // Our own handles must go, or the consumers would never see the disconnection.
    drop(tx);
    drop(rx);
    for s in senders {
        s.join().unwrap();
    }
    let (mut count, mut sum, mut squares) = (0u64, 0u64, 0u64);
    for r in receivers {
        let (c, s, q) = r.join().unwrap();
        count += c;
        sum = sum.wrapping_add(s);
        squares = squares.wrapping_add(q);
    }
    let expected_sum = (0..total).fold(0u64, |a, v| a.wrapping_add(v));
    let expected_squares = (0..total).fold(0u64, |a, v| a.wrapping_add(v.wrapping_mul(v)));
    assert_eq!(count, total, "every message received exactly once (count)");
    assert_eq!(sum, expected_sum, "no message lost or duplicated (sum)");
    assert_eq!(
        squares, expected_squares,
        "no message lost or duplicated (sum of squares)"
    );
}

pub(crate) fn channel_try_forms_full_and_empty<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(2).unwrap();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    match tx.try_send(3) {
        Err(TrySendError::Full(v)) => assert_eq!(v, 3),
        other => panic!("expected Full(3), got {other:?}"),
    }
    assert_eq!(rx.try_recv(), Ok(1));
    tx.try_send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert!(rx.try_recv().unwrap_err().is_empty());
}

pub(crate) fn channel_timeouts<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    let start = Instant::now();
    assert_eq!(rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    assert!(
        start.elapsed() >= SHORT,
        "recv_timeout returned before its timeout"
    );
    tx.send(1).unwrap();
    let start = Instant::now();
    match tx.send_timeout(2, SHORT) {
        Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, 2),
        other => panic!("expected Timeout(2), got {other:?}"),
    }
    assert!(
        start.elapsed() >= SHORT,
        "send_timeout returned before its timeout"
    );
    // A timed receive that succeeds, and one woken by another unit.
    assert_eq!(rx.recv_timeout(SHORT), Ok(1));
    let tx2 = tx.clone();
    let h = B::spawn(move || {
        crate::support::pause();
        tx2.send(5).unwrap();
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(LONG), Ok(5));
    h.join().unwrap();
}

pub(crate) fn channel_capacity_zero_refused<B: Backend>() {
    let err = B::channel::<u64>(0)
        .err()
        .expect("capacity 0 must be refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let rule = uniconc_core::validate::channel_capacity(0).unwrap_err();
    assert_eq!(
        err.to_string(),
        rule.to_string(),
        "one message on every backend"
    );
    assert!(B::channel::<u64>(1).is_ok());
}

pub(crate) fn channel_close_drains_then_disconnects<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    assert!(!tx.is_closed() && !rx.is_closed());
    tx.close();
    assert!(tx.is_closed() && rx.is_closed());
    match tx.send(9) {
        Err(SendError::Disconnected(v)) => assert_eq!(v, 9),
        other => panic!("expected Disconnected(9), got {other:?}"),
    }
    assert!(tx.try_send(10).unwrap_err().is_disconnected());
    for i in 0..3 {
        assert_eq!(rx.recv(), Ok(i), "queued messages are drained after close");
    }
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv_timeout(SHORT), Err(RecvTimeoutError::Disconnected));
}

pub(crate) fn channel_close_from_another_unit_wakes_receiver<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    let rx2 = rx.clone();
    // Blocks in recv until the channel is closed; returns how many it got first.
    let waiter = B::spawn(move || {
        let mut got = 0u64;
        while rx2.recv().is_ok() {
            got += 1;
        }
        got
    })
    .unwrap();
    tx.send(1).unwrap();
    pause();
    let closer = B::spawn(move || tx.close()).unwrap();
    closer.join().unwrap();
    assert_eq!(waiter.join().unwrap(), 1);
    assert!(rx.is_closed());
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

pub(crate) fn channel_close_wakes_blocked_sender<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    tx.send(1).unwrap();
    let tx2 = tx.clone();
    // Blocks in send (the channel is full) until the close; returns the value it got back.
    let blocked = B::spawn(move || match tx2.send(2) {
        Err(e) => e.into_inner(),
        Ok(()) => 0,
    })
    .unwrap();
    pause();
    tx.close();
    assert_eq!(
        blocked.join().unwrap(),
        2,
        "the blocked sender got its value back"
    );
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

pub(crate) fn channel_all_senders_dropped<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let tx2 = tx.clone();
    let producer = B::spawn(move || {
        for i in 0..10 {
            tx2.send(i).unwrap();
        }
        // tx2 is dropped as the unit ends.
    })
    .unwrap();
    drop(tx);
    let got: Vec<u64> = (0..10).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    producer.join().unwrap();
    assert_eq!(rx.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert!(rx.is_closed());
}

pub(crate) fn channel_all_receivers_dropped<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let rx2 = rx.clone();
    let consumer = B::spawn(move || rx2.recv().unwrap()).unwrap();
    tx.send(7).unwrap();
    assert_eq!(consumer.join().unwrap(), 7);
    drop(rx);
    match tx.send(5) {
        Err(SendError::Disconnected(v)) => assert_eq!(v, 5),
        other => panic!("expected Disconnected(5), got {other:?}"),
    }
    assert!(tx.try_send(6).unwrap_err().is_disconnected());
    assert!(tx.send_timeout(8, SHORT).unwrap_err().is_disconnected());
    assert!(tx.is_closed());
}

pub(crate) fn channel_iter_ends_at_disconnection<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    let producer = B::spawn(move || {
        for i in 0..100 {
            tx.send(i).unwrap();
        }
    })
    .unwrap();
    let got: Vec<u64> = rx.iter().collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    producer.join().unwrap();
}

pub(crate) fn channel_try_iter_does_not_block<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    let got: Vec<u64> = rx.try_iter().collect();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(
        rx.try_iter().count(),
        0,
        "nothing queued: ends at once (tx is alive)"
    );
}

pub(crate) fn channel_len_and_capacity<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    assert_eq!(tx.capacity(), Some(4));
    assert_eq!(rx.capacity(), Some(4));
    assert!(tx.is_empty() && rx.is_empty());
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.len(), 2);
    assert_eq!(rx.len(), 2);
    rx.recv().unwrap();
    assert_eq!(rx.len(), 1);
    let (utx, urx) = B::unbounded::<u64>().unwrap();
    assert_eq!(utx.capacity(), None);
    assert_eq!(urx.capacity(), None);
    utx.send(1).unwrap();
    assert_eq!(urx.len(), 1);
    assert!(!urx.is_empty());
}

pub(crate) fn channel_unbounded_holds_many<B: Backend>() {
    let n = 20_000 * scale() as u64;
    let (tx, rx) = B::unbounded::<u64>().unwrap();
    for i in 0..n {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.len() as u64, n);
    drop(tx);
    assert_eq!(
        rx.iter().fold((0u64, 0u64), |(c, s), v| (c + 1, s + v)),
        (n, n * (n - 1) / 2)
    );
}

pub(crate) fn channel_error_values_are_returned<B: Backend>() {
    // Non-Copy payloads come back intact in every send error.
    let (tx, rx) = B::channel::<String>(1).unwrap();
    tx.send("first".to_owned()).unwrap();
    assert_eq!(
        tx.try_send("full".to_owned()).unwrap_err().into_inner(),
        "full"
    );
    assert_eq!(
        tx.send_timeout("late".to_owned(), SHORT)
            .unwrap_err()
            .into_inner(),
        "late"
    );
    drop(rx);
    assert_eq!(tx.send("gone".to_owned()).unwrap_err().into_inner(), "gone");
}

pub(crate) fn channel_is_full_and_same_channel<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(2).unwrap();
    let (other_tx, other_rx) = B::channel::<u64>(2).unwrap();
    assert!(!tx.is_full() && !rx.is_full());
    tx.send(1).unwrap();
    assert!(!tx.is_full() && !rx.is_full());
    tx.send(2).unwrap();
    assert!(tx.is_full() && rx.is_full());
    assert!(tx.clone().is_full(), "every clone sees the same channel");
    assert_eq!(rx.recv().unwrap(), 1);
    assert!(!tx.is_full() && !rx.is_full());
    let (utx, urx) = B::unbounded::<u64>().unwrap();
    for i in 0..100 {
        utx.send(i).unwrap();
    }
    assert!(
        !utx.is_full() && !urx.is_full(),
        "an unbounded channel is never full"
    );

    assert!(tx.same_channel(&tx) && tx.same_channel(&tx.clone()));
    assert!(rx.same_channel(&rx) && rx.same_channel(&rx.clone()));
    assert!(!tx.same_channel(&other_tx) && !rx.same_channel(&other_rx));
    assert!(!tx.same_channel(&utx) && !rx.same_channel(&urx));
    // In another unit (a forked child on processes): its copies and clones it makes still
    // compare equal with the handles it was given, and unequal with another channel's.
    let h = {
        let (tx_a, tx_b, rx_a, rx_b) = (tx.clone(), tx.clone(), rx.clone(), rx.clone());
        let (other_tx, other_rx) = (other_tx.clone(), other_rx.clone());
        B::spawn(move || {
            [
                tx_a.same_channel(&tx_b),
                tx_a.same_channel(&tx_b.clone()),
                rx_a.same_channel(&rx_b),
                rx_b.clone().same_channel(&rx_a),
                !tx_a.same_channel(&other_tx),
                !rx_a.same_channel(&other_rx),
            ]
        })
        .unwrap()
    };
    assert_eq!(h.join().unwrap(), [true; 6]);
}

/// `for x in &rx` in generic code needs this bound (met by every backend); `for x in rx`
/// needs none beyond `B: Backend`.
pub(crate) fn channel_receiver_into_iterator<B: Backend>()
where
    for<'a> &'a B::Receiver<u64>: IntoIterator<Item = u64>,
{
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    tx.close();
    let mut seen = Vec::new();
    for x in &rx {
        seen.push(x);
    }
    assert_eq!(seen, [0, 1, 2, 3, 4], "`for x in &rx` drains, then ends");

    // The owning form, in another unit: ends once every sender is gone.
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let h = B::spawn(move || {
        let mut total = 0;
        for x in rx {
            total += x;
        }
        total
    })
    .unwrap();
    let n = 100 * scale() as u64;
    for i in 1..=n {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(h.join().unwrap(), n * (n + 1) / 2);
}

/// Runs its closure when dropped: a thread-local holding one runs it while the thread's
/// thread-locals are destroyed.
struct RunOnDrop(Option<Box<dyn FnOnce()>>);

impl Drop for RunOnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

std::thread_local! {
    static ON_THREAD_EXIT: std::cell::RefCell<RunOnDrop> =
        const { std::cell::RefCell::new(RunOnDrop(None)) };
}

/// Blocking calls that must wait work inside a thread-local's destructor (a thread that
/// exits while a thread-local's `Drop` sends or receives), where other thread-locals, the
/// backend's or its runtime's, may already be gone.
pub(crate) fn channel_blocking_calls_in_a_thread_local_destructor<B: Backend>() {
    let (entered_tx, entered_rx) = B::channel::<u64>(1).unwrap();
    let (full_tx, full_rx) = B::channel::<u64>(1).unwrap();
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    let (ack_tx, ack_rx) = B::channel::<u64>(1).unwrap();
    let (_idle_tx, idle_rx) = B::channel::<u64>(1).unwrap();
    full_tx.send(1).unwrap();
    let thread = std::thread::spawn(move || {
        // Registered first, so destroyed after whatever thread-locals the calls below set up.
        ON_THREAD_EXIT.with_borrow_mut(|slot| {
            slot.0 = Some(Box::new(move || {
                entered_tx.send(0).unwrap();
                full_tx.send(2).unwrap(); // waits: full until the test takes 1
                let v = rx.recv().unwrap(); // waits: the test sends after taking 2
                ack_tx.send(v + 1).unwrap();
            }));
        });
        // A wait on this thread before it exits: sets up whatever the backend's waits use.
        assert_eq!(idle_rx.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    });
    assert_eq!(entered_rx.recv_timeout(LONG), Ok(0));
    pause(); // lets the destructor reach its blocked send
    assert_eq!(full_rx.recv_timeout(LONG), Ok(1));
    assert_eq!(full_rx.recv_timeout(LONG), Ok(2));
    pause(); // lets the destructor reach its blocked receive
    tx.send(41).unwrap();
    assert_eq!(ack_rx.recv_timeout(LONG), Ok(42));
    thread.join().unwrap();
}

/// `try_recv` says `Empty` only when nothing is queued: units that each send one message and
/// then take one with `try_recv` (or `try_iter`), many times over a small channel, always find
/// one, though the front of the channel is often a message another unit is still sending.
pub(crate) fn channel_try_recv_after_send_is_never_empty<B: Backend>() {
    let units = 4;
    let rounds = stress(20_000) as u64;
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    let handles: Vec<_> = (0..units)
        .map(|_| {
            let (tx, rx) = (tx.clone(), rx.clone());
            B::spawn(move || -> Result<u64, String> {
                for i in 0..rounds {
                    tx.send(i).map_err(|e| format!("send {i}: {e}"))?;
                    let got = if i % 2 == 0 {
                        rx.try_recv()
                    } else {
                        rx.try_iter().next().ok_or(TryRecvError::Empty)
                    };
                    if let Err(e) = got {
                        return Err(format!("round {i}: {e:?}, {} queued", rx.len()));
                    }
                }
                Ok(rounds)
            })
            .unwrap()
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(rounds));
    }
    assert!(rx.is_empty());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// An unbounded channel grows with what is queued: 128 MiB of messages (times
/// `UNICONC_STRESS_SCALE`) are taken by `try_send` without `Full`, and come back in order.
pub(crate) fn channel_unbounded_holds_128_mib<B: Backend>() {
    const MSG: usize = 64 << 10;
    let n = ((128 << 20) / MSG * scale()) as u64;
    let msg = |i: u64| (i, char::from(b'a' + (i % 26) as u8).to_string().repeat(MSG));
    let (tx, rx) = B::unbounded::<(u64, String)>().unwrap();
    for i in 0..n {
        if let Err(e) = tx.try_send(msg(i)) {
            panic!("message {i} ({} MiB queued): {e:?}", (i * MSG as u64) >> 20);
        }
    }
    assert_eq!(rx.len() as u64, n);
    for i in 0..n {
        assert!(rx.try_recv() == Ok(msg(i)), "message {i} is back, in order");
    }
    assert!(rx.is_empty());
}
