//! The atomics the lock-free ring uses, through one shim: `std` normally, `loom` under
//! `cfg(uniconc_loom)` so the ring's protocol can be model-checked in-process.

#[cfg(uniconc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(uniconc_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One step of a busy-wait: a CPU hint normally, a scheduling point for loom.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(uniconc_loom)]
    loom::thread::yield_now();
    #[cfg(not(uniconc_loom))]
    std::hint::spin_loop();
}
