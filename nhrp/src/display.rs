//! One-line text form of a packet, used by the `decode` example and by
//! debug logs. The format is stable (documented in the crate README):
//!
//! ```text
//! TYPE hop N id ID src-nbma A SRC -> DST flags 0xFFFF [cie(...)]... [ext NAME,...]
//! ```
//!
//! Error indications print `error CODE offset OFF` instead of `id ID`,
//! traffic indications `code CODE`. Each CIE prints as
//! `cie(code C pl P mtu M htime H nbma A proto A)`; addresses that are
//! empty print `-`. Extensions print as a comma-separated list of names;
//! CIE-carrying extensions add their CIEs' `nbma/proto` in brackets.
//! Authentication data is never printed.

use std::fmt::Write;

use crate::ext::ExtBody;
use crate::wire::{Body, Cie, Packet, addr_to_string};

fn cie_text(c: &Cie) -> String {
    format!(
        "cie(code {} pl {} mtu {} htime {} nbma {} proto {})",
        c.code,
        c.prefix_len,
        c.mtu,
        c.holding_time,
        addr_to_string(&c.nbma),
        addr_to_string(&c.proto)
    )
}

/// The decoder's one-line description of `p`.
pub fn packet_line(p: &Packet) -> String {
    let mut s = String::new();
    let _ = write!(s, "{} hop {}", p.packet_type.short_name(), p.hop_count);
    match &p.body {
        Body::Cies { request_id, .. } => {
            let _ = write!(s, " id {request_id}");
        }
        Body::Error { code, offset, .. } => {
            let _ = write!(s, " error {code} offset {offset}");
        }
        Body::Traffic { code, .. } => {
            let _ = write!(s, " code {code}");
        }
    }
    let _ = write!(
        s,
        " src-nbma {} {} -> {} flags {:#06x}",
        addr_to_string(&p.src_nbma),
        addr_to_string(&p.src_proto),
        addr_to_string(&p.dst_proto),
        p.flags
    );
    for c in p.cies() {
        s.push(' ');
        s.push_str(&cie_text(c));
    }
    if !p.extensions.is_empty() {
        let names: Vec<String> = p
            .extensions
            .iter()
            .map(|e| {
                let mut n = e.name();
                let cies = e.cies();
                if !cies.is_empty() {
                    let list: Vec<String> = cies
                        .iter()
                        .map(|c| {
                            format!("{}/{}", addr_to_string(&c.nbma), addr_to_string(&c.proto))
                        })
                        .collect();
                    let _ = write!(n, "[{}]", list.join(" "));
                }
                if let ExtBody::Authentication { auth_type, .. } = &e.body {
                    let _ = write!(n, "[type {auth_type}]");
                }
                n
            })
            .collect();
        let _ = write!(s, " ext {}", names.join(","));
    }
    s
}
