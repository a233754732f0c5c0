//! Forwarding workers: threads that forward beside the event loop, each
//! with its own TUN queue, its own share of the underlay (see
//! [`super::event_loop::Links::for_worker`]) and a replica of the
//! router's forwarding engine ([`dmvpn_node::engine::Engine::replica`]).
//!
//! The event loop stays the only control plane: it sends every change of
//! the router's forwarding state to each worker, in order, and takes what
//! a worker hands back (packets waiting for an SA, NHRP and IKE messages,
//! a hub's relayed packets; see [`Punt`]) as if it had read it itself.
//! Workers report their counters every [`REPORT_INTERVAL`]; SA counters
//! are shared and always current.

use std::io;
use std::net::SocketAddrV4;
use std::thread::JoinHandle;
use std::time::Duration;

use dmvpn_nhrp::Instant;
use dmvpn_node::Router;
use dmvpn_node::engine::{BATCH, BUF_SIZE, Counters, Engine, Punt, Update};
use dmvpn_node::router::Datagram;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::event_loop::{Links, NATT_PORT, WorkerLinks};
use super::forwarding;
use crate::runtime::sockets::RecvBatch;
use crate::runtime::tun::{self as tun_io, TunReader, TunWriter};
use dmvpn_node::datapath::gre::GreCounters;

/// How often a worker reports its counters.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);
/// Reports queued towards the event loop; past it a worker drops (and
/// counts) what it would hand back.
const REPORT_QUEUE: usize = 4096;

/// What a worker sends the event loop.
pub enum Report {
    Punt(Punt),
    Counters {
        index: usize,
        counters: Box<Counters>,
        gre: GreCounters,
    },
}

/// The running workers, as the event loop sees them.
pub struct Workers {
    updates: Vec<mpsc::UnboundedSender<Update>>,
    pub reports: mpsc::Receiver<Report>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n - 1` workers beside the event loop's thread (which
    /// forwards too, as worker 0). `links` must have been opened for `n`.
    pub fn start(
        router: &mut Router,
        links: &Links,
        n: usize,
        epoch: std::time::Instant,
    ) -> io::Result<Workers> {
        let (report_tx, reports) = mpsc::channel(REPORT_QUEUE);
        let mut w = Workers {
            updates: Vec::new(),
            reports,
            threads: Vec::new(),
        };
        for index in 1..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let wires = {
                let _in_worker = rt.enter();
                links.for_worker(index, n)?
            };
            let engine = router.replica();
            let (tx, rx) = mpsc::unbounded_channel();
            let reports = report_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("dmvpn-fwd{index}"))
                .spawn(move || rt.block_on(run(index, engine, wires, rx, reports, epoch)))?;
            w.updates.push(tx);
            w.threads.push(thread);
        }
        info!(target: "dmvpn::gre", interface = %links.tun.name(), "{n} forwarding threads");
        Ok(w)
    }

    /// Sends the router's changes of forwarding state to every worker.
    pub fn send_updates(&self, router: &mut Router) {
        while let Some(u) = router.poll_update() {
            for tx in &self.updates {
                // A worker that ended has logged why.
                let _ = tx.send(u.clone());
            }
        }
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        drop(self.updates);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What the event loop does with a report.
pub fn take(router: &mut Router, now: Instant, r: Report) {
    match r {
        Report::Punt(p) => router.handle_punt(now, p),
        Report::Counters {
            index,
            counters,
            gre,
        } => router.set_replica_counters(index - 1, *counters, gre),
    }
}

/// One worker's loop, until the event loop drops its update channel.
async fn run(
    index: usize,
    mut engine: Engine,
    links: WorkerLinks,
    mut updates: mpsc::UnboundedReceiver<Update>,
    reports: mpsc::Sender<Report>,
    epoch: std::time::Instant,
) {
    let now = || Instant(epoch.elapsed());
    let wires = links.wires();
    let mut tun_tx = TunWriter::new(BATCH);
    let mut tun_rx = TunReader::new(&links.tun);
    let mut gre_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut esp_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut u4_rb = RecvBatch::for_socket(&links.udp4500, BATCH, BUF_SIZE);
    let local = SocketAddrV4::new(links.nbma, NATT_PORT);
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            biased;
            u = updates.recv() => match u {
                Some(u) => {
                    engine.apply_update(u);
                    while let Ok(u) = updates.try_recv() {
                        engine.apply_update(u);
                    }
                    // A reload changed the MTU: larger read buffers.
                    links.tun.assume_mtu(engine.config().mtu);
                    tun_rx.fit(&links.tun);
                }
                None => break,
            },
            r = tun_rx.recv(&links.tun) => match r {
                Ok(_) => forwarding::tun_burst(&mut engine, &wires, &mut tun_tx, &mut tun_rx, now()).await,
                Err(e) if tun_io::is_packet_error(&e) => engine.counters_mut().malformed += 1,
                Err(e) => {
                    warn!(target: "dmvpn::gre", "forwarding thread {index}: TUN queue failed: {e}");
                    break;
                }
            },
            r = links.gre.recv_batch(&mut gre_rb) => match r {
                Ok(k) => forwarding::underlay_burst(&mut engine, &wires, &mut tun_tx, now(), k, |i| Datagram::Gre(gre_rb.get(i).0)).await,
                Err(_) => engine.counters_mut().recv_errors += 1,
            },
            r = links.esp.recv_batch(&mut esp_rb) => match r {
                Ok(k) => forwarding::underlay_burst(&mut engine, &wires, &mut tun_tx, now(), k, |i| Datagram::Esp(esp_rb.get(i).0)).await,
                Err(_) => engine.counters_mut().recv_errors += 1,
            },
            r = links.udp4500.recv_batch(&mut u4_rb) => match r {
                Ok(k) => forwarding::underlay_burst(&mut engine, &wires, &mut tun_tx, now(), k, |i| {
                    let (payload, remote) = u4_rb.get(i);
                    Datagram::Udp { local, remote, payload }
                }).await,
                Err(_) => engine.counters_mut().recv_errors += 1,
            },
            _ = tick.tick() => report_counters(index, &engine, &reports),
        }
        forwarding::flush(&mut engine, &wires, &mut tun_tx).await;
        while let Some(p) = engine.poll_punt() {
            if reports.try_send(Report::Punt(p)).is_err() {
                engine.counters_mut().queue_full += 1;
            }
        }
    }
    report_counters(index, &engine, &reports);
}

fn report_counters(index: usize, engine: &Engine, reports: &mpsc::Sender<Report>) {
    let (counters, gre) = engine.own_counters();
    // A full queue skips one report; the next one carries the totals.
    let _ = reports.try_send(Report::Counters {
        index,
        counters: Box::new(counters),
        gre,
    });
}
