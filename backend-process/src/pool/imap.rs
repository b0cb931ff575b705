//! The `imap_with` iterator (behind `imap` and `imap_unordered`): a window of chunks in flight
//! over the dispatcher.

use super::*;

/// Iterator of [`Pool::imap_with`](uniconc_core::Pool::imap_with), and so of `imap` and
/// `imap_unordered`.
pub(super) struct Imap<'a, T, R, F, I> {
    pool: &'a Pool,
    f: Option<F>,
    items: I,
    runner: Option<Runner>,
    batch: Option<BatchId>,
    chunk: usize,
    /// At most `2 × workers` chunks submitted and not yet released.
    window: ReorderWindow<Vec<Result<R, TaskError>>>,
    exhausted: bool,
    done: bool,
    /// The task's name (`imap_task_with`), or `None` for a closure.
    task: Option<&'static str>,
    _t: PhantomData<fn(T)>,
}

impl<'a, T, R, F, I> Imap<'a, T, R, F, I>
where
    T: Message,
    R: Message,
    F: Fn(T) -> R + Send + Sync + 'static,
    I: Iterator<Item = T>,
{
    /// An iterator over `items` that yields in `order`; nothing runs before the first `next`.
    pub(super) fn new(
        pool: &'a Pool,
        f: F,
        items: I,
        order: Order,
        task: Option<&'static str>,
    ) -> Self {
        let config = &pool.shared.config;
        Self {
            pool,
            f: Some(f),
            items,
            runner: None,
            batch: None,
            chunk: config.chunk_size_for(None),
            window: ReorderWindow::new(2 * config.workers, order),
            exhausted: false,
            done: false,
            task,
            _t: PhantomData,
        }
    }

    pub(super) fn start(&mut self) -> Result<(), TaskError> {
        let shared = &*self.pool.shared;
        if shared.check_owner().is_err() || shared.lock().closed {
            return Err(TaskError::Cancelled);
        }
        if self.task.is_none() && self.pool.clean_only() {
            return Err(TaskError::Failed(closure_refused("imap")));
        }
        let f = self.f.take().expect("started once");
        let failed = |e: Error| TaskError::Failed(format!("could not start workers: {e}"));
        let mut runner = Runner::for_map::<T, R, F>(shared, f).map_err(failed)?;
        if let Some(name) = self.task {
            runner = runner
                .into_group(self.pool.task_group(), name)
                .map_err(failed)?;
        }
        self.batch = Some(shared.new_batch(&mut shared.lock()));
        self.runner = Some(runner);
        Ok(())
    }

    /// Queues chunks until the window is full or the input ends.
    pub(super) fn refill(&mut self) {
        let shared = &*self.pool.shared;
        let (Some(runner), Some(batch)) = (&self.runner, self.batch) else {
            return;
        };
        while !self.exhausted && self.window.has_room() {
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
                let seq = self.window.submit();
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
                    let seq = self.window.submit();
                    if let Some(b) = g.batches.get_mut(&batch) {
                        b.done.push_back((seq, 1, Err(e)));
                    }
                }
                None if count == 0 => break,
                None => {}
            }
        }
    }

    /// Decodes chunk `seq`'s results at once (its buffer goes back to the pool) and hands
    /// them to the window.
    pub(super) fn accept(&mut self, seq: u64, items: usize, outcome: Outcome) {
        let mut results = Vec::with_capacity(items);
        let spent = decode::<R>(outcome, items, |r| results.push(r));
        self.recycle(spent);
        self.window.receive(seq, results);
    }

    pub(super) fn recycle(&self, spent: Option<Vec<u8>>) {
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
            if let Some(r) = self.window.pop() {
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
            if self.window.in_flight() == 0 {
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
