//! Deadline index: the earliest timer of every phase 1 SA and child SA kept
//! in an ordered set, so `poll_timeout` is O(log n) and `handle_timeout`
//! only visits due entries instead of scanning every SA after each datagram.
//!
//! SA tables are wrapped in [`Tracked`], which records every key handed out
//! mutably (or inserted/removed). The endpoint re-derives those entries'
//! deadlines from the SA state itself, so the index cannot drift from what
//! the SAs say, whatever code path changed them.

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

/// A map whose mutable accesses mark the touched keys dirty. Values are
/// boxed: a B-tree node holds eleven of them inline, which for SAs of
/// about 1 KB made even a one-SA table cost 10 KB.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Tracked<K: Ord + Copy + Hash, V> {
    map: BTreeMap<K, Box<V>>,
    dirty: BTreeSet<K>,
}

impl<K: Ord + Copy + Hash, V> Tracked<K, V> {
    pub fn new() -> Self {
        Tracked {
            map: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let v = self.map.get_mut(k)?;
        self.dirty.insert(*k);
        Some(&mut **v)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.dirty.insert(k);
        self.map.insert(k, Box::new(v)).map(|b| *b)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        self.dirty.insert(*k);
        Some(*v)
    }

    /// Mark every entry dirty (a configuration change affecting all deadlines).
    pub fn touch_all(&mut self) {
        self.dirty.extend(self.map.keys().copied());
    }

    pub fn is_dirty(&self, k: &K) -> bool {
        self.dirty.contains(k)
    }

    pub fn dirty(&self) -> impl Iterator<Item = &K> {
        self.dirty.iter()
    }

    pub fn take_dirty(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.dirty)
    }
}

impl<K: Ord + Copy + Hash, V> std::ops::Index<&K> for Tracked<K, V> {
    type Output = V;
    fn index(&self, k: &K) -> &V {
        self.get(k).expect("no entry for this key")
    }
}

/// Read access, as a `BTreeMap<K, V>` gives it.
impl<K: Ord + Copy + Hash, V> Tracked<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|v| &**v)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, v)| (k, &**v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|v| &**v)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Earliest deadline per key, ordered by time.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct TimerIndex<K: Ord + Copy + Hash> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K: Ord + Copy + Hash> TimerIndex<K> {
    pub fn new() -> Self {
        TimerIndex {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }

    /// Set (or clear, with `None`) the deadline of `k`.
    pub fn set(&mut self, k: K, at: Option<Instant>) {
        let old = match at {
            Some(at) => self.by_key.insert(k, at),
            None => self.by_key.remove(&k),
        };
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.by_time.remove(&(old, k));
        }
        if let Some(at) = at {
            self.by_time.insert((at, k));
        }
    }

    /// Entries in deadline order.
    pub fn iter(&self) -> impl Iterator<Item = (Instant, K)> + '_ {
        self.by_time.iter().copied()
    }

    /// Keys whose deadline is at or before `now`.
    pub fn due(&self, now: Instant) -> impl Iterator<Item = K> + '_ {
        self.by_time
            .iter()
            .take_while(move |(t, _)| *t <= now)
            .map(|(_, k)| *k)
    }

    #[cfg(test)]
    pub fn get(&self, k: &K) -> Option<Instant> {
        self.by_key.get(k).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_moves_and_clears() {
        let t0 = Instant::from_secs(1);
        let mut ix = TimerIndex::new();
        ix.set(1u32, Some(t0 + Duration::from_secs(5)));
        ix.set(2u32, Some(t0 + Duration::from_secs(3)));
        assert_eq!(ix.iter().next(), Some((t0 + Duration::from_secs(3), 2)));
        ix.set(2, Some(t0 + Duration::from_secs(9)));
        assert_eq!(ix.iter().next(), Some((t0 + Duration::from_secs(5), 1)));
        assert_eq!(ix.due(t0 + Duration::from_secs(6)).collect::<Vec<_>>(), [1]);
        ix.set(1, None);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.get(&2), Some(t0 + Duration::from_secs(9)));
        assert_eq!(ix.iter().count(), 1);
    }

    pub(crate) mod endpoint_agreement {
        use crate::Instant;
        use crate::crypto::{EncrAlg, GroupId, HashAlg};
        use crate::policy::gre_proxy;
        use crate::*;
        use proptest::prelude::*;
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        use std::net::SocketAddr;
        use std::time::Duration;
        use zeroize::Zeroizing;

        fn cfg(dpd: bool) -> EngineConfig {
            EngineConfig {
                policies: vec![IkePolicy {
                    priority: 10,
                    encr: EncrAlg::Des,
                    hash: HashAlg::Md5,
                    group: GroupId::Modp768,
                    lifetime: 400,
                }],
                transform_sets: vec![TransformSet {
                    name: "t".into(),
                    esp: EspTransform {
                        encr: EspEncr::AesCbc(128),
                        integ: Some(HashAlg::Sha1),
                    },
                    mode: Mode::Transport,
                }],
                psks: vec![PskEntry {
                    prefix: "0.0.0.0".parse().unwrap(),
                    len: 0,
                    key: Zeroizing::new(b"k".to_vec()),
                    initiate: crate::policy::InitiateMode::Main,
                }],
                sa_lifetime_secs: 150,
                dpd: dpd.then_some(DpdConfig {
                    interval: Duration::from_secs(10),
                    retry: Duration::from_secs(2),
                    max_retries: 3,
                }),
                ..Default::default()
            }
        }

        fn endpoint(seed: u64, dpd: bool) -> Endpoint<ChaCha20Rng> {
            let mut n = (seed as u32) << 16;
            Endpoint::new(
                cfg(dpd),
                ChaCha20Rng::seed_from_u64(seed),
                Box::new(move || {
                    n += 1;
                    n
                }),
            )
        }

        #[derive(Debug, Clone)]
        enum Op {
            Initiate(bool),
            /// Deliver (or, when false, drop) the next datagram of one side.
            Deliver(bool, bool),
            Advance(u16),
            Timeout(bool),
            DeleteChild(bool, usize),
            DeletePeer(bool),
            Traffic(bool),
            Dpd(bool, bool),
            RekeyP1(bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                1 => any::<bool>().prop_map(Op::Initiate),
                4 => (any::<bool>(), prop::bool::weighted(0.85)).prop_map(|(a, b)| Op::Deliver(a, b)),
                2 => (0u16..200).prop_map(Op::Advance),
                2 => any::<bool>().prop_map(Op::Timeout),
                1 => (any::<bool>(), 0usize..4).prop_map(|(a, i)| Op::DeleteChild(a, i)),
                1 => any::<bool>().prop_map(Op::DeletePeer),
                1 => any::<bool>().prop_map(Op::Traffic),
                1 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::Dpd(a, b)),
                1 => any::<bool>().prop_map(Op::RekeyP1),
            ]
        }

        /// The index agrees with the SAs: entry for entry after a sync, and
        /// `poll_timeout` equals a full scan at any time.
        pub(crate) fn check(e: &mut Endpoint<ChaCha20Rng>) {
            assert_eq!(e.poll_timeout(), e.scan_timeout());
            e.sync_timers();
            assert_eq!(e.poll_timeout(), e.scan_timeout());
            assert_eq!(e.sa_deadlines.iter().count(), e.sa_deadlines.len());
            // The peer indexes list exactly the SAs held with each peer.
            assert_eq!(e.sa_peers.len(), e.sas.len());
            for (id, s) in e.sas.iter() {
                assert!(e.sa_peers.get(s.remote.ip()).any(|x| x == *id));
                let open = !s.initiator && !s.is_established();
                assert_eq!(e.half_open.contains(id), open, "half-open {id}");
                assert_eq!(
                    e.half_open.class(id),
                    crate::admission::HalfOpenClass::of(s),
                    "half-open class {id}"
                );
            }
            assert!(e.half_open.ids().all(|id| e.sas.contains_key(id)));
            assert_eq!(e.child_peers.len(), e.children.len());
            // One entry per (peer, outbound SPI), naming a child SA with
            // that pair (a peer may choose one SPI for two SAs).
            let pairs: std::collections::BTreeSet<_> = e
                .children
                .values()
                .map(|c| (c.remote.ip(), c.outbound_spi))
                .collect();
            assert_eq!(e.by_outbound.len(), pairs.len());
            for (spi, c) in e.children.iter() {
                assert!(e.child_peers.get(c.remote.ip()).any(|x| x == *spi));
                let named = e.by_outbound.get(&(c.remote.ip(), c.outbound_spi));
                let other = named.and_then(|n| e.children.get(n));
                assert!(other.is_some_and(
                    |o| o.remote.ip() == c.remote.ip() && o.outbound_spi == c.outbound_spi
                ));
            }
            let mut n = 0;
            for (id, s) in e.sas.iter() {
                let want = crate::endpoint::p1_deadline(&e.cfg, s);
                assert_eq!(e.sa_deadlines.get(id), want, "SA {id}");
                n += usize::from(want.is_some());
            }
            assert_eq!(e.sa_deadlines.len(), n);
            for (spi, c) in e.children.iter() {
                let want = crate::endpoint::child_deadline(c);
                assert_eq!(e.child_deadlines.get(spi), Some(want), "SPI {spi:#x}");
            }
            assert_eq!(e.child_deadlines.len(), e.children.len());
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn index_matches_scan(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..60)) {
                let la: SocketAddr = "172.16.0.1:500".parse().unwrap();
                let lb: SocketAddr = "172.16.0.2:500".parse().unwrap();
                let mut eps = [endpoint(seed, true), endpoint(seed ^ 1, false)];
                let addr = [la, lb];
                let mut now = Instant::from_secs(1);
                for op in ops {
                    match op {
                        Op::Initiate(x) => {
                            let (i, j) = (usize::from(x), usize::from(!x));
                            let req = Phase2Request {
                                local_proxy: Some(gre_proxy(addr[i].ip())),
                                remote_proxy: Some(gre_proxy(addr[j].ip())),
                            };
                            let _ = eps[i].initiate_phase2(now, addr[i], addr[j], req);
                        }
                        Op::Deliver(x, ok) => {
                            let (i, j) = (usize::from(x), usize::from(!x));
                            if let Some(t) = eps[i].poll_transmit() && ok {
                                let _ = eps[j].handle(now, t.remote, t.local, &t.payload);
                            }
                        }
                        Op::Advance(s) => now += Duration::from_secs(u64::from(s)),
                        Op::Timeout(x) => eps[usize::from(x)].handle_timeout(now),
                        Op::DeleteChild(x, k) => {
                            let e = &mut eps[usize::from(x)];
                            if let Some(&spi) = e.child_spis().get(k) {
                                e.delete_child(now, spi);
                            }
                        }
                        Op::DeletePeer(x) => {
                            let (i, j) = (usize::from(x), usize::from(!x));
                            eps[i].delete_peer(now, addr[j].ip());
                        }
                        Op::Traffic(x) => {
                            let (i, j) = (usize::from(x), usize::from(!x));
                            eps[i].note_traffic(now, addr[j].ip());
                        }
                        Op::RekeyP1(x) => {
                            let (i, j) = (usize::from(x), usize::from(!x));
                            eps[i].rekey_isakmp(now, addr[j].ip());
                        }
                        Op::Dpd(x, on) => {
                            let e = &mut eps[usize::from(x)];
                            e.set_config(cfg(on));
                        }
                    }
                    while eps[0].poll_event().is_some() {}
                    while eps[1].poll_event().is_some() {}
                    check(&mut eps[0]);
                    check(&mut eps[1]);
                }
            }
        }
    }
}
