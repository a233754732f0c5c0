//! Crossing Main Modes: two endpoints start a phase 1 towards each other
//! at (about) the same time, over a simulated link with per-datagram
//! delay and loss, on virtual time. They must settle on one ISAKMP SA and
//! one IPsec SA pair, whatever the cookies and the interleaving.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::HashAlg;
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::wire::{Header, consts::exchange};
use dmvpn_ike::*;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::SocketAddr;
use std::time::Duration;
use zeroize::Zeroizing;

type Ep = Endpoint<ChaCha20Rng>;

/// Delay of a datagram (side it comes from, its index among that side's
/// datagrams, the time it is sent); `None` loses it.
type Link = Box<dyn FnMut(usize, usize, Instant) -> Option<Duration>>;

fn cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy::ios_default(10)],
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
            key: Zeroizing::new(b"cisco123".to_vec()),
            initiate: InitiateMode::Main,
        }],
        // No child rekey while a test runs.
        sa_lifetime_secs: 3600,
        ..Default::default()
    }
}

fn ep(seed: u64, spi_base: u32) -> Ep {
    let mut n = spi_base;
    Endpoint::new(
        cfg(),
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

struct Sim {
    ep: [Ep; 2],
    addr: [SocketAddr; 2],
    now: Instant,
    /// In flight: (arrival, order sent, receiving side, datagram).
    flight: Vec<(Instant, u64, usize, Transmit)>,
    order: u64,
    sent: [usize; 2],
    link: Link,
    events: [Vec<Event>; 2],
    /// Every datagram sent (lost or not): (side, datagram).
    log: Vec<(usize, Transmit)>,
}

impl Sim {
    fn new(seed: u64, link: Link) -> Sim {
        Sim {
            ep: [
                ep(seed.wrapping_mul(2), 0x1000_0000),
                ep(seed.wrapping_mul(2) | 1, 0x2000_0000),
            ],
            addr: [
                "172.16.0.1:500".parse().unwrap(),
                "172.16.0.2:500".parse().unwrap(),
            ],
            now: Instant::from_secs(1),
            flight: vec![],
            order: 0,
            sent: [0, 0],
            link,
            events: [vec![], vec![]],
            log: vec![],
        }
    }

    /// Side `i` wants the GRE pair with the other side protected.
    fn request(&mut self, i: usize) {
        let (l, r) = (self.addr[i], self.addr[1 - i]);
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(l.ip())),
            remote_proxy: Some(gre_proxy(r.ip())),
        };
        self.ep[i].initiate_phase2(self.now, l, r, req).unwrap();
        self.collect();
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.ep[i].poll_transmit() {
                let n = self.sent[i];
                self.sent[i] += 1;
                self.log.push((i, t.clone()));
                if let Some(d) = (self.link)(i, n, self.now) {
                    self.order += 1;
                    self.flight.push((self.now + d, self.order, 1 - i, t));
                }
            }
            while let Some(e) = self.ep[i].poll_event() {
                self.events[i].push(e);
            }
        }
    }

    /// Deliver datagrams and fire timers until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let arrival = self.flight.iter().map(|f| (f.0, f.1)).min();
            let timer = [self.ep[0].poll_timeout(), self.ep[1].poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = arrival.map(|a| a.0).into_iter().chain(timer).min();
            let Some(next) = next.filter(|t| *t <= until) else {
                break;
            };
            self.now = self.now.max(next);
            let now = self.now;
            if let Some(key) = arrival.filter(|a| a.0 <= now) {
                let at = self.flight.iter().position(|f| (f.0, f.1) == key).unwrap();
                let (_, _, to, t) = self.flight.swap_remove(at);
                // Drops (unknown cookies, retransmissions) are the engine's business.
                let _ = self.ep[to].handle(now, t.remote, t.local, &t.payload);
            } else {
                for e in &mut self.ep {
                    if e.poll_timeout().is_some_and(|t| t <= now) {
                        e.handle_timeout(now);
                    }
                }
            }
        }
        self.now = self.now.max(until);
        self.collect();
    }

    fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Initiator cookies of the Main Modes side `i` started, in order.
    fn mm1_cookies(&self, i: usize) -> Vec<[u8; 8]> {
        let mut v: Vec<[u8; 8]> = vec![];
        for (_, t) in self.log.iter().filter(|(s, _)| *s == i) {
            let Ok((h, _)) = Header::parse(&t.payload) else {
                continue;
            };
            if h.exchange == exchange::MAIN && h.rcookie == [0; 8] && !v.contains(&h.icookie) {
                v.push(h.icookie);
            }
        }
        v
    }

    fn count(&self, i: usize, f: impl Fn(&Event) -> bool) -> usize {
        self.events[i].iter().filter(|e| f(e)).count()
    }

    /// The side whose Main Mode has the lower initiator cookie (the
    /// survivor), when both started one.
    fn lower_cookie_side(&self) -> Option<usize> {
        let (a, b) = (self.mm1_cookies(0), self.mm1_cookies(1));
        match (a.first(), b.first()) {
            (Some(a), Some(b)) => Some(usize::from(b < a)),
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        }
    }
}

fn failed(e: &Event) -> bool {
    matches!(e, Event::Phase1Failed { .. } | Event::Phase2Failed { .. })
}

/// One ISAKMP SA on each side (the same exchange: initiator on one,
/// responder on the other), established, never another one up, one IPsec
/// SA pair installed once, nothing failed. Returns the initiating side.
fn assert_one_phase1(sim: &Sim, what: &str) -> usize {
    let (a, b) = (sim.ep[0].isakmp_sas(), sim.ep[1].isakmp_sas());
    assert_eq!(a.len(), 1, "{what}: A {a:?}");
    assert_eq!(b.len(), 1, "{what}: B {b:?}");
    for s in [&a[0], &b[0]] {
        assert_eq!(s.state, "QM_IDLE", "{what}: {s:?}");
        assert!(!s.replaced, "{what}: {s:?}");
    }
    assert_ne!(a[0].initiator, b[0].initiator, "{what}");
    for i in 0..2 {
        let up = sim.count(i, |e| matches!(e, Event::Phase1Up { .. }));
        assert_eq!(up, 1, "{what}: side {i} {:?}", sim.events[i]);
        let down = sim.count(i, |e| matches!(e, Event::Phase1Down { .. }));
        assert_eq!(down, 0, "{what}: side {i} {:?}", sim.events[i]);
        assert_eq!(
            sim.count(i, failed),
            0,
            "{what}: side {i} {:?}",
            sim.events[i]
        );
        let installed = sim.count(i, |e| matches!(e, Event::ChildSaInstalled(_)));
        assert_eq!(installed, 1, "{what}: side {i} {:?}", sim.events[i]);
    }
    let (ca, cb) = (sim.ep[0].child_sas(), sim.ep[1].child_sas());
    assert_eq!((ca.len(), cb.len()), (1, 1), "{what}: {ca:?} {cb:?}");
    assert_eq!(ca[0].inbound_spi, cb[0].outbound_spi, "{what}");
    assert_eq!(ca[0].outbound_spi, cb[0].inbound_spi, "{what}");
    usize::from(b[0].initiator)
}

fn fixed(ms: u64) -> Link {
    Box::new(move |_, _, _| Some(Duration::from_millis(ms)))
}

/// Both MM1s cross on the wire (B starts 0 or 3 ms after A, 10 ms one
/// way): one phase 1 and one IPsec SA pair, and it is the exchange with
/// the lower initiator cookie, for both cookie orders.
#[test]
fn crossing_main_modes_give_one_phase1_either_cookie_order() {
    let mut survivors = [0; 2];
    for seed in 0..12 {
        for offset in [0, 3] {
            let mut sim = Sim::new(seed, fixed(10));
            sim.request(0);
            sim.run_for(Duration::from_millis(offset));
            sim.request(1);
            // Settled within a few round trips: nobody waited out a timer.
            sim.run_for(Duration::from_millis(500));
            let what = format!("seed {seed} offset {offset}");
            assert_eq!(sim.mm1_cookies(0).len(), 1, "{what}");
            assert_eq!(sim.mm1_cookies(1).len(), 1, "{what}");
            let winner = assert_one_phase1(&sim, &what);
            assert_eq!(Some(winner), sim.lower_cookie_side(), "{what}");
            survivors[winner] += 1;
            // Nothing turns up later either.
            sim.run_for(Duration::from_secs(120));
            assert_one_phase1(&sim, &what);
        }
    }
    assert!(survivors[0] > 0 && survivors[1] > 0, "{survivors:?}");
}

/// The same with one datagram lost (each of the first eight of either
/// side in turn, covering every message of both exchanges): the
/// retransmission recovers and they still settle on one phase 1.
#[test]
fn crossing_main_modes_with_a_lost_datagram() {
    let mut survivors = [0; 2];
    for seed in 0..4 {
        for side in 0..2 {
            for lost in 0..8 {
                let link: Link = Box::new(move |from, n, _| {
                    (from != side || n != lost).then_some(Duration::from_millis(10))
                });
                let mut sim = Sim::new(seed, link);
                sim.request(0);
                sim.request(1);
                sim.run_for(Duration::from_secs(200));
                let what = format!("seed {seed}: datagram {lost} of side {side} lost");
                let winner = assert_one_phase1(&sim, &what);
                survivors[winner] += 1;
                assert_eq!(Some(winner), sim.lower_cookie_side(), "{what}");
            }
        }
    }
    assert!(survivors[0] > 0 && survivors[1] > 0, "{survivors:?}");
}

/// A's MM2 answers are lost for 2.5 s, so A's request no longer waits on
/// B's (still unverified) MM1 and A starts its own Main Mode; B's exchange
/// then proves real: the two still collapse to one.
#[test]
fn crossing_found_after_the_grace() {
    let mut survivors = [0; 2];
    for seed in 0..8 {
        let start = Instant::from_secs(1);
        let link: Link = Box::new(move |from, _, now| {
            (from == 1 || now >= start + Duration::from_millis(2500))
                .then_some(Duration::from_millis(10))
        });
        let mut sim = Sim::new(seed, link);
        sim.request(1);
        sim.run_for(Duration::from_millis(2100));
        sim.request(0);
        sim.run_for(Duration::from_secs(200));
        let what = format!("seed {seed}");
        assert_eq!(sim.mm1_cookies(0).len(), 1, "{what}: A started its own");
        let winner = assert_one_phase1(&sim, &what);
        assert_eq!(Some(winner), sim.lower_cookie_side(), "{what}");
        survivors[winner] += 1;
    }
    assert!(survivors[0] > 0 && survivors[1] > 0, "{survivors:?}");
}

/// B's MM1, made by a third endpoint, with cookie `icookie`.
fn forged_mm1(icookie: [u8; 8]) -> Vec<u8> {
    let mut c = ep(99, 0x3000_0000);
    let (l, r): (SocketAddr, SocketAddr) = (
        "172.16.0.2:500".parse().unwrap(),
        "172.16.0.1:500".parse().unwrap(),
    );
    let req = Phase2Request {
        local_proxy: None,
        remote_proxy: None,
    };
    c.initiate_phase2(Instant::from_secs(1), l, r, req).unwrap();
    let mut m = c.poll_transmit().unwrap().payload;
    m[..8].copy_from_slice(&icookie);
    m
}

/// A spoofed MM1 "from" B reaches A while A's own Main Mode with B runs,
/// with a cookie below A's or above it: A's exchange goes on, undelayed,
/// and a second request waits on it rather than on the spoofed one. The
/// spoofed SA never proves real and expires without an event.
#[test]
fn spoofed_mm1_does_not_abandon_our_initiation() {
    for cookie in [[0, 0, 0, 0, 0, 0, 0, 1], [0xff; 8]] {
        let mut sim = Sim::new(7, fixed(10));
        sim.request(0);
        sim.run_for(Duration::from_millis(5));
        let (a, b) = (sim.addr[0], sim.addr[1]);
        sim.ep[0]
            .handle(sim.now, a, b, &forged_mm1(cookie))
            .unwrap();
        assert_eq!(sim.ep[0].isakmp_sas().len(), 2);
        let req = Phase2Request {
            local_proxy: None,
            remote_proxy: None,
        };
        sim.ep[0].initiate_phase2(sim.now, a, b, req).unwrap();
        sim.run_for(Duration::from_millis(500));
        let what = format!("spoofed cookie {cookie:x?}");
        assert_eq!(
            sim.count(0, |e| matches!(e, Event::ChildSaInstalled(_))),
            2,
            "{what}"
        );
        assert_eq!(
            sim.count(1, |e| matches!(e, Event::ChildSaInstalled(_))),
            2,
            "{what}"
        );
        let sas = sim.ep[0].isakmp_sas();
        assert!(
            sas.iter().any(|s| s.initiator && s.state == "QM_IDLE"),
            "{what}: {sas:?}"
        );
        sim.run_for(Duration::from_secs(300));
        let sas = sim.ep[0].isakmp_sas();
        assert_eq!(sas.len(), 1, "{what}: {sas:?}");
        assert!(sas[0].initiator);
        assert_eq!(sim.ep[0].stats().half_open_expired, 1, "{what}");
        assert_eq!(sim.count(0, failed), 0, "{what}: {:?}", sim.events[0]);
    }
}

/// The exchange that won the crossing fails (its initiator goes quiet
/// right after the decision, then restarts with no state): the loser's
/// request, moved onto it, starts a Main Mode of its own and is served.
#[test]
fn requests_survive_a_failed_winning_exchange() {
    let mut checked = 0;
    for seed in 0..8 {
        // Find who wins with these cookies: a clean run first.
        let mut probe = Sim::new(seed, fixed(10));
        probe.request(0);
        probe.request(1);
        probe.run_for(Duration::from_secs(5));
        let winner = probe.lower_cookie_side().unwrap();
        let loser = 1 - winner;
        // The winner goes silent right after its MM3 (its third
        // datagram: MM1, MM2 to the loser, MM3) and restarts at 100 s.
        let start = Instant::from_secs(1);
        let link: Link = Box::new(move |from, n, now| {
            let silent = from == winner && n >= 3 && now < start + Duration::from_secs(100);
            (!silent).then_some(Duration::from_millis(10))
        });
        let mut sim = Sim::new(seed, link);
        sim.request(0);
        sim.request(1);
        sim.run_for(Duration::from_secs(1));
        // The loser abandoned its own exchange for the winner's.
        let sas = sim.ep[loser].isakmp_sas();
        assert_eq!(sas.len(), 1, "seed {seed}: {sas:?}");
        assert!(!sas[0].initiator);
        sim.run_until(start + Duration::from_secs(100));
        assert_eq!(sim.mm1_cookies(loser).len(), 1, "seed {seed}: no retry yet");
        sim.ep[winner] = ep(1000 + seed, 0x3000_0000);
        sim.run_for(Duration::from_secs(200));
        let what = format!("seed {seed}, winner {winner}");
        // The loser started again on its own and was served.
        assert_eq!(sim.mm1_cookies(loser).len(), 2, "{what}");
        let installed = sim.count(loser, |e| matches!(e, Event::ChildSaInstalled(_)));
        assert_eq!(installed, 1, "{what}: {:?}", sim.events[loser]);
        let (a, b) = (sim.ep[0].isakmp_sas(), sim.ep[1].isakmp_sas());
        assert_eq!((a.len(), b.len()), (1, 1), "{what}: {a:?} {b:?}");
        assert!(sim.ep[loser].isakmp_sas()[0].initiator, "{what}");
        assert_eq!(sim.ep[loser].child_sas().len(), 1, "{what}");
        assert_eq!(sim.ep[winner].child_sas().len(), 1, "{what}");
        checked += 1;
    }
    assert_eq!(checked, 8);
}

/// Side A asks at once, B `b_after` ms later; the n-th datagram of a side
/// is delayed by `delays[n]` (wrapping) and lost if `lost` names it as
/// (side, n).
fn crossing_case(
    seed: u64,
    b_after: u64,
    delays: Vec<(u64, u64)>,
    lost: Vec<(usize, usize)>,
) -> Sim {
    let link: Link = Box::new(move |from, n, _| {
        let l = lost.contains(&(from, n));
        let d = delays[n % delays.len()];
        (!l).then_some(Duration::from_millis(if from == 0 { d.0 } else { d.1 }))
    });
    let mut sim = Sim::new(seed, link);
    sim.request(0);
    sim.run_for(Duration::from_millis(b_after));
    sim.request(1);
    sim.run_for(Duration::from_secs(300));
    sim
}

/// 48 cases unless `PROPTEST_CASES` asks for more.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Two initiations within 300 ms of each other, every datagram delayed
    /// 0-400 ms (so reordered), up to three of the first twelve of either
    /// side lost (fewer than the retransmissions that would give up):
    /// exactly one phase 1 survives, nothing failed, and the requests are
    /// served by one IPsec SA pair.
    #[test]
    fn crossing_initiations_settle_on_one_phase1(
        seed in any::<u64>(),
        b_after in 0u64..300,
        delays in prop::collection::vec((0u64..400, 0u64..400), 64),
        lost in prop::collection::vec((0usize..2, 0usize..12), 0..=3),
    ) {
        let sim = crossing_case(seed, b_after, delays, lost);
        let what = format!("b after {b_after} ms");
        let winner = assert_one_phase1(&sim, &what);
        prop_assert!(sim.mm1_cookies(winner).len() == 1);
    }
}

/// After the collapse both ends start a Quick Mode for the same selectors
/// on the one phase 1. Here B's QM1 crosses the QM2 that finishes A's on
/// the wire, and B dropped its own on seeing A's (A's nonce is the
/// higher): A ignores B's QM1 instead of answering it and waiting for a
/// QM3 that never comes (a spurious phase 2 failure).
#[test]
fn quick_mode_crossing_a_finished_one_is_ignored() {
    let mut delays = vec![
        (85, 83),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 224),
        (194, 0),
        (194, 11),
        (285, 184),
        (178, 334),
    ];
    delays.resize(64, (100, 100));
    let lost = vec![(1, 2), (0, 4), (1, 7), (1, 10)];
    let sim = crossing_case(4510142171372249686, 84, delays, lost);
    assert_one_phase1(&sim, "crossing Quick Modes");
}
