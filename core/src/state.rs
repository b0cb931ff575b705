//! Shared state contracts: [`Value`] and [`Array`], Python's `Value` and `Array`.
//!
//! They hold plain old data ([`Plain`]): types that are valid for any bit pattern and contain no
//! pointers, so they can live in memory shared between processes.

use std::ops::DerefMut;

use crate::error::{Error, LockError};

/// Plain old data that can live in shared memory: [`bytemuck::Pod`] and thread-safe.
///
/// Implemented for every `Pod + Send + Sync` type (integers, floats, arrays of them,
/// `#[derive(Pod, Zeroable)]` structs).
pub trait Plain: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Plain for T {}

/// One shared value of plain data, with its own lock (Python's `Value`).
///
/// `load`, `store` and `update` are atomic with respect to each other and to `lock()`.
/// If a holder died with the lock (process backend), they recover silently: the value is what
/// the dead holder left. Use [`lock`](Value::lock) to be told.
pub trait Value<T: Plain>: Clone + Send + Sync + 'static {
    /// Exclusive access to the value, released on drop.
    type Guard<'a>: DerefMut<Target = T>
    where
        Self: 'a;

    /// A new shared value holding `value`.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend).
    fn new(value: T) -> Result<Self, Error>;

    /// A copy of the value.
    fn load(&self) -> T;

    /// Replaces the value.
    fn store(&self, value: T);

    /// Runs `f` on the value under its lock and returns what `f` returns
    /// (`v.update(|x| { *x += 1; *x })`).
    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U;

    /// Locks the value for a longer critical section.
    ///
    /// # Errors
    /// `OwnerDied(guard)` / `Poisoned(guard)`: acquired, but the previous holder died or
    /// panicked holding it.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;
}

/// A fixed-length shared array of plain data, with one lock (Python's `Array`).
///
/// Whole-array reads (`to_vec`, iterating a `lock()` guard) run at memory speed: one lock,
/// then plain memory access, never a lock or syscall per element.
pub trait Array<T: Plain>: Clone + Send + Sync + 'static {
    /// Exclusive access to the elements, released on drop.
    type Guard<'a>: DerefMut<Target = [T]>
    where
        Self: 'a;

    /// A new array of `len` zeroed elements.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend); the size overflows.
    fn new(len: usize) -> Result<Self, Error>;

    /// A new array holding a copy of `items`.
    ///
    /// # Errors
    /// As for [`new`](Array::new).
    fn from_slice(items: &[T]) -> Result<Self, Error>;

    /// Number of elements.
    fn len(&self) -> usize;

    /// `true` if the array has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index`, or `None` if out of bounds.
    fn get(&self, index: usize) -> Option<T>;

    /// Sets element `index`.
    ///
    /// # Errors
    /// `InvalidArgument` if `index` is out of bounds (nothing is written).
    fn set(&self, index: usize, value: T) -> Result<(), Error>;

    /// A copy of every element, taken under the lock at memory speed.
    fn to_vec(&self) -> Vec<T>;

    /// Locks the array for a longer critical section.
    ///
    /// # Errors
    /// `OwnerDied(guard)` / `Poisoned(guard)`: acquired, but the previous holder died or
    /// panicked holding it.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;
}

/// The error `Array::set` returns for an index out of bounds; shared by the backends.
pub fn index_error(index: usize, len: usize) -> Error {
    Error::invalid_argument(format!(
        "index {index} is out of bounds for an array of length {len}"
    ))
}
