//! Timer bookkeeping cost on a hub holding 10,000 established peers (one
//! phase 1 SA and one child SA pair each): `poll_timeout` and an idle
//! `handle_timeout` run after every datagram, so they must not scan all SAs.

use criterion::{Criterion, criterion_group, criterion_main};
use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

const PEERS: u32 = 10_000;

fn cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Des,
            hash: HashAlg::Md5,
            group: GroupId::Modp768,
            lifetime: 86400,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(128),
                integ: Some(HashAlg::Sha1),
            },
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry {
            prefix: "0.0.0.0".parse().unwrap(),
            len: 0,
            key: Zeroizing::new(b"bench".to_vec()),
            initiate: InitiateMode::Main,
        }],
        ..Default::default()
    }
}

fn endpoint(seed: u64) -> Endpoint<ChaCha20Rng> {
    let mut n = (seed as u32) << 12;
    Endpoint::new(
        cfg(),
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

/// A hub with `PEERS` spokes that each completed Main Mode and Quick Mode.
fn hub(now: Instant) -> Endpoint<ChaCha20Rng> {
    let mut hub = endpoint(0);
    let lh: SocketAddr = "172.16.0.1:500".parse().unwrap();
    for i in 0..PEERS {
        let ip = Ipv4Addr::from(0x0a00_0000 + i + 1);
        let ls = SocketAddr::new(IpAddr::V4(ip), 500);
        let mut spoke = endpoint(u64::from(i) + 1);
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(ls.ip())),
            remote_proxy: Some(gre_proxy(lh.ip())),
        };
        spoke.initiate_phase2(now, ls, lh, req).unwrap();
        loop {
            let mut moved = false;
            while let Some(t) = spoke.poll_transmit() {
                moved = true;
                let _ = hub.handle(now, t.remote, t.local, &t.payload);
            }
            while let Some(t) = hub.poll_transmit() {
                moved = true;
                let _ = spoke.handle(now, t.remote, t.local, &t.payload);
            }
            if !moved {
                break;
            }
        }
        while hub.poll_event().is_some() {}
    }
    assert_eq!(hub.isakmp_sas().len(), PEERS as usize);
    assert_eq!(hub.child_spis().len(), PEERS as usize);
    hub
}

fn bench(c: &mut Criterion) {
    let now = Instant::from_secs(1);
    let mut hub = hub(now);
    let mut g = c.benchmark_group("timers_10k_peers");
    g.bench_function("poll_timeout", |bn| {
        bn.iter(|| std::hint::black_box(hub.poll_timeout()))
    });
    let idle = now + Duration::from_secs(1);
    g.bench_function("handle_timeout_nothing_due", |bn| {
        bn.iter(|| {
            hub.handle_timeout(idle);
            std::hint::black_box(hub.poll_timeout())
        })
    });
    g.finish();
    assert!(hub.poll_transmit().is_none());

    // Per-peer look-ups: the data plane reports traffic per packet batch,
    // and every MM1 is checked against the half-open limits.
    let mut g = c.benchmark_group("lookups_10k_peers");
    let mut i = 0u32;
    g.bench_function("note_traffic", |bn| {
        bn.iter(|| {
            i = (i + 7919) % PEERS;
            let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i + 1));
            hub.note_traffic(idle, peer);
        })
    });
    // Fill the global half-open budget, then time an MM1 flood that evicts.
    let lh: SocketAddr = "172.16.0.1:500".parse().unwrap();
    let mm1 = |src: SocketAddr| {
        let mut spoke = endpoint(u64::from(PEERS) + 1);
        let req = Phase2Request {
            local_proxy: None,
            remote_proxy: None,
        };
        spoke.initiate_phase2(now, src, lh, req).unwrap();
        spoke.poll_transmit().expect("MM1").payload
    };
    let mut n = 0u32;
    while hub.isakmp_sas().len() < PEERS as usize + hub.config().max_half_open {
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n)), 500);
        n += 1;
        let m = mm1(src);
        hub.handle(idle, lh, src, &m).unwrap();
    }
    let mut m = mm1("11.255.0.1:500".parse().unwrap());
    let mut k = 0u32;
    g.bench_function("mm1_over_half_open_limit", |bn| {
        bn.iter(|| {
            // A new cookie pair from a new source each time: it evicts the
            // oldest unverified SA.
            k += 1;
            m[..4].copy_from_slice(&k.to_be_bytes());
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + k)), 500);
            hub.handle(idle, lh, src, &m).unwrap();
            while hub.poll_transmit().is_some() {}
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
