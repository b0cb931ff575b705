//! A counting semaphore in shared memory (Python's `multiprocessing.Semaphore`).
//!
//! `count` is the futex word (waiters sleep while it is 0); `waiters` counts sleepers so
//! `release` makes a wake syscall only when someone may sleep. The handshake is the one in
//! `waiter::SleepToken`: the sleeper registers (SeqCst) then re-checks `count`; the releaser
//! increments `count` (SeqCst) then reads `waiters`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use uniconc_core::Error;

use crate::named;
use crate::platform;
use crate::procs;
use crate::shm::{ShmBox, ShmSafe};
use crate::waiter::{SLICE, SleepToken, WaitWord};

/// The largest permit count a process semaphore holds.
///
/// ```
/// use uniconc::Semaphore as _;
/// let sem = uniconc::process::semaphore(uniconc::process::MAX_PERMITS)?;
/// assert_eq!(sem.available(), uniconc::process::MAX_PERMITS);
/// assert!(uniconc::process::semaphore(uniconc::process::MAX_PERMITS + 1).is_err());
/// # Ok::<(), uniconc::Error>(())
/// ```
pub const MAX_PERMITS: usize = (u32::MAX / 2) as usize;

#[derive(Debug, Default)]
#[repr(C)]
struct SemShm {
    /// Permits available. Invariant: `<= MAX_PERMITS` (release saturates).
    count: AtomicU32,
    /// Sleepers registered on `count`.
    waiters: AtomicU32,
}

// SAFETY: repr(C), atomics only; all-zero is a semaphore with no permits.
unsafe impl ShmSafe for SemShm {}

/// A counting semaphore shared with forked processes.
///
/// The count is one atomic in shared memory (at most [`MAX_PERMITS`]). As in Python, the
/// semaphore does not track who holds a permit: a permit held by a process that is killed
/// (SIGKILL) is not given back.
///
/// ```
/// use uniconc::Semaphore as _;
/// let sem = uniconc::process::semaphore(1)?;
/// let p = sem.acquire();
/// assert_eq!(sem.available(), 0);
/// drop(p);
/// assert_eq!(sem.available(), 1);
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    shm: Arc<ShmBox<SemShm>>,
}

// A `Semaphore` travels (`crate::travel`).
crate::travel::travelling_page!(Semaphore, ShmBox<SemShm>, crate::named::Kind::Semaphore);

impl Semaphore {
    /// The semaphore named `name`, holding `permits` if it is created here (see
    /// [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &uniconc_core::Name, permits: usize) -> Result<Self, Error> {
        uniconc_core::validate::semaphore_permits(permits, MAX_PERMITS)?;
        procs::install_fork_handlers();
        let region = named::attach_page(
            name,
            named::Kind::Semaphore,
            [permits as u64, 0, 0, 0],
            |r| {
                r.at::<SemShm>(0)
                    .count
                    .store(permits as u32, Ordering::Relaxed);
                Ok(())
            },
            |_| Ok(()),
        )?;
        Ok(Self {
            shm: Arc::new(ShmBox::from_region(region)?),
        })
    }

    fn s(&self) -> &SemShm {
        self.shm.header()
    }

    fn pass_on(&self) {
        let s = self.s();
        // SeqCst: part of the handshake (see module docs).
        if s.count.load(Ordering::SeqCst) > 0 && s.waiters.load(Ordering::SeqCst) > 0 {
            platform::wake(&s.count, 1);
        }
    }
}

impl uniconc_core::Semaphore for Semaphore {
    fn new(permits: usize) -> Result<Self, Error> {
        uniconc_core::validate::semaphore_permits(permits, MAX_PERMITS)?;
        procs::install_fork_handlers();
        let shm = ShmBox::<SemShm>::new(4096, false)?;
        shm.header().count.store(permits as u32, Ordering::Relaxed);
        Ok(Self { shm: Arc::new(shm) })
    }

    fn try_take(&self) -> bool {
        let c = &self.s().count;
        let mut v = c.load(Ordering::Relaxed);
        while v > 0 {
            // Acquire: the releaser's writes before `release` are visible to the taker.
            match c.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn take_deadline(&self, deadline: Option<Instant>) -> bool {
        for step in 0..6 {
            if self.try_take() {
                return true;
            }
            for _ in 0..(1u32 << step) {
                std::hint::spin_loop();
            }
        }
        let s = self.s();
        loop {
            // SAFETY: the counter is in our mapping, alive for this call.
            let token = unsafe { SleepToken::new(&s.waiters) };
            if self.try_take() {
                return true;
            }
            let slept = platform::wait_until(&s.count, 0, deadline, SLICE);
            drop(token);
            if !slept {
                let got = self.try_take();
                if !got {
                    self.pass_on();
                }
                return got;
            }
        }
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn take_async(&self) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let s = self.s();
            loop {
                if self.try_take() {
                    return;
                }
                // SAFETY: kept alive by the clone of `shm` handed to the waiter.
                let token = unsafe { SleepToken::new(&s.waiters) };
                if self.try_take() {
                    return;
                }
                let keep: Arc<dyn std::any::Any + Send + Sync> = self.shm.clone();
                // SAFETY: `count` is in the mapping `keep` keeps alive.
                unsafe { WaitWord::new(&s.count, 0, Some(token), keep) }.await;
            }
        }
    }

    fn release(&self) {
        if crate::procs::dropping_fork_leftovers() {
            // The parent's copy of a `Permit` moved into a forked child: the child gives the
            // permit back, not this copy.
            return;
        }
        let s = self.s();
        // SeqCst: the releaser half of the handshake. Saturates at MAX_PERMITS.
        let prev = s.count.fetch_add(1, Ordering::SeqCst);
        if prev as usize >= MAX_PERMITS {
            s.count.fetch_sub(1, Ordering::SeqCst);
        }
        if s.waiters.load(Ordering::SeqCst) > 0 {
            platform::wake(&s.count, 1);
        }
    }

    fn available(&self) -> usize {
        self.s().count.load(Ordering::Relaxed) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semaphore;
    use std::time::Duration;
    use uniconc_core::{Semaphore as _, WaitError};

    #[test]
    fn counts_and_timeouts() {
        let s = semaphore(2).unwrap();
        let a = s.acquire();
        let b = s.try_acquire().unwrap();
        assert_eq!(s.try_acquire().unwrap_err(), WaitError::WouldBlock);
        assert_eq!(
            s.acquire_timeout(Duration::from_millis(20)).unwrap_err(),
            WaitError::Timeout
        );
        drop(a);
        b.forget();
        assert_eq!(s.available(), 1);
        s.release();
        assert_eq!(s.available(), 2);
        assert!(semaphore(MAX_PERMITS + 1).is_err());
    }

    #[test]
    fn release_wakes_a_blocked_thread_and_a_task() {
        let s = semaphore(0).unwrap();
        let s2 = s.clone();
        let h = std::thread::spawn(move || s2.acquire().forget());
        let s3 = s.clone();
        let h2 = std::thread::spawn(move || futures_lite::future::block_on(s3.take_async()));
        std::thread::sleep(Duration::from_millis(20));
        s.release();
        s.release();
        h.join().unwrap();
        h2.join().unwrap();
        assert_eq!(s.available(), 0);
    }
}
