//! The event against a real, private redis-server.

mod common;

use std::time::{Duration, Instant};

use common::{Watchdog, read_tagged, role, scale, spawn_role_piped};
use uniconc_core::{Event as _, WaitError};
use uniconc_redis::testing::{RedisServer, wait_counts};

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

#[test]
fn ping_pong_waiters_are_woken_by_each_set() {
    let _w = Watchdog::new(Duration::from_secs(240));
    let entry = "ping_pong_waiters_are_woken_by_each_set";
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
        // Each round waits once on each side; a lost wake-up sleeps until the poll.
        assert!(
            polled <= 2 + woken / 20,
            "{polled} waits slept the whole fallback poll ({woken} were woken)"
        );
        return;
    };
    // The child: two threads hand a turn back and forth through two events.
    let conn = uniconc_redis::connect(&r[0]).unwrap();
    let (ping, pong) = (conn.event().unwrap(), conn.event().unwrap());
    let rounds = 60 * scale();
    let before = wait_counts();
    let other = std::thread::spawn({
        let (ping, pong) = (ping.clone(), pong.clone());
        move || {
            for _ in 0..rounds {
                ping.wait();
                ping.clear();
                std::thread::sleep(Duration::from_millis(1));
                pong.set();
            }
        }
    });
    for _ in 0..rounds {
        pong.clear();
        ping.set();
        pong.wait();
    }
    other.join().unwrap();
    let after = wait_counts();
    println!(
        "waits {} {}",
        after.woken - before.woken,
        after.polled - before.polled
    );
}
