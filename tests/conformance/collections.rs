//! Shared collections: Map and List, in one unit and across units.
//!
//! Helper types: [`Picky`] refuses to encode one value (13), so the all-or-nothing rules can
//! be checked; [`Blob`] encodes as one byte string and is built on zeroed pages the test never
//! touches, so a value over the codec's limit costs no memory.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uniconc::ErrorKind;
use uniconc::prelude::*;

use crate::support::scale;

/// A number that refuses to be encoded when it is 13 (decodes like a `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is refused"));
        }
        s.serialize_u32(self.0)
    }
}

/// Bytes encoded as one byte string (a length and the bytes, not one element at a time).
#[derive(Debug, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Blob, E> {
                Ok(Blob(b.to_vec()))
            }
            fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(b))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// The largest encoded value any backend stores (the codec's limit, 256 MiB): every
/// collection refuses a larger one, whatever room it has.
const CODEC_LIMIT: usize = 256 << 20;

/// A `Blob` one byte over the codec's limit. `vec![0; n]` takes zeroed pages from the OS
/// that stay unbacked as long as nobody writes them, and the size is counted from the length
/// alone, so this costs no memory.
fn blob_over_the_limit() -> Blob {
    Blob(vec![0u8; CODEC_LIMIT + 1])
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

pub(crate) fn map_insert_get_remove_len_clear<B: Backend>() {
    let m = B::map::<String, u64>().unwrap();
    assert!(m.is_empty());
    assert_eq!(m.len(), 0);
    assert_eq!(m.insert("a".into(), 1).unwrap(), None, "a new key");
    assert_eq!(m.insert("b".into(), 2).unwrap(), None);
    assert_eq!(
        m.insert("a".into(), 10).unwrap(),
        Some(1),
        "insert returns the value it replaces"
    );
    assert_eq!(m.len(), 2);
    assert!(!m.is_empty());
    // Looked up through `Borrow`: a `&str` for `String` keys.
    assert_eq!(m.get("a").unwrap(), Some(10));
    assert_eq!(m.get(&String::from("b")).unwrap(), Some(2));
    assert_eq!(m.get("c").unwrap(), None);
    assert!(m.contains_key("b").unwrap());
    assert!(!m.contains_key("c").unwrap());
    assert_eq!(m.remove("b").unwrap(), Some(2));
    assert_eq!(
        m.remove("b").unwrap(),
        None,
        "a second remove finds nothing"
    );
    assert!(!m.contains_key("b").unwrap());
    assert_eq!(m.len(), 1);
    m.clear();
    assert!(m.is_empty());
    assert_eq!(m.get("a").unwrap(), None);
    // Usable after a clear.
    m.insert("c".into(), 3).unwrap();
    assert_eq!(m.to_vec().unwrap(), [("c".to_owned(), 3)]);
}

pub(crate) fn map_update_inserts_changes_removes_and_returns<B: Backend>() {
    let m = B::map::<u32, String>().unwrap();
    // A new entry.
    let seen = m
        .update(1, |v| {
            let was = v.is_none();
            *v = Some("one".into());
            was
        })
        .unwrap();
    assert!(seen, "update saw no value for a missing key");
    assert_eq!(m.get(&1).unwrap().as_deref(), Some("one"));
    // A change, returning what the closure returns.
    let len = m
        .update(1, |v| {
            let s = v.as_mut().unwrap();
            s.push_str("!!");
            s.len()
        })
        .unwrap();
    assert_eq!(len, 5);
    assert_eq!(m.get(&1).unwrap().as_deref(), Some("one!!"));
    // Leaving `None` removes the entry.
    let taken = m.update(1, Option::take).unwrap();
    assert_eq!(taken.as_deref(), Some("one!!"));
    assert!(!m.contains_key(&1).unwrap());
    assert!(m.is_empty());
    // Leaving `None` on a missing key changes nothing.
    assert!(!m.update(2, |v| v.is_some()).unwrap());
    assert!(m.is_empty());
}

pub(crate) fn map_panicking_update_changes_nothing<B: Backend>() {
    let m = B::map::<u32, u64>().unwrap();
    m.insert(1, 100).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.update(1, |v| {
            *v = Some(999);
            panic!("an update that panics halfway");
        })
    }));
    assert!(r.is_err(), "the panic propagates");
    assert_eq!(m.get(&1).unwrap(), Some(100), "the entry is unchanged");
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.update(2, |v| {
            *v = Some(2);
            panic!("a panicking insert");
        })
    }));
    assert!(r.is_err());
    assert!(!m.contains_key(&2).unwrap(), "nothing was inserted");
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.get_or_insert_with(3, || panic!("a panicking get_or_insert_with"))
    }));
    assert!(r.is_err());
    assert_eq!(m.len(), 1);
    // The map is usable afterwards, from another unit too.
    m.update(1, |v| *v.as_mut().unwrap() += 1).unwrap();
    let m2 = m.clone();
    B::spawn(move || m2.update(1, |v| *v.as_mut().unwrap() += 1).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(m.get(&1).unwrap(), Some(102));
}

pub(crate) fn map_get_or_insert_with_races_insert_once<B: Backend>() {
    let units = 4u64;
    let m = B::map::<String, u64>().unwrap();
    let inserts = B::value(0u64).unwrap();
    let start = B::barrier(units as usize).unwrap();
    let handles: Vec<_> = (0..units)
        .map(|id| {
            let (m, inserts, start) = (m.clone(), inserts.clone(), start.clone());
            B::spawn(move || {
                start.wait();
                m.get_or_insert_with("winner".into(), || {
                    inserts.update(|n| *n += 1);
                    id + 1
                })
                .unwrap()
            })
            .unwrap()
        })
        .collect();
    let seen: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(inserts.load(), 1, "exactly one unit inserted");
    let stored = m.get("winner").unwrap().unwrap();
    assert!((1..=units).contains(&stored));
    assert!(
        seen.iter().all(|&v| v == stored),
        "every unit got the stored value: {seen:?} vs {stored}"
    );
    assert_eq!(m.len(), 1);
}

pub(crate) fn map_update_from_4_units_counts_exactly<B: Backend>() {
    let units = 4u64;
    let rounds = 1_000 * scale() as u64;
    let m = B::map::<String, u64>().unwrap();
    let handles: Vec<_> = (0..units)
        .map(|_| {
            let m = m.clone();
            B::spawn(move || {
                for _ in 0..rounds {
                    m.update("n".into(), |c| *c.get_or_insert(0) += 1).unwrap();
                }
            })
            .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(m.get("n").unwrap(), Some(units * rounds));
}

/// A writer inserts keys 0, 1, 2, ... in order, one operation each, so the map always holds
/// a prefix `0..n` with value `2k` under key `k`. Every snapshot must show such a prefix: a
/// snapshot that is not taken under one lock (a shard at a time) would miss a key below one
/// it shows.
pub(crate) fn map_snapshots_are_consistent<B: Backend>() {
    let n = 2_000 * scale() as u64;
    let m = B::map::<u64, u64>().unwrap();
    let m2 = m.clone();
    let writer = B::spawn(move || {
        for k in 0..n {
            m2.insert(k, 2 * k).unwrap();
        }
    })
    .unwrap();
    let check_prefix = |keys: &[u64]| {
        assert!(
            keys.iter().enumerate().all(|(i, &k)| k == i as u64),
            "a snapshot is not a prefix of the insertion order"
        );
    };
    loop {
        let done = writer.is_finished();
        let entries = sorted(m.to_vec().unwrap());
        check_prefix(&entries.iter().map(|e| e.0).collect::<Vec<_>>());
        assert!(entries.iter().all(|&(k, v)| v == 2 * k));
        check_prefix(&sorted(m.keys().unwrap()));
        check_prefix(&sorted(m.iter().unwrap().map(|e| e.0).collect()));
        let values = sorted(m.values().unwrap());
        assert!(values.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(m.len() as u64, n);
}

pub(crate) fn map_bad_values_are_refused_and_change_nothing<B: Backend>() {
    let m = B::map::<u32, Picky>().unwrap();
    m.insert(1, Picky(1)).unwrap();
    let err = m.insert(2, Picky(13)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = m.insert(1, Picky(13)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = m.update(1, |v| *v = Some(Picky(13))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = m.update(3, |v| *v = Some(Picky(13))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = m.get_or_insert_with(4, || Picky(13)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(m.to_vec().unwrap(), [(1, Picky(1))], "nothing changed");
    // A key that does not encode.
    let k = B::map::<Picky, u32>().unwrap();
    let err = k.insert(Picky(13), 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = k.update(Picky(13), |v| *v = Some(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    for err in [
        k.get(&Picky(13)).unwrap_err(),
        k.remove(&Picky(13)).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    let err = k.contains_key(&Picky(13)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert!(k.is_empty());
    assert!(k.keys().unwrap().is_empty(), "no key that cannot be copied");
    // A value over the codec's limit.
    let big = B::map::<u32, Blob>().unwrap();
    big.insert(1, Blob(vec![1, 2, 3])).unwrap();
    let err = big.insert(1, blob_over_the_limit()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = big
        .update(2, |v| *v = Some(blob_over_the_limit()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(big.to_vec().unwrap(), [(1, Blob(vec![1, 2, 3]))]);
}

pub(crate) fn list_push_pop_get_set_insert_remove<B: Backend>() {
    let l = B::list::<String>().unwrap();
    assert!(l.is_empty());
    assert_eq!(l.pop().unwrap(), None);
    l.push("a".into()).unwrap();
    l.push("c".into()).unwrap();
    l.insert(1, "b".into()).unwrap();
    l.insert(3, "d".into()).unwrap(); // at len: appends
    l.insert(0, "_".into()).unwrap();
    assert_eq!(l.len(), 5);
    assert_eq!(l.to_vec().unwrap(), ["_", "a", "b", "c", "d"]);
    assert_eq!(l.get(2).unwrap().as_deref(), Some("b"));
    assert_eq!(l.get(5).unwrap(), None);
    l.set(0, "z".into()).unwrap();
    assert_eq!(l.remove(0).unwrap(), "z");
    assert_eq!(l.pop().unwrap().as_deref(), Some("d"));
    assert_eq!(l.to_vec().unwrap(), ["a", "b", "c"]);
    // Out of range: an error, and nothing changed.
    assert_eq!(
        l.set(3, "x".into()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        l.insert(4, "x".into()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(l.remove(3).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        l.remove(usize::MAX).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(l.to_vec().unwrap(), ["a", "b", "c"]);
    assert_eq!(l.len(), 3);
}

pub(crate) fn list_truncate_clear_extend_reverse_iter<B: Backend>() {
    let l = B::list::<u64>().unwrap();
    l.extend(0..10).unwrap();
    assert_eq!(l.len(), 10);
    l.truncate(20); // longer than the list: nothing happens
    assert_eq!(l.len(), 10);
    l.truncate(6);
    assert_eq!(l.to_vec().unwrap(), [0, 1, 2, 3, 4, 5]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 4, 3, 2, 1, 0]);
    assert_eq!(l.iter().unwrap().collect::<Vec<_>>(), [5, 4, 3, 2, 1, 0]);
    l.extend(std::iter::empty()).unwrap();
    assert_eq!(l.len(), 6);
    l.clear();
    assert!(l.is_empty());
    l.reverse().unwrap(); // an empty list reverses to itself
    assert!(l.to_vec().unwrap().is_empty());
    assert_eq!(l.iter().unwrap().count(), 0);
    l.extend([7]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [7]);
}

pub(crate) fn list_update_returns_and_panics_change_nothing<B: Backend>() {
    let l = B::list::<u32>().unwrap();
    l.extend([3, 1, 2, 3]).unwrap();
    let max = l
        .update(|v| {
            v.sort_unstable();
            v.dedup();
            v.last().copied()
        })
        .unwrap();
    assert_eq!(max, Some(3));
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
    let r = catch_unwind(AssertUnwindSafe(|| {
        l.update(|v| {
            v.clear();
            v.push(99);
            panic!("an update that panics halfway");
        })
    }));
    assert!(r.is_err(), "the panic propagates");
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3], "the list is unchanged");
    // Usable afterwards, from another unit too.
    let l2 = l.clone();
    B::spawn(move || l2.update(|v| v.push(4)).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 4]);
}

pub(crate) fn list_bad_values_are_refused_and_change_nothing<B: Backend>() {
    let l = B::list::<Picky>().unwrap();
    l.extend([Picky(1), Picky(2)]).unwrap();
    let refused = |r: Result<(), uniconc::Error>| {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    };
    refused(l.push(Picky(13)));
    refused(l.set(0, Picky(13)));
    refused(l.insert(1, Picky(13)));
    // All or nothing: the good items before and after the bad one are not appended.
    refused(l.extend([Picky(3), Picky(13), Picky(4)]));
    refused(l.update(|v| {
        v.push(Picky(5));
        v.push(Picky(13));
    }));
    assert_eq!(l.to_vec().unwrap(), [Picky(1), Picky(2)], "nothing changed");
    // A value over the codec's limit.
    let big = B::list::<Blob>().unwrap();
    big.push(Blob(vec![1])).unwrap();
    let err = big.push(blob_over_the_limit()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = big
        .extend([Blob(vec![2]), blob_over_the_limit()])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = big.set(0, blob_over_the_limit()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(big.to_vec().unwrap(), [Blob(vec![1])]);
}

/// A writer pushes 0, 1, 2, ... one at a time and reverses the list now and then, each one
/// operation: every snapshot is `0..n` in ascending or descending order, never a mix.
pub(crate) fn list_snapshots_are_consistent<B: Backend>() {
    let n = 1_000 * scale() as u64;
    let l = B::list::<u64>().unwrap();
    let l2 = l.clone();
    let writer = B::spawn(move || {
        let mut ascending = true;
        for k in 0..n {
            // Pushed at the end when ascending, at the front when reversed: the list stays
            // 0..=k in one order or the other.
            if ascending {
                l2.push(k).unwrap();
            } else {
                l2.insert(0, k).unwrap();
            }
            if k % 7 == 0 {
                l2.reverse().unwrap();
                ascending = !ascending;
            }
        }
    })
    .unwrap();
    loop {
        let done = writer.is_finished();
        for snap in [l.to_vec().unwrap(), l.iter().unwrap().collect()] {
            let len = snap.len() as u64;
            let up = snap.iter().copied().eq(0..len);
            let down = snap.iter().copied().eq((0..len).rev());
            assert!(up || down, "a snapshot mixes two states: {snap:?}");
        }
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(l.len() as u64, n);
}

/// Clones share the collection, including clones moved into units started with `spawn` and
/// `spawn_async` after the collection was created.
pub(crate) fn collections_shared_with_spawned_units<B: Backend>() {
    let m = B::map::<String, Vec<u32>>().unwrap();
    let l = B::list::<String>().unwrap();
    let (m2, l2) = (m.clone(), l.clone());
    m2.insert("clone".into(), vec![0]).unwrap();
    assert_eq!(m.get("clone").unwrap(), Some(vec![0]), "clones share");
    B::spawn(move || {
        m2.insert("spawn".into(), vec![1, 2]).unwrap();
        l2.push("spawn".into()).unwrap();
        l2.len()
    })
    .unwrap()
    .join()
    .unwrap();
    let (m3, l3) = (m.clone(), l.clone());
    let seen = B::spawn_async(async move {
        let seen = m3.get("spawn").unwrap();
        m3.insert("async".into(), vec![3]).unwrap();
        l3.push("async".into()).unwrap();
        seen
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(
        seen,
        Some(vec![1, 2]),
        "the async unit saw the first unit's insert"
    );
    assert_eq!(
        sorted(m.to_vec().unwrap()),
        [
            ("async".to_owned(), vec![3]),
            ("clone".to_owned(), vec![0]),
            ("spawn".to_owned(), vec![1, 2]),
        ]
    );
    assert_eq!(l.to_vec().unwrap(), ["spawn", "async"]);
    // Python's Manager example: a child changes the dict and reverses the list.
    let (m4, l4) = (m.clone(), l.clone());
    B::spawn(move || {
        m4.clear();
        m4.insert("1".into(), vec![1]).unwrap();
        l4.reverse().unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(m.to_vec().unwrap(), [("1".to_owned(), vec![1])]);
    assert_eq!(l.to_vec().unwrap(), ["async", "spawn"]);
}
