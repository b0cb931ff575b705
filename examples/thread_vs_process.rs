//! The same CPU-bound job — counting primes by trial division, split into 4 parts — run in this
//! thread, then on 4 threads, 4 processes and 4 tokio tasks, with times.
//!
//! In Python, threads do not speed this up (the GIL lets one run Python code at a time), so the
//! lesson there is "use processes for CPU work". In Rust every backend runs the parts in
//! parallel, up to the number of cores; what differs is the cost of starting a unit (a fork
//! copies page tables; a thread needs a stack; a task is a small allocation) and how results
//! come back (a process sends them through shared memory).
//!
//! Unlike the other examples it runs on every enabled backend (or only `--backend NAME`).
//!
//! Run: `cargo run --release --example thread_vs_process --features full -- --size 2000000`.

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use std::time::Duration;

use common::{DynResult, human, timed};
use uniconc::prelude::*;

/// Number of parts the job is split into.
pub(crate) const PARTS: u64 = 4;

/// Primes in `lo..hi`, by trial division: deliberately CPU-bound.
pub(crate) fn count_primes(lo: u64, hi: u64) -> u64 {
    (lo.max(2)..hi)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

/// Counts the primes below `n` in [`PARTS`] units of backend `B`; returns the count and the
/// wall time, spawning and joining included.
pub(crate) fn run<B: Backend>(n: u64) -> DynResult<(u64, Duration)> {
    let (result, time) = timed(|| -> DynResult<u64> {
        let step = n.div_ceil(PARTS);
        let mut handles = Vec::new();
        for p in 0..PARTS {
            let (lo, hi) = (p * step, ((p + 1) * step).min(n));
            handles.push(B::spawn(move || count_primes(lo, hi))?);
        }
        let mut total = 0;
        for h in handles {
            total += h.join()?;
        }
        Ok(total)
    });
    Ok((result?, time))
}

fn main() {
    common::main_with(
        "thread_vs_process: one CPU-bound job on threads, processes and tasks",
        |args| {
            let n = args.size_or(2_000_000, 200_000) as u64;
            let backends = match &args.backend {
                Some(b) => vec![b.clone()],
                None => common::enabled_backends()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            };
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            println!("counting the primes below {n} in {PARTS} parts on {cores} cores");
            let (expected, seq) = timed(|| count_primes(0, n));
            println!(
                "{:<22} {expected:>9} primes {:>10}   speed-up 1.00x",
                "sequential (1 thread)",
                human(seq)
            );
            for b in &backends {
                let outcome: DynResult<(u64, Duration)> = on_backend!(b.as_str(), run(n));
                match outcome {
                    Ok((count, t)) => {
                        let check = if count == expected {
                            ""
                        } else {
                            "  WRONG COUNT"
                        };
                        println!(
                            "{:<22} {count:>9} primes {:>10}   speed-up {:.2}x{check}",
                            format!("{PARTS} {b} units"),
                            human(t),
                            seq.as_secs_f64() / t.as_secs_f64()
                        );
                        if count != expected {
                            return Err(format!("{b}: counted {count}, expected {expected}").into());
                        }
                    }
                    Err(e) => println!("{:<22} failed: {e}", format!("{PARTS} {b} units")),
                }
            }
            Ok(())
        },
    );
}
