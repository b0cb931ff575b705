//! Select over Redis channels against a real, private redis-server: wake-ups from another
//! thread and another process, timeouts, disconnection (a peer dropped or SIGKILLed), send arms
//! on full channels, `select_async`. Child processes re-run this binary in a role (`role_*`
//! tests do nothing otherwise).

mod common;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use common::{Watchdog, read_tagged, reap, role, scale, signal, spawn_role_piped};
use uniconc_core::select::{self, Select, SelectTimeoutError};
use uniconc_core::{Receiver as _, RecvError, SendError, Sender as _};
use uniconc_redis::LEASE;
use uniconc_redis::testing::RedisServer;

/// Child: joins channel `id` as a sender, says `ready`; then, for each line on stdin, sleeps a
/// little and sends the line's number. Killed by the test.
#[test]
fn role_select_sender() {
    let Some(r) = role() else { return };
    if r[0] != "select-sender" {
        return;
    }
    let conn = uniconc_redis::connect(&r[1]).unwrap();
    let tx = conn.open_sender::<u32>(&r[2]).unwrap();
    println!("ready");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap() > 0 {
        // Late enough that the select is usually asleep by then.
        std::thread::sleep(Duration::from_millis(200));
        tx.send(line.trim().parse().unwrap()).unwrap();
        line.clear();
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn takes_the_ready_one_and_leaves_the_other() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (tx2, rx2) = conn.channel::<String>(4).unwrap();
    tx2.send("two".to_owned()).unwrap();
    let mut sel = Select::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    assert!(sel.try_ready().is_ok_and(|i| i == i2));
    let oper = sel.try_select().unwrap();
    assert_eq!(oper.index(), i2);
    assert_eq!(oper.recv(&rx2), Ok("two".to_owned()));
    assert!(sel.try_select().is_err());
    assert!(sel.try_ready().is_err());
    tx1.send(1).unwrap();
    let oper = sel.select();
    assert_eq!(oper.index(), i1);
    assert_eq!(oper.recv(&rx1), Ok(1));
    assert_eq!(rx2.len(), 0);
}

#[test]
fn woken_by_another_threads_send() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (tx2, rx2) = conn.channel::<u32>(4).unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            tx2.send(i).unwrap();
        }
    });
    let mut sel = Select::new();
    sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    for i in 0..3 {
        let oper = sel.select();
        assert_eq!(oper.index(), i2);
        assert_eq!(oper.recv(&rx2), Ok(i));
    }
    sender.join().unwrap();
}

#[test]
fn woken_by_another_processs_send() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (tx2, rx2) = conn.channel::<u32>(4).unwrap();
    let mut child = spawn_role_piped(
        "role_select_sender",
        &format!("select-sender|{}|{}", server.url(), tx2.id()),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_tagged(&mut out, "ready");
    let mut stdin = child.stdin.take().unwrap();
    let mut sel = Select::new();
    sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    for n in [7, 8] {
        writeln!(stdin, "{n}").unwrap();
        let oper = sel
            .select_timeout(Duration::from_secs(20))
            .expect("the child's message wakes the select");
        assert_eq!(oper.index(), i2);
        assert_eq!(oper.recv(&rx2), Ok(n));
    }
    reap(child);
}

#[test]
fn timeouts_and_timers() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (_tx2, rx2) = conn.channel::<u32>(4).unwrap();
    let timer = select::after(Duration::from_secs(3600));
    let mut sel = Select::new();
    sel.recv(&rx1);
    sel.recv(&rx2);
    // Longer than POLL: the periodic re-checks do not end the wait early.
    let wait = Duration::from_millis(600);
    let start = Instant::now();
    assert_eq!(sel.select_timeout(wait).unwrap_err(), SelectTimeoutError);
    assert!(start.elapsed() >= wait);
    let start = Instant::now();
    assert!(sel.ready_timeout(Duration::from_millis(300)).is_err());
    assert!(start.elapsed() >= Duration::from_millis(300));
    // A timer in a select of Redis channels.
    let soon = select::after(Duration::from_millis(400));
    let mut sel = Select::new();
    sel.recv(&rx1);
    sel.recv(&timer);
    let it = sel.recv(&soon);
    sel.recv(&rx2);
    let start = Instant::now();
    let oper = sel.select();
    assert_eq!(oper.index(), it);
    assert!(oper.recv(&soon).is_ok());
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn dropping_the_last_sender_fires_disconnected() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (tx2, rx2) = conn.channel::<u32>(4).unwrap();
    tx2.send(5).unwrap();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(tx2);
    });
    let mut sel = Select::new();
    sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    // The queued message first, then the disconnection.
    let oper = sel.select();
    assert_eq!(oper.index(), i2);
    assert_eq!(oper.recv(&rx2), Ok(5));
    let oper = sel.select_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(oper.index(), i2);
    assert_eq!(oper.recv(&rx2), Err(RecvError::Disconnected));
    dropper.join().unwrap();
}

/// Starts a child holding the only sender of a channel; returns the child, the receiver, and
/// a second channel (whose sender the test keeps) to select with.
fn killed_sender_setup(
    server: &RedisServer,
    conn: &uniconc_redis::Connection,
) -> (
    std::process::Child,
    uniconc_redis::Receiver<u32>,
    (uniconc_redis::Sender<u32>, uniconc_redis::Receiver<u32>),
) {
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let mut child = spawn_role_piped(
        "role_select_sender",
        &format!("select-sender|{}|{}", server.url(), tx.id()),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_tagged(&mut out, "ready");
    drop(tx); // the child's sender is the last one now
    (child, rx, conn.channel::<u32>(4).unwrap())
}

#[test]
fn a_select_whose_sender_process_is_killed_fires_disconnected() {
    if role().is_some() {
        return;
    }
    // A lease to lapse, and plenty of slack for a loaded machine.
    let _w = Watchdog::new(LEASE * 12);
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (child, rx, (_tx_other, rx_other)) = killed_sender_setup(&server, &conn);
    let mut sel = Select::new();
    sel.recv(&rx_other);
    let ia = sel.recv(&rx);
    // Still connected while the child lives.
    assert!(sel.select_timeout(Duration::from_millis(400)).is_err());
    signal(&child, libc::SIGKILL);
    let killed = Instant::now();
    // Within a lease and a poll period (nothing is published when a lease lapses: the select's
    // periodic re-check notices); without a deadline, so that a select that never notices
    // hangs until the watchdog (a deadline would end the wait with one last check).
    let oper = sel.select();
    assert_eq!(oper.index(), ia);
    assert_eq!(oper.recv(&rx), Err(RecvError::Disconnected));
    eprintln!("disconnected {:?} after the kill", killed.elapsed());
    reap(child);
}

#[test]
fn an_async_select_whose_sender_process_is_killed_fires_disconnected() {
    if role().is_some() {
        return;
    }
    // A lease to lapse, and plenty of slack for a loaded machine.
    let _w = Watchdog::new(LEASE * 12);
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (child, rx, (_tx_other, rx_other)) = killed_sender_setup(&server, &conn);
    signal(&child, libc::SIGKILL);
    let killed = Instant::now();
    // Nothing is published when a lease lapses: only the POLL re-check of the async wait
    // notices.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut sel = Select::new();
        sel.recv(&rx_other);
        let ia = sel.recv(&rx);
        // Without a deadline, as above.
        let oper = sel.select_async().await;
        assert_eq!(oper.index(), ia);
        oper.recv(&rx)
    });
    assert_eq!(got, Err(RecvError::Disconnected));
    eprintln!("disconnected {:?} after the kill", killed.elapsed());
    reap(child);
}

#[test]
fn a_send_arm_on_a_full_channel() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (full_tx, full_rx) = conn.channel::<u32>(1).unwrap();
    let (other_tx, other_rx) = conn.channel::<u32>(1).unwrap();
    full_tx.send(0).unwrap();
    let mut value = Some(5);
    // Another operation fires: the value stays in its slot.
    other_tx.send(9).unwrap();
    {
        let mut sel = Select::new();
        let is = sel.send(&full_tx, &mut value);
        let ir = sel.recv(&other_rx);
        assert_eq!(sel.try_ready(), Ok(ir));
        let oper = sel.select();
        assert_eq!(oper.index(), ir);
        assert_ne!(is, ir);
        assert_eq!(oper.recv(&other_rx), Ok(9));
    }
    assert_eq!(value, Some(5));
    // Room appears in another thread: the send fires.
    let taker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        full_rx.recv().unwrap()
    });
    let mut sel = Select::new();
    let is = sel.send(&full_tx, &mut value);
    sel.recv(&other_rx);
    let oper = sel.select_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(oper.index(), is);
    assert_eq!(oper.send(&full_tx), Ok(()));
    drop(sel);
    assert_eq!(value, None);
    assert_eq!(taker.join().unwrap(), 0);
    assert_eq!(full_tx.len(), 1);
    // Every receiver gone: the send fires with its value back.
    let (full_tx, full_rx) = conn.channel::<u32>(1).unwrap();
    full_tx.send(0).unwrap();
    let mut value = Some(6);
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(full_rx);
    });
    let mut sel = Select::new();
    let is = sel.send(&full_tx, &mut value);
    sel.recv(&other_rx);
    let oper = sel.select_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(oper.index(), is);
    assert_eq!(oper.send(&full_tx), Err(SendError::Disconnected(6)));
    dropper.join().unwrap();
}

#[test]
fn the_macro_runs_a_worker_with_a_stop_channel() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (jobs_tx, jobs) = conn.channel::<u64>(16).unwrap();
    let (results_tx, results) = conn.channel::<u64>(16).unwrap();
    let (stop_tx, stop) = conn.channel::<()>(1).unwrap();
    let worker = std::thread::spawn(move || {
        let mut handled = 0;
        loop {
            uniconc_core::select! {
                recv(jobs) -> job => match job {
                    Ok(n) => {
                        results_tx.send(n * n).unwrap();
                        handled += 1;
                    }
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
                default(Duration::from_secs(20)) => break,
            }
        }
        handled
    });
    jobs_tx.send_batch([1, 2, 3]).unwrap();
    assert_eq!(results.iter().take(3).sum::<u64>(), 1 + 4 + 9);
    stop_tx.send(()).unwrap();
    assert_eq!(worker.join().unwrap(), 3);
}

#[test]
fn select_async_is_woken_and_cancel_safe() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (tx2, rx2) = conn.channel::<u32>(4).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sel = Select::new();
        sel.recv(&rx1);
        let i2 = sel.recv(&rx2);
        // Cancelled before anything arrived: nothing taken.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sel.select_async())
                .await
                .is_err()
        );
        let tx = tx2.clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.send(4).unwrap();
        });
        let oper = tokio::time::timeout(Duration::from_secs(20), sel.select_async())
            .await
            .expect("another thread's send wakes the async select");
        assert_eq!(oper.index(), i2);
        assert_eq!(oper.recv(&rx2), Ok(4));
        sender.join().unwrap();
        // Disconnection wakes it too.
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(tx2);
        });
        let oper = tokio::time::timeout(Duration::from_secs(20), sel.select_async())
            .await
            .unwrap();
        assert_eq!(oper.index(), i2);
        assert_eq!(oper.recv(&rx2), Err(RecvError::Disconnected));
        dropper.join().unwrap();
    });
}

/// Two threads send `n` messages each on their own channel; one select takes them all: every
/// message arrives once, in order per channel (no lost wake-up strands a message: the run
/// would hang until the watchdog).
#[test]
fn every_message_arrives_once_through_a_select() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let n = 200 * scale() as u32;
    let (txa, rxa) = conn.channel::<u32>(2).unwrap();
    let (txb, rxb) = conn.channel::<u32>(2).unwrap();
    let senders: Vec<_> = [txa, txb]
        .into_iter()
        .map(|tx| {
            std::thread::spawn(move || {
                for i in 0..n {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 2];
    let mut sel = Select::new();
    let ia = sel.recv(&rxa);
    let ib = sel.recv(&rxb);
    let mut open = 2;
    while open > 0 {
        let oper = sel.select();
        let (k, rx) = if oper.index() == ia {
            (0, &rxa)
        } else {
            assert_eq!(oper.index(), ib);
            (1, &rxb)
        };
        match oper.recv(rx) {
            Ok(v) => {
                assert_eq!(v, next[k], "channel {k}");
                next[k] += 1;
            }
            Err(RecvError::Disconnected) => {
                sel.remove(if k == 0 { ia } else { ib });
                open -= 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, [n, n]);
    for s in senders {
        s.join().unwrap();
    }
}

/// A select that finds nothing ready sleeps at once, without spinning (each try is a round
/// trip): a timed-out select over two idle channels costs one script per channel for the first
/// try, the re-check after registering and the last check at the deadline, no more.
#[test]
fn a_select_that_waits_does_not_spin_on_the_server() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx1, rx1) = conn.channel::<u32>(4).unwrap();
    let (_tx2, rx2) = conn.channel::<u32>(4).unwrap();
    let mut sel = Select::new();
    sel.recv(&rx1);
    sel.recv(&rx2);
    // Once, so that both subscriptions exist.
    assert!(sel.select_timeout(Duration::from_millis(10)).is_err());
    let before = conn.commands_sent();
    // Shorter than POLL: no periodic re-check within it.
    assert!(sel.select_timeout(Duration::from_millis(100)).is_err());
    let sent = conn.commands_sent() - before;
    // 3 tries of 2 channels (one more round if the wait ended a hair early); a spinning select
    // sends 20 more.
    assert!(sent <= 10, "{sent} commands for one select that waited");
}
