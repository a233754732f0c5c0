//! Minimal IPv4 header codec: enough to read captures, to build the outer
//! header of test packets and to copy a triggering packet's header into a
//! Traffic Indication.

use std::net::Ipv4Addr;

use crate::error::{ParseError, need};
use crate::wire::checksum;

/// A parsed IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Type of service / DSCP+ECN (Cisco sends NHRP with 0xc0).
    pub tos: u8,
    /// Identification.
    pub id: u16,
    /// Flags and fragment offset.
    pub flags_frag: u16,
    /// Time to live.
    pub ttl: u8,
    /// Payload protocol (47 GRE, 50 ESP, 54 NHRP).
    pub protocol: u8,
    /// Header checksum as found (recomputed on emit).
    pub checksum: u16,
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Raw options.
    pub options: Vec<u8>,
}

impl Ipv4Header {
    /// A header with no options, DF clear.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, tos: u8, ttl: u8) -> Ipv4Header {
        Ipv4Header {
            tos,
            id: 0,
            flags_frag: 0,
            ttl,
            protocol,
            checksum: 0,
            src,
            dst,
            options: Vec::new(),
        }
    }

    /// Parses a header and returns the payload bounded by the total length.
    /// Fragments other than the first are refused.
    pub fn parse(buf: &[u8]) -> Result<(Ipv4Header, &[u8]), ParseError> {
        need("IPv4 header", 20, buf.len())?;
        if buf[0] >> 4 != 4 {
            return Err(ParseError::Malformed {
                what: "IPv4 header",
                reason: "version is not 4",
            });
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if ihl < 20 {
            return Err(ParseError::Malformed {
                what: "IPv4 header",
                reason: "header length below 20",
            });
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total < ihl {
            return Err(ParseError::Malformed {
                what: "IPv4 header",
                reason: "total length below header length",
            });
        }
        need("IPv4 packet", total, buf.len())?;
        let flags_frag = u16::from_be_bytes([buf[6], buf[7]]);
        if flags_frag & 0x1fff != 0 {
            return Err(ParseError::Malformed {
                what: "IPv4 header",
                reason: "non-first fragment",
            });
        }
        let h = Ipv4Header {
            tos: buf[1],
            id: u16::from_be_bytes([buf[4], buf[5]]),
            flags_frag,
            ttl: buf[8],
            protocol: buf[9],
            checksum: u16::from_be_bytes([buf[10], buf[11]]),
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            options: buf[20..ihl].to_vec(),
        };
        Ok((h, &buf[ihl..total]))
    }

    /// Writes header and payload with a fresh checksum. Options are padded
    /// to a multiple of 4 bytes.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.resize(opts.len().div_ceil(4) * 4, 0);
        let ihl = 20 + opts.len();
        let total = (ihl + payload.len()) as u16;
        let mut out = Vec::with_capacity(ihl + payload.len());
        out.push(0x40 | (ihl / 4) as u8);
        out.push(self.tos);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.flags_frag.to_be_bytes());
        out.push(self.ttl);
        out.push(self.protocol);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&opts);
        let s = checksum(&out);
        out[10..12].copy_from_slice(&s.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}
