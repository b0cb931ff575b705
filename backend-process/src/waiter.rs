//! Async waiting without parking the executor's thread, for any executor.
//!
//! A future that must wait for a shared-memory word to change hands a request (the word, the
//! value it saw, its waker) to a small per-process pool of *waiter threads*; one of them sleeps
//! on the futex (a bounded slice, so a cancelled request frees its thread soon) and then wakes
//! the task, which re-checks its condition. A thread is started when every waiter thread is
//! busy, and idle ones are reused, so the pool grows to the number of concurrently waiting
//! futures. The alternative (an eventfd registered with the reactor) would tie the futures to
//! one reactor; these work under tokio, async-std, `futures::executor` or a hand-rolled poll.
//!
//! Cancellation: dropping a [`WaitWord`] marks its request cancelled; the waiter thread, if a
//! wake reached it meant for a real waiter, passes one wake on to the word, so no wake-up is
//! swallowed by a future that no longer exists.
//!
//! Fork: the pool's state sits behind a spin lock that the atfork child handler resets (the
//! child has none of the parent's threads); no pool thread holds it across a blocking call.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::platform;
use crate::spin::SpinLock;

/// Longest single futex sleep of a blocked waiter (a channel's sender or receiver, a lock,
/// semaphore, event or barrier waiter, or a waiter thread on one request before it hands
/// control back to its task): how often it re-checks that its peers are alive.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Registration as a sleeper on a wait word's companion counter: incremented on creation
/// (with a SeqCst fence, the waiter half of the Dekker handshake with `notify`), decremented on
/// drop.
#[derive(Debug)]
pub(crate) struct SleepToken {
    counter: *const AtomicU32,
}

// SAFETY: the counter is an atomic in shared memory kept mapped by whoever holds the token
// (every holder also holds a keep-alive handle to the mapping, dropped after the token).
unsafe impl Send for SleepToken {}
// SAFETY: only atomic operations are made through the pointer.
unsafe impl Sync for SleepToken {}

impl SleepToken {
    /// Registers as a sleeper on `counter`.
    ///
    /// # Safety
    /// `counter` must stay valid until the token is dropped.
    pub(crate) unsafe fn new(counter: &AtomicU32) -> Self {
        // SeqCst + fence: the sleeper's registration is ordered before its re-check of the
        // condition; the notifier's condition change is ordered (by its own SeqCst fence)
        // before its read of this counter. One of the two sees the other.
        counter.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Self { counter }
    }
}

impl Drop for SleepToken {
    fn drop(&mut self) {
        // SAFETY: valid until the token is dropped (contract of `new`).
        unsafe { (*self.counter).fetch_sub(1, Ordering::SeqCst) };
    }
}

#[derive(Debug, Default)]
struct ReqShared {
    done: AtomicBool,
    cancelled: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// What a request waits for.
enum Target {
    /// `word` to move on from `expected`.
    One {
        word: *const AtomicU32,
        expected: u32,
    },
    /// Any word of the set to move on (a select's words, woken all at once by their
    /// notifiers: a cancelled request has no wake-up to pass on).
    Any(platform::WaitSet),
}

impl Target {
    /// `true` if the wait is already over (a word moved on).
    fn changed(&self) -> bool {
        match self {
            // SAFETY (both arms): the request's `_keep` keeps the words mapped.
            // Acquire: the task that sees the bump sees what was done before it.
            Self::One { word, expected } => unsafe { &**word }.load(Ordering::Acquire) != *expected,
            Self::Any(set) => set.changed(),
        }
    }
}

struct Req {
    target: Target,
    // Dropped before `keep` (declaration order), so the counter is still mapped.
    _token: Option<SleepToken>,
    shared: Arc<ReqShared>,
    _keep: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the target's words point into the mappings that `keep` keeps alive; only atomic
// operations and futex calls are made through them.
unsafe impl Send for Req {}

struct PoolState {
    queue: VecDeque<Req>,
    idle: usize,
}

struct Pool {
    state: SpinLock<PoolState>,
    seq: AtomicU32,
}

static POOL: Pool = Pool {
    state: SpinLock::new(PoolState {
        queue: VecDeque::new(),
        idle: 0,
    }),
    seq: AtomicU32::new(0),
};

impl Pool {
    /// Runs `f` on the state with the lock held; `f` does not block (queue operations only).
    fn with<R>(&self, f: impl FnOnce(&mut PoolState) -> R) -> R {
        self.state.with(std::hint::spin_loop, f)
    }
}

/// Atfork child handler: the child has no waiter threads; forget the parent's pool (its
/// requests leak in the child, which only means their mappings stay mapped there).
pub(crate) fn fork_child() {
    // SAFETY: in the child of fork there is exactly one thread, so nothing else accesses the
    // pool; `VecDeque::new` allocates nothing, so this is async-signal-safe.
    unsafe {
        POOL.state.reset_in_child(PoolState {
            queue: VecDeque::new(),
            idle: 0,
        })
    };
}

fn submit(req: Req) {
    let spawn = POOL.with(|s| {
        s.queue.push_back(req);
        s.queue.len() > s.idle
    });
    if spawn {
        let r = std::thread::Builder::new()
            .name("uniconc-waiter".into())
            .spawn(worker);
        if let Err(e) = r {
            // Serve the request from this thread rather than lose it: wake its task at once
            // (it re-checks and re-submits), so the wait degrades to polling, never a hang.
            if let Some(req) = POOL.with(|s| s.queue.pop_back()) {
                finish(req);
            }
            eprintln!("uniconc: could not start a waiter thread ({e}); polling instead");
        }
    } else {
        // Release: the queue push above is visible to the thread that sees the new value.
        POOL.seq.fetch_add(1, Ordering::Release);
        platform::wake(&POOL.seq, 1);
    }
}

fn finish(req: Req) {
    req.shared.done.store(true, Ordering::Release);
    let waker = req
        .shared
        .waker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if req.shared.cancelled.load(Ordering::Acquire)
        && let Target::One { word, .. } = req.target
    {
        // SAFETY: `req._keep` keeps the word mapped.
        platform::wake(unsafe { &*word }, 1);
    }
    if let Some(w) = waker {
        w.wake();
    }
    drop(req);
}

fn worker() {
    loop {
        let (req, seq) = POOL.with(|s| match s.queue.pop_front() {
            Some(r) => (Some(r), 0),
            None => {
                s.idle += 1;
                (None, POOL.seq.load(Ordering::Acquire))
            }
        });
        match req {
            Some(req) => {
                if !req.shared.cancelled.load(Ordering::Acquire) {
                    match &req.target {
                        // SAFETY: `req._keep` keeps the word mapped for the call.
                        Target::One { word, expected } => {
                            platform::wait(unsafe { &**word }, *expected, Some(SLICE));
                        }
                        Target::Any(set) => set.wait(SLICE),
                    }
                }
                finish(req);
            }
            None => {
                platform::wait(&POOL.seq, seq, Some(Duration::from_secs(10)));
                POOL.with(|s| s.idle -= 1);
            }
        }
    }
}

/// A future that completes once `word` no longer holds `expected`, or after a bounded slice
/// (the caller re-checks its condition either way and loops).
pub(crate) struct WaitWord {
    pending: Option<Req>,
    shared: Arc<ReqShared>,
}

impl WaitWord {
    /// Waits for `word != expected`, holding `token` (a sleeper registration) until then.
    ///
    /// # Safety
    /// `word` must live inside the memory kept alive by `keep`.
    pub(crate) unsafe fn new(
        word: &AtomicU32,
        expected: u32,
        token: Option<SleepToken>,
        keep: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        let shared = Arc::new(ReqShared::default());
        Self {
            pending: Some(Req {
                target: Target::One { word, expected },
                _token: token,
                shared: shared.clone(),
                _keep: keep,
            }),
            shared,
        }
    }

    /// Waits until any word of `set` moves on from the value it was pushed with: one waiter
    /// thread sleeps on all of them (a select over several channels).
    ///
    /// # Safety
    /// The words of `set` must live inside the memory kept alive by `keep`.
    pub(crate) unsafe fn any(set: platform::WaitSet, keep: Arc<dyn Any + Send + Sync>) -> Self {
        let shared = Arc::new(ReqShared::default());
        Self {
            pending: Some(Req {
                target: Target::Any(set),
                _token: None,
                shared: shared.clone(),
                _keep: keep,
            }),
            shared,
        }
    }
}

impl Future for WaitWord {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(req) = self.pending.take() {
            // A fast path; the futex call re-checks atomically.
            if req.target.changed() {
                return Poll::Ready(());
            }
            *req.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            submit(req);
            return Poll::Pending;
        }
        if self.shared.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut w = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        if self.shared.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for WaitWord {
    fn drop(&mut self) {
        // Release: pairs with the waiter thread's Acquire, so it passes a wake on.
        self.shared.cancelled.store(true, Ordering::Release);
    }
}

/// A future that is pending once (waking its task at once), then ready: lets an executor run
/// other tasks before a short re-check, without a thread or a timer.
#[derive(Debug)]
pub(crate) struct YieldNow(pub(crate) bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
