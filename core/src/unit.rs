//! Execution units: the [`JoinHandle`] contract, and helpers for catching panics at the unit
//! boundary.

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::error::{Error, JoinError};
use crate::time::deadline_after;

/// Handle to a spawned unit (a process, a thread or a task) that produces an `R`.
///
/// Dropping the handle detaches the unit (it runs on; a process child is still reaped).
///
/// How a unit ended, per backend: its value (`Ok`), or [`JoinError::Panicked`] on every
/// backend; [`JoinError::Killed`] / [`JoinError::Exited`] for a process ended by a signal or by
/// `exit` before it reported; [`JoinError::Cancelled`] for a tokio task aborted by
/// [`kill`](JoinHandle::kill) (or by its runtime shutting down).
///
/// ```
/// use uniconc::{Backend, JoinError, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let handles = (1..=3u64)
///     .map(|n| B::spawn(move || n * 10))
///     .collect::<Result<Vec<_>, _>>()?;
/// let results = handles
///     .into_iter()
///     .map(|h| h.join())
///     .collect::<Result<Vec<u64>, JoinError>>()?;
/// assert_eq!(results, [10, 20, 30]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait JoinHandle<R>: Send + 'static {
    /// Identifies the unit: a pid, a thread id or a task id.
    type Id: Copy + Eq + Hash + Debug + Send + Sync + 'static;

    /// Waits for the unit and returns its result.
    ///
    /// ```
    /// use uniconc::{Backend, JoinError, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let h = B::spawn(|| "done".to_string())?;
    /// assert_eq!(h.join()?, "done");
    ///
    /// let h = B::spawn(|| -> String { panic!("no luck") })?;
    /// assert_eq!(h.join(), Err(JoinError::Panicked("no luck".into())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Panicked(message)` if the unit panicked (every backend); `Killed(signal)` or
    /// `Exited(code)` if a process ended by a signal or by `exit` before reporting (process
    /// backend); `Cancelled` if a task was aborted (tokio backend); `AlreadyJoined` if the
    /// result was taken by an earlier `join_deadline`/`try_join`; `Failed(_)` for anything
    /// else (a result that could not be decoded, a handle used outside the process that
    /// spawned the child, a runtime that could not be started inside the unit).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`join_async`](JoinHandle::join_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn join(self) -> Result<R, JoinError>
    where
        Self: Sized;

    /// Waits for the unit until `deadline` (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, JoinError, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(1)?;
    /// let mut h = B::spawn(move || rx.recv().unwrap_or(0))?;
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(h.join_deadline(Some(soon)), Err(JoinError::Timeout)); // still waiting
    /// tx.send(8)?;
    /// assert_eq!(h.join_deadline(None), Ok(8)); // the same handle, joined again
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be joined again); otherwise as
    /// [`join`](JoinHandle::join).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`join_async`](JoinHandle::join_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError>;

    /// Waits at most `timeout` for the unit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Event as _, JoinError, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let go = B::event()?;
    /// let gate = go.clone();
    /// let mut h = B::spawn(move || {
    ///     gate.wait();
    ///     1
    /// })?;
    /// assert_eq!(h.join_timeout(Duration::from_millis(5)), Err(JoinError::Timeout));
    /// go.set();
    /// assert_eq!(h.join_timeout(Duration::from_secs(60)), Ok(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be joined again); otherwise as
    /// [`join`](JoinHandle::join).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`join_async`](JoinHandle::join_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinError> {
        self.join_deadline(deadline_after(timeout))
    }

    /// Returns the result if the unit has finished, without waiting (on any runtime).
    ///
    /// ```
    /// use uniconc::{Backend, JoinError, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<()>(1)?;
    /// let mut h = B::spawn(move || rx.recv().is_ok())?;
    /// assert_eq!(h.try_join(), Err(JoinError::Timeout)); // it waits for our message
    /// tx.send(())?;
    /// assert_eq!(h.join_deadline(None), Ok(true));
    /// assert_eq!(h.try_join(), Err(JoinError::AlreadyJoined)); // the result is taken once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it has not finished; otherwise as [`join`](JoinHandle::join).
    fn try_join(&mut self) -> Result<R, JoinError> {
        self.join_deadline(Some(Instant::now()))
    }

    /// Waits for the unit without blocking the executor.
    ///
    /// A handle belongs to the process that spawned the unit (process backend: moved into a
    /// forked child it reports `Failed`), so await it on an executor of this process, as here
    /// on a thread running its own runtime.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let mut worker = B::spawn(|| 20)?;
    /// let waiter = uniconc::thread::spawn_async(async move { worker.join_async().await })?;
    /// assert_eq!(waiter.join()?, Ok(20));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`join`](JoinHandle::join).
    ///
    /// # Cancel safety
    /// Dropping the future leaves the handle joinable.
    fn join_async(&mut self) -> impl Future<Output = Result<R, JoinError>> + Send + '_;

    /// `true` once the unit has finished (its result can be taken without waiting).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<()>(1)?;
    /// let mut h = B::spawn(move || rx.recv().is_ok())?;
    /// assert!(!h.is_finished()); // it waits for our message
    /// tx.send(())?;
    /// while !h.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(h.try_join(), Ok(true)); // finished: no wait
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_finished(&self) -> bool;

    /// The unit's id: the child's pid (`u32`) on the process backend, the [`ThreadId`] on the
    /// thread backend, the tokio task id on the tokio backend.
    ///
    /// [`ThreadId`]: std::thread::ThreadId
    ///
    /// ```
    /// use uniconc::JoinHandle as _;
    ///
    /// // The thread module takes any `Send` result (`ThreadId` is not serde).
    /// let h = uniconc::thread::spawn(|| std::thread::current().id())?;
    /// let id = h.id();
    /// assert_eq!(h.join()?, id);
    /// assert_ne!(id, std::thread::current().id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn id(&self) -> Self::Id;

    /// Stops the unit: SIGKILL for a process, abort for a task. Joining it then reports
    /// `Killed(9)` / `Cancelled` (or its result, if it had already finished). On the process
    /// and tokio backends, killing a unit that has finished does nothing.
    ///
    /// Per backend: a process is always stopped; a tokio task started by `spawn_async` is
    /// aborted at its next `.await`; a tokio `spawn` closure is cancelled only if it has not
    /// started yet (tokio cannot stop blocking work); an OS thread is never stopped. Stop
    /// those through a channel or an [`Event`](crate::Event) instead. Generic code asks
    /// [`Backend::CAN_KILL`](crate::Backend::CAN_KILL) (any unit can be stopped) and
    /// [`Backend::CAN_CANCEL`](crate::Backend::CAN_CANCEL) (a `spawn_async` unit can).
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let h = B::spawn(|| 1)?;
    /// let refused = h.kill().unwrap_err(); // an OS thread cannot be stopped from outside
    /// assert_eq!(refused.kind(), ErrorKind::Unsupported);
    /// assert_eq!(h.join()?, 1); // it ran to its end
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Unsupported` where the unit cannot be stopped from outside: always on the thread
    /// backend, and on the tokio backend for a `spawn` closure already running (it runs to its
    /// end and `join` returns its result); `Os` if `kill(2)` failed (process backend).
    fn kill(&self) -> Result<(), Error>;
}

/// The message of a caught panic payload (`&str` and `String` payloads; anything else is named
/// as such). The backends use it to fill [`JoinError::Panicked`] and
/// [`TaskError::Panicked`](crate::TaskError::Panicked).
///
/// ```
/// use uniconc_core::panic_message;
///
/// let payload = std::panic::catch_unwind(|| panic!("bad input {}", 7)).unwrap_err();
/// assert_eq!(panic_message(&*payload), "bad input 7");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_of_every_payload() {
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(&*p), "static");
        let p = std::panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*p), "formatted 7");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(panic_message(&*p), "a panic with a non-string payload");
    }
}
