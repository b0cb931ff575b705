//! Execution units: [`spawn`] (a closure on a new OS thread), [`spawn_async`] (a future on a new
//! thread running its own tokio current-thread runtime), and [`JoinHandle`].
//!
//! A unit's result (or its panic message, caught at the unit boundary) goes into a
//! `Completion`, a one-shot slot that blocking, timed and async joiners wait on. The same
//! slot carries pool task results.
//!
//! ```
//! use uniconc::JoinHandle as _;
//! let mut plain = uniconc::thread::spawn(|| 1)?;
//! let with_runtime = uniconc::thread::spawn_async(async {
//!     tokio::task::yield_now().await; // a tokio runtime of its own runs this future
//!     2
//! })?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! assert_eq!(rt.block_on(plain.join_async()), Ok(1)); // joined from an async context
//! assert_eq!(with_runtime.join(), Ok(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Instant;

use uniconc_core::{Error, JoinError, panic_message};

use crate::waiter::Monitor;

/// Why a [`Completion`] could not hand over its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeError {
    /// Not completed yet.
    Timeout,
    /// Already taken.
    Taken,
}

#[derive(Debug)]
enum Slot<R> {
    Pending,
    Done(R),
    Taken,
}

impl<R> Slot<R> {
    fn take(&mut self) -> Option<Result<R, TakeError>> {
        match std::mem::replace(self, Slot::Taken) {
            Slot::Pending => {
                *self = Slot::Pending;
                None
            }
            Slot::Done(r) => Some(Ok(r)),
            Slot::Taken => Some(Err(TakeError::Taken)),
        }
    }
}

/// A one-shot result slot: completed once, taken once.
#[derive(Debug)]
pub(crate) struct Completion<R> {
    slot: Monitor<Slot<R>>,
}

impl<R> Completion<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slot: Monitor::new(Slot::Pending),
        })
    }

    /// Stores the result (the first one wins) and wakes every waiter.
    pub(crate) fn complete(&self, value: R) {
        {
            let mut s = self.slot.state();
            if matches!(*s, Slot::Pending) {
                *s = Slot::Done(value);
            }
        }
        self.slot.notify_all();
    }

    /// `true` once a result was stored (taken or not).
    pub(crate) fn is_complete(&self) -> bool {
        !matches!(*self.slot.state(), Slot::Pending)
    }

    /// Waits for the result until `deadline` and takes it.
    pub(crate) fn take_deadline(&self, deadline: Option<Instant>) -> Result<R, TakeError> {
        self.slot
            .wait_deadline(deadline, Slot::take)
            .unwrap_or(Err(TakeError::Timeout))
    }

    /// One poll of an async wait; `key` is the waiter's registration.
    pub(crate) fn poll_take(
        &self,
        key: &mut Option<usize>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<R, TakeError>> {
        self.slot.poll_wait(key, cx, Slot::take)
    }

    /// Drops an async waiter's registration.
    pub(crate) fn cancel_wait(&self, key: &mut Option<usize>) {
        self.slot.cancel_wait(key);
    }
}

/// Future that takes a [`Completion`]'s result; dropping it leaves the result in place.
pub(crate) struct TakeFuture<'a, R> {
    completion: &'a Completion<R>,
    key: Option<usize>,
}

impl<'a, R> TakeFuture<'a, R> {
    pub(crate) fn new(completion: &'a Completion<R>) -> Self {
        Self {
            completion,
            key: None,
        }
    }
}

impl<R> Future for TakeFuture<'_, R> {
    type Output = Result<R, TakeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.completion.poll_take(&mut this.key, cx)
    }
}

impl<R> Drop for TakeFuture<'_, R> {
    fn drop(&mut self) {
        self.completion.cancel_wait(&mut self.key);
    }
}

/// Handle to a spawned thread. Dropping it detaches the thread.
///
/// Join it with the [`uniconc::JoinHandle`](uniconc_core::JoinHandle) methods (blocking, timed, `try_join`,
/// `join_async`); its `id()` is the [`ThreadId`]. An OS thread cannot be stopped from
/// outside, so `kill()` returns an `Unsupported` error: signal the thread through a channel
/// or an [`Event`](crate::Event) instead.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{ErrorKind, Event as _, JoinError, JoinHandle as _};
/// let stop = uniconc::thread::event()?;
/// let s = stop.clone();
/// let mut h = uniconc::thread::spawn(move || { s.wait(); 6 * 7 })?;
/// assert_eq!(h.join_timeout(Duration::from_millis(1)), Err(JoinError::Timeout));
/// assert_eq!(h.kill().unwrap_err().kind(), ErrorKind::Unsupported);
/// stop.set();
/// assert_eq!(h.join(), Ok(42));
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug)]
pub struct JoinHandle<R> {
    thread: Option<std::thread::JoinHandle<()>>,
    id: ThreadId,
    result: Arc<Completion<Result<R, JoinError>>>,
}

impl<R> JoinHandle<R> {
    /// Reaps the OS thread once its result was taken (it has finished or is finishing).
    fn reap(&mut self) {
        if let Some(t) = self.thread.take() {
            // The body never unwinds (panics are caught inside it), so `join` cannot fail.
            let _ = t.join();
        }
    }

    fn finish(&mut self, r: Result<Result<R, JoinError>, TakeError>) -> Result<R, JoinError> {
        match r {
            Ok(r) => {
                self.reap();
                r
            }
            Err(TakeError::Timeout) => Err(JoinError::Timeout),
            Err(TakeError::Taken) => Err(JoinError::AlreadyJoined),
        }
    }
}

fn start<R, F>(body: F) -> Result<JoinHandle<R>, Error>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R, JoinError> + Send + 'static,
{
    let result = Completion::new();
    let slot = result.clone();
    let thread = std::thread::Builder::new()
        .name("uniconc-thread".into())
        .spawn(move || slot.complete(body()))
        .map_err(|e| Error::os("spawning a thread", e))?;
    Ok(JoinHandle {
        id: thread.thread().id(),
        thread: Some(thread),
        result,
    })
}

/// Runs `f` on a new OS thread. A panic in `f` is caught and reported by `join` as
/// `JoinError::Panicked(message)`.
///
/// ```
/// use uniconc::{JoinError, JoinHandle as _};
/// let data = vec![1, 2, 3]; // moved in: no serde needed on this backend
/// let h = uniconc::thread::spawn(move || data.iter().sum::<i32>())?;
/// assert_eq!(h.join(), Ok(6));
///
/// let h = uniconc::thread::spawn(|| -> u8 { panic!("boom") })?;
/// assert_eq!(h.join(), Err(JoinError::Panicked("boom".into())));
/// # Ok::<(), uniconc::Error>(())
/// ```
///
/// # Errors
/// The OS refused to create a thread.
pub fn spawn<F, R>(f: F) -> Result<JoinHandle<R>, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    start(move || {
        catch_unwind(AssertUnwindSafe(f)).map_err(|p| JoinError::Panicked(panic_message(&*p)))
    })
}

/// Runs `fut` on a new OS thread with its own tokio current-thread runtime (timers and IO
/// enabled), as one unit.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _};
/// let (tx, rx) = uniconc::thread::channel::<u32>(1)?;
/// let h = uniconc::thread::spawn_async(async move {
///     use uniconc::Sender as _;
///     tx.send_async(1).await.unwrap(); // awaits without blocking the runtime's thread
///     1 + 1
/// })?;
/// assert_eq!(rx.recv(), Ok(1));
/// assert_eq!(h.join(), Ok(2));
/// # Ok::<(), uniconc::Error>(())
/// ```
///
/// # Errors
/// The OS refused to create a thread. (If the runtime cannot be built inside the new thread,
/// `join` reports `JoinError::Failed`.)
///
/// # Cancel safety
/// Not a future: the unit starts at once and runs whether or not its handle is ever joined
/// (dropping the handle detaches it).
pub fn spawn_async<Fut>(fut: Fut) -> Result<JoinHandle<Fut::Output>, Error>
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    start(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| JoinError::Failed(format!("could not start a tokio runtime: {e}")))?;
        catch_unwind(AssertUnwindSafe(|| rt.block_on(fut)))
            .map_err(|p| JoinError::Panicked(panic_message(&*p)))
    })
}

impl<R: Send + 'static> uniconc_core::JoinHandle<R> for JoinHandle<R> {
    type Id = ThreadId;

    fn join(mut self) -> Result<R, JoinError> {
        let r = self.result.take_deadline(None);
        self.finish(r)
    }

    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError> {
        let r = self.result.take_deadline(deadline);
        self.finish(r)
    }

    // Written out (not `async fn`) to mirror the trait's explicit `Send` bound.
    #[allow(clippy::manual_async_fn)]
    fn join_async(&mut self) -> impl Future<Output = Result<R, JoinError>> + Send + '_ {
        async move {
            let r = TakeFuture::new(&self.result).await;
            self.finish(r)
        }
    }

    fn is_finished(&self) -> bool {
        self.result.is_complete()
    }

    fn id(&self) -> ThreadId {
        self.id
    }

    fn kill(&self) -> Result<(), Error> {
        Err(Error::unsupported(
            "an OS thread cannot be stopped from outside; signal it through a channel or an Event",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uniconc_core::JoinHandle as _;

    #[test]
    fn join_timeout_then_join() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut h = spawn(move || {
            rx.recv().unwrap();
            3
        })
        .unwrap();
        assert_eq!(
            h.join_timeout(Duration::from_millis(10)),
            Err(JoinError::Timeout)
        );
        assert!(!h.is_finished());
        tx.send(()).unwrap();
        assert_eq!(h.join_deadline(None), Ok(3));
        assert_eq!(h.try_join(), Err(JoinError::AlreadyJoined));
    }

    #[test]
    fn panics_are_reported_and_kill_is_unsupported() {
        let h = spawn(|| -> u8 { panic!("boom {}", 1) }).unwrap();
        assert_eq!(
            h.kill().unwrap_err().kind(),
            uniconc_core::ErrorKind::Unsupported
        );
        assert_ne!(h.id(), std::thread::current().id());
        assert_eq!(h.join(), Err(JoinError::Panicked("boom 1".into())));
    }

    #[test]
    fn spawn_async_has_timers() {
        let h = spawn_async(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            5
        })
        .unwrap();
        assert_eq!(h.join(), Ok(5));
    }
}
