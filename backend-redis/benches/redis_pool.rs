//! The Redis pool against the process pool, same machine, same run: `map_task` of trivial
//! tasks (`u64 -> u64`) through 2 worker agents (child processes re-running this binary, one
//! worker process each) on a private server, with several chunk sizes; the peer is
//! `uniconc_process::Pool` with 2 workers running the same task. Prints tasks/s, ratios and
//! round trips (commands the pool's process sent per task).
//!
//! `cargo bench -p uniconc-redis --bench redis_pool` (`UNICONC_STRESS_SCALE` scales the
//! counts).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use uniconc_core::Pool as _;
use uniconc_redis::testing::RedisServer;

const ROLE: &str = "UNICONC_REDIS_BENCH_ROLE";

uniconc_core::task! {
    fn trivial(x: u64) -> u64 { x.wrapping_mul(3) }
}

fn scale() -> f64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// The median of `runs` timings of `f`, as tasks/s for `n` tasks.
fn rate(n: u64, runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    t.sort();
    n as f64 / t[runs / 2].as_secs_f64()
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    if let Ok(url) = std::env::var(ROLE) {
        let r = uniconc_redis::pool::worker(&url)
            .queue("bench")
            .workers(1)
            .run();
        panic!("agent ended: {r:?}");
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let _agents = Agents(
        (0..2)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env(ROLE, server.url())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let local = uniconc_process::Pool::new(2).unwrap();
    let n = (100_000.0 * scale()) as u64;
    let expect: u64 = (0..n).map(|x| x.wrapping_mul(3)).fold(0, u64::wrapping_add);
    let check = |v: Vec<u64>| assert_eq!(v.into_iter().fold(0, u64::wrapping_add), expect);
    println!("redis pool: map_task of {n} trivial tasks, 2 agents x 1 worker process");
    for chunk in [None, Some(1000), Some(100), Some(10)] {
        let mut b = uniconc_redis::pool::Pool::configure()
            .connection(&conn)
            .queue("bench")
            .workers(0);
        if let Some(c) = chunk {
            b = b.chunk_size(c);
        }
        let pool = b.build().unwrap();
        // Warm-up: both agents have started and joined.
        check_small(&pool);
        let m = if chunk == Some(10) { n / 10 } else { n };
        let exp: u64 = (0..m).map(|x| x.wrapping_mul(3)).fold(0, u64::wrapping_add);
        let before = conn.commands_sent();
        let redis = rate(m, 3, || {
            let v = pool.map_task::<trivial>(0..m).unwrap();
            assert_eq!(v.into_iter().fold(0, u64::wrapping_add), exp);
        });
        let per_task = (conn.commands_sent() - before) as f64 / (3 * m) as f64;
        let process = rate(n, 3, || check(local.map_task::<trivial>(0..n).unwrap()));
        let label = chunk.map_or("default".to_owned(), |c| c.to_string());
        println!(
            "chunk {label:>16}: redis {redis:>10.0} tasks/s ({m} tasks), process pool \
             {process:>10.0} tasks/s, ratio redis/process {:.4}, pool-side commands per task \
             {per_task:.4}",
            redis / process
        );
    }
}

fn check_small(pool: &uniconc_redis::pool::Pool) {
    assert_eq!(pool.map_task::<trivial>(0..4u64).unwrap(), [0, 3, 6, 9]);
}
