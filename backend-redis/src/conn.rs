//! Connections: the process-wide default, explicit [`connect`] handles, the internal runtime,
//! leases, and the wake-up subscription.
//!
//! # Why an internal tokio runtime
//!
//! The blocking forms of core's traits need a blocking call; the `_async` forms must never
//! block an executor. Both are driven from one core: the async redis client (a
//! `ConnectionManager`, which multiplexes every caller over one TCP connection and reconnects in
//! the background) running on a small tokio runtime private to this crate, one per process,
//! started lazily with one worker thread. A blocking call waits on that runtime
//! (`Runtime::block_on`); an `_async` call spawns its work there and awaits the task's handle,
//! which any executor can poll. The sync redis client with a pool was the alternative: it would
//! need one connection per concurrent waiter and a thread per `_async` call.
//!
//! A forked child inherits no threads, so the runtime and every live connection are keyed by
//! process id and re-created in the child on first use (the parent's are left alone, never
//! dropped: their threads exist only in the parent).
//!
//! # Leases
//!
//! Every handle (a channel's sender or receiver, a lock, ...) is registered in a sorted set of
//! its object under this connection's member name, scored with its expiry in the server's
//! clock. A background task renews the leases of this process every `lease / 4`; a process
//! that stops renewing (killed, paused) counts as gone once its lease expires. The same task
//! extends the lease of every lock this process holds, and resets the idle TTL of every object
//! this process has a handle to: an object nobody renews (every user killed) vanishes after
//! [`IDLE_TTL`].
//!
//! # Wake-ups
//!
//! One RESP3 connection per process and server is subscribed to the notification channel of
//! every object some handle here waits on; the scripts `PUBLISH` to it when the state changes
//! in a way a waiter could care about (a channel becoming non-empty or non-full, a lock
//! released, ...). A waiter re-checks the state after each notification, and at least every
//! [`POLL`] in any case (a lease expiring publishes nothing).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushKind, RedisError, Script};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use uniconc_core::Error;

/// How long a handle's lease lasts without renewal: a process killed (or paused) holding a
/// handle counts as gone after at most this long.
pub const LEASE: Duration = Duration::from_secs(5);

/// How often a waiter re-checks the state without a notification.
pub const POLL: Duration = Duration::from_millis(250);

/// How long an object's keys live without any handle renewing them.
pub const IDLE_TTL: Duration = Duration::from_secs(3600);

/// How long one command may take before it fails (and a blocking call retries).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The environment variable naming the default server.
pub const URL_ENV: &str = "UNICONC_REDIS_URL";

/// The default server when [`URL_ENV`] is unset.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

/// This process's runtime: created on first use, re-created in a forked child. Runtimes are
/// leaked on purpose: a parent's runtime must not be dropped in the child (its worker threads
/// are not there to join), and one per process lives until the process ends anyway.
pub(crate) fn runtime() -> &'static Runtime {
    static RT: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, rt)) = *slot
        && p == pid
    {
        return rt;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("uniconc-redis")
        .enable_all()
        .build()
        .expect("uniconc-redis: cannot start its internal tokio runtime (threads refused?)");
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    rt
}

/// Runs `fut` to completion on the internal runtime, blocking this thread: inside an async
/// runtime too, as a blocking call of the thread and process backends does (the `_async`
/// forms are what async code should use: a blocked worker runs no other task meanwhile).
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    block_on_short(fut)
}

/// Whether this thread cannot drive the internal runtime itself: it is inside an async
/// runtime, or its thread-locals are being destroyed (a blocking call from a thread-local's
/// destructor), where tokio's own thread-local is gone.
fn must_hop() -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => true,
        Err(e) => e.is_thread_local_destroyed(),
    }
}

/// Runs a short operation (one script, no waiting) to completion. Outside an async runtime this
/// is [`block_on`]; inside one (a `Permit` dropped in a task, `Event::set` from async code) the
/// operation runs on a helper thread while this thread waits for its one round trip, as it
/// would for a contended `std::sync::Mutex`.
pub(crate) fn block_on_short<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if !must_hop() {
        return runtime().block_on(fut);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            HOPPED.set(true);
            runtime().block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

thread_local! {
    /// Set on the helper threads of [`block_on_short`]: one per call, so a synchronous
    /// connection of the thread's own (`crate::direct`) would be opened for one call and
    /// closed after it; they take the runtime's path instead.
    static HOPPED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is a helper thread of [`block_on_short`] (see `HOPPED`).
pub(crate) fn hopped() -> bool {
    HOPPED.get()
}

/// Clean-ups [`run_cleanup`] left running, for a forked child to wait for before it exits.
/// Tagged with the process they run in: a forked child finds its parent's list, whose tasks
/// it does not have.
type Pending = (u32, Vec<tokio::task::JoinHandle<()>>);
static PENDING_CLEANUPS: Mutex<Pending> = Mutex::new((0, Vec::new()));

/// This process's pending clean-ups (a parent's list, found after a fork, is forgotten: its
/// tasks belong to a runtime whose threads are not in this process).
fn pending_cleanups() -> std::sync::MutexGuard<'static, Pending> {
    let mut pending = PENDING_CLEANUPS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if pending.0 != pid {
        std::mem::forget(std::mem::take(&mut pending.1));
        pending.0 = pid;
    }
    pending
}

/// Runs a cleanup on the internal runtime: waits for it when the thread may block, else
/// leaves it running. Used from `Drop`.
pub(crate) fn run_cleanup<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if must_hop() || std::thread::panicking() {
        let task = runtime().spawn(fut);
        let mut pending = pending_cleanups();
        pending.1.retain(|t| !t.is_finished());
        pending.1.push(task);
    } else {
        runtime().block_on(fut);
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A redis failure as uniconc's error (kind `Os`, the redis error as the source).
pub(crate) fn redis_error(context: &str, e: RedisError) -> Error {
    Error::os(format!("redis: {context}"), io::Error::other(e))
}

/// The object's keys are gone from the server.
pub(crate) fn gone_error(what: &str, key: &str) -> Error {
    Error::closed(format!(
        "redis: the {what} `{key}` no longer exists on the server: the server lost its data \
         (restarted without persistence, flushed, or the keys were evicted or deleted)"
    ))
}

/// Whether retrying may help: the connection dropped or timed out, or the server is loading.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
        )
}

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

/// A handle to one Redis server: cheap to clone, shared by every object created through it.
///
/// [`default_connection`] reads [`UNICONC_REDIS_URL`](URL_ENV) once (default
/// `redis://127.0.0.1:6379`); [`connect`] opens any other server. URLs take a password or an ACL
/// user (`redis://user:secret@host:6379/0`); `rediss://` (TLS) needs this crate's `tls`
/// feature.
///
/// ```
/// use uniconc_core::{Receiver as _, Sender as _};
/// # let server = uniconc_redis::testing::RedisServer::start();
/// # let url = server.url();
///
/// let conn = uniconc_redis::connect(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let (tx, rx) = conn.channel::<String>(16)?;
/// tx.send("hi".to_owned()).unwrap();
/// assert_eq!(rx.recv().unwrap(), "hi");
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnShared>,
}

struct ConnShared {
    /// Names this connection in a parent and its forked children alike.
    id: u64,
    info: redis::ConnectionInfo,
    url_for_display: String,
    /// The live connection of the current process (re-created after a fork).
    live: Mutex<Option<(u32, Arc<Live>)>>,
    /// Commands sent through this handle, in every process-local incarnation.
    commands: AtomicU64,
}

/// Every connection of this process, for `Redis::spawn` to hand a child its share of the
/// leases. Dead entries are pruned when a connection is added.
static CONNS: Mutex<Vec<Weak<ConnShared>>> = Mutex::new(Vec::new());

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.inner.url_for_display)
            .finish_non_exhaustive()
    }
}

/// Opens a connection to the server at `url` and checks that it answers.
///
/// # Errors
///
/// `InvalidArgument` for a malformed URL (or `rediss://` without the `tls` feature); `Os`
/// when the server cannot be reached or refuses the credentials.
///
/// ```no_run
/// let _conn = uniconc_redis::connect("redis://:secret@10.0.0.5:6379/0")?;
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub fn connect(url: &str) -> Result<Connection, Error> {
    let conn = Connection::new(url)?;
    conn.live()?;
    Ok(conn)
}

/// The process-wide connection that the constructors without a connection argument use
/// (`Lock::new()`, ...): the server named by `UNICONC_REDIS_URL`, or `redis://127.0.0.1:6379`.
///
/// # Errors
///
/// As [`connect`].
pub fn default_connection() -> Result<Connection, Error> {
    if let Some(c) = DEFAULT.get() {
        c.live()?;
        return Ok(c.clone());
    }
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let conn = Connection::new(&url)?;
    let conn = DEFAULT.get_or_init(|| conn).clone();
    conn.live()?;
    Ok(conn)
}

/// The process-wide default connection, set on first use.
static DEFAULT: OnceLock<Connection> = OnceLock::new();

/// Makes the server at `url` the process-wide default (what [`default_connection`] and the
/// constructors without a connection argument use), instead of [`UNICONC_REDIS_URL`](URL_ENV):
/// for a program (or a test) that knows its server only at run time. Call it before the
/// first use of the default connection.
///
/// ```
/// # let server = uniconc_redis::testing::RedisServer::start();
/// # let url = server.url();
/// uniconc_redis::set_default_url(&url)?; // e.g. "redis://127.0.0.1:6379"
/// assert_eq!(uniconc_redis::default_connection()?.server(), url);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
///
/// # Errors
///
/// `InvalidArgument` for a malformed URL, or when the default connection is already set to
/// another server (it is set once per process).
pub fn set_default_url(url: &str) -> Result<(), Error> {
    let conn = Connection::new(url)?;
    let set = DEFAULT.get_or_init(|| conn.clone());
    if set.server() == conn.server() {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "redis: the default connection is already {}; it cannot become {}",
            set.server(),
            conn.server()
        )))
    }
}

impl Connection {
    fn new(url: &str) -> Result<Self, Error> {
        let mut info = url
            .into_connection_info()
            .map_err(|e| Error::invalid_argument(format!("redis: not a usable server URL: {e}")))?;
        // RESP3 carries the pub/sub pushes on the same kind of connection as commands.
        info.redis.protocol = ProtocolVersion::RESP3;
        let url_for_display = match &info.addr {
            redis::ConnectionAddr::Tcp(h, p) => format!("redis://{h}:{p}"),
            other => other.to_string(),
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let inner = Arc::new(ConnShared {
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            info,
            url_for_display,
            live: Mutex::new(None),
            commands: AtomicU64::new(0),
        });
        let mut conns = CONNS.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// How many commands (scripts included) this connection has sent to the server so far, from
    /// this process: a measure of round trips, since every operation waits for its reply.
    ///
    /// ```no_run
    /// use uniconc_core::Lock as _;
    ///
    /// let conn = uniconc_redis::default_connection()?;
    /// let lock = conn.lock()?;
    /// let before = conn.commands_sent();
    /// drop(lock.lock());
    /// assert!(conn.commands_sent() - before <= 2); // lock + unlock
    /// # Ok::<(), uniconc_core::Error>(())
    /// ```
    pub fn commands_sent(&self) -> u64 {
        // Relaxed: a statistic, ordered with nothing else.
        self.inner.commands.load(Ordering::Relaxed)
    }

    /// The server, without credentials (for messages).
    pub fn server(&self) -> &str {
        &self.inner.url_for_display
    }

    /// This process's live connection, opened on first use.
    ///
    /// In a forked child whose parent used this connection, this is the child's connection
    /// that the parent's handles also resolve to (see [`Live`]). No lock is held while
    /// connecting (a fork meanwhile must not leave the lock taken in the child).
    pub(crate) fn live(&self) -> Result<Arc<Live>, Error> {
        let pid = std::process::id();
        let inherited = {
            let slot = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some((p, live)) if *p == pid => return Ok(live.clone()),
                Some((_, live)) => Some(live.home.clone()),
                None => None,
            }
        };
        let proc = if let Some(home) = inherited {
            forked_proc(&home)?.clone()
        } else {
            let info = self.inner.info.clone();
            let server = self.inner.url_for_display.clone();
            let id = self.inner.id;
            block_on_short(async move { Proc::open(info, server, id, None, HashMap::new()).await })?
        };
        let mut slot = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, live)) = &*slot
            && *p == pid
        {
            // Another thread connected first: use its connection (ours is dropped unused).
            return Ok(live.clone());
        }
        let live = Arc::new(Live { home: proc });
        *slot = Some((pid, live.clone()));
        Ok(live)
    }

    /// This process's connection if it has one (no connecting).
    fn proc_here(&self) -> Option<Arc<Proc>> {
        let pid = std::process::id();
        if let Some((p, live)) = &*self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
            && *p == pid
        {
            return Some(live.home.clone());
        }
        forked_here(self.inner.id).map(|p| (*p).clone())
    }

    pub(crate) fn count(&self, n: u64) {
        // Relaxed: a statistic.
        self.inner.commands.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a lease renewal is for.
#[derive(Clone)]
pub(crate) struct Registration {
    /// Handles of this process on this (zset, member).
    refs: usize,
    /// Every key of the object, for the idle TTL.
    keys: Vec<String>,
    /// In a child forked by `Redis::spawn`: registered for the child's copies of the
    /// parent's handles, none of which the child has used yet (see [`Proc::touch`]).
    inherited: bool,
}

/// A lock held by this process, whose lease the renewer extends.
struct Held {
    meta: String,
    token: String,
    lost: Arc<AtomicBool>,
}

/// The connection of one process to one server: its TCP connections (whose driver tasks run
/// on this process's runtime), its member name, and the handles it holds.
pub(crate) struct Proc {
    pub(crate) cmd: ConnectionManager,
    sub: ConnectionManager,
    /// This process on this server, unique: host name, pid and a random part.
    pub(crate) member: String,
    /// The process this connection belongs to: its driver tasks run only there.
    pid: u32,
    server: String,
    /// The server's address, to open the connection again in a forked child.
    info: redis::ConnectionInfo,
    /// The connection this belongs to (same in a parent and its forked children).
    conn_id: u64,
    /// Notification channel -> (wake counter, subscribed).
    wakers: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Serialises SUBSCRIBE/UNSUBSCRIBE so that the set subscribed matches `wakers`.
    sub_lock: tokio::sync::Mutex<()>,
    /// Lease zset key -> registration of this process's member.
    leases: Mutex<HashMap<String, Registration>>,
    /// Lock token -> held lock.
    held: Mutex<HashMap<String, Held>>,
    /// Whether some registration is still `inherited` (the fast path of [`Proc::touch`]).
    inherited: AtomicBool,
    /// Channel sides a forked child stopped counting when it engaged with the channel, in
    /// case its code uses one after all (it is registered again then).
    disengaged: Mutex<HashMap<String, Registration>>,
    /// Whether `disengaged` is not empty (the fast path of [`Proc::touch`]).
    any_disengaged: AtomicBool,
}

static RENEW: OnceLock<Script> = OnceLock::new();
static RENEW_LOCK: OnceLock<Script> = OnceLock::new();
static LEAVE: OnceLock<Script> = OnceLock::new();

fn renew_script() -> &'static Script {
    RENEW.get_or_init(|| {
        Script::new(
            r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
",
        )
    })
}

fn renew_lock_script() -> &'static Script {
    RENEW_LOCK.get_or_init(|| {
        Script::new(
            r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(redis.call('HGET', KEYS[1], 'exp')) <= now then return 0 end
redis.call('HSET', KEYS[1], 'exp', now + tonumber(ARGV[2]))
return 1
",
        )
    })
}

fn leave_script() -> &'static Script {
    LEAVE.get_or_init(|| {
        Script::new(
            r"
-- KEYS[1] the zset left, KEYS[2..] every key of the object; ARGV: member, wake channel,
-- then the names of the object's lease zsets (all must be empty for the object to be deleted).
redis.call('ZREM', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local any = 0
for i = 3, #ARGV do
  redis.call('ZREMRANGEBYSCORE', ARGV[i], '-inf', now)
  any = any + redis.call('ZCARD', ARGV[i])
end
if any == 0 then
  for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
end
redis.call('PUBLISH', ARGV[2], 'l')
return any
",
        )
    })
}

/// Milliseconds, for scripts.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Proc {
    /// Opens a process's connection. `member` is the name chosen by the parent for a child
    /// forked by `Redis::spawn` (already in the zsets of `leases`); `None` picks a fresh one.
    async fn open(
        info: redis::ConnectionInfo,
        server: String,
        conn_id: u64,
        member: Option<String>,
        leases: HashMap<String, Registration>,
    ) -> Result<Arc<Proc>, Error> {
        let client = redis::Client::open(info.clone()).map_err(|e| {
            Error::invalid_argument(format!("redis: cannot use the server URL: {e}"))
        })?;
        let base = ConnectionManagerConfig::new()
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_connection_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let context = format!("connecting to {server}");
        let cmd = client
            .get_connection_manager_with_config(base.clone())
            .await
            .map_err(|e| redis_error(&context, e))?;
        let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
        let sub = client
            .get_connection_manager_with_config(
                base.set_push_sender(push_tx).set_automatic_resubscription(),
            )
            .await
            .map_err(|e| redis_error(&context, e))?;
        let member = member
            .unwrap_or_else(|| format!("{}:{}:{:016x}", host(), std::process::id(), random_u64()));
        let live = Arc::new(Proc {
            cmd,
            sub,
            member,
            pid: std::process::id(),
            server,
            info,
            conn_id,
            wakers: Mutex::new(HashMap::new()),
            sub_lock: tokio::sync::Mutex::new(()),
            inherited: AtomicBool::new(leases.values().any(|r| r.inherited)),
            leases: Mutex::new(leases),
            held: Mutex::new(HashMap::new()),
            disengaged: Mutex::new(HashMap::new()),
            any_disengaged: AtomicBool::new(false),
        });
        tokio::spawn(dispatch(Arc::downgrade(&live), push_rx));
        tokio::spawn(renew(Arc::downgrade(&live)));
        Ok(live)
    }

    /// Whether this is the process that opened the connection. A handle created before a
    /// `fork` carries its parent's connection, whose driver tasks do not exist in the child.
    pub(crate) fn is_ours(&self) -> bool {
        self.pid == std::process::id()
    }

    /// The error of a handle used in a forked child that could not connect to the server.
    pub(crate) fn foreign_error(&self, what: &str, id: &str) -> Error {
        Error::unsupported(format!(
            "redis: the {what} `{id}` was opened by process {} and is used in process {} (a \
             forked child), which could not connect to {}",
            self.pid,
            std::process::id(),
            self.server
        ))
    }

    /// The server, for messages.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Registers one more handle of this process on `zset`, whose lease the renewer then keeps
    /// (the caller's script has already added this process's member to it). True for the first.
    pub(crate) fn register(&self, zset: &str, keys: &[String]) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let reg = leases
            .entry(zset.to_owned())
            .or_insert_with(|| Registration {
                refs: 0,
                keys: keys.to_vec(),
                inherited: false,
            });
        reg.refs += 1;
        reg.refs == 1
    }

    /// Whether a channel operation may take the direct path (this thread's synchronous
    /// connection): this process's connection, with no inherited channel handle left to
    /// engage (that needs [`Proc::touch`], on the runtime).
    pub(crate) fn direct_ok(&self) -> bool {
        // Acquire: see `touch`.
        self.is_ours()
            && !self.inherited.load(Ordering::Acquire)
            && !self.any_disengaged.load(Ordering::Acquire)
    }

    /// Called by a channel's operations with the side (`zset`) they use. In a child forked by
    /// `Redis::spawn`, the first use of a channel *engages* the child with it: the side used
    /// is adopted (it counts until the child drops it or ends), and the child stops counting
    /// the copies of the other side it inherited and has not used: they are the parent's
    /// leftovers (the parent's own `tx` in `spawn(move || rx.iter().sum())`), and counting
    /// them would make the child wait forever on a sender that lives, unused, in its own
    /// memory. A no-op (one atomic load) once nothing inherited is left.
    pub(crate) async fn touch(&self, zset: &str) {
        // Acquire pairs with nothing: the flags only save the locks; the maps decide.
        if !self.inherited.load(Ordering::Acquire) && !self.any_disengaged.load(Ordering::Acquire) {
            return;
        }
        let again = {
            let mut disengaged = self.disengaged.lock().unwrap_or_else(|e| e.into_inner());
            let again = disengaged.remove(zset);
            // Release/Acquire: see the loads above.
            self.any_disengaged
                .store(!disengaged.is_empty(), Ordering::Release);
            again
        };
        if let Some(mut reg) = again {
            // A side dropped at engagement, used after all: count it again.
            let mut c = self.cmd.clone();
            let joined = rejoin_script()
                .key(zset)
                .arg(&self.member)
                .arg(ms(LEASE))
                .invoke_async::<i64>(&mut c)
                .await;
            if matches!(joined, Ok(1)) {
                reg.inherited = false;
                self.leases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(zset.to_owned(), reg);
            }
            return;
        }
        let (wake, zsets) = object_of(zset);
        let mut dropped = Vec::new();
        {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            match leases.get_mut(zset) {
                Some(reg) if reg.inherited => reg.inherited = false,
                // Already engaged with this channel.
                _ => return,
            }
            if !leases.values().any(|r| r.inherited) {
                // Release/Acquire: see the loads above.
                self.inherited.store(false, Ordering::Release);
            }
            for other in zsets.iter().filter(|z| *z != zset) {
                if leases.get(other).is_some_and(|r| r.inherited)
                    && let Some(reg) = leases.remove(other)
                {
                    dropped.push((other.clone(), reg));
                }
            }
        }
        for (other, reg) in dropped {
            // A failure leaves the lease to lapse.
            let _ = self.leave(&other, &reg.keys, &wake, &zsets).await;
            self.disengaged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(other, reg);
            // Release/Acquire: see the loads above.
            self.any_disengaged.store(true, Ordering::Release);
        }
    }

    /// Drops one handle of this process from `zset`; true when it was the last one (the caller
    /// then leaves the zset on the server).
    pub(crate) fn unregister(&self, zset: &str) -> bool {
        if !self.is_ours() {
            // The parent's handle, dropped in a forked child: the parent keeps its lease.
            return false;
        }
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get_mut(zset) {
            Some(reg) if reg.refs > 1 => {
                reg.refs -= 1;
                false
            }
            Some(_) => {
                leases.remove(zset);
                true
            }
            None => false,
        }
    }

    /// Leaves `zset` on the server: removes this process's member, deletes the object when no
    /// lease is left in any of `zsets`, and wakes the object's waiters.
    pub(crate) async fn leave(
        &self,
        zset: &str,
        keys: &[String],
        wake: &str,
        zsets: &[String],
    ) -> Result<(), RedisError> {
        self.leave_as(&self.member, zset, keys, wake, zsets).await
    }

    /// [`leave`](Self::leave) for `member`, one of this process's leases (a hold in flight,
    /// `crate::travel`).
    pub(crate) async fn leave_as(
        &self,
        member: &str,
        zset: &str,
        keys: &[String],
        wake: &str,
        zsets: &[String],
    ) -> Result<(), RedisError> {
        let mut inv = leave_script().key(zset);
        for k in keys {
            inv.key(k);
        }
        inv.arg(member).arg(wake);
        for z in zsets {
            inv.arg(z);
        }
        let mut conn = self.cmd.clone();
        inv.invoke_async::<i64>(&mut conn).await.map(drop)
    }

    /// Starts renewing the lease of a held lock; returns the flag set if the lease was lost.
    pub(crate) fn hold(&self, meta: &str, token: &str) -> Arc<AtomicBool> {
        let lost = Arc::new(AtomicBool::new(false));
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(
            token.to_owned(),
            Held {
                meta: meta.to_owned(),
                token: token.to_owned(),
                lost: lost.clone(),
            },
        );
        lost
    }

    /// Stops renewing a lock's lease.
    pub(crate) fn release(&self, token: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// A receiver of wake-ups for `channel` if this process is already subscribed to it (no
    /// round trip): the synchronous fast path of [`waker`](Proc::waker), for a select's
    /// registration. The subscription is live on the server (it is recorded only once
    /// `SUBSCRIBE` was acknowledged), so a state check after this cannot miss a notification.
    pub(crate) fn subscribed_waker(&self, channel: &str) -> Option<watch::Receiver<u64>> {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .map(watch::Sender::subscribe)
    }

    /// A receiver of wake-ups for `channel`, subscribed on the server before this returns (so a
    /// state check after it cannot miss a notification).
    pub(crate) async fn waker(&self, channel: &str) -> Result<watch::Receiver<u64>, RedisError> {
        let subscribed = || {
            self.wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(channel)
                .map(watch::Sender::subscribe)
        };
        if let Some(rx) = subscribed() {
            return Ok(rx);
        }
        let _serial = self.sub_lock.lock().await;
        if let Some(rx) = subscribed() {
            return Ok(rx);
        }
        let mut sub = self.sub.clone();
        sub.subscribe(channel).await?;
        let (tx, rx) = watch::channel(0u64);
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_owned(), tx);
        Ok(rx)
    }

    /// Stops listening to `channel` (the object's last handle in this process is gone).
    pub(crate) async fn forget_waker(&self, channel: &str) {
        let _serial = self.sub_lock.lock().await;
        let had = self
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel)
            .is_some();
        if had {
            let mut sub = self.sub.clone();
            // A failure leaves a subscription that costs a message per notification; the
            // connection drops it when it reconnects without the tracker entry.
            let _ = sub.unsubscribe(channel).await;
        }
    }

    fn wake_all(&self) {
        for tx in self
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fork
// ---------------------------------------------------------------------------------------------

/// What a handle holds: the connection of the process that created it, which dereferences to
/// the current process's connection to the same server. In a forked child that is the
/// child's own (opened by `Redis::spawn` before the child's code runs, or on first use after
/// any other fork), so inherited handles work in the child. A child that cannot connect gets
/// the parent's, whose [`Proc::is_ours`] is false: the handle's operations then fail with
/// [`Proc::foreign_error`].
pub(crate) struct Live {
    home: Arc<Proc>,
}

impl std::ops::Deref for Live {
    type Target = Proc;

    fn deref(&self) -> &Proc {
        if self.home.pid == std::process::id() {
            return &self.home;
        }
        match forked_proc(&self.home) {
            Ok(p) => p,
            Err(_) => &self.home,
        }
    }
}

/// A forked child's connections by connection id, tagged with the child's pid (a grandchild
/// finds its parent's table and starts a new one). `None`: connecting failed (not retried, so
/// that every use does not wait for a connection timeout). Entries are leaked: they live as
/// long as the process, so a handle can lend one out.
type Forked = Option<(u32, HashMap<u64, Option<&'static Arc<Proc>>>)>;
static FORKED: Mutex<Forked> = Mutex::new(None);

/// This forked process's connection `conn_id`: `None` if not opened (yet), `Some(None)` if
/// opening failed.
fn forked_lookup(conn_id: u64) -> Option<Option<&'static Arc<Proc>>> {
    let pid = std::process::id();
    match &*FORKED.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((p, map)) if *p == pid => map.get(&conn_id).copied(),
        _ => None,
    }
}

/// This forked process's connection `conn_id`, if it has one.
fn forked_here(conn_id: u64) -> Option<&'static Arc<Proc>> {
    forked_lookup(conn_id).flatten()
}

/// Records a forked process's connection (or the failure to open it); the first one recorded
/// wins.
fn forked_insert(conn_id: u64, proc: Option<Arc<Proc>>) -> Option<&'static Arc<Proc>> {
    let pid = std::process::id();
    let mut table = FORKED.lock().unwrap_or_else(|e| e.into_inner());
    if !matches!(&*table, Some((p, _)) if *p == pid) {
        // The parent's table (this is a fork of a fork): its entries belong to the parent.
        // They are leaked, never dropped: their runtime's threads are not in this process.
        *table = Some((pid, HashMap::new()));
    }
    let Some((_, map)) = &mut *table else {
        unreachable!("the table was just set")
    };
    *map.entry(conn_id)
        .or_insert_with(|| proc.map(|p| &*Box::leak(Box::new(p))))
}

/// This forked process's connection to the server of `home` (a connection of the process it
/// was forked from), opened on first use (no lock held while connecting).
///
/// Opened here (a fork other than `Redis::spawn`'s), the child has no name registered by its
/// parent: it registers one itself on every object its parent held a live lease on, so the
/// handles it inherited work (and count) as its own. An object the parent had already left by
/// then is not joined.
fn forked_proc(home: &Arc<Proc>) -> Result<&'static Arc<Proc>, Error> {
    let found = match forked_lookup(home.conn_id) {
        Some(found) => found,
        None => {
            // `try_lock`: the copy of a lock another thread of the parent held at the fork
            // stays locked here forever; then the child starts with no leases.
            let mut leases = match home.leases.try_lock() {
                Ok(l) => l.clone(),
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().clone(),
                Err(std::sync::TryLockError::WouldBlock) => HashMap::new(),
            };
            mark_inherited(&mut leases);
            let (info, server, conn_id) = (home.info.clone(), home.server.clone(), home.conn_id);
            let parent = home.member.clone();
            let opened = block_on_short(async move {
                let proc = Proc::open(info, server, conn_id, None, HashMap::new()).await?;
                let refused = adopt(&proc.cmd, &parent, &proc.member, leases.keys()).await?;
                for zset in refused {
                    leases.remove(&zset);
                }
                proc.inherited
                    .store(leases.values().any(|r| r.inherited), Ordering::Release);
                *proc.leases.lock().unwrap_or_else(|e| e.into_inner()) = leases;
                Ok::<_, Error>(proc)
            });
            forked_insert(home.conn_id, opened.ok())
        }
    };
    found.ok_or_else(|| {
        Error::unsupported(format!(
            "redis: this forked child (process {}) could not connect to {}",
            std::process::id(),
            home.server
        ))
    })
}

/// Registers `member` on every zset of `zsets` where `parent` holds a live lease (pipelined:
/// one round trip); returns the zsets where it did not. On a failure, removes what it added.
async fn adopt(
    cmd: &ConnectionManager,
    parent: &str,
    member: &str,
    zsets: impl Iterator<Item = &String>,
) -> Result<Vec<String>, Error> {
    let mut round = tokio::task::JoinSet::new();
    let zsets: Vec<String> = zsets.cloned().collect();
    for zset in zsets.iter().cloned() {
        let mut c = cmd.clone();
        let (parent, member) = (parent.to_owned(), member.to_owned());
        round.spawn(async move {
            let r = adopt_script()
                .key(&zset)
                .arg(&parent)
                .arg(&member)
                .arg(ms(LEASE))
                .invoke_async::<i64>(&mut c)
                .await;
            (zset, r)
        });
    }
    let mut refused = Vec::new();
    let mut failure = None;
    while let Some(done) = round.join_next().await {
        match done {
            Ok((_, Ok(1))) => {}
            Ok((zset, Ok(_))) => refused.push(zset),
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if let Some(e) = failure {
        remove_member(cmd, member, zsets.iter()).await;
        return Err(redis_error("registering a forked child's handles", e));
    }
    Ok(refused)
}

/// This machine's name, for member names.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

/// The wake-up channel and every lease zset of the object that lease zset `zset` belongs to:
/// a channel's `uc:{<id>}:tx` and `uc:{<id>}:rx` go together; every other object has one,
/// `uc:{<id>}:h`.
fn object_of(zset: &str) -> (String, Vec<String>) {
    let (prefix, part) = zset.rsplit_once(':').unwrap_or((zset, ""));
    let zsets = match part {
        "tx" | "rx" => vec![format!("{prefix}:tx"), format!("{prefix}:rx")],
        _ => vec![zset.to_owned()],
    };
    (format!("{prefix}:w"), zsets)
}

/// Marks a child's copy of its parent's registrations: the channel sides are `inherited`
/// until the child uses the channel (see [`Proc::touch`]); other objects have one zset and
/// nothing to engage.
fn mark_inherited(leases: &mut HashMap<String, Registration>) {
    for (zset, reg) in leases.iter_mut() {
        reg.inherited = object_of(zset).1.len() > 1;
    }
}

/// KEYS: the zset. ARGV: the parent's member, the child's member, the lease in ms. Adds the
/// child where the parent holds a live lease; 1 if added, 0 if not (object gone, or the
/// parent's own lease lapsed: the child must not bring a departed holder back).
const ADOPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return 1
";

/// KEYS: the zset. ARGV: member, lease ms. Registers `member` again on an object that still
/// exists; 1 if done.
const REJOIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

fn rejoin_script() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    S.get_or_init(|| Script::new(REJOIN))
}

fn adopt_script() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    S.get_or_init(|| Script::new(ADOPT))
}

/// One connection's share of a child forked by `Redis::spawn`.
#[derive(Clone)]
struct ChildConn {
    /// The parent's connection (its address and id; only the parent uses its TCP streams).
    parent: Arc<Proc>,
    /// The child's member name, registered by the parent.
    member: String,
    /// The leases the child starts with: a copy of the parent's, less the objects the parent
    /// no longer held.
    leases: HashMap<String, Registration>,
}

/// What `Redis::spawn` hands its child: for each connection of the parent, the child's name
/// and the leases already registered under it. Built in the parent before the fork, so the
/// child counts as a holder of everything it inherits from the instant it exists: a parent
/// dropping its handle right after the spawn leaves the object to the child.
#[derive(Clone)]
pub(crate) struct ForkPlan {
    conns: Vec<ChildConn>,
}

/// Removes `member` from every zset of `leases` (best effort: a failure leaves them to lapse).
async fn remove_member(
    cmd: &ConnectionManager,
    member: &str,
    zsets: impl Iterator<Item = &String>,
) {
    let mut round = tokio::task::JoinSet::new();
    for zset in zsets {
        let mut c = cmd.clone();
        let (zset, member) = (zset.clone(), member.to_owned());
        round.spawn(async move {
            let _ = redis::cmd("ZREM")
                .arg(&zset)
                .arg(&member)
                .query_async::<i64>(&mut c)
                .await;
        });
    }
    while round.join_next().await.is_some() {}
}

impl ForkPlan {
    /// In the parent, just before the fork: registers a new member for the child on every
    /// object this process holds a handle to, on every connection (one round trip per
    /// connection: the registrations are pipelined).
    ///
    /// # Errors
    ///
    /// `Os` when a server does not answer; nothing stays registered then (or it lapses within
    /// a lease).
    pub(crate) fn prepare() -> Result<ForkPlan, Error> {
        let conns: Vec<Connection> = CONNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .map(|inner| Connection { inner })
            .collect();
        let mut plan = ForkPlan { conns: Vec::new() };
        for conn in conns {
            let Some(parent) = conn.proc_here() else {
                continue;
            };
            let mut leases = parent
                .leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            mark_inherited(&mut leases);
            let member = format!("{}:{}>{:016x}", host(), std::process::id(), random_u64());
            conn.count(leases.len() as u64);
            plan.conns.push(ChildConn {
                parent,
                member,
                leases,
            });
        }
        block_on_short(async {
            for i in 0..plan.conns.len() {
                let c = &plan.conns[i];
                match adopt(&c.parent.cmd, &c.parent.member, &c.member, c.leases.keys()).await {
                    Ok(refused) => {
                        for zset in refused {
                            plan.conns[i].leases.remove(&zset);
                        }
                    }
                    Err(e) => {
                        for c in &plan.conns[..i] {
                            remove_member(&c.parent.cmd, &c.member, c.leases.keys()).await;
                        }
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// In the parent, when the fork failed: takes the child's registrations back.
    pub(crate) fn abandon(self) {
        block_on_short(async {
            for c in &self.conns {
                remove_member(&c.parent.cmd, &c.member, c.leases.keys()).await;
            }
        });
    }

    /// In the child, before its code runs: opens the child's connections under the names
    /// the parent registered, with the leases it inherited (renewed from now on).
    ///
    /// # Errors
    ///
    /// `Os` when a server cannot be reached (the child's registrations then lapse).
    pub(crate) fn start_child(self) -> Result<(), Error> {
        for c in self.conns {
            let (info, server) = (c.parent.info.clone(), c.parent.server.clone());
            let conn_id = c.parent.conn_id;
            let proc = block_on_short(async move {
                Proc::open(info, server, conn_id, Some(c.member), c.leases).await
            })?;
            forked_insert(conn_id, Some(proc));
        }
        Ok(())
    }
}

/// In a child forked by `Redis::spawn`, when its code has finished (returned or panicked):
/// gives up every lease it still holds, on every connection (handles it never dropped, such as
/// the copies of the parent's that the child's code never touched, count no longer). The
/// last holder of an object deletes it, as a drop would.
pub(crate) fn finish_child() {
    let conns: Vec<Connection> = CONNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .map(|inner| Connection { inner })
        .collect();
    let procs: Vec<Arc<Proc>> = conns.iter().filter_map(Connection::proc_here).collect();
    let pending = std::mem::take(&mut pending_cleanups().1);
    block_on_short(async {
        // Clean-ups of handles dropped while the child's code panicked: bounded, a server
        // that does not answer leaves the leases to lapse.
        let _ = tokio::time::timeout(RESPONSE_TIMEOUT, async {
            for task in pending {
                let _ = task.await;
            }
        })
        .await;
        let mut round = tokio::task::JoinSet::new();
        for proc in procs {
            let leases: Vec<(String, Registration)> = proc
                .leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            for (zset, reg) in leases {
                let proc = proc.clone();
                round.spawn(async move {
                    let (wake, zsets) = object_of(&zset);
                    // A failure leaves the lease to lapse.
                    let _ = proc.leave(&zset, &reg.keys, &wake, &zsets).await;
                });
            }
        }
        while round.join_next().await.is_some() {}
    });
}

thread_local! {
    static DROPPING_LEFTOVERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Drops, in the parent, its copy of what a forked child now owns (a spawned closure and its
/// captures): handles let go of this process's leases as usual, but effects on shared state
/// that belong to the child (giving back a `Permit` moved into it) are skipped.
pub(crate) fn drop_fork_leftovers<T>(leftover: T) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DROPPING_LEFTOVERS.with(|f| f.set(false));
        }
    }
    DROPPING_LEFTOVERS.with(|f| f.set(true));
    let _reset = Reset;
    drop(leftover);
}

/// `true` while this thread drops the parent's copy of what a forked child now owns.
pub(crate) fn dropping_fork_leftovers() -> bool {
    DROPPING_LEFTOVERS.with(std::cell::Cell::get)
}

/// Routes pushes to the waiters of their channel; a lost connection wakes everyone (they
/// re-check, see the failure, retry).
async fn dispatch(live: Weak<Proc>, mut rx: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>) {
    while let Some(push) = rx.recv().await {
        let Some(live) = live.upgrade() else { return };
        match push.kind {
            PushKind::Message => {
                if let Some(redis::Value::BulkString(name)) = push.data.first() {
                    let name = String::from_utf8_lossy(name);
                    if let Some(tx) = live
                        .wakers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(name.as_ref())
                    {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
            PushKind::Disconnection => live.wake_all(),
            _ => {}
        }
    }
}

/// Renews this process's leases and held locks every `LEASE / 4`, until the connection is
/// dropped. Each round sends its renewals concurrently (one multiplexed connection pipelines
/// them), so an outage costs one response timeout per round, not one per object.
async fn renew(live: Weak<Proc>) {
    let period = LEASE / 4;
    loop {
        tokio::time::sleep(period).await;
        let Some(live) = live.upgrade() else { return };
        let leases: Vec<(String, Vec<String>)> = live
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(z, r)| (z.clone(), r.keys.clone()))
            .collect();
        let mut round = tokio::task::JoinSet::new();
        for (zset, keys) in leases {
            let mut conn = live.cmd.clone();
            let member = live.member.clone();
            round.spawn(async move {
                let mut inv = renew_script().key(&zset);
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(&member).arg(ms(LEASE)).arg(ms(IDLE_TTL));
                // A failure is retried at the next period; a lease lost meanwhile shows in
                // the handle's next operation.
                let _ = inv.invoke_async::<i64>(&mut conn).await;
            });
        }
        let held: Vec<(String, String, Arc<AtomicBool>)> = live
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|h| (h.meta.clone(), h.token.clone(), h.lost.clone()))
            .collect();
        for (meta, token, lost) in held {
            let mut conn = live.cmd.clone();
            round.spawn(async move {
                let renewed = renew_lock_script()
                    .key(&meta)
                    .arg(&token)
                    .arg(ms(LEASE))
                    .invoke_async::<i64>(&mut conn)
                    .await;
                // A failure is retried at the next period; 0 means the lease had lapsed.
                if let Ok(0) = renewed {
                    // Release: the guard reads it with Acquire before trusting its ownership.
                    lost.store(true, Ordering::Release);
                }
            });
        }
        drop(live);
        while round.join_next().await.is_some() {}
    }
}

/// A random 64-bit number (object ids, lock tokens): the std hasher's random keys mixed with
/// the time and a counter; unique, not secret.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    // Relaxed: only uniqueness matters.
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A fresh request id for a script that must run at most once however often it is retried
/// (see the channel module's "Retries"): a random prefix drawn once per process (again in a
/// forked child, which must not repeat its parent's ids) and a counter.
pub(crate) fn request_id() -> String {
    static PREFIX: Mutex<Option<(u32, u64)>> = Mutex::new(None);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let prefix = {
        let mut p = PREFIX.lock().unwrap_or_else(|e| e.into_inner());
        match *p {
            Some((q, prefix)) if q == pid => prefix,
            _ => {
                let prefix = random_u64();
                *p = Some((pid, prefix));
                prefix
            }
        }
    };
    // Relaxed: only uniqueness matters (the prefix tells processes apart).
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:x}")
}

/// A fresh object id; every key of the object is `uc:{<id>}:<part>`, one hash slot.
pub(crate) fn new_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// The key `part` of object `id`.
pub(crate) fn key(id: &str, part: &str) -> String {
    format!("uc:{{{id}}}:{part}")
}

/// Waits until a notification arrives on `rx`, `until` passes, or [`POLL`] elapses.
pub(crate) async fn nap(rx: &mut watch::Receiver<u64>, until: Option<Instant>) {
    let mut wake = tokio::time::Instant::now() + POLL;
    if let Some(d) = until {
        wake = wake.min(tokio::time::Instant::from_std(d));
    }
    let _ = tokio::time::timeout_at(wake, rx.changed()).await;
}

/// Sleeps a little before retrying after a transient failure (bounded by `deadline`).
pub(crate) async fn backoff(deadline: Option<Instant>) {
    let mut wake = tokio::time::Instant::now() + Duration::from_millis(100);
    if let Some(d) = deadline {
        wake = wake.min(tokio::time::Instant::from_std(d));
    }
    tokio::time::sleep_until(wake).await;
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

// ---------------------------------------------------------------------------------------------
// Cancel-safe `_async` forms
// ---------------------------------------------------------------------------------------------

/// Set when the future of an `_async` call is dropped: the work on the runtime stops waiting
/// (between two state checks, never in the middle of one).
#[derive(Default)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub(crate) fn is_cancelled(&self) -> bool {
        // Acquire pairs with the Release in `cancel`; nothing else is published with it, the
        // flag alone decides.
        self.flag.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        // Release: see `is_cancelled`.
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Waits for a notification, the deadline, [`POLL`], or cancellation.
    pub(crate) async fn nap(&self, rx: &mut watch::Receiver<u64>, until: Option<Instant>) {
        let cancelled = self.notify.notified();
        if self.is_cancelled() {
            return;
        }
        tokio::select! {
            () = nap(rx, until) => {}
            () = cancelled => {}
        }
    }
}

/// What an `_async` call's future holds: dropped before the result was read, it cancels the
/// work and hands a result that already arrived (sent into the oneshot, not yet read: the
/// caller's `select!` dropped the future in the same poll) to the undo.
struct AsyncCall<R> {
    cancel: Arc<Cancel>,
    rx: Option<tokio::sync::oneshot::Receiver<R>>,
    /// Taken by whichever side ends up holding a result nobody will read.
    undo: SharedUndo<R>,
}

/// The undo of an `_async` call: starts putting a result back (on the internal runtime).
type SharedUndo<R> = Arc<Mutex<Option<Box<dyn FnOnce(R) + Send>>>>;

impl<R> Drop for AsyncCall<R> {
    fn drop(&mut self) {
        self.cancel.cancel();
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // Closed first: from here on the task's `send` fails and the task undoes the result
        // itself; a result sent before is read here, so exactly one side undoes it.
        rx.close();
        if let Ok(r) = rx.try_recv() {
            let undo = self.undo.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(undo) = undo {
                undo(r);
            }
        }
    }
}

/// Runs `work` on the internal runtime for an `_async` call. If the caller's future is dropped,
/// `work` is told through its [`Cancel`] and stops at its next wait; a result it produced
/// anyway (a message popped, a lock taken) is handed to `undo` (put back, released) instead of
/// being lost, whether the future was dropped before the result arrived or after it arrived
/// but before it was read.
pub(crate) fn spawn_cancellable<R, F, U, UF>(
    work: impl FnOnce(Arc<Cancel>) -> F,
    undo: U,
) -> impl Future<Output = R> + Send
where
    R: Send + 'static,
    F: Future<Output = R> + Send + 'static,
    U: FnOnce(R) -> UF + Send + 'static,
    UF: Future<Output = ()> + Send + 'static,
{
    let cancel = Arc::new(Cancel::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let fut = work(cancel.clone());
    let undo: SharedUndo<R> = Arc::new(Mutex::new(Some(Box::new(move |r| {
        runtime().spawn(undo(r));
    }))));
    let task_undo = undo.clone();
    runtime().spawn(async move {
        let r = fut.await;
        if let Err(r) = tx.send(r) {
            let undo = task_undo.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(undo) = undo {
                undo(r);
            }
        }
    });
    let mut pending = AsyncCall {
        cancel,
        rx: Some(rx),
        undo,
    };
    async move {
        let r = match pending.rx.as_mut() {
            Some(rx) => rx.await,
            None => unreachable!("the receiver is taken only on drop"),
        };
        // Read: nothing for the drop to undo.
        pending.rx = None;
        drop(pending);
        r.expect("uniconc-redis: the internal task of an `_async` call panicked")
    }
}

impl Connection {
    /// The server's connection details (for the per-thread synchronous connections).
    pub(crate) fn info(&self) -> &redis::ConnectionInfo {
        &self.inner.info
    }

    /// Whether both handles are the same connection.
    pub(crate) fn ptr_eq(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The response timeout of every command.
    pub(crate) fn response_timeout() -> Duration {
        RESPONSE_TIMEOUT
    }
}

/// Every connection of this process still in use: where a travelling handle looks for one to
/// its server (`crate::travel`).
pub(crate) fn connections() -> Vec<Connection> {
    CONNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .map(|inner| Connection { inner })
        .collect()
}
