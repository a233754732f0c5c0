//! Fixed snapshots: spoke 192.168.1.3 (NBMA 172.16.0.3) with hub
//! 192.168.1.1 (172.16.0.1) and a shortcut to spoke 192.168.1.2
//! (172.16.0.2, behind NAT as 172.16.9.2), as in the seed topology.
#![allow(dead_code)]

use dmvpn_ctl::proto::*;
use std::net::IpAddr;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn nhrp() -> Vec<NhrpEntry> {
    vec![
        NhrpEntry {
            prefix: ip("10.2.2.0"),
            prefix_len: 24,
            via: Some(ip("192.168.1.2")),
            interface: "Tunnel0".into(),
            created_secs: 83,
            expire_secs: Some(7117),
            entry_type: NhrpEntryType::Dynamic,
            flags: vec![
                NhrpFlag::Used,
                NhrpFlag::Router,
                NhrpFlag::Rib,
                NhrpFlag::Nho,
            ],
            nbma: Some(ip("172.16.9.2")),
            claimed_nbma: Some(ip("172.16.0.2")),
            cache_hits: None,
        },
        NhrpEntry {
            prefix: ip("192.168.1.1"),
            prefix_len: 32,
            via: Some(ip("192.168.1.1")),
            interface: "Tunnel0".into(),
            created_secs: 93_784,
            expire_secs: None,
            entry_type: NhrpEntryType::Static,
            flags: vec![NhrpFlag::Used],
            nbma: Some(ip("172.16.0.1")),
            claimed_nbma: None,
            cache_hits: None,
        },
        NhrpEntry {
            prefix: ip("192.168.1.2"),
            prefix_len: 32,
            via: Some(ip("192.168.1.2")),
            interface: "Tunnel0".into(),
            created_secs: 83,
            expire_secs: Some(7117),
            entry_type: NhrpEntryType::Dynamic,
            flags: vec![
                NhrpFlag::Used,
                NhrpFlag::Router,
                NhrpFlag::Nhop,
                NhrpFlag::Nat,
            ],
            nbma: Some(ip("172.16.9.2")),
            claimed_nbma: Some(ip("172.16.0.2")),
            cache_hits: None,
        },
        NhrpEntry {
            prefix: ip("192.168.1.4"),
            prefix_len: 32,
            via: None,
            interface: "Tunnel0".into(),
            created_secs: 7,
            expire_secs: Some(177),
            entry_type: NhrpEntryType::Incomplete,
            flags: vec![NhrpFlag::Negative],
            nbma: None,
            claimed_nbma: None,
            cache_hits: Some(4),
        },
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
        },
    ]
}

pub fn dmvpn() -> Vec<DmvpnInterface> {
    vec![DmvpnInterface {
        interface: "Tunnel0".into(),
        role: DmvpnRole::Spoke,
        peers: vec![
            DmvpnPeer {
                nbma: ip("172.16.0.1"),
                entries: vec![DmvpnPeerEntry {
                    tunnel: ip("192.168.1.1"),
                    state: DmvpnState::Up,
                    updn_secs: 93_784,
                    attrs: vec![DmvpnAttr::Static],
                }],
            },
            DmvpnPeer {
                nbma: ip("172.16.9.2"),
                entries: vec![
                    DmvpnPeerEntry {
                        tunnel: ip("192.168.1.2"),
                        state: DmvpnState::Up,
                        updn_secs: 83,
                        attrs: vec![DmvpnAttr::RouteInstalled, DmvpnAttr::Dynamic],
                    },
                    DmvpnPeerEntry {
                        tunnel: ip("192.168.1.2"),
                        state: DmvpnState::Up,
                        updn_secs: 83,
                        attrs: vec![
                            DmvpnAttr::Dynamic,
                            DmvpnAttr::Nated,
                            DmvpnAttr::NexthopOverride,
                        ],
                    },
                ],
            },
            DmvpnPeer {
                nbma: ip("172.16.0.4"),
                entries: vec![DmvpnPeerEntry {
                    tunnel: ip("192.168.1.4"),
                    state: DmvpnState::Ike,
                    updn_secs: 5,
                    attrs: vec![DmvpnAttr::Incomplete],
                }],
            },
        ],
    }]
}

pub fn isakmp() -> Vec<IsakmpSa> {
    vec![
        IsakmpSa {
            dst: ip("172.16.0.1"),
            src: ip("172.16.0.3"),
            state: IsakmpState::QmIdle,
            conn_id: 1001,
            status: SaStatus::Active,
            details: Some(IsakmpDetails {
                encryption: "des".into(),
                hash: "md5".into(),
                auth: "psk".into(),
                dh_group: 1,
                lifetime_remaining_secs: 86_388,
                dpd: true,
                nat_t: false,
                aggressive: false,
            }),
        },
        IsakmpSa {
            dst: ip("172.16.0.3"),
            src: ip("172.16.9.2"),
            state: IsakmpState::QmIdle,
            conn_id: 1002,
            status: SaStatus::Active,
            details: Some(IsakmpDetails {
                encryption: "aes:256".into(),
                hash: "sha".into(),
                auth: "psk".into(),
                dh_group: 14,
                lifetime_remaining_secs: 86_317,
                dpd: true,
                nat_t: true,
                aggressive: false,
            }),
        },
        IsakmpSa {
            dst: ip("172.16.0.4"),
            src: ip("172.16.0.3"),
            state: IsakmpState::MmKeyExch,
            conn_id: 1003,
            status: SaStatus::Active,
            details: None,
        },
    ]
}

pub fn ipsec() -> Vec<IpsecPeerSa> {
    let esp = |spi: u32, conn_id: u32, kb: u64, secs: u64| EspSa {
        spi,
        transform: "esp-3des esp-md5-hmac".into(),
        mode: EspMode::Transport,
        conn_id,
        remaining_kb: kb,
        remaining_secs: secs,
        iv_size: 8,
        replay_detection: true,
        status: SaStatus::Active,
    };
    vec![IpsecPeerSa {
        interface: "Tunnel0".into(),
        crypto_map_tag: "Tunnel0-head-0".into(),
        local_addr: ip("172.16.0.3"),
        local_ident: ProxyIdent {
            addr: ip("172.16.0.3"),
            prefix_len: 32,
            protocol: 47,
            port: 0,
        },
        remote_ident: ProxyIdent {
            addr: ip("172.16.0.1"),
            prefix_len: 32,
            protocol: 47,
            port: 0,
        },
        current_peer: ip("172.16.0.1"),
        peer_port: 500,
        counters: IpsecCounters {
            encaps: 1120,
            encrypt: 1120,
            digest: 1120,
            decaps: 1118,
            decrypt: 1118,
            verify: 1118,
            replay_failed: 2,
            verify_failed: 1,
            ..Default::default()
        },
        path_mtu: 1500,
        pfs_dh_group: None,
        inbound: vec![esp(0x6E42707E, 5547, 4607999, 98)],
        outbound: vec![esp(0xEA8C83C1, 5548, 4607998, 98)],
    }]
}

/// What the test daemon answers: fixtures for `show`, echoes for the rest.
pub fn answer(req: Request) -> Response {
    Response::Ok(match req {
        Request::ShowNhrp => Reply::Nhrp(nhrp()),
        Request::ShowNhrpNhs => Reply::NhrpNhs(nhs()),
        Request::ShowDmvpn => Reply::Dmvpn(dmvpn()),
        Request::ShowCryptoIsakmpSa => Reply::IsakmpSa(isakmp()),
        Request::ShowCryptoIpsecSa => Reply::IpsecSa(ipsec()),
        Request::ClearNhrp => Reply::Cleared { count: 2 },
        Request::ClearCryptoSa { peer: None } => Reply::Cleared { count: 3 },
        Request::ClearCryptoSa { peer: Some(p) } if p == ip("172.16.0.1") => {
            Reply::Cleared { count: 1 }
        }
        Request::ClearCryptoSa { peer: Some(p) } => {
            return Response::error(format!("no SA with peer {p}"));
        }
        Request::Debug { target, on } => Reply::Debug { target, on },
    })
}

/// A control server on a socket in a fresh temporary directory, served by
/// its own runtime's worker thread (so the test thread may block).
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

pub fn start<H: dmvpn_ctl::server::Handler>(handler: H) -> TestServer {
    start_with(handler, None)
}

/// Like [`start`], with the socket given to `group` (mode 0660).
pub fn start_with<H: dmvpn_ctl::server::Handler>(handler: H, group: Option<String>) -> TestServer {
    use dmvpn_ctl::server::{ControlSocket, SocketOptions, serve};
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
    start(dmvpn_ctl::server::FnHandler(answer))
}
