//! Error types, split per operation the way crossbeam splits them.
//!
//! Every failed send hands the unsent value back (`into_inner`). `Debug` never needs `T: Debug`.
//! The process backend can also refuse a message it cannot carry (too large for the channel,
//! a serde failure); that is [`MessageError`], reported through the `Invalid` variants, which the
//! thread and tokio backends never produce.

use std::fmt;
use std::io;

// ---------------------------------------------------------------------------------------------
// Construction errors
// ---------------------------------------------------------------------------------------------

/// Why a constructor (or another setup call) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of range, e.g. a channel capacity of 0 or a pool of 0 workers.
    InvalidArgument,
    /// The backend cannot do this at all (e.g. killing an OS thread).
    Unsupported,
    /// The operating system refused (mapping shared memory, forking, ...).
    Os,
    /// The primitive or unit is gone or closed (e.g. the pool was closed).
    Closed,
}

/// Error of a constructor or setup call: `uniconc::Error`.
///
/// An opaque struct with a [`kind`](Error::kind), a message, and the OS error as its
/// [`source`](std::error::Error::source) where there is one.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    /// An argument is out of range.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidArgument,
            message: message.into(),
            source: None,
        }
    }

    /// The backend cannot do this.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unsupported,
            message: message.into(),
            source: None,
        }
    }

    /// The primitive or unit is closed or gone.
    pub fn closed(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Closed,
            message: message.into(),
            source: None,
        }
    }

    /// The OS refused; `context` says what we were doing.
    pub fn os(context: impl Into<String>, source: io::Error) -> Self {
        Self {
            kind: ErrorKind::Os,
            message: context.into(),
            source: Some(source),
        }
    }

    /// The OS refused, with the current `errno` as the source.
    pub fn last_os_error(context: impl Into<String>) -> Self {
        Self::os(context, io::Error::last_os_error())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error behind this one, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::os("I/O error", e)
    }
}

/// Shorthand for `Result<T, uniconc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Message errors (process backend)
// ---------------------------------------------------------------------------------------------

/// What was wrong with a message that a channel could not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The encoded message is larger than the channel can ever hold.
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The largest message this channel accepts, in bytes.
        limit: usize,
    },
    /// Serializing the value failed.
    Encode(String),
    /// Deserializing a received message failed (the message is consumed).
    Decode(String),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes is larger than the channel can hold ({limit} bytes)"
                )
            }
            Self::Encode(m) => write!(f, "message could not be encoded: {m}"),
            Self::Decode(m) => write!(f, "message could not be decoded: {m}"),
        }
    }
}

impl std::error::Error for MessageError {}

// ---------------------------------------------------------------------------------------------
// Channel errors
// ---------------------------------------------------------------------------------------------

macro_rules! value_error {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $msg:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(PartialEq, Eq, Clone, Copy)]
        pub enum $name<T> {
            $( $(#[$vmeta])* $variant(T), )*
        }

        impl<T> $name<T> {
            /// Returns the message that could not be sent.
            pub fn into_inner(self) -> T {
                match self { $( Self::$variant(v) => v, )* }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $( Self::$variant(..) => f.write_str(concat!(stringify!($variant), "(..)")), )* }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $( Self::$variant(..) => f.write_str($msg), )* }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

/// Error of [`Sender::send`](crate::Sender::send) and `send_async`.
#[derive(PartialEq, Eq, Clone)]
pub enum SendError<T> {
    /// Every receiver is gone, or the channel was closed. Holds the unsent message.
    Disconnected(T),
    /// The channel cannot carry this message (process backend). Holds the unsent message.
    Invalid(T, MessageError),
}

/// Error of [`Sender::try_send`](crate::Sender::try_send).
#[derive(PartialEq, Eq, Clone)]
pub enum TrySendError<T> {
    /// The channel is full. Holds the unsent message.
    Full(T),
    /// Every receiver is gone, or the channel was closed. Holds the unsent message.
    Disconnected(T),
    /// The channel cannot carry this message (process backend). Holds the unsent message.
    Invalid(T, MessageError),
}

/// Error of [`Sender::send_timeout`](crate::Sender::send_timeout).
#[derive(PartialEq, Eq, Clone)]
pub enum SendTimeoutError<T> {
    /// The channel stayed full until the deadline. Holds the unsent message.
    Timeout(T),
    /// Every receiver is gone, or the channel was closed. Holds the unsent message.
    Disconnected(T),
    /// The channel cannot carry this message (process backend). Holds the unsent message.
    Invalid(T, MessageError),
}

macro_rules! send_error_impls {
    ($name:ident { $($variant:ident => $msg:literal),* }) => {
        impl<T> $name<T> {
            /// Returns the message that could not be sent.
            pub fn into_inner(self) -> T {
                match self {
                    $( Self::$variant(v) => v, )*
                    Self::Invalid(v, _) => v,
                }
            }

            /// `true` if every receiver is gone or the channel was closed.
            pub fn is_disconnected(&self) -> bool {
                matches!(self, Self::Disconnected(_))
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$variant(..) => f.write_str(concat!(stringify!($variant), "(..)")), )*
                    Self::Invalid(_, e) => write!(f, "Invalid(.., {e:?})"),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$variant(..) => f.write_str($msg), )*
                    Self::Invalid(_, e) => write!(f, "{e}"),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

send_error_impls!(SendError { Disconnected => "sending on a disconnected channel" });
send_error_impls!(TrySendError {
    Full => "sending on a full channel",
    Disconnected => "sending on a disconnected channel"
});
send_error_impls!(SendTimeoutError {
    Timeout => "timed out waiting on a full channel",
    Disconnected => "sending on a disconnected channel"
});

impl<T> TrySendError<T> {
    /// `true` if the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// `true` if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => Self::Disconnected(v),
            SendError::Invalid(v, m) => Self::Invalid(v, m),
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(v) => Self::Disconnected(v),
            SendError::Invalid(v, m) => Self::Invalid(v, m),
        }
    }
}

/// Error of [`Receiver::recv`](crate::Receiver::recv) and `recv_async`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// The channel is empty and every sender is gone (or it was closed).
    Disconnected,
    /// A message arrived but could not be decoded (process backend); it is consumed.
    Invalid(MessageError),
}

/// Error of [`Receiver::try_recv`](crate::Receiver::try_recv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRecvError {
    /// The channel is empty.
    Empty,
    /// The channel is empty and every sender is gone (or it was closed).
    Disconnected,
    /// A message arrived but could not be decoded (process backend); it is consumed.
    Invalid(MessageError),
}

/// Error of [`Receiver::recv_timeout`](crate::Receiver::recv_timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The channel stayed empty until the deadline.
    Timeout,
    /// The channel is empty and every sender is gone (or it was closed).
    Disconnected,
    /// A message arrived but could not be decoded (process backend); it is consumed.
    Invalid(MessageError),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("receiving on an empty channel"),
            Self::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting on an empty channel"),
            Self::Disconnected => f.write_str("receiving on an empty and disconnected channel"),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

impl TryRecvError {
    /// `true` if the channel was empty (and still connected).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }
    /// `true` if the channel is empty and disconnected.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

impl RecvTimeoutError {
    /// `true` if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
    /// `true` if the channel is empty and disconnected.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::Invalid(m) => Self::Invalid(m),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::Invalid(m) => Self::Invalid(m),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lock and wait errors
// ---------------------------------------------------------------------------------------------

value_error! {
    /// Error of [`Lock::lock`](crate::Lock::lock) (and of `Value`/`Array` `lock`): the lock *was*
    /// acquired, but its previous holder did not release it cleanly. The guard is handed over
    /// anyway, like std's `PoisonError`; the protected state may be half-updated.
    LockError {
        /// The previous holder (a process) died while holding the lock.
        OwnerDied => "the previous holder of the lock died while holding it",
        /// The previous holder (a thread or task) panicked while holding the lock.
        Poisoned => "the previous holder of the lock panicked while holding it",
    }
}

impl<G> LockError<G> {
    /// Takes the guard out of the error.
    pub fn into_guard(self) -> G {
        self.into_inner()
    }
}

/// Error of `try_lock` and `lock_timeout`.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TryLockError<G> {
    /// The lock is held (by `try_lock`).
    WouldBlock,
    /// The lock stayed held until the deadline (by `lock_timeout`).
    Timeout,
    /// Acquired; the previous holder (a process) died holding it. Holds the guard.
    OwnerDied(G),
    /// Acquired; the previous holder panicked holding it. Holds the guard.
    Poisoned(G),
}

impl<G> From<LockError<G>> for TryLockError<G> {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(g) => Self::OwnerDied(g),
            LockError::Poisoned(g) => Self::Poisoned(g),
        }
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("WouldBlock"),
            Self::Timeout => f.write_str("Timeout"),
            Self::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            Self::Poisoned(_) => f.write_str("Poisoned(..)"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("the lock is held"),
            Self::Timeout => f.write_str("timed out waiting for the lock"),
            Self::OwnerDied(_) => {
                f.write_str("the previous holder of the lock died while holding it")
            }
            Self::Poisoned(_) => {
                f.write_str("the previous holder of the lock panicked while holding it")
            }
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// Error of the `try_` and `_timeout` forms of `Semaphore::acquire`, `Event::wait` and
/// `Barrier::wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitError {
    /// Not available right now (by a `try_` form).
    WouldBlock,
    /// Not available before the deadline (by a `_timeout` form).
    Timeout,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("operation would block"),
            Self::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for WaitError {}

// ---------------------------------------------------------------------------------------------
// Execution units and pools
// ---------------------------------------------------------------------------------------------

/// Why joining an execution unit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The unit panicked; holds the panic message.
    Panicked(String),
    /// The unit (a process) was killed by this signal number.
    Killed(i32),
    /// The unit (a process) exited with this code before reporting a result.
    Exited(i32),
    /// The unit (a task) was cancelled (`kill()` / abort).
    Cancelled,
    /// Not finished yet (by `try_join` and `join_timeout`); the handle can be joined again.
    Timeout,
    /// The result was already taken by an earlier join.
    AlreadyJoined,
    /// Anything else: the result could not be read back, the OS refused to wait, ...
    Failed(String),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(m) => write!(f, "the unit panicked: {m}"),
            Self::Killed(s) => write!(f, "the unit was killed by signal {s}"),
            Self::Exited(c) => write!(f, "the unit exited with code {c} before reporting a result"),
            Self::Cancelled => f.write_str("the unit was cancelled"),
            Self::Timeout => f.write_str("the unit has not finished yet"),
            Self::AlreadyJoined => f.write_str("the unit's result was already taken"),
            Self::Failed(m) => write!(f, "joining the unit failed: {m}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Why one pool task did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; holds the panic message. The pool stays usable.
    Panicked(String),
    /// The worker running the task died (a process killed by a signal, aborted, OOM-killed);
    /// holds a description. The worker is replaced.
    WorkerDied(String),
    /// The task ran past its deadline; its worker was killed and replaced.
    DeadlineExceeded,
    /// The pool was terminated before the task finished.
    Cancelled,
    /// Not finished yet (by `try_wait` and `wait_timeout`); the handle can be waited on again.
    Timeout,
    /// The result was already taken by an earlier wait.
    AlreadyTaken,
    /// Anything else (the argument or result could not be carried, ...).
    Failed(String),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(m) => write!(f, "the task panicked: {m}"),
            Self::WorkerDied(m) => write!(f, "the worker running the task died: {m}"),
            Self::DeadlineExceeded => f.write_str("the task ran past its deadline"),
            Self::Cancelled => f.write_str("the pool was terminated before the task finished"),
            Self::Timeout => f.write_str("the task has not finished yet"),
            Self::AlreadyTaken => f.write_str("the task's result was already taken"),
            Self::Failed(m) => write!(f, "the task failed: {m}"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Error of a whole pool operation ([`Pool::map`](crate::Pool::map), `submit`, `join`).
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool was closed or terminated; no new work is accepted.
    Closed,
    /// The task for input `index` failed (the first failure, in input order, for `map`).
    Task {
        /// Position of the item in the input.
        index: usize,
        /// What went wrong.
        error: TaskError,
    },
    /// The pool could not start or replace a worker.
    Spawn(Error),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the pool is closed"),
            Self::Task { index, error } => write!(f, "task {index} failed: {error}"),
            Self::Spawn(e) => write!(f, "the pool could not start a worker: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Task { error, .. } => Some(error),
            Self::Spawn(e) => Some(e),
            Self::Closed => None,
        }
    }
}

impl From<Error> for PoolError {
    fn from(e: Error) -> Self {
        Self::Spawn(e)
    }
}
