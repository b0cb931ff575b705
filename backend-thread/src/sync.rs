//! Synchronisation primitives: [`Lock`], [`Semaphore`], [`Event`], [`Barrier`].
//!
//! Each is an `Arc` of a `Monitor` (a mutex over a small state, a condvar for blocking
//! waiters and a waker registry for async ones). Every async waiter registers its waker under
//! the state mutex, and every state change that could unblock someone happens under the same
//! mutex and is followed by a notification, so no wake-up is lost; a cancelled async waiter
//! that had been woken passes the wake-up on.
//!
//! ```
//! use uniconc::{Event as _, JoinHandle as _, Lock as _, Semaphore as _};
//! let lock = uniconc::thread::lock()?;
//! let sem = uniconc::thread::semaphore(1)?;
//! let go = uniconc::thread::event()?;
//! let task = uniconc::thread::spawn_async({
//!     let (lock, sem, go) = (lock.clone(), sem.clone(), go.clone());
//!     async move {
//!         go.wait_async().await;
//!         let _permit = sem.acquire_async().await;
//!         let _guard = lock.lock_async().await.unwrap(); // a blocking holder's drop wakes it
//!         sem.available()
//!     }
//! })?;
//! let guard = lock.lock().unwrap();
//! go.set();
//! drop(guard);
//! assert_eq!(task.join(), Ok(0));
//! assert_eq!(sem.available(), 1);
//! # Ok::<(), uniconc::Error>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use uniconc_core::{Error, LockError, TryLockError, WaitError};

use crate::waiter::Monitor;

// ---------------------------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct LockState {
    locked: bool,
    /// A holder panicked; reported (and cleared) by the next acquisition.
    poisoned: bool,
}

impl LockState {
    /// Takes the lock if free; `Some(was_poisoned)` if taken.
    fn try_take(&mut self) -> Option<bool> {
        if self.locked {
            return None;
        }
        self.locked = true;
        Some(std::mem::take(&mut self.poisoned))
    }
}

/// A mutual-exclusion lock without data (Python's `Lock`).
///
/// If a thread panics while holding it, the next acquisition reports
/// `LockError::Poisoned(guard)` (once) and hands the lock over anyway.
///
/// ```
/// use uniconc::Lock as _;
/// let lock = uniconc::thread::lock()?;
/// let guard = lock.lock().unwrap();
/// assert!(lock.try_lock().is_err());
/// drop(guard);
/// assert!(!lock.is_locked());
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Lock {
    inner: Arc<Monitor<LockState>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Lock, inner);

/// Holds a [`Lock`]; releases it on drop. `Send`: it may be held across an `.await`.
///
/// A guard dropped while its thread panics marks the lock poisoned: the next acquisition gets
/// the guard inside `LockError::Poisoned`.
///
/// ```
/// use uniconc::{JoinHandle as _, Lock as _, LockError};
/// let lock = uniconc::thread::lock()?;
/// let l = lock.clone();
/// let h = uniconc::thread::spawn(move || {
///     let _guard = l.lock().unwrap();
///     panic!("while holding the lock");
/// })?;
/// assert!(h.join().is_err());
/// let err = lock.lock().unwrap_err(); // reported once; the lock is ours anyway
/// assert!(matches!(err, LockError::Poisoned(_)));
/// drop(err.into_guard());
/// assert!(lock.lock().is_ok()); // the poison was cleared by that report
/// # Ok::<(), uniconc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.lock.inner.state();
        if std::thread::panicking() {
            s.poisoned = true;
        }
        s.locked = false;
        drop(s);
        self.lock.inner.notify_one();
    }
}

impl Lock {
    fn guard(&self, poisoned: bool) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let g = LockGuard { lock: self };
        if poisoned {
            Err(LockError::Poisoned(g))
        } else {
            Ok(g)
        }
    }
}

impl uniconc_core::Lock for Lock {
    type Guard<'a> = LockGuard<'a>;

    fn new() -> Result<Self, Error> {
        Ok(Self::default())
    }

    fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let poisoned = self
            .inner
            .wait_deadline(None, LockState::try_take)
            .unwrap_or(false);
        self.guard(poisoned)
    }

    fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.inner.state().try_take() {
            None => Err(TryLockError::WouldBlock),
            Some(poisoned) => self.guard(poisoned).map_err(Into::into),
        }
    }

    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.inner.wait_deadline(deadline, LockState::try_take) {
            None => Err(TryLockError::Timeout),
            Some(poisoned) => self.guard(poisoned).map_err(Into::into),
        }
    }

    fn lock_async(
        &self,
    ) -> impl Future<Output = Result<LockGuard<'_>, LockError<LockGuard<'_>>>> + Send + '_ {
        LockFuture {
            lock: self,
            key: None,
        }
    }

    fn is_locked(&self) -> bool {
        self.inner.state().locked
    }
}

/// Future of `lock_async`: the lock is taken only in the poll that returns it.
struct LockFuture<'a> {
    lock: &'a Lock,
    key: Option<usize>,
}

impl<'a> Future for LockFuture<'a> {
    type Output = Result<LockGuard<'a>, LockError<LockGuard<'a>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let lock: &'a Lock = this.lock;
        lock.inner
            .poll_wait(&mut this.key, cx, LockState::try_take)
            .map(|p| lock.guard(p))
    }
}

impl Drop for LockFuture<'_> {
    fn drop(&mut self) {
        self.lock.inner.cancel_wait(&mut self.key);
    }
}

// ---------------------------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------------------------

fn take_permit(permits: &mut usize) -> Option<()> {
    if *permits == 0 {
        return None;
    }
    *permits -= 1;
    Some(())
}

/// A counting semaphore (Python's `Semaphore`); see [`uniconc::Semaphore`](uniconc_core::Semaphore) for the
/// permit-returning methods.
///
/// ```
/// use uniconc::Semaphore as _;
/// let sem = uniconc::thread::semaphore(1)?;
/// let permit = sem.acquire();
/// assert_eq!(sem.available(), 0);
/// drop(permit);
/// assert_eq!(sem.available(), 1);
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    inner: Arc<Monitor<usize>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Semaphore, inner);

impl uniconc_core::Semaphore for Semaphore {
    fn new(permits: usize) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Monitor::new(permits)),
        })
    }

    fn try_take(&self) -> bool {
        take_permit(&mut self.inner.state()).is_some()
    }

    fn take_deadline(&self, deadline: Option<Instant>) -> bool {
        self.inner.wait_deadline(deadline, take_permit).is_some()
    }

    fn take_async(&self) -> impl Future<Output = ()> + Send + '_ {
        TakeFuture {
            sem: self,
            key: None,
        }
    }

    fn release(&self) {
        {
            let mut s = self.inner.state();
            *s = s
                .checked_add(1)
                .expect("semaphore permit count overflowed usize");
        }
        self.inner.notify_one();
    }

    fn available(&self) -> usize {
        *self.inner.state()
    }
}

/// Future of `take_async`: the permit is taken only in the poll that returns `Ready`.
struct TakeFuture<'a> {
    sem: &'a Semaphore,
    key: Option<usize>,
}

impl Future for TakeFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.sem.inner.poll_wait(&mut this.key, cx, take_permit)
    }
}

impl Drop for TakeFuture<'_> {
    fn drop(&mut self) {
        self.sem.inner.cancel_wait(&mut self.key);
    }
}

// ---------------------------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------------------------

fn is_set(flag: &mut bool) -> Option<()> {
    flag.then_some(())
}

/// A flag that threads can wait on (Python's `Event`).
///
/// ```
/// use uniconc::Event as _;
/// let ev = uniconc::thread::event()?;
/// assert!(ev.wait_timeout(std::time::Duration::from_millis(1)).is_err());
/// ev.set();
/// ev.wait();
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Event {
    inner: Arc<Monitor<bool>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Event, inner);

impl uniconc_core::Event for Event {
    fn new() -> Result<Self, Error> {
        Ok(Self::default())
    }

    fn set(&self) {
        *self.inner.state() = true;
        self.inner.notify_all();
    }

    fn clear(&self) {
        *self.inner.state() = false;
    }

    fn is_set(&self) -> bool {
        *self.inner.state()
    }

    fn wait(&self) {
        let _ = self.inner.wait_deadline(None, is_set);
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        self.inner
            .wait_deadline(deadline, is_set)
            .ok_or(WaitError::Timeout)
    }

    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_ {
        EventFuture {
            ev: self,
            key: None,
        }
    }
}

/// Future of `Event::wait_async`.
struct EventFuture<'a> {
    ev: &'a Event,
    key: Option<usize>,
}

impl Future for EventFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.ev.inner.poll_wait(&mut this.key, cx, is_set)
    }
}

impl Drop for EventFuture<'_> {
    fn drop(&mut self) {
        self.ev.inner.cancel_wait(&mut self.key);
    }
}

// ---------------------------------------------------------------------------------------------
// Barrier
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct BarrierState {
    parties: usize,
    /// Units waiting in the current generation.
    arrived: usize,
    /// Incremented each time a generation completes.
    generation: u64,
}

impl BarrierState {
    /// Arrives; returns the generation joined and whether this arrival completed it (leader).
    fn arrive(&mut self) -> (u64, bool) {
        let generation = self.generation;
        self.arrived += 1;
        if self.arrived == self.parties {
            self.arrived = 0;
            self.generation = self.generation.wrapping_add(1);
            (generation, true)
        } else {
            (generation, false)
        }
    }

    /// Withdraws an arrival in `generation` if it has not completed; `true` if withdrawn.
    fn withdraw(&mut self, generation: u64) -> bool {
        if self.generation == generation {
            self.arrived -= 1;
            true
        } else {
            false
        }
    }
}

/// A reusable barrier (Python's `Barrier`): the last of `n` arrivals is the leader.
///
/// ```
/// use uniconc::Barrier as _;
/// let b = uniconc::thread::barrier(1)?;
/// assert!(b.wait()); // alone: always the leader
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    inner: Arc<Monitor<BarrierState>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Barrier, inner);

impl uniconc_core::Barrier for Barrier {
    fn new(n: usize) -> Result<Self, Error> {
        uniconc_core::validate::barrier_parties(n, usize::MAX)?;
        Ok(Self {
            inner: Arc::new(Monitor::new(BarrierState {
                parties: n,
                arrived: 0,
                generation: 0,
            })),
        })
    }

    fn wait(&self) -> bool {
        self.wait_deadline(None).unwrap_or(false)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        let (generation, leader) = self.inner.state().arrive();
        if leader {
            self.inner.notify_all();
            return Ok(true);
        }
        let done = |s: &mut BarrierState| (s.generation != generation).then_some(());
        if self.inner.wait_deadline(deadline, done).is_some() {
            return Ok(false);
        }
        // Timed out: withdraw, unless the generation completed in the meantime.
        if self.inner.state().withdraw(generation) {
            Err(WaitError::Timeout)
        } else {
            Ok(false)
        }
    }

    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_ {
        BarrierFuture {
            barrier: self,
            generation: None,
            done: false,
            key: None,
        }
    }

    fn parties(&self) -> usize {
        self.inner.state().parties
    }
}

/// Future of `Barrier::wait_async`: arrives on its first poll; withdraws if dropped before
/// its generation completes.
struct BarrierFuture<'a> {
    barrier: &'a Barrier,
    /// The generation joined, once arrived.
    generation: Option<u64>,
    done: bool,
    key: Option<usize>,
}

impl Future for BarrierFuture<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.get_mut();
        let inner = &this.barrier.inner;
        let mut joined = this.generation;
        let mut led = false;
        let poll = inner.poll_wait(&mut this.key, cx, |s| match joined {
            None => {
                let (generation, leader) = s.arrive();
                joined = Some(generation);
                led = leader;
                leader.then_some(true)
            }
            Some(generation) => (s.generation != generation).then_some(false),
        });
        this.generation = joined;
        if poll.is_ready() {
            this.done = true;
        }
        if led {
            inner.notify_all();
        }
        poll
    }
}

impl Drop for BarrierFuture<'_> {
    fn drop(&mut self) {
        self.barrier.inner.cancel_wait(&mut self.key);
        if let (Some(generation), false) = (self.generation, self.done) {
            self.barrier.inner.state().withdraw(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uniconc_core::{Barrier as _, Event as _, Lock as _, Semaphore as _};

    #[test]
    fn lock_is_poisoned_once_by_a_panicking_holder() {
        let lock = <Lock as uniconc_core::Lock>::new().unwrap();
        let l2 = lock.clone();
        let r = std::thread::spawn(move || {
            let _g = l2.lock().unwrap();
            panic!("holder panics");
        })
        .join();
        assert!(r.is_err());
        assert!(!lock.is_locked());
        match lock.lock() {
            Err(LockError::Poisoned(g)) => drop(g),
            other => panic!("expected Poisoned, got {:?}", other.map(|_| ())),
        }
        assert!(lock.lock().is_ok(), "reported once");
    }

    #[test]
    fn lock_timeouts_and_try() {
        let lock = <Lock as uniconc_core::Lock>::new().unwrap();
        let g = lock.lock().unwrap();
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(10)),
            Err(TryLockError::Timeout)
        ));
        drop(g);
        assert!(lock.lock_timeout(Duration::from_millis(10)).is_ok());
    }

    #[test]
    fn guard_and_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let lock = <Lock as uniconc_core::Lock>::new().unwrap();
        let g = lock.lock().unwrap();
        is_send(&g);
        drop(g);
        is_send(&lock.lock_async());
    }

    #[test]
    fn barrier_timeout_withdraws() {
        let b = <Barrier as uniconc_core::Barrier>::new(2).unwrap();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(10)),
            Err(WaitError::Timeout)
        );
        assert_eq!(b.inner.state().arrived, 0);
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait());
        let me = b.wait();
        assert!(me ^ t.join().unwrap(), "exactly one leader");
    }

    #[test]
    fn semaphore_release_wakes_waiter() {
        let s = <Semaphore as uniconc_core::Semaphore>::new(0).unwrap();
        assert!(!s.try_take());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.take_deadline(None));
        std::thread::sleep(Duration::from_millis(20));
        s.release();
        assert!(t.join().unwrap());
        assert_eq!(s.available(), 0);
    }

    #[test]
    fn event_set_clear() {
        let e = <Event as uniconc_core::Event>::new().unwrap();
        assert!(!e.is_set());
        e.set();
        assert!(e.is_set());
        e.wait();
        e.clear();
        assert_eq!(
            e.wait_timeout(Duration::from_millis(5)),
            Err(WaitError::Timeout)
        );
    }
}
