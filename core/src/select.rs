//! Waiting on several channel operations at once: [`Select`], the [`select!`](crate::select!)
//! macro and the timers [`after`], [`tick`] and [`never`](fn@never).
//!
//! A worker that listens on a job queue and a stop channel blocks on both and takes whichever
//! is ready first, without polling:
//!
//! ```
//! use uniconc::{Backend, Sender as _};
//!
//! type B = uniconc::thread::Thread;
//! let (jobs_tx, jobs) = B::channel::<u32>(8)?;
//! let (stop_tx, stop) = B::channel::<()>(1)?;
//! jobs_tx.send(7)?;
//! stop_tx.send(())?;
//!
//! let mut done = 0;
//! loop {
//!     uniconc::select! {
//!         recv(jobs) -> job => done += job?,
//!         recv(stop) -> _ => break,
//!     }
//! }
//! # let _ = done;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a select guarantees
//!
//! - **Exactly once.** The operation reported as selected has been performed (a message was
//!   taken, or sent) and no other registered operation was. A receive that finds the channel
//!   disconnected, or a send refused because every receiver is gone, counts as performed:
//!   its error is the result.
//! - **Fair.** Each round starts at a random operation, so one that is always ready does not
//!   starve the others.
//! - **No lost wake-up.** A select that sleeps registers with every channel first and checks
//!   again before sleeping: a message landing in between wakes it.
//! - **One backend per select.** The operations of one select are all of one backend (its
//!   channel handles carry the backend's [`Selector`] type), so mixing a thread channel and a
//!   process channel in one select does not compile. Timers ([`after`], [`tick`],
//!   [`never`](fn@never)) work with every backend.
//!
//! # Sending in a select
//!
//! A send operation takes the value from a slot you own (`&mut Option<T>`): if the send is
//! selected, the slot is emptied; if another operation fires, the value is still in the slot,
//! nothing is dropped. The [`select!`](crate::select!) macro makes the slot for you and drops
//! an unsent value when another arm fires (as Go's `select` and `tokio::select!` do); use the
//! builder when the value must be kept.
//!
//! # Async
//!
//! [`Select::select_async`] waits without blocking the executor. Inside async code on tokio,
//! `tokio::select!` over [`recv_async`](crate::Receiver::recv_async) and
//! [`send_async`](crate::Sender::send_async) futures works too: every `_async` form of the
//! contract is cancel-safe, so the branches that lose lose no message (a losing `send_async`
//! drops its value unsent, as the macro does).
//!
//! # For backends
//!
//! A backend makes its channel halves selectable by implementing [`SelectRecv`] and
//! [`SelectSend`] with its [`Selector`] (how one thread sleeps for several channels of that
//! backend). Backends whose channels keep wakers can use [`Parker`].

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::{RecvError, SendError, TryRecvError, TrySendError};
use crate::time::deadline_after;

/// How one thread (or task) sleeps until any of several channels of one backend changes.
///
/// A select round is: [`begin`](Selector::begin), then every operation registers the selector
/// with its channel ([`SelectRecv::watch_recv`] / [`SelectSend::watch_send`]), then every
/// operation is tried once more, and only if none is ready, [`wait`](Selector::wait). A wake-up
/// that comes between `begin` and `wait` makes `wait` return at once. Spurious returns are
/// allowed: the select tries again.
pub trait Selector: Sized {
    /// Whether a blocking select spins before it sleeps: tries every operation a few more
    /// times, with short pauses, so that a message a few hundred nanoseconds away is taken
    /// without a sleep. Worth it where a try is a memory access; a backend whose every try is
    /// a round trip to a server sets it to `false` (each spin round would be one round trip
    /// per operation, for a message that is rarely that close).
    const SPIN: bool = true;

    /// A selector for the calling thread.
    fn new() -> Self;

    /// Starts a round: forgets earlier wake-ups and registrations.
    fn begin(&mut self);

    /// Sleeps until a watched channel wakes this selector, or `deadline` (`None`: no deadline).
    fn wait(&mut self, deadline: Option<Instant>);

    /// The async form of [`wait`](Selector::wait): `Ready` once woken; until then, arranges for
    /// `cx`'s waker to be woken when a watched channel wakes this selector.
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The receiving side of a channel (or a timer), as a [`Select`] of selector `S` uses it.
///
/// Implemented by each backend's `Receiver<T>` with that backend's selector, and by the
/// timers for every selector.
pub trait SelectRecv<T, S: Selector> {
    /// One non-blocking attempt: as [`Receiver::try_recv`](crate::Receiver::try_recv).
    ///
    /// # Errors
    /// `Empty` when nothing is ready; `Disconnected` or `Invalid` end the select with that
    /// result.
    fn select_try_recv(&self) -> Result<T, TryRecvError>;

    /// `true` if a receive would not wait now (a message is queued, or the channel is
    /// disconnected): a hint, as crossbeam's `ready`.
    fn recv_ready(&self) -> bool;

    /// Registers `sel` to be woken when a message may have arrived or the channel may have
    /// disconnected. `key` is this registration's slot, `None` before the first call; the
    /// backend may keep whatever it needs to find the registration again in it.
    fn watch_recv(&self, sel: &mut S, key: &mut Option<usize>);

    /// Removes the registration made by [`watch_recv`](SelectRecv::watch_recv). `fired` is
    /// `true` if this operation was the one performed: a backend that wakes one waiter per
    /// message passes a wake-up it gave this selector on to another waiter when `fired` is
    /// `false`.
    fn unwatch_recv(&self, sel: &mut S, key: &mut Option<usize>, fired: bool);

    /// The instant this receiver becomes ready by itself (a timer); `None` for channels.
    fn ready_at(&self) -> Option<Instant> {
        None
    }
}

/// The sending side of a channel, as a [`Select`] of selector `S` uses it.
pub trait SelectSend<T, S: Selector> {
    /// One non-blocking attempt: as [`Sender::try_send`](crate::Sender::try_send).
    ///
    /// # Errors
    /// `Full(value)` when there is no room; `Disconnected` or `Invalid` end the select with
    /// that result.
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>>;

    /// `true` if a send would not wait now (there is room, or the channel is disconnected): a
    /// hint.
    fn send_ready(&self) -> bool;

    /// Registers `sel` to be woken when room may have appeared or the channel may have
    /// disconnected; as [`SelectRecv::watch_recv`].
    fn watch_send(&self, sel: &mut S, key: &mut Option<usize>);

    /// Removes the registration; as [`SelectRecv::unwatch_recv`].
    fn unwatch_send(&self, sel: &mut S, key: &mut Option<usize>, fired: bool);
}

/// A reference to a receiver selects as the receiver: `select!` arms take `recv(rx)` whether
/// `rx` is a receiver or a `&` to one (a function that borrows its channels).
impl<T, S: Selector, R: SelectRecv<T, S> + ?Sized> SelectRecv<T, S> for &R {
    fn select_try_recv(&self) -> Result<T, TryRecvError> {
        (**self).select_try_recv()
    }

    fn recv_ready(&self) -> bool {
        (**self).recv_ready()
    }

    fn watch_recv(&self, sel: &mut S, key: &mut Option<usize>) {
        (**self).watch_recv(sel, key);
    }

    fn unwatch_recv(&self, sel: &mut S, key: &mut Option<usize>, fired: bool) {
        (**self).unwatch_recv(sel, key, fired);
    }

    fn ready_at(&self) -> Option<Instant> {
        (**self).ready_at()
    }
}

/// A reference to a sender selects as the sender (`send(tx, value)` with `tx: &Sender`).
impl<T, S: Selector, W: SelectSend<T, S> + ?Sized> SelectSend<T, S> for &W {
    fn select_try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        (**self).select_try_send(value)
    }

    fn send_ready(&self) -> bool {
        (**self).send_ready()
    }

    fn watch_send(&self, sel: &mut S, key: &mut Option<usize>) {
        (**self).watch_send(sel, key);
    }

    fn unwatch_send(&self, sel: &mut S, key: &mut Option<usize>, fired: bool) {
        (**self).unwatch_send(sel, key, fired);
    }
}

/// A [`Selector`] for channels that keep [`Waker`]s: the blocking form parks the thread, the
/// async form wakes the task. [`waker`](Parker::waker) is what a channel registers.
pub struct Parker {
    inner: Arc<ParkInner>,
    waker: Waker,
}

struct ParkInner {
    thread: Thread,
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for ParkInner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: the waiter's Acquire swap in `wait` sees what the waker did before.
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Parker {
    /// The waker a channel registers; waking it wakes this selector.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parker")
            // Relaxed: a snapshot for display.
            .field("woken", &self.inner.woken.load(Ordering::Relaxed))
            .finish()
    }
}

impl Selector for Parker {
    fn new() -> Self {
        let inner = Arc::new(ParkInner {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let waker = Waker::from(inner.clone());
        Self { inner, waker }
    }

    fn begin(&mut self) {
        // Relaxed: a wake-up after this store sets the flag again (Release) and `wait` reads
        // it with Acquire; one before it belongs to an earlier round.
        self.inner.woken.store(false, Ordering::Relaxed);
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        // Acquire: pairs with the Release store in `wake`.
        while !self.inner.woken.swap(false, Ordering::Acquire) {
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return;
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        *self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // Acquire: as in `wait`. Checked after storing the task waker: a wake-up either
        // comes after the store (and wakes the task) or before this swap (which sees it).
        if self.inner.woken.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What a select round does with each operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Perform it (select).
    Perform,
    /// Only look whether it is ready (ready).
    Look,
}

/// One registered operation, type-erased so a select can hold receivers and senders of
/// different message types.
trait Op<S: Selector> {
    fn attempt(&mut self, mode: Mode) -> bool;
    fn watch(&mut self, sel: &mut S);
    fn unwatch(&mut self, sel: &mut S, fired: bool);
    fn ready_at(&self) -> Option<Instant>;
    /// The address of the registered handle, to check the one passed at completion.
    fn handle(&self) -> *const ();
    /// Moves the result into `out`, which must be `&mut Option<Result<..>>` of this
    /// operation's result type; `false` if it is not.
    fn take(&mut self, out: &mut dyn Any) -> bool;
}

struct RecvOp<'a, T, R: ?Sized> {
    rx: &'a R,
    key: Option<usize>,
    result: Option<Result<T, RecvError>>,
}

impl<T: 'static, S: Selector, R: SelectRecv<T, S> + ?Sized> Op<S> for RecvOp<'_, T, R> {
    fn attempt(&mut self, mode: Mode) -> bool {
        if mode == Mode::Look {
            return self.rx.recv_ready();
        }
        let result = match self.rx.select_try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => Err(RecvError::Disconnected),
            Err(TryRecvError::Invalid(e)) => Err(RecvError::Invalid(e)),
        };
        self.result = Some(result);
        true
    }

    fn watch(&mut self, sel: &mut S) {
        self.rx.watch_recv(sel, &mut self.key);
    }

    fn unwatch(&mut self, sel: &mut S, fired: bool) {
        self.rx.unwatch_recv(sel, &mut self.key, fired);
    }

    fn ready_at(&self) -> Option<Instant> {
        self.rx.ready_at()
    }

    fn handle(&self) -> *const () {
        std::ptr::from_ref(self.rx).cast()
    }

    fn take(&mut self, out: &mut dyn Any) -> bool {
        match out.downcast_mut::<Option<Result<T, RecvError>>>() {
            Some(out) => {
                *out = self.result.take();
                true
            }
            None => false,
        }
    }
}

struct SendOp<'a, T, W: ?Sized> {
    tx: &'a W,
    slot: &'a mut Option<T>,
    key: Option<usize>,
    result: Option<Result<(), SendError<T>>>,
}

impl<T: 'static, S: Selector, W: SelectSend<T, S> + ?Sized> Op<S> for SendOp<'_, T, W> {
    fn attempt(&mut self, mode: Mode) -> bool {
        if mode == Mode::Look {
            return self.slot.is_some() && self.tx.send_ready();
        }
        // An empty slot (a value already sent by an earlier select) is never ready.
        let Some(value) = self.slot.take() else {
            return false;
        };
        let result = match self.tx.select_try_send(value) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(v)) => {
                *self.slot = Some(v);
                return false;
            }
            Err(TrySendError::Disconnected(v)) => Err(SendError::Disconnected(v)),
            Err(TrySendError::Invalid(v, e)) => Err(SendError::Invalid(v, e)),
        };
        self.result = Some(result);
        true
    }

    fn watch(&mut self, sel: &mut S) {
        self.tx.watch_send(sel, &mut self.key);
    }

    fn unwatch(&mut self, sel: &mut S, fired: bool) {
        self.tx.unwatch_send(sel, &mut self.key, fired);
    }

    fn ready_at(&self) -> Option<Instant> {
        None
    }

    fn handle(&self) -> *const () {
        std::ptr::from_ref(self.tx).cast()
    }

    fn take(&mut self, out: &mut dyn Any) -> bool {
        match out.downcast_mut::<Option<Result<(), SendError<T>>>>() {
            Some(out) => {
                *out = self.result.take();
                true
            }
            None => false,
        }
    }
}

/// Waits on several channel operations and performs the first that is ready.
///
/// Register operations with [`recv`](Select::recv) and [`send`](Select::send) (each returns
/// the operation's index), then call [`select`](Select::select) (or its `try_`, `_timeout`,
/// `_deadline` and `_async` forms). The returned [`SelectedOperation`] says which operation
/// was performed ([`index`](SelectedOperation::index)) and hands over its result
/// ([`recv`](SelectedOperation::recv) / [`send`](SelectedOperation::send)). A `Select` can be
/// used for several selects in a row.
///
/// ```
/// use std::time::Duration;
/// use uniconc::select::Select;
/// use uniconc::{Backend, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx1, rx1) = B::channel::<u32>(1)?;
/// let (tx2, rx2) = B::channel::<String>(1)?;
/// tx2.send("two".to_string())?;
///
/// let mut sel = Select::new();
/// let one = sel.recv(&rx1);
/// let two = sel.recv(&rx2);
/// let oper = sel.select_timeout(Duration::from_secs(5))?;
/// match oper.index() {
///     i if i == one => println!("{}", oper.recv(&rx1)?),
///     i if i == two => assert_eq!(oper.recv(&rx2)?, "two"),
///     _ => unreachable!(),
/// }
/// # drop(tx1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Select<'a, S: Selector> {
    /// `Send`, so that a task can hold a select across `select_async().await` and still be
    /// spawned: every operation holds a `Sync` handle and `Send` values.
    ops: Ops<'a, S>,
}

impl<S: Selector> fmt::Debug for Select<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.ops.len())
            .finish()
    }
}

impl<S: Selector> Default for Select<'_, S> {
    fn default() -> Self {
        Self::new()
    }
}

/// A select's wait ended at its deadline with no operation ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectTimeoutError;

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting on a select")
    }
}

impl std::error::Error for SelectTimeoutError {}

/// No operation of a [`Select::try_select`] or [`Select::try_ready`] was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrySelectError;

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation of the select was ready")
    }
}

impl std::error::Error for TrySelectError {}

/// Converts with `?` into [`Error`](crate::Error): kind `Timeout`.
impl From<SelectTimeoutError> for crate::Error {
    fn from(e: SelectTimeoutError) -> Self {
        Self::wrap(crate::ErrorKind::Timeout, e)
    }
}

/// Converts with `?` into [`Error`](crate::Error): kind `WouldBlock`.
impl From<TrySelectError> for crate::Error {
    fn from(e: TrySelectError) -> Self {
        Self::wrap(crate::ErrorKind::WouldBlock, e)
    }
}

impl<'a, S: Selector> Select<'a, S> {
    /// An empty select.
    pub fn new() -> Self {
        Self { ops: Ops::new() }
    }

    /// Adds a receive from `rx` (a channel's receiver or a timer); returns its index.
    pub fn recv<T: Send + 'static, R: SelectRecv<T, S> + Sync + ?Sized>(
        &mut self,
        rx: &'a R,
    ) -> usize {
        self.ops.push(RecvOp {
            rx,
            key: None,
            result: None,
        });
        self.ops.len() - 1
    }

    /// Adds a send of the value in `slot` to `tx`; returns its index. If this send is
    /// performed, the slot is emptied (the value is in the channel, or in the error); if
    /// another operation is, the value stays in the slot. An empty slot never fires.
    pub fn send<T: Send + 'static, W: SelectSend<T, S> + Sync + ?Sized>(
        &mut self,
        tx: &'a W,
        slot: &'a mut Option<T>,
    ) -> usize {
        self.ops.push(SendOp {
            tx,
            slot,
            key: None,
            result: None,
        });
        self.ops.len() - 1
    }

    /// Removes the operation at `index`; the indexes of the others do not change (it simply
    /// never fires again).
    ///
    /// # Panics
    /// If `index` was not returned by this select.
    pub fn remove(&mut self, index: usize) {
        assert!(
            index < self.ops.len(),
            "no operation {index} in this select"
        );
        self.ops.replace(index, Removed);
    }

    /// Blocks until one operation is ready and performs it.
    ///
    /// With no operation registered, blocks forever (as crossbeam does).
    pub fn select(&mut self) -> SelectedOperation<'_, 'a, S> {
        let index = self
            .run(Mode::Perform, true, None)
            .expect("a select without a deadline ends only with an operation");
        self.selected(index)
    }

    /// Performs one operation that is ready now, if any.
    ///
    /// # Errors
    /// [`TrySelectError`] if none was ready.
    pub fn try_select(&mut self) -> Result<SelectedOperation<'_, 'a, S>, TrySelectError> {
        match self.run(Mode::Perform, false, None) {
            Some(index) => Ok(self.selected(index)),
            None => Err(TrySelectError),
        }
    }

    /// As [`select`](Select::select), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'_, 'a, S>, SelectTimeoutError> {
        self.select_deadline_opt(deadline_after(timeout))
    }

    /// As [`select`](Select::select), waiting until `deadline`. A deadline already past still
    /// performs an operation that is ready.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn select_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<SelectedOperation<'_, 'a, S>, SelectTimeoutError> {
        self.select_deadline_opt(Some(deadline))
    }

    fn select_deadline_opt(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<SelectedOperation<'_, 'a, S>, SelectTimeoutError> {
        match self.run(Mode::Perform, true, deadline) {
            Some(index) => Ok(self.selected(index)),
            None => Err(SelectTimeoutError),
        }
    }

    /// Blocks until one operation is ready and returns its index, without performing it. A
    /// hint: by the time you perform it, another unit may have taken the message or the room
    /// (use the operation's `try_` form).
    pub fn ready(&mut self) -> usize {
        self.run(Mode::Look, true, None)
            .expect("a wait without a deadline ends only with an operation")
    }

    /// The index of an operation that is ready now, if any; a hint, as [`ready`](Select::ready).
    ///
    /// # Errors
    /// [`TrySelectError`] if none was ready.
    pub fn try_ready(&mut self) -> Result<usize, TrySelectError> {
        self.run(Mode::Look, false, None).ok_or(TrySelectError)
    }

    /// As [`ready`](Select::ready), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, SelectTimeoutError> {
        self.run(Mode::Look, true, deadline_after(timeout))
            .ok_or(SelectTimeoutError)
    }

    /// As [`ready`](Select::ready), waiting until `deadline`.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation became ready in time.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, SelectTimeoutError> {
        self.run(Mode::Look, true, Some(deadline))
            .ok_or(SelectTimeoutError)
    }

    /// As [`select`](Select::select), waiting without blocking the executor. Cancel-safe:
    /// dropping the future before it completes performs no operation.
    pub fn select_async(&mut self) -> SelectFuture<'_, 'a, S> {
        SelectFuture {
            sel: Some(self),
            selector: None,
            watching: false,
            start: None,
            timer: None,
        }
    }

    fn selected(&mut self, index: usize) -> SelectedOperation<'_, 'a, S> {
        SelectedOperation {
            sel: self,
            index,
            completed: false,
        }
    }

    /// Tries every operation once, starting at `start` and wrapping around; the index of the
    /// first that fired.
    fn attempt_all(&mut self, mode: Mode, start: usize) -> Option<usize> {
        let n = self.ops.len();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.ops.get_mut(i).attempt(mode))
    }

    /// The earliest instant a timer of this select fires, if any, bounded by `deadline`.
    fn wake_at(&self, deadline: Option<Instant>) -> Option<Instant> {
        self.ops
            .iter()
            .filter_map(|op| op.ready_at())
            .chain(deadline)
            .min()
    }

    fn unwatch_all(&mut self, sel: &mut S, fired: Option<usize>) {
        for (i, op) in self.ops.iter_mut().enumerate() {
            op.unwatch(sel, fired == Some(i));
        }
    }

    /// The select loop: try, spin a little, then register, re-check, sleep, until an
    /// operation fires or `deadline` passes. `None` on timeout (or when `block` is false and
    /// nothing was ready).
    fn run(&mut self, mode: Mode, block: bool, deadline: Option<Instant>) -> Option<usize> {
        let start = random_below(self.ops.len().max(1));
        if let Some(i) = self.attempt_all(mode, start) {
            return Some(i);
        }
        if !block {
            return None;
        }
        // Spin briefly before sleeping, as a blocking `recv` does: a message a few hundred
        // nanoseconds away is taken without a sleep and a wake-up on each side.
        let spin_steps = if S::SPIN { SPIN_STEPS } else { 0 };
        for step in 0..spin_steps {
            if step < SPIN_STEPS / 2 {
                for _ in 0..(1 << step) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            if let Some(i) = self.attempt_all(mode, start) {
                return Some(i);
            }
        }
        let mut sel = S::new();
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            sel.begin();
            for op in self.ops.iter_mut() {
                op.watch(&mut sel);
            }
            let mut fired = self.attempt_all(mode, start);
            if fired.is_none() {
                sel.wait(self.wake_at(deadline));
                fired = self.attempt_all(mode, start);
            }
            self.unwatch_all(&mut sel, fired);
            if fired.is_some() {
                return fired;
            }
        }
    }
}

/// Rounds of tries (with growing pauses, then yields) before a select sleeps.
const SPIN_STEPS: u32 = 10;

/// An operation removed with [`Select::remove`]: never ready.
struct Removed;

impl<S: Selector> Op<S> for Removed {
    fn attempt(&mut self, _: Mode) -> bool {
        false
    }
    fn watch(&mut self, _: &mut S) {}
    fn unwatch(&mut self, _: &mut S, _: bool) {}
    fn ready_at(&self) -> Option<Instant> {
        None
    }
    fn handle(&self) -> *const () {
        std::ptr::null()
    }
    fn take(&mut self, _: &mut dyn Any) -> bool {
        false
    }
}

/// The operation a select performed: its [`index`](SelectedOperation::index), and its result
/// through [`recv`](SelectedOperation::recv) or [`send`](SelectedOperation::send).
///
/// # Panics
/// Dropping it without taking the result panics (a received message would be lost), as
/// crossbeam's `SelectedOperation` does.
#[must_use = "a selected operation's result must be taken with `recv` or `send`"]
pub struct SelectedOperation<'s, 'a, S: Selector> {
    sel: &'s mut Select<'a, S>,
    index: usize,
    completed: bool,
}

impl<S: Selector> fmt::Debug for SelectedOperation<'_, '_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish()
    }
}

impl<S: Selector> SelectedOperation<'_, '_, S> {
    /// The index (as returned by [`Select::recv`] or [`Select::send`]) of the operation
    /// performed.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The result of the receive that was performed: the message, or why there was none.
    ///
    /// # Errors
    /// `Disconnected` if the channel was empty and disconnected; `Invalid` if a message could
    /// not be decoded (process backend; it is consumed).
    ///
    /// # Panics
    /// If `rx` is not the receiver registered for the selected operation, or it was a send.
    pub fn recv<T: 'static, R: SelectRecv<T, S> + ?Sized>(
        mut self,
        rx: &R,
    ) -> Result<T, RecvError> {
        let mut out: Option<Result<T, RecvError>> = None;
        self.take(std::ptr::from_ref(rx).cast(), &mut out, "receiver");
        out.expect("the selected receive has a result")
    }

    /// The result of the send that was performed.
    ///
    /// # Errors
    /// `Disconnected(value)` if every receiver was gone or the channel was closed;
    /// `Invalid(value, _)` if the channel can never carry the value (process backend).
    ///
    /// # Panics
    /// If `tx` is not the sender registered for the selected operation, or it was a receive.
    pub fn send<T: 'static, W: SelectSend<T, S> + ?Sized>(
        mut self,
        tx: &W,
    ) -> Result<(), SendError<T>> {
        let mut out: Option<Result<(), SendError<T>>> = None;
        self.take(std::ptr::from_ref(tx).cast(), &mut out, "sender");
        out.expect("the selected send has a result")
    }

    fn take(&mut self, handle: *const (), out: &mut dyn Any, what: &str) {
        let op = self.sel.ops.get_mut(self.index);
        assert!(
            std::ptr::eq(op.handle(), handle),
            "passed a {what} that was not the selected operation's"
        );
        assert!(
            op.take(out),
            "the selected operation is not a {}",
            if what == "receiver" {
                "receive"
            } else {
                "send"
            }
        );
        self.completed = true;
    }
}

impl<S: Selector> Drop for SelectedOperation<'_, '_, S> {
    fn drop(&mut self) {
        if !self.completed && !std::thread::panicking() {
            panic!(
                "dropped a selected operation without taking its result (call `recv` or `send`)"
            );
        }
    }
}

/// The future of [`Select::select_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct SelectFuture<'s, 'a, S: Selector> {
    sel: Option<&'s mut Select<'a, S>>,
    /// Made on the first poll that finds nothing ready.
    selector: Option<S>,
    /// `true` while the operations are registered with `selector`.
    watching: bool,
    start: Option<usize>,
    timer: Option<Arc<TimerWake>>,
}

impl<S: Selector> fmt::Debug for SelectFuture<'_, '_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectFuture")
            .field("watching", &self.watching)
            .finish_non_exhaustive()
    }
}

// No field is structurally pinned: the selector is only used through `&mut`, never pinned.
impl<S: Selector> Unpin for SelectFuture<'_, '_, S> {}

impl<S: Selector> Drop for SelectFuture<'_, '_, S> {
    fn drop(&mut self) {
        // Cancelled while registered: pass on any wake-up this select was given.
        if let (true, Some(sel), Some(selector)) = (
            self.watching,
            self.sel.as_deref_mut(),
            self.selector.as_mut(),
        ) {
            sel.unwatch_all(selector, None);
        }
        if let Some(timer) = &self.timer {
            timers().cancel(timer);
        }
    }
}

impl<'s, 'a, S: Selector> Future for SelectFuture<'s, 'a, S> {
    type Output = SelectedOperation<'s, 'a, S>;

    /// Each poll: look (ending the previous round's registrations), then a new round —
    /// register, look again, and return `Pending` unless a wake-up already came.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = Pin::into_inner(self);
        match this.round(cx) {
            Some(index) => {
                let sel = this.sel.take().expect("completed once");
                Poll::Ready(SelectedOperation {
                    sel,
                    index,
                    completed: false,
                })
            }
            None => Poll::Pending,
        }
    }
}

impl<S: Selector> SelectFuture<'_, '_, S> {
    /// One poll's work: the index of the operation performed, or `None` (pending, registered).
    fn round(&mut self, cx: &mut Context<'_>) -> Option<usize> {
        let sel = self.sel.as_deref_mut().expect("polled after completion");
        let start = *self
            .start
            .get_or_insert_with(|| random_below(sel.ops.len().max(1)));
        let mut fired = sel.attempt_all(Mode::Perform, start);
        loop {
            if self.watching {
                let selector = self.selector.as_mut().expect("watching with a selector");
                sel.unwatch_all(selector, fired);
                self.watching = false;
            }
            if fired.is_some() {
                return fired;
            }
            let selector = self.selector.get_or_insert_with(S::new);
            selector.begin();
            for op in sel.ops.iter_mut() {
                op.watch(selector);
            }
            self.watching = true;
            fired = sel.attempt_all(Mode::Perform, start);
            if fired.is_some() {
                continue;
            }
            if let Some(at) = sel.wake_at(None) {
                let timer = self.timer.get_or_insert_with(Arc::default);
                timers().wake_at(at, timer, cx.waker());
            }
            if selector.poll_wait(cx).is_pending() {
                return None;
            }
            // Woken between the registration and now: look again.
            fired = sel.attempt_all(Mode::Perform, start);
        }
    }
}

// ---- operation storage -------------------------------------------------------------------

/// Operations kept without any allocation: a select of up to this many (the common case, and
/// every `select!` of up to this many arms) allocates nothing to register them.
const INLINE_OPS: usize = 4;

/// The operations of one select, in registration order (an operation's index is its
/// position). The first [`INLINE_OPS`] live inside the `Select` itself, the rest in a `Vec`;
/// each is stored unboxed when it fits [`OpSlot`]'s bytes (every channel receive or send of a
/// message up to ~40 bytes does), boxed otherwise.
struct Ops<'a, S: Selector> {
    first: [Option<OpSlot<'a, S>>; INLINE_OPS],
    rest: Vec<OpSlot<'a, S>>,
    len: usize,
}

impl<'a, S: Selector> Ops<'a, S> {
    fn new() -> Self {
        Self {
            first: [const { None }; INLINE_OPS],
            rest: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Adds `op` at index `len()`.
    fn push<O: Op<S> + Send + 'a>(&mut self, op: O) {
        let slot = OpSlot::new(op);
        match self.first.get_mut(self.len) {
            Some(free) => *free = Some(slot),
            None => self.rest.push(slot),
        }
        self.len += 1;
    }

    /// Replaces the operation at `index` (< `len()`), dropping the old one.
    fn replace<O: Op<S> + Send + 'a>(&mut self, index: usize, op: O) {
        *self.slot_mut(index) = OpSlot::new(op);
    }

    fn slot_mut(&mut self, index: usize) -> &mut OpSlot<'a, S> {
        match self.first.get_mut(index) {
            Some(slot) => slot.as_mut().expect("an index below len() is filled"),
            None => &mut self.rest[index - INLINE_OPS],
        }
    }

    fn get_mut(&mut self, index: usize) -> &mut (dyn Op<S> + Send + 'a) {
        self.slot_mut(index).op_mut()
    }

    fn iter(&self) -> impl Iterator<Item = &(dyn Op<S> + Send + 'a)> {
        self.first
            .iter()
            .map_while(Option::as_ref)
            .chain(&self.rest)
            .map(OpSlot::op)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut (dyn Op<S> + Send + 'a)> {
        self.first
            .iter_mut()
            .map_while(Option::as_mut)
            .chain(&mut self.rest)
            .map(OpSlot::op_mut)
    }
}

/// Bytes an operation is stored in without a box.
const OP_BYTES: usize = 64;

/// Raw, suitably aligned storage for one operation.
#[repr(C, align(16))]
struct OpBytes(MaybeUninit<[u8; OP_BYTES]>);

/// One operation of concrete type `O` (erased): stored in `bytes` when it fits, else a
/// `Box<O>` stored there.
///
/// Invariant: `bytes` holds an initialised value of the type `O` that `as_op` was
/// instantiated with (written by [`OpSlot::new`], dropped only by `Drop`). Moving an `OpSlot`
/// moves that value (no operation points into itself).
struct OpSlot<'a, S: Selector> {
    bytes: OpBytes,
    /// `as_op::<S, O>`: turns a pointer to `bytes` into a pointer to the `O` in them.
    as_op: fn(*mut OpBytes) -> *mut (dyn Op<S> + Send + 'a),
    /// Ownership, auto traits and variance of the `Box<dyn Op<S> + Send + 'a>` this stands
    /// for: it owns an `O` (drop check), is `Send` (every `O` is) and is not `Sync`.
    _owns: PhantomData<Box<dyn Op<S> + Send + 'a>>,
}

fn as_op<'a, S: Selector, O: Op<S> + Send + 'a>(p: *mut OpBytes) -> *mut (dyn Op<S> + Send + 'a) {
    p.cast::<O>()
}

impl<'a, S: Selector> OpSlot<'a, S> {
    fn new<O: Op<S> + Send + 'a>(op: O) -> Self {
        if Self::fits::<O>() {
            Self::store(op)
        } else {
            // Too big: boxed (a `Box<O>` always fits).
            Self::store(Box::new(op))
        }
    }

    fn fits<O>() -> bool {
        size_of::<O>() <= OP_BYTES && align_of::<O>() <= align_of::<OpBytes>()
    }

    fn store<O: Op<S> + Send + 'a>(op: O) -> Self {
        assert!(Self::fits::<O>(), "an operation stored inline fits");
        let mut bytes = OpBytes(MaybeUninit::uninit());
        // SAFETY: `bytes` is a local, valid for writes, and large and aligned enough for an
        // `O` (asserted just above).
        unsafe { (&raw mut bytes).cast::<O>().write(op) };
        Self {
            bytes,
            as_op: as_op::<S, O>,
            _owns: PhantomData,
        }
    }

    fn op(&self) -> &(dyn Op<S> + Send + 'a) {
        // SAFETY: by the invariant, `bytes` holds an initialised `O` and `as_op` points at
        // it; the shared borrow of `self` keeps it alive and unmutated for the returned
        // lifetime (the pointer is only read through).
        unsafe { &*(self.as_op)((&raw const self.bytes).cast_mut()) }
    }

    fn op_mut(&mut self) -> &mut (dyn Op<S> + Send + 'a) {
        // SAFETY: as in `op`, and the exclusive borrow of `self` makes it exclusive.
        unsafe { &mut *(self.as_op)(&raw mut self.bytes) }
    }
}

impl<S: Selector> Drop for OpSlot<'_, S> {
    fn drop(&mut self) {
        // SAFETY: by the invariant, `bytes` holds an initialised `O`; it is dropped once,
        // here, and never used again.
        unsafe { std::ptr::drop_in_place((self.as_op)(&raw mut self.bytes)) };
    }
}

/// A boxed operation (one too big for [`OpSlot`]'s bytes) is an operation.
impl<S: Selector, O: Op<S>> Op<S> for Box<O> {
    fn attempt(&mut self, mode: Mode) -> bool {
        (**self).attempt(mode)
    }
    fn watch(&mut self, sel: &mut S) {
        (**self).watch(sel);
    }
    fn unwatch(&mut self, sel: &mut S, fired: bool) {
        (**self).unwatch(sel, fired);
    }
    fn ready_at(&self) -> Option<Instant> {
        (**self).ready_at()
    }
    fn handle(&self) -> *const () {
        (**self).handle()
    }
    fn take(&mut self, out: &mut dyn Any) -> bool {
        (**self).take(out)
    }
}

// ---- timers ------------------------------------------------------------------------------

/// A receiver that delivers the current time once, when `duration` has passed; then never
/// again. The select form of a timeout arm:
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, select};
///
/// type B = uniconc::thread::Thread;
/// let (_tx, rx) = B::channel::<u32>(1)?;
/// let timeout = select::after(Duration::from_millis(10));
/// let fired = uniconc::select! {
///     recv(rx) -> msg => Some(msg?),
///     recv(timeout) -> _ => None,
/// };
/// assert_eq!(fired, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn after(duration: Duration) -> Timer {
    let at = Instant::now().checked_add(duration);
    Timer {
        next: Mutex::new(at),
        period: None,
    }
}

/// A receiver that delivers the current time every `period`, first after one `period`. A
/// tick missed while nobody received is delivered once, late, and the next one is a full
/// period after it (ticks do not pile up), as crossbeam's `tick`.
pub fn tick(period: Duration) -> Timer {
    Timer {
        next: Mutex::new(Instant::now().checked_add(period)),
        period: Some(period),
    }
}

/// A receiver that never delivers anything: an arm that can be switched off (an `Option`
/// of a receiver with `None` replaced by `never()`).
pub fn never() -> Timer {
    Timer {
        next: Mutex::new(None),
        period: None,
    }
}

/// A timer receiver, made by [`after`], [`tick`] or [`never`](fn@never); it works in the select
/// of every backend, and on its own ([`recv`](Timer::recv), [`try_recv`](Timer::try_recv)).
pub struct Timer {
    /// When it next fires; `None`: never (again).
    next: Mutex<Option<Instant>>,
    period: Option<Duration>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field(
                "next",
                &*self.next.lock().unwrap_or_else(PoisonError::into_inner),
            )
            .field("period", &self.period)
            .finish()
    }
}

impl Timer {
    /// The time now, if the timer is due; `Empty` if not yet (or never).
    ///
    /// # Errors
    /// `Empty` if the timer is not due.
    pub fn try_recv(&self) -> Result<Instant, TryRecvError> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match *next {
            Some(at) if at <= now => {
                *next = self.period.and_then(|p| now.checked_add(p));
                Ok(now)
            }
            _ => Err(TryRecvError::Empty),
        }
    }

    /// Blocks until the timer is due and returns the time then. A timer that will not fire
    /// again ([`never`](fn@never), or an [`after`] that already fired) blocks forever, as
    /// crossbeam's do.
    pub fn recv(&self) -> Instant {
        loop {
            if let Ok(now) = self.try_recv() {
                return now;
            }
            match self.due() {
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }
    }

    fn due(&self) -> Option<Instant> {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Selector> SelectRecv<Instant, S> for Timer {
    fn select_try_recv(&self) -> Result<Instant, TryRecvError> {
        self.try_recv()
    }

    fn recv_ready(&self) -> bool {
        self.due().is_some_and(|at| at <= Instant::now())
    }

    fn watch_recv(&self, _: &mut S, _: &mut Option<usize>) {}

    fn unwatch_recv(&self, _: &mut S, _: &mut Option<usize>, _: bool) {}

    fn ready_at(&self) -> Option<Instant> {
        self.due()
    }
}

/// Wakes a task at an instant, for the timers of a [`Select::select_async`]: one thread per
/// process, started on first use (and again in a forked child, which has no threads).
struct Timers {
    state: Mutex<TimerState>,
    cv: Condvar,
}

#[derive(Default)]
struct TimerState {
    /// The pid the thread serving this queue runs in (0: none yet).
    pid: u32,
    /// At most one entry per select future.
    queue: Vec<(Instant, Arc<TimerWake>)>,
}

/// One select future's timer: the waker of its latest poll.
#[derive(Default)]
struct TimerWake {
    waker: Mutex<Option<Waker>>,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    TIMERS.get_or_init(|| Timers {
        state: Mutex::new(TimerState::default()),
        cv: Condvar::new(),
    })
}

impl Timers {
    /// Wakes `waker` at `at` (replacing `entry`'s earlier registration).
    fn wake_at(&'static self, at: Instant, entry: &Arc<TimerWake>, waker: &Waker) {
        *entry.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.queue.retain(|(_, e)| !Arc::ptr_eq(e, entry));
        st.queue.push((at, entry.clone()));
        if st.pid != std::process::id() {
            st.pid = std::process::id();
            std::thread::Builder::new()
                .name("uniconc-select-timers".into())
                .spawn(move || self.serve())
                .expect("starting the select timer thread");
        }
        self.cv.notify_one();
    }

    fn cancel(&self, entry: &Arc<TimerWake>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.queue.retain(|(_, e)| !Arc::ptr_eq(e, entry));
    }

    fn serve(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            st.queue.retain(|(at, e)| {
                let keep = *at > now;
                if !keep {
                    due.push(e.clone());
                }
                keep
            });
            if !due.is_empty() {
                drop(st);
                for e in due {
                    let waker = e
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st = match st.queue.iter().map(|(at, _)| *at).min() {
                Some(at) => {
                    self.cv
                        .wait_timeout(st, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.cv.wait(st).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

// ---- randomness --------------------------------------------------------------------------

/// A random number below `n` (n > 0), from a per-thread xorshift generator: the random start
/// that makes a select fair.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // Seed from the clock and this thread's stack address (distinct per thread).
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = t ^ (std::ptr::from_ref(s) as u64).rotate_left(32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        // Multiply-shift: an unbiased-enough index without a division.
        ((u128::from(x) * n as u128) >> 64) as usize
    })
}

/// Waits on several channel operations and runs the arm of the first that is ready: the
/// [`Select`] builder in the shape of crossbeam's `select!`.
///
/// Arms, separated by commas (an arm whose body is a block needs none):
///
/// - `recv(rx) -> result => body`: `rx` is a receiver or a timer ([`after`](crate::select::after),
///   [`tick`](crate::select::tick), [`never`](crate::select::never)); `result` is a pattern for
///   the `Result<T, RecvError>`;
/// - `send(tx, value) -> result => body`: `result` is a pattern for the
///   `Result<(), SendError<T>>`; `value` is evaluated before waiting and dropped if another arm
///   fires (use [`Select::send`](crate::select::Select::send) to keep it);
/// - at most one of `default => body` (run when nothing is ready now) or
///   `default(timeout) => body` (when nothing became ready within `timeout`), last.
///
/// The arms' bodies are ordinary code of the enclosing function: `break`, `continue`, `return`
/// and `?` work in them. The whole `select!` is an expression: the value of the arm that ran.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (jobs_tx, jobs) = B::channel::<u64>(16)?;
/// let (results_tx, results) = B::channel::<u64>(16)?;
/// let (stop_tx, stop) = B::channel::<()>(1)?;
///
/// let worker = B::spawn(move || {
///     let mut handled = 0;
///     loop {
///         uniconc::select! {
///             recv(jobs) -> job => match job {
///                 Ok(n) => {
///                     results_tx.send(n * n).unwrap();
///                     handled += 1;
///                 }
///                 Err(_) => break, // every producer gone
///             },
///             recv(stop) -> _ => break,
///             default(Duration::from_secs(10)) => break, // idle too long
///         }
///     }
///     handled
/// })?;
/// jobs_tx.send_batch([1, 2, 3])?;
/// assert_eq!(results.iter().take(3).sum::<u64>(), 1 + 4 + 9);
/// stop_tx.send(())?;
/// assert_eq!(worker.join()?, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! select {
    // A comma left after a block body.
    (@arms $names:tt $regs:tt $handlers:tt $default:tt , $($rest:tt)*) => {
        $crate::select!(@arms $names $regs $handlers $default $($rest)*)
    };

    // recv arms: bind the receiver (its temporaries live as long as the whole select), queue
    // its registration and its handler.
    (@arms ($sel:ident $oper:ident) [$($reg:tt)*] [$($h:tt)*] ()
        recv($rx:expr) -> $res:pat => $body:block $($rest:tt)*) => {{
        let __uniconc_handle = &$rx;
        $crate::select!(@arms ($sel $oper)
            [$($reg)* let __uniconc_index = $sel.recv(__uniconc_handle);]
            [$($h)* if $oper.index() == __uniconc_index {
                let $res = $oper.recv(__uniconc_handle);
                $body
            } else]
            () $($rest)*)
    }};
    (@arms $names:tt $regs:tt $handlers:tt ()
        recv($rx:expr) -> $res:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::select!(@arms $names $regs $handlers ()
            recv($rx) -> $res => { $body } $($($rest)*)?)
    };

    // send arms: the value waits in a slot of its own.
    (@arms ($sel:ident $oper:ident) [$($reg:tt)*] [$($h:tt)*] ()
        send($tx:expr, $value:expr) -> $res:pat => $body:block $($rest:tt)*) => {{
        let __uniconc_handle = &$tx;
        let mut __uniconc_slot = ::core::option::Option::Some($value);
        $crate::select!(@arms ($sel $oper)
            [$($reg)* let __uniconc_index = $sel.send(__uniconc_handle, &mut __uniconc_slot);]
            [$($h)* if $oper.index() == __uniconc_index {
                let $res = $oper.send(__uniconc_handle);
                $body
            } else]
            () $($rest)*)
    }};
    (@arms $names:tt $regs:tt $handlers:tt ()
        send($tx:expr, $value:expr) -> $res:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::select!(@arms $names $regs $handlers ()
            send($tx, $value) -> $res => { $body } $($($rest)*)?)
    };

    // default arms, last.
    (@arms $names:tt $regs:tt $handlers:tt () default => $body:block $(,)?) => {
        $crate::select!(@arms $names $regs $handlers (now $body))
    };
    (@arms $names:tt $regs:tt $handlers:tt () default => $body:expr $(,)?) => {
        $crate::select!(@arms $names $regs $handlers (now { $body }))
    };
    (@arms $names:tt $regs:tt $handlers:tt ()
        default($timeout:expr) => $body:block $(,)?) => {
        $crate::select!(@arms $names $regs $handlers (within ($timeout) $body))
    };
    (@arms $names:tt $regs:tt $handlers:tt ()
        default($timeout:expr) => $body:expr $(,)?) => {
        $crate::select!(@arms $names $regs $handlers (within ($timeout) { $body }))
    };

    // The end: register everything, select, run the selected arm.
    (@arms ($sel:ident $oper:ident) [$($reg:tt)*] [$($h:tt)*] ()) => {{
        let mut $sel = $crate::select::Select::new();
        $($reg)*
        let $oper = $sel.select();
        $($h)* { ::core::unreachable!("a select ran an operation it did not register") }
    }};
    (@arms ($sel:ident $oper:ident) [$($reg:tt)*] [$($h:tt)*] (now $body:block)) => {{
        let mut $sel = $crate::select::Select::new();
        $($reg)*
        match $sel.try_select() {
            ::core::result::Result::Ok($oper) => {
                $($h)* { ::core::unreachable!("a select ran an operation it did not register") }
            }
            ::core::result::Result::Err(_) => $body,
        }
    }};
    (@arms ($sel:ident $oper:ident) [$($reg:tt)*] [$($h:tt)*]
        (within ($timeout:expr) $body:block)) => {{
        let mut $sel = $crate::select::Select::new();
        $($reg)*
        match $sel.select_timeout($timeout) {
            ::core::result::Result::Ok($oper) => {
                $($h)* { ::core::unreachable!("a select ran an operation it did not register") }
            }
            ::core::result::Result::Err(_) => $body,
        }
    }};

    // Entry (last, so the internal rules above match first): the select's and the selected
    // operation's names, made once here so every step refers to the same bindings.
    ($($arms:tt)+) => {
        $crate::select!(@arms (__uniconc_sel __uniconc_oper) [] [] () $($arms)+)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy channel of `u32`s for the select loop's own tests: a Mutex<VecDeque> with a
    /// capacity and wakers, selectable with a Parker.
    #[derive(Default)]
    struct Toy {
        q: Mutex<ToyState>,
    }

    #[derive(Default)]
    struct ToyState {
        items: std::collections::VecDeque<u32>,
        cap: usize,
        closed: bool,
        wakers: Vec<Waker>,
    }

    impl Toy {
        fn new(cap: usize) -> Self {
            let t = Self::default();
            t.q.lock().unwrap().cap = cap;
            t
        }

        fn push(&self, v: u32) {
            let wakers = {
                let mut q = self.q.lock().unwrap();
                q.items.push_back(v);
                std::mem::take(&mut q.wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }

        fn close(&self) {
            let wakers = {
                let mut q = self.q.lock().unwrap();
                q.closed = true;
                std::mem::take(&mut q.wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    impl SelectRecv<u32, Parker> for Toy {
        fn select_try_recv(&self) -> Result<u32, TryRecvError> {
            let mut q = self.q.lock().unwrap();
            match q.items.pop_front() {
                Some(v) => Ok(v),
                None if q.closed => Err(TryRecvError::Disconnected),
                None => Err(TryRecvError::Empty),
            }
        }
        fn recv_ready(&self) -> bool {
            let q = self.q.lock().unwrap();
            !q.items.is_empty() || q.closed
        }
        fn watch_recv(&self, sel: &mut Parker, _: &mut Option<usize>) {
            self.q.lock().unwrap().wakers.push(sel.waker().clone());
        }
        fn unwatch_recv(&self, _: &mut Parker, _: &mut Option<usize>, _: bool) {}
    }

    impl SelectSend<u32, Parker> for Toy {
        fn select_try_send(&self, value: u32) -> Result<(), TrySendError<u32>> {
            let mut q = self.q.lock().unwrap();
            if q.closed {
                Err(TrySendError::Disconnected(value))
            } else if q.items.len() >= q.cap {
                Err(TrySendError::Full(value))
            } else {
                q.items.push_back(value);
                Ok(())
            }
        }
        fn send_ready(&self) -> bool {
            let q = self.q.lock().unwrap();
            q.closed || q.items.len() < q.cap
        }
        fn watch_send(&self, sel: &mut Parker, _: &mut Option<usize>) {
            self.q.lock().unwrap().wakers.push(sel.waker().clone());
        }
        fn unwatch_send(&self, _: &mut Parker, _: &mut Option<usize>, _: bool) {}
    }

    #[test]
    fn takes_the_ready_one_and_leaves_the_other() {
        let (a, b) = (Toy::new(4), Toy::new(4));
        b.push(2);
        let mut sel = Select::<Parker>::new();
        let ia = sel.recv(&a);
        let ib = sel.recv(&b);
        let oper = sel.try_select().unwrap();
        assert_eq!(oper.index(), ib);
        assert_eq!(oper.recv(&b), Ok(2));
        assert!(sel.try_select().is_err());
        a.push(1);
        let oper = sel.select();
        assert_eq!(oper.index(), ia);
        assert_eq!(oper.recv(&a), Ok(1));
    }

    #[test]
    fn a_send_keeps_its_value_when_another_fires() {
        let (full, rx) = (Toy::new(1), Toy::new(1));
        full.push(0);
        rx.push(9);
        let mut value = Some(5);
        {
            let mut sel = Select::<Parker>::new();
            let is = sel.send(&full, &mut value);
            let ir = sel.recv(&rx);
            let oper = sel.select();
            assert_eq!(oper.index(), ir);
            assert_ne!(is, ir);
            assert_eq!(oper.recv(&rx), Ok(9));
        }
        assert_eq!(value, Some(5));
        full.select_try_recv().unwrap();
        let mut sel = Select::<Parker>::new();
        let is = sel.send(&full, &mut value);
        let oper = sel.select();
        assert_eq!(oper.index(), is);
        assert_eq!(oper.send(&full), Ok(()));
        drop(sel);
        assert_eq!(value, None);
    }

    #[test]
    fn wakes_on_a_message_from_another_thread() {
        let (a, b) = (Arc::new(Toy::new(4)), Arc::new(Toy::new(4)));
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b2.push(7);
        });
        let mut sel = Select::<Parker>::new();
        sel.recv(&*a);
        let ib = sel.recv(&*b);
        let oper = sel.select_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(oper.index(), ib);
        assert_eq!(oper.recv(&*b), Ok(7));
        t.join().unwrap();
    }

    #[test]
    fn disconnection_is_a_result_and_timeouts_end_the_wait() {
        let (a, b) = (Toy::new(1), Toy::new(1));
        let mut sel = Select::<Parker>::new();
        sel.recv(&a);
        let ib = sel.recv(&b);
        assert_eq!(
            sel.select_timeout(Duration::from_millis(10)).unwrap_err(),
            SelectTimeoutError
        );
        b.close();
        let oper = sel.select();
        assert_eq!(oper.index(), ib);
        assert_eq!(oper.recv(&b), Err(RecvError::Disconnected));
    }

    #[test]
    fn timers_fire_in_a_select() {
        let a = Toy::new(1);
        let t = after(Duration::from_millis(5));
        let n = never();
        let mut sel = Select::<Parker>::new();
        sel.recv(&a);
        sel.recv(&n);
        let it = sel.recv(&t);
        let oper = sel.select();
        assert_eq!(oper.index(), it);
        assert!(oper.recv(&t).is_ok());
        // An `after` fires once.
        assert!(
            sel.select_timeout(Duration::from_millis(10)).is_err(),
            "fired twice"
        );
    }

    #[test]
    fn fair_over_many_rounds() {
        let (a, b) = (Toy::new(usize::MAX), Toy::new(usize::MAX));
        let mut counts = [0u32; 2];
        for i in 0..10_000 {
            a.push(i);
            b.push(i);
            let mut sel = Select::<Parker>::new();
            let ia = sel.recv(&a);
            sel.recv(&b);
            let oper = sel.select();
            let k = usize::from(oper.index() != ia);
            let _ = if k == 0 { oper.recv(&a) } else { oper.recv(&b) };
            counts[k] += 1;
        }
        assert!(counts.iter().all(|&c| c > 4_000), "{counts:?}");
    }

    #[test]
    #[should_panic(expected = "not the selected operation")]
    fn completing_with_another_handle_panics() {
        let (a, b) = (Toy::new(1), Toy::new(1));
        a.push(1);
        let mut sel = Select::<Parker>::new();
        sel.recv(&a);
        let oper = sel.select();
        let _ = oper.recv(&b);
    }

    /// A receiver of messages too big to be stored unboxed: always ready.
    struct Big;

    impl SelectRecv<[u64; 16], Parker> for Big {
        fn select_try_recv(&self) -> Result<[u64; 16], TryRecvError> {
            Ok([7; 16])
        }
        fn recv_ready(&self) -> bool {
            true
        }
        fn watch_recv(&self, _: &mut Parker, _: &mut Option<usize>) {}
        fn unwatch_recv(&self, _: &mut Parker, _: &mut Option<usize>, _: bool) {}
    }

    #[test]
    fn many_operations_and_big_messages_are_stored_too() {
        // More operations than are kept inline, and one too big for an unboxed slot.
        let nevers: Vec<Timer> = (0..6).map(|_| never()).collect();
        let (a, big) = (Toy::new(1), Big);
        let mut sel = Select::<Parker>::new();
        for n in &nevers {
            sel.recv(n);
        }
        let ia = sel.recv(&a);
        let ib = sel.recv(&big);
        assert_eq!((ia, ib), (6, 7));
        let oper = sel.select();
        assert_eq!(oper.index(), ib);
        assert_eq!(oper.recv(&big), Ok([7; 16]));
        sel.remove(ib);
        a.push(5);
        let oper = sel.select();
        assert_eq!(oper.index(), ia);
        assert_eq!(oper.recv(&a), Ok(5));
        sel.remove(0);
        assert!(sel.try_select().is_err());
        assert!(format!("{sel:?}").contains("operations: 8"));
    }

    /// A receiver that hands out clones of one `Arc`: always ready.
    struct Clones(Arc<()>);

    impl SelectRecv<Arc<()>, Parker> for Clones {
        fn select_try_recv(&self) -> Result<Arc<()>, TryRecvError> {
            Ok(self.0.clone())
        }
        fn recv_ready(&self) -> bool {
            true
        }
        fn watch_recv(&self, _: &mut Parker, _: &mut Option<usize>) {}
        fn unwatch_recv(&self, _: &mut Parker, _: &mut Option<usize>, _: bool) {}
    }

    #[test]
    fn a_result_never_taken_is_dropped_with_the_select() {
        let marker = Arc::new(());
        let rx = Clones(marker.clone());
        let mut sel = Select::<Parker>::new();
        sel.recv(&rx);
        // A panic between the select and the taking of its result: the message stays in the
        // operation, and must be dropped (once) with the select.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _oper = sel.select();
            panic!("before the result was taken");
        }));
        assert!(r.is_err());
        assert_eq!(
            Arc::strong_count(&marker),
            3,
            "the message is held by the operation"
        );
        drop(sel);
        assert_eq!(Arc::strong_count(&marker), 2);
    }

    #[test]
    fn the_macro_takes_references_and_send_arms() {
        let (a, full) = (Toy::new(4), Toy::new(1));
        full.push(0);
        let r = &a;
        let sent = crate::select! {
            send(full, 5) -> _ => unreachable!("full"),
            send(&a, 6) -> res => res.is_ok(),
        };
        assert!(sent);
        let got = crate::select! {
            recv(r) -> v => v,
            default => Err(RecvError::Disconnected),
        };
        assert_eq!(got, Ok(6));
        let got = crate::select! {
            recv(&a) -> v => v.ok(),
            default(Duration::from_millis(5)) => None,
        };
        assert_eq!(got, None);
    }

    #[test]
    fn a_select_and_its_future_are_send() {
        // A task holds both across `select_async().await`; spawning it needs `Send`.
        fn assert_send<T: Send>(_: &T) {}
        let (a, b) = (Toy::new(1), Toy::new(1));
        let mut slot = Some(1);
        let mut sel = Select::<Parker>::new();
        sel.recv(&a);
        sel.send(&b, &mut slot);
        assert_send(&sel);
        let fut = sel.select_async();
        assert_send(&fut);
    }

    #[test]
    fn ready_does_not_perform() {
        let a = Toy::new(1);
        a.push(3);
        let mut sel = Select::<Parker>::new();
        let ia = sel.recv(&a);
        assert_eq!(sel.ready(), ia);
        assert_eq!(a.select_try_recv(), Ok(3));
        assert!(sel.try_ready().is_err());
    }

    #[test]
    fn select_async_wakes_and_times() {
        let a = Arc::new(Toy::new(1));
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            a2.push(4);
        });
        let got = block_on(async {
            let mut sel = Select::<Parker>::new();
            let ia = sel.recv(&*a);
            let oper = sel.select_async().await;
            assert_eq!(oper.index(), ia);
            oper.recv(&*a)
        });
        assert_eq!(got, Ok(4));
        t.join().unwrap();
        let timer = after(Duration::from_millis(10));
        let fired = block_on(async {
            let mut sel = Select::<Parker>::new();
            sel.recv(&*a);
            let it = sel.recv(&timer);
            let oper = sel.select_async().await;
            oper.index() == it && oper.recv(&timer).is_ok()
        });
        assert!(fired);
    }

    /// The macro's arms take references to channels too (a function that borrows them).
    #[test]
    fn macro_arms_take_references() {
        fn first(a: &Toy, b: &Toy) -> u32 {
            crate::select! {
                recv(a) -> v => v.unwrap(),
                send(b, 1) -> _ => 0,
            }
        }
        let (a, b) = (Toy::new(1), Toy::new(1));
        b.push(0); // full: only the receive can fire
        a.push(5);
        assert_eq!(first(&a, &b), 5);
    }

    /// A minimal executor for the tests: polls on the calling thread, parks between polls.
    fn block_on<F: Future>(fut: F) -> F::Output {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }
}
