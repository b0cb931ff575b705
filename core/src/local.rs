//! In-process shared state, used by the backends whose units share one address space (threads,
//! tokio tasks): [`Value`] and [`Array`] (Python's `Value` and `Array`), each an `Arc` of a std
//! `Mutex`, and [`Map`] and [`List`] (Python's Manager dict and list). Whole-array reads take the mutex once and copy the slice (a `memcpy`). The critical
//! sections are short copies, so a blocking lock is right even inside a task. Kept here, once,
//! because backends do not depend on each other.
//!
//! Poisoning: a thread that panics while holding a guard poisons the mutex; the next `lock()`
//! reports `LockError::Poisoned(guard)` once and clears it. `load`, `store` and `update`
//! recover silently (the data is plain old data, always valid).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::state::index_error;
use crate::{Error, LockError, Plain};

mod collections;
pub use collections::{List, Map};

/// Locks `m`, reporting (and clearing) poisoning once.
fn lock_reporting<T: ?Sized>(
    m: &Mutex<T>,
) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
    match m.lock() {
        Ok(g) => Ok(g),
        Err(p) => {
            m.clear_poison();
            Err(LockError::Poisoned(p.into_inner()))
        }
    }
}

/// Locks `m`, ignoring poisoning (plain data is valid whatever a panicking holder left).
fn lock_quiet<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One shared value of plain data.
///
/// ```
/// use uniconc::Value as _;
/// let v = uniconc::thread::Value::new(1u64)?;
/// v.update(|x| *x += 1);
/// assert_eq!(v.load(), 2);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Value<T> {
    inner: Arc<Mutex<T>>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value")
            .field(&*lock_quiet(&self.inner))
            .finish()
    }
}

impl<T: Plain> crate::Value<T> for Value<T> {
    type Guard<'a> = MutexGuard<'a, T>;

    fn new(value: T) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Mutex::new(value)),
        })
    }

    fn load(&self) -> T {
        *lock_quiet(&self.inner)
    }

    fn store(&self, value: T) {
        *lock_quiet(&self.inner) = value;
    }

    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        f(&mut lock_quiet(&self.inner))
    }

    fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        lock_reporting(&self.inner)
    }
}

/// A fixed-length shared array of plain data.
///
/// ```
/// use uniconc::Array as _;
/// let a = uniconc::thread::Array::<u32>::from_slice(&[1, 2, 3])?;
/// a.set(0, 7)?;
/// assert_eq!(a.to_vec(), [7, 2, 3]);
/// assert_eq!(a.get(3), None);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Array<T> {
    inner: Arc<Mutex<Box<[T]>>>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array")
            .field(&&**lock_quiet(&self.inner))
            .finish()
    }
}

/// Exclusive access to an [`Array`]'s elements; releases the lock on drop. It dereferences to
/// `[T]`, so every slice method works in place.
///
/// ```
/// use uniconc::Array as _;
///
/// let a = uniconc::thread::Array::<u32>::from_slice(&[3, 1, 2])?;
/// {
///     let mut guard = a.lock().unwrap_or_else(|e| e.into_guard());
///     guard.sort();
///     guard[0] = 10;
/// }
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct ArrayGuard<'a, T> {
    guard: MutexGuard<'a, Box<[T]>>,
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.guard, f)
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.guard
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.guard
    }
}

impl<T: Plain> Array<T> {
    /// The inherent form of [`crate::Array::from_slice`], so that
    /// `Array::from_slice` works without the trait in scope.
    ///
    /// ```
    /// let a = uniconc::thread::Array::<i16>::from_slice(&[-1, 0, 1])?;
    /// assert_eq!(uniconc::Array::to_vec(&a), [-1, 0, 1]);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if the allocation is too large.
    pub fn from_slice(items: &[T]) -> Result<Self, Error> {
        let mut v = Vec::new();
        v.try_reserve_exact(items.len()).map_err(|e| {
            Error::invalid_argument(format!("array of {} elements: {e}", items.len()))
        })?;
        v.extend_from_slice(items);
        Ok(Self {
            inner: Arc::new(Mutex::new(v.into_boxed_slice())),
        })
    }
}

impl<T: Plain> crate::Array<T> for Array<T> {
    type Guard<'a> = ArrayGuard<'a, T>;

    fn new(len: usize) -> Result<Self, Error> {
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|e| Error::invalid_argument(format!("array of {len} elements: {e}")))?;
        v.resize(len, T::zeroed());
        Ok(Self {
            inner: Arc::new(Mutex::new(v.into_boxed_slice())),
        })
    }

    fn from_slice(items: &[T]) -> Result<Self, Error> {
        Array::from_slice(items)
    }

    fn len(&self) -> usize {
        lock_quiet(&self.inner).len()
    }

    fn get(&self, index: usize) -> Option<T> {
        lock_quiet(&self.inner).get(index).copied()
    }

    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        let mut g = lock_quiet(&self.inner);
        let len = g.len();
        let slot = g.get_mut(index).ok_or_else(|| index_error(index, len))?;
        *slot = value;
        Ok(())
    }

    fn to_vec(&self) -> Vec<T> {
        lock_quiet(&self.inner).to_vec()
    }

    fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        match lock_reporting(&self.inner) {
            Ok(guard) => Ok(ArrayGuard { guard }),
            Err(e) => Err(LockError::Poisoned(ArrayGuard {
                guard: e.into_guard(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Array as _, Value as _};

    #[test]
    fn value_poisoning_is_reported_once() {
        let v = <Value<u32> as crate::Value<u32>>::new(1).unwrap();
        let v2 = v.clone();
        let _ = std::thread::spawn(move || {
            let mut g = v2.lock().unwrap();
            *g = 5;
            panic!("holder panics");
        })
        .join();
        assert_eq!(v.load(), 5);
        assert!(matches!(v.lock(), Err(LockError::Poisoned(_))));
        assert!(v.lock().is_ok());
    }

    #[test]
    fn array_bounds_and_guard() {
        let a = <Array<u16> as crate::Array<u16>>::new(3).unwrap();
        assert_eq!(a.to_vec(), [0, 0, 0]);
        assert!(a.set(3, 1).is_err());
        a.lock().unwrap().copy_from_slice(&[1, 2, 3]);
        assert_eq!(a.get(2), Some(3));
        assert_eq!(a.len(), 3);
    }
}
