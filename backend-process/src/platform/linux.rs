//! `futex(2)` wait and wake on a word that may be shared between processes.

use std::io;
use std::ptr;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts;
    let ts_ptr = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                // Always < 1e9, which fits every `c_long`.
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => ptr::null(),
    };
    // SAFETY: `word.as_ptr()` is a valid, aligned `u32` for the whole call (the caller's
    // reference keeps its mapping alive); FUTEX_WAIT only reads it. `ts_ptr` is null or points
    // to `ts`, alive until the end of this function. The last two arguments are ignored by
    // FUTEX_WAIT. No FUTEX_PRIVATE_FLAG: the word may be shared with other processes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 {
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Value already changed, interrupted by a signal, or timed out: the caller re-checks.
            Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT) => {}
            _ => panic!("futex wait failed unexpectedly: {err}"),
        }
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: `word.as_ptr()` is a valid, aligned `u32` for the call; FUTEX_WAKE does not
    // dereference the remaining arguments. Shared (non-private) futex, as for `wait`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            ptr::null::<libc::timespec>(),
            ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 {
        panic!(
            "futex wake failed unexpectedly: {}",
            io::Error::last_os_error()
        );
    }
}
