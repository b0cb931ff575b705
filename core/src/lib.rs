//! # uniconc-core
//!
//! The contract every uniconc backend implements: the [`Backend`] trait, one trait per handle,
//! and the error types. No backend code lives here, only traits, errors and small helpers
//! shared by the backends.
//!
//! - [`backend`]: [`Backend`] and [`Message`].
//! - [`channel`]: [`Sender`], [`Receiver`] and their iterators.
//! - [`sync`]: [`Lock`], [`Semaphore`] with [`Permit`], [`Event`], [`Barrier`].
//! - [`state`]: [`Value`], [`Array`] and [`Plain`].
//! - [`local`]: the in-process `Value`/`Array` shared by the thread and tokio backends.
//! - [`unit`](mod@unit): [`JoinHandle`] and panic helpers.
//! - [`task`](mod@task): named tasks ([`Task`], [`task!`]), their registry and wire form.
//! - [`pool`]: [`Pool`], [`PoolBuilder`], [`PoolConfig`], [`TaskHandle`], [`Order`].
//! - [`error`]: every error type.
//! - [`time`]: deadline helpers.
//!
//! Programs use it through the facade crate `uniconc`, which re-exports all of it. Generic code
//! is written once against [`Backend`] and runs on every backend:
//!
//! ```
//! use uniconc::{Backend, Pool as _, Receiver as _, Sender as _, Value as _};
//!
//! fn work<B: Backend>() -> Result<(u64, Vec<u64>), Box<dyn std::error::Error>> {
//!     let (tx, rx) = B::unbounded::<u64>()?;
//!     let total = B::value(0u64)?;
//!     let pool = B::pool(2)?;
//!     let squares = pool.map(|x: u64| x * x, 1..=4u64)?;
//!     for s in &squares {
//!         tx.send(*s)?;
//!     }
//!     tx.close();
//!     for s in rx.iter() {
//!         total.update(|t| *t += s);
//!     }
//!     Ok((total.load(), squares))
//! }
//!
//! // The one line that picks processes, threads or tasks:
//! let (total, squares) = work::<uniconc::thread::Thread>()?;
//! assert_eq!(squares, [1, 4, 9, 16]);
//! assert_eq!(total, 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

pub mod backend;
pub mod channel;
pub mod codec;
pub mod collections;
pub mod error;
pub mod imap;
pub mod local;
mod macros;
pub mod named;
pub mod pool;
pub mod select;
pub mod state;
pub mod sync;
pub mod task;
pub mod time;
pub mod travel;
pub mod unit;
pub mod validate;

pub use backend::{Backend, Message};
pub use channel::{ByteMessage, IntoIter, Iter, Receiver, Sender, TryIter};
pub use collections::{List, Map};
pub use error::{
    Error, ErrorKind, JoinError, LockError, MessageError, PoolError, RecvError, RecvTimeoutError,
    Result, SendError, SendTimeoutError, TaskError, TryLockError, TryRecvError, TrySendError,
    WaitError,
};
pub use named::{Name, Named, OpenMode};
pub use pool::{Order, Pool, PoolBuilder, PoolConfig, Start, TaskHandle};
pub use state::{Array, Plain, Value};
pub use sync::{Barrier, Event, Lock, Permit, Semaphore};
pub use task::{Task, TaskRequest};
pub use unit::{JoinHandle, panic_message};

/// What the exported macros need from other crates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use serde;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn errors_are_send_sync_errors() {
        assert_error::<Error>();
        assert_error::<SendError<Vec<u8>>>();
        assert_error::<TrySendError<Vec<u8>>>();
        assert_error::<SendTimeoutError<Vec<u8>>>();
        assert_error::<RecvError>();
        assert_error::<TryRecvError>();
        assert_error::<RecvTimeoutError>();
        assert_error::<LockError<()>>();
        assert_error::<TryLockError<()>>();
        assert_error::<WaitError>();
        assert_error::<JoinError>();
        assert_error::<TaskError>();
        assert_error::<PoolError>();
        assert_error::<MessageError>();
    }

    struct NotDebug;

    #[test]
    fn send_errors_return_the_value_without_debug() {
        let e = TrySendError::Full(NotDebug);
        assert!(e.is_full());
        assert_eq!(format!("{e:?}"), "Full(..)");
        let _value: NotDebug = e.into_inner();
        let e = SendError::Invalid(5u8, MessageError::TooLarge { size: 10, limit: 4 });
        assert!(e.to_string().contains("10 bytes"));
        assert_eq!(e.into_inner(), 5);
        let e: SendTimeoutError<u8> = SendError::Disconnected(1).into();
        assert!(e.is_disconnected());
    }

    #[test]
    fn error_kinds_and_sources() {
        let e = Error::os("mapping", std::io::Error::from_raw_os_error(12));
        assert_eq!(e.kind(), ErrorKind::Os);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().starts_with("mapping: "));
        assert_eq!(
            Error::invalid_argument("cap").kind(),
            ErrorKind::InvalidArgument
        );
    }

    /// Counts its drops, so a test can see a conversion drop the unsent value.
    struct Counted(std::rc::Rc<std::cell::Cell<u32>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn kind_and_text(e: impl Into<Error> + std::fmt::Display) -> (ErrorKind, String) {
        let text = e.to_string();
        let e: Error = e.into();
        assert_eq!(e.to_string(), text, "the message is kept");
        (e.kind(), text)
    }

    #[test]
    fn every_operation_error_converts_keeping_its_kind() {
        use ErrorKind as K;
        let too_large = || MessageError::TooLarge { size: 9, limit: 4 };
        let cases = [
            (
                kind_and_text(SendError::Disconnected(1u8)).0,
                K::Disconnected,
            ),
            (
                kind_and_text(SendError::Invalid(1u8, too_large())).0,
                K::InvalidMessage,
            ),
            (kind_and_text(TrySendError::Full(1u8)).0, K::Full),
            (
                kind_and_text(TrySendError::Disconnected(1u8)).0,
                K::Disconnected,
            ),
            (kind_and_text(SendTimeoutError::Timeout(1u8)).0, K::Timeout),
            (kind_and_text(RecvError::Disconnected).0, K::Disconnected),
            (
                kind_and_text(RecvError::Invalid(too_large())).0,
                K::InvalidMessage,
            ),
            (kind_and_text(TryRecvError::Empty).0, K::Empty),
            (kind_and_text(RecvTimeoutError::Timeout).0, K::Timeout),
            (kind_and_text(LockError::Poisoned(())).0, K::Poisoned),
            (kind_and_text(LockError::OwnerDied(())).0, K::OwnerDied),
            (
                kind_and_text(TryLockError::<()>::WouldBlock).0,
                K::WouldBlock,
            ),
            (kind_and_text(TryLockError::<()>::Timeout).0, K::Timeout),
            (kind_and_text(WaitError::Timeout).0, K::Timeout),
            (
                kind_and_text(JoinError::Panicked("p".into())).0,
                K::Panicked,
            ),
            (kind_and_text(JoinError::Killed(9)).0, K::WorkerDied),
            (kind_and_text(JoinError::Cancelled).0, K::Cancelled),
            (kind_and_text(JoinError::AlreadyJoined).0, K::AlreadyTaken),
            (
                kind_and_text(TaskError::WorkerDied("w".into())).0,
                K::WorkerDied,
            ),
            (kind_and_text(TaskError::DeadlineExceeded).0, K::Timeout),
            (kind_and_text(TaskError::Failed("f".into())).0, K::Other),
            (kind_and_text(PoolError::Closed).0, K::Closed),
            (kind_and_text(too_large()).0, K::InvalidMessage),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn converted_errors_keep_their_source_and_original() {
        let e: Error = PoolError::Task {
            index: 3,
            error: TaskError::Panicked("boom".into()),
        }
        .into();
        assert_eq!(e.kind(), ErrorKind::Panicked);
        assert_eq!(e.to_string(), "task 3 failed: the task panicked: boom");
        let source = std::error::Error::source(&e).expect("the TaskError");
        assert_eq!(
            source.downcast_ref::<TaskError>(),
            Some(&TaskError::Panicked("boom".into()))
        );
        assert!(e.get_ref().unwrap().downcast_ref::<PoolError>().is_some());

        let os = Error::os("fork", std::io::Error::from_raw_os_error(11));
        let e: Error = PoolError::Spawn(os).into();
        assert_eq!(e.kind(), ErrorKind::Os);
        assert_eq!(e.io_error().and_then(|e| e.raw_os_error()), Some(11));
    }

    #[test]
    fn converting_a_send_error_drops_the_value() {
        let drops = std::rc::Rc::new(std::cell::Cell::new(0));
        let e = SendError::Disconnected(Counted(drops.clone()));
        assert_eq!(drops.get(), 0);
        let e: Error = e.into();
        assert_eq!(drops.get(), 1, "the value is dropped by the conversion");
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.get_ref().is_none());
    }

    #[test]
    fn question_mark_converts() {
        fn run(step: u8) -> Result<()> {
            match step {
                0 => Err(TrySendError::Full(String::from("x")))?,
                1 => Err(JoinError::Exited(3))?,
                _ => Err(TryLockError::Poisoned(()))?,
            }
        }
        assert_eq!(run(0).unwrap_err().kind(), ErrorKind::Full);
        assert_eq!(run(1).unwrap_err().kind(), ErrorKind::WorkerDied);
        assert_eq!(run(2).unwrap_err().kind(), ErrorKind::Poisoned);
    }
}
