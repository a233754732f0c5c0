//! A changed configuration taken by a running engine (a reload): the
//! cache, registrations and resolutions stay as they are.

use std::net::IpAddr;

use super::{Config, Engine, host_len};
use crate::Instant;
use crate::cache::{CacheEntry, EntryType};
use tracing::info;

impl Engine {
    /// Takes `cfg` in place. Static mappings added are cached and removed
    /// ones dropped at once; the holding time and registration interval
    /// apply from the next registration (one already scheduled keeps its
    /// time); the password, limits, allowed sources, multicast and phase
    /// 3 switches apply from the next packet.
    ///
    /// What identifies this node stays as it runs: its addresses and the
    /// networks behind it, the interface name, the NHSs and the request
    /// IDs; the caller refuses changes to those.
    pub fn reconfigure(&mut self, now: Instant, mut cfg: Config) {
        cfg.interface = self.cfg.interface.clone();
        cfg.vrf = self.cfg.vrf;
        cfg.nbma = self.cfg.nbma;
        cfg.protocol = self.cfg.protocol;
        cfg.tunnel_prefix_len = self.cfg.tunnel_prefix_len;
        cfg.local_prefixes = self.cfg.local_prefixes.clone();
        cfg.nhs = self.cfg.nhs.clone();
        cfg.initial_request_id = self.cfg.initial_request_id;
        let old = std::mem::take(&mut self.cfg.static_maps);
        for (p, n) in old.iter().filter(|m| !cfg.static_maps.contains(m)) {
            let ours = self
                .cache
                .get(*p, host_len(*p))
                .is_some_and(|e| e.kind == EntryType::Static && e.nbma == Some(*n));
            if ours {
                self.cache.remove(*p, host_len(*p));
                info!(target: super::TARGET, "NHRP: static mapping {p} -> {n} removed");
            }
        }
        for (p, n) in cfg.static_maps.iter().filter(|m| !old.contains(m)) {
            // An NHS's own entry (or one of ours) is not replaced by a mapping.
            let kept = self
                .cache
                .get(*p, host_len(*p))
                .is_some_and(|e| matches!(e.kind, EntryType::Nhs | EntryType::Local));
            if !kept {
                self.cache.insert(static_entry(*p, *n, now));
                info!(target: super::TARGET, "NHRP: static mapping {p} -> {n} added");
            }
        }
        self.cfg = cfg;
    }
}

fn static_entry(p: IpAddr, n: IpAddr, now: Instant) -> CacheEntry {
    let mut e = CacheEntry::new(p, host_len(p), EntryType::Static, now);
    e.nbma = Some(n);
    e.next_hop = Some(p);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NhsConfig;
    use crate::wire::{Packet, PacketType};
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spoke() -> Config {
        let mut c = Config::new(ip("172.16.0.2"), ip("192.168.1.2"));
        c.tunnel_prefix_len = 24;
        c.holding_time = 600;
        c.nhs = vec![NhsConfig {
            protocol: ip("192.168.1.1"),
            nbma: ip("172.16.0.1"),
            priority: 0,
        }];
        c.static_maps = vec![
            (ip("192.168.1.1"), ip("172.16.0.1")),
            (ip("192.168.1.7"), ip("172.16.0.7")),
        ];
        c
    }

    fn hub() -> Config {
        let mut c = Config::new(ip("172.16.0.1"), ip("192.168.1.1"));
        c.tunnel_prefix_len = 24;
        c.server = true;
        c
    }

    /// Delivers the spoke's packets to the hub and the hub's answers
    /// back; returns the holding times of the spoke's registrations.
    fn exchange(spoke: &mut Engine, hub: &mut Engine, now: Instant) -> Vec<u16> {
        let mut held = Vec::new();
        while let Some(t) = spoke.poll_transmit() {
            let p = Packet::parse(&t.payload).unwrap();
            if p.packet_type == PacketType::RegistrationRequest {
                held.push(p.cies()[0].holding_time);
            }
            hub.handle(now, ip("172.16.0.2"), &t.payload);
        }
        while let Some(t) = hub.poll_transmit() {
            spoke.handle(now, ip("172.16.0.1"), &t.payload);
        }
        held
    }

    #[test]
    fn static_mappings_are_added_and_removed_and_the_rest_stays() {
        let t0 = Instant::ZERO;
        let mut e = Engine::new(spoke(), t0);
        let mut c = spoke();
        c.static_maps = vec![
            (ip("192.168.1.1"), ip("172.16.0.1")),
            (ip("192.168.1.8"), ip("172.16.0.8")),
        ];
        e.reconfigure(t0, c);
        let kind = |e: &Engine, a: &str| e.cache().get(ip(a), 32).map(|x| (x.kind, x.nbma));
        assert_eq!(kind(&e, "192.168.1.7"), None, "removed mapping purged");
        assert_eq!(
            kind(&e, "192.168.1.8"),
            Some((EntryType::Static, Some(ip("172.16.0.8"))))
        );
        assert_eq!(
            kind(&e, "192.168.1.1"),
            Some((EntryType::Nhs, Some(ip("172.16.0.1")))),
            "the NHS entry is not replaced by its mapping"
        );
        assert_eq!(kind(&e, "192.168.1.2").map(|k| k.0), Some(EntryType::Local));
        assert_eq!(e.config().static_maps.len(), 2);
        // Removing the NHS's mapping leaves the NHS entry alone.
        let mut c = spoke();
        c.static_maps.clear();
        e.reconfigure(t0, c);
        assert_eq!(kind(&e, "192.168.1.1").map(|k| k.0), Some(EntryType::Nhs));
    }

    #[test]
    fn a_new_holding_time_goes_out_with_the_next_registration() {
        let t0 = Instant::ZERO;
        let (mut s, mut h) = (Engine::new(spoke(), t0), Engine::new(hub(), t0));
        s.handle_timeout(t0);
        assert_eq!(exchange(&mut s, &mut h, t0), [600]);
        assert!(s.nhs_status()[0].up);
        let due = s.nhs_status()[0].next_attempt;
        assert_eq!(due, t0 + Duration::from_secs(200), "holding time / 3");
        let first_id = s.config().initial_request_id;
        let mut c = spoke();
        c.holding_time = 300;
        c.initial_request_id = first_id + 500;
        s.reconfigure(t0 + Duration::from_secs(1), c);
        assert_eq!(s.nhs_status()[0].next_attempt, due, "schedule unchanged");
        assert_eq!(s.config().initial_request_id, first_id);
        assert!(s.poll_transmit().is_none(), "nothing sent on reload");
        assert!(s.nhs_status()[0].up, "registration kept");
        s.handle_timeout(due);
        assert_eq!(exchange(&mut s, &mut h, due), [300]);
        assert_eq!(
            s.nhs_status()[0].next_attempt,
            due + Duration::from_secs(100),
            "the new interval from then on"
        );
    }
}
