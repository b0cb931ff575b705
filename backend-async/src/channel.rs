//! The MPMC channel: one queue under one lock, with two FIFO lists of wakers.
//!
//! # Structure (and why: see `README.md` for the measurements)
//!
//! `Shared` holds a `VecDeque<T>` and the two waiter lists under one `std::sync::Mutex`, like
//! flume's `Chan`. A waiter is a [`Waker`]: the waker of a task for the `_async` forms, or the
//! waker of a parked thread for the blocking forms (`runtime::block_on` drives the very
//! same future). So blocking and async users of one channel queue in one FIFO and wake each
//! other; there is one implementation of every operation.
//!
//! # Wake-up protocol
//!
//! - A future that must wait registers its waker under a key it keeps (`slot`). A later poll
//!   that still cannot proceed updates the waker in place (or re-registers if it was woken).
//! - `send` pops the first receiver waiter and wakes it; `recv` pops the first sender waiter
//!   (a slot was freed). Popping is the notification: a woken waiter is no longer listed.
//! - A future dropped while listed removes itself. A future dropped after it was woken but
//!   before it used the wake-up (it is no longer listed) passes the wake-up on to the next
//!   waiter if there is still something for it to do, so no wake-up is lost to cancellation.
//! - Disconnection (last sender or last receiver dropped, or `close()`) sets `disconnected` and
//!   wakes every waiter on both sides. When the last receiver goes, the queue is also taken
//!   out under the lock and its messages are dropped after it is released (see
//!   `Shared::disconnect`): queued values never outlive the last receiver.
//!
//! Every waker is woken after the lock is released on the hot paths.
//!
//! # Cancel safety
//!
//! A message leaves the queue only inside the poll that returns it, so a dropped
//! `recv_async` loses nothing. A dropped `send_async` drops only its own value (still held by
//! the future) and never a slot: nothing is reserved while waiting.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::Receiver as _;
//! let (tx, rx) = uniconc::tokio::channel::<u32>(1)?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     // A receive cancelled by a timeout takes nothing off the channel.
//!     let r = tokio::time::timeout(Duration::from_millis(1), rx.recv_async()).await;
//!     assert!(r.is_err());
//!     tx.send_async(5).await.unwrap();
//!     // The full channel: this send is cancelled, and drops only its own value.
//!     let s = tokio::time::timeout(Duration::from_millis(1), tx.send_async(6)).await;
//!     assert!(s.is_err());
//!     assert_eq!(rx.recv_async().await, Ok(5));
//!     assert!(rx.is_empty());
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::runtime::Handle;
use uniconc_core::select::{Parker, SelectRecv, SelectSend, Selector};
use uniconc_core::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use crate::primitive::{Mutex, MutexGuard};
use crate::runtime::block_on;

/// A queue emptied while its buffer holds more than this many slots gives the memory back.
const SHRINK_ABOVE: usize = 4096;

/// "No node" in [`Waiters`]' links.
const NIL: usize = usize::MAX;

/// What a waiting future keeps to find its entry again: the node's index and the generation
/// the node had when it was handed out (a node reused by another waiter has a new one).
type Key = (usize, u64);

/// One waiter; listed exactly when `waker` is `Some`.
struct Node {
    waker: Option<Waker>,
    generation: u64,
    prev: usize,
    next: usize,
}

/// A FIFO of waiting futures: a doubly linked list threaded through a slab of nodes, so that
/// registering, removing any waiter (a cancelled or timed-out one) and popping the first are
/// all O(1), however many wait on one channel.
struct Waiters {
    nodes: Vec<Node>,
    /// Unlisted nodes, for reuse.
    free: Vec<usize>,
    head: usize,
    tail: usize,
    /// Generation of the next node handed out; a `u64` never wraps in practice.
    next_generation: u64,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            next_generation: 0,
        }
    }
}

impl Waiters {
    fn is_listed(&self, (i, generation): Key) -> bool {
        self.nodes
            .get(i)
            .is_some_and(|n| n.generation == generation && n.waker.is_some())
    }

    /// Lists `waker` at the back and returns its key.
    fn push_back(&mut self, waker: Waker) -> Key {
        let generation = self.next_generation;
        self.next_generation += 1;
        let node = Node {
            waker: Some(waker),
            generation,
            prev: self.tail,
            next: NIL,
        };
        let i = if let Some(i) = self.free.pop() {
            self.nodes[i] = node;
            i
        } else {
            if self.nodes.capacity() == 0 {
                // Most channels never have more than one waiter per side: start with one.
                self.nodes.reserve_exact(1);
            }
            self.nodes.push(node);
            self.nodes.len() - 1
        };
        match self.tail {
            NIL => self.head = i,
            t => self.nodes[t].next = i,
        }
        self.tail = i;
        (i, generation)
    }

    /// Unlists node `i` (which must be listed) and returns its waker.
    fn unlink(&mut self, i: usize) -> Waker {
        let node = &mut self.nodes[i];
        let waker = node.waker.take().expect("only listed nodes are unlinked");
        let (prev, next) = (node.prev, node.next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
        self.free.push(i);
        waker
    }

    /// Lists `waker` under the key in `slot` (giving it a new key if it has none, or if it
    /// was woken since), or updates the waker if that key is still listed. A re-listed waiter
    /// goes to the back (FIFO among the ones not woken yet).
    fn register(&mut self, slot: &mut Option<Key>, waker: &Waker) {
        if let Some(key) = *slot {
            if self.is_listed(key) {
                let w = self.nodes[key.0].waker.as_mut().expect("listed");
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                return;
            }
        }
        *slot = Some(self.push_back(waker.clone()));
    }

    /// Removes the waiter `key`; `false` if it was not listed (it had been woken).
    fn remove(&mut self, key: Key) -> bool {
        if self.is_listed(key) {
            self.unlink(key.0);
            true
        } else {
            false
        }
    }

    /// Takes the first waiter off the list, to be woken.
    fn pop(&mut self) -> Option<Waker> {
        match self.head {
            NIL => None,
            h => Some(self.unlink(h)),
        }
    }

    /// Takes every waiter off the list.
    fn take_all(&mut self) -> Vec<Waker> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// `true` if nobody waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// Everything behind the lock.
struct State<T> {
    queue: VecDeque<T>,
    /// Closed, or every sender or every receiver gone. Never goes back to `false`.
    disconnected: bool,
    recv_waiters: Waiters,
    send_waiters: Waiters,
}

/// The channel, shared by every handle.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// `None`: unbounded.
    cap: Option<usize>,
    /// Live `Sender`s and `Receiver`s. Decremented with `AcqRel` so that the handle that
    /// brings a count to zero sees every earlier handle's operations (the `Arc` pattern);
    /// incremented with `Relaxed` because a new handle is cloned from a live one, which keeps
    /// the count above zero.
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Mirror of `State::disconnected` for the lock-free `is_closed`: written under the lock
    /// (`Release`) right after the state, read with `Acquire`. It is only a snapshot.
    disconnected: AtomicBool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing under this lock can leave the state half-updated: each critical section is
        // a queue or list operation (wakers are woken after the lock is released). A poisoned
        // lock (a waker's `clone` panicked) therefore still holds a consistent state: go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_room(&self, st: &State<T>) -> bool {
        self.cap.is_none_or(|c| st.queue.len() < c)
    }

    /// Marks the channel disconnected and wakes everyone. `drop_queue`: the receivers are all
    /// gone, so the queued messages can never be received; drop them now, outside the lock
    /// and one at a time: a message whose `Drop` panics does not stop the others from being
    /// dropped, and the first panic is resumed once they all are (a second one is discarded,
    /// never a double panic, which would abort). The channel is already disconnected and
    /// empty by then, whatever the messages do.
    fn disconnect(&self, drop_queue: bool) {
        let mut st = self.lock();
        st.disconnected = true;
        self.disconnected.store(true, Ordering::Release);
        let recv = st.recv_waiters.take_all();
        let send = st.send_waiters.take_all();
        let queue = if drop_queue {
            std::mem::take(&mut st.queue)
        } else {
            VecDeque::new()
        };
        drop(st);
        for w in recv.into_iter().chain(send) {
            w.wake();
        }
        let mut first_panic = None;
        for message in queue {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(message))) {
                first_panic.get_or_insert(panic);
            }
        }
        if let Some(panic) = first_panic {
            resume_unwind(panic);
        }
    }

    /// Attempts one send: `Ok` or the value back with the reason.
    fn try_send_locked(
        &self,
        st: &mut MutexGuard<'_, State<T>>,
        value: T,
    ) -> Result<Option<Waker>, TrySendError<T>> {
        if st.disconnected {
            return Err(TrySendError::Disconnected(value));
        }
        if !self.has_room(st) {
            return Err(TrySendError::Full(value));
        }
        st.queue.push_back(value);
        Ok(st.recv_waiters.pop())
    }

    /// Attempts one receive.
    fn try_recv_locked(
        &self,
        st: &mut MutexGuard<'_, State<T>>,
    ) -> Result<(T, Option<Waker>), TryRecvError> {
        match st.queue.pop_front() {
            Some(v) => {
                if st.queue.is_empty() && st.queue.capacity() > SHRINK_ABOVE {
                    // A burst is over: give back its memory (a ring never shrinks by itself).
                    st.queue.shrink_to(SHRINK_ABOVE / 16);
                }
                let w = if self.cap.is_some() {
                    st.send_waiters.pop()
                } else {
                    None
                };
                Ok((v, w))
            }
            None if st.disconnected => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

/// The sending half of a channel; `Clone` it for more producers.
///
/// Dropping the last `Sender` disconnects the channel: receivers drain what is queued, then
/// get `Disconnected`. Blocking and async senders wait in one FIFO: `send` drives the very
/// future [`send_async`](Sender::send_async) returns, on the calling thread. The other send
/// methods come from [`uniconc::Sender`](uniconc_core::Sender).
///
/// ```
/// use uniconc::{Receiver as _, Sender as _, TrySendError};
/// let (tx, rx) = uniconc::tokio::channel::<u8>(1)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async { tx.send_async(1).await })?; // async inside a runtime...
/// assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2)))); // ...`try_` forms anywhere
/// assert_eq!(rx.recv()?, 1); // blocking outside of one
/// tx.close(); // for every handle: later sends fail and hand the message back
/// assert_eq!(tx.send(3).unwrap_err().into_inner(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Sender<T>, shared);

/// The receiving half of a channel; `Clone` it for more consumers (each message goes to one).
///
/// Dropping the last `Receiver` disconnects the channel: queued messages are dropped at once
/// (even while senders live on) and sends fail with `Disconnected(value)`. A queued message
/// whose `Drop` panics does not keep the others alive: they are all dropped, then the first
/// panic reaches the code that dropped the receiver. `recv` drives the very future
/// [`recv_async`](Receiver::recv_async) returns; the other receive methods come from
/// [`uniconc::Receiver`](uniconc_core::Receiver).
///
/// ```
/// use std::time::Duration;
/// use uniconc::{JoinHandle as _, Receiver as _, RecvError, RecvTimeoutError, Sender as _};
/// let (tx, rx) = uniconc::tokio::channel::<u8>(4)?;
/// assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
/// let rx2 = rx.clone();
/// let task = uniconc::tokio::spawn_async(async move { rx2.recv_async().await })?;
/// tx.send(5)?;
/// assert_eq!(task.join()?, Ok(5)); // the task's receiver took it
/// drop(tx);
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Receiver<T>, shared);

fn new_channel<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            disconnected: false,
            recv_waiters: Waiters::default(),
            send_waiters: Waiters::default(),
        }),
        cap,
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        disconnected: AtomicBool::new(false),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// A bounded MPMC channel holding at most `capacity` messages.
///
/// The queue grows on demand up to `capacity`: a large bound costs no memory until it is used.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _};
/// let (tx, rx) = uniconc::tokio::channel::<u32>(2)?;
/// let producer = uniconc::tokio::spawn_async(async move {
///     for i in 1..=3 {
///         tx.send_async(i).await.unwrap(); // waits (without blocking) while 2 are queued
///     }
/// })?;
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]); // ends when the task drops `tx`
/// producer.join()?;
/// assert!(uniconc::tokio::channel::<u32>(0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `capacity == 0` is `InvalidArgument` (there is no rendezvous flavour).
pub fn channel<T>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    uniconc_core::validate::channel_capacity(capacity)?;
    Ok(new_channel(Some(capacity)))
}

/// An unbounded MPMC channel: sends never wait.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::tokio::unbounded::<u32>()?;
/// assert_eq!(tx.capacity(), None);
/// let task = uniconc::tokio::spawn_async(async move {
///     for i in 0..100 {
///         tx.try_send(i).unwrap(); // never full
///     }
/// })?;
/// task.join()?;
/// assert_eq!(rx.len(), 100);
/// assert_eq!(rx.try_recv()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Never fails; the `Result` keeps the signature the same on every backend.
pub fn unbounded<T>() -> Result<(Sender<T>, Receiver<T>), Error> {
    Ok(new_channel(None))
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.disconnect(false);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.disconnect(true);
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.cap)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.shared.cap)
            .finish_non_exhaustive()
    }
}

/// The future of [`Sender::send_async`] (and of the blocking `send`).
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use uniconc::{Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::tokio::channel::<u8>(1)?;
/// tx.send(1)?; // full now
/// let mut fut = pin!(tx.send_async(2));
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(fut.as_mut().poll(&mut cx).is_pending()); // waits for room
/// assert_eq!(rx.recv()?, 1);
/// assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
/// assert_eq!(rx.recv()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Cancel safety
/// Dropping it drops the value it holds, unsent; it reserves nothing while waiting.
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    shared: &'a Shared<T>,
    value: Option<T>,
    slot: Option<Key>,
}

// The value is never pinned (it is moved in and out of the `Option`), so the future is `Unpin`
// whatever `T` is.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(value) = this.value.take() else {
            panic!("`SendFuture` polled after it completed");
        };
        let mut st = this.shared.lock();
        match this.shared.try_send_locked(&mut st, value) {
            Ok(waker) => {
                if let Some(key) = this.slot.take() {
                    st.send_waiters.remove(key);
                }
                drop(st);
                if let Some(w) = waker {
                    w.wake();
                }
                Poll::Ready(Ok(()))
            }
            Err(TrySendError::Full(v)) => {
                st.send_waiters.register(&mut this.slot, cx.waker());
                this.value = Some(v);
                Poll::Pending
            }
            Err(e) => {
                if let Some(key) = this.slot.take() {
                    st.send_waiters.remove(key);
                }
                Poll::Ready(Err(SendError::Disconnected(e.into_inner())))
            }
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.slot.take() {
            let mut st = self.shared.lock();
            // Woken for a free slot but never used it: hand the wake-up to the next sender.
            let pass_on = if !st.send_waiters.remove(key) && self.shared.has_room(&st) {
                st.send_waiters.pop()
            } else {
                None
            };
            drop(st);
            if let Some(w) = pass_on {
                w.wake();
            }
        }
    }
}

/// The future of [`Receiver::recv_async`] (and of the blocking `recv`).
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use uniconc::{Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::tokio::channel::<u8>(1)?;
/// let mut cx = Context::from_waker(Waker::noop());
/// {
///     let mut fut = pin!(rx.recv_async());
///     assert!(fut.as_mut().poll(&mut cx).is_pending()); // empty: waits
///     tx.send(9)?;
/// } // dropped before taking the message...
/// assert_eq!(rx.try_recv()?, 9); // ...which is still there
/// let mut fut = pin!(rx.recv_async());
/// drop(tx);
/// assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Err(_)))); // disconnected
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Cancel safety
/// A message is taken off the channel only in the poll that returns it: dropping the future
/// loses nothing.
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    shared: &'a Shared<T>,
    slot: Option<Key>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut st = this.shared.lock();
        match this.shared.try_recv_locked(&mut st) {
            Ok((v, waker)) => {
                if let Some(key) = this.slot.take() {
                    st.recv_waiters.remove(key);
                }
                drop(st);
                if let Some(w) = waker {
                    w.wake();
                }
                Poll::Ready(Ok(v))
            }
            Err(TryRecvError::Empty) => {
                st.recv_waiters.register(&mut this.slot, cx.waker());
                Poll::Pending
            }
            Err(_) => {
                if let Some(key) = this.slot.take() {
                    st.recv_waiters.remove(key);
                }
                Poll::Ready(Err(RecvError::Disconnected))
            }
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(key) = self.slot.take() {
            let mut st = self.shared.lock();
            // Woken for a message but never took it: hand the wake-up to the next receiver.
            let pass_on = if !st.recv_waiters.remove(key) && !st.queue.is_empty() {
                st.recv_waiters.pop()
            } else {
                None
            };
            drop(st);
            if let Some(w) = pass_on {
                w.wake();
            }
        }
    }
}

impl<T: Send + 'static> Sender<T> {
    /// Sends `value`, waiting for room without blocking the executor.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (tx, rx) = uniconc::tokio::channel::<u32>(1).unwrap();
    /// tx.send_async(7).await.unwrap();
    /// assert_eq!(rx.recv_async().await.unwrap(), 7);
    /// # });
    /// ```
    ///
    /// # Errors
    /// `Disconnected(value)` if the channel is closed or every receiver is gone.
    ///
    /// # Cancel safety
    /// Dropping the future drops `value` unsent; nothing else is lost and no slot is held.
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            shared: &self.shared,
            value: Some(value),
            slot: None,
        }
    }
}

impl<T: Send + 'static> uniconc_core::Sender<T> for Sender<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut st = self.shared.lock();
        let waker = self.shared.try_send_locked(&mut st, value)?;
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut fut = self.send_async(value);
        match block_on(&mut fut, deadline) {
            Some(r) => r.map_err(Into::into),
            None => {
                let v = fut
                    .value
                    .take()
                    .expect("a pending send future holds its value");
                Err(SendTimeoutError::Timeout(v))
            }
        }
    }

    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        Sender::send_async(self, value)
    }

    fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    fn capacity(&self) -> Option<usize> {
        self.shared.cap
    }

    fn is_closed(&self) -> bool {
        self.shared.disconnected.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.shared.disconnect(false);
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// Receives the next message without blocking the executor.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (tx, rx) = uniconc::tokio::unbounded::<u32>().unwrap();
    /// drop(tx.send_async(3).await);
    /// assert_eq!(rx.recv_async().await.unwrap(), 3);
    /// # });
    /// ```
    ///
    /// # Errors
    /// `Disconnected` once the channel is empty and closed (or every sender is gone).
    ///
    /// # Cancel safety
    /// A message is taken only in the poll that returns it; dropping the future loses nothing.
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            shared: &self.shared,
            slot: None,
        }
    }
}

impl<T: Send + 'static> uniconc_core::Receiver<T> for Receiver<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = self.shared.lock();
        let (v, waker) = self.shared.try_recv_locked(&mut st)?;
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(v)
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut fut = self.recv_async();
        match block_on(&mut fut, deadline) {
            Some(r) => r.map_err(Into::into),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_ {
        Receiver::recv_async(self)
    }

    fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    fn capacity(&self) -> Option<usize> {
        self.shared.cap
    }

    fn is_closed(&self) -> bool {
        self.shared.disconnected.load(Ordering::Acquire)
    }
}

/// `for x in rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::{JoinHandle as _, Sender as _};
/// let (tx, rx) = uniconc::tokio::channel::<u64>(4)?;
/// let unit = uniconc::tokio::spawn(move || {
///     let mut total = 0;
///     for x in rx {
///         total += x;
///     }
///     total
/// })?;
/// for i in 1..=4 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// assert_eq!(unit.join()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T: Send + 'static> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::IntoIter<T, Self>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::IntoIter::new(self)
    }
}

/// `for x in &rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::Sender as _;
/// let (tx, rx) = uniconc::tokio::channel::<u64>(4)?;
/// tx.send(1)?;
/// tx.send(2)?;
/// tx.close();
/// let mut total = 0;
/// for x in &rx {
///     total += x;
/// }
/// assert_eq!(total, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<'a, T: Send + 'static> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::Iter<'a, T, Receiver<T>>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::Receiver::iter(self)
    }
}

/// The tokio backend's [`Selector`]: how one thread or task waits on several tokio channels
/// in a [`Select`](uniconc_core::select::Select).
///
/// A select registers it in the same FIFO of waiters that `recv_async` and `send_async` use,
/// so a select, blocking receivers and async tasks on one channel wake each other in turn. Its
/// blocking wait follows the rule of every blocking call of this backend (see
/// [`runtime`](crate::runtime)): on a thread outside any runtime, or a `spawn` closure, it
/// parks the thread; on a worker of a multi-thread runtime it parks inside
/// `tokio::task::block_in_place`, so the worker's other tasks move to another thread and keep
/// running; **on a current-thread runtime a blocking select that has to wait panics** (tokio's
/// "can call blocking only when running on the multi-threaded runtime"). In a task, use
/// [`Select::select_async`](uniconc_core::select::Select::select_async) (or `tokio::select!`
/// over `recv_async`/`send_async`, which are cancel-safe).
///
/// It is a type of its own (not the thread backend's [`Parker`]), so a select that mixes tokio
/// and thread channels does not compile.
///
/// ```
/// use std::time::Duration;
/// use uniconc::select::Select;
/// use uniconc::{JoinHandle as _, Sender as _};
///
/// let (tx1, rx1) = uniconc::tokio::channel::<u32>(1)?;
/// let (tx2, rx2) = uniconc::tokio::channel::<&str>(1)?;
/// // A task waits on both without blocking its worker...
/// let task = uniconc::tokio::spawn_async(async move {
///     let mut sel = Select::new();
///     let one = sel.recv(&rx1);
///     let two = sel.recv(&rx2);
///     let oper = sel.select_async().await;
///     if oper.index() == one {
///         oper.recv(&rx1).map(|n| n.to_string())
///     } else {
///         assert_eq!(oper.index(), two);
///         oper.recv(&rx2).map(str::to_string)
///     }
/// })?;
/// tx2.send("two")?;
/// assert_eq!(task.join()?.as_deref(), Ok("two"));
///
/// // ...and a thread outside any runtime blocks in `select!`.
/// let (stop_tx, stop) = uniconc::tokio::channel::<()>(1)?;
/// let (_jobs_tx, jobs) = uniconc::tokio::channel::<u32>(1)?;
/// stop_tx.send(())?;
/// let stopped = uniconc::select! {
///     recv(jobs) -> _ => false,
///     recv(stop) -> _ => true,
///     default(Duration::from_secs(10)) => false,
/// };
/// assert!(stopped);
/// # drop(tx1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TokioParker(Parker);

impl TokioParker {
    fn waker(&self) -> &Waker {
        self.0.waker()
    }
}

impl Selector for TokioParker {
    fn new() -> Self {
        Self(Parker::new())
    }

    fn begin(&mut self) {
        self.0.begin();
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        // As `runtime::block_on`: inside a runtime, sleep in `block_in_place` (which panics on
        // a current-thread runtime, the documented case); outside one (or during thread-local
        // destruction, when tokio's context is gone) just park.
        if Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| self.0.wait(deadline));
        } else {
            self.0.wait(deadline);
        }
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_wait(cx)
    }
}

impl Waiters {
    /// Lists `waker` at the back for a select and returns its node's index. The select's key
    /// is the index alone (a `usize`); [`remove_select`](Waiters::remove_select) recognises
    /// its node by the waker, which is unique to the select's parker while it lives.
    fn push_select(&mut self, waker: &Waker) -> usize {
        self.push_back(waker.clone()).0
    }

    /// Removes the select waiter at node `i` if it is still listed with `waker`; `false` if it
    /// was not (it was woken, and the node may since serve another waiter).
    ///
    /// If the node was popped and re-listed by another registration of the same select (two
    /// operations on one channel), that registration is removed instead and the other one
    /// reports `false`: one wake-up was given, one is reported, as without the reuse.
    fn remove_select(&mut self, i: usize, waker: &Waker) -> bool {
        let ours = self
            .nodes
            .get(i)
            .and_then(|n| n.waker.as_ref())
            .is_some_and(|w| w.will_wake(waker));
        if ours {
            self.unlink(i);
        }
        ours
    }
}

/// A select receives from a tokio channel as `recv_async` does: it lists its
/// [`TokioParker`] among the channel's receiving waiters, and a waiter woken for a message it
/// did not take (another operation of the select fired, or the select was cancelled) passes
/// the wake-up on to the next receiving waiter.
impl<T: Send + 'static> SelectRecv<T, TokioParker> for Receiver<T> {
    fn select_try_recv(&self) -> Result<T, TryRecvError> {
        uniconc_core::Receiver::try_recv(self)
    }

    fn recv_ready(&self) -> bool {
        let st = self.shared.lock();
        !st.queue.is_empty() || st.disconnected
    }

    fn watch_recv(&self, sel: &mut TokioParker, key: &mut Option<usize>) {
        // The select loop unwatches every operation before it watches again: a fresh entry.
        let i = self.shared.lock().recv_waiters.push_select(sel.waker());
        *key = Some(i);
    }

    fn unwatch_recv(&self, sel: &mut TokioParker, key: &mut Option<usize>, fired: bool) {
        let Some(i) = key.take() else { return };
        let mut st = self.shared.lock();
        // Woken for a message this operation did not take: hand the wake-up to the next
        // receiver, as a dropped `recv_async` does.
        let pass_on =
            if !st.recv_waiters.remove_select(i, sel.waker()) && !fired && !st.queue.is_empty() {
                st.recv_waiters.pop()
            } else {
                None
            };
        drop(st);
        if let Some(w) = pass_on {
            w.wake();
        }
    }
}

/// As for [`Receiver`]: the channel's sending waiters, and a wake-up for room this operation
/// did not use goes on to the next sending waiter.
impl<T: Send + 'static> SelectSend<T, TokioParker> for Sender<T> {
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        uniconc_core::Sender::try_send(self, value)
    }

    fn send_ready(&self) -> bool {
        let st = self.shared.lock();
        st.disconnected || self.shared.has_room(&st)
    }

    fn watch_send(&self, sel: &mut TokioParker, key: &mut Option<usize>) {
        let i = self.shared.lock().send_waiters.push_select(sel.waker());
        *key = Some(i);
    }

    fn unwatch_send(&self, sel: &mut TokioParker, key: &mut Option<usize>, fired: bool) {
        let Some(i) = key.take() else { return };
        let mut st = self.shared.lock();
        let pass_on = if !st.send_waiters.remove_select(i, sel.waker())
            && !fired
            && self.shared.has_room(&st)
        {
            st.send_waiters.pop()
        } else {
            None
        };
        drop(st);
        if let Some(w) = pass_on {
            w.wake();
        }
    }
}

#[cfg(all(test, uniconc_loom))]
#[path = "channel_loom.rs"]
mod loom_tests;

#[cfg(all(test, not(uniconc_loom)))]
mod tests {
    use super::*;
    use uniconc_core::{Receiver as _, Sender as _};

    /// A waker that counts its wake-ups.
    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(n.clone()))), n)
    }

    #[test]
    fn waiters_are_fifo_with_o1_removal_and_stale_keys() {
        let mut w = Waiters::default();
        let (wakers, counts): (Vec<_>, Vec<_>) = (0..4).map(|_| counting_waker()).unzip();
        let mut slots = [None; 4];
        for (slot, waker) in slots.iter_mut().zip(&wakers) {
            w.register(slot, waker);
        }
        // Re-registering a listed waiter keeps its place.
        let k0 = slots[0];
        w.register(&mut slots[0], &wakers[0]);
        assert_eq!(slots[0], k0);
        assert!(w.remove(slots[2].unwrap()));
        assert!(!w.remove(slots[2].unwrap()), "removed twice");
        w.pop().unwrap().wake(); // 0
        w.pop().unwrap().wake(); // 1
        // 0 was woken: its key is stale, so it re-lists at the back with a new key (even
        // though its node may have been reused).
        w.register(&mut slots[0], &wakers[0]);
        assert_ne!(slots[0], k0);
        w.pop().unwrap().wake(); // 3
        w.pop().unwrap().wake(); // 0 again
        assert!(w.pop().is_none() && w.is_empty());
        let seen: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        assert_eq!(seen, vec![2, 1, 0, 1]);
        assert_eq!(w.take_all().len(), 0);
    }

    #[test]
    fn zero_capacity_is_an_error() {
        let e = channel::<u8>(0).unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::InvalidArgument);
    }

    #[test]
    fn try_forms_and_len() {
        let (tx, rx) = channel::<u8>(2).unwrap();
        assert_eq!(tx.capacity(), Some(2));
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(tx.try_send(3).unwrap_err().is_full());
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.try_recv().unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 2);
        assert!(rx.try_recv().unwrap_err().is_empty());
    }

    #[test]
    fn timeouts_return_the_value() {
        let (tx, rx) = channel::<String>(1).unwrap();
        tx.send("a".into()).unwrap();
        let e = tx
            .send_timeout("b".into(), std::time::Duration::from_millis(10))
            .unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(e.into_inner(), "b");
        assert_eq!(rx.recv().unwrap(), "a");
        let e = rx
            .recv_timeout(std::time::Duration::from_millis(10))
            .unwrap_err();
        assert!(e.is_timeout());
        // Nothing was left registered by the timed-out calls.
        let st = tx.shared.lock();
        assert!(st.recv_waiters.is_empty() && st.send_waiters.is_empty());
    }

    #[test]
    fn disconnection_both_ways() {
        let (tx, rx) = unbounded::<u8>().unwrap();
        tx.send(1).unwrap();
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        let (tx, rx) = channel::<u8>(1).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5).unwrap_err().into_inner(), 5);
    }

    #[test]
    fn close_drains_then_disconnects() {
        let (tx, rx) = channel::<u8>(4).unwrap();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.close();
        assert!(tx.send(2).unwrap_err().is_disconnected());
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
    }

    #[test]
    fn an_emptied_queue_gives_back_a_burst_s_memory() {
        let (tx, rx) = unbounded::<u64>().unwrap();
        for i in 0..100_000 {
            tx.send(i).unwrap();
        }
        assert!(tx.shared.lock().queue.capacity() >= 100_000);
        for i in 0..100_000 {
            assert_eq!(rx.try_recv().unwrap(), i);
        }
        assert!(tx.shared.lock().queue.capacity() <= SHRINK_ABOVE);
    }

    #[test]
    fn blocked_receiver_is_woken_by_disconnect() {
        let (tx, rx) = channel::<u8>(1).unwrap();
        let h = std::thread::spawn(move || rx.recv());
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(tx);
        assert_eq!(h.join().unwrap(), Err(RecvError::Disconnected));
    }
}
