//! An event flag in shared memory (Python's `multiprocessing.Event`): `flag` is the futex word
//! (waiters sleep while it is 0), `waiters` counts sleepers so `set` wakes only when needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use uniconc_core::{Error, WaitError};

use crate::named;
use crate::platform;
use crate::procs;
use crate::shm::{ShmBox, ShmSafe};
use crate::waiter::{SLICE, SleepToken, WaitWord};

#[derive(Debug, Default)]
#[repr(C)]
struct EventShm {
    /// 1 when set, 0 when clear.
    flag: AtomicU32,
    /// Sleepers registered on `flag`.
    waiters: AtomicU32,
}

// SAFETY: repr(C), atomics only; all-zero is a clear event.
unsafe impl ShmSafe for EventShm {}

/// A settable flag shared with forked processes.
///
/// One atomic flag in shared memory; waiters sleep on it (a shared futex on Linux), so a
/// `set` in one process wakes waiters in every other.
///
/// ```
/// use uniconc::Event as _;
/// let ev = uniconc::process::event()?;
/// ev.set();
/// ev.wait();
/// assert!(ev.is_set());
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    shm: Arc<ShmBox<EventShm>>,
}

// An `Event` travels (`crate::travel`).
crate::travel::travelling_page!(Event, ShmBox<EventShm>, crate::named::Kind::Event);

impl Event {
    /// The event named `name` (see [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &uniconc_core::Name) -> Result<Self, Error> {
        procs::install_fork_handlers();
        let region = named::attach_page(name, named::Kind::Event, [0; 4], |_| Ok(()), |_| Ok(()))?;
        Ok(Self {
            shm: Arc::new(ShmBox::from_region(region)?),
        })
    }

    fn s(&self) -> &EventShm {
        self.shm.header()
    }
}

impl uniconc_core::Event for Event {
    fn new() -> Result<Self, Error> {
        procs::install_fork_handlers();
        Ok(Self {
            shm: Arc::new(ShmBox::new(4096, false)?),
        })
    }

    fn set(&self) {
        let s = self.s();
        // SeqCst: the setter half of the sleeper handshake (see `waiter::SleepToken`); also
        // Release for the waiters' Acquire loads.
        s.flag.store(1, Ordering::SeqCst);
        if s.waiters.load(Ordering::SeqCst) > 0 {
            platform::wake(&s.flag, u32::MAX);
        }
    }

    fn clear(&self) {
        self.s().flag.store(0, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        // Acquire: what the setter wrote before `set` is visible after seeing the flag.
        self.s().flag.load(Ordering::Acquire) != 0
    }

    fn wait(&self) {
        let r = self.wait_deadline(None);
        debug_assert!(r.is_ok());
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        let s = self.s();
        loop {
            if self.is_set() {
                return Ok(());
            }
            // SAFETY: the counter is in our mapping, alive for this call.
            let token = unsafe { SleepToken::new(&s.waiters) };
            if self.is_set() {
                return Ok(());
            }
            let slept = platform::wait_until(&s.flag, 0, deadline, SLICE);
            drop(token);
            if !slept {
                return if self.is_set() {
                    Ok(())
                } else {
                    Err(WaitError::Timeout)
                };
            }
        }
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn wait_async(&self) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let s = self.s();
            loop {
                if self.is_set() {
                    return;
                }
                // SAFETY: kept alive by the clone of `shm` handed to the waiter.
                let token = unsafe { SleepToken::new(&s.waiters) };
                if self.is_set() {
                    return;
                }
                let keep: Arc<dyn std::any::Any + Send + Sync> = self.shm.clone();
                // SAFETY: `flag` is in the mapping `keep` keeps alive.
                unsafe { WaitWord::new(&s.flag, 0, Some(token), keep) }.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event;
    use std::time::Duration;
    use uniconc_core::Event as _;

    #[test]
    fn set_clear_wait() {
        let e = event().unwrap();
        assert_eq!(
            e.wait_timeout(Duration::from_millis(10)),
            Err(WaitError::Timeout)
        );
        let e2 = e.clone();
        let h = std::thread::spawn(move || e2.wait());
        let e3 = e.clone();
        let h2 = std::thread::spawn(move || futures_lite::future::block_on(e3.wait_async()));
        std::thread::sleep(Duration::from_millis(20));
        e.set();
        h.join().unwrap();
        h2.join().unwrap();
        e.clear();
        assert!(!e.is_set());
    }
}
