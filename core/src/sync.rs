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
/// # A holder that panics or dies
///
/// One rule on every backend: a guard dropped while its thread panics (the unwinding drops it:
/// in a thread, a task, or a forked child whose closure panics) releases the lock and
/// *poisons* it. The next acquisition — by [`lock`](Lock::lock), [`try_lock`](Lock::try_lock),
/// [`lock_timeout`](Lock::lock_timeout), [`lock_deadline`](Lock::lock_deadline) or
/// [`lock_async`](Lock::lock_async), in any unit — succeeds and returns
/// `Err(LockError::Poisoned(guard))` (`TryLockError::Poisoned(guard)` for the `try_`/timed
/// forms), holding the guard; that report clears the poison, so the acquisitions after it are
/// `Ok` again. Exactly one acquirer hears about each panic.
///
/// A holder that dies without unwinding (a process killed by SIGKILL, aborted, OOM-killed:
/// process backend only) cannot release the lock; the next acquisition takes it over and
/// returns `Err(LockError::OwnerDied(guard))`, once, in the same way (it also clears a
/// pending poison). The lock never deadlocks on a dead holder.
///
/// `Value::lock` and `Array::lock` guards follow the same rule (their `load`, `store`,
/// `update`, `get`, `set` and `to_vec` neither report nor clear a poison).
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Lock as _, LockError};
///
/// fn poisoned_once<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let lock = B::lock()?;
///     let held = lock.clone();
///     let unit = B::spawn(move || -> u32 {
///         let _guard = held.lock();
///         panic!("panics while holding the lock")
///     })?;
///     assert!(unit.join().is_err());
///     match lock.lock() {
///         Err(LockError::Poisoned(guard)) => drop(guard), // acquired all the same
///         _ => unreachable!("the panic is reported to the next acquisition"),
///     }
///     assert!(lock.lock().is_ok()); // reported once: clean again
///     Ok(())
/// }
///
/// poisoned_once::<uniconc::thread::Thread>()?; // the same on every backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Mutual exclusion across units:
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Lock as _, Value as _};
///
/// type B = uniconc::thread::Thread;
/// let lock = B::lock()?;
/// let counter = B::value(0u32)?;
/// let units = (0..2)
///     .map(|_| {
///         let (lock, counter) = (lock.clone(), counter.clone());
///         B::spawn(move || {
///             for _ in 0..100 {
///                 let _held = lock.lock().unwrap_or_else(|e| e.into_guard());
///                 let v = counter.load(); // read-modify-write, made atomic by the lock
///                 counter.store(v + 1);
///             }
///         })
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// for u in units {
///     u.join()?;
/// }
/// assert_eq!(counter.load(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Lock: Clone + Send + Sync + 'static {
    /// Held while the lock is held; releases it on drop. `Send`, so it can be held across an
    /// `.await` in a spawned task.
    type Guard<'a>: Send
    where
        Self: 'a;

    /// A new, unlocked lock (what [`Backend::lock`](crate::Backend::lock) calls).
    ///
    /// ```
    /// use uniconc::{Backend, Lock};
    ///
    /// let lock = <uniconc::thread::Thread as Backend>::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend); never on the others.
    fn new() -> Result<Self, Error>;

    /// Acquires the lock, blocking until it is free. The lock is not reentrant: a unit that
    /// locks it again while holding it waits for itself (use [`try_lock`](Lock::try_lock) or
    /// a timeout where that can happen).
    ///
    /// A holder that panicked is reported once, as for every acquisition (see
    /// [`Lock`](Lock#a-holder-that-panics-or-dies)).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Lock as _, LockError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let held = lock.clone();
    /// let h = B::spawn(move || -> u32 {
    ///     let _guard = held.lock();
    ///     panic!("panics while holding the lock")
    /// })?;
    /// assert!(h.join().is_err());
    /// match lock.lock() {
    ///     Err(LockError::Poisoned(guard)) => drop(guard), // acquired all the same
    ///     Err(LockError::OwnerDied(_)) | Ok(_) => unreachable!(),
    /// }
    /// assert!(lock.lock().is_ok()); // reported once, on every backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `OwnerDied(guard)` / `Poisoned(guard)`: acquired, but the previous holder died
    /// (process backend) or panicked holding it; reported once. The error holds the guard:
    /// `lock.lock().unwrap_or_else(|e| e.into_guard())` goes on regardless.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`lock_async`](Lock::lock_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;

    /// Acquires the lock if it is free right now; never waits, on any runtime.
    ///
    /// ```
    /// use uniconc::{Backend, Lock as _, TryLockError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let guard = lock.try_lock().unwrap();
    /// assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    /// drop(guard);
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `WouldBlock` if it is held (also by this very unit: the lock is not reentrant);
    /// `OwnerDied(guard)`/`Poisoned(guard)` as for [`lock`](Lock::lock).
    fn try_lock(&self) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;

    /// Acquires the lock, waiting until `deadline` (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Lock as _, TryLockError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let guard = lock.lock_deadline(None).unwrap();
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert!(matches!(lock.lock_deadline(Some(soon)), Err(TryLockError::Timeout)));
    /// drop(guard);
    /// assert!(lock.lock_deadline(Some(soon)).is_ok()); // free: no wait needed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it stayed held until `deadline`; `OwnerDied(guard)`/`Poisoned(guard)` as
    /// for [`lock`](Lock::lock).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`lock_async`](Lock::lock_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>>;

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Lock as _, TryLockError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let _guard = lock.lock().unwrap();
    /// let again = lock.lock_timeout(Duration::from_millis(5));
    /// assert!(matches!(again, Err(TryLockError::Timeout)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it stayed held; `OwnerDied(guard)`/`Poisoned(guard)` as for
    /// [`lock`](Lock::lock).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`lock_async`](Lock::lock_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Self::Guard<'_>, TryLockError<Self::Guard<'_>>> {
        self.lock_deadline(deadline_after(timeout))
    }

    /// Acquires the lock without blocking the executor. The future, and the guard, are `Send`:
    /// the guard can be held across an `.await`.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Lock as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let held = lock.clone();
    /// let h = B::spawn_async(async move {
    ///     let guard = held.lock_async().await.unwrap_or_else(|e| e.into_guard());
    ///     let locked = held.is_locked();
    ///     drop(guard);
    ///     locked
    /// })?;
    /// assert!(h.join()?);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`lock`](Lock::lock): `OwnerDied(guard)` / `Poisoned(guard)`.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes leaves the lock as it was (never leaked held).
    fn lock_async(
        &self,
    ) -> impl Future<Output = Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>> + Send + '_;

    /// `true` if the lock is held right now, by anyone (a snapshot).
    ///
    /// ```
    /// use uniconc::{Backend, Lock as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// assert!(!lock.is_locked());
    /// let guard = lock.lock().unwrap();
    /// assert!(lock.clone().is_locked()); // every clone is the same lock
    /// drop(guard);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Semaphore as _, Value as _};
///
/// type B = uniconc::thread::Thread;
/// let slots = B::semaphore(2)?; // at most two units in the section at once
/// let inside = B::value(0u32)?;
/// let most = B::value(0u32)?;
/// let units = (0..4)
///     .map(|_| {
///         let (slots, inside, most) = (slots.clone(), inside.clone(), most.clone());
///         B::spawn(move || {
///             let _permit = slots.acquire();
///             let now = inside.update(|n| {
///                 *n += 1;
///                 *n
///             });
///             most.update(|m| *m = (*m).max(now));
///             inside.update(|n| *n -= 1);
///         })
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// for u in units {
///     u.join()?;
/// }
/// assert!(most.load() <= 2);
/// assert_eq!(slots.available(), 2); // every permit given back
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Semaphore: Clone + Send + Sync + 'static {
    /// A semaphore holding `permits` permits (what
    /// [`Backend::semaphore`](crate::Backend::semaphore) calls). Zero is fine: units then
    /// wait for a [`release`](Semaphore::release).
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore};
    ///
    /// type S = <uniconc::thread::Thread as Backend>::Semaphore;
    /// let sem = S::new(3)?;
    /// assert_eq!(sem.available(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `permits` is too large for the backend's counter (process backend:
    /// above `uniconc::process::MAX_PERMITS`, 2^31 - 1; tokio backend: above `usize::MAX >> 3`);
    /// `Os` if the OS refused to map shared memory (process backend).
    fn new(permits: usize) -> Result<Self, Error>;

    /// Takes one permit if one is available right now; `true` if it did. The permit stays
    /// taken until a [`release`](Semaphore::release) (prefer
    /// [`try_acquire`](Semaphore::try_acquire), which gives it back on drop).
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// assert!(sem.try_take());
    /// assert!(!sem.try_take());
    /// sem.release();
    /// assert_eq!(sem.available(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_take(&self) -> bool;

    /// Takes one permit, waiting until `deadline` (`None`: forever); `true` if it did. The
    /// permit stays taken until a [`release`](Semaphore::release).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// assert!(sem.take_deadline(None));
    /// assert!(!sem.take_deadline(Some(Instant::now() + Duration::from_millis(5))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`take_async`](Semaphore::take_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn take_deadline(&self, deadline: Option<Instant>) -> bool;

    /// Takes one permit without blocking the executor. The permit stays taken until a
    /// [`release`](Semaphore::release) (prefer [`acquire_async`](Semaphore::acquire_async)).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(0)?;
    /// let waiter = sem.clone();
    /// let h = B::spawn_async(async move { waiter.take_async().await })?;
    /// sem.release(); // wakes the waiting task, which keeps the permit
    /// h.join()?;
    /// assert_eq!(sem.available(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Cancel safety
    /// The permit is taken only in the poll that returns `Ready`; dropping the future before
    /// then leaks no permit.
    fn take_async(&self) -> impl Future<Output = ()> + Send + '_;

    /// Adds one permit, waking one waiter. Any unit may release, not only one that took a
    /// permit: that is how one unit signals another.
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(0)?;
    /// sem.release();
    /// sem.release();
    /// assert_eq!(sem.available(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// If the count would overflow: above `usize::MAX` on the thread backend, above `usize::MAX >>
    /// 3` on the tokio backend. The process backend saturates at `uniconc::process::MAX_PERMITS`
    /// instead.
    fn release(&self);

    /// The permits available right now (a snapshot).
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(2)?;
    /// let permit = sem.acquire();
    /// assert_eq!(sem.available(), 1);
    /// drop(permit);
    /// assert_eq!(sem.available(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn available(&self) -> usize;

    /// Takes a permit, blocking until one is available.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// let permit = sem.acquire();
    /// let other = sem.clone();
    /// let h = B::spawn(move || other.acquire().forget())?; // waits for our permit
    /// drop(permit); // given back: the unit takes it
    /// h.join()?;
    /// assert_eq!(sem.available(), 0); // forgotten: kept taken
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use
    /// [`acquire_async`](Semaphore::acquire_async) there. The thread and process backends never
    /// panic here; they block the calling thread.
    fn acquire(&self) -> Permit<Self> {
        let taken = self.take_deadline(None);
        debug_assert!(taken, "a wait without deadline returned without a permit");
        Permit::new(self.clone())
    }

    /// Takes a permit if one is available right now; never waits, on any runtime.
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// let permit = sem.try_acquire()?;
    /// assert_eq!(sem.try_acquire().unwrap_err(), WaitError::WouldBlock);
    /// drop(permit);
    /// assert!(sem.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Semaphore as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(0)?;
    /// let none = sem.acquire_timeout(Duration::from_millis(5));
    /// assert_eq!(none.unwrap_err(), WaitError::Timeout);
    /// sem.release();
    /// let _permit = sem.acquire_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if none became available in time.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use
    /// [`acquire_async`](Semaphore::acquire_async) there. The thread and process backends never
    /// panic here; they block the calling thread.
    fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<Self>, WaitError> {
        if self.take_deadline(deadline_after(timeout)) {
            Ok(Permit::new(self.clone()))
        } else {
            Err(WaitError::Timeout)
        }
    }

    /// Takes a permit without blocking the executor. The [`Permit`] owns a clone of the
    /// semaphore, so it can be held across `.await`s and moved.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// let inner = sem.clone();
    /// let h = B::spawn_async(async move {
    ///     let _permit = inner.acquire_async().await;
    ///     inner.available() // 0 while the permit is held
    /// })?;
    /// assert_eq!(h.join()?, 0);
    /// assert_eq!(sem.available(), 1); // the task's permit was given back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
/// It owns a clone of its semaphore, so it can move to another unit (a spawned thread, task
/// or process). On the process backend a permit moved into a `spawn` closure is the child's:
/// the parent's leftover copy of the closure, dropped after the fork, does not give it back.
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Semaphore as _};
///
/// type B = uniconc::thread::Thread;
/// let sem = B::semaphore(1)?;
/// let permit = sem.acquire();
/// let h = B::spawn(move || drop(permit))?; // moved to another unit, given back there
/// h.join()?;
/// assert_eq!(sem.available(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a permit gives it back at once"]
#[derive(Debug)]
pub struct Permit<S: Semaphore> {
    sem: ManuallyDrop<S>,
}

impl<S: Semaphore> Permit<S> {
    /// Wraps a permit already taken from `sem` (by [`Semaphore::try_take`] or
    /// [`Semaphore::take_deadline`]): dropping the `Permit` releases it. Wrapping a permit that
    /// was not taken adds one on drop.
    ///
    /// ```
    /// use uniconc::{Backend, Permit, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// assert!(sem.try_take());
    /// let permit = Permit::new(sem.clone());
    /// assert_eq!(sem.available(), 0);
    /// drop(permit);
    /// assert_eq!(sem.available(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(sem: S) -> Self {
        Self {
            sem: ManuallyDrop::new(sem),
        }
    }

    /// Keeps the permit taken: it is not given back (Python's `acquire()` without `release()`).
    /// Some unit's [`release`](Semaphore::release) adds it back later.
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(1)?;
    /// sem.acquire().forget();
    /// assert_eq!(sem.available(), 0);
    /// sem.release();
    /// assert_eq!(sem.available(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forget(mut self) {
        // SAFETY: `self.sem` is dropped here and never touched again, because `self` is
        // forgotten right after, so `Drop::drop` (which would release it) does not run.
        unsafe { ManuallyDrop::drop(&mut self.sem) };
        std::mem::forget(self);
    }

    /// The semaphore this permit came from.
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(3)?;
    /// let permit = sem.acquire();
    /// assert_eq!(permit.semaphore().available(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
///
/// ```
/// use uniconc::{Backend, Event as _, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let go = B::event()?;
/// let waiters = (0..3)
///     .map(|i| {
///         let go = go.clone();
///         B::spawn(move || {
///             go.wait(); // all three wait for the one `set`
///             i
///         })
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// go.set();
/// let mut done = 0;
/// for w in waiters {
///     done += w.join()?;
/// }
/// assert_eq!(done, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Event: Clone + Send + Sync + 'static {
    /// A new event, not set (what [`Backend::event`](crate::Backend::event) calls).
    ///
    /// ```
    /// use uniconc::{Backend, Event};
    ///
    /// let ev = <uniconc::thread::Thread as Backend>::Event::new()?;
    /// assert!(!ev.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend); never on the others.
    fn new() -> Result<Self, Error>;

    /// Sets the flag and wakes every waiter. Setting a set flag does nothing.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ev = B::event()?;
    /// ev.set();
    /// ev.set();
    /// assert!(ev.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn set(&self);

    /// Clears the flag: later waits block again until the next [`set`](Event::set).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Event as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ev = B::event()?;
    /// ev.set();
    /// ev.clear();
    /// assert!(!ev.is_set());
    /// assert!(ev.wait_timeout(Duration::from_millis(5)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn clear(&self);

    /// `true` if the flag is set (a snapshot).
    ///
    /// ```
    /// use uniconc::{Backend, Event as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ev = B::event()?;
    /// assert!(!ev.is_set());
    /// ev.clone().set(); // every clone is the same flag
    /// assert!(ev.is_set());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_set(&self) -> bool;

    /// Blocks until the flag is set (returns at once if it is).
    ///
    /// ```
    /// use uniconc::{Backend, Event as _, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ready = B::event()?;
    /// let setter = ready.clone();
    /// let h = B::spawn(move || setter.set())?;
    /// ready.wait(); // until the unit sets it
    /// assert!(ready.is_set());
    /// h.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Event::wait_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn wait(&self);

    /// Waits until the flag is set or `deadline` passes (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Event as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ev = B::event()?;
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(ev.wait_deadline(Some(soon)), Err(WaitError::Timeout));
    /// ev.set();
    /// assert_eq!(ev.wait_deadline(Some(soon)), Ok(())); // set: no wait needed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if the flag was still clear at the deadline.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Event::wait_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError>;

    /// Waits at most `timeout` for the flag.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Event as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ev = B::event()?;
    /// assert_eq!(ev.wait_timeout(Duration::from_millis(5)), Err(WaitError::Timeout));
    /// ev.set();
    /// ev.wait_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if the flag was still clear at the end.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Event::wait_async) there.
    /// The thread and process backends never panic here; they block the calling thread.
    fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits for the flag without blocking the executor.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let go = B::event()?;
    /// let waiter = go.clone();
    /// let h = B::spawn_async(async move {
    ///     waiter.wait_async().await;
    ///     waiter.is_set()
    /// })?;
    /// go.set();
    /// assert!(h.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: waiting changes nothing.
    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_;
}

/// A reusable barrier for `n` units (Python's `Barrier`).
///
/// ```
/// use uniconc::{Backend, Barrier as _, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let barrier = B::barrier(3)?;
/// let units = (0..2)
///     .map(|_| {
///         let barrier = barrier.clone();
///         B::spawn(move || barrier.wait() as u32 + barrier.wait() as u32) // two rounds
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// let mut leaders = barrier.wait() as u32 + barrier.wait() as u32;
/// for u in units {
///     leaders += u.join()?;
/// }
/// assert_eq!(leaders, 2); // one leader per generation
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Barrier: Clone + Send + Sync + 'static {
    /// A barrier that releases its waiters when `n` of them have arrived (what
    /// [`Backend::barrier`](crate::Backend::barrier) calls).
    ///
    /// ```
    /// use uniconc::{Backend, Barrier, ErrorKind};
    ///
    /// type Bar = <uniconc::thread::Thread as Backend>::Barrier;
    /// assert_eq!(Bar::new(4)?.parties(), 4);
    /// assert_eq!(Bar::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `n == 0` (or, on the process backend, `n >= 2^31`); `Os` if the OS
    /// refused to map shared memory (process backend).
    fn new(n: usize) -> Result<Self, Error>;

    /// Waits until `n` units are waiting, then releases them all. Exactly one of each
    /// generation gets `true` (the leader).
    ///
    /// ```
    /// use uniconc::{Backend, Barrier as _, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let barrier = B::barrier(2)?;
    /// let other = barrier.clone();
    /// let h = B::spawn(move || other.wait())?;
    /// let mine = barrier.wait();
    /// assert_ne!(mine, h.join()?); // exactly one of the two leads
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Barrier::wait_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn wait(&self) -> bool;

    /// Like [`wait`](Barrier::wait), giving up at `deadline` (`None`: forever). A unit that
    /// gives up withdraws: the generation then needs another unit to arrive.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Barrier as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let barrier = B::barrier(2)?;
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(barrier.wait_deadline(Some(soon)), Err(WaitError::Timeout)); // alone
    /// assert_eq!(B::barrier(1)?.wait_deadline(None), Ok(true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if the generation did not complete in time.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Barrier::wait_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError>;

    /// Like [`wait`](Barrier::wait), giving up after `timeout` (and withdrawing).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Barrier as _, JoinHandle as _, WaitError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let barrier = B::barrier(2)?;
    /// let alone = barrier.wait_timeout(Duration::from_millis(5));
    /// assert_eq!(alone, Err(WaitError::Timeout)); // withdrawn: the round still needs two
    /// let other = barrier.clone();
    /// let h = B::spawn(move || other.wait())?;
    /// let mine = barrier.wait_timeout(Duration::from_secs(60))?;
    /// assert_ne!(mine, h.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if the generation did not complete in time.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`wait_async`](Barrier::wait_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn wait_timeout(&self, timeout: Duration) -> Result<bool, WaitError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits without blocking the executor.
    ///
    /// ```
    /// use uniconc::{Backend, Barrier as _, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let barrier = B::barrier(2)?;
    /// let other = barrier.clone();
    /// let h = B::spawn_async(async move { other.wait_async().await })?;
    /// let mine = barrier.wait(); // a blocking and an async party meet
    /// assert_ne!(mine, h.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future before it completes withdraws this unit, like a timeout.
    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_;

    /// The number of units the barrier waits for.
    ///
    /// ```
    /// use uniconc::{Backend, Barrier as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert_eq!(B::barrier(5)?.parties(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn parties(&self) -> usize;
}
