//! # uniconc-redis
//!
//! uniconc's Redis backend: channels, locks and shared values that live on a Redis server,
//! shared by every process that can reach it, on one machine or many. Messages travel encoded
//! (serde + bincode), `Value`s and `Array`s as the bytes of their plain data; code never does.
//!
//! ```no_run
//! use uniconc_core::{Lock as _, Receiver as _, Sender as _};
//!
//! let conn = uniconc_redis::default_connection()?; // UNICONC_REDIS_URL, or 127.0.0.1:6379
//! let (tx, rx) = conn.channel::<u64>(64)?;
//! tx.send(42).unwrap();
//! assert_eq!(rx.recv().unwrap(), 42);
//!
//! let lock = conn.lock()?;
//! let guard = lock.lock().unwrap();
//! println!("fencing token {}", guard.fencing_token());
//! # Ok::<(), uniconc_core::Error>(())
//! ```
//!
//! Modules, one per mechanism:
//!
//! - `conn` (re-exported here): [`Connection`], [`connect`], [`default_connection`], the
//!   internal runtime, leases and the wake-up subscription.
//! - [`channel`](mod@channel): [`Sender`], [`Receiver`].
//! - [`collections`]: [`Map`], [`List`].
//! - [`lock`](mod@lock): [`Lock`], [`LockGuard`].
//! - [`event`](mod@event): [`Event`].
//! - [`barrier`](mod@barrier): [`Barrier`].
//! - [`semaphore`](mod@semaphore): [`Semaphore`].
//! - [`select`](mod@select): [`RedisSelector`], what makes the channels selectable
//!   (`uniconc::select!` over several Redis channels and timers).
//! - [`value`](mod@value): [`Value`], [`Array`] (plain data, bytemuck).
//! - [`pool`]: [`Pool`] of named tasks run by worker agents on any machine ([`worker`]).
//! - [`testing`] (feature `testing`): private `redis-server`s for tests.
//! - `backend`: [`spawn`], [`spawn_async`] (forked local units) and their [`JoinHandle`].
//! - `named` (internal): objects created and opened by name (`Redis::named`).
//! - `travel` (internal): the serde form of the handles, held in flight.
//! - `object` (internal): the keys of a lock, event, semaphore or barrier, and their clean-up.
//! - `direct` (internal): the per-thread synchronous connections.
//! - `wait` (internal): the one wait loop of every operation that blocks: subscribe, re-check,
//!   sleep until a wake-up or [`POLL`], back off while the server is unreachable.
//!
//! # Connections
//!
//! [`default_connection`] is one process-wide connection to the server named by
//! `UNICONC_REDIS_URL` (default `redis://127.0.0.1:6379`); the trait constructors without a
//! connection argument (`Lock::new()`) use it. [`connect`] opens any other. A URL may carry a
//! password or an ACL user and password (`redis://user:secret@host:6379/0`). `rediss://`
//! (TLS, through rustls with the webpki roots) needs the `tls` feature.
//!
//! Each process keeps two TCP connections per server: one multiplexing every command, one
//! subscribed for wake-ups. No operation holds a connection while it waits. Besides, each
//! thread that calls the blocking or `try_` forms of a channel, or a `Map`/`List`, outside an
//! async runtime runs their scripts on a synchronous connection of its own (opened on first
//! use): the round trip without the hand-offs to the internal runtime.
//!
//! # Objects and keys
//!
//! Every object's keys are `uc:{<id>}:<part>`: one hash tag, so an object lives in one slot of
//! a cluster. Every state change is one Lua script (`EVALSHA`), atomic on the server. An
//! object is deleted when the last handle to it is dropped, and expires after
//! [`IDLE_TTL`] when every process holding a handle died without dropping it. Objects cross
//! processes by name, as travelling handles (both below), or by id: `tx.id()` in one process,
//! `conn.open_sender(id)` in another.
//!
//! # Names and travelling handles
//!
//! `Redis::named("jobs")` creates or opens an object under a name on the default
//! connection's server, with the modes and checks of `uniconc::named` (create, open or
//! either; another kind, element type, capacity, length or number of parties is
//! `Incompatible`). A program started on another machine opens it by name. A name lives until
//! it is unlinked, whoever created it: it keeps its object (and a named channel connected) even
//! when no process holds a handle, until the object's keys expire after [`IDLE_TTL`] without
//! a holder; such a name then counts as free. `unlink` removes the name; handles already open
//! keep working.
//!
//! `Sender`, `Receiver`, `Lock`, `Semaphore`, `Event` and `Barrier` are serde types: sent
//! through a channel, stored in a `Map` or returned from a task, they work where they land, in
//! any process that reaches the server. The bytes name the server (its URL without the
//! password): the receiving process uses a connection it already has to that server (the
//! default one, or one opened with [`connect`], which is how credentials are given), else
//! opens one from the URL. A handle in flight is held by the process that serialized it (a
//! lease it renews) until the first deserialization takes it over; bytes dropped unread are
//! released when that process's code ends (a child of [`spawn`]) or one [`LEASE`] after it
//! dies. Reading the same bytes again gives one more clone while that side of the object has
//! a live holder, and fails otherwise.
//!
//! ```
//! use uniconc_core::{Backend as _, JoinHandle as _, Receiver as _, Sender as _};
//! use uniconc_redis::{Redis, Sender};
//! # let server = uniconc_redis::testing::RedisServer::start();
//! # uniconc_redis::set_default_url(&server.url())?; // else UNICONC_REDIS_URL
//!
//! // A service, anywhere: its job line by name; each job carries where to answer.
//! let jobs = Redis::named("doc-jobs").receiver::<(u64, Sender<u64>)>(Some(16))?;
//! let service = uniconc_redis::spawn(move || {
//!     let (n, reply) = jobs.recv().unwrap();
//!     reply.send(n * 2).unwrap();
//! })?;
//!
//! // A client, anywhere: opens the line by name and sends its reply sender along.
//! let line = Redis::named("doc-jobs").existing().sender::<(u64, Sender<u64>)>(Some(16))?;
//! let (reply, answers) = Redis::channel::<u64>(1)?;
//! line.send((21, reply))?;
//! assert_eq!(answers.recv()?, 42);
//! service.join()?;
//! Redis::named("doc-jobs").unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Leases: processes that die
//!
//! A process holding handles renews a lease on each object every [`LEASE`]` / 4` (from a thread
//! of its own, so a busy program keeps its leases). A process killed, paused or cut off from
//! the server counts as gone once its lease lapses, at most [`LEASE`] (5 s) after its last
//! renewal: receivers then see `Disconnected` when the last sender's process is gone; the
//! next acquirer of a lock whose holder is gone gets `OwnerDied` and a higher fencing token,
//! and the old holder's unlock is refused. A paused process that resumes finds its own handles
//! disconnected (a channel) or its guard lapsed ([`LockGuard::check`]).
//!
//! # Failure semantics
//!
//! - **Pool tasks are at-least-once.** A task whose agent dies (or whose worker process
//!   dies) is delivered again, up to the pool's `max_deliveries`; a task may so run more than
//!   once, and must be idempotent or check a fencing token before its side effect. Its result
//!   is reported once: the first recorded wins. See [`pool`].
//! - **Channels deliver each message once.** A send or receive whose reply is lost (the
//!   server paused or overloaded past the response timeout of 2 s, the connection cut) is
//!   retried under the same request id once the server answers, and the server runs it only
//!   once: a retried send is queued once, a retried receive returns the message the first run
//!   popped. A call that gives up before it has an answer (its deadline passed, or a `try_`
//!   form) reports it in `last_failure()`: a message its receive took goes back to the head of
//!   the queue with the next send or receive through that handle (or its clones), or when the
//!   handle is dropped, and a send given up was queued once or never will be. See
//!   [`channel`](mod@channel) for how, and for the limits (a receiving process that dies with
//!   its receive unanswered loses that message).
//! - **Locks are not safe across a failover.** A replica promoted before it received the latest
//!   acquisition hands the lock to a second holder. Fencing tokens are the answer: the
//!   protected resource refuses stale tokens. This crate does not implement Redlock.
//! - **A server restarted without persistence** comes back empty; open handles then find their
//!   object gone and fail with a clear error: channels report `Disconnected` (with the cause in
//!   `last_failure()`); locks panic in the trait's infallible forms and return `Closed` from
//!   [`Lock::lock_checked`]; nothing carries on over empty state.
//! - **With persistence (AOF)**, clients reconnect by themselves and carry on with the state
//!   intact.
//! - **An unreachable server** is waited out by blocking calls until their deadline (`Timeout`);
//!   `try_` forms report it as `Full`/`Empty`/`WouldBlock`, and `last_failure()` says why.
//!   A lock acquisition and a permit take retried after a lost reply run once (under the
//!   call's token or marker); a `try_take` whose two attempts both fail may have taken a
//!   permit it does not report. **Known limit:** the changes of a [`Map`], [`List`], [`Value`]
//!   or [`Array`] are not retried: one whose reply does not come within the response timeout
//!   fails with an error, though the server may still apply it (a list's `pop` then loses its
//!   element). On a server that answers within 2 s nothing is given up.
//! - **A server paused or unreachable for longer than a lease** counts every client as gone
//!   when it comes back: leases are kept in the server's clock.
//!
//! # Pools of named tasks
//!
//! [`Pool`] runs tasks defined with `uniconc_core::task!` (closures cannot cross machines: the
//! closure methods are refused with `Unsupported`) on **worker agents**: programs that call
//! [`worker`]`(url).queue(name).run()`, on any machine that reaches the server, and run each
//! task in a local worker process, so a crashing task does not stop the agent's heartbeat.
//! Pools and agents meet on a queue name (default `"default"`). `Pool::new(n)` starts an
//! agent with `n` worker processes in this process; `Pool::configure().workers(0)` relies on
//! agents started elsewhere. Delivery is at least once, driven by the agents' heartbeats
//! (never by a task's age); see [`pool`] for the guarantees and settings.
//!
//! # Fork
//!
//! [`spawn`] (and `Redis::spawn` through the `Backend` trait) forks a local process whose
//! primitives are remote. Handles the child inherits work in it, on connections of its own,
//! and count as the child's: the parent registers the child as a holder of every object this
//! process holds before the fork, so a parent dropping its sender right after `spawn` does not
//! disconnect the receiver before the child ran. The child's first use of a channel stops the
//! counting of the copies of the channel's other side that it never used (the parent's own
//! `tx` in `spawn(move || rx.iter().sum())`). When the child's code ends it gives up every
//! lease it still holds; a child killed counts as gone once its leases lapse ([`LEASE`]). A
//! `Permit` moved into the child is given back by the child, once.
//!
//! A process forked otherwise (`uniconc::process::spawn`, `fork`) can use the handles it
//! inherited as well: it connects on first use and registers itself then (an object its parent
//! had already left is not joined); it gives its leases up only when it drops the handles, or
//! when they lapse after it exits.
//!
//! # Blocking calls inside an async runtime
//!
//! In async code, use the `_async` forms. These return `Send` futures that any executor can
//! poll (the work runs on this crate's runtime) and are cancel-safe: a message popped, a lock
//! taken or a permit taken for a future that was dropped is put back. The blocking forms work
//! anywhere, as on the thread and process backends: inside a runtime they block the calling
//! thread (the work runs on a helper thread) until they are done, so the worker they block runs
//! no other task meanwhile, and a wait for another task of a current-thread runtime never ends.

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(unix)]
mod backend;
pub mod barrier;
pub mod channel;
pub mod collections;
mod conn;
mod direct;
pub mod event;
pub mod lock;
#[cfg(unix)]
mod named;
mod object;
pub mod pool;
pub mod select;
pub mod semaphore;
#[cfg(feature = "testing")]
pub mod testing;
mod travel;
pub mod value;
mod wait;

#[cfg(unix)]
pub use backend::{JoinHandle, Redis, spawn, spawn_async};
pub use barrier::Barrier;
pub use channel::{Receiver, Sender};
pub use collections::{List, Map};
pub use conn::{
    Connection, DEFAULT_URL, IDLE_TTL, LEASE, POLL, URL_ENV, connect, default_connection,
    set_default_url,
};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use pool::{Pool, worker};
pub use select::RedisSelector;
pub use semaphore::Semaphore;
pub use value::{Array, ArrayGuard, Value, ValueGuard};
