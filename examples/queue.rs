//! A bounded queue taught the way Python's `queue.Queue` / `multiprocessing.Queue` is: `put`
//! blocks while it is full, `get` while it is empty, `put_nowait`/`get_nowait` raise `Full` and
//! `Empty`, `put(timeout=)`/`get(timeout=)` give up; then producers and consumers.
//!
//! | Python | uniconc |
//! |---|---|
//! | `q = Queue(maxsize=3)` | `let (tx, rx) = B::channel(3)?` |
//! | `q.put(x)` / `q.get()` | `tx.send(x)` / `rx.recv()` |
//! | `q.put_nowait(x)` → `queue.Full` | `tx.try_send(x)` → `Err(TrySendError::Full(x))` (you get `x` back) |
//! | `q.get_nowait()` → `queue.Empty` | `rx.try_recv()` → `Err(TryRecvError::Empty)` |
//! | `q.put(x, timeout=0.05)` | `tx.send_timeout(x, 50ms)` → `Err(SendTimeoutError::Timeout(x))` |
//! | `q.get(timeout=0.05)` | `rx.recv_timeout(50ms)` → `Err(RecvTimeoutError::Timeout)` |
//! | a `None` sentinel per consumer | `tx.close()` (or drop every sender): consumers drain, then see `Disconnected` |
//!
//! Run: `cargo run --example queue -- --backend thread --size 10000`.

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
use uniconc::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

/// What the producer/consumer part counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Items each consumer received.
    pub(crate) per_consumer: Vec<u64>,
    /// Sum of everything received.
    pub(crate) sum: u64,
    /// Sum of everything sent.
    pub(crate) expected_sum: u64,
}

/// The Queue lesson, then `producers` × `items` messages through a queue of capacity 8 to
/// `consumers` consumers.
pub(crate) fn run<B: Backend>(items: u64) -> DynResult<Outcome> {
    let b = B::NAME;
    // --- 1. A queue of capacity 3: full, put_nowait, put with a timeout. ---
    let (tx, rx) = B::channel::<String>(3)?;
    for word in ["one", "two", "three"] {
        tx.try_send(word.to_owned())?;
    }
    println!(
        "[{b}] queued 3 items: len = {}, capacity = {:?}",
        tx.len(),
        tx.capacity()
    );
    match tx.try_send("four".to_owned()) {
        Err(TrySendError::Full(back)) => {
            println!("[{b}] try_send while full -> Full, got {back:?} back")
        }
        other => return Err(format!("expected Full, got {other:?}").into()),
    }
    match tx.send_timeout("four".to_owned(), Duration::from_millis(50)) {
        Err(SendTimeoutError::Timeout(back)) => {
            println!("[{b}] send_timeout(50 ms) while full -> Timeout, got {back:?} back")
        }
        other => return Err(format!("expected Timeout, got {other:?}").into()),
    }

    // --- 2. Draining: FIFO order, then get_nowait and get with a timeout on an empty queue. ---
    let drained: Vec<String> = rx.try_iter().collect();
    println!("[{b}] drained in FIFO order: {drained:?}");
    if drained != ["one", "two", "three"] {
        return Err(format!("FIFO order broken: {drained:?}").into());
    }
    match rx.try_recv() {
        Err(TryRecvError::Empty) => println!("[{b}] try_recv on an empty queue -> Empty"),
        other => return Err(format!("expected Empty, got {other:?}").into()),
    }
    match rx.recv_timeout(Duration::from_millis(50)) {
        Err(RecvTimeoutError::Timeout) => println!("[{b}] recv_timeout(50 ms) on empty -> Timeout"),
        other => return Err(format!("expected Timeout, got {other:?}").into()),
    }

    // --- 3. close(): the channel is closed for everyone; what is queued is still delivered. ---
    tx.send("last words".to_owned())?;
    tx.close();
    let last = rx.recv()?;
    let after = rx.recv();
    println!(
        "[{b}] after close(): recv -> {last:?}, then {after:?}; send -> {:?}",
        tx.send("x".into()).map_err(|e| e.to_string())
    );
    if after.is_ok() {
        return Err("a closed, drained channel still delivered a message".into());
    }

    // --- 4. Producers and consumers. ---
    let (producers, consumers) = (2u64, 2usize);
    let (tx, rx) = B::channel::<u64>(8)?;
    let mut consumer_handles = Vec::new();
    for _ in 0..consumers {
        let rx = rx.clone();
        // `iter()` ends once the queue is closed (or every sender is gone) and drained: no
        // sentinel needed.
        consumer_handles.push(B::spawn(move || {
            rx.iter().fold((0u64, 0u64), |(n, s), x| (n + 1, s + x))
        })?);
    }
    drop(rx);
    let mut producer_handles = Vec::new();
    for p in 0..producers {
        let tx = tx.clone();
        producer_handles.push(B::spawn(move || -> Result<(), String> {
            for i in 0..items {
                // Blocks while the queue (capacity 8) is full: back-pressure.
                tx.send(p * items + i).map_err(|e| e.to_string())?;
            }
            Ok(())
        })?);
    }
    for h in producer_handles {
        h.join()??;
    }
    // Every item is sent: close the queue so the consumers' `iter()` ends once they have
    // drained it. Dropping the last sender would do too; `close()` says "no more items" at a
    // point of our choosing, whoever else still holds a sender (Python's one sentinel per
    // consumer, without the sentinels).
    tx.close();
    let mut per_consumer = Vec::new();
    let mut sum = 0;
    for h in consumer_handles {
        let (n, s) = h.join()?;
        per_consumer.push(n);
        sum += s;
    }
    let total = producers * items;
    let expected_sum = total * total.saturating_sub(1) / 2;
    println!(
        "[{b}] {producers} producers sent {total} items; consumers got {per_consumer:?} \
         (sum {sum}, expected {expected_sum})"
    );
    Ok(Outcome {
        per_consumer,
        sum,
        expected_sum,
    })
}

fn main() {
    common::main_with(
        "queue: a bounded queue, the way Python's Queue is taught",
        |args| {
            let backend = args.backend()?;
            let out: Outcome =
                on_backend!(backend.as_str(), run(args.size_or(10_000, 1_000) as u64))?;
            if out.sum != out.expected_sum {
                return Err("messages were lost or duplicated".into());
            }
            Ok(())
        },
    );
}
