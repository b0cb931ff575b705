//! Thread backend against its peers, in the same run:
//!
//! - channel, u64, bounded 1024, 1→1 and 2→2: `uniconc::thread` vs raw crossbeam-channel
//!   (the facade's overhead; target ratio ≥ 0.95);
//! - `Pool::map` of 1M trivial items vs rayon `par_iter` vs a sequential loop.
//!
//! Run: `cargo bench -p uniconc-benches --bench thread -- --warm-up-time 1 --measurement-time 2`
//! (the figures are throughputs; compare the two lines of a group for the ratio).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use uniconc::prelude::*;

/// Messages per iteration of a channel benchmark.
const MESSAGES: u64 = 200_000;
/// Items of the pool benchmark.
const ITEMS: u64 = 1_000_000;

/// `producers` threads send `MESSAGES` in all; `consumers` threads receive them.
fn uniconc_channel(producers: u64, consumers: u64) {
    let (tx, rx) = uniconc::thread::channel::<u64>(1024).unwrap();
    std::thread::scope(|s| {
        for _ in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..MESSAGES / producers {
                    tx.send(i).unwrap();
                }
            });
        }
        drop(tx);
        for _ in 0..consumers {
            let rx = rx.clone();
            s.spawn(move || {
                let mut sum = 0u64;
                while let Ok(v) = rx.recv() {
                    sum = sum.wrapping_add(v);
                }
                black_box(sum);
            });
        }
    });
}

fn crossbeam_channel(producers: u64, consumers: u64) {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
    std::thread::scope(|s| {
        for _ in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..MESSAGES / producers {
                    tx.send(i).unwrap();
                }
            });
        }
        drop(tx);
        for _ in 0..consumers {
            let rx = rx.clone();
            s.spawn(move || {
                let mut sum = 0u64;
                while let Ok(v) = rx.recv() {
                    sum = sum.wrapping_add(v);
                }
                black_box(sum);
            });
        }
    });
}

fn channels(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_u64_bounded1024");
    g.throughput(Throughput::Elements(MESSAGES));
    for (p, q) in [(1u64, 1u64), (2, 2)] {
        let label = format!("{p}to{q}");
        g.bench_with_input(
            BenchmarkId::new("crossbeam", &label),
            &(p, q),
            |b, &(p, q)| b.iter(|| crossbeam_channel(p, q)),
        );
        g.bench_with_input(
            BenchmarkId::new("uniconc_thread", &label),
            &(p, q),
            |b, &(p, q)| b.iter(|| uniconc_channel(p, q)),
        );
    }
    g.finish();
}

/// The facade's overhead measured robustly on a noisy shared machine: crossbeam and uniconc
/// runs *interleaved* (pairs), so load drift hits both alike; prints the median throughput of
/// each and the median of the per-pair ratios (uniconc / crossbeam; ≥ 0.95 is the target).
fn channel_ratio(c: &mut Criterion) {
    let _ = c;
    let pairs: usize = std::env::var("UNICONC_BENCH_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for (p, q) in [(1u64, 1u64), (2, 2)] {
        let mut cb = Vec::with_capacity(pairs);
        let mut uc = Vec::with_capacity(pairs);
        let mut ratios = Vec::with_capacity(pairs);
        let rate = |run: &dyn Fn()| {
            let t = std::time::Instant::now();
            run();
            MESSAGES as f64 / t.elapsed().as_secs_f64()
        };
        for i in 0..pairs {
            // Alternate which goes first, so neither always runs on a warmer cache.
            let (a, b) = if i % 2 == 0 {
                let a = rate(&|| crossbeam_channel(p, q));
                (a, rate(&|| uniconc_channel(p, q)))
            } else {
                let b = rate(&|| uniconc_channel(p, q));
                (rate(&|| crossbeam_channel(p, q)), b)
            };
            cb.push(a);
            uc.push(b);
            ratios.push(b / a);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|x, y| x.partial_cmp(y).unwrap());
            v[v.len() / 2]
        };
        let (mcb, muc, mr) = (median(&mut cb), median(&mut uc), median(&mut ratios));
        eprintln!(
            "channel_ratio {p}to{q}: crossbeam {:.2} M msg/s, uniconc_thread {:.2} M msg/s, \
             ratio of medians {:.3}, median pairwise ratio {mr:.3} ({pairs} interleaved pairs \
             of {MESSAGES} messages)",
            mcb / 1e6,
            muc / 1e6,
            muc / mcb,
        );
    }
}

fn trivial(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}

fn pool_map(c: &mut Criterion) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = uniconc::thread::pool(workers).unwrap();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("pool_map_1M_trivial");
    g.throughput(Throughput::Elements(ITEMS));
    g.bench_function("sequential", |b| {
        b.iter(|| black_box((0..ITEMS).map(trivial).collect::<Vec<u64>>()))
    });
    g.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            rayon_pool.install(|| {
                black_box(
                    (0..ITEMS)
                        .into_par_iter()
                        .map(trivial)
                        .collect::<Vec<u64>>(),
                )
            })
        })
    });
    g.bench_function("uniconc_thread_pool", |b| {
        b.iter(|| black_box(pool.map(trivial, 0..ITEMS).unwrap()))
    });
    g.finish();
}

/// `Pool::map` against rayon and a sequential loop, interleaved (one of each per round, in
/// rotating order) so that load drift on a shared machine hits all three alike; prints the
/// median of each and the ratios of the medians.
fn pool_map_ratio(c: &mut Criterion) {
    let _ = c;
    let rounds: usize = std::env::var("UNICONC_BENCH_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = uniconc::thread::pool(workers).unwrap();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let time = |run: &dyn Fn() -> Vec<u64>| {
        let t = std::time::Instant::now();
        let v = run();
        let e = t.elapsed().as_secs_f64();
        assert_eq!(v.len() as u64, ITEMS);
        drop(black_box(v));
        e
    };
    let seq = || (0..ITEMS).map(trivial).collect::<Vec<u64>>();
    let par = || {
        rayon_pool.install(|| {
            (0..ITEMS)
                .into_par_iter()
                .map(trivial)
                .collect::<Vec<u64>>()
        })
    };
    let uni = || pool.map(trivial, 0..ITEMS).unwrap();
    let runs: [&dyn Fn() -> Vec<u64>; 3] = [&seq, &par, &uni];
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..rounds {
        for k in 0..3 {
            let which = (r + k) % 3;
            times[which].push(time(runs[which]));
        }
    }
    let med: Vec<f64> = times
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        })
        .collect();
    eprintln!(
        "pool_map_ratio (1M trivial items, {workers} workers, {rounds} interleaved rounds, medians): \
         sequential {:.3} ms, rayon {:.3} ms, uniconc_thread {:.3} ms; uniconc throughput = \
         {:.2}x rayon, {:.2}x sequential",
        med[0] * 1e3,
        med[1] * 1e3,
        med[2] * 1e3,
        med[1] / med[2],
        med[0] / med[2],
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = channels, channel_ratio, pool_map, pool_map_ratio
}
criterion_main!(benches);
