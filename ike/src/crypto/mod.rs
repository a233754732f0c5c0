//! Crypto suites for IKEv1 behind small traits: [`Prf`], [`Cipher`], [`DhGroup`].
//!
//! The algorithm enums are plain data so the configuration and the data
//! plane can share them. Secret outputs are `Zeroizing`.

mod cipher;
mod dh;
mod prf;
mod primes;

pub use cipher::EncrAlg;
pub use dh::{DhPrivate, GroupId};
pub use prf::HashAlg;

use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

/// Crypto failures; none of them carries secret data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error("bad key length {0}")]
    KeyLength(usize),
    #[error("data length {0} is not a multiple of the block size")]
    BlockLength(usize),
    #[error("peer DH public value is invalid ({0})")]
    BadPublic(&'static str),
}

/// Keyed pseudo-random function (HMAC).
pub trait Prf {
    /// Output length in bytes.
    fn output_len(&self) -> usize;
    /// `prf(key, data[0] | data[1] | ...)`
    fn prf(&self, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>>;
}

/// CBC block cipher with caller-managed padding and IV.
pub trait Cipher {
    fn key_len(&self) -> usize;
    fn block_size(&self) -> usize;
    fn encrypt(&self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError>;
    fn decrypt(&self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError>;
}

/// Diffie-Hellman group.
pub trait DhGroup {
    /// Length of the public value in the KE payload.
    fn public_len(&self) -> usize;
    /// New key pair from the injected RNG: (private, public value).
    fn generate<R: RngCore + CryptoRng>(&self, rng: &mut R) -> (DhPrivate, Vec<u8>);
    /// Shared secret g^xy, after validating the peer's value.
    fn shared(&self, private: &DhPrivate, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

#[cfg(test)]
mod tests;
