use super::*;
use loom::sync::Arc;

struct Shared {
    hdr: RingHeader,
    ctl: Vec<CellCtl>,
    data: std::cell::UnsafeCell<Vec<u8>>,
    cache: Cache,
}
// SAFETY: the bytes are only accessed through the ring protocol under test.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A model with room for the retry loops (each poll is a few branches); the preemption
/// bound comes from `LOOM_MAX_PREEMPTIONS`.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.check(f);
}

impl Shared {
    fn new(n: usize) -> Self {
        Self {
            hdr: RingHeader::default(),
            ctl: (0..n).map(|_| CellCtl::default()).collect(),
            data: std::cell::UnsafeCell::new(vec![0; n * CELL]),
            cache: Cache::default(),
        }
    }
    fn ring(&self) -> Ring<'_> {
        // SAFETY: n * CELL bytes owned by self, accessed only through rings over self.
        unsafe {
            Ring::new(
                &self.hdr,
                &self.ctl,
                (*self.data.get()).as_mut_ptr(),
                &self.cache,
            )
        }
    }
}

/// Runs `f` on the shared ring in each of `n` new threads.
fn on_threads<R: Send + 'static>(
    s: &Arc<Shared>,
    n: usize,
    f: impl Fn(&Ring<'_>) -> R + Copy + Send + 'static,
) -> Vec<loom::thread::JoinHandle<R>> {
    (0..n)
        .map(|_| {
            let s = s.clone();
            loom::thread::spawn(move || f(&s.ring()))
        })
        .collect()
}

fn push_val(r: &Ring<'_>, v: u8, len: usize) {
    loop {
        let res = r.try_push(len, None, &SendWords::default(), &AtomicU64::new(0), |b| {
            b.fill(v);
            true
        });
        if res.is_ok() {
            return;
        }
        loom::thread::yield_now();
    }
}

fn pop_val(r: &Ring<'_>) -> Option<(u8, usize)> {
    match r.try_pop(
        &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
        |rec| match rec {
            Record::Bytes(b) => {
                assert!(b.iter().all(|&x| x == b[0]), "torn record");
                (b[0], b.len())
            }
            Record::Corrupt => panic!("corrupt"),
        },
    ) {
        Pop::Item(v) => Some(v),
        _ => None,
    }
}

fn pop_one(r: &Ring<'_>) -> (u8, usize) {
    loop {
        if let Some(v) = pop_val(r) {
            return v;
        }
        loom::thread::yield_now();
    }
}

/// One producer writes a one-cell then a two-cell record on a two-cell ring (so the second
/// needs a skip record and the whole ring); the consumer gets both, whole, in order.
#[test]
fn loom_spsc_multi_cell_record_wraps() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let s1 = s.clone();
        let p = loom::thread::spawn(move || {
            let r = s1.ring();
            push_val(&r, 1, 8);
            push_val(&r, 2, CELL + 8);
        });
        let r = s.ring();
        assert_eq!(pop_one(&r), (1, 8));
        assert_eq!(pop_one(&r), (2, CELL + 8));
        p.join().unwrap();
        assert!(r.is_empty());
    });
}

/// Two producers race for the tail; every record arrives once.
#[test]
fn loom_two_producers() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let hs: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|v| {
                let s = s.clone();
                loom::thread::spawn(move || push_val(&s.ring(), v, 8))
            })
            .collect();
        let r = s.ring();
        let mut got = vec![pop_one(&r).0, pop_one(&r).0];
        for h in hs {
            h.join().unwrap();
        }
        got.sort();
        assert_eq!(got, vec![1, 2]);
    });
}

/// Two consumers read the two records of a full two-cell ring, possibly out of order;
/// the producer's next two pushes need both cells back (through the in-order completion or
/// the sweep of a record read early).
#[test]
fn loom_out_of_order_completion() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        push_val(&r, 1, 8);
        push_val(&r, 2, 8);
        let hs = on_threads(&s, 2, |r| pop_one(r).0);
        push_val(&r, 3, 8);
        push_val(&r, 4, 8);
        let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(pop_one(&r).0, 3);
        assert_eq!(pop_one(&r).0, 4);
        assert!(r.is_empty());
    });
}

/// A consumer dies holding the first of two records while another reads the second; two
/// reapers finish the first while the producer waits for both cells: every cell comes
/// back, every message is counted once.
#[test]
fn loom_recover_a_dead_consumers_record() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        push_val(&r, 1, 8);
        push_val(&r, 2, 8);
        let (h, _) = r.claim(&AtomicU64::new(0)).expect("published");
        let b = on_threads(&s, 1, |r| pop_one(r).0).remove(0);
        let reapers = on_threads(&s, 2, move |r| r.recover(h));
        push_val(&r, 3, 8);
        push_val(&r, 4, 8);
        assert_eq!(b.join().unwrap(), 2);
        for t in reapers {
            t.join().unwrap();
        }
        assert_eq!(pop_one(&r).0, 3);
        assert_eq!(pop_one(&r).0, 4);
        assert!(r.is_empty());
        let recvd = s.hdr.done.recvd.load(Ordering::Relaxed);
        assert_eq!(recvd, 4, "each message counted once");
    });
}

/// Two producers died around position 0: one claimed it (and a slot), the other took a
/// slot and lost its claim of 0. Their reapers settle them concurrently while a live
/// message follows: the consumer gets it, and the slots balance (one counted through the
/// lost record, one given back), whichever reaper publishes.
#[test]
fn loom_two_reapers_settle_dead_producers() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        r.reserve(None).unwrap();
        r.reserve(None).unwrap();
        s.hdr.prod.tail.store(1, Ordering::Relaxed);
        push_val(&r, 2, 8);
        let reapers = on_threads(&s, 2, |r| r.recover_send(1, 1 | SPAN_MESSAGE, 0));
        assert_eq!(pop_one(&r), (2, 8));
        for t in reapers {
            t.join().unwrap();
        }
        assert!(r.is_empty());
        let sent = s.hdr.prod.sent.load(Ordering::Relaxed);
        assert_eq!(sent, s.hdr.done.recvd.load(Ordering::Relaxed));
    });
}

/// Two consumers race for the head while the producer frees and reuses cells.
#[test]
fn loom_two_consumers() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        push_val(&r, 1, 8);
        let hs = on_threads(&s, 2, |r| pop_one(r).0);
        push_val(&r, 2, 8);
        let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert!(r.is_empty());
    });
}

/// Pushes the one-byte records `vals` (one cell each) with batch claims.
fn push_batch_vals(r: &Ring<'_>, words: &SendWords, vals: &[u8]) {
    let mut sent = 0;
    while sent < vals.len() {
        let left = (vals.len() - sent) as u64;
        match r.claim_batch(None, words, 1, left, left) {
            Ok(mut b) => {
                while sent < vals.len() {
                    let v = vals[sent];
                    match b.push(1, |buf| {
                        buf[0] = v;
                        true
                    }) {
                        Some(true) => sent += 1,
                        _ => break,
                    }
                }
            }
            Err(_) => loom::thread::yield_now(),
        }
    }
}

/// One range claim of up to `max` messages.
fn pop_range(r: &Ring<'_>, max: usize) -> Vec<u8> {
    let mut got = Vec::new();
    r.try_pop_batch(
        &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
        max,
        |rec| match rec {
            Record::Bytes(b) => got.push(b[0]),
            Record::Corrupt => panic!("corrupt"),
        },
    );
    got
}

/// A batch producer fills a two-cell ring with one claim while a consumer takes ranges; the
/// producer's next batch needs both cells back (the range completion, SYNC POINT B), and
/// every record arrives whole, once, in order.
#[test]
fn loom_batch_producer_and_range_consumer() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let c = on_threads(&s, 1, |r| {
            let mut got = Vec::new();
            while got.len() < 4 {
                let more = pop_range(r, 2);
                if more.is_empty() {
                    loom::thread::yield_now();
                }
                got.extend(more);
            }
            got
        })
        .remove(0);
        let r = s.ring();
        let words = SendWords::default();
        push_batch_vals(&r, &words, &[1, 2]);
        push_batch_vals(&r, &words, &[3, 4]);
        assert_eq!(c.join().unwrap(), vec![1, 2, 3, 4]);
        assert!(r.is_empty());
        assert_eq!(r.queued(), 0);
    });
}

/// A single consumer and a range consumer race for three records; whoever completes last,
/// the producer gets all four cells back (a range completed out of order is stamped `READ`
/// record by record, its first last, and swept whole).
#[test]
fn loom_range_completed_out_of_order_is_swept() {
    model(|| {
        let s = Arc::new(Shared::new(4));
        let r = s.ring();
        for v in 1..=3 {
            push_val(&r, v, 8);
        }
        let a = on_threads(&s, 1, |r| pop_val(r).map(|(v, _)| v)).remove(0);
        let b = on_threads(&s, 1, |r| pop_range(r, 3)).remove(0);
        let mut got: Vec<u8> = b.join().unwrap();
        got.extend(a.join().unwrap());
        while got.len() < 3 {
            got.push(pop_one(&r).0);
        }
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        let words = SendWords::default();
        push_batch_vals(&r, &words, &[4, 5, 6, 7]);
        let mut rest = Vec::new();
        while rest.len() < 4 {
            rest.extend(pop_range(&r, 4));
        }
        assert_eq!(rest, vec![4, 5, 6, 7]);
        assert_eq!(r.queued(), 0);
    });
}

/// A consumer died holding a range of two records; two reapers settle it while the producer
/// waits for both cells: the cells come back and the two messages are counted once.
#[test]
fn loom_recover_a_dead_consumers_range() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        push_val(&r, 1, 8);
        push_val(&r, 2, 8);
        // The dead consumer's claim: head moved past both, its words name the range.
        s.hdr.head.store(2, Ordering::Relaxed);
        let span = 2 | 2 << 32;
        let reapers = on_threads(&s, 2, move |r| r.recover_range(0, span));
        push_val(&r, 3, 8);
        push_val(&r, 4, 8);
        let finished: Vec<bool> = reapers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(finished.iter().filter(|&&f| f).count(), 1, "finished once");
        assert_eq!(pop_one(&r).0, 3);
        assert_eq!(pop_one(&r).0, 4);
        assert_eq!(
            s.hdr.done.recvd.load(Ordering::Relaxed),
            4,
            "counted once each"
        );
    });
}

/// A batch producer died after publishing the first of its two records; a reaper settles
/// its claim while a consumer reads: the published record arrives, the rest is passed over,
/// the slots balance.
#[test]
fn loom_recover_a_dead_batch_producer() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        let words = SendWords::default();
        let mut b = r.claim_batch(None, &words, 1, 2, 2).expect("room");
        assert_eq!(
            b.push(1, |buf| {
                buf[0] = 1;
                true
            }),
            Some(true)
        );
        words
            .progress
            .store(Progress::new(1, 1, 1, true, false).0, Ordering::Relaxed);
        std::mem::forget(b); // killed while writing the second
        let (pos, span, prog) = (
            words.pos.load(Ordering::Relaxed),
            words.span.load(Ordering::Relaxed),
            words.progress.load(Ordering::Relaxed),
        );
        let reaper = on_threads(&s, 1, move |r| r.recover_send(pos, span, prog)).remove(0);
        assert_eq!(pop_one(&r), (1, 1));
        assert!(reaper.join().unwrap());
        // The padding at position 1 is passed by the next receive.
        push_val(&r, 2, 8);
        assert_eq!(pop_one(&r).0, 2);
        push_val(&r, 3, 8);
        assert_eq!(pop_one(&r).0, 3);
        let sent = s.hdr.prod.sent.load(Ordering::Relaxed);
        assert_eq!(sent, s.hdr.done.recvd.load(Ordering::Relaxed));
    });
}

/// A producer published its record at 0 and died before clearing its words (they still
/// name position 0). Its reaper runs while a consumer reads that record and a live producer
/// reuses the cell for position 2: the reaper must see the record as published (and give
/// the slot back), never publish padding over the later lap's record.
#[test]
fn loom_recover_a_dead_producer_whose_record_was_read_and_reused() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        // The dead producer's record, published; its words still say `pos = 0 + 1`.
        push_val(&r, 1, 8);
        let reaper = on_threads(&s, 1, |r| r.recover_send(1, 1 | SPAN_MESSAGE, 0)).remove(0);
        assert_eq!(pop_one(&r), (1, 8));
        push_val(&r, 2, 8);
        push_val(&r, 3, 8); // position 2: cell 0 again
        assert!(
            !reaper.join().unwrap(),
            "nothing to publish: the record was published"
        );
        assert_eq!(pop_val(&r), Some((2, 8)));
        assert_eq!(
            pop_val(&r),
            Some((3, 8)),
            "the later lap's record is intact"
        );
        assert!(r.is_empty());
        // Its slot was given back (settled as if it held one more): one more read than sent.
        let sent = s.hdr.prod.sent.load(Ordering::Relaxed);
        assert_eq!(sent + 1, s.hdr.done.recvd.load(Ordering::Relaxed));
    });
}

/// The same for a batch producer that published both records of its claim and died before
/// clearing its words: while its reaper runs, a consumer reads both and a live producer
/// reuses their cells; the reaper publishes nothing and gives no slot back.
#[test]
fn loom_recover_a_dead_batch_producer_whose_records_were_read_and_reused() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let r = s.ring();
        let words = SendWords::default();
        let mut b = r.claim_batch(None, &words, 1, 2, 2).expect("room");
        for v in [1, 2] {
            assert_eq!(
                b.push(1, |buf| {
                    buf[0] = v;
                    true
                }),
                Some(true)
            );
        }
        std::mem::forget(b); // killed before clearing its words
        let (pos, span, prog) = (
            words.pos.load(Ordering::Relaxed),
            words.span.load(Ordering::Relaxed),
            words.progress.load(Ordering::Relaxed),
        );
        let reaper = on_threads(&s, 1, move |r| r.recover_send(pos, span, prog)).remove(0);
        assert_eq!(pop_one(&r), (1, 1));
        assert_eq!(pop_one(&r), (2, 1));
        push_val(&r, 3, 8); // positions 2 and 3: cells 0 and 1 again
        push_val(&r, 4, 8);
        assert!(!reaper.join().unwrap(), "nothing to publish");
        assert_eq!(pop_val(&r), Some((3, 8)));
        assert_eq!(pop_val(&r), Some((4, 8)));
        let sent = s.hdr.prod.sent.load(Ordering::Relaxed);
        assert_eq!(sent, s.hdr.done.recvd.load(Ordering::Relaxed));
    });
}

/// Sends `vals` (one-byte messages) in one pack.
fn push_pack_vals(r: &Ring<'_>, words: &SendWords, vals: &[u8]) {
    loop {
        match r.claim_batch(None, words, 1, vals.len() as u64, 1) {
            Ok(mut b) => {
                for &v in vals {
                    let room = b.pack_room().expect("room for the pack");
                    room[..2].copy_from_slice(&[1, v]);
                    b.packed(2);
                }
                return;
            }
            Err(_) => loom::thread::yield_now(),
        }
    }
}

/// A consumer taking ranges of two and one taking single messages race for a pack of three
/// as it is published (the second consumer is its producer), then the producer reuses the
/// ring: the consumers hold the pack in turn (the model checks that each holder's accesses
/// of its bytes follow the producer's writes and the last holder's, SYNC POINT A, and come
/// before the next lap's writes, SYNC POINT B); every message arrives once, and the ring is
/// whole again.
#[test]
fn loom_a_pack_taken_apart_by_two_consumers() {
    model(|| {
        let s = Arc::new(Shared::new(2));
        let range = on_threads(&s, 1, |r| {
            loop {
                let got = pop_range(r, 2);
                if !got.is_empty() {
                    return got;
                }
                loom::thread::yield_now();
            }
        })
        .remove(0);
        let r = s.ring();
        let words = SendWords::default();
        push_pack_vals(&r, &words, &[1, 2, 3]);
        let mut got = vec![pop_one(&r).0];
        got.extend(range.join().unwrap());
        while got.len() < 3 {
            got.push(pop_one(&r).0);
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
        push_pack_vals(&r, &words, &[4, 5]);
        assert_eq!(pop_range(&r, 5), [4, 5]);
        assert!(pop_val(&r).is_none());
        assert!(r.is_empty());
        assert_eq!(r.queued(), 0);
    });
}
