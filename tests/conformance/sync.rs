//! Synchronisation: Lock, Semaphore, Event, Barrier, across units.

use std::time::Instant;

use uniconc::prelude::*;
use uniconc::{ErrorKind, LockError, TryLockError, WaitError};

use crate::support::{LONG, SHORT, block_on, pause, scale};

pub(crate) fn lock_mutual_exclusion_under_contention<B: Backend>() {
    let units = 4u64;
    let rounds = 500 * scale() as u64;
    let lock = B::lock().unwrap();
    // Incremented by a non-atomic load + store: only mutual exclusion keeps the count exact.
    let counter = B::value(0u64).unwrap();
    let inside = B::value(0u64).unwrap();
    let mut handles = Vec::new();
    for _ in 0..units {
        let (lock, counter, inside) = (lock.clone(), counter.clone(), inside.clone());
        handles.push(
            B::spawn(move || {
                let mut overlaps = 0u64;
                for _ in 0..rounds {
                    let _guard = lock.lock().unwrap();
                    if inside.update(|n| {
                        *n += 1;
                        *n
                    }) != 1
                    {
                        overlaps += 1;
                    }
                    let v = counter.load();
                    std::hint::spin_loop();
                    counter.store(v + 1);
                    inside.update(|n| *n -= 1);
                }
                overlaps
            })
            .unwrap(),
        );
    }
    let overlaps: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(overlaps, 0, "two units were inside the lock at once");
    assert_eq!(counter.load(), units * rounds);
    assert!(!lock.is_locked());
}

pub(crate) fn lock_try_lock_and_timeout_while_held_elsewhere<B: Backend>() {
    let lock = B::lock().unwrap();
    let held = B::event().unwrap();
    let release = B::event().unwrap();
    let holder = {
        let (lock, held, release) = (lock.clone(), held.clone(), release.clone());
        B::spawn(move || {
            let _guard = lock.lock().unwrap();
            held.set();
            release.wait_timeout(LONG).is_ok()
        })
        .unwrap()
    };
    held.wait_timeout(LONG).unwrap();
    assert!(lock.is_locked());
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    let start = Instant::now();
    assert!(matches!(
        lock.lock_timeout(SHORT),
        Err(TryLockError::Timeout)
    ));
    assert!(start.elapsed() >= SHORT);
    release.set();
    // Blocks until the holder lets go.
    let guard = lock
        .lock_timeout(LONG)
        .expect("the lock is released by its holder");
    assert!(holder.join().unwrap());
    assert!(lock.is_locked());
    drop(guard);
    assert!(!lock.is_locked());
    let g = lock.try_lock().unwrap();
    drop(g);
}

pub(crate) fn semaphore_bounds_concurrency<B: Backend>() {
    let limit = 2u64;
    let sem = B::semaphore(limit as usize).unwrap();
    let current = B::value(0u64).unwrap();
    let peak = B::value(0u64).unwrap();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (sem, current, peak) = (sem.clone(), current.clone(), peak.clone());
        handles.push(
            B::spawn(move || {
                for _ in 0..20 {
                    let _permit = sem.acquire();
                    let now = current.update(|c| {
                        *c += 1;
                        *c
                    });
                    peak.update(|p| *p = (*p).max(now));
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    current.update(|c| *c -= 1);
                }
            })
            .unwrap(),
        );
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        peak.load() <= limit,
        "more than {limit} units held a permit at once"
    );
    assert!(peak.load() >= 1);
    assert_eq!(sem.available(), limit as usize, "every permit came back");
}

pub(crate) fn semaphore_forget_release_available<B: Backend>() {
    let sem = B::semaphore(2).unwrap();
    assert_eq!(sem.available(), 2);
    let p = sem.acquire();
    assert_eq!(sem.available(), 1);
    p.forget();
    assert_eq!(sem.available(), 1, "a forgotten permit stays taken");
    sem.release();
    assert_eq!(sem.available(), 2);
    let a = sem.try_acquire().unwrap();
    let b = sem.try_acquire().unwrap();
    assert_eq!(sem.try_acquire().err(), Some(WaitError::WouldBlock));
    let start = Instant::now();
    assert_eq!(sem.acquire_timeout(SHORT).err(), Some(WaitError::Timeout));
    assert!(start.elapsed() >= SHORT);
    drop(a);
    assert_eq!(sem.available(), 1);
    drop(b);
    assert_eq!(sem.available(), 2);
    // release() beyond the initial count adds permits (Python's semantics).
    sem.release();
    assert_eq!(sem.available(), 3);
}

pub(crate) fn semaphore_release_signals_another_unit<B: Backend>() {
    let sem = B::semaphore(0).unwrap();
    let sem2 = sem.clone();
    let signaller = B::spawn(move || {
        pause();
        sem2.release();
    })
    .unwrap();
    let p = sem
        .acquire_timeout(LONG)
        .expect("released by the other unit");
    p.forget();
    signaller.join().unwrap();
    assert_eq!(sem.available(), 0);
}

/// A permit moved into a spawned unit is given back once, by that unit (on the process
/// backend the parent's leftover copy of the closure must not give it back too).
pub(crate) fn semaphore_permit_moved_into_a_unit_is_released_once<B: Backend>() {
    let sem = B::semaphore(1).unwrap();
    let permit = sem.acquire();
    let h = B::spawn(move || drop(permit)).unwrap();
    h.join().unwrap();
    assert_eq!(sem.available(), 1);
}

pub(crate) fn event_set_clear_wait_timeouts<B: Backend>() {
    let ev = B::event().unwrap();
    assert!(!ev.is_set());
    let start = Instant::now();
    assert_eq!(ev.wait_timeout(SHORT), Err(WaitError::Timeout));
    assert!(start.elapsed() >= SHORT);
    let ev2 = ev.clone();
    let setter = B::spawn(move || {
        pause();
        ev2.set();
    })
    .unwrap();
    ev.wait();
    assert!(ev.is_set());
    setter.join().unwrap();
    ev.wait_timeout(SHORT).unwrap();
    ev.clear();
    assert!(!ev.is_set());
    assert_eq!(ev.wait_timeout(SHORT), Err(WaitError::Timeout));
    // Several waiters are all released by one set.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let ev = ev.clone();
            B::spawn(move || ev.wait_timeout(LONG).is_ok()).unwrap()
        })
        .collect();
    pause();
    ev.set();
    for w in waiters {
        assert!(w.join().unwrap());
    }
}

pub(crate) fn barrier_one_leader_per_generation<B: Backend>() {
    let parties = 3usize;
    let generations = 20usize;
    let barrier = B::barrier(parties).unwrap();
    assert_eq!(barrier.parties(), parties);
    let leaders = B::array::<u64>(generations).unwrap();
    let handles: Vec<_> = (0..parties)
        .map(|_| {
            let (barrier, leaders) = (barrier.clone(), leaders.clone());
            B::spawn(move || {
                let mut led = 0u64;
                for g in 0..generations {
                    if barrier.wait() {
                        led += 1;
                        let mut slots = leaders.lock().unwrap();
                        slots[g] += 1;
                    }
                }
                led
            })
            .unwrap()
        })
        .collect();
    let led: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(led, generations as u64);
    assert_eq!(
        leaders.to_vec(),
        vec![1u64; generations],
        "exactly one leader per generation"
    );
}

pub(crate) fn barrier_timeout_withdraws<B: Backend>() {
    let barrier = B::barrier(2).unwrap();
    let start = Instant::now();
    assert_eq!(barrier.wait_timeout(SHORT), Err(WaitError::Timeout));
    assert!(start.elapsed() >= SHORT);
    // The timed-out arrival withdrew: one more arrival alone must not complete the generation.
    assert_eq!(barrier.wait_timeout(SHORT), Err(WaitError::Timeout));
    let b2 = barrier.clone();
    let other = B::spawn(move || b2.wait_timeout(LONG).unwrap()).unwrap();
    let me = barrier.wait_timeout(LONG).unwrap();
    assert!(me ^ other.join().unwrap(), "exactly one leader");
}

pub(crate) fn barrier_of_zero_refused<B: Backend>() {
    let err = B::barrier(0)
        .err()
        .expect("a barrier of 0 parties must be refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let rule = uniconc_core::validate::barrier_parties(0, usize::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        rule.to_string(),
        "one message on every backend"
    );
    let one = B::barrier(1).unwrap();
    assert!(one.wait(), "a barrier of one: every wait leads");
}

/// Runs a unit that takes `lock` and panics while holding it; the unit's join reports the
/// panic.
fn panic_holding<B: Backend>(lock: &B::Lock) {
    let held = lock.clone();
    let h = B::spawn(move || -> u8 {
        let _guard = held.lock().unwrap_or_else(|e| e.into_guard());
        panic!("the holder panics")
    })
    .unwrap();
    assert!(matches!(h.join(), Err(uniconc::JoinError::Panicked(_))));
    assert!(!lock.is_locked(), "the unwinding released the lock");
}

pub(crate) fn lock_panicking_holder_poisons_once<B: Backend>() {
    let lock = B::lock().unwrap();
    // Each acquiring form hears about the panic once; the next acquisition is clean.
    panic_holding::<B>(&lock);
    match lock.lock() {
        Err(LockError::Poisoned(g)) => drop(g),
        other => panic!("lock(): expected Poisoned, got {:?}", other.map(|_| ())),
    }
    drop(lock.try_lock().expect("reported once: clean again"));

    panic_holding::<B>(&lock);
    match lock.try_lock() {
        Err(TryLockError::Poisoned(g)) => drop(g),
        other => panic!("try_lock(): expected Poisoned, got {:?}", other.map(|_| ())),
    }
    drop(lock.lock().expect("reported once: clean again"));

    panic_holding::<B>(&lock);
    match lock.lock_timeout(LONG) {
        Err(TryLockError::Poisoned(g)) => drop(g),
        other => panic!(
            "lock_timeout(): expected Poisoned, got {:?}",
            other.map(|_| ())
        ),
    }
    drop(lock.lock_timeout(LONG).expect("reported once: clean again"));

    // A guard the test's own thread drops while panicking poisons it too.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _guard = lock.lock().unwrap();
        panic!("this thread panics while holding the lock")
    }));
    assert!(unwound.is_err());
    // Last: the runtime's threads are gone before any later fork.
    let lock2 = lock.clone();
    block_on(async move {
        match lock2.lock_async().await {
            Err(LockError::Poisoned(g)) => drop(g),
            other => panic!(
                "lock_async(): expected Poisoned, got {:?}",
                other.map(|_| ())
            ),
        }
        drop(
            lock2
                .lock_async()
                .await
                .expect("reported once: clean again"),
        );
    });
}

pub(crate) fn value_and_array_locks_poison_once<B: Backend>() {
    let v = B::value(0u32).unwrap();
    let a = B::array::<u32>(2).unwrap();
    let h = {
        let v = v.clone();
        B::spawn(move || -> u8 {
            v.update(|x| {
                *x = 7; // half-way through an update...
                panic!("...the holder panics")
            })
        })
        .unwrap()
    };
    assert!(h.join().is_err());
    let h = {
        let a = a.clone();
        B::spawn(move || -> u8 {
            let mut g = a.lock().unwrap();
            g[1] = 9;
            panic!("the holder panics")
        })
        .unwrap()
    };
    assert!(h.join().is_err());
    // Plain reads neither report nor clear the poison.
    assert_eq!(v.load(), 7);
    assert_eq!(a.to_vec(), [0, 9]);
    match v.lock() {
        Err(LockError::Poisoned(g)) => assert_eq!(*g, 7),
        other => panic!(
            "Value::lock: expected Poisoned, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(v.lock().is_ok(), "reported once: clean again");
    match a.lock() {
        Err(LockError::Poisoned(g)) => assert_eq!(g[1], 9),
        other => panic!(
            "Array::lock: expected Poisoned, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(a.lock().is_ok(), "reported once: clean again");
}
