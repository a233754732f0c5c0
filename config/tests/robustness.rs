//! The loader and the importer never panic, and what they print reads back
//! to the same configuration.

use dmvpn_config::{Config, ImportOptions, import_ios};
use proptest::prelude::*;
use std::path::Path;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name),
    )
    .unwrap()
}

#[test]
fn examples_round_trip() {
    for name in ["hub.toml", "spoke1.toml", "spoke2.toml"] {
        let c = Config::from_str(&example(name), name).unwrap().config;
        let again = Config::from_str(&c.to_toml(), "again").unwrap().config;
        assert_eq!(c.to_toml(), again.to_toml(), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn loader_never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
        let _ = Config::from_str(&s, "fuzz");
    }

    /// Damage an example at one place: a diagnostic or a config, never a panic,
    /// and every diagnostic is located inside the file.
    #[test]
    fn loader_never_panics_on_damaged_examples(
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        junk in "[\\[\\]=\"'.#a-z0-9 \\n{},/:-]{0,6}",
        cut in any::<bool>(),
    ) {
        let text = example(["hub.toml", "spoke1.toml", "spoke2.toml"][which]);
        let mut pos = at.index(text.len());
        while !text.is_char_boundary(pos) {
            pos -= 1;
        }
        let end = if cut { (pos + junk.len()).min(text.len()) } else { pos };
        let mut end = end;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let damaged = format!("{}{}{}", &text[..pos], junk, &text[end..]);
        let lines = damaged.lines().count().max(1);
        if let Err(e) = Config::from_str(&damaged, "d") {
            prop_assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                prop_assert!(d.line >= 1 && d.line <= lines + 1, "{d} (of {lines} lines)");
            }
        }
    }

    /// Any successful import validates and reads back identically.
    #[test]
    fn import_output_round_trips(
        lines in prop::collection::vec(prop::sample::select(vec![
            "hostname r1", "interface Tunnel0", " ip address 192.168.1.2 255.255.255.0",
            " ip nhrp network-id 1", " ip nhrp nhs 192.168.1.1", " ip nhrp map 192.168.1.1 172.16.0.1",
            " ip nhrp authentication abcdefghijk", " tunnel source 172.16.0.2", " tunnel mode gre multipoint",
            " tunnel key 7", " tunnel protection ipsec profile P", "crypto isakmp policy 10",
            " hash md5", " authentication pre-share", " group 5", " encr aes 256",
            "crypto isakmp key k address 0.0.0.0 0.0.0.0", "crypto ipsec transform-set T esp-aes esp-sha-hmac",
            " mode transport", "crypto ipsec profile P", " set transform-set T", " set pfs group2",
            "ip route 10.0.0.0 255.0.0.0 Tunnel0", "!", "end", "interface FastEthernet0/0",
            " ip address 172.16.0.2 255.255.255.0", " shutdown", "router eigrp 1", " network 10.0.0.0",
        ]), 0..40)
    ) {
        let text = lines.join("\n");
        match import_ios(&text, &ImportOptions::default()) {
            Ok(imp) => {
                let back = Config::from_str(&imp.toml, "imported").unwrap().config;
                prop_assert_eq!(back.to_toml(), imp.config.to_toml());
            }
            Err(dmvpn_config::ImportError::Invalid(d)) => {
                prop_assert!(false, "invalid output for\n{}\n{:?}", text, d);
            }
            Err(_) => {}
        }
    }
}
