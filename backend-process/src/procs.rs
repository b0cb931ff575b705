//! Who is this process, is that one alive, and what happens at `fork`.
//!
//! - [`my_pid`]: the pid, cached (a `getpid` syscall would dominate an uncontended lock) and
//!   refreshed in the child by a `pthread_atfork` child handler.
//! - [`Identity`] / [`is_alive`]: a pid plus its start time (field 22 of `/proc/<pid>/stat`,
//!   Linux), so a reused pid is not mistaken for the original process; a zombie counts as dead.
//!   Without `/proc` (other Unixes, or `--cfg uniconc_fallback`): existence (`kill(pid, 0)`),
//!   and `waitid(WNOWAIT)` for our own children, so a child's zombie counts as dead too.
//! - The fork handlers, installed once: they reset the async waiter pool and the claim
//!   indices in the child, and run the hooks other modules register ([`ForkHooks`]; the
//!   channel registry keeps channel end counts right across `fork` with them).
//!
//! The child handler runs between `fork` and the child's return from it, possibly in a copy
//! of a multi-threaded process: it only touches atomics and makes raw syscalls (`getpid`,
//! `open`, `read`, `close`), all async-signal-safe; it never allocates or takes a lock that
//! another thread could have held.

use std::cell::Cell;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::spin::SpinLock;

static PID: AtomicU32 = AtomicU32::new(0);
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

/// How many forks separate this process from the first one that loaded this crate: bumped in
/// every child. A handle stamped with another generation was copied in by `fork` and not yet
/// used here.
#[inline]
pub(crate) fn fork_gen() -> u64 {
    // Relaxed: only this process writes it (the atfork child handler, before any other code).
    FORK_GEN.load(Ordering::Relaxed)
}
static INSTALL: Once = Once::new();

thread_local! {
    static DROPPING_FORK_LEFTOVERS: Cell<bool> = const { Cell::new(false) };
    static FORKING_TO_EXEC: Cell<bool> = const { Cell::new(false) };
}

/// Runs `spawn` (which forks and, in the child, only execs another program: a
/// `std::process::Command` with a `pre_exec` hook) so that the fork handlers do not count the
/// child as a holder of this process's channel handles: the program it becomes holds none of
/// them. A child counted at the fork would take a process slot of every channel until its
/// `exec` is noticed (`crate::holder`), and where that cannot be noticed (no OFD locks) keep
/// every channel of this process connected until it exits (a clean pool's workers live as
/// long as the pool).
pub(crate) fn forking_to_exec<R>(spawn: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FORKING_TO_EXEC.with(|f| f.set(false));
        }
    }
    FORKING_TO_EXEC.with(|f| f.set(true));
    let _reset = Reset;
    spawn()
}

/// `true` in the fork handlers of a fork made by [`forking_to_exec`] (the prepare and parent
/// handlers run on the forking thread).
pub(crate) fn is_forking_to_exec() -> bool {
    FORKING_TO_EXEC.with(Cell::get)
}

/// Drops, in the parent, its copy of a closure it has just forked a child to run.
///
/// `fork` duplicates every value the closure captured; the child owns them from then on and
/// drops (or keeps) them itself. The parent's copies must still be dropped (an `Arc`'s count,
/// a file descriptor, a channel handle's per-process count belong to this process), but
/// uniconc's effects on *shared* memory must not happen twice: a `Permit` moved into the
/// child is the child's to give back. While this runs, [`dropping_fork_leftovers`] is `true`
/// and those effects are skipped. (A user's own `Drop` still runs in both processes.)
pub(crate) fn drop_fork_leftovers<T>(leftover: T) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DROPPING_FORK_LEFTOVERS.with(|f| f.set(false));
        }
    }
    DROPPING_FORK_LEFTOVERS.with(|f| f.set(true));
    let _reset = Reset;
    drop(leftover);
}

/// `true` while this thread drops the parent's copy of what a forked child now owns.
pub(crate) fn dropping_fork_leftovers() -> bool {
    DROPPING_FORK_LEFTOVERS.with(Cell::get)
}

/// This process's pid, cached.
#[inline]
pub(crate) fn my_pid() -> u32 {
    // Relaxed: the value is written by this process only (at first use or by the atfork child
    // handler, which runs on the only thread of the new process before any other code).
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    install_fork_handlers();
    let p = raw_getpid();
    PID.store(p, Ordering::Relaxed);
    p
}

fn raw_getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    let p = unsafe { libc::getpid() };
    u32::try_from(p).unwrap_or(0)
}

/// In the child handler: the parent's pid (the cache still holds it; if it was never filled,
/// the parent is our parent process).
fn my_pid_cached_or_parent() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: getppid has no preconditions.
            u32::try_from(unsafe { libc::getppid() }).unwrap_or(0)
        }
        p => p,
    }
}

/// Installs the `pthread_atfork` handlers (once per process; inherited by children).
pub(crate) fn install_fork_handlers() {
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` with static lifetime; they follow
        // the rules above (the child handler is async-signal-safe).
        let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        assert_eq!(
            r,
            0,
            "pthread_atfork failed: {}",
            std::io::Error::from_raw_os_error(r)
        );
    });
}

/// The pid this process had before the fork that is completing (read in the child handler,
/// where `PID` still holds the parent's value).
pub(crate) fn parent_pid_before_fork() -> u32 {
    PARENT.load(Ordering::Relaxed)
}

static PARENT: AtomicU32 = AtomicU32::new(0);

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process (async-signal-safe).
pub(crate) fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// What a module of this crate does at `fork`, registered once with
/// [`register_fork_hooks`]; the `pthread_atfork` handlers run the hooks in registration order.
pub(crate) struct ForkHooks {
    /// Before the fork, in the forking thread.
    pub(crate) prepare: fn(),
    /// After the fork, in the parent.
    pub(crate) parent: fn(),
    /// After the fork, in the child: async-signal-safe (see the module doc).
    pub(crate) child: fn(),
    /// Before a fork of this crate ([`fork_with`](crate::os::fork_with)): `Err` with the
    /// reason if the child could not be accounted for.
    pub(crate) room_for_child: fn() -> Result<(), String>,
}

/// At most this many modules register hooks (the channel registry is the one today).
const MAX_HOOKS: usize = 4;

/// The registered hooks: `HOOKS[..HOOK_COUNT]`. Written only with `HOOKS_LOCK` held, which the
/// prepare handler holds until the parent or child handler, so the three handlers of one fork
/// see the same hooks.
static HOOKS: [AtomicPtr<ForkHooks>; MAX_HOOKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_HOOKS];
static HOOK_COUNT: AtomicUsize = AtomicUsize::new(0);
static HOOKS_LOCK: SpinLock<()> = SpinLock::new(());

/// Adds `hooks` to the ones the fork handlers run. Call it once per module, before the
/// module's state needs them, and not from inside a hook or with a lock a hook takes.
pub(crate) fn register_fork_hooks(hooks: &'static ForkHooks) {
    HOOKS_LOCK.raw_lock(std::thread::yield_now);
    // Relaxed: written and read with HOOKS_LOCK held, except by `room_for_child`, which
    // reads with Acquire (paired with the Release store of the count below).
    let n = HOOK_COUNT.load(Ordering::Relaxed);
    assert!(n < MAX_HOOKS, "more fork hooks than MAX_HOOKS");
    HOOKS[n].store(ptr::from_ref(hooks).cast_mut(), Ordering::Relaxed);
    // Release: a reader that sees the new count sees the pointer stored before it.
    HOOK_COUNT.store(n + 1, Ordering::Release);
    HOOKS_LOCK.raw_unlock();
}

/// The registered hooks, in registration order.
fn hooks() -> impl Iterator<Item = &'static ForkHooks> {
    // Acquire: pairs with the Release store in `register_fork_hooks`.
    let n = HOOK_COUNT.load(Ordering::Acquire);
    HOOKS[..n].iter().map(|h| {
        // SAFETY: every pointer below the count was stored from a `&'static ForkHooks`
        // before the count (Release/Acquire above).
        unsafe { &*h.load(Ordering::Relaxed) }
    })
}

/// Whether every registered module has room to account for one more child process; the
/// reason if not.
pub(crate) fn room_for_child() -> Result<(), String> {
    hooks().try_for_each(|h| (h.room_for_child)())
}

extern "C" fn prepare() {
    // Held until `parent` or `child`: no hook is registered while a fork is under way.
    HOOKS_LOCK.raw_lock(std::thread::yield_now);
    hooks().for_each(|h| (h.prepare)());
}

extern "C" fn parent() {
    hooks().for_each(|h| (h.parent)());
    HOOKS_LOCK.raw_unlock();
}

extern "C" fn child() {
    PARENT.store(my_pid_cached_or_parent(), Ordering::Relaxed);
    PID.store(raw_getpid(), Ordering::Relaxed);
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
    crate::waiter::fork_child();
    crate::claims::fork_child();
    hooks().for_each(|h| (h.child)());
    // SAFETY: the child handler, so exactly one thread exists (and no hook is registered
    // before this returns); `()` allocates nothing.
    unsafe { HOOKS_LOCK.reset_in_child(()) };
}

/// A process as recorded in shared memory: pid and start time (0 if unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

impl Identity {
    /// This process (async-signal-safe).
    pub(crate) fn me() -> Self {
        let pid = raw_getpid();
        let start = stat(pid).map_or(0, |s| s.start);
        Self { pid, start }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    state: u8,
    start: u64,
}

/// A path under `/proc` built in a stack buffer, always NUL-terminated (async-signal-safe:
/// no allocation). Bytes past its 63 are dropped, which no path built here reaches.
#[cfg_attr(any(not(target_os = "linux"), uniconc_fallback), allow(dead_code))]
pub(crate) struct ProcPath {
    buf: [u8; 64],
    len: usize,
}

#[cfg_attr(any(not(target_os = "linux"), uniconc_fallback), allow(dead_code))]
impl ProcPath {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // Keep the last byte for the terminating NUL.
            if self.len + 1 < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    pub(crate) fn push_decimal(&mut self, v: u32) {
        let mut digits = [0u8; 10];
        let mut d = 0;
        let mut v = v;
        loop {
            digits[d] = b'0' + (v % 10) as u8;
            d += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..d].reverse();
        self.push(&digits[..d]);
    }

    /// The NUL-terminated path.
    pub(crate) fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// Reads `/proc/<pid>/stat` with raw syscalls into a stack buffer (async-signal-safe).
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
fn stat(pid: u32) -> Option<Stat> {
    let mut path = ProcPath::new();
    path.push(b"/proc/");
    path.push_decimal(pid);
    path.push(b"/stat");
    // SAFETY: `path` is a NUL-terminated string (`ProcPath`) in a live stack buffer.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 1024];
    let mut len = 0usize;
    while len < buf.len() {
        // SAFETY: `fd` is open; the destination is the unfilled tail of `buf`.
        let r = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if r == 0 {
            break;
        }
        len += r as usize;
    }
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    parse_stat(&buf[..len])
}

/// Parses the state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields are counted after the
/// last `)`.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
fn parse_stat(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = &line[close + 1..];
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Field 3 was `state`; field 22 is 19 fields further.
    let start_field = fields.nth(18)?;
    let mut start = 0u64;
    for &b in start_field {
        if !b.is_ascii_digit() {
            break;
        }
        start = start.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(Stat { state, start })
}

#[cfg(any(not(target_os = "linux"), uniconc_fallback))]
fn stat(pid: u32) -> Option<Stat> {
    // No /proc: an exited child of ours (a zombie until it is reaped) is told apart with
    // `waitid(WNOWAIT)`, which leaves it waitable; any other process by existence only (its
    // zombie counts as alive until its own parent reaps it).
    let pid = libc::pid_t::try_from(pid).ok()?;
    if crate::os::has_exited(pid) {
        return Some(Stat {
            state: b'Z',
            start: 0,
        });
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists.then_some(Stat {
        state: b'S',
        start: 0,
    })
}

/// `true` if the process `id` still runs: it exists, is not a zombie, and (when both are
/// known) started at the recorded time.
pub(crate) fn is_alive(id: Identity) -> bool {
    if id.pid == 0 {
        return false;
    }
    match stat(id.pid) {
        None => false,
        Some(s) => {
            let dead_state = matches!(s.state, b'Z' | b'X' | b'x');
            let reused = id.start != 0 && s.start != 0 && s.start != id.start;
            !dead_state && !reused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", not(uniconc_fallback)))]
    fn parses_names_with_parens_and_spaces() {
        let line = b"123 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, b'R');
        assert_eq!(s.start, 987654);
    }

    #[test]
    fn me_is_alive_and_a_bogus_pid_is_not() {
        let me = Identity::me();
        assert_eq!(me.pid, my_pid());
        assert!(is_alive(me));
        assert!(
            !is_alive(Identity {
                pid: me.pid,
                start: me.start.wrapping_add(1).max(1)
            }) || me.start == 0
        );
        assert!(!is_alive(Identity { pid: 0, start: 0 }));
        // pid_max on Linux is at most 2^22.
        assert!(!is_alive(Identity {
            pid: (1 << 22) + 17,
            start: 0
        }));
    }
}
