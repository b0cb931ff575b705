//! Pools: map order, lazy imap, unordered completeness, imap_with in either order, submit,
//! panics, close/join/terminate, settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uniconc::prelude::*;
use uniconc::{ErrorKind, Order, PoolError, Task, TaskError};

use crate::support::{LONG, SHORT, scale};

fn double(x: u64) -> u64 {
    x * 2
}

/// On a backend whose pools run named tasks only (`!B::POOL_CLOSURES`): checks that every
/// closure form is refused — `map` and `submit` with `Spawn(Unsupported)`, the `imap` forms
/// with one `Failed` — and returns `true`, ending the closure test there (its behaviour is
/// covered by the named-task tests). `false` on the other backends.
pub(crate) fn closures_refused<B: Backend>() -> bool {
    if B::POOL_CLOSURES {
        return false;
    }
    let pool = B::pool(1).unwrap();
    match pool.map(double, 0..3u64) {
        Err(PoolError::Spawn(e)) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}"),
        Err(other) => panic!("map: expected Spawn(Unsupported), got {other}"),
        Ok(_) => panic!("map: a closure accepted where POOL_CLOSURES is false"),
    }
    match pool.submit(double, 1u64) {
        Err(PoolError::Spawn(e)) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}"),
        Err(other) => panic!("submit: expected Spawn(Unsupported), got {other}"),
        Ok(_) => panic!("submit: a closure accepted where POOL_CLOSURES is false"),
    }
    for order in [Order::Input, Order::Completion] {
        let mut it = pool.imap_with(double, 0..3u64, order);
        assert!(matches!(it.next(), Some(Err(TaskError::Failed(_)))));
        assert!(it.next().is_none());
    }
    true
}

pub(crate) fn pool_map_keeps_input_order<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let out = pool.map(double, 0..1000u64).unwrap();
    assert_eq!(out, (0..1000u64).map(double).collect::<Vec<_>>());
    let empty: Vec<u64> = pool.map(double, Vec::<u64>::new()).unwrap();
    assert!(empty.is_empty());
    // Items that take different times still come back in input order.
    let out = pool
        .map(
            |x: u64| {
                std::thread::sleep(Duration::from_millis((5 - x % 5) * 2));
                x
            },
            0..20u64,
        )
        .unwrap();
    assert_eq!(out, (0..20).collect::<Vec<_>>());
}

pub(crate) fn pool_map_many_items<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let n = 200_000 * scale() as u64;
    let pool = B::pool(2).unwrap();
    let out = pool.map(|x: u64| x ^ 0x5555, 0..n).unwrap();
    assert_eq!(out.len() as u64, n);
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u64) ^ 0x5555)
    );
}

pub(crate) fn pool_imap_is_lazy_on_endless_input<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let first: Vec<u64> = pool
        .imap(double, 0u64..)
        .take(50)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..50u64).map(double).collect::<Vec<_>>());
    // Still usable afterwards (the abandoned iterator left nothing stuck).
    assert_eq!(pool.map(double, [1u64, 2]).unwrap(), [2, 4]);
}

fn slow_zero(x: u64) -> u64 {
    if x == 0 {
        std::thread::sleep(Duration::from_millis(300));
    }
    x
}

/// Ordered `imap` behind a slow first chunk: the chunks that finish ahead of it still count
/// against the window of `2 × workers` chunks, so an endless input is not pulled while the
/// first result is awaited.
pub(crate) fn pool_imap_window_holds_behind_a_slow_chunk<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let items = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut it = pool.imap(slow_zero, items);
    assert_eq!(it.next(), Some(Ok(0)));
    // A window of 4 chunks of one item (the default chunk size is 1); 16 leaves slack.
    let n = pulled.load(Ordering::Relaxed);
    assert!(n <= 16, "{n} items pulled behind one slow chunk");
    assert_eq!(it.next(), Some(Ok(1)));
}

pub(crate) fn pool_imap_unordered_is_complete<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(3).unwrap();
    let mut got: Vec<u64> = pool
        .imap_unordered(double, 0..500u64)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(double).collect::<Vec<_>>());
    let ordered: Vec<u64> = pool.imap(double, 0..500u64).map(Result::unwrap).collect();
    assert_eq!(ordered, (0..500u64).map(double).collect::<Vec<_>>());
}

/// `imap_with`, the order chosen at run time through generic code: `Order::Input` yields in
/// input order, `Order::Completion` yields every result once, as it finishes: an item held
/// back until the consumer has seen another result does not hold up the rest.
pub(crate) fn pool_imap_with_either_order<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::Pool::builder().workers(2).chunk_size(1).build().unwrap();
    let expected: Vec<u64> = (0..300u64).map(double).collect();
    for order in [Order::Input, Order::Completion] {
        let mut got: Vec<u64> = pool
            .imap_with(double, 0..300u64, order)
            .map(Result::unwrap)
            .collect();
        if order == Order::Completion {
            got.sort_unstable();
        }
        assert_eq!(got, expected, "{order:?}");
    }

    // Item 0 waits for the gate, which opens only once a result has been yielded: in input
    // order that first result would be item 0's (a wrong order shows here after `LONG`, as a
    // 0 first, not as a hang).
    let gate = B::event().unwrap();
    let g = gate.clone();
    let held_at_zero = move |x: u64| {
        if x == 0 {
            let _ = g.wait_timeout(LONG);
        }
        x
    };
    let mut it = pool.imap_with(held_at_zero, 0..8u64, Order::Completion);
    let first = it.next().expect("8 results").unwrap();
    gate.set();
    assert_ne!(first, 0, "completion order yielded the held item first");
    let mut all: Vec<u64> = it.map(Result::unwrap).collect();
    all.push(first);
    all.sort_unstable();
    assert_eq!(all, (0..8u64).collect::<Vec<_>>());
}

pub(crate) fn pool_submit_and_wait<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let h = pool.submit(|x: u64| x + 1, 41).unwrap();
    assert_eq!(h.wait(), Ok(42));
    let handles: Vec<_> = (0..20u64)
        .map(|i| pool.submit(|x: u64| x * x, i).unwrap())
        .collect();
    let results: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(results, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    let mut h = pool
        .submit(|s: String| s.len() as u64, "four".to_owned())
        .unwrap();
    assert_eq!(h.wait_timeout(LONG), Ok(4));
    assert!(h.is_finished());
    assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken));
}

pub(crate) fn pool_task_wait_timeout_then_wait<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(1).unwrap();
    let go = B::event().unwrap();
    let go2 = go.clone();
    let mut h = pool
        .submit(
            move |x: u64| {
                go2.wait_timeout(LONG).unwrap();
                x
            },
            5,
        )
        .unwrap();
    assert_eq!(h.wait_timeout(SHORT), Err(TaskError::Timeout));
    assert_eq!(h.try_wait(), Err(TaskError::Timeout));
    assert!(!h.is_finished());
    go.set();
    assert_eq!(h.wait(), Ok(5));
}

pub(crate) fn pool_panicking_task_is_isolated<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let r = pool.map(
        |x: u64| {
            if x == 13 {
                panic!("unlucky {x}");
            }
            x
        },
        0..100u64,
    );
    match r {
        Err(PoolError::Task {
            index: 13,
            error: TaskError::Panicked(msg),
        }) => {
            assert!(msg.contains("unlucky 13"), "message: {msg}")
        }
        other => panic!("expected task 13 to panic, got {other:?}"),
    }
    let h = pool
        .submit(|_: u64| -> u64 { panic!("submitted boom") }, 0)
        .unwrap();
    assert!(matches!(h.wait(), Err(TaskError::Panicked(m)) if m.contains("submitted boom")));
    let results: Vec<Result<u64, TaskError>> = pool
        .imap(
            |x: u64| if x == 2 { panic!("imap boom") } else { x },
            0..5u64,
        )
        .collect();
    assert_eq!(results.len(), 5);
    assert!(matches!(&results[2], Err(TaskError::Panicked(m)) if m.contains("imap boom")));
    assert_eq!(results[4], Ok(4));
    // The pool is still usable.
    assert_eq!(
        pool.map(double, 0..10u64).unwrap(),
        (0..10u64).map(double).collect::<Vec<_>>()
    );
}

pub(crate) fn pool_close_and_join<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let queued: Vec<_> = (0..10u64)
        .map(|i| pool.submit(double, i).unwrap())
        .collect();
    pool.close();
    assert!(matches!(pool.submit(double, 1), Err(PoolError::Closed)));
    assert!(matches!(pool.map(double, [1u64]), Err(PoolError::Closed)));
    let mut it = pool.imap(double, [1u64, 2]);
    assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
    assert_eq!(it.next(), None);
    drop(it);
    pool.join().unwrap();
    // Work queued before the close still ran.
    let done: Vec<u64> = queued.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(done, (0..10u64).map(double).collect::<Vec<_>>());
}

pub(crate) fn pool_terminate<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(1).unwrap();
    let go = B::event().unwrap();
    let go2 = go.clone();
    let running = pool
        .submit(
            move |_: u64| {
                go2.wait_timeout(LONG).unwrap();
                1u64
            },
            0,
        )
        .unwrap();
    let queued = pool.submit(double, 3).unwrap();
    crate::support::pause();
    pool.terminate();
    go.set();
    assert_eq!(
        queued.wait(),
        Err(TaskError::Cancelled),
        "queued work is cancelled"
    );
    // The running task either finished or was stopped, depending on the backend.
    assert!(matches!(running.wait(), Ok(1) | Err(TaskError::Cancelled)));
    assert!(matches!(pool.submit(double, 1), Err(PoolError::Closed)));
    pool.join().unwrap();
}

pub(crate) fn pool_zero_workers_and_bad_settings_refused<B: Backend>() {
    assert_eq!(
        B::pool(0).err().expect("0 workers").kind(),
        ErrorKind::InvalidArgument
    );
    let bad = <B::Pool as uniconc::Pool>::builder()
        .workers(1)
        .chunk_size(0)
        .build();
    assert_eq!(
        bad.err().expect("chunk 0").kind(),
        ErrorKind::InvalidArgument
    );
    let bad = <B::Pool as uniconc::Pool>::builder()
        .workers(1)
        .max_tasks_per_worker(0)
        .build();
    assert_eq!(
        bad.err().expect("max tasks 0").kind(),
        ErrorKind::InvalidArgument
    );
    // `with_config` checks the same rules as the builder, with the same message everywhere.
    let config = |f: fn(&mut uniconc::PoolConfig)| {
        let mut c = uniconc::PoolConfig::default();
        c.workers = 1;
        f(&mut c);
        c
    };
    for (config, rule) in [
        (
            config(|c| c.workers = 0),
            uniconc_core::validate::pool_workers(0, usize::MAX),
        ),
        (
            config(|c| c.chunk_size = Some(0)),
            uniconc_core::validate::chunk_size(Some(0)),
        ),
        (
            config(|c| c.max_tasks_per_worker = Some(0)),
            uniconc_core::validate::max_tasks_per_worker(Some(0)),
        ),
    ] {
        let err = <B::Pool as uniconc::Pool>::with_config(config)
            .err()
            .expect("a bad config is refused");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(err.to_string(), rule.unwrap_err().to_string());
    }
}

pub(crate) fn pool_builder_settings<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = <B::Pool as uniconc::Pool>::builder()
        .workers(2)
        .chunk_size(3)
        .max_tasks_per_worker(2)
        .build()
        .unwrap();
    assert_eq!(pool.config().workers, 2);
    assert_eq!(pool.config().chunk_size, Some(3));
    assert_eq!(pool.config().max_tasks_per_worker, Some(2));
    // Enough chunks that every worker is replaced several times.
    let out = pool.map(double, 0..100u64).unwrap();
    assert_eq!(out, (0..100u64).map(double).collect::<Vec<_>>());
    let handles: Vec<_> = (0..10u64)
        .map(|i| pool.submit(double, i).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(i as u64 * 2));
    }
}

/// Set at the end of [`pool_task_timeout_where_supported`]; [`overdue`] waits for it.
static RELEASE_OVERDUE: AtomicBool = AtomicBool::new(false);

/// Blocks until [`RELEASE_OVERDUE`] is set: never, in a worker process forked before it was
/// (the process backend kills it); a tokio blocking closure, which cannot be stopped, ends
/// when the test releases it.
fn overdue(_: u64) -> u64 {
    // Relaxed: a bare flag; nothing else is handed over with it.
    while !RELEASE_OVERDUE.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

/// Sets [`RELEASE_OVERDUE`] when dropped, also when the test fails.
struct ReleaseOverdue;

impl Drop for ReleaseOverdue {
    fn drop(&mut self) {
        RELEASE_OVERDUE.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn pool_task_timeout_where_supported<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    // One task gets `TIMEOUT`; a chunk of `CHUNK` items gets `CHUNK × TIMEOUT` (5 s). The
    // overdue task is stopped after about 250 ms, while the quick work has a deadline no
    // machine misses: nothing has to finish within a short time.
    const TIMEOUT: Duration = Duration::from_millis(250);
    const CHUNK: usize = 20;
    let builder = || {
        <B::Pool as uniconc::Pool>::builder()
            .workers(1)
            .chunk_size(CHUNK)
            .task_timeout(TIMEOUT)
    };
    if !B::TASK_TIMEOUT {
        let err = builder()
            .build()
            .err()
            .expect("a thread pool cannot stop a task");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        return;
    }
    // Cleared before the pool forks its workers (the process and tokio instances of this
    // test never run at once: the process one runs alone).
    RELEASE_OVERDUE.store(false, Ordering::Relaxed);
    let _release = ReleaseOverdue;
    let pool = builder()
        .build()
        .expect("processes and tasks can be stopped");
    let t0 = Instant::now();
    let h = pool.submit(overdue, 0).unwrap();
    assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
    assert!(t0.elapsed() >= TIMEOUT);
    // One chunk of `CHUNK` items, on the worker that replaced the killed one (processes).
    let items = 0..CHUNK as u64;
    assert_eq!(
        pool.map(double, items.clone()).unwrap(),
        items.map(double).collect::<Vec<_>>(),
        "the pool stays usable"
    );
}

pub(crate) fn pool_capturing_closure<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let pool = B::pool(2).unwrap();
    let offset = 1000u64;
    let prefix = String::from("item-");
    let out = pool
        .map(move |x: u64| format!("{prefix}{}", x + offset), 0..5u64)
        .unwrap();
    assert_eq!(
        out,
        [
            "item-1000",
            "item-1001",
            "item-1002",
            "item-1003",
            "item-1004"
        ]
    );
}

/// Tasks of a pool created and used inside a tokio runtime start outside it: they can build
/// and drive a runtime of their own (fn items and capturing closures alike).
pub(crate) fn pool_inside_a_runtime_runs_tasks_outside_it<B: Backend>() {
    if closures_refused::<B>() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (plain, capturing) = rt.block_on(async {
        let pool = B::pool(2).unwrap();
        let plain = |_: u64| crate::spawn::own_runtime_runs_a_spawned_task();
        let plain = pool.submit(plain, 0).unwrap().wait_timeout(LONG);
        let one = 1u64;
        let capturing = move |x: u64| crate::spawn::own_runtime_runs_a_spawned_task() + x * one;
        let capturing = pool.submit(capturing, 1).unwrap().wait_timeout(LONG);
        (plain, capturing)
    });
    assert_eq!(plain, Ok(7));
    assert_eq!(capturing, Ok(8));
}

// Named tasks in a pool: `map_task`, `imap_task`, `imap_unordered_task`, `imap_task_with`,
// `submit_task`.

uniconc::task! {
    /// `x * x`.
    fn square(x: u64) -> u64 { x * x }
}

uniconc::task! {
    /// `x * x` after a pause that is longest for `x % 5 == 0`: later items tend to finish
    /// first.
    fn slow_square(x: u64) -> u64 {
        std::thread::sleep(Duration::from_millis((5 - x % 5) * 2));
        x * x
    }
}

uniconc::task! {
    /// Two arguments (a tuple on the wire).
    fn repeat(word: String, n: u32) -> String { word.repeat(n as usize) }
}

uniconc::task! {
    /// Panics on 13.
    fn unlucky(x: u64) -> u64 {
        if x == 13 {
            panic!("unlucky {x}");
        }
        x
    }
}

uniconc::task! {
    /// No argument, no result.
    fn nothing() {}
}

fn squares(items: std::ops::Range<u64>) -> Vec<u64> {
    items.map(|x| x * x).collect()
}

pub(crate) fn pool_named_task_map_keeps_input_order<B: Backend>() {
    let pool = B::pool(2).unwrap();
    assert_eq!(pool.map_task::<square>(0..1000).unwrap(), squares(0..1000));
    // Items that take different times still come back in input order.
    assert_eq!(pool.map_task::<slow_square>(0..20).unwrap(), squares(0..20));
    assert!(pool.map_task::<square>(Vec::new()).unwrap().is_empty());
    let words = [("ab".to_string(), 2), ("c".to_string(), 0), ("d".into(), 3)];
    assert_eq!(pool.map_task::<repeat>(words).unwrap(), ["abab", "", "ddd"]);
    assert_eq!(pool.map_task::<nothing>([(), ()]).unwrap(), [(), ()]);
}

pub(crate) fn pool_named_task_imap_in_order_and_lazy<B: Backend>() {
    let pool = B::pool(2).unwrap();
    let first: Vec<u64> = pool
        .imap_task::<square>(0u64..) // endless
        .take(50)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, squares(0..50));
    let ordered: Vec<u64> = pool
        .imap_task::<slow_square>(0..20)
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, squares(0..20));
    let ordered: Vec<u64> = pool
        .imap_task_with::<slow_square>(0..20, Order::Input)
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, squares(0..20));
    // Still usable after the abandoned endless iterator.
    assert_eq!(pool.map_task::<square>([3]).unwrap(), [9]);
}

pub(crate) fn pool_named_task_imap_unordered_is_complete<B: Backend>() {
    let pool = B::Pool::builder().workers(3).chunk_size(1).build().unwrap();
    let mut got: Vec<u64> = pool
        .imap_unordered_task::<slow_square>(0..100)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(0..100), "every result exactly once");
    let mut got: Vec<u64> = pool
        .imap_task_with::<square>(0..500, Order::Completion)
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(0..500), "every result exactly once");
}

pub(crate) fn pool_named_task_on_each_start_method<B: Backend>() {
    // `start` is a hint every backend accepts: the process backend starts its workers clean
    // (the binary re-executed) or forked; the others have no processes to start and ignore it.
    for start in [uniconc::Start::Clean, uniconc::Start::Fork] {
        let pool = B::Pool::builder().workers(2).start(start).build().unwrap();
        assert_eq!(pool.config().start, Some(start));
        assert_eq!(pool.map_task::<square>(0..100).unwrap(), squares(0..100));
        let got: Vec<u64> = pool
            .imap_task::<square>(0..10)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, squares(0..10));
        assert_eq!(pool.submit_task::<square>(9).unwrap().wait(), Ok(81));
        assert_eq!(
            pool.submit_task::<unlucky>(13).unwrap().wait(),
            Err(TaskError::Panicked("unlucky 13".into()))
        );
        pool.close();
        pool.join().unwrap();
    }
}

pub(crate) fn pool_named_task_submit_and_wait<B: Backend>() {
    let pool = B::pool(2).unwrap();
    assert_eq!(pool.submit_task::<square>(12).unwrap().wait(), Ok(144));
    let mut h = pool.submit_task::<repeat>(("ab".into(), 3)).unwrap();
    assert_eq!(h.wait_timeout(LONG), Ok("ababab".to_string()));
    assert!(h.is_finished());
    assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken));
    let handles: Vec<_> = (0..20)
        .map(|i| pool.submit_task::<slow_square>(i).unwrap())
        .collect();
    let results: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(results, squares(0..20));
    assert_eq!(pool.submit_task::<nothing>(()).unwrap().wait(), Ok(()));
}

pub(crate) fn pool_named_task_panic_is_panicked_with_its_message<B: Backend>() {
    let pool = B::pool(2).unwrap();
    let panicked = || TaskError::Panicked("unlucky 13".into());
    match pool.map_task::<unlucky>(0..100) {
        Err(PoolError::Task { index: 13, error }) => assert_eq!(error, panicked()),
        other => panic!("expected item 13 to panic, got {other:?}"),
    }
    let results: Vec<_> = pool.imap_task::<unlucky>(10..16).collect();
    assert_eq!(
        results,
        [Ok(10), Ok(11), Ok(12), Err(panicked()), Ok(14), Ok(15)]
    );
    let mut results: Vec<_> = pool.imap_unordered_task::<unlucky>(10..16).collect();
    results.sort_by_key(|r| r.clone().unwrap_or(13));
    assert_eq!(
        results,
        [Ok(10), Ok(11), Ok(12), Err(panicked()), Ok(14), Ok(15)]
    );
    assert_eq!(
        pool.submit_task::<unlucky>(13).unwrap().wait(),
        Err(panicked())
    );
    // The pool goes on.
    assert_eq!(
        pool.map_task::<unlucky>(0..13).unwrap(),
        (0..13).collect::<Vec<_>>()
    );
}

pub(crate) fn pool_named_task_closed_pool_refused<B: Backend>() {
    let pool = B::pool(1).unwrap();
    let queued = pool.submit_task::<square>(5).unwrap();
    pool.close();
    assert!(matches!(
        pool.map_task::<square>([1]),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        pool.submit_task::<square>(1),
        Err(PoolError::Closed)
    ));
    let mut it = pool.imap_task::<square>([1, 2]);
    assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
    assert_eq!(it.next(), None);
    drop(it);
    let mut it = pool.imap_unordered_task::<square>([1, 2]);
    assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
    assert_eq!(it.next(), None);
    drop(it);
    assert_eq!(
        queued.wait(),
        Ok(25),
        "accepted before the close: it still runs"
    );
    pool.join().unwrap();
}

/// Generic code that knows neither the backend nor the task: every pool method's task form,
/// in the order `map_task`, `imap_task`, `imap_unordered_task` (sorted), `submit_task`.
fn all_task_forms<B: Backend, T: Task>(args: Vec<T::Arg>) -> [Vec<T::Output>; 4]
where
    T::Arg: Clone,
    T::Output: Ord,
{
    let pool = B::pool(2).unwrap();
    let mapped = pool.map_task::<T>(args.clone()).unwrap();
    let lazy = pool
        .imap_task::<T>(args.clone())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut unordered = pool
        .imap_unordered_task::<T>(args.clone())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    unordered.sort();
    let handles: Vec<_> = args
        .into_iter()
        .map(|a| pool.submit_task::<T>(a).unwrap())
        .collect();
    let submitted = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    pool.close();
    pool.join().unwrap();
    [mapped, lazy, unordered, submitted]
}

pub(crate) fn pool_named_task_from_generic_code<B: Backend>() {
    let [mapped, lazy, unordered, submitted] = all_task_forms::<B, square>((0..50).collect());
    for (form, got) in [
        ("map_task", mapped),
        ("imap_task", lazy),
        ("imap_unordered_task, sorted", unordered),
        ("submit_task", submitted),
    ] {
        assert_eq!(got, squares(0..50), "{form}");
    }
    let args = vec![("x".to_string(), 1), ("yz".to_string(), 2)];
    let [mapped, lazy, unordered, submitted] = all_task_forms::<B, repeat>(args);
    for got in [mapped, lazy, unordered, submitted] {
        assert_eq!(got, ["x", "yzyz"]);
    }
}
