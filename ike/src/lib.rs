//! IKEv1 (ISAKMP) for dmvpn: wire codec, crypto suites, PSK key schedule
//! and a sans-IO keying engine (Main, Aggressive and Quick Mode,
//! informational exchanges, DPD, NAT-T).

pub mod crypto;
pub mod keys;
pub mod policy;
pub mod wire;
