//! `Map` and `List` on every backend against Python's `multiprocessing` Manager, in the same
//! run, with the ratios:
//!
//! - `Map` get/insert of `u64` → 32-byte `String` from two units (each alternating `insert`
//!   and `get` over its own 512 keys) vs a `SyncManager` dict used the same way from two
//!   processes (target on process: ≥ 100×);
//! - traversal of a 1M-element `List<u64>` (`iter()`, one snapshot) from 8 units at once, per
//!   element, vs `for x in l` over a Manager list from 8 processes (a round trip to the
//!   manager per element, so Python runs on a 2,000-element list; target ≥ 1000×);
//! - `List::to_vec` of 1M `u64` vs `Array::to_vec` of the same length (target: within 3×);
//! - `Map::update` of one key from 4 units next to `Value::update` from 4 units, ns/op.
//!
//! Python's figures come from `benches/python/collections_bench.py`, run once before ours
//! (skipped with a note if `python3` is missing). Our figures are medians of repeated runs;
//! units are started before the clock starts (they wait on a `Barrier`), so spawning (a fork
//! on process) is not counted, as Python's process start is not.
//!
//! `cargo bench -p uniconc-benches --bench collections` (all three backends), or name some:
//! `cargo bench -p uniconc-benches --bench collections -- process thread`.

use std::hint::black_box;
use std::time::Instant;

use uniconc::prelude::*;

/// Entries each unit touches in the map rows.
const KEYS_PER_UNIT: u64 = 512;
/// Operations per unit in the map row.
const MAP_OPS: u64 = 100_000;
/// Elements of the traversed list.
const LIST_LEN: u64 = 1_000_000;
/// Units traversing the list at once.
const READERS: usize = 8;
/// Updates per unit in the contended rows.
const UPDATES: u64 = 50_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall-clock seconds from the moment `units` units (started with `B::spawn`, each running
/// `work(i)` after a common barrier) are released to the moment all have been joined.
fn timed_units<B: Backend, R: Message>(
    units: usize,
    work: impl Fn(usize) -> R + Clone + Send + 'static,
) -> (f64, Vec<R>) {
    let start = B::barrier(units + 1).expect("barrier");
    let handles: Vec<_> = (0..units)
        .map(|i| {
            let (start, work) = (start.clone(), work.clone());
            B::spawn(move || {
                start.wait();
                work(i)
            })
            .expect("spawn")
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let out = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    (t0.elapsed().as_secs_f64(), out)
}

/// Our figures for one backend, in seconds per operation or element.
struct Ours {
    map_op: f64,
    list_elem: f64,
    list_to_vec: f64,
    array_to_vec: f64,
    map_update: f64,
    value_update: f64,
    /// What went wrong in a result check (e.g. the process backend's writes not seen).
    notes: Vec<String>,
}

fn measure<B: Backend>() -> Ours {
    let mut notes = Vec::new();
    // Map get/insert from two units.
    let map = B::map::<u64, String>().expect("map");
    let value = "v".repeat(32);
    let map_op = median(
        (0..5)
            .map(|_| {
                let (m, value) = (map.clone(), value.clone());
                let (t, _) = timed_units::<B, ()>(2, move |unit| {
                    let base = unit as u64 * 1_000_000;
                    for i in 0..MAP_OPS / 2 {
                        let k = base + i % KEYS_PER_UNIT;
                        black_box(m.insert(k, value.clone()).expect("insert"));
                        black_box(m.get(&k).expect("get"));
                    }
                });
                t / (2 * MAP_OPS) as f64
            })
            .collect(),
    );
    if map.len() as u64 != 2 * KEYS_PER_UNIT {
        notes.push(format!(
            "map: {} entries seen after the units, {} written",
            map.len(),
            2 * KEYS_PER_UNIT
        ));
    }
    // List traversal from 8 units.
    let list = B::list::<u64>().expect("list");
    list.extend(0..LIST_LEN).expect("extend");
    let want = LIST_LEN * (LIST_LEN - 1) / 2;
    let list_elem = median(
        (0..3)
            .map(|_| {
                let l = list.clone();
                let (t, sums) =
                    timed_units::<B, u64>(READERS, move |_| l.iter().expect("iter").sum::<u64>());
                assert!(sums.iter().all(|&s| s == want), "a traversal lost elements");
                t / (READERS as u64 * LIST_LEN) as f64
            })
            .collect(),
    );
    // to_vec of a List against an Array of the same length, interleaved.
    let array = B::array::<u64>(LIST_LEN as usize).expect("array");
    let (mut l_t, mut a_t) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let t0 = Instant::now();
        black_box(list.to_vec().expect("to_vec"));
        l_t.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        black_box(array.to_vec());
        a_t.push(t0.elapsed().as_secs_f64());
    }
    // Contended updates of one key / one Value from 4 units, interleaved.
    let counts = B::map::<u64, u64>().expect("map");
    let cell = B::value(0u64).expect("value");
    let (mut m_t, mut v_t) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let c = counts.clone();
        let (t, _) = timed_units::<B, ()>(4, move |_| {
            for _ in 0..UPDATES {
                c.update(0, |n| *n.get_or_insert(0) += 1).expect("update");
            }
        });
        m_t.push(t / (4 * UPDATES) as f64);
        let v = cell.clone();
        let (t, _) = timed_units::<B, ()>(4, move |_| {
            for _ in 0..UPDATES {
                v.update(|n| *n += 1);
            }
        });
        v_t.push(t / (4 * UPDATES) as f64);
    }
    let got = counts.get(&0).expect("get").unwrap_or(0);
    if got != 3 * 4 * UPDATES {
        notes.push(format!(
            "map update: count {got}, {} expected",
            3 * 4 * UPDATES
        ));
    }
    Ours {
        map_op,
        list_elem,
        list_to_vec: median(l_t),
        array_to_vec: median(a_t),
        map_update: median(m_t),
        value_update: median(v_t),
        notes,
    }
}

/// Python's figures (seconds per operation / element).
struct Python {
    dict_op: f64,
    list_elem: f64,
    list_len: f64,
}

fn field(s: &str, name: &str) -> Option<f64> {
    let at = s.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = s[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn python() -> Option<Python> {
    let out = uniconc_benches::run_python("collections_bench.py")?;
    Some(Python {
        dict_op: field(&out, "dict_op")?,
        list_elem: field(&out, "list_elem")?,
        list_len: field(&out, "list_len")?,
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn report(name: &str, o: &Ours, py: Option<&Python>) {
    let ns = |s: f64| s * 1e9;
    println!("-- {name} --");
    match py {
        Some(py) => {
            let r = py.dict_op / o.map_op;
            println!(
                "Map get/insert u64 -> 32-byte String, two units: {:.0} ns/op vs Python SyncManager dict {:.1} us/op: {r:.0}x ({}, target on process >= 100x)",
                ns(o.map_op),
                py.dict_op * 1e6,
                verdict(r >= 100.0)
            );
            let r = py.list_elem / o.list_elem;
            println!(
                "List traversal, 8 units, 1M u64: {:.2} ns/element vs Python Manager list ({} elements) {:.1} us/element: {r:.0}x ({}, target >= 1000x)",
                ns(o.list_elem),
                py.list_len,
                py.list_elem * 1e6,
                verdict(r >= 1000.0)
            );
        }
        None => {
            println!(
                "Map get/insert u64 -> 32-byte String, two units: {:.0} ns/op (no Python figure)",
                ns(o.map_op)
            );
            println!(
                "List traversal, 8 units, 1M u64: {:.2} ns/element (no Python figure)",
                ns(o.list_elem)
            );
        }
    }
    let r = o.list_to_vec / o.array_to_vec;
    println!(
        "to_vec of 1M u64: List {:.2} ms vs Array {:.2} ms: {r:.2}x ({}, target <= 3x)",
        o.list_to_vec * 1e3,
        o.array_to_vec * 1e3,
        verdict(r <= 3.0)
    );
    println!(
        "update of one key from 4 units: Map {:.0} ns/op, Value {:.0} ns/op ({:.1}x)",
        ns(o.map_update),
        ns(o.value_update),
        o.map_update / o.value_update
    );
    for n in &o.notes {
        println!("CHECK FAILED: {n}");
    }
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let py = python();
    println!("== collections: Map and List vs Python's Manager (same run) ==");
    if wants("thread") {
        report("thread", &measure::<uniconc::Thread>(), py.as_ref());
    }
    if wants("tokio") {
        report("tokio", &measure::<uniconc::Tokio>(), py.as_ref());
    }
    if wants("process") {
        report("process", &measure::<uniconc::Process>(), py.as_ref());
    }
}
