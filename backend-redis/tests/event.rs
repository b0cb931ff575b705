//! The event against a real, private redis-server.

mod common;

use std::time::{Duration, Instant};

use common::Watchdog;
use uniconc_core::{Event as _, WaitError};
use uniconc_redis::testing::RedisServer;

#[test]
fn set_wakes_waiters_and_clear_resets() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let ev = conn.event().unwrap();
    assert!(!ev.is_set());
    let start = Instant::now();
    assert_eq!(
        ev.wait_timeout(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = ev.clone();
            std::thread::spawn(move || ev.wait())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    ev.set();
    for w in waiters {
        w.join().unwrap();
    }
    assert!(ev.is_set());
    assert_eq!(ev.wait_timeout(Duration::from_secs(5)), Ok(()));
    ev.clear();
    assert!(!ev.is_set());
}

#[test]
fn wait_async_and_a_restart_without_persistence_is_a_clear_panic() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let mut server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let ev = conn.event().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(
            tokio::time::timeout(Duration::from_millis(100), ev.wait_async())
                .await
                .is_err()
        );
    });
    ev.set();
    rt.block_on(ev.wait_async());
    drop(rt);
    server.restart();
    let ev2 = ev.clone();
    // A wait retries through the reconnection, then finds the event gone.
    let r = std::thread::spawn(move || ev2.wait_timeout(Duration::from_secs(20))).join();
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("no longer exists"), "{msg}");
}
