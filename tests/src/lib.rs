//! Shared lab of the end-to-end suites in `tests/`: the workspace's
//! binaries, network namespaces on an NBMA bridge, real `dmvpnd` (and
//! bird, dumpcap, ping) processes, control requests and polling.
//!
//! The suites need root, iproute2, nftables, ping, tshark and bird2, and
//! the binaries built beforehand (`cargo build --release --workspace
//! --bins`, or `cargo test --workspace --release`, which builds them);
//! they fail, never skip, when something is missing.

pub mod bins;
pub mod lab;

pub use bins::{dmvpn_lab, dmvpnctl, dmvpnd};
pub use lab::*;
