//! Hostile input into a hub's whole Router, the way dmvpnd drives it: a
//! hub with two spokes that have negotiated IKE and IPsec and registered
//! over NHRP (built once, in memory, by running the three routers against
//! each other), then arbitrary underlay datagrams (raw, or behind a valid
//! outer IPv4 header from a spoke, or ESP under a live SPI), TUN packets,
//! show requests and time passing. After each input the three routers
//! exchange what they queued, so the spokes stay registered and answer.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request, Response};
use dmvpn_nhrp::Instant;
use dmvpn_node::router::{Datagram, Options};
use dmvpn_node::{Router, Seed};
use libfuzzer_sys::fuzz_target;

fn config(n: u8) -> String {
    let (role, nhrp) = if n == 1 {
        ("hub", String::new())
    } else {
        (
            "spoke",
            "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n".to_string(),
        )
    };
    format!(
        r#"
[node]
name = "n{n}"
role = "{role}"
[[ike.policy]]
priority = 10
encryption = "aes-128"
hash = "sha256"
group = 14
[[ike.key]]
peer = "0.0.0.0/0"
key = "fuzz-psk-123"
[[ipsec.transform_set]]
name = "ts"
transforms = ["esp-aes 128", "esp-sha-hmac"]
mode = "transport"
[[ipsec.profile]]
name = "p"
transform_sets = ["ts"]
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
source = "172.16.0.{n}"
key = 0
protection = "p"
[tunnel.nhrp]
network_id = 1
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

struct Net {
    routers: Vec<Router>,
    now: Instant,
    /// Inbound SPIs the hub holds (for ESP under a live SA).
    spis: Vec<u32>,
}

fn nbma(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 0, i as u8 + 1)
}

enum Wire {
    Raw(Ipv4Addr, Vec<u8>),
    Ike(SocketAddr, SocketAddr, Vec<u8>),
}

/// Everything router `i` queued goes onto the wire; inner packets are
/// dropped (no hosts behind the nodes).
fn drain(r: &mut Router, wire: &mut VecDeque<Wire>) {
    while let Some(t) = r.poll_transmit() {
        wire.push_back(Wire::Ike(t.local, t.remote, t.payload));
    }
    while r.poll_keylog().is_some() {}
    let b = r.batches();
    for out in [&mut *b.gre, &mut *b.esp] {
        for i in 0..out.len() {
            let p = out.get(i).to_vec();
            if p.len() >= 20 {
                let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
                wire.push_back(Wire::Raw(dst, p));
            }
        }
        out.clear();
    }
    b.udp.clear();
    b.tun.clear();
}

fn deliver(net: &mut Net, w: Wire) {
    let now = net.now;
    match w {
        Wire::Raw(dst, p) => {
            if let Some(r) = (0..net.routers.len()).find(|i| nbma(*i) == dst) {
                let d = if p[9] == 50 {
                    Datagram::Esp(&p)
                } else {
                    Datagram::Gre(&p)
                };
                net.routers[r].handle_underlay(now, d);
            }
        }
        Wire::Ike(SocketAddr::V4(local), SocketAddr::V4(remote), payload) => {
            if let Some(r) = (0..net.routers.len()).find(|i| nbma(*i) == *remote.ip()) {
                net.routers[r].handle_underlay(
                    now,
                    Datagram::Udp {
                        local: remote,
                        remote: local,
                        payload: &payload,
                    },
                );
            }
        }
        Wire::Ike(..) => {}
    }
}

fn settle(net: &mut Net) {
    for _ in 0..200 {
        let mut wire = VecDeque::new();
        for r in net.routers.iter_mut() {
            drain(r, &mut wire);
        }
        if wire.is_empty() {
            return;
        }
        while let Some(w) = wire.pop_front() {
            deliver(net, w);
        }
    }
}

fn registered(hub: &mut Router, now: Instant) -> bool {
    match hub.request(now, Request::ShowNhrp) {
        Response::Ok(Reply::Nhrp(v)) => v.iter().filter(|e| e.nbma.is_some()).count() >= 2,
        _ => false,
    }
}

fn build() -> Net {
    let now = Instant::from_secs(1);
    let routers = (1..=3u8)
        .map(|n| {
            let cfg = dmvpn_config::Config::from_str(&config(n), "fuzz.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .config;
            Router::from_config(&cfg, Seed([n; 32]), now, Options::default())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut net = Net {
        routers,
        now,
        spis: Vec::new(),
    };
    // Run the three nodes against each other until both spokes registered.
    for _ in 0..600 {
        settle(&mut net);
        if registered(&mut net.routers[0], net.now) {
            break;
        }
        net.now += Duration::from_millis(100);
        let now = net.now;
        for r in net.routers.iter_mut() {
            if r.poll_timeout() <= now {
                r.handle_timeout(now);
            }
        }
    }
    assert!(
        registered(&mut net.routers[0], net.now),
        "the spokes did not register with the hub"
    );
    net.spis = net.routers[0].stats().sas.iter().map(|s| s.spi).collect();
    assert!(!net.spis.is_empty(), "no inbound SA at the hub");
    net
}

thread_local! {
    static NET: RefCell<Option<Net>> = const { RefCell::new(None) };
}

/// An outer IPv4 header from spoke `from` to the hub around `payload`.
fn outer(from: usize, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, proto, 0, 0];
    p.extend_from_slice(&nbma(from).octets());
    p.extend_from_slice(&nbma(0).octets());
    let sum = dmvpn_wire::checksum::checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fuzz_target!(|data: &[u8]| {
    NET.with(|cell| {
        let mut guard = cell.borrow_mut();
        let net = guard.get_or_insert_with(build);
        let Some((&op, rest)) = data.split_first() else {
            return;
        };
        net.now += Duration::from_millis(1);
        let now = net.now;
        let from = 1 + usize::from(op >> 7);
        let spoke = SocketAddrV4::new(nbma(from), 500);
        let hub = &mut net.routers[0];
        match op & 0x0f {
            0 => hub.handle_tun(now, rest),
            1 => hub.handle_underlay(now, Datagram::Gre(rest)),
            2 => hub.handle_underlay(now, Datagram::Esp(rest)),
            3 => hub.handle_underlay(
                now,
                Datagram::Udp {
                    local: SocketAddrV4::new(nbma(0), 500),
                    remote: spoke,
                    payload: rest,
                },
            ),
            4 => hub.handle_underlay(
                now,
                Datagram::Udp {
                    local: SocketAddrV4::new(nbma(0), 4500),
                    remote: SocketAddrV4::new(nbma(from), 4500),
                    payload: rest,
                },
            ),
            5 => hub.handle_underlay(now, Datagram::Gre(&outer(from, 47, rest))),
            6 => {
                // ESP under a live SPI: the rest is sequence number, IV,
                // ciphertext and ICV.
                let spi = net.spis[usize::from(op >> 4) % net.spis.len()];
                let mut esp = spi.to_be_bytes().to_vec();
                esp.extend_from_slice(rest);
                hub.handle_underlay(now, Datagram::Esp(&outer(from, 50, &esp)));
            }
            7 => {
                // Time passes for every node (up to 5 s): registrations,
                // DPD, rekeys and expiry run between the three of them.
                let step = rest.first().map_or(1, |b| u64::from(*b % 50));
                net.now += Duration::from_millis(step * 100);
                let t = net.now;
                for r in net.routers.iter_mut() {
                    if r.poll_timeout() <= t {
                        r.handle_timeout(t);
                    }
                }
            }
            8 => {
                let _ = hub.request(now, Request::ShowDmvpnDetail);
                let _ = hub.request(now, Request::ShowCryptoIpsecSa);
            }
            _ => hub.handle_underlay(now, Datagram::Esp(&outer(from, 50, rest))),
        }
        // What the hub sends reaches the spokes, and their answers the hub.
        settle(net);
    });
});
