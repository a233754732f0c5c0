//! NHRP packet codec (RFC 2332 plus Cisco's Traffic Indication).
//!
//! [`Packet::parse`] turns bytes into a typed [`Packet`]; [`Packet::emit`]
//! writes it back. Everything needed to re-emit a received packet byte for
//! byte is kept (raw address bytes, reserved fields, unknown extensions,
//! the trailer after the End extension), so `emit(parse(b)) == b` for any
//! packet that parses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dmvpn_wire::checksum::checksum;

use crate::error::{ParseError, need};
use crate::ext::Extension;

/// GRE protocol type that carries NHRP.
pub const GRE_PROTO_NHRP: u16 = dmvpn_wire::gre::PROTO_NHRP;
/// IP protocol number of NHRP directly over IP (RFC 2332 section 4).
pub const IP_PROTO_NHRP: u8 = dmvpn_wire::ipv4::PROTO_NHRP;
/// Address family number for IPv4 NBMA addresses.
pub const AFN_IPV4: u16 = 1;
/// Address family number for IPv6 NBMA addresses.
pub const AFN_IPV6: u16 = 2;
/// Protocol type for an IPv4 overlay.
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type for an IPv6 overlay.
pub const PROTO_IPV6: u16 = 0x86dd;
/// Length of the fixed header.
pub const FIXED_HEADER_LEN: usize = 20;
/// Length of the fixed part of a CIE (before its addresses).
pub const CIE_FIXED_LEN: usize = 12;
/// Hop count Cisco and we send (Cisco drops 0).
pub const DEFAULT_HOP_COUNT: u8 = 255;

/// Flags of resolution requests/replies (RFC 2332 5.2.1/5.2.2).
pub mod flags {
    /// Q: the requester is a router.
    pub const RES_Q: u16 = 0x8000;
    /// A: the reply is authoritative.
    pub const RES_A: u16 = 0x4000;
    /// D: the answer is a stable destination.
    pub const RES_D: u16 = 0x2000;
    /// U: uniqueness bit.
    pub const RES_U: u16 = 0x1000;
    /// S: the binding is stable.
    pub const RES_S: u16 = 0x0800;
    /// U: unique registration (registration request/reply).
    pub const REG_U: u16 = 0x8000;
    /// N: reply not expected (purge request).
    pub const PURGE_N: u16 = 0x8000;
    /// Cisco: the sender understands the NAT extension.
    pub const CISCO_NAT: u16 = 0x0002;
}

/// `ar$op.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1
    ResolutionRequest,
    /// 2
    ResolutionReply,
    /// 3
    RegistrationRequest,
    /// 4
    RegistrationReply,
    /// 5
    PurgeRequest,
    /// 6
    PurgeReply,
    /// 7
    ErrorIndication,
    /// 8 (Cisco, draft-detienne-dmvpn)
    TrafficIndication,
}

impl PacketType {
    /// All types in wire order.
    pub const ALL: [PacketType; 8] = [
        PacketType::ResolutionRequest,
        PacketType::ResolutionReply,
        PacketType::RegistrationRequest,
        PacketType::RegistrationReply,
        PacketType::PurgeRequest,
        PacketType::PurgeReply,
        PacketType::ErrorIndication,
        PacketType::TrafficIndication,
    ];

    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            PacketType::ResolutionRequest => 1,
            PacketType::ResolutionReply => 2,
            PacketType::RegistrationRequest => 3,
            PacketType::RegistrationReply => 4,
            PacketType::PurgeRequest => 5,
            PacketType::PurgeReply => 6,
            PacketType::ErrorIndication => 7,
            PacketType::TrafficIndication => 8,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        PacketType::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// Name as IOS prints it in `debug nhrp` ("Resolution Request").
    pub fn ios_name(self) -> &'static str {
        match self {
            PacketType::ResolutionRequest => "Resolution Request",
            PacketType::ResolutionReply => "Resolution Reply",
            PacketType::RegistrationRequest => "Registration Request",
            PacketType::RegistrationReply => "Registration Reply",
            PacketType::PurgeRequest => "Purge Request",
            PacketType::PurgeReply => "Purge Reply",
            PacketType::ErrorIndication => "Error Indication",
            PacketType::TrafficIndication => "Traffic Indication",
        }
    }

    /// Short stable token used by the decoder example ("res-request").
    pub fn short_name(self) -> &'static str {
        match self {
            PacketType::ResolutionRequest => "res-request",
            PacketType::ResolutionReply => "res-reply",
            PacketType::RegistrationRequest => "reg-request",
            PacketType::RegistrationReply => "reg-reply",
            PacketType::PurgeRequest => "purge-request",
            PacketType::PurgeReply => "purge-reply",
            PacketType::ErrorIndication => "error-indication",
            PacketType::TrafficIndication => "traffic-indication",
        }
    }

    /// Whether the mandatory part carries a request ID followed by CIEs.
    pub fn has_cies(self) -> bool {
        !matches!(
            self,
            PacketType::ErrorIndication | PacketType::TrafficIndication
        )
    }
}

/// CIE codes (RFC 2332 5.2.0.1) used in replies and by the engine.
pub mod code {
    /// Success.
    pub const SUCCESS: u8 = 0;
    /// Administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 4;
    /// Insufficient resources.
    pub const INSUFFICIENT_RESOURCES: u8 = 5;
    /// No interworking layer address binding exists.
    pub const NO_BINDING: u8 = 12;
    /// Binding exists but is not unique.
    pub const NOT_UNIQUE: u8 = 13;
    /// Unique internetworking layer address already registered.
    pub const ALREADY_REGISTERED: u8 = 14;

    /// Short description of a CIE code, for logs.
    pub fn name(code: u8) -> &'static str {
        match code {
            SUCCESS => "success",
            ADMIN_PROHIBITED => "administratively prohibited",
            INSUFFICIENT_RESOURCES => "insufficient resources",
            NO_BINDING => "no binding",
            NOT_UNIQUE => "binding not unique",
            ALREADY_REGISTERED => "already registered by another NBMA address",
            _ => "unknown code",
        }
    }
}

/// Error Indication codes (RFC 2332 5.2.7).
pub mod error_code {
    /// Unrecognized Extension.
    pub const UNRECOGNIZED_EXTENSION: u16 = 1;
    /// NHRP Loop Detected.
    pub const LOOP_DETECTED: u16 = 3;
    /// Protocol Address Unreachable.
    pub const PROTOCOL_ADDRESS_UNREACHABLE: u16 = 6;
    /// Protocol Error.
    pub const PROTOCOL_ERROR: u16 = 7;
    /// NHRP SDU Size Exceeded.
    pub const SDU_SIZE_EXCEEDED: u16 = 8;
    /// Invalid Extension.
    pub const INVALID_EXTENSION: u16 = 9;
    /// Invalid NHRP Resolution Reply Received.
    pub const INVALID_RESOLUTION_REPLY: u16 = 10;
    /// Authentication Failure.
    pub const AUTHENTICATION_FAILURE: u16 = 11;
    /// Hop Count Exceeded.
    pub const HOP_COUNT_EXCEEDED: u16 = 15;

    /// RFC name of an error code.
    pub fn name(code: u16) -> &'static str {
        match code {
            UNRECOGNIZED_EXTENSION => "unrecognized extension",
            LOOP_DETECTED => "loop detected",
            PROTOCOL_ADDRESS_UNREACHABLE => "protocol address unreachable",
            PROTOCOL_ERROR => "protocol error",
            SDU_SIZE_EXCEEDED => "SDU size exceeded",
            INVALID_EXTENSION => "invalid extension",
            INVALID_RESOLUTION_REPLY => "invalid resolution reply",
            AUTHENTICATION_FAILURE => "authentication failure",
            HOP_COUNT_EXCEEDED => "hop count exceeded",
            _ => "unknown",
        }
    }
}

/// Address bytes as an IP address when they have IPv4 or IPv6 length.
pub fn addr_to_ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// Wire bytes of an IP address.
pub fn ip_to_addr(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Printable form of address bytes: dotted/colon IP, `-` when empty, hex
/// otherwise.
pub fn addr_to_string(bytes: &[u8]) -> String {
    match addr_to_ip(bytes) {
        Some(ip) => ip.to_string(),
        None if bytes.is_empty() => "-".to_string(),
        None => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// Byte cursor that never panics: every read checks the remaining length.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        need(self.what, n, self.remaining())?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Checks a type/length octet: we only handle the NSAP-format/IP form
/// (bits 7 and 6 clear), which is what every DMVPN implementation sends.
fn tl_len(what: &'static str, v: u8) -> Result<usize, ParseError> {
    if v & 0xc0 != 0 {
        return Err(ParseError::AddressType { what, value: v });
    }
    Ok(usize::from(v))
}

/// Length as a type/length octet; lengths are bounded to 63 by the codec.
fn len_tl(len: usize) -> u8 {
    (len & 0x3f) as u8
}

/// Client Information Entry (RFC 2332 5.2.0.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cie {
    /// Result code (0 = success), see [`code`].
    pub code: u8,
    /// Prefix length (32 for a host; old IOS sends 0xff).
    pub prefix_len: u8,
    /// Reserved field, kept for exact re-emission.
    pub unused: u16,
    /// Maximum transmission unit (0 = unspecified).
    pub mtu: u16,
    /// Holding time in seconds.
    pub holding_time: u16,
    /// Preference.
    pub preference: u8,
    /// Client NBMA address (empty, 4 or 16 bytes in practice; at most 63).
    pub nbma: Vec<u8>,
    /// Client NBMA subaddress (normally empty).
    pub nbma_subaddr: Vec<u8>,
    /// Client protocol address.
    pub proto: Vec<u8>,
}

impl Cie {
    /// Client NBMA address as IP, if it has IP length.
    pub fn nbma_ip(&self) -> Option<IpAddr> {
        addr_to_ip(&self.nbma)
    }
    /// Client protocol address as IP, if it has IP length.
    pub fn proto_ip(&self) -> Option<IpAddr> {
        addr_to_ip(&self.proto)
    }

    /// Encoded length.
    pub fn wire_len(&self) -> usize {
        CIE_FIXED_LEN + self.nbma.len() + self.nbma_subaddr.len() + self.proto.len()
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Cie, ParseError> {
        let code = r.u8()?;
        let prefix_len = r.u8()?;
        let unused = r.u16()?;
        let mtu = r.u16()?;
        let holding_time = r.u16()?;
        let atl = tl_len("CIE NBMA address", r.u8()?)?;
        let stl = tl_len("CIE NBMA subaddress", r.u8()?)?;
        let pl = usize::from(r.u8()?);
        let preference = r.u8()?;
        let nbma = r.bytes(atl)?.to_vec();
        let nbma_subaddr = r.bytes(stl)?.to_vec();
        let proto = r.bytes(pl)?.to_vec();
        Ok(Cie {
            code,
            prefix_len,
            unused,
            mtu,
            holding_time,
            preference,
            nbma,
            nbma_subaddr,
            proto,
        })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push(self.prefix_len);
        out.extend_from_slice(&self.unused.to_be_bytes());
        out.extend_from_slice(&self.mtu.to_be_bytes());
        out.extend_from_slice(&self.holding_time.to_be_bytes());
        out.push(len_tl(self.nbma.len()));
        out.push(len_tl(self.nbma_subaddr.len()));
        out.push(self.proto.len() as u8);
        out.push(self.preference);
        out.extend_from_slice(&self.nbma);
        out.extend_from_slice(&self.nbma_subaddr);
        out.extend_from_slice(&self.proto);
    }

    /// Parses a sequence of CIEs that must fill `buf` exactly.
    pub(crate) fn parse_list(buf: &[u8], what: &'static str) -> Result<Vec<Cie>, ParseError> {
        let mut r = Reader::new(buf, what);
        let mut v = Vec::new();
        while r.remaining() > 0 {
            if r.remaining() < CIE_FIXED_LEN {
                return Err(ParseError::TrailingBytes {
                    what,
                    len: r.remaining(),
                });
            }
            v.push(Cie::parse(&mut r)?);
        }
        Ok(v)
    }
}

/// The part of the mandatory header that differs per packet type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Types 1..=6: request ID and Client Information Entries.
    Cies {
        /// `request ID`, reused on retransmission.
        request_id: u32,
        /// The CIEs.
        cies: Vec<Cie>,
    },
    /// Type 7: error code, offset of the error in the offending packet,
    /// and the offending packet (or its start).
    Error {
        /// RFC 2332 error code, see [`error_code`].
        code: u16,
        /// Byte offset of the error in `contents`.
        offset: u16,
        /// The NHRP packet in error.
        contents: Vec<u8>,
    },
    /// Type 8 (Cisco): traffic code, reserved field and the triggering
    /// packet's IP header plus 8 bytes.
    Traffic {
        /// Traffic code (0 = redirect/indirection).
        code: u16,
        /// Reserved.
        unused: u16,
        /// Start of the data packet that triggered the indication.
        contents: Vec<u8>,
    },
}

/// A parsed NHRP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `ar$afn`: 1 IPv4, 2 IPv6 NBMA.
    pub afn: u16,
    /// `ar$pro.type`: 0x0800 or 0x86DD.
    pub protocol_type: u16,
    /// `ar$pro.snap`, zero for IP.
    pub snap: [u8; 5],
    /// `ar$hopcnt`.
    pub hop_count: u8,
    /// `ar$op.version` (1).
    pub version: u8,
    /// `ar$op.type`.
    pub packet_type: PacketType,
    /// Mandatory header flags.
    pub flags: u16,
    /// Source NBMA address.
    pub src_nbma: Vec<u8>,
    /// Source NBMA subaddress (normally empty).
    pub src_nbma_subaddr: Vec<u8>,
    /// Source protocol address.
    pub src_proto: Vec<u8>,
    /// Destination protocol address.
    pub dst_proto: Vec<u8>,
    /// Type-specific remainder of the mandatory part.
    pub body: Body,
    /// Extensions in wire order, including the End extension if present.
    pub extensions: Vec<Extension>,
    /// Bytes after the End extension (kept for exact re-emission).
    pub trailer: Vec<u8>,
}

impl Packet {
    /// A packet of `packet_type` with IPv4/IPv6 defaults (afn and protocol
    /// type from the address families, hop count 255, no extensions).
    pub fn new(
        packet_type: PacketType,
        src_nbma: IpAddr,
        src_proto: IpAddr,
        dst_proto: IpAddr,
        body: Body,
    ) -> Packet {
        Packet {
            afn: if src_nbma.is_ipv4() {
                AFN_IPV4
            } else {
                AFN_IPV6
            },
            protocol_type: if src_proto.is_ipv4() {
                PROTO_IPV4
            } else {
                PROTO_IPV6
            },
            snap: [0; 5],
            hop_count: DEFAULT_HOP_COUNT,
            version: 1,
            packet_type,
            flags: 0,
            src_nbma: ip_to_addr(src_nbma),
            src_nbma_subaddr: Vec::new(),
            src_proto: ip_to_addr(src_proto),
            dst_proto: ip_to_addr(dst_proto),
            body,
            extensions: Vec::new(),
            trailer: Vec::new(),
        }
    }

    /// Source NBMA address as IP.
    pub fn src_nbma_ip(&self) -> Option<IpAddr> {
        addr_to_ip(&self.src_nbma)
    }
    /// Source protocol address as IP.
    pub fn src_proto_ip(&self) -> Option<IpAddr> {
        addr_to_ip(&self.src_proto)
    }
    /// Destination protocol address as IP.
    pub fn dst_proto_ip(&self) -> Option<IpAddr> {
        addr_to_ip(&self.dst_proto)
    }

    /// Request ID (types 1..=6), None for error/traffic indications.
    pub fn request_id(&self) -> Option<u32> {
        match &self.body {
            Body::Cies { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// CIEs (empty for error/traffic indications).
    pub fn cies(&self) -> &[Cie] {
        match &self.body {
            Body::Cies { cies, .. } => cies,
            _ => &[],
        }
    }

    /// Mutable CIEs, None for error/traffic indications.
    pub fn cies_mut(&mut self) -> Option<&mut Vec<Cie>> {
        match &mut self.body {
            Body::Cies { cies, .. } => Some(cies),
            _ => None,
        }
    }

    /// The first unknown extension with the compulsory bit set: the RFC
    /// requires such a packet to be rejected with error code 1.
    pub fn unknown_compulsory_extension(&self) -> Option<u16> {
        self.extensions
            .iter()
            .find(|e| e.compulsory && e.is_unknown())
            .map(|e| e.ty())
    }

    /// Parses a packet. `buf` may be longer than the packet (link padding);
    /// the checksum is verified.
    pub fn parse(buf: &[u8]) -> Result<Packet, ParseError> {
        Self::parse_inner(buf, true)
    }

    /// Parses without verifying the checksum (used for the copy of an
    /// offending packet inside an Error Indication, which may be cut short).
    pub fn parse_unchecked(buf: &[u8]) -> Result<Packet, ParseError> {
        Self::parse_inner(buf, false)
    }

    fn parse_inner(buf: &[u8], verify: bool) -> Result<Packet, ParseError> {
        need("NHRP fixed header", FIXED_HEADER_LEN, buf.len())?;
        let mut r = Reader::new(buf, "NHRP fixed header");
        let afn = r.u16()?;
        let protocol_type = r.u16()?;
        let mut snap = [0u8; 5];
        snap.copy_from_slice(r.bytes(5)?);
        let hop_count = r.u8()?;
        let size = r.u16()?;
        let found_sum = r.u16()?;
        let extoff = r.u16()?;
        let version = r.u8()?;
        let ty = r.u8()?;
        let shtl = r.u8()?;
        let sstl = r.u8()?;
        if version != 1 {
            return Err(ParseError::BadVersion(version));
        }
        let packet_type = PacketType::from_u8(ty).ok_or(ParseError::UnknownType(ty))?;
        if usize::from(size) < FIXED_HEADER_LEN {
            return Err(ParseError::BadPacketSize(size));
        }
        need("NHRP packet", usize::from(size), buf.len())?;
        let pkt = &buf[..usize::from(size)];
        if verify {
            let computed = checksum(pkt);
            if computed != 0 {
                let mut copy = pkt.to_vec();
                copy[12] = 0;
                copy[13] = 0;
                return Err(ParseError::BadChecksum {
                    found: found_sum,
                    computed: checksum(&copy),
                });
            }
        }
        let mand_end = if extoff == 0 {
            usize::from(size)
        } else {
            // An extension area must exist and start after the fixed header.
            if usize::from(extoff) < FIXED_HEADER_LEN || extoff >= size {
                return Err(ParseError::BadExtensionOffset {
                    offset: extoff,
                    size,
                });
            }
            usize::from(extoff)
        };
        let shl = tl_len("source NBMA address", shtl)?;
        let ssl = tl_len("source NBMA subaddress", sstl)?;
        let mut m = Reader::new(&pkt[FIXED_HEADER_LEN..mand_end], "NHRP mandatory part");
        let spl = usize::from(m.u8()?);
        let dpl = usize::from(m.u8()?);
        let flags = m.u16()?;
        let word = m.u32()?;
        let src_nbma = m.bytes(shl)?.to_vec();
        let src_nbma_subaddr = m.bytes(ssl)?.to_vec();
        let src_proto = m.bytes(spl)?.to_vec();
        let dst_proto = m.bytes(dpl)?.to_vec();
        let rest = m.rest();
        let body = match packet_type {
            PacketType::ErrorIndication => Body::Error {
                code: (word >> 16) as u16,
                offset: word as u16,
                contents: rest.to_vec(),
            },
            PacketType::TrafficIndication => Body::Traffic {
                code: (word >> 16) as u16,
                unused: word as u16,
                contents: rest.to_vec(),
            },
            _ => Body::Cies {
                request_id: word,
                cies: Cie::parse_list(rest, "NHRP mandatory part")?,
            },
        };
        let (extensions, trailer) = if extoff == 0 {
            (Vec::new(), Vec::new())
        } else {
            Extension::parse_list(&pkt[mand_end..])?
        };
        Ok(Packet {
            afn,
            protocol_type,
            snap,
            hop_count,
            version,
            packet_type,
            flags,
            src_nbma,
            src_nbma_subaddr,
            src_proto,
            dst_proto,
            body,
            extensions,
            trailer,
        })
    }

    /// Encodes the packet, computing size, extension offset and checksum.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.afn.to_be_bytes());
        out.extend_from_slice(&self.protocol_type.to_be_bytes());
        out.extend_from_slice(&self.snap);
        out.push(self.hop_count);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // size, checksum, extoff
        out.push(self.version);
        out.push(self.packet_type.to_u8());
        out.push(len_tl(self.src_nbma.len()));
        out.push(len_tl(self.src_nbma_subaddr.len()));
        out.push(self.src_proto.len() as u8);
        out.push(self.dst_proto.len() as u8);
        out.extend_from_slice(&self.flags.to_be_bytes());
        let word = match &self.body {
            Body::Cies { request_id, .. } => *request_id,
            Body::Error { code, offset, .. } => u32::from(*code) << 16 | u32::from(*offset),
            Body::Traffic { code, unused, .. } => u32::from(*code) << 16 | u32::from(*unused),
        };
        out.extend_from_slice(&word.to_be_bytes());
        out.extend_from_slice(&self.src_nbma);
        out.extend_from_slice(&self.src_nbma_subaddr);
        out.extend_from_slice(&self.src_proto);
        out.extend_from_slice(&self.dst_proto);
        match &self.body {
            Body::Cies { cies, .. } => cies.iter().for_each(|c| c.emit(&mut out)),
            Body::Error { contents, .. } | Body::Traffic { contents, .. } => {
                out.extend_from_slice(contents)
            }
        }
        if !self.extensions.is_empty() || !self.trailer.is_empty() {
            let off = out.len() as u16;
            out[14..16].copy_from_slice(&off.to_be_bytes());
            for e in &self.extensions {
                e.emit(&mut out);
            }
            out.extend_from_slice(&self.trailer);
        }
        let size = out.len() as u16;
        out[10..12].copy_from_slice(&size.to_be_bytes());
        let sum = checksum(&out);
        out[12..14].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Encoded length.
    pub fn wire_len(&self) -> usize {
        self.emit().len()
    }
}
