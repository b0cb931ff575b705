//! The [`Backend`] trait: one zero-sized selector type per execution unit, naming its handle
//! types and constructors, so `fn run<B: Backend>()` compiles once and runs on all of them.

use std::future::Future;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{Receiver, Sender};
use crate::collections::{List, Map};
use crate::error::Error;
use crate::named::{self, Name, Named};
use crate::pool::Pool;
use crate::select::{SelectRecv, SelectSend, Selector};
use crate::state::{Array, Plain, Value};
use crate::sync::{Barrier, Event, Lock, Semaphore};
use crate::task::Task;
use crate::unit::JoinHandle;

/// What generic code can send through any backend's channel: serializable (the process
/// backend copies it through shared memory) and sendable. Blanket-implemented.
///
/// A concrete backend may ask for less: the thread and tokio backends take any
/// `T: Send + 'static` through their own modules.
///
/// Messages are owned: `String`, not `&str`. Your own types qualify by deriving serde's traits:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use uniconc::{Backend, Message, Receiver as _, Sender as _};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Job {
///     id: u32,
///     name: String,
/// }
///
/// fn round_trip<B: Backend, T: Message>(value: T) -> Result<T, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<T>(1)?;
///     tx.send(value)?;
///     Ok(rx.recv()?)
/// }
///
/// let job = Job { id: 7, name: "resize".into() };
/// let back = round_trip::<uniconc::thread::Thread, _>(job)?;
/// assert_eq!(back, Job { id: 7, name: "resize".into() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// An execution unit: processes, threads or tokio tasks.
///
/// Each backend is a zero-sized marker type implementing this trait (`uniconc::Process`,
/// `uniconc::Thread`, `uniconc::Tokio`). Code written against `B: Backend` compiles once and
/// runs on all three; switching is one line:
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// /// Sums `1..=n` on a second unit of `B`.
/// fn sum_on<B: Backend>(n: u64) -> Result<u64, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u64>(16)?;
///     let h = B::spawn(move || rx.iter().sum::<u64>())?;
///     for i in 1..=n {
///         tx.send(i)?;
///     }
///     drop(tx); // the last sender gone: the unit's iterator ends
///     Ok(h.join()?)
/// }
///
/// type B = uniconc::thread::Thread; // or uniconc::process::Process, uniconc::tokio::Tokio
/// assert_eq!(B::NAME, "thread");
/// assert_eq!(sum_on::<B>(10)?, 55);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Capabilities
///
/// Every behaviour of the contract is the same on every backend; what truly differs is
/// declared by the constants below, so generic code asks `B::CAN_KILL`, never `B::NAME`:
///
/// | constant | process | thread | tokio | redis |
/// |---|---|---|---|---|
/// | [`CAN_KILL`](Backend::CAN_KILL): `kill()` stops any unit, blocking code included | yes | no | no | yes |
/// | [`CAN_CANCEL`](Backend::CAN_CANCEL): `kill()` stops a `spawn_async` unit | yes | no | yes | yes |
/// | [`TASK_TIMEOUT`](Backend::TASK_TIMEOUT): a pool gives up on a running task | yes | no | yes | yes |
/// | [`ISOLATED`](Backend::ISOLATED): a crash stays in its unit | yes | no | no | yes |
/// | [`FORKS`](Backend::FORKS): units are forked from the caller | yes | no | no | yes |
/// | [`ASYNC_TASKS`](Backend::ASYNC_TASKS): `spawn_async` units are tasks on a shared runtime | no | no | yes | no |
/// | [`REMOTE`](Backend::REMOTE): units may run on another machine | no | no | no | yes |
/// | [`POOL_CLOSURES`](Backend::POOL_CLOSURES): a pool runs closures, not only named tasks | yes | yes | yes | no |
/// | [`NAMED`](Backend::NAMED): primitives can be created and opened by name ([`named`](Backend::named)) | yes | yes | yes | yes |
/// | [`TRAVEL`](Backend::TRAVEL): handles are `Message`s, so they travel through channels, maps and task results | yes | yes | yes | yes |
///
/// ```
/// use uniconc::{Backend, ErrorKind, JoinError, JoinHandle as _};
///
/// /// Stops a unit that never ends, where the backend can.
/// fn stop_a_stuck_unit<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let h = B::spawn_async(std::future::pending::<()>())?;
///     if B::CAN_CANCEL {
///         h.kill()?;
///         assert!(matches!(h.join(), Err(JoinError::Killed(_) | JoinError::Cancelled)));
///     } else {
///         assert_eq!(h.kill().unwrap_err().kind(), ErrorKind::Unsupported);
///         // Here the unit must be told to stop (a channel, an Event); this one never
///         // would: leave it.
///     }
///     Ok(())
/// }
///
/// stop_a_stuck_unit::<uniconc::thread::Thread>()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Backend: Copy + Send + Sync + 'static {
    /// Short lower-case name: `"process"`, `"thread"`, `"tokio"` or `"redis"`. For messages and logs;
    /// generic code asks the capability constants instead (see
    /// [Capabilities](Backend#capabilities)).
    const NAME: &'static str;

    /// `true` if [`JoinHandle::kill`] stops *any* running unit, whatever it is doing — a
    /// `spawn` closure in the middle of blocking code or a CPU loop included — and `join`
    /// then reports it (`JoinError::Killed`).
    ///
    /// Process: `true` (SIGKILL; the child runs no destructor). Thread: `false` (an OS thread
    /// cannot be stopped from outside; `kill()` returns `Unsupported`). Tokio: `false` — a
    /// `spawn` closure runs on tokio's blocking pool, which cannot abort it once it runs
    /// (`kill()` returns `Unsupported` then); see [`CAN_CANCEL`](Backend::CAN_CANCEL) for
    /// `spawn_async` units, which tokio does stop.
    const CAN_KILL: bool;

    /// `true` if [`JoinHandle::kill`] stops a unit started with
    /// [`spawn_async`](Backend::spawn_async), and `join` then reports it
    /// (`JoinError::Cancelled` for a task, `JoinError::Killed` for a process).
    ///
    /// Process: `true` (the process is killed, wherever it is). Tokio: `true` (the task is
    /// aborted: its future is dropped at its next `.await`; a future that blocks without
    /// awaiting is not stopped until it awaits). Thread: `false` (`Unsupported`). Implied by
    /// [`CAN_KILL`](Backend::CAN_KILL).
    const CAN_CANCEL: bool;

    /// `true` if a pool can give up on a task that is running: the pool setting
    /// `task_timeout` (and the process pool's `submit_with_timeout`) is accepted, a task past
    /// its deadline reports `TaskError::DeadlineExceeded`, and `Pool::terminate` reports a
    /// running task `TaskError::Cancelled`.
    ///
    /// Process: `true` (the worker running the task is killed and replaced). Tokio: `true`
    /// (an async job is dropped; a blocking closure runs on in the background, its result
    /// discarded, while its worker permit is given back). Thread: `false` (`task_timeout` is
    /// refused with `Unsupported`; `terminate` lets a running task finish and deliver its
    /// result).
    const TASK_TIMEOUT: bool;

    /// `true` if units have separate address spaces: a crash (a segfault, an abort, an OOM
    /// kill, a `std::process::exit`) stays in its unit and is reported by `join`
    /// (`Killed`/`Exited`) or by the pool (`TaskError::WorkerDied`), and a unit sees the
    /// caller's memory as a copy, so only uniconc primitives carry state between units.
    ///
    /// Process: `true`. Thread and tokio: `false` (units share the process: an abort in one
    /// ends them all; only a panic is contained).
    const ISOLATED: bool;

    /// `true` if units are created by `fork()` of the calling process (for `spawn`,
    /// `spawn_async` and pool workers): a unit starts as a copy of the caller, with the
    /// primitives created before it, and fork's rules apply (a lock another thread of the
    /// caller holds at the fork stays held in the child).
    ///
    /// Process: `true`. Thread and tokio: `false`.
    const FORKS: bool;

    /// `true` if a [`spawn_async`](Backend::spawn_async) unit is a task on a shared async
    /// runtime, cheap enough to start by the thousand, while a [`spawn`](Backend::spawn)
    /// closure takes a thread of a bounded blocking pool (tokio: at most 512 by default,
    /// further closures wait for one to free up).
    ///
    /// Tokio: `true`. Process and thread: `false` (every unit, async or not, is a process or
    /// an OS thread of its own, driving its own runtime for `spawn_async`).
    const ASYNC_TASKS: bool;

    /// `true` if units may run on another machine than the caller (so a unit shares no
    /// memory, file system or clock with it).
    ///
    /// `false` for the process, thread and tokio backends: every unit runs on the caller's
    /// machine. Redis: `true` (its pool's tasks run on worker agents, wherever they run; its
    /// `spawn` is a local process).
    const REMOTE: bool;

    /// `true` if a pool runs closures (`map`, `imap`, `imap_unordered`, `imap_with`,
    /// `submit`) as well as [named tasks](crate::Task) (`map_task`, `submit_task`, ...).
    ///
    /// `false` where pool workers may run on another machine, which cannot receive code: the
    /// closure forms are refused — `map` and `submit` return `PoolError::Spawn` with an
    /// `Unsupported` error naming the task form to use, the `imap` forms yield one
    /// `TaskError::Failed` saying so — and nothing runs. Named tasks work on every backend,
    /// so code meant for all of them uses those.
    ///
    /// `true` for the process, thread and tokio backends (the default); `false` for Redis.
    const POOL_CLOSURES: bool = true;

    /// `true` if primitives can be created and opened by name through
    /// [`named`](Backend::named); where `false`, every constructor of the builder returns
    /// `Unsupported`.
    ///
    /// `true` on every backend (the default); on Redis the names live on the server, so a
    /// program on another machine opens the object by name (see `uniconc::redis`).
    const NAMED: bool = true;

    /// `true` if the handles — `Sender`, `Receiver`, `Lock`, `Semaphore`, `Event` (and
    /// `Barrier` on the thread, tokio and Redis backends) — are [`Message`]s: a handle sent through a
    /// channel, stored in a `Map` or returned from a task works where it lands, on the
    /// process backend in a process that did not inherit it (a worker started before the
    /// object existed). The associated types do not carry the bound (a backend without it
    /// still implements `Backend`); generic code that sends a handle states it:
    ///
    /// ```
    /// use uniconc::prelude::*;
    /// use uniconc::Message;
    ///
    /// /// A worker makes a reply channel and sends its sender back.
    /// fn ask<B: Backend>() -> Result<u64, Box<dyn std::error::Error>>
    /// where
    ///     B::Sender<u64>: Message,
    /// {
    ///     let (back_tx, back_rx) = B::channel::<B::Sender<u64>>(1)?;
    ///     let worker = B::spawn(move || {
    ///         let (tx, rx) = B::channel::<u64>(1).unwrap();
    ///         back_tx.send(tx).unwrap();
    ///         rx.recv().unwrap()
    ///     })?;
    ///     back_rx.recv()?.send(42)?;
    ///     Ok(worker.join()?)
    /// }
    /// assert_eq!(ask::<uniconc::Thread>()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// **A handle in flight** (serialized, not yet deserialized) is held by the process that
    /// serialized it: a channel whose only sender is inside a message stays connected. The
    /// first deserialization takes it over (on the process backend the deserializing process
    /// becomes a member of the object: its death is reaped like a child's). A handle whose
    /// bytes are dropped unread is released when the process that serialized it ends (on the
    /// thread and tokio backends, where a channel carries the handle itself, when its message
    /// is dropped). Reading the same bytes again gives one more clone on the process backend
    /// while the object lives, and `NotFound` on the thread and tokio backends (their bytes
    /// are read once; clone the handle instead). Bytes whose serializing process has ended
    /// fail with `NotFound`; a handle read as another kind or element type, `Incompatible`.
    /// So on the process backend a handle in a `spawn`ed unit's result is gone by the time the
    /// result is read (the child ends right after reporting; `join` says why): return handles
    /// from pool tasks, whose workers live on, or send them through a channel.
    ///
    /// On Redis a handle in flight is a lease the serializing process renews: a killed
    /// serializer's is released one lease (5 s) later, and bytes read again (or after that) are
    /// one more clone while that side of the object has a live holder, `NotFound` otherwise;
    /// the bytes name the server, so the handle works in a process on another machine.
    ///
    /// `true` on every backend (the default).
    const TRAVEL: bool = true;

    /// How one thread (or task) of this backend sleeps until any of several of its channels
    /// is ready: the `S` of a [`Select`](crate::select::Select) over this backend's channels.
    ///
    /// Generic code never names it: the channel halves are selectable with it (see
    /// [`Sender`](Backend::Sender) and [`Receiver`](Backend::Receiver)), so
    /// [`select!`](crate::select!) and [`Select::new`](crate::select::Select::new) over
    /// `B::Receiver<T>`s infer it:
    ///
    /// ```
    /// use uniconc::{Backend, RecvError, Sender as _};
    ///
    /// /// Takes jobs until the stop channel says so (or every job sender is gone).
    /// fn serve<B: Backend>(jobs: B::Receiver<u32>, stop: B::Receiver<()>) -> u32 {
    ///     let mut sum = 0;
    ///     loop {
    ///         uniconc::select! {
    ///             recv(jobs) -> job => match job {
    ///                 Ok(n) => sum += n,
    ///                 Err(RecvError::Disconnected) => return sum,
    ///                 Err(e) => panic!("{e}"),
    ///             },
    ///             recv(stop) -> _ => return sum,
    ///         }
    ///     }
    /// }
    ///
    /// type B = uniconc::thread::Thread;
    /// let (jobs_tx, jobs) = B::channel(4)?;
    /// let (_stop_tx, stop) = B::channel(1)?;
    /// jobs_tx.send(20)?;
    /// jobs_tx.send(22)?;
    /// drop(jobs_tx);
    /// assert_eq!(serve::<B>(jobs, stop), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// It is `Send`, so a [`select_async`](crate::select::Select::select_async) can run in a
    /// task that moves between threads ([`spawn_async`](Backend::spawn_async),
    /// `tokio::spawn`).
    ///
    /// Each backend has its own selector, so the operations of one select are all of one
    /// backend: mixing the channels of two backends in one select does not compile.
    ///
    /// ```compile_fail
    /// use uniconc::Backend;
    ///
    /// fn mixed<A: Backend, B: Backend>(a: A::Receiver<u32>, b: B::Receiver<u32>) {
    ///     uniconc::select! {
    ///         recv(a) -> _ => {}
    ///         recv(b) -> _ => {} // error: `B::Receiver<u32>` is not selectable with `A::Selector`
    ///     }
    /// }
    /// ```
    type Selector: Selector + Send;
    /// Sending half of a channel; selectable with [`Selector`](Backend::Selector) (a `send`
    /// arm of a [`Select`](crate::select::Select)).
    type Sender<T: Message>: Sender<T> + SelectSend<T, Self::Selector>;
    /// Receiving half of a channel; selectable with [`Selector`](Backend::Selector) (a `recv`
    /// arm of a [`Select`](crate::select::Select)). `for x in rx` works in generic code (the
    /// receiver is an `IntoIterator`, see [`IntoIter`](crate::IntoIter)); for `for x in &rx`,
    /// add the bound `for<'a> &'a B::Receiver<T>: IntoIterator<Item = T>` (every backend meets
    /// it) or call [`rx.iter()`](Receiver::iter).
    type Receiver<T: Message>: Receiver<T> + IntoIterator<Item = T> + SelectRecv<T, Self::Selector>;
    /// A lock without data.
    type Lock: Lock;
    /// A counting semaphore.
    type Semaphore: Semaphore;
    /// A settable flag.
    type Event: Event;
    /// A reusable barrier.
    type Barrier: Barrier;
    /// A shared value of plain data.
    type Value<T: Plain>: Value<T>;
    /// A shared array of plain data.
    type Array<T: Plain>: Array<T>;
    /// A shared map (Python's `Manager().dict()`).
    type Map<K: Message + Hash + Eq, V: Message>: Map<K, V>;
    /// A shared list (Python's `Manager().list()`).
    type List<T: Message>: List<T>;
    /// A pool of workers.
    type Pool: Pool;
    /// Handle to a spawned unit.
    type JoinHandle<R: Message>: JoinHandle<R>;

    /// A bounded channel holding at most `capacity` messages: a multi-producer multi-consumer
    /// FIFO whose halves are both `Clone` (see [`Sender`] and [`Receiver`]).
    ///
    /// On the process backend the queued *bytes* are bounded too (by default `capacity * 256`
    /// bytes, within 1 MiB ..= 256 MiB), and a message whose encoding is larger than the
    /// channel can ever hold is refused with `Invalid(value, MessageError::TooLarge { .. })`
    /// (`uniconc::process::ChannelBuilder::byte_budget` raises the limit).
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread; // the one line to change for another backend
    /// let (tx, rx) = B::channel::<u32>(2)?;
    /// assert_eq!(tx.capacity(), Some(2));
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert!(tx.try_send(3).unwrap_err().is_full());
    /// assert_eq!(rx.recv()?, 1);
    ///
    /// let refused = B::channel::<u32>(0).unwrap_err(); // no rendezvous channel: an error
    /// assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if `capacity == 0` (an error, never a channel that hangs); `Os` if the
    /// OS refused to map the shared memory (process backend).
    #[allow(clippy::type_complexity)]
    fn channel<T: Message>(capacity: usize) -> Result<(Self::Sender<T>, Self::Receiver<T>), Error>;

    /// A channel without a bound on the number of messages.
    ///
    /// On the process backend the queue lives in shared memory reserved at creation and
    /// committed as messages fill it: up to 1 GiB of queued messages (less on a machine with
    /// under 2 GiB of RAM plus swap, or under `RLIMIT_AS`). Should that fill, `try_send` returns
    /// `Full` and `send` waits for room, as on a full bounded channel; the thread and tokio
    /// backends hold what memory allows. See `uniconc::process::unbounded` for what it keeps
    /// resident.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::unbounded::<u32>()?;
    /// assert_eq!(tx.capacity(), None);
    /// for i in 0..1000 {
    ///     tx.try_send(i)?; // never `Full`
    /// }
    /// assert_eq!(rx.len(), 1000);
    /// assert_eq!(rx.recv()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map the shared memory (process backend); the thread and tokio
    /// backends never fail here.
    #[allow(clippy::type_complexity)]
    fn unbounded<T: Message>() -> Result<(Self::Sender<T>, Self::Receiver<T>), Error>;

    /// Runs `f` as a new unit and returns its [`JoinHandle`](Backend::JoinHandle).
    ///
    /// The unit is a forked child process (it starts as a copy of the caller: captured values
    /// and the primitives created before are there; its result is serialized back), a new OS
    /// thread, or a closure on tokio's blocking pool (`spawn_blocking`, on the caller's runtime
    /// or on the tokio backend's own). A panic in `f` is caught and reported by `join` as
    /// [`JoinError::Panicked`](crate::JoinError::Panicked).
    ///
    /// ```
    /// use uniconc::{Backend, JoinError, JoinHandle as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let h = B::spawn(|| 6 * 7)?;
    /// assert_eq!(h.join()?, 42);
    ///
    /// let h = B::spawn(|| -> u32 { panic!("boom") })?;
    /// assert_eq!(h.join(), Err(JoinError::Panicked("boom".into())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the unit could not be started: the fork failed (or a channel held by this
    /// process has no free process slot, see `uniconc::process::MAX_PROCESSES`), the OS refused
    /// a thread, or the tokio backend could not start its own runtime.
    fn spawn<F, R>(f: F) -> Result<Self::JoinHandle<R>, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Message;

    /// Runs `fut` as one unit: a tokio task (on the caller's runtime, or on the tokio
    /// backend's own), or a new thread or forked process driving it on its own current-thread
    /// tokio runtime (timers and I/O enabled). Inside it, use the `_async` forms.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(4)?;
    /// let h = B::spawn_async(async move { rx.recv_async().await.unwrap() * 2 })?;
    /// tx.send(21)?; // a sync sender, an async receiver
    /// assert_eq!(h.join()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Backend::spawn). A runtime that cannot be built inside a new thread or
    /// process is reported by `join` (`Failed` on threads, `Panicked` on processes).
    fn spawn_async<Fut>(fut: Fut) -> Result<Self::JoinHandle<Fut::Output>, Error>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Message;

    /// Runs the named task `T` on `arg` as a new unit; see [`Task`] and
    /// [`task!`](crate::task!).
    ///
    /// Thread and tokio: `T::run(arg)` through [`spawn`](Backend::spawn) (the argument is not
    /// encoded). Process: a **clean start** — the binary re-executed as a worker that inherits
    /// none of the caller's threads, locks or runtime, and receives the task by name, with its
    /// argument encoded (the program calls `uniconc::init()` first thing in `main`; see
    /// `uniconc::process::Start` for the choice between a clean start and a fork).
    ///
    /// A panic in the task is [`JoinError::Panicked`](crate::JoinError::Panicked); on the
    /// process backend, a task the worker does not know, a schema mismatch or an argument that
    /// does not decode is [`JoinError::Failed`](crate::JoinError::Failed) naming the task.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _};
    ///
    /// uniconc::task! {
    ///     fn word_count(text: String) -> usize {
    ///         text.split_whitespace().count()
    ///     }
    /// }
    ///
    /// fn count<B: Backend>(text: &str) -> Result<usize, Box<dyn std::error::Error>> {
    ///     Ok(B::spawn_task::<word_count>(text.to_string())?.join()?)
    /// }
    ///
    /// assert_eq!(count::<uniconc::Thread>("one two three")?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Backend::spawn); on the process backend also `Unsupported` if
    /// `uniconc::init()` was not called (a clean worker would run `main` from its start), and
    /// `InvalidMessage` if the argument does not serialize.
    fn spawn_task<T: Task>(arg: T::Arg) -> Result<Self::JoinHandle<T::Output>, Error> {
        Self::spawn(move || T::run(arg))
    }

    /// A new lock; see [`Lock`].
    ///
    /// ```
    /// use uniconc::{Backend, Lock as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let guard = lock.lock().unwrap_or_else(|e| e.into_guard());
    /// assert!(lock.is_locked());
    /// drop(guard);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Os` if the OS refused to map shared memory (process backend); never on the others.
    fn lock() -> Result<Self::Lock, Error> {
        <Self::Lock as Lock>::new()
    }

    /// A semaphore with `permits` permits; see [`Semaphore`].
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let sem = B::semaphore(2)?;
    /// let permit = sem.acquire();
    /// assert_eq!(sem.available(), 1);
    /// drop(permit); // given back
    /// assert_eq!(sem.available(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Semaphore::new`].
    fn semaphore(permits: usize) -> Result<Self::Semaphore, Error> {
        <Self::Semaphore as Semaphore>::new(permits)
    }

    /// A new event, not set; see [`Event`].
    ///
    /// ```
    /// use uniconc::{Backend, Event as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ready = B::event()?;
    /// assert!(!ready.is_set());
    /// ready.set();
    /// ready.wait(); // returns at once: the flag is set
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Event::new`].
    fn event() -> Result<Self::Event, Error> {
        <Self::Event as Event>::new()
    }

    /// A barrier for `n` units; see [`Barrier`].
    ///
    /// ```
    /// use uniconc::{Backend, Barrier as _, ErrorKind};
    ///
    /// type B = uniconc::thread::Thread;
    /// let barrier = B::barrier(1)?;
    /// assert_eq!(barrier.parties(), 1);
    /// assert!(barrier.wait()); // one party: released at once, as the leader
    /// assert_eq!(B::barrier(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Barrier::new`].
    fn barrier(n: usize) -> Result<Self::Barrier, Error> {
        <Self::Barrier as Barrier>::new(n)
    }

    /// A shared value holding `value`; see [`Value`].
    ///
    /// ```
    /// use uniconc::{Backend, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let total = B::value(0.5f64)?;
    /// total.update(|t| *t += 1.0);
    /// assert_eq!(total.load(), 1.5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Value::new`].
    fn value<T: Plain>(value: T) -> Result<Self::Value<T>, Error> {
        <Self::Value<T> as Value<T>>::new(value)
    }

    /// A shared array of `len` zeroed elements; see [`Array`].
    ///
    /// ```
    /// use uniconc::{Array as _, Backend};
    ///
    /// type B = uniconc::thread::Thread;
    /// let a = B::array::<u32>(3)?;
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// a.set(2, 9)?;
    /// assert_eq!(a.get(2), Some(9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Array::new`].
    fn array<T: Plain>(len: usize) -> Result<Self::Array<T>, Error> {
        <Self::Array<T> as Array<T>>::new(len)
    }

    /// A new, empty shared map; see [`Map`].
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let d = B::map::<u64, String>()?;
    /// d.insert(1, "one".into())?;
    /// assert_eq!(d.get(&1)?.as_deref(), Some("one"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Map::new`].
    fn map<K: Message + Hash + Eq, V: Message>() -> Result<Self::Map<K, V>, Error> {
        <Self::Map<K, V> as Map<K, V>>::new()
    }

    /// A new, empty shared list; see [`List`].
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let l = B::list::<u64>()?;
    /// l.extend([3, 4])?;
    /// assert_eq!(l.to_vec()?, [3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`List::new`].
    fn list<T: Message>() -> Result<Self::List<T>, Error> {
        <Self::List<T> as List<T>>::new()
    }

    /// A pool of `workers` workers with default settings; see [`Pool`] (and
    /// [`Pool::builder`] for the other settings).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     assert_eq!(pool.map(|x: u64| x * x, 1..=4u64)?, [1, 4, 9, 16]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Pool::new`].
    fn pool(workers: usize) -> Result<Self::Pool, Error> {
        <Self::Pool as Pool>::new(workers)
    }

    /// A name to create or open primitives under: see [`Named`] and the
    /// [`named`] module for the modes, the checks on open and the lifetime.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let ready = B::named("doc-backend-named").event()?;
    /// ready.set(); // seen by whoever opens "doc-backend-named"
    /// assert!(B::named("doc-backend-named").existing().event()?.is_set());
    /// B::named("doc-backend-named").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn named(name: &str) -> Named<Self> {
        Named::new(name)
    }

    /// What [`Named::channel`], [`Named::sender`] and friends call: the halves asked for of the
    /// named channel (`capacity` `None`: unbounded). Backends without named objects return
    /// `Unsupported` (the default).
    ///
    /// # Errors
    /// See [`named`].
    #[allow(clippy::type_complexity)]
    fn named_channel<T: Message>(
        name: &Name,
        capacity: Option<usize>,
        sender: bool,
        receiver: bool,
    ) -> Result<(Option<Self::Sender<T>>, Option<Self::Receiver<T>>), Error> {
        let _ = (name, capacity, sender, receiver);
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::lock`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_lock(name: &Name) -> Result<Self::Lock, Error> {
        let _ = name;
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::semaphore`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_semaphore(name: &Name, permits: usize) -> Result<Self::Semaphore, Error> {
        let _ = (name, permits);
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::event`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_event(name: &Name) -> Result<Self::Event, Error> {
        let _ = name;
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::barrier`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_barrier(name: &Name, n: usize) -> Result<Self::Barrier, Error> {
        let _ = (name, n);
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::value`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_value<T: Plain>(name: &Name, value: T) -> Result<Self::Value<T>, Error> {
        let _ = (name, value);
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::array`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_array<T: Plain>(name: &Name, len: usize) -> Result<Self::Array<T>, Error> {
        let _ = (name, len);
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::map`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_map<K: Message + Hash + Eq, V: Message>(
        name: &Name,
    ) -> Result<Self::Map<K, V>, Error> {
        let _ = name;
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::list`] calls (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn named_list<T: Message>(name: &Name) -> Result<Self::List<T>, Error> {
        let _ = name;
        Err(named::unsupported::<Self>())
    }

    /// What [`Named::unlink`] calls: removes the name, `Ok(false)` if it did not exist
    /// (default: `Unsupported`).
    ///
    /// # Errors
    /// See [`named`].
    fn unlink_named(name: &str) -> Result<bool, Error> {
        let _ = name;
        Err(named::unsupported::<Self>())
    }
}
