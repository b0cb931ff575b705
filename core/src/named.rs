//! Named objects: primitives created under a name and opened by name, so that units that were
//! not handed a clone — on the process backend, programs started separately — find the same
//! primitive.
//!
//! [`Backend::named`] starts a [`Named`] builder; its constructors mirror the backend's
//! (`channel`, `lock`, `value`, ...) and take the same arguments:
//!
//! ```
//! use uniconc::{Backend, Receiver as _, Sender as _};
//!
//! type B = uniconc::thread::Thread; // or uniconc::process::Process, uniconc::tokio::Tokio
//! let tx = B::named("doc-jobs").sender::<u32>(Some(8))?; // created here
//! let rx = B::named("doc-jobs").receiver::<u32>(Some(8))?; // the same channel, opened
//! tx.send(7)?;
//! assert_eq!(rx.recv()?, 7);
//! assert!(B::named("doc-jobs").unlink()?); // the name is free again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Create, open, or either
//!
//! By default a named constructor opens the object if the name exists and creates it
//! otherwise ([`OpenMode::OpenOrCreate`]); [`Named::create_new`] refuses an existing name
//! (`ErrorKind::AlreadyExists`) and [`Named::existing`] a missing one (`ErrorKind::NotFound`).
//! Opening checks that the object is of the kind, element type and shape asked for (the same
//! capacity, length or number of parties): anything else is `ErrorKind::Incompatible`, never
//! a wrong reinterpretation. Initial contents (a value's initial value, a semaphore's
//! permits) are used only when the object is created.
//!
//! # Lifetime
//!
//! A name lives until [`Named::unlink`] removes it, whoever created it and whether or not
//! processes using it have exited or were killed: nothing is unlinked behind a user's back.
//! Unlinking removes only the name: handles already open keep working on the old object, and
//! the next create makes a new one.
//!
//! # Names
//!
//! 1 to 200 bytes of ASCII letters, digits, `.`, `_` and `-`, not starting with `.`
//! ([`validate::name`](crate::validate::name)); anything else is `InvalidArgument`.

use std::fmt;
use std::marker::PhantomData;

use crate::backend::{Backend, Message};
use crate::error::Error;
use crate::state::Plain;

/// What a named constructor does with a name that exists or does not.
///
/// ```
/// use uniconc::OpenMode;
/// assert_eq!(OpenMode::default(), OpenMode::OpenOrCreate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OpenMode {
    /// Open the object if the name exists, create it otherwise.
    #[default]
    OpenOrCreate,
    /// Create the object; `ErrorKind::AlreadyExists` if the name exists.
    Create,
    /// Open the object; `ErrorKind::NotFound` if the name does not exist.
    Open,
}

/// A name and what to do with it: what a backend's named constructors receive.
///
/// ```
/// use uniconc::{Name, OpenMode};
/// let n = Name::new("jobs", OpenMode::Open);
/// assert_eq!((n.as_str(), n.mode()), ("jobs", OpenMode::Open));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    name: String,
    mode: OpenMode,
    byte_budget: Option<usize>,
}

impl Name {
    /// A name with its open mode. The name is checked by the constructor that uses it.
    ///
    /// ```
    /// use uniconc::{Name, OpenMode};
    /// assert_eq!(Name::new("x", OpenMode::Create).mode(), OpenMode::Create);
    /// ```
    pub fn new(name: impl Into<String>, mode: OpenMode) -> Self {
        Self {
            name: name.into(),
            mode,
            byte_budget: None,
        }
    }

    /// The same name with a channel byte budget (see [`Named::byte_budget`]).
    ///
    /// ```
    /// use uniconc::{Name, OpenMode};
    /// let n = Name::new("x", OpenMode::Create).with_byte_budget(1 << 16);
    /// assert_eq!(n.byte_budget(), Some(1 << 16));
    /// ```
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = Some(bytes);
        self
    }

    /// The channel byte budget asked for, if any (see [`Named::byte_budget`]).
    ///
    /// ```
    /// use uniconc::{Name, OpenMode};
    /// assert_eq!(Name::new("x", OpenMode::Open).byte_budget(), None);
    /// ```
    pub fn byte_budget(&self) -> Option<usize> {
        self.byte_budget
    }

    /// The name as given.
    ///
    /// ```
    /// use uniconc::{Name, OpenMode};
    /// assert_eq!(Name::new("x", OpenMode::Create).as_str(), "x");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The open mode.
    ///
    /// ```
    /// use uniconc::{Name, OpenMode};
    /// assert_eq!(Name::new("x", OpenMode::Open).mode(), OpenMode::Open);
    /// ```
    pub fn mode(&self) -> OpenMode {
        self.mode
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name)
    }
}

/// A name on backend `B`, ready to create or open a primitive: `B::named("jobs")`.
///
/// See the [module docs](self) for the modes, the checks made on open and the lifetime of a
/// name.
///
/// ```
/// use uniconc::{Backend, ErrorKind, Lock as _};
///
/// fn run<B: Backend>() -> Result<(), Box<dyn std::error::Error>> {
///     let lock = B::named("doc-named-lock").create_new().lock()?;
///     let again = B::named("doc-named-lock").existing().lock()?; // the same lock
///     let g = lock.lock();
///     assert!(again.try_lock().is_err());
///     drop(g);
///     let e = B::named("doc-named-lock").create_new().lock().err().expect("exists");
///     assert_eq!(e.kind(), ErrorKind::AlreadyExists);
///     assert!(B::named("doc-named-lock").unlink()?);
///     let e = B::named("doc-named-lock").existing().lock().err().expect("unlinked");
///     assert_eq!(e.kind(), ErrorKind::NotFound);
///     Ok(())
/// }
/// run::<uniconc::thread::Thread>()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Named<B> {
    name: Name,
    _backend: PhantomData<fn() -> B>,
}

impl<B> fmt::Debug for Named<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named").field("name", &self.name).finish()
    }
}

impl<B> Clone for Named<B> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            _backend: PhantomData,
        }
    }
}

impl<B: Backend> Named<B> {
    /// `name`, opened if it exists and created otherwise. Same as `B::named(name)`.
    ///
    /// ```
    /// use uniconc::{Named, OpenMode};
    /// let n = Named::<uniconc::thread::Thread>::new("jobs");
    /// assert_eq!(n.name().mode(), OpenMode::OpenOrCreate);
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Name::new(name, OpenMode::OpenOrCreate),
            _backend: PhantomData,
        }
    }

    /// Only create: the constructors fail with `ErrorKind::AlreadyExists` if the name exists.
    ///
    /// ```
    /// use uniconc::{Backend, OpenMode};
    /// let n = uniconc::thread::Thread::named("jobs").create_new();
    /// assert_eq!(n.name().mode(), OpenMode::Create);
    /// ```
    pub fn create_new(mut self) -> Self {
        self.name.mode = OpenMode::Create;
        self
    }

    /// Only open: the constructors fail with `ErrorKind::NotFound` if the name does not exist.
    ///
    /// ```
    /// use uniconc::{Backend, OpenMode};
    /// let n = uniconc::thread::Thread::named("jobs").existing();
    /// assert_eq!(n.name().mode(), OpenMode::Open);
    /// ```
    pub fn existing(mut self) -> Self {
        self.name.mode = OpenMode::Open;
        self
    }

    /// The byte budget of a channel created under this name: bytes of ring space for queued
    /// encoded messages, also the largest message the channel accepts, as
    /// `uniconc::process::ChannelBuilder::byte_budget` sets it for an unnamed channel (rounded
    /// up to a power of two, at least 4 KiB; at most 256 MiB, the codec's limit, else
    /// `InvalidArgument`). Default: as for an unnamed channel of the same capacity.
    ///
    /// The budget is recorded with the channel. An opener that asks for a budget must ask for
    /// the recorded one (compared after rounding), else `ErrorKind::Incompatible`, as for a
    /// different capacity; an opener that asks for none takes the creator's. Only the process
    /// backend holds a channel's messages as encoded bytes in a ring of fixed size; on the
    /// thread and tokio backends messages are not encoded, and a budget within the limit has
    /// no effect.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    /// type B = uniconc::thread::Thread; // or uniconc::process::Process
    /// let (tx, rx) = B::named("doc-named-budget").byte_budget(1 << 20).channel::<Vec<u8>>(4)?;
    /// tx.send(vec![7; 100_000])?;
    /// assert_eq!(rx.recv()?.len(), 100_000);
    /// let e = B::named("doc-named-budget").byte_budget(1 << 40).channel::<Vec<u8>>(4);
    /// assert_eq!(e.unwrap_err().kind(), uniconc::ErrorKind::InvalidArgument);
    /// B::named("doc-named-budget").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn byte_budget(mut self, bytes: usize) -> Self {
        self.name.byte_budget = Some(bytes);
        self
    }

    /// The name and mode.
    ///
    /// ```
    /// use uniconc::Backend;
    /// assert_eq!(uniconc::thread::Thread::named("jobs").name().as_str(), "jobs");
    /// ```
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Both halves of a named bounded channel of `capacity` messages (see
    /// [`Backend::channel`]).
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _};
    /// type B = uniconc::thread::Thread;
    /// let (tx, rx) = B::named("doc-named-channel").channel::<String>(4)?;
    /// tx.send("hi".into())?;
    /// assert_eq!(rx.recv()?, "hi");
    /// B::named("doc-named-channel").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::channel`]; for the name, see the [module docs](self).
    #[allow(clippy::type_complexity)]
    pub fn channel<T: Message>(
        &self,
        capacity: usize,
    ) -> Result<(B::Sender<T>, B::Receiver<T>), Error> {
        let (tx, rx) = self.named_channel::<T>(Some(capacity), true, true)?;
        Ok((expect_half(tx)?, expect_half(rx)?))
    }

    /// Both halves of a named unbounded channel (see [`Backend::unbounded`]).
    ///
    /// ```
    /// use uniconc::{Backend, Sender as _};
    /// type B = uniconc::thread::Thread;
    /// let (tx, _rx) = B::named("doc-named-unbounded").unbounded::<u8>()?;
    /// assert_eq!(tx.capacity(), None);
    /// B::named("doc-named-unbounded").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::unbounded`]; for the name, see the [module docs](self).
    #[allow(clippy::type_complexity)]
    pub fn unbounded<T: Message>(&self) -> Result<(B::Sender<T>, B::Receiver<T>), Error> {
        let (tx, rx) = self.named_channel::<T>(None, true, true)?;
        Ok((expect_half(tx)?, expect_half(rx)?))
    }

    /// Only the sending half of a named channel (`None`: unbounded), for a program that only
    /// sends.
    ///
    /// # Disconnection
    ///
    /// On the process backend a named channel's receivers see `Disconnected` only once a
    /// sender has been opened and every sender is gone (dropped, or its process killed), and
    /// its senders only once a receiver has been opened and every receiver is gone: either
    /// program may start first, as with a named pipe, and a side that comes back later
    /// reconnects. On the thread and tokio backends the name itself holds a sender and a
    /// receiver until it is unlinked (within one process no peer can die unseen): the channel
    /// disconnects as an unnamed one once the name is gone and the handles with it.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _, Sender as _, TryRecvError};
    /// type B = uniconc::thread::Thread;
    /// let rx = B::named("doc-named-sender").receiver::<u32>(Some(4))?;
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)); // no sender yet: not disconnected
    /// let tx = B::named("doc-named-sender").sender::<u32>(Some(4))?;
    /// tx.send(1)?;
    /// assert_eq!(rx.recv(), Ok(1));
    /// B::named("doc-named-sender").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`channel`](Self::channel).
    pub fn sender<T: Message>(&self, capacity: Option<usize>) -> Result<B::Sender<T>, Error> {
        let (tx, _) = self.named_channel::<T>(capacity, true, false)?;
        expect_half(tx)
    }

    /// Only the receiving half of a named channel (`None`: unbounded); see
    /// [`sender`](Self::sender) for disconnection.
    ///
    /// ```
    /// use uniconc::{Backend, Receiver as _};
    /// type B = uniconc::thread::Thread;
    /// let rx = B::named("doc-named-receiver").receiver::<u32>(None)?;
    /// assert!(rx.is_empty());
    /// B::named("doc-named-receiver").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`channel`](Self::channel).
    pub fn receiver<T: Message>(&self, capacity: Option<usize>) -> Result<B::Receiver<T>, Error> {
        let (_, rx) = self.named_channel::<T>(capacity, false, true)?;
        expect_half(rx)
    }

    /// [`Backend::named_channel`], after checking the byte budget against the codec's limit
    /// (on every backend, so that a program is refused the same way whichever it runs on).
    #[allow(clippy::type_complexity)]
    fn named_channel<T: Message>(
        &self,
        capacity: Option<usize>,
        sender: bool,
        receiver: bool,
    ) -> Result<(Option<B::Sender<T>>, Option<B::Receiver<T>>), Error> {
        if let Some(b) = self.name.byte_budget
            && b > crate::codec::LIMIT
        {
            return Err(Error::invalid_argument(format!(
                "a channel byte budget is at most {} bytes, not {b}",
                crate::codec::LIMIT
            )));
        }
        B::named_channel::<T>(&self.name, capacity, sender, receiver)
    }

    /// A named lock (see [`Backend::lock`]); an example is on [`Named`].
    ///
    /// # Errors
    /// As [`Backend::lock`]; for the name, see the [module docs](self).
    pub fn lock(&self) -> Result<B::Lock, Error> {
        B::named_lock(&self.name)
    }

    /// A named semaphore; `permits` is used only when it is created.
    ///
    /// ```
    /// use uniconc::{Backend, Semaphore as _};
    /// type B = uniconc::thread::Thread;
    /// let s = B::named("doc-named-sem").semaphore(2)?;
    /// let again = B::named("doc-named-sem").semaphore(5)?; // opened: still 2 permits
    /// assert_eq!(again.available(), 2);
    /// drop(s.acquire());
    /// B::named("doc-named-sem").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::semaphore`]; for the name, see the [module docs](self).
    pub fn semaphore(&self, permits: usize) -> Result<B::Semaphore, Error> {
        B::named_semaphore(&self.name, permits)
    }

    /// A named event.
    ///
    /// ```
    /// use uniconc::{Backend, Event as _};
    /// type B = uniconc::thread::Thread;
    /// B::named("doc-named-event").event()?.set();
    /// assert!(B::named("doc-named-event").event()?.is_set());
    /// B::named("doc-named-event").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::event`]; for the name, see the [module docs](self).
    pub fn event(&self) -> Result<B::Event, Error> {
        B::named_event(&self.name)
    }

    /// A named barrier of `n` parties; opening it with another `n` is `Incompatible`.
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind};
    /// type B = uniconc::thread::Thread;
    /// let _b = B::named("doc-named-barrier").barrier(2)?;
    /// let e = B::named("doc-named-barrier").barrier(3).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Incompatible);
    /// B::named("doc-named-barrier").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::barrier`]; for the name, see the [module docs](self).
    pub fn barrier(&self, n: usize) -> Result<B::Barrier, Error> {
        B::named_barrier(&self.name, n)
    }

    /// A named value; `value` is stored only when it is created.
    ///
    /// ```
    /// use uniconc::{Backend, ErrorKind, Value as _};
    /// type B = uniconc::thread::Thread;
    /// let v = B::named("doc-named-value").value(1u64)?;
    /// v.store(5);
    /// assert_eq!(B::named("doc-named-value").value(0u64)?.load(), 5); // opened
    /// let e = B::named("doc-named-value").value(0u32).unwrap_err(); // another type
    /// assert_eq!(e.kind(), ErrorKind::Incompatible);
    /// B::named("doc-named-value").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::value`]; for the name, see the [module docs](self).
    pub fn value<T: Plain>(&self, value: T) -> Result<B::Value<T>, Error> {
        B::named_value(&self.name, value)
    }

    /// A named array of `len` elements (zeroed when created); opening it with another length
    /// is `Incompatible`.
    ///
    /// ```
    /// use uniconc::{Array as _, Backend};
    /// type B = uniconc::thread::Thread;
    /// B::named("doc-named-array").array::<u32>(3)?.set(1, 9)?;
    /// assert_eq!(B::named("doc-named-array").array::<u32>(3)?.to_vec(), [0, 9, 0]);
    /// B::named("doc-named-array").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::array`]; for the name, see the [module docs](self).
    pub fn array<T: Plain>(&self, len: usize) -> Result<B::Array<T>, Error> {
        B::named_array(&self.name, len)
    }

    /// A named map (see [`Backend::map`]); on open, the key and value types must be the ones
    /// asked for.
    ///
    /// ```
    /// use uniconc::{Backend, Map as _};
    /// type B = uniconc::thread::Thread;
    /// B::named("doc-named-map").map::<String, u32>()?.insert("a".into(), 1)?;
    /// assert_eq!(B::named("doc-named-map").map::<String, u32>()?.get("a")?, Some(1));
    /// B::named("doc-named-map").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::map`]; for the name, see the [module docs](self).
    pub fn map<K: Message + std::hash::Hash + Eq, V: Message>(
        &self,
    ) -> Result<B::Map<K, V>, Error> {
        B::named_map(&self.name)
    }

    /// A named list (see [`Backend::list`]); on open, the element type must be the one asked
    /// for.
    ///
    /// ```
    /// use uniconc::{Backend, List as _};
    /// type B = uniconc::thread::Thread;
    /// B::named("doc-named-list").list::<u8>()?.push(7)?;
    /// assert_eq!(B::named("doc-named-list").list::<u8>()?.to_vec()?, [7]);
    /// B::named("doc-named-list").unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::list`]; for the name, see the [module docs](self).
    pub fn list<T: Message>(&self) -> Result<B::List<T>, Error> {
        B::named_list(&self.name)
    }

    /// Removes the name. Returns `false` if it did not exist. Handles already open keep
    /// working on the object they opened; the next create under this name makes a new one.
    ///
    /// ```
    /// use uniconc::Backend;
    /// type B = uniconc::thread::Thread;
    /// B::named("doc-named-unlink").event()?;
    /// assert!(B::named("doc-named-unlink").unlink()?);
    /// assert!(!B::named("doc-named-unlink").unlink()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; `Os` if the OS refused (process backend).
    pub fn unlink(&self) -> Result<bool, Error> {
        B::unlink_named(self.name.as_str())
    }
}

fn expect_half<H>(h: Option<H>) -> Result<H, Error> {
    h.ok_or_else(|| Error::unsupported("the backend did not return the channel half asked for"))
}

/// The error a backend without named objects returns.
pub(crate) fn unsupported<B: Backend>() -> Error {
    Error::unsupported(format!(
        "the {} backend has no named objects",
        <B as Backend>::NAME
    ))
}

/// A process-wide table of named objects, for backends whose units share one process (thread,
/// tokio): each such backend keeps one in a `static`, so its names are shared by every unit of
/// the process. The entry holds a clone of the object's handle(s) until the name is unlinked.
///
/// ```
/// use uniconc::{ErrorKind, Name, OpenMode, named::Registry};
///
/// static NAMES: Registry = Registry::new();
/// let open = |mode| {
///     let name = Name::new("doc-registry", mode);
///     NAMES.open_or_create(&name, "a counter", 0, || Ok(std::sync::Arc::new(5u32)))
/// };
/// let a = open(OpenMode::Create)?;
/// let b = open(OpenMode::Open)?;
/// assert!(std::sync::Arc::ptr_eq(&a, &b)); // the same object
/// assert_eq!(open(OpenMode::Create).unwrap_err().kind(), ErrorKind::AlreadyExists);
/// assert!(NAMES.unlink("doc-registry")?);
/// assert_eq!(open(OpenMode::Open).unwrap_err().kind(), ErrorKind::NotFound);
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug)]
pub struct Registry {
    entries: std::sync::Mutex<std::collections::BTreeMap<String, Entry>>,
}

struct Entry {
    kind: &'static str,
    type_name: &'static str,
    shape: u64,
    handle: Box<dyn std::any::Any + Send + Sync>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry (usable in a `static`).
    ///
    /// ```
    /// static NAMES: uniconc::named::Registry = uniconc::named::Registry::new();
    /// assert!(!NAMES.unlink("nothing-here")?);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub const fn new() -> Self {
        Self {
            entries: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// A clone of the handle named `name` (checked to be of kind `kind`, handle type `H` and
    /// shape `shape`: a capacity, length or party count, 0 where none), or the one `create`
    /// makes, as `name`'s mode says. `create` runs with the registry locked: it must not use
    /// the registry.
    ///
    /// ```
    /// use uniconc::{ErrorKind, Name, OpenMode, named::Registry};
    /// let names = Registry::new();
    /// let n = Name::new("doc-shape", OpenMode::OpenOrCreate);
    /// names.open_or_create(&n, "a buffer", 4, || Ok(vec![0u8; 4]))?;
    /// let e = names.open_or_create(&n, "a buffer", 8, || Ok(vec![0u8; 8])).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Incompatible);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; `AlreadyExists`, `NotFound` or `Incompatible` (see
    /// the [module docs](self)); whatever `create` returns.
    pub fn open_or_create<H: Clone + Send + Sync + 'static>(
        &self,
        name: &Name,
        kind: &'static str,
        shape: u64,
        create: impl FnOnce() -> Result<H, Error>,
    ) -> Result<H, Error> {
        crate::validate::name(name.as_str())?;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = entries.get(name.as_str()) {
            if name.mode() == OpenMode::Create {
                return Err(Error::already_exists(format!(
                    "an object is already named {name}"
                )));
            }
            if e.kind != kind {
                return Err(Error::incompatible(format!(
                    "the named object {name} is {}, not {kind}",
                    e.kind
                )));
            }
            let Some(h) = e.handle.downcast_ref::<H>() else {
                return Err(Error::incompatible(format!(
                    "the named object {name} is `{}`, not `{}`",
                    e.type_name,
                    std::any::type_name::<H>()
                )));
            };
            if e.shape != shape {
                return Err(Error::incompatible(format!(
                    "the named object {name} has size {}, not {shape}",
                    e.shape
                )));
            }
            return Ok(h.clone());
        }
        if name.mode() == OpenMode::Open {
            return Err(Error::not_found(format!("no object is named {name}")));
        }
        let h = create()?;
        entries.insert(
            name.as_str().to_string(),
            Entry {
                kind,
                type_name: std::any::type_name::<H>(),
                shape,
                handle: Box::new(h.clone()),
            },
        );
        Ok(h)
    }

    /// Removes `name`: `Ok(false)` if it did not exist. The registry's handles are dropped
    /// (outside its lock); handles given out keep working.
    ///
    /// ```
    /// use uniconc::{Name, OpenMode, named::Registry};
    /// let names = Registry::new();
    /// names.open_or_create(&Name::new("doc-unlink", OpenMode::Create), "a number", 0, || Ok(1u8))?;
    /// assert!(names.unlink("doc-unlink")?);
    /// assert!(!names.unlink("doc-unlink")?);
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name.
    pub fn unlink(&self, name: &str) -> Result<bool, Error> {
        crate::validate::name(name)?;
        let removed = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        Ok(removed.is_some())
    }
}

/// The named constructors of a [`Backend`] impl whose units share one process (thread,
/// tokio), over a process-wide [`Registry`]: invoke it inside the impl, after
/// [`backend_items!`](crate::backend_items). The crate root must name its pieces as
/// `backend_items!` expects.
///
/// A named channel there is held by the registry (one sender and one receiver) until the
/// name is unlinked: within one process there is no peer to die, and a named channel stays
/// connected while its name exists.
#[macro_export]
macro_rules! named_registry_items {
    () => {
        #[allow(clippy::type_complexity)]
        fn named_channel<T: $crate::Message>(
            name: &$crate::Name,
            capacity: ::core::option::Option<usize>,
            sender: bool,
            receiver: bool,
        ) -> ::core::result::Result<
            (
                ::core::option::Option<Sender<T>>,
                ::core::option::Option<Receiver<T>>,
            ),
            $crate::Error,
        > {
            let (tx, rx) = Self::names().open_or_create(
                name,
                "a channel",
                capacity.map_or(u64::MAX, |c| c as u64),
                || match capacity {
                    Some(c) => channel::<T>(c),
                    None => unbounded::<T>(),
                },
            )?;
            Ok((sender.then_some(tx), receiver.then_some(rx)))
        }

        fn named_lock(name: &$crate::Name) -> ::core::result::Result<Lock, $crate::Error> {
            Self::names().open_or_create(name, "a lock", 0, || <Lock as $crate::Lock>::new())
        }

        fn named_semaphore(
            name: &$crate::Name,
            permits: usize,
        ) -> ::core::result::Result<Semaphore, $crate::Error> {
            Self::names().open_or_create(name, "a semaphore", 0, || {
                <Semaphore as $crate::Semaphore>::new(permits)
            })
        }

        fn named_event(name: &$crate::Name) -> ::core::result::Result<Event, $crate::Error> {
            Self::names().open_or_create(name, "an event", 0, || <Event as $crate::Event>::new())
        }

        fn named_barrier(
            name: &$crate::Name,
            n: usize,
        ) -> ::core::result::Result<Barrier, $crate::Error> {
            Self::names().open_or_create(name, "a barrier", n as u64, || {
                <Barrier as $crate::Barrier>::new(n)
            })
        }

        fn named_value<T: $crate::Plain>(
            name: &$crate::Name,
            value: T,
        ) -> ::core::result::Result<Value<T>, $crate::Error> {
            Self::names().open_or_create(name, "a value", 0, || {
                <Value<T> as $crate::Value<T>>::new(value)
            })
        }

        fn named_array<T: $crate::Plain>(
            name: &$crate::Name,
            len: usize,
        ) -> ::core::result::Result<Array<T>, $crate::Error> {
            Self::names().open_or_create(name, "an array", len as u64, || {
                <Array<T> as $crate::Array<T>>::new(len)
            })
        }

        fn named_map<K, V>(name: &$crate::Name) -> ::core::result::Result<Map<K, V>, $crate::Error>
        where
            K: $crate::Message + ::core::hash::Hash + Eq,
            V: $crate::Message,
        {
            Self::names()
                .open_or_create(name, "a map", 0, || <Map<K, V> as $crate::Map<K, V>>::new())
        }

        fn named_list<T: $crate::Message>(
            name: &$crate::Name,
        ) -> ::core::result::Result<List<T>, $crate::Error> {
            Self::names().open_or_create(name, "a list", 0, || <List<T> as $crate::List<T>>::new())
        }

        fn unlink_named(name: &str) -> ::core::result::Result<bool, $crate::Error> {
            Self::names().unlink(name)
        }
    };
}
