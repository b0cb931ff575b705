//! `spawn`, `spawn_async` and `JoinHandle`: results, panics, exit codes, signals, timeouts,
//! async joins, reaping and the child's stdout.
//!
//! Fork tests are serialized (`FORK`) so that `waitpid(-1)` checks see only their own
//! children; every test runs under a watchdog that aborts the binary instead of hanging.

use std::time::{Duration, Instant};

use uniconc_core::{JoinError, JoinHandle as _};
use uniconc_process::{spawn, spawn_async};

mod common;
use common::{Even, no_children_within, serial};

#[test]
fn returns_the_result_and_captures() {
    let _s = serial("returns_the_result_and_captures");
    let data: Vec<u64> = (1..=3).collect();
    let h = spawn(move || data.iter().sum::<u64>() * 7).unwrap();
    assert_eq!(h.join(), Ok(42));
}

#[test]
fn id_is_the_child_pid() {
    let _s = serial("id_is_the_child_pid");
    let h = spawn(std::process::id).unwrap();
    let id = h.id();
    assert_ne!(id, std::process::id());
    assert_eq!(h.join(), Ok(id));
}

#[test]
fn panic_is_reported_with_its_message() {
    let _s = serial("panic_is_reported_with_its_message");
    let h = spawn(|| -> u8 { panic!("boom {}", 7) }).unwrap();
    assert_eq!(h.join(), Err(JoinError::Panicked("boom 7".into())));
}

#[test]
fn exit_code_is_reported() {
    let _s = serial("exit_code_is_reported");
    let h = spawn(|| -> u8 { std::process::exit(3) }).unwrap();
    assert_eq!(h.join(), Err(JoinError::Exited(3)));
}

#[test]
fn kill_is_reported_as_sigkill() {
    let _s = serial("kill_is_reported_as_sigkill");
    let mut h = spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    assert_eq!(h.try_join(), Err(JoinError::Timeout));
    h.kill().unwrap();
    assert_eq!(h.join(), Err(JoinError::Killed(libc::SIGKILL)));
}

#[test]
fn abort_is_reported_as_sigabrt() {
    let _s = serial("abort_is_reported_as_sigabrt");
    let h = spawn(|| -> u8 { std::process::abort() }).unwrap();
    assert_eq!(h.join(), Err(JoinError::Killed(libc::SIGABRT)));
}

#[test]
fn join_timeout_leaves_the_handle_joinable() {
    let _s = serial("join_timeout_leaves_the_handle_joinable");
    let mut h = spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        5u8
    })
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        h.join_timeout(Duration::from_millis(20)),
        Err(JoinError::Timeout)
    );
    assert!(t0.elapsed() >= Duration::from_millis(20));
    assert!(!h.is_finished());
    assert_eq!(h.join_timeout(Duration::from_secs(30)), Ok(5));
    assert!(h.is_finished());
    assert_eq!(h.try_join(), Err(JoinError::AlreadyJoined));
}

#[test]
fn large_result_is_not_truncated() {
    let _s = serial("large_result_is_not_truncated");
    let n = 3 << 20;
    let h = spawn(move || (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let v = h.join().unwrap();
    assert_eq!(v.len(), n);
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn is_finished_turns_true_without_join() {
    let _s = serial("is_finished_turns_true_without_join");
    let h = spawn(|| 1u8).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !h.is_finished() {
        assert!(Instant::now() < end, "child never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(h.join(), Ok(1));
}

#[test]
fn every_child_is_reaped() {
    let _s = serial("every_child_is_reaped");
    let joined: Vec<_> = (0..4).map(|i| spawn(move || i * 2).unwrap()).collect();
    for (i, h) in joined.into_iter().enumerate() {
        assert_eq!(h.join(), Ok(i * 2));
    }
    // Dropped before they finish, and dropped after.
    for _ in 0..3 {
        drop(spawn(|| std::thread::sleep(Duration::from_millis(100))).unwrap());
    }
    let done = spawn(|| 0u8).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(done);
    let killed = spawn(|| std::thread::sleep(Duration::from_secs(60))).unwrap();
    killed.kill().unwrap();
    drop(killed);
    assert!(
        no_children_within(Duration::from_secs(20)),
        "zombies left behind"
    );
}

#[test]
fn join_async_does_not_block_and_is_cancel_safe() {
    let _s = serial("join_async_does_not_block_and_is_cancel_safe");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            9u32
        })
        .unwrap();
        // The timer wins while the child sleeps: the join future was pending, not blocking
        // the (single) executor thread.
        tokio::select! {
            r = h.join_async() => panic!("joined too early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        // Dropping the future lost nothing.
        assert_eq!(h.join_async().await, Ok(9));
    });
}

#[test]
fn spawn_async_runs_a_future_in_a_child() {
    let _s = serial("spawn_async_runs_a_future_in_a_child");
    let h = spawn_async(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::process::id()
    })
    .unwrap();
    let pid = h.id();
    assert_eq!(h.join(), Ok(pid));
    // From inside a runtime too (the child's copy of this thread still thinks it is in one).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let mut h = spawn_async(async { 11u8 }).unwrap();
        h.join_async().await
    });
    assert_eq!(r, Ok(11));
}

#[test]
fn spawn_async_panic_is_reported() {
    let _s = serial("spawn_async_panic_is_reported");
    let h = spawn_async(async {
        if std::process::id() != 0 {
            panic!("async boom");
        }
    })
    .unwrap();
    assert_eq!(h.join(), Err(JoinError::Panicked("async boom".into())));
}

/// The role run in a re-executed copy of this binary: a child prints without a newline and
/// without flushing, then returns; the spawn machinery must flush it.
#[test]
fn stdout_child_role() {
    if std::env::var_os("UNICONC_STDOUT_ROLE").is_none() {
        return;
    }
    let h = spawn(|| {
        use std::io::Write;
        let mut out = std::io::stdout();
        write!(out, "child-says-hello").unwrap();
        print!(" and-no-newline");
        eprint!("child-stderr");
        1u8
    })
    .unwrap();
    assert_eq!(h.join(), Ok(1));
    // A pool worker's prints survive its pool's drop (workers flush after every job).
    let pool = uniconc_process::pool(1).unwrap();
    let got = uniconc_core::Pool::map(
        &pool,
        |x: u32| {
            print!("worker-item-{x};");
            x
        },
        0..3u32,
    )
    .unwrap();
    assert_eq!(got, [0, 1, 2]);
    drop(pool);
    println!();
    println!("parent-done");
}

#[test]
fn stdout_of_a_child_is_not_lost() {
    let _s = serial("stdout_of_a_child_is_not_lost");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "stdout_child_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("UNICONC_STDOUT_ROLE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "role failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("child-says-hello and-no-newline"),
        "stdout: {stdout}"
    );
    assert!(stdout.contains("parent-done"), "stdout: {stdout}");
    assert_eq!(
        stdout.matches("child-says-hello").count(),
        1,
        "printed twice: {stdout}"
    );
    assert!(stderr.contains("child-stderr"), "stderr: {stderr}");
    for x in 0..3 {
        assert!(
            stdout.contains(&format!("worker-item-{x};")),
            "stdout: {stdout}"
        );
    }
}

#[test]
fn handles_are_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<uniconc_process::JoinHandle<Vec<u8>>>();
}

/// More children than the old 256 process slots hold one channel's senders at once; the parent
/// drops its own: the receiver gets every message before `Disconnected`, none is lost to an
/// uncounted child.
#[test]
fn many_children_on_one_channel_are_all_counted() {
    use uniconc_core::{Event as _, Receiver as _};
    let (_g, _w) = serial("many_children_on_one_channel_are_all_counted");
    let n: u64 = 300;
    let (tx, rx) = uniconc_process::channel::<u64>(64).unwrap();
    let go = uniconc_process::event().unwrap();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let tx = tx.clone();
            let go = go.clone();
            spawn(move || {
                // Bounded, so a failing run leaves no child waiting forever; long, since `go`
                // is set only once every child is forked: with the portable fallback's polling
                // waiters, hundreds of waiting children slow the forks after them down (CI
                // took over 30 s to fork them all, and the first children gave up waiting).
                go.wait_timeout(Duration::from_secs(180)).unwrap();
                uniconc_core::Sender::send(&tx, i).unwrap();
            })
            .unwrap()
        })
        .collect();
    drop(tx);
    go.set();
    let got: Vec<u64> = rx.iter().collect();
    assert_eq!(
        got.len() as u64,
        n,
        "every child's message arrives before Disconnected"
    );
    assert_eq!(got.iter().sum::<u64>(), n * (n - 1) / 2);
    for h in handles {
        h.join().unwrap();
    }
}

/// A `Permit` moved into a child is the child's to give back: the parent's leftover copy of
/// the closure (dropped after the fork) must not release it a second time.
#[test]
fn permit_moved_into_a_child_is_released_once() {
    use uniconc_core::Semaphore as _;
    let _s = serial("permit_moved_into_a_child_is_released_once");
    let sem = uniconc_process::semaphore(1).unwrap();
    let permit = sem.acquire();
    assert_eq!(sem.available(), 0);
    let h = spawn(move || drop(permit)).unwrap();
    h.join().unwrap();
    assert_eq!(sem.available(), 1);
    // A permit the child keeps (forgets) stays taken.
    let permit = sem.acquire();
    let h = spawn(move || permit.forget()).unwrap();
    h.join().unwrap();
    assert_eq!(sem.available(), 0);
}

/// What a child does with tokio: builds its own runtime and runs a `tokio::spawn`ed task on it.
fn own_runtime_runs_a_spawned_task() -> u32 {
    let rt = tokio::runtime::Runtime::new().expect("a runtime in the child");
    rt.block_on(async { tokio::spawn(async { 7u32 }).await.expect("the task ran") })
}

#[test]
fn a_child_forked_inside_a_runtime_starts_outside_it() {
    let _s = serial("a_child_forked_inside_a_runtime_starts_outside_it");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // From the thread that drives `block_on`, and from a worker thread running a task: both
    // are inside the runtime.
    let from_block_on = rt.block_on(async {
        let mut h = spawn(own_runtime_runs_a_spawned_task).unwrap();
        h.join_timeout(Duration::from_secs(60))
    });
    assert_eq!(from_block_on, Ok(7));
    let from_a_task = rt
        .block_on(rt.spawn(async {
            let mut h = spawn(own_runtime_runs_a_spawned_task).unwrap();
            h.join_timeout(Duration::from_secs(60))
        }))
        .unwrap();
    assert_eq!(from_a_task, Ok(7));
    // A child that calls `tokio::spawn` without a runtime of its own is told so (it is not in
    // the parent's, whose threads it does not have), instead of waiting forever.
    let orphan_task = rt.block_on(async {
        let mut h = spawn(|| {
            drop(tokio::spawn(async {}));
        })
        .unwrap();
        h.join_timeout(Duration::from_secs(60))
    });
    assert!(
        matches!(&orphan_task, Err(JoinError::Panicked(m)) if m.contains("no reactor")),
        "{orphan_task:?}"
    );
}

#[test]
fn a_result_that_cannot_be_decoded_names_its_type_and_the_reason() {
    let _s = serial("a_result_that_cannot_be_decoded_names_its_type_and_the_reason");
    assert_eq!(spawn(|| Even(4)).unwrap().join(), Ok(Even(4)));
    match spawn(|| Even(3)).unwrap().join() {
        Err(JoinError::Failed(m)) => {
            assert!(
                m.contains("result could not be decoded as a `spawn::common::Even`"),
                "{m}"
            );
            assert!(m.contains("3 is odd"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}
