//! What every leased object but a channel (a lock, event, semaphore, barrier) keeps per handle:
//! its keys, and the clean-up when the last handle in this process is dropped.
//!
//! Keys (`uc:{<id>}:…`): `m`, the object's hash; `h`, the sorted set of the processes holding
//! a handle, scored with their leases' expiry; `w`, the wake-up channel; `d`, the data of a
//! `Value` or `Array` (on its lock only).

use std::sync::Arc;

use redis::Script;
use uniconc_core::Error;

use crate::conn::{self, Connection, LEASE, Live, block_on_short, key, ms, redis_error};

/// One object's connection and keys, shared by its clones in this process. Dropping it
/// leaves the object (the last process to leave deletes its keys) and forgets the wake-up
/// subscription.
pub(crate) struct Object {
    pub(crate) conn: Connection,
    pub(crate) live: Arc<Live>,
    pub(crate) id: String,
    pub(crate) meta: String,
    pub(crate) handles: String,
    pub(crate) wake: String,
    /// The data key of a `Value` or `Array` built on this lock (`uc:{<id>}:d`): kept alive and
    /// deleted with the lock's own keys.
    pub(crate) data: Option<String>,
}

impl Object {
    /// The keys of object `id` (no data key), on `conn`.
    pub(crate) fn new(conn: &Connection, live: Arc<Live>, id: String) -> Self {
        Self {
            conn: conn.clone(),
            live,
            meta: key(&id, "m"),
            handles: key(&id, "h"),
            wake: key(&id, "w"),
            data: None,
            id,
        }
    }

    /// A new object on `conn`: runs its `create` script (KEYS: m h; ARGV: `extra` if any, the
    /// member, the lease and the idle TTL in ms) and registers the handle for lease renewal.
    /// `what` names the object in an error ("an event").
    pub(crate) fn create(
        conn: &Connection,
        create: &Script,
        extra: Option<usize>,
        what: &str,
    ) -> Result<Self, Error> {
        let live = conn.live()?;
        let object = Self::new(conn, live.clone(), conn::new_id());
        conn.count(1);
        block_on_short(async {
            let mut c = live.cmd.clone();
            let mut inv = create.key(&object.meta);
            inv.key(&object.handles);
            if let Some(n) = extra {
                inv.arg(n);
            }
            inv.arg(&live.member)
                .arg(ms(LEASE))
                .arg(ms(conn::IDLE_TTL))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .map_err(|e| redis_error(&format!("creating {what}"), e))?;
        live.register(&object.handles, &object.lease_keys());
        Ok(object)
    }

    /// The keys whose TTL the lease renewer refreshes.
    pub(crate) fn lease_keys(&self) -> Vec<String> {
        let mut keys = vec![self.meta.clone(), self.handles.clone()];
        keys.extend(self.data.clone());
        keys
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if !self.live.unregister(&self.handles) {
            return;
        }
        let live = self.live.clone();
        let keys = self.lease_keys();
        let zsets = [self.handles.clone()];
        let (handles, wake) = (self.handles.clone(), self.wake.clone());
        self.conn.count(1);
        conn::run_cleanup(async move {
            // A failure leaves the keys to their idle TTL.
            let _ = live.leave(&handles, &keys, &wake, &zsets).await;
            live.forget_waker(&wake).await;
        });
    }
}

/// KEYS: m h. ARGV: member, lease ms, a field of `m` to read (`""`: none). Joins the object:
/// `{1, the field's value}`, or `{-2, false}` when it is gone.
const JOIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, false} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
local v = false
if ARGV[3] ~= '' then v = redis.call('HGET', KEYS[1], ARGV[3]) end
return {1, v}
";

impl Object {
    /// Joins the existing object `id` (a lock, event, semaphore or barrier; `data`: with its
    /// data key) as one more handle of this process, and reads `field` of its hash (`""`:
    /// none). `what` names the object in an error ("an event").
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a malformed id; `Closed` when the object is gone; `Os` when the
    /// server cannot be reached.
    pub(crate) fn open(
        conn: &Connection,
        id: &str,
        data: bool,
        field: &str,
        what: &str,
    ) -> Result<(Self, Option<String>), Error> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_argument(format!(
                "`{id}` is not the id of {what} (the hexadecimal string from its `id()`)"
            )));
        }
        static S: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
        let live = conn.live()?;
        conn.count(1);
        let (status, value): (i64, Option<String>) = block_on_short(async {
            let mut c = live.cmd.clone();
            S.get_or_init(|| Script::new(JOIN))
                .key(key(id, "m"))
                .key(key(id, "h"))
                .arg(&live.member)
                .arg(ms(LEASE))
                .arg(field)
                .invoke_async(&mut c)
                .await
        })
        .map_err(|e| redis_error(&format!("opening {what}"), e))?;
        if status != 1 {
            return Err(conn::gone_error(what, id));
        }
        Ok((Self::adopted(conn, live, id, data), value))
    }

    /// The object `id` joined by a script that already added this process's member to its
    /// lease set (a travelling handle taken over): registers the handle for lease renewal.
    pub(crate) fn adopted(conn: &Connection, live: Arc<Live>, id: &str, data: bool) -> Self {
        let mut object = Self::new(conn, live.clone(), id.to_owned());
        if data {
            object.data = Some(key(id, "d"));
        }
        live.register(&object.handles, &object.lease_keys());
        object
    }
}
