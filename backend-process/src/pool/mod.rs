//! A pool of worker processes (forked, or clean-started for named tasks) that survives its
//! workers: [`Pool`] and [`TaskHandle`].
//!
//! ```
//! use uniconc::Pool as _;
//!
//! let pool = uniconc::process::Pool::new(2)?;
//! let squares = pool.map(|x: u64| x * x, 0..10u64)?;
//! assert_eq!(squares[9], 81);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The design (how functions reach the workers, chunking, faults, who drives the workers,
//! shutdown) is documented on [`Pool`].
//!
//! # Files
//! - `pool/mod.rs`: [`Pool`], its configuration and the `uniconc::Pool` methods.
//! - `pool/dispatch.rs`: the dispatcher: shared state, the leader's rounds, the job queue.
//! - `pool/chunk.rs`: the chunk codec: items encoded into a job, results decoded back.
//! - `pool/imap.rs`: the `imap`/`imap_unordered` iterator and its window of chunks.
//! - `pool/task.rs`: [`TaskHandle`] and its future.
//! - `pool/worker.rs`: the worker loop and the trampolines.
//! - `pool/slots.rs`: the shared-memory result slots a worker writes large results into.
//! - `crate::os` (`sys` here): the OS plumbing shared with `spawn` (fork, sockets, frames, `poll`, `waitpid`).
//! - `pool/wire.rs`: reading a chunk's values back to back.
//! - `pool/explain.rs`: the message of a `Deserialize` that refused a value (postcard drops it).

#![deny(missing_docs)]

mod chunk;
mod dispatch;
mod explain;
mod imap;
mod slots;
use crate::os as sys;
mod task;
pub(crate) mod wire;
mod worker;

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;
use uniconc_core::imap::ReorderWindow;
use uniconc_core::{Error, Message, Order, PoolConfig, PoolError, Start, Task, TaskError};

use crate::spawn::AsyncWaiter;
use sys::{Exit, FrameBuf, Pid, ReadState};
use worker::Trampoline;

use chunk::*;
use dispatch::*;
use imap::*;
pub use task::TaskHandle;

type JobId = u64;
type BatchId = u64;
type GroupId = u64;

/// Largest frame buffer the pool keeps for reuse.
const KEEP_BUFFER: usize = 16 << 20;

/// Most bytes of spare frame buffers a pool keeps (an idle pool holds at most this).
const KEEP_TOTAL: usize = 32 << 20;

/// The group of the pool's long-lived workers (zero-sized functions).
const LONG_LIVED: GroupId = 0;

/// The group of the pool's clean-started workers (named tasks); ids of other groups count up
/// from 1 and never reach it.
const CLEAN: GroupId = u64::MAX;

/// The job loop of a clean-started pool worker (`start::init` calls it in the re-executed
/// binary): the forked workers' loop, with trampoline words read as offsets in the binary.
pub(crate) fn clean_worker(fd: std::os::fd::RawFd, parent: Pid) -> std::convert::Infallible {
    worker::main(fd, parent, None, worker::code_base())
}

/// Why a clean-started pool refuses a closure.
fn closure_refused(call: &str) -> String {
    format!(
        "`{call}` with a closure on a clean-started pool (`Start::Clean`): its workers are the \
         binary started again, not copies of this process, so a closure cannot reach them; \
         run a named task with `map_task`, `imap_task`, `imap_unordered_task`, \
         `imap_task_with` or `submit_task`, or build the pool with `Start::Fork`"
    )
}

/// A pool of `workers` worker processes, forked or clean-started (see "Start methods");
/// implements [`uniconc::Pool`](uniconc_core::Pool).
///
/// # Workers and functions
///
/// Workers are forked processes, each connected to the pool by its own socket pair; a worker
/// holds at most one job (a chunk of items, or one submitted call) at a time, so the pool always
/// knows which items a worker held when it died. Jobs and small results travel over the
/// socket; a chunk's results between 16 KiB and 2 MiB are written into one of two shared-memory
/// slots the worker was given at its fork, and only their length crosses the socket (see
/// `pool/slots.rs`).
///
/// Functions are never serialized. A zero-sized function (a `fn` item or a closure that
/// captures nothing) goes to the pool's long-lived workers as a monomorphised trampoline
/// address: a worker forked from this process runs the same code at the same address. A
/// capturing closure cannot be sent at all, so the workers that run it are forked *for it*,
/// while it is alive in the parent, and inherit it: `map`/`imap` with a capturing closure fork
/// `workers` extra processes for that call (they are killed when the call ends), and `submit`
/// with a capturing closure forks one process for that one call, once the call may run (a
/// fork per call: prefer `fn` items or non-capturing closures for many small submissions).
/// See `pool/worker.rs` for the soundness argument.
///
/// Whatever runs them, at most `workers` jobs run at once: the pool has `workers` slots, and
/// a job (a chunk, or a submitted call) takes one to start, oldest queued job first. A
/// capturing `submit` waits in the queue, its closure kept in the parent, until it gets a
/// slot; only then is its process forked, so a thousand queued capturing submits cost no
/// process. A capturing `map` running beside other work shares the slots with it. Long-lived
/// workers forget the channel handles they inherited
/// ([`forget_inherited_handles`](crate::forget_inherited_handles)), so a pool keeps
/// no channel connected.
///
/// # Start methods
///
/// Chosen with [`PoolBuilder::start`](uniconc_core::PoolBuilder::start) (see
/// [`Start`](crate::Start)):
///
/// - `Start::Fork`: every worker is forked from this process; closures and named tasks
///   (`map_task`, `submit_task`, ...) run there. Forking a program whose other threads hold
///   locks (a tokio runtime, a logger, a `Mutex` of the program) can leave a worker holding
///   a lock that nobody will release: such a worker hangs when it takes it.
/// - `Start::Clean`: every worker is this program's binary started again
///   (`/proc/self/exe`), which inherits no thread, lock or runtime; it needs
///   [`init`](crate::init) first thing in `main` (`build` returns `Unsupported` otherwise).
///   It runs named tasks only: `map`, `imap*` and `submit` with a closure are refused
///   (`Unsupported`, or an `imap` item `Failed`, naming the task API), since a closure cannot
///   reach a process that is not a copy of this one. A task's code is found in the worker at
///   the same offset in the binary as here, so once the workers run, `map_task` is the same
///   chunked path as on a fork pool. Results always come through the socket (no shared result
///   slots).
/// - Unset (the default): closures run in forked workers, as above; named tasks run in
///   clean-started workers when [`init`](crate::init) was called in this process (`workers`
///   of them, started at the first task call), else in the forked ones. The pool's `workers`
///   slots are shared: at most `workers` jobs run at once, forked or clean.
///
/// Everything else holds for clean workers as for forked ones: a worker that dies yields
/// `WorkerDied` and is replaced (by a clean one), `task_timeout` kills and replaces,
/// `max_tasks_per_worker` replaces, a panic yields `Panicked`, `close`/`join`/`terminate`
/// behave the same.
///
/// ```no_run
/// use uniconc::{Pool as _, Start};
///
/// uniconc::task! { fn square(x: u64) -> u64 { x * x } }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     uniconc::init(); // first thing: a clean worker runs the pool's jobs here
///     let pool = uniconc::process::Pool::builder().workers(4).start(Start::Clean).build()?;
///     assert_eq!(pool.map_task::<square>(0..4)?, [0, 1, 4, 9]);
///     assert!(pool.map(|x: u64| x + 1, [1]).is_err()); // a closure: use a task
///     Ok(())
/// }
/// ```
///
/// # How many workers
///
/// At most [`Pool::max_workers`]: 64 per CPU, capped by `RLIMIT_NPROC` and by what a channel
/// can count. A pool asked for more is refused with `InvalidArgument` before anything is
/// forked.
///
/// # Chunks
///
/// `map` cuts its input into chunks of `chunk_size` items (default
/// [`PoolConfig::chunk_size_for`], Python's heuristic: about four chunks per worker), so a
/// million trivial items cost a handful of round trips. `imap_with` (and so `imap` and
/// `imap_unordered`) uses `chunk_size` (default 1) and keep at most `2 × workers` chunks in flight, pulling items from
/// the input only as results are consumed, so the input may be endless. A chunk counts as one
/// task for `max_tasks_per_worker`, as in Python.
///
/// # Faults
///
/// A panicking call yields `TaskError::Panicked(message)` for its item only. A worker that
/// dies (SIGKILL, abort, OOM kill) yields `TaskError::WorkerDied(description)` for every item
/// of the job it held, is reaped and replaced, and the pool goes on: a death is seen at once
/// through the worker's pidfd (Linux) and the end-of-file on its socket, never waited on.
/// `task_timeout` (builder) and [`Pool::submit_with_timeout`] give a job a deadline (for a
/// chunk: the timeout times its number of items); an overdue job's worker is killed and
/// replaced and its items yield `TaskError::DeadlineExceeded`. An argument that cannot be
/// serialized never reaches a worker: it yields `TaskError::Failed` for its item only (`imap`);
/// `map` stops reading its input there, lets the items before it finish, and reports the
/// lowest failing index, that argument's unless an earlier item failed.
///
/// # Who drives the workers
///
/// There is no background thread. Whichever thread waits on the pool (`map`, `imap`, `wait`,
/// `join`, ...) becomes the *leader*: it polls every worker's socket and pidfd, reads results,
/// reaps and replaces dead workers and hands queued jobs to idle ones, for every caller; the
/// other waiters sleep on a condition variable until the leader's round ends. Submitted jobs
/// start at once on idle workers; jobs queued behind them progress while some thread waits on
/// the pool. The leader forks replacements only after releasing the pool's lock, so no lock of
/// the pool is held by the forking thread across `fork()`.
///
/// # Shutdown
///
/// `close` stops new work; `join` waits for queued work, then lets the workers exit;
/// `terminate` kills them at once (unfinished tasks yield `Cancelled`). Dropping a pool
/// terminates it and reaps every worker: no child process is left behind. A pool belongs to
/// the process that created it: in a forked child it refuses work (`Closed`) and its drop does
/// nothing.
///
/// # Example
///
/// ```
/// use nix::sys::signal::{Signal, raise};
/// use uniconc::{Pool as _, TaskError, TaskHandle as _};
/// let pool = uniconc::process::pool(2)?;
/// assert_eq!(pool.map(|x: u64| x * x, 0..5)?, [0, 1, 4, 9, 16]);
///
/// // A worker killed mid-task: its task reports it, the worker is replaced.
/// let h = pool.submit(|_: ()| raise(Signal::SIGKILL).is_ok(), ())?;
/// assert!(matches!(h.wait(), Err(TaskError::WorkerDied(_))));
/// assert_eq!(pool.submit(|x: u32| x + 1, 1)?.wait(), Ok(2)); // the pool goes on
/// pool.close();
/// pool.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Runs `f(arg)` on a worker with a deadline: if it runs longer than `timeout`, its worker
    /// is killed and replaced and the task yields `TaskError::DeadlineExceeded`. Python's
    /// `apply_async` has no such thing (cpython #75963).
    ///
    /// # Errors
    /// As [`submit`](uniconc_core::Pool::submit); `InvalidArgument`-style misuse (a zero
    /// timeout) is reported as a `Spawn` error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Pool as _, TaskError, TaskHandle as _};
    ///
    /// let pool = uniconc::process::Pool::new(1)?;
    /// let slow = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
    /// let h = pool.submit_with_timeout(slow, 60_000, Duration::from_millis(50))?;
    /// assert_eq!(h.wait(), Err(TaskError::DeadlineExceeded));
    /// assert_eq!(pool.submit(|x: u32| x + 1, 1)?.wait()?, 2); // the pool goes on
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_with_timeout<T, R, F>(
        &self,
        f: F,
        arg: T,
        timeout: Duration,
    ) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        uniconc_core::validate::task_timeout(Some(timeout)).map_err(PoolError::Spawn)?;
        self.submit_inner(f, arg, Some(timeout), None)
    }

    /// Whether the pool was built with `Start::Clean` (closures refused).
    fn clean_only(&self) -> bool {
        self.shared.config.start == Some(Start::Clean)
    }

    /// The group that runs named tasks: the clean-started workers (`Start::Clean`, or the
    /// default when [`init`](crate::init) was called: started here, at the first task), else
    /// the forked long-lived ones.
    fn task_group(&self) -> GroupId {
        let clean = match self.shared.config.start {
            Some(Start::Fork) => false,
            Some(_) => true,
            None => crate::start::initialized(),
        };
        if !clean {
            return LONG_LIVED;
        }
        let mut g = self.shared.lock();
        if !g.groups.contains_key(&CLEAN) && !g.closed {
            // Its workers are started by the next leader round, or by `spawn_pending`.
            let n = self.shared.config.workers;
            g.groups.insert(CLEAN, Group::new(None, n, false));
        }
        CLEAN
    }

    /// `submit`; `task` names a task (`submit_task`), which goes to [`task_group`](Self::task_group).
    fn submit_inner<T, R, F>(
        &self,
        f: F,
        arg: T,
        timeout: Option<Duration>,
        task: Option<&str>,
    ) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let shared = &self.shared;
        shared.check_owner()?;
        if shared.lock().closed {
            return Err(PoolError::Closed);
        }
        if task.is_none() && self.clean_only() {
            return Err(PoolError::Spawn(Error::unsupported(closure_refused(
                "submit",
            ))));
        }
        let tramp: Trampoline = worker::run_once::<T, R, F>;
        // A capturing closure stays in the parent (in its group) until a slot is free for
        // its job; then a process is forked for it and inherits it.
        let (keep, ctx): (Option<Arc<dyn Any + Send + Sync>>, usize) = if Runner::zero_sized::<F>()
        {
            std::mem::forget(f);
            (None, NonNull::<F>::dangling().as_ptr() as usize)
        } else {
            let keep = Arc::new(KeepAlive(f));
            let ctx = (&raw const keep.0) as usize;
            (Some(keep), ctx)
        };
        let mut runner = Runner {
            group: LONG_LIVED,
            word: tramp as usize as u64,
            tramp,
            ctx,
            owned: false,
        };
        if let Some(name) = task {
            runner = runner
                .into_group(self.task_group(), name)
                .map_err(PoolError::Spawn)?;
        }
        let mut bad = None;
        let buf = Vec::with_capacity(34 + std::mem::size_of::<T>());
        let frame = runner.frame(buf, |v| {
            bad = encode_item(v, &arg).err();
            1
        });
        let mut g = shared.lock();
        if g.closed {
            return Err(PoolError::Closed);
        }
        let batch = shared.new_batch(&mut g);
        // A capturing closure's process, or clean workers not started yet.
        let spawn = keep.is_some() || runner.group == CLEAN;
        match bad {
            Some(e) => {
                g.batches
                    .get_mut(&batch)
                    .expect("just created")
                    .done
                    .push_back((0, 1, Err(e)));
            }
            None => {
                let group = match keep {
                    None => runner.group,
                    Some(keep) => {
                        let id = g.new_id();
                        g.groups.insert(id, Group::new(Some(keep), 1, true));
                        id
                    }
                };
                let id = g.new_id();
                g.jobs.insert(
                    id,
                    Job {
                        batch,
                        seq: 0,
                        group,
                        frame,
                        items: 1,
                        timeout,
                        deadline: None,
                    },
                );
                g.batches.get_mut(&batch).expect("just created").outstanding += 1;
                match g.groups.get_mut(&group) {
                    Some(grp) => grp.queue.push_back(id),
                    None => g.complete(
                        id,
                        Err(TaskError::Failed("the task's worker is gone".into())),
                    ),
                }
                g.dispatch();
            }
        }
        drop(g);
        if spawn {
            // Start it now if it got a slot (no thread may be waiting on the pool).
            shared.spawn_pending();
        }
        Ok(TaskHandle {
            shared: Arc::clone(shared),
            batch,
            result: None,
            finished: false,
            taken: false,
            waiter: None,
            _result: PhantomData,
        })
    }

    /// `map` (`task`: `map_task` of that task) over an iterator of items.
    fn map_any<T, R, F, I>(&self, f: F, items: I, task: Option<&str>) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        let shared = &*self.shared;
        shared.check_owner()?;
        if shared.lock().closed {
            return Err(PoolError::Closed);
        }
        if task.is_none() && self.clean_only() {
            return Err(PoolError::Spawn(Error::unsupported(closure_refused("map"))));
        }
        let items = items.into_iter();
        match items.size_hint() {
            // The length is known: encode straight from the iterator.
            (lo, Some(hi)) if lo == hi => self.map_known(f, items, lo, task),
            _ => {
                let items: Vec<T> = items.collect();
                let n = items.len();
                self.map_known(f, items.into_iter(), n, task)
            }
        }
    }

    /// `map` over an iterator of (about) `n` items.
    fn map_known<T, R, F, It>(
        &self,
        f: F,
        items: It,
        n: usize,
        task: Option<&str>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        It: Iterator<Item = T>,
    {
        let shared = &*self.shared;
        if n == 0 {
            return Ok(Vec::new());
        }
        let chunk = shared.config.chunk_size_for(Some(n));
        let mut runner = Runner::for_map::<T, R, F>(shared, f)?;
        if let Some(name) = task {
            runner = runner.into_group(self.task_group(), name)?;
        }
        let batch = shared.new_batch(&mut shared.lock());
        // Encode and queue chunk by chunk, so workers start on the first chunk at once. Each
        // turn of the loop encodes at most one chunk, with a non-blocking leader round after
        // it: a worker that finished its chunk gets the next one while this thread is busy,
        // instead of idling until it waits again. Once the input is exhausted, each turn
        // decodes at most one chunk, in input order, straight into the output; the thread
        // blocks only when it has nothing to encode and nothing to decode.
        //
        // Results wait, undecoded, in `early` until the input is exhausted and dropped, and
        // only then is the output allocated: the input's memory (a `Vec` the caller handed
        // over) is free by then and the output can take its place. With both alive at once
        // (8 MB each for a million `u64`s) the caller's frees left glibc's heap with more
        // free memory on top than its trim threshold, so every call gave it back to the
        // kernel and faulted it in again: a `Vec` input took twice as long as a range. A
        // chunk that failed is decoded at once, though: it decides the map's outcome, and
        // the rest of the input need not be read.
        let mut first_error: Option<(usize, TaskError)> = None;
        // An argument that could not be serialized (its index): encoding stops there, and it
        // is the map's error unless an earlier item fails. Every item before it was queued,
        // so the map waits for their results, in order, before it reports this one.
        let mut unsent: Option<(usize, TaskError)> = None;
        let mut items = Some(items);
        let mut seq = 0u64;
        let mut pending = 0usize;
        let mut exhausted = false;
        let mut out: Vec<R> = Vec::new();
        let mut early: BTreeMap<u64, (usize, Outcome)> = BTreeMap::new();
        let mut next = 0u64;
        loop {
            if let Some(input) = items.as_mut() {
                let mut count = 0;
                let mut bad = None;
                let buf = shared
                    .lock()
                    .buffer(33 + chunk.min(1 << 20) * (std::mem::size_of::<T>().min(64) + 1));
                let frame = runner.frame(buf, |v| {
                    (count, bad) = encode_items(v, input, chunk);
                    count
                });
                exhausted = count < chunk;
                if let Some(e) = bad {
                    // Every chunk before this one was full: the item's index in the input.
                    unsent = Some((seq as usize * chunk + count, e));
                    exhausted = true;
                }
                if exhausted {
                    // Free the input before the output is allocated (see above).
                    items = None;
                }
                if count == 0 {
                    shared.lock().recycle(frame);
                } else {
                    let mut g = shared.lock();
                    if g.closed && matches!(runner.group, LONG_LIVED | CLEAN) && g.terminated {
                        // Terminated: what is queued ends `Cancelled`; queue nothing more.
                        exhausted = true;
                        g.recycle(frame);
                    } else {
                        shared.enqueue(&mut g, batch, seq, runner.group, frame, count);
                        seq += 1;
                        pending += 1;
                    }
                }
            }
            let ready = early.contains_key(&next);
            if pending == 0 && !ready {
                if exhausted {
                    break;
                }
                continue;
            }
            if pending > 0 {
                // Block only when there is nothing else to do: no input left to encode and
                // no result in hand to decode. Otherwise one non-blocking round, which hands
                // any worker that finished its chunk the next one.
                let wait = if exhausted && !ready {
                    None
                } else {
                    Some(Instant::now())
                };
                match shared.take_results(batch, wait) {
                    Some(got) if !got.is_empty() => {
                        for (s, count, outcome) in got {
                            pending -= 1;
                            early.insert(s, (count, outcome));
                        }
                    }
                    // Nothing finished yet.
                    None if wait.is_some() => {}
                    // The batch is gone or empty with jobs pending: cannot happen while we
                    // hold it; end rather than spin (reported as `Closed` below).
                    _ => break,
                }
            }
            // Decode one chunk, then look after the workers again. While the input is read,
            // only a chunk that failed (see above), into a scratch output.
            let decodable = exhausted || early.get(&next).is_some_and(|(_, o)| failed(o));
            if let Some((count, outcome)) = decodable.then(|| early.remove(&next)).flatten() {
                let base = next as usize * chunk;
                next += 1;
                if exhausted && out.capacity() == 0 {
                    out.reserve_exact(n);
                }
                let mut scratch = Vec::new();
                let into = if exhausted { &mut out } else { &mut scratch };
                let (spent, failed) = decode_into(outcome, count, into);
                if let Some((k, e)) = failed {
                    first_error.get_or_insert((base + k, e));
                } else if !scratch.is_empty() {
                    // Not a failure after all: these results are the output's first ones.
                    out.reserve_exact(n);
                    out.append(&mut scratch);
                }
                if let Some(buf) = spent {
                    shared.lock().recycle(buf);
                }
                if first_error.is_some() {
                    // Decoded in input order: this is the first failing item. The rest of
                    // the map is abandoned.
                    break;
                }
            }
        }
        shared.abandon(batch);
        runner.finish(shared);
        if let Some((index, error)) = first_error {
            return Err(PoolError::Task { index, error });
        }
        if next != seq {
            return Err(PoolError::Closed);
        }
        if let Some((index, error)) = unsent {
            // Every item before it succeeded.
            return Err(PoolError::Task { index, error });
        }
        Ok(out)
    }
}

/// Workers per CPU a pool may have at most (see [`Pool::max_workers`]).
const WORKERS_PER_CPU: usize = 64;

impl Pool {
    /// The most workers a pool may have on this machine, and what sets that limit.
    ///
    /// The smallest of:
    /// - `64 ×` the CPUs this process may run on (`std::thread::available_parallelism`):
    ///   far more than CPU-bound work can use, and room for workers that mostly wait (I/O,
    ///   sleeps), without letting a typo (`Pool::new(100_000)`) fork until the machine stalls;
    /// - the soft `RLIMIT_NPROC` (processes per user), if finite: past it `fork` fails anyway,
    ///   and every other process of the user counts against it too;
    /// - [`MAX_PROCESSES`](crate::MAX_PROCESSES)` - 1`: a channel counts the processes that may
    ///   use it, its creator included, and a worker forked while this process holds a channel
    ///   is counted by it.
    ///
    /// A pool asked for more workers is refused with `InvalidArgument`, before anything is
    /// forked. A capturing `map` forks as many extra workers for the length of the call.
    ///
    /// ```
    /// use uniconc::{ErrorKind, Pool as _};
    ///
    /// let max = uniconc::process::Pool::max_workers();
    /// assert!(max >= 1);
    /// let err = uniconc::process::Pool::new(max + 1).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// ```
    pub fn max_workers() -> usize {
        worker_limit().0
    }
}

/// Whether a pool of `config` is a clean-started one (`Start::Clean`).
///
/// # Errors
/// `Unsupported` for `Start::Clean` in a process that did not call [`init`](crate::init).
fn pool_is_clean(config: &PoolConfig) -> Result<bool, Error> {
    match config.start {
        None | Some(Start::Fork) => Ok(false),
        Some(_) if crate::start::initialized() => Ok(true),
        Some(_) => Err(crate::start::not_initialized("a clean-started pool")),
    }
}

/// [`Pool::max_workers`] and a sentence that says what sets it.
fn worker_limit() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut limits = vec![(
        cpus.saturating_mul(WORKERS_PER_CPU),
        format!("{WORKERS_PER_CPU} per CPU, {cpus} CPUs"),
    )];
    let mut nproc = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `nproc` is a valid out-pointer; getrlimit only writes it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut nproc) } == 0
        && nproc.rlim_cur != libc::RLIM_INFINITY
    {
        let n = usize::try_from(nproc.rlim_cur).unwrap_or(usize::MAX);
        limits.push((n, format!("RLIMIT_NPROC is {n}")));
    }
    let slots = crate::channel::MAX_PROCESSES - 1;
    limits.push((
        slots,
        format!("a channel counts at most MAX_PROCESSES - 1 = {slots} children"),
    ));
    limits
        .into_iter()
        .min_by_key(|&(n, _)| n)
        .expect("three limits")
}

impl uniconc_core::Pool for Pool {
    type TaskHandle<R: Message> = TaskHandle<R>;

    /// Forks the pool's workers.
    ///
    /// # Errors
    /// `InvalidArgument` for a configuration [`PoolConfig::validate`] refuses, or for more
    /// workers than [`Pool::max_workers`] (nothing is forked then); `Os` if a worker could not
    /// be forked (the ones forked so far are killed and reaped).
    fn with_config(config: PoolConfig) -> Result<Self, Error> {
        config.validate()?;
        let (max, why) = worker_limit();
        if config.workers > max {
            return Err(Error::invalid_argument(format!(
                "a process pool of {} workers is refused: at most {max} ({why}; see \
                 uniconc_process::Pool::max_workers)",
                config.workers
            )));
        }
        let shared = Arc::new(Shared {
            owner: sys::getpid(),
            inner: Mutex::new(Inner {
                limit: config.workers,
                ..Inner::default()
            }),
            cond: Condvar::new(),
            wake: sys::WakePipe::new()
                .map_err(|e| Error::os("creating the pool's wake pipe", e))?,
            config,
        });
        let clean = pool_is_clean(&shared.config)?;
        let pool = Pool { shared };
        let n = pool.shared.config.workers;
        // A clean pool's workers are all clean-started; the long-lived group stays empty.
        let (group, forked) = if clean { (CLEAN, 0) } else { (LONG_LIVED, n) };
        {
            let mut g = pool.shared.lock();
            g.groups.insert(LONG_LIVED, Group::new(None, forked, false));
            g.groups.insert(group, Group::new(None, n, false));
        }
        for _ in 0..n {
            // On failure `pool` is dropped, which kills and reaps the workers started so far.
            let w = pool.shared.fork_worker(group)?;
            pool.shared.lock().workers.push(w);
        }
        Ok(pool)
    }

    fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.map_any(f, items, None)
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
        Imap::new(self, f, items.into_iter(), order, None)
    }

    /// Runs `f(arg)` on a worker and returns a handle to its result; never waits.
    ///
    /// # A capturing closure forks a process per call
    ///
    /// A `fn` item or a closure that captures nothing runs on the pool's long-lived workers:
    /// a round trip of a few microseconds. A closure that captures anything cannot be sent to
    /// a process that already exists, so a process is forked for that one call (once it gets
    /// one of the pool's slots) and inherits the closure: a fork, a start and a reap per call,
    /// tens of times the round trip of a `fn` (see the `process_pool` bench). For many small
    /// tasks, put what the closure would capture into the argument instead:
    ///
    /// ```
    /// use uniconc::{Pool as _, TaskHandle as _};
    ///
    /// let pool = uniconc::process::Pool::new(2)?;
    /// let offset = 10u64;
    /// // A process per call: `move |x: u64| x + offset`.
    /// // The long-lived workers: nothing captured, `offset` travels with the argument.
    /// let h = pool.submit(|(x, offset): (u64, u64)| x + offset, (1, offset))?;
    /// assert_eq!(h.wait()?, 11);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Closed` if the pool is closed or used from another process than its creator;
    /// `Spawn(Unsupported)` on a clean-started pool (use `submit_task`). A process that cannot
    /// be forked for a capturing closure is reported by the handle.
    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let timeout = self.shared.config.task_timeout;
        self.submit_inner(f, arg, timeout, None)
    }

    /// Runs `T` on every item in the pool's clean-started workers (see
    /// [`Pool`](uniconc_core::Pool::map_task) and "Start methods" on [`Pool`]); results in
    /// input order.
    fn map_task<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<T::Output>, PoolError> {
        self.map_any(T::run, items, Some(T::NAME))
    }

    /// Runs `T` on every item lazily in the pool's clean-started workers, yielding the
    /// results in `order` (see "Start methods" on [`Pool`]).
    fn imap_task_with<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
        order: Order,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>> {
        Imap::new(self, T::run, items.into_iter(), order, Some(T::NAME))
    }

    /// Runs `T` on `arg` in one of the pool's clean-started workers (see "Start methods" on
    /// [`Pool`]); never waits.
    fn submit_task<T: Task>(&self, arg: T::Arg) -> Result<TaskHandle<T::Output>, PoolError> {
        let timeout = self.shared.config.task_timeout;
        self.submit_inner(T::run, arg, timeout, Some(T::NAME))
    }

    fn close(&self) {
        if self.shared.check_owner().is_err() {
            return;
        }
        self.shared.lock().closed = true;
        self.shared.kick();
    }

    fn join(&self) -> Result<(), PoolError> {
        let shared = &*self.shared;
        shared.check_owner()?;
        self.close();
        // Let queued and running work finish.
        drop(shared.pump(None, |g| {
            g.groups.values().all(|grp| grp.queue.is_empty())
                && g.workers.iter().all(|w| w.job.is_none())
        }));
        // Then let every worker leave.
        {
            let mut g = shared.lock();
            for grp in g.groups.values_mut() {
                grp.retired = true;
                grp.one_shot = false;
            }
            for w in &mut g.workers {
                if w.job.is_none() && !w.exiting && w.killed.is_none() {
                    w.exiting = true;
                    let mut frame = Vec::new();
                    sys::begin_frame(&mut frame);
                    frame.push(worker::KIND_EXIT);
                    sys::finish_frame(&mut frame);
                    if sys::send_all(w.sock.as_raw_fd(), &frame).is_err() {
                        let _ = sys::kill9(w.pid);
                    }
                } else {
                    w.killed.get_or_insert(TaskError::Cancelled);
                    let _ = sys::kill9(w.pid);
                }
            }
        }
        shared.kick();
        drop(shared.pump(None, |g| g.workers.is_empty()));
        Ok(())
    }

    fn terminate(&self) {
        if self.shared.check_owner().is_ok() {
            self.shared.terminate();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.shared.check_owner().is_ok() {
            self.shared.terminate();
        }
    }
}
