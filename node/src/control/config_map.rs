//! `dmvpn_config::Config` → the engines' configurations.
//!
//! One tunnel per node: [`Config::for_tunnel`] picks it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dmvpn_config::types::{EspMode, IkeEncryption, IkeHash, NatTraversal, Transform};
use dmvpn_config::{Config, Tunnel};
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::{
    DpdConfig, EngineConfig, EspEncr, EspTransform, IkePolicy, InitiateMode, Mode, NatTMode,
    PskEntry, TransformSet,
};
use thiserror::Error;

use crate::datapath::esp::{AuthAlg, EncAlg};
use crate::engine::DataplaneConfig;

/// A configuration the node cannot run (beyond what `--check` rejects).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapError {
    #[error("no tunnel configured")]
    NoTunnel,
    #[error("tunnel {0}: only IPv4 tunnel and NBMA addresses are supported")]
    NotIpv4(String),
    #[error("tunnel {tunnel}: unknown ipsec profile `{profile}`")]
    UnknownProfile { tunnel: String, profile: String },
    #[error("manual SA with {peer}: {what}")]
    ManualSa { peer: IpAddr, what: String },
}

/// Everything derived from the configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub hub: bool,
    pub interface: String,
    /// Our NBMA (underlay) address. With an interface source it is
    /// `0.0.0.0` until the driver resolves the interface and calls
    /// [`NodeConfig::set_nbma`].
    pub nbma: Ipv4Addr,
    /// The interface named by `source`, whose primary IPv4 address is the
    /// NBMA address (followed when it changes).
    pub source_interface: Option<String>,
    /// The IPv4 tunnel address (`0.0.0.0` on an IPv6-only overlay).
    pub tunnel_addr: Ipv4Addr,
    pub tunnel_prefix_len: u8,
    /// The tunnel carries IPv4 (false: an IPv6-only overlay, whose
    /// address is `tunnel_addr6`).
    pub overlay_v4: bool,
    pub mtu: u16,
    pub gre_key: Option<u32>,
    /// GRE over IPsec (`tunnel protection`).
    pub protected: bool,
    /// Name of the IPsec profile protecting the tunnel (`show dmvpn detail`).
    pub protection_profile: Option<String>,
    /// Spoke-to-spoke SAs with no traffic this long are deleted.
    pub idle_time: Option<Duration>,
    /// Prefixes routed into the tunnel (besides the tunnel subnet).
    pub routes: Vec<(Ipv4Addr, u8)>,
    /// Point-to-point `gre` destination.
    pub destination: Option<Ipv4Addr>,
    pub nhrp: Option<dmvpn_nhrp::Config>,
    /// The IPv6 tunnel address and prefix length of a dual-stack tunnel.
    pub tunnel_addr6: Option<(Ipv6Addr, u8)>,
    /// IPv6 prefixes routed into the tunnel.
    pub routes6: Vec<(Ipv6Addr, u8)>,
    /// The IPv6 overlay's NHRP instance (IOS `ipv6 nhrp`).
    pub nhrp6: Option<dmvpn_nhrp::Config>,
    /// The tunnel carries traffic only while an NHS is up (IOS `if-state
    /// nhrp`).
    pub if_state: bool,
    pub ike: EngineConfig,
    pub dataplane: DataplaneConfig,
    pub manual_sas: Vec<ManualSa>,
    /// The configuration this was mapped from: a reload compares the new
    /// file with it.
    pub origin: Config,
}

impl NodeConfig {
    /// Tunnel `i` of the `of` one process runs: its ISAKMP and IPsec
    /// `conn id`s interleave with the other tunnels', so none is shown
    /// twice (IOS numbers them once per router).
    pub fn one_of(&mut self, i: usize, of: usize) {
        self.ike.conn_ids = (1001 + i as u64, of.max(1) as u64);
    }

    /// The first IPsec SA pair's `conn id` and the step between pairs:
    /// IOS numbers SAs from 2001 up (`show crypto ipsec sa`), a pair at a
    /// time; interleaved as the ISAKMP ones are ([`NodeConfig::one_of`]).
    pub fn ipsec_conn_ids(&self) -> (u32, u32) {
        let (first, step) = self.ike.conn_ids;
        let tunnel = first.saturating_sub(1001) as u32;
        (2001 + 2 * tunnel, 2 * step.max(1) as u32)
    }

    /// Sets our NBMA address everywhere it is configured (NHRP, data
    /// plane): a resolved interface source.
    pub fn set_nbma(&mut self, nbma: Ipv4Addr) {
        self.nbma = nbma;
        self.dataplane.local_nbma = nbma;
        for n in self.nhrp.iter_mut().chain(self.nhrp6.iter_mut()) {
            n.nbma = IpAddr::V4(nbma);
        }
    }
}

/// A manual (IKE-less) SA pair from `[[ipsec.manual_sa]]`.
#[derive(Debug, Clone)]
pub struct ManualSa {
    pub peer: Ipv4Addr,
    pub enc: EncAlg,
    pub auth: AuthAlg,
    pub mode: crate::datapath::sadb::Mode,
    pub udp: bool,
    /// The IKE-style transform, for key-log lines.
    pub transform: EspTransform,
    pub in_spi: u32,
    pub in_enc: zeroize::Zeroizing<Vec<u8>>,
    pub in_auth: zeroize::Zeroizing<Vec<u8>>,
    pub out_spi: u32,
    pub out_enc: zeroize::Zeroizing<Vec<u8>>,
    pub out_auth: zeroize::Zeroizing<Vec<u8>>,
}

fn v4(a: IpAddr, tunnel: &str) -> Result<Ipv4Addr, MapError> {
    match a {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(MapError::NotIpv4(tunnel.into())),
    }
}

fn ike_encr(e: IkeEncryption) -> EncrAlg {
    match e {
        IkeEncryption::Des => EncrAlg::Des,
        IkeEncryption::TripleDes => EncrAlg::TripleDes,
        IkeEncryption::Aes128 => EncrAlg::Aes128,
        IkeEncryption::Aes192 => EncrAlg::Aes192,
        IkeEncryption::Aes256 => EncrAlg::Aes256,
    }
}

fn ike_hash(h: IkeHash) -> HashAlg {
    match h {
        IkeHash::Md5 => HashAlg::Md5,
        IkeHash::Sha1 => HashAlg::Sha1,
        IkeHash::Sha256 => HashAlg::Sha256,
        IkeHash::Sha384 => HashAlg::Sha384,
        IkeHash::Sha512 => HashAlg::Sha512,
    }
}

fn group(n: u16) -> GroupId {
    GroupId::from_ike(u64::from(n)).unwrap_or(GroupId::Modp768)
}

/// An IOS transform list → the IKE engine's ESP transform.
pub fn esp_transform(ts: &[Transform]) -> EspTransform {
    let mut encr = EspEncr::Null;
    let mut integ = None;
    for t in ts {
        match t {
            Transform::EspDes => encr = EspEncr::Des,
            Transform::Esp3des => encr = EspEncr::TripleDes,
            Transform::EspAes(b) => encr = EspEncr::AesCbc(*b),
            Transform::EspGcm(b) => encr = EspEncr::AesGcm16(*b),
            Transform::EspMd5Hmac => integ = Some(HashAlg::Md5),
            Transform::EspShaHmac => integ = Some(HashAlg::Sha1),
            Transform::EspSha256Hmac => integ = Some(HashAlg::Sha256),
        }
    }
    EspTransform { encr, integ }
}

/// The data plane's algorithms for a negotiated transform.
pub fn dataplane_algs(t: &EspTransform) -> Option<(EncAlg, AuthAlg)> {
    let enc = EncAlg::from_ikev1(t.encr.transform_id(), t.encr.key_bits())?;
    let auth = match t.integ {
        None => AuthAlg::None,
        Some(HashAlg::Md5) => AuthAlg::HmacMd5_96,
        Some(HashAlg::Sha1) => AuthAlg::HmacSha1_96,
        Some(HashAlg::Sha256) => AuthAlg::HmacSha256_128,
        Some(_) => return None,
    };
    Some((enc, auth))
}

/// The tunnel this node runs.
pub fn tunnel(cfg: &Config) -> Result<&Tunnel, MapError> {
    cfg.tunnels.first().ok_or(MapError::NoTunnel)
}

/// Maps the whole configuration.
pub fn map(cfg: &Config) -> Result<NodeConfig, MapError> {
    let t = tunnel(cfg)?;
    let name = t.name.clone();
    // An interface is resolved by the driver, which owns the OS.
    let (nbma, source_interface) = match &t.source {
        dmvpn_config::types::TunnelSource::Address(a) => (v4(*a, &name)?, None),
        dmvpn_config::types::TunnelSource::Interface(i) => (Ipv4Addr::UNSPECIFIED, Some(i.clone())),
    };
    // An IPv6 `address` is an IPv6-only overlay: no IPv4 tunnel address.
    let overlay_v4 = t.address.addr().is_ipv4();
    let (tunnel_addr, tunnel_prefix_len) = match t.address.addr() {
        IpAddr::V4(a) => (a, t.address.prefix_len()),
        IpAddr::V6(_) => (Ipv4Addr::UNSPECIFIED, 0),
    };
    let profile = match &t.protection {
        Some(p) => Some(cfg.profile(p).ok_or_else(|| MapError::UnknownProfile {
            tunnel: name.clone(),
            profile: p.clone(),
        })?),
        None => None,
    };
    let hub = cfg.node.role == dmvpn_config::types::Role::Hub;

    // IKE.
    let mut ike = EngineConfig {
        policies: cfg
            .ike
            .policies_by_priority()
            .into_iter()
            .map(|p| IkePolicy {
                priority: u32::from(p.priority),
                encr: ike_encr(p.encryption),
                hash: ike_hash(p.hash),
                group: group(p.group.number()),
                lifetime: p.lifetime,
            })
            .collect(),
        psks: cfg
            .ike
            .keys
            .iter()
            .map(|k| PskEntry {
                prefix: k.peer.network(),
                len: k.peer.prefix_len(),
                key: zeroize::Zeroizing::new(k.key.expose().as_bytes().to_vec()),
                initiate: match k.initiate_mode {
                    dmvpn_config::InitiateMode::Main => InitiateMode::Main,
                    dmvpn_config::InitiateMode::Aggressive => InitiateMode::Aggressive,
                },
            })
            .collect(),
        answer_aggressive: cfg.ike.answer_aggressive,
        max_half_open: cfg.ike.in_negotiation_limit as usize,
        max_half_open_per_peer: cfg.ike.in_negotiation_per_peer as usize,
        nat_t: match cfg.ike.nat_traversal.mode {
            NatTraversal::Auto => NatTMode::Enabled,
            NatTraversal::Force => NatTMode::Force,
            NatTraversal::Off => NatTMode::Disabled,
        },
        nat_keepalive: Duration::from_secs(u64::from(cfg.ike.nat_traversal.keepalive.max(1))),
        dpd: cfg
            .ike
            .dpd
            .as_ref()
            .filter(|d| d.interval > 0)
            .map(|d| DpdConfig {
                interval: Duration::from_secs(u64::from(d.interval)),
                retry: Duration::from_secs(u64::from(d.retry_interval)),
                max_retries: d.retries,
            }),
        ..EngineConfig::default()
    };
    if let Some(p) = profile {
        ike.transform_sets = cfg
            .profile_transform_sets(p)
            .into_iter()
            .map(|ts| TransformSet {
                name: ts.name.clone(),
                esp: esp_transform(&ts.transforms),
                mode: match ts.mode {
                    EspMode::Transport => Mode::Transport,
                    EspMode::Tunnel => Mode::Tunnel,
                },
            })
            .collect();
        ike.sa_lifetime_secs = p.lifetime_seconds;
        ike.sa_lifetime_kb = p.lifetime_kilobytes;
        ike.pfs = p.pfs.map(|g| group(g.number()));
        // Rekey margin: IOS starts ~10 % before expiry; keep it below the lifetime.
        let life = u64::from(p.lifetime_seconds.max(2));
        ike.rekey_margin = Duration::from_secs((life / 10).clamp(1, 30));
    }

    let routes = t
        .routes
        .iter()
        .filter_map(|r| match r.network() {
            IpAddr::V4(a) => Some((a, r.prefix_len())),
            IpAddr::V6(_) => None,
        })
        .collect();

    // NHRP: one instance per overlay family, as IOS runs `ip nhrp` and
    // `ipv6 nhrp` side by side on a dual-stack tunnel.
    let tunnel_addr6 = t
        .address6
        .or(Some(t.address).filter(|_| !overlay_v4))
        .and_then(|a| match a.addr() {
            IpAddr::V6(v6) => Some((v6, a.prefix_len())),
            IpAddr::V4(_) => None,
        });
    let nhrp = t.nhrp.as_ref().filter(|_| overlay_v4).map(|n| {
        nhrp_instance(
            n,
            t,
            hub,
            profile.is_some(),
            nbma,
            IpAddr::V4(tunnel_addr),
            tunnel_prefix_len,
        )
    });
    let nhrp6 = match (t.nhrp.as_ref(), tunnel_addr6) {
        (Some(n), Some((a, len))) => Some(nhrp_instance(
            n,
            t,
            hub,
            profile.is_some(),
            nbma,
            IpAddr::V6(a),
            len,
        )),
        _ => None,
    };
    let routes6 = t
        .routes
        .iter()
        .filter_map(|r| match r.network() {
            IpAddr::V6(a) => Some((a, r.prefix_len())),
            IpAddr::V4(_) => None,
        })
        .collect();

    let dataplane = DataplaneConfig {
        local_nbma: nbma,
        tunnel_addr,
        tunnel_addr_v6: tunnel_addr6.map(|(a, _)| a),
        mtu: t.mtu,
        gre_key: t.key,
        outer_ttl: 255,
        natt_port: Some(4500),
        require_protection: profile.is_some(),
    };

    let mut manual_sas = Vec::new();
    for m in &cfg.ipsec.manual_sas {
        let peer = v4(m.peer, &name)?;
        let et = esp_transform(&m.transforms);
        let err = |what: String| MapError::ManualSa { peer: m.peer, what };
        let (enc, auth) = dataplane_algs(&et).ok_or_else(|| err("unsupported transform".into()))?;
        let key = |k: &dmvpn_config::types::HexKey| k.bytes().map_err(err);
        let opt = |k: &Option<dmvpn_config::types::HexKey>| match k {
            Some(k) => k.bytes().map_err(err),
            None => Ok(zeroize::Zeroizing::new(Vec::new())),
        };
        manual_sas.push(ManualSa {
            peer,
            enc,
            auth,
            mode: match m.mode {
                EspMode::Transport => crate::datapath::sadb::Mode::Transport,
                EspMode::Tunnel => crate::datapath::sadb::Mode::Tunnel,
            },
            udp: m.udp_encapsulation,
            transform: et,
            in_spi: m.inbound.spi,
            in_enc: key(&m.inbound.encryption_key)?,
            in_auth: opt(&m.inbound.authentication_key)?,
            out_spi: m.outbound.spi,
            out_enc: key(&m.outbound.encryption_key)?,
            out_auth: opt(&m.outbound.authentication_key)?,
        });
    }

    Ok(NodeConfig {
        name: cfg.node.name.clone(),
        hub,
        interface: name.clone(),
        nbma,
        source_interface,
        tunnel_addr,
        tunnel_prefix_len,
        overlay_v4,
        mtu: t.mtu,
        gre_key: t.key,
        protected: profile.is_some(),
        protection_profile: t.protection.clone(),
        idle_time: profile
            .and_then(|p| p.idle_time)
            .map(|s| Duration::from_secs(u64::from(s))),
        routes,
        destination: match t.destination {
            Some(d) => Some(v4(d, &name)?),
            None => None,
        },
        nhrp,
        tunnel_addr6,
        routes6,
        nhrp6,
        if_state: t.nhrp.as_ref().is_some_and(|n| n.if_state),
        ike,
        dataplane,
        manual_sas,
        origin: cfg.clone(),
    })
}

/// The NHRP instance of one overlay family: `protocol/prefix_len` is the
/// tunnel address of that family; NHSs, static maps and prefixes of the
/// other family belong to the other instance.
fn nhrp_instance(
    n: &dmvpn_config::Nhrp,
    t: &Tunnel,
    hub: bool,
    protected: bool,
    nbma: Ipv4Addr,
    protocol: IpAddr,
    prefix_len: u8,
) -> dmvpn_nhrp::Config {
    let same = |a: &IpAddr| a.is_ipv4() == protocol.is_ipv4();
    let mut c = dmvpn_nhrp::Config::new(IpAddr::V4(nbma), protocol);
    c.tunnel_prefix_len = prefix_len;
    c.interface = t.name.clone();
    c.mtu = t.mtu;
    c.holding_time = n.holdtime.min(u32::from(u16::MAX)) as u16;
    c.authentication = n
        .authentication
        .as_ref()
        .map(|s| dmvpn_nhrp::Password::new(s.expose().as_bytes().to_vec()));
    c.nhs = n
        .nhs
        .iter()
        .filter(|s| same(&s.address))
        .filter_map(|s| {
            Some(dmvpn_nhrp::NhsConfig {
                protocol: s.address,
                nbma: n.nhs_nbma(s)?,
                priority: s.priority,
            })
        })
        .collect();
    c.static_maps = n
        .map
        .iter()
        .filter(|m| same(&m.address))
        .map(|m| (m.address, m.nbma))
        .collect();
    c.multicast_dynamic = n.map_multicast_dynamic;
    c.multicast_static = n.multicast.clone();
    c.multicast_static.extend(
        n.nhs
            .iter()
            .filter(|s| s.multicast && same(&s.address))
            .filter_map(|s| n.nhs_nbma(s)),
    );
    c.server = hub;
    c.redirect = n.redirect;
    c.shortcut = n.shortcut;
    c.wait_for_ipsec = protected;
    if let Some(r) = n.registration_timeout {
        c.registration_interval = Some(Duration::from_secs(u64::from(r.max(1))));
    }
    c.unique = !n.registration_no_unique;
    c.registration_prefixes = n
        .registration_prefixes
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|p| (p.network(), p.prefix_len()))
                .filter(|(a, _)| same(a))
                .collect::<Vec<_>>()
        })
        // Prefixes of the other family only: this family's subnet.
        .filter(|v| !v.is_empty());
    c.allowed_nbma = n
        .allowed_nbma
        .as_ref()
        .map(|v| v.iter().map(|p| (p.network(), p.prefix_len())).collect());
    c.max_send = n.max_send;
    c.max_send_interval = Duration::from_secs(u64::from(n.max_send_interval));
    c.max_cache_entries = n.max_cache_entries as usize;
    c.max_registrations_per_nbma = n.max_registrations_per_nbma as usize;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmvpn_config::{ImportOptions, import_ios};
    use std::path::Path;

    /// `--check` and the daemon agree: every configuration that passes
    /// validation maps to a node (the examples, and every router of every
    /// IOS input the importer reads).
    #[test]
    fn every_accepted_configuration_maps() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut checked = 0;
        for dir in ["examples"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let loaded = Config::from_str(&text, &p.display().to_string())
                        .unwrap_or_else(|e| panic!("{e}"));
                    map(&loaded.config).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    checked += 1;
                }
            }
        }
        let mut inputs = Vec::new();
        let seeds = std::env::var_os("DMVPN_SEEDS")
            .map_or_else(|| root.join("../shared/reference/seeds"), Into::into);
        for dir in [root.join("config/tests/data"), seeds] {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd {
                inputs.push(e.unwrap().path());
            }
        }
        assert!(inputs.len() >= 5, "IOS inputs not found under {root:?}");
        for p in inputs {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            let Ok(first) = import_ios(&text, &ImportOptions::default()) else {
                continue;
            };
            for host in &first.routers {
                let opts = ImportOptions {
                    hostname: Some(host.clone()),
                };
                let Ok(imp) = import_ios(&text, &opts) else {
                    continue;
                };
                let loaded = Config::from_str(&imp.toml, "imported").unwrap();
                if loaded.config.tunnels.is_empty() {
                    continue;
                }
                map(&loaded.config)
                    .unwrap_or_else(|e| panic!("{} ({host}): {e}\n{}", p.display(), imp.toml));
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} configurations checked");
    }
}
