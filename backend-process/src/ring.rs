//! The lock-free ring under every channel: an MPMC queue of variable-size records in a
//! fixed array of cells, after Dmitry Vyukov's bounded MPMC queue (the algorithm of
//! crossbeam-channel's `array` flavour), extended so one record spans several consecutive cells.
//!
//! # Layout
//!
//! - [`RingHeader`]: `head` (next position to read) and `tail` (next position to write), in
//!   cells, monotonically increasing `u64`s (they never wrap in practice: 2^64 cells).
//! - `ctl`: one [`CellCtl`] per cell, one cache line each: a stamp, a meta word and
//!   [`INLINE`] bytes. A record of at most `INLINE` bytes (a `u64`, a small struct) lives in
//!   its head cell's line, so handing it over moves one line between the processes, and
//!   neighbouring cells never share a line (a producer publishing cell `i + 1` does not pull
//!   the line a consumer is freeing for cell `i`).
//! - `data`: `n * CELL` bytes for larger records, kept apart from the control lines so that a
//!   record's bytes are contiguous; a record at position `p` starts at cell `p % n`. A record
//!   never wraps: a producer that would cross the end first writes a *skip* record up to the
//!   end. The data cells of inline records are never touched (no memory is committed for them).
//!
//! # Stamp protocol (per cell, for the position `pos` that maps to it)
//!
//! - `stamp == pos`: free, may be written by the producer that claims `pos`;
//! - `stamp == pos + 1`: occupied (published head cell, or a continuation cell);
//! - after the record at `p` (cells `p..p+k`) is read, each of its cells gets `stamp = pos + n`,
//!   i.e. free for the next lap.
//!
//! The stored value is `stamp - index` (wrapping), so the all-zero state of fresh shared memory
//! is "every cell free for lap 0": no initialisation pass over the cells.
//!
//! A producer claims `k` cells by checking all `k` stamps free and then moving `tail` from
//! `t` to `t + k` with a CAS; a consumer claims a record by seeing its head cell published and
//! moving `head` from `h` to `h + k`. Positions are unique because only the CAS winner owns them.
//!
//! # Memory ordering (SYNC POINTs)
//!
//! - SYNC POINT A: the producer's `Release` store of the head cell's stamp (after writing the
//!   bytes and the meta word) pairs with the consumer's `Acquire` load of that stamp: the
//!   consumer sees the bytes and the meta.
//! - SYNC POINT B: the consumer's `Release` stores freeing the cells (after reading the bytes)
//!   pair with the next producer's `Acquire` loads in `check_free`: that producer's writes
//!   happen after the reads.
//! - A record's bytes are its data cells or its head cell's inline bytes: both are covered by
//!   A and B alike.
//! - The `head` CAS is `Relaxed`: it only arbitrates ownership of positions; all data
//!   visibility goes through the stamps. The `tail` CAS is `SeqCst` for the channel's wake-up
//!   handshake, not for the ring (see [`Ring::is_idle`]).
//!
//! Mapped memory is untrusted: `n`, the mask and the data pointer come from the private view;
//! a meta word that would make a record run past the end is reported as corrupt and consumes
//! one cell, never an out-of-bounds access.

use std::cell::UnsafeCell;

use crate::shm::CachePadded;
use crate::sync::{AtomicU32, AtomicU64, Ordering, spin_hint};

/// Bytes per cell: one cache line, so a small message (a `u64`) takes exactly one line.
pub(crate) const CELL: usize = 64;

/// Meta flag: the record is a skip record (padding to the end, or a failed write) spanning the
/// cell count in the low bits.
const SKIP: u32 = 1 << 31;

/// The largest record length the meta word can express.
pub(crate) const MAX_RECORD: usize = (SKIP - 1) as usize;

/// Positions shared by producers and consumers. `#[repr(C)]`; all-zero is an empty ring.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct RingHeader {
    /// Next position to read. Invariant: `head <= tail`.
    head: CachePadded<AtomicU64>,
    /// Next position to write. Invariant: `tail - head <= n`.
    tail: CachePadded<AtomicU64>,
}

/// Bytes of a record kept in its head cell's control line (records up to this size).
pub(crate) const INLINE: usize = 48;

/// Control line of one cell. `#[repr(C)]`, one cache line; all-zero is "free for lap 0".
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct CellCtl {
    /// `stamp - cell index` (wrapping), see the module docs.
    stamp: AtomicU64,
    /// For a published head cell: the record's byte length, or `SKIP | cells`.
    meta: AtomicU32,
    _pad: u32,
    /// The bytes of a record of at most [`INLINE`] bytes whose head cell this is.
    inline: InlineBytes,
}

/// A cell's inline record bytes, written and read only by the owner of the cell's position
/// under the stamp protocol (like the data cells).
#[derive(Debug)]
#[repr(transparent)]
struct InlineBytes(UnsafeCell<[u8; INLINE]>);

impl Default for InlineBytes {
    fn default() -> Self {
        Self(UnsafeCell::new([0; INLINE]))
    }
}

// SAFETY: the bytes are only accessed through `Ring::try_push` by the producer that won the
// cell's position and saw it free (SYNC POINT B), and through `Ring::try_pop` by the consumer
// that won the published position (SYNC POINT A): never by two parties at once.
unsafe impl Sync for InlineBytes {}

#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics only (CachePadded is repr(C)), valid when zero (an empty ring).
unsafe impl crate::shm::ShmSafe for RingHeader {}
#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics and padding only, valid when zero (free for lap 0).
unsafe impl crate::shm::ShmSafe for CellCtl {}

/// The ring is full for this record right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Outcome of [`Ring::try_pop`].
#[derive(Debug)]
pub(crate) enum Pop<R> {
    /// A record was taken; the closure's result.
    Item(R),
    /// Nothing published at the head: the ring is empty, or a producer claimed the head
    /// position and has not published it yet. (Telling the two apart would need a load of
    /// `tail`, a line every push writes: a waiter polling for the next message would pull it
    /// from the producer's cache at every poll.)
    Empty,
}

/// What the consumer's closure is handed.
#[derive(Debug)]
pub(crate) enum Record<'a> {
    /// The record's bytes.
    Bytes(&'a [u8]),
    /// The meta word was invalid (corrupted shared memory); one cell was consumed.
    Corrupt,
}

enum Check {
    Free,
    Full,
    Stale,
}

/// A process-private view of a ring living in (shared) memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    hdr: &'a RingHeader,
    ctl: &'a [CellCtl],
    data: *mut u8,
    n: u64,
}

/// Number of cells a record of `len` bytes takes (at least one).
#[inline]
pub(crate) fn cells_for(len: usize) -> u64 {
    (len.div_ceil(CELL)).max(1) as u64
}

impl<'a> Ring<'a> {
    /// A view over `hdr`, `ctl` (`n` cells, a power of two) and `n * CELL` bytes at `data`.
    ///
    /// # Safety
    /// `data` is valid for reads and writes of `ctl.len() * CELL` bytes for `'a`, and is only
    /// accessed through rings following this module's protocol over the same `hdr` and `ctl`.
    #[inline]
    pub(crate) unsafe fn new(hdr: &'a RingHeader, ctl: &'a [CellCtl], data: *mut u8) -> Self {
        let n = ctl.len() as u64;
        assert!(
            n.is_power_of_two(),
            "a ring has a power-of-two number of cells"
        );
        Self { hdr, ctl, data, n }
    }

    /// The largest record that fits at all.
    #[inline]
    pub(crate) fn max_record(&self) -> usize {
        (self.n as usize).saturating_mul(CELL).min(MAX_RECORD)
    }

    #[inline]
    fn stamp(&self, idx: u64) -> u64 {
        // SYNC POINT B (and A for head cells): Acquire pairs with the Release that freed or
        // published the cell.
        self.ctl[idx as usize]
            .stamp
            .load(Ordering::Acquire)
            .wrapping_add(idx)
    }

    #[inline]
    fn check_free(&self, t: u64, k: u64) -> Check {
        let mask = self.n - 1;
        for j in 0..k {
            let pos = t + j;
            let s = self.stamp(pos & mask);
            if s == pos {
                continue;
            }
            // Relaxed: re-reading tail only decides between "retry" and "full".
            if (s.wrapping_sub(pos) as i64) < 0 && self.hdr.tail.load(Ordering::Relaxed) == t {
                // The cell still holds (or is being read from) a record of the previous lap.
                return Check::Full;
            }
            return Check::Stale;
        }
        Check::Free
    }

    #[inline]
    fn publish(&self, t: u64, k: u64, meta: u32) {
        let i = t & (self.n - 1);
        let stored = t.wrapping_sub(i).wrapping_add(1);
        // Relaxed: ordered before the head cell's Release store below (SYNC POINT A).
        self.ctl[i as usize].meta.store(meta, Ordering::Relaxed);
        for j in 1..k {
            // Continuation cells: `stamp = pos + 1` (occupied). Relaxed: they are only read by
            // producers' free checks, and the consumer frees them after acquiring the head cell.
            self.ctl[(i + j) as usize]
                .stamp
                .store(stored, Ordering::Relaxed);
        }
        // SYNC POINT A: publishes the bytes and the meta word.
        self.ctl[i as usize].stamp.store(stored, Ordering::Release);
    }

    /// Where the bytes of a record of `len` bytes whose head cell is `i` live.
    ///
    /// # Safety
    /// `i < n`, `i + cells_for(len) <= n`, and the caller owns the record's position (as a
    /// producer that won it and saw its cells free, or a consumer that won it published).
    #[inline]
    unsafe fn bytes(&self, i: u64, len: usize) -> *mut u8 {
        if len <= INLINE {
            self.ctl[i as usize].inline.0.get().cast()
        } else {
            // SAFETY: `i * CELL + len <= n * CELL` (the caller's contract), within `data`.
            unsafe { self.data.add(i as usize * CELL) }
        }
    }

    /// Writes a record of `len` bytes (`len <= max_record()`), filled by `write`.
    /// Returns `Ok(true)` once published, `Ok(false)` if `write` failed (the claimed cells are
    /// published as a skip record, so the ring stays consistent).
    ///
    /// # Errors
    /// [`Full`] if the cells are not free right now.
    pub(crate) fn try_push(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<bool, Full> {
        assert!(len <= self.max_record(), "record larger than the ring");
        let k = cells_for(len);
        let mask = self.n - 1;
        loop {
            // Relaxed: a stale value is caught by the stamp check or the CAS.
            let t = self.hdr.tail.load(Ordering::Relaxed);
            let i = t & mask;
            let (kk, skip) = if i + k > self.n {
                (self.n - i, true)
            } else {
                (k, false)
            };
            match self.check_free(t, kk) {
                Check::Free => {}
                Check::Full => return Err(Full),
                Check::Stale => {
                    spin_hint();
                    continue;
                }
            }
            if self
                .hdr
                .tail
                .compare_exchange_weak(t, t + kk, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                spin_hint();
                continue;
            }
            // We own positions t..t+kk.
            if skip {
                self.publish(t, kk, SKIP | kk as u32);
                continue;
            }
            // SAFETY: cells i..i+kk (kk = cells_for(len)) are in bounds (i + kk <= n) and
            // exclusively ours: we won the CAS for their positions and saw them freed (Acquire,
            // SYNC POINT B), so no consumer reads them and no other producer writes them until
            // we publish; `bytes` points at `len` bytes of them.
            let buf = unsafe { std::slice::from_raw_parts_mut(self.bytes(i, len), len) };
            let ok = write(buf);
            let meta = if ok { len as u32 } else { SKIP | kk as u32 };
            self.publish(t, kk, meta);
            return Ok(ok);
        }
    }

    /// Takes the record at the head, if one is published, handing its bytes to `read`.
    pub(crate) fn try_pop<R>(&self, read: impl FnOnce(Record<'_>) -> R) -> Pop<R> {
        let mask = self.n - 1;
        let mut read = Some(read);
        loop {
            // Relaxed: a stale head is caught by the stamp check or the CAS.
            let h = self.hdr.head.load(Ordering::Relaxed);
            let i = h & mask;
            let s = self.stamp(i);
            if s == h.wrapping_add(1) {
                // Relaxed: ordered after the stamp's Acquire load (SYNC POINT A).
                let meta = self.ctl[i as usize].meta.load(Ordering::Relaxed);
                let (mut kk, mut len) = if meta & SKIP != 0 {
                    (u64::from(meta & !SKIP), None)
                } else {
                    (cells_for(meta as usize), Some(meta as usize))
                };
                let mut corrupt = false;
                if kk == 0 || i + kk > self.n {
                    corrupt = true;
                    kk = 1;
                    len = None;
                }
                if self
                    .hdr
                    .head
                    .compare_exchange_weak(h, h + kk, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    spin_hint();
                    continue;
                }
                let out = if corrupt {
                    Some((read.take().expect("read once"))(Record::Corrupt))
                } else if let Some(len) = len {
                    // SAFETY: `kk = cells_for(len)` and `i + kk <= n`, so in bounds; the cells
                    // are ours (we won the head CAS for this published record) and the
                    // producer's writes are visible (SYNC POINT A) and finished.
                    let bytes = unsafe { std::slice::from_raw_parts(self.bytes(i, len), len) };
                    Some((read.take().expect("read once"))(Record::Bytes(bytes)))
                } else {
                    None
                };
                let freed = h.wrapping_sub(i).wrapping_add(self.n);
                for j in 0..kk {
                    // SYNC POINT B: frees the cell for the next lap after our reads.
                    self.ctl[(i + j) as usize]
                        .stamp
                        .store(freed, Ordering::Release);
                }
                match out {
                    Some(r) => return Pop::Item(r),
                    None => continue,
                }
            } else if (s.wrapping_sub(h.wrapping_add(1)) as i64) > 0 {
                // The head moved on under us.
                spin_hint();
                continue;
            } else {
                return Pop::Empty;
            }
        }
    }

    /// `true` if nothing is queued or claimed (a snapshot).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a snapshot.
        self.hdr.head.load(Ordering::Relaxed) == self.hdr.tail.load(Ordering::Relaxed)
    }

    /// `true` if no producer has claimed cells past `head` (nothing queued, nothing being
    /// written), read with SeqCst loads: with the SeqCst `tail` CAS of `try_push`, one side of
    /// a waker's store-buffering handshake (the channel's module docs, "Waking").
    #[cfg(not(uniconc_loom))]
    pub(crate) fn is_idle(&self) -> bool {
        let h = self.hdr.head.load(Ordering::SeqCst);
        self.hdr.tail.load(Ordering::SeqCst) <= h
    }
}

#[cfg(all(test, not(uniconc_loom)))]
mod tests {
    use super::*;

    struct Owned {
        hdr: RingHeader,
        ctl: Vec<CellCtl>,
        data: Vec<u8>,
    }

    impl Owned {
        fn new(n: usize) -> Self {
            Self {
                hdr: RingHeader::default(),
                ctl: (0..n).map(|_| CellCtl::default()).collect(),
                data: vec![0; n * CELL],
            }
        }
        fn ring(&mut self) -> Ring<'_> {
            let data = self.data.as_mut_ptr();
            // SAFETY: `data` is n * CELL bytes owned by self, used only through this ring.
            unsafe { Ring::new(&self.hdr, &self.ctl, data) }
        }
    }

    fn push_bytes(r: &Ring<'_>, b: &[u8]) -> Result<bool, Full> {
        r.try_push(b.len(), |buf| {
            buf.copy_from_slice(b);
            true
        })
    }

    fn pop_bytes(r: &Ring<'_>) -> Option<Vec<u8>> {
        match r.try_pop(|rec| match rec {
            Record::Bytes(b) => b.to_vec(),
            Record::Corrupt => panic!("corrupt"),
        }) {
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
        assert_eq!(r.try_push(5, |_| false), Ok(false));
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
            r.try_pop(|rec| matches!(rec, Record::Corrupt)),
            Pop::Item(true)
        ));
    }
}

#[cfg(all(test, uniconc_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Shared {
        hdr: RingHeader,
        ctl: Vec<CellCtl>,
        data: std::cell::UnsafeCell<Vec<u8>>,
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
            }
        }
        fn ring(&self) -> Ring<'_> {
            // SAFETY: n * CELL bytes owned by self, accessed only through rings over self.
            unsafe { Ring::new(&self.hdr, &self.ctl, (*self.data.get()).as_mut_ptr()) }
        }
    }

    fn push_val(r: &Ring<'_>, v: u8, len: usize) {
        loop {
            let res = r.try_push(len, |b| {
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
        match r.try_pop(|rec| match rec {
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

    /// Two consumers race for the head while the producer frees and reuses cells.
    #[test]
    fn loom_two_consumers() {
        model(|| {
            let s = Arc::new(Shared::new(2));
            let r = s.ring();
            push_val(&r, 1, 8);
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || pop_one(&s.ring()).0)
                })
                .collect();
            push_val(&r, 2, 8);
            let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, vec![1, 2]);
            assert!(r.is_empty());
        });
    }
}
