//! `compare`: the same workloads, written once against `B: Backend`, run on every enabled backend,
//! next to Python's `multiprocessing`, `threading` and `asyncio` doing the same thing in the same
//! run (when `python3` is on the `PATH`; the script is `benches/python/compare.py`).
//!
//! ```text
//! cargo run --release --example compare --features full             # full run, a few minutes
//! cargo run --release --example compare --features full -- --quick  # under a minute
//! ```
//!
//! Progress goes to stderr; the table goes to stdout; a bar chart (one panel per workload, log
//! scale) is written to `target/compare.svg` (`--out PATH` to change). A workload a backend
//! cannot do says `n/a: <why>` in its cell; a workload that fails prints its error in its cell
//! and the run goes on. Each workload runs under a watchdog, so a hang becomes a `failed` cell.
//! Each figure is the best of several runs (3 with `--quick`, 5 in a full run; Python: 1 and 3):
//! the machine may be shared, and the best run is the least disturbed one.
//!
//! Sizes: 10,000 waiting units on threads and tasks, 200 on processes (each is a forked
//! process of ~90 KiB, and 200 keep a full run short; Python's `multiprocessing` column runs 200
//! too). Per-unit figures make the columns comparable.
//!
//! | workload | what it measures |
//! |---|---|
//! | channel 1→1 | one producer unit → the main thread, bounded channel of 1024, `u64` messages |
//! | channel 2→2 | two producer units → two consumer units through one channel |
//! | ping-pong | round trips between the main thread and an echo unit over two channels of 1; the footnote gives each run's share of round trips in which both ran on one CPU, which decides the figure on a small machine (parking backends are fast on one CPU, spinning ones across two) |
//! | Pool::map | a pool of one worker per core mapping a CPU-bound function over many items |
//! | waiting units (time, memory) | N units each parked on its own channel (threads and processes: blocking `spawn` closures; tokio: `spawn_async` tasks): start them all, wake each with a message, join them all; the memory they take while parked (PSS, children included), measured in a fresh copy of the program |
//! | lock contention | 4 units incrementing one shared counter under its lock |
//! | shared dict get/insert | 2 units each alternating `insert` and `get` of `u64` → 32-byte `String` on one shared `Map` (Python: a `Manager().dict()` from 2 processes, a `dict` from 2 threads or 2 tasks); `multiprocessing` runs fewer operations (each is a round trip to the manager), the figure is per operation |
//! | spawn + join | start a unit that returns at once and join it, one after another |

// With no backend enabled the generic code has nobody to run it: say so instead of warning.
#![cfg_attr(
    not(any(feature = "thread", feature = "tokio", all(feature = "process", unix))),
    allow(dead_code)
)]

#[path = "common/mod.rs"]
#[macro_use]
pub(crate) mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DynError, DynResult};
use uniconc::LockError;
use uniconc::prelude::*;

// ---------------------------------------------------------------------------------------------
// Workloads and sizes
// ---------------------------------------------------------------------------------------------

/// The rows of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Workload {
    Chan11,
    Chan22,
    PingPong,
    PoolMap,
    UnitsTime,
    UnitsMemory,
    LockContention,
    DictOps,
    Spawn,
}

impl Workload {
    pub(crate) const ALL: [Workload; 9] = [
        Workload::Chan11,
        Workload::Chan22,
        Workload::PingPong,
        Workload::PoolMap,
        Workload::UnitsTime,
        Workload::UnitsMemory,
        Workload::LockContention,
        Workload::DictOps,
        Workload::Spawn,
    ];

    /// The key shared with `compare.py`.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Workload::Chan11 => "chan_1to1",
            Workload::Chan22 => "chan_2to2",
            Workload::PingPong => "ping_pong",
            Workload::PoolMap => "pool_map",
            Workload::UnitsTime => "units_time",
            Workload::UnitsMemory => "units_memory",
            Workload::LockContention => "lock_contention",
            Workload::DictOps => "dict_ops",
            Workload::Spawn => "spawn",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::Chan11 => "channel 1→1",
            Workload::Chan22 => "channel 2→2",
            Workload::PingPong => "ping-pong latency",
            Workload::PoolMap => "Pool::map, CPU-bound",
            Workload::UnitsTime => "waiting units: time",
            Workload::UnitsMemory => "waiting units: memory",
            Workload::LockContention => "lock contention, 4 units",
            Workload::DictOps => "shared dict get/insert",
            Workload::Spawn => "spawn + join",
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Workload::Chan11 | Workload::Chan22 => "M msg/s",
            Workload::PingPong => "µs/round trip",
            Workload::PoolMap => "ms total",
            Workload::UnitsTime => "µs/unit",
            Workload::UnitsMemory => "KiB/unit",
            Workload::LockContention => "ns/increment",
            Workload::DictOps => "ns/op",
            Workload::Spawn => "µs/unit",
        }
    }

    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Workload::Chan11 | Workload::Chan22)
    }
}

/// Problem sizes; the same ones are handed to `compare.py`.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    /// Messages through each channel workload.
    pub(crate) messages: u64,
    /// Ping-pong round trips.
    pub(crate) round_trips: u64,
    /// Items mapped by the pool.
    pub(crate) pool_items: u64,
    /// Rounds of the CPU-bound function per item.
    pub(crate) pool_work: u64,
    /// Waiting units for threads and tasks.
    pub(crate) units: u64,
    /// Waiting units for processes (each one is a whole process).
    pub(crate) units_process: u64,
    /// Increments per unit in the lock workload.
    pub(crate) lock_iters: u64,
    /// Operations per unit on the shared dict.
    pub(crate) dict_ops: u64,
    /// Operations per process on Python's Manager dict (each a round trip to its server).
    pub(crate) dict_ops_process: u64,
    /// Spawns for threads and tasks.
    pub(crate) spawns: u64,
    /// Spawns for processes.
    pub(crate) spawns_process: u64,
    /// Give up on one workload after this long.
    pub(crate) watchdog: Duration,
    /// Runs of each workload; the best is reported.
    pub(crate) repeats: u32,
    /// Runs of each Python workload (Python is slow: fewer).
    pub(crate) python_repeats: u32,
    /// Run the waiting-units workload in a fresh copy of this program, so that memory freed by
    /// the workloads before it (and kept by the allocator) does not hide what the units take.
    pub(crate) units_in_fresh_process: bool,
}

impl Sizes {
    pub(crate) fn full() -> Self {
        Sizes {
            messages: 1_000_000,
            round_trips: 20_000,
            pool_items: 1_000,
            pool_work: 20_000,
            units: 10_000,
            // A forked process each: 200 keep the run short (a channel counts up to
            // `MAX_PROCESSES`).
            units_process: 200,
            lock_iters: 100_000,
            dict_ops: 200_000,
            dict_ops_process: 5_000,
            spawns: 1_000,
            spawns_process: 200,
            watchdog: Duration::from_secs(300),
            repeats: 5,
            python_repeats: 3,
            units_in_fresh_process: true,
        }
    }

    pub(crate) fn quick() -> Self {
        Sizes {
            messages: 100_000,
            round_trips: 2_000,
            pool_items: 200,
            pool_work: 20_000,
            units: 10_000,
            units_process: 200,
            lock_iters: 50_000,
            dict_ops: 50_000,
            dict_ops_process: 1_000,
            spawns: 200,
            spawns_process: 50,
            watchdog: Duration::from_secs(60),
            repeats: 3,
            python_repeats: 1,
            units_in_fresh_process: true,
        }
    }

    /// Tiny sizes for the test suite.
    #[allow(dead_code)] // used by tests/examples.rs, not by the example itself
    pub(crate) fn tiny() -> Self {
        Sizes {
            messages: 2_000,
            round_trips: 50,
            pool_items: 20,
            pool_work: 1_000,
            units: 50,
            units_process: 10,
            lock_iters: 500,
            dict_ops: 500,
            dict_ops_process: 50,
            spawns: 10,
            spawns_process: 5,
            watchdog: Duration::from_secs(120),
            repeats: 1,
            python_repeats: 1,
            units_in_fresh_process: false, // the test binary is not this program
        }
    }

    /// The sizes for a backend whose every operation is a round trip to a server (`B::REMOTE`:
    /// Redis): the same workloads with fewer operations, so that a run stays short. The figures
    /// are per operation (per message, round trip, increment, unit), so they compare all the
    /// same.
    fn remote(&self) -> Self {
        Sizes {
            messages: (self.messages / 50).max(100),
            round_trips: (self.round_trips / 10).max(20),
            units_process: (self.units_process / 4).max(5),
            lock_iters: (self.lock_iters / 50).max(100),
            dict_ops: (self.dict_ops / 50).max(100),
            spawns_process: (self.spawns_process / 4).max(5),
            ..self.clone()
        }
    }

    /// `isolated`: `B::ISOLATED`, each unit is a process of its own (fewer of them).
    fn units_for(&self, isolated: bool) -> u64 {
        if isolated {
            self.units_process
        } else {
            self.units
        }
    }

    /// `isolated`: `B::ISOLATED`, each unit is a process of its own (fewer of them).
    fn spawns_for(&self, isolated: bool) -> u64 {
        if isolated {
            self.spawns_process
        } else {
            self.spawns
        }
    }

    /// `key=value` arguments for `compare.py`.
    fn python_args(&self) -> Vec<String> {
        vec![
            format!("messages={}", self.messages),
            format!("round_trips={}", self.round_trips),
            format!("pool_items={}", self.pool_items),
            format!("pool_work={}", self.pool_work),
            format!("units={}", self.units),
            format!("units_process={}", self.units_process),
            format!("lock_iters={}", self.lock_iters),
            format!("dict_ops={}", self.dict_ops),
            format!("dict_ops_process={}", self.dict_ops_process),
            format!("spawns={}", self.spawns),
            format!("spawns_process={}", self.spawns_process),
            format!("workers={}", workers()),
            format!("repeats={}", self.python_repeats),
        ]
    }
}

/// Units that run at once in `Pool::map`: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU-bound function of `Pool::map` (an LCG with a xorshift; `compare.py` computes the same
/// numbers).
pub(crate) fn cpu_work(x: u64, rounds: u64) -> u64 {
    let mut h = x;
    for _ in 0..rounds {
        h = h
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        h ^= h >> 33;
    }
    h
}

// ---------------------------------------------------------------------------------------------
// The workloads, once, against `B: Backend`
// ---------------------------------------------------------------------------------------------

fn check(ok: bool, what: impl FnOnce() -> String) -> DynResult<()> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// One producer unit sends `n` messages; the main thread receives them. M msg/s.
fn chan_1to1<B: Backend>(n: u64) -> DynResult<f64> {
    let start = Instant::now();
    let (tx, rx) = B::channel::<u64>(1024)?;
    let producer = B::spawn(move || -> Result<(), String> {
        for i in 0..n {
            tx.send(i).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv()?);
    }
    producer.join()??;
    let t = start.elapsed();
    check(sum == n * n.saturating_sub(1) / 2, || {
        format!("wrong sum {sum}")
    })?;
    Ok(n as f64 / t.as_secs_f64() / 1e6)
}

/// Two producer units and two consumer units share one channel. M msg/s.
fn chan_2to2<B: Backend>(n: u64) -> DynResult<f64> {
    let start = Instant::now();
    let (tx, rx) = B::channel::<u64>(1024)?;
    let consumers = (0..2)
        .map(|_| {
            let rx = rx.clone();
            B::spawn(move || {
                rx.iter()
                    .fold((0u64, 0u64), |(c, s), x| (c + 1, s.wrapping_add(x)))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop(rx);
    let half = n / 2;
    let producers = (0..2u64)
        .map(|p| {
            let tx = tx.clone();
            B::spawn(move || -> Result<(), String> {
                for i in p * half..(p + 1) * half {
                    tx.send(i).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for p in producers {
        p.join()??;
    }
    // Every message is sent: close (dropping the last sender would do too).
    tx.close();
    let (mut count, mut sum) = (0u64, 0u64);
    for c in consumers {
        let (k, s) = c.join()?;
        count += k;
        sum = sum.wrapping_add(s);
    }
    let t = start.elapsed();
    let total = 2 * half;
    check(
        count == total && sum == total * total.saturating_sub(1) / 2,
        || format!("received {count} messages summing to {sum}, sent {total}"),
    )?;
    Ok(total as f64 / t.as_secs_f64() / 1e6)
}

/// The CPU the calling thread runs on (Linux only), for the ping-pong placement note.
fn current_cpu() -> Option<u16> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `sched_getcpu` takes no arguments and only reports the calling thread's CPU
        // (or -1 with errno set, which `try_from` turns into `None`).
        let cpu = unsafe { libc::sched_getcpu() };
        u16::try_from(cpu).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// One ping-pong run: µs per round trip, and the share of round trips in which the echo unit
/// ran on the CPU the main thread had just sent from (`None` where the CPU cannot be read).
///
/// The share is reported because it decides the figure on a small machine: a backend that
/// parks between messages (tokio's blocking calls, like tokio's own `blocking_recv`) hands
/// over in a few µs when both units share a CPU and pays a cross-CPU wake-up (an IPI to an
/// idle vCPU: ~8 µs per hop on the 2-vCPU VM) when they do not; a backend that spins first
/// (thread) is the other way round. The kernel picks the placement, and it changes between
/// runs. See `backend-async/README.md` ("Ping-pong and CPU placement").
struct PingPong {
    us_per_round_trip: f64,
    same_cpu: Option<f64>,
}

/// Round trips between the main thread and an echo unit.
fn ping_pong<B: Backend>(rounds: u64) -> DynResult<PingPong> {
    let (ping_tx, ping_rx) = B::channel::<u64>(1)?;
    let (pong_tx, pong_rx) = B::channel::<u64>(1)?;
    let echo = B::spawn(move || {
        // The CPU each message was echoed on (the warm-up's first); `u16::MAX`: unknown.
        let mut cpus = Vec::with_capacity(rounds as usize + 1);
        for x in ping_rx.iter() {
            cpus.push(current_cpu().unwrap_or(u16::MAX));
            if pong_tx.send(x).is_err() {
                break;
            }
        }
        cpus
    })?;
    // One round trip first, so the unit's start-up is not counted.
    ping_tx.send(u64::MAX)?;
    check(pong_rx.recv()? == u64::MAX, || {
        "echo returned another value".into()
    })?;
    let mut sent_from = Vec::with_capacity(rounds as usize);
    let start = Instant::now();
    for i in 0..rounds {
        // `sched_getcpu` is a vDSO call (tens of ns): small next to a round trip.
        sent_from.push(current_cpu().unwrap_or(u16::MAX - 1));
        ping_tx.send(i)?;
        let back = pong_rx.recv()?;
        check(back == i, || format!("sent {i}, got {back} back"))?;
    }
    let t = start.elapsed();
    ping_tx.close(); // ends the echo unit's loop
    let echoed_on = echo.join()?;
    check(echoed_on.len() as u64 == rounds + 1, || {
        format!("echo unit saw {} messages", echoed_on.len())
    })?;
    let same_cpu = current_cpu().map(|_| {
        let same = sent_from
            .iter()
            .zip(&echoed_on[1..])
            .filter(|(a, b)| a == b)
            .count();
        same as f64 / rounds.max(1) as f64
    });
    Ok(PingPong {
        us_per_round_trip: t.as_secs_f64() * 1e6 / rounds as f64,
        same_cpu,
    })
}

/// `Pool::map` of [`cpu_work`] over `items` items on one worker per core. ms in total (the
/// pool is started before the clock starts).
fn pool_map<B: Backend>(items: u64, work: u64) -> DynResult<f64> {
    let pool = B::pool(workers())?;
    let start = Instant::now();
    let out = match pool.map(move |x: u64| cpu_work(x, work), 0..items) {
        Err(uniconc::PoolError::Spawn(e)) if e.kind() == uniconc::ErrorKind::Unsupported => {
            return Err(NotApplicable("closures refused: named tasks only".into()).into());
        }
        r => r?,
    };
    let t = start.elapsed();
    check(out.len() as u64 == items, || {
        format!("{} results for {items} items", out.len())
    })?;
    for (x, y) in [(0, out.first()), (items - 1, out.last())] {
        check(y == Some(&cpu_work(x, work)), || {
            format!("wrong result for item {x}")
        })?;
    }
    pool.close();
    pool.join()?;
    Ok(t.as_secs_f64() * 1e3)
}

/// `n` units, each parked on its own channel. A unit is what the backend calls one: a blocking
/// `spawn` closure (a thread, a process) parked in `recv`, and on tokio a `spawn_async` task
/// parked in `recv_async` (tokio's `spawn` is `spawn_blocking`, whose pool stops at 512 threads,
/// so 10,000 parked closures could never all start there). Returns µs per unit (start all, wake
/// each, join all; the memory reading is not timed) and KiB per parked unit.
fn waiting_units<B: Backend>(n: u64, watchdog: Duration) -> DynResult<(f64, Option<f64>)> {
    let as_tasks = B::ASYNC_TASKS;
    let before = memory::pss_kib(std::process::id());
    let (ready_tx, ready_rx) = B::unbounded::<u32>()?;
    let start = Instant::now();
    let mut senders = Vec::with_capacity(n as usize);
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (tx, rx) = B::channel::<u64>(1)?;
        let ready = ready_tx.clone();
        // Each unit says where it lives (a pid) so the parent can measure it, then parks; it
        // returns what it was woken with, or why it could not.
        let handle = if as_tasks {
            B::spawn_async(async move {
                let sent = ready.send_async(std::process::id()).await;
                sent.map_err(|e| format!("could not report ready: {e}"))?;
                drop(ready);
                rx.recv_async().await.map_err(|e| format!("woken by: {e}"))
            })
        } else {
            B::spawn(move || {
                let sent = ready.send(std::process::id());
                sent.map_err(|e| format!("could not report ready: {e}"))?;
                drop(ready);
                rx.recv().map_err(|e| format!("woken by: {e}"))
            })
        };
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => return Err(format!("unit {i} of {n} could not start: {e}").into()),
        }
        senders.push((i, tx));
    }
    drop(ready_tx);
    let mut pids = HashSet::new();
    let deadline = Instant::now() + watchdog / 2;
    for k in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = ready_rx.recv_timeout(left).map(|pid| pids.insert(pid)) {
            // The units that already finished gave up on their own: ask them why. Then close
            // every parked unit's channel so none waits forever (whoever else holds a sender).
            let (gave_up, parked): (Vec<_>, Vec<_>) =
                handles.into_iter().partition(|h| h.is_finished());
            for (_, tx) in &senders {
                tx.close();
            }
            drop(parked);
            let why = gave_up
                .into_iter()
                .find_map(|h| match h.join() {
                    Ok(Ok(_)) => None,
                    Ok(Err(why)) => Some(why),
                    Err(e) => Some(e.to_string()),
                })
                .map_or_else(String::new, |e| format!(" (a unit: {e})"));
            return Err(format!("only {k} of {n} units started: {e}{why}").into());
        }
    }
    let spawned = start.elapsed();
    let memory = before.and_then(|before| {
        let me = std::process::id();
        let mut total = memory::pss_kib(me)? as f64 - before as f64;
        for &pid in pids.iter().filter(|&&p| p != me) {
            total += memory::pss_kib(pid)? as f64;
        }
        // Below a page per unit the delta is allocator noise and can even be negative.
        Some(total.max(0.0) / n as f64)
    });
    let wake = Instant::now();
    for (i, tx) in &senders {
        tx.send(*i)?;
    }
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.join()??);
    }
    let t = spawned + wake.elapsed();
    check(sum == n * n.saturating_sub(1) / 2, || {
        format!("wrong sum {sum}")
    })?;
    Ok((t.as_secs_f64() * 1e6 / n as f64, memory))
}

/// 4 units each add `iters` to one shared counter under its lock. ns per increment.
fn lock_contention<B: Backend>(iters: u64) -> DynResult<f64> {
    const UNITS: u64 = 4;
    let counter = B::value(0u64)?;
    let go = B::barrier(UNITS as usize + 1)?;
    let handles = (0..UNITS)
        .map(|_| {
            let (counter, go) = (counter.clone(), go.clone());
            B::spawn(move || {
                go.wait();
                for _ in 0..iters {
                    *counter.lock().unwrap_or_else(LockError::into_guard) += 1;
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The clock starts before the barrier opens (no unit can start before we arrive): started
    // after it, a unit could finish before the clock started.
    let start = Instant::now();
    go.wait();
    for h in handles {
        h.join()?;
    }
    let t = start.elapsed();
    let total = counter.load();
    check(total == UNITS * iters, || {
        format!("counter is {total}, expected {}", UNITS * iters)
    })?;
    Ok(t.as_secs_f64() * 1e9 / total as f64)
}

/// 2 units each do `ops` operations on one shared `Map<u64, String>`, alternating `insert` of
/// a 32-byte value and `get`, over 512 keys of their own. ns per operation.
fn dict_ops<B: Backend>(ops: u64) -> DynResult<f64> {
    const UNITS: u64 = 2;
    const KEYS: u64 = 512;
    let map = B::map::<u64, String>()?;
    let go = B::barrier(UNITS as usize + 1)?;
    let handles = (0..UNITS)
        .map(|unit| {
            let (map, go) = (map.clone(), go.clone());
            B::spawn(move || -> Result<u64, String> {
                let value = "v".repeat(32);
                let mut found = 0;
                go.wait();
                for i in 0..ops / 2 {
                    let k = (unit << 32) | (i % KEYS);
                    map.insert(k, value.clone()).map_err(|e| e.to_string())?;
                    found += u64::from(map.get(&k).map_err(|e| e.to_string())?.is_some());
                }
                Ok(found)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The clock starts before the barrier opens, as in `lock_contention`.
    let start = Instant::now();
    go.wait();
    let mut found = 0;
    for h in handles {
        found += h.join()??;
    }
    let t = start.elapsed();
    let pairs = UNITS * (ops / 2);
    check(found == pairs, || {
        format!("{found} of {pairs} gets found their insert")
    })?;
    let entries = map.len() as u64;
    let want = UNITS * KEYS.min(ops / 2);
    check(entries == want, || {
        format!("{entries} of {want} entries seen")
    })?;
    Ok(t.as_secs_f64() * 1e9 / (2 * pairs) as f64)
}

/// Spawn a unit that returns at once and join it, `n` times. µs per unit.
fn spawn_join<B: Backend>(n: u64) -> DynResult<f64> {
    let start = Instant::now();
    for i in 0..n {
        let back = B::spawn(move || i)?.join()?;
        check(back == i, || format!("unit {i} returned {back}"))?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

// ---------------------------------------------------------------------------------------------
// Cells, columns, running
// ---------------------------------------------------------------------------------------------

/// A workload the backend refuses (an `Unsupported` error): its cell says `n/a` and why.
#[derive(Debug)]
pub(crate) struct NotApplicable(String);

impl std::fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotApplicable {}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Value(f64),
    NotApplicable(String),
    Failed(String),
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Value(v) => fmt_num(*v),
            Cell::NotApplicable(why) => format!("n/a: {why}"),
            Cell::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// One column of the table: a uniconc backend or a Python module.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) cells: BTreeMap<Workload, Cell>,
    /// Extra words for the footnotes (e.g. how many units it ran).
    pub(crate) notes: Vec<String>,
}

/// Runs `f` on its own thread; if it does not finish within `limit`, gives up on it (the thread
/// is left behind, blocked) and reports a failure instead of hanging the whole run.
fn watchdog<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> DynResult<T> + Send + 'static,
) -> DynResult<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("compare-workload".into())
        .spawn(move || {
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                    Err(format!("panicked: {}", uniconc_panic_message(&*p)).into())
                });
            let _ = tx.send(out);
        })?;
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => Err(format!("no result after {} s (watchdog)", limit.as_secs()).into()),
    }
}

fn uniconc_panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Runs every workload on backend `B`, printing progress to stderr.
pub(crate) fn run_backend<B: Backend>(sizes: &Sizes) -> DynResult<Column> {
    let name = B::NAME;
    let mut col = Column {
        name: format!("uniconc {name}"),
        cells: BTreeMap::new(),
        notes: vec![],
    };
    let s = if B::REMOTE {
        sizes.remote()
    } else {
        sizes.clone()
    };
    let (limit, repeats) = (s.watchdog, s.repeats.max(1));
    let mut record = |w: Workload, cell: Cell| {
        eprintln!("[{name:>7}] {:<26} {} {}", w.label(), cell.show(), w.unit());
        col.cells.insert(w, cell);
    };
    // The best of `repeats` runs (the machine is shared: the best run is the least disturbed);
    // any failed run fails the cell.
    let best = |w: Workload, f: &dyn Fn() -> DynResult<f64>| -> Cell {
        let mut best: Option<f64> = None;
        for _ in 0..repeats {
            match f() {
                Ok(v) => {
                    best = Some(match best {
                        Some(b) if w.higher_is_better() => b.max(v),
                        Some(b) => b.min(v),
                        None => v,
                    })
                }
                // A workload the backend refuses is not applicable to it, not failed.
                Err(e) if e.downcast_ref::<NotApplicable>().is_some() => {
                    return Cell::NotApplicable(e.to_string());
                }
                Err(e) => return Cell::Failed(e.to_string()),
            }
        }
        best.map_or_else(|| Cell::Failed("no run".into()), Cell::Value)
    };

    let n = s.messages;
    record(
        Workload::Chan11,
        best(Workload::Chan11, &|| {
            watchdog(limit, move || chan_1to1::<B>(n))
        }),
    );
    record(
        Workload::Chan22,
        best(Workload::Chan22, &|| {
            watchdog(limit, move || chan_2to2::<B>(n))
        }),
    );
    // Ping-pong: the best of `repeats` like the others, plus where its units ran (a note).
    let n = s.round_trips;
    let mut runs = Vec::new();
    let mut failed = None;
    for _ in 0..repeats {
        match watchdog(limit, move || ping_pong::<B>(n)) {
            Ok(r) => runs.push(r),
            Err(e) => {
                failed = Some(Cell::Failed(e.to_string()));
                break;
            }
        }
    }
    let fastest = runs
        .iter()
        .min_by(|a, b| a.us_per_round_trip.total_cmp(&b.us_per_round_trip));
    let placement = runs
        .iter()
        .map(|r| {
            let share = r
                .same_cpu
                .map_or_else(|| "?".to_owned(), |x| format!("{:.0}%", x * 100.0));
            format!("{} µs {share}", fmt_num(r.us_per_round_trip))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let ping_note = format!("ping-pong runs (µs, share on one CPU): {placement}");
    record(
        Workload::PingPong,
        failed.unwrap_or_else(|| {
            fastest.map_or_else(
                || Cell::Failed("no run".into()),
                |r| Cell::Value(r.us_per_round_trip),
            )
        }),
    );
    eprintln!("[{name:>7}] {ping_note}");
    let (items, work) = (s.pool_items, s.pool_work);
    let pool = best(Workload::PoolMap, &|| {
        watchdog(limit, move || pool_map::<B>(items, work))
    });
    record(Workload::PoolMap, pool);

    let units = s.units_for(B::ISOLATED);
    let mut units_result: DynResult<(f64, Option<f64>)> = Err("no run".into());
    for _ in 0..repeats {
        let run = if s.units_in_fresh_process {
            units_in_fresh_process(name, units, limit)
        } else {
            watchdog(limit, move || waiting_units::<B>(units, limit))
        };
        units_result = match (run, units_result) {
            (Err(e), _) => Err(e),
            (Ok(r), Err(_)) => Ok(r),
            (Ok((t, m)), Ok((bt, bm))) => Ok((t.min(bt), m.zip(bm).map(|(a, b)| a.min(b)).or(m))),
        };
        if units_result.is_err() {
            break;
        }
    }
    match units_result {
        Ok((t, mem)) => {
            record(Workload::UnitsTime, Cell::Value(t));
            let na = || Cell::NotApplicable("needs Linux /proc".into());
            record(Workload::UnitsMemory, mem.map_or_else(na, Cell::Value));
        }
        Err(e) => {
            record(Workload::UnitsTime, Cell::Failed(e.to_string()));
            record(
                Workload::UnitsMemory,
                Cell::Failed("see the time row".into()),
            );
        }
    }

    let iters = s.lock_iters;
    let lock = best(Workload::LockContention, &|| {
        watchdog(limit, move || lock_contention::<B>(iters))
    });
    record(Workload::LockContention, lock);
    let ops = s.dict_ops;
    let dict = best(Workload::DictOps, &|| {
        watchdog(limit, move || dict_ops::<B>(ops))
    });
    record(Workload::DictOps, dict);
    let spawns = s.spawns_for(B::ISOLATED);
    record(
        Workload::Spawn,
        best(Workload::Spawn, &|| {
            watchdog(limit, move || spawn_join::<B>(spawns))
        }),
    );
    col.notes.push(format!(
        "{units} waiting units, {spawns} spawns, best of {repeats}"
    ));
    if B::REMOTE {
        col.notes.push(format!(
            "every operation a round trip to the server, so fewer of them: {} messages, {} \
             round trips, {iters} increments per unit, {ops} dict operations per unit",
            s.messages, s.round_trips
        ));
    }
    col.notes.push(ping_note);
    Ok(col)
}

/// The hidden first argument that makes this program run only the waiting-units workload.
const UNITS_WORKER: &str = "--waiting-units-worker";

/// Runs [`waiting_units`] in a fresh copy of this program (`UNITS_WORKER backend n secs`),
/// which prints `µs-per-unit TAB KiB-per-unit-or-none`.
fn units_in_fresh_process(backend: &str, n: u64, limit: Duration) -> DynResult<(f64, Option<f64>)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    // The fresh copy uses the Redis column's server too (a private one has a port of its own).
    if let Some(url) = REDIS_URL.get() {
        cmd.env(REDIS_URL_ENV, url);
    }
    let mut child = cmd
        .args([
            UNITS_WORKER,
            backend,
            &n.to_string(),
            &limit.as_secs().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no result after {} s (watchdog)", limit.as_secs()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parse = || -> Option<(f64, Option<f64>)> {
        let (t, m) = text.trim().split_once('\t')?;
        Some((t.parse().ok()?, m.parse().ok()))
    };
    match parse() {
        Some(v) if out.status.success() => Ok(v),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            Err(format!("{} ({})", last.trim(), out.status).into())
        }
    }
}

/// The body of the worker started by [`units_in_fresh_process`].
fn units_worker(args: &[String]) -> DynResult<()> {
    let [backend, n, secs] = args else {
        return Err(format!("{UNITS_WORKER} BACKEND N SECONDS").into());
    };
    let (n, limit): (u64, Duration) = (n.parse()?, Duration::from_secs(secs.parse()?));
    let measured: DynResult<(f64, Option<f64>)> =
        on_backend!(backend.as_str(), waiting_units(n, limit));
    let (t, mem) = measured?;
    println!(
        "{t}\t{}",
        mem.map_or_else(|| "none".to_owned(), |m| m.to_string())
    );
    Ok(())
}

/// Runs `compare.py` with the same sizes; its lines are `key<TAB>column<TAB>value-or-n/a`.
fn run_python(sizes: &Sizes, script: &Path) -> DynResult<Vec<Column>> {
    let mut child = Command::new("python3")
        .arg(script)
        .args(sizes.python_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not start python3: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout));
    // The script has its own per-workload watchdogs; this one is the last resort.
    let limit = sizes.watchdog * (Workload::ALL.len() as u32 * 3);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                eprintln!("compare.py exited with {status}; keeping what it printed");
            }
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "compare.py ran past {} s; killed it, keeping what it printed",
                limit.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = reader.join().map_err(|_| "reader thread panicked")??;
    Ok(parse_python(&text))
}

/// The columns of `compare.py`'s output; a cell it did not print is a failure.
pub(crate) fn parse_python(text: &str) -> Vec<Column> {
    let mut columns: Vec<Column> = ["multiprocessing", "threading", "asyncio"]
        .iter()
        .map(|n| Column {
            name: format!("python {n}"),
            cells: BTreeMap::new(),
            notes: vec![],
        })
        .collect();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(key), Some(module), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(col) = columns
            .iter_mut()
            .find(|c| c.name == format!("python {module}"))
        else {
            continue;
        };
        if key == "note" {
            col.notes.push(value.to_owned());
            continue;
        }
        let Some(w) = Workload::ALL.into_iter().find(|w| w.key() == key) else {
            continue;
        };
        let cell = if let Some(why) = value.strip_prefix("n/a: ") {
            Cell::NotApplicable(why.to_owned())
        } else if let Some(why) = value.strip_prefix("failed: ") {
            Cell::Failed(why.to_owned())
        } else {
            match value.parse() {
                Ok(v) => Cell::Value(v),
                Err(e) => Cell::Failed(format!("unreadable value {value:?}: {e}")),
            }
        };
        col.cells.insert(w, cell);
    }
    for col in &mut columns {
        for w in Workload::ALL {
            col.cells
                .entry(w)
                .or_insert_with(|| Cell::Failed("no result from compare.py".into()));
        }
    }
    columns
}

// ---------------------------------------------------------------------------------------------
// The table and the ratios
// ---------------------------------------------------------------------------------------------

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The table: a row per workload, a column per backend (and Python module).
pub(crate) fn table(columns: &[Column]) -> String {
    let mut out = String::new();
    let row_label = |wl: Workload| {
        let arrow = if wl.higher_is_better() { "↑" } else { "↓" };
        format!("{} ({}) {arrow}", wl.label(), wl.unit())
    };
    let first = Workload::ALL
        .into_iter()
        .map(|w| row_label(w).chars().count())
        .max()
        .unwrap_or(30);
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            c.cells
                .values()
                .map(|v| v.show().chars().count())
                .chain([c.name.len()])
                .max()
                .unwrap_or(8)
        })
        .collect();
    let _ = write!(out, "{:<first$}", "workload (unit)");
    for (c, w) in columns.iter().zip(&widths) {
        let _ = write!(out, " | {:>w$}", c.name);
    }
    out.push('\n');
    let _ = write!(out, "{}", "-".repeat(first));
    for w in &widths {
        let _ = write!(out, "-|-{}", "-".repeat(*w));
    }
    out.push('\n');
    for wl in Workload::ALL {
        let _ = write!(out, "{:<first$}", row_label(wl));
        for (c, w) in columns.iter().zip(&widths) {
            let cell = c.cells.get(&wl).map_or_else(|| "-".to_owned(), Cell::show);
            let _ = write!(out, " | {cell:>w$}");
        }
        out.push('\n');
    }
    out
}

/// How much better `ours` is than `theirs` for `w`: > 1 means ours is faster (or leaner).
fn advantage(w: Workload, ours: f64, theirs: f64) -> f64 {
    if w.higher_is_better() {
        ours / theirs
    } else {
        theirs / ours
    }
}

/// The ratios: every backend against the thread backend, and each against its Python peer.
pub(crate) fn ratios(columns: &[Column]) -> String {
    let mut out = String::new();
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let pairs = [
        ("uniconc process", "python multiprocessing"),
        ("uniconc thread", "python threading"),
        ("uniconc tokio", "python asyncio"),
        ("uniconc process", "uniconc thread"),
        ("uniconc tokio", "uniconc thread"),
    ];
    for (a, b) in pairs {
        let (Some(ca), Some(cb)) = (find(a), find(b)) else {
            continue;
        };
        let _ = writeln!(out, "{a} vs {b} (×: how many times faster/leaner {a} is):");
        for w in Workload::ALL {
            let r = match (
                ca.cells.get(&w).and_then(Cell::value),
                cb.cells.get(&w).and_then(Cell::value),
            ) {
                (Some(x), Some(y)) if x > 0.0 && y > 0.0 => {
                    format!("{}×", fmt_num(advantage(w, x, y)))
                }
                _ => "-".to_owned(),
            };
            let _ = writeln!(out, "  {:<26} {r:>10}", w.label());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------------------------

fn column_color(name: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match name {
        "uniconc process" => RGBColor(0xc0, 0x39, 0x2b),
        "uniconc thread" => RGBColor(0x29, 0x80, 0xb9),
        "uniconc tokio" => RGBColor(0x27, 0xae, 0x60),
        "uniconc redis" => RGBColor(0x8e, 0x44, 0xad),
        "python multiprocessing" => RGBColor(0xf1, 0xa9, 0xa0),
        "python threading" => RGBColor(0xa9, 0xcc, 0xe3),
        "python asyncio" => RGBColor(0xa9, 0xdf, 0xbf),
        _ => RGBColor(0x7f, 0x8c, 0x8d),
    }
}

/// Writes an SVG bar chart: one panel per workload, one bar per column, log scale.
pub(crate) fn chart(columns: &[Column], path: &Path, subtitle: &str) -> DynResult<()> {
    use plotters::prelude::*;

    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let (cols, rows) = (2usize, Workload::ALL.len().div_ceil(2));
    let root = SVGBackend::new(path, (1200, 330 * rows as u32 + 70)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(
            &format!("uniconc compare — {subtitle} (y axes: log scale)"),
            ("sans-serif", 22),
        )
        .map_err(plot_err)?;
    let names: Vec<String> = columns
        .iter()
        .map(|c| c.name.replace("uniconc ", "").replace("python ", "py "))
        .collect();
    for (wl, area) in Workload::ALL
        .into_iter()
        .zip(root.split_evenly((rows, cols)))
    {
        let values: Vec<Option<f64>> = columns
            .iter()
            .map(|c| c.cells.get(&wl).and_then(Cell::value).filter(|v| *v > 0.0))
            .collect();
        let present = values.iter().flatten().copied();
        let (lo, hi) = present.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let caption = format!(
            "{} ({}, {} is better)",
            wl.label(),
            wl.unit(),
            if wl.higher_is_better() {
                "higher"
            } else {
                "lower"
            }
        );
        if lo > hi {
            area.draw(&Text::new(
                format!("{caption}: no values"),
                (20, 20),
                ("sans-serif", 16),
            ))
            .map_err(plot_err)?;
            continue;
        }
        let (y0, y1) = (lo / 4.0, hi * 4.0);
        let mut ch = ChartBuilder::on(&area)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(60)
            // `a..b` segmented has a segment per value of `a..=b`: one per column.
            .build_cartesian_2d(
                (0u32..columns.len() as u32 - 1).into_segmented(),
                (y0..y1).log_scale(),
            )
            .map_err(plot_err)?;
        let labels = names.clone();
        ch.configure_mesh()
            .disable_x_mesh()
            .x_labels(columns.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_labels(6)
            .y_label_formatter(&|y| fmt_num(*y))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_err)?;
        for (i, (v, c)) in values.iter().zip(columns).enumerate() {
            let i = i as u32;
            match v {
                Some(v) => {
                    let color = column_color(&c.name);
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), y0),
                            (SegmentValue::Exact(i + 1), *v),
                        ],
                        color.filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    ch.draw_series(std::iter::once(bar)).map_err(plot_err)?;
                    ch.draw_series(std::iter::once(Text::new(
                        fmt_num(*v),
                        (SegmentValue::CenterOf(i), *v),
                        ("sans-serif", 12),
                    )))
                    .map_err(plot_err)?;
                }
                None => {
                    ch.draw_series(std::iter::once(Text::new(
                        "n/a",
                        (SegmentValue::CenterOf(i), y0 * 2.0),
                        ("sans-serif", 12),
                    )))
                    .map_err(plot_err)?;
                }
            }
        }
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err(e: impl std::fmt::Display) -> DynError {
    format!("plotting: {e}").into()
}

// ---------------------------------------------------------------------------------------------
// The machine, and main
// ---------------------------------------------------------------------------------------------

/// `nproc` and the CPU model.
pub(crate) fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{} cores ({model}), {} {}",
        workers(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Every enabled backend (or only `only`), then Python unless `python` is `None`; returns the
/// columns in table order.
pub(crate) fn run_all(sizes: &Sizes, only: Option<&str>, python: Option<&Path>) -> Vec<Column> {
    let mut columns = Vec::new();
    let backends: Vec<String> = match only {
        Some(b) => vec![b.to_owned()],
        None => ["process", "thread", "tokio", "redis"]
            .into_iter()
            .filter(|b| common::enabled_backends().contains(b))
            .map(str::to_owned)
            .collect(),
    };
    // The Redis column's server (a private one is stopped when this goes).
    #[cfg(all(feature = "redis", unix))]
    let mut _redis_server = None;
    for b in &backends {
        eprintln!("== uniconc {b}");
        #[cfg(all(feature = "redis", unix))]
        if b == "redis" {
            match redis_server() {
                Ok(server) => _redis_server = server,
                Err(why) => {
                    eprintln!("uniconc redis: {why}");
                    columns.push(Column {
                        name: "uniconc redis".into(),
                        cells: Workload::ALL
                            .into_iter()
                            .map(|w| (w, Cell::NotApplicable(why.clone())))
                            .collect(),
                        notes: vec![why],
                    });
                    continue;
                }
            }
        }
        let col: DynResult<Column> = on_backend!(b.as_str(), run_backend(sizes));
        match col {
            Ok(c) => columns.push(c),
            Err(e) => eprintln!("uniconc {b}: {e}"),
        }
    }
    if let Some(script) = python {
        eprintln!("== python ({})", script.display());
        match run_python(sizes, script) {
            Ok(cols) => columns.extend(cols),
            Err(e) => eprintln!("python: {e} (no Python column)"),
        }
    }
    columns
}

/// The URL of the Redis column's private server, for the programs this one starts.
static REDIS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The variable that names the Redis server (`uniconc::redis::URL_ENV`).
const REDIS_URL_ENV: &str = "UNICONC_REDIS_URL";

/// A server for the Redis column: the one `UNICONC_REDIS_URL` names, if it answers; else a
/// private `redis-server` on a free port of 127.0.0.1 (returned: it stops when dropped), if
/// `redis-server` is on the `PATH`. `Err(why)` when there is neither.
#[cfg(all(feature = "redis", unix))]
fn redis_server() -> Result<Option<uniconc::redis::testing::RedisServer>, String> {
    if let Ok(url) = std::env::var(uniconc::redis::URL_ENV) {
        // Creating a channel is a round trip: the server answers, or the column says why not.
        return uniconc::redis::connect(&url)
            .and_then(|c| c.channel::<u8>(1).map(drop))
            .map(|()| None)
            .map_err(|e| {
                format!(
                    "the server at {url} ({}) does not answer: {e}",
                    uniconc::redis::URL_ENV
                )
            });
    }
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return Err(format!(
            "no Redis server: set {} or put redis-server on the PATH",
            uniconc::redis::URL_ENV
        ));
    }
    let server = std::panic::catch_unwind(uniconc::redis::testing::RedisServer::start)
        .map_err(|p| format!("redis-server did not start: {}", uniconc_panic_message(&*p)))?;
    uniconc::redis::set_default_url(&server.url())
        .map_err(|e| format!("the private redis-server: {e}"))?;
    let _ = REDIS_URL.set(server.url());
    eprintln!("uniconc redis: a private redis-server at {}", server.url());
    Ok(Some(server))
}

fn default_chart_path() -> PathBuf {
    // target/<profile>/examples/compare -> target/compare.svg
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("compare.svg")))
        .filter(|p| {
            p.parent()
                .is_some_and(|d| d.ends_with("target") || d.join("CACHEDIR.TAG").exists())
        })
        .unwrap_or_else(|| PathBuf::from("target/compare.svg"))
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(UNITS_WORKER) {
        if let Err(e) = units_worker(&argv[1..]) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    common::main_with(
        "compare: the same workloads on every backend, and Python's",
        |args| {
            let sizes = if args.quick {
                Sizes::quick()
            } else {
                Sizes::full()
            };
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/compare.py");
            let python = if args.no_python {
                None
            } else if !python_available() {
                eprintln!("python3 not found: no Python column");
                None
            } else if !script.exists() {
                eprintln!("{} not found: no Python column", script.display());
                None
            } else {
                Some(script.as_path())
            };
            let mode = if args.quick { "quick" } else { "full" };
            if cfg!(debug_assertions) {
                eprintln!("note: a debug build; run with --release for figures worth comparing");
            }
            let started = Instant::now();
            let columns = run_all(&sizes, args.backend.as_deref(), python);
            let mut report = format!("uniconc compare ({mode} run) on {}\n\n", machine());
            report += &table(&columns);
            report +=
                "\n↑ higher is better, ↓ lower is better. Each figure is the best of its runs:\n";
            for c in &columns {
                report += &format!("  {}: {}\n", c.name, c.notes.join("; "));
            }
            report += PING_PONG_NOTE;
            report += "\n";
            report += &ratios(&columns);
            println!("{report}");
            let path = args
                .out
                .as_ref()
                .map_or_else(default_chart_path, PathBuf::from);
            match chart(&columns, &path, &format!("{mode} run, {}", machine())) {
                Ok(()) => eprintln!("chart written to {}", path.display()),
                Err(e) => eprintln!("chart not written: {e}"),
            }
            eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        },
    );
}

/// The footnote that explains the ping-pong's per-run CPU shares, under the table.
const PING_PONG_NOTE: &str = "
Ping-pong: the share after each run is the part of its round trips in which the echo unit ran
on the CPU the main thread had just sent from, and it decides the figure on a small machine. A
backend that parks between messages (tokio's blocking calls) hands over in a few µs on one CPU
and pays a cross-CPU wake-up on two (~8 µs a hop on a 2-vCPU VM); one that spins first (thread,
process) is fast across two CPUs and slow on one. The kernel picks the placement, and it can
change from run to run.
";

/// Memory of a process, from Linux's `/proc`.
mod memory {
    /// Proportional set size of `pid` in KiB (shared pages split among the processes sharing
    /// them, so summing over processes counts each page once), or its resident set size if
    /// `smaps_rollup` is missing; `None` off Linux.
    pub(crate) fn pss_kib(pid: u32) -> Option<u64> {
        let field = |file: &str, name: &str| -> Option<u64> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
            let line = text.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        field("smaps_rollup", "Pss:").or_else(|| field("status", "VmRSS:"))
    }
}
