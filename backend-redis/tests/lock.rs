//! The lock against a real, private redis-server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Watchdog, read_tagged, role, scale, spawn_role_piped};
use uniconc_core::{Lock as _, LockError, TryLockError};
use uniconc_redis::testing::{RedisServer, wait_counts};

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

#[test]
fn contending_processes_are_woken_by_the_releases() {
    let _w = Watchdog::new(Duration::from_secs(240));
    if let Some(r) = role() {
        // A child: [url, lock id, rounds]. Prints how its waits ended. (Nothing but sleeps
        // under the lock: a file written there can stall for longer than the fallback poll
        // when the machine's disk is busy, which would look like a lost wake-up.)
        let conn = uniconc_redis::connect(&r[0]).unwrap();
        let lock = conn.open_lock(&r[1]).unwrap();
        let rounds: u64 = r[2].parse().unwrap();
        let before = wait_counts();
        println!("ready");
        for _ in 0..rounds {
            let g = lock.lock().unwrap();
            // Held a while, so that the others' attempts find it held and they sleep.
            std::thread::sleep(Duration::from_millis(2));
            drop(g);
            // Work outside the lock: the others take it meanwhile, so that nearly every
            // acquisition waits for a release (without it the releaser takes the lock back
            // at once, round after round, and the others rarely wait).
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = wait_counts();
        println!(
            "waits {} {}",
            after.woken - before.woken,
            after.polled - before.polled
        );
        return;
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let rounds = 100 * scale() as u64;
    let procs = 3;
    // Held until every child is about to contend, so that they all do.
    let g = lock.lock().unwrap();
    let mut children: Vec<_> = (0..procs)
        .map(|_| {
            spawn_role_piped(
                "contending_processes_are_woken_by_the_releases",
                &format!("{}|{}|{rounds}", server.url(), lock.id()),
            )
        })
        .collect();
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| std::io::BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for out in &mut outs {
        read_tagged(out, "ready");
    }
    let first = g.fencing_token();
    drop(g);
    let (mut woken, mut polled) = (0, 0);
    for (mut c, mut out) in children.into_iter().zip(outs) {
        let line = read_tagged(&mut out, "waits ");
        let (w, p) = line.split_once(' ').unwrap();
        woken += w.parse::<u64>().unwrap();
        polled += p.parse::<u64>().unwrap();
        assert!(c.wait().unwrap().success());
    }
    let total = procs * rounds;
    // Every acquisition took the next fencing token.
    assert_eq!(lock.lock().unwrap().fencing_token(), first + total + 1);
    // Every nap of a waiter here ends with a release's wake-up, except when no release came
    // for a whole fallback period (a holder descheduled that long on a loaded machine): a
    // few. A lost wake-up makes a waiter sleep through the releases until the poll (and the
    // others take every turn meanwhile, so there are few naps, most of them polls: 3 woken
    // and 7 polled in a run without the release's PUBLISH).
    assert!(
        polled <= 2 + woken / 20,
        "{polled} waits slept the whole fallback poll ({woken} were woken) in {total} \
         acquisitions"
    );
}
