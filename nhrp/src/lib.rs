//! NHRP (RFC 2332 + Cisco DMVPN extensions): wire codec and a sans-IO
//! client/server engine.
//!
//! - [`wire`]: fixed header, mandatory part, CIEs, checksum ([`Packet`]).
//! - [`ext`]: extensions ([`Extension`], [`ExtBody`]).
//! - [`capture`]: finds NHRP in captured frames (IPv4 and GRE come from
//!   `dmvpn_wire`).
//! - [`display`]: the stable one-line text form of a packet.
//! - [`engine`]: the sans-IO NHC/NHS state machine ([`Engine`]), driven
//!   with `handle` / `handle_timeout` / `poll_transmit` / `poll_timeout`
//!   / `poll_event`; [`cache`]: its protocol → NBMA cache; [`Instant`]
//!   (re-exported from `dmvpn_time`): the virtual time it runs on;
//!   [`traffic`]: packets sent and received by type.
#![warn(missing_docs)]

pub mod cache;
pub mod capture;
pub mod display;
pub mod engine;
pub mod error;
pub mod ext;
mod limit;
pub mod traffic;
pub mod wire;

pub use dmvpn_time::Instant;
pub use engine::{Config, Engine, Event, NextHop, NhsConfig, Password, Transmit};
pub use error::ParseError;
pub use ext::{ExtBody, Extension};
pub use wire::{Body, Cie, Packet, PacketType};
