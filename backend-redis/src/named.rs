//! Named objects: `Redis::named("jobs").channel(100)` creates or opens the object under a name
//! on the default connection's server, so a program started on another machine finds it by
//! name (the `named` module of `uniconc` for the modes and checks).
//!
//! # Keys
//!
//! A name is a hash `uc:name:{<name>}` (one hash tag per name: a slot of its own in a
//! cluster): `id`, the object's id; `kind` (`"a channel"`, `"a lock"`, ...); `ty`, the element
//! type (`std::any::type_name`: a channel's message type, a value's, a map's `(K, V)`); `shape`,
//! the capacity (`u64::MAX` for an unbounded channel), length or number of parties (0 where
//! none). It carries no TTL: it lives until [`unlink`].
//!
//! A named object is created as an unnamed one, then bound to the name by one script that
//! sets the name only if it is free (two creators racing: one binds, the other drops its new
//! object and opens the winner's). Once bound, the name *pins* the object: a member `name:<name>`
//! with an infinite lease joins the object's lease sets, so the object outlives the processes
//! that use it. Every script touches the keys of one slot (the name's, or the object's).
//!
//! # Lifetime
//!
//! A name lives until [`unlink`] removes it (whoever created it, whether or not the processes
//! that used it exited or were killed): unlinking removes the name and its pin; handles
//! already open keep working, and the object is deleted when the last of them is gone. As
//! for every object, the keys expire after [`IDLE_TTL`](crate::IDLE_TTL) when no process
//! holds a handle to renew them; a name whose object is gone that way (or lost by a server
//! restarted without persistence) counts as free: `existing()` reports `NotFound`, the other
//! modes create a new object. Nothing opened under a name is an object nobody holds.
//!
//! Like the thread and tokio backends' names, the pin holds a sender and a receiver of a named
//! channel: it stays connected while the name exists, whatever its peers do, and disconnects
//! as an unnamed one once the name is unlinked and the last handles are gone.
//!
//! A byte budget asked for a named channel is accepted within the codec's limit and has no
//! effect here (messages are Redis strings, not a ring of fixed size).

use std::hash::Hash;
use std::sync::OnceLock;

use redis::Script;
use uniconc_core::{Error, ErrorKind, Message, Name, OpenMode, Plain};

use crate::conn::{self, Connection, block_on_short, key, redis_error};
use crate::{Array, Barrier, Event, List, Lock, Map, Receiver, Semaphore, Sender, Value};

/// What a name records and an opener must match.
struct Spec {
    kind: &'static str,
    ty: &'static str,
    shape: u64,
}

/// A name's record.
struct Record {
    id: String,
    kind: String,
    ty: String,
    shape: u64,
}

/// KEYS: the name. ARGV: id, kind, type, shape. 1 bound, 0 the name is taken.
const BIND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'ty', ARGV[3], 'shape', ARGV[4])
return 1
";

/// KEYS: the name. ARGV: id. Deletes the name if it still names object `id`: 1, else 0.
const DROP_IF: &str = r"
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// KEYS: m, then the object's lease sets. ARGV: the pin member. Adds the pin, whose lease never
/// lapses, to every lease set: 1, or -2 when the object is gone.
const PIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], '+inf', ARGV[1]) end
return 1
";

/// KEYS: the object's lease sets (ARGV[3] of them), then every key of the object. ARGV: the
/// pin member, the wake channel, the number of lease sets. Removes the pin as a handle's drop
/// leaves: the object is deleted when no lease is left, and its waiters are woken.
const UNPIN: &str = r"
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local any = 0
for i = 1, n do
  redis.call('ZREM', KEYS[i], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  any = any + redis.call('ZCARD', KEYS[i])
end
if any == 0 then
  for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
end
redis.call('PUBLISH', ARGV[2], 'l')
return any
";

fn script(cell: &'static OnceLock<Script>, body: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(body))
}

fn name_key(name: &str) -> String {
    format!("uc:name:{{{name}}}")
}

fn pin_member(name: &str) -> String {
    format!("name:{name}")
}

/// The lease sets and every key of an object of kind `kind`.
fn layout(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    if kind == "a channel" {
        (&["tx", "rx"], &crate::channel::PARTS)
    } else {
        (&["h"], &["m", "h", "d"])
    }
}

/// Runs one command or script on the server, counted.
fn run<T: redis::FromRedisValue + Send>(
    conn: &Connection,
    doing: &str,
    inv: redis::ScriptInvocation<'_>,
) -> Result<T, Error> {
    let live = conn.live()?;
    conn.count(1);
    block_on_short(async {
        let mut c = live.cmd.clone();
        inv.invoke_async(&mut c).await
    })
    .map_err(|e| redis_error(doing, e))
}

fn read(conn: &Connection, name: &str) -> Result<Option<Record>, Error> {
    let live = conn.live()?;
    conn.count(1);
    let (id, kind, ty, shape): (Option<String>, Option<String>, Option<String>, Option<u64>) =
        block_on_short(async {
            let mut c = live.cmd.clone();
            redis::cmd("HMGET")
                .arg(name_key(name))
                .arg("id")
                .arg("kind")
                .arg("ty")
                .arg("shape")
                .query_async(&mut c)
                .await
        })
        .map_err(|e| redis_error("reading a name", e))?;
    Ok(id.map(|id| Record {
        id,
        kind: kind.unwrap_or_default(),
        ty: ty.unwrap_or_default(),
        shape: shape.unwrap_or(0),
    }))
}

fn drop_if(conn: &Connection, name: &str, id: &str) -> Result<bool, Error> {
    static S: OnceLock<Script> = OnceLock::new();
    let mut inv = script(&S, DROP_IF).prepare_invoke();
    inv.key(name_key(name)).arg(id);
    Ok(run::<i64>(conn, "removing a name", inv)? == 1)
}

fn object_exists(conn: &Connection, id: &str) -> Result<bool, Error> {
    let live = conn.live()?;
    conn.count(1);
    block_on_short(async {
        let mut c = live.cmd.clone();
        redis::cmd("EXISTS")
            .arg(key(id, "m"))
            .query_async::<i64>(&mut c)
            .await
    })
    .map(|n| n == 1)
    .map_err(|e| redis_error("reading a named object", e))
}

fn unpin(conn: &Connection, name: &str, id: &str, kind: &str) -> Result<(), Error> {
    static S: OnceLock<Script> = OnceLock::new();
    let (zsets, keys) = layout(kind);
    let mut inv = script(&S, UNPIN).prepare_invoke();
    for z in zsets {
        inv.key(key(id, z));
    }
    for k in keys {
        inv.key(key(id, k));
    }
    inv.arg(pin_member(name)).arg(key(id, "w")).arg(zsets.len());
    run::<i64>(conn, "unpinning a named object", inv).map(drop)
}

/// Binds `name` to the new object `id` and pins it: `false` if the name was taken first.
fn bind(conn: &Connection, name: &str, id: &str, spec: &Spec) -> Result<bool, Error> {
    static B: OnceLock<Script> = OnceLock::new();
    static P: OnceLock<Script> = OnceLock::new();
    let mut inv = script(&B, BIND).prepare_invoke();
    inv.key(name_key(name))
        .arg(id)
        .arg(spec.kind)
        .arg(spec.ty)
        .arg(spec.shape);
    if run::<i64>(conn, "binding a name", inv)? == 0 {
        return Ok(false);
    }
    let (zsets, _) = layout(spec.kind);
    let mut inv = script(&P, PIN).prepare_invoke();
    inv.key(key(id, "m"));
    for z in zsets {
        inv.key(key(id, z));
    }
    inv.arg(pin_member(name));
    match run::<i64>(conn, "pinning a named object", inv) {
        Ok(1) => Ok(true),
        other => {
            // The creator holds the object, so it cannot be gone; a server that failed
            // meanwhile: the name is taken back (best effort: an open finds it dangling).
            let _ = drop_if(conn, name, id);
            Err(match other {
                Err(e) => e,
                Ok(_) => conn::gone_error(spec.kind, id),
            })
        }
    }
}

/// How many times a name that changes under us (created, unlinked, found dangling) is read
/// again before giving up.
const ATTEMPTS: usize = 16;

/// The object named `name`: opened with `open` if it exists (and matches `spec`), else made
/// with `create` and bound (under the id `id` reads from the handle), as `name`'s mode says.
fn open_or_create<H>(
    name: &Name,
    spec: &Spec,
    mut create: impl FnMut(&Connection) -> Result<H, Error>,
    id: impl Fn(&H) -> &str,
    mut open: impl FnMut(&Connection, &str) -> Result<H, Error>,
) -> Result<H, Error> {
    let n = name.as_str();
    uniconc_core::validate::name(n)?;
    let conn = crate::default_connection()?;
    for _ in 0..ATTEMPTS {
        match read(&conn, n)? {
            Some(rec) => {
                if name.mode() == OpenMode::Create {
                    return Err(Error::already_exists(format!(
                        "redis: an object is already named {name}"
                    )));
                }
                check(name, &rec, spec)?;
                match open(&conn, &rec.id) {
                    Ok(h) => return Ok(h),
                    Err(e) if e.kind() == ErrorKind::Closed && !object_exists(&conn, &rec.id)? => {
                        // The object is gone (expired, or lost by the server): the name is free.
                        drop_if(&conn, n, &rec.id)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                if name.mode() == OpenMode::Open {
                    return Err(Error::not_found(format!(
                        "redis: no object is named {name}"
                    )));
                }
                let h = create(&conn)?;
                if bind(&conn, n, id(&h), spec)? {
                    return Ok(h);
                }
                // Another process bound the name first: open its object instead.
                drop(h);
            }
        }
    }
    Err(Error::unsupported(format!(
        "redis: the name {name} changed {ATTEMPTS} times while it was being opened"
    )))
}

fn check(name: &Name, rec: &Record, spec: &Spec) -> Result<(), Error> {
    if rec.kind != spec.kind {
        return Err(Error::incompatible(format!(
            "redis: the named object {name} is {}, not {}",
            rec.kind, spec.kind
        )));
    }
    if rec.ty != spec.ty {
        return Err(Error::incompatible(format!(
            "redis: the named object {name} is of `{}`, not `{}`",
            rec.ty, spec.ty
        )));
    }
    if rec.shape != spec.shape {
        let size = |s: u64| {
            if s == u64::MAX {
                "unbounded".to_owned()
            } else {
                s.to_string()
            }
        };
        return Err(Error::incompatible(format!(
            "redis: the named object {name} has size {}, not {}",
            size(rec.shape),
            size(spec.shape)
        )));
    }
    Ok(())
}

/// See `Backend::named_channel`.
#[allow(clippy::type_complexity)]
pub(crate) fn channel<T: Message>(
    name: &Name,
    capacity: Option<usize>,
    sender: bool,
    receiver: bool,
) -> Result<(Option<Sender<T>>, Option<Receiver<T>>), Error> {
    if let Some(c) = capacity {
        uniconc_core::validate::channel_capacity(c)?;
    }
    let spec = Spec {
        kind: "a channel",
        ty: std::any::type_name::<T>(),
        shape: capacity.map_or(u64::MAX, |c| c as u64),
    };
    let (tx, rx) = open_or_create(
        name,
        &spec,
        |conn| {
            let (tx, rx) = match capacity {
                Some(c) => conn.channel::<T>(c)?,
                None => conn.unbounded::<T>()?,
            };
            Ok((Some(tx), Some(rx)))
        },
        // A channel made here has both halves.
        |(tx, _)| tx.as_ref().map_or("", |tx| tx.id()),
        |conn, id| {
            let tx = sender.then(|| conn.open_sender::<T>(id)).transpose()?;
            let rx = receiver.then(|| conn.open_receiver::<T>(id)).transpose()?;
            Ok((tx, rx))
        },
    )?;
    // Pinned by now: dropping a half not asked for does not disconnect the channel.
    Ok((tx.filter(|_| sender), rx.filter(|_| receiver)))
}

/// See `Backend::named_lock`.
pub(crate) fn lock(name: &Name) -> Result<Lock, Error> {
    let spec = Spec {
        kind: "a lock",
        ty: "",
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.lock(),
        |h| h.id(),
        |conn, id| conn.open_lock(id),
    )
}

/// See `Backend::named_semaphore`.
pub(crate) fn semaphore(name: &Name, permits: usize) -> Result<Semaphore, Error> {
    let spec = Spec {
        kind: "a semaphore",
        ty: "",
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.semaphore(permits),
        |h| h.id(),
        |conn, id| conn.open_semaphore(id),
    )
}

/// See `Backend::named_event`.
pub(crate) fn event(name: &Name) -> Result<Event, Error> {
    let spec = Spec {
        kind: "an event",
        ty: "",
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.event(),
        |h| h.id(),
        |conn, id| conn.open_event(id),
    )
}

/// See `Backend::named_barrier`.
pub(crate) fn barrier(name: &Name, n: usize) -> Result<Barrier, Error> {
    let spec = Spec {
        kind: "a barrier",
        ty: "",
        shape: n as u64,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.barrier(n),
        |h| h.id(),
        |conn, id| conn.open_barrier(id),
    )
}

/// See `Backend::named_value`.
pub(crate) fn value<T: Plain>(name: &Name, value: T) -> Result<Value<T>, Error> {
    let spec = Spec {
        kind: "a value",
        ty: std::any::type_name::<T>(),
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.value(value),
        |h| h.id(),
        |conn, id| conn.open_value(id),
    )
}

/// See `Backend::named_array`.
pub(crate) fn array<T: Plain>(name: &Name, len: usize) -> Result<Array<T>, Error> {
    let spec = Spec {
        kind: "an array",
        ty: std::any::type_name::<T>(),
        shape: len as u64,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.array::<T>(len),
        |h| h.id(),
        |conn, id| conn.open_array(id),
    )
}

/// See `Backend::named_map`.
pub(crate) fn map<K: Message + Hash + Eq, V: Message>(name: &Name) -> Result<Map<K, V>, Error> {
    let spec = Spec {
        kind: "a map",
        ty: std::any::type_name::<(K, V)>(),
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.map::<K, V>(),
        |h| h.id(),
        |conn, id| conn.open_map(id),
    )
}

/// See `Backend::named_list`.
pub(crate) fn list<T: Message>(name: &Name) -> Result<List<T>, Error> {
    let spec = Spec {
        kind: "a list",
        ty: std::any::type_name::<T>(),
        shape: 0,
    };
    open_or_create(
        name,
        &spec,
        |conn| conn.list::<T>(),
        |h| h.id(),
        |conn, id| conn.open_list(id),
    )
}

/// Removes `name` and its pin (see the module docs): `false` if it did not exist.
///
/// # Errors
///
/// `InvalidArgument` for a bad name; `Os` when the server cannot be reached.
pub(crate) fn unlink(name: &str) -> Result<bool, Error> {
    uniconc_core::validate::name(name)?;
    let conn = crate::default_connection()?;
    for _ in 0..ATTEMPTS {
        let Some(rec) = read(&conn, name)? else {
            return Ok(false);
        };
        if drop_if(&conn, name, &rec.id)? {
            unpin(&conn, name, &rec.id, &rec.kind)?;
            return Ok(true);
        }
    }
    Err(Error::unsupported(format!(
        "redis: the name {name:?} changed {ATTEMPTS} times while it was being unlinked"
    )))
}
