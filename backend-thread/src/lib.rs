//! # uniconc-thread
//!
//! uniconc's thread backend: every unit is an OS thread, and every primitive lives in ordinary
//! shared memory. Use it through the facade (`uniconc::thread`, `uniconc::Thread`) or directly.
//!
//! ```
//! use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
//!
//! let (tx, rx) = uniconc::thread::channel::<u64>(64)?;
//! let h = uniconc::thread::spawn(move || rx.iter().sum::<u64>())?;
//! for i in 1..=10 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // the last sender gone: the receiver drains, then its iterator ends
//! assert_eq!(h.join(), Ok(55));
//! # Ok::<(), uniconc::Error>(())
//! ```
//!
//! Modules, one per mechanism:
//!
//! - [`channel`](mod@channel): MPMC channels on crossbeam-channel, with `close()` for everyone and
//!   waker-based `_async` forms.
//! - [`sync`]: [`Lock`], [`Semaphore`], [`Event`], [`Barrier`].
//! - [`Value`], [`Array`]: in-process (core's `local` module, shared with the tokio backend).
//! - [`spawn`](mod@spawn): [`spawn`](fn@spawn), [`spawn_async`], [`JoinHandle`].
//! - [`pool`](mod@pool): [`Pool`], [`TaskHandle`].
//! - `waiter` (private): the waker registry and the mutex + condvar + wakers monitor behind
//!   every `_async` form.
//! - `primitive` (private): the registry's atomics and mutex, from `std`, or from loom for
//!   the model checks (`cfg(uniconc_loom)`).
//!
//! Bounds: this backend asks only `T: Send + 'static` of messages, results and pool items (the
//! serde bound of [`uniconc::Message`](uniconc_core::Message) applies only through the generic [`Backend`] API).
//!
//! # Async forms
//!
//! Every `_async` method returns a `Send` future that needs no particular executor (it is
//! woken through its `Waker`), never blocks the thread polling it, and is cancel-safe.
//!
//! # Blocking calls inside an async runtime
//!
//! The blocking forms (`send`, `recv`, `lock`, `join`, ...) park the calling OS thread. Inside
//! an async task, use the `_async` forms instead.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod channel;
pub mod pool;
mod primitive;
pub mod spawn;
pub mod sync;
mod waiter;

use uniconc_core::Backend;

pub use channel::{Receiver, Sender, channel, unbounded};
pub use pool::{Imap, Pool, TaskHandle};
pub use spawn::{JoinHandle, spawn, spawn_async};
pub use sync::{Barrier, Event, Lock, LockGuard, Semaphore};
pub use uniconc_core::local::{Array, ArrayGuard, List, Map, Value};

/// The thread backend's selector type: `type B = uniconc::Thread;`.
///
/// Every unit is an OS thread (`std::thread`), every primitive an `Arc` of ordinary memory:
/// channels are crossbeam-channel's, locks and friends a `std::sync::Mutex` + `Condvar` (with a
/// waker list for the `_async` forms). Messages need only be `Send + 'static` through the
/// free functions; generic code written against [`Backend`] gets the same types.
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// fn ping<B: Backend>() -> Result<u32, uniconc::Error> {
///     let (tx, rx) = B::channel::<u32>(1)?;
///     let h = B::spawn(move || tx.send(7).is_ok())?;
///     assert_eq!(h.join(), Ok(true));
///     Ok(rx.recv().unwrap())
/// }
/// assert_eq!(ping::<uniconc::thread::Thread>()?, 7);
/// assert_eq!(<uniconc::thread::Thread as Backend>::NAME, "thread");
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Thread;

impl Backend for Thread {
    const NAME: &'static str = "thread";
    const CAN_KILL: bool = false;
    const CAN_CANCEL: bool = false;
    const TASK_TIMEOUT: bool = false;
    const ISOLATED: bool = false;
    const FORKS: bool = false;
    const ASYNC_TASKS: bool = false;
    const REMOTE: bool = false;

    /// A thread selects by parking, woken through the channels' waker sets.
    type Selector = uniconc_core::select::Parker;
    uniconc_core::backend_items!();
    uniconc_core::named_registry_items!();
}

impl Thread {
    /// This process's names (see [`Named`](uniconc_core::Named)).
    fn names() -> &'static uniconc_core::named::Registry {
        static NAMES: uniconc_core::named::Registry = uniconc_core::named::Registry::new();
        &NAMES
    }
}

uniconc_core::backend_constructors! {
    /// A new lock, not held.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Lock as _};
    /// let lock = uniconc::thread::lock()?;
    /// let guard = lock.lock().unwrap();
    /// let other = lock.clone(); // another handle to the same lock
    /// let h = uniconc::thread::spawn(move || other.try_lock().is_err())?;
    /// assert_eq!(h.join(), Ok(true)); // held here, so the other thread could not take it
    /// drop(guard);
    /// assert!(!lock.is_locked());
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend (the same signature on every backend).
    lock;

    /// A semaphore holding `permits` permits.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Semaphore as _};
    /// let sem = uniconc::thread::semaphore(2)?;
    /// let held = sem.acquire();
    /// let s = sem.clone();
    /// let h = uniconc::thread::spawn(move || s.try_acquire().is_ok())?;
    /// assert_eq!(h.join(), Ok(true)); // one permit was left for the other thread
    /// assert_eq!(sem.available(), 1); // its permit went back when it was dropped
    /// drop(held);
    /// assert_eq!(sem.available(), 2);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    semaphore;

    /// A new event, not set.
    ///
    /// ```
    /// use uniconc::{Event as _, JoinHandle as _};
    /// let ev = uniconc::thread::event()?;
    /// assert!(!ev.is_set());
    /// let e = ev.clone();
    /// let h = uniconc::thread::spawn(move || e.wait())?; // blocks until the event is set
    /// ev.set();
    /// assert_eq!(h.join(), Ok(()));
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    event;

    /// A barrier for `n` threads.
    ///
    /// ```
    /// use uniconc::{Barrier as _, JoinHandle as _};
    /// let b = uniconc::thread::barrier(2)?;
    /// let b2 = b.clone();
    /// let h = uniconc::thread::spawn(move || b2.wait())?;
    /// let leader_here = b.wait(); // returns once both threads arrived
    /// let leader_there = h.join().unwrap();
    /// assert!(leader_here != leader_there); // exactly one of the two is the leader
    /// assert_eq!(b.parties(), 2);
    /// assert!(uniconc::thread::barrier(0).is_err());
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for `n == 0`.
    barrier;

    /// A shared value holding `v`.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Value as _};
    /// let counter = uniconc::thread::value(0u64)?;
    /// let c = counter.clone();
    /// let h = uniconc::thread::spawn(move || c.update(|n| *n += 5))?;
    /// h.join().unwrap();
    /// assert_eq!(counter.load(), 5);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    value;

    /// A shared array of `len` zeroed elements.
    ///
    /// ```
    /// use uniconc::{Array as _, JoinHandle as _};
    /// let arr = uniconc::thread::array::<u32>(3)?;
    /// let a = arr.clone();
    /// let h = uniconc::thread::spawn(move || a.set(1, 9))?;
    /// h.join().unwrap()?;
    /// assert_eq!(arr.to_vec(), [0, 9, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` if the allocation is too large.
    array;

    /// A new, empty shared map (Python's `Manager().dict()`), in this process's memory.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, Map as _};
    /// let d = uniconc::thread::map::<String, u64>()?;
    /// let d2 = d.clone(); // another handle to the same map
    /// uniconc::thread::spawn(move || d2.insert("a".into(), 1).unwrap())?.join()?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    map;

    /// A new, empty shared list (Python's `Manager().list()`), in this process's memory.
    ///
    /// ```
    /// use uniconc::{JoinHandle as _, List as _};
    /// let l = uniconc::thread::list::<u64>()?;
    /// let l2 = l.clone(); // another handle to the same list
    /// uniconc::thread::spawn(move || l2.extend([1, 2, 3]).unwrap())?.join()?;
    /// assert_eq!(l.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Never fails on this backend.
    list;

    /// A pool of `workers` threads with default settings.
    ///
    /// ```
    /// use uniconc::TaskHandle as _;
    /// let pool = uniconc::thread::pool(2)?;
    /// assert_eq!(pool.map(|x: u64| x * x, 1..=3)?, [1, 4, 9]);
    /// assert_eq!(pool.submit(|x: u32| x + 1, 41)?.wait(), Ok(42));
    /// assert!(uniconc::thread::pool(0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for 0 workers; `Os` if a thread could not be started.
    pool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_have_the_expected_auto_traits() {
        assert_send_sync::<Sender<Vec<u8>>>();
        assert_send_sync::<Receiver<Vec<u8>>>();
        assert_send_sync::<Lock>();
        assert_send::<LockGuard<'static>>();
        assert_send_sync::<Semaphore>();
        assert_send_sync::<Event>();
        assert_send_sync::<Barrier>();
        assert_send_sync::<Value<u64>>();
        assert_send_sync::<Array<u64>>();
        assert_send_sync::<Pool>();
        assert_send::<JoinHandle<String>>();
        assert_send::<TaskHandle<String>>();
    }

    fn assert_send_value<T: Send>(_: &T) {}

    #[test]
    fn async_forms_return_send_futures() {
        use uniconc_core::{
            Barrier as _, Event as _, JoinHandle as _, Lock as _, Receiver as _, Semaphore as _,
            Sender as _, TaskHandle as _,
        };
        let (tx, rx) = channel::<String>(1).unwrap();
        assert_send_value(&tx.send_async(String::new()));
        assert_send_value(&rx.recv_async());
        let l = lock().unwrap();
        assert_send_value(&l.lock_async());
        let s = semaphore(1).unwrap();
        assert_send_value(&s.take_async());
        assert_send_value(&s.acquire_async());
        let e = event().unwrap();
        assert_send_value(&e.wait_async());
        let b = barrier(1).unwrap();
        assert_send_value(&b.wait_async());
        let mut h = spawn(|| 1u8).unwrap();
        assert_send_value(&h.join_async());
        let p = pool(1).unwrap();
        let mut t = p.submit(|x: u8| x, 1).unwrap();
        assert_send_value(&t.wait_async());
    }
}
