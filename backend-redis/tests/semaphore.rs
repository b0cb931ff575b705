//! The semaphore against a real, private redis-server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Watchdog, read_tagged, role, scale, spawn_role_piped};
use uniconc_core::{ErrorKind, Semaphore as _, WaitError};
use uniconc_redis::testing::{RedisServer, wait_counts};

#[test]
fn permits_are_counted_and_move_between_threads() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let sem = conn.semaphore(2).unwrap();
    assert_eq!(sem.available(), 2);
    let a = sem.acquire();
    let b = sem.try_acquire().unwrap();
    assert_eq!(sem.try_acquire().unwrap_err(), WaitError::WouldBlock);
    let start = Instant::now();
    assert_eq!(
        sem.acquire_timeout(Duration::from_millis(300)).unwrap_err(),
        WaitError::Timeout
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    // A permit taken here is given back by another thread.
    a.forget();
    let waiter = std::thread::spawn({
        let sem = sem.clone();
        move || sem.acquire().forget()
    });
    std::thread::sleep(Duration::from_millis(200));
    std::thread::spawn({
        let sem = sem.clone();
        move || sem.release()
    })
    .join()
    .unwrap();
    waiter.join().unwrap();
    drop(b);
    assert_eq!(sem.available(), 1);
}

#[test]
fn at_most_n_holders() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let sem = conn.semaphore(2).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let rounds = 20 * common::scale();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (sem, inside) = (sem.clone(), inside.clone());
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let p = sem.acquire();
                    // SeqCst: the count itself is the test.
                    assert!(inside.fetch_add(1, Ordering::SeqCst) < 2, "three holders");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sem.available(), 2);
}

#[test]
fn async_take_cancelled_loses_no_permit() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let sem = conn.semaphore(1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = sem.acquire_async().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), sem.acquire_async())
                .await
                .is_err()
        );
        drop(p);
    });
    drop(rt);
    // The permit comes back, whether the cancelled take got it (and returned it) or not.
    let p = sem.acquire_timeout(Duration::from_secs(10)).unwrap();
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sem.available() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sem.available(), 1);
}

#[test]
fn too_many_permits_is_invalid_argument() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let e = conn.semaphore(usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn contending_takers_are_woken_by_the_releases() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let entry = "contending_takers_are_woken_by_the_releases";
    let Some(r) = role() else {
        // The waits are counted per process: they run in a child of their own, which prints
        // how they ended.
        let server = RedisServer::start();
        let mut child = spawn_role_piped(entry, &server.url());
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let line = read_tagged(&mut out, "waits ");
        assert!(child.wait().unwrap().success());
        let (woken, polled) = line.split_once(' ').unwrap();
        let (woken, polled): (u64, u64) = (woken.parse().unwrap(), polled.parse().unwrap());
        // As for the lock (tests/lock.rs): a lost wake-up leaves a waiter asleep until the
        // poll while the others take every turn.
        assert!(
            polled <= 2 + woken / 20,
            "{polled} waits slept the whole fallback poll ({woken} were woken)"
        );
        return;
    };
    // The child: three threads take the one permit in turn, each holding it a while.
    let conn = uniconc_redis::connect(&r[0]).unwrap();
    let sem = conn.semaphore(1).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let rounds = 60 * scale();
    let before = wait_counts();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (sem, inside) = (sem.clone(), inside.clone());
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    assert!(sem.take_deadline(None));
                    // SeqCst: the check itself is the test; no other data rides on it.
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    std::thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = wait_counts();
    println!(
        "waits {} {}",
        after.woken - before.woken,
        after.polled - before.polled
    );
}
