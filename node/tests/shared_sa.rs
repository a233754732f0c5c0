//! SAs shared by several forwarding threads: sequence numbers stay unique
//! and strictly increasing per thread, the receiver's replay window never
//! refuses a fresh packet and always refuses a replayed one, and a packet
//! opened by two threads at once is accepted exactly once (however the
//! threads interleave; the window's `accept` makes it so whatever the
//! timing, and has its own unit test).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::thread;

use dmvpn_node::datapath::esp::{AuthAlg, EncAlg, EspDrop, parse_header};
use dmvpn_node::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2));
const THREADS: usize = 2;
/// Per thread; all of them fit the 1024-packet replay window.
const PACKETS: usize = 500;

fn params(enc: EncAlg, auth: AuthAlg) -> (Vec<u8>, Vec<u8>) {
    (
        (0..enc.key_len() as u8).map(|i| 0x11 + i).collect(),
        vec![0x22; auth.key_len()],
    )
}

fn pair(enc: EncAlg, auth: AuthAlg) -> (Arc<OutboundSa>, Arc<InboundSa>) {
    let (ek, ak) = params(enc, auth);
    let p = SaParams {
        spi: 0x1001,
        peer: PEER,
        mode: Mode::Transport,
        enc,
        enc_key: &ek,
        auth,
        auth_key: &ak,
        lifetime_kb: None,
    };
    (
        Arc::new(OutboundSa::new(&p, &[0x33; 24]).unwrap()),
        Arc::new(InboundSa::new(&p).unwrap()),
    )
}

/// Runs `f(thread index)` on [`THREADS`] threads started together.
fn on_threads<T: Send + 'static>(f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (f, start) = (Arc::clone(&f), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                f(t)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Each thread seals [`PACKETS`] packets through the one outbound SA.
fn seal_on_threads(out: &Arc<OutboundSa>) -> Vec<Vec<Vec<u8>>> {
    let out = Arc::clone(out);
    on_threads(move |t| {
        (0..PACKETS)
            .map(|i| {
                let payload = [t as u8, (i >> 8) as u8, i as u8, 0x5a].repeat(350);
                let mut buf = vec![0u8; 2048];
                let n = out.seal(47, &payload, &mut buf).unwrap();
                buf.truncate(n);
                buf
            })
            .collect()
    })
}

fn seq(pkt: &[u8]) -> u32 {
    parse_header(pkt).unwrap().1
}

fn check(enc: EncAlg, auth: AuthAlg) {
    let (out, inb) = pair(enc, auth);
    let sealed = seal_on_threads(&out);

    // Unique numbers 1..=N, strictly increasing within each thread.
    for per_thread in &sealed {
        let s: Vec<u32> = per_thread.iter().map(|p| seq(p)).collect();
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{enc:?}: not increasing");
    }
    let mut all: Vec<u32> = sealed.iter().flatten().map(|p| seq(p)).collect();
    all.sort_unstable();
    let want: Vec<u32> = (1..=(THREADS * PACKETS) as u32).collect();
    assert_eq!(all, want, "{enc:?}: sequence numbers reused or skipped");
    assert_eq!(out.seq(), (THREADS * PACKETS) as u64);

    // Each thread opens what it sealed, concurrently and so out of order
    // for the shared window: every fresh packet is accepted and intact.
    let sealed = Arc::new(sealed);
    let (s, i) = (Arc::clone(&sealed), Arc::clone(&inb));
    let refused: Vec<usize> = on_threads(move |t| {
        let mut plain = vec![0u8; 2048];
        let mut refused = 0;
        for (k, p) in s[t].iter().enumerate() {
            match i.open(p, &mut plain) {
                Ok(o) => {
                    let want = [t as u8, (k >> 8) as u8, k as u8, 0x5a].repeat(350);
                    assert_eq!(&plain[..o.len], &want[..], "payload intact");
                }
                Err(_) => refused += 1,
            }
        }
        refused
    });
    assert_eq!(refused, vec![0; THREADS], "{enc:?}: fresh packets refused");
    assert_eq!(inb.highest_seq(), (THREADS * PACKETS) as u32);

    // Every packet again, each thread the other's: all replays.
    let (s, i) = (Arc::clone(&sealed), Arc::clone(&inb));
    let accepted: Vec<usize> = on_threads(move |t| {
        let mut plain = vec![0u8; 2048];
        s[(t + 1) % THREADS]
            .iter()
            .filter(|p| match i.open(p, &mut plain) {
                Err(EspDrop::Replay) => false,
                other => panic!("replayed packet: {other:?}"),
            })
            .count()
    });
    assert_eq!(accepted, vec![0; THREADS]);
}

#[test]
fn shared_sas_keep_sequence_and_replay_protection_aes_sha1() {
    check(EncAlg::AesCbc128, AuthAlg::HmacSha1_96);
}

#[test]
fn shared_sas_keep_sequence_and_replay_protection_gcm() {
    check(EncAlg::AesGcm128, AuthAlg::None);
}

#[test]
fn a_packet_opened_by_two_threads_at_once_is_accepted_once() {
    let (out, inb) = pair(EncAlg::AesCbc128, AuthAlg::HmacSha1_96);
    let sealed: Arc<Vec<Vec<u8>>> = Arc::new(seal_on_threads(&out).concat());
    let (s, i) = (Arc::clone(&sealed), Arc::clone(&inb));
    let step = Arc::new(Barrier::new(THREADS));
    // Both threads open every packet, in step: each packet at the same time.
    let accepted: Vec<usize> = on_threads(move |_| {
        let mut plain = vec![0u8; 2048];
        s.iter()
            .filter(|p| {
                step.wait();
                match i.open(p, &mut plain) {
                    Ok(_) => true,
                    Err(EspDrop::Replay) => false,
                    Err(e) => panic!("{e:?}"),
                }
            })
            .count()
    });
    assert_eq!(accepted.iter().sum::<usize>(), sealed.len(), "{accepted:?}");
}
