//! The channel contract: a multi-producer multi-consumer FIFO whose halves are both `Clone`.
//!
//! # Disconnection
//!
//! When every [`Sender`] is dropped (in every process, for the process backend), receivers drain
//! what is queued and then get `Disconnected`. When every [`Receiver`] is dropped, `send`
//! returns the value inside `Disconnected`. [`Sender::close`] disconnects the channel for
//! everyone at once: receivers drain, then see `Disconnected`; senders get their value back.
//!
//! # Blocking, non-blocking, timed and async forms
//!
//! Each operation comes as a blocking call (`send`, `recv`), a `try_` form, a `_timeout` form
//! (implemented as a `_deadline`; a timeout too large for an `Instant` waits forever), and an
//! `_async` form returning a `Send` future that never blocks an executor thread and is
//! cancel-safe: dropping it before it completes loses no message.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::time::deadline_after;

/// The sending half of a channel.
pub trait Sender<T>: Clone + Send + Sync + 'static {
    /// Sends `value`, blocking while the channel is full.
    ///
    /// # Errors
    /// `Disconnected(value)` if every receiver is gone or the channel was closed;
    /// `Invalid(value, _)` if the channel can never carry it (process backend).
    fn send(&self, value: T) -> Result<(), SendError<T>>;

    /// Sends `value` if there is room right now.
    ///
    /// # Errors
    /// `Full(value)`, `Disconnected(value)` or `Invalid(value, _)`.
    fn try_send(&self, value: T) -> Result<(), TrySendError<T>>;

    /// Sends `value`, waiting for room until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout(value)`, `Disconnected(value)` or `Invalid(value, _)`.
    fn send_deadline(&self, value: T, deadline: Option<Instant>)
    -> Result<(), SendTimeoutError<T>>;

    /// Sends `value`, waiting for room at most `timeout`.
    ///
    /// # Errors
    /// `Timeout(value)`, `Disconnected(value)` or `Invalid(value, _)`.
    fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, deadline_after(timeout))
    }

    /// Sends `value`, waiting for room without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes drops `value` unsent; nothing else is lost and
    /// no slot is leaked.
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_;

    /// Number of messages queued.
    fn len(&self) -> usize;

    /// `true` if nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound given at construction, `None` for an unbounded channel.
    fn capacity(&self) -> Option<usize>;

    /// `true` once the channel is disconnected (closed, or every receiver gone).
    fn is_closed(&self) -> bool;

    /// Closes the channel for everyone: receivers drain what is queued then see
    /// `Disconnected`; every further send fails with `Disconnected`.
    fn close(&self);
}

/// The receiving half of a channel.
pub trait Receiver<T>: Clone + Send + Sync + 'static {
    /// Receives the next message, blocking while the channel is empty.
    ///
    /// # Errors
    /// `Disconnected` once the channel is empty and every sender is gone (or it was closed);
    /// `Invalid(_)` if a message could not be decoded (process backend).
    fn recv(&self) -> Result<T, RecvError>;

    /// Receives a message if one is queued right now.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` or `Invalid(_)`.
    fn try_recv(&self) -> Result<T, TryRecvError>;

    /// Receives the next message, waiting until `deadline` (`None`: forever).
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` or `Invalid(_)`.
    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError>;

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` or `Invalid(_)`.
    fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_after(timeout))
    }

    /// Receives the next message without blocking the executor.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes loses no message: a message is taken off the
    /// channel only in the poll that returns it.
    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_;

    /// A blocking iterator over received messages; it ends when the channel disconnects
    /// (a message that cannot be decoded ends it too; use `recv` to see that error).
    fn iter(&self) -> Iter<'_, T, Self>
    where
        Self: Sized,
    {
        Iter {
            rx: self,
            _marker: std::marker::PhantomData,
        }
    }

    /// An iterator over the messages queued right now; it never blocks.
    fn try_iter(&self) -> TryIter<'_, T, Self>
    where
        Self: Sized,
    {
        TryIter {
            rx: self,
            _marker: std::marker::PhantomData,
        }
    }

    /// Number of messages queued.
    fn len(&self) -> usize;

    /// `true` if nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound given at construction, `None` for an unbounded channel.
    fn capacity(&self) -> Option<usize>;

    /// `true` once the channel is disconnected (closed, or every sender gone); queued messages
    /// can still be received.
    fn is_closed(&self) -> bool;
}

/// Blocking iterator returned by [`Receiver::iter`].
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

/// Non-blocking iterator returned by [`Receiver::try_iter`].
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
