//! [`Barrier`]: a reusable barrier for `n` units, in any processes.
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! - `m`, a hash: `n` (parties), `count` (arrived in this generation), `gen` (generation).
//! - `h`, a sorted set of the processes holding a handle (idle TTL and clean-up).
//! - `a:<token>`, short-lived markers of arrivals already counted (value: the reply), so that an
//!   arrival retried through a lost connection counts once.
//! - The notification channel `uc:{<id>}:w` gets a message when a generation completes.
//!
//! A unit that gives up (`wait_timeout`, a dropped `wait_async`) withdraws its arrival if its
//! generation has not completed. A process killed while waiting does not withdraw: its arrival
//! still counts toward that generation.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::Script;
use uniconc_core::{Error, WaitError};

use crate::conn::{self, Connection, backoff, block_on, is_transient, key, ms, redis_error};
use crate::object::Object;
use crate::wait::{Attempt, wait_until_asking};

/// How long an arrival or a withdrawal keeps retrying through a lost connection.
const RETRY: Duration = Duration::from_secs(30);

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: m h. ARGV: n, member, lease ms, idle ttl ms.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'count', '0', 'gen', '0')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
";

/// KEYS: m marker. ARGV: wake channel, marker ttl ms. Returns {1, gen} as the leader of the
/// completed generation `gen`, {0, gen} waiting in generation `gen`, {-2, 0} gone.
const ARRIVE: &str = r"
local seen = redis.call('GET', KEYS[2])
if seen then
  local sep = string.find(seen, ':')
  return {tonumber(string.sub(seen, 1, sep - 1)), tonumber(string.sub(seen, sep + 1))}
end
local m = redis.call('HMGET', KEYS[1], 'n', 'count', 'gen')
if not m[1] then return {-2, 0} end
local c = tonumber(m[2]) + 1
local g = tonumber(m[3])
local r
if c >= tonumber(m[1]) then
  redis.call('HSET', KEYS[1], 'count', '0', 'gen', g + 1)
  redis.call('PUBLISH', ARGV[1], 'g')
  r = {1, g}
else
  redis.call('HSET', KEYS[1], 'count', c)
  r = {0, g}
end
redis.call('SET', KEYS[2], r[1] .. ':' .. r[2], 'PX', ARGV[2])
return r
";

/// KEYS: m. ARGV: gen. Returns 1 when generation `gen` has completed, 0 not yet, -2 gone.
const DONE: &str = r"
local g = redis.call('HGET', KEYS[1], 'gen')
if not g then return -2 end
if tonumber(g) > tonumber(ARGV[1]) then return 1 end
return 0
";

/// KEYS: m marker. ARGV: gen. Withdraws the arrival recorded by `marker` if generation `gen`
/// has not completed: returns 0 withdrawn (or withdrawn before), 1 completed meanwhile, -2
/// gone.
const WITHDRAW: &str = r"
local g = redis.call('HGET', KEYS[1], 'gen')
if not g then return {-2} end
if tonumber(g) > tonumber(ARGV[1]) then return {1} end
if redis.call('GET', KEYS[2]) ~= 'withdrawn' then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
  redis.call('SET', KEYS[2], 'withdrawn', 'KEEPTTL')
end
return {0}
";

struct Scripts {
    create: Script,
    arrive: Script,
    done: Script,
    withdraw: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        create: Script::new(&format!("{PRELUDE}{CREATE}")),
        arrive: Script::new(ARRIVE),
        done: Script::new(DONE),
        withdraw: Script::new(WITHDRAW),
    })
}

/// The barrier's keys and clean-up, and its party count.
struct Shared {
    object: Object,
    parties: usize,
}

impl std::ops::Deref for Shared {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.object
    }
}

/// A barrier on a Redis server. Clones are the same barrier.
///
/// ```
/// use uniconc_core::Barrier as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let barrier = conn.barrier(2)?;
/// let other = barrier.clone();
/// let h = std::thread::spawn(move || other.wait());
/// let mine = barrier.wait();
/// assert_ne!(mine, h.join().unwrap()); // exactly one of the two leads
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    shared: Arc<Shared>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("id", &self.shared.id)
            .field("parties", &self.shared.parties)
            .finish_non_exhaustive()
    }
}

/// One unit's arrival: its marker and generation.
struct Arrival {
    marker: String,
    generation: i64,
    leader: bool,
}

impl Barrier {
    fn create(conn: &Connection, n: usize) -> Result<Self, Error> {
        // Lua counts in doubles: exact up to 2^53.
        let max = usize::try_from(1u64 << 53).unwrap_or(usize::MAX);
        uniconc_core::validate::barrier_parties(n, max)?;
        let shared = Shared {
            object: Object::create(conn, &scripts().create, Some(n), "a barrier")?,
            parties: n,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The barrier's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    fn fatal(&self, e: &Error) -> ! {
        panic!("uniconc-redis: barrier `{}`: {e}", self.shared.id)
    }

    fn gone(&self) -> Error {
        conn::gone_error("barrier", &self.shared.id)
    }

    /// Runs `script` with retries through a lost connection (each script is idempotent).
    async fn retrying(
        &self,
        run: impl Fn() -> redis::ScriptInvocation<'static>,
    ) -> Result<Vec<i64>, Error> {
        let s = &self.shared;
        let until = Instant::now() + RETRY;
        loop {
            let mut c = s.live.cmd.clone();
            s.conn.count(1);
            match run().invoke_async::<Vec<i64>>(&mut c).await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && Instant::now() < until => backoff(None).await,
                Err(e) => return Err(redis_error("a barrier operation", e)),
            }
        }
    }

    async fn arrive(&self) -> Result<Arrival, Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("barrier", &s.id));
        }
        let marker = key(&s.id, &format!("a:{:016x}", conn::random_u64()));
        let (meta, m, wake) = (s.meta.clone(), marker.clone(), s.wake.clone());
        let r = self
            .retrying(move || {
                let mut inv = scripts().arrive.key(meta.clone());
                inv.key(m.clone()).arg(wake.clone()).arg(ms(RETRY * 4));
                inv
            })
            .await?;
        match r.as_slice() {
            [-2, _] => Err(self.gone()),
            [leader, generation] => Ok(Arrival {
                marker,
                generation: *generation,
                leader: *leader == 1,
            }),
            _ => Err(self.gone()),
        }
    }

    /// `Ok(Some(done))`, `Ok(None)` on a transient failure.
    async fn done(&self, generation: i64) -> Result<Option<bool>, Error> {
        let s = &self.shared;
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        match scripts()
            .done
            .key(&s.meta)
            .arg(generation)
            .invoke_async::<i64>(&mut c)
            .await
        {
            Ok(-2) => Err(self.gone()),
            Ok(v) => Ok(Some(v == 1)),
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(redis_error("waiting at a barrier", e)),
        }
    }

    /// Withdraws `a`; `Ok(true)` if its generation completed meanwhile (the wait succeeded).
    async fn withdraw(&self, a: &Arrival) -> Result<bool, Error> {
        let (meta, m, g) = (self.shared.meta.clone(), a.marker.clone(), a.generation);
        let r = self
            .retrying(move || {
                let mut inv = scripts().withdraw.key(meta.clone());
                inv.key(m.clone()).arg(g);
                inv
            })
            .await?;
        match r.first() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(self.gone()),
        }
    }

    /// `Ok(Some(leader))`, `Ok(None)` when it gave up (and withdrew).
    async fn wait_inner(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&conn::Cancel>,
    ) -> Result<Option<bool>, Error> {
        let a = self.arrive().await?;
        if a.leader {
            return Ok(Some(true));
        }
        let s = &self.shared;
        let done = wait_until_asking(&s.live, &s.wake, deadline, cancel, || async {
            Ok::<_, Error>(match self.done(a.generation).await? {
                Some(true) => Attempt::Done(()),
                Some(false) => Attempt::Wait,
                None => Attempt::Retry,
            })
        })
        .await?;
        if done.is_some() || self.withdraw(&a).await? {
            // Completed, or completed while giving up (the withdrawal came too late).
            Ok(Some(false))
        } else {
            Ok(None)
        }
    }
}

impl uniconc_core::Barrier for Barrier {
    /// A new barrier on the [default connection](crate::default_connection).
    fn new(n: usize) -> Result<Self, Error> {
        Self::create(&conn::default_connection()?, n)
    }

    /// # Panics
    ///
    /// If the barrier's data is gone from the server, the server refuses the script, or it
    /// stays unreachable for 30 s while arriving.
    fn wait(&self) -> bool {
        match block_on(self.wait_inner(None, None)) {
            Ok(Some(leader)) => leader,
            Ok(None) => unreachable!("a wait without deadline gave up"),
            Err(e) => self.fatal(&e),
        }
    }

    /// # Panics
    ///
    /// As [`wait`](uniconc_core::Barrier::wait).
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        match block_on(self.wait_inner(deadline, None)) {
            Ok(Some(leader)) => Ok(leader),
            Ok(None) => Err(WaitError::Timeout),
            Err(e) => self.fatal(&e),
        }
    }

    /// Cancel-safe: a dropped future withdraws its arrival (unless its generation completed).
    ///
    /// # Panics
    ///
    /// As [`wait`](uniconc_core::Barrier::wait).
    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_ {
        let this = self.clone();
        async move {
            let r = conn::spawn_cancellable(
                move |cancel| async move { this.wait_inner(None, Some(&cancel)).await },
                // The work withdraws by itself when cancelled while waiting; a generation that
                // completed is complete.
                |_| async {},
            )
            .await;
            match r {
                Ok(Some(leader)) => leader,
                Ok(None) => unreachable!("a wait without deadline gave up"),
                Err(e) => self.fatal(&e),
            }
        }
    }

    fn parties(&self) -> usize {
        self.shared.parties
    }
}

impl Connection {
    /// A new barrier on this server for `n` units.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `n` is 0 (or above 2^53); `Os` when the server cannot be reached.
    pub fn barrier(&self, n: usize) -> Result<Barrier, Error> {
        Barrier::create(self, n)
    }
}

/// The number of parties in a barrier's `n` field.
fn parties_of(id: &str, n: Option<String>) -> Result<usize, Error> {
    n.and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid_argument(format!("redis: `{id}` is not the id of a barrier")))
}

impl Connection {
    /// Opens the barrier `id` (from [`Barrier::id`]), from any process; its number of parties
    /// is read from the server.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id or another kind of object; `Closed` when the
    /// barrier is gone; `Os` when the server cannot be reached.
    pub fn open_barrier(&self, id: &str) -> Result<Barrier, Error> {
        let (object, n) = Object::open(self, id, false, "n", "barrier")?;
        let parties = parties_of(id, n)?;
        Ok(Barrier {
            shared: Arc::new(Shared { object, parties }),
        })
    }
}

// ---- travelling handle (crate::travel) --------------------------------------------------------

const TRAVEL: crate::travel::Kind = crate::travel::Kind {
    field: "n",
    ..crate::travel::plain("a barrier", false)
};

/// A travelling handle: sent through a channel, stored in a `Map` or returned from a task, it
/// is the same barrier where it lands, in any process that reaches the server (see
/// `uniconc::Backend::TRAVEL` for the rule of a handle in flight).
impl serde::Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = &self.shared.object;
        let held = crate::travel::Held {
            conn: &o.conn,
            live: &o.live,
            id: &o.id,
        };
        crate::travel::serialize(s, &TRAVEL, held)
    }
}

/// Takes over the handle in flight (see `Serialize`).
impl<'de> serde::Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let a = crate::travel::deserialize(d, &TRAVEL)?;
        let object = Object::adopted(&a.conn, a.live, &a.id, false);
        let parties = parties_of(&a.id, a.field).map_err(D::Error::custom)?;
        Ok(Self {
            shared: Arc::new(Shared { object, parties }),
        })
    }
}
