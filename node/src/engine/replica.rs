//! Forwarding workers: copies of a node's engine that forward, on other
//! threads, the packets that need no decision of the node, and hand the
//! rest back to it.
//!
//! The node's own engine (the *primary*) stays the one the control plane
//! commands. Asked to ([`Engine::enable_replication`]), it records every
//! change of its forwarding state as an [`Update`]; the driver sends each
//! update to every [`Engine::replica`], which applies it in order. The
//! SAs themselves are shared, not copied (see [`crate::datapath::sadb`]):
//! a sequence number or a replay-window bit is taken once whichever
//! thread takes it.
//!
//! A replica forwards a packet when its tables settle it: a unicast inner
//! packet with a peer, an SA where one is needed and a size that fits; an
//! ESP packet for a known SPI; plain GRE; what arrives for the TUN. It
//! hands back ([`Engine::poll_punt`]) what the node must see or decide:
//! packets waiting for an SA, multicast, packets too big to fit, packets
//! the node watches ([`WorkerPolicy`]), a hub's spoke-to-spoke packets,
//! ESP for an SPI it does not know yet, and NHRP and IKE messages (its
//! [`Engine::poll_event`]s). The primary takes them with
//! [`crate::router::Router::handle_punt`] as if it had read them itself;
//! nothing a replica hands back is counted twice.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::{Counters, DataplaneConfig, Engine, Event, GreCounters, Peer, Protection};
use crate::datapath::mtu::{self, MtuAction};
use crate::datapath::sadb::{InboundSa, OutboundSa};
use dmvpn_wire::ipv4::Ipv4Packet;

/// Which inner packets the node must see itself, so that a replica hands
/// them back instead of forwarding them ([`crate::control::Node::worker_policy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPolicy {
    /// A hub: packets arriving from the tunnel for another peer go back
    /// into it through the node (relay and redirect).
    pub relay: bool,
    /// A hub sending redirects: packets read from the TUN whose source is
    /// reached through the tunnel.
    pub watch_sources: bool,
    /// A spoke resolving on traffic (phase 2): packets for this NBMA
    /// address (its NHS) start resolutions.
    pub watch_via: Option<Ipv4Addr>,
}

/// A change of the primary's forwarding state, for its replicas.
#[derive(Clone)]
pub enum Update {
    /// The tunnel's settings changed (reload, new NBMA address).
    Config(DataplaneConfig),
    /// The tunnel started again: every SA, route and the multicast list go.
    Restart(DataplaneConfig),
    Inbound(Arc<InboundSa>),
    Outbound(Arc<OutboundSa>),
    RemoveInbound(u32),
    RemoveOutbound {
        peer: IpAddr,
        spi: u32,
    },
    RemovePeer(IpAddr),
    Map {
        prefix: IpAddr,
        len: u8,
        peer: Option<Peer>,
    },
    Multicast {
        peers: Vec<Peer>,
        broadcast: Option<Ipv4Addr>,
    },
    Policy(WorkerPolicy),
}

/// What a replica hands back to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Punt {
    /// An inner packet read from the TUN.
    Tun(Vec<u8>),
    /// An inner packet that arrived from the tunnel for another peer.
    Relay(Vec<u8>),
    /// An ESP packet (SPI onwards) from `src` for an SPI the replica does
    /// not know (yet).
    Esp { src: Ipv4Addr, esp: Vec<u8> },
    /// A message for the node.
    Event(Event),
}

/// A replica's own state.
pub(super) struct ReplicaState {
    pub(super) policy: WorkerPolicy,
    punts: std::collections::VecDeque<Punt>,
}

/// Where a replica sends an inner packet from the TUN.
enum Route {
    Peer(Peer),
    /// No peer for this destination: dropped and counted.
    None(Ipv4Addr),
    /// The primary decides.
    Primary,
}

/// Punts a replica keeps before it drops (and counts) more: the driver
/// takes them after every burst.
const PUNT_QUEUE: usize = 1024;

impl Engine {
    /// Record every change of the forwarding state as an [`Update`]
    /// ([`Engine::poll_update`]) for replicas.
    pub fn enable_replication(&mut self) {
        if self.updates.is_none() {
            self.updates = Some(Default::default());
        }
    }

    /// A replica of this engine as it is now, for a forwarding worker:
    /// same settings, routes and multicast list, the same SAs (shared),
    /// empty batches and counters. The updates recorded from now on bring
    /// it up to date.
    pub fn replica(&self, policy: WorkerPolicy) -> Engine {
        let mut e = Engine::new(self.cfg.clone(), self.sadb.share(), self.map.clone());
        e.multicast = self.multicast.clone();
        e.broadcast = self.broadcast;
        e.defer_seal = self.defer_seal;
        e.replica = Some(ReplicaState {
            policy,
            punts: Default::default(),
        });
        e
    }

    /// Whether this engine is a replica.
    pub fn is_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The next change for the replicas (with [`Engine::enable_replication`]).
    pub fn poll_update(&mut self) -> Option<Update> {
        self.updates.as_mut()?.pop_front()
    }

    pub(super) fn record(&mut self, u: impl FnOnce() -> Update) {
        if let Some(q) = self.updates.as_mut() {
            q.push_back(u());
        }
    }

    /// Tells the replicas which packets the node now watches.
    pub fn record_policy(&mut self, p: WorkerPolicy) {
        self.record(|| Update::Policy(p));
    }

    pub(super) fn record_config(&mut self) {
        if let Some(q) = self.updates.as_mut() {
            q.push_back(Update::Config(self.cfg.clone()));
        }
    }

    /// Applies a change of the primary (a replica only).
    pub fn apply_update(&mut self, u: Update) {
        match u {
            Update::Config(cfg) => self.set_tunnel(&cfg),
            Update::Restart(cfg) => self.restart_tunnel(&cfg),
            Update::Inbound(sa) => {
                self.sadb.insert_inbound(sa);
            }
            Update::Outbound(sa) => {
                self.sadb.insert_outbound(sa);
            }
            Update::RemoveInbound(spi) => {
                self.sadb.remove_inbound(spi);
            }
            Update::RemoveOutbound { peer, spi } => {
                if self.sadb.outbound(peer).is_some_and(|o| o.spi == spi) {
                    self.sadb.remove_outbound(peer);
                }
            }
            Update::RemovePeer(peer) => {
                self.sadb.remove_peer(peer);
            }
            Update::Map { prefix, len, peer } => match peer {
                Some(p) => self.map.insert(prefix, len, p),
                None => self.map.remove(prefix, len),
            },
            Update::Multicast { peers, broadcast } => self.set_multicast(peers, broadcast),
            Update::Policy(p) => {
                if let Some(r) = self.replica.as_mut() {
                    r.policy = p;
                }
            }
        }
    }

    /// The next packet or message for the primary (a replica only): its
    /// received NHRP and IKE messages first, then the packets it handed
    /// back, in order.
    pub fn poll_punt(&mut self) -> Option<Punt> {
        if let Some(ev) = self.poll_event() {
            return Some(Punt::Event(ev));
        }
        self.replica.as_mut()?.punts.pop_front()
    }

    /// Counters of each replica as they last reported them, added to this
    /// engine's own in [`Engine::stats`].
    pub fn set_replica_counters(&mut self, index: usize, c: Counters, gre: GreCounters) {
        if self.replica_counters.len() <= index {
            self.replica_counters
                .resize_with(index + 1, Default::default);
        }
        self.replica_counters[index] = (c, gre);
    }

    /// This engine's own counters (a replica reports them to the primary).
    pub fn own_counters(&self) -> (Counters, GreCounters) {
        (self.counters, self.gre_counters.clone())
    }

    pub(super) fn punt(&mut self, p: Punt) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        if r.punts.len() < PUNT_QUEUE {
            r.punts.push_back(p);
        } else {
            self.counters.queue_full += 1;
        }
    }

    /// A replica's [`Engine::outbound`]: forwards what its tables settle,
    /// hands the rest back uncounted (the primary counts it).
    pub(super) fn replica_outbound(&mut self, pkt: &[u8], policy: WorkerPolicy) {
        match self.replica_route(pkt, policy) {
            Route::Peer(peer) => {
                self.counters.tun_rx += 1;
                self.encap(pkt, pkt[1], peer);
            }
            Route::None(dst) => {
                self.counters.tun_rx += 1;
                self.counters.no_route += 1;
                self.counters.last.no_route_dst = Some(dst);
            }
            Route::Primary => self.punt(Punt::Tun(pkt.to_vec())),
        }
    }

    /// Where a replica sends `pkt`.
    fn replica_route(&self, pkt: &[u8], policy: WorkerPolicy) -> Route {
        let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
            return Route::Primary;
        };
        let dst = ip.dst();
        if dst.is_multicast() || dst.is_broadcast() || Some(dst) == self.broadcast {
            return Route::Primary;
        }
        if policy.watch_sources && self.map.lookup(ip.src()).is_some() {
            return Route::Primary;
        }
        let Some(&peer) = self.map.lookup(dst) else {
            return Route::None(dst);
        };
        if policy.watch_via == Some(peer.nbma)
            || (peer.protection != Protection::None
                && !self.sadb.has_outbound(IpAddr::V4(peer.nbma)))
        {
            return Route::Primary;
        }
        match mtu::classify(ip.as_bytes(), self.path_mtu(pkt.len(), peer)) {
            Ok(MtuAction::Fits) => Route::Peer(peer),
            _ => Route::Primary,
        }
    }

    /// Whether a replica hands an inner packet from the tunnel back as a
    /// relay instead of writing it to the TUN.
    pub(super) fn replica_relays(&self, pkt: &[u8]) -> bool {
        let Some(r) = self.replica.as_ref() else {
            return false;
        };
        if !r.policy.relay {
            return false;
        }
        if pkt.first().is_some_and(|b| b >> 4 == 6) && pkt.len() >= 40 {
            let mut d = [0u8; 16];
            d.copy_from_slice(&pkt[24..40]);
            let dst = std::net::Ipv6Addr::from(d);
            return self.cfg.tunnel_addr_v6 != Some(dst) && self.map.lookup_v6(dst).is_some();
        }
        Ipv4Packet::new_checked(pkt)
            .is_ok_and(|ip| ip.dst() != self.cfg.tunnel_addr && self.map.lookup(ip.dst()).is_some())
    }
}

/// Adds `b`'s counters to `a` (the primary's and its replicas').
pub(super) fn add_counters(a: &mut Counters, b: &Counters) {
    let Counters {
        tun_rx,
        tun_tx,
        tun_gso_rx,
        tun_gro_tx,
        gre_tx,
        gre_rx,
        esp_tx,
        esp_rx,
        udp_esp_tx,
        udp_esp_rx,
        ike_rx,
        keepalive_rx,
        nhrp_rx,
        no_route,
        no_sa,
        unsupported,
        malformed,
        unprotected,
        wrong_peer,
        esp_dropped,
        icmp_too_big,
        fragments,
        pending_dropped,
        send_errors,
        direct_tx,
        recv_errors,
        queue_full,
        mcast_rx,
        mcast_tx,
        mcast_no_sa,
        mcast_no_peer,
        last,
    } = *b;
    a.tun_rx += tun_rx;
    a.tun_tx += tun_tx;
    a.tun_gso_rx += tun_gso_rx;
    a.tun_gro_tx += tun_gro_tx;
    a.gre_tx += gre_tx;
    a.gre_rx += gre_rx;
    a.esp_tx += esp_tx;
    a.esp_rx += esp_rx;
    a.udp_esp_tx += udp_esp_tx;
    a.udp_esp_rx += udp_esp_rx;
    a.ike_rx += ike_rx;
    a.keepalive_rx += keepalive_rx;
    a.nhrp_rx += nhrp_rx;
    a.no_route += no_route;
    a.no_sa += no_sa;
    a.unsupported += unsupported;
    a.malformed += malformed;
    a.unprotected += unprotected;
    a.wrong_peer += wrong_peer;
    a.esp_dropped += esp_dropped;
    a.icmp_too_big += icmp_too_big;
    a.fragments += fragments;
    a.pending_dropped += pending_dropped;
    a.send_errors += send_errors;
    a.direct_tx += direct_tx;
    a.recv_errors += recv_errors;
    a.queue_full += queue_full;
    a.mcast_rx += mcast_rx;
    a.mcast_tx += mcast_tx;
    a.mcast_no_sa += mcast_no_sa;
    a.mcast_no_peer += mcast_no_peer;
    let l = &mut a.last;
    l.unprotected_src = l.unprotected_src.or(last.unprotected_src);
    l.wrong_peer_src = l.wrong_peer_src.or(last.wrong_peer_src);
    l.no_route_dst = l.no_route_dst.or(last.no_route_dst);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{A, B, inner, pair, sa};
    use super::*;
    use crate::datapath::esp;
    use crate::engine::Command;

    const T1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const T2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    /// The ESP packets (outer IPv4 header included) `e` queued, taken out.
    fn sent_esp(e: &mut Engine) -> Vec<Vec<u8>> {
        let b = e.batches();
        let v = (0..b.esp.len()).map(|i| b.esp.get(i).to_vec()).collect();
        b.esp.clear();
        v
    }

    fn seq(ip: &[u8]) -> u32 {
        esp::parse_header(&ip[20..]).unwrap().1
    }

    #[test]
    fn a_replica_seals_with_the_shared_sa_and_hands_back_what_it_cannot_settle() {
        let (mut a, mut b) = pair(Protection::Esp);
        a.enable_replication();
        let mut w = a.replica(WorkerPolicy::default());
        let p = inner(T1, T2, 200, false);
        for _ in 0..10 {
            a.outbound(&p);
            w.outbound(&p);
        }
        let mut esp = sent_esp(&mut a);
        esp.extend(sent_esp(&mut w));
        let mut seqs: Vec<u32> = esp.iter().map(|e| seq(e)).collect();
        seqs.sort();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "one SA, one sequence");
        for e in &esp {
            b.inbound_esp_ip(e);
        }
        assert_eq!(b.tun_out.len(), 20, "every packet opens once");
        assert_eq!(w.poll_punt(), None);

        // Not the replica's to settle: multicast, too big with DF, no SA.
        let mcast = inner(T1, Ipv4Addr::new(224, 0, 0, 10), 60, false);
        let big = inner(T1, T2, 1450, true);
        w.outbound(&mcast);
        w.outbound(&big);
        a.apply(Command::RemovePeerSas(IpAddr::V4(B)));
        while let Some(u) = a.poll_update() {
            w.apply_update(u);
        }
        w.outbound(&p);
        let punts: Vec<Punt> = std::iter::from_fn(|| w.poll_punt()).collect();
        assert_eq!(
            punts,
            vec![Punt::Tun(mcast), Punt::Tun(big), Punt::Tun(p.clone())]
        );
        // A destination with no peer is dropped and counted, as the primary does.
        w.outbound(&inner(T1, Ipv4Addr::new(10, 9, 9, 9), 60, false));
        assert_eq!((w.poll_punt(), w.counters.no_route), (None, 1));
        // Only what the replica forwarded counts as read by it.
        assert_eq!(w.counters.tun_rx, 11);
    }

    #[test]
    fn updates_bring_a_replica_up_to_date() {
        let (mut a, _) = pair(Protection::Esp);
        a.enable_replication();
        let mut w = a.replica(WorkerPolicy::default());
        let c = Ipv4Addr::new(172, 16, 0, 3);
        let t3 = Ipv4Addr::new(192, 168, 1, 3);
        let peer = Peer {
            nbma: c,
            protection: Protection::Esp,
        };
        a.apply(Command::MapInsert {
            prefix: t3.into(),
            len: 32,
            peer,
        });
        let sa = OutboundSa::new(&sa(0x300, c), &[7; 24]).unwrap();
        a.apply(Command::InsertOutbound(Arc::new(sa)));
        let p = inner(T1, t3, 100, false);
        w.outbound(&p);
        assert_eq!(w.counters.no_route, 1, "not known before the updates");
        while let Some(u) = a.poll_update() {
            w.apply_update(u);
        }
        w.outbound(&p);
        let esp = sent_esp(&mut w);
        assert_eq!((esp.len(), w.poll_punt()), (1, None));
        assert_eq!(esp::parse_header(&esp[0][20..]).unwrap().0, 0x300);
        a.apply(Command::MapRemove {
            prefix: t3.into(),
            len: 32,
        });
        while let Some(u) = a.poll_update() {
            w.apply_update(u);
        }
        w.outbound(&p);
        assert_eq!(w.counters.no_route, 2);
    }

    #[test]
    fn esp_for_an_spi_the_replica_does_not_know_is_opened_by_the_primary_once_keyed() {
        let (mut a, mut b) = pair(Protection::Esp);
        b.enable_replication();
        let mut w = b.replica(WorkerPolicy::default());
        // A rekeys: its new outbound SA overtakes B's inbound half.
        let new_out = OutboundSa::new(&sa(0x200, B), &[6; 24]).unwrap();
        a.apply(Command::InsertOutbound(Arc::new(new_out)));
        let p = inner(T1, T2, 100, false);
        a.outbound(&p);
        let esp = sent_esp(&mut a);
        w.inbound_esp_ip(&esp[0]);
        let Some(Punt::Esp { src, esp: held }) = w.poll_punt() else {
            panic!("handed back");
        };
        assert_eq!((src, &held[..]), (A, &esp[0][20..]));
        b.inbound_punted_esp(src, &held);
        assert_eq!(b.tun_out.len(), 0);
        b.apply(Command::InsertInbound(Arc::new(
            InboundSa::new(&sa(0x200, A)).unwrap(),
        )));
        assert_eq!(b.tun_out.get(0), &p[..]);
        let (c, g) = w.own_counters();
        b.set_replica_counters(0, c, g);
        let st = b.stats();
        assert_eq!(
            (st.counters.esp_rx, st.counters.esp_dropped, st.invalid_spi),
            (1, 0, 0),
            "received once, not dropped: {st:?}"
        );
    }

    #[test]
    fn a_hub_replica_hands_back_packets_for_another_spoke_and_nhrp() {
        let (mut spoke, mut hub) = pair(Protection::None);
        hub.enable_replication();
        let mut w = hub.replica(WorkerPolicy {
            relay: true,
            ..WorkerPolicy::default()
        });
        let to_hub = inner(T2, T2, 80, false);
        let to_other = inner(T2, T1, 80, false);
        let peer = Peer {
            nbma: B,
            protection: Protection::None,
        };
        spoke.encap(&to_hub, 0, peer);
        spoke.encap(&to_other, 0, peer);
        spoke.apply(Command::SendNhrp {
            peer,
            packet: vec![0, 1, 2, 3],
        });
        let b = spoke.batches();
        let gre: Vec<Vec<u8>> = (0..b.gre.len()).map(|i| b.gre.get(i).to_vec()).collect();
        for g in &gre {
            w.inbound_gre_ip(g);
        }
        assert_eq!(w.tun_out.len(), 1);
        assert_eq!(w.tun_out.get(0), &to_hub[..]);
        assert_eq!(
            std::iter::from_fn(|| w.poll_punt()).collect::<Vec<_>>(),
            vec![
                Punt::Event(Event::Nhrp {
                    src: A,
                    packet: vec![0, 1, 2, 3]
                }),
                Punt::Relay(to_other)
            ]
        );
    }
}
