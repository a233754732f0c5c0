//! A responder endpoint fed arbitrary datagrams on ports 500 and 4500.
#![no_main]
use dmvpn_ike::*;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;
use std::time::Duration;
use dmvpn_ike::Instant;

fuzz_target!(|data: &[u8]| {
    let cfg = EngineConfig {
        psks: vec![PskEntry {
            prefix: "0.0.0.0".parse().unwrap(),
            len: 0,
            key: zeroize_key(),
            initiate: dmvpn_ike::InitiateMode::Main,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(128),
                integ: Some(dmvpn_ike::crypto::HashAlg::Sha1),
            },
            mode: Mode::Transport,
        }],
        ..Default::default()
    };
    let mut n = 0u32;
    let mut ep = Endpoint::new(
        cfg,
        rand_chacha::ChaCha20Rng::seed_from_u64(0),
        Box::new(move || {
            n += 1;
            n
        }),
    );
    let now = Instant::from_secs(1);
    let local = "172.16.0.2:500".parse().unwrap();
    let remote = "172.16.0.1:500".parse().unwrap();
    // Several datagrams separated by 0xfe 0xfe so state can build up.
    for chunk in data.split(|b| *b == 0xfe) {
        let _ = ep.handle(now, local, remote, chunk);
        let _ = ep.handle(
            now,
            "172.16.0.2:4500".parse().unwrap(),
            "172.16.0.1:4500".parse().unwrap(),
            chunk,
        );
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
    ep.handle_timeout(now + Duration::from_secs(3600));
});

fn zeroize_key() -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(b"fuzz".to_vec())
}
