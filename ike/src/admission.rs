//! Counters the node reads to show what the engine refused or threw away
//! (`show crypto isakmp` style statistics).

/// What the engine dropped on its own; all counts since the endpoint was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// First Aggressive Mode messages dropped because answering Aggressive
    /// Mode is off (`EngineConfig::answer_aggressive`).
    pub aggressive_refused: u64,
}
