//! In-process [`Map`] and [`List`] for the thread and tokio backends: a std `Mutex` around a
//! `HashMap` (keys as they are, values encoded) or a `Vec` of encoded elements (small ones in
//! place, see [`Stored`]).
//!
//! Values are stored encoded, as the process backend stores them, so that every backend
//! hands out decoded copies of any `Message` (which need not be `Clone`), a panicking `update`
//! leaves the collection unchanged, and a value too large to decode is refused when it is
//! stored, not when it is read. Encoding happens outside the lock where it can.
//!
//! Poisoning is ignored: no method leaves the structure half-changed when a closure panics
//! (the closure runs on a decoded copy, and the store happens after it returns).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::{Error, Message, MessageError, codec};

/// The error for an index past the end of a list of `len` elements.
fn index_error(index: usize, len: usize) -> Error {
    Error::invalid_argument(format!(
        "index {index} is out of bounds for a list of length {len}"
    ))
}

/// Locks `m`, ignoring poisoning (see the module docs).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes a [`Stored`] keeps in place: with its length and the variant's tag, 16 bytes.
const INLINE: usize = 14;

/// One encoded value in 16 bytes: up to [`INLINE`] bytes in place (a number, a short string:
/// no allocation of its own, and a list of them is contiguous memory, so a snapshot reads
/// 16 bytes per element), longer ones behind a thin pointer.
enum Stored {
    Inline(u8, [u8; INLINE]),
    #[allow(clippy::box_collection)] // a thin pointer keeps the enum at 16 bytes
    Heap(Box<Box<[u8]>>),
}

const _: () = assert!(size_of::<Stored>() == 16);

impl std::ops::Deref for Stored {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Stored::Inline(n, b) => &b[..usize::from(*n)],
            Stored::Heap(b) => b,
        }
    }
}

/// `value` encoded, refusing what the codec could not decode again.
fn encode<T: Serialize + ?Sized + 'static>(value: &T) -> Result<Stored, Error> {
    let size = codec::encoded_size(value)?;
    if size > codec::LIMIT {
        return Err(MessageError::TooLarge {
            size,
            limit: codec::LIMIT,
        }
        .into());
    }
    if size <= INLINE {
        let mut b = [0u8; INLINE];
        codec::encode_into(value, &mut b[..size])?;
        return Ok(Stored::Inline(size as u8, b));
    }
    let mut buf = vec![0u8; size].into_boxed_slice();
    codec::encode_into(value, &mut buf)?;
    Ok(Stored::Heap(Box::new(buf)))
}

/// Refuses a key the process backend could not store (it does not encode, or is over the
/// codec's limit): the same error on every backend, and no entry that a snapshot could not
/// copy later. Only counts the bytes; nothing is allocated.
fn check_key<Q: Serialize + ?Sized>(key: &Q) -> Result<(), Error> {
    let size = codec::encoded_size_any(key)?;
    if size > codec::LIMIT {
        return Err(MessageError::TooLarge {
            size,
            limit: codec::LIMIT,
        }
        .into());
    }
    Ok(())
}

fn decode<T: Message>(bytes: &[u8]) -> Result<T, Error> {
    Ok(codec::decode(bytes)?)
}

/// A copy of `value` (an encode and a decode: a `Message` need not be `Clone`).
fn copy<T: Message>(value: &T) -> Result<T, Error> {
    decode(&encode(value)?)
}

/// A shared map; see [`crate::Map`].
///
/// ```
/// use uniconc::Map as _;
///
/// let m = uniconc::thread::Map::<u64, String>::new()?;
/// m.insert(1, "one".into())?;
/// assert_eq!(m.get(&1)?.as_deref(), Some("one"));
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Map<K, V> {
    inner: Arc<Mutex<HashMap<K, Stored>>>,
    _values: std::marker::PhantomData<fn() -> V>,
}

impl<K, V> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _values: std::marker::PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("len", &lock(&self.inner).len())
            .finish_non_exhaustive()
    }
}

impl<K, V> crate::Map<K, V> for Map<K, V>
where
    K: Message + Hash + Eq,
    V: Message,
{
    fn new() -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            _values: std::marker::PhantomData,
        })
    }

    fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        check_key(&key)?;
        let bytes = encode(&value)?;
        let old = lock(&self.inner).insert(key, bytes);
        old.map(|b| decode(&b)).transpose()
    }

    fn get<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        check_key(key)?;
        lock(&self.inner).get(key).map(|b| decode(b)).transpose()
    }

    fn remove<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        check_key(key)?;
        let old = lock(&self.inner).remove(key);
        old.map(|b| decode(&b)).transpose()
    }

    fn contains_key<Q>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        check_key(key)?;
        Ok(lock(&self.inner).contains_key(key))
    }

    fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    fn clear(&self) {
        // Dropped outside the lock: freeing a large map should not stall other units.
        let old = std::mem::take(&mut *lock(&self.inner));
        drop(old);
    }

    fn update<U>(&self, key: K, f: impl FnOnce(&mut Option<V>) -> U) -> Result<U, Error> {
        check_key(&key)?;
        let mut map = lock(&self.inner);
        let mut slot = map.get(&key).map(|b| decode(b)).transpose()?;
        let out = f(&mut slot);
        match slot {
            Some(v) => {
                let bytes = encode(&v)?;
                map.insert(key, bytes);
            }
            None => {
                map.remove(&key);
            }
        }
        Ok(out)
    }

    fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V, Error> {
        check_key(&key)?;
        let mut map = lock(&self.inner);
        if let Some(b) = map.get(&key) {
            return decode(b);
        }
        let v = f();
        map.insert(key, encode(&v)?);
        Ok(v)
    }

    fn keys(&self) -> Result<Vec<K>, Error> {
        lock(&self.inner).keys().map(copy).collect()
    }

    fn values(&self) -> Result<Vec<V>, Error> {
        lock(&self.inner).values().map(|b| decode(b)).collect()
    }

    fn to_vec(&self) -> Result<Vec<(K, V)>, Error> {
        lock(&self.inner)
            .iter()
            .map(|(k, b)| Ok((copy(k)?, decode(b)?)))
            .collect()
    }
}

/// A shared list; see [`crate::List`].
///
/// ```
/// use uniconc::List as _;
///
/// let l = uniconc::thread::List::<u64>::new()?;
/// l.extend([1, 2, 3])?;
/// assert_eq!(l.pop()?, Some(3));
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct List<T> {
    inner: Arc<Mutex<Vec<Stored>>>,
    _items: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _items: std::marker::PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("len", &lock(&self.inner).len())
            .finish_non_exhaustive()
    }
}

impl<T: Message> crate::List<T> for List<T> {
    fn new() -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Mutex::new(Vec::new())),
            _items: std::marker::PhantomData,
        })
    }

    fn push(&self, value: T) -> Result<(), Error> {
        let bytes = encode(&value)?;
        lock(&self.inner).push(bytes);
        Ok(())
    }

    fn pop(&self) -> Result<Option<T>, Error> {
        let last = lock(&self.inner).pop();
        last.map(|b| decode(&b)).transpose()
    }

    fn get(&self, index: usize) -> Result<Option<T>, Error> {
        lock(&self.inner).get(index).map(|b| decode(b)).transpose()
    }

    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        let bytes = encode(&value)?;
        let mut list = lock(&self.inner);
        let len = list.len();
        let slot = list.get_mut(index).ok_or_else(|| index_error(index, len))?;
        let old = std::mem::replace(slot, bytes);
        drop(list);
        drop(old);
        Ok(())
    }

    fn insert(&self, index: usize, value: T) -> Result<(), Error> {
        let bytes = encode(&value)?;
        let mut list = lock(&self.inner);
        if index > list.len() {
            return Err(index_error(index, list.len()));
        }
        list.insert(index, bytes);
        Ok(())
    }

    fn remove(&self, index: usize) -> Result<T, Error> {
        let mut list = lock(&self.inner);
        if index >= list.len() {
            return Err(index_error(index, list.len()));
        }
        let bytes = list.remove(index);
        drop(list);
        decode(&bytes)
    }

    fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    fn truncate(&self, len: usize) {
        let mut list = lock(&self.inner);
        let keep = len.min(list.len());
        let tail = list.split_off(keep);
        drop(list);
        drop(tail);
    }

    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), Error> {
        let encoded = items
            .into_iter()
            .map(|v| encode(&v))
            .collect::<Result<Vec<_>, _>>()?;
        lock(&self.inner).extend(encoded);
        Ok(())
    }

    fn reverse(&self) -> Result<(), Error> {
        lock(&self.inner).reverse();
        Ok(())
    }

    fn to_vec(&self) -> Result<Vec<T>, Error> {
        let list = lock(&self.inner);
        let mut out = Vec::with_capacity(list.len());
        for b in list.iter() {
            out.push(decode(b)?);
        }
        Ok(out)
    }

    fn update<U>(&self, f: impl FnOnce(&mut Vec<T>) -> U) -> Result<U, Error> {
        let mut list = lock(&self.inner);
        let mut items = list
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<T>, _>>()?;
        let out = f(&mut items);
        let encoded = items
            .iter()
            .map(|v| encode(v))
            .collect::<Result<Vec<_>, _>>()?;
        let old = std::mem::replace(&mut *list, encoded);
        drop(list);
        drop(old);
        Ok(out)
    }
}
