//! dmvpn-node: the sans-IO DMVPN node — NHRP engine, IKE endpoint,
//! forwarding engine and ESP/GRE data path — behind one driving API,
//! [`Router`].
//!
//! Every driver (dmvpnd's event loop, the `dmvpn-lab` simulator, the
//! in-memory tests) builds a [`Router`], feeds it what arrived (inner
//! packets from the TUN, underlay datagrams, kernel routes, time,
//! operator requests) and writes out what it queued. All protocol and
//! forwarding decisions are made here, once.
//!
//! Rules this crate keeps:
//! - no I/O: no sockets, files, processes or environment variables;
//! - no clock reads (`Instant::now`, `SystemTime::now`): time is an
//!   argument, one virtual [`Instant`] for NHRP and IKE alike;
//! - no OS randomness: the generators are seeded from a caller's [`Seed`];
//! - its normal dependencies include no async runtime, no C library
//!   bindings and no socket or TUN crate (CI checks the dependency tree
//!   with `cargo tree`).
//!
//! Modules: [`datapath`] (GRE, ESP transforms, SADB, anti-replay, MTU),
//! [`engine`] (the per-packet forwarding engine), [`batch`] (send
//! batches), [`control`] (the node: NHRP + IKE and the decisions that tie
//! them to the engine; `show` snapshots), [`router`] (node + engine +
//! the glue between them), [`reload`] (what a changed configuration
//! changes in place).

pub mod batch;
pub mod control;
pub mod datapath;
pub mod engine;
pub mod forward;
pub mod reload;
pub mod router;

pub use control::{Node, NodeConfig, Seed};
pub use dmvpn_time::Instant;
pub use router::Router;
