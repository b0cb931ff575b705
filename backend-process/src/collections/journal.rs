//! The lock holder's transaction: the undo journal in shared memory.
//!
//! The journal is an array of `(address, old value)` entries after the header and a length
//! word in the header. [`Txn::set`] appends an entry (entry first, then the length, then the
//! write: three `Release` stores, in that order for the compiler and the CPU), so a crash at
//! any point leaves either an entry the length does not cover (its write not made) or an entry
//! whose old value restores the word. [`Txn::commit`] runs the deferred frees, then stores the
//! length 0: the one store that commits. A holder that finds a non-zero length rolls the
//! entries back in reverse; rollback is idempotent, so a holder killed while rolling back is
//! rolled back again by the next.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{HEADER_BYTES, HEAP_START, JOURNAL_CAP, JOURNAL_OFF, Store};
use crate::lock::Acquired;

/// One journal entry: `#[repr(C)]`, two words. Meaningful only below the header's
/// `journal_len`; `addr` is a byte offset in the reservation (checked before a rollback uses
/// it), `old` the word's value before the transaction wrote it.
#[repr(C)]
struct Entry {
    addr: AtomicU64,
    old: AtomicU64,
}

/// The most frees one transaction defers.
const MAX_DEFERRED: usize = 4;

#[cfg(test)]
thread_local! {
    /// Tests: a transaction begun on this thread stops ("crashes") at its `k`-th crash point:
    /// the points are each journaled write and each commit, counted over the `Txn`'s life
    /// (an operation that commits several steps has the points of all of them).
    pub(super) static CRASH_AT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// A transaction: the lock is held from [`Store::lock`] until the `Txn` drops. Dropped without
/// [`commit`](Txn::commit) (an error, or a panic unwinding), it rolls back what it wrote.
pub(crate) struct Txn<'a> {
    pub(super) s: &'a Store,
    /// Header words already journaled in this transaction (bit `i`: word `i`).
    saved: u64,
    /// Deferred frees: `(block offset, class)`, the first `nfrees`. An operation defers at
    /// most two (an old entry and an old root), so a fixed array, not a heap allocation.
    frees: [(usize, usize); MAX_DEFERRED],
    nfrees: usize,
    /// Set by a simulated crash (tests): drop neither rolls back nor unlocks, as a SIGKILL.
    #[cfg(test)]
    pub(super) crashed: bool,
    /// Tests: the crash point to stop at (see `CRASH_AT`).
    #[cfg(test)]
    crash_after: Option<usize>,
    /// Tests: crash points passed so far.
    #[cfg(test)]
    points: usize,
}

impl<'a> Txn<'a> {
    /// Starts a transaction with the lock just taken: rolls back a journal left behind.
    #[inline]
    pub(super) fn begin(s: &'a Store, how: Acquired) -> Self {
        let t = Self {
            s,
            saved: 0,
            frees: [(0, 0); MAX_DEFERRED],
            nfrees: 0,
            #[cfg(test)]
            crashed: false,
            #[cfg(test)]
            crash_after: CRASH_AT.with(std::cell::Cell::get),
            #[cfg(test)]
            points: 0,
        };
        // Relaxed: under the lock. Checked on every acquisition, not only `OwnerDied`: it costs
        // one load of a line the lock just brought in, and a journal left behind is rolled
        // back however the lock was handed over.
        if how == Acquired::OwnerDied || s.hdr().journal_len.load(Ordering::Relaxed) != 0 {
            t.rollback();
        }
        t
    }

    fn entry(&self, i: usize) -> &Entry {
        debug_assert!(i < JOURNAL_CAP);
        let off = JOURNAL_OFF + i * size_of::<Entry>();
        // SAFETY: `i < JOURNAL_CAP`, so the entry lies in the journal area inside the
        // reservation (`JOURNAL_OFF + JOURNAL_CAP * 16 <= HEAP_START`), 8-aligned; `Entry` is
        // two atomics, valid for any bits.
        unsafe { &*std::ptr::from_ref(self.s.word(off)).cast::<Entry>() }
    }

    /// Restores every journaled word, newest first, then empties the journal.
    pub(super) fn rollback(&self) {
        let h = self.s.hdr();
        // Relaxed (every load here): under the lock. Untrusted length: clamp to the journal's
        // capacity.
        let n = (h.journal_len.load(Ordering::Relaxed) as usize).min(JOURNAL_CAP);
        for i in (0..n).rev() {
            let e = self.entry(i);
            let addr = e.addr.load(Ordering::Relaxed);
            let old = e.old.load(Ordering::Relaxed);
            // Only words a transaction may write: header words past the lock and the journal
            // length, or heap words. Anything else is corruption, skipped.
            let ok = addr % 8 == 0
                && ((16..HEADER_BYTES as u64).contains(&addr)
                    || (addr >= HEAP_START as u64 && addr + 8 <= self.s.end() as u64));
            if ok {
                // Release: see the module docs of `collections` (store order).
                self.s.word(addr as usize).store(old, Ordering::Release);
            }
        }
        // Release: every restore above is stored before the journal reads as empty.
        h.journal_len.store(0, Ordering::Release);
    }

    fn log(&mut self, off: usize, old: u64) {
        let h = self.s.hdr();
        // Relaxed: under the lock.
        let n = h.journal_len.load(Ordering::Relaxed) as usize;
        assert!(n < JOURNAL_CAP, "collection journal overflow (a bug)");
        #[cfg(test)]
        self.crash_point();
        let e = self.entry(n);
        // Release (all three): the entry is stored before the length that covers it, and the
        // length before the write it protects (see the module docs).
        e.addr.store(off as u64, Ordering::Release);
        e.old.store(old, Ordering::Release);
        h.journal_len.store(n as u64 + 1, Ordering::Release);
    }

    /// Tests: stops here ("crashes", as a SIGKILL: no rollback, no unlock) at the chosen point.
    #[cfg(test)]
    fn crash_point(&mut self) {
        if self.crash_after == Some(self.points) {
            self.crashed = true;
            panic!("simulated crash at point {}", self.points);
        }
        self.points += 1;
    }

    /// Undoes what this transaction wrote (the lock stays held; the transaction can go on).
    pub(super) fn abort(&mut self) {
        self.rollback();
        self.saved = 0;
        self.nfrees = 0;
    }

    /// Writes `val` to the metadata word at `off` (a header word, or a heap word the caller
    /// checked), journaling its old value first.
    #[inline]
    pub(super) fn set(&mut self, off: usize, val: u64) {
        let w = self.s.word(off);
        // Relaxed: under the lock.
        let old = w.load(Ordering::Relaxed);
        if off < HEADER_BYTES {
            let bit = 1u64 << (off / 8);
            if self.saved & bit == 0 {
                self.log(off, old);
                self.saved |= bit;
            }
        } else {
            self.log(off, old);
        }
        // Release: after the journal entry (see the module docs).
        w.store(val, Ordering::Release);
    }

    /// Reads the metadata word at `off` (a header word, or a heap word the caller checked).
    #[inline]
    pub(super) fn get(&self, off: usize) -> u64 {
        // Relaxed: under the lock.
        self.s.word(off).load(Ordering::Relaxed)
    }

    /// Runs the deferred frees and commits: the journal length back to 0.
    pub(super) fn commit(&mut self) {
        for i in 0..std::mem::take(&mut self.nfrees) {
            let (off, class) = self.frees[i];
            self.free_now(off, class);
        }
        #[cfg(test)]
        self.crash_point();
        // Release: every write of the transaction is stored before the commit.
        self.s.hdr().journal_len.store(0, Ordering::Release);
        self.saved = 0;
    }

    /// Frees the block at `off` of `class` when the transaction commits.
    pub(super) fn free(&mut self, off: usize, class: usize) {
        assert!(
            self.nfrees < MAX_DEFERRED,
            "too many deferred frees (a bug)"
        );
        self.frees[self.nfrees] = (off, class);
        self.nfrees += 1;
    }

    /// Drops the deferred frees (the blocks are freed another way: see `Txn::reset`).
    pub(super) fn forget_frees(&mut self) {
        self.nfrees = 0;
    }

    /// `true` once a free was deferred (no allocation may follow).
    pub(super) fn has_frees(&self) -> bool {
        self.nfrees != 0
    }

    /// A heap word's atomic, for plain (unjournaled) writes into blocks this transaction
    /// allocated.
    #[inline]
    pub(super) fn fresh_word(&self, off: usize) -> &'a AtomicU64 {
        self.s.word(off)
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        #[cfg(test)]
        if self.crashed {
            return;
        }
        // Relaxed: under the lock.
        if self.s.hdr().journal_len.load(Ordering::Relaxed) != 0 {
            self.rollback();
        }
        self.s.hdr().lock.unlock();
    }
}
