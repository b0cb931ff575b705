//! Test helper: run a closure in a forked child (nix), report how it ended.
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
