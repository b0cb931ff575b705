//! Result slots: shared memory through which a worker hands a job's results to the parent
//! without copying them through its socket.
//!
//! Each worker has its own [`Slots`]: one anonymous `MAP_SHARED` mapping of [`COUNT`] slots
//! of [`SLOT`] bytes, made before the worker is forked, so both processes map the same
//! pages. When the parent sends a job it claims a free slot of that worker (if any) and
//! names it in the job frame; a worker whose results fit (and are big enough to be worth it)
//! writes them into that slot and sends only their length through the socket; otherwise it
//! sends them inline, as without slots. The parent decodes straight from the slot, which
//! saves the socket's two copies (worker → kernel → parent) of every chunk's results.
//!
//! # Protocol (who may touch a slot when)
//!
//! - A slot is *claimed* by the parent ([`Slots::claim`], a flag only the parent touches)
//!   before it is named in a job frame, and *released* when the [`SlotGuard`] drops: after
//!   the results were decoded, or when the job ended without results in the slot (inline
//!   results, the worker died, the job was cancelled).
//! - The worker writes a slot only while running a job that names it, and never after
//!   sending that job's result frame. A worker gets its next job only after that frame was
//!   read, and the next job names a slot that is not claimed, so never one whose results the
//!   parent still reads.
//! - A dead worker writes nothing: jobs of a worker end (and their guards drop) only once the
//!   worker is known dead (reaped) or has sent its result.
//!
//! The bytes are still untrusted (user code runs in the worker): the announced length is
//! checked against [`SLOT`], and the decoder validates everything it reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::shm::Region;

/// Bytes per slot.
pub(crate) const SLOT: usize = 2 << 20;
/// Slots per worker: two, so a worker can fill one while the parent still decodes the other.
pub(crate) const COUNT: usize = 2;
/// Named in a job frame when no slot was claimed: results go inline.
pub(crate) const NONE: u8 = u8::MAX;
/// Smallest result body a worker puts in a slot; below it the socket copy is cheaper than
/// touching shared pages.
pub(crate) const MIN_SHARED: usize = 16 << 10;

/// One worker's result slots (see the module docs).
#[derive(Debug)]
pub(crate) struct Slots {
    region: Region,
    /// Claimed by the parent; only the parent's threads touch these.
    busy: [AtomicBool; COUNT],
}

impl Slots {
    /// Maps a worker's slots (lazily committed: only pages written take memory). `None` if
    /// the mapping fails: the worker then gets its results inline.
    pub(crate) fn new() -> Option<Arc<Self>> {
        let region = Region::new(SLOT * COUNT, true).ok()?;
        Some(Arc::new(Self {
            region,
            busy: [const { AtomicBool::new(false) }; COUNT],
        }))
    }

    /// Claims a free slot for a job about to be sent; `None` if both are in use.
    pub(crate) fn claim(self: &Arc<Self>) -> Option<SlotGuard> {
        (0..COUNT).find_map(|index| {
            // Acquire: pairs with the Release in `SlotGuard::drop`, so the parent's reads of
            // the slot's previous results happen before the slot is named to the worker again.
            (!self.busy[index].swap(true, Ordering::Acquire)).then(|| SlotGuard {
                slots: Arc::clone(self),
                index,
            })
        })
    }

    /// Worker side: the start of slot `index`, or `None` for an invalid index.
    pub(crate) fn slot_ptr(&self, index: u8) -> Option<*mut u8> {
        let index = usize::from(index);
        // SAFETY: `index < COUNT`, so the offset is inside the mapping of `SLOT * COUNT` bytes.
        (index < COUNT).then(|| unsafe { self.region.base().add(index * SLOT) })
    }
}

/// A slot claimed by the parent for one job; released on drop.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    slots: Arc<Slots>,
    index: usize,
}

impl SlotGuard {
    /// The index named in the job frame.
    pub(crate) fn index(&self) -> u8 {
        self.index as u8
    }

    /// The first `len` bytes of the slot (the results the worker announced), or `None` if
    /// `len` is more than a slot holds.
    pub(crate) fn bytes(&self, len: usize) -> Option<&[u8]> {
        if len > SLOT {
            return None;
        }
        let base = self.slots.slot_ptr(self.index())?;
        // SAFETY: `len <= SLOT` bytes from the start of a slot are inside the mapping, which
        // lives as long as `self.slots`. Per the protocol (module docs) the worker wrote
        // these bytes before sending the frame that announced them and writes this slot
        // again only for a job that names it, which cannot happen while this guard (the
        // claim) lives; the slice is borrowed from `self`, so it cannot outlive the claim.
        Some(unsafe { std::slice::from_raw_parts(base, len) })
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // Release: the reads of the slot through `bytes` happen before a later `claim`.
        self.slots.busy[self.index].store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_released_on_drop() {
        let s = Slots::new().expect("mapping");
        let a = s.claim().expect("first");
        let b = s.claim().expect("second");
        assert_ne!(a.index(), b.index());
        assert!(s.claim().is_none(), "both in use");
        let freed = a.index();
        drop(a);
        let c = s.claim().expect("released");
        assert_eq!(c.index(), freed);
        assert!(c.bytes(SLOT).is_some());
        assert!(c.bytes(SLOT + 1).is_none());
        assert!(s.slot_ptr(NONE).is_none());
        drop((b, c));
    }

    #[test]
    fn a_forked_child_writes_what_the_parent_reads() {
        let s = Slots::new().expect("mapping");
        let g = s.claim().expect("slot");
        let ptr = s.slot_ptr(g.index()).expect("valid") as usize;
        // SAFETY: the child writes into the shared slot and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: `ptr` is the slot's start in the inherited shared mapping.
            unsafe { std::ptr::copy_nonoverlapping(b"hello".as_ptr(), ptr as *mut u8, 5) };
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(g.bytes(5), Some(&b"hello"[..]));
    }
}
