//! Cost of DH operations and of a complete Main Mode + Quick Mode between
//! two in-memory endpoints.

use criterion::{Criterion, criterion_group, criterion_main};
use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{DhGroup, EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

fn cfg(encr: EncrAlg, hash: HashAlg, group: GroupId) -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr,
            hash,
            group,
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

fn handshake(c: EngineConfig, seed: u64) {
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
    let (la, lb): (std::net::SocketAddr, std::net::SocketAddr) = (
        "172.16.0.1:500".parse().unwrap(),
        "172.16.0.2:500".parse().unwrap(),
    );
    let req = Phase2Request {
        local_proxy: Some(gre_proxy(la.ip())),
        remote_proxy: Some(gre_proxy(lb.ip())),
    };
    a.initiate_phase2(now, la, lb, req).unwrap();
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            let _ = b.handle(now, t.remote, t.local, &t.payload);
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            let _ = a.handle(now, t.remote, t.local, &t.payload);
        }
        if !moved {
            break;
        }
    }
    assert_eq!(b.child_spis().len(), 1);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ike");
    g.sample_size(10);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for grp in [GroupId::Modp1024, GroupId::Modp2048, GroupId::Ecp256] {
        let (_, public) = grp.generate(&mut rng);
        g.bench_function(format!("dh_generate_and_shared_{grp:?}"), |bn| {
            bn.iter(|| {
                let (p, _) = grp.generate(&mut rng);
                grp.shared(&p, &public).unwrap()
            })
        });
    }
    let mut seed = 0;
    g.bench_function("mm_qm_des_md5_group1", |bn| {
        bn.iter(|| {
            seed += 2;
            handshake(cfg(EncrAlg::Des, HashAlg::Md5, GroupId::Modp768), seed)
        })
    });
    g.bench_function("mm_qm_aes256_sha256_group14", |bn| {
        bn.iter(|| {
            seed += 2;
            handshake(
                cfg(EncrAlg::Aes256, HashAlg::Sha256, GroupId::Modp2048),
                seed,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
