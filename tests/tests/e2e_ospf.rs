//! OSPF over the tunnel: hub + two spokes running real `dmvpnd`, with
//! bird (Debian `bird2`) in each node namespace. The tunnel is an OSPF
//! broadcast network with the hub as DR (spokes have priority 0, the
//! classic DMVPN design): spoke hellos reach the hub through the spokes'
//! multicast list (their NHS), the hub's reach every registered spoke
//! (`map multicast dynamic`). Each spoke announces its LAN and learns the
//! other's, with the other spoke's tunnel address as next hop.
//!
//! Needs root, iproute2, ping and bird2; fails (never skips) without them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::DmvpnState;
use dmvpn_tests::*;

fn dmvpn_config(role: &str, n: u8) -> String {
    let nhrp = if role == "hub" {
        String::new()
    } else {
        // `multicast`: OSPF hellos go to the hub (IOS `ip nhrp nhs … multicast`).
        "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\nmulticast = true\n[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n".to_string()
    };
    format!(
        r#"
[node]
name = "n{n}"
role = "{role}"
[ike]
identity = "address"
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "strong"
transforms = ["esp-gcm 256"]
mode = "transport"
[[ipsec.profile]]
name = "cisco"
transform_sets = ["strong"]
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
mtu = 1400
source = "172.16.0.{n}"
mode = "gre-multipoint"
key = 0
protection = "cisco"
[tunnel.nhrp]
network_id = 1
authentication = "cisco123"
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

/// bird: OSPF on Tunnel0 (broadcast, hub DR) and the LAN (stub); OSPF
/// routes to other LANs go to the kernel.
fn bird_config(n: u8, lan: Option<&str>) -> String {
    let priority = if n == 1 { 255 } else { 0 };
    let lan_if = lan
        .map(|l| format!("interface \"{l}\" {{ stub yes; }};"))
        .unwrap_or_default();
    format!(
        r#"
router id 192.168.1.{n};
log stderr all;
protocol device {{ scan time 1; }}
protocol kernel {{
    ipv4 {{
        import none;
        export filter {{
            if source = RTS_OSPF && net ~ [ 10.0.0.0/8{{24,24}} ] && net != 10.{n}.0.0/24 then accept;
            reject;
        }};
    }};
}}
protocol ospf v2 {{
    ipv4 {{ import all; export none; }};
    area 0 {{
        interface "Tunnel0" {{
            type broadcast;
            priority {priority};
            hello 1;
            dead 4;
            wait 2;
            retransmit 2;
        }};
        {lan_if}
    }};
}}
"#
    )
}

/// Lines of `show ospf neighbors` in state Full.
fn full_neighbors(lab: &Lab, ns: &str) -> Vec<String> {
    lab.birdc(ns, &["show", "ospf", "neighbors"])
        .lines()
        .filter(|l| l.contains("Full"))
        .map(str::to_string)
        .collect()
}

fn kernel_route(ns: &str, prefix: &str) -> String {
    let o = sh(&["ip", "-n", ns, "route", "show", prefix]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn ospf_adjacencies_and_lan_routes_over_multicast_replication() {
    let bird = sh(&["bird", "--version"]);
    assert!(
        bird.status.success() || !bird.stderr.is_empty(),
        "bird is missing: install bird2"
    );
    let mut lab = Lab::new("os");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    let h1 = lab.lan_host(&s1, 2);
    lab.lan_host(&s2, 3);
    lab.start(&hub, &dmvpn_config("hub", 1));
    lab.start(&s1, &dmvpn_config("spoke", 2));
    lab.start(&s2, &dmvpn_config("spoke", 3));
    let hub_ip: IpAddr = "172.16.0.1".parse().unwrap();
    for s in [&s1, &s2] {
        lab.wait(
            "spoke registered with the hub",
            Duration::from_secs(60),
            || {
                lab.dmvpn_peers(s)
                    .iter()
                    .any(|(n, st)| *n == hub_ip && *st == DmvpnState::Up)
            },
        );
    }
    let t0 = Instant::now();
    let lan2 = format!("{}2l", lab.tag);
    let lan3 = format!("{}3l", lab.tag);
    lab.bird(&hub, &bird_config(1, None));
    lab.bird(&s1, &bird_config(2, Some(&lan2)));
    lab.bird(&s2, &bird_config(3, Some(&lan3)));

    lab.wait("hub Full with both spokes", Duration::from_secs(60), || {
        full_neighbors(&lab, &hub).len() == 2
    });
    let full = t0.elapsed();
    for s in [&s1, &s2] {
        lab.wait("spoke Full with the hub", Duration::from_secs(30), || {
            full_neighbors(&lab, s)
                .iter()
                .any(|l| l.contains("192.168.1.1"))
        });
    }
    lab.wait(
        "spokes learn each other's LAN",
        Duration::from_secs(60),
        || {
            kernel_route(&s1, "10.3.0.0/24").contains("via 192.168.1.3")
                && kernel_route(&s2, "10.2.0.0/24").contains("via 192.168.1.2")
        },
    );
    let learned = t0.elapsed();
    // The hub learns both LANs too (and relays between the spokes).
    lab.wait(
        "hub learns the spokes' LANs",
        Duration::from_secs(30),
        || {
            kernel_route(&hub, "10.2.0.0/24").contains("via 192.168.1.2")
                && kernel_route(&hub, "10.3.0.0/24").contains("via 192.168.1.3")
        },
    );
    eprintln!("OSPF Full on the hub after {full:?}; LAN routes on both spokes after {learned:?}");
    // LAN to LAN over the learned routes (first packets may cross the hub
    // while a spoke-to-spoke path comes up).
    let t1 = Instant::now();
    lab.wait("LAN-to-LAN ping", Duration::from_secs(30), || {
        lab.ping(&h1, "10.3.0.10", 1) == 1
    });
    assert!(
        lab.ping(&h1, "10.3.0.10", 10) >= 9,
        "LAN-to-LAN ping over OSPF routes"
    );
    eprintln!("first LAN-to-LAN echo after {:?}", t1.elapsed());
}
