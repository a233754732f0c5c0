//! Admission of unauthenticated phase 1 state (IOS `crypto call admission
//! limit ike in-negotiation-sa`), and the counters the node reads.
//!
//! A responder SA is *half-open* until phase 1 completes. It is
//! *unverified* while all we have seen from its source is the first
//! message (MM1/AM1): anyone can send that with any source address. Once
//! the peer answers our MM2 with the responder cookie it could only have
//! learned by receiving it, the source is *verified* (still not
//! authenticated).
//!
//! Policy, all O(log n) per packet:
//! - per source address at most `max_half_open_per_peer` unverified SAs;
//!   a new first message from a source at its limit evicts that source's
//!   oldest unverified SA;
//! - at most `max_half_open` half-open SAs in all; a new first message over
//!   it evicts the oldest unverified SA from a source that matches no
//!   pre-shared key more specific than the wildcard. A source that does
//!   (a configured peer) may also evict the oldest unverified SA of another
//!   configured peer; one that does not is refused instead. Verified SAs
//!   are never evicted: they time out.
//! - nothing unverified is reported as a failed negotiation (no event, so
//!   the node neither logs nor drops queued packets for a spoofed source),
//!   and a request of ours waits on an unverified SA at most
//!   `VERIFY_GRACE` (2 s, so that two ends asking at once share one phase
//!   1), then starts its own. Main Modes that crossed on the wire are
//!   settled only once the peer's is verified (`collision.rs`).
//!
//! Separate state per cookie pair means a spoofed first message never
//! replaces or tears down another exchange with that address. The limit
//! of this defence: IKEv1 has no stateless cookie exchange, so an attacker
//! who sends more than `max_half_open_per_peer` first messages with a
//! real peer's address within one round trip of that peer can still evict
//! its fresh SA (the peer retries).

use crate::endpoint::{Endpoint, HandleError, SaId, ike};
use crate::index::PeerIndex;
use crate::state::P1State;
use rand_core::{CryptoRng, RngCore};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// What the engine dropped on its own; all counts since the endpoint was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// First Aggressive Mode messages dropped because answering Aggressive
    /// Mode is off (`EngineConfig::answer_aggressive`).
    pub aggressive_refused: u64,
    /// Unverified half-open SAs evicted to make room for a newer first message.
    pub half_open_evicted: u64,
    /// First messages refused: the half-open table held nothing evictable
    /// for them.
    pub half_open_refused: u64,
    /// Unverified half-open SAs that timed out (the source never answered
    /// our second message: typically a spoofed address).
    pub half_open_expired: u64,
    /// Phase 1 and Quick Mode negotiations started, completed and failed.
    pub handshakes: crate::handshakes::HandshakeStats,
}

/// Where a half-open SA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HalfOpenClass {
    /// Only a first message seen from `src`; `known` when `src` matches a
    /// pre-shared key more specific than the wildcard.
    Unverified { src: IpAddr, known: bool },
    /// The source answered our second message.
    Verified,
}

impl HalfOpenClass {
    /// Class of a phase 1 SA; `None` when it is ours or established.
    pub(crate) fn of(s: &crate::endpoint::Phase1) -> Option<Self> {
        if s.initiator || s.is_established() {
            return None;
        }
        Some(if unverified(s.state()) {
            HalfOpenClass::Unverified {
                src: s.remote.ip(),
                known: s.known_peer,
            }
        } else {
            HalfOpenClass::Verified
        })
    }
}

/// Responder states in which the source has proved nothing.
pub(crate) fn unverified(st: P1State) -> bool {
    matches!(
        st,
        P1State::Ready | P1State::RMm1 | P1State::RMm2 | P1State::RAm1 | P1State::RAm2
    )
}

/// Ordered sets of half-open SAs (ids grow with age: the first is the oldest).
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct HalfOpen {
    all: BTreeSet<SaId>,
    unverified: HashMap<SaId, (IpAddr, bool)>,
    unverified_unknown: BTreeSet<SaId>,
    unverified_known: BTreeSet<SaId>,
    by_src: PeerIndex<SaId>,
}

impl HalfOpen {
    pub(crate) fn new() -> Self {
        HalfOpen {
            all: BTreeSet::new(),
            unverified: HashMap::new(),
            unverified_unknown: BTreeSet::new(),
            unverified_known: BTreeSet::new(),
            by_src: PeerIndex::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: &SaId) -> bool {
        self.all.contains(id)
    }

    #[cfg(test)]
    pub(crate) fn class(&self, id: &SaId) -> Option<HalfOpenClass> {
        if !self.all.contains(id) {
            return None;
        }
        Some(match self.unverified.get(id) {
            Some(&(src, known)) => HalfOpenClass::Unverified { src, known },
            None => HalfOpenClass::Verified,
        })
    }

    #[cfg(test)]
    pub(crate) fn ids(&self) -> impl Iterator<Item = &SaId> {
        self.all.iter()
    }

    pub(crate) fn remove(&mut self, id: SaId) {
        self.all.remove(&id);
        if let Some((src, _)) = self.unverified.remove(&id) {
            self.by_src.remove(src, id);
            self.unverified_unknown.remove(&id);
            self.unverified_known.remove(&id);
        }
    }

    pub(crate) fn set(&mut self, id: SaId, class: Option<HalfOpenClass>) {
        self.remove(id);
        match class {
            None => {}
            Some(HalfOpenClass::Verified) => {
                self.all.insert(id);
            }
            Some(HalfOpenClass::Unverified { src, known }) => {
                self.all.insert(id);
                self.unverified.insert(id, (src, known));
                self.by_src.insert(src, id);
                if known {
                    self.unverified_known.insert(id);
                } else {
                    self.unverified_unknown.insert(id);
                }
            }
        }
    }

    /// Unverified SAs from `src` (at most the per-source limit, plus one).
    fn count_from(&self, src: IpAddr) -> usize {
        self.by_src.get(src).count()
    }

    fn oldest_from(&self, src: IpAddr) -> Option<SaId> {
        self.by_src.get(src).next()
    }

    /// The SA to evict for a newcomer (`known` as above), if any.
    fn victim(&self, known: bool) -> Option<SaId> {
        let unknown = self.unverified_unknown.first().copied();
        if known {
            unknown.or_else(|| self.unverified_known.first().copied())
        } else {
            unknown
        }
    }
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// Make room for a new responder SA from `src`, or refuse it.
    pub(crate) fn admit_half_open(&mut self, src: IpAddr) -> Result<(), HandleError> {
        self.sync_timers();
        let per = self.cfg.max_half_open_per_peer.max(1);
        if self.half_open.count_from(src) >= per
            && let Some(old) = self.half_open.oldest_from(src)
        {
            ike!(
                "ISAKMP: {} has {} unverified negotiations, dropping the oldest ({})",
                src,
                per,
                old
            );
            self.evict_half_open(old);
        }
        if self.half_open.len() >= self.cfg.max_half_open.max(1) {
            let known = self.cfg.is_known_peer(src);
            match self.half_open.victim(known) {
                Some(v) => {
                    ike!(
                        "ISAKMP: in-negotiation SA limit {} reached, dropping the oldest unverified ({}) for {}",
                        self.cfg.max_half_open,
                        v,
                        src
                    );
                    self.evict_half_open(v);
                }
                None => {
                    self.stats.half_open_refused += 1;
                    ike!(
                        "ISAKMP: in-negotiation SA limit {} reached, dropping first message from {}",
                        self.cfg.max_half_open,
                        src
                    );
                    return Err(HandleError::HalfOpenLimit);
                }
            }
        }
        Ok(())
    }

    /// Forget an unverified responder SA without a word: nothing depends
    /// on it and nobody proved they wanted it.
    fn evict_half_open(&mut self, id: SaId) {
        if let Some(s) = self.sas.remove(&id) {
            self.by_cookie.remove(&(s.icookie, s.remote.ip()));
            self.sa_peers.remove(s.remote.ip(), id);
            self.stats.half_open_evicted += 1;
            self.stats
                .handshakes
                .phase1
                .fail(crate::handshakes::Failure::Unverified);
        }
        self.half_open.remove(id);
    }

    /// Half-open (responder, not yet authenticated) SAs right now.
    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }
}
