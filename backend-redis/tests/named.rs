//! Named objects and travelling handles against a real, private redis-server, across separate
//! programs: this test binary re-run in a role, sharing nothing with the test but the server.

mod common;

use std::io::BufRead as _;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Watchdog, role};
use uniconc_core::{
    Backend as _, Barrier as _, ErrorKind, Event as _, Receiver as _, RecvError, RecvTimeoutError,
    Sender as _, TryRecvError, Value as _,
};
use uniconc_redis::testing::RedisServer;
use uniconc_redis::{Barrier, Redis, Sender};

/// This binary's server, the default connection's (named objects live there). Started by a
/// thread that lives as long as the binary, so the server goes with it.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    let url = URL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server = RedisServer::start();
            let _ = tx.send(server.url());
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("could not start redis-server")
    });
    uniconc_redis::set_default_url(url).expect("the default connection");
    url
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Runs this binary again as `entry` in `role`, its stdout piped.
fn spawn_piped(entry: &str, role: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(common::ROLE_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-running the test binary")
}

/// The first line of the child's stdout that starts with `tag`, without the tag.
fn line_from(child: &mut std::process::Child, tag: &str) -> String {
    let out = child.stdout.as_mut().expect("piped");
    for line in std::io::BufReader::new(out).lines() {
        let line = line.expect("the child's stdout");
        if let Some(rest) = line.strip_prefix(tag) {
            return rest.to_owned();
        }
    }
    panic!("the child ended without printing {tag}");
}

/// The worker program: opens the named line, makes a reply channel, sends its `Sender` back
/// through the line, and checks what comes back.
#[test]
fn reply_worker_role() {
    let Some(r) = role() else { return };
    uniconc_redis::set_default_url(&r[0]).unwrap();
    let line = Redis::named(&r[1])
        .existing()
        .sender::<Sender<u64>>(Some(1))
        .unwrap();
    let (tx, rx) = Redis::channel::<u64>(4).unwrap();
    line.send(tx).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(42));
    // The asker's copy was the only sender left.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn a_worker_program_sends_back_its_reply_sender_through_a_named_channel() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let url = server_url();
    let name = format!("test-reply-line-{}", std::process::id());
    let line = Redis::named(&name)
        .create_new()
        .receiver::<Sender<u64>>(Some(1))
        .unwrap();
    let mut worker = common::spawn_role("reply_worker_role", &format!("{url}|{name}"));
    let reply = line.recv_timeout(Duration::from_secs(60)).unwrap();
    reply.send(42).unwrap();
    drop(reply);
    assert!(worker.wait().unwrap().success());
    assert!(Redis::named(&name).unlink().unwrap());
}

/// The serializer program: opens the sender `id`, serializes it (a handle in flight), prints
/// the bytes, drops its own sender and waits to be killed.
#[test]
fn flight_serializer_role() {
    let Some(r) = role() else { return };
    let conn = uniconc_redis::connect(&r[0]).unwrap();
    let tx = conn.open_sender::<u64>(&r[1]).unwrap();
    let bytes = encode(&tx);
    drop(tx);
    println!("bytes {}", hex(&bytes));
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_serializers_handle_in_flight_is_released_within_a_lease() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    let url = server_url();
    let conn = uniconc_redis::connect(url).unwrap();
    let (tx, rx) = conn.channel::<u64>(4).unwrap();
    let mut child = spawn_piped("flight_serializer_role", &format!("{url}|{}", tx.id()));
    let bytes = unhex(&line_from(&mut child, "bytes "));
    drop(tx);
    // The only sender is in flight, held by the serializer: connected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(500)),
        Err(RecvTimeoutError::Timeout)
    );
    common::signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let killed = Instant::now();
    // Released once its lease lapses (the watchdog bounds the wait).
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert!(killed.elapsed() <= Duration::from_secs(60));
    // Nothing brought back from the dead: the bytes no longer give a sender.
    assert!(decode::<Sender<u64>>(&bytes).is_err());
}

#[test]
fn bytes_read_again_give_a_clone_and_another_type_takes_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let url = server_url();
    let conn = uniconc_redis::connect(url).unwrap();
    let (tx, rx) = conn.channel::<u64>(4).unwrap();
    let bytes = encode(&tx);
    drop(tx);
    let e = decode::<Sender<u32>>(&bytes).unwrap_err();
    assert!(e.contains("read as"), "{e}");
    let first = decode::<Sender<u64>>(&bytes).unwrap();
    let again = decode::<Sender<u64>>(&bytes).unwrap(); // one more clone while held
    first.send(1).unwrap();
    again.send(2).unwrap();
    assert_eq!((rx.recv(), rx.recv()), (Ok(1), Ok(2)));
    drop((first, again));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert!(decode::<Sender<u64>>(&bytes).is_err(), "no sender left");

    let barrier = conn.barrier(2).unwrap();
    let there: Barrier = decode(&encode(&barrier)).unwrap();
    assert_eq!(there.parties(), 2);
    let t = std::thread::spawn(move || there.wait());
    let leaders = [barrier.wait(), t.join().unwrap()];
    assert_eq!(leaders.iter().filter(|l| **l).count(), 1);
}

/// The creator program: creates the named value and ends without unlinking it.
#[test]
fn value_creator_role() {
    let Some(r) = role() else { return };
    uniconc_redis::set_default_url(&r[0]).unwrap();
    let v = Redis::named(&r[1]).create_new().value(5u64).unwrap();
    v.store(6);
}

#[test]
fn a_named_object_outlives_the_program_that_created_it_until_unlinked() {
    if role().is_some() {
        return;
    }
    let _w = Watchdog::new(Duration::from_secs(60));
    let url = server_url();
    let name = format!("test-outlives-{}", std::process::id());
    let mut creator = common::spawn_role("value_creator_role", &format!("{url}|{name}"));
    assert!(creator.wait().unwrap().success());
    let v = Redis::named(&name).existing().value(0u64).unwrap();
    assert_eq!(v.load(), 6);
    assert!(Redis::named(&name).unlink().unwrap());
    let e = Redis::named(&name).existing().value(0u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(v.load(), 6); // the handle outlives its name
}

#[test]
fn a_name_whose_object_is_gone_counts_as_free() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let url = server_url();
    let name = format!("test-dangling-{}", std::process::id());
    let ev = Redis::named(&name).create_new().event().unwrap();
    ev.set();
    // The object's keys vanish as they do after the idle TTL (or a flush): the name dangles.
    let mut raw = redis::Client::open(url).unwrap().get_connection().unwrap();
    for part in ["m", "h"] {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("uc:{{{}}}:{part}", ev.id()))
            .query(&mut raw)
            .unwrap();
    }
    let e = Redis::named(&name).existing().event().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let fresh = Redis::named(&name).event().unwrap();
    assert!(!fresh.is_set());
    assert_ne!(fresh.id(), ev.id());
    assert!(Redis::named(&name).unlink().unwrap());
}

#[test]
fn a_named_channel_stays_connected_until_unlinked() {
    let _w = Watchdog::new(Duration::from_secs(60));
    server_url();
    let name = format!("test-pinned-{}", std::process::id());
    let (tx, rx) = Redis::named(&name).channel::<u8>(2).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)); // the name holds a sender
    let tx = Redis::named(&name)
        .existing()
        .sender::<u8>(Some(2))
        .unwrap();
    tx.send(1).unwrap();
    assert!(Redis::named(&name).unlink().unwrap());
    assert_eq!(rx.recv(), Ok(1));
    drop(tx);
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}
