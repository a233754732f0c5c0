//! ISAKMP (RFC 2408) wire codec: typed parse and byte-exact emit.
//!
//! Parsing never panics and never trusts a length field beyond the buffer
//! it was given; every reject is a [`WireError`] with a reason.

pub mod consts;
mod id;
mod payloads;
mod sa;
pub mod vendor;

pub use id::{IdPayload, Identity};
pub use payloads::{DeletePayload, NotifyPayload, Payload};
pub use sa::{
    AttrValue, Attribute, Proposal, SaPayload, Transform, emit_attributes, parse_attributes,
};

use thiserror::Error;

/// Length of the fixed ISAKMP header.
pub const HEADER_LEN: usize = 28;
/// Upper bound on payloads in one message (hostile input bound).
pub const MAX_PAYLOADS: usize = 64;

/// Why a datagram was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad length {len} in {what}")]
    BadLength { what: &'static str, len: usize },
    #[error("unsupported ISAKMP version {0:#04x}")]
    Version(u8),
    #[error("more than {MAX_PAYLOADS} payloads")]
    TooManyPayloads,
    #[error("unexpected payload type {ty} inside {what}")]
    BadNext { ty: u8, what: &'static str },
}

pub(crate) fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::Truncated {
            what,
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The fixed 28-byte ISAKMP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub next_payload: u8,
    /// Major/minor version byte; IKEv1 is 0x10.
    pub version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    /// Total message length including the header.
    pub length: u32,
}

impl Header {
    /// Parse the header and return it with the body (length-bounded).
    pub fn parse(buf: &[u8]) -> Result<(Header, &[u8]), WireError> {
        need(buf, HEADER_LEN, "ISAKMP header")?;
        let mut icookie = [0u8; 8];
        let mut rcookie = [0u8; 8];
        icookie.copy_from_slice(&buf[0..8]);
        rcookie.copy_from_slice(&buf[8..16]);
        let version = buf[17];
        if version >> 4 != 1 {
            return Err(WireError::Version(version));
        }
        let length = be32(&buf[24..28]);
        let len = length as usize;
        if len < HEADER_LEN || len > buf.len() {
            return Err(WireError::BadLength {
                what: "ISAKMP header",
                len,
            });
        }
        let h = Header {
            icookie,
            rcookie,
            next_payload: buf[16],
            version,
            exchange: buf[18],
            flags: buf[19],
            message_id: be32(&buf[20..24]),
            length,
        };
        Ok((h, &buf[HEADER_LEN..len]))
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.icookie);
        out.extend_from_slice(&self.rcookie);
        out.push(self.next_payload);
        out.push(self.version);
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    pub fn is_encrypted(&self) -> bool {
        self.flags & consts::flags::ENCRYPTION != 0
    }
}

/// Parse a chain of generic payloads starting with type `first`.
/// Bytes after the last payload (CBC padding) are ignored.
pub fn parse_payloads(first: u8, buf: &[u8]) -> Result<Vec<Payload>, WireError> {
    Ok(parse_payloads_spanned(first, buf)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// Like [`parse_payloads`], also returning each payload's byte range in
/// `buf` (generic header included), for hashing exactly what was received.
pub fn parse_payloads_spanned(
    first: u8,
    buf: &[u8],
) -> Result<Vec<(Payload, std::ops::Range<usize>)>, WireError> {
    let mut out = Vec::new();
    let mut next = first;
    let mut off = 0usize;
    while next != consts::payload::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(WireError::TooManyPayloads);
        }
        let rest = &buf[off..];
        need(rest, 4, "generic payload header")?;
        let len = be16(&rest[2..4]) as usize;
        if len < 4 || len > rest.len() {
            return Err(WireError::BadLength {
                what: "generic payload header",
                len,
            });
        }
        out.push((Payload::parse(next, &rest[4..len])?, off..off + len));
        next = rest[0];
        off += len;
    }
    Ok(out)
}

/// Emit a payload chain; returns the first payload type and the bytes.
pub fn emit_payloads(payloads: &[Payload]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(consts::payload::NONE, Payload::kind);
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        p.emit_body(&mut out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    (
        payloads
            .first()
            .map_or(consts::payload::NONE, Payload::kind),
        out,
    )
}

/// A whole cleartext ISAKMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parse a message whose body is not encrypted.
    pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
        let (header, body) = Header::parse(buf)?;
        let payloads = parse_payloads(header.next_payload, body)?;
        Ok(Message { header, payloads })
    }

    /// Emit with `next_payload` and `length` recomputed.
    pub fn emit(&self) -> Vec<u8> {
        let (first, body) = emit_payloads(&self.payloads);
        let mut h = self.header;
        h.next_payload = first;
        h.length = (HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(h.length as usize);
        h.emit(&mut out);
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests;
