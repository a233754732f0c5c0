//! Acceptance checks on real `dmvpnd` processes in network namespaces.
//!
//! Static maps + manual SAs (ESP tunnel mode, ESP-in-UDP): tunnel and LAN
//! pings, pings at and over the tunnel MTU (DF set: "Frag needed" with the
//! MTU; DF clear: fragmentation), tshark decrypting a live capture down to
//! ICMP, a replayed ESP packet counted as a replay failure, a wrong key
//! counted as verify failures. The seed topology: first LAN-to-LAN packets
//! via the hub then ESP directly between the spokes (seen in captures),
//! `dmvpnctl --json show dmvpn`, hub SIGKILL + restart with automatic
//! recovery, and figures (registration time, shortcut time, idle RSS).
//!
//! Needs root, iproute2, ping, dumpcap and tshark; fails (never skips)
//! without them.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DmvpnState, Reply, Request};
use dmvpn_tests::*;

/// IPv4 packets (Ethernet header removed) of a classic pcap file.
fn pcap_packets(path: &Path) -> Vec<Vec<u8>> {
    let f = fs::read(path).expect("read capture");
    assert!(f.len() >= 24, "capture too short");
    let le = f[0..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let rd = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(rd(&f[20..24]), 1, "expected an Ethernet capture");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= f.len() {
        let incl = rd(&f[off + 8..off + 12]) as usize;
        let data = &f[off + 16..(off + 16 + incl).min(f.len())];
        if data.len() > 14 && data[12..14] == [0x08, 0x00] {
            out.push(data[14..].to_vec());
        }
        off += 16 + incl;
    }
    out
}

fn v4(p: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
}

/// ESP packets (raw protocol 50 or UDP 4500 non-marker) from `src` to `dst`.
fn esp_packets(pkts: &[Vec<u8>], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<Vec<u8>> {
    pkts.iter()
        .filter(|p| p.len() > 40 && v4(p, 12) == src && v4(p, 16) == dst)
        .filter(|p| {
            let ihl = usize::from(p[0] & 0xf) * 4;
            match p[9] {
                50 => true,
                17 => {
                    p.len() > ihl + 16
                        && p[ihl + 2..ihl + 4] == [0x11, 0x94]
                        && p[ihl + 8..ihl + 12] != [0, 0, 0, 0]
                }
                _ => false,
            }
        })
        .cloned()
        .collect()
}

/// Sends a complete IPv4 packet from namespace `ns` with a raw
/// IPPROTO_RAW socket (opened in a thread that joined `ns`).
fn inject(ns: &str, pkt: &[u8]) {
    let mut pkt = pkt.to_vec();
    let ihl = usize::from(pkt[0] & 0xf) * 4;
    if pkt[9] == 17 {
        // Zero UDP checksum (allowed in IPv4): a captured one may be partial.
        pkt[ihl + 6] = 0;
        pkt[ihl + 7] = 0;
    }
    let netns = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = fs::File::open(&netns).expect("open netns");
        // SAFETY: setns on a valid fd; only this short-lived thread moves.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {netns}");
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw socket");
        let dst = SocketAddrV4::new(v4(&pkt, 16), 0);
        s.send_to(&pkt, &dst.into()).expect("send injected packet");
    })
    .join()
    .expect("inject thread");
}

fn tshark(pcap: &Path, sa_lines: &[String], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-r".into(),
        pcap.display().to_string(),
        "-o".into(),
        "esp.enable_encryption_decode:TRUE".into(),
        "-o".into(),
        "esp.enable_authentication_check:TRUE".into(),
        // Outer headers are written by dmvpnd (most leave through a packet
        // socket, untouched by the kernel): their checksums must hold.
        "-o".into(),
        "ip.check_checksum:TRUE".into(),
    ];
    for l in sa_lines {
        args.push("-o".into());
        args.push(format!("uat:esp_sa:{l}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark ({e}); install Debian package tshark"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_clean(text: &str) {
    assert!(!text.contains("Malformed"), "malformed packet:\n{text}");
    assert!(
        !text.contains("[Expert Info (Error"),
        "expert error:\n{text}"
    );
    assert!(!text.contains("[incorrect"), "ICV incorrect:\n{text}");
}

// ---------------------------------------------------------------- manual SAs

const ENC_A: &str = "11111111111111111111111111111111";
const AUTH_A: &str = "1111111111111111111111111111111111111111";
const ENC_B: &str = "22222222222222222222222222222222";
const AUTH_B: &str = "2222222222222222222222222222222222222222";

/// Static map node `n` (peer `peer`) with manual AES-128/SHA-1 SAs:
/// SPI 0x1001 carries a→b (key A), 0x2001 carries b→a (key B).
fn manual_cfg(n: u8, peer: u8, mode: &str, udp: bool, bad_inbound_auth: bool) -> String {
    let (i, o, ki, ai, ko, ao) = if n == 1 {
        (0x2001, 0x1001, ENC_B, AUTH_B, ENC_A, AUTH_A)
    } else {
        (0x1001, 0x2001, ENC_A, AUTH_A, ENC_B, AUTH_B)
    };
    let ai = if bad_inbound_auth {
        "3333333333333333333333333333333333333333"
    } else {
        ai
    };
    format!(
        r#"
[node]
name = "n{n}"
role = "spoke"
[[ipsec.manual_sa]]
peer = "172.16.0.{peer}"
transforms = ["esp-aes 128", "esp-sha-hmac"]
mode = "{mode}"
udp_encapsulation = {udp}
[ipsec.manual_sa.inbound]
spi = {i}
encryption_key = "{ki}"
authentication_key = "{ai}"
[ipsec.manual_sa.outbound]
spi = {o}
encryption_key = "{ko}"
authentication_key = "{ao}"
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
mtu = 1400
source = "172.16.0.{n}"
destination = "172.16.0.{peer}"
mode = "gre"
routes = ["10.{peer}.0.0/24"]
"#
    )
}

/// Wireshark `esp_sa` lines for the manual SAs of `manual_cfg`.
fn manual_sa_lines() -> Vec<String> {
    let line = |src: &str, dst: &str, spi: u32, k: &str, a: &str| {
        format!(
            "\"IPv4\",\"{src}\",\"{dst}\",\"{spi:#010x}\",\"AES-CBC [RFC3602]\",\"0x{k}\",\"HMAC-SHA-1-96 [RFC2404]\",\"0x{a}\""
        )
    };
    vec![
        line("172.16.0.1", "172.16.0.2", 0x1001, ENC_A, AUTH_A),
        line("172.16.0.2", "172.16.0.1", 0x2001, ENC_B, AUTH_B),
    ]
}

/// One manual-SA variant: pings (tunnel, LAN, at and over the MTU), tshark
/// decrypting the capture, replay of a captured packet, then a wrong key.
fn manual_variant(mode: &str, udp: bool) {
    let what = format!("ESP {mode} mode, udp={udp}");
    let mut lab = Lab::new("ac");
    let a = lab.node("a", 1);
    let b = lab.node("b", 2);
    let h1 = lab.lan_host(&a, 1);
    lab.lan_host(&b, 2);
    let (cap, pcap) = lab.capture(&a, "nbma0", "a.pcap");
    // A capture to decrypt needs ESP-in-UDP one datagram per message
    // (docs/operations.md, "Captures with UDP offload").
    let env = [("DMVPND_UDP_OFFLOAD", "0")];
    lab.start_with_env(&a, &manual_cfg(1, 2, mode, udp, false), &env);
    lab.start_with_env(&b, &manual_cfg(2, 1, mode, udp, false), &env);

    assert_eq!(lab.ping(&a, "192.168.1.2", 5), 5, "tunnel ping ({what})");
    assert_eq!(lab.ping(&h1, "10.2.0.10", 5), 5, "LAN ping ({what})");
    // A 1400-byte IP packet fills the tunnel MTU exactly (DF set); a
    // 1400-byte payload needs fragmentation on the way into the tunnel.
    let (got, out) = lab.ping_out(&h1, "10.2.0.10", 3, &["-M", "do", "-s", "1372"]);
    assert_eq!(got, 3, "1400-byte packets, DF ({what}):\n{out}");
    let (got, out) = lab.ping_out(&h1, "10.2.0.10", 3, &["-M", "dont", "-s", "1400"]);
    assert_eq!(got, 3, "1400-byte payload ({what}):\n{out}");
    // Over the MTU with DF: the router answers Frag needed with the MTU;
    // on the tunnel node itself the socket reports the MTU.
    let (got, out) = lab.ping_out(&h1, "10.2.0.10", 2, &["-M", "do", "-s", "1450"]);
    assert_eq!(got, 0, "{out}");
    assert!(
        out.contains("Frag needed") && out.contains("mtu = 1400"),
        "DF over the tunnel MTU ({what}):\n{out}"
    );
    let (got, out) = lab.ping_out(&a, "192.168.1.2", 1, &["-M", "do", "-s", "1500"]);
    assert_eq!(got, 0, "{out}");
    assert!(
        out.contains("mtu=1400") || out.contains("mtu = 1400"),
        "local DF over the tunnel MTU ({what}):\n{out}"
    );
    // Without DF, 1500-byte payloads are fragmented and get through.
    let (got, out) = lab.ping_out(&h1, "10.2.0.10", 3, &["-M", "dont", "-s", "1500"]);
    assert_eq!(got, 3, "LAN 1500-byte payload without DF ({what}):\n{out}");
    let (got, out) = lab.ping_out(&a, "192.168.1.2", 3, &["-M", "dont", "-s", "1500"]);
    assert_eq!(
        got, 3,
        "tunnel 1500-byte payload without DF ({what}):\n{out}"
    );

    let before = lab.ipsec_with(&a, "172.16.0.2").expect("manual SA shown");
    assert!(
        before.counters.encaps >= 20 && before.counters.decaps >= 20,
        "{:?}",
        before.counters
    );
    assert_eq!(before.counters.replay_failed, 0);
    assert_eq!(before.counters.verify_failed, 0);
    lab.stop_capture(cap);

    // tshark decrypts everything: ESP -> (IP ->) GRE -> ICMP, no errors.
    let lines = manual_sa_lines();
    let t = tshark(&pcap, &lines, &["-V"]);
    check_clean(&t);
    assert!(
        t.contains("Encapsulating Security Payload"),
        "{what}: no ESP"
    );
    assert!(
        t.contains("Generic Routing Encapsulation (IP)"),
        "{what}: GRE not decrypted"
    );
    if udp {
        assert!(t.contains("User Datagram Protocol"), "{what}: no UDP");
    }
    let requests = t.matches("Type: 8 (Echo (ping) request)").count();
    let replies = t.matches("Type: 0 (Echo (ping) reply)").count();
    assert!(
        requests >= 10 && replies >= 10,
        "{what}: decrypted echoes {requests}/{replies}"
    );
    assert!(t.contains("> [correct]"), "{what}: ICV not checked");
    eprintln!("{what}: tshark decrypted {requests} echo requests, {replies} replies, clean");

    // A captured b->a packet sent again from b's namespace is a replay.
    let pkts = pcap_packets(&pcap);
    let esp = esp_packets(
        &pkts,
        Ipv4Addr::new(172, 16, 0, 2),
        Ipv4Addr::new(172, 16, 0, 1),
    );
    assert!(!esp.is_empty(), "{what}: no captured ESP from b");
    let proto = if udp { 17 } else { 50 };
    assert!(
        esp.iter().all(|p| p[9] == proto),
        "{what}: ESP carried in IP protocol {proto}"
    );
    if udp {
        eprintln!(
            "{what}: show crypto ipsec sa gives port {} for the manual UDP SA",
            before.peer_port
        );
    }
    inject(&b, &esp[0]);
    inject(&b, &esp[1.min(esp.len() - 1)]);
    lab.wait("replay counted", Duration::from_secs(5), || {
        lab.ipsec_with(&a, "172.16.0.2")
            .is_some_and(|s| s.counters.replay_failed >= 1)
    });
    let after = lab.ipsec_with(&a, "172.16.0.2").unwrap();
    assert_eq!(after.counters.verify_failed, 0, "{:?}", after.counters);
    assert!(lab.alive(&a), "dmvpnd survives replays");
    eprintln!(
        "{what}: #pkts replay failed {} after 2 replays",
        after.counters.replay_failed
    );

    // A wrong inbound authentication key: ICV failures, no delivery, alive.
    lab.stop_all();
    lab.start(&a, &manual_cfg(1, 2, mode, udp, true));
    lab.start(&b, &manual_cfg(2, 1, mode, udp, false));
    assert_eq!(lab.ping(&b, "192.168.1.1", 5), 0, "wrong key must not pass");
    let bad = lab.ipsec_with(&a, "172.16.0.2").unwrap();
    assert!(bad.counters.verify_failed >= 3, "{:?}", bad.counters);
    assert_eq!(bad.counters.decaps, 0, "{:?}", bad.counters);
    assert!(lab.alive(&a), "dmvpnd survives ICV failures");
    eprintln!(
        "{what}: wrong key: #pkts verify failed {}",
        bad.counters.verify_failed
    );
    lab.stop_all();
}

#[test]
fn accept_manual_sa_esp_tunnel_mode() {
    manual_variant("tunnel", false);
}

#[test]
fn accept_manual_sa_esp_in_udp() {
    manual_variant("transport", true);
}

/// ESP-in-UDP datagrams from `src` to `dst` in `pcap`: how many, the
/// largest and the sum of their IP total lengths.
fn esp_in_udp_sizes(pcap: &Path, src: Ipv4Addr, dst: Ipv4Addr) -> (usize, usize, usize) {
    let lens: Vec<usize> = esp_packets(&pcap_packets(pcap), src, dst)
        .iter()
        .map(|p| usize::from(u16::from_be_bytes([p[2], p[3]])))
        .collect();
    let largest = lens.iter().copied().max().unwrap_or(0);
    (lens.len(), largest, lens.iter().sum())
}

/// ESP-in-UDP uses UDP GSO unless `DMVPND_UDP_OFFLOAD=0`: a burst of
/// equal-sized packets to one peer leaves as super-datagrams larger than
/// the link MTU (what a capture on the sending host shows), and every
/// packet still arrives; switched off, every datagram fits the link.
#[test]
fn accept_esp_in_udp_offload_is_on_by_default() {
    for off in [false, true] {
        let what = if off {
            "DMVPND_UDP_OFFLOAD=0"
        } else {
            "default"
        };
        let mut lab = Lab::new("uo");
        let a = lab.node("a", 1);
        let b = lab.node("b", 2);
        let (cap, pcap) = lab.capture(&a, "nbma0", "a.pcap");
        let env: &[(&str, &str)] = if off {
            &[("DMVPND_UDP_OFFLOAD", "0")]
        } else {
            &[]
        };
        lab.start_with_env(&a, &manual_cfg(1, 2, "transport", true, false), env);
        lab.start_with_env(&b, &manual_cfg(2, 1, "transport", true, false), env);
        assert_eq!(lab.ping(&a, "192.168.1.2", 2), 2, "tunnel ping ({what})");
        // 256 echo requests of 1328 bytes at once: TUN bursts that leave as
        // GSO super-datagrams and arrive GRO-coalesced, several batches at once.
        let (got, out) = lab.ping_out(&a, "192.168.1.2", 256, &["-l", "256", "-s", "1300"]);
        assert_eq!(got, 256, "burst answered ({what}):\n{out}");
        // The capture has the burst once its bytes are in the file: without
        // offload that is every datagram (2 + 256), each larger than the
        // 1328-byte inner packet, so counting bytes alone would stop early.
        let (src, dst) = (Ipv4Addr::new(172, 16, 0, 1), Ipv4Addr::new(172, 16, 0, 2));
        lab.wait("burst captured", Duration::from_secs(10), || {
            let (n, _, bytes) = esp_in_udp_sizes(&pcap, src, dst);
            bytes >= 256 * 1328 && (!off || n >= 258)
        });
        lab.stop_capture(cap);
        let (n, largest, _) = esp_in_udp_sizes(&pcap, src, dst);
        eprintln!("{what}: {n} ESP-in-UDP datagrams captured from a, largest {largest} bytes");
        if off {
            assert!(
                n >= 258 && largest <= 1500,
                "{what}: {n} datagrams, largest {largest}"
            );
        } else {
            assert!(
                largest > 1500,
                "{what}: no GSO super-datagram (largest {largest})"
            );
        }
        let sa = lab.ipsec_with(&b, "172.16.0.1").expect("manual SA shown");
        assert!(sa.counters.decaps >= 258, "{what}: {:?}", sa.counters);
        assert_eq!(
            sa.counters.replay_failed + sa.counters.verify_failed + sa.counters.recv_errors,
            0,
            "{what}: {:?}",
            sa.counters
        );
        lab.stop_all();
    }
}

// ---------------------------------------------------------------- IKE as the seed routers run it

/// Seed-style node `n` (1 = hub) with IKE, DPD and phase 3 (redirect +
/// shortcut), so LAN-to-LAN traffic gets a direct path.
fn seed_cfg(role: &str, n: u8) -> String {
    debug_assert_eq!(role == "hub", n == 1);
    SeedNode {
        ike: SEED_IKE,
        transforms: r#"["esp-3des", "esp-md5-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 3,
        phase3: true,
        hub_map: false,
    }
    .config(n)
}

fn vm_rss_kb(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Per decrypted echo request in `pcap`: (time, outer dst, ICMP seq).
fn echo_path(pcap: &Path, keys: &[String], src: &str, dst: &str) -> Vec<(f64, String, u32)> {
    let filter = format!("icmp.type == 8 && ip.src == {src} && ip.dst == {dst}");
    let t = tshark(
        pcap,
        keys,
        &[
            "-Y",
            &filter,
            "-T",
            "fields",
            "-e",
            "frame.time_relative",
            "-e",
            "ip.dst",
            "-e",
            "icmp.seq",
        ],
    );
    t.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let time = f.next()?.parse().ok()?;
            let outer = f.next()?.split(',').next()?.to_string();
            let seq = f.next()?.split(',').next()?.parse().ok()?;
            Some((time, outer, seq))
        })
        .collect()
}

#[test]
fn accept_seed_topology_shortcut_capture_and_hub_restart() {
    let mut lab = Lab::new("ac");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    lab.lan_host(&s2, 3);
    let (cap_hub, pcap_hub) = lab.capture(&hub, "nbma0", "hub.pcap");
    let (cap_s1, pcap_s1) = lab.capture(&s1, "nbma0", "s1.pcap");

    lab.start(&hub, &seed_cfg("hub", 1));
    hub_lan_routes(&lab, &hub);
    let mut reg = Vec::new();
    for (s, n) in [(&s1, 2), (&s2, 3)] {
        let t0 = Instant::now();
        lab.start(s, &seed_cfg("spoke", n));
        lab.wait("spoke registered", Duration::from_secs(30), || {
            lab.peer_up(s, "172.16.0.1")
        });
        reg.push(t0.elapsed());
    }
    eprintln!("FIGURE spoke start -> registered (NHS up): {reg:?}");
    // Idle RSS once registered.
    let pid = lab.daemon(&s1).id();
    let rss_s1 = vm_rss_kb(pid);
    let hub_pid = lab.daemon(&hub).id();
    let rss_hub = vm_rss_kb(hub_pid);
    eprintln!("FIGURE dmvpnd idle VmRSS: spoke {rss_s1} kB, hub {rss_hub} kB");
    assert!(rss_s1 < 64 * 1024, "idle spoke RSS {rss_s1} kB");

    // The hub forwards to both spoke LANs (from its own LAN host).
    let h1 = format!("{}h1", lab.tag);
    lab.wait(
        "hub forwards to the spoke LANs",
        Duration::from_secs(10),
        || lab.ping(&h1, "10.2.0.10", 1) == 1 && lab.ping(&h1, "10.3.0.10", 1) == 1,
    );
    // LAN to LAN: the first packets cross the hub, then go direct. Echoes
    // 20 ms apart time the move to the direct path finely.
    let t0 = Instant::now();
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &h2, "ping", "-n", "-q", "-c", "60", "-i", "0.02",
        ])
        .args(["-W", "1", "10.3.0.10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    let lan: IpAddr = "10.3.0.0".parse().unwrap();
    let shortcut = lab.wait(
        "shortcut for spoke 2's LAN",
        Duration::from_secs(15),
        || match lab.ctl(&s1, Request::ShowNhrp) {
            Reply::Nhrp(v) => v
                .iter()
                .any(|e| e.prefix == lan && e.nbma == Some("172.16.0.3".parse().unwrap())),
            _ => false,
        },
    );
    let (got, out) = ping_waited(ping);
    eprintln!("LAN-to-LAN ping while the shortcut comes up:\n{out}");
    assert!(
        got >= 57,
        "LAN-to-LAN ping while the shortcut comes up: {out}"
    );
    eprintln!("FIGURE LAN shortcut in show ip nhrp {shortcut:?} after the first LAN packet");
    let _ = t0;

    // dmvpnctl --json show dmvpn lists the hub and the other spoke.
    let o = Command::new(dmvpnctl())
        .arg("--socket")
        .arg(lab.socket(&s1))
        .args(["--json", "show", "dmvpn"])
        .output()
        .expect("run dmvpnctl");
    assert!(o.status.success(), "dmvpnctl: {o:?}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let text = json.to_string();
    assert!(
        text.contains("\"172.16.0.1\"") && text.contains("\"172.16.0.3\""),
        "show dmvpn --json lists hub and spoke 2: {text}"
    );

    lab.stop_capture(cap_hub);
    lab.stop_capture(cap_s1);
    let mut keys: Vec<String> = [&s1, &hub]
        .iter()
        .flat_map(|n| {
            fs::read_to_string(lab.keylog(n))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys.dedup();
    check_clean(&tshark(&pcap_s1, &keys, &["-V"]));
    let at_s1 = echo_path(&pcap_s1, &keys, "10.2.0.10", "10.3.0.10");
    let at_hub = echo_path(&pcap_hub, &keys, "10.2.0.10", "10.3.0.10");
    // dumpcap may lose what it had not yet handed over when it stops
    // (the last few hundred ms of echoes).
    assert!(at_s1.len() >= 40, "decrypted echoes at spoke 1: {at_s1:?}");
    assert_eq!(at_s1[0].1, "172.16.0.1", "first echo goes to the hub");
    let first = at_s1[0].2;
    // The hub receives it from spoke 1 and forwards it to spoke 2.
    let hub_legs: Vec<&str> = at_hub
        .iter()
        .filter(|e| e.2 == first)
        .map(|e| e.1.as_str())
        .collect();
    assert!(
        hub_legs.contains(&"172.16.0.1") && hub_legs.contains(&"172.16.0.3"),
        "first echo spoke1->hub->spoke2 at the hub: {at_hub:?}"
    );
    let direct = at_s1
        .iter()
        .position(|e| e.1 == "172.16.0.3")
        .unwrap_or_else(|| panic!("no direct ESP to spoke 2: {at_s1:?}"));
    assert!(
        at_s1[direct..].iter().all(|e| e.1 == "172.16.0.3"),
        "once direct, stays direct: {at_s1:?}"
    );
    let direct_after = at_s1[direct].0 - at_s1[0].0;
    eprintln!(
        "FIGURE first LAN packet -> first direct spoke-to-spoke ESP: {:.0} ms ({} echoes via the hub)",
        direct_after * 1000.0,
        direct
    );

    // SIGKILL the hub and restart it: the spokes come back on their own.
    let hub_child = lab.daemon(&hub);
    hub_child.kill().expect("SIGKILL hub");
    let _ = hub_child.wait();
    let restart = Instant::now();
    lab.start(&hub, &seed_cfg("hub", 1));
    hub_lan_routes(&lab, &hub);
    // No traffic meanwhile: DPD (10 s idle + 3 x 2 s) finds the old SAs
    // dead, the spokes negotiate again and register.
    let registered = lab.wait(
        "spokes registered again after the hub restart",
        Duration::from_secs(60),
        || {
            let p = lab.dmvpn_peers(&hub);
            ["172.16.0.2", "172.16.0.3"].iter().all(|s| {
                let ip: IpAddr = s.parse().unwrap();
                p.iter().any(|(n, st)| *n == ip && *st == DmvpnState::Up)
            })
        },
    );
    lab.wait(
        "spoke -> hub LAN traffic after the hub restart",
        Duration::from_secs(10),
        || lab.ping(&h2, "10.1.0.10", 1) == 1,
    );
    let resumed = restart.elapsed();
    eprintln!(
        "FIGURE hub SIGKILL + restart: both spokes registered after {registered:?}, spoke LAN -> hub LAN traffic back after {resumed:?}"
    );
    assert!(lab.alive(&s1) && lab.alive(&s2));
    assert_eq!(lab.ping(&h2, "10.1.0.10", 5), 5, "steady after recovery");
}
