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
    // A unit that waits forever (nobody sends): a task can be aborted, a process killed.
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    let h = B::spawn_async(async move { rx.recv_async().await.is_ok() }).unwrap();
    crate::support::pause();
    if B::CAN_CANCEL {
        h.kill().expect("CAN_CANCEL: an async unit can be stopped");
        match h.join() {
            Err(JoinError::Killed(9) | JoinError::Cancelled) => {}
            other => panic!("expected Killed(9) (process) or Cancelled (task), got {other:?}"),
        }
    } else {
        let err = h.kill().expect_err("without CAN_CANCEL, kill() is refused");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        tx.send(1).unwrap(); // the unit runs on: wake it with a message
        assert_eq!(h.join(), Ok(true), "the unit ran on after the refused kill");
    }
    drop(tx);

    // A blocking closure, already running.
    let (started, stop) = (B::event().unwrap(), B::event().unwrap());
    let h = {
        let (started, stop) = (started.clone(), stop.clone());
        B::spawn(move || {
            started.set();
            stop.wait_timeout(LONG).is_ok()
        })
        .unwrap()
    };
    started.wait_timeout(LONG).unwrap();
    if B::CAN_KILL {
        h.kill()
            .expect("CAN_KILL: a running blocking closure can be stopped");
        assert_eq!(h.join(), Err(JoinError::Killed(9)));
    } else {
        let err = h
            .kill()
            .expect_err("without CAN_KILL, a running closure cannot be stopped");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        stop.set();
        assert_eq!(h.join(), Ok(true), "the unit ran on after the refused kill");
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

uniconc::task! {
    /// `x * 2`, for the pools that run named tasks only.
    fn double_it(x: u64) -> u64 { x * 2 }
}

/// A whole program over `B` written with `?` into `uniconc::Result`, no `Box<dyn Error>`.
fn with_question_marks<B: Backend>() -> uniconc::Result<u64> {
    let (tx, rx) = B::channel::<u64>(2)?;
    tx.send(40)?;
    tx.try_send(1)?;
    let lock = B::lock()?;
    let total = {
        let _held = lock.lock_timeout(LONG)?;
        rx.recv_timeout(LONG)? + rx.try_recv()?
    };
    let h = B::spawn(move || total + 1)?;
    let pool = B::pool(1)?;
    let x = h.join()?;
    let doubled = if B::POOL_CLOSURES {
        pool.map(|x: u64| x * 2, [x])?
    } else {
        pool.map_task::<double_it>([x])?
    };
    B::event()?.wait_timeout(SHORT).or_else(|e| match e {
        uniconc::WaitError::Timeout => Ok(()),
        other => Err(other),
    })?;
    Ok(doubled[0])
}

pub(crate) fn errors_convert_with_question_mark<B: Backend>() {
    assert_eq!(with_question_marks::<B>().unwrap(), 84);
    // The kind survives the conversion.
    let failed = || -> uniconc::Result<u8> { Ok(B::spawn(|| -> u8 { panic!("boom") })?.join()?) };
    let e = failed().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    assert!(e.to_string().contains("boom"), "{e}");
    let (tx, rx) = B::channel::<u8>(1).unwrap();
    drop(rx);
    let e = (|| -> uniconc::Result<()> { Ok(tx.send(1)?) })().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
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
