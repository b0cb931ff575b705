//! A pool of forked worker processes that survives its workers: [`Pool`] and [`TaskHandle`].
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
//! - `pool.rs`: the pool, the leader protocol, `TaskHandle`.
//! - `pool/worker.rs`: the worker loop and the trampolines.
//! - `pool/sys.rs`: OS plumbing shared with `spawn`.
//! - `pool/wire.rs`: reading a chunk's values back to back.
//! - `pool/explain.rs`: the message of a `Deserialize` that refused a value (postcard drops it).

#![deny(missing_docs)]

mod explain;
mod slots;
pub(crate) mod sys;
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
use uniconc_core::{Error, Message, PoolConfig, PoolError, TaskError};

use crate::spawn::AsyncWaiter;
use sys::{Exit, FrameBuf, Pid, ReadState};
use worker::Trampoline;

type JobId = u64;
type BatchId = u64;
type GroupId = u64;

/// Largest frame buffer the pool keeps for reuse.
const KEEP_BUFFER: usize = 16 << 20;

/// Most bytes of spare frame buffers a pool keeps (an idle pool holds at most this).
const KEEP_TOTAL: usize = 32 << 20;

/// The group of the pool's long-lived workers (zero-sized functions).
const LONG_LIVED: GroupId = 0;

/// A pool of `workers` forked processes; implements [`uniconc::Pool`](uniconc_core::Pool).
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
/// million trivial items cost a handful of round trips. `imap` and `imap_unordered` use
/// `chunk_size` (default 1) and keep at most `2 × workers` chunks in flight, pulling items from
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

struct Shared {
    owner: Pid,
    config: PoolConfig,
    inner: Mutex<Inner>,
    /// Signalled at the end of every leader round and on every state change.
    cond: Condvar,
    /// Wakes the leader out of `poll` when the set of workers or jobs changed.
    wake: sys::WakePipe,
}

#[derive(Default)]
struct Inner {
    workers: Vec<Worker>,
    groups: HashMap<GroupId, Group>,
    jobs: HashMap<JobId, Job>,
    batches: HashMap<BatchId, Batch>,
    next_id: u64,
    /// How many jobs may run at once: the pool's `workers`, whatever kind of function the
    /// jobs run (see [`Inner::slots_used`]).
    limit: usize,
    /// A thread is polling the workers (or forking for them) right now.
    leader: bool,
    /// Frame buffers kept for reuse (sent job frames, decoded result frames): a chunk is
    /// encoded into, and a result read into, memory that is already mapped and warm.
    spare: Vec<Vec<u8>>,
    closed: bool,
    terminated: bool,
}

/// Workers that can run the same jobs: the long-lived ones, or the ones forked for one
/// capturing closure.
struct Group {
    /// Keeps a capturing closure alive in the parent while workers that inherit it may be
    /// forked.
    keep: Option<Arc<dyn Any + Send + Sync>>,
    /// How many workers the group wants.
    size: usize,
    queue: VecDeque<JobId>,
    /// No new jobs, no replacements; removed once its workers are gone.
    retired: bool,
    /// Each worker runs one job, then is retired (capturing `submit`). Such a group is
    /// created with its job queued and no worker: its worker is forked only once the job
    /// holds a slot (`slot`), so queued capturing submits cost no process.
    one_shot: bool,
    /// One-shot group: its queued job holds one of the pool's `limit` slots, and its worker
    /// may be forked. Set by [`Inner::dispatch`], oldest job first.
    slot: bool,
    /// After a failed fork, do not retry before this.
    retry_at: Option<Instant>,
    last_spawn_error: Option<String>,
}

struct Worker {
    pid: Pid,
    group: GroupId,
    sock: OwnedFd,
    pidfd: Option<OwnedFd>,
    buf: FrameBuf,
    /// Its result slots (`None` if they could not be mapped: results come inline).
    slots: Option<Arc<slots::Slots>>,
    /// The slot claimed for the running job, if any.
    slot: Option<slots::SlotGuard>,
    job: Option<JobId>,
    jobs_done: usize,
    /// Killed on purpose: how its job (if any) ends.
    killed: Option<TaskError>,
    /// A send to it failed: take no more jobs.
    broken: bool,
    /// Sent an exit frame.
    exiting: bool,
}

struct Job {
    batch: BatchId,
    seq: u64,
    group: GroupId,
    /// The frame to send (emptied once sent).
    frame: Vec<u8>,
    items: usize,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

/// A job's result: the worker's results, or why it has none.
type Outcome = Result<Results, TaskError>;

/// A job's results body (format in `pool/worker.rs`).
enum Results {
    /// In the result frame: `[frame header][INLINE][body]`.
    Inline(Vec<u8>),
    /// The first `len` bytes of the job's result slot.
    InSlot(slots::SlotGuard, usize),
}

impl Results {
    /// Reads a worker's result frame for the job that held `slot`.
    fn from_frame(frame: Vec<u8>, slot: Option<slots::SlotGuard>) -> Outcome {
        let malformed = || TaskError::Failed("the worker sent a malformed result".into());
        match frame.get(8) {
            Some(&worker::INLINE) => Ok(Results::Inline(frame)),
            Some(&worker::IN_SLOT) => {
                let len = frame
                    .get(9..17)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l <= slots::SLOT)
                    .ok_or_else(malformed)?;
                // Results in a slot the parent did not name are not results.
                slot.map(|g| Results::InSlot(g, len)).ok_or_else(malformed)
            }
            _ => Err(malformed()),
        }
    }

    fn body(&self) -> &[u8] {
        match self {
            Results::Inline(frame) => frame.get(9..).unwrap_or_default(),
            Results::InSlot(g, len) => g.bytes(*len).unwrap_or_default(),
        }
    }
}

/// The jobs of one caller (`map` call, `imap` iterator, `submit`).
#[derive(Default)]
struct Batch {
    done: VecDeque<(u64, usize, Outcome)>,
    outstanding: usize,
    abandoned: bool,
}

impl Inner {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records a job's end and hands its outcome to its batch.
    fn complete(&mut self, id: JobId, outcome: Outcome) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        if let Some(g) = self.groups.get_mut(&job.group) {
            if g.one_shot {
                g.retired = true;
            }
        }
        if let Some(b) = self.batches.get_mut(&job.batch) {
            b.outstanding -= 1;
            if b.abandoned {
                if b.outstanding == 0 {
                    self.batches.remove(&job.batch);
                }
            } else {
                b.done.push_back((job.seq, job.items, outcome));
            }
        }
    }

    /// Keeps a frame buffer for reuse (a few, of sane sizes).
    fn recycle(&mut self, mut buf: Vec<u8>) {
        let kept: usize = self.spare.iter().map(Vec::capacity).sum();
        if (4096..=KEEP_BUFFER).contains(&buf.capacity())
            && self.spare.len() < 2 * self.limit + 2
            && kept + buf.capacity() <= KEEP_TOTAL
        {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// A buffer for a frame, reused if one is spare.
    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.reserve(capacity);
        v
    }

    /// Slots in use: jobs running on a worker, plus one-shot jobs that hold a slot while their
    /// worker is being forked (queued in a group with `slot` set; once the job is sent, it
    /// counts as running instead, and once it ends or is cancelled, not at all).
    ///
    /// Invariant kept by [`dispatch`](Self::dispatch): `slots_used() <= limit`, so a pool of
    /// `workers` workers never runs more than `workers` jobs at once, whether they run on the
    /// long-lived workers, on the workers of a capturing `map`, or in processes forked for a
    /// capturing `submit`.
    fn slots_used(&self) -> usize {
        let running = self.workers.iter().filter(|w| w.job.is_some()).count();
        let reserved = self
            .groups
            .values()
            .filter(|g| g.one_shot && g.slot && !g.queue.is_empty())
            .count();
        running + reserved
    }

    /// Sends the job at the front of worker `i`'s group queue to it; `false` if none was sent.
    fn start_job(&mut self, i: usize, now: Instant) -> bool {
        let w = &mut self.workers[i];
        let Some(group) = self.groups.get_mut(&w.group) else {
            return false;
        };
        let Some(id) = group.queue.pop_front() else {
            return false;
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        // Name a free result slot of this worker in the frame (job frames only).
        let slot = w.slots.as_ref().and_then(|s| s.claim());
        if job.frame.get(8) == Some(&worker::KIND_RUN) {
            if let Some(b) = job.frame.get_mut(8 + worker::JOB_HEADER - 1) {
                *b = slot.as_ref().map_or(slots::NONE, slots::SlotGuard::index);
            }
        }
        match sys::send_all(w.sock.as_raw_fd(), &job.frame) {
            Ok(()) => {
                w.slot = slot;
                let sent = std::mem::take(&mut job.frame);
                job.deadline = job.timeout.and_then(|t| {
                    let n = u32::try_from(job.items.max(1)).unwrap_or(u32::MAX);
                    now.checked_add(t.saturating_mul(n))
                });
                w.job = Some(id);
                self.recycle(sent);
                true
            }
            Err(_) => {
                // The worker is gone or broken; the job never started: requeue it. The
                // leader reaps the worker (its pidfd or socket reports the death).
                group.queue.push_front(id);
                w.broken = true;
                let _ = sys::kill9(w.pid);
                false
            }
        }
    }

    /// Hands free slots to queued jobs, oldest job first: a job of a group with an idle worker
    /// is sent to it; a capturing `submit` job gets its slot reserved, and the leader (or the
    /// submitting thread) forks its worker. Workers forked for a reserved slot get their job
    /// at once.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let idle = |w: &Worker| w.job.is_none() && w.killed.is_none() && !w.broken && !w.exiting;
        // One-shot workers were forked for a slot their job already holds.
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let reserved = self
                .groups
                .get(&w.group)
                .is_some_and(|g| g.one_shot && g.slot && !g.queue.is_empty());
            if reserved && idle(w) {
                self.start_job(i, now);
            }
        }
        let mut used = self.slots_used();
        while used < self.limit {
            // The oldest queued job that can take a slot now: (job, group, idle worker).
            let mut best: Option<(JobId, GroupId, Option<usize>)> = None;
            for (&gid, grp) in &self.groups {
                let Some(&id) = grp.queue.front() else {
                    continue;
                };
                if best.is_some_and(|(b, _, _)| b < id) {
                    continue;
                }
                let worker = if grp.one_shot {
                    if grp.slot || grp.retired {
                        continue;
                    }
                    None
                } else {
                    match self.workers.iter().position(|w| w.group == gid && idle(w)) {
                        Some(i) => Some(i),
                        None => continue,
                    }
                };
                best = Some((id, gid, worker));
            }
            match best {
                None => break,
                Some((_, _, Some(i))) => {
                    // On failure the worker is marked broken (no longer idle): the loop
                    // ends after at most one attempt per worker.
                    if self.start_job(i, now) {
                        used += 1;
                    }
                }
                Some((_, gid, None)) => {
                    if let Some(g) = self.groups.get_mut(&gid) {
                        g.slot = true;
                    }
                    used += 1;
                }
            }
        }
    }

    /// Kills and reaps worker `i` and ends its job, if any.
    fn bury(&mut self, i: usize, cause: Option<Exit>) {
        let mut w = self.workers.swap_remove(i);
        // Read a result that was complete before the worker died.
        if w.job.is_some() {
            sys::recv_available(w.sock.as_raw_fd(), &mut w.buf);
            if let Some(frame) = w.buf.take_frame() {
                let id = w.job.take().expect("checked above");
                self.complete(id, Results::from_frame(frame, w.slot.take()));
            }
        }
        let exit = match cause {
            Some(e) => Some(e),
            None => {
                let _ = sys::kill9(w.pid);
                sys::waitpid(w.pid, true).ok().flatten()
            }
        };
        if let Some(id) = w.job.take() {
            let err = if let Some(e) = w.killed.take() {
                e
            } else if self.terminated {
                TaskError::Cancelled
            } else {
                TaskError::WorkerDied(format!(
                    "worker process {} {}",
                    w.pid,
                    exit.map_or_else(|| "vanished".to_owned(), Exit::describe)
                ))
            };
            self.complete(id, Err(err));
        }
    }

    /// Forks needed per group: `(group, closure to keep alive while forking)`.
    fn plan_spawns(&mut self, now: Instant) -> Vec<(GroupId, Option<Arc<dyn Any + Send + Sync>>)> {
        let mut plan = Vec::new();
        for (&id, g) in &self.groups {
            if g.retired && (!g.one_shot || g.queue.is_empty()) {
                continue;
            }
            if self.terminated || g.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            if id == LONG_LIVED && self.closed && g.queue.is_empty() {
                continue;
            }
            if g.one_shot && (g.queue.is_empty() || !g.slot) {
                // A capturing submit's process is forked only once its job holds a slot.
                continue;
            }
            let live = self
                .workers
                .iter()
                .filter(|w| w.group == id && w.killed.is_none())
                .count();
            for _ in live..g.size {
                plan.push((id, g.keep.clone()));
            }
        }
        plan
    }

    /// Installs freshly forked workers (or records why a fork failed).
    fn install(&mut self, fresh: Vec<(GroupId, Result<Worker, Error>)>, now: Instant) {
        for (gid, w) in fresh {
            match w {
                Ok(w) => {
                    let wanted = self
                        .groups
                        .get(&gid)
                        .is_some_and(|g| !g.retired || g.one_shot);
                    if wanted && !self.terminated {
                        self.workers.push(w);
                    } else {
                        let _ = sys::kill9(w.pid);
                        let _ = sys::waitpid(w.pid, true);
                    }
                }
                Err(e) => {
                    let Some(g) = self.groups.get_mut(&gid) else {
                        continue;
                    };
                    g.retry_at = Some(now + Duration::from_millis(100));
                    g.last_spawn_error = Some(e.to_string());
                    // Never hang: a group without any worker fails its queued jobs.
                    if !self.workers.iter().any(|w| w.group == gid) {
                        let queued: Vec<JobId> = g.queue.drain(..).collect();
                        for id in queued {
                            let msg = format!("no worker could be started: {e}");
                            self.complete(id, Err(TaskError::Failed(msg)));
                        }
                    }
                }
            }
        }
    }

    /// Drops retired groups without workers.
    fn gc_groups(&mut self) {
        let workers = &self.workers;
        self.groups.retain(|&id, g| {
            id == LONG_LIVED
                || !g.retired
                || !g.queue.is_empty()
                || workers.iter().any(|w| w.group == id)
        });
    }

    /// Removes the queued jobs of `batch` and marks it abandoned (its running jobs' results are
    /// dropped when they arrive).
    fn abandon(&mut self, batch: BatchId) {
        let Some(b) = self.batches.get_mut(&batch) else {
            return;
        };
        b.abandoned = true;
        b.done.clear();
        let jobs = &mut self.jobs;
        let mut removed = 0;
        let mut emptied: Vec<GroupId> = Vec::new();
        for (&gid, g) in self.groups.iter_mut() {
            let before = g.queue.len();
            g.queue.retain(|id| {
                let mine = jobs.get(id).is_some_and(|j| j.batch == batch);
                if mine {
                    jobs.remove(id);
                }
                !mine
            });
            if g.queue.len() < before {
                removed += before - g.queue.len();
                emptied.push(gid);
            }
        }
        b.outstanding -= removed;
        if b.outstanding == 0 {
            self.batches.remove(&batch);
        }
        // A one-shot worker whose only job was just removed has nothing left to do.
        let idle_one_shots: Vec<GroupId> = emptied
            .into_iter()
            .filter(|id| {
                self.groups
                    .get(id)
                    .is_some_and(|g| g.one_shot && g.queue.is_empty())
                    && !self
                        .workers
                        .iter()
                        .any(|w| w.group == *id && w.job.is_some())
            })
            .collect();
        for id in idle_one_shots {
            if let Some(g) = self.groups.get_mut(&id) {
                g.retired = true;
                g.one_shot = false;
            }
            self.kill_workers(Some(id), &TaskError::Cancelled);
        }
    }

    /// Marks every worker of `group` (all groups: `None`) to be killed, ending their jobs with
    /// `cause`.
    fn kill_workers(&mut self, group: Option<GroupId>, cause: &TaskError) {
        for w in &mut self.workers {
            if group.is_none_or(|g| g == w.group) && w.killed.is_none() {
                w.killed = Some(cause.clone());
                let _ = sys::kill9(w.pid);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent bookkeeping (every update is a
        // single step), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the leader and every waiter: the state changed.
    fn kick(&self) {
        self.wake.wake();
        self.cond.notify_all();
    }

    fn check_owner(&self) -> Result<(), PoolError> {
        if self.owner == sys::getpid() {
            Ok(())
        } else {
            Err(PoolError::Closed)
        }
    }

    /// Forks one worker for `group`.
    fn fork_worker(&self, group: GroupId) -> Result<Worker, Error> {
        let (parent_end, child_end) =
            sys::socketpair().map_err(|e| Error::os("creating a worker's socket", e))?;
        for end in [&parent_end, &child_end] {
            sys::set_send_buffer(end.as_raw_fd(), 4 << 20);
        }
        let me = sys::getpid();
        let parent_fd = parent_end.as_raw_fd();
        // Mapped before the fork, so the worker shares it.
        let slots = slots::Slots::new();
        let pid = sys::fork_with(|| {
            // SAFETY: this is the child; its copy of `parent_end` is never dropped (the child
            // leaves through `_exit`), so closing the number here closes it exactly once.
            unsafe { libc::close(parent_fd) };
            if group == LONG_LIVED {
                // A long-lived worker runs only zero-sized functions, which hold no channel
                // handle: the handles it inherited are the parent's leftovers and must not
                // keep those channels connected for the pool's lifetime. (Workers forked for
                // a capturing closure keep theirs: the closure may hold some, still unused.)
                crate::channel::forget_inherited_handles();
            }
            worker::main(child_end.as_raw_fd(), me, slots.as_deref())
        })
        .map_err(|e| Error::os("forking a pool worker", e))?;
        drop(child_end);
        Ok(Worker {
            pid,
            group,
            pidfd: sys::pidfd_open(pid),
            sock: parent_end,
            buf: FrameBuf::default(),
            slots,
            slot: None,
            job: None,
            jobs_done: 0,
            killed: None,
            broken: false,
            exiting: false,
        })
    }

    /// Forks the workers of `plan` with the lock released (the caller is the leader), then
    /// installs them, dispatches and ends the leadership.
    fn fork_planned<'a>(
        &'a self,
        g: MutexGuard<'a, Inner>,
        plan: Vec<(GroupId, Option<Arc<dyn Any + Send + Sync>>)>,
    ) -> MutexGuard<'a, Inner> {
        drop(g);
        // No lock of ours is held across these forks.
        let fresh: Vec<_> = plan
            .into_iter()
            .map(|(gid, keep)| {
                let w = self.fork_worker(gid);
                drop(keep);
                (gid, w)
            })
            .collect();
        let mut g = self.lock();
        g.install(fresh, Instant::now());
        g.dispatch();
        g.leader = false;
        self.cond.notify_all();
        g
    }

    /// Forks the workers the pool wants now (a capturing submit whose job just got a slot)
    /// without waiting for anything; if a leader is at work, wakes it to do it instead.
    fn spawn_pending(&self) {
        let mut g = self.lock();
        if g.leader {
            drop(g);
            self.kick();
            return;
        }
        let plan = g.plan_spawns(Instant::now());
        if plan.is_empty() {
            return;
        }
        g.leader = true;
        drop(self.fork_planned(g, plan));
        // The new workers' sockets must join a polling leader's set.
        self.kick();
    }

    /// Drives the workers until `ready` holds or `deadline` passes; returns the lock and
    /// whether `ready` held. See "Who drives the workers" in the module docs.
    fn pump(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Inner) -> bool,
    ) -> (MutexGuard<'_, Inner>, bool) {
        let mut g = self.lock();
        loop {
            if ready(&mut g) {
                return (g, true);
            }
            let now = Instant::now();
            let expired = deadline.is_some_and(|d| now >= d);
            if g.leader {
                if expired {
                    return (g, false);
                }
                g = match deadline {
                    None => self.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        self.cond
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
                continue;
            }
            g.leader = true;
            let plan = g.plan_spawns(now);
            if !plan.is_empty() {
                g = self.fork_planned(g, plan);
                continue;
            }
            // One round: poll every worker's socket and pidfd, and the wake pipe.
            let mut fds = Vec::with_capacity(1 + 2 * g.workers.len());
            let mut who = Vec::with_capacity(fds.capacity());
            fds.push(libc::pollfd {
                fd: self.wake.read_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            who.push((0, false));
            let mut wake_at = deadline;
            let mut earliest = |t: Instant| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            for w in &g.workers {
                fds.push(libc::pollfd {
                    fd: w.sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                who.push((w.pid, false));
                match &w.pidfd {
                    Some(p) => {
                        fds.push(libc::pollfd {
                            fd: p.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                        who.push((w.pid, true));
                    }
                    None => earliest(now + Duration::from_millis(20)),
                }
                if let Some(d) = w
                    .job
                    .and_then(|id| g.jobs.get(&id))
                    .and_then(|j| j.deadline)
                {
                    earliest(d);
                }
            }
            for grp in g.groups.values() {
                if let Some(t) = grp.retry_at {
                    earliest(t);
                }
            }
            let busy = g.workers.iter().any(|w| w.job.is_some());
            drop(g);
            // A worker holds a job: its result often comes within microseconds, so look for a
            // moment before sleeping in `poll` (a socket wake-up costs more than that).
            let mut polled = Ok(0);
            if busy && !expired {
                polled = sys::poll_spinning(&mut fds, sys::spin_budget());
            }
            if matches!(polled, Ok(0)) {
                polled = sys::poll(&mut fds, if expired { Some(now) } else { wake_at });
            }
            g = self.lock();
            if polled.is_ok() {
                if fds[0].revents != 0 {
                    self.wake.drain();
                }
                let suspects: Vec<(Pid, bool)> = fds
                    .iter()
                    .zip(&who)
                    .skip(1)
                    .filter(|(p, _)| p.revents != 0)
                    .map(|(_, &w)| w)
                    .collect();
                self.round(&mut g, &suspects);
            }
            for grp in g.groups.values_mut() {
                if grp.retry_at.is_some_and(|t| t <= Instant::now()) {
                    grp.retry_at = None;
                }
            }
            g.leader = false;
            self.cond.notify_all();
            if ready(&mut g) {
                return (g, true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return (g, false);
            }
        }
    }

    /// The leader's work after a poll: read results, bury the dead, enforce deadlines,
    /// dispatch.
    /// `suspects`: `(pid, true)` if the worker's pidfd fired, `(pid, false)` for its socket.
    fn round(&self, g: &mut Inner, suspects: &[(Pid, bool)]) {
        let now = Instant::now();
        let max_tasks = self.config.max_tasks_per_worker;
        let mut i = 0;
        while i < g.workers.len() {
            let pid = g.workers[i].pid;
            let no_pidfd = g.workers[i].pidfd.is_none();
            let mut dead: Option<Option<Exit>> = None;
            let exited = suspects.contains(&(pid, true));
            if exited || no_pidfd || suspects.contains(&(pid, false)) {
                if g.workers[i].buf.wants_storage() {
                    let spare = g.buffer(0);
                    g.workers[i].buf.provide(spare);
                }
                let w = &mut g.workers[i];
                let eof = sys::recv_available(w.sock.as_raw_fd(), &mut w.buf) == ReadState::Eof;
                if w.buf.corrupt() {
                    dead = Some(None);
                } else if let Some(frame) = w.buf.take_frame() {
                    match w.job.take() {
                        Some(id) => {
                            w.jobs_done += 1;
                            let retire = max_tasks.is_some_and(|m| w.jobs_done >= m);
                            let outcome = Results::from_frame(frame, w.slot.take());
                            g.complete(id, outcome);
                            let one_shot = g
                                .groups
                                .get(&g.workers[i].group)
                                .is_none_or(|gr| gr.one_shot);
                            if retire || one_shot {
                                dead = Some(None);
                            }
                        }
                        // A result nobody asked for: the worker is confused.
                        None => dead = Some(None),
                    }
                }
                if dead.is_none() && (eof || exited || no_pidfd) {
                    match sys::waitpid(pid, false) {
                        Ok(Some(exit)) => dead = Some(Some(exit)),
                        Ok(None) if eof => dead = Some(None),
                        Ok(None) => {}
                        Err(_) => dead = Some(None),
                    }
                }
            }
            if dead.is_none() {
                let w = &mut g.workers[i];
                let overdue = w
                    .job
                    .and_then(|id| g.jobs.get(&id))
                    .and_then(|j| j.deadline)
                    .is_some_and(|d| d <= now);
                if overdue && w.killed.is_none() {
                    w.killed = Some(TaskError::DeadlineExceeded);
                    dead = Some(None);
                }
            }
            match dead {
                Some(cause) => g.bury(i, cause),
                None => i += 1,
            }
        }
        g.gc_groups();
        g.dispatch();
    }

    fn new_batch(&self, g: &mut Inner) -> BatchId {
        let id = g.new_id();
        g.batches.insert(id, Batch::default());
        id
    }

    /// Queues a job (and starts it if a worker of its group is idle).
    fn enqueue(
        &self,
        g: &mut Inner,
        batch: BatchId,
        seq: u64,
        group: GroupId,
        frame: Vec<u8>,
        items: usize,
    ) {
        let id = g.new_id();
        let timeout = self.config.task_timeout;
        g.jobs.insert(
            id,
            Job {
                batch,
                seq,
                group,
                frame,
                items,
                timeout,
                deadline: None,
            },
        );
        if let Some(b) = g.batches.get_mut(&batch) {
            b.outstanding += 1;
        }
        match g.groups.get_mut(&group) {
            Some(grp) => grp.queue.push_back(id),
            None => g.complete(
                id,
                Err(TaskError::Failed("the job's workers are gone".into())),
            ),
        }
        g.dispatch();
    }

    /// Waits until `batch` has results (or none outstanding) or `deadline`; takes them.
    fn take_results(
        &self,
        batch: BatchId,
        deadline: Option<Instant>,
    ) -> Option<Vec<(u64, usize, Outcome)>> {
        let (mut g, ready) = self.pump(deadline, |g| {
            g.batches
                .get(&batch)
                .is_none_or(|b| !b.done.is_empty() || b.outstanding == 0)
        });
        if !ready {
            return None;
        }
        // The batch stays registered until its owner releases it (`abandon`): an `imap` may
        // queue more jobs after every earlier one was taken.
        let b = g.batches.get_mut(&batch)?;
        Some(b.done.drain(..).collect())
    }

    fn abandon(&self, batch: BatchId) {
        let mut g = self.lock();
        g.abandon(batch);
    }

    /// Starts a group of `size` workers forked while `keep` (a capturing closure) is alive.
    fn start_group(
        &self,
        keep: Arc<dyn Any + Send + Sync>,
        size: usize,
        one_shot: bool,
    ) -> Result<GroupId, Error> {
        let id = self.lock().new_id();
        let mut workers = Vec::with_capacity(size);
        for _ in 0..size {
            match self.fork_worker(id) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    for w in workers {
                        let _ = sys::kill9(w.pid);
                        let _ = sys::waitpid(w.pid, true);
                    }
                    return Err(e);
                }
            }
        }
        let mut g = self.lock();
        g.groups.insert(id, Group::new(Some(keep), size, one_shot));
        g.workers.extend(workers);
        drop(g);
        self.kick();
        Ok(id)
    }

    /// Retires a group: kills its workers (their jobs end with `Cancelled`) and waits until
    /// they are reaped.
    fn retire_group(&self, group: GroupId) {
        {
            let mut g = self.lock();
            if let Some(grp) = g.groups.get_mut(&group) {
                grp.retired = true;
                grp.one_shot = false;
            }
            g.kill_workers(Some(group), &TaskError::Cancelled);
        }
        self.kick();
        drop(self.pump(None, |g| !g.workers.iter().any(|w| w.group == group)));
    }

    fn terminate(&self) {
        {
            let mut g = self.lock();
            g.closed = true;
            g.terminated = true;
            let queued: Vec<JobId> = g
                .groups
                .values_mut()
                .flat_map(|grp| grp.queue.drain(..))
                .collect();
            for id in queued {
                g.complete(id, Err(TaskError::Cancelled));
            }
            g.kill_workers(None, &TaskError::Cancelled);
        }
        self.kick();
        let (mut g, _) = self.pump(None, |g| g.workers.is_empty());
        g.groups.retain(|&id, _| id == LONG_LIVED);
    }
}

impl Group {
    fn new(keep: Option<Arc<dyn Any + Send + Sync>>, size: usize, one_shot: bool) -> Self {
        Self {
            keep,
            size,
            queue: VecDeque::new(),
            retired: false,
            one_shot,
            retry_at: None,
            last_spawn_error: None,
            slot: false,
        }
    }
}

/// Makes a closure shareable for keep-alive purposes only: the parent never touches the value
/// through a shared reference (it only drops it), so `Sync` adds no access.
struct KeepAlive<F>(F);

// SAFETY: a `KeepAlive` is only ever dropped by the parent (never read through `&`); the
// forked workers read their own copies. Dropping needs `F: Send` (the last owner may be any
// thread), which is required.
unsafe impl<F: Send> Sync for KeepAlive<F> {}

/// Where a call's jobs run and with which trampoline/context pair.
struct Runner {
    group: GroupId,
    tramp: Trampoline,
    ctx: usize,
    /// A batch group of our own, retired when the call ends.
    owned: bool,
}

impl Runner {
    /// `true` if `F` can go to the long-lived workers as a bare trampoline.
    fn zero_sized<F>() -> bool {
        std::mem::size_of::<F>() == 0 && !std::mem::needs_drop::<F>()
    }

    fn for_map<T, R, F>(shared: &Shared, f: F) -> Result<Self, Error>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
    {
        let tramp: Trampoline = worker::run_map::<T, R, F>;
        if Self::zero_sized::<F>() {
            // No byte to keep: any aligned non-null address is a valid `&F`.
            let ctx = NonNull::<F>::dangling().as_ptr() as usize;
            std::mem::forget(f);
            return Ok(Self {
                group: LONG_LIVED,
                tramp,
                ctx,
                owned: false,
            });
        }
        let keep = Arc::new(KeepAlive(f));
        let ctx = (&raw const keep.0) as usize;
        let group = shared.start_group(keep, shared.config.workers, false)?;
        Ok(Self {
            group,
            tramp,
            ctx,
            owned: true,
        })
    }

    fn finish(&self, shared: &Shared) {
        if self.owned {
            shared.retire_group(self.group);
        }
    }

    /// A job frame carrying `items` (already encoded).
    /// A job frame: `encode` appends the items and returns how many it wrote.
    fn frame(&self, mut v: Vec<u8>, encode: impl FnOnce(&mut Vec<u8>) -> usize) -> Vec<u8> {
        sys::begin_frame(&mut v);
        v.push(worker::KIND_RUN);
        v.extend_from_slice(&(self.tramp as usize as u64).to_le_bytes());
        v.extend_from_slice(&(self.ctx as u64).to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        // The result slot, named when the job is sent.
        v.push(slots::NONE);
        let count = encode(&mut v) as u64;
        v[25..33].copy_from_slice(&count.to_le_bytes());
        sys::finish_frame(&mut v);
        v
    }
}

/// Encodes one item into a frame under construction.
fn encode_item<T: Serialize>(v: &mut Vec<u8>, item: &T) -> Result<(), TaskError> {
    sys::Encoder::new(v).push(item).map_err(arg_error::<T>)
}

fn arg_error<T>(e: postcard::Error) -> TaskError {
    let ty = std::any::type_name::<T>();
    TaskError::Failed(format!(
        "the argument could not be serialized (a `{ty}`): {e}"
    ))
}

/// Encodes up to `chunk` items from `items` onto `v` (the hot loop of `map` and `imap`, kept
/// out of line so that it is compiled tight): how many were encoded, and why the next one
/// could not be.
///
/// It stops at the first item that cannot be serialized: that item is taken from `items`
/// (and dropped) but not counted, and none of its bytes stay in `v`, so `v` holds exactly the
/// `count` items before it, a job that can still run. The caller gives the unencodable item
/// its own result, right after those (index `count` in the chunk).
#[inline(never)]
fn encode_items<T: Serialize>(
    v: &mut Vec<u8>,
    items: &mut impl Iterator<Item = T>,
    chunk: usize,
) -> (usize, Option<TaskError>) {
    let mut enc = sys::Encoder::new(v);
    let mut count = 0;
    for item in items.by_ref().take(chunk) {
        if let Err(e) = enc.push(&item) {
            return (count, Some(arg_error::<T>(e)));
        }
        count += 1;
    }
    (count, None)
}

/// `true` if a chunk's outcome holds a failure: no results at all, or failure records (a
/// result that cannot be decoded is found only by decoding it).
fn failed(outcome: &Outcome) -> bool {
    match outcome {
        Err(_) => true,
        Ok(r) => r
            .body()
            .get(8..16)
            .is_none_or(|w| w.iter().any(|&b| b != 0)),
    }
}

/// Decodes a `map` chunk's outcome onto the end of `out` (out of line, as
/// [`encode_items`]): the frame's buffer for reuse, and the chunk's first failure (its index
/// in the chunk), if any.
#[inline(never)]
fn decode_into<R: Message>(
    outcome: Outcome,
    items: usize,
    out: &mut Vec<R>,
) -> (Option<Vec<u8>>, Option<(usize, TaskError)>) {
    let start = out.len();
    let mut failed = None;
    let spent = decode::<R>(outcome, items, |r| match r {
        Ok(v) => out.push(v),
        // Every item before the first failure was pushed: its index is the count so far.
        Err(e) => {
            if failed.is_none() {
                failed = Some((out.len() - start, e));
            }
        }
    });
    (spent, failed)
}

/// Decodes a job's outcome into `items` results, in item order, and hands back the frame's
/// buffer for reuse.
fn decode<R: Message>(
    outcome: Outcome,
    items: usize,
    mut push: impl FnMut(Result<R, TaskError>),
) -> Option<Vec<u8>> {
    match outcome {
        Ok(results) => {
            decode_frame(results.body(), items, &mut push);
            match results {
                Results::Inline(frame) => Some(frame),
                // Dropping the guard releases the slot: its bytes were read.
                Results::InSlot(..) => None,
            }
        }
        Err(e) => {
            for _ in 0..items {
                push(Err(e.clone()));
            }
            None
        }
    }
}

/// Decodes a result frame body (format in `pool/worker.rs`). The bytes come from a worker
/// process, so they are checked: anything malformed fails the items it cannot account for,
/// never more results than `items` are produced, and exactly `items` are always produced.
fn decode_frame<R: Message>(
    body: &[u8],
    items: usize,
    push: &mut impl FnMut(Result<R, TaskError>),
) {
    use serde::Deserialize as _;
    // Generic, not `dyn`: a `dyn` call would take the address of `push` (and of what it
    // captures, the output's length included), which keeps those in memory in the hot loop.
    fn fail_rest<R>(
        push: &mut impl FnMut(Result<R, TaskError>),
        from: usize,
        items: usize,
        e: TaskError,
    ) {
        for _ in from..items {
            push(Err(e.clone()));
        }
    }
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    let layout = word(0).zip(word(8)).and_then(|(len, failures)| {
        let end = worker::RESULT_HEADER.checked_add(usize::try_from(len).ok()?)?;
        (end <= body.len()).then_some((end, failures))
    });
    let Some((results_end, failures)) = layout else {
        let e = TaskError::Failed("the worker sent a malformed result".into());
        return fail_rest(push, 0, items, e);
    };
    // Failure records, in index order (usually none).
    let mut fails: Vec<(u64, u8, String)> = Vec::new();
    if failures > 0 {
        let mut de = postcard::Deserializer::from_bytes(&body[results_end..]);
        for _ in 0..failures.min(items as u64) {
            match <(u64, u8, String)>::deserialize(&mut de) {
                Ok(f) => fails.push(f),
                Err(_) => break,
            }
        }
        if fails.len() as u64 != failures || fails.windows(2).any(|w| w[0].0 >= w[1].0) {
            let e = TaskError::Failed("the worker sent a malformed failure list".into());
            return fail_rest(push, 0, items, e);
        }
    }
    let mut de = wire::Reader::new(&body[worker::RESULT_HEADER..results_end]);
    let mut i = 0;
    for (at, tag, msg) in fails.into_iter().chain([(items as u64, 0, String::new())]) {
        // The results before the next failure, back to back.
        let at = usize::try_from(at).unwrap_or(items).min(items);
        if let Err((done, bytes, e)) = decode_run(&mut de, at - i, push) {
            // The stream is out of step: fail the rest.
            let e = TaskError::Failed(wire::decode_failure::<R>("the result", bytes, &e));
            return fail_rest(push, i + done, items, e);
        }
        i = at;
        if i == items {
            return;
        }
        match tag {
            worker::PANICKED => push(Err(TaskError::Panicked(msg))),
            worker::FAILED => push(Err(TaskError::Failed(msg))),
            worker::FAILED_REST => return fail_rest(push, i, items, TaskError::Failed(msg)),
            t => {
                let e = TaskError::Failed(format!("the worker sent an unknown failure tag {t}"));
                return fail_rest(push, i, items, e);
            }
        }
        i += 1;
    }
}

/// Decodes `n` results in a row (the hot loop of a `map`); on error, how many were decoded
/// and the bytes from the one that failed.
#[inline(always)]
fn decode_run<'de, R: Message>(
    de: &mut wire::Reader<'de>,
    n: usize,
    push: &mut impl FnMut(Result<R, TaskError>),
) -> Result<(), (usize, &'de [u8], postcard::Error)> {
    for k in 0..n {
        let at = de.rest();
        match de.read::<R>() {
            Ok(r) => push(Ok(r)),
            Err(e) => return Err((k, at, e)),
        }
    }
    Ok(())
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
        self.submit_inner(f, arg, Some(timeout))
    }

    fn submit_inner<T, R, F>(
        &self,
        f: F,
        arg: T,
        timeout: Option<Duration>,
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
        let runner = Runner {
            group: LONG_LIVED,
            tramp,
            ctx,
            owned: false,
        };
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
        let capturing = keep.is_some();
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
                    None => LONG_LIVED,
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
        if capturing {
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

    /// `map` over an iterator of (about) `n` items.
    fn map_known<T, R, F, It>(&self, f: F, items: It, n: usize) -> Result<Vec<R>, PoolError>
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
        let runner = Runner::for_map::<T, R, F>(shared, f)?;
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
                    if g.closed && runner.group == LONG_LIVED && g.terminated {
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

    fn imap_inner<T, R, F, I>(
        &self,
        f: F,
        items: I,
        ordered: bool,
    ) -> Imap<'_, T, R, F, I::IntoIter>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        let window = 2 * self.shared.config.workers;
        Imap {
            pool: self,
            f: Some(f),
            items: items.into_iter(),
            runner: None,
            batch: None,
            chunk: self.shared.config.chunk_size_for(None),
            window,
            in_flight: 0,
            next_seq: 0,
            next_yield: 0,
            reorder: BTreeMap::new(),
            ready: VecDeque::new(),
            exhausted: false,
            done: false,
            ordered,
            _t: PhantomData,
        }
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
        let pool = Pool { shared };
        let n = pool.shared.config.workers;
        pool.shared
            .lock()
            .groups
            .insert(LONG_LIVED, Group::new(None, n, false));
        for _ in 0..n {
            // On failure `pool` is dropped, which kills and reaps the workers forked so far.
            let w = pool.shared.fork_worker(LONG_LIVED)?;
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
        let shared = &*self.shared;
        shared.check_owner()?;
        if shared.lock().closed {
            return Err(PoolError::Closed);
        }
        let items = items.into_iter();
        match items.size_hint() {
            // The length is known: encode straight from the iterator.
            (lo, Some(hi)) if lo == hi => self.map_known(f, items, lo),
            _ => {
                let items: Vec<T> = items.collect();
                let n = items.len();
                self.map_known(f, items.into_iter(), n)
            }
        }
    }

    fn imap<T, R, F, I>(&self, f: F, items: I) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        self.imap_inner(f, items, true)
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
        self.imap_inner(f, items, false)
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
    /// `Closed` if the pool is closed or used from another process than its creator. A
    /// process that cannot be forked for a capturing closure is reported by the handle.
    fn submit<T, R, F>(&self, f: F, arg: T) -> Result<TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let timeout = self.shared.config.task_timeout;
        self.submit_inner(f, arg, timeout)
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

/// Iterator of [`Pool::imap`](uniconc_core::Pool::imap) and `imap_unordered`.
struct Imap<'a, T, R, F, I> {
    pool: &'a Pool,
    f: Option<F>,
    items: I,
    runner: Option<Runner>,
    batch: Option<BatchId>,
    chunk: usize,
    window: usize,
    in_flight: usize,
    next_seq: u64,
    next_yield: u64,
    /// Ordered mode: outcomes that arrived ahead of their turn.
    reorder: BTreeMap<u64, (usize, Outcome)>,
    ready: VecDeque<Result<R, TaskError>>,
    exhausted: bool,
    done: bool,
    ordered: bool,
    _t: PhantomData<fn(T)>,
}

impl<T, R, F, I> Imap<'_, T, R, F, I>
where
    T: Message,
    R: Message,
    F: Fn(T) -> R + Send + Sync + 'static,
    I: Iterator<Item = T>,
{
    fn start(&mut self) -> Result<(), TaskError> {
        let shared = &*self.pool.shared;
        if shared.check_owner().is_err() || shared.lock().closed {
            return Err(TaskError::Cancelled);
        }
        let f = self.f.take().expect("started once");
        let runner = Runner::for_map::<T, R, F>(shared, f)
            .map_err(|e| TaskError::Failed(format!("could not start workers: {e}")))?;
        self.batch = Some(shared.new_batch(&mut shared.lock()));
        self.runner = Some(runner);
        Ok(())
    }

    /// Queues chunks until the window is full or the input ends.
    fn refill(&mut self) {
        let shared = &*self.pool.shared;
        let (Some(runner), Some(batch)) = (&self.runner, self.batch) else {
            return;
        };
        while !self.exhausted && self.in_flight < self.window {
            let mut count = 0;
            let mut bad = None;
            let items = &mut self.items;
            let chunk = self.chunk;
            let buf = shared
                .lock()
                .buffer(33 + chunk.min(1 << 20) * (std::mem::size_of::<T>().min(64) + 1));
            let frame = runner.frame(buf, |v| {
                (count, bad) = encode_items(v, items, chunk);
                count
            });
            // A chunk cut short by an unencodable item says nothing of the input's end.
            if count < chunk && bad.is_none() {
                self.exhausted = true;
            }
            let mut g = shared.lock();
            if count == 0 {
                g.recycle(frame);
            } else {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.in_flight += 1;
                if g.closed {
                    if let Some(b) = g.batches.get_mut(&batch) {
                        b.done.push_back((seq, count, Err(TaskError::Cancelled)));
                    }
                    self.exhausted = true;
                } else {
                    shared.enqueue(&mut g, batch, seq, runner.group, frame, count);
                }
            }
            match bad {
                // The item after the `count` queued ones: its own result, in its place (the
                // next chunk starts after it).
                Some(e) => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.in_flight += 1;
                    if let Some(b) = g.batches.get_mut(&batch) {
                        b.done.push_back((seq, 1, Err(e)));
                    }
                }
                None if count == 0 => break,
                None => {}
            }
        }
    }

    fn accept(&mut self, seq: u64, items: usize, outcome: Outcome) {
        self.in_flight -= 1;
        if !self.ordered {
            let ready = &mut self.ready;
            let spent = decode::<R>(outcome, items, |r| ready.push_back(r));
            self.recycle(spent);
            return;
        }
        self.reorder.insert(seq, (items, outcome));
        while let Some((items, outcome)) = self.reorder.remove(&self.next_yield) {
            self.next_yield += 1;
            let ready = &mut self.ready;
            let spent = decode::<R>(outcome, items, |r| ready.push_back(r));
            self.recycle(spent);
        }
    }

    fn recycle(&self, spent: Option<Vec<u8>>) {
        if let Some(buf) = spent {
            self.pool.shared.lock().recycle(buf);
        }
    }
}

impl<T, R, F, I> Iterator for Imap<'_, T, R, F, I>
where
    T: Message,
    R: Message,
    F: Fn(T) -> R + Send + Sync + 'static,
    I: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if self.done {
                return None;
            }
            if self.runner.is_none() {
                if let Err(e) = self.start() {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            self.refill();
            if self.in_flight == 0 {
                self.done = true;
                return None;
            }
            let batch = self.batch.expect("started");
            match self.pool.shared.take_results(batch, None) {
                Some(got) if !got.is_empty() => {
                    for (seq, items, outcome) in got {
                        self.accept(seq, items, outcome);
                    }
                }
                _ => {
                    // The batch vanished (cannot happen while we hold it): end rather than spin.
                    self.done = true;
                    return Some(Err(TaskError::Failed(
                        "the pool lost this iterator's jobs".into(),
                    )));
                }
            }
        }
    }
}

impl<T, R, F, I> Drop for Imap<'_, T, R, F, I> {
    fn drop(&mut self) {
        let shared = &*self.pool.shared;
        if let Some(batch) = self.batch {
            shared.abandon(batch);
        }
        if let Some(runner) = &self.runner {
            runner.finish(shared);
        }
    }
}

/// Handle to one task submitted to a [`Pool`]; implements [`uniconc::TaskHandle`](uniconc_core::TaskHandle).
///
/// Waiting drives the pool (see "Who drives the workers" on [`Pool`]). Dropping the handle abandons the
/// result; the task still runs if it had started.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Event as _, Pool as _, TaskError, TaskHandle as _};
/// let pool = uniconc::process::pool(1)?;
/// let go = uniconc::process::event()?; // created before the pool's fork of the task
/// let double_when_told = {
///     let go = go.clone();
///     move |x: u32| {
///         go.wait();
///         x * 2
///     }
/// };
/// let mut task = pool.submit(double_when_told, 21)?;
/// assert_eq!(task.wait_timeout(Duration::from_millis(1)), Err(TaskError::Timeout));
/// go.set();
/// assert_eq!(task.wait(), Ok(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TaskHandle<R> {
    shared: Arc<Shared>,
    batch: BatchId,
    result: Option<Result<R, TaskError>>,
    finished: bool,
    taken: bool,
    waiter: Option<Arc<AsyncWaiter>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.finished)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<R: Message> TaskHandle<R> {
    fn collect(&mut self, deadline: Option<Instant>) {
        if self.finished {
            return;
        }
        if self.shared.check_owner().is_err() {
            // Moved into a forked child: the workers' sockets are the parent's, never read
            // them from here.
            self.finished = true;
            self.result = Some(Err(TaskError::Failed(
                "this task handle belongs to another process".into(),
            )));
            return;
        }
        if let Some(got) = self.shared.take_results(self.batch, deadline) {
            self.finished = true;
            let mut first = None;
            for (_, items, outcome) in got {
                decode::<R>(outcome, items, |r| {
                    first.get_or_insert(r);
                });
            }
            self.result = Some(first.unwrap_or(Err(TaskError::Cancelled)));
        }
    }
}

impl<R: Message> uniconc_core::TaskHandle<R> for TaskHandle<R> {
    fn wait(mut self) -> Result<R, TaskError> {
        self.wait_deadline(None)
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> Result<R, TaskError> {
        if self.taken {
            return Err(TaskError::AlreadyTaken);
        }
        self.collect(deadline);
        match self.result.take() {
            Some(r) => {
                self.taken = true;
                r
            }
            None => Err(TaskError::Timeout),
        }
    }

    /// Waits on a helper thread that drives the pool, so the executor's thread never blocks;
    /// works on any executor.
    fn wait_async(&mut self) -> impl Future<Output = Result<R, TaskError>> + Send + '_ {
        WaitFuture { handle: self }
    }

    fn is_finished(&self) -> bool {
        if self.finished || self.shared.check_owner().is_err() {
            return true;
        }
        let batch = self.batch;
        let (_g, ready) = self.shared.pump(Some(Instant::now()), |g| {
            g.batches
                .get(&batch)
                .is_none_or(|b| !b.done.is_empty() || b.outstanding == 0)
        });
        ready
    }
}

impl<R> Drop for TaskHandle<R> {
    fn drop(&mut self) {
        if let Some(w) = &self.waiter {
            w.stop();
        }
        if self.shared.check_owner().is_ok() {
            // Unregisters the batch; an unfinished task runs on, its result is dropped.
            self.shared.abandon(self.batch);
        }
    }
}

/// Future of [`TaskHandle::wait_async`](uniconc_core::TaskHandle::wait_async).
struct WaitFuture<'a, R> {
    handle: &'a mut TaskHandle<R>,
}

impl<R: Message> Future for WaitFuture<'_, R> {
    type Output = Result<R, TaskError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        use uniconc_core::TaskHandle as _;
        let h = &mut *self.get_mut().handle;
        match h.try_wait() {
            Err(TaskError::Timeout) => {}
            done => return Poll::Ready(done),
        }
        match &h.waiter {
            Some(w) if !w.fired() => w.set_waker(cx.waker()),
            _ => {
                let shared = Arc::clone(&h.shared);
                let batch = h.batch;
                h.waiter = Some(AsyncWaiter::start(cx.waker().clone(), move |stop| {
                    use std::sync::atomic::Ordering;
                    while !stop.load(Ordering::Acquire) {
                        let tick = Instant::now() + Duration::from_millis(50);
                        let (_g, ready) = shared.pump(Some(tick), |g| {
                            g.batches
                                .get(&batch)
                                .is_none_or(|b| !b.done.is_empty() || b.outstanding == 0)
                        });
                        if ready {
                            return;
                        }
                    }
                }));
            }
        }
        Poll::Pending
    }
}

impl<R> Drop for WaitFuture<'_, R> {
    fn drop(&mut self) {
        if let Some(w) = self.handle.waiter.take() {
            w.stop();
        }
    }
}
