//! Map and List against a real, private redis-server: every method, the races (threads and
//! processes), refusals that change nothing, and the lifetime of the keys.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Watchdog, role, scale, spawn_role};
use uniconc_core::{ErrorKind, List as _, Map as _, Receiver as _, Sender as _, codec};
use uniconc_redis::testing::RedisServer;

/// Encodes fine unless it holds 13.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 does not encode"));
        }
        s.serialize_newtype_struct("Picky", &self.0)
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// How many keys the server holds (every object's keys are `uc:{<id>}:…`).
fn keys_on(server: &RedisServer) -> usize {
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("uc:*").query(&mut c).unwrap();
    keys.len()
}

#[test]
fn map_every_method() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<String, u64>().unwrap();
    assert!(m.is_empty());
    assert_eq!(m.insert("a".into(), 1).unwrap(), None);
    assert_eq!(m.insert("b".into(), 2).unwrap(), None);
    assert_eq!(m.insert("a".into(), 10).unwrap(), Some(1));
    assert_eq!(m.len(), 2);
    assert_eq!(m.get("a").unwrap(), Some(10));
    assert_eq!(m.get(&"b".to_owned()).unwrap(), Some(2));
    assert_eq!(m.get("c").unwrap(), None);
    assert!(m.contains_key("a").unwrap());
    assert!(!m.contains_key("c").unwrap());
    assert_eq!(sorted(m.keys().unwrap()), ["a", "b"]);
    assert_eq!(sorted(m.values().unwrap()), [2, 10]);
    assert_eq!(
        sorted(m.to_vec().unwrap()),
        [("a".to_owned(), 10), ("b".to_owned(), 2)]
    );
    assert_eq!(m.iter().unwrap().count(), 2);
    assert_eq!(m.remove("b").unwrap(), Some(2));
    assert_eq!(m.remove("b").unwrap(), None);
    // update: insert, change, remove, return.
    assert!(m.update("n".into(), |v| v.replace(5).is_none()).unwrap());
    assert_eq!(
        m.update("n".into(), |v| {
            *v.as_mut().unwrap() += 1;
            7
        })
        .unwrap(),
        7
    );
    assert_eq!(m.get("n").unwrap(), Some(6));
    assert_eq!(m.update("n".into(), Option::take).unwrap(), Some(6));
    assert!(!m.contains_key("n").unwrap());
    assert!(!m.update("none".into(), |v| v.is_some()).unwrap());
    assert_eq!(m.get_or_insert_with("g".into(), || 1).unwrap(), 1);
    assert_eq!(m.get_or_insert_with("g".into(), || 2).unwrap(), 1);
    m.clear();
    assert!(m.is_empty());
    m.insert("c".into(), 3).unwrap();
    assert_eq!(m.to_vec().unwrap(), [("c".to_owned(), 3)]);
    // Opened by id: the same map; of another kind: refused.
    let same = conn.open_map::<String, u64>(m.id()).unwrap();
    assert_eq!(same.get("c").unwrap(), Some(3));
    assert_eq!(
        conn.open_list::<u64>(m.id()).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        conn.open_map::<u8, u8>("not hex").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn map_refusals_change_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<u32, Picky>().unwrap();
    m.insert(1, Picky(1)).unwrap();
    for err in [
        m.insert(2, Picky(13)).unwrap_err(),
        m.insert(1, Picky(13)).unwrap_err(),
        m.update(1, |v| *v = Some(Picky(13))).unwrap_err(),
        m.update(3, |v| *v = Some(Picky(13))).unwrap_err(),
        m.get_or_insert_with(4, || Picky(13)).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    assert_eq!(m.to_vec().unwrap(), [(1, Picky(1))]);
    // Keys that do not encode.
    let k = conn.map::<Picky, u32>().unwrap();
    for err in [
        k.insert(Picky(13), 1).unwrap_err(),
        k.get(&Picky(13)).unwrap_err(),
        k.remove(&Picky(13)).unwrap_err(),
        k.contains_key(&Picky(13)).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    assert!(k.is_empty());
    // Over the codec's limit (the pages are never touched: the size comes from the length).
    let big = conn.map::<u32, Vec<u8>>().unwrap();
    big.insert(1, vec![1]).unwrap();
    let err = big.insert(1, vec![0u8; codec::LIMIT + 1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(big.get(&1).unwrap(), Some(vec![1]));
    // A stored value of another type does not decode.
    let other = conn.open_map::<u32, u64>(big.id()).unwrap();
    assert_eq!(other.get(&1).unwrap_err().kind(), ErrorKind::InvalidMessage);
    // After a refusal the lease is free again: another update goes through at once.
    m.update(1, |v| *v = Some(Picky(2))).unwrap();
    assert_eq!(m.get(&1).unwrap(), Some(Picky(2)));
}

#[test]
fn map_panicking_update_changes_nothing_and_releases() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<u32, u64>().unwrap();
    m.insert(1, 100).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.update(1, |v| {
            *v = Some(999);
            panic!("halfway");
        })
    }));
    assert!(r.is_err());
    assert_eq!(m.get(&1).unwrap(), Some(100));
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.get_or_insert_with(2, || panic!("no value"))
    }));
    assert!(r.is_err());
    assert!(!m.contains_key(&2).unwrap());
    // Released: a write does not wait for a lease (that would take LEASE).
    let t = std::time::Instant::now();
    m.insert(3, 3).unwrap();
    m.update(1, |v| *v.as_mut().unwrap() += 1).unwrap();
    assert_eq!(m.get(&1).unwrap(), Some(101));
    assert!(
        t.elapsed() < uniconc_redis::LEASE,
        "a panicked update left its lease"
    );
}

#[test]
fn map_update_from_threads_counts_exactly_and_inserts_once() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<String, u64>().unwrap();
    let rounds = 200 * scale() as u64;
    let units = 4u64;
    let start = Arc::new(Barrier::new(units as usize));
    let inserted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hs: Vec<_> = (0..units)
        .map(|id| {
            let (m, start, inserted) = (m.clone(), start.clone(), inserted.clone());
            std::thread::spawn(move || {
                start.wait();
                let got = m
                    .get_or_insert_with("once".into(), || {
                        // Relaxed: a count read after the joins.
                        inserted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        id
                    })
                    .unwrap();
                for _ in 0..rounds {
                    m.update("n".into(), |c| *c.get_or_insert(0) += 1).unwrap();
                    // Plain writes wait for the update lease: none is lost.
                    m.insert(format!("k{id}"), 0).unwrap();
                }
                got
            })
        })
        .collect();
    let got: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(inserted.load(std::sync::atomic::Ordering::Relaxed), 1);
    let once = m.get("once").unwrap().unwrap();
    assert!(got.iter().all(|&g| g == once), "{got:?} vs {once}");
    assert_eq!(m.get("n").unwrap(), Some(units * rounds));
    assert_eq!(m.len(), 2 + units as usize);
}

#[test]
fn map_update_from_processes_counts_exactly() {
    let _w = Watchdog::new(Duration::from_secs(180));
    if let Some(r) = role() {
        // A child: [url, map id, rounds].
        let conn = uniconc_redis::connect(&r[0]).unwrap();
        let m = conn.open_map::<String, u64>(&r[1]).unwrap();
        let rounds: u64 = r[2].parse().unwrap();
        for _ in 0..rounds {
            m.update("n".into(), |c| *c.get_or_insert(0) += 1).unwrap();
        }
        return;
    }
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<String, u64>().unwrap();
    let rounds = 200 * scale() as u64;
    let children: Vec<_> = (0..3)
        .map(|_| {
            spawn_role(
                "map_update_from_processes_counts_exactly",
                &format!("{}|{}|{rounds}", server.url(), m.id()),
            )
        })
        .collect();
    for _ in 0..rounds {
        m.update("n".into(), |c| *c.get_or_insert(0) += 1).unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(m.get("n").unwrap(), Some(4 * rounds));
}

#[test]
fn map_snapshots_are_consistent() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<u64, u64>().unwrap();
    let n = 500 * scale() as u64;
    let m2 = m.clone();
    let writer = std::thread::spawn(move || {
        for k in 0..n {
            m2.insert(k, 2 * k).unwrap();
        }
    });
    loop {
        let done = writer.is_finished();
        let entries: BTreeMap<u64, u64> = m.to_vec().unwrap().into_iter().collect();
        assert!(entries.keys().enumerate().all(|(i, &k)| k == i as u64));
        assert!(entries.iter().all(|(&k, &v)| v == 2 * k));
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(m.len() as u64, n);
}

#[test]
fn list_every_method() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let l = conn.list::<u32>().unwrap();
    assert!(l.is_empty());
    assert_eq!(l.pop().unwrap(), None);
    l.push(1).unwrap();
    l.push(2).unwrap();
    assert_eq!(l.get(1).unwrap(), Some(2));
    assert_eq!(l.get(2).unwrap(), None);
    assert_eq!(l.get(usize::MAX).unwrap(), None);
    l.set(0, 10).unwrap();
    assert_eq!(l.set(2, 0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    l.insert(1, 5).unwrap(); // middle
    l.insert(0, 0).unwrap(); // front
    l.insert(4, 9).unwrap(); // end
    assert_eq!(
        l.insert(6, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(l.to_vec().unwrap(), [0, 10, 5, 2, 9]);
    assert_eq!(l.remove(2).unwrap(), 5); // middle
    assert_eq!(l.remove(0).unwrap(), 0); // front
    assert_eq!(l.remove(2).unwrap(), 9); // end
    assert_eq!(l.remove(2).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(l.to_vec().unwrap(), [10, 2]);
    assert_eq!(l.pop().unwrap(), Some(2));
    assert_eq!(l.len(), 1);
    l.extend(0..5).unwrap();
    l.extend([]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [10, 0, 1, 2, 3, 4]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [4, 3, 2, 1, 0, 10]);
    l.truncate(10);
    assert_eq!(l.len(), 6);
    l.truncate(2);
    assert_eq!(l.iter().unwrap().collect::<Vec<_>>(), [4, 3]);
    let max = l
        .update(|v| {
            v.push(7);
            v.sort();
            v.last().copied()
        })
        .unwrap();
    assert_eq!(max, Some(7));
    assert_eq!(l.to_vec().unwrap(), [3, 4, 7]);
    l.truncate(0);
    assert!(l.is_empty());
    l.push(1).unwrap();
    l.clear();
    assert!(l.is_empty());
    // Larger than one Lua unpack: extend, insert in the middle, reverse.
    let n = 5_000u32;
    l.extend(0..n).unwrap();
    l.insert(1, n).unwrap();
    assert_eq!(l.remove(1).unwrap(), n);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), (0..n).rev().collect::<Vec<_>>());
    let same = conn.open_list::<u32>(l.id()).unwrap();
    assert_eq!(same.len(), n as usize);
}

#[test]
fn list_refusals_change_nothing() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let l = conn.list::<Picky>().unwrap();
    l.extend([Picky(1), Picky(2)]).unwrap();
    for err in [
        l.push(Picky(13)).unwrap_err(),
        l.set(0, Picky(13)).unwrap_err(),
        l.insert(0, Picky(13)).unwrap_err(),
        l.extend([Picky(3), Picky(13)]).unwrap_err(),
        l.update(|v| v.push(Picky(13))).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    assert_eq!(l.to_vec().unwrap(), [Picky(1), Picky(2)]);
    let r = catch_unwind(AssertUnwindSafe(|| {
        l.update(|v| {
            v.clear();
            panic!("halfway")
        })
    }));
    assert!(r.is_err());
    assert_eq!(l.to_vec().unwrap(), [Picky(1), Picky(2)]);
    let t = std::time::Instant::now();
    l.push(Picky(3)).unwrap();
    assert!(
        t.elapsed() < uniconc_redis::LEASE,
        "a panicked update left its lease"
    );
}

#[test]
fn list_update_excludes_pushes_from_threads() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let l = conn.list::<u64>().unwrap();
    let rounds = 100 * scale() as u64;
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    l.push(i).unwrap();
                    // A whole-list change: sorted, with its length appended and then removed;
                    // a push interleaved would be lost or misplaced.
                    l.update(|v| {
                        v.sort_unstable();
                        v.push(u64::MAX);
                        v.pop();
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(l.len() as u64, 3 * rounds);
}

#[test]
fn keys_are_deleted_with_the_last_handle() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let m = conn.map::<u8, u8>().unwrap();
    m.insert(1, 1).unwrap();
    let l = conn.list::<u8>().unwrap();
    l.push(1).unwrap();
    let m2 = conn.open_map::<u8, u8>(m.id()).unwrap();
    assert!(keys_on(&server) >= 4);
    drop((m, l));
    assert_eq!(m2.get(&1).unwrap(), Some(1), "a handle is left");
    drop(m2);
    assert_eq!(keys_on(&server), 0);
}

// ---------------------------------------------------------------------------------------------
// The channel's batch forms
// ---------------------------------------------------------------------------------------------

#[test]
fn batches_arrive_in_order() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.unbounded::<u64>().unwrap();
    let n = 5_000u64;
    assert_eq!(tx.send_batch(0..n).unwrap(), n as usize);
    assert_eq!(tx.send_batch(std::iter::empty()).unwrap(), 0);
    let mut buf = Vec::new();
    assert_eq!(
        rx.recv_batch(&mut buf, 0).unwrap(),
        0,
        "max 0: nothing, at once"
    );
    assert_eq!(rx.recv_batch(&mut buf, 100).unwrap(), 100);
    while buf.len() < n as usize {
        let got = rx.recv_batch(&mut buf, usize::MAX).unwrap();
        assert!((1..=uniconc_redis::channel::BATCH).contains(&got));
    }
    assert_eq!(buf, (0..n).collect::<Vec<_>>());
    // Mixed with the single forms.
    tx.send(1).unwrap();
    tx.send_batch([2, 3]).unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    buf.clear();
    assert_eq!(rx.recv_batch(&mut buf, 10).unwrap(), 2);
    assert_eq!(buf, [2, 3]);
}

#[test]
fn send_batch_waits_for_room_and_never_overfills() {
    let _w = Watchdog::new(Duration::from_secs(120));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let cap = 8;
    let (tx, rx) = conn.channel::<u64>(cap).unwrap();
    let n = 2_000 * scale() as u64;
    let sender = std::thread::spawn(move || tx.send_batch(0..n).unwrap());
    let mut buf = Vec::new();
    while buf.len() < n as usize {
        assert!(rx.len() <= cap, "over capacity");
        let got = rx.recv_batch(&mut buf, 5).unwrap();
        assert!((1..=5).contains(&got));
    }
    assert_eq!(sender.join().unwrap(), n as usize);
    assert_eq!(buf, (0..n).collect::<Vec<_>>());
}

#[test]
fn recv_batch_blocks_until_one_arrives() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.channel::<u64>(4).unwrap();
    let pause = Duration::from_millis(300);
    let t = std::time::Instant::now();
    let h = std::thread::spawn(move || {
        std::thread::sleep(pause);
        tx.send(7).unwrap();
        tx
    });
    let mut buf = Vec::new();
    assert_eq!(rx.recv_batch(&mut buf, 64).unwrap(), 1);
    assert!(t.elapsed() >= pause);
    assert_eq!(buf, [7]);
    // Senders gone: what is queued first, then Disconnected.
    let tx = h.join().unwrap();
    tx.send_batch([8, 9]).unwrap();
    drop(tx);
    assert_eq!(rx.recv_batch(&mut buf, 64).unwrap(), 2);
    assert_eq!(
        rx.recv_batch(&mut buf, 64),
        Err(uniconc_core::RecvError::Disconnected)
    );
    assert_eq!(buf, [7, 8, 9]);
}

#[test]
fn send_batch_disconnected_hands_back_the_item_and_leaves_the_rest() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    // Already disconnected: the first item comes back, nothing else is taken.
    let (tx, rx) = conn.channel::<u64>(64).unwrap();
    assert_eq!(tx.send_batch(0..10).unwrap(), 10);
    drop(rx);
    let mut rest = 20..25;
    let err = tx.send_batch(&mut rest).unwrap_err();
    assert_eq!(err.into_inner(), 20);
    assert_eq!(rest, 21..25);
    // Part-way: the receiver leaves while the sender waits for room.
    let (tx, rx) = conn.channel::<u64>(4).unwrap();
    let receiver = std::thread::spawn(move || {
        for i in 0..6 {
            assert_eq!(rx.recv().unwrap(), i);
        }
    });
    let mut rest = 0..100u64;
    let err = tx.send_batch(&mut rest).unwrap_err();
    receiver.join().unwrap();
    let failed = err.into_inner();
    assert!(failed >= 6, "{failed}");
    assert_eq!(
        rest,
        failed + 1..100,
        "nothing after the failed item was taken"
    );
}

#[test]
fn send_batch_stops_at_a_message_that_does_not_encode() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let (tx, rx) = conn.unbounded::<Picky>().unwrap();
    let mut items = [1, 2, 13, 4].map(Picky).into_iter();
    match tx.send_batch(&mut items) {
        Err(uniconc_core::SendError::Invalid(v, _)) => assert_eq!(v, Picky(13)),
        other => panic!("{other:?}"),
    }
    assert_eq!(items.next(), Some(Picky(4)));
    let mut buf = Vec::new();
    assert_eq!(rx.recv_batch(&mut buf, 10).unwrap(), 2);
    assert_eq!(buf, [Picky(1), Picky(2)]);
}
