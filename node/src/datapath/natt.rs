//! UDP-encapsulated ESP demultiplexing on port 4500 (RFC 3948): a
//! one-byte 0xff datagram is a NAT keepalive, a leading zero 32-bit
//! "non-ESP marker" announces IKE, anything else is ESP (whose SPI is
//! never zero).

/// What a datagram received on UDP 4500 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NattPayload<'a> {
    /// An ESP packet (SPI onward).
    Esp(&'a [u8]),
    /// An IKE message, marker removed.
    Ike(&'a [u8]),
    /// NAT-keepalive (RFC 3948 §2.3).
    Keepalive,
    /// Too short to be anything.
    Invalid,
}

/// Length of the non-ESP marker that precedes IKE on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

pub fn demux(d: &[u8]) -> NattPayload<'_> {
    match d {
        [0xff] => NattPayload::Keepalive,
        [0, 0, 0, 0, rest @ ..] => NattPayload::Ike(rest),
        _ if d.len() >= 8 => NattPayload::Esp(d),
        _ => NattPayload::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_cases() {
        assert_eq!(demux(&[0xff]), NattPayload::Keepalive);
        assert_eq!(demux(&[0, 0, 0, 0, 1, 2]), NattPayload::Ike(&[1, 2]));
        assert_eq!(
            demux(&[0, 0, 1, 0, 0, 0, 0, 1]),
            NattPayload::Esp(&[0, 0, 1, 0, 0, 0, 0, 1])
        );
        assert_eq!(demux(&[1, 2, 3]), NattPayload::Invalid);
        assert_eq!(demux(&[]), NattPayload::Invalid);
    }
}
