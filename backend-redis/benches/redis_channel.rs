//! The Redis backend against Python's remote sharing (a `BaseManager` serving a queue over TCP),
//! same machine, same run, on loopback; prints figures and ratios.
//!
//! - channel 1→1 between two processes (the sender a child process re-running this binary),
//!   `u64` messages, capacity 1024;
//! - uncontended `Lock` lock + unlock: time, and commands sent per pair (round trips);
//! - the peer: `benches/python/manager_bench.py`, run before and after (its mean is used).
//!
//! `cargo bench -p uniconc-redis --bench redis_channel` (`UNICONC_STRESS_SCALE` scales the
//! counts).

use std::process::Command;
use std::time::Instant;

use uniconc_core::{Lock as _, Receiver as _, Sender as _};
use uniconc_redis::testing::RedisServer;

const ROLE: &str = "UNICONC_REDIS_BENCH_ROLE";

fn scale() -> f64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn sender(role: &str) {
    let mut parts = role.split('|');
    let (url, id, n) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let conn = uniconc_redis::connect(url).unwrap();
    let tx = conn.open_sender::<u64>(id).unwrap();
    for i in 0..=n {
        tx.send(i).unwrap();
    }
}

fn python() -> Option<(f64, f64)> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../benches/python/manager_bench.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("{}", scale()))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    Some((
        get("manager_queue_1to1_msgs_per_s")?,
        get("manager_lock_acquire_release_us")?,
    ))
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        sender(&role);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let py_before = python();

    let n = (50_000.0 * scale()) as u64;
    let (tx, rx) = conn.channel::<u64>(1024).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, format!("{}|{}|{n}", server.url(), tx.id()))
        .spawn()
        .unwrap();
    assert_eq!(rx.recv(), Ok(0)); // the child has joined
    drop(tx);
    let t = Instant::now();
    for i in 1..=n {
        assert_eq!(rx.recv(), Ok(i));
    }
    let chan_rate = n as f64 / t.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success());

    let lock = conn.lock().unwrap();
    drop(lock.lock().unwrap());
    let rounds = (5_000.0 * scale()) as u64;
    let before = conn.commands_sent();
    let t = Instant::now();
    for _ in 0..rounds {
        drop(lock.lock().unwrap());
    }
    let lock_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let per_pair = (conn.commands_sent() - before) as f64 / rounds as f64;

    let py_after = python();
    println!("redis channel 1->1 (two processes): {chan_rate:.0} msgs/s");
    println!("redis lock+unlock: {lock_us:.1} us, {per_pair:.2} commands (round trips) per pair");
    match (py_before, py_after) {
        (Some(a), Some(b)) => {
            let (py_q, py_l) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            println!(
                "python BaseManager queue 1->1: {:.0} and {:.0} msgs/s (mean {py_q:.0})",
                a.0, b.0
            );
            println!(
                "python BaseManager lock acquire+release: {:.1} and {:.1} us (mean {py_l:.1})",
                a.1, b.1
            );
            println!("ratio channel redis/python: {:.2}x", chan_rate / py_q);
            println!("ratio lock python/redis time: {:.2}x", py_l / lock_us);
        }
        _ => println!("python peer unavailable (python3 and benches/python/manager_bench.py)"),
    }
}
