//! [`LabNode`] implemented with the real `dmvpn_agent::node::Node` and the
//! real synchronous data-plane engine (GRE, ESP with real cryptography,
//! SADB): what `dmvpnd` runs, minus the TUN device and sockets.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dmvpn_agent::datapath::sadb::Sadb;
use dmvpn_agent::node::{self, DpCmd, Node};
use dmvpn_agent::runtime::dataplane::{Command, Engine, Event as DpEvent, PeerMap};
use dmvpn_agent::runtime::sockets::SendBatch;
use dmvpn_nhrp::Instant;
use dmvpn_nhrp::wire::{Body, Packet, PacketType};

use crate::node::{
    Datagram, LabEvent, LabNode, NodeCounts, NodeFactory, NodeSpec, Output, Role, SimTime,
    Transport,
};
use crate::topology;

/// IKE/IPsec settings of the simulated network.
#[derive(Debug, Clone)]
pub struct Crypto {
    pub encryption: &'static str,
    pub hash: &'static str,
    pub group: u16,
    pub transforms: &'static str,
}

impl Default for Crypto {
    /// ECP-256 (group 19): a full handshake costs a fraction of a
    /// millisecond of CPU, so thousands of spokes fit; MODP-2048 (group
    /// 14) is about ten times dearer per handshake.
    fn default() -> Self {
        Crypto {
            encryption: "aes-128",
            hash: "sha256",
            group: 19,
            transforms: r#"["esp-gcm 128"]"#,
        }
    }
}

/// Builds real nodes: hubs with `redirect`, spokes with `shortcut`
/// (DMVPN phase 3), all with IPsec protection.
pub struct RealFactory {
    pub crypto: Crypto,
    pub idle_timeout: Duration,
    /// How often the node is given the data plane's counters (idle timers).
    pub stats_interval: Duration,
    /// Shrink the data plane's send batches (see [`SMALL_BUF`]).
    pub small_batches: bool,
    epoch: std::time::Instant,
}

/// Send-buffer size in the simulator: room for the lab's probe packets
/// and NHRP messages with all headers, not for full-MTU packets.
pub const SMALL_BUF: usize = 512;

impl RealFactory {
    pub fn new(idle_timeout: Duration) -> Self {
        RealFactory {
            crypto: Crypto::default(),
            idle_timeout,
            stats_interval: node::STATS_INTERVAL,
            small_batches: true,
            epoch: std::time::Instant::now(),
        }
    }

    /// The node's configuration file text.
    pub fn config_text(&self, spec: &NodeSpec, hubs: &[NodeSpec]) -> String {
        self.config_text_with(spec, hubs, topology::TUNNEL_PREFIX_LEN, "")
    }

    /// [`RealFactory::config_text`] with another tunnel prefix length and
    /// extra top-level TOML (e.g. a `[control]` section).
    pub fn config_text_with(
        &self,
        spec: &NodeSpec,
        hubs: &[NodeSpec],
        plen: u8,
        extra: &str,
    ) -> String {
        let c = &self.crypto;
        let idle = self.idle_timeout.as_secs().max(1);
        let (role, nhrp, routes) = match spec.role {
            Role::Hub => ("hub", "redirect = true\n".to_string(), String::new()),
            Role::Spoke => {
                let mut s = "shortcut = true\n".to_string();
                for h in hubs {
                    s += &format!(
                        "[[tunnel.nhrp.nhs]]\naddress = \"{}\"\nnbma = \"{}\"\n",
                        h.tunnel, h.nbma
                    );
                }
                let mut routes: Vec<String> =
                    hubs.iter().map(|h| format!("\"{}/24\"", h.lan)).collect();
                routes.dedup();
                ("spoke", s, format!("routes = [{}]\n", routes.join(", ")))
            }
        };
        format!(
            r#"[node]
name = "{role}{idx}"
role = "{role}"
{extra}
[[ike.policy]]
priority = 10
encryption = "{enc}"
hash = "{hash}"
group = {group}
authentication = "pre-share"
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "lab-psk-0123"
[[ipsec.transform_set]]
name = "lab"
transforms = {ts}
mode = "transport"
[[ipsec.profile]]
name = "lab"
transform_sets = ["lab"]
lifetime_seconds = 3600
idle_time = {idle}
[[tunnel]]
name = "Tunnel0"
address = "{tun}/{plen}"
mtu = 1400
source = "{nbma}"
mode = "gre-multipoint"
protection = "lab"
{routes}[tunnel.nhrp]
network_id = 1
holdtime = 7200
map_multicast_dynamic = true
{nhrp}"#,
            idx = spec.index,
            enc = c.encryption,
            hash = c.hash,
            group = c.group,
            ts = c.transforms,
            tun = spec.tunnel,
            nbma = spec.nbma,
        )
    }
}

impl NodeFactory for RealFactory {
    type Node = RealNode;

    fn build(
        &mut self,
        spec: &NodeSpec,
        hubs: &[NodeSpec],
        seed: dmvpn_agent::node::Seed,
        now: SimTime,
    ) -> Result<RealNode, String> {
        let text = self.config_text(spec, hubs);
        let cfg = dmvpn_config::Config::from_str(&text, "lab.toml")
            .map_err(|e| format!("lab node configuration rejected: {e}"))?
            .config;
        let node = Node::new(&cfg, self.epoch, seed, Instant(now)).map_err(|e| e.to_string())?;
        let mut dp = Engine::new(node.dataplane_config(), Sadb::new(), PeerMap::new());
        if self.small_batches {
            // The harness drains the engine after every call, so small send
            // batches suffice; the daemon's (64 × 2 KiB each) would cost
            // half a megabyte per simulated node.
            dp.esp_out = SendBatch::new(64, SMALL_BUF);
            dp.gre_out = SendBatch::new(16, SMALL_BUF);
            dp.udp_out = SendBatch::new(4, SMALL_BUF);
            dp.tun_out = SendBatch::new(16, SMALL_BUF);
        }
        let mut n = RealNode {
            node,
            dp,
            spec: spec.clone(),
            hub_nbmas: hubs.iter().map(|h| h.nbma).collect(),
            stats_interval: self.stats_interval,
            next_stats: now,
            out: VecDeque::new(),
            inbound: BTreeMap::new(),
            outbound: BTreeSet::new(),
            routes: BTreeMap::new(),
            dropped_udp: 0,
            deadline: Cell::new(None),
        };
        n.pump(now);
        Ok(n)
    }

    fn policy(&self) -> String {
        let c = &self.crypto;
        format!(
            "IKEv1 main mode PSK, {} / {} / DH group {}; ESP {} transport",
            c.encryption,
            c.hash,
            c.group,
            c.transforms
                .trim_matches(|ch| ch == '[' || ch == ']')
                .replace('"', "")
        )
    }
}

/// A real node and its data plane.
pub struct RealNode {
    node: Node,
    dp: Engine,
    spec: NodeSpec,
    hub_nbmas: Vec<Ipv4Addr>,
    stats_interval: Duration,
    next_stats: SimTime,
    out: VecDeque<Output>,
    /// Installed inbound SAs: SPI → peer.
    inbound: BTreeMap<u32, Ipv4Addr>,
    /// Peers with an outbound SA (a tunnel).
    outbound: BTreeSet<Ipv4Addr>,
    /// Overlay routes as installed in the data plane.
    routes: BTreeMap<(Ipv4Addr, u8), Ipv4Addr>,
    /// ESP-in-UDP the data plane wanted to send (never expected here).
    pub dropped_udp: u64,
    /// The node's own deadline, computed at most once between calls
    /// (`None` when stale): computing it walks every IKE SA, the hub's main
    /// cost with many spokes.
    deadline: Cell<Option<Option<SimTime>>>,
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

impl RealNode {
    /// The real node (for `show` output and tests).
    pub fn node(&self) -> &Node {
        &self.node
    }

    fn deadline(&self) -> Option<SimTime> {
        if let Some(d) = self.deadline.get() {
            return d;
        }
        let d = self.node.poll_timeout().map(|i| i.0);
        self.deadline.set(Some(d));
        d
    }

    fn is_hub_nbma(&self, a: Ipv4Addr) -> bool {
        self.hub_nbmas.contains(&a)
    }

    fn ev(&mut self, e: LabEvent) {
        self.out.push_back(Output::Event(e));
    }

    /// Applies a data-plane command and turns SA and route changes into events.
    fn apply(&mut self, cmd: DpCmd) {
        let mut check_peer = None;
        match &cmd {
            DpCmd::Command(Command::InsertInbound(sa)) => {
                if let Some(p) = v4(sa.peer) {
                    self.inbound.insert(sa.spi, p);
                }
            }
            DpCmd::Command(Command::InsertOutbound(sa)) => check_peer = v4(sa.peer),
            DpCmd::Command(Command::RemovePeerSas(peer)) => {
                if let Some(p) = v4(*peer) {
                    self.inbound.retain(|_, q| *q != p);
                    check_peer = Some(p);
                }
            }
            DpCmd::RemoveInbound(spi) => {
                self.inbound.remove(spi);
            }
            DpCmd::RemoveOutbound { peer, .. } => check_peer = v4(*peer),
            DpCmd::Command(Command::MapInsert { prefix, len, peer }) => {
                let old = self.routes.insert((*prefix, *len), peer.nbma);
                if self.spec.role == Role::Spoke
                    && !self.is_hub_nbma(peer.nbma)
                    && old != Some(peer.nbma)
                {
                    self.ev(LabEvent::ShortcutUp { peer: peer.nbma });
                }
            }
            DpCmd::Command(Command::MapRemove { prefix, len }) => {
                if let Some(old) = self.routes.remove(&(*prefix, *len))
                    && self.spec.role == Role::Spoke
                    && !self.is_hub_nbma(old)
                {
                    self.ev(LabEvent::ShortcutDown { peer: old });
                }
            }
            _ => {}
        }
        node::apply(&mut self.dp, cmd);
        if let Some(p) = check_peer {
            let has = self.dp.sadb.has_outbound(IpAddr::V4(p));
            if has && self.outbound.insert(p) {
                self.ev(LabEvent::TunnelUp { peer: p });
            } else if !has && self.outbound.remove(&p) {
                self.ev(LabEvent::TunnelDown { peer: p });
            }
        }
    }

    /// Moves messages between node and data plane until both are quiet,
    /// collecting what leaves the box.
    fn pump(&mut self, now: SimTime) {
        let t = Instant(now);
        loop {
            let mut moved = false;
            while let Some(o) = self.node.poll_output() {
                moved = true;
                match o {
                    node::Output::Ike(tx) => {
                        let (Some(src), Some(dst)) = (v4(tx.local.ip()), v4(tx.remote.ip())) else {
                            continue;
                        };
                        self.out.push_back(Output::Send(Datagram {
                            src,
                            dst,
                            transport: Transport::Udp {
                                src_port: tx.local.port(),
                                dst_port: tx.remote.port(),
                            },
                            payload: tx.payload,
                        }));
                    }
                    node::Output::Dataplane(c) => self.apply(c),
                    node::Output::KeyLog(_) => {}
                }
            }
            let mut evs = Vec::new();
            while let Some((src, packet)) = self.dp.nhrp_in.pop_front() {
                if self.spec.role == Role::Spoke {
                    match classify_nhrp(&packet) {
                        Some(Nhrp::Registered) => self.ev(LabEvent::Registered { nhs: src }),
                        Some(Nhrp::Resolved(peer)) => self.ev(LabEvent::Resolved { peer }),
                        None => {}
                    }
                }
                evs.push(DpEvent::Nhrp { src, packet });
            }
            evs.extend(
                self.dp
                    .ike_in
                    .drain(..)
                    .map(|(src, packet)| DpEvent::Ike { src, packet }),
            );
            evs.extend(
                self.dp
                    .need_sa
                    .drain(..)
                    .map(|peer| DpEvent::NeedSa { peer }),
            );
            for e in evs {
                moved = true;
                self.node.handle_dataplane_event(t, e);
            }
            for proto in [47u8, 50] {
                let b = if proto == 47 {
                    &mut self.dp.gre_out
                } else {
                    &mut self.dp.esp_out
                };
                for i in 0..b.len() {
                    moved = true;
                    let p = b.get(i).to_vec();
                    self.out.push_back(Output::Send(Datagram {
                        src: self.spec.nbma,
                        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
                        transport: Transport::Ip(proto),
                        payload: p,
                    }));
                }
                b.clear();
            }
            // No NAT on the simulated underlay, so nothing floats to UDP 4500.
            self.dropped_udp += self.dp.udp_out.len() as u64;
            self.dp.udp_out.clear();
            let tun: Vec<Vec<u8>> = (0..self.dp.tun_out.len())
                .map(|i| self.dp.tun_out.get(i).to_vec())
                .collect();
            self.dp.tun_out.clear();
            for p in tun {
                moved = true;
                if p.len() < 20 {
                    continue;
                }
                let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                let mine =
                    dst == self.spec.tunnel || (u32::from(dst) & !0xff) == u32::from(self.spec.lan);
                if mine || self.spec.role == Role::Spoke {
                    self.out.push_back(Output::Deliver(p));
                } else {
                    // The hub's kernel routes it back into the tunnel.
                    self.node.observe_outbound(t, &p);
                    self.dp.outbound(&p);
                }
            }
            if !moved {
                break;
            }
        }
        self.deadline.set(None);
    }
}

enum Nhrp {
    Registered,
    Resolved(Ipv4Addr),
}

/// Successful registration and resolution replies (for the report).
fn classify_nhrp(b: &[u8]) -> Option<Nhrp> {
    // Cheap check of the fixed header's type byte before a full parse.
    if !matches!(b.get(17), Some(2 | 4)) {
        return None;
    }
    let p = Packet::parse(b).ok()?;
    let Body::Cies { cies, .. } = &p.body else {
        return None;
    };
    if cies.is_empty() || cies.iter().any(|c| c.code != 0) {
        return None;
    }
    match p.packet_type {
        PacketType::RegistrationReply => Some(Nhrp::Registered),
        PacketType::ResolutionReply => cies[0].nbma_ip().and_then(v4).map(Nhrp::Resolved),
        _ => None,
    }
}

/// First message of a Main or Aggressive Mode exchange (responder cookie zero).
fn is_ike_initial(d: &[u8]) -> bool {
    d.len() >= 28 && d[8..16].iter().all(|&b| b == 0) && matches!(d[18], 2 | 4)
}

impl LabNode for RealNode {
    fn handle_underlay(&mut self, now: SimTime, d: &Datagram) {
        let t = Instant(now);
        match d.transport {
            Transport::Ip(47) => self.dp.inbound_gre_ip(&d.payload),
            Transport::Ip(50) => self.dp.inbound_esp_ip(&d.payload),
            Transport::Udp {
                src_port,
                dst_port: 500,
            } => {
                if self.spec.role == Role::Hub && is_ike_initial(&d.payload) {
                    self.ev(LabEvent::HandshakeStarted { peer: d.src });
                }
                self.node.handle_ike(
                    t,
                    SocketAddr::from((d.dst, 500)),
                    SocketAddr::from((d.src, src_port)),
                    &d.payload,
                );
            }
            Transport::Udp {
                src_port,
                dst_port: 4500,
            } => self
                .dp
                .inbound_udp(&d.payload, SocketAddrV4::new(d.src, src_port)),
            _ => {}
        }
        self.pump(now);
    }

    fn handle_lan(&mut self, now: SimTime, packet: &[u8]) {
        self.node.observe_outbound(Instant(now), packet);
        self.pump(now);
        self.dp.outbound(packet);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: SimTime) {
        let t = Instant(now);
        if now >= self.next_stats {
            let s = self.dp.stats();
            self.node.handle_stats(t, &s);
            self.next_stats = now + self.stats_interval;
        }
        if self.deadline().is_some_and(|d| d <= now) {
            self.node.handle_timeout(t);
        }
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<SimTime> {
        Some(
            self.deadline()
                .map_or(self.next_stats, |n| n.min(self.next_stats)),
        )
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn counts(&self) -> NodeCounts {
        NodeCounts {
            tunnels: self.outbound.len(),
            ipsec_sas: self.inbound.len() + self.outbound.len(),
            nhrp_entries: self.routes.len(),
        }
    }
}
