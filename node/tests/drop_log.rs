//! Packets the data plane drops are logged, summarised: a packet routed
//! into the tunnel with no NHRP mapping names its destination; a flood
//! costs one line per reason per interval. In its own test binary:
//! tracing caches callsite interest process-wide.

use std::net::Ipv4Addr;
use std::time::Duration;

use dmvpn_nhrp::Instant;
use dmvpn_node::engine::Counters;
use dmvpn_node::{Node, Seed};

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

const HUB: &str = r#"
[node]
name = "hub"
role = "hub"
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.1/24"
source = "172.16.0.1"
mode = "gre-multipoint"
routes = ["10.82.0.0/16"]
[tunnel.nhrp]
network_id = 1
authentication = "cisco123"
allowed_nbma = ["172.16.0.0/24"]
"#;

fn stats(no_route: u64, unprotected: u64) -> Counters {
    let mut counters = Counters {
        no_route,
        unprotected,
        ..Counters::default()
    };
    counters.last.no_route_dst = Some(Ipv4Addr::new(10, 82, 1, 10));
    counters.last.unprotected_src = Some(Ipv4Addr::new(172, 16, 0, 97));
    counters
}

#[test]
fn drops_are_logged_with_their_reason_at_most_once_per_interval() {
    let cap = Captured::default();
    let w = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    tracing::subscriber::with_default(sub, || {
        let cfg = dmvpn_config::Config::from_str(HUB, "hub.toml")
            .unwrap()
            .config;
        let mut node = Node::new(&cfg, Seed([3; 32]), Instant::ZERO).unwrap();
        let t = |s: u64| Instant::ZERO + Duration::from_secs(s);
        node.handle_stats(t(1), &stats(1, 0), 0, std::iter::empty());
        // A flood within the next ten seconds adds no line...
        for s in 2..10 {
            node.handle_stats(t(s), &stats(1000 * s, 500 * s), 0, std::iter::empty());
        }
        // ...and the next line sums it up.
        node.handle_stats(t(12), &stats(20_001, 7_000), 0, std::iter::empty());
    });
    let lines = cap.lines();
    let no_map: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("no NHRP mapping"))
        .collect();
    assert_eq!(no_map.len(), 2, "{lines:#?}");
    assert!(
        no_map[0].contains("1 packet(s) dropped: no NHRP mapping for 10.82.1.10 via Tunnel0"),
        "{lines:#?}"
    );
    assert!(no_map[1].contains("20000 packet(s) dropped"), "{lines:#?}");
    let not_ipsec: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("RECVD_PKT_NOT_IPSEC"))
        .collect();
    assert_eq!(not_ipsec.len(), 2, "{lines:#?}");
    assert!(
        not_ipsec[0].contains(
            "1000 packet(s) not protected by IPsec dropped on Tunnel0 (last from 172.16.0.97"
        ),
        "{lines:#?}"
    );
    assert!(not_ipsec[1].contains("6000 packet(s)"), "{lines:#?}");
}
