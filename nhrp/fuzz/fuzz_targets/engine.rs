//! Fuzzes the engine: arbitrary bytes delivered to a hub and a spoke at
//! advancing virtual time. No input may panic, and everything the engines
//! send must parse.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use dmvpn_wire::checksum::checksum;
use dmvpn_nhrp::{Config, Engine, Instant, NhsConfig, Packet};
use libfuzzer_sys::fuzz_target;

fn engines() -> (Engine, Engine) {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut h = Config::new(ip("172.16.0.1"), ip("192.168.1.1"));
    h.tunnel_prefix_len = 24;
    h.server = true;
    h.redirect = true;
    let mut s = Config::new(ip("172.16.0.2"), ip("192.168.1.2"));
    s.nhs = vec![NhsConfig {
        protocol: ip("192.168.1.1"),
        nbma: ip("172.16.0.1"),
        priority: 0,
    }];
    s.shortcut = true;
    (Engine::new(h, Instant::ZERO), Engine::new(s, Instant::ZERO))
}

fuzz_target!(|data: &[u8]| {
    let (mut hub, mut spoke) = engines();
    let mut now = Instant::ZERO;
    // Records: 1 byte time step, 1 byte sender, 2 bytes length, payload.
    let mut rest = data;
    while rest.len() >= 4 {
        let (step, from, len) = (
            rest[0],
            rest[1],
            usize::from(u16::from_be_bytes([rest[2], rest[3]])),
        );
        let body = &rest[4..];
        let take = len.min(body.len());
        let (pkt, tail) = body.split_at(take);
        rest = tail;
        now = now + Duration::from_secs(u64::from(step));
        let from = IpAddr::from([172, 16, 0, from % 4]);
        // Fix the checksum up so inputs get past it into the engine.
        let mut pkt = pkt.to_vec();
        if pkt.len() >= 14 {
            let size = usize::from(u16::from_be_bytes([pkt[10], pkt[11]])).min(pkt.len());
            pkt[12] = 0;
            pkt[13] = 0;
            let sum = checksum(&pkt[..size.max(14)]);
            pkt[12..14].copy_from_slice(&sum.to_be_bytes());
        }
        let pkt = &pkt[..];
        for e in [&mut hub, &mut spoke] {
            e.handle(now, from, pkt);
            e.handle_timeout(now);
            while let Some(t) = e.poll_transmit() {
                assert!(Packet::parse(&t.payload).is_ok());
            }
            while e.poll_event().is_some() {}
        }
        hub.traffic_relayed(now, from, pkt);
        while hub.poll_transmit().is_some() {}
    }
});
