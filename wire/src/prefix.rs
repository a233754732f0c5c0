//! IP prefixes for IPv4 and IPv6 ([`Prefix`], always stored masked, so
//! equal networks compare equal) and a longest-prefix-match table
//! ([`PrefixMap`]). [`ipnet::IpNet`] converts both ways.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Host prefix length of the address family: 32 or 128.
pub const fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The IPv4 netmask of `len` bits as an integer (`len` above 32 is 32).
pub const fn netmask_v4(len: u8) -> u32 {
    let l = if len > 32 { 32 } else { len as u32 };
    if l == 0 { 0 } else { u32::MAX << (32 - l) }
}

/// The IPv6 netmask of `len` bits as an integer (`len` above 128 is 128).
pub const fn netmask_v6(len: u8) -> u128 {
    let l = if len > 128 { 128 } else { len as u32 };
    if l == 0 { 0 } else { u128::MAX << (128 - l) }
}

/// The prefix length of a contiguous dotted netmask (`255.255.255.0` →
/// 24); `None` if its one bits are not contiguous from the top.
pub fn netmask_len_v4(mask: Ipv4Addr) -> Option<u8> {
    let v = u32::from(mask);
    let len = v.leading_ones();
    (v.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// `addr` with all but its first `len` bits cleared.
pub fn mask_v4(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & netmask_v4(len))
}

/// `addr` with all but its first `len` bits cleared.
pub fn mask_v6(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(addr) & netmask_v6(len))
}

/// `addr` with all but its first `len` bits cleared.
pub fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, len)),
        IpAddr::V6(a) => IpAddr::V6(mask_v6(a, len)),
    }
}

/// An IPv4 or IPv6 network: address with its host bits cleared and a
/// length no longer than the family's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The network of `addr/len`; `len` is capped at the family's host
    /// length and host bits are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Prefix {
        let len = len.min(max_len(addr));
        Prefix {
            addr: mask(addr, len),
            len,
        }
    }

    /// The host prefix of `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix {
            addr,
            len: max_len(addr),
        }
    }

    /// The network address.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The prefix is a single host (/32 or /128).
    pub const fn is_host(&self) -> bool {
        self.len == max_len(self.addr)
    }

    /// An IPv4 prefix.
    pub const fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// `addr` lies in this prefix (same family).
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4() && mask(addr, self.len) == self.addr
    }

    /// `other` lies inside this prefix (itself included).
    pub fn contains(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains_addr(other.addr)
    }

    /// The two prefixes share addresses (one contains the other).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The last address of the prefix (all host bits set).
    pub fn last(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | !netmask_v4(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) | !netmask_v6(self.len))),
        }
    }
}

impl From<IpNet> for Prefix {
    fn from(n: IpNet) -> Prefix {
        Prefix::new(n.addr(), n.prefix_len())
    }
}

impl From<Ipv4Net> for Prefix {
    fn from(n: Ipv4Net) -> Prefix {
        Prefix::new(IpAddr::V4(n.addr()), n.prefix_len())
    }
}

impl From<Prefix> for IpNet {
    fn from(p: Prefix) -> IpNet {
        // A Prefix's length never exceeds its family's.
        match p.addr {
            IpAddr::V4(a) => IpNet::V4(Ipv4Net::new_assert(a, p.len)),
            IpAddr::V6(a) => IpNet::V6(Ipv6Net::new_assert(a, p.len)),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = ipnet::AddrParseError;

    /// `a.b.c.d/len` or `x::y/len`; host bits are cleared.
    fn from_str(s: &str) -> Result<Prefix, Self::Err> {
        s.parse::<IpNet>().map(Prefix::from)
    }
}

/// A table from prefixes to values answering longest-prefix-match
/// lookups. Entries are kept per family and prefix length, so a lookup
/// probes each length present, longest first, each probe O(log n); with
/// few distinct lengths (the usual case) it is close to O(log n).
/// Iteration is deterministic: IPv4 before IPv6, then by length, longest
/// first, then by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixMap<T> {
    v4: Table<T>,
    v6: Table<T>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Table<T> {
    /// Non-empty lengths only, longest first.
    by_len: Vec<(u8, BTreeMap<u128, T>)>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        PrefixMap {
            v4: Table { by_len: Vec::new() },
            v6: Table { by_len: Vec::new() },
        }
    }
}

fn key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr_of(v4: bool, k: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(k as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(k))
    }
}

impl<T> Table<T> {
    fn slot(&self, len: u8) -> Result<usize, usize> {
        self.by_len.binary_search_by(|(l, _)| len.cmp(l))
    }

    fn lookup(&self, k: u128, width: u8) -> Option<(u8, &T)> {
        self.by_len.iter().find_map(|(len, m)| {
            let masked = k & (netmask_v6(*len + (128 - width)));
            m.get(&masked).map(|v| (*len, v))
        })
    }
}

impl<T> PrefixMap<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self, v4: bool) -> &Table<T> {
        if v4 { &self.v4 } else { &self.v6 }
    }

    fn table_mut(&mut self, v4: bool) -> &mut Table<T> {
        if v4 { &mut self.v4 } else { &mut self.v6 }
    }

    /// Adds or replaces the value of `prefix`; returns the old value.
    pub fn insert(&mut self, prefix: Prefix, value: T) -> Option<T> {
        let t = self.table_mut(prefix.is_ipv4());
        let i = match t.slot(prefix.len) {
            Ok(i) => i,
            Err(i) => {
                t.by_len.insert(i, (prefix.len, BTreeMap::new()));
                i
            }
        };
        t.by_len[i].1.insert(key(prefix.addr), value)
    }

    /// Removes `prefix` (exactly); returns its value.
    pub fn remove(&mut self, prefix: &Prefix) -> Option<T> {
        let t = self.table_mut(prefix.is_ipv4());
        let i = t.slot(prefix.len).ok()?;
        let v = t.by_len[i].1.remove(&key(prefix.addr));
        if t.by_len[i].1.is_empty() {
            t.by_len.remove(i);
        }
        v
    }

    /// The value of exactly `prefix`.
    pub fn get(&self, prefix: &Prefix) -> Option<&T> {
        let t = self.table(prefix.is_ipv4());
        let i = t.slot(prefix.len).ok()?;
        t.by_len[i].1.get(&key(prefix.addr))
    }

    /// The value of exactly `prefix`, mutable.
    pub fn get_mut(&mut self, prefix: &Prefix) -> Option<&mut T> {
        let t = self.table_mut(prefix.is_ipv4());
        let i = t.slot(prefix.len).ok()?;
        t.by_len[i].1.get_mut(&key(prefix.addr))
    }

    /// The longest prefix containing `addr`, with its value.
    pub fn lookup(&self, addr: IpAddr) -> Option<(Prefix, &T)> {
        let v4 = addr.is_ipv4();
        let (len, v) = self.table(v4).lookup(key(addr), max_len(addr))?;
        Some((Prefix::new(addr, len), v))
    }

    /// The value of the longest IPv4 prefix containing `addr` (the
    /// forwarding path's lookup).
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<&T> {
        self.v4.lookup(u128::from(u32::from(addr)), 32).map(|x| x.1)
    }

    /// The value of the longest IPv6 prefix containing `addr`.
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<&T> {
        self.v6.lookup(u128::from(addr), 128).map(|x| x.1)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        [&self.v4, &self.v6]
            .iter()
            .flat_map(|t| t.by_len.iter())
            .map(|(_, m)| m.len())
            .sum()
    }

    /// No prefixes.
    pub fn is_empty(&self) -> bool {
        self.v4.by_len.is_empty() && self.v6.by_len.is_empty()
    }

    /// Removes every prefix.
    pub fn clear(&mut self) {
        self.v4.by_len.clear();
        self.v6.by_len.clear();
    }

    /// Keeps only the entries for which `f` is true.
    pub fn retain(&mut self, mut f: impl FnMut(Prefix, &mut T) -> bool) {
        for (v4, t) in [(true, &mut self.v4), (false, &mut self.v6)] {
            for (len, m) in &mut t.by_len {
                m.retain(|k, v| {
                    f(
                        Prefix {
                            addr: addr_of(v4, *k),
                            len: *len,
                        },
                        v,
                    )
                });
            }
            t.by_len.retain(|(_, m)| !m.is_empty());
        }
    }

    /// Every entry (IPv4 first, longest prefixes first, then by address).
    pub fn iter(&self) -> impl Iterator<Item = (Prefix, &T)> {
        [(true, &self.v4), (false, &self.v6)]
            .into_iter()
            .flat_map(|(v4, t)| {
                t.by_len.iter().flat_map(move |(len, m)| {
                    m.iter().map(move |(k, v)| {
                        (
                            Prefix {
                                addr: addr_of(v4, *k),
                                len: *len,
                            },
                            v,
                        )
                    })
                })
            })
    }
}

impl<T> FromIterator<(Prefix, T)> for PrefixMap<T> {
    fn from_iter<I: IntoIterator<Item = (Prefix, T)>>(it: I) -> Self {
        let mut m = PrefixMap::new();
        for (p, v) in it {
            m.insert(p, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masks_and_clamps() {
        assert_eq!(p("10.1.2.3/16"), Prefix::new(ip("10.1.0.0"), 16));
        assert_eq!(p("10.1.2.3/16").addr(), ip("10.1.0.0"));
        assert_eq!(Prefix::new(ip("10.1.2.3"), 40).prefix_len(), 32);
        assert_eq!(Prefix::new(ip("10.1.2.3"), 0).addr(), ip("0.0.0.0"));
        assert_eq!(p("2001:db8::1/32").addr(), ip("2001:db8::"));
        assert_eq!(
            p("2001:db8::1/32").last(),
            ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(p("10.1.0.0/16").last(), ip("10.1.255.255"));
        assert_eq!(p("0.0.0.0/0").last(), ip("255.255.255.255"));
        assert_eq!(p("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert!(Prefix::host(ip("10.0.0.1")).is_host());
        assert_eq!(
            IpNet::from(p("10.1.0.0/16")),
            "10.1.0.0/16".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_v4(0), 0);
        assert_eq!(netmask_v4(24), 0xffff_ff00);
        assert_eq!(netmask_v4(99), u32::MAX);
        assert_eq!(netmask_v6(128), u128::MAX);
        assert_eq!(netmask_len_v4("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(netmask_len_v4("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(netmask_len_v4("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(netmask_len_v4("255.0.255.0".parse().unwrap()), None);
        assert_eq!(
            mask_v4("10.1.2.3".parse().unwrap(), 8),
            Ipv4Addr::new(10, 0, 0, 0)
        );
    }

    #[test]
    fn containment_is_per_family() {
        assert!(p("10.0.0.0/8").contains(&p("10.1.0.0/16")));
        assert!(!p("10.1.0.0/16").contains(&p("10.0.0.0/8")));
        assert!(p("10.0.0.0/8").overlaps(&p("10.1.0.0/16")));
        assert!(!p("10.0.0.0/8").overlaps(&p("11.0.0.0/8")));
        assert!(p("0.0.0.0/0").contains_addr(ip("1.2.3.4")));
        assert!(!p("0.0.0.0/0").contains_addr(ip("::1")));
        assert!(!p("::/0").contains(&p("10.0.0.0/8")));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut m = PrefixMap::new();
        m.insert(p("0.0.0.0/0"), "default");
        m.insert(p("10.0.0.0/8"), "ten");
        m.insert(p("10.1.0.0/16"), "ten-one");
        m.insert(p("10.1.2.3/32"), "host");
        m.insert(p("::/0"), "v6 default");
        m.insert(p("2001:db8::/32"), "doc");
        assert_eq!(m.lookup_v4("10.1.2.3".parse().unwrap()), Some(&"host"));
        assert_eq!(m.lookup_v4("10.1.9.9".parse().unwrap()), Some(&"ten-one"));
        assert_eq!(m.lookup_v4("10.9.9.9".parse().unwrap()), Some(&"ten"));
        assert_eq!(
            m.lookup(ip("192.0.2.1")),
            Some((p("0.0.0.0/0"), &"default"))
        );
        assert_eq!(
            m.lookup(ip("2001:db8::5")),
            Some((p("2001:db8::/32"), &"doc"))
        );
        assert_eq!(
            m.lookup_v6("2001:db9::".parse().unwrap()),
            Some(&"v6 default")
        );
        assert_eq!(m.len(), 6);
        assert_eq!(m.insert(p("10.1.0.0/16"), "again"), Some("ten-one"));
        assert_eq!(m.remove(&p("10.1.2.3/32")), Some("host"));
        assert_eq!(m.remove(&p("10.1.2.3/32")), None);
        assert_eq!(m.lookup_v4("10.1.2.3".parse().unwrap()), Some(&"again"));
        m.retain(|pr, _| pr.is_ipv4() && pr.prefix_len() > 0);
        assert_eq!(
            m.iter()
                .map(|(pr, v)| (pr.to_string(), *v))
                .collect::<Vec<_>>(),
            [
                ("10.1.0.0/16".to_string(), "again"),
                ("10.0.0.0/8".to_string(), "ten")
            ]
        );
        assert_eq!(m.lookup(ip("192.0.2.1")), None);
        m.clear();
        assert!(m.is_empty());
    }

    fn any_prefix() -> impl Strategy<Value = Prefix> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| Prefix::new(IpAddr::from(a), l)),
            (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, l)| Prefix::new(IpAddr::from(a), l)),
        ]
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(x in any_prefix()) {
            prop_assert_eq!(x.to_string().parse::<Prefix>().unwrap(), x);
            prop_assert_eq!(Prefix::from(IpNet::from(x)), x);
            prop_assert!(x.contains_addr(x.addr()) && x.contains_addr(x.last()));
        }

        #[test]
        fn lookup_agrees_with_a_linear_scan(entries in proptest::collection::vec((any_prefix(), any::<u16>()), 0..40),
                                            probes in proptest::collection::vec(any_prefix(), 0..40)) {
            let m: PrefixMap<u16> = entries.iter().copied().collect();
            let mut last = std::collections::BTreeMap::new();
            for (pr, v) in &entries {
                last.insert(*pr, *v);
            }
            prop_assert_eq!(m.len(), last.len());
            // Probe entry addresses too, so matches are common.
            for a in probes.iter().chain(entries.iter().map(|e| &e.0)).map(|x| x.last()) {
                let want = last.iter().filter(|(pr, _)| pr.contains_addr(a)).max_by_key(|(pr, _)| pr.prefix_len());
                prop_assert_eq!(m.lookup(a), want.map(|(pr, v)| (*pr, v)));
            }
        }
    }
}
