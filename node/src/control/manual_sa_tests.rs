//! Manual SAs: key-log lines and the `show crypto ipsec sa` peer port.

use std::net::IpAddr;

use dmvpn_nhrp::Instant;

use super::{Node, Output};

fn node(udp: bool) -> Node {
    let text = format!(
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
    );
    let cfg = dmvpn_config::Config::from_str(&text, "t.toml")
        .expect("valid config")
        .config;
    Node::new(&cfg, super::Seed([1; 32]), Instant::ZERO).unwrap()
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
