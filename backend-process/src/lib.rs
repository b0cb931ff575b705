//! Skeleton; filled in by its issue.

// --- process backend II (issue 4): spawn, JoinHandle, Pool, TaskHandle ---
mod pool;
mod spawn;
pub use pool::{Pool, TaskHandle, pool};
pub use spawn::{JoinHandle, spawn, spawn_async};
// --- end of process backend II ---
