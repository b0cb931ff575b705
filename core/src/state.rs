//! Shared state contracts: [`Value`] and [`Array`], Python's `Value` and `Array`.
//!
//! They hold plain old data ([`Plain`]): types that are valid for any bit pattern and contain no
//! pointers, so they can live in memory shared between processes.

use std::ops::DerefMut;

use crate::error::{Error, LockError};

/// Plain old data that can live in shared memory: [`bytemuck::Pod`](https://docs.rs/bytemuck/1/bytemuck/trait.Pod.html) and thread-safe.
///
/// Implemented for every `Pod + Send + Sync` type (integers, floats, arrays of them,
/// `#[derive(Pod, Zeroable)]` structs). No pointers, references, `String`s or `Vec`s: in
/// another process they would point nowhere.
///
/// ```
/// use bytemuck::{Pod, Zeroable};
/// use uniconc::{Backend, Value as _};
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
/// #[repr(C)]
/// struct Point {
///     x: f32,
///     y: f32,
/// }
///
/// type B = uniconc::thread::Thread;
/// let p = B::value(Point { x: 1.0, y: 2.0 })?;
/// p.update(|p| p.x += 1.0);
/// assert_eq!(p.load(), Point { x: 2.0, y: 2.0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Plain: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Plain for T {}

/// One shared value of plain data, with its own lock (Python's `Value`).
///
/// `load`, `store` and `update` are atomic with respect to each other and to `lock()`.
/// If a holder died with the lock (process backend), they recover silently: the value is what
/// the dead holder left. Use [`lock`](Value::lock) to be told.
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Value as _};
///
/// type B = uniconc::thread::Thread;
/// let hits = B::value(0u64)?;
/// let units = (0..4)
///     .map(|_| {
///         let hits = hits.clone(); // every clone is the same value
///         B::spawn(move || {
///             for _ in 0..250 {
///                 hits.update(|h| *h += 1);
///             }
///         })
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// for u in units {
///     u.join()?;
/// }
/// assert_eq!(hits.load(), 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Value<T: Plain>: Clone + Send + Sync + 'static {
    /// Exclusive access to the value, released on drop.
    type Guard<'a>: DerefMut<Target = T>
    where
        Self: 'a;

    /// A new shared value holding `value` (what [`Backend::value`](crate::Backend::value)
    /// calls).
    ///
    /// ```
    /// use uniconc::{Backend, Value};
    ///
    /// type V = <uniconc::thread::Thread as Backend>::Value<i32>;
    /// let v = V::new(-3)?;
    /// assert_eq!(v.load(), -3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend; also `InvalidArgument`
    /// there for a type aligned to more than 4096 bytes); never on the others.
    fn new(value: T) -> Result<Self, Error>;

    /// A copy of the value.
    ///
    /// ```
    /// use uniconc::{Backend, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let v = B::value([1u8, 2, 3])?;
    /// assert_eq!(v.load(), [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn load(&self) -> T;

    /// Replaces the value.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let v = B::value(0u32)?;
    /// let writer = v.clone();
    /// B::spawn(move || writer.store(9))?.join()?;
    /// assert_eq!(v.load(), 9); // the unit's write is seen here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn store(&self, value: T);

    /// Runs `f` on the value under its lock and returns what `f` returns
    /// (`v.update(|x| { *x += 1; *x })`): a read-modify-write no other unit can interleave
    /// with. Keep `f` short: it holds the lock.
    ///
    /// ```
    /// use uniconc::{Backend, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let next_id = B::value(100u64)?;
    /// let id = next_id.update(|n| {
    ///     *n += 1;
    ///     *n
    /// });
    /// assert_eq!(id, 101);
    /// assert_eq!(next_id.load(), 101);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U;

    /// Locks the value for a longer critical section; the guard dereferences to `T`.
    ///
    /// ```
    /// use uniconc::{Backend, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let v = B::value(1u32)?;
    /// {
    ///     let mut g = v.lock().unwrap_or_else(|e| e.into_guard());
    ///     *g *= 10;
    ///     *g += 2;
    /// }
    /// assert_eq!(v.load(), 12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `OwnerDied(guard)` (process backend: the previous holder died holding it) /
    /// `Poisoned(guard)` (thread and tokio backends: it panicked holding it; reported once):
    /// acquired all the same, the value is what the previous holder left.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;
}

/// A fixed-length shared array of plain data, with one lock (Python's `Array`).
///
/// Whole-array reads (`to_vec`, iterating a `lock()` guard) run at memory speed: one lock,
/// then plain memory access, never a lock or syscall per element.
///
/// ```
/// use uniconc::{Array as _, Backend, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let squares = B::array::<u64>(8)?;
/// let units = (0..2)
///     .map(|half| {
///         let squares = squares.clone(); // every clone is the same array
///         B::spawn(move || {
///             for i in half * 4..half * 4 + 4 {
///                 squares.set(i, (i * i) as u64).unwrap();
///             }
///         })
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// for u in units {
///     u.join()?;
/// }
/// assert_eq!(squares.to_vec(), [0, 1, 4, 9, 16, 25, 36, 49]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Array<T: Plain>: Clone + Send + Sync + 'static {
    /// Exclusive access to the elements, released on drop.
    type Guard<'a>: DerefMut<Target = [T]>
    where
        Self: 'a;

    /// A new array of `len` zeroed elements (what [`Backend::array`](crate::Backend::array)
    /// calls). The length is fixed for the array's life.
    ///
    /// ```
    /// use uniconc::{Array, Backend};
    ///
    /// type A = <uniconc::thread::Thread as Backend>::Array<f64>;
    /// let a = A::new(4)?;
    /// assert_eq!(a.to_vec(), [0.0; 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if the size in bytes overflows or cannot be allocated; `Os` if the OS
    /// refused to map shared memory (process backend).
    fn new(len: usize) -> Result<Self, Error>;

    /// A new array holding a copy of `items`.
    ///
    /// ```
    /// use uniconc::{Array, Backend};
    ///
    /// type A = <uniconc::thread::Thread as Backend>::Array<u8>;
    /// let a = A::from_slice(b"abc")?;
    /// assert_eq!(a.len(), 3);
    /// assert_eq!(a.get(1), Some(b'b'));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As for [`new`](Array::new).
    fn from_slice(items: &[T]) -> Result<Self, Error>;

    /// Number of elements.
    ///
    /// ```
    /// use uniconc::{Array as _, Backend};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert_eq!(B::array::<u16>(10)?.len(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn len(&self) -> usize;

    /// `true` if the array has no elements.
    ///
    /// ```
    /// use uniconc::{Array as _, Backend};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert!(B::array::<u16>(0)?.is_empty());
    /// assert!(!B::array::<u16>(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index`, or `None` if out of bounds.
    ///
    /// ```
    /// use uniconc::{Array, Backend};
    ///
    /// type A = <uniconc::thread::Thread as Backend>::Array<i32>;
    /// let a = A::from_slice(&[10, 20])?;
    /// assert_eq!(a.get(1), Some(20));
    /// assert_eq!(a.get(2), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get(&self, index: usize) -> Option<T>;

    /// Sets element `index`.
    ///
    /// ```
    /// use uniconc::{Array as _, Backend, ErrorKind};
    ///
    /// type B = uniconc::thread::Thread;
    /// let a = B::array::<u32>(2)?;
    /// a.set(1, 5)?;
    /// assert_eq!(a.set(2, 6).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// assert_eq!(a.to_vec(), [0, 5]); // nothing written out of bounds
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `index` is out of bounds (nothing is written).
    fn set(&self, index: usize, value: T) -> Result<(), Error>;

    /// A copy of every element, taken under the lock at memory speed.
    ///
    /// ```
    /// use uniconc::{Array, Backend};
    ///
    /// type A = <uniconc::thread::Thread as Backend>::Array<u64>;
    /// let a = A::from_slice(&[3, 1, 2])?;
    /// let mut v = a.to_vec(); // a snapshot: sorting it leaves the array as it is
    /// v.sort();
    /// assert_eq!(v, [1, 2, 3]);
    /// assert_eq!(a.to_vec(), [3, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn to_vec(&self) -> Vec<T>;

    /// Locks the array for a longer critical section; the guard dereferences to `[T]`, so every
    /// slice method works on the shared elements in place.
    ///
    /// ```
    /// use uniconc::{Array, Backend};
    ///
    /// type A = <uniconc::thread::Thread as Backend>::Array<u32>;
    /// let a = A::from_slice(&[3, 1, 2])?;
    /// {
    ///     let mut g = a.lock().unwrap_or_else(|e| e.into_guard());
    ///     g.sort(); // in place, under one lock
    ///     assert_eq!(g.iter().sum::<u32>(), 6);
    /// }
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `OwnerDied(guard)` (process backend: the previous holder died holding it) /
    /// `Poisoned(guard)` (thread and tokio backends: it panicked holding it; reported once):
    /// acquired all the same, the elements are what the previous holder left.
    fn lock(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;
}

/// The error `Array::set` returns for an index out of bounds; shared by the backends.
///
/// ```
/// use uniconc::ErrorKind;
/// use uniconc_core::state::index_error;
///
/// let e = index_error(5, 3);
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "index 5 is out of bounds for an array of length 3");
/// ```
pub fn index_error(index: usize, len: usize) -> Error {
    Error::invalid_argument(format!(
        "index {index} is out of bounds for an array of length {len}"
    ))
}
