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
///
/// ```
/// use uniconc::{Backend, ErrorKind, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let e = B::channel::<u8>(0).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// let e = B::spawn(|| 1)?.kill().unwrap_err(); // an OS thread cannot be stopped
/// assert_eq!(e.kind(), ErrorKind::Unsupported);
/// match e.kind() {
///     ErrorKind::InvalidArgument => println!("fix the call"),
///     ErrorKind::Os => println!("the system is short of something: {e}"),
///     _ => println!("{e}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// The other side of a channel is gone, or the channel was closed (`SendError`,
    /// `TryRecvError::Disconnected`, ...).
    Disconnected,
    /// A channel was full (`TrySendError::Full`), or a `Map`/`List` has no room left.
    Full,
    /// A channel was empty (`TryRecvError::Empty`).
    Empty,
    /// A `try_` form would have had to wait (`TryLockError::WouldBlock`,
    /// `WaitError::WouldBlock`).
    WouldBlock,
    /// A deadline passed: a `_timeout` form gave up, a unit or task had not finished yet, or a
    /// pool task ran past its `task_timeout` (`TaskError::DeadlineExceeded`).
    Timeout,
    /// A message the channel could not carry: too large, or not encodable or decodable
    /// ([`MessageError`], process backend).
    InvalidMessage,
    /// A unit or a pool task panicked (`JoinError::Panicked`, `TaskError::Panicked`).
    Panicked,
    /// A unit or pool worker died before reporting a result: a process killed by a signal or
    /// exited early (`JoinError::Killed`/`Exited`), a worker that died mid-task
    /// (`TaskError::WorkerDied`).
    WorkerDied,
    /// A unit or task was cancelled (`kill()` on a task, `Pool::terminate`).
    Cancelled,
    /// A lock's previous holder died holding it (`LockError::OwnerDied`).
    OwnerDied,
    /// A lock's previous holder panicked holding it (`LockError::Poisoned`).
    Poisoned,
    /// A result was already taken by an earlier join or wait.
    AlreadyTaken,
    /// A named object was to be created but the name exists
    /// ([`Named::create_new`](crate::Named::create_new)).
    AlreadyExists,
    /// A named object was to be opened but the name does not exist
    /// ([`Named::existing`](crate::Named::existing)).
    NotFound,
    /// A named object exists but is not what was asked for: another kind of primitive,
    /// element type, capacity, length or layout version, or its shared memory is not a valid
    /// object (truncated, foreign or corrupted).
    Incompatible,
    /// Anything else; the message says what.
    Other,
}

/// The one error type of uniconc: `uniconc::Error`.
///
/// Constructors and setup calls return it. Every operation error (`SendError<T>`,
/// `RecvError`, `TryLockError<G>`, `JoinError`, `PoolError`, ...) converts into it with `?`,
/// so a whole program can return [`Result<()>`](Result) — `uniconc::Result<()>` — without a
/// `Box<dyn Error>`; the specific error types stay for the code that handles them.
///
/// An opaque struct with a [`kind`](Error::kind) and a message; the OS error is its
/// [`source`](std::error::Error::source) where there is one. A converted operation error keeps
/// its kind (`Disconnected`, `Timeout`, `Panicked`, ...) and its message, and is reachable
/// through [`get_ref`](Error::get_ref) unless it held a message value or a lock guard
/// (`SendError<T>`, `TrySendError<T>`, `SendTimeoutError<T>`, `LockError<G>`,
/// `TryLockError<G>`): converting those *drops* the unsent value (or the guard, releasing the
/// lock). Handle the specific error first when the value matters.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, ErrorKind, JoinError, JoinHandle as _, Receiver as _, Sender as _};
///
/// type B = uniconc::thread::Thread;
///
/// fn run() -> uniconc::Result<()> { // `uniconc::Result<()>` through the facade
///     let (tx, rx) = B::channel::<u32>(4)?; // a constructor's error
///     tx.send(20)?; // a SendError<u32>
///     assert_eq!(rx.recv_timeout(Duration::from_secs(5))?, 20); // a RecvTimeoutError
///     let h = B::spawn(|| 6 * 7)?;
///     assert_eq!(h.join()?, 42); // a JoinError
///
///     let failed = B::spawn(|| -> u8 { panic!("boom") })?.join().unwrap_err();
///     let e = uniconc::Error::from(failed);
///     assert_eq!(e.kind(), ErrorKind::Panicked);
///     assert_eq!(e.to_string(), "the unit panicked: boom");
///     let original = e.get_ref().and_then(|e| e.downcast_ref::<JoinError>());
///     assert_eq!(original, Some(&JoinError::Panicked("boom".into())));
///     Ok(())
/// }
/// # run().unwrap();
/// ```
///
/// A constructor's error:
///
/// ```
/// use std::error::Error as _;
/// use uniconc::{Backend, ErrorKind};
///
/// type B = uniconc::thread::Thread;
/// let e = B::barrier(0).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert!(!e.to_string().is_empty()); // says what was wrong
/// assert!(e.source().is_none()); // no OS error behind this one
/// ```
pub struct Error {
    kind: ErrorKind,
    repr: Repr,
}

enum Repr {
    /// A message, and the OS error behind it (shown after the message, and the `source`).
    Message(String, Option<io::Error>),
    /// An operation error converted with `?`, shown as itself; its `source` is ours (like
    /// `io::Error::other`).
    Wrapped(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// An argument is out of range. (Backends build their errors with these constructors.)
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::invalid_argument("capacity must be at least 1");
    /// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    /// assert_eq!(e.to_string(), "capacity must be at least 1");
    /// ```
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::InvalidArgument, message)
    }

    /// The backend cannot do this.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::unsupported("an OS thread cannot be stopped");
    /// assert_eq!(e.kind(), ErrorKind::Unsupported);
    /// ```
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::Unsupported, message)
    }

    /// The primitive or unit is closed or gone.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::closed("the pool is closed");
    /// assert_eq!(e.kind(), ErrorKind::Closed);
    /// ```
    pub fn closed(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::Closed, message)
    }

    /// A structure has no room left for what was asked (the process backend's `Map` and `List`
    /// when their reserved memory is used up); nothing was changed.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::full("the map's 1 GiB of reserved memory is used up");
    /// assert_eq!(e.kind(), ErrorKind::Full);
    /// ```
    pub fn full(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::Full, message)
    }

    /// A named object exists and was to be created.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::already_exists("\"jobs\" exists");
    /// assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    /// ```
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::AlreadyExists, message)
    }

    /// A named object does not exist and was to be opened.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::not_found("no object is named \"jobs\"");
    /// assert_eq!(e.kind(), ErrorKind::NotFound);
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::NotFound, message)
    }

    /// A named object is not what was asked for, or not a valid object at all.
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::incompatible("\"jobs\" is a lock, not a channel");
    /// assert_eq!(e.kind(), ErrorKind::Incompatible);
    /// ```
    pub fn incompatible(message: impl Into<String>) -> Self {
        Self::message(ErrorKind::Incompatible, message)
    }

    /// The OS refused; `context` says what we were doing. The OS error becomes the
    /// [`source`](std::error::Error::source).
    ///
    /// ```
    /// use std::error::Error as _;
    /// use std::io;
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::os("mapping shared memory", io::Error::from(io::ErrorKind::OutOfMemory));
    /// assert_eq!(e.kind(), ErrorKind::Os);
    /// assert!(e.to_string().starts_with("mapping shared memory: "));
    /// assert!(e.source().is_some());
    /// ```
    pub fn os(context: impl Into<String>, source: io::Error) -> Self {
        Self {
            kind: ErrorKind::Os,
            repr: Repr::Message(context.into(), Some(source)),
        }
    }

    /// The OS refused, with the current `errno` as the source (call it right after the failed
    /// system call).
    ///
    /// ```
    /// use uniconc::{Error, ErrorKind};
    ///
    /// let e = Error::last_os_error("fork");
    /// assert_eq!(e.kind(), ErrorKind::Os);
    /// assert!(e.io_error().is_some());
    /// ```
    pub fn last_os_error(context: impl Into<String>) -> Self {
        Self::os(context, io::Error::last_os_error())
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind};
    ///
    /// type B = uniconc::thread::Thread;
    /// assert_eq!(B::pool(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error behind this one, if any.
    ///
    /// ```
    /// use std::io;
    /// use uniconc::Error;
    ///
    /// let e = Error::os("fork", io::Error::from_raw_os_error(11));
    /// assert_eq!(e.io_error().and_then(io::Error::raw_os_error), Some(11));
    /// assert!(Error::invalid_argument("n").io_error().is_none());
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.repr {
            Repr::Message(_, source) => source.as_ref(),
            Repr::Wrapped(e) => {
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
                while let Some(c) = cur {
                    if let Some(io) = c.downcast_ref::<io::Error>() {
                        return Some(io);
                    }
                    if let Some(inner) = c.downcast_ref::<Error>() {
                        return inner.io_error();
                    }
                    cur = c.source();
                }
                None
            }
        }
    }

    /// The operation error this one was converted from, for downcasting: a `JoinError`,
    /// `TaskError`, `PoolError`, `RecvError`, `TryRecvError`, `RecvTimeoutError`,
    /// `WaitError` or `MessageError`. `None` for constructor errors and for the errors whose
    /// value or guard was dropped by the conversion (the send and lock errors).
    ///
    /// ```
    /// use uniconc::{Backend, Error, ErrorKind, Receiver as _, TryRecvError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (_tx, rx) = B::channel::<u8>(1)?;
    /// let e = Error::from(rx.try_recv().unwrap_err());
    /// assert_eq!(e.kind(), ErrorKind::Empty);
    /// let original = e.get_ref().and_then(|e| e.downcast_ref::<TryRecvError>());
    /// assert_eq!(original, Some(&TryRecvError::Empty));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_ref(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.repr {
            Repr::Wrapped(e) => Some(&**e),
            Repr::Message(..) => None,
        }
    }

    fn message(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            repr: Repr::Message(message.into(), None),
        }
    }

    pub(crate) fn wrap(kind: ErrorKind, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            kind,
            repr: Repr::Wrapped(Box::new(e)),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        match &self.repr {
            Repr::Message(m, source) => {
                d.field("message", m);
                if let Some(s) = source {
                    d.field("source", s);
                }
            }
            Repr::Wrapped(e) => {
                d.field("error", e);
            }
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Message(m, source) => {
                f.write_str(m)?;
                if let Some(s) = source {
                    write!(f, ": {s}")?;
                }
                Ok(())
            }
            Repr::Wrapped(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::Message(_, source) => source.as_ref().map(|e| e as _),
            Repr::Wrapped(e) => e.source(),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::os("I/O error", e)
    }
}

/// Shorthand for `Result<T, uniconc::Error>`.
///
/// ```
/// use uniconc::{Backend, Result};
///
/// fn counter<B: Backend>() -> Result<B::Value<u64>> {
///     B::value(0)
/// }
/// assert!(counter::<uniconc::thread::Thread>().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Message errors (process backend)
// ---------------------------------------------------------------------------------------------

/// What was wrong with a message that a channel could not carry. Only the process backend
/// produces it (inside the `Invalid` variants of the channel errors); matching on it lets a
/// program tell an oversized message from a broken one.
///
/// ```
/// use uniconc::{Backend, MessageError, SendError, Sender as _};
///
/// fn explain<T>(e: SendError<T>) -> String {
///     match e {
///         SendError::Disconnected(_) => "nobody is listening".into(),
///         SendError::Invalid(_, MessageError::TooLarge { size, limit }) => {
///             format!("{size} bytes, the channel takes {limit}: raise its byte budget")
///         }
///         SendError::Invalid(_, other) => other.to_string(),
///     }
/// }
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u8>(1)?;
/// drop(rx);
/// assert_eq!(explain(tx.send(1).unwrap_err()), "nobody is listening");
/// // What the process backend returns for a message larger than the channel's byte budget:
/// let too_large = MessageError::TooLarge { size: 18, limit: 8 };
/// let too_large = SendError::Invalid(vec![0u8; 10], too_large);
/// assert_eq!(explain(too_large), "18 bytes, the channel takes 8: raise its byte budget");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The encoded message is larger than the channel (or `Map`/`List`) can ever hold. On the
    /// process backend a channel's limit is set by `ChannelBuilder::byte_budget`.
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
                    "message of {size} bytes is larger than the {limit} bytes the channel or \
                     collection can hold (a process channel's limit is raised with \
                     `ChannelBuilder::byte_budget`, up to 256 MiB)"
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
        $(#[$into_meta:meta])*
        fn into_inner;
    ) => {
        $(#[$meta])*
        #[derive(PartialEq, Eq, Clone, Copy)]
        pub enum $name<T> {
            $( $(#[$vmeta])* $variant(T), )*
        }

        impl<T> $name<T> {
            $(#[$into_meta])*
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
///
/// ```
/// use uniconc::{Backend, SendError, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<String>(1)?;
/// drop(rx);
/// match tx.send("report".to_string()) {
///     Err(SendError::Disconnected(msg)) => assert_eq!(msg, "report"), // handed back
///     Err(SendError::Invalid(_, why)) => panic!("cannot carry it: {why}"),
///     Ok(()) => unreachable!(),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(PartialEq, Eq, Clone)]
pub enum SendError<T> {
    /// Every receiver is gone, or the channel was closed. Holds the unsent message.
    Disconnected(T),
    /// The channel cannot carry this message (process backend). Holds the unsent message.
    Invalid(T, MessageError),
}

/// Error of [`Sender::try_send`](crate::Sender::try_send).
///
/// ```
/// use uniconc::{Backend, Sender as _, TrySendError};
///
/// type B = uniconc::thread::Thread;
/// let (tx, _rx) = B::channel::<u32>(1)?;
/// tx.try_send(1)?;
/// match tx.try_send(2) {
///     Err(TrySendError::Full(v)) => assert_eq!(v, 2), // no room: try later, or drop it
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(PartialEq, Eq, Clone)]
pub enum TrySendError<T> {
    /// The channel is full. Holds the unsent message.
    Full(T),
    /// Every receiver is gone, or the channel was closed. Holds the unsent message.
    Disconnected(T),
    /// The channel cannot carry this message (process backend). Holds the unsent message.
    Invalid(T, MessageError),
}

/// Error of [`Sender::send_timeout`](crate::Sender::send_timeout) and
/// [`send_deadline`](crate::Sender::send_deadline).
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, SendTimeoutError, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, _rx) = B::channel::<u32>(1)?;
/// tx.send(1)?;
/// let err = tx.send_timeout(2, Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err, SendTimeoutError::Timeout(2));
/// assert_eq!(err.to_string(), "timed out waiting on a full channel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    (
        $name:ident { $($variant:ident => $msg:literal),* }
        $(#[$into_meta:meta])*
        fn into_inner;
        $(#[$disc_meta:meta])*
        fn is_disconnected;
    ) => {
        impl<T> $name<T> {
            $(#[$into_meta])*
            pub fn into_inner(self) -> T {
                match self {
                    $( Self::$variant(v) => v, )*
                    Self::Invalid(v, _) => v,
                }
            }

            $(#[$disc_meta])*
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

send_error_impls!(
    SendError { Disconnected => "sending on a disconnected channel" }
    /// Returns the message that could not be sent.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<Vec<u8>>(1)?;
    /// drop(rx);
    /// let unsent = tx.send(vec![1, 2, 3]).unwrap_err().into_inner();
    /// assert_eq!(unsent, [1, 2, 3]); // nothing is lost
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn into_inner;
    /// `true` if every receiver is gone or the channel was closed.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// tx.close();
    /// assert!(tx.send(1).unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_disconnected;
);
send_error_impls!(
    TrySendError {
        Full => "sending on a full channel",
        Disconnected => "sending on a disconnected channel"
    }
    /// Returns the message that could not be sent.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<String>(1)?;
    /// tx.try_send("first".to_string())?;
    /// assert_eq!(tx.try_send("second".to_string()).unwrap_err().into_inner(), "second");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn into_inner;
    /// `true` if every receiver is gone or the channel was closed (not merely full).
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// tx.try_send(1)?;
    /// assert!(!tx.try_send(2).unwrap_err().is_disconnected()); // full
    /// drop(rx);
    /// assert!(tx.try_send(2).unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_disconnected;
);
send_error_impls!(
    SendTimeoutError {
        Timeout => "timed out waiting on a full channel",
        Disconnected => "sending on a disconnected channel"
    }
    /// Returns the message that could not be sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// tx.send(1)?;
    /// let back = tx.send_timeout(2, Duration::from_millis(5)).unwrap_err().into_inner();
    /// assert_eq!(back, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn into_inner;
    /// `true` if every receiver is gone or the channel was closed (not a timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// drop(rx);
    /// let err = tx.send_timeout(1, Duration::from_secs(60)).unwrap_err(); // no wait
    /// assert!(err.is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn is_disconnected;
);

impl<T> TrySendError<T> {
    /// `true` if the channel was full.
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// tx.try_send(1)?;
    /// assert!(tx.try_send(2).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// `true` if the deadline passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Sender as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::channel::<u8>(1)?;
    /// tx.send(1)?;
    /// assert!(tx.send_timeout(2, Duration::from_millis(5)).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// Narrows the error of an untimed wait (`send_deadline(_, None)`) to [`SendError`]: the
    /// one place every backend's `send` does it. A `Timeout` cannot come from a wait without a
    /// deadline; should a backend report one anyway, the value still comes back, as
    /// `Disconnected`, rather than being dropped.
    #[inline]
    pub(crate) fn into_untimed(self) -> SendError<T> {
        match self {
            Self::Disconnected(v) => SendError::Disconnected(v),
            Self::Invalid(v, m) => SendError::Invalid(v, m),
            Self::Timeout(v) => {
                debug_assert!(false, "an untimed send reported a timeout");
                SendError::Disconnected(v)
            }
        }
    }
}

impl RecvTimeoutError {
    /// Narrows the error of an untimed wait (`recv_deadline(None)`) to [`RecvError`], keeping
    /// `Invalid`: the one place every backend's `recv` does it. A `Timeout` cannot come from a
    /// wait without a deadline; should a backend report one anyway, it reads as `Disconnected`.
    #[inline]
    pub(crate) fn into_untimed(self) -> RecvError {
        match self {
            Self::Disconnected => RecvError::Disconnected,
            Self::Invalid(m) => RecvError::Invalid(m),
            Self::Timeout => {
                debug_assert!(false, "an untimed recv reported a timeout");
                RecvError::Disconnected
            }
        }
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
///
/// ```
/// use uniconc::{Backend, Receiver as _, RecvError, Sender as _};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u8>(2)?;
/// tx.send(1)?;
/// drop(tx);
/// assert_eq!(rx.recv(), Ok(1)); // drained first
/// let err = rx.recv().unwrap_err();
/// assert_eq!(err, RecvError::Disconnected);
/// assert_eq!(err.to_string(), "receiving on an empty and disconnected channel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// The channel is empty and every sender is gone (or it was closed).
    Disconnected,
    /// A message arrived but could not be decoded (process backend); it is consumed.
    Invalid(MessageError),
}

/// Error of [`Receiver::try_recv`](crate::Receiver::try_recv).
///
/// ```
/// use uniconc::{Backend, Receiver as _, Sender as _, TryRecvError};
///
/// type B = uniconc::thread::Thread;
/// let (tx, rx) = B::channel::<u8>(1)?;
/// match rx.try_recv() {
///     Err(TryRecvError::Empty) => {} // nothing yet: do something else
///     other => panic!("unexpected: {other:?}"),
/// }
/// tx.close();
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRecvError {
    /// The channel is empty.
    Empty,
    /// The channel is empty and every sender is gone (or it was closed).
    Disconnected,
    /// A message arrived but could not be decoded (process backend); it is consumed.
    Invalid(MessageError),
}

/// Error of [`Receiver::recv_timeout`](crate::Receiver::recv_timeout) and
/// [`recv_deadline`](crate::Receiver::recv_deadline).
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, Receiver as _, RecvTimeoutError};
///
/// type B = uniconc::thread::Thread;
/// let (_tx, rx) = B::channel::<u8>(1)?;
/// let err = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err, RecvTimeoutError::Timeout);
/// assert_eq!(err.to_string(), "timed out waiting on an empty channel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (_tx, rx) = B::channel::<u8>(1)?;
    /// assert!(rx.try_recv().unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }
    /// `true` if the channel is empty and disconnected.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// drop(tx);
    /// assert!(rx.try_recv().unwrap_err().is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }
}

impl RecvTimeoutError {
    /// `true` if the deadline passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (_tx, rx) = B::channel::<u8>(1)?;
    /// assert!(rx.recv_timeout(Duration::from_millis(5)).unwrap_err().is_timeout());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
    /// `true` if the channel is empty and disconnected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use uniconc::{Backend, Receiver as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::channel::<u8>(1)?;
    /// drop(tx);
    /// let err = rx.recv_timeout(Duration::from_secs(60)).unwrap_err(); // no wait
    /// assert!(err.is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// `Poisoned`: the previous holder panicked (on any backend); `OwnerDied`: it died
    /// without unwinding, killed or aborted (process backend only). Either is reported to one
    /// acquirer only, the next one: the lock is clean after that (see
    /// [`Lock`](crate::Lock#a-holder-that-panics-or-dies)).
    ///
    /// ```
    /// use uniconc::{Backend, JoinHandle as _, LockError, Value as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let v = B::value(0u32)?;
    /// let v2 = v.clone();
    /// let h = B::spawn(move || -> u32 {
    ///     let mut g = v2.lock().unwrap_or_else(|e| e.into_guard());
    ///     *g = 1; // half-way through an update...
    ///     panic!("...the holder panics")
    /// })?;
    /// assert!(h.join().is_err());
    /// match v.lock() {
    ///     Err(LockError::Poisoned(g)) => assert_eq!(*g, 1), // check or repair the state here
    ///     Err(LockError::OwnerDied(g)) => assert_eq!(*g, 1), // a killed holder (processes)
    ///     Ok(_) => unreachable!("the panic is reported"),
    /// }
    /// assert!(v.lock().is_ok()); // once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    LockError {
        /// The previous holder (a process) died while holding the lock.
        OwnerDied => "the previous holder of the lock died while holding it",
        /// The previous holder (a thread or task) panicked while holding the lock.
        Poisoned => "the previous holder of the lock panicked while holding it",
    }
    /// Returns the guard the error holds (the same as [`into_guard`](LockError::into_guard)).
    ///
    /// ```
    /// use uniconc::{Backend, Lock as _, LockError};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let guard = lock.lock().unwrap_or_else(LockError::into_inner);
    /// assert!(lock.is_locked());
    /// drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn into_inner;
}

impl<G> LockError<G> {
    /// Takes the guard out of the error: `lock.lock().unwrap_or_else(|e| e.into_guard())`
    /// acquires the lock whatever its previous holder did.
    ///
    /// ```
    /// use uniconc::{Backend, Lock as _};
    ///
    /// type B = uniconc::thread::Thread;
    /// let lock = B::lock()?;
    /// let guard = lock.lock().unwrap_or_else(|e| e.into_guard());
    /// assert!(lock.try_lock().is_err());
    /// drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_guard(self) -> G {
        self.into_inner()
    }
}

/// Error of [`try_lock`](crate::Lock::try_lock), [`lock_timeout`](crate::Lock::lock_timeout)
/// and [`lock_deadline`](crate::Lock::lock_deadline). A [`LockError`] converts into it.
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, Lock as _, TryLockError};
///
/// type B = uniconc::thread::Thread;
/// let lock = B::lock()?;
/// let _held = lock.lock().unwrap();
/// match lock.try_lock() {
///     Err(TryLockError::WouldBlock) => {} // busy: come back later
///     Err(TryLockError::OwnerDied(g) | TryLockError::Poisoned(g)) => drop(g),
///     other => panic!("unexpected: {other:?}"),
/// }
/// let err = lock.lock_timeout(Duration::from_millis(5)).unwrap_err();
/// assert!(matches!(err, TryLockError::Timeout));
/// assert_eq!(err.to_string(), "timed out waiting for the lock");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// ```
/// use std::time::Duration;
/// use uniconc::{Backend, Event as _, Semaphore as _, WaitError};
///
/// type B = uniconc::thread::Thread;
/// let sem = B::semaphore(0)?;
/// assert_eq!(sem.try_acquire().unwrap_err(), WaitError::WouldBlock);
/// let ev = B::event()?;
/// let err = ev.wait_timeout(Duration::from_millis(5)).unwrap_err();
/// assert_eq!(err, WaitError::Timeout);
/// assert_eq!(err.to_string(), "timed out");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// ```
/// use uniconc::{Backend, JoinError, JoinHandle as _};
///
/// type B = uniconc::thread::Thread;
/// let h = B::spawn(|| -> u8 { panic!("disk full") })?;
/// let err = h.join().unwrap_err();
/// match &err {
///     JoinError::Panicked(msg) => assert_eq!(msg, "disk full"),
///     JoinError::Killed(signal) => println!("killed by signal {signal}"), // processes
///     JoinError::Exited(code) => println!("exited with {code}"),          // processes
///     other => println!("{other}"),
/// }
/// assert_eq!(err.to_string(), "the unit panicked: disk full");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// Why one pool task did not produce a value: from [`TaskHandle::wait`](crate::TaskHandle::wait),
/// from each item of `imap`, and inside [`PoolError::Task`].
///
/// ```
/// use uniconc::{Backend, Pool as _, TaskError, TaskHandle as _};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::pool(1)?;
///     let h = pool.submit(|x: i32| -> i32 { panic!("negative: {x}") }, -1)?;
///     let err = h.wait().unwrap_err();
///     assert_eq!(err, TaskError::Panicked("negative: -1".into()));
///     assert_eq!(err.to_string(), "the task panicked: negative: -1");
///     assert_eq!(pool.submit(|x: i32| x, 1)?.wait()?, 1); // the pool stays usable
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// ```
/// use std::error::Error as _;
/// use uniconc::{Backend, Pool as _, PoolError, TaskError};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let pool = B::pool(2)?;
///     let err = pool.map(|x: i32| 12 / (x - 3), 0..5).unwrap_err(); // item 3 divides by 0
///     assert!(matches!(err, PoolError::Task { index: 3, error: TaskError::Panicked(_) }));
///     assert!(err.source().is_some()); // the TaskError
///     pool.close();
///     assert!(matches!(pool.map(|x: u32| x, 0..1u32), Err(PoolError::Closed)));
///     Ok(())
/// }
///
/// run::<uniconc::thread::Thread>()?; // or any other backend
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

// ---------------------------------------------------------------------------------------------
// Conversions into `Error`, for `?`
// ---------------------------------------------------------------------------------------------

/// Converts with `?` into [`Error`] (kind `InvalidMessage`; reachable through
/// [`Error::get_ref`]).
impl From<MessageError> for Error {
    fn from(e: MessageError) -> Self {
        Self::wrap(ErrorKind::InvalidMessage, e)
    }
}

/// Converts with `?` into [`Error`]: kind `Disconnected` or `InvalidMessage`. The unsent value
/// is dropped.
impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Invalid(_, m) => m.into(),
            SendError::Disconnected(_) => Self::message(ErrorKind::Disconnected, e.to_string()),
        }
    }
}

/// Converts with `?` into [`Error`]: kind `Full`, `Disconnected` or `InvalidMessage`. The
/// unsent value is dropped.
impl<T> From<TrySendError<T>> for Error {
    fn from(e: TrySendError<T>) -> Self {
        let kind = match e {
            TrySendError::Invalid(_, m) => return m.into(),
            TrySendError::Full(_) => ErrorKind::Full,
            TrySendError::Disconnected(_) => ErrorKind::Disconnected,
        };
        Self::message(kind, e.to_string())
    }
}

/// Converts with `?` into [`Error`]: kind `Timeout`, `Disconnected` or `InvalidMessage`. The
/// unsent value is dropped.
impl<T> From<SendTimeoutError<T>> for Error {
    fn from(e: SendTimeoutError<T>) -> Self {
        let kind = match e {
            SendTimeoutError::Invalid(_, m) => return m.into(),
            SendTimeoutError::Timeout(_) => ErrorKind::Timeout,
            SendTimeoutError::Disconnected(_) => ErrorKind::Disconnected,
        };
        Self::message(kind, e.to_string())
    }
}

/// Converts with `?` into [`Error`]: kind `Disconnected` or `InvalidMessage`.
impl From<RecvError> for Error {
    fn from(e: RecvError) -> Self {
        let kind = match e {
            RecvError::Disconnected => ErrorKind::Disconnected,
            RecvError::Invalid(_) => ErrorKind::InvalidMessage,
        };
        Self::wrap(kind, e)
    }
}

/// Converts with `?` into [`Error`]: kind `Empty`, `Disconnected` or `InvalidMessage`.
impl From<TryRecvError> for Error {
    fn from(e: TryRecvError) -> Self {
        let kind = match e {
            TryRecvError::Empty => ErrorKind::Empty,
            TryRecvError::Disconnected => ErrorKind::Disconnected,
            TryRecvError::Invalid(_) => ErrorKind::InvalidMessage,
        };
        Self::wrap(kind, e)
    }
}

/// Converts with `?` into [`Error`]: kind `Timeout`, `Disconnected` or `InvalidMessage`.
impl From<RecvTimeoutError> for Error {
    fn from(e: RecvTimeoutError) -> Self {
        let kind = match e {
            RecvTimeoutError::Timeout => ErrorKind::Timeout,
            RecvTimeoutError::Disconnected => ErrorKind::Disconnected,
            RecvTimeoutError::Invalid(_) => ErrorKind::InvalidMessage,
        };
        Self::wrap(kind, e)
    }
}

/// Converts with `?` into [`Error`]: kind `OwnerDied` or `Poisoned`. The guard is dropped,
/// which releases the lock.
impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Self {
        let kind = match e {
            LockError::OwnerDied(_) => ErrorKind::OwnerDied,
            LockError::Poisoned(_) => ErrorKind::Poisoned,
        };
        Self::message(kind, e.to_string())
    }
}

/// Converts with `?` into [`Error`]: kind `WouldBlock`, `Timeout`, `OwnerDied` or
/// `Poisoned`. A guard is dropped, which releases the lock.
impl<G> From<TryLockError<G>> for Error {
    fn from(e: TryLockError<G>) -> Self {
        let kind = match e {
            TryLockError::WouldBlock => ErrorKind::WouldBlock,
            TryLockError::Timeout => ErrorKind::Timeout,
            TryLockError::OwnerDied(_) => ErrorKind::OwnerDied,
            TryLockError::Poisoned(_) => ErrorKind::Poisoned,
        };
        Self::message(kind, e.to_string())
    }
}

/// Converts with `?` into [`Error`]: kind `WouldBlock` or `Timeout`.
impl From<WaitError> for Error {
    fn from(e: WaitError) -> Self {
        let kind = match e {
            WaitError::WouldBlock => ErrorKind::WouldBlock,
            WaitError::Timeout => ErrorKind::Timeout,
        };
        Self::wrap(kind, e)
    }
}

impl JoinError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            Self::Panicked(_) => ErrorKind::Panicked,
            Self::Killed(_) | Self::Exited(_) => ErrorKind::WorkerDied,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Timeout => ErrorKind::Timeout,
            Self::AlreadyJoined => ErrorKind::AlreadyTaken,
            Self::Failed(_) => ErrorKind::Other,
        }
    }
}

/// Converts with `?` into [`Error`]: kind `Panicked`, `WorkerDied` (killed or exited),
/// `Cancelled`, `Timeout`, `AlreadyTaken` or `Other`.
impl From<JoinError> for Error {
    fn from(e: JoinError) -> Self {
        Self::wrap(e.error_kind(), e)
    }
}

impl TaskError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            Self::Panicked(_) => ErrorKind::Panicked,
            Self::WorkerDied(_) => ErrorKind::WorkerDied,
            Self::DeadlineExceeded | Self::Timeout => ErrorKind::Timeout,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::AlreadyTaken => ErrorKind::AlreadyTaken,
            Self::Failed(_) => ErrorKind::Other,
        }
    }
}

/// Converts with `?` into [`Error`]: kind `Panicked`, `WorkerDied`, `Timeout` (also for
/// `DeadlineExceeded`), `Cancelled`, `AlreadyTaken` or `Other`.
impl From<TaskError> for Error {
    fn from(e: TaskError) -> Self {
        Self::wrap(e.error_kind(), e)
    }
}

/// Converts with `?` into [`Error`]: kind `Closed`, the failed task's kind (`Panicked`, ...)
/// or the kind of the error that kept a worker from starting (`Os`, ...).
impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        let kind = match &e {
            PoolError::Closed => ErrorKind::Closed,
            PoolError::Task { error, .. } => error.error_kind(),
            PoolError::Spawn(inner) => inner.kind(),
        };
        Self::wrap(kind, e)
    }
}
