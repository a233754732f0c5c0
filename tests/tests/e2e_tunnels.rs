//! Several tunnels in one `dmvpnd` (dual-hub dual-cloud): hub A runs
//! cloud A (Tunnel0, 192.168.1.0/24, NHRP network 1, GRE key 0, NBMA
//! 172.16.0.0/24), hub B cloud B (Tunnel1, 192.168.2.0/24, network 2,
//! key 1, NBMA 172.16.1.0/24). Spokes 2 and 3 each run both tunnels in
//! one dmvpnd, each tunnel on its own source address, both protected by
//! IPsec (IKE per source address). Checked: both clouds register and
//! carry spoke-to-spoke traffic direct after a phase-3 shortcut, `show`
//! lists both tunnels, a reload changes one tunnel, and with hub A's
//! dmvpnd killed cloud B carries on and the spokes' LAN traffic moves to
//! it: static routes with metrics (cloud A 10, cloud B 20), and
//! `if_state` (IOS `if-state nhrp`) takes Tunnel0's line protocol down
//! once hub A is found dead, so the kernel routes through Tunnel1.
//!
//! Needs root, iproute2 and iputils-ping; fails (never skips) without them.

use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request};
use dmvpn_tests::*;

fn common(name: &str, role: &str) -> String {
    format!(
        r#"
[node]
name = "{name}"
role = "{role}"
[ike]
identity = "address"
[ike.dpd]
interval = 10
retry_interval = 2
retries = 3
{MODERN_IKE}
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "ts"
transforms = {MODERN_TS}
mode = "transport"
[[ipsec.profile]]
name = "p"
transform_sets = ["ts"]
"#
    )
}

/// Tunnel `t` (0: cloud A, 1: cloud B) of node `n`; hubs redirect,
/// spokes register with their cloud's hub and take shortcuts.
fn tunnel(t: u8, n: u8, hub: Option<u8>) -> String {
    let c = t + 1;
    let nhrp = match hub {
        None => "redirect = true\n".to_string(),
        Some(h) => format!(
            "shortcut = true\nif_state = true\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.{c}.1\"\nnbma = \"172.16.{t}.{h}\"\n"
        ),
    };
    let addr = if hub.is_none() { 1 } else { n };
    format!(
        r#"
[[tunnel]]
name = "Tunnel{t}"
address = "192.168.{c}.{addr}/24"
mtu = 1400
source = "172.16.{t}.{n}"
key = {t}
protection = "p"
[tunnel.nhrp]
network_id = {c}
authentication = "cloud{c}"
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

/// `ip route add 10.LAN.0.0/24 via 192.168.C.HOP dev TunnelT metric M`
/// in `ns` (retried until the tunnel exists).
fn route(lab: &Lab, ns: &str, lan: u8, tunnel: u8, hop: u8, metric: u32) {
    let c = tunnel + 1;
    lab.wait("a route into the tunnel", Duration::from_secs(10), || {
        sh(&[
            "ip",
            "-n",
            ns,
            "route",
            "replace",
            &format!("10.{lan}.0.0/24"),
            "via",
            &format!("192.168.{c}.{hop}"),
            "dev",
            &format!("Tunnel{tunnel}"),
            "metric",
            &metric.to_string(),
        ])
        .status
        .success()
    });
}

#[test]
fn dual_hub_dual_cloud() {
    let mut lab = Lab::new("tu");
    let hub_a = lab.node("ha", 1);
    let hub_b = lab.node("hb", 4);
    let s2 = lab.node("s2", 2);
    let s3 = lab.node("s3", 3);
    // Cloud B's underlay: a second subnet beside the first.
    for (ns, n) in [(&hub_b, 4u8), (&s2, 2), (&s3, 3)] {
        ok(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("172.16.1.{n}/24"),
            "dev",
            "nbma0",
        ]);
    }
    let h2 = lab.lan_host(&s2, 2);
    lab.lan_host(&s3, 3);

    lab.start(&hub_a, &(common("hubA", "hub") + &tunnel(0, 1, None)));
    lab.start(&hub_b, &(common("hubB", "hub") + &tunnel(1, 4, None)));
    for (ns, n) in [(&s2, 2u8), (&s3, 3)] {
        let cfg =
            common(&format!("s{n}"), "spoke") + &tunnel(0, n, Some(1)) + &tunnel(1, n, Some(4));
        lab.start(ns, &cfg);
    }
    lab.wait(
        "registrations on both hubs",
        Duration::from_secs(30),
        || {
            lab.registered(&hub_a, &["172.16.0.2", "172.16.0.3"])
                && lab.registered(&hub_b, &["172.16.1.2", "172.16.1.3"])
        },
    );

    // One dmvpnd, both tunnels: each in show dmvpn, with its own source.
    let Reply::Dmvpn(ifs) = lab.ctl(&s2, Request::ShowDmvpn) else {
        panic!("show dmvpn")
    };
    let names: Vec<(&str, Option<std::net::IpAddr>)> = ifs
        .iter()
        .map(|i| (i.interface.as_str(), i.source))
        .collect();
    assert_eq!(
        names,
        [
            ("Tunnel0", Some("172.16.0.2".parse().unwrap())),
            ("Tunnel1", Some("172.16.1.2".parse().unwrap()))
        ]
    );
    let text = ctl_text(&lab, &s2, &["show", "dmvpn"]);
    assert!(
        text.contains("Interface: Tunnel0") && text.contains("Interface: Tunnel1"),
        "{text}"
    );
    // One tunnel of the two, as IOS's `show dmvpn interface`.
    let text = ctl_text(&lab, &s2, &["show", "dmvpn", "interface", "tunnel1"]);
    assert!(
        text.contains("Interface: Tunnel1") && !text.contains("Interface: Tunnel0"),
        "{text}"
    );
    let text = ctl_text(&lab, &s2, &["show", "ip", "nhrp", "Tu1"]);
    assert!(
        text.contains("Tunnel1") && !text.contains("Tunnel0"),
        "{text}"
    );
    for cmd in [
        &["show", "dmvpn", "interface", "Tunnel9"][..],
        &["show", "ip", "nhrp", "nhs", "Tunnel9"],
    ] {
        let out = std::process::Command::new(dmvpn_tests::dmvpnctl())
            .arg("--socket")
            .arg(lab.socket(&s2))
            .args(cmd)
            .output()
            .expect("run dmvpnctl");
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "% Tunnel9 is not a tunnel interface of this dmvpnd (it runs Tunnel0, Tunnel1)\n"
        );
    }

    // A reload applies each tunnel's own changes, named as in the file.
    let s2_cfg = common("s2", "spoke") + &tunnel(0, 2, Some(1)) + &tunnel(1, 2, Some(4));
    let (first, second) = s2_cfg.split_at(s2_cfg.find("name = \"Tunnel1\"").unwrap());
    lab.write_config(
        &s2,
        &format!("{first}{}", second.replacen("mtu = 1400", "mtu = 1380", 1)),
    );
    let Reply::Reloaded(r) = lab.ctl(&s2, Request::Reload) else {
        panic!("reload")
    };
    let keys: Vec<&str> = r.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["tunnel[1].mtu"]);
    let link = sh(&["ip", "-n", &s2, "link", "show", "Tunnel1"]);
    assert!(String::from_utf8_lossy(&link.stdout).contains("mtu 1380"));
    // The tables in another order: each tunnel is found by its name.
    let t0 = tunnel(0, 2, Some(1));
    let t1 = tunnel(1, 2, Some(4)).replacen("mtu = 1400", "mtu = 1380", 1);
    lab.write_config(&s2, &(common("s2", "spoke") + &t1 + &t0));
    let Reply::Reloaded(r) = lab.ctl(&s2, Request::Reload) else {
        panic!("reload")
    };
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    // Adding a tunnel needs a restart; nothing of the file is applied.
    lab.write_config(
        &s2,
        &(s2_cfg.clone()
            + &tunnel(1, 2, Some(4))
                .replace("Tunnel1", "Tunnel2")
                .replace("172.16.1.2", "172.16.2.2")
                .replace("192.168.2.", "192.168.3.")),
    );
    match dmvpn_ctl::client::request(&lab.socket(&s2), &Request::Reload) {
        Ok(dmvpn_ctl::proto::Response::Error { message }) => assert!(
            message.contains(
                "restart dmvpnd to add or remove a [[tunnel]] (2 running, 3 in the file)"
            ),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    lab.write_config(&s2, &s2_cfg);

    // Spoke to spoke over each cloud: relayed, then direct.
    for (dst, nbma) in [("192.168.1.3", "172.16.0.3"), ("192.168.2.3", "172.16.1.3")] {
        assert!(lab.ping(&s2, dst, 3) >= 2, "ping {dst}");
        lab.wait(
            &format!("a shortcut to {nbma}"),
            Duration::from_secs(20),
            || {
                lab.ping(&s2, dst, 1);
                lab.peer_up(&s2, nbma)
            },
        );
    }
    assert!(lab.ipsec_with(&s2, "172.16.0.3").is_some());
    assert!(lab.ipsec_with(&s2, "172.16.1.3").is_some());
    // Conn-ids are numbered once for the node, as on IOS.
    let Reply::IsakmpSa(isakmp) = lab.ctl(&s2, Request::ShowCryptoIsakmpSa) else {
        panic!("show crypto isakmp sa")
    };
    let mut ids: Vec<u32> = isakmp.iter().map(|s| s.conn_id).collect();
    let esp: Vec<u32> = lab
        .ipsec(&s2)
        .iter()
        .flat_map(|p| p.inbound.iter().chain(&p.outbound).map(|s| s.conn_id))
        .collect();
    assert!(ids.len() >= 4 && esp.len() >= 8, "{ids:?} {esp:?}");
    ids.extend(&esp);
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "a conn-id shown twice: {ids:?}");

    // LAN to LAN, as phase 3 networks route: the spokes send the other
    // spoke's LAN to their hub, cloud A preferred (metric 10) and cloud B
    // behind it (20); each hub routes the LANs to their spokes, relays
    // the first packets and redirects, and the spokes install shortcut
    // routes.
    for (ns, other) in [(&s2, 3u8), (&s3, 2)] {
        route(&lab, ns, other, 0, 1, 10);
        route(&lab, ns, other, 1, 1, 20);
    }
    for (hub, t) in [(&hub_a, 0u8), (&hub_b, 1)] {
        for lan in [2u8, 3] {
            route(&lab, hub, lan, t, lan, 0);
        }
    }
    assert!(
        lab.ping(&h2, "10.3.0.10", 3) >= 2,
        "LAN to LAN over cloud A"
    );

    let dev_for = |ns: &str| {
        let o = sh(&["ip", "-n", ns, "route", "get", "10.3.0.10"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(dev_for(&s2).contains("dev Tunnel0"), "{}", dev_for(&s2));
    let shortcut_routes = |ns: &str| {
        let o = sh(&[
            "ip",
            "-n",
            ns,
            "route",
            "show",
            "10.3.0.0/24",
            "proto",
            "78",
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    lab.wait(
        "the cloud-A shortcut route",
        Duration::from_secs(10),
        || {
            lab.ping(&h2, "10.3.0.10", 1);
            has_route(&shortcut_routes(&s2), "Tunnel0", 10)
        },
    );

    let pinger = lab.pinger(&h2, "10.3.0.10");
    let over_b = lab.pinger(&s2, "192.168.2.3");
    std::thread::sleep(Duration::from_secs(1));
    let killed = unix_now();
    lab.kill9(&hub_a);
    // if_state: once dead peer detection and unanswered registrations
    // find hub A gone, Tunnel0's line protocol goes down and the kernel
    // routes through Tunnel1 (metric 20).
    let down = lab.wait(
        "Tunnel0's line protocol down on both spokes",
        Duration::from_secs(60),
        || {
            [&s2, &s3].iter().all(|ns| {
                let o = sh(&["ip", "-n", ns, "link", "show", "Tunnel0"]);
                String::from_utf8_lossy(&o.stdout).contains("NO-CARRIER")
            })
        },
    );
    assert!(dev_for(&s2).contains("dev Tunnel1"), "{}", dev_for(&s2));
    let detail = ctl_text(&lab, &s2, &["show", "dmvpn", "detail"]);
    assert!(
        detail.contains("Interface Tunnel0 is up/down")
            && detail.contains("Interface Tunnel1 is up/up")
            && detail.contains("Interface State Control: Enabled"),
        "{detail}"
    );
    assert!(
        lab.log(&s2)
            .contains("Line protocol on Interface Tunnel0, changed state to down"),
        "{}",
        lab.log(&s2)
    );
    std::thread::sleep(Duration::from_secs(2));
    let lan = pinger.stop();
    let b = over_b.stop();
    let end = unix_now();
    let gap_b = longest_gap(&b, killed, end);
    let gap_lan = longest_gap(&lan, killed, end);
    println!(
        "hub A killed: Tunnel0 down on both spokes after {:.1} s; cloud B spoke-to-spoke longest gap {:.2} s; LAN traffic longest gap {:.2} s ({} echoes answered in {:.1} s)",
        down.as_secs_f64(),
        gap_b.secs(),
        gap_lan.secs(),
        lan.iter().filter(|e| e.at > killed).count(),
        end - killed
    );
    assert!(gap_b.secs() < 1.0, "cloud B carried on: {gap_b:?}");
    assert!(gap_lan.secs() < 1.0, "LAN traffic carried on: {gap_lan:?}");
    // It went over Tunnel1: the SA with spoke 3's cloud-B address counts it.
    let before = lab
        .ipsec_with(&s2, "172.16.1.3")
        .map_or(0, |p| p.counters.encaps);
    assert!(lab.ping(&h2, "10.3.0.10", 5) >= 4);
    let after = lab
        .ipsec_with(&s2, "172.16.1.3")
        .map_or(0, |p| p.counters.encaps);
    assert!(after >= before + 4, "{before} → {after}");

    // Hub A back: the spokes register again, Tunnel0's line protocol comes
    // up and traffic returns to the preferred cloud (each tunnel's
    // shortcut route ranks as the route it shortcuts: metric 10 and 20).
    let restarted = unix_now();
    lab.start(&hub_a, &(common("hubA", "hub") + &tunnel(0, 1, None)));
    for lan in [2u8, 3] {
        route(&lab, &hub_a, lan, 0, lan, 0);
    }
    let back = lab.wait(
        "Tunnel0's line protocol up again on both spokes",
        Duration::from_secs(90),
        || {
            [&s2, &s3].iter().all(|ns| {
                let o = sh(&["ip", "-n", ns, "link", "show", "Tunnel0"]);
                !String::from_utf8_lossy(&o.stdout).contains("NO-CARRIER")
            })
        },
    );
    assert!(lab.ping(&h2, "10.3.0.10", 3) >= 2);
    // Both clouds' shortcuts are in the table; cloud A's ranks first.
    let both = shortcut_routes(&s2);
    assert!(
        has_route(&both, "Tunnel0", 10) && has_route(&both, "Tunnel1", 20),
        "{both}"
    );
    assert!(dev_for(&s2).contains("dev Tunnel0"), "{}", dev_for(&s2));
    println!(
        "hub A restarted: Tunnel0 up again on both spokes after {:.1} s ({:.1} s after the restart began)",
        back.as_secs_f64(),
        unix_now() - restarted
    );
    assert!(lab.alive(&s2) && lab.alive(&s3) && lab.alive(&hub_b));
    // Neither tunnel takes the other's subnet or underlay for a LAN (the
    // networks behind the node are read again every few seconds, and a
    // new one is logged).
    let log = lab.log(&s2);
    for net in [
        "192.168.1.0/24",
        "192.168.2.0/24",
        "172.16.0.0/24",
        "172.16.1.0/24",
    ] {
        assert!(
            !log.contains(&format!("NHRP: {net} is behind this node")),
            "{log}"
        );
    }
    // Both tunnels stop cleanly.
    for ns in [&s2, &s3, &hub_b, &hub_a] {
        lab.sigterm(ns);
    }
}

/// Whether `ip route show` output has a route through `dev` with `metric`.
/// A spoke with Tunnel0 sourced from its underlay interface (`source =
/// "nbma0"`, primary address 172.16.0.2) and Tunnel1 from the address
/// 172.16.1.2 on the same interface. Tunnel0's address moves (to
/// 172.16.0.22, as a new DHCP lease): Tunnel0 registers again from it
/// without a restart while Tunnel1 carries on, untouched; neither tunnel
/// receives the other's packets.
#[test]
fn an_interface_source_beside_another_tunnel() {
    let mut lab = Lab::new("ti");
    let hub_a = lab.node("ha", 1);
    let hub_b = lab.node("hb", 4);
    let s2 = lab.node("s2", 2);
    for (ns, n) in [(&hub_b, 4u8), (&s2, 2)] {
        ok(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("172.16.1.{n}/24"),
            "dev",
            "nbma0",
        ]);
    }
    lab.start(&hub_a, &(common("hubA", "hub") + &tunnel(0, 1, None)));
    lab.start(&hub_b, &(common("hubB", "hub") + &tunnel(1, 4, None)));
    let tunnel0 = tunnel(0, 2, Some(1))
        .replace("source = \"172.16.0.2\"", "source = \"nbma0\"")
        .replace(
            "network_id = 1\n",
            "network_id = 1\nregistration_no_unique = true\n",
        );
    assert!(tunnel0.contains("source = \"nbma0\"") && tunnel0.contains("no_unique"));
    // Two forwarding threads per tunnel: the workers' sockets follow too.
    let cfg = common("s2", "spoke")
        .replace("role = \"spoke\"\n", "role = \"spoke\"\nworkers = 2\n")
        + &tunnel0
        + &tunnel(1, 2, Some(4));
    assert!(cfg.contains("workers = 2"));
    lab.start(&s2, &cfg);
    lab.wait(
        "registrations on both hubs",
        Duration::from_secs(30),
        || lab.registered(&hub_a, &["172.16.0.2"]) && lab.registered(&hub_b, &["172.16.1.2"]),
    );
    let sources = |lab: &Lab| -> Vec<(String, Option<std::net::IpAddr>)> {
        let Reply::Dmvpn(ifs) = lab.ctl(&s2, Request::ShowDmvpn) else {
            panic!("show dmvpn")
        };
        ifs.into_iter().map(|i| (i.interface, i.source)).collect()
    };
    assert_eq!(
        sources(&lab),
        [
            ("Tunnel0".to_string(), Some("172.16.0.2".parse().unwrap())),
            ("Tunnel1".to_string(), Some("172.16.1.2".parse().unwrap()))
        ]
    );
    for hub in ["192.168.1.1", "192.168.2.1"] {
        lab.wait("pings to the hub", Duration::from_secs(15), || {
            lab.ping(&s2, hub, 1) == 1
        });
    }
    let spis = |lab: &Lab| {
        lab.ipsec_with(&hub_b, "172.16.1.2")
            .map(|sa| sa.inbound.iter().map(|e| e.spi).collect::<Vec<_>>())
    };
    let cloud_b_sas = spis(&lab);
    assert!(cloud_b_sas.is_some(), "hub B has an SA with 172.16.1.2");

    let pinger = lab.pinger(&s2, "192.168.1.1");
    lab.wait("the pinger answered", Duration::from_secs(5), || {
        pinger.answered_after(pinger.started) > 0
    });
    let t0 = unix_now();
    // Without 172.16.0.2 the interface's first address is Tunnel1's
    // source, which Tunnel0 leaves to it.
    ok(&[
        "ip",
        "-n",
        &s2,
        "addr",
        "del",
        "172.16.0.2/24",
        "dev",
        "nbma0",
    ]);
    ok(&[
        "ip",
        "-n",
        &s2,
        "addr",
        "add",
        "172.16.0.22/24",
        "dev",
        "nbma0",
    ]);
    lab.wait(
        "hub A lists the spoke at its new NBMA address",
        Duration::from_secs(15),
        || lab.registered(&hub_a, &["172.16.0.22"]),
    );
    lab.wait(
        "echoes answered after the move",
        Duration::from_secs(10),
        || pinger.answered_after(t0) > 0,
    );
    let echoes = pinger.stop();
    let resumed = first_answer_after(&echoes, t0).expect("an answered echo after the move");
    eprintln!(
        "FIGURE interface source beside another tunnel moved: Tunnel0 traffic resumed {resumed:.2} s after the address change"
    );
    assert!(lab.alive(&s2), "the spoke was not restarted");
    assert_eq!(
        sources(&lab),
        [
            ("Tunnel0".to_string(), Some("172.16.0.22".parse().unwrap())),
            ("Tunnel1".to_string(), Some("172.16.1.2".parse().unwrap()))
        ]
    );
    let log = lab.log(&s2);
    assert!(
        log.contains("NBMA address changed from 172.16.0.2 to 172.16.0.22"),
        "{log}"
    );
    assert!(
        log.contains("2 forwarding threads interface=Tunnel0"),
        "{log}"
    );
    // Cloud B never noticed: same registration, same SAs, still carrying.
    assert!(lab.registered(&hub_b, &["172.16.1.2"]));
    assert_eq!(lab.ping(&s2, "192.168.2.1", 3), 3);
    assert_eq!(
        spis(&lab),
        cloud_b_sas,
        "cloud B's SAs were not renegotiated"
    );
    // Each tunnel took only the ESP sent to its own address.
    let Reply::IpsecSa(r) = lab.ctl(&s2, Request::ShowCryptoIpsecSa) else {
        panic!("show crypto ipsec sa")
    };
    assert_eq!(r.interfaces.len(), 2);
    for i in &r.interfaces {
        let bad: Vec<_> = i.recv_errors.iter().filter(|c| c.count > 0).collect();
        assert!(bad.is_empty(), "{}: {bad:?}", i.interface);
    }
}

fn has_route(routes: &str, dev: &str, metric: u32) -> bool {
    routes.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.windows(2).any(|p| p == ["dev", dev])
            && w.windows(2)
                .any(|p| p[0] == "metric" && p[1] == metric.to_string())
    })
}

fn ctl_text(lab: &Lab, ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(dmvpn_tests::dmvpnctl())
        .arg("--socket")
        .arg(lab.socket(ns))
        .args(args)
        .output()
        .expect("run dmvpnctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
