//! The NHRP cache: protocol prefix → NBMA address, with the entry types
//! Cisco and FRR show (`show ip nhrp`, `show nhrp cache`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use dmvpn_wire::prefix::{Prefix, mask, max_len};

use crate::Instant;

/// Kind of cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryType {
    /// Configured mapping (`ip nhrp map`).
    Static,
    /// Learned from a registration (on an NHS).
    Dynamic,
    /// Learned from a resolution reply or request (a shortcut).
    Cached,
    /// Resolution in progress.
    Incomplete,
    /// Resolution failed; suppresses new requests until it expires.
    Negative,
    /// One of our own addresses/prefixes.
    Local,
    /// A next-hop server we register with.
    Nhs,
}

impl EntryType {
    /// Every kind, in index order.
    pub const ALL: [EntryType; 7] = [
        EntryType::Static,
        EntryType::Dynamic,
        EntryType::Cached,
        EntryType::Incomplete,
        EntryType::Negative,
        EntryType::Local,
        EntryType::Nhs,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Learned from the network (as opposed to configured): these count
    /// against the cache's bound.
    pub fn is_learned(self) -> bool {
        matches!(
            self,
            EntryType::Dynamic | EntryType::Cached | EntryType::Incomplete | EntryType::Negative
        )
    }
}

impl fmt::Display for EntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryType::Static => "static",
            EntryType::Dynamic => "dynamic",
            EntryType::Cached => "cached",
            EntryType::Incomplete => "incomplete",
            EntryType::Negative => "negative",
            EntryType::Local => "local",
            EntryType::Nhs => "nhs",
        })
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Network address (host bits cleared).
    pub prefix: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Kind.
    pub kind: EntryType,
    /// Next-hop protocol (tunnel) address, when known.
    pub next_hop: Option<IpAddr>,
    /// NBMA address to send to (post-NAT when the peer is behind NAT).
    pub nbma: Option<IpAddr>,
    /// NBMA address the peer claimed, when it differs from `nbma` (NAT).
    pub claimed_nbma: Option<IpAddr>,
    /// When the entry was created or last refreshed.
    pub created: Instant,
    /// When it expires (None = never).
    pub expires: Option<Instant>,
    /// Holding time it was learned with, in seconds.
    pub holding_time: u16,
    /// Registered with the unique flag.
    pub unique: bool,
    /// Used by the data path since the last refresh.
    pub used: bool,
    /// Learned from the source of a resolution request we answered, not
    /// from a reply to our own request (IOS flag `implicit`).
    pub implicit: bool,
}

impl CacheEntry {
    /// A new entry for `prefix/len` (host bits are cleared).
    pub fn new(prefix: IpAddr, prefix_len: u8, kind: EntryType, now: Instant) -> CacheEntry {
        let prefix_len = prefix_len.min(max_len(prefix));
        CacheEntry {
            prefix: mask(prefix, prefix_len),
            prefix_len,
            kind,
            next_hop: None,
            nbma: None,
            claimed_nbma: None,
            created: now,
            expires: None,
            holding_time: 0,
            unique: false,
            used: false,
            implicit: false,
        }
    }

    /// Re-resolution point of a cached entry: 2/3 of its holding time.
    pub fn refresh_at(&self) -> Option<Instant> {
        (self.kind == EntryType::Cached && self.holding_time > 0)
            .then(|| self.created + Duration::from_secs(u64::from(self.holding_time)) * 2 / 3)
    }

    /// Whether the entry gives a usable NBMA address.
    pub fn is_complete(&self) -> bool {
        self.nbma.is_some() && !matches!(self.kind, EntryType::Incomplete | EntryType::Negative)
    }
}

/// Protocol-address cache with longest-prefix lookup.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    // Keyed by prefix length, then network address: a lookup probes each
    // present length from the longest down; ordered so the entries inside
    // a prefix are a range.
    by_len: BTreeMap<u8, BTreeMap<IpAddr, CacheEntry>>,
    // Time indexes so timers cost O(log n) on a hub with many clients.
    expiries: BTreeSet<(Instant, IpAddr, u8)>,
    refreshes: BTreeSet<(Instant, IpAddr, u8)>,
    // Entries per kind, and registrations (dynamic entries) per NBMA
    // address, so bounds are checked in O(1) and O(log n). Ordered, so
    // that the multicast list built from it needs no sort: a hub taking
    // thousands of first registrations at once rebuilds it for each.
    kinds: [usize; 7],
    owners: BTreeMap<IpAddr, usize>,
    // Bumped whenever an NBMA address gains its first registration or
    // loses its last, so a hub's multicast list is rebuilt only then.
    owners_changed: u64,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Inserts or replaces the entry for its prefix; returns the old one.
    pub fn insert(&mut self, e: CacheEntry) -> Option<CacheEntry> {
        if let Some(t) = e.expires {
            self.expiries.insert((t, e.prefix, e.prefix_len));
        }
        if let Some(t) = e.refresh_at() {
            self.refreshes.insert((t, e.prefix, e.prefix_len));
        }
        self.count(&e, true);
        let old = self
            .by_len
            .entry(e.prefix_len)
            .or_default()
            .insert(e.prefix, e);
        if let Some(o) = &old {
            self.count(o, false);
            self.unindex(o);
        }
        old
    }

    fn count(&mut self, e: &CacheEntry, add: bool) {
        let k = &mut self.kinds[e.kind.index()];
        *k = if add { *k + 1 } else { k.saturating_sub(1) };
        if let (EntryType::Dynamic, Some(n)) = (e.kind, e.nbma) {
            if add {
                let c = self.owners.entry(n).or_default();
                *c += 1;
                if *c == 1 {
                    self.owners_changed += 1;
                }
            } else if let Some(c) = self.owners.get_mut(&n) {
                *c -= 1;
                if *c == 0 {
                    self.owners.remove(&n);
                    self.owners_changed += 1;
                }
            }
        }
    }

    fn unindex(&mut self, o: &CacheEntry) {
        // Only drop index entries that no longer match the stored entry.
        let cur = self.get(o.prefix, o.prefix_len);
        let (cur_exp, cur_ref) = (
            cur.and_then(|c| c.expires),
            cur.and_then(|c| c.refresh_at()),
        );
        if let Some(t) = o.expires.filter(|t| cur_exp != Some(*t)) {
            self.expiries.remove(&(t, o.prefix, o.prefix_len));
        }
        if let Some(t) = o.refresh_at().filter(|t| cur_ref != Some(*t)) {
            self.refreshes.remove(&(t, o.prefix, o.prefix_len));
        }
    }

    /// The entry for exactly `prefix/len`.
    pub fn get(&self, prefix: IpAddr, len: u8) -> Option<&CacheEntry> {
        self.by_len.get(&len)?.get(&mask(prefix, len))
    }

    /// Mutable entry for exactly `prefix/len` (crate-internal: timing
    /// fields are indexed and must change through `insert`).
    pub(crate) fn get_mut(&mut self, prefix: IpAddr, len: u8) -> Option<&mut CacheEntry> {
        self.by_len.get_mut(&len)?.get_mut(&mask(prefix, len))
    }

    /// Removes the entry for exactly `prefix/len`.
    pub fn remove(&mut self, prefix: IpAddr, len: u8) -> Option<CacheEntry> {
        let m = self.by_len.get_mut(&len)?;
        let e = m.remove(&mask(prefix, len));
        if m.is_empty() {
            self.by_len.remove(&len);
        }
        if let Some(o) = &e {
            self.count(o, false);
            self.unindex(o);
        }
        e
    }

    /// Longest-prefix match for `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&CacheEntry> {
        self.by_len.iter().rev().find_map(|(len, m)| {
            if *len > max_len(addr) {
                return None;
            }
            m.get(&mask(addr, *len))
                .filter(|e| e.prefix.is_ipv4() == addr.is_ipv4())
        })
    }

    /// Mutable longest-prefix match for `addr` (see `get_mut`).
    pub(crate) fn lookup_mut(&mut self, addr: IpAddr) -> Option<&mut CacheEntry> {
        let (len, prefix) = {
            let e = self.lookup(addr)?;
            (e.prefix_len, e.prefix)
        };
        self.get_mut(prefix, len)
    }

    /// All entries, sorted by prefix then length.
    pub fn entries(&self) -> Vec<&CacheEntry> {
        let mut v: Vec<&CacheEntry> = self.by_len.values().flat_map(|m| m.values()).collect();
        v.sort_by_key(|e| (e.prefix, e.prefix_len));
        v
    }

    /// All entries, unordered (cheaper than [`Cache::entries`]).
    pub fn iter(&self) -> impl Iterator<Item = &CacheEntry> {
        self.by_len.values().flat_map(|m| m.values())
    }

    /// Entries that overlap `prefix/len`: those containing it (itself
    /// included) and those inside it.
    pub fn overlapping(&self, prefix: IpAddr, len: u8) -> impl Iterator<Item = &CacheEntry> {
        let len = len.min(max_len(prefix));
        let whole = Prefix::new(prefix, len);
        let (first, end) = (whole.addr(), whole.last());
        self.by_len.iter().flat_map(move |(l, m)| {
            let range = if *l <= len {
                let k = mask(prefix, *l);
                m.range(k..=k)
            } else {
                m.range(first..=end)
            };
            range
                .map(|(_, e)| e)
                .filter(move |e| e.prefix.is_ipv4() == prefix.is_ipv4())
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.kinds.iter().sum()
    }

    /// Number of entries of one kind.
    pub fn count_kind(&self, kind: EntryType) -> usize {
        self.kinds[kind.index()]
    }

    /// Number of learned entries (see [`EntryType::is_learned`]).
    pub fn learned(&self) -> usize {
        EntryType::ALL
            .iter()
            .filter(|k| k.is_learned())
            .map(|k| self.count_kind(*k))
            .sum()
    }

    /// Registrations (dynamic entries) whose NBMA address is `nbma`.
    pub fn registrations_from(&self, nbma: IpAddr) -> usize {
        self.owners.get(&nbma).copied().unwrap_or(0)
    }

    /// The NBMA addresses with at least one registration, in order.
    pub fn registered_nbmas(&self) -> impl Iterator<Item = &IpAddr> {
        self.owners.keys()
    }

    /// Changes whenever [`Cache::registered_nbmas`] may have changed.
    pub fn registered_nbmas_version(&self) -> u64 {
        self.owners_changed
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the entries that expire at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<CacheEntry> {
        let mut gone = Vec::new();
        while let Some(&(t, p, l)) = self.expiries.first() {
            if t > now {
                break;
            }
            self.expiries.pop_first();
            if self.get(p, l).is_some_and(|e| e.expires == Some(t)) {
                gone.extend(self.remove(p, l));
            }
        }
        gone.sort_by_key(|e| (e.prefix, e.prefix_len));
        gone
    }

    /// Cached entries whose re-resolution point (2/3 of the holding time)
    /// is at or before `now`; each is reported once.
    pub fn take_due_refreshes(&mut self, now: Instant) -> Vec<(IpAddr, u8)> {
        let mut due = Vec::new();
        while let Some(&(t, p, l)) = self.refreshes.first() {
            if t > now {
                break;
            }
            self.refreshes.pop_first();
            if self.get(p, l).is_some_and(|e| e.refresh_at() == Some(t)) {
                due.push((p, l));
            }
        }
        due
    }

    /// Earliest re-resolution point.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.refreshes.first().map(|x| x.0)
    }

    /// Removes entries matching `f`, returning them.
    pub fn remove_if(&mut self, mut f: impl FnMut(&CacheEntry) -> bool) -> Vec<CacheEntry> {
        let keys: Vec<(IpAddr, u8)> = self
            .iter()
            .filter(|e| f(e))
            .map(|e| (e.prefix, e.prefix_len))
            .collect();
        let mut gone: Vec<CacheEntry> = keys
            .into_iter()
            .filter_map(|(p, l)| self.remove(p, l))
            .collect();
        gone.sort_by_key(|e| (e.prefix, e.prefix_len));
        gone
    }

    /// Earliest expiry time of any entry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|x| x.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A /32 or /128 (and /0) once overflowed the shift that finds a
    /// prefix's last address when a registration was stored.
    #[test]
    fn last_address_of_host_and_whole_space_prefixes() {
        let last = |a: IpAddr, len: u8| dmvpn_wire::prefix::Prefix::new(a, len).last();
        assert_eq!(last(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(last(ip("10.1.2.3"), 24), ip("10.1.2.255"));
        assert_eq!(last(ip("10.1.2.3"), 0), ip("255.255.255.255"));
        assert_eq!(last(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(
            last(ip("::"), 0),
            ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
    }

    #[test]
    fn longest_prefix_and_expiry() {
        let mut c = Cache::new();
        let mut a = CacheEntry::new(ip("10.0.0.0"), 8, EntryType::Static, Instant::ZERO);
        a.nbma = Some(ip("1.1.1.1"));
        let mut b = CacheEntry::new(ip("10.1.2.3"), 24, EntryType::Cached, Instant::ZERO);
        b.nbma = Some(ip("2.2.2.2"));
        b.expires = Some(Instant::from_secs(10));
        c.insert(a);
        c.insert(b);
        assert_eq!(c.lookup(ip("10.1.2.77")).unwrap().prefix, ip("10.1.2.0"));
        assert_eq!(c.lookup(ip("10.9.9.9")).unwrap().prefix_len, 8);
        assert!(c.lookup(ip("11.0.0.1")).is_none());
        assert!(c.lookup(ip("::1")).is_none());
        assert!(c.expire(Instant::from_secs(9)).is_empty());
        assert_eq!(c.expire(Instant::from_secs(10)).len(), 1);
        assert_eq!(c.lookup(ip("10.1.2.77")).unwrap().prefix_len, 8);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn time_indexes_follow_replacement_and_removal() {
        let mut c = Cache::new();
        let mk = |exp: u64, ht: u16| {
            let mut e = CacheEntry::new(ip("10.0.0.1"), 32, EntryType::Cached, Instant::ZERO);
            e.nbma = Some(ip("1.1.1.1"));
            e.expires = Some(Instant::from_secs(exp));
            e.holding_time = ht;
            e
        };
        c.insert(mk(10, 9));
        c.insert(mk(20, 30));
        assert_eq!(c.next_expiry(), Some(Instant::from_secs(20)));
        assert_eq!(c.next_refresh(), Some(Instant::from_secs(20)));
        assert!(c.take_due_refreshes(Instant::from_secs(15)).is_empty());
        assert!(c.expire(Instant::from_secs(15)).is_empty());
        assert_eq!(c.take_due_refreshes(Instant::from_secs(20)).len(), 1);
        assert!(
            c.take_due_refreshes(Instant::from_secs(20)).is_empty(),
            "once"
        );
        c.remove(ip("10.0.0.1"), 32);
        assert_eq!(c.next_expiry(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn overlapping_counts_and_owners() {
        let mut c = Cache::new();
        let mk = |p: &str, l: u8, kind: EntryType, n: &str| {
            let mut e = CacheEntry::new(ip(p), l, kind, Instant::ZERO);
            e.nbma = Some(ip(n));
            e
        };
        c.insert(mk("192.168.1.1", 32, EntryType::Local, "172.16.0.1"));
        c.insert(mk("192.168.1.2", 32, EntryType::Dynamic, "172.16.0.2"));
        c.insert(mk("192.168.1.3", 32, EntryType::Dynamic, "172.16.0.3"));
        c.insert(mk("10.0.0.0", 8, EntryType::Dynamic, "172.16.0.2"));
        c.insert(mk("192.168.2.0", 24, EntryType::Cached, "172.16.0.9"));
        c.insert(mk("fd00::2", 128, EntryType::Dynamic, "172.16.0.2"));
        let over = |p: &str, l: u8| {
            let mut v: Vec<String> = c
                .overlapping(ip(p), l)
                .map(|e| format!("{}/{}", e.prefix, e.prefix_len))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            over("192.168.1.2", 31),
            ["192.168.1.2/32", "192.168.1.3/32"]
        );
        assert_eq!(
            over("192.168.1.0", 24),
            ["192.168.1.1/32", "192.168.1.2/32", "192.168.1.3/32"]
        );
        assert_eq!(over("10.3.0.0", 25), ["10.0.0.0/8"]);
        assert_eq!(over("192.168.2.7", 32), ["192.168.2.0/24"]);
        assert!(over("192.168.3.0", 24).is_empty());
        assert_eq!(over("fd00::", 64), ["fd00::2/128"]);
        assert_eq!(over("0.0.0.0", 0).len(), 5, "IPv4 only");
        assert_eq!(c.len(), 6);
        assert_eq!(c.learned(), 5);
        assert_eq!(c.count_kind(EntryType::Dynamic), 4);
        assert_eq!(c.registrations_from(ip("172.16.0.2")), 3);
        // Replacing and removing keep the counts.
        c.insert(mk("192.168.1.2", 32, EntryType::Dynamic, "172.16.0.3"));
        assert_eq!(c.registrations_from(ip("172.16.0.2")), 2);
        assert_eq!(c.registrations_from(ip("172.16.0.3")), 2);
        c.remove(ip("10.0.0.0"), 8);
        c.remove(ip("fd00::2"), 128);
        assert_eq!(c.registrations_from(ip("172.16.0.2")), 0);
        assert_eq!(c.len(), 4);
        assert_eq!(c.entries().len(), 4);
    }

    #[test]
    fn mask_v6() {
        assert_eq!(mask(ip("2001:db8::1"), 32), ip("2001:db8::"));
        assert_eq!(mask(ip("1.2.3.4"), 0), ip("0.0.0.0"));
    }
}
