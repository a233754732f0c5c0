//! Fuzzes the NHRP parser (and the GRE/IPv4 carriers): no input may panic,
//! and whatever parses must re-emit to the same bytes.
#![no_main]

use dmvpn_nhrp::Packet;
use dmvpn_nhrp::capture::{LINKTYPE_RAW, extract_nhrp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let e = p.emit();
        assert_eq!(&e[..], &data[..e.len()]);
    }
    if let Ok(Some(f)) = extract_nhrp(LINKTYPE_RAW, data) {
        let _ = Packet::parse(f.nhrp);
    }
});
