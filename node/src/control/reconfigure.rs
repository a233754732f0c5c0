//! A changed configuration taken by a running node (a reload). The
//! router has checked with [`crate::reload::plan`] that only keys
//! changeable in place differ; tunnels, peers, registrations and SAs
//! stay as they are.

use std::net::{IpAddr, Ipv4Addr};

use dmvpn_nhrp::Instant;

use tracing::info;

use super::config_map::ManualSa;
use dmvpn_wire::prefix::{Prefix, mask_v4};

use super::{Node, NodeConfig, Output, PeerKind, sa, v4};
use crate::engine::{Command, Protection};

impl Node {
    /// Takes `new` in place: IKE policies, keys and transform sets apply
    /// to new negotiations, the idle time and DPD to the SAs already up,
    /// static NHRP mappings added are mapped and removed ones unmapped,
    /// the rest of NHRP as [`dmvpn_nhrp::Engine::reconfigure`] says. An
    /// NHS added is an IKE peer at once (as at start: IPsec first, then
    /// its registration); one removed is a peer no more, unless a static
    /// mapping names it or it has SAs (those then idle out as a spoke's
    /// do). The tunnel subnet and routes follow the preferred NHS, the
    /// multicast list the NHSs marked `multicast`; configured routes
    /// added go there too, removed ones are unmapped.
    /// What the driver resolved at run time (the networks behind the
    /// node) stays.
    ///
    /// A new source address is taken as a change of the source
    /// interface's address is ([`Node::set_local_nbma`]); a new source
    /// interface keeps the address in use until the driver resolves it.
    pub fn reconfigure(&mut self, now: Instant, mut new: NodeConfig) {
        let moved_to =
            (new.source_interface.is_none() && new.nbma != self.cfg.nbma).then_some(new.nbma);
        new.set_nbma(self.cfg.nbma);
        // Numbering is the process's, not the file's.
        new.ike.conn_ids = self.cfg.ike.conn_ids;
        if let (Some(n), Some(o)) = (new.nhrp.as_mut(), self.cfg.nhrp.as_ref()) {
            n.local_prefixes = o.local_prefixes.clone();
        }
        if let (Some(n), Some(o)) = (new.nhrp6.as_mut(), self.cfg.nhrp6.as_ref()) {
            n.local_prefixes = o.local_prefixes.clone();
        }
        self.ike.set_config(new.ike.clone());
        self.reconfigure_manual_sas(now, &new);
        let old_nhs = self.nhs_nbmas();
        let old_maps = static_maps(&self.cfg);
        let new_maps = static_maps(&new);
        if let (Some(e), Some(c)) = (self.nhrp.as_mut(), new.nhrp.clone()) {
            e.reconfigure(now, c);
        }
        if let (Some(e), Some(c)) = (self.nhrp6.as_mut(), new.nhrp6.clone()) {
            e.reconfigure(now, c);
        }
        for (p, n) in old_maps.iter().filter(|m| !new_maps.contains(m)) {
            if self.map.get(&Prefix::new(*p, super::host_len(*p))) == Some(n) {
                self.set_route(*p, super::host_len(*p), None);
            }
            // A peer known only from the mapping goes with it; one with
            // SAs stays until they go.
            let mapped_still = new_maps.iter().any(|(_, x)| x == n);
            let unused = self
                .peers
                .get(n)
                .is_some_and(|s| s.kind == PeerKind::Static && !s.manual && s.sas.is_empty());
            if unused && !mapped_still {
                self.peers.remove(n);
                self.peers_changed += 1;
            }
        }
        for (p, n) in new_maps.iter().filter(|m| !old_maps.contains(m)) {
            self.peer_mut(*n, PeerKind::Static, now);
            self.set_route(*p, super::host_len(*p), Some(*n));
        }
        let was_protected = self.cfg.protected;
        let old_address = (self.cfg.tunnel_addr, self.cfg.tunnel_prefix_len);
        let old = std::mem::replace(&mut self.cfg, new);
        self.peers_changed += 1;
        if self.cfg.protected != was_protected {
            self.reprotect(now);
        }
        if self.cfg.overlay_v4 && (self.cfg.tunnel_addr, self.cfg.tunnel_prefix_len) != old_address
        {
            self.readdress(now, old_address);
        }
        let new_nhs = self.nhs_nbmas();
        for n in old_nhs.iter().filter(|n| !new_nhs.contains(n)) {
            let mapped = new_maps.iter().any(|(_, x)| x == n);
            let Some(p) = self.peers.get_mut(n).filter(|p| p.kind == PeerKind::Nhs) else {
                continue;
            };
            if mapped {
                p.kind = PeerKind::Static;
            } else if p.sas.is_empty() && !p.manual {
                // A registration held for its SA is not sent either.
                self.peers.remove(n);
                self.peers_changed += 1;
                self.dp(Command::DiscardPending(*n));
            } else {
                p.kind = PeerKind::Spoke;
            }
        }
        let added: Vec<Ipv4Addr> = new_nhs
            .into_iter()
            .filter(|n| !old_nhs.contains(n))
            .collect();
        for n in &added {
            self.peer_mut(*n, PeerKind::Nhs, now).kind = PeerKind::Nhs;
        }
        self.update_base();
        self.follow_routes(&old);
        for n in added {
            self.ensure_sa(now, n);
        }
        if let Some(a) = moved_to {
            self.set_local_nbma(now, a);
        }
        self.pump(now);
    }
}

impl Node {
    /// The configured routes now differ from `old`: those removed leave
    /// the map (when they still point where the tunnel subnet goes), those
    /// added go where the tunnel subnet goes.
    fn follow_routes(&mut self, old_cfg: &NodeConfig) {
        let routes = |c: &NodeConfig, v6: bool| -> Vec<(IpAddr, u8)> {
            if v6 {
                c.routes6
                    .iter()
                    .map(|(p, l)| (IpAddr::V6(*p), *l))
                    .collect()
            } else {
                c.routes.iter().map(|(p, l)| (IpAddr::V4(*p), *l)).collect()
            }
        };
        for v6 in [false, true] {
            let base = if v6 { self.base_nbma6 } else { self.base_nbma };
            let Some(base) = base else {
                continue;
            };
            let (old, new) = (routes(old_cfg, v6), routes(&self.cfg, v6));
            for &(p, l) in &old {
                if !new.contains(&(p, l)) && self.map.get(&Prefix::new(p, l)) == Some(&base) {
                    self.set_route(p, l, None);
                }
            }
            for &(p, l) in new.iter().filter(|r| !old.contains(r)) {
                self.set_route(p, l, Some(base));
            }
        }
    }

    /// Manual SAs follow `new`: one no longer configured is deleted from
    /// the data plane (its peer goes unless a mapping, an NHS or a route
    /// still names it), one added is installed as at start, and one
    /// changed is both.
    fn reconfigure_manual_sas(&mut self, now: Instant, new: &NodeConfig) {
        let old_entries = &self.cfg.origin.ipsec.manual_sas;
        let new_entries = &new.origin.ipsec.manual_sas;
        // The mapped SAs are in the order of the configured entries.
        let removed: Vec<ManualSa> = self
            .cfg
            .manual_sas
            .iter()
            .zip(old_entries)
            .filter(|(_, e)| !new_entries.contains(e))
            .map(|(m, _)| m.clone())
            .collect();
        let added: Vec<ManualSa> = new
            .manual_sas
            .iter()
            .zip(new_entries)
            .filter(|(_, e)| !old_entries.contains(e))
            .map(|(m, _)| m.clone())
            .collect();
        for m in &removed {
            info!(target: "dmvpn::esp", interface = %self.cfg.interface, peer = %m.peer, "manual SA with {} removed (SPIs {:#x}/{:#x})", m.peer, m.in_spi, m.out_spi);
            self.dp(Command::RemoveInbound(m.in_spi));
            self.dp(Command::RemoveOutbound {
                peer: IpAddr::V4(m.peer),
                spi: m.out_spi,
            });
            self.conn_ids.remove(&m.in_spi);
            let still_manual = new.manual_sas.iter().any(|x| x.peer == m.peer);
            let default = if new.protected {
                Protection::Esp
            } else {
                Protection::None
            };
            let named = static_maps(new).iter().any(|(_, n)| *n == m.peer)
                || self.map.iter().any(|(_, n)| *n == m.peer);
            let Some(p) = self.peers.get_mut(&m.peer) else {
                continue;
            };
            p.sas.remove(&m.in_spi);
            if still_manual {
                continue;
            }
            p.manual = false;
            p.protection = default;
            self.peers_changed += 1;
            if !named && p.kind == PeerKind::Static && p.sas.is_empty() {
                self.peers.remove(&m.peer);
            } else {
                // Routes to it no longer name ESP.
                self.refresh_routes_via(m.peer);
            }
        }
        for m in &added {
            if !self.install_manual_sa(now, m) {
                continue;
            }
            info!(target: "dmvpn::esp", interface = %self.cfg.interface, peer = %m.peer, "manual SA with {} installed (SPIs {:#x}/{:#x})", m.peer, m.in_spi, m.out_spi);
            self.refresh_routes_via(m.peer);
            if self.keylog {
                let c = sa::manual_as_child(m, self.cfg.nbma);
                for l in dmvpn_ike::keylog::esp_sa_lines(&c) {
                    self.out.push_back(Output::KeyLog(l));
                }
            }
        }
    }

    /// The tunnel became protected or unprotected. Unprotected: every
    /// negotiated SA is deleted (telling the peers) and GRE goes out
    /// plain. Protected: plain GRE is no longer taken from anyone, and
    /// SAs are negotiated as at start (with the NHSs at once, with others
    /// on demand). Manual SAs stay as they are.
    fn reprotect(&mut self, now: Instant) {
        let protection = if self.cfg.protected {
            info!(target: "dmvpn::ctl", interface = %self.cfg.interface, "{}: tunnel protection on: plain GRE refused, SAs negotiated", self.cfg.interface);
            Protection::Esp
        } else {
            info!(target: "dmvpn::ctl", interface = %self.cfg.interface, "{}: tunnel protection off: SAs deleted, GRE sent plain", self.cfg.interface);
            self.clear_crypto_sa(now, None);
            Protection::None
        };
        for p in self.peers.values_mut().filter(|p| !p.manual) {
            p.protection = protection;
        }
        self.peers_changed += 1;
        let routes: Vec<((IpAddr, u8), Ipv4Addr)> = self
            .map
            .iter()
            .map(|(k, n)| ((k.addr(), k.prefix_len()), *n))
            .collect();
        for ((p, l), n) in routes {
            self.set_route(p, l, Some(n));
        }
        if self.cfg.protected {
            for n in self.nhs_nbmas() {
                self.ensure_sa(now, n);
            }
        }
    }

    /// Our tunnel address changed (from `old`): NHRP registers the new
    /// one at once, the tunnel subnet's route follows the new prefix, and
    /// the multicast list its broadcast address.
    fn readdress(&mut self, now: Instant, old: (Ipv4Addr, u8)) {
        let (addr, len) = (self.cfg.tunnel_addr, self.cfg.tunnel_prefix_len);
        if let Some(n) = self.nhrp.as_mut() {
            n.set_protocol(now, IpAddr::V4(addr), len);
        }
        let old_subnet = (mask_v4(old.0, old.1), old.1);
        if old_subnet != (mask_v4(addr, len), len)
            && self.map.get(&super::v4_prefix(old_subnet.0, old_subnet.1))
                == self.base_nbma.as_ref()
        {
            self.set_route(IpAddr::V4(old_subnet.0), old_subnet.1, None);
        }
        // The base routes are set again for the new subnet.
        let target = self.base_nbma.take();
        if target.is_some() {
            self.update_base();
        }
        self.mcast_sent = None;
        self.mcast_built_from = None;
        self.sync_multicast();
    }
}

/// The static mappings of a configuration, of both overlay families:
/// (tunnel address, NBMA).
fn static_maps(cfg: &NodeConfig) -> Vec<(IpAddr, Ipv4Addr)> {
    [&cfg.nhrp, &cfg.nhrp6]
        .into_iter()
        .flatten()
        .flat_map(|n| {
            n.static_maps
                .iter()
                .filter_map(|(p, n): &(IpAddr, IpAddr)| Some((*p, v4(*n)?)))
        })
        .collect()
}
