//! [`Value`] and [`Array`]: plain data under a `std::sync::Mutex` (critical sections are
//! short copies, so a blocking lock is the right tool even inside a task; there is no
//! `_async` form in the contract).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uniconc_core::{Error, LockError, Plain, state::index_error};

/// One shared value of plain data (Python's `Value`); cheap to clone.
///
/// ```
/// use uniconc_core::Value as _;
/// let v = uniconc_async::value(1u64)?;
/// v.update(|x| *x += 1);
/// assert_eq!(v.load(), 2);
/// # Ok::<(), uniconc_core::Error>(())
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
            .field(&*self.inner.lock().unwrap_or_else(PoisonError::into_inner))
            .finish()
    }
}

impl<T: Plain> Value<T> {
    fn get(&self) -> MutexGuard<'_, T> {
        // `load`/`store`/`update` recover silently from poison (the value is whatever the
        // panicking holder left); `lock()` reports it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Plain> uniconc_core::Value<T> for Value<T> {
    type Guard<'a> = MutexGuard<'a, T>;

    fn new(value: T) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Mutex::new(value)),
        })
    }

    fn load(&self) -> T {
        *self.get()
    }

    fn store(&self, value: T) {
        *self.get() = value;
    }

    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        f(&mut self.get())
    }

    /// Blocks while another unit holds the value (a short critical section, by design).
    fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.inner
            .lock()
            .map_err(|p| LockError::Poisoned(p.into_inner()))
    }
}

/// A fixed-length shared array of plain data (Python's `Array`); cheap to clone.
///
/// ```
/// use uniconc_core::Array as _;
/// let a = uniconc_async::array::<u32>(3)?;
/// a.set(1, 7)?;
/// assert_eq!(a.to_vec(), vec![0, 7, 0]);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct Array<T> {
    inner: Arc<Mutex<Box<[T]>>>,
    len: usize,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            len: self.len,
        }
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Exclusive access to an [`Array`]'s elements; releases the lock on drop.
pub struct ArrayGuard<'a, T> {
    guard: MutexGuard<'a, Box<[T]>>,
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

impl<T> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.guard.len())
            .finish_non_exhaustive()
    }
}

impl<T: Plain> Array<T> {
    fn get_all(&self) -> MutexGuard<'_, Box<[T]>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn from_vec(items: Vec<T>) -> Self {
        Self {
            len: items.len(),
            inner: Arc::new(Mutex::new(items.into_boxed_slice())),
        }
    }

    fn alloc(len: usize) -> Result<Vec<T>, Error> {
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|e| {
            Error::invalid_argument(format!(
                "an array of {len} elements cannot be allocated: {e}"
            ))
        })?;
        Ok(v)
    }
}

impl<T: Plain> uniconc_core::Array<T> for Array<T> {
    type Guard<'a> = ArrayGuard<'a, T>;

    /// # Errors
    /// `InvalidArgument` if `len` elements cannot be allocated (size overflow, no memory).
    fn new(len: usize) -> Result<Self, Error> {
        let mut v = Self::alloc(len)?;
        v.resize(len, T::zeroed());
        Ok(Self::from_vec(v))
    }

    fn from_slice(items: &[T]) -> Result<Self, Error> {
        let mut v = Self::alloc(items.len())?;
        v.extend_from_slice(items);
        Ok(Self::from_vec(v))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Option<T> {
        self.get_all().get(index).copied()
    }

    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        match self.get_all().get_mut(index) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(index_error(index, self.len)),
        }
    }

    /// One lock, then one `memcpy`-speed copy.
    fn to_vec(&self) -> Vec<T> {
        self.get_all().to_vec()
    }

    fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        match self.inner.lock() {
            Ok(guard) => Ok(ArrayGuard { guard }),
            Err(p) => Err(LockError::Poisoned(ArrayGuard {
                guard: p.into_inner(),
            })),
        }
    }
}
