//! The Internet checksum (RFC 1071): the one's complement of the one's
//! complement sum of 16-bit big-endian words. An odd tail byte is the high
//! byte of a last word padded with zero.
//!
//! A correct IPv4 header, GRE packet with its checksum, NHRP packet or
//! ICMP message sums to zero: `checksum(bytes) == 0` verifies one.

/// Checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

/// Checksum of the concatenation of several pieces (a pseudo-header and a
/// message, a header written in parts), without copying them together.
/// Pieces may have any length; odd ones shift the following bytes as
/// concatenation would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u64,
    odd: bool,
}

impl Checksum {
    /// Nothing summed yet.
    pub const fn new() -> Checksum {
        Checksum { sum: 0, odd: false }
    }

    /// Adds the next bytes.
    #[must_use]
    pub fn add_bytes(mut self, data: &[u8]) -> Checksum {
        let s = fold(raw_sum(data));
        // One's complement sums are byte-order independent: bytes that
        // start at an odd offset sum to the byte-swapped value (RFC 1071 §2).
        self.sum += u64::from(if self.odd { s.swap_bytes() } else { s });
        self.odd ^= data.len() % 2 == 1;
        self
    }

    /// Adds a 16-bit value as its two big-endian bytes.
    #[must_use]
    pub fn add_u16(self, v: u16) -> Checksum {
        self.add_bytes(&v.to_be_bytes())
    }

    /// Adds a 32-bit value as its four big-endian bytes.
    #[must_use]
    pub fn add_u32(self, v: u32) -> Checksum {
        self.add_bytes(&v.to_be_bytes())
    }

    /// The checksum of everything added.
    pub fn finish(self) -> u16 {
        !fold(self.sum)
    }
}

/// Sum of 32-bit big-endian words, with an odd tail padded as 16-bit words
/// would be; congruent to the 16-bit word sum modulo 0xffff.
fn raw_sum(data: &[u8]) -> u64 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = rest.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds carries back in until the sum fits 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum after one 16-bit word it covers changed from `old` to
/// `new` (RFC 1624, equation 3), without summing the data again.
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook 16-bit-word definition, to compare against.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn golden_ipv4_header() {
        // A header with its checksum field zeroed; the checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn odd_tail_is_the_high_byte() {
        assert_eq!(checksum(&[0x01]), !0x0100);
        assert_eq!(checksum(&[0x00, 0x01, 0xf2]), !0xf201);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn update_matches_recomputing() {
        let mut h = [
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        // Decrement the TTL (word 4 holds TTL and protocol).
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        assert_eq!(update(c, old, new), checksum(&h));
    }

    proptest! {
        #[test]
        fn equals_word_by_word_definition(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(checksum(&d), reference(&d));
        }

        #[test]
        fn pieces_sum_like_their_concatenation(d in proptest::collection::vec(any::<u8>(), 0..200),
                                               cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4)) {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(d.len() + 1)).collect();
            at.sort();
            let mut c = Checksum::new();
            let mut from = 0;
            for a in at.into_iter().chain([d.len()]) {
                c = c.add_bytes(&d[from..a]);
                from = a;
            }
            prop_assert_eq!(c.finish(), checksum(&d));
        }

        #[test]
        fn update_any_word(d in proptest::collection::vec(any::<u8>(), 2..100), i in any::<prop::sample::Index>(), new in any::<u16>()) {
            let mut d = d;
            let w = i.index(d.len() / 2) * 2;
            let c = checksum(&d);
            let old = u16::from_be_bytes([d[w], d[w + 1]]);
            d[w..w + 2].copy_from_slice(&new.to_be_bytes());
            // One's complement has two zeros; both verify the same data.
            let (a, b) = (update(c, old, new), checksum(&d));
            prop_assert!(a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0), "{a:#x} {b:#x}");
        }
    }
}
