//! [`Pool`]: a fixed set of OS threads pulling jobs from one crossbeam channel.
//!
//! - `map` splits its input into chunks (the configured `chunk_size`, or about four chunks per
//!   worker) and sends one job per chunk, so a million trivial items cost a handful of channel
//!   round trips. With an exact size hint the chunks stream from the input while the workers
//!   already run, and each job writes its results straight into the preallocated output (no
//!   copy at the end). A chunk runs its items in a plain loop inside `catch_unwind`; after a
//!   panic the remaining items still run, and the results already written are dropped.
//! - `imap_with` (and `imap` / `imap_unordered`, which call it with an [`Order`]) keeps at
//!   most `2 × workers` chunks submitted and not yet yielded, pulling the input only as
//!   results are consumed: an endless input is fine.
//! - `max_tasks_per_worker`: a worker that ran that many jobs starts its replacement and exits
//!   (as in Python, a `map`/`imap` chunk counts as one task).
//! - `close` drops the job channel's sender (workers drain the queue and exit); `terminate`
//!   also cancels every queued job (`TaskError::Cancelled`). A running job cannot be stopped
//!   (an OS thread cannot be killed), so it finishes and its result is delivered; for the same
//!   reason `task_timeout` is refused (`Unsupported`).
//! - Dropping the pool terminates it and joins every worker thread.
//!
//! Every job, if dropped without running (a queue cleared by `terminate`), reports
//! `Cancelled` to whoever waits for it, so no waiter can hang on a lost job.
//!
//! ```
//! use uniconc::Pool as _;
//! let pool = uniconc::thread::Pool::builder()
//!     .workers(2)
//!     .chunk_size(10) // 100 items: 10 jobs
//!     .max_tasks_per_worker(3) // a worker is replaced after 3 jobs
//!     .build()?;
//! let doubled = pool.map(|x: u32| x * 2, 0..100)?;
//! assert_eq!((doubled.len(), doubled[99]), (100, 198)); // in input order
//! drop(pool); // terminates the pool and joins every worker thread
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crossbeam_channel as cb;
use uniconc_core::imap::ReorderWindow;
use uniconc_core::{Error, Message, Order, PoolConfig, PoolError, TaskError, panic_message};

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

/// A pool of OS threads (Python's `ThreadPool`).
///
/// The workers pull jobs from one crossbeam channel; tasks are closures run in the same
/// address space, so arguments and results need only be `Send + 'static` (the inherent
/// methods below; the [`uniconc::Pool`](uniconc_core::Pool) trait asks for serde messages like every
/// backend). A panicking task is caught and reported as `TaskError::Panicked`; its worker
/// lives on. A running task cannot be stopped, so `task_timeout` is refused.
///
/// ```
/// use std::sync::Arc;
/// use uniconc::TaskHandle as _;
/// let pool = uniconc::thread::pool(2)?;
/// assert_eq!(pool.map(|x: u32| x * 2, 0..4)?, [0, 2, 4, 6]);
/// let shared = Arc::new(7u32); // not serde: fine on threads
/// assert_eq!(pool.submit(|a: Arc<u32>| *a + 1, shared)?.wait(), Ok(8));
/// # Ok::<(), Box<dyn std::error::Error>>(())
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

/// What one `map` chunk reports once it no longer touches the output buffer.
#[derive(Debug)]
struct ChunkOutcome {
    /// First index of the chunk in the input.
    start: usize,
    /// Results written at the front of the chunk's range (all of it unless `error`).
    written: usize,
    /// The first failure, at input index `start + written`.
    error: Option<TaskError>,
}

/// The output buffer of one `map` call, written by the chunk jobs in disjoint ranges.
struct Sink<R>(*mut R);

impl<R> Clone for Sink<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Sink<R> {}

// SAFETY: a `Sink` only carries the buffer's address to the jobs; each job writes `R` values
// (which are `Send`) into its own range, and the caller reads them only after every job has
// reported (see `Pending`), so sharing the address across threads is sound.
unsafe impl<R: Send> Send for Sink<R> {}

impl<R> Sink<R> {
    /// The address of element `index` (a method, so closures capture the whole `Sink`).
    fn at(self, index: usize) -> *mut R {
        self.0.wrapping_add(index)
    }
}

/// Waits for every chunk job of a `map` call that could still write into its output buffer,
/// also when the caller unwinds (a panicking input iterator), so the buffer is never freed
/// under a running job.
struct Pending {
    reports: cb::Receiver<ChunkOutcome>,
    outstanding: usize,
    done: Vec<ChunkOutcome>,
}

impl Pending {
    fn wait_all(&mut self) {
        while self.outstanding > 0 {
            match self.reports.recv() {
                Ok(r) => {
                    self.done.push(r);
                    self.outstanding -= 1;
                }
                // Every sender is gone: each job has finished or was dropped unrun, so none
                // can write any more.
                Err(_) => self.outstanding = 0,
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.wait_all();
    }
}

/// Runs `f` over `items`, writing result `k` to `dst + k`; every item runs even after a panic.
///
/// # Safety
/// `dst` must be valid for writes of `items.len()` values of `R`, and nothing else may read
/// or write that range until the returned outcome has been received.
unsafe fn write_chunk<T, R, F: Fn(T) -> R>(
    f: &F,
    items: Vec<T>,
    dst: *mut R,
    start: usize,
) -> ChunkOutcome {
    let mut written = 0usize;
    let mut iter = items.into_iter();
    // Fast path: a plain loop under one `catch_unwind`; the item that panicked is the one
    // after the last result written.
    let first = catch_unwind(AssertUnwindSafe(|| {
        for item in iter.by_ref() {
            let r = f(item);
            // SAFETY: one write per item, so `written < items.len()`: inside the range the
            // caller vouched for, which nobody else touches meanwhile.
            unsafe { dst.add(written).write(r) };
            written += 1;
        }
    }));
    let Err(payload) = first else {
        return ChunkOutcome {
            start,
            written,
            error: None,
        };
    };
    let error = TaskError::Panicked(panic_message(&*payload));
    drop(payload);
    // The other items still run (`map` reports only the first failure, so their results are
    // dropped), each under its own `catch_unwind`.
    for item in iter {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(f(item))));
    }
    ChunkOutcome {
        start,
        written,
        error: Some(error),
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
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{ErrorKind, PoolConfig};
    /// let mut config = PoolConfig::default();
    /// config.workers = 2;
    /// config.max_tasks_per_worker = Some(10); // each worker is replaced after 10 tasks
    /// let pool = uniconc::thread::Pool::with_config(config.clone())?;
    /// assert_eq!(pool.map(|x: u8| x + 1, 0..50)?.len(), 50);
    ///
    /// config.task_timeout = Some(Duration::from_secs(1)); // a thread cannot be stopped
    /// let err = uniconc::thread::Pool::with_config(config).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unsupported);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// Runs `f` on every item; results in input order. Like [`uniconc::Pool::map`](uniconc_core::Pool::map), with
    /// only `Send` bounds.
    ///
    /// ```
    /// use uniconc::{PoolError, TaskError};
    /// let pool = uniconc::thread::pool(2)?;
    /// let words = vec!["a".to_string(), "bb".into(), "ccc".into()];
    /// assert_eq!(pool.map(|w: String| w.len(), words)?, [1, 2, 3]);
    ///
    /// let err = pool.map(|x: u32| if x == 2 { panic!("two") } else { x }, 0..4).unwrap_err();
    /// assert!(matches!(err, PoolError::Task { index: 2, error: TaskError::Panicked(_) }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        let f = Arc::new(f);
        let mut iter = items.into_iter();
        // With an exact size hint, chunks stream straight from the input into a preallocated
        // output (the workers start while later chunks are still being built).
        let mut out = Vec::new();
        if let (lo, Some(hi)) = iter.size_hint() {
            if lo == hi && out.try_reserve_exact(lo).is_ok() {
                out = self.map_into(&f, &mut iter, lo, out, 0)?;
            }
        }
        // What the hint did not cover (everything, without an exact hint; a hint that lied):
        // collected first, so its size is known.
        let rest: Vec<T> = iter.collect();
        if !rest.is_empty() {
            let n = rest.len();
            let more = self.map_into(
                &f,
                &mut rest.into_iter(),
                n,
                Vec::with_capacity(n),
                out.len(),
            )?;
            if out.is_empty() {
                out = more;
            } else {
                out.extend(more);
            }
        }
        Ok(out)
    }

    /// Maps at most `n` items of `iter` in chunks whose jobs write their results straight into
    /// `out`'s buffer (empty, with room for `n`); `offset` is the input index of the first item.
    fn map_into<T, R, F, I>(
        &self,
        f: &Arc<F>,
        iter: &mut I,
        n: usize,
        mut out: Vec<R>,
        offset: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: Iterator<Item = T>,
    {
        assert!(
            out.is_empty() && out.capacity() >= n,
            "map_into needs an empty buffer with room"
        );
        let chunk = self.inner.config.chunk_size_for(Some(n));
        let sink = Sink(out.as_mut_ptr());
        let (rtx, rrx) = cb::unbounded();
        // A local, so it is dropped before the parameter `out`, also when unwinding (a
        // panicking input iterator): the buffer outlives every job that may write into it.
        let mut pending = Pending {
            reports: rrx,
            outstanding: 0,
            done: Vec::new(),
        };
        let mut start = 0usize;
        let mut closed = false;
        while start < n {
            let part: Vec<T> = iter.by_ref().take(chunk.min(n - start)).collect();
            if part.is_empty() {
                break;
            }
            let len = part.len();
            let (f, rtx) = (f.clone(), rtx.clone());
            let job = Job::new(move |mode| {
                let outcome = match mode {
                    // SAFETY: `[start, start + len)` lies within the `n` elements `out` has
                    // room for (`start + len <= n`), chunks cover disjoint ranges, and the
                    // caller reads or frees the buffer only after receiving this outcome
                    // (`Pending`), which is sent after the last write.
                    Mode::Run => unsafe { write_chunk(&*f, part, sink.at(start), start) },
                    Mode::Cancel => ChunkOutcome {
                        start,
                        written: 0,
                        error: Some(TaskError::Cancelled),
                    },
                };
                let _ = rtx.send(outcome);
            });
            if let Err(job) = self.inner.submit(job) {
                // Closed meanwhile: this chunk never runs; wait for the others below.
                job.discard();
                closed = true;
                break;
            }
            pending.outstanding += 1;
            start += len;
        }
        drop(rtx);
        pending.wait_all();
        let done = std::mem::take(&mut pending.done);
        let first_err = done
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| (c.start + c.written, e)))
            .min_by_key(|(index, _)| *index)
            .map(|(index, e)| (index, e.clone()));
        if closed || first_err.is_some() {
            for c in &done {
                // SAFETY: that job wrote exactly `c.written` values at the front of its range
                // and has finished (its outcome was received); they are dropped once, here,
                // and `out` keeps length 0, so never again.
                unsafe {
                    std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                        sink.at(c.start),
                        c.written,
                    ));
                }
            }
            return Err(match first_err {
                Some((index, error)) => PoolError::Task {
                    index: offset + index,
                    error,
                },
                None => PoolError::Closed,
            });
        }
        // SAFETY: every chunk reported writing its whole range and the ranges tile
        // `[0, start)` (each chunk begins where the previous one ended), so the first
        // `start <= n <= capacity` elements are initialized.
        unsafe { out.set_len(start) };
        Ok(out)
    }

    /// Runs `f` lazily, results in input order. Like [`uniconc::Pool::imap`](uniconc_core::Pool::imap), with only
    /// `Send` bounds.
    ///
    /// At most `2 × workers` chunks are in flight: the input is pulled only as results are
    /// consumed, so it may be endless.
    ///
    /// ```
    /// let pool = uniconc::thread::pool(2)?;
    /// let squares = pool.imap(|x: u64| x * x, 1..).take(4); // an endless input
    /// assert_eq!(squares.collect::<Result<Vec<_>, _>>(), Ok(vec![1, 4, 9, 16]));
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn imap<T, R, F, I>(&self, f: F, items: I) -> Imap<T, R, F, I::IntoIter>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, Order::Input)
    }

    /// Runs `f` lazily, results in completion order. Like
    /// [`uniconc::Pool::imap_unordered`](uniconc_core::Pool::imap_unordered), with only `Send` bounds.
    ///
    /// ```
    /// let pool = uniconc::thread::pool(2)?;
    /// let mut got = pool.imap_unordered(|x: u32| x + 1, 0..5).collect::<Result<Vec<_>, _>>()?;
    /// got.sort(); // completion order varies from run to run
    /// assert_eq!(got, [1, 2, 3, 4, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_unordered<T, R, F, I>(&self, f: F, items: I) -> Imap<T, R, F, I::IntoIter>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_with(f, items, Order::Completion)
    }

    /// Runs `f` lazily, results in `order`. Like
    /// [`uniconc::Pool::imap_with`](uniconc_core::Pool::imap_with), with only `Send` bounds:
    /// [`imap`](Self::imap) and [`imap_unordered`](Self::imap_unordered) call it.
    ///
    /// ```
    /// use uniconc::Order;
    /// let pool = uniconc::thread::pool(2)?;
    /// let in_turn = pool.imap_with(|x: u32| x + 1, 0..5, Order::Input);
    /// assert_eq!(in_turn.collect::<Result<Vec<_>, _>>()?, [1, 2, 3, 4, 5]);
    /// let mut got = pool
    ///     .imap_with(|x: u32| x + 1, 0..5, Order::Completion)
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// got.sort(); // completion order varies from run to run
    /// assert_eq!(got, [1, 2, 3, 4, 5]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_with<T, R, F, I>(&self, f: F, items: I, order: Order) -> Imap<T, R, F, I::IntoIter>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Imap::new(self, f, items.into_iter(), order)
    }

    /// Runs `f(arg)` on a worker. Like [`uniconc::Pool::submit`](uniconc_core::Pool::submit), with only `Send` bounds.
    ///
    /// ```
    /// use uniconc::{PoolError, TaskHandle as _};
    /// let pool = uniconc::thread::pool(1)?;
    /// let task = pool.submit(|v: Vec<u8>| v.len(), vec![1, 2, 3])?;
    /// assert_eq!(task.wait(), Ok(3));
    /// pool.close();
    /// assert!(matches!(pool.submit(|x: u8| x, 0), Err(PoolError::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// use uniconc::TaskHandle as _;
    /// let pool = uniconc::thread::pool(1)?;
    /// let queued = pool.submit(|x: u32| x * 10, 4)?;
    /// pool.close();
    /// assert!(pool.submit(|x: u32| x, 0).is_err()); // refused
    /// assert_eq!(queued.wait(), Ok(40)); // accepted before the close: still runs
    /// pool.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }

    /// Stops the workers: queued tasks are cancelled (`TaskError::Cancelled`); running ones
    /// finish (an OS thread cannot be interrupted).
    ///
    /// ```
    /// use uniconc::{Event as _, TaskError, TaskHandle as _};
    /// let pool = uniconc::thread::pool(1)?;
    /// let (started, go) = (uniconc::thread::event()?, uniconc::thread::event()?);
    /// let (s, g) = (started.clone(), go.clone());
    /// let running = pool.submit(move |_: ()| { s.set(); g.wait(); 1 }, ())?;
    /// started.wait(); // the only worker is busy
    /// let queued = pool.submit(|x: u32| x, 2)?;
    /// pool.terminate();
    /// go.set();
    /// assert_eq!(queued.wait(), Err(TaskError::Cancelled));
    /// assert_eq!(running.wait(), Ok(1)); // the running task finished anyway
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// Do not call it from one of the pool's own tasks: it would wait for itself.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let pool = uniconc::thread::pool(2)?;
    /// let done = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..5 {
    ///     let d = done.clone();
    ///     drop(pool.submit(move |_: ()| d.fetch_add(1, Ordering::Relaxed), ())?); // detached
    /// }
    /// pool.join()?; // every queued task ran before the workers exited
    /// assert_eq!(done.load(Ordering::Relaxed), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never on this backend (a worker thread never unwinds: task panics are caught).
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
        Pool::imap_with(self, f, items, order)
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

/// Lazy iterator of [`Pool::imap_with`], [`Pool::imap`] and [`Pool::imap_unordered`].
///
/// Yields one `Result<R, TaskError>` per input item: a panicking item is reported in its
/// place and the others still arrive. If the pool is closed while the input is not exhausted,
/// it ends with one `Err(TaskError::Cancelled)`.
///
/// ```
/// use uniconc::TaskError;
/// let pool = uniconc::thread::pool(2)?;
/// let out: Vec<Result<u32, TaskError>> =
///     pool.imap(|x: u32| if x == 1 { panic!("one") } else { x }, 0..3).collect();
/// assert_eq!(out[0], Ok(0));
/// assert!(matches!(out[1], Err(TaskError::Panicked(_))));
/// assert_eq!(out[2], Ok(2));
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Imap<T, R, F, I> {
    inner: Arc<Inner>,
    f: Arc<F>,
    items: std::iter::Fuse<I>,
    chunk: usize,
    order: Order,
    rtx: cb::Sender<(u64, Vec<Result<R, TaskError>>)>,
    rrx: cb::Receiver<(u64, Vec<Result<R, TaskError>>)>,
    /// At most `2 × workers` chunks submitted and not yet released.
    window: ReorderWindow<Vec<Result<R, TaskError>>>,
    /// The input is exhausted (or the pool refused more work).
    exhausted: bool,
    /// The pool was found closed: one `Cancelled` is yielded at the end.
    closed: bool,
    _item: std::marker::PhantomData<fn(T)>,
}

impl<T, R, F, I> std::fmt::Debug for Imap<T, R, F, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("order", &self.order)
            .field("submitted", &self.window.submitted())
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
    fn new(pool: &Pool, f: F, items: I, order: Order) -> Self {
        let (rtx, rrx) = cb::unbounded();
        let config = &pool.inner.config;
        Self {
            inner: pool.inner.clone(),
            f: Arc::new(f),
            items: items.fuse(),
            chunk: config.chunk_size_for(None),
            order,
            rtx,
            rrx,
            window: ReorderWindow::new(config.workers.saturating_mul(2).max(2), order),
            exhausted: false,
            closed: false,
            _item: std::marker::PhantomData,
        }
    }

    fn top_up(&mut self) {
        while !self.exhausted && self.window.has_room() {
            let part: Vec<T> = self.items.by_ref().take(self.chunk).collect();
            if part.is_empty() {
                self.exhausted = true;
                return;
            }
            let (f, rtx, seq) = (self.f.clone(), self.rtx.clone(), self.window.submitted());
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
            self.window.submit();
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
            if let Some(r) = self.window.pop() {
                return Some(r);
            }
            self.top_up();
            if self.window.in_flight() == 0 {
                if std::mem::take(&mut self.closed) {
                    return Some(Err(TaskError::Cancelled));
                }
                return None;
            }
            // We hold a sender, so this cannot disconnect; every job reports exactly once.
            let (seq, results) = self.rrx.recv().ok()?;
            self.window.receive(seq, results);
        }
    }
}

/// Handle to a task submitted with [`Pool::submit`].
///
/// Wait for the result with the [`uniconc::TaskHandle`](uniconc_core::TaskHandle) methods (blocking, timed, or
/// `wait_async`). Dropping the handle detaches the task: it still runs.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Event as _, TaskError, TaskHandle as _};
/// let pool = uniconc::thread::pool(1)?;
/// let go = uniconc::thread::event()?;
/// let g = go.clone();
/// let mut task = pool.submit(move |_: ()| g.wait(), ())?;
/// assert_eq!(task.wait_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
/// go.set();
/// assert_eq!(task.wait(), Ok(()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

    /// Counts live values, to check that `map` drops every result exactly once.
    struct Counted(Arc<std::sync::atomic::AtomicIsize>);
    impl Counted {
        fn new(live: &Arc<std::sync::atomic::AtomicIsize>) -> Self {
            live.fetch_add(1, Ordering::SeqCst);
            Self(live.clone())
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn map_drops_written_results_once_on_failure() {
        let p = Pool::builder().workers(2).chunk_size(7).build().unwrap();
        let live = Arc::new(std::sync::atomic::AtomicIsize::new(0));
        let l2 = live.clone();
        let r = p.map(
            move |x: u32| {
                if x % 50 == 49 {
                    panic!("bad {x}");
                }
                Counted::new(&l2)
            },
            0..1000u32,
        );
        assert!(matches!(r, Err(PoolError::Task { index: 49, .. })));
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "every written result dropped, once"
        );
        let l3 = live.clone();
        let ok = p.map(move |_: u32| Counted::new(&l3), 0..100u32).unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 100);
        drop(ok);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    /// An iterator whose exact size hint is wrong.
    struct Lying {
        next: u64,
        end: u64,
        claimed: usize,
    }
    impl Iterator for Lying {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            (self.next < self.end).then(|| {
                self.next += 1;
                self.next - 1
            })
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (self.claimed, Some(self.claimed))
        }
    }

    #[test]
    fn map_survives_lying_size_hints_and_panicking_input() {
        let p = pool(2);
        for (end, claimed) in [(100u64, 10usize), (10, 100), (0, 5), (1000, 999)] {
            let out = p
                .map(
                    |x: u64| x + 1,
                    Lying {
                        next: 0,
                        end,
                        claimed,
                    },
                )
                .unwrap();
            assert_eq!(
                out,
                (1..=end).collect::<Vec<_>>(),
                "end {end}, claimed {claimed}"
            );
        }
        // The input iterator panics midway: the panic reaches the caller, after the chunks
        // already handed out have finished with the buffer.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            p.map(
                |x: u64| x,
                (0..10_000u64).map(|x| if x == 5_000 { panic!("input") } else { x }),
            )
        }));
        assert!(r.is_err());
        assert_eq!(
            p.map(|x: u8| x, [3]).unwrap(),
            [3],
            "the pool is still usable"
        );
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
