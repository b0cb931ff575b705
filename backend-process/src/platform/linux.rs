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

/// `futex_waitv(2)`: 449 on every architecture with the generic syscall table (x86_64 and
/// aarch64 included); Linux 5.16 or later.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
const SYS_FUTEX_WAITV: libc::c_long = 449;

/// `FUTEX2_SIZE_U32`: the word is 32 bits. Without `FUTEX2_PRIVATE`: the words are in shared
/// mappings and are woken from other processes.
const FUTEX2_SIZE_U32: u32 = 0x02;

/// The most words one `futex_waitv` call takes (`FUTEX_WAITV_MAX`).
const WAITV_MAX: usize = 128;

/// How long the fallback sleeps on the first word before it looks at the others.
const ANY_POLL: Duration = Duration::from_millis(1);

/// Set once `futex_waitv` returned `ENOSYS` (a kernel older than 5.16): use the fallback.
static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `struct futex_waitv` of `<linux/futex.h>`. `#[repr(C)]`, 24 bytes: the kernel reads an
/// array of them. Invariant: `uaddr` is the address of a live, 4-aligned `AtomicU32` (see
/// [`WaitSet::push`]), `flags` is [`FUTEX2_SIZE_U32`], `reserved` is 0.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// Words to sleep on together, each with the value it is expected to hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct WaitSet {
    v: Vec<FutexWaitv>,
}

// SAFETY: the entries are addresses of atomics in mappings that the owner of the set keeps
// mapped (contract of `push`); only atomic loads and futex calls are made through them, from
// whichever thread holds the set.
unsafe impl Send for WaitSet {}
// SAFETY: as for `Send`: `&WaitSet` allows only loads and futex waits.
unsafe impl Sync for WaitSet {}

impl WaitSet {
    pub(crate) fn clear(&mut self) {
        self.v.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    /// Adds `word`, expected to hold `expected`; a word already in the set is not added twice.
    ///
    /// # Safety
    /// `word` must stay valid (mapped) until the set is cleared or dropped, in every clone.
    pub(crate) unsafe fn push(&mut self, word: &AtomicU32, expected: u32) {
        let uaddr = word.as_ptr() as u64;
        if self.v.iter().any(|e| e.uaddr == uaddr) {
            return;
        }
        self.v.push(FutexWaitv {
            val: u64::from(expected),
            uaddr,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        });
    }

    fn word(e: &FutexWaitv) -> &AtomicU32 {
        // SAFETY: `uaddr` is a live, aligned `AtomicU32` (contract of `push`, kept by the
        // owner until the set is cleared, which needs `&mut self`).
        unsafe { &*(e.uaddr as usize as *const AtomicU32) }
    }

    /// `true` if a word no longer holds its expected value.
    pub(crate) fn changed(&self) -> bool {
        // Acquire: a waiter that sees the bump sees what the notifier did before it.
        self.v
            .iter()
            .any(|e| u64::from(Self::word(e).load(std::sync::atomic::Ordering::Acquire)) != e.val)
    }

    /// Sleeps while every word holds its expected value, at most `timeout`. Returns on a wake
    /// of any word, a value change, a signal, a spurious wake-up or the timeout.
    pub(crate) fn wait(&self, timeout: Duration) {
        match self.v.as_slice() {
            [] => std::thread::sleep(timeout),
            [one] => wait(Self::word(one), one.val as u32, Some(timeout)),
            many => {
                if many.len() > WAITV_MAX
                    || NO_WAITV.load(std::sync::atomic::Ordering::Relaxed)
                    || !waitv(many, timeout)
                {
                    self.poll(timeout);
                }
            }
        }
    }

    /// The fallback: a look at every word, then a sleep of at most [`ANY_POLL`] on the first
    /// one. A change of the first word wakes it at once, a change of another within 1 ms.
    fn poll(&self, timeout: Duration) {
        if self.changed() {
            return;
        }
        let first = &self.v[0];
        wait(
            Self::word(first),
            first.val as u32,
            Some(timeout.min(ANY_POLL)),
        );
    }
}

/// One `futex_waitv` call; `false` if the kernel lacks it (then remembered in [`NO_WAITV`]).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
fn waitv(v: &[FutexWaitv], timeout: Duration) -> bool {
    // futex_waitv takes an absolute timeout on the clock named (CLOCK_MONOTONIC, the clock of
    // `Instant`).
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(timeout.subsec_nanos());
    let secs = u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_add(timeout.as_secs())
        .saturating_add(nanos / 1_000_000_000);
    let at = libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        // Always < 1e9, which fits every `c_long`.
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    };
    let n = libc::c_uint::try_from(v.len()).expect("at most WAITV_MAX words");
    // SAFETY: `v` is an array of `n` (≤ 128) `struct futex_waitv`, each naming a live, aligned
    // u32 (invariant of `FutexWaitv`) that the kernel only reads; `at` is a valid timespec
    // alive for the call; flags 0 and CLOCK_MONOTONIC are what the call accepts. No
    // FUTEX2_PRIVATE: the words may be shared with other processes.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            v.as_ptr(),
            n,
            0u32,
            &at as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r == -1 {
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // A value already changed, interrupted, or timed out: the caller re-checks.
            Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT) => {}
            Some(libc::ENOSYS) => {
                // Relaxed: a cache of a fact about the kernel; racing writers agree.
                NO_WAITV.store(true, std::sync::atomic::Ordering::Relaxed);
                return false;
            }
            _ => panic!("futex_waitv failed unexpectedly: {err}"),
        }
    }
    true
}

/// Architectures where this crate does not know the syscall number: the fallback.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
fn waitv(_: &[FutexWaitv], _: Duration) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    /// A sleep on two words is ended by a wake of the second one, long before its timeout
    /// (a watchdog fails the test otherwise), through `futex_waitv` itself.
    #[test]
    fn a_wait_set_wakes_on_any_word() {
        let words = Arc::new([AtomicU32::new(0), AtomicU32::new(6)]);
        let waker = {
            let words = words.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                words[1].fetch_add(2, Ordering::Release);
                wake(&words[1], u32::MAX);
            })
        };
        let (done_tx, done) = std::sync::mpsc::channel();
        let sleeper = {
            let words = words.clone();
            std::thread::spawn(move || {
                let mut set = WaitSet::default();
                // SAFETY: `words` outlives the set (both live in this closure).
                unsafe {
                    set.push(&words[0], 0);
                    set.push(&words[1], 6);
                    set.push(&words[1], 6); // a repeat is not added
                }
                assert_eq!(set.len(), 2);
                while !set.changed() {
                    set.wait(Duration::from_secs(600));
                }
                done_tx.send(()).unwrap();
            })
        };
        done.recv_timeout(Duration::from_secs(60))
            .expect("watchdog: the wake of the second word did not end the wait");
        sleeper.join().unwrap();
        waker.join().unwrap();
        assert!(
            !NO_WAITV.load(Ordering::Relaxed),
            "this kernel lacks futex_waitv: the test ran the fallback"
        );
    }

    /// A value changed before the sleep ends it at once (a watchdog fails the test if it
    /// slept until its timeout).
    #[test]
    fn a_wait_set_does_not_sleep_on_a_stale_value() {
        let (done_tx, done) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            let words = [AtomicU32::new(1), AtomicU32::new(3)];
            let mut set = WaitSet::default();
            // SAFETY: `words` outlives the set.
            unsafe {
                set.push(&words[0], 1);
                set.push(&words[1], 2);
            }
            assert!(set.changed());
            set.wait(Duration::from_secs(600));
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(60))
            .expect("watchdog: slept on a word that had moved on");
        sleeper.join().unwrap();
    }
}
