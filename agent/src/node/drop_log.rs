//! Log lines for packets the data plane dropped, summarised: at most one
//! line per reason per [`INTERVAL`], with the count since the last line
//! and the last address involved, so a flood of hostile packets costs a
//! few lines a minute, not one per packet.

use std::net::Ipv4Addr;
use std::time::Duration;

use dmvpn_nhrp::Instant;
use tracing::warn;

use crate::runtime::dataplane::DataplaneStats;

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
    pub fn observe(&mut self, now: Instant, interface: &str, st: &DataplaneStats) {
        let c = &st.counters;
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
        if let Some(n) = self.invalid_spi.due(now, st.invalid_spi) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
