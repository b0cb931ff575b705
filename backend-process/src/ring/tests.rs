use super::*;

struct Owned {
    hdr: RingHeader,
    ctl: Vec<CellCtl>,
    data: Vec<u8>,
    cache: Cache,
}

impl Owned {
    fn new(n: usize) -> Self {
        Self {
            hdr: RingHeader::default(),
            ctl: (0..n).map(|_| CellCtl::default()).collect(),
            data: vec![0; n * CELL],
            cache: Cache::default(),
        }
    }
    fn ring(&mut self) -> Ring<'_> {
        let data = self.data.as_mut_ptr();
        // SAFETY: `data` is n * CELL bytes owned by self, used only through this ring.
        unsafe { Ring::new(&self.hdr, &self.ctl, data, &self.cache) }
    }
}

fn push_bytes(r: &Ring<'_>, b: &[u8]) -> Result<bool, Full> {
    r.try_push(
        b.len(),
        None,
        &SendWords::default(),
        &AtomicU64::new(0),
        |buf| {
            buf.copy_from_slice(b);
            true
        },
    )
}

/// Pushes the one-byte record `[v]` into a ring bounded to `cap` messages.
fn push_one_of(r: &Ring<'_>, cap: u64, v: u8) -> Result<bool, Full> {
    r.try_push(
        1,
        Some(cap),
        &SendWords::default(),
        &AtomicU64::new(0),
        |b| {
            b[0] = v;
            true
        },
    )
}

fn pop_bytes(r: &Ring<'_>) -> Option<Vec<u8>> {
    match r.try_pop(
        &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
        |rec| match rec {
            Record::Bytes(b) => b.to_vec(),
            Record::Corrupt => panic!("corrupt"),
        },
    ) {
        Pop::Item(v) => Some(v),
        _ => None,
    }
}

#[test]
fn fifo_with_variable_sizes_and_wrap() {
    let mut o = Owned::new(8);
    let r = o.ring();
    for round in 0..50u8 {
        let a = vec![round; 10];
        let b = vec![round.wrapping_add(1); 3 * CELL - 5];
        assert_eq!(push_bytes(&r, &a), Ok(true));
        assert_eq!(push_bytes(&r, &b), Ok(true));
        assert_eq!(pop_bytes(&r).unwrap(), a);
        assert_eq!(pop_bytes(&r).unwrap(), b);
    }
    assert!(r.is_empty());
    assert!(pop_bytes(&r).is_none());
}

#[test]
fn inline_and_data_records_round_the_boundary() {
    let mut o = Owned::new(8);
    let r = o.ring();
    for round in 0..20u8 {
        for len in [
            0,
            1,
            INLINE - 1,
            INLINE,
            INLINE + 1,
            CELL,
            CELL + 1,
            2 * CELL,
        ] {
            let v: Vec<u8> = (0..len).map(|j| (j as u8) ^ round).collect();
            assert_eq!(push_bytes(&r, &v), Ok(true), "len {len}");
            assert_eq!(pop_bytes(&r).unwrap(), v, "len {len}");
        }
    }
    assert!(r.is_empty());
}

#[test]
fn full_then_free() {
    let mut o = Owned::new(4);
    let r = o.ring();
    for i in 0..4u8 {
        assert_eq!(push_bytes(&r, &[i]), Ok(true));
    }
    assert_eq!(push_bytes(&r, &[9]), Err(Full));
    assert_eq!(pop_bytes(&r).unwrap(), vec![0]);
    assert_eq!(push_bytes(&r, &[4]), Ok(true));
    for i in 1..5u8 {
        assert_eq!(pop_bytes(&r).unwrap(), vec![i]);
    }
}

#[test]
fn whole_ring_record_and_failed_write() {
    let mut o = Owned::new(4);
    let r = o.ring();
    assert_eq!(push_bytes(&r, &[1]), Ok(true));
    assert_eq!(pop_bytes(&r).unwrap(), vec![1]);
    let big = vec![7u8; 4 * CELL];
    // Needs a skip to the end, then the whole ring: full until the skip is consumed.
    assert_eq!(push_bytes(&r, &big), Err(Full));
    assert!(pop_bytes(&r).is_none());
    assert_eq!(push_bytes(&r, &big), Ok(true));
    assert_eq!(pop_bytes(&r).unwrap(), big);
    assert_eq!(
        r.try_push(5, None, &SendWords::default(), &AtomicU64::new(0), |_| {
            false
        }),
        Ok(false)
    );
    assert!(pop_bytes(&r).is_none());
    assert!(r.is_empty());
}

#[test]
fn corrupt_meta_is_reported_not_ub() {
    let mut o = Owned::new(4);
    {
        let r = o.ring();
        assert_eq!(push_bytes(&r, &[1]), Ok(true));
    }
    o.ctl[0].meta.store(SKIP | 1000, Ordering::Relaxed);
    let r = o.ring();
    assert!(matches!(
        r.try_pop(
            &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
            |rec| matches!(rec, Record::Corrupt)
        ),
        Pop::Item(true)
    ));
    assert!(r.is_empty());
    assert_eq!(
        push_bytes(&r, &[2]),
        Ok(true),
        "the corrupt cell was given back"
    );
}

/// A record read while an earlier one is still being read is given back by the producer
/// that needs its cells (the sweep), not lost.
#[test]
fn out_of_order_completion_is_swept() {
    let mut o = Owned::new(2);
    let r = o.ring();
    assert_eq!(push_bytes(&r, &[1]), Ok(true));
    assert_eq!(push_bytes(&r, &[2]), Ok(true));
    // The reader of 1 is still reading when another consumer takes and completes 2.
    let inner = r.try_pop(
        &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
        |rec| {
            let Record::Bytes(b) = rec else { panic!() };
            assert_eq!(b, [1]);
            pop_bytes(&r)
        },
    );
    assert!(matches!(inner, Pop::Item(Some(ref v)) if v == &[2]));
    assert_eq!(
        r.hdr.done.done.load(Ordering::Relaxed),
        1,
        "2 is marked, not done"
    );
    assert_eq!(r.queued(), 0);
    // Each push needs a cell of the previous lap: the second one only after the sweep.
    assert_eq!(push_bytes(&r, &[3]), Ok(true));
    assert_eq!(push_bytes(&r, &[4]), Ok(true));
    assert_eq!(push_bytes(&r, &[5]), Err(Full));
    assert_eq!(pop_bytes(&r).unwrap(), [3]);
    assert_eq!(pop_bytes(&r).unwrap(), [4]);
    assert!(r.is_empty());
}

#[test]
fn a_panicking_reader_gives_its_cells_back() {
    let mut o = Owned::new(2);
    let r = o.ring();
    for round in 0..4u8 {
        assert_eq!(push_bytes(&r, &[round]), Ok(true));
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.try_pop(
                &Taker::words(&AtomicU64::new(0), &AtomicU64::new(0)),
                |_| -> () { panic!("a Deserialize impl panics") },
            )
        }));
        assert!(res.is_err());
    }
    assert_eq!(r.queued(), 0);
    assert!(r.is_empty());
}

/// A write that panics (a `Serialize` impl) publishes padding and gives its message slot
/// back, so the consumers are not left waiting at its cells.
#[test]
fn a_panicking_write_leaves_no_hole() {
    let mut o = Owned::new(4);
    let r = o.ring();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.try_push(
            1,
            Some(1),
            &SendWords::default(),
            &AtomicU64::new(0),
            |_| -> bool { panic!("a Serialize impl panics") },
        )
    }));
    assert!(res.is_err());
    assert_eq!(r.queued(), 0);
    assert_eq!(push_bytes(&r, &[1]), Ok(true));
    assert_eq!(pop_bytes(&r).unwrap(), [1]);
    assert!(r.is_empty());
}

/// A consumer that dies holding a record (claimed, not completed) would keep its cells
/// for good; `recover` finishes it, counts it once however often it runs, and the
/// producers get the cells back.
#[test]
fn a_dead_consumers_record_is_recovered_once() {
    let mut o = Owned::new(2);
    let r = o.ring();
    let push = |v: u8| push_one_of(&r, 2, v);
    assert_eq!(push(1), Ok(true));
    assert_eq!(push(2), Ok(true));
    assert!(!r.recover(0), "not claimed yet: left alone");
    assert_eq!(r.queued(), 2);
    // A consumer claims 1 and dies; another reads 2 (out of order: marked, not done).
    let dead = AtomicU64::new(0);
    let (h, _) = r.claim(&dead).expect("published");
    assert_eq!((h, dead.load(Ordering::Relaxed)), (0, 1));
    assert_eq!(pop_bytes(&r).unwrap(), [2]);
    assert_eq!(
        push(3),
        Err(Full),
        "the dead consumer's record holds its cell"
    );
    assert!(r.recover(h));
    assert!(!r.recover(h), "finished once");
    assert_eq!(r.queued(), 0, "both read, each counted once");
    assert_eq!(push(3), Ok(true));
    assert_eq!(push(4), Ok(true));
    assert_eq!(push(5), Err(Full));
    assert!(
        !r.recover(h),
        "long finished, its cell rewritten: left alone"
    );
    assert_eq!(r.queued(), 2);
    assert_eq!(pop_bytes(&r).unwrap(), [3]);
    assert_eq!(pop_bytes(&r).unwrap(), [4]);
    assert!(r.is_empty());
    let counts = (
        r.hdr.prod.sent.load(Ordering::Relaxed),
        r.hdr.done.recvd.load(Ordering::Relaxed),
    );
    assert_eq!(counts, (4, 4), "each message counted once");
}

/// What a producer that died inside `try_push` leaves is settled from its words: a slot
/// taken with no cells claimed is given back; cells claimed and unpublished are published
/// as a lost record that counts the slot; a claim that lost its CAS gives its slot back.
#[test]
fn a_dead_producers_claim_is_settled() {
    let mut o = Owned::new(4);
    let r = o.ring();
    let sent = |r: &Ring<'_>| r.hdr.prod.sent.load(Ordering::Relaxed);
    // Died after taking a slot, before claiming cells.
    r.reserve(Some(2)).unwrap();
    assert!(!r.recover_send(RESERVING, 0, 0));
    assert_eq!(r.queued(), 0);
    // Died between claiming a cell (and a slot) and publishing it.
    r.reserve(Some(2)).unwrap();
    r.hdr.prod.tail.store(1, Ordering::Relaxed);
    assert_eq!(push_one_of(&r, 2, 7), Ok(true));
    assert!(pop_bytes(&r).is_none(), "behind the unpublished cell");
    assert_eq!(push_one_of(&r, 2, 8), Err(Full), "its slot counts");
    assert!(r.recover_send(1, 1 | SPAN_MESSAGE, 0));
    assert_eq!(
        pop_bytes(&r).unwrap(),
        [7],
        "the lost message is passed over"
    );
    assert_eq!(r.queued(), 0);
    // Its claim of position 2 lost (another producer published there), then it died.
    r.reserve(Some(2)).unwrap();
    assert_eq!(push_one_of(&r, 2, 9), Ok(true));
    assert!(!r.recover_send(3, 1 | SPAN_MESSAGE, 0));
    assert_eq!(pop_bytes(&r).unwrap(), [9]);
    assert_eq!(r.queued(), 0);
    assert_eq!(sent(&r), r.hdr.done.recvd.load(Ordering::Relaxed));
    assert!(r.is_empty());
}

/// With a soft end, an idle ring goes back to cell 0 when a record would cross it, and
/// the producer passes its skip record itself, so the whole ring is free at once; with
/// messages queued, records go on past the soft end.
#[test]
fn a_soft_end_keeps_an_idle_ring_at_its_start() {
    let mut o = Owned::new(16);
    let r = o.ring().with_soft_end(4);
    let tail = |r: &Ring<'_>| r.hdr.prod.tail.load(Ordering::Relaxed);
    for v in 0..40u8 {
        assert_eq!(push_bytes(&r, &[v]), Ok(true));
        assert!(tail(&r) % 16 <= 4, "record {v} kept to the first cells");
        assert_eq!(pop_bytes(&r).unwrap(), [v]);
    }
    // Just back at cell 0 (an idle crossing): every cell is free, not only those the
    // skip record's consumer would have given back.
    while tail(&r) % 16 != 4 {
        assert_eq!(push_bytes(&r, &[0]), Ok(true));
        assert_eq!(pop_bytes(&r).unwrap(), [0]);
    }
    assert_eq!(push_bytes(&r, &[0]), Ok(true));
    assert_eq!(tail(&r) % 16, 1, "back at cell 0");
    for v in 1..16u8 {
        assert_eq!(
            push_bytes(&r, &[v]),
            Ok(true),
            "record {v} past the soft end"
        );
    }
    assert_eq!(push_bytes(&r, &[16]), Err(Full));
    for v in 0..16u8 {
        assert_eq!(pop_bytes(&r).unwrap(), [v]);
    }
    assert!(r.is_empty());
}

/// A large record (`WARM` cells or more) that finds the ring idle goes back to cell 0 with no
/// soft end, so a consumer that keeps up reads every large record from the same cells; with
/// a record queued (or being read), it goes on after it; small records never move back.
#[test]
fn a_large_record_on_an_idle_ring_reuses_the_first_cells() {
    let n = 4 * WARM as usize;
    let mut o = Owned::new(n);
    let r = o.ring();
    let head = |r: &Ring<'_>| r.hdr.head.load(Ordering::Relaxed) % n as u64;
    let large = |v: u8| vec![v; WARM as usize * CELL - 10];
    for v in 0..20u8 {
        assert_eq!(push_bytes(&r, &[v]), Ok(true), "a small record first");
        assert_eq!(pop_bytes(&r).unwrap(), [v]);
        assert_eq!(push_bytes(&r, &large(v)), Ok(true));
        assert_eq!(head(&r), 0, "large record {v} at cell 0");
        assert_eq!(pop_bytes(&r).unwrap(), large(v));
    }
    // Queued behind another: after it, in order.
    assert_eq!(push_bytes(&r, &large(1)), Ok(true));
    assert_eq!(push_bytes(&r, &large(2)), Ok(true));
    assert_eq!(push_bytes(&r, &large(3)), Ok(true));
    assert_eq!(r.queued(), 3);
    for v in 1..=3 {
        assert_eq!(pop_bytes(&r).unwrap(), large(v));
    }
    assert!(r.is_empty());
    assert_eq!(
        r.hdr.prod.sent.load(Ordering::Relaxed),
        r.hdr.done.recvd.load(Ordering::Relaxed)
    );
}

/// Pushes `b` into a ring bounded to `cap` messages.
fn push_bytes_of(r: &Ring<'_>, cap: u64, b: &[u8]) -> Result<bool, Full> {
    r.try_push(
        b.len(),
        Some(cap),
        &SendWords::default(),
        &AtomicU64::new(0),
        |buf| {
            buf.copy_from_slice(b);
            true
        },
    )
}

/// On a bounded ring, a large record past `WARM_REACH` goes back to cell 0 with a record still
/// queued before it once the first cells are free for `cap` records of its size: a consumer
/// one record behind reads every record from the first `WARM_REACH` cells and one record of a
/// ring twice that size (four times round it, had it walked all of it), and a producer that fills the channel after such a move is stopped
/// by the capacity, not by cells. An unbounded ring walks all of its cells.
#[test]
fn a_large_record_goes_back_to_free_first_cells_with_records_queued() {
    let w = WARM as usize;
    let n = 2 * WARM_REACH as usize;
    let cap = 2;
    let mut o = Owned::new(n);
    let r = o.ring();
    // Where the last record written ends.
    let end = |r: &Ring<'_>| (r.hdr.prod.tail.load(Ordering::Relaxed) % n as u64) as usize;
    let large = |v: u8| vec![v; w * CELL - 10];
    assert_eq!(push_bytes_of(&r, cap, &large(0)), Ok(true));
    // Twice round the ring if it walked all of it.
    let records = 4 * n / w;
    for j in 1..=records {
        assert_eq!(
            push_bytes_of(&r, cap, &large(j as u8)),
            Ok(true),
            "record {j}"
        );
        assert_eq!(r.queued(), 2);
        let reach = WARM_REACH as usize + w;
        assert!(end(&r) <= reach, "record {j} ends at cell {}", end(&r));
        assert_eq!(pop_bytes(&r).unwrap(), large((j - 1) as u8));
    }
    // The consumer stops: the capacity, not the cells, stops the producer.
    assert_eq!(push_bytes_of(&r, cap, &large(1)), Ok(true));
    assert_eq!(push_bytes_of(&r, cap, &large(2)), Err(Full));
    assert_eq!(r.queued(), 2);
    for v in [records as u8, 1] {
        assert_eq!(pop_bytes(&r).unwrap(), large(v));
    }
    assert!(r.is_empty());
    // Unbounded: no such move while records are queued.
    let mut o = Owned::new(n);
    let r = o.ring();
    assert_eq!(push_bytes(&r, &large(0)), Ok(true));
    let mut seen = 0;
    for j in 1..=n / w {
        assert_eq!(push_bytes(&r, &large(j as u8)), Ok(true));
        seen = seen.max(end(&r));
        assert_eq!(pop_bytes(&r).unwrap(), large((j - 1) as u8));
    }
    assert_eq!(seen, n - w, "an unbounded ring walks all of its cells");
}

/// A producer killed while it passes its skip record back from the soft end (claimed as
/// a consumer, not completed) is settled by `recover` from its consumer claim word.
#[test]
fn a_skip_passed_by_a_dead_producer_is_recovered() {
    let mut o = Owned::new(8);
    let r = o.ring().with_soft_end(2);
    for v in 0..2u8 {
        assert_eq!(push_bytes(&r, &[v]), Ok(true));
        assert_eq!(pop_bytes(&r).unwrap(), [v]);
    }
    // What a producer killed between the claim and the completion leaves.
    r.reserve(None).unwrap();
    r.hdr.prod.tail.store(8, Ordering::Relaxed);
    r.publish(2, SKIP | 6);
    let word = AtomicU64::new(3);
    r.hdr.head.store(8, Ordering::Release);
    assert_eq!(r.hdr.done.done.load(Ordering::Relaxed), 2);
    assert!(r.recover(word.load(Ordering::Relaxed) - 1));
    assert_eq!(r.hdr.done.done.load(Ordering::Relaxed), 8);
    r.unreserve();
    for v in 0..8u8 {
        assert_eq!(push_bytes(&r, &[v]), Ok(true));
    }
    for v in 0..8u8 {
        assert_eq!(pop_bytes(&r).unwrap(), [v]);
    }
}

#[test]
fn the_message_cap_bounds_apart_from_the_cells() {
    let mut o = Owned::new(8);
    let r = o.ring();
    let push = |v: u8| push_one_of(&r, 2, v);
    assert_eq!(push(1), Ok(true));
    assert_eq!(push(2), Ok(true));
    assert_eq!(push(3), Err(Full));
    assert_eq!(r.queued(), 2, "the refused reservation was undone");
    assert_eq!(pop_bytes(&r).unwrap(), [1]);
    assert_eq!(push(3), Ok(true));
    assert_eq!(
        r.try_push(
            1,
            Some(2),
            &SendWords::default(),
            &AtomicU64::new(0),
            |_| false
        ),
        Err(Full)
    );
    assert_eq!(pop_bytes(&r).unwrap(), [2]);
    assert_eq!(
        r.try_push(
            1,
            Some(2),
            &SendWords::default(),
            &AtomicU64::new(0),
            |_| false
        ),
        Ok(false)
    );
    assert_eq!(r.queued(), 1, "a failed write gives its slot back");
    assert_eq!(pop_bytes(&r).unwrap(), [3]);
    assert!(pop_bytes(&r).is_none());
    assert!(r.is_empty());
}

/// Pushes one-byte records `vals` with batch claims into a ring bounded to `cap` messages;
/// returns how many went in (a claim takes what fits).
fn push_batch(r: &Ring<'_>, cap: Option<u64>, words: &SendWords, vals: &[u8]) -> usize {
    let mut sent = 0;
    while sent < vals.len() {
        let left = (vals.len() - sent) as u64;
        let Ok(mut b) = r.claim_batch(cap, words, 1, left, left) else {
            break;
        };
        while sent < vals.len() {
            let v = vals[sent];
            match b.push(1, |buf| {
                buf[0] = v;
                true
            }) {
                Some(true) => sent += 1,
                Some(false) => unreachable!("the write succeeds"),
                None => break,
            }
        }
    }
    sent
}

/// Pops up to `max` messages with one range claim.
fn pop_batch(r: &Ring<'_>, intent: &AtomicU64, span: &AtomicU64, max: usize) -> Vec<u8> {
    let mut got = Vec::new();
    r.try_pop_batch(&Taker::words(intent, span), max, |rec| match rec {
        Record::Bytes(b) => got.push(b[0]),
        Record::Corrupt => panic!("corrupt"),
    });
    got
}

#[test]
fn batches_keep_order_round_the_ring_and_respect_the_cap() {
    let mut o = Owned::new(8);
    let r = o.ring();
    let words = SendWords::default();
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut expect = 0u8;
    for round in 0..20u8 {
        let vals: Vec<u8> = (0..5).map(|i| round * 5 + i).collect();
        // The cap of 4 messages takes four of the five, whatever the cells.
        assert_eq!(push_batch(&r, Some(4), &words, &vals), 4);
        assert_eq!(words.pos.load(Ordering::Relaxed), 0, "words cleared");
        assert_eq!(r.queued(), 4);
        let mut got = pop_batch(&r, &intent, &span, 3);
        assert!(!got.is_empty() && got.len() <= 3);
        got.extend(pop_batch(&r, &intent, &span, 10));
        got.extend(pop_batch(&r, &intent, &span, 10));
        assert_eq!(got, vals[..4].to_vec(), "round {round}");
        expect = expect.wrapping_add(4);
        assert!(r.is_empty());
        assert_eq!(r.queued(), 0, "counts balance");
    }
    assert_eq!(expect, 80);
    // A single pop after batches names one record again.
    assert_eq!(push_batch(&r, None, &words, &[9]), 1);
    assert_eq!(pop_bytes(&r), Some(vec![9]));
}

#[test]
fn a_range_completed_out_of_order_is_swept_whole() {
    let mut o = Owned::new(8);
    let r = o.ring();
    let words = SendWords::default();
    assert_eq!(push_batch(&r, None, &words, &[1, 2, 3, 4]), 4);
    // A consumer holds the first record (claimed, not completed) ...
    let held = AtomicU64::new(0);
    let (h, sp) = r.claim(&held).expect("published");
    // ... while another takes the other three as a range and completes first.
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    assert_eq!(pop_batch(&r, &intent, &span, 10), [2, 3, 4]);
    assert_eq!(
        r.hdr.done.done.load(Ordering::Relaxed),
        0,
        "behind the held one"
    );
    r.complete(h, sp.cells, true);
    // A producer needing all eight cells sweeps the range.
    assert_eq!(push_batch(&r, None, &words, &[5; 8]), 8);
    // A range stops at the end of the ring.
    assert_eq!(pop_batch(&r, &intent, &span, 10), [5; 4]);
    assert_eq!(pop_batch(&r, &intent, &span, 10), [5; 4]);
    assert_eq!(r.queued(), 0);
}

#[test]
fn a_dead_consumers_range_is_recovered_once() {
    let mut o = Owned::new(8);
    let r = o.ring();
    let words = SendWords::default();
    assert_eq!(push_batch(&r, Some(8), &words, &[1, 2, 3, 4, 5]), 5);
    // A consumer claims three (its words name the range) and dies reading them.
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut n = 0;
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.try_pop_batch(&Taker::words(&intent, &span), 3, |_| {
            n += 1;
            if n == 2 {
                panic!("decoding");
            }
        })
    }));
    assert!(died.is_err());
    // A panic completes the range (the guard); a kill would not: undo that by hand to model
    // the kill, then let two reapers settle it.
    assert_eq!(r.queued(), 2, "the panicking reader's range was completed");
    let (h, w) = (
        intent.load(Ordering::Relaxed) - 1,
        span.load(Ordering::Relaxed),
    );
    assert_eq!((h, w & !RANGE_COUNTED), (0, 3 | 3 << 32));
    assert!(!r.recover_range(h, w), "finished: nothing to do");
    assert_eq!(r.queued(), 2);
    // Killed for real: claimed, not completed.
    let (i2, s2) = (AtomicU64::new(0), AtomicU64::new(0));
    let h2 = r.hdr.head.load(Ordering::Relaxed);
    s2.store(2 | 2 << 32, Ordering::Relaxed);
    i2.store(h2 + 1, Ordering::Relaxed);
    r.hdr.head.store(h2 + 2, Ordering::Relaxed);
    assert!(r.recover_range(h2, s2.load(Ordering::Relaxed)));
    assert!(!r.recover_range(h2, s2.load(Ordering::Relaxed)), "once");
    assert_eq!(r.queued(), 0, "its two messages counted once");
    assert_eq!(
        push_batch(&r, Some(8), &words, &[7; 8]),
        8,
        "every cell is back"
    );
}

/// The batch producer of `b` is killed (nothing after this runs in it): a reaper settles what
/// its `words` say. Returns what `recover_send` does.
fn kill_batch_producer(r: &Ring<'_>, b: BatchClaim<'_, '_>, words: &SendWords) -> bool {
    std::mem::forget(b);
    let (pos, span, prog) = (
        words.pos.load(Ordering::Relaxed),
        words.span.load(Ordering::Relaxed),
        words.progress.load(Ordering::Relaxed),
    );
    r.recover_send(pos, span, prog)
}

#[test]
fn a_dead_batch_producer_keeps_what_it_published() {
    for published in 0..=3u64 {
        let mut o = Owned::new(8);
        let r = o.ring();
        let words = SendWords::default();
        let mut b = r.claim_batch(Some(8), &words, 1, 4, 4).expect("room");
        for v in 0..published {
            assert_eq!(
                b.push(1, |buf| {
                    buf[0] = v as u8;
                    true
                }),
                Some(true)
            );
        }
        if published < 3 {
            // Killed while writing the next one: its progress names it, unpublished.
            words.progress.store(
                Progress::new(published, 1, published, true, false).0,
                Ordering::Relaxed,
            );
        }
        assert!(kill_batch_producer(&r, b, &words), "the rest is padded");
        let (intent, sp) = (AtomicU64::new(0), AtomicU64::new(0));
        let got = pop_batch(&r, &intent, &sp, 10);
        assert_eq!(got, (0..published as u8).collect::<Vec<_>>());
        assert_eq!(r.queued(), 0, "the unused slots were given back");
        assert!(r.is_empty());
        assert_eq!(
            push_batch(&r, Some(8), &words, &[7; 8]),
            8,
            "every cell is back"
        );
    }
}

#[test]
fn a_producer_killed_around_its_batch_claim_is_settled() {
    let mut o = Owned::new(8);
    let r = o.ring();
    // Killed after reserving, before saying where: its slots come back.
    r.reserve_many(Some(8), 3);
    assert!(!r.recover_send(RESERVING, 3 << 32 | SPAN_BATCH, 0));
    assert_eq!(r.queued(), 0);
    // Killed right after its claiming CAS (not yet marked owned): the cells are padded.
    r.reserve_many(Some(8), 3);
    r.hdr.prod.tail.store(3, Ordering::Relaxed);
    let span = 3 | 3 << 32 | SPAN_BATCH | SPAN_MESSAGE;
    let prog = Progress::new(0, 1, 0, false, false).0;
    assert!(r.recover_send(1, span, prog));
    let (intent, sp) = (AtomicU64::new(0), AtomicU64::new(0));
    assert!(pop_batch(&r, &intent, &sp, 10).is_empty());
    assert_eq!(r.queued(), 0);
    assert!(r.is_empty());
}

/// A producer passing its skip record from the soft end makes a claim of a single record:
/// it clears its range word first (a reaper would otherwise read the claim as the range the
/// thread last received), and a pass another consumer won leaves its claim word clear (it
/// would otherwise hold back the recovery of that record if its taker died).
#[test]
fn a_skip_pass_leaves_words_that_name_only_its_claim() {
    let mut o = Owned::new(4);
    let r = o.ring();
    let (intent, range) = (
        AtomicU64::new(0),
        AtomicU64::new(3 | 2 << 32 | RANGE_COUNTED),
    );
    r.publish(0, SKIP | 4);
    r.hdr.prod.tail.store(4, Ordering::Relaxed);
    r.pass_skip(0, 4, &intent, &range);
    assert_eq!(range.load(Ordering::Relaxed), 0, "a single claim");
    assert_eq!(intent.load(Ordering::Relaxed), 1);
    assert!(
        r.is_empty() && r.advance_done() == 4,
        "passed and completed"
    );
    // A consumer took the next one first.
    r.publish(4, SKIP | 4);
    r.hdr.prod.tail.store(8, Ordering::Relaxed);
    r.hdr.head.store(8, Ordering::Relaxed);
    range.store(3 | 2 << 32 | RANGE_COUNTED, Ordering::Relaxed);
    r.pass_skip(4, 4, &intent, &range);
    assert_eq!(
        intent.load(Ordering::Relaxed),
        0,
        "a lost pass names nothing"
    );
    assert_eq!(range.load(Ordering::Relaxed), 0);
}

thread_local! {
    /// Makes [`Ring::take_packed`] stop, as if killed, once it has taken its messages and
    /// before it lets go of the pack.
    pub(crate) static DIE_HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sends `vals` (one-byte messages) with batch claims, packed; returns how many went in.
fn push_packed(r: &Ring<'_>, words: &SendWords, vals: &[u8]) -> usize {
    let mut sent = 0;
    while sent < vals.len() {
        let left = (vals.len() - sent) as u64;
        let Ok(mut b) = r.claim_batch(None, words, 1, left, left.div_ceil(16) + 1) else {
            break;
        };
        while sent < vals.len() {
            let Some(room) = b.pack_room() else { break };
            room[..2].copy_from_slice(&[1, vals[sent]]);
            b.packed(2);
            sent += 1;
        }
    }
    sent
}

/// Packs are taken apart message by message and in ranges of any size, in order, across
/// several packs (600 messages need more than one), and each message counts once.
#[test]
fn packs_are_taken_apart_by_single_and_range_receives_in_order() {
    let mut o = Owned::new(64);
    let r = o.ring();
    let words = SendWords::default();
    let vals: Vec<u8> = (0..600).map(|i| i as u8).collect();
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut got = Vec::new();
    let mut sent = 0;
    let mut step = 0;
    while got.len() < vals.len() {
        if sent < vals.len() {
            sent += push_packed(&r, &words, &vals[sent..(sent + 97).min(vals.len())]);
        }
        step += 1;
        if step % 3 == 0 {
            got.extend(pop_bytes(&r).map(|b| b[0]));
        } else {
            got.extend(pop_batch(&r, &intent, &span, step % 50));
        }
        assert_eq!(
            r.queued(),
            (sent - got.len()) as u64,
            "a message counts once taken"
        );
    }
    assert_eq!(got, vals);
    assert!(pop_bytes(&r).is_none());
    assert!(r.is_empty(), "every pack was claimed and completed");
    assert_eq!(span.load(Ordering::Relaxed), 0, "no hold is left named");
}

/// A range ends before a pack; the pack is the next receive's, then the record after it.
#[test]
fn a_range_stops_before_a_pack() {
    let mut o = Owned::new(16);
    let r = o.ring();
    let words = SendWords::default();
    assert_eq!(push_bytes(&r, &[1]), Ok(true));
    assert_eq!(push_bytes(&r, &[2]), Ok(true));
    assert_eq!(push_packed(&r, &words, &[3, 4, 5]), 3);
    assert_eq!(push_bytes(&r, &[6]), Ok(true));
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    assert_eq!(pop_batch(&r, &intent, &span, 10), [1, 2]);
    assert_eq!(pop_batch(&r, &intent, &span, 10), [3, 4, 5]);
    assert_eq!(pop_batch(&r, &intent, &span, 10), [6]);
    assert!(r.is_empty());
}

/// A consumer that dies holding a pack, after taking `took` of its `n` messages: no other
/// consumer takes from it meanwhile, a reaper naming another holder cannot let it go, the
/// holder's own reaper does, and the messages it had not taken arrive, each once; the ring
/// goes round afterwards.
fn a_dead_holder(n: u8, took: usize) {
    let mut o = Owned::new(16);
    let r = o.ring();
    let words = SendWords::default();
    let vals: Vec<u8> = (0..n).collect();
    assert_eq!(push_packed(&r, &words, &vals), vals.len());
    let (intent, range) = (AtomicU64::new(0), AtomicU64::new(0));
    DIE_HOLDING.set(true);
    let taker = Taker {
        intent: &intent,
        range: &range,
        owner: 7,
    };
    let taken = r.try_pop_batch(&taker, took, |_| unreachable!("it dies before it reads"));
    DIE_HOLDING.set(false);
    assert_eq!(taken, 0);
    // What a reaper finds in its words: the pack it holds.
    assert_eq!(intent.load(Ordering::Relaxed), 1);
    assert_eq!(range.load(Ordering::Relaxed), RANGE_HOLD);
    assert!(pop_bytes(&r).is_none(), "held: nobody else takes from it");
    assert!(!r.recover_hold(0, 8), "another holder's reaper");
    assert!(r.recover_hold(0, 7), "its own reaper lets go");
    assert!(!r.recover_hold(0, 7), "once");
    let (i2, s2) = (AtomicU64::new(0), AtomicU64::new(0));
    assert_eq!(pop_batch(&r, &i2, &s2, 100), vals[took..]);
    assert!(pop_bytes(&r).is_none());
    assert_eq!(r.queued(), 0, "the dead holder's messages were counted");
    assert!(r.is_empty());
    for v in 0..40u8 {
        assert_eq!(push_packed(&r, &words, &[v, v]), 2);
        assert_eq!(pop_batch(&r, &i2, &s2, 2), [v, v]);
    }
}

#[test]
fn a_dead_holder_is_let_go_by_its_own_reaper() {
    a_dead_holder(5, 2);
}

#[test]
fn a_dead_holder_that_took_the_last_messages_leaves_an_empty_pack_to_complete() {
    a_dead_holder(3, 3);
}

/// A producer killed while it writes its second pack: the first arrives, the second's
/// messages are lost with it, its cells are padded and its message slots come back.
#[test]
fn a_dead_producer_keeps_the_packs_it_published() {
    let mut o = Owned::new(16);
    let r = o.ring();
    let words = SendWords::default();
    let mut b = r.claim_batch(Some(16), &words, 1, 8, 4).expect("room");
    for v in [1u8, 2, 3, 4, 5] {
        if v == 4 {
            b.close_pack();
        }
        let room = b.pack_room().expect("room for a pack");
        room[..2].copy_from_slice(&[1, v]);
        b.packed(2);
    }
    assert!(kill_batch_producer(&r, b, &words), "the rest is padded");
    let (intent, sp) = (AtomicU64::new(0), AtomicU64::new(0));
    assert_eq!(pop_batch(&r, &intent, &sp, 10), [1, 2, 3]);
    assert!(pop_bytes(&r).is_none());
    assert_eq!(r.queued(), 0, "the unused slots were given back");
    assert!(r.is_empty());
    assert_eq!(
        push_batch(&r, Some(16), &words, &[7; 16]),
        16,
        "every cell is back"
    );
}

/// A pack whose bytes say a message runs past its end (corrupted shared memory): its good
/// messages arrive, then one corrupt record for the rest, and the ring goes on.
#[test]
fn a_corrupt_pack_is_reported_not_ub() {
    let mut o = Owned::new(16);
    let r = o.ring();
    let words = SendWords::default();
    let mut b = r.claim_batch(None, &words, 1, 3, 3).expect("room");
    for (len, v) in [(1u8, 1u8), (200, 2), (1, 3)] {
        let room = b.pack_room().expect("room");
        room[..2].copy_from_slice(&[len, v]);
        b.packed(2);
    }
    drop(b);
    assert_eq!(push_bytes(&r, &[9]), Ok(true));
    let mut got = Vec::new();
    let (intent, span) = (AtomicU64::new(0), AtomicU64::new(0));
    r.try_pop_batch(&Taker::words(&intent, &span), 10, |rec| {
        got.push(match rec {
            Record::Bytes(b) => Some(b.to_vec()),
            Record::Corrupt => None,
        });
    });
    assert_eq!(got, [Some(vec![1]), None]);
    assert_eq!(pop_bytes(&r), Some(vec![9]));
    assert!(r.is_empty());
}
