//! Typed parse errors. Every reject carries a reason so callers can count
//! and log it; no parser in this crate panics on hostile input.

use thiserror::Error;

/// Why a buffer was not accepted as an NHRP, GRE or IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The buffer ends before a field that must be there.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure was cut short.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// `ar$op.version` is not 1 (RFC 2332).
    #[error("unsupported NHRP version {0}")]
    BadVersion(u8),
    /// `ar$op.type` outside 1..=8.
    #[error("unknown NHRP packet type {0}")]
    UnknownType(u8),
    /// The packet size field is smaller than the fixed header.
    #[error("packet size field {0} smaller than the 20-byte fixed header")]
    BadPacketSize(u16),
    /// The extension offset points outside the packet.
    #[error("extension offset {offset} outside 20..{size}")]
    BadExtensionOffset {
        /// `ar$extoff`.
        offset: u16,
        /// `ar$pktsz`.
        size: u16,
    },
    /// The one's-complement checksum does not verify.
    #[error("bad checksum: packet says {found:#06x}, computed {computed:#06x}")]
    BadChecksum {
        /// Value found on the wire.
        found: u16,
        /// Value computed over the packet.
        computed: u16,
    },
    /// A type/length octet uses the reserved bit or the E.164 form.
    #[error("unsupported {what} type/length octet {value:#04x}")]
    AddressType {
        /// Which address.
        what: &'static str,
        /// The raw octet.
        value: u8,
    },
    /// Bytes were left over after the last CIE of the mandatory part or of
    /// an extension.
    #[error("{len} trailing bytes after the last CIE in {what}")]
    TrailingBytes {
        /// Where.
        what: &'static str,
        /// How many.
        len: usize,
    },
    /// An extension's body does not have the structure its type requires.
    #[error("malformed extension {ty:#06x}: {reason}")]
    MalformedExtension {
        /// Extension type (without the compulsory bit).
        ty: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// The IPv4 header carrying the packet is malformed.
    #[error("malformed IPv4 header: {0}")]
    Ipv4(#[from] dmvpn_wire::ipv4::Ipv4Error),
    /// The GRE header carrying the packet is malformed.
    #[error("malformed GRE header: {0}")]
    Gre(#[from] dmvpn_wire::gre::GreError),
    /// Generic structural problem in a GRE or IP header.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which header.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Short helper for truncation errors.
pub(crate) fn need(what: &'static str, need: usize, have: usize) -> Result<(), ParseError> {
    if have < need {
        Err(ParseError::Truncated { what, need, have })
    } else {
        Ok(())
    }
}
