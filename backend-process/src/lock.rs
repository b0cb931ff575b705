//! A lock in shared memory, robust to the death of its holder.
//!
//! The lock word holds the owner's pid (0: free) and a `WAITERS` bit (a sleeper may need a
//! wake). Acquire is one CAS `0 -> pid`; release is one CAS `pid -> 0` (a futex wake only if the
//! `WAITERS` bit was set): the uncontended path makes no syscall and reads the pid from a cache.
//! A waiter sleeps on the word in bounded slices and, between slices, checks that the owner is
//! alive; if it is dead (exited, killed, a zombie), the waiter takes the lock over with a CAS
//! from the dead owner's word and reports `OwnerDied`. (Pid reuse: a dead owner whose pid was
//! already reused by a new process is taken for alive; the kernel cycles through pids before
//! reusing one, so this needs the pid space to wrap around while the lock is held.)
//!
//! Poisoning: a guard dropped while its thread panics (in any process: a forked child whose
//! closure panics unwinds and drops it) sets the `poisoned` word before the release; the next
//! acquisition that reports (`Lock::lock`, `Value::lock`, ...) clears it and returns
//! `Poisoned`, once. Only the holder reads or writes `poisoned`, so the lock word's
//! Release/Acquire pair orders it and `Relaxed` accesses suffice.
//!
//! Owners are processes: threads of one process share the pid, so a lock held by a thread is
//! released by its guard wherever the guard is dropped in that process. A guard copied into a
//! forked child (the parent held it at `fork`) does not release the parent's lock when the
//! child drops it: release checks the owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use uniconc_core::{Error, LockError, TryLockError};

use crate::named;
use crate::platform;
use crate::procs::{self, Identity};
use crate::shm::{ShmBox, ShmSafe};
use crate::waiter::{SLICE, WaitWord};

const WAITERS: u32 = 1 << 31;

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a clean release.
    Clean,
    /// Taken over from a dead holder.
    OwnerDied,
}

/// The lock word and its poison flag. `#[repr(C)]`; all-zero is unlocked and not poisoned.
///
/// Invariant: `poisoned` is written and read only by the process (thread) that holds the lock
/// (`word`'s owner is its pid); its value travels to the next holder with the lock word's
/// Release (unlock) / Acquire (lock) pair.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct RawLock {
    /// `owner pid | WAITERS?`, 0 when free.
    word: AtomicU32,
    /// 1: a holder panicked while holding the lock and no acquisition has reported it yet.
    poisoned: AtomicU32,
}

// SAFETY: repr(C), two atomics, all-zero = unlocked and clean.
unsafe impl ShmSafe for RawLock {}

impl RawLock {
    /// Takes the lock if it is free (or its holder is dead).
    pub(crate) fn try_lock(&self) -> Option<Acquired> {
        let me = procs::my_pid();
        // Acquire: the previous holder's writes (made before its Release unlock) are visible.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(v) => self.take_from_dead(v, me),
        }
    }

    fn take_from_dead(&self, v: u32, me: u32) -> Option<Acquired> {
        let owner = v & !WAITERS;
        if owner == 0
            || owner == me
            || procs::is_alive(Identity {
                pid: owner,
                start: 0,
            })
        {
            return None;
        }
        // Keep WAITERS set: others may sleep on the word. Acquire as for a normal lock.
        self.word
            .compare_exchange(v, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Acquired::OwnerDied)
    }

    /// Takes the lock, waiting until `deadline` (`None`: forever); `None` on timeout.
    #[inline]
    pub(crate) fn lock_deadline(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let me = procs::my_pid();
        // Acquire: see `try_lock`.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(Acquired::Clean);
        }
        self.lock_slow(me, deadline)
    }

    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        for step in 0..7 {
            for _ in 0..(1u32 << step) {
                std::hint::spin_loop();
            }
            // Relaxed peek, then an Acquire CAS.
            if self.word.load(Ordering::Relaxed) == 0
                && self
                    .word
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(Acquired::Clean);
            }
        }
        let mut last_check = Instant::now();
        loop {
            let v = self.word.load(Ordering::Relaxed);
            if v == 0 {
                // Others may be asleep: keep the WAITERS bit so our unlock wakes one.
                if self
                    .word
                    .compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Acquired::Clean);
                }
                continue;
            }
            if v & WAITERS == 0
                && self
                    .word
                    .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if !platform::wait_until(&self.word, v | WAITERS, deadline, SLICE) {
                return None;
            }
            if last_check.elapsed() >= SLICE {
                last_check = Instant::now();
                let v = self.word.load(Ordering::Relaxed);
                if let Some(a) = self.take_from_dead(v, me) {
                    return Some(a);
                }
            }
        }
    }

    /// The lock word now, for [`clear_stale`](Self::clear_stale).
    pub(crate) fn word_now(&self) -> u32 {
        // Relaxed: a snapshot compared by value only; no data is read under it.
        self.word.load(Ordering::Relaxed)
    }

    /// Frees a lock whose word `stale` was written by processes of an earlier boot (a
    /// file-backed lock: their pids mean nothing now), unless someone took it over since,
    /// and wakes every sleeper. The caller must be the one process that won the right to
    /// clear it, and must have read `stale` before winning it.
    pub(crate) fn clear_stale(&self, stale: u32) {
        let owner = stale & !WAITERS;
        if owner == 0 {
            return;
        }
        let mut v = self.word.load(Ordering::Relaxed);
        while v & !WAITERS == owner {
            // Release: as an unlock (nothing was written under the stale holder in this boot).
            match self
                .word
                .compare_exchange(v, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    platform::wake(&self.word, u32::MAX);
                    return;
                }
                Err(now) => v = now,
            }
        }
    }

    /// Releases the lock if this process holds it; poisons it first if the calling thread is
    /// panicking (the guard is dropped by the unwinding).
    #[inline]
    pub(crate) fn unlock(&self) {
        let me = procs::my_pid();
        if std::thread::panicking() {
            self.poison(me);
        }
        // Release: our writes under the lock are visible to the next holder's Acquire.
        if let Err(v) = self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        {
            self.unlock_slow(v, me);
        }
    }

    #[cold]
    fn unlock_slow(&self, v: u32, me: u32) {
        if v & !WAITERS != me {
            // Not ours: a guard inherited through fork, or taken over after we were judged
            // dead. Releasing it would break someone else's critical section.
            return;
        }
        // Release: as above.
        self.word.store(0, Ordering::Release);
        platform::wake(&self.word, 1);
    }

    #[cold]
    fn poison(&self, me: u32) {
        // Only the holder poisons: a guard copied into a forked child (the parent held the
        // lock at `fork`) must not poison the parent's lock. Relaxed: see `RawLock`; the
        // release that follows in `unlock` publishes the flag to the next holder.
        if self.word.load(Ordering::Relaxed) & !WAITERS == me {
            self.poisoned.store(1, Ordering::Relaxed);
        }
    }

    /// Turns how the lock was acquired into what the caller reports, with `guard`: a pending
    /// poison is reported once (and cleared); `OwnerDied` wins over (and clears) it. Call
    /// right after acquiring, while holding the lock.
    pub(crate) fn report<G>(&self, a: Acquired, guard: G) -> Result<G, LockError<G>> {
        // Relaxed: we hold the lock (see `RawLock`); the load avoids a write on the clean path.
        let poisoned = self.poisoned.load(Ordering::Relaxed) != 0;
        if poisoned {
            self.poisoned.store(0, Ordering::Relaxed);
        }
        match a {
            Acquired::OwnerDied => Err(LockError::OwnerDied(guard)),
            Acquired::Clean if poisoned => Err(LockError::Poisoned(guard)),
            Acquired::Clean => Ok(guard),
        }
    }

    /// `true` if held (a snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Takes the lock without blocking the executor thread.
    pub(crate) async fn lock_async(&self, keep: Arc<dyn std::any::Any + Send + Sync>) -> Acquired {
        let me = procs::my_pid();
        let mut last_check = Instant::now();
        loop {
            if let Some(a) = self.try_lock_quiet(me) {
                return a;
            }
            let v = self.word.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            if v & WAITERS == 0
                && self
                    .word
                    .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // SAFETY: the word lives in the mapping `keep` keeps alive.
            unsafe { WaitWord::new(&self.word, v | WAITERS, None, keep.clone()) }.await;
            if last_check.elapsed() >= SLICE {
                last_check = Instant::now();
                let v = self.word.load(Ordering::Relaxed);
                if let Some(a) = self.take_from_dead(v, me) {
                    return a;
                }
            }
        }
    }

    fn try_lock_quiet(&self, me: u32) -> Option<Acquired> {
        let v = self.word.load(Ordering::Relaxed);
        if v & !WAITERS != 0 {
            return None;
        }
        // Keep a WAITERS bit we found: another waiter may be asleep.
        self.word
            .compare_exchange(v, me | (v & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Acquired::Clean)
    }
}

#[derive(Debug)]
#[repr(C)]
struct LockShm {
    raw: RawLock,
}

// SAFETY: repr(C), a RawLock only.
unsafe impl ShmSafe for LockShm {}

/// A lock without data in shared memory (Python's `multiprocessing.Lock`), robust to the death
/// of its holder: the next `lock()` returns `Err(LockError::OwnerDied(guard))`.
///
/// The lock word in shared memory holds the owner's pid; waiters sleep on it (a shared futex
/// on Linux) and check that the owner is still alive, so a holder killed with SIGKILL never
/// leaves the lock stuck. A holder that panics (in any process, e.g. a child whose closure
/// panics with the guard alive) releases the lock and poisons it: the next acquisition
/// returns `Err(LockError::Poisoned(guard))`, once.
///
/// ```
/// use uniconc::{Event as _, JoinError, JoinHandle as _, Lock as _, LockError};
/// let lock = uniconc::process::lock()?;
/// let (locked, never) = (uniconc::process::event()?, uniconc::process::event()?);
/// let child = uniconc::process::spawn({
///     let (lock, locked, never) = (lock.clone(), locked.clone(), never.clone());
///     move || {
///         let _guard = lock.lock().unwrap();
///         locked.set();
///         never.wait(); // holds the lock until killed
///     }
/// })?;
/// locked.wait();
/// assert!(lock.try_lock().is_err()); // held by the child
/// child.kill()?; // SIGKILL: no destructor runs in the child
/// assert_eq!(child.join(), Err(JoinError::Killed(9)));
/// let err = lock.lock().unwrap_err(); // acquired, and the death is reported
/// assert!(matches!(err, LockError::OwnerDied(_)));
/// drop(err.into_guard());
/// assert!(lock.lock().is_ok()); // a clean release since
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    shm: Arc<ShmBox<LockShm>>,
}

// A `Lock` travels (`crate::travel`): serialized, it names its memory; deserialized in any
// process of the user, it is the same lock.
crate::travel::travelling_page!(Lock, ShmBox<LockShm>, crate::named::Kind::Lock);

/// Held while a [`Lock`] is held; releases it on drop.
///
/// ```
/// use uniconc::{JoinHandle as _, Lock as _};
/// let lock = uniconc::process::lock()?;
/// let guard = lock.lock().unwrap();
/// let child = uniconc::process::spawn({
///     let lock = lock.clone();
///     move || lock.is_locked() // the parent's guard is seen from the child
/// })?;
/// assert!(child.join()?);
/// drop(guard);
/// assert!(!lock.is_locked());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw().unlock();
    }
}

impl Lock {
    /// The lock named `name` (see [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &uniconc_core::Name) -> Result<Self, Error> {
        procs::install_fork_handlers();
        let region = named::attach_page(name, named::Kind::Lock, [0; 4], |_| Ok(()), |_| Ok(()))?;
        Ok(Self {
            shm: Arc::new(ShmBox::from_region(region)?),
        })
    }

    fn raw(&self) -> &RawLock {
        &self.shm.header().raw
    }

    fn guard(&self, a: Acquired) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.raw().report(a, LockGuard { lock: self })
    }
}

impl uniconc_core::Lock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn new() -> Result<Self, Error> {
        procs::install_fork_handlers();
        Ok(Self {
            shm: Arc::new(ShmBox::new(4096, false)?),
        })
    }

    fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let a = self
            .raw()
            .lock_deadline(None)
            .expect("a wait without deadline cannot time out");
        self.guard(a)
    }

    fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.raw().try_lock() {
            None => Err(TryLockError::WouldBlock),
            Some(a) => self.guard(a).map_err(Into::into),
        }
    }

    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.raw().lock_deadline(deadline) {
            None => Err(TryLockError::Timeout),
            Some(a) => self.guard(a).map_err(Into::into),
        }
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn lock_async(
        &self,
    ) -> impl Future<Output = Result<LockGuard<'_>, LockError<LockGuard<'_>>>> + Send + '_ {
        async move {
            let keep: Arc<dyn std::any::Any + Send + Sync> = self.shm.clone();
            let a = self.raw().lock_async(keep).await;
            self.guard(a)
        }
    }

    fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock;
    use std::time::Duration;
    use uniconc_core::Lock as _;

    #[test]
    fn lock_try_lock_timeout() {
        let l = lock().unwrap();
        let g = l.lock().unwrap();
        assert!(matches!(l.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            l.lock_timeout(Duration::from_millis(20)),
            Err(TryLockError::Timeout)
        ));
        drop(g);
        assert!(!l.is_locked());
        drop(l.try_lock().unwrap());
    }

    #[test]
    fn threads_exclude_each_other() {
        let l = lock().unwrap();
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                let c = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _g = l.lock().unwrap();
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 8000);
    }

    #[test]
    fn async_lock_waits_for_release() {
        let l = lock().unwrap();
        let g = l.lock().unwrap();
        let l2 = l.clone();
        let h = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                let _g = l2.lock_async().await.unwrap();
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        h.join().unwrap();
    }

    #[test]
    fn a_dead_owner_is_taken_over() {
        let l = lock().unwrap();
        // Simulate a holder that died: a pid that cannot exist (above pid_max).
        l.raw().word.store((1 << 22) + 5, Ordering::Relaxed);
        assert!(matches!(l.try_lock(), Err(TryLockError::OwnerDied(_))));
        l.raw().word.store((1 << 22) + 5, Ordering::Relaxed);
        match l.lock() {
            Err(LockError::OwnerDied(g)) => drop(g),
            other => panic!("{other:?}"),
        }
        assert!(!l.is_locked());
    }

    #[test]
    fn a_panicking_holder_poisons_once() {
        let l = lock().unwrap();
        let l2 = l.clone();
        let panicked = std::thread::spawn(move || {
            let _g = l2.lock().unwrap();
            panic!("holder panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(!l.is_locked());
        match l.try_lock() {
            Err(TryLockError::Poisoned(g)) => drop(g),
            other => panic!("{other:?}"),
        }
        drop(l.try_lock().expect("reported once, clean since"));
    }

    #[test]
    fn a_guard_not_held_by_this_process_does_not_poison() {
        let l = lock().unwrap();
        // Held by another (live) process: the init process. A panicking drop of a guard that
        // is not ours (one inherited through fork) neither releases nor poisons the lock.
        l.raw().word.store(1, Ordering::Relaxed);
        let _ = std::panic::catch_unwind(|| {
            let _g = LockGuard { lock: &l };
            panic!("unwinds through a foreign guard");
        });
        assert_eq!(l.raw().word.load(Ordering::Relaxed), 1);
        assert_eq!(l.raw().poisoned.load(Ordering::Relaxed), 0);
        l.raw().word.store(0, Ordering::Relaxed);
    }
}
