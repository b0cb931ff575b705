//! [`Barrier`]: a generation counter under a lock, and a [`tokio::sync::Notify`](https://docs.rs/tokio/1/tokio/sync/struct.Notify.html) to release
//! the waiters of a generation. Unlike `tokio::sync::Barrier`, a waiter that times out or is
//! cancelled withdraws, so the generation then needs another arrival.
//!
//! ```
//! use std::time::Duration;
//! use uniconc::Barrier as _;
//! let b = uniconc::tokio::barrier(2)?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     // Cancelled by a timeout while alone: the arrival is withdrawn...
//!     let alone = tokio::time::timeout(Duration::from_millis(2), b.wait_async()).await;
//!     assert!(alone.is_err());
//!     // ...so this generation still takes two arrivals, and has one leader.
//!     let (x, y) = tokio::join!(b.wait_async(), b.wait_async());
//!     assert!(x != y);
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;
use uniconc_core::{Error, WaitError};

use crate::runtime::block_on;

#[derive(Debug)]
struct State {
    /// Units waiting in the current generation; always `< n` between calls.
    arrived: usize,
    /// Bumped each time a generation completes.
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    n: usize,
    state: Mutex<State>,
    notify: Notify,
}

/// A reusable barrier for `n` units (Python's `Barrier`); cheap to clone.
///
/// ```
/// use uniconc::Barrier as _;
/// let b = uniconc::tokio::barrier(2)?;
/// let b2 = b.clone();
/// let h = std::thread::spawn(move || b2.wait());
/// let leader_here = b.wait();
/// assert!(leader_here != h.join().unwrap()); // exactly one leader
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Barrier {
    inner: Arc<Inner>,
}

// Travels through a codec (a `Map`, a task's result): see `uniconc_core::travel`.
uniconc_core::travel_local!(Barrier, inner);

/// What an arrival found.
enum Arrival {
    /// Completed the generation: the leader.
    Leader,
    /// Must wait for this generation to complete.
    Wait(u64),
}

/// Withdraws an arrival when a waiting future is dropped before its generation completed.
struct Withdraw<'a> {
    barrier: &'a Barrier,
    generation: u64,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.barrier.withdraw(self.generation);
        }
    }
}

impl Barrier {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections only do integer updates: never half-done, so poison is harmless.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn arrive(&self) -> Arrival {
        let mut st = self.lock();
        st.arrived += 1;
        if st.arrived == self.inner.n {
            st.arrived = 0;
            st.generation = st.generation.wrapping_add(1);
            drop(st);
            self.inner.notify.notify_waiters();
            Arrival::Leader
        } else {
            Arrival::Wait(st.generation)
        }
    }

    /// Withdraws one arrival of `generation`; `false` if that generation completed already
    /// (the unit was released after all).
    fn withdraw(&self, generation: u64) -> bool {
        let mut st = self.lock();
        if st.generation == generation {
            st.arrived -= 1;
            true
        } else {
            false
        }
    }

    /// Waits until `generation` completes. Cancel-safe on its own (it changes nothing).
    async fn released(&self, generation: u64) {
        loop {
            // Created before the check: the leader bumps the generation, then calls
            // `notify_waiters`, which wakes every `Notified` created before that call.
            let notified = self.inner.notify.notified();
            if self.lock().generation != generation {
                return;
            }
            notified.await;
        }
    }

    async fn wait_inner(&self) -> bool {
        match self.arrive() {
            Arrival::Leader => true,
            Arrival::Wait(generation) => {
                let mut guard = Withdraw {
                    barrier: self,
                    generation,
                    armed: true,
                };
                self.released(generation).await;
                guard.armed = false;
                false
            }
        }
    }
}

impl uniconc_core::Barrier for Barrier {
    /// # Errors
    /// `n == 0` is `InvalidArgument`.
    fn new(n: usize) -> Result<Self, Error> {
        uniconc_core::validate::barrier_parties(n, usize::MAX)?;
        Ok(Self {
            inner: Arc::new(Inner {
                n,
                state: Mutex::new(State {
                    arrived: 0,
                    generation: 0,
                }),
                notify: Notify::new(),
            }),
        })
    }

    /// # Panics
    /// On a task of a current-thread runtime, when it would have to wait (see
    /// [`crate::runtime`]); on a multi-thread runtime it uses `block_in_place`.
    fn wait(&self) -> bool {
        block_on(&mut pin!(self.wait_inner()), None).expect("a wait without deadline ends")
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        match self.arrive() {
            Arrival::Leader => Ok(true),
            Arrival::Wait(generation) => {
                if block_on(&mut pin!(self.released(generation)), deadline).is_some() {
                    return Ok(false);
                }
                // Withdraw, unless the generation completed between the deadline and now:
                // then this unit was released after all.
                if self.withdraw(generation) {
                    Err(WaitError::Timeout)
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// # Cancel safety
    /// Dropping the future before its generation completes withdraws this unit.
    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_ {
        self.wait_inner()
    }

    fn parties(&self) -> usize {
        self.inner.n
    }
}
