//! Byte messages written and read in place: `send_with` and `recv_with` (with their `try_`,
//! `_timeout` forms) on channels of `Vec<u8>` and `Box<[u8]>`: round trips of every size
//! class, zero-length messages, order when mixed with plain `send`/`recv`, disconnection,
//! closures that panic (nothing lost, the channel still usable), and a length the channel can
//! never carry refused with an error naming `ChannelBuilder::byte_budget`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use uniconc::prelude::*;
use uniconc::{MessageError, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};

use crate::support::{SHORT, scale};

/// The bytes of message `i` of length `len`: every byte depends on both.
fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 31 + i * 7) as u8).collect()
}

/// Lengths around the ring's inline size (48 bytes), its cell (64), the varint classes of
/// the length prefix (250, 65 535) and a large one.
const LENGTHS: [usize; 10] = [1, 7, 44, 47, 48, 64, 250, 251, 4096, 65_536];

/// What `send_with` hands the closure is exactly `len` bytes; what it writes arrives intact,
/// through `recv_with` and through plain `recv`, from another unit, in order.
pub(crate) fn loan_round_trip_across_units<B: Backend>() {
    let rounds = 4 * scale();
    let (tx, rx) = B::channel::<Vec<u8>>(8).unwrap();
    let producer = B::spawn(move || {
        for r in 0..rounds {
            for (i, &len) in LENGTHS.iter().enumerate() {
                let src = pattern(r * 100 + i, len);
                let mut seen = 0;
                tx.send_with(len, |buf| {
                    seen = buf.len();
                    buf.copy_from_slice(&src);
                })
                .unwrap();
                assert_eq!(seen, len, "the closure gets exactly len bytes");
            }
        }
        true
    })
    .unwrap();
    for r in 0..rounds {
        for (i, &len) in LENGTHS.iter().enumerate() {
            let want = pattern(r * 100 + i, len);
            if i % 2 == 0 {
                let got = rx.recv_with(|b| b.to_vec()).unwrap();
                assert_eq!(got, want, "round {r}, length {len}, through recv_with");
            } else {
                assert_eq!(
                    rx.recv().unwrap(),
                    want,
                    "round {r}, length {len}, through recv"
                );
            }
        }
    }
    assert!(producer.join().unwrap());
    assert_eq!(rx.recv_with(|b| b.len()), Err(RecvError::Disconnected));
}

/// Plain sends and closure sends share one queue, in order; a zero-length message is a
/// message (an empty `Vec`, an empty slice for the closure).
pub(crate) fn loan_mixed_with_plain_forms_and_zero_length<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(16).unwrap();
    tx.send(vec![1]).unwrap();
    tx.send_with(0, |buf| assert!(buf.is_empty())).unwrap();
    tx.send_with(2, |buf| buf.copy_from_slice(&[2, 2])).unwrap();
    tx.send(Vec::new()).unwrap();
    tx.try_send_with(3, |buf| buf.fill(3)).unwrap();
    tx.send_with_timeout(1, SHORT, |buf| buf[0] = 4).unwrap();
    assert_eq!(rx.len(), 6);
    assert_eq!(rx.recv_with(|b| b.to_vec()), Ok(vec![1]));
    assert_eq!(rx.recv(), Ok(vec![]), "the zero-length closure send");
    assert_eq!(rx.try_recv_with(|b| b.to_vec()), Ok(vec![2, 2]));
    assert_eq!(
        rx.recv_with(|b| b.len()),
        Ok(0),
        "the zero-length plain send"
    );
    assert_eq!(
        rx.recv_with_timeout(SHORT, |b| b.to_vec()),
        Ok(vec![3, 3, 3])
    );
    assert_eq!(rx.recv(), Ok(vec![4]));
    assert!(rx.is_empty());

    // `Box<[u8]>` is a byte message too.
    let (tx, rx) = B::channel::<Box<[u8]>>(4).unwrap();
    tx.send_with(3, |buf| buf.copy_from_slice(b"abc")).unwrap();
    tx.send(b"de".to_vec().into_boxed_slice()).unwrap();
    assert_eq!(rx.recv(), Ok(b"abc".to_vec().into_boxed_slice()));
    assert_eq!(rx.recv_with(|b| b.to_vec()), Ok(b"de".to_vec()));
}

/// The `try_` and timed forms: `Full` without calling the closure, `Timeout` (its closure may
/// have run: the provided form fills a `Vec` before it waits) with nothing sent, `Empty` and
/// `Timeout` on an empty channel.
pub(crate) fn loan_try_and_timed_forms<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(1).unwrap();
    assert_eq!(rx.try_recv_with(|b| b.len()), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_with_timeout(SHORT, |b| b.len()),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send_with(1, |buf| buf[0] = 1).unwrap();
    assert_eq!(
        tx.try_send_with(1, |_| panic!("called on a full channel")),
        Err(TrySendError::Full(()))
    );
    let err = tx
        .send_with_timeout(1, SHORT, |buf| buf[0] = 2)
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(rx.recv_with(|b| b.to_vec()), Ok(vec![1]));
    assert!(rx.is_empty(), "no message came from the refused sends");
}

/// Every receiver gone: `send_with` fails with `Disconnected(())` without calling the
/// closure. Every sender gone (or `close`): `recv_with` drains what is queued, then fails
/// without calling its closure.
pub(crate) fn loan_disconnection<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(4).unwrap();
    drop(rx);
    assert_eq!(
        tx.send_with(4, |_| panic!("called with no receiver")),
        Err(SendError::Disconnected(()))
    );
    assert!(
        tx.try_send_with(4, |_| panic!("called with no receiver"))
            .unwrap_err()
            .is_disconnected()
    );

    let (tx, rx) = B::channel::<Vec<u8>>(4).unwrap();
    tx.send_with(2, |buf| buf.fill(9)).unwrap();
    tx.close();
    assert_eq!(
        tx.send_with(1, |_| panic!("called on a closed channel")),
        Err(SendError::Disconnected(()))
    );
    assert_eq!(
        rx.recv_with(|b| b.to_vec()),
        Ok(vec![9, 9]),
        "drained first"
    );
    assert_eq!(
        rx.recv_with(|_| panic!("called on a disconnected channel")),
        Err(RecvError::Disconnected)
    );
    assert_eq!(
        rx.try_recv_with(|_| panic!("called on a disconnected channel")),
        Err(TryRecvError::Disconnected)
    );

    let (tx, rx) = B::channel::<Vec<u8>>(4).unwrap();
    let producer = B::spawn(move || tx.send_with(3, |buf| buf.fill(5)).is_ok()).unwrap();
    assert!(producer.join().unwrap());
    assert_eq!(rx.recv_with(|b| b.to_vec()), Ok(vec![5, 5, 5]));
    assert_eq!(rx.recv_with(|b| b.len()), Err(RecvError::Disconnected));
}

/// A `send_with` closure that panics sends nothing; a `recv_with` closure that panics
/// consumes its message and nothing else. Either way the panic reaches the caller, every
/// other message is kept in order, and the channel goes on working, to its full capacity.
pub(crate) fn loan_panicking_closures_lose_nothing_else<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(3).unwrap();
    tx.send(vec![1]).unwrap();
    for len in [10, 100_000] {
        let sent = catch_unwind(AssertUnwindSafe(|| {
            tx.send_with(len, |buf| {
                buf[..len / 2].fill(0xee); // half written, then the panic
                panic!("fill failed");
            })
        }));
        assert!(sent.is_err(), "the panic reaches the caller");
    }
    tx.send_with(1, |buf| buf[0] = 2).unwrap();
    tx.send(vec![3]).unwrap();
    assert_eq!(rx.len(), 3, "the panicking sends took no room");
    assert_eq!(
        tx.try_send_with(1, |_| ()),
        Err(TrySendError::Full(())),
        "and the capacity is as it was"
    );

    assert_eq!(rx.recv_with(|b| b.to_vec()), Ok(vec![1]));
    let read = catch_unwind(AssertUnwindSafe(|| {
        rx.recv_with(|b| -> usize { panic!("read failed on {b:?}") })
    }));
    assert!(read.is_err(), "the panic reaches the caller");
    assert_eq!(
        rx.recv(),
        Ok(vec![3]),
        "the message after it is still there"
    );
    assert!(rx.is_empty(), "nothing half-written is visible");

    // The channel still carries every kind of message, to its capacity.
    for i in 0..3u8 {
        tx.send_with(50_000, |buf| buf.fill(i)).unwrap();
    }
    for i in 0..3u8 {
        assert_eq!(
            rx.recv_with(|b| b.iter().all(|&x| x == i) && b.len() == 50_000),
            Ok(true)
        );
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

/// A length the channel can never carry is refused before the closure runs, with
/// `Invalid((), TooLarge)`, whose message names `ChannelBuilder::byte_budget`; the channel is
/// unchanged. Every backend refuses a length no buffer can hold; the process backend also
/// one past its byte budget (1 MiB for this channel), which the others carry.
pub(crate) fn loan_oversized_len_is_refused_naming_byte_budget<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(4).unwrap();
    let refused = |e: SendError<()>| match e {
        SendError::Invalid((), m @ MessageError::TooLarge { size, limit }) => {
            assert!(size > limit, "{size} > {limit}");
            assert!(m.to_string().contains("ChannelBuilder::byte_budget"), "{m}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    };
    refused(
        tx.send_with(usize::MAX, |_| panic!("called for usize::MAX bytes"))
            .unwrap_err(),
    );
    match tx.try_send_with(usize::MAX, |_| panic!("called for usize::MAX bytes")) {
        Err(TrySendError::Invalid((), MessageError::TooLarge { .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }

    let len = 2 << 20;
    let mut called = false;
    match tx.send_with(len, |buf| {
        called = true;
        buf.fill(7);
    }) {
        Ok(()) => {
            assert!(called);
            assert_eq!(
                rx.recv_with(|b| b.len() == len && b.iter().all(|&x| x == 7)),
                Ok(true)
            );
        }
        Err(e) => {
            assert!(!called, "refused before the closure runs");
            refused(e);
        }
    }
    assert!(rx.is_empty());
    tx.send_with(4, |buf| buf.fill(1)).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(vec![1; 4]),
        "the channel still works"
    );
}
