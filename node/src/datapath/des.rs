//! DES and 3DES-EDE (FIPS 46-3, NIST SP 800-67) for the ESP-DES and
//! ESP-3DES transforms, behind the cipher-0.4 block cipher traits.
//!
//! Each round uses eight 64-entry tables that combine an S-box with the
//! P permutation, indexed straight from rotated copies of the right half
//! (so the E expansion costs one rotation), and the initial and final
//! permutations are a handful of delta swaps. Independent blocks (CBC
//! decryption, several packets' CBC chains) go through the rounds side by
//! side: sixteen at once in AVX-512 lanes when the CPU has AVX-512F, else
//! four interleaved scalar blocks. Key schedules are expanded once per key
//! into inline arrays (see `wipe::FlatKeyState`).
//!
//! The scalar lookups are indexed by key-dependent data, so this is not
//! constant time (nor is any table-driven DES); DES only remains for
//! peers that still negotiate it.

use cipher::consts::{U8, U16, U24};
use cipher::inout::{InOut, InOutBuf};
use cipher::{
    Block, BlockBackend, BlockCipher, BlockClosure, BlockDecrypt, BlockEncrypt, BlockSizeUser, Key,
    KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};

/// Permutation of the S-box outputs.
#[rustfmt::skip]
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: the 56 key bits (parity bits dropped).
#[rustfmt::skip]
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: the 48-bit round key from the 56-bit C||D.
#[rustfmt::skip]
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round.
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The S-boxes in the standard layout: `S[i][row * 16 + column]`, row from
/// the outer input bits, column from the middle four.
#[rustfmt::skip]
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// Applies a DES bit-selection table to the low `in_bits` bits of `x`
/// (bit 1 = most significant of those); the result has `table.len()` bits.
const fn permute(x: u64, in_bits: u32, table: &[u8]) -> u64 {
    let mut out = 0u64;
    let mut i = 0;
    while i < table.len() {
        out = (out << 1) | ((x >> (in_bits - table[i] as u32)) & 1);
        i += 1;
    }
    out
}

/// `SP[i][x]`: S-box `i` applied to the 6-bit input `x` (first bit most
/// significant), its output put at nibble `i` of the 32-bit f result and
/// passed through P, then rotated right by one bit because the round
/// works on halves kept in that rotation.
static SP: [[u32; 64]; 8] = sp_tables();

const fn sp_tables() -> [[u32; 64]; 8] {
    let mut t = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut x = 0;
        while x < 64 {
            let row = ((x >> 4) & 2) | (x & 1);
            let col = (x >> 1) & 15;
            let s = S[i][row * 16 + col] as u64;
            let f = permute(s << (28 - 4 * i), 32, &P) as u32;
            t[i][x] = f.rotate_right(1);
            x += 1;
        }
        i += 1;
    }
    t
}

/// One round key: the even-numbered 6-bit pieces (0, 2, 4, 6, matching
/// the E chunks) at bit offsets 26, 18, 10, 2, and the odd ones (1, 3, 5,
/// 7) likewise.
type RoundKey = [u32; 2];
type Schedule = [RoundKey; 16];

/// Expands one 8-byte DES key (read straight from the caller's buffer, no
/// stack copy of the key is left behind).
fn key_schedule(key: &[u8]) -> Schedule {
    let cd = permute(
        u64::from_be_bytes(key.try_into().expect("8-byte key")),
        64,
        &PC1,
    );
    let mut c = (cd >> 28) as u32;
    let mut d = (cd & 0x0fff_ffff) as u32;
    let rot28 = |v: u32, n: u32| ((v << n) | (v >> (28 - n))) & 0x0fff_ffff;
    let mut ks = [[0u32; 2]; 16];
    for (k, &n) in ks.iter_mut().zip(SHIFTS.iter()) {
        c = rot28(c, n);
        d = rot28(d, n);
        let sub = permute(((c as u64) << 28) | d as u64, 56, &PC2);
        let chunk = |j: u32| ((sub >> (42 - 6 * j)) & 63) as u32;
        k[0] = (chunk(0) << 26) | (chunk(2) << 18) | (chunk(4) << 10) | (chunk(6) << 2);
        k[1] = (chunk(1) << 26) | (chunk(3) << 18) | (chunk(5) << 10) | (chunk(7) << 2);
    }
    ks
}

/// The f function on a right half kept rotated right by one bit: the E
/// chunks 0, 2, 4, 6 then sit at offsets 26, 18, 10, 2 of `r`, and chunks
/// 1, 3, 5, 7 at the same offsets of `r` rotated left by 4, lined up with
/// the round key words (see [`RoundKey`]), so E costs one rotation.
#[inline(always)]
fn f(r: u32, k: RoundKey, serial: bool) -> u32 {
    let i = |v: u32, s: u32| ((v >> s) & 63) as usize;
    let a = r ^ k[0];
    if serial {
        // A lone block is bound by each round's latency. Rotating the key
        // word instead of `r` (rotation commutes with XOR) takes the
        // rotation off the data path, leaving only the wrapping chunk 7
        // to be rotated after the XOR. The eight table outputs occupy
        // disjoint bits, so `|`, `+` and `^` all combine them; alternating
        // the operators per level keeps the compiler from folding the sum
        // into one serial chain of eight XORs.
        let b = r ^ k[1].rotate_right(4);
        let t0 = SP[0][i(a, 26)] | SP[1][i(b, 22)];
        let t1 = SP[2][i(a, 18)] | SP[3][i(b, 14)];
        let t2 = SP[4][i(a, 10)] | SP[5][i(b, 6)];
        let t3 = SP[6][i(a, 2)] | SP[7][i(b.rotate_left(2), 0)];
        (t0 + t1) ^ (t2 + t3)
    } else {
        // Several blocks side by side are bound by instruction count:
        // fewest operations, plain XORs with folded loads.
        let b = r.rotate_left(4) ^ k[1];
        SP[0][i(a, 26)]
            ^ SP[1][i(b, 26)]
            ^ SP[2][i(a, 18)]
            ^ SP[3][i(b, 18)]
            ^ SP[4][i(a, 10)]
            ^ SP[5][i(b, 10)]
            ^ SP[6][i(a, 2)]
            ^ SP[7][i(b, 2)]
    }
}

/// Sixteen rounds on `N` independent blocks side by side (their lookups
/// overlap instead of each waiting for the previous round). On return `l`
/// and `r` hold L16 and R16.
#[inline(always)]
fn rounds<const N: usize, const DECRYPT: bool>(l: &mut [u32; N], r: &mut [u32; N], ks: &Schedule) {
    for i in 0..8 {
        let (k0, k1) = if DECRYPT {
            (ks[15 - 2 * i], ks[14 - 2 * i])
        } else {
            (ks[2 * i], ks[2 * i + 1])
        };
        for j in 0..N {
            l[j] ^= f(r[j], k0, N == 1);
        }
        for j in 0..N {
            r[j] ^= f(l[j], k1, N == 1);
        }
    }
}

/// Swaps the bits selected by `mask` with those `shift` places higher.
#[inline(always)]
fn delta_swap(x: u64, mask: u64, shift: u32) -> u64 {
    let t = ((x >> shift) ^ x) & mask;
    x ^ t ^ (t << shift)
}

/// IP as whole-word operations. IP sends bit `b` of input byte `j` to bit
/// `7 - j` of an output byte chosen by `b` alone, so it is an 8x8
/// bit-matrix transpose of the byte-reversed input followed by a
/// reordering of the output bytes.
#[inline(always)]
fn ip(x: u64) -> u64 {
    let x = transpose8x8(x.swap_bytes());
    // Bytes b0..b7 (b0 most significant) to b1 b3 b5 b7 b0 b2 b4 b6.
    let x = delta_swap(x, 0x0000_ff00_0000_ff00, 8);
    let x = delta_swap(x, 0x0000_0000_ffff_0000, 16);
    x.rotate_left(32)
}

/// FP = IP⁻¹: the steps of [`ip`] undone in reverse order.
#[inline(always)]
fn fp(x: u64) -> u64 {
    let x = x.rotate_left(32);
    let x = delta_swap(x, 0x0000_0000_ffff_0000, 16);
    let x = delta_swap(x, 0x0000_ff00_0000_ff00, 8);
    transpose8x8(x).swap_bytes()
}

/// Transposes the 8x8 bit matrix whose rows are the bytes of `x`.
#[inline(always)]
fn transpose8x8(x: u64) -> u64 {
    let x = delta_swap(x, 0x00aa_00aa_00aa_00aa, 7);
    let x = delta_swap(x, 0x0000_cccc_0000_cccc, 14);
    delta_swap(x, 0x0000_0000_f0f0_f0f0, 28)
}

/// IP of each block, split into halves rotated right by one bit.
#[inline(always)]
fn split<const N: usize>(blocks: &[u64; N]) -> ([u32; N], [u32; N]) {
    let mut l = [0u32; N];
    let mut r = [0u32; N];
    for j in 0..N {
        let x = ip(blocks[j]);
        l[j] = ((x >> 32) as u32).rotate_right(1);
        r[j] = (x as u32).rotate_right(1);
    }
    (l, r)
}

/// FP of the pre-output R16 || L16.
#[inline(always)]
fn join<const N: usize>(l: &[u32; N], r: &[u32; N]) -> [u64; N] {
    let mut out = [0u64; N];
    for j in 0..N {
        let hi = r[j].rotate_left(1) as u64;
        let lo = l[j].rotate_left(1) as u64;
        out[j] = fp((hi << 32) | lo);
    }
    out
}

/// Block transformation on several blocks at once, shared by the backends.
trait Crypt {
    fn crypt<const N: usize, const DECRYPT: bool>(&self, blocks: &[u64; N]) -> [u64; N];

    /// The rounds (all stages) on 16 blocks already through IP and
    /// [`split`], with AVX-512; panics unless [`wide::available`].
    #[cfg(target_arch = "x86_64")]
    fn rounds_wide<const DECRYPT: bool>(&self, l: &mut [u32; WIDE], r: &mut [u32; WIDE]);
}

/// Single DES (56-bit key, given as 8 bytes whose parity bits are ignored).
///
/// Deliberately not `Clone`: the only copy of the expanded key is the one
/// the owner wipes.
pub struct Des {
    ks: Schedule,
}

impl Crypt for Des {
    #[inline(always)]
    fn crypt<const N: usize, const DECRYPT: bool>(&self, blocks: &[u64; N]) -> [u64; N] {
        let (mut l, mut r) = split(blocks);
        rounds::<N, DECRYPT>(&mut l, &mut r, &self.ks);
        join(&l, &r)
    }

    #[cfg(target_arch = "x86_64")]
    fn rounds_wide<const DECRYPT: bool>(&self, l: &mut [u32; WIDE], r: &mut [u32; WIDE]) {
        assert!(wide::available());
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { wide::rounds(l, r, &[(&self.ks, DECRYPT)]) }
    }
}

/// Triple DES, encrypt-decrypt-encrypt with three independent keys
/// (24-byte key K1 || K2 || K3).
/// Not `Clone`, like [`Des`].
pub struct TdesEde3 {
    ks: [Schedule; 3],
}

impl Crypt for TdesEde3 {
    #[inline(always)]
    fn crypt<const N: usize, const DECRYPT: bool>(&self, blocks: &[u64; N]) -> [u64; N] {
        // Between the stages FP and IP cancel out; what remains is the
        // swap of the halves, done here by exchanging the roles of l and r.
        let (mut l, mut r) = split(blocks);
        if DECRYPT {
            rounds::<N, true>(&mut l, &mut r, &self.ks[2]);
            rounds::<N, false>(&mut r, &mut l, &self.ks[1]);
            rounds::<N, true>(&mut l, &mut r, &self.ks[0]);
        } else {
            rounds::<N, false>(&mut l, &mut r, &self.ks[0]);
            rounds::<N, true>(&mut r, &mut l, &self.ks[1]);
            rounds::<N, false>(&mut l, &mut r, &self.ks[2]);
        }
        join(&l, &r)
    }

    #[cfg(target_arch = "x86_64")]
    fn rounds_wide<const DECRYPT: bool>(&self, l: &mut [u32; WIDE], r: &mut [u32; WIDE]) {
        assert!(wide::available());
        let stages = if DECRYPT {
            [
                (&self.ks[2], true),
                (&self.ks[1], false),
                (&self.ks[0], true),
            ]
        } else {
            [
                (&self.ks[0], false),
                (&self.ks[1], true),
                (&self.ks[2], false),
            ]
        };
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { wide::rounds(l, r, &stages) }
    }
}

impl KeySizeUser for Des {
    type KeySize = U8;
}

impl KeyInit for Des {
    fn new(key: &Key<Self>) -> Self {
        Des {
            ks: key_schedule(key),
        }
    }
}

impl KeySizeUser for TdesEde3 {
    type KeySize = U24;
}

impl KeyInit for TdesEde3 {
    fn new(key: &Key<Self>) -> Self {
        let mut ks = [[[0u32; 2]; 16]; 3];
        for (s, part) in ks.iter_mut().zip(key.chunks_exact(8)) {
            *s = key_schedule(part);
        }
        TdesEde3 { ks }
    }
}

impl std::fmt::Debug for Des {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Des { .. }")
    }
}

impl std::fmt::Debug for TdesEde3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TdesEde3 { .. }")
    }
}

/// Blocks handed to the cipher together by the cipher-0.4 drivers (CBC
/// decryption, `encrypt_blocks`): the AVX-512 width.
type ParBlocksN = U16;

/// Blocks the AVX-512 rounds process at once (one per 32-bit lane).
const WIDE: usize = 16;

/// Blocks the scalar rounds interleave.
const SCALAR: usize = 4;

/// The cipher-0.4 backend: one direction of one key.
struct Backend<'a, C, const DECRYPT: bool>(&'a C);

impl<C, const DECRYPT: bool> BlockSizeUser for Backend<'_, C, DECRYPT> {
    type BlockSize = U8;
}

impl<C, const DECRYPT: bool> ParBlocksSizeUser for Backend<'_, C, DECRYPT> {
    type ParBlocksSize = ParBlocksN;
}

impl<C: Crypt, const DECRYPT: bool> Backend<'_, C, DECRYPT> {
    /// Runs the cipher on `N` blocks: read all inputs first, then write
    /// all outputs (input and output may be the same memory).
    #[inline(always)]
    fn run<const N: usize>(&self, input: &[Block<Self>]) -> [u64; N] {
        self.0.crypt::<N, DECRYPT>(&load(input))
    }

    /// Up to [`WIDE`] blocks through the AVX-512 rounds (unused lanes
    /// carry zeros).
    #[cfg(target_arch = "x86_64")]
    fn run_wide(&self, input: &[Block<Self>]) -> [u64; WIDE] {
        let (mut l, mut r) = split::<WIDE>(&load(input));
        self.0.rounds_wide::<DECRYPT>(&mut l, &mut r);
        join(&l, &r)
    }

    /// Any number of blocks: groups of [`WIDE`] with AVX-512 when the CPU
    /// has it and more than [`SCALAR`] blocks are left, else groups of
    /// [`SCALAR`] interleaved scalar blocks.
    fn blocks(&self, blocks: InOutBuf<'_, '_, Block<Self>>) {
        #[cfg(target_arch = "x86_64")]
        let wide = blocks.len() > SCALAR && wide::available();
        let mut rest = blocks;
        while !rest.is_empty() {
            #[cfg(target_arch = "x86_64")]
            if wide && rest.len() > SCALAR {
                let n = rest.len().min(WIDE);
                let (mut head, tail) = rest.split_at(n);
                let y = self.run_wide(head.get_in());
                store(head.get_out(), &y);
                rest = tail;
                continue;
            }
            let n = rest.len().min(SCALAR);
            let (mut head, tail) = rest.split_at(n);
            let input = head.get_in();
            match input.len() {
                1 => {
                    let y = self.run::<1>(input);
                    store(head.get_out(), &y);
                }
                2 => {
                    let y = self.run::<2>(input);
                    store(head.get_out(), &y);
                }
                3 => {
                    let y = self.run::<3>(input);
                    store(head.get_out(), &y);
                }
                _ => {
                    let y = self.run::<SCALAR>(input);
                    store(head.get_out(), &y);
                }
            }
            rest = tail;
        }
    }
}

/// Blocks as big-endian integers; missing ones are zero.
#[inline(always)]
fn load<const N: usize>(input: &[Block<Des>]) -> [u64; N] {
    let mut x = [0u64; N];
    for (v, b) in x.iter_mut().zip(input) {
        *v = u64::from_be_bytes((*b).into());
    }
    x
}

/// Writes as many blocks as `out` holds.
#[inline(always)]
fn store(out: &mut [Block<Des>], y: &[u64]) {
    for (b, v) in out.iter_mut().zip(y) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

impl<C: Crypt, const DECRYPT: bool> BlockBackend for Backend<'_, C, DECRYPT> {
    #[inline(always)]
    fn proc_block(&mut self, mut block: InOut<'_, '_, Block<Self>>) {
        let y = self.run::<1>(core::slice::from_ref(block.get_in()));
        store(core::slice::from_mut(block.get_out()), &y);
    }

    #[inline(always)]
    fn proc_par_blocks(&mut self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
        self.blocks(blocks.into_buf());
    }

    #[inline(always)]
    fn proc_tail_blocks(&mut self, blocks: InOutBuf<'_, '_, Block<Self>>) {
        self.blocks(blocks);
    }
}

/// The rounds on 16 blocks at once with AVX-512F: one block per 32-bit
/// lane, each 64-entry SP table looked up with two two-register permutes
/// (the low five index bits) and a blend on the sixth bit.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{RoundKey, SP, Schedule, WIDE};
    use core::arch::x86_64::*;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
    }

    /// `SP[i][idx]` per lane; only bits 0..=5 of each index count.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lookup(table: &[u32; 64], idx: __m512i) -> __m512i {
        let p = table.as_ptr() as *const __m512i;
        // SAFETY: the table holds 64 u32, i.e. four 64-byte vectors;
        // unaligned loads.
        let (t0, t1, t2, t3) = unsafe {
            (
                _mm512_loadu_si512(p),
                _mm512_loadu_si512(p.add(1)),
                _mm512_loadu_si512(p.add(2)),
                _mm512_loadu_si512(p.add(3)),
            )
        };
        let lo = _mm512_permutex2var_epi32(t0, idx, t1);
        let hi = _mm512_permutex2var_epi32(t2, idx, t3);
        let upper = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
        _mm512_mask_blend_epi32(upper, lo, hi)
    }

    /// [`super::f`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn f(r: __m512i, k: RoundKey) -> __m512i {
        let a = _mm512_xor_si512(r, _mm512_set1_epi32(k[0] as i32));
        let b = _mm512_xor_si512(_mm512_rol_epi32::<4>(r), _mm512_set1_epi32(k[1] as i32));
        // No masking needed: the lookup ignores bits above the sixth.
        let t0 = _mm512_xor_si512(
            lookup(&SP[0], _mm512_srli_epi32::<26>(a)),
            lookup(&SP[1], _mm512_srli_epi32::<26>(b)),
        );
        let t1 = _mm512_xor_si512(
            lookup(&SP[2], _mm512_srli_epi32::<18>(a)),
            lookup(&SP[3], _mm512_srli_epi32::<18>(b)),
        );
        let t2 = _mm512_xor_si512(
            lookup(&SP[4], _mm512_srli_epi32::<10>(a)),
            lookup(&SP[5], _mm512_srli_epi32::<10>(b)),
        );
        let t3 = _mm512_xor_si512(
            lookup(&SP[6], _mm512_srli_epi32::<2>(a)),
            lookup(&SP[7], _mm512_srli_epi32::<2>(b)),
        );
        _mm512_xor_si512(_mm512_xor_si512(t0, t1), _mm512_xor_si512(t2, t3))
    }

    /// Runs DES stages (schedule, decrypt?) one after another on the
    /// halves, exchanging the halves' roles between stages as the scalar
    /// [`super::TdesEde3`] code does.
    #[target_feature(enable = "avx512f")]
    pub(super) fn rounds(l: &mut [u32; WIDE], r: &mut [u32; WIDE], stages: &[(&Schedule, bool)]) {
        // SAFETY: the arrays are 64 bytes each; unaligned loads.
        let (mut vl, mut vr) = unsafe {
            (
                _mm512_loadu_si512(l.as_ptr() as *const __m512i),
                _mm512_loadu_si512(r.as_ptr() as *const __m512i),
            )
        };
        for (n, &(ks, decrypt)) in stages.iter().enumerate() {
            if n > 0 {
                core::mem::swap(&mut vl, &mut vr);
            }
            for i in 0..8 {
                let (k0, k1) = if decrypt {
                    (ks[15 - 2 * i], ks[14 - 2 * i])
                } else {
                    (ks[2 * i], ks[2 * i + 1])
                };
                vl = _mm512_xor_si512(vl, f(vr, k0));
                vr = _mm512_xor_si512(vr, f(vl, k1));
            }
        }
        // SAFETY: as for the loads.
        unsafe {
            _mm512_storeu_si512(l.as_mut_ptr() as *mut __m512i, vl);
            _mm512_storeu_si512(r.as_mut_ptr() as *mut __m512i, vr);
        }
    }
}

macro_rules! block_cipher_impls {
    ($t:ty) => {
        impl BlockSizeUser for $t {
            type BlockSize = U8;
        }
        impl BlockCipher for $t {}
        impl BlockEncrypt for $t {
            fn encrypt_with_backend(&self, f: impl BlockClosure<BlockSize = U8>) {
                f.call(&mut Backend::<Self, false>(self))
            }
        }
        impl BlockDecrypt for $t {
            fn decrypt_with_backend(&self, f: impl BlockClosure<BlockSize = U8>) {
                f.call(&mut Backend::<Self, true>(self))
            }
        }
    };
}

block_cipher_impls!(Des);
block_cipher_impls!(TdesEde3);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Initial permutation: output bit `i` (1-based, most significant first)
    /// is input bit `IP[i - 1]`.
    #[rustfmt::skip]
    const IP: [u8; 64] = [
        58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
        62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
        57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
        61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
    ];

    /// Final permutation, the inverse of `IP`.
    #[rustfmt::skip]
    const FP: [u8; 64] = [
        40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31,
        38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
        36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27,
        34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25,
    ];

    /// Expansion E, only needed by the bit-by-bit reference.
    #[rustfmt::skip]
    const E: [u8; 48] = [
        32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13,
        12, 13, 14, 15, 16, 17, 16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25,
        24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1,
    ];

    /// f(R, K) = P(S(E(R) xor K)), one bit at a time.
    fn reference_f(r: u64, k: u64) -> u64 {
        let e = permute(r, 32, &E) ^ k;
        let mut s_out = 0u64;
        for (i, sbox) in S.iter().enumerate() {
            let six = ((e >> (42 - 6 * i)) & 63) as usize;
            let row = ((six >> 4) & 2) | (six & 1);
            let col = (six >> 1) & 15;
            s_out = (s_out << 4) | sbox[row * 16 + col] as u64;
        }
        permute(s_out, 32, &P)
    }

    /// DES exactly as FIPS 46-3 describes it, one bit at a time.
    fn reference_des(key: u64, block: u64, decrypt: bool) -> u64 {
        let cd = permute(key, 64, &PC1);
        let (mut c, mut d) = (cd >> 28, cd & 0x0fff_ffff);
        let mut subkeys = [0u64; 16];
        for (k, &n) in subkeys.iter_mut().zip(SHIFTS.iter()) {
            c = ((c << n) | (c >> (28 - n))) & 0x0fff_ffff;
            d = ((d << n) | (d >> (28 - n))) & 0x0fff_ffff;
            *k = permute((c << 28) | d, 56, &PC2);
        }
        if decrypt {
            subkeys.reverse();
        }
        let x = permute(block, 64, &IP);
        let (mut l, mut r) = (x >> 32, x & 0xffff_ffff);
        for k in subkeys {
            (l, r) = (r, l ^ reference_f(r, k));
        }
        permute((r << 32) | l, 64, &FP)
    }

    fn reference_tdes(key: &[u8; 24], block: u64, decrypt: bool) -> u64 {
        let k = |i: usize| u64::from_be_bytes(key[8 * i..8 * i + 8].try_into().unwrap());
        if decrypt {
            let x = reference_des(k(2), block, true);
            let x = reference_des(k(1), x, false);
            reference_des(k(0), x, true)
        } else {
            let x = reference_des(k(0), block, false);
            let x = reference_des(k(1), x, true);
            reference_des(k(2), x, false)
        }
    }

    fn ecb<C: BlockEncrypt + BlockDecrypt>(c: &C, data: &[u8], decrypt: bool) -> Vec<u8> {
        let mut blocks: Vec<Block<C>> = data.chunks(8).map(Block::<C>::clone_from_slice).collect();
        if decrypt {
            c.decrypt_blocks(&mut blocks);
        } else {
            c.encrypt_blocks(&mut blocks);
        }
        blocks.concat()
    }

    #[test]
    fn ip_and_fp_match_the_tables_bit_by_bit() {
        // Both are linear over GF(2), so agreeing on every single-bit input
        // means agreeing on all inputs.
        for i in 0..64 {
            let x = 1u64 << i;
            assert_eq!(ip(x), permute(x, 64, &IP), "IP, bit {i}");
            assert_eq!(fp(x), permute(x, 64, &FP), "FP, bit {i}");
            assert_eq!(fp(ip(x)), x);
        }
        assert_eq!(ip(0), 0);
        assert_eq!(fp(0), 0);
    }

    #[test]
    fn sp_tables_occupy_disjoint_bits() {
        // The serial round combines table outputs with `|` and `+`, which
        // equal `^` only on disjoint bits.
        let support: Vec<u32> = SP.iter().map(|t| t.iter().fold(0, |a, &v| a | v)).collect();
        for i in 0..8 {
            assert_eq!(support[i].count_ones(), 4, "SP{i}");
            for j in i + 1..8 {
                assert_eq!(support[i] & support[j], 0, "SP{i} and SP{j}");
            }
        }
    }

    #[test]
    fn s_box_rows_are_permutations() {
        for (i, s) in S.iter().enumerate() {
            for row in s.chunks(16) {
                let mut seen = [false; 16];
                for &v in row {
                    seen[v as usize] = true;
                }
                assert!(seen.iter().all(|&b| b), "S{}", i + 1);
            }
        }
    }

    #[test]
    fn round_function_matches_e_s_p() {
        // f on the rotated half with the split round key equals
        // P(S(E(r) ^ k)) computed bit by bit, for single bits of r and k.
        let key = key_schedule(b"\x13\x34\x57\x79\x9b\xbc\xdf\xf1");
        let cd = permute(0x1334_5779_9bbc_dff1, 64, &PC1);
        let (mut c, mut d) = (cd >> 28, cd & 0x0fff_ffff);
        c = ((c << 1) | (c >> 27)) & 0x0fff_ffff;
        d = ((d << 1) | (d >> 27)) & 0x0fff_ffff;
        let k1 = permute((c << 28) | d, 56, &PC2);
        let mut inputs: Vec<u32> = (0..32).map(|i| 1u32 << i).collect();
        inputs.extend([0, 0xffff_ffff, 0xf0aa_ccaa, 0x1234_5678]);
        for r in inputs {
            let want = reference_f(r as u64, k1) as u32;
            for serial in [false, true] {
                let got = f(r.rotate_right(1), key[0], serial).rotate_left(1);
                assert_eq!(got, want, "r = {r:#x}, serial = {serial}");
            }
        }
    }

    #[test]
    fn des_known_answers() {
        // FIPS 81 appendix B (ECB), and the worked example with key 133457799BBCDFF1.
        let c = Des::new_from_slice(&hex::decode("0123456789abcdef").unwrap()).unwrap();
        let ct = ecb(&c, b"Now is the time for all ", false);
        assert_eq!(
            hex::encode(&ct),
            "3fa40e8a984d48156a271787ab8883f9893d51ec4b563b53"
        );
        assert_eq!(ecb(&c, &ct, true), b"Now is the time for all ");
        let c = Des::new_from_slice(&hex::decode("133457799bbcdff1").unwrap()).unwrap();
        let pt = hex::decode("0123456789abcdef").unwrap();
        assert_eq!(hex::encode(ecb(&c, &pt, false)), "85e813540f0ab405");
    }

    #[test]
    fn tdes_known_answer() {
        // NIST SP 800-67 rev. 1, appendix B.
        let key = hex::decode("0123456789abcdef23456789abcdef01456789abcdef0123").unwrap();
        let c = TdesEde3::new_from_slice(&key).unwrap();
        let ct = ecb(&c, b"The qufck brown fox jump", false);
        assert_eq!(
            hex::encode(&ct),
            "a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900"
        );
        assert_eq!(ecb(&c, &ct, true), b"The qufck brown fox jump");
    }

    #[test]
    fn batched_paths_match_single_blocks() {
        // 16-block batches (AVX-512 where the CPU has it), padded partial
        // batches and scalar batches all equal one block at a time.
        let t = TdesEde3::new_from_slice(&(0..24u8).collect::<Vec<_>>()).unwrap();
        let d = Des::new_from_slice(&[0x3c; 8]).unwrap();
        let data: Vec<u8> = (0..8 * 37).map(|i| (i * 7 + 3) as u8).collect();
        for n in [1, 4, 5, 8, 15, 16, 17, 21, 37] {
            let part = &data[..8 * n];
            for decrypt in [false, true] {
                let one_by_one = |c: &dyn Fn(&mut Block<Des>)| -> Vec<u8> {
                    part.chunks(8)
                        .flat_map(|b| {
                            let mut b = Block::<Des>::clone_from_slice(b);
                            c(&mut b);
                            b.to_vec()
                        })
                        .collect()
                };
                let want_t = one_by_one(&|b| {
                    if decrypt {
                        t.decrypt_block(b)
                    } else {
                        t.encrypt_block(b)
                    }
                });
                let want_d = one_by_one(&|b| {
                    if decrypt {
                        d.decrypt_block(b)
                    } else {
                        d.encrypt_block(b)
                    }
                });
                assert_eq!(ecb(&t, part, decrypt), want_t, "3DES, {n} blocks");
                assert_eq!(ecb(&d, part, decrypt), want_d, "DES, {n} blocks");
            }
        }
    }

    #[test]
    fn key_lengths_are_checked() {
        assert!(Des::new_from_slice(&[0; 7]).is_err());
        assert!(Des::new_from_slice(&[0; 9]).is_err());
        assert!(TdesEde3::new_from_slice(&[0; 16]).is_err());
        assert!(TdesEde3::new_from_slice(&[0; 24]).is_ok());
    }

    #[test]
    fn tdes_with_equal_keys_is_des() {
        let k = [0x5au8, 1, 2, 3, 4, 5, 6, 7];
        let t = TdesEde3::new_from_slice(&k.repeat(3)).unwrap();
        let d = Des::new_from_slice(&k).unwrap();
        let data: Vec<u8> = (0..64u8).collect();
        assert_eq!(ecb(&t, &data, false), ecb(&d, &data, false));
    }

    proptest! {
        #[test]
        fn des_matches_reference_and_des_crate(
            key in any::<[u8; 8]>(),
            data in proptest::collection::vec(any::<[u8; 8]>(), 0..40usize).prop_map(|v| v.concat()),
        ) {
            // Lengths 0..39 blocks cover the 16-block batches (AVX-512 when
            // present), the 4-block scalar batches and every tail.
            let ours = Des::new_from_slice(&key).unwrap();
            let theirs = des::Des::new_from_slice(&key).unwrap();
            let ct = ecb(&ours, &data, false);
            prop_assert_eq!(&ct, &ecb(&theirs, &data, false));
            prop_assert_eq!(ecb(&ours, &data, true), ecb(&theirs, &data, true));
            prop_assert_eq!(ecb(&ours, &ct, true), data.clone());
            let k = u64::from_be_bytes(key);
            for (p, c) in data.chunks(8).zip(ct.chunks(8)) {
                let p = u64::from_be_bytes(p.try_into().unwrap());
                prop_assert_eq!(u64::from_be_bytes(c.try_into().unwrap()), reference_des(k, p, false));
            }
        }

        #[test]
        fn tdes_matches_reference_and_des_crate(
            key in any::<[u8; 24]>(),
            data in proptest::collection::vec(any::<[u8; 8]>(), 0..40usize).prop_map(|v| v.concat()),
        ) {
            let ours = TdesEde3::new_from_slice(&key).unwrap();
            let theirs = des::TdesEde3::new_from_slice(&key).unwrap();
            let ct = ecb(&ours, &data, false);
            prop_assert_eq!(&ct, &ecb(&theirs, &data, false));
            prop_assert_eq!(ecb(&ours, &data, true), ecb(&theirs, &data, true));
            prop_assert_eq!(ecb(&ours, &ct, true), data.clone());
            for (p, c) in data.chunks(8).zip(ct.chunks(8)) {
                let p = u64::from_be_bytes(p.try_into().unwrap());
                let c = u64::from_be_bytes(c.try_into().unwrap());
                prop_assert_eq!(c, reference_tdes(&key, p, false));
                prop_assert_eq!(reference_tdes(&key, c, true), p);
            }
        }
    }
}
