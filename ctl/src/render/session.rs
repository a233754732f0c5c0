//! `show crypto session [detail]`, and the session blocks of `show dmvpn
//! detail`.

use super::{duration, is_host, mask_text, trim_lines};
use crate::proto::*;
use std::fmt::Write as _;

const CODES: &str = "\
Code: C - IKE Configuration mode, D - Dead Peer Detection
K - Keepalives, N - NAT-traversal, T - cTCP encapsulation
X - IKE Extended Authentication, F - IKE Fragmentation
R - IKE Auto Reconnect, U - IKE Dynamic Route Update
S - SIP VPN
";

/// `host 10.0.0.1` or `10.0.0.0/255.255.255.0`.
fn endpoint(p: &ProxyIdent) -> String {
    if is_host(p.addr, p.prefix_len) {
        format!("host {}", p.addr)
    } else {
        format!("{}/{}", p.addr, mask_text(p.addr, p.prefix_len))
    }
}

/// `permit 47 host A host B` (`ip` for any protocol).
fn flow(f: &SessionFlow) -> String {
    let proto = match f.local.protocol {
        0 => "ip".to_string(),
        p => p.to_string(),
    };
    format!(
        "permit {proto} {} {}",
        endpoint(&f.local),
        endpoint(&f.remote)
    )
}

fn ike_sa(s: &mut String, sa: &SessionIkeSa, detail: bool) {
    let _ = writeln!(
        s,
        "  IKEv1 SA: local {}/{} remote {}/{} {}",
        sa.local,
        sa.local_port,
        sa.remote,
        sa.remote_port,
        if sa.active { "Active" } else { "Inactive" }
    );
    if detail {
        let life = if sa.lifetime_secs == 0 {
            "0".to_string()
        } else {
            duration(sa.lifetime_secs)
        };
        let caps = if sa.capabilities.is_empty() {
            "(none)"
        } else {
            &sa.capabilities
        };
        let _ = writeln!(
            s,
            "          Capabilities:{caps} connid:{} lifetime:{life}",
            sa.conn_id
        );
    }
}

fn flow_counters(s: &mut String, f: &SessionFlow) {
    let _ = writeln!(
        s,
        "        Inbound:  #pkts dec'ed {} drop {} life (KB/Sec) {}/{}",
        f.decrypted, f.decrypt_drops, f.inbound_life_kb, f.inbound_life_secs
    );
    let _ = writeln!(
        s,
        "        Outbound: #pkts enc'ed {} drop {} life (KB/Sec) {}/{}",
        f.encrypted, f.encrypt_drops, f.outbound_life_kb, f.outbound_life_secs
    );
}

fn session(s: &mut String, c: &CryptoSession, detail: bool) {
    let _ = writeln!(s, "Interface: {}", c.interface);
    if detail && let Some(up) = c.uptime_secs {
        let _ = writeln!(s, "Uptime: {}", duration(up));
    }
    let _ = writeln!(s, "Session status: {}", c.status.as_str());
    if detail {
        let _ = writeln!(
            s,
            "Peer: {} port {} fvrf: (none) ivrf: (none)",
            c.peer, c.peer_port
        );
        let _ = writeln!(
            s,
            "      Phase1_id: {}",
            c.phase1_id.as_deref().unwrap_or("(none)")
        );
        s.push_str("      Desc: (none)\n");
    } else {
        let _ = writeln!(s, "Peer: {} port {}", c.peer, c.peer_port);
    }
    for sa in &c.ike_sas {
        s.push_str("  Session ID: 0\n");
        ike_sa(s, sa, detail);
    }
    for f in &c.flows {
        let _ = writeln!(s, "  IPSEC FLOW: {}", flow(f));
        let _ = writeln!(
            s,
            "        Active SAs: {}, origin: crypto map",
            f.active_sas
        );
        if detail {
            flow_counters(s, f);
        }
    }
    s.push('\n');
}

/// `show crypto session`.
pub fn crypto_session(sessions: &[CryptoSession]) -> String {
    let mut s = String::from("Crypto session current status\n\n");
    for c in sessions {
        session(&mut s, c, false);
    }
    trim_lines(s)
}

/// `show crypto session detail`: adds uptime, identity, capabilities,
/// connection IDs, lifetimes and the packets (and drops) of each flow.
pub fn crypto_session_detail(sessions: &[CryptoSession]) -> String {
    let mut s = String::from("Crypto session current status\n\n");
    s.push_str(CODES);
    s.push('\n');
    for c in sessions {
        session(&mut s, c, true);
    }
    trim_lines(s)
}

/// A handle for the session line of `show dmvpn detail` (IOS prints an
/// internal pointer there): the peer's IPv4 address in hex.
fn handle(c: &CryptoSession) -> u32 {
    match c.peer {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    }
}

/// One session as `show dmvpn detail` lists it.
pub(super) fn dmvpn_block(s: &mut String, c: &CryptoSession) {
    let _ = writeln!(s, "Interface: {}", c.interface);
    let _ = writeln!(s, "Session: [0x{:08X}]", handle(c));
    for sa in &c.ike_sas {
        ike_sa(s, sa, true);
    }
    let _ = writeln!(s, "  Crypto Session Status: {}", c.status.as_str());
    let _ = writeln!(
        s,
        "  fvrf: (none), Phase1_id: {}",
        c.phase1_id.as_deref().unwrap_or("(none)")
    );
    for f in &c.flows {
        let _ = writeln!(s, "  IPSEC FLOW: {}", flow(f));
        let _ = writeln!(
            s,
            "        Active SAs: {}, origin: crypto map",
            f.active_sas
        );
        flow_counters(s, f);
        if let Some(spi) = f.outbound_spi {
            let _ = writeln!(
                s,
                "   Outbound SPI : 0x{spi:>8X}, transform : {}",
                f.transform
            );
        }
        s.push_str("    Socket State: Open\n");
    }
}
