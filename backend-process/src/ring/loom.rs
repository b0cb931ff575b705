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
    match r.try_pop(&AtomicU64::new(0), |rec| match rec {
        Record::Bytes(b) => {
            assert!(b.iter().all(|&x| x == b[0]), "torn record");
            (b[0], b.len())
        }
        Record::Corrupt => panic!("corrupt"),
    }) {
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
