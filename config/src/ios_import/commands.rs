//! IOS command grammar: which word sequences are commands we translate,
//! in which section (interface, ISAKMP policy, profile, ...).

use crate::types::*;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub(crate) enum Cmd {
    Hostname(String),
    End,
    Interface(String),
    Shutdown(bool),
    IpAddress(IpAddr, Option<u8>),
    Ipv6Address(IpNet),
    /// `ipv6 nhrp` other than `nhs` and `map` (network-id, holdtime...).
    Ipv6NhrpSetting(String),
    IpMtu(u16),
    NhrpAuth(String),
    NhrpNetworkId(u32),
    NhrpHoldtime(u32),
    NhrpMapMcastDynamic,
    NhrpMapMcast(IpAddr),
    NhrpMap(IpAddr, IpAddr),
    NhrpNhs {
        addr: IpAddr,
        nbma: Option<IpAddr>,
        multicast: bool,
        priority: u8,
    },
    NhrpRedirect,
    NhrpShortcut,
    NhrpRegTimeout(u32),
    NhrpRegNoUnique,
    /// `if-state nhrp`.
    IfStateNhrp,
    /// `ip nhrp max-send N every S`.
    NhrpMaxSend(u32, u32),
    TunnelSource(String),
    TunnelDest(IpAddr),
    /// Mode, and whether the transport (NBMA) is IPv6.
    TunnelMode(TunnelMode, bool),
    TunnelKey(u32),
    TunnelProtection(String),
    IsakmpPolicy(u16),
    PolEncryption(IkeEncryption),
    PolHash(IkeHash),
    PolAuth(bool),
    PolGroup(DhGroup),
    PolLifetime(u32),
    IsakmpKey(String, IpNet),
    IsakmpIdentity(Identity),
    IsakmpKeepalive(u32, u32),
    NatKeepalive(u32),
    NatTraversalOff,
    AggressiveDisable,
    /// `crypto call admission limit ike in-negotiation-sa N`.
    InNegotiationLimit(u32),
    TransformSet(String, Vec<Transform>),
    TsMode(EspMode),
    IpsecProfile(String),
    SetTransformSets(Vec<String>),
    SetLifetimeSeconds(u32),
    SetLifetimeKb(u64),
    SetIdle(u32),
    SetPfs(DhGroup),
    SetPeer(IpAddr),
    GlobalLifetimeSeconds(u32),
    GlobalLifetimeKb(u64),
    GlobalIdle(u32),
    CryptoMap(String, u32),
    /// ASA `crypto map NAME SEQ <sub-command>` on one line.
    CryptoMapLine(String, u32, Box<Cmd>),
    TunnelGroup(String),
    PreSharedKey(String),
    Keyring(String),
    KeyringKey(String, IpNet),
    /// `crypto isakmp profile NAME`.
    IsakmpProfile(String),
    /// `keyring NAME` inside an ISAKMP profile.
    ProfileKeyring(String),
    /// `match identity address A [M]` inside an ISAKMP profile.
    ProfileMatchAddress(IpNet),
    /// `initiate mode aggressive` inside an ISAKMP profile.
    ProfileInitiateAggressive,
    /// `set isakmp-profile NAME` in an IPsec profile or crypto map entry.
    SetIsakmpProfile(String),
    /// `ip route P M NEXT-HOP [DISTANCE]`.
    IpRoute(IpNet, String, Option<u8>),
    Routing(String),
    /// A negated command we recognise but do not map (`no ip nhrp shortcut`).
    Negated,
    /// A command we recognise as one unit but do not map.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ctx {
    Top,
    Interface(String),
    Policy(u16),
    TransformSet(String),
    Profile(String),
    CryptoMap(String, u32),
    TunnelGroup(String),
    Keyring(String),
    IsakmpProfile(String),
    Routing,
    Other,
}

pub(crate) fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// The prefix length of a dotted netmask (`255.255.255.0` → 24).
pub(crate) fn mask_len(s: &str) -> Option<u8> {
    dmvpn_wire::prefix::netmask_len_v4(s.parse().ok()?)
}

pub(crate) fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// IOS interface names may be abbreviated (`Tu0`) or split (`Tunnel 0`).
pub(crate) fn canonical_ifname(name: &str) -> String {
    const TYPES: [&str; 14] = [
        "Tunnel",
        "FastEthernet",
        "GigabitEthernet",
        "TenGigabitEthernet",
        "Ethernet",
        "Serial",
        "Loopback",
        "Vlan",
        "Dialer",
        "BRI",
        "ATM",
        "Port-channel",
        "Virtual-Template",
        "Cellular",
    ];
    let split = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (kind, rest) = name.split_at(split);
    if kind.len() >= 2 {
        for t in TYPES {
            if t.len() >= kind.len() && t[..kind.len()].eq_ignore_ascii_case(kind) {
                return format!("{t}{rest}");
            }
        }
    }
    name.to_string()
}

pub(crate) fn is_tunnel_if(name: &str) -> bool {
    name.starts_with("Tunnel")
}

/// Words that start IOS/ASA configuration lines; used to tell a config
/// line we do not map from prose around the configuration.
pub(crate) const IOS_WORDS: &[&str] = &[
    "version",
    "service",
    "hostname",
    "boot-start-marker",
    "boot-end-marker",
    "boot",
    "enable",
    "aaa",
    "no",
    "ip",
    "ipv6",
    "interface",
    "crypto",
    "router",
    "line",
    "end",
    "logging",
    "username",
    "access-list",
    "ntp",
    "snmp-server",
    "banner",
    "control-plane",
    "voice",
    "fax",
    "dial-peer",
    "tunnel",
    "description",
    "duplex",
    "speed",
    "shutdown",
    "set",
    "match",
    "mode",
    "hash",
    "encryption",
    "authentication",
    "group",
    "lifetime",
    "network",
    "neighbor",
    "exec-timeout",
    "transport",
    "password",
    "login",
    "escape-character",
    "clock",
    "license",
    "archive",
    "spanning-tree",
    "vlan",
    "memory-size",
    "multilink",
    "redundancy",
    "object-group",
    "class-map",
    "policy-map",
    "route-map",
    "mpls",
    "scheduler",
    "track",
    "key",
    "nameif",
    "security-level",
    "tunnel-group",
    "group-policy",
    "webvpn",
    "names",
    "dns",
    "domain-name",
    "same-security-traffic",
    "nat",
    "route",
    "pager",
    "mtu",
    "icmp",
    "asdm",
    "arp",
    "timeout",
    "telnet",
    "ssh",
    "console",
    "threat-detection",
    "http",
    "snmp",
    "sysopt",
    "passwd",
    "auto-summary",
    "media-type",
    "negotiation",
    "keepalive",
    "bandwidth",
    "delay",
    "standby",
    "switchport",
    "encapsulation",
    "dialer",
    "privilege",
    "secret",
    "cdp",
    "lldp",
    "object",
    "pre-shared-key",
    "default-group-policy",
    "vpn-framed-ip-address",
    "password-storage",
    "connect",
    "peer",
    "xauth",
    "clockrate",
    "full-duplex",
    "half-duplex",
    "no-autostate",
    "exit",
    "default",
    "address-family",
    "exit-address-family",
    "redistribute",
    "passive-interface",
    "eigrp",
    "ospf",
    "distribute-list",
    "summary-address",
    "area",
    "router-id",
    "encr",
    "keyring",
    "self-identity",
    "isakmp",
    "initiate",
    "dpd",
];

pub(crate) fn ios_word(w: &str) -> bool {
    IOS_WORDS.contains(&w)
}

/// Parses a transform list (`esp-aes 256 esp-sha-hmac`); returns the
/// number of words used and the transforms (unknown transforms end it).
pub(crate) fn transforms(w: &[&str]) -> Option<(usize, Vec<Transform>)> {
    let mut i = 0;
    let mut out = Vec::new();
    while i < w.len() {
        let name = w[i].to_ascii_lowercase();
        if !name.starts_with("esp-") {
            // A transform we do not support (ah-*, comp-lzs) spoils the set.
            if name.starts_with("ah-") || name.starts_with("comp-") {
                return None;
            }
            break;
        }
        if matches!(name.as_str(), "esp-aes" | "esp-gcm")
            && let Some(b) = w
                .get(i + 1)
                .filter(|b| matches!(**b, "128" | "192" | "256"))
            && let Ok(t) = format!("{name} {b}").parse()
        {
            out.push(t);
            i += 2;
            continue;
        }
        out.push(name.parse::<Transform>().ok()?);
        i += 1;
    }
    Some((i, out))
}

/// Matches one command at the start of `w` in context `ctx`; returns the
/// number of words it used.
pub(crate) fn match_cmd(w: &[&str], ctx: &Ctx) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    let in_if = matches!(ctx, Ctx::Interface(_));
    match (g(0), g(1)) {
        ("hostname", h) if !h.is_empty() => return Some((2, Cmd::Hostname(h.to_string()))),
        ("end", "") => return Some((1, Cmd::End)),
        ("interface", n) if !n.is_empty() => {
            // `interface Tunnel 0`
            if n.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
                && g(2).chars().next().is_some_and(|c| c.is_ascii_digit())
            {
                return Some((3, Cmd::Interface(canonical_ifname(&format!("{n}{}", g(2))))));
            }
            if n.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                return Some((2, Cmd::Interface(canonical_ifname(n))));
            }
            return None;
        }
        ("router", p) if matches!(p, "eigrp" | "ospf" | "bgp" | "rip" | "isis" | "ospfv3") => {
            let n = if g(2).is_empty() { 2 } else { 3 };
            return Some((
                n,
                Cmd::Routing(format!("router {p} {}", g(2)).trim().to_string()),
            ));
        }
        ("no", _) => {
            let rest = &w[1..];
            return match rest {
                ["shutdown", ..] => Some((2, Cmd::Shutdown(false))),
                ["crypto", "isakmp", "nat-traversal", ..] => Some((4, Cmd::NatTraversalOff)),
                [
                    "crypto",
                    "ipsec",
                    "nat-transparency",
                    "udp-encapsulation",
                    ..,
                ] => Some((5, Cmd::NatTraversalOff)),
                _ => match_cmd(rest, ctx).map(|(n, _)| (n + 1, Cmd::Negated)),
            };
        }
        ("shutdown", _) if in_if => return Some((1, Cmd::Shutdown(true))),
        ("if-state", "nhrp") if in_if => return Some((2, Cmd::IfStateNhrp)),
        ("crypto", "isakmp") | ("crypto", "ikev1") if g(2) == "enable" && !g(3).is_empty() => {
            return Some((4, Cmd::Unsupported(w[..4].join(" "))));
        }
        ("crypto", "isakmp") | ("crypto", "ikev1") => {
            if let Some(r) = crypto_isakmp(&w[2..]) {
                return Some((r.0 + 2, r.1));
            }
        }
        ("crypto", "ipsec") => {
            if let Some(r) = crypto_ipsec(&w[2..]) {
                return Some((r.0 + 2, r.1));
            }
        }
        ("crypto", "call")
            if w.get(2..6) == Some(&["admission", "limit", "ike", "in-negotiation-sa"][..]) =>
        {
            return num(g(6)).map(|n| (7, Cmd::InNegotiationLimit(n)));
        }
        ("crypto", "map") if g(3) == "interface" && !g(4).is_empty() => {
            return Some((5, Cmd::Unsupported(w[..5].join(" "))));
        }
        ("crypto", "map") | ("crypto", "dynamic-map") => {
            let name = g(2);
            let seq: Option<u32> = num(g(3));
            if let (false, Some(seq)) = (name.is_empty(), seq) {
                if g(4) == "ipsec-isakmp" || (g(4).is_empty() && g(1) == "dynamic-map") {
                    let n = if g(5) == "dynamic" { 7 } else { 5 };
                    return Some((n.min(w.len()), Cmd::CryptoMap(name.into(), seq)));
                }
                let sub_ctx = Ctx::CryptoMap(name.into(), seq);
                if let Some((n, c)) = map_sub(&w[4..], &sub_ctx) {
                    return Some((n + 4, Cmd::CryptoMapLine(name.into(), seq, Box::new(c))));
                }
            }
        }
        ("crypto", "keyring") if !g(2).is_empty() => {
            let n = if g(3) == "vrf" && !g(4).is_empty() {
                5
            } else {
                3
            };
            return Some((n, Cmd::Keyring(g(2).to_string())));
        }
        ("tunnel-group", peer) if g(2) == "ipsec-attributes" => {
            return Some((3, Cmd::TunnelGroup(peer.to_string())));
        }
        ("ipv6", "route") => {
            // ipv6 route P/L (INTERFACE | NEXT-HOP) [DISTANCE]
            if let Ok(net) = g(2).parse::<IpNet>()
                && net.addr().is_ipv6()
                && !g(3).is_empty()
            {
                return Some(match g(4).parse::<u8>() {
                    Ok(d) if d > 0 => (5, Cmd::IpRoute(net, g(3).to_string(), Some(d))),
                    _ => (4, Cmd::IpRoute(net, g(3).to_string(), None)),
                });
            }
            return None;
        }
        ("ip", "route") => {
            let pfx = ip(g(2)).zip(mask_len(g(3)));
            if let Some((a, len)) = pfx
                && let Ok(net) = IpNet::new(a, len)
                && !g(4).is_empty()
            {
                // A floating static: its administrative distance.
                return Some(match g(5).parse::<u8>() {
                    Ok(d) if d > 0 => (6, Cmd::IpRoute(net, g(4).to_string(), Some(d))),
                    _ => (5, Cmd::IpRoute(net, g(4).to_string(), None)),
                });
            }
            return None;
        }
        _ => {}
    }
    match ctx {
        Ctx::Interface(_) => interface_sub(w),
        Ctx::Policy(_) => policy_sub(w),
        Ctx::TransformSet(_) => match (g(0), g(1)) {
            ("mode", "transport") => Some((
                if g(2) == "require" { 3 } else { 2 },
                Cmd::TsMode(EspMode::Transport),
            )),
            ("mode", "tunnel") => Some((2, Cmd::TsMode(EspMode::Tunnel))),
            _ => None,
        },
        Ctx::Profile(_) | Ctx::CryptoMap(..) => map_sub(w, ctx),
        Ctx::Keyring(_) => keyring_sub(w),
        Ctx::IsakmpProfile(_) => isakmp_profile_sub(w),
        Ctx::TunnelGroup(_) => match (g(0), g(1)) {
            ("pre-shared-key", k) if !k.is_empty() => Some((2, Cmd::PreSharedKey(k.into()))),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn crypto_isakmp(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match g(0) {
        "policy" => num(g(1)).map(|n| (2, Cmd::IsakmpPolicy(n))),
        "key" => {
            // key [0] KEY address A [M] | key KEY address ipv6 P/L
            let (k, i) = if g(1) == "0" && g(3) == "address" {
                (g(2), 3)
            } else {
                (g(1), 2)
            };
            if k.is_empty() || g(i) != "address" {
                return None;
            }
            if g(i + 1) == "ipv6" {
                let net: IpNet = g(i + 2)
                    .parse()
                    .ok()
                    .or_else(|| ip(g(i + 2)).map(IpNet::from))?;
                return Some((i + 3, Cmd::IsakmpKey(k.into(), net)));
            }
            let a = ip(g(i + 1))?;
            match mask_len(g(i + 2)).and_then(|l| IpNet::new(a, l).ok()) {
                Some(net) => {
                    let extra = usize::from(g(i + 3) == "no-xauth");
                    Some((i + 3 + extra, Cmd::IsakmpKey(k.into(), net.trunc())))
                }
                // IOS 15 prints the 0.0.0.0 0.0.0.0 wildcard as `address 0.0.0.0`.
                None if a.is_unspecified() => {
                    Some((i + 2, Cmd::IsakmpKey(k.into(), IpNet::new(a, 0).ok()?)))
                }
                None => Some((i + 2, Cmd::IsakmpKey(k.into(), IpNet::from(a)))),
            }
        }
        "identity" => match g(1) {
            "address" => Some((2, Cmd::IsakmpIdentity(Identity::Address))),
            "hostname" => Some((2, Cmd::IsakmpIdentity(Identity::Fqdn))),
            _ => None,
        },
        "keepalive" => {
            let n: u32 = num(g(1))?;
            match num::<u32>(g(2)) {
                Some(r) => {
                    let extra = usize::from(matches!(g(3), "periodic" | "on-demand"));
                    Some((3 + extra, Cmd::IsakmpKeepalive(n, r)))
                }
                None => {
                    let extra = usize::from(matches!(g(2), "periodic" | "on-demand"));
                    Some((2 + extra, Cmd::IsakmpKeepalive(n, 2)))
                }
            }
        }
        "nat" if g(1) == "keepalive" => num(g(2)).map(|n| (3, Cmd::NatKeepalive(n))),
        "profile" if !g(1).is_empty() => Some((2, Cmd::IsakmpProfile(g(1).into()))),
        "aggressive-mode" if g(1) == "disable" => Some((2, Cmd::AggressiveDisable)),
        _ => None,
    }
}

pub(crate) fn crypto_ipsec(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match g(0) {
        "transform-set" if !g(1).is_empty() => {
            let (n, ts) = transforms(&w[2.min(w.len())..])?;
            (!ts.is_empty()).then(|| (2 + n, Cmd::TransformSet(g(1).into(), ts)))
        }
        "profile" if !g(1).is_empty() => Some((2, Cmd::IpsecProfile(g(1).into()))),
        "security-association" => match (g(1), g(2)) {
            ("lifetime", "seconds") => num(g(3)).map(|n| (4, Cmd::GlobalLifetimeSeconds(n))),
            ("lifetime", "kilobytes") => num(g(3)).map(|n| (4, Cmd::GlobalLifetimeKb(n))),
            ("idle-time", t) => num(t).map(|n| (3, Cmd::GlobalIdle(n))),
            _ => None,
        },
        _ => None,
    }
}

/// `set ...` lines of an IPsec profile or crypto map entry.
pub(crate) fn map_sub(w: &[&str], ctx: &Ctx) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match (g(0), g(1)) {
        ("set", "transform-set") => {
            let names: Vec<String> = w[2.min(w.len())..]
                .iter()
                .take_while(|n| !n.is_empty() && !ios_word(n))
                .take(6)
                .map(|s| s.to_string())
                .collect();
            (!names.is_empty()).then(|| (2 + names.len(), Cmd::SetTransformSets(names)))
        }
        ("set", "security-association") => match (g(2), g(3)) {
            ("lifetime", "seconds") => num(g(4)).map(|n| (5, Cmd::SetLifetimeSeconds(n))),
            ("lifetime", "kilobytes") => num(g(4)).map(|n| (5, Cmd::SetLifetimeKb(n))),
            ("idle-time", t) => num(t).map(|n| (4, Cmd::SetIdle(n))),
            _ => None,
        },
        ("set", "pfs") => {
            let grp = g(2).strip_prefix("group").and_then(num::<i64>);
            match grp {
                Some(n) => DhGroup::try_from(n).ok().map(|d| (3, Cmd::SetPfs(d))),
                // `set pfs` alone means group 1 on IOS.
                None => DhGroup::new(1).map(|d| (2, Cmd::SetPfs(d))),
            }
        }
        ("set", "isakmp-profile") if !g(2).is_empty() => {
            Some((3, Cmd::SetIsakmpProfile(g(2).into())))
        }
        ("set", "peer") if matches!(ctx, Ctx::CryptoMap(..)) => {
            ip(g(2)).map(|a| (3, Cmd::SetPeer(a)))
        }
        _ => None,
    }
}

/// `pre-shared-key address A [M] key K` and `pre-shared-key address ipv6 P key K`
/// inside `crypto keyring`.
pub(crate) fn keyring_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    if g(0) != "pre-shared-key" || g(1) != "address" {
        return None;
    }
    let (net, next) = if g(2) == "ipv6" {
        let net: IpNet = g(3).parse().ok().or_else(|| ip(g(3)).map(IpNet::from))?;
        (net, 4)
    } else {
        let a = ip(g(2))?;
        match mask_len(g(3)).and_then(|l| IpNet::new(a, l).ok()) {
            Some(n) => (n.trunc(), 4),
            None if a.is_unspecified() => (IpNet::new(a, 0).ok()?, 3),
            None => (IpNet::from(a), 3),
        }
    };
    if g(next) != "key" || g(next + 1).is_empty() {
        return None;
    }
    Some((next + 2, Cmd::KeyringKey(g(next + 1).to_string(), net)))
}

/// The lines of `crypto isakmp profile` we translate: which peers it
/// covers (`match identity address`, `keyring`) and `initiate mode aggressive`.
pub(crate) fn isakmp_profile_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match (g(0), g(1)) {
        ("keyring", k) if !k.is_empty() => Some((2, Cmd::ProfileKeyring(k.into()))),
        ("initiate", "mode") if g(2) == "aggressive" => Some((3, Cmd::ProfileInitiateAggressive)),
        ("match", "identity") if g(2) == "address" => {
            let a = ip(g(3))?;
            match mask_len(g(4)).and_then(|l| IpNet::new(a, l).ok()) {
                Some(n) => Some((5, Cmd::ProfileMatchAddress(n.trunc()))),
                // `match identity address 0.0.0.0` is the wildcard.
                None if a.is_unspecified() => {
                    Some((4, Cmd::ProfileMatchAddress(IpNet::new(a, 0).ok()?)))
                }
                None => Some((4, Cmd::ProfileMatchAddress(IpNet::from(a)))),
            }
        }
        _ => None,
    }
}

pub(crate) fn policy_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match g(0) {
        // `show run` prints `encr` on IOS 15.
        "encryption" | "encr" => {
            if g(1) == "aes" && matches!(g(2), "128" | "192" | "256") {
                return format!("aes-{}", g(2))
                    .parse()
                    .ok()
                    .map(|e| (3, Cmd::PolEncryption(e)));
            }
            let name = g(1);
            name.parse().ok().map(|e| (2, Cmd::PolEncryption(e)))
        }
        "hash" => g(1).parse().ok().map(|h| (2, Cmd::PolHash(h))),
        "authentication" if !g(1).is_empty() => Some((2, Cmd::PolAuth(g(1) == "pre-share"))),
        "group" => num::<i64>(g(1))
            .and_then(|n| DhGroup::try_from(n).ok())
            .map(|d| (2, Cmd::PolGroup(d))),
        "lifetime" => num(g(1)).map(|n| (2, Cmd::PolLifetime(n))),
        _ => None,
    }
}

pub(crate) fn interface_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match (g(0), g(1)) {
        ("ip", "address") => {
            let a = ip(g(2))?;
            if !a.is_ipv4() {
                return None;
            }
            match mask_len(g(3)) {
                Some(l) => Some((4, Cmd::IpAddress(a, Some(l)))),
                // A mangled mask still tells us the address.
                None if g(3).contains('.') => Some((4, Cmd::IpAddress(a, None))),
                None => None,
            }
        }
        ("ipv6", "address") => {
            let net: IpNet = g(2).parse().ok()?;
            Some((2 + 1 + usize::from(g(3) == "eui-64"), Cmd::Ipv6Address(net)))
        }
        ("ip", "mtu") => num(g(2)).map(|n| (3, Cmd::IpMtu(n))),
        ("ip", "nhrp") => nhrp_sub(&w[2..]).map(|(n, c)| (n + 2, c)),
        // The IPv6 instance's servers and mappings; its other settings
        // are the tunnel's (`ip nhrp`).
        ("ipv6", "nhrp") => match g(2) {
            "nhs" | "map" => nhrp_sub(&w[2..]).map(|(n, c)| (n + 2, c)),
            "" => None,
            _ => Some((w.len(), Cmd::Ipv6NhrpSetting(w[2..].join(" ")))),
        },
        ("tunnel", "source") if !g(2).is_empty() => Some((3, Cmd::TunnelSource(g(2).into()))),
        ("tunnel", "destination") => ip(g(2)).map(|a| (3, Cmd::TunnelDest(a))),
        ("tunnel", "key") => num(g(2)).map(|k| (3, Cmd::TunnelKey(k))),
        ("tunnel", "mode") => match (g(2), g(3)) {
            ("gre", "multipoint") if g(4) == "ipv6" => {
                Some((5, Cmd::TunnelMode(TunnelMode::GreMultipoint, true)))
            }
            ("gre", "multipoint") => Some((4, Cmd::TunnelMode(TunnelMode::GreMultipoint, false))),
            ("gre", "ip") => Some((4, Cmd::TunnelMode(TunnelMode::Gre, false))),
            ("gre", "ipv6") => Some((4, Cmd::TunnelMode(TunnelMode::Gre, true))),
            ("ipsec", "ipv4") => Some((4, Cmd::TunnelMode(TunnelMode::Ipsec, false))),
            ("ipsec", "ipv6") => Some((4, Cmd::TunnelMode(TunnelMode::Ipsec, true))),
            _ => None,
        },
        ("tunnel", "protection") if g(2) == "ipsec" && g(3) == "profile" && !g(4).is_empty() => {
            let extra = usize::from(g(5) == "shared");
            Some((5 + extra, Cmd::TunnelProtection(g(4).into())))
        }
        _ => None,
    }
}

pub(crate) fn nhrp_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match g(0) {
        "authentication" if !g(1).is_empty() => Some((2, Cmd::NhrpAuth(g(1).into()))),
        "network-id" => num(g(1)).map(|n| (2, Cmd::NhrpNetworkId(n))),
        "holdtime" => num(g(1)).map(|n| (2, Cmd::NhrpHoldtime(n))),
        "redirect" => Some((1, Cmd::NhrpRedirect)),
        "shortcut" => Some((1, Cmd::NhrpShortcut)),
        "registration" if g(1) == "timeout" => num(g(2)).map(|n| (3, Cmd::NhrpRegTimeout(n))),
        "registration" if g(1) == "no-unique" => Some((2, Cmd::NhrpRegNoUnique)),
        "max-send" if g(2) == "every" => Some((4, Cmd::NhrpMaxSend(num(g(1))?, num(g(3))?))),
        "map" => match (g(1), g(2)) {
            ("multicast", "dynamic") => Some((3, Cmd::NhrpMapMcastDynamic)),
            ("multicast", a) => ip(a).map(|a| (3, Cmd::NhrpMapMcast(a))),
            (a, b) => Some((3, Cmd::NhrpMap(ip(a)?, ip(b)?))),
        },
        "nhs" => {
            let addr = ip(g(1))?;
            let mut i = 2;
            let (mut nbma, mut multicast, mut priority) = (None, false, 0u8);
            loop {
                match g(i) {
                    "nbma" if ip(g(i + 1)).is_some() => {
                        nbma = ip(g(i + 1));
                        i += 2;
                    }
                    "multicast" => {
                        multicast = true;
                        i += 1;
                    }
                    "priority" if num::<u8>(g(i + 1)).is_some() => {
                        priority = num(g(i + 1)).unwrap_or(0);
                        i += 2;
                    }
                    _ => break,
                }
            }
            Some((
                i,
                Cmd::NhrpNhs {
                    addr,
                    nbma,
                    multicast,
                    priority,
                },
            ))
        }
        _ => None,
    }
}

/// Whether an unmapped config line at top level leaves the current section.
pub(crate) fn leaves_section(first: &str, second: &str, ctx: &Ctx) -> bool {
    if *ctx == Ctx::Routing
        && matches!(
            first,
            "network"
                | "neighbor"
                | "no"
                | "redistribute"
                | "passive-interface"
                | "eigrp"
                | "distribute-list"
                | "summary-address"
                | "area"
                | "router-id"
                | "address-family"
                | "exit-address-family"
                | "auto-summary"
                | "default-information"
                | "metric"
                | "variance"
                | "maximum-paths"
                | "bgp"
                | "timers"
        )
    {
        return false;
    }
    if matches!(ctx, Ctx::Interface(_)) {
        if first == "ip" {
            return matches!(
                second,
                "route"
                    | "http"
                    | "subnet-zero"
                    | "classless"
                    | "domain"
                    | "domain-name"
                    | "name-server"
                    | "cef"
                    | "ssh"
                    | "dhcp"
                    | "access-list"
                    | "forward-protocol"
                    | "host"
                    | "sla"
                    | "vrf"
                    | "multicast-routing"
                    | "prefix-list"
            );
        }
        if matches!(
            first,
            "no" | "ipv6"
                | "description"
                | "duplex"
                | "speed"
                | "tunnel"
                | "bandwidth"
                | "delay"
                | "keepalive"
                | "nameif"
                | "security-level"
                | "media-type"
                | "negotiation"
                | "crypto"
                | "clockrate"
                | "encapsulation"
                | "standby"
                | "switchport"
                | "mtu"
        ) {
            return first == "crypto" && second != "map";
        }
    }
    first != "no" && ios_word(first)
}
