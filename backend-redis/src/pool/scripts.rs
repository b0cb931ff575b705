//! The keys of a task queue and the Lua scripts that move chunks between them. Every change
//! of state is one script, atomic on the server.
//!
//! # Keys of queue `q` (one hash tag, so one cluster slot)
//!
//! - `ucp:{q}:ready`: LIST of chunk ids waiting for an agent.
//! - `ucp:{q}:c:<cid>`: HASH of one chunk: `pool` (the submitting pool's id), `body` (the
//!   encoded requests), `idx` (its task indexes, comma-separated, for the scripts), `n` (how
//!   many times it was delivered), `max` (the pool's `max_deliveries`), `agent` (the agent
//!   holding it now, absent while ready).
//! - `ucp:{q}:taken`: HASH chunk id -> agent id: every chunk held by an agent.
//! - `ucp:{q}:agents`: ZSET agent id -> the server time (ms) its heartbeat lapses.
//! - `ucp:{q}:w`: the channel agents are woken on when chunks become ready.
//! - `ucp:{q}:p:<pool>:alive`: exists while the pool lives (renewed with a TTL); a chunk
//!   whose pool is gone is dropped when claimed.
//! - `ucp:{q}:p:<pool>:out`: LIST of results not yet read by the pool, one entry per chunk
//!   (or per task delivered again alone): `<deliveries>:R<encoded (index, outcome) list>`, or
//!   `<deliveries>:D<indexes>` for "the worker died on every delivery of these tasks".
//! - `ucp:{q}:p:<pool>:w`: the channel the pool is woken on when results arrive.
//!
//! # Invariants
//!
//! - A chunk id is in `ready` or in `taken` (or, briefly, in neither while its chunk hash is
//!   deleted), never both; a chunk hash that is missing when claimed is skipped.
//! - A task may get several results (it was delivered again while its first agent still ran
//!   it): the pool keeps the first that reaches it and drops the others, so each task is
//!   reported once.
//! - `n` grows by one per claim; a chunk whose holder lapsed is put back while `n < max`,
//!   else its tasks are reported `D` (worker died).

use std::sync::OnceLock;

use redis::Script;

/// The keys of one queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    /// `ucp:{q}:`: the prefix of every key of the queue.
    pub(crate) prefix: String,
    pub(crate) ready: String,
    pub(crate) taken: String,
    pub(crate) agents: String,
    pub(crate) wake: String,
}

impl QueueKeys {
    pub(crate) fn new(queue: &str) -> Self {
        let prefix = format!("ucp:{{{queue}}}:");
        Self {
            ready: format!("{prefix}ready"),
            taken: format!("{prefix}taken"),
            agents: format!("{prefix}agents"),
            wake: format!("{prefix}w"),
            prefix,
        }
    }

    /// The prefix of pool `pool`'s keys (`alive`, `out`, `w` follow).
    pub(crate) fn pool(&self, pool: &str) -> String {
        format!("{}p:{pool}:", self.prefix)
    }
}

/// Checks a queue name: it goes inside a hash tag, so no braces; not empty.
pub(crate) fn check_queue_name(queue: &str) -> Result<(), uniconc_core::Error> {
    if queue.is_empty() || queue.contains(['{', '}']) || queue.len() > 200 {
        return Err(uniconc_core::Error::invalid_argument(format!(
            "redis pool: the queue name `{queue}` is not usable: it must be 1 to 200 \
             characters, without `{{` or `}}`"
        )));
    }
    Ok(())
}

/// The server time in ms, and the shared helpers of the scripts.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Pushes one result entry for pool `pk` (its key prefix).
local function record(pk, n, payload, ttl)
  redis.call('RPUSH', pk .. 'out', n .. ':' .. payload)
  redis.call('PEXPIRE', pk .. 'out', ttl)
  redis.call('PUBLISH', pk .. 'w', 'r')
end
-- A chunk whose holder is gone: back to `ready`, or failed once delivered `max` times.
local function requeue(prefix, ready, cid, ttl)
  local ck = prefix .. 'c:' .. cid
  local v = redis.call('HMGET', ck, 'n', 'max', 'pool', 'idx')
  if not v[1] then return end
  local n, max = tonumber(v[1]), tonumber(v[2])
  if n >= max then
    record(prefix .. 'p:' .. v[3] .. ':', n, 'D' .. v[4], ttl)
    redis.call('DEL', ck)
  else
    redis.call('HDEL', ck, 'agent')
    redis.call('LPUSH', ready, cid)
    redis.call('PUBLISH', prefix .. 'w', 'c')
  end
end
";

/// KEYS: ready, taken, agents. ARGV: prefix, result ttl ms.
/// Removes the agents whose heartbeat lapsed and puts their chunks back. Returns how many
/// chunks it put back or failed.
const REAP: &str = r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #dead == 0 then return 0 end
local gone = {}
for _, d in ipairs(dead) do
  gone[d] = true
  redis.call('ZREM', KEYS[3], d)
end
local all = redis.call('HGETALL', KEYS[2])
local moved = 0
for i = 1, #all, 2 do
  if gone[all[i + 1]] then
    redis.call('HDEL', KEYS[2], all[i])
    requeue(ARGV[1], KEYS[1], all[i], tonumber(ARGV[2]))
    moved = moved + 1
  end
end
return moved
";

/// KEYS: agents. ARGV: agent, lease ms. The heartbeat: 1.
const BEAT: &str = r"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS: agents. ARGV: agent. An agent that stops: its heartbeat lapses now (its chunks go
/// back on the next reap).
const LEAVE: &str = r"
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
";

/// KEYS: ready, taken, agents. ARGV: prefix, agent, lease ms.
/// Claims the next ready chunk of a live pool: `{cid, n, max, pool, body, idx}`, or nil.
const CLAIM: &str = r"
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
while true do
  local cid = redis.call('LPOP', KEYS[1])
  if not cid then return false end
  local ck = ARGV[1] .. 'c:' .. cid
  local pool = redis.call('HGET', ck, 'pool')
  if pool then
    if redis.call('EXISTS', ARGV[1] .. 'p:' .. pool .. ':alive') == 1 then
      local n = redis.call('HINCRBY', ck, 'n', 1)
      redis.call('HSET', ck, 'agent', ARGV[2])
      redis.call('HSET', KEYS[2], cid, ARGV[2])
      local v = redis.call('HMGET', ck, 'max', 'body', 'idx')
      return {cid, n, tonumber(v[1]), pool, v[2], v[3]}
    end
    redis.call('DEL', ck)
  end
end
";

/// KEYS: ready. ARGV: prefix, pool, max deliveries, alive ttl ms, then triples
/// (cid, idx list, body). Queues chunks of a live pool: 1, or 0 if the pool is gone.
const SUBMIT: &str = r"
local pk = ARGV[1] .. 'p:' .. ARGV[2] .. ':'
if redis.call('EXISTS', pk .. 'alive') == 0 then return 0 end
for i = 5, #ARGV, 3 do
  redis.call('HSET', ARGV[1] .. 'c:' .. ARGV[i], 'pool', ARGV[2], 'idx', ARGV[i + 1],
    'body', ARGV[i + 2], 'n', 0, 'max', ARGV[3])
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('PUBLISH', ARGV[1] .. 'w', 'c')
return 1
";

/// KEYS: alive. ARGV: ttl ms, `create` (1: create it; 0: renew it only if it exists).
/// Returns 1 if the key is there now, 0 if it had lapsed (and stays gone).
const ALIVE: &str = r"
if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
";

/// KEYS: ready, taken. ARGV: prefix, agent, cid, pool, n, max, result ttl ms, the encoded
/// results (empty: none), then k, then k triples (new cid, idx, body) of tasks whose worker
/// died: delivered again alone, or reported `D` once delivered `max` times.
/// Records a chunk's results and releases the chunk. Returns 1.
const COMPLETE: &str = r"
local prefix, agent, cid, pool = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n, max, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local pk = prefix .. 'p:' .. pool .. ':'
if redis.call('EXISTS', pk .. 'alive') == 1 then
  if ARGV[8] ~= '' then record(pk, n, 'R' .. ARGV[8], ttl) end
  local k = tonumber(ARGV[9])
  local died = {}
  for i = 0, k - 1 do
    local ncid, idx, body = ARGV[10 + 3 * i], ARGV[11 + 3 * i], ARGV[12 + 3 * i]
    if n >= max then
      died[#died + 1] = idx
    else
      redis.call('HSET', prefix .. 'c:' .. ncid, 'pool', pool, 'idx', idx, 'body', body,
        'n', n, 'max', max)
      redis.call('RPUSH', KEYS[1], ncid)
      redis.call('PUBLISH', prefix .. 'w', 'c')
    end
  end
  if #died > 0 then record(pk, n, 'D' .. table.concat(died, ','), ttl) end
end
if redis.call('HGET', KEYS[2], cid) == agent then redis.call('HDEL', KEYS[2], cid) end
redis.call('DEL', prefix .. 'c:' .. cid)
return 1
";

/// KEYS: out. ARGV: how many. Pops up to that many results.
const TAKE: &str = r"
return redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
";

/// KEYS: alive, out. ARGV: prefix, then the pool's chunk ids still queued.
/// A pool that ends: its keys and its queued chunks are deleted (agents skip missing chunks).
const DROP_POOL: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
for i = 2, #ARGV do redis.call('DEL', ARGV[1] .. 'c:' .. ARGV[i]) end
return 1
";

/// The scripts, loaded once per process.
pub(crate) struct Scripts {
    pub(crate) reap: Script,
    pub(crate) beat: Script,
    pub(crate) leave: Script,
    pub(crate) claim: Script,
    pub(crate) submit: Script,
    pub(crate) alive: Script,
    pub(crate) complete: Script,
    pub(crate) take: Script,
    pub(crate) drop_pool: Script,
}

pub(crate) fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let with = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            reap: with(REAP),
            beat: with(BEAT),
            leave: Script::new(LEAVE),
            claim: with(CLAIM),
            submit: Script::new(SUBMIT),
            alive: Script::new(ALIVE),
            complete: with(COMPLETE),
            take: Script::new(TAKE),
            drop_pool: Script::new(DROP_POOL),
        }
    })
}
