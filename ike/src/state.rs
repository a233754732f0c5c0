//! Handshake states, named as IOS names them in `debug crypto isakmp`
//! and `show crypto isakmp sa`, and what each state holds.

use crate::Instant;
use crate::crypto::{DhPrivate, GroupId};
use crate::endpoint::ChildSa;
use crate::keys::Phase1Keys;
use crate::policy::{IkePolicy, Mode, OfferedP2};
use zeroize::Zeroizing;

/// Phase 1 state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum P1State {
    Ready,
    IMm1,
    IMm2,
    IMm3,
    IMm4,
    IMm5,
    IMm6,
    RMm1,
    RMm2,
    RMm3,
    RMm4,
    RMm5,
    RMm6,
    IAm1,
    IAm2,
    RAm1,
    RAm2,
    Complete,
}

impl P1State {
    /// Name in "Old State = ... New State = ..." lines.
    pub fn ios_name(self) -> &'static str {
        match self {
            P1State::Ready => "IKE_READY",
            P1State::IMm1 => "IKE_I_MM1",
            P1State::IMm2 => "IKE_I_MM2",
            P1State::IMm3 => "IKE_I_MM3",
            P1State::IMm4 => "IKE_I_MM4",
            P1State::IMm5 => "IKE_I_MM5",
            P1State::IMm6 => "IKE_I_MM6",
            P1State::RMm1 => "IKE_R_MM1",
            P1State::RMm2 => "IKE_R_MM2",
            P1State::RMm3 => "IKE_R_MM3",
            P1State::RMm4 => "IKE_R_MM4",
            P1State::RMm5 => "IKE_R_MM5",
            P1State::RMm6 => "IKE_R_MM6",
            P1State::IAm1 => "IKE_I_AM1",
            P1State::IAm2 => "IKE_I_AM2",
            P1State::RAm1 => "IKE_R_AM1",
            P1State::RAm2 => "IKE_R_AM2",
            P1State::Complete => "IKE_P1_COMPLETE",
        }
    }

    /// Name in `show crypto isakmp sa`.
    pub fn show_name(self) -> &'static str {
        match self {
            P1State::Ready | P1State::IMm1 | P1State::RMm1 => "MM_NO_STATE",
            P1State::IMm2 | P1State::IMm3 | P1State::RMm2 | P1State::RMm3 => "MM_SA_SETUP",
            P1State::IMm4
            | P1State::IMm5
            | P1State::IMm6
            | P1State::RMm4
            | P1State::RMm5
            | P1State::RMm6 => "MM_KEY_EXCH",
            P1State::IAm1 | P1State::RAm1 => "AG_NO_STATE",
            P1State::IAm2 | P1State::RAm2 => "AG_INIT_EXCH",
            P1State::Complete => "QM_IDLE",
        }
    }

    /// Short tag IOS prints after "sending packet ... (I)".
    pub fn debug_tag(self) -> &'static str {
        self.show_name()
    }
}

/// Quick Mode state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QmState {
    IQm1,
    RQm2,
    Complete,
}

impl QmState {
    pub fn ios_name(self) -> &'static str {
        match self {
            QmState::IQm1 => "IKE_QM_I_QM1",
            QmState::RQm2 => "IKE_QM_R_QM2",
            QmState::Complete => "IKE_QM_PHASE2_COMPLETE",
        }
    }
}

/// What a phase 1 SA holds at each point where it waits for the peer
/// (rustls style: one type per handshake state). A value exists only in
/// the states where it is valid: the pre-shared key and our DH private
/// value until the keys are derived; g^xi, g^xr and SAi_b until the peer
/// is authenticated; the keys and the running IV from MM4/AM2 on.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) enum Handshake {
    /// IKE_I_MM1: our policies offered.
    IMm1(Offered),
    /// IKE_I_MM3: a policy agreed, our KE and nonce sent.
    IMm3(KeyExchange),
    /// IKE_I_MM5: keys derived, our ID and HASH_I sent.
    IMm5(Keyed, AuthInputs),
    /// IKE_R_MM2: a policy chosen from the initiator's offer.
    RMm2(Chosen),
    /// IKE_R_MM3: the initiator answered MM2 with its KE; keys are being
    /// derived (within one message's processing; a refused KE fails here).
    RMm3(Chosen),
    /// IKE_R_MM4: keys derived, our KE and nonce sent.
    RMm4(Keyed, AuthInputs),
    /// IKE_I_AM1: offer, KE, nonce and ID sent.
    IAm1(KeyExchange),
    /// IKE_I_AM2: the responder is authenticated; AM3 is being sent.
    IAm2(Keyed),
    /// IKE_R_AM2: keys derived and AM2 sent; HASH_I over IDii_b (the
    /// initiator's ID body from AM1) is awaited.
    RAm2(Keyed, AuthInputs, Vec<u8>),
    /// IKE_P1_COMPLETE.
    Complete(Keyed),
}

/// Initiator, before any answer.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Offered {
    /// Our SA payload body as sent (SAi_b).
    pub sai_b: Vec<u8>,
    pub psk: Zeroizing<Vec<u8>>,
}

/// Responder, policy chosen, before the initiator's KE.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Chosen {
    pub policy: IkePolicy,
    /// The initiator's SA payload body (SAi_b).
    pub sai_b: Vec<u8>,
    pub psk: Zeroizing<Vec<u8>>,
}

/// Initiator, our KE and nonce sent, the peer's awaited.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct KeyExchange {
    /// The agreed policy (Main Mode) or the first one offered (Aggressive Mode).
    pub policy: IkePolicy,
    pub sai_b: Vec<u8>,
    pub psk: Zeroizing<Vec<u8>>,
    pub dh: DhPrivate,
    /// Our public value (g^xi) and nonce (Ni_b).
    pub public: Vec<u8>,
    pub nonce: Vec<u8>,
}

/// Keys derived: what encrypts and authenticates from here on.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct Keyed {
    pub policy: IkePolicy,
    pub keys: Phase1Keys,
    /// The running phase 1 IV: the last CBC block sent or received. Once
    /// complete, what Quick Mode and informational IVs derive from.
    pub iv: Vec<u8>,
}

/// What HASH_I and HASH_R cover besides the keys, cookies and ID.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct AuthInputs {
    pub gxi: Vec<u8>,
    pub gxr: Vec<u8>,
    pub sai_b: Vec<u8>,
}

impl Handshake {
    /// The IOS name of this state.
    pub fn state(&self) -> P1State {
        match self {
            Handshake::IMm1(_) => P1State::IMm1,
            Handshake::IMm3(_) => P1State::IMm3,
            Handshake::IMm5(..) => P1State::IMm5,
            Handshake::RMm2(_) => P1State::RMm2,
            Handshake::RMm3(_) => P1State::RMm3,
            Handshake::RMm4(..) => P1State::RMm4,
            Handshake::IAm1(_) => P1State::IAm1,
            Handshake::IAm2(_) => P1State::IAm2,
            Handshake::RAm2(..) => P1State::RAm2,
            Handshake::Complete(_) => P1State::Complete,
        }
    }

    /// The policy agreed (or, initiating Aggressive Mode, proposed first).
    pub fn policy(&self) -> Option<IkePolicy> {
        match self {
            Handshake::IMm1(_) => None,
            Handshake::RMm2(c) | Handshake::RMm3(c) => Some(c.policy),
            Handshake::IMm3(x) | Handshake::IAm1(x) => Some(x.policy),
            Handshake::IMm5(k, _)
            | Handshake::RMm4(k, _)
            | Handshake::IAm2(k)
            | Handshake::RAm2(k, ..)
            | Handshake::Complete(k) => Some(k.policy),
        }
    }

    /// Keys and running IV, from MM4/AM2 on.
    pub fn keyed(&self) -> Option<&Keyed> {
        match self {
            Handshake::IMm5(k, _)
            | Handshake::RMm4(k, _)
            | Handshake::IAm2(k)
            | Handshake::RAm2(k, ..)
            | Handshake::Complete(k) => Some(k),
            _ => None,
        }
    }

    pub fn keyed_mut(&mut self) -> Option<&mut Keyed> {
        match self {
            Handshake::IMm5(k, _)
            | Handshake::RMm4(k, _)
            | Handshake::IAm2(k)
            | Handshake::RAm2(k, ..)
            | Handshake::Complete(k) => Some(k),
            _ => None,
        }
    }

    /// Keys and running IV of an established SA.
    pub fn established(&self) -> Option<&Keyed> {
        match self {
            Handshake::Complete(k) => Some(k),
            _ => None,
        }
    }
}

/// Where one Quick Mode stands, with what that state holds.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) enum QmStage {
    /// IKE_QM_I_QM1: our proposals sent.
    IQm1(QmOffer),
    /// IKE_QM_R_QM2: a proposal chosen and answered; the IPsec SA pair,
    /// keyed, waits for the initiator's HASH(3).
    RQm2(QmAnswer),
    /// IKE_QM_PHASE2_COMPLETE; kept a while to answer retransmissions.
    /// `ni`: our nonce, when we started it for new selectors (not a
    /// rekey), to settle a collision the peer saw before we did.
    Complete {
        initiator: bool,
        done_at: Instant,
        ni: Option<Vec<u8>>,
    },
}

/// Initiator: what QM2 is checked against.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct QmOffer {
    /// IV of the answer: the last block of our QM1.
    pub iv: Vec<u8>,
    pub ni: Vec<u8>,
    /// PFS: our DH private value.
    pub dh: Option<(GroupId, DhPrivate)>,
    /// The SPI we proposed (our inbound SPI).
    pub our_spi: u32,
    /// Our proposals in order (proposal number = index + 1).
    pub offered: Vec<(Mode, OfferedP2)>,
    /// The inbound SPI of the IPsec SA this one replaces.
    pub rekey_of: Option<u32>,
}

/// Responder: the answer sent, the SA pair it agreed.
#[cfg_attr(fuzzing, derive(Clone))]
pub(crate) struct QmAnswer {
    /// IV of QM3: the last block of our QM2.
    pub iv: Vec<u8>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub child: Box<ChildSa>,
}

impl QmStage {
    pub fn state(&self) -> QmState {
        match self {
            QmStage::IQm1(_) => QmState::IQm1,
            QmStage::RQm2(_) => QmState::RQm2,
            QmStage::Complete { .. } => QmState::Complete,
        }
    }
}
