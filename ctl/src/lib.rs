//! dmvpn-ctl: the operator interface of dmvpnd.
//!
//! - [`proto`]: newline-delimited JSON requests/responses and the snapshot
//!   types `show` commands carry;
//! - [`client`]: one request, one response (used by `dmvpnctl`);
//! - [`command`]: IOS-style command lines with abbreviations → requests;
//! - [`interface_filter`]: one tunnel's part of an answer;
//! - [`render`]: IOS-shaped text for every snapshot (and, with the default
//!   feature `metrics`, the OpenMetrics view dmvpnd serves);
//! - [`stats`]: counters with no IOS view (IKE negotiations, NHRP
//!   resolution latency), for the metrics endpoint;
//! - [`docgen`]: man pages and shell completions from clap definitions.

pub mod client;
pub mod command;
pub mod docgen;
pub mod interface_filter;
pub mod proto;
pub mod render;
pub mod stats;
