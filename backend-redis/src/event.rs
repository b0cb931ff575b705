//! [`Event`]: a flag that waiters block on until it is set.
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! - `m`, a hash: `set` (`0`/`1`).
//! - `h`, a sorted set of the processes holding a handle (idle TTL and clean-up).
//! - The notification channel `uc:{<id>}:w` gets a message on every `set`.
//!
//! `set` and `clear` are idempotent, so they are retried through a lost connection until they
//! land.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use redis::Script;
use uniconc_core::{Error, WaitError};

use crate::conn::{self, Connection, backoff, block_on, block_on_short, is_transient, redis_error};
use crate::object::Object;
use crate::wait::{Attempt, wait_until_asking};

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: m h. ARGV: member, lease ms, idle ttl ms.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'set', '0')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// KEYS: m. ARGV: value (0/1), wake channel. Returns 1, or -2 when gone.
const PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('HSET', KEYS[1], 'set', ARGV[1])
if ARGV[1] == '1' then redis.call('PUBLISH', ARGV[2], 's') end
return 1
";

/// KEYS: m. Returns 1 set, 0 clear, -2 gone.
const GET: &str = r"
local v = redis.call('HGET', KEYS[1], 'set')
if not v then return -2 end
return tonumber(v)
";

struct Scripts {
    create: Script,
    put: Script,
    get: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        create: Script::new(&format!("{PRELUDE}{CREATE}")),
        put: Script::new(PUT),
        get: Script::new(GET),
    })
}

/// The object's keys and clean-up.
type Shared = Object;

/// An event on a Redis server. Clones are the same event.
///
/// ```
/// use uniconc_core::Event as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let ev = conn.event()?;
/// let waiter = std::thread::spawn({
///     let ev = ev.clone();
///     move || ev.wait()
/// });
/// ev.set();
/// waiter.join().unwrap();
/// assert!(ev.is_set());
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    shared: Arc<Shared>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Event {
    fn create(conn: &Connection) -> Result<Self, Error> {
        let shared = Object::create(conn, &scripts().create, None, "an event")?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The event's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    fn fatal(&self, e: &Error) -> ! {
        panic!("uniconc-redis: event `{}`: {e}", self.shared.id)
    }

    fn put_invocation(&self, value: bool) -> redis::ScriptInvocation<'_> {
        let s = &self.shared;
        let mut inv = scripts().put.key(&s.meta);
        inv.arg(if value { "1" } else { "0" }).arg(&s.wake);
        inv
    }

    /// Sets or clears, retrying through a lost connection (both are idempotent).
    async fn put(&self, value: bool) -> Result<(), Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("event", &s.id));
        }
        loop {
            let mut c = s.live.cmd.clone();
            s.conn.count(1);
            let r = self.put_invocation(value).invoke_async::<i64>(&mut c).await;
            match r {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(conn::gone_error("event", &s.id)),
                Err(e) if is_transient(&e) => backoff(None).await,
                Err(e) => return Err(redis_error("setting an event", e)),
            }
        }
    }

    /// A blocking set or clear: first on this thread's own synchronous connection (see
    /// [`direct`](crate::direct)); a transient failure there (or no such connection) goes on
    /// to [`put`](Self::put), which retries until it lands.
    fn put_blocking(&self, value: bool) -> Result<(), Error> {
        let s = &self.shared;
        if s.live.direct_ok() {
            let r = crate::direct::with(&s.conn, |c| self.put_invocation(value).invoke::<i64>(c));
            if let Some(r) = r {
                s.conn.count(1);
                match r {
                    Ok(1) => return Ok(()),
                    Ok(_) => return Err(conn::gone_error("event", &s.id)),
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(redis_error("setting an event", e)),
                }
            }
        }
        block_on_short(self.put(value))
    }

    /// `Ok(Some(flag))`, `Ok(None)` on a transient failure.
    async fn get(&self) -> Result<Option<bool>, Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("event", &s.id));
        }
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        let r = scripts().get.key(&s.meta).invoke_async::<i64>(&mut c).await;
        self.flag(r)
    }

    /// [`get`](Self::get) on this thread's own synchronous connection; `None` when there is
    /// none here, and the caller takes the runtime's path. `blocking`: from the wait loop of
    /// a blocking call.
    fn get_direct(&self, blocking: bool) -> Option<Result<Option<bool>, Error>> {
        let s = &self.shared;
        if !s.live.direct_ok() {
            return None;
        }
        let run = |c: &mut redis::Connection| scripts().get.key(&s.meta).invoke::<i64>(c);
        let r = if blocking {
            crate::direct::with_blocking(&s.conn, run)?
        } else {
            crate::direct::with(&s.conn, run)?
        };
        s.conn.count(1);
        Some(self.flag(r))
    }

    /// The GET script's reply.
    fn flag(&self, r: redis::RedisResult<i64>) -> Result<Option<bool>, Error> {
        match r {
            Ok(-2) => Err(conn::gone_error("event", &self.shared.id)),
            Ok(v) => Ok(Some(v == 1)),
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(redis_error("reading an event", e)),
        }
    }

    async fn wait_inner(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&conn::Cancel>,
    ) -> Result<bool, Error> {
        let s = &self.shared;
        let set = wait_until_asking(&s.live, &s.wake, deadline, cancel, || async {
            // A blocking call (no `Cancel`: not an `_async` task) checks on its thread's own
            // connection.
            let direct = cancel.is_none().then(|| self.get_direct(true));
            let r = match direct.flatten() {
                Some(r) => r,
                None => self.get().await,
            };
            Ok::<_, Error>(match r? {
                Some(true) => Attempt::Done(()),
                Some(false) => Attempt::Wait,
                None => Attempt::Retry,
            })
        })
        .await?;
        Ok(set.is_some())
    }
}

impl uniconc_core::Event for Event {
    /// A new event on the [default connection](crate::default_connection).
    fn new() -> Result<Self, Error> {
        Self::create(&conn::default_connection()?)
    }

    /// # Panics
    ///
    /// If the event's data is gone from the server, or the server refuses the script. An
    /// unreachable server is waited out.
    fn set(&self) {
        if let Err(e) = self.put_blocking(true) {
            self.fatal(&e)
        }
    }

    /// # Panics
    ///
    /// As [`set`](uniconc_core::Event::set).
    fn clear(&self) {
        if let Err(e) = self.put_blocking(false) {
            self.fatal(&e)
        }
    }

    /// `false` also when the server cannot be reached.
    ///
    /// # Panics
    ///
    /// If the event's data is gone from the server.
    fn is_set(&self) -> bool {
        let r = match self.get_direct(false) {
            Some(r) => r,
            None => block_on_short(self.get()),
        };
        match r {
            Ok(v) => v.unwrap_or(false),
            Err(e) => self.fatal(&e),
        }
    }

    /// # Panics
    ///
    /// As [`set`](uniconc_core::Event::set).
    fn wait(&self) {
        if let Err(e) = block_on(self.wait_inner(None, None)) {
            self.fatal(&e)
        }
    }

    /// # Panics
    ///
    /// As [`set`](uniconc_core::Event::set).
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        match block_on(self.wait_inner(deadline, None)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(WaitError::Timeout),
            Err(e) => self.fatal(&e),
        }
    }

    /// # Panics
    ///
    /// As [`set`](uniconc_core::Event::set).
    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_ {
        let this = self.clone();
        async move {
            let r = conn::spawn_cancellable(
                move |cancel| async move { this.wait_inner(None, Some(&cancel)).await },
                // Seeing the flag takes nothing: nothing to undo.
                |_| async {},
            )
            .await;
            if let Err(e) = r {
                self.fatal(&e)
            }
        }
    }
}

impl Connection {
    /// A new event on this server, not set.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn event(&self) -> Result<Event, Error> {
        Event::create(self)
    }
}

impl Connection {
    /// Opens the event `id` (from [`Event::id`]), from any process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id; `Closed` when the event is gone; `Os` when the
    /// server cannot be reached.
    pub fn open_event(&self, id: &str) -> Result<Event, Error> {
        let (object, _) = Object::open(self, id, false, "", "event")?;
        Ok(Event {
            shared: Arc::new(object),
        })
    }
}

// ---- travelling handle (crate::travel) --------------------------------------------------------

crate::travel::one_object_travels!(Event, "an event");
