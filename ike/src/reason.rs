//! Why an SA went away or a negotiation failed, as the events report it
//! (`Event::Phase1Down`, `Phase1Failed`, `ChildSaDeleted`, `Phase2Failed`),
//! so the caller can act on the cause. `Display` gives the words the
//! debug and log lines use.

use crate::wire::consts::{notify, notify_name};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The peer sent a DELETE for it.
    PeerDelete,
    /// Its lifetime ran out.
    LifetimeExpired,
    /// Dead peer detection: the peer stopped answering R-U-THERE.
    DeadPeer,
    /// Everything with the peer was cleared on request (`clear crypto sa peer`).
    Cleared,
    /// This IPsec SA was deleted on request.
    Requested,
    /// The peer announced a fresh start (INITIAL-CONTACT): what it had
    /// with us before is gone on its side.
    InitialContact,
    /// A newer ISAKMP SA with the peer took over (phase 1 rekey).
    Replaced,
    /// Our phase 1 message went unanswered through every retransmission.
    RetransmissionsExhausted,
    /// Our Quick Mode went unanswered through every retransmission.
    QuickModeRetransmissionsExhausted,
    /// A Quick Mode we started on this ISAKMP SA went unanswered: the peer
    /// is gone or cannot decrypt what the SA sends.
    QuickModeUnanswered,
    /// The peer's Diffie-Hellman public value is not one of the group's.
    InvalidKeyExchange,
    /// The peer accepted none of our proposals (NO-PROPOSAL-CHOSEN).
    NoProposalChosen,
    /// The peer could not authenticate us (AUTHENTICATION-FAILED).
    AuthenticationFailed,
    /// Another error notification from the peer (its type, below 8192).
    PeerError(u16),
    /// The phase 1 a phase 2 negotiation needed failed or went away, for
    /// this reason.
    Phase1Failed(Box<Reason>),
}

impl Reason {
    /// The reason an error notification from the peer gives.
    pub fn from_notify(msg_type: u16) -> Reason {
        match msg_type {
            notify::NO_PROPOSAL_CHOSEN => Reason::NoProposalChosen,
            notify::AUTHENTICATION_FAILED => Reason::AuthenticationFailed,
            t => Reason::PeerError(t),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::PeerDelete => f.write_str("deleted by peer"),
            Reason::LifetimeExpired => f.write_str("lifetime expired"),
            Reason::DeadPeer => f.write_str("peer dead (DPD)"),
            Reason::Cleared => f.write_str("cleared by request"),
            Reason::Requested => f.write_str("deleted by request"),
            Reason::InitialContact => f.write_str("INITIAL-CONTACT"),
            Reason::Replaced => f.write_str("replaced by a newer ISAKMP SA"),
            Reason::RetransmissionsExhausted => f.write_str("retransmission limit reached"),
            Reason::QuickModeRetransmissionsExhausted => {
                f.write_str("quick mode retransmission limit")
            }
            Reason::QuickModeUnanswered => f.write_str("quick mode unanswered"),
            Reason::InvalidKeyExchange => f.write_str("invalid KE"),
            Reason::NoProposalChosen => f.write_str(notify_name(notify::NO_PROPOSAL_CHOSEN)),
            Reason::AuthenticationFailed => f.write_str(notify_name(notify::AUTHENTICATION_FAILED)),
            Reason::PeerError(t) => f.write_str(notify_name(*t)),
            Reason::Phase1Failed(r) => write!(f, "phase 1 failed: {r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are those the events carried as strings before.
    #[test]
    fn display_reads_as_before() {
        for (r, s) in [
            (Reason::PeerDelete, "deleted by peer"),
            (Reason::LifetimeExpired, "lifetime expired"),
            (Reason::DeadPeer, "peer dead (DPD)"),
            (Reason::Cleared, "cleared by request"),
            (Reason::Requested, "deleted by request"),
            (Reason::InitialContact, "INITIAL-CONTACT"),
            (Reason::Replaced, "replaced by a newer ISAKMP SA"),
            (
                Reason::RetransmissionsExhausted,
                "retransmission limit reached",
            ),
            (
                Reason::QuickModeRetransmissionsExhausted,
                "quick mode retransmission limit",
            ),
            (Reason::QuickModeUnanswered, "quick mode unanswered"),
            (Reason::InvalidKeyExchange, "invalid KE"),
            (Reason::from_notify(14), "NO-PROPOSAL-CHOSEN"),
            (Reason::from_notify(24), "AUTHENTICATION-FAILED"),
            (Reason::from_notify(11), "INVALID-SPI"),
            (
                Reason::Phase1Failed(Box::new(Reason::NoProposalChosen)),
                "phase 1 failed: NO-PROPOSAL-CHOSEN",
            ),
        ] {
            assert_eq!(r.to_string(), s);
        }
        assert_eq!(Reason::from_notify(14), Reason::NoProposalChosen);
        assert_eq!(Reason::from_notify(9000), Reason::PeerError(9000));
    }
}
