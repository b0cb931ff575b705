//! Big payloads across fork: 64 KiB messages of bytes, floats, integers and text streamed 1→1
//! from a forked child through the process channel, against Python's `multiprocessing.Queue`
//! with 64 KiB `bytes` (`benches/python/payload_bench.py`, run before and after ours in the
//! same run) and against the same payload wrapped in a struct (which takes the codec's general
//! serde path, one call per element: what the fast path saves).
//!
//! Prints GB/s of payload received (64 KiB per message; a `Vec<u64>` of random values encodes
//! to about 72 KiB) and the ratio to Python, median of `UNICONC_BENCH_ROUNDS` rounds (default
//! 7). The channel holds 8 messages in a 1 MiB byte budget, so the payload stays in cache: a
//! larger budget walks more memory per lap and lands each message on cold lines (`Vec<u8>`
//! measured 2.3 GB/s with a 32 MiB budget, 7 GB/s with 1 MiB, here).
//!
//! Run: `cargo bench -p uniconc-benches --bench process_payload`

use std::hint::black_box;
use std::time::{Duration, Instant};
use uniconc_benches::{fork_child, reap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uniconc_core::{Receiver as _, Sender as _};

const SIZE: usize = 64 * 1024;

/// Time to receive `n` messages equal to `msg` streamed from a forked child.
fn stream<T: uniconc::Message + Clone>(n: usize, msg: T) -> Duration {
    let (tx, rx) = uniconc_process::ChannelBuilder::new(Some(8))
        .byte_budget(1 << 20)
        .build::<T>()
        .unwrap();
    let pid = fork_child(move || {
        for _ in 0..=n {
            tx.send(msg.clone()).unwrap();
        }
    });
    rx.recv().unwrap();
    let start = Instant::now();
    for _ in 0..n {
        black_box(rx.recv().unwrap());
    }
    let t = start.elapsed();
    reap(pid);
    t
}

/// The same payload inside a struct: the codec's general serde path.
#[derive(Clone, Serialize, Deserialize)]
struct Wrapped<T>(T, u8);

fn gbps(n: usize, t: Duration) -> f64 {
    (n * SIZE) as f64 / t.as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn python() -> Option<f64> {
    let text = uniconc_benches::run_python("payload_bench.py")?;
    text.lines()
        .find_map(|l| l.strip_prefix("queue_64k_bytes_gb_per_s "))
        .and_then(|v| v.trim().parse().ok())
}

fn row<T: uniconc::Message + Clone + DeserializeOwned>(
    name: &str,
    rounds: usize,
    n: usize,
    msg: T,
    py: Option<f64>,
) {
    // Interleaved rounds (fast, serde, fast, ...): only neighbouring rounds compare on a
    // shared machine; the ratio is the median of the per-round ratios.
    let (mut fast, mut slow, mut ratio) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let f = gbps(n, stream(n, msg.clone()));
        let s = gbps(n / 4, stream(n / 4, Wrapped(msg.clone(), 0)));
        fast.push(f);
        slow.push(s);
        ratio.push(f / s);
    }
    let (fast, slow, ratio) = (median(fast), median(slow), median(ratio));
    let vs_py = py.map_or_else(
        || "python3 not run".to_string(),
        |p| format!("{:.1}x python (target >= 3x)", fast / p),
    );
    println!(
        "{name:<10} 64 KiB: {fast:6.2} GB/s ({vs_py}); inside a struct (serde path) {slow:5.2} GB/s: fast path {ratio:.1}x"
    );
}

fn main() {
    let rounds = std::env::var("UNICONC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let py_start = python();
    let n = 4000;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bytes: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
    let floats: Vec<f64> = (0..SIZE / 8).map(|i| i as f64 * 0.5).collect();
    let ints: Vec<u64> = (0..SIZE / 8).map(|_| rand()).collect();
    let text: String = (0..SIZE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let py_end = python();
    let py = match (py_start, py_end) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    if let Some(p) = py {
        println!(
            "python mp.Queue, 64 KiB bytes: {p:.2} GB/s (mean of a run before and after ours)"
        );
    }
    row("Vec<u8>", rounds, n, bytes, py);
    row("Vec<f64>", rounds, n, floats, py);
    row("Vec<u64>", rounds, n, ints, py);
    row("String", rounds, n, text, py);
}
