//! The channel contract: a multi-producer multi-consumer FIFO whose halves are both `Clone`.
//!
//! # Disconnection
//!
//! When every [`Sender`] is dropped (in every process, for the process backend), receivers drain
//! what is queued and then get `Disconnected`. When every [`Receiver`] is dropped, the
//! messages still queued are dropped at once, not when the last sender goes (on the process
//! backend `send` has already dropped the value it serialized), and `send` returns the value
//! inside `Disconnected`. [`Sender::close`] disconnects the channel for
//! everyone at once: receivers drain, then see `Disconnected`; senders get their value back.
//!
//! # Blocking, non-blocking, timed and async forms
//!
//! Each operation comes as a blocking call (`send`, `recv`), a `try_` form, a `_timeout` form
//! (implemented as a `_deadline`; a timeout too large for an `Instant` waits forever), and an
//! `_async` form returning a `Send` future that never blocks an executor thread and is
//! cancel-safe: dropping it before it completes loses no message.
//!
//! # Byte payloads written and read in place
//!
//! A channel of byte buffers (`T` a [`ByteMessage`]: `Vec<u8>` or `Box<[u8]>`) also offers
//! closure forms: [`Sender::send_with`] hands the closure the message's bytes to fill, and
//! [`Receiver::recv_with`] hands the closure the received bytes to read. On the process
//! backend these are the channel's shared memory itself: a large message is written once and
//! read once, with no encoding copy and no allocation. On the other backends they allocate a
//! `Vec`, which the channel moves without a copy.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{
    MessageError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use crate::time::deadline_after;

mod sealed {
    /// Keeps [`ByteMessage`](super::ByteMessage) to the types whose encoding a backend may
    /// write and read itself.
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for Box<[u8]> {}
}

/// A message that is one run of bytes: `Vec<u8>` or `Box<[u8]>` (sealed). Channels of these
/// offer [`Sender::send_with`] and [`Receiver::recv_with`], which write and read the bytes in
/// place. Both types are encoded alike, a length then the bytes.
///
/// ```
/// use uniconc::{Backend, ByteMessage, Receiver as _, Sender as _};
///
/// fn checksum<B: Backend, T: ByteMessage + uniconc::Message>(rx: &B::Receiver<T>) -> u64 {
///     rx.recv_with(|b| b.iter().map(|&x| u64::from(x)).sum()).unwrap_or(0)
/// }
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<Box<[u8]>>(1)?;
/// tx.send(vec![1, 2, 3].into_boxed_slice())?;
/// assert_eq!(checksum::<B, _>(&rx), 6);
/// assert_eq!(Vec::from_bytes(vec![7]).as_bytes(), [7]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ByteMessage: sealed::Sealed + Sized {
    /// The message holding `bytes` (no copy for `Vec<u8>`; `Box<[u8]>` drops spare capacity).
    fn from_bytes(bytes: Vec<u8>) -> Self;
    /// The message's bytes.
    fn as_bytes(&self) -> &[u8];
}

impl ByteMessage for Vec<u8> {
    #[inline]
    fn from_bytes(bytes: Vec<u8>) -> Self {
        bytes
    }
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl ByteMessage for Box<[u8]> {
    #[inline]
    fn from_bytes(bytes: Vec<u8>) -> Self {
        bytes.into_boxed_slice()
    }
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

/// The largest `len` the provided [`Sender::send_with`] forms allocate for (a `Vec` holds at
/// most `isize::MAX` bytes); a larger one is refused as `TooLarge`.
const ALLOC_LIMIT: usize = isize::MAX as usize;

/// The default closure send: a zeroed `Vec` of `len` bytes filled by `fill`, then `send`.
fn filled<T: ByteMessage>(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<T, MessageError> {
    if len > ALLOC_LIMIT {
        return Err(MessageError::TooLarge {
            size: len,
            limit: ALLOC_LIMIT,
        });
    }
    let mut bytes = vec![0u8; len];
    fill(&mut bytes);
    Ok(T::from_bytes(bytes))
}

/// The error of a send whose value the caller never held (a closure send): the value goes.
fn without_value<T>(e: SendTimeoutError<T>) -> SendTimeoutError<()> {
    match e {
        SendTimeoutError::Timeout(_) => SendTimeoutError::Timeout(()),
        SendTimeoutError::Disconnected(_) => SendTimeoutError::Disconnected(()),
        SendTimeoutError::Invalid(_, m) => SendTimeoutError::Invalid((), m),
    }
}

/// The sending half of a channel.
///
/// Cheap to clone; every clone sends into the same channel, from any unit: clones moved into
/// threads or tasks, or copied into forked processes (process backend). The channel stays
/// connected while any sender exists (in any process).
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u32>(8)?;
/// let producers = (0..3u32)
///     .map(|id| {
///         let tx = tx.clone();
///         B::spawn(move || tx.send(id).is_ok())
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// drop(tx); // the producers hold the only senders left
/// for p in producers {
///     assert!(p.join()?);
/// }
/// let mut got: Vec<u32> = rx.iter().collect(); // ends once every sender is gone
/// got.sort();
/// assert_eq!(got, [0, 1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Sender<T>: Clone + Send + Sync + 'static {
    /// Sends `value`, blocking while the channel is full (on the process backend, also while
    /// its byte budget is used up).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<String>(1)?;
    /// tx.send("hello".to_string())?;
    /// assert_eq!(rx.recv()?, "hello");
    ///
    /// drop(rx); // every receiver gone
    /// let err = tx.send("lost?".to_string()).unwrap_err();
    /// assert!(err.is_disconnected());
    /// assert_eq!(err.into_inner(), "lost?"); // no: the message comes back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected(value)` if every receiver is gone or the channel was closed;
    /// `Invalid(value, _)` if the channel can never carry it (process backend only: encoded
    /// larger than the channel's byte budget, or serialization failed).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`send_async`](Sender::send_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    ///
    /// Provided: [`send_deadline`](Sender::send_deadline) without a deadline (which reads no
    /// clock), its error narrowed to [`SendError`].
    #[inline]
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_deadline(value, None)
            .map_err(SendTimeoutError::into_untimed)
    }

    /// Sends every item of `items` in order, blocking as [`send`](Sender::send) does while the
    /// channel is full; returns how many were sent. Backends may move a batch faster than one
    /// `send` per item (fewer wake-ups, one lock or round trip for many messages).
    ///
    /// Nothing is lost when the channel disconnects part-way: the item that could not be sent
    /// comes back in the error, and the items after it stay in the iterator if you pass it by
    /// reference (`tx.send_batch(&mut items)` or `items.by_ref()`).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u64>(64)?;
    /// assert_eq!(tx.send_batch(0..10)?, 10);
    /// let mut got = Vec::new();
    /// assert_eq!(rx.recv_batch(&mut got, 64)?, 10); // up to 64, at least 1
    /// assert_eq!(got, (0..10).collect::<Vec<_>>());
    ///
    /// drop(rx);
    /// let mut rest = 20..25;
    /// let err = tx.send_batch(&mut rest).unwrap_err();
    /// assert_eq!(err.into_inner(), 20); // the item that could not go
    /// assert_eq!(rest, 21..25); // and the ones after it, untouched
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`send`](Sender::send), for the first item that could not be sent; the items before
    /// it were sent.
    ///
    /// # Panics
    /// As [`send`](Sender::send).
    ///
    /// Provided: one [`send`](Sender::send) per item.
    fn send_batch<I>(&self, items: I) -> Result<usize, SendError<T>>
    where
        I: IntoIterator<Item = T>,
    {
        let mut sent = 0;
        for value in items {
            self.send(value)?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends a byte message of `len` bytes written by `fill`, blocking as
    /// [`send`](Sender::send) does while the channel is full. `fill` gets exactly `len` bytes
    /// and should write all of them: on the process backend they are the channel's shared
    /// memory, holding whatever was there before (bytes of earlier messages); elsewhere a
    /// zeroed `Vec`.
    ///
    /// Use it for large payloads on the process backend: the bytes are written once, straight
    /// into the channel, instead of into a `Vec` that `send` then copies in. It takes the
    /// message's place in the channel before `fill` runs, so `fill` should only write (a
    /// `fill` that blocks holds back every receiver behind it).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(4)?;
    /// let source = [1u8, 2, 3, 4];
    /// tx.send_with(source.len(), |buf| buf.copy_from_slice(&source))?;
    /// assert_eq!(rx.recv()?, source); // an ordinary message: `recv` or `recv_with` take it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected(())` if every receiver is gone or the channel was closed;
    /// `Invalid((), MessageError::TooLarge { .. })` if the channel can never carry `len` bytes
    /// (process backend: larger than its byte budget, set by `ChannelBuilder::byte_budget`).
    /// `fill` is not called when the error is found before the bytes are claimed (always on
    /// the process backend); on the other backends it may have run, and what it wrote is
    /// dropped.
    ///
    /// # Panics
    /// If `fill` panics, the panic goes on and nothing is sent: the channel stays usable and
    /// every other message is kept. On the process backend, if `fill` sends or receives on
    /// this same channel (the message's place is claimed while it runs): move that out of the
    /// closure. Otherwise as [`send`](Sender::send).
    ///
    /// Provided: [`send_with_deadline`](Sender::send_with_deadline) without a deadline.
    #[inline]
    fn send_with<F>(&self, len: usize, fill: F) -> Result<(), SendError<()>>
    where
        T: ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        self.send_with_deadline(len, None, fill)
            .map_err(SendTimeoutError::into_untimed)
    }

    /// [`send_with`](Sender::send_with) if there is room right now; never waits. On the process
    /// backend `fill` runs only if the message goes; the provided form (below) may run it and
    /// then find the channel full, when another sender took the room meanwhile.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _, TrySendError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(1)?;
    /// tx.try_send_with(3, |buf| buf.fill(7))?;
    /// assert_eq!(tx.try_send_with(3, |_| unreachable!()), Err(TrySendError::Full(())));
    /// assert_eq!(rx.recv_with(|b| b.to_vec())?, [7, 7, 7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Full(())` if the channel is full; otherwise as [`send_with`](Sender::send_with).
    ///
    /// # Panics
    /// If `fill` panics, as [`send_with`](Sender::send_with).
    ///
    /// Provided: a look at [`is_full`](Sender::is_full) and [`is_closed`](Sender::is_closed),
    /// then a zeroed `Vec` filled by `fill` and [`try_send`](Sender::try_send): a send that
    /// still finds the channel full (another sender was faster) drops the filled bytes.
    fn try_send_with<F>(&self, len: usize, fill: F) -> Result<(), TrySendError<()>>
    where
        T: ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        if self.is_closed() {
            return Err(TrySendError::Disconnected(()));
        }
        if self.is_full() {
            return Err(TrySendError::Full(()));
        }
        let value = filled::<T>(len, fill).map_err(|m| TrySendError::Invalid((), m))?;
        self.try_send(value).map_err(|e| match e {
            TrySendError::Full(_) => TrySendError::Full(()),
            TrySendError::Disconnected(_) => TrySendError::Disconnected(()),
            TrySendError::Invalid(_, m) => TrySendError::Invalid((), m),
        })
    }

    /// [`send_with`](Sender::send_with), waiting for room until `deadline` (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, SendTimeoutError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<Vec<u8>>(1)?;
    /// tx.send_with_deadline(2, None, |buf| buf.fill(1))?;
    /// let soon = Some(Instant::now() + Duration::from_millis(5));
    /// let err = tx.send_with_deadline(2, soon, |buf| buf.fill(2)).unwrap_err();
    /// assert_eq!(err, SendTimeoutError::Timeout(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout(())` if the channel stayed full until `deadline`; otherwise as
    /// [`send_with`](Sender::send_with).
    ///
    /// # Panics
    /// As [`send_with`](Sender::send_with).
    ///
    /// Provided: a zeroed `Vec` filled by `fill`, then
    /// [`send_deadline`](Sender::send_deadline) (moving a `Vec` is already zero-copy on the
    /// thread and tokio backends). The process backend overrides it to write into the channel.
    fn send_with_deadline<F>(
        &self,
        len: usize,
        deadline: Option<Instant>,
        fill: F,
    ) -> Result<(), SendTimeoutError<()>>
    where
        T: ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        if self.is_closed() {
            return Err(SendTimeoutError::Disconnected(()));
        }
        let value = filled::<T>(len, fill).map_err(|m| SendTimeoutError::Invalid((), m))?;
        self.send_deadline(value, deadline).map_err(without_value)
    }

    /// [`send_with`](Sender::send_with), waiting for room at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(1)?;
    /// tx.send_with_timeout(1, Duration::from_millis(5), |buf| buf[0] = 9)?;
    /// assert!(tx.send_with_timeout(1, Duration::from_millis(5), |_| ()).unwrap_err().is_timeout());
    /// assert_eq!(rx.recv()?, [9]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`send_with_deadline`](Sender::send_with_deadline).
    ///
    /// # Panics
    /// As [`send_with`](Sender::send_with).
    #[inline]
    fn send_with_timeout<F>(
        &self,
        len: usize,
        timeout: Duration,
        fill: F,
    ) -> Result<(), SendTimeoutError<()>>
    where
        T: ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        self.send_with_deadline(len, deadline_after(timeout), fill)
    }

    /// Sends `value` if there is room right now; never waits, on any runtime.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _, TrySendError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<char>(1)?;
    /// tx.try_send('a')?;
    /// assert_eq!(tx.try_send('b'), Err(TrySendError::Full('b')));
    /// assert_eq!(rx.recv()?, 'a'); // room again
    /// tx.try_send('b')?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Full(value)` if the channel is full; `Disconnected(value)` if every receiver is gone or
    /// the channel was closed; `Invalid(value, _)` if the channel can never carry it (process
    /// backend only).
    fn try_send(&self, value: T) -> Result<(), TrySendError<T>>;

    /// Sends `value`, waiting for room until `deadline` (`None`: forever). A deadline already
    /// past still sends if there is room.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, SendTimeoutError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// tx.send_deadline(1, None)?; // there is room: no wait
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(tx.send_deadline(2, Some(deadline)), Err(SendTimeoutError::Timeout(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout(value)` if the channel stayed full until `deadline`; `Disconnected(value)` or
    /// `Invalid(value, _)` as for [`send`](Sender::send).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`send_async`](Sender::send_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn send_deadline(&self, value: T, deadline: Option<Instant>)
    -> Result<(), SendTimeoutError<T>>;

    /// Sends `value`, waiting for room at most `timeout` (a timeout too large for an
    /// `Instant` waits forever).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// tx.send(1)?;
    /// let err = tx.send_timeout(2, Duration::from_millis(5)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert_eq!(rx.recv()?, 1);
    /// tx.send_timeout(err.into_inner(), Duration::from_millis(5))?; // room now
    /// assert_eq!(rx.recv()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout(value)` if the channel stayed full; `Disconnected(value)` or `Invalid(value, _)`
    /// as for [`send`](Sender::send).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`send_async`](Sender::send_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    #[inline]
    fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, deadline_after(timeout))
    }

    /// Sends `value`, waiting for room without blocking the executor. The future is `Send`
    /// and needs no particular executor (it is woken through its `Waker`).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<String>(1)?;
    /// let producer = B::spawn_async(async move {
    ///     tx.send_async("first".to_string()).await.is_ok()
    ///         && tx.send_async("second".to_string()).await.is_ok() // waits for room
    /// })?;
    /// assert_eq!(rx.recv()?, "first");
    /// assert_eq!(rx.recv()?, "second");
    /// assert!(producer.join()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`send`](Sender::send): `Disconnected(value)`, or `Invalid(value, _)` (process
    /// backend).
    ///
    /// # Cancel safety
    /// Dropping the future before it completes drops `value` unsent; nothing else is lost and
    /// no slot is leaked.
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_;

    /// Number of messages queued (a snapshot: other units may change it at once).
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(tx.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn len(&self) -> usize;

    /// `true` if nothing is queued (a snapshot).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(4)?;
    /// assert!(tx.is_empty());
    /// tx.send(1)?;
    /// assert!(!tx.is_empty());
    /// rx.recv()?;
    /// assert!(tx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound given at construction, `None` for an unbounded channel.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert_eq!(B::channel::<u8>(16)?.0.capacity(), Some(16));
    /// assert_eq!(B::unbounded::<u8>()?.0.capacity(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn capacity(&self) -> Option<usize>;

    /// `true` once the channel is disconnected (closed, or every receiver gone): every send
    /// fails from then on.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// assert!(tx.send(1).unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_closed(&self) -> bool;

    /// Closes the channel for everyone, whichever sender calls it: receivers drain what is
    /// queued then see `Disconnected`; every further send fails with `Disconnected` and hands
    /// its value back. Closing twice does nothing more.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, RecvError, SendError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(4)?;
    /// let tx2 = tx.clone();
    /// tx.send(1)?;
    /// tx2.close(); // for every clone, and for the receivers
    /// assert!(tx.is_closed());
    /// assert_eq!(tx.send(2), Err(SendError::Disconnected(2)));
    /// assert_eq!(rx.recv()?, 1); // what was queued still drains
    /// assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn close(&self);

    /// `true` if a bounded channel holds `capacity` messages (a snapshot); never for an
    /// unbounded one. On the process backend a bounded channel also has a byte budget: a
    /// `try_send` can be refused as `Full` for lack of bytes while this is still `false`.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// assert!(!tx.is_full());
    /// tx.send(1)?;
    /// assert!(tx.is_full() && rx.is_full());
    /// rx.recv()?;
    /// assert!(!tx.is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_full(&self) -> bool {
        self.capacity().is_some_and(|cap| self.len() >= cap)
    }

    /// `true` if `self` and `other` send into the same channel: clones of one sender, in
    /// this unit or copied into another (a forked child's inherited sender and the parent's
    /// refer to the same channel).
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// let (other, _other_rx) = B::channel::<u8>(1)?;
    /// assert!(tx.same_channel(&tx.clone()));
    /// assert!(!tx.same_channel(&other));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn same_channel(&self, other: &Self) -> bool;
}

/// The receiving half of a channel.
///
/// Cheap to clone; clones share one queue, and each message goes to exactly one receiver
/// (a work queue, like Python's `Queue`, not a broadcast).
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u64>(16)?;
/// let workers = (0..2)
///     .map(|_| {
///         let rx = rx.clone();
///         B::spawn(move || rx.iter().sum::<u64>())
///     })
///     .collect::<Result<Vec<_>, _>>()?;
/// for i in 1..=100 {
///     tx.send(i)?;
/// }
/// drop(tx);
/// let mut total = 0;
/// for w in workers {
///     total += w.join()?;
/// }
/// assert_eq!(total, 5050); // every message received once
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Receiver<T>: Clone + Send + Sync + 'static {
    /// Receives the next message, blocking while the channel is empty.
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Receiver as _, RecvError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(1)?;
    /// let h = B::spawn(move || tx.send(5).is_ok())?; // the sender moves into the unit
    /// assert_eq!(rx.recv()?, 5);
    /// assert!(h.join()?);
    /// assert_eq!(rx.recv(), Err(RecvError::Disconnected)); // empty, and no sender left
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected` once the channel is empty and every sender is gone (or it was closed);
    /// `Invalid(_)` if a message could not be decoded (process backend only; the message is
    /// consumed, the channel goes on).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`recv_async`](Receiver::recv_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    ///
    /// Provided: [`recv_deadline`](Receiver::recv_deadline) without a deadline (which reads
    /// no clock), its error narrowed to [`RecvError`] (a decode failure stays `Invalid`).
    #[inline]
    fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None)
            .map_err(RecvTimeoutError::into_untimed)
    }

    /// Receives up to `max` messages into `buf` (appended, in order), blocking as
    /// [`recv`](Receiver::recv) does until at least one is there, then taking only what is
    /// queued without waiting again; returns how many were appended. `max == 0` returns
    /// `Ok(0)` at once. Backends may move a batch faster than one `recv` per message.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, RecvError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(8)?;
    /// tx.send_batch([1, 2, 3])?;
    /// drop(tx);
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_batch(&mut buf, 2)?, 2);
    /// assert_eq!(rx.recv_batch(&mut buf, 2)?, 1);
    /// assert_eq!(buf, [1, 2, 3]);
    /// assert_eq!(rx.recv_batch(&mut buf, 2), Err(RecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Disconnected` once the channel is empty and every sender is gone (or it was closed),
    /// if nothing was received; `Invalid(_)` as for [`recv`](Receiver::recv): the messages
    /// received before the undecodable one stay in `buf`. A backend that takes a batch out
    /// of the channel at once (the process backend) decodes the rest of that batch too: those
    /// messages are in `buf` as well, after the ones before it (none is lost).
    ///
    /// # Panics
    /// As [`recv`](Receiver::recv).
    ///
    /// Provided: one [`recv`](Receiver::recv), then [`try_recv`](Receiver::try_recv) until
    /// `max` or empty.
    fn recv_batch(&self, buf: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        buf.push(self.recv()?);
        let mut got = 1;
        while got < max {
            match self.try_recv() {
                Ok(value) => {
                    buf.push(value);
                    got += 1;
                }
                Err(TryRecvError::Invalid(e)) => return Err(RecvError::Invalid(e)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Ok(got)
    }

    /// Receives a message if one is queued right now; never waits for one to be sent, on any
    /// runtime. `Empty` means nothing is queued: a message another unit is in the middle of
    /// sending is waited for (briefly: on the process backend at most 100 ms, after which a
    /// sender that is stopped mid-send, e.g. by SIGSTOP, is reported as `Empty`; a killed one
    /// is settled and the messages behind it are received).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _, TryRecvError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(1)?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(3)?;
    /// assert_eq!(rx.try_recv(), Ok(3));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Empty` if nothing is queued; `Disconnected` if the channel is empty and every sender is
    /// gone (or it was closed); `Invalid(_)` as for [`recv`](Receiver::recv).
    fn try_recv(&self) -> Result<T, TryRecvError>;

    /// Receives the next message, waiting until `deadline` (`None`: forever). A deadline
    /// already past still takes a queued message.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Receiver as _, RecvTimeoutError, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(1)?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(rx.recv_deadline(Some(deadline)), Err(RecvTimeoutError::Timeout));
    /// tx.send(4)?;
    /// assert_eq!(rx.recv_deadline(Some(deadline)), Ok(4)); // past, but a message is queued
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if nothing arrived before `deadline`; `Disconnected` or `Invalid(_)` as for
    /// [`recv`](Receiver::recv).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`recv_async`](Receiver::recv_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError>;

    /// Receives the next message, waiting at most `timeout` (a timeout too large for an
    /// `Instant` waits forever).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _, RecvTimeoutError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(1)?;
    /// let err = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(err.is_timeout());
    /// drop(tx);
    /// assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Err(RecvTimeoutError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if nothing arrived in time; `Disconnected` or `Invalid(_)` as for
    /// [`recv`](Receiver::recv).
    ///
    /// # Panics
    /// On the tokio backend, on a task of a current-thread runtime, when it has to wait (tokio's
    /// `block_in_place` needs a multi-thread runtime): use [`recv_async`](Receiver::recv_async)
    /// there. The thread and process backends never panic here; they block the calling thread.
    #[inline]
    fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_after(timeout))
    }

    /// Receives the next byte message and hands its bytes to `read`, returning what `read`
    /// returns; blocks as [`recv`](Receiver::recv) does. On the process backend the bytes are
    /// the channel's shared memory, read in place with no copy and no allocation; the
    /// message's space is given back once `read` returns. Elsewhere `read` sees the received
    /// `Vec`, dropped after it returns.
    ///
    /// `read` runs while the message still holds its place in the channel (process backend):
    /// keep it short (copy out what must outlive it), as a receiver that blocks inside it
    /// holds back the senders waiting for room.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(4)?;
    /// tx.send(vec![1, 2, 3])?;
    /// tx.send_with(2, |buf| buf.copy_from_slice(&[4, 5]))?;
    /// let sum = |b: &[u8]| b.iter().map(|&x| u32::from(x)).sum::<u32>();
    /// assert_eq!(rx.recv_with(sum)?, 6);
    /// assert_eq!(rx.recv_with(sum)?, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Receiver::recv): `Disconnected` once the channel is empty and disconnected
    /// (`read` is not called); `Invalid` if the message's bytes are not a byte message
    /// (process backend: corrupt shared memory; the message is consumed).
    ///
    /// # Panics
    /// If `read` panics, the panic goes on; the message counts as received (it is not handed
    /// out again) and the channel stays usable. On the process backend, if `read` sends or
    /// receives on this same channel (the message is held in place while it runs): copy out
    /// what you forward and send it after. Otherwise as [`recv`](Receiver::recv).
    ///
    /// Provided: [`recv_with_deadline`](Receiver::recv_with_deadline) without a deadline.
    #[inline]
    fn recv_with<R, F>(&self, read: F) -> Result<R, RecvError>
    where
        T: ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        self.recv_with_deadline(None, read)
            .map_err(RecvTimeoutError::into_untimed)
    }

    /// [`recv_with`](Receiver::recv_with) if a message is queued right now; never waits.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _, TryRecvError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(4)?;
    /// assert_eq!(rx.try_recv_with(|b| b.len()), Err(TryRecvError::Empty));
    /// tx.send(vec![0; 10])?;
    /// assert_eq!(rx.try_recv_with(|b| b.len()), Ok(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`try_recv`](Receiver::try_recv).
    ///
    /// # Panics
    /// If `read` panics, as [`recv_with`](Receiver::recv_with).
    ///
    /// Provided: [`try_recv`](Receiver::try_recv), then `read` on the message's bytes.
    fn try_recv_with<R, F>(&self, read: F) -> Result<R, TryRecvError>
    where
        T: ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        self.try_recv().map(|m| read(m.as_bytes()))
    }

    /// [`recv_with`](Receiver::recv_with), waiting until `deadline` (`None`: forever).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use uniconc::{Backend, Receiver as _, RecvTimeoutError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (_tx, rx) = B::channel::<Vec<u8>>(1)?;
    /// let soon = Some(Instant::now() + Duration::from_millis(5));
    /// assert_eq!(rx.recv_with_deadline(soon, |b| b.len()), Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `Timeout` if nothing came before `deadline`; otherwise as
    /// [`recv_with`](Receiver::recv_with).
    ///
    /// # Panics
    /// As [`recv_with`](Receiver::recv_with).
    ///
    /// Provided: [`recv_deadline`](Receiver::recv_deadline), then `read` on the message's
    /// bytes. The process backend overrides it to read in place.
    fn recv_with_deadline<R, F>(
        &self,
        deadline: Option<Instant>,
        read: F,
    ) -> Result<R, RecvTimeoutError>
    where
        T: ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        self.recv_deadline(deadline).map(|m| read(m.as_bytes()))
    }

    /// [`recv_with`](Receiver::recv_with), waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(1)?;
    /// let wait = Duration::from_millis(5);
    /// assert!(rx.recv_with_timeout(wait, |b| b.len()).unwrap_err().is_timeout());
    /// tx.send(vec![1, 2])?;
    /// assert_eq!(rx.recv_with_timeout(wait, |b| b.len())?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv_with_deadline`](Receiver::recv_with_deadline).
    ///
    /// # Panics
    /// As [`recv_with`](Receiver::recv_with).
    #[inline]
    fn recv_with_timeout<R, F>(&self, timeout: Duration, read: F) -> Result<R, RecvTimeoutError>
    where
        T: ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        self.recv_with_deadline(deadline_after(timeout), read)
    }

    /// Receives the next message without blocking the executor. The future is `Send` and
    /// needs no particular executor (it is woken through its `Waker`).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u64>(4)?;
    /// let consumer = B::spawn_async(async move {
    ///     let mut sum = 0;
    ///     while let Ok(v) = rx.recv_async().await {
    ///         sum += v;
    ///     }
    ///     sum // the loop ends once the channel is empty and disconnected
    /// })?;
    /// for i in 1..=4 {
    ///     tx.send(i)?;
    /// }
    /// drop(tx);
    /// assert_eq!(consumer.join()?, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Receiver::recv): `Disconnected`, or `Invalid(_)` (process backend).
    ///
    /// # Cancel safety
    /// Dropping the future before it completes loses no message: a message is taken off the
    /// channel only in the poll that returns it.
    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_;

    /// A blocking iterator over received messages; it ends when the channel is empty and
    /// disconnected (a message that cannot be decoded ends it too; use `recv` to see that
    /// error).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// tx.close();
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    /// Each step is a [`recv`](Receiver::recv): on the tokio backend it panics on a task of a
    /// current-thread runtime when it has to wait.
    fn iter(&self) -> Iter<'_, T, Self>
    where
        Self: Sized,
    {
        Iter {
            rx: self,
            _marker: std::marker::PhantomData,
        }
    }

    /// An iterator over the messages queued right now; it never blocks, and ends at the first
    /// empty (or disconnected) look.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u32>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]); // the channel is still open
    /// assert_eq!(rx.try_iter().next(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_iter(&self) -> TryIter<'_, T, Self>
    where
        Self: Sized,
    {
        TryIter {
            rx: self,
            _marker: std::marker::PhantomData,
        }
    }

    /// Number of messages queued (a snapshot: other units may change it at once).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(rx.len(), 2);
    /// rx.recv()?;
    /// assert_eq!(rx.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn len(&self) -> usize;

    /// `true` if nothing is queued (a snapshot).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::unbounded::<u8>()?;
    /// assert!(rx.is_empty());
    /// tx.send(1)?;
    /// assert!(!rx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound given at construction, `None` for an unbounded channel.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert_eq!(B::channel::<u8>(3)?.1.capacity(), Some(3));
    /// assert_eq!(B::unbounded::<u8>()?.1.capacity(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn capacity(&self) -> Option<usize>;

    /// `true` once the channel is disconnected (closed, or every sender gone); queued messages
    /// can still be received.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(2)?;
    /// tx.send(1)?;
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// assert_eq!(rx.recv()?, 1); // closed, but not yet drained
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_closed(&self) -> bool;

    /// `true` if a bounded channel holds `capacity` messages (a snapshot); never for an
    /// unbounded one. See [`Sender::is_full`].
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(2)?;
    /// tx.send(1)?;
    /// assert!(!rx.is_full());
    /// tx.send(2)?;
    /// assert!(rx.is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_full(&self) -> bool {
        self.capacity().is_some_and(|cap| self.len() >= cap)
    }

    /// `true` if `self` and `other` receive from the same channel: clones of one receiver, in
    /// this unit or copied into another (a forked child's inherited receiver and the parent's
    /// refer to the same channel).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (_tx, rx) = B::channel::<u8>(1)?;
    /// let (_other_tx, other) = B::channel::<u8>(1)?;
    /// assert!(rx.same_channel(&rx.clone()));
    /// assert!(!rx.same_channel(&other));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn same_channel(&self, other: &Self) -> bool;
}

/// Blocking iterator returned by [`Receiver::iter`]: each step is a `recv`; it ends when the
/// channel is empty and disconnected.
///
/// ```
/// use uniconc::{Backend, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u32>(8)?;
/// for i in 0..5 {
///     tx.send(i)?;
/// }
/// let firsts: Vec<u32> = rx.iter().take(3).collect(); // stops after 3: no wait for more
/// assert_eq!(firsts, [0, 1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Iter<'a, T, R> {
    rx: &'a R,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T, R: Receiver<T>> Iterator for Iter<'_, T, R> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator returned by [`Receiver::try_iter`]: each step is a `try_recv`; it
/// ends at the first empty look.
///
/// ```
/// use uniconc::{Backend, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u32>(8)?;
/// tx.send(10)?;
/// tx.send(20)?;
/// assert_eq!(rx.try_iter().sum::<u32>(), 30);
/// tx.send(30)?; // the channel is still open: a later `try_iter` sees new messages
/// assert_eq!(rx.try_iter().count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TryIter<'a, T, R> {
    rx: &'a R,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T, R: Receiver<T>> Iterator for TryIter<'_, T, R> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Blocking iterator that owns its receiver: what `for x in rx` uses (each backend's
/// `Receiver<T>` implements `IntoIterator` with it, and `&Receiver<T>` with [`Iter`]). Each
/// step is a `recv`; it ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::{Backend, JoinHandle as _, Sender as _};
///
/// fn sum_on<B: Backend>(n: u64) -> Result<u64, Box<dyn std::error::Error>> {
///     let (tx, rx) = B::channel::<u64>(4)?;
///     // `Backend::Receiver<T>` is `IntoIterator<Item = T>`: generic code can loop on it.
///     let h = B::spawn(move || {
///         let mut total = 0;
///         for x in rx {
///             total += x;
///         }
///         total
///     })?;
///     for i in 1..=n {
///         tx.send(i)?;
///     }
///     drop(tx);
///     Ok(h.join()?)
/// }
///
/// assert_eq!(sum_on::<uniconc::thread::Thread>(10)?, 55);
///
/// // The borrowing form, on a concrete backend (in generic code, add the bound
/// // `for<'a> &'a B::Receiver<T>: IntoIterator<Item = T>`, or call `rx.iter()`):
/// let (tx, rx) = uniconc::thread::channel::<u32>(4)?;
/// tx.send(1)?;
/// tx.send(2)?;
/// drop(tx);
/// let mut seen = Vec::new();
/// for x in &rx {
///     seen.push(x);
/// }
/// assert_eq!(seen, [1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct IntoIter<T, R> {
    rx: R,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T, R: Receiver<T>> IntoIter<T, R> {
    /// The iterator over `rx` (what a backend's `IntoIterator for Receiver<T>` returns).
    ///
    /// ```
    /// use uniconc::{Backend, IntoIter, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(2)?;
    /// tx.send(7)?;
    /// tx.close();
    /// assert_eq!(IntoIter::new(rx).collect::<Vec<u8>>(), [7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(rx: R) -> Self {
        Self {
            rx,
            _marker: std::marker::PhantomData,
        }
    }

    /// The receiver back.
    ///
    /// ```
    /// use uniconc::{Backend, IntoIter, Receiver as _, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(2)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// let mut it = IntoIter::new(rx);
    /// assert_eq!(it.next(), Some(1));
    /// assert_eq!(it.into_inner().try_recv(), Ok(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(self) -> R {
        self.rx
    }
}

impl<T, R: Receiver<T>> Iterator for IntoIter<T, R> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    //! The provided untimed forms: each is the deadline form without a deadline, its error
    //! narrowed with nothing lost (a decode or encode failure stays `Invalid`).

    use std::cell::Cell;
    use std::future::{Future, ready};
    use std::time::Instant;

    use super::{Receiver, Sender};
    use crate::error::{
        MessageError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
        TrySendError,
    };

    /// A channel half whose deadline forms answer with a fixed error and record the deadline
    /// they were given.
    #[derive(Clone)]
    struct Fixed {
        send: SendTimeoutError<()>,
        recv: RecvTimeoutError,
    }

    thread_local! {
        /// `Some(deadline)` each deadline form was last called with.
        static SEEN: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
    }

    impl Sender<u8> for Fixed {
        fn try_send(&self, v: u8) -> Result<(), TrySendError<u8>> {
            Err(TrySendError::Full(v))
        }
        fn send_deadline(&self, v: u8, d: Option<Instant>) -> Result<(), SendTimeoutError<u8>> {
            SEEN.set(Some(d));
            Err(match self.send.clone() {
                SendTimeoutError::Timeout(()) => SendTimeoutError::Timeout(v),
                SendTimeoutError::Disconnected(()) => SendTimeoutError::Disconnected(v),
                SendTimeoutError::Invalid((), m) => SendTimeoutError::Invalid(v, m),
            })
        }
        fn send_async(&self, v: u8) -> impl Future<Output = Result<(), SendError<u8>>> + Send {
            ready(Err(SendError::Disconnected(v)))
        }
        fn len(&self) -> usize {
            0
        }
        fn capacity(&self) -> Option<usize> {
            None
        }
        fn is_closed(&self) -> bool {
            true
        }
        fn close(&self) {}
        fn same_channel(&self, _: &Self) -> bool {
            true
        }
    }

    impl Receiver<u8> for Fixed {
        fn try_recv(&self) -> Result<u8, TryRecvError> {
            Err(TryRecvError::Empty)
        }
        fn recv_deadline(&self, d: Option<Instant>) -> Result<u8, RecvTimeoutError> {
            SEEN.set(Some(d));
            Err(self.recv.clone())
        }
        fn recv_async(&self) -> impl Future<Output = Result<u8, RecvError>> + Send {
            ready(Err(RecvError::Disconnected))
        }
        fn len(&self) -> usize {
            0
        }
        fn capacity(&self) -> Option<usize> {
            None
        }
        fn is_closed(&self) -> bool {
            true
        }
        fn same_channel(&self, _: &Self) -> bool {
            true
        }
    }

    fn decode() -> MessageError {
        MessageError::Decode("bad bytes".into())
    }

    #[test]
    fn untimed_recv_keeps_invalid_and_passes_no_deadline() {
        let rx = Fixed {
            send: SendTimeoutError::Disconnected(()),
            recv: RecvTimeoutError::Invalid(decode()),
        };
        SEEN.set(None);
        assert_eq!(Receiver::recv(&rx), Err(RecvError::Invalid(decode())));
        assert_eq!(SEEN.get(), Some(None), "recv waits without a deadline");
        let rx = Fixed {
            recv: RecvTimeoutError::Disconnected,
            ..rx
        };
        assert_eq!(Receiver::recv(&rx), Err(RecvError::Disconnected));
    }

    #[test]
    fn untimed_send_keeps_invalid_and_hands_the_value_back() {
        let tx = Fixed {
            send: SendTimeoutError::Invalid((), MessageError::Encode("no".into())),
            recv: RecvTimeoutError::Disconnected,
        };
        SEEN.set(None);
        assert_eq!(
            Sender::send(&tx, 7),
            Err(SendError::Invalid(7, MessageError::Encode("no".into())))
        );
        assert_eq!(SEEN.get(), Some(None), "send waits without a deadline");
        let tx = Fixed {
            send: SendTimeoutError::Disconnected(()),
            ..tx
        };
        assert_eq!(Sender::send(&tx, 8), Err(SendError::Disconnected(8)));
    }

    #[test]
    fn timed_forms_pass_a_deadline() {
        let tx = Fixed {
            send: SendTimeoutError::Timeout(()),
            recv: RecvTimeoutError::Timeout,
        };
        SEEN.set(None);
        let d = std::time::Duration::from_secs(5);
        assert_eq!(
            Sender::send_timeout(&tx, 1, d),
            Err(SendTimeoutError::Timeout(1))
        );
        assert!(SEEN.get().is_some_and(|d| d.is_some()));
        SEEN.set(None);
        assert_eq!(
            Receiver::recv_timeout(&tx, d),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(SEEN.get().is_some_and(|d| d.is_some()));
    }
}
