//! The per-packet forwarding path without cryptography: the overlay
//! peer lookup (longest-prefix match over a hub-sized map), one inner
//! packet encapsulated in GRE and one GRE packet decapsulated.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use dmvpn_node::datapath::sadb::Sadb;
use dmvpn_node::engine::{DataplaneConfig, Engine, Peer, PeerMap, Protection};

const SPOKES: u32 = 1000;
const LOCAL: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

fn peer(i: u32) -> Peer {
    Peer {
        nbma: Ipv4Addr::from(0xac10_0000 + i),
        protection: Protection::None,
    }
}

/// A hub's map: one /32 per spoke tunnel address, one /24 LAN per spoke,
/// a few summaries and a default route.
fn hub_map() -> PeerMap {
    let mut m = PeerMap::new();
    for i in 0..SPOKES {
        m.insert(Ipv4Addr::from(0x0a00_0000 + i), 32, peer(i));
        m.insert(Ipv4Addr::from(0xc0a8_0000 + (i << 8)), 24, peer(i));
    }
    m.insert(Ipv4Addr::new(10, 0, 0, 0), 8, peer(1));
    m.insert(Ipv4Addr::new(192, 168, 0, 0), 16, peer(2));
    m.insert(Ipv4Addr::new(0, 0, 0, 0), 0, peer(3));
    m
}

fn cfg(local: Ipv4Addr, tunnel: Ipv4Addr) -> DataplaneConfig {
    DataplaneConfig {
        local_nbma: local,
        tunnel_addr: tunnel,
        tunnel_addr_v6: None,
        mtu: 1400,
        gre_key: Some(42),
        outer_ttl: 255,
        natt_port: None,
        require_protection: false,
    }
}

/// A 1000-byte UDP packet from 10.0.0.1 to `dst`, checksum correct.
fn inner(dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0x5a; 1000];
    p[..20].copy_from_slice(&[
        0x45, 0, 0x03, 0xe8, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 0, 0, 0, 0,
    ]);
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = 0;
    for w in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    let map = hub_map();
    // Spoke tunnel addresses, spoke LANs and summary/default hits.
    let probes: Vec<Ipv4Addr> = (0..256u32)
        .map(|i| match i % 4 {
            0 => Ipv4Addr::from(0x0a00_0000 + i * 3),
            1 => Ipv4Addr::from(0xc0a8_0000 + ((i * 3) << 8) + 7),
            2 => Ipv4Addr::from(0x0a0f_0000 + i),
            _ => Ipv4Addr::from(0x0808_0000 + i),
        })
        .collect();
    g.bench_function("peer_lookup/hub2003", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for a in &probes {
                n += u32::from(map.lookup(black_box(*a)).is_some());
            }
            n
        })
    });

    let dst = Ipv4Addr::new(10, 0, 3, 200);
    let mut a = Engine::new(
        cfg(LOCAL, Ipv4Addr::new(10, 0, 0, 1)),
        Sadb::new(),
        hub_map(),
    );
    let pkt = inner(dst);
    g.bench_function("gre_encap/hub2003", |b| {
        b.iter(|| {
            a.outbound(black_box(&pkt));
            a.batches().gre.clear();
        })
    });

    a.outbound(&pkt);
    let outer = a.gre_out().get(0).to_vec();
    let mut spoke_map = PeerMap::new();
    spoke_map.insert(Ipv4Addr::new(0, 0, 0, 0), 0, peer(0));
    let mut bx = Engine::new(cfg(REMOTE, dst), Sadb::new(), spoke_map);
    g.bench_function("gre_decap", |b| {
        b.iter(|| {
            bx.inbound_gre_ip(black_box(&outer));
            bx.batches().tun.clear();
        })
    });
    assert_eq!(bx.stats().gre.total_drops(), 0);
    assert!(bx.stats().counters.tun_tx > 0 || bx.stats().counters.gre_rx > 0);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
