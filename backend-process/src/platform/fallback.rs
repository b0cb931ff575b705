//! Portable waiter for Unixes without a futex: re-check the word after short sleeps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub(super) const POLL: Duration = Duration::from_micros(200);

pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    // Relaxed: the caller re-checks its own condition with the orderings it needs.
    if word.load(Ordering::Relaxed) != expected {
        return;
    }
    let nap = timeout.map_or(POLL, |t| t.min(POLL));
    std::thread::sleep(nap);
}

pub(super) fn wake(_word: &AtomicU32, _n: u32) {
    // Waiters poll; nothing to do.
}

/// Words to sleep on together, each with the value it is expected to hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct WaitSet {
    v: Vec<(*const AtomicU32, u32)>,
}

// SAFETY: the entries point into mappings the owner of the set keeps mapped (contract of
// `push`); only atomic loads are made through them.
unsafe impl Send for WaitSet {}
// SAFETY: as for `Send`.
unsafe impl Sync for WaitSet {}

impl WaitSet {
    pub(crate) fn clear(&mut self) {
        self.v.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    /// Adds `word`, expected to hold `expected`.
    ///
    /// # Safety
    /// `word` must stay valid (mapped) until the set is cleared or dropped, in every clone.
    pub(crate) unsafe fn push(&mut self, word: &AtomicU32, expected: u32) {
        let p: *const AtomicU32 = word;
        if !self.v.iter().any(|&(w, _)| std::ptr::eq(w, p)) {
            self.v.push((p, expected));
        }
    }

    /// `true` if a word no longer holds its expected value.
    pub(crate) fn changed(&self) -> bool {
        // SAFETY: live words (contract of `push`). Acquire: as a futex waiter's re-check.
        self.v
            .iter()
            .any(|&(w, e)| unsafe { &*w }.load(Ordering::Acquire) != e)
    }

    /// A look at every word, then one nap of at most [`POLL`].
    pub(crate) fn wait(&self, timeout: Duration) {
        if !self.changed() {
            std::thread::sleep(timeout.min(POLL));
        }
    }
}
