//! Execution units: [`spawn`] (a blocking closure on tokio's blocking pool), [`spawn_async`]
//! (a task), and their [`JoinHandle`].
//!
//! Inside a runtime both run on that runtime; outside one, on this crate's own.
//!
//! ```
//! use uniconc::JoinHandle as _;
//! let rt = tokio::runtime::Runtime::new()?;
//! let sum = rt.block_on(async {
//!     let mut task = uniconc::tokio::spawn_async(async { 40 })?; // a task of `rt`
//!     let mut blocking = uniconc::tokio::spawn(|| 2)?; // on `rt`'s blocking pool
//!     Ok::<_, Box<dyn std::error::Error>>(task.join_async().await? + blocking.join_async().await?)
//! })?;
//! assert_eq!(sum, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::task::{AbortHandle, Id};
use uniconc_core::{Error, JoinError, panic_message};

use crate::runtime::{block_on, try_handle};

/// Handle to a spawned task; join it blocking, with a deadline, or `.await` it.
///
/// Dropping it detaches the task (it runs on). The join methods come from
/// [`uniconc::JoinHandle`](uniconc_core::JoinHandle); `id()` is tokio's task [`Id`](https://docs.rs/tokio/1/tokio/task/struct.Id.html). `kill()` aborts a
/// `spawn_async` task (it joins as `Cancelled`); a `spawn` closure can be cancelled only
/// before it starts.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{JoinError, JoinHandle as _};
/// let mut h = uniconc::tokio::spawn_async(std::future::pending::<()>())?;
/// assert_eq!(h.join_timeout(Duration::from_millis(1)), Err(JoinError::Timeout));
/// h.kill()?;
/// assert_eq!(h.join(), Err(JoinError::Cancelled));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinHandle<R> {
    /// `None` once the result was taken.
    inner: Option<tokio::task::JoinHandle<R>>,
    abort: AbortHandle,
    id: Id,
    /// For a `spawn` closure: set (`Release`) when the closure starts; `kill` reads it
    /// (`Acquire`) to tell whether its abort could still take effect.
    started: Option<Arc<AtomicBool>>,
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R> JoinHandle<R> {
    fn new(inner: tokio::task::JoinHandle<R>, started: Option<Arc<AtomicBool>>) -> Self {
        Self {
            abort: inner.abort_handle(),
            id: inner.id(),
            inner: Some(inner),
            started,
        }
    }
}

/// Maps tokio's join error onto ours.
pub(crate) fn join_error(e: tokio::task::JoinError) -> JoinError {
    if e.is_panic() {
        JoinError::Panicked(panic_message(&*e.into_panic()))
    } else if e.is_cancelled() {
        JoinError::Cancelled
    } else {
        JoinError::Failed(e.to_string())
    }
}

/// Runs the blocking closure `f` on the runtime's blocking pool (`spawn_blocking`): on the
/// caller's runtime if it runs inside one, else on this crate's own runtime.
///
/// ```
/// use uniconc::JoinHandle as _;
/// let h = uniconc::tokio::spawn(|| 6 * 7)?;
/// assert_eq!(h.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A closure cannot be stopped once it runs (tokio cannot abort `spawn_blocking` work):
/// [`kill`](uniconc_core::JoinHandle::kill) cancels it only if it has not started yet, and
/// otherwise returns `Unsupported`.
///
/// # Errors
/// The crate's own runtime could not be started.
pub fn spawn<F, R>(f: F) -> Result<JoinHandle<R>, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let h = try_handle()?.spawn_blocking(move || {
        flag.store(true, Ordering::Release);
        f()
    });
    Ok(JoinHandle::new(h, Some(started)))
}

/// Runs `fut` as a task: on the caller's runtime if it runs inside one, else on this crate's
/// own runtime.
///
/// ```
/// use uniconc::JoinHandle as _;
/// let h = uniconc::tokio::spawn_async(async { 1 + 1 })?;
/// assert_eq!(h.join()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The crate's own runtime could not be started.
///
/// # Cancel safety
/// Not a future: the unit starts at once and runs whether or not its handle is ever joined
/// (dropping the handle detaches it).
pub fn spawn_async<Fut>(fut: Fut) -> Result<JoinHandle<Fut::Output>, Error>
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    Ok(JoinHandle::new(try_handle()?.spawn(fut), None))
}

impl<R: Send + 'static> uniconc_core::JoinHandle<R> for JoinHandle<R> {
    type Id = Id;

    /// Waits for the task; works from any thread.
    ///
    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]); on a multi-thread runtime it uses `block_in_place`.
    fn join(mut self) -> Result<R, JoinError> {
        self.join_deadline(None)
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError> {
        let h = self.inner.as_mut().ok_or(JoinError::AlreadyJoined)?;
        match block_on(h, deadline) {
            None => Err(JoinError::Timeout),
            Some(r) => {
                self.inner = None;
                r.map_err(join_error)
            }
        }
    }

    /// # Cancel safety
    /// Dropping the future leaves the handle joinable.
    async fn join_async(&mut self) -> Result<R, JoinError> {
        let h = self.inner.as_mut().ok_or(JoinError::AlreadyJoined)?;
        let r = h.await;
        self.inner = None;
        r.map_err(join_error)
    }

    fn is_finished(&self) -> bool {
        self.inner.as_ref().is_none_or(|h| h.is_finished())
    }

    fn id(&self) -> Id {
        self.id
    }

    /// Aborts the task: joining then reports `Cancelled` (or its result if it had finished).
    ///
    /// # Errors
    /// `Unsupported` for a `spawn` closure that already runs: tokio cannot stop blocking
    /// work, so it runs to its end and `join` returns its result. (A closure that starts in
    /// the instant between the abort and that check is not caught: it also just runs on.)
    fn kill(&self) -> Result<(), Error> {
        self.abort.abort();
        match &self.started {
            Some(s) if s.load(Ordering::Acquire) && !self.abort.is_finished() => {
                Err(Error::unsupported(
                    "a running `spawn` closure cannot be stopped (tokio cannot abort blocking work)",
                ))
            }
            _ => Ok(()),
        }
    }
}
