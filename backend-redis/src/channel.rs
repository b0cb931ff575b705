//! Channels: a Redis list per channel, bounded exactly by the scripts that push and pop.
//!
//! # Keys (one hash slot: `uc:{<id>}:…`)
//!
//! - `m`, a hash: `cap` (0 for unbounded) and `closed` (`1` once the channel is disconnected:
//!   closed, or every sender or every receiver gone).
//! - `q`, a list: the encoded messages, oldest first.
//! - `tx`, `rx`, sorted sets: one member per process holding senders (receivers), scored with
//!   its lease's expiry in the server's clock.
//! - `res`, a hash: the room reserved by the `send_batch` calls under way, `<member>|<call>` →
//!   how many messages. A reservation counts against the capacity, and holds the receivers of a
//!   closed channel back from `Disconnected` until the call has pushed what it reserved room
//!   for (it lapses with its process's sender lease).
//! - `r`, a hash: the reply store of the sending and receiving scripts (see "Retries").
//! - The notification channel `uc:{<id>}:w` gets `r` when the list stops being empty, `s`
//!   when it stops being full, and a message on every disconnection.
//!
//! Every operation is one script: atomic, one round trip. Disconnection: a side is gone when
//! its sorted set holds no live lease (handles dropped, or their processes killed: a lease
//! lapses [`LEASE`] after its last renewal).
//!
//! # Delivery
//!
//! Exactly once while the server keeps its data: a message is pushed by one script and popped
//! by one script, and neither runs twice for one call however often the call retries it.
//!
//! # Retries
//!
//! A script whose reply does not come (the response timeout passed, the connection dropped)
//! may still have run, or may still run later: the server runs what reached it. So every send
//! and receive script (batches too) carries a request id (a random prefix per process and a
//! counter), and a call retries a script under the same id until it has an answer:
//!
//! - A script that changed something keeps its reply in `r` under its request id (a send
//!   `1`, a receive the message it popped, a batch its whole reply); run again under that id,
//!   it returns the kept reply and changes nothing. Scripts that changed nothing (full, empty,
//!   disconnected) keep nothing: running them again is harmless.
//! - The caller deletes a kept reply once it has the answer, with its next script on the
//!   channel (it carries the ids to delete: no extra round trip). The reply of a request that
//!   was sent more than once is kept a retry window (60 s) longer, for a copy still on its
//!   way on a connection given up.
//! - A call that gives up with the outcome of an attempt unknown (a deadline passed, a `try_`
//!   form, a failure that is not transient) leaves the request to be *settled* by the next
//!   send or receive script through the same handle (or its clones), or by the drop of the
//!   handle: a receive's kept
//!   message goes back to the head of the queue (the next receive gets it, in order), a
//!   send's kept reply is deleted (it was queued, once), and the request gets a tombstone
//!   (deleted after the retry window), so that a copy arriving later does nothing.
//!   `last_failure()` says so.
//!
//! What this costs: every send or receive looks its id up (one `HMGET`), and one that moved
//! a message writes and later deletes one hash field, all inside the script it already was.
//!
//! Limits: a process that dies with a receive unanswered leaves that message in `r` until the
//! channel is deleted, and so does one that drops a handle before a kept reply's retry window
//! ended (its deletion is due only then); a copy of a request that reaches the server more
//! than the retry window after its answer (held up on a connection given up) runs again.
//! `len()` does not count a given-up receive's message until it is settled. A `recv_async`
//! dropped after its message was popped puts the message back with one more script, retried
//! under a marker for 30 s; a server unreachable for longer than that loses the message.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::{RedisError, RedisResult, Script};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uniconc_core::{
    Error, MessageError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};

use crate::conn::{
    self, Cancel, Connection, LEASE, Live, block_on, block_on_short, is_transient, key, ms,
    redis_error,
};
use crate::wait::{Attempt, wait_until};

/// The largest encoded message (Redis's limit on a string).
pub const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// The parts of a channel's keys (`uc:{<id>}:<part>`): meta hash, queue, sender and receiver
/// lease sets, reservations, reply store. Every list of a channel's keys is this one.
pub(crate) const PARTS: [&str; 6] = ["m", "q", "tx", "rx", "res", "r"];

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function alive(z)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  return redis.call('ZCARD', z) > 0
end
-- Whether this process still holds a lease: its member was not pruned. A lease past its expiry
-- but not yet pruned by a peer still counts (the renewer catches up after an outage); once a
-- peer has seen it lapse and pruned it, it is gone for good.
local function mine(z, member)
  return redis.call('ZSCORE', z, member) ~= false
end
-- Redis deletes a list or hash once it is empty, and the next write makes it again without an
-- expiry: gives such a key of the object the remaining idle TTL of its meta hash `m`
-- (KEYS[1]), so that no key outlives the object when every holder died.
local function ttl_like_m(k)
  if redis.call('PTTL', k) == -1 then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
  end
end
-- The room held by the live reservations of `res` (`<member>|<call>` -> messages), pruning
-- those whose member holds no sender lease in `tx` any more.
local function reserved(res, tx)
  local all = redis.call('HGETALL', res)
  local sum = 0
  for i = 1, #all, 2 do
    local member = string.match(all[i], '^(.*)|[^|]*$')
    if member and redis.call('ZSCORE', tx, member) then
      sum = sum + tonumber(all[i + 1])
    else
      redis.call('HDEL', res, all[i])
    end
  end
  return sum
end
";

/// KEYS: m q tx rx res r. ARGV: cap, member, lease ms, idle ttl ms. The reply store `r` is
/// created with a placeholder field, so that it has its idle TTL from the start (and keeps
/// it: it is never empty).
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'cap', ARGV[1], 'closed', '0')
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[2])
redis.call('HSET', KEYS[6], '.', '1')
for _, i in ipairs({1, 2, 3, 4, 6}) do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return 1
";

/// KEYS: m zset-joined. ARGV: member, lease ms. Returns {status, cap}: 1 joined, -1
/// disconnected, -2 gone.
const JOIN: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2, 0} end
if m[2] == '1' or not alive(KEYS[2]) then return {-1, 0} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return {1, tonumber(m[1])}
";

/// The part of the sending and receiving scripts that makes them safe to retry (see
/// "Retries" in the module docs). They take KEYS m q tx rx res r, and ARGV: the request's id,
/// how many entries to settle, those entries, then the script's own arguments (`args`).
///
/// An entry is a letter and a request id: `a` its reply is no longer needed (deleted with its
/// tombstone); `s` a send given up; `r` (`b`) a receive (batch) given up. A request given up
/// is settled: a receive's kept messages go back to the head of the queue, a send's kept reply
/// is deleted (it was applied), and the request gets a tombstone, so that a copy of it still
/// on its way (late, on a connection given up) does nothing when it arrives.
const IDEMPOTENT: &str = r"
local R = KEYS[6]
local rid = ARGV[1]
local nset = tonumber(ARGV[2])
local args = {unpack(ARGV, 3 + nset)}
-- Settles the entries carried (the channel exists), then returns {kept reply, tombstone} of
-- this request.
local function settle_and_look(wake)
  for i = 3, 2 + nset do
    local kind, id = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2)
    if kind == 'a' then
      redis.call('HDEL', R, id, '!' .. id)
    else
      local v = redis.call('HGET', R, id)
      if v then
        redis.call('HDEL', R, id)
        local back = {}
        if kind == 'r' then back = {v} elseif kind == 'b' then back = cmsgpack.unpack(v) end
        if #back > 0 then
          local n = redis.call('LLEN', KEYS[2])
          for j = #back, 1, -1 do redis.call('LPUSH', KEYS[2], back[j]) end
          if n == 0 then
            ttl_like_m(KEYS[2])
            redis.call('PUBLISH', wake, 'r')
          end
        end
      end
      -- Another copy of the request (it was sent more than once) may still come.
      redis.call('HSET', R, '!' .. id, '1')
    end
  end
  return redis.call('HMGET', R, rid, '!' .. rid)
end
-- Keeps this request's reply (what a retry of it returns). `r` has the object's idle TTL
-- (see CREATE).
local function keep(v)
  redis.call('HSET', R, rid, v)
end
";

/// KEYS: m q tx rx res r. ARGV: request (see [`IDEMPOTENT`]), then member, payload, wake
/// channel. Returns 1 sent, 0 full, -1 disconnected, -2 gone, -3 this process's sender lease
/// lapsed, -4 a request given up.
const SEND: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return -2 end
local seen = settle_and_look(args[3])
if seen[2] then return -4 end
if seen[1] then return 1 end
if m[2] == '1' then return -1 end
if not mine(KEYS[3], args[1]) then return -3 end
if not alive(KEYS[4]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', args[3], 'c')
  return -1
end
local n = redis.call('LLEN', KEYS[2])
local cap = tonumber(m[1])
if cap > 0 and (n >= cap or n + reserved(KEYS[5], KEYS[3]) >= cap) then return 0 end
redis.call('RPUSH', KEYS[2], args[2])
keep('1')
if n == 0 then
  ttl_like_m(KEYS[2])
  redis.call('PUBLISH', args[3], 'r')
end
return 1
";

/// KEYS: m q tx rx res r. ARGV: request (see [`IDEMPOTENT`]), then member, wake channel.
/// Returns {1, msg}, {0} empty, {-1} disconnected, {-2} gone, {-3} this process's receiver
/// lease lapsed, {-4} a request given up.
const RECV: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2, false} end
local seen = settle_and_look(args[2])
if seen[2] then return {-4, false} end
if seen[1] then return {1, seen[1]} end
if not mine(KEYS[4], args[1]) then return {-3, false} end
local v = redis.call('LPOP', KEYS[2])
if v then
  keep(v)
  local cap = tonumber(m[1])
  if cap > 0 then
    local left = redis.call('LLEN', KEYS[2]) + reserved(KEYS[5], KEYS[3])
    if left < cap and left + 1 >= cap then redis.call('PUBLISH', args[2], 's') end
  end
  return {1, v}
end
if m[2] == '1' then
  -- Closed: what a `send_batch` under way reserved room for before is still to come.
  if alive(KEYS[3]) and reserved(KEYS[5], KEYS[3]) > 0 then return {0, false} end
  return {-1, false}
end
if not alive(KEYS[3]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('PUBLISH', args[2], 'c')
  return {-1, false}
end
return {0, false}
";

/// KEYS: m q tx rx res r. ARGV: request (see [`IDEMPOTENT`]), then reservation
/// (`<member>|<call>`), member, wake channel, how much room to reserve for the next call, how
/// many of the payloads the reservation held covers, payloads...
///
/// Pushes the covered payloads whatever the channel's state since (the room was reserved
/// before any disconnection; with every receiver gone they are dropped as the queue is), then
/// the others while there is room and the channel is connected, releases what the reservation
/// held beyond them, and reserves room for the next call. Returns {pushed, reserved for the
/// next call, 1 if the channel is disconnected (else 0)}, or {-2} gone, {-3} this process's
/// sender lease lapsed (its reservation with it), {-4} a request given up.
const SEND_BATCH: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2} end
local seen = settle_and_look(args[3])
if seen[2] then return {-4} end
if seen[1] then return cmsgpack.unpack(seen[1]) end
local held = tonumber(redis.call('HGET', KEYS[5], args[1]) or '0')
redis.call('HDEL', KEYS[5], args[1])
if not mine(KEYS[3], args[2]) then return {-3} end
local first = 6
local total = #args - first + 1
local covered = math.min(tonumber(args[5]), held, total)
local cap = tonumber(m[1])
local closed = m[2] == '1'
local n = redis.call('LLEN', KEYS[2])
local function push(from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 999, to)
    redis.call('RPUSH', KEYS[2], unpack(args, i, j))
    i = j + 1
  end
end
if not closed and not alive(KEYS[4]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', args[3], 'c')
  keep(cmsgpack.pack({covered, 0, 1}))
  return {covered, 0, 1}
end
push(first, first + covered - 1)
local pushed = covered
local grant = 0
if not closed then
  local room = -1
  if cap > 0 then room = cap - n - pushed - reserved(KEYS[5], KEYS[3]) end
  local more = total - covered
  if cap > 0 then more = math.max(0, math.min(more, room)) end
  push(first + covered, first + covered + more - 1)
  pushed = pushed + more
  grant = tonumber(args[4])
  if cap > 0 then grant = math.max(0, math.min(grant, room - more)) end
  if grant > 0 then
    redis.call('HSET', KEYS[5], args[1], grant)
    ttl_like_m(KEYS[5])
  end
end
if pushed > 0 and n == 0 then
  ttl_like_m(KEYS[2])
  redis.call('PUBLISH', args[3], 'r')
end
if held > covered then
  if closed then redis.call('PUBLISH', args[3], 'c') elseif cap > 0 then redis.call('PUBLISH', args[3], 's') end
end
local disconnected = 0
if closed then disconnected = 1 end
keep(cmsgpack.pack({pushed, grant, disconnected}))
return {pushed, grant, disconnected}
";

/// KEYS: m q tx rx res r. ARGV: request (see [`IDEMPOTENT`]), then member, wake channel, max.
/// Returns {1, msgs} (at least one), {0} empty, {-1} disconnected, {-2} gone, {-3} this
/// process's receiver lease lapsed, {-4} a request given up.
const RECV_BATCH: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2, false} end
local seen = settle_and_look(args[2])
if seen[2] then return {-4, false} end
if seen[1] then return {1, cmsgpack.unpack(seen[1])} end
if not mine(KEYS[4], args[1]) then return {-3, false} end
local v = redis.call('LPOP', KEYS[2], tonumber(args[3]))
if v then
  keep(cmsgpack.pack(v))
  local cap = tonumber(m[1])
  if cap > 0 then
    local left = redis.call('LLEN', KEYS[2]) + reserved(KEYS[5], KEYS[3])
    if left < cap and left + #v >= cap then redis.call('PUBLISH', args[2], 's') end
  end
  return {1, v}
end
if m[2] == '1' then
  -- As in RECV.
  if alive(KEYS[3]) and reserved(KEYS[5], KEYS[3]) > 0 then return {0, false} end
  return {-1, false}
end
if not alive(KEYS[3]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('PUBLISH', args[2], 'c')
  return {-1, false}
end
return {0, false}
";

/// KEYS: m q marker. ARGV: payload, marker ttl ms, wake channel. Puts back a message popped
/// for an `_async` receive whose future was dropped, once per marker (a retry after a lost
/// reply pushes nothing more). Returns 1 (put back now or before), or -2 when the channel is
/// gone.
const UNPOP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then
  if redis.call('LPUSH', KEYS[2], ARGV[1]) == 1 then
    ttl_like_m(KEYS[2])
    redis.call('PUBLISH', ARGV[3], 'r')
  end
end
return 1
";

/// How long a put-back of a cancelled `recv_async`'s message is retried through an
/// unreachable server (its marker lives twice as long).
const UNPOP_RETRY: Duration = Duration::from_secs(30);

/// KEYS: m q tx rx. ARGV: wake channel. Returns {len, closed (0/1), -2 when gone}.
const STATE: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {0, 1, -2} end
local closed = 0
if m[2] == '1' or not alive(KEYS[3]) or not alive(KEYS[4]) then closed = 1 end
return {redis.call('LLEN', KEYS[2]), closed, 0}
";

/// KEYS: m q tx rx res r. ARGV: request (unused), entries to settle (see [`IDEMPOTENT`]),
/// then the wake channel. Settles what this process left unsettled, as it drops a side.
const SETTLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
settle_and_look(args[1])
return 1
";

/// KEYS: m. ARGV: wake channel.
const CLOSE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'closed', '1')
redis.call('PUBLISH', ARGV[1], 'c')
return 1
";

struct Scripts {
    create: Script,
    join: Script,
    send: Script,
    recv: Script,
    send_batch: Script,
    recv_batch: Script,
    unpop: Script,
    settle: Script,
    state: Script,
    close: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let with = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        let retried = |body: &str| Script::new(&format!("{PRELUDE}{IDEMPOTENT}{body}"));
        Scripts {
            create: with(CREATE),
            join: with(JOIN),
            send: retried(SEND),
            recv: retried(RECV),
            send_batch: retried(SEND_BATCH),
            recv_batch: retried(RECV_BATCH),
            unpop: with(UNPOP),
            settle: retried(SETTLE),
            state: with(STATE),
            close: Script::new(CLOSE),
        }
    })
}

/// One channel as seen from this process.
struct Chan {
    conn: Connection,
    live: Arc<Live>,
    id: String,
    meta: String,
    queue: String,
    tx: String,
    rx: String,
    res: String,
    /// The reply store (`r`): see "Retries" in the module docs.
    replies: String,
    wake: String,
    cap: usize,
    /// What this process's next scripts on the channel settle.
    settle: Mutex<Settle>,
    /// Why the last operation failed because of the server rather than the peers.
    failure: Mutex<Option<String>>,
    /// `recv_async` futures of this process dropped while their receive was under way, whose
    /// outcome is not settled yet: a message they popped is not back at the head of the queue
    /// yet. Every receive of this process waits until there are none, so that a receive
    /// started after a cancelled one never overtakes the message the cancelled one put back.
    /// (Briefly negative when the put-back finishes before the drop has counted it.)
    unsettled: AtomicIsize,
    /// Notified whenever `unsettled` goes down.
    settled: tokio::sync::Notify,
}

impl Chan {
    fn keys(&self) -> Vec<String> {
        vec![
            self.meta.clone(),
            self.queue.clone(),
            self.tx.clone(),
            self.rx.clone(),
            self.res.clone(),
            self.replies.clone(),
        ]
    }

    fn fail(&self, why: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    fn gone(&self) {
        self.fail(conn::gone_error("channel", &self.id).to_string());
    }

    /// Records that this process's `side` ("sender", "receiver") lease lapsed.
    fn lease_lapsed(&self, side: &str) {
        self.fail(format!(
            "this process's {side} lease on the channel `{}` lapsed (the process was paused or \
             cut off from {} for longer than {:?}): it counts as gone",
            self.id,
            self.live.server(),
            LEASE
        ));
    }
}

impl Chan {
    fn is_settled(&self) -> bool {
        // Acquire pairs with the Release in `settle`: a receive that sees the count back at
        // zero starts after the put-back's reply arrived (the message is at the head again).
        self.unsettled.load(Ordering::Acquire) <= 0
    }

    /// Waits until no cancelled `recv_async` of this process is unsettled.
    async fn wait_settled(&self) {
        loop {
            let settled = self.settled.notified();
            let mut settled = std::pin::pin!(settled);
            // Registered before the check: a `settle` after it wakes this wait.
            settled.as_mut().enable();
            if self.is_settled() {
                return;
            }
            settled.await;
        }
    }

    /// [`wait_settled`](Self::wait_settled) for the blocking and `try_` forms: one atomic load
    /// when nothing is unsettled (always, unless a `recv_async` was just cancelled).
    fn wait_settled_blocking(&self) {
        if !self.is_settled() {
            block_on_short(self.wait_settled());
        }
    }

    /// A cancelled `recv_async`'s outcome is settled (its message, if any, is back).
    fn settle(&self) {
        // Release: see `is_settled`.
        self.unsettled.fetch_sub(1, Ordering::Release);
        self.settled.notify_waiters();
    }
}

/// Held by a `recv_async` future while its receive is under way: dropped before the result was
/// read (the future cancelled), it counts the receive as unsettled until its undo has run.
struct Underway {
    chan: Arc<Chan>,
    read: bool,
}

impl Drop for Underway {
    fn drop(&mut self) {
        if !self.read {
            // Relaxed: this thread's next receive reads it after this store in program order;
            // other threads' receives are not ordered with this one anyway.
            self.chan.unsettled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long a reply of a request that was retried is kept after its answer, and a tombstone
/// after it was settled: a copy of the request sent on a connection given up may still reach
/// the server within this window and must find them (beyond it, such a copy would run again).
const RETRY_WINDOW: Duration = Duration::from_secs(60);

/// The most entries one script settles (the rest wait for the next script).
const SETTLE_MAX: usize = 64;

/// What this process's next scripts on a channel settle (see "Retries" in the module docs):
/// entries as [`IDEMPOTENT`] takes them, a letter and a request id.
#[derive(Default)]
struct Settle {
    /// To carry with the next script.
    now: Vec<String>,
    /// To carry once their time has come: the deletion of the replies of requests that were
    /// retried and of tombstones, after [`RETRY_WINDOW`].
    later: VecDeque<(Instant, String)>,
}

impl Chan {
    /// The entries the next script carries (they stay here until a script carrying them is
    /// answered: settling twice does what settling once does).
    fn to_settle(&self) -> Vec<String> {
        let mut settle = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        if settle.now.is_empty() && settle.later.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        while settle.later.front().is_some_and(|(due, _)| *due <= now) {
            let (_, entry) = settle.later.pop_front().expect("the front is there");
            settle.now.push(entry);
        }
        settle.now.iter().take(SETTLE_MAX).cloned().collect()
    }

    /// A script carrying `carried` was answered: they are settled. A request given up that
    /// was settled may have left a tombstone, deleted after [`RETRY_WINDOW`].
    fn settled(&self, carried: &[String]) {
        if carried.is_empty() {
            return;
        }
        let mut settle = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        settle.now.retain(|e| !carried.contains(e));
        let due = Instant::now() + RETRY_WINDOW;
        for e in carried.iter().filter(|e| !e.starts_with('a')) {
            settle.later.push_back((due, format!("a{}", &e[1..])));
        }
    }

    /// A request's reply was kept and is no longer needed: deleted by the next script, or
    /// after [`RETRY_WINDOW`] when the request was sent more than once.
    fn ack(&self, id: &str, retried: bool) {
        let mut settle = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = format!("a{id}");
        if retried {
            settle
                .later
                .push_back((Instant::now() + RETRY_WINDOW, entry));
        } else {
            settle.now.push(entry);
        }
    }

    /// Whether the next script has entries to carry now (a request given up, or a kept
    /// reply no longer needed).
    fn settle_pending(&self) -> bool {
        let settle = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        !settle.now.is_empty()
    }
}

/// What a request given up was.
#[derive(Clone, Copy)]
enum Kind {
    Send,
    Recv,
    RecvBatch,
}

/// One call's request: its id, kept across the attempts of the call until one is answered.
/// Dropped while the outcome of its last attempt is unknown (the call gave up), it leaves the
/// request to be settled by this process's next script on the channel.
struct Request<'a> {
    chan: &'a Chan,
    kind: Kind,
    state: Mutex<RequestState>,
}

struct RequestState {
    id: String,
    /// Attempts sent with this id.
    attempts: u32,
    /// Whether the last attempt failed on the way (it may have run, or may still run).
    unsure: bool,
    /// Whether an earlier attempt did: it may still run, after the answers to later ones
    /// that found nothing to do (a receive that found the channel empty keeps no reply).
    doubt: bool,
}

impl<'a> Request<'a> {
    fn new(chan: &'a Chan, kind: Kind) -> Self {
        Self {
            chan,
            kind,
            state: Mutex::new(RequestState {
                id: conn::request_id(),
                attempts: 0,
                unsure: false,
                doubt: false,
            }),
        }
    }

    /// Before an attempt: the request id, and the entries the script settles.
    fn start(&self) -> (String, Vec<String>) {
        let id = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.attempts += 1;
            st.doubt |= st.unsure;
            st.unsure = true;
            st.id.clone()
        };
        (id, self.chan.to_settle())
    }

    /// An attempt was answered. `kept`: the script kept its reply; the call's next attempt,
    /// if any, is a new request.
    fn answered(&self, carried: &[String], kept: bool) {
        self.chan.settled(carried);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.unsure = false;
        if kept {
            // Any copy of this request still on its way returns the kept reply.
            self.chan.ack(&st.id, st.attempts > 1);
            st.id = conn::request_id();
            st.attempts = 0;
            st.doubt = false;
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if !st.unsure && !st.doubt {
            return;
        }
        let (letter, note) = match self.kind {
            Kind::Send => (
                's',
                "the message may have been queued (then once); if it was not, it will not be",
            ),
            Kind::Recv | Kind::RecvBatch => (
                if matches!(self.kind, Kind::Recv) {
                    'r'
                } else {
                    'b'
                },
                "a message it took is kept on the server, and put back at the head of the \
                 queue by this process's next operation on the channel (or when it drops the \
                 channel)",
            ),
        };
        self.chan
            .settle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .now
            .push(format!("{letter}{}", st.id));
        let mut failure = self.chan.failure.lock().unwrap_or_else(|e| e.into_inner());
        let why = failure
            .take()
            .unwrap_or_else(|| "redis: a request was not answered".to_owned());
        *failure = Some(format!("{why} ({note})"));
    }
}

/// Adds a request's arguments (see [`IDEMPOTENT`]) to an invocation.
fn request_args(inv: &mut redis::ScriptInvocation<'_>, id: &str, carried: &[String]) {
    inv.arg(id).arg(carried.len());
    for e in carried {
        inv.arg(e);
    }
}

/// One side's registration: its lease is renewed while this lives.
struct Side {
    chan: Arc<Chan>,
    zset: String,
}

impl Drop for Side {
    fn drop(&mut self) {
        // This handle's settle list is its own (each open, travelled or named handle has a
        // `Chan` of its own), so it is carried now even when another handle of this side in
        // this process stays registered.
        let last = self.chan.live.unregister(&self.zset);
        if !last && !self.chan.settle_pending() {
            return;
        }
        let chan = self.chan.clone();
        let zset = self.zset.clone();
        conn::run_cleanup(async move {
            let keys = chan.keys();
            // Messages that requests given up took go back to the queue now, and kept replies
            // no longer needed are deleted: this handle sends no other script. A failure leaves
            // them on the server until the channel is deleted; so do the deletions still
            // waiting for their retry window (a copy of a retried request may yet arrive).
            while chan.settle_pending() {
                let carried = chan.to_settle();
                let mut inv = scripts().settle.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                request_args(&mut inv, "", &carried);
                inv.arg(&chan.wake);
                let mut c = chan.live.cmd.clone();
                chan.conn.count(1);
                if inv.invoke_async::<i64>(&mut c).await.is_err() {
                    break;
                }
                chan.settled(&carried);
            }
            if !last {
                return;
            }
            let zsets = [chan.tx.clone(), chan.rx.clone()];
            // A failure here leaves the lease to lapse: the peers see the disconnection one
            // lease later.
            let _ = chan.live.leave(&zset, &keys, &chan.wake, &zsets).await;
            chan.conn.count(1);
            chan.live.forget_waker(&chan.wake).await;
        });
    }
}

/// The sending half of a Redis channel. Clones share one lease.
pub struct Sender<T> {
    side: Arc<Side>,
    _marker: PhantomData<fn(T)>,
}

/// The receiving half of a Redis channel. Clones share one lease.
pub struct Receiver<T> {
    side: Arc<Side>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            side: self.side.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            side: self.side.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("id", &self.side.chan.id)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("id", &self.side.chan.id)
            .finish_non_exhaustive()
    }
}

fn chan_for(conn: &Connection, live: Arc<Live>, id: String, cap: usize) -> Arc<Chan> {
    Arc::new(Chan {
        conn: conn.clone(),
        live,
        meta: key(&id, "m"),
        queue: key(&id, "q"),
        tx: key(&id, "tx"),
        rx: key(&id, "rx"),
        res: key(&id, "res"),
        replies: key(&id, "r"),
        wake: key(&id, "w"),
        id,
        cap,
        settle: Mutex::new(Settle::default()),
        failure: Mutex::new(None),
        unsettled: AtomicIsize::new(0),
        settled: tokio::sync::Notify::new(),
    })
}

/// Creates a channel on `conn`'s server holding at most `cap` messages (`None`: unbounded).
pub(crate) fn create<T>(
    conn: &Connection,
    cap: Option<usize>,
) -> Result<(Sender<T>, Receiver<T>), Error> {
    if let Some(cap) = cap {
        uniconc_core::validate::channel_capacity(cap)?;
    }
    let live = conn.live()?;
    let chan = chan_for(conn, live.clone(), conn::new_id(), cap.unwrap_or(0));
    let keys = chan.keys();
    let mut inv = scripts().create.prepare_invoke();
    for k in &keys {
        inv.key(k);
    }
    inv.arg(chan.cap)
        .arg(&live.member)
        .arg(ms(LEASE))
        .arg(ms(conn::IDLE_TTL));
    conn.count(1);
    block_on_short(async {
        let mut c = live.cmd.clone();
        inv.invoke_async::<i64>(&mut c).await
    })
    .map_err(|e| redis_error("creating a channel", e))?;
    live.register(&chan.tx, &keys);
    live.register(&chan.rx, &keys);
    let tx = Side {
        chan: chan.clone(),
        zset: chan.tx.clone(),
    };
    let rx = Side {
        zset: chan.rx.clone(),
        chan,
    };
    Ok((
        Sender {
            side: Arc::new(tx),
            _marker: PhantomData,
        },
        Receiver {
            side: Arc::new(rx),
            _marker: PhantomData,
        },
    ))
}

/// Joins one side of an existing channel by its id.
fn join(conn: &Connection, id: &str, sender: bool) -> Result<Side, Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_argument(format!(
            "`{id}` is not a channel id (the hexadecimal string from `Sender::id`)"
        )));
    }
    let live = conn.live()?;
    let probe = chan_for(conn, live.clone(), id.to_owned(), 0);
    let zset = if sender {
        probe.tx.clone()
    } else {
        probe.rx.clone()
    };
    conn.count(1);
    let (status, cap): (i64, i64) = block_on_short(async {
        let mut c = live.cmd.clone();
        scripts()
            .join
            .key(&probe.meta)
            .key(&zset)
            .arg(&live.member)
            .arg(ms(LEASE))
            .invoke_async(&mut c)
            .await
    })
    .map_err(|e| redis_error("joining a channel", e))?;
    match status {
        1 => {}
        -1 => {
            return Err(Error::closed(format!(
                "the channel `{id}` is disconnected (closed, or all its {} are gone)",
                if sender { "receivers" } else { "senders" }
            )));
        }
        _ => return Err(conn::gone_error("channel", id)),
    }
    let chan = chan_for(
        conn,
        live.clone(),
        id.to_owned(),
        usize::try_from(cap).unwrap_or(0),
    );
    live.register(&zset, &chan.keys());
    Ok(Side { chan, zset })
}

/// What one attempt at sending did.
enum SendStep {
    Sent,
    Full,
    Disconnected,
}

/// What one attempt at receiving got.
enum RecvStep {
    Got(Vec<u8>),
    Empty,
    Disconnected,
}

fn send_invocation<'a>(
    chan: &'a Chan,
    (id, carried): &(String, Vec<String>),
    payload: &[u8],
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().send.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .key(&chan.replies);
    request_args(&mut inv, id, carried);
    inv.arg(&chan.live.member).arg(payload).arg(&chan.wake);
    inv
}

/// The answer to a send `req` sent (`at`: its id and the entries it carried).
fn send_answered(
    chan: &Chan,
    req: &Request<'_>,
    at: &(String, Vec<String>),
    r: RedisResult<i64>,
) -> Result<SendStep, RedisError> {
    let r = r?;
    req.answered(&at.1, r == 1);
    Ok(send_step(chan, r))
}

fn send_step(chan: &Chan, r: i64) -> SendStep {
    match r {
        1 => SendStep::Sent,
        0 => SendStep::Full,
        -1 => SendStep::Disconnected,
        -3 => {
            chan.lease_lapsed("sender");
            SendStep::Disconnected
        }
        _ => {
            chan.gone();
            SendStep::Disconnected
        }
    }
}

/// A failure of a blocking call's first attempt, handled as the wait loop handles one: a
/// transient failure is retried (`None`: go on to the wait loop) while the deadline allows —
/// a reply that timed out may still be applied, so never past it (`Some(Err(()))`: timed
/// out); any other ends the call as `disconnected`.
fn first_failure<S>(
    chan: &Chan,
    doing: &str,
    e: RedisError,
    deadline: Option<Instant>,
    disconnected: S,
) -> Option<Result<S, ()>> {
    let transient = is_transient(&e);
    chan.fail(redis_error(doing, e).to_string());
    match (transient, conn::expired(deadline)) {
        (false, _) => Some(Ok(disconnected)),
        (true, true) => Some(Err(())),
        (true, false) => None,
    }
}

async fn send_once(chan: &Chan, req: &Request<'_>, payload: &[u8]) -> Result<SendStep, RedisError> {
    if !chan.live.is_ours() {
        chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
        return Ok(SendStep::Disconnected);
    }
    // A forked child using its copy of this side stops counting the other side's copies.
    chan.live.touch(&chan.tx).await;
    let mut c = chan.live.cmd.clone();
    chan.conn.count(1);
    let at = req.start();
    let r = send_invocation(chan, &at, payload)
        .invoke_async(&mut c)
        .await;
    send_answered(chan, req, &at, r)
}

/// [`send_once`] on this thread's synchronous connection; `None` when there is none (inside
/// an async runtime, or it cannot be opened): then call [`send_once`].
fn send_once_direct(
    chan: &Chan,
    req: &Request<'_>,
    payload: &[u8],
) -> Option<Result<SendStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let mut at = None;
    let r = crate::direct::with(&chan.conn, |c| {
        send_invocation(chan, at.insert(req.start()), payload).invoke::<i64>(c)
    })?;
    chan.conn.count(1);
    Some(send_answered(chan, req, at.as_ref()?, r))
}

/// [`send_once_direct`] from the wait loop of a blocking call (inside the crate's `block_on`).
fn send_once_blocking(
    chan: &Chan,
    req: &Request<'_>,
    payload: &[u8],
) -> Option<Result<SendStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let mut at = None;
    let r = crate::direct::with_blocking(&chan.conn, |c| {
        send_invocation(chan, at.insert(req.start()), payload).invoke::<i64>(c)
    })?;
    chan.conn.count(1);
    Some(send_answered(chan, req, at.as_ref()?, r))
}

/// A receiving script's reply: status, message.
type RecvReply = (i64, Option<Vec<u8>>);

fn recv_invocation<'a>(
    chan: &'a Chan,
    (id, carried): &(String, Vec<String>),
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().recv.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .key(&chan.replies);
    request_args(&mut inv, id, carried);
    inv.arg(&chan.live.member).arg(&chan.wake);
    inv
}

/// The answer to a receive `req` sent (`at`: its id and the entries it carried).
fn recv_answered(
    chan: &Chan,
    req: &Request<'_>,
    at: &(String, Vec<String>),
    r: RedisResult<RecvReply>,
) -> Result<RecvStep, RedisError> {
    let r = r?;
    req.answered(&at.1, r.0 == 1);
    Ok(recv_step(chan, r))
}

fn recv_step(chan: &Chan, r: RecvReply) -> RecvStep {
    match r {
        (1, Some(v)) => RecvStep::Got(v),
        (0, _) => RecvStep::Empty,
        (-1, _) => RecvStep::Disconnected,
        (-3, _) => {
            chan.lease_lapsed("receiver");
            RecvStep::Disconnected
        }
        _ => {
            chan.gone();
            RecvStep::Disconnected
        }
    }
}

async fn recv_once(chan: &Chan, req: &Request<'_>) -> Result<RecvStep, RedisError> {
    if !chan.live.is_ours() {
        chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
        return Ok(RecvStep::Disconnected);
    }
    // A forked child using its copy of this side stops counting the other side's copies.
    chan.live.touch(&chan.rx).await;
    let mut c = chan.live.cmd.clone();
    chan.conn.count(1);
    let at = req.start();
    let r = recv_invocation(chan, &at).invoke_async(&mut c).await;
    recv_answered(chan, req, &at, r)
}

/// [`recv_once`] on this thread's synchronous connection; `None` when there is none.
fn recv_once_direct(chan: &Chan, req: &Request<'_>) -> Option<Result<RecvStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let mut at = None;
    let r = crate::direct::with(&chan.conn, |c| {
        recv_invocation(chan, at.insert(req.start())).invoke(c)
    })?;
    chan.conn.count(1);
    Some(recv_answered(chan, req, at.as_ref()?, r))
}

/// [`recv_once_direct`] from the wait loop of a blocking call (inside the crate's `block_on`).
fn recv_once_blocking(chan: &Chan, req: &Request<'_>) -> Option<Result<RecvStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let mut at = None;
    let r = crate::direct::with_blocking(&chan.conn, |c| {
        recv_invocation(chan, at.insert(req.start())).invoke(c)
    })?;
    chan.conn.count(1);
    Some(recv_answered(chan, req, at.as_ref()?, r))
}

/// A send or receive that failed, for the wait loop: the failure is recorded on the channel;
/// a transient one is retried, any other ends the wait with `disconnected`.
fn failed<S>(chan: &Chan, doing: &str, e: RedisError, disconnected: S) -> Attempt<S> {
    let transient = is_transient(&e);
    chan.fail(redis_error(doing, e).to_string());
    if transient {
        Attempt::Retry
    } else {
        Attempt::Done(disconnected)
    }
}

/// Whether this attempt is the first one of a wait whose caller has just found the channel full
/// (empty) on its own connection: it is skipped, so the wait subscribes and checks again at once
/// instead of repeating the check first.
fn skip(known: &AtomicBool) -> bool {
    // Relaxed: the attempts run one after another in one task.
    known.swap(false, Ordering::Relaxed)
}

/// Sends `payload`, waiting for room until `deadline`. `Err(())` on timeout or cancellation.
/// `full`: the caller has just found the channel full.
async fn send_wait(
    chan: &Chan,
    req: &Request<'_>,
    payload: &[u8],
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
    full: bool,
) -> Result<SendStep, ()> {
    let full = AtomicBool::new(full);
    let Ok(step) = wait_until(&chan.live, &chan.wake, deadline, cancel, || async {
        if skip(&full) {
            return Ok(Attempt::Wait);
        }
        // A blocking call (no `Cancel`: not an `_async` task) checks on its thread's own
        // connection.
        let direct = cancel
            .is_none()
            .then(|| send_once_blocking(chan, req, payload));
        let r = match direct.flatten() {
            Some(r) => r,
            None => send_once(chan, req, payload).await,
        };
        Ok::<_, Infallible>(match r {
            Ok(SendStep::Full) => Attempt::Wait,
            Ok(step) => Attempt::Done(step),
            Err(e) => failed(chan, "sending", e, SendStep::Disconnected),
        })
    })
    .await;
    step.ok_or(())
}

/// Receives, waiting until `deadline`. `Err(())` on timeout or cancellation. `empty`: the
/// caller has just found the channel empty.
async fn recv_wait(
    chan: &Chan,
    req: &Request<'_>,
    deadline: Option<Instant>,
    cancel: Option<&Cancel>,
    empty: bool,
) -> Result<RecvStep, ()> {
    let empty = AtomicBool::new(empty);
    let Ok(step) = wait_until(&chan.live, &chan.wake, deadline, cancel, || async {
        if skip(&empty) {
            return Ok(Attempt::Wait);
        }
        // As in `send_wait`.
        let direct = cancel.is_none().then(|| recv_once_blocking(chan, req));
        let r = match direct.flatten() {
            Some(r) => r,
            None => recv_once(chan, req).await,
        };
        Ok::<_, Infallible>(match r {
            Ok(RecvStep::Empty) => Attempt::Wait,
            Ok(step) => Attempt::Done(step),
            Err(e) => failed(chan, "receiving", e, RecvStep::Disconnected),
        })
    })
    .await;
    step.ok_or(())
}

/// The most messages one batch script carries (a `send_batch` round trip, or a `recv_batch`
/// pop).
pub const BATCH: usize = 1024;

/// The most encoded bytes one `send_batch` script carries (it takes fewer messages when they
/// are large).
const BATCH_BYTES: usize = 4 << 20;

/// A `send_batch` call's reservation of room on the server (`res`): its field and how many
/// messages it holds room for. Dropped still holding room (the caller's iterator panicked, or
/// the call ended as a message was found invalid), it gives the room back.
struct Reservation {
    chan: Arc<Chan>,
    field: String,
    held: usize,
}

impl Reservation {
    fn new(chan: &Arc<Chan>) -> Self {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        // Relaxed: a unique number is all that is asked of it.
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        Self {
            chan: chan.clone(),
            field: format!("{}|{call}", chan.live.member),
            held: 0,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held == 0 {
            return;
        }
        let chan = self.chan.clone();
        let field = std::mem::take(&mut self.field);
        conn::run_cleanup(async move {
            let req = Request::new(&chan, Kind::Send);
            // A failure leaves the room reserved until this process's sender lease lapses.
            let _ = send_batch_once(&chan, &req, &field, &[], 0, 0).await;
        });
    }
}

/// What one `send_batch` script did: how many payloads it pushed, the room it reserved for the
/// next call, and whether the channel is disconnected.
struct BatchSent {
    pushed: usize,
    held: usize,
    disconnected: bool,
}

fn send_batch_invocation<'a>(
    chan: &'a Chan,
    (id, carried): &(String, Vec<String>),
    field: &str,
    payloads: &[Vec<u8>],
    covered: usize,
    want: usize,
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().send_batch.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .key(&chan.replies);
    request_args(&mut inv, id, carried);
    inv.arg(field)
        .arg(&chan.live.member)
        .arg(&chan.wake)
        .arg(want)
        .arg(covered);
    for p in payloads {
        inv.arg(p.as_slice());
    }
    inv
}

/// The answer to a `send_batch` script `req` sent (`at`: its id and the entries it carried).
fn send_batch_answered(
    chan: &Chan,
    req: &Request<'_>,
    at: &(String, Vec<String>),
    r: RedisResult<Vec<i64>>,
) -> Result<BatchSent, RedisError> {
    let r = r?;
    // Every reply but -2/-3/-4 (nothing done) is kept.
    req.answered(&at.1, r.first().is_some_and(|&s| s >= 0));
    Ok(send_batch_step(chan, &r))
}

fn send_batch_step(chan: &Chan, r: &[i64]) -> BatchSent {
    let at = |i: usize| usize::try_from(r.get(i).copied().unwrap_or(0)).unwrap_or(0);
    match r.first().copied().unwrap_or(-2) {
        n if n >= 0 => BatchSent {
            pushed: at(0),
            held: at(1),
            disconnected: r.get(2) == Some(&1),
        },
        -3 => {
            chan.lease_lapsed("sender");
            BatchSent {
                pushed: 0,
                held: 0,
                disconnected: true,
            }
        }
        _ => {
            chan.gone();
            BatchSent {
                pushed: 0,
                held: 0,
                disconnected: true,
            }
        }
    }
}

/// One `send_batch` script on the multiplexed connection.
async fn send_batch_once(
    chan: &Chan,
    req: &Request<'_>,
    field: &str,
    payloads: &[Vec<u8>],
    covered: usize,
    want: usize,
) -> Result<BatchSent, RedisError> {
    if !chan.live.is_ours() {
        chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
        return Ok(BatchSent {
            pushed: 0,
            held: 0,
            disconnected: true,
        });
    }
    // A forked child using its copy of this side stops counting the other side's copies.
    chan.live.touch(&chan.tx).await;
    let mut c = chan.live.cmd.clone();
    chan.conn.count(1);
    let at = req.start();
    let r = send_batch_invocation(chan, &at, field, payloads, covered, want)
        .invoke_async(&mut c)
        .await;
    send_batch_answered(chan, req, &at, r)
}

/// One round trip of `send_batch`, waiting while the channel is full: pushes `payloads` (the
/// first `covered` into the room `res` holds, the others while there is room) and reserves room
/// for up to `want` more. `(pushed, disconnected)`; `pushed` is short of `payloads.len()` only
/// when the channel is disconnected.
fn send_batch_trip(
    res: &mut Reservation,
    req: &Request<'_>,
    payloads: &[Vec<u8>],
    covered: usize,
    want: usize,
) -> (usize, bool) {
    let chan = &*res.chan;
    // The first attempt on this thread's own connection; waiting on the runtime.
    let mut at = None;
    let direct = chan.live.direct_ok().then(|| {
        crate::direct::with(&chan.conn, |c| {
            send_batch_invocation(
                chan,
                at.insert(req.start()),
                &res.field,
                payloads,
                covered,
                want,
            )
            .invoke::<Vec<i64>>(c)
        })
    });
    let direct = match (direct.flatten(), &at) {
        (Some(r), Some(at)) => Some(send_batch_answered(chan, req, at, r)),
        _ => None,
    };
    let (done, full) = match direct {
        Some(Ok(step)) => {
            chan.conn.count(1);
            res.held = step.held;
            if step.pushed == payloads.len() || step.disconnected {
                return (step.pushed, step.disconnected);
            }
            (step.pushed, true)
        }
        Some(Err(e)) => {
            chan.conn.count(1);
            let transient = is_transient(&e);
            chan.fail(redis_error("sending", e).to_string());
            if !transient {
                return (0, true);
            }
            (0, false)
        }
        None => (0, false),
    };
    let (more, held, disconnected) = block_on(send_batch_wait(
        chan,
        req,
        &res.field,
        &payloads[done..],
        covered.saturating_sub(done),
        want,
        full,
    ));
    res.held = held;
    (done + more, disconnected)
}

/// The waiting part of [`send_batch_trip`] (inside the crate's `block_on`): `(pushed, room
/// held, disconnected)`.
async fn send_batch_wait(
    chan: &Chan,
    req: &Request<'_>,
    field: &str,
    payloads: &[Vec<u8>],
    covered: usize,
    want: usize,
    full: bool,
) -> (usize, usize, bool) {
    let done = AtomicUsize::new(0);
    let held = AtomicUsize::new(0);
    let full = AtomicBool::new(full);
    let r = wait_until(&chan.live, &chan.wake, None, None, || async {
        if skip(&full) {
            return Ok(Attempt::Wait);
        }
        // Relaxed: the attempts run one after another in this task.
        let d = done.load(Ordering::Relaxed);
        let (rest, covered) = (&payloads[d..], covered.saturating_sub(d));
        // Only blocking calls wait here: on the thread's own connection.
        let mut at = None;
        let direct = chan.live.direct_ok().then(|| {
            crate::direct::with_blocking(&chan.conn, |c| {
                send_batch_invocation(chan, at.insert(req.start()), field, rest, covered, want)
                    .invoke::<Vec<i64>>(c)
            })
        });
        let r = match (direct.flatten(), &at) {
            (Some(r), Some(at)) => {
                chan.conn.count(1);
                send_batch_answered(chan, req, at, r)
            }
            _ => send_batch_once(chan, req, field, rest, covered, want).await,
        };
        Ok::<_, Infallible>(match r {
            Ok(step) => {
                done.store(d + step.pushed, Ordering::Relaxed);
                held.store(step.held, Ordering::Relaxed);
                if step.disconnected {
                    Attempt::Done(true)
                } else if d + step.pushed == payloads.len() {
                    Attempt::Done(false)
                } else {
                    Attempt::Wait
                }
            }
            Err(e) => failed(chan, "sending", e, true),
        })
    })
    .await;
    // No deadline and no cancellation: the wait ends with `Done`.
    let Ok(Some(disconnected)) = r else {
        unreachable!("a wait without deadline or cancellation ends with a result")
    };
    (
        done.load(Ordering::Relaxed),
        held.load(Ordering::Relaxed),
        disconnected,
    )
}

/// The reply of the receiving batch script: status, messages.
type BatchReply = (i64, Option<Vec<Vec<u8>>>);

fn recv_batch_invocation<'a>(
    chan: &'a Chan,
    (id, carried): &(String, Vec<String>),
    max: &str,
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().recv_batch.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .key(&chan.replies);
    request_args(&mut inv, id, carried);
    inv.arg(&chan.live.member).arg(&chan.wake).arg(max);
    inv
}

/// The answer to a receiving batch script `req` sent (`at`: its id and the entries it
/// carried).
fn recv_batch_answered(
    req: &Request<'_>,
    at: &(String, Vec<String>),
    r: RedisResult<BatchReply>,
) -> RedisResult<BatchReply> {
    let r = r?;
    req.answered(&at.1, r.0 == 1);
    Ok(r)
}

/// What one receiving batch script found: `Done(Some(msgs))`, `Done(None)` disconnected, or
/// `Wait` (empty).
fn recv_batch_step(chan: &Chan, r: BatchReply) -> Attempt<Option<Vec<Vec<u8>>>> {
    match r {
        (1, Some(v)) => Attempt::Done(Some(v)),
        (0, _) => Attempt::Wait,
        (-1, _) => Attempt::Done(None),
        (-3, _) => {
            chan.lease_lapsed("receiver");
            Attempt::Done(None)
        }
        _ => {
            chan.gone();
            Attempt::Done(None)
        }
    }
}

/// Pops up to `max` messages, waiting until there is at least one. `None`: disconnected.
fn recv_batch_blocking(chan: &Chan, max: usize) -> Option<Vec<Vec<u8>>> {
    let max = max.to_string();
    let req = Request::new(chan, Kind::RecvBatch);
    let mut empty = false;
    // The first attempt on this thread's own connection; waiting on the runtime.
    let mut at = None;
    if chan.live.direct_ok()
        && let Some(r) = crate::direct::with(&chan.conn, |c| {
            recv_batch_invocation(chan, at.insert(req.start()), &max).invoke(c)
        })
        && let Some(at) = &at
    {
        chan.conn.count(1);
        match recv_batch_answered(&req, at, r) {
            Ok(r) => match recv_batch_step(chan, r) {
                Attempt::Done(got) => return got,
                _ => empty = true,
            },
            Err(e) => {
                let transient = is_transient(&e);
                chan.fail(redis_error("receiving", e).to_string());
                if !transient {
                    return None;
                }
            }
        }
    }
    block_on(recv_batch_wait(chan, &req, &max, empty))
}

async fn recv_batch_wait(
    chan: &Chan,
    req: &Request<'_>,
    max: &str,
    empty: bool,
) -> Option<Vec<Vec<u8>>> {
    let empty = AtomicBool::new(empty);
    let r = wait_until(&chan.live, &chan.wake, None, None, || async {
        if skip(&empty) {
            return Ok(Attempt::Wait);
        }
        if !chan.live.is_ours() {
            chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
            return Ok::<_, Infallible>(Attempt::Done(None));
        }
        // A forked child using its copy of this side stops counting the other side's
        // copies.
        chan.live.touch(&chan.rx).await;
        // Only blocking calls wait here (inside the crate's `block_on`): on the thread's own
        // connection.
        chan.conn.count(1);
        let mut at = None;
        let direct = chan.live.direct_ok().then(|| {
            crate::direct::with_blocking(&chan.conn, |c| {
                recv_batch_invocation(chan, at.insert(req.start()), max).invoke(c)
            })
        });
        let r: Result<BatchReply, RedisError> = match (direct.flatten(), &at) {
            (Some(r), Some(at)) => recv_batch_answered(req, at, r),
            _ => {
                let mut c = chan.live.cmd.clone();
                let at = req.start();
                let r = recv_batch_invocation(chan, &at, max)
                    .invoke_async(&mut c)
                    .await;
                recv_batch_answered(req, &at, r)
            }
        };
        Ok(match r {
            Ok(r) => recv_batch_step(chan, r),
            Err(e) => failed(chan, "receiving", e, None),
        })
    })
    .await;
    let Ok(got) = r;
    got.flatten()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MessageError> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| MessageError::Encode(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE,
        });
    }
    Ok(bytes)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MessageError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| MessageError::Decode(e.to_string()))
}

fn state(chan: &Chan) -> Result<(usize, bool), Error> {
    if !chan.live.is_ours() {
        return Err(chan.live.foreign_error("channel", &chan.id));
    }
    chan.conn.count(1);
    let (len, closed, gone): (usize, i64, i64) = block_on_short(async {
        let mut c = chan.live.cmd.clone();
        scripts()
            .state
            .key(&chan.meta)
            .key(&chan.queue)
            .key(&chan.tx)
            .key(&chan.rx)
            .arg(&chan.wake)
            .invoke_async(&mut c)
            .await
    })
    .map_err(|e| redis_error("reading a channel's state", e))?;
    if gone == -2 {
        return Err(conn::gone_error("channel", &chan.id));
    }
    Ok((len, closed == 1))
}

macro_rules! common {
    () => {
        /// The channel's id: pass it to another process, which joins with
        /// [`Connection::open_sender`] or [`Connection::open_receiver`].
        pub fn id(&self) -> &str {
            &self.side.chan.id
        }

        /// Why the last operation that reported `Disconnected`, `Full`/`Empty` or a timeout
        /// did so because of the server rather than the peers (unreachable, the channel's
        /// data lost, this process's lease lapsed), if one did.
        pub fn last_failure(&self) -> Option<String> {
            self.side
                .chan
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        }

        /// The number of queued messages, and whether the channel is disconnected, in one round
        /// trip.
        ///
        /// # Errors
        ///
        /// `Os` when the server cannot be reached; `Closed` when the channel's data is gone.
        pub fn state(&self) -> Result<(usize, bool), Error> {
            state(&self.side.chan)
        }
    };
}

impl<T> Sender<T> {
    common!();
}

impl<T> Receiver<T> {
    common!();
}

impl Connection {
    /// Joins the sending side of the channel `id` (from [`Sender::id`]), from any process.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id; `Closed` if the channel is disconnected or gone;
    /// `Os` when the server cannot be reached.
    pub fn open_sender<T>(&self, id: &str) -> Result<Sender<T>, Error> {
        Ok(Sender {
            side: Arc::new(join(self, id, true)?),
            _marker: PhantomData,
        })
    }

    /// Joins the receiving side of the channel `id` (from [`Receiver::id`]), from any process.
    ///
    /// # Errors
    ///
    /// As [`open_sender`](Self::open_sender).
    pub fn open_receiver<T>(&self, id: &str) -> Result<Receiver<T>, Error> {
        Ok(Receiver {
            side: Arc::new(join(self, id, false)?),
            _marker: PhantomData,
        })
    }
}

fn same(a: &Side, b: &Side) -> bool {
    a.chan.id == b.chan.id && a.chan.conn.server() == b.chan.conn.server()
}

impl<T: Serialize + DeserializeOwned + Send + 'static> uniconc_core::Sender<T> for Sender<T> {
    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let payload = match encode(&value) {
            Ok(p) => p,
            Err(e) => return Err(TrySendError::Invalid(value, e)),
        };
        let chan = &self.side.chan;
        let req = Request::new(chan, Kind::Send);
        let step = send_once_direct(chan, &req, &payload)
            .unwrap_or_else(|| block_on_short(send_once(chan, &req, &payload)));
        match step {
            Ok(SendStep::Sent) => Ok(()),
            Ok(SendStep::Full) => Err(TrySendError::Full(value)),
            Ok(SendStep::Disconnected) => Err(TrySendError::Disconnected(value)),
            Err(e) => {
                chan.fail(redis_error("sending", e).to_string());
                Err(TrySendError::Full(value))
            }
        }
    }

    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let payload = match encode(&value) {
            Ok(p) => p,
            Err(e) => return Err(SendTimeoutError::Invalid(value, e)),
        };
        let chan = &self.side.chan;
        // The first attempt on this thread's own connection; waiting (for room, or through a
        // failure) on the runtime.
        let req = Request::new(chan, Kind::Send);
        let mut full = false;
        let first = match send_once_direct(chan, &req, &payload) {
            Some(Ok(SendStep::Full)) => {
                full = true;
                None
            }
            None => None,
            Some(Ok(step)) => Some(Ok(step)),
            Some(Err(e)) => first_failure(chan, "sending", e, deadline, SendStep::Disconnected),
        };
        let step = first
            .unwrap_or_else(|| block_on(send_wait(chan, &req, &payload, deadline, None, full)));
        match step {
            Ok(SendStep::Sent) => Ok(()),
            Ok(_) => Err(SendTimeoutError::Disconnected(value)),
            Err(()) => Err(SendTimeoutError::Timeout(value)),
        }
    }

    /// Sends in round trips of up to [`BATCH`] messages (and 4 MiB). Each round trip's script
    /// pushes the messages the previous one reserved room for, then one more if there is room,
    /// and reserves room for the next round trip, so a batch costs about one round trip per
    /// [`BATCH`] messages instead of one per message. While the channel is full it waits, as
    /// `send` does.
    ///
    /// Only the messages the server has reserved room for are taken from `items`, and one
    /// more. A reservation made before the channel disconnected is honoured: those messages
    /// are pushed, and the receivers of a closed channel wait for them before they see
    /// `Disconnected`. So when the channel is found disconnected, the one extra message comes
    /// back in the error and the rest stay in `items`. (When this process's sender lease lapsed
    /// — it was paused or cut off for longer than [`LEASE`] — its reservation lapsed with it:
    /// then the messages taken for that round trip are lost but the first, which comes back.)
    /// A message that does not encode comes back as `Invalid` after the ones before it were
    /// sent.
    fn send_batch<I>(&self, items: I) -> Result<usize, SendError<T>>
    where
        I: IntoIterator<Item = T>,
    {
        let mut items = items.into_iter();
        let chan = self.side.chan.clone();
        let req = Request::new(&chan, Kind::Send);
        let mut res = Reservation::new(&self.side.chan);
        let mut sent = 0;
        let mut values = Vec::new();
        let mut payloads = Vec::new();
        loop {
            values.clear();
            payloads.clear();
            let (mut bytes, mut invalid, mut ended) = (0, None, false);
            // The messages the reservation covers, and one more.
            while values.len() <= res.held && (values.is_empty() || bytes < BATCH_BYTES) {
                let Some(value) = items.next() else {
                    ended = true;
                    break;
                };
                match encode(&value) {
                    Ok(p) => {
                        bytes += p.len();
                        payloads.push(p);
                        values.push(value);
                    }
                    Err(e) => {
                        invalid = Some(SendError::Invalid(value, e));
                        break;
                    }
                }
            }
            if !payloads.is_empty() {
                let covered = payloads.len().min(res.held);
                // No more room is needed once the items ended.
                let want = if ended || invalid.is_some() { 0 } else { BATCH };
                let (pushed, _) = send_batch_trip(&mut res, &req, &payloads, covered, want);
                sent += pushed;
                if pushed < payloads.len() {
                    let first = values.drain(pushed..).next();
                    return Err(SendError::Disconnected(
                        first.expect("the unsent message is there"),
                    ));
                }
            }
            if let Some(e) = invalid {
                return Err(e);
            }
            if ended {
                return Ok(sent);
            }
        }
    }

    fn send_async(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        let side = self.side.clone();
        async move {
            let payload = match encode(&value) {
                Ok(p) => p,
                Err(e) => return Err(SendError::Invalid(value, e)),
            };
            let step = conn::spawn_cancellable(
                move |cancel| async move {
                    let req = Request::new(&side.chan, Kind::Send);
                    send_wait(&side.chan, &req, &payload, None, Some(&cancel), false).await
                },
                // A message sent after the caller gave up stays sent: it is the caller's value,
                // delivered; nothing to undo.
                |_| async {},
            )
            .await;
            match step {
                Ok(SendStep::Sent) => Ok(()),
                _ => Err(SendError::Disconnected(value)),
            }
        }
    }

    fn len(&self) -> usize {
        // A message popped by a cancelled `recv_async` of this process counts once it is back.
        self.side.chan.wait_settled_blocking();
        state(&self.side.chan).map_or(0, |(n, _)| n)
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.side.chan.cap).filter(|&c| c > 0)
    }

    fn is_closed(&self) -> bool {
        state(&self.side.chan).is_ok_and(|(_, closed)| closed)
    }

    fn close(&self) {
        let chan = &self.side.chan;
        if !chan.live.is_ours() {
            chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
            return;
        }
        chan.conn.count(1);
        let r = block_on_short(async {
            let mut c = chan.live.cmd.clone();
            scripts()
                .close
                .key(&chan.meta)
                .arg(&chan.wake)
                .invoke_async::<i64>(&mut c)
                .await
        });
        if let Err(e) = r {
            chan.fail(redis_error("closing the channel", e).to_string());
        }
    }

    fn same_channel(&self, other: &Self) -> bool {
        same(&self.side, &other.side)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> uniconc_core::Receiver<T> for Receiver<T> {
    fn try_recv(&self) -> Result<T, TryRecvError> {
        let chan = &self.side.chan;
        chan.wait_settled_blocking();
        let req = Request::new(chan, Kind::Recv);
        let step =
            recv_once_direct(chan, &req).unwrap_or_else(|| block_on_short(recv_once(chan, &req)));
        match step {
            Ok(RecvStep::Got(bytes)) => decode(&bytes).map_err(TryRecvError::Invalid),
            Ok(RecvStep::Empty) => Err(TryRecvError::Empty),
            Ok(RecvStep::Disconnected) => Err(TryRecvError::Disconnected),
            Err(e) => {
                chan.fail(redis_error("receiving", e).to_string());
                Err(TryRecvError::Empty)
            }
        }
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let chan = &self.side.chan;
        chan.wait_settled_blocking();
        // As in `send_deadline`: the first attempt on this thread's own connection.
        let req = Request::new(chan, Kind::Recv);
        let mut empty = false;
        let first = match recv_once_direct(chan, &req) {
            Some(Ok(RecvStep::Empty)) => {
                empty = true;
                None
            }
            None => None,
            Some(Ok(step)) => Some(Ok(step)),
            Some(Err(e)) => first_failure(chan, "receiving", e, deadline, RecvStep::Disconnected),
        };
        let step = first.unwrap_or_else(|| block_on(recv_wait(chan, &req, deadline, None, empty)));
        match step {
            Ok(RecvStep::Got(bytes)) => decode(&bytes).map_err(RecvTimeoutError::Invalid),
            Ok(_) => Err(RecvTimeoutError::Disconnected),
            Err(()) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Pops up to `max` (at most [`BATCH`]) queued messages in one script, waiting as `recv`
    /// does until there is at least one. The messages are popped before they are decoded: one
    /// that does not decode comes back as `Invalid` with the ones before it in `buf`, and the
    /// ones after it are dropped (consumed, as the undecodable one is).
    fn recv_batch(&self, buf: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        self.side.chan.wait_settled_blocking();
        let Some(got) = recv_batch_blocking(&self.side.chan, max.min(BATCH)) else {
            return Err(RecvError::Disconnected);
        };
        buf.reserve(got.len());
        for bytes in &got {
            buf.push(decode(bytes).map_err(RecvError::Invalid)?);
        }
        Ok(got.len())
    }

    /// # Cancel safety
    ///
    /// A message popped for a future dropped before it returned it is put back at the head of
    /// the queue; the receives this process starts afterwards wait until it is back, so a
    /// consumer that cancels a receive and receives again gets the messages in order.
    fn recv_async(&self) -> impl Future<Output = Result<T, RecvError>> + Send + '_ {
        let side = self.side.clone();
        let undo_side = self.side.clone();
        async move {
            side.chan.wait_settled().await;
            // Counted as unsettled if this future is dropped from here on; the undo below runs
            // exactly then (once), and settles it.
            let mut underway = Underway {
                chan: side.chan.clone(),
                read: false,
            };
            let step = conn::spawn_cancellable(
                move |cancel| async move {
                    let req = Request::new(&side.chan, Kind::Recv);
                    recv_wait(&side.chan, &req, None, Some(&cancel), false).await
                },
                // Popped after the caller gave up: put it back at the head, where it was,
                // retried through an unreachable server under one marker.
                move |step| async move {
                    let chan = &undo_side.chan;
                    if let Ok(RecvStep::Got(bytes)) = step {
                        let marker = key(&chan.id, &format!("u:{:016x}", conn::random_u64()));
                        let until = Instant::now() + UNPOP_RETRY;
                        loop {
                            let mut c = chan.live.cmd.clone();
                            chan.conn.count(1);
                            let r = scripts()
                                .unpop
                                .key(&chan.meta)
                                .key(&chan.queue)
                                .key(&marker)
                                .arg(&bytes)
                                .arg(ms(UNPOP_RETRY * 2))
                                .arg(&chan.wake)
                                .invoke_async::<i64>(&mut c)
                                .await;
                            match r {
                                Err(e) if is_transient(&e) && Instant::now() < until => {
                                    conn::backoff(None).await;
                                }
                                _ => break,
                            }
                        }
                    }
                    chan.settle();
                },
            )
            .await;
            underway.read = true;
            match step {
                Ok(RecvStep::Got(bytes)) => decode(&bytes).map_err(RecvError::Invalid),
                _ => Err(RecvError::Disconnected),
            }
        }
    }

    fn len(&self) -> usize {
        // A message popped by a cancelled `recv_async` of this process counts once it is back.
        self.side.chan.wait_settled_blocking();
        state(&self.side.chan).map_or(0, |(n, _)| n)
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.side.chan.cap).filter(|&c| c > 0)
    }

    fn is_closed(&self) -> bool {
        state(&self.side.chan).is_ok_and(|(_, closed)| closed)
    }

    fn same_channel(&self, other: &Self) -> bool {
        same(&self.side, &other.side)
    }
}

impl Connection {
    /// A channel on this server holding at most `cap` messages.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `cap` is 0; `Os` when the server cannot be reached.
    ///
    /// ```no_run
    /// use uniconc_core::{Receiver as _, Sender as _};
    ///
    /// let conn = uniconc_redis::default_connection()?;
    /// let (tx, rx) = conn.channel::<String>(16)?;
    /// tx.send("hello".to_owned()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "hello");
    /// # Ok::<(), uniconc_core::Error>(())
    /// ```
    pub fn channel<T>(&self, cap: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
        create(self, Some(cap))
    }

    /// A channel on this server without a bound.
    ///
    /// # Errors
    ///
    /// `Os` when the server cannot be reached.
    pub fn unbounded<T>(&self) -> Result<(Sender<T>, Receiver<T>), Error> {
        create(self, None)
    }
}

// ---- hooks for select (crate::select) --------------------------------------------------------

impl<T> Sender<T> {
    /// This process's connection and the channel's wake-up channel: what a select watches.
    pub(crate) fn wake_up(&self) -> (&Arc<Live>, &str) {
        (&self.side.chan.live, &self.side.chan.wake)
    }
}

impl<T> Receiver<T> {
    /// As [`Sender::wake_up`].
    pub(crate) fn wake_up(&self) -> (&Arc<Live>, &str) {
        (&self.side.chan.live, &self.side.chan.wake)
    }
}

// ---- travelling halves (crate::travel) --------------------------------------------------------

/// The side a travelling half's deserialization took over (its member is already in the
/// lease set): registered for renewal like a joined one.
fn adopt_side(a: crate::travel::Arrived, sender: bool) -> Side {
    let cap = a.field.and_then(|c| c.parse().ok()).unwrap_or(0);
    let chan = chan_for(&a.conn, a.live.clone(), a.id, cap);
    let zset = if sender {
        chan.tx.clone()
    } else {
        chan.rx.clone()
    };
    a.live.register(&zset, &chan.keys());
    Side { chan, zset }
}

macro_rules! travel_half {
    ($half:ident, $sender:expr) => {
        /// A travelling handle: sent through a channel, stored in a `Map` or returned from a
        /// task, it works where it lands, in any process that reaches the server (see
        /// `uniconc::Backend::TRAVEL` for the rule of a handle in flight).
        impl<T> serde::Serialize for $half<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let chan = &self.side.chan;
                let kind = crate::travel::channel_half($sender, std::any::type_name::<T>());
                let held = crate::travel::Held {
                    conn: &chan.conn,
                    live: &chan.live,
                    id: &chan.id,
                };
                crate::travel::serialize(s, &kind, held)
            }
        }

        /// Takes over the handle in flight (see `Serialize`).
        impl<'de, T> serde::Deserialize<'de> for $half<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let kind = crate::travel::channel_half($sender, std::any::type_name::<T>());
                let arrived = crate::travel::deserialize(d, &kind)?;
                Ok(Self {
                    side: Arc::new(adopt_side(arrived, $sender)),
                    _marker: PhantomData,
                })
            }
        }
    };
}

travel_half!(Sender, true);
travel_half!(Receiver, false);
