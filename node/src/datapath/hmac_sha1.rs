//! HMAC-SHA1 (RFC 2104) with the key folded into two saved chaining
//! values, and a batch form that hashes several messages side by side.
//!
//! One SHA-1 stream on SHA-NI is bound by the latency of `sha1rnds4`: each
//! group of four rounds waits for the previous one. Messages of a batch are
//! independent, so [`HmacSha1Key::compute_many`] keeps up to [`LANES`] of
//! them in flight and issues their round instructions interleaved; the CPU
//! then overlaps the chains instead of waiting on each. A lane that finishes
//! its message (inner hash, then the one-block outer hash) takes the next
//! one, so messages of any lengths share the lanes.
//!
//! Without SHA-NI (or off x86_64) every message goes through the `sha1`
//! crate's block function one after the other.

use zeroize::Zeroize;

/// Messages hashed side by side on SHA-NI. Four measured best here: two
/// leave the round unit idle, more spill the sixteen XMM registers.
pub const LANES: usize = 4;

const BLOCK: usize = 64;
/// SHA-1 initial chaining value (FIPS 180-4 §5.3.1).
const IV: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// Which block function runs the compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SHA-NI intrinsics, several messages interleaved.
    ShaNi,
    /// The `sha1` crate's `compress`, one message at a time.
    Portable,
}

impl Backend {
    /// SHA-NI when the CPU has it (and SSE2/SSSE3/SSE4.1), else portable.
    pub fn detect() -> Backend {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse2")
                && std::arch::is_x86_feature_detected!("ssse3")
                && std::arch::is_x86_feature_detected!("sse4.1")
            {
                return Backend::ShaNi;
            }
        }
        Backend::Portable
    }
}

/// An HMAC-SHA1 key: the chaining values after the ipad and the opad
/// block. Everything is inline; both are wiped on drop.
pub struct HmacSha1Key {
    inner: [u32; 5],
    outer: [u32; 5],
    backend: Backend,
}

impl Drop for HmacSha1Key {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl std::fmt::Debug for HmacSha1Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("HmacSha1Key")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl HmacSha1Key {
    /// Any key length; keys longer than a block are hashed first (RFC 2104).
    pub fn new(key: &[u8]) -> HmacSha1Key {
        HmacSha1Key::with_backend(key, Backend::detect())
    }

    /// As [`HmacSha1Key::new`] with a chosen block function. Asking for
    /// SHA-NI on a CPU without it gives the portable one.
    pub fn with_backend(key: &[u8], backend: Backend) -> HmacSha1Key {
        let backend = match backend {
            Backend::ShaNi => Backend::detect(),
            Backend::Portable => Backend::Portable,
        };
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            let mut d = digest_of(key);
            k[..20].copy_from_slice(&d);
            d.zeroize();
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; BLOCK];
        let mut inner = IV;
        let mut outer = IV;
        for (p, b) in pad.iter_mut().zip(&k) {
            *p = b ^ 0x36;
        }
        compress_portable(&mut inner, &pad);
        for (p, b) in pad.iter_mut().zip(&k) {
            *p = b ^ 0x5c;
        }
        compress_portable(&mut outer, &pad);
        pad.zeroize();
        k.zeroize();
        HmacSha1Key {
            inner,
            outer,
            backend,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// HMAC-SHA1 of `msg`.
    pub fn compute(&self, msg: &[u8]) -> [u8; 20] {
        let compress = self.block_fn();
        let full = msg.len() / BLOCK * BLOCK;
        let mut state = self.inner;
        compress(&mut state, &msg[..full]);
        let mut tail = [0u8; 2 * BLOCK];
        let n = inner_tail(&mut tail, msg);
        compress(&mut state, &tail[..n]);
        let mut outer_block = [0u8; BLOCK];
        outer_block_from(&mut outer_block, &state);
        state = self.outer;
        compress(&mut state, &outer_block);
        digest_bytes(&state)
    }

    /// HMAC-SHA1 of each of `msgs` into the same index of `tags` (which
    /// must be at least as long).
    pub fn compute_many(&self, msgs: &[&[u8]], tags: &mut [[u8; 20]]) {
        assert!(tags.len() >= msgs.len(), "one tag per message");
        #[cfg(target_arch = "x86_64")]
        if self.backend == Backend::ShaNi {
            // SAFETY: the backend is ShaNi only when `detect` found the CPU features.
            unsafe { shani::many(self, msgs, tags) };
            return;
        }
        for (m, t) in msgs.iter().zip(tags.iter_mut()) {
            *t = self.compute(m);
        }
    }

    /// Compression over whole blocks with this key's backend.
    fn block_fn(&self) -> fn(&mut [u32; 5], &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if self.backend == Backend::ShaNi {
            // SAFETY: the backend is ShaNi only when `detect` found the CPU features.
            return |s, d| unsafe { shani::compress1(s, d) };
        }
        compress_portable
    }
}

/// Plain SHA-1 of `data` (only for keys longer than a block).
fn digest_of(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

/// The `sha1` crate's block function over whole blocks of `data`.
fn compress_portable(state: &mut [u32; 5], data: &[u8]) {
    for b in data.chunks_exact(BLOCK) {
        sha1::compress(
            state,
            core::slice::from_ref(sha1::digest::generic_array::GenericArray::from_slice(b)),
        );
    }
}

/// Writes the padded last block(s) of the inner hash of `msg` (the part
/// after its whole blocks, 0x80, zeros, the bit length counting the ipad
/// block) into `tail`; returns their length (64 or 128).
fn inner_tail(tail: &mut [u8; 2 * BLOCK], msg: &[u8]) -> usize {
    let full = msg.len() / BLOCK * BLOCK;
    let rem = msg.len() - full;
    tail[..rem].copy_from_slice(&msg[full..]);
    tail[rem] = 0x80;
    let n = if rem < BLOCK - 8 { BLOCK } else { 2 * BLOCK };
    tail[rem + 1..n - 8].fill(0);
    let bits = ((BLOCK + msg.len()) as u64) * 8;
    tail[n - 8..n].copy_from_slice(&bits.to_be_bytes());
    n
}

/// The single block of the outer hash: the inner digest, padded, the bit
/// length counting the opad block.
fn outer_block_from(block: &mut [u8; BLOCK], inner: &[u32; 5]) {
    block[..20].copy_from_slice(&digest_bytes(inner));
    block[20] = 0x80;
    block[21..BLOCK - 8].fill(0);
    block[BLOCK - 8..].copy_from_slice(&(((BLOCK + 20) as u64) * 8).to_be_bytes());
}

fn digest_bytes(state: &[u32; 5]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use super::{BLOCK, HmacSha1Key, LANES, digest_bytes, inner_tail, outer_block_from};
    use core::arch::x86_64::*;

    /// SHA-1 over `data` (whole blocks) on one lane.
    ///
    /// # Safety
    /// The CPU must have SHA, SSE2, SSSE3 and SSE4.1.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress1(state: &mut [u32; 5], data: &[u8]) {
        let n = data.len() / BLOCK;
        let s: &mut [[u32; 5]; 1] = core::array::from_mut(state);
        // SAFETY: `data` holds `n` whole blocks; features are the caller's promise.
        unsafe { run::<1>(s, [data.as_ptr()], n) }
    }

    /// Where a lane's next blocks come from.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Stage {
        /// Whole blocks read in place from the message.
        Msg,
        /// The padded tail of the inner hash, in `pad`.
        Tail,
        /// The outer hash's single block, in `pad`.
        Outer,
    }

    /// One message in flight.
    #[derive(Clone, Copy)]
    struct Lane<'m> {
        job: usize,
        msg: &'m [u8],
        stage: Stage,
        /// Byte offset of the next block in the current source.
        off: usize,
        /// Blocks left in the current source.
        left: usize,
        tail_blocks: usize,
        pad: [u8; 2 * BLOCK],
    }

    impl<'m> Lane<'m> {
        fn start(&mut self, state: &mut [u32; 5], key: &HmacSha1Key, job: usize, msg: &'m [u8]) {
            self.job = job;
            self.msg = msg;
            self.tail_blocks = inner_tail(&mut self.pad, msg) / BLOCK;
            self.off = 0;
            let full = msg.len() / BLOCK;
            if full > 0 {
                self.stage = Stage::Msg;
                self.left = full;
            } else {
                self.stage = Stage::Tail;
                self.left = self.tail_blocks;
            }
            *state = key.inner;
        }

        fn next_block(&self) -> *const u8 {
            match self.stage {
                Stage::Msg => self.msg[self.off..].as_ptr(),
                Stage::Tail | Stage::Outer => self.pad[self.off..].as_ptr(),
            }
        }
    }

    /// Lane-interleaved HMAC of every message.
    ///
    /// # Safety
    /// The CPU must have SHA, SSE2, SSSE3 and SSE4.1.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn many(key: &HmacSha1Key, msgs: &[&[u8]], tags: &mut [[u8; 20]]) {
        let idle = Lane {
            job: 0,
            msg: &[],
            stage: Stage::Tail,
            off: 0,
            left: 0,
            tail_blocks: 0,
            pad: [0; 2 * BLOCK],
        };
        let mut lanes = [idle; LANES];
        let mut states = [[0u32; 5]; LANES];
        let mut next = 0;
        let mut active = 0;
        while active < LANES && next < msgs.len() {
            lanes[active].start(&mut states[active], key, next, msgs[next]);
            next += 1;
            active += 1;
        }
        while active > 0 {
            // Run all lanes until the first one changes source.
            let n = lanes[..active].iter().map(|l| l.left).min().unwrap_or(0);
            let mut src = [core::ptr::null::<u8>(); LANES];
            for (s, l) in src.iter_mut().zip(&lanes[..active]) {
                *s = l.next_block();
            }
            // SAFETY: every active lane's source holds at least `n` more
            // blocks from its pointer (`left` counts them); features are the
            // caller's promise.
            unsafe {
                match active {
                    4 => run::<4>(sub(&mut states), lead(&src), n),
                    3 => run::<3>(sub(&mut states), lead(&src), n),
                    2 => run::<2>(sub(&mut states), lead(&src), n),
                    _ => run::<1>(sub(&mut states), lead(&src), n),
                }
            }
            let mut k = 0;
            while k < active {
                let lane = &mut lanes[k];
                lane.left -= n;
                lane.off += n * BLOCK;
                if lane.left > 0 {
                    k += 1;
                    continue;
                }
                match lane.stage {
                    Stage::Msg => {
                        lane.stage = Stage::Tail;
                        lane.off = 0;
                        lane.left = lane.tail_blocks;
                    }
                    Stage::Tail => {
                        let (block, _) = lane
                            .pad
                            .split_first_chunk_mut::<BLOCK>()
                            .expect("128 bytes");
                        outer_block_from(block, &states[k]);
                        states[k] = key.outer;
                        lane.stage = Stage::Outer;
                        lane.off = 0;
                        lane.left = 1;
                    }
                    Stage::Outer => {
                        tags[lane.job] = digest_bytes(&states[k]);
                        if next < msgs.len() {
                            lane.start(&mut states[k], key, next, msgs[next]);
                            next += 1;
                        } else {
                            // Keep the active lanes at the front.
                            active -= 1;
                            lanes.swap(k, active);
                            states.swap(k, active);
                            continue;
                        }
                    }
                }
                k += 1;
            }
        }
        states.iter_mut().for_each(zeroize::Zeroize::zeroize);
    }

    fn lead<const K: usize>(src: &[*const u8; LANES]) -> [*const u8; K] {
        core::array::from_fn(|l| src[l])
    }

    fn sub<const K: usize>(states: &mut [[u32; 5]; LANES]) -> &mut [[u32; 5]; K] {
        (&mut states[..K]).try_into().expect("K <= LANES")
    }

    /// Compresses `n` blocks on each of `K` lanes, lane `l` reading them
    /// consecutively from `src[l]`, with each instruction issued for all
    /// lanes in turn so that their dependency chains overlap.
    ///
    /// # Safety
    /// Each `src[l]` must be valid for `n * 64` bytes of reads; the CPU
    /// must have SHA, SSE2, SSSE3 and SSE4.1.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn run<const K: usize>(states: &mut [[u32; 5]; K], mut src: [*const u8; K], n: usize) {
        // Big-endian words, first word in the top lane.
        let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
        let zero = _mm_setzero_si128();
        let mut abcd = [zero; K];
        let mut e = [zero; K];
        for l in 0..K {
            let s = &states[l];
            abcd[l] = _mm_set_epi32(s[0] as i32, s[1] as i32, s[2] as i32, s[3] as i32);
            e[l] = _mm_set_epi32(s[4] as i32, 0, 0, 0);
        }
        for _ in 0..n {
            let mut w = [[zero; K]; 4];
            for l in 0..K {
                for (j, wj) in w.iter_mut().enumerate() {
                    // SAFETY: within the caller's `n * 64` readable bytes.
                    let v = unsafe { _mm_loadu_si128(src[l].add(16 * j).cast()) };
                    wj[l] = _mm_shuffle_epi8(v, bswap);
                }
            }
            // `cur`: ABCD after the last four rounds; `prev`: before them
            // (sha1nexte derives the next E from its A).
            let mut cur = abcd;
            let mut prev = abcd;
            for l in 0..K {
                cur[l] = _mm_sha1rnds4_epu32::<0>(abcd[l], _mm_add_epi32(e[l], w[0][l]));
            }
            // Four rounds with W[i] from slot `$s`, round function `$f`.
            macro_rules! step {
                ($f:literal, $s:literal) => {
                    for l in 0..K {
                        let x = _mm_sha1rnds4_epu32::<$f>(
                            cur[l],
                            _mm_sha1nexte_epu32(prev[l], w[$s][l]),
                        );
                        prev[l] = cur[l];
                        cur[l] = x;
                    }
                };
            }
            // W[i] = f(W[i-4], W[i-3], W[i-2], W[i-1]) into W[i-4]'s slot.
            macro_rules! sched {
                ($s:literal) => {
                    for l in 0..K {
                        let m1 = _mm_sha1msg1_epu32(w[$s][l], w[($s + 1) % 4][l]);
                        w[$s][l] = _mm_sha1msg2_epu32(
                            _mm_xor_si128(m1, w[($s + 2) % 4][l]),
                            w[($s + 3) % 4][l],
                        );
                    }
                };
            }
            step!(0, 1);
            step!(0, 2);
            step!(0, 3);
            sched!(0);
            step!(0, 0);
            sched!(1);
            step!(1, 1);
            sched!(2);
            step!(1, 2);
            sched!(3);
            step!(1, 3);
            sched!(0);
            step!(1, 0);
            sched!(1);
            step!(1, 1);
            sched!(2);
            step!(2, 2);
            sched!(3);
            step!(2, 3);
            sched!(0);
            step!(2, 0);
            sched!(1);
            step!(2, 1);
            sched!(2);
            step!(2, 2);
            sched!(3);
            step!(3, 3);
            sched!(0);
            step!(3, 0);
            sched!(1);
            step!(3, 1);
            sched!(2);
            step!(3, 2);
            sched!(3);
            step!(3, 3);
            for l in 0..K {
                abcd[l] = _mm_add_epi32(abcd[l], cur[l]);
                e[l] = _mm_sha1nexte_epu32(prev[l], e[l]);
                // SAFETY: stays within (or one past) the caller's readable bytes.
                src[l] = unsafe { src[l].add(BLOCK) };
            }
        }
        for l in 0..K {
            states[l] = [
                _mm_extract_epi32::<3>(abcd[l]) as u32,
                _mm_extract_epi32::<2>(abcd[l]) as u32,
                _mm_extract_epi32::<1>(abcd[l]) as u32,
                _mm_extract_epi32::<0>(abcd[l]) as u32,
                _mm_extract_epi32::<3>(e[l]) as u32,
            ];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn reference(key: &[u8], msg: &[u8]) -> [u8; 20] {
        let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// Both block functions; SHA-NI is required wherever the CPU has it.
    fn backends() -> Vec<Backend> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sha") {
            return vec![Backend::ShaNi, Backend::Portable];
        }
        vec![Backend::Portable]
    }

    #[test]
    fn sha_ni_is_chosen_when_present() {
        for b in backends() {
            assert_eq!(HmacSha1Key::with_backend(b"k", b).backend(), b);
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            HmacSha1Key::new(b"k").backend() == Backend::ShaNi,
            std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
        );
    }

    #[test]
    fn rfc2202_vectors() {
        // RFC 2202 §3, test cases 1-7.
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "4c9007f4026250c6bc8414f9bf50c86c2d7235da",
            ),
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for b in backends() {
            for (key, msg, want) in &cases {
                let k = HmacSha1Key::with_backend(key, b);
                assert_eq!(k.compute(msg).to_vec(), h(want), "{b:?}");
                let mut tags = [[0u8; 20]; 3];
                k.compute_many(&[&msg[..], &msg[..], &msg[..]], &mut tags);
                for t in tags {
                    assert_eq!(t.to_vec(), h(want), "{b:?} batch");
                }
            }
        }
    }

    #[test]
    fn every_length_around_the_padding_boundaries() {
        let key = [0x42u8; 20];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for b in backends() {
            let k = HmacSha1Key::with_backend(&key, b);
            let msgs: Vec<&[u8]> = (0..=200).map(|n| &data[..n]).collect();
            let mut tags = vec![[0u8; 20]; msgs.len()];
            k.compute_many(&msgs, &mut tags);
            for (m, t) in msgs.iter().zip(&tags) {
                let want = reference(&key, m);
                assert_eq!(*t, want, "{b:?} batch len {}", m.len());
                assert_eq!(k.compute(m), want, "{b:?} len {}", m.len());
            }
        }
    }

    #[test]
    fn empty_batch_leaves_tags_alone() {
        for b in backends() {
            let mut tags = [[7u8; 20]; 2];
            HmacSha1Key::with_backend(b"k", b).compute_many(&[], &mut tags);
            assert_eq!(tags, [[7u8; 20]; 2]);
        }
    }

    /// Lengths biased towards the 55/56/64-byte padding edges of a block.
    fn msg_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..=2100,
            (0usize..=32, 0usize..=10).prop_map(|(blocks, d)| (blocks * 64 + 50 + d) % 2101),
            (0usize..=32, 0usize..=3).prop_map(|(blocks, d)| (blocks * 64 + 62 + d) % 2101),
        ]
    }

    proptest! {
        #[test]
        fn matches_the_hmac_crate(key in proptest::collection::vec(any::<u8>(), 0..=100),
                                  lens in proptest::collection::vec(msg_len(), 1..=9),
                                  seed in any::<u8>()) {
            let msgs: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(k, &n)| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ k as u8).collect())
                .collect();
            let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
            for b in backends() {
                let k = HmacSha1Key::with_backend(&key, b);
                let mut tags = vec![[0u8; 20]; refs.len()];
                k.compute_many(&refs, &mut tags);
                for (m, t) in refs.iter().zip(&tags) {
                    let want = reference(&key, m);
                    prop_assert_eq!(*t, want, "{:?} batch len {}", b, m.len());
                    prop_assert_eq!(k.compute(m), want, "{:?} len {}", b, m.len());
                }
            }
        }
    }
}
