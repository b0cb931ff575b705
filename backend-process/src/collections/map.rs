//! [`Map`]: an open-addressing hash table (linear probing, tombstones) in shared memory.
//!
//! The root block is an array of buckets; each entry's key and value bytes share one heap
//! block (`[link | key | value]`). A lookup hashes the key with `std`'s `DefaultHasher::new()`
//! (SipHash with fixed zero keys: the same function in every process, which all run the same
//! binary, forked from one parent; nothing random is involved), probes from `hash * cap >> 64`,
//! and compares the stored hash, then the encoded key bytes (equal bytes are equal keys), and
//! only on a hash match with different bytes decodes the stored key and compares with `Eq` (so
//! `get("a")` on a `Map<String, _>` works through `Borrow`, whose contract makes `Hash` agree).
//!
//! Growth: when live entries and tombstones would pass 3/4 of the buckets, a new table sized
//! for twice the live entries is built beside the old one and swapped in (one journaled swap,
//! the old table freed at commit).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use uniconc_core::{Error, Message, MessageError, codec};

use super::heap::{class_of, class_size};
use super::{Copied, Store, Txn, corrupt, decode, encoded_size, word};

/// Bytes of one bucket: `#[repr(C)]`-like, three words at `table + 8 + 24 * i`:
/// `hash`, `off` (the entry's block; [`EMPTY`] or [`TOMB`] when there is none), and
/// `lens` (`key bytes << 32 | value bytes`).
///
/// Invariants: a bucket whose `off` is neither `EMPTY` nor `TOMB` holds a live entry whose
/// block is of class `class_of(8 + key + value)`; the number of live buckets is the header's
/// `len` and of `TOMB` buckets its `tombs`; every live entry's key is in no other bucket; a
/// probe for a live key from its home bucket meets no `EMPTY` bucket before it.
const BUCKET: usize = 24;
const EMPTY: u64 = 0;
const TOMB: u64 = 1;
/// The smallest bucket table (class of 512 bytes: 21 buckets).
const MIN_TABLE_CLASS: usize = 5;

/// A shared map in shared memory (Python's `Manager().dict()` without the server process);
/// see [`uniconc_core::Map`] for every method.
///
/// Entries are stored encoded in a `MAP_SHARED` reservation made by `new` (create the map,
/// then fork: children forked after see it). Every operation takes the map's robust lock; a
/// process killed in the middle of an operation leaves the map as it was before it (the next
/// operation, in any process, rolls back its undo journal first). Memory is reserved once
/// (virtual; pages are committed as the map grows); when it is used up, inserts return
/// `Full` and change nothing.
///
/// ```
/// use uniconc::{JoinHandle as _, Map as _};
/// let m = uniconc::process::map::<String, u64>()?;
/// let child = uniconc::process::spawn({
///     let m = m.clone();
///     move || m.insert("from child".into(), 7).is_ok()
/// })?;
/// assert!(child.join()?);
/// assert_eq!(m.get("from child")?, Some(7)); // written by the child
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Map<K, V> {
    s: Arc<Store>,
    _m: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Self {
            s: self.s.clone(),
            _m: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("reserved", &self.s.end())
            .finish_non_exhaustive()
    }
}

impl<K, V> Map<K, V> {
    /// The map named `name` (see [`Named`](uniconc_core::Named)): 64 MiB reserved.
    pub(crate) fn named(name: &uniconc_core::Name) -> Result<Self, Error> {
        Ok(Self {
            s: Arc::new(Store::named(
                name,
                crate::named::Kind::Map,
                std::any::type_name::<(K, V)>(),
            )?),
            _m: PhantomData,
        })
    }

    /// A new, empty map that reserves exactly `bytes` of address space (at least 16 KiB)
    /// instead of the default (a share of the machine's memory). The map's entries, with
    /// their bookkeeping, must fit: inserts beyond it return `Full`.
    ///
    /// ```
    /// use uniconc::{ErrorKind, Map as _};
    /// let m = uniconc::process::Map::<u64, Vec<u8>>::with_reserved_bytes(64 << 10)?;
    /// m.insert(1, vec![0; 1000])?;
    /// let err = m.insert(2, vec![0; 1 << 20]).unwrap_err(); // more than it can ever hold
    /// assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` below 16 KiB; `Os` if the OS refuses the mapping.
    pub fn with_reserved_bytes(bytes: usize) -> Result<Self, Error> {
        Ok(Self {
            s: Arc::new(Store::with_bytes(bytes)?),
            _m: PhantomData,
        })
    }

    /// Checks every invariant of the shared memory and returns the number of entries: the
    /// entries and the free space tile the heap exactly (nothing leaked, nothing in two
    /// places), and the counts agree. For tests and diagnostics (after processes were killed,
    /// say): it walks every block under the lock, so it costs a pass over the whole map.
    ///
    /// ```
    /// use uniconc::Map as _;
    /// let m = uniconc::process::map::<u64, String>()?;
    /// m.insert(1, "one".into())?;
    /// assert_eq!(m.check()?, 1);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` naming the first broken invariant (the memory was overwritten by
    /// something other than this map's operations).
    pub fn check(&self) -> Result<usize, Error> {
        super::check::check(&self.s, super::check::Kind::Map)
    }

    #[cfg(test)]
    pub(super) fn store(&self) -> &Store {
        &self.s
    }
}

/// Runs `f` on `key` encoded, in a stack buffer when it is small (lookups allocate nothing
/// for the key).
fn with_key<Q: Serialize + ?Sized, R>(
    key: &Q,
    f: impl FnOnce(&[u8]) -> Result<R, Error>,
) -> Result<R, Error> {
    // A borrowed key type has no `TypeId`: the codec's serde path (the same bytes).
    let size = super::decodable(codec::encoded_size_any(key)?)?;
    let mut stack = [0u8; 64];
    if size <= stack.len() {
        codec::encode_into_any(key, &mut stack[..size])?;
        f(&stack[..size])
    } else {
        let mut buf = vec![0u8; size];
        codec::encode_into_any(key, &mut buf)?;
        f(&buf)
    }
}

/// The process-independent hash of a key (see the module docs).
fn hash_of<Q: Hash + ?Sized>(q: &Q) -> u64 {
    let mut h = DefaultHasher::new();
    q.hash(&mut h);
    h.finish()
}

/// The bucket table in the committed root, checked.
#[derive(Clone, Copy)]
struct Table {
    off: usize,
    cap: usize,
}

impl Table {
    fn bucket(&self, i: usize) -> usize {
        self.off + 8 + BUCKET * i
    }

    fn class(&self) -> usize {
        class_of(8 + BUCKET * self.cap).expect("checked in `table`")
    }

    /// The home bucket of `hash`.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.cap as u128) >> 64) as usize
    }
}

/// The root table, if there is one.
fn table(t: &Txn<'_>) -> Result<Option<Table>, Error> {
    let off = t.get(word::INDEX_OFF);
    if off == 0 {
        return Ok(None);
    }
    let cap = usize::try_from(t.get(word::INDEX_CAP))
        .ok()
        .filter(|c| *c > 0 && *c <= t.s.end() / BUCKET)
        .ok_or_else(|| corrupt("the map's bucket count"))?;
    let class = class_of(8 + BUCKET * cap).ok_or_else(|| corrupt("the map's bucket count"))?;
    let off = t.block(off, class)?;
    Ok(Some(Table { off, cap }))
}

/// A live entry: its block and the lengths of its key and value bytes.
#[derive(Clone, Copy)]
struct Entry {
    off: usize,
    klen: usize,
    vlen: usize,
}

impl Entry {
    fn class(&self) -> usize {
        class_of(8 + self.klen + self.vlen).expect("checked in `entry`")
    }
}

/// The entry in bucket `b` (whose `off` is live), checked.
fn entry(t: &Txn<'_>, b: usize) -> Result<Entry, Error> {
    let off = t.get(b + 8);
    let lens = t.get(b + 16);
    let (klen, vlen) = ((lens >> 32) as usize, (lens & 0xffff_ffff) as usize);
    let class = class_of(8 + klen + vlen).ok_or_else(|| corrupt("an entry's length"))?;
    let off = t.block(off, class)?;
    Ok(Entry { off, klen, vlen })
}

fn key_bytes<'a>(t: &Txn<'a>, e: Entry) -> Result<&'a [u8], Error> {
    t.s.bytes((e.off + 8) as u64, e.klen as u64)
}

fn value_bytes<'a>(t: &Txn<'a>, e: Entry) -> Result<&'a [u8], Error> {
    t.s.bytes((e.off + 8 + e.klen) as u64, e.vlen as u64)
}

/// Where a key is, or where it would go.
enum Probe {
    /// The bucket holding the key.
    Found(usize),
    /// Absent: the first tombstone or empty bucket on its probe path (`None`: no table, or
    /// no free bucket on the path).
    Vacant(Option<usize>),
}

/// Looks `key` (encoded: `kb`, hashed: `hash`) up; `eq` decides on a hash match whose bytes
/// differ.
fn probe(
    t: &Txn<'_>,
    hash: u64,
    kb: &[u8],
    eq: &mut dyn FnMut(&[u8]) -> Result<bool, Error>,
) -> Result<Probe, Error> {
    let Some(tab) = table(t)? else {
        return Ok(Probe::Vacant(None));
    };
    let mut i = tab.home(hash);
    let mut free = None;
    for _ in 0..tab.cap {
        let b = tab.bucket(i);
        match t.get(b + 8) {
            EMPTY => return Ok(Probe::Vacant(free.or(Some(b)))),
            TOMB => {
                free.get_or_insert(b);
            }
            _ if t.get(b) == hash => {
                let stored = key_bytes(t, entry(t, b)?)?;
                if stored == kb || eq(stored)? {
                    return Ok(Probe::Found(b));
                }
            }
            _ => {}
        }
        i += 1;
        if i == tab.cap {
            i = 0;
        }
    }
    Ok(Probe::Vacant(free))
}

/// Builds a table for at least twice `len + 1` entries beside the current one, moves every
/// live bucket into it and swaps it in (journaled); the old table is freed at commit.
fn rehash(t: &mut Txn<'_>) -> Result<Table, Error> {
    let old = table(t)?;
    let len = t.get(word::LEN) as usize;
    let want = len.saturating_add(1).saturating_mul(2).max(16);
    let class = want
        .checked_mul(BUCKET)
        .and_then(|b| class_of(b + 8))
        .ok_or_else(|| Error::full("the map has too many entries for its reservation"))?
        .max(MIN_TABLE_CLASS);
    let off = t.alloc(class)?;
    let new = Table {
        off,
        cap: (class_size(class) - 8) / BUCKET,
    };
    t.s.zero_bytes(off + 8, new.cap * BUCKET);
    if let Some(old) = old {
        for i in 0..old.cap {
            let b = old.bucket(i);
            let eoff = t.get(b + 8);
            if eoff == EMPTY || eoff == TOMB {
                continue;
            }
            let hash = t.get(b);
            let mut j = new.home(hash);
            let mut steps = 0;
            while t.get(new.bucket(j) + 8) != EMPTY {
                steps += 1;
                if steps == new.cap {
                    return Err(corrupt("more live buckets than the map's length"));
                }
                j += 1;
                if j == new.cap {
                    j = 0;
                }
            }
            let nb = new.bucket(j);
            // Unjournaled: the new table is this transaction's block (module docs, rule 1).
            // Release: see the module docs of `collections`.
            for k in [0, 8, 16] {
                let w = t.get(b + k);
                t.fresh_word(nb + k)
                    .store(w, std::sync::atomic::Ordering::Release);
            }
        }
    }
    t.set(word::INDEX_OFF, new.off as u64);
    t.set(word::INDEX_CAP, new.cap as u64);
    t.set(word::TOMBS, 0);
    if let Some(old) = old {
        t.free(old.off, old.class());
    }
    Ok(new)
}

/// Stores the entry `kv` (`klen` key bytes, then the value's) where `p` says: replacing the
/// found entry, or into a vacant bucket (growing the table first if needed). Does not commit.
fn put(t: &mut Txn<'_>, p: Probe, hash: u64, kv: &[u8], klen: usize) -> Result<(), Error> {
    let class = class_of(8 + kv.len()).ok_or_else(|| Error::full("entry too large"))?;
    // Allocations first (the entry, then maybe a table), frees last (module docs, rule 3).
    let blk = t.alloc(class)?;
    t.s.write_bytes(blk + 8, kv);
    let lens = ((klen as u64) << 32) | (kv.len() - klen) as u64;
    match p {
        Probe::Found(b) => {
            let old = entry(t, b)?;
            t.set(b + 8, blk as u64);
            t.set(b + 16, lens);
            t.free(old.off, old.class());
        }
        Probe::Vacant(slot) => {
            let len = t.get(word::LEN);
            let tombs = t.get(word::TOMBS);
            let cap = t.get(word::INDEX_CAP);
            let crowded = (len + tombs + 1).saturating_mul(4) > cap.saturating_mul(3);
            let b = match slot {
                Some(b) if !crowded => {
                    if t.get(b + 8) == TOMB {
                        t.set(word::TOMBS, tombs - 1);
                    }
                    b
                }
                _ => {
                    let tab = rehash(t)?;
                    let mut j = tab.home(hash);
                    while t.get(tab.bucket(j) + 8) != EMPTY {
                        j += 1;
                        if j == tab.cap {
                            j = 0;
                        }
                    }
                    tab.bucket(j)
                }
            };
            t.set(b, hash);
            t.set(b + 16, lens);
            t.set(b + 8, blk as u64);
            t.set(word::LEN, len + 1);
        }
    }
    Ok(())
}

/// Removes the entry in bucket `b`. Does not commit.
fn take(t: &mut Txn<'_>, b: usize) -> Result<(), Error> {
    let e = entry(t, b)?;
    t.set(b + 8, TOMB);
    let (len, tombs) = (t.get(word::LEN), t.get(word::TOMBS));
    t.set(word::LEN, len.wrapping_sub(1));
    t.set(word::TOMBS, tombs + 1);
    t.free(e.off, e.class());
    Ok(())
}

impl<K, V> Map<K, V>
where
    K: Message + Hash + Eq,
    V: Message,
{
    /// `key` then `value` encoded into one buffer, and the key's length.
    fn encode_entry(&self, key: &K, value: &V) -> Result<(Vec<u8>, usize), Error> {
        let ks = encoded_size(key)?;
        let vs = encoded_size(value)?;
        let size = ks.saturating_add(vs);
        let limit = self.s.max_block() - 8;
        if size > limit {
            return Err(MessageError::TooLarge { size, limit }.into());
        }
        let mut kv = vec![0u8; size];
        codec::encode_into(key, &mut kv[..ks])?;
        codec::encode_into(value, &mut kv[ks..])?;
        Ok((kv, ks))
    }

    /// The encoded key `kb` then `value` encoded into one buffer.
    fn encode_kv(&self, kb: &[u8], value: &V) -> Result<Vec<u8>, Error> {
        let vs = encoded_size(value)?;
        let size = kb.len() + vs;
        let limit = self.s.max_block() - 8;
        if size > limit {
            return Err(MessageError::TooLarge { size, limit }.into());
        }
        let mut kv = Vec::with_capacity(size);
        kv.extend_from_slice(kb);
        kv.resize(size, 0);
        codec::encode_into(value, &mut kv[kb.len()..])?;
        Ok(kv)
    }

    fn lookup<Q>(t: &Txn<'_>, key: &Q, kb: &[u8], hash: u64) -> Result<Probe, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        probe(t, hash, kb, &mut |stored| {
            Ok(decode::<K>(stored)?.borrow() == key)
        })
    }

    /// Runs `f` on every live entry, under one lock.
    fn each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<(), Error>) -> Result<(), Error> {
        let t = self.s.lock();
        let Some(tab) = table(&t)? else {
            return Ok(());
        };
        for i in 0..tab.cap {
            let b = tab.bucket(i);
            let off = t.get(b + 8);
            if off != EMPTY && off != TOMB {
                let e = entry(&t, b)?;
                f(key_bytes(&t, e)?, value_bytes(&t, e)?)?;
            }
        }
        Ok(())
    }
}

impl<K, V> uniconc_core::Map<K, V> for Map<K, V>
where
    K: Message + Hash + Eq,
    V: Message,
{
    fn new() -> Result<Self, Error> {
        Ok(Self {
            s: Arc::new(Store::new()?),
            _m: PhantomData,
        })
    }

    fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        let (kv, klen) = self.encode_entry(&key, &value)?;
        let kb = &kv[..klen];
        let hash = hash_of(&key);
        let mut t = self.s.lock();
        let p = Self::lookup(&t, &key, kb, hash)?;
        let old = match p {
            Probe::Found(b) => Some(entry(&t, b).and_then(|e| Ok(Copied::of(value_bytes(&t, e)?)))),
            Probe::Vacant(_) => None,
        };
        put(&mut t, p, hash, &kv, klen)?;
        t.commit();
        drop(t);
        // Decoded after the lock is released.
        old.map(|c| c?.decode()).transpose()
    }

    fn get<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let hash = hash_of(key);
        let found = with_key(key, |kb| {
            let t = self.s.lock();
            match Self::lookup(&t, key, kb, hash)? {
                Probe::Found(b) => Ok(Some(Copied::of(value_bytes(&t, entry(&t, b)?)?))),
                Probe::Vacant(_) => Ok(None),
            }
        })?;
        // Decoded after the lock is released.
        found.map(|c| c.decode()).transpose()
    }

    fn remove<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let hash = hash_of(key);
        with_key(key, |kb| {
            let mut t = self.s.lock();
            match Self::lookup(&t, key, kb, hash)? {
                Probe::Found(b) => {
                    let old = decode(value_bytes(&t, entry(&t, b)?)?);
                    take(&mut t, b)?;
                    if t.get(word::LEN) == 0 {
                        let _ = t.reset(); // the last entry: the whole heap is free again
                    }
                    t.commit();
                    old.map(Some)
                }
                Probe::Vacant(_) => Ok(None),
            }
        })
    }

    fn contains_key<Q>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let hash = hash_of(key);
        with_key(key, |kb| {
            let t = self.s.lock();
            Ok(matches!(Self::lookup(&t, key, kb, hash)?, Probe::Found(_)))
        })
    }

    fn len(&self) -> usize {
        self.s.lock().get(word::LEN) as usize
    }

    fn clear(&self) {
        let mut t = self.s.lock();
        // Every entry and the table go: the whole heap is free again (see `Txn::reset`).
        let top = t.reset();
        t.commit();
        t.release_pages(top);
    }

    fn update<U>(&self, key: K, f: impl FnOnce(&mut Option<V>) -> U) -> Result<U, Error> {
        let kb = super::encode(&key)?;
        let hash = hash_of(&key);
        let mut t = self.s.lock();
        let p = Self::lookup(&t, &key, &kb, hash)?;
        let mut slot = match p {
            Probe::Found(b) => Some(decode(value_bytes(&t, entry(&t, b)?)?)?),
            Probe::Vacant(_) => None,
        };
        // A panic in `f` unwinds through `t`: nothing was written, the lock is released.
        let out = f(&mut slot);
        match (slot, p) {
            (Some(v), p) => {
                let kv = self.encode_kv(&kb, &v)?;
                put(&mut t, p, hash, &kv, kb.len())?;
            }
            (None, Probe::Found(b)) => take(&mut t, b)?,
            (None, Probe::Vacant(_)) => {}
        }
        t.commit();
        Ok(out)
    }

    fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V, Error> {
        let kb = super::encode(&key)?;
        let hash = hash_of(&key);
        let mut t = self.s.lock();
        let p = Self::lookup(&t, &key, &kb, hash)?;
        if let Probe::Found(b) = p {
            return decode(value_bytes(&t, entry(&t, b)?)?);
        }
        let v = f();
        let kv = self.encode_kv(&kb, &v)?;
        put(&mut t, p, hash, &kv, kb.len())?;
        t.commit();
        Ok(v)
    }

    fn keys(&self) -> Result<Vec<K>, Error> {
        let mut out = Vec::new();
        self.each(|k, _| {
            out.push(decode(k)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn values(&self) -> Result<Vec<V>, Error> {
        let mut out = Vec::new();
        self.each(|_, v| {
            out.push(decode(v)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn to_vec(&self) -> Result<Vec<(K, V)>, Error> {
        let mut out = Vec::new();
        self.each(|k, v| {
            out.push((decode(k)?, decode(v)?));
            Ok(())
        })?;
        Ok(out)
    }
}
