//! Walks the word stream, matches commands and collects them per router.

use super::Note;
use super::commands::*;
use super::lex::Tok;
use crate::types::*;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Default, Clone)]
pub(crate) struct IfState {
    pub(crate) line: usize,
    pub(crate) shutdown: bool,
    pub(crate) address: Option<(IpAddr, Option<u8>)>,
    pub(crate) ipv6: Option<IpNet>,
    pub(crate) mtu: Option<u16>,
    pub(crate) nhrp_auth: Option<String>,
    pub(crate) network_id: Option<u32>,
    pub(crate) holdtime: Option<u32>,
    pub(crate) map_mcast_dynamic: bool,
    pub(crate) mcast: Vec<IpAddr>,
    pub(crate) maps: Vec<(IpAddr, IpAddr)>,
    pub(crate) nhs: Vec<(IpAddr, Option<IpAddr>, bool, u8)>,
    pub(crate) redirect: bool,
    pub(crate) shortcut: bool,
    pub(crate) reg_timeout: Option<u32>,
    pub(crate) reg_no_unique: bool,
    pub(crate) if_state_nhrp: bool,
    pub(crate) max_send: Option<(u32, u32)>,
    pub(crate) source: Option<String>,
    pub(crate) dest: Option<IpAddr>,
    pub(crate) mode: Option<TunnelMode>,
    pub(crate) nbma_v6: bool,
    pub(crate) key: Option<u32>,
    pub(crate) protection: Option<(String, usize)>,
    pub(crate) has_nhrp: bool,
    /// `ipv6 nhrp` settings besides NHSs and maps, with their lines.
    pub(crate) ipv6_nhrp: Vec<(usize, String)>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct PolState {
    pub(crate) line: usize,
    pub(crate) enc: Option<IkeEncryption>,
    pub(crate) hash: Option<IkeHash>,
    pub(crate) preshare: Option<bool>,
    pub(crate) group: Option<DhGroup>,
    pub(crate) lifetime: Option<u32>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ProfState {
    pub(crate) line: usize,
    pub(crate) sets: Vec<String>,
    pub(crate) secs: Option<u32>,
    pub(crate) kb: Option<u64>,
    pub(crate) idle: Option<u32>,
    pub(crate) pfs: Option<DhGroup>,
    pub(crate) peers: Vec<IpAddr>,
    pub(crate) isakmp_profile: Option<String>,
}

/// `crypto isakmp profile NAME`: what we translate of it.
#[derive(Debug, Default, Clone)]
pub(crate) struct IsakmpProfState {
    pub(crate) line: usize,
    pub(crate) keyrings: Vec<String>,
    pub(crate) addresses: Vec<IpNet>,
    pub(crate) aggressive: bool,
}

/// A pre-shared key: key, peers, line, and the keyring it came from.
#[derive(Debug, Clone)]
pub(crate) struct KeyLine {
    pub(crate) key: String,
    pub(crate) net: IpNet,
    pub(crate) line: usize,
    pub(crate) keyring: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Router {
    pub(crate) hostname: Option<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) first_line: usize,
    pub(crate) interfaces: BTreeMap<String, IfState>,
    pub(crate) if_order: Vec<String>,
    pub(crate) policies: BTreeMap<u16, PolState>,
    pub(crate) keys: Vec<KeyLine>,
    pub(crate) isakmp_profiles: Vec<(String, IsakmpProfState)>,
    pub(crate) identity: Option<Identity>,
    pub(crate) keepalive: Option<(u32, u32)>,
    pub(crate) nat_keepalive: Option<u32>,
    pub(crate) natt_off: bool,
    pub(crate) aggressive_disabled: bool,
    pub(crate) in_negotiation_limit: Option<(u32, usize)>,
    pub(crate) tsets: Vec<(String, Vec<Transform>, Option<EspMode>, usize)>,
    pub(crate) profiles: Vec<(String, ProfState)>,
    pub(crate) maps: Vec<((String, u32), ProfState)>,
    pub(crate) g_secs: Option<u32>,
    pub(crate) g_kb: Option<u64>,
    pub(crate) g_idle: Option<u32>,
    /// `ip route`: prefix, next hop, distance, line.
    pub(crate) routes: Vec<(IpNet, String, Option<u8>, usize)>,
    pub(crate) unmapped: Vec<Note>,
    pub(crate) mapped: usize,
}

impl Router {
    pub(crate) fn name(&self, idx: usize) -> String {
        self.hostname
            .clone()
            .or_else(|| self.prompt.clone())
            .unwrap_or_else(|| format!("router#{}", idx + 1))
    }
    /// Whether it holds anything we translate.
    pub(crate) fn importable(&self) -> bool {
        self.interfaces.keys().any(|k| is_tunnel_if(k))
            || !self.policies.is_empty()
            || !self.profiles.is_empty()
            || !self.keys.is_empty()
            || !self.maps.is_empty()
    }
    pub(crate) fn defines(&self, c: &Cmd) -> bool {
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

pub(crate) struct Collector {
    pub(crate) routers: Vec<Router>,
    pub(crate) cur: Router,
    pub(crate) ctx: Ctx,
    /// The last prompt seen; names the next router without `hostname`.
    pub(crate) prompt: Option<String>,
    pub(crate) prose_lines: Vec<usize>,
}

impl Collector {
    pub(crate) fn finish_router(&mut self) {
        let r = std::mem::take(&mut self.cur);
        if r.mapped > 0 || r.hostname.is_some() {
            self.routers.push(r);
        }
        self.ctx = Ctx::Top;
    }

    pub(crate) fn apply(&mut self, c: Cmd, line: usize) {
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
            Cmd::Ipv6NhrpSetting(s) => ifs!().ipv6_nhrp.push((line, s)),
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
            Cmd::NhrpRegNoUnique => ifs!().reg_no_unique = true,
            Cmd::IfStateNhrp => ifs!().if_state_nhrp = true,
            Cmd::NhrpMaxSend(n, every) => ifs!().max_send = Some((n, every)),
            Cmd::TunnelSource(s) => ifs!().source = Some(s),
            Cmd::TunnelDest(a) => ifs!().dest = Some(a),
            Cmd::TunnelMode(m, v6) => {
                let i = ifs!();
                i.mode = Some(m);
                i.nbma_v6 = v6;
            }
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
                r.keys.push(KeyLine {
                    key: k,
                    net,
                    line,
                    keyring: None,
                });
                self.ctx = Ctx::Top;
            }
            Cmd::IsakmpIdentity(i) => r.identity = Some(i),
            Cmd::IsakmpKeepalive(a, b) => r.keepalive = Some((a, b)),
            Cmd::NatKeepalive(n) => r.nat_keepalive = Some(n),
            Cmd::NatTraversalOff => r.natt_off = true,
            Cmd::AggressiveDisable => r.aggressive_disabled = true,
            Cmd::InNegotiationLimit(n) => r.in_negotiation_limit = Some((n, line)),
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
            | Cmd::SetPeer(_)
            | Cmd::SetIsakmpProfile(_) => {
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
                    Cmd::SetIsakmpProfile(n) => p.isakmp_profile = Some(n),
                    _ => {}
                }
            }
            Cmd::GlobalLifetimeSeconds(s) => r.g_secs = Some(s),
            Cmd::GlobalLifetimeKb(s) => r.g_kb = Some(s),
            Cmd::GlobalIdle(s) => r.g_idle = Some(s),
            Cmd::TunnelGroup(p) => self.ctx = Ctx::TunnelGroup(p),
            Cmd::Keyring(k) => self.ctx = Ctx::Keyring(k),
            Cmd::IsakmpProfile(n) => {
                if !r.isakmp_profiles.iter().any(|p| p.0 == n) {
                    r.isakmp_profiles.push((
                        n.clone(),
                        IsakmpProfState {
                            line,
                            ..Default::default()
                        },
                    ));
                }
                self.ctx = Ctx::IsakmpProfile(n);
            }
            Cmd::ProfileKeyring(_)
            | Cmd::ProfileMatchAddress(_)
            | Cmd::ProfileInitiateAggressive => {
                let Ctx::IsakmpProfile(n) = &self.ctx else {
                    return;
                };
                let Some((_, p)) = r.isakmp_profiles.iter_mut().find(|p| &p.0 == n) else {
                    return;
                };
                match c {
                    Cmd::ProfileKeyring(k) => p.keyrings.push(k),
                    Cmd::ProfileMatchAddress(a) => p.addresses.push(a),
                    Cmd::ProfileInitiateAggressive => p.aggressive = true,
                    _ => {}
                }
            }
            Cmd::KeyringKey(k, net) => {
                if let Ctx::Keyring(name) = &self.ctx
                    && name != "default"
                {
                    r.unmapped.push(Note {
                            line,
                            text: format!("keyring `{name}` keys are imported as global keys (no per-profile keyrings)"),
                        });
                }
                let keyring = match &self.ctx {
                    Ctx::Keyring(name) => Some(name.clone()),
                    _ => None,
                };
                r.keys.push(KeyLine {
                    key: k,
                    net,
                    line,
                    keyring,
                });
            }
            Cmd::PreSharedKey(k) => {
                if let Ctx::TunnelGroup(p) = &self.ctx {
                    match ip(p) {
                        Some(a) => r.keys.push(KeyLine {
                            key: k,
                            net: IpNet::from(a),
                            line,
                            keyring: None,
                        }),
                        None => r.unmapped.push(Note {
                            line,
                            text: format!(
                                "not imported: tunnel-group {p} pre-shared-key <redacted> (group names are not peers; add an [[ike.key]] by address)"
                            ),
                        }),
                    }
                }
            }
            Cmd::IpRoute(net, via, distance) => {
                r.routes.push((net, via, distance, line));
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

    pub(crate) fn unmapped(&mut self, words: &[&str], line: usize, ctx_before: &Ctx) {
        let text = redact(words);
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

/// Echoes a line with the secret after `password`, `secret`, `key`,
/// `pre-shared-key` or `authentication` replaced, so notes on stderr do not
/// spread passwords that are not ours to translate.
pub(crate) fn redact(words: &[&str]) -> String {
    const MARKERS: [&str; 6] = [
        "password",
        "secret",
        "key",
        "pre-shared-key",
        "authentication",
        "key-string",
    ];
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut hide = false;
    for w in words {
        if hide {
            // An encryption type digit (0, 5, 6, 7) precedes some secrets.
            if w.len() == 1 && w.chars().all(|c| c.is_ascii_digit()) {
                out.push(w);
                continue;
            }
            out.push("<redacted>");
            hide = false;
            continue;
        }
        out.push(w);
        hide = MARKERS.contains(w);
    }
    out.join(" ")
}

/// Walks the word stream, matching commands.
pub(crate) fn collect(toks: &[Tok]) -> Collector {
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
pub(crate) fn plausible(toks: &[Tok], pos: usize, n: usize, ctx: &Ctx) -> bool {
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
pub(crate) fn try_at(toks: &[Tok], pos: usize, ctx: &Ctx) -> Option<(usize,)> {
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_in_notes_are_redacted() {
        let r = |s: &str| redact(&s.split(' ').collect::<Vec<_>>());
        assert_eq!(r("enable password cisco"), "enable password <redacted>");
        assert_eq!(
            r("username bob secret 5 $1$abc"),
            "username bob secret 5 <redacted>"
        );
        assert_eq!(
            r("crypto isakmp key 6 XyZ address 1.2.3.4"),
            "crypto isakmp key 6 <redacted> address 1.2.3.4"
        );
        assert_eq!(r("duplex auto"), "duplex auto");
    }
}
