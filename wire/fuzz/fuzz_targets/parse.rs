//! Arbitrary bytes through every parser of dmvpn-wire: nothing panics,
//! and whatever parses re-emits to what was parsed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use dmvpn_wire::checksum::{Checksum, checksum};
use dmvpn_wire::gre::GreRepr;
use dmvpn_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use dmvpn_wire::natt::{self, Natt};
use dmvpn_wire::prefix::{Prefix, PrefixMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let r = Ipv4Repr::parse(&p);
        let again = r.to_packet(p.options(), p.payload()).expect("a parsed packet fits");
        let q = Ipv4Packet::new_checked(&again).expect("re-emitted packet parses");
        assert_eq!(Ipv4Repr::parse(&q), r);
        assert!(q.verify_checksum());
        assert_eq!(q.payload(), p.payload());
    }
    if let Ok((g, payload)) = GreRepr::parse(data) {
        assert_eq!(g.header_len() + payload.len(), data.len());
        let again = g.to_packet(payload);
        assert_eq!(GreRepr::parse(&again), Ok((g, payload)));
    }
    match natt::demux(data) {
        Natt::Ike(m) => assert_eq!(m.len() + 4, data.len()),
        Natt::Esp(e) => assert_eq!(e, data),
        Natt::Keepalive | Natt::Invalid => {}
    }
    // Split sums agree with the whole.
    let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let split = Checksum::new().add_bytes(&data[..cut]).add_bytes(&data[cut..]);
    assert_eq!(split.finish(), checksum(data));
    // Prefixes from the bytes: the longest match contains the address.
    let mut map = PrefixMap::new();
    for c in data.chunks_exact(5) {
        let p = Prefix::new(IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])), c[4] % 33);
        map.insert(p, ());
    }
    for c in data.chunks_exact(4) {
        let a = IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]));
        if let Some((p, _)) = map.lookup(a) {
            assert!(p.contains_addr(a));
        }
    }
});
