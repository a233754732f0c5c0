//! Our engine, configured like the routers in tcpdump's captures, sends
//! the same bytes Cisco IOS sent.

mod common;

use common::pcapread::read_frames;
use dmvpn_nhrp::capture::extract_nhrp;
use dmvpn_nhrp::engine::Password;
use dmvpn_nhrp::{Config, Engine, Instant, NhsConfig, Packet};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn nhrp_frames(file: &str) -> Vec<Vec<u8>> {
    read_frames(&format!("{DATA}{file}"))
        .unwrap()
        .iter()
        .map(|f| {
            let n = extract_nhrp(f.linktype, &f.data).unwrap().unwrap().nhrp;
            let len = Packet::parse(n).unwrap().emit().len();
            n[..len].to_vec()
        })
        .collect()
}

fn show(b: &[u8]) -> String {
    dmvpn_nhrp::display::packet_line(&Packet::parse(b).unwrap())
}

struct Reg {
    file: &'static str,
    spoke: (&'static str, &'static str),
    hub: (&'static str, &'static str),
    mtu: u16,
    password: &'static str,
    request_id: u32,
}

fn check_registration(r: Reg) {
    let golden = nhrp_frames(r.file);
    let mut spoke = Config::new(ip(r.spoke.0), ip(r.spoke.1));
    spoke.mtu = r.mtu;
    spoke.authentication = Some(Password::new(r.password));
    spoke.initial_request_id = r.request_id;
    spoke.nhs = vec![NhsConfig {
        protocol: ip(r.hub.1),
        nbma: ip(r.hub.0),
        priority: 0,
    }];
    let mut s = Engine::new(spoke, Instant::ZERO);
    s.handle_timeout(Instant::ZERO);
    let req = s.poll_transmit().unwrap();
    assert_eq!(req.dst_nbma, ip(r.hub.0));
    assert_eq!(show(&req.payload), show(&golden[0]), "{}", r.file);
    assert_eq!(req.payload, golden[0], "{}", r.file);

    let mut hub = Config::new(ip(r.hub.0), ip(r.hub.1));
    hub.mtu = r.mtu;
    hub.tunnel_prefix_len = 24;
    hub.server = true;
    hub.authentication = Some(Password::new(r.password));
    let mut h = Engine::new(hub, Instant::ZERO);
    h.handle(Instant::ZERO, ip(r.spoke.0), &golden[0]);
    let rep = h.poll_transmit().unwrap();
    assert_eq!(rep.dst_nbma, ip(r.spoke.0));
    assert_eq!(show(&rep.payload), show(&golden[1]), "{}", r.file);
    assert_eq!(rep.payload, golden[1], "{}", r.file);

    s.handle(Instant::ZERO, ip(r.hub.0), &rep.payload);
    assert!(s.nhs_status()[0].up);
}

#[test]
fn registration_request_and_reply_match_cisco() {
    check_registration(Reg {
        file: "NHRP_registration.pcap",
        spoke: ("169.254.100.1", "155.1.0.1"),
        hub: ("169.254.100.5", "155.1.0.5"),
        mtu: 17912,
        password: "NHRPAUTH",
        request_id: 1,
    });
    check_registration(Reg {
        file: "nhrp.pcapng",
        spoke: ("100.1.2.27", "10.65.0.3"),
        hub: ("100.1.0.14", "10.65.0.1"),
        mtu: 17916,
        password: "OTUS",
        request_id: 21,
    });
}

#[test]
fn phase3_trace_matches_cisco() {
    let golden = nhrp_frames("nhrp-trace.pcap");
    let node = |nbma: &str, proto: &str| {
        let mut c = Config::new(ip(nbma), ip(proto));
        c.authentication = Some(Password::new("secret"));
        c.nhs = vec![NhsConfig {
            protocol: ip("10.255.255.1"),
            nbma: ip("192.168.200.1"),
            priority: 0,
        }];
        c.shortcut = true;
        c.initial_request_id = 5;
        c
    };
    let mut hub_cfg = Config::new(ip("192.168.200.1"), ip("10.255.255.1"));
    hub_cfg.authentication = Some(Password::new("secret"));
    hub_cfg.tunnel_prefix_len = 24;
    hub_cfg.server = true;
    hub_cfg.redirect = true;
    let mut hub = Engine::new(hub_cfg, Instant::ZERO);
    let mut a = Engine::new(node("192.168.200.3", "10.255.255.3"), Instant::ZERO);
    let mut b = Engine::new(node("192.168.200.2", "10.255.255.2"), Instant::ZERO);
    let now = Instant::ZERO;

    // B registers with the hub (not part of the capture).
    b.handle_timeout(now);
    let reg = b.poll_transmit().unwrap();
    hub.handle(now, ip("192.168.200.2"), &reg.payload);
    b.handle(
        now,
        ip("192.168.200.1"),
        &hub.poll_transmit().unwrap().payload,
    );

    // A is registered too (the hub relays its traffic); its registration is
    // sent by a twin so A's request IDs stay those of the capture.
    let mut twin = Engine::new(node("192.168.200.3", "10.255.255.3"), now);
    twin.handle_timeout(now);
    hub.handle(
        now,
        ip("192.168.200.3"),
        &twin.poll_transmit().unwrap().payload,
    );
    assert!(hub.poll_transmit().is_some(), "registration reply");

    // 1. The hub relays A's packet and sends A a traffic indication.
    let trig = match Packet::parse(&golden[0]).unwrap().body {
        dmvpn_nhrp::Body::Traffic { contents, .. } => contents,
        b => panic!("{b:?}"),
    };
    hub.traffic_relayed(now, ip("192.168.200.3"), &trig);
    let ti = hub.poll_transmit().unwrap();
    assert_eq!(ti.dst_nbma, ip("192.168.200.3"));
    assert_eq!(show(&ti.payload), show(&golden[0]));
    assert_eq!(ti.payload, golden[0]);

    // 2. A resolves the destination, via the hub.
    a.handle(now, ip("192.168.200.1"), &ti.payload);
    let req = a.poll_transmit().unwrap();
    assert_eq!(req.dst_nbma, ip("192.168.200.1"));
    assert_eq!(show(&req.payload), show(&golden[1]));
    assert_eq!(req.payload, golden[1]);

    // 3. The hub forwards it to B.
    hub.handle(now, ip("192.168.200.3"), &req.payload);
    let fwd = hub.poll_transmit().unwrap();
    assert_eq!(fwd.dst_nbma, ip("192.168.200.2"));
    assert_eq!(show(&fwd.payload), show(&golden[2]));
    assert_eq!(fwd.payload, golden[2]);

    // 4. B answers A directly.
    b.handle(now, ip("192.168.200.1"), &fwd.payload);
    let rep = b.poll_transmit().unwrap();
    assert_eq!(rep.dst_nbma, ip("192.168.200.3"));
    assert_eq!(show(&rep.payload), show(&golden[3]));
    assert_eq!(rep.payload, golden[3]);

    a.handle(now, ip("192.168.200.2"), &rep.payload);
    assert_eq!(
        a.lookup(ip("10.255.255.2")).unwrap().nbma,
        ip("192.168.200.2")
    );
}

#[test]
fn old_ios_registration_with_prefix_255_is_accepted() {
    let golden = nhrp_frames("ios_nhrp.pcap");
    let mut hub = Config::new(ip("10.0.12.1"), ip("192.168.0.1"));
    hub.tunnel_prefix_len = 24;
    hub.server = true;
    hub.authentication = Some(Password::new("CISCO"));
    let mut h = Engine::new(hub, Instant::ZERO);
    h.handle(Instant::ZERO, ip("10.0.12.2"), &golden[0]);
    let rep = Packet::parse(&h.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(rep.packet_type, dmvpn_nhrp::PacketType::RegistrationReply);
    assert_eq!(rep.cies()[0].code, 0);
    assert_eq!(rep.cies()[0].prefix_len, 0xff, "CIE echoed as sent");
    let e = h.cache().get(ip("192.168.0.2"), 32).unwrap();
    assert_eq!(e.nbma, Some(ip("10.0.12.2")));
    assert_eq!(e.holding_time, 30);
    assert_eq!(e.expires, Some(Instant::from_secs(30)));
    assert!(e.unique);
}
