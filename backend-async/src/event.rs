//! [`Event`]: a flag and a [`tokio::sync::Notify`](https://docs.rs/tokio/1/tokio/sync/struct.Notify.html) to wake its waiters.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::{Event as _, JoinHandle as _, WaitError};
//! let ev = uniconc::tokio::event()?;
//! ev.set();
//! ev.clear(); // back to unset: waiters wait again
//! assert_eq!(ev.wait_timeout(Duration::from_millis(1)), Err(WaitError::Timeout));
//! let waiters: Vec<_> = (0..3)
//!     .map(|i| {
//!         let ev = ev.clone();
//!         uniconc::tokio::spawn_async(async move { ev.wait_async().await; i })
//!     })
//!     .collect::<Result<_, _>>()?;
//! ev.set(); // wakes every waiter at once
//! let ids = waiters.into_iter().map(|w| w.join()).collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(ids, [0, 1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::Notify;
use uniconc_core::{Error, WaitError};

use crate::runtime::block_on;

#[derive(Debug)]
struct Inner {
    flag: AtomicBool,
    notify: Notify,
}

/// A flag that units wait on (Python's `Event`); cheap to clone, every clone is the same one.
///
/// ```
/// use uniconc::Event as _;
/// let ev = uniconc::tokio::event()?;
/// let ev2 = ev.clone();
/// let h = std::thread::spawn(move || ev2.wait());
/// ev.set();
/// h.join().unwrap();
/// assert!(ev.is_set());
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    inner: Arc<Inner>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Event, inner);

impl Event {
    async fn wait_inner(&self) {
        {
            // Memory ordering: the waiter creates its `Notified` (which reads `Notify`'s
            // call counter, SeqCst) and then loads the flag; `set` stores the flag and then
            // calls `notify_waiters` (which bumps that counter, SeqCst). With the flag also
            // SeqCst, either the waiter sees the flag, or its `Notified` predates the bump and
            // is woken by it (tokio guarantees a created `Notified` receives `notify_waiters`).
            let notified = self.inner.notify.notified();
            if self.inner.flag.load(Ordering::SeqCst) {
                return;
            }
            // Only `set` notifies: once woken, return even if the flag was cleared since,
            // as Python's `Event.wait` does (a quick set/clear pulse still releases waiters).
            notified.await;
        }
    }
}

impl uniconc_core::Event for Event {
    fn new() -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                flag: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        })
    }

    fn set(&self) {
        // SeqCst: see `wait_inner`.
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    fn clear(&self) {
        self.inner.flag.store(false, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]); on a multi-thread runtime it uses `block_in_place`.
    fn wait(&self) {
        block_on(&mut pin!(self.wait_inner()), None);
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        block_on(&mut pin!(self.wait_inner()), deadline).ok_or(WaitError::Timeout)
    }

    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_ {
        self.wait_inner()
    }
}
