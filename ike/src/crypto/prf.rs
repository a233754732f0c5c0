//! Hash algorithms and their HMAC PRFs (RFC 2104).

use super::Prf;
use digest::Digest;
use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

/// IKE hash algorithm (phase 1 attribute class 2, RFC 2409 / IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_ike(id: u64) -> Option<Self> {
        Some(match id {
            1 => HashAlg::Md5,
            2 => HashAlg::Sha1,
            4 => HashAlg::Sha256,
            5 => HashAlg::Sha384,
            6 => HashAlg::Sha512,
            _ => return None,
        })
    }

    pub fn ike_id(self) -> u16 {
        match self {
            HashAlg::Md5 => 1,
            HashAlg::Sha1 => 2,
            HashAlg::Sha256 => 4,
            HashAlg::Sha384 => 5,
            HashAlg::Sha512 => 6,
        }
    }

    /// IPsec DOI authentication algorithm (attribute 5) for HMAC with this hash.
    pub fn esp_auth_id(self) -> u16 {
        match self {
            HashAlg::Md5 => 1,
            HashAlg::Sha1 => 2,
            HashAlg::Sha256 => 5,
            HashAlg::Sha384 => 6,
            HashAlg::Sha512 => 7,
        }
    }

    pub fn from_esp_auth(id: u64) -> Option<Self> {
        Some(match id {
            1 => HashAlg::Md5,
            2 => HashAlg::Sha1,
            5 => HashAlg::Sha256,
            6 => HashAlg::Sha384,
            7 => HashAlg::Sha512,
            _ => return None,
        })
    }

    /// Name as IOS prints it ("hash MD5", "hash SHA").
    pub fn ios_name(self) -> &'static str {
        match self {
            HashAlg::Md5 => "MD5",
            HashAlg::Sha1 => "SHA",
            HashAlg::Sha256 => "SHA256",
            HashAlg::Sha384 => "SHA384",
            HashAlg::Sha512 => "SHA512",
        }
    }

    /// Digest length; also the HMAC key length used for ESP.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Md5 => 16,
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// ESP ICV length (RFC 2403/2404/4868 truncation).
    pub fn icv_len(self) -> usize {
        match self {
            HashAlg::Md5 | HashAlg::Sha1 => 12,
            other => other.digest_len() / 2,
        }
    }

    /// Plain hash of the concatenation of `data`.
    pub fn hash(self, data: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(data: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in data {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            HashAlg::Md5 => run::<md5::Md5>(data),
            HashAlg::Sha1 => run::<sha1::Sha1>(data),
            HashAlg::Sha256 => run::<sha2::Sha256>(data),
            HashAlg::Sha384 => run::<sha2::Sha384>(data),
            HashAlg::Sha512 => run::<sha2::Sha512>(data),
        }
    }
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in data {
        m.update(p);
    }
    Zeroizing::new(m.finalize().into_bytes().to_vec())
}

impl Prf for HashAlg {
    fn output_len(&self) -> usize {
        self.digest_len()
    }

    fn prf(&self, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        match self {
            HashAlg::Md5 => hmac::<Hmac<md5::Md5>>(key, data),
            HashAlg::Sha1 => hmac::<Hmac<sha1::Sha1>>(key, data),
            HashAlg::Sha256 => hmac::<Hmac<sha2::Sha256>>(key, data),
            HashAlg::Sha384 => hmac::<Hmac<sha2::Sha384>>(key, data),
            HashAlg::Sha512 => hmac::<Hmac<sha2::Sha512>>(key, data),
        }
    }
}
