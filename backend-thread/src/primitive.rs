//! The atomics and the mutex of the waker registry, through one shim: `std` normally, `loom`
//! under `cfg(uniconc_loom)` so the wake-up protocol can be model-checked (see
//! `waiter_loom.rs`).

#[cfg(uniconc_loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering, fence};
#[cfg(uniconc_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(uniconc_loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering, fence};
#[cfg(not(uniconc_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Marks a `SeqCst` access whose place in the single total order of `SeqCst` operations the
/// protocol relies on; call it right before that access, with the access's ordering.
///
/// Normally nothing: the access's own ordering gives the guarantee. Loom checks `SeqCst`
/// accesses as if they were `AcqRel` (it models the total order only for `fence(SeqCst)`),
/// so under loom this is a `fence(SeqCst)` when `order` is `SeqCst`: the model keeps the
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
