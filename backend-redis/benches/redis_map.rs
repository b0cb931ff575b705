//! The Redis `Map` and `List` against Python's remote dict (a `BaseManager` serving a dict over
//! TCP), and against the floor of one round trip on the same server, same run; prints figures
//! and ratios.
//!
//! - `Map<u64, String>` (32-char values): `insert`, `get`, `contains_key`, `update` (a
//!   counter), one thread;
//! - `List<u64>`: `push`, `get`;
//! - the floor: a raw redis-rs synchronous `GET` loop on the same server;
//! - the peer: `benches/python/manager_bench.py` (dict set and get), run before and after.
//!
//! `cargo bench -p uniconc-redis --bench redis_map` (`UNICONC_STRESS_SCALE` scales the counts).

use std::process::Command;
use std::time::Instant;

use uniconc_core::{List as _, Map as _};
use uniconc_redis::testing::RedisServer;

fn scale() -> f64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// Python's dict (set µs, get µs).
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
    Some((get("manager_dict_set_us")?, get("manager_dict_get_us")?))
}

/// Microseconds per call of `f(i)` over `ops` calls.
fn per_op(ops: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..ops {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / ops as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let py_before = python();
    let ops = (5_000.0 * scale()) as u64;
    let value = "x".repeat(32);

    let m = conn.map::<u64, String>().unwrap();
    let insert = per_op(ops, |i| {
        m.insert(i % 1000, value.clone()).unwrap();
    });
    let get = per_op(ops, |i| assert!(m.get(&(i % 1000)).unwrap().is_some()));
    let contains = per_op(ops, |i| assert!(m.contains_key(&(i % 1000)).unwrap()));
    let counter = conn.map::<u64, u64>().unwrap();
    let update = per_op(ops / 5, |_| {
        counter.update(0, |c| *c.get_or_insert(0) += 1).unwrap();
    });
    let l = conn.list::<u64>().unwrap();
    let push = per_op(ops, |i| l.push(i).unwrap());
    let lget = per_op(ops, |i| assert_eq!(l.get(i as usize).unwrap(), Some(i)));

    let raw_get = {
        let client = redis::Client::open(server.url()).unwrap();
        let mut c = client.get_connection().unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(&value)
            .query(&mut c)
            .unwrap();
        per_op(ops, |_| {
            let _: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        })
    };
    let py_after = python();

    println!("redis map insert {insert:.1} us, get {get:.1} us, contains_key {contains:.1} us");
    println!("redis map update (a counter: two scripts) {update:.1} us");
    println!("redis list push {push:.1} us, get {lget:.1} us");
    println!("raw redis-rs sync GET loop (floor of one round trip): {raw_get:.1} us");
    println!("ratio map get / raw GET time: {:.2}x", get / raw_get);
    println!("ratio map insert / raw GET time: {:.2}x", insert / raw_get);
    match (py_before, py_after) {
        (Some(a), Some(b)) => {
            let (set_us, get_us) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
            println!(
                "python BaseManager dict set: {:.1} and {:.1} us (mean {set_us:.1}); get: {:.1} \
                 and {:.1} us (mean {get_us:.1})",
                a.0, b.0, a.1, b.1
            );
            println!("ratio map get python/redis time: {:.2}x", get_us / get);
            println!(
                "ratio map insert python/redis time: {:.2}x",
                set_us / insert
            );
            println!(
                "ratio python dict get / raw GET time: {:.2}x",
                get_us / raw_get
            );
        }
        _ => println!("python peer unavailable (python3 and benches/python/manager_bench.py)"),
    }
}
