//! The cross-process channel: an MPMC [`ring`](crate::ring) of serialized messages in shared
//! memory, bounded by message count and by a byte budget (an unbounded channel's budget is a
//! reservation sized to the machine, see [`unbounded`]).
//!
//! The files, one mechanism each:
//!
//! - `mod.rs`: the handles ([`Sender`], [`Receiver`], [`ChannelBuilder`]) and the
//!   `uniconc` trait impls: sending and receiving on the ring.
//! - `layout.rs`: the shared header, the per-process slots and the process-local `Chan`;
//!   creating and mapping a channel's region.
//! - `members.rs`: per-process handle counting, fork adoption, claiming a slot.
//! - `recover.rs`: finding dead peers and settling what they left (`reap`).
//! - `wait.rs`: the wake handshake, the adaptive spin ([`Backoff`]) and sleeping.
//! - `select.rs`: [`ProcSelector`], selecting over several channels with one sleep.
//! - `registry.rs`: the live channels of this process, kept right across `fork`.
//! - `tests.rs`: unit tests.
//!
//! # Layout of a channel's region
//!
//! ```text
//! [ ChanHeader | CellCtl * n | (page-aligned) data: n * CELL bytes ]
//! ```
//!
//! # Sending and receiving
//!
//! A sender counts the value's encoded size (bincode, no allocation), reserves one of the
//! `capacity` message slots (`count`), claims `ceil(size / CELL)` cells of the ring and
//! serializes the value straight into them. A receiver decodes straight from the cells.
//! Waiting is spin-then-futex: a short spin (a ping-pong partner usually answers within it),
//! then a futex sleep on a sequence word, bounded to [`SLICE`] so a waiter re-checks whether
//! its peers are alive.
//!
//! # Batches
//!
//! `send_batch` fills one claim of the ring (`Ring::claim_batch`: one reservation of message
//! slots, one `tail` CAS) with as many items as fit, then wakes receivers once. Small items
//! (up to `ring::PACK_ITEM` bytes encoded) are encoded straight into *packs*, records holding
//! many messages (`ring`'s "Packs"), without a size pass; larger ones are measured as they
//! are pulled and each encoded into a record of its own. It pulls an item only after the one
//! before it was sent (written into its pack or record), so a disconnection or an item the
//! channel refuses hands back that item and leaves the rest in the iterator.
//! `recv_batch` takes every message published at the front of the ring, up to `max`, with
//! one claim (`Ring::try_pop_batch`; from a pack at the front, up to `max` of its messages),
//! decodes them into the caller's `Vec` and wakes senders once; when nothing is published it
//! waits for one message as `recv` does, then takes what else is there. A message that cannot
//! be decoded inside a batch is reported after the others taken with it are in the `Vec`
//! (they were consumed with it).
//!
//! # What `Empty` and `len` mean
//!
//! `try_recv` (and so `try_iter`) says `Empty` only when nothing is queued, as crossbeam's
//! does. A sender claims its place in the ring before it encodes the message there, so the
//! front of the ring may be a message not yet published with others published behind it;
//! `try_recv` then waits for it, as crossbeam spins for a slot being written: a short spin,
//! then naps, at most [`IN_FLIGHT_PATIENCE`] (100 ms) in all. A sender killed there is found
//! dead within that wait and its message is settled as lost, so `try_recv` returns the next
//! one. A sender stopped there for longer (SIGSTOP, or descheduled that long) makes `try_recv`
//! return `Empty` rather than block, though messages are queued behind it: none can be taken
//! before it. The cheap look the blocking forms poll with does not tell the two apart (that
//! would read `tail`, the line every send writes, at every poll); they wait for the message
//! anyway. After disconnection, a message still being written is drained too.
//!
//! `len` counts the messages sent and not yet received, including sends and receives under
//! way (a message slot is taken before the cells, and given back after the message is
//! read): it may be non-zero right after `try_recv` said `Empty` while other units send or
//! receive, and `len() == 0` means `try_recv` would have found nothing.
//!
//! # Waking, with no fence on the hot path
//!
//! A waiter raises a sleeper flag and re-checks before it sleeps; a sender or receiver that
//! changed the condition reads the flag and wakes sleepers only if it is up. That is the
//! store-buffering pattern: each side writes one word and reads the other's, and at least one
//! must see the other's write. Instead of a fence on every send and receive, both sides use
//! SeqCst operations they make anyway (a locked instruction on x86, so the fast path pays no
//! extra barrier):
//!
//! - receivers waiting for a message: the producer's SeqCst `tail` CAS (claiming the cells)
//!   then its SeqCst load of the flag, against the waiter's SeqCst flag store then its SeqCst
//!   load of `tail`. A waiter that sees `tail` past `head` knows a message is coming but that
//!   its producer may have read the flag too early: it naps briefly ([`claimed_nap`]).
//! - senders waiting for room: the consumer's SeqCst `recvd` increment and SeqCst completion
//!   (the `done` CAS or the `READ` stamp) then its SeqCst load of the flag, against the
//!   waiter's SeqCst flag store then its SeqCst loads of `recvd`, `done` and the stamps it
//!   sweeps ([`Ring::recheck_room`]).
//! - disconnection and `close`: the SeqCst count decrement or `closed` store, then a bump of
//!   `seq` (no flag involved) or a SeqCst load of the flag, against SeqCst loads of the
//!   counts in every re-check.
//!
//! # Disconnection across processes
//!
//! The header has one [`ProcSlot`] per process holding handles: its identity (pid and start
//! time) and its sender and receiver counts; `conn` holds the totals that decide
//! disconnection. A process killed without dropping its handles (SIGKILL) is found by any
//! blocked peer within about one [`SLICE`]: its slot's counts are subtracted (`reap`).
//!
//! `fork` copies *every* handle of the parent into the child, including ones the child will
//! never touch (the parent's own `tx` in `spawn(move || rx.iter().sum())`): counting those
//! would make that receiver wait forever on a sender that lives, unused, in its own memory.
//! So a child's copies are *inherited* handles, counted apart:
//!
//! - The `pthread_atfork` handlers (see [`registry`]) reserve a slot for the child before the
//!   fork and count its inherited handles at once, so the parent dropping its handles right
//!   after `fork` cannot disconnect a child that has not yet run. Nothing is needed from the
//!   code that forks.
//! - Each handle carries the fork generation it was last used in; a handle used in the child
//!   (send, receive, clone) is *adopted* and counts as a normal handle.
//! - The first adoption *engages* the child with the channel: from then on its inherited
//!   handles it has not used stop counting (they are the parent's leftovers). A child that
//!   never uses the channel keeps its inherited handles counted until it exits, until it
//!   calls [`forget_inherited_handles`] (long-lived workers should), or until it `exec`s.
//! - `exec` ends a process's hold on its handles (Linux): each process with a slot keeps the
//!   slot's byte of the channel's memory file locked through a close-on-exec descriptor of
//!   its own (an open file description lock, `crate::holder`), and the kernel releases it at
//!   `exec` as at death. A reaper that finds a live pid whose byte is no longer locked, and
//!   that no longer maps the channel (`/proc/<pid>/maps`), reaps the slot as a dead
//!   process's. So a program started by `fork` + `exec` while handles are
//!   held (a `std::process::Command` with a `pre_exec` hook forks, and the fork handlers
//!   count the child) stops holding them once it runs; a blocked peer sees that within about
//!   one [`SLICE`]. A `Command` without `pre_exec` starts its program with `posix_spawn`,
//!   which runs no fork handlers: it is never counted. The library's own clean-started
//!   workers (`Start::Clean`, `spawn_task`) are not counted either: their fork is marked as
//!   one that only execs. A process that closes that descriptor (say, a forked child that
//!   closes every descriptor and runs on) still maps the channel: it keeps counting, told
//!   alive or dead by its pid from then on (an exec of it is then noticed only when it
//!   exits). Without OFD locks (other
//!   Unixes, `--cfg uniconc_fallback`), an exec'd program holds the handles counted for it
//!   until it exits: start such programs before making channels, or from a process that
//!   holds none.
//!
//! # A process killed inside `send` or `recv`
//!
//! A process killed while it holds a message (claimed in the ring, not yet given back:
//! SIGKILL while decoding) or while it writes one (cells claimed, not yet published: SIGKILL
//! while encoding) loses that message and nothing else. Each thread has claim words in its
//! process's slot ([`claims`] gives out the indices); the reaper that finds the process dead
//! settles what its words name, unless a live thread's words name the same record
//! (`Chan::recover_claims`, `Ring::recover`, `Ring::recover_send`). Blocked peers look for
//! dead ones every [`SLICE`], so the ring moves again within about that.
//!
//! Known limits: a thread without claim words (the ninth of one process using channels at
//! once) holds back every recovery while it is inside a send or receive, and what it held is
//! not recovered if its process dies. A process killed in the instant between two steps of a
//! send or receive is settled as if it held a message slot: the channel may then hold one
//! message more than its capacity. A failed `fork` leaves its reserved slot counted until
//! the parent exits.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uniconc_core::{
    Error, Message, MessageError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};

use crate::claims;
use crate::codec;
use crate::platform;
use crate::procs::{self, Identity};
use crate::ring::{self, CELL, CellCtl, Pop, Record, Ring, RingHeader, SendWords, Taker};
use crate::shm::{self, CachePadded, ShmBox, ShmSafe, align_up};
use crate::waiter::{SLICE, WaitWord, YieldNow};
use crate::wake;

mod layout;
mod members;
mod named;
mod recover;
pub(crate) mod registry;
mod select;
mod travel;
pub(crate) use travel::{travel_fork_lock, travel_fork_unlock};
mod wait;

use layout::*;
use members::*;
use wait::*;

pub(crate) use named::named_channel;
pub use select::ProcSelector;

/// Process slots per channel: how many processes can hold handles of one channel at once.
///
/// `spawn` and the pool refuse to fork (with a clear error) while a channel this process holds
/// handles of has no free slot, after reaping dead peers: an uncounted child's sends could
/// arrive after its receivers saw `Disconnected`. A process forked some other way when every
/// slot is taken is not counted.
pub const MAX_PROCESSES: usize = 4096;

/// In a forked child, stops counting the channel handles copied from the parent that this
/// process has not used yet, so they keep no channel connected. A long-lived worker process
/// (a pool worker) should call it first: otherwise it keeps every channel that existed when
/// it was forked connected until it exits. Handles it uses later are counted again.
///
/// ```
/// use uniconc::{Event as _, JoinHandle as _, Receiver as _, RecvError};
/// let (tx, rx) = uniconc::process::channel::<u8>(1)?;
/// let done = uniconc::process::event()?;
/// let child = uniconc::process::spawn({
///     let done = done.clone();
///     move || {
///         // This child never uses the channel: its copy of the parent's `tx` must not
///         // keep the channel connected while it waits.
///         uniconc::process::forget_inherited_handles();
///         done.wait();
///     }
/// })?;
/// drop(tx); // the only sender that counts
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected)); // not held up by the live child
/// done.set();
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn forget_inherited_handles() {
    registry::engage_all();
}

/// The largest message an unbounded channel accepts, in encoded bytes (the codec's limit).
///
/// What an unbounded channel can *queue* is far more: see [`unbounded`].
///
/// ```
/// let (tx, _rx) = uniconc::process::unbounded::<Vec<u8>>()?;
/// assert_eq!(tx.max_message_size(), uniconc::process::UNBOUNDED_BUDGET);
/// # Ok::<(), uniconc::Error>(())
/// ```
pub const UNBOUNDED_BUDGET: usize = codec::LIMIT;

/// Options for a process channel beyond its capacity.
///
/// [`channel`] and [`unbounded`] are `ChannelBuilder::new(Some(capacity)).build()` and
/// `ChannelBuilder::new(None).build()`; the builder adds the byte budget, which also sets the
/// largest message the channel accepts.
///
/// ```
/// use uniconc::{Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::ChannelBuilder::new(Some(16))
///     .byte_budget(64 << 10)
///     .build::<Vec<u8>>()?;
/// assert_eq!(tx.capacity(), Some(16));
/// assert_eq!(tx.max_message_size(), 64 << 10);
/// tx.send(vec![7; 1000])?;
/// assert_eq!(rx.recv()?.len(), 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ChannelBuilder {
    capacity: Option<usize>,
    byte_budget: Option<usize>,
}

impl ChannelBuilder {
    /// A builder for a channel holding at most `capacity` messages (`None`: unbounded).
    ///
    /// ```
    /// use uniconc::Sender as _;
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, _rx) = ChannelBuilder::new(None).build::<String>()?;
    /// assert_eq!(tx.capacity(), None);
    /// let (tx, _rx) = ChannelBuilder::new(Some(3)).build::<String>()?;
    /// assert_eq!(tx.capacity(), Some(3));
    /// assert!(ChannelBuilder::new(Some(0)).build::<String>().is_err()); // checked by `build`
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn new(capacity: Option<usize>) -> Self {
        Self {
            capacity,
            byte_budget: None,
        }
    }

    /// Bytes of ring space for queued messages (rounded up to a power of two, at least 4 KiB);
    /// also the largest message the channel accepts. Default: `capacity * 256` bytes within
    /// 1 MiB ..= 256 MiB; for an unbounded channel, a reservation sized to the machine (see
    /// [`unbounded`]), which this replaces. Pages are committed only when first used. At most
    /// 256 MiB (the codec's decode limit).
    ///
    /// The budget is a ring: a message waits until there is room for it after the messages
    /// queued before it, so one as large as the budget waits until the channel is empty. On a
    /// bounded channel, large messages (16 KiB and up) go back to the start of the ring once
    /// they have walked 8 MiB of it and the start is free for `capacity` of them, to stay in
    /// cache; a message larger than those may then wait for the receivers to come round,
    /// though the budget's total has room for it.
    ///
    /// ```
    /// use uniconc::{MessageError, SendError, Sender as _};
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, _rx) = ChannelBuilder::new(Some(4)).byte_budget(5000).build::<Vec<u8>>()?;
    /// assert_eq!(tx.max_message_size(), 8192); // rounded up to a power of two
    /// match tx.send(vec![0; 10_000]) {
    ///     Err(SendError::Invalid(v, MessageError::TooLarge { size, limit })) => {
    ///         assert_eq!(v.len(), 10_000); // the message comes back
    ///         assert!(size > limit && limit == 8192);
    ///     }
    ///     other => panic!("expected TooLarge, got {other:?}"),
    /// }
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = Some(bytes);
        self
    }

    /// Creates the channel.
    ///
    /// ```
    /// use uniconc::{ErrorKind, JoinHandle as _, Receiver as _, Sender as _};
    /// use uniconc::process::ChannelBuilder;
    /// let (tx, rx) = ChannelBuilder::new(Some(2)).byte_budget(4096).build::<u32>()?;
    /// let child = uniconc::process::spawn(move || (1..=3).all(|i| tx.send(i).is_ok()))?;
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// assert!(child.join()?);
    ///
    /// let err = ChannelBuilder::new(Some(1)).byte_budget(1 << 40).build::<u32>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` for a capacity of 0 or an unrepresentable budget; `Os` if the shared
    /// memory cannot be mapped.
    pub fn build<T: Message>(self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let chan = Arc::new(new_chan(self.capacity, self.byte_budget)?);
        let tx_gen = chan.add_new(true);
        let rx_gen = chan.add_new(false);
        registry::register(&chan);
        Ok((
            Sender {
                chan: chan.clone(),
                gen_stamp: tx_gen,
                _m: PhantomData,
                travel: AtomicBool::new(false),
            },
            Receiver {
                chan,
                gen_stamp: rx_gen,
                _m: PhantomData,
                travel: AtomicBool::new(false),
            },
        ))
    }
}

/// A bounded channel holding at most `capacity` messages, shared with processes forked after
/// it was created.
///
/// Its byte budget (the ring of encoded messages) is `capacity * 256` bytes within
/// 1 MiB ..= 256 MiB, which is also the largest message it accepts; see [`ChannelBuilder`]
/// to choose it.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<String>(8)?;
/// let child = uniconc::process::spawn(move || {
///     tx.send(format!("hello from {}", std::process::id())).unwrap();
/// })?;
/// let child_pid = child.id();
/// child.join()?;
/// assert_eq!(rx.recv()?, format!("hello from {child_pid}"));
/// assert!(uniconc::process::channel::<String>(0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `InvalidArgument` if `capacity == 0`; `Os` if shared memory cannot be mapped.
pub fn channel<T: Message>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    ChannelBuilder::new(Some(capacity)).build()
}

/// A channel without a bound on the number of messages, shared with processes forked after
/// it was created.
///
/// Its ring is a reservation of address space (the largest power of two at most half of RAM
/// plus swap, an eighth of `RLIMIT_AS` if set, and 1 GiB), mapped with `MAP_NORESERVE`:
/// pages are committed when first used, so an idle channel takes no memory and `fork` stays
/// cheap. So it holds up to 1 GiB of queued messages (16 million small ones) where the
/// thread and tokio backends hold what memory allows; past that it behaves as a full bounded
/// channel: `try_send` returns `Full` and `send` waits for room.
///
/// Memory: the ring keeps to its first 1 MiB as long as it is empty now and then (a producer
/// that crosses that mark while nothing is queued goes back to the start). A channel that
/// always holds a backlog walks its whole ring instead, and the pages it used stay committed
/// until the channel is dropped in every process: up to 2 GiB (the ring and its control
/// lines). Under strict overcommit (`vm.overcommit_memory = 2`), which charges even a
/// `MAP_NORESERVE` mapping in full, the reservation is halved until the OS grants it, down
/// to 64 MiB. The largest single message is [`UNBOUNDED_BUDGET`] bytes encoded.
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::unbounded::<Vec<u8>>()?;
/// assert_eq!(tx.capacity(), None);
/// let child = uniconc::process::spawn(move || {
///     (0..100u8).all(|i| tx.try_send(vec![i; 1000]).is_ok())
/// })?;
/// assert!(child.join()?); // never full: 100 KB queued, far below the budget
/// assert_eq!(rx.len(), 100);
/// assert_eq!(rx.recv()?, vec![0; 1000]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// `Os` if shared memory cannot be mapped.
pub fn unbounded<T: Message>() -> Result<(Sender<T>, Receiver<T>), Error> {
    ChannelBuilder::new(None).build()
}

/// The sending half of a process channel. `Clone`; copied into forked children.
///
/// A message is serde-encoded straight into a ring in shared memory, so it crosses to any
/// process forked after the channel was created. A message larger than
/// [`max_message_size`](Sender::max_message_size) is refused with
/// `SendError::Invalid(value, MessageError::TooLarge { .. })`, handing it back. A process
/// that is killed (SIGKILL) while holding senders counts as having dropped them: receivers
/// blocked on the channel see `Disconnected` instead of waiting forever. The send methods
/// come from [`uniconc::Sender`](uniconc_core::Sender).
///
/// ```
/// use uniconc::{Event as _, JoinError, JoinHandle as _, Receiver as _, RecvError};
/// let (tx, rx) = uniconc::process::channel::<u32>(1)?;
/// let (ready, never) = (uniconc::process::event()?, uniconc::process::event()?);
/// let child = uniconc::process::spawn({
///     let (ready, never) = (ready.clone(), never.clone());
///     move || {
///         let _tx = tx; // the only sender, held by the child
///         ready.set();
///         never.wait();
///     }
/// })?;
/// ready.wait();
/// child.kill()?;
/// assert_eq!(child.join(), Err(JoinError::Killed(9)));
/// assert_eq!(rx.recv(), Err(RecvError::Disconnected)); // the dead child's sender is gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T> {
    chan: Arc<Chan>,
    /// Fork generation this handle was created or last adopted in.
    gen_stamp: AtomicU64,
    _m: PhantomData<fn(T)>,
    /// Set when this handle is serialized and its end in flight counted (`travel.rs`), so
    /// that the serializer's passes over one message (size, then bytes) count it once.
    travel: AtomicBool,
}

/// The receiving half of a process channel. `Clone`; copied into forked children.
///
/// Each message goes to exactly one receiver, in whichever process. A message that cannot
/// be decoded is consumed and reported as `Invalid(MessageError::Decode(..))`. The receive
/// methods come from [`uniconc::Receiver`](uniconc_core::Receiver).
///
/// ```
/// use uniconc::{JoinHandle as _, Receiver as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
/// let consumer = uniconc::process::spawn(move || rx.iter().sum::<u64>())?;
/// for i in 1..=10 {
///     tx.send(i)?;
/// }
/// drop(tx); // the child's own copy of `tx` does not count: it uses only `rx`
/// assert_eq!(consumer.join()?, 55);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan>,
    /// Fork generation this handle was created or last adopted in.
    gen_stamp: AtomicU64,
    _m: PhantomData<fn() -> T>,
    /// Set when this handle is serialized and its end in flight counted (`travel.rs`), so
    /// that the serializer's passes over one message (size, then bytes) count it once.
    travel: AtomicBool,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.touch(&self.gen_stamp, true);
        Self {
            gen_stamp: self.chan.add_new(true),
            chan: self.chan.clone(),
            _m: PhantomData,
            travel: AtomicBool::new(false),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.touch(&self.gen_stamp, false);
        Self {
            gen_stamp: self.chan.add_new(false),
            chan: self.chan.clone(),
            _m: PhantomData,
            travel: AtomicBool::new(false),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.remove(&self.gen_stamp, true);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.remove(&self.gen_stamp, false);
    }
}

/// A message on its way into the ring: its encoded size, then its bytes, written straight
/// into the cells claimed for it.
trait Outgoing {
    /// The encoded size in bytes (`usize::MAX` if it overflows: refused as too large).
    fn size(&self) -> Result<usize, MessageError>;
    /// Writes exactly `buf.len()` (the measured size) bytes into `buf`. Called at most once
    /// per message sent; may panic (the ring then publishes padding instead).
    fn write(&mut self, buf: &mut [u8]) -> Result<(), MessageError>;
}

/// A value, serde-encoded (`send`).
struct Encoded<T>(T);

impl<T: Serialize + 'static> Outgoing for Encoded<T> {
    #[inline]
    fn size(&self) -> Result<usize, MessageError> {
        codec::encoded_size(&self.0)
    }

    #[inline]
    fn write(&mut self, buf: &mut [u8]) -> Result<(), MessageError> {
        let mut err = None;
        if encode_exact(&self.0, buf.len(), buf, &mut err) {
            Ok(())
        } else {
            Err(err.unwrap_or_else(|| MessageError::Encode("unknown".into())))
        }
    }
}

/// A byte message of `len` bytes written by the caller's closure (`send_with`): the length
/// prefix a `Vec<u8>` is encoded with, then the closure fills the bytes after it in place.
struct Filled<'a, F> {
    len: usize,
    /// Taken by the one `write`.
    fill: Option<F>,
    /// This process's slot in the channel: marked while `fill` runs (see `IN_CLOSURE`).
    slot: &'a ProcSlot,
}

impl<F: FnOnce(&mut [u8])> Outgoing for Filled<'_, F> {
    #[inline]
    fn size(&self) -> Result<usize, MessageError> {
        Ok(codec::bytes_encoded_size(self.len).unwrap_or(usize::MAX))
    }

    #[inline]
    fn write(&mut self, buf: &mut [u8]) -> Result<(), MessageError> {
        let at = codec::put_bytes_header(self.len, buf);
        let fill = self.fill.take().expect("a message is written once");
        let _in = InClosure::enter(self.slot);
        // `buf` is the measured size, `at + len` bytes: `fill` gets exactly `len`.
        fill(&mut buf[at..]);
        Ok(())
    }
}

/// Wakes the senders and receivers sleeping on a channel when dropped: forgotten on the
/// normal path, so it runs only when a closure (a `send_with` or `recv_with` closure, a
/// serde impl) panics inside the ring, after the ring has settled what it held.
struct WakeOnUnwind<'a>(&'a Chan);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.notify(&self.0.hdr().recv_wait);
        self.0.notify(&self.0.hdr().send_wait);
    }
}

/// `e` with its value mapped by `f`.
fn map_send_err<A, B>(e: SendError<A>, f: impl FnOnce(A) -> B) -> SendError<B> {
    match e {
        SendError::Disconnected(v) => SendError::Disconnected(f(v)),
        SendError::Invalid(v, m) => SendError::Invalid(f(v), m),
    }
}

/// `e` with its value mapped by `f`.
fn map_timeout_err<A, B>(e: SendTimeoutError<A>, f: impl FnOnce(A) -> B) -> SendTimeoutError<B> {
    match e {
        SendTimeoutError::Timeout(v) => SendTimeoutError::Timeout(f(v)),
        SendTimeoutError::Disconnected(v) => SendTimeoutError::Disconnected(f(v)),
        SendTimeoutError::Invalid(v, m) => SendTimeoutError::Invalid(f(v), m),
    }
}

enum TrySend<T> {
    Full(T),
    Err(SendError<T>),
}

impl<T: Serialize + 'static> Sender<T> {
    /// The largest encoded message this channel accepts, in bytes.
    ///
    /// ```
    /// use uniconc::{SendError, Sender as _};
    /// let (tx, _rx) = uniconc::process::channel::<Vec<u8>>(8)?;
    /// assert_eq!(tx.max_message_size(), 1 << 20); // the default budget of a small channel
    /// let too_big = vec![0u8; tx.max_message_size() + 1];
    /// assert!(matches!(tx.send(too_big), Err(SendError::Invalid(..))));
    /// # Ok::<(), uniconc::Error>(())
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.chan.max_msg
    }

    fn try_send_inner(&self, value: T) -> Result<(), TrySend<T>> {
        self.try_push(Encoded(value)).map_err(|e| match e {
            TrySend::Full(v) => TrySend::Full(v.0),
            TrySend::Err(e) => TrySend::Err(map_send_err(e, |v| v.0)),
        })
    }

    /// One attempt to send `value`: it is measured, then written straight into the cells it
    /// claims if there is room right now.
    fn try_push<V: Outgoing>(&self, mut value: V) -> Result<(), TrySend<V>> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, true);
        if chan.receivers_gone() {
            return Err(TrySend::Err(SendError::Disconnected(value)));
        }
        let size = match value.size() {
            Ok(s) => s,
            Err(e) => return Err(TrySend::Err(SendError::Invalid(value, e))),
        };
        if size > chan.max_msg {
            let e = MessageError::TooLarge {
                size,
                limit: chan.max_msg,
            };
            return Err(TrySend::Err(SendError::Invalid(value, e)));
        }
        let mut enc_err = None;
        let claim = Claim::new(chan);
        // A write that panics (a `send_with` closure, a `Serialize` impl) leaves padding in
        // the ring and gives its message slot back: wake both sides, as a receive or a send
        // would, so nobody sleeps a whole slice on that change.
        let wake = WakeOnUnwind(chan);
        let pushed = chan.ring().try_push(
            size,
            chan.cap,
            claim.send_words(),
            claim.word(),
            |buf| match value.write(buf) {
                Ok(()) => true,
                Err(e) => {
                    enc_err = Some(e);
                    false
                }
            },
        );
        std::mem::forget(wake);
        match pushed {
            Ok(true) => {
                chan.notify(&chan.hdr().recv_wait);
                Ok(())
            }
            Ok(false) => {
                let e = enc_err.unwrap_or_else(|| MessageError::Encode("unknown".into()));
                Err(TrySend::Err(SendError::Invalid(value, e)))
            }
            Err(ring::Full) => Err(TrySend::Full(value)),
        }
    }

    fn send_inner<V: Outgoing>(
        &self,
        mut value: V,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<V>> {
        let mut backoff = Backoff::new(&self.chan);
        let w = &self.chan.hdr().send_wait;
        loop {
            match self.try_push(value) {
                Ok(()) => {
                    backoff.succeeded();
                    return Ok(());
                }
                Err(TrySend::Err(e)) => return Err(e.into()),
                Err(TrySend::Full(v)) => value = v,
            }
            if backoff.snooze_spaced() {
                // Spinning: retry only once a quarter of the capacity is free again, so a
                // sender faster than its receivers refills in batches instead of reading
                // `recvd` (which every receive writes) at every send.
                while !self.chan.below_low_water() && backoff.snooze_spaced() {}
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(SendTimeoutError::Timeout(value));
            }
            let seq = self.prepare_sleep();
            match self.try_push(value) {
                Ok(()) => return Ok(()),
                Err(TrySend::Err(e)) => return Err(e.into()),
                Err(TrySend::Full(v)) => value = v,
            }
            self.chan.sleep(w, seq, deadline, SLICE, &mut backoff);
        }
    }
}

/// What one batch step ([`Sender::push_batch`]) did.
enum BatchStep<T> {
    /// The iterator is exhausted: everything was sent.
    Done,
    /// The claim was filled; this item (pulled from the iterator and measured) is next.
    Next(T, usize),
    /// Nothing was sent: no room for this item (it goes first when there is).
    Full(T, usize),
    /// The item that could not be sent, and why.
    Err(SendError<T>),
}

impl<T: Serialize + 'static> Sender<T> {
    /// The encoded size of `value`, or the error that refuses it.
    fn measure(&self, value: T) -> Result<(T, usize), SendError<T>> {
        match codec::encoded_size(&value) {
            Ok(size) if size <= self.chan.max_msg => Ok((value, size)),
            Ok(size) => {
                let limit = self.chan.max_msg;
                Err(SendError::Invalid(
                    value,
                    MessageError::TooLarge { size, limit },
                ))
            }
            Err(e) => Err(SendError::Invalid(value, e)),
        }
    }

    /// Sends `value` (`size` bytes encoded) and as many of the items after it as fit in one
    /// claim of the ring (one reservation of message slots, one `tail` CAS, one wake-up),
    /// pulling them from `items` one at a time: an item is pulled only when the one before
    /// it was sent, so the caller's iterator keeps every item not sent but the one returned.
    fn push_batch(
        &self,
        value: T,
        size: usize,
        items: &mut impl Iterator<Item = T>,
        sent: &mut usize,
    ) -> BatchStep<T> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, true);
        if chan.receivers_gone() {
            return BatchStep::Err(SendError::Disconnected(value));
        }
        let claim = Claim::new(chan);
        let ring = chan.ring();
        let want = (items.size_hint().0 as u64).saturating_add(1);
        // Small messages, more than one: packed several to a cache line (`ring`'s "Packs").
        // The cells for `want` of this size, a pack's header and rounding per pack.
        let packing = size <= ring::PACK_ITEM && want > 1 && chan.max_msg >= ring::PACK_BYTES;
        let (first, cells) = if packing {
            let bytes = want.min(ring::BATCH_MAX) * (1 + size as u64);
            let packs = bytes.div_ceil((ring::PACK_BYTES - ring::PACK_HEADER) as u64);
            (
                ring::cells_for(ring::PACK_HEADER + 1 + size),
                (bytes + packs * (ring::PACK_HEADER + CELL) as u64).div_ceil(CELL as u64),
            )
        } else {
            let first = ring::cells_for(size);
            (first, first.saturating_mul(want.min(ring::BATCH_MAX)))
        };
        let batch = ring.claim_batch(chan.cap, claim.send_words(), first, want, cells);
        let mut b = match batch {
            Ok(b) => b,
            Err(ring::Batch::Full) => return BatchStep::Full(value, size),
            Err(ring::Batch::Elsewhere) => {
                // A record that goes round the end of the ring: the single form.
                return match self.try_send_inner(value) {
                    Ok(()) => {
                        *sent += 1;
                        match items.next().map(|v| self.measure(v)) {
                            None => BatchStep::Done,
                            Some(Ok((v, s))) => BatchStep::Next(v, s),
                            Some(Err(e)) => BatchStep::Err(e),
                        }
                    }
                    Err(TrySend::Full(v)) => BatchStep::Full(v, size),
                    Err(TrySend::Err(e)) => BatchStep::Err(e),
                };
            }
        };
        let step = if packing {
            self.push_packs(&mut b, value, items, sent)
        } else {
            let (mut value, mut size) = (value, size);
            loop {
                match push_one(&mut b, value, size, sent) {
                    Ok(()) => {}
                    Err(step) => break step,
                }
                match items.next().map(|v| self.measure(v)) {
                    None => break BatchStep::Done,
                    Some(Ok((v, s))) => (value, size) = (v, s),
                    Some(Err(e)) => break BatchStep::Err(e),
                }
            }
        };
        // Publishes the unused cells as padding and gives the unused slots back.
        drop(b);
        // The `tail` CAS (SeqCst) of the claim, then this: the notifier half of the
        // receivers' wake handshake (module docs), once for the batch.
        chan.notify(&chan.hdr().recv_wait);
        step
    }

    /// [`Sender::push_batch`]'s loop for small messages: `value` and the items after it are
    /// encoded straight into packs (`ring`'s "Packs"), without measuring them first: a pack
    /// too full for the next message is published and another opened. A message that needs
    /// more than a pack gives it (larger than `ring::PACK_ITEM`) is measured and written as a
    /// record of its own, as one that cannot be encoded is refused.
    fn push_packs(
        &self,
        b: &mut ring::BatchClaim<'_, '_>,
        mut value: T,
        items: &mut impl Iterator<Item = T>,
        sent: &mut usize,
    ) -> BatchStep<T> {
        let most = 1 + ring::PACK_ITEM;
        loop {
            let mut fresh = false;
            let packed = loop {
                let Some(room) = b.pack_room() else {
                    break false;
                };
                let end = room.len().min(most);
                match codec::encode_into(&value, &mut room[1..end]) {
                    Ok(n) => {
                        room[0] = n as u8;
                        b.packed(1 + n);
                        break true;
                    }
                    // The pack is too full for it: publish it and try a new one.
                    Err(_) if !fresh && end < most => {
                        b.close_pack();
                        fresh = true;
                    }
                    Err(_) => break false,
                }
            };
            if packed {
                *sent += 1;
            } else {
                let (v, s) = match self.measure(value) {
                    Ok(m) => m,
                    Err(e) => return BatchStep::Err(e),
                };
                if let Err(step) = push_one(b, v, s, sent) {
                    return step;
                }
            }
            match items.next() {
                None => return BatchStep::Done,
                Some(v) => value = v,
            }
        }
    }

    /// `send_batch`: [`Sender::push_batch`] until the items run out, waiting for room as
    /// `send` does.
    fn send_batch_inner(&self, items: impl IntoIterator<Item = T>) -> Result<usize, SendError<T>> {
        let mut items = items.into_iter();
        let mut sent = 0;
        let mut backoff = Backoff::new(&self.chan);
        let w = &self.chan.hdr().send_wait;
        let mut next = None;
        loop {
            let (value, size) = match next.take() {
                Some(n) => n,
                None => match items.next() {
                    None => return Ok(sent),
                    Some(v) => self.measure(v)?,
                },
            };
            let (value, size) = match self.push_batch(value, size, &mut items, &mut sent) {
                BatchStep::Done => return Ok(sent),
                BatchStep::Err(e) => return Err(e),
                BatchStep::Next(v, s) => {
                    backoff.succeeded();
                    next = Some((v, s));
                    continue;
                }
                BatchStep::Full(v, s) => (v, s),
            };
            if backoff.snooze_spaced() {
                // As in `send_inner`: retry once a quarter of the capacity is free again.
                while !self.chan.below_low_water() && backoff.snooze_spaced() {}
                next = Some((value, size));
                continue;
            }
            let seq = self.prepare_sleep();
            match self.push_batch(value, size, &mut items, &mut sent) {
                BatchStep::Done => return Ok(sent),
                BatchStep::Err(e) => return Err(e),
                BatchStep::Next(v, s) => next = Some((v, s)),
                BatchStep::Full(v, s) => {
                    next = Some((v, s));
                    self.chan.sleep(w, seq, None, SLICE, &mut backoff);
                }
            }
        }
    }
}

/// Writes `value` (`size` bytes encoded) as the next record of the batch claim `b`, counting
/// it in `sent`; otherwise the step that ends the claim: the value back if it does not fit,
/// or the error that refuses it.
fn push_one<T: Serialize + 'static>(
    b: &mut ring::BatchClaim<'_, '_>,
    value: T,
    size: usize,
    sent: &mut usize,
) -> Result<(), BatchStep<T>> {
    let mut enc_err = None;
    match b.push(size, |buf| encode_exact(&value, size, buf, &mut enc_err)) {
        Some(true) => {
            *sent += 1;
            Ok(())
        }
        Some(false) => {
            let e = enc_err.unwrap_or_else(|| MessageError::Encode("unknown".into()));
            Err(BatchStep::Err(SendError::Invalid(value, e)))
        }
        None => Err(BatchStep::Next(value, size)),
    }
}

/// Encodes `value` into `buf`, which must take exactly `size` bytes; the error, if any, goes
/// to `err`.
fn encode_exact<T: Serialize + 'static>(
    value: &T,
    size: usize,
    buf: &mut [u8],
    err: &mut Option<MessageError>,
) -> bool {
    match codec::encode_into(value, buf) {
        Ok(n) if n == size => true,
        Ok(n) => {
            *err = Some(MessageError::Encode(format!(
                "the value encoded to {n} bytes after measuring {size}"
            )));
            false
        }
        Err(e) => {
            *err = Some(e);
            false
        }
    }
}

impl<T> Sender<T> {
    /// Registers as a sleeper on `send_wait` and refreshes the cached `recvd`; returns the
    /// sequence value to sleep on. The caller re-checks with `try_send_inner`, then sleeps.
    fn prepare_sleep(&self) -> u32 {
        let seq = register_sleeper(&self.chan.hdr().send_wait);
        // SeqCst inside: the load half of the senders' wake handshake (module docs): either
        // we see the receivers' latest count and completion (the room), or they see our flag.
        self.chan.ring().recheck_room();
        seq
    }
}

impl<T> Receiver<T> {
    /// Registers as a sleeper on `recv_wait`; returns the sequence value to sleep on, and
    /// whether a producer has claimed cells it has not published yet (it may have read the
    /// flag before we raised it, so it may not wake us: sleep briefly, see [`claimed_nap`]).
    /// The caller re-checks with `try_recv_inner`, then sleeps.
    fn prepare_sleep(&self) -> (u32, bool) {
        let seq = register_sleeper(&self.chan.hdr().recv_wait);
        // SeqCst inside: the load half of the receivers' wake handshake (module docs).
        (seq, !self.chan.ring().is_idle())
    }
}

/// What one look at the ring found.
enum Look<T> {
    /// A message, or the end of the channel (`Disconnected`, `Invalid`).
    Got(Result<T, TryRecvError>),
    /// Nothing was published at the front of the ring. Without `tell_in_flight`, a sender may
    /// also be writing the message there (telling needs a load of `tail`, the line every send
    /// writes: a polling waiter would pull it from the sender's cache at every poll).
    Empty,
    /// A sender has claimed the front of the ring and not published it yet: a message is
    /// queued (maybe more behind it) but cannot be taken before it.
    InFlight,
}

impl<T: DeserializeOwned + 'static> Receiver<T> {
    /// One look: takes the message at the front of the ring if one is published. With
    /// `tell_in_flight`, an unpublished claim at the front is told apart from an empty ring;
    /// after disconnection it always is (a message being written is drained, not dropped).
    fn try_recv_inner(&self, tell_in_flight: bool) -> Look<T> {
        self.look(tell_in_flight, &mut |b: &[u8]| codec::decode::<T>(b))
    }

    /// [`try_recv_inner`](Self::try_recv_inner), handing the message's bytes to `read`
    /// (called at most once per look that returns `Got`) instead of decoding a `T`.
    fn look<R>(
        &self,
        tell_in_flight: bool,
        read: &mut impl FnMut(&[u8]) -> Result<R, MessageError>,
    ) -> Look<R> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, false);
        let claim = Claim::new(chan);
        claim.single_receive();
        let mut second_look = false;
        loop {
            // If `read` panics the ring completes the record (it counts as received): wake
            // the senders waiting for its room then.
            let wake = WakeOnUnwind(chan);
            let popped = chan.ring().try_pop(&claim.taker(), |rec| match rec {
                Record::Bytes(b) => read(b),
                Record::Corrupt => Err(MessageError::Decode(
                    "corrupt record in shared memory".into(),
                )),
            });
            std::mem::forget(wake);
            match popped {
                Pop::Item(r) => {
                    // The ring's SeqCst `recvd` increment, then this: the notifier half of the
                    // senders' wake handshake (module docs).
                    chan.notify(&chan.hdr().send_wait);
                    return Look::Got(r.map_err(TryRecvError::Invalid));
                }
                Pop::Empty => {
                    if second_look {
                        // Every sender is gone: the channel ends once no send is under way.
                        return if chan.ring().is_idle() {
                            Look::Got(Err(TryRecvError::Disconnected))
                        } else {
                            Look::InFlight
                        };
                    }
                    if !chan.senders_gone() {
                        return if tell_in_flight && !chan.ring().is_idle() {
                            Look::InFlight
                        } else {
                            Look::Empty
                        };
                    }
                    // Disconnected: drain what was sent before the last sender left.
                    second_look = true;
                }
            }
        }
    }

    /// One look that takes every message published at the front of the ring, up to `max`,
    /// into `buf` with one claim (see `Ring::try_pop_batch`). After disconnection, waits for
    /// a message still being written, as `try_recv_inner` drains it. `Ok(0)`: nothing was
    /// published.
    ///
    /// A message that cannot be decoded is consumed and reported as `Invalid` after the
    /// others of the same claim are in `buf` (they were taken with it: none is lost).
    fn pop_batch(&self, buf: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        let chan = &*self.chan;
        chan.touch(&self.gen_stamp, false);
        let claim = Claim::new(chan);
        let mut bad: Option<(MessageError, usize)> = None;
        let before = buf.len();
        let got = chan.ring().try_pop_batch(&claim.taker(), max, |rec| {
            let r = match rec {
                Record::Bytes(b) => codec::decode::<T>(b),
                Record::Corrupt => Err(MessageError::Decode(
                    "corrupt record in shared memory".into(),
                )),
            };
            match r {
                Ok(v) => buf.push(v),
                Err(e) => match &mut bad {
                    None => bad = Some((e, 0)),
                    Some((_, more)) => *more += 1,
                },
            }
        });
        drop(claim);
        if got > 0 {
            // The ring's SeqCst `recvd` increment, then this: the notifier half of the
            // senders' wake handshake (module docs), once for the batch.
            chan.notify(&chan.hdr().send_wait);
        }
        if let Some((e, more)) = bad {
            let e = match (e, more) {
                (e, 0) => e,
                (MessageError::Decode(m), more) => MessageError::Decode(format!(
                    "{m} (and {more} more undecodable messages in the same batch)"
                )),
                (e, _) => e,
            };
            return Err(RecvError::Invalid(e));
        }
        if got == 0 && chan.senders_gone() {
            // Drain what was sent before the last sender left, as `recv` does.
            return match self.try_recv_settled_disconnected() {
                Some(v) => {
                    buf.push(v?);
                    Ok(1)
                }
                None => Err(RecvError::Disconnected),
            };
        }
        Ok(buf.len() - before)
    }

    /// After disconnection: the next message, waiting for one still being written; `None`
    /// once the channel is drained.
    fn try_recv_settled_disconnected(&self) -> Option<Result<T, RecvError>> {
        match self.recv_inner(None) {
            Ok(v) => Some(Ok(v)),
            Err(RecvTimeoutError::Invalid(e)) => Some(Err(RecvError::Invalid(e))),
            Err(_) => None,
        }
    }

    /// `recv_batch`: a batch look; if it found nothing, `recv` one message (waiting), then
    /// take what else is published, up to `max`.
    fn recv_batch_inner(&self, buf: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        let got = self.pop_batch(buf, max)?;
        if got > 0 {
            return Ok(got);
        }
        let first = self.recv_inner(None).map_err(|e| match e {
            RecvTimeoutError::Invalid(m) => RecvError::Invalid(m),
            _ => RecvError::Disconnected,
        })?;
        buf.push(first);
        if max == 1 {
            return Ok(1);
        }
        match self.pop_batch(buf, max - 1) {
            Ok(n) => Ok(1 + n),
            Err(RecvError::Disconnected) => Ok(1),
            Err(e) => Err(e),
        }
    }

    /// `try_recv`: a look that waits (within [`IN_FLIGHT_PATIENCE`]) for a message a sender is
    /// writing at the front of the ring, so that `Empty` means nothing is queued.
    fn try_recv_settled(&self) -> Result<T, TryRecvError> {
        self.try_recv_settled_with(&mut |b: &[u8]| codec::decode::<T>(b))
    }

    /// [`try_recv_settled`](Self::try_recv_settled), handing the bytes to `read`.
    fn try_recv_settled_with<R>(
        &self,
        read: &mut impl FnMut(&[u8]) -> Result<R, MessageError>,
    ) -> Result<R, TryRecvError> {
        let mut wait: Option<InFlightWait> = None;
        loop {
            match self.look(true, read) {
                Look::Got(r) => return r,
                Look::Empty => return Err(TryRecvError::Empty),
                Look::InFlight => {
                    if !wait
                        .get_or_insert_with(|| InFlightWait::new(&self.chan))
                        .wait(&self.chan)
                    {
                        return Err(TryRecvError::Empty);
                    }
                }
            }
        }
    }

    fn recv_inner(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.recv_inner_with(deadline, &mut |b: &[u8]| codec::decode::<T>(b))
    }

    /// [`recv_inner`](Self::recv_inner), handing the bytes to `read`.
    fn recv_inner_with<R>(
        &self,
        deadline: Option<Instant>,
        read: &mut impl FnMut(&[u8]) -> Result<R, MessageError>,
    ) -> Result<R, RecvTimeoutError> {
        let mut backoff = Backoff::new(&self.chan);
        let w = &self.chan.hdr().recv_wait;
        let mut naps = 0;
        loop {
            match self.look(false, read) {
                Look::Empty | Look::InFlight => {}
                Look::Got(r) => {
                    backoff.succeeded();
                    return r.map_err(to_timeout_err);
                }
            }
            if backoff.snooze() {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let (seq, claimed) = self.prepare_sleep();
            match self.look(false, read) {
                Look::Empty | Look::InFlight => {}
                Look::Got(r) => return r.map_err(to_timeout_err),
            }
            let nap = if claimed {
                naps += 1;
                claimed_nap(naps - 1)
            } else {
                naps = 0;
                SLICE
            };
            self.chan.sleep(w, seq, deadline, nap, &mut backoff);
        }
    }
}

thread_local! {
    /// The address of this process's slot in the channel whose `send_with` or `recv_with`
    /// closure this thread is running (0: none). The closure runs while the message's cells
    /// are claimed through this thread's claim words in that slot.
    static IN_CLOSURE: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as running a `send_with`/`recv_with` closure of the channel whose slot is
/// given, until dropped (the previous mark back: closures of other channels may nest).
struct InClosure(usize);

impl InClosure {
    #[inline]
    fn enter(slot: &ProcSlot) -> Self {
        Self(IN_CLOSURE.replace(std::ptr::from_ref(slot) as usize))
    }
}

impl Drop for InClosure {
    #[inline]
    fn drop(&mut self) {
        IN_CLOSURE.set(self.0);
    }
}

/// A send or receive on a channel from inside one of its own `send_with`/`recv_with` closures:
/// it would take the claim words that name the outer message's cells (a kill would then leave
/// those cells unrecoverable), and could wait for its own unpublished message.
#[cold]
#[inline(never)]
fn nested_in_closure() -> ! {
    panic!(
        "uniconc: a send or receive on a process channel from inside that channel's own \
         send_with/recv_with closure: the closure runs while the message's place in the \
         channel is claimed; finish it, then send or receive"
    )
}

/// The claim word a receive hands the ring: this thread's word in its process's slot, or,
/// for a thread without a [`claims`] index, a private word while the slot counts the receive
/// as unclaimed (which holds back every recovery until it returns).
enum Claim<'a> {
    /// The words, and the thread's identity among every process's words ([`holder_id`]).
    Words(&'a AtomicU64, &'a SendWords, u64),
    Unclaimed(&'a AtomicU32, AtomicU64, SendWords),
}

/// The identity a held pack's stamp names (`ring::Taker::owner`): word `word` of slot
/// `slot`, plus one (zero is no identity).
pub(super) fn holder_id(slot: usize, word: usize) -> u64 {
    (slot * claims::WORDS + word + 1) as u64
}

impl<'a> Claim<'a> {
    #[inline]
    fn new(chan: &'a Chan) -> Self {
        let slot = chan.my_slot();
        if IN_CLOSURE.get() == std::ptr::from_ref(slot) as usize {
            nested_in_closure();
        }
        match claims::mine() {
            Some(i) => {
                // Relaxed: written only by this process (as in `my_slot`).
                let at = chan.slot.load(Ordering::Relaxed) as usize % MAX_PROCESSES;
                Self::Words(&slot.claims[i], &slot.sends[i], holder_id(at, i))
            }
            None => {
                // Relaxed: published to reapers by the ring's claiming CAS, like a word.
                slot.unclaimed.fetch_add(1, Ordering::Relaxed);
                Self::Unclaimed(&slot.unclaimed, AtomicU64::new(0), SendWords::default())
            }
        }
    }

    /// The receive claim word.
    #[inline]
    fn word(&self) -> &AtomicU64 {
        match self {
            Self::Words(w, ..) => w,
            Self::Unclaimed(_, w, _) => w,
        }
    }

    /// What the ring's receives are handed.
    #[inline]
    fn taker(&self) -> Taker<'_> {
        let (intent, words, owner) = match self {
            Self::Words(w, s, id) => (*w, *s, *id),
            Self::Unclaimed(_, w, s) => (w, s, 0),
        };
        Taker {
            intent,
            range: &words.recv_span,
            owner,
        }
    }

    /// The send claim words.
    #[inline]
    fn send_words(&self) -> &SendWords {
        match self {
            Self::Words(_, w, _) => w,
            Self::Unclaimed(_, _, w) => w,
        }
    }

    /// Says that the receive claim word names single records from now on (not a range of
    /// `recv_batch`): clears the range word, before the next claim is made.
    #[inline]
    fn single_receive(&self) {
        let span = &self.send_words().recv_span;
        // Relaxed: ordered before the claim word's Release store (as the ring's claims are).
        if span.load(Ordering::Relaxed) != 0 {
            span.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Self::Unclaimed(count, ..) = self {
            // Release: as a claim word's next value (the completion first).
            count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The reader of a `recv_with`: the bytes of an encoded byte message (after its length
/// prefix) handed to the caller's closure, which runs once, with this process's `slot` in the
/// channel marked meanwhile (see `IN_CLOSURE`).
fn in_place<'a, R>(
    slot: &'a ProcSlot,
    read: &'a mut Option<impl FnOnce(&[u8]) -> R>,
) -> impl FnMut(&[u8]) -> Result<R, MessageError> + 'a {
    move |b| {
        let bytes = codec::bytes_payload(b)?;
        let read = read.take().expect("one message is read per receive");
        let _in = InClosure::enter(slot);
        Ok(read(bytes))
    }
}

fn to_timeout_err(e: TryRecvError) -> RecvTimeoutError {
    match e {
        TryRecvError::Empty => RecvTimeoutError::Timeout,
        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        TryRecvError::Invalid(m) => RecvTimeoutError::Invalid(m),
    }
}

fn to_recv_err(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Invalid(m) => RecvError::Invalid(m),
        _ => RecvError::Disconnected,
    }
}

fn len_of(chan: &Chan) -> usize {
    let n = chan.ring().queued();
    let n = chan.cap.map_or(n, |c| n.min(c));
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl<T: Message> uniconc_core::Sender<T> for Sender<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.try_send_inner(value) {
            Ok(()) => Ok(()),
            Err(TrySend::Full(v)) => Err(TrySendError::Full(v)),
            Err(TrySend::Err(e)) => Err(e.into()),
        }
    }

    #[inline]
    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        self.send_inner(Encoded(value), deadline)
            .map_err(|e| map_timeout_err(e, |v| v.0))
    }

    /// Claims the message's cells in the ring, writes the length prefix, and lets `fill`
    /// write the bytes in place: no `Vec`, no encoding pass. Errors are found before the
    /// cells are claimed, so `fill` runs only for a message that is sent; if it panics, the
    /// cells are published as padding and the message slot given back.
    fn send_with_deadline<F>(
        &self,
        len: usize,
        deadline: Option<Instant>,
        fill: F,
    ) -> Result<(), SendTimeoutError<()>>
    where
        T: uniconc_core::ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        let fill = Filled {
            len,
            fill: Some(fill),
            slot: self.chan.my_slot(),
        };
        self.send_inner(fill, deadline)
            .map_err(|e| map_timeout_err(e, drop))
    }

    /// As [`send_with_deadline`](uniconc_core::Sender::send_with_deadline), one attempt.
    fn try_send_with<F>(&self, len: usize, fill: F) -> Result<(), TrySendError<()>>
    where
        T: uniconc_core::ByteMessage,
        F: FnOnce(&mut [u8]),
    {
        let fill = Filled {
            len,
            fill: Some(fill),
            slot: self.chan.my_slot(),
        };
        match self.try_push(fill) {
            Ok(()) => Ok(()),
            Err(TrySend::Full(_)) => Err(TrySendError::Full(())),
            Err(TrySend::Err(e)) => Err(map_send_err(e, drop).into()),
        }
    }

    /// One reservation of message slots and one claim of cells per run of items that fit,
    /// each item encoded straight into the ring (small ones packed several to a cache line),
    /// one wake-up per run.
    fn send_batch<I>(&self, items: I) -> Result<usize, SendError<T>>
    where
        I: IntoIterator<Item = T>,
    {
        self.send_batch_inner(items)
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        async move {
            let mut value = value;
            let w = &self.chan.hdr().send_wait;
            loop {
                match self.try_send_inner(value) {
                    Ok(()) => return Ok(()),
                    Err(TrySend::Err(e)) => return Err(e),
                    Err(TrySend::Full(v)) => value = v,
                }
                let seq = self.prepare_sleep();
                match self.try_send_inner(value) {
                    Ok(()) => return Ok(()),
                    Err(TrySend::Err(e)) => return Err(e),
                    Err(TrySend::Full(v)) => value = v,
                }
                sleep_async(&self.chan, w, seq).await;
            }
        }
    }

    fn len(&self) -> usize {
        len_of(&self.chan)
    }

    fn capacity(&self) -> Option<usize> {
        self.chan.cap.map(|c| c as usize)
    }

    fn is_closed(&self) -> bool {
        self.chan.receivers_gone()
    }

    fn close(&self) {
        // SeqCst (Release for the data): pairs with the loads in `*_gone`.
        self.chan.hdr().conn.closed.store(1, Ordering::SeqCst);
        self.chan.wake_everyone();
    }
}

impl<T: Message> uniconc_core::Receiver<T> for Receiver<T> {
    fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    fn try_recv(&self) -> Result<T, TryRecvError> {
        self.try_recv_settled()
    }

    #[inline]
    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.recv_inner(deadline)
    }

    /// Hands `read` the message's bytes where they lie in the ring (after the length
    /// prefix): no copy, no allocation. The record is given back once `read` returns, or
    /// when it panics.
    fn recv_with_deadline<R, F>(
        &self,
        deadline: Option<Instant>,
        read: F,
    ) -> Result<R, RecvTimeoutError>
    where
        T: uniconc_core::ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        let mut read = Some(read);
        self.recv_inner_with(deadline, &mut in_place(self.chan.my_slot(), &mut read))
    }

    /// As [`recv_with_deadline`](uniconc_core::Receiver::recv_with_deadline), one settled look as `try_recv`.
    fn try_recv_with<R, F>(&self, read: F) -> Result<R, TryRecvError>
    where
        T: uniconc_core::ByteMessage,
        F: FnOnce(&[u8]) -> R,
    {
        let mut read = Some(read);
        self.try_recv_settled_with(&mut in_place(self.chan.my_slot(), &mut read))
    }

    /// Every message published at the front of the ring, up to `max`, taken with one claim
    /// and given back with one completion and one wake-up.
    fn recv_batch(&self, buf: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        self.recv_batch_inner(buf, max)
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_ {
        async move {
            let w = &self.chan.hdr().recv_wait;
            let mut yields = 0;
            loop {
                match self.try_recv_inner(false) {
                    Look::Empty | Look::InFlight => {}
                    Look::Got(r) => return r.map_err(to_recv_err),
                }
                let (seq, claimed) = self.prepare_sleep();
                match self.try_recv_inner(false) {
                    Look::Empty | Look::InFlight => {}
                    Look::Got(r) => return r.map_err(to_recv_err),
                }
                if claimed && yields < 16 {
                    // A message is being written: let the executor run something else, then
                    // look again (a few times: a producer stalled there must not keep this
                    // task busy; the sleep below is bounded to `SLICE`).
                    yields += 1;
                    YieldNow(false).await;
                    continue;
                }
                yields = 0;
                sleep_async(&self.chan, w, seq).await;
            }
        }
    }

    fn len(&self) -> usize {
        len_of(&self.chan)
    }

    fn capacity(&self) -> Option<usize> {
        self.chan.cap.map(|c| c as usize)
    }

    fn is_closed(&self) -> bool {
        self.chan.senders_gone()
    }
}

/// `for x in rx`: blocking, ends when the channel is empty and disconnected.
///
/// ```
/// use uniconc::{JoinHandle as _, Sender as _};
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
/// let child = uniconc::process::spawn(move || {
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
/// assert_eq!(child.join()?, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<T: Message> IntoIterator for Receiver<T> {
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
/// let (tx, rx) = uniconc::process::channel::<u64>(4)?;
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
impl<'a, T: Message> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = uniconc_core::Iter<'a, T, Receiver<T>>;

    fn into_iter(self) -> Self::IntoIter {
        uniconc_core::Receiver::iter(self)
    }
}

#[cfg(test)]
mod tests;
