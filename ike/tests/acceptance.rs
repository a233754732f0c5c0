//! Acceptance checks for the keying engine: every algorithm combination
//! negotiates, a flood of bogus Main Mode openings stays bounded, and two
//! engines converge under loss, duplication and reordering.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

type Ep = Endpoint<ChaCha20Rng>;

fn cfg(encr: EncrAlg, hash: HashAlg, group: GroupId, esp: EspTransform) -> EngineConfig {
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
            esp,
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry {
            prefix: "0.0.0.0".parse().unwrap(),
            len: 0,
            key: Zeroizing::new(b"acceptance".to_vec()),
            initiate: InitiateMode::Main,
        }],
        ..Default::default()
    }
}

fn default_esp() -> EspTransform {
    EspTransform {
        encr: EspEncr::AesCbc(128),
        integ: Some(HashAlg::Sha1),
    }
}

fn ep(c: EngineConfig, seed: u64, spi_base: u32) -> Ep {
    let mut n = spi_base;
    Endpoint::new(
        c,
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

const A: &str = "172.16.0.1:500";
const B: &str = "172.16.0.2:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn request() -> Phase2Request {
    Phase2Request {
        local_proxy: Some(gre_proxy(addr(A).ip())),
        remote_proxy: Some(gre_proxy(addr(B).ip())),
    }
}

/// Installed child SAs, drained from the event queue.
fn drain_installed(e: &mut Ep, into: &mut Vec<ChildSa>) {
    while let Some(ev) = e.poll_event() {
        if let Event::ChildSaInstalled(c) = ev {
            into.push(c);
        }
    }
}

/// Deliver everything both ways until quiet (lossless, in order).
fn pump(a: &mut Ep, b: &mut Ep, now: Instant) {
    for _ in 0..1000 {
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
            return;
        }
    }
    panic!("no quiescence");
}

fn assert_pair(a: &ChildSa, b: &ChildSa) {
    assert_eq!(a.inbound_spi, b.outbound_spi);
    assert_eq!(a.outbound_spi, b.inbound_spi);
    assert_eq!(*a.inbound.encryption, *b.outbound.encryption);
    assert_eq!(*a.inbound.integrity, *b.outbound.integrity);
    assert_eq!(*a.outbound.encryption, *b.inbound.encryption);
    assert_eq!(*a.outbound.integrity, *b.inbound.integrity);
    assert_ne!(*a.inbound.encryption, *a.outbound.encryption);
    assert_eq!(a.transform, b.transform);
}

/// One in-memory MM+QM; returns the installed pair (initiator, responder).
fn negotiate(c: EngineConfig, seed: u64) -> (ChildSa, ChildSa) {
    let (mut a, mut b) = (ep(c.clone(), seed, 0x1000), ep(c, seed + 1, 0x2000));
    let now = Instant::from_secs(1);
    a.initiate_phase2(now, addr(A), addr(B), request()).unwrap();
    pump(&mut a, &mut b, now);
    let (mut ia, mut ib) = (vec![], vec![]);
    drain_installed(&mut a, &mut ia);
    drain_installed(&mut b, &mut ib);
    assert_eq!(ia.len(), 1, "initiator installed {}", ia.len());
    assert_eq!(ib.len(), 1, "responder installed {}", ib.len());
    let (x, y) = (ia.remove(0), ib.remove(0));
    assert_pair(&x, &y);
    (x, y)
}

const HASHES: [HashAlg; 5] = [
    HashAlg::Md5,
    HashAlg::Sha1,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
];

#[test]
fn every_phase1_combination_negotiates() {
    let mut seed = 0;
    for encr in [
        EncrAlg::Des,
        EncrAlg::TripleDes,
        EncrAlg::Aes128,
        EncrAlg::Aes192,
        EncrAlg::Aes256,
    ] {
        for hash in HASHES {
            for group in [GroupId::Modp768, GroupId::Modp1024, GroupId::Ecp256] {
                seed += 2;
                let c = cfg(encr, hash, group, default_esp());
                let (x, _) = negotiate(c, seed);
                assert_eq!(x.transform, default_esp());
            }
        }
    }
}

#[test]
fn every_esp_transform_negotiates() {
    let mut seed = 1000;
    let cbc = [
        EspEncr::Des,
        EspEncr::TripleDes,
        EspEncr::AesCbc(128),
        EspEncr::AesCbc(192),
        EspEncr::AesCbc(256),
    ];
    let mut esps = vec![];
    for e in cbc {
        for h in [HashAlg::Md5, HashAlg::Sha1, HashAlg::Sha256] {
            esps.push(EspTransform {
                encr: e,
                integ: Some(h),
            });
        }
    }
    for bits in [128, 256] {
        esps.push(EspTransform {
            encr: EspEncr::AesGcm16(bits),
            integ: None,
        });
    }
    for esp in esps {
        seed += 2;
        let c = cfg(EncrAlg::Aes128, HashAlg::Sha1, GroupId::Modp1024, esp);
        let (x, y) = negotiate(c, seed);
        assert_eq!(x.transform, esp, "{esp:?}");
        let key_len = match esp.encr {
            EspEncr::Des => 8,
            EspEncr::TripleDes => 24,
            EspEncr::AesCbc(b) => b as usize / 8,
            // Key plus the 4-byte salt (RFC 4106).
            EspEncr::AesGcm16(b) => b as usize / 8 + 4,
            EspEncr::Null => 0,
        };
        assert_eq!(x.outbound.encryption.len(), key_len, "{esp:?}");
        let integ_len = match esp.integ {
            Some(HashAlg::Md5) => 16,
            Some(HashAlg::Sha1) => 20,
            Some(HashAlg::Sha256) => 32,
            None => 0,
            Some(h) => panic!("unexpected {h:?}"),
        };
        assert_eq!(y.inbound.integrity.len(), integ_len, "{esp:?}");
    }
}

/// Datagrams in flight between A and B, each with its delivery time, so
/// that loss, duplication and reordering can be simulated on virtual time.
struct Net {
    a: Ep,
    b: Ep,
    ia: Vec<ChildSa>,
    ib: Vec<ChildSa>,
    now: Instant,
    /// (deliver at, send sequence number, from A, datagram).
    wire: Vec<(Instant, u64, bool, Transmit)>,
    chaos: Option<ChaCha20Rng>,
    sent: u64,
    /// Highest sequence number delivered so far.
    high: u64,
    /// Deliveries that overtook a later-sent datagram, and duplicates.
    reordered: usize,
    duplicated: usize,
}

impl Net {
    fn new(ca: EngineConfig, cb: EngineConfig) -> Net {
        Net {
            a: ep(ca, 1, 0x1000_0000),
            b: ep(cb, 2, 0x2000_0000),
            ia: vec![],
            ib: vec![],
            now: Instant::from_secs(1),
            wire: vec![],
            chaos: None,
            sent: 0,
            high: 0,
            reordered: 0,
            duplicated: 0,
        }
    }

    fn initiate(&mut self) {
        let now = self.now;
        let _ = self.a.initiate_phase2(now, addr(A), addr(B), request());
    }

    /// Put pending transmissions on the wire: with chaos, a quarter is
    /// lost, an eighth duplicated, and each copy delayed 0-3 s at random
    /// (which reorders them).
    fn collect(&mut self) {
        let mut out = vec![];
        while let Some(t) = self.a.poll_transmit() {
            out.push((true, t));
        }
        while let Some(t) = self.b.poll_transmit() {
            out.push((false, t));
        }
        drain_installed(&mut self.a, &mut self.ia);
        drain_installed(&mut self.b, &mut self.ib);
        for (from_a, t) in out {
            self.sent += 1;
            let seq = self.sent;
            let Some(rng) = self.chaos.as_mut() else {
                self.wire.push((self.now, seq, from_a, t));
                continue;
            };
            if rng.next_u32() % 4 == 0 {
                continue;
            }
            let copies = if rng.next_u32() % 8 == 0 { 2 } else { 1 };
            self.duplicated += copies - 1;
            for _ in 0..copies {
                let delay = Duration::from_millis(rng.next_u32() as u64 % 3000);
                self.wire.push((self.now + delay, seq, from_a, t.clone()));
            }
        }
    }

    fn deliver_due(&mut self) -> bool {
        let now = self.now;
        let mut due = vec![];
        let mut i = 0;
        while i < self.wire.len() {
            if self.wire[i].0 <= now {
                due.push(self.wire.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|d| (d.0, d.1));
        let moved = !due.is_empty();
        for (_, seq, from_a, t) in due {
            if seq < self.high {
                self.reordered += 1;
            }
            self.high = self.high.max(seq);
            let to = if from_a { &mut self.b } else { &mut self.a };
            let _ = to.handle(now, t.remote, t.local, &t.payload);
        }
        moved
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            for _ in 0..10_000 {
                self.collect();
                if !self.deliver_due() {
                    break;
                }
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .chain(self.wire.iter().map(|w| w.0))
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.a.handle_timeout(now);
                    self.b.handle_timeout(now);
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

#[test]
fn bogus_main_mode_flood_is_bounded_and_real_peer_completes() {
    const BOUND: usize = 200;
    let c = cfg(
        EncrAlg::Aes128,
        HashAlg::Sha1,
        GroupId::Modp1024,
        default_esp(),
    );
    let mut cb = c.clone();
    cb.max_half_open = BOUND;
    let mut net = Net::new(c.clone(), cb);

    // A genuine MM1 from another initiator, replayed with random cookies
    // from many addresses and ports.
    let mut template = {
        let mut x = ep(c, 99, 1);
        x.initiate_phase2(net.now, addr(A), addr(B), request())
            .unwrap();
        x.poll_transmit().unwrap().payload
    };
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut rejected = 0;
    for i in 0..5000u32 {
        rng.fill_bytes(&mut template[..8]);
        let src = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (rng.next_u32() & 0xff_ffff))),
            1024 + (rng.next_u32() % 60000) as u16,
        );
        let now = net.now;
        if net.b.handle(now, addr(B), src, &template).is_err() {
            rejected += 1;
        }
        // Answers to the forged sources go nowhere.
        while net.b.poll_transmit().is_some() {}
        assert!(net.b.isakmp_sas().len() <= BOUND, "after {i} MM1");
        if i == 2500 {
            // The real peer starts in the middle of the flood.
            net.initiate();
            net.collect();
            net.deliver_due();
        }
    }
    // Newcomers evict the oldest unverified SAs rather than being refused.
    assert_eq!(rejected, 0);
    let st = net.b.stats();
    assert!(
        st.half_open_evicted >= (5000 - BOUND) as u64,
        "only {} evicted",
        st.half_open_evicted
    );
    assert_eq!(st.half_open_refused, 0);
    assert_eq!(net.b.isakmp_sas().len(), BOUND);
    assert_eq!(net.b.half_open_count(), BOUND);
    // The real peer (matching only the wildcard key, so not preferred)
    // keeps asking (requests are deduplicated) and completes.
    for _ in 0..30 {
        if !net.ia.is_empty() {
            break;
        }
        net.initiate();
        net.run_for(Duration::from_secs(20));
        assert!(net.b.isakmp_sas().len() <= BOUND);
    }
    assert_eq!(net.ia.len(), 1, "real peer never completed");
    assert_eq!(net.ib.len(), 1);
    assert_pair(&net.ia[0], &net.ib[0]);
}

#[test]
fn loss_duplication_and_reordering_converge() {
    for seed in 0..4u64 {
        let mut c = cfg(
            EncrAlg::Aes128,
            HashAlg::Sha256,
            GroupId::Modp1024,
            default_esp(),
        );
        c.sa_lifetime_secs = 200;
        c.policies[0].lifetime = 900;
        c.dpd = Some(DpdConfig {
            interval: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            max_retries: 3,
        });
        let mut net = Net::new(c.clone(), c);
        net.chaos = Some(ChaCha20Rng::seed_from_u64(seed + 100));
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for step in 0..200 {
            match rng.next_u32() % 5 {
                0 => net.initiate(),
                1 => {
                    if let Some(spi) = net.a.child_spis().first().copied() {
                        let now = net.now;
                        net.a.delete_child(now, spi);
                    }
                }
                2 if step % 40 == 0 => {
                    let now = net.now;
                    net.a.delete_peer(now, addr(B).ip());
                }
                _ => {}
            }
            net.run_for(Duration::from_secs(rng.next_u32() as u64 % 40));
        }
        assert!(
            net.reordered > 10,
            "seed {seed}: {} reordered",
            net.reordered
        );
        assert!(
            net.duplicated > 10,
            "seed {seed}: {} duplicated",
            net.duplicated
        );
        assert!(
            !net.ia.is_empty(),
            "seed {seed}: nothing negotiated under chaos"
        );
        // Heal the network; stale SAs whose deletes were lost expire.
        net.chaos = None;
        net.run_for(Duration::from_secs(300));
        net.initiate();
        net.run_for(Duration::from_secs(30));
        let a = net.a.child_sas();
        let b = net.b.child_sas();
        assert!(!a.is_empty(), "seed {seed}: no SA on A");
        for x in &a {
            assert!(
                b.iter()
                    .any(|y| y.outbound_spi == x.inbound_spi && y.inbound_spi == x.outbound_spi),
                "seed {seed}: {:#x} unpaired",
                x.inbound_spi
            );
        }
        for y in &b {
            assert!(
                a.iter().any(|x| x.outbound_spi == y.inbound_spi),
                "seed {seed}: B's {:#x} unpaired",
                y.inbound_spi
            );
        }
        // The live pairs carry matching keys.
        for x in &a {
            let ia = net.ia.iter().rev().find(|s| s.inbound_spi == x.inbound_spi);
            let ib = net
                .ib
                .iter()
                .rev()
                .find(|s| s.outbound_spi == x.inbound_spi);
            if let (Some(p), Some(q)) = (ia, ib) {
                assert_pair(p, q);
            }
        }
    }
}
