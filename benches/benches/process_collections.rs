//! The process backend's shared-memory `Map` and `List`, each figure against its peer in the
//! same run: `List::to_vec` against `Array::to_vec` of as many `u64`; `Map` get/insert from two
//! processes and `List` traversal from eight against Python's `Manager().dict()` and
//! `Manager().list()` (run inline with `python3 -c`; skipped with a note if it is missing).
//!
//! Rounds alternate ours and the peer where both are ours (the machine's speed drifts); the
//! medians of per-round figures and ratios are printed. `UNICONC_BENCH_ROUNDS` sets the rounds
//! (default 7).
//!
//! Run: `cargo bench -p uniconc-benches --bench process_collections`

use std::time::Instant;
use uniconc_benches::{fork_child, reap};

use uniconc_core::{Array as _, List as _, Map as _};
use uniconc_process::{Array, List, Map};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `work` in `n` forked processes at once, each timing itself; returns the slowest
/// process's seconds.
fn in_processes(n: usize, work: impl Fn(usize) + Clone) -> f64 {
    let times = Array::<f64>::new(n).unwrap();
    let go = uniconc_process::barrier(n + 1).unwrap();
    let pids: Vec<_> = (0..n)
        .map(|i| {
            let (times, go, work) = (times.clone(), go.clone(), work.clone());
            fork_child(move || {
                uniconc_core::Barrier::wait(&go);
                let t = Instant::now();
                work(i);
                times.set(i, t.elapsed().as_secs_f64()).unwrap();
            })
        })
        .collect();
    uniconc_core::Barrier::wait(&go);
    for p in pids {
        reap(p);
    }
    times.to_vec().into_iter().fold(0.0, f64::max)
}

const PY: &str = r#"
import sys, time
from multiprocessing import Manager, Process, Barrier
def dict_worker(d, b, n, seed):
    b.wait()
    for i in range(n):
        k = (i * 7919 + seed) % 1000
        if i % 2:
            d[k] = "x" * 32
        else:
            d.get(k)
def list_worker(l, b):
    b.wait()
    for x in l:
        pass
def timed(procs):
    for p in procs: p.start()
    t = time.perf_counter()
    for p in procs: p.join()
    return time.perf_counter() - t
if __name__ == "__main__":
    with Manager() as m:
        d = m.dict({k: "x" * 32 for k in range(1000)})
        n = 2000
        b = Barrier(3)
        ps = [Process(target=dict_worker, args=(d, b, n, s)) for s in range(2)]
        for p in ps: p.start()
        b.wait(); t = time.perf_counter()
        for p in ps: p.join()
        print("dict", (time.perf_counter() - t) / n * 1e9)
        l = m.list(range(2000))
        b = Barrier(9)
        ps = [Process(target=list_worker, args=(l, b)) for _ in range(8)]
        for p in ps: p.start()
        b.wait(); t = time.perf_counter()
        for p in ps: p.join()
        print("list", (time.perf_counter() - t) / 2000 * 1e9)
"#;

/// Python's per-operation nanoseconds: (dict get/insert from two processes, list traversal
/// per element from eight).
fn python() -> Option<(f64, f64)> {
    let out = std::process::Command::new("python3")
        .args(["-c", PY])
        .output()
        .map_err(|e| eprintln!("python peer not run: {e}"))
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((get("dict")?, get("list")?))
}

fn main() {
    let rounds: usize = std::env::var("UNICONC_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .max(1);
    const N: usize = 1 << 20;

    // List::to_vec against Array::to_vec, 1M u64 (ours and the peer alternate).
    let l = List::<u64>::new().unwrap();
    l.extend(0..N as u64).unwrap();
    let a = Array::<u64>::from_slice(&(0..N as u64).collect::<Vec<_>>()).unwrap();
    let (mut ours, mut peer, mut ratio) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        let v = l.to_vec().unwrap();
        let o = t.elapsed().as_secs_f64();
        assert_eq!(v.len(), N);
        let t = Instant::now();
        let w = a.to_vec();
        let p = t.elapsed().as_secs_f64();
        assert_eq!(w.len(), N);
        ours.push(o * 1e3);
        peer.push(p * 1e3);
        ratio.push(o / p);
    }
    println!(
        "List<u64>::to_vec of 1M: {:.2} ms; Array<u64>::to_vec: {:.2} ms; ratio {:.2}x \
         (target <= 3x)",
        median(ours),
        median(peer),
        median(ratio)
    );

    // Traversal of 1M u64 from 8 processes at once (`iter()`: a snapshot), per element.
    let mut trav = vec![];
    for _ in 0..rounds {
        let l = l.clone();
        let secs = in_processes(8, move |_| {
            let s: u64 = l.iter().unwrap().sum();
            std::hint::black_box(s);
        });
        trav.push(secs / N as f64 * 1e9);
    }
    let trav = median(trav);

    // Map get/insert of u64 -> 32-byte String from two processes (half each), 1000 keys.
    let m = Map::<u64, String>::new().unwrap();
    for k in 0..1000 {
        m.insert(k, "x".repeat(32)).unwrap();
    }
    const OPS: usize = 200_000;
    let work = |m: Map<u64, String>| {
        move |seed: usize| {
            let v = "x".repeat(32);
            for i in 0..OPS {
                let k = ((i * 7919 + seed) % 1000) as u64;
                if i % 2 == 1 {
                    m.insert(k, v.clone()).unwrap();
                } else {
                    std::hint::black_box(m.get(&k).unwrap());
                }
            }
        }
    };
    let (mut one, mut two) = (vec![], vec![]);
    for _ in 0..rounds {
        one.push(in_processes(1, work(m.clone())) / OPS as f64 * 1e9);
        two.push(in_processes(2, work(m.clone())) / OPS as f64 * 1e9);
    }
    let (one, two) = (median(one), median(two));
    println!("Map<u64, String(32)> get/insert, one process: {one:.0} ns per op");

    match python() {
        Some((pd, pl)) => {
            println!(
                "Map get/insert from two processes: {two:.0} ns per op (each); Python \
                 Manager().dict(): {pd:.0} ns; {:.0}x faster (target >= 100x)",
                pd / two
            );
            println!(
                "List<u64> traversal from 8 processes: {trav:.1} ns per element (each); Python \
                 Manager().list(): {pl:.0} ns; {:.0}x faster (target >= 1000x)",
                pl / trav
            );
        }
        None => {
            println!(
                "Map get/insert from two processes: {two:.0} ns per op (no python3: no ratio)"
            );
            println!("List<u64> traversal from 8 processes: {trav:.1} ns per element (no ratio)");
        }
    }
}
