//! Value and Array against a real, private redis-server.

mod common;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::Watchdog;
use uniconc_core::{Array as _, ErrorKind, LockError, Value as _};
use uniconc_redis::testing::RedisServer;

#[test]
fn value_basic_ops() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let v = conn.value([1u32, 2, 3]).unwrap();
    assert_eq!(v.load(), [1, 2, 3]);
    v.store([4, 5, 6]);
    assert_eq!(v.load(), [4, 5, 6]);
    let sum = v.update(|x| {
        x[0] += 10;
        x.iter().sum::<u32>()
    });
    assert_eq!(sum, 25);
    {
        let mut g = v.lock().unwrap();
        g[2] = 0;
        assert!(g.fencing_token() > 0);
    }
    assert_eq!(v.load(), [14, 5, 0]);
    let g = v.lock().unwrap();
    assert_eq!(*g, [14, 5, 0]);
    g.commit().unwrap();
    // Another handle, opened by id, is the same value; the wrong size is refused.
    let other = conn.open_value::<[u32; 3]>(v.id()).unwrap();
    other.store([7, 8, 9]);
    assert_eq!(v.load(), [7, 8, 9]);
    let e = conn.open_value::<u8>(v.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(v.last_failure().is_none());
}

#[test]
fn array_basic_ops_and_out_of_bounds() {
    let _w = Watchdog::new(Duration::from_secs(60));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let a = conn.array::<u64>(4).unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!(a.to_vec(), [0; 4]);
    a.set(1, 11).unwrap();
    a.set(3, u64::MAX).unwrap();
    assert_eq!(a.get(1), Some(11));
    assert_eq!(a.get(3), Some(u64::MAX));
    assert_eq!(a.get(4), None);
    let e = a.set(4, 99).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(a.to_vec(), [0, 11, 0, u64::MAX], "nothing written");
    {
        let mut g = a.lock().unwrap();
        for (i, x) in g.iter_mut().enumerate() {
            *x = i as u64 * 2;
        }
    }
    assert_eq!(a.to_vec(), [0, 2, 4, 6]);
    let b = conn.array_from_slice(&[1.5f32, -2.0, 3.25]).unwrap();
    assert_eq!(b.to_vec(), [1.5, -2.0, 3.25]);
    let opened = conn.open_array::<f32>(b.id()).unwrap();
    assert_eq!(opened.len(), 3);
    opened.set(0, 9.0).unwrap();
    assert_eq!(b.get(0), Some(9.0));
    let empty = conn.array::<u16>(0).unwrap();
    assert!(empty.is_empty());
    assert!(empty.to_vec().is_empty());
    let e = conn.array::<u64>(usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn four_threads_doing_250_updates_each_end_at_1000() {
    let _w = Watchdog::new(Duration::from_secs(300));
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let v = conn.value(0u64).unwrap();
    let per = 250 * common::scale() as u64;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            std::thread::spawn(move || {
                for _ in 0..per {
                    v.update(|x| *x += 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(v.load(), 4 * per);
}

/// The child of `a_paused_holders_write_back_is_refused`: opens the value, locks it, says so,
/// and (once resumed after its lease lapsed) writes 99 and reports what happened.
fn paused_holder(args: &[String]) {
    let (url, id, how) = (&args[1], &args[2], args[3].as_str());
    let conn = uniconc_redis::connect(url).unwrap();
    let v = conn.open_value::<u64>(id).unwrap();
    let mut g = v.lock().unwrap();
    println!("locked {}", g.fencing_token());
    std::io::stdout().flush().unwrap();
    // The parent stops this process (SIGSTOP) here, then resumes it and sends a line.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    *g = 99;
    let outcome = match how {
        "commit" => match g.commit() {
            Ok(()) => "accepted".to_owned(),
            Err(e) => format!("refused {:?} {e}", e.kind()),
        },
        _ => {
            drop(g);
            match v.last_failure() {
                None => "accepted".to_owned(),
                Some(f) => format!("recorded {f}"),
            }
        }
    };
    println!("outcome {outcome}");
    std::io::stdout().flush().unwrap();
}

fn paused_holder_case(how: &str) {
    let server = RedisServer::start();
    let conn = uniconc_redis::connect(&server.url()).unwrap();
    let v = conn.value(1u64).unwrap();
    let entry = if how == "commit" {
        "a_paused_holders_commit_is_refused"
    } else {
        "a_paused_holders_drop_is_refused_and_recorded"
    };
    let mut child =
        common::spawn_role_piped(entry, &format!("paused|{}|{}|{how}", server.url(), v.id()));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let first: u64 = common::read_tagged(&mut out, "locked ")
        .trim()
        .parse()
        .unwrap();
    common::signal(&child, libc::SIGSTOP);
    // The child's lease lapses (its renewer is stopped too): this acquirer is told.
    let mut g = match v.lock() {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("the paused holder's lock was taken without OwnerDied"),
        Err(LockError::Poisoned(_)) => panic!("Poisoned instead of OwnerDied"),
    };
    assert!(g.fencing_token() > first);
    assert_eq!(*g, 1, "the paused holder wrote nothing");
    *g = 7;
    g.commit().unwrap();
    common::signal(&child, libc::SIGCONT);
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let outcome = common::read_tagged(&mut out, "outcome ");
    assert!(child.wait().unwrap().success());
    let expected = if how == "commit" {
        "refused Closed"
    } else {
        "recorded"
    };
    assert!(
        outcome.starts_with(expected),
        "the child reported: {outcome}"
    );
    assert!(outcome.contains("refused"), "{outcome}");
    assert_eq!(v.load(), 7, "the stale holder's write was refused");
    // The lock is free again: the refused write-back released nothing it did not hold.
    assert_eq!(v.update(|x| *x), 7);
}

#[test]
fn a_paused_holders_commit_is_refused() {
    if let Some(args) = common::role() {
        return paused_holder(&args);
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    paused_holder_case("commit");
}

#[test]
fn a_paused_holders_drop_is_refused_and_recorded() {
    if let Some(args) = common::role() {
        return paused_holder(&args);
    }
    let _w = Watchdog::new(Duration::from_secs(120));
    paused_holder_case("drop");
}
