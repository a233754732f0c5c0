//! After authentication: a real Main Mode + Quick Mode between two
//! endpoints (fixed PSK and RNG seeds), then the fuzzer's bytes as a
//! script against the responder: Quick Mode and informational payload
//! chains encrypted under the real phase 1 keys (with a valid HASH(1)
//! unless the script says otherwise, IVs derived or chained as a peer
//! would), raw datagrams, and timer advances. The initiator stays on the
//! wire, so the responder's answers reach it too.
#![no_main]
use dmvpn_ike::crypto::{Cipher, EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use dmvpn_ike::Instant;

const QUICK: u8 = 32;
const INFORMATIONAL: u8 = 5;
const HASH: u8 = 8;

fn cfg() -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes128,
            hash: HashAlg::Sha1,
            group: GroupId::Modp768,
            lifetime: 600,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(128),
                integ: Some(HashAlg::Sha1),
            },
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry::new("0.0.0.0".parse().unwrap(), 0, b"fuzz-psk")],
        sa_lifetime_secs: 300,
        dpd: Some(DpdConfig {
            interval: Duration::from_secs(10),
            retry: Duration::from_secs(2),
            max_retries: 3,
        }),
        ..Default::default()
    }
}

struct Harness {
    a: Endpoint<ChaCha20Rng>,
    b: Endpoint<ChaCha20Rng>,
    la: SocketAddr,
    lb: SocketAddr,
    now: Instant,
    /// IV for our next message of an exchange: the last block of the
    /// responder's latest message with that M-ID.
    next_iv: HashMap<u32, Vec<u8>>,
    last_mid: Option<u32>,
}

fn ep(seed: u64, base: u32) -> Endpoint<ChaCha20Rng> {
    let mut n = base;
    Endpoint::new(
        cfg(),
        ChaCha20Rng::seed_from_u64(seed),
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

fn spis(base: u32) -> Box<dyn SpiAllocator + Send> {
    let mut n = base;
    Box::new(move || {
        n += 1;
        n
    })
}

/// The endpoints right after the handshake, made once.
static SNAPSHOT: OnceLock<Mutex<(Endpoint<ChaCha20Rng>, Endpoint<ChaCha20Rng>, Instant)>> =
    OnceLock::new();

impl Harness {
    /// Both endpoints as the handshake left them, for every input alike.
    fn new() -> Harness {
        let snap = SNAPSHOT.get_or_init(|| {
            let h = Harness::handshake();
            Mutex::new((h.a, h.b, h.now))
        });
        let g = snap.lock().unwrap();
        Harness {
            a: g.0.fuzz_clone(spis(0x1000)),
            b: g.1.fuzz_clone(spis(0x2000)),
            la: "172.16.0.1:500".parse().unwrap(),
            lb: "172.16.0.2:500".parse().unwrap(),
            now: g.2,
            next_iv: HashMap::new(),
            last_mid: None,
        }
    }

    fn handshake() -> Harness {
        let mut h = Harness {
            a: ep(1, 0x100),
            b: ep(2, 0x200),
            la: "172.16.0.1:500".parse().unwrap(),
            lb: "172.16.0.2:500".parse().unwrap(),
            now: Instant::from_secs(1),
            next_iv: HashMap::new(),
            last_mid: None,
        };
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(h.la.ip())),
            remote_proxy: Some(gre_proxy(h.lb.ip())),
        };
        h.a.initiate_phase2(h.now, h.la, h.lb, req).unwrap();
        h.pump();
        assert_eq!(h.b.child_sas().len(), 1, "set-up handshake failed");
        h
    }

    /// Shuttle datagrams until quiet (bounded: a fuzzed state may loop).
    fn pump(&mut self) {
        for _ in 0..50 {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                let _ = self.b.handle(self.now, t.remote, t.local, &t.payload);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                self.note_reply(&t.payload);
                let _ = self.a.handle(self.now, t.remote, t.local, &t.payload);
            }
            while self.a.poll_event().is_some() {}
            while self.b.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    /// Remember the last block of an encrypted message from the responder.
    fn note_reply(&mut self, p: &[u8]) {
        let p = if p.len() > 4 && p[..4] == [0; 4] {
            &p[4..]
        } else {
            p
        };
        if p.len() >= 28 + 16 && p[19] & 1 == 1 {
            let mid = u32::from_be_bytes(p[20..24].try_into().unwrap());
            self.next_iv.insert(mid, p[p.len() - 16..].to_vec());
        }
    }

    /// An encrypted message from the initiator's side to the responder.
    fn inject(&mut self, exchange: u8, mid: u32, chain: &[u8], valid_hash: bool) {
        let Some(id) = self
            .b
            .isakmp_sas()
            .iter()
            .filter(|s| s.state == "QM_IDLE")
            .map(|s| s.id)
            .max()
        else {
            return;
        };
        let Some((k, p1_iv, ic, rc)) = self.b.fuzz_phase1_keys(id) else {
            return;
        };
        let iv = match self.next_iv.get(&mid) {
            Some(iv) => iv.clone(),
            None => dmvpn_ike::keys::message_iv(k.prf, k.encr, p1_iv, mid),
        };
        let (first, rest) = chain.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        let mut hash = dmvpn_ike::keys::hash1(k, mid, rest);
        if !valid_hash {
            hash.reverse();
        }
        let mut body = vec![first, 0];
        body.extend_from_slice(&((4 + hash.len()) as u16).to_be_bytes());
        body.extend_from_slice(&hash);
        body.extend_from_slice(rest);
        let bs = k.encr.block_size();
        let pad = (bs - body.len() % bs) % bs;
        body.extend(std::iter::repeat_n(0u8, pad));
        if k.encr.encrypt(&k.enc_key, &iv, &mut body).is_err() {
            return;
        }
        self.next_iv.insert(mid, body[body.len() - bs..].to_vec());
        let mut msg = Vec::with_capacity(28 + body.len());
        msg.extend_from_slice(&ic);
        msg.extend_from_slice(&rc);
        msg.extend_from_slice(&[HASH, 0x10, exchange, 1]);
        msg.extend_from_slice(&mid.to_be_bytes());
        msg.extend_from_slice(&((28 + body.len()) as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        let _ = self.b.handle(self.now, self.lb, self.la, &msg);
        self.pump();
    }
}

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, r) = self.0.split_first()?;
        self.0 = r;
        Some(*b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, r) = self.0.split_at(n);
        self.0 = r;
        b
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut s = Script(data);
    while let Some(op) = s.u8() {
        match op % 4 {
            0 | 1 => {
                let exchange = if op % 4 == 0 { QUICK } else { INFORMATIONAL };
                let sel = s.u8().unwrap_or(0);
                let mid = match h.last_mid {
                    Some(m) if sel & 0x80 != 0 => m,
                    _ => {
                        let b = s.bytes(4);
                        let mut m = [0u8; 4];
                        m[..b.len()].copy_from_slice(b);
                        u32::from_be_bytes(m).max(1)
                    }
                };
                h.last_mid = Some(mid);
                let len = usize::from(s.u8().unwrap_or(0));
                let chain = s.bytes(len).to_vec();
                h.inject(exchange, mid, &chain, sel & 0x40 == 0);
            }
            2 => {
                let secs = u64::from(s.u8().unwrap_or(1)) * 4;
                h.now += Duration::from_secs(secs);
                let now = h.now;
                h.a.handle_timeout(now);
                h.b.handle_timeout(now);
                h.pump();
            }
            _ => {
                let len = usize::from(s.u8().unwrap_or(0)) * 2;
                let raw = s.bytes(len).to_vec();
                let _ = h.b.handle(h.now, h.lb, h.la, &raw);
                h.pump();
            }
        }
    }
});
