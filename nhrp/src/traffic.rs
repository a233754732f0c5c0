//! Per-type packet counters for `show ip nhrp traffic`: what this node
//! sent (its own packets and those it forwarded as an NHS) and what it
//! received and could parse.

use crate::wire::PacketType;

/// Packets of each type, in [`PacketType::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeCounts([u64; PacketType::ALL.len()]);

impl TypeCounts {
    /// Counts one packet of type `ty`.
    pub fn count(&mut self, ty: PacketType) {
        self.0[index(ty)] += 1;
    }

    /// Packets of type `ty`.
    pub fn get(&self, ty: PacketType) -> u64 {
        self.0[index(ty)]
    }

    /// All packets.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

fn index(ty: PacketType) -> usize {
    usize::from(ty.to_u8() - 1)
}

/// Sent and received packets by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets queued for sending (retransmissions and forwarded ones too).
    pub sent: TypeCounts,
    /// Packets received that parsed, whatever became of them next.
    pub received: TypeCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type() {
        let mut t = TypeCounts::default();
        for ty in PacketType::ALL {
            t.count(ty);
        }
        t.count(PacketType::TrafficIndication);
        assert_eq!(t.get(PacketType::ResolutionRequest), 1);
        assert_eq!(t.get(PacketType::TrafficIndication), 2);
        assert_eq!(t.total(), 9);
    }
}
