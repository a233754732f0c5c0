//! ISAKMP codec: parse must never panic; what parses must re-emit and re-parse identically.
#![no_main]
use dmvpn_ike::wire::{Message, parse_payloads};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.emit()).expect("emitted message parses");
        assert_eq!(again.payloads, m.payloads);
    }
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_payloads(first, rest);
    }
});
