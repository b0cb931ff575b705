//! [`Value`] and [`Array`]: plain data in one Redis string, guarded by the crate's [`Lock`].
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! The object is a [`Lock`] (keys `m`, `h`, notification channel `w`) plus `d`, a string
//! holding the bytes of the data (`bytemuck`: a `T`, or `len` `T`s back to back). `d` lives and
//! dies with the lock's keys: it is deleted when the last handle goes, and expires after
//! [`IDLE_TTL`](crate::IDLE_TTL) when every holder's process died.
//!
//! # Reads, writes and the lock
//!
//! `load`, `get` and `to_vec` are one `GET`/`GETRANGE` each: a write is one `SET`/`SETRANGE`
//! inside a script, so a read sees a whole value, never half of one. `store`, `set`, `update`
//! and the guard of `lock()` take the lock (its lease, its fencing token), read, and write back
//! **and** release in one script, which refuses the write unless this holder still holds the
//! lock at its fencing token with a live lease. So a read-modify-write cannot interleave with
//! another, and a holder paused past its lease (whose lock went to someone else, who got
//! `OwnerDied`) cannot overwrite what the newer holder wrote.
//!
//! # A refused write-back
//!
//! [`ValueGuard::commit`] / [`ArrayGuard::commit`] write back, release and say whether the
//! write was accepted: `Closed` when the lease had lapsed (nothing written). A guard dropped
//! without `commit` writes back too (when it was written through); a refusal or failure there
//! cannot be returned, and a panic in `Drop` would abort a thread already unwinding, so it is
//! recorded: [`Value::last_failure`] / [`Array::last_failure`] says what was lost. Call
//! `commit` where a lost write matters. `store` and `set` are retried after a refusal (they
//! wrote nothing, so a retry is safe); `update` panics, since its closure already ran and
//! cannot be run again.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use uniconc_core::state::index_error;
use uniconc_core::{Error, LockError, Plain};

use crate::conn::{self, Connection, block_on_short, redis_error};
use crate::lock::{Lock, LockGuard};

/// Redis's limit on a string's size.
const MAX_BYTES: usize = 512 * 1024 * 1024;

/// What the previous holder of the lock did.
enum Previous {
    Clean,
    Died,
    Panicked,
}

/// The lock and the record of failed write-backs, shared by a Value's or Array's clones.
struct Core {
    lock: Lock,
    failure: Arc<Mutex<Option<String>>>,
    what: &'static str,
}

impl Clone for Core {
    fn clone(&self) -> Self {
        Self {
            lock: self.lock.clone(),
            failure: self.failure.clone(),
            what: self.what,
        }
    }
}

impl Core {
    fn new(lock: Lock, what: &'static str) -> Self {
        Self {
            lock,
            failure: Arc::new(Mutex::new(None)),
            what,
        }
    }

    fn fatal(&self, e: &Error) -> ! {
        panic!("uniconc-redis: {} `{}`: {e}", self.what, self.lock.id())
    }

    fn record(&self, message: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    fn last_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The data's bytes, or the bytes `start..=end` of them.
    fn read(&self, range: Option<(usize, usize)>) -> Result<Vec<u8>, Error> {
        let live = self.lock.live_checked(self.what)?.clone();
        let key = self.lock.data_key().to_owned();
        self.lock.connection().count(1);
        let r: Option<Vec<u8>> = block_on_short(async move {
            let mut c = live.cmd.clone();
            match range {
                None => redis::cmd("GET").arg(&key).query_async(&mut c).await,
                Some((start, end)) => {
                    // GETRANGE of a missing key is "": ask EXISTS in the same transaction.
                    let (exists, bytes): (i64, Vec<u8>) = redis::pipe()
                        .atomic()
                        .cmd("EXISTS")
                        .arg(&key)
                        .cmd("GETRANGE")
                        .arg(&key)
                        .arg(start)
                        .arg(end)
                        .query_async(&mut c)
                        .await?;
                    Ok((exists == 1).then_some(bytes))
                }
            }
        })
        .map_err(|e| redis_error("reading", e))?;
        r.ok_or_else(|| conn::gone_error(self.what, self.lock.id()))
    }

    /// Takes the lock (waiting as long as it takes) and decodes the data with `decode`. Bytes
    /// that do not decode release the lock unchanged and panic.
    fn hold<D>(&self, decode: impl FnOnce(&[u8]) -> Result<D, Error>) -> (Held<'_>, D, Previous) {
        let (token, fence, previous, bytes) = self.acquire();
        let mut held = Held {
            core: self,
            token,
            fence,
            dirty: false,
            done: false,
        };
        match decode(&bytes) {
            Ok(data) => (held, data, previous),
            Err(e) => {
                held.drop_with(&[]);
                self.fatal(&e)
            }
        }
    }

    /// Takes the lock (waiting as long as it takes) and reads the data.
    fn acquire(&self) -> (String, u64, Previous, Vec<u8>) {
        self.lock
            .live_checked(self.what)
            .unwrap_or_else(|e| self.fatal(&e));
        let (g, previous): (LockGuard<'_>, _) = match uniconc_core::Lock::lock(&self.lock) {
            Ok(g) => (g, Previous::Clean),
            Err(LockError::OwnerDied(g)) => (g, Previous::Died),
            Err(LockError::Poisoned(g)) => (g, Previous::Panicked),
        };
        let bytes = match self.read(None) {
            Ok(b) => b,
            // The guard's drop releases the lock.
            Err(e) => {
                drop(g);
                self.fatal(&e)
            }
        };
        let (token, fence) = g.into_parts();
        (token, fence, previous, bytes)
    }

    /// Writes back (`Some(bytes)`) or not, and releases. `Ok(false)`: refused.
    fn finish(
        &self,
        token: &str,
        fence: u64,
        bytes: Option<&[u8]>,
        offset: Option<usize>,
    ) -> Result<bool, Error> {
        let poisoned = std::thread::panicking();
        block_on_short(async {
            match bytes {
                Some(b) => {
                    self.lock
                        .write_release(token, fence, poisoned, offset, b)
                        .await
                }
                None => self.lock.release_token(token, poisoned).await,
            }
        })
    }

    fn refused(&self, fence: u64) -> Error {
        Error::closed(format!(
            "redis: the write-back to {} `{}` was refused: this holder's lease (fencing token \
             {fence}) lapsed, so another holder may have taken the lock and written since; \
             nothing was written",
            self.what,
            self.lock.id()
        ))
    }

    /// Writes `bytes` (at `offset`) under the lock, retrying after a refusal (which wrote
    /// nothing).
    fn write(&self, bytes: &[u8], offset: Option<usize>) -> Result<(), Error> {
        loop {
            let (token, fence) = self.acquire_no_read()?;
            if self.finish(&token, fence, Some(bytes), offset)? {
                return Ok(());
            }
        }
    }

    /// Takes the lock for a blind write: what the previous holder did does not matter, the
    /// write replaces it.
    fn acquire_no_read(&self) -> Result<(String, u64), Error> {
        self.lock.live_checked(self.what)?;
        let g = uniconc_core::Lock::lock(&self.lock).unwrap_or_else(LockError::into_guard);
        Ok(g.into_parts())
    }
}

/// A held lock with the data read under it: what both guards share.
struct Held<'a> {
    core: &'a Core,
    token: String,
    fence: u64,
    dirty: bool,
    done: bool,
}

impl Held<'_> {
    fn commit(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.done = true;
        let token = std::mem::take(&mut self.token);
        let write = self.dirty.then_some(bytes);
        match self.core.finish(&token, self.fence, write, None)? {
            true => Ok(()),
            false if write.is_some() => Err(self.core.refused(self.fence)),
            // Nothing to write: a lapsed lease lost nothing.
            false => Ok(()),
        }
    }

    fn drop_with(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        if let Err(e) = self.commit(bytes) {
            self.core.record(e.to_string());
        }
    }
}

fn decode_one<T: Plain>(core: &Core, bytes: &[u8]) -> Result<T, Error> {
    if bytes.len() != size_of::<T>() {
        return Err(Error::invalid_argument(format!(
            "redis: {} `{}` holds {} bytes, not the {} of a `{}`: it was created with another type",
            core.what,
            core.lock.id(),
            bytes.len(),
            size_of::<T>(),
            std::any::type_name::<T>()
        )));
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

fn decode_many<T: Plain>(core: &Core, bytes: &[u8], len: usize) -> Result<Vec<T>, Error> {
    if bytes.len() != len * size_of::<T>() {
        return Err(Error::invalid_argument(format!(
            "redis: {} `{}` holds {} bytes, not {len} `{}`s: it was created with another type",
            core.what,
            core.lock.id(),
            bytes.len(),
            std::any::type_name::<T>()
        )));
    }
    // Redis's bytes are not aligned for `T`: read each element unaligned.
    Ok(bytes
        .chunks_exact(size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Value
// ---------------------------------------------------------------------------------------------

/// One value of plain data on a Redis server, shared by every process that has its id. Clones
/// are the same value.
///
/// ```no_run
/// use uniconc_core::Value as _;
///
/// let conn = uniconc_redis::default_connection()?;
/// let hits = conn.value(0u64)?;
/// hits.update(|h| *h += 1);
/// assert_eq!(hits.load(), 1);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct Value<T: Plain> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

impl<T: Plain> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Plain> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("id", &self.core.lock.id())
            .finish_non_exhaustive()
    }
}

/// Exclusive access to a [`Value`]: dereferences to a copy read under the lock; written back
/// (if written through) and released by [`commit`](Self::commit) or on drop.
#[must_use = "dropping the guard writes back and releases the lock at once"]
pub struct ValueGuard<'a, T: Plain> {
    held: Held<'a>,
    data: T,
}

impl<T: Plain> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard")
            .field("fencing_token", &self.held.fence)
            .finish_non_exhaustive()
    }
}

impl<T: Plain> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: Plain> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.held.dirty = true;
        &mut self.data
    }
}

impl<T: Plain> ValueGuard<'_, T> {
    /// The fencing token of this hold of the value's lock.
    pub fn fencing_token(&self) -> u64 {
        self.held.fence
    }

    /// Writes the value back (if it was written through) and releases the lock.
    ///
    /// # Errors
    ///
    /// `Closed` when the write was refused because this holder's lease had lapsed (another
    /// holder may have written since; nothing was written) or the value is gone; `Os` when the
    /// server cannot be reached.
    pub fn commit(mut self) -> Result<(), Error> {
        let data = self.data;
        self.held.commit(bytemuck::bytes_of(&data))
    }
}

impl<T: Plain> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        let data = self.data;
        self.held.drop_with(bytemuck::bytes_of(&data));
    }
}

impl<T: Plain> Value<T> {
    /// The value's id: another process opens it with [`Connection::open_value`].
    pub fn id(&self) -> &str {
        self.core.lock.id()
    }

    /// Why the last guard dropped without [`ValueGuard::commit`] failed to write back, if one
    /// did (its lease had lapsed, the server could not be reached).
    pub fn last_failure(&self) -> Option<String> {
        self.core.last_failure()
    }

    fn guard(&self) -> (ValueGuard<'_, T>, Previous) {
        let (held, data, previous) = self.core.hold(|bytes| decode_one(&self.core, bytes));
        (ValueGuard { held, data }, previous)
    }
}

impl<T: Plain> uniconc_core::Value<T> for Value<T> {
    type Guard<'a> = ValueGuard<'a, T>;

    /// A new value on the [default connection](crate::default_connection).
    fn new(value: T) -> Result<Self, Error> {
        conn::default_connection()?.value(value)
    }

    /// # Panics
    ///
    /// If the server cannot be reached or the value is gone from it (restarted without
    /// persistence, flushed), or in a forked child on a handle of its parent.
    fn load(&self) -> T {
        self.core
            .read(None)
            .and_then(|b| decode_one(&self.core, &b))
            .unwrap_or_else(|e| self.core.fatal(&e))
    }

    /// # Panics
    ///
    /// As [`load`](uniconc_core::Value::load).
    fn store(&self, value: T) {
        self.core
            .write(bytemuck::bytes_of(&value), None)
            .unwrap_or_else(|e| self.core.fatal(&e));
    }

    /// # Panics
    ///
    /// As [`load`](uniconc_core::Value::load); and if the write-back is refused because this
    /// process's lease lapsed while `f` ran (paused or cut off for longer than
    /// [`LEASE`](crate::LEASE)): the update is then lost, and `f` cannot be run again.
    fn update<U>(&self, f: impl FnOnce(&mut T) -> U) -> U {
        let (mut g, _) = self.guard();
        let r = f(&mut g);
        g.commit().unwrap_or_else(|e| self.core.fatal(&e));
        r
    }

    /// # Panics
    ///
    /// As [`load`](uniconc_core::Value::load).
    fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        match self.guard() {
            (g, Previous::Clean) => Ok(g),
            (g, Previous::Died) => Err(LockError::OwnerDied(g)),
            (g, Previous::Panicked) => Err(LockError::Poisoned(g)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Array
// ---------------------------------------------------------------------------------------------

/// A fixed-length array of plain data on a Redis server, shared by every process that has its
/// id. Clones are the same array.
///
/// ```no_run
/// use uniconc_core::Array as _;
///
/// let conn = uniconc_redis::default_connection()?;
/// let a = conn.array::<u32>(4)?;
/// a.set(2, 7)?;
/// assert_eq!(a.to_vec(), [0, 0, 7, 0]);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct Array<T: Plain> {
    core: Core,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Plain> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("id", &self.core.lock.id())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Exclusive access to an [`Array`]: dereferences to a copy of the elements read under the
/// lock; written back (if written through) and released by [`commit`](Self::commit) or on drop.
#[must_use = "dropping the guard writes back and releases the lock at once"]
pub struct ArrayGuard<'a, T: Plain> {
    held: Held<'a>,
    data: Vec<T>,
}

impl<T: Plain> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("fencing_token", &self.held.fence)
            .finish_non_exhaustive()
    }
}

impl<T: Plain> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data
    }
}

impl<T: Plain> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.held.dirty = true;
        &mut self.data
    }
}

impl<T: Plain> ArrayGuard<'_, T> {
    /// The fencing token of this hold of the array's lock.
    pub fn fencing_token(&self) -> u64 {
        self.held.fence
    }

    /// Writes the elements back (if they were written through) and releases the lock.
    ///
    /// # Errors
    ///
    /// As [`ValueGuard::commit`].
    pub fn commit(mut self) -> Result<(), Error> {
        let data = std::mem::take(&mut self.data);
        self.held.commit(bytemuck::cast_slice(&data))
    }
}

impl<T: Plain> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        self.held.drop_with(bytemuck::cast_slice(&data));
    }
}

/// The size in bytes of `len` `T`s, refused when Redis could not hold it.
fn array_bytes<T: Plain>(len: usize) -> Result<usize, Error> {
    if size_of::<T>() == 0 {
        return Err(Error::invalid_argument(
            "redis: an Array of a zero-sized type has no bytes to store: use a Value",
        ));
    }
    len.checked_mul(size_of::<T>())
        .filter(|&n| n <= MAX_BYTES)
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "redis: an Array of {len} `{}` does not fit a Redis string (512 MiB)",
                std::any::type_name::<T>()
            ))
        })
}

impl<T: Plain> Array<T> {
    /// The array's id: another process opens it with [`Connection::open_array`].
    pub fn id(&self) -> &str {
        self.core.lock.id()
    }

    /// Why the last guard dropped without [`ArrayGuard::commit`] failed to write back, if one
    /// did (its lease had lapsed, the server could not be reached).
    pub fn last_failure(&self) -> Option<String> {
        self.core.last_failure()
    }

    fn guard(&self) -> (ArrayGuard<'_, T>, Previous) {
        let (held, data, previous) = self
            .core
            .hold(|bytes| decode_many(&self.core, bytes, self.len));
        (ArrayGuard { held, data }, previous)
    }
}

impl<T: Plain> uniconc_core::Array<T> for Array<T> {
    type Guard<'a> = ArrayGuard<'a, T>;

    /// A new array on the [default connection](crate::default_connection).
    fn new(len: usize) -> Result<Self, Error> {
        conn::default_connection()?.array(len)
    }

    /// A new array on the [default connection](crate::default_connection).
    fn from_slice(items: &[T]) -> Result<Self, Error> {
        conn::default_connection()?.array_from_slice(items)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// # Panics
    ///
    /// As [`Value::load`](uniconc_core::Value::load).
    fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let size = size_of::<T>();
        let start = index * size;
        let r = self
            .core
            .read(Some((start, start + size - 1)))
            .and_then(|b| decode_one(&self.core, &b));
        Some(r.unwrap_or_else(|e| self.core.fatal(&e)))
    }

    /// # Errors
    ///
    /// `InvalidArgument` when `index` is out of bounds (nothing is written); `Closed` when the
    /// array is gone from the server; `Os` when the server cannot be reached.
    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        if index >= self.len {
            return Err(index_error(index, self.len));
        }
        self.core
            .write(bytemuck::bytes_of(&value), Some(index * size_of::<T>()))
    }

    /// # Panics
    ///
    /// As [`Value::load`](uniconc_core::Value::load).
    fn to_vec(&self) -> Vec<T> {
        self.core
            .read(None)
            .and_then(|b| decode_many(&self.core, &b, self.len))
            .unwrap_or_else(|e| self.core.fatal(&e))
    }

    /// # Panics
    ///
    /// As [`Value::load`](uniconc_core::Value::load).
    fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        match self.guard() {
            (g, Previous::Clean) => Ok(g),
            (g, Previous::Died) => Err(LockError::OwnerDied(g)),
            (g, Previous::Panicked) => Err(LockError::Poisoned(g)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------

impl Connection {
    /// A new shared value on this server, holding `value`.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn value<T: Plain>(&self, value: T) -> Result<Value<T>, Error> {
        let lock = Lock::create_with(self, Some(bytemuck::bytes_of(&value)))?;
        Ok(Value {
            core: Core::new(lock, "value"),
            _t: PhantomData,
        })
    }

    /// Opens the value `id` (from [`Value::id`]), from any process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id or a value of another size than `T`; `Closed` when
    /// the value is gone; `Os` when the server cannot be reached.
    pub fn open_value<T: Plain>(&self, id: &str) -> Result<Value<T>, Error> {
        let lock = self.open_lock_with(id, true, "value")?;
        let core = Core::new(lock, "value");
        decode_one::<T>(&core, &core.read(None)?)?;
        Ok(Value {
            core,
            _t: PhantomData,
        })
    }

    /// A new shared array of `len` zeroed elements on this server.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when the array would not fit a Redis string (512 MiB) or `T` is
    /// zero-sized; `Os` when the server cannot be reached.
    pub fn array<T: Plain>(&self, len: usize) -> Result<Array<T>, Error> {
        let bytes = vec![0u8; array_bytes::<T>(len)?];
        let lock = Lock::create_with(self, Some(&bytes))?;
        Ok(Array {
            core: Core::new(lock, "array"),
            len,
            _t: PhantomData,
        })
    }

    /// A new shared array on this server holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`array`](Self::array).
    pub fn array_from_slice<T: Plain>(&self, items: &[T]) -> Result<Array<T>, Error> {
        array_bytes::<T>(items.len())?;
        let lock = Lock::create_with(self, Some(bytemuck::cast_slice(items)))?;
        Ok(Array {
            core: Core::new(lock, "array"),
            len: items.len(),
            _t: PhantomData,
        })
    }

    /// Opens the array `id` (from [`Array::id`]), from any process; its length is read from
    /// the server.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id or an array whose size is not a multiple of `T`'s;
    /// `Closed` when the array is gone; `Os` when the server cannot be reached.
    pub fn open_array<T: Plain>(&self, id: &str) -> Result<Array<T>, Error> {
        array_bytes::<T>(0)?;
        let lock = self.open_lock_with(id, true, "array")?;
        let core = Core::new(lock, "array");
        let n = core.read(None)?.len();
        if n % size_of::<T>() != 0 {
            return Err(Error::invalid_argument(format!(
                "redis: array `{id}` holds {n} bytes, not a whole number of `{}`s",
                std::any::type_name::<T>()
            )));
        }
        Ok(Array {
            core,
            len: n / size_of::<T>(),
            _t: PhantomData,
        })
    }
}
