//! Fixed snapshots of one state, used by every renderer test and by the
//! samples in docs/operations.md: spoke 192.168.1.3 (NBMA 172.16.0.3,
//! LAN 10.3.3.0/24) registered with hub 192.168.1.1 (172.16.0.1); a
//! second NHS 192.168.1.9 (172.16.0.9) that does not answer (IKE stuck in
//! MM_KEY_EXCH); a phase 3 shortcut to spoke 192.168.1.2 and its LAN
//! 10.2.2.0/24, behind NAT (172.16.0.2 inside, 172.16.9.2 outside), whose
//! SA that spoke started; a resolution under way for 192.168.1.4.
#![allow(dead_code)]

use dmvpn_ctl::proto::*;
use std::net::IpAddr;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const DAY: u64 = 93_784; // 1d02h
const SHORTCUT_AGE: u64 = 83; // 00:01:23
const SHORTCUT_LEFT: u64 = 517; // 00:08:37 of a 600 s holding time

fn entry(prefix: &str, len: u8, via: Option<&str>, nbma: Option<&str>) -> NhrpEntry {
    NhrpEntry {
        prefix: ip(prefix),
        prefix_len: len,
        via: via.map(ip),
        interface: "Tunnel0".into(),
        created_secs: DAY,
        expire_secs: None,
        entry_type: NhrpEntryType::Static,
        flags: Vec::new(),
        nbma: nbma.map(ip),
        claimed_nbma: None,
        cache_hits: None,
    }
}

pub fn nhrp() -> Vec<NhrpEntry> {
    use NhrpFlag::*;
    let shortcut = |prefix: &str, len: u8, flags: Vec<NhrpFlag>| NhrpEntry {
        created_secs: SHORTCUT_AGE,
        expire_secs: Some(SHORTCUT_LEFT),
        entry_type: NhrpEntryType::Dynamic,
        flags,
        claimed_nbma: Some(ip("172.16.0.2")),
        ..entry(prefix, len, Some("192.168.1.2"), Some("172.16.9.2"))
    };
    vec![
        shortcut("10.2.2.0", 24, vec![Router, Used, Rib, Nho]),
        NhrpEntry {
            flags: vec![Local, NoSocket],
            ..entry("10.3.3.0", 24, Some("192.168.1.3"), Some("172.16.0.3"))
        },
        NhrpEntry {
            flags: vec![Used],
            ..entry("192.168.1.1", 32, Some("192.168.1.1"), Some("172.16.0.1"))
        },
        shortcut("192.168.1.2", 32, vec![Router, Used, Nhop, Rib, Nho]),
        NhrpEntry {
            created_secs: 2,
            expire_secs: Some(13),
            entry_type: NhrpEntryType::Incomplete,
            flags: vec![Negative],
            ..entry("192.168.1.4", 32, None, None)
        },
        entry("192.168.1.9", 32, Some("192.168.1.9"), Some("172.16.0.9")),
    ]
}

pub fn nhs() -> Vec<NhsEntry> {
    vec![
        NhsEntry {
            interface: "Tunnel0".into(),
            nhs: ip("192.168.1.1"),
            nbma: Some(ip("172.16.0.1")),
            priority: 0,
            cluster: 0,
            state: NhsState {
                responding: true,
                expecting: true,
                ..Default::default()
            },
            requests_sent: 105,
            requests_failed: 0,
            replies_received: 105,
            last_reply_secs: Some(23),
            pending_request_id: Some(1106),
            retransmit_secs: Some(1),
            refused: None,
        },
        NhsEntry {
            interface: "Tunnel0".into(),
            nhs: ip("192.168.1.9"),
            nbma: Some(ip("172.16.0.9")),
            priority: 1,
            cluster: 0,
            state: NhsState {
                expecting: true,
                ..Default::default()
            },
            requests_sent: 12,
            requests_failed: 11,
            replies_received: 0,
            last_reply_secs: None,
            pending_request_id: Some(1002),
            retransmit_secs: Some(64),
            refused: None,
        },
    ]
}

/// Two phase 1 and two Quick Modes completed, one phase 1 timed out,
/// three resolutions answered.
pub fn stats() -> Vec<dmvpn_ctl::stats::TunnelStats> {
    use dmvpn_ctl::stats::{Handshakes, Histogram, TunnelStats};
    let reasons = |timeout| {
        vec![
            Counter::new("timeout", "timeout", timeout),
            Counter::new("auth_failed", "auth failed", 0),
            Counter::new("no_proposal_chosen", "no proposal chosen", 0),
        ]
    };
    let mut latency = Histogram::default();
    for secs in [0.0042, 0.0087, 1.5] {
        latency.observe(secs);
    }
    vec![TunnelStats {
        interface: "Tunnel0".into(),
        phase1: Handshakes {
            started: 3,
            completed: 2,
            failed: reasons(1),
        },
        quick_mode: Handshakes {
            started: 2,
            completed: 2,
            failed: reasons(0),
        },
        resolution_latency: latency,
    }]
}

pub fn nhrp_traffic() -> Vec<NhrpTraffic> {
    vec![NhrpTraffic {
        interface: "Tunnel0".into(),
        max_send_packets: 100,
        max_send_secs: 10,
        max_send_used: 0,
        sent: NhrpTypeCounts {
            resolution_request: 3,
            resolution_reply: 1,
            registration_request: 117,
            ..Default::default()
        },
        received: NhrpTypeCounts {
            resolution_request: 1,
            resolution_reply: 2,
            registration_reply: 105,
            traffic_indication: 2,
            ..Default::default()
        },
        drops: vec![
            Counter::new("rx_malformed", "Malformed", 0),
            Counter::new("rx_auth_failed", "Authentication Failure", 1),
            Counter::new(
                "traffic_indications_holddown",
                "Traffic Indication Holddown",
                0,
            ),
            Counter::new(
                "traffic_indications_max_send",
                "Traffic Indication Max-send",
                3,
            ),
            Counter::new("no_route", "No NHRP Mapping", 2),
        ],
    }]
}

fn row(
    tunnel: &str,
    target: &str,
    target_len: u8,
    state: DmvpnState,
    updn_secs: u64,
    attrs: Vec<DmvpnAttr>,
) -> DmvpnPeerEntry {
    DmvpnPeerEntry {
        tunnel: ip(tunnel),
        target: ip(target),
        target_len,
        state,
        updn_secs,
        attrs,
    }
}

pub fn dmvpn() -> Vec<DmvpnInterface> {
    use DmvpnAttr::*;
    vec![DmvpnInterface {
        interface: "Tunnel0".into(),
        role: DmvpnRole::Spoke,
        peers: vec![
            DmvpnPeer {
                nbma: Some(ip("172.16.0.1")),
                entries: vec![row(
                    "192.168.1.1",
                    "192.168.1.1",
                    32,
                    DmvpnState::Up,
                    DAY,
                    vec![Static],
                )],
            },
            DmvpnPeer {
                nbma: Some(ip("172.16.0.9")),
                entries: vec![row(
                    "192.168.1.9",
                    "192.168.1.9",
                    32,
                    DmvpnState::Ike,
                    DAY,
                    vec![Static],
                )],
            },
            DmvpnPeer {
                nbma: Some(ip("172.16.9.2")),
                entries: vec![
                    row(
                        "192.168.1.2",
                        "192.168.1.2",
                        32,
                        DmvpnState::Up,
                        SHORTCUT_AGE,
                        vec![Dynamic, Nated, NexthopOverride],
                    ),
                    row(
                        "192.168.1.2",
                        "10.2.2.0",
                        24,
                        DmvpnState::Up,
                        SHORTCUT_AGE,
                        vec![Dynamic, Nated, RouteInstalled],
                    ),
                ],
            },
            DmvpnPeer {
                nbma: None,
                entries: vec![row(
                    "192.168.1.4",
                    "192.168.1.4",
                    32,
                    DmvpnState::Nhrp,
                    2,
                    vec![Incomplete, NoSocket],
                )],
            },
        ],
        tunnel_addr: Some(ip("192.168.1.3")),
        source: Some(ip("172.16.0.3")),
        destination: None,
        protection: Some("cisco".into()),
        line_protocol_up: true,
        if_state: false,
    }]
}

pub fn isakmp() -> Vec<IsakmpSa> {
    let details = |encryption: &str, key_bits, hash: &str, dh_group, left, nat_t| {
        Some(IsakmpDetails {
            encryption: encryption.into(),
            key_bits,
            hash: hash.into(),
            auth: "psk".into(),
            dh_group,
            lifetime_remaining_secs: left,
            dpd: true,
            nat_t,
            aggressive: false,
        })
    };
    vec![
        IsakmpSa {
            local: ip("172.16.0.3"),
            remote: ip("172.16.0.1"),
            initiator: true,
            state: IsakmpState::QmIdle,
            conn_id: 1001,
            status: SaStatus::Active,
            details: details("des", 56, "md5", 1, 83_988, false),
        },
        IsakmpSa {
            local: ip("172.16.0.3"),
            remote: ip("172.16.9.2"),
            initiator: false,
            state: IsakmpState::QmIdle,
            conn_id: 1002,
            status: SaStatus::Active,
            details: details("aes", 256, "sha", 14, 86_317, true),
        },
        IsakmpSa {
            local: ip("172.16.0.3"),
            remote: ip("172.16.0.9"),
            initiator: true,
            state: IsakmpState::MmKeyExch,
            conn_id: 1003,
            status: SaStatus::Active,
            details: details("des", 56, "md5", 1, 86_398, false),
        },
    ]
}

fn gre(a: &str) -> ProxyIdent {
    ProxyIdent {
        addr: ip(a),
        prefix_len: 32,
        protocol: 47,
        port: 0,
    }
}

pub fn ipsec() -> IpsecSaReport {
    let esp = |spi: u32, transform: &str, conn_id: u32, kb: u64, secs: u64, iv_size| EspSa {
        spi,
        transform: transform.into(),
        mode: EspMode::Transport,
        conn_id,
        remaining_kb: kb,
        remaining_secs: secs,
        iv_size,
        replay_detection: true,
        status: SaStatus::Active,
    };
    let peer = |remote: &str, port, counters, inbound, outbound| IpsecPeerSa {
        interface: "Tunnel0".into(),
        crypto_map_tag: "Tunnel0-head-0".into(),
        local_addr: ip("172.16.0.3"),
        local_ident: gre("172.16.0.3"),
        remote_ident: gre(remote),
        current_peer: ip(remote),
        peer_port: port,
        counters,
        path_mtu: 1500,
        pfs_dh_group: None,
        inbound,
        outbound,
    };
    IpsecSaReport {
        interfaces: vec![IpsecInterface {
            interface: "Tunnel0".into(),
            crypto_map_tag: "Tunnel0-head-0".into(),
            local_addr: ip("172.16.0.3"),
            send_errors: vec![
                Counter::new("no_route", "no nhrp mapping", 2),
                Counter::new("pending_dropped", "no sa", 0),
                Counter::new("queue_full", "queue full", 0),
            ],
            recv_errors: vec![
                Counter::new("invalid_spi", "invalid sa", 1),
                Counter::new("unprotected", "unprotected gre", 0),
            ],
            counters: vec![Counter::new("tun_rx", "tun rx", 1298)],
        }],
        peers: vec![
            peer(
                "172.16.0.1",
                500,
                IpsecCounters {
                    encaps: 1120,
                    encrypt: 1120,
                    digest: 1120,
                    decaps: 1118,
                    decrypt: 1118,
                    verify: 1118,
                    replay_failed: 2,
                    verify_failed: 1,
                    bytes_in: 111_800,
                    bytes_out: 112_000,
                    ..Default::default()
                },
                vec![esp(
                    0x6E42707E,
                    "esp-3des esp-md5-hmac",
                    2001,
                    4607999,
                    98,
                    8,
                )],
                vec![esp(
                    0xEA8C83C1,
                    "esp-3des esp-md5-hmac",
                    2002,
                    4607998,
                    98,
                    8,
                )],
            ),
            peer(
                "172.16.9.2",
                4500,
                IpsecCounters {
                    encaps: 176,
                    encrypt: 176,
                    digest: 176,
                    decaps: 174,
                    decrypt: 174,
                    verify: 174,
                    ..Default::default()
                },
                vec![esp(
                    0x3A1F00D2,
                    "esp-256-aes esp-sha-hmac",
                    2003,
                    4607990,
                    37,
                    16,
                )],
                vec![esp(
                    0x0B7C41E9,
                    "esp-256-aes esp-sha-hmac",
                    2004,
                    4607989,
                    37,
                    16,
                )],
            ),
        ],
    }
}

pub fn sessions() -> Vec<CryptoSession> {
    let ike =
        |remote: &str, local_port, remote_port, active, caps: &str, conn_id, life| SessionIkeSa {
            local: ip("172.16.0.3"),
            local_port,
            remote: ip(remote),
            remote_port,
            active,
            capabilities: caps.into(),
            conn_id,
            lifetime_secs: life,
        };
    let flow = |remote: &str,
                counts: (u64, u64, u64, u64),
                life: (u64, u64, u64, u64),
                spi: u32,
                transform: &str| {
        SessionFlow {
            local: gre("172.16.0.3"),
            remote: gre(remote),
            active_sas: 2,
            decrypted: counts.0,
            decrypt_drops: counts.1,
            encrypted: counts.2,
            encrypt_drops: counts.3,
            inbound_life_kb: life.0,
            inbound_life_secs: life.1,
            outbound_life_kb: life.2,
            outbound_life_secs: life.3,
            outbound_spi: Some(spi),
            transform: transform.into(),
        }
    };
    vec![
        CryptoSession {
            interface: "Tunnel0".into(),
            peer: ip("172.16.0.1"),
            peer_port: 500,
            uptime_secs: Some(DAY),
            status: SessionStatus::UpActive,
            phase1_id: Some("172.16.0.1".into()),
            ike_sas: vec![ike("172.16.0.1", 500, 500, true, "D", 1001, 83_988)],
            flows: vec![flow(
                "172.16.0.1",
                (1118, 3, 1120, 0),
                (4607999, 98, 4607998, 98),
                0xEA8C83C1,
                "esp-3des esp-md5-hmac",
            )],
        },
        CryptoSession {
            interface: "Tunnel0".into(),
            peer: ip("172.16.0.9"),
            peer_port: 500,
            uptime_secs: None,
            status: SessionStatus::DownNegotiating,
            phase1_id: None,
            ike_sas: vec![ike("172.16.0.9", 500, 500, false, "D", 1003, 86_398)],
            flows: Vec::new(),
        },
        CryptoSession {
            interface: "Tunnel0".into(),
            peer: ip("172.16.9.2"),
            peer_port: 4500,
            uptime_secs: Some(SHORTCUT_AGE),
            status: SessionStatus::UpActive,
            phase1_id: Some("172.16.9.2".into()),
            ike_sas: vec![ike("172.16.9.2", 4500, 4500, true, "DN", 1002, 86_317)],
            flows: vec![flow(
                "172.16.9.2",
                (174, 0, 176, 0),
                (4607990, 37, 4607989, 37),
                0x0B7C41E9,
                "esp-256-aes esp-sha-hmac",
            )],
        },
    ]
}

pub fn dmvpn_detail() -> DmvpnDetail {
    DmvpnDetail {
        interfaces: dmvpn(),
        nhs: nhs(),
        sessions: sessions(),
    }
}

/// A reload of the hub's file that moved its control socket and key log,
/// changed its tunnel MTU and holding time and added a static mapping;
/// the file is readable by others.
pub fn reload_report() -> ReloadReport {
    let file = "/etc/dmvpn/dmvpnd.toml";
    let change = |key: &str, effect: &str| ConfigChange {
        key: key.into(),
        effect: effect.into(),
    };
    ReloadReport {
        file: file.into(),
        changes: vec![
            change("control.socket", "applied now"),
            change("log.key_log", "for new negotiations"),
            change("tunnel[0].mtu", "applied now"),
            change("tunnel[0].nhrp.holdtime", "from the next registration"),
            change("tunnel[0].nhrp.map", "applied now"),
        ],
        warnings: vec![format!(
            "{file}:1:1: warning: file holds keys and {file} has mode 0644: \
             readable by group or others (chmod 600 {file})"
        )],
    }
}

/// What the test daemon answers: fixtures for `show`, echoes for the rest.
pub fn answer(req: Request) -> Response {
    Response::Ok(match req {
        Request::ShowNhrp => Reply::Nhrp(nhrp()),
        Request::ShowIpv6Nhrp => Reply::Nhrp(Vec::new()),
        Request::ShowNhrpNhs => Reply::NhrpNhs(nhs()),
        Request::ShowNhrpTraffic => Reply::NhrpTraffic(nhrp_traffic()),
        Request::ShowDmvpn => Reply::Dmvpn(dmvpn()),
        Request::ShowDmvpnDetail => Reply::DmvpnDetail(dmvpn_detail()),
        Request::ShowCryptoIsakmpSa => Reply::IsakmpSa(isakmp()),
        Request::ShowCryptoIpsecSa => Reply::IpsecSa(ipsec()),
        Request::ShowCryptoSession => Reply::CryptoSession(sessions()),
        Request::ClearNhrp => Reply::Cleared { count: 2 },
        Request::ClearNhrpEntry { .. } => Reply::Cleared { count: 1 },
        Request::ClearCryptoSa { peer: None } | Request::ClearCryptoSession { remote: None } => {
            Reply::Cleared { count: 3 }
        }
        Request::ClearCryptoSa { peer: Some(p) }
        | Request::ClearCryptoSession { remote: Some(p) }
            if p == ip("172.16.0.1") =>
        {
            Reply::Cleared { count: 1 }
        }
        Request::ClearCryptoSa { peer: Some(p) }
        | Request::ClearCryptoSession { remote: Some(p) } => {
            return Response::error(format!("no SA with peer {p}"));
        }
        Request::Debug { target, on } => Reply::Debug { target, on },
        Request::Reload => Reply::Reloaded(reload_report()),
        Request::ShowStats => Reply::Stats(stats()),
    })
}

/// A control server on a socket in a fresh temporary directory, served by
/// its own runtime's worker thread (so the test thread may block).
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

pub fn start<H: dmvpn_agent::runtime::control_socket::Handler>(handler: H) -> TestServer {
    start_with(handler, None)
}

/// Like [`start`], with the socket given to `group` (mode 0660).
pub fn start_with<H: dmvpn_agent::runtime::control_socket::Handler>(
    handler: H,
    group: Option<String>,
) -> TestServer {
    use dmvpn_agent::runtime::control_socket::{ControlSocket, SocketOptions, serve};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A parent that does not exist yet: bind creates it.
    let path = dir.path().join("run/dmvpnd.sock");
    let mut opts = SocketOptions::new(&path);
    opts.group = group;
    let socket = ControlSocket::bind(&opts).unwrap();
    rt.spawn(serve(socket, handler));
    TestServer { rt, dir, path }
}

pub fn start_fixture() -> TestServer {
    start(dmvpn_agent::runtime::control_socket::FnHandler(answer))
}
