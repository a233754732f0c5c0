//! Sans-IO data plane: every function works on caller buffers, reads no
//! clock and no OS randomness.

pub mod des;
pub mod esp;
pub mod gcm;
pub mod gre;
pub mod hmac_sha1;
pub mod mtu;
pub mod replay;
pub mod sadb;
mod wipe;
