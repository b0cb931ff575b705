//! A tokio service that offloads CPU work to worker processes with named tasks.
//!
//! The service is async and multi-threaded (a tokio runtime), the typical program that must not
//! `fork` workers: a lock another thread holds at the fork stays held in the child. With
//! `--backend process`, the service's pool is built with `start(Start::Clean)`: its workers
//! are the binary started again — sharing no thread, lock or runtime with the service — and
//! each request is sent to one of them by the task's name (`submit_task`). On the thread and
//! tokio backends the same code runs the task on the pool's threads or tasks.
//!
//! ```text
//! cargo run --example clean_workers                                  # thread (default)
//! cargo run --release --example clean_workers --features process -- --backend process
//! ```
//!
//! Python's nearest equivalent is `multiprocessing.get_context("spawn").Pool(2)`. On the process
//! backend, the example also measures the time from nothing to the first result — two clean
//! workers started, the first result back — against Python's spawn Pool(2) in the same run
//! (skip it with `--no-python`), and prints the ratio.
//!
//! `main` calls `uniconc::init()` first: in a worker process that is where the tasks run.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::DynResult;
use serde::{Deserialize, Serialize};
use uniconc::prelude::*;

/// One request to the service: hash `rounds` times, starting from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) seed: u64,
    pub(crate) rounds: u32,
}

uniconc::task! {
    /// The CPU work: `rounds` rounds of a 64-bit mix (splitmix64) from `job.seed`.
    pub(crate) fn crunch(job: Job) -> u64 {
        let mut x = job.seed;
        for _ in 0..job.rounds {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x = z ^ (z >> 31);
        }
        x
    }
}

uniconc::task! {
    /// The smallest task: for timing a worker's start and first result.
    pub(crate) fn ping(x: u32) -> u32 { x + 1 }
}

/// What the service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The answers, in request order.
    pub(crate) answers: Vec<u64>,
    /// The same jobs computed in the service itself.
    pub(crate) expected: Vec<u64>,
}

/// Workers of the service's pool.
const WORKERS: usize = 2;

/// Serves `requests` jobs: each request is a tokio task that offloads its job to a pool of
/// clean-started workers with `submit_task` and awaits the result without blocking the
/// runtime.
pub(crate) fn run<B: Backend>(requests: usize) -> DynResult<Outcome> {
    let jobs: Vec<Job> = (0..requests as u64)
        .map(|i| Job {
            seed: i,
            rounds: 200_000,
        })
        .collect();
    let expected = jobs.iter().map(|&j| crunch(j)).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let answers = rt.block_on(async move {
        // Clean workers on the process backend; the thread and tokio backends ignore `start`.
        let pool = std::sync::Arc::new(
            B::Pool::builder()
                .workers(WORKERS)
                .start(uniconc::Start::Clean)
                .build()?,
        );
        let handlers: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let pool = std::sync::Arc::clone(&pool);
                tokio::spawn(async move {
                    let mut h = pool.submit_task::<crunch>(job)?;
                    Ok::<u64, common::DynError>(h.wait_async().await?)
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(handlers.len());
        for h in handlers {
            answers.push(h.await??);
        }
        pool.close();
        pool.join()?;
        Ok::<_, common::DynError>(answers)
    })?;
    Ok(Outcome { answers, expected })
}

/// Start + first result: two workers started, the first result back (as a Pool(2)'s first
/// result); the median of `reps` runs.
pub(crate) fn first_result<B: Backend>(reps: usize) -> DynResult<Duration> {
    let mut times = Vec::with_capacity(reps);
    for i in 0..reps as u32 {
        let t0 = Instant::now();
        let first = B::spawn_task::<ping>(i)?;
        let second = B::spawn_task::<ping>(i)?;
        assert_eq!(first.join()?, i + 1);
        times.push(t0.elapsed());
        assert_eq!(second.join()?, i + 1);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Python's `get_context("spawn").Pool(2)`, from creation to the first result of
/// `apply(pow, (3, 2))`: the median of `reps` runs, in seconds, or why it could not run.
const PYTHON: &str = r#"
import multiprocessing as mp, statistics, sys, time
reps = int(sys.argv[1])
ctx = mp.get_context("spawn")
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    pool = ctx.Pool(2)
    assert pool.apply(pow, (3, 2)) == 9
    times.append(time.perf_counter() - t0)
    pool.terminate()
    pool.join()
print(statistics.median(times))
"#;

fn python_first_result(reps: usize) -> Result<Duration, String> {
    let out = std::process::Command::new("python3")
        .args(["-c", PYTHON, &reps.to_string()])
        .output()
        .map_err(|e| format!("python3 could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("python3 printed {text:?}: {e}"))?;
    Ok(Duration::from_secs_f64(secs))
}

fn main() {
    uniconc::init(); // first: a worker process runs its task here and never returns
    common::main_with(
        "clean_workers: a tokio service offloading CPU work with named tasks",
        |args| {
            let backend = args.backend()?;
            let n = args.size_or(16, 4);
            let (out, t) = common::timed(|| on_backend!(backend.as_str(), run(n)));
            let out = out?;
            let ok = out.answers == out.expected;
            println!(
                "{backend}: {n} requests served in {}; answers {}",
                common::human(t),
                if ok { "correct" } else { "WRONG" }
            );
            if !ok {
                return Err("the workers' answers differ from the service's own".into());
            }
            let reps = if args.quick { 3 } else { 11 };
            let ours = on_backend!(backend.as_str(), first_result(reps))?;
            println!(
                "{backend}: start + first result (2 units): {} (median of {reps})",
                common::human(ours)
            );
            if backend == "process" && !args.no_python {
                let py_reps = if args.quick { 2 } else { 5 };
                match python_first_result(py_reps) {
                    Ok(py) => println!(
                        "python spawn Pool(2): start + first result: {} (median of {py_reps}); \
                         clean start is {:.1}x faster",
                        common::human(py),
                        py.as_secs_f64() / ours.as_secs_f64()
                    ),
                    Err(e) => println!("python skipped: {e}"),
                }
            }
            Ok(())
        },
    );
}
