//! Node state → the control protocol's `show` snapshots.

use std::collections::BTreeMap;
use std::net::IpAddr;

use dmvpn_ctl::proto::{
    DmvpnAttr, DmvpnInterface, DmvpnPeer, DmvpnPeerEntry, DmvpnRole, DmvpnState, EspMode, EspSa,
    IpsecCounters, IpsecPeerSa, IsakmpDetails, IsakmpSa, IsakmpState, NhrpEntry, NhrpEntryType,
    NhrpFlag, NhsEntry, NhsState, ProxyIdent, SaStatus,
};
use dmvpn_nhrp::Instant;
use dmvpn_nhrp::cache::EntryType;

use super::Node;
use crate::datapath::esp::{AuthAlg, EncAlg};
use crate::datapath::sadb::{Direction, Mode as SadbMode};
use crate::runtime::dataplane::{DataplaneStats, Protection};

fn entry_type(k: EntryType) -> NhrpEntryType {
    match k {
        EntryType::Static => NhrpEntryType::Static,
        EntryType::Dynamic => NhrpEntryType::Dynamic,
        EntryType::Cached => NhrpEntryType::Cached,
        EntryType::Incomplete => NhrpEntryType::Incomplete,
        EntryType::Negative => NhrpEntryType::Negative,
        EntryType::Local => NhrpEntryType::Local,
        EntryType::Nhs => NhrpEntryType::Nhs,
    }
}

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

/// IOS transform-set words for a data-plane SA.
fn ios_transform(enc: EncAlg, auth: AuthAlg) -> String {
    let e = match enc {
        EncAlg::DesCbc => "esp-des",
        EncAlg::Des3Cbc => "esp-3des",
        EncAlg::AesCbc128 => "esp-aes",
        EncAlg::AesCbc192 => "esp-aes 192",
        EncAlg::AesCbc256 => "esp-aes 256",
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

impl Node {
    /// `show ip nhrp`.
    pub fn show_nhrp(&self, now: Instant) -> Vec<NhrpEntry> {
        let Some(n) = self.nhrp.as_ref() else {
            return Vec::new();
        };
        n.cache()
            .entries()
            .into_iter()
            .map(|e| {
                let mut flags = Vec::new();
                if e.unique {
                    flags.push(NhrpFlag::Unique);
                }
                if e.used {
                    flags.push(NhrpFlag::Used);
                }
                if e.kind == EntryType::Dynamic {
                    flags.push(NhrpFlag::Registered);
                }
                if e.claimed_nbma.is_some() {
                    flags.push(NhrpFlag::Nat);
                }
                NhrpEntry {
                    prefix: e.prefix,
                    prefix_len: e.prefix_len,
                    via: e.next_hop,
                    interface: self.cfg.interface.clone(),
                    created_secs: (now - e.created).as_secs(),
                    expire_secs: e.expires.map(|x| (x - now).as_secs()),
                    entry_type: entry_type(e.kind),
                    flags,
                    nbma: e.nbma,
                    claimed_nbma: e.claimed_nbma,
                    cache_hits: None,
                }
            })
            .collect()
    }

    /// `show ip nhrp nhs detail`.
    pub fn show_nhrp_nhs(&self, now: Instant) -> Vec<NhsEntry> {
        let Some(n) = self.nhrp.as_ref() else {
            return Vec::new();
        };
        n.nhs_status()
            .into_iter()
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
                    .map(|_| s.next_attempt.saturating_since(now).as_secs()),
            })
            .collect()
    }

    /// `show dmvpn`: NHRP peers (NHS, static, registered, shortcuts) and their state.
    pub fn show_dmvpn(&self, now: Instant) -> Vec<DmvpnInterface> {
        let mut peers: BTreeMap<IpAddr, Vec<DmvpnPeerEntry>> = BTreeMap::new();
        if let Some(n) = self.nhrp.as_ref() {
            for e in n.cache().entries() {
                let (attr, tunnel) = match e.kind {
                    EntryType::Static | EntryType::Nhs => (DmvpnAttr::Static, e.prefix),
                    EntryType::Dynamic | EntryType::Cached => {
                        (DmvpnAttr::Dynamic, e.next_hop.unwrap_or(e.prefix))
                    }
                    EntryType::Incomplete => (DmvpnAttr::Incomplete, e.prefix),
                    _ => continue,
                };
                let Some(nbma) = e.nbma else {
                    continue;
                };
                let list = peers.entry(nbma).or_default();
                if list.iter().any(|x| x.tunnel == tunnel) {
                    continue;
                }
                let nbma4 = match nbma {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                };
                let p = nbma4.and_then(|a| self.peers.get(&a));
                let state = if e.kind == EntryType::Incomplete {
                    DmvpnState::Nhrp
                } else if self.cfg.protected && p.is_none_or(|p| p.sas.is_empty()) {
                    DmvpnState::Ike
                } else if e.kind == EntryType::Static
                    && !self.cfg.hub
                    && !n.nhs_status().iter().any(|s| s.config.nbma == nbma && s.up)
                    && n.nhs_status().iter().any(|s| s.config.nbma == nbma)
                {
                    DmvpnState::Nhrp
                } else {
                    DmvpnState::Up
                };
                let mut attrs = vec![attr];
                if e.claimed_nbma.is_some() {
                    attrs.push(DmvpnAttr::Nated);
                }
                let since = p.map_or(e.created, |p| p.up_since.max(e.created));
                list.push(DmvpnPeerEntry {
                    tunnel,
                    state,
                    updn_secs: (now - since).as_secs(),
                    attrs,
                });
            }
        }
        vec![DmvpnInterface {
            interface: self.cfg.interface.clone(),
            role: if self.cfg.hub {
                DmvpnRole::Hub
            } else {
                DmvpnRole::Spoke
            },
            peers: peers
                .into_iter()
                .map(|(nbma, entries)| DmvpnPeer { nbma, entries })
                .collect(),
        }]
    }

    /// `show crypto isakmp sa [detail]`.
    pub fn show_isakmp_sa(&self, now: Instant) -> Vec<IsakmpSa> {
        let t = self.ike_now(now);
        self.ike
            .isakmp_sas()
            .into_iter()
            .map(|s| IsakmpSa {
                dst: s.remote.ip(),
                src: s.local.ip(),
                state: isakmp_state(s.state),
                conn_id: s.id as u32,
                // IOS shows an SA with a replacement as STALE until it goes.
                status: if s.replaced {
                    SaStatus::Stale
                } else {
                    SaStatus::Active
                },
                details: s.policy.map(|p| IsakmpDetails {
                    encryption: format!("{:?}", p.encr).to_lowercase(),
                    hash: format!("{:?}", p.hash).to_lowercase(),
                    auth: "psk".into(),
                    dh_group: p.group.ike_id(),
                    lifetime_remaining_secs: u64::from(p.lifetime)
                        .saturating_sub(t.saturating_duration_since(s.created).as_secs()),
                    dpd: self.cfg.ike.dpd.is_some(),
                    nat_t: s.local.port() == 4500,
                    aggressive: s.aggressive,
                }),
            })
            .collect()
    }

    /// `show crypto ipsec sa`, with the data plane's counters when given.
    pub fn show_ipsec_sa(&self, now: Instant, stats: Option<&DataplaneStats>) -> Vec<IpsecPeerSa> {
        let t = self.ike_now(now);
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
                    child.map_or(0, |c| c.expires.saturating_duration_since(t).as_secs());
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
            let ident = |a: IpAddr| ProxyIdent {
                addr: a,
                prefix_len: 32,
                protocol: 47,
                port: 0,
            };
            out.push(IpsecPeerSa {
                interface: self.cfg.interface.clone(),
                crypto_map_tag: format!("{}-head-0", self.cfg.interface),
                local_addr: IpAddr::V4(self.cfg.nbma),
                local_ident: ident(IpAddr::V4(self.cfg.nbma)),
                remote_ident: ident(peer),
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
}
