//! `send_batch` / `recv_batch` against per-message `send` / `recv`, u64s streamed 1→1, on
//! every backend, with a raw shared-memory SPSC ring (batches of 64) in the same run as the
//! ceiling of what crossing processes costs.
//!
//! `cargo bench -p uniconc-benches --bench batch` prints, per backend and batch size, the
//! median over interleaved rounds of each side's rate and of the per-round ratio.
//! `UNICONC_BENCH_ROUNDS` (default 7) sets the rounds, `UNICONC_BENCH_MESSAGES` (default
//! 2,000,000) the messages per measurement.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uniconc::{Backend, Receiver as _, Sender as _};
use uniconc_benches::{fork_child, reap};

/// Capacity of every channel measured.
const CAP: usize = 1024;
/// Batch sizes measured against per-message calls.
const BATCHES: [usize; 3] = [16, 64, 256];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Millions of messages per second for `n` messages in `d`.
fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64() / 1e6
}

/// How the producer sends and the consumer receives: per message, or in batches of `b`.
#[derive(Clone, Copy)]
enum Form {
    Single,
    Batch(usize),
}

/// The producer's loop: `0..n` then the end marker `u64::MAX`.
fn produce<S: uniconc::Sender<u64>>(tx: &S, n: u64, form: Form) {
    match form {
        Form::Single => {
            for i in 0..n {
                tx.send(i).unwrap();
            }
        }
        Form::Batch(b) => {
            let mut items = 0..n;
            while items.start < n {
                tx.send_batch(items.by_ref().take(b)).unwrap();
            }
        }
    }
    tx.send(u64::MAX).unwrap();
}

/// The consumer's loop, until the end marker; checks the stream is whole and in order.
fn consume<R: uniconc::Receiver<u64>>(rx: &R, n: u64, form: Form) {
    let mut next = 0;
    match form {
        Form::Single => loop {
            let v = rx.recv().unwrap();
            if v == u64::MAX {
                break;
            }
            assert_eq!(v, next);
            next += 1;
        },
        Form::Batch(b) => {
            let mut buf = Vec::with_capacity(b);
            'outer: loop {
                buf.clear();
                rx.recv_batch(&mut buf, b).unwrap();
                for &v in &buf {
                    if v == u64::MAX {
                        break 'outer;
                    }
                    assert_eq!(v, next);
                    next += 1;
                }
            }
        }
    }
    assert_eq!(black_box(next), n);
}

/// M msgs/s of `n` u64s from a forked child through a process channel.
fn process_stream(n: u64, form: Form) -> f64 {
    let (tx, rx) = uniconc_process::channel::<u64>(CAP).unwrap();
    // A first message, so the clock starts with the child running.
    let pid = fork_child(|| {
        tx.send(0).unwrap();
        produce(&tx, n, form);
    });
    drop(tx);
    assert_eq!(rx.recv().unwrap(), 0);
    let start = Instant::now();
    consume(&rx, n, form);
    let t = start.elapsed();
    reap(pid);
    rate(n, t)
}

/// M msgs/s of `n` u64s from another thread through an in-process backend's channel.
fn thread_stream<B: Backend>(n: u64, form: Form) -> f64 {
    let (tx, rx) = B::channel::<u64>(CAP).unwrap();
    let h = std::thread::spawn(move || {
        tx.send(0).unwrap();
        produce(&tx, n, form);
    });
    assert_eq!(rx.recv().unwrap(), 0);
    let start = Instant::now();
    consume(&rx, n, form);
    let t = start.elapsed();
    h.join().unwrap();
    rate(n, t)
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): what a loaded machine's scheduling
/// does not change.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// M msgs/s of `n` u64s sent then received by one thread, `b` at a time, per second of the
/// thread's CPU time: the CPU cost of the two forms, without a second core and without the
/// time the thread waited for a CPU on a loaded machine.
fn one_thread<B: Backend>(n: u64, form: Form, b: usize) -> f64 {
    let (tx, rx) = B::channel::<u64>(CAP).unwrap();
    let mut buf = Vec::with_capacity(b);
    let start = thread_cpu();
    let mut i = 0;
    while i < n {
        let end = (i + b as u64).min(n);
        buf.clear();
        match form {
            Form::Single => {
                for v in i..end {
                    tx.send(v).unwrap();
                }
                for _ in i..end {
                    buf.push(rx.recv().unwrap());
                }
            }
            Form::Batch(_) => {
                tx.send_batch(i..end).unwrap();
                while buf.len() < (end - i) as usize {
                    rx.recv_batch(&mut buf, b).unwrap();
                }
            }
        }
        assert_eq!(black_box(buf[0]), i);
        i = end;
    }
    rate(n, thread_cpu() - start)
}

/// Slots of the raw ring (a power of two).
const RAW_SLOTS: usize = 4096;

/// A shared anonymous mapping of `words` u64s, visible to forked children (leaked).
fn shared_words(words: usize) -> &'static [AtomicU64] {
    // SAFETY: a fresh shared anonymous mapping, never unmapped.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            words * 8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: zeroed memory is a valid AtomicU64; page-aligned; `words * 8` bytes.
    unsafe { std::slice::from_raw_parts(p.cast::<AtomicU64>(), words) }
}

/// M msgs/s of `n` u64s from a forked child through a raw SPSC ring in shared memory that
/// moves batches of `b`: the producer writes up to `b` slots, then publishes its tail once;
/// the consumer reads everything published, then publishes its head once. Positions live on
/// their own cache lines (words 0 and 8), the slots after them.
fn raw_ring_stream(n: u64, b: usize) -> f64 {
    let m = shared_words(16 + RAW_SLOTS);
    let (head, tail, slots) = (&m[0], &m[8], &m[16..]);
    let pid = fork_child(|| {
        let mut t = 0u64;
        let mut cached_head = 0u64;
        while t < n + 1 {
            let want = (b as u64).min(n + 1 - t);
            while t + want - cached_head > RAW_SLOTS as u64 {
                // Acquire: the consumer's reads of the slots happened before its head store.
                cached_head = head.load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            for k in 0..want {
                // Relaxed: published by the Release tail store below.
                slots[((t + k) as usize) & (RAW_SLOTS - 1)].store(t + k, Ordering::Relaxed);
            }
            t += want;
            // Release: publishes the slots written above.
            tail.store(t, Ordering::Release);
        }
    });
    let mut h = 0u64;
    // The first message (0) starts the clock, as for the channels.
    while tail.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let start = Instant::now();
    let mut next = 0u64;
    while next < n + 1 {
        // Acquire: the producer's slot writes happened before its tail store.
        let t = tail.load(Ordering::Acquire);
        while h < t {
            let v = slots[(h as usize) & (RAW_SLOTS - 1)].load(Ordering::Relaxed);
            assert_eq!(v, next);
            next += 1;
            h += 1;
        }
        // Release: our slot reads happen before the producer reuses them.
        head.store(h, Ordering::Release);
    }
    let t = start.elapsed();
    reap(pid);
    rate(n, t)
}

/// Medians over `rounds` of (per message, batch, batch / per message), measured back to back.
fn paired(
    rounds: usize,
    mut single: impl FnMut() -> f64,
    mut batch: impl FnMut() -> f64,
) -> [f64; 3] {
    let (mut a, mut b, mut r) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (x, y) = (single(), batch());
        a.push(x);
        b.push(y);
        r.push(y / x);
    }
    [median(a), median(b), median(r)]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env("UNICONC_BENCH_ROUNDS", 7) as usize;
    let n = env("UNICONC_BENCH_MESSAGES", 2_000_000);
    println!(
        "\n== batch: u64 1->1, channel({CAP}), {n} messages, medians of {rounds} interleaved rounds =="
    );
    for b in BATCHES {
        let [s, bt, r] = paired(
            rounds,
            || process_stream(n, Form::Single),
            || process_stream(n, Form::Batch(b)),
        );
        let [_, raw, rr] = paired(
            rounds,
            || process_stream(n, Form::Batch(b)),
            || raw_ring_stream(n, 64),
        );
        println!(
            "process, batch {b:>3}: send/recv {s:6.1} M/s, send_batch/recv_batch {bt:6.1} M/s: \
             {r:.2}x per-message{}; raw SPSC ring (batches of 64) {raw:6.1} M/s, the batch \
             form is {:.0}% of it",
            if b == 64 {
                if r >= 3.0 {
                    " (target >= 3x met)"
                } else {
                    " (target >= 3x NOT met)"
                }
            } else {
                ""
            },
            100.0 / rr,
        );
    }
    for b in BATCHES {
        let [s, bt, r] = paired(
            rounds,
            || one_thread::<uniconc::Process>(n, Form::Single, b),
            || one_thread::<uniconc::Process>(n, Form::Batch(b), b),
        );
        println!(
            "process, batch {b:>3}, one thread, per CPU second: send/recv {s:6.1} M/s, \
             send_batch/recv_batch {bt:6.1} M/s: {r:.2}x"
        );
    }
    for b in BATCHES {
        let [s, bt, r] = paired(
            rounds,
            || thread_stream::<uniconc::Thread>(n, Form::Single),
            || thread_stream::<uniconc::Thread>(n, Form::Batch(b)),
        );
        println!(
            "thread,  batch {b:>3}: send/recv {s:6.1} M/s, send_batch/recv_batch {bt:6.1} M/s: {r:.2}x"
        );
    }
    for b in BATCHES {
        let [s, bt, r] = paired(
            rounds,
            || thread_stream::<uniconc::Tokio>(n, Form::Single),
            || thread_stream::<uniconc::Tokio>(n, Form::Batch(b)),
        );
        println!(
            "tokio,   batch {b:>3}: send/recv {s:6.1} M/s, send_batch/recv_batch {bt:6.1} M/s: {r:.2}x \
             (sync forms, two threads)"
        );
    }
}
