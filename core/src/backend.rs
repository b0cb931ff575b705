//! The [`Backend`] trait: one zero-sized selector type per execution unit, naming its handle
//! types and constructors, so `fn run<B: Backend>()` compiles once and runs on all of them.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{Receiver, Sender};
use crate::error::Error;
use crate::pool::Pool;
use crate::state::{Array, Plain, Value};
use crate::sync::{Barrier, Event, Lock, Semaphore};
use crate::unit::JoinHandle;

/// What generic code can send through any backend's channel: serializable (the process
/// backend copies it through shared memory) and sendable. Blanket-implemented.
///
/// A concrete backend may ask for less: the thread and tokio backends take any
/// `T: Send + 'static` through their own modules.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// An execution unit: processes, threads or tokio tasks.
///
/// ```ignore
/// type B = uniconc::Thread; // or uniconc::Process, uniconc::Tokio
/// let (tx, rx) = B::channel::<u64>(64)?;
/// let h = B::spawn(move || rx.iter().sum::<u64>())?;
/// ```
pub trait Backend: Copy + Send + Sync + 'static {
    /// Short lower-case name: `"process"`, `"thread"` or `"tokio"`.
    const NAME: &'static str;

    /// Sending half of a channel.
    type Sender<T: Message>: Sender<T>;
    /// Receiving half of a channel.
    type Receiver<T: Message>: Receiver<T>;
    /// A lock without data.
    type Lock: Lock;
    /// A counting semaphore.
    type Semaphore: Semaphore;
    /// A settable flag.
    type Event: Event;
    /// A reusable barrier.
    type Barrier: Barrier;
    /// A shared value of plain data.
    type Value<T: Plain>: Value<T>;
    /// A shared array of plain data.
    type Array<T: Plain>: Array<T>;
    /// A pool of workers.
    type Pool: Pool;
    /// Handle to a spawned unit.
    type JoinHandle<R: Message>: JoinHandle<R>;

    /// A bounded channel holding at most `capacity` messages.
    ///
    /// # Errors
    /// `capacity == 0` is `InvalidArgument` (never a hang); the OS refused to map shared
    /// memory (process backend).
    #[allow(clippy::type_complexity)]
    fn channel<T: Message>(capacity: usize) -> Result<(Self::Sender<T>, Self::Receiver<T>), Error>;

    /// A channel without a bound on the number of messages.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend).
    #[allow(clippy::type_complexity)]
    fn unbounded<T: Message>() -> Result<(Self::Sender<T>, Self::Receiver<T>), Error>;

    /// Runs `f` as a new unit.
    ///
    /// # Errors
    /// The unit could not be started (fork or thread creation failed).
    fn spawn<F, R>(f: F) -> Result<Self::JoinHandle<R>, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Message;

    /// Runs `fut` as one unit: a tokio task, or a thread or process running its own executor.
    ///
    /// # Errors
    /// The unit could not be started.
    fn spawn_async<Fut>(fut: Fut) -> Result<Self::JoinHandle<Fut::Output>, Error>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Message;

    /// A new lock.
    ///
    /// # Errors
    /// The OS refused to map shared memory (process backend).
    fn lock() -> Result<Self::Lock, Error> {
        <Self::Lock as Lock>::new()
    }

    /// A semaphore with `permits` permits.
    ///
    /// # Errors
    /// As [`Semaphore::new`].
    fn semaphore(permits: usize) -> Result<Self::Semaphore, Error> {
        <Self::Semaphore as Semaphore>::new(permits)
    }

    /// A new event, not set.
    ///
    /// # Errors
    /// As [`Event::new`].
    fn event() -> Result<Self::Event, Error> {
        <Self::Event as Event>::new()
    }

    /// A barrier for `n` units.
    ///
    /// # Errors
    /// As [`Barrier::new`].
    fn barrier(n: usize) -> Result<Self::Barrier, Error> {
        <Self::Barrier as Barrier>::new(n)
    }

    /// A shared value holding `value`.
    ///
    /// # Errors
    /// As [`Value::new`].
    fn value<T: Plain>(value: T) -> Result<Self::Value<T>, Error> {
        <Self::Value<T> as Value<T>>::new(value)
    }

    /// A shared array of `len` zeroed elements.
    ///
    /// # Errors
    /// As [`Array::new`].
    fn array<T: Plain>(len: usize) -> Result<Self::Array<T>, Error> {
        <Self::Array<T> as Array<T>>::new(len)
    }

    /// A pool of `workers` workers.
    ///
    /// # Errors
    /// As [`Pool::new`].
    fn pool(workers: usize) -> Result<Self::Pool, Error> {
        <Self::Pool as Pool>::new(workers)
    }
}
