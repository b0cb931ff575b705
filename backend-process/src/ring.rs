//! The lock-free ring under every channel: an MPMC queue of variable-size records in a
//! fixed array of cells. Producers claim cells with a CAS on `tail` and hand a record over by
//! stamping its head cell, as in Dmitry Vyukov's bounded MPMC queue (the algorithm of
//! crossbeam-channel's `array` flavour), extended so one record spans several consecutive
//! cells. Consumers claim records with a CAS on `head`, and never write a line a producer
//! writes: handing a small message over moves one cache line between the processes and costs
//! each side one locked instruction (~10–16 ns each on this machine, as much as the rest of
//! the hand-over's local work together).
//!
//! # Slots: one bound for the message count and the bytes
//!
//! A bounded ring is cut into `capacity` *slots* of `slot` cells (a power of two, the ring's
//! `n` cells over the capacity, rounded down); a record takes as many whole slots as its bytes
//! need, and at most `limit = capacity * slot` cells are in use. So `capacity` messages of at
//! most one slot each fit, a larger message takes several slots, and one comparison of
//! positions bounds both the count and the bytes, with no message counters to update. An
//! unbounded ring has slots of one cell and `limit = n`.
//!
//! # Layout
//!
//! - [`RingHeader`]: `head` (next position to read, consumers), `tail` (next position to
//!   write, producers) and the *pins* (large records being read), each on its own lines.
//!   Positions count cells, are multiples of `slot` and only grow (2^62 cells are never
//!   reached).
//! - `ctl`: one [`CellCtl`] per cell, one cache line each: a stamp, a meta word and [`INLINE`]
//!   bytes. A record of at most `INLINE` bytes (a `u64`, a small struct) lives in its head
//!   cell's line; neighbouring cells never share a line.
//! - `data`: `n * CELL` bytes for larger records, kept apart from the control lines so that a
//!   record's bytes are contiguous; a record at position `p` starts at cell `p % n`. A record
//!   never wraps: a producer that would cross the end first writes a *skip* record up to the
//!   end. The data cells of inline records are never touched (no memory is committed for them).
//!
//! # Protocol
//!
//! - A producer may write the cells of positions `t .. t + k` once `t + k <= done + limit`,
//!   where `done` is `head`, or the lowest pin if lower: every record of the previous lap there
//!   is read. It claims them by moving `tail` from `t` to `t + k` with a CAS, writes the bytes
//!   and the meta word, then stores `PUBLISHED | t` in the head cell's stamp. Only head cells
//!   get stamps; zero, the state of fresh shared memory, is "never written", so no
//!   initialisation pass touches the cells.
//! - A consumer that sees `PUBLISHED | h` in the cell of `head == h` takes an inline record by
//!   copying its bytes out of the line (atomic loads) and *then* moving `head` past it with a
//!   CAS: if the CAS succeeds the copy is the record (no producer rewrites the cell before
//!   `head` passes it), otherwise another consumer took it and the copy is dropped. One CAS
//!   claims and gives back the cells.
//! - A larger record is decoded straight from its data cells, after the claim: the consumer
//!   first *pins* its position (a free entry of the pin table), then moves `head`, reads, and
//!   unpins. Producers do not pass the lowest pin.
//! - A consumer whose `head` is stale finds a stamp for a later position and retries; one
//!   whose cell holds an older stamp (or none) finds the ring empty.
//!
//! # Memory ordering (SYNC POINTs)
//!
//! - SYNC POINT A: the producer's `Release` store of the head cell's stamp (after writing the
//!   bytes and the meta word) pairs with the consumer's `Acquire` load of that stamp: the
//!   consumer sees the bytes and the meta.
//! - SYNC POINT B: the consumer's `head` CAS (after copying an inline record out) or unpin
//!   store (after reading a larger one), release operations, pair with the producers' acquire
//!   loads of `head` and the pins: a producer's writes to a cell happen after the reads of the
//!   record that held it. A pin is stored before the `head` CAS it protects (both SeqCst), so
//!   a producer that sees `head` past a record also sees its pin. The process-private cache
//!   of `done` is stored with `Release` and loaded with `Acquire`, so a thread using another's
//!   reload inherits it.
//! - The `head` CAS, the pin stores and the `tail` CAS are SeqCst for the channel's wake-up
//!   handshakes too ([`Ring::is_idle`], [`Ring::reload_done`]).
//!
//! Mapped memory is untrusted: `n`, the slot, the mask and the data pointer come from the
//! private view; a meta word that would make a record run past the end is reported as corrupt
//! and consumes one slot, never an out-of-bounds access.
//!
//! Known limit: a consumer killed while it reads a record larger than [`INLINE`] bytes (SIGKILL
//! while decoding it) leaves its pin for good: the other consumers go on, the producers fill
//! the ring up to it and then find it full. (An inline record is taken whole by one CAS.)

use crate::shm::CachePadded;
use crate::sync::{AtomicU32, AtomicU64, Ordering, spin_hint};

/// Bytes per cell: one cache line, so a small message (a `u64`) takes exactly one line.
pub(crate) const CELL: usize = 64;

/// Meta flag: the record is a skip record (padding to the end, or a failed write) spanning the
/// cell count in the low bits.
const SKIP: u32 = 1 << 31;

/// The largest record length the meta word can express.
pub(crate) const MAX_RECORD: usize = (SKIP - 1) as usize;

/// Stamp flag: the record at the stamp's position is published. Pin flag: the entry pins
/// the position in its low bits.
const PUBLISHED: u64 = 1 << 63;
/// The position bits of a stamp or a pin.
const POS: u64 = (1 << 62) - 1;

/// Large records being read at once, at most (more readers wait for a free entry).
const PINS: usize = 32;

/// Positions shared by producers and consumers. `#[repr(C)]`; all-zero is an empty ring.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct RingHeader {
    /// Next position to read, written by consumers. Invariant: `head <= tail`.
    head: CachePadded<AtomicU64>,
    /// Next position to write, written by producers. Invariant: `tail - done <= limit`, with
    /// `done` the lowest of `head` and the pins.
    tail: CachePadded<AtomicU64>,
    /// Positions of larger records being read: `PUBLISHED | pos`, or zero (free). Written by
    /// the consumers that read such records; read by producers when they reload `done`.
    pins: CachePadded<Pins>,
    /// Non-zero once a record took more than one slot (`len` must then walk the records).
    /// Set once, by producers.
    multi_slot: AtomicU32,
}

#[derive(Debug)]
#[repr(C)]
struct Pins {
    /// Pins taken (an entry is counted before it is filled and after it is emptied), so a
    /// producer reads the entries only while some large record is being read.
    taken: AtomicU64,
    entries: [AtomicU64; PINS],
}

impl Default for Pins {
    fn default() -> Self {
        Self {
            taken: AtomicU64::new(0),
            entries: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A process's cached copy of `done`, a lower bound of it, so a producer reads the
/// consumers' lines only when the cache says the ring is full.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    done: AtomicU64,
}

/// Bytes of a record kept in its head cell's control line (records up to this size).
pub(crate) const INLINE: usize = 48;
const INLINE_WORDS: usize = INLINE / 8;

/// Control line of one cell. `#[repr(C)]`, one cache line; all-zero is "never written".
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct CellCtl {
    /// `PUBLISHED | pos` or zero, see the module docs.
    stamp: AtomicU64,
    /// For a head cell: the record's byte length, or `SKIP | cells`.
    meta: AtomicU32,
    _pad: u32,
    /// The bytes of a record of at most [`INLINE`] bytes whose head cell this is, as words:
    /// a consumer copies them out *before* it knows the record is its own, racing with a
    /// producer that may already rewrite them (it then drops the copy), so both sides use
    /// atomic accesses.
    inline: InlineWords,
}

#[derive(Debug)]
#[repr(C)]
struct InlineWords([AtomicU64; INLINE_WORDS]);

impl Default for InlineWords {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The data cells: `n * CELL` bytes for records larger than [`INLINE`], written by the
/// producer that won their position with room below `done + limit` (SYNC POINT B) and read by
/// the consumer that pinned and won the published position (SYNC POINT A): never by two
/// parties at once. Under loom, one `UnsafeCell` per cell stands for its bytes, so the model
/// checks exactly that.
#[cfg(uniconc_loom)]
#[derive(Debug)]
pub(crate) struct BytesModel(Vec<loom::cell::UnsafeCell<()>>);

#[cfg(uniconc_loom)]
impl BytesModel {
    pub(crate) fn new(n: usize) -> Self {
        Self((0..n).map(|_| loom::cell::UnsafeCell::new(())).collect())
    }
}

#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics only (CachePadded is repr(C)), valid when zero (an empty ring).
unsafe impl crate::shm::ShmSafe for RingHeader {}
#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics and padding only, valid when zero (never written).
unsafe impl crate::shm::ShmSafe for CellCtl {}

/// The ring has no room for this record right now.
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
    /// The meta word was invalid (corrupted shared memory); one slot was consumed.
    Corrupt,
}

/// What a head cell's meta word says about its record.
struct Span {
    /// Cells the record takes (whole slots).
    cells: u64,
    /// Its byte length; `None` for a skip record or a corrupt meta word.
    len: Option<usize>,
    corrupt: bool,
}

/// How a ring's cells are bounded: the slot size and the cells in use at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Cells per slot, a power of two dividing the ring's cell count.
    pub(crate) slot: u64,
    /// Cells in use at most: `capacity * slot`, at most the ring's cell count.
    pub(crate) limit: u64,
}

impl Bound {
    /// The bound of a ring of `n` cells (a power of two) holding at most `capacity` records
    /// of one slot (`None`: unbounded, one-cell slots).
    pub(crate) fn new(n: u64, capacity: Option<u64>) -> Self {
        match capacity {
            Some(c) if c >= 1 && c < n => {
                let slot = 1 << (n / c).ilog2();
                Self {
                    slot,
                    limit: c * slot,
                }
            }
            _ => Self { slot: 1, limit: n },
        }
    }
}

/// A process-private view of a ring living in (shared) memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    hdr: &'a RingHeader,
    ctl: &'a [CellCtl],
    data: *mut u8,
    n: u64,
    bound: Bound,
    cache: &'a Cache,
    #[cfg(uniconc_loom)]
    bytes_model: &'a BytesModel,
}

/// Number of cells a record of `len` bytes takes (at least one).
#[inline]
pub(crate) fn cells_for(len: usize) -> u64 {
    (len.div_ceil(CELL)).max(1) as u64
}

impl<'a> Ring<'a> {
    /// A view over `hdr`, `ctl` (`n` cells, a power of two) and `n * CELL` bytes at `data`,
    /// bounded by `bound`, with this process's `cache` of `done`.
    ///
    /// # Safety
    /// `data` is valid for reads and writes of `ctl.len() * CELL` bytes for `'a`, and is only
    /// accessed through rings following this module's protocol over the same `hdr` and `ctl`,
    /// with the same bound.
    #[inline]
    pub(crate) unsafe fn new(
        hdr: &'a RingHeader,
        ctl: &'a [CellCtl],
        data: *mut u8,
        bound: Bound,
        cache: &'a Cache,
        #[cfg(uniconc_loom)] bytes_model: &'a BytesModel,
    ) -> Self {
        let n = ctl.len() as u64;
        assert!(
            n.is_power_of_two()
                && bound.slot.is_power_of_two()
                && bound.slot <= bound.limit
                && bound.limit <= n,
            "a ring has a power-of-two number of cells and slots"
        );
        Self {
            hdr,
            ctl,
            data,
            n,
            bound,
            cache,
            #[cfg(uniconc_loom)]
            bytes_model,
        }
    }

    /// The largest record that fits at all.
    #[inline]
    pub(crate) fn max_record(&self) -> usize {
        (self.bound.limit as usize)
            .saturating_mul(CELL)
            .min(MAX_RECORD)
    }

    /// Whole slots for `cells` cells.
    #[inline]
    fn in_slots(&self, cells: u64) -> u64 {
        cells.next_multiple_of(self.bound.slot)
    }

    #[inline]
    fn cell(&self, pos: u64) -> &CellCtl {
        &self.ctl[(pos & (self.n - 1)) as usize]
    }

    /// What the meta word of the record whose head cell is `i` says; a record that would be
    /// empty or run past the end is corrupt and spans one slot.
    #[inline]
    fn span(&self, meta: u32, i: u64) -> Span {
        let (cells, len) = if meta & SKIP != 0 {
            (u64::from(meta & !SKIP), None)
        } else {
            (self.in_slots(cells_for(meta as usize)), Some(meta as usize))
        };
        if cells == 0 || i + cells > self.n {
            Span {
                cells: self.bound.slot,
                len: None,
                corrupt: true,
            }
        } else {
            Span {
                cells,
                len,
                corrupt: false,
            }
        }
    }

    /// Reloads `done`, the lowest of `head` and the pins; refreshes the cache and returns it.
    /// Its loads are SeqCst: the load half of a waiting producer's wake handshake against the
    /// consumers' SeqCst `head` CAS and unpin (the channel's "Waking").
    pub(crate) fn reload_done(&self) -> u64 {
        // SYNC POINT B: SeqCst (acquire) pairs with the consumers' `head` CAS and unpins; a
        // pin stored before a `head` CAS we see is seen by the loads after.
        let mut d = self.hdr.head.load(Ordering::SeqCst);
        let pins = &self.hdr.pins;
        // SeqCst: the count is raised before a pin is stored, so a pin we must see is counted.
        if pins.taken.load(Ordering::SeqCst) != 0 {
            for p in &pins.entries {
                let v = p.load(Ordering::SeqCst);
                if v != 0 {
                    d = d.min(v & POS);
                }
            }
        }
        // Release: a thread of this process that loads the cache (Acquire) inherits our
        // acquire loads. A plain store, not `fetch_max`: any value ever computed here is a
        // lower bound of `done`, so a racing thread storing an older one is harmless.
        self.cache.done.store(d, Ordering::Release);
        d
    }

    #[inline]
    fn publish(&self, t: u64, meta: u32) {
        let c = self.cell(t);
        // Relaxed: ordered before the stamp's Release store below (SYNC POINT A).
        c.meta.store(meta, Ordering::Relaxed);
        // SYNC POINT A: publishes the bytes and the meta word.
        c.stamp.store(PUBLISHED | t, Ordering::Release);
    }

    /// Writes a record of `len` bytes (`len <= max_record()`), filled by `write`, if its
    /// slots are free. Returns `Ok(true)` once published, `Ok(false)` if `write` failed (the
    /// claimed cells are published as a skip record, so the ring stays consistent).
    ///
    /// # Errors
    /// [`Full`] if not enough slots are free right now.
    pub(crate) fn try_push(
        &self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<bool, Full> {
        assert!(len <= self.max_record(), "record larger than the ring");
        let k = self.in_slots(cells_for(len));
        if k > self.bound.slot {
            self.note_multi_slot();
        }
        let mask = self.n - 1;
        let tail = &self.hdr.tail;
        loop {
            // Relaxed: a stale value is caught by the CAS.
            let t = tail.load(Ordering::Relaxed);
            let i = t & mask;
            // Positions are multiples of the slot, which divides `n`: so is a padding record.
            let (kk, skip) = if i + k > self.n {
                (self.n - i, true)
            } else {
                (k, false)
            };
            let limit = self.bound.limit;
            // SYNC POINT B, through the cache (Acquire pairs with its Release store).
            if t + kk > self.cache.done.load(Ordering::Acquire) + limit
                && t + kk > self.reload_done() + limit
            {
                // Relaxed: re-reading tail only decides between "retry" and "full".
                if tail.load(Ordering::Relaxed) == t {
                    return Err(Full);
                }
                continue;
            }
            // SeqCst: one side of the receivers' wake handshake (the channel's "Waking").
            if tail
                .compare_exchange_weak(t, t + kk, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                spin_hint();
                continue;
            }
            // We own positions t..t+kk: every record that held their cells in the previous lap
            // is read (`t + kk <= done + limit <= done + n`, SYNC POINT B), so no consumer reads
            // them and no other producer writes them until we publish.
            if skip {
                self.publish(t, SKIP | kk as u32);
                continue;
            }
            let ok = if len <= INLINE {
                let mut buf = [0u8; INLINE];
                let ok = write(&mut buf[..len]);
                let words = &self.ctl[i as usize].inline.0;
                for (w, b) in words.iter().zip(buf.chunks_exact(8)).take(len.div_ceil(8)) {
                    // Relaxed: published by the stamp's Release store (SYNC POINT A).
                    w.store(
                        u64::from_ne_bytes(b.try_into().expect("8 bytes")),
                        Ordering::Relaxed,
                    );
                }
                ok
            } else {
                #[cfg(uniconc_loom)]
                for c in &self.bytes_model.0[i as usize..(i + kk) as usize] {
                    c.with_mut(|_| ());
                }
                // SAFETY: cells i..i+kk (kk >= cells_for(len)) are in bounds (i + kk <= n, so
                // `i * CELL + len <= n * CELL`, within `data`) and ours (above).
                write(unsafe {
                    std::slice::from_raw_parts_mut(self.data.add(i as usize * CELL), len)
                })
            };
            self.publish(t, if ok { len as u32 } else { SKIP | kk as u32 });
            return Ok(ok);
        }
    }

    #[cold]
    fn note_multi_slot(&self) {
        // Relaxed: only `queued` reads it, for a snapshot.
        if self.hdr.multi_slot.load(Ordering::Relaxed) == 0 {
            self.hdr.multi_slot.store(1, Ordering::Relaxed);
        }
    }

    /// Moves `head` from `h` to `h + cells` (SeqCst: claims the record and, for a record
    /// already copied out, gives its cells back: SYNC POINT B; and the notifier half of the
    /// senders' wake handshake).
    #[inline]
    fn claim(&self, h: u64, cells: u64) -> bool {
        self.hdr
            .head
            .compare_exchange_weak(h, h + cells, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the record at the head, if one is published, handing its bytes to `read`.
    pub(crate) fn try_pop<R>(&self, read: impl FnOnce(Record<'_>) -> R) -> Pop<R> {
        let mask = self.n - 1;
        loop {
            // Relaxed: a stale head is caught by the stamp check or the CAS.
            let h = self.hdr.head.load(Ordering::Relaxed);
            let i = h & mask;
            let c = &self.ctl[i as usize];
            // SYNC POINT A: Acquire pairs with the producer's Release stamp.
            let s = c.stamp.load(Ordering::Acquire);
            if s != PUBLISHED | h {
                if s & PUBLISHED != 0 && s & POS > h {
                    // The head moved on under us.
                    spin_hint();
                    continue;
                }
                return Pop::Empty;
            }
            // Relaxed: ordered after the stamp's Acquire load (SYNC POINT A).
            let span = self.span(c.meta.load(Ordering::Relaxed), i);
            match span.len {
                _ if span.corrupt => {
                    if self.claim(h, span.cells) {
                        return Pop::Item(read(Record::Corrupt));
                    }
                }
                None => {
                    // A skip record: nothing to read.
                    self.claim(h, span.cells);
                }
                Some(len) if len <= INLINE => {
                    let mut buf = [0u8; INLINE];
                    for (w, b) in c.inline.0.iter().zip(buf.chunks_exact_mut(8)) {
                        // Relaxed: after the stamp's Acquire (SYNC POINT A); ordered before
                        // the claim's release, so no producer rewrites what we read (SYNC
                        // POINT B). If a producer already does, the claim fails.
                        b.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
                    }
                    if self.claim(h, span.cells) {
                        return Pop::Item(read(Record::Bytes(&buf[..len])));
                    }
                }
                Some(len) => {
                    let pin = self.pin(h);
                    if self.claim(h, span.cells) {
                        #[cfg(uniconc_loom)]
                        for c in &self.bytes_model.0[i as usize..(i + span.cells) as usize] {
                            c.with(|_| ());
                        }
                        // SAFETY: `cells_for(len) <= span.cells` and `i + span.cells <= n`
                        // (`span`), so within `data`; the record is ours (we won the head CAS
                        // for it published), the producer's writes are visible (SYNC POINT A)
                        // and finished, and our pin keeps producers off its cells until we
                        // unpin after reading (SYNC POINT B).
                        let bytes = unsafe {
                            std::slice::from_raw_parts(self.data.add(i as usize * CELL), len)
                        };
                        // `pin` unpins as it drops, even if `read` panics.
                        let out = read(Record::Bytes(bytes));
                        drop(pin);
                        return Pop::Item(out);
                    }
                }
            }
            spin_hint();
        }
    }

    /// Pins position `h` in a free entry of the pin table (waiting for one if all are taken).
    fn pin(&self, h: u64) -> Pin<'a> {
        thread_local! {
            static HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        let start = HINT.with(|c| {
            if c.get() == usize::MAX {
                // A per-thread starting entry, so readers in different threads rarely race.
                c.set((c as *const _ as usize) >> 6);
            }
            c.get()
        });
        let pins = &self.hdr.pins;
        // SeqCst: counted before the entry is filled (see `reload_done`).
        pins.taken.fetch_add(1, Ordering::SeqCst);
        loop {
            for j in 0..PINS {
                let p = &pins.entries[(start + j) % PINS];
                // SeqCst: stored before the `head` CAS it protects (module docs).
                if p.load(Ordering::Relaxed) == 0
                    && p.compare_exchange(0, PUBLISHED | h, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                {
                    return Pin {
                        entry: p,
                        taken: &pins.taken,
                    };
                }
            }
            // Every entry is taken by a reader of a large record: wait for one to finish.
            #[cfg(not(uniconc_loom))]
            std::thread::yield_now();
            #[cfg(uniconc_loom)]
            spin_hint();
        }
    }

    /// Records queued or being written (a snapshot). A record that takes several slots
    /// counts once: once any did, this walks the queued records' head cells.
    #[cfg(not(uniconc_loom))]
    pub(crate) fn queued(&self) -> u64 {
        // Relaxed: a snapshot.
        let mut h = self.hdr.head.load(Ordering::Relaxed);
        let t = self.hdr.tail.load(Ordering::Relaxed).max(h);
        if self.hdr.multi_slot.load(Ordering::Relaxed) == 0 {
            return (t - h) / self.bound.slot;
        }
        let mut records = 0;
        while h < t {
            let c = self.cell(h);
            // Acquire: the meta of a published record (SYNC POINT A); anything else (being
            // written, or already rewritten: the snapshot is stale) counts as one slot.
            let published = c.stamp.load(Ordering::Acquire) == PUBLISHED | h;
            let span = self.span(c.meta.load(Ordering::Relaxed), h & (self.n - 1));
            if span.len.is_some() || span.corrupt || !published {
                records += 1;
            }
            h += if published {
                span.cells
            } else {
                self.bound.slot
            };
        }
        records
    }

    /// `true` if at most `slots` slots are taken, reloading `done`: a sender waiting for
    /// room polls this rather than retrying every send.
    #[cfg(not(uniconc_loom))]
    pub(crate) fn at_most_taken(&self, slots: u64) -> bool {
        // Relaxed: a heuristic; `try_push` makes the real check.
        let t = self.hdr.tail.load(Ordering::Relaxed);
        t.saturating_sub(self.reload_done()) <= slots * self.bound.slot
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

/// A pinned position (see [`Ring::pin`]); unpins when dropped.
struct Pin<'a> {
    entry: &'a AtomicU64,
    taken: &'a AtomicU64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // SYNC POINT B: orders our reads before the producers' writes; SeqCst, as the notifier
        // half of the senders' wake handshake.
        self.entry.store(0, Ordering::SeqCst);
        // SYNC POINT B too: a producer that sees the count drop to zero skips the entries, so
        // the decrement must release our reads as well (and comes after the entry is emptied:
        // a producer that still counts us reads an empty entry).
        self.taken.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(uniconc_loom)))]
mod tests {
    use super::*;

    struct Owned {
        hdr: RingHeader,
        ctl: Vec<CellCtl>,
        data: Vec<u8>,
        cache: Cache,
        bound: Bound,
    }

    impl Owned {
        fn new(n: usize) -> Self {
            Self {
                hdr: RingHeader::default(),
                ctl: (0..n).map(|_| CellCtl::default()).collect(),
                data: vec![0; n * CELL],
                cache: Cache::default(),
                bound: Bound::new(n as u64, None),
            }
        }
        fn bounded(n: usize, capacity: u64) -> Self {
            Self {
                bound: Bound::new(n as u64, Some(capacity)),
                ..Self::new(n)
            }
        }
        fn ring(&mut self) -> Ring<'_> {
            let data = self.data.as_mut_ptr();
            // SAFETY: `data` is n * CELL bytes owned by self, used only through this ring.
            unsafe { Ring::new(&self.hdr, &self.ctl, data, self.bound, &self.cache) }
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
        assert!(r.is_empty());
        assert_eq!(
            push_bytes(&r, &[2]),
            Ok(true),
            "the corrupt cell was given back"
        );
    }

    /// A record larger than `INLINE` keeps its cells from producers while it is read, even
    /// once `head` has moved past it.
    #[test]
    fn a_large_record_being_read_keeps_its_cells() {
        let mut o = Owned::new(2);
        let r = o.ring();
        let large = [1u8; INLINE + 8];
        assert_eq!(push_bytes(&r, &large), Ok(true));
        assert_eq!(push_bytes(&r, &[2]), Ok(true));
        let inner = r.try_pop(|rec| {
            let Record::Bytes(b) = rec else { panic!() };
            assert_eq!(b, large);
            // Another consumer takes the next record meanwhile.
            assert_eq!(pop_bytes(&r).unwrap(), [2]);
            assert!(r.is_empty());
            // The large record's cell is still being read: no producer may rewrite it.
            let full = push_bytes(&r, &[3]);
            assert_eq!(b, large, "its bytes are intact");
            full
        });
        assert!(matches!(inner, Pop::Item(Err(Full))));
        assert_eq!(push_bytes(&r, &[3]), Ok(true));
        assert_eq!(push_bytes(&r, &[4]), Ok(true));
        assert_eq!(pop_bytes(&r).unwrap(), [3]);
        assert_eq!(pop_bytes(&r).unwrap(), [4]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_panicking_reader_gives_its_cells_back() {
        let mut o = Owned::new(2);
        let r = o.ring();
        for round in 0..4u8 {
            // Inline and data-cell records alike.
            let len = if round % 2 == 0 { 1 } else { INLINE + 1 };
            assert_eq!(push_bytes(&r, &vec![round; len]), Ok(true));
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                r.try_pop(|_| -> () { panic!("a Deserialize impl panics") })
            }));
            assert!(res.is_err());
        }
        assert_eq!(r.queued(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn slots_bound_the_count_and_the_bytes() {
        assert_eq!(Bound::new(16, Some(3)), Bound { slot: 4, limit: 12 });
        assert_eq!(Bound::new(16, Some(16)), Bound { slot: 1, limit: 16 });
        assert_eq!(Bound::new(16, Some(100)), Bound { slot: 1, limit: 16 });
        assert_eq!(Bound::new(16, None), Bound { slot: 1, limit: 16 });
        // Two slots of four cells.
        let mut o = Owned::bounded(8, 2);
        let r = o.ring();
        assert_eq!(r.max_record(), 8 * CELL);
        assert_eq!(push_bytes(&r, &[1]), Ok(true));
        assert_eq!(push_bytes(&r, &[2]), Ok(true));
        assert_eq!(push_bytes(&r, &[3]), Err(Full), "two messages at most");
        assert_eq!(r.queued(), 2);
        assert_eq!(pop_bytes(&r).unwrap(), [1]);
        // A message of five cells takes both slots: not while one is taken.
        let big = vec![9u8; 5 * CELL];
        assert_eq!(push_bytes(&r, &big), Err(Full));
        assert_eq!(pop_bytes(&r).unwrap(), [2]);
        assert_eq!(push_bytes(&r, &big), Ok(true));
        assert_eq!(r.queued(), 1, "a message of two slots counts once");
        assert_eq!(push_bytes(&r, &[4]), Err(Full));
        assert_eq!(pop_bytes(&r).unwrap(), big);
        assert_eq!(r.try_push(1, |_| false), Ok(false));
        assert_eq!(r.queued(), 0, "a failed write is no message");
        assert!(pop_bytes(&r).is_none());
        assert!(r.is_empty());
        assert_eq!(push_bytes(&r, &[5]), Ok(true));
        assert_eq!(pop_bytes(&r).unwrap(), [5]);
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
        cache: Cache,
        bytes_model: BytesModel,
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
                bytes_model: BytesModel::new(n),
            }
        }
        fn ring(&self) -> Ring<'_> {
            // SAFETY: n * CELL bytes owned by self, accessed only through rings over self.
            unsafe {
                Ring::new(
                    &self.hdr,
                    &self.ctl,
                    (*self.data.get()).as_mut_ptr(),
                    Bound::new(self.ctl.len() as u64, None),
                    &self.cache,
                    &self.bytes_model,
                )
            }
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

    /// Two consumers read the two records of a full two-cell ring, both larger than
    /// `INLINE` (pinned while read), in either order; the producer's next two pushes need
    /// both cells back.
    #[test]
    fn loom_large_records_are_pinned_while_read() {
        model(|| {
            let s = Arc::new(Shared::new(2));
            let r = s.ring();
            push_val(&r, 1, INLINE + 8);
            push_val(&r, 2, INLINE + 8);
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || pop_one(&s.ring()).0)
                })
                .collect();
            push_val(&r, 3, INLINE + 8);
            push_val(&r, 4, 8);
            let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, vec![1, 2]);
            assert_eq!(pop_one(&r), (3, INLINE + 8));
            assert_eq!(pop_one(&r), (4, 8));
            assert!(r.is_empty());
        });
    }

    /// Two consumers copy the same inline record out of a one-cell ring while the producer
    /// rewrites that cell for the next lap: the consumer whose claim fails drops its copy, so
    /// each record arrives once, whole.
    #[test]
    fn loom_inline_copy_races_the_next_lap() {
        model(|| {
            let s = Arc::new(Shared::new(1));
            let r = s.ring();
            push_val(&r, 1, 16);
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || pop_one(&s.ring()))
                })
                .collect();
            push_val(&r, 2, 16);
            let mut got: Vec<(u8, usize)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, vec![(1, 16), (2, 16)]);
            assert!(r.is_empty());
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
