//! Crossing Main Modes: both ends start a phase 1 towards each other
//! before either has seen the other's MM1 (two spokes that resolved each
//! other at the same moment). Each end then holds its own initiator SA and
//! a responder SA for the peer's exchange; left alone, both complete and
//! one supersedes the other.
//!
//! Both ends know both initiator cookies (their own, and the peer's from
//! its MM1), so they settle on the same survivor without a word: the
//! exchange with the lower initiator cookie goes on. Each end decides when
//! its responder SA is *verified* (the peer answered our MM2 with our
//! responder cookie, so its MM1 was no spoof), and only while its own
//! initiator SA is not established:
//! - its own exchange lost: it forgets its initiator SA quietly (nothing
//!   authenticated, nothing to DELETE) and the Quick Mode requests waiting
//!   on it move to the responder SA. Should that SA fail before it is
//!   established, they start a phase 1 of their own, so nothing is lost;
//! - its own exchange won: it forgets the responder SA before answering
//!   MM3, so the peer's initiator SA cannot complete. The peer, once it
//!   verifies our exchange, forgets that initiator SA in turn.
//!
//! The decision needs the peer's answer, so a spoofed MM1 abandons
//! nothing: it never gets verified and expires on its own. Only fresh Main
//! Modes cross this way; a phase 1 rekey settles its own collisions
//! (`rekey.rs`), and an Aggressive Mode initiator is authenticated by the
//! responder's first answer, before anything could be compared.
//!
//! The one ordering the rule cannot collapse: our initiator SA completes
//! before the peer's exchange is verified (a long delay on one path). The
//! peer then has abandoned its initiator (ours won), so the responder SA
//! is left to expire, quietly; a peer that never abandons (one that does
//! not settle crossings, such as IOS) completes it and the newer SA
//! supersedes the older, as before.

use crate::endpoint::{Endpoint, Phase1, SaId, ike};
use rand_core::{CryptoRng, RngCore};
use std::net::IpAddr;

/// Our own phase 1 that a crossing exchange could replace: a fresh Main
/// Mode we started and that is not established yet.
fn crossable(s: &Phase1) -> bool {
    s.initiator && !s.aggressive && s.replaces.is_none() && !s.is_established()
}

/// A responder SA that may be the peer's half of a crossing.
fn crossing_responder(s: &Phase1) -> bool {
    !s.initiator && !s.aggressive && !s.is_established()
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// Our crossable initiator SA with `peer` from `local`, newest first.
    fn own_crossable(&self, peer: IpAddr, local: IpAddr) -> Option<SaId> {
        self.sa_peers.get(peer).rev().find(|id| {
            self.sas
                .get(id)
                .is_some_and(|s| crossable(s) && s.local.ip() == local)
        })
    }

    /// The peer's MM1 made responder SA `r`: remember our own Main Mode
    /// with it still under way, if any.
    pub(crate) fn note_crossing_responder(&mut self, r: SaId) {
        let Some((peer, local)) = self.sas.get(&r).map(|s| (s.remote.ip(), s.local.ip())) else {
            return;
        };
        let ours = self.own_crossable(peer, local);
        if let (Some(i), Some(s)) = (ours, self.sas.get_mut(&r)) {
            ike!(
                "ISAKMP ({}): the peer's Main Mode crosses ours ({}) with {}",
                r,
                i,
                peer
            );
            s.crossing = Some(i);
        }
    }

    /// We started Main Mode `i` while the peer's bare MM1s wait unanswered
    /// (older than the grace a request waits on them): should one of them
    /// prove real, it crosses ours.
    pub(crate) fn note_crossing_initiator(&mut self, i: SaId) {
        let Some((peer, local)) = self
            .sas
            .get(&i)
            .filter(|s| crossable(s))
            .map(|s| (s.remote.ip(), s.local.ip()))
        else {
            return;
        };
        for r in self.sa_peers.list(peer) {
            if let Some(s) = self.sas.get_mut(&r)
                && crossing_responder(s)
                && s.crossing.is_none()
                && s.local.ip() == local
            {
                s.crossing = Some(i);
            }
        }
    }

    /// Responder SA `r` was just verified (the peer's MM3 arrived): settle
    /// a crossing with our own Main Mode. True when `r` lost and is gone:
    /// the MM3 is not to be answered.
    pub(crate) fn settle_crossing(&mut self, r: SaId) -> bool {
        let Some((rc, i)) = self
            .sas
            .get(&r)
            .and_then(|s| Some((s.icookie, s.crossing?)))
        else {
            return false;
        };
        let Some(ic) = self
            .sas
            .get(&i)
            .filter(|s| s.initiator && s.replaces.is_none())
            .map(|s| (s.icookie, s.is_established()))
        else {
            return false;
        };
        match ic {
            // Ours completed first: the peer abandoned its own initiator
            // (or never settles crossings); this one only expires.
            (ic, true) if ic < rc => {
                if let Some(s) = self.sas.get_mut(&r) {
                    s.crossing_lost = true;
                }
                false
            }
            (_, true) => false,
            (ic, false) if rc < ic => {
                ike!(
                    "ISAKMP ({}): crossing Main Modes, the peer's goes on; abandoning ours ({})",
                    r,
                    i
                );
                let Some(mut s) = self.forget_phase1(i) else {
                    return false;
                };
                if let Some(w) = self.sas.get_mut(&r) {
                    w.pending.append(&mut s.pending);
                    w.took_over = true;
                }
                false
            }
            (ic, false) if ic < rc => {
                ike!(
                    "ISAKMP ({}): crossing Main Modes, ours ({}) goes on; dropping the peer's",
                    r,
                    i
                );
                let Some(mut s) = self.forget_phase1(r) else {
                    return false;
                };
                if let Some(w) = self.sas.get_mut(&i) {
                    w.pending.append(&mut s.pending);
                }
                true
            }
            // Equal cookies: nothing to compare, both go on.
            _ => false,
        }
    }

    /// Remove a phase 1 SA without a word: no event, no DELETE, nothing
    /// moved (the caller takes what it carried); counted as superseded.
    fn forget_phase1(&mut self, id: SaId) -> Option<Phase1> {
        let s = self.sas.remove(&id)?;
        self.by_cookie.remove(&(s.icookie, s.remote.ip()));
        self.sa_peers.remove(s.remote.ip(), id);
        self.half_open.remove(id);
        // A negotiation that started and will neither complete nor fail.
        self.stats
            .handshakes
            .phase1
            .fail(crate::handshakes::Failure::Superseded);
        Some(s)
    }
}
