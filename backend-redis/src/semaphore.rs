//! [`Semaphore`]: counted permits that any unit may release (permits move between units).
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! - `m`, a hash: `n`, the permits available.
//! - `h`, a sorted set of the processes holding a handle (idle TTL and clean-up).
//! - `r:<token>`, short-lived markers of releases already applied, so that a release retried
//!   through a lost connection is counted once.
//! - The notification channel `uc:{<id>}:w` gets a message on every release.
//!
//! Permits belong to nobody: a process killed holding permits does not give them back.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::Script;
use uniconc_core::Error;

use crate::conn::{
    self, Connection, backoff, block_on, block_on_short, is_transient, key, ms, redis_error,
};
use crate::object::Object;
use crate::wait::{Attempt, wait_until_asking};

/// How long a release keeps retrying through a lost connection before giving up (and
/// panicking: a permit cannot be silently lost).
const RELEASE_RETRY: Duration = Duration::from_secs(30);

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: m h. ARGV: permits, member, lease ms, idle ttl ms.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'n', ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
";

/// KEYS: m marker. ARGV: marker ttl ms. Returns 1 taken (now, or by an earlier attempt of the
/// same call: the call's marker says so, so a retry after a lost reply takes one permit), 0
/// none available, -2 gone.
const TAKE: &str = r"
local n = redis.call('HGET', KEYS[1], 'n')
if not n then return -2 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if tonumber(n) <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'n', -1)
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
";

/// KEYS: m marker. ARGV: wake channel, marker ttl ms. Returns 1 (released now or before), -2
/// gone.
const RELEASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  redis.call('PUBLISH', ARGV[1], 'r')
end
return 1
";

/// KEYS: m. Returns the permits available, or -2 when gone.
const AVAILABLE: &str = r"
local n = redis.call('HGET', KEYS[1], 'n')
if not n then return -2 end
return tonumber(n)
";

struct Scripts {
    create: Script,
    take: Script,
    release: Script,
    available: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        create: Script::new(&format!("{PRELUDE}{CREATE}")),
        take: Script::new(TAKE),
        release: Script::new(RELEASE),
        available: Script::new(AVAILABLE),
    })
}

/// The object's keys and clean-up.
type Shared = Object;

/// A semaphore on a Redis server. Clones are the same semaphore.
///
/// ```
/// use uniconc_core::Semaphore as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let sem = conn.semaphore(1)?;
/// let permit = sem.acquire();
/// assert!(sem.try_acquire().is_err());
/// drop(permit); // released: one round trip
/// assert_eq!(sem.available(), 1);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    shared: Arc<Shared>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    fn create(conn: &Connection, permits: usize) -> Result<Self, Error> {
        // Lua counts in doubles: exact up to 2^53.
        if permits as u128 > 1u128 << 53 {
            return Err(Error::invalid_argument(format!(
                "{permits} permits: a Redis semaphore counts at most 2^53"
            )));
        }
        let shared = Object::create(conn, &scripts().create, Some(permits), "a semaphore")?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The semaphore's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    fn fatal(&self, e: &Error) -> ! {
        panic!("uniconc-redis: semaphore `{}`: {e}", self.shared.id)
    }

    /// The TAKE script for one call, whose attempts share `marker`.
    fn take_invocation<'a>(&'a self, marker: &'a str) -> redis::ScriptInvocation<'a> {
        let mut inv = scripts().take.key(&self.shared.meta);
        inv.key(marker).arg(ms(RELEASE_RETRY * 2));
        inv
    }

    /// `Ok(Some(taken))`, `Ok(None)` on a transient failure. `marker`: the call's (see TAKE).
    async fn take_once(&self, marker: &str) -> Result<Option<bool>, Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("semaphore", &s.id));
        }
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        let r = self
            .take_invocation(marker)
            .invoke_async::<i64>(&mut c)
            .await;
        self.taken(r)
    }

    /// [`take_once`](Self::take_once) on this thread's own synchronous connection (see
    /// [`direct`](crate::direct)); `None` when there is none here, and the caller takes the
    /// runtime's path. `blocking`: from the wait loop of a blocking call.
    fn take_once_direct(
        &self,
        marker: &str,
        blocking: bool,
    ) -> Option<Result<Option<bool>, Error>> {
        let s = &self.shared;
        if !s.live.direct_ok() {
            return None;
        }
        let run = |c: &mut redis::Connection| self.take_invocation(marker).invoke::<i64>(c);
        let r = if blocking {
            crate::direct::with_blocking(&s.conn, run)?
        } else {
            crate::direct::with(&s.conn, run)?
        };
        s.conn.count(1);
        Some(self.taken(r))
    }

    /// The TAKE script's reply.
    fn taken(&self, r: redis::RedisResult<i64>) -> Result<Option<bool>, Error> {
        match r {
            Ok(-2) => Err(conn::gone_error("semaphore", &self.shared.id)),
            Ok(v) => Ok(Some(v == 1)),
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(redis_error("taking a permit", e)),
        }
    }

    async fn take_inner(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&conn::Cancel>,
    ) -> Result<bool, Error> {
        let s = &self.shared;
        let marker = self.marker("t");
        let taken = wait_until_asking(&s.live, &s.wake, deadline, cancel, || async {
            // A blocking call (no `Cancel`: not an `_async` task) tries on its thread's own
            // connection.
            let direct = cancel
                .is_none()
                .then(|| self.take_once_direct(&marker, true));
            let r = match direct.flatten() {
                Some(r) => r,
                None => self.take_once(&marker).await,
            };
            Ok::<_, Error>(match r? {
                Some(true) => Attempt::Done(()),
                Some(false) => Attempt::Wait,
                None => Attempt::Retry,
            })
        })
        .await?;
        Ok(taken.is_some())
    }

    fn release_invocation<'a>(&'a self, marker: &'a str) -> redis::ScriptInvocation<'a> {
        let s = &self.shared;
        let mut inv = scripts().release.key(&s.meta);
        inv.key(marker).arg(&s.wake).arg(ms(RELEASE_RETRY * 2));
        inv
    }

    /// A fresh marker for one call (`kind` `t` a take, `r` a release): a retry of the call
    /// under the same marker counts once.
    fn marker(&self, kind: &str) -> String {
        key(
            &self.shared.id,
            &format!("{kind}:{:016x}", conn::random_u64()),
        )
    }

    /// Releases one permit under `marker`, retrying through a lost connection; the marker
    /// makes a retry of a release that did land count once.
    async fn release_inner(&self, marker: &str) -> Result<(), Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("semaphore", &s.id));
        }
        let until = Instant::now() + RELEASE_RETRY;
        loop {
            let mut c = s.live.cmd.clone();
            s.conn.count(1);
            let r = self
                .release_invocation(marker)
                .invoke_async::<i64>(&mut c)
                .await;
            match r {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(conn::gone_error("semaphore", &s.id)),
                Err(e) if is_transient(&e) && Instant::now() < until => backoff(None).await,
                Err(e) => return Err(redis_error("releasing a permit", e)),
            }
        }
    }

    /// A blocking release: first on this thread's own synchronous connection; a failure there
    /// (or no such connection) goes on to [`release_inner`](Self::release_inner) with the
    /// same marker, so a release that landed before the failure still counts once.
    fn release_blocking(&self) -> Result<(), Error> {
        let s = &self.shared;
        let marker = self.marker("r");
        if s.live.direct_ok() {
            let r = crate::direct::with(&s.conn, |c| {
                self.release_invocation(&marker).invoke::<i64>(c)
            });
            if let Some(r) = r {
                s.conn.count(1);
                match r {
                    Ok(1) => return Ok(()),
                    Ok(_) => return Err(conn::gone_error("semaphore", &s.id)),
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(redis_error("releasing a permit", e)),
                }
            }
        }
        block_on_short(self.release_inner(&marker))
    }
}

impl uniconc_core::Semaphore for Semaphore {
    /// A new semaphore on the [default connection](crate::default_connection).
    fn new(permits: usize) -> Result<Self, Error> {
        Self::create(&conn::default_connection()?, permits)
    }

    /// `false` also when the server cannot be reached.
    ///
    /// # Panics
    ///
    /// If the semaphore's data is gone from the server, or the server refuses the script.
    fn try_take(&self) -> bool {
        let marker = self.marker("t");
        let r = match self.take_once_direct(&marker, false) {
            // A failure on the thread's connection may have lost a reply whose permit was
            // taken: asked again under the same marker, it counts once.
            Some(Ok(None)) | None => block_on_short(self.take_once(&marker)),
            Some(r) => r,
        };
        match r {
            Ok(v) => v.unwrap_or(false),
            Err(e) => self.fatal(&e),
        }
    }

    /// An unreachable server is waited out until the deadline.
    ///
    /// # Panics
    ///
    /// As [`try_take`](uniconc_core::Semaphore::try_take).
    fn take_deadline(&self, deadline: Option<Instant>) -> bool {
        match block_on(self.take_inner(deadline, None)) {
            Ok(v) => v,
            Err(e) => self.fatal(&e),
        }
    }

    /// # Panics
    ///
    /// As [`try_take`](uniconc_core::Semaphore::try_take).
    fn take_async(&self) -> impl Future<Output = ()> + Send + '_ {
        let this = self.clone();
        let undo = self.clone();
        async move {
            let r = conn::spawn_cancellable(
                move |cancel| async move { this.take_inner(None, Some(&cancel)).await },
                // Taken after the caller gave up: give it back.
                move |r| async move {
                    if let Ok(true) = r {
                        let _ = undo.release_inner(&undo.marker("r")).await;
                    }
                },
            )
            .await;
            match r {
                Ok(true) => {}
                Ok(false) => unreachable!("a wait without deadline ended without a permit"),
                Err(e) => self.fatal(&e),
            }
        }
    }

    /// # Panics
    ///
    /// If the semaphore's data is gone, or the server stays unreachable for 30 s: a permit is
    /// never dropped silently.
    fn release(&self) {
        if conn::dropping_fork_leftovers() {
            // The parent's copy of a `Permit` moved into a unit forked by `Redis::spawn`: the
            // child gives the permit back, not this copy.
            return;
        }
        if let Err(e) = self.release_blocking() {
            self.fatal(&e)
        }
    }

    /// 0 also when the server cannot be reached.
    ///
    /// # Panics
    ///
    /// If the semaphore's data is gone from the server.
    fn available(&self) -> usize {
        let s = &self.shared;
        if !s.live.is_ours() {
            self.fatal(&s.live.foreign_error("semaphore", &s.id));
        }
        s.conn.count(1);
        let r = block_on_short(async {
            let mut c = s.live.cmd.clone();
            scripts()
                .available
                .key(&s.meta)
                .invoke_async::<i64>(&mut c)
                .await
        });
        match r {
            Ok(-2) => self.fatal(&conn::gone_error("semaphore", &s.id)),
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

impl Connection {
    /// A new semaphore on this server with `permits` permits.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for more than 2^53 permits; `Os` when the server cannot be reached.
    pub fn semaphore(&self, permits: usize) -> Result<Semaphore, Error> {
        Semaphore::create(self, permits)
    }
}

impl Connection {
    /// Opens the semaphore `id` (from [`Semaphore::id`]), from any process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id; `Closed` when the semaphore is gone; `Os` when the
    /// server cannot be reached.
    pub fn open_semaphore(&self, id: &str) -> Result<Semaphore, Error> {
        let (object, _) = Object::open(self, id, false, "", "semaphore")?;
        Ok(Semaphore {
            shared: Arc::new(object),
        })
    }
}

// ---- travelling handle (crate::travel) --------------------------------------------------------

crate::travel::one_object_travels!(Semaphore, "a semaphore");
