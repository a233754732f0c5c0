//! Translate a Cisco IOS `show running-config` (DMVPN hub or spoke, a
//! `tunnel protection` VTI, or crypto maps as far as they map) into our
//! configuration.
//!
//! IOS defaults are written out with IOS's values (policy: DES, SHA,
//! group 1, 86400 s; SA lifetime 3600 s / 4608000 KB; transform-set mode
//! tunnel; NHRP holdtime 7200) so that the translation means what the
//! router did. Every line that does not map is kept as a comment and
//! reported as a note, never dropped silently.

use crate::ios_lex::{Tok, lex};
use crate::schema::*;
use crate::types::*;
use crate::{Config, Diagnostic};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// Options for [`import_ios`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which router to import when the text holds several (`hostname`).
    pub hostname: Option<String>,
}

/// A note for the operator: a line not imported, or a decision made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// 1-based input line (0 when not tied to a line).
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.text)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The translated configuration.
    pub config: Config,
    /// TOML text: the configuration plus the unmapped lines as comments.
    pub toml: String,
    /// Notes for stderr: unmapped lines, defaults applied, other routers.
    pub notes: Vec<Note>,
    /// Host names (or `router#N`) of every router found, in input order.
    pub routers: Vec<String>,
    /// Index into `routers` of the one imported.
    pub selected: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no IOS router configuration found (expected `interface Tunnel…`, `crypto isakmp …`, `crypto ipsec …` or `crypto map …` commands)"
    )]
    NothingFound,
    #[error("no router with hostname `{wanted}` in the input (found: {})", .found.join(", "))]
    NoSuchHost { wanted: String, found: Vec<String> },
    #[error("the translation does not validate:\n{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

// ---------------------------------------------------------------------
// Commands the importer understands.

#[derive(Debug, Clone)]
enum Cmd {
    Hostname(String),
    End,
    Interface(String),
    Shutdown(bool),
    IpAddress(IpAddr, Option<u8>),
    Ipv6Address(IpNet),
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
    TunnelSource(String),
    TunnelDest(IpAddr),
    TunnelMode(TunnelMode),
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
    IpRoute(IpNet, String),
    Routing(String),
    /// A negated command we recognise but do not map (`no ip nhrp shortcut`).
    Negated,
    /// A command we recognise as one unit but do not map.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Ctx {
    Top,
    Interface(String),
    Policy(u16),
    TransformSet(String),
    Profile(String),
    CryptoMap(String, u32),
    TunnelGroup(String),
    Keyring(String),
    Routing,
    Other,
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn mask_len(s: &str) -> Option<u8> {
    let m: Ipv4Addr = s.parse().ok()?;
    let v = u32::from(m);
    let len = v.leading_ones();
    (v.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// IOS interface names may be abbreviated (`Tu0`) or split (`Tunnel 0`).
fn canonical_ifname(name: &str) -> String {
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

fn is_tunnel_if(name: &str) -> bool {
    name.starts_with("Tunnel")
}

/// Words that start IOS/ASA configuration lines; used to tell a config
/// line we do not map from prose around the configuration.
const IOS_WORDS: &[&str] = &[
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

fn ios_word(w: &str) -> bool {
    IOS_WORDS.contains(&w)
}

/// Parses a transform list (`esp-aes 256 esp-sha-hmac`); returns the
/// number of words used and the transforms (unknown transforms end it).
fn transforms(w: &[&str]) -> Option<(usize, Vec<Transform>)> {
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
fn match_cmd(w: &[&str], ctx: &Ctx) -> Option<(usize, Cmd)> {
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
        ("ip", "route") => {
            let pfx = ip(g(2)).zip(mask_len(g(3)));
            if let Some((a, len)) = pfx
                && let Ok(net) = IpNet::new(a, len)
                && !g(4).is_empty()
            {
                return Some((5, Cmd::IpRoute(net, g(4).to_string())));
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
        Ctx::TunnelGroup(_) => match (g(0), g(1)) {
            ("pre-shared-key", k) if !k.is_empty() => Some((2, Cmd::PreSharedKey(k.into()))),
            _ => None,
        },
        _ => None,
    }
}

fn crypto_isakmp(w: &[&str]) -> Option<(usize, Cmd)> {
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
        "aggressive-mode" if g(1) == "disable" => Some((2, Cmd::AggressiveDisable)),
        _ => None,
    }
}

fn crypto_ipsec(w: &[&str]) -> Option<(usize, Cmd)> {
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
fn map_sub(w: &[&str], ctx: &Ctx) -> Option<(usize, Cmd)> {
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
        ("set", "peer") if matches!(ctx, Ctx::CryptoMap(..)) => {
            ip(g(2)).map(|a| (3, Cmd::SetPeer(a)))
        }
        _ => None,
    }
}

/// `pre-shared-key address A [M] key K` and `pre-shared-key address ipv6 P key K`
/// inside `crypto keyring`.
fn keyring_sub(w: &[&str]) -> Option<(usize, Cmd)> {
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

fn policy_sub(w: &[&str]) -> Option<(usize, Cmd)> {
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

fn interface_sub(w: &[&str]) -> Option<(usize, Cmd)> {
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
        ("tunnel", "source") if !g(2).is_empty() => Some((3, Cmd::TunnelSource(g(2).into()))),
        ("tunnel", "destination") => ip(g(2)).map(|a| (3, Cmd::TunnelDest(a))),
        ("tunnel", "key") => num(g(2)).map(|k| (3, Cmd::TunnelKey(k))),
        ("tunnel", "mode") => match (g(2), g(3)) {
            ("gre", "multipoint") => Some((4, Cmd::TunnelMode(TunnelMode::GreMultipoint))),
            ("gre", "ip") | ("gre", "ipv6") => Some((4, Cmd::TunnelMode(TunnelMode::Gre))),
            ("ipsec", "ipv4") | ("ipsec", "ipv6") => Some((4, Cmd::TunnelMode(TunnelMode::Ipsec))),
            _ => None,
        },
        ("tunnel", "protection") if g(2) == "ipsec" && g(3) == "profile" && !g(4).is_empty() => {
            let extra = usize::from(g(5) == "shared");
            Some((5 + extra, Cmd::TunnelProtection(g(4).into())))
        }
        _ => None,
    }
}

fn nhrp_sub(w: &[&str]) -> Option<(usize, Cmd)> {
    let g = |i: usize| w.get(i).copied().unwrap_or("");
    match g(0) {
        "authentication" if !g(1).is_empty() => Some((2, Cmd::NhrpAuth(g(1).into()))),
        "network-id" => num(g(1)).map(|n| (2, Cmd::NhrpNetworkId(n))),
        "holdtime" => num(g(1)).map(|n| (2, Cmd::NhrpHoldtime(n))),
        "redirect" => Some((1, Cmd::NhrpRedirect)),
        "shortcut" => Some((1, Cmd::NhrpShortcut)),
        "registration" if g(1) == "timeout" => num(g(2)).map(|n| (3, Cmd::NhrpRegTimeout(n))),
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
fn leaves_section(first: &str, second: &str, ctx: &Ctx) -> bool {
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

// ---------------------------------------------------------------------
// Collecting commands per router.

#[derive(Debug, Default, Clone)]
struct IfState {
    line: usize,
    shutdown: bool,
    address: Option<(IpAddr, Option<u8>)>,
    ipv6: Option<IpNet>,
    mtu: Option<u16>,
    nhrp_auth: Option<String>,
    network_id: Option<u32>,
    holdtime: Option<u32>,
    map_mcast_dynamic: bool,
    mcast: Vec<IpAddr>,
    maps: Vec<(IpAddr, IpAddr)>,
    nhs: Vec<(IpAddr, Option<IpAddr>, bool, u8)>,
    redirect: bool,
    shortcut: bool,
    reg_timeout: Option<u32>,
    source: Option<String>,
    dest: Option<IpAddr>,
    mode: Option<TunnelMode>,
    key: Option<u32>,
    protection: Option<(String, usize)>,
    has_nhrp: bool,
}

#[derive(Debug, Default, Clone)]
struct PolState {
    line: usize,
    enc: Option<IkeEncryption>,
    hash: Option<IkeHash>,
    preshare: Option<bool>,
    group: Option<DhGroup>,
    lifetime: Option<u32>,
}

#[derive(Debug, Default, Clone)]
struct ProfState {
    line: usize,
    sets: Vec<String>,
    secs: Option<u32>,
    kb: Option<u64>,
    idle: Option<u32>,
    pfs: Option<DhGroup>,
    peers: Vec<IpAddr>,
}

#[derive(Debug, Default, Clone)]
struct Router {
    hostname: Option<String>,
    prompt: Option<String>,
    first_line: usize,
    interfaces: BTreeMap<String, IfState>,
    if_order: Vec<String>,
    policies: BTreeMap<u16, PolState>,
    keys: Vec<(String, IpNet, usize)>,
    identity: Option<Identity>,
    keepalive: Option<(u32, u32)>,
    nat_keepalive: Option<u32>,
    natt_off: bool,
    aggressive_disabled: bool,
    tsets: Vec<(String, Vec<Transform>, Option<EspMode>, usize)>,
    profiles: Vec<(String, ProfState)>,
    maps: Vec<((String, u32), ProfState)>,
    g_secs: Option<u32>,
    g_kb: Option<u64>,
    g_idle: Option<u32>,
    routes: Vec<(IpNet, String, usize)>,
    unmapped: Vec<Note>,
    mapped: usize,
}

impl Router {
    fn name(&self, idx: usize) -> String {
        self.hostname
            .clone()
            .or_else(|| self.prompt.clone())
            .unwrap_or_else(|| format!("router#{}", idx + 1))
    }
    /// Whether it holds anything we translate.
    fn importable(&self) -> bool {
        self.interfaces.keys().any(|k| is_tunnel_if(k))
            || !self.policies.is_empty()
            || !self.profiles.is_empty()
            || !self.keys.is_empty()
            || !self.maps.is_empty()
    }
    fn defines(&self, c: &Cmd) -> bool {
        match c {
            Cmd::Interface(n) => self
                .interfaces
                .get(n)
                .is_some_and(|i| i.address.is_some() || i.source.is_some()),
            Cmd::IsakmpPolicy(n) => self.policies.contains_key(n),
            Cmd::TransformSet(n, _) => self.tsets.iter().any(|t| &t.0 == n),
            Cmd::IpsecProfile(n) => self.profiles.iter().any(|p| &p.0 == n),
            Cmd::Hostname(_) => self.hostname.is_some(),
            _ => false,
        }
    }
}

struct Collector {
    routers: Vec<Router>,
    cur: Router,
    ctx: Ctx,
    /// The last prompt seen; names the next router without `hostname`.
    prompt: Option<String>,
    prose_lines: Vec<usize>,
}

impl Collector {
    fn finish_router(&mut self) {
        let r = std::mem::take(&mut self.cur);
        if r.mapped > 0 || r.hostname.is_some() {
            self.routers.push(r);
        }
        self.ctx = Ctx::Top;
    }

    fn apply(&mut self, c: Cmd, line: usize) {
        if self.cur.defines(&c) {
            self.finish_router();
        }
        if self.cur.mapped == 0 && self.cur.hostname.is_none() {
            self.cur.first_line = line;
            self.cur.prompt = self.prompt.take();
        }
        self.cur.mapped += 1;
        let r = &mut self.cur;
        let iface = match &self.ctx {
            Ctx::Interface(n) => Some(n.clone()),
            _ => None,
        };
        macro_rules! ifs {
            () => {
                match iface.as_ref().and_then(|n| r.interfaces.get_mut(n)) {
                    Some(s) => s,
                    None => return,
                }
            };
        }
        match c {
            Cmd::Hostname(h) => {
                r.hostname = Some(h);
                self.ctx = Ctx::Top;
            }
            Cmd::End => self.finish_router(),
            Cmd::Interface(n) => {
                if !r.interfaces.contains_key(&n) {
                    r.if_order.push(n.clone());
                }
                r.interfaces.entry(n.clone()).or_default().line = line;
                self.ctx = Ctx::Interface(n);
            }
            Cmd::Shutdown(s) => ifs!().shutdown = s,
            Cmd::IpAddress(a, l) => ifs!().address = Some((a, l)),
            Cmd::Ipv6Address(n) => {
                if !matches!(n.addr(), IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80) {
                    ifs!().ipv6 = Some(n)
                }
            }
            Cmd::IpMtu(m) => ifs!().mtu = Some(m),
            Cmd::NhrpAuth(s) => {
                let i = ifs!();
                i.nhrp_auth = Some(s);
                i.has_nhrp = true;
            }
            Cmd::NhrpNetworkId(n) => {
                let i = ifs!();
                i.network_id = Some(n);
                i.has_nhrp = true;
            }
            Cmd::NhrpHoldtime(n) => ifs!().holdtime = Some(n),
            Cmd::NhrpMapMcastDynamic => ifs!().map_mcast_dynamic = true,
            Cmd::NhrpMapMcast(a) => ifs!().mcast.push(a),
            Cmd::NhrpMap(a, b) => ifs!().maps.push((a, b)),
            Cmd::NhrpNhs {
                addr,
                nbma,
                multicast,
                priority,
            } => ifs!().nhs.push((addr, nbma, multicast, priority)),
            Cmd::NhrpRedirect => ifs!().redirect = true,
            Cmd::NhrpShortcut => ifs!().shortcut = true,
            Cmd::NhrpRegTimeout(n) => ifs!().reg_timeout = Some(n),
            Cmd::TunnelSource(s) => ifs!().source = Some(s),
            Cmd::TunnelDest(a) => ifs!().dest = Some(a),
            Cmd::TunnelMode(m) => ifs!().mode = Some(m),
            Cmd::TunnelKey(k) => ifs!().key = Some(k),
            Cmd::TunnelProtection(p) => ifs!().protection = Some((p, line)),
            Cmd::IsakmpPolicy(n) => {
                r.policies.insert(
                    n,
                    PolState {
                        line,
                        ..Default::default()
                    },
                );
                self.ctx = Ctx::Policy(n);
            }
            Cmd::PolEncryption(_)
            | Cmd::PolHash(_)
            | Cmd::PolAuth(_)
            | Cmd::PolGroup(_)
            | Cmd::PolLifetime(_) => {
                let Ctx::Policy(n) = self.ctx else { return };
                let Some(p) = r.policies.get_mut(&n) else {
                    return;
                };
                match c {
                    Cmd::PolEncryption(e) => p.enc = Some(e),
                    Cmd::PolHash(h) => p.hash = Some(h),
                    Cmd::PolAuth(a) => p.preshare = Some(a),
                    Cmd::PolGroup(g) => p.group = Some(g),
                    Cmd::PolLifetime(l) => p.lifetime = Some(l),
                    _ => {}
                }
            }
            Cmd::IsakmpKey(k, net) => {
                r.keys.push((k, net, line));
                self.ctx = Ctx::Top;
            }
            Cmd::IsakmpIdentity(i) => r.identity = Some(i),
            Cmd::IsakmpKeepalive(a, b) => r.keepalive = Some((a, b)),
            Cmd::NatKeepalive(n) => r.nat_keepalive = Some(n),
            Cmd::NatTraversalOff => r.natt_off = true,
            Cmd::AggressiveDisable => r.aggressive_disabled = true,
            Cmd::TransformSet(n, ts) => {
                r.tsets.push((n.clone(), ts, None, line));
                self.ctx = Ctx::TransformSet(n);
            }
            Cmd::TsMode(m) => {
                if let Ctx::TransformSet(n) = &self.ctx
                    && let Some(t) = r.tsets.iter_mut().find(|t| &t.0 == n)
                {
                    t.2 = Some(m);
                }
            }
            Cmd::IpsecProfile(n) => {
                r.profiles.push((
                    n.clone(),
                    ProfState {
                        line,
                        ..Default::default()
                    },
                ));
                self.ctx = Ctx::Profile(n);
            }
            Cmd::CryptoMap(n, seq) => {
                if !r.maps.iter().any(|m| m.0 == (n.clone(), seq)) {
                    r.maps.push((
                        (n.clone(), seq),
                        ProfState {
                            line,
                            ..Default::default()
                        },
                    ));
                }
                self.ctx = Ctx::CryptoMap(n, seq);
            }
            Cmd::CryptoMapLine(n, seq, sub) => {
                let saved = std::mem::replace(&mut self.ctx, Ctx::Top);
                self.apply(Cmd::CryptoMap(n, seq), line);
                self.apply(*sub, line);
                self.cur.mapped -= 2;
                self.ctx = if matches!(saved, Ctx::CryptoMap(..)) {
                    Ctx::Top
                } else {
                    saved
                };
            }
            Cmd::SetTransformSets(_)
            | Cmd::SetLifetimeSeconds(_)
            | Cmd::SetLifetimeKb(_)
            | Cmd::SetIdle(_)
            | Cmd::SetPfs(_)
            | Cmd::SetPeer(_) => {
                let p = match &self.ctx {
                    Ctx::Profile(n) => r.profiles.iter_mut().find(|p| &p.0 == n).map(|p| &mut p.1),
                    Ctx::CryptoMap(n, s) => r
                        .maps
                        .iter_mut()
                        .find(|m| m.0.0 == *n && m.0.1 == *s)
                        .map(|m| &mut m.1),
                    _ => None,
                };
                let Some(p) = p else { return };
                match c {
                    Cmd::SetTransformSets(s) => p.sets = s,
                    Cmd::SetLifetimeSeconds(s) => p.secs = Some(s),
                    Cmd::SetLifetimeKb(s) => p.kb = Some(s),
                    Cmd::SetIdle(s) => p.idle = Some(s),
                    Cmd::SetPfs(g) => p.pfs = Some(g),
                    Cmd::SetPeer(a) => p.peers.push(a),
                    _ => {}
                }
            }
            Cmd::GlobalLifetimeSeconds(s) => r.g_secs = Some(s),
            Cmd::GlobalLifetimeKb(s) => r.g_kb = Some(s),
            Cmd::GlobalIdle(s) => r.g_idle = Some(s),
            Cmd::TunnelGroup(p) => self.ctx = Ctx::TunnelGroup(p),
            Cmd::Keyring(k) => self.ctx = Ctx::Keyring(k),
            Cmd::KeyringKey(k, net) => {
                if let Ctx::Keyring(name) = &self.ctx
                    && name != "default"
                {
                    r.unmapped.push(Note {
                            line,
                            text: format!("keyring `{name}` keys are imported as global keys (no per-profile keyrings)"),
                        });
                }
                r.keys.push((k, net, line));
            }
            Cmd::PreSharedKey(k) => {
                if let Ctx::TunnelGroup(p) = &self.ctx {
                    match ip(p) {
                        Some(a) => r.keys.push((k, IpNet::from(a), line)),
                        None => r.unmapped.push(Note {
                            line,
                            text: format!(
                                "not imported: tunnel-group {p} pre-shared-key (group names are not peers; add an [[ike.key]] by address)"
                            ),
                        }),
                    }
                }
            }
            Cmd::IpRoute(net, via) => {
                r.routes.push((net, via, line));
                self.ctx = Ctx::Top;
            }
            Cmd::Routing(s) => {
                r.mapped -= 1;
                r.unmapped.push(Note {
                    line,
                    text: format!("not imported: {s} (routing protocols are not ours; run FRR or bird next to dmvpnd)"),
                });
                self.ctx = Ctx::Routing;
            }
            Cmd::Negated => {}
            Cmd::Unsupported(text) => {
                r.mapped -= 1;
                r.unmapped.push(Note {
                    line,
                    text: format!("not imported: {text}"),
                });
                self.ctx = Ctx::Top;
            }
        }
    }

    fn unmapped(&mut self, words: &[&str], line: usize, ctx_before: &Ctx) {
        let text = words.join(" ");
        let where_ = match ctx_before {
            Ctx::Interface(n) => format!(" (interface {n})"),
            Ctx::Routing => " (routing protocol section)".to_string(),
            _ => String::new(),
        };
        self.cur.unmapped.push(Note {
            line,
            text: format!("not imported: {text}{where_}"),
        });
    }
}

/// Walks the word stream, matching commands.
fn collect(toks: &[Tok]) -> Collector {
    let mut c = Collector {
        routers: Vec::new(),
        cur: Router::default(),
        ctx: Ctx::Top,
        prompt: None,
        prose_lines: Vec::new(),
    };
    let mut pos = 0;
    // Whether the previous word ended a matched command in the same segment.
    let mut after_cmd = false;
    // Whether an unmapped fragment just stopped because a command starts here.
    let mut resume = false;
    while pos < toks.len() {
        let t = &toks[pos];
        if t.prompt {
            c.prompt = Some(t.text.clone());
            pos += 1;
            after_cmd = false;
            continue;
        }
        let may_start = (t.seg_start && !t.prose) || after_cmd || resume || t.after_stop;
        resume = false;
        if may_start
            && let Some(n) = try_at(toks, pos, &c.ctx).filter(|n| plausible(toks, pos, n.0, &c.ctx))
        {
            let words: Vec<&str> = toks[pos..pos + n.0]
                .iter()
                .map(|t| t.text.as_str())
                .collect();
            if let Some((_, cmd)) = match_cmd(&words, &c.ctx) {
                c.apply(cmd, t.line);
            }
            pos += n.0;
            after_cmd = pos < toks.len() && toks[pos].seg == toks[pos - 1].seg;
            continue;
        }
        // Not a command here: gather an unmapped fragment up to the end of
        // the segment or the next place a command matches.
        let start = pos;
        let is_config = !t.prose && (ios_word(&t.text) || after_cmd || !t.seg_start);
        pos += 1;
        while pos < toks.len() && toks[pos].seg == t.seg {
            let u = &toks[pos];
            let strong = is_config || u.after_stop;
            if strong
                && try_at(toks, pos, &c.ctx).is_some_and(|n| plausible(toks, pos, n.0, &c.ctx))
            {
                resume = true;
                break;
            }
            pos += 1;
        }
        let words: Vec<&str> = toks[start..pos].iter().map(|t| t.text.as_str()).collect();
        // Configuration lines do not end a sentence.
        let sentence = t.seg_start && words.last().is_some_and(|w| w.ends_with('.'));
        if is_config && !sentence {
            if leaves_section(words[0], words.get(1).copied().unwrap_or(""), &c.ctx)
                && !matches!(c.ctx, Ctx::Routing if !t.seg_start)
            {
                c.ctx = if words[0] == "router" {
                    Ctx::Routing
                } else {
                    Ctx::Other
                };
            }
            let ctx_now = c.ctx.clone();
            c.unmapped(&words, t.line, &ctx_now);
        } else {
            c.prose_lines.push(t.line);
        }
        after_cmd = false;
    }
    c.finish_router();
    c
}

/// A match is believable if it ends its segment or is followed by
/// something that looks like configuration (prose such as "hostname of
/// the client" is not).
fn plausible(toks: &[Tok], pos: usize, n: usize, ctx: &Ctx) -> bool {
    let end = pos + n;
    if end >= toks.len() || toks[end].seg != toks[end - 1].seg {
        return true;
    }
    let next = toks[end].text.as_str();
    ios_word(next) || try_at(toks, end, ctx).is_some() || try_at(toks, end, &Ctx::Top).is_some()
}

/// Tries to match a command at `pos`, allowing its arguments to continue
/// on the next line when the command is incomplete or the next line does
/// not start a command of its own. Returns the number of words used.
fn try_at(toks: &[Tok], pos: usize, ctx: &Ctx) -> Option<(usize,)> {
    let seg = toks[pos].seg;
    let own_end = toks[pos..]
        .iter()
        .position(|t| t.seg != seg)
        .map_or(toks.len(), |p| pos + p);
    let own: Vec<&str> = toks[pos..own_end].iter().map(|t| t.text.as_str()).collect();
    let own_match = match_cmd(&own, ctx).map(|m| m.0);
    // Continuation: the next segment starts a new physical line, is not
    // an annotation and does not begin with a command itself.
    let next_ok = own_end < toks.len()
        && toks[own_end].line_start
        && !toks[own_end].prose
        && !toks[own_end].prompt
        && toks[own_end].line == toks[own_end - 1].line + 1;
    let full_own = own_match.is_none_or(|n| n == own.len());
    if next_ok && full_own {
        let next_seg = toks[own_end].seg;
        let next_end = toks[own_end..]
            .iter()
            .position(|t| t.seg != next_seg)
            .map_or(toks.len(), |p| own_end + p);
        let next_words: Vec<&str> = toks[own_end..next_end]
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        let next_is_cmd = match_cmd(&next_words, ctx).is_some()
            || match_cmd(&next_words, &Ctx::Top).is_some()
            || ios_word(next_words[0]);
        if !next_is_cmd {
            let mut ext = own.clone();
            ext.extend(next_words.iter());
            if let Some((n, _)) = match_cmd(&ext, ctx)
                && n > own.len()
            {
                return Some((n,));
            }
        }
    }
    own_match.map(|n| (n,))
}

// ---------------------------------------------------------------------
// Building our configuration from one router.

fn linux_ifname(ios: &str) -> String {
    // FastEthernet0/0 -> fa0-0: short, and a valid Linux name.
    let split = ios.find(|c: char| c.is_ascii_digit()).unwrap_or(ios.len());
    let (kind, rest) = ios.split_at(split);
    let mut s: String = kind
        .chars()
        .take(2)
        .collect::<String>()
        .to_ascii_lowercase();
    s.push_str(&rest.replace(['/', ':', '.'], "-"));
    s.retain(|c| c.is_ascii_graphic());
    s.truncate(15);
    if s.is_empty() { "eth0".into() } else { s }
}

fn sanitize_hostname(h: &str) -> String {
    let s: String = h
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect();
    if s.is_empty() { "router".into() } else { s }
}

struct Builder<'a> {
    r: &'a Router,
    notes: Vec<Note>,
}

impl Builder<'_> {
    fn note(&mut self, line: usize, text: impl Into<String>) {
        self.notes.push(Note {
            line,
            text: text.into(),
        });
    }

    fn build(&mut self) -> Config {
        let r = self.r;
        let name = sanitize_hostname(
            r.hostname
                .as_deref()
                .or(r.prompt.as_deref())
                .unwrap_or("router"),
        );
        if r.hostname.is_none() {
            self.note(
                r.first_line,
                format!("no `hostname` line; node named `{name}`"),
            );
        }
        let (ipsec, profile_names) = self.ipsec();
        let ike = self.ike();
        let tunnels = self.tunnels(&profile_names);
        let role = if tunnels
            .iter()
            .any(|t| t.nhrp.as_ref().is_some_and(|n| !n.nhs.is_empty()))
        {
            Role::Spoke
        } else if tunnels.iter().any(|t| t.mode == TunnelMode::GreMultipoint) {
            Role::Hub
        } else {
            Role::Spoke
        };
        Config {
            node: Node { name, role },
            control: Control::default(),
            log: Log::default(),
            ike,
            ipsec,
            tunnels,
        }
    }

    fn ike(&mut self) -> Ike {
        let r = self.r;
        let mut policies = Vec::new();
        for (prio, p) in &r.policies {
            if p.preshare != Some(true) {
                let how = if p.preshare.is_none() {
                    "authentication rsa-sig (the IOS default)"
                } else {
                    "a non-pre-share authentication"
                };
                self.note(p.line, format!("not imported: crypto isakmp policy {prio} uses {how}; only pre-shared keys are supported"));
                continue;
            }
            if !(1..=10000).contains(prio) {
                self.note(
                    p.line,
                    format!("not imported: crypto isakmp policy {prio} (priority out of range)"),
                );
                continue;
            }
            let lifetime = p.lifetime.unwrap_or(86400).clamp(60, 86400);
            // IOS defaults for an unset attribute: DES, SHA, group 1, 86400 s.
            policies.push(IsakmpPolicy {
                priority: *prio,
                encryption: p.enc.unwrap_or(IkeEncryption::Des),
                hash: p.hash.unwrap_or(IkeHash::Sha1),
                authentication: IkeAuth::PreShare,
                group: p.group.unwrap_or(DhGroup::new(1).expect("group 1")),
                lifetime,
            });
        }
        if policies.is_empty() {
            self.note(0, "no usable crypto isakmp policy; the native default policy (aes-256, sha256, group 14) is written instead");
            policies = crate::defaults::ike_policies();
        }
        let mut keys: Vec<PreSharedKey> = Vec::new();
        for (k, net, line) in &r.keys {
            if k.chars().all(|c| c == '*') {
                self.note(
                    *line,
                    "not imported: pre-shared key is masked (*****) in this output; add it by hand",
                );
                continue;
            }
            if keys.iter().any(|p| p.peer == *net) {
                self.note(
                    *line,
                    format!("not imported: second key for {net} (IOS uses the first)"),
                );
                continue;
            }
            keys.push(PreSharedKey {
                peer: *net,
                key: Secret::new(k.clone()),
            });
        }
        let dpd = r.keepalive.map(|(interval, retry)| Dpd {
            interval: interval.clamp(10, 3600),
            retry_interval: retry.clamp(2, 60),
            retries: crate::defaults::DPD_RETRIES,
        });
        Ike {
            identity: r.identity.unwrap_or(Identity::Address),
            fqdn: None,
            // IOS answers Aggressive Mode unless told not to.
            aggressive_mode: !r.aggressive_disabled,
            dpd,
            nat_traversal: NatT {
                mode: if r.natt_off {
                    NatTraversal::Off
                } else {
                    NatTraversal::Auto
                },
                keepalive: r
                    .nat_keepalive
                    .map(|k| if k == 0 { 0 } else { k.clamp(5, 3600) })
                    .unwrap_or(0),
            },
            policies,
            keys,
        }
    }

    /// Transform sets, profiles (IPsec profiles and crypto map entries).
    fn ipsec(&mut self) -> (Ipsec, Vec<String>) {
        let r = self.r;
        let mut out = Ipsec::default();
        for (name, ts, mode, line) in &r.tsets {
            let has_cipher = ts.iter().any(|t| t.kind() != TransformKind::Integrity);
            if !has_cipher || out.transform_sets.iter().any(|t| &t.name == name) {
                self.note(
                    *line,
                    format!("not imported: transform-set {name} (no ESP cipher, or defined twice)"),
                );
                continue;
            }
            out.transform_sets.push(TransformSet {
                name: name.clone(),
                transforms: ts.clone(),
                // IOS default mode is tunnel.
                mode: mode.unwrap_or(EspMode::Tunnel),
            });
        }
        let mut entries: Vec<(String, &ProfState, bool)> = r
            .profiles
            .iter()
            .map(|(n, p)| (n.clone(), p, false))
            .collect();
        for ((n, seq), p) in &r.maps {
            entries.push((format!("{n}-{seq}"), p, true));
        }
        let mut names = Vec::new();
        for (name, p, is_map) in entries {
            let mut sets = Vec::new();
            for s in &p.sets {
                if out.transform_sets.iter().any(|t| &t.name == s) {
                    sets.push(s.clone());
                } else {
                    self.note(
                        p.line,
                        format!("transform set `{s}` used by `{name}` is not defined; left out"),
                    );
                }
            }
            if sets.is_empty() && p.sets.is_empty() && !is_map {
                // IOS 15 default transform sets.
                for (n, t) in [
                    (
                        "ios-default-1",
                        vec![Transform::EspAes(128), Transform::EspShaHmac],
                    ),
                    (
                        "ios-default-0",
                        vec![Transform::Esp3des, Transform::EspShaHmac],
                    ),
                ] {
                    if !out.transform_sets.iter().any(|x| x.name == n) {
                        out.transform_sets.push(TransformSet {
                            name: n.into(),
                            transforms: t,
                            mode: EspMode::Transport,
                        });
                    }
                    sets.push(n.into());
                }
                self.note(p.line, format!("profile `{name}` has no `set transform-set`; IOS's default transform sets are written out"));
            }
            if sets.is_empty() {
                self.note(
                    p.line,
                    format!("not imported: `{name}` (no usable transform set)"),
                );
                continue;
            }
            if is_map {
                let peers: Vec<String> = p.peers.iter().map(|a| a.to_string()).collect();
                self.note(p.line, format!(
                    "crypto map entry imported as IPsec profile `{name}`; its ACL selectors and peers [{}] have no equivalent (use a tunnel with protection = \"{name}\")",
                    peers.join(", ")
                ));
            }
            out.profiles.push(IpsecProfile {
                name: name.clone(),
                transform_sets: sets,
                lifetime_seconds: p.secs.or(r.g_secs).unwrap_or(3600).clamp(120, 2_592_000),
                lifetime_kilobytes: p
                    .kb
                    .or(r.g_kb)
                    .unwrap_or(4_608_000)
                    .clamp(2560, u32::MAX as u64),
                pfs: p.pfs,
                idle_time: p.idle.or(r.g_idle).map(|i| i.clamp(60, 86400)),
            });
            names.push(name);
        }
        (out, names)
    }

    fn tunnels(&mut self, profiles: &[String]) -> Vec<Tunnel> {
        let r = self.r;
        let mut out = Vec::new();
        for name in &r.if_order {
            let Some(i) = r.interfaces.get(name) else {
                continue;
            };
            if !is_tunnel_if(name) {
                continue;
            }
            if i.shutdown {
                self.note(
                    i.line,
                    format!("not imported: interface {name} is shut down"),
                );
                continue;
            }
            let address = match (i.address, i.ipv6) {
                (Some((a, Some(l))), _) => IpNet::new(a, l).ok(),
                (_, Some(n)) => Some(n),
                _ => None,
            };
            let Some(address) = address else {
                self.note(
                    i.line,
                    format!("not imported: interface {name} has no usable `ip address`"),
                );
                continue;
            };
            let mode = i.mode.unwrap_or(TunnelMode::Gre);
            if mode != TunnelMode::GreMultipoint && i.dest.is_none() {
                self.note(i.line, format!("not imported: interface {name} is point-to-point without `tunnel destination`"));
                continue;
            }
            let source = match i.source.as_deref() {
                None => {
                    self.note(
                        i.line,
                        format!("not imported: interface {name} has no `tunnel source`"),
                    );
                    continue;
                }
                Some(s) => match ip(s) {
                    Some(a) => TunnelSource::Address(a),
                    None => {
                        let ifn = canonical_ifname(s);
                        let want_v6 = i.dest.is_some_and(|d| d.is_ipv6());
                        let src_if = r.interfaces.get(&ifn);
                        let addr = src_if.and_then(|x| {
                            if want_v6 {
                                x.ipv6.map(|n| n.addr())
                            } else {
                                x.address.map(|a| a.0)
                            }
                        });
                        match addr {
                            Some(a) => TunnelSource::Address(a),
                            None => {
                                let l = linux_ifname(&ifn);
                                self.note(i.line, format!("tunnel source {ifn} written as interface \"{l}\"; rename it to the Linux interface"));
                                TunnelSource::Interface(l)
                            }
                        }
                    }
                },
            };
            let protection = match &i.protection {
                Some((p, _)) if profiles.contains(p) => Some(p.clone()),
                Some((p, line)) => {
                    self.note(*line, format!("not imported: tunnel protection ipsec profile {p} (profile not defined or not importable)"));
                    if mode == TunnelMode::Ipsec {
                        self.note(
                            i.line,
                            format!(
                                "not imported: interface {name} (an IPsec VTI needs its profile)"
                            ),
                        );
                        continue;
                    }
                    None
                }
                None => None,
            };
            let overhead = match mode {
                TunnelMode::Ipsec => 0,
                _ => 24 + if i.key.is_some() { 4 } else { 0 },
            };
            let mtu = match i.mtu {
                Some(m) => m.clamp(576, 9000),
                None => {
                    let m = 1500 - overhead;
                    self.note(
                        i.line,
                        format!("{name}: no `ip mtu`; IOS's derived MTU {m} written"),
                    );
                    m
                }
            };
            let nhrp = if mode == TunnelMode::Ipsec {
                None
            } else if i.has_nhrp || mode == TunnelMode::GreMultipoint {
                let Some(network_id) = i.network_id.filter(|n| *n > 0) else {
                    self.note(i.line, format!("not imported: interface {name} has no `ip nhrp network-id` (NHRP is off on it in IOS)"));
                    continue;
                };
                let mut auth = i.nhrp_auth.clone();
                if let Some(a) = auth.as_mut().filter(|a| a.len() > 8) {
                    a.truncate(8);
                    self.note(i.line, "NHRP authentication longer than 8 characters; IOS uses the first 8, written so");
                }
                let nhs = i
                    .nhs
                    .iter()
                    .map(|(addr, nbma, multicast, priority)| Nhs {
                        address: *addr,
                        nbma: nbma.or_else(|| i.maps.iter().find(|m| m.0 == *addr).map(|m| m.1)),
                        priority: *priority,
                        multicast: *multicast,
                    })
                    .collect();
                Some(Nhrp {
                    network_id,
                    authentication: auth.map(Secret::new),
                    holdtime: i.holdtime.unwrap_or(7200).clamp(1, 65535),
                    map_multicast_dynamic: i.map_mcast_dynamic,
                    multicast: i.mcast.clone(),
                    redirect: i.redirect,
                    shortcut: i.shortcut,
                    registration_timeout: i.reg_timeout,
                    nhs,
                    map: i
                        .maps
                        .iter()
                        .map(|(a, b)| NhrpMap {
                            address: *a,
                            nbma: *b,
                        })
                        .collect(),
                })
            } else {
                None
            };
            out.push(Tunnel {
                name: name.clone(),
                address,
                mtu,
                source,
                mode,
                destination: if mode == TunnelMode::GreMultipoint {
                    None
                } else {
                    i.dest
                },
                key: if mode == TunnelMode::Ipsec {
                    None
                } else {
                    i.key
                },
                protection,
                routes: Vec::new(),
                nhrp,
            });
        }
        for (net, via, line) in &r.routes {
            let via_if = canonical_ifname(via);
            let target = out.iter_mut().position(|t| {
                t.name == via_if || ip(via).is_some_and(|nh| t.address.contains(&nh))
            });
            match target {
                Some(ti) => {
                    let t = &mut out[ti];
                    if !t.routes.contains(&net.trunc()) {
                        t.routes.push(net.trunc());
                    }
                }
                None if ip(via).is_none() && is_tunnel_if(&via_if) => self.note(
                    *line,
                    format!("not imported: ip route {net} {via} ({via_if} is not an imported tunnel)"),
                ),
                None => self.note(
                    *line,
                    format!("not imported: ip route {net} {via} (not via an imported tunnel; underlay routes are the host's business)"),
                ),
            }
        }
        out
    }
}

/// Translates IOS configuration text. See the module documentation.
pub fn import_ios(text: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let lexed = lex(text);
    let c = collect(&lexed.toks);
    let routers = c.routers;
    let names: Vec<String> = routers.iter().enumerate().map(|(i, r)| r.name(i)).collect();
    let selected = match &opts.hostname {
        Some(h) => names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(h))
            .ok_or_else(|| ImportError::NoSuchHost {
                wanted: h.clone(),
                found: names.clone(),
            })?,
        None => routers
            .iter()
            .position(|r| r.importable())
            .ok_or(ImportError::NothingFound)?,
    };
    let r = &routers[selected];
    if !r.importable() {
        return Err(ImportError::NothingFound);
    }
    let mut b = Builder {
        r,
        notes: Vec::new(),
    };
    let config = b.build();
    let mut notes = r.unmapped.clone();
    notes.extend(b.notes);
    notes.sort_by_key(|n| n.line);
    if names.len() > 1 {
        let others: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != selected)
            .map(|(_, n)| n.as_str())
            .collect();
        notes.push(Note {
            line: 0,
            text: format!(
                "input holds {} routers; imported `{}`, also found: {} (choose with --hostname NAME)",
                names.len(),
                names[selected],
                others.join(", ")
            ),
        });
    }
    if !c.prose_lines.is_empty() {
        notes.push(Note {
            line: 0,
            text: format!(
                "ignored {} line(s) of text that is not configuration: {}",
                c.prose_lines
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                ranges(&c.prose_lines)
            ),
        });
    }
    let toml = render(&config, &names[selected], &notes);
    // The output must pass validation; anything else is a bug to report.
    if let Err(e) = Config::from_str(&toml, "import") {
        return Err(ImportError::Invalid(e.diagnostics));
    }
    Ok(Imported {
        config,
        toml,
        notes,
        routers: names,
        selected,
    })
}

fn ranges(lines: &[usize]) -> String {
    let mut v: Vec<usize> = lines.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    if parts.len() > 12 {
        let n = parts.len() - 12;
        parts.truncate(12);
        parts.push(format!("and {n} more"));
    }
    parts.join(", ")
}

fn render(cfg: &Config, router: &str, notes: &[Note]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Translated from the Cisco IOS configuration of `{router}`."
    );
    s.push_str(
        "# IOS defaults are written out with IOS's values; review the notes at the end.\n\n",
    );
    s.push_str(&cfg.to_toml());
    if !notes.is_empty() {
        s.push_str("\n# Not imported / notes:\n");
        for n in notes {
            let text = n.to_string().replace('\n', " ");
            let _ = writeln!(s, "#   {text}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_len("255.255.255.0"), Some(24));
        assert_eq!(mask_len("0.0.0.0"), Some(0));
        assert_eq!(mask_len("255.255.255.255"), Some(32));
        assert_eq!(mask_len("255.0.255.0"), None);
        assert_eq!(mask_len("255.255.0"), None);
    }

    #[test]
    fn interface_names() {
        assert_eq!(canonical_ifname("Tu0"), "Tunnel0");
        assert_eq!(canonical_ifname("tunnel23"), "Tunnel23");
        assert_eq!(canonical_ifname("Tunne10"), "Tunnel10");
        assert_eq!(canonical_ifname("Fa0/0"), "FastEthernet0/0");
        assert_eq!(linux_ifname("FastEthernet0/0"), "fa0-0");
        assert_eq!(linux_ifname("GigabitEthernet0/0/1"), "gi0-0-1");
    }

    #[test]
    fn line_ranges() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9]), "1-3, 5, 9");
    }

    proptest::proptest! {
        #[test]
        fn import_never_panics(s in "\\PC{0,300}") {
            let _ = import_ios(&s, &ImportOptions::default());
        }

        #[test]
        fn import_of_command_soup_never_panics(
            words in proptest::collection::vec(proptest::sample::select(vec![
                "interface", "Tunnel0", "ip", "address", "10.0.0.1", "255.255.255.0", "nhrp",
                "nhs", "map", "multicast", "dynamic", "crypto", "isakmp", "policy", "10", "key",
                "cisco", "0.0.0.0", "ipsec", "profile", "transform-set", "esp-aes", "256", "set",
                "tunnel", "source", "mode", "gre", "multipoint", "protection", "hostname", "r1",
                "end", "!", "\n", "no", "network-id", "1", "!---", "x.", "map", "7", "seq",
            ]), 0..120)
        ) {
            let text = words.join(" ");
            let _ = import_ios(&text, &ImportOptions::default());
        }
    }
}
