//! How a process unit starts: [`Start::Fork`] (a copy of the caller, for closures) or
//! [`Start::Clean`] (the binary re-executed as a worker, for named [`Task`]s), and [`init`],
//! the call that turns a re-executed binary into the worker.
//!
//! # The clean start
//!
//! A forked child is a copy of its parent at the instant of the fork, with one thread: a lock
//! another thread held then (a `Mutex` of the program, a logger's, an allocator's arena) stays
//! held forever in the child, and a child that takes it deadlocks. Every tokio, rayon or
//! logging program is multi-threaded. A clean-started worker shares nothing with the caller
//! but the binary and its environment: no threads, no locks, no runtime.
//!
//! 1. The program calls [`init`] (`uniconc::init()`) first thing in `main`. In a normal run it
//!    returns at once.
//! 2. [`spawn_task`] creates a socket pair and re-executes the running binary
//!    (`/proc/self/exe` on Linux) with `std::process::Command`, which only makes
//!    async-signal-safe calls between its fork and the exec; the worker's end of the socket
//!    is passed as an inherited descriptor named by the environment variable
//!    `UNICONC_WORKER` (with the caller's pid, so the worker's own children do not mistake
//!    themselves for workers).
//! 3. The caller sends one frame: a [`TaskRequest`] (the task's name, its schema fingerprint
//!    and the encoded argument).
//! 4. In the worker, `init` sees the variable, reads the request, looks the task up in the
//!    binary's registry (every [`task!`](uniconc_core::task!) is registered at link time), runs
//!    it on a fresh thread (outside any runtime, so the task may build its own), sends one
//!    frame back (the result, or the panic message, or why the task could not run: unknown
//!    name, schema mismatch, undecodable argument) and leaves with `_exit`, never returning
//!    to `main`.
//! 5. The caller's [`JoinHandle`] (the same as [`spawn`](crate::spawn)'s) reads that frame
//!    and reaps the worker; `kill` and `join_timeout` work as for a forked child.
//!
//! ```no_run
//! use uniconc::{Backend, JoinHandle as _};
//!
//! uniconc::task! {
//!     fn checksum(data: Vec<u8>) -> u32 {
//!         data.iter().map(|&b| u32::from(b)).sum()
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     uniconc::init(); // first thing: a worker runs its task here and never returns
//!     let h = uniconc::Process::spawn_task::<checksum>(vec![1, 2, 3])?;
//!     assert_eq!(h.join()?, 6);
//!     Ok(())
//! }
//! ```
//!
//! # In tests
//!
//! A test binary's `main` is libtest's, so call `uniconc::process::init()` (or
//! `uniconc::init()`) at the top of each `#[test]` fn that starts clean workers. The first
//! such call records the name of the running test (libtest names each test's thread after
//! it); a worker re-executes the test binary as `<binary> <that test> --exact --nocapture
//! --test-threads 1 -q`, libtest runs that one test, and its first line, `init()`, becomes
//! the worker. Any test whose first line is `init()` serves, whatever task it starts.
//!
//! # Files
//! - `mod.rs`: [`Start`], [`init`], the caller's side.
//! - `worker.rs`: the worker's side.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use uniconc_core::{Error, Message, Task, TaskRequest};

use crate::os as sys;
use crate::spawn::{JoinHandle, spawn};

mod worker;

/// The environment variable that makes [`init`] run a worker: `<fd>:<caller pid>`.
const ENV: &str = "UNICONC_WORKER";

/// The environment variable that makes [`init`] run a clean-started pool worker (the pool's
/// worker loop, many jobs): `<fd>:<caller pid>`.
const POOL_ENV: &str = "UNICONC_POOL_WORKER";

/// How a task's process starts: chosen with [`spawn_task_with`] and, for a pool, with
/// [`PoolBuilder::start`](uniconc_core::PoolBuilder::start) (core's [`uniconc_core::Start`],
/// re-exported here).
///
/// ```
/// use uniconc::JoinHandle as _;
/// use uniconc::process::Start;
///
/// uniconc::task! { fn pid() -> u32 { std::process::id() } }
///
/// // Fork: a copy of the caller (no `init` needed; see the caveat on `Fork`).
/// let h = uniconc::process::spawn_task_with::<pid>(Start::Fork, ())?;
/// assert_ne!(h.join()?, std::process::id());
/// assert_eq!(Start::default(), Start::Clean);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use uniconc_core::Start;

/// What [`init`] recorded in a normal run.
#[derive(Debug)]
struct Entry {
    /// The test to re-run in a worker (a libtest binary), or `None` (a `main` that calls
    /// `init`).
    test: Option<String>,
}

static ENTRY: OnceLock<Entry> = OnceLock::new();

/// Call first thing in `main` (and at the top of a `#[test]` that starts clean workers): in a
/// clean-started worker it runs the requested task and exits the process without returning;
/// in a normal run it returns at once and enables [`Start::Clean`].
///
/// ```
/// uniconc::process::init(); // a normal run: returns at once
/// uniconc::process::init(); // again: nothing more
/// ```
///
/// Code before it runs in every worker too, so put nothing before it but
/// [`register`](uniconc_core::task::register) calls for tasks written without `task!`.
pub fn init() {
    let entry = ENTRY.get_or_init(|| Entry {
        test: std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_owned),
    });
    let _ = entry;
    if let Some(fd) = worker::inherited_fd(ENV) {
        worker::run(fd)
    }
    if let Some(fd) = worker::inherited_fd(POOL_ENV) {
        worker::run_pool(fd)
    }
}

/// Whether [`init`] was called in this process (so a re-executed binary becomes a worker).
pub(crate) fn initialized() -> bool {
    ENTRY.get().is_some()
}

/// Re-executes this binary as a clean pool worker on `theirs` (the worker's end of its
/// socket, closed here once the worker has it): the worker runs the pool's job loop.
///
/// # Errors
/// `Unsupported` if [`init`] was not called; `Os` if the process could not be started.
pub(crate) fn start_pool_worker(theirs: std::os::fd::OwnedFd) -> Result<sys::Pid, Error> {
    let pid = start_clean(POOL_ENV, &theirs, "a clean pool worker")?;
    drop(theirs);
    Ok(pid)
}

/// Why a clean start is refused in a process that did not call [`init`]; `what` names the
/// task or the pool.
pub(crate) fn not_initialized(what: &str) -> Error {
    Error::unsupported(format!(
        "{what}: a clean start needs `uniconc::init()` called first thing in `main` (or \
         `uniconc::process::init()` at the top of the test); without it a re-executed binary \
         would run `main` again instead of the task"
    ))
}

/// Starts `/proc/self/exe` with `var` naming `theirs` (inherited) and this process; `what`
/// names the worker in errors. The caller reaps the returned pid.
fn start_clean(var: &str, theirs: &std::os::fd::OwnedFd, what: &str) -> Result<sys::Pid, Error> {
    let Some(entry) = ENTRY.get() else {
        return Err(not_initialized(what));
    };
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(self_exe());
    if let Some(test) = &entry.test {
        cmd.args([
            test.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
            "-q",
        ]);
    }
    cmd.env(var, format!("{fd}:{}", sys::getpid()))
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it makes one `fcntl` (async-signal-safe), allocates nothing and
    // takes no lock. `fd` is open in the child (inherited; only its close-on-exec flag is
    // cleared, so the worker keeps it across the exec and no other child inherits it).
    unsafe {
        cmd.pre_exec(move || sys::cvt(libc::fcntl(fd, libc::F_SETFD, 0)).map(drop));
    }
    // The worker is a new program: it holds none of this process's channel handles.
    let child = crate::procs::forking_to_exec(|| cmd.spawn())
        .map_err(|e| Error::os(format!("{what}: starting a clean worker"), e))?;
    // `Child` neither waits nor kills on drop: the caller reaps the pid.
    Ok(child.id() as sys::Pid)
}

/// Runs the task `T` on `arg` in a clean-started worker process: [`spawn_task_with`] with
/// [`Start::Clean`]. Also `uniconc::Process::spawn_task`.
///
/// ```no_run
/// use uniconc::JoinHandle as _;
///
/// uniconc::task! { fn fib(n: u32) -> u64 { if n < 2 { n.into() } else { fib(n - 1) + fib(n - 2) } } }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     uniconc::init();
///     assert_eq!(uniconc::process::spawn_task::<fib>(20)?.join()?, 6765);
///     Ok(())
/// }
/// ```
///
/// # Errors
/// As [`spawn_request`].
pub fn spawn_task<T: Task>(arg: T::Arg) -> Result<JoinHandle<T::Output>, Error> {
    spawn_task_with::<T>(Start::Clean, arg)
}

/// Runs the task `T` on `arg` in a process started as `start` says.
///
/// ```
/// use uniconc::JoinHandle as _;
/// use uniconc::process::Start;
///
/// uniconc::task! { fn halve(x: u64) -> u64 { x / 2 } }
///
/// let h = uniconc::process::spawn_task_with::<halve>(Start::Fork, 84)?;
/// assert_eq!(h.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `Fork`: as [`spawn`](crate::spawn). `Clean`: as [`spawn_request`], and `InvalidMessage`
/// if the argument does not serialize.
pub fn spawn_task_with<T: Task>(start: Start, arg: T::Arg) -> Result<JoinHandle<T::Output>, Error> {
    match start {
        Start::Fork => spawn(move || T::run(arg)),
        // `Clean` (and any later start method: the clean one is the safe default).
        _ => spawn_request(&TaskRequest::new::<T>(&arg)?),
    }
}

/// Sends a [`TaskRequest`] built by hand to a clean-started worker, whose result is read as
/// an `R`: the low-level form of [`spawn_task`], for callers that hold a task's name rather
/// than its type.
///
/// ```no_run
/// use uniconc::JoinHandle as _;
/// use uniconc::task::TaskRequest;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     uniconc::init();
///     let req = TaskRequest { name: "no::such::task".into(), schema: 0, arg: vec![] };
///     let err = uniconc::process::spawn_request::<u32>(&req)?.join().unwrap_err();
///     assert!(err.to_string().contains("unknown task `no::such::task`"));
///     Ok(())
/// }
/// ```
///
/// # Errors
/// `Unsupported` if [`init`] was not called in this process (a re-executed binary would run
/// `main` from its start instead of the task); `Os` if the socket pair or the process could
/// not be created. What goes wrong in the worker is reported by `join`: `Failed` naming the
/// task (unknown, schema mismatch, undecodable argument), `Panicked`, `Killed`.
///
/// The request is written before this returns; one larger than the socket's buffer waits
/// until the worker reads it (or dies).
pub fn spawn_request<R: Message>(req: &TaskRequest) -> Result<JoinHandle<R>, Error> {
    if !initialized() {
        // Refused before anything is encoded or created.
        return Err(not_initialized(&format!("task `{}`", req.name)));
    }
    let body = req.encode()?;
    let (ours, theirs) =
        sys::socketpair().map_err(|e| Error::os("creating the socket of a clean worker", e))?;
    let pid = start_clean(ENV, &theirs, &format!("task `{}`", req.name))?;
    drop(theirs);
    let mut frame = Vec::with_capacity(8 + body.len());
    sys::begin_frame(&mut frame);
    frame.extend_from_slice(&body);
    sys::finish_frame(&mut frame);
    // A worker that died before reading closed its end: EPIPE, and `join` reports how it
    // ended.
    let _ = sys::send_all(ours.as_raw_fd(), &frame);
    Ok(JoinHandle::new(pid, ours, true))
}

/// The running binary: `/proc/self/exe` on Linux (it names the file even if it was replaced
/// or deleted since, as a rebuild does), `std::env::current_exe()` elsewhere.
fn self_exe() -> std::path::PathBuf {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        std::path::PathBuf::from("/proc/self/exe")
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        std::env::current_exe()
            .unwrap_or_else(|_| std::env::args_os().next().unwrap_or_default().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // No test of this library's unit-test binary calls `init`, so `ENTRY` stays unset here.
    #[test]
    fn clean_start_without_init_is_refused_naming_the_task() {
        let req = TaskRequest {
            name: "some::task".into(),
            schema: 0,
            arg: vec![],
        };
        let e = spawn_request::<u8>(&req).unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::Unsupported);
        let text = e.to_string();
        assert!(text.contains("task `some::task`"), "{text}");
        assert!(text.contains("uniconc::init()"), "{text}");
    }

    #[test]
    fn clean_pool_without_init_is_refused_and_a_default_pool_runs_tasks_forked() {
        use uniconc_core::{Pool as _, TaskHandle as _};
        uniconc_core::task! { fn triple(x: u32) -> u32 { x * 3 } }
        let e = crate::Pool::builder()
            .workers(1)
            .start(Start::Clean)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::Unsupported);
        assert!(e.to_string().contains("uniconc::init()"), "{e}");
        // Without `init` a re-executed binary cannot become a worker: tasks on a default
        // pool run in its forked workers, as closures do.
        let pool = crate::Pool::new(1).unwrap();
        assert_eq!(pool.map_task::<triple>([1, 2]).unwrap(), [3, 6]);
        assert_eq!(pool.submit_task::<triple>(5).unwrap().wait(), Ok(15));
    }

    #[test]
    fn only_a_child_of_the_named_caller_is_a_worker() {
        let (a, _b) = sys::socketpair().unwrap();
        let fd = a.as_raw_fd();
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        let check = |value: String| worker::parse(&value.into());
        assert_eq!(check(format!("{fd}:{parent}")), Some(fd));
        assert_eq!(check(format!("{fd}:{}", sys::getpid())), None); // we are not our child
        assert_eq!(check(format!("999999:{parent}")), None); // not an open descriptor
        assert_eq!(check("garbage".into()), None);
    }
}
