//! # uniconc-process
//!
//! uniconc's process backend: state in shared memory (`MAP_SHARED`, mapped before `fork`),
//! shared with every process forked after it was created.
//!
//! ```
//! use uniconc_core::{Receiver as _, Sender as _};
//! let (tx, rx) = uniconc_process::channel::<u64>(64)?;
//! tx.send(7).unwrap();
//! assert_eq!(rx.recv().unwrap(), 7);
//! # Ok::<(), uniconc_core::Error>(())
//! ```
//!
//! ## Modules (one mechanism per file)
//!
//! - `platform`: the only platform switch: futex on Linux, a polling waiter elsewhere.
//! - `shm`: shared mappings and the `ShmSafe` layout rules.
//! - `procs`: cached pid, process identity (pid + start time), liveness, fork handlers.
//! - `codec`: the message encoding (bincode 2, chosen by measurement; see the README).
//! - `ring`: the lock-free MPMC ring of variable-size records (loom-checked).
//! - `channel`: [`Sender`]/[`Receiver`] over the ring, waiting, disconnection across processes.
//! - `waiter`: async waits that never park the executor's thread.
//! - `lock`, `semaphore`, `event`, `barrier`, `state`: [`Lock`], [`Semaphore`], [`Event`],
//!   [`Barrier`], [`Value`] and [`Array`].
//!
//! ## Fork and threads
//!
//! Handles are copied into a forked child; the `pthread_atfork` handlers this crate installs
//! keep channel end counts right (the child's copies count as its own handles). Forking from a
//! multi-threaded process is as safe as the forking code makes it: this crate's fork handlers
//! are async-signal-safe in the child, and none of its background threads (async waiters)
//! holds a lock across a blocking call. A lock guard held by the forking process at `fork` is
//! copied into the child but does not release the parent's lock there.
//!
//! A process killed while holding a [`Lock`] (or a [`Value`]/[`Array`] lock) is detected by
//! the next locker: `Err(LockError::OwnerDied(guard))`. A process killed while holding channel
//! handles counts as having dropped them.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(unix))]
compile_error!(
    "uniconc-process needs a Unix (fork and MAP_SHARED shared memory); \
     use uniconc's `thread` or `tokio` backend on this target"
);

cfg_if::cfg_if! {
    if #[cfg(uniconc_loom)] {
        // Loom builds model the ring's protocol only.
        mod shm;
        mod sync;
        mod ring;
    } else {
        mod barrier;
        mod channel;
        mod claims;
        mod codec;
        mod event;
        mod lock;
        mod platform;
        mod pool;
        mod procs;
        mod ring;
        mod semaphore;
        mod shm;
        mod spawn;
        mod state;
        mod sync;
        mod waiter;

        pub use barrier::{Barrier, barrier};
        pub use channel::{
            ChannelBuilder, MAX_PROCESSES, Receiver, Sender, UNBOUNDED_BUDGET, channel,
            forget_inherited_handles, unbounded,
        };
        pub use event::{Event, event};
        pub use lock::{Lock, LockGuard, lock};
        pub use pool::{Pool, TaskHandle, pool};
        pub use spawn::{JoinHandle, spawn, spawn_async};
        pub use semaphore::{MAX_PERMITS, Semaphore, semaphore};
        pub use state::{Array, ArrayGuard, Value, ValueGuard, array, value};
    }
}

/// The process backend's marker type: `type B = uniconc::Process;`.
///
/// Every unit is a forked process. Every primitive lives in `MAP_SHARED` memory mapped when
/// it is created, so it is shared with every process forked *after* that (create first,
/// then spawn). Messages, results and pool items cross as serde-encoded bytes, so they must
/// be [`Message`](uniconc_core::Message) types, here as through the free functions. A process
/// that dies holding a lock or channel handles is detected by its peers (see the crate docs).
///
/// ```
/// use uniconc_core::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// fn ping<B: Backend>() -> Result<u32, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u32>(1)?;
///     let h = B::spawn(move || tx.send(7).is_ok())?;
///     assert!(h.join()?);
///     Ok(rx.recv()?)
/// }
/// assert_eq!(ping::<uniconc_process::Process>()?, 7); // sent by a forked child
/// assert_eq!(<uniconc_process::Process as Backend>::NAME, "process");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Process;

#[cfg(not(uniconc_loom))]
impl uniconc_core::Backend for Process {
    const NAME: &'static str = "process";
    const CAN_KILL: bool = true;
    const CAN_CANCEL: bool = true;
    const TASK_TIMEOUT: bool = true;
    const ISOLATED: bool = true;
    const FORKS: bool = true;
    const ASYNC_TASKS: bool = false;
    const REMOTE: bool = false;

    uniconc_core::backend_items!();
}
