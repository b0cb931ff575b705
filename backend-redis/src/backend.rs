//! Units of the Redis backend: [`spawn`] and [`spawn_async`] fork a local process whose
//! primitives are remote (Python's `Manager` model), and the handles it inherits work in it.
//!
//! # Handles inherited across the fork
//!
//! Before the fork, the parent registers the child as a holder of every object this process
//! has a handle to (one pipelined round trip per server), under a name of the child's own;
//! the child opens its own connections under that name and renews those leases from then on.
//! So a child's copy of a `Sender` counts as a live sender from the instant the child exists
//! until the child drops it or ends: a parent dropping its own sender right after `spawn`
//! does not disconnect the receiver before the child ran. When the child's closure has
//! finished (returned or panicked), the child gives up every lease it still holds, the copies
//! of the parent's handles its code never touched included; a child killed (SIGKILL, a crash)
//! counts as gone once its leases lapse, at most [`LEASE`](crate::LEASE) later.
//!
//! A `Permit` moved into the child is given back by the child, once: the parent's copy of the
//! closure is dropped without releasing it.
//!
//! Processes forked otherwise (`uniconc::process::spawn`, a raw `fork`) can use inherited
//! handles too: the child connects on first use, under a name of its own that holds no lease
//! (the child does not count as a holder; the parent's lease is what keeps the object).

use std::future::Future;
use std::sync::Mutex;

use uniconc_core::{Error, Message, Name, Plain};

use crate::conn::{ForkPlan, drop_fork_leftovers, finish_child};

/// Handle to a unit started by [`spawn`]: a local child process (see
/// `uniconc::process::JoinHandle` for `join`, `kill`, exit codes and panics).
pub type JoinHandle<R> = uniconc_process::JoinHandle<R>;

/// Runs `f` in a forked child process whose inherited Redis handles work (see the module
/// docs); `join` reports its result, its panic (`Panicked`), a kill (`Killed`) or an early
/// `exit` (`Exited`).
///
/// ```
/// use uniconc_core::{JoinHandle as _, Receiver as _, Sender as _};
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let (tx, rx) = conn.channel::<u32>(4)?;
/// let child = uniconc_redis::spawn(move || tx.send(7).is_ok())?;
/// // The parent's sender went into the child: the child's copy keeps the channel open.
/// assert_eq!(rx.recv(), Ok(7));
/// assert!(child.join()?);
/// assert!(rx.recv().is_err()); // the child's sender went with the child
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// `Os` if a server holding this process's objects does not answer (the child could not be
/// registered as a holder; nothing was started), or the fork failed.
pub fn spawn<F, R>(f: F) -> Result<JoinHandle<R>, Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Message,
{
    let plan = ForkPlan::prepare()?;
    let undo = plan.clone();
    // The closure stays reachable from here so that the parent can drop its copy as a
    // leftover once the child exists (or normally if it never will).
    let cell = std::sync::Arc::new(Mutex::new(Some(f)));
    let child_cell = cell.clone();
    let started = uniconc_process::spawn(move || {
        let f = child_cell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("the spawned closure is in the child's copy of the cell");
        if let Err(e) = plan.start_child() {
            panic!("uniconc-redis: the spawned process could not connect: {e}");
        }
        let _finish = FinishChild;
        f()
    });
    let leftover = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
    match started {
        Ok(handle) => {
            drop_fork_leftovers(leftover);
            Ok(handle)
        }
        Err(e) => {
            drop(leftover);
            undo.abandon();
            Err(e)
        }
    }
}

/// Gives up the child's leases when its code has finished, panic or not.
struct FinishChild;

impl Drop for FinishChild {
    fn drop(&mut self) {
        crate::travel::release_flights();
        finish_child();
    }
}

/// Runs `fut` to completion in a forked child process (see [`spawn`]), on the child's own
/// current-thread tokio runtime (timers and I/O enabled): use the `_async` forms inside.
///
/// ```
/// use uniconc_core::{JoinHandle as _, Receiver as _, Sender as _};
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let (tx, rx) = conn.channel::<u32>(4)?;
/// let child = uniconc_redis::spawn_async(async move { rx.recv_async().await.unwrap() * 2 })?;
/// tx.send(21)?;
/// assert_eq!(child.join()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`spawn`]; a runtime that cannot be built in the child is reported by `join` as
/// `Panicked`.
pub fn spawn_async<Fut>(fut: Fut) -> Result<JoinHandle<Fut::Output>, Error>
where
    Fut: Future + Send + 'static,
    Fut::Output: Message,
{
    spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("could not start a tokio runtime in the child: {e}"))
            .block_on(fut)
    })
}

/// The Redis backend's marker type: `type B = uniconc::Redis;`.
///
/// Every primitive lives on a Redis server, shared by every process that reaches it: the
/// server named by `UNICONC_REDIS_URL` (default `redis://127.0.0.1:6379`) through
/// [`default_connection`](crate::default_connection). [`spawn`](uniconc_core::Backend::spawn)
/// forks a local process whose primitives are remote (Python's `Manager` model; handles
/// inherited across the fork work in the child, see [`spawn`]); the [`Pool`](crate::Pool)
/// runs named tasks on worker agents, which may be on other machines, and refuses closures
/// ([`POOL_CLOSURES`](uniconc_core::Backend::POOL_CLOSURES) is `false`). Messages, results,
/// map and list entries travel serde-encoded; `Value`s and `Array`s as the bytes of their
/// plain data.
///
/// ```
/// use uniconc_core::{Backend, JoinHandle as _, Receiver as _, Sender as _};
/// # let server = uniconc_redis::testing::RedisServer::start();
/// # uniconc_redis::set_default_url(&server.url())?; // else UNICONC_REDIS_URL
///
/// fn ping<B: Backend>() -> Result<u32, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u32>(1)?;
///     let h = B::spawn(move || tx.send(7).is_ok())?;
///     assert!(h.join()?);
///     Ok(rx.recv()?)
/// }
/// assert_eq!(ping::<uniconc_redis::Redis>()?, 7); // sent by a forked child, through the server
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Redis;

impl uniconc_core::Backend for Redis {
    const NAME: &'static str = "redis";
    const CAN_KILL: bool = true;
    const CAN_CANCEL: bool = true;
    const TASK_TIMEOUT: bool = true;
    const ISOLATED: bool = true;
    const FORKS: bool = true;
    const ASYNC_TASKS: bool = false;
    const REMOTE: bool = true;
    const POOL_CLOSURES: bool = false;
    const NAMED: bool = true;
    const TRAVEL: bool = true;

    /// A select over Redis channels sleeps on their wake-up subscriptions (see
    /// [`RedisSelector`](crate::RedisSelector)).
    type Selector = crate::RedisSelector;
    type Sender<T: Message> = crate::Sender<T>;
    type Receiver<T: Message> = crate::Receiver<T>;
    type Lock = crate::Lock;
    type Semaphore = crate::Semaphore;
    type Event = crate::Event;
    type Barrier = crate::Barrier;
    type Value<T: uniconc_core::Plain> = crate::Value<T>;
    type Array<T: uniconc_core::Plain> = crate::Array<T>;
    type Map<K: Message + std::hash::Hash + Eq, V: Message> = crate::Map<K, V>;
    type List<T: Message> = crate::List<T>;
    type Pool = crate::Pool;
    type JoinHandle<R: Message> = JoinHandle<R>;

    /// A channel on the default server; see [`Connection::channel`](crate::Connection::channel).
    fn channel<T: Message>(capacity: usize) -> Result<(Self::Sender<T>, Self::Receiver<T>), Error> {
        crate::default_connection()?.channel(capacity)
    }

    /// An unbounded channel on the default server.
    fn unbounded<T: Message>() -> Result<(Self::Sender<T>, Self::Receiver<T>), Error> {
        crate::default_connection()?.unbounded()
    }

    /// See [`spawn`].
    fn spawn<F, R>(f: F) -> Result<JoinHandle<R>, Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Message,
    {
        spawn(f)
    }

    /// See [`spawn_async`].
    fn spawn_async<Fut>(fut: Fut) -> Result<JoinHandle<Fut::Output>, Error>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Message,
    {
        spawn_async(fut)
    }

    /// A named channel on the default server (see "Names and travelling handles" in the crate
    /// docs).
    fn named_channel<T: Message>(
        name: &Name,
        capacity: Option<usize>,
        sender: bool,
        receiver: bool,
    ) -> Result<(Option<Self::Sender<T>>, Option<Self::Receiver<T>>), Error> {
        crate::named::channel(name, capacity, sender, receiver)
    }

    fn named_lock(name: &Name) -> Result<Self::Lock, Error> {
        crate::named::lock(name)
    }

    fn named_semaphore(name: &Name, permits: usize) -> Result<Self::Semaphore, Error> {
        crate::named::semaphore(name, permits)
    }

    fn named_event(name: &Name) -> Result<Self::Event, Error> {
        crate::named::event(name)
    }

    fn named_barrier(name: &Name, n: usize) -> Result<Self::Barrier, Error> {
        crate::named::barrier(name, n)
    }

    fn named_value<T: Plain>(name: &Name, value: T) -> Result<Self::Value<T>, Error> {
        crate::named::value(name, value)
    }

    fn named_array<T: Plain>(name: &Name, len: usize) -> Result<Self::Array<T>, Error> {
        crate::named::array(name, len)
    }

    fn named_map<K: Message + std::hash::Hash + Eq, V: Message>(
        name: &Name,
    ) -> Result<Self::Map<K, V>, Error> {
        crate::named::map(name)
    }

    fn named_list<T: Message>(name: &Name) -> Result<Self::List<T>, Error> {
        crate::named::list(name)
    }

    fn unlink_named(name: &str) -> Result<bool, Error> {
        crate::named::unlink(name)
    }
}

/// `for x in rx`: blocking, ends when the channel is empty and disconnected (closed, or every
/// sender gone).
///
/// ```
/// use uniconc_core::Sender as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let (tx, rx) = conn.channel::<u64>(4)?;
/// tx.send(1)?;
/// tx.send(2)?;
/// drop(tx);
/// assert_eq!(rx.into_iter().sum::<u64>(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T: Message> IntoIterator for crate::Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::IntoIter<T, Self>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::IntoIter::new(self)
    }
}

/// `for x in &rx`: blocking, ends when the channel is empty and disconnected.
impl<'a, T: Message> IntoIterator for &'a crate::Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::Iter<'a, T, crate::Receiver<T>>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::Receiver::iter(self)
    }
}
