//! Virtual time: the engines never read a clock; the driver passes `now`.
//!
//! An [`Instant`] is a duration since an epoch the driver chooses (process
//! start for the daemon, zero for the simulator and the tests). NHRP, IKE
//! and the node all run on this one type, so one `now` serves them all.
//! The arithmetic mirrors `std::time::Instant`, except that it never
//! panics: results saturate at the epoch and at the largest instant.
#![warn(missing_docs)]

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A point in time, as a duration since an epoch chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub Duration);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant(Duration::from_secs(secs))
    }

    /// `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(Duration::from_millis(ms))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later
    /// (as `std::time::Instant::duration_since`).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Time elapsed from `earlier` to `self`, `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }

    /// `self + d`, `None` if that is past the largest instant.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, `None` if that is before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Instant)
    }
}

/// Saturates at the largest instant.
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// Saturates at the epoch.
impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d))
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

/// Time from `other` to `self`, zero if `other` is later.
impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_duration_since(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_count_from_the_epoch() {
        assert_eq!(Instant::ZERO, Instant::default());
        assert_eq!(Instant::from_secs(3), Instant(Duration::from_secs(3)));
        assert_eq!(
            Instant::from_millis(1500),
            Instant(Duration::from_millis(1500))
        );
        assert!(Instant::from_millis(999) < Instant::from_secs(1));
    }

    #[test]
    fn elapsed_time_between_instants() {
        let (a, b) = (Instant::from_secs(5), Instant::from_secs(8));
        assert_eq!(b - a, Duration::from_secs(3));
        assert_eq!(b.duration_since(a), Duration::from_secs(3));
        assert_eq!(b.saturating_duration_since(a), Duration::from_secs(3));
        assert_eq!(b.checked_duration_since(a), Some(Duration::from_secs(3)));
    }

    #[test]
    fn an_earlier_minus_a_later_instant_is_zero_or_none() {
        let (a, b) = (Instant::from_secs(5), Instant::from_secs(8));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), None);
    }

    #[test]
    fn adding_and_subtracting_durations() {
        let mut t = Instant::from_secs(10);
        assert_eq!(t + Duration::from_millis(250), Instant::from_millis(10_250));
        assert_eq!(t - Duration::from_secs(4), Instant::from_secs(6));
        assert_eq!(
            t.checked_add(Duration::from_secs(1)),
            Some(Instant::from_secs(11))
        );
        assert_eq!(t.checked_sub(Duration::from_secs(10)), Some(Instant::ZERO));
        t += Duration::from_secs(2);
        assert_eq!(t, Instant::from_secs(12));
        t -= Duration::from_secs(5);
        assert_eq!(t, Instant::from_secs(7));
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let far = Instant(Duration::MAX);
        assert_eq!(far + Duration::from_secs(1), far);
        assert_eq!(far.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(
            Instant::from_secs(1) - Duration::from_secs(2),
            Instant::ZERO
        );
        assert_eq!(
            Instant::from_secs(1).checked_sub(Duration::from_secs(2)),
            None
        );
        let mut t = Instant::ZERO;
        t -= Duration::from_secs(1);
        assert_eq!(t, Instant::ZERO);
    }

    #[test]
    fn instants_order_by_time_since_the_epoch() {
        let mut v = vec![
            Instant::from_secs(3),
            Instant::ZERO,
            Instant::from_millis(1),
        ];
        v.sort();
        assert_eq!(
            v,
            [
                Instant::ZERO,
                Instant::from_millis(1),
                Instant::from_secs(3)
            ]
        );
        assert_eq!(
            Instant::from_secs(2).max(Instant::from_secs(1)),
            Instant::from_secs(2)
        );
        assert_eq!(format!("{:?}", Instant::from_secs(2)), "Instant(2s)");
    }
}
