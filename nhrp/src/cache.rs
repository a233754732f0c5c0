//! The NHRP cache: protocol prefix → NBMA address, with the entry types
//! Cisco and FRR show (`show ip nhrp`, `show nhrp cache`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::time::Instant;

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
        }
    }

    /// Whether the entry gives a usable NBMA address.
    pub fn is_complete(&self) -> bool {
        self.nbma.is_some() && !matches!(self.kind, EntryType::Incomplete | EntryType::Negative)
    }
}

/// Host prefix length of the address family.
pub fn max_len(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

/// `a` with all but the first `len` bits cleared.
pub fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let l = u32::from(len.min(32));
            let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let l = u32::from(len.min(128));
            let m = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

/// Protocol-address cache with longest-prefix lookup.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    // Keyed by prefix length, then network address: a lookup probes each
    // present length from the longest down.
    by_len: BTreeMap<u8, HashMap<IpAddr, CacheEntry>>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Inserts or replaces the entry for its prefix; returns the old one.
    pub fn insert(&mut self, e: CacheEntry) -> Option<CacheEntry> {
        self.by_len
            .entry(e.prefix_len)
            .or_default()
            .insert(e.prefix, e)
    }

    /// The entry for exactly `prefix/len`.
    pub fn get(&self, prefix: IpAddr, len: u8) -> Option<&CacheEntry> {
        self.by_len.get(&len)?.get(&mask(prefix, len))
    }

    /// Mutable entry for exactly `prefix/len`.
    pub fn get_mut(&mut self, prefix: IpAddr, len: u8) -> Option<&mut CacheEntry> {
        self.by_len.get_mut(&len)?.get_mut(&mask(prefix, len))
    }

    /// Removes the entry for exactly `prefix/len`.
    pub fn remove(&mut self, prefix: IpAddr, len: u8) -> Option<CacheEntry> {
        let m = self.by_len.get_mut(&len)?;
        let e = m.remove(&mask(prefix, len));
        if m.is_empty() {
            self.by_len.remove(&len);
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

    /// Mutable longest-prefix match for `addr`.
    pub fn lookup_mut(&mut self, addr: IpAddr) -> Option<&mut CacheEntry> {
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

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_len.values().map(HashMap::len).sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the entries that expire at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<CacheEntry> {
        let mut gone = Vec::new();
        for m in self.by_len.values_mut() {
            let dead: Vec<IpAddr> = m
                .values()
                .filter(|e| e.expires.is_some_and(|t| t <= now))
                .map(|e| e.prefix)
                .collect();
            for k in dead {
                if let Some(e) = m.remove(&k) {
                    gone.push(e);
                }
            }
        }
        self.by_len.retain(|_, m| !m.is_empty());
        gone.sort_by_key(|e| (e.prefix, e.prefix_len));
        gone
    }

    /// Removes entries matching `f`, returning them.
    pub fn remove_if(&mut self, mut f: impl FnMut(&CacheEntry) -> bool) -> Vec<CacheEntry> {
        let mut gone = Vec::new();
        for m in self.by_len.values_mut() {
            let dead: Vec<IpAddr> = m.values().filter(|e| f(e)).map(|e| e.prefix).collect();
            for k in dead {
                if let Some(e) = m.remove(&k) {
                    gone.push(e);
                }
            }
        }
        self.by_len.retain(|_, m| !m.is_empty());
        gone.sort_by_key(|e| (e.prefix, e.prefix_len));
        gone
    }

    /// Earliest expiry time of any entry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_len
            .values()
            .flat_map(|m| m.values())
            .filter_map(|e| e.expires)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
    fn mask_v6() {
        assert_eq!(mask(ip("2001:db8::1"), 32), ip("2001:db8::"));
        assert_eq!(mask(ip("1.2.3.4"), 0), ip("0.0.0.0"));
    }
}
