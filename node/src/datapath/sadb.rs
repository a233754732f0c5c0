//! Security association database: inbound SAs by SPI, outbound SAs by the
//! peer's NBMA address, with per-SA counters shaped like IOS
//! `show crypto ipsec sa`.

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

/// Outbound half of an SA: sequence counter, IV generator, transform.
///
/// One owner seals through `&mut self` ([`OutboundSa::seal`]) with plain
/// loads and stores; several forwarding threads may share the SA behind
/// an `Arc` and seal through [`OutboundSa::seal_shared`], which takes each
/// sequence number with one atomic add.
pub struct OutboundSa {
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    /// Shared with packets laid out but not yet finished, so a rekey or
    /// delete in between cannot change their keys.
    transform: Arc<Transform>,
    iv: IvGen,
    /// Last sequence number used (0 before the first packet).
    seq: AtomicU64,
    lifetime_bytes: Option<u64>,
    pub counters: SaCounters,
}

impl OutboundSa {
    /// Length of the ESP packet (SPI to ICV) carrying `payload_len` bytes.
    pub fn sealed_len(&self, payload_len: usize) -> usize {
        self.transform.sealed_len(payload_len)
    }

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
            counters: SaCounters::default(),
        })
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Last sequence number sent.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed).min(u64::from(u32::MAX))
    }

    /// True once the kilobyte lifetime is used up; the SA must be replaced.
    pub fn lifetime_exceeded(&self) -> bool {
        self.lifetime_bytes
            .is_some_and(|l| self.counters.bytes >= l)
    }

    /// Remaining kilobytes of lifetime, if limited.
    pub fn remaining_kb(&self) -> Option<u64> {
        self.lifetime_bytes
            .map(|l| l.saturating_sub(self.counters.bytes) / 1024)
    }

    /// Protects `payload` (next header `next_header`) into `out`.
    pub fn seal(
        &mut self,
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
        &mut self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.seal_layout_parts(next_header, &[payload], out)
    }

    /// [`OutboundSa::seal_layout`] of a payload given in pieces.
    pub fn seal_layout_parts(
        &mut self,
        next_header: u8,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        // No extended sequence numbers: the 32-bit space must not wrap (RFC 4303 §3.3.3).
        if *self.seq.get_mut() >= u64::from(u32::MAX) || self.lifetime_exceeded() {
            self.counters.send_errors += 1;
            return Err(SealError::SequenceExhausted);
        }
        let seq = *self.seq.get_mut() + 1;
        let mut iv = [0u8; esp::MAX_IV_LEN];
        let iv = &mut iv[..self.transform.iv_len()];
        self.iv.fill(seq, iv);
        match self
            .transform
            .seal_layout_parts(self.spi, seq as u32, iv, next_header, parts, out)
        {
            Ok(n) => {
                *self.seq.get_mut() = seq;
                let c = &mut self.counters;
                c.pkts_encaps += 1;
                c.pkts_encrypt += 1;
                if self.transform.icv_len() > 0 {
                    c.pkts_digest += 1;
                }
                c.bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                Ok(n)
            }
            Err(e) => {
                self.counters.send_errors += 1;
                Err(e)
            }
        }
    }

    /// Encrypts and authenticates packets laid out by
    /// [`OutboundSa::seal_layout`] on this SA, several at once.
    pub fn seal_finish(&self, pkts: &mut [&mut [u8]]) {
        self.transform.seal_finish(pkts);
    }

    /// The keyed transform, to finish packets laid out earlier.
    pub fn shared_transform(&self) -> Arc<Transform> {
        Arc::clone(&self.transform)
    }

    /// Protects `payload` into `out` from any of the threads sharing this
    /// SA. Each packet takes its own sequence number (and with it its IV)
    /// with one atomic add, so no two packets share one and each thread's
    /// numbers strictly increase; packets of different threads may leave
    /// out of order, which the receiver's replay window absorbs. Packet
    /// counters and the kilobyte lifetime are the caller's (one set per
    /// thread, summed when shown).
    pub fn seal_shared(
        &self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if seq > u64::from(u32::MAX) {
            return Err(SealError::SequenceExhausted);
        }
        let mut iv = [0u8; esp::MAX_IV_LEN];
        let iv = &mut iv[..self.transform.iv_len()];
        self.iv.fill(seq, iv);
        let n = self.transform.seal_layout_parts(
            self.spi,
            seq as u32,
            iv,
            next_header,
            &[payload],
            out,
        )?;
        self.transform.seal_finish(&mut [&mut out[..n]]);
        Ok(n)
    }
}

/// Inbound half of an SA: transform and anti-replay window.
///
/// One owner opens through `&mut self` ([`InboundSa::open`]) without
/// locking; threads sharing the SA behind an `Arc` open through
/// [`InboundSa::open_shared`], which holds the window's own lock only for
/// its bit operations, never during cryptography.
pub struct InboundSa {
    pub spi: u32,
    pub peer: IpAddr,
    pub mode: Mode,
    transform: Transform,
    replay: Mutex<ReplayWindow>,
    lifetime_bytes: Option<u64>,
    pub counters: SaCounters,
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
            counters: SaCounters::default(),
        })
    }

    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    pub fn lifetime_exceeded(&self) -> bool {
        self.lifetime_bytes
            .is_some_and(|l| self.counters.bytes >= l)
    }

    /// Replay check, ICV check and decryption, in that order; the window
    /// moves only after the ICV is verified.
    pub fn open(&mut self, pkt: &[u8], out: &mut [u8]) -> Result<Opened, EspDrop> {
        self.open_with(pkt, out, None)
    }

    /// [`InboundSa::open`] with the ICV already computed by this SA's
    /// transform ([`Transform::icvs`]) when `computed` is set.
    pub fn open_with(
        &mut self,
        pkt: &[u8],
        out: &mut [u8],
        computed: Option<&[u8; esp::MAX_ICV_LEN]>,
    ) -> Result<Opened, EspDrop> {
        let (_, seq) = esp::parse_header(pkt).inspect_err(|_| self.counters.invalid_len += 1)?;
        let replay = self
            .replay
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if replay.check(seq).is_err() {
            self.counters.replay_failed += 1;
            self.counters.recv_errors += 1;
            return Err(EspDrop::Replay);
        }
        match self.transform.open_with(pkt, out, computed) {
            Ok(o) => {
                replay.update(seq);
                self.count_ok(o.len);
                Ok(o)
            }
            Err(EspDrop::Dummy) => {
                // Authentic but empty (TFC): it still moves the window.
                replay.update(seq);
                Err(EspDrop::Dummy)
            }
            Err(e) => {
                let c = &mut self.counters;
                c.recv_errors += 1;
                match e {
                    EspDrop::IcvFailure => c.verify_failed += 1,
                    _ => c.invalid_len += 1,
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

    /// [`InboundSa::open`] from any of the threads sharing this SA. The
    /// window is checked before the ICV and checked again as it moves
    /// after it, under its lock: of two threads opening the same packet at
    /// once, one accepts it and the other sees a replay. Counting is the
    /// caller's, as for [`OutboundSa::seal_shared`].
    pub fn open_shared(&self, pkt: &[u8], out: &mut [u8]) -> Result<Opened, EspDrop> {
        let (_, seq) = esp::parse_header(pkt)?;
        if self.window().check(seq).is_err() {
            return Err(EspDrop::Replay);
        }
        let opened = self.transform.open_with(pkt, out, None);
        if matches!(opened, Ok(_) | Err(EspDrop::Dummy)) {
            self.window().accept(seq).map_err(|_| EspDrop::Replay)?;
        }
        opened
    }

    fn count_ok(&mut self, len: usize) {
        let c = &mut self.counters;
        c.pkts_decaps += 1;
        c.pkts_decrypt += 1;
        if self.transform.icv_len() > 0 {
            c.pkts_verify += 1;
        }
        c.bytes += len as u64;
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

/// All SAs of a node. Each SA is boxed: a hash table's spare capacity
/// (up to as much again as it holds) is then pointers, not 1.7 KB and
/// 0.9 KB SAs with their cipher state inline, for one pointer hop per
/// packet. With the IKE tables boxed alike, a hub's heap per spoke went
/// from 12.3 to 9.0 KiB (`DMVPN_LAB_HEAP=1 dmvpn-lab sim`).
#[derive(Default)]
pub struct Sadb {
    inbound: HashMap<u32, Box<InboundSa>>,
    outbound: HashMap<IpAddr, Box<OutboundSa>>,
    /// `#pkts invalid sa (rcv)`: ESP packets whose SPI is unknown.
    pub invalid_spi: u64,
}

impl Sadb {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs an inbound SA; returns the one it replaces (same SPI).
    pub fn insert_inbound(&mut self, sa: InboundSa) -> Option<InboundSa> {
        self.inbound.insert(sa.spi, Box::new(sa)).map(|b| *b)
    }

    /// Installs the outbound SA for its peer; returns the one it replaces.
    pub fn insert_outbound(&mut self, sa: OutboundSa) -> Option<OutboundSa> {
        self.outbound.insert(sa.peer, Box::new(sa)).map(|b| *b)
    }

    pub fn remove_inbound(&mut self, spi: u32) -> Option<InboundSa> {
        self.inbound.remove(&spi).map(|b| *b)
    }

    pub fn remove_outbound(&mut self, peer: IpAddr) -> Option<OutboundSa> {
        self.outbound.remove(&peer).map(|b| *b)
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

    pub fn inbound(&self, spi: u32) -> Option<&InboundSa> {
        self.inbound.get(&spi).map(|b| &**b)
    }

    pub fn outbound(&self, peer: IpAddr) -> Option<&OutboundSa> {
        self.outbound.get(&peer).map(|b| &**b)
    }

    pub fn outbound_mut(&mut self, peer: IpAddr) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(&peer).map(|b| &mut **b)
    }

    /// Protects `payload` for `peer` into `out`; returns the ESP length.
    pub fn seal(
        &mut self,
        peer: IpAddr,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SadbError> {
        let sa = self.outbound.get_mut(&peer).ok_or(SadbError::NoSa)?;
        Ok(sa.seal(next_header, payload, out)?)
    }

    /// [`OutboundSa::seal_layout`] on `peer`'s outbound SA; returns the
    /// length and the transform that must finish the packet.
    pub fn seal_layout(
        &mut self,
        peer: IpAddr,
        next_header: u8,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<(usize, Arc<Transform>), SadbError> {
        let sa = self.outbound.get_mut(&peer).ok_or(SadbError::NoSa)?;
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
        let Some(sa) = self.inbound.get_mut(&spi) else {
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
                counters: sa.counters,
                seq: u64::from(sa.highest_seq()),
                remaining_kb: sa
                    .lifetime_bytes
                    .map(|l| l.saturating_sub(sa.counters.bytes) / 1024),
            })
            .chain(self.outbound.values().map(|sa| SaSnapshot {
                direction: Direction::Outbound,
                spi: sa.spi,
                peer: sa.peer,
                mode: sa.mode,
                enc: sa.transform.enc_alg(),
                auth: sa.transform.auth_alg(),
                counters: sa.counters,
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
        let (mut a, mut b) = pair();
        let mut wire = [0u8; 200];
        let mut plain = [0u8; 200];
        for _ in 0..3 {
            let n = a.seal(PEER, 47, b"gre packet", &mut wire).unwrap();
            let (peer, o) = b.open(&wire[..n], &mut plain).unwrap();
            assert_eq!(peer, PEER);
            assert_eq!(&plain[..o.len], b"gre packet");
        }
        let out = a.outbound(PEER).unwrap().counters;
        assert_eq!(
            (out.pkts_encaps, out.pkts_encrypt, out.pkts_digest),
            (3, 3, 3)
        );
        let inn = b.inbound(0x1000).unwrap().counters;
        assert_eq!(
            (inn.pkts_decaps, inn.pkts_decrypt, inn.pkts_verify),
            (3, 3, 3)
        );
        assert_eq!(inn.bytes, 30);
    }

    #[test]
    fn replay_and_icv_failures_are_counted_and_do_not_move_the_window() {
        let (mut a, mut b) = pair();
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
        let c = b.inbound(0x1000).unwrap().counters;
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
        let (mut a, _) = pair();
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
        assert_eq!(a.outbound(PEER).unwrap().counters.send_errors, 1);
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
