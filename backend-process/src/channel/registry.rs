//! Keeps channel end counts right across `fork`, from the `pthread_atfork` handlers.

use super::*;
use crate::spin::SpinLock;

struct Registry {
    list: SpinLock<Vec<*const Chan>>,
}

// SAFETY: `list` is only accessed with its lock held; the pointers are to live `Chan`s
// (removed in `Chan::drop` under the lock before the memory is freed).
unsafe impl Sync for Registry {}

static REG: Registry = Registry {
    list: SpinLock::new(Vec::new()),
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
    REG.list.raw_lock(std::thread::yield_now);
}

fn unlock() {
    REG.list.raw_unlock();
}

/// What the fork handlers run for the channels ([`procs::register_fork_hooks`]).
static FORK_HOOKS: procs::ForkHooks = procs::ForkHooks {
    prepare: fork_prepare,
    parent: fork_parent,
    child: fork_child,
    room_for_child: room_for_child_or_why,
};

pub(crate) fn register(chan: &Arc<Chan>) {
    // Before the first channel joins the list (and outside the registry lock, which the
    // prepare hook takes after the fork handlers' own lock).
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| procs::register_fork_hooks(&FORK_HOOKS));
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
/// [`room_for_child`], with the reason for `fork_with` to report.
fn room_for_child_or_why() -> Result<(), String> {
    if room_for_child() {
        Ok(())
    } else {
        Err(format!(
            "a channel held by this process already counts {MAX_PROCESSES} processes \
             (uniconc_process::MAX_PROCESSES); a child could not be counted"
        ))
    }
}

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

/// Forks prepared by this process, for the reservation tokens (`reservation`).
static FORKS: AtomicU32 = AtomicU32::new(0);

/// A pending slot's `pending` value for the fork being prepared: its high bit set (no pid
/// has it), then the fork's number in this process. [`note_child`] replaces it with the
/// child's pid once `fork` returns it.
pub(super) fn reservation() -> u32 {
    // Relaxed: a number, read under the registry lock by the forking thread.
    PENDING_TOKEN | (FORKS.load(Ordering::Relaxed) & !PENDING_TOKEN)
}

/// The bit of a reservation token (see [`reservation`]).
pub(super) const PENDING_TOKEN: u32 = 1 << 31;

thread_local! {
    /// The reservation token of the last fork this thread made (set by `fork_parent`).
    static LAST_FORK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Parent, after a `fork` of this crate's thread returned `child`: the slots reserved for it
/// (still pending: the child has not run its fork handler yet) record its pid, so a reaper
/// keeps them while it lives, however long it waits for a CPU, instead of reaping them after
/// `recover::PENDING_GRACE` and disconnecting a channel whose handles the child still holds.
/// A CAS from this fork's token, in slots naming this process: a slot the child took over,
/// or reaped and reserved again since (by any fork, of any thread), is left alone.
pub(crate) fn note_child(child: u32) {
    let token = LAST_FORK.get();
    if token == 0 {
        return;
    }
    let me = procs::my_pid();
    let _g = lock();
    // SAFETY: lock held; every pointer is a live `Chan` (see `Registry`).
    for &p in unsafe { &*REG.list.get() } {
        let chan = unsafe { &*p };
        for slot in chan.hdr().used_slots() {
            // Relaxed: a hint for reapers, who reap a pending slot only past its grace; the
            // pid is checked first so a token of another process's fork is never matched.
            if slot.pending.load(Ordering::Relaxed) == token
                && slot.pid.load(Ordering::Relaxed) == me
            {
                let _ = slot.pending.compare_exchange(
                    token,
                    child,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// Parent, before `fork`: reserve and count a slot for the child in every channel this
/// process holds handles of. The registry stays locked until `fork_parent`/`fork_child`.
pub(crate) fn fork_prepare() {
    raw_lock();
    // Relaxed: under the registry lock (see `reservation`).
    FORKS.fetch_add(1, Ordering::Relaxed);
    let to_exec = procs::is_forking_to_exec();
    let me = Identity {
        pid: procs::my_pid(),
        start: 0,
    };
    // SAFETY: lock held; every pointer is a live `Chan` (see `Registry`).
    for &p in unsafe { &*REG.list.get() } {
        let chan = unsafe { &*p };
        if to_exec {
            // The child only execs another program, which holds none of these handles:
            // count nothing for it (an unset `child_slot` makes `fork_child` take nothing).
            chan.child_slot.store(u32::MAX, Ordering::Relaxed);
            continue;
        }
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
    // Still under the registry lock: the token of the reservations `fork_prepare` made.
    LAST_FORK.set(reservation());
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
            // Not counted here (a fork that only execs, or no slot left): the descriptor
            // stays the parent's description, and `file_owner` (the parent) says so.
            continue;
        }
        // A description of the memory file of this process's own, for its holder lock: one
        // shared with the parent would keep the lock past this process's `exec` (and the
        // parent's lock past the parent's). If that fails, `file_owner` keeps naming the
        // parent: this process is told alive by its pid alone, and tests no peer's lock.
        let (fd, _) = chan.shm.region().file();
        if fd >= 0 && crate::holder::reopen_own(fd) {
            chan.file_owner.store(me.pid, Ordering::Relaxed);
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
            let fix = |have: u32, reserved: &AtomicU32, slot_c: &AtomicU32, total: &AtomicU32| {
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
            chan.hold_slot(i as usize);
        } else if let Some(j) = claim_slot(hdr, me, false) {
            // Our reservation was reaped: register afresh.
            let slot = &hdr.procs[j];
            slot.inh_senders.store(have_s, Ordering::Relaxed);
            slot.inh_receivers.store(have_r, Ordering::Relaxed);
            hdr.conn.senders.fetch_add(have_s, Ordering::Relaxed);
            hdr.conn.receivers.fetch_add(have_r, Ordering::Relaxed);
            chan.slot.store(j as u32, Ordering::Relaxed);
            chan.hold_slot(j);
        }
    }
    unlock();
}
