//! `debug crypto isakmp` narration. Alone in its own test binary: tracing
//! caches per-callsite interest globally, so concurrent tests without a
//! subscriber would hide events from a scoped one.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::HashAlg;
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

fn cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy::ios_default(10)],
        transform_sets: vec![TransformSet {
            name: "strong".into(),
            esp: EspTransform {
                encr: EspEncr::TripleDes,
                integ: Some(HashAlg::Md5),
            },
            mode: Mode::Tunnel,
        }],
        psks: vec![PskEntry {
            prefix: "0.0.0.0".parse().unwrap(),
            len: 0,
            key: Zeroizing::new(b"cisco123".to_vec()),
            initiate: InitiateMode::Main,
        }],
        sa_lifetime_secs: 120,
        ..Default::default()
    }
}

fn ep(seed: u64, base: u32) -> Endpoint<ChaCha20Rng> {
    let mut n = base;
    Endpoint::new(
        cfg(),
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

/// Collects `tracing` output for one test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn debug_narration_reads_like_ios_and_hides_secrets() {
    let cap = Captured::default();
    let w = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let (mut a, mut b) = (ep(1, 0x1000), ep(2, 0x2000));
    let mut children = vec![];
    tracing::subscriber::with_default(sub, || {
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
        let shuttle = |a: &mut Endpoint<ChaCha20Rng>, b: &mut Endpoint<ChaCha20Rng>| loop {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                moved = true;
                b.handle(now, t.remote, t.local, &t.payload).unwrap();
            }
            while let Some(t) = b.poll_transmit() {
                moved = true;
                a.handle(now, t.remote, t.local, &t.payload).unwrap();
            }
            if !moved {
                break;
            }
        };
        shuttle(&mut a, &mut b);
        // A phase 1 rekey, narrated too.
        assert!(a.rekey_isakmp(now, lb.ip()));
        shuttle(&mut a, &mut b);
        while let Some(e) = a.poll_event() {
            if let Event::ChildSaInstalled(c) = e {
                children.push(c);
            }
        }
    });
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    for want in [
        "dmvpn::ike",
        "beginning Main Mode exchange",
        "sending packet to 172.16.0.2 my_port 500 peer_port 500 (I) MM_NO_STATE",
        "Old State = IKE_READY  New State = IKE_R_MM1",
        "Old State = IKE_I_MM1  New State = IKE_I_MM2",
        "Checking ISAKMP transform 1 against priority 10 policy",
        "encryption DES-CBC",
        "hash MD5",
        "default group 1",
        "life duration (VPI) of  0x0 0x1 0x51 0x80",
        "atts are acceptable",
        "SA has been authenticated with 172.16.0.2",
        "New State = IKE_P1_COMPLETE",
        "beginning Quick Mode exchange, M-ID of",
        "IKE_QM_I_QM1",
        "IKE_QM_R_QM2",
        "IKE_QM_PHASE2_COMPLETE",
        "Creating IPSec SAs",
        "Checking IPSec proposal 1",
        "transform 1, ESP_3DES",
        "encaps is 1",
        "SA life duration (basic) of 120",
        "SA life duration (VPI) of 0x0 0x46 0x50 0x0",
        "authenticator is HMAC-MD5",
        "vendor ID is DPD",
        "(1001): Starting P1 rekey timer: 7",
        "Starting P1 rekey timer: 82080 seconds.",
        "(1001): P1 rekey: beginning a new ISAKMP SA with 172.16.0.2",
        "(1001): replaced by ISAKMP SA 1002",
        "(1001): sending DELETE for the ISAKMP SA",
        "(1001): peer deleted the ISAKMP SA",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("cisco123"), "PSK leaked");
    let c = &children[0];
    for k in [
        &c.inbound.encryption,
        &c.outbound.encryption,
        &c.inbound.integrity,
    ] {
        assert!(!text.contains(&hex::encode(&***k)), "key leaked");
    }
}
