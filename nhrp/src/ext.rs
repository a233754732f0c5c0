//! NHRP extensions (RFC 2332 5.3 plus Cisco's NAT address extension).

use crate::error::ParseError;
use crate::wire::{Cie, Reader};

/// Compulsory bit of the extension type field.
pub const COMPULSORY: u16 = 0x8000;
/// End of extensions.
pub const EXT_END: u16 = 0;
/// Responder Address.
pub const EXT_RESPONDER_ADDRESS: u16 = 3;
/// Forward Transit NHS Record.
pub const EXT_FORWARD_TRANSIT: u16 = 4;
/// Reverse Transit NHS Record.
pub const EXT_REVERSE_TRANSIT: u16 = 5;
/// Authentication.
pub const EXT_AUTHENTICATION: u16 = 7;
/// Vendor Private.
pub const EXT_VENDOR_PRIVATE: u16 = 8;
/// Cisco NAT address (the peer's NBMA address as seen by the receiver).
pub const EXT_NAT_ADDRESS: u16 = 9;
/// Cleartext password authentication type (Cisco `ip nhrp authentication`).
pub const AUTH_TYPE_CLEARTEXT: u32 = 1;

/// Typed body of an extension.
#[derive(Clone, PartialEq, Eq)]
pub enum ExtBody {
    /// End of the extension list (length 0).
    End,
    /// Responder Address: empty in requests, one CIE in replies.
    ResponderAddress(Option<Cie>),
    /// Forward Transit NHS Record: one CIE per NHS the request crossed.
    ForwardTransit(Vec<Cie>),
    /// Reverse Transit NHS Record: one CIE per NHS the reply crossed.
    ReverseTransit(Vec<Cie>),
    /// Authentication: 4-byte type (1 = cleartext) then the data. The
    /// password is never printed by `Debug`.
    Authentication {
        /// Authentication type.
        auth_type: u32,
        /// Authentication data (for type 1 the password, unpadded).
        data: Vec<u8>,
    },
    /// Vendor Private: 3-byte OUI and vendor data, kept raw.
    VendorPrivate(Vec<u8>),
    /// Cisco NAT address: CIEs naming the NBMA address seen after NAT.
    NatAddress(Vec<Cie>),
    /// Any other type, kept raw with its type (without the compulsory bit).
    Unknown {
        /// Type (15 bits).
        ty: u16,
        /// Raw body.
        data: Vec<u8>,
    },
}

impl std::fmt::Debug for ExtBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtBody::End => write!(f, "End"),
            ExtBody::ResponderAddress(c) => f.debug_tuple("ResponderAddress").field(c).finish(),
            ExtBody::ForwardTransit(c) => f.debug_tuple("ForwardTransit").field(c).finish(),
            ExtBody::ReverseTransit(c) => f.debug_tuple("ReverseTransit").field(c).finish(),
            ExtBody::Authentication { auth_type, data } => f
                .debug_struct("Authentication")
                .field("auth_type", auth_type)
                .field("data", &format_args!("<{} bytes redacted>", data.len()))
                .finish(),
            ExtBody::VendorPrivate(d) => f.debug_tuple("VendorPrivate").field(d).finish(),
            ExtBody::NatAddress(c) => f.debug_tuple("NatAddress").field(c).finish(),
            ExtBody::Unknown { ty, data } => f
                .debug_struct("Unknown")
                .field("ty", ty)
                .field("data", data)
                .finish(),
        }
    }
}

/// One extension with its compulsory bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The C bit (0x8000 of the type field).
    pub compulsory: bool,
    /// Body.
    pub body: ExtBody,
}

impl Extension {
    /// An extension with the compulsory bit as Cisco sends it: set for
    /// all RFC types, clear for the NAT address extension.
    pub fn new(body: ExtBody) -> Extension {
        let compulsory = !matches!(body, ExtBody::NatAddress(_) | ExtBody::Unknown { .. });
        Extension { compulsory, body }
    }

    /// Type number without the compulsory bit.
    pub fn ty(&self) -> u16 {
        match &self.body {
            ExtBody::End => EXT_END,
            ExtBody::ResponderAddress(_) => EXT_RESPONDER_ADDRESS,
            ExtBody::ForwardTransit(_) => EXT_FORWARD_TRANSIT,
            ExtBody::ReverseTransit(_) => EXT_REVERSE_TRANSIT,
            ExtBody::Authentication { .. } => EXT_AUTHENTICATION,
            ExtBody::VendorPrivate(_) => EXT_VENDOR_PRIVATE,
            ExtBody::NatAddress(_) => EXT_NAT_ADDRESS,
            ExtBody::Unknown { ty, .. } => *ty & 0x7fff,
        }
    }

    /// Whether this is a type the codec does not know.
    pub fn is_unknown(&self) -> bool {
        matches!(self.body, ExtBody::Unknown { .. })
    }

    /// Stable short name ("responder-address", "unknown-0x0011").
    pub fn name(&self) -> String {
        match &self.body {
            ExtBody::End => "end".into(),
            ExtBody::ResponderAddress(_) => "responder-address".into(),
            ExtBody::ForwardTransit(_) => "forward-transit".into(),
            ExtBody::ReverseTransit(_) => "reverse-transit".into(),
            ExtBody::Authentication { .. } => "authentication".into(),
            ExtBody::VendorPrivate(_) => "vendor-private".into(),
            ExtBody::NatAddress(_) => "nat-address".into(),
            ExtBody::Unknown { ty, .. } => format!("unknown-{ty:#06x}"),
        }
    }

    /// CIEs carried by this extension (empty for non-CIE extensions).
    pub fn cies(&self) -> &[Cie] {
        match &self.body {
            ExtBody::ResponderAddress(Some(c)) => std::slice::from_ref(c),
            ExtBody::ForwardTransit(v) | ExtBody::ReverseTransit(v) | ExtBody::NatAddress(v) => v,
            _ => &[],
        }
    }

    fn parse(ty_field: u16, data: &[u8]) -> Result<Extension, ParseError> {
        let compulsory = ty_field & COMPULSORY != 0;
        let ty = ty_field & 0x7fff;
        let bad = |reason| ParseError::MalformedExtension { ty, reason };
        let body = match ty {
            EXT_END => {
                if !data.is_empty() {
                    return Err(bad("End extension with non-zero length"));
                }
                ExtBody::End
            }
            EXT_RESPONDER_ADDRESS => {
                let mut v = Cie::parse_list(data, "responder address extension")?;
                match v.len() {
                    0 => ExtBody::ResponderAddress(None),
                    1 => ExtBody::ResponderAddress(v.pop()),
                    _ => return Err(bad("more than one CIE")),
                }
            }
            EXT_FORWARD_TRANSIT => {
                ExtBody::ForwardTransit(Cie::parse_list(data, "forward transit extension")?)
            }
            EXT_REVERSE_TRANSIT => {
                ExtBody::ReverseTransit(Cie::parse_list(data, "reverse transit extension")?)
            }
            EXT_AUTHENTICATION => {
                if data.len() < 4 {
                    return Err(bad("shorter than the 4-byte authentication type"));
                }
                ExtBody::Authentication {
                    auth_type: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                    data: data[4..].to_vec(),
                }
            }
            EXT_VENDOR_PRIVATE => ExtBody::VendorPrivate(data.to_vec()),
            EXT_NAT_ADDRESS => ExtBody::NatAddress(Cie::parse_list(data, "NAT address extension")?),
            _ => ExtBody::Unknown {
                ty,
                data: data.to_vec(),
            },
        };
        Ok(Extension { compulsory, body })
    }

    /// Parses extensions up to and including End; returns them and the
    /// bytes left after End.
    pub(crate) fn parse_list(buf: &[u8]) -> Result<(Vec<Extension>, Vec<u8>), ParseError> {
        let mut r = Reader::new(buf, "NHRP extension");
        let mut v = Vec::new();
        while r.remaining() > 0 {
            let ty_field = r.u16()?;
            let len = usize::from(r.u16()?);
            let data = r.bytes(len)?;
            let e = Extension::parse(ty_field, data)?;
            let end = matches!(e.body, ExtBody::End);
            v.push(e);
            if end {
                return Ok((v, r.rest().to_vec()));
            }
        }
        Ok((v, Vec::new()))
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        let ty = self.ty() | if self.compulsory { COMPULSORY } else { 0 };
        out.extend_from_slice(&ty.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match &self.body {
            ExtBody::End => {}
            ExtBody::ResponderAddress(c) => {
                if let Some(c) = c {
                    c.emit(out)
                }
            }
            ExtBody::ForwardTransit(v) | ExtBody::ReverseTransit(v) | ExtBody::NatAddress(v) => {
                v.iter().for_each(|c| c.emit(out))
            }
            ExtBody::Authentication { auth_type, data } => {
                out.extend_from_slice(&auth_type.to_be_bytes());
                out.extend_from_slice(data);
            }
            ExtBody::VendorPrivate(d) | ExtBody::Unknown { data: d, .. } => {
                out.extend_from_slice(d)
            }
        }
        let len = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
}
