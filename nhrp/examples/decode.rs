//! Decodes the NHRP packets of a pcap or pcapng capture.
//!
//! ```text
//! cargo run -p dmvpn-nhrp --example decode -- FILE
//! ```
//!
//! Link types: Ethernet (with VLAN tags), Linux cooked (SLL, SLL2) and raw
//! IPv4. NHRP is found in GRE (protocol 0x2001, optional key, checksum,
//! sequence number) or directly on IP protocol 54.
//!
//! Output: one line per NHRP packet on stdout,
//!
//! ```text
//! FRAME: SRC > DST [key K] TYPE hop N id ID src-nbma A SRCPROTO -> DSTPROTO flags 0xFFFF [cie(...)]... [ext NAME,...]
//! ```
//!
//! where FRAME is the 1-based frame number in the file, SRC/DST the outer
//! IPv4 addresses and `key K` the GRE key when present. The rest is
//! [`dmvpn_nhrp::display::packet_line`]: error indications print
//! `error CODE offset OFF` and traffic indications `code CODE` in place of
//! `id ID`; each CIE prints as
//! `cie(code C pl P mtu M htime H nbma A proto A)` (empty addresses as
//! `-`); extensions as a comma-separated list of names (`responder-address`,
//! `forward-transit`, `reverse-transit`, `authentication[type T]`,
//! `vendor-private`, `nat-address`, `end`, `unknown-0xNNNN`), CIE-carrying
//! ones followed by `[nbma/proto ...]`. Passwords are never printed.
//!
//! A malformed GRE/NHRP packet prints `FRAME: malformed: REASON` on stderr;
//! the exit status is then 1 (2 if the file cannot be read). Frames that
//! are not NHRP are skipped silently.

#[path = "../tests/common/pcapread.rs"]
pub mod pcapread;

use dmvpn_nhrp::capture::extract_nhrp;
use dmvpn_nhrp::display::packet_line;
use dmvpn_nhrp::{Packet, ParseError};

/// Decodes one frame: Ok(None) for non-NHRP frames, Ok(Some(line)) for
/// NHRP, Err for a malformed carrier or NHRP packet.
pub fn decode_frame(linktype: u32, data: &[u8]) -> Result<Option<String>, ParseError> {
    let Some(f) = extract_nhrp(linktype, data)? else {
        return Ok(None);
    };
    let p = Packet::parse(f.nhrp)?;
    let key = match f.gre.as_ref().and_then(|g| g.key) {
        Some(k) => format!(" key {k}"),
        None => String::new(),
    };
    Ok(Some(format!(
        "{} > {}{} {}",
        f.ip.src(),
        f.ip.dst(),
        key,
        packet_line(&p)
    )))
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: decode FILE.pcap|FILE.pcapng");
        std::process::exit(2);
    };
    let frames = match pcapread::read_frames(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("decode: cannot read capture {e}");
            std::process::exit(2);
        }
    };
    let mut bad = 0;
    for (i, f) in frames.iter().enumerate() {
        match decode_frame(f.linktype, &f.data) {
            Ok(Some(line)) => println!("{}: {}", i + 1, line),
            Ok(None) => {}
            Err(e) => {
                eprintln!("{}: malformed: {}", i + 1, e);
                bad += 1;
            }
        }
    }
    if bad > 0 {
        std::process::exit(1);
    }
}
