//! A changed configuration taken by a running node (a reload). The
//! router has checked with [`crate::reload::plan`] that only keys
//! changeable in place differ; tunnels, peers, registrations and SAs
//! stay as they are.

use std::net::{IpAddr, Ipv4Addr};

use dmvpn_nhrp::Instant;

use super::{Node, NodeConfig, PeerKind, v4};
use crate::engine::Command;

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
    /// What the driver resolved at run time (the NBMA address of an
    /// interface source, the networks behind the node) stays.
    pub fn reconfigure(&mut self, now: Instant, mut new: NodeConfig) {
        new.set_nbma(self.cfg.nbma);
        if let (Some(n), Some(o)) = (new.nhrp.as_mut(), self.cfg.nhrp.as_ref()) {
            n.local_prefixes = o.local_prefixes.clone();
        }
        self.ike.set_config(new.ike.clone());
        let old_nhs = self.nhs_nbmas();
        let old_maps = static_maps(&self.cfg);
        let new_maps = static_maps(&new);
        if let (Some(e), Some(c)) = (self.nhrp.as_mut(), new.nhrp.clone()) {
            e.reconfigure(now, c);
        }
        for (p, n) in old_maps.iter().filter(|m| !new_maps.contains(m)) {
            if self.map.get(&super::v4_prefix(*p, 32)) == Some(n) {
                self.set_route(*p, 32, None);
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
            self.set_route(*p, 32, Some(*n));
        }
        let old_routes = std::mem::replace(&mut self.cfg, new).routes;
        self.peers_changed += 1;
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
        self.follow_routes(&old_routes);
        for n in added {
            self.ensure_sa(now, n);
        }
        self.pump(now);
    }
}

impl Node {
    /// The configured routes now differ from `old`: those removed leave
    /// the map (when they still point where the tunnel subnet goes), those
    /// added go where the tunnel subnet goes.
    fn follow_routes(&mut self, old: &[(Ipv4Addr, u8)]) {
        let Some(base) = self.base_nbma else {
            return;
        };
        for &(p, l) in old {
            if !self.cfg.routes.contains(&(p, l))
                && self.map.get(&super::v4_prefix(p, l)) == Some(&base)
            {
                self.set_route(p, l, None);
            }
        }
        let added: Vec<(Ipv4Addr, u8)> = self
            .cfg
            .routes
            .iter()
            .filter(|r| !old.contains(r))
            .copied()
            .collect();
        for (p, l) in added {
            self.set_route(p, l, Some(base));
        }
    }
}

/// The IPv4 static mappings of a configuration: (tunnel address, NBMA).
fn static_maps(cfg: &NodeConfig) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    cfg.nhrp
        .as_ref()
        .map(|n| {
            n.static_maps
                .iter()
                .filter_map(|(p, n): &(IpAddr, IpAddr)| Some((v4(*p)?, v4(*n)?)))
                .collect()
        })
        .unwrap_or_default()
}
