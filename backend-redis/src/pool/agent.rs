//! The worker agent: takes chunks of tasks from a queue, runs them in local worker processes,
//! records their results, and keeps a heartbeat while it lives.
//!
//! Threads of an agent:
//!
//! - one heartbeat thread: renews the agent's heartbeat and reaps lapsed agents every
//!   lease / 4; it runs no task, so a task that hangs or crashes never stops it;
//! - one slot thread per worker process: claims a chunk (waiting on the queue's wake-up
//!   channel), runs it on the local `uniconc_process` pool, records the outcome.
//!
//! A worker process that dies running a chunk of several tasks makes the agent run them one
//! by one, so that only the task that kills its worker is delivered again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value as RValue;
use uniconc_core::task::{Task, TaskRequest};
use uniconc_core::{Error, PoolError, TaskError, TaskHandle as _};

use super::DEFAULT_QUEUE;
use super::scripts::{QueueKeys, check_queue_name, scripts};
use super::wire::{self, ChunkBody, Outcome};
use crate::conn::{self, Connection, LEASE, Live, block_on, block_on_short, ms};
use crate::wait::{Attempt, wait_until};

/// A worker agent for the server at `url`, to configure and [`run`](Worker::run).
///
/// ```no_run
/// uniconc_core::task! {
///     fn resize(path: String) -> u64 { path.len() as u64 }
/// }
///
/// fn main() -> Result<(), uniconc_core::Error> {
///     uniconc_redis::pool::worker("redis://10.0.0.5:6379")
///         .queue("images") // the pool's queue
///         .workers(4) // tasks at once, each in a worker process
///         .run() // serves until the process ends
/// }
/// ```
pub fn worker(url: &str) -> Worker {
    Worker {
        target: Target::Url(url.to_owned()),
        queue: DEFAULT_QUEUE.to_owned(),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        lease: LEASE,
        max_tasks: None,
        error: None,
    }
}

#[derive(Debug, Clone)]
enum Target {
    Url(String),
    Conn(Connection),
}

/// The settings of a worker agent: [`worker`].
#[derive(Debug)]
#[must_use = "an agent does nothing until `run` or `start` is called"]
pub struct Worker {
    target: Target,
    queue: String,
    workers: usize,
    lease: Duration,
    max_tasks: Option<usize>,
    error: Option<Error>,
}

impl Worker {
    /// An agent on an open connection.
    pub(crate) fn on(conn: &Connection) -> Self {
        Worker {
            target: Target::Conn(conn.clone()),
            ..worker("")
        }
    }

    /// The queue to serve (default [`DEFAULT_QUEUE`]): pools of the same queue name send their
    /// tasks here.
    pub fn queue(mut self, name: &str) -> Self {
        name.clone_into(&mut self.queue);
        self
    }

    /// Worker processes, so tasks run at once (at least 1; default one per CPU).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The agent's lease: another agent or pool puts its tasks back on the queue once its
    /// heartbeat (renewed every lease / 4) is this old (at least 100 ms; default
    /// [`LEASE`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Replace a worker process after it ran `n` chunks (at least 1).
    pub fn max_tasks_per_worker(mut self, n: usize) -> Self {
        self.max_tasks = Some(n);
        self
    }

    pub(crate) fn max_tasks(mut self, n: Option<usize>) -> Self {
        self.max_tasks = n;
        self
    }

    /// Registers a task written by hand (`impl Task`), so the agent can run it; tasks of
    /// `uniconc_core::task!` are registered already.
    pub fn register<T: Task>(mut self) -> Self {
        if let Err(e) = uniconc_core::task::register::<T>()
            && self.error.is_none()
        {
            self.error = Some(e);
        }
        self
    }

    /// Starts the agent in the background.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad queue name, 0 workers, a lease under 100 ms or a task that
    /// could not be registered; `Os` if the server cannot be reached or the worker processes
    /// cannot be forked.
    pub fn start(self) -> Result<Agent, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        check_queue_name(&self.queue)?;
        if self.workers == 0 {
            return Err(Error::invalid_argument(
                "redis worker agent: at least 1 worker process",
            ));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::invalid_argument(
                "redis worker agent: the lease must be at least 100 ms",
            ));
        }
        // The local pool first: its workers are forked before this agent's threads exist.
        let mut cfg = uniconc_core::PoolConfig::default();
        cfg.workers = self.workers;
        cfg.max_tasks_per_worker = self.max_tasks;
        let local = <uniconc_process::Pool as uniconc_core::Pool>::with_config(cfg)?;
        let conn = match self.target {
            Target::Url(u) => crate::connect(&u)?,
            Target::Conn(c) => c,
        };
        let live = conn.live()?;
        let id = format!("{}:{:016x}", live.member, conn::random_u64());
        let shared = Arc::new(AgentShared {
            conn,
            live,
            keys: QueueKeys::new(&self.queue),
            id,
            lease: self.lease,
            local,
            stop: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
        });
        shared.beat();
        let mut threads = Vec::with_capacity(self.workers + 1);
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::os("redis worker agent: starting a thread", e))
        };
        let s = shared.clone();
        threads.push(spawn(
            "uniconc-agent-beat".into(),
            Box::new(move || s.heartbeat_loop()),
        )?);
        for i in 0..self.workers {
            let s = shared.clone();
            threads.push(spawn(
                format!("uniconc-agent-{i}"),
                Box::new(move || s.slot_loop()),
            )?);
        }
        Ok(Agent {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Starts the agent and serves the queue until the process ends.
    ///
    /// # Errors
    /// As [`start`](Worker::start); once started, it does not return.
    pub fn run(self) -> Result<(), Error> {
        let agent = self.start()?;
        agent.wait();
        Ok(())
    }
}

/// A running worker agent ([`Worker::start`]). Dropping it stops it as
/// [`terminate`](Agent::terminate) does.
pub struct Agent {
    shared: Arc<AgentShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The agent's id on the server (host, process and a random part).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Stops taking tasks, lets the running ones finish and record their results, then ends.
    pub fn stop(self) {
        // Release: the threads' Acquire loads see it.
        self.shared.stop.store(true, Ordering::Release);
        self.wait();
        self.shared.leave();
    }

    /// Stops at once: running tasks are killed with their worker processes and go back on the
    /// queue for another agent (each such delivery counts towards `max_deliveries`).
    pub fn terminate(self) {
        // Release: as in `stop`; `terminating` first, so a slot that sees `stop` sees it too.
        self.shared.terminating.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        uniconc_core::Pool::terminate(&self.shared.local);
        self.wait();
        self.shared.leave();
    }

    /// Waits for the agent's threads (they end after `stop`/`terminate`).
    fn wait(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.shared.live.is_ours() {
            return; // a forked child's copy: the threads and workers are the parent's
        }
        let running = !self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if running {
            self.shared.terminating.store(true, Ordering::Release);
            self.shared.stop.store(true, Ordering::Release);
            uniconc_core::Pool::terminate(&self.shared.local);
            self.wait();
            self.shared.leave();
        }
    }
}

struct AgentShared {
    conn: Connection,
    live: Arc<Live>,
    keys: QueueKeys,
    id: String,
    lease: Duration,
    local: uniconc_process::Pool,
    stop: AtomicBool,
    terminating: AtomicBool,
}

/// A chunk the agent holds.
struct Claimed {
    cid: String,
    n: i64,
    max: i64,
    pool: String,
    body: Vec<u8>,
    /// The chunk's task indexes, as the submitter listed them.
    idx: Vec<u64>,
}

/// What became of one task of a chunk.
enum Done {
    Result(u64, Outcome),
    /// Its worker process died: deliver it again (or fail it past `max_deliveries`).
    Again(u64, Vec<u8>),
}

/// Runs a chunk's calls (task name, schema, arguments) in a worker process.
fn run_chunk((name, schema, args): (String, u64, Vec<Vec<u8>>)) -> Vec<Outcome> {
    wire::run_many(name, schema, args)
}

/// Runs one request in a worker process.
fn run_one(req: TaskRequest) -> Outcome {
    Outcome::of(req.run())
}

impl AgentShared {
    fn stopping(&self) -> bool {
        // Acquire: pairs with the Release stores in `stop`/`terminate`.
        self.stop.load(Ordering::Acquire)
    }

    fn beat(&self) {
        let mut c = self.live.cmd.clone();
        self.conn.count(2);
        let _ = block_on(async {
            let _: Result<i64, _> = scripts()
                .beat
                .key(&self.keys.agents)
                .arg(&self.id)
                .arg(ms(self.lease))
                .invoke_async(&mut c)
                .await;
            scripts()
                .reap
                .key(&self.keys.ready)
                .key(&self.keys.taken)
                .key(&self.keys.agents)
                .arg(&self.keys.prefix)
                .arg(ms(conn::IDLE_TTL))
                .invoke_async::<i64>(&mut c)
                .await
        });
    }

    fn leave(&self) {
        let mut c = self.live.cmd.clone();
        self.conn.count(1);
        let _ = block_on_short(async {
            scripts()
                .leave
                .key(&self.keys.agents)
                .arg(&self.id)
                .invoke_async::<i64>(&mut c)
                .await
        });
    }

    fn heartbeat_loop(&self) {
        let tick = self.lease / 4;
        let step = tick.min(Duration::from_millis(50));
        let mut next = Instant::now() + tick;
        while !self.stopping() {
            std::thread::sleep(step);
            if Instant::now() >= next {
                next = Instant::now() + tick;
                self.beat();
            }
        }
    }

    fn slot_loop(&self) {
        while !self.stopping() {
            let until = Instant::now() + (self.lease / 4).min(Duration::from_millis(500));
            let got = block_on(wait_until(
                &self.live,
                &self.keys.wake,
                Some(until),
                None,
                || self.claim_once(),
            ));
            if let Ok(Some(Some(c))) = got {
                self.run(c);
            }
        }
    }

    /// One claim: `Done(None)` when the agent stops.
    async fn claim_once(&self) -> Result<Attempt<Option<Claimed>>, ()> {
        // Acquire: as in `stopping`; a stopping agent claims nothing more.
        if self.stop.load(Ordering::Acquire) {
            return Ok(Attempt::Done(None));
        }
        let mut c = self.live.cmd.clone();
        self.conn.count(1);
        let r: Result<RValue, _> = scripts()
            .claim
            .key(&self.keys.ready)
            .key(&self.keys.taken)
            .key(&self.keys.agents)
            .arg(&self.keys.prefix)
            .arg(&self.id)
            .arg(ms(self.lease))
            .invoke_async(&mut c)
            .await;
        Ok(match r {
            Ok(RValue::Array(v)) if v.len() == 6 => match parse_claim(v) {
                Some(c) => Attempt::Done(Some(c)),
                None => Attempt::Retry,
            },
            Ok(_) => Attempt::Wait,
            Err(_) => Attempt::Retry,
        })
    }

    /// Runs a claimed chunk and records what became of each task.
    fn run(&self, c: Claimed) {
        let body: ChunkBody = match wire::decode(&c.body) {
            Ok(b) => b,
            Err(e) => {
                // Written by another version of this crate: it would fail on every agent of
                // this version, so each of its tasks fails, saying why.
                let why = Outcome::Failed(format!(
                    "redis worker agent {}: the chunk could not be decoded (the pool and the \
                     agent run different versions of uniconc-redis?): {e}",
                    self.id
                ));
                let results = c.idx.iter().map(|&i| (i, why.clone())).collect();
                self.complete(&c, results, Vec::new());
                return;
            }
        };
        let Some(done) = self.execute(&body) else {
            return; // terminating: the chunk goes back on the queue when this agent leaves
        };
        let mut results = Vec::new();
        let mut again = Vec::new();
        for d in done {
            match d {
                Done::Result(idx, o) => results.push((idx, o)),
                Done::Again(idx, arg) => {
                    let one = ChunkBody {
                        items: vec![(idx, arg)],
                        ..body.clone()
                    };
                    match wire::encode(&one) {
                        Ok(b) => again.push((idx, b)),
                        Err(e) => results.push((idx, Outcome::Failed(e.to_string()))),
                    }
                }
            }
        }
        self.complete(&c, results, again);
    }

    /// Records a chunk's results and its tasks to deliver again, retrying while the server is
    /// unreachable (the chunk stays held meanwhile; if this agent's heartbeat lapses first,
    /// the chunk is delivered again and the first result recorded wins).
    fn complete(&self, c: &Claimed, results: Vec<(u64, Outcome)>, again: Vec<(u64, Vec<u8>)>) {
        let blob = if results.is_empty() {
            Vec::new()
        } else {
            wire::encode(&results).unwrap_or_else(|e| {
                // Too large for the codec (256 MiB): each task says so, nothing is lost.
                let why = Outcome::Failed(format!(
                    "redis worker agent: the results of the chunk could not be encoded ({e}): \
                     use a smaller chunk_size"
                ));
                let each: Vec<(u64, Outcome)> =
                    results.iter().map(|(i, _)| (*i, why.clone())).collect();
                wire::encode(&each).unwrap_or_default()
            })
        };
        let mut inv = scripts().complete.prepare_invoke();
        inv.key(&self.keys.ready)
            .key(&self.keys.taken)
            .arg(&self.keys.prefix)
            .arg(&self.id)
            .arg(&c.cid)
            .arg(&c.pool)
            .arg(c.n)
            .arg(c.max)
            .arg(ms(conn::IDLE_TTL))
            .arg(blob.as_slice())
            .arg(again.len());
        for (idx, body) in &again {
            inv.arg(conn::new_id()).arg(*idx).arg(body.as_slice());
        }
        let mut said = false;
        loop {
            let mut con = self.live.cmd.clone();
            self.conn.count(1);
            match block_on(async { inv.invoke_async::<i64>(&mut con).await }) {
                Ok(_) => return,
                // Acquire: as in `stopping`. A terminated agent leaves: its chunk goes back.
                Err(_) if self.terminating.load(Ordering::Acquire) => return,
                Err(e) => {
                    // This agent still holds the chunk (its heartbeat goes on), so nobody else
                    // will deliver it: keep trying until the server answers.
                    if !said {
                        eprintln!(
                            "uniconc-redis agent {}: recording the results of a chunk failed, \
                             retrying: {e}",
                            self.id
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Runs tasks on the local pool. `None` if the agent is being terminated.
    fn execute(&self, body: &ChunkBody) -> Option<Vec<Done>> {
        let (items, timeout_ms) = (&body.items, body.timeout_ms);
        if timeout_ms == 0 && items.len() > 1 {
            let (idxs, args): (Vec<u64>, Vec<Vec<u8>>) = items.iter().cloned().unzip();
            let call = (body.name.clone(), body.schema, args);
            match self.local_run(run_chunk, call, None) {
                Ok(outs) if outs.len() == idxs.len() => {
                    return Some(
                        idxs.into_iter()
                            .zip(outs)
                            .map(|(i, o)| Done::Result(i, o))
                            .collect(),
                    );
                }
                Ok(_) => {}
                Err(TaskError::Cancelled) => return None,
                // A worker died: run them one by one, so only the culprit is delivered again.
                Err(_) => {}
            }
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let mut done = Vec::with_capacity(items.len());
        for (idx, arg) in items.iter().cloned() {
            match self.local_run(run_one, body.request(arg.clone()), timeout) {
                Ok(o) => done.push(Done::Result(idx, o)),
                Err(TaskError::WorkerDied(_)) => done.push(Done::Again(idx, arg)),
                Err(TaskError::DeadlineExceeded) => {
                    done.push(Done::Result(idx, Outcome::DeadlineExceeded));
                }
                Err(TaskError::Cancelled) => return None,
                Err(e) => done.push(Done::Result(idx, Outcome::of(Err(e)))),
            }
        }
        Some(done)
    }

    /// Runs `f(arg)` on a local worker process. `f` is a `fn` item (zero-sized), so it goes
    /// to the pool's long-lived workers; a `fn` pointer would fork a process per call.
    fn local_run<A, R, F>(&self, f: F, arg: A, timeout: Option<Duration>) -> Result<R, TaskError>
    where
        A: uniconc_core::Message,
        R: uniconc_core::Message,
        F: FnOnce(A) -> R + Send + 'static,
    {
        const { assert!(size_of::<F>() == 0, "a fn item, not a fn pointer") };
        let h = match timeout {
            Some(t) => self.local.submit_with_timeout(f, arg, t),
            None => uniconc_core::Pool::submit(&self.local, f, arg),
        };
        match h {
            Ok(h) => h.wait(),
            Err(PoolError::Closed) => Err(TaskError::Cancelled),
            Err(e) => {
                // Acquire: as in `stopping`.
                if self.terminating.load(Ordering::Acquire) {
                    Err(TaskError::Cancelled)
                } else {
                    Err(TaskError::Failed(e.to_string()))
                }
            }
        }
    }
}

fn parse_claim(v: Vec<RValue>) -> Option<Claimed> {
    let mut it = v.into_iter();
    let text = |v: RValue| match v {
        RValue::BulkString(b) => String::from_utf8(b).ok(),
        RValue::SimpleString(s) => Some(s),
        _ => None,
    };
    let int = |v: RValue| match v {
        RValue::Int(i) => Some(i),
        _ => None,
    };
    let cid = text(it.next()?)?;
    let n = int(it.next()?)?;
    let max = int(it.next()?)?;
    let pool = text(it.next()?)?;
    let body = match it.next()? {
        RValue::BulkString(b) => b,
        _ => return None,
    };
    let idx = text(it.next()?)?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(Claimed {
        cid,
        n,
        max,
        pool,
        body,
        idx,
    })
}
