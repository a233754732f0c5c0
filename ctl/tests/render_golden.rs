//! IOS-shaped text for fixed snapshots, compared with `tests/golden/*.txt`.
//! After a deliberate format change, regenerate with `UPDATE_GOLDEN=1` and
//! review the diff.

mod common;

use dmvpn_ctl::proto::{DebugTarget, Reply};
use dmvpn_ctl::render;
use std::path::PathBuf;

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, want, "{name} differs from {}", path.display());
}

#[test]
fn show_ip_nhrp() {
    check("show_ip_nhrp.txt", &render::nhrp(&common::nhrp()));
}

#[test]
fn show_ip_nhrp_nhs() {
    check("show_ip_nhrp_nhs.txt", &render::nhs(&common::nhs()));
}

#[test]
fn show_dmvpn() {
    check("show_dmvpn.txt", &render::dmvpn(&common::dmvpn()));
}

#[test]
fn show_crypto_isakmp_sa() {
    check(
        "show_crypto_isakmp_sa.txt",
        &render::isakmp_sa(&common::isakmp()),
    );
}

#[test]
fn show_crypto_ipsec_sa() {
    check(
        "show_crypto_ipsec_sa.txt",
        &render::ipsec_sa(&common::ipsec()),
    );
}

#[test]
fn empty_tables() {
    assert_eq!(render::nhrp(&[]), "");
    assert_eq!(render::ipsec_sa(&[]), "");
    assert_eq!(
        render::isakmp_sa(&[]),
        "IPv4 Crypto ISAKMP SA\n\
         dst             src             state          conn-id status\n\
         \n\
         IPv6 Crypto ISAKMP SA\n\
         dst             src             state          conn-id status\n"
    );
    assert!(render::dmvpn(&[]).starts_with("Legend: Attrb --> S - Static"));
}

#[test]
fn debug_and_clear() {
    let on = Reply::Debug {
        target: DebugTarget::Nhrp,
        on: true,
    };
    assert_eq!(render::render(&on), "NHRP protocol debugging is on\n");
    let off = Reply::Debug {
        target: DebugTarget::CryptoIsakmp,
        on: false,
    };
    assert_eq!(render::render(&off), "Crypto ISAKMP debugging is off\n");
    assert_eq!(render::render(&Reply::Cleared { count: 5 }), "");
}

#[test]
fn time_and_spi_formats() {
    assert_eq!(render::duration(0), "00:00:00");
    assert_eq!(render::duration(83), "00:01:23");
    assert_eq!(render::duration(86_399), "23:59:59");
    assert_eq!(render::duration(93_784), "1d02h");
    assert_eq!(render::duration(9 * 86_400 + 5), "1w2d");
    assert_eq!(render::duration(53 * 7 * 86_400), "1y1w");
    assert_eq!(render::spi(0x1A2B3C4D), "0x1A2B3C4D(439041101)");
    assert_eq!(render::spi(0xEA8C83C1), "0xEA8C83C1(3935077313)");
    assert_eq!(render::spi(0x45), "0x00000045(69)");
}

/// docs/operations.md shows these very outputs.
#[test]
fn operations_doc_matches() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/operations.md")).unwrap();
    for f in [
        "show_ip_nhrp.txt",
        "show_ip_nhrp_nhs.txt",
        "show_dmvpn.txt",
        "show_crypto_isakmp_sa.txt",
        "show_crypto_ipsec_sa.txt",
    ] {
        let text = std::fs::read_to_string(root.join("tests/golden").join(f)).unwrap();
        assert!(
            doc.contains(&format!("```\n{text}```\n")),
            "{f} not in operations.md"
        );
    }
}
