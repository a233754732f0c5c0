//! Forwarding on 1 and 2 threads the way dmvpnd's workers do: each thread
//! drives its own replica of a sending node's engine and of a receiving
//! node's ([`Engine::replica`]), sharing the primaries' SAs. Pre-built
//! 1400-byte inner packets go through the sender's outbound path (route
//! look-up, GRE, ESP seal into a send batch) and the receiver's inbound
//! path (ESP open with the replay window, GRE, into the TUN batch). Two
//! layouts: `shared`, every thread sending to one peer (one SA pair: the
//! sequence counter, replay window and SA counters are contended), and
//! `per-peer`, each thread to its own peer (a hub's spokes spread over
//! its workers).
//!
//! `cargo bench -p dmvpn-node --bench workers` prints packets per second
//! (median of 5 rounds) for each case and the 2-thread/1-thread ratio.
//! On a 2-core machine the ratio is bounded by 2 and by whatever else
//! the machine runs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use dmvpn_node::datapath::esp::{AuthAlg, EncAlg};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams, Sadb};
use dmvpn_node::engine::{DataplaneConfig, Engine, Peer, PeerMap, Protection, WorkerPolicy};
use dmvpn_wire::Ipv4Repr;

const INNER: usize = 1400;
/// Inner packets per thread per round.
const PER_THREAD: usize = 100_000;
const ROUNDS: usize = 5;
const SENDER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);

fn config(local: Ipv4Addr) -> DataplaneConfig {
    DataplaneConfig {
        local_nbma: local,
        tunnel_addr: Ipv4Addr::new(192, 168, 1, 1),
        tunnel_addr_v6: None,
        mtu: 1400,
        gre_key: None,
        outer_ttl: 255,
        natt_port: None,
        require_protection: true,
    }
}

fn params(
    enc: EncAlg,
    auth: AuthAlg,
    spi: u32,
    peer: Ipv4Addr,
    keys: &(Vec<u8>, Vec<u8>),
) -> SaParams<'_> {
    SaParams {
        spi,
        peer: IpAddr::V4(peer),
        mode: Mode::Transport,
        enc,
        enc_key: &keys.0,
        auth,
        auth_key: &keys.1,
        lifetime_kb: None,
    }
}

/// The sending and receiving primaries: peer `t` (172.16.1.t) owns
/// 10.2.t.0/24, one SA pair per peer.
fn primaries(enc: EncAlg, auth: AuthAlg, peers: usize) -> (Engine, Vec<Engine>) {
    let keys = (
        (0..enc.key_len() as u8)
            .map(|i| 0x11 + i)
            .collect::<Vec<u8>>(),
        vec![0x22u8; auth.key_len()],
    );
    let mut map = PeerMap::new();
    let mut sadb = Sadb::new();
    let mut receivers = Vec::new();
    for t in 0..peers {
        let nbma = Ipv4Addr::new(172, 16, 1, t as u8 + 1);
        let spi = 0x1000 + t as u32;
        map.insert(
            Ipv4Addr::new(10, 2, t as u8, 0),
            24,
            Peer {
                nbma,
                protection: Protection::Esp,
            },
        );
        sadb.insert_outbound(
            OutboundSa::new(&params(enc, auth, spi, nbma, &keys), &[0x33; 24]).expect("keys"),
        );
        let mut rx = Sadb::new();
        rx.insert_inbound(InboundSa::new(&params(enc, auth, spi, SENDER, &keys)).expect("keys"));
        let mut r = Engine::new(config(nbma), rx, PeerMap::new());
        r.enable_replication();
        receivers.push(r);
    }
    let mut s = Engine::new(config(SENDER), sadb, map);
    s.enable_replication();
    (s, receivers)
}

fn inner(dst: Ipv4Addr, i: usize) -> Vec<u8> {
    let mut p = vec![i as u8; INNER];
    Ipv4Repr {
        src: Ipv4Addr::new(10, 1, 0, 1),
        dst,
        protocol: 17,
        tos: 0,
        ttl: 64,
        ident: i as u16,
        flags_frag: 0,
        payload_len: INNER - 20,
    }
    .emit(&mut p)
    .expect("header");
    p
}

/// One round on `threads` threads, thread `t` sending to peer `peer(t)`
/// through its own replicas: packets per second delivered over all
/// threads, and packets the receivers' replay windows refused (a thread
/// preempted between seal and open for longer than the other takes to
/// move a shared window 1024 packets on: as a packet delayed that long
/// on the wire).
fn round(enc: EncAlg, auth: AuthAlg, threads: usize, shared: bool) -> (f64, u64) {
    let peers = if shared { 1 } else { threads };
    let (sender, receivers) = primaries(enc, auth, peers);
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = if shared { 0 } else { t };
            let mut tx = sender.replica(WorkerPolicy::default());
            let mut rx = receivers[p].replica(WorkerPolicy::default());
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let packets: Vec<Vec<u8>> = (0..64)
                    .map(|i| inner(Ipv4Addr::new(10, 2, p as u8, 9), i))
                    .collect();
                let mut delivered = 0u64;
                start.wait();
                let mut i = 0;
                while i < PER_THREAD {
                    for _ in 0..32 {
                        tx.outbound(&packets[i % packets.len()]);
                        i += 1;
                    }
                    let b = tx.batches();
                    for k in 0..b.esp.len() {
                        rx.inbound_esp_ip(b.esp.get(k));
                    }
                    b.esp.clear();
                    let r = rx.batches();
                    delivered += r.tun.len() as u64;
                    r.tun.clear();
                }
                (
                    delivered,
                    rx.stats()
                        .sas
                        .iter()
                        .map(|s| s.counters.replay_failed)
                        .sum::<u64>(),
                )
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let results: Vec<(u64, u64)> = handles
        .into_iter()
        .map(|h| h.join().expect("worker"))
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    let delivered: u64 = results.iter().map(|r| r.0).sum();
    // Shared SA counters: every thread sees the same total.
    let refused = results.iter().map(|r| r.1).max().unwrap_or(0);
    (delivered as f64 / secs, refused)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent:
    // one short round then, to check that it works.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    println!(
        "workers: {INNER}-byte inner packets sealed by a sender's engine replica and opened by a receiver's, {PER_THREAD} per thread, median of {rounds}"
    );
    println!(
        "{:<12} {:<9} {:>14} {:>14} {:>7} {:>8}",
        "transform", "SAs", "1 thread/s", "2 threads/s", "ratio", "refused"
    );
    for (name, enc, auth) in [
        ("aes128-sha1", EncAlg::AesCbc128, AuthAlg::HmacSha1_96),
        ("aes128gcm16", EncAlg::AesGcm128, AuthAlg::None),
    ] {
        for shared in [true, false] {
            let mut rates = [0.0f64; 2];
            let mut refused_total = 0;
            for (k, threads) in [1usize, 2].into_iter().enumerate() {
                let mut per_round = Vec::new();
                for _ in 0..rounds {
                    let (rate, refused) = round(enc, auth, threads, shared);
                    refused_total += refused;
                    per_round.push(rate);
                }
                rates[k] = median(per_round);
            }
            let layout = if shared { "shared" } else { "per-peer" };
            println!(
                "{name:<12} {layout:<9} {:>14.0} {:>14.0} {:>6.2}x {refused_total:>8}",
                rates[0],
                rates[1],
                rates[1] / rates[0]
            );
        }
    }
}
