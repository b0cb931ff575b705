//! Shared by the integration tests: a watchdog, and child processes that re-run this test
//! binary in a role.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Aborts the whole test process if the test is still running after `limit` (a hang fails the
/// run instead of stalling it).
pub(crate) struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    pub(crate) fn new(limit: Duration) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        std::thread::spawn(move || {
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while waited < limit {
                std::thread::sleep(step);
                waited += step;
                // Acquire pairs with the Release in drop; only the flag itself matters.
                if flag.load(Ordering::Acquire) {
                    return;
                }
            }
            eprintln!("watchdog: test `{name}` still running after {limit:?}: aborting");
            std::process::abort();
        });
        Self(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Release: see new.
        self.0.store(true, Ordering::Release);
    }
}

/// The environment variable that tells a re-run test binary which role to play.
pub(crate) const ROLE_ENV: &str = "UNICONC_REDIS_TEST_ROLE";

/// Runs this test binary again, running only the test `entry`, with `role` in [`ROLE_ENV`].
pub(crate) fn spawn_role(entry: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::null())
        .spawn()
        .expect("re-running the test binary")
}

/// The role this process plays, if it is a child.
pub(crate) fn role() -> Option<Vec<String>> {
    std::env::var(ROLE_ENV)
        .ok()
        .map(|r| r.split('|').map(str::to_owned).collect())
}

/// Stress scale from UNICONC_STRESS_SCALE (default 1).
pub(crate) fn scale() -> usize {
    std::env::var("UNICONC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

pub(crate) fn signal(child: &Child, sig: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) has no memory-safety preconditions; the child is ours and not yet reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// As [`spawn_role`], with the child's stdin and stdout piped to the test.
pub(crate) fn spawn_role_piped(entry: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-running the test binary")
}

/// Reads lines from a child's stdout until one starts with `prefix`; returns the rest of it.
pub(crate) fn read_tagged(out: &mut impl std::io::BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out
            .read_line(&mut line)
            .expect("reading the child's output");
        assert!(n > 0, "the child ended before printing `{prefix}`");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

/// Kills and reaps a child (a no-op if it already ended).
pub(crate) fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
