//! Builds our configuration from one collected router, writing IOS
//! defaults explicitly and noting what cannot be translated.

use super::Note;
use super::collect::{ProfState, Router};
use super::commands::*;
use crate::schema::*;
use crate::types::*;
use ipnet::IpNet;

pub(crate) fn linux_ifname(ios: &str) -> String {
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

pub(crate) fn sanitize_hostname(h: &str) -> String {
    let s: String = h
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect();
    if s.is_empty() { "router".into() } else { s }
}

pub(crate) struct Builder<'a> {
    pub(crate) r: &'a Router,
    pub(crate) notes: Vec<Note>,
}

impl Builder<'_> {
    pub(crate) fn note(&mut self, line: usize, text: impl Into<String>) {
        self.notes.push(Note {
            line,
            text: text.into(),
        });
    }

    pub(crate) fn build(&mut self) -> Config {
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
        let all = self.tunnels(&profile_names);
        let mut tunnels = self.runnable(all);
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
        if role == Role::Hub {
            self.open_unprotected_hub(&mut tunnels);
        }
        Config {
            node: Node {
                name,
                role,
                workers: Workers::default(),
            },
            control: Control::default(),
            log: Log::default(),
            metrics: Metrics::default(),
            ike,
            ipsec,
            tunnels,
        }
    }

    /// Only what dmvpnd runs is written: a tunnel it cannot run, and a
    /// tunnel that cannot run beside the ones before it, become notes.
    fn runnable(&mut self, tunnels: Vec<Tunnel>) -> Vec<Tunnel> {
        let mut kept: Vec<Tunnel> = Vec::new();
        for t in tunnels {
            if !kept.is_empty() || !crate::validate::unsupported(&t).is_empty() {
                // Notes on how a tunnel was translated go with it.
                let about = format!("{}: ", t.name);
                self.notes.retain(|n| !n.text.starts_with(&about));
            }
            let line = self
                .r
                .interfaces
                .get(&t.name)
                .map_or(self.r.first_line, |i| i.line);
            let why = crate::validate::unsupported(&t);
            if let Some(u) = why.first() {
                let all: Vec<&str> = why.iter().map(|u| u.problem.as_str()).collect();
                self.note(
                    line,
                    format!(
                        "not imported: interface {}: dmvpnd cannot run it ({}); {}",
                        t.name,
                        all.join("; "),
                        u.fix
                    ),
                );
            } else if let Some(first) = kept.first()
                && let Some(reason) = beside(&kept, &t)
            {
                self.note(
                    line,
                    format!(
                        "not imported: interface {}: {reason}; dmvpnd runs several tunnels each on its own source (give it an address of its own and add the tunnel, or run a second dmvpnd beside {})",
                        t.name, first.name
                    ),
                );
            } else {
                kept.push(t);
            }
        }
        kept
    }

    /// IOS takes NHRP from any source on a tunnel without IPsec; dmvpnd
    /// wants that said: `allowed_nbma` is written open, with a note.
    fn open_unprotected_hub(&mut self, tunnels: &mut [Tunnel]) {
        let line = self.r.first_line;
        for t in tunnels.iter_mut().filter(|t| t.protection.is_none()) {
            let Some(n) = t.nhrp.as_mut() else { continue };
            let any: IpNet = match &t.source {
                TunnelSource::Address(a) if a.is_ipv6() => "::/0",
                _ => "0.0.0.0/0",
            }
            .parse()
            .expect("valid prefix");
            n.allowed_nbma = Some(vec![any]);
            self.note(line, format!("{}: no tunnel protection, so IOS takes NHRP from any NBMA address; written as allowed_nbma = [\"{any}\"]: narrow it to your spokes' NBMA prefixes", t.name));
        }
    }

    pub(crate) fn ike(&mut self) -> Ike {
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
        for kl in &r.keys {
            let (k, net, line) = (&kl.key, &kl.net, &kl.line);
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
                initiate_mode: InitiateMode::Main,
            });
        }
        self.initiate_aggressive(&mut keys);
        // Without `crypto isakmp keepalive` IOS runs no DPD: written as
        // `interval = 0` (dmvpnd's own default is on).
        let dpd = Some(match r.keepalive {
            Some((interval, retry)) => Dpd {
                interval: interval.clamp(10, 3600),
                retry_interval: retry.clamp(2, 60),
                retries: crate::defaults::DPD_RETRIES,
            },
            None => Dpd {
                interval: 0,
                retry_interval: crate::defaults::DPD_RETRY_INTERVAL,
                retries: crate::defaults::DPD_RETRIES,
            },
        });
        // IOS has no limit unless configured; ours bounds it anyway.
        let in_negotiation_limit = match r.in_negotiation_limit {
            Some((n, line)) if !(1..=1_000_000).contains(&n) => {
                self.note(line, format!("crypto call admission limit ike in-negotiation-sa {n} out of range; the default {} is written", crate::defaults::IN_NEGOTIATION_LIMIT));
                crate::defaults::IN_NEGOTIATION_LIMIT
            }
            Some((n, _)) => n,
            None => crate::defaults::IN_NEGOTIATION_LIMIT,
        };
        Ike {
            identity: r.identity.unwrap_or(Identity::Address),
            fqdn: None,
            // IOS answers Aggressive Mode unless told not to.
            answer_aggressive: !r.aggressive_disabled,
            aggressive_mode: None,
            dpd,
            in_negotiation_limit,
            in_negotiation_per_peer: crate::defaults::IN_NEGOTIATION_PER_PEER
                .min(in_negotiation_limit),
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

    /// IOS initiates Aggressive Mode with the peers of an ISAKMP profile
    /// that says `initiate mode aggressive` and that an IPsec profile or
    /// crypto map entry uses (`set isakmp-profile`); everyone else gets Main
    /// Mode. The profile's peers are its `match identity address` prefixes
    /// and the keys of its keyrings.
    fn initiate_aggressive(&mut self, keys: &mut Vec<PreSharedKey>) {
        let r = self.r;
        let used = |name: &str| {
            r.profiles
                .iter()
                .map(|p| &p.1)
                .chain(r.maps.iter().map(|m| &m.1))
                .any(|p| p.isakmp_profile.as_deref() == Some(name))
        };
        for (name, p) in &r.isakmp_profiles {
            if !p.aggressive {
                continue;
            }
            if !used(name) {
                self.note(p.line, format!("crypto isakmp profile {name} says `initiate mode aggressive` but no IPsec profile or crypto map uses it (`set isakmp-profile`): Main Mode is initiated"));
                continue;
            }
            let mut peers: Vec<IpNet> = p.addresses.clone();
            peers.extend(
                r.keys
                    .iter()
                    .filter(|k| k.keyring.as_ref().is_some_and(|kr| p.keyrings.contains(kr)))
                    .map(|k| k.net),
            );
            if peers.is_empty() {
                self.note(p.line, format!("crypto isakmp profile {name} says `initiate mode aggressive` but names no peers (`match identity address` or `keyring`): Main Mode is initiated"));
                continue;
            }
            for net in peers {
                if let Some(k) = keys.iter_mut().find(|k| k.peer == net) {
                    k.initiate_mode = InitiateMode::Aggressive;
                    continue;
                }
                // A wider key covers these peers: a key entry of their own
                // carries the mode.
                let cover = keys
                    .iter()
                    .filter(|k| k.peer.contains(&net))
                    .max_by_key(|k| k.peer.prefix_len())
                    .map(|k| (k.peer, k.key.clone()));
                match cover {
                    Some((wider, key)) => {
                        self.note(p.line, format!("[[ike.key]] for {net} added (the key of {wider}) to initiate Aggressive Mode as crypto isakmp profile {name} does"));
                        keys.push(PreSharedKey {
                            peer: net,
                            key,
                            initiate_mode: InitiateMode::Aggressive,
                        });
                    }
                    None => self.note(p.line, format!("crypto isakmp profile {name}: no pre-shared key for {net}, `initiate mode aggressive` not imported")),
                }
            }
        }
        let entries = r.profiles.iter().map(|p| (&p.0, &p.1));
        for (name, p) in entries.chain(r.maps.iter().map(|m| (&m.0.0, &m.1))) {
            if let Some(ip) = &p.isakmp_profile
                && !r
                    .isakmp_profiles
                    .iter()
                    .any(|x| &x.0 == ip && x.1.aggressive)
            {
                self.note(p.line, format!("not imported: set isakmp-profile {ip} (in {name}; ISAKMP profiles are not translated beyond `initiate mode aggressive`)"));
            }
        }
    }

    /// Transform sets, profiles (IPsec profiles and crypto map entries).
    pub(crate) fn ipsec(&mut self) -> (Ipsec, Vec<String>) {
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

    pub(crate) fn tunnels(&mut self, profiles: &[String]) -> Vec<Tunnel> {
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
            // Both `ip address` and `ipv6 address`: a dual-stack tunnel.
            let address6 = i
                .ipv6
                .filter(|_| address.is_some_and(|a| a.addr().is_ipv4()));
            // An IPv6-only tunnel's NHRP settings are its `ipv6 nhrp` ones;
            // a dual-stack tunnel's IPv6 instance takes the `ip nhrp` ones.
            let v6_only = address.is_some_and(|a| a.addr().is_ipv6());
            let mut v6_state;
            let i = if v6_only {
                v6_state = i.clone();
                for (line, s) in &i.ipv6_nhrp {
                    let words: Vec<&str> = s.split_whitespace().collect();
                    match nhrp_sub(&words).map(|(_, c)| c) {
                        Some(Cmd::NhrpNetworkId(n)) => v6_state.network_id = Some(n),
                        Some(Cmd::NhrpAuth(a)) => v6_state.nhrp_auth = Some(a),
                        Some(Cmd::NhrpHoldtime(h)) => v6_state.holdtime = Some(h),
                        Some(Cmd::NhrpRedirect) => v6_state.redirect = true,
                        Some(Cmd::NhrpShortcut) => v6_state.shortcut = true,
                        Some(Cmd::NhrpRegTimeout(t)) => v6_state.reg_timeout = Some(t),
                        Some(Cmd::NhrpRegNoUnique) => v6_state.reg_no_unique = true,
                        Some(Cmd::NhrpMaxSend(n, e)) => v6_state.max_send = Some((n, e)),
                        _ => self.note(*line, format!("not imported: ipv6 nhrp {s}")),
                    }
                }
                v6_state.has_nhrp |= v6_state.network_id.is_some();
                &v6_state
            } else {
                for (line, s) in &i.ipv6_nhrp {
                    self.note(
                        *line,
                        format!("ipv6 nhrp {s}: dmvpnd's IPv6 NHRP instance takes the tunnel's `ip nhrp` settings (network-id, authentication, holdtime, redirect, shortcut); check they match"),
                    );
                }
                i
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
                        let want_v6 = i.nbma_v6 || i.dest.is_some_and(|d| d.is_ipv6());
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
                            // dmvpnd follows an interface's IPv4 address;
                            // an IPv6 underlay is refused as IPv6 (`::`).
                            None if want_v6 => {
                                self.note(i.line, format!("tunnel source {ifn} has no IPv6 address in this configuration"));
                                TunnelSource::Address(std::net::Ipv6Addr::UNSPECIFIED.into())
                            }
                            None => {
                                let l = linux_ifname(&ifn);
                                self.note(i.line, format!("tunnel source {ifn} written as interface \"{l}\"; check the Linux name"));
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
                    let ip = if v6_only { "ipv6" } else { "ip" };
                    self.note(i.line, format!("not imported: interface {name} has no `{ip} nhrp network-id` (NHRP is off on it in IOS)"));
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
                    registration_no_unique: i.reg_no_unique,
                    if_state: i.if_state_nhrp,
                    registration_prefixes: None,
                    allowed_nbma: None,
                    max_send: i.max_send.map_or(crate::defaults::NHRP_MAX_SEND, |m| m.0),
                    max_send_interval: i
                        .max_send
                        .map_or(crate::defaults::NHRP_MAX_SEND_INTERVAL, |m| m.1),
                    max_cache_entries: crate::defaults::NHRP_MAX_CACHE_ENTRIES,
                    max_registrations_per_nbma: crate::defaults::NHRP_MAX_REGISTRATIONS_PER_NBMA,
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
                address6,
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
        // A prefix's preferred route first: IOS prefers the lowest
        // distance (1 when none is given); a floating static is its backup.
        let mut routes: Vec<_> = r.routes.iter().collect();
        routes.sort_by_key(|(_, _, distance, _)| distance.unwrap_or(1));
        for (net, via, distance, line) in routes {
            let ipv = if net.addr().is_ipv6() { "ipv6" } else { "ip" };
            let shown = match distance {
                Some(d) => format!("{ipv} route {net} {via} {d}"),
                None => format!("{ipv} route {net} {via}"),
            };
            let via_if = canonical_ifname(via);
            let target = out.iter_mut().position(|t| {
                t.name == via_if
                    || ip(via).is_some_and(|nh| {
                        t.address.contains(&nh) || t.address6.is_some_and(|a| a.contains(&nh))
                    })
            });
            let elsewhere = target.and_then(|ti| {
                out.iter()
                    .enumerate()
                    .find(|(k, o)| *k != ti && o.routes.contains(&net.trunc()))
                    .map(|(_, o)| o.name.clone())
            });
            match target {
                Some(ti) if elsewhere.is_some() => {
                    let (other, this) = (elsewhere.unwrap_or_default(), &out[ti].name);
                    self.note(
                        *line,
                        format!(
                            "not imported: {shown} (already routed into {other}; the kernel keeps one route per prefix and metric: add this backup as `ip route add {} dev {this} metric {}`, or run a routing daemon)",
                            net.trunc(),
                            distance.unwrap_or(20)
                        ),
                    );
                }
                Some(ti) => {
                    let t = &mut out[ti];
                    if !t.routes.contains(&net.trunc()) {
                        t.routes.push(net.trunc());
                    }
                    if distance.is_some_and(|d| d > 1) {
                        self.note(
                            *line,
                            format!("{shown}: imported without its distance (routes in `routes` have metric 0)"),
                        );
                    }
                }
                None if ip(via).is_none() && is_tunnel_if(&via_if) => self.note(
                    *line,
                    format!("not imported: {shown} ({via_if} is not an imported tunnel)"),
                ),
                None => self.note(
                    *line,
                    format!("not imported: {shown} (not via an imported tunnel; underlay routes are the host's business)"),
                ),
            }
        }
        out
    }
}

/// Why `t` cannot run beside the tunnels `kept` (none: it can): several
/// tunnels need distinct sources (addresses or interfaces).
fn beside(kept: &[Tunnel], t: &Tunnel) -> Option<String> {
    kept.iter()
        .find(|k| k.source == t.source)
        .map(|k| format!("it shares source {} with {}", t.source, k.name))
}
