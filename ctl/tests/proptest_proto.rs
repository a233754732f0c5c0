//! Requests and snapshots survive the wire; hostile lines never panic;
//! renderers accept any snapshot.

use dmvpn_ctl::proto::*;
use dmvpn_ctl::render;
use proptest::prelude::*;
use std::net::IpAddr;

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn target() -> impl Strategy<Value = DebugTarget> {
    prop::sample::select(DebugTarget::ALL.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::ShowNhrp),
        Just(Request::ShowNhrpNhs),
        Just(Request::ShowNhrpTraffic),
        Just(Request::ShowDmvpn),
        Just(Request::ShowDmvpnDetail),
        Just(Request::ShowCryptoIsakmpSa),
        Just(Request::ShowCryptoIpsecSa),
        Just(Request::ShowCryptoSession),
        Just(Request::ShowStats),
        Just(Request::ClearNhrp),
        Just(Request::Reload),
        (addr(), prop::option::of(any::<u8>())).prop_map(|(address, prefix_len)| {
            Request::ClearNhrpEntry {
                address,
                prefix_len,
            }
        }),
        prop::option::of(addr()).prop_map(|peer| Request::ClearCryptoSa { peer }),
        prop::option::of(addr()).prop_map(|remote| Request::ClearCryptoSession { remote }),
        (target(), any::<bool>()).prop_map(|(target, on)| Request::Debug { target, on }),
    ]
}

fn nhrp_entry() -> impl Strategy<Value = NhrpEntry> {
    let types = prop::sample::select(vec![
        NhrpEntryType::Static,
        NhrpEntryType::Dynamic,
        NhrpEntryType::Incomplete,
        NhrpEntryType::Negative,
    ]);
    let flag = prop::sample::select(vec![
        NhrpFlag::Authoritative,
        NhrpFlag::Implicit,
        NhrpFlag::Unique,
        NhrpFlag::Nat,
        NhrpFlag::Registered,
        NhrpFlag::Used,
        NhrpFlag::Router,
        NhrpFlag::Nhop,
        NhrpFlag::Rib,
        NhrpFlag::Nho,
        NhrpFlag::Negative,
        NhrpFlag::Local,
        NhrpFlag::NoSocket,
    ]);
    (
        (
            addr(),
            any::<u8>(),
            prop::option::of(addr()),
            "[A-Za-z0-9/]{0,12}",
        ),
        (any::<u64>(), prop::option::of(any::<u64>()), types),
        prop::collection::vec(flag, 0..5),
        (
            prop::option::of(addr()),
            prop::option::of(addr()),
            prop::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (prefix, prefix_len, via, interface),
                (created_secs, expire_secs, entry_type),
                flags,
                (nbma, claimed_nbma, cache_hits),
            )| NhrpEntry {
                prefix,
                prefix_len,
                via,
                interface,
                created_secs,
                expire_secs,
                entry_type,
                flags,
                nbma,
                claimed_nbma,
                cache_hits,
            },
        )
}

fn esp_sa() -> impl Strategy<Value = EspSa> {
    (
        any::<u32>(),
        "[a-z0-9 -]{0,30}",
        any::<bool>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(
            |(spi, transform, tunnel, conn_id, kb, secs, iv, replay)| EspSa {
                spi,
                transform,
                mode: if tunnel {
                    EspMode::Tunnel
                } else {
                    EspMode::Transport
                },
                conn_id,
                remaining_kb: kb,
                remaining_secs: secs,
                iv_size: iv,
                replay_detection: replay,
                status: SaStatus::Active,
            },
        )
}

fn ipsec_peer() -> impl Strategy<Value = IpsecPeerSa> {
    let ident = || {
        (addr(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
            |(addr, prefix_len, protocol, port)| ProxyIdent {
                addr,
                prefix_len,
                protocol,
                port,
            },
        )
    };
    (
        (
            "Tunnel[0-9]",
            addr(),
            ident(),
            ident(),
            addr(),
            any::<u16>(),
        ),
        (
            prop::array::uniform18(any::<u64>()),
            any::<u32>(),
            prop::option::of(any::<u16>()),
        ),
        prop::collection::vec(esp_sa(), 0..3),
        prop::collection::vec(esp_sa(), 0..3),
    )
        .prop_map(
            |(
                (interface, local_addr, local_ident, remote_ident, current_peer, peer_port),
                (c, path_mtu, pfs_dh_group),
                inbound,
                outbound,
            )| {
                IpsecPeerSa {
                    crypto_map_tag: format!("{interface}-head-0"),
                    interface,
                    local_addr,
                    local_ident,
                    remote_ident,
                    current_peer,
                    peer_port,
                    counters: IpsecCounters {
                        encaps: c[0],
                        encrypt: c[1],
                        digest: c[2],
                        decaps: c[3],
                        decrypt: c[4],
                        verify: c[5],
                        compressed: c[6],
                        decompressed: c[7],
                        not_compressed: c[8],
                        compr_failed: c[9],
                        not_decompressed: c[10],
                        decompress_failed: c[11],
                        send_errors: c[12],
                        recv_errors: c[13],
                        replay_failed: c[14],
                        verify_failed: c[15],
                        bytes_in: c[16],
                        bytes_out: c[17],
                    },
                    path_mtu,
                    pfs_dh_group,
                    inbound,
                    outbound,
                }
            },
        )
}

#[test]
fn empty_and_oversized_lines_are_refused() {
    assert_eq!(parse_request(b" \t"), Err(RequestError::Empty));
    let long = format!("{{\"cmd\":\"{}\"}}", "a".repeat(MAX_REQUEST_LEN));
    assert_eq!(
        parse_request(long.as_bytes()),
        Err(RequestError::TooLong { len: long.len() })
    );
    assert_eq!(
        parse_request(b"{\"cmd\":\"show_dmvpn\"")
            .unwrap_err()
            .to_string(),
        "bad request: not a JSON object (column 19: EOF while parsing an object at line 1 column 19)"
    );
}

proptest! {
    #[test]
    fn request_round_trip(req in request()) {
        let line = serde_json::to_vec(&req).unwrap();
        prop_assert!(!line.contains(&b'\n'));
        prop_assert_eq!(parse_request(&line), Ok(req));
    }

    #[test]
    fn hostile_lines_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(req) = parse_request(&bytes) {
            let again = serde_json::to_vec(&req).unwrap();
            prop_assert_eq!(parse_request(&again), Ok(req));
        }
    }

    #[test]
    fn refusals_say_why(cmd in "[a-z_]{1,20}", junk in "[!-z|-~][ -~]{0,30}") {
        let unknown = format!("{{\"cmd\":\"x{cmd}\"}}");
        let is_unknown = matches!(parse_request(unknown.as_bytes()), Err(RequestError::Unknown { .. }));
        prop_assert!(is_unknown);
        let is_not_json = matches!(parse_request(junk.as_bytes()), Err(RequestError::NotJson { .. }));
        prop_assert!(is_not_json, "{junk}");
    }

    #[test]
    fn json_like_lines_never_panic(s in r#"\{"cmd":"[a-z_]{0,20}"(,"[a-z]{1,6}":("[a-z0-9.:]{0,12}"|true|null|[0-9]{1,3}))?\}"#) {
        let _ = parse_request(s.as_bytes());
    }

    #[test]
    fn nhrp_round_trip_and_render(entries in prop::collection::vec(nhrp_entry(), 0..6)) {
        let resp = Response::Ok(Reply::Nhrp(entries.clone()));
        let line = serde_json::to_string(&resp).unwrap();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
        let text = render::nhrp(&entries);
        prop_assert!(text.lines().all(|l| l == l.trim_end()));
        prop_assert_eq!(text.lines().filter(|l| l.contains("Type: ")).count(), entries.len());
    }

    #[test]
    fn nhrp_brief_renders_any_entry(entries in prop::collection::vec(nhrp_entry(), 0..6)) {
        let text = render::nhrp_brief(&entries);
        prop_assert!(text.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn ipsec_round_trip_and_render(peers in prop::collection::vec(ipsec_peer(), 0..4)) {
        let report = IpsecSaReport { interfaces: Vec::new(), peers: peers.clone() };
        let resp = Response::Ok(Reply::IpsecSa(report.clone()));
        let line = serde_json::to_string(&resp).unwrap();
        prop_assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
        let text = render::ipsec_sa(&report);
        let spis = peers.iter().map(|p| p.inbound.len() + p.outbound.len()).sum::<usize>();
        prop_assert_eq!(text.matches("      spi: 0x").count(), spis);
    }
}
