//! Channels against a real, private redis-server.

mod common;

use std::future::Future as _;
use std::time::{Duration, Instant};

use common::Watchdog;
use uniconc_core::{
    ErrorKind, Receiver as _, RecvTimeoutError, SendTimeoutError, Sender as _, TryRecvError,
    TrySendError,
};
use uniconc_redis::testing::{Persistence, RedisServer};

#[test]
fn send_recv_in_order() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<(u32, String)>(8).unwrap();
    for i in 0..8 {
        tx.send((i, format!("m{i}"))).unwrap();
    }
    assert_eq!(tx.len(), 8);
    assert!(tx.is_full());
    for i in 0..8 {
        assert_eq!(rx.recv().unwrap(), (i, format!("m{i}")));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn bounded_exactly() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u8>(3).unwrap();
    assert_eq!(tx.capacity(), Some(3));
    for i in 0..3 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
    let start = Instant::now();
    assert_eq!(
        tx.send_timeout(9, Duration::from_millis(300)),
        Err(SendTimeoutError::Timeout(9))
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(rx.recv().unwrap(), 0);
    tx.try_send(3).unwrap();
    assert_eq!(rx.len(), 3);
}

#[test]
fn zero_capacity_is_refused() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let e = conn.channel::<u8>(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn blocked_receiver_is_woken_by_a_send() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u64>(4).unwrap();
    let h = std::thread::spawn(move || {
        let r = rx.recv();
        (r, rx.last_failure())
    });
    std::thread::sleep(Duration::from_millis(200));
    if let Err(e) = tx.send(7) {
        panic!("{e:?} {:?} {:?}", tx.last_failure(), h.join().unwrap());
    }
    assert_eq!(h.join().unwrap(), (Ok(7), None));
}

#[test]
fn blocked_sender_is_woken_by_a_recv() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u64>(1).unwrap();
    tx.send(1).unwrap();
    let h = std::thread::spawn(move || tx.send(2));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(h.join().unwrap(), Ok(()));
    assert_eq!(rx.recv().unwrap(), 2);
}

#[test]
fn dropping_every_sender_disconnects_after_draining() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u8>(4).unwrap();
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    drop(tx);
    tx2.send(2).unwrap();
    let h = std::thread::spawn({
        let rx = rx.clone();
        move || (rx.recv(), rx.recv(), rx.recv())
    });
    std::thread::sleep(Duration::from_millis(100));
    drop(tx2);
    let (a, b, c) = h.join().unwrap();
    assert_eq!((a, b), (Ok(1), Ok(2)));
    assert!(c.is_err(), "disconnected after draining");
    assert!(rx.is_closed());
}

#[test]
fn dropping_every_receiver_fails_send_with_the_value() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<String>(4).unwrap();
    tx.send("queued".into()).unwrap();
    drop(rx);
    let e = tx.send("late".into()).unwrap_err();
    assert_eq!(e.into_inner(), "late");
    assert_eq!(
        tx.len(),
        0,
        "queued messages are dropped with the last receiver"
    );
}

#[test]
fn close_disconnects_everyone_and_receivers_drain() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u8>(4).unwrap();
    tx.send(5).unwrap();
    tx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.try_send(6), Err(TrySendError::Disconnected(6)));
    assert_eq!(rx.recv(), Ok(5));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn keys_are_removed_when_every_handle_is_gone() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u8>(4).unwrap();
    tx.send(1).unwrap();
    let id = tx.id().to_owned();
    drop(tx);
    drop(rx);
    let e = conn.open_receiver::<u8>(&id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("uc:*").query(&mut raw).unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[test]
fn open_by_id_shares_the_channel() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let other = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(2).unwrap();
    let tx2 = other.open_sender::<u32>(tx.id()).unwrap();
    assert_eq!(tx2.capacity(), Some(2));
    tx2.send(11).unwrap();
    assert_eq!(rx.recv(), Ok(11));
    assert!(other.open_sender::<u32>("not-hex").is_err());
}

#[test]
fn a_password_protected_server() {
    let server = RedisServer::start_with(Persistence::None, Some("s3cret"));
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u8>(1).unwrap();
    tx.send(1).unwrap();
    assert_eq!(rx.recv(), Ok(1));
    let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let e = uniconc_redis::connect(&wrong).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Os, "{e}");
}

#[test]
fn a_malformed_url_is_invalid_argument() {
    let e = uniconc_redis::connect("http://nowhere").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn async_forms_and_cancelled_recv_loses_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut got = rt.block_on(async {
        tx.send_async(1).await.unwrap();
        assert_eq!(rx.recv_async().await, Ok(1));
        // Receives cancelled while messages arrive: every message is received exactly once,
        // by a receive that completed or, put back, by the ones after.
        let mut got = Vec::new();
        for i in 0..20u32 {
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), rx.recv_async()).await {
                got.push(r.unwrap());
            }
            tx.send_async(100 + i).await.unwrap();
        }
        got
    });
    drop(rt);
    while let Ok(v) = rx.recv_timeout(Duration::from_millis(1500)) {
        got.push(v);
    }
    got.sort_unstable();
    assert_eq!(got, (100..120).collect::<Vec<u32>>());
}

#[test]
fn many_senders_and_receivers_lose_and_duplicate_nothing() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let n = 200 * common::scale() as u64;
    let (tx, rx) = conn.channel::<u64>(5).unwrap();
    let senders: Vec<_> = (0..3)
        .map(|s| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..n {
                    tx.send(s * 1_000_000 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || rx.iter().collect::<Vec<u64>>())
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut all: Vec<u64> = receivers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    all.sort_unstable();
    let mut want: Vec<u64> = (0..3)
        .flat_map(|s| (0..n).map(move |i| s * 1_000_000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(all, want);
}

/// A wait whose process stops listening to the channel meanwhile (this process's last handle
/// of the other side dropped) listens again, instead of spinning on the closed wake-up
/// receiver: it keeps to about one check per POLL.
#[test]
fn a_wait_survives_its_process_dropping_the_other_side() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    // A second connection: another holder of the sending side, so the channel stays connected.
    let peer = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let peer_tx = peer.open_sender::<u32>(tx.id()).unwrap();
    let receiver = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(300)); // the receiver is asleep by now
    drop(tx); // this process's last sender: it unsubscribes from the channel's wake-ups
    let before = conn.commands_sent();
    let window = Duration::from_secs(2);
    std::thread::sleep(window);
    let sent = conn.commands_sent() - before;
    // About window / POLL (8) checks; a spin sends thousands.
    assert!(sent < 100, "{sent} commands in {window:?} while waiting");
    // And the wake-up still works: the peer's message ends the wait.
    peer_tx.send(3).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok(3));
}

/// `len` right after a `recv_async` is cancelled with its message popped counts that message:
/// the put-back is waited for, as the next receive of this process waits for it.
#[test]
fn len_after_a_cancelled_recv_counts_the_message_put_back() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u32>(4).unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for i in 0..20 {
        tx.send(i).unwrap();
        {
            let mut fut = std::pin::pin!(rx.recv_async());
            // Starts the receive on the crate's runtime; it pops the message meanwhile.
            if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                assert_eq!(r, Ok(i));
                continue;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(rx.len(), 1, "the cancelled receive's message is back");
        assert_eq!(tx.len(), 1);
        assert_eq!(rx.try_recv(), Ok(i));
    }
}

/// Blocking calls made from inside an async runtime run on a helper thread per call: their
/// waits take the runtime's path, not a synchronous connection opened for each call.
#[test]
fn blocking_waits_inside_a_runtime_open_no_connection_per_call() {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (_tx, rx) = conn.channel::<u32>(4).unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let connections = |raw: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(raw).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_connections_received")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The first wait subscribes and loads the scripts.
    rt.block_on(async {
        assert!(rx.recv_timeout(Duration::from_millis(5)).is_err());
    });
    let before = connections(&mut raw);
    rt.block_on(async {
        for _ in 0..20 {
            assert!(rx.recv_timeout(Duration::from_millis(5)).is_err());
        }
    });
    let opened = connections(&mut raw) - before;
    assert!(opened < 5, "{opened} connections for 20 waits");
}
