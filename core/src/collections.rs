//! Shared collections: [`Map`] and [`List`], Python's `Manager().dict()` and `Manager().list()`.
//!
//! Where [`Value`](crate::Value) and [`Array`](crate::Array) hold plain data of a fixed size,
//! a `Map` or `List` holds any [`Message`] and grows. Every element is stored encoded (the
//! [`codec`](crate::codec)), so reading one returns a decoded copy: a `Map` or `List` hands out
//! values, never references into itself. Every handle is a cheap `Clone` referring to the same
//! collection; pass clones to the units that share it.
//!
//! Each operation is atomic: another unit sees it wholly done or not at all. On the process
//! backend the collection lives in shared memory (no server process, unlike Python's
//! Manager); a process killed in the middle of an operation leaves it wholly done or not done,
//! with nothing leaked. Snapshots ([`Map::to_vec`], [`List::to_vec`], their `iter`) are taken
//! under one lock, so they are consistent.
//!
//! Errors: a value that does not encode, or is larger than the collection can ever hold, is an
//! `InvalidMessage` error; an index out of range for `set`, `insert` and `remove` is
//! `InvalidArgument`; a collection whose memory is used up returns `Full` (process backend).
//! In every case nothing was changed.

use std::borrow::Borrow;
use std::hash::Hash;

use serde::Serialize;

use crate::backend::Message;
use crate::error::Error;

/// A shared map from keys to values (Python's `Manager().dict()`).
///
/// Keys are compared with their `Eq` (and hashed with their `Hash`), as in a `HashMap`.
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Map as _};
///
/// type B = uniconc::thread::Thread;
/// let d = B::map::<String, u64>()?;
/// let d2 = d.clone(); // the same map
/// B::spawn(move || {
///     d2.insert("a".into(), 1).unwrap();
///     d2.insert("b".into(), 2).unwrap();
/// })?
/// .join()?;
/// assert_eq!(d.get("a")?, Some(1));
/// assert_eq!(d.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Map<K, V>: Clone + Send + Sync + 'static
where
    K: Message + Hash + Eq,
    V: Message,
{
    /// A new, empty map (what [`Backend::map`](crate::Backend::map) calls).
    ///
    /// ```
    /// use uniconc::{Backend, Map};
    ///
    /// type M = <uniconc::thread::Thread as Backend>::Map<u32, String>;
    /// let m = M::new()?;
    /// assert!(m.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend); never on the others.
    fn new() -> Result<Self, Error>;

    /// Inserts `value` under `key`, returning the value it replaces.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u32, String>()?;
    /// assert_eq!(m.insert(1, "one".into())?, None);
    /// assert_eq!(m.insert(1, "uno".into())?, Some("one".into()));
    /// assert_eq!(m.get(&1)?, Some("uno".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the key or value does not encode or is larger than the map can ever
    /// hold; `Full` if the map's memory is used up. The map is unchanged.
    fn insert(&self, key: K, value: V) -> Result<Option<V>, Error>;

    /// A copy of the value under `key`, or `None`. As with `HashMap::get`, the key may be any
    /// borrowed form of `K` (a `&str` for `String` keys).
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<String, Vec<u8>>()?;
    /// m.insert("k".into(), vec![1, 2])?;
    /// assert_eq!(m.get("k")?, Some(vec![1, 2]));
    /// assert_eq!(m.get("missing")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the key does not encode or the stored value does not decode.
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized;

    /// Removes `key`, returning its value.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u8, u8>()?;
    /// m.insert(1, 10)?;
    /// assert_eq!(m.remove(&1)?, Some(10));
    /// assert_eq!(m.remove(&1)?, None);
    /// assert!(m.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the key does not encode or the stored value does not decode (the
    /// entry is removed all the same).
    fn remove<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized;

    /// `true` if the map holds `key`.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<String, ()>()?;
    /// m.insert("here".into(), ())?;
    /// assert!(m.contains_key("here")?);
    /// assert!(!m.contains_key("there")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the key does not encode.
    fn contains_key<Q>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized;

    /// Number of entries.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u64, u64>()?;
    /// for i in 0..5 {
    ///     m.insert(i, i * i)?;
    /// }
    /// assert_eq!(m.len(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn len(&self) -> usize;

    /// `true` if the map has no entries.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u64, u64>()?;
    /// assert!(m.is_empty());
    /// m.insert(1, 1)?;
    /// assert!(!m.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u64, u64>()?;
    /// m.insert(1, 1)?;
    /// m.clear();
    /// assert!(m.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn clear(&self);

    /// Runs `f` on the entry for `key` as one atomic read-modify-write and returns what `f`
    /// returns. `f` sees `Some(value)` or `None`; what it leaves there is stored (`None`
    /// removes the entry). No other unit's operation on the map can interleave. If `f` panics,
    /// the panic propagates and the entry is unchanged. Keep `f` short: it holds the map's
    /// lock (on the process backend, the lock of the key's part of the map).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let counts = B::map::<String, u64>()?;
    /// let units = (0..4)
    ///     .map(|_| {
    ///         let counts = counts.clone();
    ///         B::spawn(move || {
    ///             for _ in 0..100 {
    ///                 counts.update("hits".into(), |c| *c.get_or_insert(0) += 1).unwrap();
    ///             }
    ///         })
    ///     })
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// for u in units {
    ///     u.join()?;
    /// }
    /// assert_eq!(counts.get("hits")?, Some(400));
    /// // The closure's result comes back; `None` left behind removes the entry.
    /// let last = counts.update("hits".into(), |c| c.take())?;
    /// assert_eq!(last, Some(400));
    /// assert!(counts.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the key does not encode, the stored value does not decode or the new
    /// value does not encode (or is too large); `Full` if the map's memory is used up. `f` has
    /// run only if the error came after it; the entry is unchanged.
    fn update<U>(&self, key: K, f: impl FnOnce(&mut Option<V>) -> U) -> Result<U, Error>;

    /// The value under `key`; if there is none, inserts `f()` first. One atomic operation: of
    /// several units racing on a missing key, one inserts and all get its value.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<String, Vec<u32>>()?;
    /// assert_eq!(m.get_or_insert_with("v".into(), || vec![1])?, vec![1]);
    /// assert_eq!(m.get_or_insert_with("v".into(), || vec![2])?, vec![1]); // already there
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`update`](Map::update).
    fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V, Error>;

    /// A copy of every key, taken under one lock (in no particular order).
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u32, ()>()?;
    /// m.insert(2, ())?;
    /// m.insert(1, ())?;
    /// let mut keys = m.keys()?;
    /// keys.sort();
    /// assert_eq!(keys, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if a stored key does not decode.
    fn keys(&self) -> Result<Vec<K>, Error>;

    /// A copy of every value, taken under one lock (in no particular order).
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u32, u32>()?;
    /// m.insert(1, 10)?;
    /// m.insert(2, 20)?;
    /// assert_eq!(m.values()?.iter().sum::<u32>(), 30);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if a stored value does not decode.
    fn values(&self) -> Result<Vec<V>, Error>;

    /// A copy of every entry, taken under one lock (in no particular order): a consistent
    /// snapshot.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u32, char>()?;
    /// m.insert(2, 'b')?;
    /// m.insert(1, 'a')?;
    /// let mut entries = m.to_vec()?;
    /// entries.sort();
    /// assert_eq!(entries, [(1, 'a'), (2, 'b')]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if a stored entry does not decode.
    fn to_vec(&self) -> Result<Vec<(K, V)>, Error>;

    /// An iterator over a snapshot of every entry ([`to_vec`](Map::to_vec)): later changes to
    /// the map do not affect it.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let m = B::map::<u32, u32>()?;
    /// m.insert(1, 10)?;
    /// for (k, v) in m.iter()? {
    ///     m.insert(k + 1, v + 1)?; // changing the map while iterating is fine
    /// }
    /// assert_eq!(m.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`to_vec`](Map::to_vec).
    fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>, Error> {
        Ok(self.to_vec()?.into_iter())
    }
}

/// A shared, growable list (Python's `Manager().list()`).
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, List as _};
///
/// type B = uniconc::thread::Thread;
/// let l = B::list::<String>()?;
/// let l2 = l.clone(); // the same list
/// B::spawn(move || {
///     l2.push("a".into()).unwrap();
///     l2.push("b".into()).unwrap();
///     l2.reverse().unwrap();
/// })?
/// .join()?;
/// assert_eq!(l.to_vec()?, ["b", "a"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait List<T: Message>: Clone + Send + Sync + 'static {
    /// A new, empty list (what [`Backend::list`](crate::Backend::list) calls).
    ///
    /// ```
    /// use uniconc::{Backend, List};
    ///
    /// type L = <uniconc::thread::Thread as Backend>::List<u64>;
    /// let l = L::new()?;
    /// assert!(l.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend); never on the others.
    fn new() -> Result<Self, Error>;

    /// Appends `value` at the end.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.push(1)?;
    /// l.push(2)?;
    /// assert_eq!(l.to_vec()?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the value does not encode or is larger than the list can ever
    /// hold; `Full` if the list's memory is used up. The list is unchanged.
    fn push(&self, value: T) -> Result<(), Error>;

    /// Removes and returns the last element, or `None` if the list is empty.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.push(1)?;
    /// assert_eq!(l.pop()?, Some(1));
    /// assert_eq!(l.pop()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the element does not decode (it is removed all the same).
    fn pop(&self) -> Result<Option<T>, Error>;

    /// A copy of element `index`, or `None` if out of range.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<char>()?;
    /// l.extend(['a', 'b'])?;
    /// assert_eq!(l.get(1)?, Some('b'));
    /// assert_eq!(l.get(2)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if the element does not decode.
    fn get(&self, index: usize) -> Result<Option<T>, Error>;

    /// Replaces element `index`.
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.extend([1, 2])?;
    /// l.set(0, 10)?;
    /// assert_eq!(l.set(2, 30).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// assert_eq!(l.to_vec()?, [10, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `index >= len`; otherwise as [`push`](List::push). The list is
    /// unchanged.
    fn set(&self, index: usize, value: T) -> Result<(), Error>;

    /// Inserts `value` at `index`, shifting the elements after it (`index == len` appends).
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.extend([1, 3])?;
    /// l.insert(1, 2)?;
    /// l.insert(0, 0)?;
    /// assert_eq!(l.to_vec()?, [0, 1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `index > len`; otherwise as [`push`](List::push). The list is
    /// unchanged.
    fn insert(&self, index: usize, value: T) -> Result<(), Error>;

    /// Removes and returns element `index`, shifting the elements after it.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.extend([1, 2, 3])?;
    /// assert_eq!(l.remove(1)?, 2);
    /// assert_eq!(l.to_vec()?, [1, 3]);
    /// assert!(l.remove(2).is_err()); // out of range: nothing removed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `index >= len` (the list is unchanged); `InvalidMessage` if the
    /// element does not decode (it is removed all the same).
    fn remove(&self, index: usize) -> Result<T, Error>;

    /// Number of elements.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u8>()?;
    /// l.extend(0..10)?;
    /// assert_eq!(l.len(), 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn len(&self) -> usize;

    /// `true` if the list has no elements.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u8>()?;
    /// assert!(l.is_empty());
    /// l.push(0)?;
    /// assert!(!l.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `len` elements and drops the rest (nothing happens if the list is
    /// shorter).
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u8>()?;
    /// l.extend(0..5)?;
    /// l.truncate(2);
    /// assert_eq!(l.to_vec()?, [0, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn truncate(&self, len: usize);

    /// Removes every element.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u8>()?;
    /// l.extend(0..5)?;
    /// l.clear();
    /// assert!(l.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn clear(&self) {
        self.truncate(0);
    }

    /// Appends every item, as one operation: other units see all of them or none, and if one
    /// item fails to encode none is appended.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u64>()?;
    /// l.extend((1..=3).map(|i| i * 10))?;
    /// assert_eq!(l.to_vec()?, [10, 20, 30]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`push`](List::push), for any item. The list is unchanged.
    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), Error>;

    /// Reverses the order of the elements, in one operation.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u8>()?;
    /// l.extend([1, 2, 3])?;
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, [3, 2, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Full` if the list's memory is used up (the process backend writes the new order beside
    /// the old one, so that a process killed halfway leaves the old order). The list is
    /// unchanged.
    fn reverse(&self) -> Result<(), Error>;

    /// A copy of every element, in order, taken under one lock: a consistent snapshot.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<String>()?;
    /// l.push("x".into())?;
    /// let mut v = l.to_vec()?;
    /// v.push("y".into()); // a copy: the list is unchanged
    /// assert_eq!(l.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if an element does not decode.
    fn to_vec(&self) -> Result<Vec<T>, Error>;

    /// An iterator over a snapshot of every element ([`to_vec`](List::to_vec)).
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u64>()?;
    /// l.extend(1..=100)?;
    /// assert_eq!(l.iter()?.sum::<u64>(), 5050);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`to_vec`](List::to_vec).
    fn iter(&self) -> Result<std::vec::IntoIter<T>, Error> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Runs `f` on the whole list under its lock and returns what `f` returns: several changes
    /// (or a sort) that no other unit can interleave with. `f` works on a decoded copy that
    /// replaces the list when it returns; if `f` panics, the panic propagates and the list is
    /// unchanged. It costs a decode and an encode of every element: for one change, call the
    /// method for it.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u32>()?;
    /// l.extend([3, 1, 2])?;
    /// let largest = l.update(|v| {
    ///     v.sort();
    ///     v.dedup();
    ///     v.last().copied()
    /// })?;
    /// assert_eq!(largest, Some(3));
    /// assert_eq!(l.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` if an element does not decode (then `f` does not run) or a changed
    /// element does not encode; `Full` if the list's memory is used up. The list is unchanged.
    fn update<U>(&self, f: impl FnOnce(&mut Vec<T>) -> U) -> Result<U, Error>;
}
