//! [`TaskHandle`]: one submitted call, waited on blocking or as a future.

use super::*;

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
    pub(super) shared: Arc<Shared>,
    pub(super) batch: BatchId,
    pub(super) result: Option<Result<R, TaskError>>,
    pub(super) finished: bool,
    pub(super) taken: bool,
    pub(super) waiter: Option<Arc<AsyncWaiter>>,
    pub(super) _result: PhantomData<fn() -> R>,
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
    pub(super) fn collect(&mut self, deadline: Option<Instant>) {
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
pub(super) struct WaitFuture<'a, R> {
    pub(super) handle: &'a mut TaskHandle<R>,
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
