//! A contended Redis [`Lock`](uniconc_redis::Lock): N processes (2 and 4) each doing
//! `lock(); counter += 1; unlock()` in a loop, against Python's `BaseManager` lock with the
//! same N client processes (`benches/python/manager_lock_bench.py`, run before and after), and
//! against the uncontended lock + unlock (two round trips) in the same run. Reports ops/s,
//! commands (round trips) per op, and how the waiters' naps ended: woken by a release, or
//! after the whole fallback poll without one.
//!
//! The counter is a plain integer in a file that only the lock's holder reads and writes, so
//! a lost increment would show a broken lock, without adding a round trip to the op.
//!
//! `cargo bench -p uniconc-redis --bench redis_lock` (`UNICONC_STRESS_SCALE` scales the
//! counts).

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use uniconc_core::{Lock as _, Receiver as _, Sender as _};
use uniconc_redis::testing::{RedisServer, wait_counts};

const ROLE: &str = "UNICONC_REDIS_BENCH_ROLE";

fn scale() -> f64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// Adds one to the counter in `file` (the caller holds the lock).
fn increment(file: &mut std::fs::File) {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut s).unwrap();
    let n: u64 = s.trim().parse().unwrap_or(0) + 1;
    file.seek(SeekFrom::Start(0)).unwrap();
    file.set_len(0).unwrap();
    write!(file, "{n}").unwrap();
}

/// A contender: opens the lock, says it is ready, then does `ops` increments under it and
/// prints what it sent and how its waits ended.
fn contender(role: &str) {
    let parts: Vec<&str> = role.split('|').collect();
    let [url, lock_id, ready_id, ops, path] = parts[..] else {
        panic!("bad role {role}")
    };
    let ops: u64 = ops.parse().unwrap();
    let conn = uniconc_redis::connect(url).unwrap();
    let lock = conn.open_lock(lock_id).unwrap();
    let ready = conn.open_sender::<u64>(ready_id).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let before = conn.commands_sent();
    let waits = wait_counts();
    ready.send(1).unwrap();
    for _ in 0..ops {
        let g = lock.lock().unwrap();
        increment(&mut file);
        drop(g);
    }
    let after = wait_counts();
    println!(
        "contender {} {} {}",
        conn.commands_sent() - before,
        after.woken - waits.woken,
        after.polled - waits.polled
    );
}

struct Contended {
    ops_per_s: f64,
    commands_per_op: f64,
    woken: u64,
    polled: u64,
}

/// `n` processes each doing `ops` increments under one lock.
fn contended(server: &RedisServer, conn: &uniconc_redis::Connection, n: usize) -> Contended {
    let ops = (1_000.0 * scale()) as u64;
    let lock = conn.lock().unwrap();
    let (ready_tx, ready) = conn.channel::<u64>(16).unwrap();
    // On tmpfs where there is one: a file on a busy disk can stall its writer for longer than
    // a whole run of increments.
    let file = tempfile::NamedTempFile::new_in("/dev/shm")
        .or_else(|_| tempfile::NamedTempFile::new())
        .unwrap();
    std::fs::write(file.path(), "0").unwrap();
    // Held until every contender is ready, so that they start together.
    let g = lock.lock().unwrap();
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env(
                    ROLE,
                    format!(
                        "{}|{}|{}|{ops}|{}",
                        server.url(),
                        lock.id(),
                        ready_tx.id(),
                        file.path().display()
                    ),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for _ in 0..n {
        assert_eq!(ready.recv(), Ok(1));
    }
    drop(ready_tx);
    let t = Instant::now();
    drop(g);
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let (mut commands, mut woken, mut polled) = (0, 0, 0);
    for out in &outs {
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("contender "))
            .unwrap();
        let v: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        commands += v[0];
        woken += v[1];
        polled += v[2];
    }
    let total = n as u64 * ops;
    let counted: u64 = std::fs::read_to_string(file.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        counted, total,
        "increments lost: the lock let two holders in"
    );
    Contended {
        ops_per_s: total as f64 / secs,
        commands_per_op: commands as f64 / total as f64,
        woken,
        polled,
    }
}

/// Python's BaseManager lock contended by `n` client processes: ops/s for each `n` asked.
fn python(ns: &[usize]) -> Option<Vec<f64>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../benches/python/manager_lock_bench.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("{}", scale()))
        .args(ns.iter().map(usize::to_string))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ns.iter()
        .map(|n| {
            let name = format!("manager_lock_contended_{n}_ops_per_s");
            text.lines()
                .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse().ok())
        })
        .collect()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        contender(&role);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let ns = [2, 4];
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let py_before = python(&ns);

    let lock = conn.lock().unwrap();
    drop(lock.lock().unwrap());
    let rounds = (2_000.0 * scale()) as u64;
    let before = conn.commands_sent();
    let t = Instant::now();
    for _ in 0..rounds {
        drop(lock.lock().unwrap());
    }
    let pair_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let per_pair = (conn.commands_sent() - before) as f64 / rounds as f64;
    println!(
        "uncontended lock+unlock: {pair_us:.1} us ({:.0} ops/s), {per_pair:.2} commands per op",
        1e6 / pair_us
    );

    let mut rows = Vec::new();
    for &n in &ns {
        let c = contended(&server, &conn, n);
        println!(
            "contended lock, {n} processes: {:.0} ops/s ({:.1} us per op), {:.2} commands per op, \
             waits woken {} / ran the whole fallback poll {}",
            c.ops_per_s,
            1e6 / c.ops_per_s,
            c.commands_per_op,
            c.woken,
            c.polled
        );
        rows.push(c);
    }
    let py_after = python(&ns);
    for (i, &n) in ns.iter().enumerate() {
        let c = &rows[i];
        println!(
            "ratio contended ({n} processes) / uncontended time per op: {:.2}x",
            (1e6 / c.ops_per_s) / pair_us
        );
        match (&py_before, &py_after) {
            (Some(a), Some(b)) => {
                let mean = (a[i] + b[i]) / 2.0;
                println!(
                    "python BaseManager lock, {n} processes: {:.0} and {:.0} ops/s (mean {mean:.0}); \
                     ratio redis/python: {:.2}x",
                    a[i],
                    b[i],
                    c.ops_per_s / mean
                );
            }
            _ => println!(
                "python peer unavailable (python3 and benches/python/manager_lock_bench.py)"
            ),
        }
    }
}
