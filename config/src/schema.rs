//! The configuration schema: typed structs the daemon consumes, read from
//! TOML with serde. Unknown keys are rejected everywhere.

use crate::defaults as d;
use crate::types::*;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// A whole node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub log: Log,
    #[serde(default, skip_serializing_if = "Metrics::is_off")]
    pub metrics: Metrics,
    #[serde(default)]
    pub ike: Ike,
    #[serde(default)]
    pub ipsec: Ipsec,
    /// `[[tunnel]]` tables, one per mGRE/GRE/VTI interface.
    #[serde(default, rename = "tunnel", skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<Tunnel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Host name (IOS `hostname`); also the FQDN identity when none is set.
    pub name: String,
    pub role: Role,
    /// Forwarding threads: "auto" (one per core) or a number.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub workers: Workers,
}

fn is_auto(w: &Workers) -> bool {
    *w == Workers::Auto
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Name of the TUN interface created for this tunnel (e.g. "Tunnel0").
    pub name: String,
    /// Tunnel address with prefix (IOS `ip address`), e.g. "192.168.1.1/24".
    #[serde(deserialize_with = "tunnel_address")]
    pub address: IpNet,
    /// IPv6 tunnel address with prefix (IOS `ipv6 address`), beside the
    /// IPv4 `address`: a dual-stack tunnel, e.g. "2001:db8:100::2/64".
    #[serde(
        default,
        deserialize_with = "opt_tunnel_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub address6: Option<IpNet>,
    /// IP MTU of the tunnel interface (IOS `ip mtu`).
    #[serde(default = "d::tunnel_mtu", deserialize_with = "mtu")]
    pub mtu: u16,
    /// NBMA source address or interface (IOS `tunnel source`).
    pub source: TunnelSource,
    /// IOS `tunnel mode`.
    #[serde(default)]
    pub mode: TunnelMode,
    /// Peer NBMA address for point-to-point modes (IOS `tunnel destination`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpAddr>,
    /// GRE key (IOS `tunnel key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    /// IPsec profile protecting this tunnel (IOS `tunnel protection ipsec profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<String>,
    /// Prefixes routed into this tunnel (IOS `ip route P M TunnelN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhrp: Option<Nhrp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nhrp {
    /// IOS `ip nhrp network-id`.
    pub network_id: u32,
    /// Cleartext password, at most 8 characters (IOS `ip nhrp authentication`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Secret>,
    /// Holding time advertised in registrations and replies, seconds.
    #[serde(default = "d::nhrp_holdtime")]
    pub holdtime: u32,
    /// Accept dynamically registered spokes as multicast destinations.
    #[serde(default)]
    pub map_multicast_dynamic: bool,
    /// Static multicast destinations (IOS `ip nhrp map multicast NBMA`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multicast: Vec<IpAddr>,
    /// Send Traffic Indications for hairpinned traffic (hub, phase 3).
    #[serde(default)]
    pub redirect: bool,
    /// Install shortcuts on Traffic Indication (spoke, phase 3).
    #[serde(default)]
    pub shortcut: bool,
    /// Registration interval override, seconds (IOS `ip nhrp registration timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_timeout: Option<u32>,
    /// Register without the unique flag, so the hub lets another NBMA
    /// address take this node's tunnel address over (IOS `ip nhrp
    /// registration no-unique`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registration_no_unique: bool,
    /// The tunnel interface carries traffic only while an NHS is up (IOS
    /// `if-state nhrp`): routes through it give way to others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub if_state: bool,
    /// Hub: prefixes registrations may claim; absent = the tunnel subnet.
    #[serde(
        default,
        deserialize_with = "opt_prefixes",
        skip_serializing_if = "Option::is_none"
    )]
    pub registration_prefixes: Option<Vec<IpNet>>,
    /// NBMA source addresses NHRP is accepted from (NHSs and static maps
    /// always are); absent = any source. Required, with `authentication`,
    /// on a hub whose tunnel has no IPsec protection.
    #[serde(
        default,
        deserialize_with = "opt_prefixes",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_nbma: Option<Vec<IpNet>>,
    /// Hub: Traffic Indications sent at most per `max_send_interval`
    /// (IOS `ip nhrp max-send N every S`).
    #[serde(default = "d::nhrp_max_send")]
    pub max_send: u32,
    /// Hub: the window of `max_send`, seconds.
    #[serde(default = "d::nhrp_max_send_interval")]
    pub max_send_interval: u32,
    /// Hub: learned NHRP cache entries (registrations and shortcuts) held
    /// at most.
    #[serde(default = "d::nhrp_max_cache_entries")]
    pub max_cache_entries: u32,
    /// Hub: registrations one NBMA address may hold (spokes behind one NAT
    /// address share it).
    #[serde(default = "d::nhrp_max_registrations_per_nbma")]
    pub max_registrations_per_nbma: u32,
    /// Next-hop servers (IOS `ip nhrp nhs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nhs: Vec<Nhs>,
    /// Static protocol -> NBMA mappings (IOS `ip nhrp map`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map: Vec<NhrpMap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nhs {
    /// NHS tunnel address.
    pub address: IpAddr,
    /// NHS NBMA address; may be omitted when a static map gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbma: Option<IpAddr>,
    /// Lower is preferred (IOS `priority`).
    #[serde(default)]
    pub priority: u8,
    /// Also send multicast to this NHS (IOS `multicast`).
    #[serde(default)]
    pub multicast: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NhrpMap {
    pub address: IpAddr,
    pub nbma: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ike {
    /// IOS `crypto isakmp identity`.
    #[serde(default)]
    pub identity: Identity,
    /// FQDN sent with `identity = "fqdn"`; defaults to the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// Answer Aggressive Mode (exposes a PSK-derived hash to anyone); IOS
    /// answers unless `crypto isakmp aggressive-mode disable`.
    #[serde(default)]
    pub answer_aggressive: bool,
    /// Deprecated alias of `answer_aggressive`; `--check` warns about it.
    /// Initiating Aggressive Mode is `initiate_mode` on `[[ike.key]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggressive_mode: Option<bool>,
    /// Dead peer detection; on by default (see `defaults::ike_dpd`),
    /// `interval = 0` turns it off.
    #[serde(default = "d::ike_dpd", skip_serializing_if = "Option::is_none")]
    pub dpd: Option<Dpd>,
    /// Phase 1 negotiations not yet authenticated, in all (IOS `crypto call
    /// admission limit ike in-negotiation-sa N`); over it the oldest
    /// unverified one from an unconfigured address makes room.
    #[serde(default = "d::in_negotiation_limit")]
    pub in_negotiation_limit: u32,
    /// Of those, unverified ones per source address.
    #[serde(default = "d::in_negotiation_per_peer")]
    pub in_negotiation_per_peer: u32,
    #[serde(default)]
    pub nat_traversal: NatT,
    /// `[[ike.policy]]`, IOS `crypto isakmp policy N`.
    #[serde(default = "d::ike_policies", rename = "policy")]
    pub policies: Vec<IsakmpPolicy>,
    /// `[[ike.key]]`, IOS `crypto isakmp key K address A M`.
    #[serde(default, rename = "key", skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<PreSharedKey>,
}

impl Default for Ike {
    fn default() -> Self {
        Ike {
            identity: Identity::Address,
            fqdn: None,
            answer_aggressive: false,
            aggressive_mode: None,
            dpd: d::ike_dpd(),
            in_negotiation_limit: d::IN_NEGOTIATION_LIMIT,
            in_negotiation_per_peer: d::IN_NEGOTIATION_PER_PEER,
            nat_traversal: NatT::default(),
            policies: d::ike_policies(),
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpd {
    /// Seconds of idle before R-U-THERE (IOS `crypto isakmp keepalive N`).
    pub interval: u32,
    /// Seconds between unanswered retries.
    #[serde(default = "d::dpd_retry_interval")]
    pub retry_interval: u32,
    /// Unanswered retries before the peer is declared dead.
    #[serde(default = "d::dpd_retries")]
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatT {
    #[serde(default)]
    pub mode: NatTraversal,
    /// NAT keepalive interval in seconds; 0 disables.
    #[serde(default = "d::nat_keepalive")]
    pub keepalive: u32,
}

impl Default for NatT {
    fn default() -> Self {
        NatT {
            mode: NatTraversal::Auto,
            keepalive: d::NAT_KEEPALIVE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsakmpPolicy {
    /// 1..=10000, lower is tried first.
    pub priority: u16,
    #[serde(default = "d::ike_encryption")]
    pub encryption: IkeEncryption,
    #[serde(default = "d::ike_hash")]
    pub hash: IkeHash,
    #[serde(default)]
    pub authentication: IkeAuth,
    #[serde(default = "d::ike_group")]
    pub group: DhGroup,
    /// Seconds.
    #[serde(default = "d::ike_lifetime")]
    pub lifetime: u32,
}

impl Default for IsakmpPolicy {
    fn default() -> Self {
        IsakmpPolicy {
            priority: 10,
            encryption: d::ike_encryption(),
            hash: d::ike_hash(),
            authentication: IkeAuth::PreShare,
            group: d::ike_group(),
            lifetime: d::IKE_LIFETIME,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreSharedKey {
    /// Peer NBMA address or prefix; "0.0.0.0/0" / "::/0" match anyone.
    #[serde(deserialize_with = "prefix_or_host")]
    pub peer: IpNet,
    pub key: Secret,
    /// Exchange dmvpnd starts with these peers (IOS ISAKMP profile
    /// `initiate mode aggressive`); rekeys use it too.
    #[serde(default, skip_serializing_if = "InitiateMode::is_main")]
    pub initiate_mode: InitiateMode,
}

/// A tunnel address always carries its prefix length: the subnet decides
/// which peers are on the tunnel.
/// `address6`: as `address`, and IPv6.
fn opt_tunnel_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    use serde::de::Error;
    let a = tunnel_address(d)?;
    if a.addr().is_ipv4() {
        return Err(D::Error::custom(format!(
            "{} is not an IPv6 address (address6 is the tunnel's IPv6 address, e.g. \"2001:db8:100::2/64\"; the IPv4 one is `address`)",
            a.addr()
        )));
    }
    Ok(Some(a))
}

fn tunnel_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    let Some((addr, len)) = s.split_once('/') else {
        return Err(match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => {
                D::Error::custom(format!("address needs a prefix length, e.g. \"{s}/24\""))
            }
            Ok(IpAddr::V6(_)) => {
                D::Error::custom(format!("address needs a prefix length, e.g. \"{s}/64\""))
            }
            Err(_) => D::Error::custom(format!(
                "`{s}` is not an address with a prefix length, e.g. \"192.168.1.2/24\""
            )),
        });
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        D::Error::custom(format!(
            "`{addr}` is not an IP address (write e.g. \"192.168.1.2/24\")"
        ))
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len
        .parse::<u8>()
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "prefix length `/{len}` must be a number from 0 to {max}"
            ))
        })?;
    IpNet::new(addr, len).map_err(|e| D::Error::custom(e.to_string()))
}

/// The MTU is a number; a quoted one or one out of range gets a message
/// that says what to write.
fn mtu<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    const HELP: &str = "mtu must be a number between 576 and 9000";
    match Raw::deserialize(d).map_err(|_| D::Error::custom(HELP))? {
        Raw::Number(n) => {
            u16::try_from(n).map_err(|_| D::Error::custom(format!("{HELP}, got {n}")))
        }
        Raw::Text(t) => Err(D::Error::custom(format!(
            "{HELP}, without quotes (mtu = {})",
            t.trim()
        ))),
    }
}

/// Accepts "a.b.c.d/len" or a bare address (host prefix).
fn prefix_or_host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    parse_prefix_or_host(&String::deserialize(d)?)
}

fn parse_prefix_or_host<E: serde::de::Error>(s: &str) -> Result<IpNet, E> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        E::custom(format!(
            "`{s}` is not an address or prefix (use e.g. \"172.16.0.2\", \"172.16.0.0/24\" or \"0.0.0.0/0\")"
        ))
    })
}

/// A list of prefixes or bare addresses, present or not.
fn opt_prefixes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<IpNet>>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_prefix_or_host(s))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipsec {
    /// `[[ipsec.transform_set]]`, IOS `crypto ipsec transform-set`.
    #[serde(
        default,
        rename = "transform_set",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub transform_sets: Vec<TransformSet>,
    /// `[[ipsec.profile]]`, IOS `crypto ipsec profile`.
    #[serde(default, rename = "profile", skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<IpsecProfile>,
    /// `[[ipsec.manual_sa]]`, keyed SAs without IKE.
    #[serde(default, rename = "manual_sa", skip_serializing_if = "Vec::is_empty")]
    pub manual_sas: Vec<ManualSa>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSet {
    pub name: String,
    #[serde(default = "d::transforms")]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub mode: EspMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsecProfile {
    pub name: String,
    /// Names of transform sets, in preference order.
    pub transform_sets: Vec<String>,
    #[serde(default = "d::ipsec_lifetime_seconds")]
    pub lifetime_seconds: u32,
    #[serde(default = "d::ipsec_lifetime_kilobytes")]
    pub lifetime_kilobytes: u64,
    /// PFS DH group for Quick Mode (IOS `set pfs groupN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfs: Option<DhGroup>,
    /// Tear down SAs idle this many seconds (IOS `set security-association idle-time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_time: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSa {
    /// Peer NBMA address.
    pub peer: IpAddr,
    /// Same names as transform sets: one cipher plus one integrity, or one esp-gcm.
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub mode: EspMode,
    /// ESP-in-UDP (RFC 3948) on port 4500.
    #[serde(default)]
    pub udp_encapsulation: bool,
    pub inbound: ManualSaKeys,
    pub outbound: ManualSaKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSaKeys {
    pub spi: u32,
    /// Cipher key in hex; for esp-gcm the key followed by the 4-byte salt.
    pub encryption_key: HexKey,
    /// Integrity key in hex (absent for esp-gcm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_key: Option<HexKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    #[serde(default = "d::control_socket")]
    pub socket: PathBuf,
    #[serde(default = "d::control_mode")]
    pub mode: FileMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: d::control_socket(),
            mode: d::control_mode(),
            group: None,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Address and port to serve `GET /metrics` on, e.g. "127.0.0.1:9465".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

impl Metrics {
    pub fn is_off(&self) -> bool {
        self.listen.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// tracing EnvFilter directive, e.g. "info,dmvpn::ike=debug".
    #[serde(default = "d::log_filter")]
    pub filter: String,
    /// Append ESP keys here in Wireshark `esp_sa` form (debugging only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_log: Option<PathBuf>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            filter: d::log_filter(),
            key_log: None,
        }
    }
}

impl Config {
    /// Whether the file holds secrets (PSKs, NHRP passwords, manual keys).
    pub fn has_secrets(&self) -> bool {
        !self.ike.keys.is_empty()
            || !self.ipsec.manual_sas.is_empty()
            || self
                .tunnels
                .iter()
                .any(|t| t.nhrp.as_ref().is_some_and(|n| n.authentication.is_some()))
    }

    pub fn transform_set(&self, name: &str) -> Option<&TransformSet> {
        self.ipsec.transform_sets.iter().find(|t| t.name == name)
    }

    pub fn profile(&self, name: &str) -> Option<&IpsecProfile> {
        self.ipsec.profiles.iter().find(|p| p.name == name)
    }

    /// The configuration of tunnel `i` alone, with everything the node
    /// shares between tunnels (`[node]`, `[ike]`, `[ipsec]`, `[log]`,
    /// `[control]`, `[metrics]`): what one tunnel of several runs on.
    pub fn for_tunnel(&self, i: usize) -> Config {
        let mut one = self.clone();
        one.tunnels = self.tunnels.get(i).cloned().into_iter().collect();
        one
    }
}
