//! [`Pool`]: a concurrency-limited set of tasks.
//!
//! There are no long-lived workers: each job (one `submit`, or one chunk of a `map`/`imap`) is a
//! task that first takes one of `workers` permits from a semaphore, so at most `workers` jobs
//! run at once. A synchronous closure runs on tokio's blocking pool (`spawn_blocking`, it may
//! block or burn CPU); an async closure ([`Pool::map_async`], [`Pool::submit_async`]) runs in
//! the task itself.
//!
//! Jobs start in submission order (the permit request is registered on the submitting thread;
//! tokio's semaphore is FIFO), so with one worker they run one after another as submitted.
//!
//! Every job is listed (its `AbortHandle`) until it ends, so [`terminate`](uniconc_core::Pool::terminate)
//! and dropping the pool abort them, and [`join`](uniconc_core::Pool::join) waits for the list
//! to empty.
//!
//! `task_timeout` applies to each `submit`; a `map`/`imap` chunk of `k` items (see
//! `chunk_size`) gets `k × task_timeout`, and on expiry every item of the chunk reports
//! `DeadlineExceeded`. Use `chunk_size(1)` for a per-item deadline.
//!
//! # What tokio cannot do
//!
//! A synchronous closure cannot be stopped once it runs (tokio cannot abort blocking work).
//! `terminate`, `task_timeout` and dropping the pool report its item at once (`Cancelled` /
//! `DeadlineExceeded`) and give its permit back, but the closure itself runs to its end in the
//! background. Async jobs are truly stopped. `max_tasks_per_worker` is accepted and has no
//! effect (there are no long-lived workers to replace). `task_timeout` needs the runtime's
//! time driver (the crate's own runtime has it; building a pool with a `task_timeout` on a
//! user runtime without `enable_time` is refused with `InvalidArgument`).
//!
//! ```
//! use std::time::Duration;
//! use uniconc::{Pool as _, TaskError, TaskHandle as _};
//! let pool = uniconc::tokio::Pool::builder()
//!     .workers(2)
//!     .task_timeout(Duration::from_millis(10))
//!     .build()?;
//! // An async job past its deadline is truly stopped (its future is dropped).
//! let stuck = pool.submit_async(|_: ()| std::future::pending::<u8>(), ())?;
//! assert_eq!(stuck.wait(), Err(TaskError::DeadlineExceeded));
//! assert_eq!(pool.map(|x: u8| x + 1, 0..3)?, [1, 2, 3]); // the pool goes on
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use uniconc_core::imap::ReorderWindow;
use uniconc_core::{Error, Message, Order, PoolConfig, PoolError, TaskError, panic_message};

use crate::channel::{Receiver, Sender, unbounded};
use crate::runtime::{block_on, try_handle};

/// Jobs that have not ended yet.
#[derive(Default)]
struct Jobs {
    /// `None` for the instant between listing a job and spawning it.
    live: HashMap<u64, Option<AbortHandle>>,
    next_id: u64,
    /// `terminate` ran: a job whose abort handle arrives late is aborted at once.
    terminated: bool,
}

struct Inner {
    handle: Handle,
    /// `workers` permits: one per running job. Closed by `terminate`.
    limit: Arc<tokio::sync::Semaphore>,
    /// No new jobs once set. Written under the `jobs` lock (so a job is either refused or
    /// listed before `terminate` aborts the list); `Relaxed` reads elsewhere are snapshots.
    closed: AtomicBool,
    jobs: Mutex<Jobs>,
    /// Woken when `jobs.live` becomes empty.
    idle: Notify,
    task_timeout: Option<Duration>,
}

impl Inner {
    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        // Only map inserts and removes run under this lock: poison cannot leave it half-done.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unlists a job when its task ends, however it ends (completion, panic, abort).
struct Unlist {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Unlist {
    fn drop(&mut self) {
        let mut jobs = self.inner.jobs();
        jobs.live.remove(&self.id);
        let empty = jobs.live.is_empty();
        drop(jobs);
        if empty {
            self.inner.idle.notify_waiters();
        }
    }
}

/// A pool of at most `workers` concurrent tasks.
///
/// ```
/// use uniconc::Pool as _;
/// let pool = uniconc::tokio::pool(2)?;
/// let squares = pool.map(|x: u64| x * x, 1..=4)?;
/// assert_eq!(squares, vec![1, 4, 9, 16]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping the pool terminates it (see [`terminate`](uniconc_core::Pool::terminate)).
pub struct Pool {
    config: PoolConfig,
    inner: Arc<Inner>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Handle to one job submitted to a [`Pool`].
///
/// Wait for the result with the [`uniconc::TaskHandle`](uniconc_core::TaskHandle) methods: blocking (outside a
/// runtime or on a multi-thread one), timed, or `wait_async`. Dropping the handle detaches the
/// job: it still runs.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Event as _, TaskError, TaskHandle as _};
/// let pool = uniconc::tokio::pool(1)?;
/// let go = uniconc::tokio::event()?;
/// let g = go.clone();
/// let wait_then = move |x: u32| {
///     let g = g.clone();
///     async move {
///         g.wait_async().await;
///         x
///     }
/// };
/// let mut task = pool.submit_async(wait_then, 5)?;
/// assert_eq!(task.wait_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
/// go.set();
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// assert_eq!(rt.block_on(task.wait_async()), Ok(5)); // the async form, on any runtime
/// assert_eq!(task.try_wait(), Err(TaskError::AlreadyTaken));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TaskHandle<R> {
    /// `None` once the result was taken.
    inner: Option<tokio::task::JoinHandle<Result<R, TaskError>>>,
}

impl<R> fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("taken", &self.inner.is_none())
            .finish()
    }
}

fn task_error(e: tokio::task::JoinError) -> TaskError {
    if e.is_panic() {
        TaskError::Panicked(panic_message(&*e.into_panic()))
    } else if e.is_cancelled() {
        TaskError::Cancelled
    } else {
        TaskError::Failed(e.to_string())
    }
}

fn flatten<R>(r: Result<Result<R, TaskError>, tokio::task::JoinError>) -> Result<R, TaskError> {
    r.map_err(task_error).and_then(|r| r)
}

impl<R: Send + 'static> uniconc_core::TaskHandle<R> for TaskHandle<R> {
    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]).
    fn wait(mut self) -> Result<R, TaskError> {
        self.wait_deadline(None)
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<R, TaskError> {
        let h = self.inner.as_mut().ok_or(TaskError::AlreadyTaken)?;
        match block_on(h, deadline) {
            None => Err(TaskError::Timeout),
            Some(r) => {
                self.inner = None;
                flatten(r)
            }
        }
    }

    async fn wait_async(&mut self) -> Result<R, TaskError> {
        let h = self.inner.as_mut().ok_or(TaskError::AlreadyTaken)?;
        let r = h.await;
        self.inner = None;
        flatten(r)
    }

    fn is_finished(&self) -> bool {
        self.inner.as_ref().is_none_or(|h| h.is_finished())
    }
}

/// Runs `f` on each item of a chunk, catching each item's panic on its own.
fn run_chunk<T, R, F: Fn(T) -> R>(f: &F, items: Vec<T>) -> Vec<Result<R, TaskError>> {
    items
        .into_iter()
        .map(|x| {
            catch_unwind(AssertUnwindSafe(|| f(x)))
                .map_err(|p| TaskError::Panicked(panic_message(&*p)))
        })
        .collect()
}

/// The deadline of a chunk of `n` items: `n` times the per-task timeout.
fn chunk_timeout(t: Option<Duration>, n: usize) -> Option<Duration> {
    t.map(|t| t.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Runs a blocking closure on the blocking pool, with an optional deadline.
async fn blocking_job<O: Send + 'static>(
    work: impl FnOnce() -> O + Send + 'static,
    timeout: Option<Duration>,
) -> Result<O, TaskError> {
    let h = tokio::task::spawn_blocking(work);
    let r = match timeout {
        Some(t) => tokio::time::timeout(t, h)
            .await
            .map_err(|_| TaskError::DeadlineExceeded)?,
        None => h.await,
    };
    r.map_err(task_error)
}

impl Pool {
    /// Spawns the job `make()` as a listed task that first takes a permit. `make` is called
    /// only once the pool has accepted the job, so a refused job builds nothing (and drops
    /// nothing that would report).
    fn spawn_job<O, Fut>(
        &self,
        make: impl FnOnce() -> Fut,
    ) -> Result<tokio::task::JoinHandle<O>, PoolError>
    where
        O: Send + 'static,
        Fut: Future<Output = O> + Send + 'static,
    {
        let id = {
            let mut jobs = self.inner.jobs();
            if self.inner.closed.load(Ordering::Relaxed) {
                return Err(PoolError::Closed);
            }
            let id = jobs.next_id;
            jobs.next_id += 1;
            // Listed before it exists, so `join` cannot miss it; the abort handle follows.
            jobs.live.insert(id, None);
            id
        };
        let unlist = Unlist {
            inner: self.inner.clone(),
            id,
        };
        // Jobs start in submission order: tokio's semaphore is FIFO in the order waiters are
        // first polled, so the permit request is polled here, on the submitting thread, not
        // when the task happens to be polled (two fresh tasks race on two workers). Boxed so
        // the registered request can move into the task.
        let mut acquire = Box::pin(self.inner.limit.clone().acquire_owned());
        let early = acquire
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        let job = make();
        // Not under the lock: a runtime that is shutting down drops the future right here,
        // and `Unlist` takes the lock.
        let h = self.inner.handle.spawn(async move {
            let _unlist = unlist;
            let permit = match early {
                Poll::Ready(p) => p,
                // The task's first poll replaces the no-op waker; a permit granted in between
                // is seen by that poll.
                Poll::Pending => acquire.await,
            };
            let Ok(_permit) = permit else {
                // `terminate` closed the semaphore: this job must not start. It is (or is
                // about to be) aborted, which reports `Cancelled`; wait for that.
                return std::future::pending().await;
            };
            job.await
        });
        let mut jobs = self.inner.jobs();
        // Still listed means still running (`Unlist` removes the entry when the task ends).
        if let Some(slot) = jobs.live.get_mut(&id) {
            *slot = Some(h.abort_handle());
            if jobs.terminated {
                h.abort();
            }
        }
        Ok(h)
    }

    /// Runs the async `f(arg)` as a job: at most `workers` run at once.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use uniconc::TaskHandle as _;
    /// let pool = uniconc::tokio::pool(2).unwrap();
    /// let mut h = pool.submit_async(|x: u32| async move { x + 1 }, 1).unwrap();
    /// assert_eq!(h.wait_async().await.unwrap(), 2);
    /// # });
    /// ```
    ///
    /// # Errors
    /// `Closed` if the pool is closed.
    ///
    /// # Cancel safety
    /// Not a future: the job is queued at once and runs whether or not its handle is ever
    /// waited on.
    pub fn submit_async<T, R, F, Fut>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(T) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        let timeout = self.inner.task_timeout;
        let h = self.spawn_job(move || async move {
            let fut = f(arg);
            match timeout {
                Some(t) => tokio::time::timeout(t, fut)
                    .await
                    .map_err(|_| TaskError::DeadlineExceeded),
                None => Ok(fut.await),
            }
        })?;
        Ok(TaskHandle { inner: Some(h) })
    }

    /// Runs the async closure `f` on every item, at most `workers` at once; results in input
    /// order. A panicking item yields `TaskError::Panicked`; `task_timeout` truly stops an
    /// item (its future is dropped) and yields `DeadlineExceeded`.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = uniconc::tokio::pool(4).unwrap();
    /// let v = pool.map_async(|x: u32| async move { x * 2 }, 0..5).await.unwrap();
    /// assert_eq!(v, vec![0, 2, 4, 6, 8]);
    /// # });
    /// ```
    ///
    /// # Errors
    /// `Task { index, error }` for the first failed item in input order (the others still
    /// ran); `Closed` if the pool is closed.
    ///
    /// # Cancel safety
    /// Dropping the future detaches the items already started (they run on, and stop with
    /// the pool).
    pub async fn map_async<T, R, F, Fut, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        let f = Arc::new(f);
        let mut handles = Vec::new();
        for item in items {
            let f = f.clone();
            handles.push(self.submit_async(move |x| f(x), item)?);
        }
        let mut out = Vec::with_capacity(handles.len());
        let mut first_err = None;
        for (index, mut h) in handles.into_iter().enumerate() {
            match uniconc_core::TaskHandle::wait_async(&mut h).await {
                Ok(v) => out.push(v),
                Err(error) => {
                    first_err.get_or_insert(PoolError::Task { index, error });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Spawns one chunk of a `map`/`imap` whose results go to `tx` (tagged with `index`), even
    /// if the job is aborted or times out (then every item of the chunk gets that error).
    fn spawn_chunk<T, R, F>(
        &self,
        f: &Arc<F>,
        index: u64,
        chunk: Vec<T>,
        tx: &Sender<(u64, Vec<Result<R, TaskError>>)>,
    ) -> Result<(), PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        /// Reports `Cancelled` for the chunk if the job is dropped before reporting.
        struct Report<R: Send + 'static> {
            tx: Sender<(u64, Vec<Result<R, TaskError>>)>,
            index: u64,
            n: usize,
            done: bool,
        }
        impl<R: Send + 'static> Drop for Report<R> {
            fn drop(&mut self) {
                if !self.done {
                    let errs = (0..self.n).map(|_| Err(TaskError::Cancelled)).collect();
                    // An unbounded send never waits; if the iterator is gone, nobody cares.
                    let _ = uniconc_core::Sender::try_send(&self.tx, (self.index, errs));
                }
            }
        }
        let n = chunk.len();
        let f = f.clone();
        let timeout = chunk_timeout(self.inner.task_timeout, n);
        // `Report` is built only once the pool accepted the job (inside `make`), and is
        // captured by the future, so it reports even if the task never starts.
        self.spawn_job(move || {
            let mut report = Report {
                tx: tx.clone(),
                index,
                n,
                done: false,
            };
            async move {
                let results = match blocking_job(move || run_chunk(&*f, chunk), timeout).await {
                    Ok(v) => v,
                    Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
                };
                report.done = true;
                let _ = uniconc_core::Sender::try_send(&report.tx, (report.index, results));
            }
        })?;
        Ok(())
    }
}

/// The iterator of `imap_with` (and so of `imap` / `imap_unordered`): at most `2 × workers`
/// chunks in flight.
struct Imap<'p, T, R, F, It> {
    pool: &'p Pool,
    f: Arc<F>,
    items: It,
    items_done: bool,
    /// The pool refused a chunk (closed): yield one `Cancelled` after the in-flight results.
    refused: bool,
    chunk: usize,
    /// At most `2 × workers` chunks submitted and not yet released.
    window: ReorderWindow<Vec<Result<R, TaskError>>>,
    tx: Sender<(u64, Vec<Result<R, TaskError>>)>,
    rx: Receiver<(u64, Vec<Result<R, TaskError>>)>,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<'p, T, R, F, It> Imap<'p, T, R, F, It>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
    It: Iterator<Item = T>,
{
    fn new(pool: &'p Pool, f: F, items: It, order: Order) -> Self {
        let (tx, rx) = unbounded().expect("an unbounded channel never fails");
        Imap {
            pool,
            f: Arc::new(f),
            items,
            items_done: false,
            refused: false,
            chunk: pool.config.chunk_size_for(None),
            window: ReorderWindow::new(pool.config.workers.saturating_mul(2), order),
            tx,
            rx,
            _marker: std::marker::PhantomData,
        }
    }

    fn fill(&mut self) {
        // `Order::Input` counts the chunks that finished early too (see `ReorderWindow`): a
        // slow first chunk must not let the rest of an endless input pile up behind it.
        while !self.items_done && !self.refused && self.window.has_room() {
            let chunk: Vec<T> = self.items.by_ref().take(self.chunk).collect();
            if chunk.is_empty() {
                self.items_done = true;
                break;
            }
            match self
                .pool
                .spawn_chunk(&self.f, self.window.submitted(), chunk, &self.tx)
            {
                Ok(()) => {
                    self.window.submit();
                }
                Err(_) => self.refused = true,
            }
        }
    }
}

impl<T, R, F, It> Iterator for Imap<'_, T, R, F, It>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
    It: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.window.pop() {
                return Some(r);
            }
            self.fill();
            if self.window.in_flight() == 0 {
                if self.refused {
                    self.refused = false;
                    self.items_done = true;
                    return Some(Err(TaskError::Cancelled));
                }
                return None;
            }
            // Every spawned chunk reports exactly once (its `Report` guard), and we hold a
            // sender, so this cannot see `Disconnected`.
            let (index, results) =
                uniconc_core::Receiver::recv(&self.rx).expect("the iterator holds a sender");
            self.window.receive(index, results);
        }
    }
}

/// `true` if `handle`'s runtime has a time driver. tokio offers no query for it: creating a
/// `Sleep` panics without one, so that is the probe (tokio's panic message is printed once).
fn has_time_driver(handle: &Handle) -> bool {
    let _enter = handle.enter();
    catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
}

impl uniconc_core::Pool for Pool {
    type TaskHandle<R: Message> = TaskHandle<R>;

    /// # Errors
    /// `InvalidArgument` for out-of-range settings (as [`PoolConfig::validate`] says, or more
    /// workers than tokio's semaphore can count) and for a `task_timeout` on a runtime
    /// without a time driver; `Os` if the crate's own runtime could not be started.
    fn with_config(config: PoolConfig) -> Result<Self, Error> {
        config.validate()?;
        uniconc_core::validate::pool_workers(config.workers, tokio::sync::Semaphore::MAX_PERMITS)?;
        let handle = try_handle()?;
        if config.task_timeout.is_some() && !has_time_driver(&handle) {
            return Err(Error::invalid_argument(
                "task_timeout needs a runtime with the time driver (build it with \
                 `enable_time()` or `enable_all()`)",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                handle,
                limit: Arc::new(tokio::sync::Semaphore::new(config.workers)),
                closed: AtomicBool::new(false),
                jobs: Mutex::new(Jobs::default()),
                idle: Notify::new(),
                task_timeout: config.task_timeout,
            }),
            config,
        })
    }

    fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// # Panics
    /// On a task of a current-thread runtime (it waits; see [`crate::runtime`]).
    fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        let items: Vec<T> = items.into_iter().collect();
        let n = items.len();
        let chunk = self.config.chunk_size_for(Some(n));
        let f = Arc::new(f);
        let (tx, rx) = unbounded().expect("an unbounded channel never fails");
        let mut chunks = 0;
        let mut items = items.into_iter();
        loop {
            let c: Vec<T> = items.by_ref().take(chunk).collect();
            if c.is_empty() {
                break;
            }
            self.spawn_chunk(&f, chunks, c, &tx)?;
            chunks += 1;
        }
        let mut done = BTreeMap::new();
        for _ in 0..chunks {
            let (i, r) = uniconc_core::Receiver::recv(&rx).expect("the caller holds a sender");
            done.insert(i, r);
        }
        let mut out = Vec::with_capacity(n);
        for (index, r) in done.into_values().flatten().enumerate() {
            match r {
                Ok(v) => out.push(v),
                Err(error) => return Err(PoolError::Task { index, error }),
            }
        }
        Ok(out)
    }

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
        I: IntoIterator<Item = T>,
    {
        Imap::new(self, f, items.into_iter(), order)
    }

    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let timeout = self.inner.task_timeout;
        let h = self.spawn_job(move || blocking_job(move || f(arg), timeout))?;
        Ok(TaskHandle { inner: Some(h) })
    }

    fn close(&self) {
        let _jobs = self.inner.jobs();
        self.inner.closed.store(true, Ordering::Relaxed);
    }

    /// Closes the pool and waits until every job has ended.
    ///
    /// # Panics
    /// On a task of a current-thread runtime (it waits; see [`crate::runtime`]).
    fn join(&self) -> Result<(), PoolError> {
        self.close();
        let mut wait = pin!(async {
            loop {
                // Created before the check: `Unlist` empties the list, then notifies.
                let idle = self.inner.idle.notified();
                if self.inner.jobs().live.is_empty() {
                    return;
                }
                idle.await;
            }
        });
        block_on(&mut wait, None);
        Ok(())
    }

    fn terminate(&self) {
        let live = {
            let mut jobs = self.inner.jobs();
            self.inner.closed.store(true, Ordering::Relaxed);
            jobs.terminated = true;
            jobs.live.values().flatten().cloned().collect::<Vec<_>>()
        };
        // First stop queued jobs from starting (a permit freed by an aborted job must not
        // let a queued one run in the instant before it is aborted too), then abort.
        self.inner.limit.close();
        for h in live {
            h.abort();
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool: every unfinished job is aborted (see the module docs for what
    /// that means for a running synchronous closure).
    fn drop(&mut self) {
        uniconc_core::Pool::terminate(self);
    }
}
