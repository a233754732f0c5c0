//! IKEv1 (ISAKMP) for dmvpn: wire codec, crypto suites, PSK key schedule
//! and a sans-IO keying engine (Main, Aggressive and Quick Mode,
//! informational exchanges, DPD, NAT-T).

mod aggressive_mode;
pub mod crypto;
pub mod endpoint;
mod informational;
pub mod keylog;
pub mod keys;
mod main_mode;
pub mod policy;
mod quick_mode;
pub mod state;
pub mod wire;

pub use endpoint::{
    ChildSa, CommandError, Encapsulation, Endpoint, EspKeys, Event, HandleError, IsakmpSaInfo,
    Phase2Request, SaId, SpiAllocator, Transmit, Udp4500, classify_udp4500,
};
pub use policy::{
    DpdConfig, EngineConfig, EspEncr, EspTransform, IkePolicy, Mode, NatTMode, PskEntry,
    TransformSet,
};
