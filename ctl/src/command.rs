//! IOS-style command lines: `show ip nhrp brief`, `sh cry isa sa det`,
//! `clear crypto session remote 172.16.0.2`. Every keyword may be cut to
//! any prefix that names it alone, as on IOS; a prefix that fits several
//! keywords is `% Ambiguous command`, a word that fits none is
//! `% Invalid input detected at '^' marker.`, a line that stops short is
//! `% Incomplete command.`

use crate::proto::{DebugTarget, Request};
use crate::render::View;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// What a command line asks dmvpnd, and how to print the answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub requests: Vec<Request>,
    pub view: View,
    /// Only this tunnel interface's part of the answers (`show dmvpn
    /// interface Tunnel1`, `show ip nhrp Tunnel1`).
    pub interface: Option<String>,
}

/// A command line IOS would refuse, with IOS's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A word is the start of several keywords.
    Ambiguous { line: String },
    /// The word starting at byte `at` of `line` fits nothing here.
    Invalid { line: String, at: usize },
    /// The line stops before a command is complete.
    Incomplete,
    /// `?` (or `--help`): what may follow the words before it.
    Help(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Ambiguous { line } => write!(f, "% Ambiguous command:  \"{line}\""),
            ParseError::Invalid { line, at } => write!(
                f,
                "{line}\n{:at$}^\n% Invalid input detected at '^' marker.",
                ""
            ),
            ParseError::Incomplete => f.write_str("% Incomplete command."),
            ParseError::Help(h) => f.write_str(h.trim_end()),
        }
    }
}

/// What a complete command does; parameters come from the words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Show(Request, View),
    ClearNhrp,
    ClearCryptoSa,
    ClearCryptoSession,
    Debug(DebugTarget, bool),
    UndebugAll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Keyword(&'static str),
    /// An IPv4 or IPv6 address.
    Address,
    /// A dotted IPv4 mask.
    Mask,
    /// A tunnel interface name, e.g. `Tunnel1`.
    Interface,
}

struct Node {
    word: Word,
    help: &'static str,
    action: Option<Action>,
    children: Vec<Node>,
    /// An alias or dmvpnd extension: accepted, left out of the list.
    hidden: bool,
}

fn kw(name: &'static str, help: &'static str, children: Vec<Node>) -> Node {
    Node {
        word: Word::Keyword(name),
        help,
        action: None,
        children,
        hidden: false,
    }
}

impl Node {
    fn does(mut self, a: Action) -> Node {
        self.action = Some(a);
        self
    }

    fn hidden(mut self) -> Node {
        self.hidden = true;
        self
    }
}

fn leaf(name: &'static str, help: &'static str, a: Action) -> Node {
    kw(name, help, Vec::new()).does(a)
}

fn param(word: Word, help: &'static str, a: Action, children: Vec<Node>) -> Node {
    Node {
        word,
        help,
        action: Some(a),
        children,
        hidden: false,
    }
}

/// `nhrp [brief | nhs [detail] | traffic]` under `show ip` and `show`.
fn show_nhrp() -> Node {
    let show = |r| Action::Show(r, View::Plain);
    let brief = || {
        leaf(
            "brief",
            "One line pair per usable entry",
            Action::Show(Request::ShowNhrp, View::Brief),
        )
    };
    let nhs_detail = || {
        leaf(
            "detail",
            "Requests sent, failed, replies received",
            show(Request::ShowNhrpNhs),
        )
    };
    kw(
        "nhrp",
        "NHRP cache",
        vec![
            brief(),
            kw(
                "nhs",
                "Next hop servers: state and counters",
                vec![
                    nhs_detail(),
                    param(
                        Word::Interface,
                        "Only this tunnel interface",
                        show(Request::ShowNhrpNhs),
                        vec![nhs_detail()],
                    ),
                ],
            )
            .does(show(Request::ShowNhrpNhs)),
            kw(
                "traffic",
                "NHRP packets sent and received by type, drops",
                vec![kw(
                    "interface",
                    "Only one tunnel interface",
                    vec![param(
                        Word::Interface,
                        "Tunnel interface name, e.g. Tunnel0",
                        show(Request::ShowNhrpTraffic),
                        Vec::new(),
                    )],
                )],
            )
            .does(show(Request::ShowNhrpTraffic)),
            param(
                Word::Interface,
                "Only this tunnel interface",
                show(Request::ShowNhrp),
                vec![brief()],
            ),
        ],
    )
    .does(show(Request::ShowNhrp))
}

/// `nhrp [brief]` under `show ipv6`: a dual-stack tunnel's IPv6 cache.
fn show_nhrp6() -> Node {
    let brief = || {
        leaf(
            "brief",
            "One line pair per usable entry",
            Action::Show(Request::ShowIpv6Nhrp, View::Brief),
        )
    };
    kw(
        "nhrp",
        "IPv6 NHRP cache",
        vec![
            brief(),
            param(
                Word::Interface,
                "Only this tunnel interface",
                Action::Show(Request::ShowIpv6Nhrp, View::Plain),
                vec![brief()],
            ),
        ],
    )
    .does(Action::Show(Request::ShowIpv6Nhrp, View::Plain))
}

/// `nhrp [ADDRESS [MASK]]` under `clear ip` and `clear`.
fn clear_nhrp() -> Node {
    kw(
        "nhrp",
        "Dynamic NHRP entries (static ones stay)",
        vec![param(
            Word::Address,
            "Only the entry for this address",
            Action::ClearNhrp,
            vec![param(
                Word::Mask,
                "Mask of the entry (default: host)",
                Action::ClearNhrp,
                Vec::new(),
            )],
        )],
    )
    .does(Action::ClearNhrp)
}

/// `nhrp`, `ip nhrp`, `crypto isakmp|ipsec`, `isakmp`, `ipsec`, each with
/// `off` when `on` (IOS's `debug … ` / `undebug …`).
fn debug_areas(on: bool) -> Vec<Node> {
    let area = |name: &'static str, help: &'static str, t: DebugTarget| {
        let mut n = leaf(name, help, Action::Debug(t, on));
        if on {
            n.children
                .push(leaf("off", "Switch it off", Action::Debug(t, false)).hidden());
        }
        n
    };
    vec![
        area("nhrp", "NHRP and GRE", DebugTarget::Nhrp),
        kw(
            "ip",
            "IP",
            vec![area("nhrp", "NHRP and GRE", DebugTarget::Nhrp)],
        )
        .hidden(),
        kw(
            "crypto",
            "IKE and IPsec",
            vec![
                area("isakmp", "IKE (ISAKMP)", DebugTarget::CryptoIsakmp),
                area("ipsec", "IPsec (ESP)", DebugTarget::CryptoIpsec),
            ],
        ),
        area("isakmp", "IKE (ISAKMP)", DebugTarget::CryptoIsakmp).hidden(),
        area("ipsec", "IPsec (ESP)", DebugTarget::CryptoIpsec).hidden(),
    ]
}

fn undebug() -> Vec<Node> {
    let mut v = vec![leaf("all", "Every area", Action::UndebugAll)];
    v.extend(debug_areas(false));
    v
}

fn dmvpn_detail() -> Node {
    leaf(
        "detail",
        "With NHSs, target networks and crypto sessions",
        Action::Show(Request::ShowDmvpnDetail, View::Plain),
    )
}

/// A tunnel interface name as Linux allows it (1-15 bytes, no `/`, `:`
/// or blanks) that starts with a letter.
fn interface_name(w: &str) -> bool {
    (1..=15).contains(&w.len())
        && w.starts_with(|c: char| c.is_ascii_alphabetic())
        && !w.contains(['/', ':', ' ', '\t'])
}

fn tree() -> Vec<Node> {
    let show = |r| Action::Show(r, View::Plain);
    vec![
        kw(
            "show",
            "Show NHRP, DMVPN and crypto state",
            vec![
                kw("ip", "IP", vec![show_nhrp()]),
                kw("ipv6", "IPv6", vec![show_nhrp6()]),
                show_nhrp().hidden(),
                kw(
                    "dmvpn",
                    "DMVPN peers per tunnel",
                    vec![
                        dmvpn_detail(),
                        kw(
                            "interface",
                            "Only one tunnel interface",
                            vec![param(
                                Word::Interface,
                                "Tunnel interface name, e.g. Tunnel0",
                                show(Request::ShowDmvpn),
                                vec![dmvpn_detail()],
                            )],
                        ),
                    ],
                )
                .does(show(Request::ShowDmvpn)),
                kw(
                    "crypto",
                    "IKE and IPsec",
                    vec![
                        kw(
                            "isakmp",
                            "IKE (ISAKMP)",
                            vec![
                                kw(
                                    "sa",
                                    "Phase 1 security associations",
                                    vec![leaf(
                                        "detail",
                                        "Local and remote, algorithms, lifetime",
                                        Action::Show(Request::ShowCryptoIsakmpSa, View::Detail),
                                    )],
                                )
                                .does(show(Request::ShowCryptoIsakmpSa)),
                            ],
                        ),
                        kw(
                            "ipsec",
                            "IPsec (ESP)",
                            vec![leaf(
                                "sa",
                                "ESP SAs per peer with counters",
                                show(Request::ShowCryptoIpsecSa),
                            )],
                        ),
                        kw(
                            "session",
                            "IKE and IPsec state per peer",
                            vec![leaf(
                                "detail",
                                "With lifetimes, packets and drops",
                                Action::Show(Request::ShowCryptoSession, View::Detail),
                            )],
                        )
                        .does(show(Request::ShowCryptoSession)),
                    ],
                ),
            ],
        ),
        kw(
            "clear",
            "Clear dynamic state",
            vec![
                kw("ip", "IP", vec![clear_nhrp()]),
                clear_nhrp().hidden(),
                kw(
                    "crypto",
                    "IKE and IPsec",
                    vec![
                        kw(
                            "sa",
                            "IKE and IPsec SAs",
                            vec![
                                kw(
                                    "peer",
                                    "Of one peer",
                                    vec![param(
                                        Word::Address,
                                        "The peer's NBMA address",
                                        Action::ClearCryptoSa,
                                        Vec::new(),
                                    )],
                                ),
                                param(
                                    Word::Address,
                                    "The peer's NBMA address",
                                    Action::ClearCryptoSa,
                                    Vec::new(),
                                )
                                .hidden(),
                            ],
                        )
                        .does(Action::ClearCryptoSa),
                        kw(
                            "session",
                            "Crypto sessions (IKE and IPsec SAs)",
                            vec![kw(
                                "remote",
                                "Of one peer",
                                vec![param(
                                    Word::Address,
                                    "The peer's NBMA address",
                                    Action::ClearCryptoSession,
                                    Vec::new(),
                                )],
                            )],
                        )
                        .does(Action::ClearCryptoSession),
                    ],
                ),
            ],
        ),
        kw("debug", "Switch debug logging on", debug_areas(true)),
        kw("undebug", "Switch debug logging off", undebug()),
        kw(
            "no",
            "Negate a command",
            vec![kw("debug", "Switch debug logging off", undebug())],
        )
        .hidden(),
    ]
}

/// The words typed, with the byte offset of each in the joined line.
fn line_and_offsets(words: &[String]) -> (String, Vec<usize>) {
    let mut line = String::new();
    let mut at = Vec::new();
    for w in words {
        if !line.is_empty() {
            line.push(' ');
        }
        at.push(line.len());
        line.push_str(w);
    }
    (line, at)
}

fn parse_mask(w: &str) -> Option<u8> {
    let m = u32::from(w.parse::<Ipv4Addr>().ok()?);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

fn help_for(children: &[Node], complete: bool) -> String {
    let mut s = String::new();
    let shown: Vec<&Node> = children.iter().filter(|c| !c.hidden).collect();
    let width = shown.iter().map(|c| label(c.word).len()).max().unwrap_or(0);
    for c in shown {
        s.push_str(&format!("  {:<width$}  {}\n", label(c.word), c.help));
    }
    if complete {
        s.push_str("  <cr>\n");
    }
    s
}

fn label(w: Word) -> &'static str {
    match w {
        Word::Keyword(k) => k,
        Word::Address => "A.B.C.D",
        Word::Mask => "A.B.C.D",
        Word::Interface => "WORD",
    }
}

/// Parses the words of one command line.
pub fn parse(words: &[String]) -> Result<Parsed, ParseError> {
    let (line, at) = line_and_offsets(words);
    let top = tree();
    let mut level: &[Node] = &top;
    let mut action: Option<Action> = None;
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut mask: Option<u8> = None;
    let mut interface: Option<String> = None;
    for (i, w) in words.iter().enumerate() {
        if matches!(w.as_str(), "?" | "-h" | "--help") {
            return Err(ParseError::Help(help_for(level, action.is_some())));
        }
        let lower = w.to_ascii_lowercase();
        let exact = level
            .iter()
            .find(|n| matches!(n.word, Word::Keyword(k) if k == lower));
        let node = match exact {
            Some(n) => n,
            None => {
                let by_prefix: Vec<&Node> = level
                    .iter()
                    .filter(|n| matches!(n.word, Word::Keyword(k) if k.starts_with(&lower)))
                    .collect();
                match by_prefix.as_slice() {
                    [one] => one,
                    [_, _, ..] => {
                        return Err(ParseError::Ambiguous { line });
                    }
                    [] => {
                        let param = level.iter().find(|n| match n.word {
                            Word::Address => w.parse::<IpAddr>().is_ok(),
                            Word::Mask => parse_mask(w).is_some(),
                            Word::Interface => interface_name(w),
                            Word::Keyword(_) => false,
                        });
                        match param {
                            Some(n) => {
                                match n.word {
                                    Word::Address => addresses.push(w.parse().expect("checked")),
                                    Word::Interface => interface = Some(w.clone()),
                                    _ => mask = parse_mask(w),
                                }
                                n
                            }
                            None => return Err(ParseError::Invalid { line, at: at[i] }),
                        }
                    }
                }
            }
        };
        action = node.action;
        level = &node.children;
    }
    let Some(action) = action else {
        return Err(ParseError::Incomplete);
    };
    let one = |r| Parsed {
        requests: vec![r],
        view: View::Plain,
        interface: None,
    };
    Ok(match action {
        Action::Show(r, view) => Parsed {
            requests: vec![r],
            view,
            interface,
        },
        Action::ClearNhrp => one(match addresses.first() {
            Some(a) => Request::ClearNhrpEntry {
                address: *a,
                prefix_len: mask,
            },
            None => Request::ClearNhrp,
        }),
        Action::ClearCryptoSa => one(Request::ClearCryptoSa {
            peer: addresses.first().copied(),
        }),
        Action::ClearCryptoSession => one(Request::ClearCryptoSession {
            remote: addresses.first().copied(),
        }),
        Action::Debug(target, on) => one(Request::Debug { target, on }),
        Action::UndebugAll => Parsed {
            requests: DebugTarget::ALL
                .into_iter()
                .map(|target| Request::Debug { target, on: false })
                .collect(),
            view: View::Plain,
            interface: None,
        },
    })
}

/// Every complete IOS command, keywords in full (`ADDRESS`, `MASK` for
/// parameters): the list `dmvpnctl --help` prints. Aliases are left out.
pub fn commands() -> Vec<String> {
    fn walk(nodes: &[Node], prefix: &str, out: &mut Vec<String>) {
        for n in nodes.iter().filter(|n| !n.hidden) {
            let word = match n.word {
                Word::Keyword(k) => k,
                Word::Address => "ADDRESS",
                Word::Mask => "MASK",
                Word::Interface => "INTERFACE",
            };
            let path = if prefix.is_empty() {
                word.to_string()
            } else {
                format!("{prefix} {word}")
            };
            if n.action.is_some() {
                out.push(path.clone());
            }
            walk(&n.children, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&tree(), "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Parsed, ParseError> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&words)
    }

    fn req(line: &str) -> Request {
        let r = p(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(r.requests.len(), 1, "{line}");
        r.requests[0]
    }

    #[test]
    fn abbreviations() {
        assert_eq!(req("sh dm"), Request::ShowDmvpn);
        assert_eq!(req("sh ip nh"), Request::ShowNhrp);
        assert_eq!(req("show ipv6 nhrp"), Request::ShowIpv6Nhrp);
        assert_eq!(req("sh ip nh nhs"), Request::ShowNhrpNhs);
        assert_eq!(req("sh ip nh t"), Request::ShowNhrpTraffic);
        assert_eq!(req("SH CRY ISA SA"), Request::ShowCryptoIsakmpSa);
        assert_eq!(req("sh cry ips sa"), Request::ShowCryptoIpsecSa);
        assert_eq!(req("sh cry ses"), Request::ShowCryptoSession);
        assert_eq!(req("sh dm det"), Request::ShowDmvpnDetail);
        assert_eq!(
            p("sh cry isa sa det").unwrap().view,
            View::Detail,
            "detail view"
        );
        assert_eq!(p("sh ip nh br").unwrap().view, View::Brief);
        assert_eq!(p("sh cry sess det").unwrap().view, View::Detail);
    }

    #[test]
    fn clear_commands() {
        assert_eq!(req("clear ip nhrp"), Request::ClearNhrp);
        assert_eq!(
            req("clear ip nhrp 192.168.1.2"),
            Request::ClearNhrpEntry {
                address: "192.168.1.2".parse().unwrap(),
                prefix_len: None
            }
        );
        assert_eq!(
            req("cl ip nh 10.2.2.0 255.255.255.0"),
            Request::ClearNhrpEntry {
                address: "10.2.2.0".parse().unwrap(),
                prefix_len: Some(24)
            }
        );
        assert_eq!(
            req("clear crypto session"),
            Request::ClearCryptoSession { remote: None }
        );
        assert_eq!(
            req("clear cry sess rem 172.16.0.2"),
            Request::ClearCryptoSession {
                remote: Some("172.16.0.2".parse().unwrap())
            }
        );
        assert_eq!(
            req("clear crypto sa peer 172.16.0.2"),
            Request::ClearCryptoSa {
                peer: Some("172.16.0.2".parse().unwrap())
            }
        );
        assert_eq!(
            req("clear crypto sa 172.16.0.2"),
            Request::ClearCryptoSa {
                peer: Some("172.16.0.2".parse().unwrap())
            }
        );
    }

    #[test]
    fn debug_commands() {
        assert_eq!(
            req("debug nhrp"),
            Request::Debug {
                target: DebugTarget::Nhrp,
                on: true
            }
        );
        assert_eq!(
            req("deb cry isa off"),
            Request::Debug {
                target: DebugTarget::CryptoIsakmp,
                on: false
            }
        );
        assert_eq!(
            req("no debug crypto ipsec"),
            Request::Debug {
                target: DebugTarget::CryptoIpsec,
                on: false
            }
        );
        assert_eq!(p("u all").unwrap().requests.len(), 3);
        assert_eq!(p("undebug all").unwrap().requests.len(), 3);
    }

    #[test]
    fn ios_errors() {
        assert_eq!(
            p("sh cry i sa").unwrap_err().to_string(),
            "% Ambiguous command:  \"sh cry i sa\""
        );
        assert_eq!(p("sh c").unwrap_err(), ParseError::Incomplete);
        assert_eq!(
            p("show dmvpn foo").unwrap_err().to_string(),
            "show dmvpn foo\n           ^\n% Invalid input detected at '^' marker."
        );
        assert_eq!(
            p("clear crypto sa peer nonsense").unwrap_err(),
            ParseError::Invalid {
                line: "clear crypto sa peer nonsense".into(),
                at: 21
            }
        );
        assert_eq!(p("show crypto").unwrap_err(), ParseError::Incomplete);
        assert_eq!(
            p("show crypto isakmp").unwrap_err().to_string(),
            "% Incomplete command."
        );
        assert_eq!(
            p("clear ip nhrp 10.0.0.0 255.0.255.0").unwrap_err(),
            ParseError::Invalid {
                line: "clear ip nhrp 10.0.0.0 255.0.255.0".into(),
                at: 23
            },
            "not a mask"
        );
        // `d` is `debug` alone at the top (no `dmvpn` there).
        assert!(p("d nhrp").is_ok());
        assert!(matches!(p("debug i"), Err(ParseError::Ambiguous { .. })));
        assert!(p("debug ip nhrp").is_ok(), "an exact keyword wins");
    }

    #[test]
    fn help_lists_what_may_follow() {
        let ParseError::Help(h) = p("show dmvpn ?").unwrap_err() else {
            panic!()
        };
        assert_eq!(
            h,
            "  detail     With NHSs, target networks and crypto sessions\n  interface  Only one tunnel interface\n  <cr>\n"
        );
        let ParseError::Help(h) = p("sh cry --help").unwrap_err() else {
            panic!()
        };
        assert!(h.contains("isakmp") && h.contains("session") && !h.contains("<cr>"));
    }

    #[test]
    fn one_tunnel_interface() {
        let one = |line: &str| {
            let parsed = p(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            (parsed.requests[0], parsed.view, parsed.interface)
        };
        let t1 = Some("Tunnel1".to_string());
        assert_eq!(
            one("show dmvpn interface Tunnel1"),
            (Request::ShowDmvpn, View::Plain, t1.clone())
        );
        assert_eq!(
            one("sh dm int Tunnel1 det"),
            (Request::ShowDmvpnDetail, View::Plain, t1.clone())
        );
        assert_eq!(
            one("sh ip nhrp Tunnel1 brief"),
            (Request::ShowNhrp, View::Brief, t1.clone())
        );
        assert_eq!(
            one("show ip nhrp nhs Tunnel1 detail"),
            (Request::ShowNhrpNhs, View::Plain, t1.clone())
        );
        assert_eq!(
            one("show ip nhrp traffic interface Tunnel1"),
            (Request::ShowNhrpTraffic, View::Plain, t1)
        );
        assert_eq!(one("show dmvpn").2, None);
        assert_eq!(
            p("show dmvpn interface").unwrap_err(),
            ParseError::Incomplete
        );
        assert!(matches!(
            p("show dmvpn interface 0tunnel"),
            Err(ParseError::Invalid { at: 21, .. })
        ));
    }

    #[test]
    fn command_list() {
        let c = commands();
        for want in [
            "show ip nhrp brief",
            "show ip nhrp traffic",
            "show dmvpn detail",
            "show dmvpn interface INTERFACE detail",
            "show ip nhrp INTERFACE brief",
            "show crypto isakmp sa detail",
            "show crypto session detail",
            "clear ip nhrp ADDRESS MASK",
            "clear crypto session remote ADDRESS",
            "undebug all",
        ] {
            assert!(c.iter().any(|x| x == want), "{want} in {c:?}");
        }
    }
}
