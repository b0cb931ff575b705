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
pub trait JoinHandle<R>: Send + 'static {
    /// Identifies the unit: a pid, a thread id or a task id.
    type Id: Copy + Eq + Hash + Debug + Send + Sync + 'static;

    /// Waits for the unit and returns its result.
    ///
    /// # Errors
    /// `Panicked(message)`, `Killed(signal)`, `Exited(code)`, `Cancelled`, `AlreadyJoined`,
    /// `Failed(_)`.
    fn join(self) -> Result<R, JoinError>
    where
        Self: Sized;

    /// Waits for the unit until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be joined again); otherwise as
    /// [`join`](JoinHandle::join).
    fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError>;

    /// Waits at most `timeout` for the unit.
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be joined again); otherwise as
    /// [`join`](JoinHandle::join).
    fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinError> {
        self.join_deadline(deadline_after(timeout))
    }

    /// Returns the result if the unit has finished, without waiting.
    ///
    /// # Errors
    /// `Timeout` if it has not finished; otherwise as [`join`](JoinHandle::join).
    fn try_join(&mut self) -> Result<R, JoinError> {
        self.join_deadline(Some(Instant::now()))
    }

    /// Waits for the unit without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the handle joinable.
    fn join_async(&mut self) -> impl Future<Output = Result<R, JoinError>> + Send + '_;

    /// `true` once the unit has finished (its result can be taken without waiting).
    fn is_finished(&self) -> bool;

    /// The unit's id.
    fn id(&self) -> Self::Id;

    /// Stops the unit: SIGKILL for a process, abort for a task. Joining it then reports
    /// `Killed(9)` / `Cancelled` (or its result, if it had already finished).
    ///
    /// # Errors
    /// `Unsupported` where a unit cannot be stopped from outside (an OS thread).
    fn kill(&self) -> Result<(), Error>;
}

/// The message of a caught panic payload (`&str` and `String` payloads; anything else is named
/// as such).
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
