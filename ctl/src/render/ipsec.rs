//! `show crypto ipsec sa`.

use super::{mask_text, spi, trim_lines};
use crate::proto::*;
use std::fmt::Write as _;

/// `(addr/mask/prot/port)`: dotted mask for IPv4, prefix length for IPv6.
fn ident(p: &ProxyIdent) -> String {
    format!(
        "({}/{}/{}/{})",
        p.addr,
        mask_text(p.addr, p.prefix_len),
        p.protocol,
        p.port
    )
}

/// `udp`: ESP-in-UDP (NAT-T), shown as IOS does (`Transport UDP-Encaps`).
fn esp_sas(s: &mut String, dir: &str, sas: &[EspSa], map_tag: &str, udp: bool) {
    let _ = writeln!(s, "     {dir} esp sas:");
    let encaps = if udp { " UDP-Encaps" } else { "" };
    for sa in sas {
        let _ = writeln!(s, "      spi: {}", spi(sa.spi));
        let _ = writeln!(s, "        transform: {} ,", sa.transform);
        let _ = writeln!(
            s,
            "        in use settings ={{{}{encaps}, }}",
            sa.mode.as_str()
        );
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

/// The interface's drops: IOS's `#send errors`/`#recv errors` totals,
/// then each reason that counted something, as `#pkts REASON (send) N`.
fn interface_errors(s: &mut String, i: &IpsecInterface) {
    let send: u64 = i.send_errors.iter().map(|c| c.count).sum();
    let recv: u64 = i.recv_errors.iter().map(|c| c.count).sum();
    let _ = writeln!(s, "    #send errors {send}, #recv errors {recv}");
    let items: Vec<String> = i
        .send_errors
        .iter()
        .map(|c| (c, "send"))
        .chain(i.recv_errors.iter().map(|c| (c, "rcv")))
        .filter(|(c, _)| c.count > 0)
        .map(|(c, dir)| format!("#pkts {} ({dir}) {}", c.label, c.count))
        .collect();
    for pair in items.chunks(2) {
        let _ = writeln!(s, "    {}", pair.join(", "));
    }
}

fn peer_block(s: &mut String, p: &IpsecPeerSa) {
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
    // ESP goes in UDP exactly when the peer's port is not IKE's 500.
    let udp = p.peer_port != 500;
    esp_sas(s, "inbound", &p.inbound, &p.crypto_map_tag, udp);
    s.push('\n');
    esp_sas(s, "outbound", &p.outbound, &p.crypto_map_tag, udp);
}

/// `show crypto ipsec sa`: per interface, its data-plane drops, then one
/// block per peer.
pub fn ipsec_sa(r: &IpsecSaReport) -> String {
    let mut s = String::new();
    let mut names: Vec<&str> = r.interfaces.iter().map(|i| i.interface.as_str()).collect();
    for p in &r.peers {
        if !names.contains(&p.interface.as_str()) {
            names.push(&p.interface);
        }
    }
    for (n, name) in names.into_iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        let iface = r.interfaces.iter().find(|i| i.interface == name);
        let peers: Vec<&IpsecPeerSa> = r.peers.iter().filter(|p| p.interface == name).collect();
        let (tag, local) = match (iface, peers.first()) {
            (Some(i), _) => (i.crypto_map_tag.clone(), i.local_addr),
            (None, Some(p)) => (p.crypto_map_tag.clone(), p.local_addr),
            (None, None) => continue,
        };
        let _ = writeln!(s, "interface: {name}");
        let _ = writeln!(s, "    Crypto map tag: {tag}, local addr {local}");
        if let Some(i) = iface {
            interface_errors(&mut s, i);
        }
        for p in peers {
            peer_block(&mut s, p);
        }
    }
    trim_lines(s)
}
