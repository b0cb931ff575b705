//! The lock-free ring under every channel: an MPMC queue of variable-size records in a
//! fixed array of cells. Producers claim cells with a CAS on `tail` and hand a record over by
//! stamping its head cell, as in Dmitry Vyukov's bounded MPMC queue (the algorithm of
//! crossbeam-channel's `array` flavour), extended so one record spans several consecutive
//! cells. Consumers claim records with a CAS on `head` and give the cells back through a
//! completion position, `done`, advanced in order (DPDK `rte_ring`'s consumer tail), so that a
//! consumer never writes a line a producer writes: handing one small message over moves one
//! cache line between the processes, and the producer reads the consumers' line only when its
//! cached copy of `done` says the ring is full.
//!
//! # Layout
//!
//! - [`RingHeader`], three lines: `head` (next position to read, consumers), the producers'
//!   line (`tail`, next position to write, and `sent`, messages reserved) and the completion
//!   line (`done` and `recvd`, messages taken). Positions count cells and only grow (2^62 cells
//!   are never reached).
//! - `ctl`: one [`CellCtl`] per cell, one cache line each: a stamp, a meta word and [`INLINE`]
//!   bytes. A record of at most `INLINE` bytes (a `u64`, a small struct) lives in its head
//!   cell's line; neighbouring cells never share a line.
//! - `data`: `n * CELL` bytes for larger records, kept apart from the control lines so that a
//!   record's bytes are contiguous; a record at position `p` starts at cell `p % n`. A record
//!   never wraps: a producer that would cross the end first writes a *skip* record up to the
//!   end. The data cells of inline records are never touched (no memory is committed for them).
//! - A view may set a *soft end* ([`Ring::with_soft_end`]): a producer whose record would cross
//!   it goes back to cell 0 (a skip record to the end) when the cells there are free. A ring
//!   reserved much larger than what is usually queued (an unbounded channel's) then commits
//!   pages for what was queued at the most, not for all the traffic that went round it.
//! - A record of [`WARM`] cells or more (16 KiB) that finds the ring idle (every record before
//!   it read and completed) goes back to cell 0 too, wherever it is: a consumer that keeps up
//!   then has each large record written over the cells it read last, still in cache, instead
//!   of the ring walking its whole byte budget and landing each one on cold memory. It is the
//!   soft end's move (a skip record to the end, passed at once), so the protocol and the
//!   recovery of dead producers and consumers are unchanged. On a ring bounded to `cap`
//!   messages, a large record past the first [`WARM_REACH`] cells (8 MiB) also goes back to
//!   cell 0 with records queued before it, once the cells there are free for `cap` records of
//!   its size (the skip is then passed by the consumers, as at the end): a stream whose
//!   consumer keeps up stays within about 8 MiB of cells (or `cap + 1` records, if more)
//!   however large the budget. A message larger than those before it may then wait for the
//!   consumers to pass the skip, though the budget has room for it.
//!
//! # Protocol
//!
//! - A producer may write the cells of positions `t .. t + k` once `t + k <= done + n`: every
//!   record of the previous lap there is read. Its *claim words* say `RESERVING` while it
//!   takes a message slot, then `t + 1` and `k` before it claims the cells by moving `tail`
//!   from `t` to `t + k` with a CAS; it writes the bytes and the meta word, stores
//!   `PUBLISHED | t` in the head cell's stamp, then clears its words. Only head cells get
//!   stamps. A write that fails or panics publishes padding instead and gives the slot back.
//! - A consumer that sees `PUBLISHED | h` in the cell of `head == h` writes `h + 1` to its
//!   *claim word*, claims the record by moving `head` past it with a CAS, reads it, and
//!   completes it: it counts it in `recvd`, then if `done == h` it moves `done` past the
//!   record (the usual case, always with one consumer); otherwise an earlier record is still
//!   being read, and it stamps its head cell `READ | h` and leaves.
//! - A producer that needs room reloads `done` and *sweeps*: while the cell at `done` says
//!   `READ | done`, it moves `done` past that record. So records read out of order are given
//!   back by whoever needs the room; nobody waits for another consumer.
//! - Message counts bound the channel's capacity apart from the cells: `sent` (reserved by
//!   producers before they claim cells, undone if they cannot) and `recvd` (consumers, once a
//!   message is read). Skip records count no message.
//!
//! # Batches
//!
//! - A producer with many records ([`Ring::claim_batch`]) reserves up to [`BATCH_MAX`]
//!   message slots with one CAS on `sent` and claims a run of cells with one `tail` CAS,
//!   never across the end of the ring; it then writes and publishes the records one after
//!   the other (each head cell stamped as above, so consumers see no difference), and
//!   publishes what is left of the run as a skip record, giving the unused slots back.
//! - A consumer ([`Ring::try_pop_batch`]) scans the stamps from `head` while they say
//!   published (never across the end), claims the whole range with one `head` CAS, reads
//!   the records, then completes the range at once: one `recvd` increment, one `done` CAS;
//!   if an earlier record is still being read, it stamps every record of the range `READ`,
//!   its first last, so a sweeper that passes the first passes them all.
//!
//! # Packs
//!
//! - A batch of small messages (at most [`PACK_ITEM`] bytes each) is written as *packs*
//!   ([`BatchClaim::pack_room`]): records of up to [`PACK_BYTES`] holding many messages, each
//!   a length byte and its bytes, after a header (a cursor: the messages taken and the byte
//!   offset of the next one; and the count). A `u64` then takes 2 to 10 bytes of a line, not a
//!   line of its own, so handing a batch over moves several messages per cache line. A pack's
//!   meta word is [`PACKED`] and its length; its bytes are always in its data cells.
//! - Consumers take a pack apart. One that finds it at the head *holds* it: a CAS of its stamp
//!   from `PUBLISHED | h` to a [`HELD`] stamp naming the consumer's thread ([`Taker::owner`]).
//!   It counts the messages it takes in `recvd`, copies their bytes out, moves the cursor past
//!   them and lets go (`PUBLISHED | h` again), then hands its copies on, so a slow reader holds
//!   up nobody ([`Ring::take_packed`]). `head` stays at a pack while it has messages left:
//!   other consumers find it held (and wait, as for an unpublished record) or take the next
//!   ones. The holder that takes the last ones (or finds none left) moves `head` past the pack
//!   while it still holds it, so nobody else claims it, and completes it as a record that
//!   counts no message.
//! - A range ([`Ring::try_pop_batch`]) ends before a pack; a pack at the head is taken apart
//!   up to the range's `max`.
//! - SYNC POINT A for holds: the hold's Acquire CAS pairs with the producer's Release stamp or
//!   the last holder's Release letting go, so each holder sees the bytes and the cursor as
//!   the one before left them. SYNC POINT B holds as for any record: the last holder's
//!   completion comes after every holder's reads (each read before letting go).
//!
//! # Killed inside a pack
//!
//! A consumer's words say `h + 1` and [`RANGE_HOLD`] from before its hold. A reaper lets go
//! for a dead holder ([`Ring::recover_hold`]) with a CAS from the stamp naming that holder:
//! its slot is the reaper's while it reaps, so no live thread holds anything under that name,
//! and a pack let go since (held by a live consumer, or a later record in the cell) is left
//! alone. What the dead consumer had taken is lost with it (and counted); the rest is the
//! next consumer's. One killed between its count and its cursor is counted twice: the channel
//! may then hold that many more than its capacity. One killed after it claimed the pack
//! (`head` past it) is settled as a claim of a single record ([`Ring::recover`]; a held stamp
//! counts as published). A consumer without words (`owner` zero) is never let go, as a
//! record it claims is never recovered.
//!
//! A producer's progress word names a pack, with its cells and messages ([`Progress::pack`]),
//! from before it is published; while the producer writes one, the word still names the
//! record before it, so a reaper pads the claim from the pack on and gives back the slots of
//! its messages: the messages of a pack not yet published are lost with its producer.
//!
//! Stamps are `PUBLISHED | pos` or `READ | pos`; zero, the state of fresh shared memory, is
//! "never written", so no initialisation pass touches the cells. A consumer whose `head` is
//! stale finds a stamp for a later position (or `READ` for its own) and retries; one whose
//! cell holds an older stamp finds the ring empty.
//!
//! # Memory ordering (SYNC POINTs)
//!
//! - SYNC POINT A: the producer's `Release` store of the head cell's stamp (after writing the
//!   bytes and the meta word) pairs with the consumer's `Acquire` load of that stamp: the
//!   consumer sees the bytes and the meta.
//! - SYNC POINT B: the consumer's `Release` completion (the `done` CAS, or the `READ` stamp
//!   then a sweeper's `Acquire` load of it and `AcqRel` CAS of `done`) pairs with the
//!   producers' `Acquire` loads of `done`: a producer's writes to a cell happen after the
//!   reads of the record that held it. The process-private cache of `done` is stored with
//!   `Release` and loaded with `Acquire`, so a thread using another's reload inherits it.
//! - The `head` CAS is `Release` for the claim words only (a reaper that loads `head` with
//!   `Acquire` sees the word of whoever claimed below it); all data visibility goes through
//!   the stamps. The `tail` CAS, the `recvd` increment and the completion are `SeqCst` for
//!   the channel's wake-up handshakes ([`Ring::is_idle`], [`Ring::recheck_room`]), not for the
//!   ring.
//!
//! Mapped memory is untrusted: `n`, the mask and the data pointer come from the private view;
//! a meta word that would make a record run past the end is reported as corrupt and consumes
//! one cell, never an out-of-bounds access.
//!
//! # A consumer killed while it holds a record
//!
//! A consumer killed between claiming a record and completing it (SIGKILL while decoding)
//! would leave `done` behind that record for good. Its claim word names the record; once the
//! consumer is known dead and no live consumer's word names the same record (the channel's
//! reaper knows who is alive: `Chan::recover_claims`), [`Ring::recover`] counts and completes
//! it for the dead one. Only the caller whose CAS (of `done`, or of the stamp to `READ`)
//! finishes the record counts it, so repeating it changes nothing. A consumer killed between
//! its count and its completion is counted twice: the channel may then hold one message more
//! than its capacity (the other order could lose a message slot for good).
//!
//! # A producer killed inside `try_push`
//!
//! A producer killed between claiming cells and publishing them (SIGKILL while encoding)
//! would leave every consumer waiting at `t` for good. Once it is dead and no live producer's
//! words name `t`, [`Ring::recover_send`] publishes a skip record over its cells, marked
//! [`LOST`] so that it counts the message slot the producer took; only the reaper whose CAS
//! moves the stamp from the previous lap's to `RESERVED | t` writes it. Words that say
//! `RESERVING`, or name cells the producer did not get (its CAS lost) or already published,
//! give its slot back. A producer killed in the instant between two of its steps (taking the
//! slot and saying so, publishing and clearing its words) is settled as if it held a slot:
//! the channel may then hold one message more than its capacity, never one fewer.
//!
//! # Killed inside a batch
//!
//! A batch producer's words name its whole run (`pos`, and in `span` the cells and slots)
//! and, in [`SendWords::progress`], the record it is writing, stored before it writes it.
//! [`Ring::recover_send`] keeps every record it published (the one its progress names, if
//! its stamp or `done` says so, and all before it), publishes the rest of the run as a skip
//! record and gives back the slots of the records it never published. A range consumer's
//! claim word names the range's first record and [`SendWords::recv_span`] its cells and
//! messages, marked once they are counted; [`Ring::recover_range`] completes the range (and
//! counts it unless it was counted). Dead consumers whose words name the same position
//! with different ranges (all but one lost their claim) are settled from the shortest
//! range, a prefix of the winner's, on (`channel::recover::settle_receives`); two dead
//! producers that disagree on one position's cells are left alone. A process killed
//! in the instant between two steps is settled as if it held what it had just given back:
//! the channel may then hold up to a batch more than its capacity, never less.

use std::cell::UnsafeCell;

use crate::shm::CachePadded;
use crate::sync::{AtomicU32, AtomicU64, Ordering, spin_hint};

/// Cells of a *large* record (16 KiB): one that goes back to cell 0 when the ring is idle,
/// wherever the ring's soft end is (see the module docs, "Layout").
pub(crate) const WARM: u64 = 256;

/// Cells a bounded ring's large records walk before they may go back to cell 0 with records
/// still queued (8 MiB): the cells read within that reach are still in the last-level cache
/// when the ring comes round (measured: going back sooner, at 512 KiB, made 64 KiB messages
/// ~20% slower, the producer then taking each line from the consumer's core).
pub(crate) const WARM_REACH: u64 = (8 << 20) / CELL as u64;

/// Bytes per cell: one cache line, so a small message (a `u64`) takes exactly one line.
pub(crate) const CELL: usize = 64;

/// Meta flag: the record is a skip record (padding to the end, or a failed write) spanning the
/// cell count in the low bits.
const SKIP: u32 = 1 << 31;
/// Meta flag, with [`SKIP`]: the skip record stands for a message whose producer died while
/// writing it (published by [`Ring::recover_send`]); it counts as one message read.
const LOST: u32 = 1 << 30;
/// Meta flag: the record is a *pack* of small messages, its byte length in the low bits (see
/// the module docs, "Packs").
const PACKED: u32 = 1 << 29;

/// The largest record length the meta word can express.
pub(crate) const MAX_RECORD: usize = (PACKED - 1) as usize;

/// Bytes of a pack's header: its cursor (messages taken in the low 16 bits, the byte offset
/// of the next one in the high 16) and its message count, two `u32`s.
pub(crate) const PACK_HEADER: usize = 8;
/// The largest pack, in bytes (a message takes a length byte and its bytes).
pub(crate) const PACK_BYTES: usize = 1024;
/// The largest message a pack takes; larger ones are records of their own.
pub(crate) const PACK_ITEM: usize = 127;

/// Stamp flag: the record at the stamp's position is published.
const PUBLISHED: u64 = 1 << 63;
/// Stamp flag: the record at the stamp's position was read, its completion is pending.
const READ: u64 = 1 << 62;
/// Stamp flag: a reaper is publishing a dead producer's cells at the stamp's position (see
/// [`Ring::recover_send`]); consumers wait as for an unpublished record.
const RESERVED: u64 = 1 << 61;
/// Stamp flag: a consumer holds the pack at the stamp's position, taking messages from it
/// (see "Packs"); the holder's identity is in bits [`HELD_SHIFT`].. and the position's low
/// bits in [`HELD_POS`]. Consumers wait as for an unpublished record.
const HELD: u64 = 1 << 60;
/// The position bits of a stamp.
const POS: u64 = HELD - 1;
/// The position bits of a held stamp (2^44 cells apart: never two records the stamp could
/// be for, as a held record is unfinished and so within `n` of every live position).
const HELD_POS: u64 = (1 << 44) - 1;
/// Where a held stamp's holder identity starts (16 bits: [`Taker::owner`]).
const HELD_SHIFT: u32 = 44;

/// Positions shared by producers and consumers. `#[repr(C)]`; all-zero is an empty ring.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct RingHeader {
    /// Next position to read, written by consumers. Invariant: `done <= head <= tail`.
    head: CachePadded<AtomicU64>,
    /// Written by producers only.
    prod: CachePadded<ProdLine>,
    /// Written by consumers (and sweeping producers); read by producers when their cached
    /// copy says the ring is full.
    done: CachePadded<DoneLine>,
}

#[derive(Debug, Default)]
#[repr(C)]
struct ProdLine {
    /// Next position to write. Invariant: `tail - done <= n`.
    tail: AtomicU64,
    /// Messages reserved (sent or being sent). Invariant: `sent - recvd <= capacity`, except
    /// transiently by one per racing producer (a failed reservation is undone at once).
    sent: AtomicU64,
}

#[derive(Debug, Default)]
#[repr(C)]
struct DoneLine {
    /// Every position below it is read and may be rewritten.
    done: AtomicU64,
    /// Messages read.
    recvd: AtomicU64,
}

/// A process's cached copies of the completion line: lower bounds of `done` and `recvd`, so
/// a producer reads the consumers' line only when they say the ring is full.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    done: AtomicU64,
    recvd: AtomicU64,
}

/// A producer's claim words, in shared memory (see [`Ring::recover_send`]). `#[repr(C)]`;
/// all-zero: claims nothing.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct SendWords {
    /// [`RESERVING`] from before the producer takes a message slot; `t + 1` from before it
    /// claims the cells at `t`; zero once it has published them (or given the slot back).
    pub(crate) pos: AtomicU64,
    /// With `pos = t + 1`: the cells claimed, and [`SPAN_MESSAGE`] if they are for the message
    /// (not padding to the end of the ring). For a batch claim ([`Ring::claim_batch`]):
    /// [`SPAN_BATCH`], the cells in the low 32 bits and the message slots reserved in bits
    /// 32..44.
    pub(crate) span: AtomicU64,
    /// With a batch claim: where the producer is in it (see [`Progress`]); stored before each
    /// record is written, so a reaper knows which records were published.
    pub(crate) progress: AtomicU64,
    /// The receive side of the same thread: zero while its receive claim word names a single
    /// record; for a range claimed by [`Ring::try_pop_batch`], the cells in the low 32 bits,
    /// the messages in bits 32..63 and [`RANGE_COUNTED`] once they are counted as read.
    pub(crate) recv_span: AtomicU64,
}

/// [`SendWords::pos`]: taking a message slot, no cells claimed yet.
pub(crate) const RESERVING: u64 = u64::MAX;
/// Bit of [`SendWords::span`]: the claimed cells are for the message.
pub(crate) const SPAN_MESSAGE: u64 = 1 << 63;
/// Bit of [`SendWords::span`]: the claim is a batch of records ([`Ring::claim_batch`]).
pub(crate) const SPAN_BATCH: u64 = 1 << 62;
/// Bit of [`SendWords::recv_span`]: the range's messages are counted in `recvd`.
pub(crate) const RANGE_COUNTED: u64 = 1 << 63;

/// Most messages one batch claim reserves (the span word has 12 bits for them); a longer
/// batch takes several claims.
pub(crate) const BATCH_MAX: u64 = (1 << 12) - 1;
/// Most messages one receive claims at once (the range word has 31 bits for them).
const RANGE_MAX: usize = (1 << 31) - 1;
/// [`SendWords::recv_span`] while the thread holds, or is about to hold, the pack its claim
/// word names (no cells: never a range).
pub(crate) const RANGE_HOLD: u64 = 1 << 32;
/// Batch claims need cell offsets and counts to fit [`Progress`]'s 24-bit fields: rings of
/// at most this many cells (512 MiB; larger ones claim record by record).
const BATCH_RING_MAX: u64 = 1 << 23;

/// A batch producer's progress word ([`SendWords::progress`]): the record it is writing,
/// as its cell offset in the claim (bits 0..24), its cells (bits 24..48) and the index of its
/// first message among the claim's (bits 48..60); [`Progress::OWNED`] once the claiming CAS
/// succeeded, [`Progress::PAD`] when the record is the padding that ends the claim,
/// [`Progress::PACK`] when it is a pack, its cells then in bits 24..32 and its messages in
/// bits 32..48.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress(pub(crate) u64);

impl Progress {
    const OWNED: u64 = 1 << 63;
    const PAD: u64 = 1 << 62;
    const PACK: u64 = 1 << 61;
    const FIELD: u64 = (1 << 24) - 1;

    fn new(off: u64, cells: u64, index: u64, owned: bool, pad: bool) -> Self {
        debug_assert!(off <= Self::FIELD && cells <= Self::FIELD && index <= BATCH_MAX);
        Self(
            off | cells << 24
                | index << 48
                | if owned { Self::OWNED } else { 0 }
                | if pad { Self::PAD } else { 0 },
        )
    }

    /// A pack of `msgs` messages in `cells` cells, its first message the claim's `index`th.
    fn pack(off: u64, cells: u64, index: u64, msgs: u64) -> Self {
        debug_assert!(cells <= 0xFF && msgs <= 0xFFFF && index <= BATCH_MAX);
        Self(off | cells << 24 | msgs << 32 | index << 48 | Self::OWNED | Self::PACK)
    }

    fn off(self) -> u64 {
        self.0 & Self::FIELD
    }

    fn cells(self) -> u64 {
        if self.0 & Self::PACK != 0 {
            (self.0 >> 24) & 0xFF
        } else {
            (self.0 >> 24) & Self::FIELD
        }
    }

    /// The messages of the record (a pack's count, one for a message, none for padding).
    fn msgs(self) -> u64 {
        if self.0 & Self::PACK != 0 {
            (self.0 >> 32) & 0xFFFF
        } else {
            u64::from(!self.pad())
        }
    }

    fn index(self) -> u64 {
        (self.0 >> 48) & BATCH_MAX
    }

    fn owned(self) -> bool {
        self.0 & Self::OWNED != 0
    }

    fn pad(self) -> bool {
        self.0 & Self::PAD != 0
    }
}

/// Bytes of a record kept in its head cell's control line (records up to this size).
pub(crate) const INLINE: usize = 48;

/// Control line of one cell. `#[repr(C)]`, one cache line; all-zero is "never written".
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct CellCtl {
    /// Under loom: stands for the cell's bytes, so the model checks that every write of them
    /// happens after the previous reads and every read after the write (the SYNC POINTs).
    #[cfg(uniconc_loom)]
    bytes_model: BytesModel,
    /// `PUBLISHED | pos`, `READ | pos` or zero, see the module docs.
    stamp: AtomicU64,
    /// For a head cell: the record's byte length, or `SKIP | cells`.
    meta: AtomicU32,
    _pad: u32,
    /// The bytes of a record of at most [`INLINE`] bytes whose head cell this is.
    inline: InlineBytes,
}

#[cfg(uniconc_loom)]
#[derive(Debug)]
struct BytesModel(loom::cell::UnsafeCell<()>);

#[cfg(uniconc_loom)]
impl Default for BytesModel {
    fn default() -> Self {
        Self(loom::cell::UnsafeCell::new(()))
    }
}

/// A cell's inline record bytes, written and read only by the owner of the cell's position
/// under the protocol (like the data cells).
#[derive(Debug)]
#[repr(transparent)]
struct InlineBytes(UnsafeCell<[u8; INLINE]>);

impl Default for InlineBytes {
    fn default() -> Self {
        Self(UnsafeCell::new([0; INLINE]))
    }
}

// SAFETY: the bytes are only accessed through `Ring::try_push` by the producer that won the
// cell's position with room below `done + n` (SYNC POINT B), and through `Ring::try_pop` by
// the consumer that won the published position (SYNC POINT A): never by two parties at once.
unsafe impl Sync for InlineBytes {}

#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics only (CachePadded is repr(C)), valid when zero (an empty ring).
unsafe impl crate::shm::ShmSafe for RingHeader {}
#[cfg(not(uniconc_loom))]
// SAFETY: repr(C), atomics and padding only, valid when zero (never written).
unsafe impl crate::shm::ShmSafe for CellCtl {}

/// The ring is full for this message right now (no message slot, or not enough free cells).
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

/// What a head cell's meta word says about its record.
struct Span {
    /// Cells the record takes.
    cells: u64,
    /// Its byte length; `None` for a skip record or a corrupt meta word.
    len: Option<usize>,
    corrupt: bool,
    /// A skip record standing for a message its dead producer never finished.
    lost: bool,
    /// A pack (`len` is its length): taken message by message under a hold, never claimed
    /// whole; its messages are counted as they are taken.
    packed: bool,
}

impl Span {
    /// `true` if the record counts as one message when it is completed (padding does not, nor
    /// a pack, whose messages are counted as they are taken).
    #[inline]
    fn is_message(&self) -> bool {
        (self.len.is_some() && !self.packed) || self.corrupt || self.lost
    }

    /// Reads `meta` for a record whose head cell is `i` of `n`; a record that would be empty or
    /// run past the end is corrupt and spans one cell.
    #[inline]
    fn of(meta: u32, i: u64, n: u64) -> Self {
        let packed = meta & (SKIP | PACKED) == PACKED;
        let (cells, len, lost) = if meta & SKIP != 0 {
            (u64::from(meta & !(SKIP | LOST)), None, meta & LOST != 0)
        } else {
            let len = (meta & !PACKED) as usize;
            (cells_for(len), Some(len), false)
        };
        // A length with the `LOST` bit is beyond `MAX_RECORD`: corrupt too, as is a pack
        // shorter than its header or longer than a pack may be.
        if cells == 0
            || i + cells > n
            || (len.is_some() && meta & LOST != 0)
            || (packed && !(PACK_HEADER..=PACK_BYTES).contains(&len.unwrap_or(0)))
        {
            Self {
                cells: 1,
                len: None,
                corrupt: true,
                lost: false,
                packed: false,
            }
        } else {
            Self {
                cells,
                len,
                corrupt: false,
                lost,
                packed,
            }
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
    /// The soft end (see [`Ring::with_soft_end`]); `n` when there is none.
    soft: u64,
    cache: &'a Cache,
}

/// Number of cells a record of `len` bytes takes (at least one).
#[inline]
pub(crate) fn cells_for(len: usize) -> u64 {
    (len.div_ceil(CELL)).max(1) as u64
}

impl<'a> Ring<'a> {
    /// A view over `hdr`, `ctl` (`n` cells, a power of two) and `n * CELL` bytes at `data`,
    /// with this process's `cache` of the completion line.
    ///
    /// # Safety
    /// `data` is valid for reads and writes of `ctl.len() * CELL` bytes for `'a`, and is only
    /// accessed through rings following this module's protocol over the same `hdr` and `ctl`.
    #[inline]
    pub(crate) unsafe fn new(
        hdr: &'a RingHeader,
        ctl: &'a [CellCtl],
        data: *mut u8,
        cache: &'a Cache,
    ) -> Self {
        let n = ctl.len() as u64;
        assert!(
            n.is_power_of_two(),
            "a ring has a power-of-two number of cells"
        );
        Self {
            hdr,
            ctl,
            data,
            n,
            soft: n,
            cache,
        }
    }

    /// The same view with a *soft end* at cell `soft`: a record that would cross it goes back
    /// to cell 0 instead (after a skip record to the end), provided the cells it needs there
    /// are free; otherwise the ring goes on past it as usual. A large ring then keeps using its
    /// first `soft` cells while little is queued and reaches further only under a backlog, so
    /// the pages it commits follow what was queued at most, not the traffic that went round.
    /// The ring's protocol is unchanged: the skip record is the one a record that would cross
    /// the end writes. Every view of a ring should use the same soft end (a different one only
    /// changes where records go, never correctness).
    #[cfg(not(uniconc_loom))]
    #[inline]
    pub(crate) fn with_soft_end(mut self, soft: u64) -> Self {
        self.soft = soft.clamp(1, self.n);
        self
    }

    /// The largest record that fits at all.
    #[inline]
    pub(crate) fn max_record(&self) -> usize {
        (self.n as usize).saturating_mul(CELL).min(MAX_RECORD)
    }

    #[inline]
    fn cell(&self, pos: u64) -> &CellCtl {
        &self.ctl[(pos & (self.n - 1)) as usize]
    }

    /// Reserves one of `cap` message slots (`None`: unbounded). `Err(Full)` if none is free.
    #[inline]
    fn reserve(&self, cap: Option<u64>) -> Result<(), Full> {
        let prod = &self.hdr.prod;
        // Relaxed: the counts are a bound, not a synchronisation point (the stamps and `done`
        // are).
        let before = prod.sent.fetch_add(1, Ordering::Relaxed);
        let Some(cap) = cap else { return Ok(()) };
        // `recvd` only grows, so a stale cached copy can only make us refuse, never admit
        // too many; re-read it when the cache says full.
        if before.saturating_sub(self.cache.recvd.load(Ordering::Relaxed)) < cap {
            return Ok(());
        }
        let fresh = self.hdr.done.recvd.load(Ordering::Relaxed);
        // A plain store, not `fetch_max`: any value ever read from `recvd` is a lower bound of
        // it, so a racing thread storing an older one is harmless.
        self.cache.recvd.store(fresh, Ordering::Relaxed);
        if before.saturating_sub(fresh) < cap {
            Ok(())
        } else {
            self.unreserve();
            Err(Full)
        }
    }

    #[inline]
    fn unreserve(&self) {
        // Relaxed: as in `reserve`.
        self.hdr.prod.sent.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reloads `done`, first moving it past the records at its front that were read out of
    /// order (the sweep, see the module docs); refreshes the cache and returns it.
    fn advance_done(&self) -> u64 {
        let done = &self.hdr.done.done;
        // SYNC POINT B: Acquire pairs with the consumers' Release completions. SeqCst (a plain
        // load on x86) for `recheck_room`'s handshake.
        let mut d = done.load(Ordering::SeqCst);
        loop {
            let c = self.cell(d);
            // SYNC POINT B: Acquire pairs with the reader's Release `READ` store; SeqCst as
            // above.
            if c.stamp.load(Ordering::SeqCst) != READ | d {
                break;
            }
            // Relaxed: written before the stamp we acquired. If `done` moved on meanwhile the
            // cell may be rewritten, but then the CAS below fails and the value is not used.
            let cells = Span::of(c.meta.load(Ordering::Relaxed), d & (self.n - 1), self.n).cells;
            // AcqRel: passes the reader's completion on to the producers that acquire `done`.
            match done.compare_exchange(d, d + cells, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => d += cells,
                Err(cur) => d = cur,
            }
        }
        // Release: a thread of this process that loads the cache (Acquire) inherits our
        // Acquire of `done`.
        self.cache.done.store(d, Ordering::Release);
        d
    }

    /// For a producer of `k` cells at `t` (cell `i`) past the soft end: `true` if every record
    /// before `t` is read and completed (`done == t`, so nothing is queued or being read).
    /// The cached `done` is reloaded (a read of the consumers' line) by the record that
    /// crosses the soft end, then only by those whose cells pass a multiple of 64 positions,
    /// so records past the soft end while messages stay queued cost no extra miss each.
    #[inline]
    fn idle_at(&self, t: u64, i: u64, k: u64) -> bool {
        // Acquire, as every load of the cache; this only picks where the record goes: the
        // room checks of `try_push` decide what may be written (SYNC POINT B).
        self.cache.done.load(Ordering::Acquire) == t
            || ((i <= self.soft || t >> 6 != (t + k) >> 6) && self.advance_done() == t)
    }

    /// For a producer of a large record (`k >= WARM` cells) at `t` (cell `i`, at least
    /// [`WARM_REACH`]) of a ring bounded to `cap` messages: `true` if the cells from 0 of the
    /// next lap hold `cap` records of this size already free (every record in them read:
    /// `done` is that far into this lap). The record then goes back to cell 0 though records
    /// are queued before it, so a consumer that keeps up reads large records from the start of
    /// the ring instead of from all of it, and `cap` more records of this size fit before the
    /// consumers pass the skip.
    #[inline]
    fn warm_room(&self, t: u64, i: u64, k: u64, cap: Option<u64>) -> bool {
        let Some(cap) = cap else { return false };
        let need = cap.saturating_mul(k);
        // `done` is at most `t`: the cells before `i` cannot be free for more than `i`.
        if need >= i || i < WARM_REACH {
            return false;
        }
        let lap = t - i;
        // Acquire, as every load of the cache; this only picks where the record goes: the room
        // checks of `try_push` decide what may be written (SYNC POINT B).
        self.cache.done.load(Ordering::Acquire) >= lap + need || self.advance_done() >= lap + need
    }

    /// Takes and completes, as a consumer would, the skip record this producer published at
    /// `t` to go back from the soft end (the ring was idle, so it is at the head): the whole
    /// ring is free again at once, not only once a consumer next looks, so a producer that
    /// fills it before then never finds it full early. `intent` is this thread's consumer
    /// claim word (see [`Ring::try_pop`]): a producer killed between the claim and the
    /// completion is settled by [`Ring::recover`]. If a consumer took the record first, it
    /// completes it.
    ///
    /// `range` is the thread's range word ([`SendWords::recv_span`]): cleared first, so that
    /// a reaper reads the claim as one of a single record, not as the range this thread last
    /// received with `try_pop_batch` (it would settle that range's cells, or none).
    fn pass_skip(&self, t: u64, cells: u64, intent: &AtomicU64, range: &AtomicU64) {
        if range.load(Ordering::Relaxed) != 0 {
            // Relaxed: ordered before the claim word's Release store (as in `claim`).
            range.store(0, Ordering::Relaxed);
        }
        // Release: as in `claim`.
        intent.store(t + 1, Ordering::Release);
        if self
            .hdr
            .head
            .compare_exchange(t, t + cells, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            self.complete(t, cells, false);
        } else {
            // A consumer took the skip record: the word must not name it while this thread
            // goes on sending (it would hold back that record's recovery if its taker died,
            // for as long as this thread receives nothing). Release: as in `claim`.
            intent.store(0, Ordering::Release);
        }
    }

    #[inline]
    fn publish(&self, t: u64, meta: u32) {
        let c = self.cell(t);
        // Relaxed: ordered before the stamp's Release store below (SYNC POINT A).
        c.meta.store(meta, Ordering::Relaxed);
        // SYNC POINT A: publishes the bytes and the meta word.
        c.stamp.store(PUBLISHED | t, Ordering::Release);
    }

    /// Where the bytes of a pack whose head cell is `i` live: always its data cells (a pack
    /// grows as it is written, before its length is known).
    ///
    /// # Safety
    /// As for [`Ring::bytes`], for a pack of at most `(n - i) * CELL` bytes.
    #[inline]
    unsafe fn pack_bytes(&self, i: u64) -> *mut u8 {
        // SAFETY: `i < n`, within `data` (the caller's contract).
        unsafe { self.data.add(i as usize * CELL) }
    }

    /// Where the bytes of a record of `len` bytes whose head cell is `i` live.
    ///
    /// # Safety
    /// `i < n`, `i + cells_for(len) <= n`, and the caller owns the record's position (as a
    /// producer that won it with room, or a consumer that won it published).
    #[inline]
    unsafe fn bytes(&self, i: u64, len: usize) -> *mut u8 {
        if len <= INLINE {
            self.ctl[i as usize].inline.0.get().cast()
        } else {
            // SAFETY: `i * CELL + len <= n * CELL` (the caller's contract), within `data`.
            unsafe { self.data.add(i as usize * CELL) }
        }
    }

    /// Writes a message of `len` bytes (`len <= max_record()`), filled by `write`, if one of
    /// `cap` message slots (`None`: unbounded) and the cells are free. Returns `Ok(true)` once
    /// published, `Ok(false)` if `write` failed (the claimed cells are published as a skip
    /// record, so the ring stays consistent, and the message slot is given back; the same
    /// happens if `write` panics, before the panic goes on).
    ///
    /// # Errors
    /// [`Full`] if no message slot or not enough cells are free right now.
    pub(crate) fn try_push(
        &self,
        len: usize,
        cap: Option<u64>,
        words: &SendWords,
        intent: &AtomicU64,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<bool, Full> {
        assert!(len <= self.max_record(), "record larger than the ring");
        // Dropped last: the words are cleared once the cells are published (or none taken).
        let _idle = Idle(&words.pos);
        // Release: a reaper that sees it (Acquire) sees this producer's earlier publications.
        words.pos.store(RESERVING, Ordering::Release);
        self.reserve(cap)?;
        let k = cells_for(len);
        let mask = self.n - 1;
        let tail = &self.hdr.prod.tail;
        loop {
            // Relaxed: a stale value is caught by the CAS.
            let t = tail.load(Ordering::Relaxed);
            let i = t & mask;
            // `back`: a skip to the end of the ring, and whether it is at the head (the ring
            // idle), to be passed at once.
            let (kk, back) = if i + k > self.n {
                (self.n - i, Some(false))
            } else if i > 0 && (i + k > self.soft || k >= WARM) && self.idle_at(t, i, k) {
                // Past the soft end, or a large record, with nothing queued: back to cell 0,
                // as at the end (a large record then reuses the cells read last).
                (self.n - i, Some(true))
            } else if k >= WARM && self.warm_room(t, i, k, cap) {
                // A large record, the first cells free for a full channel of its size.
                (self.n - i, Some(false))
            } else {
                (k, None)
            };
            let skip = back.is_some();
            // SYNC POINT B, through the cache (Acquire pairs with its Release store).
            if t + kk > self.cache.done.load(Ordering::Acquire) + self.n
                && t + kk > self.advance_done() + self.n
            {
                // Relaxed: re-reading tail only decides between "retry" and "full".
                if tail.load(Ordering::Relaxed) == t {
                    self.unreserve();
                    return Err(Full);
                }
                continue;
            }
            // Relaxed: published by the CAS below (SeqCst), for a reaper that sees the claim.
            let span = kk | if skip { 0 } else { SPAN_MESSAGE };
            words.span.store(span, Ordering::Relaxed);
            words.pos.store(t + 1, Ordering::Relaxed);
            if tail
                .compare_exchange_weak(t, t + kk, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                spin_hint();
                continue;
            }
            // We own positions t..t+kk.
            if let Some(at_head) = back {
                self.publish(t, SKIP | kk as u32);
                if at_head {
                    // Back from the soft end of an idle ring: pass the skip at once.
                    self.pass_skip(t, kk, intent, &words.recv_span);
                }
                continue;
            }
            // Publishes padding in the cells' place (and gives the message slot back) unless
            // the write succeeds, so a `Serialize` impl that fails or panics leaves no hole
            // for the consumers to wait at.
            let padding = Padding {
                ring: self,
                t,
                cells: kk,
            };
            // SAFETY: cells i..i+kk (kk = cells_for(len)) are in bounds (i + kk <= n) and
            // exclusively ours: we won the CAS for their positions, and every record that held
            // them in the previous lap is read (`t + kk <= done + n`, SYNC POINT B), so no
            // consumer reads them and no other producer writes them until we publish; `bytes`
            // points at `len` bytes of them.
            let buf = unsafe { std::slice::from_raw_parts_mut(self.bytes(i, len), len) };
            #[cfg(uniconc_loom)]
            for c in &self.ctl[i as usize..(i + kk) as usize] {
                c.bytes_model.0.with_mut(|_| ());
            }
            if !write(buf) {
                return Ok(false); // `padding` publishes
            }
            std::mem::forget(padding);
            self.publish(t, len as u32);
            return Ok(true);
        }
    }

    /// Reserves up to `want` of `cap` message slots (`None`: unbounded) with one atomic step;
    /// returns how many (zero: none is free). Unlike [`Ring::reserve`], a bounded reservation
    /// never overshoots the capacity, not even for an instant: a batch would otherwise make
    /// racing senders see the channel full while it has room.
    fn reserve_many(&self, cap: Option<u64>, want: u64) -> u64 {
        let sent = &self.hdr.prod.sent;
        // Relaxed: as in `reserve`.
        let Some(cap) = cap else {
            sent.fetch_add(want, Ordering::Relaxed);
            return want;
        };
        let mut cur = sent.load(Ordering::Relaxed);
        let mut recvd = self.cache.recvd.load(Ordering::Relaxed);
        let mut fresh = false;
        loop {
            let free = cap.saturating_sub(cur.saturating_sub(recvd));
            if free < want && !fresh {
                // As in `reserve`: the cache can only make us refuse; re-read once.
                recvd = self.hdr.done.recvd.load(Ordering::Relaxed);
                self.cache.recvd.store(recvd, Ordering::Relaxed);
                fresh = true;
                continue;
            }
            let got = free.min(want);
            if got == 0 {
                return 0;
            }
            match sent.compare_exchange_weak(cur, cur + got, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return got,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives `k` message slots back.
    #[inline]
    fn unreserve_many(&self, k: u64) {
        if k > 0 {
            // Relaxed: as in `reserve`.
            self.hdr.prod.sent.fetch_sub(k, Ordering::Relaxed);
        }
    }

    /// Claims room for a batch of records with one reservation of message slots and one
    /// `tail` CAS: up to `want_msgs` slots (at most [`BATCH_MAX`]) and up to `want_cells`
    /// cells, at least `first` (the cells of the first record). The claim never crosses the
    /// end of the ring or its soft end (a record there takes [`Ring::try_push`], which goes
    /// round): then, or on a ring too large for batch claims, [`Batch::Elsewhere`]. Fill it
    /// with [`BatchClaim::push`]; whatever is left unused when it is dropped is published as
    /// padding and its slots given back.
    ///
    /// `words` say what the producer holds at every step (see [`Ring::recover_send`]).
    pub(crate) fn claim_batch<'r>(
        &'r self,
        cap: Option<u64>,
        words: &'r SendWords,
        first: u64,
        want_msgs: u64,
        want_cells: u64,
    ) -> Result<BatchClaim<'r, 'a>, Batch> {
        let mask = self.n - 1;
        if self.n > BATCH_RING_MAX || first > self.n {
            return Err(Batch::Elsewhere);
        }
        // Relaxed: a stale tail only picks the path; the CAS below decides.
        let i = self.hdr.prod.tail.load(Ordering::Relaxed) & mask;
        let limit = if i < self.soft { self.soft } else { self.n };
        if i + first > limit {
            return Err(Batch::Elsewhere);
        }
        // Dropped on every early return: the words say nothing is held.
        let idle = IdleBatch(words);
        let want = want_msgs.clamp(1, BATCH_MAX);
        // Relaxed: ordered before the Release store below. While `pos` says `RESERVING`, a
        // batch span says how many slots a reaper gives back.
        words.span.store(want << 32 | SPAN_BATCH, Ordering::Relaxed);
        // Release: as in `try_push`.
        words.pos.store(RESERVING, Ordering::Release);
        let m = self.reserve_many(cap, want);
        // Relaxed: read by a reaper once this process is dead. Killed just before it, the
        // reaper gives back `want >= m` slots: more room than the capacity, never less.
        words.span.store(m << 32 | SPAN_BATCH, Ordering::Relaxed);
        if m == 0 {
            return Err(Batch::Full);
        }
        let tail = &self.hdr.prod.tail;
        loop {
            // Relaxed: a stale value is caught by the CAS.
            let t = tail.load(Ordering::Relaxed);
            let i = t & mask;
            let limit = if i < self.soft { self.soft } else { self.n };
            if i + first > limit {
                self.unreserve_many(m);
                return Err(Batch::Elsewhere);
            }
            // SYNC POINT B, through the cache (Acquire pairs with its Release store).
            let mut room = (self.cache.done.load(Ordering::Acquire) + self.n).saturating_sub(t);
            if room < want_cells {
                room = (self.advance_done() + self.n).saturating_sub(t);
            }
            if room < first {
                // Relaxed: re-reading tail only decides between "retry" and "full".
                if tail.load(Ordering::Relaxed) == t {
                    self.unreserve_many(m);
                    return Err(Batch::Full);
                }
                continue;
            }
            let k = want_cells.clamp(first, limit - i).min(room);
            // Relaxed: published by the CAS below (SeqCst), for a reaper that sees the claim.
            words
                .span
                .store(k | m << 32 | SPAN_BATCH | SPAN_MESSAGE, Ordering::Relaxed);
            words.progress.store(
                Progress::new(0, first, 0, false, false).0,
                Ordering::Relaxed,
            );
            words.pos.store(t + 1, Ordering::Relaxed);
            // SeqCst: the producer half of the receivers' wake handshake, as in `try_push`.
            if tail
                .compare_exchange_weak(t, t + k, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                spin_hint();
                continue;
            }
            // Relaxed: read by a reaper once this process is dead (all its stores visible).
            words
                .progress
                .store(Progress::new(0, first, 0, true, false).0, Ordering::Relaxed);
            std::mem::forget(idle);
            return Ok(BatchClaim {
                ring: self,
                words,
                t,
                k,
                m,
                off: 0,
                j: 0,
                pack_len: PACK_HEADER,
                pack_count: 0,
            });
        }
    }

    /// Claims the record at the head, if one is published: moves `head` past it and returns
    /// its position and span. `intent` holds `h + 1` from before the claim of `h` is made (the
    /// Release `head` CAS publishes it), so whoever sees the claim sees who may have made it
    /// (see [`Ring::recover`]). A pack at the head is returned unclaimed (`span.packed`): its
    /// messages are taken with [`Ring::take_packed`].
    fn claim(&self, intent: &AtomicU64) -> Option<(u64, Span)> {
        let mut lost = false;
        loop {
            // Relaxed: a stale head is caught by the stamp check or the CAS.
            let h = self.hdr.head.load(Ordering::Relaxed);
            let c = self.cell(h);
            // SYNC POINT A: Acquire pairs with the producer's Release stamp.
            let s = c.stamp.load(Ordering::Acquire);
            if s != PUBLISHED | h {
                if s & (PUBLISHED | READ) != 0 && (s & POS > h || s == READ | h) {
                    // The head moved on under us.
                    spin_hint();
                    continue;
                }
                if lost {
                    // The word names a record another consumer took: while this thread
                    // waits, it would hold back that record's recovery if its taker died
                    // (`Chan::recover_claims`). Release: as a claim's.
                    intent.store(0, Ordering::Release);
                }
                return None;
            }
            // Relaxed: ordered after the stamp's Acquire load (SYNC POINT A).
            let span = Span::of(c.meta.load(Ordering::Relaxed), h & (self.n - 1), self.n);
            if span.packed {
                return Some((h, span));
            }
            // Release: a reaper that sees this (Acquire) sees the completion of the record
            // this consumer held before. Published by the CAS below.
            intent.store(h + 1, Ordering::Release);
            // Release: a reaper that sees the claim (Acquire load of `head`) sees `intent`.
            // No data visibility rides on it: that goes through the stamps.
            if self
                .hdr
                .head
                .compare_exchange_weak(h, h + span.cells, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                lost = true;
                spin_hint();
                continue;
            }
            return Some((h, span));
        }
    }

    /// Takes the record at the head, if one is published, handing its bytes to `read` (or
    /// the next message of the pack at the head). `taker.intent` is this thread's claim word
    /// (see [`Ring::recover`]): `h + 1` from before it claims the record at `h` until it
    /// claims another (a word naming a finished record is harmless; clearing it would cost a
    /// store per receive), or zero after a lost claim.
    pub(crate) fn try_pop<R>(
        &self,
        taker: &Taker<'_>,
        read: impl FnOnce(Record<'_>) -> R,
    ) -> Pop<R> {
        let mut read = Some(read);
        loop {
            let Some((h, span)) = self.claim(taker.intent) else {
                return Pop::Empty;
            };
            if span.packed {
                let mut out = None;
                let took = self.take_packed(h, &span, taker, 1, &mut |rec| {
                    if let Some(f) = read.take() {
                        out = Some(f(rec));
                    }
                });
                match (took, out) {
                    (None, _) => return Pop::Empty,
                    (Some(_), Some(r)) => return Pop::Item(r),
                    (Some(_), None) => continue, // it was empty: claimed and completed
                }
            }
            // Completes the record even if `read` panics (a `Deserialize` impl may).
            let _complete = Complete {
                ring: self,
                h,
                cells: span.cells,
                message: span.is_message(),
            };
            if span.corrupt {
                return Pop::Item((read.take().expect("read once"))(Record::Corrupt));
            }
            if let Some(len) = span.len {
                let i = h & (self.n - 1);
                // SAFETY: `span.cells = cells_for(len)` and `i + span.cells <= n` (`Span::of`),
                // so in bounds; the cells are ours (we won the head CAS for this published
                // record) and the producer's writes are visible (SYNC POINT A) and finished.
                let bytes = unsafe { std::slice::from_raw_parts(self.bytes(i, len), len) };
                #[cfg(uniconc_loom)]
                for c in &self.ctl[i as usize..(i + span.cells) as usize] {
                    c.bytes_model.0.with(|_| ());
                }
                return Pop::Item((read.take().expect("read once"))(Record::Bytes(bytes)));
            }
            // A skip record: completed as `_complete` drops; on to the next.
        }
    }

    /// Takes every record published from the head on, up to `max` messages, with one `head`
    /// CAS, hands each one's bytes to `read` in order, then completes them all at once (one
    /// `recvd` increment, one `done` CAS). Returns the messages handed to `read`; zero if
    /// none is published at the head (see [`Pop::Empty`]). A range never crosses the end of
    /// the ring.
    ///
    /// `intent` is this thread's receive claim word and `span` its range word
    /// ([`SendWords::recv_span`]): from before the claim they name the range (`h + 1`, and
    /// its cells and messages), so a reaper can finish it for a consumer killed holding it
    /// ([`Ring::recover_range`]). If `read` panics the range is completed anyway: the
    /// messages after the one being read are lost with the panic.
    pub(crate) fn try_pop_batch(
        &self,
        taker: &Taker<'_>,
        max: usize,
        mut read: impl FnMut(Record<'_>),
    ) -> usize {
        let (intent, span) = (taker.intent, taker.range);
        let max = max.min(RANGE_MAX);
        let mask = self.n - 1;
        let mut lost = false;
        loop {
            // Relaxed: a stale head is caught by the stamp checks or the CAS.
            let h = self.hdr.head.load(Ordering::Relaxed);
            let (mut p, mut msgs) = (h, 0);
            let mut pack = None;
            while msgs < max {
                let c = self.cell(p);
                // SYNC POINT A: Acquire pairs with the producer's Release stamp.
                if c.stamp.load(Ordering::Acquire) != PUBLISHED | p {
                    break;
                }
                // Relaxed: ordered after the stamp's Acquire load (SYNC POINT A).
                let sp = Span::of(c.meta.load(Ordering::Relaxed), p & mask, self.n);
                if sp.packed {
                    // A range ends before a pack; one at the head is taken apart.
                    pack = (p == h).then_some(sp);
                    break;
                }
                msgs += usize::from(sp.is_message());
                p += sp.cells;
                if p & mask == 0 {
                    break; // the end of the ring: a range never wraps
                }
            }
            if let Some(sp) = pack {
                match self.take_packed(h, &sp, taker, max, &mut read) {
                    None => return 0,
                    Some(0) => continue, // it was empty: claimed and completed
                    Some(got) => return got,
                }
            }
            if p == h {
                // Nothing published at `h` (or `head` moved on): one look as `try_pop` makes
                // tells the two apart.
                if span.load(Ordering::Relaxed) != 0 {
                    // Relaxed: ordered before the claim word's Release store in `claim`.
                    span.store(0, Ordering::Relaxed);
                }
                return match self.try_pop(taker, &mut read) {
                    Pop::Item(()) => 1,
                    Pop::Empty => {
                        if lost {
                            // Release: as in `claim`.
                            intent.store(0, Ordering::Release);
                        }
                        0
                    }
                };
            }
            let cells = p - h;
            // Relaxed: ordered before the claim word's Release store, which the `head` CAS
            // publishes (as in `claim`).
            span.store(cells | (msgs as u64) << 32, Ordering::Relaxed);
            // Release: as in `claim`.
            intent.store(h + 1, Ordering::Release);
            // Release: as in `claim`.
            if self
                .hdr
                .head
                .compare_exchange_weak(h, p, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                lost = true;
                spin_hint();
                continue;
            }
            // Completes the range even if `read` panics.
            let complete = CompleteRange {
                ring: self,
                h,
                cells,
                msgs: msgs as u64,
                span,
            };
            if msgs == 0 {
                // Skip records only (a pack after them): on to what follows.
                drop(complete);
                continue;
            }
            let mut q = h;
            while q < p {
                let i = q & mask;
                // Relaxed: read in the scan above, after the stamp's Acquire; unchanged since
                // (the record is ours until we complete it).
                let sp = Span::of(self.cell(q).meta.load(Ordering::Relaxed), i, self.n);
                if sp.corrupt {
                    read(Record::Corrupt);
                } else if let Some(len) = sp.len {
                    // SAFETY: as in `try_pop`: in bounds (`Span::of`), ours (we won the head
                    // CAS past this published record), the producer's writes visible (SYNC
                    // POINT A, the scan's Acquire load of its stamp) and finished.
                    let bytes = unsafe { std::slice::from_raw_parts(self.bytes(i, len), len) };
                    #[cfg(uniconc_loom)]
                    for c in &self.ctl[i as usize..(i + sp.cells) as usize] {
                        c.bytes_model.0.with(|_| ());
                    }
                    read(Record::Bytes(bytes));
                }
                q += sp.cells;
            }
            return msgs;
        }
    }

    /// Takes up to `max` messages from the pack at `h` (`span`), found published at the head
    /// (see "Packs" in the module docs): holds it (its stamp from `PUBLISHED | h` to held by
    /// `taker`), counts the messages it takes, copies their bytes out and moves the pack's
    /// cursor past them, and lets go; a pack it takes the last messages of (or finds empty)
    /// it claims and completes as a record. Then it hands each message's bytes to `read`, in
    /// order: a slow or stuck reader holds up nobody. Returns `None` if another consumer
    /// holds the pack (or it is gone); otherwise the messages handed to `read`, zero if the
    /// pack was empty.
    ///
    /// If `read` panics, the messages it was to be handed after that one are lost with the
    /// panic, as in [`Ring::try_pop_batch`]; so are the ones a consumer killed after it took
    /// them (one killed while it holds the pack is let go by [`Ring::recover_hold`]).
    fn take_packed(
        &self,
        h: u64,
        span: &Span,
        taker: &Taker<'_>,
        max: usize,
        read: &mut impl FnMut(Record<'_>),
    ) -> Option<usize> {
        let c = self.cell(h);
        // Relaxed: ordered before the claim word's Release store (as in `claim`).
        taker.range.store(RANGE_HOLD, Ordering::Relaxed);
        // Release: as a claim's. A reaper of this process finds the pack it may hold here.
        taker.intent.store(h + 1, Ordering::Release);
        let held = held_stamp(taker.owner, h);
        let mut hold = Hold {
            ring: self,
            h,
            taker,
            empty: None,
        };
        // SYNC POINT A (Acquire): the producer's writes, or the last holder's (its Release
        // letting go). Relaxed on failure: nothing is read.
        if c.stamp
            .compare_exchange(PUBLISHED | h, held, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            hold.words_clear();
            std::mem::forget(hold);
            return None;
        }
        let i = h & (self.n - 1);
        let len = span.len.unwrap_or(0);
        #[cfg(uniconc_loom)]
        for cc in &self.ctl[i as usize..(i + span.cells) as usize] {
            cc.bytes_model.0.with_mut(|_| ());
        }
        // SAFETY: a pack's `len` bytes are in its data cells (`pack_bytes`), in bounds
        // (`Span::of`: `i + cells_for(len) <= n`); the record is published and unfinished
        // (a pack is claimed only by its last holder, which holds it), and held by us, so
        // nobody else reads or writes its bytes until we let go; its producer's writes and the
        // last holder's are visible (the Acquire CAS above). `Span::of` checked that `len`
        // holds the header.
        let rec = unsafe { std::slice::from_raw_parts_mut(self.pack_bytes(i), len) };
        let word = |at: usize| u32::from_le_bytes(rec[at..at + 4].try_into().expect("4 bytes"));
        let (cursor, count) = (word(0), word(4) as usize);
        let (taken, off) = ((cursor & 0xFFFF) as usize, (cursor >> 16) as usize);
        // The pack's messages from `off`: length-prefixed, `count - taken` of them left.
        // Mapped memory is untrusted: a length past the end ends the pack as corrupt.
        let mut end = off.max(PACK_HEADER);
        let (mut got, mut corrupt) = (0, off < PACK_HEADER || taken > count);
        while !corrupt && got < max && taken + got < count {
            match rec.get(end).map(|&l| end + 1 + usize::from(l)) {
                Some(next) if next <= len => (end, got) = (next, got + 1),
                _ => corrupt = true,
            }
        }
        // A corrupt pack is taken whole: its good messages, then one `Record::Corrupt`.
        let counted = if corrupt {
            count.saturating_sub(taken).clamp(got + 1, PACK_BYTES)
        } else {
            got
        };
        if counted > 0 {
            // SeqCst: as in `complete` (the senders' wake handshake). Counted before the
            // cursor moves: a holder killed between the two is counted again (the channel
            // may then hold that many more than its capacity, never fewer).
            self.hdr
                .done
                .recvd
                .fetch_add(counted as u64, Ordering::SeqCst);
        }
        let start = off.max(PACK_HEADER);
        let mut taken_bytes = [0u8; PACK_BYTES];
        let mine = &mut taken_bytes[..end - start];
        mine.copy_from_slice(&rec[start..end]);
        let cursor = ((taken + got) as u32 & 0xFFFF) | (end as u32) << 16;
        // One aligned 4-byte store (a cell's start), so a holder killed here leaves the old
        // cursor or the new one.
        rec[..4].copy_from_slice(&cursor.to_le_bytes());
        if corrupt || taken + got == count {
            hold.empty = Some(span.cells);
        }
        #[cfg(all(test, not(uniconc_loom)))]
        if tests::DIE_HOLDING.get() {
            // The test's consumer "dies" here: it took the messages and never lets go.
            std::mem::forget(hold);
            return None;
        }
        // Lets go (or claims and completes the pack, if it is empty now).
        drop(hold);
        let mut at = 0;
        for _ in 0..got {
            let l = usize::from(mine[at]);
            read(Record::Bytes(&mine[at + 1..at + 1 + l]));
            at += 1 + l;
        }
        if corrupt {
            read(Record::Corrupt);
        }
        Some(got + usize::from(corrupt))
    }

    /// Lets go of the pack at `h` for a consumer that held it (stamp `held`, see
    /// [`held_stamp`]) and died: what it took is lost with it, the rest is the next
    /// consumer's. Returns `true` if it let go. The dead consumer's identity makes the stamp
    /// its own: a pack held since by a live consumer (or a later record) is left alone.
    pub(crate) fn recover_hold(&self, h: u64, owner: u64) -> bool {
        // Release: the dead holder's writes (the cursor, the meta), visible to the reaper as
        // every store of a dead process, pass on to the next holder's Acquire CAS.
        self.cell(h)
            .stamp
            .compare_exchange(
                held_stamp(owner, h),
                PUBLISHED | h,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Completes the range `h .. h + cells` holding `msgs` messages, taken by
    /// [`Ring::try_pop_batch`]: counts them, marks them counted in the range word, then moves
    /// `done` past the range, or (an earlier record is still being read) stamps every
    /// record of it `READ`, its first last, so a sweeper passes them all.
    fn complete_range(&self, h: u64, cells: u64, msgs: u64, span: &AtomicU64) {
        if msgs > 0 {
            // SeqCst: as in `complete` (the senders' wake handshake).
            self.hdr.done.recvd.fetch_add(msgs, Ordering::SeqCst);
            // Relaxed: read by a reaper once this process is dead; a consumer killed before
            // it is counted again (the channel may then hold `msgs` more than its capacity).
            span.store(cells | msgs << 32 | RANGE_COUNTED, Ordering::Relaxed);
        }
        // SYNC POINT B and the handshake, as in `complete`.
        if self
            .hdr
            .done
            .done
            .compare_exchange(h, h + cells, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            self.mark_read(h, cells, false);
        }
    }

    /// Stamps the records of the claimed, unfinished range `h .. h + cells` `READ`, the one at
    /// `h` last: a sweeper stops at `h` until then, and passes the rest after it. With
    /// `reaper`, each stamp is a CAS from `PUBLISHED` (a record its consumer already marked
    /// stays so); returns whether the stamp at `h` was this caller's.
    fn mark_read(&self, h: u64, cells: u64, reaper: bool) -> bool {
        let mask = self.n - 1;
        // Relaxed: the metas of the range's records, unchanged while the record at `h` is
        // unfinished (nobody may rewrite a cell at or past `done`).
        let first = Span::of(self.cell(h).meta.load(Ordering::Relaxed), h & mask, self.n);
        let mut q = h + first.cells;
        while q < h + cells {
            let c = self.cell(q);
            let sp = Span::of(c.meta.load(Ordering::Relaxed), q & mask, self.n);
            // SYNC POINT B: Release, for the sweeper's Acquire load, as in `complete`.
            if reaper {
                let _ = c.stamp.compare_exchange(
                    PUBLISHED | q,
                    READ | q,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            } else {
                c.stamp.store(READ | q, Ordering::Release);
            }
            q += sp.cells;
        }
        let c = self.cell(h);
        // SYNC POINT B: Release, for the sweeper's Acquire load; SeqCst for the handshake.
        if reaper {
            c.stamp
                .compare_exchange(PUBLISHED | h, READ | h, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        } else {
            c.stamp.store(READ | h, Ordering::SeqCst);
            true
        }
    }

    /// [`Ring::recover`] for a range claimed by [`Ring::try_pop_batch`] (`span`, the dead
    /// consumer's range word): counts its messages unless the consumer did, and completes
    /// it. Does nothing if the record at `h` is not claimed and unfinished. Returns `true`
    /// if it finished the range.
    ///
    /// As for `recover`, the caller has checked that no live consumer's word names `h`, nor
    /// a dead one's with another range (one of the two lost its claim).
    pub(crate) fn recover_range(&self, h: u64, span: u64) -> bool {
        let cells = span & 0xFFFF_FFFF;
        let msgs = (span >> 32) & RANGE_MAX as u64;
        if cells == 0 || (h & (self.n - 1)) + cells > self.n {
            return false; // not a range this ring could hold: not ours to trust
        }
        // Acquire: a claim of `h`, if any, is seen.
        if self.hdr.head.load(Ordering::Acquire) < h + cells {
            return false; // not claimed (as a range): still the next receiver's
        }
        let done = &self.hdr.done.done;
        // Acquire: `done` below `h + 1` means the cells still hold the range.
        let d = done.load(Ordering::Acquire);
        // SYNC POINT A: Acquire, as a consumer's.
        if d > h || self.cell(h).stamp.load(Ordering::Acquire) != PUBLISHED | h {
            return false; // finished, or no record here
        }
        // SeqCst: as in `complete`.
        let finished =
            match done.compare_exchange(h, h + cells, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => true,
                Err(now) if now > h => false,
                Err(_) => self.mark_read(h, cells, true),
            };
        if finished && span & RANGE_COUNTED == 0 && msgs > 0 {
            // SeqCst: as in `complete`.
            self.hdr.done.recvd.fetch_add(msgs, Ordering::SeqCst);
        }
        finished
    }

    /// Counts the record at `h` as read, then gives its cells back (see the module docs).
    ///
    /// Counting first: a consumer killed between the two leaves the record to
    /// [`Ring::recover`], which counts it again, so the channel may hold one message more
    /// than its capacity from then on; the other order would lose a message slot for good.
    #[inline]
    fn complete(&self, h: u64, cells: u64, message: bool) {
        if message {
            // SeqCst: with the SeqCst CAS or stamp below, the notifier half of the senders'
            // wake handshake (the channel's "Waking", `Ring::recheck_room`).
            self.hdr.done.recvd.fetch_add(1, Ordering::SeqCst);
        }
        // SYNC POINT B: Release orders our reads of the record before the producers' writes;
        // SeqCst for the handshake.
        if self
            .hdr
            .done
            .done
            .compare_exchange(h, h + cells, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            // An earlier record is still being read: whoever needs the room sweeps ours.
            // SYNC POINT B: Release, for the sweeper's Acquire load; SeqCst as above.
            self.cell(h).stamp.store(READ | h, Ordering::SeqCst);
        }
    }

    /// The range word ([`SendWords::recv_span`]) of a claim of the single record at `h`: its
    /// cells and (one or no) message; `None` if no record is published there (finished, or
    /// never written). Lets a reaper compare a single claim with range claims of `h`.
    pub(crate) fn single_range(&self, h: u64) -> Option<u64> {
        let c = self.cell(h);
        // SYNC POINT A: Acquire, as a consumer's (the meta below is the record's).
        if !published_at(c.stamp.load(Ordering::Acquire), h) {
            return None;
        }
        // Relaxed: ordered after the stamp's Acquire load.
        let span = Span::of(c.meta.load(Ordering::Relaxed), h & (self.n - 1), self.n);
        Some(span.cells | u64::from(span.is_message()) << 32)
    }

    /// Finishes the record at `h` for a consumer that claimed it and died: counts it as read
    /// and gives its cells back (the message is lost with the consumer, as one it had
    /// received). Does nothing if no record at `h` is claimed and unfinished. Returns `true` if
    /// it finished one.
    ///
    /// The caller has checked that no live consumer's claim word says `h` (loading the words
    /// of every live process after a fresh [`Ring::head_acquire`]): a live consumer holding
    /// `h` keeps its word at `h + 1` until it has completed the record. Only the caller whose
    /// CAS finishes the record counts it, so two reapers never count it twice.
    pub(crate) fn recover(&self, h: u64) -> bool {
        // Acquire: a claim of `h`, if any, is seen.
        if self.hdr.head.load(Ordering::Acquire) <= h {
            return false; // not claimed: still the next receiver's
        }
        let done = &self.hdr.done.done;
        let c = self.cell(h);
        // Acquire: `done` below `h + 1` means the cell still holds the record of `h`.
        let d = done.load(Ordering::Acquire);
        // SYNC POINT A: Acquire, as a consumer's.
        let s = c.stamp.load(Ordering::Acquire);
        if d > h || !published_at(s, h) {
            return false; // finished (`READ | h` or `done` past it), or no record here
        }
        let span = Span::of(c.meta.load(Ordering::Relaxed), h & (self.n - 1), self.n);
        // SeqCst: as in `complete`.
        let finished =
            match done.compare_exchange(h, h + span.cells, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => true,
                Err(now) if now > h => false, // finished meanwhile by another reaper
                // An earlier record is unfinished: mark this one read, unless it was meanwhile
                // (a claimed pack's stamp may say held: nobody else changes it but reapers).
                Err(_) => c
                    .stamp
                    .compare_exchange(s, READ | h, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok(),
            };
        if finished && span.is_message() {
            // SeqCst: as in `complete`.
            self.hdr.done.recvd.fetch_add(1, Ordering::SeqCst);
        }
        finished
    }

    /// `head` (Acquire: with the consumers' Release claims, a reader of this sees the claim
    /// words written before them).
    #[cfg(not(uniconc_loom))]
    pub(crate) fn head_acquire(&self) -> u64 {
        self.hdr.head.load(Ordering::Acquire)
    }

    /// `tail` (Acquire: as [`Ring::head_acquire`], for the producers' claims).
    #[cfg(not(uniconc_loom))]
    pub(crate) fn tail_acquire(&self) -> u64 {
        self.hdr.prod.tail.load(Ordering::Acquire)
    }

    /// Settles what a producer that died inside [`Ring::try_push`] left, from its claim
    /// words (`pos`, `span`): its message slot is given back, or its claimed cells are
    /// published in its place as a skip record (marked [`LOST`], counting as the message read,
    /// when they were for the message). A producer that died in the instant after taking or
    /// before giving up a slot, or after publishing but before clearing its word, is settled
    /// as if it held one: the channel may then hold one message more than its capacity, never
    /// one fewer. Returns `true` if it published cells.
    ///
    /// The caller has checked that no live producer's words name the same cells (loading
    /// every live process's words after a fresh [`Ring::tail_acquire`]), and settles each dead
    /// word once.
    pub(crate) fn recover_send(&self, pos: u64, span: u64, progress: u64) -> bool {
        if span & SPAN_BATCH != 0 {
            if pos == RESERVING {
                self.unreserve_many((span >> 32) & BATCH_MAX);
                return false;
            }
            return self.recover_batch(pos - 1, span, Progress(progress));
        }
        let Some(t) = pos.checked_sub(1).filter(|_| pos != RESERVING) else {
            if pos == RESERVING {
                self.unreserve();
            }
            return false;
        };
        let (cells, message) = (span & !SPAN_MESSAGE, span & SPAN_MESSAGE != 0);
        // Acquire: the claim of `t`, if any, is seen.
        let claimed = self.hdr.prod.tail.load(Ordering::Acquire) > t;
        let c = self.cell(t);
        let (published, s) = self.published(t);
        let i = t & (self.n - 1);
        if !claimed || published || cells == 0 || i + cells > self.n {
            // Its claim of `t` lost (or never happened), or it published: give its slot back.
            self.unreserve();
            return false;
        }
        // The cells are its claim, unpublished. Only the reaper whose CAS moves the stamp
        // from the previous lap's writes them. Relaxed: nothing is published by it.
        if c.stamp
            .compare_exchange(s, RESERVED | t, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another dead producer's reaper publishes these cells: they stand for that
            // producer's slot, so this one (its claim of `t` lost) gives its own back.
            self.unreserve();
            return false;
        }
        if message {
            self.publish(t, SKIP | LOST | cells as u32);
        } else {
            // Padding before the message: its slot was never used.
            self.publish(t, SKIP | cells as u32);
            self.unreserve();
        }
        true
    }

    /// For a reaper settling a dead producer's claim of the record at `q`: whether that
    /// record was published (or is being published by another reaper), and the stamp its
    /// cell held. `false` means the record is unpublished, and the stamp is the one a reaper
    /// moves to `RESERVED | q` to write it.
    ///
    /// The stamp is read first, then `done`: the other order cannot tell a record that was
    /// published, read and its cell reused meanwhile (the first load sees an old `done`, the
    /// second a later lap's stamp) from one never published, and would publish padding over
    /// the later lap's record. In this order, an earlier lap's stamp (or zero) means that
    /// when it was read the record was unpublished: nobody but reapers writes a dead
    /// producer's record, and they go through the stamp's CAS. If it was published after all
    /// (by the producer before it died, a consumer reading it since), a later `done` says so.
    /// A stamp of a later position says so by itself: a producer claims the cell for a later
    /// lap only once `done` is past `q` (this does not rest on that `done` being visible
    /// here, which a reaper's Relaxed `RESERVED` stamp would not guarantee).
    fn published(&self, q: u64) -> (bool, u64) {
        // SYNC POINT A: Acquire, as a consumer's.
        let s = self.cell(q).stamp.load(Ordering::Acquire);
        // Acquire: a `done` past `q` comes after the reads of the record at `q`.
        (
            stamped_since(s, q) || self.hdr.done.done.load(Ordering::Acquire) > q,
            s,
        )
    }

    /// [`Ring::recover_send`] for a batch claim at `t`: the records the producer published
    /// stay; its unpublished cells are published as padding and its unused message slots
    /// given back. Its progress word names the record it was writing (stored before it
    /// wrote it): if that one was published, the rest starts after it. Whether a record was
    /// published is read as for a single record ([`Ring::published`]).
    fn recover_batch(&self, t: u64, span: u64, p: Progress) -> bool {
        let k = span & 0xFFFF_FFFF;
        let m = (span >> 32) & BATCH_MAX;
        let i = t & (self.n - 1);
        // Acquire: the claim of `t`, if any, is seen.
        let claimed = self.hdr.prod.tail.load(Ordering::Acquire) >= t + k;
        let published = |q: u64| self.published(q).0;
        if !claimed || k == 0 || i + k > self.n || p.off() + p.cells() > k {
            // Its claim lost (or never happened), or the words are not ours to trust.
            self.unreserve_many(m);
            return false;
        }
        let (start, left) = if !p.owned() {
            // Killed around its claiming CAS: the cells are its claim unless another
            // producer's record is published at `t` (its CAS lost).
            if published(t) {
                self.unreserve_many(m);
                return false;
            }
            (0, m)
        } else if published(t + p.off()) {
            let done_msgs = p.index() + p.msgs();
            (p.off() + p.cells(), m.saturating_sub(done_msgs))
        } else {
            (p.off(), m.saturating_sub(p.index()))
        };
        let mut wrote = false;
        if start < k {
            let q = t + start;
            let c = self.cell(q);
            // Relaxed: as in `recover_send`; only the reaper whose CAS wins writes them.
            let s = c.stamp.load(Ordering::Relaxed);
            // Unwritten in this lap: zero (never written) or an earlier lap's stamp.
            if !stamped_since(s, q)
                && c.stamp
                    .compare_exchange(s, RESERVED | q, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.publish(q, SKIP | (k - start) as u32);
                wrote = true;
            }
        }
        self.unreserve_many(left);
        wrote
    }

    /// Messages reserved and not yet read (a snapshot; may exceed the capacity by the
    /// producers racing for the last slot).
    pub(crate) fn queued(&self) -> u64 {
        // Relaxed: a snapshot.
        let sent = self.hdr.prod.sent.load(Ordering::Relaxed);
        sent.saturating_sub(self.hdr.done.recvd.load(Ordering::Relaxed))
    }

    /// `true` if at most `low` messages are queued, refreshing the cached `recvd`: a sender
    /// waiting for room polls this rather than retrying every send.
    pub(crate) fn at_most_queued(&self, low: u64) -> bool {
        // Relaxed: a heuristic; `try_push` makes the real check.
        let fresh = self.hdr.done.recvd.load(Ordering::Relaxed);
        self.cache.recvd.store(fresh, Ordering::Relaxed);
        self.hdr
            .prod
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(fresh)
            <= low
    }

    /// Reloads `recvd` and `done` (sweeping) with SeqCst loads, refreshing the cache: the load
    /// half of a sender's wake handshake, against the SeqCst increment and completion in
    /// [`Ring::complete`]. A sender sees both, or the consumer sees its flag.
    #[cfg(not(uniconc_loom))]
    pub(crate) fn recheck_room(&self) {
        let fresh = self.hdr.done.recvd.load(Ordering::SeqCst);
        self.cache.recvd.store(fresh, Ordering::Relaxed);
        self.advance_done();
    }

    /// `true` if nothing is queued or claimed (a snapshot).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a snapshot.
        self.hdr.head.load(Ordering::Relaxed) == self.hdr.prod.tail.load(Ordering::Relaxed)
    }

    /// `true` if no producer has claimed cells past `head` (nothing queued, nothing being
    /// written), read with SeqCst loads: with the SeqCst `tail` CAS of `try_push`, one side of
    /// a waker's store-buffering handshake (the channel's module docs, "Waking").
    #[cfg(not(uniconc_loom))]
    pub(crate) fn is_idle(&self) -> bool {
        let h = self.hdr.head.load(Ordering::SeqCst);
        self.hdr.prod.tail.load(Ordering::SeqCst) <= h
    }
}

/// A consumer's words and identity, handed to the ring's receives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taker<'w> {
    /// Its claim word (see [`Ring::recover`]).
    pub(crate) intent: &'w AtomicU64,
    /// Its range word ([`SendWords::recv_span`]).
    pub(crate) range: &'w AtomicU64,
    /// Who it is, for the stamp of a pack it holds (see [`held_stamp`]): its slot and word
    /// among every process's claim words, plus one; zero for a consumer without words (a
    /// pack it holds when it dies is never let go, as a record it claims is never recovered).
    pub(crate) owner: u64,
}

#[cfg(test)]
impl<'w> Taker<'w> {
    /// A taker with these words and identity 1.
    pub(crate) fn words(intent: &'w AtomicU64, range: &'w AtomicU64) -> Self {
        Self {
            intent,
            range,
            owner: 1,
        }
    }
}

/// The stamp of the pack at `h` while the consumer `owner` ([`Taker::owner`]) holds it.
#[inline]
fn held_stamp(owner: u64, h: u64) -> u64 {
    HELD | (owner & 0xFFFF) << HELD_SHIFT | (h & HELD_POS)
}

/// `true` if the stamp `s` says the record at `q` is published and unfinished: `PUBLISHED |
/// q`, or held (a pack a consumer takes apart, or its last holder claimed and completes).
#[inline]
fn published_at(s: u64, q: u64) -> bool {
    s == PUBLISHED | q || (s & HELD != 0 && s & HELD_POS == q & HELD_POS)
}

/// `true` if the stamp `s` of the cell of position `q` was written for `q` or a later
/// position. Every non-zero stamp carries a flag: `PUBLISHED`, `READ`, `RESERVED` or `HELD`;
/// a held stamp keeps only the low bits of its position, and is for `q` if they match (it is
/// for the record at the head or one claimed and unfinished, never of a later lap than `q`'s).
#[inline]
fn stamped_since(s: u64, q: u64) -> bool {
    s != 0 && (published_at(s, q) || (s & HELD == 0 && s & POS >= q))
}

/// A held pack ([`Ring::take_packed`]). Dropped: if it is empty (`empty`, its cells), claimed
/// and completed as a record (nobody else claims a held record, so `head` is still at it);
/// otherwise let go, and the taker's words cleared.
struct Hold<'r, 'a, 't> {
    ring: &'r Ring<'a>,
    h: u64,
    taker: &'t Taker<'t>,
    empty: Option<u64>,
}

impl Hold<'_, '_, '_> {
    /// The taker's words say it holds nothing.
    fn words_clear(&self) {
        // Relaxed: ordered before the claim word's Release store.
        self.taker.range.store(0, Ordering::Relaxed);
        // Release: as a claim's. A word left naming the pack would hold back the recovery of
        // the consumer that claims it, for as long as this one receives nothing.
        self.taker.intent.store(0, Ordering::Release);
    }
}

impl Drop for Hold<'_, '_, '_> {
    fn drop(&mut self) {
        let (ring, h) = (self.ring, self.h);
        if let Some(cells) = self.empty {
            // Release: as in `claim` (the claim word says `h + 1` already; while the range
            // word says `RANGE_HOLD`, a reaper finding the claim made settles it as one).
            if ring
                .hdr
                .head
                .compare_exchange(h, h + cells, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: ordered before the claim word's next Release store. The word now
                // names a claim of `h`, as after any claim.
                self.taker.range.store(0, Ordering::Relaxed);
                ring.complete(h, cells, false);
                return;
            }
        }
        // Release: the next holder (Acquire CAS) sees the cursor.
        ring.cell(h).stamp.store(PUBLISHED | h, Ordering::Release);
        self.words_clear();
    }
}

/// Publishes claimed cells as padding when dropped, and gives their message slot back: a
/// producer whose write failed or panicked (a successful one forgets it).
struct Padding<'r, 'a> {
    ring: &'r Ring<'a>,
    t: u64,
    cells: u64,
}

impl Drop for Padding<'_, '_> {
    fn drop(&mut self) {
        self.ring.publish(self.t, SKIP | self.cells as u32);
        self.ring.unreserve();
    }
}

/// Why [`Ring::claim_batch`] claimed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// No message slot or not enough cells are free right now.
    Full,
    /// The first record does not fit before the end (or soft end) of the ring, or the ring is
    /// too large for batch claims: send it with [`Ring::try_push`].
    Elsewhere,
}

/// Cells and message slots claimed by [`Ring::claim_batch`], filled record by record.
/// Dropping it (after the last record, or on a panic) publishes the unused cells as padding,
/// gives the unused slots back and clears the producer's words.
#[derive(Debug)]
pub(crate) struct BatchClaim<'r, 'a> {
    ring: &'r Ring<'a>,
    words: &'r SendWords,
    /// The claim: positions `t .. t + k`, `m` message slots.
    t: u64,
    k: u64,
    m: u64,
    /// Cells used so far (the next record's offset) and messages published.
    off: u64,
    j: u64,
    /// The pack being written at `off`: its length so far and its messages (none: no pack).
    pack_len: usize,
    pack_count: u64,
}

impl BatchClaim<'_, '_> {
    /// Writes the next record, `len` bytes filled by `write`, if the claim has a message slot
    /// and the cells for it left. `Some(true)` once published; `Some(false)` if `write`
    /// failed (the claim then ends: its rest is padding); `None` if it does not fit (nothing
    /// was written: send it with a new claim).
    pub(crate) fn push(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Option<bool> {
        self.close_pack();
        let c = cells_for(len);
        if self.j == self.m || self.off + c > self.k {
            return None;
        }
        let ring = self.ring;
        // Relaxed: read by a reaper once this process is dead. Stored before the record is
        // published, so a reaper that finds it published knows its cells.
        self.words.progress.store(
            Progress::new(self.off, c, self.j, true, false).0,
            Ordering::Relaxed,
        );
        let t = self.t + self.off;
        let i = t & (ring.n - 1);
        // SAFETY: the claim is `t .. t + k` with `(t & mask) + k <= n` (`claim_batch` keeps
        // it before the end), and `off + c <= k`, so cells i..i+c are in bounds; they are
        // exclusively ours: we won the CAS for them with room below `done + n` (SYNC POINT
        // B) and have not published them; `bytes` points at `len` bytes of them.
        let buf = unsafe { std::slice::from_raw_parts_mut(ring.bytes(i, len), len) };
        #[cfg(uniconc_loom)]
        for cell in &ring.ctl[i as usize..(i + c) as usize] {
            cell.bytes_model.0.with_mut(|_| ());
        }
        if !write(buf) {
            // Dropping publishes the rest (from this record) as padding.
            return Some(false);
        }
        ring.publish(t, len as u32);
        self.off += c;
        self.j += 1;
        Some(true)
    }
}

impl BatchClaim<'_, '_> {
    /// The free bytes of the pack being written at the claim's next cell (opening one if
    /// none is), for a message of at most [`PACK_ITEM`] bytes (see "Packs" in the module
    /// docs): the caller writes the message's length in a byte, then its bytes, at the start
    /// of the room, and says so with [`BatchClaim::packed`]. A room too small for a message
    /// means the pack is full: [`BatchClaim::close_pack`] publishes it, and the next room is
    /// a new pack's. `None` if the claim has no message slot or no cell left for a pack.
    #[inline]
    pub(crate) fn pack_room(&mut self) -> Option<&mut [u8]> {
        let (len, count) = (self.pack_len, self.pack_count);
        // A pack takes at most `PACK_BYTES`, within the claim's cells.
        let room = (((self.k - self.off) as usize) * CELL).min(PACK_BYTES);
        if self.j + count == self.m || count == 0xFFFF || len + 2 > room {
            return None;
        }
        let ring = self.ring;
        let i = (self.t + self.off) & (ring.n - 1);
        // SAFETY: the claim's cells from `off` are in bounds (`claim_batch` keeps the claim
        // before the end) and exclusively ours: we won the CAS for them with room below
        // `done + n` (SYNC POINT B) and have not published them; the pack's bytes stay within
        // `room` of them.
        Some(unsafe { std::slice::from_raw_parts_mut(ring.pack_bytes(i).add(len), room - len) })
    }

    /// Counts a message of `bytes` bytes (its length byte included) written at the start of
    /// [`BatchClaim::pack_room`]'s room.
    #[inline]
    pub(crate) fn packed(&mut self, bytes: usize) {
        self.pack_len += bytes;
        self.pack_count += 1;
    }

    /// Publishes the pack being written, if any (its header, its progress word, its meta).
    pub(crate) fn close_pack(&mut self) {
        let (len, count) = (self.pack_len, self.pack_count);
        if count == 0 {
            return;
        }
        (self.pack_len, self.pack_count) = (PACK_HEADER, 0);
        let ring = self.ring;
        let t = self.t + self.off;
        let i = t & (ring.n - 1);
        let c = cells_for(len);
        // SAFETY: as in `push_packed`: the pack's bytes, ours until published.
        let head = unsafe { std::slice::from_raw_parts_mut(ring.pack_bytes(i), PACK_HEADER) };
        // Cursor: nothing taken, the first message after the header.
        head[..4].copy_from_slice(&((PACK_HEADER as u32) << 16).to_le_bytes());
        head[4..].copy_from_slice(&(count as u32).to_le_bytes());
        #[cfg(uniconc_loom)]
        for cell in &ring.ctl[i as usize..(i + c) as usize] {
            cell.bytes_model.0.with_mut(|_| ());
        }
        // Relaxed: as in `push`.
        self.words.progress.store(
            Progress::pack(self.off, c, self.j, count).0,
            Ordering::Relaxed,
        );
        ring.publish(t, PACKED | len as u32);
        self.off += c;
        self.j += count;
    }
}

impl Drop for BatchClaim<'_, '_> {
    fn drop(&mut self) {
        self.close_pack();
        let ring = self.ring;
        if self.off < self.k {
            let rest = self.k - self.off;
            // Relaxed: as in `push`.
            self.words.progress.store(
                Progress::new(self.off, rest, self.j, true, true).0,
                Ordering::Relaxed,
            );
            ring.publish(self.t + self.off, SKIP | rest as u32);
        }
        // Slots first, then the words: a producer killed between the two is settled as if it
        // still held them (the channel may hold more than its capacity, never fewer).
        ring.unreserve_many(self.m - self.j);
        drop(IdleBatch(self.words));
    }
}

/// Clears a batch producer's words when dropped: the span (so that a later single send's
/// `RESERVING` is not read as a batch's), then `pos`.
struct IdleBatch<'a>(&'a SendWords);

impl Drop for IdleBatch<'_> {
    fn drop(&mut self) {
        // Relaxed: ordered before the Release store below.
        self.0.span.store(0, Ordering::Relaxed);
        // Release: a reaper that sees it cleared (Acquire) sees the publications.
        self.0.pos.store(0, Ordering::Release);
    }
}

/// Clears a producer's claim word when dropped, after its cells are published.
struct Idle<'a>(&'a AtomicU64);

impl Drop for Idle<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: a reaper that sees it cleared (Acquire) sees the publication.
        self.0.store(0, Ordering::Release);
    }
}

/// Completes a claimed record when dropped, so a panicking reader does not leave `done`
/// behind it for good.
struct Complete<'r, 'a> {
    ring: &'r Ring<'a>,
    h: u64,
    cells: u64,
    message: bool,
}

impl Drop for Complete<'_, '_> {
    #[inline]
    fn drop(&mut self) {
        self.ring.complete(self.h, self.cells, self.message);
    }
}

/// Completes a range taken by [`Ring::try_pop_batch`] when dropped, so a panicking reader
/// does not leave `done` behind it for good.
struct CompleteRange<'r, 'a> {
    ring: &'r Ring<'a>,
    h: u64,
    cells: u64,
    msgs: u64,
    span: &'r AtomicU64,
}

impl Drop for CompleteRange<'_, '_> {
    #[inline]
    fn drop(&mut self) {
        self.ring
            .complete_range(self.h, self.cells, self.msgs, self.span);
    }
}

#[cfg(all(test, not(uniconc_loom)))]
pub(crate) mod tests;

#[cfg(all(test, uniconc_loom))]
#[path = "ring/loom.rs"]
mod loom_tests;
