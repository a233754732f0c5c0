//! Two engines against each other in memory, on virtual time.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::wire;
use dmvpn_ike::*;
use dmvpn_wire::natt::{self, Natt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

type Ep = Endpoint<ChaCha20Rng>;

fn psk(k: &str) -> Vec<PskEntry> {
    vec![PskEntry {
        prefix: "0.0.0.0".parse().unwrap(),
        len: 0,
        key: Zeroizing::new(k.as_bytes().to_vec()),
        initiate: InitiateMode::Main,
    }]
}

/// The seed's configuration: `hash md5` policy (DES/MD5/group 1/86400),
/// `esp-3des esp-md5-hmac`, life 120 s.
fn seed_cfg() -> EngineConfig {
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
        psks: psk("cisco123"),
        sa_lifetime_secs: 120,
        ..Default::default()
    }
}

/// Starts Aggressive Mode with every peer and answers it.
fn aggressive(mut cfg: EngineConfig) -> EngineConfig {
    for p in &mut cfg.psks {
        p.initiate = InitiateMode::Aggressive;
    }
    cfg.answer_aggressive = true;
    cfg
}

fn modern_cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes256,
            hash: HashAlg::Sha256,
            group: GroupId::Modp2048,
            lifetime: 86400,
        }],
        transform_sets: vec![
            TransformSet {
                name: "gcm".into(),
                esp: EspTransform {
                    encr: EspEncr::AesGcm16(256),
                    integ: None,
                },
                mode: Mode::Transport,
            },
            TransformSet {
                name: "cbc".into(),
                esp: EspTransform {
                    encr: EspEncr::AesCbc(256),
                    integ: Some(HashAlg::Sha256),
                },
                mode: Mode::Transport,
            },
        ],
        psks: psk("s3cr3t-key"),
        pfs: Some(GroupId::Ecp256),
        ..Default::default()
    }
}

struct Node {
    ep: Ep,
    events: Vec<Event>,
    errors: Vec<HandleError>,
    /// Address the node believes it has (inside a NAT if behind one).
    addr: IpAddr,
}

/// A NAT in front of node A: private 10.0.0.1 <-> public 172.16.0.100,
/// source ports 500 -> 40500 and 4500 -> 44500.
struct Nat;

impl Nat {
    const PRIV: &'static str = "10.0.0.1";
    const PUB: &'static str = "172.16.0.100";
    fn out(a: SocketAddr) -> SocketAddr {
        let port = if a.port() == 500 { 40500 } else { 44500 };
        SocketAddr::new(Self::PUB.parse().unwrap(), port)
    }
    fn back(a: SocketAddr) -> SocketAddr {
        let port = if a.port() == 40500 { 500 } else { 4500 };
        SocketAddr::new(Self::PRIV.parse().unwrap(), port)
    }
}

/// Return false to drop a datagram.
type Filter = Box<dyn FnMut(bool, usize, &[u8]) -> bool>;

struct Net {
    a: Node,
    b: Node,
    now: Instant,
    nat: bool,
    /// Return false to drop: (from_a, index of message from that side, payload).
    filter: Filter,
    sent: [usize; 2],
    /// Every datagram that crossed the wire: (from_a, transmit as sent).
    log: Vec<(bool, Transmit)>,
    /// Deliver NAT-T datagrams as a forwarding driver does: demultiplexed
    /// once with `dmvpn_wire::natt::demux`, IKE handed over without its
    /// marker through `handle_message`.
    demux_natt: bool,
}

fn ep(cfg: EngineConfig, seed: u64, spi_base: u32) -> Ep {
    let mut n = spi_base;
    Endpoint::new(
        cfg,
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

impl Net {
    fn new(a: EngineConfig, b: EngineConfig) -> Net {
        Self::with_addrs(a, b, "172.16.0.1", "172.16.0.2")
    }

    fn with_addrs(a: EngineConfig, b: EngineConfig, a_ip: &str, b_ip: &str) -> Net {
        Net {
            a: Node {
                ep: ep(a, 1, 0x1000_0000),
                events: vec![],
                errors: vec![],
                addr: a_ip.parse().unwrap(),
            },
            b: Node {
                ep: ep(b, 2, 0x2000_0000),
                events: vec![],
                errors: vec![],
                addr: b_ip.parse().unwrap(),
            },
            now: Instant::from_secs(1),
            nat: false,
            filter: Box::new(|_, _, _| true),
            sent: [0, 0],
            log: vec![],
            demux_natt: false,
        }
    }

    fn behind_nat(mut self) -> Net {
        self.nat = true;
        self.a.addr = Nat::PRIV.parse().unwrap();
        self
    }

    fn a_local(&self) -> SocketAddr {
        SocketAddr::new(self.a.addr, 500)
    }

    fn b_remote(&self) -> SocketAddr {
        SocketAddr::new(self.b.addr, 500)
    }

    fn initiate(&mut self) {
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(self.a.addr)),
            remote_proxy: Some(gre_proxy(self.b.addr)),
        };
        let (l, r) = (self.a_local(), self.b_remote());
        self.a.ep.initiate_phase2(self.now, l, r, req).unwrap();
    }

    /// Deliver datagrams until both sides are quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(t) = self.a.ep.poll_transmit() {
                moved = true;
                self.deliver(true, t);
            }
            while let Some(t) = self.b.ep.poll_transmit() {
                moved = true;
                self.deliver(false, t);
            }
            for n in [&mut self.a, &mut self.b] {
                while let Some(e) = n.ep.poll_event() {
                    n.events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn deliver(&mut self, from_a: bool, t: Transmit) {
        let i = if from_a { 0 } else { 1 };
        let idx = self.sent[i];
        self.sent[i] += 1;
        self.log.push((from_a, t.clone()));
        if !(self.filter)(from_a, idx, &t.payload) {
            return;
        }
        let now = self.now;
        let demux = self.demux_natt;
        let (to, local, remote) = if from_a {
            let src = if self.nat { Nat::out(t.local) } else { t.local };
            (&mut self.b, t.remote, src)
        } else {
            let dst = if self.nat {
                Nat::back(t.remote)
            } else {
                t.remote
            };
            (&mut self.a, dst, t.local)
        };
        let r = if demux && (local.port() == 4500 || remote.port() == 4500) {
            match natt::demux(&t.payload) {
                Natt::Ike(m) => to.ep.handle_message(now, local, remote, m),
                Natt::Keepalive => Ok(()),
                other => panic!("IKE sent {other:?} on the NAT-T port"),
            }
        } else {
            to.ep.handle(now, local, remote, &t.payload)
        };
        if let Err(e) = r {
            to.errors.push(e);
        }
    }

    /// Advance virtual time to `until`, firing timers on the way.
    fn run_until(&mut self, until: Instant) {
        self.pump();
        loop {
            let next = [self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.a.ep.handle_timeout(now);
                    self.b.ep.handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }
}

fn installed(n: &Node) -> Vec<ChildSa> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaInstalled(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn count(n: &Node, f: impl Fn(&Event) -> bool) -> usize {
    n.events.iter().filter(|e| f(e)).count()
}

fn assert_pair(a: &ChildSa, b: &ChildSa) {
    assert_eq!(a.inbound_spi, b.outbound_spi);
    assert_eq!(a.outbound_spi, b.inbound_spi);
    assert_eq!(*a.inbound.encryption, *b.outbound.encryption);
    assert_eq!(*a.inbound.integrity, *b.outbound.integrity);
    assert_eq!(*a.outbound.encryption, *b.inbound.encryption);
    assert_ne!(*a.inbound.encryption, *a.outbound.encryption);
    assert_eq!(a.transform, b.transform);
    assert_eq!(a.mode, b.mode);
}

#[test]
fn main_mode_quick_mode_seed_crypto() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })), 1);
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Up { .. })), 1);
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.events,
        net.b.events
    );
    assert_pair(&ca[0], &cb[0]);
    // Both ends count one phase 1 and one Quick Mode, started and completed.
    for n in [&net.a, &net.b] {
        let h = n.ep.stats().handshakes;
        assert_eq!((h.phase1.started, h.phase1.completed), (1, 1), "{h:?}");
        assert_eq!((h.quick_mode.started, h.quick_mode.completed), (1, 1));
        assert_eq!(h.phase1.failures().map(|(_, n)| n).sum::<u64>(), 0);
    }
    let c = &ca[0];
    assert_eq!(c.transform.ios_name(), "esp-3des esp-md5-hmac");
    assert_eq!(c.mode, Mode::Tunnel);
    assert_eq!(c.lifetime_secs, 120);
    assert_eq!(c.lifetime_kb, 4_608_000);
    assert_eq!(c.inbound.encryption.len(), 24);
    assert_eq!(c.inbound.integrity.len(), 16);
    assert_eq!(c.encapsulation, Encapsulation::None);
    assert_eq!(
        c.local_proxy.as_ref().unwrap().proxy_text(),
        "172.16.0.1/255.255.255.255/47/0"
    );
    assert_eq!(
        cb[0].local_proxy.as_ref().unwrap().proxy_text(),
        "172.16.0.2/255.255.255.255/47/0"
    );
    // MM1..6 + QM1..3, nothing else.
    assert_eq!(net.log.len(), 9);
    assert!(net.a.errors.is_empty() && net.b.errors.is_empty());
    // Optionally seed the fuzz corpora with this exchange.
    if let Ok(dir) = std::env::var("IKE_FUZZ_CORPUS") {
        for t in ["parse", "responder"] {
            std::fs::create_dir_all(format!("{dir}/{t}")).unwrap();
        }
        for (i, (_, t)) in net.log.iter().enumerate() {
            let p = if t.local.port() == 4500 {
                &t.payload[4..]
            } else {
                &t.payload[..]
            };
            std::fs::write(format!("{dir}/parse/mm-qm-{i}"), p).unwrap();
        }
        std::fs::write(format!("{dir}/responder/mm1"), &net.log[0].1.payload).unwrap();
    }
    assert_eq!(net.a.ep.isakmp_sas()[0].state, "QM_IDLE");
    assert_eq!(net.b.ep.isakmp_sas()[0].state, "QM_IDLE");
    let pol = net.b.ep.isakmp_sas()[0].policy.unwrap();
    assert_eq!(
        (pol.encr, pol.hash, pol.group, pol.lifetime),
        (EncrAlg::Des, HashAlg::Md5, GroupId::Modp768, 86400)
    );
    // MM5/MM6 and Quick Mode are encrypted, MM1-4 are not.
    for (i, (_, t)) in net.log.iter().enumerate() {
        assert_eq!(t.payload[19] & 1 == 1, i >= 4, "message {i}");
    }
}

#[test]
fn modern_suite_gcm_transport_pfs() {
    let mut net = Net::new(modern_cfg(), modern_cfg());
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1), "{:?}", net.b.errors);
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(ca[0].transform.encr, EspEncr::AesGcm16(256));
    assert_eq!(ca[0].inbound.encryption.len(), 36); // key + salt
    assert!(ca[0].inbound.integrity.is_empty());
    assert_eq!(ca[0].mode, Mode::Transport);
    assert_eq!(ca[0].lifetime_secs, 3600);
}

#[test]
fn second_transform_set_chosen_when_first_unacceptable() {
    let mut b = modern_cfg();
    b.transform_sets.remove(0); // responder only has esp-aes 256 esp-sha256-hmac
    let mut net = Net::new(modern_cfg(), b);
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(ca[0].transform.encr, EspEncr::AesCbc(256));
    assert_eq!(ca[0].inbound.integrity.len(), 32);
}

#[test]
fn responder_picks_by_its_policy_priority() {
    let p = |prio, encr, hash, group| IkePolicy {
        priority: prio,
        encr,
        hash,
        group,
        lifetime: 86400,
    };
    let mut a = seed_cfg();
    a.policies = vec![
        p(5, EncrAlg::TripleDes, HashAlg::Sha1, GroupId::Modp1024),
        p(10, EncrAlg::Aes128, HashAlg::Sha1, GroupId::Modp1024),
    ];
    let mut b = seed_cfg();
    b.policies = vec![
        p(20, EncrAlg::TripleDes, HashAlg::Sha1, GroupId::Modp1024),
        p(1, EncrAlg::Aes128, HashAlg::Sha1, GroupId::Modp1024),
    ];
    let mut net = Net::new(a, b);
    net.initiate();
    net.pump();
    assert_eq!(installed(&net.b).len(), 1);
    // The responder's priority-1 policy wins over the initiator's order.
    assert_eq!(
        net.b.ep.isakmp_sas()[0].policy.unwrap().encr,
        EncrAlg::Aes128
    );
    assert_eq!(
        net.a.ep.isakmp_sas()[0].policy.unwrap().encr,
        EncrAlg::Aes128
    );
}

#[test]
fn aggressive_mode() {
    let a = aggressive(seed_cfg());
    let mut b = seed_cfg();
    b.answer_aggressive = true;
    let mut net = Net::new(a, b);
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.errors,
        net.b.errors
    );
    assert_pair(&ca[0], &cb[0]);
    assert!(net.b.ep.isakmp_sas()[0].aggressive);
    // AM1..3 + QM1..3
    assert_eq!(net.log.len(), 6);
}

#[test]
fn aggressive_mode_wrong_psk_fails() {
    let mut a = seed_cfg();
    a.psks = psk("wrong");
    let a = aggressive(a);
    let mut net = Net::new(a, aggressive(seed_cfg()));
    net.initiate();
    net.run_for(Duration::from_secs(300));
    assert!(installed(&net.a).is_empty() && installed(&net.b).is_empty());
    assert!(net.a.errors.contains(&HandleError::BadHash));
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::Phase1Failed { .. })),
        1
    );
}

/// Answering Aggressive Mode is off by default (IOS: `crypto isakmp
/// aggressive-mode disable`): every AM1 is dropped and counted, no state
/// is kept, the initiator gives up.
#[test]
fn aggressive_mode_not_answered_unless_configured() {
    let mut net = Net::new(aggressive(seed_cfg()), seed_cfg());
    net.initiate();
    net.run_for(Duration::from_secs(300));
    assert!(net.b.ep.isakmp_sas().is_empty());
    assert!(installed(&net.a).is_empty() && installed(&net.b).is_empty());
    let am1s = net.log.iter().filter(|(from_a, _)| *from_a).count() as u64;
    assert!(am1s >= 2, "AM1 and its retransmissions");
    assert_eq!(net.b.ep.stats().aggressive_refused, am1s);
    assert!(
        net.b
            .errors
            .iter()
            .all(|e| *e == HandleError::AggressiveRefused)
    );
    assert!(net.log.iter().all(|(from_a, _)| *from_a), "B never answers");
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::Phase1Failed { .. })),
        1
    );
}

/// The initiator's third Aggressive Mode message is encrypted (as IOS and
/// libreswan send it), and Quick Mode works on the SA whichever side starts
/// it: both derive the Quick Mode IV from the last AM3 ciphertext block.
/// Run with a suite whose hash is longer than the cipher block.
#[test]
fn aggressive_mode_third_message_encrypted_quick_mode_both_roles() {
    for cfg in [seed_cfg(), modern_cfg()] {
        let mut b = cfg.clone();
        b.answer_aggressive = true;
        let mut net = Net::new(aggressive(cfg), b);
        net.initiate();
        net.pump();
        let am3 = &net.log[2];
        assert!(am3.0, "third message from the initiator");
        assert_eq!(am3.1.payload[18], 4, "Aggressive Mode");
        assert_eq!(am3.1.payload[19] & 1, 1, "AM3 encryption flag");
        assert_eq!(net.log[0].1.payload[19] & 1, 0);
        assert_eq!(net.log[1].1.payload[19] & 1, 0);
        // Quick Mode started by the Aggressive Mode initiator.
        let (ca, cb) = (installed(&net.a), installed(&net.b));
        assert_eq!((ca.len(), cb.len()), (1, 1), "{:?}", net.b.errors);
        assert_pair(&ca[0], &cb[0]);
        // Quick Mode started by the responder, on the same ISAKMP SA.
        let req = Phase2Request {
            local_proxy: None,
            remote_proxy: None,
        };
        let (l, r) = (net.b_remote(), net.a_local());
        let now = net.now;
        net.b.ep.initiate_phase2(now, l, r, req).unwrap();
        net.pump();
        let (ca, cb) = (installed(&net.a), installed(&net.b));
        assert_eq!((ca.len(), cb.len()), (2, 2), "{:?}", net.a.errors);
        assert_pair(&ca[1], &cb[1]);
        assert!(cb[1].initiator && !ca[1].initiator);
        assert_eq!(net.a.ep.isakmp_sas().len(), 1);
        assert!(net.a.errors.is_empty() && net.b.errors.is_empty());
    }
}

/// A Quick Mode the peer never answers (gone, or unable to decrypt it as
/// libreswan could not after a cleartext AM3) is not left hanging on a
/// QM_IDLE SA: after the retransmissions the attempt fails and the ISAKMP
/// SA goes, so the next request starts a fresh phase 1.
#[test]
fn unanswered_quick_mode_tears_down_the_isakmp_sa() {
    let mut b = seed_cfg();
    b.answer_aggressive = true;
    let mut net = Net::new(aggressive(seed_cfg()), b);
    // The peer drops (cannot decrypt) every Quick Mode message from A.
    net.filter = Box::new(|from_a, _, p| !(from_a && p[18] == 32));
    net.initiate();
    net.pump();
    assert_eq!(net.a.ep.isakmp_sas()[0].state, "QM_IDLE");
    net.run_for(Duration::from_secs(200));
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::Phase2Failed { .. })),
        1
    );
    assert_eq!(
        count(
            &net.a,
            |e| matches!(e, Event::Phase1Down { reason, .. } if *reason == Reason::QuickModeUnanswered)
        ),
        1
    );
    assert!(net.a.ep.isakmp_sas().is_empty());
    // The peer was told (its DELETE is an informational, not dropped here).
    assert!(net.b.ep.isakmp_sas().is_empty(), "{:?}", net.b.events);
    // A new request negotiates from scratch and succeeds once QM passes.
    net.filter = Box::new(|_, _, _| true);
    net.initiate();
    net.pump();
    assert_eq!(installed(&net.a).len(), 1);
}

/// Exchange type of the first datagram of a run.
fn first_exchange(net: &Net) -> u8 {
    let p = &net.log[0].1.payload;
    p[18]
}

/// Initiating Aggressive Mode is a per-peer choice (the PSK entry), and
/// answering it does not make a node initiate it.
#[test]
fn initiate_mode_is_per_peer() {
    let mut a = seed_cfg();
    a.psks.push(PskEntry {
        initiate: InitiateMode::Aggressive,
        ..PskEntry::new("172.16.0.2".parse().unwrap(), 32, b"cisco123")
    });
    let mut b = seed_cfg();
    b.answer_aggressive = true;
    // A -> 172.16.0.2: Aggressive Mode.
    let mut net = Net::new(a.clone(), b.clone());
    net.initiate();
    net.pump();
    assert_eq!(first_exchange(&net), 4);
    assert_eq!(installed(&net.a).len(), 1);
    assert!(net.b.ep.isakmp_sas()[0].aggressive);
    // A -> 172.16.0.3 (the wildcard key): Main Mode.
    let mut net = Net::with_addrs(a, b.clone(), "172.16.0.1", "172.16.0.3");
    net.initiate();
    net.pump();
    assert_eq!(first_exchange(&net), 2);
    assert_eq!(installed(&net.a).len(), 1);
    // B answers Aggressive Mode but starts Main Mode itself.
    let mut net = Net::new(b, seed_cfg());
    net.initiate();
    net.pump();
    assert_eq!(first_exchange(&net), 2);
    assert!(!net.a.ep.isakmp_sas()[0].aggressive);
}

#[test]
fn no_proposal_chosen_phase1() {
    let mut b = seed_cfg();
    b.policies = modern_cfg().policies;
    let mut net = Net::new(seed_cfg(), b);
    net.initiate();
    net.pump();
    assert!(net.b.errors.contains(&HandleError::NoProposal));
    assert!(net.b.ep.isakmp_sas().is_empty());
    let failed: Vec<_> = net
        .a
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Phase1Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![Reason::NoProposalChosen]);
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::Phase2Failed { .. })),
        1
    );
    assert!(net.a.ep.isakmp_sas().is_empty());
    let (ha, hb) = (net.a.ep.stats().handshakes, net.b.ep.stats().handshakes);
    assert_eq!(ha.phase1.started, 1);
    assert_eq!(ha.phase1.failed(Failure::NoProposalChosen), 1, "{ha:?}");
    assert_eq!(ha.phase1.completed, 0);
    // The responder refused the first message: started and failed at once.
    assert_eq!(hb.phase1.started, 1);
    assert_eq!(hb.phase1.failed(Failure::NoProposalChosen), 1, "{hb:?}");
    // The Quick Mode waiting on it never started.
    assert_eq!(ha.quick_mode, HandshakeCounts::default());
}

#[test]
fn no_proposal_chosen_phase2() {
    let mut b = seed_cfg();
    b.transform_sets[0].esp.integ = Some(HashAlg::Sha1);
    let mut net = Net::new(seed_cfg(), b);
    net.initiate();
    net.pump();
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })), 1);
    assert!(installed(&net.a).is_empty() && installed(&net.b).is_empty());
    assert!(net.b.errors.contains(&HandleError::NoProposal));
    let reasons: Vec<_> = net
        .a
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Phase2Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![Reason::NoProposalChosen]);
    let h = net.a.ep.stats().handshakes;
    assert_eq!((h.phase1.started, h.phase1.completed), (1, 1));
    assert_eq!(h.quick_mode.started, 1);
    assert_eq!(h.quick_mode.completed, 0);
    assert_eq!(h.quick_mode.failed(Failure::NoProposalChosen), 1, "{h:?}");
}

#[test]
fn wrong_psk_main_mode() {
    let mut a = seed_cfg();
    a.psks = psk("not-cisco123");
    let mut net = Net::new(a, seed_cfg());
    net.initiate();
    net.run_for(Duration::from_secs(600));
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Up { .. })), 0);
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })), 0);
    assert!(
        net.b.errors.contains(&HandleError::BadHash),
        "{:?}",
        net.b.errors
    );
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::Phase1Failed { .. })),
        1
    );
    // The responder's half-open SA is cleaned up too.
    assert!(net.a.ep.isakmp_sas().is_empty());
    assert!(net.b.ep.isakmp_sas().is_empty());
    assert!(net.a.ep.poll_timeout().is_none());
    // The responder saw the bad hash; the initiator only silence.
    let (ha, hb) = (net.a.ep.stats().handshakes, net.b.ep.stats().handshakes);
    assert_eq!(hb.phase1.failed(Failure::AuthFailed), 1, "{hb:?}");
    assert_eq!(ha.phase1.failed(Failure::Timeout), 1, "{ha:?}");
    assert_eq!(ha.phase1.completed + hb.phase1.completed, 0);
}

#[test]
fn retransmission_on_loss() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    // Lose the first MM3 (A's second message) and the first QM2 (B's fourth).
    net.filter = Box::new(|from_a, i, _| !(from_a && i == 1 || !from_a && i == 3));
    net.initiate();
    net.pump();
    assert!(installed(&net.a).is_empty());
    net.run_for(Duration::from_secs(10));
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_pair(&ca[0], &cb[0]);
}

#[test]
fn duplicates_answered_with_last_reply() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    // Capture MM1, deliver it twice.
    let mm1 = net.a.ep.poll_transmit().unwrap();
    let (l, r) = (mm1.remote, mm1.local);
    let now = net.now;
    net.b.ep.handle(now, l, r, &mm1.payload).unwrap();
    let mm2 = net.b.ep.poll_transmit().unwrap();
    net.b.ep.handle(now, l, r, &mm1.payload).unwrap();
    let mm2_again = net.b.ep.poll_transmit().unwrap();
    assert_eq!(mm2, mm2_again);
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    net.a.ep.handle(now, r, l, &mm2.payload).unwrap();
    net.pump();
    assert_eq!(installed(&net.b).len(), 1);
    // A duplicate of the last Main Mode message (MM5) gets MM6 again.
    let mm5 = net.log.iter().filter(|(a, _)| *a).nth(1).unwrap().1.clone();
    let mm6 = net
        .log
        .iter()
        .filter(|(a, _)| !*a)
        .nth(1)
        .unwrap()
        .1
        .clone();
    net.b
        .ep
        .handle(now, mm5.remote, mm5.local, &mm5.payload)
        .unwrap();
    assert_eq!(net.b.ep.poll_transmit().unwrap(), mm6);
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Up { .. })), 1);
}

#[test]
fn responder_lifetime_is_obeyed() {
    let mut a = seed_cfg();
    a.sa_lifetime_secs = 3600;
    a.sa_lifetime_kb = 1_000_000;
    let mut b = seed_cfg();
    b.sa_lifetime_secs = 120;
    let mut net = Net::new(a, b);
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_eq!((ca[0].lifetime_secs, cb[0].lifetime_secs), (120, 120));
    // The initiator's kilobytes were lower: its value stands on both.
    assert_eq!(
        (ca[0].lifetime_kb, cb[0].lifetime_kb),
        (1_000_000, 1_000_000)
    );
}

#[test]
fn dpd_keeps_live_peer_and_detects_dead_peer() {
    let mut cfg = seed_cfg();
    cfg.sa_lifetime_secs = 3600;
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        max_retries: 5,
    });
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.run_for(Duration::from_secs(60));
    assert_eq!(installed(&net.a).len(), 1);
    assert_eq!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })), 0);
    assert!(net.log.len() > 9, "R-U-THERE/ACK exchanged");
    // B vanishes: nothing gets through any more.
    net.filter = Box::new(|_, _, _| false);
    net.run_for(Duration::from_secs(60));
    assert_eq!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })), 1);
    assert_eq!(
        count(&net.a, |e| matches!(e, Event::ChildSaDeleted { .. })),
        1
    );
    assert!(net.a.ep.isakmp_sas().is_empty());
    assert!(net.a.ep.child_spis().is_empty());
}

#[test]
fn nat_t_float_and_udp_encapsulation() {
    let mut net = Net::new(modern_cfg(), modern_cfg()).behind_nat();
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.errors,
        net.b.errors
    );
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(
        ca[0].encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        }
    );
    assert_eq!(
        cb[0].encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 44500
        }
    );
    assert_eq!(cb[0].remote.ip().to_string(), Nat::PUB);
    // NAT-OA told B the initiator's original address.
    assert_eq!(
        cb[0].peer_original.map(|i| i.to_string()),
        Some(Nat::PRIV.to_string())
    );
    // From MM5 on, everything is on 4500 with the non-ESP marker.
    for (i, (_, t)) in net.log.iter().enumerate() {
        if i >= 4 {
            assert_eq!(t.local.port(), 4500, "message {i}");
            assert_eq!(&t.payload[..4], &[0, 0, 0, 0]);
        } else {
            assert_eq!(t.local.port(), 500);
        }
    }
    // Keepalives from the side behind the NAT.
    net.run_for(Duration::from_secs(21));
    assert!(net.log.iter().any(|(a, t)| *a && t.payload == [0xff]));
    assert!(!net.log.iter().any(|(a, t)| !*a && t.payload == [0xff]));
}

/// A driver that demultiplexes UDP 4500 itself hands IKE over without the
/// non-ESP marker (`handle_message`), and the exchange completes exactly as
/// through `handle`.
#[test]
fn nat_t_demultiplexed_by_the_driver() {
    let mut net = Net::new(modern_cfg(), modern_cfg()).behind_nat();
    net.demux_natt = true;
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.errors,
        net.b.errors
    );
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(
        cb[0].encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 44500
        }
    );
    assert!(net.log.iter().skip(4).all(|(_, t)| t.local.port() == 4500));
    net.run_for(Duration::from_secs(21));
    assert!(net.log.iter().any(|(a, t)| *a && t.payload == [0xff]));
    assert!(net.a.errors.is_empty() && net.b.errors.is_empty());
}

#[test]
fn nat_t_force_mode_encapsulates_without_nat() {
    let mut a = modern_cfg();
    a.nat_t = NatTMode::Force;
    let mut net = Net::new(a, modern_cfg());
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert!(matches!(ca[0].encapsulation, Encapsulation::Udp { .. }));
    assert!(matches!(cb[0].encapsulation, Encapsulation::Udp { .. }));
}

#[test]
fn rekey_make_before_break() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    let old = installed(&net.a)[0].inbound_spi;
    net.run_for(Duration::from_secs(100));
    // Rekeyed at 120 - 30 s; old SA still present.
    let rekeyed: Vec<_> = net
        .a
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaRekeyed {
                old_inbound_spi,
                new,
            } => Some((*old_inbound_spi, new.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rekeyed.len(), 1);
    assert_eq!(rekeyed[0].0, old);
    assert!(net.a.ep.child_spis().contains(&old));
    assert_eq!(installed(&net.b).len(), 2);
    net.run_for(Duration::from_secs(25));
    assert!(!net.a.ep.child_spis().contains(&old));
    assert!(net.a.ep.child_spis().contains(&rekeyed[0].1.inbound_spi));
    assert!(
        count(
            &net.a,
            |e| matches!(e, Event::ChildSaDeleted { inbound_spi, .. } if *inbound_spi == old)
        ) == 1
    );
}

#[test]
fn initial_contact_clears_old_sas() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    assert_eq!(installed(&net.b).len(), 1);
    // A reboots: a fresh endpoint with no memory.
    net.a.ep = ep(seed_cfg(), 9, 0x3000_0000);
    net.initiate();
    net.pump();
    assert_eq!(
        count(
            &net.b,
            |e| matches!(e, Event::ChildSaDeleted { reason, .. } if *reason == Reason::InitialContact)
        ),
        1
    );
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Down { .. })), 1);
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    assert_eq!(net.b.ep.child_spis().len(), 1);
}

#[test]
fn delete_is_propagated() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    let spi = installed(&net.a)[0].inbound_spi;
    let now = net.now;
    net.a.ep.delete_child(now, spi);
    net.pump();
    assert_eq!(
        count(
            &net.b,
            |e| matches!(e, Event::ChildSaDeleted { outbound_spi, .. } if *outbound_spi == spi)
        ),
        1
    );
    assert!(net.b.ep.child_spis().is_empty());
    let peer = net.b.addr;
    net.a.ep.delete_peer(now, peer);
    net.pump();
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Down { .. })), 1);
    assert!(net.b.ep.isakmp_sas().is_empty());
}

/// A source at its limit of unverified SAs has its oldest evicted by a
/// newer first message (refusing the newcomer would let anyone spoofing a
/// peer's address lock that peer out).
#[test]
fn half_open_limit_per_source_evicts_oldest() {
    let mut b = seed_cfg();
    b.max_half_open_per_peer = 2;
    let mut net = Net::new(seed_cfg(), b);
    for _ in 0..4 {
        let mut a = ep(seed_cfg(), net.sent[0] as u64 + 100, 1);
        let req = Phase2Request {
            local_proxy: None,
            remote_proxy: None,
        };
        a.initiate_phase2(net.now, net.a_local(), net.b_remote(), req)
            .unwrap();
        let t = a.poll_transmit().unwrap();
        net.sent[0] += 1;
        let _ = net
            .b
            .ep
            .handle(net.now, t.remote, t.local, &t.payload)
            .map_err(|e| net.b.errors.push(e));
    }
    let ids: Vec<_> = net.b.ep.isakmp_sas().iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(net.b.errors.is_empty(), "{:?}", net.b.errors);
    assert_eq!(net.b.ep.stats().half_open_evicted, 2);
    // The newest two survive.
    assert!(ids.iter().all(|&id| id >= 1003), "{ids:?}");
    assert!(net.b.events.is_empty());
}

#[test]
fn keylog_lines() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    let c = &installed(&net.a)[0];
    let [out, inb] = dmvpn_ike::keylog::esp_sa_lines(c);
    assert!(out.starts_with(&format!(
        "\"IPv4\",\"172.16.0.1\",\"172.16.0.2\",\"0x{:08x}\",\"TripleDES-CBC [RFC2451]\",\"0x",
        c.outbound_spi
    )));
    assert!(out.contains("\"HMAC-MD5-96 [RFC2403]\""));
    assert!(inb.contains(&format!("0x{:08x}", c.inbound_spi)));
}

#[test]
fn garbage_never_panics_engine() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    net.initiate();
    net.pump();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    use rand_core::RngCore;
    let msgs: Vec<Transmit> = net.log.iter().map(|(_, t)| t.clone()).collect();
    for _ in 0..2000 {
        let mut m = msgs[(rng.next_u32() as usize) % msgs.len()].clone();
        let i = rng.next_u32() as usize % m.payload.len();
        m.payload[i] ^= 1 << (rng.next_u32() % 8);
        let now = net.now;
        let _ = net.b.ep.handle(now, m.remote, m.local, &m.payload);
        let _ = net.a.ep.handle(now, m.remote, m.local, &m.payload);
    }
}

#[test]
fn ipv6_main_mode() {
    let mut a = seed_cfg();
    a.psks[0].prefix = "::".parse().unwrap();
    let b = a.clone();
    let mut net = Net::with_addrs(a, b, "2001:db8::2", "2001:db8::3");
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (1, 1), "{:?}", net.b.errors);
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(
        ca[0].remote_proxy.as_ref().unwrap().proxy_text(),
        "2001:db8::3/128/47/0"
    );
}

#[test]
fn nat_t_draft_only_peer() {
    let mut b = modern_cfg();
    b.nat_t_rfc = false;
    let mut net = Net::new(modern_cfg(), b).behind_nat();
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.errors,
        net.b.errors
    );
    assert!(matches!(ca[0].encapsulation, Encapsulation::Udp { .. }));
    // MM3 carries draft NAT-D payloads (type 130).
    let mm3 = wire::Message::parse(&net.log[2].1.payload).unwrap();
    let kinds: Vec<u8> = mm3.payloads.iter().map(|p| p.kind()).collect();
    assert_eq!(kinds, vec![4, 10, 130, 130]);
}

#[test]
fn aggressive_mode_behind_nat() {
    let a = aggressive(modern_cfg());
    let mut b = modern_cfg();
    b.answer_aggressive = true;
    let mut net = Net::new(a, b).behind_nat();
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!(
        (ca.len(), cb.len()),
        (1, 1),
        "{:?} {:?}",
        net.a.errors,
        net.b.errors
    );
    assert_pair(&ca[0], &cb[0]);
    assert_eq!(
        cb[0].encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 44500
        }
    );
}

#[test]
fn phase1_expiry_keeps_children_and_rekey_renegotiates() {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 100;
    // Phase 1 is left to expire: no replacement ahead of time.
    cfg.phase1_rekey = false;
    cfg.sa_lifetime_secs = 300;
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    let old = installed(&net.a)[0].inbound_spi;
    net.run_for(Duration::from_secs(150));
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Down { .. })), 1);
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Down { .. })), 1);
    assert!(net.a.ep.isakmp_sas().is_empty());
    assert!(net.a.ep.child_spis().contains(&old));
    // Rekey at 270 s needs a new phase 1 first.
    net.run_for(Duration::from_secs(130));
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })), 2);
    assert_eq!(
        count(
            &net.a,
            |e| matches!(e, Event::ChildSaRekeyed { old_inbound_spi, .. } if *old_inbound_spi == old)
        ),
        1
    );
    // No INITIAL-CONTACT on a renegotiation: B's live SA survived it.
    assert_eq!(
        count(&net.b, |e| matches!(e, Event::ChildSaDeleted { .. })),
        0
    );
    assert_eq!(net.b.ep.child_spis().len(), 2);
}

/// Both ends ask for the same selectors at the same instant (two spokes
/// resolving each other): the crossing Main Modes collapse to one phase 1
/// (the exchange with the lower initiator cookie), exactly one IPsec SA
/// pair results, whichever side asks first, and it carries traffic and
/// rekeys.
#[test]
fn simultaneous_initiation() {
    for b_first in [false, true] {
        let mut net = Net::new(seed_cfg(), seed_cfg());
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(net.b.addr)),
            remote_proxy: Some(gre_proxy(net.a.addr)),
        };
        let (l, r) = (
            SocketAddr::new(net.b.addr, 500),
            SocketAddr::new(net.a.addr, 500),
        );
        if b_first {
            net.b.ep.initiate_phase2(net.now, l, r, req).unwrap();
            net.initiate();
        } else {
            net.initiate();
            net.b.ep.initiate_phase2(net.now, l, r, req).unwrap();
        }
        net.pump();
        let failed =
            |e: &Event| matches!(e, Event::Phase1Failed { .. } | Event::Phase2Failed { .. });
        assert_eq!(count(&net.a, failed), 0);
        assert_eq!(count(&net.b, failed), 0);
        for n in [&net.a, &net.b] {
            let sas = n.ep.isakmp_sas();
            assert_eq!(sas.len(), 1, "b_first {b_first}: {sas:?}");
            assert_eq!(sas[0].state, "QM_IDLE");
            assert_eq!(count(n, |e| matches!(e, Event::Phase1Up { .. })), 1);
        }
        assert_ne!(
            net.a.ep.isakmp_sas()[0].initiator,
            net.b.ep.isakmp_sas()[0].initiator
        );
        let (ia, ib) = (installed(&net.a), installed(&net.b));
        assert_eq!(ia.len(), 1, "b_first {b_first}: {ia:?}");
        assert_eq!(ib.len(), 1, "b_first {b_first}: {ib:?}");
        assert_pair(&ia[0], &ib[0]);
        assert_eq!(net.a.ep.child_spis().len(), 1);
        assert_eq!(net.b.ep.child_spis().len(), 1);
        // Traffic for 300 s: the pair (120 s) is rekeyed twice and a
        // matching pair exists every second, never more than old + new.
        let (pa, pb) = (net.a.addr, net.b.addr);
        for _ in 0..300 {
            net.run_for(Duration::from_secs(1));
            let now = net.now;
            net.a.ep.note_traffic(now, pb);
            net.b.ep.note_traffic(now, pa);
            let (ca, cb) = (net.a.ep.child_sas(), net.b.ep.child_sas());
            assert!(ca.len() <= 2 && cb.len() <= 2, "{ca:?} {cb:?}");
            assert!(
                ca.iter().any(|a| cb
                    .iter()
                    .any(|b| a.inbound_spi == b.outbound_spi && a.outbound_spi == b.inbound_spi)),
                "no IPsec SA pair: {ca:?} {cb:?}"
            );
        }
        let rekeyed = |n: &Node| count(n, |e| matches!(e, Event::ChildSaRekeyed { .. }));
        assert!(rekeyed(&net.a) + rekeyed(&net.b) >= 2);
        assert_eq!(count(&net.a, failed), 0);
        assert_eq!(count(&net.b, failed), 0);
    }
}

#[test]
fn repeated_requests_are_deduplicated_and_listed() {
    let mut net = Net::new(seed_cfg(), seed_cfg());
    for _ in 0..5 {
        net.initiate();
    }
    net.pump();
    assert_eq!(installed(&net.a).len(), 1);
    assert_eq!(installed(&net.b).len(), 1);
    // Asking again once up starts exactly one more Quick Mode.
    net.initiate();
    net.initiate();
    net.pump();
    assert_eq!(installed(&net.a).len(), 2);
    let infos = net.a.ep.child_sas();
    assert_eq!(infos.len(), 2);
    assert!(infos.iter().all(|i| i.rekey_at.unwrap() < i.expires));
    assert!(net.b.ep.child_sas().iter().all(|i| i.rekey_at.is_none()));
}

#[test]
fn dpd_dead_peer_with_two_phase1_sas() {
    let mut cfg = seed_cfg();
    cfg.sa_lifetime_secs = 3600;
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        max_retries: 3,
    });
    // Both sides initiate, A Main Mode and B Aggressive Mode (crossing
    // Main Modes would collapse to one): two phase 1 SAs between the same
    // peers.
    let mut a = cfg.clone();
    a.answer_aggressive = true;
    let mut net = Net::new(a, aggressive(cfg));
    net.initiate();
    let req = Phase2Request {
        local_proxy: None,
        remote_proxy: None,
    };
    let (l, r) = (
        SocketAddr::new(net.b.addr, 500),
        SocketAddr::new(net.a.addr, 500),
    );
    net.b.ep.initiate_phase2(net.now, l, r, req).unwrap();
    net.pump();
    assert_eq!(net.a.ep.isakmp_sas().len(), 2);
    net.filter = Box::new(|_, _, _| false);
    net.run_for(Duration::from_secs(60));
    assert!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })) >= 1);
    assert!(net.a.ep.isakmp_sas().is_empty());
    assert!(net.a.ep.child_spis().is_empty());
}

/// Loss, replays, deletes, rekeys and DPD for hours of virtual time: no
/// panic, and once the network heals the peers converge again.
#[test]
fn chaos_then_convergence() {
    use rand_core::RngCore;
    for seed in 0..4u64 {
        let mut cfg = seed_cfg();
        cfg.sa_lifetime_secs = 200;
        cfg.policies[0].lifetime = 900;
        cfg.dpd = Some(DpdConfig {
            interval: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            max_retries: 3,
        });
        let mut net = Net::new(cfg.clone(), cfg);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let drop_rng = std::rc::Rc::new(std::cell::RefCell::new(ChaCha20Rng::seed_from_u64(
            seed + 100,
        )));
        let d = drop_rng.clone();
        net.filter = Box::new(move |_, _, _| d.borrow_mut().next_u32() % 4 != 0);
        for step in 0..300 {
            match rng.next_u32() % 6 {
                0 => net.initiate(),
                1 => {
                    if let Some(spi) = net.a.ep.child_spis().first().copied() {
                        let now = net.now;
                        net.a.ep.delete_child(now, spi);
                    }
                }
                2 if !net.log.is_empty() => {
                    // Replay an old datagram to its receiver.
                    let (from_a, t) = net.log[rng.next_u32() as usize % net.log.len()].clone();
                    let now = net.now;
                    let _ = if from_a {
                        net.b.ep.handle(now, t.remote, t.local, &t.payload)
                    } else {
                        net.a.ep.handle(now, t.remote, t.local, &t.payload)
                    };
                }
                3 if step % 50 == 0 => {
                    let now = net.now;
                    let peer = net.b.addr;
                    net.a.ep.delete_peer(now, peer);
                }
                _ => {}
            }
            net.run_for(Duration::from_secs(rng.next_u32() as u64 % 40));
        }
        // Heal the network; stale SAs whose deletes were lost expire.
        net.filter = Box::new(|_, _, _| true);
        net.run_for(Duration::from_secs(300));
        net.initiate();
        net.run_for(Duration::from_secs(30));
        let a = net.a.ep.child_sas();
        let b = net.b.ep.child_sas();
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
    }
}

/// Phase 1 600 s and phase 2 120 s, DPD on, traffic noted every second:
/// across three phase 1 lifetimes both engines always hold an established
/// ISAKMP SA and a matching IPsec SA pair, and each replaced ISAKMP SA is
/// deleted.
#[test]
fn phase1_rekey_with_traffic_three_lifetimes() {
    let net = three_lifetimes(false);
    let ups = |n: &Node| count(n, |e| matches!(e, Event::Phase1Up { .. }));
    let replaced = count(
        &net.a,
        |e| matches!(e, Event::Phase1Down { reason, .. } if *reason == Reason::Replaced),
    );
    let deleted = count(
        &net.b,
        |e| matches!(e, Event::Phase1Down { reason, .. } if *reason == Reason::PeerDelete),
    );
    assert_eq!(ups(&net.a), 4, "three rekeys");
    assert_eq!(ups(&net.b), 4);
    assert_eq!(replaced, 3);
    assert_eq!(deleted, 3);
    assert!(net.a.errors.is_empty(), "{:?}", net.a.errors);
    assert!(net.b.errors.is_empty(), "{:?}", net.b.errors);
    let failed = |e: &Event| matches!(e, Event::Phase1Failed { .. } | Event::Phase2Failed { .. });
    assert_eq!(count(&net.a, failed), 0);
    assert_eq!(count(&net.b, failed), 0);
}

/// The same with every fifth datagram lost in each direction: retransmissions
/// carry the rekeys, and still no moment lacks an ISAKMP SA or an IPsec SA pair.
#[test]
fn phase1_rekey_with_traffic_and_loss() {
    let net = three_lifetimes(true);
    assert!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })) >= 4);
}

/// Phase 1 600 s, phase 2 120 s, DPD on, traffic noted every second, for
/// three phase 1 lifetimes; checks the invariants every second.
fn three_lifetimes(lossy: bool) -> Net {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 600;
    cfg.sa_lifetime_secs = 120;
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        max_retries: 3,
    });
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    if lossy {
        net.filter = Box::new(|_, i, _| i % 5 != 4);
    }
    let first = net.a.ep.isakmp_sas()[0].id;
    let (pa, pb) = (net.a.addr, net.b.addr);
    let mut max_sas = 0;
    for _ in 0..3 * 600 + 30 {
        net.run_for(Duration::from_secs(1));
        let now = net.now;
        net.a.ep.note_traffic(now, pb);
        net.b.ep.note_traffic(now, pa);
        for n in [&net.a, &net.b] {
            let sas = n.ep.isakmp_sas();
            assert!(sas.iter().any(|s| s.state == "QM_IDLE"), "no ISAKMP SA");
            max_sas = max_sas.max(sas.len());
        }
        let (ca, cb) = (net.a.ep.child_sas(), net.b.ep.child_sas());
        assert!(
            ca.iter().any(|a| cb
                .iter()
                .any(|b| a.inbound_spi == b.outbound_spi && a.outbound_spi == b.inbound_spi)),
            "no IPsec SA pair: {ca:?} {cb:?}"
        );
    }
    assert!(max_sas <= 2);
    assert_eq!(net.a.ep.isakmp_sas().len(), 1);
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    assert_ne!(net.a.ep.isakmp_sas()[0].id, first);
    // The initiator keeps rekeying: the last SA is again A's.
    assert!(net.a.ep.isakmp_sas()[0].initiator);
    assert_eq!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })), 0);
    assert_eq!(count(&net.b, |e| matches!(e, Event::PeerDead { .. })), 0);
    // Phase 2 rekeyed all along (every 90 s), with no gap checked above.
    assert!(count(&net.a, |e| matches!(e, Event::ChildSaRekeyed { .. })) >= 19);
    net
}

/// No traffic: DPD alone keeps the peer alive across phase 1 rekeys.
#[test]
fn phase1_rekey_keeps_dpd_going() {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 300;
    cfg.sa_lifetime_secs = 3600;
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        max_retries: 3,
    });
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    net.run_for(Duration::from_secs(1000));
    assert!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })) >= 4);
    assert_eq!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })), 0);
    assert_eq!(count(&net.b, |e| matches!(e, Event::PeerDead { .. })), 0);
    assert_eq!(net.a.ep.isakmp_sas().len(), 1);
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    // DPD still detects a dead peer on the newest SA.
    net.filter = Box::new(|_, _, _| false);
    net.run_for(Duration::from_secs(60));
    assert_eq!(count(&net.a, |e| matches!(e, Event::PeerDead { .. })), 1);
    assert!(net.a.ep.isakmp_sas().is_empty());
}

/// Both sides start a replacement at the same instant: they settle on one
/// ISAKMP SA (the same on both sides) and phase 2 keeps working on it.
#[test]
fn simultaneous_phase1_rekey_converges() {
    // Different seeds, different cookies: either side's SA may win.
    let mut winners = [0; 2];
    for seed in 0..12 {
        for stagger in [false, true] {
            let a_won = simultaneous_phase1_rekey(seed, stagger);
            winners[usize::from(a_won)] += 1;
        }
    }
    assert!(winners[0] > 0 && winners[1] > 0, "{winners:?}");
}

/// Returns whether A initiated the surviving SA. With `stagger` B starts
/// after A's MM1 reached it, so A's replacement completes first.
fn simultaneous_phase1_rekey(seed: u64, stagger: bool) -> bool {
    let mut cfg = seed_cfg();
    cfg.sa_lifetime_secs = 3600;
    let mut net = Net::new(cfg.clone(), cfg.clone());
    net.a.ep = ep(cfg.clone(), 100 + 2 * seed, 0x1000_0000);
    net.b.ep = ep(cfg, 101 + 2 * seed, 0x2000_0000);
    net.initiate();
    net.pump();
    let old_child = installed(&net.a)[0].inbound_spi;
    let now = net.now;
    assert!(net.a.ep.rekey_isakmp(now, net.b.addr));
    if stagger {
        let mm1 = net.a.ep.poll_transmit().unwrap();
        net.deliver(true, mm1);
    }
    assert!(net.b.ep.rekey_isakmp(now, net.a.addr));
    // A replacement already under way is not started twice.
    assert!(!net.a.ep.rekey_isakmp(now, net.b.addr));
    net.pump();
    for n in [&net.a, &net.b] {
        let sas = n.ep.isakmp_sas();
        assert_eq!(sas.len(), 1, "{sas:?}");
        assert_eq!(sas[0].state, "QM_IDLE");
        assert_eq!(count(n, |e| matches!(e, Event::Phase1Up { .. })), 3);
        assert_eq!(count(n, |e| matches!(e, Event::Phase1Down { .. })), 2);
    }
    // Exactly one side initiated the survivor.
    assert_ne!(
        net.a.ep.isakmp_sas()[0].initiator,
        net.b.ep.isakmp_sas()[0].initiator
    );
    assert!(net.a.ep.child_spis().contains(&old_child));
    // Quick Modes in both directions run on the surviving SA.
    net.initiate();
    let req = Phase2Request {
        local_proxy: None,
        remote_proxy: None,
    };
    let (l, r) = (
        SocketAddr::new(net.b.addr, 500),
        SocketAddr::new(net.a.addr, 500),
    );
    net.b.ep.initiate_phase2(net.now, l, r, req).unwrap();
    net.pump();
    assert_eq!(installed(&net.a).len(), 3);
    assert_eq!(installed(&net.b).len(), 3);
    assert_eq!(net.a.ep.isakmp_sas().len(), 1);
    // DELETEs crossing for an SA already gone are the only drops.
    for e in net.a.errors.iter().chain(&net.b.errors) {
        assert!(matches!(e, HandleError::UnknownSa(_)), "{e:?}");
    }
    net.a.ep.isakmp_sas()[0].initiator
}

/// Initiator without phase 1 rekey (as IOS): the responder replaces the SA
/// at 95 % of its lifetime and deletes the old one.
#[test]
fn responder_rekeys_phase1_when_initiator_does_not() {
    let mut a = seed_cfg();
    a.policies[0].lifetime = 200;
    a.sa_lifetime_secs = 3600;
    a.phase1_rekey = false;
    let mut b = a.clone();
    b.phase1_rekey = true;
    let mut net = Net::new(a, b);
    net.initiate();
    net.pump();
    net.run_for(Duration::from_secs(189));
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Up { .. })), 1);
    net.run_for(Duration::from_secs(2));
    assert_eq!(count(&net.b, |e| matches!(e, Event::Phase1Up { .. })), 2);
    for n in [&net.a, &net.b] {
        let sas = n.ep.isakmp_sas();
        assert_eq!(sas.len(), 1);
    }
    assert!(net.b.ep.isakmp_sas()[0].initiator);
    assert_eq!(
        count(
            &net.a,
            |e| matches!(e, Event::Phase1Down { reason, .. } if *reason == Reason::PeerDelete)
        ),
        1
    );
    assert_eq!(net.a.ep.child_spis().len(), 1);
    assert_eq!(net.b.ep.child_spis().len(), 1);
}

/// Without IPsec SAs an ISAKMP SA is not renewed: it ends with its
/// lifetime and disappears from `show crypto isakmp sa`.
#[test]
fn idle_phase1_expires_without_replacement() {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 100;
    cfg.sa_lifetime_secs = 3600;
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    let spi = net.a.ep.child_spis()[0];
    net.a.ep.delete_child(net.now, spi);
    net.pump();
    assert!(net.b.ep.child_spis().is_empty());
    net.run_for(Duration::from_secs(99));
    assert_eq!(net.a.ep.isakmp_sas().len(), 1);
    net.run_for(Duration::from_secs(2));
    assert!(net.a.ep.isakmp_sas().is_empty());
    assert!(net.b.ep.isakmp_sas().is_empty());
    assert_eq!(count(&net.a, |e| matches!(e, Event::Phase1Up { .. })), 1);
}

/// A phase 2 rekey running on the old ISAKMP SA when the new one comes up
/// finishes there before the old SA is deleted: no child SA is lost.
#[test]
fn phase1_rekey_waits_for_quick_mode_on_old_sa() {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 3600;
    cfg.sa_lifetime_secs = 3600;
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    // Start a Quick Mode on the old SA and hold its answer back.
    net.initiate();
    let qm1 = net.a.ep.poll_transmit().unwrap();
    let now = net.now;
    assert!(net.a.ep.rekey_isakmp(now, net.b.addr));
    net.pump();
    // The new SA is up; the old one waits for its Quick Mode.
    let sas = net.a.ep.isakmp_sas();
    assert_eq!(sas.len(), 2);
    assert_eq!(sas.iter().filter(|s| s.replaced).count(), 1);
    assert!(sas.iter().max_by_key(|s| s.id).is_some_and(|s| !s.replaced));
    net.deliver(true, qm1);
    net.pump();
    assert_eq!(installed(&net.a).len(), 2);
    assert_eq!(installed(&net.b).len(), 2);
    assert_eq!(net.a.ep.isakmp_sas().len(), 1);
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    assert_eq!(net.a.ep.child_spis().len(), 2);
    assert_eq!(net.b.ep.child_spis().len(), 2);
}

/// Behind NAT the replacement runs on port 4500 from the start (the NAT
/// mapping the keepalives hold open), from either side, and the IPsec SAs
/// negotiated on it are UDP-encapsulated as before.
#[test]
fn phase1_rekey_behind_nat_from_both_sides() {
    let mut cfg = modern_cfg();
    cfg.policies[0].lifetime = 200;
    cfg.sa_lifetime_secs = 3600;
    let mut net = Net::new(cfg.clone(), cfg).behind_nat();
    net.initiate();
    net.pump();
    let before = net.log.len();
    net.run_for(Duration::from_secs(190));
    for n in [&net.a, &net.b] {
        assert_eq!(count(n, |e| matches!(e, Event::Phase1Up { .. })), 2);
        assert_eq!(n.ep.isakmp_sas().len(), 1);
    }
    for (_, t) in &net.log[before..] {
        assert_eq!(t.local.port(), 4500);
    }
    // The hub side (B) replaces the SA towards the NATed peer's mapping.
    let public: IpAddr = Nat::PUB.parse().unwrap();
    let now = net.now;
    assert!(net.b.ep.rekey_isakmp(now, public));
    net.pump();
    for n in [&net.a, &net.b] {
        assert_eq!(count(n, |e| matches!(e, Event::Phase1Up { .. })), 3);
        assert_eq!(n.ep.isakmp_sas().len(), 1);
    }
    assert!(net.b.ep.isakmp_sas()[0].initiator);
    net.initiate();
    net.pump();
    let (ca, cb) = (installed(&net.a), installed(&net.b));
    assert_eq!((ca.len(), cb.len()), (2, 2));
    assert_pair(&ca[1], &cb[1]);
    assert_eq!(
        cb[1].encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 44500
        }
    );
    assert!(net.a.errors.is_empty(), "{:?}", net.a.errors);
    assert!(net.b.errors.is_empty(), "{:?}", net.b.errors);
}

/// With Aggressive Mode initiated with the peer, the replacement is an
/// Aggressive Mode too.
#[test]
fn phase1_rekey_aggressive_mode() {
    let mut cfg = aggressive(seed_cfg());
    cfg.policies[0].lifetime = 200;
    cfg.sa_lifetime_secs = 3600;
    let mut net = Net::new(cfg.clone(), cfg);
    net.initiate();
    net.pump();
    net.run_for(Duration::from_secs(190));
    for n in [&net.a, &net.b] {
        assert_eq!(count(n, |e| matches!(e, Event::Phase1Up { .. })), 2);
        let sas = n.ep.isakmp_sas();
        assert_eq!(sas.len(), 1);
        assert!(sas[0].aggressive);
    }
    assert_eq!(net.a.ep.child_spis().len(), 1);
    assert!(net.a.errors.is_empty() && net.b.errors.is_empty());
}

/// A peer that keeps the replaced ISAKMP SA (its DELETE is lost here, and
/// charon keeps it until its hard lifetime): DPD runs only on the newest SA.
#[test]
fn dpd_follows_the_newest_isakmp_sa() {
    let mut cfg = seed_cfg();
    cfg.policies[0].lifetime = 300;
    cfg.sa_lifetime_secs = 3600;
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(10),
        retry: Duration::from_secs(2),
        max_retries: 3,
    });
    let mut net = Net::new(cfg.clone(), cfg);
    let t0 = net.now;
    net.initiate();
    net.pump();
    let old_ic = net.log[0].1.payload[..8].to_vec();
    let ic = old_ic.clone();
    // Once A starts the replacement, lose its informational messages on
    // the old SA (the DELETE).
    let mut rekeying = false;
    net.filter = Box::new(move |from_a, _, p| {
        rekeying |= from_a && p[18] == 2 && p[8..16] == [0; 8];
        !(rekeying && from_a && p[..8] == ic[..] && p[18] == 5)
    });
    net.run_until(t0 + Duration::from_secs(295));
    let mm1s: Vec<usize> = (net.log.iter().enumerate())
        .filter(|(_, (a, t))| *a && t.payload[18] == 2 && t.payload[8..16] == [0; 8])
        .map(|(i, _)| i)
        .collect();
    assert_eq!(mm1s.len(), 2, "one rekey: {:?}", net.a.events);
    let new_ic = net.log[mm1s[1]].1.payload[..8].to_vec();
    // B holds both; the old one is marked replaced.
    let sas = net.b.ep.isakmp_sas();
    assert_eq!(sas.len(), 2);
    assert_eq!(sas.iter().filter(|s| s.replaced).count(), 1);
    assert_eq!(
        info_from_b(&net, mm1s[1], &old_ic),
        0,
        "DPD on the replaced SA"
    );
    assert!(
        info_from_b(&net, mm1s[1], &new_ic) >= 2,
        "DPD on the new SA"
    );
    assert_eq!(count(&net.b, |e| matches!(e, Event::PeerDead { .. })), 0);
    // At its lifetime the old SA goes, with a DELETE.
    net.run_until(t0 + Duration::from_secs(301));
    assert_eq!(net.b.ep.isakmp_sas().len(), 1);
    assert_eq!(info_from_b(&net, mm1s[1], &old_ic), 1);
}

/// Informational messages B sent on the SA with I-cookie `ic` since log entry `from`.
fn info_from_b(net: &Net, from: usize, ic: &[u8]) -> usize {
    net.log[from..]
        .iter()
        .filter(|(a, t)| !*a && t.payload[18] == 5 && t.payload[..8] == *ic)
        .count()
}
