//! In-process tests of the allocator, the journal and both collections, including simulated
//! crashes at every journaled write of every kind of operation (the real SIGKILLs are in
//! `tests/collections.rs`).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::sync::atomic::Ordering;

use uniconc_core::{ErrorKind, List as _, Map as _};

use super::check::Kind;
use super::heap::{class_of, class_size};
use super::journal::CRASH_AT;
use super::{List, Map, Store, word};

/// Silences the panics of simulated crashes (other panics go to the default hook).
fn quiet_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with("simulated crash") {
                default(info);
            }
        }));
    });
}

fn w(s: &Store, off: usize) -> u64 {
    s.word(off).load(Ordering::Relaxed)
}

fn check(s: &Store, kind: Kind) -> usize {
    super::check::check(s, kind).unwrap()
}

#[test]
fn class_sizes() {
    assert_eq!(class_of(1), Some(0));
    assert_eq!(class_of(16), Some(0));
    assert_eq!(class_of(17), Some(1));
    assert_eq!(class_size(class_of(4097).unwrap()), 8192);
    assert_eq!(class_of(usize::MAX), None);
}

#[test]
fn map_basics() {
    let m = Map::<String, u64>::with_reserved_bytes(1 << 20).unwrap();
    assert_eq!(m.insert("a".into(), 1).unwrap(), None);
    assert_eq!(m.insert("a".into(), 2).unwrap(), Some(1));
    assert_eq!(m.get("a").unwrap(), Some(2));
    assert!(m.contains_key("a").unwrap());
    assert_eq!(m.get("b").unwrap(), None);
    for i in 0..500u64 {
        m.insert(format!("k{i}"), i).unwrap();
    }
    assert_eq!(m.len(), 501);
    for i in (0..500u64).step_by(2) {
        assert_eq!(m.remove(format!("k{i}").as_str()).unwrap(), Some(i));
    }
    assert_eq!(m.len(), 251);
    assert_eq!(m.get("k7").unwrap(), Some(7));
    assert_eq!(m.get("k8").unwrap(), None);
    check(m.store(), Kind::Map);
    assert_eq!(m.update("a".into(), |v| v.take()).unwrap(), Some(2));
    assert_eq!(m.get_or_insert_with("z".into(), || 9).unwrap(), 9);
    assert_eq!(m.get_or_insert_with("z".into(), || 10).unwrap(), 9);
    let mut keys = m.keys().unwrap();
    keys.sort();
    assert_eq!(keys.len(), 251);
    assert_eq!(m.values().unwrap().len(), 251);
    m.clear();
    assert!(m.is_empty());
    check(m.store(), Kind::Map);
    m.insert("again".into(), 1).unwrap();
    check(m.store(), Kind::Map);
}

/// A key whose `Hash` agrees with its borrowed form's but whose encoding differs: the lookup
/// falls back to decoding the stored key and comparing with `Eq`.
#[test]
fn map_borrowed_key_with_other_bytes() {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Tagged(u32, u8);
    impl PartialEq for Tagged {
        fn eq(&self, o: &Self) -> bool {
            self.0 == o.0
        }
    }
    impl Eq for Tagged {}
    impl std::hash::Hash for Tagged {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.hash(h);
        }
    }
    impl std::borrow::Borrow<u32> for Tagged {
        fn borrow(&self) -> &u32 {
            &self.0
        }
    }
    let m = Map::<Tagged, u8>::with_reserved_bytes(1 << 20).unwrap();
    m.insert(Tagged(300, 9), 1).unwrap();
    assert_eq!(m.get(&300u32).unwrap(), Some(1));
    assert_eq!(m.get(&301u32).unwrap(), None);
    assert_eq!(m.insert(Tagged(300, 4), 2).unwrap(), Some(1)); // equal keys, other bytes
    assert_eq!(m.len(), 1);
    assert_eq!(m.remove(&300u32).unwrap(), Some(2));
}

/// `List<u64>::to_vec` reads the codec's varint itself: it must agree with the codec on every
/// form (one byte, 2, 4 and 8 bytes after a marker) and on other element types.
#[test]
fn list_u64_to_vec_agrees_with_the_codec() {
    let edges = [
        0,
        1,
        250,
        251,
        255,
        256,
        65535,
        65536,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let l = List::<u64>::with_reserved_bytes(1 << 20).unwrap();
    l.extend(edges).unwrap();
    assert_eq!(l.to_vec().unwrap(), edges);
    for (i, v) in edges.iter().enumerate() {
        assert_eq!(l.get(i).unwrap(), Some(*v));
    }
    check(l.store(), Kind::List);
    let s = List::<String>::with_reserved_bytes(1 << 20).unwrap();
    s.extend([
        "".to_string(),
        "short".into(),
        "longer than eight bytes".into(),
    ])
    .unwrap();
    assert_eq!(
        s.to_vec().unwrap(),
        ["", "short", "longer than eight bytes"]
    );
    check(s.store(), Kind::List);
}

#[test]
fn list_basics() {
    let l = List::<u64>::with_reserved_bytes(1 << 20).unwrap();
    l.extend(0..100).unwrap();
    assert_eq!(l.len(), 100);
    assert_eq!(l.pop().unwrap(), Some(99));
    l.set(0, 1000).unwrap();
    assert_eq!(l.get(0).unwrap(), Some(1000));
    assert_eq!(l.set(99, 0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    l.insert(1, 7).unwrap();
    assert_eq!(l.get(1).unwrap(), Some(7));
    assert_eq!(l.get(2).unwrap(), Some(1));
    assert_eq!(l.remove(1).unwrap(), 7);
    assert_eq!(
        l.remove(500).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    l.reverse().unwrap();
    assert_eq!(l.get(0).unwrap(), Some(98));
    assert_eq!(l.get(98).unwrap(), Some(1000));
    l.truncate(10);
    assert_eq!(l.to_vec().unwrap(), (89..=98).rev().collect::<Vec<_>>());
    let top = l
        .update(|v| {
            v.sort();
            v.last().copied()
        })
        .unwrap();
    assert_eq!(top, Some(98));
    assert_eq!(l.to_vec().unwrap(), (89..=98).collect::<Vec<_>>());
    check(l.store(), Kind::List);
    l.clear();
    check(l.store(), Kind::List);
    assert_eq!(l.pop().unwrap(), None);
}

/// Inserting and removing far beyond the reservation's size never runs out: freed space is
/// reused.
#[test]
fn freed_space_is_reused() {
    let m = Map::<u64, String>::with_reserved_bytes(64 << 10).unwrap();
    let l = List::<Vec<u8>>::with_reserved_bytes(64 << 10).unwrap();
    let mut written = 0usize;
    for i in 0..50_000u64 {
        let v = "x".repeat((i % 40) as usize);
        written += v.len() + 8;
        m.insert(i % 50, v.clone()).unwrap();
        if i % 3 == 0 {
            m.remove(&(i % 7)).unwrap();
        }
        l.push(v.into_bytes()).unwrap();
        if l.len() > 40 {
            l.remove(3).unwrap();
            l.pop().unwrap();
        }
    }
    assert!(written > 10 * (64 << 10));
    check(m.store(), Kind::Map);
    check(l.store(), Kind::List);
}

#[test]
fn full_changes_nothing_and_too_large_is_invalid_message() {
    let l = List::<u64>::with_reserved_bytes(32 << 10).unwrap();
    let err = loop {
        if let Err(e) = l.push(5) {
            break e;
        }
    };
    assert_eq!(err.kind(), ErrorKind::Full);
    let n = l.len();
    check(l.store(), Kind::List);
    assert_eq!(
        l.extend([1, 2, 3].repeat(1000)).unwrap_err().kind(),
        ErrorKind::Full
    );
    assert_eq!(l.len(), n);
    check(l.store(), Kind::List);
    let big = List::<Vec<u8>>::with_reserved_bytes(32 << 10).unwrap();
    let e = big.push(vec![0; 40 << 10]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidMessage);
    let m = Map::<u8, Vec<u8>>::with_reserved_bytes(32 << 10).unwrap();
    let e = m.insert(1, vec![0; 40 << 10]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidMessage);
    assert!(m.is_empty());
}

#[test]
fn panicking_closures_change_nothing_and_release_the_lock() {
    let m = Map::<u8, u8>::with_reserved_bytes(1 << 20).unwrap();
    m.insert(1, 1).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.update(1, |v| {
            *v = Some(2);
            panic!("in the closure")
        })
    }));
    assert!(r.is_err());
    assert_eq!(m.get(&1).unwrap(), Some(1));
    let l = List::<u8>::with_reserved_bytes(1 << 20).unwrap();
    l.extend([1, 2]).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        l.update(|v| {
            v.clear();
            panic!("in the closure")
        })
    }));
    assert!(r.is_err());
    assert_eq!(l.to_vec().unwrap(), [1, 2]);
    assert!(!l.store().hdr().lock.is_locked());
    check(l.store(), Kind::List);
}

#[test]
fn corrupt_offsets_are_errors() {
    let l = List::<u64>::with_reserved_bytes(1 << 20).unwrap();
    l.extend([1, 2, 3]).unwrap();
    let s = l.store();
    let root = w(s, word::INDEX_OFF) as usize;
    // Entry 0's length word: not inline, and its offset (the inline bytes) outside the heap.
    s.word(root + 16).store(1 << 40, Ordering::Relaxed);
    assert_eq!(l.get(0).unwrap_err().kind(), ErrorKind::InvalidMessage);
    assert_eq!(l.to_vec().unwrap_err().kind(), ErrorKind::InvalidMessage);
    s.word(word::INDEX_CAP).store(u64::MAX, Ordering::Relaxed);
    assert_eq!(l.get(1).unwrap_err().kind(), ErrorKind::InvalidMessage);
    let m = Map::<u64, u64>::with_reserved_bytes(1 << 20).unwrap();
    m.insert(1, 1).unwrap();
    m.store().word(word::INDEX_OFF).store(3, Ordering::Relaxed);
    assert_eq!(m.get(&1).unwrap_err().kind(), ErrorKind::InvalidMessage);
}

/// Runs `op` on a fresh `setup()` stopped ("crashed", as by a SIGKILL) at its `k`-th crash
/// point (each journaled write and each commit) for every `k`, then lets the next lock holder
/// recover and checks the collection is consistent and either exactly as before or exactly as
/// the operation run to its end leaves it (an operation that commits in steps is finished by
/// the next holder).
fn every_crash_point<C, S: Fn() -> C, R: PartialEq + std::fmt::Debug>(
    name: &str,
    setup: S,
    store: fn(&C) -> &Store,
    kind: Kind,
    snapshot: impl Fn(&C) -> R,
    op: impl Fn(&C),
) {
    quiet_crashes();
    let done = setup();
    op(&done);
    check(store(&done), kind);
    let done = snapshot(&done);
    for k in 0.. {
        assert!(k < 2000, "{name}: too many crash points");
        let c = setup();
        let before = snapshot(&c);
        CRASH_AT.with(|x| x.set(Some(k)));
        let r = catch_unwind(AssertUnwindSafe(|| op(&c)));
        CRASH_AT.with(|x| x.set(None));
        if r.is_ok() {
            assert!(k > 0, "{name}: no crash point");
            assert_eq!(snapshot(&c), done);
            break;
        }
        // The "dead" holder is this process: release its lock as a takeover would; the next
        // operation rolls the journal back (and finishes what is pending).
        store(&c).hdr().lock.unlock();
        let after = snapshot(&c);
        assert!(
            after == before || after == done,
            "{name}: crash at point {k} left {after:?}, neither {before:?} nor {done:?}"
        );
        check(store(&c), kind);
    }
}

#[test]
fn map_operations_survive_a_crash_at_every_write() {
    type M = Map<u64, String>;
    let setup = |n: u64| {
        move || {
            let m = M::with_reserved_bytes(1 << 20).unwrap();
            for i in 0..n {
                m.insert(i, format!("value {i}")).unwrap();
            }
            for i in (0..n).step_by(5) {
                m.remove(&i).unwrap();
            }
            m
        }
    };
    let snap = |m: &M| m.to_vec().unwrap().into_iter().collect::<BTreeMap<_, _>>();
    let st: fn(&M) -> &Store = M::store;
    every_crash_point("insert new", setup(10), st, Kind::Map, snap, |m| {
        m.insert(100, "new".into()).unwrap();
    });
    every_crash_point("insert replace", setup(10), st, Kind::Map, snap, |m| {
        m.insert(3, "replaced, and longer than before".into())
            .unwrap();
    });
    every_crash_point(
        "insert into a tombstone",
        setup(10),
        st,
        Kind::Map,
        snap,
        |m| {
            m.insert(5, "back".into()).unwrap();
        },
    );
    // Filled until the next new key makes the table rebuild itself.
    let crowded = || {
        let m = setup(10)();
        let s = m.store();
        let mut k = 1000;
        while (w(s, word::LEN) + w(s, word::TOMBS) + 1) * 4 <= w(s, word::INDEX_CAP) * 3 {
            m.insert(k, "fill".into()).unwrap();
            k += 1;
        }
        m
    };
    every_crash_point("insert with rehash", crowded, st, Kind::Map, snap, |m| {
        let table = w(m.store(), word::INDEX_OFF);
        m.insert(100, "grow".into()).unwrap();
        assert_ne!(w(m.store(), word::INDEX_OFF), table, "no rehash");
    });
    every_crash_point("remove", setup(10), st, Kind::Map, snap, |m| {
        m.remove(&4).unwrap();
    });
    every_crash_point("update", setup(10), st, Kind::Map, snap, |m| {
        m.update(6, |v| v.as_mut().unwrap().push('!')).unwrap();
    });
    every_crash_point("update to None", setup(10), st, Kind::Map, snap, |m| {
        m.update(7, |v| v.take()).unwrap();
    });
    every_crash_point("clear", setup(40), st, Kind::Map, snap, |m| m.clear());
    every_crash_point(
        "remove the last entry",
        setup(2),
        st,
        Kind::Map,
        snap,
        |m| {
            m.remove(&1).unwrap();
        },
    );
}

#[test]
fn list_operations_survive_a_crash_at_every_write() {
    type L = List<String>;
    let setup = |n: usize| {
        move || {
            let l = L::with_reserved_bytes(1 << 20).unwrap();
            l.extend((0..n).map(|i| format!("element {i}"))).unwrap();
            l.pop().unwrap();
            l
        }
    };
    let snap = |l: &L| l.to_vec().unwrap();
    let st: fn(&L) -> &Store = L::store;
    every_crash_point("push", setup(3), st, Kind::List, snap, |l| {
        l.push("pushed".into()).unwrap();
    });
    // Filled to its index's capacity: the next push builds a larger index.
    let at_capacity = || {
        let l = L::with_reserved_bytes(1 << 20).unwrap();
        l.extend((0..15).map(|i| format!("element {i}"))).unwrap();
        assert_eq!(w(l.store(), word::INDEX_CAP), 15);
        l
    };
    every_crash_point("push with growth", at_capacity, st, Kind::List, snap, |l| {
        l.push("grows".into()).unwrap();
        assert!(w(l.store(), word::INDEX_CAP) > 15, "no growth");
    });
    every_crash_point("pop", setup(5), st, Kind::List, snap, |l| {
        l.pop().unwrap();
    });
    every_crash_point("set", setup(5), st, Kind::List, snap, |l| {
        l.set(2, "set".into()).unwrap();
    });
    every_crash_point("insert", setup(5), st, Kind::List, snap, |l| {
        l.insert(1, "inserted".into()).unwrap();
    });
    every_crash_point("remove", setup(5), st, Kind::List, snap, |l| {
        l.remove(1).unwrap();
    });
    every_crash_point("remove last", setup(5), st, Kind::List, snap, |l| {
        l.remove(3).unwrap();
    });
    every_crash_point("extend", setup(5), st, Kind::List, snap, |l| {
        l.extend((0..30).map(|i| format!("e{i}"))).unwrap();
    });
    every_crash_point("reverse", setup(9), st, Kind::List, snap, |l| {
        l.reverse().unwrap();
    });
    every_crash_point("truncate", setup(30), st, Kind::List, snap, |l| {
        l.truncate(3)
    });
    every_crash_point("clear", setup(30), st, Kind::List, snap, |l| l.clear());
    every_crash_point("pop the last", setup(2), st, Kind::List, snap, |l| {
        l.pop().unwrap();
    });
    every_crash_point("remove the last", setup(2), st, Kind::List, snap, |l| {
        l.remove(0).unwrap();
    });
    // A list whose index cannot be copied: `remove` moves the element to the end in steps.
    let full = || {
        let l = L::with_reserved_bytes(16 << 10).unwrap();
        let mut i = 0;
        // Elements in blocks of the index's class: when one no longer fits, neither does a
        // second index.
        while l.push(format!("{i:0>400}")).is_ok() {
            i += 1;
        }
        l
    };
    every_crash_point(
        "remove in place, memory full",
        full,
        st,
        Kind::List,
        snap,
        |l| {
            let index = w(l.store(), word::INDEX_OFF);
            assert_eq!(l.remove(2).unwrap(), format!("{:0>400}", 2));
            assert_eq!(w(l.store(), word::INDEX_OFF), index, "not removed in place");
        },
    );
    every_crash_point("update", setup(9), st, Kind::List, snap, |l| {
        l.update(|v| {
            v.sort();
            v.push("more".into());
        })
        .unwrap();
    });
}
