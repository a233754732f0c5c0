//! [`Router`]: the one driving API of a DMVPN node.
//!
//! A router owns the [`Node`] (NHRP + IKE and their decisions) and the
//! forwarding [`Engine`], and does once, for every driver, what ties them
//! together: the engine's received NHRP/IKE messages and SA requests go to
//! the node, the node's commands go to the engine, the hub's relay
//! decision is taken on every packet the engine would hand up, the node
//! gets the engine's counters once a stats interval.
//!
//! A driver's loop:
//!
//! ```text
//! let mut r = Router::new(cfg, seed, now);
//! loop {
//!     wait for: TUN packet, underlay datagram, route change, request,
//!               or the time r.poll_timeout()
//!     r.handle_tun(now, pkt) | r.handle_underlay(_burst)(now, ..)
//!       | r.handle_kernel_routes(now, routes) | r.request(now, req)
//!       | r.reconfigure(now, &new_config) | r.handle_timeout(now)
//!     write out r.batches() (TUN, raw GRE, raw ESP, UDP 4500),
//!       r.poll_transmit() (IKE datagrams), r.poll_keylog(),
//!       r.poll_kernel_route() (routes to install or remove)
//! }
//! ```
//!
//! Time is a [`dmvpn_time::Instant`]; NHRP and IKE both run on `now`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request, Response};
use dmvpn_time::Instant;
use tracing::info;

use crate::control::{KernelRoute, Node, NodeConfig, Output, STATS_INTERVAL, Seed};
use crate::datapath::gre::GreCounters;
use crate::datapath::sadb::Sadb;
use crate::engine::{
    BatchSizes, Batches, Command, Counters, DataplaneStats, Engine, Event, PeerMap, Punt, Update,
    WorkerPolicy,
};
use crate::reload::{self, Effect, ReloadError, ReloadSummary};

/// UDP port of IKE without NAT traversal; datagrams to any other local
/// port go through the NAT-T demux (ESP, IKE behind the non-ESP marker,
/// keepalives).
pub const IKE_PORT: u16 = 500;

/// Something received from the underlay.
#[derive(Debug, Clone, Copy)]
pub enum Datagram<'a> {
    /// An IPv4 packet (header included) carrying GRE.
    Gre(&'a [u8]),
    /// An IPv4 packet (header included) carrying ESP.
    Esp(&'a [u8]),
    /// A UDP payload: IKE on port 500, NAT-T (ESP-in-UDP or IKE) otherwise.
    Udp {
        local: SocketAddrV4,
        remote: SocketAddrV4,
        payload: &'a [u8],
    },
}

/// A change of the router's state, recorded (when asked for with
/// [`Router::record_changes`]) for drivers that report on it, such as
/// the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An NHRP packet arrived from `src` (recorded before the node handles it).
    NhrpReceived { src: Ipv4Addr, packet: Vec<u8> },
    /// An inbound SA was installed.
    InboundSaAdded { spi: u32, peer: IpAddr },
    /// An inbound SA was removed.
    InboundSaRemoved { spi: u32 },
    /// Every SA with `peer` was removed.
    PeerSasRemoved { peer: IpAddr },
    /// The outbound SAs to `peer` changed; `installed` says whether one is there now.
    OutboundSa { peer: Ipv4Addr, installed: bool },
    /// `prefix/len` now goes to `nbma` (`None`: the mapping was removed).
    Route {
        prefix: IpAddr,
        len: u8,
        nbma: Option<Ipv4Addr>,
    },
    /// The multicast replication list (and tunnel broadcast address) was set.
    Multicast {
        peers: Vec<Ipv4Addr>,
        broadcast: Option<Ipv4Addr>,
    },
}

/// How a driver wants its router built.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the node gets the engine's counters (idle timers, DPD).
    pub stats_interval: Duration,
    /// Record [`Change`]s for [`Router::poll_change`].
    pub record_changes: bool,
    /// Emit `esp_sa` key-log lines ([`Router::poll_keylog`]) for every SA.
    pub keylog: bool,
    /// Encrypt queued ESP packets together when [`Router::batches`] is
    /// called (faster with CBC) instead of one by one as they are queued.
    pub defer_seal: bool,
    /// Send-batch dimensions; `None`: 64 buffers of 2 KiB per batch.
    /// A simulator with thousands of routers uses small ones.
    pub batch_sizes: Option<BatchSizes>,
    /// Queue the routes NHRP taught the node for the kernel's routing
    /// table ([`Router::poll_kernel_route`]).
    pub kernel_routes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stats_interval: STATS_INTERVAL,
            record_changes: false,
            keylog: false,
            defer_seal: false,
            batch_sizes: None,
            kernel_routes: false,
        }
    }
}

impl crate::forward::Forward for Router {
    fn handle_tun(&mut self, now: Instant, pkt: &[u8]) {
        Router::handle_tun(self, now, pkt)
    }

    fn handle_underlay_burst<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = Datagram<'a>>,
    ) {
        Router::handle_underlay_burst(self, now, datagrams)
    }

    fn has_room_for(&self, pkt: &[u8]) -> bool {
        Router::has_room_for(self, pkt)
    }

    fn batches(&mut self) -> Batches<'_> {
        Router::batches(self)
    }

    fn counters_mut(&mut self) -> &mut Counters {
        Router::counters_mut(self)
    }
}

/// One DMVPN node with its forwarding engine. See the module documentation.
pub struct Router {
    node: Node,
    engine: Engine,
    stats_interval: Duration,
    next_stats: Instant,
    ike_out: VecDeque<dmvpn_ike::Transmit>,
    keylog: VecDeque<String>,
    changes: Option<VecDeque<Change>>,
    /// Kernel routes to install or remove (only with
    /// [`Options::kernel_routes`]).
    kernel_routes: Option<VecDeque<KernelRoute>>,
    /// Packets of the engine's TUN batch before this index have had the
    /// relay decision.
    tun_checked: usize,
    relayed: Vec<Vec<u8>>,
    /// The node's own deadline, computed at most once between calls
    /// (`None` when stale): it walks every IKE SA.
    deadline: Cell<Option<Option<Instant>>>,
    /// The policy the replicas last got (`None`: there are none).
    replica_policy: Option<WorkerPolicy>,
}

impl Router {
    /// A router for `cfg` (see [`crate::control::config_map::map`]).
    /// `seed` is 256 bits from the OS (dmvpnd) or derived from the lab
    /// seed (the simulator).
    pub fn new(cfg: NodeConfig, seed: Seed, now: Instant) -> Router {
        Router::with_options(cfg, seed, now, Options::default())
    }

    /// [`Router::new`] with [`Options`].
    pub fn with_options(cfg: NodeConfig, seed: Seed, now: Instant, opts: Options) -> Router {
        let engine = Engine::new(cfg.dataplane.clone(), Sadb::new(), PeerMap::new());
        Router::with_engine(cfg, engine, seed, now, opts)
    }

    /// A router around a prepared engine (tests with hand-made SAs and
    /// peer-map entries); the node adds what its configuration says.
    pub fn with_engine(
        cfg: NodeConfig,
        mut engine: Engine,
        seed: Seed,
        now: Instant,
        opts: Options,
    ) -> Router {
        let mut node = Node::from_node_config(cfg, seed, now);
        node.set_keylog(opts.keylog);
        engine.set_defer_seal(opts.defer_seal);
        if let Some(sizes) = opts.batch_sizes {
            engine.set_batch_sizes(sizes);
        }
        let mut r = Router {
            node,
            engine,
            stats_interval: opts.stats_interval,
            next_stats: now + opts.stats_interval,
            ike_out: VecDeque::new(),
            keylog: VecDeque::new(),
            changes: opts.record_changes.then(VecDeque::new),
            kernel_routes: opts.kernel_routes.then(VecDeque::new),
            tun_checked: 0,
            relayed: Vec::new(),
            deadline: Cell::new(None),
            replica_policy: None,
        };
        r.settle(now);
        r
    }

    /// A router for a whole validated configuration. An interface
    /// `source` is not resolved here: the router sends from `0.0.0.0`
    /// until the driver hands it the interface's address
    /// ([`Router::handle_local_nbma`]).
    pub fn from_config(
        cfg: &dmvpn_config::Config,
        seed: Seed,
        now: Instant,
        opts: Options,
    ) -> Result<Router, crate::control::MapError> {
        Ok(Router::with_options(
            crate::control::config_map::map(cfg)?,
            seed,
            now,
            opts,
        ))
    }

    /// Applies a changed configuration in place (a reload): tunnels,
    /// peers, registrations and SAs stay; each changed key takes effect
    /// as [`crate::reload::Effect`] says. A change that needs a restart
    /// refuses the whole reload and leaves the running configuration as
    /// it is.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        new: &dmvpn_config::Config,
    ) -> Result<ReloadSummary, ReloadError> {
        let changes = reload::plan(&self.node.config().origin, new)?;
        if changes.is_empty() {
            return Ok(ReloadSummary::default());
        }
        let mapped = crate::control::config_map::map(new)?;
        if changes.iter().any(|c| c.effect == Effect::TunnelRestarted) {
            self.restart_tunnel(now, mapped);
        } else {
            self.node.reconfigure(now, mapped);
            self.engine.set_tunnel(&self.node.config().dataplane);
        }
        self.settle(now);
        Ok(ReloadSummary { changes })
    }

    /// Starts the tunnel again under `cfg` (a new role or tunnel mode):
    /// the SAs are deleted as `clear crypto sa` does (the peers are
    /// told), then a fresh node takes over, with what the driver resolved
    /// (the NBMA address, the networks behind the node) and the key-log
    /// setting; the kernel routes NHRP had installed are withdrawn.
    fn restart_tunnel(&mut self, now: Instant, mut cfg: NodeConfig) {
        info!(target: "dmvpn::ctl", interface = %cfg.interface, "{}: the tunnel starts again under its new role or mode", cfg.interface);
        self.node.clear_crypto_sa(now, None);
        self.settle(now);
        let old = self.node.config();
        cfg.set_nbma(old.nbma);
        if let (Some(n), Some(o)) = (cfg.nhrp.as_mut(), old.nhrp.as_ref()) {
            n.local_prefixes = o.local_prefixes.clone();
        }
        if let (Some(n), Some(o)) = (cfg.nhrp6.as_mut(), old.nhrp6.as_ref()) {
            n.local_prefixes = o.local_prefixes.clone();
        }
        let withdrawn = self.node.kernel_routes();
        let seed = self.node.next_seed();
        let keylog = self.node.keylog_enabled();
        self.engine.restart_tunnel(&cfg.dataplane);
        self.node = Node::from_node_config(cfg, seed, now);
        self.node.set_keylog(keylog);
        if let Some(q) = self.kernel_routes.as_mut() {
            q.extend(
                withdrawn
                    .into_iter()
                    .map(|(prefix, len)| KernelRoute::Remove { prefix, len }),
            );
        }
    }

    /// Emit key-log lines ([`Router::poll_keylog`]) from now on, or stop
    /// (the driver opened or closed its key log).
    pub fn set_keylog(&mut self, on: bool) {
        self.node.set_keylog(on);
    }

    /// The node (configuration, `show` snapshots, test queries).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The forwarding engine (SADB, peer map, queued packets).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine's counters and SAs.
    pub fn stats(&self) -> DataplaneStats {
        self.engine.stats()
    }

    /// Counters a driver adds to (receive and send errors, TUN offload).
    pub fn counters_mut(&mut self) -> &mut Counters {
        self.engine.counters_mut()
    }

    /// Mixes fresh seed material into the node's generators.
    pub fn reseed(&mut self, fresh: &Seed) {
        self.node.reseed(fresh);
    }

    /// True when every batch has room for what an inner packet `pkt` may
    /// queue; otherwise the driver writes the batches out first.
    pub fn has_room_for(&self, pkt: &[u8]) -> bool {
        self.engine.has_room_for(pkt)
    }

    /// True when some batch should be written out before more input.
    pub fn should_flush(&self) -> bool {
        self.engine.should_flush()
    }

    /// An inner packet read from the TUN (routed into the tunnel).
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8]) {
        self.node.observe_outbound(now, pkt);
        self.settle(now);
        self.engine.outbound(pkt);
        self.settle(now);
    }

    /// One datagram from the underlay.
    pub fn handle_underlay(&mut self, now: Instant, d: Datagram<'_>) {
        self.handle_underlay_burst(now, std::iter::once(d));
    }

    /// Datagrams from the underlay, in order; runs of ESP are
    /// authenticated together.
    pub fn handle_underlay_burst<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = Datagram<'a>>,
    ) {
        let node = &mut self.node;
        self.engine
            .underlay_burst(datagrams, |local, remote, payload| {
                node.handle_ike(now, SocketAddr::V4(local), SocketAddr::V4(remote), payload)
            });
        self.settle(now);
    }

    /// The kernel's routes through the tunnel that name a next hop
    /// (`prefix/len via tunnel-address`), as installed by the operator or
    /// a routing daemon; the whole set each time.
    pub fn handle_kernel_routes(&mut self, now: Instant, routes: &[(IpAddr, u8, IpAddr)]) {
        self.node.set_tunnel_routes(now, routes);
        self.settle(now);
    }

    /// The networks directly connected behind this node (its LANs), as
    /// the kernel now has them; the whole set each time.
    pub fn handle_local_prefixes(&mut self, now: Instant, prefixes: &[(IpAddr, u8)]) {
        self.node.set_local_prefixes(now, prefixes);
        self.settle(now);
    }

    /// Our NBMA address is now `nbma` (the source interface's primary
    /// address changed): outer packets leave from it, SAs bound to the
    /// old one are deleted, and the node registers with its NHSs again.
    pub fn handle_local_nbma(&mut self, now: Instant, nbma: Ipv4Addr) {
        if nbma == self.node.config().nbma {
            return;
        }
        self.engine.set_local_nbma(nbma);
        self.node.set_local_nbma(now, nbma);
        self.settle(now);
    }

    /// When [`Router::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.node_deadline()
            .map_or(self.next_stats, |d| d.min(self.next_stats))
    }

    /// Time has come to `now`: the stats tick, NHRP and IKE timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_stats {
            let (counters, _) = self.engine.total_counters();
            let sadb = self.engine.sadb();
            self.node
                .handle_stats(now, &counters, sadb.invalid_spi, sadb.activity());
            self.next_stats = now + self.stats_interval;
        }
        if self.node_deadline().is_some_and(|d| d <= now) {
            self.node.handle_timeout(now);
        }
        self.settle(now);
    }

    /// An operator request. `debug` requests change the driver's log
    /// filter, which the router does not own: the driver answers them.
    pub fn request(&mut self, now: Instant, req: Request) -> Response {
        let node = &mut self.node;
        let resp = match req {
            Request::ShowNhrp => Response::Ok(Reply::Nhrp(node.show_nhrp(now, false))),
            Request::ShowIpv6Nhrp => Response::Ok(Reply::Nhrp(node.show_nhrp(now, true))),
            Request::ShowNhrpNhs => Response::Ok(Reply::NhrpNhs(node.show_nhrp_nhs(now))),
            Request::ShowNhrpTraffic => {
                let st = self.engine.stats();
                Response::Ok(Reply::NhrpTraffic(node.show_nhrp_traffic(now, Some(&st))))
            }
            Request::ShowDmvpn => Response::Ok(Reply::Dmvpn(node.show_dmvpn(now))),
            Request::ShowDmvpnDetail => {
                let st = self.engine.stats();
                Response::Ok(Reply::DmvpnDetail(node.show_dmvpn_detail(now, Some(&st))))
            }
            Request::ShowCryptoIsakmpSa => Response::Ok(Reply::IsakmpSa(node.show_isakmp_sa(now))),
            Request::ShowCryptoIpsecSa => {
                let st = self.engine.stats();
                Response::Ok(Reply::IpsecSa(node.show_ipsec_sa_report(now, Some(&st))))
            }
            Request::ShowCryptoSession => {
                let st = self.engine.stats();
                Response::Ok(Reply::CryptoSession(
                    node.show_crypto_session(now, Some(&st)),
                ))
            }
            Request::ClearNhrp => Response::Ok(Reply::Cleared {
                count: node.clear_nhrp(now),
            }),
            Request::ClearNhrpEntry {
                address,
                prefix_len,
            } => Response::Ok(Reply::Cleared {
                count: node.clear_nhrp_entry(now, address, prefix_len),
            }),
            Request::ClearCryptoSa { peer } => Response::Ok(Reply::Cleared {
                count: node.clear_crypto_sa(now, peer),
            }),
            // IOS's `clear crypto session` deletes the IKE and IPsec SAs, as
            // `clear crypto sa` does here.
            Request::ClearCryptoSession { remote } => Response::Ok(Reply::Cleared {
                count: node.clear_crypto_sa(now, remote),
            }),
            Request::ShowStats => Response::Ok(Reply::Stats(vec![node.show_stats()])),
            Request::Debug { .. } => Response::error("debug settings belong to the driver"),
            // Reading the file is the driver's; it then calls `reconfigure`.
            Request::Reload => Response::error("reloading belongs to the driver"),
        };
        self.settle(now);
        resp
    }

    /// A replica of the forwarding engine for a worker thread (see
    /// [`crate::engine::Engine::replica`]). From the first one on, the
    /// router records the changes replicas need ([`Router::poll_update`]).
    pub fn replica(&mut self) -> Engine {
        self.engine.enable_replication();
        let policy = self.node.worker_policy();
        self.replica_policy = Some(policy);
        self.engine.replica(policy)
    }

    /// The next change for every replica, in order.
    pub fn poll_update(&mut self) -> Option<Update> {
        self.engine.poll_update()
    }

    /// What a replica handed back, handled as if this router had read it.
    pub fn handle_punt(&mut self, now: Instant, p: Punt) {
        match p {
            Punt::Tun(pkt) => self.handle_tun(now, &pkt),
            Punt::Relay(pkt) => {
                self.node.observe_outbound(now, &pkt);
                self.settle(now);
                self.engine.outbound(&pkt);
            }
            Punt::Esp { src, esp } => self.engine.inbound_punted_esp(src, &esp),
            Punt::Event(ev) => self.node_event(now, ev),
        }
        self.settle(now);
    }

    /// A replica's counters, as it reports them now and then; shown with
    /// this router's own.
    pub fn set_replica_counters(&mut self, index: usize, c: Counters, gre: GreCounters) {
        self.engine.set_replica_counters(index, c, gre);
    }

    /// Everything queued for the TUN and the underlay sockets (ESP
    /// sealed). The driver writes each batch out and clears it.
    pub fn batches(&mut self) -> Batches<'_> {
        self.tun_checked = 0;
        self.engine.batches()
    }

    /// The next IKE datagram to send from `local` to `remote` (UDP; on a
    /// NAT-T port the payload already starts with the non-ESP marker).
    pub fn poll_transmit(&mut self) -> Option<dmvpn_ike::Transmit> {
        self.ike_out.pop_front()
    }

    /// The next key-log line (only with [`Router::set_keylog`]).
    pub fn poll_keylog(&mut self) -> Option<String> {
        self.keylog.pop_front()
    }

    /// The next route to install in or remove from the kernel's routing
    /// table, through the tunnel (only with [`Options::kernel_routes`]):
    /// shortcuts in use and, on a hub, registered clients. Routes the
    /// driver reads from the kernel ([`Router::handle_kernel_routes`])
    /// must not include the ones it installed.
    pub fn poll_kernel_route(&mut self) -> Option<KernelRoute> {
        self.kernel_routes.as_mut().and_then(|q| q.pop_front())
    }

    /// The next recorded change (only with [`Router::record_changes`]).
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.as_mut().and_then(|c| c.pop_front())
    }

    fn node_deadline(&self) -> Option<Instant> {
        if let Some(d) = self.deadline.get() {
            return d;
        }
        let d = self.node.poll_timeout();
        self.deadline.set(Some(d));
        d
    }

    fn record(&mut self, c: Change) {
        if let Some(q) = self.changes.as_mut() {
            q.push_back(c);
        }
    }

    /// Moves the node's outputs to the engine and the driver's queues and
    /// the engine's events to the node, and relays what a hub must relay,
    /// until nothing moves.
    fn settle(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(o) = self.node.poll_output() {
                moved = true;
                match o {
                    Output::Ike(t) => self.ike_out.push_back(t),
                    Output::Dataplane(c) => self.apply(c),
                    Output::KeyLog(line) => self.keylog.push_back(line),
                    Output::Kernel(k) => {
                        if let Some(q) = self.kernel_routes.as_mut() {
                            q.push_back(k);
                        }
                    }
                }
            }
            while let Some(ev) = self.engine.poll_event() {
                moved = true;
                self.node_event(now, ev);
            }
            moved |= self.relay(now);
            if !moved {
                break;
            }
        }
        if let Some(old) = self.replica_policy {
            let policy = self.node.worker_policy();
            if policy != old {
                self.replica_policy = Some(policy);
                self.engine.record_policy(policy);
            }
        }
        self.deadline.set(None);
    }

    /// Hands an event of the data plane (or of a replica) to the node.
    fn node_event(&mut self, now: Instant, ev: Event) {
        if self.changes.is_some()
            && let Event::Nhrp { src, packet } = &ev
        {
            let c = Change::NhrpReceived {
                src: *src,
                packet: packet.clone(),
            };
            self.record(c);
        }
        self.node.handle_dataplane_event(now, ev);
    }

    /// Applies a node command to the engine, recording what changed.
    fn apply(&mut self, c: Command) {
        if self.changes.is_none() {
            self.engine.apply(c);
            return;
        }
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        };
        let (before, check) = match &c {
            Command::InsertInbound(sa) => (
                Some(Change::InboundSaAdded {
                    spi: sa.spi,
                    peer: sa.peer,
                }),
                None,
            ),
            Command::InsertOutbound(sa) => (None, v4(sa.peer)),
            Command::RemovePeerSas(peer) => {
                (Some(Change::PeerSasRemoved { peer: *peer }), v4(*peer))
            }
            Command::RemoveInbound(spi) => (Some(Change::InboundSaRemoved { spi: *spi }), None),
            Command::RemoveOutbound { peer, .. } => (None, v4(*peer)),
            Command::MapInsert { prefix, len, peer } => (
                Some(Change::Route {
                    prefix: *prefix,
                    len: *len,
                    nbma: Some(peer.nbma),
                }),
                None,
            ),
            Command::MapRemove { prefix, len } => (
                Some(Change::Route {
                    prefix: *prefix,
                    len: *len,
                    nbma: None,
                }),
                None,
            ),
            Command::SetMulticast { peers, broadcast } => (
                Some(Change::Multicast {
                    peers: peers.iter().map(|p| p.nbma).collect(),
                    broadcast: *broadcast,
                }),
                None,
            ),
            _ => (None, None),
        };
        if let Some(b) = before {
            self.record(b);
        }
        self.engine.apply(c);
        if let Some(peer) = check {
            let installed = self.engine.has_outbound(IpAddr::V4(peer));
            self.record(Change::OutboundSa { peer, installed });
        }
    }

    /// A hub sends packets from one spoke to another straight back into
    /// the tunnel ([`Node::should_relay`]) instead of up the TUN; the
    /// node sees them as outbound traffic (redirects). True if any was.
    fn relay(&mut self, now: Instant) -> bool {
        let len = self.engine.tun_out().len();
        if self.tun_checked >= len {
            self.tun_checked = len;
            return false;
        }
        let mut taken = std::mem::take(&mut self.relayed);
        let node = &self.node;
        self.engine
            .take_tun_from(self.tun_checked, |p| node.should_relay(p), &mut taken);
        self.tun_checked = self.engine.tun_out().len();
        let any = !taken.is_empty();
        for p in taken.drain(..) {
            self.node.observe_outbound(now, &p);
            self.engine.outbound(&p);
        }
        self.relayed = taken;
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Peer, Protection};
    use dmvpn_wire::Ipv4Repr;

    const NBMA_A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const NBMA_B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    const TUN_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    /// A hub router nobody registers with, around an engine that maps
    /// `peer_tunnel` to `peer` over plain GRE.
    fn router(n: u8, peer_tunnel: Ipv4Addr, peer: Ipv4Addr) -> Router {
        let text = format!(
            "[node]\nname = \"n{n}\"\nrole = \"hub\"\n[[tunnel]]\nname = \"Tunnel0\"\n\
             address = \"192.168.1.{n}/24\"\nmtu = 1400\nsource = \"172.16.0.{n}\"\n\
             mode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\n\
             authentication = \"k\"\nallowed_nbma = [\"172.16.0.0/24\"]\n"
        );
        let cfg = dmvpn_config::Config::from_str(&text, "t.toml")
            .unwrap()
            .config;
        let ncfg = crate::control::config_map::map(&cfg).unwrap();
        let mut map = PeerMap::new();
        let protection = Protection::None;
        map.insert(
            peer_tunnel,
            32,
            Peer {
                nbma: peer,
                protection,
            },
        );
        let engine = Engine::new(ncfg.dataplane.clone(), Sadb::new(), map);
        let seed = Seed([n; 32]);
        Router::with_engine(ncfg, engine, seed, Instant::ZERO, Options::default())
    }

    fn udp(dst: Ipv4Addr, seq: u8) -> Vec<u8> {
        let mut p = vec![seq; 60];
        Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 1, 1),
            dst,
            protocol: 17,
            tos: 0,
            ttl: 64,
            ident: u16::from(seq),
            flags_frag: 0,
            payload_len: 40,
        }
        .emit(&mut p)
        .unwrap();
        p
    }

    #[test]
    fn a_mixed_burst_goes_through_each_path_in_order() {
        let mut a = router(1, TUN_B, NBMA_B);
        let mut b = router(2, Ipv4Addr::new(192, 168, 1, 1), NBMA_A);
        let (p1, p2) = (udp(TUN_B, 1), udp(TUN_B, 2));
        a.handle_tun(Instant::ZERO, &p1);
        a.handle_tun(Instant::ZERO, &p2);
        let out = a.batches();
        let gre: Vec<Vec<u8>> = (0..out.gre.len())
            .map(|i| out.gre.get(i).to_vec())
            .collect();
        assert_eq!(gre.len(), 2);
        let (l500, l4500) = (
            SocketAddrV4::new(NBMA_B, IKE_PORT),
            SocketAddrV4::new(NBMA_B, 4500),
        );
        let remote = SocketAddrV4::new(NBMA_A, 4500);
        b.handle_underlay_burst(
            Instant::ZERO,
            [
                Datagram::Gre(&gre[0]),
                Datagram::Udp {
                    local: l4500,
                    remote,
                    payload: &[0xff],
                },
                Datagram::Udp {
                    local: l500,
                    remote,
                    payload: &[1, 2, 3],
                },
                Datagram::Esp(&[0x45]),
                Datagram::Gre(&gre[1]),
            ],
        );
        let st = b.stats().counters;
        assert_eq!((st.gre_rx, st.keepalive_rx, st.esp_rx), (2, 1, 0));
        assert_eq!(st.malformed, 1, "the short ESP packet");
        // Both inner packets are for the hub's own tunnel address: they
        // reach the TUN, in order.
        let out = b.batches();
        assert_eq!(out.tun.len(), 2);
        assert_eq!((out.tun.get(0), out.tun.get(1)), (&p1[..], &p2[..]));
    }
}

#[cfg(test)]
mod nbma_change_tests {
    use super::*;

    const OLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
    const NEW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
    const NHS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    /// The modern example spoke with `source` naming an interface, its
    /// address resolved to `OLD` as dmvpnd does; `protected: false`
    /// drops `tunnel protection` (plain GRE).
    fn spoke(protected: bool) -> Router {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/modern-spoke.toml");
        let mut text = std::fs::read_to_string(path)
            .unwrap()
            .replace("source = \"198.51.100.20\"", "source = \"wan0\"");
        if !protected {
            text = text.replace("protection = \"dmvpn\"\n", "");
        }
        let cfg = dmvpn_config::Config::from_str(&text, "spoke.toml")
            .unwrap()
            .config;
        let mut ncfg = crate::control::config_map::map(&cfg).unwrap();
        assert_eq!(ncfg.source_interface.as_deref(), Some("wan0"));
        assert_eq!(ncfg.nbma, Ipv4Addr::UNSPECIFIED, "mapping needs no OS");
        ncfg.set_nbma(OLD);
        Router::with_options(ncfg, Seed([3; 32]), Instant::ZERO, Options::default())
    }

    fn gre_sources(r: &mut Router) -> Vec<Ipv4Addr> {
        let out = r.batches();
        let v = (0..out.gre.len())
            .map(|i| {
                let p = out.gre.get(i);
                Ipv4Addr::new(p[12], p[13], p[14], p[15])
            })
            .collect();
        out.gre.clear();
        v
    }

    #[test]
    fn a_new_address_registers_again_from_it() {
        let mut r = spoke(false);
        let t0 = r.poll_timeout();
        r.handle_timeout(t0);
        assert_eq!(gre_sources(&mut r), [OLD], "first registration");
        let t = t0 + Duration::from_secs(5);
        r.handle_local_nbma(t, NEW);
        assert_eq!(r.node().config().nbma, NEW);
        assert_eq!(
            gre_sources(&mut r),
            [NEW],
            "registration from the new address at once"
        );
        // The same address again changes nothing.
        r.handle_local_nbma(t, NEW);
        assert!(gre_sources(&mut r).is_empty());
    }

    #[test]
    fn a_new_address_negotiates_ipsec_from_it() {
        let mut r = spoke(true);
        let first: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
        assert!(!first.is_empty(), "IKE with the NHS at start");
        assert!(first.iter().all(|t| t.local.ip() == IpAddr::V4(OLD)));
        r.handle_local_nbma(Instant(Duration::from_secs(1)), NEW);
        let after: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
        assert!(
            after
                .iter()
                .any(|t| t.local.ip() == IpAddr::V4(NEW) && t.remote.ip() == IpAddr::V4(NHS)),
            "IKE with the NHS from the new address: {:?}",
            after
                .iter()
                .map(|t| (t.local, t.remote))
                .collect::<Vec<_>>()
        );
    }
}
