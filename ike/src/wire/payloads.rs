//! The generic payload enum and the small payload bodies.

use super::{IdPayload, SaPayload, WireError, be16, be32, consts::payload as pt, need};

/// Notification payload (RFC 2408 3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPayload {
    pub doi: u32,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub msg_type: u16,
    pub data: Vec<u8>,
}

/// Delete payload (RFC 2408 3.15); all SPIs share one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload {
    pub doi: u32,
    pub protocol: u8,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// One ISAKMP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(SaPayload),
    Ke(Vec<u8>),
    Id(IdPayload),
    Hash(Vec<u8>),
    Nonce(Vec<u8>),
    Notify(NotifyPayload),
    Delete(DeletePayload),
    VendorId(Vec<u8>),
    /// NAT-D; `draft` selects payload type 130 instead of 20.
    NatD {
        draft: bool,
        hash: Vec<u8>,
    },
    /// NAT-OA; `draft` selects payload type 131 instead of 21.
    NatOa {
        draft: bool,
        addr: IdPayload,
    },
    Unknown {
        ty: u8,
        body: Vec<u8>,
    },
}

impl Payload {
    pub fn kind(&self) -> u8 {
        match self {
            Payload::Sa(_) => pt::SA,
            Payload::Ke(_) => pt::KE,
            Payload::Id(_) => pt::ID,
            Payload::Hash(_) => pt::HASH,
            Payload::Nonce(_) => pt::NONCE,
            Payload::Notify(_) => pt::NOTIFY,
            Payload::Delete(_) => pt::DELETE,
            Payload::VendorId(_) => pt::VENDOR_ID,
            Payload::NatD { draft: false, .. } => pt::NAT_D,
            Payload::NatD { draft: true, .. } => pt::NAT_D_DRAFT,
            Payload::NatOa { draft: false, .. } => pt::NAT_OA,
            Payload::NatOa { draft: true, .. } => pt::NAT_OA_DRAFT,
            Payload::Unknown { ty, .. } => *ty,
        }
    }

    /// Short name as ASA prints it in `IKE_DECODE` lines.
    pub fn name(&self) -> &'static str {
        match self {
            Payload::Sa(_) => "SA",
            Payload::Ke(_) => "KE",
            Payload::Id(_) => "ID",
            Payload::Hash(_) => "HASH",
            Payload::Nonce(_) => "NONCE",
            Payload::Notify(_) => "NOTIFY",
            Payload::Delete(_) => "DELETE",
            Payload::VendorId(_) => "VENDOR",
            Payload::NatD { .. } => "NAT-D",
            Payload::NatOa { .. } => "NAT-OA",
            Payload::Unknown { .. } => "UNKNOWN",
        }
    }

    pub(crate) fn parse(ty: u8, b: &[u8]) -> Result<Payload, WireError> {
        Ok(match ty {
            pt::SA => Payload::Sa(SaPayload::parse(b)?),
            pt::KE => Payload::Ke(b.to_vec()),
            pt::ID => Payload::Id(IdPayload::parse(b)?),
            pt::HASH => Payload::Hash(b.to_vec()),
            pt::NONCE => Payload::Nonce(b.to_vec()),
            pt::VENDOR_ID => Payload::VendorId(b.to_vec()),
            pt::NAT_D | pt::NAT_D_DRAFT => Payload::NatD {
                draft: ty == pt::NAT_D_DRAFT,
                hash: b.to_vec(),
            },
            pt::NAT_OA | pt::NAT_OA_DRAFT => Payload::NatOa {
                draft: ty == pt::NAT_OA_DRAFT,
                addr: IdPayload::parse(b)?,
            },
            pt::NOTIFY => {
                need(b, 8, "notify payload")?;
                let spi_size = b[5] as usize;
                need(b, 8 + spi_size, "notify SPI")?;
                Payload::Notify(NotifyPayload {
                    doi: be32(b),
                    protocol: b[4],
                    msg_type: be16(&b[6..]),
                    spi: b[8..8 + spi_size].to_vec(),
                    data: b[8 + spi_size..].to_vec(),
                })
            }
            pt::DELETE => {
                need(b, 8, "delete payload")?;
                let spi_size = b[5] as usize;
                let n = be16(&b[6..]) as usize;
                let rest = &b[8..];
                if spi_size == 0 && n != 0 || rest.len() != spi_size * n {
                    return Err(WireError::BadLength {
                        what: "delete payload",
                        len: b.len(),
                    });
                }
                Payload::Delete(DeletePayload {
                    doi: be32(b),
                    protocol: b[4],
                    spi_size: spi_size as u8,
                    spis: if spi_size == 0 {
                        Vec::new()
                    } else {
                        rest.chunks(spi_size).map(<[u8]>::to_vec).collect()
                    },
                })
            }
            _ => Payload::Unknown {
                ty,
                body: b.to_vec(),
            },
        })
    }

    pub(crate) fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(sa) => sa.emit(out),
            Payload::Ke(d)
            | Payload::Hash(d)
            | Payload::Nonce(d)
            | Payload::VendorId(d)
            | Payload::NatD { hash: d, .. }
            | Payload::Unknown { body: d, .. } => out.extend_from_slice(d),
            Payload::Id(id) | Payload::NatOa { addr: id, .. } => out.extend_from_slice(&id.body()),
            Payload::Notify(n) => {
                out.extend_from_slice(&n.doi.to_be_bytes());
                out.push(n.protocol);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.msg_type.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                out.extend_from_slice(&d.doi.to_be_bytes());
                out.push(d.protocol);
                out.push(d.spi_size);
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(s);
                }
            }
        }
    }
}
