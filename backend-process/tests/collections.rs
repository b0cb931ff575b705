//! The shared-memory `Map` and `List` across forked processes: changes made by children are
//! seen by the parent, and children SIGKILLed at random points of random operations leave both
//! collections consistent, with their space reusable.

mod common;

use std::time::{Duration, Instant};

use common::{Watchdog, fork_lock, scale, spawn, watchdog};
use uniconc_core::{ErrorKind, Event as _, List as _, Map as _, Value as _};
use uniconc_process::{List, Map, event, list, map, value};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` in a forked child and returns its exit code (0: it returned `true`).
fn in_child(f: impl FnOnce() -> bool) -> i32 {
    spawn(move || if f() { 0 } else { 1 }).join(LIMIT)
}

#[test]
fn changes_made_by_children_are_seen_by_the_parent() {
    let _f = fork_lock();
    let _w = Watchdog::new("changes_made_by_children_are_seen_by_the_parent", 120);
    let m = map::<u64, String>().unwrap();
    let l = list::<String>().unwrap();
    m.insert(0, "zero".into()).unwrap();
    let (m2, l2) = (m.clone(), l.clone());
    assert_eq!(
        in_child(move || {
            (1..=100).all(|i| m2.insert(i, format!("v{i}")).is_ok())
                && m2.remove(&0).unwrap() == Some("zero".into())
                && l2.extend(["a".to_string(), "b".into(), "c".into()]).is_ok()
                && l2.reverse().is_ok()
        }),
        0
    );
    assert_eq!(m.len(), 100);
    assert_eq!(m.get(&42).unwrap().as_deref(), Some("v42"));
    assert_eq!(m.get(&0).unwrap(), None);
    assert_eq!(l.to_vec().unwrap(), ["c", "b", "a"]);
    // And back: the parent's changes are seen by a later child.
    l.push("d".into()).unwrap();
    let (m2, l2) = (m.clone(), l.clone());
    assert_eq!(
        in_child(move || {
            m2.get(&7).unwrap().as_deref() == Some("v7")
                && l2.pop().unwrap().as_deref() == Some("d")
                && l2.remove(0).unwrap() == "c"
        }),
        0
    );
    assert_eq!(l.to_vec().unwrap(), ["b", "a"]);
}

/// Python's `d[1] = '1'; d['2'] = 2; l.reverse()` from a child, with keys and values that are
/// either an integer or a string.
#[test]
fn the_python_example_from_a_child() {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    enum Py {
        Int(i64),
        Str(String),
    }
    let _f = fork_lock();
    let _w = Watchdog::new("the_python_example_from_a_child", 120);
    let d = map::<Py, Py>().unwrap();
    let l = list::<Py>().unwrap();
    l.extend([Py::Int(1), Py::Str("x".into()), Py::Int(3)])
        .unwrap();
    let (d2, l2) = (d.clone(), l.clone());
    assert_eq!(
        in_child(move || {
            d2.insert(Py::Int(1), Py::Str("1".into())).is_ok()
                && d2.insert(Py::Str("2".into()), Py::Int(2)).is_ok()
                && l2.reverse().is_ok()
        }),
        0
    );
    assert_eq!(d.get(&Py::Int(1)).unwrap(), Some(Py::Str("1".into())));
    assert_eq!(d.get(&Py::Str("2".into())).unwrap(), Some(Py::Int(2)));
    assert_eq!(
        l.to_vec().unwrap(),
        [Py::Int(3), Py::Str("x".into()), Py::Int(1)]
    );
}

#[test]
fn a_child_killed_inside_an_update_closure_changes_nothing() {
    let _f = fork_lock();
    let _w = Watchdog::new("a_child_killed_inside_an_update_closure", 120);
    let m = map::<String, u64>().unwrap();
    let l = list::<u64>().unwrap();
    m.insert("n".into(), 1).unwrap();
    l.extend([1, 2, 3]).unwrap();
    for which in 0..2 {
        let inside = event().unwrap();
        let (m2, l2, inside2) = (m.clone(), l.clone(), inside.clone());
        let child = spawn(move || {
            let park = || loop {
                std::thread::sleep(Duration::from_secs(1));
            };
            if which == 0 {
                let _ = m2.update("n".into(), |v| {
                    *v = Some(100);
                    inside2.set();
                    park()
                });
            } else {
                let _ = l2.update(|v| {
                    v.clear();
                    inside2.set();
                    park()
                });
            }
            0
        });
        inside.wait_timeout(LIMIT).unwrap();
        child.kill();
        drop(child); // reaped
        let (m3, l3) = (m.clone(), l.clone());
        let (n, v) = watchdog(LIMIT, move || (m3.get("n").unwrap(), l3.to_vec().unwrap()));
        assert_eq!(n, Some(1));
        assert_eq!(v, [1, 2, 3]);
    }
}

/// A tiny deterministic generator (xorshift), so a child's operations differ per round.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const MAGIC: u64 = 0x5bd1_e995_0000_0001;

/// A map value for `k`: it names its key, so a value under the wrong key is detected.
fn map_value(k: u64, r: &mut Rng) -> String {
    format!("{k}:{}", "v".repeat(r.below(60) as usize))
}

fn map_value_ok(k: u64, v: &str) -> bool {
    v.split_once(':')
        .is_some_and(|(key, rest)| key == k.to_string() && rest.chars().all(|c| c == 'v'))
}

/// A list element: a pair whose halves agree.
fn elem(r: &mut Rng) -> (u64, u64) {
    let a = r.next();
    (a, a ^ MAGIC)
}

/// One random operation on the map or the list; `Full` is fine (the reservations are small).
fn random_op(m: &Map<u64, String>, l: &List<(u64, u64)>, r: &mut Rng) -> bool {
    let ok = |res: Result<(), uniconc_core::Error>| match res {
        Ok(()) => true,
        Err(e) => e.kind() == ErrorKind::Full,
    };
    let k = r.below(300);
    match r.below(100) {
        0..=29 => ok(m.insert(k, map_value(k, r)).map(drop)),
        30..=44 => ok(m.remove(&k).map(drop)),
        45..=49 => ok(m.update(k, |v| *v = Some(format!("{k}:vvv"))).map(drop)),
        50 => {
            m.clear();
            true
        }
        51..=54 => match m.get(&k) {
            Ok(Some(v)) => map_value_ok(k, &v),
            Ok(None) => true,
            Err(_) => false,
        },
        55..=69 => ok(l.push(elem(r))),
        70..=76 => ok(l.pop().map(drop)),
        77..=80 => {
            let n = l.len() as u64;
            ok(l.insert(r.below(n + 1) as usize, elem(r)))
        }
        81..=84 => {
            let n = l.len() as u64;
            if n == 0 {
                return true;
            }
            ok(l.remove(r.below(n) as usize).map(drop))
        }
        85..=87 => {
            let n = l.len() as u64;
            if n == 0 {
                return true;
            }
            ok(l.set(r.below(n) as usize, elem(r)))
        }
        88..=90 => ok(l.reverse()),
        91 => {
            let n = l.len() as u64;
            l.truncate(r.below(n + 1) as usize);
            true
        }
        92..=95 => {
            let items: Vec<_> = (0..r.below(20)).map(|_| elem(r)).collect();
            ok(l.extend(items))
        }
        96 => ok(l.update(|v| v.sort())),
        _ => {
            let n = r.below(50);
            ok(l.update(|v| v.retain(|(a, _)| a % 50 != n)))
        }
    }
}

/// Checks both collections: their memory is consistent, `len` is the number of entries
/// reachable, every entry decodes and is one that could have been written.
fn check(m: &Map<u64, String>, l: &List<(u64, u64)>) {
    // Nothing leaked, nothing in two places, the counts agree (a walk of every block).
    assert_eq!(m.check().unwrap(), m.len());
    assert_eq!(l.check().unwrap(), l.len());
    let entries = m.to_vec().unwrap();
    assert_eq!(m.len(), entries.len());
    for (k, v) in &entries {
        assert!(map_value_ok(*k, v), "bad entry {k} -> {v:?}");
    }
    let items = l.to_vec().unwrap();
    assert_eq!(l.len(), items.len());
    for (a, b) in &items {
        assert_eq!(a ^ MAGIC, *b, "bad list element");
    }
}

/// How many copies of one entry fit after `clear` (freed space reusable).
fn fill(m: &Map<u64, String>, l: &List<(u64, u64)>) -> (usize, usize) {
    m.clear();
    l.clear();
    let mut n = 0;
    while m.insert(n, format!("{n}:{}", "v".repeat(30))).is_ok() {
        n += 1;
    }
    let mut k = 0usize;
    while l.push((k as u64, k as u64 ^ MAGIC)).is_ok() {
        k += 1;
    }
    (n as usize, k)
}

#[test]
fn children_sigkilled_at_random_points_leave_both_consistent() {
    let _f = fork_lock();
    let _w = Watchdog::new("children_sigkilled_at_random_points", 300);
    // Small enough that both run into `Full` now and then (the list at a few hundred
    // elements, which keeps its whole-list operations short).
    const MAP_BYTES: usize = 256 << 10;
    const LIST_BYTES: usize = 32 << 10;
    let m = Map::<u64, String>::with_reserved_bytes(MAP_BYTES).unwrap();
    let l = List::<(u64, u64)>::with_reserved_bytes(LIST_BYTES).unwrap();
    let fresh = fill(
        &Map::with_reserved_bytes(MAP_BYTES).unwrap(),
        &List::with_reserved_bytes(LIST_BYTES).unwrap(),
    );
    let rounds = 300 * scale();
    let started = Instant::now();
    let child_ops = value(0u64).unwrap();
    let mut parent_rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..rounds {
        let (m2, l2) = (m.clone(), l.clone());
        let ready = event().unwrap();
        let (ready2, ops2) = (ready.clone(), child_ops.clone());
        let child = spawn(move || {
            let mut r = Rng(round * 7919 + 17);
            ready2.set();
            loop {
                if !random_op(&m2, &l2, &mut r) {
                    return 3; // a read saw a bad entry
                }
                ops2.update(|n| *n += 1);
            }
        });
        ready.wait_timeout(LIMIT).unwrap();
        std::thread::sleep(Duration::from_micros(500 + parent_rng.below(15_000)));
        child.kill();
        drop(child);
        let (m3, l3) = (m.clone(), l.clone());
        watchdog(LIMIT, move || check(&m3, &l3));
        // The parent goes on using them between kills.
        let mut r = Rng(round + 1);
        for _ in 0..20 {
            assert!(random_op(&m, &l, &mut r));
        }
        check(&m, &l);
    }
    let after = fill(&m, &l);
    check(&m, &l);
    assert_eq!(after, fresh, "space was lost to the kills");
    eprintln!(
        "{rounds} kills in {:?} after {} operations in the children; {} map entries / {} list \
         elements fit before and after",
        started.elapsed(),
        child_ops.load(),
        after.0,
        after.1
    );
}
