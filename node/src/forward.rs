//! [`Forward`]: what a driver's forwarding loop drives, the same way on
//! every thread: a [`crate::Router`] on the control thread, an
//! [`crate::engine::Engine`] replica on a forwarding worker's.

use dmvpn_time::Instant;

use crate::engine::{Batches, Counters};
use crate::router::Datagram;

pub trait Forward {
    /// An inner packet read from the TUN.
    fn handle_tun(&mut self, now: Instant, pkt: &[u8]);
    /// Datagrams from the underlay, in order.
    fn handle_underlay_burst<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = Datagram<'a>>,
    );
    /// True when every batch has room for what `pkt` may queue.
    fn has_room_for(&self, pkt: &[u8]) -> bool;
    /// Everything queued for the TUN and the underlay sockets.
    fn batches(&mut self) -> Batches<'_>;
    /// Counters the driver adds to.
    fn counters_mut(&mut self) -> &mut Counters;
}
