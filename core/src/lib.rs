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
//! - [`pool`]: [`Pool`], [`PoolBuilder`], [`PoolConfig`], [`TaskHandle`].
//! - [`error`]: every error type.
//! - [`time`]: deadline helpers.
//!
//! Programs use it through the facade crate `uniconc`, which re-exports all of it. Generic code
//! is written once against [`Backend`] and runs on every backend:
//!
//! ```
//! use uniconc_core::{Backend, Pool as _, Receiver as _, Sender as _, Value as _};
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
//! let (total, squares) = work::<uniconc_thread::Thread>()?;
//! assert_eq!(squares, [1, 4, 9, 16]);
//! assert_eq!(total, 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

pub mod backend;
pub mod channel;
pub mod error;
pub mod local;
pub mod pool;
pub mod state;
pub mod sync;
pub mod time;
pub mod unit;

pub use backend::{Backend, Message};
pub use channel::{Iter, Receiver, Sender, TryIter};
pub use error::{
    Error, ErrorKind, JoinError, LockError, MessageError, PoolError, RecvError, RecvTimeoutError,
    Result, SendError, SendTimeoutError, TaskError, TryLockError, TryRecvError, TrySendError,
    WaitError,
};
pub use pool::{Pool, PoolBuilder, PoolConfig, TaskHandle};
pub use state::{Array, Plain, Value};
pub use sync::{Barrier, Event, Lock, Permit, Semaphore};
pub use unit::{JoinHandle, panic_message};

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
}
