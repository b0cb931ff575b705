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
//! Then the codec alone, in this process, for each payload: encoding (size, then write) and
//! decoding through the fast path, against bincode's own serde path for the same value (the
//! bytes are the same) and against a copy of the encoded bytes (the floor: no codec writes
//! them faster than memory copies them), with ratios from the same rounds. These figures are
//! per second of the thread's CPU time, so that other processes on a shared machine do not
//! count; the streaming figures above are wall-clock.
//!
//! Run: `cargo bench -p uniconc-benches --bench process_payload` (add `-- codec` for the codec
//! alone).

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

/// Streams `msg` in `rounds` rounds: the fast path's GB/s, the serde path's, and the median of
/// their per-round ratios.
fn row<T: uniconc::Message + Clone + DeserializeOwned>(
    rounds: usize,
    n: usize,
    msg: T,
) -> (f64, f64, f64) {
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
    (median(fast), median(slow), median(ratio))
}

fn print_row(name: &str, (fast, slow, ratio): (f64, f64, f64), py: Option<f64>) {
    let vs_py = py.map_or_else(
        || "python3 not run".to_string(),
        |p| format!("{:.1}x python (target >= 3x)", fast / p),
    );
    println!(
        "{name:<10} 64 KiB: {fast:6.2} GB/s ({vs_py}); inside a struct (serde path) {slow:5.2} GB/s: fast path {ratio:.1}x"
    );
}

const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ uniconc_core::codec::LIMIT }>,
> = bincode::config::standard().with_limit::<{ uniconc_core::codec::LIMIT }>();

/// This thread's CPU time: on a shared machine, time other processes run is not counted.
fn cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid `timespec` to write to; the clock id is a constant Linux and the
    // BSDs define.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// GB/s of payload per second of CPU time for `reps` runs of `f` on a 64 KiB payload.
fn timed(reps: usize, mut f: impl FnMut()) -> f64 {
    let start = cpu_time();
    for _ in 0..reps {
        f();
    }
    gbps(reps, cpu_time() - start)
}

/// The codec alone on `msg`: fast path, bincode's serde path, and a copy of the encoded bytes.
fn codec_row<T: Serialize + DeserializeOwned + 'static>(name: &str, rounds: usize, msg: &T) {
    use uniconc_core::codec;
    let size = codec::encoded_size(msg).unwrap();
    let mut buf = vec![0u8; size];
    let mut copy = vec![0u8; size];
    codec::encode_into(msg, &mut buf).unwrap();
    let reps = 2000;
    let mut cols: [Vec<f64>; 5] = Default::default();
    let (mut enc_x, mut dec_x) = (vec![], vec![]);
    for _ in 0..rounds {
        let enc = timed(reps, || {
            let n = codec::encoded_size(black_box(msg)).unwrap();
            black_box(codec::encode_into(msg, &mut buf[..n]).unwrap());
        });
        let enc_serde = timed(reps / 4, || {
            let n = codec::encoded_size_any(black_box(msg)).unwrap();
            black_box(codec::encode_into_any(msg, &mut buf[..n]).unwrap());
        });
        let dec = timed(reps, || {
            black_box(codec::decode::<T>(black_box(&buf)).unwrap());
        });
        let dec_serde = timed(reps / 4, || {
            black_box(bincode::serde::decode_from_slice::<T, _>(black_box(&buf), BINCODE).unwrap());
        });
        let memcpy = timed(reps, || {
            copy.copy_from_slice(black_box(&buf));
            black_box(&mut copy);
        });
        enc_x.push(enc / enc_serde);
        dec_x.push(dec / dec_serde);
        for (c, v) in cols
            .iter_mut()
            .zip([enc, enc_serde, dec, dec_serde, memcpy])
        {
            c.push(v);
        }
    }
    let [enc, enc_serde, dec, dec_serde, memcpy] = cols.map(median);
    println!(
        "{name:<10} codec alone: encode {enc:6.2} GB/s ({:.1}x serde path {enc_serde:.2}), \
         decode {dec:6.2} GB/s ({:.1}x serde path {dec_serde:.2}); memcpy of the {:.1} KiB \
         encoded {memcpy:6.2} GB/s",
        median(enc_x),
        median(dec_x),
        size as f64 / 1024.0
    );
}

fn main() {
    let rounds = std::env::var("UNICONC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let codec_only = std::env::args().skip(1).any(|a| a == "codec");
    let py_start = if codec_only { None } else { python() };
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
    let codec_rows = || {
        codec_row("Vec<u8>", rounds, &bytes);
        codec_row("Vec<f64>", rounds, &floats);
        codec_row("Vec<u64>", rounds, &ints);
        codec_row("String", rounds, &text);
    };
    if codec_only {
        codec_rows();
        return;
    }
    let rows = [
        ("Vec<u8>", row(rounds, n, bytes.clone())),
        ("Vec<f64>", row(rounds, n, floats.clone())),
        ("Vec<u64>", row(rounds, n, ints.clone())),
        ("String", row(rounds, n, text.clone())),
    ];
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
    for (name, r) in rows {
        print_row(name, r, py);
    }
    println!(
        "(GB/s of the 64 KiB payload; median of {rounds} rounds; codec alone: per CPU second)"
    );
    codec_rows();
}
