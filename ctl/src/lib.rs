//! dmvpn-ctl: the operator interface of dmvpnd.
//!
//! - [`proto`]: newline-delimited JSON requests/responses and the snapshot
//!   types `show` commands carry;
//! - `server` (feature `server`, on by default; the only part that uses
//!   tokio): dmvpnd's control socket (bind with permissions, serve);
//! - [`client`]: one request, one response (used by `dmvpnctl`);
//! - [`command`]: IOS-style command lines with abbreviations → requests;
//! - [`render`]: IOS-shaped text for every snapshot;
//! - [`docgen`]: man pages and shell completions from clap definitions.

pub mod client;
pub mod command;
pub mod docgen;
pub mod proto;
pub mod render;
#[cfg(feature = "server")]
pub mod server;
