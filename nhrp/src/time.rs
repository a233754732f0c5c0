//! Virtual time: the engine never reads a clock; the caller passes `now`.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, as a duration since an epoch chosen by the caller
/// (process start, the simulator's zero...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub Duration);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// `secs` seconds after the epoch.
    pub fn from_secs(secs: u64) -> Instant {
        Instant(Duration::from_secs(secs))
    }

    /// `ms` milliseconds after the epoch.
    pub fn from_millis(ms: u64) -> Instant {
        Instant(Duration::from_millis(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_since(other)
    }
}
