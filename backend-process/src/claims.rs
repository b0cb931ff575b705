//! Claim-word indices. Each thread of a process that sends or receives takes one of [`WORDS`]
//! indices, so every channel can give each such thread of each process its own claim words in
//! shared memory: they say which record the thread may hold, or which cells and message slot
//! it may have claimed, so that a process killed in the middle can have that finished by a
//! peer (`Ring::recover`, `Ring::recover_send`). An index is given back when its thread
//! exits. A thread that finds none free goes without; its sends and receives are counted
//! apart, and while one is under way nothing is recovered.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

/// Claim words per process in each channel.
pub(crate) const WORDS: usize = 8;

const NONE: u8 = u8::MAX;

/// Bit `i` is set while a thread of this process holds index `i`.
static TAKEN: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// This thread's index, or `NONE`. No destructor, so the fork handler may read it.
    static INDEX: Cell<u8> = const { Cell::new(NONE) };
    /// Gives the index back when the thread exits (registered when one is taken).
    static GIVE_BACK: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        let i = INDEX.try_with(|c| c.replace(NONE)).unwrap_or(NONE);
        if usize::from(i) < WORDS {
            // Relaxed: the bits only arbitrate indices; the claim word itself was cleared
            // (Release) when the thread's last receive returned.
            TAKEN.fetch_and(!(1 << i), Ordering::Relaxed);
        }
    }
}

/// This thread's index, taking a free one on first use; `None` while all are taken.
#[inline]
pub(crate) fn mine() -> Option<usize> {
    let i = usize::from(INDEX.with(Cell::get));
    if i < WORDS { Some(i) } else { take() }
}

#[cold]
fn take() -> Option<usize> {
    // Relaxed: as in `GiveBack::drop`.
    let mut bits = TAKEN.load(Ordering::Relaxed);
    loop {
        let i = (!bits).trailing_zeros() as usize;
        if i >= WORDS {
            return None;
        }
        match TAKEN.compare_exchange_weak(bits, bits | 1 << i, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                // Register the destructor first: a thread already tearing down its
                // thread-locals keeps no index (it would never give it back).
                if GIVE_BACK.try_with(|_| ()).is_err() {
                    TAKEN.fetch_and(!(1 << i), Ordering::Relaxed);
                    return None;
                }
                INDEX.with(|c| c.set(i as u8));
                return Some(i);
            }
            Err(b) => bits = b,
        }
    }
}

/// In a forked child, where only the forking thread exists: only its index stays taken.
/// Async-signal-safe (an atomic store and a read of a destructor-less thread-local).
pub(crate) fn fork_child() {
    let i = INDEX.try_with(Cell::get).unwrap_or(NONE);
    // Relaxed: this is the child's only thread.
    TAKEN.store(
        if usize::from(i) < WORDS { 1 << i } else { 0 },
        Ordering::Relaxed,
    );
}
