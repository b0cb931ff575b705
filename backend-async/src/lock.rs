//! [`Lock`]: a mutual-exclusion lock without data, built on a one-permit
//! [`tokio::sync::Semaphore`](https://docs.rs/tokio/1/tokio/sync/struct.Semaphore.html) (fair, FIFO, cancel-safe), with std-style poisoning.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::{Lock as _, TryLockError};
//! let lock = uniconc::tokio::lock()?;
//! let guard = lock.lock().unwrap();
//! let timed_out = lock.lock_timeout(Duration::from_millis(1));
//! assert!(matches!(timed_out, Err(TryLockError::Timeout))); // gave up its place in the queue
//! drop(guard);
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async { assert!(lock.lock_async().await.is_ok()) });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::SemaphorePermit;
use uniconc_core::{Error, LockError, TryLockError};

use crate::runtime::block_on;

struct Inner {
    sem: tokio::sync::Semaphore,
    /// Set when a guard is dropped during a panic; cleared by the next acquisition, which
    /// reports it (or by [`Lock::clear_poison`]). The semaphore orders it: the flag is written
    /// before the permit is given back, and swapped after the next holder took it (the
    /// semaphore's own release/acquire pair), so `Relaxed` would do; `Release`/`Acquire` are
    /// used anyway because `is_poisoned` and `clear_poison` touch it without the lock.
    poisoned: AtomicBool,
}

/// A mutual-exclusion lock without data (Python's `Lock`); cheap to clone, every clone is the
/// same lock.
///
/// Waiters are served in FIFO order, whether they wait blocking or async. If a holder panics,
/// the lock is poisoned: the next acquisition succeeds but returns
/// `Err(LockError::Poisoned(guard))`, once; the lock is clean again after that report.
///
/// ```
/// use uniconc::Lock as _;
/// let lock = uniconc::tokio::lock()?;
/// {
///     let _g = lock.lock().unwrap();
///     assert!(lock.is_locked());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    inner: Arc<Inner>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Lock, inner);

/// Holds a [`Lock`]; releases it on drop. `Send`: it can be held across an `.await`.
///
/// ```
/// use uniconc::{JoinHandle as _, Lock as _};
/// let lock = uniconc::tokio::lock()?;
/// let l = lock.clone();
/// let task = uniconc::tokio::spawn_async(async move {
///     let guard = l.lock_async().await.unwrap();
///     tokio::task::yield_now().await; // held across an `.await`
///     drop(guard);
///     l.is_locked()
/// })?;
/// assert!(!task.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<'a> {
    inner: &'a Inner,
    _permit: SemaphorePermit<'a>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.inner.poisoned.store(true, Ordering::Release);
        }
        // `_permit` is dropped after this body: the flag is written before the release.
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &uniconc_core::Lock::is_locked(self))
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Lock {
    fn guard<'a>(
        &'a self,
        permit: SemaphorePermit<'a>,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        let g = LockGuard {
            inner: &self.inner,
            _permit: permit,
        };
        // Acquire/AcqRel: see `Inner::poisoned`. The load keeps the clean path free of a
        // write; the swap reports the panic to this holder only (`clear_poison` may race).
        if self.inner.poisoned.load(Ordering::Acquire)
            && self.inner.poisoned.swap(false, Ordering::AcqRel)
        {
            Err(LockError::Poisoned(g))
        } else {
            Ok(g)
        }
    }

    /// `true` if a holder panicked while holding the lock and no acquisition has reported it
    /// yet (a snapshot).
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Lock as _, LockError};
    /// let lock = uniconc::tokio::lock()?;
    /// let l = lock.clone();
    /// let task = uniconc::tokio::spawn(move || {
    ///     let _guard = l.lock().unwrap();
    ///     panic!("while holding the lock");
    /// })?;
    /// assert!(task.join().is_err());
    /// assert!(lock.is_poisoned());
    /// let err = lock.lock().unwrap_err(); // acquired, but reported as poisoned
    /// assert!(matches!(err, LockError::Poisoned(_)));
    /// assert!(!lock.is_poisoned()); // reported once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// Forgets an earlier panic before any acquisition reported it: the next `lock()`
    /// returns `Ok`.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Lock as _};
    /// let lock = uniconc::tokio::lock()?;
    /// let l = lock.clone();
    /// let task = uniconc::tokio::spawn(move || {
    ///     let _guard = l.lock().unwrap();
    ///     panic!("while holding the lock");
    /// })?;
    /// assert!(task.join().is_err());
    /// assert!(lock.is_poisoned());
    /// lock.clear_poison(); // no acquisition will report it
    /// assert!(!lock.is_poisoned());
    /// assert!(lock.lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear_poison(&self) {
        self.inner.poisoned.store(false, Ordering::Release);
    }
}

fn widen<'a>(
    r: Result<LockGuard<'a>, LockError<LockGuard<'a>>>,
) -> Result<LockGuard<'a>, TryLockError<LockGuard<'a>>> {
    r.map_err(Into::into)
}

impl uniconc_core::Lock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn new() -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                sem: tokio::sync::Semaphore::new(1),
                poisoned: AtomicBool::new(false),
            }),
        })
    }

    /// Acquires the lock, blocking until it is free.
    ///
    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]); on a multi-thread runtime it uses `block_in_place`.
    fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let mut fut = pin!(self.inner.sem.acquire());
        let permit = block_on(&mut fut, None)
            .expect("a wait without deadline ends with a result")
            .expect("the lock's semaphore is never closed");
        self.guard(permit)
    }

    fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.inner.sem.try_acquire() {
            Ok(permit) => widen(self.guard(permit)),
            Err(_) => Err(TryLockError::WouldBlock),
        }
    }

    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        let mut fut = pin!(self.inner.sem.acquire());
        match block_on(&mut fut, deadline) {
            Some(permit) => {
                widen(self.guard(permit.expect("the lock's semaphore is never closed")))
            }
            None => Err(TryLockError::Timeout),
        }
    }

    /// # Cancel safety
    /// tokio's `Semaphore::acquire` is cancel-safe: dropping the future leaves the lock as
    /// it was and keeps no place in the queue.
    async fn lock_async(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let permit = self
            .inner
            .sem
            .acquire()
            .await
            .expect("the lock's semaphore is never closed");
        self.guard(permit)
    }

    fn is_locked(&self) -> bool {
        self.inner.sem.available_permits() == 0
    }
}
