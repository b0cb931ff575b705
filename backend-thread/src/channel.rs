//! Channels: crossbeam-channel underneath, plus what crossbeam lacks: `close()` for everyone,
//! and the `_async` forms.
//!
//! # Close
//!
//! crossbeam disconnects a channel only when every handle of one side is dropped. `close()`
//! sets a flag that every send checks first, and drops the only sender of a hidden
//! *close channel*: blocked senders and receivers wait in a crossbeam `Select` over the data
//! channel and the close channel, so closing wakes them all. A receiver that finds the
//! channel empty and closed checks once more (after seeing the flag, every message sent before
//! the close is visible) and then reports `Disconnected`; queued messages are drained first.
//!
//! ```
//! use uniconc::{JoinHandle as _, Receiver as _, RecvError, Sender as _};
//! let (tx, rx) = uniconc::thread::channel::<u32>(4)?;
//! tx.send(1).unwrap();
//! let waiter = uniconc::thread::spawn({
//!     let rx = rx.clone();
//!     move || (rx.recv(), rx.recv()) // the second one blocks until the close
//! })?;
//! tx.close(); // `tx` is still alive: crossbeam alone would not disconnect
//! assert_eq!(waiter.join(), Ok((Ok(1), Err(RecvError::Disconnected))));
//! assert!(tx.send(2).unwrap_err().is_disconnected());
//! # Ok::<(), uniconc::Error>(())
//! ```
//!
//! A send that *races* with `close()` (it checked the flag just before the close) may still
//! enqueue its message; that message stays receivable by the next `recv`, it is never dropped
//! silently, but a receiver that already returned `Disconnected` will not see it.
//!
//! # Disconnection
//!
//! When every `Sender` is dropped, receivers drain what is queued, then get `Disconnected`.
//! When every `Receiver` is dropped, the messages still queued are dropped at once (their
//! memory is freed even while senders live on), and every send hands its message back inside
//! `Disconnected`. crossbeam's bounded flavour would keep them until the last sender goes, so
//! the last receiver closes the channel and drops them itself. A message whose `Drop` panics
//! there does not keep the others alive: they are all dropped, then the first panic reaches
//! the code that dropped the receiver.
//!
//! ```
//! use std::sync::Arc;
//! use uniconc::Sender as _;
//! let (tx, rx) = uniconc::thread::channel::<Arc<()>>(4)?;
//! let value = Arc::new(());
//! tx.send(value.clone()).unwrap();
//! assert_eq!(Arc::strong_count(&value), 2); // one queued
//! drop(rx);
//! assert_eq!(Arc::strong_count(&value), 1); // dropped with the last receiver; `tx` lives
//! assert!(tx.send(value).unwrap_err().is_disconnected());
//! # Ok::<(), uniconc::Error>(())
//! ```
//!
//! # Async forms
//!
//! crossbeam has no async API. Beside the channel sit two `WakerSet`s, one for async
//! receivers (notified by every send, close, and drop of a sender) and one for async senders
//! (notified by every receive from a bounded channel, close, and drop of a receiver). The
//! blocking hot path pays one load per operation to find out that nobody waits
//! asynchronously (see `WakerSet::notify_one_after_transfer` for the ordering argument).
//!
//! ```
//! use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
//! let (tx, rx) = uniconc::thread::channel::<u32>(1)?;
//! let consumer = uniconc::thread::spawn_async(async move {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv_async().await {
//!         sum += v;
//!     }
//!     sum
//! })?;
//! for i in 1..=4 {
//!     tx.send(i).unwrap(); // a blocking sender wakes the async receiver, and back
//! }
//! drop(tx);
//! assert_eq!(consumer.join(), Ok(10));
//! # Ok::<(), uniconc::Error>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_channel as cb;
use crossbeam_utils::Backoff;
use uniconc_core::select::{Parker, SelectRecv, SelectSend};
use uniconc_core::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use crate::waiter::WakerSet;

/// State shared by every handle of one channel, beside crossbeam's own.
struct Shared<T> {
    /// Set once by `close()`. Release/Acquire: a receiver that sees it also sees every
    /// message sent before the close.
    closed: AtomicBool,
    /// The only sender of the close channel; dropped (taken) by `close()`.
    close_tx: Mutex<Option<cb::Sender<Infallible>>>,
    /// Becomes ready (disconnected) when the channel is closed; blocked operations select on it.
    close_rx: cb::Receiver<Infallible>,
    /// Live `Sender` handles (to report `is_closed` on the receiving side). Relaxed: a
    /// snapshot counter; disconnection itself is crossbeam's.
    senders: AtomicUsize,
    /// Live `Receiver` handles, likewise.
    receivers: AtomicUsize,
    /// Async receivers waiting for a message.
    recv_wakers: WakerSet,
    /// Async senders waiting for room (bounded channels only).
    send_wakers: WakerSet,
    /// `true` for a bounded channel: only then can a receive unblock a sender.
    bounded: bool,
    /// The last `Receiver`'s crossbeam receiver, kept once every `Receiver` is gone to drop
    /// what is queued (see [`Shared::receivers_gone`]). `None` while a `Receiver` lives.
    orphan: Mutex<Option<cb::Receiver<T>>>,
}

impl<T> Shared<T> {
    fn new(bounded: bool) -> Arc<Self> {
        let (close_tx, close_rx) = cb::bounded(0);
        Arc::new(Self {
            closed: AtomicBool::new(false),
            close_tx: Mutex::new(Some(close_tx)),
            close_rx,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            recv_wakers: WakerSet::new(),
            send_wakers: WakerSet::new(),
            bounded,
            orphan: Mutex::new(None),
        })
    }

    fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        // Release: a receiver that sees the flag sees every message sent before the close.
        self.closed.store(true, Ordering::Release);
        // Dropping the close sender wakes every blocked select.
        drop(
            self.close_tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.recv_wakers.notify_all_after_change();
        self.send_wakers.notify_all_after_change();
    }

    /// After a message was taken: room appeared for an async sender.
    #[inline]
    fn after_recv(&self) {
        if self.bounded {
            self.send_wakers.notify_one_after_transfer();
        }
    }

    /// After a message was queued: wake an async receiver, and drop the message if the last
    /// receiver went while it was being sent (see [`receivers_gone`](Self::receivers_gone)).
    #[inline]
    fn after_send(&self) {
        self.recv_wakers.notify_one_after_transfer();
        // SeqCst: the sender's half of the protocol of `receivers_gone`.
        if self.closed.load(Ordering::SeqCst) {
            self.discard_queued();
        }
    }

    /// The last `Receiver` is gone (`rx` is its crossbeam receiver): close the channel and
    /// drop every queued message now, rather than when the last sender goes.
    ///
    /// crossbeam drops the messages of a bounded channel only when both sides are gone, so
    /// the receiver is not dropped but kept in `orphan` (the channel stays connected in
    /// crossbeam's eyes; our `closed` flag refuses further sends and wakes blocked senders).
    ///
    /// # Memory ordering
    ///
    /// A send that checked `closed` just before this may still queue its message after the
    /// drain below. Either the drain sees that message or its sender sees `closed` in
    /// [`after_send`](Self::after_send) and drains (through `orphan`) itself:
    ///
    /// - here: `store(closed)`, then `fence(SeqCst)`, then crossbeam's `try_recv`, which finds
    ///   a channel empty only after its own `fence(SeqCst)` and a load of the tail index;
    /// - the sender: crossbeam's `SeqCst` compare-exchange of the tail index (its claim of a
    ///   slot), then our `SeqCst` load of `closed`.
    ///
    /// If the sender's load misses the store, it precedes our fence in the `SeqCst` total
    /// order, so does its compare-exchange, and the drain's tail load sees the claimed slot
    /// (and waits for the message to be written): the same fence rules as
    /// [`WakerSet::notify_one_after_transfer`]. If `closed` was already set by an earlier
    /// `close()`, `orphan`'s mutex orders the two sides instead: whichever takes it second
    /// sees the message (the drain) or the orphan (the sender).
    fn receivers_gone(&self, rx: cb::Receiver<T>) {
        *self.orphan.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        self.close();
        // SeqCst: our half of the protocol above.
        fence(Ordering::SeqCst);
        self.discard_queued();
    }

    /// Drops every message queued in the orphaned channel, one at a time and outside the
    /// mutex. A message whose `Drop` panics does not stop the others from being dropped; the
    /// first panic is resumed once they all are (a second one is discarded, never a double
    /// panic). Does nothing while a `Receiver` lives.
    fn discard_queued(&self) {
        let mut first_panic = None;
        loop {
            let next = match &*self.orphan.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(rx) => rx.try_recv(),
                None => return,
            };
            let Ok(message) = next else { break };
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(message))) {
                first_panic.get_or_insert(panic);
            }
        }
        if let Some(panic) = first_panic {
            resume_unwind(panic);
        }
    }
}

/// Creates a channel holding at most `capacity` messages.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::thread::channel::<u32>(2)?;
/// let h = uniconc::thread::spawn(move || {
///     for i in 1..=3 {
///         tx.send(i).unwrap(); // blocks while 2 messages wait
///     }
/// })?;
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]); // ends when the thread drops `tx`
/// h.join().unwrap();
/// assert!(uniconc::thread::channel::<u32>(0).is_err());
/// # Ok::<(), uniconc::Error>(())
/// ```
///
/// # Errors
/// `InvalidArgument` for `capacity == 0` (uniconc has no rendezvous channel: a capacity of 0
/// is refused rather than silently changing the meaning of `send`).
pub fn channel<T: Send + 'static>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    uniconc_core::validate::channel_capacity(capacity)?;
    let (tx, rx) = cb::bounded(capacity);
    Ok(pair(tx, rx, true))
}

/// Creates a channel without a bound on the number of messages.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::thread::unbounded::<String>()?;
/// assert_eq!(tx.capacity(), None);
/// let h = uniconc::thread::spawn(move || {
///     for i in 0..100 {
///         tx.try_send(i.to_string()).unwrap(); // never full
///     }
/// })?;
/// h.join().unwrap();
/// assert_eq!(rx.len(), 100);
/// assert_eq!(rx.recv().as_deref(), Ok("0"));
/// # Ok::<(), uniconc::Error>(())
/// ```
///
/// # Errors
/// Never fails on this backend; the `Result` keeps the signature the same on every backend.
pub fn unbounded<T: Send + 'static>() -> Result<(Sender<T>, Receiver<T>), Error> {
    let (tx, rx) = cb::unbounded();
    Ok(pair(tx, rx, false))
}

fn pair<T>(tx: cb::Sender<T>, rx: cb::Receiver<T>, bounded: bool) -> (Sender<T>, Receiver<T>) {
    let shared = Shared::new(bounded);
    (
        Sender {
            tx: ManuallyDrop::new(tx),
            shared: shared.clone(),
        },
        Receiver {
            rx: ManuallyDrop::new(rx),
            shared,
        },
    )
}

/// The sending half of a thread-backend channel. Clone it to add producers.
///
/// A crossbeam-channel sender plus a shared close flag: [`close`](uniconc_core::Sender::close)
/// on any handle refuses further sends and wakes every blocked sender and receiver. The
/// `_async` forms are woken through their `Waker`, on any executor. The send methods come from
/// [`uniconc::Sender`](uniconc_core::Sender).
///
/// ```
/// use uniconc::{JoinHandle as _, Sender as _, TrySendError};
/// let (tx, rx) = uniconc::thread::channel::<u8>(1)?;
/// let tx2 = tx.clone();
/// let h = uniconc::thread::spawn(move || tx2.send(1))?;
/// h.join().unwrap().unwrap();
/// assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2)))); // the message comes back
/// drop(rx); // the only receiver gone: sending fails, handing the message back
/// assert_eq!(tx.send(3).unwrap_err().into_inner(), 3);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Sender<T> {
    /// Dropped by hand first in `Drop`, so crossbeam has disconnected before we wake async
    /// receivers.
    tx: ManuallyDrop<cb::Sender<T>>,
    shared: Arc<Shared<T>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Sender<T>, shared);

/// The receiving half of a thread-backend channel. Clone it to add consumers.
///
/// A crossbeam-channel receiver: every message goes to exactly one receiver. Once every
/// sender is dropped (or the channel is closed), receivers drain what is queued and then get
/// `Disconnected`. Dropping the last `Receiver` drops the messages still queued and makes
/// every send fail with `Disconnected(message)` (see the [module docs](self)). The receive
/// methods come from [`uniconc::Receiver`](uniconc_core::Receiver).
///
/// ```
/// use std::time::Duration;
/// use uniconc::{JoinHandle as _, Receiver as _, RecvError, RecvTimeoutError, Sender as _};
/// let (tx, rx) = uniconc::thread::channel::<u8>(4)?;
/// assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
/// let h = uniconc::thread::spawn(move || tx.send(5))?;
/// h.join().unwrap().unwrap(); // the thread and its sender are gone...
/// assert_eq!(rx.recv(), Ok(5)); // ...but what it sent is still delivered
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
/// # Ok::<(), uniconc::Error>(())
/// ```
pub struct Receiver<T> {
    /// Dropped by hand first in `Drop`, like `Sender::tx`.
    rx: ManuallyDrop<cb::Receiver<T>>,
    shared: Arc<Shared<T>>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Receiver<T>, shared);

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.rx.len())
            .field("capacity", &self.rx.capacity())
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a snapshot counter (see the field doc).
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        // Relaxed: a snapshot counter (see the field doc).
        self.shared.receivers.fetch_add(1, Ordering::Relaxed);
        Self {
            rx: self.rx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // SAFETY: `tx` is dropped exactly once, here, and never used afterwards (`drop` is the
        // last use of `self`).
        unsafe { ManuallyDrop::drop(&mut self.tx) };
        // AcqRel: the last decrement must see the others (a plain reference count).
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // crossbeam has disconnected the channel: async receivers must look again.
            self.shared.recv_wakers.notify_all_after_change();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // AcqRel: as in `Sender::drop`. A `Receiver` is cloned only from a live one, so once
        // the count is 0 no other `Receiver` can appear.
        if self.shared.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: as in `Sender::drop`: taken once, `rx` is never used afterwards.
            let rx = unsafe { ManuallyDrop::take(&mut self.rx) };
            // Closes the channel (waking every waiting sender) and drops what is queued.
            self.shared.receivers_gone(rx);
        } else {
            // SAFETY: as in `Sender::drop`: dropped once, never used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.rx) };
        }
    }
}

impl<T: Send + 'static> Sender<T> {
    /// One non-blocking attempt, shared by every send form.
    #[inline]
    fn attempt(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.shared.is_closed() {
            return Err(TrySendError::Disconnected(value));
        }
        match self.tx.try_send(value) {
            Ok(()) => {
                self.shared.after_send();
                Ok(())
            }
            Err(cb::TrySendError::Full(v)) => Err(TrySendError::Full(v)),
            Err(cb::TrySendError::Disconnected(v)) => Err(TrySendError::Disconnected(v)),
        }
    }

    fn send_blocking(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut value = match self.attempt(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(v)) => v,
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Invalid(v, e)) => return Err(SendTimeoutError::Invalid(v, e)),
        };
        // Spin briefly before parking, as crossbeam's own `send` does.
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            value = match self.attempt(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(v)) => v,
                Err(e) => return Err(SendError::Disconnected(e.into_inner()).into()),
            };
        }
        loop {
            if self.shared.is_closed() {
                return Err(SendTimeoutError::Disconnected(value));
            }
            let mut sel = cb::Select::new();
            let send_index = sel.send(&self.tx);
            sel.recv(&self.shared.close_rx);
            let oper = match deadline {
                None => sel.select(),
                Some(d) => match sel.select_deadline(d) {
                    Ok(oper) => oper,
                    Err(_) => return Err(SendTimeoutError::Timeout(value)),
                },
            };
            if oper.index() == send_index {
                return match oper.send(&self.tx, value) {
                    Ok(()) => {
                        self.shared.after_send();
                        Ok(())
                    }
                    Err(cb::SendError(v)) => Err(SendTimeoutError::Disconnected(v)),
                };
            }
            // The close channel is ready: it was closed; loop to report it.
            let _ = oper.recv(&self.shared.close_rx);
            value = match self.attempt(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(v)) => v,
                Err(e) => return Err(SendError::Disconnected(e.into_inner()).into()),
            };
        }
    }
}

impl<T: Send + 'static> uniconc_core::Sender<T> for Sender<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.attempt(value)
    }

    #[inline]
    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        self.send_blocking(value, deadline)
    }

    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        SendFuture {
            tx: self,
            value: Some(value),
            key: None,
        }
    }

    fn len(&self) -> usize {
        self.tx.len()
    }

    fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }

    fn is_closed(&self) -> bool {
        // Relaxed: a snapshot.
        self.shared.is_closed() || self.shared.receivers.load(Ordering::Relaxed) == 0
    }

    fn close(&self) {
        self.shared.close();
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// One non-blocking attempt, shared by every receive form.
    #[inline]
    fn attempt(&self) -> Result<T, TryRecvError> {
        match self.rx.try_recv() {
            Ok(v) => {
                self.shared.after_recv();
                Ok(v)
            }
            Err(cb::TryRecvError::Disconnected) => Err(TryRecvError::Disconnected),
            Err(cb::TryRecvError::Empty) => {
                if !self.shared.is_closed() {
                    return Err(TryRecvError::Empty);
                }
                // Closed: having seen the flag (Acquire), every message sent before the close
                // is visible now; drain it before reporting the disconnection.
                match self.rx.try_recv() {
                    Ok(v) => {
                        self.shared.after_recv();
                        Ok(v)
                    }
                    Err(_) => Err(TryRecvError::Disconnected),
                }
            }
        }
    }

    fn recv_blocking(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        match self.attempt() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Empty) => {}
            Err(_) => return Err(RecvTimeoutError::Disconnected),
        }
        // Spin briefly before parking, as crossbeam's own `recv` does.
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            match self.attempt() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Empty) => {}
                Err(_) => return Err(RecvTimeoutError::Disconnected),
            }
        }
        loop {
            let mut sel = cb::Select::new();
            let recv_index = sel.recv(&self.rx);
            sel.recv(&self.shared.close_rx);
            let oper = match deadline {
                None => sel.select(),
                Some(d) => match sel.select_deadline(d) {
                    Ok(oper) => oper,
                    Err(_) => return Err(RecvTimeoutError::Timeout),
                },
            };
            if oper.index() == recv_index {
                return match oper.recv(&self.rx) {
                    Ok(v) => {
                        self.shared.after_recv();
                        Ok(v)
                    }
                    Err(cb::RecvError) => Err(RecvTimeoutError::Disconnected),
                };
            }
            let _ = oper.recv(&self.shared.close_rx);
            // Closed: drain what is queued, then report it.
            match self.attempt() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Empty) => {}
                Err(_) => return Err(RecvTimeoutError::Disconnected),
            }
        }
    }
}

impl<T: Send + 'static> uniconc_core::Receiver<T> for Receiver<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        self.attempt()
    }

    #[inline]
    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.recv_blocking(deadline)
    }

    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_ {
        RecvFuture {
            rx: self,
            key: None,
        }
    }

    fn len(&self) -> usize {
        self.rx.len()
    }

    fn capacity(&self) -> Option<usize> {
        self.rx.capacity()
    }

    fn is_closed(&self) -> bool {
        // Relaxed: a snapshot.
        self.shared.is_closed() || self.shared.senders.load(Ordering::Relaxed) == 0
    }
}

/// Future of `send_async`.
struct SendFuture<'a, T> {
    tx: &'a Sender<T>,
    /// The message, until it is sent.
    value: Option<T>,
    /// Our slot in `send_wakers`, once registered.
    key: Option<usize>,
}

// The message is only ever moved, never pinned: the future is `Unpin` whatever `T` is.
impl<T> Unpin for SendFuture<'_, T> {}

impl<T: Send + 'static> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = &this.tx.shared;
        let Some(mut value) = this.value.take() else {
            panic!("`send_async` future polled after completion");
        };
        for registered in [false, true] {
            value = match this.tx.attempt(value) {
                Ok(()) => {
                    shared.send_wakers.unregister(&mut this.key);
                    return Poll::Ready(Ok(()));
                }
                Err(TrySendError::Full(v)) => v,
                Err(e) => {
                    shared.send_wakers.unregister(&mut this.key);
                    return Poll::Ready(Err(SendError::Disconnected(e.into_inner())));
                }
            };
            if !registered {
                // Register, then re-check (the loop's second round).
                shared.send_wakers.register(&mut this.key, cx.waker());
            }
        }
        this.value = Some(value);
        Poll::Pending
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        // Cancelled after being woken for room we did not use: pass the wake-up on.
        if self.tx.shared.send_wakers.unregister(&mut self.key) {
            self.tx.shared.send_wakers.notify_one();
        }
    }
}

/// Future of `recv_async`. A message is taken off the channel only in the poll that returns
/// it, so dropping the future loses nothing.
struct RecvFuture<'a, T> {
    rx: &'a Receiver<T>,
    /// Our slot in `recv_wakers`, once registered.
    key: Option<usize>,
}

impl<T: Send + 'static> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = &this.rx.shared;
        for registered in [false, true] {
            match this.rx.attempt() {
                Ok(v) => {
                    shared.recv_wakers.unregister(&mut this.key);
                    return Poll::Ready(Ok(v));
                }
                Err(TryRecvError::Empty) => {}
                Err(_) => {
                    shared.recv_wakers.unregister(&mut this.key);
                    return Poll::Ready(Err(RecvError::Disconnected));
                }
            }
            if !registered {
                // Register, then re-check (the loop's second round).
                shared.recv_wakers.register(&mut this.key, cx.waker());
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        // Cancelled after being woken for a message we did not take: pass the wake-up on.
        if self.rx.shared.recv_wakers.unregister(&mut self.key) {
            self.rx.shared.recv_wakers.notify_one();
        }
    }
}

/// `for x in rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::{JoinHandle as _, Sender as _};
/// let (tx, rx) = uniconc::thread::channel::<u64>(4)?;
/// let unit = uniconc::thread::spawn(move || {
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
/// let (tx, rx) = uniconc::thread::channel::<u64>(4)?;
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

/// A select waits on thread channels through the wakers the async forms use: a selecting
/// thread registers a [`Parker`] with every channel's waker set, re-checks, then parks (the
/// protocol of the crate's `waiter` module); a wake-up it was given for a channel it
/// did not take from is passed on to another waiter.
impl<T: Send + 'static> SelectRecv<T, Parker> for Receiver<T> {
    fn select_try_recv(&self) -> Result<T, TryRecvError> {
        self.attempt()
    }

    fn recv_ready(&self) -> bool {
        !self.rx.is_empty() || uniconc_core::Receiver::is_closed(self)
    }

    fn watch_recv(&self, sel: &mut Parker, key: &mut Option<usize>) {
        self.shared.recv_wakers.register(key, sel.waker());
    }

    fn unwatch_recv(&self, _: &mut Parker, key: &mut Option<usize>, fired: bool) {
        if self.shared.recv_wakers.unregister(key) && !fired {
            self.shared.recv_wakers.notify_one();
        }
    }
}

/// As for [`Receiver`]: the async senders' waker set.
impl<T: Send + 'static> SelectSend<T, Parker> for Sender<T> {
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.attempt(value)
    }

    fn send_ready(&self) -> bool {
        uniconc_core::Sender::is_closed(self)
            || self.tx.capacity().is_none_or(|c| self.tx.len() < c)
    }

    fn watch_send(&self, sel: &mut Parker, key: &mut Option<usize>) {
        self.shared.send_wakers.register(key, sel.waker());
    }

    fn unwatch_send(&self, _: &mut Parker, key: &mut Option<usize>, fired: bool) {
        if self.shared.send_wakers.unregister(key) && !fired {
            self.shared.send_wakers.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::task::{Wake, Waker};
    use std::time::Duration;
    use uniconc_core::{Receiver as _, Sender as _};

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag_waker() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    fn poll_once<F: Future>(fut: Pin<&mut F>, w: &Waker) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(w))
    }

    #[test]
    fn capacity_zero_is_refused() {
        let e = channel::<u8>(0).unwrap_err();
        assert_eq!(e.kind(), uniconc_core::ErrorKind::InvalidArgument);
    }

    #[test]
    fn close_drains_then_disconnects_and_returns_values() {
        let (tx, rx) = channel::<u32>(4).unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        rx.clone().is_closed();
        tx.close();
        assert!(tx.is_closed() && rx.is_closed());
        assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
        assert_eq!(tx.send(4).unwrap_err().into_inner(), 4);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn close_wakes_blocked_receiver_and_sender() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        let rx2 = rx.clone();
        let r = std::thread::spawn(move || rx2.recv());
        std::thread::sleep(Duration::from_millis(50));
        tx.close();
        assert_eq!(r.join().unwrap(), Err(RecvError::Disconnected));

        let (tx, rx) = channel::<u32>(1).unwrap();
        tx.send(1).unwrap();
        let tx2 = tx.clone();
        let s = std::thread::spawn(move || tx2.send(2));
        std::thread::sleep(Duration::from_millis(50));
        tx.close();
        assert_eq!(s.join().unwrap().unwrap_err().into_inner(), 2);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    }

    #[test]
    fn recv_async_registers_and_is_woken_by_send() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        let (flag, w) = flag_waker();
        let mut fut = std::pin::pin!(rx.recv_async());
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        assert_eq!(rx.shared.recv_wakers.waiting(), 1);
        tx.send(5).unwrap();
        assert!(flag.0.load(Ordering::SeqCst));
        assert_eq!(poll_once(fut.as_mut(), &w), Poll::Ready(Ok(5)));
        assert_eq!(rx.shared.recv_wakers.waiting(), 0);
    }

    #[test]
    fn cancelled_notified_recv_passes_the_wake_up_on() {
        let (tx, rx) = unbounded::<u32>().unwrap();
        let (f1, w1) = flag_waker();
        let (f2, w2) = flag_waker();
        let mut a = Box::pin(rx.recv_async());
        let mut b = Box::pin(rx.recv_async());
        assert!(poll_once(a.as_mut(), &w1).is_pending());
        assert!(poll_once(b.as_mut(), &w2).is_pending());
        tx.send(9).unwrap();
        // Exactly one was woken; drop that one without polling it.
        let (woken, other, other_flag, other_waker) = if f1.0.load(Ordering::SeqCst) {
            (a, b, f2, w2)
        } else {
            (b, a, f1, w1)
        };
        assert!(!other_flag.0.load(Ordering::SeqCst));
        drop(woken);
        assert!(
            other_flag.0.load(Ordering::SeqCst),
            "the wake-up was passed on"
        );
        let mut other = other;
        assert_eq!(poll_once(other.as_mut(), &other_waker), Poll::Ready(Ok(9)));
    }

    #[test]
    fn dropped_recv_future_loses_no_message() {
        let (tx, rx) = channel::<u32>(8).unwrap();
        let (_f, w) = flag_waker();
        {
            let mut fut = std::pin::pin!(rx.recv_async());
            assert!(poll_once(fut.as_mut(), &w).is_pending());
        }
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn send_async_waits_for_room_and_wakes_on_receiver_drop() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        tx.send(0).unwrap();
        let (flag, w) = flag_waker();
        let mut fut = std::pin::pin!(tx.send_async(1));
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        assert_eq!(rx.recv(), Ok(0));
        assert!(flag.0.load(Ordering::SeqCst));
        assert_eq!(poll_once(fut.as_mut(), &w), Poll::Ready(Ok(())));
        assert_eq!(rx.recv(), Ok(1));

        tx.send(2).unwrap();
        let (flag, w) = flag_waker();
        let mut fut = std::pin::pin!(tx.send_async(3));
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        drop(rx);
        assert!(flag.0.load(Ordering::SeqCst));
        match poll_once(fut.as_mut(), &w) {
            Poll::Ready(Err(e)) => assert_eq!(e.into_inner(), 3),
            other => panic!(
                "expected a disconnection, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
    }

    #[test]
    fn last_sender_drop_wakes_async_receiver() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        let tx2 = tx.clone();
        let (flag, w) = flag_waker();
        let mut fut = std::pin::pin!(rx.recv_async());
        assert!(poll_once(fut.as_mut(), &w).is_pending());
        drop(tx);
        assert!(!rx.is_closed());
        drop(tx2);
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(rx.is_closed());
        assert_eq!(
            poll_once(fut.as_mut(), &w),
            Poll::Ready(Err(RecvError::Disconnected))
        );
    }

    /// Runs `f` on a thread and fails if it has not finished in 60 s (a lost wake-up hangs).
    fn with_watchdog(f: impl FnOnce() + Send + 'static) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            f();
            let _ = done_tx.send(());
        });
        match done_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => t.join().unwrap(),
            Err(_) if t.is_finished() => std::panic::resume_unwind(t.join().unwrap_err()),
            Err(_) => panic!("watchdog: a waiter was never woken (lost wake-up?)"),
        }
    }

    fn stress_scale() -> u64 {
        std::env::var("UNICONC_STRESS_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    }

    /// Capacity 1 forces a hand-over between the blocking and the async side on almost every
    /// message, exercising the fence-free hot-path notification in both directions.
    #[test]
    fn no_lost_wake_ups_between_blocking_and_async_sides() {
        with_watchdog(|| {
            let n = 20_000 * stress_scale();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            // Blocking senders, async receivers.
            let (tx, rx) = channel::<u64>(1).unwrap();
            let producers: Vec<_> = (0..2)
                .map(|p| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..n {
                            tx.send(p * n + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let (count, sum) = rt.block_on(async move {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let rx = rx.clone();
                        tokio::spawn(async move {
                            let (mut c, mut s) = (0u64, 0u64);
                            while let Ok(v) = rx.recv_async().await {
                                c += 1;
                                s += v;
                            }
                            (c, s)
                        })
                    })
                    .collect();
                let mut t = (0, 0);
                for h in tasks {
                    let (c, s) = h.await.unwrap();
                    t = (t.0 + c, t.1 + s);
                }
                t
            });
            for p in producers {
                p.join().unwrap();
            }
            assert_eq!(count, 2 * n);
            assert_eq!(sum, (2 * n) * (2 * n - 1) / 2);

            // Async senders, blocking receivers.
            let (tx, rx) = channel::<u64>(1).unwrap();
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || {
                        rx.iter().fold((0u64, 0u64), |(c, s), v| (c + 1, s + v))
                    })
                })
                .collect();
            drop(rx);
            rt.block_on(async move {
                let tasks: Vec<_> = (0..2)
                    .map(|p| {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            for i in 0..n {
                                tx.send_async(p * n + i).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for h in tasks {
                    h.await.unwrap();
                }
            });
            let (count, sum) = consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(c, s), (c2, s2)| (c + c2, s + s2));
            assert_eq!(count, 2 * n);
            assert_eq!(sum, (2 * n) * (2 * n - 1) / 2);
        });
    }

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Senders racing with the drop of the last receiver: every message they queued is
    /// dropped by the time the receiver's drop and the sends have returned, though a sender
    /// is still alive (a message queued just after the receiver's drain is dropped by its
    /// sender).
    #[test]
    fn messages_racing_the_last_receiver_drop_are_dropped_too() {
        with_watchdog(|| {
            let rounds = 200 * stress_scale();
            for round in 0..rounds {
                let drops = Arc::new(AtomicUsize::new(0));
                let (tx, rx) = if round % 2 == 0 {
                    channel::<Counted>(64).unwrap()
                } else {
                    unbounded::<Counted>().unwrap()
                };
                let start = Arc::new(std::sync::Barrier::new(3));
                let senders: Vec<_> = (0..2)
                    .map(|_| {
                        let (tx, drops, start) = (tx.clone(), drops.clone(), start.clone());
                        std::thread::spawn(move || {
                            start.wait();
                            let mut made = 0usize;
                            loop {
                                made += 1;
                                match tx.try_send(Counted(drops.clone())) {
                                    Ok(()) => {}
                                    Err(TrySendError::Full(_)) => std::thread::yield_now(),
                                    Err(_) => return made,
                                }
                            }
                        })
                    })
                    .collect();
                start.wait();
                std::thread::yield_now();
                drop(rx);
                let made: usize = senders.into_iter().map(|h| h.join().unwrap()).sum();
                assert_eq!(drops.load(Ordering::SeqCst), made, "round {round}");
                drop(tx);
                assert_eq!(drops.load(Ordering::SeqCst), made, "round {round}");
            }
        });
    }

    #[test]
    fn timeouts() {
        let (tx, rx) = channel::<u32>(1).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        tx.send(1).unwrap();
        assert!(
            tx.send_timeout(2, Duration::from_millis(10))
                .unwrap_err()
                .is_timeout()
        );
        assert_eq!(tx.len(), 1);
        assert_eq!(tx.capacity(), Some(1));
        assert_eq!(rx.capacity(), Some(1));
    }
}
