//! A pool of workers, the way Python's `multiprocessing.Pool` is taught:
//!
//! ```python
//! with Pool(4) as p:
//!     print(p.map(f, range(10)))            # ordered results
//!     r = p.apply_async(f, (20,)); r.get(timeout=1)
//!     for x in p.imap(f, range(10)): ...     # lazy, ordered
//!     p.close(); p.join()
//! ```
//!
//! | Python | uniconc |
//! |---|---|
//! | `Pool(4)` | `B::pool(4)?` or `Pool::builder().workers(4).chunk_size(16).build()?` |
//! | `p.map(f, xs)` | `pool.map(f, xs)?` (a `Vec` in input order) |
//! | `p.apply_async(f, (x,)).get(timeout=1)` | `pool.submit(f, x)?.wait_timeout(1s)` |
//! | `p.imap(f, xs)` / `imap_unordered` | `pool.imap(f, xs)` / `pool.imap_unordered(f, xs)` |
//! | `p.close(); p.join()` | `pool.close(); pool.join()?` |
//!
//! Unlike Python's, a task that panics fails only its own item, and the pool goes on.
//!
//! Run: `cargo run --example pool -- --backend thread --size 100`.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use std::time::Duration;

use common::DynResult;
use uniconc::prelude::*;
use uniconc::{PoolError, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

/// What the pool computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `map(square, 0..n)`.
    pub(crate) mapped: Vec<u64>,
    /// `submit(square, 20)` waited on.
    pub(crate) submitted: u64,
    /// `imap(square, 0..n)` collected.
    pub(crate) imapped: Vec<u64>,
    /// `imap_unordered(square, 0..n)` collected and sorted.
    pub(crate) unordered_sorted: Vec<u64>,
    /// The message of the task that panicked on purpose.
    pub(crate) panic_message: String,
}

/// Every pool operation on `n` items with 2 workers.
pub(crate) fn run<B: Backend>(n: u64) -> DynResult<Outcome> {
    let b = B::NAME;
    let pool = <B::Pool>::builder().workers(2).build()?;

    // map: results in input order.
    let mapped = pool.map(square, 0..n)?;
    println!("[{b}] map(square, 0..{n}) = {}", preview(&mapped));

    // submit + wait: Python's apply_async(...).get(timeout=...).
    let mut handle = pool.submit(square, 20)?;
    let submitted = handle.wait_timeout(Duration::from_secs(30))?;
    println!("[{b}] submit(square, 20).wait_timeout(30 s) = {submitted}");

    // imap: lazy and ordered; capturing closures work too.
    let offset = 1000;
    let imapped = pool
        .imap(move |x: u64| square(x) + offset, 0..n)
        .map(|r| r.map(|y| y - offset))
        .collect::<Result<Vec<u64>, TaskError>>()?;
    println!(
        "[{b}] imap(|x| x*x + {offset}, 0..{n}) - {offset} = {}",
        preview(&imapped)
    );

    // imap_unordered: in completion order.
    let mut unordered_sorted = pool
        .imap_unordered(square, 0..n)
        .collect::<Result<Vec<u64>, TaskError>>()?;
    unordered_sorted.sort_unstable();

    // A panicking task fails its own item only.
    let picky = |x: u64| {
        if x == 3 {
            panic!("three is not allowed");
        }
        x
    };
    let panic_message = match pool.map(picky, 0..5u64) {
        Err(PoolError::Task {
            index,
            error: TaskError::Panicked(m),
        }) => {
            println!("[{b}] map with a panicking task -> item {index} failed: {m:?}");
            m
        }
        other => return Err(format!("expected a panicked task, got {other:?}").into()),
    };
    let still = pool.map(square, [7u64])?;
    println!("[{b}] the pool is still usable: map(square, [7]) = {still:?}");

    // close + join: no new work; workers finish and stop.
    pool.close();
    pool.join()?;
    match pool.submit(square, 1) {
        Err(PoolError::Closed) => println!("[{b}] after close() + join(): submit -> Closed"),
        other => return Err(format!("expected Closed, got {:?}", other.map(|_| ())).into()),
    }
    Ok(Outcome {
        mapped,
        submitted,
        imapped,
        unordered_sorted,
        panic_message,
    })
}

fn preview(v: &[u64]) -> String {
    if v.len() <= 10 {
        format!("{v:?}")
    } else {
        format!(
            "{:?} … {:?} ({} results)",
            &v[..5],
            &v[v.len() - 2..],
            v.len()
        )
    }
}

/// The panic of `picky` is part of the lesson: print it as one line, not as a backtrace.
fn quiet_planned_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info.payload().downcast_ref::<&str>() == Some(&"three is not allowed");
        if planned {
            eprintln!("(a task panicked on purpose: \"three is not allowed\")");
        } else {
            default(info);
        }
    }));
}

fn main() {
    quiet_planned_panics();
    common::main_with("pool: map, submit + wait, imap, close/join", |args| {
        let backend = args.backend()?;
        let _: Outcome = on_backend!(backend.as_str(), run(args.size_or(20, 20) as u64))?;
        Ok(())
    });
}
