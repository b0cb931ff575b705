//! Test helpers shared by the process backend's test binaries: run a closure in a forked child
//! (nix) and report how it ended; serialize fork tests under an aborting watchdog; scale; look for
//! leftover children.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

/// Serializes forks within one test binary (tests run on several threads).
static FORK_MTX: Mutex<()> = Mutex::new(());

/// Holds the fork lock for a whole test.
pub fn fork_lock() -> MutexGuard<'static, ()> {
    FORK_MTX.lock().unwrap_or_else(|e| e.into_inner())
}

/// A forked child.
#[derive(Debug)]
pub struct Child {
    pub pid: Pid,
    reaped: bool,
}

/// Runs `f` in a child; its return value is the exit code (a panic exits with 101). The
/// child leaves with `_exit`, never running the parent's destructors or atexit handlers.
pub fn spawn(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child only runs `f` and `_exit`s; forks are serialized by the caller holding
    // `fork_lock`, and the allocator is fork-safe (glibc's malloc has its own atfork handlers).
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: ends the child immediately, as it must after fork.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Child {
            pid: child,
            reaped: false,
        },
    }
}

impl Child {
    /// Waits (watchdog: `limit`) and returns the exit code; panics on a signal or timeout.
    pub fn join(mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::Exited(_, code) => {
                    self.reaped = true;
                    return code;
                }
                WaitStatus::Signaled(_, sig, _) => {
                    self.reaped = true;
                    panic!("child killed by {sig:?}");
                }
                _ => {}
            }
            if start.elapsed() > limit {
                let _ = signal::kill(self.pid, Signal::SIGKILL);
                panic!("watchdog: child {} still running after {limit:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILLs the child (not reaped: it stays a zombie until dropped).
    pub fn kill(&self) {
        signal::kill(self.pid, Signal::SIGKILL).expect("kill");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = signal::kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// `UNICONC_STRESS_SCALE` (default 1).
pub fn scale() -> u64 {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn watchdog<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("watchdog: still running after {limit:?}"))
}

/// Aborts the test binary if the test runs longer than `secs` (a hung fork test must not stall
/// the run; the message goes straight to fd 2, which the harness does not capture).
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(name: &'static str, secs: u64) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_secs(secs))
            {
                let msg = format!("watchdog: {name} hung for {secs} s\n");
                // SAFETY: writing a valid buffer to stderr.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
                std::process::abort();
            }
        });
        Self(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.take().map(|tx| tx.send(()));
    }
}

/// Holds the fork lock for a whole test, under a 120 s aborting watchdog.
pub fn serial(name: &'static str) -> (MutexGuard<'static, ()>, Watchdog) {
    (fork_lock(), Watchdog::new(name, 120))
}

/// `true` if this process has no child left, zombie or alive. Observes with `WNOWAIT`, so it
/// never reaps a child the library should reap.
pub fn no_children() -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid only writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; WNOWAIT leaves any child waitable.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// `true` once this process has no child left (reaper threads may need a moment).
pub fn no_children_within(timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if no_children() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Serializes as its number; decodes only an even one (`try_from`), with a message of its own.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u32")]
pub struct Even(pub u32);

impl TryFrom<u32> for Even {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if v % 2 == 0 {
            Ok(Even(v))
        } else {
            Err(format!("{v} is odd"))
        }
    }
}

/// Threads that take `lock` in a loop and hold it most of the time, until dropped: the
/// program-wide lock (a logger's, a cache's) another thread holds when a multi-threaded
/// program forks.
pub struct Hammer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hammer {
    /// Starts `n` threads hammering `lock`.
    pub fn start(n: usize, lock: &'static Mutex<u64>) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    // Relaxed: a stop flag, no data is published through it.
                    while !stop.load(Ordering::Relaxed) {
                        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
                        std::thread::sleep(Duration::from_micros(500));
                        drop(g);
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        Hammer { stop, threads }
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

uniconc::task! {
    /// Builds its own multi-thread tokio runtime and sums `1..=n` over spawned tasks.
    pub fn runtime_sum(n: u64) -> u64 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime in the worker");
        rt.block_on(async move {
            let tasks: Vec<_> = (1..=n).map(|i| tokio::spawn(async move { i })).collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.expect("task");
            }
            sum
        })
    }
}
