//! Benchmarks live in `benches/benches/`; this library holds what several of them share.

/// Runs the Python peer `python/<script>` of this package and returns what it printed, or
/// `None` (saying why on stderr) when `python3` is missing or the script fails: a bench then
/// reports its own figures without the peer's ratio.
pub fn run_python(script: &str) -> Option<String> {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = match std::process::Command::new("python3").arg(&path).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("python peer not run ({path}): {e}");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!(
            "python peer failed ({path}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Forks a child that runs `f` and leaves with `_exit(0)`, never returning into the bench
/// (the bench's harness and destructors stay the parent's). Panics if the fork fails.
#[cfg(unix)]
pub fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs `f` and `_exit`s without returning into the caller.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: leave the child at once, running no destructors of the parent's state.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Waits for a child started by [`fork_child`].
#[cfg(unix)]
pub fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}
