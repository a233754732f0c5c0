//! The sans-IO IKEv1 endpoint (quinn-proto style): feed it datagrams and
//! time, collect datagrams to send, events and the next deadline.

use dmvpn_wire::natt::{self, Natt};

use crate::Instant;
use crate::crypto::Cipher;
use crate::handshakes::Failure;
use crate::index::PeerIndex;
use crate::keys::Phase1Keys;
use crate::policy::{EngineConfig, EspTransform, IkePolicy, Mode};
use crate::reason::Reason;
use crate::state::{Handshake, P1State, QmOffer, QmStage, QmState};
use crate::timers::{TimerIndex, Tracked};
use crate::wire::consts::{exchange, flags};
use crate::wire::vendor::Vendor;
use crate::wire::{self, Header, IdPayload, Payload, WireError};
use rand_core::{CryptoRng, RngCore};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

/// Debug narration in the style of IOS `debug crypto isakmp`.
macro_rules! ike {
    ($($t:tt)*) => { tracing::debug!(target: "dmvpn::ike", $($t)*) };
}
pub(crate) use ike;

/// IOS-style connection id of a phase 1 SA.
pub type SaId = u64;

/// Quick Modes a peer may have in progress on one phase 1 SA.
pub const MAX_QM_IN_PROGRESS: usize = 32;

/// How long a finished Quick Mode is kept to answer retransmissions.
pub(crate) const QM_LINGER: Duration = Duration::from_secs(60);

/// The NAT-T UDP port.
pub const NATT_PORT: u16 = natt::PORT;
/// The non-ESP marker that precedes IKE on port 4500 (RFC 3948).
pub const NON_ESP_MARKER: [u8; 4] = natt::NON_ESP_MARKER;

/// `msg` behind the non-ESP marker when either port is the NAT-T port.
pub(crate) fn frame(local: SocketAddr, remote: SocketAddr, msg: Vec<u8>) -> Vec<u8> {
    if local.port() == NATT_PORT || remote.port() == NATT_PORT {
        [&NON_ESP_MARKER[..], &msg].concat()
    } else {
        msg
    }
}

/// A datagram to send. On port 4500 `payload` already carries the non-ESP marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub payload: Vec<u8>,
}

/// ESP keys for one direction; wiped on drop.
#[derive(Clone)]
pub struct EspKeys {
    pub encryption: Zeroizing<Vec<u8>>,
    pub integrity: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for EspKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EspKeys(enc {} bytes, integ {} bytes)",
            self.encryption.len(),
            self.integrity.len()
        )
    }
}

/// How ESP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    None,
    Udp { local_port: u16, remote_port: u16 },
}

/// A negotiated IPsec SA pair, ready for the data plane.
#[derive(Debug, Clone)]
pub struct ChildSa {
    pub phase1: SaId,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// SPI we chose; the peer sends with it.
    pub inbound_spi: u32,
    /// SPI the peer chose; we send with it.
    pub outbound_spi: u32,
    pub transform: EspTransform,
    pub mode: Mode,
    pub encapsulation: Encapsulation,
    pub inbound: EspKeys,
    pub outbound: EspKeys,
    pub lifetime_secs: u32,
    pub lifetime_kb: u64,
    pub local_proxy: Option<IdPayload>,
    pub remote_proxy: Option<IdPayload>,
    /// Whether we initiated this Quick Mode.
    pub initiator: bool,
    /// The peer's original address from NAT-OA, if it sent one.
    pub peer_original: Option<IpAddr>,
}

/// Something the caller should act on.
#[derive(Debug, Clone)]
pub enum Event {
    Phase1Up {
        id: SaId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Phase1Down {
        id: SaId,
        remote: SocketAddr,
        reason: Reason,
    },
    Phase1Failed {
        remote: SocketAddr,
        reason: Reason,
    },
    ChildSaInstalled(ChildSa),
    /// A replacement SA; the old one stays usable until `ChildSaDeleted`.
    ChildSaRekeyed {
        old_inbound_spi: u32,
        new: ChildSa,
    },
    ChildSaDeleted {
        remote: SocketAddr,
        inbound_spi: u32,
        outbound_spi: u32,
        reason: Reason,
    },
    Phase2Failed {
        remote: SocketAddr,
        reason: Reason,
    },
    PeerDead {
        remote: IpAddr,
    },
}

/// Why a datagram was dropped (the caller counts these).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandleError {
    #[error("malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("no SA for cookies from {0}")]
    UnknownSa(IpAddr),
    #[error("unexpected message in state {0}")]
    Unexpected(&'static str),
    #[error("decryption failed")]
    Decrypt,
    #[error("hash/authentication check failed (probable pre-shared key mismatch)")]
    BadHash,
    #[error("no pre-shared key for {0}")]
    NoPsk(IpAddr),
    #[error("no acceptable proposal")]
    NoProposal,
    #[error("half-open SA limit reached")]
    HalfOpenLimit,
    #[error("missing payload {0}")]
    Missing(&'static str),
    #[error("invalid key exchange data")]
    BadKe,
    #[error("not an IKE datagram on port 4500")]
    NotIke,
    #[error("too many Quick Mode exchanges in progress")]
    TooManyExchanges,
    #[error("Aggressive Mode is not answered (answer_aggressive is off)")]
    AggressiveRefused,
}

/// Command errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("no pre-shared key configured for {0}")]
    NoPsk(IpAddr),
    #[error("no ISAKMP policy or transform set configured")]
    NoPolicy,
}

/// Allocates inbound SPIs; the data plane owns the SPI space.
pub trait SpiAllocator {
    fn allocate(&mut self) -> u32;
}

impl<F: FnMut() -> u32> SpiAllocator for F {
    fn allocate(&mut self) -> u32 {
        self()
    }
}

/// What the caller wants protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase2Request {
    /// Proxy identities (IDci / IDcr); `None` = the two peer addresses.
    pub local_proxy: Option<IdPayload>,
    pub remote_proxy: Option<IdPayload>,
}

/// Summary of an installed child SA for `show crypto ipsec sa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSaInfo {
    pub inbound_spi: u32,
    pub outbound_spi: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// When we start a replacement (initiator side only).
    pub rekey_at: Option<Instant>,
    pub expires: Instant,
}

/// Summary of a phase 1 SA for `show crypto isakmp sa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsakmpSaInfo {
    pub id: SaId,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `show` state name (MM_NO_STATE, QM_IDLE, ...).
    pub state: &'static str,
    pub initiator: bool,
    pub aggressive: bool,
    pub policy: Option<IkePolicy>,
    /// When the SA was created.
    pub created: Instant,
    /// Replaced by a newer SA and about to be deleted (IOS status STALE).
    pub replaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NatTVariant {
    Rfc,
    Draft,
}

#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Retx {
    pub deadline: Instant,
    pub count: u32,
    pub msg: Transmit,
}

#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Dpd {
    pub seq: u32,
    pub outstanding: Option<(u32, Instant, u32)>,
}

/// One phase 1 SA and everything hanging off it.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Phase1 {
    pub id: SaId,
    pub initiator: bool,
    pub aggressive: bool,
    /// Where the handshake stands, with what that state holds.
    pub hs: Handshake,
    pub icookie: [u8; 8],
    pub rcookie: [u8; 8],
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub natt: Option<NatTVariant>,
    pub peer_dpd: bool,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub last_rx: Vec<u8>,
    pub last_tx: Option<Transmit>,
    pub retx: Option<Retx>,
    pub created: Instant,
    pub expires: Option<Instant>,
    pub last_heard: Instant,
    pub dpd: Dpd,
    pub qms: HashMap<u32, QuickMode>,
    pub pending: Vec<(Phase2Request, Option<u32>)>,
    pub next_keepalive: Option<Instant>,
    /// Addresses as first used, for NAT-D hashes (before any float).
    pub natd_local: SocketAddr,
    pub natd_remote: SocketAddr,
    /// When to start a replacement phase 1 (see `rekey.rs`).
    pub rekey_at: Option<Instant>,
    /// This SA was started to replace that one.
    pub replaces: Option<SaId>,
    /// Our replacement of this SA, in progress or established.
    pub replaced_by: Option<SaId>,
    /// A newer established SA with the peer exists: no DPD, no rekey.
    pub superseded: bool,
    /// Replaced: DELETE it once its Quick Modes in progress are done.
    pub retiring: bool,
    /// The peer matches a pre-shared key more specific than the wildcard.
    pub known_peer: bool,
    /// Responder: our own Main Mode with the peer that was under way when
    /// this one began (`collision.rs`).
    pub crossing: Option<SaId>,
    /// Responder: lost a crossing to our own, already established SA; it
    /// expires without a failure event.
    pub crossing_lost: bool,
    /// Responder: carries the requests of our own Main Mode, abandoned for
    /// this one; they start a phase 1 of their own if it fails.
    pub took_over: bool,
    /// Why we last refused one of the peer's handshake messages (bad
    /// hash, no proposal): the failure counted if the SA never comes up.
    pub refused: Option<crate::handshakes::Failure>,
}

/// "Old State = ... New State = ..." as IOS prints it. IOS passes through
/// states within one message's processing (IKE_R_MM3 between receiving
/// MM3 and sending MM4) that no SA rests in; they appear here only.
pub(crate) fn narrate(id: SaId, old: P1State, new: P1State) {
    ike!(
        "ISAKMP: ({}): Old State = {}  New State = {}",
        id,
        old.ios_name(),
        new.ios_name()
    );
}

impl Phase1 {
    pub fn state(&self) -> P1State {
        self.hs.state()
    }

    pub fn is_established(&self) -> bool {
        matches!(self.hs, Handshake::Complete(_))
    }

    pub fn nat(&self) -> bool {
        self.nat_local || self.nat_remote
    }

    pub fn role(&self) -> &'static str {
        if self.initiator { "(I)" } else { "(R)" }
    }
}

/// One Quick Mode exchange.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct QuickMode {
    /// Where it stands, with what that state holds.
    pub stage: QmStage,
    /// The selectors as we see them (local = ours).
    pub request: Phase2Request,
    pub last_tx: Option<Transmit>,
    pub last_rx: Vec<u8>,
    pub retx: Option<Retx>,
}

impl QuickMode {
    pub fn state(&self) -> QmState {
        self.stage.state()
    }

    /// Whether we started it.
    pub fn initiator(&self) -> bool {
        match self.stage {
            QmStage::IQm1(_) => true,
            QmStage::RQm2(_) => false,
            QmStage::Complete { initiator, .. } => initiator,
        }
    }

    pub fn done_at(&self) -> Option<Instant> {
        match self.stage {
            QmStage::Complete { done_at, .. } => Some(done_at),
            _ => None,
        }
    }

    pub fn in_progress(&self) -> bool {
        self.done_at().is_none()
    }

    /// Ours and still waiting for QM2.
    pub fn offer(&self) -> Option<&QmOffer> {
        match &self.stage {
            QmStage::IQm1(o) => Some(o),
            _ => None,
        }
    }
}

/// Book-keeping for an installed child SA.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct ChildRecord {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub outbound_spi: u32,
    pub soft: Option<Instant>,
    pub hard: Instant,
    pub request: Phase2Request,
}

/// The IKEv1 endpoint.
pub struct Endpoint<R: RngCore + CryptoRng> {
    pub(crate) cfg: EngineConfig,
    pub(crate) rng: R,
    pub(crate) spis: Box<dyn SpiAllocator + Send>,
    pub(crate) sas: Tracked<SaId, Phase1>,
    pub(crate) by_cookie: HashMap<([u8; 8], IpAddr), SaId>,
    pub(crate) children: Tracked<u32, ChildRecord>,
    /// Peer address -> phase 1 SA ids.
    pub(crate) sa_peers: PeerIndex<SaId>,
    /// Peer address -> inbound SPIs of its child SAs.
    pub(crate) child_peers: PeerIndex<u32>,
    /// (peer, outbound SPI) -> inbound SPI, for DELETEs naming the peer's SPI.
    pub(crate) by_outbound: HashMap<(IpAddr, u32), u32>,
    /// Responder phase 1 SAs still negotiating (`admission.rs`).
    pub(crate) half_open: crate::admission::HalfOpen,
    /// Earliest deadline of each phase 1 SA (its own and its Quick Modes').
    pub(crate) sa_deadlines: TimerIndex<SaId>,
    /// Earliest deadline (soft or hard lifetime) of each child SA.
    pub(crate) child_deadlines: TimerIndex<u32>,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) next_id: SaId,
    pub(crate) stats: crate::admission::EngineStats,
    /// Send the third Aggressive Mode message in the clear, as strongSwan
    /// does (tests of the responder side).
    #[cfg(test)]
    pub(crate) am3_in_clear: bool,
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    pub fn new(cfg: EngineConfig, rng: R, spis: Box<dyn SpiAllocator + Send>) -> Self {
        let first_id = cfg.conn_ids.0;
        Endpoint {
            cfg,
            rng,
            spis,
            sas: Tracked::new(),
            by_cookie: HashMap::new(),
            children: Tracked::new(),
            sa_peers: PeerIndex::new(),
            child_peers: PeerIndex::new(),
            by_outbound: HashMap::new(),
            half_open: crate::admission::HalfOpen::new(),
            sa_deadlines: TimerIndex::new(),
            child_deadlines: TimerIndex::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: first_id,
            stats: Default::default(),
            #[cfg(test)]
            am3_in_clear: false,
        }
    }

    /// A copy of this endpoint and all its state, drawing SPIs from
    /// `spis`: the post-authentication fuzz target starts every input
    /// from one handshake (`--cfg fuzzing` builds only).
    #[cfg(fuzzing)]
    pub fn fuzz_clone(&self, spis: Box<dyn SpiAllocator + Send>) -> Self
    where
        R: Clone,
    {
        Endpoint {
            cfg: self.cfg.clone(),
            rng: self.rng.clone(),
            spis,
            sas: self.sas.clone(),
            by_cookie: self.by_cookie.clone(),
            children: self.children.clone(),
            sa_peers: self.sa_peers.clone(),
            child_peers: self.child_peers.clone(),
            by_outbound: self.by_outbound.clone(),
            half_open: self.half_open.clone(),
            sa_deadlines: self.sa_deadlines.clone(),
            child_deadlines: self.child_deadlines.clone(),
            transmits: self.transmits.clone(),
            events: self.events.clone(),
            next_id: self.next_id,
            stats: self.stats,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The generator keys, nonces and cookies come from (a long-running
    /// caller reseeds it).
    pub fn rng_mut(&mut self) -> &mut R {
        &mut self.rng
    }

    /// Replace the configuration; existing SAs keep what they negotiated.
    pub fn set_config(&mut self, cfg: EngineConfig) {
        self.cfg = cfg;
        // The DPD interval is part of every established SA's deadline.
        self.sas.touch_all();
        self.sync_timers();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What the engine refused or threw away so far.
    pub fn stats(&self) -> crate::admission::EngineStats {
        self.stats
    }

    /// Phase 1 SAs for `show crypto isakmp sa`.
    pub fn isakmp_sas(&self) -> Vec<IsakmpSaInfo> {
        self.sas
            .values()
            .map(|s| IsakmpSaInfo {
                id: s.id,
                local: s.local,
                remote: s.remote,
                state: s.state().show_name(),
                initiator: s.initiator,
                aggressive: s.aggressive,
                policy: s.hs.policy(),
                created: s.created,
                replaced: s.retiring || s.superseded,
            })
            .collect()
    }

    /// `show crypto isakmp sa` state of one SA.
    pub fn state_name(&self, id: SaId) -> Option<&'static str> {
        self.sas.get(&id).map(|s| s.state().show_name())
    }

    /// Wireshark `ikev1_decryption_table` line for phase 1 SA `id`, for an
    /// explicitly configured key-log file only.
    pub fn ike_keylog_line(&self, id: SaId) -> Option<String> {
        let s = self.sas.get(&id)?;
        let k = s.hs.keyed()?;
        Some(crate::keylog::ikev1_line(&s.icookie, &k.keys.enc_key))
    }

    /// Phase 1 keys of SA `id` and the last phase 1 CBC block Quick Mode
    /// and informational IVs derive from: for the post-authentication fuzz
    /// target only (`cargo fuzz` builds with `--cfg fuzzing`), never in a
    /// normal build.
    #[cfg(fuzzing)]
    pub fn fuzz_phase1_keys(&self, id: SaId) -> Option<(&Phase1Keys, &[u8], [u8; 8], [u8; 8])> {
        let s = self.sas.get(&id)?;
        let k = s.hs.keyed()?;
        Some((&k.keys, &k.iv, s.icookie, s.rcookie))
    }

    /// Installed child SAs for `show crypto ipsec sa`.
    pub fn child_sas(&self) -> Vec<ChildSaInfo> {
        self.children
            .iter()
            .map(|(spi, c)| ChildSaInfo {
                inbound_spi: *spi,
                outbound_spi: c.outbound_spi,
                local: c.local,
                remote: c.remote,
                rekey_at: c.soft,
                expires: c.hard,
            })
            .collect()
    }

    /// Inbound SPIs of installed child SAs.
    pub fn child_spis(&self) -> Vec<u32> {
        self.children.keys().copied().collect()
    }

    /// The data plane saw traffic from `peer`: it is alive (DPD is idle-driven).
    pub fn note_traffic(&mut self, now: Instant, peer: IpAddr) {
        for id in self.sa_peers.list(peer) {
            if let Some(s) = self.sas.get_mut(&id) {
                s.last_heard = now;
            }
        }
        self.sync_timers();
    }

    /// Insert a child SA record, keeping the peer and SPI indexes.
    pub(crate) fn insert_child(&mut self, inbound_spi: u32, c: ChildRecord) {
        // An SPI handed out again by the allocator replaces the old record.
        self.remove_child(inbound_spi);
        let peer = c.remote.ip();
        self.child_peers.insert(peer, inbound_spi);
        self.by_outbound.insert((peer, c.outbound_spi), inbound_spi);
        self.children.insert(inbound_spi, c);
    }

    /// Remove a child SA record and its index entries.
    pub(crate) fn remove_child(&mut self, inbound_spi: u32) -> Option<ChildRecord> {
        let c = self.children.remove(&inbound_spi)?;
        let peer = c.remote.ip();
        self.child_peers.remove(peer, inbound_spi);
        if self.by_outbound.get(&(peer, c.outbound_spi)) == Some(&inbound_spi) {
            // The peer may have chosen this SPI for another SA too: name that one.
            let other = self.child_peers.get(peer).find(|s| {
                self.children
                    .get(s)
                    .is_some_and(|o| o.outbound_spi == c.outbound_spi)
            });
            match other {
                Some(o) => self.by_outbound.insert((peer, c.outbound_spi), o),
                None => self.by_outbound.remove(&(peer, c.outbound_spi)),
            };
        }
        Some(c)
    }

    /// The established, not retiring phase 1 SA with `peer` that new Quick
    /// Modes, DELETEs and DPD use: the newest.
    pub(crate) fn preferred_sa(&self, peer: IpAddr) -> Option<SaId> {
        let up = |id: &SaId| self.sas.get(id).is_some_and(Phase1::is_established);
        let retiring = |id: &SaId| self.sas.get(id).is_some_and(|s| s.retiring);
        (self.sa_peers.get(peer).rev())
            .find(|id| up(id) && !retiring(id))
            .or_else(|| self.sa_peers.get(peer).rev().find(up))
    }

    pub(crate) fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    pub(crate) fn new_cookie(&mut self) -> [u8; 8] {
        loop {
            let mut c = [0u8; 8];
            self.rng.fill_bytes(&mut c);
            if c != [0; 8] {
                return c;
            }
        }
    }

    pub(crate) fn alloc_id(&mut self) -> SaId {
        let id = self.next_id;
        self.next_id += self.cfg.conn_ids.1.max(1);
        id
    }

    /// Queue a datagram for SA `id`, adding the non-ESP marker on port
    /// 4500; nothing (`None`) for an SA that is gone.
    pub(crate) fn queue(&mut self, id: SaId, bytes: Vec<u8>) -> Option<Transmit> {
        let s = self.sas.get(&id)?;
        let payload = frame(s.local, s.remote, bytes);
        let t = Transmit {
            local: s.local,
            remote: s.remote,
            payload,
        };
        ike!(
            "ISAKMP ({}): sending packet to {} my_port {} peer_port {} {} {}",
            s.id,
            s.remote.ip(),
            s.local.port(),
            s.remote.port(),
            s.role(),
            s.state().debug_tag()
        );
        self.transmits.push_back(t.clone());
        Some(t)
    }

    /// Send a phase 1 message, remember it for duplicates and arm retransmission.
    pub(crate) fn send_p1(&mut self, now: Instant, id: SaId, bytes: Vec<u8>, retransmit: bool) {
        let Some(t) = self.queue(id, bytes) else {
            return;
        };
        let initial = self.cfg.retransmit_initial;
        let Some(s) = self.sas.get_mut(&id) else {
            return;
        };
        s.last_tx = Some(t.clone());
        s.retx = retransmit.then(|| Retx {
            deadline: now + initial,
            count: 0,
            msg: t,
        });
    }

    /// Build a header for SA `id`. An SA that is gone has no cookies
    /// (zeros); `queue` sends nothing for it anyway.
    pub(crate) fn header(&self, id: SaId, exch: u8, mid: u32) -> Header {
        let (icookie, rcookie) = self
            .sas
            .get(&id)
            .map_or(([0; 8], [0; 8]), |s| (s.icookie, s.rcookie));
        Header {
            icookie,
            rcookie,
            next_payload: 0,
            version: 0x10,
            exchange: exch,
            flags: 0,
            message_id: mid,
            length: 0,
        }
    }

    /// Emit `payloads` encrypted under the SA's key with `iv`; returns the
    /// bytes and the next IV (last ciphertext block).
    pub(crate) fn encrypt(
        keys: &Phase1Keys,
        mut header: Header,
        payloads: &[Payload],
        iv: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let (first, mut body) = wire::emit_payloads(payloads);
        let bs = keys.encr.block_size();
        // At least one block: the next IV is the last ciphertext block.
        let pad = if body.is_empty() {
            bs
        } else {
            (bs - body.len() % bs) % bs
        };
        if pad > 0 {
            body.extend(std::iter::repeat_n(0u8, pad - 1));
            body.push((pad - 1) as u8);
        }
        keys.encr.encrypt(&keys.enc_key, iv, &mut body).expect(
            "the key is derived at the cipher's length, every IV is a whole block \
             (phase1_iv, message_iv or a last ciphertext block) and the body is padded to blocks",
        );
        let next_iv = body[body.len() - bs..].to_vec();
        header.next_payload = first;
        header.flags |= flags::ENCRYPTION;
        header.length = (wire::HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        header.emit(&mut out);
        out.extend_from_slice(&body);
        (out, next_iv)
    }

    /// Decrypt a body; returns plaintext and the next IV.
    pub(crate) fn decrypt(
        keys: &Phase1Keys,
        body: &[u8],
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), HandleError> {
        let bs = keys.encr.block_size();
        if body.is_empty() || !body.len().is_multiple_of(bs) {
            return Err(HandleError::Decrypt);
        }
        let mut b = body.to_vec();
        keys.encr
            .decrypt(&keys.enc_key, iv, &mut b)
            .map_err(|_| HandleError::Decrypt)?;
        Ok((b, body[body.len() - bs..].to_vec()))
    }

    /// Process one datagram. `local`/`remote` carry the UDP ports; on port
    /// 4500 the datagram must start with the non-ESP marker (a keepalive
    /// is accepted and ignored, ESP refused).
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), HandleError> {
        let message = if local.port() == NATT_PORT || remote.port() == NATT_PORT {
            match natt::demux(datagram) {
                Natt::Ike(m) => m,
                Natt::Keepalive => return Ok(()),
                Natt::Esp(_) | Natt::Invalid => return Err(HandleError::NotIke),
            }
        } else {
            datagram
        };
        self.handle_message(now, local, remote, message)
    }

    /// Process one ISAKMP message with no non-ESP marker in front, on
    /// either port: for a caller that already demultiplexed a NAT-T
    /// datagram with `dmvpn_wire::natt::demux`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        message: &[u8],
    ) -> Result<(), HandleError> {
        let r = self.handle_inner(now, local, remote, message);
        self.sync_timers();
        r
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let (h, _) = Header::parse(data)?;
        let key = (h.icookie, remote.ip());
        let Some(&id) = self.by_cookie.get(&key) else {
            if h.rcookie == [0; 8] && h.exchange == exchange::MAIN {
                return self.mm_responder_new(now, local, remote, data);
            }
            if h.rcookie == [0; 8] && h.exchange == exchange::AGGRESSIVE {
                if !self.cfg.answer_aggressive {
                    // IOS: `crypto isakmp aggressive-mode disable`.
                    self.stats.aggressive_refused += 1;
                    ike!(
                        "ISAKMP: (0):Aggressive mode is disabled, dropping Aggressive Mode request from {}",
                        remote.ip()
                    );
                    return Err(HandleError::AggressiveRefused);
                }
                return self.am_responder_new(now, local, remote, data);
            }
            ike!(
                "ISAKMP: received packet from {} with unknown cookies, dropped",
                remote.ip()
            );
            return Err(HandleError::UnknownSa(remote.ip()));
        };
        let adopted = {
            // by_cookie names only SAs in the table (new_phase1 and the two
            // removals keep it so); a stale entry would be an unknown SA.
            let Some(s) = self.sas.get_mut(&id) else {
                return Err(HandleError::UnknownSa(remote.ip()));
            };
            ike!(
                "ISAKMP ({}): received packet from {} dport {} sport {} Global {} {}",
                id,
                remote.ip(),
                local.port(),
                remote.port(),
                s.role(),
                s.state().debug_tag()
            );
            if h.message_id == 0 && data == s.last_rx.as_slice() {
                // A retransmission of the peer's last message: replay our answer.
                if let Some(t) = s.last_tx.clone() {
                    ike!(
                        "ISAKMP ({}): retransmission detected, resending last reply",
                        id
                    );
                    self.transmits.push_back(t);
                }
                return Ok(());
            }
            // The responder's cookie, from its first answer; kept only if
            // that answer is taken, so garbage cannot lock the real one out.
            let adopted = s.rcookie == [0; 8] && h.rcookie != [0; 8];
            if adopted {
                s.rcookie = h.rcookie;
            } else if h.rcookie != s.rcookie && h.exchange != exchange::INFORMATIONAL {
                return Err(HandleError::UnknownSa(remote.ip()));
            }
            adopted
        };
        // Follow the peer's port (NAT-T float, NAT rebinding), but only if
        // the message turns out to be authentic.
        let Some(s) = self.sas.get_mut(&id) else {
            return Err(HandleError::UnknownSa(remote.ip()));
        };
        let (old_local, old_remote, heard) = (s.local, s.remote, s.last_heard);
        let follow = old_remote != remote && s.hs.keyed().is_some();
        if follow {
            s.remote = remote;
            s.local = local;
        }
        let r = match h.exchange {
            exchange::MAIN => self.mm_handle(now, id, h, data),
            exchange::AGGRESSIVE => self.am_handle(now, id, h, data),
            exchange::QUICK => self.qm_handle(now, id, h, data),
            exchange::INFORMATIONAL => self.info_handle(now, id, h, data),
            _ => Err(HandleError::Unexpected("unknown exchange type")),
        };
        if let Some(s) = self.sas.get_mut(&id) {
            if r.is_ok() {
                s.last_heard = now;
            } else {
                s.last_heard = heard;
                if follow {
                    s.remote = old_remote;
                    s.local = old_local;
                }
                if adopted && matches!(s.state(), P1State::IMm1 | P1State::IAm1) {
                    s.rcookie = [0; 8];
                }
                let handshake = matches!(h.exchange, exchange::MAIN | exchange::AGGRESSIVE);
                if let (true, false, Err(e)) = (handshake, s.is_established(), &r) {
                    s.refused = match e {
                        HandleError::BadHash => Some(Failure::AuthFailed),
                        HandleError::NoProposal => Some(Failure::NoProposalChosen),
                        HandleError::BadKe => Some(Failure::InvalidKe),
                        _ => s.refused,
                    };
                }
            }
        }
        // A replaced SA goes once its last Quick Mode is done: one on this
        // SA, or one on an older SA that lost a collision with the peer's.
        for sid in self.sa_peers.list(remote.ip()) {
            self.try_retire(now, sid);
        }
        r
    }

    /// Whether a phase 1 SA that a request may wait for exists with `peer`.
    pub(crate) fn has_usable_sa(&self, now: Instant, peer: IpAddr) -> bool {
        self.sa_peers
            .get(peer)
            .filter_map(|id| self.sas.get(&id))
            .any(|s| usable(s, now))
    }

    /// Whether we hold any other SA with `peer` (then INITIAL-CONTACT must not be sent).
    pub(crate) fn has_other_state(&self, peer: IpAddr, except: SaId) -> bool {
        self.sa_peers
            .get(peer)
            .filter(|id| *id != except)
            .filter_map(|id| self.sas.get(&id))
            .any(Phase1::is_established)
            || self.child_peers.has(peer)
    }

    /// Ask for IPsec SAs with `remote`; brings up phase 1 first if needed.
    pub fn initiate_phase2(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        req: Phase2Request,
    ) -> Result<(), CommandError> {
        let r = self.initiate_inner(now, local, remote, req, None);
        self.sync_timers();
        r
    }

    pub(crate) fn initiate_inner(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        req: Phase2Request,
        rekey_of: Option<u32>,
    ) -> Result<(), CommandError> {
        if self.cfg.policies.is_empty() || self.cfg.transform_sets.is_empty() {
            return Err(CommandError::NoPolicy);
        }
        // An established or in-progress phase 1 with this peer?
        // Prefer the newest established SA that is not being retired.
        let existing = self
            .sa_peers
            .get(remote.ip())
            .filter_map(|id| self.sas.get(&id))
            .filter(|s| usable(s, now))
            .max_by_key(|s| {
                let up = s.is_established();
                // Our own negotiation before a peer's bare first message.
                let proven = s.initiator || !crate::admission::unverified(s.state());
                (up && !s.retiring, up, proven, s.id)
            })
            .map(|s| (s.id, s.is_established()));
        // A request already being negotiated is not started twice (the data
        // plane may ask once per queued packet).
        let busy = self.sa_peers.get(remote.ip()).any(|id| {
            let Some(s) = self.sas.get(&id) else {
                return false;
            };
            s.pending.iter().any(|(r, k)| *r == req && *k == rekey_of)
                || s.qms
                    .values()
                    .any(|q| q.request == req && q.offer().is_some_and(|o| o.rekey_of == rekey_of))
        });
        // The peer is already negotiating these selectors with us: its
        // Quick Mode gives the pair this request asks for.
        if busy || (rekey_of.is_none() && self.peer_qm_coming(remote.ip(), &req)) {
            return Ok(());
        }
        match existing {
            Some((id, true)) => {
                self.qm_initiate(now, id, req, rekey_of);
                Ok(())
            }
            Some((id, false)) => {
                if let Some(s) = self.sas.get_mut(&id) {
                    s.pending.push((req, rekey_of));
                }
                Ok(())
            }
            None => {
                let psk = self
                    .cfg
                    .psk_for(remote.ip())
                    .ok_or(CommandError::NoPsk(remote.ip()))?
                    .key
                    .clone();
                let id = if self.cfg.initiates_aggressive(remote.ip()) {
                    self.am_initiate(now, local, remote, psk)
                        .ok_or(CommandError::NoPolicy)?
                } else {
                    let id = self.mm_initiate(now, local, remote, psk);
                    self.note_crossing_initiator(id);
                    id
                };
                if let Some(s) = self.sas.get_mut(&id) {
                    s.pending.push((req, rekey_of));
                }
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_phase1(
        &mut self,
        now: Instant,
        initiator: bool,
        aggressive: bool,
        icookie: [u8; 8],
        rcookie: [u8; 8],
        local: SocketAddr,
        remote: SocketAddr,
        hs: Handshake,
    ) -> SaId {
        let id = self.alloc_id();
        let s = Phase1 {
            id,
            initiator,
            aggressive,
            hs,
            icookie,
            rcookie,
            local,
            remote,
            natt: None,
            peer_dpd: false,
            nat_local: false,
            nat_remote: false,
            last_rx: vec![],
            last_tx: None,
            retx: None,
            created: now,
            expires: None,
            last_heard: now,
            dpd: Dpd {
                seq: 0,
                outstanding: None,
            },
            qms: HashMap::new(),
            pending: vec![],
            next_keepalive: None,
            natd_local: local,
            natd_remote: remote,
            rekey_at: None,
            replaces: None,
            replaced_by: None,
            superseded: false,
            retiring: false,
            known_peer: self.cfg.is_known_peer(remote.ip()),
            crossing: None,
            crossing_lost: false,
            took_over: false,
            refused: None,
        };
        self.stats.handshakes.phase1.started += 1;
        self.by_cookie.insert((icookie, remote.ip()), id);
        self.sa_peers.insert(remote.ip(), id);
        self.sas.insert(id, s);
        id
    }

    /// Remove a phase 1 SA (children survive, as on IOS). Quick Modes we
    /// had in progress on it move to another SA with the peer.
    pub(crate) fn drop_phase1(
        &mut self,
        now: Instant,
        id: SaId,
        reason: Reason,
        established: bool,
    ) {
        self.drop_phase1_inner(now, id, reason, established, true)
    }

    pub(crate) fn drop_phase1_inner(
        &mut self,
        now: Instant,
        id: SaId,
        reason: Reason,
        established: bool,
        rehome: bool,
    ) {
        if let Some(mut s) = self.sas.remove(&id) {
            self.by_cookie.remove(&(s.icookie, s.remote.ip()));
            self.sa_peers.remove(s.remote.ip(), id);
            self.half_open.remove(id);
            ike!("ISAKMP ({}): deleting SA reason \"{}\"", id, reason);
            if !established && !s.initiator && crate::admission::unverified(s.state()) {
                // Only a first message ever came from this source: not a
                // negotiation anyone is known to want (admission.rs).
                self.stats.half_open_expired += 1;
                self.stats.handshakes.phase1.fail(Failure::Unverified);
            } else if !established && s.crossing_lost {
                ike!("ISAKMP ({}): the peer abandoned this crossing exchange", id);
                self.stats.handshakes.phase1.fail(Failure::Superseded);
            } else if established {
                self.events.push_back(Event::Phase1Down {
                    id,
                    remote: s.remote,
                    reason: reason.clone(),
                });
            } else {
                let why = s.refused.unwrap_or(Failure::from(&reason));
                self.stats.handshakes.phase1.fail(why);
                self.events.push_back(Event::Phase1Failed {
                    remote: s.remote,
                    reason: reason.clone(),
                });
            }
            self.after_phase1_gone(now, &mut s, established, &reason, rehome);
        }
    }

    /// Move SA `id` from an authenticated handshake state to
    /// IKE_P1_COMPLETE, keeping only the keys and the running IV; the
    /// agreed policy. `None` when the SA is not in such a state.
    fn establish(&mut self, id: SaId) -> Option<IkePolicy> {
        self.transition(id, |hs| match hs {
            Handshake::IMm5(k, _)
            | Handshake::RMm4(k, _)
            | Handshake::IAm2(k)
            | Handshake::RAm2(k, ..)
            | Handshake::Complete(k) => Handshake::Complete(k),
            other => other,
        });
        Some(self.sas.get(&id)?.hs.established()?.policy)
    }

    /// Phase 1 finished (the peer authenticated, our last message sent;
    /// `from` is the state IOS names last): the keys move into the
    /// established state; event, lifetime, pending Quick Modes.
    pub(crate) fn p1_complete(&mut self, now: Instant, id: SaId, from: P1State) {
        let Some(policy) = self.establish(id) else {
            return;
        };
        narrate(id, from, P1State::Complete);
        let (remote, local, life, pending, nat) = {
            let Some(s) = self.sas.get_mut(&id) else {
                return;
            };
            s.retx = None;
            let life = policy.lifetime;
            s.expires = Some(now + Duration::from_secs(life as u64));
            s.last_heard = now;
            (
                s.remote,
                s.local,
                life,
                std::mem::take(&mut s.pending),
                s.nat_local,
            )
        };
        ike!(
            "ISAKMP ({}): SA has been authenticated with {}",
            id,
            remote.ip()
        );
        ike!("ISAKMP ({}): Started lifetime timer: {}.", id, life);
        if nat && let Some(s) = self.sas.get_mut(&id) {
            s.next_keepalive = Some(now + self.cfg.nat_keepalive);
        }
        self.events.push_back(Event::Phase1Up { id, local, remote });
        self.stats.handshakes.phase1.completed += 1;
        self.schedule_p1_rekey(id, life);
        for (req, rekey_of) in pending {
            // Both ends asked at once: while our phase 1 came up, the
            // peer's own phase 1 carried its Quick Mode for the same
            // selectors, which is under way or already done. A second
            // pair would only duplicate it.
            if rekey_of.is_none()
                && (self.peer_qm_coming(remote.ip(), &req) || self.has_child(remote.ip(), &req))
            {
                ike!(
                    "ISAKMP ({}): peer's Quick Mode covers the pending request, not starting another",
                    id
                );
                continue;
            }
            self.qm_initiate(now, id, req, rekey_of);
        }
        self.reconcile_peer(now, remote.ip());
    }

    /// A Quick Mode the peer started for `req` (our view of the
    /// selectors) that we are still answering.
    fn peer_qm_coming(&self, peer: IpAddr, req: &Phase2Request) -> bool {
        self.sa_peers
            .get(peer)
            .filter_map(|id| self.sas.get(&id))
            .flat_map(|s| s.qms.values())
            .any(|q| matches!(q.stage, QmStage::RQm2(_)) && q.request == *req)
    }

    /// An installed child SA with `peer` for `req`.
    fn has_child(&self, peer: IpAddr, req: &Phase2Request) -> bool {
        self.children
            .values()
            .any(|c| c.remote.ip() == peer && c.request == *req)
    }

    /// Delete a child SA by its inbound SPI, telling the peer.
    pub fn delete_child(&mut self, now: Instant, inbound_spi: u32) {
        self.delete_child_inner(now, inbound_spi);
        self.sync_timers();
    }

    fn delete_child_inner(&mut self, now: Instant, inbound_spi: u32) {
        if let Some(c) = self.remove_child(inbound_spi) {
            self.send_delete_esp(now, c.remote, inbound_spi);
            self.events.push_back(Event::ChildSaDeleted {
                remote: c.remote,
                inbound_spi,
                outbound_spi: c.outbound_spi,
                reason: Reason::Requested,
            });
        }
    }

    /// `clear crypto sa peer`: delete everything with `peer`, telling it.
    pub fn delete_peer(&mut self, now: Instant, peer: IpAddr) {
        for s in self.child_peers.list(peer) {
            self.delete_child_inner(now, s);
        }
        for id in self.sa_peers.list(peer) {
            // Dropping one SA may have retired and dropped a later one.
            let Some(est) = self.sas.get(&id).map(Phase1::is_established) else {
                continue;
            };
            self.send_delete_isakmp(now, id);
            self.drop_phase1_inner(now, id, Reason::Cleared, est, false);
        }
        self.sync_timers();
    }

    /// Remove all state for `peer` without telling it (peer dead / INITIAL-CONTACT).
    pub(crate) fn purge_peer(
        &mut self,
        now: Instant,
        peer: IpAddr,
        keep: Option<SaId>,
        reason: Reason,
    ) {
        self.purge_peer_inner(now, peer, keep, reason, false)
    }

    /// INITIAL-CONTACT: forget the peer's established SAs; negotiations in
    /// progress (e.g. our own simultaneous initiation) are left alone.
    pub(crate) fn purge_for_initial_contact(&mut self, now: Instant, peer: IpAddr, keep: SaId) {
        self.purge_peer_inner(now, peer, Some(keep), Reason::InitialContact, true)
    }

    fn purge_peer_inner(
        &mut self,
        now: Instant,
        peer: IpAddr,
        keep: Option<SaId>,
        reason: Reason,
        established_only: bool,
    ) {
        for s in self.child_peers.list(peer) {
            let Some(c) = self.remove_child(s) else {
                continue;
            };
            self.events.push_back(Event::ChildSaDeleted {
                remote: c.remote,
                inbound_spi: s,
                outbound_spi: c.outbound_spi,
                reason: reason.clone(),
            });
        }
        let ids: Vec<(SaId, bool)> = self
            .sa_peers
            .get(peer)
            .filter_map(|id| self.sas.get(&id))
            .filter(|s| Some(s.id) != keep)
            .filter(|s| !established_only || s.is_established())
            .map(|s| (s.id, s.is_established()))
            .collect();
        for (id, est) in ids {
            // The kept SA (INITIAL-CONTACT) may take over our Quick Modes.
            self.drop_phase1_inner(now, id, reason.clone(), est, keep.is_some());
        }
    }

    /// Earliest deadline the caller should wake us at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Entries touched since the last sync are recomputed from the SA
        // itself; every other indexed deadline is current.
        let sa = self
            .sa_deadlines
            .iter()
            .find(|(_, id)| !self.sas.is_dirty(id))
            .map(|(t, _)| t);
        let child = self
            .child_deadlines
            .iter()
            .find(|(_, spi)| !self.children.is_dirty(spi))
            .map(|(t, _)| t);
        let dirty_sa = self
            .sas
            .dirty()
            .filter_map(|id| self.sas.get(id))
            .filter_map(|s| p1_deadline(&self.cfg, s));
        let dirty_child = self
            .children
            .dirty()
            .filter_map(|spi| self.children.get(spi))
            .map(child_deadline);
        sa.into_iter()
            .chain(child)
            .chain(dirty_sa)
            .chain(dirty_child)
            .min()
    }

    /// Re-derive the indexed deadlines of every SA touched since the last sync.
    pub(crate) fn sync_timers(&mut self) {
        for id in self.sas.take_dirty() {
            let s = self.sas.get(&id);
            let at = s.and_then(|s| p1_deadline(&self.cfg, s));
            self.sa_deadlines.set(id, at);
            let class = s.and_then(crate::admission::HalfOpenClass::of);
            self.half_open.set(id, class);
        }
        for spi in self.children.take_dirty() {
            let at = self.children.get(&spi).map(child_deadline);
            self.child_deadlines.set(spi, at);
        }
    }

    /// The earliest deadline by scanning every SA: the reference the index
    /// must agree with.
    #[cfg(test)]
    pub(crate) fn scan_timeout(&self) -> Option<Instant> {
        let sa = self.sas.values().filter_map(|s| p1_deadline(&self.cfg, s));
        let child = self.children.values().map(child_deadline);
        sa.chain(child).min()
    }

    /// Run timers: retransmissions, expiry, rekey, DPD, keepalives.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sync_timers();
        // Due SAs in id order, as a full scan would visit them.
        let mut ids: Vec<SaId> = self.sa_deadlines.due(now).collect();
        ids.sort_unstable();
        for id in ids {
            // An earlier SA's timers may have purged this one (dead peer).
            if self.sas.contains_key(&id) {
                self.p1_timers(now, id);
            }
        }
        self.sync_timers();
        // Child SA rekey (soft) and expiry (hard).
        let mut due: Vec<u32> = self.child_deadlines.due(now).collect();
        due.sort_unstable();
        for spi in due {
            let Some(c) = self.children.get_mut(&spi) else {
                continue;
            };
            if c.hard <= now {
                let Some(c) = self.remove_child(spi) else {
                    continue;
                };
                self.send_delete_esp(now, c.remote, spi);
                self.events.push_back(Event::ChildSaDeleted {
                    remote: c.remote,
                    inbound_spi: spi,
                    outbound_spi: c.outbound_spi,
                    reason: Reason::LifetimeExpired,
                });
            } else if c.soft.is_some_and(|s| s <= now) {
                c.soft = None;
                // Negotiate from port 500 again; a new phase 1 floats if it must.
                let local = SocketAddr::new(c.local.ip(), 500);
                let remote = SocketAddr::new(c.remote.ip(), 500);
                let req = c.request.clone();
                if let Err(e) = self.initiate_inner(now, local, remote, req, Some(spi)) {
                    ike!("IPSEC: cannot rekey SPI {:#x}: {}; it will expire", spi, e);
                }
            }
        }
        self.sync_timers();
    }

    fn p1_timers(&mut self, now: Instant, id: SaId) {
        // Requests that waited on a peer's first message that never proved
        // real: they start their own phase 1 now.
        let waited = {
            let Some(s) = self.sas.get_mut(&id) else {
                return;
            };
            if awaits_verification(s) && now >= s.created + VERIFY_GRACE {
                Some((s.local, s.remote, std::mem::take(&mut s.pending)))
            } else {
                None
            }
        };
        if let Some((local, remote, reqs)) = waited {
            for (req, rekey_of) in reqs {
                let _ = self.initiate_inner(now, local, remote, req, rekey_of);
            }
        }
        let max = self.cfg.retransmit_max;
        let dpd_cfg = self.cfg.dpd;
        let ka = self.cfg.nat_keepalive;
        let mut resend = vec![];
        let mut fail: Option<(Reason, bool)> = None;
        let mut send_dpd = false;
        let mut dead = false;
        // A Quick Mode we started got no answer at all: the peer is gone or
        // cannot decrypt what this SA sends. Either way it is useless.
        let mut qm_unanswered = false;
        let peer = {
            let Some(s) = self.sas.get_mut(&id) else {
                return;
            };
            let shown = s.state().show_name();
            if let Some(r) = &mut s.retx
                && r.deadline <= now
            {
                if r.count >= max {
                    fail = Some((Reason::RetransmissionsExhausted, false));
                } else {
                    r.count += 1;
                    r.deadline = now + self.cfg.retransmit_initial * 2u32.pow(r.count.min(6));
                    ike!(
                        "ISAKMP ({}): retransmitting phase 1 {}... (attempt {})",
                        id,
                        shown,
                        r.count
                    );
                    resend.push(r.msg.clone());
                }
            }
            if s.expires.is_some_and(|e| e <= now) {
                fail = Some((Reason::LifetimeExpired, true));
            }
            let mut qm_fail = vec![];
            for (mid, q) in s.qms.iter_mut() {
                if let Some(r) = &mut q.retx
                    && r.deadline <= now
                {
                    if r.count >= max {
                        qm_fail.push(*mid);
                    } else {
                        r.count += 1;
                        r.deadline = now + self.cfg.retransmit_initial * 2u32.pow(r.count.min(6));
                        resend.push(r.msg.clone());
                    }
                }
            }
            s.qms
                .retain(|_, q| q.done_at().is_none_or(|d| d + QM_LINGER > now));
            if s.qms.is_empty() {
                // An idle SA's table would keep its capacity (1.8 KB) for
                // its whole life: a hub has one per spoke.
                s.qms.shrink_to_fit();
            }
            for mid in qm_fail {
                let Some(q) = s.qms.remove(&mid) else {
                    continue;
                };
                qm_unanswered |= q.initiator();
                ike!("ISAKMP ({}): Quick Mode {} timed out", id, mid);
                self.stats.handshakes.quick_mode.fail(Failure::Timeout);
                self.events.push_back(Event::Phase2Failed {
                    remote: s.remote,
                    reason: Reason::QuickModeRetransmissionsExhausted,
                });
            }
            if s.next_keepalive.is_some_and(|k| k <= now) {
                s.next_keepalive = Some(now + ka);
                resend.push(Transmit {
                    local: s.local,
                    remote: s.remote,
                    payload: vec![0xff],
                });
            }
            if let (Some(d), true) = (dpd_cfg, dpd_runs(s)) {
                match s.dpd.outstanding {
                    None if s.last_heard + d.interval <= now => send_dpd = true,
                    Some((_, deadline, tries)) if deadline <= now => {
                        if tries >= d.max_retries {
                            dead = true;
                        } else {
                            send_dpd = true;
                        }
                    }
                    _ => {}
                }
            }
            s.remote.ip()
        };
        self.transmits.extend(resend);
        if dead {
            ike!(
                "ISAKMP ({}): DPD: peer {} is dead, clearing its SAs",
                id,
                peer
            );
            self.events.push_back(Event::PeerDead { remote: peer });
            self.purge_peer(now, peer, None, Reason::DeadPeer);
            return;
        }
        if qm_unanswered && fail.is_none() {
            tracing::warn!(
                target: "dmvpn::ike",
                peer = %peer,
                conn_id = id,
                "ISAKMP ({}): Quick Mode with {} unanswered after {} retransmissions (peer gone, or it cannot decrypt this ISAKMP SA); deleting the ISAKMP SA",
                id,
                peer,
                max
            );
            self.send_delete_isakmp(now, id);
            self.drop_phase1(now, id, Reason::QuickModeUnanswered, true);
            return;
        }
        if send_dpd {
            self.send_dpd(now, id);
        }
        if let Some((reason, est)) = fail {
            if est && reason == Reason::LifetimeExpired {
                self.send_delete_isakmp(now, id);
            }
            let est = est || self.sas.get(&id).is_some_and(Phase1::is_established);
            self.drop_phase1(now, id, reason, est);
            return;
        }
        if self
            .sas
            .get(&id)
            .and_then(|s| s.rekey_at)
            .is_some_and(|r| r <= now)
        {
            self.start_p1_rekey(now, id, false);
        }
        // Its last Quick Mode may just have timed out.
        self.try_retire(now, id);
    }

    /// The ID payload we send in phase 1.
    pub(crate) fn local_id(&self, local: SocketAddr) -> IdPayload {
        match &self.cfg.local_id {
            Some(id) => IdPayload {
                protocol: 17,
                port: 500,
                id: id.clone(),
            },
            None => IdPayload {
                protocol: 17,
                port: 500,
                id: wire::Identity::from_ip(local.ip()),
            },
        }
    }

    /// Vendor IDs we advertise in the first message.
    pub(crate) fn our_vendor_ids(&self) -> Vec<Payload> {
        let mut v = vec![];
        if self.cfg.nat_t != crate::policy::NatTMode::Disabled {
            for x in [
                Vendor::NatTRfc,
                Vendor::NatTDraft03,
                Vendor::NatTDraft02N,
                Vendor::NatTDraft02,
            ] {
                if x != Vendor::NatTRfc || self.cfg.nat_t_rfc {
                    v.push(Payload::VendorId(x.bytes()));
                }
            }
        }
        v.push(Payload::VendorId(Vendor::Dpd.bytes()));
        v
    }

    /// Process the peer's vendor IDs.
    pub(crate) fn note_vendor_ids(&mut self, id: SaId, payloads: &[Payload]) {
        let v = self.peer_vendor_ids(id, payloads);
        self.apply_vendor_ids(id, v);
    }

    /// What the peer's vendor IDs say (narrated as IOS does).
    pub(crate) fn peer_vendor_ids(
        &self,
        id: SaId,
        payloads: &[Payload],
    ) -> crate::main_mode::PeerVendors {
        let natt_enabled = self.cfg.nat_t != crate::policy::NatTMode::Disabled;
        let rfc_ok = self.cfg.nat_t_rfc;
        let mut dpd = false;
        let mut best = 0u8;
        for p in payloads {
            if let Payload::VendorId(b) = p {
                ike!("ISAKMP ({}): processing vendor id payload", id);
                let v = Vendor::classify(b);
                match v {
                    Vendor::Unknown => {
                        ike!(
                            "ISAKMP ({}): vendor ID seems Unity/DPD but major mismatch",
                            id
                        )
                    }
                    v => ike!("ISAKMP ({}): vendor ID is {}", id, v.ios_name()),
                }
                dpd |= v == Vendor::Dpd;
                if v != Vendor::NatTRfc || rfc_ok {
                    best = best.max(v.natt_rank());
                }
            }
        }
        let natt = (natt_enabled && best > 0).then_some(if best == 3 {
            NatTVariant::Rfc
        } else {
            NatTVariant::Draft
        });
        crate::main_mode::PeerVendors { dpd, natt }
    }

    pub(crate) fn apply_vendor_ids(&mut self, id: SaId, v: crate::main_mode::PeerVendors) {
        if let Some(s) = self.sas.get_mut(&id) {
            s.peer_dpd |= v.dpd;
            if v.natt.is_some() {
                s.natt = v.natt;
            }
        }
    }

    /// Replace SA `id`'s handshake state with what `f` makes of it (the
    /// SA is taken out of the table meanwhile, so `f` owns the old state).
    pub(crate) fn transition(&mut self, id: SaId, f: impl FnOnce(Handshake) -> Handshake) {
        if let Some(mut s) = self.sas.remove(&id) {
            let hs = s.hs;
            s.hs = f(hs);
            self.sas.insert(id, s);
        }
    }
}

/// Earliest timer of one phase 1 SA: retransmission, lifetime, NAT
/// keepalive, DPD (probe due or answer overdue) and its Quick Modes'
/// retransmissions and post-completion clean-up.
pub(crate) fn p1_deadline(cfg: &EngineConfig, s: &Phase1) -> Option<Instant> {
    let dpd_idle = match (cfg.dpd, dpd_runs(s)) {
        (Some(d), true) if s.dpd.outstanding.is_none() => Some(s.last_heard + d.interval),
        _ => None,
    };
    let rekey = s
        .rekey_at
        .filter(|_| !s.superseded && !s.retiring && s.replaced_by.is_none());
    let own = [
        s.retx.as_ref().map(|r| r.deadline),
        awaits_verification(s).then(|| s.created + VERIFY_GRACE),
        s.expires,
        s.next_keepalive,
        s.dpd.outstanding.map(|o| o.1),
        dpd_idle,
        rekey,
    ];
    let qms = s.qms.values().flat_map(|q| {
        [
            q.retx.as_ref().map(|r| r.deadline),
            q.done_at().map(|d| d + QM_LINGER),
        ]
    });
    own.into_iter().chain(qms).flatten().min()
}

/// How long a request of ours waits on a peer's bare first message before
/// starting its own phase 1: both ends of a new spoke-to-spoke path ask at
/// once, and one phase 1 between them is better than two. A real peer
/// answers our second message well within it; a spoofed first message
/// never does, and then costs our request this much delay, no more.
pub(crate) const VERIFY_GRACE: Duration = Duration::from_secs(2);

/// Whether a request may wait for phase 1 SA `s`: established, ours, a
/// responder whose source answered our second message, or a bare first
/// message younger than [`VERIFY_GRACE`].
fn usable(s: &Phase1, now: Instant) -> bool {
    s.initiator
        || s.is_established()
        || !crate::admission::unverified(s.state())
        || now < s.created + VERIFY_GRACE
}

/// A peer's bare first message with requests of ours waiting on it.
fn awaits_verification(s: &Phase1) -> bool {
    !s.initiator && crate::admission::unverified(s.state()) && !s.pending.is_empty()
}

/// DPD runs on the newest established SA with a peer that supports it.
fn dpd_runs(s: &Phase1) -> bool {
    s.peer_dpd && s.is_established() && !s.superseded && !s.retiring
}

/// Earliest timer of one child SA: rekey (soft) or expiry (hard).
pub(crate) fn child_deadline(c: &ChildRecord) -> Instant {
    c.soft.map_or(c.hard, |s| s.min(c.hard))
}
