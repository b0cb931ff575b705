//! Shared state: [`Value`] and [`Array`] of plain data in shared memory, each with its own
//! robust lock (Python's `multiprocessing.Value` and `Array`).
//!
//! Layout of a region: `[ RawLock | padding | T ... ]`, the data at offset
//! `max(64, align_of::<T>())` (page-aligned region, so any alignment up to 4096 holds). The
//! element count lives in the process-private handle, never read back from shared memory.
//! Every access to the data holds the lock (Acquire on taking it, Release on giving it back),
//! so no data race is reachable from safe code; whole-array reads are one lock and a `memcpy`.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;

use uniconc_core::state::index_error;
use uniconc_core::{Error, LockError, Name, Plain};

use crate::lock::{Acquired, RawLock};
use crate::procs;
use crate::shm::{Region, align_up};
use crate::{file, named};

#[derive(Debug)]
struct Cells {
    region: Region,
    /// Where the `RawLock` sits: 0, or in a file-backed array's header page.
    lock_off: usize,
    data_off: usize,
}

impl Cells {
    fn new<T: Plain>(len: usize) -> Result<Self, Error> {
        let (data_off, bytes) = Self::layout::<T>(len)?;
        procs::install_fork_handlers();
        Ok(Self {
            region: Region::new(bytes, false)?,
            lock_off: 0,
            data_off,
        })
    }

    /// The cells of the value (`kind` `Value`, `len` 1) or array named `name`; `init` is
    /// written to every element when it is created here. On open, the element type (its
    /// name, size and alignment) and the length must be the ones asked for.
    fn named<T: Plain>(
        name: &Name,
        kind: named::Kind,
        len: usize,
        init: Option<T>,
    ) -> Result<Self, Error> {
        let (data_off, bytes) = Self::layout::<T>(len)?;
        let (size, align) = (size_of::<T>() as u64, align_of::<T>() as u64);
        let spec = named::Spec {
            kind,
            type_name: std::any::type_name::<T>(),
            params: [len as u64, size, align, 0],
            len: bytes,
        };
        procs::install_fork_handlers();
        let attached = named::attach(
            name,
            &spec,
            |r| {
                if let Some(v) = init {
                    for i in 0..len {
                        // SAFETY: `data_off + (i + 1) * size <= bytes`, the region's length
                        // (from `layout`); aligned for `T` (`data_off` is, and `size` is a
                        // multiple of the alignment); the file has no name yet: not shared.
                        unsafe { r.base().add(data_off).cast::<T>().add(i).write(v) };
                    }
                }
                Ok(())
            },
            |p| {
                if p[1..3] != [size, align] {
                    return Err(Error::incompatible(format!(
                        "the named object {name} holds elements of {} bytes aligned to {}, not \
                         {size} aligned to {align}",
                        p[1], p[2]
                    )));
                }
                if p[0] != len as u64 {
                    return Err(Error::incompatible(format!(
                        "the named object {name} holds {} elements, not {len}",
                        p[0]
                    )));
                }
                Ok(bytes)
            },
        )?;
        Ok(Self {
            region: attached.region,
            lock_off: 0,
            data_off,
        })
    }

    /// The data offset and the region's length for `len` elements of `T`.
    fn layout<T>(len: usize) -> Result<(usize, usize), Error> {
        if align_of::<T>() > 4096 {
            return Err(Error::invalid_argument(
                "alignment above 4096 bytes is not supported in shared memory",
            ));
        }
        let data_off = align_up(64, align_of::<T>().max(64));
        let bytes = size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.checked_add(data_off))
            .ok_or_else(|| Error::invalid_argument("shared array size overflows"))?;
        Ok((data_off, bytes))
    }

    /// The cells of an array file (see `file`): the lock in its header page, the elements
    /// at `file::DATA_OFFSET`.
    fn file(mapped: file::MappedArray) -> (Self, usize) {
        procs::install_fork_handlers();
        let cells = Self {
            region: mapped.region,
            lock_off: file::RAW_LOCK_OFFSET,
            data_off: file::DATA_OFFSET,
        };
        (cells, mapped.len)
    }

    fn elem<T>() -> file::Elem {
        file::Elem {
            type_name: std::any::type_name::<T>(),
            size: size_of::<T>(),
            align: align_of::<T>(),
        }
    }

    fn raw(&self) -> &RawLock {
        self.region.at(self.lock_off)
    }

    fn data<T>(&self) -> *mut T {
        // SAFETY: `data_off` is within the region (checked in `new`).
        unsafe { self.region.base().add(self.data_off).cast() }
    }

    fn lock(&self) -> Acquired {
        self.raw()
            .lock_deadline(None)
            .expect("a wait without deadline cannot time out")
    }
}

/// One shared value of plain data, with its own lock.
///
/// The value and a robust lock (the one of [`Lock`](crate::Lock)) sit in one shared mapping:
/// writes by a forked child are seen by the parent. A process killed while holding the
/// value's lock never leaves it stuck: the next `lock()` takes it over and reports
/// `LockError::OwnerDied` with the guard (`load`, `store` and `update` take it over
/// silently). The value may then be half-updated. Likewise a holder that panics (a guard, or
/// an `update` closure, unwinding in any process) poisons the lock: the next `lock()` returns
/// `LockError::Poisoned` with the guard, once (`load`, `store` and `update` neither report
/// nor clear it), as on every backend.
///
/// ```
/// use uniconc::{Event as _, JoinHandle as _, LockError, Value as _};
/// let v = uniconc::process::value([0u32; 2])?;
/// let child = uniconc::process::spawn({
///     let v = v.clone();
///     move || v.update(|x| x[0] = 42)
/// })?;
/// child.join()?;
/// assert_eq!(v.load(), [42, 0]); // written by the child
///
/// let (half_done, never) = (uniconc::process::event()?, uniconc::process::event()?);
/// let child = uniconc::process::spawn({
///     let (v, half_done, never) = (v.clone(), half_done.clone(), never.clone());
///     move || {
///         let mut g = v.lock().unwrap();
///         g[1] = 1; // the first half of an update...
///         half_done.set();
///         never.wait(); // ...killed before the second half
///     }
/// })?;
/// half_done.wait();
/// child.kill()?;
/// child.join().unwrap_err();
/// match v.lock() {
///     Err(LockError::OwnerDied(g)) => assert_eq!(*g, [42, 1]), // ours now, half-updated
///     _ => panic!("expected OwnerDied"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T> {
    cells: Arc<Cells>,
    _m: PhantomData<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self {
            cells: self.cells.clone(),
            _m: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value").finish_non_exhaustive()
    }
}

/// Exclusive access to a [`Value`]; releases its lock on drop.
///
/// Dereferences to the value, for several reads and writes under one lock.
///
/// ```
/// use uniconc::Value as _;
/// let v = uniconc::process::value([0u32; 2])?;
/// {
///     let mut g = v.lock().unwrap();
///     g[0] = 5;
///     g[1] = g[0] * 2;
/// } // released here
/// assert_eq!(v.load(), [5, 10]);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct ValueGuard<'a, T> {
    cells: &'a Cells,
    _m: PhantomData<&'a mut T>,
}

// SAFETY: the guard gives `&mut T` access; sending it to another thread is fine for `T: Send`
// (the lock is process-owned, so release from any thread of this process is correct).
unsafe impl<T: Send> Send for ValueGuard<'_, T> {}
// SAFETY: `&ValueGuard` only gives `&T`.
unsafe impl<T: Sync> Sync for ValueGuard<'_, T> {}

impl<T> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueGuard").finish_non_exhaustive()
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's lifetime, so no other process or thread
        // accesses the value; the pointer is aligned, in bounds and holds a valid `T` (Pod:
        // any bit pattern, zero-initialised).
        unsafe { &*self.cells.data::<T>() }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes the access unique in this process.
        unsafe { &mut *self.cells.data::<T>() }
    }
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.cells.raw().unlock();
    }
}

impl<T: Plain> Value<T> {
    /// The value named `name`, holding `value` if it is created here (see
    /// [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &Name, value: T) -> Result<Self, Error> {
        Ok(Self {
            cells: Arc::new(Cells::named(name, named::Kind::Value, 1, Some(value))?),
            _m: PhantomData,
        })
    }
}

impl<T: Plain> uniconc_core::Value<T> for Value<T> {
    type Guard<'a> = ValueGuard<'a, T>;

    fn new(value: T) -> Result<Self, Error> {
        let cells = Cells::new::<T>(1)?;
        // SAFETY: fresh region, not yet shared; aligned and in bounds.
        unsafe { cells.data::<T>().write(value) };
        Ok(Self {
            cells: Arc::new(cells),
            _m: PhantomData,
        })
    }

    fn load(&self) -> T {
        self.cells.lock();
        let g = ValueGuard::<T> {
            cells: &self.cells,
            _m: PhantomData,
        };
        *g
    }

    fn store(&self, value: T) {
        self.cells.lock();
        let mut g = ValueGuard::<T> {
            cells: &self.cells,
            _m: PhantomData,
        };
        *g = value;
    }

    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        self.cells.lock();
        let mut g = ValueGuard::<T> {
            cells: &self.cells,
            _m: PhantomData,
        };
        f(&mut g)
    }

    fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        let a = self.cells.lock();
        let g = ValueGuard {
            cells: &self.cells,
            _m: PhantomData,
        };
        self.cells.raw().report(a, g)
    }
}

/// A fixed-length shared array of plain data, with one lock.
///
/// The elements and one robust lock sit in one shared mapping (Python's
/// `multiprocessing.Array`): a child's writes are seen by the parent; whole-array reads are
/// one lock and one copy. As for [`Value`], a process killed while holding the lock is
/// reported by the next `lock()` as `LockError::OwnerDied`, and a holder that panics as
/// `LockError::Poisoned` (once).
///
/// ```
/// use uniconc::{Array as _, JoinHandle as _};
/// let a = uniconc::process::array::<u32>(4)?;
/// a.set(2, 7)?;
/// let child = uniconc::process::spawn({
///     let a = a.clone();
///     move || a.set(3, 9).is_ok()
/// })?;
/// assert!(child.join()?);
/// assert_eq!(a.to_vec(), vec![0, 0, 7, 9]);
/// assert!(a.set(4, 1).is_err()); // out of bounds
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T> {
    cells: Arc<Cells>,
    len: usize,
    _m: PhantomData<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            cells: self.cells.clone(),
            len: self.len,
            _m: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Exclusive access to an [`Array`]'s elements; releases its lock on drop.
///
/// Dereferences to a slice, for several reads and writes under one lock.
///
/// ```
/// use uniconc::{Array as _, JoinHandle as _};
/// let a = uniconc::process::array::<u64>(5)?;
/// let child = uniconc::process::spawn({
///     let a = a.clone();
///     move || {
///         let mut g = a.lock().unwrap();
///         for (i, x) in g.iter_mut().enumerate() {
///             *x = i as u64 * 10;
///         }
///         g.iter().sum::<u64>()
///     }
/// })?;
/// assert_eq!(child.join()?, 100);
/// assert_eq!(a.to_vec(), [0, 10, 20, 30, 40]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ArrayGuard<'a, T> {
    cells: &'a Cells,
    len: usize,
    _m: PhantomData<&'a mut [T]>,
}

// SAFETY: as for `ValueGuard`.
unsafe impl<T: Send> Send for ArrayGuard<'_, T> {}
// SAFETY: as for `ValueGuard`.
unsafe impl<T: Sync> Sync for ArrayGuard<'_, T> {}

impl<T> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: lock held; `len` elements fit the region (checked in `Cells::new` with the
        // private `len`); Pod elements are valid for any bits.
        unsafe { std::slice::from_raw_parts(self.cells.data::<T>(), self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, unique through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.cells.data::<T>(), self.len) }
    }
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.cells.raw().unlock();
    }
}

impl<T: Plain> Array<T> {
    fn guard(&self) -> ArrayGuard<'_, T> {
        self.cells.lock();
        ArrayGuard {
            cells: &self.cells,
            len: self.len,
            _m: PhantomData,
        }
    }
}

impl<T: Plain> Array<T> {
    /// The array of `len` elements named `name`, zeroed if it is created here (see
    /// [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &Name, len: usize) -> Result<Self, Error> {
        Ok(Self {
            cells: Arc::new(Cells::named::<T>(name, named::Kind::Array, len, None)?),
            len,
            _m: PhantomData,
        })
    }
}

impl<T: Plain> Array<T> {
    /// A new array of `len` zeroed elements in a new file at `path`, which outlives every
    /// process (Python's `mmap` over a file). The file is a 4096-byte header page (the
    /// element type, the length, the array's lock) then the elements as plain `T`s in the
    /// host's byte order (little-endian on x86-64 and AArch64), so another program reads them
    /// at offset 4096: numpy's `np.memmap(path, dtype="<u4", offset=4096)` for a `u32` array
    /// (the layout: see the crate's README, "File-backed arrays").
    ///
    /// The file appears whole (it is made under a temporary name, then linked), and an
    /// existing file is never overwritten. Forked children share the array as any other;
    /// another process maps it with [`open_file`](Self::open_file). The lock lives in the
    /// file: a process killed holding it is reported as `OwnerDied`, as for an anonymous
    /// array, and a lock word left by an earlier boot of the machine is cleared by the first
    /// opener of the new boot (Linux). [`flush`](Self::flush) writes it to the disk.
    ///
    /// ```
    /// use uniconc::Array as _;
    /// let path = std::env::temp_dir().join(format!("uniconc-doc-array-{}", std::process::id()));
    /// let a = uniconc::process::Array::<u32>::create_file(&path, 3)?;
    /// a.set(1, 7)?;
    /// a.flush()?;
    /// drop(a);
    /// let b = uniconc::process::Array::<u32>::open_file(&path)?; // a later run, or another program
    /// assert_eq!(b.to_vec(), [0, 7, 0]);
    /// let bytes = std::fs::read(&path)?;
    /// assert_eq!(bytes.len(), 4096 + 3 * 4);
    /// assert_eq!(bytes[4100..4104], 7u32.to_ne_bytes()); // element 1, at 4096 + 1 * 4
    /// assert!(uniconc::process::Array::<u64>::open_file(&path).is_err()); // another type
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `AlreadyExists` if `path` exists; `InvalidArgument` if the size overflows or `T` is
    /// aligned to more than 4096 bytes; `Os` if the file cannot be created, sized or mapped.
    pub fn create_file(path: impl AsRef<Path>, len: usize) -> Result<Self, Error> {
        Cells::layout::<T>(len)?; // refuses alignments the page cannot give
        let (cells, len) =
            Cells::file(file::create_array(path.as_ref(), &Cells::elem::<T>(), len)?);
        Ok(Self {
            cells: Arc::new(cells),
            len,
            _m: PhantomData,
        })
    }

    /// Maps the array file at `path` (made by [`create_file`](Self::create_file), in any
    /// process); its length is the file's.
    ///
    /// The file is untrusted input: it is opened without following a symbolic link, must be
    /// a regular file, and its header is checked before anything is mapped. A file truncated
    /// *while* it is mapped makes the next access fault (`SIGBUS`), as for any file mapping.
    ///
    /// # Errors
    /// `NotFound` if there is no file; `InvalidArgument` if `path` is a symbolic link or not
    /// a regular file; `Incompatible` if it is not an array file, has another layout version
    /// or byte order, holds another element type (name, size or alignment), or its size is
    /// not what its header implies (truncated); `Os` if it cannot be opened read-write or
    /// mapped.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Cells::layout::<T>(0)?;
        let (cells, len) = Cells::file(file::open_array(path.as_ref(), &Cells::elem::<T>())?);
        Ok(Self {
            cells: Arc::new(cells),
            len,
            _m: PhantomData,
        })
    }

    /// Writes the array's dirty pages to its file and waits for the disk (`msync(MS_SYNC)`);
    /// for an array not backed by a disk file it only returns. It does not take the lock:
    /// hold a [`lock`](uniconc_core::Array::lock) guard across it to write a consistent
    /// state.
    ///
    /// # Errors
    /// `Os` if the kernel reports a write error.
    pub fn flush(&self) -> Result<(), Error> {
        file::flush(&self.cells.region)
    }
}

impl<T: Plain> uniconc_core::Array<T> for Array<T> {
    type Guard<'a> = ArrayGuard<'a, T>;

    fn new(len: usize) -> Result<Self, Error> {
        Ok(Self {
            cells: Arc::new(Cells::new::<T>(len)?),
            len,
            _m: PhantomData,
        })
    }

    fn from_slice(items: &[T]) -> Result<Self, Error> {
        let a = Self::new(items.len())?;
        a.guard().copy_from_slice(items);
        Ok(a)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        Some(self.guard()[index])
    }

    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        if index >= self.len {
            return Err(index_error(index, self.len));
        }
        self.guard()[index] = value;
        Ok(())
    }

    fn to_vec(&self) -> Vec<T> {
        self.guard().to_vec()
    }

    fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        let a = self.cells.lock();
        let g = ArrayGuard {
            cells: &self.cells,
            len: self.len,
            _m: PhantomData,
        };
        self.cells.raw().report(a, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{array, value};
    use uniconc_core::{Array as _, Value as _};

    #[test]
    fn value_ops() {
        let v = value(5i32).unwrap();
        v.store(6);
        assert_eq!(v.load(), 6);
        assert_eq!(
            v.update(|x| {
                *x *= 2;
                *x
            }),
            12
        );
        *v.lock().unwrap() += 1;
        assert_eq!(v.load(), 13);
    }

    #[test]
    fn array_ops() {
        let a = Array::from_slice(&[1u64, 2, 3]).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(1), Some(2));
        assert_eq!(a.get(3), None);
        assert!(a.set(3, 0).is_err());
        a.lock().unwrap()[0] = 9;
        assert_eq!(a.to_vec(), vec![9, 2, 3]);
        let empty = array::<u8>(0).unwrap();
        assert!(empty.is_empty());
        assert!(empty.to_vec().is_empty());
    }
}
