//! The lab's probe packets: IPv4/UDP with a flow id, a sequence number and
//! the virtual send time in the payload, so the receiver side can be
//! measured without any state in the nodes.

use std::net::Ipv4Addr;

use dmvpn_wire::checksum::checksum;

pub const PROBE_PORT: u16 = 9;
const MAGIC: u32 = 0x4c41_4221; // "LAB!"
const HDR: usize = 20 + 8;
const BODY: usize = 4 + 4 + 4 + 8;

/// Decoded probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub flow: u32,
    pub seq: u32,
    pub sent_us: u64,
}

/// Builds an IPv4/UDP probe of `size` bytes (at least header + body).
pub fn build(p: &Probe, size: usize) -> Vec<u8> {
    let len = size.max(HDR + BODY);
    let mut b = vec![0u8; len];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    b[4..6].copy_from_slice(&(p.seq as u16).to_be_bytes());
    b[8] = 64;
    b[9] = 17;
    b[12..16].copy_from_slice(&p.src.octets());
    b[16..20].copy_from_slice(&p.dst.octets());
    let c = checksum(&b[..20]);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    b[20..22].copy_from_slice(&PROBE_PORT.to_be_bytes());
    b[22..24].copy_from_slice(&PROBE_PORT.to_be_bytes());
    b[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    b[28..32].copy_from_slice(&MAGIC.to_be_bytes());
    b[32..36].copy_from_slice(&p.flow.to_be_bytes());
    b[36..40].copy_from_slice(&p.seq.to_be_bytes());
    b[40..48].copy_from_slice(&p.sent_us.to_be_bytes());
    b
}

/// Reads a probe back; `None` for anything else.
pub fn parse(b: &[u8]) -> Option<Probe> {
    if b.len() < HDR + BODY || b[0] != 0x45 || b[9] != 17 {
        return None;
    }
    if u32::from_be_bytes(b[28..32].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(Probe {
        src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        flow: u32::from_be_bytes(b[32..36].try_into().ok()?),
        seq: u32::from_be_bytes(b[36..40].try_into().ok()?),
        sent_us: u64::from_be_bytes(b[40..48].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Probe {
            src: Ipv4Addr::new(10, 0, 1, 10),
            dst: Ipv4Addr::new(10, 255, 0, 10),
            flow: 7,
            seq: 3,
            sent_us: 123_456,
        };
        let b = build(&p, 100);
        assert_eq!(b.len(), 100);
        assert_eq!(checksum(&b[..20]), 0);
        assert_eq!(parse(&b), Some(p));
        assert_eq!(parse(&b[..30]), None);
    }
}
