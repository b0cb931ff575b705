//! Reading 1M elements from a `Vec`, a `HashMap`, a shared `Array` and a shared `List`, in this
//! process and from 8 units at once: the classic Python comparison of `list`, `dict`,
//! `multiprocessing.RawArray` and a `Manager().list()` (where every element access is a round
//! trip to the manager process).
//!
//! In uniconc a shared `Array` is read at memory speed once you hold its lock (`lock()` hands
//! you a `&[T]`), and `to_vec()` copies it out under one lock. `get(i)` takes the lock for each
//! element: it is the slow path, shown here for contrast (Python's Manager list is far slower).
//! A shared `List` (the Manager list's counterpart) holds any serde type, stored encoded:
//! `iter()` decodes a snapshot of every element under one lock; `get(i)` locks and decodes one.
//! On the process backend, 8 forked processes read the `Vec`/`HashMap` through their
//! copy-on-write copy of the parent's memory, and the `Array` and `List` through shared memory.
//!
//! Run: `cargo run --release --example traverse -- --backend thread --size 1000000`.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DynResult, human, timed};
use uniconc::LockError;
use uniconc::prelude::*;

/// One measured way of reading every element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// What was read, and how.
    pub(crate) what: String,
    /// The slowest reader's time.
    pub(crate) time: Duration,
    /// Whether every reader got the right sum.
    pub(crate) sums_ok: bool,
}

const READERS: usize = 8;

/// Reads `n` elements every way, in this process and from 8 units.
pub(crate) fn run<B: Backend>(n: usize) -> DynResult<Vec<Row>> {
    let b = B::NAME;
    let expected: u64 = (n as u64) * (n as u64).saturating_sub(1) / 2;
    let vec: Arc<Vec<u64>> = Arc::new((0..n as u64).collect());
    let map: Arc<HashMap<u64, u64>> = Arc::new((0..n as u64).map(|i| (i, i)).collect());
    let arr = <B::Array<u64>>::from_slice(&vec)?;
    let list = B::list::<u64>()?;
    list.extend(vec.iter().copied())?;
    let mut rows = Vec::new();
    let mut row = |what: String, time: Duration, sums_ok: bool| {
        println!(
            "[{b}] {what:<44} {:>10}  {}",
            human(time),
            if sums_ok { "ok" } else { "WRONG SUM" }
        );
        rows.push(Row {
            what,
            time,
            sums_ok,
        });
    };
    println!("[{b}] reading {n} u64 elements (sum checked each time)");

    // --- In this process. ---
    let (s, t) = timed(|| vec.iter().sum::<u64>());
    row("Vec, this process".into(), t, s == expected);
    let (s, t) = timed(|| (0..n as u64).map(|i| map[&i]).sum::<u64>());
    row("HashMap by key, this process".into(), t, s == expected);
    let (s, t) = timed(|| {
        arr.lock()
            .unwrap_or_else(LockError::into_guard)
            .iter()
            .sum::<u64>()
    });
    row(
        "shared Array via lock(), this process".into(),
        t,
        s == expected,
    );
    let (s, t) = timed(|| arr.to_vec().iter().sum::<u64>());
    row(
        "shared Array via to_vec(), this process".into(),
        t,
        s == expected,
    );
    let (s, t) = timed(|| (0..n).map(|i| arr.get(i).unwrap_or(0)).sum::<u64>());
    row(
        "shared Array via get(i) (a lock per element)".into(),
        t,
        s == expected,
    );

    let (s, t) = timed(|| -> DynResult<u64> { Ok(list.iter()?.sum::<u64>()) });
    row(
        "shared List via iter(), this process".into(),
        t,
        s? == expected,
    );
    let (s, t) = timed(|| -> DynResult<u64> {
        let mut sum = 0;
        for i in 0..n {
            sum += list.get(i)?.unwrap_or(0);
        }
        Ok(sum)
    });
    row(
        "shared List via get(i) (Manager list's way)".into(),
        t,
        s? == expected,
    );

    // --- From 8 units at once: each reads everything and times itself. ---
    let (t, ok) = from_units::<B, _>(expected, {
        let vec = vec.clone();
        move || vec.iter().sum::<u64>()
    })?;
    row(format!("Vec, {READERS} {b} units"), t, ok);
    let (t, ok) = from_units::<B, _>(expected, {
        let map = map.clone();
        move || (0..map.len() as u64).map(|i| map[&i]).sum::<u64>()
    })?;
    row(format!("HashMap by key, {READERS} {b} units"), t, ok);
    let (t, ok) = from_units::<B, _>(expected, {
        let arr = arr.clone();
        move || {
            arr.lock()
                .unwrap_or_else(LockError::into_guard)
                .iter()
                .sum::<u64>()
        }
    })?;
    row(
        format!("shared Array via lock(), {READERS} {b} units"),
        t,
        ok,
    );
    let (t, ok) = from_units::<B, _>(expected, {
        let arr = arr.clone();
        move || arr.to_vec().iter().sum::<u64>()
    })?;
    row(
        format!("shared Array via to_vec(), {READERS} {b} units"),
        t,
        ok,
    );
    let (t, ok) = from_units::<B, _>(expected, {
        let list = list.clone();
        move || list.iter().map_or(0, |it| it.sum::<u64>())
    })?;
    row(
        format!("shared List via iter(), {READERS} {b} units"),
        t,
        ok,
    );
    Ok(rows)
}

/// Starts 8 units that wait for a start signal, each runs `read` and times it; returns the
/// slowest time and whether every sum was `expected`. Spawning is not part of the time.
fn from_units<B: Backend, F>(expected: u64, read: F) -> DynResult<(Duration, bool)>
where
    F: Fn() -> u64 + Clone + Send + 'static,
{
    let ready = B::barrier(READERS + 1)?;
    let mut handles = Vec::new();
    for _ in 0..READERS {
        let (ready, read) = (ready.clone(), read.clone());
        handles.push(B::spawn(move || {
            ready.wait(); // everyone starts together
            let start = Instant::now();
            let sum = read();
            (sum, start.elapsed().as_nanos() as u64)
        })?);
    }
    ready.wait();
    let mut slowest = 0;
    let mut ok = true;
    for h in handles {
        let (sum, nanos) = h.join()?;
        ok &= sum == expected;
        slowest = slowest.max(nanos);
    }
    Ok((Duration::from_nanos(slowest), ok))
}

fn main() {
    common::main_with(
        "traverse: read 1M elements from a Vec, a HashMap, a shared Array and a shared List",
        |args| {
            let backend = args.backend()?;
            let rows: Vec<Row> =
                on_backend!(backend.as_str(), run(args.size_or(1_000_000, 100_000)))?;
            if rows.iter().any(|r| !r.sums_ok) {
                return Err("a reader got a wrong sum".into());
            }
            Ok(())
        },
    );
}
