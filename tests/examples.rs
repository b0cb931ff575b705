//! Runs the real code of every example — its generic `run::<B>()` — with small sizes, on every
//! enabled backend, and checks what it returns. The examples are compiled into this test crate
//! with `#[path]`, so there is one copy of their logic, and their `main` only parses arguments.
//!
//! Each run is under a watchdog (a hang fails the test instead of stalling CI), and the tests of
//! this file run one at a time (they fork, and the machine has few cores).

#![allow(dead_code)]
// each example's `main` and a few helpers are not used here
// Each example file declares its own `mod common` (so it builds alone); here that means one copy
// of the small helper module per example, on purpose.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/clean_workers.rs"]
mod clean_workers;
#[path = "../examples/compare.rs"]
mod compare;
#[path = "../examples/lock_counter.rs"]
mod lock_counter;
#[path = "../examples/manager.rs"]
mod manager;
#[path = "../examples/pool.rs"]
mod pool;
#[path = "../examples/queue.rs"]
mod queue;
#[path = "../examples/semaphore_event.rs"]
mod semaphore_event;
#[path = "../examples/thread_vs_process.rs"]
mod thread_vs_process;
#[path = "../examples/traverse.rs"]
mod traverse;
#[path = "../examples/value_array.rs"]
mod value_array;
#[path = "../examples/worker_stop.rs"]
mod worker_stop;

use std::sync::Mutex;
use std::time::Duration;

/// One test of this file at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (the stuck thread is
/// abandoned; the test binary's exit ends it).
fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            h.join()
                .expect("the example's thread panicked after sending its result");
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no result after {limit:?}: the example hangs")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
    }
}

const LIMIT: Duration = Duration::from_secs(180);

/// The example tests, written once, instantiated per backend (none in a build without one).
#[allow(unused_macros)]
macro_rules! example_tests {
    ($backend:ident, $B:ty) => {
        mod $backend {
            use super::*;

            #[test]
            fn value_array_child_changes_are_seen_by_the_parent() {
                let out = watchdog(LIMIT, || value_array::run::<$B>(10).unwrap());
                assert_eq!(out.num, std::f64::consts::PI);
                assert_eq!(out.arr, (0..10).map(|i: i32| -i).collect::<Vec<_>>());
            }

            #[test]
            fn manager_child_changes_are_seen_by_the_parent() {
                let out = watchdog(LIMIT, || manager::run::<$B>(10).unwrap());
                use manager::{Key, Val};
                assert_eq!(
                    out.dict,
                    [
                        (Key::Int(1), Val::Str("1".into())),
                        (Key::Str("2".into()), Val::Int(2)),
                    ]
                );
                assert_eq!(out.list, (0..10).rev().collect::<Vec<i64>>());
            }

            #[test]
            fn queue_lesson_and_producers_consumers_lose_nothing() {
                let out = watchdog(LIMIT, || queue::run::<$B>(500).unwrap());
                assert_eq!(out.sum, out.expected_sum);
                assert_eq!(out.per_consumer.iter().sum::<u64>(), 1000);
            }

            #[test]
            fn pool_map_submit_imap_and_close() {
                let out = watchdog(LIMIT, || pool::run::<$B>(20).unwrap());
                let squares: Vec<u64> = (0..20).map(|x| x * x).collect();
                assert_eq!(out.mapped, squares);
                assert_eq!(out.imapped, squares);
                assert_eq!(out.unordered_sorted, squares);
                assert_eq!(out.submitted, 400);
                assert_eq!(out.panic_message, "three is not allowed");
            }

            #[test]
            fn lock_counter_locked_totals_are_exact() {
                let out = watchdog(LIMIT, || lock_counter::run::<$B>(2_000).unwrap());
                assert_eq!(out.expected, 4_000);
                assert_eq!(out.locked, 4_000);
                assert_eq!(out.updated, 4_000);
                // Unlocked read-modify-writes can lose any number of updates: a stale write
                // may undo many of the other unit's (two units of n increments can end as
                // low as 2), so only the bounds that always hold are checked.
                assert!((2..=4_000).contains(&out.unlocked), "{out:?}");
            }

            #[test]
            fn semaphore_bounds_workers_and_event_releases_them() {
                let out = watchdog(LIMIT, || semaphore_event::run::<$B>(5).unwrap());
                assert_eq!(out.finished, 5);
                assert_eq!(out.early, 0);
                assert!(
                    out.max_inside >= 1 && out.max_inside <= out.permits as u64,
                    "{out:?}"
                );
            }

            #[test]
            fn worker_stop_answers_every_job_and_stops_on_the_stop_channel() {
                let out = watchdog(LIMIT, || worker_stop::run::<$B>(3, 200).unwrap());
                assert_eq!(out.first_sum, out.expected_first_sum);
                assert_eq!(out.per_worker.len(), 3);
                // Nothing lost, nothing twice: what was not answered is still queued.
                assert_eq!(out.second_handled + out.second_left, out.second_sent);
                assert_eq!(
                    out.per_worker.iter().sum::<u64>(),
                    200 + out.second_handled,
                    "{out:?}"
                );
            }

            #[test]
            fn traverse_reads_every_element_every_way() {
                let rows = watchdog(LIMIT, || traverse::run::<$B>(10_000).unwrap());
                assert_eq!(rows.len(), 12);
                for r in rows {
                    assert!(r.sums_ok, "{} got a wrong sum", r.what);
                }
            }

            #[test]
            fn clean_workers_offload_cpu_work_from_a_tokio_service() {
                // First: on the process backend this test is the entry of the clean workers.
                uniconc::init();
                let out = watchdog(LIMIT, || clean_workers::run::<$B>(3).unwrap());
                assert_eq!(out.answers, out.expected);
                assert!(watchdog(LIMIT, || clean_workers::first_result::<$B>(1)).is_ok());
            }

            #[test]
            fn thread_vs_process_counts_the_primes() {
                let (count, _time) =
                    watchdog(LIMIT, || thread_vs_process::run::<$B>(10_000).unwrap());
                assert_eq!(count, 1229); // primes below 10,000
            }

            #[test]
            fn compare_every_workload_gives_a_figure() {
                let col = watchdog(LIMIT, || {
                    compare::run_backend::<$B>(&compare::Sizes::tiny()).unwrap()
                });
                assert_eq!(
                    col.name,
                    format!("uniconc {}", <$B as uniconc::Backend>::NAME)
                );
                for w in compare::Workload::ALL {
                    match col.cells.get(&w) {
                        // A few tiny units can fit in memory already mapped: 0 KiB is possible.
                        Some(compare::Cell::Value(v)) if w == compare::Workload::UnitsMemory => {
                            assert!(*v >= 0.0, "{w:?}: {v}")
                        }
                        Some(compare::Cell::Value(v)) => assert!(*v > 0.0, "{w:?}: {v}"),
                        // Memory needs Linux's /proc; everything else must give a figure.
                        Some(compare::Cell::NotApplicable(_))
                            if w == compare::Workload::UnitsMemory
                                && !cfg!(target_os = "linux") => {}
                        other => panic!("{w:?}: {other:?}"),
                    }
                }
            }
        }
    };
}

#[cfg(feature = "thread")]
example_tests!(thread, uniconc::Thread);
#[cfg(feature = "tokio")]
example_tests!(tokio, uniconc::Tokio);
#[cfg(all(feature = "process", unix))]
example_tests!(process, uniconc::Process);

#[test]
fn count_primes_is_right() {
    assert_eq!(thread_vs_process::count_primes(0, 100), 25);
    assert_eq!(thread_vs_process::count_primes(50, 100), 10);
}

#[test]
fn arguments_are_parsed_and_bad_ones_refused() {
    let args = |v: &[&str]| compare::common::Args::parse_from(v.iter().map(|s| s.to_string()));
    let a = args(&["--backend", "thread", "--size=42", "--quick"])
        .unwrap()
        .unwrap();
    assert_eq!(a.backend.as_deref(), Some("thread"));
    assert_eq!(a.size, Some(42));
    assert!(a.quick);
    assert_eq!(a.size_or(1, 2), 42);
    assert!(args(&["--help"]).unwrap().is_none());
    assert!(args(&["--size", "many"]).is_err());
    assert!(args(&["--size"]).is_err());
    assert!(args(&["--frobnicate"]).is_err());
    let msg = compare::common::unknown_backend("fibers").to_string();
    assert!(msg.contains("unknown backend"), "{msg}");
}

#[test]
fn python_lines_become_cells_and_missing_ones_are_failures() {
    let text = "note\tthreading\t5 waiting units\n\
                chan_1to1\tthreading\t0.25\n\
                spawn\tasyncio\tn/a: no such thing\n\
                ping_pong\tmultiprocessing\tfailed: BrokenPipeError\n\
                garbage line\n\
                pool_map\tthreading\tnot-a-number\n";
    let cols = compare::parse_python(text);
    let col = |n: &str| {
        cols.iter()
            .find(|c| c.name == format!("python {n}"))
            .unwrap()
    };
    use compare::{Cell, Workload};
    assert_eq!(col("threading").cells[&Workload::Chan11], Cell::Value(0.25));
    assert_eq!(col("threading").notes, ["5 waiting units"]);
    assert!(matches!(
        col("threading").cells[&Workload::PoolMap],
        Cell::Failed(_)
    ));
    assert!(matches!(
        col("asyncio").cells[&Workload::Spawn],
        Cell::NotApplicable(_)
    ));
    assert!(matches!(
        col("multiprocessing").cells[&Workload::PingPong],
        Cell::Failed(_)
    ));
    assert!(matches!(
        col("asyncio").cells[&Workload::Chan22],
        Cell::Failed(_)
    ));
}

#[test]
fn table_ratios_and_chart_show_every_workload() {
    use compare::{Cell, Column, Workload};
    let column = |name: &str, scale: f64| Column {
        name: name.to_owned(),
        cells: Workload::ALL
            .into_iter()
            .map(|w| (w, Cell::Value(scale * (1 + w as u8) as f64)))
            .collect(),
        notes: vec![],
    };
    let mut slow = column("python threading", 10.0);
    slow.cells
        .insert(Workload::Spawn, Cell::NotApplicable("because".into()));
    let cols = vec![column("uniconc thread", 1.0), slow];
    let table = compare::table(&cols);
    for w in Workload::ALL {
        assert!(table.contains(w.label()), "{w:?} missing from\n{table}");
    }
    assert!(table.contains("n/a: because"));
    let ratios = compare::ratios(&cols);
    // Channels: higher is better, so thread (1×) is 0.1× of Python's (10×); latency: 10×.
    assert!(ratios.contains("0.100×"), "{ratios}");
    assert!(ratios.contains("10.0×"), "{ratios}");
    let dir = std::env::temp_dir().join(format!("uniconc-chart-{}", std::process::id()));
    let path = dir.join("compare.svg");
    compare::chart(&cols, &path, "test").unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    for w in Workload::ALL {
        assert!(svg.contains(w.label()), "{w:?} missing from the chart");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The Python side, with tiny sizes, when `python3` is installed: every cell has a figure.
#[test]
fn python_script_measures_every_workload() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not installed: skipping the Python side");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/compare.py");
    let out = watchdog(LIMIT, move || {
        std::process::Command::new("python3")
            .arg(script)
            .args([
                "messages=2000",
                "round_trips=50",
                "pool_items=10",
                "pool_work=100",
                "units=50",
                "units_process=5",
                "lock_iters=200",
                "spawns=5",
                "spawns_process=3",
            ])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cols = compare::parse_python(&String::from_utf8_lossy(&out.stdout));
    for c in &cols {
        for (w, cell) in &c.cells {
            let ok = matches!(cell, compare::Cell::Value(v) if *v > 0.0)
                || matches!(cell, compare::Cell::Value(v) if *v >= 0.0 && *w == compare::Workload::UnitsMemory)
                || (*w == compare::Workload::UnitsMemory && !cfg!(target_os = "linux"));
            assert!(ok, "{} {w:?}: {cell:?}", c.name);
        }
    }
}

/// `run_all` picks backends by name through `on_backend!`: an unknown or disabled name gives no
/// column (and says why on stderr), an enabled one gives its column.
#[test]
fn run_all_dispatches_by_backend_name() {
    let mut sizes = compare::Sizes::tiny();
    sizes.repeats = 1;
    let none = compare::run_all(&sizes, Some("fibers"), None);
    assert!(none.is_empty());
    for name in compare::common::enabled_backends() {
        let cols = watchdog(LIMIT, {
            let sizes = sizes.clone();
            move || compare::run_all(&sizes, Some(name), None)
        });
        assert_eq!(cols.len(), 1, "{name}");
        assert_eq!(cols[0].name, format!("uniconc {name}"));
    }
}
