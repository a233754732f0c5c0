//! Sealing and opening on 1 and 2 threads through shared SAs: pre-built
//! 1400-byte payloads, each thread sealing one with an outbound SA and
//! opening the result with the matching inbound SA, as a forwarding
//! worker does for each packet it sends and receives. Two layouts:
//! `shared`, every thread on one SA pair (one peer: the sequence counter
//! and replay window are contended), and `per-peer`, each thread on its
//! own pair (a hub's peers spread over the workers).
//!
//! `cargo bench -p dmvpn-node --bench workers` prints packets per second
//! (median of 5 rounds) for each case and the 2-thread/1-thread ratio.
//! On a 2-core machine the ratio is bounded by 2 and by whatever else
//! the machine runs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use dmvpn_node::datapath::esp::{AuthAlg, EncAlg};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams};

const PAYLOAD: usize = 1400;
/// Distinct payloads each thread cycles through.
const DISTINCT: usize = 64;
/// Packets (one seal and one open each) per thread per round.
const PER_THREAD: usize = 100_000;
const ROUNDS: usize = 5;

type Pair = (Arc<OutboundSa>, Arc<InboundSa>);

fn pair(enc: EncAlg, auth: AuthAlg, spi: u32) -> Pair {
    let ek: Vec<u8> = (0..enc.key_len() as u8).map(|i| 0x11 + i).collect();
    let ak = vec![0x22u8; auth.key_len()];
    let p = SaParams {
        spi,
        peer: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)),
        mode: Mode::Transport,
        enc,
        enc_key: &ek,
        auth,
        auth_key: &ak,
        lifetime_kb: None,
    };
    (
        Arc::new(OutboundSa::new(&p, &[0x33; 24]).expect("keys")),
        Arc::new(InboundSa::new(&p).expect("keys")),
    )
}

/// One round on `pairs.len()` threads, thread `t` on `pairs[t]`: packets
/// per second over all threads, and packets the replay window refused.
/// On a shared pair that happens when a thread is preempted between its
/// seal and its open for longer than the other takes to move the window
/// past its packet (1024 packets): the same as a packet delayed that long
/// on the wire.
fn round(pairs: &[Pair]) -> (f64, usize) {
    let start = Arc::new(Barrier::new(pairs.len() + 1));
    let threads: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(t, (out, inb))| {
            let (out, inb, start) = (Arc::clone(out), Arc::clone(inb), Arc::clone(&start));
            std::thread::spawn(move || {
                let payloads: Vec<Vec<u8>> = (0..DISTINCT)
                    .map(|i| vec![(t * DISTINCT + i) as u8; PAYLOAD])
                    .collect();
                let (mut sealed, mut plain) = (vec![0u8; 2048], vec![0u8; 2048]);
                let mut refused = 0;
                start.wait();
                for i in 0..PER_THREAD {
                    let n = out
                        .seal(47, &payloads[i % DISTINCT], &mut sealed)
                        .expect("seal");
                    match inb.open(&sealed[..n], &mut plain) {
                        Ok(o) => {
                            black_box(o.len);
                        }
                        Err(_) => refused += 1,
                    }
                }
                refused
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let refused: usize = threads.into_iter().map(|h| h.join().expect("worker")).sum();
    let secs = t0.elapsed().as_secs_f64();
    ((pairs.len() * PER_THREAD) as f64 / secs, refused)
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
        "workers: seal + open of {PAYLOAD}-byte payloads, {PER_THREAD} per thread, median of {rounds}"
    );
    println!(
        "{:<12} {:<9} {:>14} {:>14} {:>7}",
        "transform", "SAs", "1 thread/s", "2 threads/s", "ratio"
    );
    for (name, enc, auth) in [
        ("aes128-sha1", EncAlg::AesCbc128, AuthAlg::HmacSha1_96),
        ("aes128gcm16", EncAlg::AesGcm128, AuthAlg::None),
    ] {
        for layout in ["shared", "per-peer"] {
            let mut rates = [0.0f64; 2];
            let mut refused_total = 0;
            for (k, threads) in [1usize, 2].into_iter().enumerate() {
                let mut per_round = Vec::new();
                for _ in 0..rounds {
                    let one = pair(enc, auth, 0x1000);
                    let pairs: Vec<Pair> = (0..threads)
                        .map(|t| match layout {
                            "shared" => (Arc::clone(&one.0), Arc::clone(&one.1)),
                            _ => pair(enc, auth, 0x2000 + t as u32),
                        })
                        .collect();
                    let (rate, refused) = round(&pairs);
                    refused_total += refused;
                    per_round.push(rate);
                }
                rates[k] = median(per_round);
            }
            println!(
                "{name:<12} {layout:<9} {:>14.0} {:>14.0} {:>6.2}x {refused_total:>8}",
                rates[0],
                rates[1],
                rates[1] / rates[0]
            );
        }
    }
}
