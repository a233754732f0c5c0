//! Semantic checks on a parsed configuration: cross references, ranges,
//! key lengths, duplicates, and warnings about weak interop choices.

use crate::defaults::NHRP_AUTH_MAX;
use crate::diag::Finding;
use crate::schema::*;
use crate::types::*;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// All findings (errors and warnings) for `cfg`, in file order.
pub fn validate(cfg: &Config) -> Vec<Finding> {
    let mut v = Validator { out: Vec::new() };
    v.node(cfg);
    v.tunnels(cfg);
    v.ike(cfg);
    v.ipsec(cfg);
    v.control(cfg);
    v.metrics(cfg);
    v.out
}

/// Something in a `[[tunnel]]` that dmvpnd does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The tunnel's key that holds it (`source`, `mode`, ...).
    pub key: &'static str,
    pub problem: String,
    pub fix: String,
}

/// Why dmvpnd cannot run this tunnel as written (empty: it can). Used by
/// `--check` and by the IOS importer, which leaves such tunnels out.
pub fn unsupported(t: &Tunnel) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let mut add = |key, problem: String, fix: String| out.push(Unsupported { key, problem, fix });
    let v6_nbma = || "an IPv6 NBMA (underlay) address is not supported yet".to_string();
    match &t.source {
        TunnelSource::Address(IpAddr::V6(_)) => add(
            "source",
            v6_nbma(),
            "use the node's IPv4 underlay address".into(),
        ),
        // An interface source runs on its primary IPv4 address, followed
        // when it changes.
        TunnelSource::Interface(_) | TunnelSource::Address(IpAddr::V4(_)) => {}
    }
    if t.mode == TunnelMode::Ipsec {
        add(
            "mode",
            "IPsec virtual tunnel interfaces (mode = \"ipsec\") are not supported".into(),
            "use mode = \"gre\" with `protection` (GRE over IPsec) to the same destination".into(),
        );
    }
    out
}

struct Validator {
    out: Vec<Finding>,
}

/// The tunnel's subnet of `a`'s family: `address`, or `address6` on a
/// dual-stack tunnel.
fn tunnel_net(t: &Tunnel, a: IpAddr) -> Option<IpNet> {
    if same_family(a, t.address.addr()) {
        Some(t.address)
    } else {
        t.address6.filter(|n| same_family(a, n.addr()))
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl Validator {
    /// `a` has no tunnel address of its family to belong to.
    fn no_family(&mut self, path: String, t: &Tunnel, a: IpAddr) {
        if a.is_ipv6() {
            self.err(
                path,
                format!("{a} is an IPv6 tunnel address but the tunnel has no IPv6 address"),
                "add address6 = \"<IPv6 tunnel address>/<length>\" (IOS `ipv6 address`) to the tunnel",
            );
        } else {
            self.err(
                path,
                format!("{a} is not an {} tunnel address", family(t.address.addr())),
                "the address is a tunnel address of the hub or peer",
            );
        }
    }

    /// `address6`: an IPv6 host address of a subnet (not special, not
    /// the subnet-router anycast address), on a link IPv6 runs on.
    /// The same for an IPv6 `address` (an IPv6-only overlay).
    fn address6(&mut self, t: &Tunnel, p: &str) {
        let (net, key) = match (t.address, t.address6) {
            (IpNet::V6(_), Some(_)) => {
                self.err(
                    format!("{p}.address6"),
                    "the tunnel's `address` is already IPv6",
                    "address6 is the IPv6 address beside an IPv4 `address`: remove it, or give `address` the IPv4 address",
                );
                return;
            }
            (IpNet::V6(n), None) => (IpNet::V6(n), "address"),
            (_, Some(n)) => (n, "address6"),
            (_, None) => return,
        };
        let path = format!("{p}.{key}");
        let IpAddr::V6(a) = net.addr() else {
            self.err(
                path,
                format!("{} is not an IPv6 address", net.addr()),
                "address6 is the tunnel's IPv6 address, e.g. \"2001:db8:100::2/64\"; the IPv4 one is `address`",
            );
            return;
        };
        let special = a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || (a.segments()[0] & 0xffc0) == 0xfe80;
        if special {
            self.err(
                path.clone(),
                format!("{a} cannot be a tunnel address (unspecified, loopback, multicast or link-local)"),
                "use a global or unique-local address, e.g. \"2001:db8:100::2/64\"",
            );
        } else if net.prefix_len() >= 127 || net.prefix_len() == 0 {
            self.err(
                path.clone(),
                format!(
                    "prefix length /{} leaves no tunnel subnet",
                    net.prefix_len()
                ),
                "use the subnet's length, e.g. /64",
            );
        } else if net.addr() == net.network() {
            self.err(
                path.clone(),
                format!(
                    "{a} is the subnet-router anycast address of {}",
                    net.trunc()
                ),
                "give the node a host address of the subnet, e.g. ending in ::1",
            );
        }
        if t.mtu < 1280 {
            self.err(
                format!("{p}.mtu"),
                format!("mtu {} is below 1280, the least IPv6 runs on", t.mtu),
                "use mtu = 1280 or more (1400 is usual) on a tunnel carrying IPv6",
            );
        }
    }

    fn err(&mut self, path: String, msg: impl Into<String>, help: impl Into<String>) {
        self.out.push(Finding::error(path, msg, help));
    }
    fn warn(&mut self, path: String, msg: impl Into<String>, help: impl Into<String>) {
        self.out.push(Finding::warning(path, msg, help));
    }

    fn node(&mut self, cfg: &Config) {
        let n = &cfg.node.name;
        if n.is_empty()
            || n.len() > 63
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.err(
                "node.name".into(),
                format!("`{n}` is not a valid host name"),
                "use 1-63 letters, digits, '-', '_' or '.'",
            );
        }
    }

    fn tunnels(&mut self, cfg: &Config) {
        let mut names = HashSet::new();
        for (i, t) in cfg.tunnels.iter().enumerate() {
            let p = format!("tunnel[{i}]");
            if !valid_ifname(&t.name) {
                self.err(
                    format!("{p}.name"),
                    format!("`{}` is not a valid Linux interface name", t.name),
                    "use 1-15 characters without '/', ':' or spaces, e.g. \"Tunnel0\"",
                );
            } else if !names.insert(t.name.as_str()) {
                self.err(
                    format!("{p}.name"),
                    format!("duplicate tunnel name `{}`", t.name),
                    "give each [[tunnel]] its own name",
                );
            } else if let Some(o) = cfg.tunnels[..i]
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(&t.name))
            {
                // IOS names, and dmvpnctl's interface filter, ignore case.
                self.err(
                    format!("{p}.name"),
                    format!(
                        "tunnel names `{}` and `{}` differ only by case",
                        o.name, t.name
                    ),
                    "give each [[tunnel]] a name of its own",
                );
            }
            let max = if t.address.addr().is_ipv4() { 32 } else { 128 };
            if t.address.prefix_len() == max && t.mode == TunnelMode::GreMultipoint {
                self.err(
                    format!("{p}.address"),
                    format!("host prefix /{max} leaves no room for other tunnel members"),
                    "give the tunnel subnet, e.g. \"192.168.1.1/24\"",
                );
            }
            if !(576..=9000).contains(&t.mtu) {
                self.err(
                    format!("{p}.mtu"),
                    format!("mtu must be a number between 576 and 9000, got {}", t.mtu),
                    "1400 suits GRE over IPsec on a 1500-byte path",
                );
            }
            self.runnable(cfg, i, t);
            let src_addr = match &t.source {
                TunnelSource::Address(a) => Some(*a),
                TunnelSource::Interface(_) => None,
            };
            match (t.mode, t.destination) {
                (TunnelMode::GreMultipoint, Some(_)) => self.err(
                    format!("{p}.destination"),
                    "a multipoint tunnel has no fixed destination",
                    "remove `destination`, or set mode = \"gre\" for point-to-point",
                ),
                (TunnelMode::Gre | TunnelMode::Ipsec, None) => self.err(
                    format!("{p}.mode"),
                    "a point-to-point tunnel needs a destination",
                    "add destination = \"<peer NBMA address>\"",
                ),
                (_, Some(dst)) => {
                    if let Some(src) = src_addr.filter(|s| !same_family(*s, dst)) {
                        self.err(
                            format!("{p}.destination"),
                            format!(
                                "destination is {} but source {src} is {}",
                                family(dst),
                                family(src)
                            ),
                            "use addresses of one family for source and destination",
                        );
                    }
                }
                _ => {}
            }
            match &t.protection {
                Some(name) if cfg.profile(name).is_none() => self.err(
                    format!("{p}.protection"),
                    format!("IPsec profile `{name}` is not defined"),
                    "add an [[ipsec.profile]] with this name or fix the name",
                ),
                None if t.mode == TunnelMode::Ipsec => self.err(
                    format!("{p}.protection"),
                    "mode = \"ipsec\" needs an IPsec profile",
                    "add protection = \"<profile name>\"",
                ),
                _ => {}
            }
            if t.mode == TunnelMode::Ipsec && t.key.is_some() {
                self.err(
                    format!("{p}.key"),
                    "a GRE key has no meaning on an IPsec VTI",
                    "remove `key` or use mode = \"gre\"",
                );
            }
            for (j, r) in t.routes.iter().enumerate() {
                if r.addr() != r.network() {
                    self.err(
                        format!("{p}.routes[{j}]"),
                        format!("route {r} has host bits set"),
                        format!("write it as {}", r.trunc()),
                    );
                }
            }
            if cfg.node.role == Role::Hub
                && t.mode == TunnelMode::GreMultipoint
                && !t.routes.is_empty()
            {
                self.warn(
                    format!("{p}.routes"),
                    "a hub has no NHS to send these prefixes to: packets for them are dropped unless a spoke registers the prefix itself",
                    "route spoke LANs via the spokes' tunnel addresses (a routing protocol, or `ip route add PREFIX via SPOKE-TUNNEL-ADDRESS dev TUNNEL`), see docs/operations.md",
                );
            }
            match (&t.nhrp, t.mode) {
                (None, TunnelMode::GreMultipoint) => self.err(
                    p.clone(),
                    "a multipoint tunnel needs NHRP",
                    "add a [tunnel.nhrp] table with network_id",
                ),
                (Some(_), TunnelMode::Ipsec) => self.err(
                    format!("{p}.nhrp"),
                    "NHRP needs GRE; an IPsec VTI cannot carry it",
                    "remove [tunnel.nhrp] or use mode = \"gre-multipoint\"",
                ),
                (Some(n), _) => self.nhrp(cfg, &p, t, src_addr, n),
                _ => {}
            }
            if t.protection.is_some() && cfg.ike.keys.is_empty() && cfg.ipsec.manual_sas.is_empty()
            {
                self.err(
                    format!("{p}.protection"),
                    "the tunnel is protected but no pre-shared key is configured",
                    "add an [[ike.key]] (peer = \"0.0.0.0/0\" matches every peer)",
                );
            }
        }
        // Inbound GRE is demultiplexed by (source, key): two tunnels sharing
        // both cannot be told apart.
        for (i, t) in cfg.tunnels.iter().enumerate() {
            if t.mode == TunnelMode::Ipsec {
                continue;
            }
            if let Some((j, other)) = cfg.tunnels[..i].iter().enumerate().find(|(_, o)| {
                o.mode != TunnelMode::Ipsec
                    && o.source == t.source
                    && o.key == t.key
                    && (o.mode == TunnelMode::GreMultipoint
                        || t.mode == TunnelMode::GreMultipoint
                        || o.destination == t.destination)
            }) {
                self.err(
                    format!("tunnel[{i}].key"),
                    format!(
                        "tunnels `{}` and `{}` (tunnel[{j}]) share source and GRE key; inbound packets cannot be told apart",
                        other.name, t.name
                    ),
                    "give each tunnel its own key",
                );
            }
        }
        if cfg.tunnels.is_empty() {
            self.err(
                String::new(),
                "no [[tunnel]] configured: dmvpnd has nothing to run",
                "add a [[tunnel]] table",
            );
        }
    }

    /// Several tunnels run side by side, each on its own source address
    /// or interface (its own IKE and its own share of the GRE and ESP
    /// packets).
    fn one_of_several(&mut self, cfg: &Config, i: usize, t: &Tunnel) {
        let p = format!("tunnel[{i}]");
        match &t.source {
            TunnelSource::Interface(name) => {
                if let Some((j, other)) = cfg.tunnels[..i]
                    .iter()
                    .enumerate()
                    .find(|(_, o)| o.source == t.source)
                {
                    self.err(
                        format!("{p}.source"),
                        format!(
                            "tunnels `{}` (tunnel[{j}]) and `{}` both follow interface {name}; dmvpnd runs each of several tunnels on its own source",
                            other.name, t.name
                        ),
                        "give one of them an address of its own as source (an address added to the interface will do)",
                    );
                }
            }
            TunnelSource::Address(a) => {
                if let Some((j, other)) = cfg.tunnels[..i]
                    .iter()
                    .enumerate()
                    .find(|(_, o)| o.source == t.source)
                {
                    self.err(
                        format!("{p}.source"),
                        format!(
                            "tunnels `{}` (tunnel[{j}]) and `{}` share source {a}; dmvpnd runs each of several tunnels on its own source address",
                            other.name, t.name
                        ),
                        "give each tunnel its own source address; an address added to the interface will do",
                    );
                }
            }
        }
        if i == 1 && !cfg.ipsec.manual_sas.is_empty() {
            self.err(
                "ipsec.manual_sa[0]".into(),
                "manual SAs are not supported with several tunnels",
                "use IKE ([[ike.key]] and a protection profile), or run one tunnel",
            );
        }
    }

    /// What dmvpnd cannot run as written: refused here, so `--check` and
    /// the daemon never disagree.
    fn runnable(&mut self, cfg: &Config, i: usize, t: &Tunnel) {
        let p = format!("tunnel[{i}]");
        if cfg.tunnels.len() > 1 {
            self.one_of_several(cfg, i, t);
        }
        for u in unsupported(t) {
            self.err(format!("{p}.{}", u.key), u.problem, u.fix);
        }
        if let IpNet::V4(net) = t.address
            && net.prefix_len() <= 30
            && (net.addr() == net.network() || net.addr() == net.broadcast())
        {
            let which = if net.addr() == net.network() {
                "network"
            } else {
                "broadcast"
            };
            self.err(
                format!("{p}.address"),
                format!("{} is the {which} address of {}", net.addr(), net.trunc()),
                "give the node a host address of the subnet, e.g. the first usable one",
            );
        }
        self.address6(t, &p);
        for (j, other) in cfg.tunnels[..i].iter().enumerate() {
            if let (Some(a), Some(b)) = (t.address6, other.address6)
                && (a.contains(&b.network()) || b.contains(&a.network()))
            {
                // (Two IPv6 `address`es are compared below.)
                self.err(
                    format!("{p}.address6"),
                    format!(
                        "tunnel subnet {} overlaps {} of `{}` (tunnel[{j}])",
                        a.trunc(),
                        b.trunc(),
                        other.name
                    ),
                    "give each tunnel its own IPv6 subnet",
                );
            }
            if other.address.contains(&t.address.network())
                || t.address.contains(&other.address.network())
            {
                self.err(
                    format!("{p}.address"),
                    format!(
                        "tunnel subnet {} overlaps {} of `{}` (tunnel[{j}])",
                        t.address.trunc(),
                        other.address.trunc(),
                        other.name
                    ),
                    "give each tunnel its own subnet",
                );
            }
        }
        // A prefix routed into the tunnel that covers an underlay address
        // sends the tunnel's own packets back into it (recursive routing).
        // Every tunnel's underlay: a route into one tunnel must not take
        // another's packets either.
        let mut underlay: Vec<(IpAddr, String)> = Vec::new();
        for (k, o) in cfg.tunnels.iter().enumerate() {
            let whose = |what: String| {
                if k == i {
                    what
                } else {
                    format!("{what} of `{}` (tunnel[{k}])", o.name)
                }
            };
            if let TunnelSource::Address(a) = o.source {
                let what = if k == i {
                    "this node's source".to_string()
                } else {
                    format!("the source of `{}` (tunnel[{k}])", o.name)
                };
                underlay.push((a, what));
            }
            if let Some(d) = o.destination {
                underlay.push((d, whose("the destination".into())));
            }
            if let Some(n) = &o.nhrp {
                for nhs in &n.nhs {
                    if let Some(a) = nhs.nbma {
                        underlay.push((a, whose(format!("NHS {}", nhs.address))));
                    }
                }
                for m in &n.map {
                    underlay.push((m.nbma, whose(format!("the static map for {}", m.address))));
                }
            }
        }
        for (j, r) in t.routes.iter().enumerate() {
            match tunnel_net(t, r.addr()) {
                None if r.addr().is_ipv6() => self.err(
                    format!("{p}.routes[{j}]"),
                    format!("route {r} is IPv6 but the tunnel has no IPv6 address"),
                    "add address6 = \"<IPv6 tunnel address>/<length>\" (IOS `ipv6 address`) to the tunnel, or remove the route",
                ),
                None => self.err(
                    format!("{p}.routes[{j}]"),
                    format!("route {r} is IPv4 but the tunnel has no IPv4 address"),
                    "route only IPv6 prefixes into an IPv6-only tunnel, or give it an IPv4 `address` and the IPv6 one as `address6`",
                ),
                Some(net)
                    if net.addr().is_ipv6()
                        && (r.contains(&net.trunc()) || net.trunc().contains(r)) =>
                {
                    self.err(
                        format!("{p}.routes[{j}]"),
                        format!(
                            "route {r} overlaps the tunnel's own IPv6 subnet {}",
                            net.trunc()
                        ),
                        "route only the networks behind the other nodes into the tunnel",
                    )
                }
                Some(_) => {}
            }
            if let Some((a, what)) = underlay.iter().find(|(a, _)| r.contains(a)) {
                self.err(
                    format!("{p}.routes[{j}]"),
                    format!(
                        "route {r} covers {a}, the NBMA address of {what}: the tunnel's own packets would be routed into the tunnel"
                    ),
                    "route only overlay prefixes into the tunnel; leave the underlay network out of `routes`",
                );
            }
            // Another tunnel's subnet is that tunnel's connected route.
            let subnets = |o: &Tunnel| -> Vec<IpNet> {
                std::iter::once(o.address.trunc())
                    .chain(o.address6.map(|a| a.trunc()))
                    .collect()
            };
            if let Some((k, o, net)) = cfg.tunnels.iter().enumerate().find_map(|(k, o)| {
                let hit = subnets(o)
                    .into_iter()
                    .find(|net| r.contains(net) || net.contains(r))?;
                (k != i).then_some((k, o, hit))
            }) {
                self.err(
                    format!("{p}.routes[{j}]"),
                    format!(
                        "route {r} overlaps {net}, the subnet of `{}` (tunnel[{k}]): it would take that tunnel's own traffic",
                        o.name
                    ),
                    "route only the networks behind the other nodes into the tunnel",
                );
            }
            // The kernel holds one route per prefix and metric: the
            // second tunnel's would replace the first's.
            if let Some((k, o)) = cfg.tunnels[..i]
                .iter()
                .enumerate()
                .find(|(_, o)| o.routes.contains(r))
            {
                self.err(
                    format!("{p}.routes[{j}]"),
                    format!(
                        "route {r} is also in `routes` of `{}` (tunnel[{k}]): the kernel would keep only one",
                        o.name
                    ),
                    "keep it in one tunnel's `routes`; add the backup through the other tunnel with a higher metric (`ip route add PREFIX dev TUNNEL metric 20`) or a routing daemon",
                );
            }
        }
    }

    fn nhrp(&mut self, cfg: &Config, p: &str, t: &Tunnel, src: Option<IpAddr>, n: &Nhrp) {
        let p = format!("{p}.nhrp");
        if n.network_id == 0 {
            self.err(
                format!("{p}.network_id"),
                "network_id must not be 0",
                "use 1..4294967295, the same on every member of the cloud",
            );
        }
        if let Some(a) = &n.authentication {
            let s = a.expose();
            if s.is_empty() || s.len() > NHRP_AUTH_MAX || !s.chars().all(|c| c.is_ascii_graphic()) {
                self.err(
                    format!("{p}.authentication"),
                    format!(
                        "NHRP password must be 1-{NHRP_AUTH_MAX} printable ASCII characters, got {}",
                        s.chars().count()
                    ),
                    "IOS accepts at most 8 characters; shorten it on every node",
                );
            }
        }
        if !(1..=65535).contains(&n.holdtime) {
            self.err(
                format!("{p}.holdtime"),
                format!("holdtime {} out of range", n.holdtime),
                "use 1..65535 seconds (default 7200)",
            );
        }
        if let Some(rt) = n.registration_timeout
            && (rt == 0 || rt > 65535)
        {
            self.err(
                format!("{p}.registration_timeout"),
                format!("registration_timeout {rt} out of range"),
                "use 1..65535 seconds, or remove it to use holdtime/3",
            );
        }
        if let Some(rt) = n.registration_timeout
            && (1..=65535).contains(&rt)
            && rt >= n.holdtime
        {
            self.err(
                format!("{p}.registration_timeout"),
                format!(
                    "registration_timeout {rt} s is not shorter than holdtime {} s: the NHS forgets each registration before the next one comes",
                    n.holdtime
                ),
                format!(
                    "use at most holdtime/3 ({} s), or remove it to get that",
                    (n.holdtime / 3).max(1)
                ),
            );
        }
        self.nhrp_trust(cfg, &p, t, src, n);
        let check_nbma = |v: &mut Validator, path: String, a: IpAddr| {
            if let Some(s) = src.filter(|s| !same_family(*s, a)) {
                v.err(
                    path,
                    format!(
                        "NBMA address {a} is {} but the tunnel source {s} is {}",
                        family(a),
                        family(s)
                    ),
                    "NBMA addresses must share the tunnel source's family",
                );
            }
        };
        let mut seen = HashSet::new();
        for (j, m) in n.map.iter().enumerate() {
            if tunnel_net(t, m.address).is_none() {
                self.no_family(format!("{p}.map[{j}].address"), t, m.address);
            }
            check_nbma(self, format!("{p}.map[{j}].nbma"), m.nbma);
            if !seen.insert(m.address) {
                self.err(
                    format!("{p}.map[{j}].address"),
                    format!("duplicate static map for {}", m.address),
                    "keep one map per tunnel address",
                );
            }
        }
        for (j, m) in n.multicast.iter().enumerate() {
            check_nbma(self, format!("{p}.multicast[{j}]"), *m);
        }
        let mut seen = HashSet::new();
        for (j, nhs) in n.nhs.iter().enumerate() {
            let np = format!("{p}.nhs[{j}]");
            match tunnel_net(t, nhs.address) {
                None => self.no_family(format!("{np}.address"), t, nhs.address),
                Some(net) if !net.contains(&nhs.address) => self.warn(
                    format!("{np}.address"),
                    format!(
                        "NHS {} is outside the tunnel subnet {}",
                        nhs.address,
                        net.trunc()
                    ),
                    "the NHS is normally the hub's address on this tunnel",
                ),
                Some(_) => {}
            }
            if tunnel_net(t, nhs.address).is_some_and(|net| net.addr() == nhs.address) {
                self.err(
                    format!("{np}.address"),
                    "the NHS is this node's own tunnel address",
                    "list the hub's tunnel address",
                );
            }
            if !seen.insert(nhs.address) {
                self.err(
                    format!("{np}.address"),
                    format!("duplicate NHS {}", nhs.address),
                    "list each NHS once",
                );
            }
            match nhs.nbma {
                Some(a) => check_nbma(self, format!("{np}.nbma"), a),
                None => {
                    if !n.map.iter().any(|m| m.address == nhs.address) {
                        self.err(
                            format!("{np}.nbma"),
                            format!("no NBMA address known for NHS {}", nhs.address),
                            "add nbma = \"<hub NBMA address>\" or a matching [[tunnel.nhrp.map]]",
                        );
                    }
                }
            }
        }
        if cfg.node.role == Role::Spoke && t.mode == TunnelMode::GreMultipoint && n.nhs.is_empty() {
            self.err(
                format!("{p}.nhs"),
                "a spoke needs at least one NHS",
                "add [[tunnel.nhrp.nhs]] with the hub's tunnel and NBMA addresses",
            );
        }
    }

    /// Who may change this node's NHRP cache: registration prefixes,
    /// allowed NBMA sources, bounds, and the rule that a hub on a tunnel
    /// without IPsec accepts NHRP only from listed sources with a password.
    fn nhrp_trust(&mut self, cfg: &Config, p: &str, t: &Tunnel, src: Option<IpAddr>, n: &Nhrp) {
        let hub = cfg.node.role == Role::Hub;
        let tun_af = t.address.addr();
        if let Some(list) = &n.registration_prefixes {
            let path = format!("{p}.registration_prefixes");
            if !hub {
                self.warn(
                    path.clone(),
                    "only a hub accepts registrations",
                    "remove registration_prefixes from a spoke",
                );
            }
            if list.is_empty() {
                self.err(
                    path.clone(),
                    "an empty list refuses every registration",
                    format!(
                        "list the prefixes spokes may register, starting with the tunnel subnet {}, or remove the key",
                        t.address.trunc()
                    ),
                );
            } else if !list.iter().any(|r| r.contains(&t.address.trunc())) {
                self.warn(
                    path.clone(),
                    format!("the tunnel subnet {} is not listed", t.address.trunc()),
                    "spokes register their tunnel addresses; list the tunnel subnet too",
                );
            }
            for (j, r) in list.iter().enumerate() {
                if r.addr() != r.network() {
                    self.err(
                        format!("{path}[{j}]"),
                        format!("prefix {r} has host bits set"),
                        format!("write it as {}", r.trunc()),
                    );
                }
                if tunnel_net(t, r.addr()).is_none() {
                    self.err(
                        format!("{path}[{j}]"),
                        format!("{r} is not an {} prefix", family(tun_af)),
                        "registrations claim tunnel-side prefixes of the tunnel's family; an IPv6 prefix needs address6 on the tunnel",
                    );
                }
            }
        }
        if let Some(list) = &n.allowed_nbma {
            let path = format!("{p}.allowed_nbma");
            if list.is_empty() && hub {
                self.err(
                    path.clone(),
                    "an empty list refuses NHRP from every spoke",
                    "list the NBMA prefixes your spokes use, e.g. [\"172.16.0.0/24\"]",
                );
            }
            for (j, r) in list.iter().enumerate() {
                if r.addr() != r.network() {
                    self.err(
                        format!("{path}[{j}]"),
                        format!("prefix {r} has host bits set"),
                        format!("write it as {}", r.trunc()),
                    );
                }
                if let Some(s) = src.filter(|s| !same_family(*s, r.addr())) {
                    self.err(
                        format!("{path}[{j}]"),
                        format!(
                            "{r} is {} but the tunnel source {s} is {}",
                            family(r.addr()),
                            family(s)
                        ),
                        "NBMA prefixes must share the tunnel source's family",
                    );
                }
                if r.prefix_len() == 0 && t.protection.is_none() {
                    self.warn(
                        format!("{path}[{j}]"),
                        format!("{r} accepts NHRP from any source on a tunnel without IPsec"),
                        "list only the NBMA prefixes your peers use",
                    );
                }
            }
        }
        if hub
            && t.protection.is_none()
            && t.mode != TunnelMode::Ipsec
            && (n.allowed_nbma.is_none() || n.authentication.is_none())
        {
            let missing = match (n.allowed_nbma.is_none(), n.authentication.is_none()) {
                (true, true) => "neither allowed_nbma nor authentication is set",
                (true, false) => "allowed_nbma is not set",
                _ => "authentication is not set",
            };
            self.err(
                p.to_string(),
                format!(
                    "a hub on a tunnel without IPsec protection takes NHRP from anyone: {missing}"
                ),
                "add protection = \"<ipsec profile>\" (IOS `tunnel protection ipsec profile`), or set both allowed_nbma (the spokes' NBMA prefixes) and authentication",
            );
        }
        if !(1..=65_535).contains(&n.max_send) {
            self.err(
                format!("{p}.max_send"),
                format!("max_send {} out of range", n.max_send),
                "use 1..65535 Traffic Indications per window (IOS `ip nhrp max-send`, default 100)",
            );
        }
        if !(10..=65_535).contains(&n.max_send_interval) {
            self.err(
                format!("{p}.max_send_interval"),
                format!("max_send_interval {} out of range", n.max_send_interval),
                "use 10..65535 seconds (IOS `ip nhrp max-send N every S`, default 10)",
            );
        }
        if !(1..=10_000_000).contains(&n.max_cache_entries) {
            self.err(
                format!("{p}.max_cache_entries"),
                format!("max_cache_entries {} out of range", n.max_cache_entries),
                "use 1..10000000 (default 50000, room for 10,000 spokes)",
            );
        }
        if !(1..=1_000_000).contains(&n.max_registrations_per_nbma) {
            self.err(
                format!("{p}.max_registrations_per_nbma"),
                format!(
                    "max_registrations_per_nbma {} out of range",
                    n.max_registrations_per_nbma
                ),
                "use 1..1000000 (default 128)",
            );
        }
        if n.if_state && n.nhs.is_empty() {
            self.warn(
                format!("{p}.if_state"),
                "without NHSs the tunnel's state follows nothing",
                "set it on the spokes, which register with NHSs",
            );
        }
        if n.registration_no_unique && hub && n.nhs.is_empty() {
            self.warn(
                format!("{p}.registration_no_unique"),
                "only a spoke registers",
                "set it on the spokes whose NBMA address may change",
            );
        }
    }

    fn ike(&mut self, cfg: &Config) {
        let ike = &cfg.ike;
        let mut prios: HashMap<u16, usize> = HashMap::new();
        for (i, pol) in ike.policies.iter().enumerate() {
            let p = format!("ike.policy[{i}]");
            if !(1..=10000).contains(&pol.priority) {
                self.err(
                    format!("{p}.priority"),
                    format!("priority {} out of range", pol.priority),
                    "use 1..10000",
                );
            }
            if let Some(first) = prios.insert(pol.priority, i) {
                self.err(
                    format!("{p}.priority"),
                    format!(
                        "duplicate policy priority {} (also ike.policy[{first}])",
                        pol.priority
                    ),
                    "give each [[ike.policy]] its own priority",
                );
            }
            if !(60..=86400).contains(&pol.lifetime) {
                self.err(
                    format!("{p}.lifetime"),
                    format!("lifetime {} out of range", pol.lifetime),
                    "use 60..86400 seconds",
                );
            }
            if pol.encryption.is_weak() {
                self.warn(
                    format!("{p}.encryption"),
                    format!("{} is weak", pol.encryption),
                    "use aes-256 once every peer supports it",
                );
            }
            if pol.hash.is_weak() {
                self.warn(
                    format!("{p}.hash"),
                    "md5 is weak",
                    "use sha256 once every peer supports it",
                );
            }
            if pol.group.is_weak() {
                self.warn(
                    format!("{p}.group"),
                    format!("DH group {} is weak", pol.group.number()),
                    "use group 14 or stronger once every peer supports it",
                );
            }
        }
        if ike.policies.is_empty() {
            self.err(
                "ike.policy".into(),
                "no ISAKMP policy",
                "add an [[ike.policy]] or remove the empty list",
            );
        }
        let mut peers = HashSet::new();
        for (i, k) in ike.keys.iter().enumerate() {
            let p = format!("ike.key[{i}]");
            if k.key.expose().is_empty() {
                self.err(format!("{p}.key"), "empty pre-shared key", "set a key");
            } else if k.key.expose().len() < 8 {
                self.warn(
                    format!("{p}.key"),
                    "pre-shared key shorter than 8 characters",
                    "use a long random key; Main Mode PSKs can be guessed offline",
                );
            }
            if k.peer.addr() != k.peer.network() {
                self.err(
                    format!("{p}.peer"),
                    format!("prefix {} has host bits set", k.peer),
                    format!("write it as {}", k.peer.trunc()),
                );
            }
            if !peers.insert(k.peer) {
                self.err(
                    format!("{p}.peer"),
                    format!("duplicate key for {}", k.peer),
                    "keep one [[ike.key]] per peer prefix",
                );
            }
        }
        if let Some(old) = ike.aggressive_mode {
            if old != ike.answer_aggressive {
                self.err(
                    "ike.aggressive_mode".into(),
                    format!(
                        "aggressive_mode = {old} contradicts answer_aggressive = {}",
                        ike.answer_aggressive
                    ),
                    "remove the deprecated aggressive_mode; keep answer_aggressive",
                );
            } else {
                self.warn(
                    "ike.aggressive_mode".into(),
                    format!(
                        "aggressive_mode is deprecated; it is read as answer_aggressive = {old}"
                    ),
                    "write `answer_aggressive` (answering Aggressive Mode) instead; initiating it is `initiate_mode = \"aggressive\"` on an [[ike.key]]",
                );
            }
        }
        if ike.answer_aggressive {
            let key = if ike.aggressive_mode.is_some() {
                "ike.aggressive_mode"
            } else {
                "ike.answer_aggressive"
            };
            self.warn(
                key.into(),
                "Aggressive Mode sends a PSK-derived hash anyone can attack offline",
                "set answer_aggressive = false unless a peer needs it",
            );
        }
        for (i, k) in ike.keys.iter().enumerate() {
            if k.initiate_mode == InitiateMode::Aggressive {
                self.warn(
                    format!("ike.key[{i}].initiate_mode"),
                    format!(
                        "Aggressive Mode with {} exposes a PSK-derived hash to anyone on the path",
                        k.peer
                    ),
                    "use \"main\" unless the peer only answers Aggressive Mode",
                );
            }
        }
        if let Some(f) = &ike.fqdn
            && (f.is_empty() || f.contains(char::is_whitespace))
        {
            self.err(
                "ike.fqdn".into(),
                format!("`{f}` is not a domain name"),
                "use e.g. \"hub.example.net\"",
            );
        }
        if let Some(dpd) = &ike.dpd {
            if dpd.interval != 0 && !(10..=3600).contains(&dpd.interval) {
                self.err(
                    "ike.dpd.interval".into(),
                    format!("DPD interval {} out of range", dpd.interval),
                    "use 10..3600 seconds, or 0 to turn dead peer detection off",
                );
            }
            if !(2..=60).contains(&dpd.retry_interval) {
                self.err(
                    "ike.dpd.retry_interval".into(),
                    format!("DPD retry interval {} out of range", dpd.retry_interval),
                    "use 2..60 seconds",
                );
            }
            if !(1..=20).contains(&dpd.retries) {
                self.err(
                    "ike.dpd.retries".into(),
                    format!("DPD retries {} out of range", dpd.retries),
                    "use 1..20",
                );
            }
        }
        if !(1..=1_000_000).contains(&ike.in_negotiation_limit) {
            self.err(
                "ike.in_negotiation_limit".into(),
                format!(
                    "in-negotiation limit {} out of range",
                    ike.in_negotiation_limit
                ),
                "use 1..1000000 (IOS default: no limit; ours 1024)",
            );
        }
        if ike.in_negotiation_per_peer == 0
            || (ike.in_negotiation_limit >= 1
                && ike.in_negotiation_per_peer > ike.in_negotiation_limit)
        {
            self.err(
                "ike.in_negotiation_per_peer".into(),
                format!(
                    "per-address in-negotiation limit {} out of range",
                    ike.in_negotiation_per_peer
                ),
                "use 1 up to ike.in_negotiation_limit (default 8)",
            );
        }
        let ka = ike.nat_traversal.keepalive;
        if ka != 0 && !(5..=3600).contains(&ka) {
            self.err(
                "ike.nat_traversal.keepalive".into(),
                format!("NAT keepalive {ka} out of range"),
                "use 5..3600 seconds, or 0 to disable",
            );
        }
    }

    /// Checks a transform list: one cipher plus at most one integrity, or one esp-gcm.
    fn transform_list(&mut self, path: &str, ts: &[Transform]) {
        let ciphers = ts
            .iter()
            .filter(|t| t.kind() == TransformKind::Cipher)
            .count();
        let aeads = ts
            .iter()
            .filter(|t| t.kind() == TransformKind::Aead)
            .count();
        let integ = ts
            .iter()
            .filter(|t| t.kind() == TransformKind::Integrity)
            .count();
        let ok = (ciphers == 1 && aeads == 0 && integ <= 1)
            || (aeads == 1 && ciphers == 0 && integ == 0);
        if !ok {
            let list: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            self.err(
                path.to_string(),
                format!("invalid transform combination [{}]", list.join(", ")),
                "use one cipher (esp-aes 256) plus one integrity (esp-sha256-hmac), or one esp-gcm",
            );
            return;
        }
        if ciphers == 1 && integ == 0 {
            self.warn(
                path.to_string(),
                "ESP without integrity protection",
                "add esp-sha256-hmac, or use esp-gcm",
            );
        }
        for (j, t) in ts.iter().enumerate() {
            if t.is_weak() {
                self.warn(
                    format!("{path}[{j}]"),
                    format!("{t} is weak"),
                    "use esp-aes 256 with esp-sha256-hmac, or esp-gcm 256",
                );
            }
        }
    }

    fn ipsec(&mut self, cfg: &Config) {
        let mut names = HashSet::new();
        for (i, ts) in cfg.ipsec.transform_sets.iter().enumerate() {
            let p = format!("ipsec.transform_set[{i}]");
            if ts.name.is_empty() || !names.insert(ts.name.as_str()) {
                self.err(
                    format!("{p}.name"),
                    format!("duplicate or empty transform set name `{}`", ts.name),
                    "give each transform set its own name",
                );
            }
            self.transform_list(&format!("{p}.transforms"), &ts.transforms);
        }
        let mut names = HashSet::new();
        for (i, pr) in cfg.ipsec.profiles.iter().enumerate() {
            let p = format!("ipsec.profile[{i}]");
            if pr.name.is_empty() || !names.insert(pr.name.as_str()) {
                self.err(
                    format!("{p}.name"),
                    format!("duplicate or empty profile name `{}`", pr.name),
                    "give each profile its own name",
                );
            }
            if pr.transform_sets.is_empty() {
                self.err(
                    format!("{p}.transform_sets"),
                    "no transform set",
                    "list at least one [[ipsec.transform_set]] name",
                );
            }
            for (j, name) in pr.transform_sets.iter().enumerate() {
                if cfg.transform_set(name).is_none() {
                    self.err(
                        format!("{p}.transform_sets[{j}]"),
                        format!("transform set `{name}` is not defined"),
                        "add an [[ipsec.transform_set]] with this name or fix the name",
                    );
                }
            }
            if !(120..=2_592_000).contains(&pr.lifetime_seconds) {
                self.err(
                    format!("{p}.lifetime_seconds"),
                    format!("lifetime {} s out of range", pr.lifetime_seconds),
                    "use 120..2592000 seconds (default 3600)",
                );
            }
            if !(2560..=u32::MAX as u64).contains(&pr.lifetime_kilobytes) {
                self.err(
                    format!("{p}.lifetime_kilobytes"),
                    format!("lifetime {} KB out of range", pr.lifetime_kilobytes),
                    "use 2560..4294967295 kilobytes (default 4608000)",
                );
            }
            if let Some(g) = pr.pfs.filter(|g| g.is_weak()) {
                self.warn(
                    format!("{p}.pfs"),
                    format!("PFS group {} is weak", g.number()),
                    "use group 14 or stronger",
                );
            }
            if let Some(idle) = pr.idle_time
                && !(60..=86400).contains(&idle)
            {
                self.err(
                    format!("{p}.idle_time"),
                    format!("idle time {idle} out of range"),
                    "use 60..86400 seconds",
                );
            }
        }
        let mut spis_in = HashMap::new();
        let mut spis_out = HashMap::new();
        for (i, sa) in cfg.ipsec.manual_sas.iter().enumerate() {
            let p = format!("ipsec.manual_sa[{i}]");
            if sa.peer.is_ipv6() {
                self.err(
                    format!("{p}.peer"),
                    "an IPv6 NBMA (underlay) address is not supported yet",
                    "use the peer's IPv4 underlay address",
                );
            }
            let before = self
                .out
                .iter()
                .filter(|f| f.severity == crate::Severity::Error)
                .count();
            self.transform_list(&format!("{p}.transforms"), &sa.transforms);
            let combo_ok = self
                .out
                .iter()
                .filter(|f| f.severity == crate::Severity::Error)
                .count()
                == before;
            for (dir, keys, seen) in [
                ("inbound", &sa.inbound, &mut spis_in),
                ("outbound", &sa.outbound, &mut spis_out),
            ] {
                let kp = format!("{p}.{dir}");
                if keys.spi < 256 {
                    self.err(
                        format!("{kp}.spi"),
                        format!("SPI {} is reserved", keys.spi),
                        "use 256..4294967295 (e.g. 0x1000)",
                    );
                }
                // Inbound SPIs must be unique on this node; outbound per peer.
                let k = if dir == "inbound" {
                    (None, keys.spi)
                } else {
                    (Some(sa.peer), keys.spi)
                };
                if let Some(first) = seen.insert(k, i) {
                    self.err(
                        format!("{kp}.spi"),
                        format!(
                            "duplicate {dir} SPI {:#x} (also ipsec.manual_sa[{first}])",
                            keys.spi
                        ),
                        "each SA needs its own SPI",
                    );
                }
                if combo_ok {
                    self.manual_keys(&kp, &sa.transforms, keys);
                }
            }
        }
    }

    fn manual_keys(&mut self, kp: &str, ts: &[Transform], keys: &ManualSaKeys) {
        let cipher = ts
            .iter()
            .find(|t| t.kind() != TransformKind::Integrity)
            .copied();
        let integ = ts
            .iter()
            .find(|t| t.kind() == TransformKind::Integrity)
            .copied();
        if let Some(c) = cipher {
            self.key_len(&format!("{kp}.encryption_key"), c, &keys.encryption_key);
        }
        match (integ, &keys.authentication_key) {
            (Some(t), Some(k)) => self.key_len(&format!("{kp}.authentication_key"), t, k),
            (Some(t), None) => self.err(
                kp.to_string(),
                format!("{t} needs an authentication_key"),
                format!("add authentication_key with {} hex digits", t.key_len() * 2),
            ),
            (None, Some(_)) => self.err(
                format!("{kp}.authentication_key"),
                "no integrity transform uses this key",
                "remove authentication_key or add an integrity transform",
            ),
            (None, None) => {}
        }
    }

    fn key_len(&mut self, path: &str, t: Transform, key: &HexKey) {
        let want = t.key_len();
        let gcm = if matches!(t, Transform::EspGcm(_)) {
            " (key + 4-byte salt)"
        } else {
            ""
        };
        match key.bytes() {
            Err(e) => self.err(
                path.to_string(),
                format!("invalid hex key: {e}"),
                format!("give {} hex digits for {t}{gcm}", want * 2),
            ),
            Ok(b) if b.len() != want => self.err(
                path.to_string(),
                format!("{t} needs a {want}-byte key{gcm}, got {} bytes", b.len()),
                format!("give exactly {} hex digits", want * 2),
            ),
            Ok(b) => {
                if let Some(why) = t.key_weakness(&b) {
                    self.err(
                        path.to_string(),
                        format!("{t} key is {why}"),
                        "use random key bytes, e.g. from `openssl rand -hex`",
                    );
                }
            }
        }
    }

    fn metrics(&mut self, cfg: &Config) {
        if let Some(a) = cfg.metrics.listen
            && !a.ip().is_loopback()
        {
            self.warn(
                "metrics.listen".into(),
                format!(
                    "metrics on {a} show peer addresses and counters to anyone who can reach it"
                ),
                "listen on 127.0.0.1 (or ::1) and scrape through a local agent, or filter the port",
            );
        }
    }

    fn control(&mut self, cfg: &Config) {
        if !cfg.control.socket.is_absolute() {
            self.err(
                "control.socket".into(),
                format!("`{}` is not an absolute path", cfg.control.socket.display()),
                "use e.g. \"/run/dmvpn/dmvpnd.sock\"",
            );
        }
        if cfg.control.mode.0 & 0o007 != 0 {
            self.warn(
                "control.mode".into(),
                format!(
                    "mode {:04o} lets every local user control the daemon",
                    cfg.control.mode.0
                ),
                "use \"0600\", or \"0660\" with a group",
            );
        }
        if let Some(g) = &cfg.control.group
            && (g.is_empty() || g.contains(|c: char| c.is_whitespace() || c == ':'))
        {
            self.err(
                "control.group".into(),
                format!("`{g}` is not a group name"),
                "use an existing group such as \"dmvpn\"",
            );
        }
        if cfg.log.filter.trim().is_empty() {
            self.err(
                "log.filter".into(),
                "empty log filter",
                "use e.g. \"info\" or \"info,dmvpn::ike=debug\"",
            );
        }
        if let Some(k) = cfg.log.key_log.as_ref().filter(|k| !k.is_absolute()) {
            self.err(
                "log.key_log".into(),
                format!("`{}` is not an absolute path", k.display()),
                "use e.g. \"/var/lib/dmvpn/esp_sa\"",
            );
        }
        if cfg.log.key_log.is_some() {
            self.warn(
                "log.key_log".into(),
                "ESP keys will be written to a file",
                "use only while debugging with Wireshark; remove it afterwards",
            );
        }
    }
}
