//! NHRP (RFC 2332 + Cisco DMVPN extensions): wire codec and a sans-IO
//! client/server engine.
//!
//! - [`wire`]: fixed header, mandatory part, CIEs, checksum ([`Packet`]).
//! - [`ext`]: extensions ([`Extension`], [`ExtBody`]).
//! - [`gre`], [`ipv4`], [`capture`]: carriers, for the data path and for
//!   reading captures.
#![warn(missing_docs)]

pub mod capture;
pub mod display;
pub mod error;
pub mod ext;
pub mod gre;
pub mod ipv4;
pub mod wire;

pub use error::ParseError;
pub use ext::{ExtBody, Extension};
pub use wire::{Body, Cie, Packet, PacketType};
