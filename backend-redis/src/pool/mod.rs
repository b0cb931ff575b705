//! A pool of named tasks on a Redis server, run by worker agents on any machine:
//! [`Pool`], its [`Builder`], [`TaskHandle`], the agent ([`worker`], [`Worker`], [`Agent`]).
//!
//! ```no_run
//! use uniconc_core::Pool as _;
//!
//! uniconc_core::task! {
//!     fn square(x: u64) -> u64 { x * x }
//! }
//!
//! // On each worker machine (the same binary, or any binary with the same tasks):
//! //     uniconc_redis::worker("redis://10.0.0.5:6379").queue("squares").run()?;
//! // Here: a pool with no local agent, fed to the agents of queue "squares".
//! let conn = uniconc_redis::connect("redis://10.0.0.5:6379")?;
//! let pool = uniconc_redis::pool::Pool::configure()
//!     .connection(&conn)
//!     .queue("squares")
//!     .workers(0)
//!     .build()?;
//! assert_eq!(pool.map_task::<square>(0..4u64)?, [0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Named tasks only
//!
//! A task travels as its name, its schema fingerprint and its encoded argument
//! ([`TaskRequest`]); the agent finds it by name in its own registry (every
//! `uniconc_core::task!` of its binary, plus [`Worker::register`]). Closures cannot cross
//! machines: `map`, `imap`, `imap_unordered`, `imap_with` and `submit` are refused
//! (`Unsupported`, naming the task form to use). An agent that does not know the task, or
//! knows it with other types (schema mismatch), or cannot decode the argument, reports
//! `TaskError::Failed` naming the task; every agent of a queue should serve the same tasks.
//!
//! # Agents and queues
//!
//! An agent serves one queue, named on both sides (default `"default"`): the pool puts its
//! tasks on the queue, any live agent of the queue takes them. `Pool::new(n)` (and
//! `Pool::builder().workers(n)`) start one agent inside this process with `n` worker processes,
//! so generic code runs with no other setup; [`Builder::workers`]`(0)` starts none and uses
//! only agents started elsewhere ([`worker`]). Agents started elsewhere also help a pool that
//! has a local agent, and a local agent serves every pool of its queue.
//!
//! An agent runs each task in a forked worker process of its own (a `uniconc_process` pool):
//! a task that crashes, aborts or is killed takes down that worker, not the agent, whose own
//! thread keeps its heartbeat. `task_timeout` is carried with the tasks: the agent kills the
//! worker running a task past it and reports `DeadlineExceeded`.
//!
//! # Delivery: at least once
//!
//! Tasks are delivered **at least once**, so a task must be idempotent (or check a fencing
//! token before its side effect):
//!
//! - An agent holds the chunks it took while its heartbeat is renewed (every
//!   [`Builder::lease`]` / 4`, default lease [`LEASE`], 5 s). An agent that dies
//!   (SIGKILL, machine gone, cut off) stops renewing; once its heartbeat lapses, its chunks
//!   are delivered again to another agent. Redelivery is driven only by the heartbeat, never
//!   by the age of a task: a long task on a live agent is never run twice on that account.
//! - A task whose worker process dies is delivered again as well (alone, so it does not take
//!   other tasks with it).
//! - After [`max_deliveries`](Builder::max_deliveries) deliveries (default
//!   [`MAX_DELIVERIES`], 3) a task whose worker died every time fails with
//!   `TaskError::WorkerDied`.
//! - A task's result is reported once: the first result that reaches the pool wins; a later
//!   one (from an agent thought dead that finishes after all) is dropped and counted in
//!   [`PoolStats::duplicates`].
//!   [`TaskHandle::deliveries`] says how many deliveries the reported result took.
//!
//! # Chunks
//!
//! `map_task` puts several tasks in one queue entry (`chunk_size`, or
//! [`PoolConfig::chunk_size_for`] capped at [`DEFAULT_MAX_CHUNK`]), and submits every chunk of
//! a call in one script, so many trivial tasks cost few round trips; a chunk carries its
//! task's name once. Small tasks want chunks of 100 or more. `imap_task_with` uses `chunk_size` (default 1) and keeps about
//! `2 × workers` chunks in flight.
//!
//! # Close, join, terminate, drop
//!
//! `close` refuses new work; `join` closes and waits until every task submitted has its
//! result, then stops the local agent. With `workers(0)` and no live agent, `join` waits
//! until one starts, as a queue waits for its consumer. `terminate` (and dropping the pool)
//! deletes the tasks still queued, reports `Cancelled` for every task without a result, and
//! stops the local agent at once (its running tasks are killed); a task already running on
//! an agent elsewhere runs to its end, and its result is dropped.
//!
//! A pool whose process is paused or cut off from the server for longer than its lease counts
//! as gone: its queued tasks are dropped by the agents, and its waiting handles report
//! `Failed`, saying so, instead of waiting forever.
//!
//! # Files
//!
//! - `pool/mod.rs`: [`Pool`], [`Builder`], [`TaskHandle`], the lazy `imap_task_with`.
//! - `pool/agent.rs`: [`worker`], [`Worker`], [`Agent`]: the agent's claim loop and heartbeat.
//! - `pool/scripts.rs`: the keys of a queue and the Lua scripts (with their invariants).
//! - `pool/wire.rs`: a chunk's body, a task's outcome, a result entry.

mod agent;
mod scripts;
mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value as RValue;
use uniconc_core::task::{Task, TaskRequest, decode_output};
use uniconc_core::{Error, Message, Order, PoolConfig, PoolError, TaskError};

use crate::conn::{self, Connection, LEASE, Live, block_on_short, ms};
use crate::wait::{Attempt, wait_until};
pub use agent::{Agent, Worker, worker};
use scripts::{QueueKeys, scripts};
use wire::ChunkBody;

/// The default queue of pools and agents.
pub const DEFAULT_QUEUE: &str = "default";

/// The default [`Builder::max_deliveries`]: a task is delivered at most 3 times.
pub const MAX_DELIVERIES: u32 = 3;

/// The largest chunk `map_task` makes by itself: agents elsewhere are not counted in
/// `workers`, so smaller chunks spread a call over them; each costs two scripts on an agent.
pub const DEFAULT_MAX_CHUNK: usize = 1000;

/// How many results the pool reads per round trip.
const TAKE_BATCH: usize = 4096;

/// What the closure methods answer.
const CLOSURES: &str = "the Redis pool runs named tasks only (a closure cannot cross to \
     another machine): use map_task::<T>, imap_task, imap_unordered_task, imap_task_with or \
     submit_task::<T> with a task defined by uniconc::task!";

/// Settings of a Redis [`Pool`]: [`Pool::configure`].
///
/// ```no_run
/// use std::time::Duration;
///
/// let pool = uniconc_redis::pool::Pool::configure()
///     .queue("thumbnails")
///     .workers(0) // only agents started elsewhere
///     .max_deliveries(5)
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// # drop(pool);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    conn: Option<Connection>,
    queue: String,
    config: PoolConfig,
    max_deliveries: u32,
    lease: Duration,
}

impl Builder {
    fn new(config: PoolConfig) -> Self {
        Self {
            conn: None,
            queue: DEFAULT_QUEUE.to_owned(),
            config,
            max_deliveries: MAX_DELIVERIES,
            lease: LEASE,
        }
    }

    /// The server (default: [`default_connection`](crate::default_connection)).
    pub fn connection(mut self, conn: &Connection) -> Self {
        self.conn = Some(conn.clone());
        self
    }

    /// The queue the pool's tasks go to; agents of the same queue run them (default
    /// [`DEFAULT_QUEUE`]).
    pub fn queue(mut self, name: &str) -> Self {
        name.clone_into(&mut self.queue);
        self
    }

    /// Worker processes of the agent started in this process; `0` starts none, and the pool
    /// relies on agents started elsewhere. Default: one per CPU.
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Tasks per queue entry for `map_task` and `imap_task_with` (at least 1).
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.config.chunk_size = Some(n);
        self
    }

    /// Replace a worker process of the local agent after it ran `n` chunks (at least 1).
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.config.max_tasks_per_worker = Some(n);
        self
    }

    /// A task running longer than this on an agent is killed with its worker process and
    /// reported as `DeadlineExceeded`. Carried with the tasks, so agents elsewhere apply it.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// How many times a task is delivered before it fails with `WorkerDied` when its worker
    /// dies each time (at least 1; default [`MAX_DELIVERIES`]).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// The lease of the pool and of its local agent: a heartbeat that has not been renewed
    /// for this long counts as gone (at least 100 ms; default [`LEASE`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Starts the pool (and its local agent, unless `workers(0)`).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad queue name, a chunk size, task limit, `max_deliveries` of
    /// 0, a zero task timeout or a lease under 100 ms; `Os` if the server cannot be reached or
    /// the local agent's workers cannot be forked.
    pub fn build(self) -> Result<Pool, Error> {
        scripts::check_queue_name(&self.queue)?;
        let mut check = self.config.clone();
        check.workers = check.workers.max(1);
        check.validate()?;
        if self.max_deliveries == 0 {
            return Err(Error::invalid_argument(
                "redis pool: max_deliveries must be at least 1",
            ));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::invalid_argument(
                "redis pool: the lease must be at least 100 ms",
            ));
        }
        let conn = match self.conn {
            Some(c) => c,
            None => crate::default_connection()?,
        };
        let live = conn.live()?;
        let keys = QueueKeys::new(&self.queue);
        let id = conn::new_id();
        let pk = keys.pool(&id);
        let (notify, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            conn: conn.clone(),
            live,
            alive: format!("{pk}alive"),
            out: format!("{pk}out"),
            wake: format!("{pk}w"),
            keys,
            id,
            config: self.config.clone(),
            max_deliveries: self.max_deliveries,
            lease: self.lease,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            notify,
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        shared.renew_alive()?;
        conn::runtime().spawn(collect(shared.clone()));
        let mut pool = Pool {
            shared,
            agent: Mutex::new(None),
            queue: self.queue.clone(),
        };
        if self.config.workers > 0 {
            let agent = agent::Worker::on(&conn)
                .queue(&self.queue)
                .workers(self.config.workers)
                .lease(self.lease)
                .max_tasks(self.config.max_tasks_per_worker)
                .start()?;
            pool.agent = Mutex::new(Some(agent));
        }
        Ok(pool)
    }
}

/// A pool of named tasks run by worker agents; implements [`uniconc_core::Pool`] for the task
/// methods (`map_task`, `imap_task`, `imap_unordered_task`, `imap_task_with`, `submit_task`).
/// See the [module docs](self) for agents, delivery and shutdown.
///
/// ```
/// use uniconc_core::{Pool as _, TaskError, TaskHandle as _};
///
/// uniconc_core::task! {
///     fn half(x: u32) -> u32 { assert!(x % 2 == 0, "{x} is odd"); x / 2 }
/// }
///
/// let server = uniconc_redis::testing::RedisServer::start(); // a private server
/// let conn = uniconc_redis::connect(&server.url())?;
/// let pool = uniconc_redis::pool::Pool::configure()
///     .connection(&conn)
///     .workers(2) // an agent in this process, with 2 worker processes
///     .build()?;
/// assert_eq!(pool.map_task::<half>([2, 4, 6])?, [1, 2, 3]);
/// let h = pool.submit_task::<half>(3)?;
/// assert_eq!(h.wait(), Err(TaskError::Panicked("3 is odd".into())));
/// assert!(pool.map(|x: u32| x, [1]).is_err()); // closures: refused
/// pool.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    agent: Mutex<Option<Agent>>,
    queue: String,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("queue", &self.queue)
            .field("id", &self.shared.id)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Counters of one pool ([`Pool::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks put on the queue.
    pub submitted: u64,
    /// Results read back from the server (each task's at most once).
    pub reported: u64,
    /// Of those, results of tasks delivered more than once.
    pub redelivered: u64,
    /// Later results of a task that already had one (it ran again after its agent was
    /// thought gone), dropped.
    pub duplicates: u64,
}

#[derive(Default)]
struct Stats {
    submitted: AtomicU64,
    reported: AtomicU64,
    redelivered: AtomicU64,
    duplicates: AtomicU64,
}

/// What the pool's process shares between the pool, its handles and its collector task.
struct Shared {
    conn: Connection,
    live: Arc<Live>,
    keys: QueueKeys,
    alive: String,
    out: String,
    wake: String,
    id: String,
    config: PoolConfig,
    max_deliveries: u32,
    lease: Duration,
    state: Mutex<State>,
    /// Signalled whenever `state` gains a result or ends.
    cv: Condvar,
    /// Bumped with `cv`, for `wait_async`.
    notify: tokio::sync::watch::Sender<u64>,
    /// Set when the pool is terminated or dropped: the collector ends.
    stop: AtomicBool,
    stats: Stats,
}

#[derive(Default)]
struct State {
    next_idx: u64,
    /// Tasks someone waits for (a handle, a map, an iterator): results of others are dropped.
    wanted: HashSet<u64>,
    /// Results arrived and not yet taken, with their delivery count.
    results: HashMap<u64, (Result<Vec<u8>, TaskError>, u32)>,
    /// Tasks without a result yet -> their chunk id.
    pending: HashMap<u64, String>,
    closed: bool,
    terminated: bool,
    /// Why the pool cannot finish its tasks any more (its lease lapsed on the server).
    broken: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_all(&self) {
        self.cv.notify_all();
        self.notify.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Creates the pool's `alive` key.
    fn renew_alive(&self) -> Result<(), Error> {
        let mut c = self.live.cmd.clone();
        self.conn.count(1);
        block_on_short(async {
            scripts()
                .alive
                .key(&self.alive)
                .arg(ms(self.lease))
                .arg(1)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .map_err(|e| conn::redis_error("starting a pool", e))?;
        Ok(())
    }

    /// Queues `reqs` (index, request) in chunks of `chunk` with one script; registers them as
    /// wanted and pending.
    fn submit(&self, reqs: Vec<(u64, TaskRequest)>, chunk: usize) -> Result<(), PoolError> {
        let timeout_ms = self.config.task_timeout.map_or(0, |t| ms(t).max(1));
        let mut inv = scripts().submit.prepare_invoke();
        inv.key(&self.keys.ready)
            .arg(&self.keys.prefix)
            .arg(&self.id)
            .arg(self.max_deliveries)
            .arg(ms(self.lease));
        let mut chunks = Vec::new();
        let mut it = reqs.into_iter().peekable();
        while it.peek().is_some() {
            let items: Vec<(u64, TaskRequest)> = it.by_ref().take(chunk).collect();
            let idx: Vec<u64> = items.iter().map(|(i, _)| *i).collect();
            let body = wire::encode(&ChunkBody::of(timeout_ms, items))
                .map_err(|e| PoolError::Task { index: 0, error: e })?;
            chunks.push((conn::new_id(), idx, body));
        }
        for (cid, idx, body) in &chunks {
            let list = idx.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            inv.arg(cid).arg(list).arg(body.as_slice());
        }
        {
            let mut st = self.lock();
            if st.closed {
                return Err(PoolError::Closed);
            }
            for (cid, idx, _) in &chunks {
                for i in idx {
                    st.wanted.insert(*i);
                    st.pending.insert(*i, cid.clone());
                }
            }
        }
        let mut c = self.live.cmd.clone();
        self.conn.count(1);
        let r = block_on_short(async { inv.invoke_async::<i64>(&mut c).await });
        let fail = |st: &mut State| {
            for (_, idx, _) in &chunks {
                for i in idx {
                    st.wanted.remove(i);
                    st.pending.remove(i);
                }
            }
        };
        match r {
            Ok(1) => {
                let n: usize = chunks.iter().map(|c| c.1.len()).sum();
                // Relaxed: statistics.
                self.stats.submitted.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(_) => {
                let mut st = self.lock();
                fail(&mut st);
                Err(PoolError::Spawn(Error::closed(
                    "redis pool: the pool's lease on the server lapsed (its process was \
                     paused or cut off for longer than the lease, or the server lost its \
                     data): it takes no more tasks",
                )))
            }
            Err(e) => {
                let mut st = self.lock();
                fail(&mut st);
                Err(PoolError::Spawn(conn::redis_error("queueing tasks", e)))
            }
        }
    }

    /// Fresh task indexes.
    fn indexes(&self, n: usize) -> u64 {
        let mut st = self.lock();
        let first = st.next_idx;
        st.next_idx += n as u64;
        first
    }

    /// Takes the result of `idx` if it has one, or why it never will.
    fn take(st: &mut State, idx: u64) -> Option<(Result<Vec<u8>, TaskError>, u32)> {
        if let Some(r) = st.results.remove(&idx) {
            st.wanted.remove(&idx);
            return Some(r);
        }
        if st.terminated {
            st.wanted.remove(&idx);
            return Some((Err(TaskError::Cancelled), 0));
        }
        if let Some(why) = &st.broken
            && st.pending.contains_key(&idx)
        {
            let why = why.clone();
            st.wanted.remove(&idx);
            st.pending.remove(&idx);
            return Some((Err(TaskError::Failed(why)), 0));
        }
        None
    }

    /// Waits for the result of `idx` until `deadline`.
    fn wait_for(
        &self,
        idx: u64,
        deadline: Option<Instant>,
    ) -> Option<(Result<Vec<u8>, TaskError>, u32)> {
        let mut st = self.lock();
        loop {
            if let Some(r) = Self::take(&mut st, idx) {
                return Some(r);
            }
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Waits for the result of any of `idxs`.
    fn wait_any(&self, idxs: &HashSet<u64>) -> (u64, Result<Vec<u8>, TaskError>) {
        let mut st = self.lock();
        loop {
            for &i in idxs {
                if let Some((r, _)) = Self::take(&mut st, i) {
                    return (i, r);
                }
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Forgets tasks nobody waits for any more.
    fn abandon(&self, idxs: impl IntoIterator<Item = u64>) {
        let mut st = self.lock();
        for i in idxs {
            st.wanted.remove(&i);
            st.results.remove(&i);
        }
    }

    /// Files results read from the server: the first result of a task wins, a later one (the
    /// task ran again after its agent was thought gone) is dropped.
    fn dispatch(&self, raw: Vec<Vec<u8>>) {
        let mut st = self.lock();
        for r in raw {
            let Some(entries) = wire::parse_entry(&r) else {
                continue;
            };
            for (idx, deliveries, result) in entries {
                if st.pending.remove(&idx).is_none() {
                    // Relaxed: statistics.
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.stats.reported.fetch_add(1, Ordering::Relaxed);
                if deliveries > 1 {
                    self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                if st.wanted.contains(&idx) {
                    st.results.insert(idx, (result, deliveries));
                }
            }
        }
        drop(st);
        self.wake_all();
    }

    /// Ends the pool: deletes its queued chunks and keys, cancels what has no result.
    fn terminate(&self) {
        let cids: HashSet<String> = {
            let mut st = self.lock();
            if st.terminated {
                return;
            }
            st.terminated = true;
            st.closed = true;
            st.pending.drain().map(|(_, c)| c).collect()
        };
        // Release: the collector's Acquire load sees the pool terminated.
        self.stop.store(true, Ordering::Release);
        self.wake_all();
        let mut inv = scripts().drop_pool.prepare_invoke();
        inv.key(&self.alive).key(&self.out).arg(&self.keys.prefix);
        for c in &cids {
            inv.arg(c);
        }
        let live = self.live.clone();
        if !live.is_ours() {
            return;
        }
        self.conn.count(1);
        conn::run_cleanup(async move {
            let mut c = live.cmd.clone();
            let _ = inv.invoke_async::<i64>(&mut c).await;
        });
    }
}

/// The pool's collector, on the crate's runtime: reads results as they arrive, renews the
/// pool's `alive` key and reaps lapsed agents every lease / 4, until the pool ends.
async fn collect(shared: Arc<Shared>) {
    let tick = shared.lease / 4;
    let mut next_tick = Instant::now();
    loop {
        // Acquire: pairs with the Release in `terminate`.
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + tick;
            housekeeping(&shared).await;
        }
        let got = wait_until(
            &shared.live,
            &shared.wake,
            Some(next_tick),
            None,
            || async {
                let mut c = shared.live.cmd.clone();
                shared.conn.count(1);
                let r: Result<RValue, _> = scripts()
                    .take
                    .key(&shared.out)
                    .arg(TAKE_BATCH)
                    .invoke_async(&mut c)
                    .await;
                Ok::<_, ()>(match r {
                    Ok(RValue::Array(items)) if !items.is_empty() => Attempt::Done(items),
                    Ok(_) => Attempt::Wait,
                    Err(_) => Attempt::Retry,
                })
            },
        )
        .await;
        if let Ok(Some(items)) = got {
            let raw = items
                .into_iter()
                .filter_map(|v| match v {
                    RValue::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect();
            shared.dispatch(raw);
        }
    }
}

/// Renews the pool's lease (noticing one that lapsed) and reaps lapsed agents.
async fn housekeeping(shared: &Shared) {
    let mut c = shared.live.cmd.clone();
    shared.conn.count(2);
    let had: Result<i64, _> = scripts()
        .alive
        .key(&shared.alive)
        .arg(ms(shared.lease))
        .arg(0)
        .invoke_async(&mut c)
        .await;
    if let Ok(0) = had {
        let mut st = shared.lock();
        if st.broken.is_none() && !st.terminated {
            st.broken = Some(
                "redis pool: the pool's lease on the server lapsed (its process was paused or \
                 cut off for longer than the lease, or the server lost its data): its queued \
                 tasks were dropped"
                    .to_owned(),
            );
            st.closed = true;
        }
        drop(st);
        shared.wake_all();
        return;
    }
    let _: Result<i64, _> = scripts()
        .reap
        .key(&shared.keys.ready)
        .key(&shared.keys.taken)
        .key(&shared.keys.agents)
        .arg(&shared.keys.prefix)
        .arg(ms(conn::IDLE_TTL))
        .invoke_async(&mut c)
        .await;
}

impl Pool {
    /// Settings beyond [`PoolConfig`]: the connection, the queue, `workers(0)`,
    /// `max_deliveries`, the lease.
    ///
    /// ```no_run
    /// let pool = uniconc_redis::pool::Pool::configure().queue("reports").workers(2).build()?;
    /// # drop(pool);
    /// # Ok::<(), uniconc_core::Error>(())
    /// ```
    pub fn configure() -> Builder {
        Builder::new(PoolConfig::default())
    }

    /// The queue this pool's tasks go to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Counters: tasks submitted, results reported, results that took more than one delivery.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared.stats;
        // Relaxed: statistics.
        PoolStats {
            submitted: s.submitted.load(Ordering::Relaxed),
            reported: s.reported.load(Ordering::Relaxed),
            redelivered: s.redelivered.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
        }
    }

    fn check_open(&self) -> Result<(), PoolError> {
        if !self.shared.live.is_ours() {
            return Err(PoolError::Spawn(
                self.shared.live.foreign_error("pool", &self.shared.id),
            ));
        }
        let st = self.shared.lock();
        if st.closed || st.terminated {
            return Err(PoolError::Closed);
        }
        Ok(())
    }

    /// The configured chunk size, else [`PoolConfig::chunk_size_for`] capped at
    /// [`DEFAULT_MAX_CHUNK`] (with `workers(0)` the heuristic counts one worker).
    fn chunk_for(&self, items: Option<usize>) -> usize {
        if let Some(c) = self.shared.config.chunk_size {
            return c;
        }
        let mut c = self.shared.config.clone();
        c.workers = c.workers.max(1);
        c.chunk_size_for(items).min(DEFAULT_MAX_CHUNK)
    }

    fn stop_agent(&self, graceful: bool) {
        if !self.shared.live.is_ours() {
            return; // a forked child's copy: the agent is the parent's
        }
        let agent = self.agent.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(a) = agent {
            if graceful { a.stop() } else { a.terminate() }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.shared.live.is_ours() {
            // A forked child's copy: the agent's threads and workers are the parent's.
            if let Some(a) = self
                .agent
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                std::mem::forget(a);
            }
            return;
        }
        self.shared.terminate();
        self.stop_agent(false);
    }
}

impl uniconc_core::Pool for Pool {
    type TaskHandle<R: Message> = TaskHandle<R>;

    /// Starts a pool on the [default connection](crate::default_connection), queue
    /// [`DEFAULT_QUEUE`], with a local agent of `config.workers` worker processes.
    ///
    /// # Errors
    /// As [`Builder::build`].
    fn with_config(config: PoolConfig) -> Result<Self, Error> {
        // The core rules first (workers >= 1 among them), as on every backend; agents
        // elsewhere only (`workers(0)`) go through `Pool::configure`.
        config.validate()?;
        Builder::new(config).build()
    }

    fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Refused: closures cannot cross machines.
    ///
    /// # Errors
    /// Always `Spawn` with an `Unsupported` error naming [`map_task`](uniconc_core::Pool::map_task).
    fn map<T, R, F, I>(&self, _f: F, _items: I) -> Result<Vec<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        Err(PoolError::Spawn(Error::unsupported(CLOSURES)))
    }

    /// Refused: yields one `Failed` naming the task methods, then ends.
    fn imap_with<T, R, F, I>(
        &self,
        _f: F,
        _items: I,
        _order: Order,
    ) -> impl Iterator<Item = Result<R, TaskError>>
    where
        T: Message,
        R: Message,
        F: Fn(T) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
    {
        std::iter::once(Err(TaskError::Failed(CLOSURES.to_owned())))
    }

    /// Refused: closures cannot cross machines.
    ///
    /// # Errors
    /// Always `Spawn` with an `Unsupported` error naming
    /// [`submit_task`](uniconc_core::Pool::submit_task).
    fn submit<T, R, F>(&self, _f: F, _arg: T) -> Result<Self::TaskHandle<R>, PoolError>
    where
        T: Message,
        R: Message,
        F: FnOnce(T) -> R + Send + 'static,
    {
        Err(PoolError::Spawn(Error::unsupported(CLOSURES)))
    }

    fn map_task<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<T::Output>, PoolError> {
        self.check_open()?;
        let mut reqs = Vec::new();
        for (i, arg) in items.into_iter().enumerate() {
            let req = TaskRequest::new::<T>(&arg).map_err(|e| PoolError::Task {
                index: i,
                error: TaskError::Failed(format!(
                    "task `{}`: the argument could not be encoded: {e}",
                    T::NAME
                )),
            })?;
            reqs.push(req);
        }
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let n = reqs.len();
        let first = self.shared.indexes(n);
        let chunk = self.chunk_for(Some(n));
        let reqs: Vec<(u64, TaskRequest)> = (first..).zip(reqs).collect();
        self.shared.submit(reqs, chunk)?;
        let mut out = Vec::with_capacity(n);
        let mut failed = None;
        for (i, idx) in (first..first + n as u64).enumerate() {
            let (r, _) = self
                .shared
                .wait_for(idx, None)
                .unwrap_or((Err(TaskError::Cancelled), 0));
            match r.and_then(|b| decode_output::<T>(&b)) {
                Ok(v) => out.push(v),
                Err(error) => {
                    if failed.is_none() {
                        failed = Some(PoolError::Task { index: i, error });
                    }
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn imap_task_with<T: Task>(
        &self,
        items: impl IntoIterator<Item = T::Arg>,
        order: Order,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>> {
        let chunk = self.shared.config.chunk_size.unwrap_or(1);
        let window = 2 * self.shared.config.workers.max(4) * chunk;
        Imap::<T, _> {
            shared: self.shared.clone(),
            input: Some(items.into_iter()),
            order,
            chunk,
            window,
            slots: VecDeque::new(),
            in_flight: HashSet::new(),
            _task: PhantomData,
        }
    }

    fn submit_task<T: Task>(&self, arg: T::Arg) -> Result<Self::TaskHandle<T::Output>, PoolError> {
        self.check_open()?;
        let req = TaskRequest::new::<T>(&arg).map_err(|e| PoolError::Task {
            index: 0,
            error: TaskError::Failed(format!(
                "task `{}`: the argument could not be encoded: {e}",
                T::NAME
            )),
        })?;
        let idx = self.shared.indexes(1);
        self.shared.submit(vec![(idx, req)], 1)?;
        Ok(TaskHandle {
            shared: self.shared.clone(),
            idx,
            taken: false,
            deliveries: None,
            decode: decode_output::<T>,
        })
    }

    fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Closes the pool, waits until every task submitted has its result, then stops the local
    /// agent.
    ///
    /// # Errors
    /// Never: a pool that cannot finish reports it through its tasks' results.
    fn join(&self) -> Result<(), PoolError> {
        let mut st = self.shared.lock();
        st.closed = true;
        while !st.pending.is_empty() && !st.terminated && st.broken.is_none() {
            st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        self.stop_agent(true);
        Ok(())
    }

    fn terminate(&self) {
        self.shared.terminate();
        self.stop_agent(false);
    }
}

/// One position of a lazy map: a task on the queue, or an item that failed before it.
enum Slot<R> {
    Queued(u64),
    Ready(Result<R, TaskError>),
}

/// The iterator of [`imap_task_with`](uniconc_core::Pool::imap_task_with).
struct Imap<T: Task, I> {
    shared: Arc<Shared>,
    input: Option<I>,
    order: Order,
    chunk: usize,
    /// Most items in flight.
    window: usize,
    slots: VecDeque<Slot<T::Output>>,
    in_flight: HashSet<u64>,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task, I: Iterator<Item = T::Arg>> Imap<T, I> {
    /// Pulls items from the input until the window is full, and queues them in one script.
    fn refill(&mut self) {
        let Some(input) = &mut self.input else {
            return;
        };
        let mut reqs = Vec::new();
        let mut queued = Vec::new();
        while self.slots.len() < self.window {
            let Some(arg) = input.next() else {
                self.input = None;
                break;
            };
            match TaskRequest::new::<T>(&arg) {
                Ok(req) => {
                    let idx = self.shared.indexes(1);
                    reqs.push((idx, req));
                    queued.push(self.slots.len());
                    self.slots.push_back(Slot::Queued(idx));
                }
                Err(e) => self
                    .slots
                    .push_back(Slot::Ready(Err(TaskError::Failed(format!(
                        "task `{}`: the argument could not be encoded: {e}",
                        T::NAME
                    ))))),
            }
        }
        if reqs.is_empty() {
            return;
        }
        let idxs: Vec<u64> = reqs.iter().map(|(i, _)| *i).collect();
        match self.shared.submit(reqs, self.chunk) {
            Ok(()) => self.in_flight.extend(idxs),
            Err(PoolError::Closed) => {
                // As on every backend: a closed pool ends the iterator with one `Cancelled`
                // in place of the items it did not take.
                self.slots.truncate(queued[0]);
                self.slots.push_back(Slot::Ready(Err(TaskError::Cancelled)));
                self.input = None;
            }
            Err(e) => {
                let why = TaskError::Failed(e.to_string());
                for at in queued {
                    self.slots[at] = Slot::Ready(Err(why.clone()));
                }
                self.input = None;
            }
        }
    }

    fn finish(&mut self, idx: u64, r: Result<Vec<u8>, TaskError>) -> Result<T::Output, TaskError> {
        self.in_flight.remove(&idx);
        r.and_then(|b| decode_output::<T>(&b))
    }
}

impl<T: Task, I: Iterator<Item = T::Arg>> Iterator for Imap<T, I> {
    type Item = Result<T::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.refill();
        match self.order {
            Order::Input => match self.slots.pop_front()? {
                Slot::Ready(r) => Some(r),
                Slot::Queued(idx) => {
                    let (r, _) = self
                        .shared
                        .wait_for(idx, None)
                        .unwrap_or((Err(TaskError::Cancelled), 0));
                    Some(self.finish(idx, r))
                }
            },
            Order::Completion => {
                if let Some(at) = self.slots.iter().position(|s| matches!(s, Slot::Ready(_))) {
                    if let Some(Slot::Ready(r)) = self.slots.remove(at) {
                        return Some(r);
                    }
                }
                if self.slots.is_empty() {
                    return None;
                }
                let (idx, r) = self.shared.wait_any(&self.in_flight);
                if let Some(at) = self
                    .slots
                    .iter()
                    .position(|s| matches!(s, Slot::Queued(i) if *i == idx))
                {
                    self.slots.remove(at);
                }
                Some(self.finish(idx, r))
            }
        }
    }
}

impl<T: Task, I> Drop for Imap<T, I> {
    fn drop(&mut self) {
        self.shared.abandon(self.in_flight.drain());
    }
}

/// Handle to one task submitted with [`submit_task`](uniconc_core::Pool::submit_task).
///
/// Dropping it abandons the result; the task still runs.
pub struct TaskHandle<R> {
    shared: Arc<Shared>,
    idx: u64,
    taken: bool,
    deliveries: Option<u32>,
    decode: fn(&[u8]) -> Result<R, TaskError>,
}

impl<R> std::fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("index", &self.idx)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<R> TaskHandle<R> {
    /// How many deliveries the reported result took (`Some(1)`: the first agent that took it
    /// finished it); `None` until the result was taken, or when the task never ran
    /// (cancelled, or its pool's lease lapsed).
    pub fn deliveries(&self) -> Option<u32> {
        self.deliveries.filter(|&n| n > 0)
    }

    fn finish(&mut self, r: (Result<Vec<u8>, TaskError>, u32)) -> Result<R, TaskError> {
        self.taken = true;
        self.deliveries = Some(r.1);
        r.0.and_then(|b| (self.decode)(&b))
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
        match self.shared.wait_for(self.idx, deadline) {
            Some(r) => self.finish(r),
            None => Err(TaskError::Timeout),
        }
    }

    fn wait_async(&mut self) -> impl Future<Output = Result<R, TaskError>> + Send + '_ {
        let mut rx = self.shared.notify.subscribe();
        async move {
            loop {
                if self.taken {
                    return Err(TaskError::AlreadyTaken);
                }
                let got = {
                    let mut st = self.shared.lock();
                    Shared::take(&mut st, self.idx)
                };
                if let Some(r) = got {
                    return self.finish(r);
                }
                if rx.changed().await.is_err() {
                    return Err(TaskError::Cancelled);
                }
            }
        }
    }

    fn is_finished(&self) -> bool {
        let st = self.shared.lock();
        self.taken || st.results.contains_key(&self.idx) || st.terminated || st.broken.is_some()
    }
}

impl<R> Drop for TaskHandle<R> {
    fn drop(&mut self) {
        if !self.taken {
            self.shared.abandon([self.idx]);
        }
    }
}
