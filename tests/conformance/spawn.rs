//! Execution units: results, panics, timeouts, ids, kill, spawn_async.

use uniconc::prelude::*;
use uniconc::{ErrorKind, JoinError};

use crate::support::{LONG, SHORT};

pub(crate) fn spawn_returns_result<B: Backend>() {
    let h = B::spawn(|| 6u64 * 7).unwrap();
    assert_eq!(h.join(), Ok(42));
    let h = B::spawn(|| format!("hello from {}", "a unit")).unwrap();
    assert_eq!(h.join().unwrap(), "hello from a unit");
    let h = B::spawn(|| (1u8, vec![2u16, 3], Some("x".to_owned()))).unwrap();
    assert_eq!(h.join().unwrap(), (1, vec![2, 3], Some("x".to_owned())));
}

pub(crate) fn spawn_panic_message<B: Backend>() {
    let h = B::spawn(|| -> u64 { panic!("boom {}", 7) }).unwrap();
    match h.join() {
        Err(JoinError::Panicked(msg)) => assert!(msg.contains("boom 7"), "message: {msg}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

pub(crate) fn spawn_join_timeout_then_join<B: Backend>() {
    let go = B::event().unwrap();
    let go2 = go.clone();
    let mut h = B::spawn(move || {
        go2.wait_timeout(LONG).unwrap();
        11u64
    })
    .unwrap();
    assert_eq!(h.join_timeout(SHORT), Err(JoinError::Timeout));
    assert_eq!(h.try_join(), Err(JoinError::Timeout));
    assert!(!h.is_finished());
    go.set();
    let start = std::time::Instant::now();
    while !h.is_finished() {
        assert!(start.elapsed() < LONG, "the unit never finished");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        h.join_timeout(LONG),
        Ok(11),
        "the handle is still joinable after a timeout"
    );
    assert_eq!(h.try_join(), Err(JoinError::AlreadyJoined));
}

pub(crate) fn spawn_ids_are_distinct<B: Backend>() {
    let a = B::spawn(|| 1u8).unwrap();
    let b = B::spawn(|| 2u8).unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(a.join(), Ok(1));
    assert_eq!(b.join(), Ok(2));
}

pub(crate) fn spawn_kill_where_supported<B: Backend>() {
    if B::NAME == "thread" {
        let stop = B::event().unwrap();
        let stop2 = stop.clone();
        let h = B::spawn(move || stop2.wait_timeout(LONG).is_ok()).unwrap();
        let err = h.kill().expect_err("an OS thread cannot be killed");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        stop.set();
        assert_eq!(
            h.join(),
            Ok(true),
            "the thread ran on after the refused kill"
        );
        return;
    }
    // A unit that waits forever (nobody sends): a task can be aborted, a process killed.
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    let h = B::spawn_async(async move { rx.recv_async().await.is_ok() }).unwrap();
    crate::support::pause();
    h.kill().expect("processes and tasks can be stopped");
    match h.join() {
        Err(JoinError::Killed(9)) if B::NAME == "process" => {}
        Err(JoinError::Cancelled) if B::NAME != "process" => {}
        other => panic!("expected Killed(9) (process) or Cancelled (task), got {other:?}"),
    }
    drop(tx);
    if B::NAME == "process" {
        // A blocking closure can be killed too.
        let h = B::spawn(|| {
            std::thread::sleep(LONG);
            0u8
        })
        .unwrap();
        h.kill().unwrap();
        assert_eq!(h.join(), Err(JoinError::Killed(9)));
    }
}

pub(crate) fn spawn_async_runs_a_future<B: Backend>() {
    let h = B::spawn_async(async { 40u64 + 2 }).unwrap();
    assert_eq!(h.join(), Ok(42));
    // The unit's executor drives wakers: it waits on a uniconc channel asynchronously.
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    let h = B::spawn_async(async move { rx.recv_async().await.unwrap() * 2 }).unwrap();
    crate::support::pause();
    tx.send(21).unwrap();
    assert_eq!(h.join(), Ok(42));
    let h = B::spawn_async(async { panic!("async boom") }).unwrap();
    let r: Result<(), JoinError> = h.join();
    assert!(matches!(r, Err(JoinError::Panicked(m)) if m.contains("async boom")));
}

/// What a unit does with tokio: builds its own runtime and runs a `tokio::spawn`ed task on it.
pub(crate) fn own_runtime_runs_a_spawned_task() -> u64 {
    let rt = tokio::runtime::Runtime::new().expect("a runtime in the unit");
    rt.block_on(async { tokio::spawn(async { 7u64 }).await.expect("the task ran") })
}

/// A unit spawned from inside a tokio runtime (a `#[tokio::main]` program) starts outside it:
/// it can build and drive a runtime of its own.
pub(crate) fn spawn_inside_a_runtime_starts_outside_it<B: Backend>() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let mut h = B::spawn(own_runtime_runs_a_spawned_task).unwrap();
        h.join_timeout(LONG)
    });
    assert_eq!(r, Ok(7));
}
