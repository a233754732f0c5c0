//! IKEv1 (ISAKMP) for dmvpn: wire codec, crypto suites, PSK key schedule
//! and a sans-IO keying engine (Main, Aggressive and Quick Mode,
//! informational exchanges, DPD, NAT-T).
//!
//! The engine is sans-IO: the caller owns sockets, clocks and the SPI
//! space, and moves datagrams in and out. Time is an [`Instant`]
//! (re-exported from `dmvpn_time`) that the caller passes as `now`.
//!
//! ```
//! use dmvpn_ike::*;
//! use dmvpn_ike::crypto::HashAlg;
//! use rand_core::SeedableRng;
//!
//! let cfg = EngineConfig {
//!     transform_sets: vec![TransformSet {
//!         name: "t".into(),
//!         esp: EspTransform { encr: EspEncr::AesCbc(128), integ: Some(HashAlg::Sha1) },
//!         mode: Mode::Transport,
//!     }],
//!     psks: vec![PskEntry::new("0.0.0.0".parse().unwrap(), 0, b"secret")],
//!     ..Default::default()
//! };
//! let mk = |seed, mut spi: u32| {
//!     Endpoint::new(cfg.clone(), rand_chacha::ChaCha20Rng::seed_from_u64(seed),
//!         Box::new(move || { spi += 1; spi }))
//! };
//! let (mut a, mut b) = (mk(1, 0x100), mk(2, 0x200));
//! let (la, lb): (std::net::SocketAddr, std::net::SocketAddr) =
//!     ("172.16.0.1:500".parse().unwrap(), "172.16.0.2:500".parse().unwrap());
//! let now = Instant::from_secs(1);
//! let req = Phase2Request {
//!     local_proxy: Some(policy::gre_proxy(la.ip())),
//!     remote_proxy: Some(policy::gre_proxy(lb.ip())),
//! };
//! a.initiate_phase2(now, la, lb, req).unwrap();
//! // Shuttle datagrams until both sides are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(t) = a.poll_transmit() { moved = true; b.handle(now, t.remote, t.local, &t.payload).unwrap(); }
//!     while let Some(t) = b.poll_transmit() { moved = true; a.handle(now, t.remote, t.local, &t.payload).unwrap(); }
//!     if !moved { break; }
//! }
//! let up = std::iter::from_fn(|| a.poll_event())
//!     .any(|e| matches!(e, Event::ChildSaInstalled(c) if c.mode == Mode::Transport));
//! assert!(up);
//! assert_eq!(a.isakmp_sas()[0].state, "QM_IDLE");
//! ```

mod admission;
mod aggressive_mode;
mod collision;
pub mod crypto;
pub mod endpoint;
pub mod handshakes;
#[cfg(test)]
mod hostile_tests;
mod index;
mod informational;
pub mod keylog;
pub mod keys;
mod main_mode;
mod payload_list;
pub mod policy;
mod quick_mode;
pub mod reason;
mod rekey;
pub mod state;
mod timers;
pub mod wire;

pub use admission::EngineStats;
pub use dmvpn_time::Instant;
pub use endpoint::{
    ChildSa, ChildSaInfo, CommandError, Encapsulation, Endpoint, EspKeys, Event, HandleError,
    IsakmpSaInfo, Phase2Request, SaId, SpiAllocator, Transmit,
};
pub use handshakes::{Counts as HandshakeCounts, Failure, HandshakeStats};
pub use policy::{
    DpdConfig, EngineConfig, EspEncr, EspTransform, IkePolicy, InitiateMode, Mode, NatTMode,
    PskEntry, TransformSet,
};
pub use reason::Reason;
