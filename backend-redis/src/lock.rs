//! [`Lock`]: a lease lock with a fencing token, on one server (no Redlock).
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! - `m`, a hash: `owner` (the holder's random token) and `exp` (its lease's expiry, server
//!   clock, ms) while held; `fence`, a counter bumped by every acquisition; `poisoned`, `1`
//!   when the last holder panicked; `prev`, how the holder found the lock (clean, its last
//!   holder dead or panicked), for a retried acquisition.
//! - `h`, a sorted set of the processes holding a handle (for the idle TTL and clean-up).
//! - The notification channel `uc:{<id>}:w` gets a message on every release.
//!
//! Lock and unlock are one script each: an uncontended `lock()` + drop is two round trips.
//! A holder's lease is extended by its process every [`LEASE`]` / 4`; a holder
//! that stops renewing (killed, paused, cut off) loses the lock when its lease expires, the
//! next acquirer gets [`OwnerDied`](uniconc_core::LockError::OwnerDied) and a higher
//! [`fencing token`](LockGuard::fencing_token), and the old holder's unlock is refused.
//!
//! # Fencing
//!
//! A lease lock cannot stop a paused holder from waking up and acting as if it still held the
//! lock. Pass [`LockGuard::fencing_token`] along with every write to the protected resource, and
//! have the resource refuse a token lower than the highest it has seen; or call
//! [`LockGuard::check`] right before acting, which asks the server.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::Script;
use uniconc_core::{Error, LockError, TryLockError};

use crate::conn::{
    self, Connection, LEASE, Live, block_on, block_on_short, is_transient, key, ms, redis_error,
};
use crate::object::Object;
use crate::wait::{Attempt, wait_until_asking};

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: m h [d]. ARGV: member, lease ms, idle ttl ms [, d's initial bytes].
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'fence', '0')
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// KEYS: m h. ARGV: member, lease ms. Returns 1, or -2 when gone.
const JOIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS: m. ARGV: token, lease ms. Returns {1, fence, previous: 0 clean, 1 died, 2 panicked},
/// {0, ms until the holder's lease expires}, or {-2} when gone. Safe to retry: the token is
/// one call's, so a retry whose first attempt took the lock (its reply lost) gets that
/// attempt's reply again (`prev` is kept for it).
const LOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp', 'poisoned', 'fence', 'prev')
if o[1] and tonumber(o[2]) > now then
  if o[1] == ARGV[1] then return {1, tonumber(o[4]), tonumber(o[5] or '0')} end
  return {0, tonumber(o[2]) - now}
end
local prev = 0
if o[1] then prev = 1 elseif o[3] == '1' then prev = 2 end
local f = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'exp', now + tonumber(ARGV[2]), 'poisoned', '0', 'prev', prev)
return {1, f, prev}
";

/// KEYS: m. ARGV: token, wake channel, poisoned (0/1). Returns 1 released, 0 refused (not the
/// holder any more), -2 gone.
const UNLOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp')
if o[1] ~= ARGV[1] or tonumber(o[2]) <= now then return 0 end
redis.call('HDEL', KEYS[1], 'owner', 'exp')
redis.call('HSET', KEYS[1], 'poisoned', ARGV[3])
redis.call('PUBLISH', ARGV[2], 'u')
return 1
";

/// KEYS: m d. ARGV: token, fence, wake channel, poisoned (0/1), bytes. Writes `bytes` to `d` and
/// releases, only while `token` holds the lock with a live lease at fencing token `fence`.
/// Returns 1 written and released, 0 refused (nothing written), -2 gone.
const WRITE_UNLOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp', 'fence')
if o[1] ~= ARGV[1] or tonumber(o[2]) <= now or o[3] ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[5], 'KEEPTTL')
redis.call('HDEL', KEYS[1], 'owner', 'exp')
redis.call('HSET', KEYS[1], 'poisoned', ARGV[4])
redis.call('PUBLISH', ARGV[3], 'u')
return 1
";

/// KEYS: m d. ARGV: token, fence, wake channel, offset, bytes. As WRITE_UNLOCK, for `bytes` at
/// byte `offset` of `d` (an array's element).
const WRITE_RANGE_UNLOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp', 'fence')
if o[1] ~= ARGV[1] or tonumber(o[2]) <= now or o[3] ~= ARGV[2] then return 0 end
redis.call('SETRANGE', KEYS[2], tonumber(ARGV[4]), ARGV[5])
redis.call('HDEL', KEYS[1], 'owner', 'exp')
redis.call('HSET', KEYS[1], 'poisoned', '0')
redis.call('PUBLISH', ARGV[3], 'u')
return 1
";

/// KEYS: m. ARGV: token. Returns 1 while the token holds the lock with a live lease, else 0.
const CHECK: &str = r"
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp')
if o[1] == ARGV[1] and tonumber(o[2]) > now then return 1 end
return 0
";

/// KEYS: m. Returns 1 if held with a live lease.
const HELD: &str = r"
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp')
if o[1] and tonumber(o[2]) > now then return 1 end
return 0
";

struct Scripts {
    create: Script,
    join: Script,
    lock: Script,
    unlock: Script,
    check: Script,
    held: Script,
    write_unlock: Script,
    write_range_unlock: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let with = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            create: with(CREATE),
            join: with(JOIN),
            lock: with(LOCK),
            unlock: with(UNLOCK),
            check: with(CHECK),
            held: with(HELD),
            write_unlock: with(WRITE_UNLOCK),
            write_range_unlock: with(WRITE_RANGE_UNLOCK),
        }
    })
}

/// The object's keys and clean-up.
type Shared = Object;

/// A lock on a Redis server, shared by every process that has its id. Clones are the same lock.
///
/// ```no_run
/// use uniconc_core::Lock as _;
///
/// let conn = uniconc_redis::default_connection()?;
/// let lock = conn.lock()?;
/// let guard = lock.lock().unwrap();
/// let token = guard.fencing_token(); // send it with every write the lock protects
/// assert!(token > 0);
/// drop(guard);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    shared: Arc<Shared>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Holds a [`Lock`]; dropping it releases the lock (one round trip).
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    token: String,
    fence: u64,
    lost: Arc<AtomicBool>,
    released: bool,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("fencing_token", &self.fence)
            .finish_non_exhaustive()
    }
}

/// What one acquisition got.
struct Acquired {
    token: String,
    fence: u64,
    /// 0 clean, 1 the previous holder's lease expired, 2 it panicked.
    previous: i64,
}

/// Why an acquisition attempt failed.
enum Fail {
    Redis(redis::RedisError),
    Gone,
    /// A handle of the parent used in a forked child.
    Foreign,
}

enum Step {
    Got(Acquired),
    /// Held by someone else, whose lease expires in this long.
    Held(Duration),
}

/// The LOCK script's reply for `token`.
fn step(token: &str, r: &[i64]) -> Result<Step, Fail> {
    match r {
        [1, fence, previous] => Ok(Step::Got(Acquired {
            token: token.to_owned(),
            fence: u64::try_from(*fence).unwrap_or(0),
            previous: *previous,
        })),
        [0, left] => Ok(Step::Held(Duration::from_millis(
            u64::try_from(*left).unwrap_or(0),
        ))),
        _ => Err(Fail::Gone),
    }
}

impl Lock {
    fn create(conn: &Connection) -> Result<Self, Error> {
        Self::create_with(conn, None)
    }

    /// A new lock; with `data`, also its data key (`uc:{<id>}:d`) holding these bytes, which
    /// lives and dies with the lock (a `Value` or `Array`).
    pub(crate) fn create_with(conn: &Connection, data: Option<&[u8]>) -> Result<Self, Error> {
        let live = conn.live()?;
        let mut shared = Object::new(conn, live.clone(), conn::new_id());
        if data.is_some() {
            shared.data = Some(key(&shared.id, "d"));
        }
        conn.count(1);
        block_on_short(async {
            let mut c = live.cmd.clone();
            let mut inv = scripts().create.key(&shared.meta);
            inv.key(&shared.handles);
            if let (Some(d), Some(bytes)) = (&shared.data, data) {
                inv.key(d);
                inv.arg(&live.member)
                    .arg(ms(LEASE))
                    .arg(ms(conn::IDLE_TTL))
                    .arg(bytes);
            } else {
                inv.arg(&live.member).arg(ms(LEASE)).arg(ms(conn::IDLE_TTL));
            }
            inv.invoke_async::<i64>(&mut c).await
        })
        .map_err(|e| redis_error("creating a lock", e))?;
        live.register(&shared.handles, &shared.lease_keys());
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The lock's id: another process opens the same lock with [`Connection::open_lock`].
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    fn lock_invocation<'a>(&'a self, token: &'a str) -> redis::ScriptInvocation<'a> {
        let mut inv = scripts().lock.key(&self.shared.meta);
        inv.arg(token).arg(ms(LEASE));
        inv
    }

    async fn try_once(&self, token: &str) -> Result<Step, Fail> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(Fail::Foreign);
        }
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        let r: Vec<i64> = self
            .lock_invocation(token)
            .invoke_async(&mut c)
            .await
            .map_err(Fail::Redis)?;
        step(token, &r)
    }

    /// [`try_once`](Self::try_once) on this thread's own synchronous connection (see
    /// [`direct`](crate::direct)): `None` when there is none here (inside an async runtime
    /// for `blocking == false`, in a forked child still using inherited handles, or the
    /// connection cannot be opened); the caller then takes the runtime's path. `blocking`:
    /// called from the wait loop of a blocking call (inside the crate's `block_on`).
    fn try_once_direct(&self, token: &str, blocking: bool) -> Option<Result<Step, Fail>> {
        let s = &self.shared;
        if !s.live.direct_ok() {
            return None;
        }
        let run = |c: &mut redis::Connection| self.lock_invocation(token).invoke::<Vec<i64>>(c);
        let r = if blocking {
            crate::direct::with_blocking(&s.conn, run)?
        } else {
            crate::direct::with(&s.conn, run)?
        };
        s.conn.count(1);
        Some(r.map_err(Fail::Redis).and_then(|r| step(token, &r)))
    }

    fn fail_error(&self, f: Fail) -> Error {
        match f {
            Fail::Redis(e) => redis_error("locking", e),
            Fail::Gone => conn::gone_error("lock", &self.shared.id),
            Fail::Foreign => self.shared.live.foreign_error("lock", &self.shared.id),
        }
    }

    /// Acquires, waiting until `deadline`; `Ok(None)` on timeout (or cancellation).
    async fn acquire(
        &self,
        deadline: Option<Instant>,
        cancel: Option<&conn::Cancel>,
    ) -> Result<Option<Acquired>, Error> {
        let token = format!("{}:{:016x}", self.shared.live.member, conn::random_u64());
        let s = &self.shared;
        wait_until_asking(&s.live, &s.wake, deadline, cancel, || async {
            // A blocking call (no `Cancel`: not an `_async` task) tries on its thread's own
            // connection: the round trip without the two hops through the runtime.
            let direct = cancel.is_none().then(|| self.try_once_direct(&token, true));
            let r = match direct.flatten() {
                Some(r) => r,
                None => self.try_once(&token).await,
            };
            match r {
                Ok(Step::Got(a)) => Ok(Attempt::Done(a)),
                // Wake for a release, or when the holder's lease runs out (a dead holder
                // publishes nothing).
                Ok(Step::Held(left)) => Ok(Attempt::WaitAtMost(left)),
                Err(Fail::Redis(e)) if is_transient(&e) => Ok(Attempt::Retry),
                Err(f) => Err(self.fail_error(f)),
            }
        })
        .await
    }

    fn guard(&self, a: Acquired) -> LockGuard<'_> {
        let lost = self.shared.live.hold(&self.shared.meta, &a.token);
        LockGuard {
            lock: self,
            token: a.token,
            fence: a.fence,
            lost,
            released: false,
        }
    }

    fn result(&self, a: Acquired) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        let previous = a.previous;
        let g = self.guard(a);
        match previous {
            0 => Ok(g),
            1 => Err(TryLockError::OwnerDied(g)),
            _ => Err(TryLockError::Poisoned(g)),
        }
    }

    /// Acquires like [`lock_deadline`](uniconc_core::Lock::lock_deadline), but reports a server
    /// failure as an error instead of waiting it out.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached or refuses; `Closed` when the lock's data is gone
    /// from the server; `Timeout` at the deadline.
    pub fn lock_checked(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Result<LockGuard<'_>, TryLockError<LockGuard<'_>>>, Error> {
        match block_on(self.acquire(deadline, None))? {
            Some(a) => Ok(self.result(a)),
            None => Ok(Err(TryLockError::Timeout)),
        }
    }
}

fn untimed<'a>(
    r: Result<LockGuard<'a>, TryLockError<LockGuard<'a>>>,
) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
    match r {
        Ok(g) => Ok(g),
        Err(TryLockError::OwnerDied(g)) => Err(LockError::OwnerDied(g)),
        Err(TryLockError::Poisoned(g)) => Err(LockError::Poisoned(g)),
        Err(TryLockError::WouldBlock | TryLockError::Timeout) => {
            unreachable!("a wait without deadline ended without the lock")
        }
    }
}

fn fatal(lock: &Lock, e: &Error) -> ! {
    panic!("uniconc-redis: lock `{}`: {e}", lock.shared.id)
}

impl uniconc_core::Lock for Lock {
    type Guard<'a> = LockGuard<'a>;

    /// A new lock on the [default connection](crate::default_connection).
    fn new() -> Result<Self, Error> {
        Self::create(&conn::default_connection()?)
    }

    /// # Panics
    ///
    /// If the lock's data is gone from the server (restarted without persistence, flushed), or
    /// the server refuses the script: there is no lock left to wait for. A server that is only
    /// unreachable is waited out. [`Lock::lock_checked`] reports these as errors.
    fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match block_on(self.acquire(None, None)) {
            Ok(Some(a)) => untimed(self.result(a)),
            Ok(None) => unreachable!("a wait without deadline ended without the lock"),
            Err(e) => fatal(self, &e),
        }
    }

    /// # Panics
    ///
    /// As [`lock`](uniconc_core::Lock::lock); an unreachable server is `WouldBlock`.
    fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        let token = format!("{}:{:016x}", self.shared.live.member, conn::random_u64());
        let r = match self.try_once_direct(&token, false) {
            Some(r) => r,
            None => block_on_short(self.try_once(&token)),
        };
        match r {
            Ok(Step::Got(a)) => self.result(a),
            Ok(Step::Held(_)) => Err(TryLockError::WouldBlock),
            Err(Fail::Redis(e)) if is_transient(&e) => Err(TryLockError::WouldBlock),
            Err(f) => fatal(self, &self.fail_error(f)),
        }
    }

    /// # Panics
    ///
    /// As [`lock`](uniconc_core::Lock::lock); an unreachable server is waited out until the
    /// deadline.
    fn lock_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match block_on(self.acquire(deadline, None)) {
            Ok(Some(a)) => self.result(a),
            Ok(None) => Err(TryLockError::Timeout),
            Err(e) => fatal(self, &e),
        }
    }

    /// # Panics
    ///
    /// As [`lock`](uniconc_core::Lock::lock).
    fn lock_async(
        &self,
    ) -> impl Future<Output = Result<LockGuard<'_>, LockError<LockGuard<'_>>>> + Send + '_ {
        let this = self.clone();
        let undo = self.clone();
        async move {
            let r = conn::spawn_cancellable(
                move |cancel| async move { this.acquire(None, Some(&cancel)).await },
                // Taken after the caller gave up: release it.
                move |r| async move {
                    if let Ok(Some(a)) = r {
                        let _ = undo.release(&a.token, false).await;
                    }
                },
            )
            .await;
            match r {
                Ok(Some(a)) => untimed(self.result(a)),
                Ok(None) => unreachable!("a wait without deadline ended without the lock"),
                Err(e) => fatal(self, &e),
            }
        }
    }

    /// Whether someone holds the lock with a live lease (`false` if the server cannot say).
    fn is_locked(&self) -> bool {
        let s = &self.shared;
        if !s.live.is_ours() {
            return false;
        }
        s.conn.count(1);
        block_on_short(async {
            let mut c = s.live.cmd.clone();
            scripts()
                .held
                .key(&s.meta)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .is_ok_and(|r| r == 1)
    }
}

impl Lock {
    /// Releases `token`'s hold: `Ok(true)` released, `Ok(false)` refused (the lease had lapsed:
    /// someone else may hold the lock now).
    async fn release(&self, token: &str, poisoned: bool) -> Result<bool, Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("lock", &s.id));
        }
        s.live.release(token);
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        let r: i64 = self
            .unlock_invocation(token, poisoned)
            .invoke_async(&mut c)
            .await
            .map_err(|e| redis_error("unlocking", e))?;
        self.released(r)
    }

    fn unlock_invocation<'a>(
        &'a self,
        token: &'a str,
        poisoned: bool,
    ) -> redis::ScriptInvocation<'a> {
        let s = &self.shared;
        let mut inv = scripts().unlock.key(&s.meta);
        inv.arg(token)
            .arg(&s.wake)
            .arg(if poisoned { "1" } else { "0" });
        inv
    }

    /// The UNLOCK script's reply.
    fn released(&self, r: i64) -> Result<bool, Error> {
        match r {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(conn::gone_error("lock", &self.shared.id)),
        }
    }

    /// [`release`](Self::release) on this thread's own synchronous connection (a plain thread,
    /// not a task): `None` when there is none here, and the caller takes the runtime's path.
    fn release_direct(&self, token: &str, poisoned: bool) -> Option<Result<bool, Error>> {
        let s = &self.shared;
        if !s.live.direct_ok() {
            return None;
        }
        let r = crate::direct::with(&s.conn, |c| {
            self.unlock_invocation(token, poisoned).invoke::<i64>(c)
        })?;
        s.live.release(token);
        s.conn.count(1);
        Some(
            r.map_err(|e| redis_error("unlocking", e))
                .and_then(|r| self.released(r)),
        )
    }
}

impl Lock {
    /// The data key of a `Value`'s or `Array`'s lock.
    pub(crate) fn data_key(&self) -> &str {
        self.shared.data.as_deref().unwrap_or_default()
    }

    /// The connection this lock is on.
    pub(crate) fn connection(&self) -> &Connection {
        &self.shared.conn
    }

    /// The live connection, refused in a forked child (`what` names the object in the error).
    pub(crate) fn live_checked(&self, what: &str) -> Result<&Arc<Live>, Error> {
        let s = &self.shared;
        if s.live.is_ours() {
            Ok(&s.live)
        } else {
            Err(s.live.foreign_error(what, &s.id))
        }
    }

    /// Writes `bytes` to the data key (all of it, or from byte `offset`) and releases the lock
    /// held by `token` at `fence`, in one script: `Ok(true)` done, `Ok(false)` refused because
    /// the lease had lapsed (nothing written: another holder may have written since).
    pub(crate) async fn write_release(
        &self,
        token: &str,
        fence: u64,
        poisoned: bool,
        offset: Option<usize>,
        bytes: &[u8],
    ) -> Result<bool, Error> {
        let s = &self.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("lock", &s.id));
        }
        s.live.release(token);
        let mut c = s.live.cmd.clone();
        s.conn.count(1);
        let data = self.data_key();
        let r: i64 = match offset {
            None => {
                scripts()
                    .write_unlock
                    .key(&s.meta)
                    .key(data)
                    .arg(token)
                    .arg(fence)
                    .arg(&s.wake)
                    .arg(if poisoned { "1" } else { "0" })
                    .arg(bytes)
                    .invoke_async(&mut c)
                    .await
            }
            Some(offset) => {
                scripts()
                    .write_range_unlock
                    .key(&s.meta)
                    .key(data)
                    .arg(token)
                    .arg(fence)
                    .arg(&s.wake)
                    .arg(offset)
                    .arg(bytes)
                    .invoke_async(&mut c)
                    .await
            }
        }
        .map_err(|e| redis_error("writing back", e))?;
        match r {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(conn::gone_error("lock", &s.id)),
        }
    }

    /// Releases `token`'s hold without writing (the guard of a `Value` left unchanged).
    pub(crate) async fn release_token(&self, token: &str, poisoned: bool) -> Result<bool, Error> {
        self.release(token, poisoned).await
    }
}

impl LockGuard<'_> {
    /// Takes the guard's token and fencing token over: the caller releases the lock (with
    /// [`Lock::write_release`]); dropping the guard then does nothing.
    pub(crate) fn into_parts(mut self) -> (String, u64) {
        self.released = true;
        (std::mem::take(&mut self.token), self.fence)
    }
}

impl Connection {
    /// A new lock on this server.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn lock(&self) -> Result<Lock, Error> {
        Lock::create(self)
    }

    /// Opens the lock `id` (from [`Lock::id`]), from any process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id; `Closed` when the lock is gone; `Os` when the
    /// server cannot be reached.
    pub fn open_lock(&self, id: &str) -> Result<Lock, Error> {
        self.open_lock_with(id, false, "lock")
    }

    /// Opens the lock `id`; with `data`, the lock of a `Value` or `Array` (`what`), with its
    /// data key.
    pub(crate) fn open_lock_with(&self, id: &str, data: bool, what: &str) -> Result<Lock, Error> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_argument(format!(
                "`{id}` is not a {what} id (the hexadecimal string from its `id()`)"
            )));
        }
        let live = self.live()?;
        let mut shared = Object::new(self, live.clone(), id.to_owned());
        if data {
            shared.data = Some(key(id, "d"));
        }
        self.count(1);
        let r: i64 = block_on_short(async {
            let mut c = live.cmd.clone();
            scripts()
                .join
                .key(&shared.meta)
                .key(&shared.handles)
                .arg(&live.member)
                .arg(ms(LEASE))
                .invoke_async(&mut c)
                .await
        })
        .map_err(|e| redis_error("opening a lock", e))?;
        if r != 1 {
            return Err(conn::gone_error(what, id));
        }
        live.register(&shared.handles, &shared.lease_keys());
        Ok(Lock {
            shared: Arc::new(shared),
        })
    }
}

impl LockGuard<'_> {
    /// This acquisition's fencing token: strictly greater than every earlier acquisition's of
    /// the same lock. Send it with each write the lock protects; the resource refuses tokens
    /// lower than the highest it has seen.
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// Asks the server whether this guard still holds the lock (its lease has not lapsed).
    ///
    /// # Errors
    ///
    /// `Closed` when the lease lapsed (another holder may have the lock); `Os` when the server
    /// cannot be reached.
    pub fn check(&self) -> Result<(), Error> {
        // Acquire pairs with the renewer's Release: a lapse it saw is a lapse.
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lapsed());
        }
        let s = &self.lock.shared;
        if !s.live.is_ours() {
            return Err(s.live.foreign_error("lock", &s.id));
        }
        s.conn.count(1);
        let r = block_on_short(async {
            let mut c = s.live.cmd.clone();
            scripts()
                .check
                .key(&s.meta)
                .arg(&self.token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .map_err(|e| redis_error("checking a lock", e))?;
        if r == 1 { Ok(()) } else { Err(self.lapsed()) }
    }

    fn lapsed(&self) -> Error {
        Error::closed(format!(
            "the lease of this holder of lock `{}` (fencing token {}) lapsed: another holder may \
             have the lock",
            self.lock.shared.id, self.fence
        ))
    }

    /// Releases the lock now and says whether the release was accepted.
    ///
    /// # Errors
    ///
    /// `Closed` when the release is refused because this holder's lease had lapsed (the lock
    /// may have a newer holder, who keeps it) or the lock's data is gone; `Os` when the server
    /// cannot be reached (the lease then lapses by itself).
    pub fn unlock(mut self) -> Result<(), Error> {
        self.released = true;
        let token = std::mem::take(&mut self.token);
        let r = match self.lock.release_direct(&token, false) {
            Some(r) => r,
            None => block_on_short(self.lock.release(&token, false)),
        };
        match r? {
            true => Ok(()),
            false => Err(self.lapsed()),
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let token = std::mem::take(&mut self.token);
        let poisoned = std::thread::panicking();
        // A refused or failed release needs nothing more: the lease lapses by itself.
        if self.lock.release_direct(&token, poisoned).is_some() {
            return;
        }
        let lock = self.lock.clone();
        conn::run_cleanup(async move {
            let _ = lock.release(&token, poisoned).await;
        });
    }
}

// ---- travelling handle (crate::travel) --------------------------------------------------------

crate::travel::one_object_travels!(Lock, "a lock");
