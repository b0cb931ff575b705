//! Memory of 10,000 concurrent tasks, each blocked on its own channel: bytes allocated per
//! task (task + channel + its registered waiter), counted by a counting global allocator,
//! for the tokio backend's channel and its peers in the same run.
//!
//! `cargo bench -p uniconc-benches --bench tokio_memory` (target: ≤ 2 KiB per task).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; the counter is only statistics (Relaxed: no other memory
// depends on it).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TASKS: usize = 10_000;

/// Spawns `TASKS` tasks each waiting on its own channel; returns bytes per task while they
/// all wait, then wakes and joins them.
fn measure<Tx: Send + 'static, F: Future<Output = ()> + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    make: impl Fn() -> (Tx, F),
    send: impl Fn(Tx),
) -> f64 {
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let before = LIVE.load(Ordering::Relaxed);
    let mut txs = Vec::with_capacity(TASKS);
    let mut hs = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (tx, fut) = make();
        let s = started.clone();
        hs.push(rt.spawn(async move {
            s.fetch_add(1, Ordering::Relaxed);
            fut.await
        }));
        txs.push(tx);
    }
    // Wait until every task has been polled (and so registered its waker), then settle.
    while started.load(Ordering::Relaxed) < TASKS {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let during = LIVE.load(Ordering::Relaxed);
    for tx in txs {
        send(tx);
    }
    rt.block_on(async {
        for h in hs {
            h.await.unwrap();
        }
    });
    (during - before) as f64 / TASKS as f64
}

fn main() {
    // Under `cargo test --benches` criterion-style flags are passed; this binary ignores them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // Warm the runtime (first-use allocations are not per task).
    let _ = measure(
        &rt,
        || {
            let (tx, rx) = uniconc_async::channel::<u64>(1).unwrap();
            (
                tx,
                async move { rx.recv_async().await.map(drop).unwrap_or(()) },
            )
        },
        |tx| uniconc_core::Sender::try_send(&tx, 1).unwrap(),
    );

    let uniconc = measure(
        &rt,
        || {
            let (tx, rx) = uniconc_async::channel::<u64>(1).unwrap();
            (
                tx,
                async move { rx.recv_async().await.map(drop).unwrap_or(()) },
            )
        },
        |tx| uniconc_core::Sender::try_send(&tx, 1).unwrap(),
    );
    let tokio_mpsc = measure(
        &rt,
        || {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
            (tx, async move { rx.recv().await.map(drop).unwrap_or(()) })
        },
        |tx| tx.try_send(1).unwrap(),
    );
    let async_channel = measure(
        &rt,
        || {
            let (tx, rx) = async_channel::bounded::<u64>(1);
            (tx, async move { rx.recv().await.map(drop).unwrap_or(()) })
        },
        |tx| tx.try_send(1).unwrap(),
    );
    let flume = measure(
        &rt,
        || {
            let (tx, rx) = flume::bounded::<u64>(1);
            (
                tx,
                async move { rx.recv_async().await.map(drop).unwrap_or(()) },
            )
        },
        |tx| tx.try_send(1).unwrap(),
    );

    println!("bytes per task, {TASKS} tasks each blocked on its own bounded(1) channel:");
    for (name, v) in [
        ("uniconc", uniconc),
        ("tokio_mpsc", tokio_mpsc),
        ("async_channel", async_channel),
        ("flume", flume),
    ] {
        println!(
            "  {name:<14} {v:>8.0} B/task  ({:.2}x uniconc)",
            v / uniconc
        );
    }
    println!(
        "target <= 2048 B/task: {}",
        if uniconc <= 2048.0 { "met" } else { "NOT met" }
    );
}
