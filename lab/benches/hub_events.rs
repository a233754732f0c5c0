//! A hub's per-event cost as the number of registered spokes grows
//! (100, 1,000, 10,000): the hub is the real `dmvpn_node::Router`, and
//! every spoke is a real router (as `dmvpn-lab sim` builds them) that
//! completed IKE Main and Quick Mode (ECP-256, ESP AES-GCM-128 transport)
//! and NHRP registration with it. The spokes are dropped once registered;
//! the hub keeps their ISAKMP SA, IPsec SA pair and NHRP entry.
//!
//! Events, each rotated over all spokes so no one spoke's state stays hot:
//! - `hub/registration_refresh/N`: one spoke's NHRP Registration Request,
//!   ESP-protected as the spoke sends it, through `handle_underlay`:
//!   ESP open, GRE, NHRP cache refresh, Registration Reply sealed. The
//!   request is the one the spoke sent when it registered, sealed afresh
//!   (next sequence number, keys from the hub's key log) before timing.
//! - `hub/ike_timeout/N`: what the driver does after every event when no
//!   timer is due: `handle_timeout` then `poll_timeout`.
//! - `hub/forward_lookup/N`: one inner packet from the hub's LAN to a
//!   spoke's tunnel address through `handle_tun`: overlay look-up, GRE
//!   and ESP encapsulation (sealed). The timed part includes rewriting
//!   the packet's destination and header checksum (a few ns).
//!
//! After criterion's report a summary table gives each event's median time
//! per N (timed here in fixed rounds) and the 10,000/100 ratio.
//! It repeats each event rotating over the first 100 spokes only ("hot"):
//! the same work with the state it touches kept in cache, which tells
//! cache misses from work that grows with the number of spokes.
//! `HUB_BENCH_SPOKES=100,1000` runs other sizes.

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant as WallInstant};

use criterion::{BatchSize, BenchmarkId, Criterion};
use dmvpn_lab::node::{Datagram, LabEvent, LabNode, NodeFactory, Output, Role, Transport};
use dmvpn_lab::packet::{self, Probe};
use dmvpn_lab::real::{RealFactory, RealNode};
use dmvpn_lab::sim::SimConfig;
use dmvpn_lab::topology;
use dmvpn_node::datapath::esp::{AuthAlg, EncAlg};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams};
use dmvpn_node::router::{Datagram as Underlay, Options, Router};
use dmvpn_node::{Instant, Seed};
use dmvpn_wire::checksum::checksum;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Spokes booted together: well under the hub's half-open IKE limit.
const CHUNK: usize = 200;
const SEED: u64 = 1;
/// NHRP over GRE.
const GRE_NHRP: u16 = 0x2001;
const NHRP_REGISTRATION_REQUEST: u8 = 3;

/// What a spoke sends to refresh its registration: its ESP keys towards
/// the hub and the GRE packet (Registration Request) to protect.
struct Refresher {
    nbma: Ipv4Addr,
    sa: OutboundSa,
    gre: Vec<u8>,
}

/// Every spoke's refresher, taken in turn.
struct Refreshers {
    hub_nbma: Ipv4Addr,
    list: Vec<Refresher>,
    next: usize,
}

/// A hub with `n` registered spokes, and what the events need.
struct Hub {
    router: Router,
    now: Instant,
    /// Spokes the events rotate over (the first `rotation`).
    rotation: usize,
    /// The inner packet forwarded, its destination rewritten each time
    /// (one buffer, as a TUN read would fill).
    packet: Vec<u8>,
}

/// Where a datagram goes during set-up.
enum To {
    Hub,
    Spoke(usize),
}

/// Builds the hub and registers `n` spokes with it, `CHUNK` at a time.
fn build_hub(n: usize) -> (Hub, Refreshers) {
    let cfg = SimConfig::new(n, Duration::from_secs(60));
    let mut factory = RealFactory::for_sim(&cfg);
    let hub_spec = topology::hub(0);
    let hubs = vec![hub_spec.clone()];
    let text = factory.config_text(&hub_spec, &hubs);
    let hub_cfg = dmvpn_config::Config::from_str(&text, "hub.toml")
        .expect("hub configuration")
        .config;
    let now = Instant(Duration::from_secs(1));
    // The daemon's options, plus the key log: it gives the spokes' ESP
    // keys, with which fresh refreshes are sealed for the benchmark.
    let opts = Options {
        keylog: true,
        ..Options::default()
    };
    let router =
        Router::from_config(&hub_cfg, Seed::for_lab_node(SEED, 0), now, opts).expect("hub router");
    let mut s = Setup {
        hub: router,
        hub_nbma: hub_spec.nbma,
        now,
        spokes: HashMap::new(),
        registered: vec![false; n],
        esp_to_hub: vec![Vec::new(); n],
        keys: HashMap::new(),
        queue: VecDeque::new(),
    };
    for first in (0..n).step_by(CHUNK) {
        let chunk = first..(first + CHUNK).min(n);
        for k in chunk.clone() {
            let spec = topology::spoke(k);
            let seed = Seed::for_lab_node(SEED, 1 + k as u64);
            let node = factory
                .build(&spec, &hubs, seed, now.0)
                .expect("spoke router");
            s.spokes.insert(k, node);
            s.drain_spoke(k);
        }
        s.run_queue();
        // Whatever waits for a timer (none expected): advance a little.
        let mut rounds = 0;
        while chunk.clone().any(|k| !s.registered[k]) {
            rounds += 1;
            assert!(rounds < 1000, "spokes {chunk:?} did not register");
            s.now += Duration::from_millis(10);
            s.timers();
            s.run_queue();
        }
        // The hub keeps their state; the spokes are not needed any more.
        for k in chunk {
            s.spokes.remove(&k);
        }
    }
    s.drain_hub();
    let (router, now, refreshers) = s.finish();
    let probe = Probe {
        src: topology::lan_host(&hub_spec),
        dst: topology::spoke(0).tunnel,
        flow: 0,
        seq: 0,
        sent_us: 0,
    };
    let hub = Hub {
        router,
        now,
        rotation: n,
        packet: packet::build(&probe, 100),
    };
    let refreshers = Refreshers {
        hub_nbma: hub_spec.nbma,
        list: refreshers,
        next: 0,
    };
    (hub, refreshers)
}

/// The set-up's small network: zero latency, no loss.
struct Setup {
    hub: Router,
    hub_nbma: Ipv4Addr,
    now: Instant,
    spokes: HashMap<usize, RealNode>,
    registered: Vec<bool>,
    /// ESP packets (IPv4 header included) each spoke sent to the hub.
    esp_to_hub: Vec<Vec<Vec<u8>>>,
    /// Spoke NBMA → (hub's inbound SPI, key), from the hub's key log.
    keys: HashMap<Ipv4Addr, (u32, Vec<u8>)>,
    queue: VecDeque<(To, Datagram)>,
}

impl Setup {
    fn run_queue(&mut self) {
        while let Some((to, d)) = self.queue.pop_front() {
            match to {
                To::Hub => {
                    let u = match d.transport {
                        Transport::Ip(47) => Underlay::Gre(&d.payload),
                        Transport::Ip(50) => Underlay::Esp(&d.payload),
                        Transport::Udp { src_port, dst_port } => Underlay::Udp {
                            local: SocketAddrV4::new(d.dst, dst_port),
                            remote: SocketAddrV4::new(d.src, src_port),
                            payload: &d.payload,
                        },
                        Transport::Ip(p) => panic!("spoke sent IP protocol {p}"),
                    };
                    self.hub.handle_underlay(self.now, u);
                    self.drain_hub();
                }
                To::Spoke(k) => {
                    // Datagrams for spokes already done are dropped.
                    if let Some(node) = self.spokes.get_mut(&k) {
                        node.handle_underlay(self.now.0, &d);
                        self.drain_spoke(k);
                    }
                }
            }
        }
    }

    fn timers(&mut self) {
        if self.hub.poll_timeout() <= self.now {
            self.hub.handle_timeout(self.now);
            self.drain_hub();
        }
        let due: Vec<usize> = self
            .spokes
            .iter()
            .filter(|(_, n)| n.poll_timeout().is_some_and(|t| t <= self.now.0))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(node) = self.spokes.get_mut(&k) {
                node.handle_timeout(self.now.0);
            }
            self.drain_spoke(k);
        }
    }

    fn drain_spoke(&mut self, k: usize) {
        let Some(node) = self.spokes.get_mut(&k) else {
            return;
        };
        while let Some(o) = node.poll_output() {
            match o {
                Output::Send(d) => {
                    assert_eq!(d.dst, self.hub_nbma, "spoke {k} sent elsewhere");
                    if d.transport == Transport::Ip(50) {
                        self.esp_to_hub[k].push(d.payload.clone());
                    }
                    self.queue.push_back((To::Hub, d));
                }
                Output::Event(LabEvent::Registered { .. }) => self.registered[k] = true,
                Output::Event(_) | Output::Deliver(_) => {}
            }
        }
    }

    fn drain_hub(&mut self) {
        while let Some(line) = self.hub.poll_keylog() {
            // "IPv4","src","dst","0xSPI","encryption","0xkey","auth","0xkey"
            let f: Vec<&str> = line.trim_matches('"').split("\",\"").collect();
            let src: Ipv4Addr = f[1].parse().expect("key-log source");
            let dst: Ipv4Addr = f[2].parse().expect("key-log destination");
            if dst != self.hub_nbma {
                continue; // the hub's outbound half
            }
            assert!(
                f[4].contains("GCM") && f[6].starts_with("NULL"),
                "lab transform: {line}"
            );
            let spi = u32::from_str_radix(f[3].trim_start_matches("0x"), 16).expect("SPI");
            let key = unhex(f[5].trim_start_matches("0x"));
            self.keys.insert(src, (spi, key));
        }
        while let Some(t) = self.hub.poll_transmit() {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (t.local.ip(), t.remote.ip()) else {
                continue;
            };
            let d = Datagram {
                src,
                dst,
                transport: Transport::Udp {
                    src_port: t.local.port(),
                    dst_port: t.remote.port(),
                },
                payload: t.payload,
            };
            self.send_to_spoke(d);
        }
        let nbma = self.hub_nbma;
        let mut out = Vec::new();
        let b = self.hub.batches();
        for (proto, batch) in [(47u8, &mut *b.gre), (50, &mut *b.esp)] {
            for i in 0..batch.len() {
                let p = batch.get(i).to_vec();
                out.push(Datagram {
                    src: nbma,
                    dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
                    transport: Transport::Ip(proto),
                    payload: p,
                });
            }
            batch.clear();
        }
        assert_eq!(b.udp.len(), 0, "no NAT in the lab");
        b.tun.clear();
        for d in out {
            self.send_to_spoke(d);
        }
    }

    fn send_to_spoke(&mut self, d: Datagram) {
        match topology::owner_of_nbma(d.dst) {
            Some((Role::Spoke, k)) => self.queue.push_back((To::Spoke(k), d)),
            other => panic!("hub sent to {} ({other:?})", d.dst),
        }
    }

    /// The hub, the time the benchmark runs at (no timer due), and each
    /// spoke's refresher: its Registration Request recovered from what it
    /// sent, and an outbound SA past the sequence numbers it used.
    fn finish(mut self) -> (Router, Instant, Vec<Refresher>) {
        // Let the timers that are due run (the stats tick), then stay
        // before the next one.
        while self.hub.poll_timeout() <= self.now {
            self.hub.handle_timeout(self.now);
            self.drain_hub();
            self.queue.clear();
        }
        let mut refreshers = Vec::with_capacity(self.registered.len());
        for (k, sent) in self.esp_to_hub.iter().enumerate() {
            let nbma = topology::spoke(k).nbma;
            let (spi, key) = self.keys.get(&nbma).expect("spoke's SA in the key log");
            let params = SaParams {
                spi: *spi,
                peer: IpAddr::V4(nbma),
                mode: Mode::Transport,
                enc: EncAlg::AesGcm128,
                enc_key: key,
                auth: AuthAlg::None,
                auth_key: &[],
                lifetime_kb: None,
            };
            let inbound = InboundSa::new(&params).expect("inbound SA");
            let mut gre = None;
            let mut last_seq = 0;
            for p in sent {
                let esp = &p[20..];
                last_seq = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
                let mut out = vec![0u8; esp.len()];
                let o = inbound.open(esp, &mut out).expect("spoke's ESP opens");
                assert_eq!(o.next_header, 47);
                let g = &out[..o.len];
                if is_registration_request(g) {
                    gre = Some(g.to_vec());
                }
            }
            let gre = gre.unwrap_or_else(|| panic!("spoke {k}: no Registration Request seen"));
            let sa = OutboundSa::new(&params, &[k as u8; 24]).expect("outbound SA");
            let mut scratch = vec![0u8; sa.sealed_len(gre.len())];
            while sa.seq() < u64::from(last_seq) {
                sa.seal(47, &gre, &mut scratch).expect("seal");
            }
            refreshers.push(Refresher { nbma, sa, gre });
        }
        (self.hub, self.now, refreshers)
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex key"))
        .collect()
}

fn is_registration_request(gre: &[u8]) -> bool {
    if gre.len() < 4 || u16::from_be_bytes([gre[2], gre[3]]) != GRE_NHRP {
        return false;
    }
    let flags = u16::from_be_bytes([gre[0], gre[1]]);
    let hdr = 4 + [0x8000u16, 0x2000, 0x1000]
        .iter()
        .filter(|b| flags & **b != 0)
        .count()
        * 4;
    gre.get(hdr + 17) == Some(&NHRP_REGISTRATION_REQUEST)
}

impl Refreshers {
    /// The next spoke's refresh as it arrives on the underlay: IPv4 + ESP.
    fn next(&mut self) -> Vec<u8> {
        let i = self.next;
        self.next = (i + 1) % self.list.len();
        let r = &mut self.list[i];
        let len = 20 + r.sa.sealed_len(r.gre.len());
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = 255;
        p[9] = 50;
        p[12..16].copy_from_slice(&r.nbma.octets());
        p[16..20].copy_from_slice(&self.hub_nbma.octets());
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        r.sa.seal(47, &r.gre, &mut p[20..]).expect("seal");
        p
    }
}

impl Hub {
    /// Handles one refresh; true if the Registration Reply went out.
    fn refresh(&mut self, pkt: &[u8]) -> bool {
        self.router.handle_underlay(self.now, Underlay::Esp(pkt));
        let b = self.router.batches();
        let replied = b.esp.len() == 1;
        b.esp.clear();
        replied
    }

    fn timeout(&mut self) -> Instant {
        self.router.handle_timeout(self.now);
        self.router.poll_timeout()
    }

    /// Forwards one packet to spoke `k`; true if one ESP packet went out.
    fn forward(&mut self, k: usize) -> bool {
        let dst = topology::spoke(k % self.rotation).tunnel;
        let p = &mut self.packet;
        p[16..20].copy_from_slice(&dst.octets());
        p[10..12].fill(0);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        self.router.handle_tun(self.now, p);
        let b = self.router.batches();
        let sent = b.esp.len() == 1;
        b.esp.clear();
        sent
    }
}

/// Spread the rotation over the whole range of spokes (a prime stride).
const STRIDE: usize = 7919;

fn bench_size(c: &mut Criterion, n: usize, summary: &mut Vec<Row>) {
    let t0 = WallInstant::now();
    let (mut hub, mut refreshers) = build_hub(n);
    let setup = t0.elapsed();
    eprintln!(
        "hub with {n} spokes set up in {:.1} s ({} ISAKMP SAs)",
        setup.as_secs_f64(),
        hub.router.node().show_isakmp_sa(hub.now).len()
    );
    // Sanity: every event does what it says before it is timed.
    let before = hub.router.node().nhrp_stats().expect("NHRP").clone();
    for _ in 0..n {
        let p = refreshers.next();
        assert!(hub.refresh(&p), "registration refresh not answered");
    }
    let after = hub.router.node().nhrp_stats().expect("NHRP").clone();
    assert_eq!(after.rx - before.rx, n as u64, "refreshes received");
    assert_eq!(after.tx - before.tx, n as u64, "replies sent");
    assert_eq!(refusals(&after), refusals(&before), "a refresh was refused");
    assert_eq!(
        hub.router.node().show_nhrp(hub.now, false).len(),
        n,
        "NHRP entries"
    );
    assert!(
        hub.timeout() > hub.now,
        "a timer is due at the benchmark's time"
    );
    for k in 0..n {
        assert!(hub.forward(k), "packet to spoke {k} not sent");
    }

    let id = BenchmarkId::from_parameter(n);
    c.benchmark_group("hub/registration_refresh")
        .bench_function(id.clone(), |b| {
            b.iter_batched(
                || refreshers.next(),
                |p| hub.refresh(&p),
                BatchSize::SmallInput,
            )
        });
    // handle_timeout as the driver calls it after an event (the router
    // recomputes its deadline after every call).
    c.benchmark_group("hub/ike_timeout")
        .bench_function(id.clone(), |b| b.iter(|| black_box(hub.timeout())));
    let mut k = 0;
    c.benchmark_group("hub/forward_lookup")
        .bench_function(id, |b| {
            b.iter(|| {
                k += STRIDE;
                hub.forward(k)
            })
        });

    // The summary's own timing, over every spoke and then over the first
    // `HOT` only: the same work with the touched state kept in cache.
    let all = summary_times(&mut hub, &mut refreshers, &mut k);
    let hot = HOT.min(n);
    hub.rotation = hot;
    refreshers.list.truncate(hot);
    refreshers.next = 0;
    let hot = summary_times(&mut hub, &mut refreshers, &mut k);
    summary.push(Row { n, setup, all, hot });
}

/// Everything the hub's NHRP counts as refused or failed.
fn refusals(s: &dmvpn_nhrp::engine::Stats) -> u64 {
    s.rx_malformed
        + s.rx_auth_failed
        + s.rx_nbma_refused
        + s.reg_refused_unique
        + s.reg_refused_prefix
        + s.reg_refused_too_many_cies
        + s.reg_refused_nbma_limit
        + s.reg_refused_cache_full
        + s.reg_takeovers
        + s.cache_full
        + s.tx_errors
}

/// Spokes the "hot" summary rows rotate over.
const HOT: usize = 100;

/// Median time of each event (ns), over rounds of a fixed batch.
fn summary_times(hub: &mut Hub, refreshers: &mut Refreshers, k: &mut usize) -> [f64; 3] {
    let refresh = median_ns(|rounds| {
        let pkts: Vec<Vec<u8>> = (0..rounds).map(|_| refreshers.next()).collect();
        let t = WallInstant::now();
        for p in &pkts {
            black_box(hub.refresh(p));
        }
        t.elapsed()
    });
    let timeout = median_ns(|rounds| {
        let t = WallInstant::now();
        for _ in 0..rounds {
            black_box(hub.timeout());
        }
        t.elapsed()
    });
    let forward = median_ns(|rounds| {
        let t = WallInstant::now();
        for _ in 0..rounds {
            *k += STRIDE;
            black_box(hub.forward(*k));
        }
        t.elapsed()
    });
    [refresh, timeout, forward]
}

/// Median per-operation time of 31 rounds of 200 operations, after 10
/// rounds of warm-up.
fn median_ns(mut round: impl FnMut(usize) -> Duration) -> f64 {
    const OPS: usize = 200;
    for _ in 0..10 {
        round(OPS);
    }
    let mut v: Vec<f64> = (0..31)
        .map(|_| round(OPS).as_nanos() as f64 / OPS as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    n: usize,
    setup: Duration,
    /// Median ns per event rotating over every spoke, and over `HOT`.
    all: [f64; 3],
    hot: [f64; 3],
}

const EVENTS: [&str; 3] = ["registration_refresh", "ike_timeout", "forward_lookup"];

fn print_summary(rows: &[Row]) {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return;
    };
    println!();
    println!("hub per-event cost, median of 31 rounds of 200 events");
    print!("{:<32}", "event");
    for r in rows {
        print!("{:>11}", format!("N={}", r.n));
    }
    println!("{:>12}", format!("{}/{}", last.n, first.n));
    let table = |label: &str, pick: fn(&Row) -> &[f64; 3]| {
        for (e, name) in EVENTS.iter().enumerate() {
            print!("{:<32}", format!("{name}{label}"));
            for r in rows {
                print!("{:>11}", format!("{:.3} µs", pick(r)[e] / 1000.0));
            }
            println!("{:>12}", format!("{:.2}", pick(last)[e] / pick(first)[e]));
        }
    };
    table("", |r| &r.all);
    // Same hub, same work, a working set that stays in cache: growth left
    // here would be work that grows with the number of spokes.
    table(&format!(" (hot {HOT})"), |r| &r.hot);
    print!("{:<32}", "set-up");
    for r in rows {
        print!("{:>11}", format!("{:.1} s", r.setup.as_secs_f64()));
    }
    println!();
}

fn sizes() -> Vec<usize> {
    match std::env::var("HUB_BENCH_SPOKES") {
        Ok(s) => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .expect("HUB_BENCH_SPOKES: numbers, e.g. 100,1000")
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for n in sizes() {
        bench_size(&mut c, n, &mut rows);
    }
    c.final_summary();
    print_summary(&rows);
}
