//! Vendor ID recognition. The hash-based IDs are computed (MD5 of the
//! well-known strings) rather than stored as opaque bytes.

use md5::{Digest, Md5};

/// A vendor ID we know how to interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// RFC 3947 NAT-T.
    NatTRfc,
    /// draft-ietf-ipsec-nat-t-ike-02 (and the variant with a trailing newline).
    NatTDraft02,
    NatTDraft02N,
    NatTDraft03,
    /// RFC 3706 dead peer detection.
    Dpd,
    /// Cisco Unity (md5 "CISCO-UNITY", version 1.0).
    CiscoUnity,
    /// XAUTH (draft-ietf-ipsra-isakmp-xauth-06).
    Xauth,
    /// IKE fragmentation (md5 "FRAGMENTATION", any capability suffix).
    Fragmentation,
    Unknown,
}

fn md5(s: &[u8]) -> [u8; 16] {
    Md5::digest(s).into()
}

/// RFC 3706 DPD vendor ID (version 1.0).
pub const DPD: [u8; 16] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00,
];

impl Vendor {
    /// The bytes we send for this vendor ID.
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Vendor::NatTRfc => md5(b"RFC 3947").to_vec(),
            Vendor::NatTDraft02 => md5(b"draft-ietf-ipsec-nat-t-ike-02").to_vec(),
            Vendor::NatTDraft02N => md5(b"draft-ietf-ipsec-nat-t-ike-02\n").to_vec(),
            Vendor::NatTDraft03 => md5(b"draft-ietf-ipsec-nat-t-ike-03").to_vec(),
            Vendor::Dpd => DPD.to_vec(),
            Vendor::CiscoUnity => {
                let mut v = md5(b"CISCO-UNITY")[..14].to_vec();
                v.extend_from_slice(&[1, 0]);
                v
            }
            Vendor::Xauth => md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt")[..8].to_vec(),
            Vendor::Fragmentation => md5(b"FRAGMENTATION").to_vec(),
            Vendor::Unknown => Vec::new(),
        }
    }

    /// Classify received vendor ID bytes.
    pub fn classify(b: &[u8]) -> Vendor {
        for v in [
            Vendor::NatTRfc,
            Vendor::NatTDraft02,
            Vendor::NatTDraft02N,
            Vendor::NatTDraft03,
            Vendor::Dpd,
            Vendor::Xauth,
        ] {
            if b == v.bytes().as_slice() {
                return v;
            }
        }
        if b.len() == 16 && b[..14] == md5(b"CISCO-UNITY")[..14] {
            return Vendor::CiscoUnity;
        }
        if b.len() >= 16 && b[..16] == md5(b"FRAGMENTATION") {
            return Vendor::Fragmentation;
        }
        Vendor::Unknown
    }

    /// The IOS debug wording ("vendor ID is NAT-T v3").
    pub fn ios_name(self) -> &'static str {
        match self {
            Vendor::NatTRfc => "NAT-T RFC 3947",
            Vendor::NatTDraft02 | Vendor::NatTDraft02N => "NAT-T v2",
            Vendor::NatTDraft03 => "NAT-T v3",
            Vendor::Dpd => "DPD",
            Vendor::CiscoUnity => "Unity",
            Vendor::Xauth => "XAUTH",
            Vendor::Fragmentation => "Fragmentation",
            Vendor::Unknown => "unknown",
        }
    }

    /// NAT-T variant rank: higher is preferred.
    pub fn natt_rank(self) -> u8 {
        match self {
            Vendor::NatTRfc => 3,
            Vendor::NatTDraft03 => 2,
            Vendor::NatTDraft02 | Vendor::NatTDraft02N => 1,
            _ => 0,
        }
    }
}
