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
