//! The mutex of the channel, through one shim: `std` normally, `loom` under
//! `cfg(uniconc_loom)` so the waiter lists' cancellation hand-on can be model-checked (see
//! `channel_loom.rs`).

#[cfg(uniconc_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(uniconc_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
