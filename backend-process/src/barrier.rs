//! A reusable barrier in shared memory (Python's `multiprocessing.Barrier`).
//!
//! `state` packs the generation (high 32 bits) and the number arrived in it (low 32 bits), so
//! arriving and withdrawing are single CASes that also check the generation. The last arrival
//! starts the next generation and publishes it in `generation`, the futex word the others sleep on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use uniconc_core::{Error, WaitError};

use crate::named;
use crate::platform;
use crate::procs;
use crate::shm::{ShmBox, ShmSafe};
use crate::waiter::{SLICE, WaitWord};

#[derive(Debug, Default)]
#[repr(C)]
struct BarrierShm {
    /// `generation << 32 | arrived`. Invariant: `arrived < parties`.
    state: AtomicU64,
    /// The current generation (low 32 bits), the futex word.
    gen_word: AtomicU32,
}

// SAFETY: repr(C), atomics only; all-zero is generation 0 with nobody arrived.
unsafe impl ShmSafe for BarrierShm {}

/// A reusable barrier for `n` units, shared with forked processes.
///
/// The arrival count and generation are two atomics in shared memory; waiters sleep on the
/// generation word (a shared futex on Linux). A party that dies before arriving is not replaced: the others wait (use
/// `wait_timeout` where that matters).
///
/// ```
/// use uniconc::Barrier as _;
/// let b = uniconc::process::barrier(1)?;
/// assert!(b.wait()); // alone: the leader
/// # Ok::<(), uniconc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    shm: Arc<ShmBox<BarrierShm>>,
    parties: u32,
}

// A `Barrier` travels (`crate::travel`): its parties go with it, checked on arrival.
impl serde::Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let params = [u64::from(self.parties), 0, 0, 0];
        let w = crate::travel::describe(self.shm.region(), named::Kind::Barrier, "", params, 0)
            .map_err(crate::travel::ser_err)?;
        crate::travel::keep_for_life(self.shm.clone(), w.object());
        w.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = crate::travel::Wire::deserialize(d)?;
        let n = usize::try_from(w.params[0]).unwrap_or(usize::MAX);
        uniconc_core::validate::barrier_parties(n, (1 << 31) - 1).map_err(crate::travel::de_err)?;
        let region =
            crate::travel::open(&w, named::Kind::Barrier, "").map_err(crate::travel::de_err)?;
        procs::install_fork_handlers();
        let shm = ShmBox::from_region(region).map_err(crate::travel::de_err)?;
        Ok(Self {
            shm: Arc::new(shm),
            parties: n as u32,
        })
    }
}

enum Arrival {
    Leader,
    Waiting(u32),
}

impl Barrier {
    /// The barrier of `n` parties named `name` (see [`Named`](uniconc_core::Named)).
    pub(crate) fn named(name: &uniconc_core::Name, n: usize) -> Result<Self, Error> {
        uniconc_core::validate::barrier_parties(n, (1 << 31) - 1)?;
        procs::install_fork_handlers();
        let region = named::attach_page(
            name,
            named::Kind::Barrier,
            [n as u64, 0, 0, 0],
            |_| Ok(()),
            |p| {
                if p[0] == n as u64 {
                    Ok(())
                } else {
                    Err(Error::incompatible(format!(
                        "the named barrier {name} has {} parties, not {n}",
                        p[0]
                    )))
                }
            },
        )?;
        Ok(Self {
            shm: Arc::new(ShmBox::from_region(region)?),
            parties: n as u32,
        })
    }

    fn s(&self) -> &BarrierShm {
        self.shm.header()
    }

    fn arrive(&self) -> Arrival {
        let s = self.s();
        let mut cur = s.state.load(Ordering::Acquire);
        loop {
            let generation = (cur >> 32) as u32;
            let arrived = cur as u32;
            // Saturating: the state is in shared memory, so garbage must not overflow here.
            let (next, leader) = if arrived.saturating_add(1) >= self.parties {
                (u64::from(generation.wrapping_add(1)) << 32, true)
            } else {
                (cur + 1, false)
            };
            // AcqRel: the leader sees every arrival's prior writes and publishes them.
            match s
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if leader => {
                    // Release: waiters that see the new generation see everything before.
                    s.gen_word
                        .store(generation.wrapping_add(1), Ordering::Release);
                    platform::wake(&s.gen_word, u32::MAX);
                    return Arrival::Leader;
                }
                Ok(_) => return Arrival::Waiting(generation),
                Err(now) => cur = now,
            }
        }
    }

    /// Withdraws from generation `generation`; `false` if it completed meanwhile.
    fn withdraw(&self, generation: u32) -> bool {
        let s = self.s();
        let mut cur = s.state.load(Ordering::Acquire);
        loop {
            if (cur >> 32) as u32 != generation || cur as u32 == 0 {
                return false;
            }
            match s
                .state
                .compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn released(&self, generation: u32) -> bool {
        // Acquire: pairs with the leader's Release store.
        self.s().gen_word.load(Ordering::Acquire) != generation
    }
}

impl uniconc_core::Barrier for Barrier {
    fn new(n: usize) -> Result<Self, Error> {
        uniconc_core::validate::barrier_parties(n, (1 << 31) - 1)?;
        procs::install_fork_handlers();
        Ok(Self {
            shm: Arc::new(ShmBox::new(4096, false)?),
            parties: n as u32,
        })
    }

    fn wait(&self) -> bool {
        self.wait_deadline(None).unwrap_or(false)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        let generation = match self.arrive() {
            Arrival::Leader => return Ok(true),
            Arrival::Waiting(g) => g,
        };
        loop {
            if self.released(generation) {
                return Ok(false);
            }
            if !platform::wait_until(&self.s().gen_word, generation, deadline, SLICE) {
                return if self.withdraw(generation) {
                    Err(WaitError::Timeout)
                } else {
                    Ok(false)
                };
            }
        }
    }

    // The trait's `Send` bound is spelled out here, as the trait declares it.
    #[allow(clippy::manual_async_fn)]
    fn wait_async(&self) -> impl Future<Output = bool> + Send + '_ {
        struct Withdraw<'a> {
            b: &'a Barrier,
            generation: u32,
            armed: bool,
        }
        impl Drop for Withdraw<'_> {
            fn drop(&mut self) {
                if self.armed {
                    self.b.withdraw(self.generation);
                }
            }
        }
        async move {
            let generation = match self.arrive() {
                Arrival::Leader => return true,
                Arrival::Waiting(g) => g,
            };
            let mut guard = Withdraw {
                b: self,
                generation,
                armed: true,
            };
            while !self.released(generation) {
                let keep: Arc<dyn std::any::Any + Send + Sync> = self.shm.clone();
                // SAFETY: `gen_word` is in the mapping `keep` keeps alive.
                unsafe { WaitWord::new(&self.s().gen_word, generation, None, keep) }.await;
            }
            guard.armed = false;
            false
        }
    }

    fn parties(&self) -> usize {
        self.parties as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier;
    use std::time::Duration;
    use uniconc_core::Barrier as _;

    #[test]
    fn one_leader_per_generation_and_reuse() {
        let b = barrier(3).unwrap();
        for _ in 0..3 {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || b.wait())
                })
                .collect();
            let leaders = hs
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&l| l)
                .count();
            assert_eq!(leaders, 1);
        }
        assert!(barrier(0).is_err());
        assert_eq!(b.parties(), 3);
    }

    #[test]
    fn timed_out_waiter_withdraws() {
        let b = barrier(2).unwrap();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(WaitError::Timeout)
        );
        // The withdrawn waiter does not count: two new arrivals are needed.
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait());
        let mine = futures_lite::future::block_on(b.wait_async());
        assert!(mine ^ h.join().unwrap());
    }
}
