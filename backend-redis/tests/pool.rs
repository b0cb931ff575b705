//! The Redis pool against a private redis-server: named tasks run by worker agents (in this
//! process, or child processes re-running this binary), at-least-once delivery under agent and
//! worker deaths, and the errors that name a task.

mod common;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{ROLE_ENV, Watchdog, role, scale};
use uniconc_core::task::Task;
use uniconc_core::{ErrorKind, Order, Pool as _, PoolError, TaskError, TaskHandle as _};
use uniconc_redis::pool::Pool;
use uniconc_redis::testing::RedisServer;

uniconc_core::task! {
    fn double(x: u64) -> u64 { x * 2 }
}

uniconc_core::task! {
    /// Appends `start` to the file at `path`, sleeps `ms`, appends `end`.
    fn mark_sleep(path: String, ms: u64) -> u64 {
        append(&path, "start");
        std::thread::sleep(Duration::from_millis(ms));
        append(&path, "end");
        ms
    }
}

uniconc_core::task! {
    /// Kills its own process when `x` is odd.
    fn die_if_odd(x: u32) -> u32 {
        if x % 2 == 1 {
            // SAFETY: raise(2) has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        x
    }
}

uniconc_core::task! {
    fn boom(why: String) -> u32 { panic!("{why}") }
}

uniconc_core::task! {
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

/// A task no binary registers: agents do not know it.
struct Unregistered;

impl Task for Unregistered {
    const NAME: &'static str = "pool_tests::unregistered";
    type Arg = u64;
    type Output = u64;
    fn run(x: u64) -> u64 {
        x
    }
}

/// Claims the name of `double` with other types: a schema mismatch on the agent.
struct FakeDouble;

impl Task for FakeDouble {
    const NAME: &'static str = <double as Task>::NAME;
    type Arg = String;
    type Output = String;
    fn run(s: String) -> String {
        s
    }
}

fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening the marker file");
    writeln!(f, "{line}").expect("writing the marker file");
}

fn count(path: &Path, line: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Waits (polling) until `cond` holds; the test's watchdog catches a hang.
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tests fork (agents' worker processes): one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child re-running this binary as a worker agent, in a process group of its own so that
/// killing the group kills its worker processes too.
struct AgentProc(Child);

impl AgentProc {
    fn spawn(url: &str, queue: &str, lease_ms: u64) -> Self {
        let child = Command::new(std::env::current_exe().expect("the test binary's path"))
            .args(["agent_role", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, format!("agent|{url}|{queue}|{lease_ms}"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("re-running the test binary");
        AgentProc(child)
    }

    fn signal_group(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid fits");
        // SAFETY: kill(2) has no memory-safety preconditions; the group is the child's own.
        let rc = unsafe { libc::kill(-pid, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid fits");
        // SAFETY: as in `signal_group`.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The worker agent role: runs only when re-run by [`AgentProc::spawn`].
#[test]
fn agent_role() {
    let Some(r) = role() else { return };
    assert_eq!(r[0], "agent");
    // Die with the test that started us, even when its watchdog aborts it (no drop runs).
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let lease = Duration::from_millis(r[3].parse().expect("lease ms"));
    let res = uniconc_redis::pool::worker(&r[1])
        .queue(&r[2])
        .workers(1)
        .lease(lease)
        .run();
    panic!("the agent ended: {res:?}");
}

fn local_pool(server: &RedisServer, queue: &str, workers: usize) -> uniconc_redis::pool::Builder {
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    Pool::configure()
        .connection(&conn)
        .queue(queue)
        .workers(workers)
}

#[test]
fn map_task_in_order_with_chunks() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let pool = local_pool(&server, "map", 2).build().unwrap();
    let n = 1000 * scale() as u64;
    let out = pool.map_task::<double>(0..n).unwrap();
    assert_eq!(out, (0..n).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(pool.stats().submitted, n);
    assert_eq!(pool.stats().reported, n);
    assert!(
        pool.map_task::<double>(std::iter::empty())
            .unwrap()
            .is_empty()
    );
    let ordered: Vec<u64> = pool
        .imap_task::<double>(0..50)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, (0..50).map(|x| x * 2).collect::<Vec<_>>());
    let mut any: Vec<u64> = pool
        .imap_task_with::<double>(0..50, Order::Completion)
        .collect::<Result<_, _>>()
        .unwrap();
    any.sort_unstable();
    assert_eq!(any, ordered);
}

#[test]
fn closures_are_refused_naming_the_task_methods() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "closures", 0).build().unwrap();
    match pool.map(|x: u32| x, [1]) {
        Err(PoolError::Spawn(e)) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.to_string().contains("map_task"), "{e}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(
        pool.submit(|x: u32| x, 1),
        Err(PoolError::Spawn(e)) if e.kind() == ErrorKind::Unsupported
    ));
    let mut it = pool.imap(|x: u32| x, [1, 2]);
    assert!(matches!(it.next(), Some(Err(TaskError::Failed(m))) if m.contains("imap_task")));
    assert!(it.next().is_none());
}

#[test]
fn sigkilled_agent_task_completes_elsewhere_reported_once() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let pool = local_pool(&server, "kill", 0).build().unwrap();
    let a = AgentProc::spawn(&server.url(), "kill", 1000);
    let mut h = pool
        .submit_task::<mark_sleep>((marks.to_str().unwrap().to_owned(), 1500))
        .unwrap();
    until(|| count(&marks, "start") == 1); // agent A runs it
    a.signal_group(libc::SIGKILL);
    drop(a);
    let _b = AgentProc::spawn(&server.url(), "kill", 1000);
    assert_eq!(h.wait_deadline(None), Ok(1500));
    assert_eq!(h.deliveries(), Some(2));
    assert_eq!(count(&marks, "start"), 2);
    let stats = pool.stats();
    assert_eq!((stats.reported, stats.redelivered), (1, 1));
}

#[test]
fn paused_agent_finishing_late_is_not_reported_twice() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let pool = local_pool(&server, "pause", 0).build().unwrap();
    let a = AgentProc::spawn(&server.url(), "pause", 1000);
    let mut h = pool
        .submit_task::<mark_sleep>((marks.to_str().unwrap().to_owned(), 1000))
        .unwrap();
    until(|| count(&marks, "start") == 1);
    a.signal_group(libc::SIGSTOP); // its heartbeat lapses; the task is delivered again
    let _b = AgentProc::spawn(&server.url(), "pause", 1000);
    assert_eq!(h.wait_deadline(None), Ok(1000));
    assert_eq!(h.deliveries(), Some(2));
    a.signal_group(libc::SIGCONT); // A finishes too, and records its result: dropped
    until(|| pool.stats().duplicates == 1);
    let stats = pool.stats();
    assert_eq!((stats.reported, stats.redelivered), (1, 1), "{stats:?}");
    assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken));
}

#[test]
fn task_killing_every_worker_fails_after_max_deliveries() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let pool = local_pool(&server, "die", 2)
        .max_deliveries(2)
        .build()
        .unwrap();
    let mut h = pool.submit_task::<die_if_odd>(1).unwrap();
    match h.wait_deadline(None) {
        Err(TaskError::WorkerDied(m)) => assert!(m.contains("2 times"), "{m}"),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(h.deliveries(), Some(2));
    // In a chunk, only the task that kills its worker fails; the others complete.
    let got: Vec<_> = pool
        .imap_task::<die_if_odd>([0, 1, 2, 3, 4])
        .map(|r| r.map_err(|e| matches!(e, TaskError::WorkerDied(_))))
        .collect();
    assert_eq!(got, [Ok(0), Err(true), Ok(2), Err(true), Ok(4)]);
    match pool.map_task::<die_if_odd>([2, 4, 5, 6]) {
        Err(PoolError::Task {
            index: 2,
            error: TaskError::WorkerDied(_),
        }) => {}
        other => panic!("expected task 2 to fail, got {other:?}"),
    }
    assert_eq!(pool.map_task::<double>([1, 2]).unwrap(), [2, 4]); // the pool goes on
}

#[test]
fn unknown_task_and_schema_mismatch_name_the_task() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "names", 1).build().unwrap();
    match pool.submit_task::<Unregistered>(1).unwrap().wait() {
        Err(TaskError::Failed(m)) => {
            assert!(m.contains("unknown task `pool_tests::unregistered`"), "{m}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    match pool.submit_task::<FakeDouble>("x".into()).unwrap().wait() {
        Err(TaskError::Failed(m)) => {
            assert!(m.contains("schema mismatch"), "{m}");
            assert!(m.contains(<double as Task>::NAME), "{m}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The same through a chunk of several calls (the name is checked once per chunk).
    match pool.map_task::<Unregistered>([1, 2, 3]) {
        Err(PoolError::Task {
            index: 0,
            error: TaskError::Failed(m),
        }) => assert!(m.contains("unknown task `pool_tests::unregistered`"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(pool.submit_task::<double>(4).unwrap().wait(), Ok(8));
}

#[test]
fn panicking_task_reports_panicked_and_the_agent_goes_on() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "panic", 1).build().unwrap();
    let h = pool.submit_task::<boom>("no luck".into()).unwrap();
    assert_eq!(h.wait(), Err(TaskError::Panicked("no luck".into())));
    assert_eq!(pool.submit_task::<double>(21).unwrap().wait(), Ok(42));
}

#[test]
fn task_timeout_kills_the_worker_and_reports_deadline() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "timeout", 1)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let h = pool.submit_task::<nap>(600_000).unwrap();
    assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(pool.submit_task::<nap>(1).unwrap().wait(), Ok(1));
}

#[test]
fn close_join_terminate() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "join", 2).build().unwrap();
    let handles: Vec<_> = (0..5u64)
        .map(|i| pool.submit_task::<double>(i).unwrap())
        .collect();
    pool.join().unwrap();
    for (i, mut h) in (0u64..).zip(handles) {
        assert!(h.is_finished());
        assert_eq!(h.try_wait(), Ok(i * 2));
    }
    assert!(matches!(
        pool.submit_task::<double>(1),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        pool.map_task::<double>([1]),
        Err(PoolError::Closed)
    ));

    let pool = local_pool(&server, "terminate", 1).build().unwrap();
    let running = pool.submit_task::<nap>(600_000).unwrap();
    let queued = pool.submit_task::<nap>(600_000).unwrap();
    pool.terminate();
    assert_eq!(running.wait(), Err(TaskError::Cancelled));
    assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    assert!(matches!(
        pool.submit_task::<double>(1),
        Err(PoolError::Closed)
    ));
}

#[test]
fn bad_settings_are_refused() {
    if role().is_some() {
        return;
    }
    let server = RedisServer::start();
    for b in [
        local_pool(&server, "a{b}", 0),
        local_pool(&server, "ok", 0).max_deliveries(0),
        local_pool(&server, "ok", 0).lease(Duration::from_millis(1)),
        local_pool(&server, "ok", 0).chunk_size(0),
    ] {
        assert_eq!(b.build().unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    let e = uniconc_redis::pool::worker(&server.url())
        .workers(0)
        .start()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// The example's binary, built (or found up to date) by cargo: `cargo test --test pool` does
/// not build examples.
fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("examples").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-p", "uniconc-redis", "--example", name])
        .status()
        .expect("running cargo to build the example");
    assert!(status.success(), "building the example {name}: {status}");
    assert!(bin.exists(), "{} is not built", bin.display());
    bin
}

#[test]
fn three_program_example() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let url = server.url();
    let bin = example_binary("task_pipeline");
    let worker = Command::new(&bin)
        .args(["worker", &url, "pipeline"])
        .process_group(0)
        .spawn()
        .expect("starting the worker");
    let worker = AgentProc(worker);
    let mut consumer = Command::new(&bin)
        .args(["consumer", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the consumer");
    let mut out = std::io::BufReader::new(consumer.stdout.take().unwrap());
    let sender = common::read_tagged(&mut out, "sender ");
    let producer = Command::new(&bin)
        .args(["producer", &url, "pipeline", &sender, "100"])
        .status()
        .expect("running the producer");
    assert!(producer.success(), "producer: {producer}");
    let n = 100u64;
    let sum: u64 = (0..n).map(|x| x * x).sum();
    assert_eq!(
        common::read_tagged(&mut out, "sum "),
        format!("{sum} count {n}")
    );
    assert!(consumer.wait().unwrap().success());
    drop(worker);
}

#[test]
fn pool_whose_lease_lapsed_fails_its_tasks_instead_of_hanging() {
    if role().is_some() {
        return;
    }
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let pool = local_pool(&server, "lapse", 0)
        .lease(Duration::from_millis(400))
        .build()
        .unwrap();
    let h = pool.submit_task::<double>(1).unwrap(); // no agent: it stays queued
    // What a pause longer than the lease (or a server that lost its data) leaves behind.
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ucp:{lapse}:p:*:alive")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: i64 = redis::cmd("DEL").arg(&keys[0]).query(&mut c).unwrap();
    match h.wait() {
        Err(TaskError::Failed(m)) => assert!(m.contains("lease"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(matches!(
        pool.submit_task::<double>(1),
        Err(PoolError::Closed)
    ));
}
