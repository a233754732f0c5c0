//! Debug narration: IOS-like lines on target `dmvpn::nhrp`, never the
//! password. In its own test binary: tracing caches callsite interest
//! process-wide, so a scoped subscriber must not race other tests.

mod common;

use common::sim::*;
use dmvpn_nhrp::engine::Password;

#[test]
fn debug_lines_read_like_ios_and_never_show_the_password() {
    let logs = common::logs::capture(|| {
        let mut s3 = spoke_cfg(3);
        s3.wait_for_ipsec = true;
        let mut bad = spoke_cfg(4);
        bad.authentication = Some(Password::new("wrongpw"));
        let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), s3, bad]);
        net.secs(1);
        let now = net.now;
        net.nodes[1].resolve(now, ip("192.168.1.3"));
        net.pump();
        net.nodes[2].ipsec_up(now, ip("172.16.0.2"));
        net.pump();
    });
    let has = |needle: &str| logs.iter().any(|(_, l)| l.contains(needle));
    for needle in [
        "NHRP: Send Registration Request via Tunnel0 vrf 0, packet size: ",
        "NHRP: Receive Registration Reply via Tunnel0 vrf 0, packet size: ",
        "NHRP: Send Resolution Request via Tunnel0 vrf 0, packet size: ",
        "NHRP: Forwarding Resolution Request via Tunnel0 vrf 0, packet size: ",
        " src: 192.168.1.2, dst: 192.168.1.3",
        "NHRP: Delaying resolution request nbma src:172.16.0.3 nbma dst:172.16.0.2 reason:IPSEC-IFC: need to wait for IPsec SAs.",
        "NHRP: Process delayed resolution request src:192.168.1.2 dst:192.168.1.3",
        "NHRP: Receive Resolution Reply via Tunnel0 vrf 0, packet size: ",
        "NHRP: Authentication failure for Registration Request from 172.16.0.4",
    ] {
        assert!(has(needle), "missing {needle:?} in {logs:#?}");
    }
    assert!(!has("cisco123") && !has("wrongpw"), "password logged");
    let dbg = format!("{:?}", spoke_cfg(2));
    assert!(
        !dbg.contains("cisco123") && !dbg.contains("99, 105, 115"),
        "{dbg}"
    );
}

fn warnings(logs: &[(tracing::Level, String)]) -> Vec<&str> {
    logs.iter()
        .filter(|(l, _)| *l == tracing::Level::WARN)
        .map(|(_, s)| s.as_str())
        .collect()
}

/// A flood of refused input (bad passwords, purges of others' entries)
/// logs the first of each kind, then one summary line per interval with
/// the counts; after a quiet interval the next one is logged in full.
#[test]
fn refused_input_warnings_are_summarised_per_interval() {
    use dmvpn_nhrp::ext::{AUTH_TYPE_CLEARTEXT, ExtBody};
    use dmvpn_nhrp::wire::ip_to_addr;
    use dmvpn_nhrp::{Body, Cie, Extension, Packet, PacketType};
    let packet = |ty, pw: &[u8]| {
        let mut p = Packet::new(
            ty,
            ip("172.16.0.97"),
            ip("192.168.1.97"),
            ip(HUB_TUN),
            Body::Cies {
                request_id: 1,
                cies: vec![Cie {
                    prefix_len: 24,
                    proto: ip_to_addr(ip("192.168.1.0")),
                    ..Cie::default()
                }],
            },
        );
        p.extensions = vec![
            Extension::new(ExtBody::Authentication {
                auth_type: AUTH_TYPE_CLEARTEXT,
                data: pw.to_vec(),
            }),
            Extension::new(ExtBody::End),
        ];
        p.emit()
    };
    let bad_auth = packet(PacketType::RegistrationRequest, b"guess");
    let purge = packet(PacketType::PurgeRequest, b"cisco123");
    let mut refused = 0u64;
    let mut stats = None;
    let logs = common::logs::capture(|| {
        let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2), spoke_cfg(3)]);
        net.secs(1);
        // 300 s of flood, 10 packets a second.
        for _ in 0..3000 {
            let now = net.now;
            net.nodes[0].handle(now, ip("172.16.0.97"), &bad_auth);
            net.nodes[0].handle(now, ip("172.16.0.97"), &purge);
            refused += 2;
            net.run_until(now + std::time::Duration::from_millis(100));
        }
        // Quiet for two intervals, then one more.
        net.secs(130);
        let now = net.now;
        net.nodes[0].handle(now, ip("172.16.0.97"), &bad_auth);
        net.pump();
        refused += 1;
        stats = Some(net.nodes[0].stats().clone());
    });
    let w = warnings(&logs);
    let full_auth = w
        .iter()
        .filter(|l| l.contains("Authentication failure for Registration Request from 172.16.0.97"))
        .count();
    let full_purge = w
        .iter()
        .filter(|l| l.contains("Purge Request from 172.16.0.97: 2 entries it does not own kept"))
        .count();
    let summaries: Vec<&&str> = w
        .iter()
        .filter(|l| l.starts_with("NHRP: suppressed in the last 60 s: "))
        .collect();
    assert_eq!((full_auth, full_purge), (2, 1), "{w:#?}");
    assert_eq!(summaries.len(), 5, "{summaries:#?}");
    assert!(
        summaries[1].contains("authentication failure 600")
            && summaries[1].contains("purge refused 600"),
        "{summaries:#?}"
    );
    assert_eq!(w.len(), full_auth + full_purge + summaries.len(), "{w:#?}");
    let st = stats.unwrap();
    assert_eq!(st.rx_auth_failed + 3000, refused);
    assert_eq!(st.warnings_suppressed, refused - 3);
}

/// A spoke whose registrations are refused says so once, not for every
/// retry, and once when they are accepted again.
#[test]
fn refused_registration_is_logged_once_per_change() {
    use dmvpn_nhrp::Engine;
    let logs = common::logs::capture(|| {
        let mut net = Net::new(vec![hub_cfg(), spoke_cfg(2)]);
        net.secs(1);
        let mut intruder = spoke_cfg(2);
        intruder.nbma = ip("172.16.0.33");
        net.nodes.push(Engine::new(intruder, net.now));
        net.secs(600);
        net.nodes[0].peer_gone(ip("172.16.0.2"));
        net.secs(120);
        assert!(net.nodes[2].nhs_status()[0].up);
    });
    let w = warnings(&logs);
    let refused: Vec<_> = w
        .iter()
        .filter(|l| l.contains("Registration with NHS 192.168.1.1 refused, code 14"))
        .collect();
    assert_eq!(refused.len(), 1, "{w:#?}");
    let accepted = logs
        .iter()
        .filter(|(_, l)| l.contains("Registration with NHS 192.168.1.1 accepted"))
        .count();
    assert_eq!(accepted, 1);
}
