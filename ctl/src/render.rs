//! Text shaped like Cisco IOS `show` output, so engineers read it at a glance.
//! Every function returns whole lines, each ending in `\n`, with no trailing
//! blanks.

use crate::proto::*;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Text for any reply (what `dmvpnctl` prints without `--json`).
pub fn render(reply: &Reply) -> String {
    match reply {
        Reply::Nhrp(e) => nhrp(e),
        Reply::NhrpNhs(e) => nhs(e),
        Reply::Dmvpn(i) => dmvpn(i),
        Reply::IsakmpSa(s) => isakmp_sa(s),
        Reply::IpsecSa(s) => ipsec_sa(s),
        // IOS's `clear` commands print nothing.
        Reply::Cleared { .. } => String::new(),
        Reply::Debug { target, on } => format!(
            "{} debugging is {}\n",
            target.ios_name(),
            if *on { "on" } else { "off" }
        ),
    }
}

/// IOS's elapsed-time format: `00:01:23` under a day, then `1d02h`,
/// `2w3d`, `1y4w`.
pub fn duration(secs: u64) -> String {
    const DAY: u64 = 86_400;
    const WEEK: u64 = 7 * DAY;
    const YEAR: u64 = 52 * WEEK;
    if secs < DAY {
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else if secs < WEEK {
        format!("{}d{:02}h", secs / DAY, secs % DAY / 3600)
    } else if secs < YEAR {
        format!("{}w{}d", secs / WEEK, secs % WEEK / DAY)
    } else {
        format!("{}y{}w", secs / YEAR, secs % YEAR / WEEK)
    }
}

/// `0x1A2B3C4D(439041101)`.
pub fn spi(spi: u32) -> String {
    format!("0x{spi:08X}({spi})")
}

/// Strips trailing blanks from every line (column padding at line ends).
fn trim_lines(s: String) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Interfaces in first-seen order, with their items.
fn group_by_interface<'a, T>(
    items: &'a [T],
    iface: impl Fn(&'a T) -> &'a str,
) -> Vec<(&'a str, Vec<&'a T>)> {
    let mut groups: Vec<(&'a str, Vec<&'a T>)> = Vec::new();
    for it in items {
        let name = iface(it);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(it),
            None => groups.push((name, vec![it])),
        }
    }
    groups
}

// ---------------------------------------------------------------- show ip nhrp

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
        let mut flags = e.flags.clone();
        flags.sort();
        flags.dedup();
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

// ---------------------------------------------------------------- show ip nhrp nhs

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

// ---------------------------------------------------------------- show dmvpn

const DMVPN_LEGEND: &str = "\
Legend: Attrb --> S - Static, D - Dynamic, I - Incomplete
        N - NATed, L - Local, X - No Socket
        T1 - Route Installed, T2 - Nexthop-override
        C - CTS Capable, I2 - Temporary
        # Ent --> Number of NHRP entries with same NBMA peer
        NHS Status: E --> Expecting Replies, R --> Responding, W --> Waiting
        UpDn Time --> Up or Down Time for a Tunnel
==========================================================================
";

/// `show dmvpn`.
pub fn dmvpn(interfaces: &[DmvpnInterface]) -> String {
    let mut s = String::from(DMVPN_LEGEND);
    for i in interfaces {
        let family = match i.peers.first().and_then(|p| p.entries.first()) {
            Some(e) if e.tunnel.is_ipv6() => "IPv6",
            _ => "IPv4",
        };
        let role = match i.role {
            DmvpnRole::Hub => "Hub",
            DmvpnRole::Spoke => "Spoke",
            DmvpnRole::HubSpoke => "Hub/Spoke",
        };
        let _ = writeln!(s, "\nInterface: {}, {family} NHRP Details", i.interface);
        let _ = writeln!(s, "Type:{role}, NHRP Peers:{},\n", i.peers.len());
        s.push_str(" # Ent  Peer NBMA Addr Peer Tunnel Add State  UpDn Tm Attrb\n");
        s.push_str(" ----- --------------- --------------- ----- -------- -----\n");
        for p in &i.peers {
            for (n, e) in p.entries.iter().enumerate() {
                let mut attrs = e.attrs.clone();
                attrs.sort();
                attrs.dedup();
                let attrb: String = attrs.iter().map(|a| a.code()).collect();
                let (ent, nbma) = if n == 0 {
                    (p.entries.len().to_string(), p.nbma.to_string())
                } else {
                    (String::new(), String::new())
                };
                let _ = writeln!(
                    s,
                    " {:>5} {:<15} {:>15} {:>5} {:>8} {:>5}",
                    ent,
                    nbma,
                    e.tunnel,
                    e.state.as_str(),
                    duration(e.updn_secs),
                    attrb
                );
            }
        }
    }
    trim_lines(s)
}

// ---------------------------------------------------------------- show crypto isakmp sa

const ISAKMP_CODES: &str = "\
Codes: C - IKE configuration mode, D - Dead Peer Detection
       K - Keepalives, N - NAT-traversal
       T - cTCP encapsulation, X - IKE Extended Authentication
       psk - Preshared key, rsig - RSA signature
       renc - RSA encryption
";

/// `show crypto isakmp sa`; SAs past phase 1 also get IOS's `detail` table.
pub fn isakmp_sa(sas: &[IsakmpSa]) -> String {
    let mut s = String::new();
    for (n, family) in ["IPv4", "IPv6"].into_iter().enumerate() {
        let v6 = n == 1;
        if v6 {
            s.push('\n');
        }
        let _ = writeln!(s, "{family} Crypto ISAKMP SA");
        s.push_str("dst             src             state          conn-id status\n");
        for sa in sas.iter().filter(|sa| sa.dst.is_ipv6() == v6) {
            let _ = writeln!(
                s,
                "{:<15} {:<15} {:<14} {:>7} {}",
                sa.dst,
                sa.src,
                sa.state.as_str(),
                sa.conn_id,
                sa.status.as_str()
            );
        }
    }
    let detailed: Vec<(&IsakmpSa, &IsakmpDetails)> = sas
        .iter()
        .filter_map(|sa| sa.details.as_ref().map(|d| (sa, d)))
        .collect();
    if !detailed.is_empty() {
        s.push('\n');
        s.push_str(ISAKMP_CODES);
        s.push('\n');
        s.push_str(
            "C-id  Local           Remote          I-VRF  Status Encr Hash   Auth DH Lifetime Cap.\n",
        );
        for (sa, d) in detailed {
            let mut cap = String::new();
            if d.dpd {
                cap.push('D');
            }
            if d.nat_t {
                cap.push('N');
            }
            let _ = writeln!(
                s,
                "{:<5} {:<15} {:<15} {:<6} {:<6} {:<4} {:<6} {:<4} {:<2} {:>8} {}",
                sa.conn_id,
                sa.src,
                sa.dst,
                "",
                sa.status.as_str(),
                d.encryption,
                d.hash,
                d.auth,
                d.dh_group,
                duration(d.lifetime_remaining_secs),
                cap
            );
            let _ = writeln!(s, "       Engine-id:Conn-id =  SW:{}", sa.conn_id);
        }
    }
    trim_lines(s)
}

// ---------------------------------------------------------------- show crypto ipsec sa

/// `(addr/mask/prot/port)`: dotted mask for IPv4, prefix length for IPv6.
fn ident(p: &ProxyIdent) -> String {
    let mask = match p.addr {
        IpAddr::V4(_) => {
            let len = u32::from(p.prefix_len.min(32));
            let bits = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            std::net::Ipv4Addr::from(bits).to_string()
        }
        IpAddr::V6(_) => p.prefix_len.to_string(),
    };
    format!("({}/{}/{}/{})", p.addr, mask, p.protocol, p.port)
}

fn esp_sas(s: &mut String, dir: &str, sas: &[EspSa], map_tag: &str) {
    let _ = writeln!(s, "     {dir} esp sas:");
    for sa in sas {
        let _ = writeln!(s, "      spi: {}", spi(sa.spi));
        let _ = writeln!(s, "        transform: {} ,", sa.transform);
        let _ = writeln!(s, "        in use settings ={{{}, }}", sa.mode.as_str());
        let _ = writeln!(
            s,
            "        conn id: {}, flow_id: SW:{}, crypto map: {}",
            sa.conn_id, sa.conn_id, map_tag
        );
        let _ = writeln!(
            s,
            "        sa timing: remaining key lifetime (k/sec): ({}/{})",
            sa.remaining_kb, sa.remaining_secs
        );
        let _ = writeln!(s, "        IV size: {} bytes", sa.iv_size);
        let _ = writeln!(
            s,
            "        replay detection support: {}",
            if sa.replay_detection { "Y" } else { "N" }
        );
        let _ = writeln!(s, "        Status: {}", sa.status.as_str());
    }
    s.push('\n');
    let _ = writeln!(s, "     {dir} ah sas:\n");
    let _ = writeln!(s, "     {dir} pcp sas:");
}

/// `show crypto ipsec sa`.
pub fn ipsec_sa(sas: &[IpsecPeerSa]) -> String {
    let mut s = String::new();
    for (n, (iface, list)) in group_by_interface(sas, |p| p.interface.as_str())
        .into_iter()
        .enumerate()
    {
        if n > 0 {
            s.push('\n');
        }
        let first = list[0];
        let _ = writeln!(s, "interface: {iface}");
        let _ = writeln!(
            s,
            "    Crypto map tag: {}, local addr {}",
            first.crypto_map_tag, first.local_addr
        );
        for p in list {
            let c = &p.counters;
            s.push('\n');
            s.push_str("   protected vrf: (none)\n");
            let _ = writeln!(
                s,
                "   local  ident (addr/mask/prot/port): {}",
                ident(&p.local_ident)
            );
            let _ = writeln!(
                s,
                "   remote ident (addr/mask/prot/port): {}",
                ident(&p.remote_ident)
            );
            let _ = writeln!(s, "   current_peer {} port {}", p.current_peer, p.peer_port);
            s.push_str("     PERMIT, flags={origin_is_acl,}\n");
            let _ = writeln!(
                s,
                "    #pkts encaps: {}, #pkts encrypt: {}, #pkts digest: {}",
                c.encaps, c.encrypt, c.digest
            );
            let _ = writeln!(
                s,
                "    #pkts decaps: {}, #pkts decrypt: {}, #pkts verify: {}",
                c.decaps, c.decrypt, c.verify
            );
            let _ = writeln!(
                s,
                "    #pkts compressed: {}, #pkts decompressed: {}",
                c.compressed, c.decompressed
            );
            let _ = writeln!(
                s,
                "    #pkts not compressed: {}, #pkts compr. failed: {}",
                c.not_compressed, c.compr_failed
            );
            let _ = writeln!(
                s,
                "    #pkts not decompressed: {}, #pkts decompress failed: {}",
                c.not_decompressed, c.decompress_failed
            );
            let _ = writeln!(
                s,
                "    #send errors {}, #recv errors {}",
                c.send_errors, c.recv_errors
            );
            let _ = writeln!(
                s,
                "    #pkts replay failed (rcv): {}, #pkts verify failed: {}",
                c.replay_failed, c.verify_failed
            );
            s.push('\n');
            let _ = writeln!(
                s,
                "     local crypto endpt.: {}, remote crypto endpt.: {}",
                p.local_addr, p.current_peer
            );
            let _ = writeln!(s, "     path mtu {}", p.path_mtu);
            let out = p.outbound.last().map(|sa| sa.spi).unwrap_or(0);
            let _ = writeln!(s, "     current outbound spi: {}", spi(out));
            match p.pfs_dh_group {
                Some(g) => {
                    let _ = writeln!(s, "     PFS (Y/N): Y, DH group: group{g}");
                }
                None => s.push_str("     PFS (Y/N): N, DH group: none\n"),
            }
            s.push('\n');
            esp_sas(&mut s, "inbound", &p.inbound, &p.crypto_map_tag);
            s.push('\n');
            esp_sas(&mut s, "outbound", &p.outbound, &p.crypto_map_tag);
        }
    }
    trim_lines(s)
}
