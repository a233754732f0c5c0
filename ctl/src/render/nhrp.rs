//! `show ip nhrp [brief]`, `show ip nhrp nhs`, `show ip nhrp traffic`.

use super::{duration, group_by_interface, trim_lines};
use crate::proto::*;
use std::fmt::Write as _;

fn sorted_flags(e: &NhrpEntry) -> Vec<NhrpFlag> {
    let mut flags = e.flags.clone();
    flags.sort();
    flags.dedup();
    flags
}

/// `show ip nhrp`.
pub fn nhrp(entries: &[NhrpEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        let created = duration(e.created_secs);
        let expire = match e.expire_secs {
            Some(x) => format!("expire {}", duration(x)),
            None => "never expire".to_string(),
        };
        match e.via {
            Some(via) => {
                let _ = writeln!(s, "{}/{} via {}", e.prefix, e.prefix_len, via);
                let _ = writeln!(s, "   {} created {}, {}", e.interface, created, expire);
            }
            None => {
                let _ = writeln!(
                    s,
                    "{}/{}, {} created {}, {}",
                    e.prefix, e.prefix_len, e.interface, created, expire
                );
            }
        }
        let flags = sorted_flags(e);
        let words: Vec<&str> = flags
            .iter()
            .filter(|f| **f != NhrpFlag::NoSocket)
            .map(|f| f.as_str())
            .collect();
        let _ = writeln!(
            s,
            "   Type: {}, Flags: {}",
            e.entry_type.as_str(),
            words.join(" ")
        );
        if let Some(nbma) = e.nbma {
            let _ = writeln!(s, "   NBMA address: {nbma}");
            if let Some(claimed) = e.claimed_nbma.filter(|c| *c != nbma) {
                let _ = writeln!(s, "    (Claimed NBMA address: {claimed})");
            }
        }
        if flags.contains(&NhrpFlag::NoSocket) {
            let _ = writeln!(s, "    (no-socket)");
        }
        if let Some(h) = e.cache_hits {
            let _ = writeln!(s, "   Cache hits: {h}");
        }
    }
    trim_lines(s)
}

const BRIEF_HEADER: &str = "\
****************************************************************************
    NOTE: Link-Local, No-socket and Incomplete entries are not displayed
****************************************************************************
Legend: Type --> S - Static, D - Dynamic
        Flags --> u - unique, r - registered, e - temporary, c - claimed
        a - authoritative, t - route
============================================================================

Intf     NextHop Address                                    NBMA Address
         Target Network                              T/Flag
-------- ------------------------------------------- ------ ----------------
";

/// IOS's short interface name: `Tunnel0` → `Tu0`.
fn short_interface(name: &str) -> String {
    match name.strip_prefix("Tunnel") {
        Some(n) => format!("Tu{n}"),
        None => name.to_string(),
    }
}

/// `show ip nhrp brief`: one pair of lines per usable entry.
pub fn nhrp_brief(entries: &[NhrpEntry]) -> String {
    let mut s = String::from(BRIEF_HEADER);
    for e in entries {
        let flags = sorted_flags(e);
        let link_local = match e.prefix {
            std::net::IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
            std::net::IpAddr::V4(_) => false,
        };
        if matches!(
            e.entry_type,
            NhrpEntryType::Incomplete | NhrpEntryType::Negative
        ) || flags.contains(&NhrpFlag::NoSocket)
            || link_local
        {
            continue;
        }
        let ty = match e.entry_type {
            NhrpEntryType::Static => 'S',
            _ => 'D',
        };
        let mut letters: String = flags.iter().filter_map(|f| f.brief()).collect();
        if e.claimed_nbma.is_some_and(|c| Some(c) != e.nbma) {
            letters.push('c');
        }
        let via = e.via.map(|v| v.to_string()).unwrap_or_default();
        let nbma = e.nbma.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<8} {:<43} {:<6} {}",
            short_interface(&e.interface),
            via,
            "",
            nbma
        );
        let target = format!("{}/{}", e.prefix, e.prefix_len);
        let _ = writeln!(s, "{:<8} {:<43} {ty}/{letters}", "", target);
    }
    trim_lines(s)
}

/// `show ip nhrp nhs` (IOS's `detail` form: it carries the counters).
pub fn nhs(entries: &[NhsEntry]) -> String {
    let mut s = String::from("Legend: E=Expecting replies, R=Responding, W=Waiting, D=Dynamic\n");
    for (iface, list) in group_by_interface(entries, |e| e.interface.as_str()) {
        let _ = writeln!(s, "{iface}:");
        for e in list {
            let mut line = format!("{}  {}", e.nhs, e.state.letters());
            if let Some(nbma) = e.nbma {
                let _ = write!(line, " NBMA Address: {nbma}");
            }
            let _ = write!(
                line,
                " priority = {} cluster = {}  req-sent {}  req-failed {}  repl-recv {}",
                e.priority, e.cluster, e.requests_sent, e.requests_failed, e.replies_received
            );
            if let Some(ago) = e.last_reply_secs {
                let _ = write!(line, " ({} ago)", duration(ago));
            }
            if let Some(r) = &e.refused {
                let _ = write!(line, "  refused: code {} ({})", r.code, r.reason);
            }
            let _ = writeln!(s, "{line}");
        }
    }
    s.push_str("\nPending Registration Requests:\n");
    for e in entries {
        let Some(id) = e.pending_request_id else {
            continue;
        };
        let _ = write!(s, "Registration Request: Reqid {id}");
        if let Some(r) = e.retransmit_secs {
            let _ = write!(s, ", Ret {r}");
        }
        let _ = write!(s, "  NHS {}", e.nhs);
        if !e.state.responding {
            s.push_str(" expired");
        }
        let _ = write!(s, " (Tunnel: {}", e.nhs);
        if let Some(nbma) = e.nbma {
            let _ = write!(s, " NBMA: {nbma}");
        }
        s.push_str(")\n");
    }
    trim_lines(s)
}

/// `N Label` items, three to a line, under a `Sent:`/`Rcvd:` heading.
fn counter_grid(s: &mut String, items: &[(u64, &str)]) {
    for row in items.chunks(3) {
        let cells: Vec<String> = row.iter().map(|(n, l)| format!("{n} {l}")).collect();
        let _ = writeln!(s, "         {}", cells.join("  "));
    }
}

fn type_grid(s: &mut String, heading: &str, c: &NhrpTypeCounts) {
    let _ = writeln!(s, "   {heading}: Total {}", c.total());
    counter_grid(
        s,
        &[
            (c.resolution_request, "Resolution Request"),
            (c.resolution_reply, "Resolution Reply"),
            (c.registration_request, "Registration Request"),
            (c.registration_reply, "Registration Reply"),
            (c.purge_request, "Purge Request"),
            (c.purge_reply, "Purge Reply"),
            (c.error_indication, "Error Indication"),
            (c.traffic_indication, "Traffic Indication"),
            // A Cisco message dmvpnd neither sends nor accepts.
            (0, "Redirect Suppress"),
        ],
    );
}

/// `show ip nhrp traffic`: IOS's sent/received grid per tunnel, then the
/// drops by reason.
pub fn nhrp_traffic(tunnels: &[NhrpTraffic]) -> String {
    let mut s = String::new();
    for t in tunnels {
        let usage = if t.max_send_packets == 0 {
            0
        } else {
            u64::from(t.max_send_used) * 100 / u64::from(t.max_send_packets)
        };
        let _ = writeln!(
            s,
            "{}: Max-send limit:{}Pkts/{}Sec, Usage:{}%",
            t.interface, t.max_send_packets, t.max_send_secs, usage
        );
        type_grid(&mut s, "Sent", &t.sent);
        type_grid(&mut s, "Rcvd", &t.received);
        let total: u64 = t.drops.iter().map(|c| c.count).sum();
        let _ = writeln!(s, "   Dropped: Total {total}");
        // The reasons that dropped something (`--json` has every one).
        let items: Vec<(u64, &str)> = t
            .drops
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| (c.count, c.label.as_str()))
            .collect();
        counter_grid(&mut s, &items);
    }
    trim_lines(s)
}
