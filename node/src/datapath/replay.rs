//! Anti-replay sliding window (RFC 4303 §3.4.3) of [`WINDOW`] packets.
//!
//! `check` runs before the ICV is verified and does not change state;
//! `update` runs only once the ICV has been verified, so forged packets
//! cannot move the window.

use thiserror::Error;

/// Window size in packets.
pub const WINDOW: u32 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplayError {
    #[error("sequence number 0 is never sent")]
    Zero,
    #[error("sequence number left of the window")]
    TooOld,
    #[error("sequence number already received")]
    Duplicate,
}

/// Bitmap of the last [`WINDOW`] sequence numbers, indexed by `seq % WINDOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest accepted sequence number (0 before the first packet).
    top: u32,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub const fn new() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }

    /// Highest sequence number accepted so far.
    pub fn highest(&self) -> u32 {
        self.top
    }

    fn slot(seq: u32) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Would `seq` be accepted? Does not change the window.
    pub fn check(&self, seq: u32) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (w, b) = Self::slot(seq);
        if self.bits[w] & b != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received; call after a successful `check` and ICV.
    pub fn update(&mut self, seq: u32) {
        let _ = self.accept(seq);
    }

    /// Records `seq` as received if it still would be accepted, and says
    /// whether it was: the check again, at the moment the window moves,
    /// for receivers that verified the ICV without holding the window.
    pub fn accept(&mut self, seq: u32) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Forget the slots that now stand for the new numbers.
                for s in self.top + 1..=seq {
                    let (w, b) = Self::slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] |= b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(0), Err(ReplayError::Zero));
        for s in 1..=3000 {
            assert_eq!(w.check(s), Ok(()));
            w.update(s);
            assert_eq!(w.check(s), Err(ReplayError::Duplicate));
        }
        assert_eq!(w.check(3000 - WINDOW + 1), Err(ReplayError::Duplicate));
        assert_eq!(w.check(3000 - WINDOW), Err(ReplayError::TooOld));
    }

    #[test]
    fn reordering_within_the_window_is_accepted() {
        let mut w = ReplayWindow::new();
        w.update(2000);
        for s in (2000 - WINDOW + 1..2000).rev() {
            assert_eq!(w.check(s), Ok(()), "{s}");
            w.update(s);
        }
        assert_eq!(w.check(2000 - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.check(1500), Err(ReplayError::Duplicate));
    }

    #[test]
    fn accept_takes_each_number_once() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.accept(7), Err(ReplayError::Duplicate));
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(5), Err(ReplayError::Duplicate));
        assert_eq!(w.accept(0), Err(ReplayError::Zero));
        assert_eq!(w.highest(), 7);
    }

    #[test]
    fn check_alone_does_not_move_the_window() {
        let mut w = ReplayWindow::new();
        w.update(10);
        assert_eq!(w.check(100_000), Ok(()));
        assert_eq!(w.highest(), 10);
        assert_eq!(w.check(9), Ok(()));
    }

    #[test]
    fn big_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for s in 1..100 {
            w.update(s);
        }
        w.update(1_000_000);
        assert_eq!(w.check(1_000_000 - 1), Ok(()));
        assert_eq!(w.check(1_000_000 - WINDOW + 1), Ok(()));
        // Slot reused by the jump is free even though its old number was seen.
        w.update(1_000_000 + 50);
        assert_eq!(w.check(1_000_000 + 50 - WINDOW + 1), Ok(()));
    }

    proptest! {
        #[test]
        fn matches_a_reference_model(seqs in proptest::collection::vec(1u32..5000, 1..600)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut top = 0u32;
            for s in seqs {
                let expect_ok = !seen.contains(&s) && (s > top || top - s < WINDOW);
                prop_assert_eq!(w.check(s).is_ok(), expect_ok, "seq {} top {}", s, top);
                if expect_ok {
                    w.update(s);
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }
}
