//! The cross-process channel: an MPMC [`ring`](crate::ring) of serialized messages in shared
//! memory, bounded by message count and by a byte budget (an unbounded channel's budget is a
//! reservation sized to the machine, see [`unbounded`]).
//!
//! # Layout of a channel's region
//!
//! ```text
//! [ ChanHeader | CellCtl * n | (page-aligned) data: n * CELL bytes ]
//! ```
//!
//! # Sending and receiving
//!
//! A sender counts the value's encoded size (bincode, no allocation), reserves one of the
//! `capacity` message slots (`count`), claims `ceil(size / CELL)` cells of the ring and
//! serializes the value straight into them. A receiver decodes straight from the cells.
//! Waiting is spin-then-futex: a short spin (a ping-pong partner usually answers within it),
//! then a futex sleep on a sequence word, bounded to [`SLICE`] so a waiter re-checks whether
//! its peers are alive.
//!
//! # What `Empty` and `len` mean
//!
//! `try_recv` (and so `try_iter`) says `Empty` only when nothing is queued, as crossbeam's
//! does. A sender claims its place in the ring before it encodes the message there, so the
//! front of the ring may be a message not yet published with others published behind it;
//! `try_recv` then waits for it, as crossbeam spins for a slot being written: a short spin,
//! then naps, at most [`IN_FLIGHT_PATIENCE`] (100 ms) in all. A sender killed there is found
//! dead within that wait and its message is settled as lost, so `try_recv` returns the next
//! one. A sender stopped there for longer (SIGSTOP, or descheduled that long) makes `try_recv`
//! return `Empty` rather than block, though messages are queued behind it: none can be taken
//! before it. The cheap look the blocking forms poll with does not tell the two apart (that
//! would read `tail`, the line every send writes, at every poll); they wait for the message
//! anyway. After disconnection, a message still being written is drained too.
//!
//! `len` counts the messages sent and not yet received, including sends and receives under
//! way (a message slot is taken before the cells, and given back after the message is
//! read): it may be non-zero right after `try_recv` said `Empty` while other units send or
//! receive, and `len() == 0` means `try_recv` would have found nothing.
//!
//! # Waking, with no fence on the hot path
//!
//! A waiter raises a sleeper flag and re-checks before it sleeps; a sender or receiver that
//! changed the condition reads the flag and wakes sleepers only if it is up. That is the
//! store-buffering pattern: each side writes one word and reads the other's, and at least one
//! must see the other's write. Instead of a fence on every send and receive, both sides use
//! SeqCst operations they make anyway (a locked instruction on x86, so the fast path pays no
//! extra barrier):
//!
//! - receivers waiting for a message: the producer's SeqCst `tail` CAS (claiming the cells)
//!   then its SeqCst load of the flag, against the waiter's SeqCst flag store then its SeqCst
//!   load of `tail`. A waiter that sees `tail` past `head` knows a message is coming but that
//!   its producer may have read the flag too early: it naps briefly ([`claimed_nap`]).
//! - senders waiting for room: the consumer's SeqCst `recvd` increment and SeqCst completion
//!   (the `done` CAS or the `READ` stamp) then its SeqCst load of the flag, against the
//!   waiter's SeqCst flag store then its SeqCst loads of `recvd`, `done` and the stamps it
//!   sweeps ([`Ring::recheck_room`]).
//! - disconnection and `close`: the SeqCst count decrement or `closed` store, then a bump of
//!   `seq` (no flag involved) or a SeqCst load of the flag, against SeqCst loads of the
//!   counts in every re-check.
//!
//! # Disconnection across processes
//!
//! The header has one [`ProcSlot`] per process holding handles: its identity (pid and start
//! time) and its sender and receiver counts; `conn` holds the totals that decide
//! disconnection. A process killed without dropping its handles (SIGKILL) is found by any
//! blocked peer within about one [`SLICE`]: its slot's counts are subtracted (`reap`).
//!
//! `fork` copies *every* handle of the parent into the child, including ones the child will
//! never touch (the parent's own `tx` in `spawn(move || rx.iter().sum())`): counting those
//! would make that receiver wait forever on a sender that lives, unused, in its own memory.
//! So a child's copies are *inherited* handles, counted apart:
//!
//! - The `pthread_atfork` handlers (see [`registry`]) reserve a slot for the child before the
//!   fork and count its inherited handles at once, so the parent dropping its handles right
//!   after `fork` cannot disconnect a child that has not yet run. Nothing is needed from the
//!   code that forks.
//! - Each handle carries the fork generation it was last used in; a handle used in the child
//!   (send, receive, clone) is *adopted* and counts as a normal handle.
//! - The first adoption *engages* the child with the channel: from then on its inherited
//!   handles it has not used stop counting (they are the parent's leftovers). A child that
//!   never uses the channel keeps its inherited handles counted until it exits, or until it
//!   calls [`forget_inherited_handles`] (long-lived workers should).
//!
//! # A process killed inside `send` or `recv`
//!
//! A process killed while it holds a message (claimed in the ring, not yet given back:
//! SIGKILL while decoding) or while it writes one (cells claimed, not yet published: SIGKILL
//! while encoding) loses that message and nothing else. Each thread has claim words in its
//! process's slot ([`claims`] gives out the indices); the reaper that finds the process dead
//! settles what its words name, unless a live thread's words name the same record
//! (`Chan::recover_claims`, `Ring::recover`, `Ring::recover_send`). Blocked peers look for
//! dead ones every [`SLICE`], so the ring moves again within about that.
//!
//! Known limits: a thread without claim words (the ninth of one process using channels at
//! once) holds back every recovery while it is inside a send or receive, and what it held is
//! not recovered if its process dies. A process killed in the instant between two steps of a
//! send or receive is settled as if it held a message slot: the channel may then hold one
//! message more than its capacity. A failed `fork` leaves its reserved slot counted until
//! the parent exits.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uniconc_core::{
    Error, Message, MessageError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};

use crate::claims;
use crate::codec;
use crate::platform;
use crate::procs::{self, Identity};
use crate::ring::{self, CELL, CellCtl, Pop, Record, Ring, RingHeader, SendWords};
use crate::shm::{self, CachePadded, ShmBox, ShmSafe, align_up};
use crate::waiter::{WaitWord, YieldNow};
use crate::wake;

/// Raises the sleeper flag of `w` and returns the word's value to sleep on: the waiter half
/// of the handshake with [`Chan::notify`] (see "Waking" in the module docs). The caller then
/// re-checks its condition with a SeqCst load and sleeps on the returned value.
fn register_sleeper(w: &WaitWords) -> u32 {
    // SeqCst inside: the store half of the handshake (`wake`, loom-checked).
    wake::register_sleeper(&w.word)
}

/// Sleep of a receiver that found a message claimed but not yet published (its producer is
/// mid-`send`, and may not see the sleeper flag), for the `n`th time in a row: 50 µs, doubling
/// up to [`SLICE`], so a producer that stalls there (descheduled, or killed mid-`send`, which
/// blocks the ring) does not keep its receivers polling.
fn claimed_nap(n: u32) -> Duration {
    Duration::from_micros(50)
        .saturating_mul(1 << n.min(12))
        .min(SLICE)
}

/// How long `try_recv` waits for a message whose sender has claimed the front of the ring and
/// not published it yet (it is encoding it): long enough for a sender descheduled mid-`send`
/// to run again, short enough that `try_recv` stays a non-blocking call. A sender stopped there
/// for longer (SIGSTOP) makes `try_recv` report `Empty`; one killed there is settled by the
/// look for dead peers at the end of the wait (its message is lost, the ones behind it
/// arrive).
const IN_FLIGHT_PATIENCE: Duration = SLICE;

/// `try_recv`'s wait for a message being written at the front of the ring: a short spin (its
/// publication is usually a few instructions away), a few yields, then naps of 20 µs doubling
/// up to 1 ms with a look for dead peers after each (at most one per [`SLICE`] and process),
/// for [`IN_FLIGHT_PATIENCE`] in all; then one look for dead peers that is not rate-limited,
/// so a sender killed mid-`send` is settled before `try_recv` gives up.
struct InFlightWait {
    polls: u32,
    naps: u32,
    start: Option<Instant>,
    reaped: bool,
}

impl InFlightWait {
    const POLLS: u32 = 256;
    const YIELDS: u32 = 4;

    fn new(chan: &Chan) -> Self {
        Self {
            // One usable CPU: spinning could only delay the sender.
            polls: if chan.single_cpu { Self::POLLS } else { 0 },
            naps: 0,
            start: None,
            reaped: false,
        }
    }

    /// Waits a little before the next look; `false` once the patience is spent.
    fn wait(&mut self, chan: &Chan) -> bool {
        if self.polls < Self::POLLS {
            self.polls += 1;
            std::hint::spin_loop();
            return true;
        }
        if self.polls < Self::POLLS + Self::YIELDS {
            self.polls += 1;
            std::thread::yield_now();
            return true;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        if start.elapsed() < IN_FLIGHT_PATIENCE {
            let nap = Duration::from_micros(20).saturating_mul(1 << self.naps.min(6));
            std::thread::sleep(nap.min(Duration::from_millis(1)));
            self.naps += 1;
            chan.maybe_reap();
            return true;
        }
        if !self.reaped {
            self.reaped = true;
            chan.reap();
            return true;
        }
        false
    }
}

/// Longest single futex sleep of a blocked sender or receiver: how often it re-checks that its
/// peers are alive.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// How long a slot reserved for a child being forked may wait for the child to take it over.
const PENDING_GRACE: Duration = Duration::from_secs(2);

/// Process slots per channel: how many processes can hold handles of one channel at once.
///
/// `spawn` and the pool refuse to fork (with a clear error) while a channel this process holds
/// handles of has no free slot, after reaping dead peers: an uncounted child's sends could
/// arrive after its receivers saw `Disconnected`. A process forked some other way when every
/// slot is taken is not counted.
pub const MAX_PROCESSES: usize = 4096;

/// In a forked child, stops counting the channel handles copied from the parent that this
/// process has not used yet, so they keep no channel connected. A long-lived worker process
/// (a pool worker) should call it first: otherwise it keeps every channel that existed when
/// it was forked connected until it exits. Handles it uses later are counted again.
///
/// ```
/// use uniconc::{Event as _, JoinHandle as _, Receiver as _, RecvError};
/// let (tx, rx) = uniconc::process::channel::<u8>(1)?;
/// let done = uniconc::process::event()?;
/// let child = uniconc::process::spawn({
///     let done = done.clone();
///     move || {
///         // This child never uses the channel: its copy of the parent's `tx` must not
///         // keep the channel connected while it waits.
///         uniconc::process::forget_inherited_handles();
///         done.wait();
///     }
/// })?;
/// drop(tx); // the only sender that counts
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected)); // not held up by the live child
/// done.set();
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn forget_inherited_handles() {
    registry::engage_all();
}

/// Default byte budget of a bounded channel: `capacity * 256` bytes, at least 1 MiB, at most
/// 256 MiB. Only touched pages take memory.
const MIN_BUDGET: usize = 1 << 20;
const MAX_BUDGET: usize = 256 << 20;
/// The largest message an unbounded channel accepts, in encoded bytes (the codec's limit).
///
/// What an unbounded channel can *queue* is far more: see [`unbounded`].
///
/// ```
/// let (tx, _rx) = uniconc::process::unbounded::<Vec<u8>>()?;
/// assert_eq!(tx.max_message_size(), uniconc::process::UNBOUNDED_BUDGET);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub const UNBOUNDED_BUDGET: usize = codec::LIMIT;

/// The smallest ring an unbounded channel settles for when the OS refuses larger mappings.
const MIN_UNBOUNDED_RING: usize = 64 << 20;
/// The largest ring of an unbounded channel: 1 GiB of cells. The ring can address more (a skip
/// record spans up to 2^30 cells), but a channel that never empties walks its whole ring and
/// keeps those pages committed (see [`unbounded`]): this bounds what such a channel can hold
/// resident to the ring and its control lines, 2 GiB.
const MAX_UNBOUNDED_RING: u64 = 1 << 30;
/// The soft end of an unbounded channel's ring, in cells (1 MiB of records): while less is
/// queued, the ring keeps to its first pages (see `Ring::with_soft_end`).
const UNBOUNDED_SOFT_END: u64 = (MIN_BUDGET / CELL) as u64;

/// The futex word one side's sleepers wait on. `#[repr(C)]`; all-zero: nobody sleeps.
///
/// Bit 0 ([`SLEEPERS`]) is a flag: someone may sleep on the word (set by sleepers). The other
/// bits are a sequence number. A notifier that sees the flag adds 1, which clears the flag
/// and bumps the sequence in one atomic step, then wakes everyone; `wake_everyone` adds 2
/// (bumps the sequence, keeps the flag). A sleeper sleeps on the value it set the flag in,
/// so any bump in between makes its futex wait return at once.
#[derive(Debug, Default)]
#[repr(C)]
struct WaitWords {
    word: AtomicU32,
    _pad: u32,
}

/// The sleeper flag of [`WaitWords::word`].
const SLEEPERS: u32 = wake::SLEEPERS;

/// Connection state: totals of the per-process counts, and the `close` flag.
#[derive(Debug, Default)]
#[repr(C)]
struct Conn {
    /// Invariant: the sum of `senders` over live and pending slots (reaping keeps it so).
    senders: AtomicU32,
    /// Same, for receivers.
    receivers: AtomicU32,
    /// Non-zero once `close()` was called.
    closed: AtomicU32,
}

const SLOT_FREE: u32 = 0;
/// `pid` value while a slot is being claimed or reaped.
const SLOT_BUSY: u32 = u32::MAX;

/// One process's registration. `pid == 0`: free. `pending != 0`: reserved by a parent for a
/// child being forked; `pid`/`start` still name the parent (so the slot is reaped if the parent
/// dies before the child takes it over).
///
/// Invariant: the slot contributes `senders + (engaged ? 0 : inh_senders)` to
/// `conn.senders` (same for receivers). Aligned to a cache line, so no two processes write
/// one line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct ProcSlot {
    pid: AtomicU32,
    pending: AtomicU32,
    /// Non-zero once the process used one of its inherited handles (or disowned them).
    engaged: AtomicU32,
    _pad: u32,
    /// Handles created or adopted in this process.
    senders: AtomicU32,
    receivers: AtomicU32,
    /// Handles copied in by fork and not used yet.
    inh_senders: AtomicU32,
    inh_receivers: AtomicU32,
    start: AtomicU64,
    /// When a pending slot was reserved (`CLOCK_MONOTONIC` ns, system-wide).
    pending_since: AtomicU64,
    /// The claim words of this process's receiving threads, one per [`claims`] index:
    /// `h + 1` from before the thread claims the ring record at `h` until it claims another
    /// (zero after a claim it lost, when it finds nothing else to claim).
    claims: [AtomicU64; claims::WORDS],
    /// The same for sending threads: what a thread may be in the middle of inside `send`
    /// (see `Ring::recover_send`).
    sends: [SendWords; claims::WORDS],
    /// Sends and receives under way in threads of this process that have no claim words.
    unclaimed: AtomicU32,
}

impl ProcSlot {
    /// What the slot contributes to the totals.
    fn counted(&self) -> (u32, u32) {
        let engaged = self.engaged.load(Ordering::Relaxed) != 0;
        let inh = |c: &AtomicU32| {
            if engaged {
                0
            } else {
                c.load(Ordering::Relaxed)
            }
        };
        (
            self.senders.load(Ordering::Relaxed) + inh(&self.inh_senders),
            self.receivers.load(Ordering::Relaxed) + inh(&self.inh_receivers),
        )
    }
}

/// The header at offset 0 of a channel's region. All-zero is a valid (empty, unconnected)
/// channel; `new_chan` stores the initial counts before returning.
#[derive(Debug)]
#[repr(C)]
struct ChanHeader {
    /// The ring, with the message counts that bound the capacity.
    ring: RingHeader,
    recv_wait: CachePadded<WaitWords>,
    send_wait: CachePadded<WaitWords>,
    conn: CachePadded<Conn>,
    /// One more than the highest slot index ever claimed (slots are claimed lowest first), so
    /// scans read only the slots in use and never commit the pages of the others.
    used: AtomicU32,
    procs: [ProcSlot; MAX_PROCESSES],
}

impl ChanHeader {
    /// The slots that were ever claimed. Relaxed: a slot claimed after the load is a live
    /// process a reaper has nothing to do for; `recover_claims` loads it after an Acquire of
    /// `head`, so it sees every slot whose claims that shows.
    fn used_slots(&self) -> &[ProcSlot] {
        let n = self.used.load(Ordering::Relaxed) as usize;
        &self.procs[..n.min(MAX_PROCESSES)]
    }
}

// SAFETY: repr(C); only atomics (ring header, padded atomics, slots); all-zero is valid.
unsafe impl ShmSafe for ChanHeader {}

/// The process-private state shared by every handle of one channel in this process.
#[derive(Debug)]
pub(crate) struct Chan {
    shm: ShmBox<ChanHeader>,
    /// The ring's `cells` control lines and data cells inside `shm`, located (and checked)
    /// once in `new_chan`: building the ring's view is on every poll.
    ctl: std::ptr::NonNull<CellCtl>,
    cells: usize,
    data: std::ptr::NonNull<u8>,
    /// `None`: unbounded.
    cap: Option<u64>,
    /// The ring's soft end in cells (see `Ring::with_soft_end`): all of it for a bounded
    /// channel, [`UNBOUNDED_SOFT_END`] for an unbounded one's large reservation.
    soft_end: u64,
    max_msg: usize,
    /// Index of this process's slot (rewritten in a forked child).
    slot: AtomicU32,
    /// Handles of each kind held in this process.
    senders: AtomicU32,
    receivers: AtomicU32,
    /// Slot reserved by `fork_prepare` for the child (`u32::MAX`: none).
    child_slot: AtomicU32,
    child_senders: AtomicU32,
    child_receivers: AtomicU32,
    /// Last time (ns since `EPOCH`) this process looked for dead peers.
    last_reap: AtomicU64,
    /// Polls before sleeping, learned (see `Backoff`).
    spin_polls: AtomicU32,
    /// This process's cached copies of the ring's completion line.
    ring_cache: ring::Cache,
    /// Only one CPU is usable: never spin.
    single_cpu: bool,
}

// SAFETY: `ctl` and `data` point into the shared mapping `shm` owns, which every thread of
// this process may access through the ring's protocol (atomics and the stamp hand-over);
// everything else in `Chan` is `Send + Sync`.
unsafe impl Send for Chan {}
// SAFETY: as above.
unsafe impl Sync for Chan {}

impl Chan {
    #[inline]
    fn hdr(&self) -> &ChanHeader {
        self.shm.header()
    }

    #[inline]
    fn ring(&self) -> Ring<'_> {
        // SAFETY: `ctl` points at `cells` `CellCtl`s inside the mapping `shm` owns (located
        // with `slice_at`'s checks in `new_chan`), alive as long as `self`.
        let ctl = unsafe { std::slice::from_raw_parts(self.ctl.as_ptr(), self.cells) };
        // SAFETY: `data` is `cells * CELL` bytes inside the same mapping (checked in
        // `new_chan`); they are only accessed through rings over this header and these cells.
        unsafe { Ring::new(&self.hdr().ring, ctl, self.data.as_ptr(), &self.ring_cache) }
            .with_soft_end(self.soft_end)
    }

    fn my_slot(&self) -> &ProcSlot {
        // Relaxed: written only by this process (creation, or the atfork child handler).
        let i = self.slot.load(Ordering::Relaxed) as usize;
        &self.hdr().procs[i % MAX_PROCESSES]
    }

    #[inline]
    fn receivers_gone(&self) -> bool {
        let c = &self.hdr().conn;
        // SeqCst (Acquire would do for the data: it pairs with the decrements and `close`, so
        // everything sent before is seen): the load half of the disconnection handshake
        // (module docs, "Waking"). A plain load on x86.
        c.closed.load(Ordering::SeqCst) != 0 || c.receivers.load(Ordering::SeqCst) == 0
    }

    #[inline]
    fn senders_gone(&self) -> bool {
        let c = &self.hdr().conn;
        // SeqCst: as in `receivers_gone`.
        c.closed.load(Ordering::SeqCst) != 0 || c.senders.load(Ordering::SeqCst) == 0
    }

    /// Wakes the sleepers on `w`, if any registered. The caller changed the condition first.
    ///
    /// The sleeper flag is a flag, not a count: the notifier clears it and wakes everyone, so while
    /// a woken sleeper is on its way back to the CPU, further sends make no syscall (a count
    /// would stay non-zero until then, costing a futex wake per message).
    ///
    /// The caller's condition change included a SeqCst read-modify-write (the `tail` CAS, the
    /// `recvd` increment and `done` CAS): with this SeqCst load it is the notifier half of the
    /// handshake in the module docs ("Waking").
    #[inline]
    fn notify(&self, w: &WaitWords) {
        // SeqCst load, then the bump (`wake`, loom-checked).
        if wake::take_sleepers(&w.word) {
            platform::wake(&w.word, u32::MAX);
        }
    }

    fn wake_everyone(&self) {
        for w in [&self.hdr().recv_wait, &self.hdr().send_wait] {
            // Release: as in `notify`; +2 bumps the sequence and keeps the flag.
            w.word.fetch_add(2, Ordering::Release);
            platform::wake(&w.word, u32::MAX);
        }
    }

    fn conn_of(&self, sender: bool) -> &AtomicU32 {
        let c = &self.hdr().conn;
        if sender { &c.senders } else { &c.receivers }
    }

    fn local_of(&self, sender: bool) -> &AtomicU32 {
        if sender {
            &self.senders
        } else {
            &self.receivers
        }
    }

    /// Lowers a total; wakes everyone if it reached zero, or if someone sleeps (so a peer
    /// whose own inherited handles were all that was left re-checks at once).
    fn lower(&self, total: &AtomicU32, by: u32) {
        if by == 0 {
            return;
        }
        // SeqCst (AcqRel for the data: everything sent through the dropped handles
        // happens-before a peer's load that sees the lower total), and SeqCst flag loads: the
        // disconnection handshake of the module docs.
        let before = total.fetch_sub(by, Ordering::SeqCst);
        let hdr = self.hdr();
        if before == by
            || hdr.recv_wait.word.load(Ordering::SeqCst) & SLEEPERS != 0
            || hdr.send_wait.word.load(Ordering::SeqCst) & SLEEPERS != 0
        {
            self.wake_everyone();
        }
    }

    /// Counts a new handle created (or cloned) in this process; returns its generation stamp.
    fn add_new(&self, sender: bool) -> AtomicU64 {
        let slot = self.my_slot();
        self.local_of(sender).fetch_add(1, Ordering::Relaxed);
        if sender {
            &slot.senders
        } else {
            &slot.receivers
        }
        .fetch_add(1, Ordering::Relaxed);
        self.conn_of(sender).fetch_add(1, Ordering::Relaxed);
        AtomicU64::new(procs::fork_gen())
    }

    /// Adopts a handle copied in by fork when it is first used here.
    #[inline]
    fn touch(&self, gen_stamp: &AtomicU64, sender: bool) {
        let now = procs::fork_gen();
        // Relaxed: the stamp is only compared with this process's generation.
        if gen_stamp.load(Ordering::Relaxed) != now {
            self.adopt(gen_stamp, sender, now);
        }
    }

    #[cold]
    fn adopt(&self, gen_stamp: &AtomicU64, sender: bool, now: u64) {
        let _g = registry::lock();
        let old = gen_stamp.load(Ordering::Relaxed);
        if old == now {
            return;
        }
        gen_stamp.store(now, Ordering::Relaxed);
        let slot = self.my_slot();
        let (adopted, inh) = if sender {
            (&slot.senders, &slot.inh_senders)
        } else {
            (&slot.receivers, &slot.inh_receivers)
        };
        // Count the adopted handle first, so the total never dips to zero on the way.
        self.conn_of(sender).fetch_add(1, Ordering::Relaxed);
        adopted.fetch_add(1, Ordering::Relaxed);
        inh.fetch_sub(1, Ordering::Relaxed);
        if slot.engaged.load(Ordering::Relaxed) == 0 {
            // Still counted as inherited until now: remove the one just adopted.
            self.lower(self.conn_of(sender), 1);
            self.engage(slot);
        }
    }

    /// Stops counting this process's unused inherited handles. Registry lock held.
    fn engage(&self, slot: &ProcSlot) {
        if slot.engaged.swap(1, Ordering::Relaxed) != 0 {
            return;
        }
        let hdr = self.hdr();
        self.lower(&hdr.conn.senders, slot.inh_senders.load(Ordering::Relaxed));
        self.lower(
            &hdr.conn.receivers,
            slot.inh_receivers.load(Ordering::Relaxed),
        );
    }

    /// Uncounts a handle dropped in this process.
    fn remove(&self, gen_stamp: &AtomicU64, sender: bool) {
        self.local_of(sender).fetch_sub(1, Ordering::Relaxed);
        let slot = self.my_slot();
        if gen_stamp.load(Ordering::Relaxed) == procs::fork_gen() {
            if sender {
                &slot.senders
            } else {
                &slot.receivers
            }
            .fetch_sub(1, Ordering::Relaxed);
            self.lower(self.conn_of(sender), 1);
        } else {
            let _g = registry::lock();
            if sender {
                &slot.inh_senders
            } else {
                &slot.inh_receivers
            }
            .fetch_sub(1, Ordering::Relaxed);
            if slot.engaged.load(Ordering::Relaxed) == 0 {
                self.lower(self.conn_of(sender), 1);
            }
        }
    }

    /// `true` if at most three quarters of a bounded channel's capacity is taken; always
    /// `true` for an unbounded one.
    fn below_low_water(&self) -> bool {
        self.cap
            .is_none_or(|cap| self.ring().at_most_queued(cap - cap / 4))
    }

    /// Sleeps until `w` moves on from `seq`, `deadline` or `slice`, whichever comes first,
    /// then looks for dead peers. The caller registered as a sleeper and re-checked its
    /// condition after reading `seq`.
    fn sleep(
        &self,
        w: &WaitWords,
        seq: u32,
        deadline: Option<Instant>,
        slice: Duration,
        backoff: &mut Backoff<'_>,
    ) {
        if backoff.limit == 0 {
            // Nothing to learn (one CPU: never spins): spare the two clock reads.
            platform::wait_until(&w.word, seq, deadline, slice);
        } else {
            let start = Instant::now();
            platform::wait_until(&w.word, seq, deadline, slice);
            backoff.slept(start.elapsed());
        }
        self.maybe_reap();
    }

    /// Looks for dead processes holding handles, at most every `SLICE` per process.
    fn maybe_reap(&self) {
        let now = epoch_nanos();
        let last = self.last_reap.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SLICE.as_nanos() as u64 {
            return;
        }
        if self
            .last_reap
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.reap();
        }
    }

    /// Subtracts the counts of every dead process's slot from the totals.
    fn reap(&self) {
        let me = procs::my_pid();
        let hdr = self.hdr();
        for slot in hdr.used_slots() {
            // Acquire: pairs with the Release store of a new owner's pid.
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == SLOT_FREE || pid == SLOT_BUSY {
                continue;
            }
            // A reservation for a child that never ran its fork handler (killed at once, or the
            // fork failed) is reaped after `PENDING_GRACE`; the child, if it runs later,
            // registers afresh.
            let stale = slot.pending.load(Ordering::Relaxed) != 0
                && procs::monotonic_nanos()
                    .saturating_sub(slot.pending_since.load(Ordering::Relaxed))
                    > PENDING_GRACE.as_nanos() as u64;
            if !stale {
                if pid == me {
                    continue;
                }
                let id = Identity {
                    pid,
                    start: slot.start.load(Ordering::Relaxed),
                };
                if procs::is_alive(id) {
                    continue;
                }
            }
            // Claim the slot so only one reaper subtracts its counts.
            if slot
                .pid
                .compare_exchange(pid, SLOT_BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let (mut wake, deferred) = self.recover_claims(slot);
            let (s, r) = slot.counted();
            for c in [
                &slot.senders,
                &slot.receivers,
                &slot.inh_senders,
                &slot.inh_receivers,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            slot.engaged.store(0, Ordering::Relaxed);
            slot.pending.store(0, Ordering::Relaxed);
            if !deferred {
                slot.start.store(0, Ordering::Relaxed);
                for (w, s) in slot.claims.iter().zip(&slot.sends) {
                    w.store(0, Ordering::Relaxed);
                    s.pos.store(0, Ordering::Relaxed);
                }
                slot.unclaimed.store(0, Ordering::Relaxed);
            }
            if s > 0 && hdr.conn.senders.fetch_sub(s, Ordering::AcqRel) == s {
                wake = true;
            }
            if r > 0 && hdr.conn.receivers.fetch_sub(r, Ordering::AcqRel) == r {
                wake = true;
            }
            // Release: the cleared fields are visible to the next claimer. A slot whose claims
            // wait on a live thread's word keeps the dead identity (its counts now zero), so a
            // later reap tries again.
            let next = if deferred { pid } else { SLOT_FREE };
            slot.pid.store(next, Ordering::Release);
            if wake {
                self.wake_everyone();
            }
        }
    }
}

impl Chan {
    /// Settles what the dead process of `dead` (a slot this reaper holds) left half done in
    /// the ring, unless a live process's thread may be the one doing it: records it had
    /// claimed and not completed (killed while decoding: `Ring::recover`), and message slots
    /// and cells it had taken and not published (killed while encoding: `Ring::recover_send`).
    /// Returns whether it settled any (peers may go on) and whether it left any for a later
    /// reap (a live thread's words named the same record: a claim that lost its CAS, until
    /// that thread claims again).
    ///
    /// A live thread's words name a record (or cells) from before its claiming CAS until it
    /// claims another, having completed (published) the first; each new value is stored with
    /// Release. Loading `head` and `tail` (Acquire) first, then every live process's words
    /// (Acquire), the reaper sees the words of any live claimer below them, or a later value
    /// (and then the completion or publication, which the ring checks last). A word may also
    /// be a claim that lost its CAS; if every word naming an unsettled record is a dead
    /// process's, one of them did claim it. Dead senders' words that disagree on the cells of
    /// one position (one of them lost its claim) are left alone.
    fn recover_claims(&self, dead: &ProcSlot) -> (bool, bool) {
        // Relaxed: the process is dead; the stores it made before it died are visible.
        let mut recvs: Vec<u64> = dead
            .claims
            .iter()
            .filter_map(|w| w.load(Ordering::Relaxed).checked_sub(1))
            .collect();
        let mut sends: Vec<(&SendWords, u64, u64)> = dead
            .sends
            .iter()
            .map(|w| {
                (
                    w,
                    w.pos.load(Ordering::Relaxed),
                    w.span.load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, pos, _)| pos != 0)
            .collect();
        let ring = self.ring();
        // Acquire, before the live words below (see above); `recover_send` reloads `tail`.
        let (head, _) = (ring.head_acquire(), ring.tail_acquire());
        recvs.retain(|&h| h < head);
        if recvs.is_empty() && sends.is_empty() {
            return (false, false);
        }
        let before = recvs.len() + sends.len();
        let me = procs::my_pid();
        for slot in self.hdr().used_slots() {
            // Acquire: pairs with the Release store of a new owner's pid.
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == SLOT_FREE || std::ptr::eq(slot, dead) {
                continue;
            }
            // Busy: being reaped (dead) or being claimed (no claims yet).
            let live = pid != SLOT_BUSY
                && (pid == me
                    || procs::is_alive(Identity {
                        pid,
                        start: slot.start.load(Ordering::Relaxed),
                    }));
            // Acquire: pairs with the Release decrement after an unclaimed operation.
            if live && slot.unclaimed.load(Ordering::Acquire) != 0 {
                return (false, true);
            }
            for (w, s) in slot.claims.iter().zip(&slot.sends) {
                // Acquire: pairs with the Release store of a later claim (or clear).
                if let Some(h) = w.load(Ordering::Acquire).checked_sub(1)
                    && live
                {
                    recvs.retain(|&x| x != h);
                }
                let pos = s.pos.load(Ordering::Acquire);
                if pos != 0 && pos != ring::RESERVING {
                    // A live claimer of the same cells, or another dead one that disagrees on
                    // how many (one of the two lost its claim): not this reaper's to settle.
                    let span = s.span.load(Ordering::Relaxed);
                    sends.retain(|&(_, p, own)| p != pos || (!live && own == span));
                }
            }
        }
        let deferred = recvs.len() + sends.len() < before;
        let mut progress = false;
        for &h in &recvs {
            progress |= ring.recover(h);
        }
        for &(w, pos, span) in &sends {
            ring.recover_send(pos, span);
            // Settled once: a later reap of this slot (if deferred) must not settle it again.
            w.pos.store(0, Ordering::Relaxed);
            progress = true;
        }
        (progress, deferred)
    }
}

fn epoch_nanos() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Claims a free slot (reaping dead ones if none is free) for `id`, async-signal-safe when
/// `may_reap` is false. Returns its index.
fn claim_slot(hdr: &ChanHeader, id: Identity, pending: bool) -> Option<usize> {
    for (i, slot) in hdr.procs.iter().enumerate() {
        if slot.pid.load(Ordering::Relaxed) != SLOT_FREE {
            continue;
        }
        if slot
            .pid
            .compare_exchange(SLOT_FREE, SLOT_BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.start.store(id.start, Ordering::Relaxed);
            slot.pending.store(u32::from(pending), Ordering::Relaxed);
            if pending {
                slot.pending_since
                    .store(procs::monotonic_nanos(), Ordering::Relaxed);
            }
            slot.engaged.store(0, Ordering::Relaxed);
            // Relaxed: see `ChanHeader::used_slots`.
            hdr.used.fetch_max(i as u32 + 1, Ordering::Relaxed);
            // Release: the fields above are visible to whoever reads this pid.
            slot.pid.store(id.pid, Ordering::Release);
            return Some(i);
        }
    }
    None
}

/// Options for a process channel beyond its capacity.
///
/// [`channel`] and [`unbounded`] are `ChannelBuilder::new(Some(capacity)).build()` and
/// `ChannelBuilder::new(None).build()`; the builder adds the byte budget, which also sets the
/// largest message the channel accepts.
///
/// ```
/// use uniconc::{Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::ChannelBuilder::new(Some(16))
///     .byte_budget(64 << 10)
///     .build::<Vec<u8>>()?;
/// assert_eq!(tx.capacity(), Some(16));
/// assert_eq!(tx.max_message_size(), 64 << 10);
/// tx.send(vec![7; 1000])?;
/// assert_eq!(rx.recv()?.len(), 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChannelBuilder {
    capacity: Option<usize>,
    byte_budget: Option<usize>,
}

impl ChannelBuilder {
    /// A builder for a channel holding at most `capacity` messages (`None`: unbounded).
    ///
    /// ```
    /// use uniconc::Sender as _;
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, _rx) = ChannelBuilder::new(None).build::<String>()?;
    /// assert_eq!(tx.capacity(), None);
    /// let (tx, _rx) = ChannelBuilder::new(Some(3)).build::<String>()?;
    /// assert_eq!(tx.capacity(), Some(3));
    /// assert!(ChannelBuilder::new(Some(0)).build::<String>().is_err()); // checked by `build`
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn new(capacity: Option<usize>) -> Self {
        Self {
            capacity,
            byte_budget: None,
        }
    }

    /// Bytes of ring space for queued messages (rounded up to a power of two, at least 4 KiB);
    /// also the largest message the channel accepts. Default: `capacity * 256` bytes within
    /// 1 MiB ..= 256 MiB; for an unbounded channel, a reservation sized to the machine (see
    /// [`unbounded`]), which this replaces. Pages are committed only when first used. At most
    /// 256 MiB (the codec's decode limit).
    ///
    /// ```
    /// use uniconc::{MessageError, SendError, Sender as _};
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, _rx) = ChannelBuilder::new(Some(4)).byte_budget(5000).build::<Vec<u8>>()?;
    /// assert_eq!(tx.max_message_size(), 8192); // rounded up to a power of two
    /// match tx.send(vec![0; 10_000]) {
    ///     Err(SendError::Invalid(v, MessageError::TooLarge { size, limit })) => {
    ///         assert_eq!(v.len(), 10_000); // the message comes back
    ///         assert!(size > limit && limit == 8192);
    ///     }
    ///     other => panic!("expected TooLarge, got {other:?}"),
    /// }
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = Some(bytes);
        self
    }

    /// Creates the channel.
    ///
    /// ```
    /// use uniconc::{ErrorKind, JoinHandle as _, Receiver as _, Sender as _};
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, rx) = ChannelBuilder::new(Some(2)).byte_budget(4096).build::<u32>()?;
    /// let child = uniconc::process::spawn(move || (1..=3).all(|i| tx.send(i).is_ok()))?;
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// assert!(child.join()?);
    ///
    /// let err = ChannelBuilder::new(Some(1)).byte_budget(1 << 40).build::<u32>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a capacity of 0 or an unrepresentable budget; `Os` if the shared
    /// memory cannot be mapped.
    pub fn build<T: Message>(self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let chan = Arc::new(new_chan(self.capacity, self.byte_budget)?);
        let tx_gen = chan.add_new(true);
        let rx_gen = chan.add_new(false);
        registry::register(&chan);
        Ok((
            Sender {
                chan: chan.clone(),
                gen_stamp: tx_gen,
                _m: PhantomData,
            },
            Receiver {
                chan,
                gen_stamp: rx_gen,
                _m: PhantomData,
            },
        ))
    }
}

fn new_chan(capacity: Option<usize>, budget: Option<usize>) -> Result<Chan, Error> {
    if let Some(capacity) = capacity {
        uniconc_core::validate::channel_capacity(capacity)?;
    }
    let budget = match (budget, capacity) {
        (Some(b), _) => b.max(4096),
        (None, Some(c)) => c.saturating_mul(256).clamp(MIN_BUDGET, MAX_BUDGET),
        (None, None) => {
            // The largest ring the machine allows, halved while the OS refuses to map it
            // (strict overcommit charges even a `MAP_NORESERVE` mapping in full).
            let mut ring = unbounded_ring_bytes();
            loop {
                match map_chan(None, ring, UNBOUNDED_SOFT_END) {
                    Err(_) if ring > MIN_UNBOUNDED_RING => ring /= 2,
                    r => return r,
                }
            }
        }
    };
    let budget = budget
        .checked_next_power_of_two()
        .filter(|b| *b <= codec::LIMIT)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "a channel byte budget is at most {} bytes",
                codec::LIMIT
            ))
        })?;
    map_chan(capacity, budget, u64::MAX)
}

/// Ring bytes reserved for an unbounded channel: the largest power of two at most half of
/// RAM plus swap (so the ring, with its control lines as large again, spans at most the
/// machine's memory), and at most an eighth of `RLIMIT_AS` when that is set; within
/// [`MIN_UNBOUNDED_RING`] ..= [`MAX_UNBOUNDED_RING`].
fn unbounded_ring_bytes() -> usize {
    let mut want = shm::machine_memory().map_or(MIN_UNBOUNDED_RING as u64, |m| m / 2);
    if let Some(limit) = shm::address_space_limit() {
        want = want.min(limit / 8);
    }
    let want = want.clamp(MIN_UNBOUNDED_RING as u64, MAX_UNBOUNDED_RING);
    // The largest power of two at most `want` (itself at least 64 MiB).
    let bytes = 1u64 << (63 - want.leading_zeros());
    usize::try_from(bytes).unwrap_or(MIN_UNBOUNDED_RING)
}

/// Maps a channel whose ring holds `ring_bytes` (a power of two, at least one cell) with its
/// soft end at `soft_end` cells (clamped to the ring).
fn map_chan(capacity: Option<usize>, ring_bytes: usize, soft_end: u64) -> Result<Chan, Error> {
    let cells = ring_bytes / CELL;
    let ctl_off = align_up(size_of::<ChanHeader>(), 64);
    let data_off = align_up(ctl_off + cells * size_of::<CellCtl>(), 4096);
    let len = data_off + cells * CELL;
    let shm = ShmBox::<ChanHeader>::new(len, true)?;
    let me = Identity::me();
    procs::install_fork_handlers();
    let slot = claim_slot(shm.header(), me, false).expect("a new channel has free slots");
    let max_msg = (cells * CELL).min(ring::MAX_RECORD).min(codec::LIMIT);
    let ctl = std::ptr::NonNull::from(shm.region().slice_at::<CellCtl>(ctl_off, cells)).cast();
    assert!(data_off + cells * CELL <= shm.region().len(), "layout");
    // SAFETY: `data_off < len`, inside the mapping (just checked).
    let data = std::ptr::NonNull::new(unsafe { shm.region().base().add(data_off) })
        .expect("a mapping is not at address 0");
    Ok(Chan {
        shm,
        ctl,
        cells,
        data,
        cap: capacity.map(|c| c as u64),
        soft_end: soft_end.min(cells as u64),
        max_msg,
        slot: AtomicU32::new(slot as u32),
        senders: AtomicU32::new(0),
        receivers: AtomicU32::new(0),
        child_slot: AtomicU32::new(u32::MAX),
        child_senders: AtomicU32::new(0),
        child_receivers: AtomicU32::new(0),
        last_reap: AtomicU64::new(0),
        spin_polls: AtomicU32::new(Backoff::MAX_POLLS),
        ring_cache: ring::Cache::default(),
        single_cpu: std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
    })
}

/// A bounded channel holding at most `capacity` messages, shared with processes forked after
/// it was created.
///
/// Its byte budget (the ring of encoded messages) is `capacity * 256` bytes within
/// 1 MiB ..= 256 MiB, which is also the largest message it accepts; see [`ChannelBuilder`]
/// to choose it.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<String>(8)?;
/// let child = uniconc::process::spawn(move || {
///     tx.send(format!("hello from {}", std::process::id())).unwrap();
/// })?;
/// let child_pid = child.id();
/// child.join()?;
/// assert_eq!(rx.recv()?, format!("hello from {child_pid}"));
/// assert!(uniconc::process::channel::<String>(0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `InvalidArgument` if `capacity == 0`; `Os` if shared memory cannot be mapped.
pub fn channel<T: Message>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    ChannelBuilder::new(Some(capacity)).build()
}

/// A channel without a bound on the number of messages, shared with processes forked after
/// it was created.
///
/// Its ring is a reservation of address space (the largest power of two at most half of RAM
/// plus swap, an eighth of `RLIMIT_AS` if set, and 1 GiB), mapped with `MAP_NORESERVE`:
/// pages are committed when first used, so an idle channel takes no memory and `fork` stays
/// cheap. So it holds up to 1 GiB of queued messages (16 million small ones) where the
/// thread and tokio backends hold what memory allows; past that it behaves as a full bounded
/// channel: `try_send` returns `Full` and `send` waits for room.
///
/// Memory: the ring keeps to its first 1 MiB as long as it is empty now and then (a producer
/// that crosses that mark while nothing is queued goes back to the start). A channel that
/// always holds a backlog walks its whole ring instead, and the pages it used stay committed
/// until the channel is dropped in every process: up to 2 GiB (the ring and its control
/// lines). Under strict overcommit (`vm.overcommit_memory = 2`), which charges even a
/// `MAP_NORESERVE` mapping in full, the reservation is halved until the OS grants it, down
/// to 64 MiB. The largest single message is [`UNBOUNDED_BUDGET`] bytes encoded.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::unbounded::<Vec<u8>>()?;
/// assert_eq!(tx.capacity(), None);
/// let child = uniconc::process::spawn(move || {
///     (0..100u8).all(|i| tx.try_send(vec![i; 1000]).is_ok())
/// })?;
/// assert!(child.join()?); // never full: 100 KB queued, far below the budget
/// assert_eq!(rx.len(), 100);
/// assert_eq!(rx.recv()?, vec![0; 1000]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `Os` if shared memory cannot be mapped.
pub fn unbounded<T: Message>() -> Result<(Sender<T>, Receiver<T>), Error> {
    ChannelBuilder::new(None).build()
}

/// The spin phase before a futex sleep, adaptive per channel and process.
///
/// A spinning waiter re-checks its condition after *every* `pause`: a pause took about 30 ns
/// on the Sapphire Rapids Xeon this was tuned on (a loop of a million `pause`s, in C), so a batch of them between checks (crossbeam's exponential
/// `Backoff`, 2^6 pauses ≈ 2 µs) would add up to that much to every hand-over between two
/// active processes, ten times a cache-line round trip.
///
/// `learned` is the number of polls before sleeping, between [`Backoff::MIN_POLLS`] and
/// [`Backoff::MAX_POLLS`] (about 15 µs, less than a futex wake-up in a VM). It doubles when a
/// spin or a short sleep shows the peer answers quickly, and halves each time a wait had to
/// sleep long. With a single usable CPU it is 0: spinning could only delay the peer.
struct Backoff<'a> {
    polls: u32,
    limit: u32,
    yields: u32,
    slept: bool,
    learned: &'a AtomicU32,
}

impl<'a> Backoff<'a> {
    const MAX_POLLS: u32 = 512;
    /// `sched_yield`s between the spin and the futex sleep.
    const YIELDS: u32 = 4;
    const MIN_POLLS: u32 = 16;
    /// A sleep shorter than this means the peer was active (a futex wake-up alone takes tens
    /// of microseconds in a VM): spin more next time.
    const QUICK: Duration = Duration::from_micros(200);
    /// A sleep longer than this means the peer was idle: spin less next time.
    const IDLE: Duration = Duration::from_millis(1);

    #[inline]
    fn new(chan: &'a Chan) -> Self {
        // Relaxed: a heuristic.
        let limit = if chan.single_cpu {
            0
        } else {
            chan.spin_polls.load(Ordering::Relaxed)
        };
        Self {
            polls: 0,
            limit,
            yields: 0,
            slept: false,
            learned: &chan.spin_polls,
        }
    }

    /// After the spin: give the CPU away a few times before sleeping. A peer that is
    /// runnable on this CPU (always the case with a single CPU) then answers at the cost of a
    /// context switch, without a futex wake and wait on each side.
    #[inline]
    fn yield_now(&mut self) -> bool {
        if self.yields >= Self::YIELDS {
            return false;
        }
        self.yields += 1;
        std::thread::yield_now();
        true
    }

    /// One pause before the next poll; `false` once the spin phase is over. For receivers: a
    /// message is taken as soon as it lands.
    #[inline]
    fn snooze(&mut self) -> bool {
        if self.polls >= self.limit {
            return self.yield_now();
        }
        std::hint::spin_loop();
        self.polls += 1;
        true
    }

    /// Exponentially spaced polls (1, 2, 4 … 64 pauses apart) over the same time budget. For
    /// senders waiting for room: a full channel has plenty queued, so reacting late costs
    /// nothing, while each poll reads the line every receive writes (`recvd`) and would slow
    /// the receivers down.
    #[inline]
    fn snooze_spaced(&mut self) -> bool {
        if self.polls >= self.limit {
            return self.yield_now();
        }
        // 1, 2, 4 … pauses: the gap doubles with each poll, up to 64.
        let n = (self.polls + 1).next_power_of_two().min(64);
        for _ in 0..n {
            std::hint::spin_loop();
        }
        self.polls += n;
        true
    }

    fn learn(&self, f: impl FnOnce(u32) -> u32) {
        // Relaxed: a heuristic; a lost update between racing waiters does no harm.
        let v = self.learned.load(Ordering::Relaxed);
        let v = f(v).clamp(Self::MIN_POLLS, Self::MAX_POLLS);
        self.learned.store(v, Ordering::Relaxed);
    }

    /// The wait ended during the spin phase.
    #[inline]
    fn succeeded(&self) {
        if self.polls > 0 && self.yields == 0 && !self.slept && self.limit < Self::MAX_POLLS {
            self.learn(|v| v.saturating_mul(2));
        }
    }

    /// The wait slept for `slept`.
    fn slept(&mut self, slept: Duration) {
        self.slept = true;
        if slept < Self::QUICK {
            self.learn(|v| v.saturating_mul(4));
        } else if slept > Self::IDLE {
            self.learn(|v| v / 2);
        }
    }
}

/// The sending half of a process channel. `Clone`; copied into forked children.
///
/// A message is serde-encoded straight into a ring in shared memory, so it crosses to any
/// process forked after the channel was created. A message larger than
/// [`max_message_size`](Sender::max_message_size) is refused with
/// `SendError::Invalid(value, MessageError::TooLarge { .. })`, handing it back. A process
/// that is killed (SIGKILL) while holding senders counts as having dropped them: receivers
/// blocked on the channel see `Disconnected` instead of waiting forever. The send methods
/// come from [`uniconc::Sender`](uniconc_core::Sender).
///
/// ```
/// use uniconc::{Event as _, JoinError, JoinHandle as _, Receiver as _, RecvError};
/// let (tx, rx) = uniconc::process::channel::<u32>(1)?;
/// let (ready, never) = (uniconc::process::event()?, uniconc::process::event()?);
/// let child = uniconc::process::spawn({
///     let (ready, never) = (ready.clone(), never.clone());
///     move || {
///         let _tx = tx; // the only sender, held by the child
///         ready.set();
///         never.wait();
///     }
/// })?;
/// ready.wait();
/// child.kill()?;
/// assert_eq!(child.join(), Err(JoinError::Killed(9)));
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected)); // the dead child's sender is gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T> {
    chan: Arc<Chan>,
    /// Fork generation this handle was created or last adopted in.
    gen_stamp: AtomicU64,
    _m: PhantomData<fn(T)>,
}

/// The receiving half of a process channel. `Clone`; copied into forked children.
///
/// Each message goes to exactly one receiver, in whichever process. A message that cannot
/// be decoded is consumed and reported as `Invalid(MessageError::Decode(..))`. The receive
/// methods come from [`uniconc::Receiver`](uniconc_core::Receiver).
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
/// let consumer = uniconc::process::spawn(move || rx.iter().sum::<u64>())?;
/// for i in 1..=10 {
///     tx.send(i)?;
/// }
/// drop(tx); // the child's own copy of `tx` does not count: it uses only `rx`
/// assert_eq!(consumer.join()?, 55);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan>,
    /// Fork generation this handle was created or last adopted in.
    gen_stamp: AtomicU64,
    _m: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.touch(&self.gen_stamp, true);
        Self {
            gen_stamp: self.chan.add_new(true),
            chan: self.chan.clone(),
            _m: PhantomData,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.touch(&self.gen_stamp, false);
        Self {
            gen_stamp: self.chan.add_new(false),
            chan: self.chan.clone(),
            _m: PhantomData,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.remove(&self.gen_stamp, true);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.remove(&self.gen_stamp, false);
    }
}

enum TrySend<T> {
    Full(T),
    Err(SendError<T>),
}

impl<T: Serialize> Sender<T> {
    /// The largest encoded message this channel accepts, in bytes.
    ///
    /// ```
    /// use uniconc::{SendError, Sender as _};
    /// let (tx, _rx) = uniconc::process::channel::<Vec<u8>>(8)?;
    /// assert_eq!(tx.max_message_size(), 1 << 20); // the default budget of a small channel
    /// let too_big = vec![0u8; tx.max_message_size() + 1];
    /// assert!(matches!(tx.send(too_big), Err(SendError::Invalid(..))));
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.chan.max_msg
    }

    fn try_send_inner(&self, value: T) -> Result<(), TrySend<T>> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, true);
        if chan.receivers_gone() {
            return Err(TrySend::Err(SendError::Disconnected(value)));
        }
        let size = match codec::encoded_size(&value) {
            Ok(s) => s,
            Err(e) => return Err(TrySend::Err(SendError::Invalid(value, e))),
        };
        if size > chan.max_msg {
            let e = MessageError::TooLarge {
                size,
                limit: chan.max_msg,
            };
            return Err(TrySend::Err(SendError::Invalid(value, e)));
        }
        let mut enc_err = None;
        let claim = Claim::new(chan.my_slot());
        let pushed =
            chan.ring()
                .try_push(size, chan.cap, claim.send_words(), claim.word(), |buf| {
                    match codec::encode_into(&value, buf) {
                        Ok(n) if n == size => true,
                        Ok(n) => {
                            enc_err = Some(MessageError::Encode(format!(
                                "the value encoded to {n} bytes after measuring {size}"
                            )));
                            false
                        }
                        Err(e) => {
                            enc_err = Some(e);
                            false
                        }
                    }
                });
        match pushed {
            Ok(true) => {
                chan.notify(&chan.hdr().recv_wait);
                Ok(())
            }
            Ok(false) => {
                let e = enc_err.unwrap_or_else(|| MessageError::Encode("unknown".into()));
                Err(TrySend::Err(SendError::Invalid(value, e)))
            }
            Err(ring::Full) => Err(TrySend::Full(value)),
        }
    }

    fn send_inner(
        &self,
        mut value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut backoff = Backoff::new(&self.chan);
        let w = &self.chan.hdr().send_wait;
        loop {
            match self.try_send_inner(value) {
                Ok(()) => {
                    backoff.succeeded();
                    return Ok(());
                }
                Err(TrySend::Err(e)) => return Err(e.into()),
                Err(TrySend::Full(v)) => value = v,
            }
            if backoff.snooze_spaced() {
                // Spinning: retry only once a quarter of the capacity is free again, so a
                // sender faster than its receivers refills in batches instead of reading
                // `recvd` (which every receive writes) at every send.
                while !self.chan.below_low_water() && backoff.snooze_spaced() {}
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendTimeoutError::Timeout(value));
            }
            let seq = self.prepare_sleep();
            match self.try_send_inner(value) {
                Ok(()) => return Ok(()),
                Err(TrySend::Err(e)) => return Err(e.into()),
                Err(TrySend::Full(v)) => value = v,
            }
            self.chan.sleep(w, seq, deadline, SLICE, &mut backoff);
        }
    }
}

impl<T> Sender<T> {
    /// Registers as a sleeper on `send_wait` and refreshes the cached `recvd`; returns the
    /// sequence value to sleep on. The caller re-checks with `try_send_inner`, then sleeps.
    fn prepare_sleep(&self) -> u32 {
        let seq = register_sleeper(&self.chan.hdr().send_wait);
        // SeqCst inside: the load half of the senders' wake handshake (module docs): either
        // we see the receivers' latest count and completion (the room), or they see our flag.
        self.chan.ring().recheck_room();
        seq
    }
}

impl<T> Receiver<T> {
    /// Registers as a sleeper on `recv_wait`; returns the sequence value to sleep on, and
    /// whether a producer has claimed cells it has not published yet (it may have read the
    /// flag before we raised it, so it may not wake us: sleep briefly, see [`claimed_nap`]).
    /// The caller re-checks with `try_recv_inner`, then sleeps.
    fn prepare_sleep(&self) -> (u32, bool) {
        let seq = register_sleeper(&self.chan.hdr().recv_wait);
        // SeqCst inside: the load half of the receivers' wake handshake (module docs).
        (seq, !self.chan.ring().is_idle())
    }
}

/// What one look at the ring found.
enum Look<T> {
    /// A message, or the end of the channel (`Disconnected`, `Invalid`).
    Got(Result<T, TryRecvError>),
    /// Nothing was published at the front of the ring. Without `tell_in_flight`, a sender may
    /// also be writing the message there (telling needs a load of `tail`, the line every send
    /// writes: a polling waiter would pull it from the sender's cache at every poll).
    Empty,
    /// A sender has claimed the front of the ring and not published it yet: a message is
    /// queued (maybe more behind it) but cannot be taken before it.
    InFlight,
}

impl<T: DeserializeOwned> Receiver<T> {
    /// One look: takes the message at the front of the ring if one is published. With
    /// `tell_in_flight`, an unpublished claim at the front is told apart from an empty ring;
    /// after disconnection it always is (a message being written is drained, not dropped).
    fn try_recv_inner(&self, tell_in_flight: bool) -> Look<T> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, false);
        let claim = Claim::new(chan.my_slot());
        let mut second_look = false;
        loop {
            let popped = chan.ring().try_pop(claim.word(), |rec| match rec {
                Record::Bytes(b) => codec::decode::<T>(b),
                Record::Corrupt => Err(MessageError::Decode(
                    "corrupt record in shared memory".into(),
                )),
            });
            match popped {
                Pop::Item(r) => {
                    // The ring's SeqCst `recvd` increment, then this: the notifier half of the
                    // senders' wake handshake (module docs).
                    chan.notify(&chan.hdr().send_wait);
                    return Look::Got(r.map_err(TryRecvError::Invalid));
                }
                Pop::Empty => {
                    if second_look {
                        // Every sender is gone: the channel ends once no send is under way.
                        return if chan.ring().is_idle() {
                            Look::Got(Err(TryRecvError::Disconnected))
                        } else {
                            Look::InFlight
                        };
                    }
                    if !chan.senders_gone() {
                        return if tell_in_flight && !chan.ring().is_idle() {
                            Look::InFlight
                        } else {
                            Look::Empty
                        };
                    }
                    // Disconnected: drain what was sent before the last sender left.
                    second_look = true;
                }
            }
        }
    }

    /// `try_recv`: a look that waits (within [`IN_FLIGHT_PATIENCE`]) for a message a sender is
    /// writing at the front of the ring, so that `Empty` means nothing is queued.
    fn try_recv_settled(&self) -> Result<T, TryRecvError> {
        let mut wait: Option<InFlightWait> = None;
        loop {
            match self.try_recv_inner(true) {
                Look::Got(r) => return r,
                Look::Empty => return Err(TryRecvError::Empty),
                Look::InFlight => {
                    if !wait
                        .get_or_insert_with(|| InFlightWait::new(&self.chan))
                        .wait(&self.chan)
                    {
                        return Err(TryRecvError::Empty);
                    }
                }
            }
        }
    }

    fn recv_inner(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut backoff = Backoff::new(&self.chan);
        let w = &self.chan.hdr().recv_wait;
        let mut naps = 0;
        loop {
            match self.try_recv_inner(false) {
                Look::Empty | Look::InFlight => {}
                Look::Got(r) => {
                    backoff.succeeded();
                    return r.map_err(to_timeout_err);
                }
            }
            if backoff.snooze() {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let (seq, claimed) = self.prepare_sleep();
            match self.try_recv_inner(false) {
                Look::Empty | Look::InFlight => {}
                Look::Got(r) => return r.map_err(to_timeout_err),
            }
            let nap = if claimed {
                naps += 1;
                claimed_nap(naps - 1)
            } else {
                naps = 0;
                SLICE
            };
            self.chan.sleep(w, seq, deadline, nap, &mut backoff);
        }
    }
}

/// The async twin of [`Chan::sleep`]: until `w` moves on from `seq` (or one [`SLICE`], the
/// waiter pool's bound), then a look for dead peers.
async fn sleep_async(chan: &Arc<Chan>, w: &WaitWords, seq: u32) {
    let keep: Arc<dyn std::any::Any + Send + Sync> = chan.clone();
    // SAFETY: `w.word` lives in the mapping `keep` keeps alive.
    unsafe { WaitWord::new(&w.word, seq, None, keep) }.await;
    chan.maybe_reap();
}

/// The claim word a receive hands the ring: this thread's word in its process's slot, or,
/// for a thread without a [`claims`] index, a private word while the slot counts the receive
/// as unclaimed (which holds back every recovery until it returns).
enum Claim<'a> {
    Words(&'a AtomicU64, &'a SendWords),
    Unclaimed(&'a AtomicU32, AtomicU64, SendWords),
}

impl<'a> Claim<'a> {
    #[inline]
    fn new(slot: &'a ProcSlot) -> Self {
        match claims::mine() {
            Some(i) => Self::Words(&slot.claims[i], &slot.sends[i]),
            None => {
                // Relaxed: published to reapers by the ring's claiming CAS, like a word.
                slot.unclaimed.fetch_add(1, Ordering::Relaxed);
                Self::Unclaimed(&slot.unclaimed, AtomicU64::new(0), SendWords::default())
            }
        }
    }

    /// The receive claim word.
    #[inline]
    fn word(&self) -> &AtomicU64 {
        match self {
            Self::Words(w, _) => w,
            Self::Unclaimed(_, w, _) => w,
        }
    }

    /// The send claim words.
    #[inline]
    fn send_words(&self) -> &SendWords {
        match self {
            Self::Words(_, w) => w,
            Self::Unclaimed(_, _, w) => w,
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Self::Unclaimed(count, ..) = self {
            // Release: as a claim word's next value (the completion first).
            count.fetch_sub(1, Ordering::Release);
        }
    }
}

fn to_timeout_err(e: TryRecvError) -> RecvTimeoutError {
    match e {
        TryRecvError::Empty => RecvTimeoutError::Timeout,
        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        TryRecvError::Invalid(m) => RecvTimeoutError::Invalid(m),
    }
}

fn to_recv_err(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Invalid(m) => RecvError::Invalid(m),
        _ => RecvError::Disconnected,
    }
}

fn len_of(chan: &Chan) -> usize {
    let n = chan.ring().queued();
    let n = chan.cap.map_or(n, |c| n.min(c));
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl<T: Message> uniconc_core::Sender<T> for Sender<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_send_inner(value) {
            Ok(()) => Ok(()),
            Err(TrySend::Full(v)) => Err(TrySendError::Full(v)),
            Err(TrySend::Err(e)) => Err(e.into()),
        }
    }

    #[inline]
    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        self.send_inner(value, deadline)
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        async move {
            let mut value = value;
            let w = &self.chan.hdr().send_wait;
            loop {
                match self.try_send_inner(value) {
                    Ok(()) => return Ok(()),
                    Err(TrySend::Err(e)) => return Err(e),
                    Err(TrySend::Full(v)) => value = v,
                }
                let seq = self.prepare_sleep();
                match self.try_send_inner(value) {
                    Ok(()) => return Ok(()),
                    Err(TrySend::Err(e)) => return Err(e),
                    Err(TrySend::Full(v)) => value = v,
                }
                sleep_async(&self.chan, w, seq).await;
            }
        }
    }

    fn len(&self) -> usize {
        len_of(&self.chan)
    }

    fn capacity(&self) -> Option<usize> {
        self.chan.cap.map(|c| c as usize)
    }

    fn is_closed(&self) -> bool {
        self.chan.receivers_gone()
    }

    fn close(&self) {
        // SeqCst (Release for the data): pairs with the loads in `*_gone`.
        self.chan.hdr().conn.closed.store(1, Ordering::SeqCst);
        self.chan.wake_everyone();
    }
}

impl<T: Message> uniconc_core::Receiver<T> for Receiver<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        self.try_recv_settled()
    }

    #[inline]
    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.recv_inner(deadline)
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_ {
        async move {
            let w = &self.chan.hdr().recv_wait;
            let mut yields = 0;
            loop {
                match self.try_recv_inner(false) {
                    Look::Empty | Look::InFlight => {}
                    Look::Got(r) => return r.map_err(to_recv_err),
                }
                let (seq, claimed) = self.prepare_sleep();
                match self.try_recv_inner(false) {
                    Look::Empty | Look::InFlight => {}
                    Look::Got(r) => return r.map_err(to_recv_err),
                }
                if claimed && yields < 16 {
                    // A message is being written: let the executor run something else, then
                    // look again (a few times: a producer stalled there must not keep this
                    // task busy; the sleep below is bounded to `SLICE`).
                    yields += 1;
                    YieldNow(false).await;
                    continue;
                }
                yields = 0;
                sleep_async(&self.chan, w, seq).await;
            }
        }
    }

    fn len(&self) -> usize {
        len_of(&self.chan)
    }

    fn capacity(&self) -> Option<usize> {
        self.chan.cap.map(|c| c as usize)
    }

    fn is_closed(&self) -> bool {
        self.chan.senders_gone()
    }
}

/// Keeps channel end counts right across `fork`, from the `pthread_atfork` handlers.
pub(crate) mod registry {
    use super::*;
    use std::cell::UnsafeCell;

    struct Registry {
        locked: AtomicBool,
        list: UnsafeCell<Vec<*const Chan>>,
    }

    // SAFETY: `list` is only accessed with `locked` held; the pointers are to live `Chan`s
    // (removed in `Chan::drop` under the lock before the memory is freed).
    unsafe impl Sync for Registry {}

    static REG: Registry = Registry {
        locked: AtomicBool::new(false),
        list: UnsafeCell::new(Vec::new()),
    };

    /// Holds the registry lock (also serialises adoption, and is held across `fork` by the
    /// prepare handler, so no other thread of the parent holds it at the fork).
    pub(crate) struct Guard(());

    impl Drop for Guard {
        fn drop(&mut self) {
            unlock();
        }
    }

    pub(crate) fn lock() -> Guard {
        raw_lock();
        Guard(())
    }

    fn raw_lock() {
        // Acquire/Release: the list's accesses happen inside the critical section.
        while REG
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
    }

    fn unlock() {
        REG.locked.store(false, Ordering::Release);
    }

    pub(crate) fn register(chan: &Arc<Chan>) {
        let _g = lock();
        // SAFETY: lock held.
        unsafe { (*REG.list.get()).push(Arc::as_ptr(chan)) };
    }

    pub(super) fn unregister(chan: *const Chan) {
        let _g = lock();
        // SAFETY: lock held.
        unsafe { (*REG.list.get()).retain(|&p| p != chan) };
    }

    /// `true` if every channel this process holds handles of has a free process slot for one
    /// more child (after reaping dead peers). `spawn` and the pool check it before they fork.
    pub(crate) fn room_for_child() -> bool {
        let _g = lock();
        // SAFETY: lock held; every pointer is a live `Chan` (see `Registry`).
        for &p in unsafe { &*REG.list.get() } {
            let chan = unsafe { &*p };
            let free = |c: &Chan| {
                c.hdr()
                    .procs
                    .iter()
                    .any(|s| s.pid.load(Ordering::Relaxed) == SLOT_FREE)
            };
            if !free(chan) {
                chan.reap();
                if !free(chan) {
                    return false;
                }
            }
        }
        true
    }

    /// See [`forget_inherited_handles`](super::forget_inherited_handles).
    pub(crate) fn engage_all() {
        let _g = lock();
        // SAFETY: lock held; every pointer is a live `Chan`.
        for &p in unsafe { &*REG.list.get() } {
            let chan = unsafe { &*p };
            chan.engage(chan.my_slot());
        }
    }

    /// Parent, before `fork`: reserve and count a slot for the child in every channel this
    /// process holds handles of. The registry stays locked until `fork_parent`/`fork_child`.
    pub(crate) fn fork_prepare() {
        raw_lock();
        let me = Identity {
            pid: procs::my_pid(),
            start: 0,
        };
        // SAFETY: lock held; every pointer is a live `Chan` (see `Registry`).
        for &p in unsafe { &*REG.list.get() } {
            let chan = unsafe { &*p };
            let s = chan.senders.load(Ordering::Relaxed);
            let r = chan.receivers.load(Ordering::Relaxed);
            let hdr = chan.hdr();
            let me = Identity {
                start: chan.my_slot().start.load(Ordering::Relaxed),
                ..me
            };
            let claimed = claim_slot(hdr, me, true).or_else(|| {
                chan.reap();
                claim_slot(hdr, me, true)
            });
            let Some(i) = claimed else {
                // No slot left: the child is not counted at all; its handles act as
                // disowned (documented on `MAX_PROCESSES`).
                chan.child_slot.store(u32::MAX, Ordering::Relaxed);
                continue;
            };
            let slot = &hdr.procs[i];
            slot.inh_senders.store(s, Ordering::Relaxed);
            slot.inh_receivers.store(r, Ordering::Relaxed);
            hdr.conn.senders.fetch_add(s, Ordering::Relaxed);
            hdr.conn.receivers.fetch_add(r, Ordering::Relaxed);
            chan.child_slot.store(i as u32, Ordering::Relaxed);
            chan.child_senders.store(s, Ordering::Relaxed);
            chan.child_receivers.store(r, Ordering::Relaxed);
        }
    }

    /// Parent, after `fork`.
    pub(crate) fn fork_parent() {
        unlock();
    }

    /// Child, after `fork` (async-signal-safe: atomics and raw syscalls only). Takes over the
    /// reserved slots, correcting their counts to the handles actually copied.
    pub(crate) fn fork_child() {
        let me = Identity::me();
        let parent = procs::parent_pid_before_fork();
        // SAFETY: the registry lock is held (taken in `fork_prepare` by the forking thread,
        // now this process's only thread); the pointers are live `Chan`s copied by fork.
        for &p in unsafe { &*REG.list.get() } {
            let chan = unsafe { &*p };
            let i = chan.child_slot.swap(u32::MAX, Ordering::Relaxed);
            if i == u32::MAX {
                continue;
            }
            let hdr = chan.hdr();
            let have_s = chan.senders.load(Ordering::Relaxed);
            let have_r = chan.receivers.load(Ordering::Relaxed);
            let slot = &hdr.procs[i as usize % MAX_PROCESSES];
            // Take the reserved slot over, unless a peer reaped it (we were too slow to run).
            let took = slot
                .pid
                .compare_exchange(parent, SLOT_BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
            if took {
                let fix =
                    |have: u32, reserved: &AtomicU32, slot_c: &AtomicU32, total: &AtomicU32| {
                        let res = reserved.load(Ordering::Relaxed);
                        if have > res {
                            slot_c.fetch_add(have - res, Ordering::Relaxed);
                            total.fetch_add(have - res, Ordering::Relaxed);
                        } else if res > have {
                            slot_c.fetch_sub(res - have, Ordering::Relaxed);
                            chan.lower(total, res - have);
                        }
                    };
                fix(
                    have_s,
                    &chan.child_senders,
                    &slot.inh_senders,
                    &hdr.conn.senders,
                );
                fix(
                    have_r,
                    &chan.child_receivers,
                    &slot.inh_receivers,
                    &hdr.conn.receivers,
                );
                slot.start.store(me.start, Ordering::Relaxed);
                slot.pending.store(0, Ordering::Relaxed);
                // Release: the fields above are visible to whoever reads the pid.
                slot.pid.store(me.pid, Ordering::Release);
                chan.slot.store(i, Ordering::Relaxed);
            } else if let Some(j) = claim_slot(hdr, me, false) {
                // Our reservation was reaped: register afresh.
                let slot = &hdr.procs[j];
                slot.inh_senders.store(have_s, Ordering::Relaxed);
                slot.inh_receivers.store(have_r, Ordering::Relaxed);
                hdr.conn.senders.fetch_add(have_s, Ordering::Relaxed);
                hdr.conn.receivers.fetch_add(have_r, Ordering::Relaxed);
                chan.slot.store(j as u32, Ordering::Relaxed);
            }
        }
        unlock();
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        registry::unregister(self);
        // Every handle is gone from this process: give the slot back. A pending child slot
        // (fork in progress) is not ours to free.
        let slot = self.my_slot();
        if slot.senders.load(Ordering::Relaxed) == 0 && slot.receivers.load(Ordering::Relaxed) == 0
        {
            slot.start.store(0, Ordering::Relaxed);
            // Release: the cleared fields are visible to the next claimer.
            slot.pid.store(SLOT_FREE, Ordering::Release);
        }
    }
}

/// `for x in rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::{JoinHandle as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
/// let child = uniconc::process::spawn(move || {
///     let mut total = 0;
///     for x in rx {
///         total += x;
///     }
///     total
/// })?;
/// for i in 1..=4 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// assert_eq!(child.join()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T: Message> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::IntoIter<T, Self>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::IntoIter::new(self)
    }
}

/// `for x in &rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::Sender as _;
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
/// tx.send(1)?;
/// tx.send(2)?;
/// tx.close();
/// let mut total = 0;
/// for x in &rx {
///     total += x;
/// }
/// assert_eq!(total, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<'a, T: Message> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::Iter<'a, T, Receiver<T>>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::Receiver::iter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uniconc_core::{Receiver as _, Sender as _};

    /// Held by every test of this binary that forks: a fork takes a slot in every live
    /// channel for the child, so a test that counts a channel's free slots must not overlap
    /// another test's fork.
    static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn forks() -> std::sync::MutexGuard<'static, ()> {
        FORKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A channel whose `MAX_PROCESSES` slots are all taken (by live processes: here, this
    /// one) makes `spawn` refuse with a clear error instead of forking a child it could not
    /// count; with three slots free, eight threads spawning at once get exactly three
    /// children (the room check and the child's slot are one step: without that, two threads
    /// could both see the last slot, though this test hits that window only rarely); with
    /// slots free again, `spawn` forks. (One test: every fork checks every channel of the
    /// process.)
    /// Decodes as a unit, after setting [`SLEEPY_DECODING`] and sleeping for good: a receiver
    /// stuck inside `recv`, holding the message.
    #[derive(serde::Serialize)]
    struct Sleepy;

    static SLEEPY_DECODING: std::sync::OnceLock<crate::Event> = std::sync::OnceLock::new();

    impl<'de> serde::Deserialize<'de> for Sleepy {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            <()>::deserialize(d)?;
            uniconc_core::Event::set(SLEEPY_DECODING.get().expect("set before the fork"));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// A dead receiver's record that a live thread's claim word also names (a claim that lost
    /// its CAS) is not finished, and the dead process's slot stays, counts zeroed, until a
    /// later reap finds the word moved on; then the record is finished and the slot freed.
    #[test]
    fn a_recovery_a_live_word_holds_back_is_retried() {
        let _forks = forks();
        use uniconc_core::{JoinHandle as _, Sender as _};
        let (tx, rx) = channel::<Sleepy>(4).unwrap();
        let decoding = SLEEPY_DECODING.get_or_init(|| crate::event().unwrap());
        tx.send(Sleepy).unwrap();
        let child = crate::spawn(move || rx.recv().is_ok()).unwrap();
        uniconc_core::Event::wait(decoding);
        let chan = &*tx.chan;
        let slot_of = |pid: u32| {
            chan.hdr()
                .used_slots()
                .iter()
                .position(|s| s.pid.load(Ordering::Acquire) == pid)
        };
        let pid = child.id();
        let dead = slot_of(pid).expect("the child has a slot");
        let words = &chan.hdr().procs[dead].claims;
        assert!(
            words.iter().any(|w| w.load(Ordering::Acquire) == 1),
            "it holds record 0"
        );
        child.kill().unwrap();
        while procs::is_alive(Identity { pid, start: 0 }) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // This (live) thread's word names the same record, as after a lost CAS.
        let mine = &chan.my_slot().claims[claims::mine().unwrap()];
        mine.store(1, Ordering::Release);
        chan.reap();
        assert_eq!(tx.len(), 1, "held back: the record is not finished");
        assert_eq!(slot_of(pid), Some(dead), "the slot waits for a retry");
        mine.store(0, Ordering::Release);
        chan.reap();
        assert_eq!(tx.len(), 0, "finished by the retry");
        assert_eq!(slot_of(pid), None, "and the slot freed");
        drop(child);
    }

    #[test]
    fn a_channel_with_every_process_slot_taken_refuses_a_fork() {
        let _forks = forks();
        use uniconc_core::{Event as _, JoinHandle as _};
        let (tx, _rx) = channel::<u8>(1).unwrap();
        let hdr = tx.chan.hdr();
        let mut taken = Vec::new();
        while let Some(i) = claim_slot(hdr, Identity::me(), false) {
            taken.push(i);
        }
        assert_eq!(taken.len(), MAX_PROCESSES - 1, "the creator holds one slot");
        let err = crate::spawn(|| 0u8).expect_err("no room for a child");
        assert!(err.to_string().contains("MAX_PROCESSES"), "{err}");
        // Release (here and below): as a reaped slot is freed.
        let free = |i: usize| hdr.procs[i].pid.store(SLOT_FREE, Ordering::Release);
        taken.drain(..3).for_each(free);
        let go = crate::event().unwrap();
        let children: Vec<_> = std::thread::scope(|s| {
            let spawns: Vec<_> = (0..8)
                .map(|_| {
                    let go = go.clone();
                    s.spawn(move || {
                        crate::spawn(move || {
                            go.wait();
                            7u8
                        })
                    })
                })
                .collect();
            spawns.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let forked = children.iter().filter(|c| c.is_ok()).count();
        go.set();
        for c in children.into_iter().flatten() {
            assert_eq!(c.join(), Ok(7));
        }
        assert_eq!(forked, 3, "one child per free slot, none uncounted");
        taken.into_iter().for_each(free);
        assert_eq!(crate::spawn(|| 7u8).unwrap().join(), Ok(7));
    }

    /// A producer that has claimed cells but not published them (mid-`send`: here, stalled
    /// inside the encoder) leaves receivers waiting: `recv_timeout` times out instead of
    /// hanging, and the message arrives once published.
    #[test]
    fn a_claimed_unpublished_message_times_out_then_arrives() {
        let (tx, rx) = channel::<u64>(4).unwrap();
        let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let chan = tx.chan.clone();
        let writer = std::thread::spawn(move || {
            let size = codec::encoded_size(&7u64).unwrap();
            let pushed = chan.ring().try_push(
                size,
                chan.cap,
                &SendWords::default(),
                &AtomicU64::new(0),
                |buf| {
                    claimed_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    codec::encode_into(&7u64, buf).is_ok_and(|n| n == size)
                },
            );
            chan.notify(&chan.hdr().recv_wait);
            pushed
        });
        claimed_rx.recv().unwrap();
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        go_tx.send(()).unwrap();
        assert_eq!(writer.join().unwrap(), Ok(true));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
        drop(tx);
    }

    /// An unbounded channel whose ring is full (here a small explicit budget; by default it
    /// is a reservation sized to the machine) acts as a full bounded channel: `try_send`
    /// says `Full`, `send_timeout` times out (neither loses the value), and room comes back
    /// as messages are received.
    #[test]
    fn an_unbounded_channel_with_a_full_ring_acts_as_full() {
        let (tx, rx) = ChannelBuilder::new(None)
            .byte_budget(4096)
            .build::<Vec<u8>>()
            .unwrap();
        let mut sent = 0;
        while tx.try_send(vec![7; 1000]).is_ok() {
            sent += 1;
        }
        assert!(sent >= 3, "{sent} sent");
        match tx.try_send(vec![8; 1000]) {
            Err(TrySendError::Full(v)) => assert_eq!(v, vec![8; 1000]),
            other => panic!("{other:?}"),
        }
        match tx.send_timeout(vec![9; 1000], Duration::from_millis(30)) {
            Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, vec![9; 1000]),
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.recv().unwrap(), vec![7; 1000]);
        tx.try_send(vec![8; 1000]).unwrap();
        assert_eq!(rx.len(), sent);
    }

    #[test]
    fn capacity_zero_is_an_error() {
        let e = channel::<u8>(0).unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::InvalidArgument);
    }

    #[test]
    fn bounded_fifo_full_and_len() {
        let (tx, rx) = channel::<u64>(3).unwrap();
        assert_eq!(tx.capacity(), Some(3));
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.try_send(9).unwrap_err().is_full());
        assert_eq!(rx.len(), 3);
        for i in 0..3 {
            assert_eq!(rx.try_recv().unwrap(), i);
        }
        assert!(rx.try_recv().unwrap_err().is_empty());
    }

    #[test]
    fn disconnect_both_ways() {
        let (tx, rx) = channel::<String>(4).unwrap();
        tx.send("a".into()).unwrap();
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.recv().unwrap(), "a");
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        let (tx, rx) = channel::<String>(4).unwrap();
        drop(rx);
        assert!(tx.send("x".into()).unwrap_err().is_disconnected());
    }

    #[test]
    fn close_drains_then_disconnects() {
        let (tx, rx) = unbounded::<u32>().unwrap();
        assert_eq!(tx.capacity(), None);
        tx.send(1).unwrap();
        tx.close();
        assert!(tx.send(2).unwrap_err().is_disconnected());
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn too_large_is_refused_with_the_value() {
        let (tx, rx) = ChannelBuilder::new(Some(2))
            .byte_budget(4096)
            .build::<Vec<u8>>()
            .unwrap();
        let big = vec![1u8; 10_000];
        match tx.send(big) {
            Err(SendError::Invalid(v, MessageError::TooLarge { size, limit })) => {
                assert_eq!(v.len(), 10_000);
                assert!(size > limit);
            }
            other => panic!("{other:?}"),
        }
        // A message of the whole budget is still delivered.
        let fits = vec![2u8; 4096 - 3];
        tx.send(fits.clone()).unwrap();
        assert_eq!(rx.recv().unwrap(), fits);
    }

    #[test]
    fn undecodable_is_an_error_and_consumed() {
        let (tx, _rx) = channel::<u64>(4).unwrap();
        // Same channel seen as another type: the bytes of a u64 are not a String.
        let rx2: Receiver<String> = Receiver {
            gen_stamp: tx.chan.add_new(false),
            chan: tx.chan.clone(),
            _m: PhantomData,
        };
        tx.send(u64::MAX).unwrap();
        assert!(matches!(
            rx2.try_recv(),
            Err(TryRecvError::Invalid(MessageError::Decode(_)))
        ));
        assert!(rx2.try_recv().unwrap_err().is_empty());
    }

    #[test]
    fn timeouts() {
        let (tx, rx) = channel::<u8>(1).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(30))
                .unwrap_err()
                .is_timeout()
        );
        tx.send(1).unwrap();
        assert!(
            tx.send_timeout(2, Duration::from_millis(30))
                .unwrap_err()
                .is_timeout()
        );
    }

    #[test]
    fn threads_mpmc_counts_and_sums() {
        let (tx, rx) = channel::<u64>(16).unwrap();
        let per = 20_000u64;
        let mut hs = Vec::new();
        for p in 0..2 {
            let tx = tx.clone();
            hs.push(std::thread::spawn(move || {
                for i in 0..per {
                    tx.send(p * per + i).unwrap();
                }
                0
            }));
        }
        drop(tx);
        for _ in 0..2 {
            let rx = rx.clone();
            hs.push(std::thread::spawn(move || rx.iter().sum::<u64>()));
        }
        drop(rx);
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let n = 2 * per;
        assert_eq!(total, n * (n - 1) / 2);
    }

    #[test]
    fn async_recv_is_woken_by_a_thread() {
        let (tx, rx) = channel::<u32>(2).unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        let v = futures_lite::future::block_on(rx.recv_async()).unwrap();
        assert_eq!(v, 5);
        h.join().unwrap();
        assert_eq!(
            futures_lite::future::block_on(rx.recv_async()),
            Err(RecvError::Disconnected)
        );
    }

    #[test]
    fn async_send_waits_for_room() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        tx.send(1).unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            (rx.recv().unwrap(), rx.recv().unwrap())
        });
        futures_lite::future::block_on(tx.send_async(2)).unwrap();
        assert_eq!(h.join().unwrap(), (1, 2));
    }
}
