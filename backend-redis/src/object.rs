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
