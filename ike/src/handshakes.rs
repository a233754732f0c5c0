//! Counts of negotiations, for the metrics endpoint: phase 1 (Main or
//! Aggressive Mode) and Quick Mode exchanges started, completed and
//! failed, the failures by [`Failure`].
//!
//! Both roles count. A phase 1 starts when its SA is created (our first
//! message, or the peer's first message taken) and fails when the SA goes
//! before it was established; a Quick Mode starts when its first message
//! is sent or taken and fails when the engine reports it failed. A first
//! message refused for its proposals counts as started and failed at once.

use crate::reason::Reason;

/// Why a negotiation failed, in the words a dashboard groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// No answer through every retransmission (or DPD, or an unanswered
    /// Quick Mode on an SA that seemed up).
    Timeout,
    /// A hash or signature did not verify (usually a pre-shared key
    /// mismatch), on either side.
    AuthFailed,
    /// No proposal was acceptable, to us or to the peer.
    NoProposalChosen,
    /// The peer's Diffie-Hellman value was not valid for the group.
    InvalidKe,
    /// The peer deleted it, or started afresh (INITIAL-CONTACT).
    PeerDelete,
    /// Another error notification from the peer.
    PeerError,
    /// The phase 1 this Quick Mode needed failed or went away.
    Phase1Failed,
    /// A parallel negotiation with the same peer won (simultaneous
    /// initiation, rekey), or the exchange moved to another ISAKMP SA
    /// with the peer (and counts again there).
    Superseded,
    /// Cleared or deleted on request.
    Cleared,
    /// Only the peer's first message was ever seen (not a negotiation
    /// anyone proved they wanted; spoofed sources end here).
    Unverified,
    Other,
}

impl Failure {
    pub const ALL: [Failure; 11] = [
        Failure::Timeout,
        Failure::AuthFailed,
        Failure::NoProposalChosen,
        Failure::InvalidKe,
        Failure::PeerDelete,
        Failure::PeerError,
        Failure::Phase1Failed,
        Failure::Superseded,
        Failure::Cleared,
        Failure::Unverified,
        Failure::Other,
    ];

    /// Stable label (metrics, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::AuthFailed => "auth_failed",
            Failure::NoProposalChosen => "no_proposal_chosen",
            Failure::InvalidKe => "invalid_ke",
            Failure::PeerDelete => "peer_delete",
            Failure::PeerError => "peer_error",
            Failure::Phase1Failed => "phase1_failed",
            Failure::Superseded => "superseded",
            Failure::Cleared => "cleared",
            Failure::Unverified => "unverified",
            Failure::Other => "other",
        }
    }
}

impl From<&Reason> for Failure {
    fn from(r: &Reason) -> Failure {
        match r {
            Reason::RetransmissionsExhausted
            | Reason::QuickModeRetransmissionsExhausted
            | Reason::QuickModeUnanswered
            | Reason::DeadPeer => Failure::Timeout,
            Reason::AuthenticationFailed => Failure::AuthFailed,
            Reason::NoProposalChosen => Failure::NoProposalChosen,
            Reason::InvalidKeyExchange => Failure::InvalidKe,
            Reason::PeerDelete | Reason::InitialContact => Failure::PeerDelete,
            Reason::PeerError(_) => Failure::PeerError,
            Reason::Phase1Failed(_) => Failure::Phase1Failed,
            Reason::Replaced => Failure::Superseded,
            Reason::Cleared | Reason::Requested => Failure::Cleared,
            Reason::LifetimeExpired => Failure::Other,
        }
    }
}

/// One kind of exchange: started, completed, failed by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub started: u64,
    pub completed: u64,
    failed: [u64; Failure::ALL.len()],
}

impl Counts {
    pub(crate) fn fail(&mut self, why: Failure) {
        self.failed[why as usize] += 1;
    }

    /// Failures for this reason.
    pub fn failed(&self, why: Failure) -> u64 {
        self.failed[why as usize]
    }

    /// Every reason with its count (zeros included).
    pub fn failures(&self) -> impl Iterator<Item = (Failure, u64)> + '_ {
        Failure::ALL.into_iter().map(|f| (f, self.failed(f)))
    }
}

/// Phase 1 and Quick Mode counts since the endpoint was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    pub phase1: Counts,
    pub quick_mode: Counts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_failures() {
        assert_eq!(
            Failure::from(&Reason::RetransmissionsExhausted),
            Failure::Timeout
        );
        assert_eq!(Failure::from(&Reason::from_notify(24)), Failure::AuthFailed);
        assert_eq!(
            Failure::from(&Reason::Phase1Failed(Box::new(Reason::NoProposalChosen))),
            Failure::Phase1Failed
        );
        let mut c = Counts::default();
        c.fail(Failure::Other);
        c.fail(Failure::Other);
        assert_eq!(c.failed(Failure::Other), 2);
        assert_eq!(c.failures().map(|(_, n)| n).sum::<u64>(), 2);
        let labels: std::collections::BTreeSet<_> =
            Failure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(labels.len(), Failure::ALL.len());
    }
}
