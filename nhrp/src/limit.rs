//! Warnings about refused input, summarised so a flood cannot fill a
//! disk: per reason the first one of an interval is logged in full, the
//! rest are counted, and when the interval ends one line gives the counts.
//! An interval with nothing suppressed closes the window, so the next
//! refusal is logged in full again. Time comes in as `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::warn;

use crate::Instant;

const TARGET: &str = "dmvpn::nhrp";

/// Why input was refused (the key of the summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reason {
    AuthFailed,
    NbmaNotAllowed,
    RegistrationRefused,
    PurgeRefused,
    ResolutionRefused,
    LoopDetected,
    ErrorIndication,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::AuthFailed => "authentication failure",
            Reason::NbmaNotAllowed => "NBMA source not allowed",
            Reason::RegistrationRefused => "registration refused",
            Reason::PurgeRefused => "purge refused",
            Reason::ResolutionRefused => "resolution refused",
            Reason::LoopDetected => "loop detected",
            Reason::ErrorIndication => "error indication",
        }
    }
}

#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    /// End of the current window, while one is open.
    until: Option<Instant>,
    /// Reasons logged in full in this window, with the count suppressed.
    seen: BTreeMap<Reason, u64>,
}

impl WarnLimiter {
    pub(crate) fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval: interval.max(Duration::from_millis(1)),
            until: None,
            seen: BTreeMap::new(),
        }
    }

    /// Whether a warning for `reason` is to be logged in full now; when not,
    /// it is counted for the summary.
    pub(crate) fn allow(&mut self, now: Instant, reason: Reason) -> bool {
        self.roll(now);
        if self.until.is_none() {
            self.until = Some(now + self.interval);
        }
        match self.seen.get_mut(&reason) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                self.seen.insert(reason, 0);
                true
            }
        }
    }

    /// When the current window ends.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Ends the window if it is over: logs the summary, and opens the next
    /// window only if something was suppressed in this one.
    pub(crate) fn roll(&mut self, now: Instant) {
        let Some(until) = self.until else { return };
        if now < until {
            return;
        }
        let counts: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{} {}", r.name(), n))
            .collect();
        self.seen.clear();
        if counts.is_empty() {
            self.until = None;
            return;
        }
        warn!(
            target: TARGET,
            "NHRP: suppressed in the last {} s: {}",
            self.interval.as_secs(),
            counts.join(", ")
        );
        // Keep counting: a flood that goes on yields one line per interval.
        // Every reason gets counted (not logged in full) in the next window.
        self.until = Some(now + self.interval);
        self.seen.extend(
            [
                Reason::AuthFailed,
                Reason::NbmaNotAllowed,
                Reason::RegistrationRefused,
                Reason::PurgeRefused,
                Reason::ResolutionRefused,
                Reason::LoopDetected,
                Reason::ErrorIndication,
            ]
            .map(|r| (r, 0)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_logged_rest_counted_then_quiet_window_resets() {
        let mut l = WarnLimiter::new(Duration::from_secs(60));
        let t = Instant::from_secs;
        assert!(l.allow(t(0), Reason::AuthFailed));
        assert!(
            l.allow(t(1), Reason::PurgeRefused),
            "first of another reason"
        );
        for s in 2..50 {
            assert!(!l.allow(t(s), Reason::AuthFailed));
        }
        assert_eq!(l.deadline(), Some(t(60)));
        // The flood goes on: after the summary every reason is counted.
        assert!(!l.allow(t(61), Reason::AuthFailed));
        assert!(!l.allow(t(62), Reason::LoopDetected));
        assert_eq!(l.deadline(), Some(t(121)));
        // A window with nothing suppressed closes; the next one is logged.
        l.roll(t(121));
        assert_eq!(l.deadline(), Some(t(181)));
        l.roll(t(181));
        assert_eq!(l.deadline(), None);
        assert!(l.allow(t(200), Reason::AuthFailed));
    }
}
