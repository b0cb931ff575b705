//! The lock against a real, private redis-server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Watchdog;
use uniconc_core::{Lock as _, LockError, TryLockError};
use uniconc_redis::testing::RedisServer;

#[test]
fn uncontended_lock_and_unlock_take_two_round_trips() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    // The first use of each script loads it (a NOSCRIPT reply, then SCRIPT LOAD): warm up.
    drop(lock.lock().unwrap());
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let calls = |raw: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(raw).unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_"))
            .filter(|l| !l.starts_with("cmdstat_info") && !l.starts_with("cmdstat_zadd"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before_client = conn.commands_sent();
    let before_server = calls(&mut raw);
    let g = lock.lock().unwrap();
    drop(g);
    let sent = conn.commands_sent() - before_client;
    let seen = calls(&mut raw) - before_server;
    assert_eq!(sent, 2, "lock + unlock, counted by the client");
    // The server may also have run the lease renewer's script meanwhile (at most once per
    // handle per period); what counts is the client's two.
    assert!(seen >= 2, "the server saw {seen} commands");
}

#[test]
fn mutual_exclusion_between_threads() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let inside = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let rounds = 30 * common::scale();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (lock, inside, total) = (lock.clone(), inside.clone(), total.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..rounds {
                    let g = lock.lock().unwrap();
                    assert!(g.fencing_token() > last);
                    last = g.fencing_token();
                    // SeqCst: the check itself is the test; no other data rides on it.
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    total.fetch_add(1, Ordering::SeqCst);
                    inside.store(false, Ordering::SeqCst);
                    drop(g);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(total.load(Ordering::SeqCst), 3 * rounds as u64);
}

#[test]
fn try_lock_and_timeout() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let other = conn.open_lock(lock.id()).unwrap();
    let g = lock.lock().unwrap();
    assert!(lock.is_locked());
    assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    let start = Instant::now();
    assert!(matches!(
        other.lock_timeout(Duration::from_millis(300)),
        Err(TryLockError::Timeout)
    ));
    assert!(start.elapsed() >= Duration::from_millis(300));
    let first = g.fencing_token();
    g.unlock().unwrap();
    assert!(!lock.is_locked());
    let g2 = other.try_lock().unwrap();
    assert!(g2.fencing_token() > first);
}

#[test]
fn a_waiter_is_woken_by_the_release() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let g = lock.lock().unwrap();
    let h = std::thread::spawn({
        let lock = lock.clone();
        move || lock.lock().map(|g| g.fencing_token()).unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    let first = g.fencing_token();
    drop(g);
    assert!(h.join().unwrap() > first);
}

#[test]
fn a_holder_that_panics_poisons_once() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let l2 = lock.clone();
    let r = std::thread::spawn(move || {
        let _g = l2.lock().unwrap();
        panic!("boom");
    })
    .join();
    assert!(r.is_err());
    // The release of a panicking holder runs in the background: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock.is_locked() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(lock.lock(), Err(LockError::Poisoned(_))));
    assert!(lock.lock().is_ok(), "reported once");
}

#[test]
fn lock_async_and_a_cancelled_waiter_leaves_the_lock_free() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let g = lock.lock_async().await.unwrap();
        let first = g.fencing_token();
        // A waiter that gives up while the lock is held.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), lock.lock_async())
                .await
                .is_err()
        );
        drop(g);
        let g = lock.lock_async().await.unwrap();
        assert!(g.fencing_token() > first);
    });
    drop(rt);
    // The release of a guard dropped inside a runtime runs in the background.
    let g = lock.lock_timeout(Duration::from_secs(10)).unwrap();
    drop(g);
}
