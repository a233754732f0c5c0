//! A dual-stack tunnel (IPv6 overlay over the IPv4 NBMA network) with
//! real dmvpnd processes in network namespaces: spokes register their
//! IPv6 tunnel addresses with the hub's IPv6 NHRP instance, an IPv6
//! LAN-to-LAN ping from one spoke's LAN to the other's first crosses the
//! hub, whose Traffic Indication makes the spoke resolve the IPv6
//! destination; the answer's shortcut then carries the ping straight to
//! the other spoke. tshark dissects the IPv6 NHRP packets (protocol type
//! 0x86dd) without a malformed field, and sees the echoes go spoke to
//! spoke.
//!
//! Needs root, iproute2, ping, dumpcap and tshark; fails (never skips)
//! without them.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request};
use dmvpn_tests::*;

/// dmvpnd's route protocol number.
const PROTO: &str = "78";

/// Node `n` (1 = hub) of a dual-stack phase-3 cloud with IPsec.
fn config(n: u8) -> String {
    let role = if n == 1 { "hub" } else { "spoke" };
    let (routes, nhrp) = if n == 1 {
        ("[]".to_string(), "redirect = true\n".to_string())
    } else {
        let other = if n == 2 { 3 } else { 2 };
        (
            format!("[\"10.{other}.0.0/24\", \"2001:db8:{other}::/64\"]"),
            "shortcut = true\n\
             [[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n\
             [[tunnel.nhrp.nhs]]\naddress = \"2001:db8:100::1\"\nnbma = \"172.16.0.1\"\n"
                .to_string(),
        )
    };
    format!(
        r#"
[node]
name = "n{n}"
role = "{role}"
{MODERN_IKE}
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "ts"
transforms = {MODERN_TS}
mode = "transport"
[[ipsec.profile]]
name = "cisco"
transform_sets = ["ts"]
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
address6 = "2001:db8:100::{n}/64"
mtu = 1400
source = "172.16.0.{n}"
mode = "gre-multipoint"
key = 0
protection = "cisco"
routes = {routes}
[tunnel.nhrp]
network_id = 1
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

/// IPv6 on spoke `n`'s LAN: router 2001:db8:N::1, host 2001:db8:N::10
/// (the veths `Lab::lan_host` made), forwarding on.
fn lan6(lab: &Lab, router: &str, host: &str, n: u8) {
    let (rl, hl) = (format!("{}{n}l", lab.tag), format!("{}{n}h", lab.tag));
    let (ra, ha, gw) = (
        format!("2001:db8:{n}::1/64"),
        format!("2001:db8:{n}::10/64"),
        format!("2001:db8:{n}::1"),
    );
    ok(&["ip", "-n", router, "addr", "add", &ra, "dev", &rl, "nodad"]);
    ok(&["ip", "-n", host, "addr", "add", &ha, "dev", &hl, "nodad"]);
    ok(&[
        "ip", "-n", host, "-6", "route", "add", "default", "via", &gw,
    ]);
}

/// The hub's routes to the spokes' IPv6 LANs via their IPv6 tunnel
/// addresses, as a routing daemon would install them.
fn hub_lan_routes6(hub: &str) {
    for n in [2u8, 3] {
        ok(&[
            "ip",
            "-n",
            hub,
            "-6",
            "route",
            "replace",
            &format!("2001:db8:{n}::/64"),
            "via",
            &format!("2001:db8:100::{n}"),
            "dev",
            "Tunnel0",
        ]);
    }
}

fn forwarding6(ns: &str) {
    ok(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.forwarding=1",
    ]);
}

/// `ip -6 route show proto 78` in `ns`.
fn nhrp_routes6(ns: &str) -> String {
    let o = sh(&["ip", "-n", ns, "-6", "route", "show", "proto", PROTO]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// tshark on `pcap`, decrypting ESP with the daemons' key-log lines.
fn tshark(pcap: &std::path::Path, keys: &[String], args: &[&str]) -> String {
    let mut opts: Vec<String> = vec!["-o".into(), "esp.enable_encryption_decode:TRUE".into()];
    for l in keys {
        opts.push("-o".into());
        opts.push(format!("uat:esp_sa:{l}"));
    }
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(&opts)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tshark ({e}); install Debian package tshark"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ipv6_overlay_resolves_and_goes_direct() {
    let mut lab = Lab::new("v6");
    let hub = lab.node("hub", 1);
    let s2 = lab.node("s2", 2);
    let s3 = lab.node("s3", 3);
    let h2 = lab.lan_host(&s2, 2);
    let h3 = lab.lan_host(&s3, 3);
    lan6(&lab, &s2, &h2, 2);
    lan6(&lab, &s3, &h3, 3);
    for ns in [&hub, &s2, &s3] {
        forwarding6(ns);
    }
    let (cap, pcap) = lab.capture(&s3, "nbma0", "s3.pcap");
    lab.start(&hub, &config(1));
    lab.start(&s2, &config(2));
    lab.start(&s3, &config(3));

    // Both spokes' IPv6 tunnel addresses are registered: the hub shows
    // them as NHRP routes, as it does the IPv4 ones.
    let t = lab.wait(
        "IPv6 registrations on the hub",
        Duration::from_secs(30),
        || {
            let r = nhrp_routes6(&hub);
            r.contains("2001:db8:100::2 dev Tunnel0") && r.contains("2001:db8:100::3 dev Tunnel0")
        },
    );
    eprintln!(
        "IPv6 registrations after {:.1} s; hub: ip -6 route show proto 78\n{}",
        t.as_secs_f64(),
        nhrp_routes6(&hub)
    );
    let v4 = nhrp_routes(&hub);
    assert!(
        v4.contains("192.168.1.2 dev Tunnel0") && v4.contains("192.168.1.3 dev Tunnel0"),
        "the IPv4 registrations go on beside the IPv6 ones:\n{v4}"
    );
    hub_lan_routes6(&hub);
    // The tunnel's IPv6 address answers (through the hub).
    assert_eq!(
        lab.ping(&s2, "2001:db8:100::1", 3),
        3,
        "spoke to hub over IPv6"
    );
    assert_eq!(
        lab.ping(&s2, "2001:db8:100::3", 3),
        3,
        "spoke to spoke tunnel address over IPv6"
    );

    // LAN to LAN: relayed by the hub, redirected, resolved, then direct.
    let t = lab.wait(
        "an IPv6 shortcut to 2001:db8:3::/64 on spoke 2",
        Duration::from_secs(30),
        || {
            lab.ping(&h2, "2001:db8:3::10", 1);
            nhrp_routes6(&s2).contains("2001:db8:3::/64 dev Tunnel0")
        },
    );
    eprintln!(
        "IPv6 shortcut after {:.1} s; spoke 2: ip -6 route show proto 78\n{}",
        t.as_secs_f64(),
        nhrp_routes6(&s2)
    );
    assert_eq!(lab.ping(&h2, "2001:db8:3::10", 5), 5, "IPv6 LAN to LAN");
    // `show ipv6 nhrp` lists the shortcut; `show ip nhrp` only IPv4.
    let v6 = match lab.ctl(&s2, Request::ShowIpv6Nhrp) {
        Reply::Nhrp(e) => e,
        r => panic!("unexpected reply {r:?}"),
    };
    assert!(
        v6.iter()
            .any(|e| e.prefix == "2001:db8:3::".parse::<IpAddr>().unwrap() && e.prefix_len == 64),
        "show ipv6 nhrp on spoke 2: {v6:?}"
    );
    let text = dmvpn_ctl::render::nhrp(&v6);
    eprintln!("spoke 2: show ipv6 nhrp\n{text}");
    match lab.ctl(&s2, Request::ShowNhrp) {
        Reply::Nhrp(e) => assert!(e.iter().all(|e| e.prefix.is_ipv4()), "{e:?}"),
        r => panic!("unexpected reply {r:?}"),
    }
    // The IPv4 overlay runs beside it: LAN to LAN over IPv4 too.
    hub_lan_routes(&lab, &hub);
    assert_eq!(lab.ping(&h2, "10.3.0.10", 5), 5, "IPv4 LAN to LAN");
    std::thread::sleep(Duration::from_millis(300));
    lab.stop_capture(cap);

    // The wire: IPv6 NHRP dissected cleanly, and echoes straight from
    // spoke 2's NBMA address.
    let mut keys: Vec<String> = [&hub, &s2, &s3]
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(lab.keylog(n))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys.dedup();
    let nhrp = tshark(&pcap, &keys, &["-V", "-Y", "nhrp.hdr.pro.type == 0x86dd"]);
    assert!(!nhrp.is_empty(), "no IPv6 NHRP packet captured");
    assert!(!nhrp.contains("Malformed"), "malformed IPv6 NHRP:\n{nhrp}");
    assert!(
        !nhrp.contains("[Expert Info (Error"),
        "expert error in IPv6 NHRP:\n{nhrp}"
    );
    for kind in ["NHRP Resolution Request", "NHRP Resolution Reply"] {
        assert!(nhrp.contains(kind), "no IPv6 {kind} captured:\n{nhrp}");
    }
    let fields = tshark(
        &pcap,
        &keys,
        &[
            "-Y",
            "nhrp.hdr.pro.type == 0x86dd && nhrp.hdr.op.type == 2",
            "-T",
            "fields",
            "-e",
            "nhrp.src.prot.addr_bytes",
            "-e",
            // (sic: tshark's field name)
            "nhrp.dst.prot.addr_byets",
            "-e",
            "nhrp.prefix",
        ],
    );
    // tshark shows IPv6 protocol addresses as bytes. A reply keeps the
    // request's source (the requester) and destination (the host asked
    // about); the answer's CIE carries the prefix length of the network
    // that holds it.
    let fields = fields.replace(':', "");
    eprintln!("IPv6 resolution replies (source, destination, CIE prefix lengths):\n{fields}");
    assert!(
        fields.lines().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() == 3
                && f[0] == "20010db8010000000000000000000002"
                && f[1] == "20010db8000300000000000000000010"
                && f[2].starts_with("64,")
        }),
        "spoke 2's resolution of 2001:db8:3::10 is answered with spoke 3's LAN, a /64:\n{fields}"
    );
    let direct = tshark(
        &pcap,
        &keys,
        &[
            "-Y",
            "ip.src == 172.16.0.2 && ip.dst == 172.16.0.3 && esp && gre && icmpv6.type == 128",
        ],
    );
    let n = direct.lines().count();
    eprintln!("{n} IPv6 echo requests in GRE over ESP straight from spoke 2 to spoke 3");
    assert!(
        n >= 5,
        "the IPv6 echoes go direct, spoke to spoke:\n{direct}"
    );

    // `clear ip nhrp` takes the shortcut away, from the kernel too.
    let _ = lab.ctl(&s2, Request::ClearNhrp);
    lab.wait(
        "the IPv6 shortcut gone after clear ip nhrp",
        Duration::from_secs(10),
        || !nhrp_routes6(&s2).contains("2001:db8:3::/64"),
    );

    // A reload moves spoke 3's IPv6 address: the tunnel starts again
    // with it, and the hub learns the new registration.
    let moved = config(3).replace("2001:db8:100::3/64", "2001:db8:100::33/64");
    lab.write_config(&s3, &moved);
    let out = Command::new(dmvpnctl())
        .arg("--socket")
        .arg(lab.socket(&s3))
        .arg("reload")
        .output()
        .expect("run dmvpnctl");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("spoke 3: dmvpnctl reload\n{report}");
    assert!(report.contains("tunnel[0].address6"), "{report}");
    lab.wait(
        "spoke 3's Tunnel0 has its new IPv6 address",
        Duration::from_secs(10),
        || {
            let a = sh(&["ip", "-n", &s3, "-6", "addr", "show", "dev", "Tunnel0"]);
            let a = String::from_utf8_lossy(&a.stdout).into_owned();
            a.contains("2001:db8:100::33/64") && !a.contains("2001:db8:100::3/64")
        },
    );
    lab.wait(
        "the hub registers 2001:db8:100::33",
        Duration::from_secs(30),
        || nhrp_routes6(&hub).contains("2001:db8:100::33 dev Tunnel0"),
    );
    assert_eq!(
        lab.ping(&s2, "2001:db8:100::33", 3),
        3,
        "spoke 2 to spoke 3's new address"
    );
    lab.stop_all();
}

/// `ip -4 route show proto 78` in `ns`.
fn nhrp_routes(ns: &str) -> String {
    let o = sh(&["ip", "-n", ns, "-4", "route", "show", "proto", PROTO]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Node `n` of an IPv6-only overlay (its `address` is IPv6) over the
/// IPv4 underlay, with IPsec.
fn config_v6_only(n: u8) -> String {
    config(n)
        .replace(
            "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n",
            "",
        )
        .replace(&format!("address = \"192.168.1.{n}/24\"\n"), "")
        .replace("address6 = ", "address = ")
        .replace("\"10.2.0.0/24\", ", "")
        .replace("\"10.3.0.0/24\", ", "")
}

/// An IPv6-only overlay: the tunnel interfaces have no IPv4 address; the
/// spokes register their IPv6 addresses and IPv6 LAN-to-LAN traffic goes
/// direct after a resolution, as on a dual-stack tunnel.
#[test]
fn an_ipv6_only_overlay_resolves_and_goes_direct() {
    let mut lab = Lab::new("v6o");
    let hub = lab.node("hub", 1);
    let s2 = lab.node("s2", 2);
    let s3 = lab.node("s3", 3);
    let h2 = lab.lan_host(&s2, 2);
    let h3 = lab.lan_host(&s3, 3);
    lan6(&lab, &s2, &h2, 2);
    lan6(&lab, &s3, &h3, 3);
    for ns in [&hub, &s2, &s3] {
        forwarding6(ns);
    }
    for n in 1u8..=3 {
        let c = config_v6_only(n);
        assert!(!c.contains("192.168.1."), "{c}");
    }
    lab.start(&hub, &config_v6_only(1));
    lab.start(&s2, &config_v6_only(2));
    lab.start(&s3, &config_v6_only(3));
    lab.wait(
        "IPv6 registrations on the hub",
        Duration::from_secs(30),
        || {
            let r = nhrp_routes6(&hub);
            r.contains("2001:db8:100::2 dev Tunnel0") && r.contains("2001:db8:100::3 dev Tunnel0")
        },
    );
    let a = sh(&["ip", "-n", &s2, "-4", "addr", "show", "dev", "Tunnel0"]);
    assert!(
        String::from_utf8_lossy(&a.stdout).trim().is_empty(),
        "no IPv4 address on an IPv6-only tunnel: {}",
        String::from_utf8_lossy(&a.stdout)
    );
    hub_lan_routes6(&hub);
    let t = lab.wait(
        "an IPv6 shortcut to 2001:db8:3::/64 on spoke 2",
        Duration::from_secs(30),
        || {
            lab.ping(&h2, "2001:db8:3::10", 1);
            nhrp_routes6(&s2).contains("2001:db8:3::/64 dev Tunnel0")
        },
    );
    eprintln!("IPv6-only overlay: shortcut after {:.1} s", t.as_secs_f64());
    assert_eq!(lab.ping(&h2, "2001:db8:3::10", 5), 5, "IPv6 LAN to LAN");
    assert!(
        lab.ipsec_with(&s2, "172.16.0.3").is_some(),
        "spoke 2 has an SA with spoke 3: the shortcut is direct"
    );
    let shown = match lab.ctl(&s2, Request::ShowDmvpn) {
        Reply::Dmvpn(i) => i,
        r => panic!("unexpected reply {r:?}"),
    };
    assert_eq!(
        shown[0].tunnel_addr,
        Some("2001:db8:100::2".parse::<IpAddr>().unwrap()),
        "show dmvpn names the IPv6 tunnel address"
    );
    lab.stop_all();
}
