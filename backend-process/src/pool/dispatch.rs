//! The dispatcher: the pool's shared state, the leader's rounds over the workers' sockets
//! and pidfds, the job queue and its slots, and the frames of a job ([`Runner`]).

use super::*;

pub(super) struct Shared {
    pub(super) owner: Pid,
    pub(super) config: PoolConfig,
    pub(super) inner: Mutex<Inner>,
    /// Signalled at the end of every leader round and on every state change.
    pub(super) cond: Condvar,
    /// Wakes the leader out of `poll` when the set of workers or jobs changed.
    pub(super) wake: sys::WakePipe,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) workers: Vec<Worker>,
    pub(super) groups: HashMap<GroupId, Group>,
    pub(super) jobs: HashMap<JobId, Job>,
    pub(super) batches: HashMap<BatchId, Batch>,
    pub(super) next_id: u64,
    /// How many jobs may run at once: the pool's `workers`, whatever kind of function the
    /// jobs run (see [`Inner::slots_used`]).
    pub(super) limit: usize,
    /// A thread is polling the workers (or forking for them) right now.
    pub(super) leader: bool,
    /// Frame buffers kept for reuse (sent job frames, decoded result frames): a chunk is
    /// encoded into, and a result read into, memory that is already mapped and warm.
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) closed: bool,
    pub(super) terminated: bool,
}

/// Workers that can run the same jobs: the long-lived ones, or the ones forked for one
/// capturing closure.
pub(super) struct Group {
    /// Keeps a capturing closure alive in the parent while workers that inherit it may be
    /// forked.
    pub(super) keep: Option<Arc<dyn Any + Send + Sync>>,
    /// How many workers the group wants.
    pub(super) size: usize,
    pub(super) queue: VecDeque<JobId>,
    /// No new jobs, no replacements; removed once its workers are gone.
    pub(super) retired: bool,
    /// Each worker runs one job, then is retired (capturing `submit`). Such a group is
    /// created with its job queued and no worker: its worker is forked only once the job
    /// holds a slot (`slot`), so queued capturing submits cost no process.
    pub(super) one_shot: bool,
    /// One-shot group: its queued job holds one of the pool's `limit` slots, and its worker
    /// may be forked. Set by [`Inner::dispatch`], oldest job first.
    pub(super) slot: bool,
    /// After a failed fork, do not retry before this.
    pub(super) retry_at: Option<Instant>,
    pub(super) last_spawn_error: Option<String>,
}

pub(super) struct Worker {
    pub(super) pid: Pid,
    pub(super) group: GroupId,
    pub(super) sock: OwnedFd,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) buf: FrameBuf,
    /// Its result slots (`None` if they could not be mapped: results come inline).
    pub(super) slots: Option<Arc<slots::Slots>>,
    /// The slot claimed for the running job, if any.
    pub(super) slot: Option<slots::SlotGuard>,
    pub(super) job: Option<JobId>,
    pub(super) jobs_done: usize,
    /// Killed on purpose: how its job (if any) ends.
    pub(super) killed: Option<TaskError>,
    /// A send to it failed: take no more jobs.
    pub(super) broken: bool,
    /// Sent an exit frame.
    pub(super) exiting: bool,
}

pub(super) struct Job {
    pub(super) batch: BatchId,
    pub(super) seq: u64,
    pub(super) group: GroupId,
    /// The frame to send (emptied once sent).
    pub(super) frame: Vec<u8>,
    pub(super) items: usize,
    pub(super) timeout: Option<Duration>,
    pub(super) deadline: Option<Instant>,
}

/// A job's result: the worker's results, or why it has none.
pub(super) type Outcome = Result<Results, TaskError>;

/// A job's results body (format in `pool/worker.rs`).
pub(super) enum Results {
    /// In the result frame: `[frame header][INLINE][body]`.
    Inline(Vec<u8>),
    /// The first `len` bytes of the job's result slot.
    InSlot(slots::SlotGuard, usize),
}

impl Results {
    /// Reads a worker's result frame for the job that held `slot`.
    pub(super) fn from_frame(frame: Vec<u8>, slot: Option<slots::SlotGuard>) -> Outcome {
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

    pub(super) fn body(&self) -> &[u8] {
        match self {
            Results::Inline(frame) => frame.get(9..).unwrap_or_default(),
            Results::InSlot(g, len) => g.bytes(*len).unwrap_or_default(),
        }
    }
}

/// The jobs of one caller (`map` call, `imap` iterator, `submit`).
#[derive(Default)]
pub(super) struct Batch {
    pub(super) done: VecDeque<(u64, usize, Outcome)>,
    pub(super) outstanding: usize,
    pub(super) abandoned: bool,
}

impl Inner {
    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records a job's end and hands its outcome to its batch.
    pub(super) fn complete(&mut self, id: JobId, outcome: Outcome) {
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
    pub(super) fn recycle(&mut self, mut buf: Vec<u8>) {
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
    pub(super) fn buffer(&mut self, capacity: usize) -> Vec<u8> {
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
    pub(super) fn slots_used(&self) -> usize {
        let running = self.workers.iter().filter(|w| w.job.is_some()).count();
        let reserved = self
            .groups
            .values()
            .filter(|g| g.one_shot && g.slot && !g.queue.is_empty())
            .count();
        running + reserved
    }

    /// Sends the job at the front of worker `i`'s group queue to it; `false` if none was sent.
    pub(super) fn start_job(&mut self, i: usize, now: Instant) -> bool {
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
    pub(super) fn dispatch(&mut self) {
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
    pub(super) fn bury(&mut self, i: usize, cause: Option<Exit>) {
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
    pub(super) fn plan_spawns(
        &mut self,
        now: Instant,
    ) -> Vec<(GroupId, Option<Arc<dyn Any + Send + Sync>>)> {
        let mut plan = Vec::new();
        for (&id, g) in &self.groups {
            if g.retired && (!g.one_shot || g.queue.is_empty()) {
                continue;
            }
            if self.terminated || g.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            if (id == LONG_LIVED || id == CLEAN) && self.closed && g.queue.is_empty() {
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
    pub(super) fn install(&mut self, fresh: Vec<(GroupId, Result<Worker, Error>)>, now: Instant) {
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
    pub(super) fn gc_groups(&mut self) {
        let workers = &self.workers;
        self.groups.retain(|&id, g| {
            id == LONG_LIVED
                || id == CLEAN
                || !g.retired
                || !g.queue.is_empty()
                || workers.iter().any(|w| w.group == id)
        });
    }

    /// Removes the queued jobs of `batch` and marks it abandoned (its running jobs' results are
    /// dropped when they arrive).
    pub(super) fn abandon(&mut self, batch: BatchId) {
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
    pub(super) fn kill_workers(&mut self, group: Option<GroupId>, cause: &TaskError) {
        for w in &mut self.workers {
            if group.is_none_or(|g| g == w.group) && w.killed.is_none() {
                w.killed = Some(cause.clone());
                let _ = sys::kill9(w.pid);
            }
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent bookkeeping (every update is a
        // single step), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the leader and every waiter: the state changed.
    pub(super) fn kick(&self) {
        self.wake.wake();
        self.cond.notify_all();
    }

    pub(super) fn check_owner(&self) -> Result<(), PoolError> {
        if self.owner == sys::getpid() {
            Ok(())
        } else {
            Err(PoolError::Closed)
        }
    }

    /// Forks one worker for `group`.
    pub(super) fn fork_worker(&self, group: GroupId) -> Result<Worker, Error> {
        let (parent_end, child_end) =
            sys::socketpair().map_err(|e| Error::os("creating a worker's socket", e))?;
        for end in [&parent_end, &child_end] {
            sys::set_send_buffer(end.as_raw_fd(), 4 << 20);
        }
        if group == CLEAN {
            // The binary re-executed: no fork of this process, no inherited memory, so no
            // result slots (results come inline).
            let pid = crate::start::start_pool_worker(child_end)?;
            return Ok(Worker::new(pid, group, parent_end, None));
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
            worker::main(child_end.as_raw_fd(), me, slots.as_deref(), 0)
        })
        .map_err(|e| Error::os("forking a pool worker", e))?;
        drop(child_end);
        Ok(Worker::new(pid, group, parent_end, slots))
    }

    /// Forks the workers of `plan` with the lock released (the caller is the leader), then
    /// installs them, dispatches and ends the leadership.
    pub(super) fn fork_planned<'a>(
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
    pub(super) fn spawn_pending(&self) {
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
    pub(super) fn pump(
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
    pub(super) fn round(&self, g: &mut Inner, suspects: &[(Pid, bool)]) {
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

    pub(super) fn new_batch(&self, g: &mut Inner) -> BatchId {
        let id = g.new_id();
        g.batches.insert(id, Batch::default());
        id
    }

    /// Queues a job (and starts it if a worker of its group is idle).
    pub(super) fn enqueue(
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
    pub(super) fn take_results(
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

    pub(super) fn abandon(&self, batch: BatchId) {
        let mut g = self.lock();
        g.abandon(batch);
    }

    /// Starts a group of `size` workers forked while `keep` (a capturing closure) is alive.
    pub(super) fn start_group(
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
    pub(super) fn retire_group(&self, group: GroupId) {
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

    pub(super) fn terminate(&self) {
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

impl Worker {
    /// A worker just started: idle, no job done.
    pub(super) fn new(
        pid: Pid,
        group: GroupId,
        sock: OwnedFd,
        slots: Option<Arc<slots::Slots>>,
    ) -> Self {
        Self {
            pid,
            group,
            pidfd: sys::pidfd_open(pid),
            sock,
            buf: FrameBuf::default(),
            slots,
            slot: None,
            job: None,
            jobs_done: 0,
            killed: None,
            broken: false,
            exiting: false,
        }
    }
}

impl Group {
    pub(super) fn new(
        keep: Option<Arc<dyn Any + Send + Sync>>,
        size: usize,
        one_shot: bool,
    ) -> Self {
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
pub(super) struct KeepAlive<F>(pub(super) F);

// SAFETY: a `KeepAlive` is only ever dropped by the parent (never read through `&`); the
// forked workers read their own copies. Dropping needs `F: Send` (the last owner may be any
// thread), which is required.
unsafe impl<F: Send> Sync for KeepAlive<F> {}

/// Where a call's jobs run and with which trampoline/context pair.
pub(super) struct Runner {
    pub(super) group: GroupId,
    /// The trampoline word of its frames: `tramp`'s address for forked workers, its offset
    /// from [`worker::code_base`] for clean-started ones ([`Runner::into_group`]).
    pub(super) word: u64,
    pub(super) tramp: Trampoline,
    pub(super) ctx: usize,
    /// A batch group of our own, retired when the call ends.
    pub(super) owned: bool,
}

impl Runner {
    /// `true` if `F` can go to the long-lived workers as a bare trampoline.
    pub(super) fn zero_sized<F>() -> bool {
        std::mem::size_of::<F>() == 0 && !std::mem::needs_drop::<F>()
    }

    pub(super) fn for_map<T, R, F>(shared: &Shared, f: F) -> Result<Self, Error>
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
                word: tramp as usize as u64,
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
            word: tramp as usize as u64,
            tramp,
            ctx,
            owned: true,
        })
    }

    /// This runner of a zero-sized function (a task's `run`) sent to `group` instead: for
    /// [`CLEAN`], its trampoline travels as an offset in the binary (see
    /// [`worker::code_word`]).
    ///
    /// # Errors
    /// `Unsupported` if the trampoline's code is in another loaded object than this crate's.
    pub(super) fn into_group(mut self, group: GroupId, task: &str) -> Result<Self, Error> {
        debug_assert!(!self.owned, "only zero-sized functions are retargeted");
        if group == CLEAN {
            self.word = worker::code_word(self.tramp).ok_or_else(|| {
                Error::unsupported(format!(
                    "task `{task}`: its code is in another shared object than \
                     uniconc-process's, so a clean-started worker cannot locate it; build \
                     the pool with `Start::Fork`"
                ))
            })?;
        }
        self.group = group;
        Ok(self)
    }

    pub(super) fn finish(&self, shared: &Shared) {
        if self.owned {
            shared.retire_group(self.group);
        }
    }

    /// A job frame carrying `items` (already encoded).
    /// A job frame: `encode` appends the items and returns how many it wrote.
    pub(super) fn frame(
        &self,
        mut v: Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
    ) -> Vec<u8> {
        sys::begin_frame(&mut v);
        v.push(worker::KIND_RUN);
        v.extend_from_slice(&self.word.to_le_bytes());
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
