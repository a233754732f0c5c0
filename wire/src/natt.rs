//! What a datagram on the NAT-T port (UDP 4500, RFC 3948) carries: a
//! one-byte 0xff datagram is a NAT keepalive, a leading zero 32-bit
//! non-ESP marker announces IKE, anything else of at least 8 bytes is ESP
//! (whose SPI is never zero).

use crate::{EmitError, room};

/// The NAT-T UDP port.
pub const PORT: u16 = 4500;
/// The non-ESP marker that precedes IKE on the NAT-T port.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// Length of [`NON_ESP_MARKER`].
pub const NON_ESP_MARKER_LEN: usize = NON_ESP_MARKER.len();
/// Shortest ESP packet: SPI and sequence number.
const MIN_ESP_LEN: usize = 8;

/// One NAT-T datagram, classified; the slices borrow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Natt<'a> {
    /// An IKE message, the marker removed.
    Ike(&'a [u8]),
    /// An ESP packet, from its SPI on.
    Esp(&'a [u8]),
    /// A NAT keepalive (RFC 3948 §2.3).
    Keepalive,
    /// Too short to be any of these.
    Invalid,
}

/// Classifies a NAT-T datagram.
pub fn demux(datagram: &[u8]) -> Natt<'_> {
    match datagram {
        [0xff] => Natt::Keepalive,
        [0, 0, 0, 0, ike @ ..] => Natt::Ike(ike),
        esp if esp.len() >= MIN_ESP_LEN => Natt::Esp(esp),
        _ => Natt::Invalid,
    }
}

/// Writes the non-ESP marker and `ike` into `out`; returns the datagram
/// length.
pub fn emit_ike(ike: &[u8], out: &mut [u8]) -> Result<usize, EmitError> {
    let n = NON_ESP_MARKER_LEN + ike.len();
    room(n, out.len())?;
    out[..NON_ESP_MARKER_LEN].copy_from_slice(&NON_ESP_MARKER);
    out[NON_ESP_MARKER_LEN..n].copy_from_slice(ike);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies() {
        assert_eq!(demux(&[0xff]), Natt::Keepalive);
        assert_eq!(demux(&[0, 0, 0, 0, 1, 2]), Natt::Ike(&[1, 2]));
        assert_eq!(demux(&[0, 0, 0, 0]), Natt::Ike(&[]));
        let esp = [0, 0, 1, 0, 0, 0, 0, 1];
        assert_eq!(demux(&esp), Natt::Esp(&esp));
        assert_eq!(demux(&[1, 2, 3]), Natt::Invalid);
        assert_eq!(demux(&[0, 0, 1, 0, 0, 0, 0]), Natt::Invalid);
        assert_eq!(demux(&[]), Natt::Invalid);
        assert_eq!(demux(&[0xff, 0xff]), Natt::Invalid);
    }

    #[test]
    fn emit_ike_prefixes_the_marker() {
        let mut out = [9u8; 8];
        assert_eq!(emit_ike(&[1, 2], &mut out), Ok(6));
        assert_eq!(&out[..6], &[0, 0, 0, 0, 1, 2]);
        assert_eq!(
            emit_ike(&[0; 5], &mut out),
            Err(EmitError::BufferTooSmall { need: 9, have: 8 })
        );
    }

    proptest! {
        #[test]
        fn ike_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = vec![0u8; 4 + msg.len()];
            let n = emit_ike(&msg, &mut out).unwrap();
            prop_assert_eq!(demux(&out[..n]), Natt::Ike(&msg[..]));
        }

        #[test]
        fn arbitrary_bytes_classify_without_panic(d in proptest::collection::vec(any::<u8>(), 0..16)) {
            match demux(&d) {
                Natt::Ike(m) => prop_assert_eq!(m.len() + 4, d.len()),
                Natt::Esp(e) => prop_assert!(e.len() >= 8 && e[..4] != [0; 4]),
                Natt::Keepalive => prop_assert_eq!(&d[..], &[0xff][..]),
                Natt::Invalid => prop_assert!(d.len() < 8),
            }
        }
    }
}
