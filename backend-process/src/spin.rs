//! The spin lock of the crate's process-local tables that the `fork` handlers touch (the
//! async waiter pool, the channel registry): no allocation, usable in a `static`, and reset
//! in the child of a `fork`, which has none of the parent's other threads.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// A spin lock around a `T`. Critical sections are short and never block.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached with `locked` held (`with`, or between `raw_lock` and
// `raw_unlock` for callers of `get`), so by one thread at a time; `T: Send` because that
// thread may be any thread.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, running `relax` between attempts.
    pub(crate) fn raw_lock(&self, relax: fn()) {
        // Acquire on taking / Release on giving back the lock (`raw_unlock`): the value's
        // accesses happen inside the critical section.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            relax();
        }
    }

    /// Gives back the lock, which the caller holds (taken with `raw_lock`).
    pub(crate) fn raw_unlock(&self) {
        // Release: see `raw_lock`.
        self.locked.store(false, Ordering::Release);
    }

    /// The value; dereference it only with the lock held.
    pub(crate) fn get(&self) -> *mut T {
        self.value.get()
    }

    /// Runs `f` on the value with the lock held, running `relax` between attempts to take it.
    /// `f` must not block.
    pub(crate) fn with<R>(&self, relax: fn(), f: impl FnOnce(&mut T) -> R) -> R {
        self.raw_lock(relax);
        // SAFETY: we hold the lock, so this is the only reference to the value.
        let r = f(unsafe { &mut *self.value.get() });
        self.raw_unlock();
        r
    }

    /// Atfork child handler: replaces the value (without dropping the old one) and unlocks.
    ///
    /// # Safety
    /// Only in the child of `fork`, where exactly one thread exists, so nothing else accesses
    /// the lock. Async-signal-safe if creating `value` allocates nothing.
    pub(crate) unsafe fn reset_in_child(&self, value: T) {
        // SAFETY: the caller guarantees no other access (one thread); the old value is
        // overwritten without being dropped, as a lock held at the fork may have left it
        // mid-update.
        unsafe { std::ptr::write(self.value.get(), value) };
        // Relaxed: no other thread exists to synchronise with.
        self.locked.store(false, Ordering::Relaxed);
    }
}
