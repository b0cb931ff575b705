//! The clean-started pool against the fork pool, in the same run: `map_task` of 1M trivial
//! items on a pool built with `start(Start::Clean)` (workers that are this binary started
//! again) and on one built with `start(Start::Fork)` (forked workers), both of 2 workers,
//! both started and warmed up before timing (the steady state). Target: the clean pool
//! within 1.2x of the fork pool. The runs alternate between the two pools, so a burst of load
//! on the shared machine hits both; each figure is a median, the ratio is of the medians.
//!
//! `cargo bench -p uniconc-benches --bench clean_pool`

use std::time::Instant;

use uniconc::{Pool as _, Start};
use uniconc_process::Pool;

uniconc::task! {
    /// The trivial item.
    fn double(x: u64) -> u64 { x * 2 }
}

const N: u64 = 1_000_000;
const REPS: usize = 31;

fn pool(start: Start) -> Pool {
    Pool::builder()
        .workers(2)
        .start(start)
        .build()
        .expect("a pool")
}

/// Seconds of one `map_task` of `N` items, checked.
fn once(pool: &Pool) -> f64 {
    let t0 = Instant::now();
    let out = pool.map_task::<double>(0..N).expect("map_task");
    let t = t0.elapsed().as_secs_f64();
    assert_eq!(out.len(), N as usize);
    assert_eq!(out[N as usize - 1], 2 * (N - 1));
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // First: in a clean worker (this binary started again) the pool's job loop runs here.
    uniconc::init();
    let clean = pool(Start::Clean);
    let fork = pool(Start::Fork);
    // Warm up: workers started, buffers grown, pages touched.
    for _ in 0..2 {
        once(&clean);
        once(&fork);
    }
    let (mut c, mut f) = (Vec::with_capacity(REPS), Vec::with_capacity(REPS));
    for i in 0..REPS {
        // Alternate which goes first.
        if i % 2 == 0 {
            c.push(once(&clean));
            f.push(once(&fork));
        } else {
            f.push(once(&fork));
            c.push(once(&clean));
        }
    }
    let (c, f) = (median(c), median(f));
    println!("map_task of 1M trivial items, 2 workers, median of {REPS} alternating runs:");
    println!("  fork pool  (Start::Fork):  {:8.2} ms", f * 1e3);
    println!("  clean pool (Start::Clean): {:8.2} ms", c * 1e3);
    println!(
        "  clean / fork: {:.3}x (target: at most 1.2x) {}",
        c / f,
        if c / f <= 1.2 { "ok" } else { "MISSED" }
    );
}
