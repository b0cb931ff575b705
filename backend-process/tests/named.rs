//! Named objects across unrelated processes: programs started with `std::process::Command`
//! (this test binary re-run in a role, see `child_role`), never forked, open the same
//! primitives by name. Bad names, wrong types and shapes, garbage files, a creator killed while
//! others hold the name, and the two-program example (`examples/named_queue.rs`) in either
//! order and with either program SIGKILLed.

#[path = "../examples/named_queue.rs"]
mod example;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uniconc::prelude::*;
use uniconc::{ErrorKind, LockError, RecvError, SendError};

type B = uniconc::Process;

const LIMIT: Duration = Duration::from_secs(120);
const ROLE: &str = "UNICONC_NAMED_ROLE";

/// A name unique to this test run; unlinked when dropped.
struct TestName(String);

impl TestName {
    fn new(tag: &str) -> Self {
        let n = Self(format!("test-{}-{tag}", std::process::id()));
        let _ = B::named(&n.0).unlink();
        n
    }
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = B::named(&self.0).unlink();
    }
}

fn file_of(name: &str) -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("uniconc.{name}"))
}

/// A started program, SIGKILLed and reaped if still running when dropped (a failed test
/// leaves no program behind).
struct Program(Child);

impl std::ops::Deref for Program {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Program {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts this test binary in `role` (see `child_role`), stdout piped.
fn start(role: &str, name: &str, n: u64) -> Program {
    Program(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, format!("{role} {name} {n}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a child program"),
    )
}

/// Waits for `child` (watchdog: kills it and fails after `LIMIT`); returns success and stdout.
fn finish(mut child: Program) -> (bool, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            return (status.success(), out);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("watchdog: child program still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `child`'s stdout up to a line equal to `line` (watchdog: `LIMIT`).
fn wait_line(child: &mut Program, line: &str) {
    let out = child.stdout.take().unwrap();
    let want = line.to_string();
    let found = watchdog(move || {
        let mut r = BufReader::new(out);
        let mut l = String::new();
        loop {
            l.clear();
            if r.read_line(&mut l).unwrap() == 0 {
                return false;
            }
            if l.trim_end().ends_with(want.as_str()) {
                return true;
            }
        }
    });
    assert!(found, "the child ended without printing {line:?}");
}

fn watchdog<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("watchdog: still running after {LIMIT:?}"))
}

/// Messages per example run: 1000 times `UNICONC_STRESS_SCALE`.
fn messages() -> u64 {
    1000 * std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1)
}

fn received(out: &str) -> (u64, u64) {
    // The harness prints "test child_role ... " before the line, on the same line.
    let line = out
        .lines()
        .find_map(|l| l.find("received ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no result line in {out:?}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[1].parse().unwrap(), w[3].parse().unwrap())
}

/// The roles the tests start this binary in. Without the variable: nothing (a normal run).
#[test]
fn child_role() {
    let Ok(spec) = std::env::var(ROLE) else {
        return;
    };
    let w: Vec<&str> = spec.split_whitespace().collect();
    let (role, name, n) = (w[0], w[1], w[2].parse::<u64>().unwrap());
    let code = match role {
        "producer" => i32::from(example::producer(name, n).is_err()),
        "consumer" => {
            let (count, sum) = example::consumer(name).unwrap();
            println!("received {count} sum {sum}");
            0
        }
        "lock-holder" => {
            // Creates a lock and a value, holds the lock, and waits to be killed.
            let lock = B::named(name).create_new().lock().unwrap();
            let v = B::named(&format!("{name}.v"))
                .create_new()
                .value(0u64)
                .unwrap();
            v.store(n);
            let g = lock.lock().unwrap();
            println!("locked");
            std::mem::forget(g);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "open-all" => {
            // Opens what the test created, checks it and changes it.
            let (tx, rx) = B::named(name).existing().channel::<String>(4).unwrap();
            let got = rx.recv().unwrap();
            tx.send(format!("{got} back")).unwrap();
            let a = B::named(&format!("{name}.a"))
                .existing()
                .array::<u32>(3)
                .unwrap();
            a.set(2, a.get(1).unwrap() + 1).unwrap();
            let m = B::named(&format!("{name}.m"))
                .existing()
                .map::<String, u64>()
                .unwrap();
            let l = B::named(&format!("{name}.l"))
                .existing()
                .list::<u64>()
                .unwrap();
            m.insert("child".into(), m.get("parent").unwrap().unwrap() + 1)
                .unwrap();
            l.push(l.get(0).unwrap().unwrap() * 2).unwrap();
            B::named(&format!("{name}.e"))
                .existing()
                .event()
                .unwrap()
                .set();
            0
        }
        _ => 2,
    };
    std::process::exit(code);
}

#[test]
fn bad_names_are_refused() {
    let long = "x".repeat(201);
    for bad in [
        "",
        "/",
        "a/b",
        "..",
        ".hidden",
        "sp ace",
        "tab\t",
        "é",
        long.as_str(),
    ] {
        let e = B::named(bad).lock().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        let e = B::named(bad).channel::<u8>(1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        let e = B::named(bad).value(0u8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
        assert_eq!(
            B::named(bad).unlink().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    // The longest accepted name is a file name (the prefix included).
    let n = TestName::new(&"y".repeat(150));
    B::named(&n.0).create_new().event().unwrap();
}

#[test]
fn exists_and_not_found() {
    let n = TestName::new("exists");
    let e = B::named(&n.0).existing().lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let l = B::named(&n.0).create_new().lock().unwrap();
    let e = B::named(&n.0).create_new().lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let l2 = B::named(&n.0).existing().lock().unwrap();
    let g = l.lock().unwrap();
    assert!(l2.try_lock().is_err()); // the same lock
    drop(g);
    let l3 = B::named(&n.0).lock().unwrap(); // open-or-create: opens
    assert!(l3.try_lock().is_ok());
    assert!(B::named(&n.0).unlink().unwrap());
    assert!(!B::named(&n.0).unlink().unwrap());
    // Unlinked: the old handles still work; a new create is a new lock.
    let _g = l.lock().unwrap();
    let fresh = B::named(&n.0).create_new().lock().unwrap();
    assert!(fresh.try_lock().is_ok());
}

#[test]
fn wrong_kind_type_or_shape_is_incompatible() {
    let n = TestName::new("shape");
    let incompatible = |e: uniconc::Error| assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    let _ch = B::named(&n.0).channel::<u32>(4).unwrap();
    incompatible(B::named(&n.0).channel::<u64>(4).unwrap_err());
    incompatible(B::named(&n.0).channel::<u32>(8).unwrap_err());
    incompatible(B::named(&n.0).unbounded::<u32>().unwrap_err());
    incompatible(B::named(&n.0).lock().unwrap_err());
    incompatible(B::named(&n.0).value(0u32).unwrap_err());
    let e = B::named(&n.0).event().unwrap_err();
    assert!(e.to_string().contains("is a channel, not an event"), "{e}");

    let v = TestName::new("shape-v");
    B::named(&v.0).value(5u32).unwrap();
    incompatible(B::named(&v.0).value(5u64).unwrap_err());
    incompatible(B::named(&v.0).value(5i32).unwrap_err());
    incompatible(B::named(&v.0).array::<u32>(1).unwrap_err());
    assert_eq!(B::named(&v.0).value(9u32).unwrap().load(), 5); // opened, not reset

    let a = TestName::new("shape-a");
    B::named(&a.0).array::<u16>(3).unwrap();
    incompatible(B::named(&a.0).array::<u16>(4).unwrap_err());
    incompatible(B::named(&a.0).array::<u8>(6).unwrap_err());

    let b = TestName::new("shape-b");
    B::named(&b.0).barrier(2).unwrap();
    incompatible(B::named(&b.0).barrier(3).unwrap_err());
    B::named(&b.0).barrier(2).unwrap();
}

#[test]
fn byte_budget_is_recorded_and_checked_on_open() {
    use uniconc::MessageError;
    let incompatible = |e: uniconc::Error| assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    let n = TestName::new("budget");
    let (tx, rx) = B::named(&n.0)
        .byte_budget(5000)
        .channel::<Vec<u8>>(4)
        .unwrap();
    assert_eq!(tx.max_message_size(), 8192); // rounded up to a power of two
    match tx.send(vec![0; 10_000]) {
        Err(SendError::Invalid(v, MessageError::TooLarge { .. })) => assert_eq!(v.len(), 10_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The same budget after rounding, or none: the creator's channel and budget.
    let same = B::named(&n.0)
        .byte_budget(8000)
        .sender::<Vec<u8>>(Some(4))
        .unwrap();
    assert_eq!(same.max_message_size(), 8192);
    let plain = B::named(&n.0).sender::<Vec<u8>>(Some(4)).unwrap();
    assert_eq!(plain.max_message_size(), 8192);
    same.send(vec![1; 6000]).unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().len(), 6000);
    // Another budget: refused, as another capacity is.
    incompatible(
        B::named(&n.0)
            .byte_budget(1 << 20)
            .channel::<Vec<u8>>(4)
            .unwrap_err(),
    );
    incompatible(
        B::named(&n.0)
            .byte_budget(1)
            .receiver::<Vec<u8>>(Some(4))
            .unwrap_err(),
    );
    let e = B::named(&n.0)
        .byte_budget((256 << 20) + 1)
        .channel::<Vec<u8>>(4)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // Unbounded: the budget replaces the large default reservation, and is checked as well.
    let u = TestName::new("budget-unbounded");
    let (tx, rx) = B::named(&u.0)
        .byte_budget(1 << 16)
        .unbounded::<Vec<u8>>()
        .unwrap();
    assert_eq!(tx.max_message_size(), 1 << 16);
    assert_eq!(
        B::named(&u.0)
            .unbounded::<Vec<u8>>()
            .unwrap()
            .0
            .max_message_size(),
        1 << 16
    );
    incompatible(
        B::named(&u.0)
            .byte_budget(1 << 20)
            .unbounded::<Vec<u8>>()
            .unwrap_err(),
    );
    tx.send(vec![2; 60_000]).unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().len(), 60_000);
    // A default named channel (no budget given) refuses an opener asking for a budget other
    // than its default ring.
    let d = TestName::new("budget-default");
    let (tx, _rx) = B::named(&d.0).channel::<u8>(4).unwrap();
    let default = tx.max_message_size();
    B::named(&d.0)
        .byte_budget(default)
        .channel::<u8>(4)
        .unwrap();
    incompatible(
        B::named(&d.0)
            .byte_budget(default * 2)
            .channel::<u8>(4)
            .unwrap_err(),
    );
}

#[test]
fn garbage_truncated_and_foreign_files_are_refused() {
    let n = TestName::new("garbage");
    let path = file_of(&n.0);
    let check = |what: &str| {
        for e in [
            B::named(&n.0).lock().unwrap_err(),
            B::named(&n.0).channel::<u8>(1).unwrap_err(),
            B::named(&n.0).existing().array::<u8>(1).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Incompatible, "{what}: {e}");
        }
    };
    std::fs::write(&path, b"").unwrap();
    check("empty file");
    std::fs::write(&path, vec![0xa5; 8192]).unwrap();
    check("garbage");
    // A real object's header with its body cut off.
    std::fs::remove_file(&path).unwrap();
    B::named(&n.0).channel::<u8>(1).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(4096 + 64).unwrap();
    drop(f);
    let e = B::named(&n.0).channel::<u8>(1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    // A header whose parameters were changed.
    std::fs::remove_file(&path).unwrap();
    B::named(&n.0).array::<u8>(16).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24] = 200; // the array's length parameter
    std::fs::write(&path, &bytes).unwrap();
    let e = B::named(&n.0).array::<u8>(200).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    // A symbolic link is not followed.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    let e = B::named(&n.0).lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_unrelated_process_opens_channel_array_event_map_and_list() {
    let n = TestName::new("unrelated");
    let (a_name, e_name) = (format!("{}.a", n.0), format!("{}.e", n.0));
    let _a_guard = TestName(a_name.clone());
    let _e_guard = TestName(e_name.clone());
    let (tx, rx) = B::named(&n.0).create_new().channel::<String>(4).unwrap();
    let a = B::named(&a_name).create_new().array::<u32>(3).unwrap();
    a.set(1, 41).unwrap();
    let ev = B::named(&e_name).create_new().event().unwrap();
    let (m_name, l_name) = (format!("{}.m", n.0), format!("{}.l", n.0));
    let _m_guard = TestName(m_name.clone());
    let _l_guard = TestName(l_name.clone());
    let m = B::named(&m_name).create_new().map::<String, u64>().unwrap();
    m.insert("parent".into(), 1).unwrap();
    let l = B::named(&l_name).create_new().list::<u64>().unwrap();
    l.push(21).unwrap();
    tx.send("ping".into()).unwrap();
    let child = start("open-all", &n.0, 0);
    let (ok, _) = finish(child);
    assert!(ok, "the other program failed");
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), "ping back");
    assert_eq!(a.to_vec(), [0, 41, 42]);
    assert!(ev.is_set());
    assert_eq!(m.get("child").unwrap(), Some(2));
    assert_eq!(l.to_vec().unwrap(), [21, 42]);
    let e = B::named(&m_name).map::<String, u32>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    let e = B::named(&l_name).map::<String, u64>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
}

#[test]
fn example_runs_with_the_consumer_started_first() {
    let n = TestName::new("consumer-first");
    let m = messages();
    let consumer = start("consumer", &n.0, 0);
    std::thread::sleep(Duration::from_millis(100)); // give it a head start (not required)
    let producer = start("producer", &n.0, m);
    assert!(finish(producer).0);
    let (ok, out) = finish(consumer);
    assert!(ok);
    assert_eq!(received(&out), (m, m * (m + 1) / 2));
}

#[test]
fn example_runs_with_the_producer_started_first() {
    let n = TestName::new("producer-first");
    let m = messages();
    let producer = start("producer", &n.0, m); // fills the queue, then waits for room
    std::thread::sleep(Duration::from_millis(100));
    let consumer = start("consumer", &n.0, 0);
    let (ok, out) = finish(consumer);
    assert!(ok);
    assert_eq!(received(&out), (m, m * (m + 1) / 2));
    assert!(finish(producer).0);
}

#[test]
fn a_sigkilled_producer_disconnects_the_consumer() {
    let n = TestName::new("kill-producer");
    let rx = B::named(&n.0)
        .receiver::<u64>(Some(example::CAPACITY))
        .unwrap();
    let mut producer = start("producer", &n.0, u64::MAX);
    // Its first message shows it is connected (counted as a sender).
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 1);
    producer.kill().unwrap(); // SIGKILL
    producer.wait().unwrap();
    let rest: Vec<u64> = watchdog(move || rx.iter().collect());
    // Nothing lost or duplicated before the kill: the values continue 2, 3, ...
    assert!(rest.iter().copied().eq(2..2 + rest.len() as u64));
    let e = rx_after(&n.0);
    assert_eq!(e, Err(RecvError::Disconnected));
}

fn rx_after(name: &str) -> Result<u64, RecvError> {
    // A receiver opened afterwards: the channel has had a sender, none is left.
    B::named(name)
        .receiver::<u64>(Some(example::CAPACITY))
        .unwrap()
        .recv()
}

#[test]
fn a_sigkilled_consumer_disconnects_the_producer() {
    let n = TestName::new("kill-consumer");
    let tx = B::named(&n.0)
        .sender::<u64>(Some(example::CAPACITY))
        .unwrap();
    let mut consumer = start("consumer", &n.0, 0);
    // More than the capacity: the consumer is connected and reading.
    for i in 0..(example::CAPACITY as u64 * 4) {
        tx.send(i).unwrap();
    }
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    let failed = watchdog(move || {
        (0..u64::MAX)
            .find_map(|i| tx.send(i).err())
            .map(|e| matches!(e, SendError::Disconnected(_)))
    });
    assert_eq!(failed, Some(true));
}

#[test]
fn a_creator_killed_holding_the_lock_leaves_a_usable_name() {
    let n = TestName::new("creator-killed");
    let _v = TestName(format!("{}.v", n.0));
    let mut holder = start("lock-holder", &n.0, 7);
    wait_line(&mut holder, "locked");
    let lock = B::named(&n.0).existing().lock().unwrap();
    let v = B::named(&format!("{}.v", n.0))
        .existing()
        .value(0u64)
        .unwrap();
    assert!(lock.is_locked());
    holder.kill().unwrap();
    holder.wait().unwrap();
    let died = watchdog(move || matches!(lock.lock(), Err(LockError::OwnerDied(_))));
    assert!(died, "expected OwnerDied");
    assert_eq!(v.load(), 7);
    // The name was not unlinked behind anyone's back; a create needs it removed first.
    let e = B::named(&n.0).create_new().lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let lock = B::named(&n.0).existing().lock().unwrap();
    assert!(lock.try_lock().is_ok()); // released cleanly since
    assert!(B::named(&n.0).unlink().unwrap());
    B::named(&n.0).create_new().lock().unwrap();
}

#[test]
fn racing_creators_make_one_object() {
    let n = TestName::new("race");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let name = n.0.clone();
            std::thread::spawn(move || {
                let v = B::named(&name).value(0u64).unwrap();
                v.update(|x| *x += 1);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(B::named(&n.0).existing().value(0u64).unwrap().load(), 8);
}

#[test]
fn a_forked_child_of_an_opener_is_counted() {
    let n = TestName::new("fork");
    let rx = B::named(&n.0).receiver::<u32>(Some(4)).unwrap();
    let tx = B::named(&n.0).sender::<u32>(Some(4)).unwrap();
    let h = B::spawn(move || tx.send(5).is_ok()).unwrap();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(5));
    assert!(h.join().unwrap());
    // The parent's sender moved into the child and is gone with it.
    assert_eq!(
        rx.recv_timeout(LIMIT),
        Err(uniconc::RecvTimeoutError::Disconnected)
    );
}
