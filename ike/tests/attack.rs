//! The engine under attack, in memory on virtual time: spoofed first
//! messages (random cookies, forged source addresses, a real peer's among
//! them) against a hub while a real peer negotiates.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

type Ep = Endpoint<ChaCha20Rng>;

const HUB: &str = "172.16.0.2:500";
const SPOKE: &str = "172.16.0.1:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A hub that knows its spoke by address (a /32 key) and answers anyone
/// else with the wildcard key, as a DMVPN hub with spokes on dynamic
/// addresses must.
fn hub_cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes128,
            hash: HashAlg::Sha1,
            group: GroupId::Modp1024,
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
        psks: vec![
            PskEntry::new("0.0.0.0".parse().unwrap(), 0, b"attack-key"),
            PskEntry::new(addr(SPOKE).ip(), 32, b"attack-key"),
        ],
        ..Default::default()
    }
}

fn ep(cfg: EngineConfig, seed: u64, base: u32) -> Ep {
    let mut n = base;
    Endpoint::new(
        cfg,
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

fn request(local: SocketAddr, remote: SocketAddr) -> Phase2Request {
    Phase2Request {
        local_proxy: Some(gre_proxy(local.ip())),
        remote_proxy: Some(gre_proxy(remote.ip())),
    }
}

/// A genuine MM1 to the hub, to replay with other cookies and sources.
fn mm1_template() -> Vec<u8> {
    let mut x = ep(hub_cfg(), 99, 1);
    x.initiate_phase2(
        Instant::from_secs(1),
        addr("10.9.9.9:500"),
        addr(HUB),
        request(addr(SPOKE), addr(HUB)),
    )
    .unwrap();
    x.poll_transmit().unwrap().payload
}

/// The hub and the real spoke on one wire; what the hub sends elsewhere
/// (to forged sources) is counted and dropped.
struct Wire {
    hub: Ep,
    spoke: Ep,
    now: Instant,
    hub_events: Vec<Event>,
    spoke_events: Vec<Event>,
    backscatter: usize,
}

impl Wire {
    fn new(hub: EngineConfig) -> Wire {
        Wire {
            hub: ep(hub, 2, 0x2000_0000),
            spoke: ep(hub_cfg(), 1, 0x1000_0000),
            now: Instant::from_secs(1),
            hub_events: vec![],
            spoke_events: vec![],
            backscatter: 0,
        }
    }

    /// A first message with fresh random cookies from `src`.
    fn spoof(&mut self, tpl: &mut [u8], rng: &mut ChaCha20Rng, src: IpAddr) {
        rng.fill_bytes(&mut tpl[..8]);
        let _ = self
            .hub
            .handle(self.now, addr(HUB), SocketAddr::new(src, 500), tpl);
    }

    /// One hop: run due timers, then deliver what each side had queued
    /// (their answers wait for the next hop). True if anything moved.
    fn hop(&mut self) -> bool {
        for e in [&mut self.hub, &mut self.spoke] {
            if e.poll_timeout().is_some_and(|t| t <= self.now) {
                e.handle_timeout(self.now);
            }
        }
        let up: Vec<Transmit> = std::iter::from_fn(|| self.spoke.poll_transmit()).collect();
        let down: Vec<Transmit> = std::iter::from_fn(|| self.hub.poll_transmit()).collect();
        let mut moved = !up.is_empty();
        for t in up {
            let _ = self.hub.handle(self.now, t.remote, t.local, &t.payload);
        }
        for t in down {
            if t.remote.ip() == addr(SPOKE).ip() {
                moved = true;
                let _ = self.spoke.handle(self.now, t.remote, t.local, &t.payload);
            } else {
                self.backscatter += 1;
            }
        }
        self.hub_events
            .extend(std::iter::from_fn(|| self.hub.poll_event()));
        self.spoke_events
            .extend(std::iter::from_fn(|| self.spoke.poll_event()));
        moved
    }

    /// Hop until quiet.
    fn step(&mut self) {
        while self.hop() {}
    }

    fn spoke_initiates(&mut self) {
        let now = self.now;
        self.spoke
            .initiate_phase2(now, addr(SPOKE), addr(HUB), request(addr(SPOKE), addr(HUB)))
            .unwrap();
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.step();
            let next = [self.hub.poll_timeout(), self.spoke.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => break,
            }
        }
        self.now = end;
        self.step();
    }
}

fn installed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaInstalled(_)))
        .count()
}

/// Eight spoofed MM1s with the spoke's own address (once enough to lock it
/// out for two minutes) do not delay its real negotiation.
#[test]
fn spoofed_first_messages_never_lock_out_the_real_peer() {
    let mut w = Wire::new(hub_cfg());
    let mut tpl = mm1_template();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let per = w.hub.config().max_half_open_per_peer;
    for _ in 0..per {
        w.spoof(&mut tpl, &mut rng, addr(SPOKE).ip());
    }
    assert_eq!(w.hub.half_open_count(), per);
    w.spoke_initiates();
    w.step();
    assert_eq!(installed(&w.spoke_events), 1, "{:?}", w.spoke_events);
    assert_eq!(installed(&w.hub_events), 1);
    // And again with spoofs between the spoke's MM1 and its MM3: they
    // take only unverified slots of their own.
    let mut w = Wire::new(hub_cfg());
    w.spoke_initiates();
    w.step();
    for _ in 0..per - 1 {
        w.spoof(&mut tpl, &mut rng, addr(SPOKE).ip());
    }
    w.step();
    assert_eq!(installed(&w.spoke_events), 1);
}

/// A spoofed MM1 from an address neither hijacks nor holds up our own
/// negotiation with that address for long: our request waits on it only
/// for the grace a real peer needs to answer our MM2, then starts its own
/// Main Mode.
#[test]
fn spoofed_first_message_does_not_hold_up_our_initiation() {
    let mut w = Wire::new(hub_cfg());
    let mut tpl = mm1_template();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    w.spoof(&mut tpl, &mut rng, addr(SPOKE).ip());
    let now = w.now;
    w.hub
        .initiate_phase2(now, addr(HUB), addr(SPOKE), request(addr(HUB), addr(SPOKE)))
        .unwrap();
    w.step();
    assert_eq!(installed(&w.hub_events), 0, "{:?}", w.hub_events);
    w.run_for(Duration::from_millis(2100));
    assert_eq!(installed(&w.hub_events), 1, "{:?}", w.hub_events);
    assert_eq!(installed(&w.spoke_events), 1);
}

/// Both ends ask for an SA at once (a new spoke-to-spoke path: each spoke
/// resolves the other): the second waits on the first one's Main Mode
/// instead of starting its own, so there is one phase 1 and one pair of
/// IPsec SAs.
#[test]
fn both_ends_asking_at_once_share_one_phase1() {
    let mut w = Wire::new(hub_cfg());
    w.spoke_initiates();
    // The spoke's MM1 reaches the hub, which wants an SA with it too.
    assert!(w.hop());
    let now = w.now;
    w.hub
        .initiate_phase2(now, addr(HUB), addr(SPOKE), request(addr(HUB), addr(SPOKE)))
        .unwrap();
    w.step();
    assert_eq!(w.hub.isakmp_sas().len(), 1, "{:?}", w.hub.isakmp_sas());
    assert_eq!(w.spoke.isakmp_sas().len(), 1);
    assert_eq!(installed(&w.hub_events), 1, "{:?}", w.hub_events);
    assert_eq!(installed(&w.spoke_events), 1);
}

/// Unverified SAs time out without an event (a spoofed source is not a
/// failed negotiation: the node must not log it or drop packets queued for
/// that address) and are counted instead. Nothing unauthenticated makes
/// the hub send anything but its MM2 (and its retransmissions).
#[test]
fn unverified_half_open_sas_expire_silently() {
    let mut w = Wire::new(hub_cfg());
    let mut tpl = mm1_template();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for i in 0..20u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        w.spoof(&mut tpl, &mut rng, src);
    }
    w.spoof(&mut tpl, &mut rng, addr(SPOKE).ip());
    w.run_for(Duration::from_secs(300));
    assert_eq!(w.hub.half_open_count(), 0);
    assert!(w.hub.isakmp_sas().is_empty());
    assert_eq!(w.hub.stats().half_open_expired, 21);
    assert!(w.hub_events.is_empty(), "{:?}", w.hub_events);
    // MM2 plus its retransmissions, per forged source, and nothing else.
    let per_sa = 1 + w.hub.config().retransmit_max as usize;
    assert_eq!(w.backscatter, 20 * per_sa);
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// 20,000 MM1s in one virtual second from random sources (one in fifty
/// with the real spoke's address) while the spoke negotiates: the half-open
/// table stays bounded by evicting the oldest unverified SAs, the spoke
/// (a configured /32 peer, served first) completes Main Mode and Quick
/// Mode inside the flood, and the cost per packet does not grow with the
/// table.
#[test]
fn mm1_flood_with_the_real_peer_inside_it() {
    const FLOOD: u32 = 20_000;
    let mut w = Wire::new(hub_cfg());
    let limit = w.hub.config().max_half_open;
    let mut tpl = mm1_template();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut max_half_open = 0;
    let mut flood_cpu = Duration::ZERO;
    let mut started = None;
    let mut done = None;
    for i in 0..FLOOD {
        w.now += Duration::from_micros(50);
        let src = if i % 50 == 7 {
            addr(SPOKE).ip()
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (rng.next_u32() & 0x00ff_ffff)))
        };
        let t0 = thread_cpu();
        w.spoof(&mut tpl, &mut rng, src);
        flood_cpu += thread_cpu() - t0;
        max_half_open = max_half_open.max(w.hub.half_open_count());
        assert!(w.hub.half_open_count() <= limit);
        if i == FLOOD / 4 {
            w.spoke_initiates();
            started = Some(w.now);
        }
        // A hop of the real spoke's datagrams every 5 ms: its round trip
        // is 10 ms, 200 forged packets.
        if i % 100 == 0 {
            w.hop();
            if done.is_none() && installed(&w.spoke_events) == 1 {
                done = Some(w.now);
            }
        }
    }
    let st = w.hub.stats();
    let took = done.map(|d| d - started.unwrap());
    println!(
        "MM1 flood: {FLOOD} packets in 1 s (virtual); half-open max {max_half_open} (limit {limit}), \
         at the end {}; evicted {}, refused {}; hub CPU for the flood {:.1} ms ({:.2} us/packet); \
         MM2s to forged sources {}; real spoke up after {:?} (virtual)",
        w.hub.half_open_count(),
        st.half_open_evicted,
        st.half_open_refused,
        flood_cpu.as_secs_f64() * 1e3,
        flood_cpu.as_secs_f64() * 1e6 / f64::from(FLOOD),
        w.backscatter,
        took,
    );
    assert_eq!(max_half_open, limit);
    assert!(st.half_open_evicted >= u64::from(FLOOD) - limit as u64 - 1);
    assert_eq!(st.half_open_refused, 0);
    let took = took.expect("the real spoke did not complete during the flood");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(installed(&w.hub_events), 1);
    assert!(
        w.hub_events
            .iter()
            .all(|e| !matches!(e, Event::Phase1Failed { .. })),
        "spoofed SAs reported as failures"
    );
}
