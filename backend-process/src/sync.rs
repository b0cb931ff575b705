//! The atomics the lock-free ring uses, through one shim: `std` normally, `loom` under
//! `cfg(uniconc_loom)` so the ring's protocol can be model-checked in-process.

#[cfg(uniconc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
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

/// Marks a `SeqCst` access whose place in the single total order of `SeqCst` operations a
/// protocol relies on; call it next to that access (after a store, before a load), with the
/// access's ordering.
///
/// Normally nothing: the access's own ordering gives the guarantee. Loom checks `SeqCst`
/// accesses as if they were `AcqRel` (it models the total order only for `fence(SeqCst)`), so
/// under loom this is a `fence(SeqCst)` when `order` is `SeqCst`: the model keeps the
/// guarantee the access has, and loses it when the access is weakened.
#[inline(always)]
pub(crate) fn seq_cst_point(order: Ordering) {
    #[cfg(uniconc_loom)]
    if order == Ordering::SeqCst {
        fence(Ordering::SeqCst);
    }
    #[cfg(not(uniconc_loom))]
    let _ = order;
}
