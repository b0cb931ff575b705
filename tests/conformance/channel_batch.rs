//! `send_batch` and `recv_batch`: order and counts, `max == 0`, waiting for the first message
//! then taking what is queued, capacity, a disconnection part-way with several producers and
//! consumers (nothing lost or duplicated, the failed item and the rest handed back), and an
//! item the channel cannot carry in the middle of a batch.

use uniconc::prelude::*;
use uniconc::{JoinError, RecvError, RecvTimeoutError, SendError};

use crate::support::{LONG, SHORT, pause, scale};

/// A batch far larger than the capacity goes through in order, while the receiver drains it
/// in batches of at most `max`, each of at least one message.
pub(crate) fn channel_batch_order_and_counts<B: Backend>() {
    let n = 2_000 * scale() as u64;
    let (tx, rx) = B::channel::<u64>(64).unwrap();
    let producer = B::spawn(move || tx.send_batch(0..n).unwrap()).unwrap();
    let mut got = Vec::new();
    loop {
        let before = got.len();
        match rx.recv_batch(&mut got, 50) {
            Ok(k) => {
                assert!((1..=50).contains(&k), "a batch of {k}");
                assert_eq!(got.len(), before + k, "k is what was appended");
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("recv_batch: {e:?}"),
        }
    }
    assert_eq!(
        producer.join().unwrap(),
        n as usize,
        "every item counted as sent"
    );
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "in order, nothing lost or repeated"
    );
}

/// One batch's messages are every receiver's: receivers in other units take them one at a
/// time and in batches of any size, in order, while the rest stay queued for the others.
pub(crate) fn channel_batch_taken_apart_by_receivers<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(64).unwrap();
    assert_eq!(tx.send_batch(0..20), Ok(20));
    assert_eq!(rx.recv(), Ok(0));
    let other = rx.clone();
    let took = B::spawn(move || {
        let mut got = vec![other.recv().unwrap()];
        other.recv_batch(&mut got, 3).unwrap();
        got
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(took, [1, 2, 3, 4], "the next four, in order");
    assert_eq!(rx.len(), 15, "the rest stay queued");
    let mut rest = Vec::new();
    while rest.len() < 15 {
        rx.recv_batch(&mut rest, 6).unwrap();
    }
    assert_eq!(rest, (5..20).collect::<Vec<_>>());
    assert!(rx.is_empty());
}

/// `max == 0` takes nothing and returns at once, empty channel or not; the provided and
/// overridden forms agree on what is appended.
pub(crate) fn channel_batch_max_zero<B: Backend>() {
    let (tx, rx) = B::channel::<u32>(8).unwrap();
    let mut buf = vec![99];
    assert_eq!(rx.recv_batch(&mut buf, 0), Ok(0), "empty: no wait");
    assert_eq!(tx.send_batch([1, 2, 3]), Ok(3));
    assert_eq!(tx.send_batch(std::iter::empty()), Ok(0));
    assert_eq!(rx.recv_batch(&mut buf, 0), Ok(0));
    assert_eq!(buf, [99], "nothing taken, nothing cleared");
    assert_eq!(rx.len(), 3);
    assert_eq!(
        rx.recv_batch(&mut buf, 10),
        Ok(3),
        "everything queued, at once"
    );
    assert_eq!(buf, [99, 1, 2, 3], "appended after what was there");
}

/// `recv_batch` waits for the first message, then returns what is queued without waiting
/// for `max`.
pub(crate) fn channel_batch_blocks_until_one<B: Backend>() {
    let (tx, rx) = B::channel::<u32>(16).unwrap();
    let late = B::spawn({
        let tx = tx.clone();
        move || {
            pause();
            tx.send_batch([7, 8]).unwrap()
        }
    })
    .unwrap();
    let mut buf = Vec::new();
    let k = rx.recv_batch(&mut buf, 100).unwrap();
    assert!(k >= 1, "at least one message");
    assert_eq!(late.join().unwrap(), 2);
    if k == 1 {
        assert_eq!(rx.recv_batch(&mut buf, 100), Ok(1));
    }
    assert_eq!(buf, [7, 8]);
    // Queued before: all of it in one call, and no wait for more.
    tx.send_batch([1, 2, 3]).unwrap();
    assert_eq!(rx.recv_batch(&mut buf, 100), Ok(3));
    assert_eq!(buf, [7, 8, 1, 2, 3]);
    // Disconnected: what is queued first, then the error; nothing is appended by it.
    tx.send(4).unwrap();
    drop(tx);
    assert_eq!(rx.recv_batch(&mut buf, 100), Ok(1));
    assert_eq!(rx.recv_batch(&mut buf, 100), Err(RecvError::Disconnected));
    assert_eq!(buf, [7, 8, 1, 2, 3, 4]);
}

/// A batch larger than the capacity waits for room (it does not return before the receiver
/// takes some) and completes as the receiver drains.
pub(crate) fn channel_batch_respects_capacity<B: Backend>() {
    let (tx, rx) = B::channel::<u32>(4).unwrap();
    let mut producer = B::spawn(move || tx.send_batch(0..10).unwrap()).unwrap();
    // A correct channel holds 4 of the 10: the batch cannot have finished.
    assert!(
        matches!(producer.join_timeout(SHORT), Err(JoinError::Timeout)),
        "a batch of 10 finished into a channel of 4 with no receiver"
    );
    let mut got = Vec::new();
    while got.len() < 10 {
        let k = rx.recv_batch(&mut got, 3).unwrap();
        assert!((1..=3).contains(&k));
    }
    assert_eq!(producer.join_timeout(LONG).unwrap(), 10);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

/// (item that failed, the iterator's next item) of a producer whose batch was cut short;
/// `None` for a batch sent whole.
type Cut = Option<(u64, Option<u64>)>;

/// The channel is closed part-way through the batches of two producers, received by three
/// consumers in batches: each producer gets back the item that could not go, its iterator
/// holds the rest, and the messages received are exactly the ones sent before it, in order
/// per producer, each once.
pub(crate) fn channel_batch_disconnection_part_way<B: Backend>() {
    let per = 5_000 * scale() as u64;
    let (tx, rx) = B::channel::<u64>(16).unwrap();
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let tx = tx.clone();
            B::spawn(move || -> Cut {
                let mut items = p * per..(p + 1) * per;
                match tx.send_batch(&mut items) {
                    Ok(n) => {
                        assert_eq!(n as u64, per);
                        None
                    }
                    Err(e) => Some((e.into_inner(), items.next())),
                }
            })
            .unwrap()
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            B::spawn(move || {
                let mut got = Vec::new();
                while rx.recv_batch(&mut got, 7).is_ok() {}
                got
            })
            .unwrap()
        })
        .collect();
    // The third consumer: this test, which closes the channel part-way: once it has a
    // quarter of one producer's items, or (on a loaded machine the other two consumers may
    // take nearly everything) once nothing came for a while, the producers likely done; the
    // checks below hold either way.
    let mut mine = Vec::new();
    while mine.len() < per as usize / 4 {
        match rx.recv_timeout(SHORT * 10) {
            Ok(v) => mine.push(v),
            Err(RecvTimeoutError::Timeout) => break,
            Err(e) => panic!("the channel failed before the close: {e:?}"),
        }
    }
    tx.close();
    while rx.recv_batch(&mut mine, 5).is_ok() {}
    let cuts: Vec<Cut> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    let mut per_producer = vec![Vec::new(); 2];
    let mut all = mine.clone();
    let mut streams = vec![mine];
    for c in consumers {
        streams.push(c.join().unwrap());
    }
    for s in &streams {
        for p in 0..2u64 {
            let own: Vec<u64> = s.iter().copied().filter(|v| v / per == p).collect();
            assert!(
                own.is_sorted(),
                "a consumer saw producer {p}'s items out of order"
            );
        }
    }
    for s in streams.iter().skip(1) {
        all.extend(s);
    }
    all.sort_unstable();
    for v in all {
        per_producer[(v / per) as usize].push(v);
    }
    for (p, cut) in cuts.into_iter().enumerate() {
        let p = p as u64;
        let end = match cut {
            None => (p + 1) * per,
            Some((failed, next)) => {
                assert!(failed / per == p, "the failed item is the producer's");
                let expect = (failed + 1 < (p + 1) * per).then_some(failed + 1);
                assert_eq!(next, expect, "the rest stays in the iterator");
                failed
            }
        };
        assert_eq!(
            per_producer[p as usize],
            (p * per..end).collect::<Vec<_>>(),
            "producer {p}: received exactly what was sent, once each"
        );
    }
}

/// An item the channel cannot carry in the middle of a batch (too large on the process
/// backend; in-memory channels carry anything) comes back as `Invalid`, the items before it
/// sent, the ones after it still in the iterator.
pub(crate) fn channel_batch_invalid_in_the_middle<B: Backend>() {
    let (tx, rx) = B::channel::<Vec<u8>>(8).unwrap();
    let huge = vec![1u8; 64 << 20];
    let mut items = vec![vec![0u8; 3], vec![2u8; 10], huge, vec![3u8; 1]].into_iter();
    match tx.send_batch(&mut items) {
        Err(SendError::Invalid(v, _)) => {
            assert_eq!(v.len(), 64 << 20, "the item comes back whole");
            assert_eq!(items.next(), Some(vec![3u8; 1]), "the rest stays");
            let mut got = Vec::new();
            assert_eq!(rx.recv_batch(&mut got, 8), Ok(2));
            assert_eq!(
                got,
                [vec![0u8; 3], vec![2u8; 10]],
                "the ones before it were sent"
            );
        }
        Ok(n) => assert_eq!(n, 4, "a channel that carries it sends all four"),
        Err(e) => panic!("unexpected {e:?}"),
    }
}
