//! Handles that travel: the serde form of `Sender`, `Receiver`, `Lock`, `Semaphore`, `Event`
//! and `Barrier`, so that a handle sent through a channel, stored in a `Map` or returned from a
//! task works where it lands, in any process that reaches the server.
//!
//! # The bytes
//!
//! A handle is written as its server's URL (without the password), its kind (`"a sender"`),
//! its element type (`std::any::type_name`, for a channel half), the object's id and the name
//! of an *in-flight hold*. The receiving process uses a connection of its own to that server:
//! one it already has (the default connection, or any opened with `connect`, so a connection
//! with credentials is found when one was opened first), else one opened from the URL in the
//! bytes (which carry no password).
//!
//! # A handle in flight
//!
//! Serializing adds an in-flight hold to the object: one more member of its lease set (the
//! channel side's, for a channel half), `<the serializing process's member>~<random>`, whose
//! lease the serializing process renews as it renews its own. So the object counts the handle
//! while it is in flight: a channel whose only sender is inside a message stays connected.
//!
//! The first deserialization takes the hold over, in one script: it removes the in-flight
//! member and adds the deserializing process's own. A later deserialization of the same bytes
//! (or one after the hold lapsed) finds the hold gone and gives one more clone while the
//! object has a live holder of that side, as on the process backend; with none left, it fails
//! (`NotFound`: nothing is brought back from the dead). Bytes dropped unread leave their hold
//! to the serializing process: a child started by `Redis::spawn` gives its holds up when its
//! code ends, any other process when it is killed or exits, one [`LEASE`] later at most.
//!
//! A serializer's size pass (bincode's `SizeWriter`, as `uniconc`'s codec and this crate's
//! `Map` use before they write) registers nothing: it sizes bytes of the same length.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use redis::Script;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uniconc_core::Error;

use crate::conn::{
    self, Connection, IDLE_TTL, LEASE, Live, block_on_short, key, ms, random_u64, redis_error,
};

/// What a travelling handle's bytes say.
#[derive(Serialize, Deserialize)]
struct Wire {
    server: String,
    kind: String,
    ty: String,
    id: String,
    flight: String,
}

/// A handle type's travel form: what it is, and where its lease set is.
pub(crate) struct Kind {
    /// `"a sender"`, `"a lock"`, ...
    pub(crate) name: &'static str,
    /// The element type (`type_name`), `""` for none.
    pub(crate) ty: &'static str,
    /// The object's key holding its lease set: `tx`, `rx` or `h`.
    pub(crate) part: &'static str,
    /// A field of the object's hash the receiving side needs (`cap`, `n`), `""` for none.
    pub(crate) field: &'static str,
    /// Every lease set of the object (the object is deleted when all are empty).
    pub(crate) zsets: &'static [&'static str],
    /// Every key of the object, for the idle TTL and the clean-up.
    pub(crate) keys: &'static [&'static str],
}

/// The handle being serialized: its connection and object.
pub(crate) struct Held<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) live: &'a Arc<Live>,
    pub(crate) id: &'a str,
}

/// The handle taken over by a deserialization: the caller builds it (and registers it for
/// lease renewal: the script has already added this process's member).
pub(crate) struct Arrived {
    pub(crate) conn: Connection,
    pub(crate) live: Arc<Live>,
    pub(crate) id: String,
    /// The value of [`Kind::field`], if asked for.
    pub(crate) field: Option<String>,
}

/// KEYS: m, the lease set. ARGV: the in-flight member, lease ms. 1, or -2 when the object is
/// gone.
const ADD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS: m, the lease set. ARGV: the in-flight member, this process's member, lease ms, a
/// field of m (`''`: none). Returns {1, field} when the hold was taken over, {2, field} for a
/// clone (the hold gone, the side still held), {0} when nothing holds that side, {-2} when the
/// object is gone.
const TAKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, false} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
local status = 1
if not s or tonumber(s) <= now then
  if s then redis.call('ZREM', KEYS[2], ARGV[1]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) == 0 then return {0, false} end
  status = 2
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
local v = false
if ARGV[4] ~= '' then v = redis.call('HGET', KEYS[1], ARGV[4]) end
return {status, v}
";

/// KEYS: the lease set, then the object's keys. ARGV: the in-flight member, lease ms, idle TTL
/// ms. Renews a hold not taken over yet: 1, or 0 when it is gone (taken over, or lapsed).
const RENEW: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
";

fn script(cell: &'static OnceLock<Script>, body: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(body))
}

/// One hold in flight, renewed by this process until it is taken over.
struct Flight {
    live: Arc<Live>,
    conn: Connection,
    zset: String,
    keys: Vec<String>,
    wake: String,
    zsets: Vec<String>,
}

/// This process's holds in flight by member, tagged with the process id (a forked child finds
/// its parent's table and starts its own: the parent's holds are the parent's to renew).
type Flights = Option<(u32, HashMap<String, Flight>)>;
static FLIGHTS: Mutex<Flights> = Mutex::new(None);

fn with_flights<R>(f: impl FnOnce(&mut HashMap<String, Flight>) -> R) -> R {
    let mut slot = FLIGHTS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if slot.as_ref().is_none_or(|(p, _)| *p != pid) {
        if let Some((_, parents)) = slot.take() {
            // The parent's entries hold the parent's connections: not dropped here.
            std::mem::forget(parents);
        }
        *slot = Some((pid, HashMap::new()));
        conn::runtime().spawn(renew_flights());
    }
    let (_, map) = slot.as_mut().expect("set above");
    f(map)
}

/// Renews this process's holds in flight every `LEASE / 4`, forgetting those taken over.
async fn renew_flights() {
    static S: OnceLock<Script> = OnceLock::new();
    loop {
        tokio::time::sleep(LEASE / 4).await;
        let round: Vec<(String, Arc<Live>, String, Vec<String>)> = with_flights(|m| {
            m.iter()
                .map(|(member, f)| {
                    (
                        member.clone(),
                        f.live.clone(),
                        f.zset.clone(),
                        f.keys.clone(),
                    )
                })
                .collect()
        });
        let mut tasks = tokio::task::JoinSet::new();
        for (member, live, zset, keys) in round {
            tasks.spawn(async move {
                let mut c = live.cmd.clone();
                let mut inv = script(&S, RENEW).key(&zset);
                for k in &keys {
                    inv.key(k);
                }
                let r = inv
                    .arg(&member)
                    .arg(ms(LEASE))
                    .arg(ms(IDLE_TTL))
                    .invoke_async::<i64>(&mut c)
                    .await;
                // A failure is retried next round (the hold lapses if the outage lasts).
                (member, matches!(r, Ok(0)))
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((member, true)) = done {
                with_flights(|m| m.remove(&member));
            }
        }
    }
}

/// Gives up every hold this process still has in flight (bytes never read): what a child
/// started by `Redis::spawn` does when its code ends. Best effort: a hold not given up lapses
/// one [`LEASE`] later.
pub(crate) fn release_flights() {
    // Not through `with_flights`: a process that never serialized a handle starts nothing.
    let all: Vec<(String, Flight)> = match &mut *FLIGHTS.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((pid, m)) if *pid == std::process::id() => m.drain().collect(),
        _ => return,
    };
    if all.is_empty() {
        return;
    }
    block_on_short(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (member, f) in all {
            tasks.spawn(async move {
                // As a handle's drop gives up its lease.
                f.conn.count(1);
                let _ = f
                    .live
                    .leave_as(&member, &f.zset, &f.keys, &f.wake, &f.zsets)
                    .await;
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// The URL the bytes name: the connection's server and database, without the password.
fn public_url(conn: &Connection) -> String {
    let info = conn.info();
    let user = info
        .redis
        .username
        .as_deref()
        .map_or(String::new(), |u| format!("{u}@"));
    let db = info.redis.db;
    match &info.addr {
        redis::ConnectionAddr::Tcp(h, p) => format!("redis://{user}{h}:{p}/{db}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{user}{host}:{port}/{db}")
        }
        redis::ConnectionAddr::Unix(path) => {
            format!("redis+unix://{}?db={db}", path.display())
        }
    }
}

/// A connection of this process to `url`'s server, or a new one (kept for the next handle).
fn connection_for(url: &str) -> Result<Connection, Error> {
    static OPENED: Mutex<Vec<Connection>> = Mutex::new(Vec::new());
    if let Some(c) = conn::connections()
        .into_iter()
        .find(|c| public_url(c) == url)
    {
        return Ok(c);
    }
    if let Ok(c) = crate::default_connection()
        && public_url(&c) == url
    {
        return Ok(c);
    }
    let c = crate::connect(url)?;
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(c.clone());
    Ok(c)
}

fn object_keys(id: &str, parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| key(id, p)).collect()
}

/// Writes `held` as a travelling handle of kind `kind`, holding it in flight (see the module
/// docs).
pub(crate) fn serialize<S: Serializer>(
    s: S,
    kind: &Kind,
    held: Held<'_>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    static S_ADD: OnceLock<Script> = OnceLock::new();
    let member = &held.live.member;
    // A size pass writes nothing anywhere: bytes of the same length, and no hold.
    let sizing = std::any::type_name::<S>().contains("SizeWriter");
    let flight = format!("{member}~{:016x}", if sizing { 0 } else { random_u64() });
    if !sizing {
        if !held.live.is_ours() {
            return Err(S::Error::custom(
                held.live.foreign_error(kind.name, held.id),
            ));
        }
        let meta = key(held.id, "m");
        let zset = key(held.id, kind.part);
        held.conn.count(1);
        let r = block_on_short(async {
            let mut c = held.live.cmd.clone();
            script(&S_ADD, ADD)
                .key(&meta)
                .key(&zset)
                .arg(&flight)
                .arg(ms(LEASE))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .map_err(|e| S::Error::custom(redis_error("sending a handle", e)))?;
        if r != 1 {
            return Err(S::Error::custom(conn::gone_error(kind.name, held.id)));
        }
        let f = Flight {
            live: held.live.clone(),
            conn: held.conn.clone(),
            zset,
            keys: object_keys(held.id, kind.keys),
            wake: key(held.id, "w"),
            zsets: object_keys(held.id, kind.zsets),
        };
        with_flights(|m| m.insert(flight.clone(), f));
    }
    Wire {
        server: public_url(held.conn),
        kind: kind.name.to_owned(),
        ty: kind.ty.to_owned(),
        id: held.id.to_owned(),
        flight,
    }
    .serialize(s)
}

/// Reads a travelling handle of kind `kind` and takes its hold over (see the module docs).
///
/// # Errors
///
/// (As the deserializer's custom errors.) A handle of another kind or element type
/// (incompatible: nothing is taken); the object gone, or no holder of that side left (not
/// found); the server unreachable.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    d: D,
    kind: &Kind,
) -> Result<Arrived, D::Error> {
    use serde::de::Error as _;
    let wire = Wire::deserialize(d)?;
    take(wire, kind).map_err(D::Error::custom)
}

fn take(wire: Wire, kind: &Kind) -> Result<Arrived, Error> {
    static S_TAKE: OnceLock<Script> = OnceLock::new();
    if wire.kind != kind.name || wire.ty != kind.ty {
        return Err(Error::incompatible(format!(
            "redis: a travelling handle of {} `{}` was read as {} `{}`",
            wire.kind, wire.ty, kind.name, kind.ty
        )));
    }
    if wire.id.is_empty() || !wire.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_argument(format!(
            "redis: `{}` in a travelling handle is not an object id",
            wire.id
        )));
    }
    let conn = connection_for(&wire.server)?;
    let live = conn.live()?;
    conn.count(1);
    let (status, field): (i64, Option<String>) = block_on_short(async {
        let mut c = live.cmd.clone();
        script(&S_TAKE, TAKE)
            .key(key(&wire.id, "m"))
            .key(key(&wire.id, kind.part))
            .arg(&wire.flight)
            .arg(&live.member)
            .arg(ms(LEASE))
            .arg(kind.field)
            .invoke_async(&mut c)
            .await
    })
    .map_err(|e| redis_error("receiving a handle", e))?;
    match status {
        1 | 2 => Ok(Arrived {
            conn,
            live,
            id: wire.id,
            field,
        }),
        0 => Err(Error::not_found(format!(
            "redis: the travelling handle to {} `{}` was already taken and no holder of it \
             is left",
            kind.name, wire.id
        ))),
        _ => Err(Error::not_found(format!(
            "redis: {} `{}` of a travelling handle no longer exists",
            kind.name, wire.id
        ))),
    }
}

/// The serde impls of a handle that is one [`Object`](crate::object::Object) behind an `Arc` (a lock,
/// semaphore or event, `$what` as `plain` takes it): it travels as the same object, held in
/// flight as the module docs say.
macro_rules! one_object_travels {
    ($ty:ident, $what:literal) => {
        /// A travelling handle: sent through a channel, stored in a `Map` or returned from a
        /// task, it is the same object where it lands, in any process that reaches the server
        /// (see `uniconc::Backend::TRAVEL` for the rule of a handle in flight).
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                const KIND: $crate::travel::Kind = $crate::travel::plain($what, false);
                let o = &self.shared;
                let held = $crate::travel::Held {
                    conn: &o.conn,
                    live: &o.live,
                    id: &o.id,
                };
                $crate::travel::serialize(s, &KIND, held)
            }
        }

        /// Takes over the handle in flight (see `Serialize`).
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const KIND: $crate::travel::Kind = $crate::travel::plain($what, false);
                let a = $crate::travel::deserialize(d, &KIND)?;
                Ok(Self {
                    shared: std::sync::Arc::new($crate::object::Object::adopted(
                        &a.conn, a.live, &a.id, false,
                    )),
                })
            }
        }
    };
}
pub(crate) use one_object_travels;

/// The travel form of a lock, semaphore or event (`name`): one lease set `h`.
pub(crate) const fn plain(name: &'static str, data: bool) -> Kind {
    Kind {
        name,
        ty: "",
        part: "h",
        field: "",
        zsets: &["h"],
        keys: if data { &["m", "h", "d"] } else { &["m", "h"] },
    }
}

/// The travel form of a channel half of element type `ty`.
pub(crate) fn channel_half(sender: bool, ty: &'static str) -> Kind {
    Kind {
        name: if sender { "a sender" } else { "a receiver" },
        ty,
        part: if sender { "tx" } else { "rx" },
        field: "cap",
        zsets: &["tx", "rx"],
        keys: &crate::channel::PARTS,
    }
}
