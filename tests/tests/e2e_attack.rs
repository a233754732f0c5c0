//! Attacks on real `dmvpnd` processes in network namespaces: a hub and
//! two spokes with IPsec (the seed topology, modern crypto, DPD), a LAN
//! host behind each, and an attacker on the NBMA segment that crafts
//! packets with a raw socket and spoofs any source address.
//!
//! - cleartext GRE carrying an inner packet, to the hub and to a spoke,
//!   from the attacker's and from another spoke's NBMA address;
//! - forged NHRP Registration and Purge Requests with the right password
//!   (it travels in cleartext), and a flood of 20,000 registrations from
//!   random sources, and 300 carrying many CIEs each;
//! - a flood of 20,000 IKE Main Mode first messages from random sources
//!   (the first eight with a real spoke's address) while that spoke
//!   negotiates again;
//! - a key-log path that is a symbolic link.
//!
//! Each attack must fail: LAN hosts see no injected packet, the hub's
//! NHRP cache is unchanged, the hub starts no IKE towards attackers,
//! spokes stay registered and their traffic flows, memory, CPU and log
//! volume stay bounded. Figures are printed as `FIGURE …` lines.
//!
//! Needs root, iproute2, ping and nftables; fails (never skips) without.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{NhrpEntry, Reply, Request};
use dmvpn_nhrp::wire::flags;
use dmvpn_nhrp::{Body, Cie, ExtBody, Extension, Packet, PacketType};
use dmvpn_tests::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const IKE: &str = r#"
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
"#;

const HUB: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 97);
/// The inner source of injected packets.
const INJECTED: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 77);

fn config(n: u8) -> String {
    SeedNode {
        ike: IKE,
        transforms: r#"["esp-gcm 256"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: true,
        hub_map: false,
    }
    .config(n)
}

/// Hub (1), spokes (2, 3), LAN hosts h1..h3 and the attacker, all up and
/// registered. Returns the namespaces [hub, s2, s3, h1, h2, h3, attacker].
fn topology(lab: &mut Lab) -> [String; 7] {
    let hub = lab.node("hub", 1);
    let s2 = lab.node("s2", 2);
    let s3 = lab.node("s3", 3);
    let atk = lab.node("atk", 97);
    let h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s2, 2);
    let h3 = lab.lan_host(&s3, 3);
    lab.start(&hub, &config(1));
    lab.start(&s2, &config(2));
    lab.start(&s3, &config(3));
    hub_lan_routes(lab, &hub);
    for s in ["172.16.0.2", "172.16.0.3"] {
        lab.wait("spokes registered", Duration::from_secs(20), || {
            lab.peer_up(&hub, s)
        });
    }
    // The spokes reach the hub's LAN through the tunnel (10.1.0.0/24 is
    // in their routes).
    lab.wait("spoke LAN -> hub LAN", Duration::from_secs(10), || {
        lab.ping(&h2, "10.1.0.10", 1) == 1 && lab.ping(&h3, "10.1.0.10", 1) == 1
    });
    [hub, s2, s3, h1, h2, h3, atk]
}

// ----- packet crafting -------------------------------------------------

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let len = (20 + payload.len()) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum = 0u32;
    for i in (0..20).step_by(2) {
        sum += u32::from(u16::from_be_bytes([p[i], p[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// GRE with key 0 (the topology's `tunnel key`).
fn gre(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut g = vec![0x20, 0x00];
    g.extend_from_slice(&proto.to_be_bytes());
    g.extend_from_slice(&[0, 0, 0, 0]);
    g.extend_from_slice(payload);
    g
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(&[0x5a; 32]);
    let mut sum = 0u32;
    for c in icmp.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    ipv4(src, dst, 1, &icmp)
}

fn ip(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn auth() -> Extension {
    // The password is in cleartext in every packet: an attacker has it.
    Extension::new(ExtBody::Authentication {
        auth_type: 1,
        data: b"cisco123".to_vec(),
    })
}

/// An NHRP Registration Request claiming `cies` (protocol prefix, length)
/// at NBMA `nbma`, as the hub would accept it from a spoke.
fn registration(nbma: Ipv4Addr, src_proto: Ipv4Addr, cies: &[(Ipv4Addr, u8)], id: u32) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::RegistrationRequest,
        ip(nbma),
        ip(src_proto),
        ip(Ipv4Addr::new(192, 168, 1, 1)),
        Body::Cies {
            request_id: id,
            cies: cies
                .iter()
                .map(|(proto, len)| Cie {
                    prefix_len: *len,
                    mtu: 1400,
                    holding_time: 7200,
                    nbma: nbma.octets().to_vec(),
                    proto: proto.octets().to_vec(),
                    ..Cie::default()
                })
                .collect(),
        },
    );
    p.flags = flags::CISCO_NAT;
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    p.emit()
}

fn purge(nbma: Ipv4Addr, victims: &[Ipv4Addr], id: u32) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::PurgeRequest,
        ip(nbma),
        ip(Ipv4Addr::new(192, 168, 1, 2)),
        ip(Ipv4Addr::new(192, 168, 1, 1)),
        Body::Cies {
            request_id: id,
            cies: victims
                .iter()
                .map(|v| Cie {
                    prefix_len: 32,
                    proto: v.octets().to_vec(),
                    ..Cie::default()
                })
                .collect(),
        },
    );
    p.extensions = vec![auth(), Extension::new(ExtBody::End)];
    p.emit()
}

/// A random address from 100.64.0.0/10 or the NBMA segment's spare hosts.
fn random_source(rng: &mut ChaCha8Rng) -> Ipv4Addr {
    let r = rng.next_u32();
    if r & 1 == 0 {
        Ipv4Addr::new(172, 16, 0, 100 + (r >> 8) as u8 % 150)
    } else {
        Ipv4Addr::from(0x6440_0000 | (r >> 1) & 0x003f_ffff)
    }
}

/// Sends `pkts` (complete IPv4 packets, spoofed sources allowed) from
/// namespace `ns` through an IPPROTO_RAW socket, at most `rate` per
/// second; returns how many were sent.
fn blast(ns: &str, pkts: Vec<Vec<u8>>, rate: u32) -> std::thread::JoinHandle<usize> {
    let netns = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = fs::File::open(&netns).expect("open netns");
        // SAFETY: setns on a valid fd; only this thread changes namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {netns}");
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw socket");
        let t0 = Instant::now();
        let mut sent = 0;
        for (i, p) in pkts.iter().enumerate() {
            let due = t0 + Duration::from_secs_f64(i as f64 / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            if s.send_to(p, &SocketAddrV4::new(dst, 0).into()).is_ok() {
                sent += 1;
            }
        }
        sent
    })
}

// ----- measuring ------------------------------------------------------

/// A `ping -D -i 0.2` running in the background.
struct Pinger {
    child: Child,
    out: std::path::PathBuf,
}

impl Pinger {
    fn start(lab: &Lab, ns: &str, dst: &str) -> Pinger {
        let out = lab.path(&format!("{ns}-{dst}.ping"));
        let child = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-D", "-i", "0.2", "-W", "1", dst,
            ])
            .stdout(fs::File::create(&out).expect("ping output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("run ping (install iputils-ping)");
        Pinger { child, out }
    }

    /// Stops it; returns (replies, longest gap between consecutive replies
    /// from start to stop, in seconds).
    fn stop(mut self, started: f64) -> (usize, f64) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let stopped = now_epoch();
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let mut times: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect();
        times.sort_by(f64::total_cmp);
        let replies = times.len();
        times.insert(0, started);
        times.push(stopped);
        let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        (replies, gap)
    }
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn rss_kb(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let rest = &s[s.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The hub's NHRP cache as (prefix/len, NBMA, type) lines.
fn cache(lab: &Lab, ns: &str) -> Vec<String> {
    let Reply::Nhrp(v) = lab.ctl(ns, Request::ShowNhrp) else {
        panic!("show nhrp");
    };
    let mut out: Vec<String> = v
        .iter()
        .map(|e: &NhrpEntry| {
            format!(
                "{}/{} -> {:?} {:?}",
                e.prefix, e.prefix_len, e.nbma, e.entry_type
            )
        })
        .collect();
    out.sort();
    out
}

fn isakmp_peers(lab: &Lab, ns: &str) -> Vec<IpAddr> {
    let Reply::IsakmpSa(v) = lab.ctl(ns, Request::ShowCryptoIsakmpSa) else {
        panic!("show crypto isakmp sa");
    };
    let mut peers: Vec<IpAddr> = v.iter().map(|s| s.remote).collect();
    peers.sort();
    peers.dedup();
    peers
}

/// Packets counted by an nftables rule in `ns` that matches inner source
/// [`INJECTED`] on input and forward.
fn watch_injected(ns: &str) {
    let rules = format!(
        "table ip watch {{\n chain watch_in {{ type filter hook input priority 0; ip saddr {INJECTED} counter; }}\n \
         chain watch_fwd {{ type filter hook forward priority 0; ip saddr {INJECTED} counter; }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    fs::write(&path, rules).expect("write nft rules");
    ok(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-f",
        path.to_str().unwrap(),
    ]);
    let _ = fs::remove_file(path);
}

fn injected_seen(ns: &str) -> u64 {
    let o = sh(&[
        "ip", "netns", "exec", ns, "nft", "list", "table", "ip", "watch",
    ]);
    assert!(o.status.success(), "nft list (install nftables)");
    String::from_utf8_lossy(&o.stdout)
        .split("packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The sum of counts in the hub's "not protected by IPsec" log lines.
fn logged_unprotected(lab: &Lab, ns: &str) -> u64 {
    lab.log(ns)
        .lines()
        .filter_map(|l| l.split("RECVD_PKT_NOT_IPSEC: ").nth(1))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

// ----- the attacks ----------------------------------------------------

/// Cleartext GRE and forged NHRP on a protected tunnel: nothing gets in.
#[test]
fn attack_cleartext_gre_and_forged_nhrp_fail() {
    let mut lab = Lab::new("dat");
    let [hub, s2, s3, h1, h2, h3, atk] = topology(&mut lab);
    for h in [&h1, &h2, &h3] {
        watch_injected(h);
    }
    let hub_pid = lab.daemon(&hub).id();
    let cache_before = cache(&lab, &hub);
    assert!(
        cache_before
            .iter()
            .any(|l| l.starts_with("192.168.1.2/32 -> Some(172.16.0.2)")),
        "{cache_before:?}"
    );
    let rss_before = rss_kb(hub_pid);
    let cpu_before = cpu_secs(hub_pid);
    let log_before = lab.log(&hub).len();
    let started = now_epoch();
    let ping2 = Pinger::start(&lab, &h2, "10.1.0.10");
    let ping3 = Pinger::start(&lab, &h3, "10.1.0.10");

    let s2_nbma = Ipv4Addr::new(172, 16, 0, 2);
    let s3_nbma = Ipv4Addr::new(172, 16, 0, 3);
    let mut pkts = Vec::new();
    // 1. Inner packets in cleartext GRE, from the attacker and spoofed
    // from a spoke, to the hub (for its LAN) and to a spoke (for its LAN).
    for seq in 0..50u16 {
        for (src, dst, lan) in [
            (ATTACKER, HUB, Ipv4Addr::new(10, 1, 0, 10)),
            (s3_nbma, HUB, Ipv4Addr::new(10, 1, 0, 10)),
            (ATTACKER, s2_nbma, Ipv4Addr::new(10, 2, 0, 10)),
            (HUB, s2_nbma, Ipv4Addr::new(10, 2, 0, 10)),
        ] {
            pkts.push(ipv4(
                src,
                dst,
                47,
                &gre(0x0800, &echo_request(INJECTED, lan, seq)),
            ));
        }
    }
    // 2. Forged NHRP: take over both spokes' addresses, claim spoke 3's
    // LAN, purge both registrations; from the attacker and spoofed.
    let mut id = 1000;
    for src in [ATTACKER, Ipv4Addr::new(172, 16, 0, 96), s3_nbma] {
        for (victim, cies) in [
            (
                Ipv4Addr::new(192, 168, 1, 2),
                vec![(Ipv4Addr::new(192, 168, 1, 2), 32)],
            ),
            (
                Ipv4Addr::new(192, 168, 1, 3),
                vec![(Ipv4Addr::new(192, 168, 1, 3), 32)],
            ),
            (
                Ipv4Addr::new(192, 168, 1, 99),
                vec![(Ipv4Addr::new(10, 3, 0, 0), 25)],
            ),
        ] {
            id += 1;
            let nhrp = registration(src, victim, &cies, id);
            pkts.push(ipv4(src, HUB, 47, &gre(0x2001, &nhrp)));
        }
        id += 1;
        let p = purge(
            src,
            &[Ipv4Addr::new(192, 168, 1, 2), Ipv4Addr::new(192, 168, 1, 3)],
            id,
        );
        pkts.push(ipv4(src, HUB, 47, &gre(0x2001, &p)));
    }
    let targeted = pkts.len();
    // 3. A registration flood from random sources, then registrations
    // carrying 60 CIEs each.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for i in 0..20_000u32 {
        let src = random_source(&mut rng);
        let proto = Ipv4Addr::new(192, 168, 1, 100 + (i % 150) as u8);
        let nhrp = registration(src, proto, &[(proto, 32)], 10_000 + i);
        pkts.push(ipv4(src, HUB, 47, &gre(0x2001, &nhrp)));
    }
    for i in 0..300u32 {
        let src = random_source(&mut rng);
        let cies: Vec<(Ipv4Addr, u8)> = (0..60u32)
            .map(|k| (Ipv4Addr::from(0x0a40_0000 + i * 64 + k), 32))
            .collect();
        let nhrp = registration(src, Ipv4Addr::new(192, 168, 1, 250), &cies, 40_000 + i);
        pkts.push(ipv4(src, HUB, 47, &gre(0x2001, &nhrp)));
    }
    let total = pkts.len();
    let t_attack = Instant::now();
    let sent = blast(&atk, pkts, 5_000).join().expect("attacker");
    let attack_secs = t_attack.elapsed().as_secs_f64();
    assert_eq!(sent, total, "every crafted packet left the attacker");
    // Every packet to the hub is counted as dropped (summarised in its log
    // within the rate-limit interval).
    let to_hub = total - 100;
    lab.wait(
        "the hub logs every dropped packet",
        Duration::from_secs(25),
        || logged_unprotected(&lab, &hub) >= to_hub as u64,
    );
    std::thread::sleep(Duration::from_secs(2));
    let (r2, gap2) = ping2.stop(started);
    let (r3, gap3) = ping3.stop(started);

    let seen: Vec<u64> = [&h1, &h2, &h3].iter().map(|h| injected_seen(h)).collect();
    let cache_after = cache(&lab, &hub);
    let peers = isakmp_peers(&lab, &hub);
    let rss_after = rss_kb(hub_pid);
    let cpu = cpu_secs(hub_pid) - cpu_before;
    let log_growth = lab.log(&hub).len() - log_before;
    eprintln!(
        "FIGURE cleartext attack: {sent} packets in {attack_secs:.1} s ({targeted} targeted, {} registration flood); \
         hub logged {} dropped as not IPsec; injected packets seen by LAN hosts {seen:?}; \
         forwarding gap s2 {gap2:.1} s ({r2} replies), s3 {gap3:.1} s ({r3} replies); \
         hub RSS {rss_before} -> {rss_after} kB, CPU {cpu:.2} s, log +{log_growth} bytes; ISAKMP peers {peers:?}",
        total - targeted,
        logged_unprotected(&lab, &hub)
    );
    assert_eq!(seen, vec![0, 0, 0], "an injected packet reached a LAN host");
    assert_eq!(cache_after, cache_before, "the hub's NHRP cache changed");
    assert_eq!(
        peers,
        vec![ip(Ipv4Addr::new(172, 16, 0, 2)), ip(s3_nbma)],
        "the hub negotiated IKE with someone else than its spokes"
    );
    assert!(
        gap2 < 1.5 && gap3 < 1.5,
        "spoke traffic interrupted: {gap2:.1} s / {gap3:.1} s"
    );
    assert!(
        rss_after < rss_before + 4096,
        "hub RSS grew by {} kB",
        rss_after - rss_before
    );
    assert!(log_growth < 16 * 1024, "hub log grew by {log_growth} bytes");
    for s in ["172.16.0.2", "172.16.0.3"] {
        assert!(lab.peer_up(&hub, s), "{s} still registered");
    }
    assert!(lab.peer_up(&s2, "172.16.0.1") && lab.peer_up(&s3, "172.16.0.1"));
}

/// The first message of a Main Mode towards the hub, as a spoke of the
/// topology would send it (the cookie is rewritten per packet).
fn main_mode_first_message() -> Vec<u8> {
    let text = config(2).replace("172.16.0.2", "172.16.0.250");
    let cfg = dmvpn_config::Config::from_str(&text, "mm1.toml")
        .unwrap()
        .config;
    let ncfg = dmvpn_node::control::config_map::map(&cfg).unwrap();
    let mut e = dmvpn_ike::Endpoint::new(
        ncfg.ike.clone(),
        rand_chacha::ChaCha20Rng::from_seed([9; 32]),
        Box::new(|| 0x1000u32),
    );
    let local = SocketAddr::new(ip(Ipv4Addr::new(172, 16, 0, 250)), 500);
    let remote = SocketAddr::new(ip(HUB), 500);
    let req = dmvpn_ike::Phase2Request {
        local_proxy: Some(dmvpn_ike::policy::gre_proxy(local.ip())),
        remote_proxy: Some(dmvpn_ike::policy::gre_proxy(remote.ip())),
    };
    e.initiate_phase2(dmvpn_ike::Instant::from_secs(1), local, remote, req)
        .unwrap();
    e.poll_transmit().expect("MM1").payload
}

/// The spoke's replies received from its NHS.
fn replies_from_hub(lab: &Lab, ns: &str) -> u64 {
    let Reply::NhrpNhs(v) = lab.ctl(ns, Request::ShowNhrpNhs) else {
        panic!("show ip nhrp nhs");
    };
    v.iter().map(|e| e.replies_received).sum()
}

/// A Main Mode flood does not keep a real spoke out.
#[test]
fn attack_main_mode_flood_does_not_lock_out_a_spoke() {
    let mut lab = Lab::new("dam");
    let [hub, _s2, s3, _h1, h2, _h3, atk] = topology(&mut lab);
    let hub_pid = lab.daemon(&hub).id();
    let mm1 = main_mode_first_message();
    let s3_nbma = Ipv4Addr::new(172, 16, 0, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let pkts: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| {
            let mut m = mm1.clone();
            rng.fill_bytes(&mut m[0..8]);
            // The first eight from the real spoke's address.
            let src = if i < 8 {
                s3_nbma
            } else {
                random_source(&mut rng)
            };
            ipv4(src, HUB, 17, &udp(500, 500, &m))
        })
        .collect();
    let rss_before = rss_kb(hub_pid);
    let cpu_before = cpu_secs(hub_pid);
    let log_before = lab.log(&hub).len();
    let started = now_epoch();
    let ping = Pinger::start(&lab, &h2, "10.1.0.10");
    // 20,000 packets over five seconds.
    let flood = blast(&atk, pkts, 4_000);
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile spoke 3 drops its SAs and negotiates again.
    let replies = replies_from_hub(&lab, &s3);
    let t0 = Instant::now();
    lab.ctl(&s3, Request::ClearCryptoSa { peer: None });
    let back = lab.wait(
        "spoke 3 negotiated and registered again during the flood",
        Duration::from_secs(30),
        || lab.ipsec_with(&s3, "172.16.0.1").is_some() && replies_from_hub(&lab, &s3) > replies,
    );
    let sent = flood.join().expect("attacker");
    let flood_secs = t0.elapsed().as_secs_f64() + 0.5;
    let (r, gap) = ping.stop(started);
    let rss_after = rss_kb(hub_pid);
    let cpu = cpu_secs(hub_pid) - cpu_before;
    let log_growth = lab.log(&hub).len() - log_before;
    eprintln!(
        "FIGURE Main Mode flood: {sent} MM1s over {flood_secs:.1} s (8 spoofed from the spoke); \
         spoke negotiated and registered again after {back:?}; hub RSS {rss_before} -> {rss_after} kB, \
         CPU {cpu:.2} s; forwarding gap {gap:.1} s ({r} replies); log +{log_growth} bytes"
    );
    assert_eq!(sent, 20_000);
    assert!(back < Duration::from_secs(5), "spoke 3 needed {back:?}");
    assert!(gap < 1.5, "spoke 2's traffic interrupted for {gap:.1} s");
    assert!(log_growth < 16 * 1024, "hub log grew by {log_growth} bytes");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "hub RSS grew by {} kB",
        rss_after - rss_before
    );
    // The state the flood left goes: an unverified negotiation is given up
    // once its retransmissions (2 + 4 + 8 + 16 + 32 s, then 64 s) are
    // spent, 126 s after its first message; the flood lasted 5 s.
    std::thread::sleep(Duration::from_secs(150).saturating_sub(t0.elapsed()));
    let rss_later = rss_kb(hub_pid);
    eprintln!(
        "FIGURE Main Mode flood: hub RSS {rss_before} kB before, {rss_after} kB after, {rss_later} kB once the half-open state expired"
    );
    assert!(
        rss_later <= rss_before + 2048,
        "hub RSS {rss_later} kB, {} kB above the level before the flood",
        rss_later.saturating_sub(rss_before)
    );
}

/// 2,000 clients that connect to dmvpnd's control socket and wait, and 32
/// that send requests and never read the answers: `dmvpnctl` still gets
/// its answers at once.
#[test]
fn attack_control_socket_jam_does_not_lock_out_the_operator() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let lim = libc::rlimit {
        rlim_cur: 16_384,
        rlim_max: 16_384,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut lab = Lab::new("das");
    let ns = lab.node("n", 1);
    lab.start(&ns, &config(1));
    let sock = lab.socket(&ns);
    let idle: Vec<UnixStream> = (0..2000)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    let mut deaf = Vec::new();
    for _ in 0..32 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_nonblocking(true).unwrap();
        let line = b"{\"cmd\":\"show_dmvpn\"}\n".repeat(64);
        while s.write(&line).is_ok() {}
        deaf.push(s);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let Reply::Dmvpn(_) = lab.ctl(&ns, Request::ShowDmvpn) else {
            panic!("show dmvpn");
        };
        worst = worst.max(t0.elapsed());
    }
    eprintln!(
        "FIGURE control socket of a running dmvpnd with {} idle and {} non-reading clients: slowest of 5 answers {worst:?}",
        idle.len(),
        deaf.len()
    );
    assert!(worst < Duration::from_secs(2), "{worst:?}");
    assert!(lab.alive(&ns));
}

/// A key-log path that is a symbolic link: dmvpnd refuses to start and
/// the file it points to is untouched; a fresh path is created 0600.
#[test]
fn attack_key_log_symlink_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new("dak");
    let ns = lab.node("n", 1);
    let victim = lab.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    let link = lab.path("n.keys");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let cfg_path = lab.path("n.toml");
    let text = format!(
        "[control]\nsocket = \"{}\"\n[log]\nkey_log = \"{}\"\n{}",
        lab.socket(&ns).display(),
        link.display(),
        config(1)
    );
    fs::write(&cfg_path, &text).unwrap();
    fs::set_permissions(&cfg_path, fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, dmvpnd(), "--config"])
        .arg(&cfg_path)
        .output()
        .expect("run dmvpnd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "dmvpnd started with a symlinked key log"
    );
    assert!(
        err.contains("log.key_log") && err.contains("is a symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    // `--check` says the same.
    let out = Command::new(dmvpnd())
        .args(["--check", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // A fresh path: created private, keys land in it.
    fs::remove_file(&link).unwrap();
    lab.start(&ns, &config(1));
    let mode = fs::metadata(lab.keylog(&ns))
        .expect("key log created")
        .permissions()
        .mode();
    eprintln!("FIGURE key log created with mode {:04o}", mode & 0o7777);
    assert_eq!(mode & 0o077, 0, "key log mode {mode:o}");
}
