//! The forwarding half of a loop, the same on every thread: reads from
//! the TUN and the underlay handed to a [`Forward`] (the router on the
//! event loop's thread, an engine replica on a worker's), and what it
//! queued written out in batches.

use dmvpn_nhrp::Instant;
use dmvpn_node::engine::Counters;
use dmvpn_node::forward::Forward;
use dmvpn_node::router::Datagram;

use crate::runtime::sockets::{DatagramSocket, SendBatch};
use crate::runtime::tun::{self as tun_io, Tun, TunReader, TunWriter};

/// Inner packets taken from the TUN per wake-up before the sockets get a
/// turn again (an offloaded read alone may hold ~45).
const TUN_BURST: usize = 256;
/// Received datagrams handed over at a time: what one receive takes
/// without GRO, which the batches hold once flushed. A GRO receive can
/// hold hundreds of datagrams, far more than the batches.
const UNDERLAY_RUN: usize = dmvpn_node::engine::BATCH;

/// The devices one thread forwards through.
pub struct Wires<'a> {
    pub tun: &'a Tun,
    pub gre: &'a DatagramSocket,
    pub esp: &'a DatagramSocket,
    pub udp4500: &'a DatagramSocket,
}

/// Writes out the batches: inner packets to the TUN (one batched write,
/// coalesced into super-packets when the TUN offloads), outer packets
/// with `sendmmsg`. A failed packet is counted.
pub async fn flush(f: &mut impl Forward, w: &Wires<'_>, tun_tx: &mut TunWriter) {
    let b = f.batches();
    for i in 0..b.tun.len() {
        if tun_tx.is_full() {
            write_tun(b.counters, w.tun, tun_tx).await;
        }
        if !tun_tx.push(b.tun.get(i)) {
            b.counters.malformed += 1;
        }
    }
    b.tun.clear();
    write_tun(b.counters, w.tun, tun_tx).await;
    for (sock, batch) in [(w.gre, &mut *b.gre), (w.esp, &mut *b.esp)] {
        send(sock, batch, b.counters).await;
    }
    send(w.udp4500, b.udp, b.counters).await;
}

/// Handles the packets of the TUN read just completed, then reads on
/// while packets are ready (up to [`TUN_BURST`]), writing out whenever
/// a batch fills. A read the kernel marked malformed (bad virtio header
/// or GSO packet) is counted and skipped; a device error ends the burst
/// and shows up on the next wait.
pub async fn tun_burst(
    f: &mut impl Forward,
    w: &Wires<'_>,
    tun_tx: &mut TunWriter,
    r: &mut TunReader,
    now: Instant,
) {
    let mut taken = 0;
    loop {
        if r.len() > 1 {
            f.counters_mut().tun_gso_rx += 1;
        }
        for i in 0..r.len() {
            if !f.has_room_for(r.get(i)) {
                flush(f, w, tun_tx).await;
            }
            f.handle_tun(now, r.get(i));
        }
        taken += r.len().max(1);
        if taken >= TUN_BURST {
            return;
        }
        match r.try_recv(w.tun) {
            Ok(_) => {}
            Err(err) if tun_io::is_packet_error(&err) => f.counters_mut().malformed += 1,
            Err(_) => return,
        }
    }
}

/// Hands `k` received datagrams (`datagram(i)`) over in runs of
/// [`UNDERLAY_RUN`], writing out what was queued between runs, so that
/// nothing is dropped for want of room.
pub async fn underlay_burst<'a>(
    f: &mut impl Forward,
    w: &Wires<'_>,
    tun_tx: &mut TunWriter,
    now: Instant,
    k: usize,
    datagram: impl Fn(usize) -> Datagram<'a>,
) {
    let mut at = 0;
    while at < k {
        if at > 0 {
            flush(f, w, tun_tx).await;
        }
        let end = (at + UNDERLAY_RUN).min(k);
        f.handle_underlay_burst(now, (at..end).map(&datagram));
        at = end;
    }
}

async fn send(sock: &DatagramSocket, batch: &mut SendBatch, c: &mut Counters) {
    if batch.is_empty() {
        return;
    }
    match sock.send_batch(batch).await {
        Ok(r) => {
            c.send_errors += r.failed as u64;
            c.direct_tx += r.direct as u64;
        }
        Err(_) => {
            c.send_errors += batch.len() as u64;
            batch.clear();
        }
    }
}

async fn write_tun(c: &mut Counters, tun: &Tun, w: &mut TunWriter) {
    let n = w.len() as u64;
    if n == 0 {
        return;
    }
    match w.write(tun).await {
        Ok(_) => c.tun_tx += n,
        // Some write failed; which ones is not known.
        Err(_) => c.send_errors += 1,
    }
    c.tun_gro_tx += w.coalesced() as u64;
}
