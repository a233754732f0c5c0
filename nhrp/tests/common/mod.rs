//! Helpers shared by integration tests.
#![allow(dead_code)]
pub mod logs;
pub mod pcapread;
pub mod sim;

use std::net::Ipv4Addr;

use dmvpn_wire::ipv4::Ipv4Repr;

/// An IPv4 packet (no options, identification 0, DF clear) around `payload`.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    tos: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    Ipv4Repr {
        src,
        dst,
        protocol,
        tos,
        ttl,
        ident: 0,
        flags_frag: 0,
        payload_len: payload.len(),
    }
    .to_packet(&[], payload)
    .expect("a short packet")
}
