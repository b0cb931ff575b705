//! The clean-started pool (`Pool::builder().start(Start::Clean)`): named tasks run in workers
//! that are this test binary started again, so they inherit none of the caller's threads,
//! locks or runtime.
//!
//! Every test calls `uniconc::process::init()` first: in the parent it records the test's name
//! (a worker re-runs this binary as `<binary> <that test> --exact ...`), and in a worker it
//! runs the pool's job loop and exits there, before anything else in the test.
//!
//! Run these in release too (`cargo test --release -p uniconc-process --test clean_pool`): a
//! worker finds a task's code at an offset in the binary, and only an optimised build inlines
//! small functions across crates (each copy with its own address), which is what the offsets'
//! anchor must survive.
//!
//! Watchdogs: every pool here has a `task_timeout` (a task that hangs ends `DeadlineExceeded`,
//! its worker killed), waits on single tasks have a deadline, and [`Watchdog`] aborts the
//! whole binary (with a message) if a test runs far longer than it may.

mod common;
use common::{Hammer, runtime_sum};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use uniconc::{ErrorKind, Order, Pool as _, PoolError, Start, TaskError, TaskHandle as _};
use uniconc_process::{Pool, init};

/// A program-wide lock, as a logger or a global cache has.
static GLOBAL: Mutex<u64> = Mutex::new(0);

/// Set by the parent at run time: a forked worker sees the parent's value, a clean one the
/// initial 0.
static MARK: AtomicU64 = AtomicU64::new(0);

/// One test of this binary at a time (they start processes; the machine is small).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Never expires in a passing test: the deadline of every task and every wait.
const LIMIT: Duration = Duration::from_secs(60);

/// Aborts the process if not dropped within its time: a hang fails the run instead of
/// stalling it.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn new(what: &'static str, limit: Duration) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&done);
        std::thread::spawn(move || {
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            // Acquire/Release are not needed: a flag only, no data is published through it.
            while !seen.load(Ordering::Relaxed) {
                if waited >= limit {
                    eprintln!("watchdog: `{what}` still running after {limit:?}; aborting");
                    std::process::abort();
                }
                std::thread::sleep(step);
                waited += step;
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A clean pool of `n` workers with the test deadline as its task timeout.
fn clean_pool(n: usize) -> Pool {
    Pool::builder()
        .workers(n)
        .start(Start::Clean)
        .task_timeout(LIMIT)
        .build()
        .expect("a clean pool")
}

uniconc::task! {
    /// Takes the program-wide lock (as logging would), then squares.
    fn logged_square(x: u64) -> u64 {
        let mut calls = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
        *calls += 1;
        x * x
    }
}

uniconc::task! {
    /// The worker's view of [`MARK`].
    fn read_mark() -> u64 { MARK.load(Ordering::Relaxed) }
}

uniconc::task! {
    /// The worker's process id.
    fn worker_pid() -> u32 { std::process::id() }
}

uniconc::task! {
    fn checked_half(x: u32) -> u32 { assert!(x % 2 == 0, "{x} is odd"); x / 2 }
}

uniconc::task! {
    /// Kills its own worker with SIGKILL.
    fn die(_x: u8) -> u8 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        unreachable!("SIGKILL is not caught")
    }
}

uniconc::task! {
    fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
}

/// The point of the clean pool: a `#[tokio::main]`-style program (a multi-thread runtime)
/// whose other threads hold a program-wide Mutex most of the time starts a clean pool of 20
/// workers from a runtime task; every task takes that Mutex, and each worker builds its own
/// runtime. A forked worker would inherit the Mutex held (see `clean_start.rs`); a clean one
/// has its own: every result arrives, no task reaches its deadline.
#[test]
fn multi_threaded_program_starts_twenty_clean_workers_without_deadlock() {
    init();
    let _s = serial();
    let _w = Watchdog::new("twenty clean workers", 4 * LIMIT);
    let _hammer = Hammer::start(3, &GLOBAL);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let service = tokio::spawn(async {
            let pool = clean_pool(20);
            let squares = pool.map_task::<logged_square>(0..400u64).expect("map_task");
            assert_eq!(squares, (0..400u64).map(|x| x * x).collect::<Vec<_>>());
            let mut handles: Vec<_> = (0..20u64)
                .map(|i| {
                    pool.submit_task::<runtime_sum>(10 + i)
                        .expect("submit_task")
                })
                .collect();
            for (i, h) in (0..20u64).zip(&mut handles) {
                let n = 10 + i;
                assert_eq!(h.wait_async().await, Ok(n * (n + 1) / 2));
            }
            // Every worker ran: 20 distinct processes answered.
            let mut pids = pool
                .imap_unordered_task::<sleep_pid>((0..20).map(|_| 200))
                .collect::<Result<Vec<u32>, _>>()
                .expect("pids");
            pids.sort_unstable();
            pids.dedup();
            assert_eq!(pids.len(), 20, "every one of the 20 workers ran a task");
            pool.close();
            pool.join().expect("join");
        });
        service.await.expect("the service task");
    });
}

uniconc::task! {
    /// Sleeps `ms`, then names its worker (20 of them at once keep all 20 workers busy).
    fn sleep_pid(ms: u64) -> u32 { std::thread::sleep(Duration::from_millis(ms)); std::process::id() }
}

#[test]
fn clean_pool_runs_every_task_form_in_clean_workers() {
    init();
    let _s = serial();
    let _w = Watchdog::new("task forms", 2 * LIMIT);
    MARK.store(7, Ordering::Relaxed);
    let pool = clean_pool(2);
    // A clean worker has its own, untouched copy of the program's statics.
    assert_eq!(pool.map_task::<read_mark>(vec![(); 3]).unwrap(), [0, 0, 0]);
    assert_eq!(
        pool.imap_task::<checked_half>([2, 4, 6])
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        [1, 2, 3]
    );
    let mut any: Vec<u32> = pool
        .imap_unordered_task::<checked_half>([8, 10])
        .collect::<Result<_, _>>()
        .unwrap();
    any.sort_unstable();
    assert_eq!(any, [4, 5]);
    let odd = Err(TaskError::Panicked("3 is odd".into()));
    assert_eq!(
        pool.imap_task_with::<checked_half>([2, 3, 4], Order::Input)
            .collect::<Vec<_>>(),
        [Ok(1), odd.clone(), Ok(2)]
    );
    assert_eq!(pool.submit_task::<checked_half>(42).unwrap().wait(), Ok(21));
    assert_eq!(
        pool.submit_task::<checked_half>(5).unwrap().wait(),
        Err(TaskError::Panicked("5 is odd".into()))
    );
    match pool.map_task::<checked_half>([2, 4, 7, 8]) {
        Err(PoolError::Task {
            index: 2,
            error: TaskError::Panicked(msg),
        }) => assert_eq!(msg, "7 is odd"),
        other => panic!("unexpected: {other:?}"),
    }
    // A million trivial items: the chunked path, as on a fork pool.
    let n = 1_000_000u64;
    let squares = pool.map_task::<logged_square>(0..n).unwrap();
    assert_eq!(squares.len(), n as usize);
    assert_eq!(squares[999], 999 * 999);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn closures_on_a_clean_pool_are_refused_naming_the_task_api() {
    init();
    let _s = serial();
    let _w = Watchdog::new("closures refused", LIMIT);
    let pool = clean_pool(1);
    let check = |e: PoolError| match e {
        PoolError::Spawn(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            let text = e.to_string();
            assert!(
                text.contains("map_task") && text.contains("submit_task"),
                "{text}"
            );
            assert!(text.contains("Start::Fork"), "{text}");
        }
        other => panic!("not refused: {other:?}"),
    };
    check(pool.map(|x: u32| x + 1, [1]).unwrap_err());
    check(pool.submit(|x: u32| x + 1, 1).unwrap_err());
    check(
        pool.submit_with_timeout(|x: u32| x + 1, 1, LIMIT)
            .unwrap_err(),
    );
    let mut it = pool.imap(|x: u32| x + 1, [1, 2]);
    match it.next() {
        Some(Err(TaskError::Failed(text))) => assert!(text.contains("imap_task"), "{text}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(it.next().is_none());
    drop(it);
    // Nothing was lost: the pool still runs tasks.
    assert_eq!(pool.submit_task::<checked_half>(2).unwrap().wait(), Ok(1));
}

#[test]
fn fork_pool_runs_closures_and_tasks_in_forked_workers() {
    init();
    let _s = serial();
    let _w = Watchdog::new("fork pool", LIMIT);
    MARK.store(9, Ordering::Relaxed);
    let pool = Pool::builder()
        .workers(2)
        .start(Start::Fork)
        .task_timeout(LIMIT)
        .build()
        .unwrap();
    assert_eq!(pool.map(|x: u32| x + 1, [1, 2]).unwrap(), [2, 3]);
    // Forked: the workers are copies of this process, with its statics.
    assert_eq!(pool.map_task::<read_mark>(vec![(); 2]).unwrap(), [9, 9]);
    assert_eq!(pool.submit_task::<read_mark>(()).unwrap().wait(), Ok(9));
}

#[test]
fn default_pool_runs_closures_forked_and_tasks_clean_once_init_was_called() {
    init();
    let _s = serial();
    let _w = Watchdog::new("default pool", LIMIT);
    MARK.store(11, Ordering::Relaxed);
    let pool = Pool::builder()
        .workers(2)
        .task_timeout(LIMIT)
        .build()
        .unwrap();
    assert_eq!(pool.config().start, None);
    let mark = |_: ()| MARK.load(Ordering::Relaxed);
    assert_eq!(pool.map(mark, [(), ()]).unwrap(), [11, 11]);
    assert_eq!(pool.map_task::<read_mark>(vec![(); 2]).unwrap(), [0, 0]);
    assert_eq!(pool.submit_task::<read_mark>(()).unwrap().wait(), Ok(0));
    let h = pool.submit(mark, ()).unwrap();
    assert_eq!(h.wait(), Ok(11));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn clean_worker_killed_mid_task_reports_worker_died_and_is_replaced() {
    init();
    let _s = serial();
    let _w = Watchdog::new("worker killed", LIMIT);
    let pool = clean_pool(1);
    let first = pool.submit_task::<worker_pid>(()).unwrap().wait().unwrap();
    match pool.submit_task::<die>(0).unwrap().wait() {
        Err(TaskError::WorkerDied(why)) => {
            assert!(why.contains("signal 9") || why.contains("SIGKILL"), "{why}")
        }
        other => panic!("unexpected: {other:?}"),
    }
    match pool.map_task::<die>([0, 0]) {
        Err(PoolError::Task {
            index: 0,
            error: TaskError::WorkerDied(_),
        }) => {}
        other => panic!("unexpected: {other:?}"),
    }
    // Replaced by another clean worker: the pool goes on.
    let second = pool.submit_task::<worker_pid>(()).unwrap().wait().unwrap();
    assert_ne!(first, second);
    assert_eq!(pool.map_task::<checked_half>([2, 4]).unwrap(), [1, 2]);
}

#[test]
fn clean_task_past_its_timeout_is_killed_and_its_worker_replaced() {
    init();
    let _s = serial();
    let _w = Watchdog::new("task timeout", LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .start(Start::Clean)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = pool.submit_task::<worker_pid>(()).unwrap().wait().unwrap();
    assert_eq!(
        pool.submit_task::<sleep_ms>(600_000).unwrap().wait(),
        Err(TaskError::DeadlineExceeded)
    );
    let second = pool.submit_task::<worker_pid>(()).unwrap().wait().unwrap();
    assert_ne!(first, second);
}

#[test]
fn clean_workers_are_replaced_after_max_tasks() {
    init();
    let _s = serial();
    let _w = Watchdog::new("max tasks", LIMIT);
    let pool = Pool::builder()
        .workers(1)
        .start(Start::Clean)
        .max_tasks_per_worker(2)
        .task_timeout(LIMIT)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6)
        .map(|_| pool.submit_task::<worker_pid>(()).unwrap().wait().unwrap())
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[3], pids[4]);
    assert_eq!(pids[4], pids[5]);
}

#[test]
fn clean_pool_close_join_and_terminate() {
    init();
    let _s = serial();
    let _w = Watchdog::new("close, join, terminate", LIMIT);
    let pool = clean_pool(2);
    let queued = pool.submit_task::<sleep_ms>(50).unwrap();
    pool.close();
    assert!(matches!(
        pool.submit_task::<sleep_ms>(1),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        pool.map_task::<sleep_ms>([1]),
        Err(PoolError::Closed)
    ));
    pool.join().unwrap();
    assert_eq!(queued.wait(), Ok(50)); // accepted before the close: it ran

    let pool = clean_pool(1);
    let long = pool.submit_task::<sleep_ms>(600_000).unwrap();
    let waiting = pool.submit_task::<sleep_ms>(1).unwrap();
    pool.terminate();
    assert_eq!(long.wait(), Err(TaskError::Cancelled));
    assert_eq!(waiting.wait(), Err(TaskError::Cancelled));
    assert!(matches!(
        pool.submit_task::<sleep_ms>(1),
        Err(PoolError::Closed)
    ));
}

/// A clean worker is another program: it holds none of the caller's channel handles, so a
/// channel made before the pool disconnects when the caller drops its sender, while the pool
/// lives (a worker counted at its fork would keep it connected until the pool ends).
#[test]
fn clean_workers_do_not_hold_the_callers_channels() {
    init();
    let _s = serial();
    let _w = Watchdog::new("clean workers and channels", 2 * LIMIT);
    let (tx, rx) = uniconc_process::channel::<u32>(4).unwrap();
    let pool = clean_pool(2);
    assert_eq!(pool.map_task::<read_mark>(vec![(); 4]).unwrap().len(), 4);
    uniconc::Sender::send(&tx, 1).unwrap();
    drop(tx);
    assert_eq!(uniconc::Receiver::recv(&rx), Ok(1));
    assert_eq!(
        uniconc::Receiver::recv_timeout(&rx, LIMIT),
        Err(uniconc::RecvTimeoutError::Disconnected)
    );
    pool.close();
    pool.join().unwrap();
}
