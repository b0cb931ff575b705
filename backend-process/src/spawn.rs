//! Processes as execution units: [`spawn`], [`spawn_async`] and their [`JoinHandle`].
//!
//! `spawn(f)` forks. The child runs `f` under `catch_unwind`, sends its result (or its panic
//! message) back to the parent through a socket pair as one postcard-encoded frame, flushes
//! its stdout and stderr, and leaves with `_exit(0)`: it never runs the parent's destructors or
//! atexit handlers. The parent's [`JoinHandle`] reads the frame and reaps the child.
//!
//! ```
//! use uniconc::JoinHandle as _;
//!
//! let h = uniconc::process::spawn(|| std::process::id())?;
//! let child_pid = h.id();
//! assert_eq!(h.join()?, child_pid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the child inherits, forking from a multi-threaded process and reaping are documented
//! on [`JoinHandle`].
//!
//! # Files
//! - `spawn.rs`: this module.
//! - `pool/sys.rs`: fork, sockets, frames, poll and waitpid helpers shared with the pool.

#![deny(missing_docs)]

use std::future::Future;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use uniconc_core::{Error, JoinError, Message, panic_message};

use crate::os::{self as sys, Exit, FrameBuf, Pid, ReadState};

/// Report tags: the first byte of the child's frame body. `REPORT_OK` carries the result in
/// postcard (a forked child, which knows `R`); `REPORT_OK_CODEC` carries it in the core codec
/// (a clean-started worker, which ran a task through its erased runner).
const REPORT_OK: u8 = 0;
pub(crate) const REPORT_PANICKED: u8 = 1;
pub(crate) const REPORT_FAILED: u8 = 2;
pub(crate) const REPORT_OK_CODEC: u8 = 3;

/// Runs `f` in a forked child process.
///
/// The child runs `f` under `catch_unwind`, reports its result (or its panic message) to the
/// parent, flushes stdout and stderr and leaves with `_exit`. See the [`JoinHandle`] docs for
/// what the child inherits and for forking from a multi-threaded process.
///
/// # Errors
/// `Os` if the socket pair or the fork failed.
///
/// ```
/// use uniconc::{JoinError, JoinHandle as _};
///
/// let h = uniconc::process::spawn(|| -> u32 { panic!("boom") })?;
/// assert_eq!(h.join(), Err(JoinError::Panicked("boom".into())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn<F, R>(f: F) -> Result<JoinHandle<R>, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Message,
{
    let (parent_end, child_end) =
        sys::socketpair().map_err(|e| Error::os("creating the result socket of a child", e))?;
    let parent_fd = parent_end.as_raw_fd();
    let pid = sys::fork_with(|| {
        // SAFETY: this is the child; its copy of `parent_end` is never dropped (the child
        // leaves through `_exit`), so closing the number here closes it exactly once.
        unsafe { libc::close(parent_fd) };
        child_main(child_end.as_raw_fd(), f)
    })
    .map_err(|e| Error::os("fork", e))?;
    drop(child_end);
    Ok(JoinHandle::new(pid, parent_end, false))
}

/// Runs `fut` to completion in a forked child process, on the child's own current-thread tokio
/// runtime (with I/O and timers enabled).
///
/// Like [`spawn`]'s closure, `fut` runs outside any runtime the calling thread runs in.
///
/// # Errors
/// As [`spawn`]. A runtime that cannot be built in the child is reported by `join` as
/// `Panicked` with the reason.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
///
/// let (tx, rx) = uniconc::process::channel::<u32>(4)?;
/// let child = uniconc::process::spawn_async(async move {
///     let mut sum = 0;
///     while let Ok(v) = rx.recv_async().await {
///         sum += v;
///     }
///     sum
/// })?;
/// for i in 1..=4 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// assert_eq!(child.join()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Cancel safety
/// Not a future: the unit starts at once and runs whether or not its handle is ever joined
/// (dropping the handle detaches it).
pub fn spawn_async<Fut>(fut: Fut) -> Result<JoinHandle<Fut::Output>, Error>
where
    Fut: Future + Send + 'static,
    Fut::Output: Message,
{
    // The child runs this outside any runtime the forking thread was in (`sys::fork_with`
    // starts a thread of its own for it then).
    spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("could not start a tokio runtime in the child: {e}"))
            .block_on(fut)
    })
}

/// The child's side: run `f`, report, flush, `_exit`.
fn child_main<F, R>(fd: RawFd, f: F) -> std::convert::Infallible
where
    F: FnOnce() -> R,
    R: Message,
{
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let mut out = Vec::with_capacity(64);
    sys::begin_frame(&mut out);
    match &outcome {
        Ok(value) => {
            out.push(REPORT_OK);
            if let Err(e) = sys::encode_into(value, &mut out) {
                out.truncate(8);
                out.push(REPORT_FAILED);
                let ty = std::any::type_name::<R>();
                let msg = format!("the result could not be serialized (a `{ty}`): {e}");
                let _ = sys::encode_into(&msg, &mut out);
            }
        }
        Err(payload) => {
            out.push(REPORT_PANICKED);
            let _ = sys::encode_into(&panic_message(&**payload), &mut out);
        }
    }
    sys::finish_frame(&mut out);
    // Flush before reporting, so the output is out even if the parent kills us once it has
    // the result.
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
    // A parent that dropped the handle closed its end: EPIPE, ignored (never SIGPIPE).
    let _ = sys::send_all(fd, &out);
    // Leave without dropping the result or the payload: `_exit` skips every destructor.
    std::mem::forget(outcome);
    sys::exit_child(0)
}

/// Handle to a child process started by [`spawn`]; implements
/// [`uniconc::JoinHandle`](uniconc_core::JoinHandle).
///
/// `join` returns the child's result, or `JoinError::Panicked(message)` if `f` panicked,
/// `Killed(signal)` if a signal ended it before it reported, `Exited(code)` if it called
/// `exit` before reporting. Dropping the handle detaches the child: it runs on, and is reaped
/// when it ends (see "Reaping" below).
///
/// A handle belongs to the process that spawned the child: moved into another process (a
/// forked child), `join` fails with `Failed` and dropping it does nothing.
///
/// # What the child inherits
///
/// A forked child starts as a copy of the parent: everything `f` captured is there, and so are
/// the handles of this crate created before the fork (channels, locks, values), which work
/// across the two processes.
///
/// Spawned from inside a tokio runtime (`#[tokio::main]`, a task), the child runs `f` on a
/// thread of its own, outside that runtime, whose threads it does not have: `f` may build and
/// drive a runtime of its own. Other per-thread state of the calling thread is inherited as
/// it is.
///
/// # Forking from a multi-threaded process
///
/// Only the forking thread exists in the child. A lock held by another thread at the instant
/// of the fork stays held forever in the child, so code in the child that takes it (a user's
/// `Mutex`, a logger) deadlocks. glibc's malloc is made consistent by glibc's own
/// `pthread_atfork` handlers, and std's stdout/stderr locks by this crate (they are taken
/// around the fork). The library's own code never holds any other lock across `fork()`.
///
/// # Reaping
///
/// Every child is reaped: by `join`, or, when its handle is dropped, at once if it has already
/// exited, else by a small thread that blocks in `waitpid` for that child alone and ends with
/// it (it holds no lock while it waits).
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Event as _, JoinError, JoinHandle as _};
/// let never = uniconc::process::event()?;
/// let mut child = uniconc::process::spawn({
///     let never = never.clone();
///     move || never.wait()
/// })?;
/// assert_ne!(child.id(), std::process::id()); // the child's pid
/// assert_eq!(child.join_timeout(Duration::from_millis(1)), Err(JoinError::Timeout));
/// assert!(!child.is_finished());
/// child.kill()?; // SIGKILL
/// assert_eq!(child.join(), Err(JoinError::Killed(9))); // and reaped
///
/// let child = uniconc::process::spawn(|| -> u8 { std::process::exit(3) })?;
/// assert_eq!(child.join(), Err(JoinError::Exited(3))); // left before reporting a result
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinHandle<R> {
    pid: Pid,
    /// The process that forked the child (only it may wait for it).
    owner: Pid,
    /// Our end of the result socket; `None` once it reached EOF.
    sock: Option<OwnedFd>,
    /// Readable once the child exits (Linux), so a grandchild holding the child's end of the
    /// socket cannot hide the child's death.
    pidfd: Option<OwnedFd>,
    buf: FrameBuf,
    /// The child's complete report frame, once read.
    report: Option<Vec<u8>>,
    /// The child's exit status, once reaped.
    exit: Option<Exit>,
    /// The result was handed out.
    taken: bool,
    /// A clean-started worker (re-executed binary) rather than a forked child.
    clean: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> JoinHandle<R> {
    /// The handle of the child `pid` (ours to reap), which reports through `sock`.
    pub(crate) fn new(pid: Pid, sock: OwnedFd, clean: bool) -> Self {
        JoinHandle {
            pid,
            owner: sys::getpid(),
            sock: Some(sock),
            pidfd: sys::pidfd_open(pid),
            buf: FrameBuf::default(),
            report: None,
            exit: None,
            taken: false,
            clean,
            _result: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("pid", &self.pid)
            .field("exit", &self.exit)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<R: Message> JoinHandle<R> {
    /// Reads what the child sent and reaps it if it exited, without blocking. `Ok(true)` once
    /// the child is reaped.
    fn progress(&mut self) -> Result<bool, JoinError> {
        if self.exit.is_some() {
            return Ok(true);
        }
        if self.owner != sys::getpid() {
            return Err(JoinError::Failed(format!(
                "child {} belongs to process {}, not to this one",
                self.pid, self.owner
            )));
        }
        if let Some(sock) = &self.sock {
            if sys::recv_available(sock.as_raw_fd(), &mut self.buf) == ReadState::Eof {
                self.sock = None;
            }
            if self.report.is_none() {
                self.report = self.buf.take_frame();
            }
            if self.report.is_some() || self.buf.corrupt() {
                self.sock = None;
            }
        }
        match sys::waitpid(self.pid, false) {
            Ok(Some(exit)) => {
                self.exit = Some(exit);
                // The child is gone: whatever it wrote is in the socket buffer already.
                if let Some(sock) = self.sock.take() {
                    sys::recv_available(sock.as_raw_fd(), &mut self.buf);
                    if self.report.is_none() {
                        self.report = self.buf.take_frame();
                    }
                }
                self.pidfd = None;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(JoinError::Failed(format!("waitpid({}): {e}", self.pid))),
        }
    }

    /// Blocks until something may have changed (data, EOF, exit) or `deadline`.
    fn wait_event(&self, deadline: Option<Instant>) -> Result<(), JoinError> {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 2];
        let mut n = 0;
        if let Some(s) = &self.sock {
            fds[n].fd = s.as_raw_fd();
            n += 1;
        }
        let deadline = match &self.pidfd {
            Some(p) => {
                fds[n].fd = p.as_raw_fd();
                n += 1;
                deadline
            }
            // Without a pidfd, check waitpid now and then.
            None => {
                let tick = Instant::now() + Duration::from_millis(20);
                Some(deadline.map_or(tick, |d| d.min(tick)))
            }
        };
        sys::poll(&mut fds[..n], deadline)
            .map(drop)
            .map_err(|e| JoinError::Failed(format!("poll: {e}")))
    }

    /// Turns the report and the exit status into the result (once).
    fn outcome(&mut self) -> Result<R, JoinError> {
        if self.taken {
            return Err(JoinError::AlreadyJoined);
        }
        self.taken = true;
        let exit = self.exit.expect("outcome() after reaping");
        let Some(frame) = self.report.take() else {
            if self.clean && exit == Exit::Code(0) {
                return Err(JoinError::Failed(
                    "the clean-started worker exited with code 0 without reporting a result: \
                     either the task called `exit(0)`, or the binary never became a worker \
                     (does `main` call `uniconc::init()` first thing, and a `#[test]` \
                     `uniconc::process::init()` at its top?)"
                        .into(),
                ));
            }
            return Err(match exit {
                Exit::Signal(s) => JoinError::Killed(s),
                Exit::Code(c) => JoinError::Exited(c),
            });
        };
        let body = &frame[8..];
        let Some((&tag, rest)) = body.split_first() else {
            return Err(JoinError::Failed("the child sent an empty report".into()));
        };
        match tag {
            REPORT_OK => postcard::from_bytes::<R>(rest).map_err(|e| {
                JoinError::Failed(crate::pool::wire::decode_failure::<R>(
                    "the result",
                    rest,
                    &e,
                ))
            }),
            REPORT_OK_CODEC => uniconc_core::codec::decode::<R>(rest).map_err(|e| {
                JoinError::Failed(format!(
                    "the worker's result could not be decoded as `{}`: {e}",
                    std::any::type_name::<R>()
                ))
            }),
            REPORT_PANICKED | REPORT_FAILED => {
                let msg = postcard::from_bytes::<String>(rest)
                    .unwrap_or_else(|e| format!("(undecodable message: {e})"));
                Err(if tag == REPORT_PANICKED {
                    JoinError::Panicked(msg)
                } else {
                    JoinError::Failed(msg)
                })
            }
            other => Err(JoinError::Failed(format!(
                "the child sent an unknown report tag {other}"
            ))),
        }
    }
}

impl<R: Message> uniconc_core::JoinHandle<R> for JoinHandle<R> {
    type Id = u32;

    fn join(mut self) -> Result<R, JoinError> {
        self.join_deadline(None)
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError> {
        if self.taken {
            return Err(JoinError::AlreadyJoined);
        }
        loop {
            if self.progress()? {
                return self.outcome();
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(JoinError::Timeout);
            }
            self.wait_event(deadline)?;
        }
    }

    /// Waits on a helper thread (which polls the child's socket and pidfd), so the executor's
    /// thread never blocks; works on any executor.
    fn join_async(&mut self) -> impl Future<Output = Result<R, JoinError>> + Send + '_ {
        JoinFuture {
            handle: self,
            waiter: None,
        }
    }

    fn is_finished(&self) -> bool {
        self.exit.is_some() || (self.owner == sys::getpid() && sys::has_exited(self.pid))
    }

    fn id(&self) -> u32 {
        self.pid as u32
    }

    fn kill(&self) -> Result<(), Error> {
        if self.exit.is_some() || self.owner != sys::getpid() {
            // Already reaped (the pid may name another process now), or not ours.
            return Ok(());
        }
        sys::kill9(self.pid).map_err(|e| Error::os(format!("kill({}, SIGKILL)", self.pid), e))
    }
}

impl<R> Drop for JoinHandle<R> {
    fn drop(&mut self) {
        if self.exit.is_none() && self.owner == sys::getpid() {
            sys::reap_in_background(self.pid);
        }
    }
}

/// Future of [`JoinHandle::join_async`](uniconc_core::JoinHandle::join_async).
struct JoinFuture<'a, R> {
    handle: &'a mut JoinHandle<R>,
    waiter: Option<Arc<AsyncWaiter>>,
}

impl<R: Message> Future for JoinFuture<'_, R> {
    type Output = Result<R, JoinError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        use uniconc_core::JoinHandle as _;
        match this.handle.try_join() {
            Err(JoinError::Timeout) => {}
            done => return Poll::Ready(done),
        }
        let mut fds = Vec::with_capacity(2);
        if let Some(s) = &this.handle.sock {
            fds.push(s.as_raw_fd());
        }
        if let Some(p) = &this.handle.pidfd {
            fds.push(p.as_raw_fd());
        }
        let pid = this.handle.pid;
        let has_pidfd = this.handle.pidfd.is_some();
        match &this.waiter {
            Some(w) if !w.fired.load(Ordering::Acquire) => w.set_waker(cx.waker()),
            _ => {
                // Duplicate the descriptors so the helper thread never polls a descriptor
                // number that the handle closed (and the OS reused) in the meantime.
                let owned: Vec<OwnedFd> = fds
                    .iter()
                    .filter_map(|&fd| {
                        // SAFETY: fd is open (owned by the handle, which we borrow).
                        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
                        // SAFETY: a successful F_DUPFD returns a new descriptor we own.
                        (d >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(d) })
                    })
                    .collect();
                let w = AsyncWaiter::start(cx.waker().clone(), move |stop: &AtomicBool| {
                    let mut p: Vec<libc::pollfd> = owned
                        .iter()
                        .map(|fd| libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        })
                        .collect();
                    while !stop.load(Ordering::Acquire) {
                        let tick = Instant::now() + Duration::from_millis(50);
                        match sys::poll(&mut p, Some(tick)) {
                            Ok(0) if !has_pidfd && sys::has_exited(pid) => return,
                            Ok(0) => {}
                            _ => return,
                        }
                    }
                });
                this.waiter = Some(w);
            }
        }
        Poll::Pending
    }
}

impl<R> Drop for JoinFuture<'_, R> {
    fn drop(&mut self) {
        if let Some(w) = &self.waiter {
            w.stop.store(true, Ordering::Release);
        }
    }
}

/// A helper thread that blocks on behalf of a future and wakes it once.
///
/// # Memory ordering
/// `fired` is stored with `Release` after the helper's wait ended and read with `Acquire` by
/// the future, so a future that sees it set also sees what the helper observed. `stop` is the
/// reverse signal (future dropped: give up at the next tick); Release/Acquire likewise.
pub(crate) struct AsyncWaiter {
    fired: AtomicBool,
    stop: AtomicBool,
    waker: std::sync::Mutex<Option<Waker>>,
}

impl AsyncWaiter {
    /// Starts the helper: it runs `wait(&stop)` and then wakes the latest waker.
    pub(crate) fn start(
        waker: Waker,
        wait: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Arc<AsyncWaiter> {
        let w = Arc::new(AsyncWaiter {
            fired: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            waker: std::sync::Mutex::new(Some(waker)),
        });
        let w2 = Arc::clone(&w);
        let spawned = std::thread::Builder::new()
            .name("uniconc-waiter".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                wait(&w2.stop);
                w2.fire();
            });
        if spawned.is_err() {
            // No thread: wake at once; the future will poll (and retry) again.
            w.fire();
        }
        w
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// `true` once the helper's wait ended.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Asks the helper to give up at its next tick.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Replaces the waker to wake; wakes it now if the helper already fired.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(waker.clone());
        drop(slot);
        if self.fired() {
            self.fire();
        }
    }
}
