//! A 2-way select receive against its peer, same run, interleaved pairs (ratios):
//!
//! - thread backend: `uniconc::select!` over two `uniconc::thread` channels vs crossbeam's
//!   `select!` over two crossbeam channels (u64, bounded 1024), with the same producers:
//!   - `two_busy`: 2 producer threads, one per channel, the messages split between them;
//!   - `one_busy`: 1 producer thread on the first channel, the second channel idle;
//!   - target: uniconc ≥ 0.8× crossbeam's throughput;
//!   - `prefilled` (informative): one thread fills the first channel, then selects its
//!     messages; no waiting, no other thread: the cost of the select itself;
//! - tokio backend (informative): `Select::select_async` over two `uniconc::tokio` channels vs
//!   `tokio::select!` over two `recv_async` futures of the same channels, one producer task
//!   per channel, on a 2-worker runtime.
//!
//! Every consumer takes exactly the messages sent, so no run ends on a disconnection.
//!
//! Run: `cargo bench -p uniconc-benches --bench select_thread` (`UNICONC_BENCH_PAIRS`, default
//! 10, sets the number of interleaved pairs; `UNICONC_BENCH_MESSAGES`, default 1,000,000, the
//! messages of one thread run). It prints one line per scenario: the median throughput of
//! each side and the median of the per-pair ratios (uniconc / peer).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use uniconc::prelude::*;
use uniconc::select::Select;

/// Channel bound of every run.
const CAP: usize = 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `busy` producers (one per channel, the first `busy` channels) send `n` messages in all;
/// this thread receives them with `uniconc::select!`.
fn uniconc_select(n: u64, busy: u64) {
    let (tx1, rx1) = uniconc::thread::channel::<u64>(CAP).unwrap();
    let (tx2, rx2) = uniconc::thread::channel::<u64>(CAP).unwrap();
    // The idle channel's sender stays alive (a disconnected channel would be ready).
    let txs = [tx1, tx2];
    std::thread::scope(|s| {
        for tx in txs.iter().take(busy as usize) {
            s.spawn(move || {
                for i in 0..n / busy {
                    tx.send(i).unwrap();
                }
            });
        }
        let mut sum = 0u64;
        for _ in 0..n / busy * busy {
            uniconc::select! {
                recv(rx1) -> v => sum = sum.wrapping_add(v.unwrap()),
                recv(rx2) -> v => sum = sum.wrapping_add(v.unwrap()),
            }
        }
        black_box(sum);
    });
}

/// The same with crossbeam channels and crossbeam's `select!`.
fn crossbeam_select(n: u64, busy: u64) {
    let (tx1, rx1) = crossbeam_channel::bounded::<u64>(CAP);
    let (tx2, rx2) = crossbeam_channel::bounded::<u64>(CAP);
    // The idle channel's sender stays alive (a disconnected channel would be ready).
    let txs = [tx1, tx2];
    std::thread::scope(|s| {
        for tx in txs.iter().take(busy as usize) {
            s.spawn(move || {
                for i in 0..n / busy {
                    tx.send(i).unwrap();
                }
            });
        }
        let mut sum = 0u64;
        for _ in 0..n / busy * busy {
            crossbeam_channel::select! {
                recv(rx1) -> v => sum = sum.wrapping_add(v.unwrap()),
                recv(rx2) -> v => sum = sum.wrapping_add(v.unwrap()),
            }
        }
        black_box(sum);
    });
}

/// One thread, no waiting: the first channel is filled with `CAP` messages, then `CAP`
/// selects take them, `n / CAP` times: the cost of a select that finds a message at once.
fn uniconc_select_prefilled(n: u64) {
    let (tx1, rx1) = uniconc::thread::channel::<u64>(CAP).unwrap();
    let (_tx2, rx2) = uniconc::thread::channel::<u64>(CAP).unwrap();
    let mut sum = 0u64;
    for _ in 0..n / CAP as u64 {
        for i in 0..CAP as u64 {
            tx1.try_send(i).unwrap();
        }
        for _ in 0..CAP {
            uniconc::select! {
                recv(rx1) -> v => sum = sum.wrapping_add(v.unwrap()),
                recv(rx2) -> v => sum = sum.wrapping_add(v.unwrap()),
            }
        }
    }
    black_box(sum);
}

/// The same with crossbeam.
fn crossbeam_select_prefilled(n: u64) {
    let (tx1, rx1) = crossbeam_channel::bounded::<u64>(CAP);
    let (_tx2, rx2) = crossbeam_channel::bounded::<u64>(CAP);
    let mut sum = 0u64;
    for _ in 0..n / CAP as u64 {
        for i in 0..CAP as u64 {
            tx1.try_send(i).unwrap();
        }
        for _ in 0..CAP {
            crossbeam_channel::select! {
                recv(rx1) -> v => sum = sum.wrapping_add(v.unwrap()),
                recv(rx2) -> v => sum = sum.wrapping_add(v.unwrap()),
            }
        }
    }
    black_box(sum);
}

/// Tokio: two producer tasks, the consumer task selects with `Select::select_async`.
async fn tokio_select_async(n: u64) {
    let (tx1, rx1) = uniconc::tokio::channel::<u64>(CAP).unwrap();
    let (tx2, rx2) = uniconc::tokio::channel::<u64>(CAP).unwrap();
    // The senders stay alive until the end (a disconnected channel would be ready).
    let txs = [tx1, tx2];
    let producers = txs.clone().map(|tx| {
        tokio::spawn(async move {
            for i in 0..n / 2 {
                tx.send_async(i).await.unwrap();
            }
        })
    });
    let consumer = tokio::spawn(async move {
        let mut sum = 0u64;
        for _ in 0..n / 2 * 2 {
            let mut sel = Select::new();
            let one = sel.recv(&rx1);
            sel.recv(&rx2);
            let oper = sel.select_async().await;
            let v = if oper.index() == one {
                oper.recv(&rx1)
            } else {
                oper.recv(&rx2)
            };
            sum = sum.wrapping_add(v.unwrap());
        }
        sum
    });
    for p in producers {
        p.await.unwrap();
    }
    black_box(consumer.await.unwrap());
    drop(txs);
}

/// The same with `tokio::select!` over the two `recv_async` futures (cancel-safe: the losing
/// branch takes nothing).
async fn tokio_select_macro(n: u64) {
    let (tx1, rx1) = uniconc::tokio::channel::<u64>(CAP).unwrap();
    let (tx2, rx2) = uniconc::tokio::channel::<u64>(CAP).unwrap();
    // The senders stay alive until the end (a disconnected channel would be ready).
    let txs = [tx1, tx2];
    let producers = txs.clone().map(|tx| {
        tokio::spawn(async move {
            for i in 0..n / 2 {
                tx.send_async(i).await.unwrap();
            }
        })
    });
    let consumer = tokio::spawn(async move {
        let mut sum = 0u64;
        for _ in 0..n / 2 * 2 {
            let v = tokio::select! {
                v = rx1.recv_async() => v,
                v = rx2.recv_async() => v,
            };
            sum = sum.wrapping_add(v.unwrap());
        }
        sum
    });
    for p in producers {
        p.await.unwrap();
    }
    black_box(consumer.await.unwrap());
    drop(txs);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    v[v.len() / 2]
}

/// Runs `peer` and `ours` in `pairs` interleaved pairs (alternating which goes first) and
/// prints the medians and the median pairwise ratio ours / peer.
fn interleaved(label: &str, peer_name: &str, n: u64, pairs: u64, peer: &dyn Fn(), ours: &dyn Fn()) {
    let rate = |run: &dyn Fn()| {
        let t = Instant::now();
        run();
        n as f64 / t.elapsed().as_secs_f64()
    };
    let (mut p, mut u, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = rate(peer);
            (a, rate(ours))
        } else {
            let b = rate(ours);
            (rate(peer), b)
        };
        p.push(a);
        u.push(b);
        r.push(b / a);
    }
    let (mp, mu, mr) = (median(&mut p), median(&mut u), median(&mut r));
    eprintln!(
        "select {label}: {peer_name} {:.2} M msg/s, uniconc {:.2} M msg/s, ratio of medians \
         {:.3}, median pairwise ratio {mr:.3} ({pairs} interleaved pairs of {n} messages)",
        mp / 1e6,
        mu / 1e6,
        mu / mp,
    );
}

fn select_ratio(c: &mut Criterion) {
    let _ = c;
    let pairs = env_or("UNICONC_BENCH_PAIRS", 10);
    let n = env_or("UNICONC_BENCH_MESSAGES", 1_000_000);
    for (label, busy) in [("thread two_busy", 2), ("thread one_busy", 1)] {
        interleaved(
            label,
            "crossbeam select!",
            n,
            pairs,
            &|| crossbeam_select(n, busy),
            &|| uniconc_select(n, busy),
        );
    }
    interleaved(
        "thread prefilled (one thread, informative)",
        "crossbeam select!",
        n / CAP as u64 * CAP as u64,
        pairs,
        &|| crossbeam_select_prefilled(n),
        &|| uniconc_select_prefilled(n),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = n / 5;
    interleaved(
        "tokio two_busy (informative)",
        "tokio::select! over recv_async",
        n,
        pairs,
        &|| rt.block_on(tokio_select_macro(n)),
        &|| rt.block_on(tokio_select_async(n)),
    );
}

criterion_group!(benches, select_ratio);
criterion_main!(benches);
