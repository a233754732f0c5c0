//! Responder CPU per complete Main Mode + Quick Mode handshake: an
//! initiator and a responder run in memory and only the time spent in the
//! responder's `handle` and `poll_transmit` calls is counted. Criterion
//! prints it as handshakes per second of one core (`thrpt`) for DH groups
//! 2, 14 and 19.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::SocketAddr;
use std::time::Duration;
use zeroize::Zeroizing;

fn cfg(group: GroupId) -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes256,
            hash: HashAlg::Sha256,
            group,
            lifetime: 86400,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(256),
                integ: Some(HashAlg::Sha256),
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

/// One handshake between fresh endpoints; returns the responder's time.
fn responder_time(c: &EngineConfig, seed: u64) -> Duration {
    let mk = |s| {
        let mut n = 0u32;
        Endpoint::new(
            c.clone(),
            ChaCha20Rng::seed_from_u64(s),
            Box::new(move || {
                n += 1;
                n
            }),
        )
    };
    let (mut a, mut b) = (mk(seed), mk(seed + 1));
    let now = Instant::from_secs(1);
    let (la, lb): (SocketAddr, SocketAddr) = (
        "172.16.0.1:500".parse().unwrap(),
        "172.16.0.2:500".parse().unwrap(),
    );
    let req = Phase2Request {
        local_proxy: Some(gre_proxy(la.ip())),
        remote_proxy: Some(gre_proxy(lb.ip())),
    };
    a.initiate_phase2(now, la, lb, req).unwrap();
    let mut spent = Duration::ZERO;
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            let t0 = std::time::Instant::now();
            let _ = b.handle(now, t.remote, t.local, &t.payload);
            spent += t0.elapsed();
        }
        loop {
            let t0 = std::time::Instant::now();
            let t = b.poll_transmit();
            spent += t0.elapsed();
            let Some(t) = t else { break };
            moved = true;
            let _ = a.handle(now, t.remote, t.local, &t.payload);
        }
        if !moved {
            break;
        }
    }
    assert_eq!(b.child_spis().len(), 1, "handshake did not complete");
    spent
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("responder");
    g.sample_size(20);
    // Printed as handshakes per second (`thrpt`), one core.
    g.throughput(Throughput::Elements(1));
    let mut seed = 0u64;
    for group in [GroupId::Modp1024, GroupId::Modp2048, GroupId::Ecp256] {
        let conf = cfg(group);
        g.bench_function(format!("mm_qm_group{}", group.ike_id()), |bn| {
            bn.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        seed += 2;
                        responder_time(&conf, seed)
                    })
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
