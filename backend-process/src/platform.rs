//! Platform selection, made once: how a process sleeps until a 32-bit word in shared memory
//! changes, and how another process wakes it.
//!
//! - Linux: `futex(2)` without `FUTEX_PRIVATE_FLAG`, so a wake from one process reaches a
//!   waiter in another (a private wake sent from another process wakes nobody).
//! - Other Unixes: a portable waiter that re-checks the word with short sleeps; `wake` is a
//!   no-op there. Correct, but slower to react (a 200 µs poll).
//!
//! The fallback polls rather than sleeping on process-shared pthread condition variables on
//! purpose: this backend's promise is that a process killed at any moment leaves nothing
//! stuck, and a process-shared condvar does not keep it. With glibc 2.25+ a waiter killed
//! inside `pthread_cond_wait` leaves the condvar broken: we checked with glibc 2.36 that,
//! after one waiter was SIGKILLed there, the next `pthread_cond_broadcast` with a live waiter
//! to wake never returned (sourceware bug 21422; OSRM and kogmo-rtdb hit it). The mutex
//! guarding it would also need `PTHREAD_MUTEX_ROBUST`, which macOS lacks. Polling has no
//! shared state for a dead process to corrupt.
//!
//! `--cfg uniconc_fallback` selects the fallback on Linux too (with the other portable paths:
//! liveness without `/proc`, no pidfd), so CI runs the process tests through it.
//!
//! Both expose the same two functions: [`wait`] (one bounded sleep; callers loop on their own
//! condition) and [`wake`], and a [`WaitSet`]: one sleep on several words at once (a select
//! over several channels). On Linux that is `futex_waitv(2)` (5.16 or later, at most 128
//! words, shared futexes); on an older kernel, with more words, or on other Unixes, a
//! `WaitSet` looks at every word and naps on the first one for at most 1 ms (200 µs in the
//! fallback): a change of another word is then seen within that nap, and an idle select
//! wakes up that often.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

cfg_if::cfg_if! {
    if #[cfg(all(target_os = "linux", not(uniconc_fallback)))] {
        mod linux;
        use linux as imp;
        pub(crate) use linux::WaitSet;
    } else {
        mod fallback;
        use fallback as imp;
        pub(crate) use fallback::WaitSet;
    }
}

/// Sleeps while `*word == expected`, at most `timeout` (`None`: until woken). Returns on a
/// wake, a spurious wake-up, a signal, a value change or the timeout: the caller re-checks.
///
/// # Panics
/// On an error the futex call is never expected to return (a bug, not a condition).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    imp::wait(word, expected, timeout);
}

/// Wakes at most `n` processes or threads sleeping in [`wait`] on `word`.
///
/// # Panics
/// On an error the futex call is never expected to return.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    imp::wake(word, n);
}

/// Like [`wait`] but bounded by both `deadline` (`None`: none) and `slice`; returns `false`
/// without sleeping if the deadline has passed.
pub(crate) fn wait_until(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    slice: Duration,
) -> bool {
    let timeout = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            left.min(slice)
        }
        None => slice,
    };
    wait(word, expected, Some(timeout));
    true
}
