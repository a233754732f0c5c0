//! SA, Proposal and Transform payloads with data attributes (RFC 2408 3.3-3.6).

use super::{WireError, be16, be32, consts, need};

/// Value of a data attribute: basic (TV, AF=1) or variable (TLV, AF=0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Basic(u16),
    Variable(Vec<u8>),
}

/// One data attribute. `ty` excludes the AF bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ty: u16,
    pub value: AttrValue,
}

impl Attribute {
    pub fn basic(ty: u16, v: u16) -> Self {
        Attribute {
            ty,
            value: AttrValue::Basic(v),
        }
    }

    /// Encode a number the way IOS does: basic if it fits 16 bits,
    /// otherwise a 4-byte variable attribute (86400 -> 0x00 0x01 0x51 0x80).
    pub fn number(ty: u16, v: u64) -> Self {
        if v <= u16::MAX as u64 {
            Self::basic(ty, v as u16)
        } else if v <= u32::MAX as u64 {
            Attribute {
                ty,
                value: AttrValue::Variable((v as u32).to_be_bytes().to_vec()),
            }
        } else {
            Attribute {
                ty,
                value: AttrValue::Variable(v.to_be_bytes().to_vec()),
            }
        }
    }

    /// Numeric value; variable values of up to 8 bytes read big-endian.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            AttrValue::Basic(v) => Some(*v as u64),
            AttrValue::Variable(b) if b.len() <= 8 => {
                Some(b.iter().fold(0u64, |a, x| (a << 8) | *x as u64))
            }
            AttrValue::Variable(_) => None,
        }
    }

    fn parse(buf: &[u8]) -> Result<(Attribute, usize), WireError> {
        need(buf, 4, "data attribute")?;
        let t = be16(buf);
        let v = be16(&buf[2..]);
        if t & 0x8000 != 0 {
            Ok((Self::basic(t & 0x7fff, v), 4))
        } else {
            let n = v as usize;
            need(buf, 4 + n, "variable attribute")?;
            Ok((
                Attribute {
                    ty: t,
                    value: AttrValue::Variable(buf[4..4 + n].to_vec()),
                },
                4 + n,
            ))
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match &self.value {
            AttrValue::Basic(v) => {
                out.extend_from_slice(&(self.ty | 0x8000).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttrValue::Variable(b) => {
                out.extend_from_slice(&(self.ty & 0x7fff).to_be_bytes());
                out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// Parse a run of data attributes (e.g. RESPONDER-LIFETIME notify data).
pub fn parse_attributes(mut a: &[u8]) -> Result<Vec<Attribute>, WireError> {
    let mut attrs = Vec::new();
    while !a.is_empty() {
        if attrs.len() >= MAX_ITEMS {
            return Err(WireError::TooManyPayloads);
        }
        let (attr, used) = Attribute::parse(a)?;
        attrs.push(attr);
        a = &a[used..];
    }
    Ok(attrs)
}

/// Emit a run of data attributes.
pub fn emit_attributes(attrs: &[Attribute]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attrs {
        a.emit(&mut out);
    }
    out
}

/// A transform: id (KEY_IKE=1 in phase 1, ESP_3DES etc. in phase 2) and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub number: u8,
    pub transform_id: u8,
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// First attribute of class `ty`, as a number.
    pub fn attr(&self, ty: u16) -> Option<u64> {
        self.attributes
            .iter()
            .find(|a| a.ty == ty)
            .and_then(Attribute::as_u64)
    }
}

/// A proposal: protocol, SPI and its transforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// The SA payload body (DOI, situation, proposals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    pub doi: u32,
    pub situation: u32,
    pub proposals: Vec<Proposal>,
}

const MAX_ITEMS: usize = 64;

impl SaPayload {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, WireError> {
        need(body, 8, "SA payload")?;
        let doi = be32(body);
        let situation = be32(&body[4..]);
        let mut rest = &body[8..];
        let mut proposals = Vec::new();
        let mut next = if rest.is_empty() {
            consts::payload::NONE
        } else {
            consts::payload::PROPOSAL
        };
        while next != consts::payload::NONE {
            if next != consts::payload::PROPOSAL {
                return Err(WireError::BadNext {
                    ty: next,
                    what: "SA payload",
                });
            }
            if proposals.len() >= MAX_ITEMS {
                return Err(WireError::TooManyPayloads);
            }
            need(rest, 8, "proposal payload")?;
            let len = be16(&rest[2..]) as usize;
            if len < 8 || len > rest.len() {
                return Err(WireError::BadLength {
                    what: "proposal payload",
                    len,
                });
            }
            proposals.push(Proposal::parse(&rest[..len])?);
            next = rest[0];
            rest = &rest[len..];
        }
        Ok(SaPayload {
            doi,
            situation,
            proposals,
        })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.doi.to_be_bytes());
        out.extend_from_slice(&self.situation.to_be_bytes());
        for (i, p) in self.proposals.iter().enumerate() {
            let next = if i + 1 < self.proposals.len() {
                consts::payload::PROPOSAL
            } else {
                0
            };
            p.emit(next, out);
        }
    }
}

impl Proposal {
    fn parse(p: &[u8]) -> Result<Self, WireError> {
        let number = p[4];
        let protocol = p[5];
        let spi_size = p[6] as usize;
        let count = p[7] as usize;
        need(p, 8 + spi_size, "proposal SPI")?;
        let spi = p[8..8 + spi_size].to_vec();
        let mut rest = &p[8 + spi_size..];
        let mut transforms = Vec::with_capacity(count.min(MAX_ITEMS));
        for _ in 0..count {
            need(rest, 8, "transform payload")?;
            let len = be16(&rest[2..]) as usize;
            if len < 8 || len > rest.len() {
                return Err(WireError::BadLength {
                    what: "transform payload",
                    len,
                });
            }
            let t = &rest[..len];
            let mut attrs = Vec::new();
            let mut a = &t[8..];
            while !a.is_empty() {
                if attrs.len() >= MAX_ITEMS {
                    return Err(WireError::TooManyPayloads);
                }
                let (attr, used) = Attribute::parse(a)?;
                attrs.push(attr);
                a = &a[used..];
            }
            transforms.push(Transform {
                number: t[4],
                transform_id: t[5],
                attributes: attrs,
            });
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(WireError::BadLength {
                what: "proposal payload (transform count)",
                len: p.len(),
            });
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    fn emit(&self, next: u8, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0, self.number, self.protocol]);
        out.push(self.spi.len() as u8);
        out.push(self.transforms.len() as u8);
        out.extend_from_slice(&self.spi);
        for (i, t) in self.transforms.iter().enumerate() {
            let tnext = if i + 1 < self.transforms.len() {
                consts::payload::TRANSFORM
            } else {
                0
            };
            let ts = out.len();
            out.extend_from_slice(&[tnext, 0, 0, 0, t.number, t.transform_id, 0, 0]);
            for a in &t.attributes {
                a.emit(out);
            }
            let tl = (out.len() - ts) as u16;
            out[ts + 2..ts + 4].copy_from_slice(&tl.to_be_bytes());
        }
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}
