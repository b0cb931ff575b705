//! Two units adding to one shared counter, without and with a lock: the lost-update lesson of
//! Python's `multiprocessing.Value` (`v.value += 1` is a read, then a write).
//!
//! ```python
//! def add(v, lock, n):
//!     for _ in range(n):
//!         with lock:            # remove this line and updates get lost
//!             v.value += 1
//! ```
//!
//! Without the lock both units read the same old value and one of the two increments is lost
//! (how many depends on scheduling: on a single core it can be none at all). With the lock the
//! total is always exact. `Value::update` does the read-modify-write under the value's own lock.
//!
//! Run: `cargo run --example lock_counter -- --backend thread --size 100000`.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::DynResult;
use uniconc::LockError;
use uniconc::prelude::*;

/// The three totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// What two units × `n` increments should give.
    pub(crate) expected: u64,
    /// Total with `load` then `store` and no lock (may be short).
    pub(crate) unlocked: u64,
    /// Total with a `Lock` held around `load` + `store`.
    pub(crate) locked: u64,
    /// Total with `Value::update`.
    pub(crate) updated: u64,
}

/// Runs `units` units adding `n` to a counter, once per strategy.
fn race<B: Backend>(units: usize, n: u64, strategy: Strategy) -> DynResult<u64> {
    let counter = B::value(0u64)?;
    let lock = B::lock()?;
    let start = B::barrier(units)?; // line them up so they really overlap
    let mut handles = Vec::new();
    for _ in 0..units {
        let (counter, lock, start) = (counter.clone(), lock.clone(), start.clone());
        handles.push(B::spawn(move || {
            start.wait();
            for _ in 0..n {
                match strategy {
                    Strategy::Unlocked => {
                        let v = counter.load(); // read ...
                        std::hint::black_box(v);
                        counter.store(v + 1); // ... then write: another unit may have written in between
                    }
                    Strategy::Locked => {
                        let _held = lock.lock().unwrap_or_else(LockError::into_guard);
                        let v = counter.load();
                        counter.store(v + 1);
                    } // released here
                    Strategy::Update => counter.update(|v| *v += 1),
                }
            }
        })?);
    }
    for h in handles {
        h.join()?;
    }
    Ok(counter.load())
}

#[derive(Debug, Clone, Copy)]
enum Strategy {
    Unlocked,
    Locked,
    Update,
}

/// Two units adding `n` each, three ways.
pub(crate) fn run<B: Backend>(n: u64) -> DynResult<Outcome> {
    let b = B::NAME;
    let units = 2;
    let expected = units as u64 * n;
    let unlocked = race::<B>(units, n, Strategy::Unlocked)?;
    println!(
        "[{b}] without a lock: {unlocked} of {expected} ({} updates lost)",
        expected - unlocked.min(expected)
    );
    let locked = race::<B>(units, n, Strategy::Locked)?;
    println!("[{b}] with a Lock:   {locked} of {expected}");
    let updated = race::<B>(units, n, Strategy::Update)?;
    println!("[{b}] Value::update: {updated} of {expected}");
    Ok(Outcome {
        expected,
        unlocked,
        locked,
        updated,
    })
}

fn main() {
    common::main_with(
        "lock_counter: a shared counter without and with a lock",
        |args| {
            let backend = args.backend()?;
            let out: Outcome =
                on_backend!(backend.as_str(), run(args.size_or(100_000, 10_000) as u64))?;
            if out.locked != out.expected || out.updated != out.expected {
                return Err("a locked counter lost updates".into());
            }
            Ok(())
        },
    );
}
