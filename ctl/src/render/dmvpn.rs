//! `show dmvpn [detail]`.

use super::{duration, session, trim_lines};
use crate::proto::*;
use std::fmt::Write as _;

const LEGEND: &str = "\
Legend: Attrb --> S - Static, D - Dynamic, I - Incomplete
        N - NATed, L - Local, X - No Socket
        T1 - Route Installed, T2 - Nexthop-override
        C - CTS Capable, I2 - Temporary
        # Ent --> Number of NHRP entries with same NBMA peer
        NHS Status: E --> Expecting Replies, R --> Responding, W --> Waiting
        UpDn Time --> Up or Down Time for a Tunnel
==========================================================================
";

fn role(r: DmvpnRole) -> &'static str {
    match r {
        DmvpnRole::Hub => "Hub",
        DmvpnRole::Spoke => "Spoke",
        DmvpnRole::HubSpoke => "Hub/Spoke",
    }
}

fn attrb(e: &DmvpnPeerEntry) -> String {
    let mut attrs = e.attrs.clone();
    attrs.sort();
    attrs.dedup();
    attrs.iter().map(|a| a.code()).collect()
}

fn nbma(p: &DmvpnPeer) -> String {
    p.nbma
        .map_or_else(|| "UNKNOWN".to_string(), |a| a.to_string())
}

/// `show dmvpn`.
pub fn dmvpn(interfaces: &[DmvpnInterface]) -> String {
    let mut s = String::from(LEGEND);
    for i in interfaces {
        let family = match i.peers.first().and_then(|p| p.entries.first()) {
            Some(e) if e.tunnel.is_ipv6() => "IPv6",
            _ => "IPv4",
        };
        let _ = writeln!(s, "\nInterface: {}, {family} NHRP Details", i.interface);
        let _ = writeln!(s, "Type:{}, NHRP Peers:{},\n", role(i.role), i.peers.len());
        s.push_str(" # Ent  Peer NBMA Addr Peer Tunnel Add State  UpDn Tm Attrb\n");
        s.push_str(" ----- --------------- --------------- ----- -------- -----\n");
        for p in &i.peers {
            for (n, e) in p.entries.iter().enumerate() {
                let (mut ent, mut addr) = if n == 0 {
                    (p.entries.len().to_string(), nbma(p))
                } else {
                    (String::new(), String::new())
                };
                if addr.len() > 15 {
                    // A long (IPv6) NBMA address gets a line of its own.
                    let _ = writeln!(s, " {ent:>5} {addr}");
                    ent.clear();
                    addr.clear();
                }
                let _ = writeln!(
                    s,
                    " {:>5} {:<15} {:>15} {:>5} {:>8} {:>5}",
                    ent,
                    addr,
                    e.tunnel,
                    e.state.as_str(),
                    duration(e.updn_secs),
                    attrb(e)
                );
            }
        }
    }
    trim_lines(s)
}

/// The interface block of `show dmvpn detail`.
fn interface_header(s: &mut String, i: &DmvpnInterface, nhs: &[NhsEntry]) {
    let addr = i.tunnel_addr.map(|a| a.to_string()).unwrap_or_default();
    let line = if i.line_protocol_up { "up" } else { "down" };
    let _ = writeln!(
        s,
        "\nInterface {} is up/{line}, Addr. is {addr}, VRF \"\"",
        i.interface
    );
    let src = i.source.map(|a| a.to_string()).unwrap_or_default();
    let (dst, transport) = match i.destination {
        Some(d) => (d.to_string(), "GRE/IP"),
        None => ("MGRE".to_string(), "multi-GRE/IP"),
    };
    let _ = writeln!(s, "   Tunnel Src./Dest. addr: {src}/{dst}, Tunnel VRF \"\"");
    let _ = writeln!(
        s,
        "   Protocol/Transport: \"{transport}\", Protect \"{}\"",
        i.protection.as_deref().unwrap_or("")
    );
    let control = if i.if_state { "Enabled" } else { "Disabled" };
    let _ = writeln!(s, "   Interface State Control: {control}");
    s.push_str("   nhrp event-publisher : Disabled\n");
    let mine: Vec<&NhsEntry> = nhs.iter().filter(|n| n.interface == i.interface).collect();
    if !mine.is_empty() {
        s.push_str("\nIPv4 NHS:\n");
        for n in mine {
            let _ = writeln!(
                s,
                "{}  {} priority = {} cluster = {}",
                n.nhs,
                n.state.letters(),
                n.priority,
                n.cluster
            );
        }
    }
    let _ = writeln!(
        s,
        "Type:{}, Total NBMA Peers (v4/v6): {}\n",
        role(i.role),
        i.peers.len()
    );
}

/// `show dmvpn detail`: each interface with its NHSs and peers (every
/// entry with its target network), then the crypto sessions.
pub fn dmvpn_detail(d: &DmvpnDetail) -> String {
    let mut s = String::from(LEGEND);
    for i in &d.interfaces {
        interface_header(&mut s, i, &d.nhs);
        s.push_str(
            "# Ent  Peer NBMA Addr Peer Tunnel Add State  UpDn Tm Attrb    Target Network\n",
        );
        s.push_str(
            "----- --------------- --------------- ----- -------- ----- -----------------\n",
        );
        for p in &i.peers {
            let addr = nbma(p);
            for (n, e) in p.entries.iter().enumerate() {
                let ent = if n == 0 {
                    p.entries.len().to_string()
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "{:>5} {:<15} {:>15} {:>5} {:>8} {:>5} {:>18}",
                    ent,
                    addr,
                    e.tunnel,
                    e.state.as_str(),
                    duration(e.updn_secs),
                    attrb(e),
                    format!("{}/{}", e.target, e.target_len)
                );
            }
        }
    }
    s.push_str("\n\nCrypto Session Details:\n");
    s.push_str(&"-".repeat(80));
    s.push('\n');
    for c in &d.sessions {
        s.push('\n');
        session::dmvpn_block(&mut s, c);
    }
    s.push_str("\nPending DMVPN Sessions:\n");
    trim_lines(s)
}
