//! The Redis backend against Python's remote sharing (a `BaseManager` serving a queue, a lock
//! and a dict over TCP), same machine, same run, on loopback; prints figures and ratios.
//!
//! - channel 1→1 between two processes (the sender a child process re-running this binary),
//!   `u64` messages, capacity 1024: one `send`/`recv` per message, then `send_batch` /
//!   `recv_batch` in batches of 1024;
//! - `Map<u64, String>` (32-char values) `insert` and `get`, one thread;
//! - uncontended `Lock` lock + unlock: time, and commands sent per pair (round trips);
//! - the floors on the same server: a raw redis-rs synchronous `GET` loop, and
//!   `redis-benchmark` (`-c 1 -P 1 -t get,set`, and `-P 16 -t lpush` with its default 50
//!   clients) when it is installed;
//! - the floor of the 1→1 channel on the same server: two processes moving single messages
//!   with raw redis-rs commands on synchronous connections (`LPUSH` by one, `BRPOP` by the
//!   other: one round trip per message on each side, the receiver woken by the server's reply
//!   itself);
//! - the peer: `benches/python/manager_bench.py`, run before and after (its mean is used).
//!
//! `cargo bench -p uniconc-redis --bench redis_channel` (`UNICONC_STRESS_SCALE` scales the
//! counts).

use std::process::Command;
use std::time::Instant;

use uniconc_core::{Lock as _, Map as _, Receiver as _, Sender as _};
use uniconc_redis::testing::RedisServer;

const ROLE: &str = "UNICONC_REDIS_BENCH_ROLE";

fn scale() -> f64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// The floor's child: `LPUSH`es `0..=n` to `key`, one command per message.
fn raw_sender(role: &str) {
    let mut parts = role.split('|');
    let (url, key, n) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    for i in 0..=n {
        let _: i64 = redis::cmd("LPUSH").arg(key).arg(i).query(&mut c).unwrap();
    }
}

/// The floor of the 1→1 channel: messages per second from a child `LPUSH`ing `n` (+1 to
/// start) single messages to a list that this process `BRPOP`s one by one, both on
/// synchronous redis-rs connections.
fn raw_one_to_one(url: &str, n: u64) -> f64 {
    let key = format!("floor:{}", std::process::id());
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: i64 = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, format!("raw|{url}|{key}|{n}"))
        .spawn()
        .unwrap();
    let pop = |c: &mut redis::Connection| -> u64 {
        let (_, v): (String, u64) = redis::cmd("BRPOP").arg(&key).arg(0).query(c).unwrap();
        v
    };
    assert_eq!(pop(&mut c), 0); // the child has connected
    let t = Instant::now();
    for i in 1..=n {
        assert_eq!(pop(&mut c), i);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success());
    rate
}

/// The child: sends `0..=n`, one by one or in batches of 1024.
fn sender(role: &str) {
    let mut parts = role.split('|');
    let (url, id, n, batched) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap() == "batch",
    );
    let conn = uniconc_redis::connect(url).unwrap();
    let tx = conn.open_sender::<u64>(id).unwrap();
    if batched {
        tx.send(0).unwrap();
        let mut next = 1;
        while next <= n {
            let end = (next + 1024).min(n + 1);
            tx.send_batch(next..end).unwrap();
            next = end;
        }
    } else {
        for i in 0..=n {
            tx.send(i).unwrap();
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Py {
    queue: f64,
    lock_us: f64,
    dict_set_us: f64,
    dict_get_us: f64,
}

fn python() -> Option<Py> {
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
    Some(Py {
        queue: get("manager_queue_1to1_msgs_per_s")?,
        lock_us: get("manager_lock_acquire_release_us")?,
        dict_set_us: get("manager_dict_set_us")?,
        dict_get_us: get("manager_dict_get_us")?,
    })
}

/// Messages per second from a child sending `n` (+1 to start) to `rx`, one by one or batched.
fn one_to_one(url: &str, conn: &uniconc_redis::Connection, n: u64, batch: bool) -> f64 {
    let (tx, rx) = conn.channel::<u64>(1024).unwrap();
    let mode = if batch { "batch" } else { "one" };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, format!("{url}|{}|{n}|{mode}", tx.id()))
        .spawn()
        .unwrap();
    assert_eq!(rx.recv(), Ok(0)); // the child has joined
    drop(tx);
    let t = Instant::now();
    if batch {
        let mut buf = Vec::with_capacity(1024);
        let mut expect = 1;
        while expect <= n {
            buf.clear();
            rx.recv_batch(&mut buf, 1024).unwrap();
            for &v in &buf {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    } else {
        for i in 1..=n {
            assert_eq!(rx.recv(), Ok(i));
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success());
    rate
}

/// `redis-benchmark -q` figures: (test, requests per second).
fn redis_benchmark(port: u16, args: &[&str]) -> Vec<(String, f64)> {
    let Ok(out) = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(args)
        .output()
    else {
        return Vec::new();
    };
    // Lines like "GET: 12345.67 requests per second, p50=0.031 msec", after \r progress.
    String::from_utf8_lossy(&out.stdout)
        .split(['\n', '\r'])
        .filter_map(|l| {
            let (name, rest) = l.split_once(": ")?;
            let rate = rest.split_whitespace().next()?.parse().ok()?;
            rest.contains("requests per second")
                .then(|| (name.trim().to_owned(), rate))
        })
        .collect()
}

/// Channel (one by one, batched) in msgs/s; Map insert and get in µs.
fn measure(url: &str, conn: &uniconc_redis::Connection) -> [f64; 4] {
    let n = (20_000.0 * scale()) as u64;
    let chan_rate = one_to_one(url, conn, n, false);
    let batch_rate = one_to_one(url, conn, n * 20, true);
    let m = conn.map::<u64, String>().unwrap();
    let value = "x".repeat(32);
    let ops = (5_000.0 * scale()) as u64;
    let t = Instant::now();
    for i in 0..ops {
        m.insert(i % 1000, value.clone()).unwrap();
    }
    let map_set_us = t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    let t = Instant::now();
    for i in 0..ops {
        assert!(m.get(&(i % 1000)).unwrap().is_some());
    }
    let map_get_us = t.elapsed().as_secs_f64() * 1e6 / ops as f64;
    [chan_rate, batch_rate, map_set_us, map_get_us]
}

/// [`measure`] in a child process without the per-thread synchronous connections
/// (`UNICONC_REDIS_DIRECT=0`): every call through the runtime, as before they existed.
fn measure_without_direct(server: &RedisServer) -> Option<[f64; 4]> {
    let out = Command::new(std::env::current_exe().ok()?)
        .env(ROLE, format!("measure|{}", server.url()))
        .env("UNICONC_REDIS_DIRECT", "0")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("measured "))?;
    let v: Vec<f64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
    v.try_into().ok()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        if let Some(url) = role.strip_prefix("measure|") {
            let conn = uniconc_redis::connect(url).unwrap();
            let r = measure(url, &conn);
            println!("measured {} {} {} {}", r[0], r[1], r[2], r[3]);
            return;
        }
        if let Some(rest) = role.strip_prefix("raw|") {
            raw_sender(rest);
            return;
        }
        sender(&role);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let py_before = python();

    let [chan_rate, batch_rate, map_set_us, map_get_us] = measure(&server.url(), &conn);
    let floor_rate = raw_one_to_one(&server.url(), (20_000.0 * scale()) as u64);
    let without = measure_without_direct(&server);
    let value = "x".repeat(32);
    let ops = (5_000.0 * scale()) as u64;

    // The floor: a raw synchronous redis-rs GET loop on the same server.
    let raw_get_us = {
        let client = redis::Client::open(server.url()).unwrap();
        let mut c = client.get_connection().unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(&value)
            .query(&mut c)
            .unwrap();
        let t = Instant::now();
        for _ in 0..ops {
            let _: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        }
        t.elapsed().as_secs_f64() * 1e6 / ops as f64
    };

    let lock = conn.lock().unwrap();
    drop(lock.lock().unwrap());
    let rounds = (2_000.0 * scale()) as u64;
    let before = conn.commands_sent();
    let t = Instant::now();
    for _ in 0..rounds {
        drop(lock.lock().unwrap());
    }
    let lock_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let per_pair = (conn.commands_sent() - before) as f64 / rounds as f64;

    let bench_n = ((50_000.0 * scale()) as u64).to_string();
    let p1 = redis_benchmark(
        server.port(),
        &["-c", "1", "-P", "1", "-t", "get,set", "-n", &bench_n],
    );
    let p16_n = ((1_000_000.0 * scale()) as u64).to_string();
    let p16 = redis_benchmark(server.port(), &["-P", "16", "-t", "lpush", "-n", &p16_n]);

    let py_after = python();
    println!("redis channel 1->1 (two processes), send/recv: {chan_rate:.0} msgs/s");
    println!(
        "redis channel 1->1 (two processes), send_batch/recv_batch of 1024: {batch_rate:.0} msgs/s"
    );
    println!(
        "floor: raw redis-rs LPUSH / BRPOP 1->1 (two processes, synchronous connections): \
         {floor_rate:.0} msgs/s"
    );
    println!("ratio channel / floor: {:.2}x", chan_rate / floor_rate);
    println!("redis map insert: {map_set_us:.1} us, get: {map_get_us:.1} us");
    println!("raw redis-rs sync GET loop (floor of one round trip): {raw_get_us:.1} us");
    println!("redis lock+unlock: {lock_us:.1} us, {per_pair:.2} commands (round trips) per pair");
    for (name, rate) in &p1 {
        println!(
            "redis-benchmark -c 1 -P 1 {name}: {rate:.0} req/s ({:.1} us)",
            1e6 / rate
        );
    }
    for (name, rate) in &p16 {
        println!("redis-benchmark -P 16 {name}: {rate:.0} req/s");
        println!(
            "ratio batched channel / redis-benchmark -P 16 {name}: {:.2}",
            batch_rate / rate
        );
    }
    if let Some([c, b, st, g]) = without {
        println!(
            "without the per-thread connections (UNICONC_REDIS_DIRECT=0, a child process): \
             channel {c:.0} msgs/s, batched {b:.0} msgs/s, map insert {st:.1} us, get {g:.1} us"
        );
        println!(
            "ratio with/without: channel {:.2}x, batched {:.2}x, map insert {:.2}x, get {:.2}x",
            chan_rate / c,
            batch_rate / b,
            st / map_set_us,
            g / map_get_us
        );
    }
    println!(
        "ratio map get / raw GET time: {:.2}x",
        map_get_us / raw_get_us
    );
    if let Some((_, get)) = p1.iter().find(|(n, _)| n == "GET") {
        println!(
            "ratio map get / redis-benchmark -P 1 GET time: {:.2}x",
            map_get_us / (1e6 / get)
        );
    }
    match (py_before, py_after) {
        (Some(a), Some(b)) => {
            let mean = |f: fn(&Py) -> f64| (f(&a) + f(&b)) / 2.0;
            let py_q = mean(|p| p.queue);
            let py_l = mean(|p| p.lock_us);
            let py_ds = mean(|p| p.dict_set_us);
            let py_dg = mean(|p| p.dict_get_us);
            println!(
                "python BaseManager queue 1->1: {:.0} and {:.0} msgs/s (mean {py_q:.0})",
                a.queue, b.queue
            );
            println!(
                "python BaseManager lock acquire+release: {:.1} and {:.1} us (mean {py_l:.1})",
                a.lock_us, b.lock_us
            );
            println!(
                "python BaseManager dict set: {:.1} and {:.1} us (mean {py_ds:.1}); get: {:.1} and {:.1} us (mean {py_dg:.1})",
                a.dict_set_us, b.dict_set_us, a.dict_get_us, b.dict_get_us
            );
            println!("ratio channel redis/python: {:.2}x", chan_rate / py_q);
            println!(
                "ratio floor (raw LPUSH/BRPOP) / python: {:.2}x (5x python: {:.0} msgs/s)",
                floor_rate / py_q,
                5.0 * py_q
            );
            println!(
                "ratio batched channel redis/python: {:.2}x",
                batch_rate / py_q
            );
            println!("ratio lock python/redis time: {:.2}x", py_l / lock_us);
            println!(
                "ratio map insert python/redis time: {:.2}x",
                py_ds / map_set_us
            );
            println!(
                "ratio map get python/redis time: {:.2}x",
                py_dg / map_get_us
            );
        }
        _ => println!("python peer unavailable (python3 and benches/python/manager_bench.py)"),
    }
}
