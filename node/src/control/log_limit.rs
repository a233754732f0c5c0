//! Log lines that hostile input could multiply, kept few: packets the
//! data plane dropped are summarised (at most one line per reason per
//! [`INTERVAL`], with the count since the last line and the last address
//! involved), and per-event warnings (failed negotiations, send errors)
//! pass a [`Throttle`] that reports how many it held back. A flood costs
//! a few lines a minute, not one per packet.

use std::net::Ipv4Addr;
use std::time::Duration;

use dmvpn_nhrp::Instant;
use tracing::warn;

use crate::engine::Counters;

/// Shortest time between two lines for one reason.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One reason a packet is dropped.
#[derive(Debug, Default)]
struct Reason {
    /// Cumulative count at the last line.
    logged: u64,
    next: Option<Instant>,
}

impl Reason {
    /// The count to report now, if there is one and it is time.
    fn due(&mut self, now: Instant, total: u64) -> Option<u64> {
        let new = total.saturating_sub(self.logged);
        if new == 0 || self.next.is_some_and(|t| now < t) {
            return None;
        }
        self.logged = total;
        self.next = Some(now + INTERVAL);
        Some(new)
    }
}

/// Rate-limited drop lines for one tunnel.
#[derive(Debug, Default)]
pub struct DropLog {
    unprotected: Reason,
    wrong_peer: Reason,
    no_route: Reason,
    invalid_spi: Reason,
}

fn addr(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

impl DropLog {
    /// Looks at the data plane's counters (each stats tick) and logs what
    /// is due.
    pub fn observe(&mut self, now: Instant, interface: &str, c: &Counters, invalid_spi: u64) {
        if let Some(n) = self.unprotected.due(now, c.unprotected) {
            warn!(
                target: "dmvpn::esp",
                "%CRYPTO-4-RECVD_PKT_NOT_IPSEC: {n} packet(s) not protected by IPsec dropped on {interface} (last from {}, prot=47)",
                addr(c.last.unprotected_src)
            );
        }
        if let Some(n) = self.wrong_peer.due(now, c.wrong_peer) {
            warn!(
                target: "dmvpn::esp",
                "IPSEC: {n} packet(s) dropped on {interface}: SA belongs to another peer (last from {})",
                addr(c.last.wrong_peer_src)
            );
        }
        if let Some(n) = self.invalid_spi.due(now, invalid_spi) {
            warn!(
                target: "dmvpn::esp",
                "%CRYPTO-4-RECVD_PKT_INV_SPI: {n} ESP packet(s) with an unknown SPI dropped on {interface}"
            );
        }
        if let Some(n) = self.no_route.due(now, c.no_route) {
            warn!(
                target: "dmvpn::nhrp",
                "NHRP: {n} packet(s) dropped: no NHRP mapping for {} via {interface} (last destination; see `show ip nhrp`)",
                addr(c.last.no_route_dst)
            );
        }
    }
}

/// A token bucket for one kind of warning: [`BURST`] lines at once, then
/// one per [`INTERVAL`] / [`BURST`]; what it holds back is counted and
/// reported with the next line it lets through.
#[derive(Debug, Default)]
pub struct Throttle {
    tokens: u32,
    refilled: Option<Instant>,
    held: u64,
}

/// Lines a [`Throttle`] lets through at once.
pub const BURST: u32 = 5;

impl Throttle {
    /// Whether a line may be logged now; `Some(n)` with the number of
    /// lines held back since the last one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let per = INTERVAL / BURST;
        match self.refilled {
            None => {
                self.tokens = BURST;
                self.refilled = Some(now);
            }
            Some(t) if now > t => {
                let add = ((now - t).as_millis() / per.as_millis()) as u32;
                if add > 0 {
                    self.tokens = (self.tokens + add).min(BURST);
                    self.refilled = Some(t + per * add);
                }
            }
            Some(_) => {}
        }
        if self.tokens == 0 {
            self.held += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.held))
    }
}

/// " (N similar lines held back)" or nothing.
pub fn held_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar line(s) held back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_a_burst_through_then_one_line_per_share_of_the_interval() {
        let mut t = Throttle::default();
        let t0 = Instant::ZERO;
        for _ in 0..BURST {
            assert_eq!(t.allow(t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(t.allow(t0 + Duration::from_millis(10)), None);
        }
        assert_eq!(t.allow(t0 + INTERVAL / BURST), Some(1000));
        assert_eq!(t.allow(t0 + INTERVAL / BURST), None);
        assert_eq!(t.allow(t0 + INTERVAL * 10), Some(1));
    }

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let mut r = Reason::default();
        let t0 = Instant::ZERO;
        assert_eq!(r.due(t0, 0), None);
        assert_eq!(r.due(t0, 1), Some(1));
        // A flood within the interval stays silent...
        assert_eq!(r.due(t0 + Duration::from_secs(1), 5000), None);
        assert_eq!(r.due(t0 + Duration::from_secs(9), 20000), None);
        // ...and is summed up in the next line.
        assert_eq!(r.due(t0 + INTERVAL, 20000), Some(19999));
        assert_eq!(r.due(t0 + INTERVAL * 3, 20000), None);
        assert_eq!(r.due(t0 + INTERVAL * 3, 20001), Some(1));
    }
}
