//! `spawn`: a forked child whose inherited handles work and count as the child's own until it
//! drops them or ends. Each test starts its own server; they run one at a time (a spawn
//! registers the child on every connection of the process, so a server stopped by another
//! test meanwhile would fail it).

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::Watchdog;
use uniconc_core::{
    Event as _, JoinError, JoinHandle as _, Lock as _, Receiver as _, RecvTimeoutError,
    Semaphore as _, Sender as _, TryRecvError,
};
use uniconc_redis::LEASE;
use uniconc_redis::testing::RedisServer;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn a_parent_dropping_its_sender_right_after_spawn_leaves_the_channel_to_the_child() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let go = conn.event().unwrap();
    let child = uniconc_redis::spawn({
        let go = go.clone();
        move || {
            // Sends only once the parent has dropped its own sender.
            go.wait();
            tx.send(5).unwrap();
        }
    })
    .unwrap();
    // The parent holds no sender now: the child's copy keeps the channel connected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
    go.set();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(5));
    child.join().unwrap();
    // The child left when it dropped its sender, before it reported: no lease to wait for.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn a_child_killed_holding_the_last_sender_disconnects_the_receiver_within_a_lease() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let child = uniconc_redis::spawn(move || -> u32 {
        tx.send(1).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(1));
    child.kill().unwrap();
    assert_eq!(child.join(), Err(JoinError::Killed(libc::SIGKILL)));
    // The child's lease lapses: Disconnected, not a timeout.
    assert_eq!(
        rx.recv_timeout(LEASE * 3),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_lock_taken_in_the_child_excludes_the_parent_until_the_child_unlocks() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let (held_tx, held_rx) = conn.channel::<u64>(1).unwrap();
    let release = conn.event().unwrap();
    let child = uniconc_redis::spawn({
        let (lock, release) = (lock.clone(), release.clone());
        move || {
            let guard = lock.lock().unwrap();
            held_tx.send(guard.fencing_token()).unwrap();
            release.wait();
            drop(guard);
            String::from("unlocked")
        }
    })
    .unwrap();
    let token = held_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(lock.try_lock().is_err());
    release.set();
    assert_eq!(child.join().unwrap(), "unlocked");
    let guard = lock.lock().unwrap();
    assert!(guard.fencing_token() > token);
}

#[test]
fn a_permit_moved_into_the_child_is_released_once() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let sem = conn.semaphore(1).unwrap();
    let permit = sem.acquire();
    let child = uniconc_redis::spawn(move || drop(permit)).unwrap();
    child.join().unwrap();
    // Given back by the child only; the parent's copy of the closure released nothing.
    assert_eq!(sem.available(), 1);
}

#[test]
fn a_child_gives_up_the_handles_it_never_touched_when_it_ends() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    // The child inherits a copy of `tx` (it is in the parent's memory) but never uses it.
    let child = uniconc_redis::spawn(|| 6 * 7).unwrap();
    assert_eq!(child.join(), Ok(42));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn a_panicking_child_gives_up_its_handles() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let child = uniconc_redis::spawn(move || -> u32 {
        let _tx = tx;
        panic!("boom")
    })
    .unwrap();
    assert_eq!(child.join(), Err(JoinError::Panicked("boom".into())));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn spawn_async_runs_the_future_with_inherited_handles() {
    let _s = serial();
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let child = uniconc_redis::spawn_async(async move {
        let mut sum = 0;
        while let Ok(v) = rx.recv_async().await {
            sum += v;
        }
        sum
    })
    .unwrap();
    for i in 1..=4 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(child.join(), Ok(10));
}
