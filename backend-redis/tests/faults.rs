//! Faults: processes killed or paused, the server restarted or paused. Each test starts its own
//! server; child processes re-run this binary in a role (`role_*` tests do nothing otherwise).

mod common;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use common::{Watchdog, read_tagged, reap, role, signal, spawn_role_piped};
use uniconc_core::{ErrorKind, Lock as _, LockError, Receiver as _, RecvTimeoutError, Sender as _};
use uniconc_redis::LEASE;
use uniconc_redis::testing::{Persistence, RedisServer};

/// Child: joins channel `id` as a sender, sends 1, says `ready`, then waits to be killed.
#[test]
fn role_sender() {
    let Some(r) = role() else { return };
    if r[0] != "sender" {
        return;
    }
    let conn = uniconc_redis::connect(&r[1]).unwrap();
    let tx = conn.open_sender::<u32>(&r[2]).unwrap();
    tx.send(1).unwrap();
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn last_sender_process_killed_disconnects_receivers_within_a_lease() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(90));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let mut child = spawn_role_piped(
        "role_sender",
        &format!("sender|{}|{}", server.url(), tx.id()),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_tagged(&mut out, "ready");
    drop(tx); // the child's sender is the last one now
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
    // Still connected while the child lives.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(500)),
        Err(RecvTimeoutError::Timeout)
    );
    signal(&child, libc::SIGKILL);
    let killed = Instant::now();
    // Within one lease (plus a poll period and slack for a loaded machine): Disconnected, not a
    // timeout.
    assert_eq!(
        rx.recv_timeout(LEASE * 3),
        Err(RecvTimeoutError::Disconnected)
    );
    eprintln!("disconnected {:?} after the kill", killed.elapsed());
    assert!(rx.last_failure().is_none(), "{:?}", rx.last_failure());
    reap(child);
}

/// Child: opens lock `id`, takes it, prints its token, waits for a line on stdin, then prints
/// what `check` and `unlock` said.
#[test]
fn role_holder() {
    let Some(r) = role() else { return };
    if r[0] != "holder" {
        return;
    }
    let conn = uniconc_redis::connect(&r[1]).unwrap();
    let lock = conn.open_lock(&r[2]).unwrap();
    let g = lock.lock().unwrap();
    println!("token {}", g.fencing_token());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let check = g.check().map_err(|e| e.kind());
    let unlock = g.unlock().map_err(|e| e.kind());
    println!("after check={check:?} unlock={unlock:?}");
}

#[test]
fn a_paused_holder_loses_the_lock_to_owner_died_and_its_unlock_is_refused() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(90));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let lock = conn.lock().unwrap();
    let mut child = spawn_role_piped(
        "role_holder",
        &format!("holder|{}|{}", server.url(), lock.id()),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let old: u64 = read_tagged(&mut out, "token ").parse().unwrap();
    signal(&child, libc::SIGSTOP);
    let stopped = Instant::now();
    let g = match lock.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    assert!(
        stopped.elapsed() >= LEASE / 2,
        "taken before the holder's lease ran out"
    );
    assert!(g.fencing_token() > old);
    signal(&child, libc::SIGCONT);
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let after = read_tagged(&mut out, "after ");
    assert_eq!(after, "check=Err(Closed) unlock=Err(Closed)");
    // The new holder still holds it.
    g.check().unwrap();
    assert!(lock.is_locked());
    drop(g);
    assert!(!lock.is_locked());
    reap(child);
}

#[test]
fn a_server_restarted_without_persistence_fails_open_handles_clearly() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(90));
    let mut server = RedisServer::start_with(Persistence::None, None);
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let lock = conn.lock().unwrap();
    tx.send(1).unwrap();
    server.restart();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)),
        Err(RecvTimeoutError::Disconnected),
        "the queued message is gone with the server's data: no silent carrying on"
    );
    let why = rx.last_failure().expect("a cause");
    assert!(why.contains("no longer exists"), "{why}");
    assert!(tx.send(2).is_err());
    let e = lock
        .lock_checked(Some(Instant::now() + Duration::from_secs(20)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    // New objects work on the restarted server.
    let (tx, rx) = conn.channel::<u32>(1).unwrap();
    tx.send(3).unwrap();
    assert_eq!(rx.recv(), Ok(3));
}

#[test]
fn with_aof_a_restart_keeps_the_state_and_clients_reconnect() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(90));
    let mut server = RedisServer::start_with(Persistence::Aof, None);
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(8).unwrap();
    let lock = conn.lock().unwrap();
    let first = lock.lock().unwrap().fencing_token();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    server.restart();
    for i in 0..3 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(i));
    }
    tx.send_timeout(9, Duration::from_secs(20)).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(9));
    let g = lock.lock_timeout(Duration::from_secs(20)).unwrap();
    assert!(g.fencing_token() > first, "the fence counter survived");
}

#[test]
fn a_paused_server_gives_timeouts_then_recovers_without_duplicates() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(64).unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        tx.send(i).unwrap();
        sent.push(i);
    }
    server.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    // Paused longer than the client's response timeout (2 s), shorter than a lease.
    let mut maybe = Vec::new();
    match tx.send_timeout(5, Duration::from_millis(300)) {
        Ok(()) => panic!("a send to a stopped server succeeded"),
        Err(e) => maybe.push(e.into_inner()),
    }
    assert!(tx.last_failure().is_some_and(|f| f.contains("timed out")));
    let paused = Duration::from_millis(2500);
    if let Some(rest) = paused.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    server.signal(libc::SIGCONT);
    for i in 7..10 {
        if let Err(e) = tx.send_timeout(i, Duration::from_secs(20)) {
            panic!("{e:?} after the pause: {:?}", tx.last_failure());
        }
        sent.push(i);
    }
    let mut got = Vec::new();
    while let Ok(v) = rx.recv_timeout(Duration::from_secs(2)) {
        got.push(v);
    }
    let mut dedup = got.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), got.len(), "duplicated: {got:?}");
    for s in &sent {
        assert!(got.contains(s), "{s} lost: {got:?}");
    }
    for g in &got {
        assert!(sent.contains(g) || maybe.contains(g), "{g} never sent");
    }
}

#[test]
fn a_child_forked_outside_spawn_uses_inherited_handles_on_a_connection_of_its_own() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let lock = conn.lock().unwrap();
    // SAFETY: fork(2) has no memory-safety preconditions. The child uses only this thread's
    // data, glibc's malloc (fork-safe through its atfork handlers) and fresh threads of its own,
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The parent's handles: they work through the child's own connection (no hang on
            // a connection whose driver is in the parent).
            tx.send(6).unwrap();
            drop(lock.lock().unwrap());
            // Reopened by id works as well.
            let tx2 = conn.open_sender::<u32>(tx.id()).unwrap();
            tx2.send(7).unwrap();
            let lock2 = conn.open_lock(lock.id()).unwrap();
            drop(lock2.lock().unwrap());
            drop((tx2, lock2));
        }))
        .is_ok();
        // SAFETY: _exit(2) ends the child without running the parent's atexit handlers or
        // destructors twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(6));
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
    // The parent's handles still work: the child's exit did not take their leases.
    tx.send(8).unwrap();
    assert_eq!(rx.recv(), Ok(8));
    drop(lock.lock().unwrap());
}

/// A send and a receive in flight while the server is paused past the response timeout: each
/// is retried under its request id once the server is back, and whichever copy runs first is
/// the one that counts, so every message arrives once, in order.
#[test]
fn a_pause_past_the_response_timeout_loses_and_duplicates_nothing_in_flight() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(8).unwrap();
    let n: u32 = 400 * u32::try_from(common::scale()).unwrap_or(1);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            if let Err(e) = tx.send(i) {
                panic!("send {i}: {e:?}: {:?}", tx.last_failure());
            }
        }
        tx.last_failure()
    });
    let count = received.clone();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match rx.recv() {
                Ok(v) => got.push(v),
                Err(_) => return (got, rx.last_failure()),
            }
            // Relaxed: a progress counter, ordered with nothing else.
            count.store(
                u32::try_from(got.len()).unwrap(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    });
    while received.load(std::sync::atomic::Ordering::Relaxed) < n / 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.signal(libc::SIGSTOP);
    // Longer than the response timeout (2 s), shorter than a lease.
    std::thread::sleep(Duration::from_millis(3500));
    server.signal(libc::SIGCONT);
    let send_failure = sender.join().unwrap();
    let (got, recv_failure) = receiver.join().unwrap();
    // Both sides were in flight during the pause.
    assert!(
        send_failure
            .as_deref()
            .is_some_and(|f| f.contains("timed out")),
        "{send_failure:?}"
    );
    assert!(
        recv_failure
            .as_deref()
            .is_some_and(|f| f.contains("timed out")),
        "{recv_failure:?}"
    );
    let expected: Vec<u32> = (0..n).collect();
    if got != expected {
        let mut seen = std::collections::HashSet::new();
        let dups: Vec<u32> = got.iter().copied().filter(|v| !seen.insert(*v)).collect();
        let lost: Vec<u32> = expected
            .iter()
            .copied()
            .filter(|v| !seen.contains(v))
            .collect();
        panic!(
            "duplicated {dups:?}, lost {lost:?} (got {} messages)",
            got.len()
        );
    }
}
