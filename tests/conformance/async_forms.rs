//! The async flavour: the same kinds of checks through the `_async` forms, driven by a tokio
//! multi-thread runtime built inside each test. Inside async code only `_async` forms are used
//! (a blocking call would park an executor thread).

use std::time::Duration;

use uniconc::prelude::*;
use uniconc::{RecvError, SendError};

use crate::support::{LONG, block_on, pause, scale};

pub(crate) fn async_send_recv_fifo<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(4).unwrap();
    block_on(async move {
        let producer = tokio::spawn(async move {
            for i in 0..1000u64 {
                tx.send_async(i).await.unwrap();
            }
        });
        for i in 0..1000u64 {
            assert_eq!(rx.recv_async().await, Ok(i));
        }
        producer.await.unwrap();
        assert_eq!(rx.recv_async().await, Err(RecvError::Disconnected));
    });
}

pub(crate) fn async_mpmc_counts<B: Backend>() {
    let producers = 4u64;
    let per_producer = 5_000 * scale() as u64;
    let total = producers * per_producer;
    let (tx, rx) = B::channel::<u64>(8).unwrap();
    let (count, sum) = block_on(async move {
        let mut ps = Vec::new();
        for p in 0..producers {
            let tx = tx.clone();
            ps.push(tokio::spawn(async move {
                for i in 0..per_producer {
                    tx.send_async(p * per_producer + i).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut cs = Vec::new();
        for _ in 0..4 {
            let rx = rx.clone();
            cs.push(tokio::spawn(async move {
                let (mut c, mut s) = (0u64, 0u64);
                while let Ok(v) = rx.recv_async().await {
                    c += 1;
                    s += v;
                }
                (c, s)
            }));
        }
        drop(rx);
        for p in ps {
            p.await.unwrap();
        }
        let mut totals = (0u64, 0u64);
        for c in cs {
            let (n, s) = c.await.unwrap();
            totals.0 += n;
            totals.1 += s;
        }
        totals
    });
    assert_eq!(count, total);
    assert_eq!(sum, total * (total - 1) / 2);
}

pub(crate) fn async_recv_cancel_safety<B: Backend>() {
    // A remote backend's round trip is longer than the local ones' timer: a timer that
    // always won would cancel every receive (safely, but nothing would get through).
    let (n, tick) = if B::REMOTE {
        (200 * scale() as u64, Duration::from_millis(5))
    } else {
        (2_000 * scale() as u64, Duration::from_micros(200))
    };
    let (tx, rx) = B::channel::<u64>(16).unwrap();
    // Kept here so the channel stays connected (and empty) after the producer is done.
    let keep = tx.clone();
    // A separate unit produces, pausing now and then so the consumer's timer often wins.
    let producer = B::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .unwrap();
    let (got, timer_wins) = block_on(async {
        let mut got = Vec::with_capacity(n as usize);
        let mut timer_wins = 0u64;
        while (got.len() as u64) < n {
            tokio::select! {
                r = rx.recv_async() => got.push(r.unwrap()),
                _ = tokio::time::sleep(tick) => timer_wins += 1,
            }
        }
        (got, timer_wins)
    });
    producer.join().unwrap();
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "every message exactly once, in order"
    );
    let _ = timer_wins; // how often the timer won depends on scheduling; not asserted
    // With an empty channel the timer must win: the future was pending, not blocking.
    let timer_won = block_on(async {
        tokio::select! {
            _ = rx.recv_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(30)) => true,
        }
    });
    assert!(
        timer_won,
        "recv_async completed on an empty, connected channel"
    );
    // A message sent after the cancelled receives is still delivered.
    keep.send(7).unwrap();
    assert_eq!(block_on(rx.recv_async()), Ok(7));
}

pub(crate) fn async_send_waits_for_room_and_is_cancel_safe<B: Backend>() {
    let (tx, rx) = B::channel::<u64>(1).unwrap();
    block_on(async {
        tx.send_async(1).await.unwrap();
        // Full: a racing timer wins, and the cancelled send enqueues nothing.
        let timer_won = tokio::select! {
            _ = tx.send_async(2) => false,
            _ = tokio::time::sleep(Duration::from_millis(30)) => true,
        };
        assert!(timer_won, "send_async completed on a full channel");
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.recv_async().await, Ok(1));
        // Room appears when another task receives.
        tx.send_async(3).await.unwrap();
        let rx2 = rx.clone();
        let consumer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            rx2.recv_async().await
        });
        tx.send_async(4).await.unwrap();
        assert_eq!(consumer.await.unwrap(), Ok(3));
        assert_eq!(rx.recv_async().await, Ok(4));
    });
    drop(rx);
    match block_on(tx.send_async(5)) {
        Err(SendError::Disconnected(v)) => assert_eq!(v, 5),
        other => panic!("expected Disconnected(5), got {other:?}"),
    }
}

pub(crate) fn async_lock<B: Backend>() {
    let lock = B::lock().unwrap();
    let counter = B::value(0u64).unwrap();
    let tasks = 8u64;
    let rounds = 50u64;
    block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        let guard = lock.lock_async().await.unwrap();
                        let v = counter.load();
                        // Held across an await point: the guard is Send.
                        tokio::task::yield_now().await;
                        counter.store(v + 1);
                        drop(guard);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        // Cancelled while held elsewhere: the lock is not left taken.
        let guard = lock.lock_async().await.unwrap();
        let timer_won = tokio::select! {
            _ = lock.lock_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
        };
        assert!(timer_won);
        drop(guard);
        assert!(!lock.is_locked());
        drop(lock.lock_async().await.unwrap());
    });
    assert_eq!(counter.load(), tasks * rounds);
}

pub(crate) fn async_acquire_cancel_safety<B: Backend>() {
    let sem = B::semaphore(1).unwrap();
    block_on(async {
        let held = sem.acquire_async().await;
        for _ in 0..50 {
            tokio::select! {
                _ = sem.acquire_async() => panic!("acquired a permit that was held"),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        drop(held);
        assert_eq!(sem.available(), 1, "no cancelled acquire leaked a permit");
        // Races where the permit comes back while acquirers are being cancelled.
        let sem2 = sem.clone();
        let churn = tokio::spawn(async move {
            for _ in 0..200 {
                let p = sem2.acquire_async().await;
                tokio::task::yield_now().await;
                drop(p);
            }
        });
        let mut wins = 0u32;
        for _ in 0..200 {
            tokio::select! {
                p = sem.acquire_async() => { wins += 1; drop(p); }
                _ = tokio::task::yield_now() => {}
            }
        }
        churn.await.unwrap();
        let _ = wins;
        assert_eq!(sem.available(), 1, "every permit came back");
        let p = sem.acquire_async().await;
        p.forget();
        assert_eq!(sem.available(), 0);
        sem.release();
    });
    assert_eq!(sem.available(), 1);
}

pub(crate) fn async_event_wait<B: Backend>() {
    let ev = B::event().unwrap();
    let ev2 = ev.clone();
    // Set by another unit while the runtime waits.
    let setter = B::spawn(move || {
        pause();
        ev2.set();
    })
    .unwrap();
    block_on(async {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let ev = ev.clone();
                tokio::spawn(async move { ev.wait_async().await })
            })
            .collect();
        for w in waiters {
            tokio::time::timeout(LONG, w)
                .await
                .expect("woken by set")
                .unwrap();
        }
        ev.clear();
        let timer_won = tokio::select! {
            _ = ev.wait_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
        };
        assert!(timer_won, "wait_async completed on a clear event");
    });
    setter.join().unwrap();
}

pub(crate) fn async_barrier_wait<B: Backend>() {
    let parties = 4usize;
    let barrier = B::barrier(parties).unwrap();
    let leaders = block_on(async {
        let mut total = 0usize;
        for _generation in 0..5 {
            let hs: Vec<_> = (0..parties)
                .map(|_| {
                    let b = barrier.clone();
                    tokio::spawn(async move { b.wait_async().await })
                })
                .collect();
            let mut led = 0;
            for h in hs {
                led += usize::from(h.await.unwrap());
            }
            assert_eq!(led, 1, "exactly one leader per generation");
            total += led;
        }
        // A cancelled wait withdraws its arrival.
        let timer_won = tokio::select! {
            _ = barrier.wait_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
        };
        assert!(timer_won);
        total
    });
    assert_eq!(leaders, 5);
    // Withdrawn: a full set of `parties` still completes a generation with one leader.
    let hs: Vec<_> = (0..parties)
        .map(|_| {
            let b = barrier.clone();
            B::spawn(move || b.wait_timeout(LONG).unwrap()).unwrap()
        })
        .collect();
    let led: usize = hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum();
    assert_eq!(led, 1);
}

pub(crate) fn async_join<B: Backend>() {
    let go = B::event().unwrap();
    let go2 = go.clone();
    let mut h = B::spawn(move || {
        go2.wait_timeout(LONG).unwrap();
        "done".to_owned()
    })
    .unwrap();
    let bad = B::spawn(|| -> u8 { panic!("async join boom") }).unwrap();
    block_on(async {
        // Cancelled join: the handle stays joinable.
        let timer_won = tokio::select! {
            _ = h.join_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
        };
        assert!(timer_won);
        go.set();
        assert_eq!(h.join_async().await.unwrap(), "done");
        let mut bad = bad;
        assert!(matches!(
            bad.join_async().await,
            Err(uniconc::JoinError::Panicked(m)) if m.contains("async join boom")
        ));
    });
}

pub(crate) fn async_task_wait<B: Backend>() {
    if crate::pool::closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let go = B::event().unwrap();
    let go2 = go.clone();
    let mut slow = pool
        .submit(
            move |x: u64| {
                go2.wait_timeout(LONG).unwrap();
                x + 1
            },
            1,
        )
        .unwrap();
    let mut fast = pool.submit(|x: u64| x * 10, 4).unwrap();
    block_on(async {
        assert_eq!(fast.wait_async().await, Ok(40));
        let timer_won = tokio::select! {
            _ = slow.wait_async() => false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => true,
        };
        assert!(timer_won);
        go.set();
        assert_eq!(slow.wait_async().await, Ok(2));
    });
}

pub(crate) fn sync_producer_async_consumers<B: Backend>() {
    let n = 20_000 * scale() as u64;
    let (tx, rx) = B::channel::<u64>(32).unwrap();
    // A plain OS thread of this process sends with the blocking API.
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    let (count, sum) = block_on(async move {
        let cs: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let (mut c, mut s) = (0u64, 0u64);
                    while let Ok(v) = rx.recv_async().await {
                        c += 1;
                        s += v;
                    }
                    (c, s)
                })
            })
            .collect();
        drop(rx);
        let mut t = (0, 0);
        for c in cs {
            let (a, b) = c.await.unwrap();
            t.0 += a;
            t.1 += b;
        }
        t
    });
    producer.join().unwrap();
    assert_eq!(count, n);
    assert_eq!(sum, n * (n - 1) / 2);
}
