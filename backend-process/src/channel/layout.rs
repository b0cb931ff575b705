//! The shared layout of a channel's region ([`ChanHeader`], its per-process [`ProcSlot`]s)
//! and the process-local [`Chan`] that maps it: creating and mapping a region, and giving the
//! slot back when the last handle in a process goes.

use super::*;

/// Default byte budget of a bounded channel: `capacity * 256` bytes, at least 1 MiB, at most
/// 256 MiB. Only touched pages take memory.
pub(super) const MIN_BUDGET: usize = 1 << 20;
pub(super) const MAX_BUDGET: usize = 256 << 20;
/// The smallest ring an unbounded channel settles for when the OS refuses larger mappings.
pub(super) const MIN_UNBOUNDED_RING: usize = 64 << 20;
/// The largest ring of an unbounded channel: 1 GiB of cells. The ring can address more (a skip
/// record spans up to 2^30 cells), but a channel that never empties walks its whole ring and
/// keeps those pages committed (see [`unbounded`]): this bounds what such a channel can hold
/// resident to the ring and its control lines, 2 GiB.
pub(super) const MAX_UNBOUNDED_RING: u64 = 1 << 30;
/// The soft end of an unbounded channel's ring, in cells (1 MiB of records): while less is
/// queued, the ring keeps to its first pages (see `Ring::with_soft_end`).
pub(super) const UNBOUNDED_SOFT_END: u64 = (MIN_BUDGET / CELL) as u64;

/// The futex word one side's sleepers wait on. `#[repr(C)]`; all-zero: nobody sleeps.
///
/// Bit 0 ([`SLEEPERS`]) is a flag: someone may sleep on the word (set by sleepers). The other
/// bits are a sequence number. A notifier that sees the flag adds 1, which clears the flag
/// and bumps the sequence in one atomic step, then wakes everyone; `wake_everyone` adds 2
/// (bumps the sequence, keeps the flag). A sleeper sleeps on the value it set the flag in,
/// so any bump in between makes its futex wait return at once.
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct WaitWords {
    pub(super) word: AtomicU32,
    pub(super) _pad: u32,
}

/// Connection state: totals of the per-process counts, and the `close` flag.
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct Conn {
    /// Invariant: the sum of `senders` over live and pending slots (reaping keeps it so).
    pub(super) senders: AtomicU32,
    /// Same, for receivers.
    pub(super) receivers: AtomicU32,
    /// Non-zero once `close()` was called.
    pub(super) closed: AtomicU32,
    /// Named channels only: [`SEEN_SENDER`] once a sender was counted, [`SEEN_RECEIVER`]
    /// once a receiver was. A side is gone only once it was seen (so either program may
    /// start first). Set (SeqCst) *after* the count that it reports was raised, and read
    /// (SeqCst) *before* that count is read again: a reader that sees the bit sees the count.
    pub(super) seen: AtomicU32,
}

/// `Conn::seen` bits.
pub(super) const SEEN_SENDER: u32 = 1;
pub(super) const SEEN_RECEIVER: u32 = 2;

pub(super) const SLOT_FREE: u32 = 0;
/// `pid` value while a slot is being claimed or reaped.
pub(super) const SLOT_BUSY: u32 = u32::MAX;

/// One process's registration. `pid == 0`: free. `pending != 0`: reserved by a parent for a
/// child being forked; `pid`/`start` still name the parent (so the slot is reaped if the parent
/// dies before the child takes it over). `pending` is the reservation's token
/// (`registry::reservation`, high bit set) until the parent learns the child's pid, then that
/// pid.
///
/// Invariant: the slot contributes `senders + (engaged ? 0 : inh_senders) + travel senders`
/// to `conn.senders` (same for receivers). Aligned to a cache line, so no two processes write
/// one line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct ProcSlot {
    pub(super) pid: AtomicU32,
    pub(super) pending: AtomicU32,
    /// Non-zero once the process used one of its inherited handles (or disowned them).
    pub(super) engaged: AtomicU32,
    /// Ends of this channel serialized in this process and not deserialized yet (handles in
    /// flight, `channel/travel.rs`): senders in the low 16 bits, receivers in the high 16.
    /// Counted in `conn`; taken over (decremented by CAS) by the first deserialization, or
    /// swapped to zero by the reaper of a dead process — exactly one of them gets each unit.
    pub(super) travel: AtomicU32,
    /// Handles created or adopted in this process.
    pub(super) senders: AtomicU32,
    pub(super) receivers: AtomicU32,
    /// Handles copied in by fork and not used yet.
    pub(super) inh_senders: AtomicU32,
    pub(super) inh_receivers: AtomicU32,
    pub(super) start: AtomicU64,
    /// When a pending slot was reserved (`CLOCK_MONOTONIC` ns, system-wide).
    pub(super) pending_since: AtomicU64,
    /// The claim words of this process's receiving threads, one per [`claims`] index:
    /// `h + 1` from before the thread claims the ring record at `h` until it claims another
    /// (zero after a claim it lost, when it finds nothing else to claim).
    pub(super) claims: [AtomicU64; claims::WORDS],
    /// The same for sending threads: what a thread may be in the middle of inside `send`
    /// (see `Ring::recover_send`).
    pub(super) sends: [SendWords; claims::WORDS],
    /// Sends and receives under way in threads of this process that have no claim words.
    pub(super) unclaimed: AtomicU32,
    /// Non-zero once the process holds the lock on this slot's byte of the channel's file
    /// (`crate::holder`), which `exec` and death release: then a live pid whose byte is no
    /// longer locked is a process that exec'd another program (`Chan::holder_gone`). Zero
    /// from the claim (`claim_slot`) until the lock is taken; zero for good if it could not
    /// be (the process is then told alive by its pid alone). Stored with Release after the
    /// lock was taken, loaded with Acquire before the lock is tested.
    pub(super) holder_lock: AtomicU32,
}

impl ProcSlot {
    /// What the slot contributes to the totals.
    pub(super) fn counted(&self) -> (u32, u32) {
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
pub(super) struct ChanHeader {
    /// The ring, with the message counts that bound the capacity.
    pub(super) ring: RingHeader,
    pub(super) recv_wait: CachePadded<WaitWords>,
    pub(super) send_wait: CachePadded<WaitWords>,
    pub(super) conn: CachePadded<Conn>,
    /// One more than the highest slot index ever claimed (slots are claimed lowest first), so
    /// scans read only the slots in use and never commit the pages of the others.
    pub(super) used: AtomicU32,
    pub(super) procs: [ProcSlot; MAX_PROCESSES],
}

impl ChanHeader {
    /// The slots that were ever claimed. Relaxed: a slot claimed after the load is a live
    /// process a reaper has nothing to do for; `recover_claims` loads it after an Acquire of
    /// `head`, so it sees every slot whose claims that shows.
    pub(super) fn used_slots(&self) -> &[ProcSlot] {
        let n = self.used.load(Ordering::Relaxed) as usize;
        &self.procs[..n.min(MAX_PROCESSES)]
    }
}

// SAFETY: repr(C); only atomics (ring header, padded atomics, slots); all-zero is valid.
unsafe impl ShmSafe for ChanHeader {}

/// The process-private state shared by every handle of one channel in this process.
#[derive(Debug)]
pub(crate) struct Chan {
    pub(super) shm: ShmBox<ChanHeader>,
    /// The ring's `cells` control lines and data cells inside `shm`, located (and checked)
    /// once in `new_chan`: building the ring's view is on every poll.
    pub(super) ctl: std::ptr::NonNull<CellCtl>,
    pub(super) cells: usize,
    pub(super) data: std::ptr::NonNull<u8>,
    /// `None`: unbounded.
    pub(super) cap: Option<u64>,
    /// The ring's soft end in cells (see `Ring::with_soft_end`): all of it for a bounded
    /// channel, [`UNBOUNDED_SOFT_END`] for an unbounded one's large reservation.
    pub(super) soft_end: u64,
    pub(super) max_msg: usize,
    /// Index of this process's slot (rewritten in a forked child).
    pub(super) slot: AtomicU32,
    /// The process whose open file description the memory file's descriptor is (the one
    /// holder locks go through, `crate::holder`): the process that mapped the channel, until
    /// a forked child opens the file anew for itself (`registry::fork_child`). A forked copy
    /// of this `Chan` that was not reopened names the parent: it takes and tests no locks.
    pub(super) file_owner: AtomicU32,
    /// Handles of each kind held in this process.
    pub(super) senders: AtomicU32,
    pub(super) receivers: AtomicU32,
    /// Slot reserved by `fork_prepare` for the child (`u32::MAX`: none).
    pub(super) child_slot: AtomicU32,
    pub(super) child_senders: AtomicU32,
    pub(super) child_receivers: AtomicU32,
    /// Last time (ns since `EPOCH`) this process looked for dead peers.
    pub(super) last_reap: AtomicU64,
    /// Polls before sleeping, learned (see `Backoff`).
    pub(super) spin_polls: AtomicU32,
    /// This process's cached copies of the ring's completion line.
    pub(super) ring_cache: ring::Cache,
    /// Only one CPU is usable: never spin.
    pub(super) single_cpu: bool,
    /// A named channel (see `Conn::seen`).
    pub(super) named: bool,
}

// SAFETY: `ctl` and `data` point into the shared mapping `shm` owns, which every thread of
// this process may access through the ring's protocol (atomics and the stamp hand-over);
// everything else in `Chan` is `Send + Sync`.
unsafe impl Send for Chan {}

// SAFETY: as above.
unsafe impl Sync for Chan {}

impl Chan {
    #[inline]
    pub(super) fn hdr(&self) -> &ChanHeader {
        self.shm.header()
    }

    #[inline]
    pub(super) fn ring(&self) -> Ring<'_> {
        // SAFETY: `ctl` points at `cells` `CellCtl`s inside the mapping `shm` owns (located
        // with `slice_at`'s checks in `new_chan`), alive as long as `self`.
        let ctl = unsafe { std::slice::from_raw_parts(self.ctl.as_ptr(), self.cells) };
        // SAFETY: `data` is `cells * CELL` bytes inside the same mapping (checked in
        // `new_chan`); they are only accessed through rings over this header and these cells.
        unsafe { Ring::new(&self.hdr().ring, ctl, self.data.as_ptr(), &self.ring_cache) }
            .with_soft_end(self.soft_end)
    }

    pub(super) fn my_slot(&self) -> &ProcSlot {
        // Relaxed: written only by this process (creation, or the atfork child handler).
        let i = self.slot.load(Ordering::Relaxed) as usize;
        &self.hdr().procs[i % MAX_PROCESSES]
    }
}

pub(super) fn new_chan(capacity: Option<usize>, budget: Option<usize>) -> Result<Chan, Error> {
    if let Some(capacity) = capacity {
        uniconc_core::validate::channel_capacity(capacity)?;
    }
    let budget = match (budget, capacity) {
        (Some(b), _) => b,
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
    map_chan(capacity, budget_ring(budget)?, u64::MAX)
}

/// The ring bytes of a channel given a byte budget of `budget`: rounded up to a power of two,
/// at least 4 KiB; `InvalidArgument` past the codec's limit.
pub(super) fn budget_ring(budget: usize) -> Result<usize, Error> {
    budget
        .max(4096)
        .checked_next_power_of_two()
        .filter(|b| *b <= codec::LIMIT)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "a channel byte budget is at most {} bytes",
                codec::LIMIT
            ))
        })
}

/// Ring bytes reserved for an unbounded channel: the largest power of two at most half of
/// RAM plus swap (so the ring, with its control lines as large again, spans at most the
/// machine's memory), and at most an eighth of `RLIMIT_AS` when that is set; within
/// [`MIN_UNBOUNDED_RING`] ..= [`MAX_UNBOUNDED_RING`].
pub(super) fn unbounded_ring_bytes() -> usize {
    let mut want = shm::machine_memory().map_or(MIN_UNBOUNDED_RING as u64, |m| m / 2);
    if let Some(limit) = shm::address_space_limit() {
        want = want.min(limit / 8);
    }
    let want = want.clamp(MIN_UNBOUNDED_RING as u64, MAX_UNBOUNDED_RING);
    // The largest power of two at most `want` (itself at least 64 MiB).
    let bytes = 1u64 << (63 - want.leading_zeros());
    usize::try_from(bytes).unwrap_or(MIN_UNBOUNDED_RING)
}

/// The offsets of a channel's control lines and data, and its region's length, for a ring of
/// `ring_bytes` (a power of two, at least one cell).
pub(super) fn chan_layout(ring_bytes: usize) -> (usize, usize, usize) {
    let cells = ring_bytes / CELL;
    let ctl_off = align_up(size_of::<ChanHeader>(), 64);
    let data_off = align_up(ctl_off + cells * size_of::<CellCtl>(), 4096);
    (ctl_off, data_off, data_off + cells * CELL)
}

/// Maps a channel whose ring holds `ring_bytes` (a power of two, at least one cell) with its
/// soft end at `soft_end` cells (clamped to the ring).
pub(super) fn map_chan(
    capacity: Option<usize>,
    ring_bytes: usize,
    soft_end: u64,
) -> Result<Chan, Error> {
    let (.., len) = chan_layout(ring_bytes);
    let shm = ShmBox::<ChanHeader>::new(len, true)?;
    let chan = chan_on(shm, capacity, ring_bytes, soft_end, false);
    let slot = claim_slot(chan.hdr(), Identity::me(), false).expect("a new channel has free slots");
    chan.slot.store(slot as u32, Ordering::Relaxed);
    chan.hold_slot(slot);
    Ok(chan)
}

/// The process-local `Chan` over a mapped region of `chan_layout(ring_bytes)` bytes, with no
/// process slot yet (`slot` is `u32::MAX` until the caller claims one).
pub(super) fn chan_on(
    shm: ShmBox<ChanHeader>,
    capacity: Option<usize>,
    ring_bytes: usize,
    soft_end: u64,
    named: bool,
) -> Chan {
    let cells = ring_bytes / CELL;
    let (ctl_off, data_off, _) = chan_layout(ring_bytes);
    procs::install_fork_handlers();
    let max_msg = (cells * CELL).min(ring::MAX_RECORD).min(codec::LIMIT);
    let ctl = std::ptr::NonNull::from(shm.region().slice_at::<CellCtl>(ctl_off, cells)).cast();
    assert!(data_off + cells * CELL <= shm.region().len(), "layout");
    // SAFETY: `data_off < len`, inside the mapping (just checked).
    let data = std::ptr::NonNull::new(unsafe { shm.region().base().add(data_off) })
        .expect("a mapping is not at address 0");
    Chan {
        shm,
        ctl,
        cells,
        data,
        cap: capacity.map(|c| c as u64),
        soft_end: soft_end.min(cells as u64),
        max_msg,
        slot: AtomicU32::new(u32::MAX),
        file_owner: AtomicU32::new(procs::my_pid()),
        senders: AtomicU32::new(0),
        receivers: AtomicU32::new(0),
        child_slot: AtomicU32::new(u32::MAX),
        child_senders: AtomicU32::new(0),
        child_receivers: AtomicU32::new(0),
        last_reap: AtomicU64::new(0),
        spin_polls: AtomicU32::new(Backoff::MAX_POLLS),
        ring_cache: ring::Cache::default(),
        single_cpu: std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
        named,
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        registry::unregister(self);
        if self.slot.load(Ordering::Relaxed) as usize >= MAX_PROCESSES {
            return; // never claimed one (a named open that failed)
        }
        // Every handle is gone from this process: give the slot back. A pending child slot
        // (fork in progress) is not ours to free.
        let slot = self.my_slot();
        if slot.senders.load(Ordering::Relaxed) == 0
            && slot.receivers.load(Ordering::Relaxed) == 0
            && slot.travel.load(Ordering::Relaxed) == 0
        {
            slot.start.store(0, Ordering::Relaxed);
            // Release: the cleared fields are visible to the next claimer. A CAS from this
            // process's pid: a reaper that holds the slot (`SLOT_BUSY`) while it tests whether
            // this process exec'd gives it back itself, and a slot that is no longer this
            // process's is left alone.
            let _ = slot.pid.compare_exchange(
                procs::my_pid(),
                SLOT_FREE,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}
