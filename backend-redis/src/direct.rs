//! A synchronous connection per thread and server, for the first attempt of the operations
//! called from plain threads.
//!
//! Every operation runs on the crate's runtime through the multiplexed connection, so a call
//! from a plain thread costs two thread hand-offs besides its round trip (caller → the
//! runtime's worker, which drives the connection → caller). A call that does not have to wait
//! (a send with room, a receive with a message queued, any map or list operation that no
//! `update` holds back) instead runs its one script on this thread's own synchronous
//! connection: the round trip alone. Whatever has to wait (for room, for a message, for an
//! update to finish) goes on to the usual wait loop on the runtime, which subscribes to
//! wake-ups.
//!
//! A thread keeps one connection per `Connection` it used, opened on first use and dropped
//! after an error (the next call opens a new one). Inside an async runtime these connections
//! are not used: the call goes to the runtime as before. After a `fork` the child opens its
//! own: the parent's sockets found in the forking thread's state are forgotten, not closed
//! (the parent still uses them).
//!
//! `UNICONC_REDIS_DIRECT=0` in the environment (read once per process) turns these
//! connections off, so that a bench can measure what they save.

use std::cell::RefCell;

use redis::RedisResult;

use crate::conn::Connection;

struct Slot {
    pid: u32,
    conn: Connection,
    sync: redis::Connection,
}

thread_local! {
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's synchronous connection to `conn`'s server. `None` inside an
/// async runtime or when no connection can be opened (the caller takes the runtime's path,
/// which reports and retries as usual). An error from `f` drops the connection.
pub(crate) fn with<R>(
    conn: &Connection,
    f: impl FnOnce(&mut redis::Connection) -> RedisResult<R>,
) -> Option<RedisResult<R>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    with_blocking(conn, f)
}

/// As [`with`], also inside the crate's `block_on`: for the attempts of a blocking call's wait
/// loop, which runs on the caller's own thread (that thread is blocked on the call anyway; the
/// runtime's worker keeps driving the wake-ups meanwhile). Never from a task on a runtime.
pub(crate) fn with_blocking<R>(
    conn: &Connection,
    f: impl FnOnce(&mut redis::Connection) -> RedisResult<R>,
) -> Option<RedisResult<R>> {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *OFF.get_or_init(|| std::env::var("UNICONC_REDIS_DIRECT").is_ok_and(|v| v == "0"))
        || crate::conn::hopped()
    {
        return None;
    }
    SLOTS
        .try_with(|slots| {
            let mut slots = slots.try_borrow_mut().ok()?;
            let pid = std::process::id();
            if slots.iter().any(|s| s.pid != pid) {
                // A forked child: the sockets are the parent's.
                for s in std::mem::take(&mut *slots) {
                    std::mem::forget(s);
                }
            }
            let i = match slots.iter().position(|s| s.conn.ptr_eq(conn)) {
                Some(i) => i,
                None => {
                    slots.push(Slot {
                        pid,
                        conn: conn.clone(),
                        sync: open(conn)?,
                    });
                    slots.len() - 1
                }
            };
            let r = f(&mut slots[i].sync).map_err(|e| {
                if e.is_timeout() {
                    // The socket's read timeout reports `WouldBlock`: say what happened.
                    redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out waiting for the server's reply",
                    ))
                } else {
                    e
                }
            });
            if r.is_err() {
                slots.swap_remove(i);
            }
            Some(r)
        })
        .ok()
        .flatten()
}

fn open(conn: &Connection) -> Option<redis::Connection> {
    let timeout = Connection::response_timeout();
    let client = redis::Client::open(conn.info().clone()).ok()?;
    let c = client.get_connection_with_timeout(timeout).ok()?;
    c.set_read_timeout(Some(timeout)).ok()?;
    c.set_write_timeout(Some(timeout)).ok()?;
    Some(c)
}
