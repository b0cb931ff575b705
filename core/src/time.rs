//! Deadlines: every `_timeout(Duration)` is implemented as a deadline.

use std::time::{Duration, Instant};

/// The deadline `timeout` from now, or `None` (wait forever) if that `Instant` would overflow,
/// as crossbeam does. Every `_timeout(d)` method is `_deadline(deadline_after(d))`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use uniconc_core::time::deadline_after;
///
/// let d = deadline_after(Duration::from_secs(1)).unwrap();
/// assert!(d > Instant::now());
/// assert_eq!(deadline_after(Duration::MAX), None); // too far to represent: no deadline
/// ```
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Time left until `deadline` (zero once it has passed); `None` means no deadline.
///
/// ```
/// use std::time::{Duration, Instant};
/// use uniconc_core::time::{deadline_after, remaining};
///
/// let left = remaining(deadline_after(Duration::from_secs(60))).unwrap();
/// assert!(left <= Duration::from_secs(60));
/// assert_eq!(remaining(Some(Instant::now())), Some(Duration::ZERO)); // already passed
/// assert_eq!(remaining(None), None);
/// ```
pub fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeout_means_forever() {
        assert_eq!(deadline_after(Duration::MAX), None);
        assert!(deadline_after(Duration::from_secs(1)).is_some());
    }

    #[test]
    fn remaining_saturates() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(remaining(Some(past)), Some(Duration::ZERO));
        assert_eq!(remaining(None), None);
    }
}
