//! Per-peer indexes over the SA tables, so per-packet and per-datagram
//! look-ups (`note_traffic`, half-open limits, "the SA with this peer",
//! DELETE by SPI) cost O(log n) instead of a scan of every SA.
//!
//! The tables stay the source of truth: the endpoint updates these sets at
//! the few places SAs are inserted or removed, and a test compares them
//! with a full scan.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Peer address -> keys of the SAs held with it.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct PeerIndex<K: Ord + Copy> {
    map: HashMap<IpAddr, BTreeSet<K>>,
}

impl<K: Ord + Copy> PeerIndex<K> {
    pub fn new() -> Self {
        PeerIndex {
            map: HashMap::new(),
        }
    }

    pub fn insert(&mut self, peer: IpAddr, k: K) {
        self.map.entry(peer).or_default().insert(k);
    }

    pub fn remove(&mut self, peer: IpAddr, k: K) {
        if let Some(set) = self.map.get_mut(&peer) {
            set.remove(&k);
            if set.is_empty() {
                self.map.remove(&peer);
            }
        }
    }

    /// Keys held with `peer`, in ascending order.
    pub fn get(&self, peer: IpAddr) -> impl DoubleEndedIterator<Item = K> + '_ {
        self.map.get(&peer).into_iter().flatten().copied()
    }

    /// Keys held with `peer`, collected (for loops that mutate the tables).
    pub fn list(&self, peer: IpAddr) -> Vec<K> {
        self.get(peer).collect()
    }

    pub fn has(&self, peer: IpAddr) -> bool {
        self.map.contains_key(&peer)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.values().map(|s| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_list() {
        let mut ix = PeerIndex::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        ix.insert(a, 3u64);
        ix.insert(a, 1);
        ix.insert(b, 2);
        assert_eq!(ix.list(a), [1, 3]);
        assert_eq!(ix.get(a).next_back(), Some(3));
        ix.remove(a, 1);
        ix.remove(a, 3);
        assert!(!ix.has(a));
        assert!(ix.has(b));
        assert_eq!(ix.len(), 1);
        ix.remove(a, 9);
        assert_eq!(ix.list(a), Vec::<u64>::new());
    }
}
