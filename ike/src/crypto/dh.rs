//! Diffie-Hellman: MODP groups 1, 2, 5, 14, 15, 16 with constant-time
//! exponentiation (crypto-bigint), and ECP groups 19/20 (RFC 5903).

use super::{CryptoError, DhGroup, primes};
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Uint, Word};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use std::sync::OnceLock;
use zeroize::{Zeroize, Zeroizing};

/// IKE group description (phase 1 class 4 / IPsec DOI class 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupId {
    Modp768,
    Modp1024,
    Modp1536,
    Modp2048,
    Modp3072,
    Modp4096,
    Ecp256,
    Ecp384,
}

/// A DH private value (exponent or scalar), wiped on drop.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct DhPrivate(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhPrivate(..)")
    }
}

impl DhPrivate {
    /// A private value from fixed bytes (known-answer tests).
    pub fn from_bytes(b: &[u8]) -> Self {
        DhPrivate(Zeroizing::new(b.to_vec()))
    }
}

impl GroupId {
    pub fn from_ike(id: u64) -> Option<Self> {
        Some(match id {
            1 => GroupId::Modp768,
            2 => GroupId::Modp1024,
            5 => GroupId::Modp1536,
            14 => GroupId::Modp2048,
            15 => GroupId::Modp3072,
            16 => GroupId::Modp4096,
            19 => GroupId::Ecp256,
            20 => GroupId::Ecp384,
            _ => return None,
        })
    }

    pub fn ike_id(self) -> u16 {
        match self {
            GroupId::Modp768 => 1,
            GroupId::Modp1024 => 2,
            GroupId::Modp1536 => 5,
            GroupId::Modp2048 => 14,
            GroupId::Modp3072 => 15,
            GroupId::Modp4096 => 16,
            GroupId::Ecp256 => 19,
            GroupId::Ecp384 => 20,
        }
    }

    /// Private exponent size in bits for MODP groups: twice the upper
    /// strength estimate of the modulus, so the exponent is never the weak
    /// link (RFC 3526 section 8, "Strength Estimate 2"):
    ///
    /// | group | modulus | strength | exponent |
    /// |-------|---------|----------|----------|
    /// | 5     | 1536    | 120      | 240      |
    /// | 14    | 2048    | 160      | 320      |
    /// | 15    | 3072    | 210      | 420      |
    /// | 16    | 4096    | 240      | 480      |
    ///
    /// RFC 3526 does not cover groups 1 and 2 (RFC 2409); a 1024-bit modulus
    /// is rated at 80 bits (NIST SP 800-57, 160-bit subgroup exponents), and
    /// the 768-bit group is weaker still, so both use 160 bits.
    fn exp_bits(self) -> usize {
        match self {
            GroupId::Modp768 | GroupId::Modp1024 => 160,
            GroupId::Modp1536 => 240,
            GroupId::Modp2048 => 320,
            GroupId::Modp3072 => 420,
            GroupId::Modp4096 => 480,
            GroupId::Ecp256 | GroupId::Ecp384 => unreachable!("ECP groups use scalars"),
        }
    }
}

fn to_uint<const L: usize>(b: &[u8]) -> Uint<L> {
    const W: usize = std::mem::size_of::<Word>();
    let mut words = [0 as Word; L];
    for (i, byte) in b.iter().rev().enumerate().take(L * W) {
        words[i / W] |= (*byte as Word) << (8 * (i % W));
    }
    let u = Uint::from_words(words);
    words.zeroize();
    u
}

fn from_uint<const L: usize>(u: &Uint<L>, len: usize) -> Vec<u8> {
    const W: usize = std::mem::size_of::<Word>();
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().rev().enumerate() {
        let w = u.as_words()[i / W];
        *o = (w >> (8 * (i % W))) as u8;
    }
    out
}

/// base^exp mod p; with `check`, the base must satisfy 1 < base < p-1.
fn modexp<const L: usize>(
    params: &DynResidueParams<L>,
    base: &[u8],
    exp: &[u8],
    check: bool,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let len = L * std::mem::size_of::<Word>();
    if base.len() > len {
        return Err(CryptoError::BadPublic("too long"));
    }
    let p = params.modulus();
    let b = to_uint::<L>(base);
    if check && (b <= Uint::ONE || b >= p.wrapping_sub(&Uint::ONE)) {
        return Err(CryptoError::BadPublic("not in 1 < y < p-1"));
    }
    let mut x = to_uint::<L>(exp);
    let r = DynResidue::new(&b, *params).pow_bounded_exp(&x, exp.len() * 8);
    x.zeroize();
    let mut v = r.retrieve();
    let out = Zeroizing::new(from_uint(&v, len));
    v.zeroize();
    Ok(out)
}

/// Montgomery parameters of a prime, computed once: deriving them costs a
/// wide constant-time division, a noticeable share of a handshake.
macro_rules! params {
    ($limbs:literal, $hex:expr) => {{
        static P: OnceLock<DynResidueParams<$limbs>> = OnceLock::new();
        P.get_or_init(|| DynResidueParams::new(&Uint::from_be_hex($hex)))
    }};
}

impl GroupId {
    pub(crate) fn modp(
        self,
        base: &[u8],
        exp: &[u8],
        check: bool,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            GroupId::Modp768 => modexp(params!(12, primes::GROUP1), base, exp, check),
            GroupId::Modp1024 => modexp(params!(16, primes::GROUP2), base, exp, check),
            GroupId::Modp1536 => modexp(params!(24, primes::GROUP5), base, exp, check),
            GroupId::Modp2048 => modexp(params!(32, primes::GROUP14), base, exp, check),
            GroupId::Modp3072 => modexp(params!(48, primes::GROUP15), base, exp, check),
            GroupId::Modp4096 => modexp(params!(64, primes::GROUP16), base, exp, check),
            _ => unreachable!("ECP groups do not use modexp"),
        }
    }
}

macro_rules! ecp {
    ($curve:ident, $rng:expr) => {{
        let sk = $curve::SecretKey::random($rng);
        let pt = sk.public_key().to_encoded_point(false);
        let public = pt.as_bytes()[1..].to_vec();
        (DhPrivate(Zeroizing::new(sk.to_bytes().to_vec())), public)
    }};
}

macro_rules! ecp_shared {
    ($curve:ident, $priv:expr, $peer:expr) => {{
        let sk = $curve::SecretKey::from_slice(&$priv.0)
            .map_err(|_| CryptoError::BadPublic("own scalar"))?;
        let mut sec1 = Vec::with_capacity($peer.len() + 1);
        sec1.push(4u8);
        sec1.extend_from_slice($peer);
        // Decoding checks that the point is on the curve and not the identity.
        let pk = $curve::PublicKey::from_sec1_bytes(&sec1)
            .map_err(|_| CryptoError::BadPublic("point not on curve"))?;
        let s = $curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
        Ok(Zeroizing::new(s.raw_secret_bytes().to_vec()))
    }};
}

impl DhGroup for GroupId {
    fn public_len(&self) -> usize {
        match self {
            GroupId::Modp768 => 96,
            GroupId::Modp1024 => 128,
            GroupId::Modp1536 => 192,
            GroupId::Modp2048 => 256,
            GroupId::Modp3072 => 384,
            GroupId::Modp4096 => 512,
            GroupId::Ecp256 => 64,
            GroupId::Ecp384 => 96,
        }
    }

    fn generate<R: RngCore + CryptoRng>(&self, rng: &mut R) -> (DhPrivate, Vec<u8>) {
        match self {
            GroupId::Ecp256 => ecp!(p256, rng),
            GroupId::Ecp384 => ecp!(p384, rng),
            _ => {
                // Exactly exp_bits() bits: the top bit is set so every
                // exponent has the same (public) length, and the modexp loop
                // runs over all its bits in constant time.
                let bits = self.exp_bits();
                let mut x = Zeroizing::new(vec![0u8; bits.div_ceil(8)]);
                rng.fill_bytes(&mut x);
                let top = (bits - 1) % 8;
                x[0] &= ((1u16 << (top + 1)) - 1) as u8;
                x[0] |= 1 << top;
                let public = self
                    .modp(&[2], &x, false)
                    .expect("generator 2 is always in range");
                (DhPrivate(x), public.to_vec())
            }
        }
    }

    fn shared(&self, private: &DhPrivate, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if peer.len() != self.public_len() {
            return Err(CryptoError::BadPublic("wrong length"));
        }
        match self {
            GroupId::Ecp256 => ecp_shared!(p256, private, peer),
            GroupId::Ecp384 => ecp_shared!(p384, private, peer),
            _ => self.modp(peer, &private.0, true),
        }
    }
}

#[cfg(test)]
mod exponent_tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn modp_exponents_have_exactly_the_rfc3526_bit_length() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for (g, bits) in [
            (GroupId::Modp768, 160),
            (GroupId::Modp1024, 160),
            (GroupId::Modp1536, 240),
            (GroupId::Modp2048, 320),
            (GroupId::Modp3072, 420),
            (GroupId::Modp4096, 480),
        ] {
            for _ in 0..8 {
                let (x, _) = g.generate(&mut rng);
                let lead = x.0[0];
                assert_ne!(lead, 0, "{g:?}");
                let len = x.0.len() * 8 - lead.leading_zeros() as usize;
                assert_eq!(len, bits, "{g:?}");
            }
        }
    }
}
