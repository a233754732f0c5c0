//! [`LabNode`] implemented with the real [`dmvpn_node::Router`]: the node
//! and forwarding engine `dmvpnd` runs (GRE, ESP with real cryptography,
//! SADB, the hub's relay decision), minus the TUN device and sockets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dmvpn_nhrp::Instant;
use dmvpn_nhrp::wire::{Body, Packet, PacketType};
use dmvpn_node::control::{self, Node};
use dmvpn_node::engine::BatchSizes;
use dmvpn_node::router::{Change, Datagram as Underlay, IKE_PORT, Options, Router};

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
    /// Hubs' Traffic Indication limit: `max_send` per `max_send_interval`
    /// seconds (IOS `ip nhrp max-send`); `None` keeps IOS's 100 every 10.
    pub max_send: Option<(u32, u32)>,
}

/// Send-buffer size in the simulator: room for the lab's probe packets
/// and NHRP messages with all headers, not for full-MTU packets.
pub const SMALL_BUF: usize = 512;

impl RealFactory {
    pub fn new(idle_timeout: Duration) -> Self {
        RealFactory {
            crypto: Crypto::default(),
            idle_timeout,
            stats_interval: control::STATS_INTERVAL,
            small_batches: true,
            max_send: None,
        }
    }

    /// The factory a simulated run uses: its idle timeout and hub limits.
    pub fn for_sim(cfg: &crate::sim::SimConfig) -> Self {
        let mut f = RealFactory::new(cfg.idle_timeout);
        f.max_send = Some((cfg.max_send, cfg.max_send_interval));
        f
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
            Role::Hub => {
                let mut s = "redirect = true\n".to_string();
                if let Some((n, every)) = self.max_send {
                    s += &format!("max_send = {n}\nmax_send_interval = {every}\n");
                }
                ("hub", s, String::new())
            }
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
        seed: dmvpn_node::Seed,
        now: SimTime,
    ) -> Result<RealNode, String> {
        let text = self.config_text(spec, hubs);
        let cfg = dmvpn_config::Config::from_str(&text, "lab.toml")
            .map_err(|e| format!("lab node configuration rejected: {e}"))?
            .config;
        // The simulator takes everything out after every call, so small
        // send batches suffice; the daemon's (64 × 2 KiB each) would cost
        // half a megabyte per simulated node.
        let batch_sizes = self.small_batches.then_some(BatchSizes {
            esp: 64,
            gre: 16,
            udp: 4,
            tun: 16,
            size: SMALL_BUF,
        });
        let opts = Options {
            stats_interval: self.stats_interval,
            record_changes: true,
            batch_sizes,
            ..Options::default()
        };
        let router =
            Router::from_config(&cfg, seed, Instant(now), opts).map_err(|e| e.to_string())?;
        let mut n = RealNode {
            router,
            spec: spec.clone(),
            hub_nbmas: hubs.iter().map(|h| h.nbma).collect(),
            out: VecDeque::new(),
            inbound: BTreeMap::new(),
            outbound: BTreeSet::new(),
            routes: BTreeMap::new(),
            dropped_udp: 0,
        };
        n.collect();
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

/// A real router and what the lab reports about it.
pub struct RealNode {
    router: Router,
    spec: NodeSpec,
    hub_nbmas: Vec<Ipv4Addr>,
    out: VecDeque<Output>,
    /// Installed inbound SAs: SPI → peer.
    inbound: BTreeMap<u32, Ipv4Addr>,
    /// Peers with an outbound SA (a tunnel).
    outbound: BTreeSet<Ipv4Addr>,
    /// Overlay routes as installed in the engine.
    routes: BTreeMap<(std::net::IpAddr, u8), Ipv4Addr>,
    /// ESP-in-UDP the engine wanted to send (never expected here).
    pub dropped_udp: u64,
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
        self.router.node()
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    fn is_hub_nbma(&self, a: Ipv4Addr) -> bool {
        self.hub_nbmas.contains(&a)
    }

    fn ev(&mut self, e: LabEvent) {
        self.out.push_back(Output::Event(e));
    }

    /// Turns what the router recorded into lab events.
    fn on_change(&mut self, c: Change) {
        let spoke = self.spec.role == Role::Spoke;
        match c {
            Change::NhrpReceived { src, packet } if spoke => match classify_nhrp(&packet) {
                Some(Nhrp::Registered) => self.ev(LabEvent::Registered { nhs: src }),
                Some(Nhrp::Resolved(peer)) => self.ev(LabEvent::Resolved { peer }),
                None => {}
            },
            Change::InboundSaAdded { spi, peer } => {
                if let Some(p) = v4(peer) {
                    self.inbound.insert(spi, p);
                }
            }
            Change::InboundSaRemoved { spi } => {
                self.inbound.remove(&spi);
            }
            Change::PeerSasRemoved { peer } => {
                if let Some(p) = v4(peer) {
                    self.inbound.retain(|_, q| *q != p);
                }
            }
            Change::OutboundSa { peer, installed } => {
                if installed && self.outbound.insert(peer) {
                    self.ev(LabEvent::TunnelUp { peer });
                } else if !installed && self.outbound.remove(&peer) {
                    self.ev(LabEvent::TunnelDown { peer });
                }
            }
            Change::Route {
                prefix,
                len,
                nbma: Some(nbma),
            } => {
                let old = self.routes.insert((prefix, len), nbma);
                if spoke && !self.is_hub_nbma(nbma) && old != Some(nbma) {
                    self.ev(LabEvent::ShortcutUp { peer: nbma });
                }
            }
            Change::Route {
                prefix,
                len,
                nbma: None,
            } => {
                if let Some(old) = self.routes.remove(&(prefix, len))
                    && spoke
                    && !self.is_hub_nbma(old)
                {
                    self.ev(LabEvent::ShortcutDown { peer: old });
                }
            }
            _ => {}
        }
    }

    /// Collects what the router recorded and queued: events, IKE
    /// datagrams, outer packets, packets for the LAN.
    fn collect(&mut self) {
        while let Some(c) = self.router.poll_change() {
            self.on_change(c);
        }
        while let Some(tx) = self.router.poll_transmit() {
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
        let nbma = self.spec.nbma;
        let b = self.router.batches();
        for (proto, batch) in [(47u8, &mut *b.gre), (50, &mut *b.esp)] {
            for i in 0..batch.len() {
                let p = batch.get(i).to_vec();
                self.out.push_back(Output::Send(Datagram {
                    src: nbma,
                    dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
                    transport: Transport::Ip(proto),
                    payload: p,
                }));
            }
            batch.clear();
        }
        // No NAT on the simulated underlay, so nothing floats to UDP 4500.
        self.dropped_udp += b.udp.len() as u64;
        b.udp.clear();
        for i in 0..b.tun.len() {
            self.out.push_back(Output::Deliver(b.tun.get(i).to_vec()));
        }
        b.tun.clear();
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
        let u = match d.transport {
            Transport::Ip(47) => Underlay::Gre(&d.payload),
            Transport::Ip(50) => Underlay::Esp(&d.payload),
            Transport::Udp { src_port, dst_port } => {
                if dst_port == IKE_PORT && self.spec.role == Role::Hub && is_ike_initial(&d.payload)
                {
                    self.ev(LabEvent::HandshakeStarted { peer: d.src });
                }
                Underlay::Udp {
                    local: SocketAddrV4::new(d.dst, dst_port),
                    remote: SocketAddrV4::new(d.src, src_port),
                    payload: &d.payload,
                }
            }
            _ => return,
        };
        self.router.handle_underlay(t, u);
        self.collect();
    }

    fn handle_lan(&mut self, now: SimTime, packet: &[u8]) {
        self.router.handle_tun(Instant(now), packet);
        self.collect();
    }

    fn handle_timeout(&mut self, now: SimTime) {
        self.router.handle_timeout(Instant(now));
        self.collect();
    }

    fn poll_timeout(&self) -> Option<SimTime> {
        Some(self.router.poll_timeout().0)
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn counts(&self) -> NodeCounts {
        let nhrp = self.router.node().nhrp_stats();
        NodeCounts {
            tunnels: self.outbound.len(),
            ipsec_sas: self.inbound.len() + self.outbound.len(),
            nhrp_entries: self.routes.len(),
            traffic_indications_sent: nhrp.map_or(0, |s| s.tx_traffic_indications),
            traffic_indications_max_send: nhrp.map_or(0, |s| s.traffic_indications_max_send),
            traffic_indications_holddown: nhrp.map_or(0, |s| s.traffic_indications_holddown),
        }
    }
}
