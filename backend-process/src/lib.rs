//! # uniconc-process
//!
//! uniconc's process backend: state in shared memory (`MAP_SHARED`, mapped before `fork`),
//! shared with every process forked after it was created.
//!
//! ```
//! use uniconc::{Receiver as _, Sender as _};
//! let (tx, rx) = uniconc::process::channel::<u64>(64)?;
//! tx.send(7).unwrap();
//! assert_eq!(rx.recv().unwrap(), 7);
//! # Ok::<(), uniconc::Error>(())
//! ```
//!
//! ## Modules (one mechanism per file)
//!
//! - `platform`: the only platform switch: futex on Linux, a polling waiter elsewhere.
//! - `shm`: shared mappings and the `ShmSafe` layout rules.
//! - `named`: named objects: a primitive's region in a file opened by name (see below).
//! - `travel`: handles that travel: a serialized handle is opened, by a process that did not
//!   inherit it, through the serializer's memory file.
//! - `procs`: cached pid, process identity (pid + start time), liveness, fork handlers.
//! - `holder`: the byte lock a process holding channel handles keeps, which `exec` and death
//!   release.
//! - `codec`: the message encoding (bincode 2, chosen by measurement; see the README).
//! - `ring`: the lock-free MPMC ring of variable-size records (loom-checked).
//! - `channel`: [`Sender`]/[`Receiver`] over the ring, waiting, disconnection across processes.
//! - `wake`: the atomic steps of the channel's sleeper/notifier handshake (loom-checked).
//! - `start`: [`Start`] (fork or clean start), [`init`] and the clean-started worker.
//! - `waiter`: async waits that never park the executor's thread.
//! - `lock`, `semaphore`, `event`, `barrier`, `state`: [`Lock`], [`Semaphore`], [`Event`],
//!   [`Barrier`], [`Value`] and [`Array`].
//! - `collections`: [`Map`] and [`List`] in one shared reservation each: an allocator, an
//!   undo journal that makes every operation atomic even when its process is SIGKILLed.
//!
//! ## Fork and threads
//!
//! Handles are copied into a forked child; the `pthread_atfork` handlers this crate installs
//! keep channel end counts right (the child's copies count as its own handles, until it
//! `exec`s another program: on Linux the program holds none of them). Forking from a
//! multi-threaded process is as safe as the forking code makes it: this crate's fork handlers
//! are async-signal-safe in the child, and none of its background threads (async waiters)
//! holds a lock across a blocking call. A lock guard held by the forking process at `fork` is
//! copied into the child but does not release the parent's lock there.
//!
//! A process killed while holding a [`Lock`] (or a [`Value`]/[`Array`] lock) is detected by
//! the next locker: `Err(LockError::OwnerDied(guard))`. A process killed while holding channel
//! handles counts as having dropped them. A process killed in the middle of a [`Map`] or
//! [`List`] operation leaves the collection as it was before that operation.

//!
//! ## Named objects
//!
//! Every primitive can also be created under a name and opened by name
//! from any process of the same user, not only forked children: `B::named("jobs")` (see
//! [`Named`](uniconc_core::Named)). The object is the file `/dev/shm/uniconc.jobs`; it stays
//! until [`unlink`](uniconc_core::Named::unlink), whoever created it and whether its users
//! exited or were killed. An opener counts as a member of a channel like a forked child (a
//! SIGKILLed opener's handles are dropped by its peers), and a named channel's side is gone
//! only once it was opened, so either program may start first:
//!
//! ```
//! use uniconc::{Backend, Receiver as _, Sender as _};
//! type B = uniconc::Process;
//! let rx = B::named("crate-doc-jobs").receiver::<String>(Some(8))?; // e.g. a consumer program
//! let tx = B::named("crate-doc-jobs").existing().sender::<String>(Some(8))?; // a producer
//! tx.send("job 1".into())?;
//! drop(tx); // the only sender that came is gone...
//! assert_eq!(rx.recv()?, "job 1"); // ...what it sent is delivered
//! assert!(rx.recv().is_err()); // then `Disconnected`
//! assert!(B::named("crate-doc-jobs").unlink()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Opening checks the kind, element type, capacity or length and the file's layout, and
//! treats the file as untrusted: a truncated, foreign or corrupted file is
//! `ErrorKind::Incompatible`, never undefined behaviour. `examples/named_queue.rs` is a
//! producer and a consumer started as two programs.

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
        mod wake;
    } else {
        mod barrier;
        mod channel;
        mod claims;
        mod collections;
        use uniconc_core::codec;
        mod event;
        mod file;
        mod lock;
        mod fsfile;
        mod holder;
        mod named;
        mod os;
        mod platform;
        mod pool;
        mod procs;
        mod ring;
        mod semaphore;
        mod shm;
        mod spawn;
        mod spin;
        pub mod start;
        mod state;
        mod sync;
        mod travel;
        mod waiter;
        mod wake;

        pub use barrier::Barrier;
        pub use channel::{
            ChannelBuilder, MAX_PROCESSES, ProcSelector, Receiver, Sender, UNBOUNDED_BUDGET,
            channel, forget_inherited_handles, unbounded,
        };
        pub use event::Event;
        pub use file::FileRegion;
        pub use lock::{Lock, LockGuard};
        pub use pool::{Pool, TaskHandle};
        pub use spawn::{JoinHandle, spawn, spawn_async};
        pub use start::{Start, init, spawn_request, spawn_task, spawn_task_with};
        pub use semaphore::{MAX_PERMITS, Semaphore};
        pub use state::{Array, ArrayGuard, Value, ValueGuard};
        pub use collections::{List, Map};
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
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// fn ping<B: Backend>() -> Result<u32, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u32>(1)?;
///     let h = B::spawn(move || tx.send(7).is_ok())?;
///     assert!(h.join()?);
///     Ok(rx.recv()?)
/// }
/// assert_eq!(ping::<uniconc::process::Process>()?, 7); // sent by a forked child
/// assert_eq!(<uniconc::process::Process as Backend>::NAME, "process");
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

    /// One sleep on the wait words of every watched channel, across processes.
    type Selector = ProcSelector;
    uniconc_core::backend_items!();

    /// A clean start ([`Start::Clean`]): see [`spawn_task`].
    fn spawn_task<T: uniconc_core::Task>(
        arg: T::Arg,
    ) -> Result<JoinHandle<T::Output>, uniconc_core::Error> {
        spawn_task::<T>(arg)
    }

    /// A channel in a named file (see the crate docs, "Named objects"); the other named
    /// constructors below likewise.
    fn named_channel<T: uniconc_core::Message>(
        name: &uniconc_core::Name,
        capacity: Option<usize>,
        sender: bool,
        receiver: bool,
    ) -> Result<(Option<Sender<T>>, Option<Receiver<T>>), uniconc_core::Error> {
        channel::named_channel(name, capacity, sender, receiver)
    }

    fn named_lock(name: &uniconc_core::Name) -> Result<Lock, uniconc_core::Error> {
        Lock::named(name)
    }

    fn named_semaphore(
        name: &uniconc_core::Name,
        permits: usize,
    ) -> Result<Semaphore, uniconc_core::Error> {
        Semaphore::named(name, permits)
    }

    fn named_event(name: &uniconc_core::Name) -> Result<Event, uniconc_core::Error> {
        Event::named(name)
    }

    fn named_barrier(name: &uniconc_core::Name, n: usize) -> Result<Barrier, uniconc_core::Error> {
        Barrier::named(name, n)
    }

    fn named_value<T: uniconc_core::Plain>(
        name: &uniconc_core::Name,
        value: T,
    ) -> Result<Value<T>, uniconc_core::Error> {
        Value::named(name, value)
    }

    fn named_array<T: uniconc_core::Plain>(
        name: &uniconc_core::Name,
        len: usize,
    ) -> Result<Array<T>, uniconc_core::Error> {
        Array::named(name, len)
    }

    fn named_map<K, V>(name: &uniconc_core::Name) -> Result<Map<K, V>, uniconc_core::Error>
    where
        K: uniconc_core::Message + std::hash::Hash + Eq,
        V: uniconc_core::Message,
    {
        Map::named(name)
    }

    fn named_list<T: uniconc_core::Message>(
        name: &uniconc_core::Name,
    ) -> Result<List<T>, uniconc_core::Error> {
        List::named(name)
    }

    fn unlink_named(name: &str) -> Result<bool, uniconc_core::Error> {
        named::unlink(name)
    }
}

#[cfg(not(uniconc_loom))]
uniconc_core::backend_constructors! {
    /// A new, unlocked process-shared lock.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Lock as _, Value as _};
    /// let (lock, total) = (uniconc::process::lock()?, uniconc::process::value(0u64)?);
    /// let children = (0..2)
    ///     .map(|_| {
    ///         let (lock, total) = (lock.clone(), total.clone());
    ///         uniconc::process::spawn(move || {
    ///             for _ in 0..100 {
    ///                 let _g = lock.lock().unwrap(); // a read-modify-write under the lock
    ///                 total.store(total.load() + 1);
    ///             }
    ///         })
    ///     })
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// for c in children {
    ///     c.join()?;
    /// }
    /// assert_eq!(total.load(), 200);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if shared memory cannot be mapped.
    lock;

    /// A semaphore holding `permits` permits.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Semaphore as _};
    /// let sem = uniconc::process::semaphore(2)?;
    /// let held = sem.acquire();
    /// let child = uniconc::process::spawn({
    ///     let sem = sem.clone();
    ///     move || sem.try_acquire().is_ok() // one permit is left for the child
    /// })?;
    /// assert!(child.join()?);
    /// assert_eq!(sem.available(), 1); // the child's permit went back when it was dropped
    /// drop(held);
    /// assert!(uniconc::process::semaphore(uniconc::process::MAX_PERMITS + 1).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` above [`MAX_PERMITS`]; `Os` if shared memory cannot be mapped.
    semaphore;

    /// A new event, not set.
    ///
    /// ```
    /// use uniconc::{Event as _, JoinHandle as _};
    /// let ev = uniconc::process::event()?;
    /// let child = uniconc::process::spawn({
    ///     let ev = ev.clone();
    ///     move || ev.wait() // blocks in the child until the parent sets it
    /// })?;
    /// assert!(!ev.is_set());
    /// ev.set();
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if shared memory cannot be mapped.
    event;

    /// A barrier that releases its waiters when `n` of them have arrived.
    ///
    /// ```
    /// use uniconc::{Barrier as _, JoinHandle as _};
    /// let b = uniconc::process::barrier(2)?;
    /// let child = uniconc::process::spawn({
    ///     let b = b.clone();
    ///     move || b.wait()
    /// })?;
    /// let leader_here = b.wait(); // returns once the child arrived too
    /// assert!(leader_here != child.join()?); // exactly one of the two processes leads
    /// assert!(uniconc::process::barrier(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `n == 0` or `n >= 2^31`; `Os` if shared memory cannot be mapped.
    barrier;

    /// A new shared value holding `value`.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Value as _};
    /// let pid = uniconc::process::value(0u32)?;
    /// let child = uniconc::process::spawn({
    ///     let pid = pid.clone();
    ///     move || pid.store(std::process::id())
    /// })?;
    /// let child_pid = child.id();
    /// child.join()?;
    /// assert_eq!(pid.load(), child_pid); // stored by the child
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if shared memory cannot be mapped.
    value;

    /// A new shared array of `len` zeroed elements.
    ///
    /// ```
    /// use uniconc::{Array as _, JoinHandle as _};
    /// let squares = uniconc::process::array::<u32>(4)?;
    /// let child = uniconc::process::spawn({
    ///     let squares = squares.clone();
    ///     move || (0..4).all(|i| squares.set(i, (i * i) as u32).is_ok())
    /// })?;
    /// assert!(child.join()?);
    /// assert_eq!(squares.to_vec(), [0, 1, 4, 9]);
    /// assert!(uniconc::process::array::<u64>(usize::MAX).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if the size overflows; `Os` if shared memory cannot be mapped.
    array;

    /// A new, empty shared map (Python's `Manager().dict()`, without a server process): its
    /// entries live in shared memory that every process forked after this call sees.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Map as _};
    /// let d = uniconc::process::map::<String, String>()?;
    /// let child = uniconc::process::spawn({
    ///     let d = d.clone();
    ///     move || d.insert("1".into(), "one".into()).is_ok()
    /// })?;
    /// assert!(child.join()?);
    /// assert_eq!(d.get("1")?.as_deref(), Some("one")); // inserted by the child
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if shared memory cannot be mapped.
    map;

    /// A new, empty shared list (Python's `Manager().list()`, without a server process): its
    /// elements live in shared memory that every process forked after this call sees.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, List as _};
    /// let l = uniconc::process::list::<u64>()?;
    /// l.extend([1, 2, 3])?;
    /// let child = uniconc::process::spawn({
    ///     let l = l.clone();
    ///     move || l.reverse().is_ok()
    /// })?;
    /// assert!(child.join()?);
    /// assert_eq!(l.to_vec()?, [3, 2, 1]); // reversed by the child
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if shared memory cannot be mapped.
    list;

    /// A pool of `workers` worker processes with default settings: `Pool::new(workers)`.
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers or more than [`Pool::max_workers`] (nothing is forked then);
    /// `Os` if a worker could not be forked.
    ///
    /// ```
    /// use uniconc::{Pool as _, TaskHandle as _};
    ///
    /// let pool = uniconc::process::pool(2)?;
    /// let h = pool.submit(|s: String| s.len(), "four".to_string())?;
    /// assert_eq!(h.wait()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pool;
}
