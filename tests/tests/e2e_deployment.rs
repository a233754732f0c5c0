//! docs/deployment.md's setup in namespaces: `examples/modern-hub.toml`
//! and `examples/modern-spoke.toml` as shipped (only a control socket
//! added), on the documented addresses — hub 203.0.113.10 with LAN
//! 10.1.0.0/24, spoke 198.51.100.20 with LAN 10.2.0.0/24 — and the static
//! routing recipe and the documented nftables ruleset loaded on both
//! hosts: the spoke registers, IKE and ESP come up with the modern suite,
//! and the LANs reach each other through the firewalls.
//!
//! Needs root, iproute2 and ping; fails (never skips) without them.

use std::path::PathBuf;
use std::time::Duration;

use dmvpn_tests::*;

/// The nftables ruleset docs/deployment.md gives, as written there.
fn documented_ruleset() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/deployment.md");
    let doc = std::fs::read_to_string(p).expect("read docs/deployment.md");
    let start = doc
        .find("#!/usr/sbin/nft -f")
        .expect("ruleset in the document");
    let len = doc[start..].find("```").expect("end of the ruleset");
    doc[start..start + len].to_string()
}

fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(p).expect("read example")
}

#[test]
fn e2e_modern_examples_as_documented() {
    let mut lab = Lab::new("dp");
    let hub = lab.node("hub", 1);
    let spoke = lab.node("s1", 2);
    // The documented public addresses, on the same switch.
    for (ns, addr, other) in [
        (&hub, "203.0.113.10/24", "198.51.100.0/24"),
        (&spoke, "198.51.100.20/24", "203.0.113.0/24"),
    ] {
        ok(&["ip", "-n", ns, "addr", "add", addr, "dev", "nbma0"]);
        ok(&["ip", "-n", ns, "route", "add", other, "dev", "nbma0"]);
    }
    lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&spoke, 2);
    // The LAN interface is `eth1` in the document; the firewall it gives
    // goes on both hosts.
    let rules = lab.path("nftables.conf");
    std::fs::write(&rules, documented_ruleset()).expect("write ruleset");
    for (ns, n) in [(&hub, 1), (&spoke, 2)] {
        let lan = format!("{}{n}l", lab.tag);
        ok(&["ip", "-n", ns, "link", "set", &lan, "down"]);
        ok(&["ip", "-n", ns, "link", "set", &lan, "name", "eth1"]);
        ok(&["ip", "-n", ns, "link", "set", "eth1", "up"]);
        ok(&[
            "ip",
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            rules.to_str().unwrap(),
        ]);
    }
    lab.start(&hub, &example("modern-hub.toml"));
    lab.start(&spoke, &example("modern-spoke.toml"));
    // Section 7's static recipe on the hub.
    lab.wait(
        "hub route to the spoke LAN",
        Duration::from_secs(10),
        || {
            sh(&[
                "ip",
                "-n",
                &hub,
                "route",
                "replace",
                "10.2.0.0/24",
                "via",
                "172.31.255.2",
                "dev",
                "Tunnel0",
            ])
            .status
            .success()
        },
    );
    lab.wait("spoke registered", Duration::from_secs(20), || {
        lab.registered(&hub, &["198.51.100.20"])
    });
    assert_eq!(lab.ping(&spoke, "172.31.255.1", 3), 3, "tunnel ping");
    let got = lab.ping(&h2, "10.1.0.10", 5);
    assert!(got >= 4, "LAN to LAN: {got}/5");
    let sa = lab
        .ipsec_with(&hub, "198.51.100.20")
        .expect("IPsec SA with the spoke");
    let text = format!("{sa:?}");
    assert!(text.contains("GCM") || text.contains("gcm"), "{text}");
    // The ruleset stayed in force throughout.
    let o = sh(&["ip", "netns", "exec", &spoke, "nft", "list", "ruleset"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("policy drop"));
    lab.stop_all();
}
