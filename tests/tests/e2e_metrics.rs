//! The Prometheus endpoint of a running hub, scraped from its namespace
//! and read by Prometheus's own Python parser (Debian's
//! python3-prometheus-client): the families are there and the counters
//! move with traffic. Needs root (namespaces, TUN).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use dmvpn_tests::*;

const SPOKE: &str = "172.16.0.2";
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
    if n == 1 {
        c += "[metrics]\nlisten = \"127.0.0.1:9465\"\n";
    }
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
    let _hub_host = lab.lan_host(&hub, 1);
    let host = lab.lan_host(&spoke, 2);
    lab.start(&hub, &config(1));
    hub_lan_routes(&lab, &hub);
    lab.start(&spoke, &config(2));
    lab.wait("spoke registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[SPOKE])
    });
    lab.wait("LAN ping through the hub", Duration::from_secs(15), || {
        lab.ping(&host, HUB_LAN, 1) == 1
    });

    let before = scrape(&hub);
    assert_eq!(get(&before, "dmvpn_tunnels{}"), 1.0);
    assert_eq!(
        get(&before, "dmvpn_isakmp_sas{state=\"QM_IDLE\"}"),
        1.0,
        "one phase 1 SA with the spoke"
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
    let (in0, out0) = (get(&before, &key_in), get(&before, &key_out));

    assert_eq!(lab.ping(&host, HUB_LAN, 20), 20);
    let after = scrape(&hub);
    let (in1, out1) = (get(&after, &key_in), get(&after, &key_out));
    println!("peer packets in {in0} -> {in1}, out {out0} -> {out1} over 20 pings");
    assert!(in1 >= in0 + 20.0, "in {in0} -> {in1}");
    assert!(out1 >= out0 + 20.0, "out {out0} -> {out1}");

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
