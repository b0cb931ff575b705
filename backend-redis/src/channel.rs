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
//! - The notification channel `uc:{<id>}:w` gets `r` when the list stops being empty, `s`
//!   when it stops being full, and a message on every disconnection.
//!
//! Every operation is one script: atomic, one round trip. Disconnection: a side is gone when
//! its sorted set holds no live lease (handles dropped, or their processes killed: a lease
//! lapses [`LEASE`] after its last renewal).
//!
//! # Delivery
//!
//! At most once: a message is popped and returned by one script; if the reply is lost (the
//! connection drops at that moment) the message is lost. A send that failed with a timeout
//! may or may not have been delivered.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use redis::{RedisError, Script};
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

/// KEYS: m q tx rx. ARGV: cap, member, lease ms, idle ttl ms.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'cap', ARGV[1], 'closed', '0')
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[2])
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
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

/// KEYS: m q tx rx res. ARGV: member, payload, wake channel. Returns 1 sent, 0 full, -1
/// disconnected, -2 gone, -3 this process's sender lease lapsed.
const SEND: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return -2 end
if m[2] == '1' then return -1 end
if not mine(KEYS[3], ARGV[1]) then return -3 end
if not alive(KEYS[4]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], 'c')
  return -1
end
local n = redis.call('LLEN', KEYS[2])
local cap = tonumber(m[1])
if cap > 0 and (n >= cap or n + reserved(KEYS[5], KEYS[3]) >= cap) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
if n == 0 then redis.call('PUBLISH', ARGV[3], 'r') end
return 1
";

/// KEYS: m q tx rx res. ARGV: member, wake channel. Returns {1, msg}, {0} empty, {-1}
/// disconnected, {-2} gone, {-3} this process's receiver lease lapsed.
const RECV: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2, false} end
if not mine(KEYS[4], ARGV[1]) then return {-3, false} end
local v = redis.call('LPOP', KEYS[2])
if v then
  local cap = tonumber(m[1])
  if cap > 0 then
    local left = redis.call('LLEN', KEYS[2]) + reserved(KEYS[5], KEYS[3])
    if left < cap and left + 1 >= cap then redis.call('PUBLISH', ARGV[2], 's') end
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
  redis.call('PUBLISH', ARGV[2], 'c')
  return {-1, false}
end
return {0, false}
";

/// KEYS: m q tx rx res. ARGV: reservation (`<member>|<call>`), member, wake channel, how much
/// room to reserve for the next call, how many of the payloads the reservation held covers,
/// payloads...
///
/// Pushes the covered payloads whatever the channel's state since (the room was reserved
/// before any disconnection; with every receiver gone they are dropped as the queue is), then
/// the others while there is room and the channel is connected, releases what the reservation
/// held beyond them, and reserves room for the next call. Returns {pushed, reserved for the
/// next call, 1 if the channel is disconnected (else 0)}, or {-2} gone, {-3} this process's
/// sender lease lapsed (its reservation with it).
const SEND_BATCH: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2} end
local held = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
redis.call('HDEL', KEYS[5], ARGV[1])
if not mine(KEYS[3], ARGV[2]) then return {-3} end
local first = 6
local total = #ARGV - first + 1
local covered = math.min(tonumber(ARGV[5]), held, total)
local cap = tonumber(m[1])
local closed = m[2] == '1'
local n = redis.call('LLEN', KEYS[2])
local function push(from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 999, to)
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
    i = j + 1
  end
end
if not closed and not alive(KEYS[4]) then
  redis.call('HSET', KEYS[1], 'closed', '1')
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], 'c')
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
  grant = tonumber(ARGV[4])
  if cap > 0 then grant = math.max(0, math.min(grant, room - more)) end
  if grant > 0 then redis.call('HSET', KEYS[5], ARGV[1], grant) end
end
if pushed > 0 and n == 0 then redis.call('PUBLISH', ARGV[3], 'r') end
if held > covered then
  if closed then redis.call('PUBLISH', ARGV[3], 'c') elseif cap > 0 then redis.call('PUBLISH', ARGV[3], 's') end
end
local disconnected = 0
if closed then disconnected = 1 end
return {pushed, grant, disconnected}
";

/// KEYS: m q tx rx res. ARGV: member, wake channel, max. Returns {1, msgs} (at least one),
/// {0} empty, {-1} disconnected, {-2} gone, {-3} this process's receiver lease lapsed.
const RECV_BATCH: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {-2, false} end
if not mine(KEYS[4], ARGV[1]) then return {-3, false} end
local v = redis.call('LPOP', KEYS[2], tonumber(ARGV[3]))
if v then
  local cap = tonumber(m[1])
  if cap > 0 then
    local left = redis.call('LLEN', KEYS[2]) + reserved(KEYS[5], KEYS[3])
    if left < cap and left + #v >= cap then redis.call('PUBLISH', ARGV[2], 's') end
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
  redis.call('PUBLISH', ARGV[2], 'c')
  return {-1, false}
end
return {0, false}
";

/// KEYS: m q. ARGV: payload. Puts back a message popped for an `_async` receive whose future
/// was dropped. Returns 1, or -2 when the channel is gone.
const UNPOP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
";

/// KEYS: m q tx rx. ARGV: wake channel. Returns {len, closed (0/1), -2 when gone}.
const STATE: &str = r"
local m = redis.call('HMGET', KEYS[1], 'cap', 'closed')
if not m[1] then return {0, 1, -2} end
local closed = 0
if m[2] == '1' or not alive(KEYS[3]) or not alive(KEYS[4]) then closed = 1 end
return {redis.call('LLEN', KEYS[2]), closed, 0}
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
    state: Script,
    close: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let with = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            create: with(CREATE),
            join: with(JOIN),
            send: with(SEND),
            recv: with(RECV),
            send_batch: with(SEND_BATCH),
            recv_batch: with(RECV_BATCH),
            unpop: Script::new(UNPOP),
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
    wake: String,
    cap: usize,
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

/// One side's registration: its lease is renewed while this lives.
struct Side {
    chan: Arc<Chan>,
    zset: String,
}

impl Drop for Side {
    fn drop(&mut self) {
        if !self.chan.live.unregister(&self.zset) {
            return;
        }
        let chan = self.chan.clone();
        let zset = self.zset.clone();
        conn::run_cleanup(async move {
            let keys = chan.keys();
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
        wake: key(&id, "w"),
        id,
        cap,
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

fn send_invocation<'a>(chan: &'a Chan, payload: &'a [u8]) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().send.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .arg(&chan.live.member)
        .arg(payload)
        .arg(&chan.wake);
    inv
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

async fn send_once(chan: &Chan, payload: &[u8]) -> Result<SendStep, RedisError> {
    if !chan.live.is_ours() {
        chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
        return Ok(SendStep::Disconnected);
    }
    // A forked child using its copy of this side stops counting the other side's copies.
    chan.live.touch(&chan.tx).await;
    let mut c = chan.live.cmd.clone();
    chan.conn.count(1);
    let r: i64 = send_invocation(chan, payload).invoke_async(&mut c).await?;
    Ok(send_step(chan, r))
}

/// [`send_once`] on this thread's synchronous connection; `None` when there is none (inside
/// an async runtime, or it cannot be opened): then call [`send_once`].
fn send_once_direct(chan: &Chan, payload: &[u8]) -> Option<Result<SendStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let r = crate::direct::with(&chan.conn, |c| {
        send_invocation(chan, payload).invoke::<i64>(c)
    })?;
    chan.conn.count(1);
    Some(r.map(|r| send_step(chan, r)))
}

/// [`send_once_direct`] from the wait loop of a blocking call (inside the crate's `block_on`).
fn send_once_blocking(chan: &Chan, payload: &[u8]) -> Option<Result<SendStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let r = crate::direct::with_blocking(&chan.conn, |c| {
        send_invocation(chan, payload).invoke::<i64>(c)
    })?;
    chan.conn.count(1);
    Some(r.map(|r| send_step(chan, r)))
}

fn recv_invocation(chan: &Chan) -> redis::ScriptInvocation<'_> {
    let mut inv = scripts().recv.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .arg(&chan.live.member)
        .arg(&chan.wake);
    inv
}

fn recv_step(chan: &Chan, r: (i64, Option<Vec<u8>>)) -> RecvStep {
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

async fn recv_once(chan: &Chan) -> Result<RecvStep, RedisError> {
    if !chan.live.is_ours() {
        chan.fail(chan.live.foreign_error("channel", &chan.id).to_string());
        return Ok(RecvStep::Disconnected);
    }
    // A forked child using its copy of this side stops counting the other side's copies.
    chan.live.touch(&chan.rx).await;
    let mut c = chan.live.cmd.clone();
    chan.conn.count(1);
    let r = recv_invocation(chan).invoke_async(&mut c).await?;
    Ok(recv_step(chan, r))
}

/// [`recv_once`] on this thread's synchronous connection; `None` when there is none.
fn recv_once_direct(chan: &Chan) -> Option<Result<RecvStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let r = crate::direct::with(&chan.conn, |c| recv_invocation(chan).invoke(c))?;
    chan.conn.count(1);
    Some(r.map(|r| recv_step(chan, r)))
}

/// [`recv_once_direct`] from the wait loop of a blocking call (inside the crate's `block_on`).
fn recv_once_blocking(chan: &Chan) -> Option<Result<RecvStep, RedisError>> {
    if !chan.live.direct_ok() {
        return None;
    }
    let r = crate::direct::with_blocking(&chan.conn, |c| recv_invocation(chan).invoke(c))?;
    chan.conn.count(1);
    Some(r.map(|r| recv_step(chan, r)))
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
        let direct = cancel.is_none().then(|| send_once_blocking(chan, payload));
        let r = match direct.flatten() {
            Some(r) => r,
            None => send_once(chan, payload).await,
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
        let direct = cancel.is_none().then(|| recv_once_blocking(chan));
        let r = match direct.flatten() {
            Some(r) => r,
            None => recv_once(chan).await,
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
            // A failure leaves the room reserved until this process's sender lease lapses.
            let _ = send_batch_once(&chan, &field, &[], 0, 0).await;
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
    field: &'a str,
    payloads: &'a [Vec<u8>],
    covered: usize,
    want: usize,
) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().send_batch.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .arg(field)
        .arg(&chan.live.member)
        .arg(&chan.wake)
        .arg(want)
        .arg(covered);
    for p in payloads {
        inv.arg(p.as_slice());
    }
    inv
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
    let r: Vec<i64> = send_batch_invocation(chan, field, payloads, covered, want)
        .invoke_async(&mut c)
        .await?;
    Ok(send_batch_step(chan, &r))
}

/// One round trip of `send_batch`, waiting while the channel is full: pushes `payloads` (the
/// first `covered` into the room `res` holds, the others while there is room) and reserves room
/// for up to `want` more. `(pushed, disconnected)`; `pushed` is short of `payloads.len()` only
/// when the channel is disconnected.
fn send_batch_trip(
    res: &mut Reservation,
    payloads: &[Vec<u8>],
    covered: usize,
    want: usize,
) -> (usize, bool) {
    let chan = &*res.chan;
    // The first attempt on this thread's own connection; waiting on the runtime.
    let direct = chan.live.direct_ok().then(|| {
        crate::direct::with(&chan.conn, |c| {
            send_batch_invocation(chan, &res.field, payloads, covered, want).invoke::<Vec<i64>>(c)
        })
    });
    let (done, full) = match direct.flatten() {
        Some(Ok(r)) => {
            chan.conn.count(1);
            let step = send_batch_step(chan, &r);
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
        let direct = chan.live.direct_ok().then(|| {
            crate::direct::with_blocking(&chan.conn, |c| {
                send_batch_invocation(chan, field, rest, covered, want).invoke::<Vec<i64>>(c)
            })
        });
        let r = match direct.flatten() {
            Some(r) => {
                chan.conn.count(1);
                r.map(|r| send_batch_step(chan, &r))
            }
            None => send_batch_once(chan, field, rest, covered, want).await,
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

fn recv_batch_invocation<'a>(chan: &'a Chan, max: &'a str) -> redis::ScriptInvocation<'a> {
    let mut inv = scripts().recv_batch.key(&chan.meta);
    inv.key(&chan.queue)
        .key(&chan.tx)
        .key(&chan.rx)
        .key(&chan.res)
        .arg(&chan.live.member)
        .arg(&chan.wake)
        .arg(max);
    inv
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
    let mut empty = false;
    // The first attempt on this thread's own connection; waiting on the runtime.
    if chan.live.direct_ok()
        && let Some(r) =
            crate::direct::with(&chan.conn, |c| recv_batch_invocation(chan, &max).invoke(c))
    {
        chan.conn.count(1);
        match r {
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
    block_on(recv_batch_wait(chan, &max, empty))
}

async fn recv_batch_wait(chan: &Chan, max: &str, empty: bool) -> Option<Vec<Vec<u8>>> {
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
        let r: Result<BatchReply, RedisError> = match chan
            .live
            .direct_ok()
            .then(|| {
                crate::direct::with_blocking(&chan.conn, |c| {
                    recv_batch_invocation(chan, max).invoke(c)
                })
            })
            .flatten()
        {
            Some(r) => r,
            None => {
                let mut c = chan.live.cmd.clone();
                recv_batch_invocation(chan, max).invoke_async(&mut c).await
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
        let step = send_once_direct(chan, &payload)
            .unwrap_or_else(|| block_on_short(send_once(chan, &payload)));
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
        let mut full = false;
        let first = match send_once_direct(chan, &payload) {
            Some(Ok(SendStep::Full)) => {
                full = true;
                None
            }
            None => None,
            Some(Ok(step)) => Some(Ok(step)),
            Some(Err(e)) => first_failure(chan, "sending", e, deadline, SendStep::Disconnected),
        };
        let step =
            first.unwrap_or_else(|| block_on(send_wait(chan, &payload, deadline, None, full)));
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
                let (pushed, _) = send_batch_trip(&mut res, &payloads, covered, want);
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
                    send_wait(&side.chan, &payload, None, Some(&cancel), false).await
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
        let step = recv_once_direct(chan).unwrap_or_else(|| block_on_short(recv_once(chan)));
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
        let mut empty = false;
        let first = match recv_once_direct(chan) {
            Some(Ok(RecvStep::Empty)) => {
                empty = true;
                None
            }
            None => None,
            Some(Ok(step)) => Some(Ok(step)),
            Some(Err(e)) => first_failure(chan, "receiving", e, deadline, RecvStep::Disconnected),
        };
        let step = first.unwrap_or_else(|| block_on(recv_wait(chan, deadline, None, empty)));
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
                move |cancel| async move { recv_wait(&side.chan, None, Some(&cancel), false).await },
                // Popped after the caller gave up: put it back at the head, where it was.
                move |step| async move {
                    let chan = &undo_side.chan;
                    if let Ok(RecvStep::Got(bytes)) = step {
                        let mut c = chan.live.cmd.clone();
                        chan.conn.count(1);
                        let _ = scripts()
                            .unpop
                            .key(&chan.meta)
                            .key(&chan.queue)
                            .arg(bytes)
                            .invoke_async::<i64>(&mut c)
                            .await;
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
