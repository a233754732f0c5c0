//! Figures with no IOS `show` view, for the metrics endpoint (and JSON
//! clients): IKE negotiations started, completed and failed, and how
//! long NHRP resolutions take to be answered.

use serde::{Deserialize, Serialize};

use crate::proto::Counter;

/// Upper bounds (seconds) of the resolution latency buckets: 1 ms to 10 s.
pub const RESOLUTION_LATENCY_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One tunnel's counters (answer to [`crate::proto::Request::ShowStats`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TunnelStats {
    pub interface: String,
    /// IKE phase 1 (Main or Aggressive Mode), both roles.
    pub phase1: Handshakes,
    /// Quick Mode, both roles.
    pub quick_mode: Handshakes,
    /// From our Resolution Request's first transmission to the reply.
    pub resolution_latency: Histogram,
}

/// Negotiations of one kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Handshakes {
    pub started: u64,
    pub completed: u64,
    /// Failures by reason (`timeout`, `auth_failed`,
    /// `no_proposal_chosen`, …), every reason listed.
    pub failed: Vec<Counter>,
}

/// Observations counted in buckets with fixed upper bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Observations in each bucket: above the previous bound, at most
    /// this one (not cumulative). Larger ones are only in `count`.
    pub buckets: Vec<Bucket>,
    pub count: u64,
    pub sum_secs: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub le_secs: f64,
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these ascending upper bounds.
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            buckets: bounds
                .iter()
                .map(|&le_secs| Bucket { le_secs, count: 0 })
                .collect(),
            count: 0,
            sum_secs: 0.0,
        }
    }

    pub fn observe(&mut self, secs: f64) {
        if let Some(b) = self.buckets.iter_mut().find(|b| secs <= b.le_secs) {
            b.count += 1;
        }
        self.count += 1;
        self.sum_secs += secs;
    }
}

impl Default for Histogram {
    /// The resolution latency buckets, empty.
    fn default() -> Histogram {
        Histogram::new(&RESOLUTION_LATENCY_BOUNDS)
    }
}

/// Plain text of the counters (`--json` has them all).
pub fn render(stats: &[TunnelStats]) -> String {
    let mut out = String::new();
    for t in stats {
        out.push_str(&format!("{}:\n", t.interface));
        for (name, h) in [("ISAKMP phase 1", &t.phase1), ("Quick Mode", &t.quick_mode)] {
            let failed: u64 = h.failed.iter().map(|c| c.count).sum();
            let why: Vec<String> = h
                .failed
                .iter()
                .filter(|c| c.count > 0)
                .map(|c| format!("{} {}", c.label, c.count))
                .collect();
            out.push_str(&format!(
                "  {name}: {} started, {} completed, {failed} failed",
                h.started, h.completed
            ));
            if !why.is_empty() {
                out.push_str(&format!(" ({})", why.join(", ")));
            }
            out.push('\n');
        }
        let r = &t.resolution_latency;
        out.push_str(&format!("  NHRP resolutions answered: {}", r.count));
        if r.count > 0 {
            out.push_str(&format!(
                ", {:.1} ms on average",
                r.sum_secs * 1000.0 / r.count as f64
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let mut h = Histogram::default();
        h.observe(0.0);
        h.observe(0.001);
        h.observe(0.0011);
        h.observe(0.3);
        h.observe(30.0);
        let counts: Vec<u64> = h.buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(h.count, 5);
        assert!((h.sum_secs - 30.3021).abs() < 1e-9);
    }

    #[test]
    fn text() {
        let mut t = TunnelStats {
            interface: "Tunnel0".into(),
            phase1: Handshakes {
                started: 3,
                completed: 2,
                failed: vec![
                    Counter::new("timeout", "timeout", 1),
                    Counter::new("auth_failed", "auth failed", 0),
                ],
            },
            quick_mode: Handshakes::default(),
            resolution_latency: Histogram::default(),
        };
        t.resolution_latency.observe(0.002);
        t.resolution_latency.observe(0.004);
        assert_eq!(
            render(&[t]),
            "Tunnel0:\n  ISAKMP phase 1: 3 started, 2 completed, 1 failed (timeout 1)\n  \
             Quick Mode: 0 started, 0 completed, 0 failed\n  \
             NHRP resolutions answered: 2, 3.0 ms on average\n"
        );
    }
}
