//! AES-GCM (NIST SP 800-38D) with 12-byte nonces and 16-byte tags, as ESP
//! uses it (RFC 4106).
//!
//! On x86_64 with PCLMULQDQ, GHASH is computed in the POLYVAL form (RFC 8452,
//! appendix A: the same function on byte-reversed blocks with H·x as key),
//! whose Montgomery reduction needs no bit shifts. Eight blocks are
//! multiplied by H^8..H^1, their unreduced Karatsuba products summed and
//! reduced once. The CTR keystream comes eight blocks per call from the
//! block cipher, which AES-NI runs in parallel; sealing hashes each 128-byte
//! chunk right after encrypting it, while it is in L1, and opening hashes
//! each chunk right before decrypting it; on a bad tag the ciphertext is
//! restored (encrypted again) before returning, so no plaintext leaves.
//!
//! Without PCLMULQDQ (or off x86_64) the `aes-gcm` crate does the work.
//! The choice is made once, when the key is set up.

use aes_gcm::aead::consts::{U0, U12, U16};
use aes_gcm::aead::{AeadCore, AeadInPlace, Error, KeyInit, KeySizeUser};
use aes_gcm::{Key, Nonce, Tag};
use cipher::{BlockCipher, BlockEncrypt, BlockSizeUser};

/// Longest plaintext GCM allows: 2^32 - 2 blocks (SP 800-38D §5.2.1.1).
#[cfg(target_arch = "x86_64")]
const P_MAX: u64 = (1 << 36) - 32;
/// Longest associated data GCM allows (2^64 - 1 bits).
#[cfg(target_arch = "x86_64")]
const A_MAX: u64 = (1 << 61) - 1;

/// AES-GCM over the block cipher `C` (an AES variant).
pub struct Gcm<C> {
    engine: Engine<C>,
}

/// AES-128-GCM.
pub type Gcm128 = Gcm<aes::Aes128Enc>;
/// AES-192-GCM.
pub type Gcm192 = Gcm<aes::Aes192Enc>;
/// AES-256-GCM.
pub type Gcm256 = Gcm<aes::Aes256Enc>;

/// Both variants keep their whole state inline (no heap), so the key state
/// can be wiped as flat memory.
#[allow(
    clippy::large_enum_variant,
    reason = "boxing would put key material on the heap, out of the wiped state"
)]
enum Engine<C> {
    #[cfg(target_arch = "x86_64")]
    Clmul(clmul::State<C>),
    Portable(aes_gcm::AesGcm<C, U12>),
}

impl<C> Gcm<C>
where
    C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
{
    /// Uses the `aes-gcm` crate whatever the CPU offers (reference and
    /// comparison for the accelerated path).
    pub fn new_portable(key: &Key<Self>) -> Self {
        Gcm {
            engine: Engine::Portable(aes_gcm::AesGcm::new(key)),
        }
    }

    /// Whether GHASH runs on carry-less multiply instructions.
    pub fn is_accelerated(&self) -> bool {
        match self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Clmul(_) => true,
            Engine::Portable(_) => false,
        }
    }
}

impl<C: KeyInit> KeySizeUser for Gcm<C> {
    type KeySize = C::KeySize;
}

impl<C> KeyInit for Gcm<C>
where
    C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
{
    fn new(key: &Key<Self>) -> Self {
        #[cfg(target_arch = "x86_64")]
        if clmul::available() {
            return Gcm {
                engine: Engine::Clmul(clmul::State::new(C::new(key))),
            };
        }
        Self::new_portable(key)
    }
}

impl<C> AeadCore for Gcm<C> {
    type NonceSize = U12;
    type TagSize = U16;
    type CiphertextOverhead = U0;
}

impl<C> AeadInPlace for Gcm<C>
where
    C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt,
{
    fn encrypt_in_place_detached(
        &self,
        nonce: &Nonce<U12>,
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> Result<Tag, Error> {
        match &self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Clmul(s) => {
                if buffer.len() as u64 > P_MAX || associated_data.len() as u64 > A_MAX {
                    return Err(Error);
                }
                // SAFETY: `Clmul` is only built after `clmul::available()`
                // confirmed the CPU features these functions are compiled for.
                let tag = unsafe { s.seal(nonce.as_ref(), associated_data, buffer) };
                Ok(tag.into())
            }
            Engine::Portable(g) => g.encrypt_in_place_detached(nonce, associated_data, buffer),
        }
    }

    fn decrypt_in_place_detached(
        &self,
        nonce: &Nonce<U12>,
        associated_data: &[u8],
        buffer: &mut [u8],
        tag: &Tag,
    ) -> Result<(), Error> {
        match &self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Clmul(s) => {
                if buffer.len() as u64 > P_MAX || associated_data.len() as u64 > A_MAX {
                    return Err(Error);
                }
                // SAFETY: as for sealing.
                let ok = unsafe { s.open(nonce.as_ref(), associated_data, buffer, tag) };
                if ok { Ok(()) } else { Err(Error) }
            }
            Engine::Portable(g) => g.decrypt_in_place_detached(nonce, associated_data, buffer, tag),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod clmul {
    use core::arch::x86_64::*;

    use cipher::{Block, BlockCipher, BlockEncrypt, BlockSizeUser};
    use subtle::ConstantTimeEq;

    use super::U16;

    /// Blocks per GHASH reduction and per keystream call.
    const PAR: usize = 8;
    const CHUNK: usize = PAR * 16;

    /// x^128 = x^127 + x^126 + x^121 + 1 in POLYVAL's field (RFC 8452 §3).
    const POLY: u128 = 0xc200_0000_0000_0000_0000_0000_0000_0001;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("pclmulqdq") && std::is_x86_feature_detected!("ssse3")
    }

    pub(super) struct State<C> {
        cipher: C,
        /// H^1..H^8 for POLYVAL's `dot` product (H^i·x^(-128(i-1))).
        h: [__m128i; PAR],
        /// Low half xor high half of each power, for Karatsuba's middle term.
        hk: [__m128i; PAR],
    }

    impl<C> State<C>
    where
        C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt,
    {
        /// Only to be called once `available()` said yes.
        pub(super) fn new(cipher: C) -> Self {
            let mut h = Block::<C>::default();
            cipher.encrypt_block(&mut h);
            // RFC 8452 appendix A: POLYVAL's key is mulX_POLYVAL(ByteReverse(H)).
            let h = u128::from_be_bytes(h.into());
            let hx = (h << 1) ^ (POLY & 0u128.wrapping_sub(h >> 127));
            // SAFETY: the caller checked the CPU features.
            let (h, hk) = unsafe { powers(hx) };
            State { cipher, h, hk }
        }

        /// Encrypts `buf` in place and returns the tag.
        ///
        /// # Safety
        /// The CPU must have PCLMULQDQ and SSSE3.
        #[target_feature(enable = "pclmulqdq,ssse3")]
        pub(super) unsafe fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
            let mask = self.j0_mask(nonce);
            let mut ctr = Ctr::new(nonce);
            let mut acc = self.hash(_mm_setzero_si128(), aad);
            let mut chunks = buf.chunks_exact_mut(CHUNK);
            // Each chunk is hashed after the next one has been encrypted, so
            // the two do not wait on each other.
            let mut done: Option<&[u8]> = None;
            for c in &mut chunks {
                ctr.apply(&self.cipher, c);
                if let Some(d) = done {
                    acc = self.mul_sum(acc, &load8(d));
                }
                done = Some(c);
            }
            let tail = chunks.into_remainder();
            if !tail.is_empty() {
                ctr.apply(&self.cipher, tail);
            }
            if let Some(d) = done {
                acc = self.mul_sum(acc, &load8(d));
            }
            acc = self.hash(acc, tail);
            self.tag(acc, mask, aad.len(), buf.len())
        }

        /// Decrypts `buf` in place, hashing each chunk just before, and
        /// checks the tag. On a bad tag the ciphertext is restored, so no
        /// plaintext is released.
        ///
        /// # Safety
        /// The CPU must have PCLMULQDQ and SSSE3.
        #[target_feature(enable = "pclmulqdq,ssse3")]
        pub(super) unsafe fn open(
            &self,
            nonce: &[u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8],
        ) -> bool {
            let mask = self.j0_mask(nonce);
            let mut ctr = Ctr::new(nonce);
            let mut acc = self.hash(_mm_setzero_si128(), aad);
            let mut chunks = buf.chunks_exact_mut(CHUNK);
            for c in &mut chunks {
                acc = self.mul_sum(acc, &load8(c));
                ctr.apply(&self.cipher, c);
            }
            let tail = chunks.into_remainder();
            if !tail.is_empty() {
                acc = self.hash(acc, tail);
                ctr.apply(&self.cipher, tail);
            }
            let expect = self.tag(acc, mask, aad.len(), buf.len());
            if bool::from(expect[..].ct_eq(tag)) {
                return true;
            }
            let mut ctr = Ctr::new(nonce);
            for c in buf.chunks_mut(CHUNK) {
                ctr.apply(&self.cipher, c);
            }
            false
        }

        /// E(K, J0), which masks the tag. Computed before the bulk work so
        /// that it overlaps with it instead of ending the critical path.
        fn j0_mask(&self, nonce: &[u8; 12]) -> u128 {
            let mut j0 = Block::<C>::default();
            j0[..12].copy_from_slice(nonce);
            j0[15] = 1;
            self.cipher.encrypt_block(&mut j0);
            u128::from_ne_bytes(j0.into())
        }

        /// Folds the length block into `acc` and applies the mask.
        #[target_feature(enable = "pclmulqdq,ssse3")]
        fn tag(&self, acc: __m128i, mask: u128, aad_len: usize, ct_len: usize) -> [u8; 16] {
            // The length block [len(A)]64 || [len(C)]64, byte-reversed.
            let lens = _mm_set_epi64x((aad_len as u64 * 8) as i64, (ct_len as u64 * 8) as i64);
            let s = self.mul_sum(acc, &[lens]);
            let mut out = [0u8; 16];
            // SAFETY: `out` is 16 writable bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_shuffle_epi8(s, bswap())) };
            (u128::from_ne_bytes(out) ^ mask).to_ne_bytes()
        }

        /// GHASH of `data`, zero-padded to whole blocks, continuing from `acc`.
        #[target_feature(enable = "pclmulqdq,ssse3")]
        fn hash(&self, mut acc: __m128i, data: &[u8]) -> __m128i {
            let mut chunks = data.chunks_exact(CHUNK);
            for c in &mut chunks {
                acc = self.mul_sum(acc, &load8(c));
            }
            let rem = chunks.remainder();
            match rem.len().div_ceil(16) {
                0 => acc,
                1 => self.mul_sum(acc, &[load_padded(rem)]),
                n => {
                    // Right-aligned in eight slots: the leading zero blocks
                    // add nothing, and the fixed-size sum is unrolled.
                    let mut x = [_mm_setzero_si128(); PAR];
                    for (xi, b) in x[PAR - n..].iter_mut().zip(rem.chunks(16)) {
                        *xi = load_padded(b);
                    }
                    x[PAR - n] = _mm_xor_si128(x[PAR - n], acc);
                    self.mul_sum(_mm_setzero_si128(), &x)
                }
            }
        }

        /// (acc + x[0])·H^n + x[1]·H^(n-1) + … + x[n-1]·H, with one reduction.
        #[inline]
        #[target_feature(enable = "pclmulqdq,ssse3")]
        fn mul_sum(&self, acc: __m128i, x: &[__m128i]) -> __m128i {
            let n = x.len();
            debug_assert!((1..=PAR).contains(&n));
            let mut lo = _mm_setzero_si128();
            let mut hi = _mm_setzero_si128();
            let mut mid = _mm_setzero_si128();
            for (i, &xi) in x.iter().enumerate() {
                let a = if i == 0 { _mm_xor_si128(xi, acc) } else { xi };
                let h = self.h[n - 1 - i];
                lo = _mm_xor_si128(lo, _mm_clmulepi64_si128(a, h, 0x00));
                hi = _mm_xor_si128(hi, _mm_clmulepi64_si128(a, h, 0x11));
                let af = _mm_xor_si128(a, _mm_shuffle_epi32(a, 0x4e));
                mid = _mm_xor_si128(mid, _mm_clmulepi64_si128(af, self.hk[n - 1 - i], 0x00));
            }
            reduce(lo, hi, mid)
        }
    }

    /// The powers H^1..H^8 of `h` under POLYVAL's `dot`, and their
    /// Karatsuba halves.
    #[target_feature(enable = "pclmulqdq,ssse3")]
    fn powers(h: u128) -> ([__m128i; PAR], [__m128i; PAR]) {
        let h1 = _mm_set_epi64x((h >> 64) as i64, h as i64);
        let mut p = [h1; PAR];
        for i in 1..PAR {
            p[i] = dot(p[i - 1], h1);
        }
        let k = p.map(|v| _mm_xor_si128(v, _mm_shuffle_epi32(v, 0x4e)));
        (p, k)
    }

    /// a·b·x^-128, POLYVAL's field multiplication.
    #[target_feature(enable = "pclmulqdq,ssse3")]
    fn dot(a: __m128i, b: __m128i) -> __m128i {
        let lo = _mm_clmulepi64_si128(a, b, 0x00);
        let hi = _mm_clmulepi64_si128(a, b, 0x11);
        let af = _mm_xor_si128(a, _mm_shuffle_epi32(a, 0x4e));
        let bf = _mm_xor_si128(b, _mm_shuffle_epi32(b, 0x4e));
        reduce(lo, hi, _mm_clmulepi64_si128(af, bf, 0x00))
    }

    /// Combines Karatsuba's three sums into the 256-bit product T and returns
    /// T·x^-128 mod P: twice, the low 64 bits q are cancelled by adding q·P
    /// (P's low 64 bits are 1, so q itself is the multiple) and shifted out.
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3")]
    fn reduce(lo: __m128i, hi: __m128i, mid: __m128i) -> __m128i {
        let mid = _mm_xor_si128(mid, _mm_xor_si128(lo, hi));
        let t_lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
        let t_hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
        // x^127 + x^126 + x^121 = x^64·0xc2000000_00000000.
        let poly = _mm_set_epi64x(0, (POLY >> 64) as i64);
        let c1 = _mm_clmulepi64_si128(t_lo, poly, 0x00);
        let t = _mm_xor_si128(_mm_shuffle_epi32(t_lo, 0x4e), c1);
        let c2 = _mm_clmulepi64_si128(t, poly, 0x00);
        let t = _mm_xor_si128(_mm_shuffle_epi32(t, 0x4e), c2);
        _mm_xor_si128(t_hi, t)
    }

    #[inline]
    #[target_feature(enable = "ssse3")]
    fn bswap() -> __m128i {
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    }

    /// Eight consecutive blocks of a 128-byte chunk, byte-reversed.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn load8(c: &[u8]) -> [__m128i; PAR] {
        let c: &[u8; CHUNK] = c.try_into().expect("a whole chunk");
        // SAFETY: each load reads 16 bytes inside `c`.
        core::array::from_fn(|i| unsafe {
            _mm_shuffle_epi8(_mm_loadu_si128(c.as_ptr().add(16 * i).cast()), bswap())
        })
    }

    /// One block of up to 16 bytes, zero-padded, byte-reversed.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn load_padded(b: &[u8]) -> __m128i {
        if let Ok(b) = <&[u8; 16]>::try_from(b) {
            // SAFETY: `b` is 16 readable bytes.
            return _mm_shuffle_epi8(unsafe { _mm_loadu_si128(b.as_ptr().cast()) }, bswap());
        }
        let mut p = [0u8; 16];
        p[..b.len()].copy_from_slice(b);
        // SAFETY: `p` is 16 readable bytes.
        _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.as_ptr().cast()) }, bswap())
    }

    /// GCM's 32-bit counter mode, starting at inc32(J0).
    struct Ctr {
        /// The nonce as the high 96 bits of a big-endian counter block.
        base: u128,
        next: u32,
    }

    impl Ctr {
        fn new(nonce: &[u8; 12]) -> Self {
            let mut b = [0u8; 16];
            b[..12].copy_from_slice(nonce);
            Ctr {
                base: u128::from_be_bytes(b),
                next: 2,
            }
        }

        /// XORs the keystream into `data` (at most 128 bytes).
        #[inline(always)]
        fn apply<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>>(
            &mut self,
            c: &C,
            data: &mut [u8],
        ) {
            let n = data.len().div_ceil(16);
            let mut ks: [Block<C>; PAR] = core::array::from_fn(|i| {
                let ctr = self.next.wrapping_add(i as u32);
                (self.base | u128::from(ctr)).to_be_bytes().into()
            });
            self.next = self.next.wrapping_add(n as u32);
            c.encrypt_blocks(&mut ks[..n]);
            let mut blocks = data.chunks_exact_mut(16);
            for (d, k) in (&mut blocks).zip(&ks) {
                let d: &mut [u8; 16] = d.try_into().expect("16 bytes");
                *d = (u128::from_ne_bytes(*d) ^ u128::from_ne_bytes((*k).into())).to_ne_bytes();
            }
            let rest = blocks.into_remainder();
            if !rest.is_empty() {
                for (d, k) in rest.iter_mut().zip(&ks[n - 1]) {
                    *d ^= k;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::{Aes128, Aes192, Aes256};
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        hex::decode(s).unwrap()
    }

    /// Every way to build a key of this size: the default (accelerated here)
    /// and the forced portable one.
    fn both<C>(key: &[u8]) -> [Gcm<C>; 2]
    where
        C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
    {
        [
            Gcm::<C>::new_from_slice(key).unwrap(),
            Gcm::<C>::new_portable(Key::<Gcm<C>>::from_slice(key)),
        ]
    }

    fn check<C>(key: &str, iv: &str, pt: &str, aad: &str, ct: &str, tag: &str)
    where
        C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
    {
        let (key, iv, pt, aad, ct, tag) = (h(key), h(iv), h(pt), h(aad), h(ct), h(tag));
        for g in both::<C>(&key) {
            let mut buf = pt.clone();
            let t = g
                .encrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut buf)
                .unwrap();
            assert_eq!(buf, ct, "ciphertext, accelerated={}", g.is_accelerated());
            assert_eq!(&t[..], &tag[..], "tag, accelerated={}", g.is_accelerated());
            g.decrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut buf, &t)
                .unwrap();
            assert_eq!(buf, pt);
        }
    }

    #[test]
    fn this_machine_takes_the_accelerated_path() {
        // The CI and development machines have PCLMULQDQ; if this fails the
        // other tests only cover the portable path.
        #[cfg(target_arch = "x86_64")]
        assert!(Gcm128::new_from_slice(&[0; 16]).unwrap().is_accelerated());
        assert!(!Gcm128::new_portable(&Default::default()).is_accelerated());
    }

    // The test cases of McGrew and Viega, "The Galois/Counter Mode of
    // Operation (GCM)", appendix B, with 96-bit IVs (cases 1-4, 7-10, 13-16).
    const K2: &str = "feffe9928665731c6d6a8f9467308308";
    const IV: &str = "cafebabefacedbaddecaf888";
    const P4: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const P3: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
        1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const A4: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    #[test]
    fn aes128_test_cases() {
        let z = "00000000000000000000000000000000";
        let iv0 = "000000000000000000000000";
        check::<aes::Aes128Enc>(z, iv0, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a");
        check::<aes::Aes128Enc>(
            z,
            iv0,
            z,
            "",
            "0388dace60b6a392f328c2b971b2fe78",
            "ab6e47d42cec13bdf53a67b21257bddf",
        );
        check::<aes::Aes128Enc>(
            K2,
            IV,
            P3,
            "",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
            21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        );
        check::<aes::Aes128Enc>(
            K2,
            IV,
            P4,
            A4,
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
            21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47",
        );
    }

    #[test]
    fn aes192_test_cases() {
        let z = "000000000000000000000000000000000000000000000000";
        let iv0 = "000000000000000000000000";
        let k = "feffe9928665731c6d6a8f9467308308feffe9928665731c";
        check::<aes::Aes192Enc>(z, iv0, "", "", "", "cd33b28ac773f74ba00ed1f312572435");
        check::<aes::Aes192Enc>(
            z,
            iv0,
            "00000000000000000000000000000000",
            "",
            "98e7247c07f0fe411c267e4384b0f600",
            "2ff58d80033927ab8ef4d4587514f0fb",
        );
        check::<aes::Aes192Enc>(
            k,
            IV,
            P3,
            "",
            "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c
            7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256",
            "9924a7c8587336bfb118024db8674a14",
        );
        check::<aes::Aes192Enc>(
            k,
            IV,
            P4,
            A4,
            "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c
            7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710",
            "2519498e80f1478f37ba55bd6d27618c",
        );
    }

    #[test]
    fn aes256_test_cases() {
        let z = "0000000000000000000000000000000000000000000000000000000000000000";
        let iv0 = "000000000000000000000000";
        let k = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
        check::<aes::Aes256Enc>(z, iv0, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b");
        check::<aes::Aes256Enc>(
            z,
            iv0,
            "00000000000000000000000000000000",
            "",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        );
        check::<aes::Aes256Enc>(
            k,
            IV,
            P3,
            "",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
            8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            "b094dac5d93471bdec1a502270e3cc6c",
        );
        check::<aes::Aes256Enc>(
            k,
            IV,
            P4,
            A4,
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
            8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        );
    }

    /// Seals with both engines and checks them against `aes_gcm::AesGcm`.
    fn against_reference<C, R>(key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8])
    where
        C: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
        R: BlockCipher + BlockSizeUser<BlockSize = U16> + BlockEncrypt + KeyInit,
    {
        let r = aes_gcm::AesGcm::<R, U12>::new_from_slice(key).unwrap();
        let mut want = pt.to_vec();
        let want_tag = r
            .encrypt_in_place_detached(nonce.into(), aad, &mut want)
            .unwrap();
        for g in both::<C>(key) {
            let mut buf = pt.to_vec();
            let tag = g
                .encrypt_in_place_detached(nonce.into(), aad, &mut buf)
                .unwrap();
            assert_eq!(buf, want, "accelerated={}", g.is_accelerated());
            assert_eq!(tag, want_tag, "accelerated={}", g.is_accelerated());
            g.decrypt_in_place_detached(nonce.into(), aad, &mut buf, &tag)
                .unwrap();
            assert_eq!(buf, pt);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn matches_aes_gcm(
            key in proptest::collection::vec(any::<u8>(), 32),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..=20),
            pt in proptest::collection::vec(any::<u8>(), 0..=2100),
        ) {
            against_reference::<aes::Aes128Enc, Aes128>(&key[..16], &nonce, &aad, &pt);
            against_reference::<aes::Aes192Enc, Aes192>(&key[..24], &nonce, &aad, &pt);
            against_reference::<aes::Aes256Enc, Aes256>(&key, &nonce, &aad, &pt);
        }

        #[test]
        fn any_flipped_bit_fails_and_releases_nothing(
            key in any::<[u8; 16]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 1..=20),
            pt in proptest::collection::vec(any::<u8>(), 1..=300),
            which in 0usize..3,
            pos in any::<usize>(),
            bit in 0u8..8,
        ) {
            for g in both::<aes::Aes128Enc>(&key) {
                let mut ct = pt.clone();
                let mut tag = g.encrypt_in_place_detached((&nonce).into(), &aad, &mut ct).unwrap();
                let mut aad = aad.clone();
                let target: &mut [u8] = match which {
                    0 => &mut aad,
                    1 => &mut ct,
                    _ => &mut tag,
                };
                let n = target.len();
                target[pos % n] ^= 1 << bit;
                let sent = ct.clone();
                let r = g.decrypt_in_place_detached((&nonce).into(), &aad, &mut ct, &tag);
                prop_assert!(r.is_err(), "accelerated={}", g.is_accelerated());
                // No plaintext is released: the buffer still holds what was sent.
                prop_assert_eq!(&ct, &sent);
            }
        }
    }

    #[test]
    fn every_length_around_the_chunk_edges() {
        // Exhaustive over short lengths and the 128-byte chunk boundaries.
        let key = [7u8; 16];
        let nonce = [9u8; 12];
        for len in (0..=300).chain(1390..=1430) {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for aad_len in [0, 8, 12, 16, 17] {
                against_reference::<aes::Aes128Enc, Aes128>(&key, &nonce, &vec![3; aad_len], &pt);
            }
        }
    }

    #[test]
    fn counter_runs_past_the_low_counter_byte() {
        // 5000 bytes = 313 blocks: the big-endian 32-bit counter carries
        // from its low byte into the next.
        let pt = vec![0x5a; 5000];
        against_reference::<aes::Aes256Enc, Aes256>(&[1; 32], &[0xff; 12], b"aad", &pt);
    }
}
