//! Hostile bytes into every receive path of the data plane: raw GRE and
//! ESP packets (with and without a valid SA), NAT-T datagrams, inner
//! packets from the TUN (MTU handling, fragmentation), and bare parsers.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use dmvpn_node::datapath::esp::{AuthAlg, EncAlg, Transform};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, SaParams, Sadb};
use dmvpn_node::datapath::{gre, mtu};
use dmvpn_wire::Ipv4Packet;
use dmvpn_node::engine::{DataplaneConfig, Engine, Peer, PeerMap, Protection};
use libfuzzer_sys::fuzz_target;

const PEER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

/// Key bytes that step by 37 from `start`: every 8-byte part differs from
/// the others and none is a DES weak or semi-weak key (those repeat one or
/// two byte values), so the data plane always accepts them.
fn key(len: usize, start: u8) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add((i as u8).wrapping_mul(37))).collect()
}

fn engine() -> Engine {
    let mut sadb = Sadb::new();
    for (spi, enc, auth) in [
        (0x100, EncAlg::AesCbc128, AuthAlg::None),
        (0x200, EncAlg::AesGcm128, AuthAlg::None),
        (0x300, EncAlg::Des3Cbc, AuthAlg::HmacMd5_96),
    ] {
        let (ek, ak) = (key(enc.key_len(), 11), key(auth.key_len(), 97));
        let p = SaParams {
            spi,
            peer: IpAddr::V4(PEER),
            mode: Mode::Transport,
            enc,
            enc_key: &ek,
            auth,
            auth_key: &ak,
            lifetime_kb: None,
        };
        sadb.insert_inbound(InboundSa::new(&p).unwrap());
    }
    let mut map = PeerMap::new();
    map.insert(
        Ipv4Addr::new(192, 168, 1, 0),
        24,
        Peer {
            nbma: PEER,
            protection: Protection::None,
        },
    );
    let cfg = DataplaneConfig {
        local_nbma: Ipv4Addr::new(172, 16, 0, 1),
        tunnel_addr: Ipv4Addr::new(192, 168, 1, 1),
        tunnel_addr_v6: Some(std::net::Ipv6Addr::LOCALHOST),
        mtu: 576,
        gre_key: Some(1),
        outer_ttl: 255,
        natt_port: Some(4500),
        require_protection: false,
    };
    Engine::new(cfg, sadb, map)
}

thread_local! {
    /// One engine for the whole run: building one (its send batches, SA
    /// key schedules) costs more than most inputs. Its queues are emptied
    /// after each input; SA replay windows and counters carry over, which
    /// only widens what later inputs meet.
    static ENGINE: std::cell::RefCell<Engine> = std::cell::RefCell::new(engine());
}

fuzz_target!(|data: &[u8]| {
    ENGINE.with(|e| {
        let mut e = e.borrow_mut();
        run(&mut e, data);
        let b = e.batches();
        b.gre.clear();
        b.esp.clear();
        b.udp.clear();
        b.tun.clear();
        while e.poll_event().is_some() {}
        e.discard_pending(PEER);
    });
});

fn run(e: &mut Engine, data: &[u8]) {
    e.inbound_gre_ip(data);
    e.inbound_esp_ip(data);
    e.inbound_udp(data, SocketAddrV4::new(PEER, 4500));
    e.outbound(data);
    // ESP with a valid SPI, so the transform's open runs on the rest.
    for spi in [0x100u32, 0x200, 0x300] {
        let mut esp = spi.to_be_bytes().to_vec();
        esp.extend_from_slice(data);
        e.inbound_udp(&esp, SocketAddrV4::new(PEER, 4500));
    }
    let t = Transform::new(EncAlg::AesCbc256, &[1; 32], AuthAlg::None, &[]).unwrap();
    let mut out = [0u8; 4096];
    let _ = t.open(data, &mut out);
    let _ = gre::decap(data, None);
    let _ = Ipv4Packet::new_checked(data);
    let _ = mtu::fragment_ipv4(data, 68, &mut out, |_| {});
}
