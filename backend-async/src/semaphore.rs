//! [`Semaphore`]: a counting semaphore on [`tokio::sync::Semaphore`](https://docs.rs/tokio/1/tokio/sync/struct.Semaphore.html) (fair, FIFO, cancel-safe).
//!
//! ```
//! use uniconc::{JoinHandle as _, Semaphore as _, Value as _};
//! let sem = uniconc::tokio::semaphore(2)?; // at most two tasks in the section at once
//! let (inside, peak) = (uniconc::tokio::value(0u32)?, uniconc::tokio::value(0u32)?);
//! let tasks: Vec<_> = (0..6)
//!     .map(|_| {
//!         let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
//!         uniconc::tokio::spawn_async(async move {
//!             let _permit = sem.acquire_async().await;
//!             let now = inside.update(|n| {
//!                 *n += 1;
//!                 *n
//!             });
//!             peak.update(|p| *p = (*p).max(now));
//!             tokio::task::yield_now().await;
//!             inside.update(|n| *n -= 1);
//!         })
//!     })
//!     .collect::<Result<_, _>>()?;
//! for t in tasks {
//!     t.join()?;
//! }
//! assert!(peak.load() <= 2);
//! assert_eq!(sem.available(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use uniconc_core::Error;

use crate::runtime::block_on;

/// A counting semaphore (Python's `Semaphore`); cheap to clone, every clone is the same one.
///
/// ```
/// use uniconc::Semaphore as _;
/// let sem = uniconc::tokio::semaphore(1)?;
/// let permit = sem.acquire();
/// assert_eq!(sem.available(), 0);
/// drop(permit);
/// assert_eq!(sem.available(), 1);
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    inner: Arc<tokio::sync::Semaphore>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Semaphore, inner);

impl uniconc_core::Semaphore for Semaphore {
    /// # Errors
    /// `InvalidArgument` if `permits` exceeds tokio's limit (`usize::MAX >> 3`).
    fn new(permits: usize) -> Result<Self, Error> {
        uniconc_core::validate::semaphore_permits(permits, tokio::sync::Semaphore::MAX_PERMITS)?;
        Ok(Self {
            inner: Arc::new(tokio::sync::Semaphore::new(permits)),
        })
    }

    fn try_take(&self) -> bool {
        self.inner.try_acquire().map(|p| p.forget()).is_ok()
    }

    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]); on a multi-thread runtime it uses `block_in_place`.
    fn take_deadline(&self, deadline: Option<Instant>) -> bool {
        let mut fut = pin!(self.inner.acquire());
        match block_on(&mut fut, deadline) {
            Some(p) => {
                p.expect("the semaphore is never closed").forget();
                true
            }
            None => false,
        }
    }

    /// # Cancel safety
    /// tokio's `acquire` takes the permit only in the poll that returns it.
    async fn take_async(&self) {
        self.inner
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
    }

    /// # Panics
    /// If the count would exceed tokio's limit (`usize::MAX >> 3` permits).
    fn release(&self) {
        self.inner.add_permits(1);
    }

    fn available(&self) -> usize {
        self.inner.available_permits()
    }
}
