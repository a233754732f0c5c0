//! A hostile peer in every state of every exchange: two endpoints negotiate
//! for real (Main or Aggressive Mode, then Quick Mode, with or without PFS
//! and NAT-T), the run stops after any datagram, and a peer that holds the
//! pre-shared key (as every spoke of a DMVPN with a group key does) sends
//! what it likes to either side: messages forged from scratch or made from
//! the next real one with payloads removed, duplicated, reordered, replaced
//! or altered, encrypted under the real keys with a valid HASH (or not);
//! old datagrams replayed, bytes flipped, time advanced. Then the real run
//! goes on through retransmissions, lifetimes, rekeys and DPD. Nothing may
//! panic, and the SA indexes must agree with the SAs throughout.
//!
//! The forger reads the receiving endpoint's own state (keys, IVs, nonces,
//! cookies) to encrypt and hash exactly as a peer that knows the key would.

use crate::Instant;
use crate::crypto::{DhGroup, EncrAlg, GroupId, HashAlg};
use crate::endpoint::{Endpoint, NATT_PORT, Phase1, QuickMode, Transmit};
use crate::keys::{self, Phase1Keys};
use crate::policy::{
    DpdConfig, EngineConfig, EspEncr, EspTransform, IkePolicy, InitiateMode, Mode, NatTMode,
    OfferedP2, PskEntry, TransformSet, encode_p2, gre_proxy,
};
use crate::state::{Handshake, P1State, QmStage, QmState};
use crate::wire::consts::{encap, exchange, flags, notify, p1attr, p2attr, proto};
use crate::wire::vendor::Vendor;
use crate::wire::{
    self, AttrValue, Attribute, DeletePayload, Header, IdPayload, Identity, NotifyPayload, Payload,
    Proposal, SaPayload, Transform,
};
use crate::{Phase2Request, SaId};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

type Ep = Endpoint<ChaCha20Rng>;

// --- What the forger reads from an endpoint's SAs. ---------------------
//
// The only place that knows how the engine stores its handshake state.

/// Phase 1 keys and the running phase 1 IV, once derived.
fn sa_keys(s: &Phase1) -> Option<(&Phase1Keys, &[u8])> {
    s.hs.keyed().map(|k| (&k.keys, k.iv.as_slice()))
}

/// g^xi, g^xr and SAi_b, as HASH_I/HASH_R cover them, once keys exist
/// and while the peer's authentication is awaited.
fn sa_auth_inputs(s: &Phase1) -> Option<(&[u8], &[u8], &[u8])> {
    match &s.hs {
        Handshake::RMm4(_, a) | Handshake::IMm5(_, a) | Handshake::RAm2(_, a, _) => {
            Some((a.gxi.as_slice(), a.gxr.as_slice(), a.sai_b.as_slice()))
        }
        _ => None,
    }
}

/// IDii_b an Aggressive Mode responder waits to see hashed in AM3.
fn sa_peer_id_b(s: &Phase1) -> Option<&[u8]> {
    match &s.hs {
        Handshake::RAm2(_, _, id_b) => Some(id_b.as_slice()),
        _ => None,
    }
}

fn sa_state(s: &Phase1) -> P1State {
    s.state()
}

fn sa_quick_modes(s: &Phase1) -> Vec<(u32, &QuickMode)> {
    s.qms.iter().map(|(m, q)| (*m, q)).collect()
}

fn sa_quick_mode(s: &Phase1, mid: u32) -> Option<&QuickMode> {
    s.qms.get(&mid)
}

/// The sequence of the R-U-THERE waiting for its ACK.
fn sa_dpd_outstanding(s: &Phase1) -> Option<u32> {
    s.dpd.outstanding.map(|o| o.0)
}

/// A Quick Mode's state, next IV, Ni_b, Nr_b and our SPI.
fn qm_view(q: &QuickMode) -> (QmState, &[u8], &[u8], &[u8], u32) {
    match &q.stage {
        QmStage::IQm1(o) => (q.state(), &o.iv, &o.ni, &[], o.our_spi),
        QmStage::RQm2(a) => (q.state(), &a.iv, &a.ni, &a.nr, a.child.inbound_spi),
        QmStage::Complete { .. } => (q.state(), &[], &[], &[], 0),
    }
}

// --- The set-up. ---------------------------------------------------------

#[derive(Debug, Clone)]
struct Setup {
    aggressive: bool,
    pfs: bool,
    nat_force: bool,
    draft_natt: bool,
    aes: bool,
    sha: bool,
    seed: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(aggressive, pfs, nat_force, draft_natt, aes, sha, seed)| Setup {
                aggressive,
                pfs,
                nat_force,
                draft_natt,
                aes,
                sha,
                seed,
            },
        )
}

fn cfg(s: &Setup) -> EngineConfig {
    EngineConfig {
        policies: vec![
            IkePolicy {
                priority: 10,
                encr: if s.aes {
                    EncrAlg::Aes128
                } else {
                    EncrAlg::TripleDes
                },
                hash: if s.sha { HashAlg::Sha1 } else { HashAlg::Md5 },
                group: GroupId::Modp768,
                lifetime: 900,
            },
            IkePolicy {
                priority: 20,
                encr: EncrAlg::Des,
                hash: HashAlg::Md5,
                group: GroupId::Modp768,
                lifetime: 600,
            },
        ],
        transform_sets: vec![
            TransformSet {
                name: "cbc".into(),
                esp: EspTransform {
                    encr: EspEncr::AesCbc(128),
                    integ: Some(HashAlg::Sha1),
                },
                mode: Mode::Transport,
            },
            TransformSet {
                name: "gcm".into(),
                esp: EspTransform {
                    encr: EspEncr::AesGcm16(128),
                    integ: None,
                },
                mode: Mode::Tunnel,
            },
        ],
        psks: vec![PskEntry {
            initiate: if s.aggressive {
                InitiateMode::Aggressive
            } else {
                InitiateMode::Main
            },
            ..PskEntry::new("0.0.0.0".parse().unwrap(), 0, b"hostile-psk")
        }],
        answer_aggressive: true,
        pfs: s.pfs.then_some(GroupId::Modp768),
        nat_t: if s.nat_force {
            NatTMode::Force
        } else {
            NatTMode::Enabled
        },
        nat_t_rfc: !s.draft_natt,
        sa_lifetime_secs: 300,
        dpd: Some(DpdConfig {
            interval: Duration::from_secs(30),
            retry: Duration::from_secs(3),
            max_retries: 3,
        }),
        ..Default::default()
    }
}

struct World {
    eps: [Ep; 2],
    addr: [SocketAddr; 2],
    now: Instant,
    /// Datagrams in flight: (sender index, datagram).
    wire: VecDeque<(usize, Transmit)>,
    /// Every datagram sent so far, for replays and byte flips.
    seen: Vec<(usize, Transmit)>,
    /// Every event, per endpoint.
    events: [Vec<crate::Event>; 2],
    rng: ChaCha20Rng,
}

impl World {
    fn new(s: &Setup) -> World {
        let ep = |seed: u64, base: u32| {
            let mut n = base;
            Endpoint::new(
                cfg(s),
                ChaCha20Rng::seed_from_u64(seed),
                Box::new(move || {
                    n += 1;
                    n
                }),
            )
        };
        let mut w = World {
            eps: [ep(s.seed, 0x1000), ep(s.seed ^ 0x55, 0x2000)],
            addr: [
                "172.16.0.1:500".parse().unwrap(),
                "172.16.0.2:500".parse().unwrap(),
            ],
            now: Instant::from_secs(1),
            wire: VecDeque::new(),
            seen: vec![],
            events: [vec![], vec![]],
            rng: ChaCha20Rng::seed_from_u64(s.seed ^ 0xf00),
        };
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(w.addr[0].ip())),
            remote_proxy: Some(gre_proxy(w.addr[1].ip())),
        };
        w.eps[0]
            .initiate_phase2(w.now, w.addr[0], w.addr[1], req)
            .unwrap();
        w.collect();
        w
    }

    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.eps[i].poll_transmit() {
                self.seen.push((i, t.clone()));
                self.wire.push_back((i, t));
            }
            while let Some(e) = self.eps[i].poll_event() {
                self.events[i].push(e);
            }
        }
    }

    /// Hand `payload` to endpoint `to` as if it came from the other one.
    fn deliver(&mut self, to: usize, local: SocketAddr, remote: SocketAddr, payload: &[u8]) {
        let _ = self.eps[to].handle(self.now, local, remote, payload);
        self.collect();
        check(&mut self.eps[to]);
    }

    /// Deliver the next datagram in flight.
    fn step(&mut self) -> bool {
        let Some((from, t)) = self.wire.pop_front() else {
            return false;
        };
        self.deliver(1 - from, t.remote, t.local, &t.payload);
        true
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        for i in 0..2 {
            let now = self.now;
            self.eps[i].handle_timeout(now);
            check(&mut self.eps[i]);
        }
        self.collect();
    }

    /// The rest of the run: everything in flight, then timers for a while
    /// (retransmissions, lifetimes, rekeys, DPD).
    fn finish(&mut self) {
        self.settle(2000);
    }

    fn settle(&mut self, secs: u64) {
        let until = self.now + Duration::from_secs(secs);
        for _ in 0..600 {
            while self.step() {}
            let next = self.eps.iter().filter_map(Endpoint::poll_timeout).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..2 {
                        let now = self.now;
                        self.eps[i].handle_timeout(now);
                        check(&mut self.eps[i]);
                    }
                    self.collect();
                }
                _ => break,
            }
        }
    }
}

/// The endpoint's indexes agree with its SAs.
fn check(e: &mut Ep) {
    crate::timers::tests::endpoint_agreement::check(e);
}

// --- What the hostile peer sends. ----------------------------------------

/// Which exchange type the forged header names.
#[derive(Debug, Clone)]
enum Exch {
    Main,
    Aggressive,
    Quick,
    Info,
    Other(u8),
}

/// Which message id.
#[derive(Debug, Clone)]
enum Mid {
    Zero,
    /// One of the SA's Quick Modes (any state), by index.
    Existing(u8),
    Fresh(u32),
}

/// How the HASH payload is made.
#[derive(Debug, Clone, Copy)]
enum HashFix {
    /// Whatever the payloads say (none, or a stale one).
    Keep,
    /// The HASH the receiver expects for this message (HASH(1), HASH(2),
    /// HASH(3), HASH_I or HASH_R), put first.
    Valid,
    /// A HASH of the right length with wrong bytes, put first.
    Wrong,
}

/// A payload, resolved against the receiver's state when sent.
#[derive(Debug, Clone)]
enum PSpec {
    /// Our policies as an initiator offers them.
    OwnP1Sa,
    /// A phase 1 SA assembled from plausible and odd attribute values.
    P1Sa(Vec<Vec<(u16, u16)>>, u8),
    /// Phase 2 proposals: (protocol selector, SPI selector, transforms).
    P2Sa(Vec<(u8, u8, Vec<P2T>)>),
    Ke(KeSpec),
    Nonce(u16),
    Id(IdSpec),
    Hash(u8),
    Notify(u16, u8, u8, u8),
    Delete(u8, Vec<u8>),
    Vendor(u8),
    NatD(u8),
    NatOa(IdSpec, bool),
    Unknown(u8, u8),
    /// Exactly this payload (hand-written tests).
    Raw(Payload),
}

#[derive(Debug, Clone)]
struct P2T {
    id: u8,
    encap: u16,
    auth: Option<u16>,
    key_bits: Option<u16>,
    group: Option<u16>,
    life_secs: Option<u32>,
    life_kb: Option<u32>,
}

#[derive(Debug, Clone)]
enum KeSpec {
    /// A real public value of the group the receiver negotiated.
    Real,
    Random(u16),
    /// 1, p-1 or 0 padded to the group's length.
    Edge(u8),
}

#[derive(Debug, Clone)]
enum IdSpec {
    /// Address of the sender or of the receiver (proxy or phase 1 identity).
    Addr(bool, u8, u16),
    Other(u8, Vec<u8>),
}

#[derive(Debug, Clone)]
enum PayloadOp {
    Remove(u8),
    Duplicate(u8),
    Swap(u8, u8),
    Insert(u8, PSpec),
    Replace(u8, PSpec),
    Tweak(u8, u8, u16),
}

#[derive(Debug, Clone)]
enum Act {
    /// A message made from scratch for one of `to`'s SAs.
    Forge {
        to: usize,
        sa: u8,
        exch: Exch,
        mid: Mid,
        encrypted: bool,
        hash: HashFix,
        payloads: Vec<PSpec>,
    },
    /// The next real datagram in flight with its payloads edited, sent
    /// ahead of it (the real one still follows).
    MutateNext {
        ops: Vec<PayloadOp>,
        hash: HashFix,
    },
    /// An earlier datagram again, to its receiver or to its sender.
    Replay {
        which: u16,
        back: bool,
    },
    /// An earlier datagram with bytes changed or cut short.
    Flip {
        which: u16,
        edits: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
    /// The next datagram in flight is lost.
    Drop,
    Advance(u16),
    /// Everything in flight delivered and timers run for this many
    /// seconds: rekeys, several SAs with the peer.
    Settle(u16),
    /// What an operator or the node may ask of one side.
    Command(usize, Cmd, u8),
}

#[derive(Debug, Clone)]
enum Cmd {
    Initiate,
    DeleteChild,
    DeletePeer,
    RekeyIsakmp,
    Traffic,
}

fn p1_attr() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        prop::sample::select(vec![1u16, 5, 7, 3]).prop_map(|v| (p1attr::ENCRYPTION, v)),
        prop::sample::select(vec![1u16, 2, 4, 9]).prop_map(|v| (p1attr::HASH, v)),
        prop::sample::select(vec![1u16, 3, 65001]).prop_map(|v| (p1attr::AUTH, v)),
        prop::sample::select(vec![1u16, 2, 14, 19, 99]).prop_map(|v| (p1attr::GROUP, v)),
        prop::sample::select(vec![1u16, 2, 7]).prop_map(|v| (p1attr::LIFE_TYPE, v)),
        prop::sample::select(vec![0u16, 1, 600, 900, 65535])
            .prop_map(|v| (p1attr::LIFE_DURATION, v)),
        prop::sample::select(vec![128u16, 192, 256, 64]).prop_map(|v| (p1attr::KEY_LENGTH, v)),
        (any::<u16>(), any::<u16>()).prop_map(|(t, v)| (t & 0x7fff, v)),
    ]
}

fn p2t() -> impl Strategy<Value = P2T> {
    (
        prop::sample::select(vec![2u8, 3, 11, 12, 20, 77]),
        prop::sample::select(vec![
            encap::TUNNEL,
            encap::TRANSPORT,
            encap::UDP_TUNNEL,
            encap::UDP_TRANSPORT,
            encap::UDP_TUNNEL_DRAFT,
            encap::UDP_TRANSPORT_DRAFT,
            9,
        ]),
        prop::option::of(prop::sample::select(vec![1u16, 2, 5, 12, 200])),
        prop::option::of(prop::sample::select(vec![128u16, 256, 100])),
        prop::option::of(prop::sample::select(vec![1u16, 2, 14])),
        prop::option::of(prop::sample::select(vec![0u32, 1, 300, 70_000, u32::MAX])),
        prop::option::of(prop::sample::select(vec![0u32, 10, 4_608_000, u32::MAX])),
    )
        .prop_map(
            |(id, encap, auth, key_bits, group, life_secs, life_kb)| P2T {
                id,
                encap,
                auth,
                key_bits,
                group,
                life_secs,
                life_kb,
            },
        )
}

fn id_spec() -> impl Strategy<Value = IdSpec> {
    prop_oneof![
        3 => (any::<bool>(), prop::sample::select(vec![0u8, 17, 47]), prop::sample::select(vec![0u16, 500])).prop_map(|(a, p, port)| IdSpec::Addr(a, p, port)),
        1 => (prop::sample::select(vec![1u8, 2, 4, 5, 9, 11]), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(t, d)| IdSpec::Other(t, d)),
    ]
}

fn pspec() -> impl Strategy<Value = PSpec> {
    prop_oneof![
        2 => Just(PSpec::OwnP1Sa),
        2 => (prop::collection::vec(prop::collection::vec(p1_attr(), 0..8), 0..3), any::<u8>()).prop_map(|(t, p)| PSpec::P1Sa(t, p)),
        4 => prop::collection::vec((any::<u8>(), any::<u8>(), prop::collection::vec(p2t(), 0..3)), 0..3).prop_map(PSpec::P2Sa),
        3 => prop_oneof![Just(KeSpec::Real), (0u16..200).prop_map(KeSpec::Random), any::<u8>().prop_map(KeSpec::Edge)].prop_map(PSpec::Ke),
        2 => prop::sample::select(vec![0u16, 4, 8, 16, 20, 256, 300]).prop_map(PSpec::Nonce),
        2 => id_spec().prop_map(PSpec::Id),
        1 => any::<u8>().prop_map(PSpec::Hash),
        4 => (prop::sample::select(vec![
                notify::INITIAL_CONTACT,
                notify::DPD_R_U_THERE,
                notify::DPD_R_U_THERE_ACK,
                notify::RESPONDER_LIFETIME,
                notify::NO_PROPOSAL_CHOSEN,
                notify::INVALID_SPI,
                notify::AUTHENTICATION_FAILED,
                9000,
                40000,
            ]), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(t, p, s, d)| PSpec::Notify(t, p, s, d)),
        4 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(p, s)| PSpec::Delete(p, s)),
        1 => any::<u8>().prop_map(PSpec::Vendor),
        1 => any::<u8>().prop_map(PSpec::NatD),
        1 => (id_spec(), any::<bool>()).prop_map(|(i, d)| PSpec::NatOa(i, d)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(t, n)| PSpec::Unknown(t, n)),
    ]
}

fn payload_op() -> impl Strategy<Value = PayloadOp> {
    prop_oneof![
        2 => any::<u8>().prop_map(PayloadOp::Remove),
        2 => any::<u8>().prop_map(PayloadOp::Duplicate),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| PayloadOp::Swap(a, b)),
        3 => (any::<u8>(), pspec()).prop_map(|(i, p)| PayloadOp::Insert(i, p)),
        2 => (any::<u8>(), pspec()).prop_map(|(i, p)| PayloadOp::Replace(i, p)),
        4 => (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(i, k, v)| PayloadOp::Tweak(i, k, v)),
    ]
}

fn hash_fix() -> impl Strategy<Value = HashFix> {
    prop_oneof![1 => Just(HashFix::Keep), 4 => Just(HashFix::Valid), 1 => Just(HashFix::Wrong)]
}

fn act() -> impl Strategy<Value = Act> {
    let exch = prop_oneof![
        3 => Just(Exch::Main),
        2 => Just(Exch::Aggressive),
        4 => Just(Exch::Quick),
        4 => Just(Exch::Info),
        1 => any::<u8>().prop_map(Exch::Other),
    ];
    let mid = prop_oneof![
        2 => Just(Mid::Zero),
        3 => any::<u8>().prop_map(Mid::Existing),
        2 => any::<u32>().prop_map(Mid::Fresh),
    ];
    prop_oneof![
        5 => (0usize..2, any::<u8>(), exch, mid, prop::bool::weighted(0.7), hash_fix(), prop::collection::vec(pspec(), 0..6))
            .prop_map(|(to, sa, exch, mid, encrypted, hash, payloads)| Act::Forge { to, sa, exch, mid, encrypted, hash, payloads }),
        5 => (prop::collection::vec(payload_op(), 1..4), hash_fix()).prop_map(|(ops, hash)| Act::MutateNext { ops, hash }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(which, back)| Act::Replay { which, back }),
        1 => (any::<u16>(), prop::collection::vec((any::<u16>(), 1u8..=255), 0..3), prop::option::of(any::<u16>()))
            .prop_map(|(which, edits, cut)| Act::Flip { which, edits, cut }),
        1 => Just(Act::Drop),
        1 => prop::sample::select(vec![1u16, 3, 10, 31, 120, 400]).prop_map(Act::Advance),
        1 => prop::sample::select(vec![5u16, 60, 300, 800]).prop_map(Act::Settle),
        1 => (0usize..2, prop_oneof![
                Just(Cmd::Initiate),
                Just(Cmd::DeleteChild),
                Just(Cmd::DeletePeer),
                Just(Cmd::RekeyIsakmp),
                Just(Cmd::Traffic),
            ], any::<u8>()).prop_map(|(i, c, x)| Act::Command(i, c, x)),
    ]
}

// --- Building messages. ----------------------------------------------------

fn pick<T: Clone>(v: &[T], sel: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[sel as usize % v.len()].clone())
}

/// The receiver's view of one of its SAs, copied out.
struct Target {
    id: SaId,
    ic: [u8; 8],
    rc: [u8; 8],
    local: SocketAddr,
    remote: SocketAddr,
    group: GroupId,
}

fn target(e: &Ep, sel: u8) -> Option<Target> {
    let ids: Vec<SaId> = e.sas.keys().copied().collect();
    let id = pick(&ids, sel)?;
    let s = &e.sas[&id];
    Some(Target {
        id,
        ic: s.icookie,
        rc: s.rcookie,
        local: s.local,
        remote: s.remote,
        group: e
            .isakmp_sas()
            .iter()
            .find(|x| x.id == id)
            .and_then(|x| x.policy)
            .map_or(GroupId::Modp768, |p| p.group),
    })
}

/// SPIs the receiver knows: its child SAs' inbound and outbound SPIs and
/// its Quick Modes' SPIs.
fn known_spis(e: &Ep) -> Vec<u32> {
    let mut v: Vec<u32> = e
        .child_sas()
        .iter()
        .flat_map(|c| [c.inbound_spi, c.outbound_spi])
        .collect();
    for s in e.sas.values() {
        v.extend(sa_quick_modes(s).iter().map(|(_, q)| qm_view(q).4));
    }
    v
}

fn cookie_pairs(e: &Ep) -> Vec<Vec<u8>> {
    e.sas
        .values()
        .map(|s| [s.icookie, s.rcookie].concat())
        .collect()
}

fn resolve_id(w: &World, to: usize, spec: &IdSpec) -> IdPayload {
    match spec {
        IdSpec::Addr(sender, protocol, port) => IdPayload {
            protocol: *protocol,
            port: *port,
            id: Identity::from_ip(w.addr[if *sender { 1 - to } else { to }].ip()),
        },
        IdSpec::Other(ty, data) => wire::IdPayload {
            protocol: 0,
            port: 0,
            id: Identity::Other {
                ty: *ty,
                data: data.clone(),
            },
        },
    }
}

fn resolve(w: &mut World, to: usize, t: &Target, spec: &PSpec) -> Payload {
    let e = &w.eps[to];
    match spec {
        PSpec::OwnP1Sa => Payload::Sa(Ep::p1_sa_payload(&e.cfg.sorted_policies())),
        PSpec::P1Sa(transforms, number) => Payload::Sa(SaPayload {
            doi: 1,
            situation: 1,
            proposals: vec![Proposal {
                number: *number,
                protocol: proto::ISAKMP,
                spi: vec![],
                transforms: transforms
                    .iter()
                    .enumerate()
                    .map(|(i, attrs)| Transform {
                        number: i as u8 + 1,
                        transform_id: 1,
                        attributes: attrs.iter().map(|&(t, v)| Attribute::basic(t, v)).collect(),
                    })
                    .collect(),
            }],
        }),
        PSpec::P2Sa(props) => {
            let spis = known_spis(e);
            let proposals = props
                .iter()
                .enumerate()
                .map(|(i, (p, s, ts))| {
                    let protocol = match p % 4 {
                        0 | 1 => proto::ESP,
                        2 => proto::AH,
                        _ => *p,
                    };
                    let spi = match s % 4 {
                        0 | 1 => w.rng.next_u32().to_be_bytes().to_vec(),
                        2 => pick(&spis, *s).unwrap_or(0x1234).to_be_bytes().to_vec(),
                        _ => vec![*s; (*s as usize) % 9],
                    };
                    let transforms = ts
                        .iter()
                        .enumerate()
                        .map(|(j, x)| {
                            let mut a = vec![Attribute::basic(p2attr::ENCAPSULATION, x.encap)];
                            if let Some(l) = x.life_secs {
                                a.push(Attribute::basic(p2attr::LIFE_TYPE, 1));
                                a.push(Attribute::number(p2attr::LIFE_DURATION, l.into()));
                            }
                            if let Some(l) = x.life_kb {
                                a.push(Attribute::basic(p2attr::LIFE_TYPE, 2));
                                a.push(Attribute::number(p2attr::LIFE_DURATION, l.into()));
                            }
                            if let Some(v) = x.auth {
                                a.push(Attribute::basic(p2attr::AUTH, v));
                            }
                            if let Some(v) = x.key_bits {
                                a.push(Attribute::basic(p2attr::KEY_LENGTH, v));
                            }
                            if let Some(v) = x.group {
                                a.push(Attribute::basic(p2attr::GROUP, v));
                            }
                            Transform {
                                number: j as u8 + 1,
                                transform_id: x.id,
                                attributes: a,
                            }
                        })
                        .collect();
                    Proposal {
                        number: i as u8 + 1,
                        protocol,
                        spi,
                        transforms,
                    }
                })
                .collect();
            // Sometimes exactly what the receiver itself would offer.
            let mut sa = SaPayload {
                doi: 1,
                situation: 1,
                proposals,
            };
            if props.len() == 1 && props[0].2.is_empty() {
                let o = OfferedP2 {
                    esp: e.cfg.transform_sets[0].esp,
                    encap: encap::TRANSPORT,
                    group: e.cfg.pfs,
                    life_secs: Some(300),
                    life_kb: None,
                };
                sa.proposals = vec![Proposal {
                    number: 1,
                    protocol: proto::ESP,
                    spi: w.rng.next_u32().to_be_bytes().to_vec(),
                    transforms: vec![encode_p2(1, &o)],
                }];
            }
            Payload::Sa(sa)
        }
        PSpec::Ke(k) => {
            let g = e.cfg.pfs.unwrap_or(t.group);
            let len = g.public_len();
            Payload::Ke(match k {
                KeSpec::Real => g.generate(&mut w.rng).1,
                KeSpec::Random(n) => {
                    let mut v = vec![0u8; *n as usize];
                    w.rng.fill_bytes(&mut v);
                    v
                }
                KeSpec::Edge(x) => {
                    let mut v = vec![if x % 3 == 1 { 0xff } else { 0 }; len];
                    if x % 3 == 0 {
                        v[len - 1] = 1;
                    }
                    v
                }
            })
        }
        PSpec::Nonce(n) => {
            let mut v = vec![0u8; *n as usize];
            w.rng.fill_bytes(&mut v);
            Payload::Nonce(v)
        }
        PSpec::Id(s) => Payload::Id(resolve_id(w, to, s)),
        PSpec::Hash(n) => Payload::Hash(vec![*n; (*n as usize % 3) * 10]),
        PSpec::Notify(ty, p, s, d) => {
            let spis = known_spis(e);
            let cookies = cookie_pairs(e);
            let spi = match s % 4 {
                0 => [t.ic, t.rc].concat(),
                1 => pick(&spis, *s).unwrap_or(7).to_be_bytes().to_vec(),
                2 => pick(&cookies, *s).unwrap_or_default(),
                _ => vec![*s; *s as usize % 20],
            };
            let data = match (ty, d % 3) {
                (&notify::DPD_R_U_THERE_ACK, 0) => e
                    .sas
                    .get(&t.id)
                    .and_then(sa_dpd_outstanding)
                    .map_or(vec![0, 0, 0, 1], |o| o.to_be_bytes().to_vec()),
                (&notify::RESPONDER_LIFETIME, 0) => wire::emit_attributes(&[
                    Attribute::basic(p2attr::LIFE_TYPE, 1),
                    Attribute::number(p2attr::LIFE_DURATION, u64::from(*d)),
                    Attribute::basic(p2attr::LIFE_TYPE, 2),
                    Attribute {
                        ty: p2attr::LIFE_DURATION,
                        value: AttrValue::Variable(vec![0xff; 9]),
                    },
                ]),
                (_, 1) => vec![*d; *d as usize % 7],
                _ => vec![],
            };
            Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: match p % 3 {
                    0 => proto::ISAKMP,
                    1 => proto::ESP,
                    _ => *p,
                },
                spi,
                msg_type: *ty,
                data,
            })
        }
        PSpec::Delete(p, sels) => {
            let spis = known_spis(e);
            let cookies = cookie_pairs(e);
            match p % 3 {
                0 => Payload::Delete(DeletePayload {
                    doi: 1,
                    protocol: proto::ISAKMP,
                    spi_size: 16,
                    // Duplicates and the SA the message travels on included.
                    spis: sels
                        .iter()
                        .map(|s| match s % 3 {
                            0 => [t.ic, t.rc].concat(),
                            1 => pick(&cookies, *s).unwrap_or_else(|| vec![1; 16]),
                            _ => vec![*s; 16],
                        })
                        .collect(),
                }),
                1 => Payload::Delete(DeletePayload {
                    doi: 1,
                    protocol: if p % 2 == 0 { proto::ESP } else { proto::AH },
                    spi_size: 4,
                    spis: sels
                        .iter()
                        .map(|s| pick(&spis, *s).unwrap_or(*s as u32).to_be_bytes().to_vec())
                        .collect(),
                }),
                _ => Payload::Delete(DeletePayload {
                    doi: 1,
                    protocol: proto::ISAKMP,
                    spi_size: 0,
                    spis: vec![],
                }),
            }
        }
        PSpec::Vendor(v) => Payload::VendorId(
            match v % 6 {
                0 => Vendor::Dpd,
                1 => Vendor::NatTRfc,
                2 => Vendor::NatTDraft02,
                3 => Vendor::NatTDraft03,
                4 => Vendor::CiscoUnity,
                _ => Vendor::Fragmentation,
            }
            .bytes(),
        ),
        PSpec::NatD(n) => Payload::NatD {
            draft: n % 2 == 0,
            hash: vec![*n; 16 + (*n as usize % 5)],
        },
        PSpec::NatOa(s, draft) => Payload::NatOa {
            draft: *draft,
            addr: resolve_id(w, to, s),
        },
        PSpec::Unknown(ty, n) => Payload::Unknown {
            ty: if *ty < 14 { 200 } else { *ty },
            body: vec![*n; *n as usize % 30],
        },
        PSpec::Raw(p) => p.clone(),
    }
}

/// Small, payload-specific changes.
fn tweak(p: &mut Payload, k: u8, v: u16) {
    match p {
        Payload::Sa(sa) => match (k % 6, sa.proposals.first_mut()) {
            (0, Some(pr)) => pr.number = v as u8,
            (1, Some(pr)) => pr.spi.truncate(v as usize % 4),
            (2, Some(pr)) => pr.protocol = v as u8,
            (3, Some(pr)) => {
                if let Some(t) = pr.transforms.first_mut()
                    && !t.attributes.is_empty()
                {
                    let i = v as usize % t.attributes.len();
                    t.attributes[i].value = AttrValue::Basic(v >> 4);
                }
            }
            (4, Some(pr)) => {
                let t = pr.transforms.first().cloned();
                pr.transforms.extend(t);
            }
            _ => sa.proposals.reverse(),
        },
        Payload::Ke(b) | Payload::Nonce(b) | Payload::Hash(b) | Payload::NatD { hash: b, .. } => {
            if k.is_multiple_of(2) {
                b.truncate(v as usize % (b.len() + 1));
            } else if !b.is_empty() {
                let i = v as usize % b.len();
                b[i] ^= k | 1;
            }
        }
        Payload::Id(id) | Payload::NatOa { addr: id, .. } => match k % 3 {
            0 => id.port = v,
            1 => id.protocol = v as u8,
            _ => {
                id.id = Identity::Other {
                    ty: v as u8,
                    data: vec![1; v as usize % 17],
                }
            }
        },
        Payload::Notify(n) => match k % 3 {
            0 => n.msg_type = v,
            1 => n.spi.truncate(v as usize % 17),
            _ => n.data = v.to_be_bytes()[..(k as usize % 3)].to_vec(),
        },
        Payload::Delete(d) => {
            if k.is_multiple_of(2) {
                let s = d.spis.first().cloned();
                d.spis.extend(s);
            } else {
                d.protocol = v as u8;
            }
        }
        _ => {}
    }
}

fn apply(w: &mut World, to: usize, t: &Target, list: &mut Vec<Payload>, op: &PayloadOp) {
    let at = |i: u8, n: usize| if n == 0 { 0 } else { i as usize % n };
    match op {
        PayloadOp::Remove(i) if !list.is_empty() => {
            let i = at(*i, list.len());
            list.remove(i);
        }
        PayloadOp::Duplicate(i) if !list.is_empty() => {
            let i = at(*i, list.len());
            let p = list[i].clone();
            list.insert(i, p);
        }
        PayloadOp::Swap(i, j) if !list.is_empty() => {
            let (i, j) = (at(*i, list.len()), at(*j, list.len()));
            list.swap(i, j);
        }
        PayloadOp::Insert(i, s) => {
            let p = resolve(w, to, t, s);
            let i = at(*i, list.len() + 1);
            list.insert(i, p);
        }
        PayloadOp::Replace(i, s) if !list.is_empty() => {
            let p = resolve(w, to, t, s);
            let i = at(*i, list.len());
            list[i] = p;
        }
        PayloadOp::Tweak(i, k, v) if !list.is_empty() => {
            let i = at(*i, list.len());
            tweak(&mut list[i], *k, *v);
        }
        _ => {}
    }
}

/// The IV the receiver decrypts message `mid` of SA `t` with, and its keys.
fn receiver_iv<'a>(e: &'a Ep, t: &Target, mid: u32) -> Option<(&'a Phase1Keys, Vec<u8>)> {
    let s = e.sas.get(&t.id)?;
    let (k, p1_iv) = sa_keys(s)?;
    if mid == 0 {
        return Some((k, p1_iv.to_vec()));
    }
    // A finished Quick Mode keeps no IV: derive one as for a new exchange.
    let iv = match sa_quick_mode(s, mid).map(|q| qm_view(q).1) {
        Some(iv) if !iv.is_empty() => iv.to_vec(),
        _ => keys::message_iv(k.prf, k.encr, p1_iv, mid),
    };
    Some((k, iv))
}

/// The HASH the receiver expects first in `rest` (or HASH_I/HASH_R inside it).
fn valid_hash(e: &Ep, t: &Target, exch: u8, mid: u32, rest: &[Payload]) -> Option<Vec<u8>> {
    let s = e.sas.get(&t.id)?;
    let (k, _) = sa_keys(s)?;
    let body = wire::emit_payloads(rest).1;
    if exch == exchange::QUICK {
        let q = sa_quick_mode(s, mid).map(qm_view);
        return Some(match q {
            Some((QmState::IQm1, _, ni, _, _)) => keys::hash2(k, mid, ni, &body),
            Some((QmState::RQm2, _, ni, nr, _)) => keys::hash3(k, mid, ni, nr),
            _ => keys::hash1(k, mid, &body),
        });
    }
    if exch == exchange::INFORMATIONAL {
        return Some(keys::hash1(k, mid, &body));
    }
    // Phase 1 authentication: HASH_I from an initiator, HASH_R from a responder.
    let (gxi, gxr, sai_b) = sa_auth_inputs(s)?;
    let peer_is_initiator = !s.initiator;
    let id_b = match sa_peer_id_b(s) {
        Some(b) => b.to_vec(),
        None => rest.iter().find_map(|p| match p {
            Payload::Id(i) => Some(i.body()),
            _ => None,
        })?,
    };
    Some(keys::auth_hash(
        k,
        peer_is_initiator,
        gxi,
        gxr,
        &s.icookie,
        &s.rcookie,
        sai_b,
        &id_b,
    ))
}

/// Emit a message for SA `t` of endpoint `to`, encrypted when asked and
/// keys exist (random bytes stand in for ciphertext otherwise).
#[allow(clippy::too_many_arguments)]
fn emit(
    w: &mut World,
    to: usize,
    t: &Target,
    exch: u8,
    mid: u32,
    encrypted: bool,
    hash: HashFix,
    mut payloads: Vec<Payload>,
) -> Vec<u8> {
    let e = &w.eps[to];
    let phase1_auth = exch == exchange::MAIN || exch == exchange::AGGRESSIVE;
    match hash {
        HashFix::Keep => {}
        HashFix::Valid | HashFix::Wrong => {
            if phase1_auth {
                payloads.retain(|p| !matches!(p, Payload::Hash(_)));
            } else if matches!(payloads.first(), Some(Payload::Hash(_))) {
                payloads.remove(0);
            }
            if let Some(mut h) = valid_hash(e, t, exch, mid, &payloads) {
                if matches!(hash, HashFix::Wrong) {
                    h[0] ^= 1;
                }
                if phase1_auth {
                    let at = payloads
                        .iter()
                        .position(|p| matches!(p, Payload::Id(_)))
                        .map_or(0, |i| i + 1);
                    payloads.insert(at, Payload::Hash(h));
                } else {
                    payloads.insert(0, Payload::Hash(h));
                }
            }
        }
    }
    let header = Header {
        icookie: t.ic,
        rcookie: t.rc,
        next_payload: 0,
        version: 0x10,
        exchange: exch,
        flags: 0,
        message_id: mid,
        length: 0,
    };
    if !encrypted {
        return wire::Message { header, payloads }.emit();
    }
    match receiver_iv(e, t, mid) {
        Some((k, iv)) => Ep::encrypt(k, header, &payloads, &iv).0,
        None => {
            let mut m = wire::Message { header, payloads }.emit();
            m[19] |= flags::ENCRYPTION;
            let n = m.len() - wire::HEADER_LEN;
            let mut body = vec![0u8; n.div_ceil(8) * 8];
            w.rng.fill_bytes(&mut body);
            m.truncate(wire::HEADER_LEN);
            m.extend_from_slice(&body);
            let len = (m.len() as u32).to_be_bytes();
            m[24..28].copy_from_slice(&len);
            m
        }
    }
}

/// Add the non-ESP marker on port 4500.
fn framed(local: SocketAddr, remote: SocketAddr, msg: Vec<u8>) -> Vec<u8> {
    crate::endpoint::frame(local, remote, msg)
}

fn forge(w: &mut World, a: &Act) {
    let Act::Forge {
        to,
        sa,
        exch,
        mid,
        encrypted,
        hash,
        payloads,
    } = a
    else {
        return;
    };
    let to = *to;
    let Some(t) = target(&w.eps[to], *sa) else {
        return;
    };
    let exch = match exch {
        Exch::Main => exchange::MAIN,
        Exch::Aggressive => exchange::AGGRESSIVE,
        Exch::Quick => exchange::QUICK,
        Exch::Info => exchange::INFORMATIONAL,
        Exch::Other(x) => *x,
    };
    let mid = match mid {
        Mid::Zero => 0,
        Mid::Existing(i) => {
            let mids: Vec<u32> = sa_quick_modes(&w.eps[to].sas[&t.id])
                .iter()
                .map(|(m, _)| *m)
                .collect();
            pick(&mids, *i).unwrap_or(1)
        }
        Mid::Fresh(m) => *m,
    };
    let list: Vec<Payload> = payloads.iter().map(|p| resolve(w, to, &t, p)).collect();
    let msg = emit(w, to, &t, exch, mid, *encrypted, *hash, list);
    let data = framed(t.local, t.remote, msg);
    w.deliver(to, t.local, t.remote, &data);
}

/// Edit the payloads of the next datagram in flight and send the result
/// to its receiver (the original stays in flight).
fn mutate_next(w: &mut World, ops: &[PayloadOp], hash: HashFix) {
    let Some((from, tx)) = w.wire.front().cloned() else {
        return;
    };
    let to = 1 - from;
    let data = match dmvpn_wire::natt::demux(&tx.payload) {
        dmvpn_wire::natt::Natt::Ike(d) if tx.local.port() == NATT_PORT => d.to_vec(),
        _ => tx.payload.clone(),
    };
    let Ok((h, body)) = Header::parse(&data) else {
        return;
    };
    // The receiver's SA for it, or a stand-in for a first message.
    let e = &w.eps[to];
    let t = match e.by_cookie.get(&(h.icookie, tx.local.ip())) {
        Some(id) => {
            let s = &e.sas[id];
            Target {
                id: *id,
                ic: s.icookie,
                rc: h.rcookie,
                local: tx.remote,
                remote: tx.local,
                group: GroupId::Modp768,
            }
        }
        None => Target {
            id: 0,
            ic: h.icookie,
            rc: h.rcookie,
            local: tx.remote,
            remote: tx.local,
            group: GroupId::Modp768,
        },
    };
    let plain = if h.is_encrypted() {
        let Some((k, iv)) = receiver_iv(e, &t, h.message_id) else {
            return;
        };
        match Ep::decrypt(k, body, &iv) {
            Ok((p, _)) => p,
            Err(_) => return,
        }
    } else {
        body.to_vec()
    };
    let Ok(mut list) = wire::parse_payloads(h.next_payload, &plain) else {
        return;
    };
    for op in ops {
        apply(w, to, &t, &mut list, op);
    }
    let msg = emit(
        w,
        to,
        &t,
        h.exchange,
        h.message_id,
        h.is_encrypted(),
        hash,
        list,
    );
    let data = framed(t.local, t.remote, msg);
    w.deliver(to, t.local, t.remote, &data);
}

fn run(w: &mut World, a: &Act) {
    match a {
        Act::Forge { .. } => forge(w, a),
        Act::MutateNext { ops, hash } => mutate_next(w, ops, *hash),
        Act::Replay { which, back } => {
            if let Some((from, t)) = w.seen.get(*which as usize % w.seen.len().max(1)).cloned() {
                if *back {
                    // Reflected to its own sender.
                    w.deliver(from, t.local, t.remote, &t.payload);
                } else {
                    w.deliver(1 - from, t.remote, t.local, &t.payload);
                }
            }
        }
        Act::Flip { which, edits, cut } => {
            if let Some((from, t)) = w.seen.get(*which as usize % w.seen.len().max(1)).cloned() {
                let mut p = t.payload.clone();
                for &(at, x) in edits {
                    if !p.is_empty() {
                        let i = at as usize % p.len();
                        p[i] ^= x;
                    }
                }
                if let Some(c) = cut {
                    p.truncate(*c as usize % (p.len() + 1));
                }
                w.deliver(1 - from, t.remote, t.local, &p);
            }
        }
        Act::Drop => {
            w.wire.pop_front();
        }
        Act::Advance(s) => w.advance(u64::from(*s)),
        Act::Settle(s) => w.settle(u64::from(*s)),
        Act::Command(i, c, x) => {
            let (i, j) = (*i, 1 - *i);
            let (now, peer) = (w.now, w.addr[j]);
            let e = &mut w.eps[i];
            match c {
                Cmd::Initiate => {
                    let req = Phase2Request {
                        local_proxy: (x % 2 == 0).then(|| gre_proxy(w.addr[i].ip())),
                        remote_proxy: (x % 2 == 0).then(|| gre_proxy(peer.ip())),
                    };
                    let _ = e.initiate_phase2(now, w.addr[i], peer, req);
                }
                Cmd::DeleteChild => {
                    if let Some(spi) = pick(&e.child_spis(), *x) {
                        e.delete_child(now, spi);
                    }
                }
                Cmd::DeletePeer => e.delete_peer(now, peer.ip()),
                Cmd::RekeyIsakmp => {
                    e.rekey_isakmp(now, peer.ip());
                }
                Cmd::Traffic => e.note_traffic(now, peer.ip()),
            }
            check(e);
            w.collect();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    ))]

    /// Stop after `stop` real datagrams (0 = before the first message is
    /// received, up to past the last Quick Mode message), let the hostile
    /// peer act, then run to the end: no panic, indexes consistent.
    #[test]
    fn hostile_peer_in_every_state_never_panics(
        s in setup(),
        stop in 0usize..12,
        acts in prop::collection::vec(act(), 1..8),
    ) {
        let mut w = World::new(&s);
        for _ in 0..stop {
            if !w.step() {
                break;
            }
        }
        for a in &acts {
            run(&mut w, a);
        }
        w.finish();
    }
}

/// Each exchange state is reached by some stopping point of the run above.
#[test]
fn stopping_points_cover_every_state() {
    let mut seen = std::collections::BTreeSet::new();
    for aggressive in [false, true] {
        let s = Setup {
            aggressive,
            pfs: true,
            nat_force: false,
            draft_natt: false,
            aes: true,
            sha: true,
            seed: 3,
        };
        let mut w = World::new(&s);
        loop {
            for e in &w.eps {
                for sa in e.sas.values() {
                    seen.insert(format!("{:?}", sa_state(sa)));
                    for (_, q) in sa_quick_modes(sa) {
                        seen.insert(format!("{:?}", qm_view(q).0));
                    }
                }
            }
            if !w.step() {
                break;
            }
        }
    }
    for want in [
        "IMm1", "RMm2", "IMm3", "RMm4", "IMm5", "IAm1", "RAm2", "Complete", "IQm1", "RQm2",
    ] {
        assert!(seen.contains(want), "{want} never reached: {seen:?}");
    }
}

fn plain_setup() -> Setup {
    Setup {
        aggressive: false,
        pfs: false,
        nat_force: false,
        draft_natt: false,
        aes: true,
        sha: true,
        seed: 7,
    }
}

/// Both ends up: phase 1 and one IPsec SA pair.
fn established() -> World {
    let mut w = World::new(&plain_setup());
    while w.step() {}
    assert_eq!(w.eps[1].child_sas().len(), 1);
    w
}

/// The established phase 1 SA of endpoint `to` (as a forge selector).
fn established_sa(w: &World, to: usize) -> u8 {
    let ids: Vec<SaId> = w.eps[to].sas.keys().copied().collect();
    let up = w.eps[to]
        .isakmp_sas()
        .iter()
        .find(|s| s.state == "QM_IDLE")
        .map(|s| s.id)
        .unwrap();
    ids.iter().position(|&i| i == up).unwrap() as u8
}

fn forge_to(w: &mut World, to: usize, exch: Exch, mid: Mid, payloads: Vec<PSpec>) {
    let sa = established_sa(w, to);
    run(
        w,
        &Act::Forge {
            to,
            sa,
            exch,
            mid,
            encrypted: true,
            hash: HashFix::Valid,
            payloads,
        },
    );
}

/// An informational DELETE that names the ISAKMP SA it travels on twice
/// (spi selectors 0 and 3 both pick the SA's own cookies).
#[test]
fn delete_naming_one_isakmp_sa_twice() {
    let mut w = established();
    forge_to(
        &mut w,
        1,
        Exch::Info,
        Mid::Fresh(77),
        vec![PSpec::Delete(0, vec![0, 3])],
    );
    assert!(w.eps[1].isakmp_sas().is_empty());
    let down = w.events[1]
        .iter()
        .filter(|e| matches!(e, crate::Event::Phase1Down { .. }))
        .count();
    assert_eq!(down, 1);
}

/// A peer that picks one SPI for two IPsec SAs, then deletes that SPI
/// twice: both SAs go (the index keeps naming the remaining one).
#[test]
fn one_peer_spi_for_two_sas_both_deleted() {
    let mut w = established();
    let first = w.eps[1].child_sas()[0].clone();
    // A second Quick Mode from "A" proposing the SPI of the first SA.
    let o = OfferedP2 {
        esp: w.eps[1].cfg.transform_sets[0].esp,
        encap: encap::TRANSPORT,
        group: None,
        life_secs: Some(300),
        life_kb: None,
    };
    let sa = Payload::Sa(SaPayload {
        doi: 1,
        situation: 1,
        proposals: vec![Proposal {
            number: 1,
            protocol: proto::ESP,
            spi: first.outbound_spi.to_be_bytes().to_vec(),
            transforms: vec![encode_p2(1, &o)],
        }],
    });
    let mid = 0x4242;
    let qm1 = vec![
        PSpec::Raw(sa),
        PSpec::Nonce(20),
        PSpec::Id(IdSpec::Addr(true, 47, 0)),
        PSpec::Id(IdSpec::Addr(false, 47, 0)),
    ];
    forge_to(&mut w, 1, Exch::Quick, Mid::Fresh(mid), qm1);
    w.wire.clear();
    // QM3: HASH(3) alone.
    forge_to(&mut w, 1, Exch::Quick, Mid::Fresh(mid), vec![]);
    let sas = w.eps[1].child_sas();
    assert_eq!(sas.len(), 2, "{sas:?}");
    assert!(sas.iter().all(|c| c.outbound_spi == first.outbound_spi));
    for mid in [0x99, 0x9a] {
        let del = Payload::Delete(DeletePayload {
            doi: 1,
            protocol: proto::ESP,
            spi_size: 4,
            spis: vec![first.outbound_spi.to_be_bytes().to_vec()],
        });
        forge_to(
            &mut w,
            1,
            Exch::Info,
            Mid::Fresh(mid),
            vec![PSpec::Raw(del)],
        );
    }
    assert!(
        w.eps[1].child_sas().is_empty(),
        "{:?}",
        w.eps[1].child_sas()
    );
}

fn count_events(w: &World, i: usize, f: impl Fn(&crate::Event) -> bool) -> usize {
    w.events[i].iter().filter(|e| f(e)).count()
}

/// Aggressive Mode: a copy of the responder's AM2 with a spoiled HASH_R
/// reaches the initiator first. It is refused and changes nothing: the
/// real AM2 after it completes phase 1 and the IPsec SAs come up.
#[test]
fn forged_am2_before_the_real_one_changes_nothing() {
    let mut w = World::new(&Setup {
        aggressive: true,
        ..plain_setup()
    });
    assert!(w.step(), "AM1");
    let (from, am2) = w.wire.front().cloned().unwrap();
    assert_eq!((from, am2.payload[18]), (1, exchange::AGGRESSIVE));
    let mut forged = wire::Message::parse(&am2.payload).unwrap();
    for p in &mut forged.payloads {
        if let Payload::Hash(h) = p {
            h[0] ^= 0x80;
        }
    }
    let r = w.eps[0].handle(w.now, am2.remote, am2.local, &forged.emit());
    assert_eq!(r, Err(crate::HandleError::BadHash));
    while w.step() {}
    assert_eq!(
        count_events(&w, 0, |e| matches!(e, crate::Event::Phase1Up { .. })),
        1
    );
    assert_eq!(w.eps[0].child_sas().len(), 1);
    assert_eq!(w.eps[1].child_sas().len(), 1);
}

/// A second message with an unknown responder cookie and nothing in it
/// reaches the initiator first (Main and Aggressive Mode): it is refused
/// and the real answer, with the real cookie, is still taken.
#[test]
fn garbage_second_message_does_not_lock_out_the_real_one() {
    for aggressive in [false, true] {
        let mut w = World::new(&Setup {
            aggressive,
            ..plain_setup()
        });
        assert!(w.step(), "first message");
        let (_, real) = w.wire.front().cloned().unwrap();
        let mut bogus = real.payload[..wire::HEADER_LEN].to_vec();
        bogus[8..16].copy_from_slice(&[0x5a; 8]);
        bogus[24..28].copy_from_slice(&(wire::HEADER_LEN as u32).to_be_bytes());
        bogus[16] = 0;
        assert!(
            w.eps[0]
                .handle(w.now, real.remote, real.local, &bogus)
                .is_err()
        );
        while w.step() {}
        assert_eq!(w.eps[0].child_sas().len(), 1, "aggressive {aggressive}");
    }
}

/// Main Mode: an MM3 whose public value the group refuses (y = 1), from
/// a source that answered our MM2. The negotiation fails and is reported
/// (it is not an unverified half-open SA that timed out).
#[test]
fn mm3_with_a_refused_public_value_fails_the_negotiation() {
    let mut w = World::new(&plain_setup());
    assert!(w.step(), "MM1");
    assert!(w.step(), "MM2");
    run(
        &mut w,
        &Act::MutateNext {
            ops: vec![PayloadOp::Replace(0, PSpec::Ke(KeSpec::Edge(0)))],
            hash: HashFix::Keep,
        },
    );
    assert!(w.eps[1].isakmp_sas().is_empty());
    assert_eq!(w.eps[1].stats().half_open_expired, 0);
    assert_eq!(
        count_events(&w, 1, |e| matches!(e, crate::Event::Phase1Failed { .. })),
        1
    );
}

/// Search for the state in which a retiring ISAKMP SA loses its last
/// Quick Mode to a collision on the newer SA: A starts a Quick Mode on
/// its SA, replaces that SA (phase 1 rekey) before the Quick Mode is
/// answered, then B asks for the same selectors on the new SA with the
/// higher nonce. Returns the world right after B's QM1 reached A, and A's
/// old SA, when the seed gives B the higher nonce.
fn collision_on_newer_sa(seed: u64) -> Option<(World, SaId)> {
    let mut w = World::new(&Setup {
        seed,
        ..plain_setup()
    });
    while w.step() {}
    let old = w.eps[0].isakmp_sas()[0].id;
    let req = Phase2Request {
        local_proxy: None,
        remote_proxy: None,
    };
    let (la, lb, now) = (w.addr[0], w.addr[1], w.now);
    w.eps[0].initiate_phase2(now, la, lb, req.clone()).unwrap();
    w.collect();
    // A's QM1 is held back: it stays unanswered.
    w.wire.pop_back()?;
    assert!(w.eps[0].rekey_isakmp(now, lb.ip()));
    w.collect();
    while w.step() {}
    let a = &w.eps[0].sas;
    if !a.get(&old).is_some_and(|s| s.retiring) {
        return None;
    }
    w.eps[1].initiate_phase2(now, lb, la, req).unwrap();
    w.collect();
    let (_, qm1) = w.wire.pop_back()?;
    w.deliver(0, qm1.remote, qm1.local, &qm1.payload);
    let ours_dropped = w.eps[0]
        .sas
        .get(&old)
        .is_none_or(|s| s.qms.values().all(|q| !q.in_progress()));
    ours_dropped.then_some((w, old))
}

/// A retiring ISAKMP SA whose last Quick Mode lost a collision on the
/// newer SA is deleted at once (it used to linger until its lifetime).
#[test]
fn retiring_sa_without_quick_modes_after_a_collision_is_deleted() {
    let (w, old) = (1..40)
        .find_map(collision_on_newer_sa)
        .expect("some seed gives the peer the higher nonce");
    assert!(
        !w.eps[0].sas.contains_key(&old),
        "the retiring SA lingers with no Quick Mode in progress"
    );
}

/// `delete_peer` when dropping one SA takes a later one with it: B holds
/// the SA A replaced (A's DELETE for it lost) and the replacement, which
/// is retiring with no Quick Mode (the state a Quick Mode collision used
/// to leave). Dropping the first reconciles the peer's SAs, which deletes
/// the second before the loop reaches it.
#[test]
fn delete_peer_when_one_drop_takes_a_later_sa_along() {
    let mut w = established();
    let (now, lb) = (w.now, w.addr[1]);
    assert!(w.eps[0].rekey_isakmp(now, lb.ip()));
    w.collect();
    loop {
        match w.wire.front() {
            Some((0, t)) if t.payload[18] == exchange::INFORMATIONAL => {
                w.wire.pop_front();
            }
            Some(_) => {
                w.step();
            }
            None => break,
        }
    }
    let ids: Vec<SaId> = w.eps[1].sas.keys().copied().collect();
    assert_eq!(ids.len(), 2, "B holds the old and the new ISAKMP SA");
    w.eps[1].sas.get_mut(&ids[1]).unwrap().retiring = true;
    let la = w.addr[0];
    w.eps[1].delete_peer(now, la.ip());
    assert!(w.eps[1].isakmp_sas().is_empty());
}
