//! The clean start: named tasks run in a re-executed copy of this test binary.
//!
//! Every test calls `uniconc::process::init()` first: in the parent it records the test's name
//! (a worker re-runs this binary as `<binary> <that test> --exact ...`), and in a worker it
//! runs the requested task and exits there, before anything else in the test.
//!
//! The point of the clean start is `multi_threaded_parent_clean_workers_never_deadlock`: other
//! threads of the parent take and release a global `std::sync::Mutex` in a loop, holding it
//! most of the time, while it starts 20 workers of a task that takes that same Mutex. A clean
//! worker has its own, unlocked copy of the global: 0 deadlocks.
//! `multi_threaded_parent_forked_tasks_can_deadlock` shows the same situation with
//! `Start::Fork`: a child forked while another thread held the Mutex inherits it held, by a
//! thread that does not exist in the child, and hangs; the test's watchdog (`join_timeout`)
//! kills such children, so the suite never hangs, and it only reports how many hung (how many
//! do depends on timing: nearly all of them on this machine).

mod common;
use common::{Hammer, runtime_sum};

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use uniconc::task::TaskRequest;
use uniconc::{JoinError, JoinHandle as _};
use uniconc_process::{Start, init, spawn_request, spawn_task, spawn_task_with};

/// A program-wide lock, as a logger or a global cache has.
static GLOBAL: Mutex<u64> = Mutex::new(0);

/// Set by the parent at run time: a forked child sees the parent's value, a clean worker the
/// initial 0.
static MARK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

uniconc::task! {
    /// The worker's view of [`MARK`].
    fn read_mark() -> u64 { MARK.load(Ordering::Relaxed) }
}

/// One test of this binary at a time (they fork and start processes; the machine is small).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Long enough never to expire in a passing test: the watchdog of every join.
const WATCHDOG: Duration = Duration::from_secs(60);

uniconc::task! {
    /// Takes the program-wide lock (as logging would), then squares.
    fn logged_square(x: u64) -> u64 {
        let mut calls = GLOBAL.lock().unwrap_or_else(PoisonError::into_inner);
        *calls += 1;
        x * x
    }
}

uniconc::task! {
    fn add(a: u64, b: u64) -> u64 { a + b }
}

uniconc::task! {
    fn fail(why: String) -> u8 { panic!("{why}") }
}

uniconc::task! {
    /// Creates the file `marker`, then sleeps far longer than any test.
    fn mark_then_sleep(marker: String) {
        std::fs::write(&marker, b"started").expect("marker");
        std::thread::sleep(Duration::from_secs(600));
    }
}

uniconc::task! {
    /// Leaves the worker before it can report.
    fn leave(code: i32) -> u8 { std::process::exit(code) }
}

/// Starts 20 `logged_square` tasks with `start` from the tasks of a multi-thread tokio runtime
/// while [`Hammer`] threads hold [`GLOBAL`]; joins each with `limit` as its watchdog (a child
/// still running then is killed and counted as hung). Returns (finished, hung).
fn twenty_tasks_while_others_hold_locks(start: Start, limit: Duration) -> (usize, usize) {
    let _hammer = Hammer::start(3, &GLOBAL);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let starts: Vec<_> = (0..20u64)
            .map(|i| {
                tokio::spawn(async move {
                    let mut h = spawn_task_with::<logged_square>(start, i).expect("start");
                    let deadline = Instant::now() + limit;
                    loop {
                        match h.try_join() {
                            Ok(v) => {
                                assert_eq!(v, i * i);
                                return true;
                            }
                            Err(JoinError::Timeout) if Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(JoinError::Timeout) => {
                                h.kill().expect("kill");
                                assert_eq!(h.join(), Err(JoinError::Killed(9)));
                                return false;
                            }
                            Err(e) => panic!("task {i}: {e}"),
                        }
                    }
                })
            })
            .collect();
        let mut finished = 0;
        for s in starts {
            if s.await.expect("the starter task") {
                finished += 1;
            }
        }
        (finished, 20 - finished)
    })
}

#[test]
fn multi_threaded_parent_clean_workers_never_deadlock() {
    init();
    let _s = serial();
    let (finished, hung) = twenty_tasks_while_others_hold_locks(Start::Clean, WATCHDOG);
    assert_eq!((finished, hung), (20, 0));
}

#[test]
fn multi_threaded_parent_forked_tasks_can_deadlock() {
    init();
    let _s = serial();
    let (finished, hung) =
        twenty_tasks_while_others_hold_locks(Start::Fork, Duration::from_secs(2));
    assert_eq!(finished + hung, 20);
    // Not asserted (it depends on timing), but this is why tasks start clean by default.
    eprintln!("Start::Fork with other threads holding a Mutex: {hung} of 20 children hung");
}

#[test]
fn clean_task_returns_its_result_and_several_arguments_travel() {
    init();
    let _s = serial();
    let h = spawn_task::<add>((40, 2)).unwrap();
    assert_ne!(h.id(), std::process::id());
    assert_eq!(h.join(), Ok(42));
    // Through the Backend trait: the process backend's default for tasks is the clean start.
    use uniconc::Backend as _;
    assert_eq!(
        uniconc::Process::spawn_task::<add>((1, 2))
            .unwrap()
            .join_timeout(WATCHDOG),
        Ok(3)
    );
}

#[test]
fn process_backend_tasks_start_clean_by_default() {
    init();
    let _s = serial();
    use uniconc::Backend as _;
    // Relaxed: read back by this thread, or by a fork of it (which copies memory as is).
    MARK.store(7, Ordering::Relaxed);
    let fresh = uniconc::Process::spawn_task::<read_mark>(()).unwrap();
    assert_eq!(
        fresh.join(),
        Ok(0),
        "a clean worker does not inherit the parent's memory"
    );
    let forked = spawn_task_with::<read_mark>(Start::Fork, ()).unwrap();
    assert_eq!(forked.join(), Ok(7));
}

#[test]
fn clean_task_panic_is_reported_with_its_message() {
    init();
    let _s = serial();
    let h = spawn_task::<fail>("no thumbnails today".into()).unwrap();
    assert_eq!(
        h.join(),
        Err(JoinError::Panicked("no thumbnails today".into()))
    );
}

#[test]
fn clean_worker_builds_its_own_runtime() {
    init();
    let _s = serial();
    // Started from inside a runtime: the worker inherits none of it and builds its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut h = spawn_task::<runtime_sum>(100).unwrap();
        h.join_async().await
    });
    assert_eq!(got, Ok(5050));
}

#[test]
fn clean_worker_killed_mid_task_is_killed() {
    init();
    let _s = serial();
    let marker = std::env::temp_dir().join(format!("uniconc-clean-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut h = spawn_task::<mark_then_sleep>(marker.display().to_string()).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the task never started");
        assert!(!h.is_finished(), "the worker ended: {:?}", h.try_join());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        h.join_timeout(Duration::from_millis(20)),
        Err(JoinError::Timeout)
    );
    h.kill().unwrap();
    assert_eq!(h.join(), Err(JoinError::Killed(9)));
    let _ = std::fs::remove_file(&marker);
}

/// Joins a hand-made request's worker and returns its `Failed` message.
fn failed_message(req: &TaskRequest) -> String {
    match spawn_request::<u64>(req).unwrap().join_timeout(WATCHDOG) {
        Err(JoinError::Failed(m)) => m,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn unknown_task_name_is_a_clear_error_naming_it() {
    init();
    let _s = serial();
    let req = TaskRequest {
        name: "clean_start::no_such_task".into(),
        schema: 0,
        arg: vec![],
    };
    let m = failed_message(&req);
    assert!(
        m.contains("unknown task `clean_start::no_such_task`"),
        "{m}"
    );
}

#[test]
fn schema_mismatch_is_a_clear_error_naming_the_task() {
    init();
    let _s = serial();
    let mut req = TaskRequest::new::<add>(&(1, 2)).unwrap();
    req.schema ^= 1; // another build whose `add` takes other types
    let m = failed_message(&req);
    assert!(
        m.contains("task `clean_start::add`: schema mismatch"),
        "{m}"
    );
}

#[test]
fn undecodable_argument_is_a_clear_error_naming_the_task() {
    init();
    let _s = serial();
    let mut req = TaskRequest::new::<add>(&(1, 2)).unwrap();
    req.arg = vec![0xff, 0xff, 0xff]; // not a (u64, u64)
    let m = failed_message(&req);
    assert!(
        m.contains("task `clean_start::add`: the argument could not be decoded as `(u64, u64)`"),
        "{m}"
    );
}

#[test]
fn fork_start_still_runs_a_task() {
    init();
    let _s = serial();
    let h = spawn_task_with::<add>(Start::Fork, (2, 3)).unwrap();
    assert_eq!(h.join(), Ok(5));
}

#[test]
fn clean_worker_that_exits_before_reporting_says_so() {
    init();
    let _s = serial();
    let h = spawn_task::<leave>(3).unwrap();
    assert_eq!(h.join(), Err(JoinError::Exited(3)));
    // Code 0 without a result also means a binary that never became a worker: the error says
    // what to check.
    match spawn_task::<leave>(0).unwrap().join() {
        Err(JoinError::Failed(m)) => assert!(m.contains("uniconc::init()"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

uniconc::task! {
    /// Opens the caller's channel by name and sends `n` squares through it: a clean worker
    /// inherits no memory, so a name is how it reaches the caller's primitives.
    fn squares_by_name(name: String, n: u64) -> u64 {
        use uniconc::{Backend as _, Sender as _};
        let tx = uniconc::Process::named(&name).sender::<u64>(Some(4)).unwrap();
        (0..n).map(|i| tx.send(i * i).map(|()| 1).unwrap_or(0)).sum()
    }
}

#[test]
fn clean_worker_reaches_the_callers_channel_by_name() {
    init();
    let _s = serial();
    use uniconc::{Backend as _, Receiver as _};
    let name = format!("clean-start-test-{}", std::process::id());
    let rx = uniconc::Process::named(&name)
        .create_new()
        .receiver::<u64>(Some(4))
        .unwrap();
    // More messages than the capacity: the worker blocks on the caller draining them.
    let mut h = spawn_task::<squares_by_name>((name.clone(), 10)).unwrap();
    let got: Vec<u64> = (0..10)
        .map(|_| rx.recv_timeout(WATCHDOG).unwrap())
        .collect();
    assert_eq!(got, (0..10).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(h.join_timeout(WATCHDOG), Ok(10));
    uniconc::Process::named(&name).unlink().unwrap();
}
