//! The task pool: ordering, laziness, panics, cancellation, deadlines, async closures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{rt, scale, watchdog};
use uniconc_async::Pool;
use uniconc_core::{Pool as _, PoolError, TaskError, TaskHandle as _};

#[test]
fn map_keeps_input_order() {
    watchdog(60, || {
        let pool = uniconc_async::pool(3).unwrap();
        let n = scale(1_000) as u64;
        let v = pool.map(|x: u64| x * 2, 0..n).unwrap();
        assert_eq!(v, (0..n).map(|x| x * 2).collect::<Vec<_>>());
        assert!(pool.map(|x: u64| x, Vec::new()).unwrap().is_empty());
    });
}

#[test]
fn concurrency_is_limited_to_workers() {
    watchdog(60, || {
        let pool = uniconc_async::pool(2).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let cfg_pool = Pool::builder().workers(2).chunk_size(1).build().unwrap();
        drop(pool);
        cfg_pool
            .map(
                move |_: u32| {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    r.fetch_sub(1, Ordering::SeqCst);
                },
                0..20,
            )
            .unwrap();
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_panicking_item_fails_alone_and_the_pool_stays_usable() {
    watchdog(60, || {
        let pool = Pool::builder().workers(2).chunk_size(3).build().unwrap();
        let e = pool
            .map(
                |x: u32| {
                    if x == 4 {
                        panic!("item {x} failed");
                    }
                    x
                },
                0..10,
            )
            .unwrap_err();
        match e {
            PoolError::Task {
                index: 4,
                error: TaskError::Panicked(m),
            } => {
                assert_eq!(m, "item 4 failed")
            }
            other => panic!("unexpected {other:?}"),
        }
        let r: Vec<_> = pool
            .imap(|x: u32| if x == 1 { panic!("one") } else { x }, 0..3)
            .collect();
        assert_eq!(r[0], Ok(0));
        assert_eq!(r[1], Err(TaskError::Panicked("one".into())));
        assert_eq!(r[2], Ok(2));
        assert_eq!(pool.map(|x: u32| x + 1, [1]).unwrap(), vec![2]);
    });
}

#[test]
fn imap_is_lazy_and_bounded_on_an_endless_input() {
    watchdog(60, || {
        let pool = uniconc_async::pool(2).unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let p2 = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            p2.fetch_add(1, Ordering::SeqCst);
        });
        let first: Vec<u64> = pool
            .imap(|x: u64| x * x, endless)
            .take(10)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());
        // At most 2 × workers chunks (of 1) in flight beyond what was consumed.
        assert!(
            pulled.load(Ordering::SeqCst) <= 10 + 4 + 1,
            "pulled {}",
            pulled.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn imap_unordered_yields_every_result() {
    watchdog(60, || {
        let pool = uniconc_async::pool(3).unwrap();
        let mut v: Vec<u32> = pool
            .imap_unordered(
                |x: u32| {
                    std::thread::sleep(Duration::from_millis(u64::from(10 - x)));
                    x
                },
                0..10,
            )
            .map(Result::unwrap)
            .collect();
        v.sort_unstable();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn submit_and_task_handles() {
    watchdog(60, || {
        let pool = uniconc_async::pool(2).unwrap();
        let h = pool.submit(|x: u32| x + 1, 1).unwrap();
        assert_eq!(h.wait(), Ok(2));
        let ev = uniconc_async::event().unwrap();
        let e2 = ev.clone();
        let mut h = pool
            .submit(
                move |x: u32| {
                    uniconc_core::Event::wait(&e2);
                    x
                },
                3,
            )
            .unwrap();
        assert_eq!(h.try_wait(), Err(TaskError::Timeout));
        assert_eq!(
            h.wait_timeout(Duration::from_millis(5)),
            Err(TaskError::Timeout)
        );
        assert!(!h.is_finished());
        uniconc_core::Event::set(&ev);
        assert_eq!(h.wait_timeout(Duration::from_secs(20)), Ok(3));
        assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken));
        let h = pool.submit(|_: ()| -> u8 { panic!("sub") }, ()).unwrap();
        assert_eq!(h.wait(), Err(TaskError::Panicked("sub".into())));
    });
}

#[test]
fn close_refuses_new_work_and_join_waits() {
    watchdog(60, || {
        let pool = uniconc_async::pool(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for _ in 0..4 {
            let d = done.clone();
            hs.push(
                pool.submit(
                    move |_: ()| {
                        std::thread::sleep(Duration::from_millis(5));
                        d.fetch_add(1, Ordering::SeqCst);
                    },
                    (),
                )
                .unwrap(),
            );
        }
        pool.close();
        assert!(matches!(pool.submit(|x: u8| x, 1), Err(PoolError::Closed)));
        assert!(matches!(pool.map(|x: u8| x, [1]), Err(PoolError::Closed)));
        let r: Vec<_> = pool.imap(|x: u8| x, [1, 2]).collect();
        assert_eq!(r, vec![Err(TaskError::Cancelled)]);
        pool.join().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn terminate_cancels_unfinished_tasks() {
    watchdog(60, || {
        let pool = uniconc_async::pool(1).unwrap();
        let started = uniconc_async::event().unwrap();
        let s2 = started.clone();
        let running = pool
            .submit_async(
                move |_: ()| async move {
                    uniconc_core::Event::set(&s2);
                    std::future::pending::<()>().await
                },
                (),
            )
            .unwrap();
        uniconc_core::Event::wait(&started); // it holds the only permit
        let queued = pool.submit(|x: u8| x, 1).unwrap();
        pool.terminate();
        assert_eq!(running.wait(), Err(TaskError::Cancelled));
        // `queued` was waiting for the only permit: cancelled too.
        assert_eq!(queued.wait(), Err(TaskError::Cancelled));
        pool.join().unwrap();
    });
}

#[test]
fn dropping_the_pool_cancels_its_tasks() {
    watchdog(60, || {
        let pool = uniconc_async::pool(1).unwrap();
        let h = pool
            .submit_async(|_: ()| std::future::pending::<()>(), ())
            .unwrap();
        drop(pool);
        assert_eq!(h.wait(), Err(TaskError::Cancelled));
    });
}

#[test]
fn task_timeout_stops_async_tasks_and_reports_sync_ones() {
    // Trivial tasks on the same pool must finish within the deadline: leave a loaded CI
    // machine room (a 20 ms deadline failed there once), and overdue tasks far past it.
    const TIMEOUT: Duration = Duration::from_millis(250);
    const OVERDUE: Duration = Duration::from_millis(1500);
    watchdog(60, || {
        let pool = Pool::builder()
            .workers(2)
            .task_timeout(TIMEOUT)
            .build()
            .unwrap();
        let stopped = Arc::new(AtomicUsize::new(0));
        struct OnDrop(Arc<AtomicUsize>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let s2 = stopped.clone();
        let h = pool
            .submit_async(
                move |_: ()| async move {
                    let _d = OnDrop(s2);
                    std::future::pending::<()>().await
                },
                (),
            )
            .unwrap();
        assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            1,
            "the async task was dropped"
        );
        let h = pool
            .submit(|_: ()| std::thread::sleep(OVERDUE), ())
            .unwrap();
        assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
        assert_eq!(pool.submit(|x: u8| x, 4).unwrap().wait(), Ok(4));
        let pool = Pool::builder()
            .workers(2)
            .chunk_size(1)
            .task_timeout(TIMEOUT)
            .build()
            .unwrap();
        let e = pool
            .map(
                |x: u64| {
                    if x == 1 {
                        std::thread::sleep(OVERDUE);
                    }
                    x
                },
                0..3,
            )
            .unwrap_err();
        assert!(matches!(
            e,
            PoolError::Task {
                index: 1,
                error: TaskError::DeadlineExceeded
            }
        ));
    });
}

#[test]
fn map_async_runs_async_closures() {
    watchdog(60, || {
        let rt = rt();
        rt.block_on(async {
            let pool = uniconc_async::pool(4).unwrap();
            let v = pool
                .map_async(
                    |x: u64| async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        x + 1
                    },
                    0..50,
                )
                .await
                .unwrap();
            assert_eq!(v, (1..=50).collect::<Vec<_>>());
            let e = pool
                .map_async(
                    |x: u64| async move { if x == 2 { panic!("async item") } else { x } },
                    0..4,
                )
                .await
                .unwrap_err();
            assert!(matches!(
                e,
                PoolError::Task {
                    index: 2,
                    error: TaskError::Panicked(_)
                }
            ));
        });
    });
}

#[test]
fn pool_inside_a_user_runtime() {
    watchdog(60, || {
        let rt = rt();
        rt.block_on(async {
            let pool = uniconc_async::pool(2).unwrap();
            let mut h = pool.submit(|x: u32| x * 3, 3).unwrap();
            assert_eq!(h.wait_async().await, Ok(9));
            // A blocking map from a worker thread: block_in_place.
            let v = tokio::spawn(async move { pool.map(|x: u32| x + 1, 0..8) })
                .await
                .unwrap();
            assert_eq!(v.unwrap(), (1..9).collect::<Vec<_>>());
        });
    });
}

#[test]
fn task_timeout_without_a_time_driver_is_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let _enter = rt.enter();
    let e = Pool::builder()
        .workers(1)
        .task_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), uniconc_core::ErrorKind::InvalidArgument);
    assert!(
        Pool::builder().workers(1).build().is_ok(),
        "no timeout, no time driver needed"
    );
}

#[test]
fn jobs_start_in_submission_order() {
    watchdog(60, || {
        for _ in 0..5 {
            let pool = uniconc_async::pool(1).unwrap();
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let o = order.clone();
                    pool.submit(move |i: usize| o.lock().unwrap().push(i), i)
                        .unwrap()
                })
                .collect();
            for h in hs {
                h.wait().unwrap();
            }
            assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        }
    });
}

#[test]
fn bad_config_is_refused() {
    assert!(uniconc_async::pool(0).is_err());
    assert!(Pool::builder().workers(1).chunk_size(0).build().is_err());
    let p = Pool::builder()
        .workers(1)
        .max_tasks_per_worker(3)
        .build()
        .unwrap();
    assert_eq!(p.config().max_tasks_per_worker, Some(3));
}
