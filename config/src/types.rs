//! Small typed values used by the schema: roles, algorithms, transforms,
//! secrets. Each parses from the spelling an IOS engineer would type and
//! serializes back to one canonical spelling.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use zeroize::Zeroize;

/// Role of this node in the DMVPN cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Hub,
    Spoke,
}

/// Tunnel encapsulation, as IOS `tunnel mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TunnelMode {
    /// `tunnel mode gre multipoint` (mGRE, DMVPN).
    #[default]
    #[serde(rename = "gre-multipoint")]
    GreMultipoint,
    /// `tunnel mode gre ip` (point-to-point GRE, needs a destination).
    #[serde(rename = "gre")]
    Gre,
    /// `tunnel mode ipsec ipv4|ipv6` (static VTI, no GRE, needs a destination).
    #[serde(rename = "ipsec")]
    Ipsec,
}

/// Where the tunnel's outer (NBMA) packets come from: an address or an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelSource {
    Address(IpAddr),
    Interface(String),
}

impl fmt::Display for TunnelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelSource::Address(a) => write!(f, "{a}"),
            TunnelSource::Interface(i) => f.write_str(i),
        }
    }
}

/// Linux interface names: 1..=15 bytes, no '/', whitespace or ':'.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

impl FromStr for TunnelSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(TunnelSource::Address(a));
        }
        if valid_ifname(s) && !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            Ok(TunnelSource::Interface(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is neither an IP address nor a Linux interface name (use e.g. \"172.16.0.1\" or \"eth0\")"
            ))
        }
    }
}

impl Serialize for TunnelSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TunnelSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Forwarding threads of one dmvpnd (`[node] workers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// One per core the process may run on.
    #[default]
    Auto,
    Count(u16),
}

impl Workers {
    /// The most forwarding threads a node runs.
    pub const MAX: u16 = 64;

    /// How many threads to run on a machine with `cores` usable cores.
    pub fn resolve(self, cores: usize) -> usize {
        match self {
            Workers::Auto => cores.clamp(1, usize::from(Workers::MAX)),
            Workers::Count(n) => usize::from(n),
        }
    }
}

impl Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Fraction(f64),
            Flag(bool),
            Text(String),
        }
        let help = format!(
            "workers must be \"auto\" (one per core) or a number between 1 and {}",
            Workers::MAX
        );
        match Raw::deserialize(d).map_err(|_| D::Error::custom(&help))? {
            Raw::Text(t) if t.trim() == "auto" => Ok(Workers::Auto),
            Raw::Number(n) if (1..=i64::from(Workers::MAX)).contains(&n) => {
                Ok(Workers::Count(n as u16))
            }
            Raw::Number(n) => Err(D::Error::custom(format!("{help}, got {n}"))),
            Raw::Fraction(n) => Err(D::Error::custom(format!("{help}, got {n}"))),
            Raw::Flag(b) => Err(D::Error::custom(format!("{help}, got {b}"))),
            Raw::Text(t) => Err(D::Error::custom(format!("{help}, got \"{t}\""))),
        }
    }
}

/// Implements string serde through FromStr/Display for an enum.
macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// ISAKMP (phase 1) encryption, IOS `encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeEncryption {
    Des,
    TripleDes,
    Aes128,
    Aes192,
    Aes256,
}

impl IkeEncryption {
    pub fn is_weak(self) -> bool {
        // 3DES's 64-bit block lets a long session be attacked (Sweet32).
        matches!(self, IkeEncryption::Des | IkeEncryption::TripleDes)
    }
}

impl fmt::Display for IkeEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IkeEncryption::Des => "des",
            IkeEncryption::TripleDes => "3des",
            IkeEncryption::Aes128 => "aes-128",
            IkeEncryption::Aes192 => "aes-192",
            IkeEncryption::Aes256 => "aes-256",
        })
    }
}

impl FromStr for IkeEncryption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm: String = s.trim().to_ascii_lowercase().replace(' ', "-");
        Ok(match norm.as_str() {
            "des" => IkeEncryption::Des,
            "3des" => IkeEncryption::TripleDes,
            "aes" | "aes-128" => IkeEncryption::Aes128,
            "aes-192" => IkeEncryption::Aes192,
            "aes-256" => IkeEncryption::Aes256,
            _ => {
                return Err(format!(
                    "unknown encryption `{s}` (use des, 3des, aes-128, aes-192 or aes-256)"
                ));
            }
        })
    }
}
string_serde!(IkeEncryption);

/// ISAKMP hash / PRF, IOS `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IkeHash {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl IkeHash {
    pub fn is_weak(self) -> bool {
        matches!(self, IkeHash::Md5)
    }
}

impl fmt::Display for IkeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IkeHash::Md5 => "md5",
            IkeHash::Sha1 => "sha",
            IkeHash::Sha256 => "sha256",
            IkeHash::Sha384 => "sha384",
            IkeHash::Sha512 => "sha512",
        })
    }
}

impl FromStr for IkeHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "md5" => IkeHash::Md5,
            "sha" | "sha1" => IkeHash::Sha1,
            "sha256" => IkeHash::Sha256,
            "sha384" => IkeHash::Sha384,
            "sha512" => IkeHash::Sha512,
            _ => {
                return Err(format!(
                    "unknown hash `{s}` (use md5, sha, sha256, sha384 or sha512)"
                ));
            }
        })
    }
}
string_serde!(IkeHash);

/// ISAKMP authentication method, IOS `authentication`. Only pre-shared keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum IkeAuth {
    #[default]
    #[serde(rename = "pre-share")]
    PreShare,
}

/// Diffie-Hellman group number (1, 2, 5, 14, 15, 16, 19, 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct DhGroup(u16);

impl DhGroup {
    pub const SUPPORTED: [u16; 8] = [1, 2, 5, 14, 15, 16, 19, 20];
    pub fn new(n: u16) -> Option<Self> {
        Self::SUPPORTED.contains(&n).then_some(DhGroup(n))
    }
    pub fn number(self) -> u16 {
        self.0
    }
    pub fn is_weak(self) -> bool {
        matches!(self.0, 1 | 2 | 5)
    }
}

impl TryFrom<i64> for DhGroup {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        u16::try_from(n)
            .ok()
            .and_then(DhGroup::new)
            .ok_or_else(|| format!("unsupported DH group {n} (use 1, 2, 5, 14, 15, 16, 19 or 20)"))
    }
}

impl From<DhGroup> for i64 {
    fn from(g: DhGroup) -> i64 {
        g.0 as i64
    }
}

/// IKE identity sent in MM5/MM6 or AM, IOS `crypto isakmp identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    #[default]
    Address,
    Fqdn,
}

/// NAT traversal policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NatTraversal {
    /// Float to UDP 4500 when NAT-D shows a NAT (IOS default).
    #[default]
    Auto,
    /// Always encapsulate in UDP 4500.
    Force,
    /// Never (plain ESP, IOS `no crypto ipsec nat-transparency udp-encapsulation`).
    Off,
}

/// The phase 1 exchange dmvpnd starts with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitiateMode {
    /// Main Mode (identity protection; IOS default).
    #[default]
    Main,
    /// Aggressive Mode (IOS ISAKMP profile `initiate mode aggressive`).
    Aggressive,
}

impl InitiateMode {
    pub fn is_main(&self) -> bool {
        *self == InitiateMode::Main
    }
}

/// ESP mode, IOS transform-set `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EspMode {
    #[default]
    Transport,
    Tunnel,
}

/// One element of an IOS transform set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    EspDes,
    Esp3des,
    /// esp-aes with key length in bits (128, 192, 256).
    EspAes(u16),
    /// esp-gcm (RFC 4106, 16-byte ICV) with key length in bits (128, 256).
    EspGcm(u16),
    EspMd5Hmac,
    EspShaHmac,
    EspSha256Hmac,
}

/// What a transform contributes to an ESP SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    Cipher,
    Aead,
    Integrity,
}

impl Transform {
    pub fn kind(self) -> TransformKind {
        match self {
            Transform::EspDes | Transform::Esp3des | Transform::EspAes(_) => TransformKind::Cipher,
            Transform::EspGcm(_) => TransformKind::Aead,
            _ => TransformKind::Integrity,
        }
    }
    /// Key bytes a manual SA must supply for this transform (GCM: key + 4-byte salt).
    pub fn key_len(self) -> usize {
        match self {
            Transform::EspDes => 8,
            Transform::Esp3des => 24,
            Transform::EspAes(bits) => bits as usize / 8,
            Transform::EspGcm(bits) => bits as usize / 8 + 4,
            Transform::EspMd5Hmac => 16,
            Transform::EspShaHmac => 20,
            Transform::EspSha256Hmac => 32,
        }
    }
    pub fn is_weak(self) -> bool {
        matches!(
            self,
            Transform::EspDes | Transform::Esp3des | Transform::EspMd5Hmac
        )
    }

    /// Why `key` (of the right length) must not be used with this
    /// transform: a DES weak or semi-weak key (FIPS 74), or a 3DES key
    /// whose first two or last two parts are equal, which makes it single
    /// DES (RFC 2451 §2.3 says such keys MUST be rejected). Parity bits
    /// are ignored, as DES ignores them.
    pub fn key_weakness(self, key: &[u8]) -> Option<&'static str> {
        let part = |i: usize| -> Option<u64> {
            let b: [u8; 8] = key.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_be_bytes(b) & DES_KEY_BITS)
        };
        match self {
            Transform::EspDes => part(0)
                .filter(|k| DES_WEAK_KEYS.iter().any(|w| w & DES_KEY_BITS == *k))
                .map(|_| "a DES weak or semi-weak key"),
            Transform::Esp3des => {
                let (a, b, c) = (part(0)?, part(1)?, part(2)?);
                (a == b || b == c).then_some(
                    "a 3DES key whose first two or last two parts are equal (that is single DES)",
                )
            }
            _ => None,
        }
    }
}

/// The bits of a DES key block that DES uses (each byte's low bit is parity).
const DES_KEY_BITS: u64 = 0xfefe_fefe_fefe_fefe;

/// The 4 weak and 12 semi-weak DES keys (FIPS 74), with odd parity.
const DES_WEAK_KEYS: [u64; 16] = [
    0x0101_0101_0101_0101,
    0xfefe_fefe_fefe_fefe,
    0xe0e0_e0e0_f1f1_f1f1,
    0x1f1f_1f1f_0e0e_0e0e,
    0x011f_011f_010e_010e,
    0x1f01_1f01_0e01_0e01,
    0x01e0_01e0_01f1_01f1,
    0xe001_e001_f101_f101,
    0x01fe_01fe_01fe_01fe,
    0xfe01_fe01_fe01_fe01,
    0x1fe0_1fe0_0ef1_0ef1,
    0xe01f_e01f_f10e_f10e,
    0x1ffe_1ffe_0efe_0efe,
    0xfe1f_fe1f_fe0e_fe0e,
    0xe0fe_e0fe_f1fe_f1fe,
    0xfee0_fee0_fef1_fef1,
];

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transform::EspDes => f.write_str("esp-des"),
            Transform::Esp3des => f.write_str("esp-3des"),
            Transform::EspAes(b) => write!(f, "esp-aes {b}"),
            Transform::EspGcm(b) => write!(f, "esp-gcm {b}"),
            Transform::EspMd5Hmac => f.write_str("esp-md5-hmac"),
            Transform::EspShaHmac => f.write_str("esp-sha-hmac"),
            Transform::EspSha256Hmac => f.write_str("esp-sha256-hmac"),
        }
    }
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let mut words = lower.split_whitespace();
        let name = words.next().unwrap_or("");
        let bits = words.next();
        let extra = words.next();
        let bad = || {
            format!(
                "unknown transform `{s}` (use esp-des, esp-3des, esp-aes [128|192|256], esp-gcm [128|256], esp-md5-hmac, esp-sha-hmac or esp-sha256-hmac)"
            )
        };
        if extra.is_some() {
            return Err(bad());
        }
        let t = match (name, bits) {
            ("esp-des", None) => Transform::EspDes,
            ("esp-3des", None) => Transform::Esp3des,
            ("esp-aes", None) => Transform::EspAes(128),
            ("esp-aes", Some(b)) => match b {
                "128" => Transform::EspAes(128),
                "192" => Transform::EspAes(192),
                "256" => Transform::EspAes(256),
                _ => return Err(bad()),
            },
            ("esp-gcm", None) => Transform::EspGcm(128),
            ("esp-gcm", Some(b)) => match b {
                "128" => Transform::EspGcm(128),
                "256" => Transform::EspGcm(256),
                _ => return Err(bad()),
            },
            ("esp-md5-hmac", None) => Transform::EspMd5Hmac,
            ("esp-sha-hmac", None) => Transform::EspShaHmac,
            ("esp-sha256-hmac", None) => Transform::EspSha256Hmac,
            _ => return Err(bad()),
        };
        Ok(t)
    }
}
string_serde!(Transform);

/// A secret string (pre-shared key, NHRP password): never printed by
/// Debug, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(d)?))
    }
}

/// Key material given as hex (manual SAs). Kept as text until validation
/// so a bad digit is reported with its position; `bytes()` decodes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexKey(String);

impl HexKey {
    pub fn new(s: impl Into<String>) -> Self {
        HexKey(s.into())
    }
    /// The digits with optional `0x` prefix and `:`/space separators removed.
    fn digits(&self) -> String {
        let t = self.0.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        t.chars().filter(|c| *c != ':' && *c != ' ').collect()
    }
    /// Decoded bytes, or a reason the text is not hex.
    pub fn bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let d = zeroize::Zeroizing::new(self.digits());
        if d.is_empty() {
            return Err("empty key".into());
        }
        if let Some(c) = d.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("`{c}` is not a hex digit"));
        }
        if !d.len().is_multiple_of(2) {
            return Err(format!("odd number of hex digits ({})", d.len()));
        }
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(d.len() / 2));
        let b = d.as_bytes();
        for pair in b.chunks(2) {
            let hi = (pair[0] as char).to_digit(16).unwrap_or(0) as u8;
            let lo = (pair[1] as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hi << 4 | lo);
        }
        Ok(out)
    }
}

impl Drop for HexKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HexKey(***)")
    }
}

impl Serialize for HexKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HexKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HexKey(String::deserialize(d)?))
    }
}

/// File mode given as an octal string ("0600").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(pub u32);

impl TryFrom<String> for FileMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.strip_prefix("0o").unwrap_or(&s);
        match u32::from_str_radix(t, 8) {
            Ok(m) if m <= 0o7777 => Ok(FileMode(m)),
            _ => Err(format!(
                "`{s}` is not an octal file mode (use e.g. \"0600\" or \"0660\")"
            )),
        }
    }
}

impl From<FileMode> for String {
    fn from(m: FileMode) -> String {
        format!("{:04o}", m.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_round_trip() {
        for s in [
            "esp-des",
            "esp-3des",
            "esp-aes 128",
            "esp-aes 192",
            "esp-aes 256",
            "esp-gcm 128",
            "esp-gcm 256",
            "esp-md5-hmac",
            "esp-sha-hmac",
            "esp-sha256-hmac",
        ] {
            let t: Transform = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!("esp-aes".parse::<Transform>(), Ok(Transform::EspAes(128)));
        assert!("esp-aes 512".parse::<Transform>().is_err());
        assert!("esp-null".parse::<Transform>().is_err());
    }

    #[test]
    fn hex_keys() {
        assert_eq!(&**HexKey::new("0x0aFF").bytes().unwrap(), &[0x0a, 0xff]);
        assert_eq!(&**HexKey::new("0a:ff").bytes().unwrap(), &[0x0a, 0xff]);
        assert!(HexKey::new("0g").bytes().is_err());
        assert!(HexKey::new("abc").bytes().is_err());
        assert!(HexKey::new("").bytes().is_err());
    }

    #[test]
    fn sources() {
        assert_eq!(
            "172.16.0.1".parse::<TunnelSource>(),
            Ok(TunnelSource::Address("172.16.0.1".parse().unwrap()))
        );
        assert_eq!(
            "eth0".parse::<TunnelSource>(),
            Ok(TunnelSource::Interface("eth0".into()))
        );
        assert!("FastEthernet0/0".parse::<TunnelSource>().is_err());
        assert!("1.2.3".parse::<TunnelSource>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn hex_never_panics(s in ".{0,40}") {
            let _ = HexKey::new(s).bytes();
        }
        #[test]
        fn transform_parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Transform>();
        }
    }
}
