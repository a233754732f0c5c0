//! The Prometheus endpoints of a running hub and spoke, scraped from their
//! namespaces and read by Prometheus's own Python parser (Debian's
//! python3-prometheus-client): the families are there and the counters
//! move with traffic (packets and bytes per peer; a spoke-to-spoke ping
//! gives a resolution latency observation, a phase 1 and a Quick Mode).
//! Needs root (namespaces, TUN).

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use dmvpn_ctl::proto::DmvpnState;
use dmvpn_tests::*;

const SPOKE: &str = "172.16.0.2";
const SPOKE2: &str = "172.16.0.3";
const HUB_LAN: &str = "10.1.0.10";

fn config(n: u8) -> String {
    let mut c = SeedNode {
        ike: "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\n",
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: false,
        hub_map: false,
    }
    .config(n);
    // Each node in its own namespace, each with its own loopback.
    c += "[metrics]\nlisten = \"127.0.0.1:9465\"\n";
    c
}

/// Every sample of one scrape, by `name{labels}` (labels sorted), as the
/// reference parser reads them.
fn scrape(ns: &str) -> HashMap<String, f64> {
    let script = r#"
import urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
r = urllib.request.urlopen("http://127.0.0.1:9465/metrics", timeout=5)
assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers["Content-Type"]
for f in parse(r.read().decode()):
    for s in f.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3", "-c", script])
        .output()
        .expect("ip netns exec python3");
    assert!(
        out.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn metrics_are_scraped_and_move_with_traffic() {
    let mut lab = Lab::new("mt");
    let hub = lab.node("hub", 1);
    let spoke = lab.node("s1", 2);
    let spoke2 = lab.node("s2", 3);
    let _hub_host = lab.lan_host(&hub, 1);
    let host = lab.lan_host(&spoke, 2);
    lab.start(&hub, &config(1));
    hub_lan_routes(&lab, &hub);
    lab.start(&spoke, &config(2));
    lab.start(&spoke2, &config(3));
    lab.wait("spokes registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[SPOKE, SPOKE2])
    });
    lab.wait("LAN ping through the hub", Duration::from_secs(15), || {
        lab.ping(&host, HUB_LAN, 1) == 1
    });

    let before = scrape(&hub);
    assert_eq!(get(&before, "dmvpn_tunnels{}"), 1.0);
    assert_eq!(
        get(&before, "dmvpn_isakmp_sas{state=\"QM_IDLE\"}"),
        2.0,
        "one phase 1 SA with each spoke"
    );
    assert!(get(&before, "dmvpn_ipsec_sas{direction=\"in\"}") >= 1.0);
    assert!(
        get(
            &before,
            "dmvpn_nhrp_packets_total{direction=\"received\",interface=\"Tunnel0\",type=\"registration_request\"}"
        ) >= 1.0
    );
    let key_in = format!("dmvpn_peer_packets_total{{direction=\"in\",peer=\"{SPOKE}\"}}");
    let key_out = format!("dmvpn_peer_packets_total{{direction=\"out\",peer=\"{SPOKE}\"}}");
    let bytes_in = format!("dmvpn_peer_bytes_total{{direction=\"in\",peer=\"{SPOKE}\"}}");
    let bytes_out = format!("dmvpn_peer_bytes_total{{direction=\"out\",peer=\"{SPOKE}\"}}");
    let (in0, out0) = (get(&before, &key_in), get(&before, &key_out));
    let (bin0, bout0) = (get(&before, &bytes_in), get(&before, &bytes_out));

    assert_eq!(lab.ping(&host, HUB_LAN, 20), 20);
    let after = scrape(&hub);
    let (in1, out1) = (get(&after, &key_in), get(&after, &key_out));
    let (bin1, bout1) = (get(&after, &bytes_in), get(&after, &bytes_out));
    println!("peer packets in {in0} -> {in1}, out {out0} -> {out1} over 20 pings");
    println!("peer bytes in {bin0} -> {bin1}, out {bout0} -> {bout1} over 20 pings");
    assert!(in1 >= in0 + 20.0, "in {in0} -> {in1}");
    assert!(out1 >= out0 + 20.0, "out {out0} -> {out1}");
    // Each echo is an 84-byte IP packet inside GRE inside ESP.
    assert!(bin1 >= bin0 + 20.0 * 84.0, "bytes in {bin0} -> {bin1}");
    assert!(bout1 >= bout0 + 20.0 * 84.0, "bytes out {bout0} -> {bout1}");

    spoke_to_spoke_moves_the_spoke_counters(&lab, &spoke);

    // Anything but GET /metrics is refused; the endpoint still serves after.
    let probe = r#"
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:9465/other", timeout=5)
except urllib.error.HTTPError as e:
    print(e.code)
"#;
    let out = Command::new("ip")
        .args(["netns", "exec", &hub, "/usr/bin/python3", "-c", probe])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "404");
    assert!(get(&scrape(&hub), "dmvpn_tunnels{}") == 1.0);
}

/// A ping from spoke 1 to spoke 2 over a fresh shortcut: spoke 1 resolved
/// spoke 2 (one latency observation), ran a phase 1 and a Quick Mode with
/// it, and sends and receives ESP bytes to and from it.
fn spoke_to_spoke_moves_the_spoke_counters(lab: &Lab, s1: &str) {
    let phase1 = "dmvpn_ike_handshakes_completed_total{exchange=\"phase1\",interface=\"Tunnel0\"}";
    let quick =
        "dmvpn_ike_handshakes_completed_total{exchange=\"quick_mode\",interface=\"Tunnel0\"}";
    let started = "dmvpn_ike_handshakes_started_total{exchange=\"phase1\",interface=\"Tunnel0\"}";
    let answered = "dmvpn_nhrp_resolution_latency_seconds_count{interface=\"Tunnel0\"}";
    let inf = "dmvpn_nhrp_resolution_latency_seconds_bucket{interface=\"Tunnel0\",le=\"+Inf\"}";
    let sum = "dmvpn_nhrp_resolution_latency_seconds_sum{interface=\"Tunnel0\"}";
    let before = scrape(s1);
    // Registered with the hub: one phase 1 and one Quick Mode so far.
    assert!(get(&before, phase1) >= 1.0 && get(&before, quick) >= 1.0);
    let s2_ip: IpAddr = SPOKE2.parse().unwrap();
    lab.wait("shortcut to spoke 2", Duration::from_secs(20), || {
        lab.ping(s1, "192.168.1.3", 1);
        lab.dmvpn_peers(s1)
            .iter()
            .any(|(n, st)| *n == s2_ip && *st == DmvpnState::Up)
    });
    assert_eq!(
        lab.ping(s1, "192.168.1.3", 10),
        10,
        "ping over the shortcut"
    );
    let after = scrape(s1);
    let moved = |k: &str| (get(&before, k), get(&after, k));
    let (a0, a1) = moved(answered);
    println!(
        "resolutions answered {a0} -> {a1}, latency sum {:?}",
        moved(sum)
    );
    assert!(a1 >= a0 + 1.0, "resolutions answered {a0} -> {a1}");
    assert_eq!(get(&after, inf), a1, "+Inf bucket holds every observation");
    let (p0, p1) = moved(phase1);
    let (q0, q1) = moved(quick);
    println!("phase 1 completed {p0} -> {p1}, quick mode {q0} -> {q1}");
    assert!(p1 >= p0 + 1.0, "phase 1 completed {p0} -> {p1}");
    assert!(q1 >= q0 + 1.0, "quick mode completed {q0} -> {q1}");
    assert!(get(&after, started) >= p1);
    for dir in ["in", "out"] {
        let k = format!("dmvpn_peer_bytes_total{{direction=\"{dir}\",peer=\"{SPOKE2}\"}}");
        let b = get(&after, &k);
        println!("bytes {dir} with spoke 2: {b}");
        assert!(b >= 10.0 * 84.0, "{k} = {b}");
    }
}
