//! RFC 2409 pre-shared-key schedule: SKEYID and its children, encryption
//! key expansion (Appendix B), IVs, HASH_I/HASH_R, Quick Mode hashes and
//! KEYMAT.

use crate::crypto::{Cipher, EncrAlg, HashAlg, Prf};
use zeroize::Zeroizing;

type Secret = Zeroizing<Vec<u8>>;

/// Phase 1 keying material; wiped on drop.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Phase1Keys {
    pub prf: HashAlg,
    pub encr: EncrAlg,
    pub skeyid: Secret,
    pub skeyid_d: Secret,
    pub skeyid_a: Secret,
    pub skeyid_e: Secret,
    /// The cipher key derived from SKEYID_e (expanded if needed).
    pub enc_key: Secret,
}

impl std::fmt::Debug for Phase1Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phase1Keys({:?}, {:?}, ..)", self.prf, self.encr)
    }
}

/// SKEYID = prf(pre-shared-key, Ni_b | Nr_b)
pub fn skeyid_psk(prf: HashAlg, psk: &[u8], ni: &[u8], nr: &[u8]) -> Secret {
    prf.prf(psk, &[ni, nr])
}

/// Derive SKEYID_d/a/e and the encryption key.
pub fn derive_phase1(
    prf: HashAlg,
    encr: EncrAlg,
    skeyid: Secret,
    gxy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
) -> Phase1Keys {
    let d = prf.prf(&skeyid, &[gxy, cky_i, cky_r, &[0]]);
    let a = prf.prf(&skeyid, &[&d, gxy, cky_i, cky_r, &[1]]);
    let e = prf.prf(&skeyid, &[&a, gxy, cky_i, cky_r, &[2]]);
    let enc_key = expand_enc_key(prf, &e, encr.key_len());
    Phase1Keys {
        prf,
        encr,
        skeyid,
        skeyid_d: d,
        skeyid_a: a,
        skeyid_e: e,
        enc_key,
    }
}

/// Appendix B: if SKEYID_e is too short, Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0),
/// Kn = prf(SKEYID_e, Kn-1); otherwise its leading bytes.
pub fn expand_enc_key(prf: HashAlg, skeyid_e: &[u8], len: usize) -> Secret {
    if skeyid_e.len() >= len {
        return Zeroizing::new(skeyid_e[..len].to_vec());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf.output_len()));
    let mut k = prf.prf(skeyid_e, &[&[0]]);
    loop {
        out.extend_from_slice(&k);
        if out.len() >= len {
            break;
        }
        k = prf.prf(skeyid_e, &[&k]);
    }
    out.truncate(len);
    out
}

/// Initial phase 1 IV: hash(g^xi | g^xr) truncated to the block size
/// (RFC 2409 Appendix B: the hash is "IV material", the IV its first
/// block-size bytes). It encrypts the first encrypted phase 1 message;
/// each later one chains on the previous ciphertext's last block.
pub fn phase1_iv(hash: HashAlg, encr: EncrAlg, gxi: &[u8], gxr: &[u8]) -> Vec<u8> {
    let mut v = hash.hash(&[gxi, gxr]);
    v.truncate(encr.block_size());
    v
}

/// IV for a new phase 2 / informational exchange: hash(`p1_iv` | M-ID) cut
/// to the block size, where `p1_iv` is the last phase 1 CBC block (RFC 2409
/// Appendix B). Main Mode and our Aggressive Mode always end encrypted, so
/// that block is well defined. After an Aggressive Mode whose third message
/// came in the clear (strongSwan) nothing was encrypted and `p1_iv` is the
/// initial IV, block-sized, as strongSwan hashes it (libreswan 4 would hash
/// the whole hash(g^xi | g^xr) digest, but it never sends that message in
/// the clear).
pub fn message_iv(hash: HashAlg, encr: EncrAlg, p1_iv: &[u8], mid: u32) -> Vec<u8> {
    let mut v = hash.hash(&[p1_iv, &mid.to_be_bytes()]);
    v.truncate(encr.block_size());
    v
}

/// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b);
/// HASH_R swaps the DH values and cookies and uses IDir_b.
#[allow(clippy::too_many_arguments)]
pub fn auth_hash(
    k: &Phase1Keys,
    initiator: bool,
    gxi: &[u8],
    gxr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    id_b: &[u8],
) -> Vec<u8> {
    if initiator {
        k.prf
            .prf(&k.skeyid, &[gxi, gxr, cky_i, cky_r, sai_b, id_b])
            .to_vec()
    } else {
        k.prf
            .prf(&k.skeyid, &[gxr, gxi, cky_r, cky_i, sai_b, id_b])
            .to_vec()
    }
}

/// Quick Mode HASH(1) / informational HASH(1): prf(SKEYID_a, M-ID | rest).
pub fn hash1(k: &Phase1Keys, mid: u32, rest: &[u8]) -> Vec<u8> {
    k.prf.prf(&k.skeyid_a, &[&mid.to_be_bytes(), rest]).to_vec()
}

/// Quick Mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest).
pub fn hash2(k: &Phase1Keys, mid: u32, ni: &[u8], rest: &[u8]) -> Vec<u8> {
    k.prf
        .prf(&k.skeyid_a, &[&mid.to_be_bytes(), ni, rest])
        .to_vec()
}

/// Quick Mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
pub fn hash3(k: &Phase1Keys, mid: u32, ni: &[u8], nr: &[u8]) -> Vec<u8> {
    k.prf
        .prf(&k.skeyid_a, &[&[0], &mid.to_be_bytes(), ni, nr])
        .to_vec()
}

/// KEYMAT = K1 | K2 | ..., K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
/// Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
pub fn keymat(
    k: &Phase1Keys,
    gqm: Option<&[u8]>,
    protocol: u8,
    spi: &[u8],
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Secret {
    let g = gqm.unwrap_or(&[]);
    let mut out = Zeroizing::new(Vec::with_capacity(len + k.prf.output_len()));
    let mut prev: Secret = Zeroizing::new(Vec::new());
    while out.len() < len {
        prev = k
            .prf
            .prf(&k.skeyid_d, &[&prev, g, &[protocol], spi, ni, nr]);
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Vectors computed with an independent Python implementation of the
    /// RFC 2409 formulas (hmac/hashlib), inputs below.
    #[test]
    fn schedule_matches_independent_implementation() {
        let psk = b"cisco123";
        let ni = [0x11u8; 16];
        let nr = [0x22u8; 16];
        let gxy = [0x33u8; 96];
        let ci = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let cr = [9u8, 10, 11, 12, 13, 14, 15, 16];
        let s = skeyid_psk(HashAlg::Sha1, psk, &ni, &nr);
        let k = derive_phase1(HashAlg::Sha1, EncrAlg::Aes256, s, &gxy, &ci, &cr);
        assert_eq!(
            hex::encode(&*k.skeyid),
            include_str!("../tests/vectors/skeyid.txt").trim()
        );
        assert_eq!(
            hex::encode(&*k.skeyid_d),
            include_str!("../tests/vectors/skeyid_d.txt").trim()
        );
        assert_eq!(
            hex::encode(&*k.skeyid_a),
            include_str!("../tests/vectors/skeyid_a.txt").trim()
        );
        assert_eq!(
            hex::encode(&*k.skeyid_e),
            include_str!("../tests/vectors/skeyid_e.txt").trim()
        );
        // AES-256 needs 32 bytes from a 20-byte SKEYID_e: Appendix B expansion.
        assert_eq!(
            hex::encode(&*k.enc_key),
            include_str!("../tests/vectors/enc_key.txt").trim()
        );
        let km = keymat(&k, None, 3, &h("c0ffee01"), &ni, &nr, 56);
        assert_eq!(
            hex::encode(&*km),
            include_str!("../tests/vectors/keymat.txt").trim()
        );
        let km_pfs = keymat(&k, Some(&[0x44; 8]), 3, &h("c0ffee01"), &ni, &nr, 56);
        assert_eq!(
            hex::encode(&*km_pfs),
            include_str!("../tests/vectors/keymat_pfs.txt").trim()
        );
        let iv = phase1_iv(HashAlg::Sha1, EncrAlg::Aes256, &[5; 4], &[6; 4]);
        assert_eq!(
            hex::encode(&iv),
            include_str!("../tests/vectors/iv.txt").trim()
        );
    }
}
