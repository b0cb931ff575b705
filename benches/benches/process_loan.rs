//! Large byte payloads across fork, written and read in place: the process channel's
//! `send_with`/`recv_with` against its plain `send`/`recv` of a `Vec<u8>` and against
//! iceoryx2's zero-copy publish-subscribe (`loan_slice_uninit`), 64 KiB and 1 MiB messages
//! streamed 1→1 from a forked child to the parent, all in the same run.
//!
//! The same work for every row: the writer fills every byte of each message from a prepared
//! source buffer (a copy into the payload), the reader reads every byte (a wrapping sum of
//! its `u64` words). The plain row's writer builds the `Vec` it sends (`source.to_vec()`),
//! and its reader gets a `Vec` to sum; the closure rows write and read the channel's shared
//! memory; iceoryx2's publisher copies the source into a loaned sample
//! (`write_from_slice`), its subscriber sums the sample in place, polling `receive` (its
//! fastest mode: no event service).
//!
//! Each row streams `n` messages after one warm-up message; rounds are interleaved (plain,
//! closures, iceoryx2, plain, ...) so that only neighbouring runs compare on a shared machine,
//! and every ratio is the median of the per-round ratios. Both uniconc channels hold 8
//! messages in a byte budget of 16 messages (1 MiB for 64 KiB messages, 16 MiB for 1 MiB);
//! iceoryx2's subscriber buffers 16 samples (the same memory; `UNICONC_ICEORYX2_BUFFER` to
//! change it), and its publisher waits when the buffer is full (`RetryUntilDelivered`, safe
//! overflow off), so no sample is dropped. That wait is iceoryx2's adaptive wait (yields,
//! then sleeps), where a full uniconc channel spins then sleeps on a futex its receiver
//! wakes: on a loaded machine a full buffer costs iceoryx2 more.
//!
//! Run: `cargo bench -p uniconc-benches --bench process_loan` (`UNICONC_BENCH_ROUNDS`, default
//! 7; `UNICONC_BENCH_SCALE` multiplies the message counts, 4000 and 250 by default).

use std::hint::black_box;
use std::time::{Duration, Instant};

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;
use uniconc_benches::{fork_child, reap};
use uniconc_core::{Event as _, Receiver as _, Sender as _};

/// The reader's work: every byte, as a wrapping sum of `u64` words.
#[inline]
fn checksum(b: &[u8]) -> u64 {
    let mut words = b.chunks_exact(8);
    let sum = words
        .by_ref()
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .fold(0u64, u64::wrapping_add);
    words
        .remainder()
        .iter()
        .fold(sum, |s, &x| s.wrapping_add(u64::from(x)))
}

/// The prepared source every writer copies from.
fn source(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + 3) as u8).collect()
}

fn channel(
    size: usize,
) -> (
    uniconc_process::Sender<Vec<u8>>,
    uniconc_process::Receiver<Vec<u8>>,
) {
    uniconc_process::ChannelBuilder::new(Some(8))
        .byte_budget((16 * size).max(1 << 20))
        .build::<Vec<u8>>()
        .expect("channel")
}

/// `send`/`recv` of a `Vec<u8>`: time to receive and sum `n` messages.
fn plain(size: usize, n: usize) -> Duration {
    let (tx, rx) = channel(size);
    let src = source(size);
    let pid = fork_child(move || {
        for _ in 0..=n {
            tx.send(src.to_vec()).expect("send");
        }
    });
    let want = checksum(&source(size));
    assert_eq!(checksum(&rx.recv().expect("recv")), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(checksum(&rx.recv().expect("recv")));
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    reap(pid);
    t
}

/// `send_with`/`recv_with`: the same, written and read in the channel's memory.
fn closures(size: usize, n: usize) -> Duration {
    let (tx, rx) = channel(size);
    let src = source(size);
    let pid = fork_child(move || {
        for _ in 0..=n {
            tx.send_with(src.len(), |buf| buf.copy_from_slice(&src))
                .expect("send_with");
        }
    });
    let want = checksum(&source(size));
    assert_eq!(rx.recv_with(checksum).expect("recv_with"), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv_with(checksum).expect("recv_with"));
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    reap(pid);
    t
}

/// iceoryx2: a publisher in a forked child loans each sample, copies the source in and sends;
/// the parent's subscriber sums each sample in place.
fn iceoryx2(size: usize, n: usize, buffer: usize, tag: &str) -> Duration {
    let name = format!("uniconc/loan/{}/{tag}", std::process::id());
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let service = node
        .service_builder(&name.as_str().try_into().expect("service name"))
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(buffer)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .create()
        .expect("iceoryx2 service");
    let subscriber = service
        .subscriber_builder()
        .buffer_size(buffer)
        .create()
        .expect("iceoryx2 subscriber");
    let src = source(size);
    // The publisher stays until the subscriber has every sample: samples still queued when
    // their publisher's process ends may be reclaimed with its data segment.
    let received = uniconc_process::event().expect("event");
    let pid = fork_child({
        let received = received.clone();
        move || {
            let node = NodeBuilder::new()
                .create::<ipc::Service>()
                .expect("iceoryx2 node (child)");
            let service = node
                .service_builder(&name.as_str().try_into().expect("service name"))
                .publish_subscribe::<[u8]>()
                .open()
                .expect("iceoryx2 service (child)");
            let publisher = service
                .publisher_builder()
                .initial_max_slice_len(size)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .expect("iceoryx2 publisher");
            for _ in 0..=n {
                let sample = publisher.loan_slice_uninit(size).expect("loan");
                let sample = sample.write_from_slice(&src);
                sample.send().expect("iceoryx2 send");
            }
            // Bounded: a parent that failed never sets it.
            let _ = received.wait_timeout(Duration::from_secs(60));
        }
    });
    let recv = || loop {
        match subscriber.receive().expect("iceoryx2 receive") {
            Some(sample) => return checksum(sample.payload()),
            None => std::hint::spin_loop(),
        }
    };
    let want = checksum(&source(size));
    assert_eq!(recv(), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(recv());
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    received.set();
    reap(pid);
    black_box(&service);
    t
}

fn gbps(size: usize, n: usize, t: Duration) -> f64 {
    (size * n) as f64 / t.as_secs_f64() / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env("UNICONC_BENCH_ROUNDS", 7).max(1);
    let scale = env("UNICONC_BENCH_SCALE", 1).max(1);
    let buffer = env("UNICONC_ICEORYX2_BUFFER", 16).max(1);
    for (label, size, n) in [
        ("64 KiB", 64 << 10, 4_000 * scale),
        ("1 MiB", 1 << 20, 250 * scale),
    ] {
        let mut cols: [Vec<f64>; 3] = Default::default();
        let (mut with_x, mut ice_x) = (vec![], vec![]);
        for r in 0..rounds {
            let p = gbps(size, n, plain(size, n));
            let c = gbps(size, n, closures(size, n));
            let i = gbps(size, n, iceoryx2(size, n, buffer, &format!("{size}/{r}")));
            with_x.push(c / p);
            ice_x.push(c / i);
            for (col, v) in cols.iter_mut().zip([p, c, i]) {
                col.push(v);
            }
        }
        let [p, c, i] = cols.map(median);
        println!(
            "{label:>6}: send/recv {p:6.2} GB/s, send_with/recv_with {c:6.2} GB/s, iceoryx2 \
             {i:6.2} GB/s; send_with / plain {:.2}x, send_with / iceoryx2 {:.2}x \
             (medians of {rounds} interleaved rounds)",
            median(with_x),
            median(ice_x)
        );
    }
}
