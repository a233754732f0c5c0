//! CBC ciphers for ISAKMP encryption: DES, 3DES, AES-128/192/256.

use super::{Cipher, CryptoError};
use cipher::block_padding::NoPadding;
use cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

/// IKE encryption algorithm (phase 1 class 1: DES 1, 3DES 5, AES 7 + key length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    Des,
    TripleDes,
    Aes128,
    Aes192,
    Aes256,
}

impl EncrAlg {
    /// From the phase 1 encryption id and optional key-length attribute.
    pub fn from_ike(id: u64, key_bits: Option<u64>) -> Option<Self> {
        match (id, key_bits) {
            (1, None) => Some(EncrAlg::Des),
            (5, None) => Some(EncrAlg::TripleDes),
            (7, None | Some(128)) => Some(EncrAlg::Aes128),
            (7, Some(192)) => Some(EncrAlg::Aes192),
            (7, Some(256)) => Some(EncrAlg::Aes256),
            _ => None,
        }
    }

    /// (encryption id, key length attribute if any).
    pub fn ike_id(self) -> (u16, Option<u16>) {
        match self {
            EncrAlg::Des => (1, None),
            EncrAlg::TripleDes => (5, None),
            EncrAlg::Aes128 => (7, Some(128)),
            EncrAlg::Aes192 => (7, Some(192)),
            EncrAlg::Aes256 => (7, Some(256)),
        }
    }

    /// Name as IOS prints it ("encryption DES-CBC").
    pub fn ios_name(self) -> &'static str {
        match self {
            EncrAlg::Des => "DES-CBC",
            EncrAlg::TripleDes => "3DES-CBC",
            EncrAlg::Aes128 | EncrAlg::Aes192 | EncrAlg::Aes256 => "AES-CBC",
        }
    }
}

fn run<C: KeyIvInit + BlockEncryptMut, D: KeyIvInit + BlockDecryptMut>(
    enc: bool,
    key: &[u8],
    iv: &[u8],
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let n = buf.len();
    if enc {
        let c = C::new_from_slices(key, iv).map_err(|_| CryptoError::KeyLength(key.len()))?;
        c.encrypt_padded_mut::<NoPadding>(buf, n)
            .map_err(|_| CryptoError::BlockLength(n))?;
    } else {
        let c = D::new_from_slices(key, iv).map_err(|_| CryptoError::KeyLength(key.len()))?;
        c.decrypt_padded_mut::<NoPadding>(buf)
            .map_err(|_| CryptoError::BlockLength(n))?;
    }
    Ok(())
}

impl EncrAlg {
    fn apply(self, enc: bool, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        if key.len() != self.key_len() {
            return Err(CryptoError::KeyLength(key.len()));
        }
        if !buf.len().is_multiple_of(self.block_size()) || iv.len() < self.block_size() {
            return Err(CryptoError::BlockLength(buf.len()));
        }
        let iv = &iv[..self.block_size()];
        use cbc::{Decryptor as D, Encryptor as E};
        match self {
            EncrAlg::Des => run::<E<des::Des>, D<des::Des>>(enc, key, iv, buf),
            EncrAlg::TripleDes => run::<E<des::TdesEde3>, D<des::TdesEde3>>(enc, key, iv, buf),
            EncrAlg::Aes128 => run::<E<aes::Aes128>, D<aes::Aes128>>(enc, key, iv, buf),
            EncrAlg::Aes192 => run::<E<aes::Aes192>, D<aes::Aes192>>(enc, key, iv, buf),
            EncrAlg::Aes256 => run::<E<aes::Aes256>, D<aes::Aes256>>(enc, key, iv, buf),
        }
    }
}

impl Cipher for EncrAlg {
    fn key_len(&self) -> usize {
        match self {
            EncrAlg::Des => 8,
            EncrAlg::TripleDes => 24,
            EncrAlg::Aes128 => 16,
            EncrAlg::Aes192 => 24,
            EncrAlg::Aes256 => 32,
        }
    }

    fn block_size(&self) -> usize {
        match self {
            EncrAlg::Des | EncrAlg::TripleDes => 8,
            _ => 16,
        }
    }

    fn encrypt(&self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        self.apply(true, key, iv, buf)
    }

    fn decrypt(&self, key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), CryptoError> {
        self.apply(false, key, iv, buf)
    }
}
