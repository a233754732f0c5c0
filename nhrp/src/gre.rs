//! GRE header (RFC 2784 + RFC 2890 key and sequence number), enough to
//! carry NHRP and to read captures.

use crate::error::{ParseError, need};
use crate::wire::checksum;

const F_CHECKSUM: u16 = 0x8000;
const F_ROUTING: u16 = 0x4000;
const F_KEY: u16 = 0x2000;
const F_SEQ: u16 = 0x1000;
/// Bits between the S flag and the version that RFC 2784 reserves; kept
/// raw so a received header re-emits exactly.
const RESERVED0: u16 = 0x0ff8;

/// A parsed GRE header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GreHeader {
    /// Checksum and reserved1 when the C bit is set.
    pub checksum: Option<(u16, u16)>,
    /// Key (RFC 2890) when the K bit is set.
    pub key: Option<u32>,
    /// Sequence number when the S bit is set.
    pub seq: Option<u32>,
    /// Reserved0 bits (strict source route, recursion, flags).
    pub reserved0: u16,
    /// Payload protocol type (0x2001 for NHRP, 0x0800 IPv4, 0x86DD IPv6).
    pub protocol: u16,
}

impl GreHeader {
    /// A plain header with an optional key.
    pub fn new(protocol: u16, key: Option<u32>) -> GreHeader {
        GreHeader {
            protocol,
            key,
            ..GreHeader::default()
        }
    }

    /// Header length on the wire.
    pub fn wire_len(&self) -> usize {
        4 + 4
            * (usize::from(self.checksum.is_some())
                + usize::from(self.key.is_some())
                + usize::from(self.seq.is_some()))
    }

    /// Parses a GRE packet into its header and payload. A present checksum
    /// is verified. Version must be 0 and routing absent.
    pub fn parse(buf: &[u8]) -> Result<(GreHeader, &[u8]), ParseError> {
        need("GRE header", 4, buf.len())?;
        let fl = u16::from_be_bytes([buf[0], buf[1]]);
        let protocol = u16::from_be_bytes([buf[2], buf[3]]);
        if fl & 0x0007 != 0 {
            return Err(ParseError::Malformed {
                what: "GRE header",
                reason: "version is not 0",
            });
        }
        if fl & F_ROUTING != 0 {
            return Err(ParseError::Malformed {
                what: "GRE header",
                reason: "source routing is not supported",
            });
        }
        let mut h = GreHeader {
            reserved0: fl & RESERVED0,
            protocol,
            ..GreHeader::default()
        };
        need("GRE header", h_len(fl), buf.len())?;
        let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let mut at = 4;
        if fl & F_CHECKSUM != 0 {
            let w = word(at);
            h.checksum = Some(((w >> 16) as u16, w as u16));
            if checksum(buf) != 0 {
                return Err(ParseError::Malformed {
                    what: "GRE header",
                    reason: "bad checksum",
                });
            }
            at += 4;
        }
        if fl & F_KEY != 0 {
            h.key = Some(word(at));
            at += 4;
        }
        if fl & F_SEQ != 0 {
            h.seq = Some(word(at));
            at += 4;
        }
        Ok((h, &buf[at..]))
    }

    /// Writes header and payload; the checksum (if present) is computed.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let mut fl = self.reserved0 & RESERVED0;
        if self.checksum.is_some() {
            fl |= F_CHECKSUM;
        }
        if self.key.is_some() {
            fl |= F_KEY;
        }
        if self.seq.is_some() {
            fl |= F_SEQ;
        }
        let mut out = Vec::with_capacity(self.wire_len() + payload.len());
        out.extend_from_slice(&fl.to_be_bytes());
        out.extend_from_slice(&self.protocol.to_be_bytes());
        let mut sum_at = None;
        if let Some((_, r1)) = self.checksum {
            sum_at = Some(out.len());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&r1.to_be_bytes());
        }
        if let Some(k) = self.key {
            out.extend_from_slice(&k.to_be_bytes());
        }
        if let Some(s) = self.seq {
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(payload);
        if let Some(at) = sum_at {
            let s = checksum(&out);
            out[at..at + 2].copy_from_slice(&s.to_be_bytes());
        }
        out
    }
}

fn h_len(fl: u16) -> usize {
    4 + 4
        * ((fl & F_CHECKSUM != 0) as usize
            + (fl & F_KEY != 0) as usize
            + (fl & F_SEQ != 0) as usize)
}
