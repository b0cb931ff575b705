//! Argument checks shared by every backend: one function per rule, so a rule is refused with
//! the same `InvalidArgument` message whichever backend a program runs on.
//!
//! A backend with a tighter limit than the contract (a process barrier counts its parties in
//! a 32-bit futex word; tokio's semaphore counts at most `usize::MAX >> 3` permits) passes
//! that limit in; the message then names it.

use std::time::Duration;

use crate::error::Error;

/// A bounded channel's capacity: at least 1 (uniconc has no rendezvous channel, so 0 is
/// refused rather than silently changing what `send` means).
///
/// ```
/// use uniconc_core::{ErrorKind, validate};
///
/// assert!(validate::channel_capacity(1).is_ok());
/// let e = validate::channel_capacity(0).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert!(e.to_string().contains("capacity of at least 1"));
/// ```
///
/// # Errors
/// `InvalidArgument` for `capacity == 0`.
#[inline]
pub fn channel_capacity(capacity: usize) -> Result<(), Error> {
    if capacity == 0 {
        return Err(Error::invalid_argument(
            "a channel needs a capacity of at least 1 (capacity 0 would be a rendezvous channel, \
             which uniconc does not offer)",
        ));
    }
    Ok(())
}

/// A barrier's number of parties: at least 1, and at most `max` (the backend's own limit;
/// `usize::MAX` where it has none).
///
/// ```
/// use uniconc_core::{ErrorKind, validate};
///
/// assert!(validate::barrier_parties(3, usize::MAX).is_ok());
/// let e = validate::barrier_parties(0, usize::MAX).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "a barrier needs at least one party");
/// let e = validate::barrier_parties(10, 4).unwrap_err();
/// assert_eq!(e.to_string(), "a barrier holds at most 4 parties, not 10");
/// ```
///
/// # Errors
/// `InvalidArgument` for 0 parties or more than `max`.
pub fn barrier_parties(parties: usize, max: usize) -> Result<(), Error> {
    if parties == 0 {
        return Err(Error::invalid_argument(
            "a barrier needs at least one party",
        ));
    }
    if parties > max {
        return Err(Error::invalid_argument(format!(
            "a barrier holds at most {max} parties, not {parties}"
        )));
    }
    Ok(())
}

/// A semaphore's initial permits: at most `max` (the backend's own limit). Zero permits is
/// allowed: the semaphore then starts closed, a signal another unit opens with `release`.
///
/// ```
/// use uniconc_core::{ErrorKind, validate};
///
/// assert!(validate::semaphore_permits(0, 8).is_ok());
/// let e = validate::semaphore_permits(9, 8).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "a semaphore holds at most 8 permits, not 9");
/// ```
///
/// # Errors
/// `InvalidArgument` for more than `max` permits.
pub fn semaphore_permits(permits: usize, max: usize) -> Result<(), Error> {
    if permits > max {
        return Err(Error::invalid_argument(format!(
            "a semaphore holds at most {max} permits, not {permits}"
        )));
    }
    Ok(())
}

/// A pool's number of workers: at least 1, and at most `max` (the backend's own limit).
///
/// ```
/// use uniconc_core::{ErrorKind, validate};
///
/// assert!(validate::pool_workers(4, usize::MAX).is_ok());
/// let e = validate::pool_workers(0, usize::MAX).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "a pool needs at least one worker");
/// ```
///
/// # Errors
/// `InvalidArgument` for 0 workers or more than `max`.
pub fn pool_workers(workers: usize, max: usize) -> Result<(), Error> {
    if workers == 0 {
        return Err(Error::invalid_argument("a pool needs at least one worker"));
    }
    if workers > max {
        return Err(Error::invalid_argument(format!(
            "a pool holds at most {max} workers, not {workers}"
        )));
    }
    Ok(())
}

/// A pool's chunk size, when one is set: at least 1.
///
/// ```
/// use uniconc_core::validate;
///
/// assert!(validate::chunk_size(None).is_ok());
/// assert_eq!(
///     validate::chunk_size(Some(0)).unwrap_err().to_string(),
///     "chunk_size must be at least 1"
/// );
/// ```
///
/// # Errors
/// `InvalidArgument` for `Some(0)`.
pub fn chunk_size(chunk_size: Option<usize>) -> Result<(), Error> {
    if chunk_size == Some(0) {
        return Err(Error::invalid_argument("chunk_size must be at least 1"));
    }
    Ok(())
}

/// A pool's limit of tasks per worker, when one is set: at least 1.
///
/// ```
/// use uniconc_core::validate;
///
/// assert!(validate::max_tasks_per_worker(Some(1)).is_ok());
/// assert_eq!(
///     validate::max_tasks_per_worker(Some(0)).unwrap_err().to_string(),
///     "max_tasks_per_worker must be at least 1"
/// );
/// ```
///
/// # Errors
/// `InvalidArgument` for `Some(0)`.
pub fn max_tasks_per_worker(limit: Option<usize>) -> Result<(), Error> {
    if limit == Some(0) {
        return Err(Error::invalid_argument(
            "max_tasks_per_worker must be at least 1",
        ));
    }
    Ok(())
}

/// A task timeout (a pool's `task_timeout`, or one task's), when one is set: longer than zero.
///
/// ```
/// use std::time::Duration;
/// use uniconc_core::validate;
///
/// assert!(validate::task_timeout(Some(Duration::from_millis(1))).is_ok());
/// assert_eq!(
///     validate::task_timeout(Some(Duration::ZERO)).unwrap_err().to_string(),
///     "task_timeout must be longer than zero"
/// );
/// ```
///
/// # Errors
/// `InvalidArgument` for `Some(Duration::ZERO)`.
pub fn task_timeout(timeout: Option<Duration>) -> Result<(), Error> {
    if timeout == Some(Duration::ZERO) {
        return Err(Error::invalid_argument(
            "task_timeout must be longer than zero",
        ));
    }
    Ok(())
}

/// The longest name of a named object, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// The name of a named object: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.` (so it is one file name on every backend, never a path).
///
/// ```
/// use uniconc_core::{ErrorKind, validate};
///
/// assert!(validate::name("jobs-2.v1").is_ok());
/// for bad in ["", "a/b", ".hidden", "..", "sp ace", "é"] {
///     assert_eq!(validate::name(bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
/// }
/// assert!(validate::name(&"x".repeat(validate::MAX_NAME_LEN + 1)).is_err());
/// ```
///
/// # Errors
/// `InvalidArgument`, saying which rule the name breaks.
pub fn name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid_argument("a name cannot be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid_argument(format!(
            "a name is at most {MAX_NAME_LEN} bytes (this one has {})",
            name.len()
        )));
    }
    if name.starts_with('.') {
        return Err(Error::invalid_argument(format!(
            "a name cannot start with '.': {name:?}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid_argument(format!(
            "a name holds only ASCII letters, digits, '.', '_' and '-'; {name:?} holds {c:?}"
        )));
    }
    Ok(())
}
