//! Manual SAs: key-log lines and the `show crypto ipsec sa` peer port.

use std::net::IpAddr;

use dmvpn_nhrp::Instant;

use super::{Node, Output};

fn config_text(udp: bool) -> String {
    format!(
        r#"
[node]
name = "n1"
role = "spoke"
[[ipsec.manual_sa]]
peer = "172.16.0.2"
transforms = ["esp-aes 128", "esp-sha-hmac"]
mode = "transport"
udp_encapsulation = {udp}
[ipsec.manual_sa.inbound]
spi = 4097
encryption_key = "{ki}"
authentication_key = "{ai}"
[ipsec.manual_sa.outbound]
spi = 8193
encryption_key = "{ko}"
authentication_key = "{ao}"
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.1/24"
mtu = 1400
source = "172.16.0.1"
destination = "172.16.0.2"
mode = "gre"
"#,
        ki = "11".repeat(16),
        ai = "aa".repeat(20),
        ko = "22".repeat(16),
        ao = "bb".repeat(20),
    )
}

fn parse(text: &str) -> dmvpn_config::Config {
    dmvpn_config::Config::from_str(text, "t.toml")
        .expect("valid config")
        .config
}

fn node(udp: bool) -> Node {
    Node::new(
        &parse(&config_text(udp)),
        super::Seed([1; 32]),
        Instant::ZERO,
    )
    .unwrap()
}

/// A manual SA entry with `peer` and SPIs `spi` (in) and `spi + 1` (out).
fn manual_sa(peer: &str, spi: u32) -> String {
    format!(
        "[[ipsec.manual_sa]]\npeer = \"{peer}\"\ntransforms = [\"esp-aes 128\", \"esp-sha-hmac\"]\n\
         [ipsec.manual_sa.inbound]\nspi = {spi}\nencryption_key = \"{k}\"\nauthentication_key = \"{a}\"\n\
         [ipsec.manual_sa.outbound]\nspi = {o}\nencryption_key = \"{k}\"\nauthentication_key = \"{a}\"\n",
        o = spi + 1,
        k = "33".repeat(16),
        a = "cc".repeat(20)
    )
}

#[test]
fn a_reload_installs_replaces_and_deletes_manual_sas() {
    use crate::router::{Options, Router};
    let first = config_text(false);
    let mut r = Router::from_config(
        &parse(&first),
        super::Seed([1; 32]),
        Instant::ZERO,
        Options::default(),
    )
    .unwrap();
    let peer2 = IpAddr::from([172, 16, 0, 2]);
    let peer3 = IpAddr::from([172, 16, 0, 3]);
    let out_spi = |r: &Router, p: IpAddr| r.engine().sadb().outbound(p).map(|s| s.spi);
    assert_eq!(out_spi(&r, peer2), Some(8193));
    assert!(r.engine().sadb().inbound(4097).is_some());

    // The first SA's keys change (new SPIs) and one with another peer is added.
    let changed =
        first
            .replacen("spi = 4097", "spi = 5001", 1)
            .replacen("spi = 8193", "spi = 5002", 1);
    let two = format!("{}{}", changed, manual_sa("172.16.0.3", 6001));
    let t1 = Instant::ZERO + std::time::Duration::from_secs(1);
    let summary = r.reconfigure(t1, &parse(&two)).unwrap();
    assert_eq!(summary.changes.len(), 1, "{summary:?}");
    assert_eq!(summary.changes[0].key, "ipsec.manual_sa");
    assert!(
        r.engine().sadb().inbound(4097).is_none(),
        "the old inbound SA is gone"
    );
    assert!(r.engine().sadb().inbound(5001).is_some());
    assert_eq!(out_spi(&r, peer2), Some(5002));
    assert!(r.engine().sadb().inbound(6001).is_some());
    assert_eq!(out_spi(&r, peer3), Some(6002));
    let peers: Vec<IpAddr> = r
        .node()
        .show_ipsec_sa(t1, None)
        .iter()
        .map(|s| s.current_peer)
        .collect();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers.contains(&peer2) && peers.contains(&peer3));

    // The added one removed again: its SAs and its peer go, the first stays.
    let t2 = t1 + std::time::Duration::from_secs(1);
    let summary = r.reconfigure(t2, &parse(&changed)).unwrap();
    assert_eq!(summary.changes[0].key, "ipsec.manual_sa");
    assert!(r.engine().sadb().inbound(6001).is_none());
    assert_eq!(out_spi(&r, peer3), None);
    assert_eq!(out_spi(&r, peer2), Some(5002));
    let sas = r.node().show_ipsec_sa(t2, None);
    assert_eq!(sas.len(), 1);
    assert_eq!(sas[0].current_peer, peer2);
}

fn keylog_lines(n: &mut Node) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::KeyLog(l) = o {
            v.push(l);
        }
    }
    v
}

#[test]
fn manual_sa_keylog_lines() {
    let mut n = node(false);
    assert!(keylog_lines(&mut n).is_empty(), "off by default");
    n.set_keylog(true);
    let lines = keylog_lines(&mut n);
    let out = format!(
        "\"IPv4\",\"172.16.0.1\",\"172.16.0.2\",\"0x00002001\",\"AES-CBC [RFC3602]\",\"0x{}\",\"HMAC-SHA-1-96 [RFC2404]\",\"0x{}\"",
        "22".repeat(16),
        "bb".repeat(20)
    );
    let inb = format!(
        "\"IPv4\",\"172.16.0.2\",\"172.16.0.1\",\"0x00001001\",\"AES-CBC [RFC3602]\",\"0x{}\",\"HMAC-SHA-1-96 [RFC2404]\",\"0x{}\"",
        "11".repeat(16),
        "aa".repeat(20)
    );
    assert_eq!(lines, vec![out, inb]);
    // Turning it on again writes nothing twice.
    n.set_keylog(true);
    assert!(keylog_lines(&mut n).is_empty());
}

#[test]
fn manual_sa_show_peer_port() {
    for (udp, port) in [(false, 500), (true, 4500)] {
        let n = node(udp);
        let sas = n.show_ipsec_sa(Instant::ZERO, None);
        assert_eq!(sas.len(), 1);
        assert_eq!(sas[0].current_peer, IpAddr::from([172, 16, 0, 2]));
        assert_eq!(sas[0].peer_port, port, "udp_encapsulation = {udp}");
    }
}
