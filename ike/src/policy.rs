//! Engine configuration (a plain struct the node fills from its own
//! config) and the IOS proposal-selection rules.

use dmvpn_wire::prefix::Prefix;

use crate::crypto::{EncrAlg, GroupId, HashAlg};
use crate::wire::consts::{encap, life, p1attr, p2attr};
use crate::wire::{Attribute, IdPayload, Identity, Transform};
use std::net::IpAddr;
use std::time::Duration;
use zeroize::Zeroizing;

/// An ISAKMP policy (`crypto isakmp policy N`); authentication is always pre-share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkePolicy {
    pub priority: u32,
    pub encr: EncrAlg,
    pub hash: HashAlg,
    pub group: GroupId,
    /// Seconds; IOS default 86400.
    pub lifetime: u32,
}

impl IkePolicy {
    /// IOS defaults for `authentication pre-share` + `hash md5` from the
    /// seeds: DES, MD5, group 1, 86400 s.
    pub fn ios_default(priority: u32) -> Self {
        IkePolicy {
            priority,
            encr: EncrAlg::Des,
            hash: HashAlg::Md5,
            group: GroupId::Modp768,
            lifetime: 86400,
        }
    }

    /// Phase 1 transform (KEY_IKE) carrying this policy.
    pub fn to_transform(&self, number: u8) -> Transform {
        let (e, kl) = self.encr.ike_id();
        let mut attributes = vec![Attribute::basic(p1attr::ENCRYPTION, e)];
        if let Some(kl) = kl {
            attributes.push(Attribute::basic(p1attr::KEY_LENGTH, kl));
        }
        attributes.extend([
            Attribute::basic(p1attr::HASH, self.hash.ike_id()),
            Attribute::basic(p1attr::AUTH, 1),
            Attribute::basic(p1attr::GROUP, self.group.ike_id()),
            Attribute::basic(p1attr::LIFE_TYPE, life::SECONDS),
            Attribute::number(p1attr::LIFE_DURATION, self.lifetime as u64),
        ]);
        Transform {
            number,
            transform_id: 1,
            attributes,
        }
    }
}

/// What a received phase 1 transform offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedP1 {
    pub encr: EncrAlg,
    pub hash: HashAlg,
    pub group: GroupId,
    pub auth: u64,
    /// Offered lifetime in seconds, if any.
    pub lifetime: Option<u64>,
}

/// Decode a phase 1 transform; `None` if it uses something we do not implement.
pub fn decode_p1(t: &Transform) -> Option<OfferedP1> {
    if t.transform_id != 1 {
        return None;
    }
    let encr = EncrAlg::from_ike(t.attr(p1attr::ENCRYPTION)?, t.attr(p1attr::KEY_LENGTH))?;
    let mut lifetime = None;
    let mut ltype = None;
    for a in &t.attributes {
        match a.ty {
            p1attr::LIFE_TYPE => ltype = a.as_u64(),
            p1attr::LIFE_DURATION if ltype == Some(life::SECONDS as u64) => lifetime = a.as_u64(),
            _ => {}
        }
    }
    Some(OfferedP1 {
        encr,
        hash: HashAlg::from_ike(t.attr(p1attr::HASH)?)?,
        group: GroupId::from_ike(t.attr(p1attr::GROUP)?)?,
        auth: t.attr(p1attr::AUTH)?,
        lifetime,
    })
}

/// IOS rule: a policy matches when algorithms are equal and the peer's
/// lifetime is not longer than ours; the agreed lifetime is the peer's
/// (or ours if the peer sent none).
pub fn p1_match(policy: &IkePolicy, o: &OfferedP1) -> Option<u32> {
    if o.auth != 1 || o.encr != policy.encr || o.hash != policy.hash || o.group != policy.group {
        return None;
    }
    match o.lifetime {
        None => Some(policy.lifetime),
        Some(l) if l <= policy.lifetime as u64 && l > 0 => Some(l as u32),
        Some(_) => None,
    }
}

/// ESP encryption (IPsec DOI transform ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspEncr {
    Null,
    Des,
    TripleDes,
    /// AES-CBC with key length in bits.
    AesCbc(u16),
    /// AES-GCM with a 16-byte ICV (RFC 4106), key length in bits.
    AesGcm16(u16),
}

impl EspEncr {
    pub fn transform_id(self) -> u8 {
        match self {
            EspEncr::Des => 2,
            EspEncr::TripleDes => 3,
            EspEncr::Null => 11,
            EspEncr::AesCbc(_) => 12,
            EspEncr::AesGcm16(_) => 20,
        }
    }

    pub fn key_bits(self) -> Option<u16> {
        match self {
            EspEncr::AesCbc(b) | EspEncr::AesGcm16(b) => Some(b),
            _ => None,
        }
    }

    /// KEYMAT bytes for encryption (GCM includes the 4-byte salt).
    pub fn key_len(self) -> usize {
        match self {
            EspEncr::Null => 0,
            EspEncr::Des => 8,
            EspEncr::TripleDes => 24,
            EspEncr::AesCbc(b) => b as usize / 8,
            EspEncr::AesGcm16(b) => b as usize / 8 + 4,
        }
    }

    pub fn from_ids(id: u8, key_bits: Option<u64>) -> Option<Self> {
        let kb = |d: u16| -> Option<u16> {
            match key_bits {
                None => Some(d),
                Some(b @ (128 | 192 | 256)) => Some(b as u16),
                Some(_) => None,
            }
        };
        Some(match id {
            2 => EspEncr::Des,
            3 => EspEncr::TripleDes,
            11 => EspEncr::Null,
            12 => EspEncr::AesCbc(kb(128)?),
            20 => EspEncr::AesGcm16(kb(128)?),
            _ => return None,
        })
    }

    /// IOS transform-set keyword.
    pub fn ios_name(self) -> String {
        match self {
            EspEncr::Null => "esp-null".into(),
            EspEncr::Des => "esp-des".into(),
            EspEncr::TripleDes => "esp-3des".into(),
            EspEncr::AesCbc(128) => "esp-aes".into(),
            EspEncr::AesCbc(b) => format!("esp-aes {b}"),
            EspEncr::AesGcm16(b) => format!("esp-gcm {b}"),
        }
    }
}

/// An ESP transform: cipher plus optional HMAC (none for GCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspTransform {
    pub encr: EspEncr,
    pub integ: Option<HashAlg>,
}

impl EspTransform {
    /// IOS style `esp-3des esp-md5-hmac`.
    pub fn ios_name(&self) -> String {
        let i = match self.integ {
            None => String::new(),
            Some(HashAlg::Md5) => " esp-md5-hmac".into(),
            Some(HashAlg::Sha1) => " esp-sha-hmac".into(),
            Some(h) => format!(" esp-{}-hmac", h.ios_name().to_lowercase()),
        };
        format!("{}{}", self.encr.ios_name(), i)
    }
}

/// IPsec mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Tunnel,
    Transport,
}

/// `crypto ipsec transform-set NAME ...` with its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSet {
    pub name: String,
    pub esp: EspTransform,
    pub mode: Mode,
}

/// The phase 1 exchange we start with a peer (and rekey with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitiateMode {
    /// Main Mode (identity protection; the IOS default).
    #[default]
    Main,
    /// Aggressive Mode (IOS ISAKMP profile `initiate mode aggressive`).
    Aggressive,
}

/// A pre-shared key for peers in `prefix/len` (0.0.0.0/0 or ::/0 is the wildcard).
#[derive(Clone)]
pub struct PskEntry {
    pub prefix: IpAddr,
    pub len: u8,
    pub key: Zeroizing<Vec<u8>>,
    /// How we start phase 1 with these peers.
    pub initiate: InitiateMode,
}

impl std::fmt::Debug for PskEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PskEntry({}/{}, {:?}, <secret>)",
            self.prefix, self.len, self.initiate
        )
    }
}

impl PskEntry {
    /// A key for `prefix/len`, initiating Main Mode.
    pub fn new(prefix: IpAddr, len: u8, key: &[u8]) -> Self {
        PskEntry {
            prefix,
            len,
            key: Zeroizing::new(key.to_vec()),
            initiate: InitiateMode::Main,
        }
    }

    /// Whether this entry names peers more specifically than "anyone".
    pub fn is_specific(&self) -> bool {
        self.len > 0
    }
}

/// NAT traversal behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatTMode {
    Disabled,
    /// Negotiate; float to 4500 only when a NAT is detected.
    Enabled,
    /// Pretend to be behind a NAT so that ESP is always UDP-encapsulated.
    Force,
}

/// Dead peer detection (`crypto isakmp keepalive INTERVAL RETRY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpdConfig {
    pub interval: Duration,
    pub retry: Duration,
    pub max_retries: u32,
}

/// Everything the engine needs; plain data.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// ISAKMP policies; tried in ascending priority.
    pub policies: Vec<IkePolicy>,
    /// Transform sets in preference order.
    pub transform_sets: Vec<TransformSet>,
    pub psks: Vec<PskEntry>,
    /// Phase 1 identity; `None` = our address (ID type 1/5, UDP port 500 as IOS).
    pub local_id: Option<Identity>,
    /// PFS group for Quick Mode (`set pfs`).
    pub pfs: Option<GroupId>,
    /// Phase 2 lifetimes (IOS defaults 3600 s / 4608000 KB).
    pub sa_lifetime_secs: u32,
    pub sa_lifetime_kb: u64,
    pub dpd: Option<DpdConfig>,
    pub nat_t: NatTMode,
    /// Offer/accept RFC 3947 NAT-T; when false only the drafts (payloads
    /// 130/131, encapsulation 61443/61444) are spoken, as by old peers.
    pub nat_t_rfc: bool,
    /// Answer Aggressive Mode (IOS does unless `crypto isakmp
    /// aggressive-mode disable`). Off by default: Aggressive Mode hands
    /// anyone a hash to attack the pre-shared key offline. When off, a
    /// first Aggressive Mode message is dropped and counted
    /// (`EngineStats::aggressive_refused`). Initiating Aggressive Mode is a
    /// per-peer choice: `PskEntry::initiate`.
    pub answer_aggressive: bool,
    pub initial_contact: bool,
    pub retransmit_initial: Duration,
    pub retransmit_max: u32,
    /// Half-open (not yet authenticated) responder SAs per peer address / overall.
    pub max_half_open_per_peer: usize,
    pub max_half_open: usize,
    /// Rekey child SAs this long before they expire.
    pub rekey_margin: Duration,
    /// Replace phase 1 SAs before their lifetime ends while IPsec SAs with
    /// the peer exist (initiator at 85-90 %, responder at 95 %; `rekey.rs`).
    pub phase1_rekey: bool,
    /// NAT keepalive interval (UDP 4500, one 0xff byte).
    pub nat_keepalive: Duration,
    /// The first ISAKMP SA `conn-id` and the step between two: the
    /// engines of one node's tunnels interleave theirs, so that each
    /// number is shown once, as on IOS.
    pub conn_ids: (u64, u64),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policies: vec![IkePolicy::ios_default(10)],
            transform_sets: vec![],
            psks: vec![],
            local_id: None,
            pfs: None,
            sa_lifetime_secs: 3600,
            sa_lifetime_kb: 4_608_000,
            dpd: None,
            nat_t: NatTMode::Enabled,
            nat_t_rfc: true,
            answer_aggressive: false,
            initial_contact: true,
            retransmit_initial: Duration::from_secs(2),
            retransmit_max: 5,
            max_half_open_per_peer: 8,
            max_half_open: 1024,
            rekey_margin: Duration::from_secs(30),
            phase1_rekey: true,
            nat_keepalive: Duration::from_secs(20),
            conn_ids: (1001, 1),
        }
    }
}

impl EngineConfig {
    /// Longest-prefix PSK for `peer`.
    pub fn psk_for(&self, peer: IpAddr) -> Option<&PskEntry> {
        self.psks
            .iter()
            .filter(|e| Prefix::new(e.prefix, e.len).contains_addr(peer))
            .max_by_key(|e| e.len)
    }

    /// Whether we start Aggressive Mode with `peer` (its key says so).
    pub fn initiates_aggressive(&self, peer: IpAddr) -> bool {
        self.psk_for(peer)
            .is_some_and(|e| e.initiate == InitiateMode::Aggressive)
    }

    /// Whether `peer` matches a pre-shared key more specific than the
    /// wildcard: a configured peer, served first when under load.
    pub fn is_known_peer(&self, peer: IpAddr) -> bool {
        self.psk_for(peer).is_some_and(PskEntry::is_specific)
    }

    /// Policies in ascending priority order.
    pub fn sorted_policies(&self) -> Vec<IkePolicy> {
        let mut v = self.policies.clone();
        v.sort_by_key(|p| p.priority);
        v
    }
}

/// Phase 2 transform as proposed or chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedP2 {
    pub esp: EspTransform,
    pub encap: u16,
    pub group: Option<GroupId>,
    pub life_secs: Option<u64>,
    pub life_kb: Option<u64>,
}

pub fn decode_p2(t: &Transform) -> Option<OfferedP2> {
    let encr = EspEncr::from_ids(t.transform_id, t.attr(p2attr::KEY_LENGTH))?;
    let integ = match t.attr(p2attr::AUTH) {
        None => None,
        Some(a) => Some(HashAlg::from_esp_auth(a)?),
    };
    if matches!(encr, EspEncr::AesGcm16(_)) != integ.is_none() {
        return None;
    }
    let mut ltype = None;
    let (mut ls, mut lk) = (None, None);
    for a in &t.attributes {
        match a.ty {
            p2attr::LIFE_TYPE => ltype = a.as_u64(),
            p2attr::LIFE_DURATION => match ltype {
                Some(1) => ls = a.as_u64(),
                Some(2) => lk = a.as_u64(),
                _ => {}
            },
            _ => {}
        }
    }
    let group = match t.attr(p2attr::GROUP) {
        None => None,
        Some(g) => Some(GroupId::from_ike(g)?),
    };
    Some(OfferedP2 {
        esp: EspTransform { encr, integ },
        encap: t
            .attr(p2attr::ENCAPSULATION)
            .unwrap_or(encap::TUNNEL as u64) as u16,
        group,
        life_secs: ls,
        life_kb: lk,
    })
}

/// Encode a phase 2 transform in the attribute order IOS uses: encaps,
/// lifetimes (seconds, kilobytes), authenticator, key length, group.
pub fn encode_p2(number: u8, o: &OfferedP2) -> Transform {
    let mut a = vec![Attribute::basic(p2attr::ENCAPSULATION, o.encap)];
    if let Some(s) = o.life_secs {
        a.push(Attribute::basic(p2attr::LIFE_TYPE, life::SECONDS));
        a.push(Attribute::number(p2attr::LIFE_DURATION, s));
    }
    if let Some(k) = o.life_kb {
        a.push(Attribute::basic(p2attr::LIFE_TYPE, life::KILOBYTES));
        a.push(Attribute::number(p2attr::LIFE_DURATION, k));
    }
    if let Some(h) = o.esp.integ {
        a.push(Attribute::basic(p2attr::AUTH, h.esp_auth_id()));
    }
    if let Some(b) = o.esp.encr.key_bits() {
        a.push(Attribute::basic(p2attr::KEY_LENGTH, b));
    }
    if let Some(g) = o.group {
        a.push(Attribute::basic(p2attr::GROUP, g.ike_id()));
    }
    Transform {
        number,
        transform_id: o.esp.encr.transform_id(),
        attributes: a,
    }
}

/// IOS `debug crypto isakmp` lines for a phase 2 transform's attributes.
pub fn describe_p2(t: &Transform) -> Vec<String> {
    use crate::wire::AttrValue;
    let mut out = vec![];
    for a in &t.attributes {
        let v = a.as_u64().unwrap_or(0);
        match a.ty {
            p2attr::ENCAPSULATION => out.push(format!("encaps is {v}")),
            p2attr::LIFE_TYPE => {
                out.push(
                    if v == life::KILOBYTES as u64 {
                        "SA life type in kilobytes"
                    } else {
                        "SA life type in seconds"
                    }
                    .to_string(),
                );
            }
            p2attr::LIFE_DURATION => match &a.value {
                AttrValue::Basic(b) => out.push(format!("SA life duration (basic) of {b}")),
                AttrValue::Variable(bytes) => out.push(format!(
                    "SA life duration (VPI) of {}",
                    bytes
                        .iter()
                        .map(|x| format!("{x:#x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            },
            p2attr::AUTH => out.push(format!(
                "authenticator is HMAC-{}",
                match HashAlg::from_esp_auth(v) {
                    Some(HashAlg::Md5) => "MD5".to_string(),
                    Some(HashAlg::Sha1) => "SHA".to_string(),
                    Some(h) => h.ios_name().to_string(),
                    None => format!("unknown({v})"),
                }
            )),
            p2attr::KEY_LENGTH => out.push(format!("key length is {v}")),
            p2attr::GROUP => out.push(format!("group is {v}")),
            other => out.push(format!("attribute {other} = {v}")),
        }
    }
    out
}

/// Whether an encapsulation value is the UDP (NAT-T) flavour, and its mode.
pub fn encap_mode(v: u16) -> Option<(Mode, bool)> {
    Some(match v {
        encap::TUNNEL => (Mode::Tunnel, false),
        encap::TRANSPORT => (Mode::Transport, false),
        encap::UDP_TUNNEL | encap::UDP_TUNNEL_DRAFT => (Mode::Tunnel, true),
        encap::UDP_TRANSPORT | encap::UDP_TRANSPORT_DRAFT => (Mode::Transport, true),
        _ => return None,
    })
}

/// Host-to-host GRE proxy (`addr/255.255.255.255/47/0`) as DMVPN uses.
pub fn gre_proxy(addr: IpAddr) -> IdPayload {
    IdPayload {
        protocol: 47,
        port: 0,
        id: Identity::from_ip(addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_longest_prefix_and_wildcard() {
        let k = |s: &str| Zeroizing::new(s.as_bytes().to_vec());
        let cfg = EngineConfig {
            psks: vec![
                PskEntry {
                    prefix: "0.0.0.0".parse().unwrap(),
                    len: 0,
                    key: k("any"),
                    initiate: InitiateMode::Main,
                },
                PskEntry {
                    prefix: "172.16.0.0".parse().unwrap(),
                    len: 16,
                    key: k("net"),
                    initiate: InitiateMode::Main,
                },
                PskEntry {
                    prefix: "172.16.0.2".parse().unwrap(),
                    len: 32,
                    key: k("host"),
                    initiate: InitiateMode::Main,
                },
            ],
            ..Default::default()
        };
        let get = |a: &str| cfg.psk_for(a.parse().unwrap()).map(|e| e.key.to_vec());
        assert_eq!(get("172.16.0.2"), Some(b"host".to_vec()));
        assert_eq!(get("172.16.9.9"), Some(b"net".to_vec()));
        assert_eq!(get("10.0.0.1"), Some(b"any".to_vec()));
        assert_eq!(get("2001:db8::1"), None);
    }

    #[test]
    fn ios_lifetime_rule() {
        let p = IkePolicy::ios_default(10);
        let mut o = decode_p1(&p.to_transform(1)).unwrap();
        assert_eq!(p1_match(&p, &o), Some(86400));
        o.lifetime = Some(3600);
        assert_eq!(p1_match(&p, &o), Some(3600));
        o.lifetime = Some(100000);
        assert_eq!(p1_match(&p, &o), None);
        o.lifetime = Some(3600);
        o.group = GroupId::Modp1024;
        assert_eq!(p1_match(&p, &o), None);
    }

    /// The seed's phase 2 proposal, attribute by attribute as IOS prints it.
    #[test]
    fn seed_p2_transform_reads_like_ios() {
        let o = OfferedP2 {
            esp: EspTransform {
                encr: EspEncr::TripleDes,
                integ: Some(HashAlg::Md5),
            },
            encap: encap::TUNNEL,
            group: None,
            life_secs: Some(120),
            life_kb: Some(4_608_000),
        };
        let t = encode_p2(1, &o);
        assert_eq!(t.transform_id, 3); // ESP_3DES
        assert_eq!(
            describe_p2(&t),
            vec![
                "encaps is 1",
                "SA life type in seconds",
                "SA life duration (basic) of 120",
                "SA life type in kilobytes",
                "SA life duration (VPI) of 0x0 0x46 0x50 0x0",
                "authenticator is HMAC-MD5",
            ]
        );
    }

    #[test]
    fn p2_round_trip() {
        let o = OfferedP2 {
            esp: EspTransform {
                encr: EspEncr::TripleDes,
                integ: Some(HashAlg::Md5),
            },
            encap: encap::TUNNEL,
            group: None,
            life_secs: Some(120),
            life_kb: Some(4_608_000),
        };
        assert_eq!(decode_p2(&encode_p2(1, &o)), Some(o.clone()));
        assert_eq!(o.esp.ios_name(), "esp-3des esp-md5-hmac");
    }
}
