//! Lock, Semaphore, Event, Barrier, Value, Array: blocking and async, cancel safety, poison.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{rt, watchdog};
use uniconc_core::{
    Array as _, Barrier as _, Event as _, Lock as _, LockError, Semaphore as _, TryLockError,
    Value as _, WaitError,
};

#[test]
fn lock_excludes_threads_and_tasks() {
    watchdog(60, || {
        let lock = uniconc_async::lock().unwrap();
        let counter = uniconc_async::value(0u64).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let rt = rt();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (lock, inside) = (lock.clone(), inside.clone());
            tasks.push(rt.spawn(async move {
                for _ in 0..200 {
                    let _g = lock.lock_async().await.unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    tokio::task::yield_now().await; // held across an await: the guard is Send
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (lock, inside, counter) = (lock.clone(), inside.clone(), counter.clone());
            threads.push(std::thread::spawn(move || {
                for _ in 0..200 {
                    let _g = lock.lock().unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    counter.update(|c| *c += 1);
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            rt.block_on(t).unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(), 400);
        assert!(!lock.is_locked());
    });
}

#[test]
fn lock_try_and_timeout() {
    let lock = uniconc_async::lock().unwrap();
    let g = lock.try_lock().unwrap();
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        lock.lock_timeout(Duration::from_millis(10)),
        Err(TryLockError::Timeout)
    ));
    drop(g);
    assert!(lock.lock_timeout(Duration::from_millis(10)).is_ok());
}

#[test]
fn lock_is_poisoned_by_a_panicking_task() {
    watchdog(30, || {
        let rt = rt();
        let lock = uniconc_async::lock().unwrap();
        let l2 = lock.clone();
        let r = rt.block_on(async move {
            tokio::spawn(async move {
                let _g = l2.lock_async().await.unwrap();
                panic!("boom while holding the lock");
            })
            .await
        });
        assert!(r.unwrap_err().is_panic());
        match lock.lock() {
            Err(LockError::Poisoned(g)) => drop(g),
            other => panic!("expected Poisoned, got {:?}", other.map(|_| ())),
        }
        assert!(lock.lock().is_ok(), "reported once: clean again");
    });
}

#[test]
fn cancelled_lock_async_leaves_the_lock_free() {
    watchdog(30, || {
        let rt = rt();
        rt.block_on(async {
            let lock = uniconc_async::lock().unwrap();
            let g = lock.lock_async().await.unwrap();
            tokio::select! {
                _ = lock.lock_async() => panic!("acquired a held lock"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            drop(g);
            assert!(!lock.is_locked());
            assert!(lock.try_lock().is_ok());
        });
    });
}

#[test]
fn semaphore_permits_and_cancel_safety() {
    watchdog(30, || {
        let sem = uniconc_async::semaphore(2).unwrap();
        let p1 = sem.acquire();
        let p2 = sem.try_acquire().unwrap();
        assert_eq!(sem.available(), 0);
        assert_eq!(sem.try_acquire().unwrap_err(), WaitError::WouldBlock);
        assert_eq!(
            sem.acquire_timeout(Duration::from_millis(5)).unwrap_err(),
            WaitError::Timeout
        );
        let rt = rt();
        rt.block_on(async {
            tokio::select! {
                _ = sem.acquire_async() => panic!("acquired with none available"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        });
        drop(p1);
        p2.forget();
        assert_eq!(sem.available(), 1, "a cancelled acquire leaked no permit");
        sem.release();
        assert_eq!(sem.available(), 2);
        assert!(uniconc_async::semaphore(usize::MAX).is_err());
    });
}

#[test]
fn semaphore_signals_across_units() {
    watchdog(30, || {
        let sem = uniconc_async::semaphore(0).unwrap();
        let s2 = sem.clone();
        let h = uniconc_async::spawn_async(async move {
            s2.take_async().await;
            7
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        sem.release();
        assert_eq!(uniconc_core::JoinHandle::join(h).unwrap(), 7);
    });
}

#[test]
fn event_wakes_blocking_and_async_waiters() {
    watchdog(30, || {
        let ev = uniconc_async::event().unwrap();
        assert_eq!(
            ev.wait_timeout(Duration::from_millis(5)),
            Err(WaitError::Timeout)
        );
        let e2 = ev.clone();
        let t = std::thread::spawn(move || e2.wait());
        let e3 = ev.clone();
        let a = uniconc_async::spawn_async(async move { e3.wait_async().await }).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        ev.set();
        t.join().unwrap();
        uniconc_core::JoinHandle::join(a).unwrap();
        assert!(ev.is_set());
        ev.wait(); // set: returns at once
        ev.clear();
        assert!(!ev.is_set());
    });
}

#[test]
fn barrier_has_one_leader_per_generation() {
    watchdog(60, || {
        let n = 4;
        let b = uniconc_async::barrier(n).unwrap();
        assert_eq!(b.parties(), n);
        let rt = rt();
        for _round in 0..3 {
            let mut hs = Vec::new();
            for i in 0..n {
                let b = b.clone();
                if i % 2 == 0 {
                    hs.push(rt.spawn(async move { b.wait_async().await }));
                } else {
                    hs.push(rt.spawn_blocking(move || b.wait()));
                }
            }
            let leaders = hs
                .into_iter()
                .map(|h| rt.block_on(h).unwrap())
                .filter(|l| *l)
                .count();
            assert_eq!(leaders, 1);
        }
        assert!(uniconc_async::barrier(0).is_err());
    });
}

#[test]
fn barrier_waiter_that_times_out_or_is_cancelled_withdraws() {
    watchdog(30, || {
        let b = uniconc_async::barrier(2).unwrap();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(5)),
            Err(WaitError::Timeout)
        );
        let rt = rt();
        rt.block_on(async {
            tokio::select! {
                _ = b.wait_async() => panic!("released alone"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        });
        // Both withdrew: it takes two fresh arrivals to release a generation.
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait());
        let here = b.wait();
        assert!(here ^ h.join().unwrap());
    });
}

#[test]
fn value_and_array() {
    let v = uniconc_async::value([1u32, 2]).unwrap();
    v.store([3, 4]);
    assert_eq!(v.update(|x| x[0] + x[1]), 7);
    {
        let mut g = v.lock().unwrap();
        g[0] = 10;
    }
    assert_eq!(v.load(), [10, 4]);

    let a = uniconc_async::array::<u64>(4).unwrap();
    assert_eq!(a.len(), 4);
    a.set(3, 9).unwrap();
    assert!(a.set(4, 1).is_err());
    assert_eq!(a.get(3), Some(9));
    assert_eq!(a.get(4), None);
    {
        let mut g = a.lock().unwrap();
        g.iter_mut().for_each(|x| *x += 1);
    }
    assert_eq!(a.to_vec(), vec![1, 1, 1, 10]);
    let b = <uniconc_async::Array<u8> as uniconc_core::Array<u8>>::from_slice(&[1, 2]).unwrap();
    assert_eq!(b.to_vec(), vec![1, 2]);
    assert!(uniconc_async::array::<u64>(usize::MAX).is_err());
}

#[test]
fn value_lock_reports_poison() {
    let v = uniconc_async::value(1u8).unwrap();
    let v2 = v.clone();
    let _ = std::thread::spawn(move || {
        let _g = v2.lock().unwrap();
        panic!("boom");
    })
    .join();
    assert!(matches!(v.lock(), Err(LockError::Poisoned(_))));
    assert_eq!(v.load(), 1, "load recovers silently");
}
