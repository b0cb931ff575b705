//! Named objects: created and opened by name, the same object for every opener, with clear
//! errors for bad names, existing or missing names and mismatched kinds, types and shapes.
//! Units here find primitives by name only (no clone is moved into them).

use std::marker::PhantomData;
use std::time::Duration;

use uniconc::prelude::*;
use uniconc::{ErrorKind, TryRecvError};

/// A name unique to this backend, test and test run; unlinked when dropped (a failed test
/// leaves no name behind).
struct TestName<B: Backend>(String, PhantomData<B>);

impl<B: Backend> TestName<B> {
    fn new(tag: &str) -> Self {
        Self::exact(format!("conf-{}-{}-{tag}", B::NAME, std::process::id()))
    }

    fn exact(name: String) -> Self {
        let _ = B::named(&name).unlink();
        Self(name, PhantomData)
    }
}

impl<B: Backend> Drop for TestName<B> {
    fn drop(&mut self) {
        let _ = B::named(&self.0).unlink();
    }
}

fn kind<H>(r: Result<H, uniconc::Error>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

/// On a backend without names (`!B::NAMED`): checks that the builder refuses with
/// `Unsupported` and returns `true`, ending the test there. `false` on the other backends.
fn names_refused<B: Backend>() -> bool {
    if B::NAMED {
        return false;
    }
    assert_eq!(
        kind(B::named("conformance-refused").lock()),
        ErrorKind::Unsupported
    );
    assert_eq!(
        kind(B::named("conformance-refused").channel::<u8>(1)),
        ErrorKind::Unsupported
    );
    true
}

pub(crate) fn named_create_open_and_unlink<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let n = TestName::<B>::new("modes");
    assert_eq!(kind(B::named(&n.0).existing().event()), ErrorKind::NotFound);
    let ev = B::named(&n.0).create_new().event().unwrap();
    assert_eq!(
        kind(B::named(&n.0).create_new().event()),
        ErrorKind::AlreadyExists
    );
    ev.set();
    assert!(B::named(&n.0).existing().event().unwrap().is_set());
    assert!(B::named(&n.0).event().unwrap().is_set()); // open-or-create opens
    assert!(B::named(&n.0).unlink().unwrap());
    assert!(!B::named(&n.0).unlink().unwrap());
    assert!(ev.is_set()); // the handle outlives its name
    let fresh = B::named(&n.0).create_new().event().unwrap();
    assert!(!fresh.is_set()); // a new object
    B::named(&n.0).unlink().unwrap();
}

pub(crate) fn named_bad_names_refused<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let long = "n".repeat(201); // the longest name is 200 bytes
    for bad in ["", "/", "a/b", "..", ".x", "a b", long.as_str()] {
        assert_eq!(
            kind(B::named(bad).lock()),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
        assert_eq!(
            kind(B::named(bad).channel::<u8>(1)),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
        assert_eq!(
            kind(B::named(bad).array::<u8>(1)),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
        assert_eq!(kind(B::named(bad).unlink()), ErrorKind::InvalidArgument);
    }
}

/// A named channel's byte budget: accepted (and recorded where messages are encoded), the
/// same for an opener asking for the same budget or for none, and refused past the codec's
/// limit on every backend. (A different budget is `Incompatible` only where a budget means
/// something: the process backend's own tests check that.)
pub(crate) fn named_channel_byte_budget<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let n = TestName::<B>::new("budget");
    let (tx, rx) = B::named(&n.0)
        .byte_budget(1 << 16)
        .channel::<Vec<u8>>(4)
        .unwrap();
    tx.send(vec![3; 40_000]).unwrap();
    let same = B::named(&n.0)
        .byte_budget(1 << 16)
        .receiver::<Vec<u8>>(Some(4))
        .unwrap();
    let got = same.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(got, vec![3; 40_000]);
    let plain = B::named(&n.0).sender::<Vec<u8>>(Some(4)).unwrap();
    plain.send(vec![1; 10]).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), [1; 10]);
    let too_big = (256 << 20) + 1; // the codec's limit is 256 MiB
    assert_eq!(
        kind(B::named(&n.0).byte_budget(too_big).channel::<u8>(4)),
        ErrorKind::InvalidArgument
    );
    let other = TestName::<B>::new("budget-unbounded");
    assert_eq!(
        kind(B::named(&other.0).byte_budget(usize::MAX).unbounded::<u8>()),
        ErrorKind::InvalidArgument
    );
    let (tx, rx) = B::named(&other.0)
        .byte_budget(1 << 16)
        .unbounded::<Vec<u8>>()
        .unwrap();
    tx.send(vec![5; 1000]).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), [5; 1000]);
}

pub(crate) fn named_mismatches_are_incompatible<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let n = TestName::<B>::new("mismatch");
    let _ch = B::named(&n.0).channel::<u32>(4).unwrap();
    assert_eq!(
        kind(B::named(&n.0).channel::<u64>(4)),
        ErrorKind::Incompatible
    );
    assert_eq!(
        kind(B::named(&n.0).channel::<u32>(5)),
        ErrorKind::Incompatible
    );
    assert_eq!(
        kind(B::named(&n.0).unbounded::<u32>()),
        ErrorKind::Incompatible
    );
    assert_eq!(kind(B::named(&n.0).lock()), ErrorKind::Incompatible);
    assert_eq!(kind(B::named(&n.0).value(1u32)), ErrorKind::Incompatible);
    B::named(&n.0).unlink().unwrap();

    let _v = B::named(&n.0).value(3u32).unwrap();
    assert_eq!(kind(B::named(&n.0).value(3u64)), ErrorKind::Incompatible);
    assert_eq!(B::named(&n.0).value(9u32).unwrap().load(), 3); // opened, not reset
    B::named(&n.0).unlink().unwrap();

    let _a = B::named(&n.0).array::<u16>(3).unwrap();
    assert_eq!(
        kind(B::named(&n.0).array::<u16>(4)),
        ErrorKind::Incompatible
    );
    assert_eq!(
        kind(B::named(&n.0).array::<u32>(3)),
        ErrorKind::Incompatible
    );
    B::named(&n.0).unlink().unwrap();

    let _b = B::named(&n.0).barrier(2).unwrap();
    assert_eq!(kind(B::named(&n.0).barrier(3)), ErrorKind::Incompatible);
    assert_eq!(kind(B::named(&n.0).semaphore(1)), ErrorKind::Incompatible);
    B::named(&n.0).unlink().unwrap();
}

pub(crate) fn named_objects_found_by_name_in_spawned_units<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let n = TestName::<B>::new("units");
    let (vn, an, ln) = (
        format!("{}.v", n.0),
        format!("{}.a", n.0),
        format!("{}.l", n.0),
    );
    let _guards = [&vn, &an, &ln].map(|x| TestName::<B>::exact(x.clone()));
    let rx = B::named(&n.0).receiver::<String>(Some(8)).unwrap();
    // Held while the units come and go: on the process backend, the first unit to exit would
    // otherwise leave no sender (the channel disconnects until the next one opens).
    let keep = B::named(&n.0).sender::<String>(Some(8)).unwrap();
    let v = B::named(&vn).create_new().value(0u64).unwrap();
    let a = B::named(&an).create_new().array::<u32>(4).unwrap();
    let lock = B::named(&ln).create_new().lock().unwrap();
    let units: Vec<_> = (0..3u32)
        .map(|i| {
            let (name, vn, an, ln) = (n.0.clone(), vn.clone(), an.clone(), ln.clone());
            B::spawn(move || {
                // Only names cross into the unit.
                let tx = B::named(&name)
                    .existing()
                    .sender::<String>(Some(8))
                    .unwrap();
                let v = B::named(&vn).existing().value(0u64).unwrap();
                let a = B::named(&an).existing().array::<u32>(4).unwrap();
                let lock = B::named(&ln).existing().lock().unwrap();
                for _ in 0..100 {
                    let _g = lock.lock().unwrap();
                    v.store(v.load() + 1); // a read-modify-write under the named lock
                }
                a.set(i as usize, i + 10).unwrap();
                tx.send(format!("unit {i}")).unwrap();
            })
            .unwrap()
        })
        .collect();
    let mut got: Vec<String> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap())
        .collect();
    for u in units {
        u.join().unwrap();
    }
    drop(keep);
    got.sort();
    assert_eq!(got, ["unit 0", "unit 1", "unit 2"]);
    assert_eq!(v.load(), 300);
    assert_eq!(a.to_vec(), [10, 11, 12, 0]);
    assert!(lock.try_lock().is_ok());
    B::named(&n.0).unlink().unwrap();
    for name in [&vn, &an, &ln] {
        B::named(name).unlink().unwrap();
    }
}

pub(crate) fn named_receiver_opened_first_waits_for_a_sender<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let n = TestName::<B>::new("first");
    let rx = B::named(&n.0).receiver::<u8>(None).unwrap();
    // No sender has ever been opened: empty, not disconnected.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let name = n.0.clone();
    let h = B::spawn(move || {
        let tx = B::named(&name).existing().sender::<u8>(None).unwrap();
        tx.send(9).is_ok()
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(9));
    assert!(h.join().unwrap());
    B::named(&n.0).unlink().unwrap();
}

pub(crate) fn named_map_and_list_shared_by_name<B: Backend>() {
    if names_refused::<B>() {
        return;
    }
    let (m, l) = (TestName::<B>::new("map"), TestName::<B>::new("list"));
    let map = B::named(&m.0).map::<String, u64>().unwrap();
    let list = B::named(&l.0).list::<u64>().unwrap();
    let (mn, ln) = (m.0.clone(), l.0.clone());
    B::spawn(move || {
        let map = B::named(&mn).existing().map::<String, u64>().unwrap();
        let list = B::named(&ln).existing().list::<u64>().unwrap();
        map.insert("unit".into(), 7).unwrap();
        list.extend([1, 2, 3]).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(map.get("unit").unwrap(), Some(7));
    assert_eq!(list.to_vec().unwrap(), [1, 2, 3]);
    assert_eq!(
        kind(B::named(&m.0).map::<String, u32>()),
        ErrorKind::Incompatible
    );
    assert_eq!(kind(B::named(&l.0).list::<u32>()), ErrorKind::Incompatible);
    assert_eq!(
        kind(B::named(&l.0).map::<String, u64>()),
        ErrorKind::Incompatible
    );
}
