//! Synchronisation contracts: [`Lock`], [`Semaphore`] (with its [`Permit`]), [`Event`] and
//! [`Barrier`]: Python's `multiprocessing` primitives.
//!
//! Every handle is a cheap `Clone` referring to the same primitive; pass clones to the units
//! that share it. In the process backend a primitive lives in shared memory and is shared with
//! the processes forked after it was created.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use crate::error::{Error, LockError, TryLockError, WaitError};
use crate::time::deadline_after;

/// A mutual-exclusion lock without data (Python's `Lock`); released when its guard drops.
///
/// When a holder dies (a process) or panics (a thread, a task) while holding it, the next
/// `lock()` still succeeds and reports it: `Err(LockError::OwnerDied(guard))` or
/// `Err(LockError::Poisoned(guard))`. It never deadlocks on a dead holder.
pub trait Lock: Clone + Send + Sync + 'static {
    /// Held while the lock is held; releases it on drop. `Send`, so it can be held across an
    /// `.await` in a spawned task.
    type Guard<'a>: Send
    where
        Self: 'a;

    /// A new, unlocked lock.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend).
    fn new() -> Result<Self, Error>;

    /// Acquires the lock, blocking until it is free.
    ///
    /// # Errors
    /// `OwnerDied(guard)` / `Poisoned(guard)`: acquired, but the previous holder died or
    /// panicked holding it.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;

    /// Acquires the lock if it is free right now.
    ///
    /// # Errors
    /// `WouldBlock` if it is held; `OwnerDied`/`Poisoned` as for [`lock`](Lock::lock).
    fn try_lock(&self) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;

    /// Acquires the lock, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout`; `OwnerDied`/`Poisoned` as for [`lock`](Lock::lock).
    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`; `OwnerDied`/`Poisoned` as for [`lock`](Lock::lock).
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>> {
        self.lock_deadline(deadline_after(timeout))
    }

    /// Acquires the lock without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes leaves the lock as it was (never leaked held).
    fn lock_async(
        &self,
    ) -> impl Future<Output = Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>> + Send + '_;

    /// `true` if the lock is held right now (a snapshot).
    fn is_locked(&self) -> bool;
}

/// A counting semaphore (Python's `Semaphore`).
///
/// [`acquire`](Semaphore::acquire) returns a [`Permit`] that gives the permit back on drop;
/// [`Permit::forget`] keeps it taken, and [`release`](Semaphore::release) adds one, which is
/// how one unit signals another.
///
/// Backends implement the raw `take`/`release` operations; the permit-returning methods are
/// provided.
pub trait Semaphore: Clone + Send + Sync + 'static {
    /// A semaphore holding `permits` permits.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend); `permits` too large for the
    /// backend's counter.
    fn new(permits: usize) -> Result<Self, Error>;

    /// Takes one permit if one is available right now; `true` if it did.
    fn try_take(&self) -> bool;

    /// Takes one permit, waiting until `deadline` (`None`: forever); `true` if it did.
    fn take_deadline(&self, deadline: Option<Instant>) -> bool;

    /// Takes one permit without blocking the executor.
    ///
    /// # Cancel safety
    /// The permit is taken only in the poll that returns `Ready`; dropping the future before
    /// then leaks no permit.
    fn take_async(&self) -> impl Future<Output = ()> + Send + '_;

    /// Adds one permit, waking one waiter.
    fn release(&self);

    /// The permits available right now (a snapshot).
    fn available(&self) -> usize;

    /// Takes a permit, blocking until one is available.
    fn acquire(&self) -> Permit<Self> {
        let taken = self.take_deadline(None);
        debug_assert!(taken, "a wait without deadline returned without a permit");
        Permit::new(self.clone())
    }

    /// Takes a permit if one is available right now.
    ///
    /// # Errors
    /// `WouldBlock` if none is.
    fn try_acquire(&self) -> Result<Permit<Self>, WaitError> {
        if self.try_take() {
            Ok(Permit::new(self.clone()))
        } else {
            Err(WaitError::WouldBlock)
        }
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout` if none became available in time.
    fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<Self>, WaitError> {
        if self.take_deadline(deadline_after(timeout)) {
            Ok(Permit::new(self.clone()))
        } else {
            Err(WaitError::Timeout)
        }
    }

    /// Takes a permit without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes leaks no permit.
    fn acquire_async(&self) -> impl Future<Output = Permit<Self>> + Send + '_ {
        async move {
            self.take_async().await;
            // No await point between taking the permit and wrapping it: cancel-safe.
            Permit::new(self.clone())
        }
    }
}

/// A permit taken from a [`Semaphore`]; gives it back on drop.
///
/// It owns a clone of its semaphore, so it can move to another unit (a spawned thread or task).
#[must_use = "dropping a permit gives it back at once"]
#[derive(Debug)]
pub struct Permit<S: Semaphore> {
    sem: ManuallyDrop<S>,
}

impl<S: Semaphore> Permit<S> {
    /// Wraps a permit already taken from `sem`.
    pub fn new(sem: S) -> Self {
        Self {
            sem: ManuallyDrop::new(sem),
        }
    }

    /// Keeps the permit taken: it is not given back (Python's `acquire()` without `release()`).
    pub fn forget(mut self) {
        // SAFETY: `self.sem` is dropped here and never touched again, because `self` is
        // forgotten right after, so `Drop::drop` (which would release it) does not run.
        unsafe { ManuallyDrop::drop(&mut self.sem) };
        std::mem::forget(self);
    }

    /// The semaphore this permit came from.
    pub fn semaphore(&self) -> &S {
        &self.sem
    }
}

impl<S: Semaphore> Drop for Permit<S> {
    fn drop(&mut self) {
        self.sem.release();
        // SAFETY: `drop` runs once and `self.sem` is not used after this line.
        unsafe { ManuallyDrop::drop(&mut self.sem) };
    }
}

/// A flag that units can wait on (Python's `Event`).
pub trait Event: Clone + Send + Sync + 'static {
    /// A new event, not set.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend).
    fn new() -> Result<Self, Error>;

    /// Sets the flag and wakes every waiter.
    fn set(&self);

    /// Clears the flag.
    fn clear(&self);

    /// `true` if the flag is set.
    fn is_set(&self) -> bool;

    /// Blocks until the flag is set (returns at once if it is).
    fn wait(&self);

    /// Waits until the flag is set or `deadline` passes (`None`: forever).
    ///
    /// # Errors
    /// `Timeout` if the flag was still clear at the deadline.
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError>;

    /// Waits at most `timeout` for the flag.
    ///
    /// # Errors
    /// `Timeout` if the flag was still clear at the end.
    fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits for the flag without blocking the executor.
    ///
    /// # Cancel safety
    /// Cancel-safe: waiting changes nothing.
    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_;
}

/// A reusable barrier for `n` units (Python's `Barrier`).
pub trait Barrier: Clone + Send + Sync + 'static {
    /// A barrier that releases its waiters when `n` of them have arrived.
    ///
    /// # Errors
    /// `n == 0` is `InvalidArgument`; the OS refused to map shared memory (process backend).
    fn new(n: usize) -> Result<Self, Error>;

    /// Waits until `n` units are waiting, then releases them all. Exactly one of each
    /// generation gets `true` (the leader).
    fn wait(&self) -> bool;

    /// Like [`wait`](Barrier::wait), giving up at `deadline` (`None`: forever). A unit that
    /// gives up withdraws: the generation then needs another unit to arrive.
    ///
    /// # Errors
    /// `Timeout` if the generation did not complete in time.
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError>;

    /// Like [`wait`](Barrier::wait), giving up after `timeout` (and withdrawing).
    ///
    /// # Errors
    /// `Timeout` if the generation did not complete in time.
    fn wait_timeout(&self, timeout: Duration) -> Result<bool, WaitError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes withdraws this unit, like a timeout.
    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_;

    /// The number of units the barrier waits for.
    fn parties(&self) -> usize;
}
