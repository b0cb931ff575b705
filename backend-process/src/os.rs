//! The OS plumbing shared by [`spawn`](crate::spawn) and [`Pool`](crate::Pool): forking with
//! consistent stdio locks, socket pairs that never raise `SIGPIPE`, framed reads and writes,
//! `poll` with a deadline, `waitpid` and pidfds, and the reaper for detached children.
//!
//! Everything here talks to the kernel through `libc` directly. The only locks held across
//! `fork()` are the forking thread's own, each released in both processes right after it:
//! stdout and stderr (so no other thread is mid-write), this crate's fork lock (one fork at a
//! time), and the fork hooks' lock and the channel registry's, taken by the `pthread_atfork`
//! handlers (`procs`).
//!
//! # Frames
//!
//! Every message between a parent and a child is a frame: a little-endian `u64` body length
//! followed by the body. A reader accumulates bytes in a [`FrameBuf`] until a whole frame is
//! there, so a child that dies mid-write leaves a short frame that is never mistaken for a
//! result.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use uniconc_core::time::remaining;

/// Process id.
pub(crate) type Pid = libc::pid_t;

/// Maps a `-1` return to the current `errno`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The calling process's id.
pub(crate) fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// A connected `AF_UNIX` stream socket pair, both ends close-on-exec.
///
/// Sockets rather than pipes: `send(MSG_NOSIGNAL)` turns a vanished peer into `EPIPE` instead
/// of a `SIGPIPE` that would kill a host process that did not ignore it, and `MSG_DONTWAIT`
/// gives a non-blocking read without changing the descriptor's flags.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let ty = libc::SOCK_STREAM;
    // SAFETY: `fds` is a valid, writable array of two ints, as socketpair requires.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    for fd in [&pair.0, &pair.1] {
        // SAFETY: fd is open; F_SETFD with FD_CLOEXEC only changes its flags.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    Ok(pair)
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited, so `poll` sees a
/// child's death even when a grandchild still holds the child's end of a socket. `None` where
/// the kernel has none; callers then also check `waitpid(WNOHANG)` periodically.
pub(crate) fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    #[cfg(all(any(target_os = "linux", target_os = "android"), not(uniconc_fallback)))]
    {
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor or -1;
        // it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the syscall returned a fresh descriptor that nothing else owns. A pidfd
            // is created close-on-exec.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
    }
    let _ = pid;
    None
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    fn from_status(status: libc::c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// "was killed by signal 9 (SIGKILL)" / "exited with code 3".
    pub(crate) fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => format!("was killed by signal {s}{}", signal_name(s)),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGPIPE => " (SIGPIPE)",
        _ => "",
    }
}

/// `waitpid(pid)`: reaps the child. With `block == false`, returns `None` while it runs.
pub(crate) fn waitpid(pid: Pid, block: bool) -> io::Result<Option<Exit>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; waitpid only writes it.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        match r {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            0 => return Ok(None),
            _ => return Ok(Some(Exit::from_status(status))),
        }
    }
}

/// `true` if the child has exited, without reaping it (`waitid(WNOWAIT)`), so `&self`
/// methods can answer without consuming the exit status.
pub(crate) fn has_exited(pid: Pid) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value (a plain C struct); waitid writes it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer; WNOWAIT leaves the child waitable.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: waitid filled `info` (or left it zeroed); si_pid is valid to read for a
    // child-state siginfo and 0 means "no child changed state".
    let pid = unsafe { info.si_pid() };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let pid = info.si_pid;
    r == 0 && pid != 0
}

/// Sends SIGKILL to `pid`. The caller guarantees `pid` is its own child that it has not
/// reaped yet (so the pid cannot have been reused).
pub(crate) fn kill9(pid: Pid) -> io::Result<()> {
    // SAFETY: kill takes plain integers; the caller guarantees the pid is an unreaped child of
    // ours, so it names that child and nobody else.
    cvt(unsafe { libc::kill(pid, libc::SIGKILL) }).map(drop)
}

/// Forks. In the child, runs `child` (which must never return); in the parent, returns the
/// child's pid.
///
/// Before forking, the calling thread takes (and flushes) the std `stdout` and `stderr` locks,
/// and releases them on both sides afterwards, the way `pthread_atfork` handlers treat
/// malloc's locks: so no other thread of the parent can be holding them at the instant of the
/// fork, the child can print and flush, and bytes buffered in the parent are not written twice.
/// `fork` (libc's) runs the `pthread_atfork` handlers that other parts of this crate register.
///
/// # Forking from a multi-threaded process
/// Only the calling thread exists in the child. A lock that another thread held at the instant
/// of the fork stays held forever in the child: code run in the child that takes such a lock
/// deadlocks. glibc's malloc and std's stdio are made consistent (by glibc's own atfork
/// handlers and by the locks above); other locks (a user's `Mutex`, a logger) are not. The
/// library's own code in the child (the worker loop, the result report) takes no lock but
/// stdio's. The locks held across the fork (stdio's and the crate's own fork lock) are the
/// forking thread's own, released in both processes.
///
/// # Forking inside a tokio runtime
/// If the calling thread is inside a tokio runtime, the child runs `child` on a thread of its
/// own (see [`run_on_fresh_thread`]), not on its copy of the calling thread, whose
/// thread-locals still say it is in that runtime; the forking thread waits for it and never
/// returns into the caller. Otherwise `child` runs on the forking thread: a new thread in the
/// child costs more than the fork itself (measured: 150 µs for `fork` + `waitpid`, 340 µs with
/// a thread started in the child), and only tokio's context is known to break a child.
pub(crate) fn fork_with(
    child: impl FnOnce() -> std::convert::Infallible + Send,
) -> io::Result<Pid> {
    // This crate's forks in this process go one at a time, so the room check below and the
    // slot the atfork handler then claims for the child are one step: two threads could
    // otherwise both see a channel's last free slot, and one child would go uncounted. Held
    // across the fork and released in both processes (the child's copy is its own).
    static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let forking = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = crate::procs::room_for_child() {
        return Err(io::Error::other(why));
    }
    // Read before the fork: a thread-local read, no work in the child.
    let in_runtime = tokio::runtime::Handle::try_current().is_ok();
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let _ = out.flush();
    let _ = err.flush();
    // SAFETY: fork has no memory-safety preconditions of its own. In the child only this
    // thread exists; the child runs `child`, which leaves through `_exit` and never returns
    // into the caller's frames, so no destructor of the parent's state runs twice.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    drop(err);
    drop(out);
    drop(forking);
    if pid == 0 {
        if in_runtime {
            run_on_fresh_thread(child);
        }
        // A panic must never unwind out of the child into copies of the parent's frames
        // (their destructors would run here): catch it and leave.
        if let Ok(never) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
            match never {}
        }
        exit_child(101);
    }
    crate::channel::registry::note_child(pid as u32);
    crate::procs::drop_fork_leftovers(child);
    Ok(pid)
}

/// In a freshly forked child: runs `child` on a new thread and leaves with `_exit` if it
/// ends by a panic (it never returns otherwise).
///
/// The forking thread's copy in the child keeps that thread's thread-locals: a thread that
/// was inside a tokio runtime (`#[tokio::main]`, a task, `spawn_blocking`) leaves a child in
/// which `Runtime::block_on` panics ("Cannot start a runtime from within a runtime") and
/// `tokio::spawn` hands tasks to worker threads that do not exist in the child (they never
/// run). A new thread starts with none of it, the way a new process's main thread does.
///
/// The thread gets the stack a main thread gets (`RLIMIT_STACK`, 8 MiB if unlimited, at
/// least 2 MiB; mapped lazily, so unused stack costs nothing), since `child` runs user code
/// that would otherwise have run on the caller's thread. If no thread can be started (a
/// thread limit), `child` runs on the forking thread itself rather than not at all.
fn run_on_fresh_thread(child: impl FnOnce() -> std::convert::Infallible + Send) -> ! {
    // A panic must never unwind out of the child into copies of the parent's frames (their
    // destructors would run here): catch it and leave.
    let guarded = move || -> ! {
        if let Ok(never) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
            match never {}
        }
        exit_child(101)
    };
    // Taken by whichever thread runs it: the new one, or this one if none could be started.
    let slot = std::sync::Mutex::new(Some(guarded));
    let take = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("uniconc-child".into())
            .stack_size(main_stack_size())
            .spawn_scoped(s, || {
                if let Some(g) = take() {
                    g()
                }
            });
        // The thread leaves the process with `_exit`: `join` returns only if it did not run.
        if let Ok(h) = spawned {
            let _ = h.join();
        }
    });
    match take() {
        Some(g) => g(),
        None => exit_child(101),
    }
}

/// The stack size of a process's main thread: `RLIMIT_STACK`, 8 MiB if unlimited or
/// unknown, at least 2 MiB.
pub(crate) fn main_stack_size() -> usize {
    const DEFAULT: usize = 8 << 20;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer; getrlimit only writes it.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) };
    if r != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return DEFAULT;
    }
    usize::try_from(lim.rlim_cur)
        .unwrap_or(DEFAULT)
        .clamp(2 << 20, 1 << 30)
}

/// Flushes std's stdout and stderr and leaves the process with `_exit(code)`: no atexit
/// handlers, no destructors of the parent's state.
pub(crate) fn exit_child(code: i32) -> ! {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Writes all of `buf` to the socket `fd`, waiting while it is full.
///
/// # Errors
/// `EPIPE`/`ECONNRESET` when the peer is gone (never a `SIGPIPE`).
pub(crate) fn send_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            buf = &buf[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                poll_one(fd, libc::POLLOUT, None)?;
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const MSG_NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const MSG_NOSIGNAL: libc::c_int = 0;

/// What a non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// Nothing more right now.
    Pending,
    /// The peer closed its end (or the connection broke).
    Eof,
}

/// Reads whatever `fd` has right now into `buf`, without blocking.
pub(crate) fn recv_available(fd: RawFd, buf: &mut FrameBuf) -> ReadState {
    loop {
        let want = buf.wanted().clamp(64 * 1024, 4 << 20);
        buf.data.reserve(want);
        let spare = buf.data.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by the Vec; recv
        // writes at most that many bytes into it.
        let n = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            let len = buf.data.len();
            // SAFETY: recv initialised the first `n` bytes of the spare capacity.
            unsafe { buf.data.set_len(len + n as usize) };
            if buf.complete() {
                // A peer sends one frame per request: no need for another read.
                return ReadState::Pending;
            }
            continue;
        }
        if n == 0 {
            return ReadState::Eof;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return ReadState::Pending,
            _ => return ReadState::Eof,
        }
    }
}

/// Reads exactly `buf.len()` bytes from `fd`, blocking; `Ok(false)` on a clean EOF before the
/// first byte. `on_idle` runs each time a receive timeout (`SO_RCVTIMEO`) expires and may stop
/// the read by returning an error.
pub(crate) fn recv_exact(
    fd: RawFd,
    buf: &mut [u8],
    mut on_idle: impl FnMut() -> io::Result<()>,
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is writable for `rest.len()` bytes; recv writes at most that many.
        let n = unsafe { libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            got += n as usize;
            continue;
        }
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => on_idle()?,
            _ => return Err(e),
        }
    }
    Ok(true)
}

/// Asks for a send buffer of `bytes` on a socket (the kernel caps it at `wmem_max`), so a
/// worker can queue a whole chunk's results and go on with its next chunk while the parent is
/// busy. Best effort: a refusal only costs speed.
pub(crate) fn set_send_buffer(fd: RawFd, bytes: libc::c_int) {
    // SAFETY: `bytes` is a valid c_int and its exact size is passed.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Sets a receive timeout on a socket, so a blocking `recv` returns `EAGAIN` now and then.
pub(crate) fn set_recv_timeout(fd: RawFd, secs: libc::time_t) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// How long a pool's leader and an idle worker poll without sleeping before they block: a
/// wake-up through a socket costs ~15 µs in this VM, a back-to-back job or result arrives
/// within a few µs. 0 with one usable CPU (polling would only delay the peer).
pub(crate) fn spin_budget() -> Duration {
    static ONE_CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ONE_CPU.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)) {
        Duration::ZERO
    } else {
        Duration::from_micros(50)
    }
}

/// Polls `fds` without sleeping (`poll` with a zero timeout) until one is ready or `budget`
/// has passed; returns the number ready (0 if none).
pub(crate) fn poll_spinning(fds: &mut [libc::pollfd], budget: Duration) -> io::Result<usize> {
    if budget.is_zero() {
        return Ok(0);
    }
    let end = Instant::now() + budget;
    loop {
        // SAFETY: `fds` is a valid, writable slice of pollfd of the length passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if r > 0 {
            return Ok(r as usize);
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if Instant::now() >= end {
            return Ok(0);
        }
        std::hint::spin_loop();
    }
}

/// Polls one descriptor for `events` until `deadline`; `Ok(true)` if it is ready.
pub(crate) fn poll_one(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    Ok(poll(&mut p, deadline)? > 0)
}

/// `poll(2)` until `deadline` (`None`: forever), retrying on `EINTR` with the time left.
/// Returns the number of ready descriptors (0 on timeout).
pub(crate) fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout = match remaining(deadline) {
            None => -1,
            // Round up so a wait never ends before the deadline and then spins.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: `fds` is a valid, writable slice of pollfd of the length passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A non-blocking self-pipe: writing a byte wakes a thread blocked in `poll` on the read end.
#[derive(Debug)]
pub(crate) struct WakePipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl WakePipe {
    pub(crate) fn new() -> io::Result<Self> {
        let (read, write) = socketpair()?;
        for fd in [&read, &write] {
            // SAFETY: fd is open; F_GETFL/F_SETFL only read and change its status flags.
            unsafe {
                let fl = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
                cvt(libc::fcntl(
                    fd.as_raw_fd(),
                    libc::F_SETFL,
                    fl | libc::O_NONBLOCK,
                ))?;
            }
        }
        Ok(Self { read, write })
    }

    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Wakes the poller (a full pipe already means "wake up", so errors are ignored).
    pub(crate) fn wake(&self) {
        let b = [1u8];
        // SAFETY: one readable byte; MSG_NOSIGNAL so a closed peer is an error, not a signal.
        let _ = unsafe { libc::send(self.write.as_raw_fd(), b.as_ptr().cast(), 1, MSG_NOSIGNAL) };
    }

    /// Empties the pipe.
    pub(crate) fn drain(&self) {
        let mut b = [0u8; 64];
        // SAFETY: `b` is writable for its length; the descriptor is non-blocking.
        while unsafe { libc::recv(self.read.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0) } > 0 {}
    }
}

/// Bytes read so far from one peer, cut into frames.
#[derive(Debug, Default)]
pub(crate) struct FrameBuf {
    data: Vec<u8>,
}

/// Largest frame body accepted from a child (a corrupt length is treated as a broken peer).
pub(crate) const MAX_FRAME: u64 = 1 << 40;

impl FrameBuf {
    /// `true` if nothing is buffered and the storage is too small for a typical frame: a
    /// good moment to [`provide`](Self::provide) a spare buffer.
    pub(crate) fn wants_storage(&self) -> bool {
        self.data.is_empty() && self.data.capacity() < 64 * 1024
    }

    /// Uses `spare` as the storage for the next frames (only while nothing is buffered).
    pub(crate) fn provide(&mut self, mut spare: Vec<u8>) {
        if self.data.is_empty() && spare.capacity() > self.data.capacity() {
            spare.clear();
            self.data = spare;
        }
    }

    /// Bytes still missing to complete the current frame (a guess before its header).
    fn wanted(&self) -> usize {
        match self.header() {
            Some(len) => (8 + len as usize).saturating_sub(self.data.len()),
            None => 0,
        }
    }

    fn header(&self) -> Option<u64> {
        let h: [u8; 8] = self.data.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(h).min(MAX_FRAME))
    }

    /// `true` if a whole frame is buffered.
    fn complete(&self) -> bool {
        self.header()
            .is_some_and(|len| self.data.len() as u64 >= 8 + len)
    }

    /// `true` if a frame header announced an absurd length.
    pub(crate) fn corrupt(&self) -> bool {
        self.data
            .get(..8)
            .is_some_and(|h| u64::from_le_bytes(h.try_into().unwrap_or_default()) > MAX_FRAME)
    }

    /// Takes one complete frame (header included; the body starts at byte 8).
    pub(crate) fn take_frame(&mut self) -> Option<Vec<u8>> {
        let len = self.header()? as usize;
        if self.corrupt() || self.data.len() < 8 + len {
            return None;
        }
        let rest = self.data.split_off(8 + len);
        Some(std::mem::replace(&mut self.data, rest))
    }
}

/// Starts a frame in `out`: reserves the 8-byte length header, to be filled by
/// [`finish_frame`].
pub(crate) fn begin_frame(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0u8; 8]);
}

/// Writes the body length of the frame begun by [`begin_frame`] into its header.
pub(crate) fn finish_frame(out: &mut [u8]) {
    let len = (out.len() - 8) as u64;
    out[..8].copy_from_slice(&len.to_le_bytes());
}

/// Appends the postcard encoding of `value` to `out`, in place (a postcard flavor that pushes
/// straight into the `Vec`). On error, `out` may hold a partial encoding: truncate it back.
#[inline]
pub(crate) fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, VecFlavor(out))
}

/// One postcard serializer appending to a `Vec` for many values in a row (a chunk of items),
/// so the per-value cost is the encoding alone.
pub(crate) struct Encoder<'a>(postcard::Serializer<VecFlavor<'a>>);

impl<'a> Encoder<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self(postcard::Serializer {
            output: VecFlavor(out),
        })
    }

    /// Appends `value`; on error, nothing of it stays in the buffer.
    #[inline(always)]
    pub(crate) fn push<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> postcard::Result<()> {
        let mark = self.0.output.0.len();
        value
            .serialize(FastSer(&mut self.0))
            .inspect_err(|_| self.0.output.0.truncate(mark))
    }
}

/// The `serde::Serializer` of one value pushed by an [`Encoder`]: postcard's format, with the
/// primitives written inline (the counterpart of `pool/wire.rs`). Through postcard's own
/// serializer, `u64::serialize` could stay an out-of-line call per value (it is
/// instantiated in the caller's crate, where inlining is the optimiser's guess); here the
/// primitives are a few inlined instructions, and everything else (strings, sequences,
/// maps, enums, options, structs, chars, 128-bit integers) is postcard's serializer itself.
struct FastSer<'a, 'b>(&'a mut postcard::Serializer<VecFlavor<'b>>);

impl FastSer<'_, '_> {
    #[inline(always)]
    fn byte(self, b: u8) -> postcard::Result<()> {
        self.0.output.0.push(b);
        Ok(())
    }

    /// LEB128, as postcard writes every unsigned integer wider than a byte.
    #[inline(always)]
    fn varint(self, mut v: u64) -> postcard::Result<()> {
        let out = &mut *self.0.output.0;
        out.reserve(10);
        let len = out.len();
        let mut n = 0;
        // SAFETY: `reserve(10)` made room for 10 bytes after `len`, the most a u64 takes
        // (7 bits per byte); the loop writes `n + 1 <= 10` of them, all initialised before
        // `set_len` exposes them.
        unsafe {
            let p = out.as_mut_ptr().add(len);
            while v >= 0x80 {
                p.add(n).write(v as u8 | 0x80);
                v >>= 7;
                n += 1;
            }
            p.add(n).write(v as u8);
            out.set_len(len + n + 1);
        }
        Ok(())
    }
}

/// Hands a value to postcard's serializer.
macro_rules! forward_ser {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> postcard::Result<$ret> {
            serde::Serializer::$method(self.0, $($arg),*)
        }
    )*};
}

impl<'a, 'b> serde::Serializer for FastSer<'a, 'b> {
    type Ok = ();
    type Error = postcard::Error;
    type SerializeSeq = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeTuple = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeTupleStruct = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeTupleVariant = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeMap = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeStruct = &'a mut postcard::Serializer<VecFlavor<'b>>;
    type SerializeStructVariant = &'a mut postcard::Serializer<VecFlavor<'b>>;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> postcard::Result<()> {
        self.byte(u8::from(v))
    }

    #[inline(always)]
    fn serialize_u8(self, v: u8) -> postcard::Result<()> {
        self.byte(v)
    }

    #[inline(always)]
    fn serialize_i8(self, v: i8) -> postcard::Result<()> {
        self.byte(v as u8)
    }

    #[inline(always)]
    fn serialize_u16(self, v: u16) -> postcard::Result<()> {
        self.varint(u64::from(v))
    }

    #[inline(always)]
    fn serialize_u32(self, v: u32) -> postcard::Result<()> {
        self.varint(u64::from(v))
    }

    #[inline(always)]
    fn serialize_u64(self, v: u64) -> postcard::Result<()> {
        self.varint(v)
    }

    // Zigzag, as postcard: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...
    #[inline(always)]
    fn serialize_i16(self, v: i16) -> postcard::Result<()> {
        self.varint(u64::from(((v << 1) ^ (v >> 15)) as u16))
    }

    #[inline(always)]
    fn serialize_i32(self, v: i32) -> postcard::Result<()> {
        self.varint(u64::from(((v << 1) ^ (v >> 31)) as u32))
    }

    #[inline(always)]
    fn serialize_i64(self, v: i64) -> postcard::Result<()> {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    #[inline(always)]
    fn serialize_f32(self, v: f32) -> postcard::Result<()> {
        self.0
            .output
            .0
            .extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline(always)]
    fn serialize_f64(self, v: f64) -> postcard::Result<()> {
        self.0
            .output
            .0
            .extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    // Postcard writes a newtype as its content: keep the short path for the inner value.
    #[inline(always)]
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> postcard::Result<()> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> postcard::Result<()> {
        serde::Serializer::serialize_some(self.0, value)
    }

    #[inline]
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> postcard::Result<()> {
        serde::Serializer::serialize_newtype_variant(self.0, name, variant_index, variant, value)
    }

    #[inline]
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> postcard::Result<()> {
        serde::Serializer::collect_str(self.0, value)
    }

    forward_ser! {
        serialize_i128(v: i128) -> ();
        serialize_u128(v: u128) -> ();
        serialize_char(v: char) -> ();
        serialize_str(v: &str) -> ();
        serialize_bytes(v: &[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(name: &'static str) -> ();
        serialize_unit_variant(name: &'static str, variant_index: u32, variant: &'static str) -> ();
        serialize_seq(len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(len: usize) -> Self::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(
            name: &'static str,
            variant_index: u32,
            variant: &'static str,
            len: usize
        ) -> Self::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> Self::SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> Self::SerializeStruct;
        serialize_struct_variant(
            name: &'static str,
            variant_index: u32,
            variant: &'static str,
            len: usize
        ) -> Self::SerializeStructVariant;
    }
}

struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let v = &mut *self.0;
        let n = data.len();
        v.reserve(n);
        let (src, len) = (data.as_ptr(), v.len());
        // SAFETY: `reserve(n)` made room for `n` more bytes after `len`; `src` is valid for
        // `n` reads and cannot overlap the Vec's spare capacity (a `&[u8]` and the `&mut
        // Vec` are disjoint borrows). The copy initialises exactly the bytes `set_len` exposes.
        unsafe {
            let dst = v.as_mut_ptr().add(len);
            // Varints and small fields: a copy of constant length compiles to a couple of
            // moves, where a variable length would call memcpy (measured: 2x on 1M u64s).
            macro_rules! fixed {
                ($($k:literal)*) => {
                    match n {
                        $($k => std::ptr::copy_nonoverlapping(src, dst, $k),)*
                        _ => std::ptr::copy_nonoverlapping(src, dst, n),
                    }
                };
            }
            fixed!(1 2 3 4 5 6 7 8 9 10);
            v.set_len(len + n);
        }
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Reaps a child whose handle was dropped before it finished.
///
/// A small thread (64 KiB stack) blocks in `waitpid(pid, 0)` for that one child and ends when
/// the child does. It holds no lock while it waits, so a fork by another thread never copies
/// a held lock of ours into a child. If the thread cannot be started, the child stays a zombie
/// until this process exits (init reaps it then).
pub(crate) fn reap_in_background(pid: Pid) {
    if let Ok(Some(_)) = waitpid(pid, false) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("uniconc-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = waitpid(pid, true);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    /// Pushes every value with an [`Encoder`] and checks the bytes are postcard's.
    fn same<T: Serialize>(values: &[T]) {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut enc = Encoder::new(&mut ours);
        for v in values {
            enc.push(v).unwrap();
            theirs.extend(postcard::to_stdvec(v).unwrap());
        }
        assert_eq!(ours, theirs);
    }

    #[derive(Serialize)]
    struct Point {
        x: i64,
        y: Option<u32>,
        tag: String,
    }

    /// The values `wire.rs`'s round-trip tests cannot read back and compare (they check
    /// this encoder on every other primitive and compound): NaN, borrowed strings and bytes,
    /// a type without `Deserialize`.
    #[test]
    fn encode_only_values_are_postcards_bytes() {
        same(&[0.0f64, f64::NAN]);
        same(&["", "hello"]);
        same(&[(1u8, -2i64, "x"), (0, 0, "")]);
        same(&[Point {
            x: -5,
            y: Some(9),
            tag: "p".into(),
        }]);
        same(&[BTreeMap::from([(1u16, "a")]), BTreeMap::new()]);
        same(&[&b"bytes"[..]]);
    }

    /// A value whose serialization fails after writing part of itself.
    struct Half;

    impl Serialize for Half {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeTuple};
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&12_345u64)?;
            drop(t);
            Err(S::Error::custom("no second half"))
        }
    }

    #[test]
    fn a_failed_push_leaves_nothing_behind() {
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out);
        enc.push(&1u64).unwrap();
        assert!(enc.push(&Half).is_err());
        // A sequence of unknown length is an error in postcard's format.
        let unknown = std::iter::once(5u8).filter(|_| true);
        struct Iter<I>(std::cell::Cell<Option<I>>);
        impl<I: Iterator<Item = u8>> Serialize for Iter<I> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.take().expect("once"))
            }
        }
        assert!(
            enc.push(&Iter(std::cell::Cell::new(Some(unknown))))
                .is_err()
        );
        enc.push(&2u64).unwrap();
        assert_eq!(out, [1, 2]);
    }
}
