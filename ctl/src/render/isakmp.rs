//! `show crypto isakmp sa [detail]`.

use super::{duration, trim_lines};
use crate::proto::*;
use std::fmt::Write as _;

const CODES: &str = "\
Codes: C - IKE configuration mode, D - Dead Peer Detection
       K - Keepalives, N - NAT-traversal
       T - cTCP encapsulation, X - IKE Extended Authentication
       psk - Preshared key, rsig - RSA signature
       renc - RSA encryption
";

const FAMILIES: [(&str, bool); 2] = [("IPv4", false), ("IPv6", true)];

/// `show crypto isakmp sa`: IOS prints the responder as `dst` and the
/// initiator as `src`, so an SA the peer started has this node as `dst`.
pub fn isakmp_sa(sas: &[IsakmpSa]) -> String {
    let mut s = String::new();
    for (family, v6) in FAMILIES {
        if v6 {
            s.push('\n');
        }
        let _ = writeln!(s, "{family} Crypto ISAKMP SA");
        let rows: Vec<&IsakmpSa> = sas.iter().filter(|sa| sa.local.is_ipv6() == v6).collect();
        // IOS prints the column titles under IPv4 always, under IPv6 only
        // when there is an IPv6 SA.
        if !v6 || !rows.is_empty() {
            s.push_str("dst             src             state          conn-id status\n");
        }
        for sa in rows {
            let _ = writeln!(
                s,
                "{:<15} {:<15} {:<14} {:>7} {}",
                sa.dst(),
                sa.src(),
                sa.state.as_str(),
                sa.conn_id,
                sa.status.as_str()
            );
        }
    }
    s.push('\n');
    trim_lines(s)
}

/// The `D`/`N` capability letters.
pub(super) fn capabilities(d: &IsakmpDetails) -> String {
    let mut cap = String::new();
    if d.dpd {
        cap.push('D');
    }
    if d.nat_t {
        cap.push('N');
    }
    cap
}

/// `show crypto isakmp sa detail`: local and remote addresses (not
/// initiator and responder), the negotiated algorithms in IOS's words and
/// the lifetime left.
pub fn isakmp_sa_detail(sas: &[IsakmpSa]) -> String {
    let mut s = String::from(CODES);
    for (family, v6) in FAMILIES {
        let _ = writeln!(s, "{family} Crypto ISAKMP SA\n");
        let rows: Vec<&IsakmpSa> = sas.iter().filter(|sa| sa.local.is_ipv6() == v6).collect();
        if rows.is_empty() {
            continue;
        }
        s.push_str(
            "C-id  Local           Remote          I-VRF  Status Encr Hash   Auth DH Lifetime Cap.\n\n",
        );
        for sa in rows {
            let (encr, hash, auth, dh, life, cap) = match &sa.details {
                Some(d) => (
                    d.encryption.as_str(),
                    d.hash.as_str(),
                    d.auth.as_str(),
                    d.dh_group.to_string(),
                    duration(d.lifetime_remaining_secs),
                    capabilities(d),
                ),
                None => ("", "", "", String::new(), String::new(), String::new()),
            };
            let _ = writeln!(
                s,
                "{:<5} {:<15} {:<15} {:<6} {:<6} {:<4} {:<6} {:<4} {:<2} {:>8} {}",
                sa.conn_id,
                sa.local,
                sa.remote,
                "",
                sa.status.as_str(),
                encr,
                hash,
                auth,
                dh,
                life,
                cap
            );
            // IOS's engine numbers its connections from 1 where C-ids start at 1001.
            let engine = if sa.conn_id > 1000 {
                sa.conn_id - 1000
            } else {
                sa.conn_id
            };
            let _ = writeln!(s, "       Engine-id:Conn-id =  SW:{engine}\n");
        }
    }
    trim_lines(s)
}
