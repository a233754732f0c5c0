//! Security association database: inbound SAs by SPI, outbound SAs by the
//! peer's NBMA address, with per-SA counters shaped like IOS
//! `show crypto ipsec sa`.
//!
//! An SA is used through `&self` only, so the forwarding threads of one
//! node share it behind an `Arc` ([`Sadb::share`]): sequence numbers are
//! taken with one atomic add, counters are atomic, and the replay window
//! has its own lock, held for its bit operations and never during
//! cryptography. One thread alone pays a few uncontended atomic
//! operations per packet for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use thiserror::Error;

use super::esp::{self, AuthAlg, EncAlg, EspDrop, IvGen, KeyError, Opened, SealError, Transform};
use super::replay::ReplayWindow;

/// ESP encapsulation mode (RFC 4303 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Payload is the upper-layer packet (GRE for DMVPN).
    Transport,
    /// Payload is a whole inner IP packet.
    Tunnel,
}

/// Algorithms and keys of one SA direction, as negotiated by IKE.
pub struct SaParams<'a> {
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    pub enc: EncAlg,
    pub enc_key: &'a [u8],
    pub auth: AuthAlg,
    pub auth_key: &'a [u8],
    /// Kilobyte lifetime (IOS `lifetime kilobytes`); `None` for no limit.
    pub lifetime_kb: Option<u64>,
}

/// Counters of one SA, named after the IOS `show crypto ipsec sa` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaCounters {
    pub pkts_encaps: u64,
    pub pkts_encrypt: u64,
    pub pkts_digest: u64,
    pub pkts_decaps: u64,
    pub pkts_decrypt: u64,
    pub pkts_verify: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// `#pkts verify failed` (ICV mismatch).
    pub verify_failed: u64,
    /// `#pkts replay failed`.
    pub replay_failed: u64,
    /// `#pkts invalid len` (truncated, bad length or padding).
    pub invalid_len: u64,
    /// Payload bytes protected or accepted, for the kilobyte lifetime.
    pub bytes: u64,
}

/// [`SaCounters`] that several threads add to.
#[derive(Debug, Default)]
struct SharedCounters {
    /// Packets protected (outbound) or accepted (inbound): `#pkts encaps`
    /// and `encrypt` (and `digest` with an ICV), or `decaps`, `decrypt`
    /// and `verify`.
    packets: AtomicU64,
    bytes: AtomicU64,
    send_errors: AtomicU64,
    verify_failed: AtomicU64,
    replay_failed: AtomicU64,
    invalid_len: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl SharedCounters {
    fn outbound(&self, icv: bool) -> SaCounters {
        let p = self.packets.load(Ordering::Relaxed);
        SaCounters {
            pkts_encaps: p,
            pkts_encrypt: p,
            pkts_digest: if icv { p } else { 0 },
            send_errors: self.send_errors.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ..SaCounters::default()
        }
    }

    fn inbound(&self, icv: bool) -> SaCounters {
        let p = self.packets.load(Ordering::Relaxed);
        let verify_failed = self.verify_failed.load(Ordering::Relaxed);
        let replay_failed = self.replay_failed.load(Ordering::Relaxed);
        let invalid_len = self.invalid_len.load(Ordering::Relaxed);
        SaCounters {
            pkts_decaps: p,
            pkts_decrypt: p,
            pkts_verify: if icv { p } else { 0 },
            recv_errors: verify_failed + replay_failed + invalid_len,
            verify_failed,
            replay_failed,
            invalid_len,
            bytes: self.bytes.load(Ordering::Relaxed),
            ..SaCounters::default()
        }
    }
}

/// Outbound half of an SA: sequence counter, IV generator, transform.
pub struct OutboundSa {
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    /// Shared with packets laid out but not yet finished, so a rekey or
    /// delete in between cannot change their keys.
    transform: Arc<Transform>,
    iv: IvGen,
    /// Last sequence number taken (0 before the first packet). Each
    /// packet takes its own with one atomic add, so no two packets share
    /// one (nor an IV) and each thread's numbers strictly increase;
    /// packets of different threads may leave out of order, which the
    /// receiver's replay window absorbs.
    seq: AtomicU64,
    lifetime_bytes: Option<u64>,
    counters: SharedCounters,
}

impl OutboundSa {
    /// `iv_seed` comes from the caller's RNG (24 random bytes).
    pub fn new(p: &SaParams<'_>, iv_seed: &[u8; 24]) -> Result<Self, KeyError> {
        Ok(OutboundSa {
            spi: p.spi,
            peer: p.peer,
            mode: p.mode,
            transform: Arc::new(Transform::new(p.enc, p.enc_key, p.auth, p.auth_key)?),
            iv: IvGen::new(p.enc, iv_seed),
            seq: AtomicU64::new(0),
            lifetime_bytes: p.lifetime_kb.map(|kb| kb.saturating_mul(1024)),
            counters: SharedCounters::default(),
        })
    }

    /// Length of the ESP packet (SPI to ICV) carrying `payload_len` bytes.
    pub fn sealed_len(&self, payload_len: usize) -> usize {
        self.transform.sealed_len(payload_len)
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// The counters as `show crypto ipsec sa` prints them.
    pub fn counters(&self) -> SaCounters {
        self.counters.outbound(self.transform.icv_len() > 0)
    }

    /// Last sequence number sent.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed).min(u64::from(u32::MAX))
    }

    fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// True once the kilobyte lifetime is used up; the SA must be replaced.
    pub fn lifetime_exceeded(&self) -> bool {
        self.lifetime_bytes.is_some_and(|l| self.bytes() >= l)
    }

    /// Remaining kilobytes of lifetime, if limited.
    pub fn remaining_kb(&self) -> Option<u64> {
        self.lifetime_bytes
            .map(|l| l.saturating_sub(self.bytes()) / 1024)
    }

    /// Protects `payload` (next header `next_header`) into `out`.
    pub fn seal(
        &self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let n = self.seal_layout(next_header, payload, out)?;
        self.transform.seal_finish(&mut [&mut out[..n]]);
        Ok(n)
    }

    /// [`OutboundSa::seal`] up to the cryptography: sequence number, IV,
    /// layout and counters; [`OutboundSa::seal_finish`] must follow before
    /// the packet is sent.
    pub fn seal_layout(
        &self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.seal_layout_parts(next_header, &[payload], out)
    }

    /// [`OutboundSa::seal_layout`] of a payload given in pieces.
    pub fn seal_layout_parts(
        &self,
        next_header: u8,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        if self.lifetime_exceeded() {
            add(&self.counters.send_errors, 1);
            return Err(SealError::SequenceExhausted);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if seq > u64::from(u32::MAX) {
            // Numbers are not reused: the SA stays exhausted.
            self.seq.store(u64::from(u32::MAX), Ordering::Relaxed);
            add(&self.counters.send_errors, 1);
            return Err(SealError::SequenceExhausted);
        }
        let mut iv = [0u8; esp::MAX_IV_LEN];
        let iv = &mut iv[..self.transform.iv_len()];
        self.iv.fill(seq, iv);
        match self
            .transform
            .seal_layout_parts(self.spi, seq as u32, iv, next_header, parts, out)
        {
            Ok(n) => {
                add(&self.counters.packets, 1);
                add(
                    &self.counters.bytes,
                    parts.iter().map(|p| p.len() as u64).sum(),
                );
                Ok(n)
            }
            Err(e) => {
                add(&self.counters.send_errors, 1);
                Err(e)
            }
        }
    }

    /// Encrypts and authenticates packets laid out by
    /// [`OutboundSa::seal_layout`], several at a time where the cipher can.
    pub fn seal_finish(&self, pkts: &mut [&mut [u8]]) {
        self.transform.seal_finish(pkts);
    }

    /// The keyed transform, to finish packets laid out earlier.
    pub fn shared_transform(&self) -> Arc<Transform> {
        Arc::clone(&self.transform)
    }
}

/// Inbound half of an SA: replay window and transform.
pub struct InboundSa {
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    transform: Transform,
    replay: Mutex<ReplayWindow>,
    lifetime_bytes: Option<u64>,
    counters: SharedCounters,
}

impl InboundSa {
    pub fn new(p: &SaParams<'_>) -> Result<Self, KeyError> {
        Ok(InboundSa {
            spi: p.spi,
            peer: p.peer,
            mode: p.mode,
            transform: Transform::new(p.enc, p.enc_key, p.auth, p.auth_key)?,
            replay: Mutex::new(ReplayWindow::new()),
            lifetime_bytes: p.lifetime_kb.map(|kb| kb.saturating_mul(1024)),
            counters: SharedCounters::default(),
        })
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// The counters as `show crypto ipsec sa` prints them.
    pub fn counters(&self) -> SaCounters {
        self.counters.inbound(self.transform.icv_len() > 0)
    }

    fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// True once the kilobyte lifetime is used up.
    pub fn lifetime_exceeded(&self) -> bool {
        self.lifetime_bytes.is_some_and(|l| self.bytes() >= l)
    }

    /// Replay check, ICV check and decryption, in that order; the window
    /// moves only after the ICV is verified.
    pub fn open(&self, pkt: &[u8], out: &mut [u8]) -> Result<Opened, EspDrop> {
        self.open_with(pkt, out, None)
    }

    /// [`InboundSa::open`] with the ICV already computed by this SA's
    /// transform ([`Transform::icvs`]) when `computed` is set. The window
    /// is checked before the ICV and checked again as it moves after it,
    /// under its lock: of two threads opening the same packet at once,
    /// one accepts it and the other sees a replay.
    pub fn open_with(
        &self,
        pkt: &[u8],
        out: &mut [u8],
        computed: Option<&[u8; esp::MAX_ICV_LEN]>,
    ) -> Result<Opened, EspDrop> {
        let c = &self.counters;
        let (_, seq) = esp::parse_header(pkt).inspect_err(|_| add(&c.invalid_len, 1))?;
        if self.window().check(seq).is_err() {
            add(&c.replay_failed, 1);
            return Err(EspDrop::Replay);
        }
        let opened = self.transform.open_with(pkt, out, computed);
        if matches!(opened, Ok(_) | Err(EspDrop::Dummy)) && self.window().accept(seq).is_err() {
            add(&c.replay_failed, 1);
            return Err(EspDrop::Replay);
        }
        match opened {
            Ok(o) => {
                add(&c.packets, 1);
                add(&c.bytes, o.len as u64);
                Ok(o)
            }
            Err(EspDrop::Dummy) => Err(EspDrop::Dummy),
            Err(e) => {
                match e {
                    EspDrop::IcvFailure => add(&c.verify_failed, 1),
                    _ => add(&c.invalid_len, 1),
                }
                Err(e)
            }
        }
    }

    /// Highest sequence number accepted so far.
    pub fn highest_seq(&self) -> u32 {
        self.window().highest()
    }

    fn window(&self) -> MutexGuard<'_, ReplayWindow> {
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Direction of an SA in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A copy of one SA's visible state, for `show crypto ipsec sa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSnapshot {
    pub direction: Direction,
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    pub enc: EncAlg,
    pub auth: AuthAlg,
    pub counters: SaCounters,
    /// Outbound: last sequence number sent; inbound: highest received.
    pub seq: u64,
    pub remaining_kb: Option<u64>,
}

/// Why the SADB could not protect an outbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SadbError {
    #[error("no outbound SA for this peer")]
    NoSa,
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// All SAs of a node. Each SA is behind a pointer: a hash table's spare capacity
/// (up to as much again as it holds) is then pointers, not 1.7 KB and
/// 0.9 KB SAs with their cipher state inline, for one pointer hop per
/// packet. With the IKE tables boxed alike, a hub's heap per spoke went
/// from 12.3 to 9.0 KiB (`DMVPN_LAB_HEAP=1 dmvpn-lab sim`).
#[derive(Default)]
pub struct Sadb {
    inbound: HashMap<u32, Arc<InboundSa>>,
    outbound: HashMap<IpAddr, Arc<OutboundSa>>,
    /// `#pkts invalid sa (rcv)`: ESP packets whose SPI is unknown.
    pub invalid_spi: u64,
}

impl Sadb {
    pub fn new() -> Self {
        Self::default()
    }

    /// A database holding the same SAs (not copies: sequence numbers,
    /// replay windows and counters are shared), for another forwarding
    /// thread; its own `invalid_spi` starts at 0.
    pub fn share(&self) -> Sadb {
        Sadb {
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
            invalid_spi: 0,
        }
    }

    /// Installs an inbound SA; returns the one it replaces (same SPI).
    pub fn insert_inbound(&mut self, sa: impl Into<Arc<InboundSa>>) -> Option<Arc<InboundSa>> {
        let sa = sa.into();
        self.inbound.insert(sa.spi, sa)
    }

    /// Installs the outbound SA for its peer; returns the one it replaces.
    pub fn insert_outbound(&mut self, sa: impl Into<Arc<OutboundSa>>) -> Option<Arc<OutboundSa>> {
        let sa = sa.into();
        self.outbound.insert(sa.peer, sa)
    }

    pub fn remove_inbound(&mut self, spi: u32) -> Option<Arc<InboundSa>> {
        self.inbound.remove(&spi)
    }

    pub fn remove_outbound(&mut self, peer: IpAddr) -> Option<Arc<OutboundSa>> {
        self.outbound.remove(&peer)
    }

    /// Removes every SA with `peer` (`clear crypto sa peer`).
    pub fn remove_peer(&mut self, peer: IpAddr) -> usize {
        let before = self.inbound.len() + self.outbound.len();
        self.inbound.retain(|_, sa| sa.peer != peer);
        self.outbound.remove(&peer);
        before - self.inbound.len() - self.outbound.len()
    }

    pub fn has_outbound(&self, peer: IpAddr) -> bool {
        self.outbound.contains_key(&peer)
    }

    pub fn inbound(&self, spi: u32) -> Option<&Arc<InboundSa>> {
        self.inbound.get(&spi)
    }

    pub fn outbound(&self, peer: IpAddr) -> Option<&Arc<OutboundSa>> {
        self.outbound.get(&peer)
    }

    /// Protects `payload` for `peer` into `out`; returns the ESP length.
    pub fn seal(
        &self,
        peer: IpAddr,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SadbError> {
        let sa = self.outbound.get(&peer).ok_or(SadbError::NoSa)?;
        Ok(sa.seal(next_header, payload, out)?)
    }

    /// [`OutboundSa::seal_layout`] on `peer`'s outbound SA; returns the
    /// length and the transform that must finish the packet.
    pub fn seal_layout(
        &self,
        peer: IpAddr,
        next_header: u8,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<(usize, Arc<Transform>), SadbError> {
        let sa = self.outbound.get(&peer).ok_or(SadbError::NoSa)?;
        let n = sa.seal_layout_parts(next_header, parts, out)?;
        Ok((n, sa.shared_transform()))
    }

    /// Opens a received ESP packet into `out`. Returns the SA's peer and
    /// the payload description; every drop is counted on the SA (or in
    /// `invalid_spi`).
    pub fn open(&mut self, pkt: &[u8], out: &mut [u8]) -> Result<(IpAddr, Opened), EspDrop> {
        self.open_with(pkt, out, None)
    }

    /// [`Sadb::open`] with the ICV already computed by the transform of
    /// the SA the packet's SPI names ([`Sadb::inbound_transform`]).
    pub fn open_with(
        &mut self,
        pkt: &[u8],
        out: &mut [u8],
        computed: Option<&[u8; esp::MAX_ICV_LEN]>,
    ) -> Result<(IpAddr, Opened), EspDrop> {
        let (spi, _) = esp::parse_header(pkt)?;
        let Some(sa) = self.inbound.get(&spi) else {
            self.invalid_spi += 1;
            return Err(EspDrop::UnknownSpi);
        };
        let o = sa.open_with(pkt, out, computed)?;
        Ok((sa.peer, o))
    }

    /// The transform of the inbound SA with `spi`.
    pub fn inbound_transform(&self, spi: u32) -> Option<&Transform> {
        self.inbound.get(&spi).map(|sa| &sa.transform)
    }

    /// Each SA's `(peer, packets, packets received)`: what the node's
    /// idle timers and DPD look at every second, without the copying and
    /// sorting of [`Sadb::snapshot`] (a hub has two SAs per spoke).
    pub fn activity(&self) -> impl Iterator<Item = (IpAddr, u64, u64)> + '_ {
        let received = |sa: &InboundSa| sa.counters.packets.load(Ordering::Relaxed);
        let sent = |sa: &OutboundSa| sa.counters.packets.load(Ordering::Relaxed);
        self.inbound
            .values()
            .map(move |sa| (sa.peer, received(sa), received(sa)))
            .chain(self.outbound.values().map(move |sa| (sa.peer, sent(sa), 0)))
    }

    /// Copies of every SA's state, inbound first, each sorted by peer then SPI.
    pub fn snapshot(&self) -> Vec<SaSnapshot> {
        let mut v: Vec<SaSnapshot> = self
            .inbound
            .values()
            .map(|sa| SaSnapshot {
                direction: Direction::Inbound,
                spi: sa.spi,
                peer: sa.peer,
                mode: sa.mode,
                enc: sa.transform.enc_alg(),
                auth: sa.transform.auth_alg(),
                counters: sa.counters(),
                seq: u64::from(sa.highest_seq()),
                remaining_kb: sa
                    .lifetime_bytes
                    .map(|l| l.saturating_sub(sa.bytes()) / 1024),
            })
            .chain(self.outbound.values().map(|sa| SaSnapshot {
                direction: Direction::Outbound,
                spi: sa.spi,
                peer: sa.peer,
                mode: sa.mode,
                enc: sa.transform.enc_alg(),
                auth: sa.transform.auth_alg(),
                counters: sa.counters(),
                seq: sa.seq(),
                remaining_kb: sa.remaining_kb(),
            }))
            .collect();
        v.sort_by_key(|s| (s.direction == Direction::Outbound, s.peer, s.spi));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2));

    fn params(spi: u32, key: &[u8]) -> SaParams<'_> {
        SaParams {
            spi,
            peer: PEER,
            mode: Mode::Transport,
            enc: EncAlg::AesCbc128,
            enc_key: &key[..16],
            auth: AuthAlg::HmacSha1_96,
            auth_key: &key[16..36],
            lifetime_kb: Some(2),
        }
    }

    fn pair() -> (Sadb, Sadb) {
        let key = [0x42u8; 36];
        let mut a = Sadb::new();
        let mut b = Sadb::new();
        a.insert_outbound(OutboundSa::new(&params(0x1000, &key), &[1; 24]).unwrap());
        b.insert_inbound(InboundSa::new(&params(0x1000, &key)).unwrap());
        (a, b)
    }

    #[test]
    fn seal_open_counts_like_ios() {
        let (a, mut b) = pair();
        let mut wire = [0u8; 200];
        let mut plain = [0u8; 200];
        for _ in 0..3 {
            let n = a.seal(PEER, 47, b"gre packet", &mut wire).unwrap();
            let (peer, o) = b.open(&wire[..n], &mut plain).unwrap();
            assert_eq!(peer, PEER);
            assert_eq!(&plain[..o.len], b"gre packet");
        }
        let out = a.outbound(PEER).unwrap().counters();
        assert_eq!(
            (out.pkts_encaps, out.pkts_encrypt, out.pkts_digest),
            (3, 3, 3)
        );
        let inn = b.inbound(0x1000).unwrap().counters();
        assert_eq!(
            (inn.pkts_decaps, inn.pkts_decrypt, inn.pkts_verify),
            (3, 3, 3)
        );
        assert_eq!(inn.bytes, 30);
    }

    #[test]
    fn replay_and_icv_failures_are_counted_and_do_not_move_the_window() {
        let (a, mut b) = pair();
        let mut wire = [0u8; 200];
        let mut plain = [0u8; 200];
        let n = a.seal(PEER, 47, b"one", &mut wire).unwrap();
        let first = wire[..n].to_vec();
        b.open(&first, &mut plain).unwrap();
        assert_eq!(b.open(&first, &mut plain), Err(EspDrop::Replay));
        // A forged packet with a high sequence number fails the ICV and
        // must not advance the window.
        let mut forged = first.clone();
        forged[4..8].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(b.open(&forged, &mut plain), Err(EspDrop::IcvFailure));
        let n = a.seal(PEER, 47, b"two", &mut wire).unwrap();
        assert!(b.open(&wire[..n], &mut plain).is_ok());
        let c = b.inbound(0x1000).unwrap().counters();
        assert_eq!(
            (
                c.replay_failed,
                c.verify_failed,
                c.recv_errors,
                c.pkts_decaps
            ),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn unknown_spi_and_missing_sa() {
        let (mut a, mut b) = pair();
        let mut plain = [0u8; 64];
        assert_eq!(
            b.open(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 0], &mut plain),
            Err(EspDrop::UnknownSpi)
        );
        assert_eq!(b.invalid_spi, 1);
        let other: IpAddr = Ipv4Addr::new(172, 16, 0, 9).into();
        assert_eq!(
            a.seal(other, 47, b"x", &mut [0u8; 100]),
            Err(SadbError::NoSa)
        );
        assert_eq!(a.remove_peer(PEER), 1);
        assert!(!a.has_outbound(PEER));
    }

    #[test]
    fn kilobyte_lifetime_stops_the_outbound_sa() {
        let (a, _) = pair();
        let mut wire = [0u8; 1500];
        let payload = [0u8; 1000];
        assert_eq!(a.outbound(PEER).unwrap().remaining_kb(), Some(2));
        a.seal(PEER, 47, &payload, &mut wire).unwrap();
        a.seal(PEER, 47, &payload, &mut wire).unwrap();
        assert!(!a.outbound(PEER).unwrap().lifetime_exceeded());
        a.seal(PEER, 47, &payload, &mut wire).unwrap();
        assert!(a.outbound(PEER).unwrap().lifetime_exceeded());
        assert_eq!(
            a.seal(PEER, 47, &payload, &mut wire),
            Err(SadbError::Seal(SealError::SequenceExhausted))
        );
        assert_eq!(a.outbound(PEER).unwrap().counters().send_errors, 1);
    }

    #[test]
    fn snapshot_lists_both_directions() {
        let (mut a, _) = pair();
        let key = [7u8; 36];
        a.insert_inbound(InboundSa::new(&params(0x2000, &key)).unwrap());
        let s = a.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].direction, Direction::Inbound);
        assert_eq!(s[0].spi, 0x2000);
        assert_eq!(s[1].direction, Direction::Outbound);
        assert_eq!(
            (s[1].enc, s[1].auth),
            (EncAlg::AesCbc128, AuthAlg::HmacSha1_96)
        );
    }
}
