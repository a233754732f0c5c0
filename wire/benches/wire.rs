//! Per-packet costs: checksum of a full-size packet, IPv4 and GRE header
//! parse and emit, NAT-T demultiplexing, and a longest-prefix lookup in a
//! table of 1,000 spoke prefixes (against the linear scan it replaces).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmvpn_wire::checksum::checksum;
use dmvpn_wire::gre::{GreRepr, PROTO_IPV4};
use dmvpn_wire::ipv4::{Ipv4Packet, Ipv4Repr, PROTO_GRE};
use dmvpn_wire::natt;
use dmvpn_wire::prefix::{Prefix, PrefixMap, netmask_v4};

fn bench(c: &mut Criterion) {
    let pkt = vec![0x5au8; 1500];
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(1500));
    g.bench_function("1500 bytes", |b| b.iter(|| checksum(black_box(&pkt))));
    g.finish();

    let repr = Ipv4Repr {
        src: Ipv4Addr::new(172, 16, 0, 1),
        dst: Ipv4Addr::new(172, 16, 0, 2),
        protocol: PROTO_GRE,
        tos: 0,
        ttl: 255,
        ident: 0,
        flags_frag: 0x4000,
        payload_len: 1400,
    };
    let mut buf = vec![0u8; 1420];
    repr.emit(&mut buf).unwrap();
    c.bench_function("ipv4 emit", |b| {
        b.iter(|| black_box(&repr).emit(black_box(&mut buf[..20])))
    });
    c.bench_function("ipv4 parse", |b| {
        b.iter(|| Ipv4Packet::new_checked(black_box(&buf)).map(|p| Ipv4Repr::parse(&p)))
    });
    let gre = GreRepr::new(PROTO_IPV4, Some(1000));
    let mut gbuf = vec![0u8; 1408];
    gre.emit(&mut gbuf).unwrap();
    c.bench_function("gre emit", |b| {
        b.iter(|| black_box(&gre).emit(black_box(&mut gbuf)))
    });
    c.bench_function("gre parse", |b| b.iter(|| GreRepr::parse(black_box(&gbuf))));
    c.bench_function("natt demux", |b| b.iter(|| natt::demux(black_box(&gbuf))));

    // 1,000 spokes, each with a /24 behind it, plus the tunnel /16.
    let mut map = PrefixMap::new();
    let mut scan: Vec<(u32, u8, u32)> = Vec::new();
    map.insert(
        Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 16),
        0u32,
    );
    scan.push((u32::from(Ipv4Addr::new(10, 0, 0, 0)), 16, 0));
    for i in 0..1000u32 {
        let a = Ipv4Addr::from(0x0b00_0000 | (i << 8));
        map.insert(Prefix::new(IpAddr::V4(a), 24), i);
        scan.push((u32::from(a), 24, i));
    }
    scan.sort_by_key(|e| std::cmp::Reverse(e.1));
    let dst = Ipv4Addr::from(0x0b00_0000 | (999 << 8) | 7);
    let mut g = c.benchmark_group("lpm 1001 prefixes");
    g.bench_function("PrefixMap", |b| b.iter(|| map.lookup_v4(black_box(dst))));
    g.bench_function("linear scan", |b| {
        b.iter(|| {
            let d = u32::from(black_box(dst));
            scan.iter()
                .find(|(p, l, _)| d & netmask_v4(*l) == *p)
                .map(|e| e.2)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
