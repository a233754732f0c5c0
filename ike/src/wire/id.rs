//! Identification payload (RFC 2407 4.6.2), also the body of NAT-OA.

use super::{WireError, be16, consts::idtype, need};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Typed identity data; `Other` keeps anything not recognised (or of odd length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(Vec<u8>),
    UserFqdn(Vec<u8>),
    Ipv4Subnet(Ipv4Addr, Ipv4Addr),
    Ipv6Subnet(Ipv6Addr, Ipv6Addr),
    Ipv4Range(Ipv4Addr, Ipv4Addr),
    Ipv6Range(Ipv6Addr, Ipv6Addr),
    KeyId(Vec<u8>),
    Other { ty: u8, data: Vec<u8> },
}

/// ID payload: type, IP protocol, port and the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPayload {
    pub protocol: u8,
    pub port: u16,
    pub id: Identity,
}

fn v4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}
fn v6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

impl Identity {
    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => idtype::IPV4_ADDR,
            Identity::Ipv6(_) => idtype::IPV6_ADDR,
            Identity::Fqdn(_) => idtype::FQDN,
            Identity::UserFqdn(_) => idtype::USER_FQDN,
            Identity::Ipv4Subnet(..) => idtype::IPV4_ADDR_SUBNET,
            Identity::Ipv6Subnet(..) => idtype::IPV6_ADDR_SUBNET,
            Identity::Ipv4Range(..) => idtype::IPV4_ADDR_RANGE,
            Identity::Ipv6Range(..) => idtype::IPV6_ADDR_RANGE,
            Identity::KeyId(_) => idtype::KEY_ID,
            Identity::Other { ty, .. } => *ty,
        }
    }

    /// Identity of a single address.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Identity::Ipv4(a),
            IpAddr::V6(a) => Identity::Ipv6(a),
        }
    }

    fn parse(ty: u8, d: &[u8]) -> Identity {
        match (ty, d.len()) {
            (idtype::IPV4_ADDR, 4) => Identity::Ipv4(v4(d)),
            (idtype::IPV6_ADDR, 16) => Identity::Ipv6(v6(d)),
            (idtype::FQDN, _) => Identity::Fqdn(d.to_vec()),
            (idtype::USER_FQDN, _) => Identity::UserFqdn(d.to_vec()),
            (idtype::IPV4_ADDR_SUBNET, 8) => Identity::Ipv4Subnet(v4(d), v4(&d[4..])),
            (idtype::IPV4_ADDR_RANGE, 8) => Identity::Ipv4Range(v4(d), v4(&d[4..])),
            (idtype::IPV6_ADDR_SUBNET, 32) => Identity::Ipv6Subnet(v6(d), v6(&d[16..])),
            (idtype::IPV6_ADDR_RANGE, 32) => Identity::Ipv6Range(v6(d), v6(&d[16..])),
            (idtype::KEY_ID, _) => Identity::KeyId(d.to_vec()),
            _ => Identity::Other {
                ty,
                data: d.to_vec(),
            },
        }
    }

    /// The identification data bytes (after the 4-byte ID header).
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(d) | Identity::UserFqdn(d) | Identity::KeyId(d) => d.clone(),
            Identity::Ipv4Subnet(a, b) | Identity::Ipv4Range(a, b) => {
                [a.octets(), b.octets()].concat()
            }
            Identity::Ipv6Subnet(a, b) | Identity::Ipv6Range(a, b) => {
                [a.octets(), b.octets()].concat()
            }
            Identity::Other { data, .. } => data.clone(),
        }
    }
}

impl IdPayload {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, WireError> {
        need(body, 4, "ID payload")?;
        Ok(IdPayload {
            protocol: body[1],
            port: be16(&body[2..]),
            id: Identity::parse(body[0], &body[4..]),
        })
    }

    /// The body as it is hashed (ID type .. data), RFC 2409 IDii_b.
    pub fn body(&self) -> Vec<u8> {
        let mut v = vec![self.id.id_type(), self.protocol];
        v.extend_from_slice(&self.port.to_be_bytes());
        v.extend_from_slice(&self.id.data());
        v
    }

    /// The IOS-style proxy text `addr/mask/proto/port`.
    pub fn proxy_text(&self) -> String {
        let (a, m) = match &self.id {
            Identity::Ipv4(a) => (a.to_string(), "255.255.255.255".to_string()),
            Identity::Ipv6(a) => (a.to_string(), "128".to_string()),
            Identity::Ipv4Subnet(a, m) => (a.to_string(), m.to_string()),
            Identity::Ipv6Subnet(a, m) => (a.to_string(), m.to_string()),
            Identity::Ipv4Range(a, b) => (a.to_string(), b.to_string()),
            Identity::Ipv6Range(a, b) => (a.to_string(), b.to_string()),
            other => (format!("{:?}", other), String::new()),
        };
        format!("{}/{}/{}/{}", a, m, self.protocol, self.port)
    }
}
