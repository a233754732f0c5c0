//! The forwarding engine: inner packets (MTU check, GRE, ESP) out to
//! the underlay, underlay packets (ESP, GRE) in to the inner side.
//!
//! [`Engine`] holds every forwarding decision and its state (SADB, peer
//! map, counters, outgoing batches) and works synchronously on byte
//! slices. It never does I/O: what it wants sent waits in its batches,
//! NHRP and IKE messages it received wait as [`Event`]s, and the
//! [`crate::Router`] moves both between the engine, the node and the
//! driver.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::Arc;

use crate::batch::SendBatch;
use crate::datapath::esp::{self, NEXT_HEADER_GRE, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, Transform};
use crate::datapath::gre::{self, GreCounters, PROTO_IPV4, PROTO_IPV6, PROTO_NHRP};
use crate::datapath::mtu::{self, MtuAction};
use crate::datapath::sadb::{InboundSa, Mode, OutboundSa, SaSnapshot, Sadb, SadbError};
use crate::router::{Datagram, IKE_PORT};
use dmvpn_wire::gre::GreRepr;
use dmvpn_wire::ipv4::{HEADER_LEN as IPV4_HEADER_LEN, Ipv4Packet, Ipv4Repr, PROTO_ESP, PROTO_GRE};
use dmvpn_wire::natt::{self, Natt};
use dmvpn_wire::{Prefix, PrefixMap};

mod replica;
pub use replica::{Punt, Update, WorkerPolicy};

/// Largest datagram handled (inner packet + all headers).
pub const BUF_SIZE: usize = 2048;
/// Path MTU assumed on the NBMA network (Ethernet): outer packets are
/// kept within it, since raw sockets with our own IP header do not fragment.
pub const NBMA_MTU: usize = 1500;
/// Packets per send batch.
pub const BATCH: usize = 64;
/// Flush a batch once fewer slots than this are free (room for a fragmented packet).
const FLUSH_FREE: usize = 48;
/// A packet waiting for an SA: GRE protocol type, TOS, payload.
type Held = (u16, u8, Vec<u8>);

/// Queue bound for NHRP/IKE messages waiting for the control plane.
const CONTROL_QUEUE: usize = 256;
/// Packets held per peer while its SA is negotiated.
pub const PENDING_PER_PEER: usize = 32;
/// Peers that may have packets held at once.
pub const PENDING_PEERS: usize = 64;

/// How packets to a peer are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protection {
    /// Plain GRE over raw IP protocol 47.
    None,
    /// GRE in ESP transport mode over raw IP protocol 50.
    Esp,
    /// GRE in ESP-in-UDP (NAT-T, RFC 3948) to this UDP port.
    EspUdp { port: u16 },
}

/// Where an overlay destination is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub nbma: Ipv4Addr,
    pub protection: Protection,
}

/// Overlay prefixes → peers, answered by longest-prefix match (static
/// NHRP maps now, the NHRP cache later).
#[derive(Debug, Clone, Default)]
pub struct PeerMap {
    prefixes: PrefixMap<Peer>,
    /// Entries whose peer is reached through ESP: while there are none,
    /// plain GRE needs no per-packet search for its source's protection.
    protected: usize,
}

impl PeerMap {
    pub fn new() -> Self {
        Self::default()
    }

    fn put(&mut self, prefix: Prefix, peer: Peer) {
        self.protected += usize::from(peer.protection != Protection::None);
        if let Some(old) = self.prefixes.insert(prefix, peer) {
            self.protected -= usize::from(old.protection != Protection::None);
        }
    }

    fn take(&mut self, prefix: Prefix) {
        if let Some(old) = self.prefixes.remove(&prefix) {
            self.protected -= usize::from(old.protection != Protection::None);
        }
    }

    /// Adds or replaces `prefix/len → peer` (either overlay family).
    pub fn insert(&mut self, prefix: impl Into<IpAddr>, len: u8, peer: Peer) {
        self.put(Prefix::new(prefix.into(), len), peer);
    }

    pub fn remove(&mut self, prefix: impl Into<IpAddr>, len: u8) {
        self.take(Prefix::new(prefix.into(), len));
    }

    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Peer> {
        self.prefixes.lookup_v4(dst)
    }

    /// Adds or replaces an IPv6 overlay prefix `prefix/len → peer`.
    pub fn insert_v6(&mut self, prefix: Ipv6Addr, len: u8, peer: Peer) {
        self.put(Prefix::new(IpAddr::V6(prefix), len), peer);
    }

    pub fn remove_v6(&mut self, prefix: Ipv6Addr, len: u8) {
        self.take(Prefix::new(IpAddr::V6(prefix), len));
    }

    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<&Peer> {
        self.prefixes.lookup_v6(dst)
    }

    /// The protection configured for traffic from NBMA address `nbma`, if
    /// known (the first entry naming it, longest prefix first).
    pub fn protection_of(&self, nbma: Ipv4Addr) -> Option<Protection> {
        self.prefixes
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.nbma == nbma)
            .map(|p| p.protection)
    }

    /// The map's entry for `nbma` names ESP, so plain GRE from it is refused.
    pub fn requires_esp(&self, nbma: Ipv4Addr) -> bool {
        self.protected > 0
            && matches!(
                self.protection_of(nbma),
                Some(Protection::Esp | Protection::EspUdp { .. })
            )
    }
}

/// Static settings of one tunnel's data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Our NBMA (underlay) address: source of outer packets.
    pub local_nbma: Ipv4Addr,
    /// Our tunnel address: source of ICMP errors sent into the TUN.
    pub tunnel_addr: Ipv4Addr,
    /// Our IPv6 tunnel address, source of ICMPv6 errors (if the overlay has IPv6).
    pub tunnel_addr_v6: Option<Ipv6Addr>,
    /// Tunnel IP MTU (largest inner packet).
    pub mtu: u16,
    /// GRE key (IOS `tunnel key`).
    pub gre_key: Option<u32>,
    /// Outer TTL (Cisco sends 255).
    pub outer_ttl: u8,
    /// Listen for ESP-in-UDP and IKE on this UDP port (normally 4500).
    pub natt_port: Option<u16>,
    /// The tunnel is protected (`tunnel protection`): plain GRE (data and
    /// NHRP) is dropped from every source, as IOS drops it
    /// (`%CRYPTO-4-RECVD_PKT_NOT_IPSEC`). Without it, plain GRE is still
    /// dropped from peers whose map entry names ESP (manual SAs).
    pub require_protection: bool,
}

/// Data-plane counters not tied to one SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Inner packets read from the TUN (segments of a super-packet each count).
    pub tun_rx: u64,
    /// Inner packets written to the TUN (each coalesced segment counts).
    pub tun_tx: u64,
    /// Offloaded TUN reads that held a TCP/UDP super-packet, cut into segments.
    pub tun_gso_rx: u64,
    /// Super-packets written to the TUN, each coalesced from several segments.
    pub tun_gro_tx: u64,
    pub gre_tx: u64,
    pub gre_rx: u64,
    pub esp_tx: u64,
    pub esp_rx: u64,
    pub udp_esp_tx: u64,
    pub udp_esp_rx: u64,
    pub ike_rx: u64,
    pub keepalive_rx: u64,
    pub nhrp_rx: u64,
    /// Inner packets with no peer for their destination.
    pub no_route: u64,
    /// Inner packets for an ESP peer with no outbound SA yet.
    pub no_sa: u64,
    /// Inner packets that are not IPv4 (the peer map is IPv4 only).
    pub unsupported: u64,
    pub malformed: u64,
    /// Plain GRE on a protected tunnel, or from a peer that must use ESP.
    pub unprotected: u64,
    /// ESP whose SA belongs to another peer than the packet's source.
    pub wrong_peer: u64,
    pub esp_dropped: u64,
    pub icmp_too_big: u64,
    pub fragments: u64,
    /// Packets that found no room while waiting for an SA.
    pub pending_dropped: u64,
    pub send_errors: u64,
    /// Outer packets handed straight to the underlay device (of gre_tx, esp_tx).
    pub direct_tx: u64,
    pub recv_errors: u64,
    pub queue_full: u64,
    /// Multicast/broadcast inner packets read from the TUN.
    pub mcast_rx: u64,
    /// Copies of those sent, one per NBMA in the multicast list.
    pub mcast_tx: u64,
    /// Copies not sent: the peer has no outbound SA yet (never held).
    pub mcast_no_sa: u64,
    /// Multicast packets with an empty multicast list.
    pub mcast_no_peer: u64,
    /// The last drop of each kind that names an address, for the node's
    /// rate-limited log lines.
    pub last: LastDrops,
}

/// Addresses of the most recent drops, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastDrops {
    /// NBMA source of the last plain GRE packet dropped as unprotected.
    pub unprotected_src: Option<Ipv4Addr>,
    /// NBMA source of the last ESP packet whose SA belongs to another peer.
    pub wrong_peer_src: Option<Ipv4Addr>,
    /// Inner destination of the last packet with no tunnel next hop.
    pub no_route_dst: Option<Ipv4Addr>,
}

/// Everything an operator or a test wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneStats {
    pub counters: Counters,
    pub gre: GreCounters,
    pub sas: Vec<SaSnapshot>,
    /// `#pkts invalid sa (rcv)`.
    pub invalid_spi: u64,
}

/// The synchronous core of the data plane.
pub struct Engine {
    cfg: DataplaneConfig,
    sadb: Sadb,
    map: PeerMap,
    gre_counters: GreCounters,
    counters: Counters,
    /// Outer packets (IPv4 header included) for the raw GRE socket.
    gre_out: SendBatch,
    /// Outer packets (IPv4 header included) for the raw ESP socket.
    esp_out: SendBatch,
    /// ESP datagrams for the UDP socket.
    udp_out: SendBatch,
    /// Inner packets for the TUN device.
    tun_out: SendBatch,
    /// NHRP packets received (source NBMA, NHRP bytes after GRE).
    nhrp_in: VecDeque<(Ipv4Addr, Vec<u8>)>,
    /// IKE messages received on the NAT-T port (marker removed).
    ike_in: VecDeque<(SocketAddrV4, Vec<u8>)>,
    /// Peers that had traffic but no outbound SA (IKE should initiate), once each.
    need_sa: VecDeque<Ipv4Addr>,
    /// Packets waiting for an outbound SA, per peer (bounded).
    pending: HashMap<Ipv4Addr, (Peer, VecDeque<Held>)>,
    /// NBMA peers multicast and broadcast are replicated to (NHRP's
    /// multicast list: registered spokes on a hub, NHSs on a spoke).
    multicast: Vec<Peer>,
    /// The tunnel subnet's directed broadcast, replicated like multicast.
    broadcast: Option<Ipv4Addr>,
    ident: u16,
    scratch: Box<[u8]>,
    scratch2: Box<[u8]>,
    /// Lay ESP packets out and encrypt them together at
    /// [`Engine::finish_seals`] (done by [`Engine::batches`] before sending), instead
    /// of one by one: CBC chains of several packets then share the
    /// cipher's parallel blocks. Off by default, so that queued packets are
    /// complete as soon as they are queued.
    defer_seal: bool,
    deferred: Vec<Deferred>,
    /// The last [`HELD_UNKNOWN_SPI`] ESP packets whose SPI was unknown,
    /// tried again when an inbound SA is installed: a peer's first packets
    /// on a new SA can overtake the Quick Mode message that keys it (they
    /// arrive on another socket, and either may be read first).
    unknown_spi: VecDeque<(Ipv4Addr, Vec<u8>)>,
    /// Set on a forwarding worker's replica ([`Engine::replica`]).
    replica: Option<replica::ReplicaState>,
    /// Changes recorded for replicas ([`Engine::enable_replication`]).
    updates: Option<VecDeque<Update>>,
    /// The replicas' counters as they last reported them.
    replica_counters: Vec<(Counters, GreCounters)>,
}

/// ESP packets with an unknown SPI kept for a moment (see `Engine::unknown_spi`).
const HELD_UNKNOWN_SPI: usize = 8;

/// An ESP packet queued in clear, waiting for [`Engine::finish_seals`].
struct Deferred {
    udp: bool,
    idx: usize,
    off: usize,
    len: usize,
    transform: Arc<Transform>,
}

impl Engine {
    pub fn new(cfg: DataplaneConfig, sadb: Sadb, map: PeerMap) -> Self {
        Engine {
            cfg,
            sadb,
            map,
            gre_counters: GreCounters::default(),
            counters: Counters::default(),
            gre_out: SendBatch::new(BATCH, BUF_SIZE),
            esp_out: SendBatch::new(BATCH, BUF_SIZE),
            udp_out: SendBatch::new(BATCH, BUF_SIZE),
            tun_out: SendBatch::new(BATCH, BUF_SIZE),
            nhrp_in: VecDeque::new(),
            ike_in: VecDeque::new(),
            need_sa: VecDeque::new(),
            pending: HashMap::new(),
            multicast: Vec::new(),
            broadcast: None,
            ident: 0,
            scratch: vec![0u8; BUF_SIZE].into_boxed_slice(),
            scratch2: vec![0u8; BUF_SIZE].into_boxed_slice(),
            defer_seal: false,
            deferred: Vec::with_capacity(2 * BATCH),
            unknown_spi: VecDeque::new(),
            replica: None,
            updates: None,
            replica_counters: Vec::new(),
        }
    }

    pub fn stats(&self) -> DataplaneStats {
        let (counters, gre) = self.total_counters();
        DataplaneStats {
            counters,
            gre,
            sas: self.sadb.snapshot(),
            invalid_spi: self.sadb.invalid_spi,
        }
    }

    /// This engine's counters with its replicas' added.
    pub fn total_counters(&self) -> (Counters, GreCounters) {
        let (mut counters, mut gre) = (self.counters, self.gre_counters.clone());
        for (c, g) in &self.replica_counters {
            replica::add_counters(&mut counters, c);
            gre.add(g);
        }
        (counters, gre)
    }

    /// The settings this engine was built with.
    pub fn config(&self) -> &DataplaneConfig {
        &self.cfg
    }

    /// The SA database (read-only: SAs change through [`Engine::apply`]).
    pub fn sadb(&self) -> &Sadb {
        &self.sadb
    }

    /// The overlay prefix → peer map.
    pub fn peer_map(&self) -> &PeerMap {
        &self.map
    }

    /// Whether an outbound SA to `peer` is installed.
    pub fn has_outbound(&self, peer: IpAddr) -> bool {
        self.sadb.has_outbound(peer)
    }

    /// Counters a driver adds to (send and receive errors, TUN writes).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Our NBMA address changed: outer packets leave from `nbma`.
    pub fn set_local_nbma(&mut self, nbma: Ipv4Addr) {
        self.cfg.local_nbma = nbma;
        self.record_config();
    }

    /// A reload changed the tunnel: the GRE key (outgoing packets carry
    /// the new one, incoming ones are checked against it), whether plain
    /// GRE is refused, the tunnel address, the MTU and the NBMA address.
    pub fn set_tunnel(&mut self, cfg: &DataplaneConfig) {
        self.cfg.mtu = cfg.mtu;
        self.cfg.gre_key = cfg.gre_key;
        self.cfg.require_protection = cfg.require_protection;
        self.cfg.tunnel_addr = cfg.tunnel_addr;
        self.cfg.local_nbma = cfg.local_nbma;
        self.record_config();
    }

    /// The tunnel starts again under `cfg` (a reload changed its role or
    /// mode): every SA, route, held packet and the multicast list go.
    /// The interface counters and what is already queued for sending stay.
    pub fn restart_tunnel(&mut self, cfg: &DataplaneConfig) {
        self.cfg = cfg.clone();
        let invalid_spi = self.sadb.invalid_spi;
        self.sadb = Sadb::new();
        self.sadb.invalid_spi = invalid_spi;
        self.map = PeerMap::new();
        self.pending.clear();
        self.need_sa.clear();
        self.multicast.clear();
        self.broadcast = None;
        self.record(|| Update::Restart(cfg.clone()));
    }

    /// Defer ESP encryption to [`Engine::batches`] (see `defer_seal`).
    pub fn set_defer_seal(&mut self, on: bool) {
        self.defer_seal = on;
    }

    /// Replaces the send batches with `n` buffers of `size` bytes each
    /// (GRE, ESP, UDP, TUN); packets queued so far are dropped.
    pub fn set_batch_sizes(&mut self, sizes: BatchSizes) {
        self.gre_out = SendBatch::new(sizes.gre, sizes.size);
        self.esp_out = SendBatch::new(sizes.esp, sizes.size);
        self.udp_out = SendBatch::new(sizes.udp, sizes.size);
        self.tun_out = SendBatch::new(sizes.tun, sizes.size);
        self.deferred.clear();
    }

    /// Everything queued for sending, ESP sealed: the driver writes each
    /// batch out and clears it.
    pub fn batches(&mut self) -> Batches<'_> {
        self.finish_seals();
        Batches {
            tun: &mut self.tun_out,
            gre: &mut self.gre_out,
            esp: &mut self.esp_out,
            udp: &mut self.udp_out,
            counters: &mut self.counters,
        }
    }

    /// Inner packets waiting for the TUN.
    pub fn tun_out(&self) -> &SendBatch {
        &self.tun_out
    }

    /// Outer packets (IPv4 header included) waiting for the raw GRE socket.
    pub fn gre_out(&self) -> &SendBatch {
        &self.gre_out
    }

    /// Outer packets (IPv4 header included) waiting for the raw ESP socket.
    pub fn esp_out(&self) -> &SendBatch {
        &self.esp_out
    }

    /// ESP-in-UDP (and NAT-T IKE) datagrams waiting for the UDP socket.
    pub fn udp_out(&self) -> &SendBatch {
        &self.udp_out
    }

    /// Takes the inner packets of `tun_out` from index `from` on for which
    /// `take` says yes out of the batch (copied into `taken`), keeping the
    /// order of the others.
    pub(crate) fn take_tun_from(
        &mut self,
        from: usize,
        mut take: impl FnMut(&[u8]) -> bool,
        taken: &mut Vec<Vec<u8>>,
    ) {
        self.tun_out.retain_from(from, |p| {
            if take(p) {
                taken.push(p.to_vec());
                false
            } else {
                true
            }
        });
    }

    /// True when some batch should be sent before more packets are processed.
    pub fn should_flush(&self) -> bool {
        [&self.gre_out, &self.esp_out, &self.udp_out, &self.tun_out]
            .iter()
            .any(|b| BATCH - b.len() < FLUSH_FREE)
    }

    /// True when every batch has room for what [`Engine::outbound`] may
    /// queue for `pkt`: its fragments, one copy per multicast peer, or an
    /// ICMP error. Checking this per packet instead of
    /// [`Engine::should_flush`] lets batches fill up.
    pub fn has_room_for(&self, pkt: &[u8]) -> bool {
        let per_frag = usize::from(self.cfg.mtu)
            .saturating_sub(IPV4_HEADER_LEN)
            .max(8);
        let mut need = pkt.len() / per_frag + 2;
        if pkt.len() >= IPV4_HEADER_LEN && pkt[0] >> 4 == 4 {
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            if dst.is_multicast() || dst.is_broadcast() || Some(dst) == self.broadcast {
                need = need.max(self.multicast.len() + 1);
            }
        }
        [&self.gre_out, &self.esp_out, &self.udp_out, &self.tun_out]
            .iter()
            .all(|b| b.free() >= need)
    }

    /// Handles one inner packet read from the TUN.
    pub fn outbound(&mut self, pkt: &[u8]) {
        if let Some(policy) = self.replica.as_ref().map(|r| r.policy) {
            self.replica_outbound(pkt, policy);
            return;
        }
        self.counters.tun_rx += 1;
        let Ok(info) = Ipv4Packet::new_checked(pkt) else {
            if pkt.first().is_some_and(|b| b >> 4 == 6) {
                self.outbound_v6(pkt);
            } else {
                self.counters.malformed += 1;
            }
            return;
        };
        let pkt = info.as_bytes();
        let (dst, tos) = (info.dst(), info.tos());
        if dst.is_multicast() || dst.is_broadcast() || Some(dst) == self.broadcast {
            self.replicate(pkt, tos);
            return;
        }
        let Some(peer) = self.map.lookup(dst).copied() else {
            self.counters.no_route += 1;
            self.counters.last.no_route_dst = Some(dst);
            return;
        };
        let path_mtu = self.path_mtu(pkt.len(), peer);
        match mtu::classify(pkt, path_mtu) {
            Ok(MtuAction::Fits) => self.encap(pkt, tos, peer),
            Ok(MtuAction::TooBig) => {
                let Some(buf) = self.tun_out.next_buf() else {
                    self.counters.queue_full += 1;
                    return;
                };
                if let Ok(n) =
                    mtu::icmp_frag_needed(pkt, path_mtu as u16, self.cfg.tunnel_addr, buf)
                {
                    self.tun_out
                        .commit(n, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
                    self.counters.icmp_too_big += 1;
                }
            }
            Ok(MtuAction::Fragment) => {
                let mut frag_buf = std::mem::take(&mut self.scratch2);
                let mut frags = 0u64;
                let _ = mtu::fragment_ipv4(pkt, path_mtu, &mut frag_buf, |f| {
                    frags += 1;
                    self.encap(f, tos, peer);
                });
                self.counters.fragments += frags;
                self.scratch2 = frag_buf;
            }
            Err(_) => self.counters.malformed += 1,
        }
    }

    /// The largest inner IPv4 packet of `len` bytes or less that reaches
    /// `peer` in one outer packet: the tunnel MTU, or less when GRE, ESP
    /// (tunnel mode above all) and NAT-T headers would push the outer
    /// packet past [`NBMA_MTU`]. Larger packets are fragmented before
    /// encryption, or answered with "fragmentation needed" if DF is set,
    /// as IOS does by default (`crypto ipsec fragmentation before-encryption`).
    fn path_mtu(&self, len: usize, peer: Peer) -> usize {
        let mtu = usize::from(self.cfg.mtu);
        // Outer IPv4, UDP, tunnel-mode IPv4, GRE with key, ESP header, IV,
        // padding, trailer and ICV: 113 bytes at most.
        if len.min(mtu) + 128 <= NBMA_MTU {
            return mtu;
        }
        let gre = GreRepr::new(PROTO_IPV4, self.cfg.gre_key).header_len();
        let outer = |inner: usize| -> usize {
            match peer.protection {
                Protection::None => IPV4_HEADER_LEN + gre + inner,
                Protection::Esp | Protection::EspUdp { .. } => {
                    let Some(sa) = self.sadb.outbound(IpAddr::V4(peer.nbma)) else {
                        return 0; // no SA: the packet waits or is dropped anyway
                    };
                    let tunnel = if sa.mode == Mode::Tunnel {
                        IPV4_HEADER_LEN
                    } else {
                        0
                    };
                    let udp = if matches!(peer.protection, Protection::EspUdp { .. }) {
                        8
                    } else {
                        0
                    };
                    IPV4_HEADER_LEN + udp + sa.sealed_len(tunnel + gre + inner)
                }
            }
        };
        let mut fit = mtu;
        while fit > 576 {
            let o = outer(fit);
            if o <= NBMA_MTU {
                break;
            }
            fit -= (o - NBMA_MTU).min(fit - 576);
        }
        fit
    }

    /// Replaces the multicast replication list and the tunnel broadcast address.
    pub fn set_multicast(&mut self, peers: Vec<Peer>, broadcast: Option<Ipv4Addr>) {
        self.multicast = peers;
        self.broadcast = broadcast;
    }

    /// The current multicast replication list.
    pub fn multicast(&self) -> &[Peer] {
        &self.multicast
    }

    /// Sends one copy of a multicast/broadcast packet to every peer in the
    /// multicast list. A peer without an outbound SA gets no copy (counted):
    /// routing protocols repeat their hellos, holding them would only delay
    /// unicast traffic queued for the SA.
    fn replicate(&mut self, pkt: &[u8], tos: u8) {
        self.counters.mcast_rx += 1;
        if self.multicast.is_empty() {
            self.counters.mcast_no_peer += 1;
            return;
        }
        if pkt.len() > usize::from(self.cfg.mtu) {
            // Multicast sources (routing daemons) size packets to the MTU.
            self.counters.malformed += 1;
            return;
        }
        let peers = std::mem::take(&mut self.multicast);
        for peer in &peers {
            if peer.protection != Protection::None
                && self.sadb.outbound(IpAddr::V4(peer.nbma)).is_none()
            {
                self.counters.mcast_no_sa += 1;
                if !self.need_sa.contains(&peer.nbma) && self.need_sa.len() < CONTROL_QUEUE {
                    self.need_sa.push_back(peer.nbma);
                }
                continue;
            }
            self.encap(pkt, tos, *peer);
            self.counters.mcast_tx += 1;
        }
        self.multicast = peers;
    }

    /// An inner IPv6 packet: no fragmentation by the tunnel (RFC 8200),
    /// so anything larger than the MTU gets an ICMPv6 Packet Too Big.
    fn outbound_v6(&mut self, pkt: &[u8]) {
        if pkt.len() < 40 {
            self.counters.malformed += 1;
            return;
        }
        let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
        if 40 + plen > pkt.len() {
            self.counters.malformed += 1;
            return;
        }
        let pkt = &pkt[..40 + plen];
        let mut d = [0u8; 16];
        d.copy_from_slice(&pkt[24..40]);
        let tclass = (pkt[0] << 4) | (pkt[1] >> 4);
        // ff00::/8 (OSPFv3, RIPng, ND on the tunnel) goes to the same
        // multicast list as IPv4 multicast.
        if Ipv6Addr::from(d).is_multicast() {
            self.replicate(pkt, tclass);
            return;
        }
        let Some(peer) = self.map.lookup_v6(Ipv6Addr::from(d)).copied() else {
            self.counters.no_route += 1;
            return;
        };
        if pkt.len() <= usize::from(self.cfg.mtu) {
            self.encap(pkt, tclass, peer);
            return;
        }
        let Some(router) = self.cfg.tunnel_addr_v6 else {
            self.counters.unsupported += 1;
            return;
        };
        let Some(buf) = self.tun_out.next_buf() else {
            self.counters.queue_full += 1;
            return;
        };
        if let Ok(n) = mtu::icmpv6_packet_too_big(pkt, u32::from(self.cfg.mtu), router, buf) {
            self.tun_out
                .commit(n, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
            self.counters.icmp_too_big += 1;
        }
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    fn outer_header(
        &mut self,
        buf: &mut [u8],
        dst: Ipv4Addr,
        protocol: u8,
        tos: u8,
        payload_len: usize,
    ) {
        Ipv4Repr {
            src: self.cfg.local_nbma,
            dst,
            protocol,
            tos,
            ttl: self.cfg.outer_ttl,
            ident: self.next_ident(),
            flags_frag: 0,
            payload_len,
        }
        .emit(buf)
        // Callers pass a 20-byte header buffer and a payload shorter
        // than BUF_SIZE, so the header always fits.
        .ok();
    }

    /// GRE-encapsulates `inner` (and protects it) for `peer`.
    fn encap(&mut self, inner: &[u8], tos: u8, peer: Peer) {
        let proto = if inner[0] >> 4 == 6 {
            PROTO_IPV6
        } else {
            PROTO_IPV4
        };
        self.encap_proto(inner, proto, tos, peer);
    }

    /// Sends `payload` with GRE protocol type `proto` to `peer`; used for
    /// inner packets and for NHRP from the control plane.
    pub fn encap_proto(&mut self, payload: &[u8], proto: u16, tos: u8, peer: Peer) {
        let gre = GreRepr::new(proto, self.cfg.gre_key);
        let gl = gre.header_len();
        let dst = SocketAddrV4::new(peer.nbma, 0);
        match peer.protection {
            Protection::None => {
                let Some(buf) = self.gre_out.next_buf() else {
                    self.counters.queue_full += 1;
                    return;
                };
                if gre
                    .emit_packet(payload, &mut buf[IPV4_HEADER_LEN..])
                    .is_err()
                {
                    self.counters.send_errors += 1;
                    return;
                }
                let len = IPV4_HEADER_LEN + gl + payload.len();
                let mut hdr = [0u8; IPV4_HEADER_LEN];
                self.outer_header(&mut hdr, peer.nbma, PROTO_GRE, tos, gl + payload.len());
                let Some(buf) = self.gre_out.next_buf() else {
                    return;
                };
                buf[..IPV4_HEADER_LEN].copy_from_slice(&hdr);
                self.gre_out.commit(len, dst);
                self.counters.gre_tx += 1;
                self.gre_counters.encapsulated += 1;
            }
            Protection::Esp | Protection::EspUdp { .. } => {
                // Tunnel mode (the IOS transform-set default) carries GRE
                // inside an IPv4 header between the two NBMA addresses;
                // transport mode carries GRE directly.
                let tunnel_mode = self.sadb.outbound(IpAddr::V4(peer.nbma)).map(|sa| sa.mode)
                    == Some(Mode::Tunnel);
                // GRE header, and in tunnel mode the NBMA IPv4 header before
                // it: small pieces copied once, with the payload, into place.
                let mut gh = [0u8; 16];
                if IPV4_HEADER_LEN + gl + payload.len() > self.scratch.len()
                    || gre.emit(&mut gh).is_err()
                {
                    self.counters.send_errors += 1;
                    return;
                }
                let mut th = [0u8; IPV4_HEADER_LEN];
                let next_header = if tunnel_mode {
                    self.outer_header(&mut th, peer.nbma, PROTO_GRE, tos, gl + payload.len());
                    NEXT_HEADER_IPV4
                } else {
                    NEXT_HEADER_GRE
                };
                let th: &[u8] = if tunnel_mode { &th } else { &[] };
                let parts = [th, &gh[..gl], payload];
                let udp = matches!(peer.protection, Protection::EspUdp { .. });
                let (batch, off) = if udp {
                    (&mut self.udp_out, 0)
                } else {
                    (&mut self.esp_out, IPV4_HEADER_LEN)
                };
                let idx = batch.len();
                let Some(buf) = batch.next_buf() else {
                    self.counters.queue_full += 1;
                    return;
                };
                let sealed = if self.defer_seal {
                    self.sadb
                        .seal_layout(IpAddr::V4(peer.nbma), next_header, &parts, &mut buf[off..])
                        .map(|(n, transform)| {
                            self.deferred.push(Deferred {
                                udp,
                                idx,
                                off,
                                len: n,
                                transform,
                            });
                            n
                        })
                } else {
                    let mut plen = 0;
                    for p in parts {
                        self.scratch[plen..plen + p.len()].copy_from_slice(p);
                        plen += p.len();
                    }
                    self.sadb.seal(
                        IpAddr::V4(peer.nbma),
                        next_header,
                        &self.scratch[..plen],
                        &mut buf[off..],
                    )
                };
                match sealed {
                    Ok(n) => {
                        self.gre_counters.encapsulated += 1;
                        if let Protection::EspUdp { port } = peer.protection {
                            self.udp_out.commit(n, SocketAddrV4::new(peer.nbma, port));
                            self.counters.udp_esp_tx += 1;
                        } else {
                            let mut hdr = [0u8; IPV4_HEADER_LEN];
                            self.outer_header(&mut hdr, peer.nbma, PROTO_ESP, tos, n);
                            let Some(buf) = self.esp_out.next_buf() else {
                                return;
                            };
                            buf[..IPV4_HEADER_LEN].copy_from_slice(&hdr);
                            self.esp_out.commit(IPV4_HEADER_LEN + n, dst);
                            self.counters.esp_tx += 1;
                        }
                    }
                    Err(SadbError::NoSa) => {
                        self.counters.no_sa += 1;
                        self.hold(peer, proto, tos, payload);
                        if !self.need_sa.contains(&peer.nbma) && self.need_sa.len() < CONTROL_QUEUE
                        {
                            self.need_sa.push_back(peer.nbma);
                        }
                    }
                    Err(SadbError::Seal(_)) => self.counters.send_errors += 1,
                }
            }
        }
    }

    /// Encrypts and authenticates the ESP packets laid out while
    /// [`Engine::defer_seal`] is on, up to eight at a time per transform.
    pub fn finish_seals(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let deferred = std::mem::take(&mut self.deferred);
        for udp in [false, true] {
            let batch = if udp {
                &mut self.udp_out
            } else {
                &mut self.esp_out
            };
            let mut bufs = batch.bufs_mut().enumerate();
            let mut group: Vec<&mut [u8]> = Vec::new();
            let mut current: Option<&Arc<Transform>> = None;
            for d in deferred.iter().filter(|d| d.udp == udp) {
                // Entries are in queue order: the buffer is ahead.
                let Some(buf) = bufs.by_ref().find(|(i, _)| *i == d.idx).map(|(_, b)| b) else {
                    continue;
                };
                let same = current.is_some_and(|t| Arc::ptr_eq(t, &d.transform));
                if !same || group.len() == esp::SEAL_GROUP {
                    if let Some(t) = current {
                        t.seal_finish(&mut group);
                    }
                    group.clear();
                    current = Some(&d.transform);
                }
                group.push(&mut buf[d.off..d.off + d.len]);
            }
            if let Some(t) = current {
                t.seal_finish(&mut group);
            }
        }
        self.deferred = deferred;
        self.deferred.clear();
    }

    /// Queues an IKE message for the NAT-T port, behind the non-ESP marker.
    pub fn send_ike(&mut self, dst: SocketAddrV4, msg: &[u8]) {
        let Some(b) = self.udp_out.next_buf() else {
            self.counters.queue_full += 1;
            return;
        };
        match natt::emit_ike(msg, b) {
            Ok(n) => self.udp_out.commit(n, dst),
            Err(_) => self.counters.queue_full += 1,
        }
    }

    /// Keeps a packet until the peer's SA is installed; drops (counted)
    /// past [`PENDING_PER_PEER`] packets or [`PENDING_PEERS`] peers.
    fn hold(&mut self, peer: Peer, proto: u16, tos: u8, payload: &[u8]) {
        if self.replica.is_some() {
            // The SA went between the replica's look-up and its seal: the
            // primary holds the packet and asks for a new one.
            self.punt(Punt::Tun(payload.to_vec()));
            return;
        }
        if !self.pending.contains_key(&peer.nbma) && self.pending.len() >= PENDING_PEERS {
            self.counters.pending_dropped += 1;
            return;
        }
        let q = &mut self
            .pending
            .entry(peer.nbma)
            .or_insert_with(|| (peer, VecDeque::new()))
            .1;
        if q.len() < PENDING_PER_PEER {
            q.push_back((proto, tos, payload.to_vec()));
        } else {
            self.counters.pending_dropped += 1;
        }
    }

    /// Sends the packets held for `nbma` (its SA has just been installed).
    fn release(&mut self, nbma: Ipv4Addr) {
        if let Some((peer, q)) = self.pending.remove(&nbma) {
            for (proto, tos, pkt) in q {
                self.encap_proto(&pkt, proto, tos, peer);
            }
        }
    }

    /// Forgets packets held for a peer whose SA negotiation failed.
    pub fn discard_pending(&mut self, nbma: Ipv4Addr) -> usize {
        self.pending.remove(&nbma).map_or(0, |(_, q)| q.len())
    }

    /// Handles an IPv4 packet from the raw GRE socket.
    pub fn inbound_gre_ip(&mut self, pkt: &[u8]) {
        let Ok(info) = Ipv4Packet::new_checked(pkt) else {
            self.counters.malformed += 1;
            return;
        };
        let src = info.src();
        if info.protocol() != PROTO_GRE || info.more_fragments() || info.frag_offset() != 0 {
            // Outer fragments are reassembled by the kernel before raw delivery;
            // anything else here is not ours.
            self.counters.malformed += 1;
            return;
        }
        self.counters.gre_rx += 1;
        if self.cfg.require_protection || self.map.requires_esp(src) {
            self.counters.unprotected += 1;
            self.counters.last.unprotected_src = Some(src);
            return;
        }
        self.inbound_gre(info.payload(), src);
    }

    /// Handles a GRE packet (after any ESP) from NBMA address `src`.
    fn inbound_gre(&mut self, g: &[u8], src: Ipv4Addr) {
        let h = match gre::decap(g, self.cfg.gre_key) {
            Ok(h) => h,
            Err(reason) => {
                self.gre_counters.count_drop(reason);
                return;
            }
        };
        self.gre_counters.decapsulated += 1;
        let payload = &g[h.header_len()..];
        match h.protocol {
            PROTO_NHRP => {
                self.counters.nhrp_rx += 1;
                if self.nhrp_in.len() < CONTROL_QUEUE {
                    self.nhrp_in.push_back((src, payload.to_vec()));
                } else {
                    self.counters.queue_full += 1;
                }
            }
            _ => self.deliver(payload),
        }
    }

    fn deliver(&mut self, pkt: &[u8]) {
        if self.replica_relays(pkt) {
            self.punt(Punt::Relay(pkt.to_vec()));
            return;
        }
        if !self
            .tun_out
            .push(pkt, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        {
            self.counters.queue_full += 1;
        }
    }

    /// Handles an IPv4 packet from the raw ESP socket.
    pub fn inbound_esp_ip(&mut self, pkt: &[u8]) {
        self.inbound_esp_burst(&[pkt]);
    }

    /// Datagrams from the underlay, in order: runs of ESP are
    /// authenticated together; IKE on port 500 goes to `ike(local,
    /// remote, message)`.
    pub fn underlay_burst<'a>(
        &mut self,
        datagrams: impl IntoIterator<Item = Datagram<'a>>,
        mut ike: impl FnMut(SocketAddrV4, SocketAddrV4, &'a [u8]),
    ) {
        let mut it = datagrams.into_iter().peekable();
        while let Some(k) = it.peek().map(kind) {
            let mut run = std::iter::from_fn(|| it.next_if(|d| kind(d) == k));
            match k {
                Kind::Gre => {
                    for d in run {
                        if let Datagram::Gre(p) = d {
                            self.inbound_gre_ip(p);
                        }
                    }
                }
                Kind::Esp => self.inbound_esp_packets(run.by_ref().filter_map(|d| match d {
                    Datagram::Esp(p) => Some(p),
                    _ => None,
                })),
                Kind::Natt => self.inbound_udp_datagrams(run.by_ref().filter_map(|d| match d {
                    Datagram::Udp {
                        remote, payload, ..
                    } => Some((payload, remote)),
                    _ => None,
                })),
                Kind::Ike => {
                    for d in run {
                        if let Datagram::Udp {
                            local,
                            remote,
                            payload,
                        } = d
                        {
                            ike(local, remote, payload);
                        }
                    }
                }
            }
        }
    }

    /// Handles a burst of IPv4 packets from the raw ESP socket (see
    /// [`EspRun`] for how they are opened).
    pub fn inbound_esp_burst(&mut self, pkts: &[&[u8]]) {
        self.inbound_esp_packets(pkts.iter().copied());
    }

    /// [`Engine::inbound_esp_burst`] on any sequence of packets.
    pub fn inbound_esp_packets<'a>(&mut self, pkts: impl Iterator<Item = &'a [u8]>) {
        let mut run = EspRun::new();
        for p in pkts {
            match esp_part(p) {
                Some((esp, src)) => {
                    self.counters.esp_rx += 1;
                    run.push(self, esp, src);
                }
                None => self.counters.malformed += 1,
            }
        }
        run.open(self);
    }

    /// Handles a datagram from the NAT-T UDP socket.
    pub fn inbound_udp(&mut self, d: &[u8], src: SocketAddrV4) {
        self.inbound_udp_burst(&[(d, src)]);
    }

    /// Handles a burst of datagrams from the NAT-T UDP socket: IKE
    /// messages are queued for the control plane, ESP is opened in runs
    /// as from the raw socket.
    pub fn inbound_udp_burst(&mut self, datagrams: &[(&[u8], SocketAddrV4)]) {
        self.inbound_udp_datagrams(datagrams.iter().copied());
    }

    /// [`Engine::inbound_udp_burst`] on any sequence of datagrams.
    pub fn inbound_udp_datagrams<'a>(
        &mut self,
        datagrams: impl Iterator<Item = (&'a [u8], SocketAddrV4)>,
    ) {
        let mut run = EspRun::new();
        for (d, src) in datagrams {
            match natt::demux(d) {
                Natt::Esp(esp) => {
                    self.counters.udp_esp_rx += 1;
                    run.push(self, esp, *src.ip());
                }
                Natt::Ike(msg) => {
                    self.counters.ike_rx += 1;
                    if self.ike_in.len() < CONTROL_QUEUE {
                        self.ike_in.push_back((src, msg.to_vec()));
                    } else {
                        self.counters.queue_full += 1;
                    }
                }
                Natt::Keepalive => self.counters.keepalive_rx += 1,
                Natt::Invalid => self.counters.malformed += 1,
            }
        }
        run.open(self);
    }

    fn inbound_esp(&mut self, esp: &[u8], src: Ipv4Addr, icv: Option<&[u8; esp::MAX_ICV_LEN]>) {
        let mut plain = std::mem::take(&mut self.scratch);
        match self.sadb.open_with(esp, &mut plain, icv) {
            Ok((peer, o)) => {
                if peer != IpAddr::V4(src) {
                    self.counters.wrong_peer += 1;
                    self.counters.last.wrong_peer_src = Some(src);
                } else {
                    let payload = &plain[..o.len];
                    match o.next_header {
                        NEXT_HEADER_GRE => self.inbound_gre(payload, src),
                        NEXT_HEADER_IPV4 => match Ipv4Packet::new_checked(payload) {
                            // Tunnel-mode GRE: the inner header is the NBMA pair.
                            Ok(i)
                                if i.protocol() == PROTO_GRE
                                    && i.frag_offset() == 0
                                    && !i.more_fragments() =>
                            {
                                self.inbound_gre(i.payload(), src)
                            }
                            Ok(_) => self.deliver(payload),
                            Err(_) => self.counters.malformed += 1,
                        },
                        NEXT_HEADER_IPV6 => self.deliver(payload),
                        _ => self.counters.malformed += 1,
                    }
                }
            }
            Err(esp::EspDrop::UnknownSpi) if self.replica.is_some() => {
                // The primary may know it, or hold the packet until it does;
                // it counts the packet if not.
                self.sadb.invalid_spi -= 1;
                self.punt(Punt::Esp {
                    src,
                    esp: esp.to_vec(),
                });
            }
            Err(e) => {
                self.counters.esp_dropped += 1;
                if e == esp::EspDrop::UnknownSpi {
                    // The oldest one's buffer is reused: a flood of unknown
                    // SPIs costs a copy per packet, no allocation.
                    let mut buf = match self.unknown_spi.len() {
                        HELD_UNKNOWN_SPI => self.unknown_spi.pop_front().map(|(_, b)| b),
                        _ => None,
                    }
                    .unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(esp);
                    self.unknown_spi.push_back((src, buf));
                }
            }
        }
        self.scratch = plain;
    }

    /// Opens the held packets for the inbound SA `spi` just installed;
    /// they no longer count as dropped for an unknown SPI.
    fn retry_unknown_spi(&mut self, spi: u32) {
        if self.unknown_spi.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.unknown_spi);
        for (src, esp) in held {
            if esp::parse_header(&esp).is_ok_and(|(s, _)| s == spi) {
                self.sadb.invalid_spi = self.sadb.invalid_spi.saturating_sub(1);
                self.counters.esp_dropped = self.counters.esp_dropped.saturating_sub(1);
                self.inbound_esp(&esp, src, None);
            } else {
                self.unknown_spi.push_back((src, esp));
            }
        }
    }
}

/// What a received datagram is, for handling runs of one kind together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gre,
    Esp,
    Ike,
    Natt,
}

fn kind(d: &Datagram<'_>) -> Kind {
    match d {
        Datagram::Gre(_) => Kind::Gre,
        Datagram::Esp(_) => Kind::Esp,
        Datagram::Udp { local, .. } if local.port() == IKE_PORT => Kind::Ike,
        Datagram::Udp { .. } => Kind::Natt,
    }
}

/// The ESP part and source of an IPv4 packet that carries ESP.
fn esp_part(pkt: &[u8]) -> Option<(&[u8], Ipv4Addr)> {
    let info = Ipv4Packet::new_checked(pkt).ok()?;
    (info.protocol() == PROTO_ESP).then(|| (info.payload(), info.src()))
}

/// Received ESP payloads (with their outer source) gathered so that the
/// ICVs of each run of packets for one SA are computed together
/// (HMAC-SHA1 hashes several packets side by side) before each packet is
/// opened in order. SAs change only between bursts, so each ICV is
/// checked against the SA it was computed for.
struct EspRun<'a> {
    esp: [&'a [u8]; ESP_RUN],
    src: [Ipv4Addr; ESP_RUN],
    len: usize,
}

/// Packets per [`EspRun`].
const ESP_RUN: usize = 16;

impl<'a> EspRun<'a> {
    fn new() -> Self {
        EspRun {
            esp: [&[]; ESP_RUN],
            src: [Ipv4Addr::UNSPECIFIED; ESP_RUN],
            len: 0,
        }
    }

    /// Adds a packet, opening the run first if it is full.
    fn push(&mut self, e: &mut Engine, esp: &'a [u8], src: Ipv4Addr) {
        if self.len == ESP_RUN {
            self.open(e);
        }
        self.esp[self.len] = esp;
        self.src[self.len] = src;
        self.len += 1;
    }

    /// Opens and handles every packet gathered, then empties the run.
    fn open(&mut self, e: &mut Engine) {
        let esp = &self.esp[..self.len];
        let spi = |p: &[u8]| esp::parse_header(p).ok().map(|(spi, _)| spi);
        let mut icvs = [[0u8; esp::MAX_ICV_LEN]; ESP_RUN];
        let mut computed = [false; ESP_RUN];
        let mut i = 0;
        while i < esp.len() {
            let id = spi(esp[i]);
            let mut j = i + 1;
            while j < esp.len() && spi(esp[j]) == id {
                j += 1;
            }
            if let Some(t) = id.and_then(|id| e.sadb.inbound_transform(id)) {
                t.icvs(&esp[i..j], &mut icvs[i..j]);
                computed[i..j].fill(true);
            }
            i = j;
        }
        for (k, p) in esp.iter().enumerate() {
            e.inbound_esp(p, self.src[k], computed[k].then_some(&icvs[k]));
        }
        self.len = 0;
    }
}

/// A change the node (or a test) asks of the engine.
pub enum Command {
    /// Send an NHRP packet (GRE protocol 0x2001) to a peer.
    SendNhrp {
        peer: Peer,
        packet: Vec<u8>,
    },
    /// Send an IKE message from the NAT-T socket (the non-ESP marker is added).
    SendIke {
        dst: SocketAddrV4,
        packet: Vec<u8>,
    },
    InsertInbound(Arc<InboundSa>),
    InsertOutbound(Arc<OutboundSa>),
    /// Remove every SA with this peer (`clear crypto sa peer`).
    RemovePeerSas(IpAddr),
    /// Add or replace an overlay prefix → peer mapping.
    MapInsert {
        prefix: IpAddr,
        len: u8,
        peer: Peer,
    },
    MapRemove {
        prefix: IpAddr,
        len: u8,
    },
    /// Remove one inbound SA (the old half of a rekey, a peer's delete).
    RemoveInbound(u32),
    /// Remove the peer's outbound SA if it still is `spi`.
    RemoveOutbound {
        peer: IpAddr,
        spi: u32,
    },
    /// Forget packets held for a peer whose negotiation failed.
    DiscardPending(Ipv4Addr),
    /// Replace the multicast replication list (NHRP multicast NBMAs) and
    /// the tunnel broadcast address.
    SetMulticast {
        peers: Vec<Peer>,
        broadcast: Option<Ipv4Addr>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SendNhrp { peer, .. } => write!(f, "SendNhrp({})", peer.nbma),
            Command::SendIke { dst, .. } => write!(f, "SendIke({dst})"),
            Command::InsertInbound(sa) => write!(f, "InsertInbound({:#x})", sa.spi),
            Command::InsertOutbound(sa) => write!(f, "InsertOutbound({})", sa.peer),
            Command::RemovePeerSas(p) => write!(f, "RemovePeerSas({p})"),
            Command::MapInsert { prefix, len, peer } => {
                write!(f, "MapInsert({prefix}/{len} -> {})", peer.nbma)
            }
            Command::MapRemove { prefix, len } => write!(f, "MapRemove({prefix}/{len})"),
            Command::SetMulticast { peers, .. } => write!(f, "SetMulticast({} peers)", peers.len()),
            Command::RemoveInbound(s) => write!(f, "RemoveInbound({s:#x})"),
            Command::RemoveOutbound { peer, spi } => write!(f, "RemoveOutbound({peer}, {spi:#x})"),
            Command::DiscardPending(p) => write!(f, "DiscardPending({p})"),
        }
    }
}

/// What the engine received for the node: NHRP and NAT-T IKE messages,
/// and peers that need an SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Nhrp {
        src: Ipv4Addr,
        packet: Vec<u8>,
    },
    Ike {
        src: SocketAddrV4,
        packet: Vec<u8>,
    },
    /// Traffic for this NBMA peer found no outbound SA.
    NeedSa {
        peer: Ipv4Addr,
    },
}

impl Engine {
    /// Applies one control-plane command.
    pub fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::SendNhrp { peer, packet } => self.encap_proto(&packet, PROTO_NHRP, 0xc0, peer),
            Command::SendIke { dst, packet } => self.send_ike(dst, &packet),
            Command::InsertInbound(sa) => {
                let spi = sa.spi;
                self.record(|| Update::Inbound(Arc::clone(&sa)));
                self.sadb.insert_inbound(sa);
                self.retry_unknown_spi(spi);
            }
            Command::InsertOutbound(sa) => {
                let peer = sa.peer;
                self.record(|| Update::Outbound(Arc::clone(&sa)));
                self.sadb.insert_outbound(sa);
                if let IpAddr::V4(p) = peer {
                    self.need_sa.retain(|x| *x != p);
                    self.release(p);
                }
            }
            Command::RemovePeerSas(peer) => {
                self.record(|| Update::RemovePeer(peer));
                self.sadb.remove_peer(peer);
                if let IpAddr::V4(p) = peer {
                    self.discard_pending(p);
                }
            }
            Command::MapInsert { prefix, len, peer } => {
                self.record(|| Update::Map {
                    prefix,
                    len,
                    peer: Some(peer),
                });
                self.map.insert(prefix, len, peer)
            }
            Command::MapRemove { prefix, len } => {
                self.record(|| Update::Map {
                    prefix,
                    len,
                    peer: None,
                });
                self.map.remove(prefix, len)
            }
            Command::SetMulticast { peers, broadcast } => {
                self.record(|| Update::Multicast {
                    peers: peers.clone(),
                    broadcast,
                });
                self.set_multicast(peers, broadcast)
            }
            Command::RemoveInbound(spi) => {
                self.record(|| Update::RemoveInbound(spi));
                self.sadb.remove_inbound(spi);
            }
            Command::RemoveOutbound { peer, spi } => {
                self.record(|| Update::RemoveOutbound { peer, spi });
                if self.sadb.outbound(peer).is_some_and(|o| o.spi == spi) {
                    self.sadb.remove_outbound(peer);
                }
            }
            Command::DiscardPending(p) => {
                self.discard_pending(p);
            }
        }
    }

    /// Handles an ESP packet (SPI onwards) from `src` that a replica
    /// handed back ([`Punt::Esp`]; already counted as received).
    pub fn inbound_punted_esp(&mut self, src: Ipv4Addr, esp: &[u8]) {
        let mut run = EspRun::new();
        run.push(self, esp, src);
        run.open(self);
    }

    /// The next message or request for the node: received NHRP, then
    /// NAT-T IKE, then peers that need an SA.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some((src, packet)) = self.nhrp_in.pop_front() {
            return Some(Event::Nhrp { src, packet });
        }
        if let Some((src, packet)) = self.ike_in.pop_front() {
            return Some(Event::Ike { src, packet });
        }
        self.need_sa.pop_front().map(|peer| Event::NeedSa { peer })
    }

    /// Whether [`Engine::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !(self.nhrp_in.is_empty() && self.ike_in.is_empty() && self.need_sa.is_empty())
    }
}

/// A replica on a worker thread is driven like a router; it has no IKE
/// socket, so no datagram of its goes to port 500.
impl crate::forward::Forward for Engine {
    fn handle_tun(&mut self, _now: dmvpn_time::Instant, pkt: &[u8]) {
        self.outbound(pkt);
    }

    fn handle_underlay_burst<'a>(
        &mut self,
        _now: dmvpn_time::Instant,
        datagrams: impl IntoIterator<Item = Datagram<'a>>,
    ) {
        self.underlay_burst(datagrams, |_, _, _| {});
    }

    fn has_room_for(&self, pkt: &[u8]) -> bool {
        Engine::has_room_for(self, pkt)
    }

    fn batches(&mut self) -> Batches<'_> {
        Engine::batches(self)
    }

    fn counters_mut(&mut self) -> &mut Counters {
        Engine::counters_mut(self)
    }
}

/// Send-batch dimensions (see [`Engine::set_batch_sizes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSizes {
    pub gre: usize,
    pub esp: usize,
    pub udp: usize,
    pub tun: usize,
    /// Bytes per buffer.
    pub size: usize,
}

/// The engine's send batches and counters, lent to a driver that writes
/// them out (see [`Engine::batches`]).
pub struct Batches<'a> {
    /// Inner packets for the TUN.
    pub tun: &'a mut SendBatch,
    /// Outer IPv4 packets for the raw GRE socket.
    pub gre: &'a mut SendBatch,
    /// Outer IPv4 packets for the raw ESP socket.
    pub esp: &'a mut SendBatch,
    /// Datagrams for the NAT-T UDP socket.
    pub udp: &'a mut SendBatch,
    /// Where the driver counts what it could not send.
    pub counters: &'a mut Counters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::esp::{AuthAlg, EncAlg};
    use crate::datapath::sadb::{InboundSa, OutboundSa, SaParams};

    pub(super) const A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    pub(super) const B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

    pub(super) fn cfg(local: Ipv4Addr, tunnel: Ipv4Addr) -> DataplaneConfig {
        DataplaneConfig {
            local_nbma: local,
            tunnel_addr: tunnel,
            tunnel_addr_v6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            mtu: 1400,
            gre_key: Some(42),
            outer_ttl: 255,
            natt_port: Some(4500),
            require_protection: true,
        }
    }

    pub(super) fn inner(src: Ipv4Addr, dst: Ipv4Addr, len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0x5au8; len];
        Ipv4Repr {
            src,
            dst,
            protocol: 17,
            tos: 0x28,
            ttl: 64,
            ident: 1,
            flags_frag: if df { dmvpn_wire::ipv4::FLAG_DF } else { 0 },
            payload_len: len - 20,
        }
        .emit(&mut p)
        .unwrap();
        p
    }

    pub(super) fn sa(spi: u32, peer: Ipv4Addr) -> SaParams<'static> {
        SaParams {
            spi,
            peer: IpAddr::V4(peer),
            mode: Mode::Transport,
            enc: EncAlg::AesCbc128,
            enc_key: &[1; 16],
            auth: AuthAlg::HmacSha1_96,
            auth_key: &[2; 20],
            lifetime_kb: None,
        }
    }

    pub(super) fn pair(protection: Protection) -> (Engine, Engine) {
        let t1 = Ipv4Addr::new(192, 168, 1, 1);
        let t2 = Ipv4Addr::new(192, 168, 1, 2);
        let mut ma = PeerMap::new();
        ma.insert(
            t2,
            32,
            Peer {
                nbma: B,
                protection,
            },
        );
        let mut mb = PeerMap::new();
        mb.insert(
            t1,
            32,
            Peer {
                nbma: A,
                protection,
            },
        );
        let mut sa_a = Sadb::new();
        let mut sa_b = Sadb::new();
        sa_a.insert_outbound(OutboundSa::new(&sa(0x100, B), &[5; 24]).unwrap());
        sa_b.insert_inbound(InboundSa::new(&sa(0x100, A)).unwrap());
        let protected = protection != Protection::None;
        let (mut ca, mut cb) = (cfg(A, t1), cfg(B, t2));
        ca.require_protection = protected;
        cb.require_protection = protected;
        (Engine::new(ca, sa_a, ma), Engine::new(cb, sa_b, mb))
    }

    #[test]
    fn gre_esp_path_in_memory() {
        for prot in [
            Protection::None,
            Protection::Esp,
            Protection::EspUdp { port: 4500 },
        ] {
            let (mut a, mut b) = pair(prot);
            let p = inner(
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(192, 168, 1, 2),
                300,
                true,
            );
            a.outbound(&p);
            match prot {
                Protection::None => {
                    assert_eq!(a.gre_out.len(), 1);
                    let outer = a.gre_out.get(0).to_vec();
                    let i = Ipv4Packet::new_checked(&outer).unwrap();
                    assert_eq!(
                        (i.src(), i.dst(), i.tos(), i.ttl(), i.protocol()),
                        (A, B, 0x28, 255, PROTO_GRE)
                    );
                    b.inbound_gre_ip(&outer);
                }
                Protection::Esp => {
                    let outer = a.esp_out.get(0).to_vec();
                    assert_eq!(
                        Ipv4Packet::new_checked(&outer).unwrap().protocol(),
                        PROTO_ESP
                    );
                    b.inbound_esp_ip(&outer);
                    // Replaying it is counted on the SA.
                    b.inbound_esp_ip(&outer);
                    assert_eq!(b.sadb.inbound(0x100).unwrap().counters().replay_failed, 1);
                }
                Protection::EspUdp { .. } => {
                    let d = a.udp_out.get(0).to_vec();
                    b.inbound_udp(&d, SocketAddrV4::new(A, 4500));
                }
            }
            assert_eq!(b.tun_out.len(), 1, "{prot:?}");
            assert_eq!(b.tun_out.get(0), &p[..]);
        }
    }

    #[test]
    fn esp_before_its_sa_is_opened_once_the_sa_is_installed() {
        for prot in [Protection::Esp, Protection::EspUdp { port: 4500 }] {
            let (mut a, mut b) = pair(prot);
            let sa_in = b.sadb.remove_inbound(0x100).unwrap();
            let p = inner(
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(192, 168, 1, 2),
                300,
                true,
            );
            a.outbound(&p);
            let deliver = |a: &Engine, b: &mut Engine| match prot {
                Protection::Esp => b.inbound_esp_ip(a.esp_out.get(0)),
                _ => b.inbound_udp(a.udp_out.get(0), SocketAddrV4::new(A, 4500)),
            };
            // The packet overtakes the SA: dropped for now...
            deliver(&a, &mut b);
            assert_eq!((b.tun_out.len(), b.stats().invalid_spi), (0, 1), "{prot:?}");
            // ... and delivered, no longer counted, once the SA is in.
            b.apply(Command::InsertInbound(sa_in));
            assert_eq!(b.tun_out.len(), 1, "{prot:?}");
            assert_eq!(b.tun_out.get(0), &p[..]);
            let st = b.stats();
            assert_eq!(
                (st.invalid_spi, st.counters.esp_dropped),
                (0, 0),
                "{prot:?}"
            );
            // Held once: the same packet again is a replay, not a second copy.
            deliver(&a, &mut b);
            assert_eq!(b.tun_out.len(), 1);
        }
    }

    #[test]
    fn unknown_spis_are_held_eight_at_most() {
        let (_, mut b) = pair(Protection::Esp);
        for spi in 0..20u32 {
            let mut esp = vec![0u8; 64];
            esp[..4].copy_from_slice(&(0x9000 + spi).to_be_bytes());
            esp[4..8].copy_from_slice(&1u32.to_be_bytes());
            b.inbound_esp(&esp, A, None);
        }
        let held: Vec<u32> = b
            .unknown_spi
            .iter()
            .map(|(_, p)| esp::parse_header(p).unwrap().0)
            .collect();
        assert_eq!(held, (0x9000 + 12..0x9000 + 20).collect::<Vec<u32>>());
        assert_eq!(b.stats().invalid_spi, 20);
    }

    #[test]
    fn esp_bursts_equal_packet_by_packet_handling() {
        for prot in [Protection::Esp, Protection::EspUdp { port: 4500 }] {
            esp_burst_equals_packet_by_packet(prot);
        }
    }

    /// Two SAs interleaved, a bad ICV, an unknown SPI, a replay and a
    /// truncated packet (and, over UDP, an IKE message and a keepalive):
    /// handled as one burst, they give the same TUN packets and counters
    /// as handled one by one.
    fn esp_burst_equals_packet_by_packet(prot: Protection) {
        let t1 = Ipv4Addr::new(192, 168, 1, 1);
        let t2 = Ipv4Addr::new(192, 168, 1, 2);
        let (mut a, mut one) = pair(prot);
        let (_, mut burst) = pair(prot);
        // A second SA from A (other keys) whose packets interleave with the first's.
        let other = SaParams {
            enc_key: &[3; 16],
            auth_key: &[4; 20],
            ..sa(0x200, A)
        };
        let mut sa2 = Sadb::new();
        sa2.insert_outbound(
            OutboundSa::new(
                &SaParams {
                    peer: IpAddr::V4(B),
                    ..other
                },
                &[6; 24],
            )
            .unwrap(),
        );
        let mut a2 = Engine::new(cfg(A, t1), sa2, a.map.clone());
        for b in [&mut one, &mut burst] {
            b.sadb.insert_inbound(InboundSa::new(&other).unwrap());
        }
        let mut pkts: Vec<Vec<u8>> = Vec::new();
        for k in 0..30usize {
            let e = if k % 7 < 4 { &mut a } else { &mut a2 };
            e.outbound(&inner(t1, t2, [1400, 1400, 90, 1400, 333][k % 5], true));
            let out = match prot {
                Protection::Esp => &mut e.esp_out,
                _ => &mut e.udp_out,
            };
            pkts.push(out.get(0).to_vec());
            out.clear();
        }
        // Where the SPI starts: after the outer IPv4 header on the raw socket.
        let spi_at = if prot == Protection::Esp { 20 } else { 0 };
        // Put in ahead of its original, so it is not a replay yet.
        let mut bad_icv = pkts[20].clone();
        *bad_icv.last_mut().unwrap() ^= 1;
        let mut unknown_spi = pkts[4].clone();
        unknown_spi[spi_at..spi_at + 4].copy_from_slice(&0x777u32.to_be_bytes());
        let replay = pkts[5].clone();
        let truncated = pkts[25][..spi_at + 10].to_vec();
        pkts.splice(8..8, [bad_icv, unknown_spi, replay, truncated]);
        if prot != Protection::Esp {
            // An IKE message (non-ESP marker) and a NAT-T keepalive.
            pkts.insert(3, [&[0u8; 4][..], &[7; 40]].concat());
            pkts.insert(17, vec![0xff]);
        }
        let from = SocketAddrV4::new(A, 4500);
        for p in &pkts {
            match prot {
                Protection::Esp => one.inbound_esp_ip(p),
                _ => one.inbound_udp(p, from),
            }
        }
        match prot {
            Protection::Esp => {
                let refs: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
                burst.inbound_esp_burst(&refs);
            }
            _ => {
                let refs: Vec<(&[u8], SocketAddrV4)> =
                    pkts.iter().map(|p| (&p[..], from)).collect();
                burst.inbound_udp_burst(&refs);
            }
        }
        assert_eq!(one.tun_out.len(), 30, "{prot:?}");
        assert_eq!(burst.tun_out.len(), 30, "{prot:?}");
        for i in 0..30 {
            assert_eq!(one.tun_out.get(i), burst.tun_out.get(i), "packet {i}");
        }
        let (x, y) = (one.stats(), burst.stats());
        assert_eq!(x, y);
        assert_eq!(one.ike_in, burst.ike_in);
        let sum = |f: fn(&SaSnapshot) -> u64| y.sas.iter().map(f).sum::<u64>();
        assert_eq!(sum(|s| s.counters.verify_failed), 1, "{y:?}");
        assert_eq!(sum(|s| s.counters.replay_failed), 1, "{y:?}");
        match prot {
            Protection::Esp => {
                assert_eq!((y.invalid_spi, y.counters.malformed), (1, 1), "{y:?}");
                assert_eq!(y.counters.esp_rx, 33, "{y:?}");
            }
            _ => {
                // The truncated datagram still reads as ESP, then fails to open.
                assert_eq!(y.invalid_spi, 1, "{y:?}");
                assert_eq!(y.counters.udp_esp_rx, 34, "{y:?}");
                assert_eq!(
                    (y.counters.ike_rx, y.counters.keepalive_rx),
                    (1, 1),
                    "{y:?}"
                );
                assert_eq!(burst.ike_in.len(), 1);
            }
        }
    }

    #[test]
    fn deferred_seals_equal_immediate_ones_and_survive_a_rekey() {
        for prot in [Protection::Esp, Protection::EspUdp { port: 4500 }] {
            let (mut now, _) = pair(prot);
            let (mut later, mut b) = pair(prot);
            later.defer_seal = true;
            let t1 = Ipv4Addr::new(192, 168, 1, 1);
            let t2 = Ipv4Addr::new(192, 168, 1, 2);
            for k in 0..20usize {
                let p = inner(t1, t2, [1400, 1400, 90, 1400][k % 4], true);
                now.outbound(&p);
                later.outbound(&p);
            }
            // The SA is replaced before the packets are finished: they keep
            // the keys they were laid out with.
            later.apply(Command::InsertOutbound(Arc::new(
                OutboundSa::new(&sa(0x999, B), &[7; 24]).unwrap(),
            )));
            later.finish_seals();
            let (x, y) = match prot {
                Protection::Esp => (&now.esp_out, &later.esp_out),
                _ => (&now.udp_out, &later.udp_out),
            };
            assert_eq!(x.len(), 20);
            for i in 0..20 {
                assert_eq!(x.get(i), y.get(i), "{prot:?} packet {i}");
                match prot {
                    Protection::Esp => b.inbound_esp_ip(y.get(i)),
                    _ => b.inbound_udp(y.get(i), SocketAddrV4::new(A, 4500)),
                }
            }
            assert_eq!(b.tun_out.len(), 20, "{prot:?}");
        }
    }

    #[test]
    fn multicast_is_replicated_to_every_peer_with_an_sa() {
        let (mut a, mut b) = pair(Protection::Esp);
        let c = Ipv4Addr::new(172, 16, 0, 3);
        let d = Ipv4Addr::new(172, 16, 0, 4);
        let esp = |nbma| Peer {
            nbma,
            protection: Protection::Esp,
        };
        let plain = Peer {
            nbma: d,
            protection: Protection::None,
        };
        // B has an SA; C has none yet; D is plain GRE.
        a.apply(Command::SetMulticast {
            peers: vec![esp(B), esp(c), plain],
            broadcast: Some(Ipv4Addr::new(192, 168, 1, 255)),
        });
        let hello = inner(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(224, 0, 0, 5),
            80,
            false,
        );
        a.outbound(&hello);
        assert_eq!(a.esp_out.len(), 1);
        assert_eq!(a.gre_out.len(), 1);
        assert_eq!(Ipv4Packet::new_checked(a.gre_out.get(0)).unwrap().dst(), d);
        assert_eq!(Ipv4Packet::new_checked(a.esp_out.get(0)).unwrap().dst(), B);
        let st = a.stats().counters;
        assert_eq!((st.mcast_rx, st.mcast_tx, st.mcast_no_sa), (1, 2, 1));
        assert_eq!(st.no_route, 0);
        // Dropped, not held: installing C's SA later releases nothing.
        a.apply(Command::InsertOutbound(Arc::new(
            OutboundSa::new(&sa(0x200, c), &[5; 24]).unwrap(),
        )));
        assert_eq!(a.esp_out.len(), 1);
        // The receiving side writes it to its TUN as any packet.
        let outer = a.esp_out.get(0).to_vec();
        b.inbound_esp_ip(&outer);
        assert_eq!(b.tun_out.get(0), &hello[..]);

        // Subnet and limited broadcast follow the same list.
        for dst in [Ipv4Addr::new(192, 168, 1, 255), Ipv4Addr::BROADCAST] {
            a.esp_out.clear();
            a.gre_out.clear();
            a.outbound(&inner(Ipv4Addr::new(192, 168, 1, 1), dst, 60, false));
            assert_eq!((a.esp_out.len(), a.gre_out.len()), (2, 1), "{dst}");
        }
        assert_eq!(a.stats().counters.mcast_tx, 8);
    }

    #[test]
    fn multicast_without_a_list_is_counted_and_unicast_is_unchanged() {
        let (mut a, _) = pair(Protection::None);
        a.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(224, 0, 0, 6),
            80,
            false,
        ));
        assert_eq!(a.gre_out.len(), 0);
        let st = a.stats().counters;
        assert_eq!((st.mcast_rx, st.mcast_no_peer, st.no_route), (1, 1, 0));
        // A multicast list does not change where unicast goes.
        a.set_multicast(
            vec![Peer {
                nbma: Ipv4Addr::new(172, 16, 0, 9),
                protection: Protection::None,
            }],
            None,
        );
        a.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 2),
            80,
            false,
        ));
        assert_eq!(a.gre_out.len(), 1);
        assert_eq!(Ipv4Packet::new_checked(a.gre_out.get(0)).unwrap().dst(), B);
        assert_eq!(a.multicast().len(), 1);
    }

    #[test]
    fn tunnel_mode_wraps_gre_in_an_nbma_header() {
        let t1 = Ipv4Addr::new(192, 168, 1, 1);
        let t2 = Ipv4Addr::new(192, 168, 1, 2);
        let mut m = PeerMap::new();
        m.insert(
            t2,
            32,
            Peer {
                nbma: B,
                protection: Protection::Esp,
            },
        );
        let mut sadb_a = Sadb::new();
        let mut p = sa(0x300, B);
        p.mode = Mode::Tunnel;
        sadb_a.insert_outbound(OutboundSa::new(&p, &[5; 24]).unwrap());
        let mut a = Engine::new(cfg(A, t1), sadb_a, m);
        let mut mb = PeerMap::new();
        mb.insert(
            t1,
            32,
            Peer {
                nbma: A,
                protection: Protection::Esp,
            },
        );
        let mut sadb_b = Sadb::new();
        p.peer = IpAddr::V4(A);
        sadb_b.insert_inbound(InboundSa::new(&p).unwrap());
        let mut b = Engine::new(cfg(B, t2), sadb_b, mb);
        let pkt = inner(t1, t2, 200, false);
        a.outbound(&pkt);
        let outer = a.esp_out.get(0).to_vec();
        // Open by hand to look inside: next header 4, inner IPv4 A→B protocol 47.
        let mut plain = [0u8; 2048];
        let mut probe = Sadb::new();
        probe.insert_inbound(InboundSa::new(&p).unwrap());
        let (_, o) = probe.open(&outer[20..], &mut plain).unwrap();
        assert_eq!(o.next_header, NEXT_HEADER_IPV4);
        let i = Ipv4Packet::new_checked(&plain[..o.len]).unwrap();
        assert_eq!((i.src(), i.dst(), i.protocol()), (A, B, PROTO_GRE));
        b.inbound_esp_ip(&outer);
        assert_eq!(b.tun_out.get(0), &pkt[..]);
    }

    #[test]
    fn tunnel_mode_fragments_before_encryption_to_fit_the_nbma_mtu() {
        let t1 = Ipv4Addr::new(192, 168, 1, 1);
        let t2 = Ipv4Addr::new(192, 168, 1, 2);
        let peer = Peer {
            nbma: B,
            protection: Protection::EspUdp { port: 4500 },
        };
        let mut m = PeerMap::new();
        m.insert(t2, 32, peer);
        let mut sadb = Sadb::new();
        let mut p = sa(0x300, B);
        p.mode = Mode::Tunnel;
        sadb.insert_outbound(OutboundSa::new(&p, &[5; 24]).unwrap());
        let mut a = Engine::new(cfg(A, t1), sadb, m);
        let mtu = a.path_mtu(1400, peer);
        assert!(
            mtu < 1400,
            "tunnel mode CBC with NAT-T cannot carry 1400 bytes in 1500"
        );
        // Without DF: two fragments, each sealed into an outer packet that fits.
        a.outbound(&inner(t1, t2, 1400, false));
        assert_eq!(a.counters.fragments, 2);
        assert_eq!(a.udp_out.len(), 2);
        for i in 0..2 {
            // The kernel adds the outer IPv4 and UDP headers.
            let n = a.udp_out.get(i).len() + 28;
            assert!(n <= NBMA_MTU, "outer packet of {n} bytes");
        }
        // The largest packet that fits is sent whole, one byte more is not.
        a.udp_out.clear();
        a.outbound(&inner(t1, t2, mtu, true));
        assert_eq!(a.udp_out.len(), 1);
        assert!(a.udp_out.get(0).len() + 28 <= NBMA_MTU);
        // With DF: "fragmentation needed" names the reduced MTU.
        a.outbound(&inner(t1, t2, mtu + 1, true));
        assert_eq!(a.counters.icmp_too_big, 1);
        let icmp = a.tun_out.get(0);
        assert_eq!(&icmp[20..22], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]) as usize, mtu);
        // Transport mode keeps the full tunnel MTU.
        let (b, _) = pair(Protection::Esp);
        assert_eq!(b.path_mtu(1400, peer), 1400);
    }

    #[test]
    fn plain_gre_from_protected_peer_is_dropped() {
        let (mut a, _) = pair(Protection::None);
        let (_, mut b) = pair(Protection::Esp);
        a.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 2),
            100,
            false,
        ));
        b.inbound_gre_ip(a.gre_out.get(0));
        assert_eq!(b.counters.unprotected, 1);
        assert!(b.tun_out.is_empty());
    }

    #[test]
    fn plain_gre_on_a_protected_tunnel_is_dropped_from_any_source() {
        // A sender the receiver has never heard of: no map entry, no SA.
        let (mut a, _) = pair(Protection::None);
        let (_, mut b) = pair(Protection::Esp);
        b.map = PeerMap::new();
        a.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 77),
            Ipv4Addr::new(192, 168, 1, 2),
            100,
            false,
        ));
        a.encap_proto(
            b"nhrp",
            PROTO_NHRP,
            0,
            Peer {
                nbma: b.cfg.local_nbma,
                protection: Protection::None,
            },
        );
        assert_eq!(a.gre_out.len(), 2);
        for i in 0..2 {
            b.inbound_gre_ip(a.gre_out.get(i));
        }
        assert_eq!(b.counters.unprotected, 2);
        assert_eq!(b.counters.last.unprotected_src, Some(a.cfg.local_nbma));
        assert!(b.tun_out.is_empty());
        assert!(b.nhrp_in.is_empty());
        // Without protection the same packets are accepted.
        b.cfg.require_protection = false;
        for i in 0..2 {
            b.inbound_gre_ip(a.gre_out.get(i));
        }
        assert_eq!(b.tun_out.len(), 1);
        assert_eq!(b.nhrp_in.len(), 1);
    }

    #[test]
    fn too_big_with_df_answers_icmp_and_without_df_fragments() {
        let (mut a, _) = pair(Protection::Esp);
        let src = Ipv4Addr::new(192, 168, 1, 1);
        a.outbound(&inner(src, Ipv4Addr::new(192, 168, 1, 2), 1500, true));
        assert_eq!(a.counters.icmp_too_big, 1);
        let icmp = a.tun_out.get(0);
        assert_eq!(Ipv4Packet::new_checked(icmp).unwrap().dst(), src);
        assert_eq!(&icmp[20..22], &[3, 4]);
        a.outbound(&inner(src, Ipv4Addr::new(192, 168, 1, 2), 1500, false));
        assert_eq!(a.counters.fragments, 2);
        assert_eq!(a.esp_out.len(), 2);
    }

    #[test]
    fn no_route_no_sa_and_nhrp() {
        let (mut a, mut b) = pair(Protection::Esp);
        a.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(10, 9, 9, 9),
            100,
            false,
        ));
        assert_eq!(a.counters.no_route, 1);
        b.outbound(&inner(
            Ipv4Addr::new(192, 168, 1, 2),
            Ipv4Addr::new(192, 168, 1, 1),
            100,
            false,
        ));
        assert_eq!(b.counters.no_sa, 1);
        a.encap_proto(
            b"nhrp!",
            PROTO_NHRP,
            0xc0,
            Peer {
                nbma: B,
                protection: Protection::Esp,
            },
        );
        b.inbound_esp_ip(a.esp_out.get(0));
        assert_eq!(b.nhrp_in.pop_front(), Some((A, b"nhrp!".to_vec())));
    }

    #[test]
    fn commands_and_events() {
        let (mut a, mut b) = pair(Protection::Esp);
        // B has no outbound SA: traffic asks for one, once.
        let p = inner(
            Ipv4Addr::new(192, 168, 1, 2),
            Ipv4Addr::new(192, 168, 1, 1),
            100,
            false,
        );
        b.outbound(&p);
        b.outbound(&p);
        assert_eq!(b.poll_event(), Some(Event::NeedSa { peer: A }));
        assert_eq!(b.poll_event(), None);
        b.apply(Command::InsertOutbound(Arc::new(
            OutboundSa::new(&sa(0x200, A), &[6; 24]).unwrap(),
        )));
        // The two packets held while the SA was missing went out, then the new one.
        assert_eq!(b.esp_out.len(), 2);
        b.outbound(&p);
        assert_eq!(b.esp_out.len(), 3);
        // NHRP sent by command arrives as an event on the other side.
        a.apply(Command::SendNhrp {
            peer: Peer {
                nbma: B,
                protection: Protection::Esp,
            },
            packet: b"reg".to_vec(),
        });
        b.inbound_esp_ip(a.esp_out.get(0));
        assert_eq!(
            b.poll_event(),
            Some(Event::Nhrp {
                src: A,
                packet: b"reg".to_vec()
            })
        );
        // IKE over the NAT-T port round-trips with its marker.
        a.apply(Command::SendIke {
            dst: SocketAddrV4::new(B, 4500),
            packet: b"isakmp".to_vec(),
        });
        let d = a.udp_out.get(0).to_vec();
        assert_eq!(&d[..4], &[0, 0, 0, 0]);
        b.inbound_udp(&d, SocketAddrV4::new(A, 4500));
        assert_eq!(
            b.poll_event(),
            Some(Event::Ike {
                src: SocketAddrV4::new(A, 4500),
                packet: b"isakmp".to_vec()
            })
        );
        assert_eq!(b.stats().counters.nhrp_rx, 1);
        b.apply(Command::RemovePeerSas(IpAddr::V4(A)));
        assert!(b.sadb.snapshot().is_empty());
    }

    #[test]
    fn held_packets_are_bounded_and_released_in_order() {
        let (_, mut b) = pair(Protection::Esp);
        for k in 0..(PENDING_PER_PEER + 8) {
            let mut p = inner(
                Ipv4Addr::new(192, 168, 1, 2),
                Ipv4Addr::new(192, 168, 1, 1),
                100,
                false,
            );
            p[99] = k as u8;
            b.outbound(&p);
        }
        assert_eq!(b.counters.pending_dropped, 8);
        b.apply(Command::InsertOutbound(Arc::new(
            OutboundSa::new(&sa(0x200, A), &[6; 24]).unwrap(),
        )));
        assert_eq!(b.esp_out.len(), PENDING_PER_PEER);
        let mut rx = Sadb::new();
        rx.insert_inbound(InboundSa::new(&sa(0x200, B)).unwrap());
        let mut plain = [0u8; 2048];
        for k in 0..PENDING_PER_PEER {
            let (_, o) = rx.open(&b.esp_out.get(k)[20..], &mut plain).unwrap();
            // GRE header (8 bytes with key) then the inner packet.
            assert_eq!(plain[8 + 99], k as u8);
            assert!(o.len > 100);
        }
        assert_eq!(b.discard_pending(A), 0);
    }

    #[test]
    fn ipv6_inner_packets() {
        let (mut a, mut b) = pair(Protection::Esp);
        let dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        a.map.insert_v6(
            dst,
            128,
            Peer {
                nbma: B,
                protection: Protection::Esp,
            },
        );
        let mut p = vec![0u8; 200];
        p[0] = 0x6b; // version 6, traffic class 0xb8
        p[1] = 0x80;
        p[4..6].copy_from_slice(&160u16.to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        p[24..40].copy_from_slice(&dst.octets());
        a.outbound(&p);
        let outer = a.esp_out.get(0).to_vec();
        assert_eq!(Ipv4Packet::new_checked(&outer).unwrap().tos(), 0xb8);
        b.inbound_esp_ip(&outer);
        assert_eq!(b.tun_out.get(0), &p[..]);
        // Multicast (ff02::5, OSPFv3 AllSPFRouters) follows the multicast
        // list, with no unicast route needed.
        let mut hello = p.clone();
        hello[24..40].copy_from_slice(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5).octets());
        a.esp_out.clear();
        a.outbound(&hello);
        assert_eq!((a.esp_out.len(), a.counters.mcast_no_peer), (0, 1));
        a.apply(Command::SetMulticast {
            peers: vec![Peer {
                nbma: B,
                protection: Protection::Esp,
            }],
            broadcast: None,
        });
        a.outbound(&hello);
        assert_eq!(a.esp_out.len(), 1);
        assert_eq!(Ipv4Packet::new_checked(a.esp_out.get(0)).unwrap().dst(), B);
        let outer = a.esp_out.get(0).to_vec();
        b.tun_out.clear();
        b.inbound_esp_ip(&outer);
        assert_eq!(b.tun_out.get(0), &hello[..]);
        // Too big: ICMPv6 packet too big back into the TUN, nothing sent.
        let mut big = p.clone();
        big.resize(1500, 0);
        big[4..6].copy_from_slice(&1460u16.to_be_bytes());
        a.outbound(&big);
        assert_eq!(a.counters.icmp_too_big, 1);
        assert_eq!(a.esp_out.len(), 1);
        let icmp = a.tun_out.get(0);
        assert_eq!((icmp[0] >> 4, icmp[6], icmp[40]), (6, 58, 2));
        // Unknown destination.
        p[39] = 9;
        a.outbound(&p);
        assert_eq!(a.counters.no_route, 1);
    }

    #[test]
    fn longest_prefix_wins() {
        let mut m = PeerMap::new();
        let p1 = Peer {
            nbma: A,
            protection: Protection::None,
        };
        let p2 = Peer {
            nbma: B,
            protection: Protection::Esp,
        };
        m.insert(Ipv4Addr::new(10, 0, 0, 0), 8, p1);
        m.insert(Ipv4Addr::new(10, 1, 0, 0), 16, p2);
        assert_eq!(m.lookup(Ipv4Addr::new(10, 1, 2, 3)), Some(&p2));
        assert_eq!(m.lookup(Ipv4Addr::new(10, 2, 2, 3)), Some(&p1));
        assert_eq!(m.lookup(Ipv4Addr::new(11, 0, 0, 1)), None);
        assert_eq!(m.protection_of(B), Some(Protection::Esp));
    }

    #[test]
    fn plain_gre_is_refused_only_from_peers_mapped_to_esp() {
        let plain = Peer {
            nbma: A,
            protection: Protection::None,
        };
        let esp = Peer {
            nbma: B,
            protection: Protection::EspUdp { port: 4500 },
        };
        let net = Ipv4Addr::new(10, 1, 0, 0);
        let mut m = PeerMap::new();
        m.insert(Ipv4Addr::new(10, 0, 0, 0), 8, plain);
        assert!(!m.requires_esp(A) && !m.requires_esp(B));
        m.insert(net, 16, esp);
        assert!(m.requires_esp(B) && !m.requires_esp(A));
        // Replacing the entry with a plain one, or removing it, lifts it.
        m.insert(net, 16, Peer { nbma: B, ..plain });
        assert!(!m.requires_esp(B));
        m.insert(net, 16, esp);
        m.remove(net, 16);
        m.remove(net, 16);
        assert!(!m.requires_esp(B));
        m.insert_v6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64, esp);
        assert!(m.requires_esp(B));
        m.remove_v6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64);
        assert!(!m.requires_esp(B));
    }
}
