//! Debug narration: IOS-like lines on target `dmvpn::nhrp`, never the
//! password. In its own test binary: tracing caches callsite interest
//! process-wide, so a scoped subscriber must not race other tests.

mod common;

use common::sim::*;
use dmvpn_nhrp::engine::Password;

/// Collects `dmvpn::nhrp` log messages (a minimal tracing subscriber).
struct Collect(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Msg<'a>(&'a mut String);

impl tracing::field::Visit for Msg<'_> {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(
            self.0,
            "{}{:?}",
            if f.name() == "message" { "" } else { " " },
            v
        );
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        assert_eq!(e.metadata().target(), "dmvpn::nhrp");
        let mut s = String::new();
        e.record(&mut Msg(&mut s));
        self.0.lock().unwrap().push(s);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn debug_lines_read_like_ios_and_never_show_the_password() {
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sub = Collect(logs.clone());
    tracing::subscriber::with_default(sub, || {
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
    let logs = logs.lock().unwrap();
    let has = |needle: &str| logs.iter().any(|l| l.contains(needle));
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
