//! Test support: the watchdog, fork serialisation, stress scale, and the tokio runtime that
//! drives the async flavour.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use uniconc::Backend;

/// How long one test may run before it counts as hung.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Tests of a backend that forks (`B::FORKS`) take this exclusively (forking while another
/// test thread holds a lock, e.g. stdout's, could deadlock the child); every other test takes
/// it shared.
static FORK_GUARD: RwLock<()> = RwLock::new(());

/// Runs one test body under the watchdog: on its own thread, failing the test if it has not
/// finished after [`WATCHDOG`] (a hang fails instead of stalling CI).
pub(crate) fn run<B: Backend>(name: &'static str, body: fn()) {
    let _exclusive;
    let _shared;
    if B::FORKS {
        _exclusive = FORK_GUARD.write().unwrap_or_else(PoisonError::into_inner);
    } else {
        _shared = FORK_GUARD.read().unwrap_or_else(PoisonError::into_inner);
    }
    run_locked::<B>(name, body);
}

/// [`run`] once the guard is taken.
fn run_locked<B: Backend>(name: &'static str, body: fn()) {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name(format!("{}::{name}", B::NAME))
        .spawn(move || {
            let _ = tx.send(catch_unwind(body));
        })
        .expect("could not start the test thread");
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(())) => t.join().expect("the test thread finished"),
        Ok(Err(panic)) => {
            let _ = t.join();
            resume_unwind(panic)
        }
        Err(_) => panic!(
            "watchdog: {}::{name} did not finish within {WATCHDOG:?}",
            B::NAME
        ),
    }
}

/// Starts this binary's private `redis-server` once and makes it the default connection's
/// server (before any connection is made). Fails (panics) when `redis-server` is missing: a
/// missing server is a failure, not a skip.
///
/// The server is started by a thread that lives as long as the binary: it dies with the
/// thread that started it (`PR_SET_PDEATHSIG`), so it goes when the binary ends or dies.
#[cfg(all(feature = "redis", unix))]
pub(crate) fn redis_server() {
    use std::sync::OnceLock;
    static URL: OnceLock<String> = OnceLock::new();
    let url = URL.get_or_init(|| {
        // Starting the server forks (`Command` with `pre_exec`): like a forking backend's
        // test, it runs alone. A fork while a process-backend test holds channel handles would
        // count the server as one more holder of them.
        let _exclusive = FORK_GUARD.write().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("redis-server".into())
            .spawn(move || {
                let server = uniconc::redis::testing::RedisServer::start();
                let _ = tx.send(server.url());
                loop {
                    std::thread::park();
                }
            })
            .expect("could not start the thread of the redis-server");
        rx.recv()
            .expect("could not start redis-server (is it installed? scripts/test installs it)")
    });
    uniconc::redis::set_default_url(url).expect("the default Redis connection");
}

/// How many times smaller this run's stress sizes are (see [`stress`]): 1, except while the
/// harness of a backend whose every operation is a network round trip runs a test (set by
/// [`run_scaled_down`]; such tests fork, so they run alone: no other test reads it meanwhile).
static STRESS_DIVISOR: AtomicUsize = AtomicUsize::new(1);

/// [`run`], with the stress sizes ([`stress`]) divided by `divisor`: for a backend whose floor
/// is one network round trip per operation, where the in-memory backends' sizes would take
/// minutes. The sizes still grow with `UNICONC_STRESS_SCALE`.
#[cfg(all(feature = "redis", unix))]
pub(crate) fn run_scaled_down<B: Backend>(name: &'static str, body: fn(), divisor: usize) {
    assert!(
        B::FORKS,
        "a scaled-down run must run alone (a forking backend's tests do)"
    );
    let _exclusive = FORK_GUARD.write().unwrap_or_else(PoisonError::into_inner);
    // Relaxed: read by the test's own thread, which `run` starts after this store.
    STRESS_DIVISOR.store(divisor.max(1), Ordering::Relaxed);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STRESS_DIVISOR.store(1, Ordering::Relaxed);
        }
    }
    let _reset = Reset;
    run_locked::<B>(name, body);
}

/// A stress test's size: `n` times [`scale`], divided by the run's divisor (at least 1).
pub(crate) fn stress(n: usize) -> usize {
    (n * scale() / STRESS_DIVISOR.load(Ordering::Relaxed)).max(1)
}

/// The stress multiplier from `UNICONC_STRESS_SCALE` (default 1).
pub(crate) fn scale() -> usize {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1)
}

/// Runs `fut` to completion on a fresh multi-thread tokio runtime (2 workers).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("could not build a tokio runtime")
        .block_on(fut)
}

/// A short pause (used only to let another unit reach a blocking call; never asserted on).
pub(crate) fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}

/// A timeout long enough never to expire in a passing test.
pub(crate) const LONG: Duration = Duration::from_secs(20);

/// A short timeout for calls that must time out.
pub(crate) const SHORT: Duration = Duration::from_millis(30);
