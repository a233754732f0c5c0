//! The 80/20 traffic model: per spoke, flows arrive as a Poisson process;
//! each goes to a hub's LAN, or with probability `spoke_to_spoke` to
//! another spoke's LAN chosen uniformly or by a Zipf law (a few popular
//! spokes get most of the spoke-to-spoke traffic).

use rand::Rng;

/// Where a flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Hub(usize),
    Spoke(usize),
}

/// Draws flow arrivals and destinations.
pub struct Traffic {
    spokes: usize,
    hubs: usize,
    s2s: f64,
    /// Mean gap between a spoke's flows, in µs.
    mean_gap_us: f64,
    /// Cumulative Zipf weights over spoke ranks (s = 1), when enabled.
    zipf_cdf: Option<Vec<f64>>,
}

impl Traffic {
    pub fn new(spokes: usize, hubs: usize, s2s: f64, flows_per_minute: f64, zipf: bool) -> Self {
        let zipf_cdf = zipf.then(|| {
            let mut acc = 0.0;
            (1..=spokes.max(1))
                .map(|r| {
                    acc += 1.0 / r as f64;
                    acc
                })
                .collect()
        });
        Traffic {
            spokes,
            hubs,
            s2s,
            mean_gap_us: 60e6 / flows_per_minute,
            zipf_cdf,
        }
    }

    /// Gap to a spoke's next flow (exponential), at least 1 µs.
    pub fn next_gap_us(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.r#gen::<f64>();
        let g = -self.mean_gap_us * (1.0 - u).ln();
        (g as u64).max(1)
    }

    /// Destination of a new flow from spoke `from`.
    pub fn dest(&self, from: usize, rng: &mut impl Rng) -> Dest {
        let to_spoke = self.spokes > 1 && rng.r#gen::<f64>() < self.s2s;
        if !to_spoke {
            return Dest::Hub(if self.hubs > 1 {
                rng.gen_range(0..self.hubs)
            } else {
                0
            });
        }
        let k = match &self.zipf_cdf {
            None => rng.gen_range(0..self.spokes - 1),
            Some(cdf) => {
                // Rank among the other spokes; the sender's own rank is skipped.
                let total = cdf[self.spokes - 2];
                let x = rng.r#gen::<f64>() * total;
                cdf[..self.spokes - 1]
                    .partition_point(|&c| c < x)
                    .min(self.spokes - 2)
            }
        };
        Dest::Spoke(if k >= from { k + 1 } else { k })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn share_and_never_self() {
        let t = Traffic::new(10, 1, 0.2, 1.0, false);
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let mut s2s = 0;
        for i in 0..10_000 {
            match t.dest(i % 10, &mut r) {
                Dest::Spoke(k) => {
                    assert_ne!(k, i % 10);
                    assert!(k < 10);
                    s2s += 1;
                }
                Dest::Hub(h) => assert_eq!(h, 0),
            }
        }
        assert!((1700..2300).contains(&s2s), "{s2s}");
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let t = Traffic::new(100, 1, 1.0, 1.0, true);
        let mut r = ChaCha8Rng::seed_from_u64(2);
        let mut hits = [0u32; 100];
        for _ in 0..20_000 {
            if let Dest::Spoke(k) = t.dest(50, &mut r) {
                hits[k] += 1;
            }
        }
        assert_eq!(hits[50], 0);
        assert!(hits[0] > 5 * hits[40], "{hits:?}");
    }

    #[test]
    fn poisson_mean() {
        let t = Traffic::new(10, 1, 0.2, 2.0, false);
        let mut r = ChaCha8Rng::seed_from_u64(3);
        let n = 20_000;
        let sum: u64 = (0..n).map(|_| t.next_gap_us(&mut r)).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 30e6).abs() < 1e6, "{mean}");
    }
}
