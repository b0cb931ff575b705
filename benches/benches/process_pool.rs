//! The process backend's `Pool` and `spawn` against their peers, in the same run:
//!
//! - `Pool::map` of 1M trivial items vs Python's `multiprocessing.Pool(2).map` (target ≥ 20×),
//!   over a range and over a `Vec` (Python: a `range` and a `list`), and the `Vec`/range ratio;
//! - `submit` + `wait` round trip vs Python's `apply_async(...).get()` (target ≥ 10×), with a
//!   `fn` and with a capturing closure (which forks a process per call), one after the other
//!   and as a burst of submits before the waits;
//! - `spawn` + `join` vs a raw `fork` + `waitpid` written here (target: within 2×).
//!
//! Python's figures come from `benches/python/pool_bench.py`, run by this bench three times
//! (skipped with a note if `python3` is missing): before our medians, right after them, and
//! after criterion; each ratio uses the median of Python's three runs (the machine is shared:
//! a burst of load during one run must not decide a ratio either way). Criterion reports each
//! of ours.
//!
//! `cargo bench -p uniconc-benches --bench process_pool -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use uniconc_core::{JoinHandle as _, Pool as _, TaskHandle as _};
use uniconc_process::{Pool, spawn};

const N: u64 = 1_000_000;

fn double(x: u64) -> u64 {
    x * 2
}

/// Median seconds of `reps` runs of `f`.
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn raw_fork_waitpid() {
    // SAFETY: the child only calls the async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
}

fn python_figures() -> Option<serde_json_lite::Figures> {
    serde_json_lite::parse(&uniconc_benches::run_python("pool_bench.py")?)
}

/// Just enough JSON reading for the peer's one flat object of numbers.
mod serde_json_lite {
    #[derive(Debug)]
    pub(crate) struct Figures {
        pub(crate) map_1m: f64,
        pub(crate) map_1m_list: f64,
        pub(crate) apply_async: f64,
        pub(crate) process: f64,
    }

    fn field(s: &str, name: &str) -> Option<f64> {
        let at = s.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = s[at..].trim_start();
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    }

    pub(crate) fn parse(s: &str) -> Option<Figures> {
        Some(Figures {
            map_1m: field(s, "map_1m")?,
            map_1m_list: field(s, "map_1m_list")?,
            apply_async: field(s, "apply_async")?,
            process: field(s, "process")?,
        })
    }
}

/// Our figures: medians of repeated runs, in seconds per operation.
struct Ours {
    map: f64,
    map_vec: f64,
    round_trip: f64,
    capturing: f64,
    capturing_burst: f64,
    spawn: f64,
    raw: f64,
}

fn measure_ours(pool: &Pool) -> Ours {
    let map = median(15, || {
        black_box(pool.map(double, 0..N).expect("map"));
    });
    // The input is built outside the timed part, as Python's list is.
    let items: Vec<u64> = (0..N).collect();
    let map_vec = median_with_input(
        15,
        || items.clone(),
        |v| {
            black_box(pool.map(double, v).expect("map"));
        },
    );
    let rounds = 2000;
    let round_trip = median(5, || {
        for i in 0..rounds {
            black_box(
                pool.submit(double, i)
                    .expect("submit")
                    .wait()
                    .expect("wait"),
            );
        }
    }) / rounds as f64;
    // A capturing closure: a process forked per call.
    let rounds = 200;
    let offset = black_box(1u64);
    let capturing = median(5, || {
        for i in 0..rounds {
            black_box(
                pool.submit(move |x: u64| x + offset, i)
                    .expect("submit")
                    .wait()
                    .expect("wait"),
            );
        }
    }) / rounds as f64;
    let capturing_burst = median(5, || {
        let handles: Vec<_> = (0..rounds)
            .map(|i| pool.submit(move |x: u64| x + offset, i).expect("submit"))
            .collect();
        for h in handles {
            black_box(h.wait().expect("wait"));
        }
    }) / rounds as f64;
    let spawn = median(51, || {
        black_box(spawn(|| 1u8).expect("spawn").join().expect("join"));
    });
    let raw = median(51, raw_fork_waitpid);
    Ours {
        map,
        map_vec,
        round_trip,
        capturing,
        capturing_burst,
        spawn,
        raw,
    }
}

/// Median seconds of `reps` runs of `f` on a fresh input from `input` (not timed).
fn median_with_input<T>(reps: usize, mut input: impl FnMut() -> T, mut f: impl FnMut(T)) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let x = input();
            let t0 = Instant::now();
            f(x);
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// The median of Python's runs, figure by figure (the machine is shared: one run of the same
/// map measured 215 ms and another 480 ms; a burst of load during one run must not decide a
/// ratio either way).
fn median_figures(runs: &[Option<serde_json_lite::Figures>]) -> Option<serde_json_lite::Figures> {
    let runs: Vec<&serde_json_lite::Figures> = runs.iter().flatten().collect();
    if runs.is_empty() {
        return None;
    }
    let mid = |f: fn(&serde_json_lite::Figures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(serde_json_lite::Figures {
        map_1m: mid(|r| r.map_1m),
        map_1m_list: mid(|r| r.map_1m_list),
        apply_async: mid(|r| r.apply_async),
        process: mid(|r| r.process),
    })
}

fn main() {
    // Python runs three times: before our medians, right after them, and after criterion;
    // each ratio uses the median of its three runs.
    let py_before = python_figures();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();

    let pool = Pool::new(2).expect("pool");
    pool.map(double, 0..1000u64).expect("warm-up");
    let ours = measure_ours(&pool);
    let py_middle = python_figures();

    let mut g = c.benchmark_group("process_pool");
    g.bench_function("map_1m_trivial", |b| {
        b.iter(|| black_box(pool.map(double, 0..N).expect("map")))
    });
    let items: Vec<u64> = (0..N).collect();
    g.bench_function("map_1m_trivial_vec", |b| {
        b.iter_batched(
            || items.clone(),
            |v| black_box(pool.map(double, v).expect("map")),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("submit_wait_round_trip", |b| {
        b.iter(|| {
            black_box(
                pool.submit(double, 21)
                    .expect("submit")
                    .wait()
                    .expect("wait"),
            )
        })
    });
    g.bench_function("spawn_join", |b| {
        b.iter(|| black_box(spawn(|| 1u8).expect("spawn").join().expect("join")))
    });
    g.bench_function("raw_fork_waitpid", |b| b.iter(raw_fork_waitpid));
    g.finish();
    c.final_summary();
    let py_after = python_figures();

    let Ours {
        map: ours_map,
        map_vec: ours_map_vec,
        round_trip: ours_rt,
        capturing: ours_capturing,
        capturing_burst: ours_burst,
        spawn: ours_spawn,
        raw,
    } = ours;
    println!("\n== process_pool: medians of this run ==");
    println!(
        "uniconc Pool(2).map 1M trivial items: {:.2} ms (median of 15)",
        ours_map * 1e3
    );
    println!(
        "uniconc Pool(2).map 1M over a Vec:    {:.2} ms (median of 15; Vec / range = {:.2}x)",
        ours_map_vec * 1e3,
        ours_map_vec / ours_map
    );
    println!(
        "uniconc submit+wait round trip:       {:.1} us",
        ours_rt * 1e6
    );
    println!(
        "uniconc capturing submit+wait:        {:.1} us ({:.0}x the fn round trip)",
        ours_capturing * 1e6,
        ours_capturing / ours_rt
    );
    println!(
        "uniconc capturing submits, then waits: {:.1} us per task",
        ours_burst * 1e6
    );
    println!(
        "uniconc spawn+join:                   {:.1} us",
        ours_spawn * 1e6
    );
    println!("raw fork+waitpid:                     {:.1} us", raw * 1e6);
    println!(
        "spawn+join / raw fork+waitpid = {:.2}x (target <= 2x)",
        ours_spawn / raw
    );
    for (when, p) in [
        ("1 (before ours)", &py_before),
        ("2 (after ours)", &py_middle),
        ("3 (after criterion)", &py_after),
    ] {
        if let Some(p) = p {
            println!(
                "python run {when}: Pool(2).map 1M {:.1} ms (list {:.1} ms), apply_async {:.1} us, \
                 Process {:.1} us",
                p.map_1m * 1e3,
                p.map_1m_list * 1e3,
                p.apply_async * 1e6,
                p.process * 1e6
            );
        }
    }
    match median_figures(&[py_before, py_middle, py_after]) {
        Some(p) => {
            println!(
                "python Pool(2).map 1M:                {:.1} ms (median of runs)",
                p.map_1m * 1e3
            );
            println!(
                "python Pool(2).map 1M over a list:    {:.1} ms (median of runs)",
                p.map_1m_list * 1e3
            );
            println!(
                "python apply_async round trip:        {:.1} us (median of runs)",
                p.apply_async * 1e6
            );
            println!(
                "python Process start+join:            {:.1} us (median of runs)",
                p.process * 1e6
            );
            println!(
                "map: python / uniconc = {:.1}x faster (target >= 20x)",
                p.map_1m / ours_map
            );
            println!(
                "map over a Vec: python list / uniconc = {:.1}x faster (target >= 20x)",
                p.map_1m_list / ours_map_vec
            );
            println!(
                "submit+wait: python / uniconc = {:.1}x faster (target >= 10x)",
                p.apply_async / ours_rt
            );
            println!(
                "process start+join: python / uniconc spawn+join = {:.1}x faster",
                p.process / ours_spawn
            );
        }
        None => println!("python3 peer not run: no ratios against Python"),
    }
}
