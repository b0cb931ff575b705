//! A `Semaphore` bounding how many workers run at once, and an `Event` releasing them all
//! together: Python's `multiprocessing.Semaphore` and `Event`.
//!
//! ```python
//! def worker(i, sem, go):
//!     go.wait()              # everyone waits for the starting gun
//!     with sem:              # at most 2 inside at a time
//!         time.sleep(0.05)
//! ```
//!
//! Each worker records, in a shared `Value`, how many are inside at once; the maximum never
//! exceeds the semaphore's permits.
//!
//! Run: `cargo run --example semaphore_event -- --backend thread --size 6`.

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

/// What the run observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Workers started.
    pub(crate) workers: u64,
    /// Permits of the semaphore.
    pub(crate) permits: usize,
    /// Workers that went through the critical section.
    pub(crate) finished: u64,
    /// Most workers seen inside at once.
    pub(crate) max_inside: u64,
    /// Workers that had passed the gate before the event was set (must be 0).
    pub(crate) early: u64,
}

/// `workers` workers, a semaphore of 2 permits, one event as the starting gun.
pub(crate) fn run<B: Backend>(workers: u64) -> DynResult<Outcome> {
    let b = B::NAME;
    let permits = 2;
    let sem = B::semaphore(permits)?;
    let go = B::event()?;
    // [inside now, most inside at once, finished, passed the gate]
    let stats = B::array::<u64>(4)?;

    let mut handles = Vec::new();
    for i in 0..workers {
        let (sem, go, stats) = (sem.clone(), go.clone(), stats.clone());
        handles.push(B::spawn(move || {
            go.wait();
            bump(&stats, 3);
            let permit = sem.acquire(); // blocks while 2 others hold a permit
            {
                let mut s = stats.lock().unwrap_or_else(uniconc::LockError::into_guard);
                s[0] += 1;
                s[1] = s[1].max(s[0]);
            }
            std::thread::sleep(Duration::from_millis(20)); // "work" while holding the permit
            {
                let mut s = stats.lock().unwrap_or_else(uniconc::LockError::into_guard);
                s[0] -= 1;
                s[2] += 1;
            }
            drop(permit); // gives the permit back
            i
        })?);
    }

    std::thread::sleep(Duration::from_millis(100));
    let early = stats.get(3).unwrap_or(0);
    println!(
        "[{b}] {workers} workers waiting at the gate ({early} passed early); \
         {} permits available; setting the event",
        sem.available()
    );
    go.set();
    for h in handles {
        h.join()?;
    }
    let s = stats.to_vec();
    println!(
        "[{b}] all {} finished; at most {} were inside at once (semaphore of {permits}); \
         permits available again: {}",
        s[2],
        s[1],
        sem.available()
    );
    Ok(Outcome {
        workers,
        permits,
        finished: s[2],
        max_inside: s[1],
        early,
    })
}

fn bump<A: uniconc::Array<u64>>(stats: &A, i: usize) {
    stats.lock().unwrap_or_else(uniconc::LockError::into_guard)[i] += 1;
}

fn main() {
    common::main_with(
        "semaphore_event: a semaphore bounding workers, an event releasing them",
        |args| {
            let backend = args.backend()?;
            let out: Outcome = on_backend!(backend.as_str(), run(args.size_or(6, 6) as u64))?;
            if out.max_inside > out.permits as u64 || out.finished != out.workers || out.early != 0
            {
                return Err(format!("unexpected outcome: {out:?}").into());
            }
            Ok(())
        },
    );
}
