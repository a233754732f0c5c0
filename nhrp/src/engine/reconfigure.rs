//! A changed configuration taken by a running engine (a reload): the
//! cache, registrations and resolutions stay as they are, except for
//! what belonged to an NHS taken out of the configuration.

use std::net::IpAddr;

use super::{Config, Engine, Nhs, NhsConfig, host_len};
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
    /// NHSs (`ip nhrp nhs` lines added or removed): an NHS still listed,
    /// with the same tunnel and NBMA address, keeps its state and schedule
    /// and takes a new priority; one no longer listed is dropped with its
    /// request in flight and its NHS cache entry, and no more
    /// registrations go to it (the one it holds lapses with its holding
    /// time: nothing is sent to withdraw it); one added (or moved to
    /// another NBMA address) is registered with at once.
    ///
    /// What identifies this node stays as it runs: its addresses and the
    /// networks behind it and the request IDs; the caller refuses changes
    /// to those. The interface's name follows `cfg` (it was renamed).
    pub fn reconfigure(&mut self, now: Instant, mut cfg: Config) {
        cfg.vrf = self.cfg.vrf;
        cfg.nbma = self.cfg.nbma;
        cfg.protocol = self.cfg.protocol;
        cfg.tunnel_prefix_len = self.cfg.tunnel_prefix_len;
        cfg.local_prefixes = self.cfg.local_prefixes.clone();
        cfg.initial_request_id = self.cfg.initial_request_id;
        self.reconfigured += 1;
        let added = self.take_nhs(now, &cfg);
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
        for i in added {
            self.send_registration(now, i);
        }
    }

    /// Our tunnel address changed to `protocol/prefix_len` (a reload):
    /// the old address is no longer ours, the new one is (an entry
    /// another node had for it is replaced), the networks behind us are
    /// reached through it, and registrations go out with it at once
    /// (fresh request IDs). Resolutions in flight and replies held for
    /// IPsec, which carry the old address, are dropped. Nothing is sent
    /// to withdraw the old registration: it lapses with its holding time.
    pub fn set_protocol(&mut self, now: Instant, protocol: IpAddr, prefix_len: u8) {
        let old = self.cfg.protocol;
        if protocol == old && prefix_len == self.cfg.tunnel_prefix_len {
            return;
        }
        info!(target: super::TARGET, interface = %self.cfg.interface, "NHRP: tunnel address changed from {}/{} to {}/{}, registering again", old, self.cfg.tunnel_prefix_len, protocol, prefix_len);
        if self
            .cache
            .get(old, host_len(old))
            .is_some_and(|e| e.kind == EntryType::Local)
        {
            self.cache.remove(old, host_len(old));
        }
        self.cache.remove(protocol, host_len(protocol));
        let mut own = CacheEntry::new(protocol, host_len(protocol), EntryType::Local, now);
        own.nbma = Some(self.cfg.nbma);
        own.next_hop = Some(protocol);
        self.cache.insert(own);
        for (p, l) in self.cfg.local_prefixes.clone() {
            if let Some(e) = self
                .cache
                .get_mut(p, l)
                .filter(|e| e.kind == EntryType::Local)
            {
                e.next_hop = Some(protocol);
            }
        }
        self.cfg.protocol = protocol;
        self.cfg.tunnel_prefix_len = prefix_len;
        self.register_afresh(now);
    }

    /// Makes the NHS states follow `cfg.nhs` (in its order); returns the
    /// indices of the NHSs added, to register with.
    fn take_nhs(&mut self, now: Instant, cfg: &Config) -> Vec<usize> {
        let same = |a: &NhsConfig, b: &NhsConfig| a.protocol == b.protocol && a.nbma == b.nbma;
        let mut old = std::mem::take(&mut self.nhs);
        let mut added = Vec::new();
        for (i, c) in cfg.nhs.iter().enumerate() {
            match old.iter().position(|n| same(&n.cfg, c)) {
                Some(k) => {
                    let mut n = old.swap_remove(k);
                    if n.cfg.priority != c.priority {
                        info!(target: super::TARGET, "NHRP: NHS {} priority {} -> {}", c.protocol, n.cfg.priority, c.priority);
                    }
                    n.cfg = c.clone();
                    self.nhs.push(n);
                }
                None => {
                    info!(target: super::TARGET, interface = %self.cfg.interface, nhs = %c.protocol, nbma = %c.nbma, "NHRP: NHS {} ({}) added", c.protocol, c.nbma);
                    let mut e =
                        CacheEntry::new(c.protocol, host_len(c.protocol), EntryType::Nhs, now);
                    e.nbma = Some(c.nbma);
                    e.next_hop = Some(c.protocol);
                    self.cache.insert(e);
                    self.nhs
                        .push(Nhs::new(c.clone(), now, self.cfg.retransmit_initial));
                    added.push(i);
                }
            }
        }
        for n in old {
            let (p, nbma) = (n.cfg.protocol, n.cfg.nbma);
            info!(target: super::TARGET, interface = %self.cfg.interface, nhs = %p, nbma = %nbma, "NHRP: NHS {} ({}) removed; no more registrations to it", p, nbma);
            let ours = self
                .cache
                .get(p, host_len(p))
                .is_some_and(|e| e.kind == EntryType::Nhs && e.nbma == Some(nbma));
            // Another NHS now at the same tunnel address has its own entry.
            if ours && !self.nhs.iter().any(|x| x.cfg.protocol == p) {
                self.cache.remove(p, host_len(p));
                // A static mapping kept for that address applies again.
                if let Some((_, m)) = cfg.static_maps.iter().find(|(a, _)| *a == p) {
                    self.cache.insert(static_entry(p, *m, now));
                }
            }
        }
        added
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

    fn second_nhs() -> NhsConfig {
        NhsConfig {
            protocol: ip("192.168.1.3"),
            nbma: ip("172.16.0.3"),
            priority: 5,
        }
    }

    /// Destinations of the registrations waiting to go out.
    fn registrations_to(e: &mut Engine) -> Vec<IpAddr> {
        let mut to = Vec::new();
        while let Some(t) = e.poll_transmit() {
            let p = Packet::parse(&t.payload).unwrap();
            if p.packet_type == PacketType::RegistrationRequest {
                to.push(t.dst_nbma);
            }
        }
        to
    }

    #[test]
    fn an_added_nhs_is_registered_with_at_once_and_the_other_is_untouched() {
        let t0 = Instant::ZERO;
        let (mut s, mut h) = (Engine::new(spoke(), t0), Engine::new(hub(), t0));
        s.handle_timeout(t0);
        exchange(&mut s, &mut h, t0);
        let before = s.nhs_status()[0].clone();
        assert!(before.up);
        let mut c = spoke();
        c.nhs.push(second_nhs());
        let t1 = t0 + Duration::from_secs(5);
        s.reconfigure(t1, c);
        assert_eq!(registrations_to(&mut s), [ip("172.16.0.3")]);
        let st = s.nhs_status();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0], before, "the first NHS keeps its state and schedule");
        assert_eq!(st[1].config, second_nhs());
        assert_eq!(st[1].requests_sent, 1);
        assert!(st[1].request_id.is_some());
        let entry = s.cache().get(ip("192.168.1.3"), 32).unwrap();
        assert_eq!(
            (entry.kind, entry.nbma),
            (EntryType::Nhs, Some(ip("172.16.0.3")))
        );
        // Its retransmission follows the usual back-off.
        assert!(st[1].next_attempt > t1 && st[1].next_attempt < before.next_attempt);
    }

    #[test]
    fn a_removed_nhs_gets_no_more_registrations_and_its_entry_goes() {
        let t0 = Instant::ZERO;
        let mut two = spoke();
        two.nhs.push(second_nhs());
        let mut s = Engine::new(two, t0);
        s.handle_timeout(t0);
        assert_eq!(
            registrations_to(&mut s),
            [ip("172.16.0.1"), ip("172.16.0.3")]
        );
        // Both requests are in flight; the second NHS goes.
        s.reconfigure(t0 + Duration::from_secs(1), spoke());
        assert!(s.poll_transmit().is_none(), "nothing sent on removal");
        let st = s.nhs_status();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].config.nbma, ip("172.16.0.1"));
        assert_eq!(st[0].requests_sent, 1);
        assert_eq!(s.cache().get(ip("192.168.1.3"), 32), None);
        // Retransmissions and refreshes for a long while: to the first only.
        for k in 1..=100u64 {
            let t = t0 + Duration::from_secs(10 * k);
            s.handle_timeout(t);
            for to in registrations_to(&mut s) {
                assert_eq!(to, ip("172.16.0.1"), "at {t:?}");
            }
        }
        // Removing the first as well: its NHS entry gives way to its
        // static mapping, which stays.
        let mut none = spoke();
        none.nhs.clear();
        s.reconfigure(t0 + Duration::from_secs(2000), none);
        assert!(s.nhs_status().is_empty());
        assert_eq!(
            s.poll_timeout()
                .filter(|t| *t < t0 + Duration::from_secs(2001)),
            None
        );
        let e = s.cache().get(ip("192.168.1.1"), 32).unwrap();
        assert_eq!(
            (e.kind, e.nbma),
            (EntryType::Static, Some(ip("172.16.0.1")))
        );
    }

    #[test]
    fn a_new_tunnel_address_is_registered_at_once_and_the_old_one_is_not_ours() {
        let t0 = Instant::ZERO;
        let (mut s, mut h) = (Engine::new(spoke(), t0), Engine::new(hub(), t0));
        s.handle_timeout(t0);
        exchange(&mut s, &mut h, t0);
        assert!(s.nhs_status()[0].up);
        let t1 = t0 + Duration::from_secs(5);
        s.set_protocol(t1, ip("192.168.1.42"), 24);
        let mut sent = Vec::new();
        while let Some(t) = s.poll_transmit() {
            let p = Packet::parse(&t.payload).unwrap();
            assert_eq!(p.packet_type, PacketType::RegistrationRequest);
            sent.push(t.payload.clone());
            h.handle(t1, ip("172.16.0.2"), &t.payload);
        }
        assert_eq!(sent.len(), 1, "registered again at once");
        while let Some(t) = h.poll_transmit() {
            s.handle(t1, ip("172.16.0.1"), &t.payload);
        }
        assert!(s.nhs_status()[0].up);
        let kind = |e: &Engine, a: &str| e.cache().get(ip(a), 32).map(|x| x.kind);
        assert_eq!(kind(&s, "192.168.1.2"), None, "the old address is not ours");
        assert_eq!(kind(&s, "192.168.1.42"), Some(EntryType::Local));
        assert_eq!(s.config().protocol, ip("192.168.1.42"));
        let at_hub = h.cache().get(ip("192.168.1.42"), 32).unwrap();
        assert_eq!(
            (at_hub.kind, at_hub.nbma),
            (EntryType::Dynamic, Some(ip("172.16.0.2")))
        );
    }

    #[test]
    fn an_unchanged_nhs_list_sends_nothing_and_a_priority_applies() {
        let t0 = Instant::ZERO;
        let mut two = spoke();
        two.nhs.push(second_nhs());
        let mut hub2 = Config::new(ip("172.16.0.3"), ip("192.168.1.3"));
        hub2.tunnel_prefix_len = 24;
        hub2.server = true;
        let mut s = Engine::new(two.clone(), t0);
        let mut hubs = [Engine::new(hub(), t0), Engine::new(hub2, t0)];
        s.handle_timeout(t0);
        while let Some(t) = s.poll_transmit() {
            let k = usize::from(t.dst_nbma == ip("172.16.0.3"));
            hubs[k].handle(t0, ip("172.16.0.2"), &t.payload);
            while let Some(r) = hubs[k].poll_transmit() {
                s.handle(t0, t.dst_nbma, &r.payload);
            }
        }
        let before = s.nhs_status();
        assert!(before.iter().all(|n| n.up), "{before:?}");
        assert_eq!(s.preferred_nhs().unwrap().nbma, ip("172.16.0.1"));
        s.reconfigure(t0 + Duration::from_secs(3), two.clone());
        assert!(s.poll_transmit().is_none(), "same list: nothing sent");
        assert_eq!(s.nhs_status(), before);
        // The first NHS made less preferred than the second (5).
        two.nhs[0].priority = 9;
        s.reconfigure(t0 + Duration::from_secs(4), two);
        assert!(s.poll_transmit().is_none());
        assert_eq!(s.preferred_nhs().unwrap().nbma, ip("172.16.0.3"));
        let st = s.nhs_status();
        assert_eq!(st[0].config.priority, 9);
        assert_eq!(st[0].requests_sent, before[0].requests_sent);
        assert_eq!(st[0].next_attempt, before[0].next_attempt);
        assert!(st[0].up);
    }
}
