//! The process `Pool`: ordering, laziness, faults (panics, SIGKILL, abort, deadlines),
//! worker replacement, shutdown and reaping.
//!
//! Fork tests are serialized (`FORK`) so that `waitpid(-1)` checks see only their own
//! children; every test runs under a watchdog that aborts the binary instead of hanging.
//! `UNICONC_STRESS_SCALE` (default 1) scales the stress sizes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use uniconc_core::{Pool as _, PoolError, TaskError, TaskHandle as _};
use uniconc_process::Pool;

mod common;
use common::{Even, no_children, serial};

fn scale() -> usize {
    common::scale() as usize
}

fn die_by_sigkill() {
    // SAFETY: a process killing itself.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(60));
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn map_keeps_input_order() {
    let _s = serial("map_keeps_input_order");
    let pool = Pool::new(2).unwrap();
    let n = 10_000 * scale() as u64;
    let out = pool.map(double, 0..n).unwrap();
    assert_eq!(out, (0..n).map(double).collect::<Vec<_>>());
    // A non-capturing closure, a capturing one, and an empty input.
    assert_eq!(
        pool.map(|s: String| s.len(), ["a", "bb", "ccc"].map(String::from))
            .unwrap(),
        [1, 2, 3]
    );
    let offset: Vec<u64> = vec![100, 200].into_iter().collect();
    let out = pool.map(move |x: u64| x + offset[1], 0..50u64).unwrap();
    assert_eq!(out, (200..250).collect::<Vec<_>>());
    assert_eq!(
        pool.map(double, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
}

#[test]
fn map_sums_across_chunk_sizes() {
    let _s = serial("map_sums_across_chunk_sizes");
    for chunk in [1usize, 7, 1000] {
        let pool = Pool::builder()
            .workers(3)
            .chunk_size(chunk)
            .build()
            .unwrap();
        let n = 2_000 * scale() as u64;
        let sum: u64 = pool.map(|x: u64| x * 3, 0..n).unwrap().into_iter().sum();
        assert_eq!(sum, 3 * n * (n - 1) / 2);
    }
}

#[test]
fn imap_is_lazy_and_works_on_an_endless_iterator() {
    let _s = serial("imap_is_lazy_and_works_on_an_endless_iterator");
    let pool = Pool::new(2).unwrap();
    let got: Vec<u64> = pool
        .imap(double, 0u64..)
        .take(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..100).map(double).collect::<Vec<_>>());
    // Capturing closure on an endless iterator, with chunks.
    let pool = Pool::builder().workers(2).chunk_size(4).build().unwrap();
    let k = 3u64;
    let got: Vec<u64> = pool
        .imap(move |x: u64| x * k, 1u64..)
        .take(37)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (1..=37).map(|x| x * 3).collect::<Vec<_>>());
}

#[test]
fn imap_unordered_yields_every_result_once() {
    let _s = serial("imap_unordered_yields_every_result_once");
    let pool = Pool::new(2).unwrap();
    let n = 500 * scale() as u64;
    let got: Vec<u64> = pool
        .imap_unordered(
            |x: u64| {
                if x % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                x
            },
            0..n,
        )
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len() as u64, n);
    assert_eq!(got.iter().copied().collect::<HashSet<_>>().len() as u64, n);
}

#[test]
fn submit_and_wait() {
    let _s = serial("submit_and_wait");
    let pool = Pool::new(2).unwrap();
    let hs: Vec<_> = (0..20u64)
        .map(|i| pool.submit(double, i).unwrap())
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(2 * i as u64));
    }
    // A capturing FnOnce.
    let v = vec![1u32, 2, 3];
    let h = pool
        .submit(move |extra: u32| v.into_iter().sum::<u32>() + extra, 10)
        .unwrap();
    assert_eq!(h.wait(), Ok(16));
    // wait_timeout then wait.
    let mut h = pool
        .submit(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            300,
        )
        .unwrap();
    assert_eq!(
        h.wait_timeout(Duration::from_millis(10)),
        Err(TaskError::Timeout)
    );
    assert_eq!(h.try_wait(), Err(TaskError::Timeout));
    assert_eq!(h.wait_timeout(Duration::from_secs(30)), Ok(300));
    assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken));
}

#[test]
fn is_finished_drives_the_pool() {
    let _s = serial("is_finished_drives_the_pool");
    let pool = Pool::new(1).unwrap();
    let hs: Vec<_> = (0..3u64).map(|i| pool.submit(double, i).unwrap()).collect();
    let end = Instant::now() + Duration::from_secs(30);
    while !hs.iter().all(|h| h.is_finished()) {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(1));
    }
    let got: Vec<_> = hs.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(got, [0, 2, 4]);
}

#[test]
fn a_panicking_task_fails_only_its_item() {
    let _s = serial("a_panicking_task_fails_only_its_item");
    let pool = Pool::builder().workers(2).chunk_size(3).build().unwrap();
    let f = |x: u32| {
        if x == 4 {
            panic!("no four");
        }
        x
    };
    let got: Vec<_> = pool.imap(f, 0..8u32).collect();
    for (i, r) in got.iter().enumerate() {
        if i == 4 {
            assert_eq!(r, &Err(TaskError::Panicked("no four".into())));
        } else {
            assert_eq!(r, &Ok(i as u32));
        }
    }
    match pool.map(f, 0..8u32) {
        Err(PoolError::Task {
            index: 4,
            error: TaskError::Panicked(m),
        }) => assert_eq!(m, "no four"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        pool.submit(f, 4).unwrap().wait(),
        Err(TaskError::Panicked("no four".into()))
    );
    assert_eq!(pool.map(f, 5..7u32).unwrap(), [5, 6]);
}

#[test]
fn a_worker_killed_mid_map_fails_its_items_and_is_replaced() {
    let _s = serial("a_worker_killed_mid_map_fails_its_items_and_is_replaced");
    let pool = Pool::builder().workers(2).chunk_size(1).build().unwrap();
    let f = |x: u64| {
        if x == 5 {
            die_by_sigkill();
        }
        x
    };
    match pool.map(f, 0..20u64) {
        Err(PoolError::Task {
            index: 5,
            error: TaskError::WorkerDied(d),
        }) => {
            assert!(d.contains("signal 9"), "{d}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // Still usable, with two workers again.
    assert_eq!(pool.map(double, 0..100u64).unwrap().len(), 100);
    let pids: HashSet<u32> = pool
        .map(|_: u8| std::process::id(), vec![0u8; 200])
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    // A worker killed from outside while it runs a task.
    let (h, pid) = {
        let h = pool
            .submit(
                |_: ()| {
                    std::thread::sleep(Duration::from_secs(60));
                    0u32
                },
                (),
            )
            .unwrap();
        let pid = pool
            .submit(|_: ()| std::process::id(), ())
            .unwrap()
            .wait()
            .unwrap();
        (h, pid)
    };
    let sleeper: Vec<u32> = pool.map(|_: u8| std::process::id(), vec![0u8; 4]).unwrap();
    assert!(
        sleeper.iter().all(|&p| p == pid),
        "the idle worker runs everything"
    );
    // Kill every worker that is not the idle one: that is the sleeper.
    let children = list_children();
    for c in children.iter().filter(|&&c| c != pid) {
        // SAFETY: killing a child of this process.
        unsafe { libc::kill(*c as i32, libc::SIGKILL) };
    }
    match h.wait() {
        Err(TaskError::WorkerDied(d)) => assert!(d.contains("SIGKILL"), "{d}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(pool.map(double, 0..10u64).unwrap()[9], 18);
}

/// The pids of this process's children (from /proc).
fn list_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{me}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

#[test]
fn a_worker_killed_mid_imap_fails_its_item_and_the_rest_arrive() {
    let _s = serial("a_worker_killed_mid_imap_fails_its_item_and_the_rest_arrive");
    let pool = Pool::new(2).unwrap();
    let got: Vec<_> = pool
        .imap(
            |x: u64| {
                if x == 3 || x == 11 {
                    die_by_sigkill();
                }
                x
            },
            0..16u64,
        )
        .collect();
    assert_eq!(got.len(), 16);
    for (i, r) in got.iter().enumerate() {
        match (i, r) {
            (3 | 11, Err(TaskError::WorkerDied(_))) => {}
            (_, Ok(v)) => assert_eq!(*v, i as u64),
            other => panic!("unexpected {other:?}"),
        }
    }
    let unordered: Vec<_> = pool
        .imap_unordered(
            |x: u64| {
                if x == 2 {
                    std::process::abort();
                }
                x
            },
            0..6u64,
        )
        .collect();
    assert_eq!(unordered.iter().filter(|r| r.is_ok()).count(), 5);
    let died: Vec<_> = unordered.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        matches!(died[..], [TaskError::WorkerDied(d)] if d.contains("SIGABRT")),
        "{died:?}"
    );
}

#[test]
fn an_aborting_task_yields_worker_died() {
    let _s = serial("an_aborting_task_yields_worker_died");
    let pool = Pool::new(1).unwrap();
    let h = pool
        .submit(|_: ()| -> u8 { std::process::abort() }, ())
        .unwrap();
    match h.wait() {
        Err(TaskError::WorkerDied(d)) => assert!(d.contains("SIGABRT"), "{d}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(pool.submit(double, 21).unwrap().wait(), Ok(42));
}

#[test]
fn a_deadline_kills_and_replaces_the_worker() {
    let _s = serial("a_deadline_kills_and_replaces_the_worker");
    let pool = Pool::new(1).unwrap();
    let sleepy = |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    };
    let t0 = Instant::now();
    let h = pool
        .submit_with_timeout(sleepy, 60_000, Duration::from_millis(100))
        .unwrap();
    assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        pool.submit_with_timeout(sleepy, 1, Duration::from_secs(60))
            .unwrap()
            .wait(),
        Ok(1)
    );
    // The builder's task_timeout applies to map items: a chunk of `k` items gets
    // `k × timeout`. Chunks of 20 give the quick items 20 × 250 ms = 5 s, a deadline no
    // machine misses; the overdue item is alone in the last chunk (41 items), stopped after
    // about 250 ms.
    let timeout = Duration::from_millis(250);
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(20)
        .task_timeout(timeout)
        .build()
        .unwrap();
    let stuck_at_40 = |x: u64| {
        if x == 40 {
            std::thread::sleep(Duration::from_secs(60));
        }
        x
    };
    let t0 = Instant::now();
    match pool.map(stuck_at_40, 0..41) {
        // The lowest failing index: every item before it succeeded.
        Err(PoolError::Task {
            index: 40,
            error: TaskError::DeadlineExceeded,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(t0.elapsed() >= timeout);
    // The killed worker was replaced: two more chunks of 20, on both workers.
    assert_eq!(
        pool.map(stuck_at_40, 0..40).unwrap(),
        (0..40).collect::<Vec<u64>>()
    );
}

#[test]
fn max_tasks_per_worker_replaces_workers() {
    let _s = serial("max_tasks_per_worker_replaces_workers");
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(1)
        .max_tasks_per_worker(2)
        .build()
        .unwrap();
    let pids: HashSet<u32> = pool
        .map(|_: u8| std::process::id(), vec![0u8; 12])
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        pids.len() >= 6,
        "only {} distinct workers ran 12 tasks",
        pids.len()
    );
}

#[test]
fn terminate_cancels_and_drop_leaves_no_children() {
    let _s = serial("terminate_cancels_and_drop_leaves_no_children");
    assert!(no_children());
    let pool = Pool::new(2).unwrap();
    let long = |_: ()| {
        std::thread::sleep(Duration::from_secs(60));
        0u8
    };
    let hs: Vec<_> = (0..4).map(|_| pool.submit(long, ()).unwrap()).collect();
    pool.terminate();
    for h in hs {
        assert_eq!(h.wait(), Err(TaskError::Cancelled));
    }
    assert!(matches!(pool.submit(double, 1), Err(PoolError::Closed)));
    assert!(no_children());
    drop(pool);
    // Dropping a busy pool (including one-off workers of capturing closures).
    let pool = Pool::new(2).unwrap();
    let captured = String::from("x");
    let _h = pool
        .submit(move |_: ()| captured.len() + long(()) as usize, ())
        .unwrap();
    let _h2 = pool.submit(long, ()).unwrap();
    drop(pool);
    assert!(no_children());
}

#[test]
fn close_and_join_finish_queued_work() {
    let _s = serial("close_and_join_finish_queued_work");
    let pool = Pool::new(2).unwrap();
    let hs: Vec<_> = (0..10u64)
        .map(|i| pool.submit(double, i).unwrap())
        .collect();
    pool.close();
    assert!(matches!(pool.map(double, 0..3u64), Err(PoolError::Closed)));
    let mut it = pool.imap(double, 0..3u64);
    assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
    assert_eq!(it.next(), None);
    drop(it);
    pool.join().unwrap();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(2 * i as u64));
    }
    assert!(no_children());
}

#[test]
fn dropping_an_imap_early_stops_its_work() {
    let _s = serial("dropping_an_imap_early_stops_its_work");
    let pool = Pool::new(2).unwrap();
    let k = 5u64;
    let mut it = pool.imap(move |x: u64| x + k, 0u64..);
    assert_eq!(it.next(), Some(Ok(5)));
    drop(it);
    assert_eq!(pool.map(double, 0..4u64).unwrap(), [0, 2, 4, 6]);
    drop(pool);
    assert!(no_children());
}

#[test]
fn wait_async_is_cancel_safe() {
    let _s = serial("wait_async_is_cancel_safe");
    let pool = Pool::new(1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = pool
            .submit(
                |_: ()| {
                    std::thread::sleep(Duration::from_millis(300));
                    7u8
                },
                (),
            )
            .unwrap();
        tokio::select! {
            r = h.wait_async() => panic!("finished too early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert_eq!(h.wait_async().await, Ok(7));
    });
}

#[test]
fn a_pool_from_several_threads() {
    let _s = serial("a_pool_from_several_threads");
    let pool = Pool::new(2).unwrap();
    let n = 200 * scale() as u64;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    let mut sum = 0;
                    for i in 0..n / 10 {
                        sum += pool.submit(double, i + t).unwrap().wait().unwrap();
                    }
                    sum += pool.map(double, 0..n).unwrap().iter().sum::<u64>();
                    sum
                })
            })
            .collect();
        for (t, h) in hs.into_iter().enumerate() {
            let t = t as u64;
            let expect: u64 = (0..n / 10).map(|i| 2 * (i + t)).sum::<u64>() + n * (n - 1);
            assert_eq!(h.join().unwrap(), expect);
        }
    });
}

#[test]
fn a_pool_refuses_work_in_a_forked_child() {
    let _s = serial("a_pool_refuses_work_in_a_forked_child");
    let pool = std::sync::Arc::new(Pool::new(1).unwrap());
    let p2 = std::sync::Arc::clone(&pool);
    let h =
        uniconc_process::spawn(move || matches!(p2.map(double, 0..3u64), Err(PoolError::Closed)))
            .unwrap();
    assert_eq!(uniconc_core::JoinHandle::join(h), Ok(true));
    // The child's drop of its copy did not touch our workers.
    assert_eq!(pool.map(double, 0..3u64).unwrap(), [0, 2, 4]);
}

#[test]
fn bad_settings_are_errors() {
    assert!(Pool::new(0).is_err());
    assert!(Pool::builder().chunk_size(0).build().is_err());
    assert!(Pool::builder().max_tasks_per_worker(0).build().is_err());
}

#[test]
fn pool_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync::<Pool>();
    assert_send::<uniconc_process::TaskHandle<String>>();
}

#[test]
fn imap_with_a_slow_consumer_loses_nothing() {
    let _s = serial("imap_with_a_slow_consumer_loses_nothing");
    let pool = Pool::new(2).unwrap();
    // Every job in flight finishes while the consumer sleeps, so each refill starts from an
    // empty pipeline.
    for (i, r) in pool.imap(double, 0u64..).take(40).enumerate() {
        assert_eq!(r, Ok(2 * i as u64));
        std::thread::sleep(Duration::from_millis(3));
    }
    let mut got: Vec<u64> = Vec::new();
    for r in pool.imap_unordered(double, 0u64..30) {
        got.push(r.unwrap());
        std::thread::sleep(Duration::from_millis(3));
    }
    got.sort_unstable();
    assert_eq!(got, (0..30).map(double).collect::<Vec<_>>());
}

#[test]
fn dropped_task_handles_leave_no_workers_behind() {
    let _s = serial("dropped_task_handles_leave_no_workers_behind");
    let pool = Pool::new(1).unwrap();
    for i in 0..5u64 {
        let v: Vec<u64> = vec![i];
        drop(pool.submit(move |x: u64| v[0] + x, 1).unwrap());
    }
    // Queued behind a long task, then dropped: the queued jobs go, the pool stays usable.
    let long = pool
        .submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 200)
        .unwrap();
    for i in 0..5u64 {
        drop(pool.submit(double, i).unwrap());
    }
    long.wait().unwrap();
    assert_eq!(pool.map(double, 0..3u64).unwrap(), [0, 2, 4]);
    pool.join().unwrap();
    assert!(no_children());
}

#[test]
fn large_arguments_and_results_cross_intact() {
    let _s = serial("large_arguments_and_results_cross_intact");
    let pool = Pool::builder().workers(2).chunk_size(2).build().unwrap();
    let args: Vec<String> = (0..6)
        .map(|i| char::from(b'a' + i as u8).to_string().repeat(1 << 20))
        .collect();
    let lens = pool.map(|s: String| s.len(), args.clone()).unwrap();
    assert_eq!(lens, vec![1 << 20; 6]);
    let back = pool.map(|s: String| s.into_bytes(), args.clone()).unwrap();
    for (a, b) in args.iter().zip(&back) {
        assert_eq!(a.as_bytes(), &b[..]);
    }
    let h = pool.submit(|n: usize| vec![7u8; n], 3 << 20).unwrap();
    assert_eq!(h.wait().unwrap().len(), 3 << 20);
}

#[test]
fn an_idle_worker_killed_from_outside_is_replaced() {
    let _s = serial("an_idle_worker_killed_from_outside_is_replaced");
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(double, 0..10u64).unwrap().len(), 10);
    let before = list_children();
    assert_eq!(before.len(), 2, "{before:?}");
    // SAFETY: killing a child of this process.
    unsafe { libc::kill(before[0] as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(pool.map(double, 0..1000u64).unwrap().len(), 1000);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = pool.submit(double, 1).unwrap().wait();
        let now = list_children();
        if now.len() == 2 && !now.contains(&before[0]) {
            break;
        }
        assert!(Instant::now() < end, "never replaced: {now:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stress_many_small_maps_and_submits() {
    let _s = serial("stress_many_small_maps_and_submits");
    let pool = Pool::builder()
        .workers(3)
        .max_tasks_per_worker(50)
        .build()
        .unwrap();
    let rounds = 20 * scale() as u64;
    let mut total = 0u64;
    for r in 0..rounds {
        total += pool
            .map(double, 0..(r % 17 + 1))
            .unwrap()
            .iter()
            .sum::<u64>();
        let hs: Vec<_> = (0..5)
            .map(|i| pool.submit(double, r + i).unwrap())
            .collect();
        total += hs.into_iter().map(|h| h.wait().unwrap()).sum::<u64>();
    }
    let expect: u64 = (0..rounds)
        .map(|r| {
            (0..(r % 17 + 1)).map(double).sum::<u64>() + (0..5).map(|i| double(r + i)).sum::<u64>()
        })
        .sum();
    assert_eq!(total, expect);
}

#[test]
fn a_task_handle_moved_into_a_child_does_not_steal_results() {
    let _s = serial("a_task_handle_moved_into_a_child_does_not_steal_results");
    let pool = Pool::new(1).unwrap();
    let h = pool
        .submit(
            |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            },
            100,
        )
        .unwrap();
    let mine = pool.submit(double, 4).unwrap();
    let child =
        uniconc_process::spawn(move || matches!(h.wait(), Err(TaskError::Failed(_)))).unwrap();
    assert_eq!(uniconc_core::JoinHandle::join(child), Ok(true));
    assert_eq!(mine.wait(), Ok(8));
}

#[test]
fn capturing_submits_never_run_more_than_workers_at_once() {
    use uniconc_core::{Lock as _, Value as _};
    let _s = serial("capturing_submits_never_run_more_than_workers_at_once");
    let pool = Pool::new(2).unwrap();
    // [running now, most ever running], updated under `lock`.
    let running = uniconc_process::value([0u64; 2]).unwrap();
    let lock = uniconc_process::lock().unwrap();
    let n = 20 * scale() as u64;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (running, lock) = (running.clone(), lock.clone());
            pool.submit(
                move |x: u64| {
                    {
                        let _g = lock.lock().unwrap();
                        let [now, max] = running.load();
                        running.store([now + 1, max.max(now + 1)]);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    {
                        let _g = lock.lock().unwrap();
                        let [now, max] = running.load();
                        running.store([now - 1, max]);
                    }
                    x * 3
                },
                i,
            )
            .unwrap()
        })
        .collect();
    // Queued capturing submits cost no process: 2 long-lived workers + at most 2 forked for
    // the submits that hold a slot.
    let children = list_children().len();
    assert!(children <= 4, "{children} children for a pool of 2");
    let got: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(got, (0..n).map(|i| i * 3).collect::<Vec<_>>());
    let [now, max] = running.load();
    assert_eq!(now, 0);
    assert!(max <= 2, "{max} tasks ran at once on a pool of 2");
    assert!(max >= 1);
}

#[test]
fn a_blocked_capturing_submit_holds_the_only_slot_and_terminate_cancels_the_queue() {
    use uniconc_core::Event as _;
    let _s =
        serial("a_blocked_capturing_submit_holds_the_only_slot_and_terminate_cancels_the_queue");
    let pool = Pool::new(1).unwrap();
    let go = uniconc_process::event().unwrap();
    let started = uniconc_process::event().unwrap();
    let (go2, started2) = (go.clone(), started.clone());
    let running = pool
        .submit(
            move |_: u64| {
                started2.set();
                go2.wait_timeout(Duration::from_secs(60)).is_ok()
            },
            0,
        )
        .unwrap();
    assert!(started.wait_timeout(Duration::from_secs(60)).is_ok());
    let queued_fn = pool.submit(double, 3).unwrap();
    let k = 7u64;
    let queued_closure = pool.submit(move |x: u64| x + k, 1).unwrap();
    // Drive the pool for a while: neither queued task may start while the slot is held.
    let mut queued_fn = queued_fn;
    assert_eq!(
        queued_fn.wait_timeout(Duration::from_millis(300)),
        Err(TaskError::Timeout)
    );
    pool.terminate();
    go.set();
    assert_eq!(queued_fn.wait(), Err(TaskError::Cancelled));
    assert_eq!(queued_closure.wait(), Err(TaskError::Cancelled));
    assert!(matches!(
        running.wait(),
        Ok(true) | Err(TaskError::Cancelled)
    ));
    drop(pool);
    assert!(no_children(), "terminate left a child behind");
}

#[test]
fn a_capturing_map_shares_the_slots_with_submitted_work() {
    use uniconc_core::{Lock as _, Value as _};
    let _s = serial("a_capturing_map_shares_the_slots_with_submitted_work");
    let pool = Pool::new(2).unwrap();
    let running = uniconc_process::value([0u64; 2]).unwrap();
    let lock = uniconc_process::lock().unwrap();
    let task = {
        let (running, lock) = (running.clone(), lock.clone());
        move |x: u64| {
            {
                let _g = lock.lock().unwrap();
                let [now, max] = running.load();
                running.store([now + 1, max.max(now + 1)]);
            }
            std::thread::sleep(Duration::from_millis(10));
            {
                let _g = lock.lock().unwrap();
                let [now, max] = running.load();
                running.store([now - 1, max]);
            }
            x + 1
        }
    };
    let handles: Vec<_> = (0..4u64)
        .map(|i| pool.submit(task.clone(), i).unwrap())
        .collect();
    let out = pool.map(task, 0..8u64).unwrap();
    assert_eq!(out, (1..9).collect::<Vec<u64>>());
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(i as u64 + 1));
    }
    let [now, max] = running.load();
    assert_eq!(now, 0);
    assert!(max <= 2, "{max} tasks ran at once on a pool of 2");
}

#[test]
fn pool_workers_keep_no_channel_connected() {
    use uniconc_core::{Receiver as _, RecvTimeoutError, Sender as _};
    let _s = serial("pool_workers_keep_no_channel_connected");
    let (tx, rx) = uniconc_process::channel::<u64>(4).unwrap();
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(double, 0..10u64).unwrap()[9], 18);
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(5));
    // The workers (alive, idle) inherited `tx`: they must not count as its holders.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)),
        Err(RecvTimeoutError::Disconnected)
    );
    drop(pool);
}

/// An argument that serializes in the parent but refuses to deserialize in the worker when it
/// is 13, and that refuses to serialize when it is 106 (a result only).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 106 {
            return Err(serde::ser::Error::custom("106 is unspeakable"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match <u32 as serde::Deserialize>::deserialize(d)? {
            13 => Err(serde::de::Error::custom("thirteen is unlucky")),
            v => Ok(Picky(v)),
        }
    }
}

#[test]
fn failures_inside_a_chunk_fail_only_their_items() {
    let _s = serial("failures_inside_a_chunk_fail_only_their_items");
    let pool = Pool::builder().workers(2).chunk_size(5).build().unwrap();
    // Chunks: 0..5 (two panics), 5..10 (a result that cannot be serialized), 10..15 (an
    // argument the worker cannot decode: it and the rest of its chunk fail), 15..20 (clean).
    let f = |x: Picky| {
        if x.0 == 1 || x.0 == 3 {
            panic!("no {}", x.0);
        }
        if x.0 == 6 { Picky(106) } else { x }
    };
    let args = || (0..20u32).map(Picky);
    let check = |got: Vec<Result<Picky, TaskError>>| {
        assert_eq!(got.len(), 20);
        for (i, r) in got.into_iter().enumerate() {
            match i {
                1 | 3 => assert_eq!(r, Err(TaskError::Panicked(format!("no {i}")))),
                6 => assert!(
                    matches!(&r, Err(TaskError::Failed(m)) if m.contains("result could not be serialized")),
                    "{r:?}"
                ),
                13 | 14 => assert!(
                    matches!(&r, Err(TaskError::Failed(m)) if m.contains("argument could not be decoded")),
                    "item {i}: {r:?}"
                ),
                _ => assert_eq!(r, Ok(Picky(i as u32))),
            }
        }
    };
    check(pool.imap(f, args()).collect());
    let unordered: Vec<_> = pool.imap_unordered(f, args()).collect();
    let oks: HashSet<u32> = unordered
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|p| p.0))
        .collect();
    let expected: HashSet<u32> = (0..20).filter(|i| ![1, 3, 6, 13, 14].contains(i)).collect();
    assert_eq!(oks, expected);
    let panicked = unordered
        .iter()
        .filter(|r| matches!(r, Err(TaskError::Panicked(_))))
        .count();
    let failed = unordered
        .iter()
        .filter(|r| matches!(r, Err(TaskError::Failed(_))))
        .count();
    assert_eq!((unordered.len(), panicked, failed), (20, 2, 3));
    match pool.map(f, args()) {
        Err(PoolError::Task {
            index: 1,
            error: TaskError::Panicked(m),
        }) => assert_eq!(m, "no 1"),
        other => panic!("unexpected {other:?}"),
    }
    match pool.map(f, (10..15).map(Picky)) {
        Err(PoolError::Task {
            index: 3,
            error: TaskError::Failed(m),
        }) => assert!(m.contains("argument could not be decoded"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    // A failure in a later chunk reports its index in the whole input.
    let late = |x: u32| {
        assert!(x != 17, "no seventeen");
        x
    };
    match pool.map(late, 0..20u32) {
        Err(PoolError::Task {
            index: 17,
            error: TaskError::Panicked(m),
        }) => assert!(m.contains("no seventeen"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    // The pool goes on.
    assert_eq!(
        pool.map(f, (15..20).map(Picky)).unwrap(),
        (15..20).map(Picky).collect::<Vec<_>>()
    );
}

/// An argument that the parent cannot serialize when it is 700 (no worker ever sees it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unsendable(u32);

impl serde::Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 700 {
            return Err(serde::ser::Error::custom("700 cannot be sent"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Unsendable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <u32 as serde::Deserialize>::deserialize(d).map(Unsendable)
    }
}

fn unsendables() -> impl ExactSizeIterator<Item = Unsendable> {
    (0..1000u32).map(Unsendable)
}

fn is_encode_error(e: &TaskError) -> bool {
    matches!(e, TaskError::Failed(m) if m.contains("argument could not be serialized"))
}

/// The pools the unsendable-argument tests run on: chunk sizes 1, 7 and the default (125 for
/// 1000 items on 2 workers).
fn chunked_pools() -> Vec<(Option<usize>, Pool)> {
    [Some(1), Some(7), None]
        .into_iter()
        .map(|chunk| {
            let b = Pool::builder().workers(2);
            let b = match chunk {
                Some(c) => b.chunk_size(c),
                None => b,
            };
            (chunk, b.build().unwrap())
        })
        .collect()
}

#[test]
fn map_reports_the_lowest_failing_index_whatever_the_failure() {
    let _s = serial("map_reports_the_lowest_failing_index_whatever_the_failure");
    let id = |x: Unsendable| x.0;
    let panics_at_300 = |x: Unsendable| {
        assert!(x.0 != 300, "no 300");
        x.0
    };
    let panics_at_900 = |x: Unsendable| {
        assert!(x.0 != 900, "no 900");
        x.0
    };
    for (chunk, pool) in chunked_pools() {
        // (a) Only item 700 fails: its argument cannot be encoded.
        match pool.map(id, unsendables()) {
            Err(PoolError::Task { index: 700, error }) if is_encode_error(&error) => {}
            other => panic!(
                "chunk {chunk:?}, (a): unexpected {:?}",
                other.map(|v| v.len())
            ),
        }
        // (b) Item 300 panics, before the unencodable 700: 300 is reported.
        match pool.map(panics_at_300, unsendables()) {
            Err(PoolError::Task {
                index: 300,
                error: TaskError::Panicked(m),
            }) => assert_eq!(m, "no 300", "chunk {chunk:?}"),
            other => panic!(
                "chunk {chunk:?}, (b): unexpected {:?}",
                other.map(|v| v.len())
            ),
        }
        // (c) Item 700 cannot be encoded, item 900 would panic: 700 is reported.
        match pool.map(panics_at_900, unsendables()) {
            Err(PoolError::Task { index: 700, error }) if is_encode_error(&error) => {}
            other => panic!(
                "chunk {chunk:?}, (c): unexpected {:?}",
                other.map(|v| v.len())
            ),
        }
        // The same input from an iterator of unknown length (collected first).
        match pool.map(panics_at_300, unsendables().filter(|_| true)) {
            Err(PoolError::Task {
                index: 300,
                error: TaskError::Panicked(_),
            }) => {}
            other => panic!(
                "chunk {chunk:?}, filtered: unexpected {:?}",
                other.map(|v| v.len())
            ),
        }
        // The pool goes on.
        assert_eq!(
            pool.map(id, (0..20).map(Unsendable)).unwrap(),
            (0..20).collect::<Vec<u32>>(),
            "chunk {chunk:?}"
        );
    }
}

#[test]
fn map_with_an_unencodable_argument_still_reports_an_earlier_slow_failure() {
    let _s = serial("map_with_an_unencodable_argument_still_reports_an_earlier_slow_failure");
    // Item 3 fails only after a while, long after every argument up to 700 was encoded: the
    // map must still wait for it and report it, not the unencodable 700.
    let pool = Pool::builder().workers(2).chunk_size(1).build().unwrap();
    let slow_panic = |x: Unsendable| {
        if x.0 == 3 {
            std::thread::sleep(Duration::from_millis(300));
            panic!("no 3");
        }
        x.0
    };
    match pool.map(slow_panic, unsendables()) {
        Err(PoolError::Task {
            index: 3,
            error: TaskError::Panicked(m),
        }) => assert_eq!(m, "no 3"),
        other => panic!("unexpected {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn imap_gives_an_unencodable_argument_its_own_result_in_order() {
    let _s = serial("imap_gives_an_unencodable_argument_its_own_result_in_order");
    let f = |x: Unsendable| {
        assert!(x.0 != 300 && x.0 != 900, "no {}", x.0);
        x.0
    };
    for (chunk, pool) in chunked_pools() {
        let got: Vec<_> = pool.imap(f, unsendables()).collect();
        assert_eq!(got.len(), 1000, "chunk {chunk:?}");
        for (i, r) in got.into_iter().enumerate() {
            match i {
                300 | 900 => assert_eq!(
                    r,
                    Err(TaskError::Panicked(format!("no {i}"))),
                    "chunk {chunk:?}"
                ),
                700 => assert!(
                    r.as_ref().is_err_and(is_encode_error),
                    "chunk {chunk:?}: {r:?}"
                ),
                _ => assert_eq!(r, Ok(i as u32), "chunk {chunk:?}, item {i}"),
            }
        }
        let unordered: Vec<_> = pool.imap_unordered(f, unsendables()).collect();
        let mut oks: Vec<u32> = unordered.iter().filter_map(|r| r.clone().ok()).collect();
        oks.sort_unstable();
        let expected: Vec<u32> = (0..1000).filter(|i| ![300, 700, 900].contains(i)).collect();
        assert_eq!(oks, expected, "chunk {chunk:?}");
        let encode = unordered
            .iter()
            .filter(|r| r.as_ref().is_err_and(is_encode_error))
            .count();
        let panicked = unordered
            .iter()
            .filter(|r| matches!(r, Err(TaskError::Panicked(_))))
            .count();
        assert_eq!(
            (unordered.len(), encode, panicked),
            (1000, 1, 2),
            "chunk {chunk:?}"
        );
    }
}

#[test]
fn results_passed_through_shared_slots_arrive_intact() {
    let _s = serial("results_passed_through_shared_slots_arrive_intact");
    // Chunks of thousands of results (tens of KiB each) go back through the workers'
    // shared result slots; bigger ones (over the slot size) and small ones go inline.
    let pool = Pool::builder().workers(2).build().unwrap();
    let n = 100_000 * scale() as u64;
    for _ in 0..3 {
        let got = pool.map(double, 0..n).unwrap();
        assert_eq!(got.len(), n as usize);
        assert!(got.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
    }
    // Strings of varied sizes, some chunks over a slot's 2 MiB.
    let words = |i: u64| "x".repeat((i % 97) as usize * if i % 1000 == 0 { 4096 } else { 1 });
    let got = pool.map(words, 0..20_000u64).unwrap();
    assert!(got.iter().enumerate().all(|(i, s)| *s == words(i as u64)));
    // Failures recorded next to results in a slot.
    let picky = |x: u64| {
        assert!(x % 25_000 != 24_999, "no {x}");
        x
    };
    let all: Vec<_> = pool
        .imap(picky, 0..n)
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, r)| (i, r.unwrap_err()))
        .collect();
    assert_eq!(all.len(), (n / 25_000) as usize);
    for (i, e) in all {
        assert_eq!(i as u64 % 25_000, 24_999);
        assert_eq!(e, TaskError::Panicked(format!("no {i}")));
    }
    match pool.map(picky, 0..n) {
        Err(PoolError::Task {
            index: 24_999,
            error: TaskError::Panicked(_),
        }) => {}
        other => panic!("unexpected {:?}", other.map(|v| v.len())),
    }
    // A worker killed mid-map while the other's results sit in its slots.
    let pool = Pool::builder()
        .workers(2)
        .chunk_size(10_000)
        .build()
        .unwrap();
    let f = |x: u64| {
        if x == 75_000 {
            die_by_sigkill();
        }
        x
    };
    match pool.map(f, 0..100_000u64) {
        Err(PoolError::Task {
            index: 70_000..=75_000,
            error: TaskError::WorkerDied(d),
        }) => assert!(d.contains("signal 9"), "{d}"),
        other => panic!("unexpected {:?}", other.map(|v| v.len())),
    }
    let got = pool.map(double, 0..n).unwrap();
    assert!(got.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
}

/// What a task does with tokio: builds its own runtime and runs a `tokio::spawn`ed task on it.
fn own_runtime_runs_a_spawned_task(x: u32) -> u32 {
    let rt = tokio::runtime::Runtime::new().expect("a runtime in the worker");
    rt.block_on(async move {
        tokio::spawn(async move { x + 1 })
            .await
            .expect("the task ran")
    })
}

#[test]
fn workers_forked_inside_a_runtime_start_outside_it() {
    let _s = serial("workers_forked_inside_a_runtime_start_outside_it");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        // The long-lived workers are forked here, inside the runtime; so are the workers of a
        // capturing `map` and the process of a capturing `submit`.
        let pool = Pool::new(2).unwrap();
        let one = 1;
        let long_lived = pool
            .submit(own_runtime_runs_a_spawned_task, 1)
            .unwrap()
            .wait_timeout(Duration::from_secs(60));
        let capturing = pool
            .submit(
                move |x: u32| own_runtime_runs_a_spawned_task(x) + one - 1,
                2,
            )
            .unwrap()
            .wait_timeout(Duration::from_secs(60));
        let mapped = pool.map(move |x: u32| own_runtime_runs_a_spawned_task(x) * one, 0..4);
        (long_lived, capturing, mapped)
    });
    assert_eq!(got.0, Ok(2));
    assert_eq!(got.1, Ok(3));
    assert_eq!(got.2.unwrap(), [1, 2, 3, 4]);
}

#[test]
fn a_pool_past_the_worker_limit_is_refused_before_any_fork() {
    let _s = serial("a_pool_past_the_worker_limit_is_refused_before_any_fork");
    let max = Pool::max_workers();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        max <= 64 * cpus && max < uniconc_process::MAX_PROCESSES,
        "{max}"
    );
    for workers in [100_000, max + 1] {
        let err = Pool::new(workers).unwrap_err();
        assert_eq!(err.kind(), uniconc_core::ErrorKind::InvalidArgument);
        let msg = err.to_string();
        assert!(msg.contains(&format!("at most {max}")), "{msg}");
        assert!(msg.contains(&workers.to_string()), "{msg}");
        assert!(no_children(), "a refused pool forked");
    }
    // A finite RLIMIT_NPROC lowers the limit (in a child: the limit is per process).
    let child = common::spawn(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) }, 0);
        lim.rlim_cur = 3;
        // SAFETY: a valid rlimit; lowering the soft limit under the hard one needs no privilege.
        let ok = unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &lim) } == 0;
        let err = Pool::new(4).map(drop).unwrap_err().to_string();
        let refused = err.contains("RLIMIT_NPROC is 3") && err.contains("at most 3");
        i32::from(!(ok && Pool::max_workers() == 3 && refused))
    });
    assert_eq!(child.join(Duration::from_secs(60)), 0);
}

fn assert_undecodable(e: &TaskError, what: &str) {
    match e {
        TaskError::Failed(m) => {
            let named = format!("{what} could not be decoded as a `pool::common::Even`");
            assert!(m.contains(&named), "{m}");
            assert!(m.contains("3 is odd"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn arguments_and_results_that_cannot_be_decoded_name_their_type_and_the_reason() {
    let _s = serial("arguments_and_results_that_cannot_be_decoded_name_their_type_and_the_reason");
    let pool = Pool::new(2).unwrap();
    let half = |e: Even| e.0 / 2;
    let even = |x: u32| Even(x);
    // `submit`: the argument is decoded in the worker, the result in this process.
    assert_eq!(pool.submit(half, Even(4)).unwrap().wait(), Ok(2));
    let e = pool.submit(half, Even(3)).unwrap().wait().unwrap_err();
    assert_undecodable(&e, "the argument");
    let e = pool.submit(even, 3).unwrap().wait().unwrap_err();
    assert_undecodable(&e, "the result");
    // `map`: the same, with the failing item's index.
    match pool.map(half, [2, 4, 3, 6].map(Even)) {
        Err(PoolError::Task { index: 2, error }) => assert_undecodable(&error, "the argument"),
        other => panic!("{other:?}"),
    }
    match pool.map(even, [2, 4, 3, 6]) {
        Err(PoolError::Task { index: 2, error }) => assert_undecodable(&error, "the result"),
        other => panic!("{other:?}"),
    }
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    u.ru_minflt
}

/// A `map` over a `Vec` frees the input before it allocates the output, so the two are never
/// alive together: with both alive (8 MB each here), glibc's heap gave the memory back to the
/// kernel at every call, and each call faulted about 4000 pages in again (the map took twice as
/// long as over a range).
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn map_over_a_vec_does_not_fault_its_memory_in_at_every_call() {
    let _s = serial("map_over_a_vec_does_not_fault_its_memory_in_at_every_call");
    let pool = Pool::new(2).unwrap();
    let items: Vec<u64> = (0..1_000_000).collect();
    let expected: Vec<u64> = items.iter().map(|&x| double(x)).collect();
    for _ in 0..2 {
        assert_eq!(pool.map(double, items.clone()).unwrap(), expected);
    }
    let calls = 5;
    let before = minor_faults();
    for _ in 0..calls {
        assert_eq!(pool.map(double, items.clone()).unwrap().len(), items.len());
    }
    let per_call = (minor_faults() - before) / calls;
    // 2048 pages would be one 8 MB buffer faulted in again.
    assert!(per_call < 1000, "{per_call} page faults per call");
}

#[test]
fn a_zero_task_timeout_is_refused_with_the_core_message() {
    let _s = serial("a_zero_task_timeout_is_refused_with_the_core_message");
    let pool = Pool::new(1).unwrap();
    let err = pool
        .submit_with_timeout(double, 1, Duration::ZERO)
        .expect_err("a zero timeout is refused");
    let rule = uniconc_core::validate::task_timeout(Some(Duration::ZERO)).unwrap_err();
    match err {
        PoolError::Spawn(e) => assert_eq!(e.to_string(), rule.to_string()),
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(pool.submit(double, 2).unwrap().wait(), Ok(4)); // the pool goes on
}
