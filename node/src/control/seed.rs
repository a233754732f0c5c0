//! The node's randomness: one 256-bit seed, from the OS in the daemon or
//! derived from the lab seed in the simulator. Every generator the node
//! uses (IKE: DH private keys, nonces, cookies; ESP IV seeds; SPIs; NHRP
//! request IDs) is a ChaCha20 stream keyed from it, never from fewer bits.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// 256 bits of seed material.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Seed {
    /// The seed of node `index` in a lab run with seed `lab_seed`:
    /// deterministic, and distinct for every node of the run.
    pub fn for_lab_node(lab_seed: u64, index: u64) -> Seed {
        let mut h = Sha256::new();
        h.update(b"dmvpn-lab node seed");
        h.update(lab_seed.to_be_bytes());
        h.update(index.to_be_bytes());
        Seed(h.finalize().into())
    }

    /// A generator for one purpose, independent of the others drawn from
    /// the same seed.
    pub(crate) fn rng(&self, purpose: &str) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.mix(purpose, &[]))
    }

    /// SHA-256 over the seed, a purpose label and extra input.
    fn mix(&self, purpose: &str, extra: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update((purpose.len() as u64).to_be_bytes());
        h.update(purpose.as_bytes());
        h.update(extra);
        h.finalize().into()
    }
}

/// Rekeys `rng` from fresh seed material and its own next output, so the
/// new stream depends on both (a weak fresh seed cannot make it worse).
pub(crate) fn reseed(rng: &mut ChaCha20Rng, fresh: &Seed, purpose: &str) {
    let mut own = [0u8; 32];
    rng.fill_bytes(&mut own);
    *rng = ChaCha20Rng::from_seed(fresh.mix(purpose, &own));
    zeroize::Zeroize::zeroize(&mut own);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_seeds_differ_per_node_and_repeat_per_run() {
        let a = Seed::for_lab_node(1, 0);
        assert_eq!(a, Seed::for_lab_node(1, 0));
        assert_ne!(a, Seed::for_lab_node(1, 1));
        assert_ne!(a, Seed::for_lab_node(2, 0));
    }

    #[test]
    fn every_seed_bit_counts() {
        // A generator keyed from fewer bits (a u64) would not see byte 31.
        let a = Seed([0; 32]);
        let mut b = Seed([0; 32]);
        b.0[31] = 1;
        assert_ne!(a.rng("ike").next_u64(), b.rng("ike").next_u64());
    }

    #[test]
    fn purposes_give_independent_streams() {
        let s = Seed([7; 32]);
        let (mut a, mut b) = (s.rng("ike"), s.rng("esp-iv"));
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn reseeding_changes_the_stream() {
        let s = Seed([7; 32]);
        let (mut a, mut b) = (s.rng("ike"), s.rng("ike"));
        reseed(&mut a, &Seed([9; 32]), "ike");
        b.next_u64(); // same position as `a` before its reseed draw
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
