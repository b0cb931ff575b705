//! The shared-memory [`Map`] and [`List`]: one `MAP_SHARED` reservation per collection, no
//! server process, crash-consistent under one robust lock.
//!
//! # Files
//!
//! - `mod.rs`: the [`Store`] (the reservation and its bounds, kept in the process-private
//!   handle), the header layout, sizing of the reservation, encoding helpers.
//! - `journal.rs`: [`Txn`], the lock holder's transaction: the undo journal in shared memory,
//!   rollback of a dead holder's half-done operation, commit.
//! - `heap.rs`: the allocator inside the reservation (size-class free lists, bump pointer,
//!   splitting of larger free blocks).
//! - `map.rs`, `list.rs`: the two collections on top.
//! - `check.rs`: the consistency check (`Map::check`, `List::check`): a walk of every block.
//!
//! # Layout of a reservation
//!
//! ```text
//! [ Header: 64 words | journal: JOURNAL_CAP entries | .. | heap from HEAP_START .. end ]
//! ```
//!
//! Every piece of metadata is reachable from the header: the heap's bump pointer and free
//! lists, and the collection's root (`index_off`/`index_cap`: the map's bucket table or the
//! list's index array; `len`). The heap holds blocks of `16 << class` bytes; a block's first
//! word is its free-list link while it is free and unused while it is allocated; the payload
//! (encoded bytes, a bucket table, an index array) starts at byte 8.
//!
//! # Crash consistency
//!
//! An operation is a transaction under the lock. Its rules, each of which the code keeps:
//!
//! 1. New bytes (encoded values, a new bucket table or index array) are written only into
//!    blocks the operation allocated: free in the committed state, so a crash leaves garbage in
//!    free space only.
//! 2. Every in-place write of a metadata word that the committed state can reach goes through
//!    the undo journal (`Txn::set`): the old value is recorded first, then the word written.
//!    Header words are recorded once per transaction (the oldest value is the one to restore).
//! 3. Frees are deferred to the end of the transaction, after every allocation, so no block
//!    freed by an operation is reused by the same operation; freeing writes only the block's
//!    link word and a free-list head (journaled), and the link word of an allocated block means
//!    nothing in the committed state.
//! 4. Commit is one store: the journal length back to 0.
//!
//! The next lock holder that finds a non-empty journal (its previous holder was SIGKILLed, or
//! panicked mid-write) restores the recorded words in reverse order, which is idempotent, so a
//! holder killed while rolling back is rolled back again by the next one. Bulk changes
//! (reverse, a whole-list `update`, a map rehash, `insert`/`remove` in a list) build a new index
//! beside the old one and commit with a journaled pointer swap and deferred frees; `truncate`
//! and `clear` free any number of blocks with a constant-size journal (rule 3), so the journal
//! has a fixed capacity.
//!
//! # Memory ordering
//!
//! Every access is made under the lock: its Acquire (on taking) and Release (on giving back)
//! order one holder's accesses before the next holder's, so loads are `Relaxed`. Stores of
//! metadata words and journal entries are `Release`: besides the lock, a crash makes the
//! *order* of a holder's stores matter (the journal entry must be stored before the word it
//! protects, encoded bytes before the pointer that publishes them, frees before the commit),
//! and a `Release` store is ordered after every earlier load and store of its thread, for the
//! compiler and the CPU. (A SIGKILLed process's stores that executed are in memory: the kernel
//! runs the next holder's liveness check after it reaped the process.) On x86 a `Release`
//! store is a plain store.
//!
//! Shared memory is untrusted: every offset and length read back from it is checked against
//! the reservation's bounds held in the process-private [`Store`] before it is used; a bad one
//! is an `InvalidMessage` error, never out-of-bounds access.

mod check;
mod heap;
mod journal;
mod list;
mod map;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};

use uniconc_core::{Error, MessageError, codec};

use crate::lock::RawLock;
use crate::procs;
use crate::shm::{self, Region, ShmSafe};

pub use list::List;
pub use map::Map;

pub(crate) use journal::Txn;

/// Number of heap size classes: blocks of `16 << class` bytes, class `0 .. NCLASS`.
pub(super) const NCLASS: usize = 48;
/// Words in the header (the journal's "recorded once" bitmask has one bit per header word).
const HEADER_WORDS: usize = 64;
/// Bytes of the header.
const HEADER_BYTES: usize = HEADER_WORDS * 8;
/// Journal entries. An operation journals at most every header word once plus a few words of
/// one bucket or index entry (see the module docs); `Txn::log` asserts the bound.
const JOURNAL_CAP: usize = 120;
/// Byte offset of the journal.
const JOURNAL_OFF: usize = HEADER_BYTES;
/// Byte offset of the heap (page-aligned).
pub(super) const HEAP_START: usize = 4096;
/// The smallest reservation `with_reserved_bytes` accepts.
const MIN_RESERVATION: usize = 16 << 10;
/// The reservation a default collection asks for at least, and settles for at worst.
const MIN_DEFAULT_RESERVATION: usize = 64 << 20;
/// The largest default reservation (virtual: only touched pages take memory).
const MAX_DEFAULT_RESERVATION: u64 = 64 << 30;

/// The header at offset 0 of a collection's reservation. `#[repr(C)]`, 64 words.
///
/// Invariants (in the committed state, i.e. whenever `journal_len == 0` and the lock is free):
/// - `HEAP_START <= top <= end` (`top == 0` only before creation finished), a multiple of 16;
///   every byte in `top .. end` is free.
/// - `heads[k]` is 0 or the first block of class `k`'s free list; each free block's first word
///   links to the next (0 ends the list); every block is 16-aligned, inside `HEAP_START .. top`.
/// - `used` is the total size of the allocated blocks.
/// - `index_off`/`index_cap`: the collection's root block (0/0 when there is none yet), `len`
///   its number of entries; `tombs` the map's tombstones (0 for a list).
/// - `_spare[0]` (`word::PENDING`): a list's remove under way, finished by the next holder
///   before anything else (0 for a map).
///
/// Every field is read and written by the lock holder only (see the module docs for the
/// orderings); `lock` is the robust lock of `lock.rs`.
#[derive(Debug)]
#[repr(C)]
pub(super) struct Header {
    pub(super) lock: RawLock,
    pub(super) journal_len: AtomicU64,
    pub(super) top: AtomicU64,
    pub(super) used: AtomicU64,
    pub(super) len: AtomicU64,
    pub(super) index_off: AtomicU64,
    pub(super) index_cap: AtomicU64,
    pub(super) tombs: AtomicU64,
    pub(super) heads: [AtomicU64; NCLASS],
    pub(super) _spare: [AtomicU64; HEADER_WORDS - 8 - NCLASS],
}

const _: () = assert!(size_of::<Header>() == HEADER_BYTES);
const _: () = assert!(JOURNAL_OFF + JOURNAL_CAP * 16 <= HEAP_START);

// SAFETY: repr(C), atomics only (RawLock is two atomics); all-zero is an unlocked header with
// an empty journal (`Store::new` stores `top` before the store is shared).
unsafe impl ShmSafe for Header {}

/// Byte offsets of header words, for [`Txn::set`].
pub(super) mod word {
    pub(in crate::collections) const TOP: usize = 16;
    pub(in crate::collections) const USED: usize = 24;
    pub(in crate::collections) const LEN: usize = 32;
    pub(in crate::collections) const INDEX_OFF: usize = 40;
    pub(in crate::collections) const INDEX_CAP: usize = 48;
    pub(in crate::collections) const TOMBS: usize = 56;
    /// A list's remove under way (`position + 1`, 0: none): see `list::finish_pending`.
    pub(in crate::collections) const PENDING: usize = 64 + 8 * super::NCLASS;
    /// Byte offset of free-list head `k`.
    pub(in crate::collections) const fn head(k: usize) -> usize {
        64 + 8 * k
    }
}

/// One collection's reservation, with its bounds copied at creation (never read back from
/// shared memory).
#[derive(Debug)]
pub(crate) struct Store {
    region: Region,
    /// The reservation's length: every offset used is checked against it.
    end: usize,
}

impl Store {
    /// A store with the default reservation: the largest power of two at most a quarter of
    /// RAM plus swap and an eighth of `RLIMIT_AS`, within 64 MiB ..= 64 GiB, halved while the
    /// OS refuses to map it (strict overcommit charges even a `MAP_NORESERVE` mapping).
    pub(crate) fn new() -> Result<Self, Error> {
        let mut bytes = default_reservation();
        loop {
            match Self::with_bytes(bytes) {
                Err(e) if e.kind() == uniconc_core::ErrorKind::Os => {
                    if bytes <= MIN_DEFAULT_RESERVATION {
                        return Err(e);
                    }
                    bytes /= 2;
                }
                r => return r,
            }
        }
    }

    /// A store reserving exactly `bytes` (at least 16 KiB) of address space.
    pub(crate) fn with_bytes(bytes: usize) -> Result<Self, Error> {
        if bytes < MIN_RESERVATION {
            return Err(Error::invalid_argument(format!(
                "a collection reserves at least {MIN_RESERVATION} bytes, not {bytes}"
            )));
        }
        procs::install_fork_handlers();
        let region = Region::new(bytes, true)?;
        let s = Self { region, end: bytes };
        // Phase two of the initialisation (see `shm`): before any other process exists that
        // maps the region. Relaxed: nothing else can read it yet.
        s.hdr().top.store(HEAP_START as u64, Ordering::Relaxed);
        Ok(s)
    }

    /// The store of the collection named `name` (`kind` `Map` or `List`, holding
    /// `type_name`), reserving [`MIN_DEFAULT_RESERVATION`] bytes when it is created here (a
    /// sparse file: only touched pages take memory). On open the stored reservation is
    /// accepted if it is one a store can have; every offset read later is checked against
    /// it, as for any store.
    pub(super) fn named(
        name: &uniconc_core::Name,
        kind: crate::named::Kind,
        type_name: &str,
    ) -> Result<Self, Error> {
        procs::install_fork_handlers();
        let bytes = MIN_DEFAULT_RESERVATION;
        let spec = crate::named::Spec {
            kind,
            type_name,
            params: [bytes as u64, 0, 0, 0],
            len: bytes,
        };
        let attached = crate::named::attach(
            name,
            &spec,
            |r| {
                // Phase two (see `with_bytes`): the file has no name yet.
                r.at::<Header>(0)
                    .top
                    .store(HEAP_START as u64, Ordering::Relaxed);
                Ok(())
            },
            |p| {
                let b = p[0];
                if b < MIN_RESERVATION as u64 || b > MAX_DEFAULT_RESERVATION || b % 4096 != 0 {
                    return Err(Error::incompatible(format!(
                        "the named collection {name} claims a reservation of {b} bytes: \
                         corrupted"
                    )));
                }
                Ok(b as usize)
            },
        )?;
        let end = attached.params[0] as usize;
        Ok(Self {
            region: attached.region,
            end,
        })
    }

    /// The header.
    #[inline]
    pub(super) fn hdr(&self) -> &Header {
        self.region.at(0)
    }

    /// The reservation's length in bytes.
    #[inline]
    pub(super) fn end(&self) -> usize {
        self.end
    }

    /// The largest block the heap can ever hand out, in bytes (its header word included).
    pub(super) fn max_block(&self) -> usize {
        let heap = self.end - HEAP_START;
        1usize << (usize::BITS - 1 - heap.leading_zeros())
    }

    /// The word at byte offset `off`, which the caller checked is 8-aligned and in
    /// `0 .. end - 8` (asserted again: a bug, never shared memory, could break it).
    #[inline]
    pub(super) fn word(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.end,
            "unchecked offset {off}"
        );
        // SAFETY: `off` is 8-aligned and the word lies inside the mapping (asserted, against
        // the private `end`); the mapping lives as long as `self`; an `AtomicU64` is valid
        // for any bits.
        unsafe { &*self.region.base().add(off).cast::<AtomicU64>() }
    }

    /// `off` as a `usize` if `off .. off + len` lies inside the heap; else a corruption error.
    #[inline]
    pub(super) fn heap_range(&self, off: u64, len: u64) -> Result<usize, Error> {
        match off.checked_add(len) {
            Some(e) if off >= HEAP_START as u64 && e <= self.end as u64 => Ok(off as usize),
            _ => Err(corrupt("an offset outside the heap")),
        }
    }

    /// The `len` bytes at `off` (checked against the heap's bounds).
    #[inline]
    pub(super) fn bytes(&self, off: u64, len: u64) -> Result<&[u8], Error> {
        let off = self.heap_range(off, len)?;
        // SAFETY: in bounds (checked above); callers hold the lock and use the slice only
        // while they hold it (every caller is an operation of this module that decodes or
        // copies the bytes before releasing the lock), so no process or thread writes them
        // meanwhile; `u8` is valid for any bits.
        Ok(unsafe { std::slice::from_raw_parts(self.region.base().add(off), len as usize) })
    }

    /// The `n` words at `off` (checked against the heap's bounds and 8-aligned), for a bulk
    /// read under the lock.
    #[inline]
    pub(super) fn words(&self, off: usize, n: usize) -> Result<&[u64], Error> {
        let bytes = n.checked_mul(8).ok_or_else(|| corrupt("a length"))?;
        let off = self.heap_range(off as u64, bytes as u64)?;
        if off % 8 != 0 {
            return Err(corrupt("a misaligned offset"));
        }
        // SAFETY: in bounds and aligned (checked above); as for `bytes`, callers hold the lock
        // for as long as they use the slice, and only read it; `u64` is valid for any bits.
        Ok(unsafe { std::slice::from_raw_parts(self.region.base().add(off).cast::<u64>(), n) })
    }

    /// Copies `src` to `off`, which the caller allocated (in bounds: `alloc` checked it).
    #[inline]
    pub(super) fn write_bytes(&self, off: usize, src: &[u8]) {
        assert!(off >= HEAP_START && off + src.len() <= self.end);
        // SAFETY: in bounds (asserted); the block is the lock holder's, free in the committed
        // state, so nothing else reads or writes it; `src` is private memory, no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.region.base().add(off), src.len())
        };
    }

    /// Zeroes `len` bytes at `off`, which the caller allocated.
    pub(super) fn zero_bytes(&self, off: usize, len: usize) {
        assert!(off >= HEAP_START && off + len <= self.end);
        // SAFETY: as for `write_bytes`.
        unsafe { std::ptr::write_bytes(self.region.base().add(off), 0, len) };
    }

    /// Returns the heap's pages to the OS (`MADV_REMOVE`: shared anonymous memory is freed, in
    /// every process). Only after a committed reset, under the lock: nothing in the heap is
    /// referenced then. Best effort: an OS that refuses keeps the pages.
    pub(super) fn release_heap_pages(&self, top: usize) {
        let len = shm::align_up(top.clamp(HEAP_START, self.end), 4096) - HEAP_START;
        #[cfg(target_os = "linux")]
        // SAFETY: the range starts page-aligned and lies inside the mapping; the heap holds no
        // live data after a committed reset (caller), and no slice into it is in use (the
        // caller holds the lock and has none).
        unsafe {
            libc::madvise(
                self.region.base().add(HEAP_START).cast(),
                len.min(self.end - HEAP_START),
                libc::MADV_REMOVE,
            );
        }
    }

    /// Takes the lock and returns the transaction; rolls back what a dead holder left.
    #[inline]
    pub(super) fn lock(&self) -> Txn<'_> {
        let a = self
            .hdr()
            .lock
            .lock_deadline(None)
            .expect("a wait without deadline cannot time out");
        Txn::begin(self, a)
    }
}

/// The default reservation in bytes (see [`Store::new`]).
fn default_reservation() -> usize {
    let mut want = shm::machine_memory().map_or(MIN_DEFAULT_RESERVATION as u64, |m| m / 4);
    if let Some(limit) = shm::address_space_limit() {
        want = want.min(limit / 8);
    }
    let want = want.clamp(MIN_DEFAULT_RESERVATION as u64, MAX_DEFAULT_RESERVATION);
    let bytes = 1u64 << (63 - want.leading_zeros());
    usize::try_from(bytes).unwrap_or(MIN_DEFAULT_RESERVATION)
}

/// The error for metadata or bytes that fail a bounds check.
pub(super) fn corrupt(what: &str) -> Error {
    MessageError::Decode(format!("the shared collection's memory is corrupt: {what}")).into()
}

/// The encoded size of `value`, refusing what the codec could not decode again.
pub(super) fn encoded_size<T: serde::Serialize + ?Sized + 'static>(
    value: &T,
) -> Result<usize, Error> {
    decodable(codec::encoded_size(value)?)
}

/// `size`, if the codec can decode that many bytes again.
pub(super) fn decodable(size: usize) -> Result<usize, Error> {
    if size > codec::LIMIT {
        return Err(MessageError::TooLarge {
            size,
            limit: codec::LIMIT,
        }
        .into());
    }
    Ok(size)
}

/// `value` encoded into a new buffer.
pub(super) fn encode<T: serde::Serialize + ?Sized + 'static>(value: &T) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; encoded_size(value)?];
    codec::encode_into(value, &mut buf)?;
    Ok(buf)
}

/// A private copy of a few stored bytes, on the stack when they are small: taken under the
/// lock, decoded after it is released, so the lock is not held across the decode's
/// allocations.
pub(super) enum Copied {
    /// Up to 64 bytes: the first `.1` of the array.
    Stack([u8; 64], usize),
    /// More.
    Heap(Vec<u8>),
}

impl Copied {
    /// A copy of `bytes`.
    #[inline]
    pub(super) fn of(bytes: &[u8]) -> Self {
        if bytes.len() <= 64 {
            let mut a = [0u8; 64];
            a[..bytes.len()].copy_from_slice(bytes);
            Copied::Stack(a, bytes.len())
        } else {
            Copied::Heap(bytes.to_vec())
        }
    }

    /// Decodes a `T` from the copy.
    #[inline]
    pub(super) fn decode<T: serde::de::DeserializeOwned + 'static>(&self) -> Result<T, Error> {
        match self {
            Copied::Stack(a, n) => decode(&a[..*n]),
            Copied::Heap(v) => decode(v),
        }
    }
}

/// Decodes a `T` from `bytes`.
#[inline]
pub(super) fn decode<T: serde::de::DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, Error> {
    Ok(codec::decode(bytes)?)
}
