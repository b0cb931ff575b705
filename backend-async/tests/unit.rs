//! spawn / spawn_async / JoinHandle: inside and outside a runtime, timeouts, abort, panics.

mod common;

use std::time::Duration;

use common::{rt, watchdog};
use uniconc_async::{spawn, spawn_async};
use uniconc_core::{ErrorKind, JoinError, JoinHandle as _};

#[test]
fn spawn_outside_and_inside_a_runtime() {
    watchdog(30, || {
        assert_eq!(spawn(|| 1).unwrap().join().unwrap(), 1);
        assert_eq!(spawn_async(async { 2 }).unwrap().join().unwrap(), 2);
        let rt = rt();
        rt.block_on(async {
            let mut a = spawn(|| 3).unwrap();
            let mut b = spawn_async(async { 4 }).unwrap();
            assert_eq!(a.join_async().await.unwrap(), 3);
            assert_eq!(b.join_async().await.unwrap(), 4);
            // The task ran on this runtime: its id is a tokio task id.
            let c = spawn_async(async { tokio::task::id() }).unwrap();
            let id = c.id();
            assert_eq!(c.join().unwrap(), id);
        });
    });
}

#[test]
fn join_timeout_leaves_it_joinable() {
    watchdog(30, || {
        let ev = uniconc_async::event().unwrap();
        let e2 = ev.clone();
        let mut h = spawn_async(async move {
            uniconc_core::Event::wait_async(&e2).await;
            5
        })
        .unwrap();
        assert_eq!(h.try_join(), Err(JoinError::Timeout));
        assert_eq!(
            h.join_timeout(Duration::from_millis(10)),
            Err(JoinError::Timeout)
        );
        assert!(!h.is_finished());
        uniconc_core::Event::set(&ev);
        assert_eq!(h.join_timeout(Duration::from_secs(20)), Ok(5));
        assert_eq!(h.try_join(), Err(JoinError::AlreadyJoined));
        assert!(h.is_finished());
    });
}

#[test]
fn cancelled_join_async_leaves_it_joinable() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let mut h = spawn_async(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                6
            })
            .unwrap();
            tokio::select! {
                _ = h.join_async() => panic!("finished too early"),
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            assert_eq!(h.join_async().await.unwrap(), 6);
        });
    });
}

#[test]
fn kill_aborts_a_task() {
    watchdog(30, || {
        let h = spawn_async(std::future::pending::<()>()).unwrap();
        h.kill().unwrap();
        assert_eq!(h.join(), Err(JoinError::Cancelled));
    });
}

#[test]
fn kill_of_a_running_blocking_closure_is_unsupported() {
    watchdog(30, || {
        let (tx, rx) = std::sync::mpsc::channel();
        let ev = uniconc_async::event().unwrap();
        let e2 = ev.clone();
        let h = spawn(move || {
            tx.send(()).unwrap();
            uniconc_core::Event::wait(&e2);
            8
        })
        .unwrap();
        rx.recv().unwrap(); // it runs
        let e = h.kill().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        uniconc_core::Event::set(&ev);
        assert_eq!(h.join(), Ok(8), "it ran to its end");
    });
}

#[test]
fn panics_are_reported_with_their_message() {
    watchdog(30, || {
        let h = spawn(|| -> u8 { panic!("sync boom {}", 1) }).unwrap();
        assert_eq!(h.join(), Err(JoinError::Panicked("sync boom 1".into())));
        let h = spawn_async(async { panic!("async boom") }).unwrap();
        assert_eq!(
            h.join(),
            Err::<(), _>(JoinError::Panicked("async boom".into()))
        );
    });
}

#[test]
fn join_inside_a_runtime_uses_block_in_place() {
    watchdog(30, || {
        let rt = rt();
        let v = rt.block_on(async {
            tokio::spawn(async {
                let h = spawn_async(async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    9
                })
                .unwrap();
                h.join().unwrap() // blocking join on a worker thread
            })
            .await
            .unwrap()
        });
        assert_eq!(v, 9);
    });
}
