//! [`List`]: an index array of `(offset, length)` entries in shared memory, each element's
//! encoded bytes in a heap block of its own.
//!
//! `push`, `pop`, `get` and `set` are O(1): `push` writes the new entry past `len` (free in the
//! committed state) and commits by a journaled `len`; `set` swaps one entry's two words
//! (journaled). `insert`, `remove` (but at the end), `reverse` and `update` build a new index
//! beside the old one and swap it in; `truncate` and `clear` free the dropped elements with a
//! constant-size journal (see the module docs of `collections`). Elements of at most 8 encoded
//! bytes live in their index entry (no block). A `remove` with no room for a second index
//! moves the element to the end in committed steps instead ([`finish_pending`]).

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use uniconc_core::state::index_error;
use uniconc_core::{Error, Message, MessageError};

use super::heap::{class_of, class_size};
use super::{Copied, Store, Txn, corrupt, decode, word};

/// Bytes of one index entry: two words at `index + 8 + 16 * i`. The second is the element's
/// encoded length, with [`INLINE`] set when the element's bytes (at most 8) are the first
/// word itself (little-endian); otherwise the first word is the offset of the element's block.
///
/// Invariants: entries `0 .. len` are live; each that is not inline names a block of class
/// `class_of(8 + length)` allocated to it alone; entries past `len` mean nothing.
const ENTRY: usize = 16;
/// The flag, in an entry's length word, of an element stored in the entry.
pub(super) const INLINE: u64 = 1 << 63;

/// A shared list in shared memory (Python's `Manager().list()` without the server process);
/// see [`uniconc_core::List`] for every method.
///
/// Elements are stored encoded in a `MAP_SHARED` reservation made by `new` (create the list,
/// then fork). Every operation takes the list's robust lock; a process killed in the middle of
/// an operation leaves the list as it was before it. `to_vec` (and `iter`, a snapshot) reads
/// the whole list under one lock.
///
/// ```
/// use uniconc::{JoinHandle as _, List as _};
/// let l = uniconc::process::list::<String>()?;
/// l.push("parent".into())?;
/// let child = uniconc::process::spawn({
///     let l = l.clone();
///     move || l.push("child".into()).is_ok() && l.reverse().is_ok()
/// })?;
/// assert!(child.join()?);
/// assert_eq!(l.to_vec()?, ["child", "parent"]); // changed by the child
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct List<T> {
    s: Arc<Store>,
    _m: PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        Self {
            s: self.s.clone(),
            _m: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("reserved", &self.s.end())
            .finish_non_exhaustive()
    }
}

impl<T> List<T> {
    /// The list named `name` (see [`Named`](uniconc_core::Named)): 64 MiB reserved.
    pub(crate) fn named(name: &uniconc_core::Name) -> Result<Self, Error> {
        Ok(Self {
            s: Arc::new(Store::named(
                name,
                crate::named::Kind::List,
                std::any::type_name::<T>(),
            )?),
            _m: PhantomData,
        })
    }

    /// A new, empty list that reserves exactly `bytes` of address space (at least 16 KiB)
    /// instead of the default (a share of the machine's memory). Elements, with their
    /// bookkeeping, must fit: pushes beyond it return `Full`.
    ///
    /// ```
    /// use uniconc::{ErrorKind, List as _};
    /// let l = uniconc::process::List::<u64>::with_reserved_bytes(64 << 10)?;
    /// let err = loop {
    ///     if let Err(e) = l.push(1) {
    ///         break e;
    ///     }
    /// };
    /// assert_eq!(err.kind(), ErrorKind::Full);
    /// let n = l.len(); // every push before the error is there
    /// l.clear();
    /// l.extend((0..n as u64).map(|i| i * 2))?; // and the space is reusable
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

    /// Takes the lock, finishing a remove a killed process left under way.
    fn lock(&self) -> Result<Txn<'_>, Error> {
        let mut t = self.s.lock();
        finish_pending(&mut t)?;
        Ok(t)
    }

    /// Checks every invariant of the shared memory and returns the number of entries: the
    /// entries and the free space tile the heap exactly (nothing leaked, nothing in two
    /// places), and the counts agree. For tests and diagnostics (after processes were killed,
    /// say): it walks every block under the lock, so it costs a pass over the whole list.
    ///
    /// ```
    /// use uniconc::List as _;
    /// let l = uniconc::process::list::<u64>()?;
    /// l.extend([1, 2, 3])?;
    /// assert_eq!(l.check()?, 3);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidMessage` naming the first broken invariant (the memory was overwritten by
    /// something other than this list's operations).
    pub fn check(&self) -> Result<usize, Error> {
        super::check::check(&self.s, super::check::Kind::List)
    }

    #[cfg(test)]
    pub(super) fn store(&self) -> &Store {
        &self.s
    }
}

/// The committed index and length, checked.
#[derive(Clone, Copy)]
struct Index {
    off: usize,
    cap: usize,
    len: usize,
}

impl Index {
    fn entry(&self, i: usize) -> usize {
        self.off + 8 + ENTRY * i
    }

    fn class(&self) -> usize {
        class_of(8 + ENTRY * self.cap).expect("checked in `index`")
    }
}

fn index(t: &Txn<'_>) -> Result<Index, Error> {
    let len = usize::try_from(t.get(word::LEN)).map_err(|_| corrupt("the list's length"))?;
    let off = t.get(word::INDEX_OFF);
    if off == 0 {
        if len != 0 {
            return Err(corrupt("a length without an index"));
        }
        return Ok(Index {
            off: 0,
            cap: 0,
            len: 0,
        });
    }
    let cap = usize::try_from(t.get(word::INDEX_CAP))
        .ok()
        .filter(|c| *c >= len && *c <= t.s.end() / ENTRY)
        .ok_or_else(|| corrupt("the list's capacity"))?;
    let class = class_of(8 + ENTRY * cap).ok_or_else(|| corrupt("the list's capacity"))?;
    let off = t.block(off, class)?;
    Ok(Index { off, cap, len })
}

/// Where element `i`'s bytes are.
#[derive(Clone, Copy)]
enum Elem {
    /// In the entry: `len` (at most 8) bytes of `word`, little-endian.
    Inline { word: u64, len: usize },
    /// In the block at `off` (bytes from `off + 8`).
    Block { off: usize, len: usize },
}

impl Elem {
    /// Frees the element's block, at commit (`now`: at once; see `Txn::free_now`).
    fn free(self, t: &mut Txn<'_>, now: bool) {
        if let Elem::Block { off, len } = self {
            let class = class_of(8 + len).expect("checked by `elem`");
            if now {
                t.free_now(off, class);
            } else {
                t.free(off, class);
            }
        }
    }

    /// A private copy of the element's bytes, to decode after the lock is released.
    #[inline]
    fn copy(self, t: &Txn<'_>) -> Result<Copied, Error> {
        Ok(match self {
            Elem::Inline { word, len } => Copied::of(&word.to_le_bytes()[..len]),
            Elem::Block { off, len } => Copied::of(t.s.bytes(off as u64 + 8, len as u64)?),
        })
    }

    /// Decodes the element.
    #[inline]
    fn decode<T: Message>(self, t: &Txn<'_>) -> Result<T, Error> {
        match self {
            Elem::Inline { word, len } => decode(&word.to_le_bytes()[..len]),
            Elem::Block { off, len } => decode(t.s.bytes(off as u64 + 8, len as u64)?),
        }
    }
}

/// Element `i` (checked).
#[inline]
fn elem(t: &Txn<'_>, ix: &Index, i: usize) -> Result<Elem, Error> {
    let e = ix.entry(i);
    let (w, n) = (t.get(e), t.get(e + 8));
    if n & INLINE != 0 {
        let len = (n & !INLINE) as usize;
        if len > 8 {
            return Err(corrupt("an inline element's length"));
        }
        return Ok(Elem::Inline { word: w, len });
    }
    let off = t.s.heap_range(w, n.saturating_add(8))?;
    if off % 16 != 0 {
        return Err(corrupt("a misaligned element"));
    }
    Ok(Elem::Block {
        off,
        len: n as usize,
    })
}

/// Allocates a new index of at least `cap` entries (at least 4); returns (offset, capacity).
fn new_index(t: &mut Txn<'_>, cap: usize) -> Result<(usize, usize), Error> {
    let class = cap
        .max(4)
        .checked_mul(ENTRY)
        .and_then(|b| class_of(b + 8))
        .ok_or_else(|| Error::full("the list has too many elements for its reservation"))?;
    let off = t.alloc(class)?;
    Ok((off, (class_size(class) - 8) / ENTRY))
}

/// Writes the two words of an entry in an index this transaction owns, or past the
/// committed `len`.
#[inline]
fn put_entry(t: &Txn<'_>, at: usize, (w, n): (u64, u64)) {
    // Unjournaled: free in the committed state (module docs, rule 1). Release: see the module
    // docs of `collections`.
    t.fresh_word(at).store(w, Ordering::Release);
    t.fresh_word(at + 8).store(n, Ordering::Release);
}

/// Stores an element's `bytes`: in the entry if they fit a word, else in a block allocated
/// for them. Returns the entry's two words.
fn store_elem(t: &mut Txn<'_>, bytes: &[u8]) -> Result<(u64, u64), Error> {
    if bytes.len() <= 8 {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        return Ok((u64::from_le_bytes(w), bytes.len() as u64 | INLINE));
    }
    let class = class_of(8 + bytes.len()).ok_or_else(|| Error::full("element too large"))?;
    let off = t.alloc(class)?;
    t.s.write_bytes(off + 8, bytes);
    Ok((off as u64, bytes.len() as u64))
}

/// Swaps in the index at `off` with `cap` entries and `len` elements, freeing the old one at
/// commit.
fn swap_index(t: &mut Txn<'_>, old: &Index, off: usize, cap: usize, len: usize) {
    t.set(word::INDEX_OFF, off as u64);
    t.set(word::INDEX_CAP, cap as u64);
    t.set(word::LEN, len as u64);
    if old.off != 0 {
        t.free(old.off, old.class());
    }
}

/// Copies `n` entries from `src` to `dst` (a block this transaction owns).
fn copy_entries(t: &Txn<'_>, src: usize, dst: usize, n: usize) {
    for i in 0..n {
        let words = (t.get(src + ENTRY * i), t.get(src + ENTRY * i + 8));
        put_entry(t, dst + ENTRY * i, words);
    }
}

/// Finishes a remove under way (`word::PENDING`): the element being removed is at position
/// `PENDING - 1`; each step swaps it with the next entry and advances `PENDING` in one
/// committed transaction, and the last step drops it from the end. Every state in between is
/// committed and the remove is finished by whichever process holds the lock next, so a
/// process killed at any point leaves the remove done (wholly after), never half-done. Runs
/// first under every list lock (each list operation's `lock`).
pub(super) fn finish_pending(t: &mut Txn<'_>) -> Result<(), Error> {
    loop {
        let p = t.get(word::PENDING);
        if p == 0 {
            return Ok(());
        }
        let p = (p - 1) as usize;
        let ix = index(t)?;
        if p >= ix.len {
            return Err(corrupt("a pending remove past the end"));
        }
        if p + 1 == ix.len {
            let e = elem(t, &ix, p)?;
            if ix.len == 1 {
                let _ = t.reset(); // clears PENDING too
            } else {
                t.set(word::LEN, p as u64);
                t.set(word::PENDING, 0);
                e.free(t, false);
            }
            t.commit();
            return Ok(());
        }
        let (a, b) = (ix.entry(p), ix.entry(p + 1));
        let (wa, na, wb, nb) = (t.get(a), t.get(a + 8), t.get(b), t.get(b + 8));
        t.set(a, wb);
        t.set(a + 8, nb);
        t.set(b, wa);
        t.set(b + 8, na);
        t.set(word::PENDING, p as u64 + 2);
        t.commit();
    }
}

/// `to_vec` of a `List<u64>` without serde: an inline element's varint (the codec's
/// encoding of a `u64`: one byte below 251, else a marker 251/252/253 and 2/4/8 bytes
/// little-endian) is read directly; anything else goes through the codec, so the result and
/// the errors are the codec's.
fn to_vec_u64(t: &Txn<'_>, ix: &Index) -> Result<Vec<u64>, Error> {
    /// The value of an inline varint entry, or `None` for anything else.
    #[inline(always)]
    fn fast(w: u64, n: u64) -> Option<u64> {
        match (n & !INLINE, w as u8) {
            (1, b) if b < 251 => Some(u64::from(b)),
            (3, 251) => Some((w >> 8) & 0xffff),
            (5, 252) => Some((w >> 8) & 0xffff_ffff),
            _ => None,
        }
        .filter(|_| n & INLINE != 0)
    }
    let entries = if ix.len == 0 {
        &[][..]
    } else {
        t.s.words(ix.entry(0), 2 * ix.len)?
    };
    let mut out = Vec::with_capacity(ix.len);
    // The common case in a tight loop: every element inline; the rest one by one.
    out.extend(entries.chunks_exact(2).map_while(|e| fast(e[0], e[1])));
    for i in out.len()..ix.len {
        let v = match fast(entries[2 * i], entries[2 * i + 1]) {
            Some(v) => v,
            None => elem(t, ix, i)?.decode(t)?,
        };
        out.push(v);
    }
    Ok(out)
}

impl<T: Message> List<T> {
    /// `value` encoded, refusing what the list can never hold.
    fn encode(&self, value: &T) -> Result<Vec<u8>, Error> {
        let b = super::encode(value)?;
        let limit = self.s.max_block() - 8;
        if b.len() > limit {
            return Err(MessageError::TooLarge {
                size: b.len(),
                limit,
            }
            .into());
        }
        Ok(b)
    }

    /// Appends the encoded elements in `items` (lengths in `lens`). Does not commit.
    fn append(t: &mut Txn<'_>, items: &[u8], lens: &[usize]) -> Result<(), Error> {
        let ix = index(t)?;
        let need = ix.len + lens.len();
        let mut at = ix;
        if need > ix.cap {
            let (off, cap) = new_index(t, need.max(ix.cap * 2))?;
            if ix.off != 0 {
                copy_entries(t, ix.entry(0), off + 8, ix.len);
            }
            at = Index {
                off,
                cap,
                len: ix.len,
            };
        }
        let mut pos = 0;
        for (k, &n) in lens.iter().enumerate() {
            let words = store_elem(t, &items[pos..pos + n])?;
            put_entry(t, at.entry(ix.len + k), words);
            pos += n;
        }
        if at.off != ix.off {
            swap_index(t, &ix, at.off, at.cap, need);
        } else {
            t.set(word::LEN, need as u64);
        }
        Ok(())
    }
}

impl<T: Message> uniconc_core::List<T> for List<T> {
    fn new() -> Result<Self, Error> {
        Ok(Self {
            s: Arc::new(Store::new()?),
            _m: PhantomData,
        })
    }

    fn push(&self, value: T) -> Result<(), Error> {
        let b = self.encode(&value)?;
        let mut t = self.lock()?;
        Self::append(&mut t, &b, &[b.len()])?;
        t.commit();
        Ok(())
    }

    fn pop(&self) -> Result<Option<T>, Error> {
        let mut t = self.lock()?;
        let ix = index(&t)?;
        if ix.len == 0 {
            return Ok(None);
        }
        let e = elem(&t, &ix, ix.len - 1)?;
        let v = e.copy(&t)?;
        if ix.len == 1 {
            let _ = t.reset(); // the last element: the whole heap is free again
        } else {
            t.set(word::LEN, ix.len as u64 - 1);
            e.free(&mut t, false);
        }
        t.commit();
        drop(t);
        v.decode().map(Some) // after the lock is released
    }

    fn get(&self, index_: usize) -> Result<Option<T>, Error> {
        let t = self.lock()?;
        let ix = index(&t)?;
        if index_ >= ix.len {
            return Ok(None);
        }
        let v = elem(&t, &ix, index_)?.copy(&t)?;
        drop(t);
        v.decode().map(Some) // after the lock is released
    }

    fn set(&self, i: usize, value: T) -> Result<(), Error> {
        let b = self.encode(&value)?;
        let mut t = self.lock()?;
        let ix = index(&t)?;
        if i >= ix.len {
            return Err(index_error(i, ix.len));
        }
        let old = elem(&t, &ix, i)?;
        let (w, n) = store_elem(&mut t, &b)?;
        t.set(ix.entry(i), w);
        t.set(ix.entry(i) + 8, n);
        old.free(&mut t, false);
        t.commit();
        Ok(())
    }

    fn insert(&self, i: usize, value: T) -> Result<(), Error> {
        let b = self.encode(&value)?;
        let mut t = self.lock()?;
        let ix = index(&t)?;
        if i > ix.len {
            return Err(index_error(i, ix.len));
        }
        if i == ix.len {
            Self::append(&mut t, &b, &[b.len()])?;
        } else {
            let words = store_elem(&mut t, &b)?;
            let (off, cap) = new_index(&mut t, (ix.len + 1).max(ix.cap))?;
            copy_entries(&t, ix.entry(0), off + 8, i);
            put_entry(&t, off + 8 + ENTRY * i, words);
            copy_entries(&t, ix.entry(i), off + 8 + ENTRY * (i + 1), ix.len - i);
            swap_index(&mut t, &ix, off, cap, ix.len + 1);
        }
        t.commit();
        Ok(())
    }

    fn remove(&self, i: usize) -> Result<T, Error> {
        let mut t = self.lock()?;
        let ix = index(&t)?;
        if i >= ix.len {
            return Err(index_error(i, ix.len));
        }
        let e = elem(&t, &ix, i)?;
        let v = e.copy(&t)?;
        if ix.len == 1 {
            let _ = t.reset(); // the last element: the whole heap is free again
            t.commit();
            drop(t);
            return v.decode();
        }
        if i + 1 == ix.len {
            t.set(word::LEN, i as u64);
        } else {
            match new_index(&mut t, ix.cap) {
                Ok((noff, cap)) => {
                    copy_entries(&t, ix.entry(0), noff + 8, i);
                    copy_entries(&t, ix.entry(i + 1), noff + 8 + ENTRY * i, ix.len - i - 1);
                    swap_index(&mut t, &ix, noff, cap, ix.len - 1);
                }
                Err(e) if e.kind() == uniconc_core::ErrorKind::Full => {
                    // No room for a second index: move the element to the end in place, one
                    // committed step at a time (see `finish_pending`). A remove never fails
                    // for want of memory.
                    t.abort();
                    t.set(word::PENDING, i as u64 + 1);
                    t.commit();
                    finish_pending(&mut t)?;
                    drop(t);
                    return v.decode();
                }
                Err(e) => return Err(e),
            }
        }
        e.free(&mut t, false);
        t.commit();
        drop(t);
        v.decode() // after the lock is released
    }

    fn len(&self) -> usize {
        let mut t = self.s.lock();
        // A corrupt pending remove: the length as it stands.
        let _ = finish_pending(&mut t);
        t.get(word::LEN) as usize
    }

    fn truncate(&self, len: usize) {
        let mut t = self.s.lock();
        // A corrupt pending remove: truncate what stands.
        let _ = finish_pending(&mut t);
        let Ok(ix) = index(&t) else {
            // A corrupt root: nothing can be freed safely.
            return;
        };
        if len >= ix.len {
            return;
        }
        if len == 0 {
            // Every element and the index go: the whole heap is free again.
            let top = t.reset();
            t.commit();
            t.release_pages(top);
            return;
        }
        t.set(word::LEN, len as u64);
        // Freed directly: nothing is allocated after them (module docs, rule 3).
        for i in len..ix.len {
            if let Ok(e) = elem(&t, &ix, i) {
                e.free(&mut t, true);
            }
        }
        t.commit();
    }

    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), Error> {
        let mut bytes = Vec::new();
        let mut lens = Vec::new();
        for v in items {
            let b = self.encode(&v)?;
            bytes.extend_from_slice(&b);
            lens.push(b.len());
        }
        if lens.is_empty() {
            return Ok(());
        }
        let mut t = self.lock()?;
        Self::append(&mut t, &bytes, &lens)?;
        t.commit();
        Ok(())
    }

    fn reverse(&self) -> Result<(), Error> {
        let mut t = self.lock()?;
        let ix = index(&t)?;
        if ix.len < 2 {
            return Ok(());
        }
        let (off, cap) = new_index(&mut t, ix.cap)?;
        for i in 0..ix.len {
            let words = (t.get(ix.entry(i)), t.get(ix.entry(i) + 8));
            put_entry(&t, off + 8 + ENTRY * (ix.len - 1 - i), words);
        }
        swap_index(&mut t, &ix, off, cap, ix.len);
        t.commit();
        Ok(())
    }

    fn to_vec(&self) -> Result<Vec<T>, Error> {
        let t = self.lock()?;
        let ix = index(&t)?;
        if TypeId::of::<T>() == TypeId::of::<u64>() {
            let v: Box<dyn Any> = Box::new(to_vec_u64(&t, &ix)?);
            return Ok(*v.downcast::<Vec<T>>().expect("T is u64"));
        }
        let mut out = Vec::with_capacity(ix.len);
        for i in 0..ix.len {
            out.push(elem(&t, &ix, i)?.decode(&t)?);
        }
        Ok(out)
    }

    fn update<U>(&self, f: impl FnOnce(&mut Vec<T>) -> U) -> Result<U, Error> {
        let mut t = self.lock()?;
        let ix = index(&t)?;
        let mut items = Vec::with_capacity(ix.len);
        for i in 0..ix.len {
            items.push(elem(&t, &ix, i)?.decode::<T>(&t)?);
        }
        // A panic in `f` unwinds through `t`: nothing was written, the lock is released.
        let out = f(&mut items);
        let encoded = items
            .iter()
            .map(|v| self.encode(v))
            .collect::<Result<Vec<_>, _>>()?;
        let (off, cap) = new_index(&mut t, encoded.len())?;
        for (i, b) in encoded.iter().enumerate() {
            let words = store_elem(&mut t, b)?;
            put_entry(&t, off + 8 + ENTRY * i, words);
        }
        // Every allocation is made: the old elements can be freed directly (module docs,
        // rule 3), then the old index (deferred, with the swap).
        for i in 0..ix.len {
            elem(&t, &ix, i)?.free(&mut t, true);
        }
        swap_index(&mut t, &ix, off, cap, encoded.len());
        t.commit();
        Ok(out)
    }
}
