//! Two network namespaces joined by a veth pair (NBMA 172.16.0.0/24), each
//! running dmvpnd's event loop (`daemon::event_loop::run_loop`) with a
//! router on a TUN device (tunnel 192.168.1.0/24), most with hand-made
//! SAs; pings cross the tunnel as plain GRE, GRE in ESP transport mode,
//! and GRE in ESP-in-UDP. A replayed ESP packet must be counted as a
//! replay, a wrong key as ICV failures; packets held while IKE sets up
//! an SA are sent once it is installed.
//!
//! Needs root (network namespaces, TUN, raw sockets), `ip` and `ping`;
//! fails, rather than skips, without them.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use dmvpn_agent::daemon::event_loop::{Extras, Links, run_loop};
use dmvpn_agent::runtime::tun::{Tun, TunConfig};
use dmvpn_node::Seed;
use dmvpn_node::control::config_map;
use dmvpn_node::datapath::esp::{AuthAlg, EncAlg};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams, Sadb};
use dmvpn_node::engine::{DataplaneConfig, DataplaneStats, Engine, Peer, PeerMap, Protection};
use dmvpn_node::router::{Options, Router};
use socket2::{Domain, Protocol, Socket, Type};

const NBMA_A: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const NBMA_B: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const TUN_A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const TUN_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const TUN6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const TUN6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const SPI_AB: u32 = 0x0000_a001;
const SPI_BA: u32 = 0x0000_b001;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test needs root (network namespaces, TUN, raw sockets); run it as root"
    );
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} ({e}); install iproute2 and iputils-ping"))
}

fn ip(args: &[&str]) {
    let o = run("ip", args);
    assert!(
        o.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two namespaces with a veth between them; deleted on drop.
struct Pair {
    a: String,
    b: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Pair {
    fn new() -> Pair {
        require_root();
        let tag = format!(
            "dpt{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let p = Pair {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
        };
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        ip(&[
            "link", "add", "nbma0", "netns", &p.a, "type", "veth", "peer", "name", "nbma0",
            "netns", &p.b,
        ]);
        for (ns, addr) in [(&p.a, "172.16.0.1/24"), (&p.b, "172.16.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "nbma0"]);
            ip(&["-n", ns, "link", "set", "nbma0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    fn ping(&self, from_a: bool, dst: Ipv4Addr, count: u32) -> bool {
        let ns = if from_a { &self.a } else { &self.b };
        let c = count.to_string();
        let d = dst.to_string();
        run(
            "ip",
            &[
                "netns", "exec", ns, "ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", &d,
            ],
        )
        .status
        .success()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: valid namespace fd; only this thread changes namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` (sockets keep their namespace).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    thread::spawn(move || {
        enter(&ns).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

thread_local! {
    static CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A router driven by dmvpnd's event loop on its own thread inside a
/// namespace.
struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<JoinHandle<io::Result<(DataplaneStats, f64)>>>,
}

/// The node's configuration, key 1001. With `extra` TOML (IKE, a
/// protection profile): a protected point-to-point GRE tunnel from `nbma`
/// to `peer`. Without: a hub's multipoint tunnel that nobody registers
/// with, so the peers are only those of the hand-made engine (and the
/// multicast list stays empty).
fn config_text(tunnel: Ipv4Addr, nbma: Ipv4Addr, peer: Ipv4Addr, extra: &str) -> String {
    let role = if extra.is_empty() { "hub" } else { "spoke" };
    let tail = if extra.is_empty() {
        "mode = \"gre-multipoint\"\n[tunnel.nhrp]\nnetwork_id = 1\nauthentication = \"netns\"\nallowed_nbma = [\"172.16.0.0/24\"]\n"
            .to_string()
    } else {
        format!("mode = \"gre\"\ndestination = \"{peer}\"\nprotection = \"p\"\n")
    };
    format!(
        "[node]\nname = \"n\"\nrole = \"{role}\"\n{extra}\n[[tunnel]]\nname = \"tun0\"\n\
         address = \"{tunnel}/24\"\nmtu = 1400\nsource = \"{nbma}\"\nkey = 1001\n{tail}"
    )
}

impl Node {
    fn start(ns: &str, tunnel: Ipv4Addr, engine: Engine) -> Node {
        Self::start_opts(ns, tunnel, Some(engine), "", true)
    }

    /// Starts a router around `engine` (hand-made SAs and peer map), or
    /// one built from the configuration alone when `engine` is None, with
    /// TUN offload asked for or not.
    fn start_opts(
        ns: &str,
        tunnel: Ipv4Addr,
        engine: Option<Engine>,
        extra: &str,
        offload: bool,
    ) -> Node {
        let ns = ns.to_string();
        let (nbma, peer) = if tunnel == TUN_A {
            (NBMA_A, NBMA_B)
        } else {
            (NBMA_B, NBMA_A)
        };
        let text = config_text(tunnel, nbma, peer, extra);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = thread::spawn(move || -> io::Result<(DataplaneStats, f64)> {
            let epoch = std::time::Instant::now();
            let cfg = dmvpn_config::Config::from_str(&text, "t.toml")
                .expect("valid config")
                .config;
            let ncfg = config_map::map(&cfg).expect("node config");
            let opts = Options {
                defer_seal: true,
                ..Options::default()
            };
            let seed = Seed([u8::from(tunnel == TUN_A); 32]);
            let now = dmvpn_nhrp::Instant::ZERO;
            let mut router = match engine {
                Some(e) => Router::with_engine(ncfg, e, seed, now, opts),
                None => Router::with_options(ncfg, seed, now, opts),
            };
            let setup = || -> io::Result<(tokio::runtime::Runtime, Links)> {
                enter(&ns)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let links = rt.block_on(async {
                    let tun = Tun::open(&TunConfig {
                        name: "tun0".into(),
                        mtu: 1400,
                        ipv4: Some((tunnel, 24)),
                        offload,
                        queues: 1,
                    })?;
                    if !offload {
                        assert!(!tun.offload(), "offload on although not asked for");
                    }
                    Links::open(tun, nbma, false, 1)
                })?;
                Ok((rt, links))
            };
            let (rt, mut links) = match setup() {
                Ok(v) => v,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(()));
            let cpu0 = thread_cpu();
            let stop = async {
                let _ = stop_rx.await;
            };
            rt.block_on(run_loop(
                &mut router,
                &mut links,
                epoch,
                Extras::default(),
                stop,
            ))
            .map_err(io::Error::other)?;
            CPU.with(|c| c.set(thread_cpu() - cpu0));
            Ok((router.stats(), CPU.with(|c| c.get())))
        });
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("data plane setup failed: {e}"),
            Err(e) => panic!("data plane did not start: {e}"),
        }
        Node {
            stop: Some(stop_tx),
            handle: Some(handle),
        }
    }

    fn stop(self) -> DataplaneStats {
        self.stop_with_cpu().0
    }

    /// Stats and the CPU seconds the data-plane thread used while running.
    fn stop_with_cpu(mut self) -> (DataplaneStats, f64) {
        let _ = self.stop.take().unwrap().send(());
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("data plane thread panicked")
            .expect("data plane failed")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn params(
    spi: u32,
    peer: Ipv4Addr,
    enc_key: &'static [u8],
    auth_key: &'static [u8],
) -> SaParams<'static> {
    SaParams {
        spi,
        peer: IpAddr::V4(peer),
        mode: Mode::Transport,
        enc: EncAlg::AesCbc128,
        enc_key,
        auth: AuthAlg::HmacSha1_96,
        auth_key,
        lifetime_kb: None,
    }
}

const EK_AB: &[u8] = &[0x11; 16];
const AK_AB: &[u8] = &[0x22; 20];
const EK_BA: &[u8] = &[0x33; 16];
const AK_BA: &[u8] = &[0x44; 20];
const AK_WRONG: &[u8] = &[0x99; 20];

/// Engines for A and B; `b_inbound_auth` lets a test give B a wrong key.
fn engines(protection: Protection, b_inbound_auth: &'static [u8]) -> (Engine, Engine) {
    let cfg = |local, tunnel| DataplaneConfig {
        local_nbma: local,
        tunnel_addr: tunnel,
        tunnel_addr_v6: None,
        mtu: 1400,
        gre_key: Some(1001),
        outer_ttl: 255,
        natt_port: matches!(protection, Protection::EspUdp { .. }).then_some(4500),
        require_protection: protection != Protection::None,
    };
    let mut ma = PeerMap::new();
    ma.insert(
        TUN_B,
        32,
        Peer {
            nbma: NBMA_B,
            protection,
        },
    );
    let mut mb = PeerMap::new();
    mb.insert(
        TUN_A,
        32,
        Peer {
            nbma: NBMA_A,
            protection,
        },
    );
    ma.insert_v6(
        TUN6_B,
        128,
        Peer {
            nbma: NBMA_B,
            protection,
        },
    );
    mb.insert_v6(
        TUN6_A,
        128,
        Peer {
            nbma: NBMA_A,
            protection,
        },
    );
    let mut sa = Sadb::new();
    let mut sb = Sadb::new();
    if protection != Protection::None {
        sa.insert_outbound(
            OutboundSa::new(&params(SPI_AB, NBMA_B, EK_AB, AK_AB), &[1; 24]).unwrap(),
        );
        sb.insert_inbound(InboundSa::new(&params(SPI_AB, NBMA_A, EK_AB, b_inbound_auth)).unwrap());
        sb.insert_outbound(
            OutboundSa::new(&params(SPI_BA, NBMA_A, EK_BA, AK_BA), &[2; 24]).unwrap(),
        );
        sa.insert_inbound(InboundSa::new(&params(SPI_BA, NBMA_B, EK_BA, AK_BA)).unwrap());
    }
    (
        Engine::new(cfg(NBMA_A, TUN_A), sa, ma),
        Engine::new(cfg(NBMA_B, TUN_B), sb, mb),
    )
}

fn sa(s: &DataplaneStats, spi: u32) -> &dmvpn_node::datapath::sadb::SaSnapshot {
    s.sas
        .iter()
        .find(|x| x.spi == spi)
        .unwrap_or_else(|| panic!("no SA {spi:#x} in {:?}", s.sas))
}

#[test]
fn plain_gre_ping() {
    let p = Pair::new();
    let (ea, eb) = engines(Protection::None, AK_AB);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    assert!(p.ping(true, TUN_B, 3), "ping over plain GRE failed");
    let (sa_, sb) = (a.stop(), b.stop());
    assert!(
        sa_.counters.gre_tx >= 3 && sb.counters.gre_rx >= 3,
        "{sa_:?} {sb:?}"
    );
    assert!(sb.gre.decapsulated >= 3 && sb.counters.tun_tx >= 3);
    assert!(sa_.gre.encapsulated >= 3, "{:?}", sa_.gre);
    assert_eq!(sb.gre.total_drops(), 0);
}

#[test]
fn esp_transport_ping_and_replay() {
    let p = Pair::new();
    let (ea, eb) = engines(Protection::Esp, AK_AB);
    // A raw ESP socket in B sees a copy of every ESP packet B receives.
    let capture = in_ns(&p.b, || {
        let s =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(50))).expect("raw ESP socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    });
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    assert!(p.ping(true, TUN_B, 3), "ping over GRE/ESP transport failed");

    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    let n = capture.recv(&mut buf).expect("no ESP packet captured");
    // SAFETY: recv initialised the first n bytes.
    let pkt: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    assert_eq!(pkt[9], 50, "captured packet is not ESP");
    assert_eq!(&pkt[20..24], &SPI_AB.to_be_bytes());
    // Send the same packet again from A.
    in_ns(&p.a, move || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(50))).unwrap();
        s.set_header_included_v4(true).unwrap();
        s.send_to(&pkt, &SocketAddrV4::new(NBMA_B, 0).into())
            .expect("replay send");
    });
    // B handles its ESP socket in order: once this ping returns, the replay was seen.
    assert!(p.ping(true, TUN_B, 1));

    let (sa_, sb) = (a.stop(), b.stop());
    let out = sa(&sa_, SPI_AB);
    assert!(
        out.counters.pkts_encaps >= 4 && out.counters.pkts_digest >= 4,
        "{out:?}"
    );
    let inb = sa(&sb, SPI_AB);
    assert!(
        inb.counters.pkts_decaps >= 4 && inb.counters.pkts_verify >= 4,
        "{inb:?}"
    );
    assert_eq!(inb.counters.replay_failed, 1, "{inb:?}");
    assert_eq!(inb.counters.verify_failed, 0);
    assert!(sa(&sa_, SPI_BA).counters.pkts_decaps >= 4);
    assert_eq!(sb.counters.unprotected, 0);
    assert!(sa_.gre.encapsulated >= 4, "{:?}", sa_.gre);
}

#[test]
fn esp_leaves_through_the_packet_socket_once_the_neighbour_is_known() {
    let p = Pair::new();
    let (ea, eb) = engines(Protection::Esp, AK_AB);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    // 10 echoes over about 2 s: the first packet to B (and the first of
    // each later second) goes through the kernel, which resolves and keeps
    // confirming B's MAC; the others leave through the packet socket.
    assert!(p.ping(true, TUN_B, 10), "ping over GRE/ESP failed");
    let (sa_, sb) = (a.stop(), b.stop());
    println!(
        "A: esp_tx {} direct_tx {}",
        sa_.counters.esp_tx, sa_.counters.direct_tx
    );
    assert!(sa_.counters.esp_tx >= 10, "{sa_:?}");
    assert!(sa_.counters.direct_tx >= 5, "{sa_:?}");
    assert!(sa_.counters.direct_tx < sa_.counters.esp_tx, "{sa_:?}");
    assert_eq!(sa_.counters.send_errors, 0, "{sa_:?}");
    assert!(sa(&sb, SPI_AB).counters.pkts_decaps >= 10);
}

#[test]
fn netfilter_output_chain_keeps_esp_on_the_kernel_path() {
    let p = Pair::new();
    // An nftables output chain on A counts (and could filter or rewrite)
    // A's ESP: dmvpnd must not send around it.
    for rule in [
        "add table ip dpt",
        "add chain ip dpt out { type filter hook output priority 0; }",
        "add rule ip dpt out ip protocol esp counter",
    ] {
        let o = run("ip", &["netns", "exec", &p.a, "nft", rule]);
        assert!(
            o.status.success(),
            "nft {rule} (install Debian package nftables): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (ea, eb) = engines(Protection::Esp, AK_AB);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    assert!(p.ping(true, TUN_B, 10), "ping over GRE/ESP failed");
    let (sa_, _) = (a.stop(), b.stop());
    assert!(sa_.counters.esp_tx >= 10, "{sa_:?}");
    assert_eq!(sa_.counters.direct_tx, 0, "{sa_:?}");
    let listed = run(
        "ip",
        &[
            "netns", "exec", &p.a, "nft", "list", "chain", "ip", "dpt", "out",
        ],
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    let counted: u64 = text
        .split("packets ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"));
    assert_eq!(
        counted, sa_.counters.esp_tx,
        "every ESP packet passed the output hook"
    );
}

#[test]
fn esp_in_udp_ping() {
    let p = Pair::new();
    let (ea, eb) = engines(Protection::EspUdp { port: 4500 }, AK_AB);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    assert!(p.ping(true, TUN_B, 3), "ping over GRE/ESP-in-UDP failed");
    let (sa_, sb) = (a.stop(), b.stop());
    assert!(
        sa_.counters.udp_esp_tx >= 3 && sb.counters.udp_esp_rx >= 3,
        "{sa_:?} {sb:?}"
    );
    assert!(sa(&sb, SPI_AB).counters.pkts_decaps >= 3);
    assert_eq!(
        sb.counters.esp_rx, 0,
        "ESP-in-UDP must not arrive on the raw ESP socket"
    );
}

#[test]
fn wrong_key_counts_icv_failures() {
    let p = Pair::new();
    let (ea, eb) = engines(Protection::Esp, AK_WRONG);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    assert!(
        !p.ping(true, TUN_B, 2),
        "ping must fail with mismatched keys"
    );
    let sb = b.stop();
    drop(a.stop());
    let inb = sa(&sb, SPI_AB);
    assert!(inb.counters.verify_failed >= 2, "{inb:?}");
    assert_eq!(inb.counters.pkts_decaps, 0);
    assert_eq!(sb.counters.tun_tx, 0);
}

/// Blasts UDP through the tunnel from A to B and reports what arrived.
/// Asserts delivery only (rates depend on the machine); prints packets/s.
fn blast(protection: Protection, label: &str) {
    const N: usize = 30_000;
    const PAYLOAD: usize = 1372; // inner IPv4 packet of 1400 bytes
    let p = Pair::new();
    let (ea, eb) = engines(protection, AK_AB);
    let a = Node::start(&p.a, TUN_A, ea);
    let b = Node::start(&p.b, TUN_B, eb);
    let rx = in_ns(&p.b, || {
        let s = std::net::UdpSocket::bind((TUN_B, 5001)).expect("bind receiver");
        dmvpn_agent::runtime::sockets::set_buffers(&s);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    });
    let tx = in_ns(&p.a, || {
        std::net::UdpSocket::bind((TUN_A, 0)).expect("bind sender")
    });
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut got = 0usize;
        let mut first = None;
        let mut last = std::time::Instant::now();
        while got < N {
            match rx.recv(&mut buf) {
                Ok(_) => {
                    got += 1;
                    last = std::time::Instant::now();
                    first.get_or_insert(last);
                }
                Err(_) => break,
            }
        }
        (got, first.map(|f| last.duration_since(f)))
    });
    let payload = [0xa5u8; PAYLOAD];
    let start = std::time::Instant::now();
    for _ in 0..N {
        let _ = tx.send_to(&payload, (TUN_B, 5001));
    }
    let sent_in = start.elapsed();
    let (got, span) = receiver.join().unwrap();
    let ((sa_, cpu_a), (sb, cpu_b)) = (a.stop_with_cpu(), b.stop_with_cpu());
    let secs = span.map(|d| d.as_secs_f64()).unwrap_or(0.0).max(1e-6);
    println!(
        "{label}: sent {N} x 1400-byte inner packets in {:.3}s, received {got} ({:.0} pkt/s, {:.2} Gbit/s inner); \
         A tun_rx {} queue_full {}; B tun_tx {}",
        sent_in.as_secs_f64(),
        got as f64 / secs,
        got as f64 * 1400.0 * 8.0 / secs / 1e9,
        sa_.counters.tun_rx,
        sa_.counters.queue_full,
        sb.counters.tun_tx
    );
    // CPU cost per packet of each data-plane thread: the forwarding
    // capacity of one core, independent of how the box was shared.
    let us_a = cpu_a * 1e6 / sa_.counters.tun_rx.max(1) as f64;
    let us_b = cpu_b * 1e6 / sb.counters.tun_tx.max(1) as f64;
    println!(
        "{label}: CPU per packet: sender side {us_a:.2} us ({:.0} pkt/s per core), receiver side {us_b:.2} us ({:.0} pkt/s per core)",
        1e6 / us_a,
        1e6 / us_b
    );
    assert!(got > 0, "{label}: nothing crossed the tunnel");
}

#[test]
fn throughput_plain_gre() {
    blast(Protection::None, "plain GRE");
}

#[test]
fn throughput_esp_aes128_sha1() {
    blast(Protection::Esp, "ESP aes128-sha1");
}

/// Deterministic test data: byte `i` of the stream.
fn stream_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends `len` bytes over TCP from A to B through the tunnel and checks
/// that every byte arrives in order. Returns both sides' stats.
fn tcp_transfer(
    protection: Protection,
    offload: bool,
    len: usize,
) -> (DataplaneStats, DataplaneStats) {
    tcp_transfer_to(protection, offload, len, false)
}

/// [`tcp_transfer`], over the tunnel's IPv6 addresses when `v6`.
fn tcp_transfer_to(
    protection: Protection,
    offload: bool,
    len: usize,
    v6: bool,
) -> (DataplaneStats, DataplaneStats) {
    let p = Pair::new();
    let (ea, eb) = engines(protection, AK_AB);
    let a = Node::start_opts(&p.a, TUN_A, Some(ea), "", offload);
    let b = Node::start_opts(&p.b, TUN_B, Some(eb), "", offload);
    let dst = if v6 {
        for (ns, addr) in [(&p.a, "fd00::1/64"), (&p.b, "fd00::2/64")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "tun0", "nodad"]);
        }
        SocketAddr::from((TUN6_B, 5201))
    } else {
        SocketAddr::from((TUN_B, 5201))
    };
    let listener = in_ns(&p.b, move || {
        std::net::TcpListener::bind(dst).expect("listen")
    });
    let receiver = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 65536];
        let (mut got, mut bad) = (0usize, None);
        loop {
            match io::Read::read(&mut s, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if bad.is_none()
                        && let Some(k) = (0..n).find(|&k| buf[k] != stream_byte(got + k))
                    {
                        bad = Some(got + k);
                    }
                    got += n;
                }
                Err(e) => panic!("receive failed after {got} bytes: {e}"),
            }
        }
        (got, bad)
    });
    let mut tx = in_ns(&p.a, move || {
        let s = std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5))
            .expect("connect through the tunnel");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    });
    let data: Vec<u8> = (0..len).map(stream_byte).collect();
    io::Write::write_all(&mut tx, &data).expect("send");
    tx.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, bad) = receiver.join().expect("receiver panicked");
    drop(tx);
    let (sa_, sb) = (a.stop(), b.stop());
    assert_eq!(bad, None, "stream corrupted at byte {bad:?}");
    assert_eq!(got, len, "bytes received");
    // TCP segments are cut to the MSS, never answered with "too big".
    assert_eq!(sa_.counters.icmp_too_big, 0, "{sa_:?}");
    assert_eq!(sa_.counters.fragments, 0, "{sa_:?}");
    assert_eq!(sb.gre.total_drops(), 0);
    (sa_, sb)
}

#[test]
fn tcp_through_offloaded_tun_is_segmented_and_coalesced() {
    let (sa_, sb) = tcp_transfer(Protection::Esp, true, 16 << 20);
    println!(
        "A: {} packets from {} super-packet reads; B: {} packets written, {} coalesced super-packets",
        sa_.counters.tun_rx, sa_.counters.tun_gso_rx, sb.counters.tun_tx, sb.counters.tun_gro_tx
    );
    // The kernel hands A TSO super-packets, cut into MTU-sized segments
    // before ESP; B writes runs of segments as coalesced super-packets.
    assert!(sa_.counters.tun_gso_rx > 0, "{sa_:?}");
    assert!(sa_.counters.tun_rx > sa_.counters.tun_gso_rx);
    assert!(sb.counters.tun_gro_tx > 0, "{sb:?}");
    assert_eq!(sb.counters.send_errors, 0, "{sb:?}");
    assert!(sa(&sb, SPI_AB).counters.pkts_decaps >= sa_.counters.tun_rx / 2);
}

#[test]
fn tcp_over_ipv6_inner_packets_with_offload() {
    let (sa_, sb) = tcp_transfer_to(Protection::Esp, true, 8 << 20, true);
    assert!(sa_.counters.tun_gso_rx > 0, "{sa_:?}");
    assert!(sb.counters.tun_gro_tx > 0, "{sb:?}");
}

#[test]
fn tcp_without_offload_and_over_plain_gre() {
    let (sa_, sb) = tcp_transfer(Protection::None, false, 4 << 20);
    assert_eq!((sa_.counters.tun_gso_rx, sb.counters.tun_gro_tx), (0, 0));
    let (_, sb) = tcp_transfer(Protection::EspUdp { port: 4500 }, true, 4 << 20);
    assert!(sb.counters.udp_esp_rx > 0);
}

/// IKE (PSK, ESP transport) between the two ends of the tunnel.
const IKE: &str = r#"
[[ike.policy]]
priority = 10
encryption = "aes-128"
hash = "sha256"
group = 14
authentication = "pre-share"
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "netns-psk"
[[ipsec.transform_set]]
name = "t"
transforms = ["esp-aes 128", "esp-sha-hmac"]
mode = "transport"
[[ipsec.profile]]
name = "p"
transform_sets = ["t"]
"#;

#[test]
fn sa_installed_at_run_time_releases_held_packets() {
    let p = Pair::new();
    // A starts alone: its echo requests find no SA and wait while A's IKE
    // retransmits to a B that is not there yet.
    let a = Node::start_opts(&p.a, TUN_A, None, IKE, true);
    let ns_a = p.a.clone();
    let ping = thread::spawn(move || {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns_a,
                "ping",
                "-n",
                "-q",
                "-c",
                "3",
                "-i",
                "0.2",
                "-w",
                "15",
                "192.168.1.2",
            ],
        )
        .status
        .success()
    });
    thread::sleep(Duration::from_millis(1500));
    let b = Node::start_opts(&p.b, TUN_B, None, IKE, true);
    assert!(
        ping.join().unwrap(),
        "ping failed after the SA was installed"
    );
    let (sa_, sb) = (a.stop(), b.stop());
    assert!(sa_.counters.no_sa >= 1, "{sa_:?}");
    assert_eq!(sa_.counters.pending_dropped, 0);
    // Every request, held ones included, reached B.
    let decaps: u64 = sb
        .sas
        .iter()
        .filter(|s| s.direction == dmvpn_node::datapath::sadb::Direction::Inbound)
        .map(|s| s.counters.pkts_decaps)
        .sum();
    assert!(decaps >= 3, "{sb:?}");
}
