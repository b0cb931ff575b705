//! [`Map`] and [`List`]: a Redis hash and a Redis list of encoded values, shared by every
//! process that can reach the server (Python's `Manager().dict()` and `Manager().list()`).
//!
//! # Keys (`uc:{<id>}:…`)
//!
//! - `m`, a hash: `kind` (`map` or `list`); while an `update` runs, `owner` (its random token)
//!   and `exp` (its lease's expiry, server clock, ms).
//! - `d`, the data: a hash from encoded key to encoded value (a map), or a list of encoded
//!   elements (a list). Redis deletes an empty hash or list, so `m` alone says whether the
//!   collection exists.
//! - `h`, a sorted set of the processes holding a handle (the idle TTL and clean-up).
//! - The notification channel `uc:{<id>}:w` gets a message when an `update` ends.
//!
//! # Atomicity
//!
//! Every operation but `update` (and `get_or_insert_with` on a missing key) is one Lua script:
//! atomic on the server, one round trip. Snapshots (`to_vec`, `keys`, `values`, `iter`) are
//! one script too, so they are consistent.
//!
//! `update` runs its closure here, in the client, between two scripts: the first takes the
//! collection's update lease (`owner`, `exp`, renewed by this process like a lock's) and reads
//! the entry (the whole list); the second writes the result back and releases, and refuses the
//! write unless this holder's lease is still live. Every script that changes the collection
//! first checks the lease and, while another holder's is live, waits for its release (a
//! wake-up on `w`, or the lease running out). So nothing interleaves with an `update`; reads do
//! not wait, they see the state before it. A closure that panics releases the lease and writes
//! nothing; a process killed during an `update` wrote nothing, and its lease lapses after
//! [`LEASE`].
//!
//! # Keys of a map
//!
//! Keys are compared by their encoded bytes, not by `Eq`: two keys are the same entry when they
//! encode to the same bytes. For the usual key types (integers, strings, tuples and enums of
//! them) that is exactly `Eq`; a type whose `Eq` sees equal values with different encodings
//! (a `HashSet` as a key) or different values with equal encodings would not match.
//!
//! # Failures
//!
//! A failure of the server (unreachable, timed out) is an `Os` error and is never retried
//! behind your back: like a channel's messages, an operation whose reply was lost may or may
//! not have been applied. The forms that return no `Result` (`len`, `clear`, `truncate`)
//! panic with the cause instead, as `Value::load` does.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::{RedisError, Script};
use serde::Serialize;
use uniconc_core::state::index_error;
use uniconc_core::{Error, Message, MessageError, codec};

use crate::conn::{self, Connection, LEASE, block_on_short, key, ms, redis_error};
use crate::object::Object;
use crate::wait::{Attempt, wait_until};

/// Every script: KEYS m d; ARGV[1] the caller's update token (`''` for none), ARGV[2] the idle
/// TTL in ms; then the script's own arguments. `gate()` is 0 when the caller may change the
/// collection now, -2 when it is gone, or the ms until another holder's update lease expires.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function gate()
  local o = redis.call('HMGET', KEYS[1], 'kind', 'owner', 'exp')
  if not o[1] then return -2 end
  if o[2] and o[2] ~= ARGV[1] and tonumber(o[3]) > now then return tonumber(o[3]) - now end
  return 0
end
local function exists() return redis.call('EXISTS', KEYS[1]) == 1 end
local function touch() redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
-- RPUSH of items[from..to] (a table), in slices small enough for unpack.
local function rpush_all(items, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 999, to)
    redis.call('RPUSH', KEYS[2], unpack(items, i, j))
    i = j + 1
  end
end
";

/// The check every changing script starts with: `{-2}` gone, `{-4, ms}` busy.
const GATE: &str = r"
local g = gate()
if g == -2 then return {-2} end
if g > 0 then return {-4, g} end
";

/// KEYS m h. ARGV: member, lease ms, idle ttl ms, kind.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'kind', ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// KEYS m h. ARGV: member, lease ms, kind. Returns 1, -2 gone, -3 of another kind.
const JOIN: &str = r"
local k = redis.call('HGET', KEYS[1], 'kind')
if not k then return -2 end
if k ~= ARGV[3] then return -3 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// Takes the update lease: ARGV[3] lease ms. Then reads (map: field ARGV[4]; list: all).
const BEGIN: &str = r"
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'exp', now + tonumber(ARGV[3]))
";

/// Ends an update: `{0}` when this holder's lease had lapsed (nothing written), else applies
/// the script's write (after this), releases, wakes waiters and returns `{1}`. ARGV[3] is the
/// wake channel.
const END: &str = r"
if not exists() then return {-2} end
local o = redis.call('HMGET', KEYS[1], 'owner', 'exp')
if o[1] ~= ARGV[1] or tonumber(o[2]) <= now then return {0} end
redis.call('HDEL', KEYS[1], 'owner', 'exp')
redis.call('PUBLISH', ARGV[3], 'u')
";

// --- Map scripts: ARGV[3..] -------------------------------------------------------------------

/// ARGV[3] field. `{1, value or nil}`.
const M_GET: &str = r"
if not exists() then return {-2} end
return {1, redis.call('HGET', KEYS[2], ARGV[3])}
";

/// ARGV[3] field. `{1, 0/1}`.
const M_HAS: &str = r"
if not exists() then return {-2} end
return {1, redis.call('HEXISTS', KEYS[2], ARGV[3])}
";

/// `{1, len}`.
const M_LEN: &str = r"
if not exists() then return {-2} end
return {1, redis.call('HLEN', KEYS[2])}
";

/// ARGV[3] field, ARGV[4] value. `{1, old or nil}`.
const M_INSERT: &str = r"
local old = redis.call('HGET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
touch()
return {1, old}
";

/// ARGV[3] field. `{1, old or nil}`.
const M_REMOVE: &str = r"
local old = redis.call('HGET', KEYS[2], ARGV[3])
if old then redis.call('HDEL', KEYS[2], ARGV[3]) end
return {1, old}
";

/// `{1}`.
const CLEAR: &str = r"
redis.call('DEL', KEYS[2])
return {1}
";

/// ARGV[3]: `k` keys, `v` values, `a` keys and values interleaved. `{1, items}`.
const M_ALL: &str = r"
if not exists() then return {-2} end
if ARGV[3] == 'k' then return {1, redis.call('HKEYS', KEYS[2])} end
if ARGV[3] == 'v' then return {1, redis.call('HVALS', KEYS[2])} end
return {1, redis.call('HGETALL', KEYS[2])}
";

/// After BEGIN: ARGV[4] field. `{1, value or nil}`.
const M_BEGIN_READ: &str = r"
return {1, redis.call('HGET', KEYS[2], ARGV[4])}
";

/// After END: ARGV[4] mode (`s` set, `d` delete, `r` release only), ARGV[5] field, ARGV[6]
/// value.
const M_END_WRITE: &str = r"
if ARGV[4] == 's' then
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
  touch()
elseif ARGV[4] == 'd' then
  redis.call('HDEL', KEYS[2], ARGV[5])
end
return {1}
";

// --- List scripts: ARGV[3..] ------------------------------------------------------------------

/// ARGV[3..] values. `{1}`.
const L_PUSH: &str = r"
rpush_all(ARGV, 3, #ARGV)
touch()
return {1}
";

/// `{1, last or nil}`.
const L_POP: &str = r"
return {1, redis.call('RPOP', KEYS[2])}
";

/// ARGV[3] index. `{1, value or nil}`.
const L_GET: &str = r"
if not exists() then return {-2} end
return {1, redis.call('LINDEX', KEYS[2], ARGV[3])}
";

/// `{1, len}`.
const L_LEN: &str = r"
if not exists() then return {-2} end
return {1, redis.call('LLEN', KEYS[2])}
";

/// ARGV[3] index, ARGV[4] value. `{1}`, or `{-5, len}` out of range.
const L_SET: &str = r"
local i = tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[2])
if i >= n then return {-5, n} end
redis.call('LSET', KEYS[2], i, ARGV[4])
return {1}
";

/// ARGV[3] index, ARGV[4] value. `{1}`, or `{-5, len}` out of range.
const L_INSERT: &str = r"
local i = tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[2])
if i > n then return {-5, n} end
if i == n then
  redis.call('RPUSH', KEYS[2], ARGV[4])
elseif i == 0 then
  redis.call('LPUSH', KEYS[2], ARGV[4])
else
  local tail = redis.call('LRANGE', KEYS[2], i, -1)
  redis.call('LTRIM', KEYS[2], 0, i - 1)
  redis.call('RPUSH', KEYS[2], ARGV[4])
  rpush_all(tail, 1, #tail)
end
touch()
return {1}
";

/// ARGV[3] index. `{1, value}`, or `{-5, len}` out of range.
const L_REMOVE: &str = r"
local i = tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[2])
if i >= n then return {-5, n} end
local v
if i == 0 then
  v = redis.call('LPOP', KEYS[2])
elseif i == n - 1 then
  v = redis.call('RPOP', KEYS[2])
else
  v = redis.call('LINDEX', KEYS[2], i)
  local tail = redis.call('LRANGE', KEYS[2], i + 1, -1)
  redis.call('LTRIM', KEYS[2], 0, i - 1)
  rpush_all(tail, 1, #tail)
end
return {1, v}
";

/// ARGV[3] the length to keep. `{1}`.
const L_TRUNCATE: &str = r"
local n = tonumber(ARGV[3])
if n == 0 then redis.call('DEL', KEYS[2]) else redis.call('LTRIM', KEYS[2], 0, n - 1) end
return {1}
";

/// `{1}`.
const L_REVERSE: &str = r"
local all = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #all
for i = 1, math.floor(n / 2) do all[i], all[n + 1 - i] = all[n + 1 - i], all[i] end
redis.call('DEL', KEYS[2])
rpush_all(all, 1, n)
if n > 0 then touch() end
return {1}
";

/// `{1, elements}`.
const L_ALL: &str = r"
if not exists() then return {-2} end
return {1, redis.call('LRANGE', KEYS[2], 0, -1)}
";

/// After BEGIN. `{1, elements}`.
const L_BEGIN_READ: &str = r"
return {1, redis.call('LRANGE', KEYS[2], 0, -1)}
";

/// After END: ARGV[4] mode (`s` replace, `r` release only), ARGV[5..] the new elements.
const L_END_WRITE: &str = r"
if ARGV[4] == 's' then
  redis.call('DEL', KEYS[2])
  rpush_all(ARGV, 5, #ARGV)
  touch()
end
return {1}
";

struct Scripts {
    create: Script,
    join: Script,
    clear: Script,
    m_get: Script,
    m_has: Script,
    m_len: Script,
    m_insert: Script,
    m_remove: Script,
    m_all: Script,
    m_begin: Script,
    m_end: Script,
    l_push: Script,
    l_pop: Script,
    l_get: Script,
    l_len: Script,
    l_set: Script,
    l_insert: Script,
    l_remove: Script,
    l_truncate: Script,
    l_reverse: Script,
    l_all: Script,
    l_begin: Script,
    l_end: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let read = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        let write = |body: &str| Script::new(&format!("{PRELUDE}{GATE}{body}"));
        let begin = |body: &str| Script::new(&format!("{PRELUDE}{GATE}{BEGIN}{body}"));
        let end = |body: &str| Script::new(&format!("{PRELUDE}{END}{body}"));
        Scripts {
            create: read(CREATE),
            join: read(JOIN),
            clear: write(CLEAR),
            m_get: read(M_GET),
            m_has: read(M_HAS),
            m_len: read(M_LEN),
            m_insert: write(M_INSERT),
            m_remove: write(M_REMOVE),
            m_all: read(M_ALL),
            m_begin: begin(M_BEGIN_READ),
            m_end: end(M_END_WRITE),
            l_push: write(L_PUSH),
            l_pop: write(L_POP),
            l_get: read(L_GET),
            l_len: read(L_LEN),
            l_set: write(L_SET),
            l_insert: write(L_INSERT),
            l_remove: write(L_REMOVE),
            l_truncate: write(L_TRUNCATE),
            l_reverse: write(L_REVERSE),
            l_all: read(L_ALL),
            l_begin: begin(L_BEGIN_READ),
            l_end: end(L_END_WRITE),
        }
    })
}

/// A script's reply: its status (1 done, 0 refused, -5 out of range) and the rest.
struct Reply {
    status: i64,
    rest: Vec<redis::Value>,
}

impl Reply {
    /// The `i`-th value after the status as bytes (`None` for nil).
    fn bytes(&mut self, i: usize) -> Option<Vec<u8>> {
        match self
            .rest
            .get_mut(i)
            .map(|v| std::mem::replace(v, redis::Value::Nil))
        {
            Some(redis::Value::BulkString(b)) => Some(b),
            Some(redis::Value::SimpleString(s)) => Some(s.into_bytes()),
            _ => None,
        }
    }

    /// The `i`-th value after the status as an integer (0 when it is not one).
    fn int(&self, i: usize) -> i64 {
        match self.rest.get(i) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        }
    }

    /// The `i`-th value after the status as a list of byte strings.
    fn list(&mut self, i: usize) -> Vec<Vec<u8>> {
        match self
            .rest
            .get_mut(i)
            .map(|v| std::mem::replace(v, redis::Value::Nil))
        {
            Some(redis::Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| match v {
                    redis::Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// One collection as seen from this process: its object (keys, lease, clean-up) and its kind.
struct Coll {
    obj: Object,
    what: &'static str,
}

/// What one script call found, before the caller reads the reply.
enum Outcome {
    Reply(Reply),
    Gone,
    Busy(u64),
}

/// A script's reply, sorted.
fn outcome(v: redis::Value) -> Outcome {
    let mut items = match v {
        redis::Value::Array(items) => items,
        other => vec![other],
    };
    let status = match items.first() {
        Some(redis::Value::Int(n)) => *n,
        _ => -2,
    };
    if !items.is_empty() {
        items.remove(0);
    }
    let reply = Reply {
        status,
        rest: items,
    };
    match status {
        -2 => Outcome::Gone,
        -4 => Outcome::Busy(u64::try_from(reply.int(0)).unwrap_or(0)),
        _ => Outcome::Reply(reply),
    }
}

impl Coll {
    fn create(conn: &Connection, what: &'static str) -> Result<Arc<Self>, Error> {
        let live = conn.live()?;
        let mut obj = Object::new(conn, live.clone(), conn::new_id());
        obj.data = Some(key(&obj.id, "d"));
        conn.count(1);
        block_on_short(async {
            let mut c = live.cmd.clone();
            scripts()
                .create
                .key(&obj.meta)
                .key(&obj.handles)
                .arg(&live.member)
                .arg(ms(LEASE))
                .arg(ms(conn::IDLE_TTL))
                .arg(what)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .map_err(|e| redis_error(&format!("creating a {what}"), e))?;
        live.register(&obj.handles, &obj.lease_keys());
        Ok(Arc::new(Self { obj, what }))
    }

    fn open(conn: &Connection, id: &str, what: &'static str) -> Result<Arc<Self>, Error> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_argument(format!(
                "`{id}` is not a {what} id (the hexadecimal string from its `id()`)"
            )));
        }
        let live = conn.live()?;
        let mut obj = Object::new(conn, live.clone(), id.to_owned());
        obj.data = Some(key(id, "d"));
        conn.count(1);
        let r: i64 = block_on_short(async {
            let mut c = live.cmd.clone();
            scripts()
                .join
                .key(&obj.meta)
                .key(&obj.handles)
                .arg(&live.member)
                .arg(ms(LEASE))
                .arg(what)
                .invoke_async(&mut c)
                .await
        })
        .map_err(|e| redis_error(&format!("opening a {what}"), e))?;
        match r {
            1 => {}
            -3 => {
                return Err(Error::invalid_argument(format!(
                    "`{id}` is not a {what} (it is another kind of object)"
                )));
            }
            _ => return Err(conn::gone_error(what, id)),
        }
        live.register(&obj.handles, &obj.lease_keys());
        Ok(Arc::new(Self { obj, what }))
    }

    fn data(&self) -> &str {
        self.obj.data.as_deref().unwrap_or_default()
    }

    fn fatal(&self, e: &Error) -> ! {
        panic!("uniconc-redis: {} `{}`: {e}", self.what, self.obj.id)
    }

    /// The invocation of `script` (KEYS m d; ARGV token, idle TTL, `args`).
    fn invocation<'a>(
        &'a self,
        script: &'a Script,
        token: &'a str,
        args: &[&'a [u8]],
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.key(&self.obj.meta);
        inv.key(self.data()).arg(token).arg(ms(conn::IDLE_TTL));
        for a in args {
            inv.arg(*a);
        }
        inv
    }

    /// One call of `script`, on the runtime.
    async fn call(
        &self,
        script: &Script,
        token: &str,
        args: &[&[u8]],
    ) -> Result<Outcome, RedisError> {
        let mut c = self.obj.live.cmd.clone();
        self.obj.conn.count(1);
        let v: redis::Value = self
            .invocation(script, token, args)
            .invoke_async(&mut c)
            .await?;
        Ok(outcome(v))
    }

    /// One call of `script` on this thread's synchronous connection (see `direct`); `None`
    /// when there is none.
    fn call_direct(
        &self,
        script: &Script,
        token: &str,
        args: &[&[u8]],
    ) -> Option<Result<Outcome, RedisError>> {
        let r = crate::direct::with(&self.obj.conn, |c| {
            self.invocation(script, token, args)
                .invoke::<redis::Value>(c)
        })?;
        self.obj.conn.count(1);
        Some(r.map(outcome))
    }

    fn check_ours(&self) -> Result<(), Error> {
        if self.obj.live.is_ours() {
            Ok(())
        } else {
            Err(self.obj.live.foreign_error(self.what, &self.obj.id))
        }
    }

    /// Runs `script` once (a read: it never waits).
    fn read(&self, script: &Script, args: &[&[u8]]) -> Result<Reply, Error> {
        self.check_ours()?;
        let r = self
            .call_direct(script, "", args)
            .unwrap_or_else(|| block_on_short(self.call(script, "", args)));
        match r {
            Ok(Outcome::Reply(r)) => Ok(r),
            Ok(_) => Err(conn::gone_error(self.what, &self.obj.id)),
            Err(e) => Err(redis_error(&format!("reading a {}", self.what), e)),
        }
    }

    /// Runs `script` (a change), waiting while another process's `update` holds the
    /// collection. `token` is this caller's update token (`""` outside an update).
    fn write(&self, script: &Script, token: &str, args: &[&[u8]]) -> Result<Reply, Error> {
        self.check_ours()?;
        // The first attempt on this thread's own connection; waiting on the runtime.
        match self.call_direct(script, token, args) {
            Some(Ok(Outcome::Reply(r))) => return Ok(r),
            Some(Ok(Outcome::Gone)) => return Err(conn::gone_error(self.what, &self.obj.id)),
            Some(Err(e)) => {
                return Err(redis_error(&format!("changing a {}", self.what), e));
            }
            Some(Ok(Outcome::Busy(_))) | None => {}
        }
        let live = self.obj.live.clone();
        let r = block_on_short(wait_until(&live, &self.obj.wake, None, None, || async {
            Ok::<_, Infallible>(match self.call(script, token, args).await {
                Ok(Outcome::Reply(r)) => Attempt::Done(Ok(r)),
                Ok(Outcome::Gone) => Attempt::Done(Err(conn::gone_error(self.what, &self.obj.id))),
                Ok(Outcome::Busy(left)) => Attempt::WaitAtMost(Duration::from_millis(left)),
                // Not retried: the change may have been applied (at most once).
                Err(e) => Attempt::Done(Err(redis_error(&format!("changing a {}", self.what), e))),
            })
        }));
        match r {
            Ok(Some(r)) => r,
            // No deadline, no cancellation: the wait ends only with a result.
            Ok(None) => Err(Error::closed(format!(
                "redis: the wait for {} `{}` ended without a result",
                self.what, self.obj.id
            ))),
            Err(never) => match never {},
        }
    }

    /// Takes the update lease and reads (`args` after the lease). The returned hold releases
    /// without writing when dropped unfinished (the closure panicked, or its result did not
    /// encode).
    fn begin(&self, script: &Script, args: &[&[u8]]) -> Result<(Hold<'_>, Reply), Error> {
        let token = format!("{:016x}{:016x}", conn::random_u64(), conn::random_u64());
        let lease = ms(LEASE).to_string();
        let mut all: Vec<&[u8]> = vec![lease.as_bytes()];
        all.extend_from_slice(args);
        let reply = self.write(script, &token, &all)?;
        // The renewer extends the lease (`owner`/`exp` in `m`, as a lock's) while `f` runs.
        self.obj.live.hold(&self.obj.meta, &token);
        Ok((
            Hold {
                coll: self,
                token,
                done: false,
            },
            reply,
        ))
    }
}

/// An update in progress: this process holds the collection's update lease.
struct Hold<'a> {
    coll: &'a Coll,
    token: String,
    done: bool,
}

impl Hold<'_> {
    /// Writes (`args` after the wake channel: the script's mode and data) and releases.
    fn finish(&mut self, script: &Script, args: &[&[u8]]) -> Result<(), Error> {
        self.done = true;
        let c = self.coll;
        c.obj.live.release(&self.token);
        let mut all: Vec<&[u8]> = vec![c.obj.wake.as_bytes()];
        all.extend_from_slice(args);
        let r = c
            .call_direct(script, &self.token, &all)
            .unwrap_or_else(|| block_on_short(c.call(script, &self.token, &all)));
        match r {
            Ok(Outcome::Reply(r)) if r.status == 1 => Ok(()),
            Ok(Outcome::Reply(_)) => Err(Error::closed(format!(
                "redis: the update of {} `{}` was refused: this process's lease on it lapsed \
                 (paused or cut off from the server for longer than {LEASE:?}), so another \
                 unit may have changed it since; nothing was written",
                c.what, c.obj.id
            ))),
            Ok(_) => Err(conn::gone_error(c.what, &c.obj.id)),
            Err(e) => Err(redis_error(&format!("updating a {}", c.what), e)),
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let c = self.coll;
        let script = if c.what == "map" {
            &scripts().m_end
        } else {
            &scripts().l_end
        };
        // Release only; a failure leaves the lease to lapse (nothing was written).
        let _ = self.finish(script, &[b"r"]);
    }
}

/// `value` encoded, refusing what the codec could not decode again.
fn encode<T: Serialize + ?Sized + 'static>(value: &T) -> Result<Vec<u8>, Error> {
    let size = checked(codec::encoded_size(value)?)?;
    let mut buf = vec![0u8; size];
    codec::encode_into(value, &mut buf)?;
    Ok(buf)
}

/// A key encoded (it may be a borrowed form of the map's key type: the same bytes).
fn encode_key<Q: Serialize + ?Sized>(key: &Q) -> Result<Vec<u8>, Error> {
    let size = checked(codec::encoded_size_any(key)?)?;
    let mut buf = vec![0u8; size];
    codec::encode_into_any(key, &mut buf)?;
    Ok(buf)
}

fn checked(size: usize) -> Result<usize, Error> {
    if size > codec::LIMIT {
        return Err(MessageError::TooLarge {
            size,
            limit: codec::LIMIT,
        }
        .into());
    }
    Ok(size)
}

fn decode<T: Message>(bytes: &[u8]) -> Result<T, Error> {
    Ok(codec::decode(bytes)?)
}

fn decode_opt<T: Message>(bytes: Option<Vec<u8>>) -> Result<Option<T>, Error> {
    bytes.map(|b| decode(&b)).transpose()
}

// ---------------------------------------------------------------------------------------------
// Map
// ---------------------------------------------------------------------------------------------

/// The marker of a map's types: `Send` and `Sync` whatever `K` and `V` are (the map holds
/// none; it stores them encoded on the server).
type Entry<K, V> = fn(K, V) -> (K, V);

/// A map on a Redis server (a Redis hash of encoded keys and values), shared by every process
/// that has its id. Clones are the same map.
///
/// ```
/// use uniconc_core::Map as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let m = conn.map::<String, u64>()?;
/// m.insert("a".into(), 1)?;
/// m.update("a".into(), |v| *v.get_or_insert(0) += 1)?;
/// assert_eq!(m.get("a")?, Some(2));
/// // Another process opens it by id.
/// let same = conn.open_map::<String, u64>(m.id())?;
/// assert_eq!(same.len(), 1);
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct Map<K, V> {
    coll: Arc<Coll>,
    _t: PhantomData<Entry<K, V>>,
}

impl<K, V> Clone for Map<K, V> {
    fn clone(&self) -> Self {
        Self {
            coll: self.coll.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("id", &self.coll.obj.id)
            .finish_non_exhaustive()
    }
}

impl<K, V> Map<K, V> {
    /// The map's id: another process opens it with [`Connection::open_map`].
    pub fn id(&self) -> &str {
        &self.coll.obj.id
    }
}

impl<K: Message + Hash + Eq, V: Message> Map<K, V> {
    fn all(&self, what: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let s = scripts();
        Ok(self.coll.read(&s.m_all, &[what])?.list(0))
    }
}

impl<K: Message + Hash + Eq, V: Message> uniconc_core::Map<K, V> for Map<K, V> {
    /// A new map on the [default connection](crate::default_connection).
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    fn new() -> Result<Self, Error> {
        conn::default_connection()?.map()
    }

    fn insert(&self, key: K, value: V) -> Result<Option<V>, Error> {
        let k = encode_key(&key)?;
        let v = encode(&value)?;
        let mut r = self.coll.write(&scripts().m_insert, "", &[&k, &v])?;
        decode_opt(r.bytes(0))
    }

    fn get<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let k = encode_key(key)?;
        let mut r = self.coll.read(&scripts().m_get, &[&k])?;
        decode_opt(r.bytes(0))
    }

    fn remove<Q>(&self, key: &Q) -> Result<Option<V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let k = encode_key(key)?;
        let mut r = self.coll.write(&scripts().m_remove, "", &[&k])?;
        decode_opt(r.bytes(0))
    }

    fn contains_key<Q>(&self, key: &Q) -> Result<bool, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Serialize + ?Sized,
    {
        let k = encode_key(key)?;
        Ok(self.coll.read(&scripts().m_has, &[&k])?.int(0) == 1)
    }

    /// # Panics
    ///
    /// If the server cannot be reached or the map is gone from it (restarted without
    /// persistence, flushed), or in a forked child on a handle of its parent.
    fn len(&self) -> usize {
        let r = self
            .coll
            .read(&scripts().m_len, &[])
            .unwrap_or_else(|e| self.coll.fatal(&e));
        usize::try_from(r.int(0)).unwrap_or(0)
    }

    /// # Panics
    ///
    /// As [`len`](uniconc_core::Map::len).
    fn clear(&self) {
        if let Err(e) = self.coll.write(&scripts().clear, "", &[]) {
            self.coll.fatal(&e)
        }
    }

    /// # Errors
    ///
    /// As the trait says; and `Closed` when this process's lease on the update lapsed while `f`
    /// ran (paused or cut off from the server for longer than [`LEASE`]): `f` ran,
    /// nothing was written, and `f` cannot be run again.
    fn update<U>(&self, key: K, f: impl FnOnce(&mut Option<V>) -> U) -> Result<U, Error> {
        let k = encode_key(&key)?;
        let s = scripts();
        let (mut hold, mut r) = self.coll.begin(&s.m_begin, &[&k])?;
        let old = r.bytes(0);
        let mut slot: Option<V> = decode_opt(old.clone())?;
        let out = f(&mut slot);
        match slot {
            Some(v) => {
                let v = encode(&v)?;
                if old.as_deref() == Some(&v[..]) {
                    hold.finish(&s.m_end, &[b"r"])?;
                } else {
                    hold.finish(&s.m_end, &[b"s", &k, &v])?;
                }
            }
            None if old.is_some() => hold.finish(&s.m_end, &[b"d", &k])?,
            None => hold.finish(&s.m_end, &[b"r"])?,
        }
        Ok(out)
    }

    fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V, Error> {
        if let Some(v) = self.get(&key)? {
            return Ok(v);
        }
        // Missing: decide under the update lease, so that of several racers one inserts.
        let k = encode_key(&key)?;
        let s = scripts();
        let (mut hold, mut r) = self.coll.begin(&s.m_begin, &[&k])?;
        if let Some(old) = r.bytes(0) {
            // Inserted by another unit meanwhile.
            hold.finish(&s.m_end, &[b"r"])?;
            return decode(&old);
        }
        let value = f();
        let v = encode(&value)?;
        hold.finish(&s.m_end, &[b"s", &k, &v])?;
        Ok(value)
    }

    fn keys(&self) -> Result<Vec<K>, Error> {
        self.all(b"k")?.iter().map(|b| decode(b)).collect()
    }

    fn values(&self) -> Result<Vec<V>, Error> {
        self.all(b"v")?.iter().map(|b| decode(b)).collect()
    }

    fn to_vec(&self) -> Result<Vec<(K, V)>, Error> {
        let flat = self.all(b"a")?;
        flat.chunks_exact(2)
            .map(|kv| Ok((decode(&kv[0])?, decode(&kv[1])?)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------------------------

/// A list on a Redis server (a Redis list of encoded elements), shared by every process that
/// has its id. Clones are the same list.
///
/// ```
/// use uniconc_core::List as _;
/// # let server = uniconc_redis::testing::RedisServer::start();
/// let conn = uniconc_redis::connect(&server.url())?;
/// let l = conn.list::<u32>()?;
/// l.extend([3, 1, 2])?;
/// l.update(|v| v.sort())?;
/// assert_eq!(l.to_vec()?, [1, 2, 3]);
/// let same = conn.open_list::<u32>(l.id())?;
/// assert_eq!(same.pop()?, Some(3));
/// # Ok::<(), uniconc_core::Error>(())
/// ```
pub struct List<T> {
    coll: Arc<Coll>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        Self {
            coll: self.coll.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("id", &self.coll.obj.id)
            .finish_non_exhaustive()
    }
}

impl<T> List<T> {
    /// The list's id: another process opens it with [`Connection::open_list`].
    pub fn id(&self) -> &str {
        &self.coll.obj.id
    }
}

fn out_of_range(r: &Reply, index: usize) -> Error {
    index_error(index, usize::try_from(r.int(0)).unwrap_or(0))
}

impl<T: Message> uniconc_core::List<T> for List<T> {
    /// A new list on the [default connection](crate::default_connection).
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    fn new() -> Result<Self, Error> {
        conn::default_connection()?.list()
    }

    fn push(&self, value: T) -> Result<(), Error> {
        let v = encode(&value)?;
        self.coll.write(&scripts().l_push, "", &[&v]).map(drop)
    }

    fn pop(&self) -> Result<Option<T>, Error> {
        let mut r = self.coll.write(&scripts().l_pop, "", &[])?;
        decode_opt(r.bytes(0))
    }

    fn get(&self, index: usize) -> Result<Option<T>, Error> {
        // LINDEX takes a signed index: one past i64::MAX is out of range anyway.
        let Ok(i) = i64::try_from(index) else {
            return Ok(None);
        };
        let i = i.to_string();
        let mut r = self.coll.read(&scripts().l_get, &[i.as_bytes()])?;
        decode_opt(r.bytes(0))
    }

    fn set(&self, index: usize, value: T) -> Result<(), Error> {
        let v = encode(&value)?;
        let i = index.to_string();
        let r = self.coll.write(&scripts().l_set, "", &[i.as_bytes(), &v])?;
        match r.status {
            1 => Ok(()),
            _ => Err(out_of_range(&r, index)),
        }
    }

    fn insert(&self, index: usize, value: T) -> Result<(), Error> {
        let v = encode(&value)?;
        let i = index.to_string();
        let r = self
            .coll
            .write(&scripts().l_insert, "", &[i.as_bytes(), &v])?;
        match r.status {
            1 => Ok(()),
            _ => Err(out_of_range(&r, index)),
        }
    }

    fn remove(&self, index: usize) -> Result<T, Error> {
        let i = index.to_string();
        let mut r = self.coll.write(&scripts().l_remove, "", &[i.as_bytes()])?;
        match r.status {
            1 => decode(&r.bytes(0).unwrap_or_default()),
            _ => Err(out_of_range(&r, index)),
        }
    }

    /// # Panics
    ///
    /// If the server cannot be reached or the list is gone from it (restarted without
    /// persistence, flushed), or in a forked child on a handle of its parent.
    fn len(&self) -> usize {
        let r = self
            .coll
            .read(&scripts().l_len, &[])
            .unwrap_or_else(|e| self.coll.fatal(&e));
        usize::try_from(r.int(0)).unwrap_or(0)
    }

    /// # Panics
    ///
    /// As [`len`](uniconc_core::List::len).
    fn truncate(&self, len: usize) {
        let n = len.to_string();
        if let Err(e) = self.coll.write(&scripts().l_truncate, "", &[n.as_bytes()]) {
            self.coll.fatal(&e)
        }
    }

    /// # Panics
    ///
    /// As [`len`](uniconc_core::List::len).
    fn clear(&self) {
        if let Err(e) = self.coll.write(&scripts().clear, "", &[]) {
            self.coll.fatal(&e)
        }
    }

    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), Error> {
        let encoded = items
            .into_iter()
            .map(|v| encode(&v))
            .collect::<Result<Vec<_>, _>>()?;
        if encoded.is_empty() {
            return Ok(());
        }
        let args: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        self.coll.write(&scripts().l_push, "", &args).map(drop)
    }

    fn reverse(&self) -> Result<(), Error> {
        self.coll.write(&scripts().l_reverse, "", &[]).map(drop)
    }

    fn to_vec(&self) -> Result<Vec<T>, Error> {
        let mut r = self.coll.read(&scripts().l_all, &[])?;
        r.list(0).iter().map(|b| decode(b)).collect()
    }

    /// # Errors
    ///
    /// As the trait says; and `Closed` when this process's lease on the update lapsed while `f`
    /// ran (see [`Map::update`](uniconc_core::Map::update)).
    fn update<U>(&self, f: impl FnOnce(&mut Vec<T>) -> U) -> Result<U, Error> {
        let s = scripts();
        let (mut hold, mut r) = self.coll.begin(&s.l_begin, &[])?;
        let mut items = r
            .list(0)
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<T>, _>>()?;
        let out = f(&mut items);
        let encoded = items
            .iter()
            .map(|v| encode(v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut args: Vec<&[u8]> = vec![b"s"];
        args.extend(encoded.iter().map(Vec::as_slice));
        hold.finish(&s.l_end, &args)?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------

impl Connection {
    /// A new, empty map on this server.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn map<K, V>(&self) -> Result<Map<K, V>, Error> {
        Ok(Map {
            coll: Coll::create(self, "map")?,
            _t: PhantomData,
        })
    }

    /// Opens the map `id` (from [`Map::id`]), from any process. The types must be the ones it
    /// was created with: entries of other types fail to decode (`InvalidMessage`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id or the id of another kind of object; `Closed` when
    /// the map is gone; `Os` when the server cannot be reached.
    pub fn open_map<K, V>(&self, id: &str) -> Result<Map<K, V>, Error> {
        Ok(Map {
            coll: Coll::open(self, id, "map")?,
            _t: PhantomData,
        })
    }

    /// A new, empty list on this server.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn list<T>(&self) -> Result<List<T>, Error> {
        Ok(List {
            coll: Coll::create(self, "list")?,
            _t: PhantomData,
        })
    }

    /// Opens the list `id` (from [`List::id`]), from any process.
    ///
    /// # Errors
    ///
    /// As [`open_map`](Self::open_map).
    pub fn open_list<T>(&self, id: &str) -> Result<List<T>, Error> {
        Ok(List {
            coll: Coll::open(self, id, "list")?,
            _t: PhantomData,
        })
    }
}
