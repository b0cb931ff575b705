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
//! Two rows with no channel at all measure the floor of the ratio between the two API forms:
//! a hand-written single-producer single-consumer ring of whole messages in an anonymous
//! shared mapping (`MAP_SHARED | MAP_ANONYMOUS`, made and populated before the fork) that
//! holds at most 8 messages (the channels' capacity), each slot handed over by its own
//! sequence word (Release on publish, Acquire on read) and a spin-then-yield wait. Its slots
//! are the memory the channel's ring walks: 16 slots of 64 KiB (the channel's whole 1 MiB
//! budget), 8 of 1 MiB (the channel walks 8 MiB and one record of its 16 MiB; a ninth slot
//! made the in-place row slower, 16 slower still, so 8 is the floor's most favourable
//! choice). `raw in place` does what the closure forms do: the writer copies the source into
//! the slot, the reader sums the slot where it is. `raw with copies` adds the copies the
//! plain forms' API makes: the writer builds a `Vec` (`source.to_vec()`) and copies it into
//! the slot, the reader copies the slot into a fresh `Vec` and sums that. Their ratio is the
//! largest `send_with / plain` a channel with these two APIs could show on this machine at
//! this capacity and budget (one whose only cost is the copies its API makes); the second
//! line of each size also gives `send_with / plain` divided by it, and `send_with` against
//! `raw in place` (the channel's cost over the bare hand-over).
//!
//! Each row streams `n` messages after one warm-up message; rounds are interleaved (plain,
//! closures, iceoryx2, raw in place, raw with copies, plain, ...) so that only neighbouring
//! runs compare on a shared machine, and every ratio is the median of the per-round ratios.
//! Both uniconc channels hold 8 messages in a byte budget of 16 messages (1 MiB for 64 KiB
//! messages, 16 MiB for 1 MiB); iceoryx2's subscriber buffers 16 samples (the same memory;
//! `UNICONC_ICEORYX2_BUFFER` to change it), and its publisher waits when the buffer is full
//! (`RetryUntilDelivered`, safe overflow off), so no sample is dropped. That wait is
//! iceoryx2's adaptive wait (yields, then sleeps), where a full uniconc channel spins then
//! sleeps on a futex its receiver wakes: on a loaded machine a full buffer costs iceoryx2
//! more.
//!
//! Run: `cargo bench -p uniconc-benches --bench process_loan` (`UNICONC_BENCH_ROUNDS`, default
//! 7; `UNICONC_BENCH_SCALE` multiplies the message counts, 4000 and 250 by default).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
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
    // Bounded: under CPU contention iceoryx2's subscriber has been seen to lose samples its
    // publisher sent (benches/README.md), and a wait for them would never end.
    let recv = |got: usize| {
        let since = Instant::now();
        loop {
            match subscriber.receive().expect("iceoryx2 receive") {
                Some(sample) => return checksum(sample.payload()),
                None if since.elapsed() > Duration::from_secs(30) => panic!(
                    "iceoryx2 delivered no sample for 30 s after {got} of {}: its subscriber \
                     lost samples its publisher sent (seen under CPU contention)",
                    n + 1
                ),
                None => std::hint::spin_loop(),
            }
        }
    };
    let want = checksum(&source(size));
    assert_eq!(recv(0), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(recv(i + 1));
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    received.set();
    reap(pid);
    black_box(&service);
    t
}

/// Messages the raw ring holds at most: the channels' capacity.
const RAW_CAPACITY: u64 = 8;

/// Slots of the raw ring for messages of `size` bytes: the memory the channel's ring walks,
/// 16 slots where 16 messages fit its smallest budget (1 MiB), else 8 (see the module docs).
fn raw_slots(size: usize) -> usize {
    if 16 * size <= 1 << 20 { 16 } else { 8 }
}

/// Bytes from one slot's sequence word to the next: two cache lines, so that neither the
/// words nor the adjacent-line prefetcher make two slots share a line.
const RAW_SEQ_STRIDE: usize = 128;

/// The raw ring: `slots` sequence words, then `slots` slots of `size` bytes (from a page
/// boundary), in one shared anonymous mapping made before the fork. Slot `k % slots` carries
/// message `k`; its word is 0 while the slot is free and `k + 1` once message `k` is in it.
/// The writer of message `k` waits until message `k - RAW_CAPACITY` has been read (its word
/// back to 0), which the in-order reader does after every earlier message, `k - slots` (the
/// slot's last occupant) among them. One writer and one reader, each in its own process.
struct Raw {
    base: *mut u8,
    len: usize,
    size: usize,
    slots: usize,
}

impl Raw {
    fn new(size: usize, slots: usize) -> Self {
        assert!((RAW_CAPACITY as usize..=4096 / RAW_SEQ_STRIDE).contains(&slots));
        let len = 4096 + slots * size;
        // SAFETY: a fresh anonymous mapping, no address requested; populated now so that
        // neither row counts first-touch page faults while timed.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        Self {
            base: base.cast(),
            len,
            size,
            slots,
        }
    }

    fn seq(&self, k: u64) -> &AtomicU64 {
        let i = k as usize % self.slots;
        // SAFETY: the words are within the mapping's first page (`slots` ≤ 32 words, 128 bytes
        // apart), 128-byte aligned, zeroed (a valid `AtomicU64`), and live as long as `self`;
        // every process touches them only atomically.
        unsafe { &*self.base.add(i * RAW_SEQ_STRIDE).cast::<AtomicU64>() }
    }

    fn slot(&self, k: u64) -> *mut u8 {
        // SAFETY: slot `k % slots` lies within the mapping (`4096 + slots * size` bytes).
        unsafe { self.base.add(4096 + (k as usize % self.slots) * self.size) }
    }

    /// Writes message `k` with `fill`, once the reader has freed its slot.
    fn send(&self, k: u64, fill: impl FnOnce(&mut [u8])) {
        if k >= RAW_CAPACITY {
            wait_for(self.seq(k - RAW_CAPACITY), 0);
        }
        let seq = self.seq(k);
        // SAFETY: the slot is free: its last occupant was read before message
        // `k - RAW_CAPACITY` (waited for above), and the reader, the only other process that
        // touches it, reads it again only after the store below, so this is the slot's only
        // reference until then; `size` bytes within the mapping.
        fill(unsafe { std::slice::from_raw_parts_mut(self.slot(k), self.size) });
        // Release: the slot's bytes written above happen before the reader's Acquire load
        // that sees `k + 1`.
        seq.store(k + 1, Ordering::Release);
    }

    /// Reads message `k` with `read`, then frees its slot.
    fn recv<R>(&self, k: u64, read: impl FnOnce(&[u8]) -> R) -> R {
        let seq = self.seq(k);
        wait_for(seq, k + 1);
        // SAFETY: message `k` is in the slot (its word is `k + 1`) and the writer does not
        // touch the slot again until the store below frees it; `size` bytes in the mapping.
        let r = read(unsafe { std::slice::from_raw_parts(self.slot(k), self.size) });
        // Release: the reads of the slot above happen before the writer's Acquire load that
        // sees it free, and so before it writes the slot again.
        seq.store(0, Ordering::Release);
        r
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: mapped in `new`, unmapped once, after the writer's process has been reaped
        // (no reference into the mapping outlives `self`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Waits until `seq` reads `want`: spins, then yields.
fn wait_for(seq: &AtomicU64, want: u64) {
    let mut spins = 0u32;
    // Acquire: pairs with the other side's Release store of `want`, so that what it did to the
    // slot before that store (the writer's bytes, the reader's last reads) happens before what
    // this side does next.
    while seq.load(Ordering::Acquire) != want {
        if spins < 1 << 12 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The raw ring with the closure forms' work: the writer copies the source into the slot, the
/// reader sums the slot in place.
fn raw_in_place(size: usize, n: usize) -> Duration {
    let raw = Raw::new(size, raw_slots(size));
    let src = source(size);
    let pid = fork_child(|| {
        for k in 0..=n as u64 {
            raw.send(k, |buf| buf.copy_from_slice(&src));
        }
    });
    let want = checksum(&src);
    assert_eq!(raw.recv(0, checksum), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for k in 1..=n as u64 {
        sum = sum.wrapping_add(raw.recv(k, checksum));
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    reap(pid);
    t
}

/// The raw ring with the plain forms' copies: the writer builds a `Vec` and copies it into
/// the slot, the reader copies the slot into a fresh `Vec` and sums that.
fn raw_with_copies(size: usize, n: usize) -> Duration {
    let raw = Raw::new(size, raw_slots(size));
    let src = source(size);
    let pid = fork_child(|| {
        for k in 0..=n as u64 {
            let v = black_box(src.to_vec());
            raw.send(k, |buf| buf.copy_from_slice(&v));
        }
    });
    let recv = |k| checksum(&black_box(raw.recv(k, <[u8]>::to_vec)));
    let want = checksum(&src);
    assert_eq!(recv(0), want);
    let start = Instant::now();
    let mut sum = 0u64;
    for k in 1..=n as u64 {
        sum = sum.wrapping_add(recv(k));
    }
    let t = start.elapsed();
    assert_eq!(sum, want.wrapping_mul(n as u64));
    reap(pid);
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
        let mut cols: [Vec<f64>; 5] = Default::default();
        let (mut with_x, mut ice_x) = (vec![], vec![]);
        let (mut floor_x, mut of_floor, mut with_raw) = (vec![], vec![], vec![]);
        for r in 0..rounds {
            let p = gbps(size, n, plain(size, n));
            let c = gbps(size, n, closures(size, n));
            let i = gbps(size, n, iceoryx2(size, n, buffer, &format!("{size}/{r}")));
            let ri = gbps(size, n, raw_in_place(size, n));
            let rc = gbps(size, n, raw_with_copies(size, n));
            with_x.push(c / p);
            ice_x.push(c / i);
            floor_x.push(ri / rc);
            of_floor.push((c / p) / (ri / rc));
            with_raw.push(c / ri);
            for (col, v) in cols.iter_mut().zip([p, c, i, ri, rc]) {
                col.push(v);
            }
        }
        let [p, c, i, ri, rc] = cols.map(median);
        println!(
            "{label:>6}: send/recv {p:6.2} GB/s, send_with/recv_with {c:6.2} GB/s, iceoryx2 \
             {i:6.2} GB/s; send_with / plain {:.2}x, send_with / iceoryx2 {:.2}x \
             (medians of {rounds} interleaved rounds)",
            median(with_x),
            median(ice_x)
        );
        println!(
            "{label:>6}: raw in place {ri:6.2} GB/s, raw with copies {rc:6.2} GB/s; raw in place \
             / raw with copies {:.2}x (the floor's send_with / plain), send_with / plain over \
             it {:.2}, send_with / raw in place {:.2} (medians of {rounds} interleaved rounds)",
            median(floor_x),
            median(of_floor),
            median(with_raw)
        );
    }
}
