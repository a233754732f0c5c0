//! Numbers from RFC 2408/2409/2407/3947/3706 and the NAT-T drafts.

/// Payload types (RFC 2408 3.1, RFC 3947, draft-ietf-ipsec-nat-t-ike-02/03).
pub mod payload {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const TRANSFORM: u8 = 3;
    pub const KE: u8 = 4;
    pub const ID: u8 = 5;
    pub const CERT: u8 = 6;
    pub const CERT_REQ: u8 = 7;
    pub const HASH: u8 = 8;
    pub const SIG: u8 = 9;
    pub const NONCE: u8 = 10;
    pub const NOTIFY: u8 = 11;
    pub const DELETE: u8 = 12;
    pub const VENDOR_ID: u8 = 13;
    pub const NAT_D: u8 = 20;
    pub const NAT_OA: u8 = 21;
    pub const NAT_D_DRAFT: u8 = 130;
    pub const NAT_OA_DRAFT: u8 = 131;
}

/// Exchange types.
pub mod exchange {
    pub const MAIN: u8 = 2;
    pub const AGGRESSIVE: u8 = 4;
    pub const INFORMATIONAL: u8 = 5;
    pub const QUICK: u8 = 32;
}

/// Header flags.
pub mod flags {
    pub const ENCRYPTION: u8 = 0x01;
    pub const COMMIT: u8 = 0x02;
    pub const AUTH_ONLY: u8 = 0x04;
}

/// Protocol identifiers (RFC 2407 4.4.1).
pub mod proto {
    pub const ISAKMP: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
    pub const IPCOMP: u8 = 4;
}

/// Phase 1 (Oakley) attribute classes, RFC 2409 Appendix A.
pub mod p1attr {
    pub const ENCRYPTION: u16 = 1;
    pub const HASH: u16 = 2;
    pub const AUTH: u16 = 3;
    pub const GROUP: u16 = 4;
    pub const LIFE_TYPE: u16 = 11;
    pub const LIFE_DURATION: u16 = 12;
    pub const KEY_LENGTH: u16 = 14;
}

/// IPsec DOI SA attributes, RFC 2407 4.5.
pub mod p2attr {
    pub const LIFE_TYPE: u16 = 1;
    pub const LIFE_DURATION: u16 = 2;
    pub const GROUP: u16 = 3;
    pub const ENCAPSULATION: u16 = 4;
    pub const AUTH: u16 = 5;
    pub const KEY_LENGTH: u16 = 6;
}

/// Life types (shared by phase 1 and phase 2).
pub mod life {
    pub const SECONDS: u16 = 1;
    pub const KILOBYTES: u16 = 2;
}

/// Encapsulation modes (RFC 2407, RFC 3947, draft values).
pub mod encap {
    pub const TUNNEL: u16 = 1;
    pub const TRANSPORT: u16 = 2;
    pub const UDP_TUNNEL: u16 = 3;
    pub const UDP_TRANSPORT: u16 = 4;
    pub const UDP_TUNNEL_DRAFT: u16 = 61443;
    pub const UDP_TRANSPORT_DRAFT: u16 = 61444;
}

/// Notify message types.
pub mod notify {
    pub const INVALID_PAYLOAD_TYPE: u16 = 1;
    pub const INVALID_EXCHANGE_TYPE: u16 = 7;
    pub const INVALID_FLAGS: u16 = 8;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const PAYLOAD_MALFORMED: u16 = 16;
    pub const INVALID_KEY_INFORMATION: u16 = 17;
    pub const INVALID_ID_INFORMATION: u16 = 18;
    pub const INVALID_HASH_INFORMATION: u16 = 23;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const RESPONDER_LIFETIME: u16 = 24576;
    pub const REPLAY_STATUS: u16 = 24577;
    pub const INITIAL_CONTACT: u16 = 24578;
    pub const DPD_R_U_THERE: u16 = 36136;
    pub const DPD_R_U_THERE_ACK: u16 = 36137;
}

/// Identification types (RFC 2407 4.6.2.1).
pub mod idtype {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const USER_FQDN: u8 = 3;
    pub const IPV4_ADDR_SUBNET: u8 = 4;
    pub const IPV6_ADDR: u8 = 5;
    pub const IPV6_ADDR_SUBNET: u8 = 6;
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
    pub const KEY_ID: u8 = 11;
}

/// Human name of a notify type, for debug lines.
pub fn notify_name(t: u16) -> &'static str {
    match t {
        notify::INVALID_PAYLOAD_TYPE => "INVALID-PAYLOAD-TYPE",
        notify::INVALID_EXCHANGE_TYPE => "INVALID-EXCHANGE-TYPE",
        notify::INVALID_FLAGS => "INVALID-FLAGS",
        notify::INVALID_MESSAGE_ID => "INVALID-MESSAGE-ID",
        notify::INVALID_SPI => "INVALID-SPI",
        notify::NO_PROPOSAL_CHOSEN => "NO-PROPOSAL-CHOSEN",
        notify::PAYLOAD_MALFORMED => "PAYLOAD-MALFORMED",
        notify::INVALID_KEY_INFORMATION => "INVALID-KEY-INFORMATION",
        notify::INVALID_ID_INFORMATION => "INVALID-ID-INFORMATION",
        notify::INVALID_HASH_INFORMATION => "INVALID-HASH-INFORMATION",
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION-FAILED",
        notify::RESPONDER_LIFETIME => "RESPONDER-LIFETIME",
        notify::REPLAY_STATUS => "REPLAY-STATUS",
        notify::INITIAL_CONTACT => "INITIAL-CONTACT",
        notify::DPD_R_U_THERE => "R-U-THERE",
        notify::DPD_R_U_THERE_ACK => "R-U-THERE-ACK",
        _ => "UNKNOWN",
    }
}
