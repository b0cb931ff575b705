//! The barrier against a real, private redis-server.

mod common;

use std::time::{Duration, Instant};

use common::Watchdog;
use uniconc_core::{Barrier as _, ErrorKind, WaitError};
use uniconc_redis::testing::RedisServer;

#[test]
fn one_leader_per_generation_over_several_rounds() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let barrier = conn.barrier(3).unwrap();
    assert_eq!(barrier.parties(), 3);
    let rounds = 5 * common::scale();
    let units: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || (0..rounds).map(|_| u32::from(b.wait())).sum::<u32>())
        })
        .collect();
    let mut leaders: u32 = (0..rounds).map(|_| u32::from(barrier.wait())).sum();
    for u in units {
        leaders += u.join().unwrap();
    }
    assert_eq!(leaders as usize, rounds);
}

#[test]
fn a_unit_that_times_out_withdraws() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let barrier = conn.barrier(2).unwrap();
    let start = Instant::now();
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    // Withdrawn: one more arrival alone does not complete the round.
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    let other = barrier.clone();
    let h = std::thread::spawn(move || other.wait());
    let mine = barrier.wait_timeout(Duration::from_secs(30)).unwrap();
    assert_ne!(mine, h.join().unwrap());
}

#[test]
fn a_cancelled_async_wait_withdraws() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let barrier = conn.barrier(2).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(
            tokio::time::timeout(Duration::from_millis(200), barrier.wait_async())
                .await
                .is_err()
        );
    });
    drop(rt);
    // The withdrawal runs after the cancellation: give it time, then one unit alone must still
    // wait.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    let other = barrier.clone();
    let h = std::thread::spawn(move || other.wait());
    assert_ne!(barrier.wait(), h.join().unwrap());
}

#[test]
fn zero_parties_is_invalid_argument() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    assert_eq!(
        conn.barrier(0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(conn.barrier(1).unwrap().wait());
}
