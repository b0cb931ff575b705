//! Locks, semaphores, events, barriers and shared state across forked processes, including a
//! SIGKILLed lock holder.

mod common;

use std::time::Duration;

use common::{fork_lock, spawn};
use uniconc_core::{
    Array as _, Barrier as _, Event as _, Lock as _, LockError, Semaphore as _, Value as _,
};
use uniconc_process::{array, barrier, event, lock, semaphore, value};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn sigkilled_lock_holder_is_reported_as_owner_died() {
    let _f = fork_lock();
    let l = lock().unwrap();
    let locked = event().unwrap();
    let (l2, locked2) = (l.clone(), locked.clone());
    let child = spawn(move || {
        let g = l2.lock().unwrap();
        locked2.set();
        std::mem::forget(g);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    locked.wait_timeout(LIMIT).unwrap();
    assert!(l.is_locked());
    child.kill();
    let got = common::watchdog(LIMIT, move || match l.lock() {
        Err(LockError::OwnerDied(g)) => {
            drop(g);
            true
        }
        Ok(_) => false,
        Err(e) => panic!("{e}"),
    });
    assert!(got, "the next lock() must report the dead holder");
}

#[test]
fn sigkilled_value_holder_leaves_the_value_usable() {
    let _f = fork_lock();
    let v = value(10u64).unwrap();
    let locked = event().unwrap();
    let (v2, locked2) = (v.clone(), locked.clone());
    let child = spawn(move || {
        let mut g = v2.lock().unwrap();
        *g = 11;
        locked2.set();
        std::mem::forget(g);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    locked.wait_timeout(LIMIT).unwrap();
    child.kill();
    let v3 = v.clone();
    let seen = common::watchdog(LIMIT, move || match v3.lock() {
        Err(LockError::OwnerDied(g)) => *g,
        other => panic!("{:?}", other.map(|g| *g)),
    });
    assert_eq!(seen, 11);
    v.update(|x| *x += 1);
    assert_eq!(v.load(), 12);
}

#[test]
fn two_processes_increment_a_value_under_its_lock() {
    let _f = fork_lock();
    let v = value(0u64).unwrap();
    let n = 20_000 * common::scale();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            spawn(move || {
                for _ in 0..n {
                    v.update(|x| *x += 1);
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.join(LIMIT), 0);
    }
    assert_eq!(v.load(), 2 * n);
}

#[test]
fn array_written_by_a_child_is_read_by_the_parent() {
    let _f = fork_lock();
    let a = array::<u32>(1 << 20).unwrap();
    let a2 = a.clone();
    let child = spawn(move || {
        let mut g = a2.lock().unwrap();
        for (i, x) in g.iter_mut().enumerate() {
            *x = i as u32;
        }
        0
    });
    assert_eq!(child.join(LIMIT), 0);
    let v = a.to_vec();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
}

#[test]
fn semaphore_event_and_barrier_across_processes() {
    let _f = fork_lock();
    let sem = semaphore(0).unwrap();
    let ev = event().unwrap();
    let b = barrier(3).unwrap();
    let leaders = value(0u32).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let (sem, ev, b, leaders) = (sem.clone(), ev.clone(), b.clone(), leaders.clone());
            spawn(move || {
                ev.wait();
                sem.release();
                if b.wait() {
                    leaders.update(|x| *x += 1);
                }
                0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sem.available(), 0);
    ev.set();
    sem.acquire().forget();
    sem.acquire().forget();
    if b.wait() {
        leaders.update(|x| *x += 1);
    }
    for c in children {
        assert_eq!(c.join(LIMIT), 0);
    }
    assert_eq!(leaders.load(), 1);
}

#[test]
fn async_lock_across_processes() {
    let _f = fork_lock();
    let l = lock().unwrap();
    let g = l.lock().unwrap();
    let l2 = l.clone();
    let child = spawn(move || {
        futures_lite::future::block_on(async {
            let _g = l2.lock_async().await.unwrap();
        });
        0
    });
    std::thread::sleep(Duration::from_millis(30));
    drop(g);
    assert_eq!(child.join(LIMIT), 0);
}
