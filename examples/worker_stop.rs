//! Workers that serve a job queue until a stop channel tells them to stop: one `select!` over
//! both, no polling. Go's `for { select { case j := <-jobs: ...; case <-quit: return } }`, and
//! what Python's `multiprocessing` programs do with a sentinel per worker or a `get(timeout=)`
//! loop that checks an `Event`.
//!
//! ```text
//! loop {
//!     select! {
//!         recv(jobs) -> job => ...,            // a job: do it
//!         recv(stop) -> _ => break,            // told to stop (or the stop channel closed)
//!         default(IDLE) => return Err(..),     // nobody sent anything for too long
//!     }
//! }
//! ```
//!
//! The worker sleeps until one of them is ready — a job, the stop, or its idle timeout — and
//! wakes at once for whichever comes. Closing the stop channel (`stop_tx.close()`) stops every
//! worker at once: each one's stop arm fires (with `Disconnected`), which a message could only
//! do for one worker.
//!
//! First every job is answered; then a second batch is queued and the stop sent right away:
//! each worker finishes the job in its hands and stops, and the jobs nobody took stay queued
//! (nothing is lost: handled + left = sent).
//!
//! Run: `cargo run --example worker_stop -- --backend thread --size 1000`.

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
use uniconc::RecvError;
use uniconc::prelude::*;

/// How long a worker waits with nothing to do before it gives up: a guard against a program
/// that forgot to stop it, never reached in a correct run.
const IDLE: Duration = Duration::from_secs(60);

/// What the run observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Jobs each worker handled, over both batches.
    pub(crate) per_worker: Vec<u64>,
    /// Sum of the answers to the first batch.
    pub(crate) first_sum: u64,
    /// What that sum must be.
    pub(crate) expected_first_sum: u64,
    /// Jobs of the second batch.
    pub(crate) second_sent: u64,
    /// Answers to the second batch received before the workers stopped.
    pub(crate) second_handled: u64,
    /// Jobs of the second batch still queued after every worker stopped.
    pub(crate) second_left: u64,
}

/// The work: a square.
fn work(n: u64) -> u64 {
    n * n
}

/// One worker: serves `jobs`, answering on `results`, until `stop` fires. Returns how many jobs
/// it handled.
fn worker<B: Backend>(
    jobs: B::Receiver<u64>,
    stop: B::Receiver<()>,
    results: B::Sender<u64>,
) -> Result<u64, String> {
    let mut handled = 0;
    loop {
        uniconc::select! {
            recv(jobs) -> job => match job {
                Ok(n) => {
                    results.send(work(n)).map_err(|e| e.to_string())?;
                    handled += 1;
                }
                // Every job sender is gone: no job can come any more.
                Err(RecvError::Disconnected) => return Ok(handled),
                Err(e) => return Err(e.to_string()),
            },
            // A stop message, or the stop channel closed: either way, stop.
            recv(stop) -> _ => return Ok(handled),
            default(IDLE) => return Err(format!("no job and no stop for {IDLE:?}")),
        }
    }
}

/// `workers` workers; a first batch of `jobs` jobs, answered in full, then a second batch of
/// `jobs` jobs with the stop sent right behind it.
pub(crate) fn run<B: Backend>(workers: usize, jobs: u64) -> DynResult<Outcome> {
    let b = B::NAME;
    let (jobs_tx, jobs_rx) = B::channel::<u64>(jobs.max(1) as usize)?;
    let (stop_tx, stop_rx) = B::channel::<()>(1)?;
    let (results_tx, results_rx) = B::unbounded::<u64>()?;

    let handles = (0..workers)
        .map(|_| {
            let (jobs, stop, results) = (jobs_rx.clone(), stop_rx.clone(), results_tx.clone());
            B::spawn(move || worker::<B>(jobs, stop, results))
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop((stop_rx, results_tx));

    // First batch: every job answered.
    for n in 0..jobs {
        jobs_tx.send(n)?;
    }
    let mut first_sum = 0;
    for _ in 0..jobs {
        first_sum += results_rx.recv()?;
    }
    let expected_first_sum = (0..jobs).map(work).sum();
    println!("[{b}] {workers} workers answered {jobs} jobs: sum of squares {first_sum}");

    // Second batch, then stop at once: `close()` wakes every worker's stop arm.
    for n in 0..jobs {
        jobs_tx.send(n)?;
    }
    stop_tx.close();
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(h.join()??);
    }
    let second_handled = results_rx.try_iter().count() as u64;
    let second_left = jobs_rx.len() as u64;
    println!(
        "[{b}] stopped: of {jobs} more jobs, {second_handled} were handled before the stop \
         and {second_left} are still queued; per worker: {per_worker:?}"
    );
    Ok(Outcome {
        per_worker,
        first_sum,
        expected_first_sum,
        second_sent: jobs,
        second_handled,
        second_left,
    })
}

fn main() {
    common::main_with(
        "worker_stop: workers serving a job queue until a stop channel says stop, with select!",
        |args| {
            let backend = args.backend()?;
            let out: Outcome =
                on_backend!(backend.as_str(), run(4, args.size_or(1_000, 100) as u64))?;
            if out.first_sum != out.expected_first_sum
                || out.second_handled + out.second_left != out.second_sent
            {
                return Err(format!("jobs were lost or answered twice: {out:?}").into());
            }
            Ok(())
        },
    );
}
