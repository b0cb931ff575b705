//! The runtime the backend runs on, and the one blocking wait every blocking call goes through.
//!
//! - `try_handle`: the runtime of the caller if it runs inside one, else a multi-thread runtime
//!   owned by this crate and started on first use.
//! - `block_on`: drives one future to completion (or to a deadline) on the calling thread,
//!   parking the thread between polls. Every blocking call of the backend (`send`, `recv`,
//!   `lock`, `join`, ...) is the same future its `_async` form returns, driven by this function:
//!   one core, two kinds of waiter (a task's waker or a parked thread).
//!
//! # Blocking inside a runtime
//!
//! A blocking call that must wait is run inside [`tokio::task::block_in_place`](https://docs.rs/tokio/1/tokio/task/fn.block_in_place.html): on a worker
//! thread of a multi-thread runtime the worker hands its other tasks to another thread first, so
//! the tasks that will wake us keep running (no silent deadlock). On a thread outside any
//! runtime, or a `spawn_blocking` thread, it simply blocks; so it does in a thread-local's
//! destructor, after tokio's own thread-locals may be gone. On a **current-thread** runtime
//! there is no other thread to hand the tasks to, and tokio panics with
//! "can call blocking only when running on the multi-threaded runtime": that is the documented
//! `# Panics` case of every blocking call. Use the `_async` form there.
//!
//! ```
//! use uniconc::Sender as _;
//! let (tx, rx) = uniconc::tokio::channel::<u8>(1)?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async {
//!     tx.send(1).unwrap(); // a blocking form that need not wait: fine everywhere
//!     assert_eq!(rx.recv_async().await, Ok(1)); // the async form: fine everywhere
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```
//! use std::panic::{AssertUnwindSafe, catch_unwind};
//! use uniconc::Receiver as _;
//! let (_tx, rx) = uniconc::tokio::channel::<u8>(1)?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! // Empty: `recv` must wait, which a current-thread runtime cannot do. It panics.
//! let panicked = catch_unwind(AssertUnwindSafe(|| rt.block_on(async { rx.recv() })));
//! let payload = panicked.unwrap_err();
//! let message = payload
//!     .downcast_ref::<String>()
//!     .map(String::as_str)
//!     .or_else(|| payload.downcast_ref::<&str>().copied())
//!     .unwrap_or_default();
//! assert!(message.contains("multi-threaded runtime"), "{message}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use tokio::runtime::{Handle, Runtime};

/// The runtime this crate starts when it is used outside of one.
static OWN_RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The caller's runtime if there is one, else the crate's own (started on first use).
pub(crate) fn try_handle() -> Result<Handle, uniconc_core::Error> {
    if let Ok(h) = Handle::try_current() {
        return Ok(h);
    }
    if let Some(rt) = OWN_RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("uniconc-tokio")
        .enable_all()
        .build()
        .map_err(|e| uniconc_core::Error::os("starting the uniconc tokio runtime", e))?;
    // Two threads racing here: the loser's runtime is dropped (not yet used, so nothing is
    // lost; dropping a runtime outside of async context is allowed).
    let _ = OWN_RUNTIME.set(rt);
    Ok(OWN_RUNTIME.get().expect("set just above").handle().clone())
}

/// A waker that unparks one thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// One waker per thread, made once: blocking calls allocate nothing to wait.
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
}

/// Drives `fut` on this thread until it completes (`Some(output)`) or `deadline` passes
/// (`None`; the future is left as it is, so the caller can take back what it holds, e.g. the
/// unsent value, and drop it: every future of this crate is cancel-safe).
///
/// Futures that are not `Unpin` are passed pinned: `block_on(&mut pin!(fut), deadline)`.
///
/// The first poll is made directly, so a call that need not wait costs no more than the
/// `try_` form. Only if it must wait, and only on a thread inside a runtime, does it enter
/// [`tokio::task::block_in_place`](https://docs.rs/tokio/1/tokio/task/fn.block_in_place.html).
///
/// # Panics
/// On a task of a current-thread runtime, when the future must wait (see the module docs).
pub(crate) fn block_on<F: Future + Unpin>(
    fut: &mut F,
    deadline: Option<Instant>,
) -> Option<F::Output> {
    let mut fut = Pin::new(fut);
    // During thread-local destruction (a blocking call in some other TLS value's `Drop`) the
    // cached waker is gone: make one for this call.
    let waker = THREAD_WAKER
        .try_with(Waker::clone)
        .unwrap_or_else(|_| Waker::from(Arc::new(ThreadWaker(std::thread::current()))));
    {
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // A `try_` form: it must not wait, so it must not need `block_in_place` either
            // (it works on a current-thread runtime too).
            return None;
        }
        let mut wait = || {
            loop {
                // A wake-up between the poll and the park leaves the park token set, so the
                // park returns at once: no wake-up is lost. Spurious returns just re-poll.
                match deadline {
                    None => std::thread::park(),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            // One last look, so a deadline in the past still takes what is
                            // ready.
                            return match fut.as_mut().poll(&mut cx) {
                                Poll::Ready(v) => Some(v),
                                Poll::Pending => None,
                            };
                        }
                        std::thread::park_timeout(d - now);
                    }
                }
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return Some(v);
                }
            }
        };
        // `block_in_place` reads tokio's thread-local context without `try_with`: during
        // thread-local destruction (a blocking call in some thread-local's `Drop`) that
        // context may be gone, and the read would panic inside a destructor, which aborts.
        // `Handle::try_current` reads it with `try_with` and fails both when it is gone and
        // when this thread is in no runtime. In both cases there is no runtime to hand tasks
        // off from (a thread inside a runtime always has a current handle), and
        // `block_in_place` would only call `wait` itself: call it directly.
        if Handle::try_current().is_ok() {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn block_on_ready_and_deadline() {
        assert_eq!(block_on(&mut std::pin::pin!(async { 7 }), None), Some(7));
        let start = Instant::now();
        let r = block_on(
            &mut std::future::pending::<()>(),
            Some(start + Duration::from_millis(20)),
        );
        assert_eq!(r, None);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn own_runtime_outside_a_runtime() {
        let h = try_handle().unwrap();
        let v = block_on(&mut h.spawn(async { 41 + 1 }), None)
            .unwrap()
            .unwrap();
        assert_eq!(v, 42);
    }
}
