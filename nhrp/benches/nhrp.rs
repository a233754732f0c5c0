//! Codec and engine throughput.
//!
//! `cargo bench -p dmvpn-nhrp --bench nhrp`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use std::time::{Duration, Instant as WallClock};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmvpn_nhrp::engine::Password;
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::wire::{flags, ip_to_addr};
use dmvpn_nhrp::{Body, Cie, Config, Engine, Extension, Instant, Packet, PacketType};

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn registration(i: u32) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::RegistrationRequest,
        v4(0xac10_0000 + i),
        v4(0x0a00_0000 + i),
        v4(0x0a00_0001),
        Body::Cies {
            request_id: i,
            cies: vec![Cie {
                prefix_len: 32,
                mtu: 1514,
                holding_time: 7200,
                ..Cie::default()
            }],
        },
    );
    p.flags = flags::REG_U | flags::CISCO_NAT;
    p.extensions = vec![
        Extension::new(ExtBody::ResponderAddress(None)),
        Extension::new(ExtBody::ForwardTransit(vec![])),
        Extension::new(ExtBody::ReverseTransit(vec![])),
        Extension::new(ExtBody::Authentication {
            auth_type: 1,
            data: b"cisco123".to_vec(),
        }),
        Extension::new(ExtBody::NatAddress(vec![Cie {
            prefix_len: 32,
            nbma: ip_to_addr(v4(0xac10_ffff)),
            proto: ip_to_addr(v4(0x0a00_0001)),
            ..Cie::default()
        }])),
        Extension::new(ExtBody::End),
    ];
    p.emit()
}

fn bench(c: &mut Criterion) {
    let bytes = registration(7);
    c.bench_function("parse registration request", |b| {
        b.iter(|| Packet::parse(black_box(&bytes)).unwrap())
    });
    let p = Packet::parse(&bytes).unwrap();
    c.bench_function("emit registration request", |b| {
        b.iter(|| black_box(&p).emit())
    });

    // A hub with 10 000 registered spokes handling one more registration
    // refresh (parse, auth, cache update, reply) and its timers.
    let mut hub = new_hub();
    let regs: Vec<Vec<u8>> = (2..10_002).map(registration).collect();
    for (i, r) in regs.iter().enumerate() {
        hub.handle(Instant::ZERO, v4(0xac10_0002 + i as u32), r);
        while hub.poll_transmit().is_some() {}
        while hub.poll_event().is_some() {}
    }
    assert_eq!(hub.multicast_nbmas().len(), regs.len(), "all registered");
    let mut i = 0usize;
    c.bench_function("hub: registration refresh, 10k spokes", |b| {
        b.iter(|| {
            i = (i + 1) % regs.len();
            hub.handle(Instant::from_secs(1), v4(0xac10_0002 + i as u32), &regs[i]);
            black_box(hub.poll_transmit());
        })
    });
    c.bench_function("hub: poll_timeout, 10k spokes", |b| {
        b.iter(|| black_box(hub.poll_timeout()))
    });

    // Registrations one NHS processes per second on one core: each
    // element is a full request (parse, authentication, cache insert or
    // update, reply emitted and taken).
    const BATCH: usize = 10_000;
    let mut g = c.benchmark_group("nhs registrations");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("new, 10k spokes into an empty hub", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut hub = new_hub();
                let start = WallClock::now();
                for (i, r) in regs.iter().enumerate() {
                    hub.handle(Instant::ZERO, v4(0xac10_0002 + i as u32), r);
                    black_box(hub.poll_transmit());
                    while hub.poll_event().is_some() {}
                }
                total += start.elapsed();
                drop(hub);
            }
            total
        })
    });
    let mut t = 1;
    g.bench_function("refresh, 10k registered spokes", |b| {
        b.iter(|| {
            t += 1;
            let now = Instant::from_secs(t);
            for (i, r) in regs.iter().enumerate() {
                hub.handle(now, v4(0xac10_0002 + i as u32), r);
                black_box(hub.poll_transmit());
                while hub.poll_event().is_some() {}
            }
        })
    });
    g.finish();
}

fn new_hub() -> Engine {
    let mut cfg = Config::new(v4(0xac10_ffff), v4(0x0a00_0001));
    cfg.tunnel_prefix_len = 8;
    cfg.server = true;
    cfg.multicast_dynamic = true;
    cfg.authentication = Some(Password::new("cisco123"));
    Engine::new(cfg, Instant::ZERO)
}

criterion_group!(benches, bench);
criterion_main!(benches);
