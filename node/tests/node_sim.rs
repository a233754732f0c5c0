//! Hub and two spokes as real `Router`s (node + forwarding engine), wired
//! by an in-memory underlay on virtual time: registration, phase 2
//! resolution → spoke-to-spoke SA → direct traffic, idle expiry, phase 3.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request, Response, SaStatus};
use dmvpn_nhrp::Instant;
use dmvpn_node::Seed;
use dmvpn_node::control::config_map;
use dmvpn_node::reload::{Effect, ReloadError};
use dmvpn_node::router::{Datagram, Router};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const S1: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const S2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);
const T1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const T2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 3);

fn config(role: &str, n: u8, phase3: bool, crypto: &str, hubs: &[u8]) -> String {
    let (policy, ts) = match crypto {
        "modern" => (
            "encryption = \"aes-256\"\nhash = \"sha256\"\ngroup = 14",
            "[\"esp-gcm 256\"]",
        ),
        _ => (
            "encryption = \"des\"\nhash = \"md5\"\ngroup = 1",
            "[\"esp-3des\", \"esp-md5-hmac\"]",
        ),
    };
    // Spokes route the other spokes' LANs (10.N.0.0/24) into the tunnel.
    let routes: Vec<String> = (2u8..=4)
        .filter(|x| *x != n && role != "hub")
        .map(|x| format!("\"10.{x}.0.0/24\""))
        .collect();
    let routes = routes.join(", ");
    let nhrp = if role == "hub" {
        format!("redirect = {phase3}\n")
    } else {
        let mut t = format!("shortcut = {phase3}\n");
        for h in hubs {
            t += &format!(
                "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.{h}\"\nnbma = \"172.16.0.{h}\"\npriority = {h}\n"
            );
        }
        t
    };
    // "…-60": phase 1 lifetime 60 s (the least the configuration takes).
    let p1_life = if crypto.ends_with("-60") { 60 } else { 86400 };
    format!(
        r#"
[node]
name = "n{n}"
role = "{role}"
[ike.dpd]
interval = 10
retry_interval = 2
retries = 5
[[ike.policy]]
priority = 10
{policy}
authentication = "pre-share"
lifetime = {p1_life}
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "strong"
transforms = {ts}
mode = "transport"
[[ipsec.profile]]
name = "cisco"
transform_sets = ["strong"]
lifetime_seconds = 120
idle_time = 60
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
mtu = 1400
source = "172.16.0.{n}"
mode = "gre-multipoint"
key = 0
protection = "cisco"
routes = [{routes}]
[tunnel.nhrp]
network_id = 1
authentication = "cisco123"
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

struct SimNode {
    r: Router,
    nbma: Ipv4Addr,
    tunnel: Ipv4Addr,
    /// The host on the LAN behind the node (answers echo requests too).
    lan_host: Ipv4Addr,
    hub: bool,
    /// Echo replies received by the host behind this node: (id, seq).
    replies: Vec<u16>,
    /// Powered off: sends and receives nothing.
    dead: bool,
    /// Restarts so far.
    boots: u64,
}

enum Wire {
    Raw(Ipv4Addr, Vec<u8>),
    Ike(SocketAddr, SocketAddr, Vec<u8>),
}

/// Moves what a router queued: IKE datagrams and outer packets onto the
/// wire; inner packets to the hosts behind it (which answer echo requests).
fn drain(n: &mut SimNode, now: Instant, wire: &mut VecDeque<Wire>) {
    for _ in 0..16 {
        while let Some(t) = n.r.poll_transmit() {
            wire.push_back(Wire::Ike(t.local, t.remote, t.payload));
        }
        let b = n.r.batches();
        for out in [&mut *b.gre, &mut *b.esp] {
            for i in 0..out.len() {
                let p = out.get(i).to_vec();
                let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                wire.push_back(Wire::Raw(dst, p));
            }
            out.clear();
        }
        assert!(b.udp.is_empty(), "no NAT in this topology");
        let tun: Vec<Vec<u8>> = (0..b.tun.len()).map(|i| b.tun.get(i).to_vec()).collect();
        b.tun.clear();
        if tun.is_empty() {
            return;
        }
        for p in tun {
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            if dst != n.tunnel && dst != n.lan_host {
                // Not for this box: its kernel has no route for it.
            } else if p[20] == 8 {
                let seq = u16::from_be_bytes([p[26], p[27]]);
                n.r.handle_tun(now, &icmp(dst, src, 0, seq));
            } else if p[20] == 0 {
                n.replies.push(u16::from_be_bytes([p[26], p[27]]));
            }
        }
    }
}

/// The count of a `clear` request's answer.
fn cleared(r: Response) -> u64 {
    match r {
        Response::Ok(Reply::Cleared { count }) => count,
        other => panic!("clear failed: {other:?}"),
    }
}

struct Sim {
    nodes: Vec<SimNode>,
    now: Instant,
    /// ESP packets seen on the underlay: (src, dst).
    esp_seen: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Deliver each round's ESP/GRE before its IKE datagrams, as a
    /// receiver polling its raw and UDP sockets may: ESP sent right after
    /// Quick Mode's last message then reaches a peer that has not
    /// installed the SA yet.
    esp_first: bool,
    /// Lose ISAKMP informational exchanges (DELETE, DPD) sent by this NBMA.
    drop_info_from: Option<Ipv4Addr>,
    /// Spokes built from now on run `if_state` (IOS `if-state nhrp`).
    if_state: bool,
    /// Every IKE datagram delivered: (sender, payload).
    ike_seen: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams sent outside `settle`, delivered by the next one.
    in_flight: VecDeque<Wire>,
    phase3: bool,
    crypto: String,
    hubs: Vec<u8>,
}

/// 10.N.0.host: the LAN behind node N.
fn lan(n: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, n, 0, host)
}

fn icmp(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 28 + 32];
    let len = p.len() as u16;
    p[0] = 0x45;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum = 0u32;
    for i in (0..20).step_by(2) {
        sum += u32::from(u16::from_be_bytes([p[i], p[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = ty;
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    p
}

impl Sim {
    fn new(phase3: bool, crypto: &str) -> Sim {
        Sim::with_nodes(phase3, crypto, &[("hub", 1), ("spoke", 2), ("spoke", 3)])
    }

    fn with_nodes(phase3: bool, crypto: &str, nodes: &[(&str, u8)]) -> Sim {
        let hubs: Vec<u8> = nodes
            .iter()
            .filter(|(r, _)| *r == "hub")
            .map(|(_, n)| *n)
            .collect();
        let mut sim = Sim {
            nodes: Vec::new(),
            now: Instant::ZERO,
            esp_seen: Vec::new(),
            esp_first: false,
            drop_info_from: None,
            if_state: false,
            ike_seen: Vec::new(),
            in_flight: VecDeque::new(),
            phase3,
            crypto: crypto.to_string(),
            hubs,
        };
        sim.nodes = nodes.iter().map(|(r, n)| sim.build(r, *n, 0)).collect();
        sim
    }

    /// Node `n` booting now (`boot` counts its restarts: a new seed each).
    fn build(&self, role: &str, n: u8, boot: u64) -> SimNode {
        let now = self.now;
        let text = config(role, n, self.phase3, &self.crypto, &self.hubs);
        let cfg = dmvpn_config::Config::from_str(&text, "sim.toml")
            .expect("valid config")
            .config;
        let mut ncfg = config_map::map(&cfg).expect("node config");
        ncfg.if_state = self.if_state && role == "spoke";
        // The LAN behind the node, answered in resolutions.
        if let Some(c) = ncfg.nhrp.as_mut() {
            c.local_prefixes = vec![(IpAddr::V4(lan(n, 0)), 24)];
        }
        let seed = Seed::for_lab_node(boot, u64::from(n));
        let mut r = Router::new(ncfg, seed, now);
        if role == "hub" {
            // As a routing daemon would install them on the hub.
            let via: Vec<(IpAddr, u8, IpAddr)> = (2u8..=3)
                .map(|x| (lan(x, 0).into(), 24, Ipv4Addr::new(192, 168, 1, x).into()))
                .collect();
            r.handle_kernel_routes(now, &via);
        }
        SimNode {
            r,
            nbma: Ipv4Addr::new(172, 16, 0, n),
            tunnel: Ipv4Addr::new(192, 168, 1, n),
            lan_host: lan(n, 10),
            hub: role == "hub",
            replies: Vec::new(),
            dead: false,
            boots: 0,
        }
    }

    /// An operator request on node `i` (then everything settles).
    fn request(&mut self, i: usize, req: Request) -> Response {
        let now = self.now;
        let r = self.nodes[i].r.request(now, req);
        drain(&mut self.nodes[i], now, &mut self.in_flight);
        r
    }

    /// Restarts node `i` as dmvpnd would: a graceful stop first deletes
    /// every SA (telling the peers), a crash (`kill -9`) says nothing. The
    /// new process comes up `down` later.
    fn restart(&mut self, i: usize, graceful: bool, down: Duration) {
        if graceful {
            self.request(i, Request::ClearCryptoSa { peer: None });
        }
        self.nodes[i].dead = true;
        self.advance(down);
        let role = if self.nodes[i].hub { "hub" } else { "spoke" };
        let n = self.nodes[i].nbma.octets()[3];
        let boots = self.nodes[i].boots + 1;
        self.nodes[i] = self.build(role, n, boots);
        self.nodes[i].boots = boots;
        self.settle();
    }

    fn idx(&self, nbma: Ipv4Addr) -> Option<usize> {
        self.nodes.iter().position(|n| n.nbma == nbma && !n.dead)
    }

    /// Moves everything until no node has anything to say.
    fn settle(&mut self) {
        let mut carry = std::mem::take(&mut self.in_flight);
        for _ in 0..10_000 {
            let mut wire: VecDeque<Wire> = std::mem::take(&mut carry);
            let now = self.now;
            for n in self.nodes.iter_mut().filter(|n| !n.dead) {
                drain(n, now, &mut wire);
            }
            if wire.is_empty() {
                return;
            }
            let mut later = VecDeque::new();
            let mut wire: Vec<Wire> = wire.into();
            if self.esp_first {
                wire.sort_by_key(|w| matches!(w, Wire::Ike(..)));
            }
            for w in wire {
                match w {
                    Wire::Raw(dst, p) => {
                        let Some(i) = self.idx(dst) else { continue };
                        let r = &mut self.nodes[i].r;
                        match p[9] {
                            47 => r.handle_underlay(now, Datagram::Gre(&p)),
                            50 => {
                                let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
                                self.esp_seen.push((src, dst));
                                r.handle_underlay(now, Datagram::Esp(&p))
                            }
                            _ => panic!("unexpected protocol"),
                        }
                    }
                    Wire::Ike(from, to, payload) => {
                        // Port 500, no NAT: the exchange type is header byte 18.
                        if self
                            .drop_info_from
                            .is_some_and(|a| from.ip() == IpAddr::V4(a))
                            && payload.get(18) == Some(&5)
                        {
                            continue;
                        }
                        let (SocketAddr::V4(local), SocketAddr::V4(remote)) = (to, from) else {
                            continue;
                        };
                        let Some(i) = self.idx(*local.ip()) else {
                            continue;
                        };
                        self.ike_seen.push((from, payload.clone()));
                        let n = &mut self.nodes[i];
                        let d = Datagram::Udp {
                            local,
                            remote,
                            payload: &payload,
                        };
                        n.r.handle_underlay(now, d);
                        // What it answered leaves after this round.
                        while let Some(t) = n.r.poll_transmit() {
                            later.push_back(Wire::Ike(t.local, t.remote, t.payload));
                        }
                    }
                }
            }
            carry = later;
        }
        panic!("simulation does not settle");
    }

    /// Advances virtual time to `until`, firing timers and stats ticks.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter(|n| !n.dead)
                .map(|n| n.r.poll_timeout())
                .min()
                .unwrap_or(until)
                .max(self.now);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            let now = self.now;
            for n in self.nodes.iter_mut().filter(|n| !n.dead) {
                if n.r.poll_timeout() <= now {
                    n.r.handle_timeout(now);
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// The host behind node `i` sends an echo request to `dst`.
    fn ping(&mut self, i: usize, dst: Ipv4Addr, seq: u16) {
        let src = self.nodes[i].tunnel;
        self.ping_from(i, src, dst, seq);
    }

    /// An echo request from `src` (node `i` or its LAN) to `dst`.
    fn ping_from(&mut self, i: usize, src: Ipv4Addr, dst: Ipv4Addr, seq: u16) {
        let now = self.now;
        let p = icmp(src, dst, 8, seq);
        self.nodes[i].r.handle_tun(now, &p);
        self.settle();
    }

    fn direct_esp(&self) -> usize {
        self.esp_seen
            .iter()
            .filter(|(a, b)| (*a == S1 && *b == S2) || (*a == S2 && *b == S1))
            .count()
    }
}

/// The key exchange data (KE payload body) of an unencrypted ISAKMP message.
fn ke_payload(m: &[u8]) -> Option<Vec<u8>> {
    if m.len() < 28 || m[19] & 1 != 0 {
        return None;
    }
    let (mut next, mut off) = (m[16], 28);
    while next != 0 && off + 4 <= m.len() {
        let len = usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
        if len < 4 || off + len > m.len() {
            return None;
        }
        if next == 4 {
            return Some(m[off + 4..off + len].to_vec());
        }
        (next, off) = (m[off], off + len);
    }
    None
}

#[test]
fn nodes_seeded_from_one_lab_seed_never_share_dh_values() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    let mut kes: Vec<(SocketAddr, Vec<u8>)> = sim
        .ike_seen
        .iter()
        .filter_map(|(from, m)| ke_payload(m).map(|k| (*from, k)))
        .collect();
    // Both spokes' Main Modes with the hub: four public values.
    assert_eq!(
        kes.len(),
        4,
        "{:?}",
        kes.iter().map(|k| k.0).collect::<Vec<_>>()
    );
    kes.sort_by(|a, b| a.1.cmp(&b.1));
    kes.dedup_by(|a, b| a.1 == b.1);
    assert_eq!(kes.len(), 4, "a DH public value was drawn twice");
}

#[test]
fn two_hubs_one_dies() {
    const HUB2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 4);
    let mut sim = Sim::with_nodes(
        false,
        "seed",
        &[("hub", 1), ("spoke", 2), ("spoke", 3), ("hub", 4)],
    );
    sim.advance(Duration::from_secs(5));
    for s in [1, 2] {
        let nhs = sim.nodes[s].r.node().show_nhrp_nhs(sim.now);
        assert_eq!(nhs.len(), 2);
        assert!(nhs.iter().all(|e| e.state.responding), "{nhs:?}");
        assert!(sim.nodes[s].r.node().has_sa(HUB) && sim.nodes[s].r.node().has_sa(HUB2));
    }
    for h in [0, 3] {
        assert_eq!(sim.nodes[h].r.node().multicast_nbmas().len(), 2);
    }
    // Hub 1 (preferred) dies; DPD notices, the spokes fail over to hub 2.
    sim.nodes[0].dead = true;
    sim.advance(Duration::from_secs(60));
    for s in [1, 2] {
        let nhs = sim.nodes[s].r.node().show_nhrp_nhs(sim.now);
        let up: Vec<IpAddr> = nhs
            .iter()
            .filter(|e| e.state.responding)
            .map(|e| e.nbma.unwrap())
            .collect();
        assert_eq!(up, vec![IpAddr::V4(HUB2)], "{nhs:?}");
    }
    // Spoke-to-spoke resolution goes through hub 2 now.
    for seq in 0..10u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert!(
        sim.nodes[1].replies.len() >= 9,
        "{}",
        sim.nodes[1].replies.len()
    );
    assert!(
        sim.nodes[1]
            .r
            .node()
            .shortcut_routes()
            .iter()
            .any(|r| r.2 == S2)
    );
}

/// `if_state` (IOS `if-state nhrp`): a spoke's tunnel carries traffic
/// only while an NHS is up: not before the first registration, not once
/// its only hub is dead, and again when the hub is back.
#[test]
fn line_protocol_follows_the_nhs() {
    let mut sim = Sim::new(false, "seed");
    sim.if_state = true;
    sim.nodes[1] = sim.build("spoke", 2, 0);
    let up = |sim: &Sim, i: usize| sim.nodes[i].r.node().line_protocol_up();
    assert!(!up(&sim, 1), "down until an NHS answers");
    assert!(up(&sim, 2) && up(&sim, 0), "without if_state: always up");
    sim.advance(Duration::from_secs(5));
    assert!(up(&sim, 1));
    sim.nodes[0].dead = true;
    sim.advance(Duration::from_secs(60));
    assert!(!up(&sim, 1), "the only hub is dead");
    assert!(up(&sim, 2));
    sim.nodes[0].dead = false;
    sim.advance(Duration::from_secs(130));
    assert!(up(&sim, 1), "the hub answers again");
}

fn registered(sim: &Sim) -> bool {
    let hub = sim.nodes[0].r.node().show_nhrp(sim.now, false);
    let dynamic = hub
        .iter()
        .filter(|e| e.entry_type == dmvpn_ctl::proto::NhrpEntryType::Dynamic)
        .count();
    dynamic == 2
        && sim.nodes[1..].iter().all(|n| {
            n.r.node()
                .show_nhrp_nhs(sim.now)
                .iter()
                .all(|s| s.state.responding)
        })
}

fn spoke_to_spoke(phase3: bool, crypto: &str) {
    let mut sim = Sim::new(phase3, crypto);
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim), "spokes registered with the hub");
    assert!(sim.nodes[1].r.node().has_sa(HUB) && sim.nodes[2].r.node().has_sa(HUB));
    assert_eq!(sim.nodes[0].r.node().multicast_nbmas().len(), 2);

    // Spoke 1 pings spoke 2 every 200 ms for 4 s.
    let t0 = sim.now;
    let mut direct_at = None;
    for seq in 0..20u16 {
        sim.ping(1, T2, seq);
        if direct_at.is_none() && !sim.nodes[1].r.node().shortcut_routes().is_empty() {
            direct_at = Some(sim.now - t0);
        }
        sim.advance(Duration::from_millis(200));
    }
    let replies = sim.nodes[1].replies.len();
    assert!(replies >= 19, "replies {replies}/20");
    let sc = sim.nodes[1].r.node().shortcut_routes();
    assert!(
        sc.iter().any(|(_, _, n)| *n == S2),
        "spoke 1 has a shortcut to spoke 2: {sc:?}"
    );
    assert!(sim.nodes[1].r.node().has_sa(S2) && sim.nodes[2].r.node().has_sa(S1));
    let direct_before = sim.direct_esp();
    assert!(direct_before > 0, "ESP flows directly between the spokes");
    // Later traffic goes direct only.
    let hub_esp_before = sim.esp_seen.len() - direct_before;
    for seq in 100..105u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.direct_esp(), direct_before + 10);
    assert_eq!(sim.esp_seen.len() - sim.direct_esp(), hub_esp_before);
    let dmvpn = sim.nodes[1].r.node().show_dmvpn(sim.now);
    let nbmas: Vec<IpAddr> = dmvpn[0].peers.iter().filter_map(|p| p.nbma).collect();
    assert!(
        nbmas.contains(&IpAddr::V4(HUB)) && nbmas.contains(&IpAddr::V4(S2)),
        "{dmvpn:?}"
    );
    eprintln!("shortcut after {:?}", direct_at);

    // Idle: 60 s with no traffic removes the spoke-to-spoke SA and shortcut.
    sim.advance(Duration::from_secs(70));
    assert!(!sim.nodes[1].r.node().has_sa(S2), "idle SA deleted");
    assert!(
        !sim.nodes[2].r.node().has_sa(S1),
        "idle SA deleted on the peer"
    );
    assert!(sim.nodes[1].r.node().shortcut_routes().is_empty());
    assert!(sim.nodes[1].r.node().has_sa(HUB), "hub SA stays");
    // Traffic still flows (via the hub again, then a new shortcut).
    let before = sim.nodes[1].replies.len();
    for seq in 200..210u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert!(sim.nodes[1].replies.len() >= before + 9);
}

#[test]
fn phase2_resolution_direct_sa_idle_expiry() {
    spoke_to_spoke(false, "seed");
}

#[test]
fn phase3_redirect_shortcut() {
    spoke_to_spoke(true, "seed");
}

#[test]
fn modern_crypto_and_rekey_without_loss() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    // 150 s of pings across the 120 s lifetime: SAs are rekeyed, nothing lost.
    let spis = |sim: &Sim| -> Vec<u32> {
        sim.nodes[1]
            .r
            .node()
            .show_ipsec_sa(sim.now, None)
            .iter()
            .filter(|s| s.current_peer == IpAddr::V4(S2))
            .flat_map(|s| s.inbound.iter().map(|e| e.spi))
            .collect()
    };
    let mut first = Vec::new();
    for seq in 0..750u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
        if seq == 20 {
            first = spis(&sim);
            assert!(!first.is_empty(), "spoke-to-spoke SA up");
        }
    }
    let last = spis(&sim);
    assert!(
        last.iter().any(|s| !first.contains(s)),
        "rekeyed: {first:x?} -> {last:x?}"
    );
    let r = sim.nodes[1].replies.len();
    assert!(r >= 749, "replies {r}/750");
    let sas = sim.nodes[1]
        .r
        .node()
        .show_ipsec_sa(sim.now, Some(&sim.nodes[1].r.stats()));
    assert!(sas.iter().any(|s| s.current_peer == IpAddr::V4(S2)));
    let _ = T1;
}

/// The first resolution succeeds: no NHRP retransmission (1 s) is needed,
/// also when ESP overtakes the last Quick Mode message, for a spoke's
/// tunnel address and for LAN to LAN (both spokes resolving at once).
#[test]
fn phase2_shortcut_without_retransmission() {
    for esp_first in [false, true] {
        for lan_to_lan in [false, true] {
            shortcut_without_retransmission(esp_first, lan_to_lan);
        }
    }
}

fn shortcut_without_retransmission(esp_first: bool, lan_to_lan: bool) {
    let mut sim = Sim::new(false, "seed");
    sim.esp_first = esp_first;
    sim.advance(Duration::from_secs(5));
    let (src, dst, prefix) = if lan_to_lan {
        (lan(2, 10), lan(3, 10), (lan(3, 0), 24))
    } else {
        (T1, T2, (T2, 32))
    };
    let t0 = sim.now;
    sim.ping_from(1, src, dst, 1);
    while !shortcuts_via(&sim, 1, S2).contains(&prefix) {
        assert!(
            sim.now - t0 < Duration::from_millis(500),
            "no shortcut yet (esp_first {esp_first}, LAN {lan_to_lan})"
        );
        sim.advance(Duration::from_millis(10));
    }
    assert!(sim.nodes[1].r.node().has_sa(S2) && sim.nodes[2].r.node().has_sa(S1));
    assert_eq!(sim.nodes[1].replies, vec![1]);
    // Both spokes asked for the same SA (LAN to LAN: at once); one pair
    // comes up, not one per side.
    sim.advance(Duration::from_secs(2));
    for (i, peer) in [(1, S2), (2, S1)] {
        let inbound: usize = sim.nodes[i]
            .r
            .node()
            .show_ipsec_sa(sim.now, None)
            .iter()
            .filter(|s| s.current_peer == IpAddr::V4(peer))
            .map(|s| s.inbound.len())
            .sum();
        assert_eq!(
            inbound, 1,
            "node {i}: IPsec SAs with {peer} (esp_first {esp_first}, LAN {lan_to_lan})"
        );
    }
}

/// Traffic we keep sending to a dead hub does not hold off DPD: the
/// spoke declares it dead and tears the SA down.
#[test]
fn dpd_declares_dead_despite_outbound_traffic() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    sim.nodes[0].dead = true;
    let hub_tunnel = Ipv4Addr::new(192, 168, 1, 1);
    let mut gone = false;
    for seq in 0..120u16 {
        sim.ping(1, hub_tunnel, seq);
        sim.advance(Duration::from_millis(500));
        if !sim.nodes[1].r.node().has_sa(HUB) {
            gone = true;
            break;
        }
    }
    assert!(gone, "DPD never declared the hub dead");
}

/// After a hub restart every spoke registers again within seconds, not at
/// its next refresh (holdtime/3): at once after a graceful stop (the hub's
/// DELETEs), within the DPD time after a crash.
#[test]
fn spokes_register_again_soon_after_a_hub_restart() {
    // DPD in `config`: 10 s idle, then 5 retries 2 s apart.
    let dpd = Duration::from_secs(10 + 5 * 2);
    for (graceful, limit) in [
        (true, Duration::from_secs(5)),
        (false, dpd + Duration::from_secs(5)),
    ] {
        let mut sim = Sim::new(false, "seed");
        sim.advance(Duration::from_secs(5));
        assert!(registered(&sim));
        let t0 = sim.now;
        sim.restart(0, graceful, Duration::from_secs(1));
        let hub_tunnel = Ipv4Addr::new(192, 168, 1, 1);
        let mut seq = 0u16;
        let back = loop {
            let before = sim.nodes[1].replies.len();
            sim.ping(1, hub_tunnel, seq);
            seq += 1;
            sim.advance(Duration::from_millis(200));
            if registered(&sim) && sim.nodes[1].replies.len() > before {
                break sim.now - t0;
            }
            assert!(
                sim.now - t0 < limit,
                "graceful {graceful}: not registered and answering {limit:?} after the restart"
            );
        };
        eprintln!("hub restart (graceful {graceful}): registered and answering after {back:?}");
        // Nothing idles the re-established spoke SAs out on the hub.
        sim.advance(Duration::from_secs(120));
        assert!(registered(&sim));
        assert!(sim.nodes[0].r.node().has_sa(S1) && sim.nodes[0].r.node().has_sa(S2));
    }
}

/// Shortcut routes of node `i` through `nbma`.
fn shortcuts_via(sim: &Sim, i: usize, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    sim.nodes[i]
        .r
        .node()
        .shortcut_routes()
        .into_iter()
        .filter(|r| r.2 == nbma)
        .filter_map(|r| match r.0 {
            IpAddr::V4(p) => Some((p, r.1)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// LAN-to-LAN pings every 100 ms while `clear crypto sa <other spoke>`
/// and `clear nhrp` run on both spokes: the echoes go via the hub at once
/// and move to a new direct SA.
#[test]
fn lan_to_lan_survives_clear_crypto_sa_and_clear_nhrp_on_both_spokes() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let (src, dst) = (lan(2, 10), lan(3, 10));
    let mut seq = 0u16;
    let mut ping = |sim: &mut Sim, n: u16| {
        for _ in 0..n {
            sim.ping_from(1, src, dst, seq);
            seq += 1;
            sim.advance(Duration::from_millis(100));
        }
    };
    ping(&mut sim, 20);
    assert!(
        sim.nodes[1].replies.len() >= 19,
        "{:?}",
        sim.nodes[1].replies
    );
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    assert!(shortcuts_via(&sim, 2, S1).contains(&(lan(2, 0), 24)));

    sim.request(
        1,
        Request::ClearCryptoSa {
            peer: Some(IpAddr::V4(S2)),
        },
    );
    sim.request(
        2,
        Request::ClearCryptoSa {
            peer: Some(IpAddr::V4(S1)),
        },
    );
    sim.request(1, Request::ClearNhrp);
    sim.request(2, Request::ClearNhrp);
    sim.settle();
    assert!(!sim.nodes[1].r.node().has_sa(S2) && !sim.nodes[2].r.node().has_sa(S1));
    // Every echo after the clears is answered: first via the hub, then
    // directly again.
    let (replies, direct) = (sim.nodes[1].replies.len(), sim.direct_esp());
    let hub_esp = sim.esp_seen.len() - direct;
    ping(&mut sim, 1);
    assert_eq!(
        sim.nodes[1].replies.len(),
        replies + 1,
        "first echo after the clears answered"
    );
    assert!(
        sim.esp_seen.len() - sim.direct_esp() > hub_esp,
        "it went via the hub"
    );
    ping(&mut sim, 19);
    assert_eq!(sim.nodes[1].replies.len(), replies + 20, "no echo lost");
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    assert!(sim.nodes[1].r.node().has_sa(S2) && sim.nodes[2].r.node().has_sa(S1));
    let d = sim.direct_esp();
    ping(&mut sim, 5);
    assert_eq!(sim.direct_esp(), d + 10, "direct again");
}

/// After idle expiry the spoke-to-spoke shortcut for a LAN that shadowed
/// a configured route is gone and the route via the hub is back: the next
/// echo is answered at once (via the hub) and a new shortcut follows.
#[test]
fn idle_expiry_restores_the_route_via_the_hub() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    let (src, dst) = (lan(2, 10), lan(3, 10));
    for seq in 0..10u16 {
        sim.ping_from(1, src, dst, seq);
        sim.advance(Duration::from_millis(100));
    }
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    sim.advance(Duration::from_secs(70));
    assert!(!sim.nodes[1].r.node().has_sa(S2) && !sim.nodes[2].r.node().has_sa(S1));
    assert!(shortcuts_via(&sim, 1, S2).is_empty());
    let before = sim.nodes[1].replies.len();
    let hub_esp = sim.esp_seen.len() - sim.direct_esp();
    sim.ping_from(1, src, dst, 100);
    sim.advance(Duration::from_millis(100));
    assert_eq!(
        sim.nodes[1].replies.len(),
        before + 1,
        "answered via the hub"
    );
    assert!(sim.esp_seen.len() - sim.direct_esp() >= hub_esp + 4);
    for seq in 101..110u16 {
        sim.ping_from(1, src, dst, seq);
        sim.advance(Duration::from_millis(100));
    }
    assert_eq!(sim.nodes[1].replies.len(), before + 10);
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
}

/// `show crypto ipsec sa` numbers every SA (`conn id`, distinct, IOS
/// style from 2001) and `show ip nhrp nhs` counts requests and replies.
#[test]
fn show_conn_ids_and_nhs_counters() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    for seq in 0..5u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    let stats = sim.nodes[1].r.stats();
    let sas = sim.nodes[1].r.node().show_ipsec_sa(sim.now, Some(&stats));
    assert_eq!(sas.len(), 2, "hub and spoke 2");
    let ids: Vec<u32> = sas
        .iter()
        .flat_map(|p| p.inbound.iter().chain(p.outbound.iter()))
        .map(|e| e.conn_id)
        .collect();
    assert!(ids.iter().all(|i| *i >= 2001), "{ids:?}");
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len(), "distinct: {ids:?}");
    for p in &sas {
        for (i, o) in p.inbound.iter().zip(&p.outbound) {
            assert_eq!(o.conn_id, i.conn_id + 1, "pair numbered in, out");
            assert_eq!(i.mode, dmvpn_ctl::proto::EspMode::Transport);
        }
    }
    // Volume left per SA: the lifetime (4608000 kB) minus what went through.
    let mut st = stats.clone();
    let big = st
        .sas
        .iter_mut()
        .find(|x| x.peer == IpAddr::V4(S2))
        .unwrap();
    big.counters.bytes = 10 * 1024 * 1024;
    let spi = big.spi;
    let sas = sim.nodes[1].r.node().show_ipsec_sa(sim.now, Some(&st));
    let esp: Vec<_> = sas
        .iter()
        .flat_map(|p| p.inbound.iter().chain(p.outbound.iter()))
        .collect();
    for e in esp {
        let want = if e.spi == spi {
            4_608_000 - 10_240
        } else {
            4_608_000
        };
        assert_eq!(e.remaining_kb, want, "{e:?}");
    }
    let nhs = sim.nodes[1].r.node().show_nhrp_nhs(sim.now);
    let n = &nhs[0];
    assert!(n.requests_sent >= 1 && n.replies_received >= 1, "{n:?}");
    assert_eq!(n.requests_failed, 0, "{n:?}");
    assert_eq!(n.pending_request_id, None, "answered");
    // The hub goes away: requests go unanswered and are counted.
    sim.nodes[0].dead = true;
    sim.advance(Duration::from_secs(700));
    let n = &sim.nodes[1].r.node().show_nhrp_nhs(sim.now)[0];
    assert!(n.requests_failed >= 1, "{n:?}");
    assert!(n.pending_request_id.is_some() && n.retransmit_secs.is_some());
    assert!(n.requests_sent > n.replies_received);
}

/// Phase 1 lifetime 60 s: the spoke replaces its ISAKMP SA with the hub
/// before it ends. While the spoke's DELETE for the old SA is lost, the
/// hub lists the old SA as STALE next to the new ACTIVE one (as IOS
/// does); pings keep being answered throughout, and once the old SA
/// expires only the new one is left.
#[test]
fn replaced_isakmp_sa_shows_stale() {
    let mut sim = Sim::new(false, "seed-60");
    sim.advance(Duration::from_secs(5));
    let rows = |sim: &Sim| -> Vec<(u32, SaStatus)> {
        sim.nodes[0]
            .r
            .node()
            .show_isakmp_sa(sim.now)
            .iter()
            .filter(|r| r.remote == IpAddr::V4(S1))
            .map(|r| (r.conn_id, r.status))
            .collect()
    };
    let first = rows(&sim);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, SaStatus::Active);
    let first = first[0].0;
    sim.drop_info_from = Some(S1);
    let hub_tunnel = Ipv4Addr::new(192, 168, 1, 1);
    let mut seq = 0u16;
    let mut stale = None;
    while stale.is_none() {
        assert!(seq < 600, "no replacement within 60 s: {:?}", rows(&sim));
        sim.ping(1, hub_tunnel, seq);
        seq += 1;
        sim.advance(Duration::from_millis(100));
        let r = rows(&sim);
        if r.len() == 2 {
            stale = Some(r);
        }
    }
    let r = stale.unwrap();
    assert!(r.contains(&(first, SaStatus::Stale)), "{r:?}");
    assert!(
        r.iter()
            .any(|(id, st)| *id != first && *st == SaStatus::Active),
        "{r:?}"
    );
    sim.drop_info_from = None;
    for _ in 0..200 {
        sim.ping(1, hub_tunnel, seq);
        seq += 1;
        sim.advance(Duration::from_millis(100));
    }
    let r = rows(&sim);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].0 != first && r[0].1 == SaStatus::Active, "{r:?}");
    assert_eq!(sim.nodes[1].replies, (0..seq).collect::<Vec<_>>());
}

/// IOS prints the responder of an ISAKMP SA as `dst` and the initiator as
/// `src`, so both ends of an SA show the same row, and the hub shows
/// itself as `dst` of every SA a spoke started; the `detail` view shows
/// local and remote addresses instead.
#[test]
fn isakmp_sa_rows_are_the_same_on_both_ends() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    for seq in 0..5u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    let rows = |i: usize| -> Vec<String> {
        let text = dmvpn_ctl::render::isakmp_sa(&sim.nodes[i].r.node().show_isakmp_sa(sim.now));
        text.lines()
            .filter(|l| l.contains("QM_IDLE"))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let hub = rows(0);
    assert_eq!(
        hub,
        vec![
            "172.16.0.1 172.16.0.2 QM_IDLE".to_string(),
            "172.16.0.1 172.16.0.3 QM_IDLE".to_string()
        ],
        "the spokes started their SAs with the hub"
    );
    let (s1, s2) = (rows(1), rows(2));
    assert!(
        s1.contains(&hub[0]) && s2.contains(&hub[1]),
        "{s1:?} {s2:?}"
    );
    let spoke_row = |r: &[String]| -> String {
        r.iter()
            .find(|l| !l.starts_with("172.16.0.1 "))
            .unwrap()
            .clone()
    };
    assert_eq!(
        spoke_row(&s1),
        spoke_row(&s2),
        "one SA, one row on both spokes"
    );
    let roles: Vec<bool> = [1, 2]
        .iter()
        .map(|i| {
            sim.nodes[*i]
                .r
                .node()
                .show_isakmp_sa(sim.now)
                .iter()
                .find(|r| r.remote != IpAddr::V4(HUB))
                .unwrap()
                .initiator
        })
        .collect();
    assert_eq!(roles.iter().filter(|r| **r).count(), 1, "{roles:?}");
    // `detail`: Local is this node on every row, with IOS's algorithm words.
    for (i, me) in [(0, HUB), (1, S1), (2, S2)] {
        let d = dmvpn_ctl::render::isakmp_sa_detail(&sim.nodes[i].r.node().show_isakmp_sa(sim.now));
        let rows: Vec<&str> = d.lines().filter(|l| l.contains("ACTIVE")).collect();
        assert!(!rows.is_empty());
        for r in rows {
            let cols: Vec<&str> = r.split_whitespace().collect();
            assert_eq!(cols[1], me.to_string(), "{d}");
            assert_eq!(&cols[3..8], &["ACTIVE", "des", "md5", "psk", "1"], "{d}");
        }
    }
}

/// The modern policy shows as IOS words: `aes` (no key size), `sha256`.
#[test]
fn isakmp_detail_uses_ios_algorithm_words() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    let d = dmvpn_ctl::render::isakmp_sa_detail(&sim.nodes[1].r.node().show_isakmp_sa(sim.now));
    assert!(d.contains(" ACTIVE aes  sha256 psk  14 "), "{d}");
    let sas = sim.nodes[1].r.node().show_isakmp_sa(sim.now);
    assert_eq!(sas[0].details.as_ref().unwrap().key_bits, 256);
}

/// Entry types and flags as IOS prints them: a registration on the hub,
/// the NHS on a spoke, a phase 3 shortcut on both spokes; `show dmvpn`
/// counts every entry of a peer and marks the shortcut's network `T1`
/// and the peer's own address `T2`.
#[test]
fn nhrp_entries_and_dmvpn_attributes_match_ios() {
    use dmvpn_ctl::proto::{DmvpnAttr, NhrpEntryType, NhrpFlag};
    let mut sim = Sim::new(true, "seed");
    sim.advance(Duration::from_secs(5));
    for seq in 0..10u16 {
        sim.ping_from(1, lan(2, 10), lan(3, 10), seq);
        sim.advance(Duration::from_millis(200));
    }
    let entry = |i: usize, prefix: Ipv4Addr, len: u8| {
        sim.nodes[i]
            .r
            .node()
            .show_nhrp(sim.now, false)
            .into_iter()
            .find(|e| e.prefix == IpAddr::V4(prefix) && e.prefix_len == len)
            .unwrap_or_else(|| panic!("node {i}: no {prefix}/{len}"))
    };
    let reg = entry(0, T1, 32);
    assert_eq!(reg.entry_type, NhrpEntryType::Dynamic);
    assert_eq!(
        reg.flags,
        vec![NhrpFlag::Unique, NhrpFlag::Registered, NhrpFlag::Nhop]
    );
    let nhs = entry(1, Ipv4Addr::new(192, 168, 1, 1), 32);
    assert_eq!(nhs.entry_type, NhrpEntryType::Static);
    for (i, net, peer) in [(1, lan(3, 0), T2), (2, lan(2, 0), T1)] {
        let e = entry(i, net, 24);
        assert_eq!(e.entry_type, NhrpEntryType::Dynamic);
        assert_eq!(e.via, Some(IpAddr::V4(peer)));
        assert!(
            e.flags.starts_with(&[NhrpFlag::Router])
                && e.flags.ends_with(&[NhrpFlag::Rib, NhrpFlag::Nho]),
            "{:?}",
            e.flags
        );
        let host = entry(i, peer, 32);
        assert!(
            host.flags.contains(&NhrpFlag::Nhop) && host.flags.contains(&NhrpFlag::Nho),
            "{:?}",
            host.flags
        );
        let text = dmvpn_ctl::render::nhrp(&sim.nodes[i].r.node().show_nhrp(sim.now, false));
        assert!(!text.contains("cached"), "{text}");
        let dmvpn = sim.nodes[i].r.node().show_dmvpn(sim.now);
        let p = dmvpn[0]
            .peers
            .iter()
            .find(|p| p.nbma == Some(IpAddr::V4(if i == 1 { S2 } else { S1 })))
            .unwrap();
        assert_eq!(p.entries.len(), 2, "# Ent: {p:?}");
        let attrs: Vec<Vec<DmvpnAttr>> = p.entries.iter().map(|e| e.attrs.clone()).collect();
        assert_eq!(
            attrs,
            vec![
                vec![DmvpnAttr::Dynamic, DmvpnAttr::NexthopOverride],
                vec![DmvpnAttr::Dynamic, DmvpnAttr::RouteInstalled],
            ]
        );
        let text = dmvpn_ctl::render::dmvpn(&dmvpn);
        assert!(text.contains("     2 172.16.0."), "{text}");
        assert!(text.contains(" DT2\n") && text.contains(" DT1\n"), "{text}");
    }
}

/// `clear ip nhrp 10.3.0.0 255.255.255.0` on a spoke drops that shortcut
/// at once (the LAN goes via the hub again, every echo answered), leaves
/// the other entries, and traffic brings the shortcut back.
#[test]
fn clear_ip_nhrp_one_entry() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    let (src, dst) = (lan(2, 10), lan(3, 10));
    for seq in 0..10u16 {
        sim.ping_from(1, src, dst, seq);
        sim.advance(Duration::from_millis(100));
    }
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    let n = cleared(sim.request(
        1,
        Request::ClearNhrpEntry {
            address: IpAddr::V4(lan(3, 0)),
            prefix_len: Some(24),
        },
    ));
    assert_eq!(n, 1);
    sim.settle();
    assert!(!shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    let shown = sim.nodes[1].r.node().show_nhrp(sim.now, false);
    assert!(shown.iter().all(|e| e.prefix != IpAddr::V4(lan(3, 0))));
    assert!(
        shown.iter().any(|e| e.prefix == IpAddr::V4(T2)),
        "the rest stays"
    );
    let before = sim.nodes[1].replies.len();
    for seq in 100..110u16 {
        sim.ping_from(1, src, dst, seq);
        sim.advance(Duration::from_millis(100));
    }
    assert_eq!(sim.nodes[1].replies.len(), before + 10);
    assert!(shortcuts_via(&sim, 1, S2).contains(&(lan(3, 0), 24)));
    assert_eq!(
        cleared(sim.request(
            1,
            Request::ClearNhrpEntry {
                address: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
                prefix_len: None,
            },
        )),
        0,
        "the NHS entry is configuration"
    );
}

/// Data-plane drops reach the show commands: a packet routed into the
/// tunnel with no NHRP mapping (`show ip nhrp traffic`, `show crypto
/// ipsec sa`) and ESP with an unknown SPI (`show crypto ipsec sa`).
#[test]
fn dataplane_drops_are_shown() {
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    let p = icmp(T1, Ipv4Addr::new(10, 9, 0, 1), 8, 1);
    let now = sim.now;
    sim.nodes[1].r.handle_tun(now, &p);
    // ESP from spoke 2 with an SPI nobody gave out.
    let mut esp = icmp(S2, S1, 8, 1);
    esp[9] = 50;
    esp[10] = 0;
    esp[11] = 0;
    let mut sum = 0u32;
    for i in (0..20).step_by(2) {
        sum += u32::from(u16::from_be_bytes([esp[i], esp[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    esp[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    esp[20..24].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
    sim.nodes[1].r.handle_underlay(now, Datagram::Esp(&esp));
    let st = sim.nodes[1].r.stats();
    let node = sim.nodes[1].r.node();
    let traffic = node.show_nhrp_traffic(sim.now, Some(&st));
    let no_map = traffic[0]
        .drops
        .iter()
        .find(|c| c.key == "no_route")
        .unwrap();
    assert_eq!(no_map.count, 1);
    let text = dmvpn_ctl::render::nhrp_traffic(&traffic);
    assert!(text.contains("   Dropped: Total 1\n"), "{text}");
    assert!(text.contains(" 1 No NHRP Mapping"), "{text}");
    let report = node.show_ipsec_sa_report(sim.now, Some(&st));
    let text = dmvpn_ctl::render::ipsec_sa(&report);
    assert!(
        text.contains("    #send errors 1, #recv errors 1\n"),
        "{text}"
    );
    assert!(text.contains("#pkts no nhrp mapping (send) 1"), "{text}");
    assert!(text.contains("#pkts invalid sa (rcv) 1"), "{text}");
    // The per-type NHRP counts agree with the NHS counters.
    let sent = traffic[0].sent.registration_request;
    let nhs = node.show_nhrp_nhs(sim.now);
    assert_eq!(sent, nhs[0].requests_sent);
    assert!(traffic[0].received.registration_reply >= 1);
}

/// `show crypto session`: each peer UP-ACTIVE with its IKE SA and GRE
/// flow; the packet counts come from the data plane.
#[test]
fn crypto_session_per_peer() {
    use dmvpn_ctl::proto::SessionStatus;
    let mut sim = Sim::new(false, "seed");
    sim.advance(Duration::from_secs(5));
    for seq in 0..5u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    let st = sim.nodes[1].r.stats();
    let sessions = sim.nodes[1]
        .r
        .node()
        .show_crypto_session(sim.now, Some(&st));
    let peers: Vec<IpAddr> = sessions.iter().map(|s| s.peer).collect();
    assert_eq!(peers, vec![IpAddr::V4(HUB), IpAddr::V4(S2)]);
    for s in &sessions {
        assert_eq!(s.status, SessionStatus::UpActive, "{s:?}");
        assert_eq!(s.ike_sas.len(), 1);
        assert_eq!(s.flows.len(), 1);
        assert_eq!(s.flows[0].active_sas, 2);
    }
    let direct = &sessions[1].flows[0];
    assert!(direct.encrypted >= 3 && direct.decrypted >= 3, "{direct:?}");
    let text = dmvpn_ctl::render::crypto_session(&sessions);
    assert!(
        text.contains("  IPSEC FLOW: permit 47 host 172.16.0.2 host 172.16.0.3\n"),
        "{text}"
    );
    // `clear crypto sa` with the other spoke ends that session.
    sim.request(
        1,
        Request::ClearCryptoSa {
            peer: Some(IpAddr::V4(S2)),
        },
    );
    sim.settle();
    let sessions = sim.nodes[1].r.node().show_crypto_session(sim.now, None);
    assert!(
        sessions.iter().all(|s| s.peer != IpAddr::V4(S2)),
        "{sessions:?}"
    );
}

/// A reload of node `i` with configuration `text`, as dmvpnd applies it.
fn reload(sim: &mut Sim, i: usize, text: &str) -> Result<Vec<(String, Effect)>, ReloadError> {
    let cfg = dmvpn_config::Config::from_str(text, "sim.toml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .config;
    let now = sim.now;
    let r = sim.nodes[i].r.reconfigure(now, &cfg);
    drain(&mut sim.nodes[i], now, &mut sim.in_flight);
    sim.settle();
    r.map(|s| s.changes.into_iter().map(|c| (c.key, c.effect)).collect())
}

/// Per IPsec peer the inbound and outbound SPIs, and every ISAKMP SA's
/// (remote, conn-id), of node `i`: what a renegotiation would change.
type SaIds = (Vec<(IpAddr, Vec<u32>, Vec<u32>)>, Vec<(IpAddr, u32)>);

fn sa_ids(sim: &Sim, i: usize) -> SaIds {
    let node = sim.nodes[i].r.node();
    let stats = sim.nodes[i].r.stats();
    let spis = |v: &[dmvpn_ctl::proto::EspSa]| v.iter().map(|e| e.spi).collect::<Vec<_>>();
    let mut ipsec: Vec<_> = node
        .show_ipsec_sa(sim.now, Some(&stats))
        .iter()
        .map(|p| (p.current_peer, spis(&p.inbound), spis(&p.outbound)))
        .collect();
    ipsec.sort();
    let mut isakmp: Vec<_> = node
        .show_isakmp_sa(sim.now)
        .iter()
        .map(|s| (s.remote, s.conn_id))
        .collect();
    isakmp.sort();
    (ipsec, isakmp)
}

/// Main Mode, Aggressive Mode and Quick Mode messages delivered after
/// the first `since` IKE datagrams (DPD and deletes are informational).
fn negotiations_since(sim: &Sim, since: usize) -> usize {
    sim.ike_seen[since..]
        .iter()
        .filter(|(_, p)| matches!(p.get(18), Some(2 | 4 | 32)))
        .count()
}

/// The static NHRP entries of node `i`: (tunnel address, NBMA).
fn statics(sim: &Sim, i: usize) -> Vec<(IpAddr, Option<IpAddr>)> {
    sim.nodes[i]
        .r
        .node()
        .show_nhrp(sim.now, false)
        .iter()
        .filter(|e| e.entry_type == dmvpn_ctl::proto::NhrpEntryType::Static)
        .map(|e| (e.prefix, e.nbma))
        .collect()
}

/// A spoke's reload that changes its NHS list applies at once: a hub
/// added is negotiated with and registered with while traffic to the
/// first hub keeps flowing on its SA; a hub removed gets no more
/// registrations (the one it holds lapses with its holding time) and
/// the tunnel subnet moves to the remaining NHS.
#[test]
fn reload_adds_and_removes_an_nhs() {
    const HUB2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 4);
    let mut sim = Sim::with_nodes(false, "modern", &[("hub", 1), ("spoke", 2), ("hub", 4)]);
    // The spoke starts with the first hub only.
    sim.hubs = vec![1];
    sim.nodes[1] = sim.build("spoke", 2, 0);
    sim.advance(Duration::from_secs(5));
    let nhs = |sim: &Sim| sim.nodes[1].r.node().show_nhrp_nhs(sim.now);
    let registered_at = |sim: &Sim, hub: usize| {
        sim.nodes[hub]
            .r
            .node()
            .show_nhrp(sim.now, false)
            .iter()
            .any(|e| {
                e.prefix == IpAddr::V4(T1)
                    && e.entry_type == dmvpn_ctl::proto::NhrpEntryType::Dynamic
            })
    };
    assert_eq!(nhs(&sim).len(), 1);
    assert!(nhs(&sim)[0].state.responding);
    assert!(registered_at(&sim, 0) && !registered_at(&sim, 2));
    assert!(!sim.nodes[1].r.node().has_sa(HUB2));
    let hub_sa = sa_ids(&sim, 1);
    let first_before = nhs(&sim)[0].clone();

    let both = config("spoke", 2, false, "modern", &[1, 4]);
    assert_eq!(
        reload(&mut sim, 1, &both),
        Ok(vec![("tunnel[0].nhrp.nhs".into(), Effect::Now)])
    );
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    let replies = sim.nodes[1].replies.len();
    for seq in 0..10u16 {
        sim.ping(1, hub_t, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(
        sim.nodes[1].replies.len(),
        replies + 10,
        "every echo answered"
    );
    let now_nhs = nhs(&sim);
    assert_eq!(now_nhs.len(), 2);
    assert!(now_nhs.iter().all(|e| e.state.responding), "{now_nhs:?}");
    let counts = |e: &dmvpn_ctl::proto::NhsEntry| {
        (
            e.nbma,
            e.requests_sent,
            e.requests_failed,
            e.replies_received,
        )
    };
    assert_eq!(
        counts(&now_nhs[0]),
        counts(&first_before),
        "the first NHS: no extra registration"
    );
    assert_eq!(now_nhs[1].nbma, Some(IpAddr::V4(HUB2)));
    assert!(sim.nodes[1].r.node().has_sa(HUB2));
    assert!(registered_at(&sim, 2), "registered with the added hub");
    let (ipsec, _) = sa_ids(&sim, 1);
    assert!(
        hub_sa.0.iter().all(|sa| ipsec.contains(sa)),
        "the first hub's SA kept: {hub_sa:?} {ipsec:?}"
    );

    // The first hub removed: the subnet goes to the second, the first's
    // registration is no longer refreshed and lapses (holdtime 600 s).
    let second = config("spoke", 2, false, "modern", &[4]);
    assert_eq!(
        reload(&mut sim, 1, &second),
        Ok(vec![("tunnel[0].nhrp.nhs".into(), Effect::Now)])
    );
    let now_nhs = nhs(&sim);
    assert_eq!(now_nhs.len(), 1);
    assert_eq!(now_nhs[0].nbma, Some(IpAddr::V4(HUB2)));
    let via = |sim: &Sim| {
        sim.nodes[1]
            .r
            .engine()
            .peer_map()
            .lookup(Ipv4Addr::new(192, 168, 1, 200))
            .map(|p| p.nbma)
    };
    assert_eq!(via(&sim), Some(HUB2), "tunnel subnet via the remaining NHS");
    sim.advance(Duration::from_secs(610));
    assert!(
        !registered_at(&sim, 0),
        "the removed hub's registration lapsed"
    );
    assert!(registered_at(&sim, 2), "the remaining hub's is refreshed");
}

/// Reloads apply in place: on the hub a static mapping added and the
/// holdtime changed keep every SA and every packet; on a spoke a longer
/// idle time keeps an existing idle SA and a new holdtime goes out with
/// the next registration; a new pre-shared key applies to the next
/// negotiation only; a change that needs a restart is refused and
/// changes nothing; a removed mapping is purged.
#[test]
fn reload_applies_changes_in_place() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    for seq in 0..10u16 {
        sim.ping(1, T2, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert!(sim.nodes[1].r.node().has_sa(S2), "spoke-to-spoke SA up");
    let hub_text = config("hub", 1, false, "modern", &[1]);
    let spoke_text = config("spoke", 2, false, "modern", &[1]);
    let spoke2_text = config("spoke", 3, false, "modern", &[1]);

    // The same file: nothing to do.
    assert_eq!(reload(&mut sim, 0, &hub_text), Ok(Vec::new()));

    // Hub: holdtime and a static mapping, with traffic on both paths.
    let before: Vec<SaIds> = (0..3).map(|i| sa_ids(&sim, i)).collect();
    let ike_before = sim.ike_seen.len();
    let replies_before = sim.nodes[1].replies.len();
    let mapped = hub_text.replace("holdtime = 600", "holdtime = 300")
        + "[[tunnel.nhrp.map]]\naddress = \"192.168.1.99\"\nnbma = \"172.16.0.99\"\n";
    assert_eq!(
        reload(&mut sim, 0, &mapped),
        Ok(vec![
            ("tunnel[0].nhrp.holdtime".into(), Effect::NextRegistration),
            ("tunnel[0].nhrp.map".into(), Effect::Now),
        ])
    );
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert!(statics(&sim, 0).contains(&(ip("192.168.1.99"), Some(ip("172.16.0.99")))));
    let mapped_to = sim.nodes[0]
        .r
        .engine()
        .peer_map()
        .lookup(Ipv4Addr::new(192, 168, 1, 99))
        .map(|p| p.nbma);
    assert_eq!(mapped_to, Some(Ipv4Addr::new(172, 16, 0, 99)));
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    for seq in 20..70u16 {
        sim.ping(1, T2, seq);
        sim.ping(1, hub_t, seq + 1000);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(
        sim.nodes[1].replies.len(),
        replies_before + 100,
        "every echo answered"
    );
    let after: Vec<SaIds> = (0..3).map(|i| sa_ids(&sim, i)).collect();
    assert_eq!(after, before, "no SA renegotiated");
    assert_eq!(negotiations_since(&sim, ike_before), 0);

    // A change that needs a restart: refused, nothing changes.
    // (A second tunnel, which `--check` refuses too, is the one change
    // left that needs a restart.)
    let mut two = dmvpn_config::Config::from_str(&mapped, "sim.toml")
        .unwrap()
        .config;
    two.tunnels.push(two.tunnels[0].clone());
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].r.reconfigure(now, &two).map(|s| s.changes),
        Err(ReloadError::NeedsRestart {
            keys: vec!["tunnel".into()]
        })
    );
    let running = dmvpn_config::Config::from_str(&mapped, "sim.toml")
        .unwrap()
        .config;
    assert_eq!(sim.nodes[0].r.node().config().origin, running);
    assert_eq!(sim.nodes[0].r.node().config().tunnel_addr, hub_t);

    // The mapping removed: purged from the cache and the data plane.
    assert_eq!(
        reload(
            &mut sim,
            0,
            &hub_text.replace("holdtime = 600", "holdtime = 300")
        ),
        Ok(vec![("tunnel[0].nhrp.map".into(), Effect::Now)])
    );
    assert!(
        !statics(&sim, 0)
            .iter()
            .any(|(p, _)| *p == ip("192.168.1.99"))
    );
    let gone = sim.nodes[0]
        .r
        .engine()
        .peer_map()
        .lookup(Ipv4Addr::new(192, 168, 1, 99))
        .map(|p| p.nbma);
    assert_ne!(gone, Some(Ipv4Addr::new(172, 16, 0, 99)));

    // Spoke 1: idle time 60 s -> 600 s applies to its SA with spoke 2,
    // idle since the pings above, at once.
    let t_idle = sim.now;
    let long = spoke_text
        .replace("idle_time = 60", "idle_time = 600")
        .replace("holdtime = 600", "holdtime = 300");
    assert_eq!(
        reload(&mut sim, 1, &long),
        Ok(vec![
            ("ipsec.profile[0].idle_time".into(), Effect::ExistingSas),
            ("tunnel[0].nhrp.holdtime".into(), Effect::NextRegistration),
        ])
    );
    // Spoke 2 deletes idle SAs too (and tells spoke 1): it gets the
    // longer idle time as well.
    let spoke2_long = spoke2_text.replace("idle_time = 60", "idle_time = 600");
    assert_eq!(
        reload(&mut sim, 2, &spoke2_long),
        Ok(vec![(
            "ipsec.profile[0].idle_time".into(),
            Effect::ExistingSas
        )])
    );
    sim.advance(Duration::from_secs(70));
    assert!(
        sim.nodes[1].r.node().has_sa(S2) && sim.nodes[2].r.node().has_sa(S1),
        "idle for 70 s: kept under the new idle time (the old one deletes it after 60 s)"
    );
    assert!(sim.nodes[1].r.node().has_sa(HUB), "the hub's SA stays");
    // The next registration (holdtime 600 / 3 after the last one) claims
    // 300 s: the hub's entry expires within 300 s from then on.
    let registered_for = |sim: &Sim| {
        sim.nodes[0]
            .r
            .node()
            .show_nhrp(sim.now, false)
            .iter()
            .find(|e| e.prefix == IpAddr::V4(T1))
            .and_then(|e| e.expire_secs)
    };
    assert!(
        registered_for(&sim).is_some_and(|s| s > 300),
        "old holdtime"
    );
    sim.run_until(t_idle + Duration::from_secs(205));
    assert!(
        registered_for(&sim).is_some_and(|s| s <= 300),
        "new holdtime: {:?}",
        registered_for(&sim)
    );

    // A new pre-shared key on the hub: existing SAs stay, the next
    // negotiation uses it (spoke 2, still on the old key, fails until it
    // gets the new key too).
    let rekeyed = |t: &str| t.replace("key = \"cisco123\"", "key = \"another-key\"");
    let hub_now = hub_text.replace("holdtime = 600", "holdtime = 300");
    assert_eq!(
        reload(&mut sim, 0, &rekeyed(&hub_now)),
        Ok(vec![("ike.key[0].key".into(), Effect::NewNegotiations)])
    );
    assert!(sim.nodes[2].r.node().has_sa(HUB));
    sim.request(2, Request::ClearCryptoSa { peer: None });
    sim.advance(Duration::from_secs(15));
    assert!(
        !sim.nodes[2].r.node().has_sa(HUB),
        "the old key no longer negotiates with the hub"
    );
    assert!(
        sim.nodes[1].r.node().has_sa(HUB),
        "spoke 1's SA, negotiated before, stays"
    );
    assert_eq!(
        reload(&mut sim, 2, &rekeyed(&spoke2_long)),
        Ok(vec![("ike.key[0].key".into(), Effect::NewNegotiations)])
    );
    // The attempt under way with the old key times out first.
    sim.advance(Duration::from_secs(150));
    assert!(sim.nodes[2].r.node().has_sa(HUB), "the new key negotiates");
}

/// A spoke's reload that changes the tunnel MTU and its routes applies
/// at once: a route added goes to the NHS, one removed leaves the map,
/// the data plane takes the new MTU, and the SAs stay.
#[test]
fn reload_changes_the_mtu_and_the_routes() {
    let mut sim = Sim::with_nodes(false, "modern", &[("hub", 1), ("spoke", 2), ("spoke", 3)]);
    sim.advance(Duration::from_secs(5));
    let hub = Ipv4Addr::new(172, 16, 0, 1);
    let via = |sim: &Sim, a: Ipv4Addr| sim.nodes[1].r.engine().peer_map().lookup(a).map(|p| p.nbma);
    assert_eq!(via(&sim, Ipv4Addr::new(10, 3, 0, 1)), Some(hub));
    assert_eq!(via(&sim, Ipv4Addr::new(10, 9, 0, 1)), None);
    assert_eq!(sim.nodes[1].r.engine().config().mtu, 1400);
    let sas = sa_ids(&sim, 1);

    let text = config("spoke", 2, false, "modern", &[1])
        .replace("\"10.3.0.0/24\"", "\"10.9.0.0/24\"")
        .replace("mtu = 1400", "mtu = 1300");
    assert_eq!(
        reload(&mut sim, 1, &text),
        Ok(vec![
            ("tunnel[0].mtu".into(), Effect::Now),
            ("tunnel[0].routes".into(), Effect::Now),
        ])
    );
    assert_eq!(via(&sim, Ipv4Addr::new(10, 9, 0, 1)), Some(hub));
    assert_eq!(via(&sim, Ipv4Addr::new(10, 3, 0, 1)), None);
    assert_eq!(via(&sim, Ipv4Addr::new(10, 4, 0, 1)), Some(hub), "kept");
    assert_eq!(sim.nodes[1].r.engine().config().mtu, 1300);
    assert_eq!(sim.nodes[1].r.node().config().mtu, 1300);
    assert_eq!(sa_ids(&sim, 1), sas, "no renegotiation");
}

/// A new GRE key applies at once: the hub, reloaded first, drops what
/// the spoke still sends with the old key (counted); once the spoke has
/// the new key as well, traffic flows again over the same SAs. The NHRP
/// network id is local and changes in place too.
#[test]
fn reload_changes_the_gre_key_and_network_id_in_place() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    let before = sa_ids(&sim, 1);
    let keyed = |t: &str| {
        t.replace("key = 0\n", "key = 77\n")
            .replace("network_id = 1", "network_id = 9")
    };
    let hub_text = config("hub", 1, false, "modern", &[1]);
    let spoke_text = config("spoke", 2, false, "modern", &[1]);
    assert_eq!(
        reload(&mut sim, 0, &keyed(&hub_text)),
        Ok(vec![
            ("tunnel[0].key".into(), Effect::Now),
            ("tunnel[0].nhrp.network_id".into(), Effect::Now),
        ])
    );
    let drops = sim.nodes[0].r.stats().gre.total_drops();
    let replies = sim.nodes[1].replies.len();
    for seq in 0..5u16 {
        sim.ping(1, hub_t, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies, "old key: dropped");
    assert_eq!(
        sim.nodes[0].r.stats().gre.total_drops(),
        drops + 5,
        "each counted"
    );
    assert_eq!(
        reload(&mut sim, 1, &keyed(&spoke_text)).map(|v| v.len()),
        Ok(2)
    );
    for seq in 10..15u16 {
        sim.ping(1, hub_t, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies + 5, "new key: answered");
    assert_eq!(sa_ids(&sim, 1), before, "the same SAs");
    assert_eq!(
        sim.nodes[0].r.node().config().origin.tunnels[0]
            .nhrp
            .as_ref()
            .unwrap()
            .network_id,
        9
    );
}

/// The NBMA address registered for tunnel address `t` on the hub.
fn hub_nbma_of(sim: &Sim, t: Ipv4Addr) -> Option<IpAddr> {
    sim.nodes[0]
        .r
        .node()
        .show_nhrp(sim.now, false)
        .iter()
        .find(|e| e.prefix == IpAddr::V4(t))
        .and_then(|e| e.nbma)
}

/// A spoke's tunnel source moved to another address by a reload: its
/// SAs with the old address go, it negotiates and registers again from
/// the new one at once, and traffic to the hub and the other spoke
/// resumes; the other spoke's SA with the hub is untouched.
#[test]
fn reload_moves_the_tunnel_source() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let other_before = sa_ids(&sim, 2);
    let new_nbma = Ipv4Addr::new(172, 16, 0, 22);
    let moved = config("spoke", 2, false, "modern", &[1])
        .replace("source = \"172.16.0.2\"", "source = \"172.16.0.22\"");
    assert_eq!(
        reload(&mut sim, 1, &moved),
        Ok(vec![("tunnel[0].source".into(), Effect::Rekey)])
    );
    assert_eq!(sim.nodes[1].r.node().config().nbma, new_nbma);
    // The host now answers on the new address only.
    sim.nodes[1].nbma = new_nbma;
    sim.advance(Duration::from_secs(10));
    assert_eq!(hub_nbma_of(&sim, T1), Some(IpAddr::V4(new_nbma)));
    assert!(sim.nodes[0].r.node().has_sa(new_nbma));
    assert!(sim.nodes[1].r.node().has_sa(HUB));
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    let replies = sim.nodes[1].replies.len();
    for seq in 0..10u16 {
        sim.ping(1, hub_t, seq);
        sim.ping(1, T2, seq + 100);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(
        sim.nodes[1].replies.len(),
        replies + 20,
        "every echo answered"
    );
    let spoke2 = sa_ids(&sim, 2);
    assert!(
        other_before
            .0
            .iter()
            .filter(|(p, ..)| *p == IpAddr::V4(HUB))
            .all(|sa| spoke2.0.contains(sa)),
        "spoke 2's SA with the hub kept"
    );
}

/// Tunnel protection switched off and on again by reloads. Off (hub
/// first, then the spokes): every SA is deleted and traffic, NHRP
/// included, flows as plain GRE. On again on the hub only: the plain GRE
/// the spokes still send is dropped and counted; once the spokes are
/// protected too, they negotiate SAs with the hub at once and traffic
/// flows over ESP again.
#[test]
fn reload_switches_tunnel_protection() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    // Without IPsec a hub takes NHRP from the NBMA prefixes allowed only.
    let texts: Vec<String> = [("hub", 1), ("spoke", 2), ("spoke", 3)]
        .iter()
        .map(|(r, n)| {
            config(r, *n, false, "modern", &[1]).replace(
                "network_id = 1\n",
                "network_id = 1\nallowed_nbma = [\"172.16.0.0/24\"]\n",
            )
        })
        .collect();
    let plain = |t: &str| {
        assert!(t.contains("protection = \"cisco\"\n"));
        t.replace("protection = \"cisco\"\n", "")
    };
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(
            reload(&mut sim, i, &plain(t)),
            Ok(vec![
                ("tunnel[0].nhrp.allowed_nbma".into(), Effect::Now),
                ("tunnel[0].protection".into(), Effect::ProtectionSwitched)
            ])
        );
    }
    sim.advance(Duration::from_secs(1));
    for i in 0..3 {
        assert!(
            sim.nodes[i].r.stats().sas.is_empty(),
            "node {i}: every SA deleted"
        );
    }
    let esp = sim.esp_seen.len();
    let replies = sim.nodes[1].replies.len();
    for seq in 0..10u16 {
        sim.ping(1, hub_t, seq);
        sim.ping(1, T2, seq + 100);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies + 20, "plain GRE flows");
    assert_eq!(sim.esp_seen.len(), esp, "no ESP");
    sim.advance(Duration::from_secs(300));
    assert!(registered(&sim), "registrations refreshed in plain GRE");

    // On again, on the hub first: the spokes' plain GRE is refused.
    assert_eq!(
        reload(&mut sim, 0, &texts[0]),
        Ok(vec![(
            "tunnel[0].protection".into(),
            Effect::ProtectionSwitched
        )])
    );
    let refused = sim.nodes[0].r.stats().counters.unprotected;
    let replies = sim.nodes[1].replies.len();
    for seq in 20..25u16 {
        sim.ping(1, hub_t, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies, "nothing answered");
    assert!(
        sim.nodes[0].r.stats().counters.unprotected >= refused + 5,
        "each plain packet counted"
    );
    for (i, t) in texts.iter().enumerate().skip(1) {
        assert_eq!(
            reload(&mut sim, i, t),
            Ok(vec![(
                "tunnel[0].protection".into(),
                Effect::ProtectionSwitched
            )])
        );
    }
    sim.advance(Duration::from_secs(2));
    for n in [S1, S2] {
        assert!(sim.nodes[0].r.node().has_sa(n), "hub's SA with {n}");
    }
    let esp = sim.esp_seen.len();
    let replies = sim.nodes[1].replies.len();
    for seq in 30..40u16 {
        sim.ping(1, hub_t, seq);
        sim.ping(1, T2, seq + 100);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies + 20, "ESP flows");
    assert!(sim.esp_seen.len() >= esp + 40);
    assert!(registered(&sim));
}

/// A spoke's tunnel address changed by a reload: it registers the new
/// address with the hub at once, over the SA it has (nothing is
/// renegotiated), the hub and the other spoke reach it there, and the
/// old address's registration lapses with its holding time.
#[test]
fn reload_changes_a_spokes_tunnel_address() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let before = sa_ids(&sim, 1);
    let new_t = Ipv4Addr::new(192, 168, 1, 12);
    let text = config("spoke", 2, false, "modern", &[1]).replace(
        "address = \"192.168.1.2/24\"",
        "address = \"192.168.1.12/24\"",
    );
    assert_eq!(
        reload(&mut sim, 1, &text),
        Ok(vec![("tunnel[0].address".into(), Effect::Reregister)])
    );
    sim.nodes[1].tunnel = new_t;
    assert_eq!(
        hub_nbma_of(&sim, new_t),
        Some(IpAddr::V4(S1)),
        "registered at once"
    );
    assert_eq!(sim.nodes[1].r.node().config().tunnel_addr, new_t);
    let own: Vec<IpAddr> = sim.nodes[1]
        .r
        .node()
        .show_nhrp(sim.now, false)
        .iter()
        .map(|e| e.prefix)
        .collect();
    assert!(
        !own.contains(&IpAddr::V4(T1)),
        "the old address is not ours: {own:?}"
    );
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    let replies = sim.nodes[1].replies.len();
    let replies2 = sim.nodes[2].replies.len();
    for seq in 0..10u16 {
        sim.ping(1, hub_t, seq);
        sim.ping(2, new_t, seq + 100);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies + 10, "the hub answers");
    assert_eq!(
        sim.nodes[2].replies.len(),
        replies2 + 10,
        "spoke 2 reaches the new address"
    );
    let after = sa_ids(&sim, 1);
    assert!(
        before
            .0
            .iter()
            .filter(|(p, ..)| *p == IpAddr::V4(HUB))
            .all(|sa| after.0.contains(sa)),
        "the SA with the hub kept"
    );
    assert_eq!(
        hub_nbma_of(&sim, T1),
        Some(IpAddr::V4(S1)),
        "until it lapses"
    );
    sim.advance(Duration::from_secs(610));
    assert_eq!(hub_nbma_of(&sim, T1), None, "the old registration lapsed");
    assert_eq!(hub_nbma_of(&sim, new_t), Some(IpAddr::V4(S1)), "refreshed");
}

/// A spoke's multipoint tunnel made point-to-point to the hub by a
/// reload: the tunnel starts again (its SAs deleted, the peers told, NHRP
/// afresh), registers at once, and traffic goes on. Another spoke turned
/// into a hub: its tunnel starts again the same way.
#[test]
fn reload_with_a_new_mode_or_role_starts_the_tunnel_again() {
    let mut sim = Sim::new(false, "modern");
    sim.advance(Duration::from_secs(5));
    assert!(registered(&sim));
    let hub_t = Ipv4Addr::new(192, 168, 1, 1);
    let before = sa_ids(&sim, 1);
    let text = config("spoke", 2, false, "modern", &[1]);
    assert!(text.contains("mode = \"gre-multipoint\"\n"));
    let p2p = text.replace(
        "mode = \"gre-multipoint\"\n",
        "mode = \"gre\"\ndestination = \"172.16.0.1\"\n",
    );
    assert_eq!(
        reload(&mut sim, 1, &p2p),
        Ok(vec![
            ("tunnel[0].destination".into(), Effect::TunnelRestarted),
            ("tunnel[0].mode".into(), Effect::TunnelRestarted),
        ])
    );
    assert_eq!(sim.nodes[1].r.node().config().destination, Some(HUB));
    sim.advance(Duration::from_secs(5));
    assert!(sim.nodes[1].r.node().has_sa(HUB), "negotiated again");
    assert_ne!(sa_ids(&sim, 1), before, "new SAs");
    assert_eq!(hub_nbma_of(&sim, T1), Some(IpAddr::V4(S1)), "registered");
    let replies = sim.nodes[1].replies.len();
    for seq in 0..10u16 {
        sim.ping(1, hub_t, seq);
        sim.advance(Duration::from_millis(200));
    }
    assert_eq!(sim.nodes[1].replies.len(), replies + 10, "the hub answers");

    // Spoke 2 becomes a hub (keeping the first hub as its NHS).
    let before2 = sa_ids(&sim, 2);
    let text = config("spoke", 3, false, "modern", &[1]);
    assert!(text.contains("role = \"spoke\""));
    let hub_now = text.replace("role = \"spoke\"", "role = \"hub\"");
    assert_eq!(
        reload(&mut sim, 2, &hub_now),
        Ok(vec![("node.role".into(), Effect::TunnelRestarted)])
    );
    assert!(sim.nodes[2].r.node().config().hub);
    sim.advance(Duration::from_secs(5));
    assert!(sim.nodes[2].r.node().has_sa(HUB), "negotiated with its NHS");
    assert_ne!(sa_ids(&sim, 2), before2, "new SAs");
}
