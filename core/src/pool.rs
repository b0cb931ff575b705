//! The pool contract: [`Pool`], its configuration ([`PoolBuilder`]), [`TaskHandle`] and the
//! [`Order`] of a lazy map's results.
//!
//! A pool runs `f(item)` for many items on a fixed set of workers (processes, threads or
//! tasks). `map` returns results in input order; `imap` is a lazy, ordered iterator with a
//! bounded number of items in flight, so it works on an endless input; `imap_unordered` yields
//! in completion order; `imap_with` takes the [`Order`] as an argument, for when it is chosen
//! at run time; `submit` runs one call and returns a [`TaskHandle`]. Each has a form that takes
//! a named [`Task`] instead of a closure (`map_task::<T>(items)`, `imap_task`,
//! `imap_unordered_task`, `imap_task_with`, `submit_task::<T>(arg)`), for code written with
//! tasks that runs unchanged on every backend.
//!
//! A task that panics yields [`TaskError::Panicked`] for its item only; the pool stays usable.
//! A worker that dies mid-task yields [`TaskError::WorkerDied`] and is replaced. A pool never
//! hangs because a worker died. Dropping a pool stops its workers.

use std::future::Future;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::backend::Message;
use crate::error::{Error, PoolError, TaskError};
use crate::task::Task;
use crate::time::deadline_after;
use crate::validate;

/// Settings of a pool, filled in by [`PoolBuilder`].
///
/// ```
/// use uniconc::{Backend, Pool as _, PoolConfig};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::Pool::builder().workers(2).chunk_size(8).build()?;
///     let config: &PoolConfig = pool.config();
///     assert_eq!((config.workers, config.chunk_size), (2, Some(8)));
///     assert_eq!(config.task_timeout, None);
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Number of workers (default: the number of CPUs).
    pub workers: usize,
    /// Items handed to a worker at a time by `map`/`imap` (default: chosen per call from the
    /// number of items and workers).
    pub chunk_size: Option<usize>,
    /// Replace a worker after it ran this many tasks (Python's `maxtasksperchild`).
    pub max_tasks_per_worker: Option<usize>,
    /// A task running longer than this is stopped and reported as
    /// [`TaskError::DeadlineExceeded`], where the backend can stop a unit (processes, tasks).
    pub task_timeout: Option<Duration>,
    /// How the workers start, where the backend has a choice (`None`: the backend's default).
    /// Only the process backend has one (see [`Start`]); the thread and tokio backends accept
    /// the setting and ignore it (their workers share the caller's process).
    pub start: Option<Start>,
}

/// How a worker process starts: [`PoolBuilder::start`], and the process backend's
/// `spawn_task_with`.
///
/// A forked worker is a copy of the caller at the instant of the fork, with one thread: a
/// lock another thread held then stays held in the copy forever. A clean-started worker is
/// the program's binary started again as a worker: it inherits no thread, lock or runtime,
/// and runs only named [`Task`]s (found in the same binary). Only the process backend starts
/// processes; the thread and tokio backends ignore the choice.
///
/// ```
/// use uniconc::{Backend, Pool as _, Start};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::Pool::builder().workers(2).start(Start::Fork).build()?;
///     assert_eq!(pool.config().start, Some(Start::Fork));
///     assert_eq!(pool.map(|x: u32| x + 1, [1, 2])?, [2, 3]); // a fork pool runs closures
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// assert_eq!(Start::default(), Start::Clean); // the default for tasks
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Start {
    /// `fork()`: the worker is a copy of the caller, so it can run closures and sees what
    /// was created before. Fast, but **unsafe to mix with other threads holding locks**: a
    /// lock held by another thread at the fork stays held in the child, and code that takes
    /// it there (directly, or through a logger or a global cache) hangs.
    Fork,
    /// The binary re-executed as a worker that inherits none of the caller's threads, locks
    /// or runtime; it runs named tasks only (`map_task`, `submit_task`, ...), and needs
    /// `uniconc::init()` first thing in `main`. The default for tasks.
    #[default]
    Clean,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_size: None,
            max_tasks_per_worker: None,
            task_timeout: None,
            start: None,
        }
    }
}

impl PoolConfig {
    /// Checks the settings ([`PoolBuilder::build`] calls it).
    ///
    /// ```
    /// use uniconc::{ErrorKind, PoolConfig};
    ///
    /// let mut config = PoolConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.workers = 0;
    /// assert_eq!(config.validate().unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers, a chunk size of 0, a task limit of 0 or a zero task
    /// timeout.
    pub fn validate(&self) -> Result<(), Error> {
        validate::pool_workers(self.workers, usize::MAX)?;
        validate::chunk_size(self.chunk_size)?;
        validate::max_tasks_per_worker(self.max_tasks_per_worker)?;
        validate::task_timeout(self.task_timeout)
    }

    /// The chunk size for a call over `items` items (`None`: unknown, e.g. an endless
    /// iterator): the configured one, or Python's heuristic of about four chunks per worker.
    ///
    /// ```
    /// use uniconc::PoolConfig;
    ///
    /// let mut config = PoolConfig::default();
    /// config.workers = 2;
    /// assert_eq!(config.chunk_size_for(Some(1000)), 125); // 1000 / (2 workers * 4)
    /// assert_eq!(config.chunk_size_for(None), 1);
    /// config.chunk_size = Some(64);
    /// assert_eq!(config.chunk_size_for(Some(1000)), 64);
    /// ```
    pub fn chunk_size_for(&self, items: Option<usize>) -> usize {
        if let Some(c) = self.chunk_size {
            return c;
        }
        match items {
            Some(n) => n.div_ceil(self.workers * 4).max(1),
            None => 1,
        }
    }
}

/// Builds a pool: `Pool::builder().workers(4).chunk_size(64).build()`.
///
/// ```
/// use uniconc::{Backend, Pool as _};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::Pool::builder().workers(2).max_tasks_per_worker(100).build()?;
///     assert_eq!(pool.map(|x: u32| x + 1, [1, 2, 3])?, [2, 3, 4]);
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<P> {
    config: PoolConfig,
    _pool: PhantomData<fn() -> P>,
}

impl<P: Pool> Default for PoolBuilder<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pool> PoolBuilder<P> {
    /// Default settings: one worker per CPU, chunk size chosen per call, no task limit, no
    /// timeout. The same as [`Pool::builder`].
    ///
    /// ```
    /// use uniconc::{Backend, PoolBuilder, PoolConfig};
    ///
    /// type P = <uniconc::thread::Thread as Backend>::Pool;
    /// let builder = PoolBuilder::<P>::new();
    /// assert_eq!(builder.config(), &PoolConfig::default());
    /// ```
    pub fn new() -> Self {
        Self {
            config: PoolConfig::default(),
            _pool: PhantomData,
        }
    }

    /// Number of workers (at least 1): how many items run at once.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::Pool::builder().workers(3).build()?;
    ///     assert_eq!(pool.config().workers, 3);
    ///     assert!(B::Pool::builder().workers(0).build().is_err());
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Items handed to a worker at a time by `map`/`imap` (at least 1). Larger chunks cost
    /// fewer round trips; `chunk_size(1)` balances uneven items best.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::Pool::builder().workers(2).chunk_size(1).build()?;
    ///     assert_eq!(pool.config().chunk_size_for(Some(1000)), 1);
    ///     assert_eq!(pool.map(|x: u8| x * 2, 0..3u8)?, [0, 2, 4]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.config.chunk_size = Some(n);
        self
    }

    /// Replace a worker after it ran `n` tasks (at least 1; a `map`/`imap` chunk counts as one
    /// task, as in Python). The tokio backend accepts it and ignores it (it has no long-lived
    /// workers).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::Pool::builder().workers(1).max_tasks_per_worker(2).build()?;
    ///     let mut results = Vec::new();
    ///     for i in 0..5u32 {
    ///         results.extend(pool.map(|x: u32| x, [i])?); // one task per call
    ///     }
    ///     assert_eq!(results, [0, 1, 2, 3, 4]); // the worker was replaced after tasks 2 and 4
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.config.max_tasks_per_worker = Some(n);
        self
    }

    /// Stop a task that runs longer than `timeout`, where the backend can stop a unit: its item
    /// then yields [`TaskError::DeadlineExceeded`]. A `map`/`imap` chunk of `k` items gets
    /// `k × timeout`. The process backend kills and replaces the worker; the tokio backend
    /// aborts an async task (a blocking closure runs on in the background); the thread backend
    /// refuses the setting (`build` returns `Unsupported`). Generic code asks
    /// [`Backend::TASK_TIMEOUT`](crate::Backend::TASK_TIMEOUT).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, ErrorKind, Pool as _};
    ///
    /// type P = <uniconc::thread::Thread as Backend>::Pool;
    /// let builder = P::builder().task_timeout(Duration::from_secs(5));
    /// assert_eq!(builder.config().task_timeout, Some(Duration::from_secs(5)));
    /// let refused = builder.build().unwrap_err(); // an OS thread cannot be stopped
    /// assert_eq!(refused.kind(), ErrorKind::Unsupported);
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// How the workers start (see [`Start`]): the process backend's `Start::Clean` pool runs
    /// named tasks in workers that inherit nothing from the caller (and refuses closures);
    /// `Start::Fork` runs closures and tasks in forked workers. Unset, the process backend
    /// runs closures in forked workers and tasks in clean-started ones (started at the
    /// first task) when `uniconc::init()` was called, else in the forked ones. The thread and
    /// tokio backends accept the setting and ignore it.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, Start};
    ///
    /// type P = <uniconc::thread::Thread as Backend>::Pool;
    /// let pool = P::builder().workers(1).start(Start::Clean).build()?; // ignored here
    /// assert_eq!(pool.config().start, Some(Start::Clean));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(mut self, start: Start) -> Self {
        self.config.start = Some(start);
        self
    }

    /// The settings so far.
    ///
    /// ```
    /// use uniconc::{Backend, PoolBuilder};
    ///
    /// type P = <uniconc::thread::Thread as Backend>::Pool;
    /// let builder = PoolBuilder::<P>::new().workers(4).chunk_size(16);
    /// assert_eq!(builder.config().workers, 4);
    /// assert_eq!(builder.config().chunk_size, Some(16));
    /// ```
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Starts the pool.
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::Pool::builder().workers(2).build()?;
    ///     assert_eq!(pool.map(|x: i64| -x, [1, 2])?, [-1, -2]);
    ///     let refused = B::Pool::builder().chunk_size(0).build();
    ///     assert!(matches!(refused, Err(e) if e.kind() == ErrorKind::InvalidArgument));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for out-of-range settings (see [`PoolConfig::validate`]; on the tokio
    /// backend also a `task_timeout` on a runtime without a time driver); `Unsupported` for a
    /// `task_timeout` on the thread backend; `Os` if the backend could not start its workers
    /// (fork or thread creation failed, or the tokio backend's own runtime).
    pub fn build(self) -> Result<P, Error> {
        self.config.validate()?;
        P::with_config(self.config)
    }
}

/// The order in which [`Pool::imap_with`] yields its results.
///
/// [`Pool::imap`] is `imap_with(.., Order::Input)` and [`Pool::imap_unordered`] is
/// `imap_with(.., Order::Completion)`; pass the order yourself when it is chosen at run time.
///
/// ```
/// use uniconc::{Backend, Order, Pool as _};
///
/// fn lengths<B: Backend>(
///     words: &[&str],
///     keep_order: bool,
/// ) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
///     let pool = B::pool(2)?;
///     let order = if keep_order { Order::Input } else { Order::Completion };
///     let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
///     Ok(pool.imap_with(|w: String| w.len(), words, order).collect::<Result<_, _>>()?)
/// }
///
/// type B = uniconc::thread::Thread; // or any other backend
/// assert_eq!(lengths::<B>(&["a", "bb", "ccc"], true)?, [1, 2, 3]);
/// let mut any = lengths::<B>(&["a", "bb", "ccc"], false)?;
/// any.sort(); // whichever finished first came first
/// assert_eq!(any, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// In the order of the input items (`imap`): a result that finished early waits for the
    /// ones before it.
    Input,
    /// As the results finish (`imap_unordered`): a slow item holds up no other.
    Completion,
}

/// A pool of workers.
///
/// The workers are forked processes, OS threads, or (tokio) at most `workers` tasks at once.
/// Dropping a pool terminates it: no worker outlives it.
///
/// ```
/// use uniconc::{Backend, Pool as _, TaskHandle as _};
///
/// fn collatz_len(mut n: u64) -> u32 {
///     let mut steps = 0;
///     while n != 1 {
///         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
///         steps += 1;
///     }
///     steps
/// }
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::pool(2)?;
///     assert_eq!(pool.map(collatz_len, 1..=6u64)?, [0, 1, 7, 2, 5, 8]);
///     assert_eq!(pool.submit(collatz_len, 27)?.wait()?, 111);
///     pool.close();
///     pool.join()?;
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Pool: Send + Sync + Sized + 'static {
    /// Handle to one submitted task.
    type TaskHandle<R: Message>: TaskHandle<R>;

    /// Starts a pool with these settings; use [`Pool::builder`] or [`Pool::new`] instead
    /// (this is what [`PoolBuilder::build`] calls after validating them).
    ///
    /// ```
    /// use uniconc::{Backend, Pool, PoolConfig};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let mut config = PoolConfig::default();
    ///     config.workers = 2;
    ///     let pool = B::Pool::with_config(config)?;
    ///     assert_eq!(pool.config().workers, 2);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`PoolBuilder::build`]: the backend could not start its workers, or refused a
    /// setting.
    fn with_config(config: PoolConfig) -> Result<Self, Error>;

    /// A builder with default settings.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::Pool::builder().workers(2).chunk_size(4).build()?;
    ///     assert_eq!(pool.map(|x: u32| x % 3, 0..6u32)?, [0, 1, 2, 0, 1, 2]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn builder() -> PoolBuilder<Self> {
        PoolBuilder::new()
    }

    /// A pool of `workers` workers with default settings (what
    /// [`Backend::pool`](crate::Backend::pool) calls).
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, Pool};
    ///
    /// type P = <uniconc::thread::Thread as Backend>::Pool;
    /// let pool = P::new(2)?;
    /// assert_eq!(pool.config().workers, 2);
    /// assert_eq!(P::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers; `Os` if the backend could not start its workers.
    fn new(workers: usize) -> Result<Self, Error> {
        Self::builder().workers(workers).build()
    }

    /// The settings the pool runs with.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let pool = B::pool(3)?;
    /// assert_eq!(pool.config().workers, 3);
    /// assert_eq!(pool.config().max_tasks_per_worker, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn config(&self) -> &PoolConfig;

    /// Runs `f` on every item; results in input order.
    ///
    /// On the process backend `f` is never serialized: a `fn` item or a non-capturing closure
    /// runs on the long-lived workers, a capturing closure on workers forked for the call.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, PoolError, TaskError};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     assert_eq!(pool.map(|s: String| s.len(), ["a".into(), "bcd".into()])?, [1, 3]);
    ///
    ///     let failed = pool.map(|x: u32| if x == 2 { panic!("two") } else { x }, 0..4u32);
    ///     match failed {
    ///         Err(PoolError::Task { index, error: TaskError::Panicked(msg) }) => {
    ///             assert_eq!((index, msg.as_str()), (2, "two"));
    ///         }
    ///         other => panic!("unexpected: {other:?}"),
    ///     }
    ///     assert_eq!(pool.map(|x: u32| x, 0..2u32)?, [0, 1]); // the pool goes on
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Task { index, error }` for the first failed item in input order (the other items still
    /// ran; `error` is a [`TaskError`]: `Panicked`, and on the process backend `WorkerDied`,
    /// or `DeadlineExceeded` with a `task_timeout`); `Closed` if the pool is closed (or, on the
    /// process backend, used from another process than its creator); `Spawn` if the workers
    /// for a capturing closure could not be forked (process backend).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime). The thread and process backends never panic
    /// here; they block the calling thread.
    fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>;

    /// Runs `f` on every item lazily; results in input order ([`imap_with`](Pool::imap_with)
    /// with [`Order::Input`]). Pulls items from `items` only as results are consumed (a bounded number in flight), so `items` may be endless. If the
    /// pool is closed, the iterator yields one `Err(TaskError::Cancelled)` and ends.
    ///
    /// Each item yields its own `Result`: a panicking item fails only itself.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskError};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let squares: Vec<u64> = pool
    ///         .imap(|x: u64| x * x, 1u64..) // an endless input
    ///         .take(4)
    ///         .collect::<Result<_, _>>()?;
    ///     assert_eq!(squares, [1, 4, 9, 16]);
    ///
    ///     let mut it = pool.imap(|x: u8| if x == 1 { panic!("one") } else { x }, 0..3u8);
    ///     assert_eq!(it.next(), Some(Ok(0)));
    ///     assert_eq!(it.next(), Some(Err(TaskError::Panicked("one".into()))));
    ///     assert_eq!(it.next(), Some(Ok(2)));
    ///     assert_eq!(it.next(), None);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime), in `next`. The thread and process backends
    /// never panic here; they block the calling thread.
    fn imap<T, R, F, I>(&self, f: F, items: I) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, Order::Input)
    }

    /// Like [`imap`](Pool::imap), but yields results in completion order
    /// ([`imap_with`](Pool::imap_with) with [`Order::Completion`]).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let mut got: Vec<u32> = pool
    ///         .imap_unordered(|x: u32| x * 10, 0..5u32)
    ///         .collect::<Result<_, _>>()?;
    ///     got.sort(); // whichever finished first came first
    ///     assert_eq!(got, [0, 10, 20, 30, 40]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime), in `next`. The thread and process backends
    /// never panic here; they block the calling thread.
    fn imap_unordered<T, R, F, I>(
        &self,
        f: F,
        items: I,
    ) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, Order::Completion)
    }

    /// Runs `f` on every item lazily, yielding the results in `order`: what
    /// [`imap`](Pool::imap) ([`Order::Input`]) and [`imap_unordered`](Pool::imap_unordered)
    /// ([`Order::Completion`]) call. Call it directly when the order is chosen at run time.
    ///
    /// Either order pulls items from `items` only as results are consumed (a bounded number
    /// in flight), so `items` may be endless; each item yields its own `Result`, so a
    /// panicking item fails only itself. If the pool is closed, the iterator yields one
    /// `Err(TaskError::Cancelled)` and ends.
    ///
    /// ```
    /// use uniconc::{Backend, Order, Pool as _};
    ///
    /// fn run<B: Backend>(order: Order) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let cubes = pool.imap_with(|x: u64| x * x * x, 1u64..=4, order);
    ///     Ok(cubes.collect::<Result<_, _>>()?)
    /// }
    ///
    /// type B = uniconc::thread::Thread; // or any other backend
    /// assert_eq!(run::<B>(Order::Input)?, [1, 8, 27, 64]);
    /// let mut cubes = run::<B>(Order::Completion)?;
    /// cubes.sort(); // in the order they finished
    /// assert_eq!(cubes, [1, 8, 27, 64]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime), in `next`. The thread and process backends
    /// never panic here; they block the calling thread.
    fn imap_with<T, R, F, I>(
        &self,
        f: F,
        items: I,
        order: Order,
    ) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>;

    /// Runs `f(arg)` on a worker and returns a handle to its result; never waits.
    ///
    /// On the process backend, a closure that captures anything runs in a process forked for
    /// that one call (a fork per call, tens of times a `fn`'s round trip): for many small tasks,
    /// pass a `fn` item or a non-capturing closure and put the captured values in the argument.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, PoolError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let shout = pool.submit(|s: String| s.to_uppercase(), "hi".to_string())?;
    ///     let count = pool.submit(|v: Vec<u8>| v.len(), vec![1, 2, 3])?;
    ///     assert_eq!(shout.wait()?, "HI");
    ///     assert_eq!(count.wait()?, 3);
    ///     pool.close();
    ///     assert!(matches!(pool.submit(|x: u8| x, 1), Err(PoolError::Closed)));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Closed` if the pool is closed (or, on the process backend, used from another process
    /// than its creator). A task that cannot be started later (the process forked for a
    /// capturing closure on the process backend) is reported by its handle, not here.
    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<Self::TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static;

    /// Runs the named task `T` on every item; results in input order: [`map`](Pool::map) with
    /// [`T::run`](Task::run).
    ///
    /// Generic code written with tasks runs unchanged on every backend, as
    /// [`Backend::spawn_task`](crate::Backend::spawn_task) does for one unit. On the process
    /// backend the task runs in clean-started workers (a pool built with
    /// [`Start::Clean`], or a default pool in a program that called `uniconc::init()`), else
    /// in the pool's forked workers, as a `fn` item does (see [`PoolBuilder::start`]).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, PoolError, TaskError};
    ///
    /// uniconc::task! {
    ///     /// The number of words of a text.
    ///     fn word_count(text: String) -> usize { text.split_whitespace().count() }
    /// }
    ///
    /// uniconc::task! {
    ///     fn checked_half(x: u32) -> u32 { assert!(x % 2 == 0, "{x} is odd"); x / 2 }
    /// }
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let texts = ["one", "two words", "a b c"].map(String::from);
    ///     assert_eq!(pool.map_task::<word_count>(texts)?, [1, 2, 3]);
    ///
    ///     match pool.map_task::<checked_half>([2, 3, 4]) {
    ///         Err(PoolError::Task { index, error: TaskError::Panicked(msg) }) => {
    ///             assert_eq!((index, msg.as_str()), (1, "3 is odd"));
    ///         }
    ///         other => panic!("unexpected: {other:?}"),
    ///     }
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`map`](Pool::map): `Task { index, error }` for the first failed item in input order
    /// (`Panicked` with the task's panic message, ...), `Closed` if the pool is closed.
    ///
    /// # Panics
    /// As [`map`](Pool::map), on a current-thread tokio runtime.
    fn map_task<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<T::Output>, PoolError> {
        self.map(T::run, items)
    }

    /// Runs the named task `T` on every item lazily; results in input order:
    /// [`imap`](Pool::imap) with [`T::run`](Task::run)
    /// ([`imap_task_with`](Pool::imap_task_with) with [`Order::Input`]). `items` may be
    /// endless; each item yields its own `Result`. On the process backend the task runs in the
    /// workers [`map_task`](Pool::map_task) uses.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskError};
    ///
    /// uniconc::task! {
    ///     fn cube(x: u64) -> u64 { x * x * x }
    /// }
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let cubes: Vec<u64> = pool
    ///         .imap_task::<cube>(1u64..) // an endless input
    ///         .take(4)
    ///         .collect::<Result<_, TaskError>>()?;
    ///     assert_eq!(cubes, [1, 8, 27, 64]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// As [`imap`](Pool::imap), on a current-thread tokio runtime, in `next`.
    fn imap_task<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>> {
        self.imap_task_with::<T>(items, Order::Input)
    }

    /// Like [`imap_task`](Pool::imap_task), but yields results in completion order
    /// ([`imap_task_with`](Pool::imap_task_with) with [`Order::Completion`]).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskError};
    ///
    /// uniconc::task! {
    ///     fn shout(s: String) -> String { s.to_uppercase() }
    /// }
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let words = ["b", "a", "c"].map(String::from);
    ///     let mut got: Vec<String> = pool
    ///         .imap_unordered_task::<shout>(words)
    ///         .collect::<Result<_, TaskError>>()?;
    ///     got.sort(); // whichever finished first came first
    ///     assert_eq!(got, ["A", "B", "C"]);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// As [`imap`](Pool::imap), on a current-thread tokio runtime, in `next`.
    fn imap_unordered_task<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>> {
        self.imap_task_with::<T>(items, Order::Completion)
    }

    /// Runs the named task `T` on every item lazily, yielding the results in `order`:
    /// [`imap_with`](Pool::imap_with) with [`T::run`](Task::run), what
    /// [`imap_task`](Pool::imap_task) and [`imap_unordered_task`](Pool::imap_unordered_task)
    /// call. On the process backend the task runs in the workers
    /// [`map_task`](Pool::map_task) uses.
    ///
    /// ```
    /// use uniconc::{Backend, Order, Pool as _, TaskError};
    ///
    /// uniconc::task! {
    ///     fn checked_half(x: u32) -> u32 { assert!(x % 2 == 0, "{x} is odd"); x / 2 }
    /// }
    ///
    /// fn run<B: Backend>(order: Order) -> Result<Vec<Result<u32, TaskError>>, uniconc::Error> {
    ///     let pool = B::pool(2)?;
    ///     Ok(pool.imap_task_with::<checked_half>([2, 3, 4], order).collect())
    /// }
    ///
    /// type B = uniconc::thread::Thread; // or any other backend
    /// let odd = Err(TaskError::Panicked("3 is odd".into())); // fails only its own item
    /// assert_eq!(run::<B>(Order::Input)?, [Ok(1), odd.clone(), Ok(2)]);
    /// let done = run::<B>(Order::Completion)?; // in the order they finished
    /// assert_eq!(done.len(), 3);
    /// assert!([Ok(1), odd, Ok(2)].iter().all(|r| done.contains(r)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// As [`imap_with`](Pool::imap_with), on a current-thread tokio runtime, in `next`.
    fn imap_task_with<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
        order: Order,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>> {
        self.imap_with(T::run, items, order)
    }

    /// Runs the named task `T` on `arg` on a worker and returns a handle to its result; never
    /// waits: [`submit`](Pool::submit) with [`T::run`](Task::run). On the process backend the
    /// task runs in one of the workers [`map_task`](Pool::map_task) uses (no process is
    /// started for the call).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskError, TaskHandle as _};
    ///
    /// uniconc::task! {
    ///     fn mul_add(a: u64, b: u64, c: u64) -> u64 { a * b + c }
    /// }
    ///
    /// uniconc::task! {
    ///     fn fail(why: String) { panic!("{why}") }
    /// }
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let h = pool.submit_task::<mul_add>((6, 7, 0))?; // several arguments: a tuple
    ///     assert_eq!(h.wait()?, 42);
    ///     let bad = pool.submit_task::<fail>("no".into())?;
    ///     assert_eq!(bad.wait(), Err(TaskError::Panicked("no".into())));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`submit`](Pool::submit): `Closed` if the pool is closed; the task's own failure
    /// (`Panicked` with its message, ...) is reported by its handle.
    fn submit_task<T: Task>(&self, arg: T::Arg) -> Result<Self::TaskHandle<T::Output>, PoolError> {
        self.submit(T::run, arg)
    }

    /// Stops accepting work; queued and running tasks finish. Closing twice does nothing more.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, PoolError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let queued = pool.submit(|x: u32| x + 1, 1)?;
    ///     pool.close();
    ///     assert_eq!(queued.wait()?, 2); // accepted before the close: it still runs
    ///     assert!(matches!(pool.map(|x: u32| x, [1]), Err(PoolError::Closed)));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn close(&self);

    /// Waits for every worker to finish after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate): queued work runs first. Do not call it from one of the
    /// pool's own tasks (it would wait for itself).
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(2)?;
    ///     let handles = (0..4u64)
    ///         .map(|i| pool.submit(|x: u64| x * 2, i))
    ///         .collect::<Result<Vec<_>, _>>()?;
    ///     pool.join()?; // closes the pool, then waits for the queued work
    ///     for mut h in handles {
    ///         assert!(h.try_wait().is_ok()); // every result is there: no wait
    ///     }
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Closed`-style misuse is not an error: joining an open pool closes it first. The process
    /// backend returns `Closed` when the pool is used from another process than its creator;
    /// the thread and tokio backends never fail here.
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime). The thread and process backends never panic
    /// here; they block the calling thread.
    fn join(&self) -> Result<(), PoolError>;

    /// Stops the workers now; unfinished tasks yield `TaskError::Cancelled`.
    ///
    /// Queued tasks are cancelled on every backend. A running task is killed with its worker on
    /// the process backend and aborted on the tokio backend (a blocking closure runs on in the
    /// background, its result discarded); on the thread backend it runs to its end and
    /// delivers its result, since an OS thread cannot be stopped.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _, Pool as _, TaskError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let (started, gate) = (B::event()?, B::event()?);
    ///     let (s, g) = (started.clone(), gate.clone());
    ///     let running = pool.submit(move |x: u32| { s.set(); g.wait(); x }, 1)?;
    ///     let queued = pool.submit(|x: u32| x, 2)?;
    ///     started.wait(); // the one worker is busy
    ///     pool.terminate();
    ///     assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    ///     gate.set();
    ///     // Where the pool cannot give up on a running task (threads), it finishes.
    ///     let expected = if B::TASK_TIMEOUT { Err(TaskError::Cancelled) } else { Ok(1) };
    ///     assert_eq!(running.wait(), expected);
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn terminate(&self);
}

/// Handle to one task submitted to a [`Pool`].
///
/// Dropping the handle abandons the result; the task still runs.
///
/// ```
/// use uniconc::{Backend, Pool as _, TaskHandle as _};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::pool(2)?;
///     let handles = ["a", "bb", "ccc"]
///         .into_iter()
///         .map(|s| pool.submit(|s: String| s.len(), s.to_string()))
///         .collect::<Result<Vec<_>, _>>()?;
///     let lens = handles.into_iter().map(|h| h.wait()).collect::<Result<Vec<_>, _>>()?;
///     assert_eq!(lens, [1, 2, 3]);
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait TaskHandle<R>: Send + 'static {
    /// Waits for the task's result.
    ///
    /// ```
    /// use uniconc::{Backend, Pool as _, TaskError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     assert_eq!(pool.submit(|x: u32| x * 3, 5)?.wait()?, 15);
    ///     let bad = pool.submit(|_: u32| -> u32 { panic!("bad arg") }, 0)?;
    ///     assert_eq!(bad.wait(), Err(TaskError::Panicked("bad arg".into())));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Panicked(message)` if the task panicked; `WorkerDied(_)` if its worker process died
    /// (process backend); `DeadlineExceeded` past the pool's `task_timeout` (process and
    /// tokio backends); `Cancelled` if the pool was terminated first; `AlreadyTaken` if an
    /// earlier `wait_deadline`/`try_wait` took the result; `Failed(_)` if the argument or the
    /// result could not be carried (process backend).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime). The thread and process backends never panic
    /// here; they block the calling thread.
    fn wait(self) -> Result<R, TaskError>
    where
        Self: Sized;

    /// Waits for the result until `deadline` (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Event as _, Pool as _, TaskError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let gate = B::event()?;
    ///     let g = gate.clone();
    ///     let mut h = pool.submit(move |x: u32| { g.wait(); x }, 4)?;
    ///     let soon = Instant::now() + Duration::from_millis(5);
    ///     assert_eq!(h.wait_deadline(Some(soon)), Err(TaskError::Timeout));
    ///     gate.set();
    ///     assert_eq!(h.wait_deadline(None), Ok(4)); // the same handle, waited on again
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be waited on again); otherwise as
    /// [`wait`](TaskHandle::wait).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime). The thread and process backends never panic
    /// here; they block the calling thread.
    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<R, TaskError>;

    /// Waits at most `timeout` for the result.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Event as _, Pool as _, TaskError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let gate = B::event()?;
    ///     let g = gate.clone();
    ///     let mut h = pool.submit(move |x: u32| { g.wait(); x }, 4)?;
    ///     assert_eq!(h.wait_timeout(Duration::from_millis(5)), Err(TaskError::Timeout));
    ///     gate.set();
    ///     assert_eq!(h.wait_timeout(Duration::from_secs(60)), Ok(4));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be waited on again); otherwise as
    /// [`wait`](TaskHandle::wait).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime). The thread and process backends never panic
    /// here; they block the calling thread.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<R, TaskError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Returns the result if the task has finished, without waiting.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _, Pool as _, TaskError, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let gate = B::event()?;
    ///     let g = gate.clone();
    ///     let mut h = pool.submit(move |x: u32| { g.wait(); x }, 4)?;
    ///     assert_eq!(h.try_wait(), Err(TaskError::Timeout));
    ///     gate.set();
    ///     assert_eq!(h.wait_deadline(None), Ok(4));
    ///     assert_eq!(h.try_wait(), Err(TaskError::AlreadyTaken)); // the result is taken once
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if it has not; otherwise as [`wait`](TaskHandle::wait).
    fn try_wait(&mut self) -> Result<R, TaskError> {
        self.wait_deadline(Some(Instant::now()))
    }

    /// Waits for the result without blocking the executor.
    ///
    /// A handle belongs to the process that submitted the task (process backend: moved into a
    /// forked child it reports `Failed`), so await it on an executor of this process, as here
    /// on a thread running its own runtime.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Pool as _, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let mut task = pool.submit(|x: u64| x + 1, 41)?;
    ///     let waiter = uniconc::thread::spawn_async(async move { task.wait_async().await })?;
    ///     assert_eq!(waiter.join()?, Ok(42));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`wait`](TaskHandle::wait).
    ///
    /// # Cancel safety
    /// Dropping the future leaves the handle waitable.
    fn wait_async(&mut self) -> impl Future<Output = Result<R, TaskError>> + Send + '_;

    /// `true` once the result is ready.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _, Pool as _, TaskHandle as _};
    ///
    /// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
    ///     let pool = B::pool(1)?;
    ///     let gate = B::event()?;
    ///     let g = gate.clone();
    ///     let mut h = pool.submit(move |x: u32| { g.wait(); x }, 4)?;
    ///     assert!(!h.is_finished()); // held at the gate
    ///     gate.set();
    ///     while !h.is_finished() {
    ///         std::thread::yield_now();
    ///     }
    ///     assert_eq!(h.try_wait(), Ok(4));
    ///     Ok(())
    /// }
    ///
    /// run::<uniconc::thread::Thread>()?; // or any other backend
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_finished(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_zeroes() {
        let ok = PoolConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            PoolConfig {
                workers: 0,
                ..ok.clone()
            },
            PoolConfig {
                chunk_size: Some(0),
                ..ok.clone()
            },
            PoolConfig {
                max_tasks_per_worker: Some(0),
                ..ok.clone()
            },
            PoolConfig {
                task_timeout: Some(Duration::ZERO),
                ..ok.clone()
            },
        ] {
            assert_eq!(
                bad.validate().unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument
            );
        }
    }

    #[test]
    fn chunk_heuristic() {
        let c = PoolConfig {
            workers: 2,
            ..PoolConfig::default()
        };
        assert_eq!(c.chunk_size_for(Some(1000)), 125);
        assert_eq!(c.chunk_size_for(Some(1)), 1);
        assert_eq!(c.chunk_size_for(None), 1);
        let c = PoolConfig {
            chunk_size: Some(7),
            ..c
        };
        assert_eq!(c.chunk_size_for(Some(1000)), 7);
    }
}
