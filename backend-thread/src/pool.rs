//! [`Pool`]: a fixed set of OS threads pulling jobs from one crossbeam channel.
//!
//! - `map` splits its input into chunks (the configured `chunk_size`, or about four chunks per
//!   worker) and sends one job per chunk, so a million trivial items cost a handful of channel
//!   round trips. A chunk runs its items in a plain loop inside `catch_unwind`; after a panic
//!   the loop resumes at the next item, so the other items still run.
//! - `imap` / `imap_unordered` keep at most `2 × workers` chunks submitted and not yet
//!   yielded, pulling the input only as results are consumed: an endless input is fine.
//! - `max_tasks_per_worker`: a worker that ran that many jobs starts its replacement and exits.
//! - `close` drops the job channel's sender (workers drain the queue and exit); `terminate`
//!   also cancels every queued job (`TaskError::Cancelled`). A running job cannot be stopped
//!   (an OS thread cannot be killed), so it finishes and its result is delivered; for the same
//!   reason `task_timeout` is refused (`Unsupported`).
//! - Dropping the pool terminates it and joins every worker thread.
//!
//! Every job, if dropped without running (a queue cleared by `terminate`), reports
//! `Cancelled` to whoever waits for it, so no waiter can hang on a lost job.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crossbeam_channel as cb;
use uniconc_core::{Error, Message, PoolConfig, PoolError, TaskError, panic_message};

use crate::spawn::{Completion, TakeError, TakeFuture};

/// What a job is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Cancel,
}

/// One unit of work. Dropped without being run, it cancels itself.
struct Job {
    work: Option<Box<dyn FnOnce(Mode) + Send>>,
}

impl Job {
    fn new(work: impl FnOnce(Mode) + Send + 'static) -> Self {
        Self {
            work: Some(Box::new(work)),
        }
    }

    fn execute(mut self, mode: Mode) {
        if let Some(w) = self.work.take() {
            w(mode);
        }
    }

    /// Drops the job without running or cancelling it (its submitter handles the refusal).
    fn discard(mut self) {
        drop(self.work.take());
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(w) = self.work.take() {
            w(Mode::Cancel);
        }
    }
}

struct Inner {
    config: PoolConfig,
    /// `None` once closed.
    job_tx: Mutex<Option<cb::Sender<Job>>>,
    job_rx: cb::Receiver<Job>,
    /// Set by `terminate`: workers cancel instead of running. Release/Acquire: a worker that
    /// sees it sees the termination's other effects (nothing else depends on it).
    terminated: AtomicBool,
    /// Handles of every worker started and not joined yet (replacements included).
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Inner {
    /// Queues `job`; hands it back if the pool is closed.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let tx = self.job_tx.lock().unwrap_or_else(PoisonError::into_inner);
        match tx.as_ref() {
            // The pool holds a receiver, so this send cannot fail; if it did, the job comes
            // back inside the error.
            Some(tx) => tx.send(job).map_err(|e| e.into_inner()),
            None => Err(job),
        }
    }

    fn is_closed(&self) -> bool {
        self.job_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn close(&self) {
        drop(
            self.job_tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

fn start_worker(inner: &Arc<Inner>) -> Result<(), Error> {
    let me = inner.clone();
    let handle = std::thread::Builder::new()
        .name("uniconc-pool".into())
        .spawn(move || worker(me))
        .map_err(|e| Error::os("starting a pool worker thread", e))?;
    inner
        .workers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(handle);
    Ok(())
}

fn worker(inner: Arc<Inner>) {
    let mut done = 0usize;
    while let Ok(job) = inner.job_rx.recv() {
        // Acquire: pairs with the Release store in `terminate`.
        if inner.terminated.load(Ordering::Acquire) {
            job.execute(Mode::Cancel);
            continue;
        }
        job.execute(Mode::Run);
        done += 1;
        if inner.config.max_tasks_per_worker.is_some_and(|m| done >= m) {
            // Start the replacement before leaving; if that fails, keep serving instead of
            // leaving the pool short of a worker.
            if start_worker(&inner).is_ok() {
                return;
            }
            done = 0;
        }
    }
}

/// A pool of OS threads.
///
/// ```
/// use uniconc_core::Pool as _;
/// let pool = uniconc_thread::pool(2)?;
/// assert_eq!(pool.map(|x: u32| x * 2, 0..4).unwrap(), [0, 2, 4, 6]);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.inner.config)
            .field("closed", &self.inner.is_closed())
            .finish()
    }
}

/// One chunk's outcome in `map`: its results, or the first failure (absolute index).
type ChunkResult<R> = Result<Vec<R>, (usize, TaskError)>;

/// Runs `f` over `items` (starting at absolute index `start`); every item runs even after a
/// panic; returns the results or the first failure.
fn run_chunk<T, R, F: Fn(T) -> R>(f: &F, items: Vec<T>, start: usize) -> ChunkResult<R> {
    let mut out = Vec::with_capacity(items.len());
    let mut first_err: Option<(usize, TaskError)> = None;
    let mut iter = items.into_iter().enumerate();
    let mut current = 0usize;
    loop {
        let r = catch_unwind(AssertUnwindSafe(|| {
            for (k, item) in iter.by_ref() {
                current = k;
                let r = f(item);
                if first_err.is_none() {
                    out.push(r);
                }
            }
        }));
        match r {
            Ok(()) => break,
            Err(p) => {
                if first_err.is_none() {
                    first_err = Some((start + current, TaskError::Panicked(panic_message(&*p))));
                }
            }
        }
    }
    match first_err {
        None => Ok(out),
        Some(e) => Err(e),
    }
}

/// Runs `f` over `items`, one result per item.
fn run_each<T, R, F: Fn(T) -> R>(f: &F, items: Vec<T>) -> Vec<Result<R, TaskError>> {
    items
        .into_iter()
        .map(|item| {
            catch_unwind(AssertUnwindSafe(|| f(item)))
                .map_err(|p| TaskError::Panicked(panic_message(&*p)))
        })
        .collect()
}

impl Pool {
    /// Starts a pool with `config` (validated here too).
    ///
    /// # Errors
    /// `InvalidArgument` for out-of-range settings; `Unsupported` for `task_timeout` (a thread
    /// cannot be stopped); `Os` if a thread could not be started.
    pub fn with_config(config: PoolConfig) -> Result<Self, Error> {
        config.validate()?;
        if config.task_timeout.is_some() {
            return Err(Error::unsupported(
                "task_timeout needs a unit that can be stopped (process or tokio backend); an OS \
                 thread cannot be killed",
            ));
        }
        let (tx, rx) = cb::unbounded();
        let inner = Arc::new(Inner {
            job_tx: Mutex::new(Some(tx)),
            job_rx: rx,
            terminated: AtomicBool::new(false),
            workers: Mutex::new(Vec::with_capacity(config.workers)),
            config,
        });
        let pool = Self { inner };
        for _ in 0..pool.inner.config.workers {
            // On failure, dropping `pool` stops the workers already started.
            start_worker(&pool.inner)?;
        }
        Ok(pool)
    }

    /// Runs `f` on every item; results in input order. Like [`uniconc_core::Pool::map`], with
    /// only `Send` bounds.
    ///
    /// # Errors
    /// `Task { index, error }` for the first failed item (the others still ran); `Closed`.
    pub fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        if self.inner.is_closed() {
            return Err(PoolError::Closed);
        }
        let items: Vec<T> = items.into_iter().collect();
        let n = items.len();
        let chunk = self.inner.config.chunk_size_for(Some(n));
        let f = Arc::new(f);
        let (rtx, rrx) = cb::unbounded::<(usize, ChunkResult<R>)>();
        let mut iter = items.into_iter();
        let mut chunks = 0usize;
        let mut start = 0usize;
        while start < n {
            let part: Vec<T> = iter.by_ref().take(chunk).collect();
            let len = part.len();
            let (f, rtx, index) = (f.clone(), rtx.clone(), chunks);
            self.inner
                .submit(Job::new(move |mode| {
                    let r = match mode {
                        Mode::Run => run_chunk(&*f, part, start),
                        Mode::Cancel => Err((start, TaskError::Cancelled)),
                    };
                    let _ = rtx.send((index, r));
                }))
                .map_err(|job| {
                    job.discard();
                    PoolError::Closed
                })?;
            chunks += 1;
            start += len;
        }
        drop(rtx);
        let mut parts: Vec<Option<Vec<R>>> = (0..chunks).map(|_| None).collect();
        let mut first_err: Option<(usize, TaskError)> = None;
        for _ in 0..chunks {
            // Every job sends exactly once (run, cancel, or cancel on drop), so this cannot
            // disconnect early; if it did, report the items as cancelled rather than hang.
            let Ok((index, r)) = rrx.recv() else {
                return Err(PoolError::Task {
                    index: 0,
                    error: TaskError::Cancelled,
                });
            };
            match r {
                Ok(v) => parts[index] = Some(v),
                Err((i, e)) => {
                    if first_err.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_err = Some((i, e));
                    }
                }
            }
        }
        if let Some((index, error)) = first_err {
            return Err(PoolError::Task { index, error });
        }
        let mut out = Vec::with_capacity(n);
        for p in parts {
            out.extend(p.expect("every chunk reported a result"));
        }
        Ok(out)
    }

    /// Runs `f` lazily, results in input order. Like [`uniconc_core::Pool::imap`], with only
    /// `Send` bounds.
    pub fn imap<T, R, F, I>(&self, f: F, items: I) -> Imap<T, R, F, I::IntoIter>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Imap::new(self, f, items.into_iter(), true)
    }

    /// Runs `f` lazily, results in completion order. Like
    /// [`uniconc_core::Pool::imap_unordered`], with only `Send` bounds.
    pub fn imap_unordered<T, R, F, I>(&self, f: F, items: I) -> Imap<T, R, F, I::IntoIter>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Imap::new(self, f, items.into_iter(), false)
    }

    /// Runs `f(arg)` on a worker. Like [`uniconc_core::Pool::submit`], with only `Send` bounds.
    ///
    /// # Errors
    /// `Closed` if the pool is closed.
    pub fn submit<T, R, F>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let result = Completion::new();
        let slot = result.clone();
        self.inner
            .submit(Job::new(move |mode| {
                slot.complete(match mode {
                    Mode::Run => catch_unwind(AssertUnwindSafe(|| f(arg)))
                        .map_err(|p| TaskError::Panicked(panic_message(&*p))),
                    Mode::Cancel => Err(TaskError::Cancelled),
                });
            }))
            .map_err(|job| {
                job.discard();
                PoolError::Closed
            })?;
        Ok(TaskHandle { result })
    }

    /// Stops accepting work; queued and running tasks finish.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Stops the workers: queued tasks are cancelled (`TaskError::Cancelled`); running ones
    /// finish (an OS thread cannot be interrupted).
    pub fn terminate(&self) {
        // Release: see the field doc.
        self.inner.terminated.store(true, Ordering::Release);
        self.inner.close();
        while let Ok(job) = self.inner.job_rx.try_recv() {
            job.execute(Mode::Cancel);
        }
    }

    /// Closes the pool (if open) and waits for every worker thread to exit.
    ///
    /// # Errors
    /// Never on this backend (a worker thread never unwinds: task panics are caught).
    ///
    /// # Panics
    /// Deadlocks if called from one of the pool's own tasks (it would wait for itself); don't.
    pub fn join(&self) -> Result<(), PoolError> {
        self.inner.close();
        loop {
            let handles = std::mem::take(
                &mut *self
                    .inner
                    .workers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if handles.is_empty() {
                return Ok(());
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}

impl uniconc_core::Pool for Pool {
    type TaskHandle<R: Message> = TaskHandle<R>;

    fn with_config(config: PoolConfig) -> Result<Self, Error> {
        Pool::with_config(config)
    }

    fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Pool::map(self, f, items)
    }

    fn imap<T, R, F, I>(&self, f: F, items: I) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Pool::imap(self, f, items)
    }

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
        Pool::imap_unordered(self, f, items)
    }

    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        Pool::submit(self, f, arg)
    }

    fn close(&self) {
        Pool::close(self);
    }

    fn join(&self) -> Result<(), PoolError> {
        Pool::join(self)
    }

    fn terminate(&self) {
        Pool::terminate(self);
    }
}

/// Lazy iterator of [`Pool::imap`] and [`Pool::imap_unordered`].
pub struct Imap<T, R, F, I> {
    inner: Arc<Inner>,
    f: Arc<F>,
    items: std::iter::Fuse<I>,
    chunk: usize,
    /// Most chunks submitted and not yet yielded (ordered) or received (unordered).
    window: usize,
    ordered: bool,
    rtx: cb::Sender<(u64, Vec<Result<R, TaskError>>)>,
    rrx: cb::Receiver<(u64, Vec<Result<R, TaskError>>)>,
    next_submit: u64,
    next_yield: u64,
    received: u64,
    /// Ordered mode: chunks received ahead of their turn.
    pending: BTreeMap<u64, Vec<Result<R, TaskError>>>,
    ready: VecDeque<Result<R, TaskError>>,
    /// The input is exhausted (or the pool refused more work).
    exhausted: bool,
    /// The pool was found closed: one `Cancelled` is yielded at the end.
    closed: bool,
    _item: std::marker::PhantomData<fn(T)>,
}

impl<T, R, F, I> std::fmt::Debug for Imap<T, R, F, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("submitted", &self.next_submit)
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

impl<T, R, F, I> Imap<T, R, F, I>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
    I: Iterator<Item = T>,
{
    fn new(pool: &Pool, f: F, items: I, ordered: bool) -> Self {
        let (rtx, rrx) = cb::unbounded();
        let config = &pool.inner.config;
        Self {
            inner: pool.inner.clone(),
            f: Arc::new(f),
            items: items.fuse(),
            chunk: config.chunk_size_for(None),
            window: config.workers.saturating_mul(2).max(2),
            ordered,
            rtx,
            rrx,
            next_submit: 0,
            next_yield: 0,
            received: 0,
            pending: BTreeMap::new(),
            ready: VecDeque::new(),
            exhausted: false,
            closed: false,
            _item: std::marker::PhantomData,
        }
    }

    fn in_flight(&self) -> u64 {
        if self.ordered {
            self.next_submit - self.next_yield
        } else {
            self.next_submit - self.received
        }
    }

    fn top_up(&mut self) {
        while !self.exhausted && self.in_flight() < self.window as u64 {
            let part: Vec<T> = self.items.by_ref().take(self.chunk).collect();
            if part.is_empty() {
                self.exhausted = true;
                return;
            }
            let (f, rtx, seq) = (self.f.clone(), self.rtx.clone(), self.next_submit);
            let len = part.len();
            let job = Job::new(move |mode| {
                let r = match mode {
                    Mode::Run => run_each(&*f, part),
                    Mode::Cancel => (0..len).map(|_| Err(TaskError::Cancelled)).collect(),
                };
                let _ = rtx.send((seq, r));
            });
            if let Err(job) = self.inner.submit(job) {
                // Closed: the items pulled are not run; the iterator ends with one
                // `Cancelled` once the chunks in flight are yielded.
                job.discard();
                self.exhausted = true;
                self.closed = true;
                return;
            }
            self.next_submit += 1;
        }
    }
}

impl<T, R, F, I> Iterator for Imap<T, R, F, I>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
    I: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            self.top_up();
            if self.next_submit == self.received {
                if std::mem::take(&mut self.closed) {
                    return Some(Err(TaskError::Cancelled));
                }
                return None;
            }
            // We hold a sender, so this cannot disconnect; every job reports exactly once.
            let (seq, results) = self.rrx.recv().ok()?;
            self.received += 1;
            if self.ordered {
                self.pending.insert(seq, results);
                while let Some(v) = self.pending.remove(&self.next_yield) {
                    self.ready.extend(v);
                    self.next_yield += 1;
                }
            } else {
                self.next_yield += 1;
                self.ready.extend(results);
            }
        }
    }
}

/// Handle to a task submitted with [`Pool::submit`].
#[derive(Debug)]
pub struct TaskHandle<R> {
    result: Arc<Completion<Result<R, TaskError>>>,
}

fn task_result<R>(r: Result<Result<R, TaskError>, TakeError>) -> Result<R, TaskError> {
    match r {
        Ok(r) => r,
        Err(TakeError::Timeout) => Err(TaskError::Timeout),
        Err(TakeError::Taken) => Err(TaskError::AlreadyTaken),
    }
}

impl<R: Send + 'static> uniconc_core::TaskHandle<R> for TaskHandle<R> {
    fn wait(self) -> Result<R, TaskError> {
        task_result(self.result.take_deadline(None))
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<R, TaskError> {
        task_result(self.result.take_deadline(deadline))
    }

    fn wait_async(&mut self) -> impl Future<Output = Result<R, TaskError>> + Send + '_ {
        let fut = TakeFuture::new(&self.result);
        async move { task_result(fut.await) }
    }

    fn is_finished(&self) -> bool {
        self.result.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uniconc_core::{Pool as _, TaskHandle as _};

    fn pool(n: usize) -> Pool {
        Pool::new(n).unwrap()
    }

    #[test]
    fn map_keeps_order_and_isolates_panics() {
        let p = pool(2);
        let v = p.map(|x: u64| x * x, 0..10_000u64).unwrap();
        assert_eq!(v, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
        let e = p
            .map(
                |x: u32| {
                    if x == 7 || x == 900 {
                        panic!("bad {x}")
                    } else {
                        x
                    }
                },
                0..1000,
            )
            .unwrap_err();
        match e {
            PoolError::Task {
                index: 7,
                error: TaskError::Panicked(m),
            } => assert_eq!(m, "bad 7"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(p.map(|x: u8| x, [1, 2]).unwrap(), [1, 2]);
    }

    #[test]
    fn task_timeout_is_unsupported_and_zero_workers_refused() {
        let e = Pool::builder()
            .workers(1)
            .task_timeout(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::Unsupported);
        assert_eq!(
            Pool::new(0).unwrap_err().kind(),
            uniconc_core::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn imap_is_lazy_on_an_endless_input() {
        let p = pool(2);
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pulled.clone();
        let items = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let first: Vec<u64> = p
            .imap(|x: u64| x + 1, items)
            .take(10)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, (1..=10).collect::<Vec<_>>());
        assert!(
            pulled.load(Ordering::Relaxed) <= 10 + 4,
            "bounded in flight"
        );
    }

    #[test]
    fn terminate_cancels_queued_tasks() {
        let p = pool(1);
        let (tx, rx) = cb::bounded::<()>(0);
        let blocker = p.submit(move |_: ()| rx.recv().unwrap(), ()).unwrap();
        let queued = p.submit(|x: u8| x, 1).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        p.terminate();
        assert_eq!(queued.wait(), Err(TaskError::Cancelled));
        tx.send(()).unwrap();
        assert_eq!(blocker.wait(), Ok(()));
        assert!(matches!(p.submit(|x: u8| x, 1), Err(PoolError::Closed)));
        let mut it = p.imap(|x: u8| x, [1, 2, 3]);
        assert_eq!(it.next(), Some(Err(TaskError::Cancelled)));
        assert_eq!(it.next(), None);
        p.join().unwrap();
    }

    #[test]
    fn max_tasks_per_worker_replaces_threads() {
        let p = Pool::builder()
            .workers(1)
            .max_tasks_per_worker(2)
            .build()
            .unwrap();
        let ids: Vec<_> = (0..6)
            .map(|_| {
                p.submit(|_: ()| std::thread::current().id(), ())
                    .unwrap()
                    .wait()
                    .unwrap()
            })
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn drop_joins_workers() {
        let p = pool(2);
        let (tx, rx) = cb::unbounded::<()>();
        for _ in 0..2 {
            let tx = tx.clone();
            p.submit(
                move |_: ()| {
                    // Dropped when the worker thread finishes the task.
                    drop(tx);
                },
                (),
            )
            .unwrap();
        }
        drop(tx);
        drop(p);
        // Every worker exited, so every clone of `tx` is gone.
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_err());
        let mut h = pool(1).submit(|x: u8| x, 3).unwrap();
        // The pool was dropped right away; the task either ran or was cancelled, never lost.
        assert!(matches!(
            h.wait_timeout(Duration::from_secs(5)),
            Ok(3) | Err(TaskError::Cancelled)
        ));
    }
}
