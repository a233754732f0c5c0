//! Node state → the control protocol's `show` snapshots, in IOS's terms
//! (entry types and flags, `dst`/`src` by role, algorithm words), and
//! `clear ip nhrp ADDRESS`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use dmvpn_ctl::proto::{
    Counter, CryptoSession, DmvpnAttr, DmvpnDetail, DmvpnInterface, DmvpnPeer, DmvpnPeerEntry,
    DmvpnRole, DmvpnState, EspMode, EspSa, IpsecCounters, IpsecInterface, IpsecPeerSa,
    IpsecSaReport, IsakmpDetails, IsakmpSa, IsakmpState, NhrpEntry, NhrpEntryType, NhrpFlag,
    NhrpTraffic, NhrpTypeCounts, NhsEntry, NhsRefusal, NhsState, ProxyIdent, SaStatus, SessionFlow,
    SessionIkeSa, SessionStatus,
};
use dmvpn_ctl::stats::{Handshakes, TunnelStats};
use dmvpn_ike::crypto::{EncrAlg, HashAlg};
use dmvpn_nhrp::Instant;
use dmvpn_nhrp::PacketType;
use dmvpn_nhrp::cache::{CacheEntry, EntryType};
use dmvpn_nhrp::traffic::TypeCounts;

use super::Node;
use crate::datapath::esp::{AuthAlg, EncAlg};
use crate::datapath::gre::GreDrop;
use crate::datapath::sadb::{Direction, Mode as SadbMode, SaSnapshot};
use crate::engine::{DataplaneStats, Protection};

fn isakmp_state(s: &str) -> IsakmpState {
    match s {
        "QM_IDLE" => IsakmpState::QmIdle,
        "MM_SA_SETUP" => IsakmpState::MmSaSetup,
        "MM_KEY_EXCH" => IsakmpState::MmKeyExch,
        "MM_ACTIVE" => IsakmpState::MmActive,
        "AG_NO_STATE" => IsakmpState::AgNoState,
        "AG_INIT_EXCH" => IsakmpState::AgInitExch,
        "AG_AUTH" => IsakmpState::AgAuth,
        _ => IsakmpState::MmNoState,
    }
}

/// `Encr` of `show crypto isakmp sa detail`: IOS names the cipher
/// without its key size (`encryption aes 192` shows as `aes`).
fn ios_encr(e: EncrAlg) -> (&'static str, u16) {
    match e {
        EncrAlg::Des => ("des", 56),
        EncrAlg::TripleDes => ("3des", 168),
        EncrAlg::Aes128 => ("aes", 128),
        EncrAlg::Aes192 => ("aes", 192),
        EncrAlg::Aes256 => ("aes", 256),
    }
}

/// `Hash` of `show crypto isakmp sa detail`: the `hash` keyword.
fn ios_hash(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Md5 => "md5",
        HashAlg::Sha1 => "sha",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    }
}

/// IOS transform words of `show crypto ipsec sa` for a data-plane SA
/// (`esp-256-aes esp-sha-hmac`, `esp-gcm 256`).
fn ios_transform(enc: EncAlg, auth: AuthAlg) -> String {
    let e = match enc {
        EncAlg::DesCbc => "esp-des",
        EncAlg::Des3Cbc => "esp-3des",
        EncAlg::AesCbc128 => "esp-aes",
        EncAlg::AesCbc192 => "esp-192-aes",
        EncAlg::AesCbc256 => "esp-256-aes",
        EncAlg::AesGcm128 => "esp-gcm",
        EncAlg::AesGcm192 => "esp-gcm 192",
        EncAlg::AesGcm256 => "esp-gcm 256",
    };
    let a = match auth {
        AuthAlg::None => "",
        AuthAlg::HmacMd5_96 => " esp-md5-hmac",
        AuthAlg::HmacSha1_96 => " esp-sha-hmac",
        AuthAlg::HmacSha256_128 => " esp-sha256-hmac",
    };
    format!("{e}{a}")
}

fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn type_counts(t: &TypeCounts) -> NhrpTypeCounts {
    NhrpTypeCounts {
        resolution_request: t.get(PacketType::ResolutionRequest),
        resolution_reply: t.get(PacketType::ResolutionReply),
        registration_request: t.get(PacketType::RegistrationRequest),
        registration_reply: t.get(PacketType::RegistrationReply),
        purge_request: t.get(PacketType::PurgeRequest),
        purge_reply: t.get(PacketType::PurgeReply),
        error_indication: t.get(PacketType::ErrorIndication),
        traffic_indication: t.get(PacketType::TrafficIndication),
    }
}

/// `KeyMismatch` → `key mismatch`.
fn words(camel: &str) -> String {
    let mut s = String::new();
    for c in camel.chars() {
        if c.is_uppercase() && !s.is_empty() {
            s.push(' ');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// Data-plane drops on the way out: (key, IOS-style label, count).
fn send_errors(st: &DataplaneStats) -> Vec<Counter> {
    let c = &st.counters;
    vec![
        Counter::new("no_route", "no nhrp mapping", c.no_route),
        // Dropped while waiting for an SA (the queue was full); packets
        // held until the SA came up are not errors (`no_sa` below).
        Counter::new("pending_dropped", "no sa", c.pending_dropped),
        Counter::new("queue_full", "queue full", c.queue_full),
        Counter::new("send_errors", "encaps failed", c.send_errors),
        Counter::new("unsupported", "unsupported", c.unsupported),
        Counter::new("mcast_no_sa", "multicast no sa", c.mcast_no_sa),
        Counter::new("mcast_no_peer", "multicast no peer", c.mcast_no_peer),
    ]
}

/// Data-plane drops on the way in.
fn recv_errors(st: &DataplaneStats) -> Vec<Counter> {
    let c = &st.counters;
    let mut v = vec![
        Counter::new("invalid_spi", "invalid sa", st.invalid_spi),
        Counter::new("wrong_peer", "invalid identity", c.wrong_peer),
        Counter::new("unprotected", "unprotected gre", c.unprotected),
        // ESP the SADB refused: the unknown SPIs are counted above, ICV,
        // replay and length failures per SA in the peer blocks.
        Counter::new(
            "decaps_failed",
            "decaps failed",
            c.esp_dropped.saturating_sub(st.invalid_spi),
        ),
        Counter::new("malformed", "malformed", c.malformed),
        Counter::new("recv_errors", "receive errors", c.recv_errors),
    ];
    for d in GreDrop::ALL {
        let name = words(&format!("{d:?}"));
        v.push(Counter {
            key: format!("gre_{}", name.replace(' ', "_")),
            label: format!("gre {name}"),
            count: st.gre.drops(d),
        });
    }
    v
}

/// NHRP packets refused (by reason) and data packets routed into the
/// tunnel that found no NHRP mapping: the drops of `show ip nhrp traffic`.
fn nhrp_drops(st: &dmvpn_nhrp::engine::Stats, dp: Option<&DataplaneStats>) -> Vec<Counter> {
    [
        ("rx_malformed", "Malformed", st.rx_malformed),
        (
            "rx_auth_failed",
            "Authentication Failure",
            st.rx_auth_failed,
        ),
        ("rx_nbma_refused", "Source Not Allowed", st.rx_nbma_refused),
        (
            "reg_refused_unique",
            "Registration Unique Conflict",
            st.reg_refused_unique,
        ),
        (
            "reg_refused_prefix",
            "Registration Prefix Refused",
            st.reg_refused_prefix,
        ),
        (
            "reg_refused_too_many_cies",
            "Registration Too Many CIEs",
            st.reg_refused_too_many_cies,
        ),
        (
            "reg_refused_nbma_limit",
            "Registration NBMA Limit",
            st.reg_refused_nbma_limit,
        ),
        (
            "reg_refused_cache_full",
            "Registration Cache Full",
            st.reg_refused_cache_full,
        ),
        ("purge_refused", "Purge Refused", st.purge_refused),
        (
            "res_reply_refused",
            "Resolution Reply Refused",
            st.res_reply_refused,
        ),
        (
            "res_request_refused",
            "Resolution Request Refused",
            st.res_request_refused,
        ),
        (
            "reg_reply_refused",
            "Registration Reply Refused",
            st.reg_reply_refused,
        ),
        (
            "traffic_indications_refused",
            "Traffic Indication Refused",
            st.traffic_indications_refused,
        ),
        (
            "traffic_indications_holddown",
            "Traffic Indication Holddown",
            st.traffic_indications_holddown,
        ),
        (
            "traffic_indications_max_send",
            "Traffic Indication Max-send",
            st.traffic_indications_max_send,
        ),
        ("cache_full", "Cache Full", st.cache_full),
        (
            "no_route",
            "No NHRP Mapping",
            dp.map_or(0, |d| d.counters.no_route),
        ),
    ]
    .into_iter()
    .map(|(k, label, n)| Counter::new(k, label, n))
    .collect()
}

/// The data plane's other counters (packets through), for `--json`.
fn traffic_counters(st: &DataplaneStats) -> Vec<Counter> {
    let c = &st.counters;
    [
        ("tun_rx", c.tun_rx),
        ("tun_tx", c.tun_tx),
        ("tun_gso_rx", c.tun_gso_rx),
        ("tun_gro_tx", c.tun_gro_tx),
        ("gre_tx", c.gre_tx),
        ("gre_rx", c.gre_rx),
        ("esp_tx", c.esp_tx),
        ("esp_rx", c.esp_rx),
        ("udp_esp_tx", c.udp_esp_tx),
        ("udp_esp_rx", c.udp_esp_rx),
        ("ike_rx", c.ike_rx),
        ("keepalive_rx", c.keepalive_rx),
        ("no_sa", c.no_sa),
        ("esp_dropped", c.esp_dropped),
        ("nhrp_rx", c.nhrp_rx),
        ("icmp_too_big", c.icmp_too_big),
        ("fragments", c.fragments),
        ("direct_tx", c.direct_tx),
        ("mcast_rx", c.mcast_rx),
        ("mcast_tx", c.mcast_tx),
        ("gre_encapsulated", st.gre.encapsulated),
        ("gre_decapsulated", st.gre.decapsulated),
    ]
    .into_iter()
    .map(|(k, n)| Counter::new(k, &k.replace('_', " "), n))
    .collect()
}

/// Inbound drops of one SA (`drop` of `show crypto session detail`).
fn inbound_drops(s: &SaSnapshot) -> u64 {
    let c = &s.counters;
    c.verify_failed + c.replay_failed + c.invalid_len + c.recv_errors
}

/// How an NHRP entry shows: IOS type, flags, and whether its route is in
/// place (for the `T1`/`T2` attributes).
struct EntryView {
    entry_type: NhrpEntryType,
    flags: Vec<NhrpFlag>,
}

impl Node {
    /// Whether an entry's mapping is what the data plane forwards with
    /// (a shortcut once its SA is up).
    fn installed(&self, e: &CacheEntry) -> bool {
        let (Some(p), Some(n)) = (v4(e.prefix), e.nbma.and_then(v4)) else {
            return false;
        };
        self.map.get(&super::v4_prefix(p, e.prefix_len)) == Some(&n)
    }

    /// No IPsec SA with the entry's peer on a protected tunnel (IOS
    /// prints `(no-socket)`).
    fn no_socket(&self, e: &CacheEntry) -> bool {
        self.cfg.protected && e.nbma.and_then(v4).is_none_or(|n| !self.has_sa(n))
    }

    fn entry_view(&self, e: &CacheEntry) -> EntryView {
        let mut flags = Vec::new();
        let nhop = e.prefix_len == host_len(e.prefix) && e.next_hop == Some(e.prefix);
        let entry_type = match e.kind {
            EntryType::Static | EntryType::Nhs => {
                if e.used {
                    flags.push(NhrpFlag::Used);
                }
                NhrpEntryType::Static
            }
            EntryType::Local => {
                flags.extend([NhrpFlag::Local, NhrpFlag::NoSocket]);
                NhrpEntryType::Static
            }
            EntryType::Dynamic => {
                if e.unique {
                    flags.push(NhrpFlag::Unique);
                }
                if e.claimed_nbma.is_some() {
                    flags.push(NhrpFlag::Nat);
                }
                flags.push(NhrpFlag::Registered);
                if e.used {
                    flags.push(NhrpFlag::Used);
                }
                if nhop {
                    flags.push(NhrpFlag::Nhop);
                }
                NhrpEntryType::Dynamic
            }
            EntryType::Cached => {
                flags.push(NhrpFlag::Router);
                if e.implicit {
                    flags.push(NhrpFlag::Implicit);
                }
                if e.used {
                    flags.push(NhrpFlag::Used);
                }
                if nhop {
                    flags.push(NhrpFlag::Nhop);
                }
                // In the data plane's map: a route of its own that takes
                // the traffic off the path via the hub.
                if self.installed(e) {
                    flags.extend([NhrpFlag::Rib, NhrpFlag::Nho]);
                }
                if self.no_socket(e) {
                    flags.push(NhrpFlag::NoSocket);
                }
                NhrpEntryType::Dynamic
            }
            EntryType::Incomplete => {
                flags.push(NhrpFlag::Negative);
                NhrpEntryType::Incomplete
            }
            EntryType::Negative => {
                flags.push(NhrpFlag::Negative);
                NhrpEntryType::Negative
            }
        };
        EntryView { entry_type, flags }
    }

    /// Cache entries an operator sees: all but the node's own address.
    /// IPv4 entries first, then a dual-stack tunnel's IPv6 ones.
    fn shown_entries(&self) -> Vec<&CacheEntry> {
        self.engines()
            .flat_map(|n| {
                let own = n.config().protocol;
                n.cache()
                    .entries()
                    .into_iter()
                    .filter(move |e| !(e.kind == EntryType::Local && e.prefix == own))
            })
            .collect()
    }

    /// `show ip nhrp` (`v6`: `show ipv6 nhrp`).
    pub fn show_nhrp(&self, now: Instant, v6: bool) -> Vec<NhrpEntry> {
        self.shown_entries()
            .into_iter()
            .filter(|e| e.prefix.is_ipv6() == v6)
            .map(|e| {
                let v = self.entry_view(e);
                NhrpEntry {
                    prefix: e.prefix,
                    prefix_len: e.prefix_len,
                    via: e.next_hop,
                    interface: self.cfg.interface.clone(),
                    created_secs: (now - e.created).as_secs(),
                    expire_secs: e.expires.map(|x| (x - now).as_secs()),
                    entry_type: v.entry_type,
                    flags: v.flags,
                    nbma: e.nbma,
                    claimed_nbma: e.claimed_nbma,
                    cache_hits: None,
                }
            })
            .collect()
    }

    /// `show ip nhrp nhs detail`.
    pub fn show_nhrp_nhs(&self, now: Instant) -> Vec<NhsEntry> {
        self.engines()
            .flat_map(|n| n.nhs_status())
            .map(|s| NhsEntry {
                interface: self.cfg.interface.clone(),
                nhs: s.config.protocol,
                nbma: Some(s.config.nbma),
                priority: u32::from(s.config.priority),
                cluster: 0,
                state: NhsState {
                    responding: s.up,
                    expecting: s.request_id.is_some(),
                    waiting: false,
                    dynamic: false,
                },
                requests_sent: s.requests_sent,
                requests_failed: s.requests_failed,
                replies_received: s.replies_received,
                last_reply_secs: s.last_reply.map(|t| (now - t).as_secs()),
                pending_request_id: s.request_id,
                retransmit_secs: s
                    .request_id
                    .map(|_| s.next_attempt.saturating_duration_since(now).as_secs()),
                refused: s.last_code.filter(|c| *c != 0).map(|code| NhsRefusal {
                    code,
                    reason: dmvpn_nhrp::wire::code::name(code).to_string(),
                }),
            })
            .collect()
    }

    /// `show ip nhrp traffic`: packets by type from the NHRP engine, and
    /// drops: NHRP packets refused, and data packets routed into the
    /// tunnel that found no NHRP mapping.
    pub fn show_nhrp_traffic(&self, now: Instant, dp: Option<&DataplaneStats>) -> Vec<NhrpTraffic> {
        let Some(n) = self.primary_nhrp() else {
            return Vec::new();
        };
        let st = n.stats();
        let cfg = n.config();
        vec![NhrpTraffic {
            interface: self.cfg.interface.clone(),
            max_send_packets: cfg.max_send,
            max_send_secs: cfg.max_send_interval.as_secs(),
            max_send_used: n.max_send_used(now),
            sent: type_counts(&n.traffic().sent),
            received: type_counts(&n.traffic().received),
            drops: nhrp_drops(st, dp),
        }]
    }

    /// How far the tunnel to a peer got (`State` of `show dmvpn`).
    fn dmvpn_state(&self, e: &CacheEntry) -> DmvpnState {
        let Some(nbma) = e.nbma else {
            return DmvpnState::Nhrp;
        };
        if matches!(e.kind, EntryType::Incomplete | EntryType::Negative) {
            return DmvpnState::Nhrp;
        }
        if self.cfg.protected && v4(nbma).is_none_or(|n| !self.has_sa(n)) {
            let phase1 = self
                .ike
                .isakmp_sas()
                .iter()
                .any(|s| s.remote.ip() == nbma && s.state == "QM_IDLE");
            return if phase1 {
                DmvpnState::Ipsec
            } else {
                DmvpnState::Ike
            };
        }
        if e.kind == EntryType::Nhs
            && !self.cfg.hub
            && !self
                .engines()
                .any(|n| n.nhs_status().iter().any(|s| s.config.nbma == nbma && s.up))
        {
            return DmvpnState::Nhrp;
        }
        DmvpnState::Up
    }

    /// `show dmvpn`: one row per NHRP entry, grouped by NBMA peer.
    pub fn show_dmvpn(&self, now: Instant) -> Vec<DmvpnInterface> {
        // Peers with a known NBMA address first; each row marked whether
        // it is a host entry (tunnel addresses list before networks).
        type Rows = Vec<(bool, DmvpnPeerEntry)>;
        let mut peers: BTreeMap<(bool, Option<IpAddr>), Rows> = BTreeMap::new();
        for e in self.shown_entries() {
            if e.kind == EntryType::Local {
                continue;
            }
            let v = self.entry_view(e);
            let has = |f| v.flags.contains(&f);
            let mut attrs = vec![match v.entry_type {
                NhrpEntryType::Static => DmvpnAttr::Static,
                NhrpEntryType::Dynamic => DmvpnAttr::Dynamic,
                NhrpEntryType::Incomplete | NhrpEntryType::Negative => DmvpnAttr::Incomplete,
            }];
            if e.claimed_nbma.is_some() {
                attrs.push(DmvpnAttr::Nated);
            }
            if has(NhrpFlag::NoSocket) || (has(NhrpFlag::Negative) && self.cfg.protected) {
                attrs.push(DmvpnAttr::NoSocket);
            }
            if has(NhrpFlag::Nho) {
                // The peer's own address overrides the next hop; its
                // networks are routes of their own.
                attrs.push(if has(NhrpFlag::Nhop) {
                    DmvpnAttr::NexthopOverride
                } else {
                    DmvpnAttr::RouteInstalled
                });
            }
            let peer = e.nbma.and_then(v4).and_then(|a| self.peers.get(&a));
            let since = peer.map_or(e.created, |p| p.up_since.max(e.created));
            let row = DmvpnPeerEntry {
                tunnel: e.next_hop.unwrap_or(e.prefix),
                target: e.prefix,
                target_len: e.prefix_len,
                state: self.dmvpn_state(e),
                updn_secs: (now - since).as_secs(),
                attrs,
            };
            peers.entry((e.nbma.is_none(), e.nbma)).or_default().push((
                has(NhrpFlag::Nhop) || e.prefix_len == host_len(e.prefix),
                row,
            ));
        }
        let has_nhs = self
            .nhrp
            .as_ref()
            .is_some_and(|n| !n.nhs_status().is_empty());
        vec![DmvpnInterface {
            interface: self.cfg.interface.clone(),
            role: match (self.cfg.hub, has_nhs) {
                (true, true) => DmvpnRole::HubSpoke,
                (true, false) => DmvpnRole::Hub,
                (false, _) => DmvpnRole::Spoke,
            },
            peers: peers
                .into_iter()
                .map(|((_, nbma), mut rows)| {
                    // Tunnel addresses first, then the networks behind them.
                    rows.sort_by_key(|(host, r)| (!*host, r.target, r.target_len));
                    DmvpnPeer {
                        nbma,
                        entries: rows.into_iter().map(|(_, r)| r).collect(),
                    }
                })
                .collect(),
            tunnel_addr: match (self.cfg.overlay_v4, self.cfg.tunnel_addr6) {
                (false, Some((a, _))) => Some(IpAddr::V6(a)),
                _ => Some(IpAddr::V4(self.cfg.tunnel_addr)),
            },
            source: Some(IpAddr::V4(self.cfg.nbma)),
            destination: self.cfg.destination.map(IpAddr::V4),
            protection: self.cfg.protection_profile.clone(),
            line_protocol_up: self.line_protocol_up(),
            if_state: self.cfg.if_state,
        }]
    }

    /// `show dmvpn detail`.
    pub fn show_dmvpn_detail(&self, now: Instant, dp: Option<&DataplaneStats>) -> DmvpnDetail {
        DmvpnDetail {
            interfaces: self.show_dmvpn(now),
            nhs: self.show_nhrp_nhs(now),
            sessions: self.show_crypto_session(now, dp),
        }
    }

    /// The counters with no IOS view: IKE negotiations (from the IKE
    /// engine) and NHRP resolution latency.
    pub fn show_stats(&self) -> TunnelStats {
        let hs = self.ike.stats().handshakes;
        let counts = |c: &dmvpn_ike::HandshakeCounts| Handshakes {
            started: c.started,
            completed: c.completed,
            failed: c
                .failures()
                .map(|(why, n)| Counter::new(why.as_str(), &why.as_str().replace('_', " "), n))
                .collect(),
        };
        TunnelStats {
            interface: self.cfg.interface.clone(),
            phase1: counts(&hs.phase1),
            quick_mode: counts(&hs.quick_mode),
            resolution_latency: self.resolution_latency.clone(),
        }
    }

    /// `show crypto isakmp sa [detail]`: each SA with its role, so the
    /// text can print IOS's `dst` (responder) and `src` (initiator).
    pub fn show_isakmp_sa(&self, now: Instant) -> Vec<IsakmpSa> {
        let mut v: Vec<IsakmpSa> = self
            .ike
            .isakmp_sas()
            .into_iter()
            .map(|s| IsakmpSa {
                local: s.local.ip(),
                remote: s.remote.ip(),
                initiator: s.initiator,
                state: isakmp_state(s.state),
                conn_id: s.id as u32,
                // IOS shows an SA with a replacement as STALE until it goes.
                status: if s.replaced {
                    SaStatus::Stale
                } else {
                    SaStatus::Active
                },
                details: s.policy.map(|p| {
                    let (encryption, key_bits) = ios_encr(p.encr);
                    IsakmpDetails {
                        encryption: encryption.into(),
                        key_bits,
                        hash: ios_hash(p.hash).into(),
                        auth: "psk".into(),
                        dh_group: p.group.ike_id(),
                        lifetime_remaining_secs: u64::from(p.lifetime)
                            .saturating_sub(now.saturating_duration_since(s.created).as_secs()),
                        dpd: self.cfg.ike.dpd.is_some(),
                        nat_t: s.local.port() == 4500,
                        aggressive: s.aggressive,
                    }
                }),
            })
            .collect();
        v.sort_by_key(|s| s.conn_id);
        v
    }

    /// `show crypto ipsec sa`, with the data plane's counters when given.
    pub fn show_ipsec_sa(&self, now: Instant, stats: Option<&DataplaneStats>) -> Vec<IpsecPeerSa> {
        let children = self.ike.child_sas();
        let mut out = Vec::new();
        for (nbma, p) in &self.peers {
            if p.sas.is_empty() {
                continue;
            }
            let peer = IpAddr::V4(*nbma);
            let mut counters = IpsecCounters::default();
            let mut inbound = Vec::new();
            let mut outbound = Vec::new();
            let snaps: Vec<_> = stats
                .map(|s| s.sas.iter().filter(|x| x.peer == peer).collect())
                .unwrap_or_default();
            for s in &snaps {
                let c = &s.counters;
                counters.encaps += c.pkts_encaps;
                counters.encrypt += c.pkts_encrypt;
                counters.digest += c.pkts_digest;
                counters.decaps += c.pkts_decaps;
                counters.decrypt += c.pkts_decrypt;
                counters.verify += c.pkts_verify;
                counters.send_errors += c.send_errors;
                counters.recv_errors += c.recv_errors;
                counters.replay_failed += c.replay_failed;
                counters.verify_failed += c.verify_failed;
                match s.direction {
                    Direction::Inbound => counters.bytes_in += c.bytes,
                    Direction::Outbound => counters.bytes_out += c.bytes,
                }
            }
            // Manual SAs have no IKE child; the wire port is the peer's.
            let mut port = match p.protection {
                Protection::EspUdp { port } => port,
                _ => 500,
            };
            for (ispi, ospi) in &p.sas {
                let child = children.iter().find(|c| c.inbound_spi == *ispi);
                if let Some(c) = child {
                    port = c.remote.port();
                }
                let remaining =
                    child.map_or(0, |c| c.expires.saturating_duration_since(now).as_secs());
                let transform = snaps
                    .iter()
                    .find(|s| s.spi == *ispi && s.direction == Direction::Inbound)
                    .map(|s| (ios_transform(s.enc, s.auth), s.enc.iv_len() as u8))
                    .unwrap_or_default();
                let (transform, iv_size) = transform;
                let (in_conn, out_conn) = self.conn_ids(*ispi);
                let life_kb = self.cfg.ike.sa_lifetime_kb;
                // Mode and volume left from the data plane's own SA.
                let esp = |spi: u32, dir: Direction, conn_id: u32| {
                    let snap = snaps.iter().find(|s| s.spi == spi && s.direction == dir);
                    EspSa {
                        spi,
                        transform: transform.clone(),
                        mode: match snap.map(|s| s.mode) {
                            Some(SadbMode::Tunnel) => EspMode::Tunnel,
                            _ => EspMode::Transport,
                        },
                        conn_id,
                        remaining_kb: snap.map_or(life_kb, |s| {
                            s.remaining_kb
                                .unwrap_or(life_kb.saturating_sub(s.counters.bytes / 1024))
                        }),
                        remaining_secs: remaining,
                        iv_size,
                        replay_detection: true,
                        status: SaStatus::Active,
                    }
                };
                inbound.push(esp(*ispi, Direction::Inbound, in_conn));
                outbound.push(esp(*ospi, Direction::Outbound, out_conn));
            }
            out.push(IpsecPeerSa {
                interface: self.cfg.interface.clone(),
                crypto_map_tag: self.crypto_map_tag(),
                local_addr: IpAddr::V4(self.cfg.nbma),
                local_ident: gre_ident(IpAddr::V4(self.cfg.nbma)),
                remote_ident: gre_ident(peer),
                current_peer: peer,
                peer_port: port,
                counters,
                path_mtu: 1500,
                pfs_dh_group: self.cfg.ike.pfs.map(|g| g.ike_id()),
                inbound,
                outbound,
            });
        }
        out.sort_by_key(|p| p.current_peer);
        out
    }

    fn crypto_map_tag(&self) -> String {
        format!("{}-head-0", self.cfg.interface)
    }

    /// `show crypto ipsec sa`: the peers' SAs and the interface's
    /// data-plane drops (and, for `--json`, every other counter).
    pub fn show_ipsec_sa_report(
        &self,
        now: Instant,
        stats: Option<&DataplaneStats>,
    ) -> IpsecSaReport {
        let empty = DataplaneStats {
            counters: Default::default(),
            gre: Default::default(),
            sas: Vec::new(),
            invalid_spi: 0,
        };
        let st = stats.unwrap_or(&empty);
        IpsecSaReport {
            interfaces: vec![IpsecInterface {
                interface: self.cfg.interface.clone(),
                crypto_map_tag: self.crypto_map_tag(),
                local_addr: IpAddr::V4(self.cfg.nbma),
                send_errors: send_errors(st),
                recv_errors: recv_errors(st),
                counters: traffic_counters(st),
            }],
            peers: self.show_ipsec_sa(now, stats),
        }
    }

    /// `show crypto session [detail]`: per peer, its IKE SAs and its GRE
    /// flow with the packets (and drops) of the current SAs.
    pub fn show_crypto_session(
        &self,
        now: Instant,
        stats: Option<&DataplaneStats>,
    ) -> Vec<CryptoSession> {
        let isakmp = self.show_isakmp_sa(now);
        let children = self.ike.child_sas();
        let mut peers: BTreeSet<IpAddr> = isakmp.iter().map(|s| s.remote).collect();
        peers.extend(
            self.peers
                .iter()
                .filter(|(_, p)| !p.sas.is_empty())
                .map(|(n, _)| IpAddr::V4(*n)),
        );
        let mut out = Vec::new();
        for peer in peers {
            let ike_sas: Vec<SessionIkeSa> = self
                .ike
                .isakmp_sas()
                .iter()
                .filter(|s| s.remote.ip() == peer)
                .map(|s| {
                    let row = isakmp.iter().find(|r| r.conn_id == s.id as u32);
                    let details = row.and_then(|r| r.details.as_ref());
                    let mut caps = String::new();
                    if details.is_some_and(|d| d.dpd) {
                        caps.push('D');
                    }
                    if details.is_some_and(|d| d.nat_t) {
                        caps.push('N');
                    }
                    SessionIkeSa {
                        local: s.local.ip(),
                        local_port: s.local.port(),
                        remote: s.remote.ip(),
                        remote_port: s.remote.port(),
                        active: s.state == "QM_IDLE" && !s.replaced,
                        capabilities: caps,
                        conn_id: s.id as u32,
                        lifetime_secs: details.map_or(0, |d| d.lifetime_remaining_secs),
                    }
                })
                .collect();
            let state = v4(peer).and_then(|n| self.peers.get(&n));
            let mut flows = Vec::new();
            let mut peer_port = ike_sas.iter().find(|s| s.active).map(|s| s.remote_port);
            if let Some(p) = state.filter(|p| !p.sas.is_empty()) {
                let snaps: Vec<&SaSnapshot> = stats
                    .map(|s| s.sas.iter().filter(|x| x.peer == peer).collect())
                    .unwrap_or_default();
                let dir = |d: Direction| snaps.iter().copied().filter(move |s| s.direction == d);
                // The pair in use: the data plane's outbound SA, else the newest.
                let current_out = dir(Direction::Outbound).map(|s| s.spi).next();
                let (ispi, ospi) = p
                    .sas
                    .iter()
                    .find(|(_, o)| Some(**o) == current_out)
                    .or_else(|| p.sas.iter().last())
                    .map(|(i, o)| (*i, *o))
                    .expect("not empty");
                let child = children.iter().find(|c| c.inbound_spi == ispi);
                let secs = child.map_or(0, |c| c.expires.saturating_duration_since(now).as_secs());
                let life_kb = self.cfg.ike.sa_lifetime_kb;
                let kb = |spi: u32| {
                    snaps.iter().find(|s| s.spi == spi).map_or(life_kb, |s| {
                        s.remaining_kb
                            .unwrap_or(life_kb.saturating_sub(s.counters.bytes / 1024))
                    })
                };
                let transform = snaps
                    .iter()
                    .find(|s| s.spi == ispi)
                    .map(|s| ios_transform(s.enc, s.auth))
                    .unwrap_or_default();
                peer_port = peer_port.or(child.map(|c| c.remote.port()));
                flows.push(SessionFlow {
                    local: gre_ident(IpAddr::V4(self.cfg.nbma)),
                    remote: gre_ident(peer),
                    active_sas: 2 * p.sas.len() as u32,
                    decrypted: dir(Direction::Inbound)
                        .map(|s| s.counters.pkts_decrypt)
                        .sum(),
                    decrypt_drops: dir(Direction::Inbound).map(inbound_drops).sum(),
                    encrypted: dir(Direction::Outbound)
                        .map(|s| s.counters.pkts_encrypt)
                        .sum(),
                    encrypt_drops: dir(Direction::Outbound)
                        .map(|s| s.counters.send_errors)
                        .sum(),
                    inbound_life_kb: kb(ispi),
                    inbound_life_secs: secs,
                    outbound_life_kb: kb(ospi),
                    outbound_life_secs: secs,
                    outbound_spi: Some(ospi),
                    transform,
                });
                if let Protection::EspUdp { port } = p.protection {
                    peer_port = peer_port.or(Some(port));
                }
            }
            let ike_up = ike_sas.iter().any(|s| s.active);
            let status = match (ike_up, !flows.is_empty()) {
                (true, true) => SessionStatus::UpActive,
                (true, false) => SessionStatus::UpIdle,
                (false, true) => SessionStatus::UpNoIke,
                (false, false) if !ike_sas.is_empty() => SessionStatus::DownNegotiating,
                (false, false) => SessionStatus::Down,
            };
            out.push(CryptoSession {
                interface: self.cfg.interface.clone(),
                peer,
                peer_port: peer_port.unwrap_or(500),
                uptime_secs: state
                    .filter(|_| !flows.is_empty())
                    .map(|p| (now - p.up_since).as_secs()),
                status,
                phase1_id: ike_up.then(|| peer.to_string()),
                ike_sas,
                flows,
            });
        }
        out
    }

    /// `clear ip nhrp ADDRESS [MASK]`: the one dynamic entry goes, with
    /// the shortcut or route it gave (traffic goes via the hub again).
    pub fn clear_nhrp_entry(
        &mut self,
        now: Instant,
        address: IpAddr,
        prefix_len: Option<u8>,
    ) -> u64 {
        let Some(n) = self.engine_for(address) else {
            return 0;
        };
        let len = prefix_len.unwrap_or(host_len(address));
        let count = n.clear_entry(address, len);
        self.pump(now);
        count
    }
}

/// GRE between two NBMA addresses: `(addr/255.255.255.255/47/0)`.
fn gre_ident(a: IpAddr) -> ProxyIdent {
    ProxyIdent {
        addr: a,
        prefix_len: host_len(a),
        protocol: 47,
        port: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Counters;

    /// Field names of a struct from its `Debug` form (`Name { a: 0, b: 1 }`).
    fn fields(debug: &str) -> Vec<String> {
        let body = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
        // Top-level fields only: drop what nested structs print.
        let mut flat = String::new();
        let mut depth = 0;
        for c in body.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => flat.push(c),
                _ => {}
            }
        }
        flat.split(',')
            .filter_map(|f| f.split(':').next())
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// Every data-plane counter reaches `show crypto ipsec sa` (drops) or
    /// its `--json` (the rest): a counter added to `Counters` fails here
    /// until it is given a place.
    #[test]
    fn every_dataplane_counter_is_shown() {
        let st = DataplaneStats {
            counters: Counters::default(),
            gre: Default::default(),
            sas: Vec::new(),
            invalid_spi: 0,
        };
        let keys: Vec<String> = send_errors(&st)
            .into_iter()
            .chain(recv_errors(&st))
            .chain(traffic_counters(&st))
            .map(|c| c.key)
            .collect();
        // `last` holds addresses for log lines, not a count.
        for f in fields(&format!("{:?}", Counters::default())) {
            if f.starts_with("last") {
                continue;
            }
            assert!(keys.contains(&f), "Counters::{f} is in no show output");
        }
        for d in GreDrop::ALL {
            assert!(
                keys.iter()
                    .any(|k| *k == format!("gre_{}", words(&format!("{d:?}")).replace(' ', "_"))),
                "{d:?}"
            );
        }
    }

    /// Every NHRP engine counter that is not a total of packets sent or
    /// received is a drop in `show ip nhrp traffic`.
    #[test]
    fn every_nhrp_drop_counter_is_shown() {
        // Totals, and events that drop nothing (a takeover of a dead
        // peer's registration is logged; summarised warnings are counted
        // in the summary lines themselves).
        let totals = [
            "rx",
            "tx",
            "tx_errors",
            "tx_traffic_indications",
            "reg_takeovers",
            "warnings_suppressed",
        ];
        let st = dmvpn_nhrp::engine::Stats::default();
        let keys: Vec<String> = nhrp_drops(&st, None).into_iter().map(|c| c.key).collect();
        for f in fields(&format!("{st:?}")) {
            assert!(
                totals.contains(&f.as_str()) || keys.contains(&f),
                "dmvpn_nhrp::Stats::{f} is in no show output"
            );
        }
    }

    #[test]
    fn ios_words() {
        assert_eq!(ios_encr(EncrAlg::Aes192).0, "aes");
        assert_eq!(ios_encr(EncrAlg::TripleDes).0, "3des");
        assert_eq!(ios_hash(HashAlg::Sha1), "sha");
        assert_eq!(ios_hash(HashAlg::Sha384), "sha384");
        assert_eq!(
            ios_transform(EncAlg::AesCbc256, AuthAlg::HmacSha1_96),
            "esp-256-aes esp-sha-hmac"
        );
        assert_eq!(
            ios_transform(EncAlg::AesGcm256, AuthAlg::None),
            "esp-gcm 256"
        );
        assert_eq!(words("KeyMismatch"), "key mismatch");
    }
}
