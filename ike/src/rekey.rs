//! Phase 1 rekey: replace an ISAKMP SA before its lifetime ends, make
//! before break.
//!
//! Timing (strongSwan's `rekey_time` / IOS practice): the side that
//! initiated the SA starts a new Main (or Aggressive) Mode at 85–90 % of
//! the lifetime, the exact point drawn from the injected RNG so that two
//! peers built alike do not rekey at the same instant; the responder starts
//! one at 95 % only if the initiator has not replaced it by then (a peer
//! that never rekeys phase 1, such as IOS). Either side rekeys only while
//! it holds IPsec SAs with the peer; an idle SA simply expires.
//!
//! Once the replacement is established, new Quick Modes, DELETEs and DPD
//! use it, and the side that started it sends a DELETE for the old ISAKMP
//! SA (waiting for Quick Modes still running on the old one). IPsec SAs are
//! not tied to the ISAKMP SA that made them and keep passing traffic. The
//! peer's side of the old SA, superseded by the newer one, stops DPD and
//! rekeying and waits for that DELETE (or its own expiry).
//!
//! Both sides rekeying at once leaves two new SAs. The one with the lower
//! cookie pair (I-cookie, R-cookie) loses; its initiator deletes it. Both
//! peers see the same cookies, so they agree on the survivor.

use crate::Instant;
use crate::endpoint::{Endpoint, Event, Phase1, QuickMode, SaId, ike};
use crate::reason::Reason;
use crate::state::P1State;
use rand_core::{CryptoRng, RngCore};
use std::net::IpAddr;
use std::time::Duration;

/// The responder's fallback point, as a divisor of the lifetime (5 % before the end).
const RESPONDER_LEAD_DIV: u32 = 20;
/// The initiator's point: 10 % before the end plus up to 5 % of jitter.
const INITIATOR_LEAD_DIV: u32 = 10;
const JITTER_DIV: u32 = 20;

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// Start phase 1 SA `id`'s rekey timer; it has just been established
    /// with lifetime `life` seconds.
    pub(crate) fn schedule_p1_rekey(&mut self, id: SaId, life: u32) {
        if !self.cfg.phase1_rekey {
            return;
        }
        let life = Duration::from_secs(life.into());
        let Some(initiator) = self.sas.get(&id).map(|s| s.initiator) else {
            return;
        };
        let lead = if initiator {
            let span = (life / JITTER_DIV).as_millis() as u64;
            let jitter = Duration::from_millis(self.rng.next_u64() % (span + 1));
            life / INITIATOR_LEAD_DIV + jitter
        } else {
            life / RESPONDER_LEAD_DIV
        };
        let Some(s) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(expires) = s.expires else { return };
        s.rekey_at = Some(expires - lead);
        ike!(
            "ISAKMP ({}): Starting P1 rekey timer: {} seconds.",
            id,
            (life - lead).as_secs()
        );
    }

    /// Start replacing the phase 1 SA with `peer` now, whatever its rekey
    /// timer says. False when there is no established SA with the peer or
    /// a replacement is already under way.
    pub fn rekey_isakmp(&mut self, now: Instant, peer: IpAddr) -> bool {
        let started = self
            .preferred_sa(peer)
            .is_some_and(|id| self.start_p1_rekey(now, id, true));
        self.sync_timers();
        started
    }

    /// Begin a new phase 1 with SA `id`'s peer to replace it. Unless
    /// `forced`, only a current SA with IPsec SAs hanging off it is renewed.
    pub(crate) fn start_p1_rekey(&mut self, now: Instant, id: SaId, forced: bool) -> bool {
        let retry = now + self.cfg.retransmit_initial * 5;
        let (peer, local, remote, expires) = {
            let Some(s) = self.sas.get_mut(&id) else {
                return false;
            };
            s.rekey_at = None;
            if !s.is_established() || s.retiring || s.replaced_by.is_some() {
                return false;
            }
            if !forced && s.superseded {
                ike!(
                    "ISAKMP ({}): a newer ISAKMP SA with {} exists, no P1 rekey",
                    id,
                    s.remote.ip()
                );
                return false;
            }
            (s.remote.ip(), s.local, s.remote, s.expires)
        };
        if !forced && !self.child_peers.has(peer) {
            ike!(
                "ISAKMP ({}): no IPsec SAs with {}, no P1 rekey; the SA ends with its lifetime",
                id,
                peer
            );
            return false;
        }
        // The peer's own replacement may be on its way: look again later.
        // A responder SA counts once the peer answered our MM2 (so a
        // spoofed MM1 flood cannot hold the rekey off).
        let negotiating = self
            .sa_peers
            .get(peer)
            .filter_map(|o| self.sas.get(&o))
            .any(|s| {
                !s.is_established()
                    && (s.initiator || matches!(s.state(), P1State::RMm3 | P1State::RMm4))
            });
        if negotiating {
            ike!(
                "ISAKMP ({}): a phase 1 with {} is in progress, P1 rekey postponed",
                id,
                peer
            );
            if expires.is_some_and(|e| retry < e)
                && let Some(s) = self.sas.get_mut(&id)
            {
                s.rekey_at = Some(retry);
            }
            return false;
        }
        let Some(psk) = self.cfg.psk_for(peer).map(|e| e.key.clone()) else {
            ike!(
                "ISAKMP ({}): no pre-shared key for {} any more, no P1 rekey",
                id,
                peer
            );
            return false;
        };
        ike!(
            "ISAKMP ({}): P1 rekey: beginning a new ISAKMP SA with {}",
            id,
            peer
        );
        // From the addresses in use: after a NAT-T float that is port 4500,
        // whose NAT mapping the keepalives hold open.
        let new = if self.cfg.initiates_aggressive(peer) {
            let Some(new) = self.am_initiate(now, local, remote, psk) else {
                return false;
            };
            new
        } else {
            self.mm_initiate(now, local, remote, psk)
        };
        if let Some(s) = self.sas.get_mut(&new) {
            s.replaces = Some(id);
        }
        if let Some(s) = self.sas.get_mut(&id) {
            s.replaced_by = Some(new);
        }
        true
    }

    /// After a phase 1 with `peer` was established or removed: retire what
    /// was replaced, settle simultaneous rekeys, and let only the newest SA
    /// run DPD and rekey.
    pub(crate) fn reconcile_peer(&mut self, now: Instant, peer: IpAddr) {
        let ids = self.sa_peers.list(peer);
        let up = |e: &Self, i: SaId| e.sas.get(&i).is_some_and(Phase1::is_established);
        for &l in &ids {
            let replaces = self.sas.get(&l).and_then(|s| s.replaces);
            let Some(r) = replaces.filter(|_| up(self, l)) else {
                continue;
            };
            if self.sas.get(&r).is_some_and(|o| !o.retiring) {
                ike!("ISAKMP ({}): replaced by ISAKMP SA {}", r, l);
                self.retire(r);
            }
        }
        for &l in &ids {
            let Some(s) = self.sas.get(&l) else { continue };
            let Some(r) = s.replaces else { continue };
            if !s.initiator || s.retiring || !up(self, l) {
                continue;
            }
            let key = (s.icookie, s.rcookie);
            let winner = ids.iter().copied().find(|&w| {
                self.sas.get(&w).is_some_and(|o| {
                    w != l
                        && w > r
                        && o.is_established()
                        && !o.retiring
                        && (o.icookie, o.rcookie) > key
                })
            });
            if let Some(w) = winner {
                ike!(
                    "ISAKMP ({}): simultaneous P1 rekey, ISAKMP SA {} is kept",
                    l,
                    w
                );
                self.retire(l);
            }
        }
        let newest = ids
            .iter()
            .rev()
            .copied()
            .find(|&i| up(self, i) && self.sas.get(&i).is_some_and(|s| !s.retiring));
        for &i in &ids {
            let want = up(self, i) && Some(i) != newest;
            let changes = self.sas.get(&i).is_some_and(|s| s.superseded != want);
            if changes && let Some(s) = self.sas.get_mut(&i) {
                s.superseded = want;
                if want {
                    s.dpd.outstanding = None;
                }
            }
        }
        for &i in &ids {
            self.try_retire(now, i);
        }
    }

    fn retire(&mut self, id: SaId) {
        let Some(s) = self.sas.get_mut(&id) else {
            return;
        };
        s.retiring = true;
        s.rekey_at = None;
        s.dpd.outstanding = None;
    }

    /// Delete a retiring SA once no Quick Mode is running on it.
    pub(crate) fn try_retire(&mut self, now: Instant, id: SaId) {
        let Some(s) = self.sas.get(&id) else { return };
        if !s.retiring || s.qms.values().any(QuickMode::in_progress) {
            return;
        }
        self.send_delete_isakmp(now, id);
        self.drop_phase1(now, id, Reason::Replaced, true);
    }

    /// Book-keeping after SA `s` (already removed) is gone: a failed
    /// replacement is retried later; requests it carried move to another
    /// SA with the peer when `rehome`, otherwise they fail.
    pub(crate) fn after_phase1_gone(
        &mut self,
        now: Instant,
        s: &mut Phase1,
        established: bool,
        reason: &Reason,
        rehome: bool,
    ) {
        let peer = s.remote.ip();
        if let Some(r) = s.replaces.filter(|_| !established) {
            let retry = now + self.cfg.retransmit_initial * 5;
            if let Some(o) = self.sas.get_mut(&r)
                && o.replaced_by == Some(s.id)
            {
                o.replaced_by = None;
                if o.expires.is_some_and(|e| retry < e) {
                    o.rekey_at = Some(retry);
                    ike!("ISAKMP ({}): P1 rekey with {} failed, will retry", r, peer);
                }
            }
        }
        // (request, rekey of, whether its Quick Mode was under way)
        let mut reqs: Vec<_> = std::mem::take(&mut s.pending)
            .into_iter()
            .map(|(req, rekey_of)| (req, rekey_of, false))
            .collect();
        reqs.extend(
            s.qms
                .values()
                .filter_map(|q| Some((q.request.clone(), q.offer()?.rekey_of, true))),
        );
        // Requests that waited on a peer's bare first message (evicted or
        // timed out): that proved nothing about the peer, so they go on
        // with a phase 1 of their own.
        let unproven = !s.initiator && crate::admission::unverified(s.state());
        // Requests whose own Main Mode was abandoned for this crossing
        // one: its failure says nothing about theirs.
        let own_again = s.took_over && !established && rehome;
        for (req, rekey_of, started) in reqs {
            if unproven || own_again || (rehome && self.has_usable_sa(now, peer)) {
                ike!(
                    "ISAKMP ({}): phase 2 request moves to another ISAKMP SA with {}",
                    s.id,
                    peer
                );
                // An SA with the peer exists, so this neither fails nor
                // starts another phase 1. A Quick Mode under way starts
                // again there: this one counts as superseded.
                if started {
                    self.stats
                        .handshakes
                        .quick_mode
                        .fail(crate::handshakes::Failure::Superseded);
                }
                let _ = self.initiate_inner(now, s.local, s.remote, req, rekey_of);
                continue;
            }
            // A child rekey cut short is tried again soon.
            if let Some(c) = rekey_of.and_then(|spi| self.children.get_mut(&spi))
                && c.soft.is_none()
                && now + self.cfg.retransmit_initial < c.hard
            {
                c.soft = Some(now + self.cfg.retransmit_initial);
            }
            if started {
                self.stats
                    .handshakes
                    .quick_mode
                    .fail(crate::handshakes::Failure::Phase1Failed);
            }
            self.events.push_back(Event::Phase2Failed {
                remote: s.remote,
                reason: Reason::Phase1Failed(Box::new(reason.clone())),
            });
        }
        self.reconcile_peer(now, peer);
    }
}
