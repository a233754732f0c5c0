//! Handshake states, named as IOS names them in `debug crypto isakmp`
//! and `show crypto isakmp sa`.

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
