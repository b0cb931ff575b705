//! The worker's side of the clean start: read one request, run the task, send one report,
//! `_exit`.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt as _;

use uniconc_core::{TaskError, TaskRequest};

use crate::os as sys;
use crate::spawn::{REPORT_FAILED, REPORT_OK_CODEC, REPORT_PANICKED};

/// The request socket named by the environment variable `var` (`<fd>:<caller pid>`), if this
/// process is a worker: the caller pid must be our parent's (a child the worker starts
/// itself inherits the variable but is not a worker) and the descriptor must be open.
pub(super) fn inherited_fd(var: &str) -> Option<RawFd> {
    parse(&std::env::var_os(var)?)
}

/// [`inherited_fd`] for the variable's value.
pub(super) fn parse(value: &OsString) -> Option<RawFd> {
    let text = std::str::from_utf8(value.as_bytes()).ok()?;
    let (fd, caller) = text.split_once(':')?;
    let fd: RawFd = fd.parse().ok()?;
    let caller: sys::Pid = caller.parse().ok()?;
    // SAFETY: getppid has no preconditions and cannot fail.
    if caller != unsafe { libc::getppid() } || fd < 0 {
        return None;
    }
    // SAFETY: F_GETFD only reads the flags of `fd`, and fails with EBADF if it is not open.
    (unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).then_some(fd)
}

/// Runs the worker on the request socket `fd` and leaves the process.
pub(super) fn run(fd: RawFd) -> ! {
    // SAFETY: `fd` is open (checked by `inherited_fd`); F_SETFD only sets its flags. Close on
    // exec, so the processes the task starts do not inherit it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let outcome = read_request(fd).and_then(|req| {
        // A fresh thread with a main thread's stack: the task runs outside any runtime the
        // thread that called `init` is in (`#[tokio::main]`), so it may build its own.
        std::thread::Builder::new()
            .name("uniconc-task".into())
            .stack_size(sys::main_stack_size())
            .spawn(move || req.run())
            .map_err(|e| TaskError::Failed(format!("the worker could not start a thread: {e}")))?
            .join()
            .unwrap_or_else(|p| Err(TaskError::Panicked(uniconc_core::panic_message(&*p))))
    });
    let mut out = Vec::with_capacity(64);
    sys::begin_frame(&mut out);
    match outcome {
        Ok(bytes) => {
            out.push(REPORT_OK_CODEC);
            out.extend_from_slice(&bytes);
        }
        Err(TaskError::Panicked(msg)) => {
            out.push(REPORT_PANICKED);
            let _ = sys::encode_into(&msg, &mut out);
        }
        Err(e) => {
            let msg = match e {
                TaskError::Failed(m) => m,
                other => other.to_string(),
            };
            out.push(REPORT_FAILED);
            let _ = sys::encode_into(&msg, &mut out);
        }
    }
    sys::finish_frame(&mut out);
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
    // A caller that dropped the handle closed its end: EPIPE, ignored.
    let _ = sys::send_all(fd, &out);
    sys::exit_child(0)
}

/// Reads the one request frame.
fn read_request(fd: RawFd) -> Result<TaskRequest, TaskError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        TaskError::Failed(format!(
            "the worker could not read its task request ({what}): {e}"
        ))
    };
    let mut header = [0u8; 8];
    match sys::recv_exact(fd, &mut header, || Ok(())) {
        Ok(true) => {}
        Ok(false) => return Err(failed("header", &"the caller closed the socket")),
        Err(e) => return Err(failed("header", &e)),
    }
    let len = u64::from_le_bytes(header);
    if len > uniconc_core::codec::LIMIT as u64 {
        return Err(failed(
            "length",
            &format!("{len} bytes, over the codec's limit"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    match sys::recv_exact(fd, &mut body, || Ok(())) {
        Ok(true) => {}
        Ok(false) => return Err(failed("body", &"the caller closed the socket")),
        Err(e) => return Err(failed("body", &e)),
    }
    TaskRequest::decode(&body).map_err(|e| failed("decoding", &e))
}

/// Runs a clean-started pool worker on the socket `fd` (the pool's job loop, on a fresh
/// thread outside any runtime the caller of `init` is in) and leaves the process.
pub(super) fn run_pool(fd: RawFd) -> ! {
    // SAFETY: `fd` is open (checked by `inherited_fd`); F_SETFD only sets its flags. Close on
    // exec, so the processes the tasks start do not inherit it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: getppid has no preconditions; `inherited_fd` checked it is the pool's process.
    let parent = unsafe { libc::getppid() };
    let ran = std::thread::Builder::new()
        .name("uniconc-pool-worker".into())
        .stack_size(sys::main_stack_size())
        .spawn(move || crate::pool::clean_worker(fd, parent))
        .map(std::thread::JoinHandle::join);
    // The job loop leaves with `_exit` itself; getting here means it could not start.
    sys::exit_child(if ran.is_ok() { 0 } else { 4 })
}
