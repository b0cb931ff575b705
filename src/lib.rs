//! # uniconc
//!
//! One API for concurrent programs — a [`Queue`](Backend::channel) (channel), locks and friends,
//! shared values, `spawn` and a `Pool` — over three execution units that you switch with one
//! line:
//!
//! | backend | unit | module | marker |
//! |---|---|---|---|
//! | process (feature `process`, Unix) | forked process, state in shared memory | `uniconc::process` | `uniconc::Process` |
//! | thread (feature `thread`, default) | OS thread | `uniconc::thread` | `uniconc::Thread` |
//! | tokio (feature `tokio`) | tokio task | `uniconc::tokio` | `uniconc::Tokio` |
//!
//! ```
//! use uniconc::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = uniconc::Thread; // or uniconc::Process, or uniconc::Tokio
//! let (tx, rx) = B::channel::<u64>(64)?;
//! let h = B::spawn(move || rx.iter().sum::<u64>())?;
//! for i in 1..=10 {
//!     tx.send(i)?;
//! }
//! drop(tx); // the last sender gone: the receiver drains, then its iterator ends
//! assert_eq!(h.join()?, 55);
//! # Ok(())
//! # }
//! ```
//!
//! Generic code is written once against [`Backend`] and runs on every backend.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(feature = "process", not(unix)))]
compile_error!(
    "uniconc's `process` backend needs a Unix (fork and MAP_SHARED memory); \
     enable only `thread` and/or `tokio` on this target"
);

pub use uniconc_core::{
    Array, Backend, Barrier, Error, ErrorKind, Event, JoinError, JoinHandle, Lock, LockError,
    Message, MessageError, Permit, Plain, Pool, PoolBuilder, PoolConfig, PoolError, Receiver,
    RecvError, RecvTimeoutError, Result, Semaphore, SendError, SendTimeoutError, Sender, TaskError,
    TaskHandle, TryLockError, TryRecvError, TrySendError, Value, WaitError,
};

/// The thread backend: OS threads sharing memory.
#[cfg(feature = "thread")]
pub use uniconc_thread as thread;
#[cfg(feature = "thread")]
pub use uniconc_thread::Thread;

/// The process backend: forked processes sharing memory.
#[cfg(all(feature = "process", unix))]
pub use uniconc_process as process;
#[cfg(all(feature = "process", unix))]
pub use uniconc_process::Process;

/// The tokio backend: tokio tasks.
#[cfg(feature = "tokio")]
pub use uniconc_async as tokio;
#[cfg(feature = "tokio")]
pub use uniconc_async::Tokio;

cfg_if::cfg_if! {
    if #[cfg(all(feature = "process", unix))] {
        /// The backend picked among the enabled ones: process, then tokio, then thread.
        pub type Default = Process;
    } else if #[cfg(feature = "tokio")] {
        /// The backend picked among the enabled ones: process, then tokio, then thread.
        pub type Default = Tokio;
    } else if #[cfg(feature = "thread")] {
        /// The backend picked among the enabled ones: process, then tokio, then thread.
        pub type Default = Thread;
    }
}

/// Everything generic code needs in scope: [`Backend`], the handle traits (imported for
/// their methods), [`Message`] and [`Plain`].
pub mod prelude {
    pub use uniconc_core::{
        Array as _, Backend, Barrier as _, Event as _, JoinHandle as _, Lock as _, Message, Plain,
        Pool as _, Receiver as _, Semaphore as _, Sender as _, TaskHandle as _, Value as _,
    };
}
