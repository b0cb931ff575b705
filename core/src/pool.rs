//! The pool contract: [`Pool`], its configuration ([`PoolBuilder`]) and [`TaskHandle`].
//!
//! A pool runs `f(item)` for many items on a fixed set of workers (processes, threads or
//! tasks). `map` returns results in input order; `imap` is a lazy, ordered iterator with a
//! bounded number of items in flight, so it works on an endless input; `imap_unordered` yields
//! in completion order; `submit` runs one call and returns a [`TaskHandle`].
//!
//! A task that panics yields [`TaskError::Panicked`] for its item only; the pool stays usable.
//! A worker that dies mid-task yields [`TaskError::WorkerDied`] and is replaced. A pool never
//! hangs because a worker died. Dropping a pool stops its workers.

use std::future::Future;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::backend::Message;
use crate::error::{Error, PoolError, TaskError};
use crate::time::deadline_after;

/// Settings of a pool, filled in by [`PoolBuilder`].
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
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_size: None,
            max_tasks_per_worker: None,
            task_timeout: None,
        }
    }
}

impl PoolConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers, a chunk size of 0 or a task limit of 0.
    pub fn validate(&self) -> Result<(), Error> {
        if self.workers == 0 {
            return Err(Error::invalid_argument("a pool needs at least one worker"));
        }
        if self.chunk_size == Some(0) {
            return Err(Error::invalid_argument("chunk_size must be at least 1"));
        }
        if self.max_tasks_per_worker == Some(0) {
            return Err(Error::invalid_argument(
                "max_tasks_per_worker must be at least 1",
            ));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(Error::invalid_argument(
                "task_timeout must be longer than zero",
            ));
        }
        Ok(())
    }

    /// The chunk size for a call over `items` items (`None`: unknown, e.g. an endless
    /// iterator): the configured one, or Python's heuristic of about four chunks per worker.
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
    /// Default settings.
    pub fn new() -> Self {
        Self {
            config: PoolConfig::default(),
            _pool: PhantomData,
        }
    }

    /// Number of workers (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Items handed to a worker at a time by `map`/`imap` (at least 1).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.config.chunk_size = Some(n);
        self
    }

    /// Replace a worker after it ran `n` tasks (at least 1).
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.config.max_tasks_per_worker = Some(n);
        self
    }

    /// Stop a task that runs longer than `timeout` (where the backend can stop a unit).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// The settings so far.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Starts the pool.
    ///
    /// # Errors
    /// `InvalidArgument` for out-of-range settings; the backend could not start its workers.
    pub fn build(self) -> Result<P, Error> {
        self.config.validate()?;
        P::with_config(self.config)
    }
}

/// A pool of workers.
pub trait Pool: Send + Sync + Sized + 'static {
    /// Handle to one submitted task.
    type TaskHandle<R: Message>: TaskHandle<R>;

    /// Starts a pool with these (already validated) settings; use [`Pool::builder`] or
    /// [`Pool::new`] instead.
    ///
    /// # Errors
    /// The backend could not start its workers.
    fn with_config(config: PoolConfig) -> Result<Self, Error>;

    /// A builder with default settings.
    fn builder() -> PoolBuilder<Self> {
        PoolBuilder::new()
    }

    /// A pool of `workers` workers with default settings.
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers; the backend could not start its workers.
    fn new(workers: usize) -> Result<Self, Error> {
        Self::builder().workers(workers).build()
    }

    /// The settings the pool runs with.
    fn config(&self) -> &PoolConfig;

    /// Runs `f` on every item; results in input order.
    ///
    /// # Errors
    /// `Task { index, error }` for the first failed item in input order (the other items still
    /// ran); `Closed` if the pool is closed.
    fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>;

    /// Runs `f` on every item lazily; results in input order. Pulls items from `items` only as
    /// results are consumed (a bounded number in flight), so `items` may be endless. If the
    /// pool is closed, the iterator yields one `Err(TaskError::Cancelled)` and ends.
    fn imap<T, R, F, I>(&self, f: F, items: I) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>;

    /// Like [`imap`](Pool::imap), but yields results in completion order.
    fn imap_unordered<T, R, F, I>(
        &self,
        f: F,
        items: I,
    ) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>;

    /// Runs `f(arg)` on a worker.
    ///
    /// # Errors
    /// `Closed` if the pool is closed; `Spawn` if a worker could not be started.
    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<Self::TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static;

    /// Stops accepting work; queued and running tasks finish.
    fn close(&self);

    /// Waits for every worker to finish after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate).
    ///
    /// # Errors
    /// `Closed`-style misuse is not an error: joining an open pool closes it first.
    fn join(&self) -> Result<(), PoolError>;

    /// Stops the workers now; unfinished tasks yield `TaskError::Cancelled`.
    fn terminate(&self);
}

/// Handle to one task submitted to a [`Pool`].
pub trait TaskHandle<R>: Send + 'static {
    /// Waits for the task's result.
    ///
    /// # Errors
    /// `Panicked`, `WorkerDied`, `DeadlineExceeded`, `Cancelled`, `AlreadyTaken`, `Failed`.
    fn wait(self) -> Result<R, TaskError>
    where
        Self: Sized;

    /// Waits for the result until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be waited on again); otherwise as
    /// [`wait`](TaskHandle::wait).
    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<R, TaskError>;

    /// Waits at most `timeout` for the result.
    ///
    /// # Errors
    /// `Timeout` if it had not finished (the handle can be waited on again); otherwise as
    /// [`wait`](TaskHandle::wait).
    fn wait_timeout(&mut self, timeout: Duration) -> Result<R, TaskError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Returns the result if the task has finished, without waiting.
    ///
    /// # Errors
    /// `Timeout` if it has not; otherwise as [`wait`](TaskHandle::wait).
    fn try_wait(&mut self) -> Result<R, TaskError> {
        self.wait_deadline(Some(Instant::now()))
    }

    /// Waits for the result without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the handle waitable.
    fn wait_async(&mut self) -> impl Future<Output = Result<R, TaskError>> + Send + '_;

    /// `true` once the result is ready.
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
