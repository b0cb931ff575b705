//! The allocator inside a collection's reservation: segregated free lists of power-of-two
//! size classes (16 B, 32 B, ... `16 << class`), a bump pointer into never-used space, and
//! splitting of a larger free block when both are empty.
//!
//! Chosen over first-fit with coalescing because every step is O(1) on the hot path (one
//! head to pop or push, or the bump pointer) and journals at most one header word per class
//! per transaction, which keeps the journal's size fixed even when a `clear` frees a million
//! blocks. The price: a block is up to twice its payload, and freed blocks are not merged, so
//! space freed in small classes serves only small (or equal) requests; a workload that frees
//! many small blocks and then wants large ones may report `Full` before the reservation is
//! used up. Space freed in any class is reused by later requests of that class or smaller
//! ones (through splitting of larger blocks), so a steady mix never runs out.
//!
//! A block's first word is its free-list link while it is free; allocated, it is unused (the
//! payload starts at byte 8). Popping needs no journal entry for the block (its link is only
//! read), and neither does freeing (an allocated block's link word means nothing in the
//! committed state): only the heads, `top` and `used` are journaled (once per transaction).

use std::sync::atomic::Ordering;

use uniconc_core::Error;

use super::{NCLASS, Txn, corrupt, word};

/// Bytes in a block of `class`.
#[inline]
pub(super) const fn class_size(class: usize) -> usize {
    16 << class
}

/// The smallest class whose blocks hold `bytes` (header word included); `None` if none does.
#[inline]
pub(super) fn class_of(bytes: usize) -> Option<usize> {
    let c = bytes.max(16).checked_next_power_of_two()?.trailing_zeros() as usize - 4;
    (c < NCLASS).then_some(c)
}

impl Txn<'_> {
    /// Allocates a block of `class`; returns its offset. `Full` if no space is left (nothing
    /// changed then).
    ///
    /// Must not be called after [`free`](Txn::free) in the same transaction (frees run at
    /// commit, so they cannot be reused by the same transaction anyway).
    pub(super) fn alloc(&mut self, class: usize) -> Result<usize, Error> {
        debug_assert!(!self.has_frees(), "alloc after free in one transaction");
        let size = class_size(class);
        if size > self.s.max_block() {
            return Err(Error::full(format!(
                "a block of {size} bytes is larger than the collection's heap"
            )));
        }
        let b = match self.pop(class)? {
            Some(b) => b,
            None => match self.bump(size)? {
                Some(b) => b,
                None => self.split(class)?.ok_or_else(|| {
                    Error::full(format!(
                        "the shared collection's {} bytes of reserved memory are used up",
                        self.s.end()
                    ))
                })?,
            },
        };
        let used = self.get(word::USED);
        self.set(word::USED, used.wrapping_add(size as u64));
        Ok(b)
    }

    /// Pops the head of `class`'s free list, checking it.
    fn pop(&mut self, class: usize) -> Result<Option<usize>, Error> {
        let head = self.get(word::head(class));
        if head == 0 {
            return Ok(None);
        }
        let b = self.block(head, class)?;
        // Relaxed: under the lock.
        let next = self.s.word(b).load(Ordering::Relaxed);
        if next != 0 {
            self.block(next, class)?;
        }
        self.set(word::head(class), next);
        Ok(Some(b))
    }

    /// Takes `size` bytes at the bump pointer, if they fit.
    fn bump(&mut self, size: usize) -> Result<Option<usize>, Error> {
        let top = self.get(word::TOP);
        let top = usize::try_from(top)
            .ok()
            .filter(|t| *t >= super::HEAP_START && *t <= self.s.end() && t % 16 == 0)
            .ok_or_else(|| corrupt("the heap's top"))?;
        if self.s.end() - top < size {
            return Ok(None);
        }
        self.set(word::TOP, (top + size) as u64);
        Ok(Some(top))
    }

    /// Takes a free block of a larger class and splits it down to `class`, pushing the upper
    /// halves onto the lists of the classes in between.
    fn split(&mut self, class: usize) -> Result<Option<usize>, Error> {
        for d in class + 1..NCLASS {
            if let Some(b) = self.pop(d)? {
                for j in (class..d).rev() {
                    let upper = b + class_size(j);
                    let head = self.get(word::head(j));
                    // Unjournaled: `upper` lies inside the block just popped, free memory in
                    // the committed state. Release: see the module docs of `collections`.
                    self.fresh_word(upper).store(head, Ordering::Release);
                    self.set(word::head(j), upper as u64);
                }
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Pushes the block onto its free list (at commit, after every allocation).
    pub(super) fn free_now(&mut self, off: usize, class: usize) {
        let head = self.get(word::head(class));
        // Unjournaled: the block is allocated in the committed state, where its link word
        // means nothing. Release: see the module docs of `collections`.
        self.fresh_word(off).store(head, Ordering::Release);
        self.set(word::head(class), off as u64);
        let used = self.get(word::USED);
        self.set(word::USED, used.wrapping_sub(class_size(class) as u64));
    }

    /// Empties the collection and its whole heap at once: every block is free again as
    /// never-used space (so an emptied collection has all its space back, unfragmented). A
    /// constant number of journaled header writes. Frees nothing else; runs no deferred free.
    /// Returns the old top, for [`release_pages`](Txn::release_pages).
    pub(super) fn reset(&mut self) -> usize {
        let top = self.get(word::TOP) as usize;
        self.forget_frees();
        for k in 0..NCLASS {
            if self.get(word::head(k)) != 0 {
                self.set(word::head(k), 0);
            }
        }
        for w in [
            word::INDEX_OFF,
            word::INDEX_CAP,
            word::LEN,
            word::TOMBS,
            word::USED,
        ] {
            self.set(w, 0);
        }
        self.set(word::TOP, super::HEAP_START as u64);
        top
    }

    /// Gives the pages of the heap back to the OS (after a [`reset`](Txn::reset) committed):
    /// they read as zeros when touched again. Best effort.
    pub(super) fn release_pages(&self, top: usize) {
        self.s.release_heap_pages(top);
    }

    /// `off` as a block of `class` if it is 16-aligned and inside the heap.
    #[inline]
    pub(super) fn block(&self, off: u64, class: usize) -> Result<usize, Error> {
        let b = self.s.heap_range(off, class_size(class) as u64)?;
        if b % 16 != 0 {
            return Err(corrupt("a misaligned block"));
        }
        Ok(b)
    }
}
