//! The DMVPN node: NHRP engine + IKE endpoint + the decisions that tie
//! them to the forwarding engine (which peers need SAs, which prefixes go
//! to which NBMA address, shortcuts, idle expiry, the hub's relay
//! decision, the multicast list). No clock, socket or OS randomness here.
//!
//! A [`Node`] is not driven on its own: [`crate::Router`] owns one next
//! to the forwarding engine, feeds it the engine's events and applies
//! its [`Output`]s. Its methods, as the router uses them:
//!
//! ```text
//! Node::from_node_config(NodeConfig, seed, now)   NHRP and IKE both run on `now`
//! node.handle_nhrp / handle_ike / handle_dataplane_event inputs
//! node.observe_outbound(now, ip_packet)   each packet into the tunnel (resolution
//!                                         triggers, hub redirects)
//! node.should_relay(ip_packet)            hub: a decapsulated packet for another spoke
//! node.set_tunnel_routes(now, routes)     kernel routes via a tunnel next hop
//! node.handle_stats(now, counters, invalid SPIs, SA activity) once a second (idle timers, DPD liveness)
//! node.poll_timeout() / handle_timeout(now) / poll_output()
//! node.show_* / clear_*                   operator requests
//! ```
//!
//! A spoke brings up IPsec with each NHS first (its registration waits in
//! the engine's bounded queue until the SA is installed), resolves
//! tunnel-routed destinations that have no shortcut (phase 2) or acts on
//! the hub's Traffic Indications (phase 3), and moves a destination to its
//! shortcut only once the SA to that spoke is up. Spoke-to-spoke SAs idle
//! for the profile's idle time are deleted together with their shortcuts.

pub mod config_map;
#[cfg(test)]
mod dual_stack_tests;
mod kernel_routes;
#[cfg(test)]
mod kernel_routes_tests;
pub mod log_limit;
#[cfg(test)]
mod manual_sa_tests;
#[cfg(test)]
mod multicast_tests;
mod reconfigure;
mod sa;
mod seed;
mod show;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dmvpn_ike::{Endpoint, Phase2Request, policy::gre_proxy};
use dmvpn_nhrp::Instant;
use dmvpn_wire::ipv4::Ipv4Packet;
use dmvpn_wire::natt;
use dmvpn_wire::prefix::{Prefix, PrefixMap, mask};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use tracing::{debug, info, warn};

pub use config_map::{MapError, NodeConfig};
pub use kernel_routes::KernelRoute;
pub use seed::Seed;

use crate::engine::{Command, Counters, DataplaneConfig, Event as DpEvent, Peer, Protection};

/// How often [`Node::handle_stats`] is called.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// A phase 2 request to a peer is not repeated more often than this.
const IKE_RETRY: Duration = Duration::from_secs(5);

/// Something the router must do.
#[derive(Debug)]
pub enum Output {
    /// Send an IKE datagram from `local` to `remote` (on port 4500 the
    /// payload already starts with the non-ESP marker).
    Ike(dmvpn_ike::Transmit),
    Dataplane(Command),
    /// An `esp_sa` line for the key-log file (only when enabled).
    KeyLog(String),
    /// A route NHRP taught the node to show in (or take out of) the
    /// kernel's routing table, through the tunnel.
    Kernel(KernelRoute),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKind {
    Nhs,
    Static,
    /// Registered with us (hub side).
    Registered,
    /// A spoke reached directly (shortcut, or it resolved us).
    Spoke,
}

#[derive(Debug)]
struct PeerState {
    kind: PeerKind,
    protection: Protection,
    /// Inbound SPI → outbound SPI of installed SAs.
    sas: BTreeMap<u32, u32>,
    manual: bool,
    up_since: Instant,
    last_active: Instant,
    last_count: u64,
    /// Cumulative decapsulated packets at the last stats tick.
    last_rx: u64,
    ike_asked: Option<Instant>,
}

/// One DMVPN node. See the module documentation.
pub struct Node {
    cfg: NodeConfig,
    nhrp: Option<dmvpn_nhrp::Engine>,
    /// The IPv6 overlay's NHRP instance (a dual-stack tunnel).
    nhrp6: Option<dmvpn_nhrp::Engine>,
    ike: Endpoint<ChaCha20Rng>,
    rng: ChaCha20Rng,
    out: VecDeque<Output>,
    peers: HashMap<Ipv4Addr, PeerState>,
    /// The data plane's peer map as we set it: prefix → NBMA.
    map: PrefixMap<Ipv4Addr>,
    /// Shortcuts from NHRP, installed in `map` once their SA is up.
    shortcuts: BTreeMap<(IpAddr, u8), Ipv4Addr>,
    /// Base prefixes (tunnel subnet, configured routes) → current NHS.
    base_nbma: Option<Ipv4Addr>,
    /// The same for the IPv6 tunnel subnet and routes: the IPv6
    /// instance's preferred NHS.
    base_nbma6: Option<Ipv4Addr>,
    /// Routes through the tunnel with a next-hop tunnel address (from the
    /// kernel table: operator or routing daemon).
    via_routes: BTreeMap<(IpAddr, u8), IpAddr>,
    /// The multicast replication list last sent to the data plane.
    mcast_sent: Option<Vec<Peer>>,
    /// What the multicast list was last built from: NHRP's multicast
    /// version and [`Node::peers_changed`].
    mcast_built_from: Option<((u64, u64), u64)>,
    /// Bumped whenever a peer's protection may have changed, a peer went,
    /// or the configuration changed.
    peers_changed: u64,
    /// Routes reported to the kernel ([`Output::Kernel`]).
    kernel: kernel_routes::KernelRoutes,
    keylog: bool,
    /// IOS-style connection IDs of installed SA pairs: inbound SPI → the
    /// inbound SA's ID (the outbound SA's is the next one).
    conn_ids: HashMap<u32, u32>,
    /// Entries of `conn_ids` after its last pruning pass.
    conn_ids_kept: usize,
    next_conn_id: u32,
    drops: log_limit::DropLog,
    /// Warnings about failed negotiations (a flood of half-open attempts
    /// from spoofed sources fails in bulk).
    failed_log: log_limit::Throttle,
    /// How long our NHRP resolutions took to be answered.
    resolution_latency: dmvpn_ctl::stats::Histogram,
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

impl Node {
    /// Builds a node from a validated configuration.
    pub fn new(cfg: &dmvpn_config::Config, seed: Seed, now: Instant) -> Result<Node, MapError> {
        Ok(Node::from_node_config(config_map::map(cfg)?, seed, now))
    }

    /// Builds a node from an already mapped configuration.
    pub fn from_node_config(cfg: NodeConfig, seed: Seed, now: Instant) -> Node {
        let first_conn_id = cfg.ipsec_conn_ids().0;
        let mut spi_rng = seed.rng("spi");
        let spis = Box::new(move || {
            loop {
                let s = spi_rng.next_u32();
                if s > 0xff {
                    break s;
                }
            }
        });
        let ike = Endpoint::new(cfg.ike.clone(), seed.rng("ike"), spis);
        let mut rng = seed.rng("node");
        let mut engine = |c: &Option<dmvpn_nhrp::Config>| {
            c.clone().map(|mut c| {
                // Cisco starts request IDs at arbitrary values; vary ours per node.
                c.initial_request_id = 1 + (rng.next_u32() % 1000) * 1000;
                dmvpn_nhrp::Engine::new(c, now)
            })
        };
        let nhrp = engine(&cfg.nhrp);
        let nhrp6 = engine(&cfg.nhrp6);
        let mut node = Node {
            cfg,
            nhrp,
            nhrp6,
            ike,
            rng,
            out: VecDeque::new(),
            peers: HashMap::new(),
            map: PrefixMap::new(),
            shortcuts: BTreeMap::new(),
            base_nbma: None,
            base_nbma6: None,
            via_routes: BTreeMap::new(),
            mcast_sent: None,
            mcast_built_from: None,
            peers_changed: 0,
            kernel: kernel_routes::KernelRoutes::default(),
            keylog: false,
            conn_ids: HashMap::new(),
            conn_ids_kept: 0,
            next_conn_id: first_conn_id,
            drops: log_limit::DropLog::default(),
            failed_log: log_limit::Throttle::default(),
            resolution_latency: Default::default(),
        };
        node.start(now);
        node
    }

    /// Mixes fresh seed material into every generator (a long-running
    /// daemon calls this periodically with 256 bits from the OS).
    pub fn reseed(&mut self, fresh: &Seed) {
        seed::reseed(self.ike.rng_mut(), fresh, "ike");
        seed::reseed(&mut self.rng, fresh, "node");
    }

    /// 256 bits from this node's generator: the seed of a node that takes
    /// its place (a tunnel started again by a reload).
    pub fn next_seed(&mut self) -> Seed {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        Seed(b)
    }

    /// Whether key-log lines are emitted.
    pub fn keylog_enabled(&self) -> bool {
        self.keylog
    }

    /// Emit `esp_sa` key-log lines for every SA installed.
    pub fn set_keylog(&mut self, on: bool) {
        // Manual SAs were installed at start; their lines go out now.
        if on && !self.keylog {
            for m in &self.cfg.manual_sas {
                let c = sa::manual_as_child(m, self.cfg.nbma);
                for l in dmvpn_ike::keylog::esp_sa_lines(&c) {
                    self.out.push_back(Output::KeyLog(l));
                }
            }
        }
        self.keylog = on;
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Whether the tunnel interface should carry traffic: always, unless
    /// `if_state` (IOS `if-state nhrp`) is set and every NHS is down.
    pub fn line_protocol_up(&self) -> bool {
        let with_nhs = || self.engines().filter(|n| !n.config().nhs.is_empty());
        !(self.cfg.if_state && with_nhs().count() > 0 && with_nhs().all(|n| n.every_nhs_down()))
    }

    /// The IPv4 NHRP instance, or on an IPv6-only overlay the IPv6 one:
    /// the one whose counters and settings stand for the tunnel's.
    pub(crate) fn primary_nhrp(&self) -> Option<&dmvpn_nhrp::Engine> {
        self.nhrp.as_ref().or(self.nhrp6.as_ref())
    }

    /// The NHRP instances: IPv4, then IPv6 on a dual-stack tunnel.
    fn engines(&self) -> impl Iterator<Item = &dmvpn_nhrp::Engine> {
        self.nhrp.iter().chain(self.nhrp6.iter())
    }

    fn engines_mut(&mut self) -> impl Iterator<Item = &mut dmvpn_nhrp::Engine> {
        self.nhrp.iter_mut().chain(self.nhrp6.iter_mut())
    }

    fn poll_nhrp_transmit(&mut self) -> Option<dmvpn_nhrp::Transmit> {
        self.engines_mut().find_map(|n| n.poll_transmit())
    }

    fn poll_nhrp_event(&mut self) -> Option<dmvpn_nhrp::Event> {
        self.engines_mut().find_map(|n| n.poll_event())
    }

    /// The NHRP instance for protocol addresses like `a`.
    fn engine_for(&mut self, a: IpAddr) -> Option<&mut dmvpn_nhrp::Engine> {
        match a {
            IpAddr::V4(_) => self.nhrp.as_mut(),
            IpAddr::V6(_) => self.nhrp6.as_mut(),
        }
    }

    /// Settings for the data-plane engine this node drives.
    pub fn dataplane_config(&self) -> DataplaneConfig {
        self.cfg.dataplane.clone()
    }

    fn start(&mut self, now: Instant) {
        // Manual SAs: static maps and manual keys, no IKE.
        for m in self.cfg.manual_sas.clone() {
            self.install_manual_sa(now, &m);
        }
        let statics: Vec<(IpAddr, IpAddr)> = [&self.cfg.nhrp, &self.cfg.nhrp6]
            .into_iter()
            .flatten()
            .flat_map(|n| n.static_maps.clone())
            .collect();
        for (proto, nbma) in statics {
            if let Some(n) = v4(nbma) {
                self.peer_mut(n, PeerKind::Static, now);
                self.set_route(proto, host_len(proto), Some(n));
            }
        }
        let nhs: Vec<Ipv4Addr> = self.nhs_nbmas();
        for n in &nhs {
            self.peer_mut(*n, PeerKind::Nhs, now).kind = PeerKind::Nhs;
        }
        self.update_base();
        for n in nhs {
            self.ensure_sa(now, n);
        }
        self.pump(now);
    }

    /// Installs manual SA `m` in the data plane, its peer protected by
    /// it; false (logged) when its keys do not fit its transforms.
    fn install_manual_sa(&mut self, now: Instant, m: &config_map::ManualSa) -> bool {
        let protection = if m.udp {
            Protection::EspUdp { port: 4500 }
        } else {
            Protection::Esp
        };
        match sa::manual(m, &mut self.rng) {
            Ok((i, o)) => {
                self.dp(Command::InsertInbound(Arc::new(i)));
                self.dp(Command::InsertOutbound(Arc::new(o)));
                self.set_protection(m.peer, PeerKind::Static, protection, now);
                let p = self.peer_mut(m.peer, PeerKind::Static, now);
                p.manual = true;
                p.sas.insert(m.in_spi, m.out_spi);
                self.assign_conn_id(m.in_spi);
                true
            }
            Err(e) => {
                warn!(target: "dmvpn::esp", interface = %self.cfg.interface, peer = %m.peer, "manual SA with {}: {e}", m.peer);
                false
            }
        }
    }

    fn nhs_nbmas(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = [&self.cfg.nhrp, &self.cfg.nhrp6]
            .into_iter()
            .flatten()
            .flat_map(|c| c.nhs.iter().filter_map(|n| v4(n.nbma)))
            .collect();
        // A dual-stack NHS is one peer.
        let mut seen = std::collections::HashSet::new();
        v.retain(|n| seen.insert(*n));
        v
    }

    fn peer_mut(&mut self, nbma: Ipv4Addr, kind: PeerKind, now: Instant) -> &mut PeerState {
        let default = if self.cfg.protected {
            Protection::Esp
        } else {
            Protection::None
        };
        self.peers.entry(nbma).or_insert_with(|| PeerState {
            kind,
            protection: default,
            sas: BTreeMap::new(),
            manual: false,
            up_since: now,
            last_active: now,
            last_count: 0,
            last_rx: 0,
            ike_asked: None,
        })
    }

    /// Sets how packets to `nbma` are protected (creating the peer as
    /// `kind`).
    fn set_protection(
        &mut self,
        nbma: Ipv4Addr,
        kind: PeerKind,
        protection: Protection,
        now: Instant,
    ) {
        let p = self.peer_mut(nbma, kind, now);
        if p.protection != protection {
            p.protection = protection;
            self.peers_changed += 1;
        }
    }

    fn protection(&self, nbma: Ipv4Addr) -> Protection {
        match self.peers.get(&nbma) {
            Some(p) => p.protection,
            None if self.cfg.protected => Protection::Esp,
            None => Protection::None,
        }
    }

    fn dp(&mut self, c: Command) {
        self.out.push_back(Output::Dataplane(c));
    }

    /// Points `prefix/len` at `nbma` in the data plane (None removes it).
    fn set_route(&mut self, prefix: IpAddr, len: u8, nbma: Option<Ipv4Addr>) {
        let prefix = mask(prefix, len);
        match nbma {
            Some(n) => {
                self.map.insert(Prefix::new(prefix, len), n);
                let peer = Peer {
                    nbma: n,
                    protection: self.protection(n),
                };
                self.dp(Command::MapInsert { prefix, len, peer });
            }
            None => {
                if self.map.remove(&Prefix::new(prefix, len)).is_some() {
                    self.dp(Command::MapRemove { prefix, len });
                }
            }
        }
        self.sync_kernel_route(prefix, len);
    }

    /// Reports `prefix/len` to the kernel when NHRP taught it (a shortcut
    /// in use, a registration) and it does not cover an NBMA address the
    /// tunnel sends to; withdraws it otherwise.
    fn sync_kernel_route(&mut self, prefix: IpAddr, len: u8) {
        let key = (prefix, len);
        let wanted = self.map.get(&Prefix::new(prefix, len)).is_some_and(|n| {
            let learned = self.shortcuts.get(&key) == Some(n) || self.kernel.is_registered(&key);
            let mut nbmas = self.nhs_nbmas();
            nbmas.extend([self.cfg.nbma, *n]);
            learned && !kernel_routes::covers(prefix, len, &nbmas)
        });
        if let Some(c) = self.kernel.set(key, wanted) {
            debug!(target: "dmvpn::nhrp", "NHRP: kernel route: {c} via {}", self.cfg.interface);
            self.out.push_back(Output::Kernel(c));
        }
    }

    /// The routes reported to the kernel and not withdrawn.
    pub fn kernel_routes(&self) -> Vec<(IpAddr, u8)> {
        self.kernel.installed()
    }

    /// Re-sends the map entries through `nbma` (its protection changed).
    fn refresh_routes_via(&mut self, nbma: Ipv4Addr) {
        let keys: Vec<(IpAddr, u8)> = self
            .map
            .iter()
            .filter(|(_, n)| **n == nbma)
            .map(|(k, _)| (k.addr(), k.prefix_len()))
            .collect();
        for (p, l) in keys {
            self.set_route(p, l, Some(nbma));
        }
    }

    /// Tunnel subnet and configured routes go to the preferred NHS (spoke),
    /// or the point-to-point destination.
    fn update_base(&mut self) {
        let target_of = |e: &Option<dmvpn_nhrp::Engine>| match (e, self.cfg.destination) {
            (_, Some(d)) => Some(d),
            (Some(n), None) if !self.cfg.hub => n.preferred_nhs().and_then(|c| v4(c.nbma)),
            _ => None,
        };
        let target = target_of(&self.nhrp);
        // IPv6 NHSs are usually the IPv4 ones' hubs; without any, IPv6
        // goes where IPv4 goes.
        let target6 = match &self.nhrp6 {
            Some(n) if !n.config().nhs.is_empty() => target_of(&self.nhrp6),
            _ => target,
        };
        if target != self.base_nbma {
            self.base_nbma = target;
            for (p, l) in self.base_prefixes(false) {
                self.set_route(p, l, target);
            }
        }
        if target6 != self.base_nbma6 {
            self.base_nbma6 = target6;
            for (p, l) in self.base_prefixes(true) {
                self.set_route(p, l, target6);
            }
        }
        self.apply_via_routes();
    }

    /// The tunnel subnet and configured routes of one family.
    fn base_prefixes(&self, v6: bool) -> Vec<(IpAddr, u8)> {
        if v6 {
            let mut v: Vec<(IpAddr, u8)> = self
                .cfg
                .tunnel_addr6
                .map(|(a, l)| (mask(IpAddr::V6(a), l), l))
                .into_iter()
                .collect();
            v.extend(self.cfg.routes6.iter().map(|(p, l)| (IpAddr::V6(*p), *l)));
            v
        } else if !self.cfg.overlay_v4 {
            Vec::new()
        } else {
            let len = self.cfg.tunnel_prefix_len;
            let mut v = vec![(mask(IpAddr::V4(self.cfg.tunnel_addr), len), len)];
            v.extend(self.cfg.routes.iter().map(|(p, l)| (IpAddr::V4(*p), *l)));
            v
        }
    }

    /// Whether an IPsec SA (or manual SA) to `nbma` is installed.
    pub fn has_sa(&self, nbma: Ipv4Addr) -> bool {
        self.peers.get(&nbma).is_some_and(|p| !p.sas.is_empty())
    }

    /// The NHRP engine's counters (none when the tunnel runs no NHRP).
    pub fn nhrp_stats(&self) -> Option<&dmvpn_nhrp::engine::Stats> {
        self.primary_nhrp().map(|n| n.stats())
    }

    /// Installed shortcut routes (prefix, length, NBMA).
    pub fn shortcut_routes(&self) -> Vec<(IpAddr, u8, Ipv4Addr)> {
        self.shortcuts
            .iter()
            .filter(|(k, n)| self.map.get(&Prefix::new(k.0, k.1)) == Some(n))
            .map(|((p, l), n)| (*p, *l, *n))
            .collect()
    }

    /// NBMA addresses multicast is replicated to.
    pub fn multicast_nbmas(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.engines().flat_map(|n| n.multicast_nbmas()).collect();
        let mut seen = std::collections::HashSet::new();
        v.retain(|n| seen.insert(*n));
        v
    }

    /// Asks IKE for an SA with `nbma` unless one is up or was just asked for.
    fn ensure_sa(&mut self, now: Instant, nbma: Ipv4Addr) {
        if !self.cfg.protected {
            return;
        }
        let recent = {
            let p = self.peer_mut(nbma, PeerKind::Spoke, now);
            if !p.sas.is_empty() || p.manual {
                return;
            }
            p.ike_asked.is_some_and(|t| now - t < IKE_RETRY)
        };
        if recent {
            return;
        }
        self.peer_mut(nbma, PeerKind::Spoke, now).ike_asked = Some(now);
        let local = SocketAddr::new(IpAddr::V4(self.cfg.nbma), 500);
        let remote = SocketAddr::new(IpAddr::V4(nbma), 500);
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(local.ip())),
            remote_proxy: Some(gre_proxy(remote.ip())),
        };
        debug!(target: "dmvpn::ike", "IPSEC: requesting SA with {nbma} (GRE proxies)");
        if let Err(e) = self.ike.initiate_phase2(now, local, remote, req) {
            warn!(target: "dmvpn::ike", interface = %self.cfg.interface, peer = %nbma, "cannot initiate IKE with {nbma}: {e}");
        }
    }

    /// An NHRP packet arrived from `from_nbma`.
    pub fn handle_nhrp(&mut self, now: Instant, from_nbma: IpAddr, bytes: &[u8]) {
        // The fixed header's protocol type picks the instance; anything
        // else goes to the IPv4 one, which counts and drops it.
        let engine = match bytes.get(2..4) {
            Some([0x86, 0xdd]) if self.nhrp6.is_some() => self.nhrp6.as_mut(),
            _ => self.nhrp.as_mut(),
        };
        if let Some(n) = engine {
            n.handle(now, from_nbma, bytes);
        }
        self.pump(now);
    }

    /// An IKE datagram arrived (`local`/`remote` with their UDP ports).
    pub fn handle_ike(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, d: &[u8]) {
        if let Err(e) = self.ike.handle(now, local, remote, d) {
            debug!(target: "dmvpn::ike", "ISAKMP: dropped datagram from {remote}: {e}");
        }
        self.pump(now);
    }

    /// Something the data plane reported.
    pub fn handle_dataplane_event(&mut self, now: Instant, ev: DpEvent) {
        match ev {
            DpEvent::Nhrp { src, packet } => self.handle_nhrp(now, IpAddr::V4(src), &packet),
            DpEvent::Ike { src, packet } => {
                // The engine's NAT-T demux already took the non-ESP marker off.
                let local = SocketAddr::new(IpAddr::V4(self.cfg.nbma), natt::PORT);
                if let Err(e) = self
                    .ike
                    .handle_message(now, local, SocketAddr::V4(src), &packet)
                {
                    debug!(target: "dmvpn::ike", "ISAKMP: dropped message from {src}: {e}");
                }
                self.pump(now);
            }
            DpEvent::NeedSa { peer } => {
                self.ensure_sa(now, peer);
                self.pump(now);
            }
        }
    }

    /// Looks at an inner packet read from the TUN before the data plane
    /// forwards it: phase 2 resolution, phase 3 redirects on the hub.
    pub fn observe_outbound(&mut self, now: Instant, pkt: &[u8]) {
        let Some((src, dst)) = inner_endpoints(pkt) else {
            return;
        };
        let lookup = |a: IpAddr| self.map.lookup(a).map(|(_, n)| *n);
        let (from, to) = (lookup(src), lookup(dst));
        let (base, own) = match dst {
            IpAddr::V4(d) => (self.base_nbma, d == self.cfg.tunnel_addr),
            IpAddr::V6(d) => (
                self.base_nbma6,
                self.cfg.tunnel_addr6.is_some_and(|(a, _)| a == d),
            ),
        };
        let hub = self.cfg.hub;
        let Some(nhrp) = self.engine_for(dst) else {
            return;
        };
        if hub {
            if !nhrp.config().redirect {
                return;
            }
            // Relayed spoke-to-spoke traffic: both ends are reached through the tunnel.
            if let (Some(from), Some(to)) = (from, to)
                && from != to
            {
                nhrp.traffic_relayed(now, IpAddr::V4(from), pkt);
                self.pump(now);
            }
            return;
        }
        let Some(via) = to else {
            return;
        };
        if Some(via) != base || own {
            return;
        }
        let nhs_proto = nhrp.config().nhs.iter().any(|n| n.protocol == dst);
        if nhs_proto {
            return;
        }
        // Marks a shortcut as used (re-resolved before expiry) or starts a
        // resolution (phase 2); with `shortcut` (phase 3) the hub's
        // Traffic Indication triggers it instead.
        if nhrp.lookup(dst).is_none() && !nhrp.config().shortcut {
            nhrp.resolve(now, dst);
            self.pump(now);
        }
    }

    /// Which inner packets forwarding workers must hand back for
    /// [`Node::observe_outbound`]: on a hub sending redirects, packets
    /// from a peer's networks; on a spoke resolving on traffic (phase 2),
    /// packets for its NHS's NBMA address. A spoke with shortcuts
    /// (phase 3) also marks cache entries used from packets through its
    /// NHS; the packets its own thread forwards suffice for that.
    pub fn worker_policy(&self) -> crate::engine::WorkerPolicy {
        let nhrp = self.primary_nhrp().map(|n| n.config());
        crate::engine::WorkerPolicy {
            relay: self.cfg.hub,
            watch_sources: self.cfg.hub && nhrp.is_some_and(|c| c.redirect),
            watch_via: match nhrp {
                Some(c) if !self.cfg.hub && !c.shortcut => self.base_nbma,
                _ => None,
            },
        }
    }

    /// Replaces the routes through the tunnel that name a next hop
    /// (`prefix/len via tunnel-address`). A hub uses them to forward
    /// resolution requests to the spoke owning a LAN and to relay traffic.
    pub fn set_tunnel_routes(&mut self, now: Instant, routes: &[(IpAddr, u8, IpAddr)]) {
        let new: BTreeMap<(IpAddr, u8), IpAddr> = routes
            .iter()
            .filter(|(p, _, v)| p.is_ipv4() == v.is_ipv4())
            .map(|(p, l, v)| ((mask(*p, *l), *l), *v))
            .collect();
        if new == self.via_routes {
            return;
        }
        let old = std::mem::replace(&mut self.via_routes, new);
        let removed: Vec<(IpAddr, u8)> = old
            .keys()
            .filter(|k| !self.via_routes.contains_key(k))
            .copied()
            .collect();
        for &(p, l) in removed.iter() {
            if let Some(n) = self.engine_for(p) {
                n.remove_route(p, l);
            }
            if !self.shortcuts.contains_key(&(p, l)) {
                self.set_route(p, l, None);
                self.restore_base(p, l);
            }
        }
        for ((p, l), v) in self.via_routes.clone() {
            if let Some(n) = self.engine_for(p) {
                n.add_route(p, l, v);
            }
        }
        self.apply_via_routes();
        self.pump(now);
    }

    /// Points each next-hop route at its next hop's NBMA address, once known.
    fn apply_via_routes(&mut self) {
        let targets: Vec<((IpAddr, u8), Ipv4Addr)> = self
            .via_routes
            .iter()
            .filter(|(k, _)| !self.shortcuts.contains_key(k))
            .filter_map(|(k, via)| {
                let n = if via.is_ipv4() {
                    &self.nhrp
                } else {
                    &self.nhrp6
                };
                let known = n
                    .as_ref()?
                    .cache()
                    .lookup(*via)
                    .and_then(|e| e.nbma)
                    .and_then(v4);
                // A spoke reaches a next hop it has not resolved (another
                // spoke, as a routing daemon learned it) through its NHS.
                let base = if via.is_ipv4() {
                    self.base_nbma
                } else {
                    self.base_nbma6
                };
                let nbma = match known {
                    Some(x) => x,
                    None if !self.cfg.hub => base?,
                    None => return None,
                };
                (nbma != self.cfg.nbma && self.map.get(&Prefix::new(k.0, k.1)) != Some(&nbma))
                    .then_some((*k, nbma))
            })
            .collect();
        for ((p, l), nbma) in targets {
            self.set_route(p, l, Some(nbma));
        }
    }

    /// Whether a packet that arrived from the tunnel should go straight
    /// back into it (a hub relaying spoke-to-spoke traffic) instead of up
    /// to the kernel. The caller then hands it to [`Node::observe_outbound`]
    /// and the data plane's outbound path.
    pub fn should_relay(&self, pkt: &[u8]) -> bool {
        let Some((_, dst)) = inner_endpoints(pkt) else {
            return false;
        };
        let own = match dst {
            IpAddr::V4(d) => d == self.cfg.tunnel_addr,
            IpAddr::V6(d) => self.cfg.tunnel_addr6.is_some_and(|(a, _)| a == d),
        };
        self.cfg.hub && !own && self.map.lookup(dst).is_some()
    }

    /// Data-plane counters: drops to log, and traffic per peer (idle
    /// timers, DPD liveness) from each SA's `(peer, packets, packets
    /// received)` ([`crate::datapath::sadb::Sadb::activity`]).
    pub fn handle_stats(
        &mut self,
        now: Instant,
        counters: &Counters,
        invalid_spi: u64,
        activity: impl Iterator<Item = (IpAddr, u64, u64)>,
    ) {
        self.drops
            .observe(now, &self.cfg.interface, counters, invalid_spi);
        let mut per_peer: HashMap<Ipv4Addr, (u64, u64)> = HashMap::with_capacity(self.peers.len());
        for (peer, packets, received) in activity {
            if let IpAddr::V4(p) = peer {
                let e = per_peer.entry(p).or_default();
                e.0 += packets;
                e.1 += received;
            }
        }
        for (peer, (count, rx)) in per_peer {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if count != p.last_count {
                p.last_count = count;
                p.last_active = now;
            }
            // Only packets from the peer prove it alive: traffic we keep
            // sending to a dead peer must not hold off DPD.
            if rx != p.last_rx {
                p.last_rx = rx;
                if rx > 0 {
                    self.ike.note_traffic(now, IpAddr::V4(peer));
                }
            }
        }
        // Idle expiry is for spoke-to-spoke SAs. A hub keeps its SAs with
        // spokes: they carry registrations, refreshed only every
        // holdtime/3, and routing hellos.
        if let Some(idle) = self.cfg.idle_time.filter(|_| !self.cfg.hub) {
            let idle_peers: Vec<Ipv4Addr> = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.kind == PeerKind::Spoke
                        && !p.manual
                        && !p.sas.is_empty()
                        && now - p.last_active >= idle
                })
                .map(|(n, _)| *n)
                .collect();
            for n in idle_peers {
                info!(
                    target: "dmvpn::ike",
                    interface = %self.cfg.interface,
                    peer = %n,
                    idle_secs = idle.as_secs(),
                    "IPSEC: SAs with {n} idle for {}s, deleting",
                    idle.as_secs()
                );
                self.drop_peer(now, n);
            }
        }
        self.pump(now);
    }

    /// Deletes everything with spoke `nbma`: SAs (telling it), its NHRP
    /// entries and shortcuts; traffic falls back to the hub and resolves
    /// again. Used on idle expiry, DPD, the peer's delete and `clear crypto sa`.
    fn drop_peer(&mut self, now: Instant, nbma: Ipv4Addr) {
        self.ike.delete_peer(now, IpAddr::V4(nbma));
        self.dp(Command::RemovePeerSas(IpAddr::V4(nbma)));
        for n in self.engines_mut() {
            n.ipsec_down(IpAddr::V4(nbma));
            n.forget_peer(IpAddr::V4(nbma));
        }
        self.unmap_shortcuts_via(nbma);
        if let Some(p) = self.peers.get_mut(&nbma) {
            p.sas.clear();
            p.ike_asked = None;
            if p.kind == PeerKind::Spoke {
                self.peers.remove(&nbma);
                self.peers_changed += 1;
            }
        }
    }

    /// Takes shortcut `p/len` out of the data plane and puts back the base
    /// route it shadowed (tunnel subnet, configured route). Next-hop routes
    /// are re-pointed by [`Node::apply_via_routes`] afterwards.
    fn unmap_shortcut(&mut self, p: IpAddr, len: u8) {
        if self.shortcuts.remove(&(p, len)).is_some() {
            self.set_route(p, len, None);
            self.restore_base(p, len);
        }
    }

    /// Removes every shortcut through `nbma` and re-points next-hop routes
    /// (which may have named it) at what NHRP now knows, or the hub.
    fn unmap_shortcuts_via(&mut self, nbma: Ipv4Addr) {
        let gone: Vec<(IpAddr, u8)> = self
            .shortcuts
            .iter()
            .filter(|(_, n)| **n == nbma)
            .map(|(k, _)| *k)
            .collect();
        for (p, l) in gone {
            self.unmap_shortcut(p, l);
        }
        self.apply_via_routes();
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.engines()
            .filter_map(|n| n.poll_timeout())
            .chain(self.ike.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for n in self.engines_mut() {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        if self.ike.poll_timeout().is_some_and(|t| t <= now) {
            self.ike.handle_timeout(now);
        }
        self.pump(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Moves everything the engines produced into outputs, reacting to
    /// their events until both are quiet.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(t) = self.ike.poll_transmit() {
                moved = true;
                self.out.push_back(Output::Ike(t));
            }
            while let Some(ev) = self.ike.poll_event() {
                moved = true;
                self.on_ike_event(now, ev);
            }
            while let Some(t) = self.poll_nhrp_transmit() {
                moved = true;
                if let Some(nbma) = v4(t.dst_nbma) {
                    let peer = Peer {
                        nbma,
                        protection: self.protection(nbma),
                    };
                    self.dp(Command::SendNhrp {
                        peer,
                        packet: t.payload,
                    });
                }
            }
            while let Some(ev) = self.poll_nhrp_event() {
                moved = true;
                self.on_nhrp_event(now, ev);
            }
            if !moved {
                break;
            }
        }
        self.sync_multicast();
    }

    /// The data plane's replication list: NHRP's multicast NBMAs (or a
    /// point-to-point tunnel's destination), each with its protection.
    fn multicast_peers(&self) -> Vec<Peer> {
        let nbmas: Vec<Ipv4Addr> = match self.cfg.destination {
            Some(d) => vec![d],
            None => self
                .multicast_nbmas()
                .into_iter()
                .filter_map(v4)
                .filter(|n| *n != self.cfg.nbma)
                .collect(),
        };
        nbmas
            .into_iter()
            .map(|nbma| Peer {
                nbma,
                protection: self.protection(nbma),
            })
            .collect()
    }

    /// Tells the data plane the multicast list whenever it changed
    /// (registrations, expiry, NHS up/down, a peer's protection).
    fn sync_multicast(&mut self) {
        // Rebuilt only when something it is made of changed: on a hub with
        // thousands of clients the rebuild, not the check, is the cost.
        let from = (
            self.engines()
                .map(|n| n.multicast_version())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            self.peers_changed,
        );
        if self.mcast_built_from == Some(from) {
            return;
        }
        self.mcast_built_from = Some(from);
        let peers = self.multicast_peers();
        if self.mcast_sent.as_ref() == Some(&peers) {
            return;
        }
        let len = self.cfg.tunnel_prefix_len;
        let broadcast = (len < 31 && self.cfg.overlay_v4)
            .then(|| Prefix::new(IpAddr::V4(self.cfg.tunnel_addr), len).last())
            .and_then(v4);
        debug!(target: "dmvpn::nhrp", "NHRP: multicast list {:?}", peers.iter().map(|p| p.nbma).collect::<Vec<_>>());
        self.mcast_sent = Some(peers.clone());
        self.dp(Command::SetMulticast { peers, broadcast });
    }

    fn on_nhrp_event(&mut self, now: Instant, ev: dmvpn_nhrp::Event) {
        use dmvpn_nhrp::Event as E;
        debug!(target: "dmvpn::nhrp", "NHRP event: {ev:?}");
        match ev {
            E::NhsUp { .. } | E::NhsDown { .. } => self.update_base(),
            E::PeerRegistered {
                protocol,
                prefix_len,
                nbma,
                ..
            } => {
                if let Some(n) = v4(nbma) {
                    let p = protocol;
                    let kind = self.peer_mut(n, PeerKind::Registered, now);
                    if kind.kind == PeerKind::Spoke {
                        kind.kind = PeerKind::Registered;
                    }
                    self.kernel.register((mask(p, prefix_len), prefix_len));
                    self.set_route(p, prefix_len, Some(n));
                    self.apply_via_routes();
                }
            }
            E::PeerExpired {
                protocol,
                prefix_len,
                ..
            } => {
                self.kernel
                    .unregister((mask(protocol, prefix_len), prefix_len));
                self.set_route(protocol, prefix_len, None);
            }
            E::ShortcutUp {
                prefix,
                prefix_len,
                nbma,
                ..
            } => {
                let Some(n) = v4(nbma) else {
                    return;
                };
                if n == self.cfg.nbma {
                    return;
                }
                let p = mask(prefix, prefix_len);
                self.shortcuts.insert((p, prefix_len), n);
                self.peer_mut(n, PeerKind::Spoke, now);
                if !self.cfg.protected || self.has_sa(n) {
                    self.set_route(p, prefix_len, Some(n));
                } else {
                    self.ensure_sa(now, n);
                }
            }
            E::ShortcutDown {
                prefix, prefix_len, ..
            } => {
                self.unmap_shortcut(mask(prefix, prefix_len), prefix_len);
                self.apply_via_routes();
            }
            E::ResolutionAnswered { after, .. } => {
                self.resolution_latency.observe(after.as_secs_f64());
            }
            E::NeedIpsec { nbma } => {
                if let Some(n) = v4(nbma) {
                    if self.has_sa(n) {
                        for e in self.engines_mut() {
                            e.ipsec_up(now, nbma);
                        }
                    } else {
                        self.ensure_sa(now, n);
                    }
                }
            }
            _ => {}
        }
    }

    /// A removed shortcut that shadowed a base prefix exactly: put the base back.
    fn restore_base(&mut self, p: IpAddr, len: u8) {
        let Some(base) = (if p.is_ipv4() {
            self.base_nbma
        } else {
            self.base_nbma6
        }) else {
            return;
        };
        if self.base_prefixes(p.is_ipv6()).contains(&(p, len)) {
            self.set_route(p, len, Some(base));
        }
    }

    fn on_ike_event(&mut self, now: Instant, ev: dmvpn_ike::Event) {
        use dmvpn_ike::Event as E;
        match ev {
            E::ChildSaInstalled(c) => {
                self.install(now, &c);
                // A new SA with an NHS (not a rekey): the NHS may have
                // restarted and lost our registration; IOS registers again.
                if let Some(n) = v4(c.remote.ip()) {
                    self.register_with_nhs(now, n);
                }
            }
            E::ChildSaRekeyed { new, .. } => {
                // Make-before-break: the new pair goes in now (the outbound
                // one replaces the old); the old inbound SA stays until IKE
                // deletes it.
                self.install(now, &new)
            }
            E::ChildSaDeleted {
                remote,
                inbound_spi,
                outbound_spi,
                reason,
            } => {
                debug!(
                    target: "dmvpn::ike",
                    interface = %self.cfg.interface,
                    peer = %remote.ip(),
                    spi_in = format_args!("{inbound_spi:#010x}"),
                    spi_out = format_args!("{outbound_spi:#010x}"),
                    reason = %reason,
                    "IPSEC: SA {inbound_spi:#x} with {remote} deleted: {reason}"
                );
                self.out
                    .push_back(Output::Dataplane(Command::RemoveInbound(inbound_spi)));
                self.out
                    .push_back(Output::Dataplane(Command::RemoveOutbound {
                        peer: remote.ip(),
                        spi: outbound_spi,
                    }));
                if let Some(n) = v4(remote.ip()) {
                    self.sa_gone(now, n, inbound_spi);
                    // The last SA with an NHS is gone (its DELETE on a
                    // restart, say): register at once, which brings IPsec
                    // back up first.
                    if !self.has_sa(n) {
                        self.register_with_nhs(now, n);
                    }
                }
            }
            E::PeerDead { remote } => {
                warn!(target: "dmvpn::ike", interface = %self.cfg.interface, peer = %remote, "ISAKMP: peer {remote} is dead (DPD)");
                if let Some(n) = v4(remote) {
                    self.dp(Command::RemovePeerSas(remote));
                    if self
                        .peers
                        .get(&n)
                        .is_some_and(|p| p.kind == PeerKind::Spoke)
                    {
                        self.drop_peer(now, n);
                    } else if let Some(p) = self.peers.get_mut(&n) {
                        p.sas.clear();
                        p.ike_asked = None;
                        let nhs = p.kind == PeerKind::Nhs;
                        for e in self.engines_mut() {
                            e.ipsec_down(remote);
                            e.peer_gone(remote);
                            // Probe the NHS now: unanswered registrations
                            // mark it down and move traffic to another hub.
                            if nhs {
                                e.register_now(now);
                            }
                        }
                    }
                }
            }
            E::Phase1Failed { remote, reason } | E::Phase2Failed { remote, reason } => {
                if let Some(held) = self.failed_log.allow(now) {
                    warn!(
                        target: "dmvpn::ike",
                        interface = %self.cfg.interface,
                        peer = %remote.ip(),
                        reason = %reason,
                        "IPSEC: negotiation with {} failed: {reason}{}",
                        remote.ip(),
                        log_limit::held_note(held)
                    );
                }
                if let Some(n) = v4(remote.ip()) {
                    if !self.has_sa(n) {
                        self.out
                            .push_back(Output::Dataplane(Command::DiscardPending(n)));
                    }
                    if let Some(p) = self.peers.get_mut(&n) {
                        p.ike_asked = None;
                    }
                }
            }
            E::Phase1Up { id, remote, .. } => {
                info!(
                    target: "dmvpn::ike",
                    interface = %self.cfg.interface,
                    peer = %remote.ip(),
                    conn_id = id,
                    "ISAKMP: SA with {} is up (conn-id {id})",
                    remote.ip()
                );
            }
            E::Phase1Down { id, remote, reason } => {
                info!(
                    target: "dmvpn::ike",
                    interface = %self.cfg.interface,
                    peer = %remote.ip(),
                    conn_id = id,
                    reason = %reason,
                    "ISAKMP: SA with {} (conn-id {id}) deleted: {reason}",
                    remote.ip()
                );
            }
        }
    }

    /// Sends a registration to the NHS at `nbma` now, if it is one.
    fn register_with_nhs(&mut self, now: Instant, nbma: Ipv4Addr) {
        let is_nhs = self
            .peers
            .get(&nbma)
            .is_some_and(|p| p.kind == PeerKind::Nhs);
        if is_nhs {
            debug!(target: "dmvpn::nhrp", "NHRP: IPsec with NHS {nbma} changed, registering now");
            for e in self.engines_mut() {
                e.register_now_with(now, IpAddr::V4(nbma));
            }
        }
    }

    fn sa_gone(&mut self, now: Instant, nbma: Ipv4Addr, inbound_spi: u32) {
        let Some(p) = self.peers.get_mut(&nbma) else {
            return;
        };
        p.sas.remove(&inbound_spi);
        if !p.sas.is_empty() {
            return;
        }
        p.ike_asked = None;
        let spoke = p.kind == PeerKind::Spoke;
        for e in self.engines_mut() {
            e.ipsec_down(IpAddr::V4(nbma));
            // Its registrations may now be taken over (a spoke that moved
            // to another NBMA address registers again from there).
            e.peer_gone(IpAddr::V4(nbma));
        }
        if spoke {
            self.drop_peer(now, nbma);
        }
    }

    fn install(&mut self, now: Instant, c: &dmvpn_ike::ChildSa) {
        let Some(nbma) = v4(c.remote.ip()) else {
            return;
        };
        let (inb, outb) = match sa::from_child(c, &mut self.rng) {
            Ok(x) => x,
            Err(e) => {
                warn!(target: "dmvpn::esp", interface = %self.cfg.interface, peer = %nbma, "IPSEC: cannot install SA with {nbma}: {e}");
                return;
            }
        };
        info!(
            target: "dmvpn::ike",
            interface = %self.cfg.interface,
            peer = %nbma,
            spi_in = format_args!("{:#010x}", c.inbound_spi),
            spi_out = format_args!("{:#010x}", c.outbound_spi),
            transform = %c.transform.ios_name(),
            "IPSEC: SA with {nbma} installed: in {:#010x} out {:#010x} {}",
            c.inbound_spi,
            c.outbound_spi,
            c.transform.ios_name()
        );
        if self.keylog {
            for l in dmvpn_ike::keylog::esp_sa_lines(c) {
                self.out.push_back(Output::KeyLog(l));
            }
        }
        let protection = match c.encapsulation {
            dmvpn_ike::Encapsulation::Udp { remote_port, .. } => {
                Protection::EspUdp { port: remote_port }
            }
            dmvpn_ike::Encapsulation::None => Protection::Esp,
        };
        self.dp(Command::InsertInbound(Arc::new(inb)));
        // The outbound SA also releases packets held for this peer, so the
        // peer map must already carry the right protection.
        let changed = self.protection(nbma) != protection;
        self.set_protection(nbma, PeerKind::Spoke, protection, now);
        let p = self.peer_mut(nbma, PeerKind::Spoke, now);
        if p.sas.is_empty() {
            p.up_since = now;
        }
        p.sas.insert(c.inbound_spi, c.outbound_spi);
        p.last_active = now;
        p.ike_asked = None;
        self.assign_conn_id(c.inbound_spi);
        if changed {
            self.refresh_routes_via(nbma);
        }
        self.dp(Command::InsertOutbound(Arc::new(outb)));
        for e in self.engines_mut() {
            e.ipsec_up(now, IpAddr::V4(nbma));
        }
        let pending: Vec<(IpAddr, u8)> = self
            .shortcuts
            .iter()
            .filter(|(k, n)| **n == nbma && self.map.get(&Prefix::new(k.0, k.1)) != Some(n))
            .map(|(k, _)| *k)
            .collect();
        for (p, l) in pending {
            self.set_route(p, l, Some(nbma));
        }
    }

    /// Numbers a newly installed SA pair (two IDs: inbound, outbound) and
    /// forgets the IDs of pairs no longer installed. Forgetting takes a
    /// pass over every SA, so it waits until the table has doubled since
    /// the last pass: a hub installing thousands of pairs at once (after a
    /// restart) pays O(1) per pair, not a pass each.
    fn assign_conn_id(&mut self, inbound_spi: u32) {
        if self.conn_ids.len() >= 2 * self.conn_ids_kept + 64 {
            let live: std::collections::HashSet<u32> = self
                .peers
                .values()
                .flat_map(|p| p.sas.keys().copied())
                .collect();
            self.conn_ids.retain(|spi, _| live.contains(spi));
            self.conn_ids_kept = self.conn_ids.len();
        }
        let id = self.next_conn_id;
        let (first, step) = self.cfg.ipsec_conn_ids();
        self.next_conn_id = match id.checked_add(step.max(2)) {
            Some(n) => n,
            None => first,
        };
        self.conn_ids.insert(inbound_spi, id);
    }

    /// The `conn id`s of the SA pair with this inbound SPI (0 if unknown).
    fn conn_ids(&self, inbound_spi: u32) -> (u32, u32) {
        self.conn_ids
            .get(&inbound_spi)
            .map_or((0, 0), |id| (*id, id.wrapping_add(1)))
    }

    /// `clear ip nhrp`: dynamic and cached entries go; shortcuts with them.
    pub fn clear_nhrp(&mut self, now: Instant) -> u64 {
        let mut cleared = 0;
        for n in self.engines_mut() {
            let before = n.cache().len();
            n.clear();
            cleared += before.saturating_sub(n.cache().len()) as u64;
        }
        let sc: Vec<(IpAddr, u8)> = self.shortcuts.keys().copied().collect();
        for (p, l) in sc {
            self.unmap_shortcut(p, l);
        }
        // Next-hop routes resolved through cleared entries go via the hub.
        self.apply_via_routes();
        self.pump(now);
        cleared
    }

    /// The networks behind this node (directly connected, on other
    /// interfaces than the tunnel) as the kernel now has them: NHRP
    /// answers resolutions for them from now on.
    pub fn set_local_prefixes(&mut self, now: Instant, prefixes: &[(IpAddr, u8)]) {
        let of = |v6: bool| -> Vec<(IpAddr, u8)> {
            prefixes
                .iter()
                .filter(|(p, _)| p.is_ipv6() == v6)
                .copied()
                .collect()
        };
        let (v4s, v6s) = (of(false), of(true));
        if let Some(c) = self.cfg.nhrp.as_mut() {
            c.local_prefixes = v4s.clone();
        }
        if let Some(c) = self.cfg.nhrp6.as_mut() {
            c.local_prefixes = v6s.clone();
        }
        if let Some(n) = self.nhrp.as_mut() {
            n.set_local_prefixes(now, v4s);
        }
        if let Some(n) = self.nhrp6.as_mut() {
            n.set_local_prefixes(now, v6s);
        }
    }

    /// Our NBMA address changed (an interface source moved, e.g. DHCP or
    /// failover): SAs bound to the old address are deleted, shortcuts
    /// through them go, and NHRP registers from the new address at once
    /// (after IPsec with each NHS, when the tunnel is protected).
    pub fn set_local_nbma(&mut self, now: Instant, nbma: Ipv4Addr) {
        let old = self.cfg.nbma;
        if nbma == old {
            return;
        }
        info!(target: "dmvpn::ctl", interface = %self.cfg.interface, nbma = %nbma, old_nbma = %old, "{}: NBMA address changed from {old} to {nbma}", self.cfg.interface);
        // IKE and IPsec SAs name the old address: delete them (telling
        // the peers where the old address still reaches them).
        self.clear_crypto_sa(now, None);
        self.cfg.set_nbma(nbma);
        self.peers_changed += 1;
        for n in self.engines_mut() {
            n.set_nbma(now, IpAddr::V4(nbma));
        }
        for n in self.nhs_nbmas() {
            self.ensure_sa(now, n);
        }
        self.pump(now);
    }

    /// `clear crypto sa [peer PEER]`: deletes IKE and IPsec SAs (telling
    /// the peers); traffic brings them back.
    pub fn clear_crypto_sa(&mut self, now: Instant, peer: Option<IpAddr>) -> u64 {
        let targets: Vec<Ipv4Addr> = self
            .peers
            .iter()
            .filter(|(n, p)| !p.manual && peer.is_none_or(|x| x == IpAddr::V4(**n)))
            .map(|(n, _)| *n)
            .collect();
        let mut count = 0u64;
        for n in targets {
            count += self.peers.get(&n).map_or(0, |p| p.sas.len() as u64);
            if self
                .peers
                .get(&n)
                .is_some_and(|p| p.kind == PeerKind::Spoke)
            {
                // A spoke's shortcuts go with its SAs: traffic returns to
                // the hub and resolves the spoke again.
                self.drop_peer(now, n);
                continue;
            }
            self.ike.delete_peer(now, IpAddr::V4(n));
            self.dp(Command::RemovePeerSas(IpAddr::V4(n)));
            for e in self.engines_mut() {
                e.ipsec_down(IpAddr::V4(n));
            }
            if let Some(p) = self.peers.get_mut(&n) {
                p.sas.clear();
                p.ike_asked = None;
            }
        }
        self.pump(now);
        count
    }
}

/// The key of `prefix/len` in the node's route map.
fn v4_prefix(prefix: Ipv4Addr, len: u8) -> Prefix {
    Prefix::new(IpAddr::V4(prefix), len)
}

/// Source and destination of an inner IPv4 or IPv6 packet.
fn inner_endpoints(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(pkt).ok()?;
            Some((IpAddr::V4(ip.src()), IpAddr::V4(ip.dst())))
        }
        6 if pkt.len() >= 40 => {
            let a = |r: std::ops::Range<usize>| -> Option<IpAddr> {
                let b: [u8; 16] = pkt.get(r)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            };
            Some((a(8..24)?, a(24..40)?))
        }
        _ => None,
    }
}

/// The host prefix length of `a`'s family.
fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}
