//! Wall-clock deadlines.
//!
//! Lifetimes are kept as milliseconds since the Unix epoch rather than
//! `Instant`s: half the size (8 bytes, it is stored per element and per index
//! entry), and meaningful across a restart, which a durable store will need.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Millis(pub u64);

impl Millis {
    pub fn now() -> Millis {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Millis(since.as_millis() as u64)
    }

    /// The point `secs` seconds after `self`.
    pub fn plus_secs(self, secs: u64) -> Millis {
        Millis(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Time from `now` until `self`, zero if `self` has passed.
    pub fn remaining(self, now: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(now.0))
    }

    /// Whole seconds left until `self`, rounded up so that an element that is
    /// still live never reports zero.
    pub fn seconds_left(self, now: Millis) -> u64 {
        self.0.saturating_sub(now.0).div_ceil(1000)
    }

    pub fn has_passed(self, now: Millis) -> bool {
        self <= now
    }
}

/// `d` in whole milliseconds, saturating: a lease of more than `u64::MAX`
/// milliseconds (possible only under an absurd `--max-lease`) must not wrap
/// around to a short one.
pub fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_left_rounds_up_and_stops_at_zero() {
        let now = Millis(10_000);
        assert_eq!(Millis(10_001).seconds_left(now), 1);
        assert_eq!(Millis(12_000).seconds_left(now), 2);
        assert_eq!(Millis(9_000).seconds_left(now), 0);
        assert!(Millis(10_000).has_passed(now));
        assert!(!Millis(10_001).has_passed(now));
        assert_eq!(now.plus_secs(3), Millis(13_000));
    }

    #[test]
    fn durations_convert_to_millis_without_wrapping() {
        assert_eq!(saturating_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(saturating_millis(Duration::from_secs(u64::MAX)), u64::MAX);
        assert_eq!(
            saturating_millis(Duration::from_secs(u64::MAX / 1000 + 1)),
            u64::MAX
        );
    }
}
