//! When a channel drops the values queued in it: as soon as the last receiver is gone (they can
//! never be received), not when the last sender goes; and a value whose `Drop` panics there
//! neither aborts the process nor keeps the other values alive.
//!
//! The process backend serializes a value into the channel and drops it inside `send`, so the
//! drop-counting test holds there from the start; the panicking-drop test is instantiated only
//! for the backends that keep values as they are (`in_memory_value_tests!` in `main.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uniconc::prelude::*;

/// Drops counted per test run (tests of several backends run at once in this binary).
static DROPS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
/// Source of run ids.
static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

fn new_run() -> u64 {
    // Relaxed: only uniqueness matters.
    NEXT_RUN.fetch_add(1, Ordering::Relaxed)
}

fn drops(run: u64) -> u64 {
    let drops = DROPS.lock().unwrap_or_else(PoisonError::into_inner);
    drops
        .as_ref()
        .and_then(|m| m.get(&run))
        .copied()
        .unwrap_or(0)
}

/// A message whose drop is counted under its run; it panics on drop if `armed`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Counted {
    run: u64,
    armed: bool,
}

impl Counted {
    fn new(run: u64) -> Self {
        Self { run, armed: false }
    }

    #[cfg(any(feature = "thread", feature = "tokio"))]
    fn armed(run: u64) -> Self {
        Self { run, armed: true }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        *DROPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_default()
            .entry(self.run)
            .or_default() += 1;
        if self.armed {
            panic!("dropping an armed value of run {}", self.run);
        }
    }
}

/// The bounded and the unbounded flavour of one backend's channel.
fn both_flavours<B: Backend>() -> [(B::Sender<Counted>, B::Receiver<Counted>); 2] {
    [B::channel(4).unwrap(), B::unbounded().unwrap()]
}

/// The values queued when the last receiver goes are dropped then, while senders are still
/// alive; the senders then only see `Disconnected`, and nothing is dropped twice.
pub(crate) fn channel_queued_values_dropped_with_last_receiver<B: Backend>() {
    for (tx, rx) in both_flavours::<B>() {
        let run = new_run();
        let rx2 = rx.clone();
        for _ in 0..3 {
            tx.send(Counted::new(run)).unwrap();
        }
        drop(rx);
        // One receiver is left: the values stay receivable (on the process backend the
        // originals were dropped inside `send`; a received copy is a new value).
        let before = drops(run);
        assert!(before == 0 || before == 3, "{before} of 3 dropped early");
        drop(rx2);
        assert_eq!(
            drops(run),
            3,
            "every queued value is dropped when the last receiver goes (a sender is alive)"
        );
        assert!(tx.is_closed());
        let back = tx.send(Counted::new(run)).unwrap_err().into_inner();
        assert_eq!(back.run, run);
        drop(back);
        assert_eq!(drops(run), 4);
        drop(tx);
        assert_eq!(drops(run), 4, "nothing is dropped twice");
    }
}

/// The last receiver goes with two queued values whose `Drop` panics: the first panic reaches
/// the code that dropped the receiver (the second one does not abort the process), both values
/// are dropped, and the channel is disconnected and empty.
#[cfg(any(feature = "thread", feature = "tokio"))]
pub(crate) fn channel_panicking_drops_of_queued_values<B: Backend>() {
    for (tx, rx) in both_flavours::<B>() {
        let run = new_run();
        tx.send(Counted::armed(run)).unwrap();
        tx.send(Counted::armed(run)).unwrap();
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(rx)))
            .expect_err("the first value's panic reaches the caller");
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        assert!(message.contains("armed value"), "{message:?}");
        assert_eq!(drops(run), 2, "both queued values were dropped");
        assert!(tx.is_closed());
        assert_eq!(tx.len(), 0);
        let back = tx.send(Counted::new(run)).unwrap_err().into_inner();
        drop(back);
        drop(tx);
        assert_eq!(drops(run), 3, "nothing is dropped twice");
    }
}
