//! # uniconc-async: uniconc's tokio backend
//!
//! uniconc's API (channels, `Lock`, `Semaphore`, `Event`, `Barrier`, `Value`, `Array`,
//! `spawn`, `Pool`) over tokio tasks. Exposed by the facade as `uniconc::tokio`, marker
//! [`Tokio`].
//!
//! ```
//! use uniconc::{JoinHandle as _, Sender as _};
//!
//! // Sync producer (this thread, outside any runtime), async consumer (a task on the
//! // lazily started runtime).
//! let (tx, rx) = uniconc::tokio::channel::<u64>(16)?;
//! let consumer = uniconc::tokio::spawn_async(async move {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv_async().await {
//!         sum += v;
//!     }
//!     sum
//! })?;
//! for i in 1..=10 {
//!     tx.send(i)?;
//! }
//! drop(tx); // the last sender gone: the consumer drains, then sees `Disconnected`
//! assert_eq!(consumer.join()?, 55);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Runtime
//!
//! Everything works inside a runtime the caller already runs (`Handle::try_current()`) and
//! outside one: then `spawn`, `spawn_async` and `Pool` use a multi-thread runtime owned by this
//! crate, started on first use ([`runtime`]).
//!
//! ## Blocking and async forms
//!
//! Every blocking call (`send`, `recv`, `lock`, `acquire`, `wait`, `join`, ...) drives the
//! very future its `_async` form returns, on the calling thread. It works from any thread
//! outside a runtime and from `spawn` closures. On a multi-thread runtime's worker it runs
//! inside `tokio::task::block_in_place`, so the worker's other tasks move to another thread
//! and nothing deadlocks. **On a current-thread runtime a blocking call that has to wait
//! panics** (tokio's "can call blocking only when running on the multi-threaded runtime"):
//! use the `_async` forms there. The `try_` forms never wait and work everywhere.
//!
//! Every `_async` future is `Send` and cancel-safe: dropping it loses no message and leaks no
//! permit or slot.
//!
//! ## Modules
//!
//! - [`channel`](mod@channel): the MPMC channel (own implementation; see `README.md` for why),
//!   selectable with [`TokioParker`] (blocking selects follow the rule above).
//! - [`lock`](mod@lock), [`semaphore`](mod@semaphore), [`event`](mod@event), [`barrier`](mod@barrier): synchronisation.
//! - [`Value`] and [`Array`]: in-process (core's `local` module, shared with the thread backend).
//! - [`spawn`](mod@spawn): [`spawn`](fn@spawn), [`spawn_async`], [`JoinHandle`].
//! - [`pool`](mod@pool): [`Pool`], a concurrency-limited set of tasks.
//! - [`runtime`]: the runtime used and the blocking-wait driver.
//! - `primitive` (private): the channel's mutex, from `std`, or from loom for the model
//!   checks (`cfg(uniconc_loom)`).

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_op_in_unsafe_fn)]

use uniconc_core::Backend;

pub mod barrier;
pub mod channel;
pub mod event;
pub mod lock;
pub mod pool;
mod primitive;
pub mod runtime;
pub mod semaphore;
pub mod spawn;

pub use barrier::Barrier;
pub use channel::{Receiver, RecvFuture, SendFuture, Sender, TokioParker, channel, unbounded};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use pool::{Pool, TaskHandle};
pub use semaphore::Semaphore;
pub use spawn::{JoinHandle, spawn, spawn_async};
pub use uniconc_core::local::{Array, ArrayGuard, List, Map, Value};

/// The tokio backend's selector type: `type B = uniconc::Tokio;`.
///
/// Units are tokio tasks: `spawn_async` futures run as tasks, `spawn` closures on the
/// blocking pool. Inside a runtime, the caller's runtime is used; outside one, a multi-thread
/// runtime owned by this crate is started on first use. Blocking calls work from any thread
/// outside a runtime and on a multi-thread runtime (through `block_in_place`); on a
/// current-thread runtime a blocking call that must wait panics, so use the `_async` forms
/// there (see [`runtime`]).
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// fn ping<B: Backend>() -> Result<u32, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u32>(1)?;
///     let h = B::spawn_async(async move { tx.send_async(7).await.is_ok() })?;
///     assert!(h.join()?);
///     Ok(rx.recv()?)
/// }
/// assert_eq!(ping::<uniconc::tokio::Tokio>()?, 7); // outside a runtime: the crate's own
/// assert_eq!(<uniconc::tokio::Tokio as Backend>::NAME, "tokio");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tokio;

impl Backend for Tokio {
    const NAME: &'static str = "tokio";
    const CAN_KILL: bool = false;
    const CAN_CANCEL: bool = true;
    const TASK_TIMEOUT: bool = true;
    const ISOLATED: bool = false;
    const FORKS: bool = false;
    const ASYNC_TASKS: bool = true;
    const REMOTE: bool = false;

    /// A task selects through the channels' waker sets; a blocking select parks the thread,
    /// following the backend's `block_in_place` rule.
    type Selector = TokioParker;
    uniconc_core::backend_items!();
    uniconc_core::named_registry_items!();
}

impl Tokio {
    /// This process's names (see [`Named`](uniconc_core::Named)).
    fn names() -> &'static uniconc_core::named::Registry {
        static NAMES: uniconc_core::named::Registry = uniconc_core::named::Registry::new();
        &NAMES
    }
}

uniconc_core::backend_constructors! {
    /// A new lock, not held.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Lock as _};
    /// let lock = uniconc::tokio::lock()?;
    /// let guard = lock.lock().unwrap(); // the blocking form, outside a runtime
    /// let l = lock.clone();
    /// let task = uniconc::tokio::spawn_async(async move {
    ///     let _g = l.lock_async().await.unwrap(); // waits without blocking its worker thread
    ///     "got it"
    /// })?;
    /// drop(guard);
    /// assert_eq!(task.join()?, "got it");
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails; the `Result` keeps the signature the same on every backend.
    lock;

    /// A semaphore holding `permits` permits.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Semaphore as _};
    /// let sem = uniconc::tokio::semaphore(1)?;
    /// let held = sem.acquire();
    /// let s = sem.clone();
    /// let task = uniconc::tokio::spawn_async(async move {
    ///     let _permit = s.acquire_async().await; // waits for the permit held above
    ///     s.available()
    /// })?;
    /// drop(held);
    /// assert_eq!(task.join()?, 0);
    /// assert_eq!(sem.available(), 1); // the task's permit went back
    /// assert!(uniconc::tokio::semaphore(usize::MAX).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `permits` exceeds tokio's limit (`usize::MAX >> 3`).
    semaphore;

    /// A new event, not set.
    ///
    /// ```
    /// use uniconc::{Event as _, JoinHandle as _};
    /// let ev = uniconc::tokio::event()?;
    /// let e = ev.clone();
    /// let task = uniconc::tokio::spawn_async(async move {
    ///     e.wait_async().await;
    ///     e.is_set()
    /// })?;
    /// ev.set();
    /// assert!(task.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails; the `Result` keeps the signature the same on every backend.
    event;

    /// A barrier for `n` units.
    ///
    /// ```
    /// use uniconc::{Barrier as _, JoinHandle as _};
    /// let b = uniconc::tokio::barrier(3)?;
    /// let mut tasks = Vec::new();
    /// for _ in 0..2 {
    ///     let b = b.clone();
    ///     tasks.push(uniconc::tokio::spawn_async(async move { b.wait_async().await })?);
    /// }
    /// let mut leaders = usize::from(b.wait()); // this thread is the third party
    /// for t in tasks {
    ///     leaders += usize::from(t.join()?);
    /// }
    /// assert_eq!(leaders, 1);
    /// assert!(uniconc::tokio::barrier(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `n == 0` is `InvalidArgument`.
    barrier;

    /// A shared value holding `value`.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Value as _};
    /// let hits = uniconc::tokio::value(0u32)?;
    /// let mut tasks = Vec::new();
    /// for _ in 0..4 {
    ///     let h = hits.clone();
    ///     tasks.push(uniconc::tokio::spawn_async(async move { h.update(|n| *n += 1) })?);
    /// }
    /// for t in tasks {
    ///     t.join()?;
    /// }
    /// assert_eq!(hits.load(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails; the `Result` keeps the signature the same on every backend.
    value;

    /// A shared array of `len` zeroed elements.
    ///
    /// ```
    /// use uniconc::{Array as _, JoinHandle as _};
    /// let arr = uniconc::tokio::array::<f64>(3)?;
    /// let a = arr.clone();
    /// let h = uniconc::tokio::spawn(move || (0..3).try_for_each(|i| a.set(i, i as f64 / 2.0)))?;
    /// h.join()??;
    /// assert_eq!(arr.to_vec(), [0.0, 0.5, 1.0]);
    /// assert_eq!(arr.get(3), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if it cannot be allocated.
    array;

    /// A new, empty shared map (Python's `Manager().dict()`), in this process's memory.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Map as _};
    /// let d = uniconc::tokio::map::<String, u64>()?;
    /// let d2 = d.clone(); // another handle to the same map
    /// uniconc::tokio::spawn(move || d2.insert("a".into(), 1).unwrap())?.join()?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    map;

    /// A new, empty shared list (Python's `Manager().list()`), in this process's memory.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, List as _};
    /// let l = uniconc::tokio::list::<u64>()?;
    /// let l2 = l.clone(); // another handle to the same list
    /// uniconc::tokio::spawn(move || l2.extend([1, 2, 3]).unwrap())?.join()?;
    /// assert_eq!(l.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    list;

    /// A pool running at most `workers` jobs at once.
    ///
    /// ```
    /// use uniconc::{Pool as _, TaskHandle as _};
    /// let pool = uniconc::tokio::pool(2)?;
    /// assert_eq!(pool.map(|x: u32| x + 1, 0..3)?, [1, 2, 3]); // sync closures: blocking pool
    /// let task = pool.submit_async(|x: u32| async move { x * 2 }, 21)?; // async closures: tasks
    /// assert_eq!(task.wait(), Ok(42));
    /// assert!(uniconc::tokio::pool(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers; the crate's own runtime could not be started.
    pool;
}
