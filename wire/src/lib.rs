//! Packet formats shared by the NHRP engine, the IKE endpoint and the
//! forwarding path: pure functions over byte slices, no I/O, no clock,
//! no allocation on the per-packet paths.
//!
//! - [`checksum`]: the Internet checksum (RFC 1071), whole or
//!   accumulated piecewise, and its incremental update (RFC 1624).
//! - [`ipv4`]: a checked header view ([`ipv4::Ipv4Packet`]) and the
//!   fields to build one ([`ipv4::Ipv4Repr`]).
//! - [`gre`]: GRE headers with key, sequence number and checksum
//!   ([`gre::GreRepr`]).
//! - [`natt`]: what a UDP 4500 datagram carries (IKE, ESP, keepalive).
//! - [`prefix`]: IPv4/IPv6 prefixes ([`prefix::Prefix`]) and a
//!   longest-prefix-match table ([`prefix::PrefixMap`]).
//!
//! Parsers take `&[u8]` and never panic; emitters write into a caller
//! buffer and report a buffer that is too small instead of panicking.
#![warn(missing_docs)]

pub mod checksum;
pub mod gre;
pub mod ipv4;
pub mod natt;
pub mod prefix;

pub use gre::GreRepr;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use prefix::{Prefix, PrefixMap};

/// Why a header could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The caller's buffer cannot hold what is to be written.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes the header (and payload) need.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// The packet would be longer than its length field can say.
    #[error("packet of {len} bytes is too long for its length field")]
    TooLong {
        /// Length the packet would have.
        len: usize,
    },
}

/// `Ok` if `have >= need`.
pub(crate) fn room(need: usize, have: usize) -> Result<(), EmitError> {
    if have < need {
        Err(EmitError::BufferTooSmall { need, have })
    } else {
        Ok(())
    }
}
