//! Finds NHRP inside captured frames: Ethernet (with 802.1Q tags), Linux
//! cooked (SLL and SLL2) or raw IP link types → IPv4 → GRE (0x2001) or
//! IP protocol 54 → NHRP bytes.

use dmvpn_wire::gre::GreRepr;
use dmvpn_wire::ipv4::{Ipv4Packet, PROTO_GRE};

use crate::error::{ParseError, need};
use crate::wire::{GRE_PROTO_NHRP, IP_PROTO_NHRP};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// LINKTYPE_RAW (raw IPv4/IPv6).
pub const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_LINUX_SLL.
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// LINKTYPE_IPV4.
pub const LINKTYPE_IPV4: u32 = 228;
/// LINKTYPE_LINUX_SLL2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// An NHRP packet found in a frame, with its carriers.
#[derive(Debug, Clone)]
pub struct NhrpFrame<'a> {
    /// Outer IPv4 packet (header fields, options, payload).
    pub ip: Ipv4Packet<'a>,
    /// GRE header (None when NHRP rides directly on IP protocol 54).
    pub gre: Option<GreRepr>,
    /// The NHRP bytes (not yet parsed).
    pub nhrp: &'a [u8],
}

/// Extracts NHRP from one captured frame. `Ok(None)` means the frame is
/// not NHRP (other ether type, protocol or GRE payload); `Err` means a
/// header on the way is malformed.
pub fn extract_nhrp(linktype: u32, frame: &[u8]) -> Result<Option<NhrpFrame<'_>>, ParseError> {
    let ip = match linktype {
        LINKTYPE_ETHERNET => {
            need("Ethernet header", 14, frame.len())?;
            let mut at = 12;
            let mut et = u16::from_be_bytes([frame[at], frame[at + 1]]);
            while et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ {
                at += 4;
                need("802.1Q tag", at + 2, frame.len())?;
                et = u16::from_be_bytes([frame[at], frame[at + 1]]);
            }
            if et != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            &frame[at + 2..]
        }
        LINKTYPE_LINUX_SLL => {
            need("Linux cooked header", 16, frame.len())?;
            if u16::from_be_bytes([frame[14], frame[15]]) != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            &frame[16..]
        }
        LINKTYPE_LINUX_SLL2 => {
            need("Linux cooked v2 header", 20, frame.len())?;
            if u16::from_be_bytes([frame[0], frame[1]]) != ETHERTYPE_IPV4 {
                return Ok(None);
            }
            &frame[20..]
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 => {
            if frame.first().map(|b| b >> 4) != Some(4) {
                return Ok(None);
            }
            frame
        }
        _ => {
            return Err(ParseError::Malformed {
                what: "capture",
                reason: "unsupported link type",
            });
        }
    };
    let ip = Ipv4Packet::new_checked(ip)?;
    if ip.frag_offset() != 0 {
        return Err(ParseError::Malformed {
            what: "IPv4 header",
            reason: "non-first fragment",
        });
    }
    let payload = ip.payload();
    match ip.protocol() {
        PROTO_GRE => {
            let (gre, inner) = GreRepr::parse(payload)?;
            if gre.protocol != GRE_PROTO_NHRP {
                return Ok(None);
            }
            Ok(Some(NhrpFrame {
                ip,
                gre: Some(gre),
                nhrp: inner,
            }))
        }
        IP_PROTO_NHRP => Ok(Some(NhrpFrame {
            ip,
            gre: None,
            nhrp: payload,
        })),
        _ => Ok(None),
    }
}
