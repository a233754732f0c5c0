//! dmvpnd's event loop, the only one that drives a [`Router`] over real
//! devices: it waits for the TUN device, the underlay sockets, the
//! control socket, route changes, the kernel worker's results and the
//! router's next deadline, hands what arrived to the router, and writes
//! out what the router queued. It makes no protocol or forwarding
//! decision, and no netlink call: reads of the routing table and of the
//! tunnel source, and the routes the router asks for, go to the kernel
//! worker ([`super::kernel`]).

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::runtime::control_socket::ControlRequest;
use dmvpn_ctl::proto::{Reply, Request, Response};
use dmvpn_nhrp::Instant;
use dmvpn_node::control::log_limit::{Throttle, held_note};
use dmvpn_node::engine::{BATCH, BUF_SIZE};
use dmvpn_node::router::{Datagram, IKE_PORT};
use dmvpn_node::{Router, Seed};
use dmvpn_wire::ipv4::{PROTO_ESP, PROTO_GRE};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::forwarding::{self, Wires};
use super::kernel::{Done, Kernel};
use super::logging::Logging;
use super::reload::Outside;
use super::source::{Source, SourceWatch};
use crate::runtime::direct;
use crate::runtime::rtnl::Watch;
use crate::runtime::sockets::{self, DatagramSocket, RecvBatch};
use crate::runtime::tun::{self as tun_io, Tun, TunReader, TunWriter};
use socket2::Socket;

/// The NAT-T UDP port.
pub const NATT_PORT: u16 = 4500;
/// Housekeeping runs once a second.
const CHORE_INTERVAL: Duration = Duration::from_secs(1);
/// Chore ticks between reads of the kernel's tunnel routes.
const ROUTE_POLL_TICKS: u64 = 2;
/// Chore ticks between reseeds of the router's generators from the OS.
const RESEED_TICKS: u64 = 3600;
/// Chore ticks between returns of freed heap memory to the OS: state a
/// flood created and the engines dropped (half-open negotiations expire
/// after about two minutes) should not keep the process large.
const TRIM_TICKS: u64 = 10;

/// The TUN device and the underlay sockets of one router.
pub struct Links {
    pub tun: Tun,
    pub gre: DatagramSocket,
    pub esp: DatagramSocket,
    /// UDP 500 (IKE), bound to the NBMA address (or any, see [`Links::open_any`]).
    pub udp500: DatagramSocket,
    /// UDP 4500 (NAT-T: ESP-in-UDP and IKE), bound like UDP 500.
    pub udp4500: DatagramSocket,
    /// The NBMA address: the local address of datagrams received on UDP.
    nbma: Cell<Ipv4Addr>,
    /// The address UDP 500/4500 are bound to (`0.0.0.0`: any).
    bind: Ipv4Addr,
    udp_offload: bool,
    /// Forwarding threads sharing the underlay (1: this one alone).
    workers: usize,
    /// The address the raw GRE and ESP sockets take packets for (`None`:
    /// every address; a node running several tunnels binds each).
    raw_local: Cell<Option<Ipv4Addr>>,
    /// The source interface UDP 500/4500 are bound to, when the tunnel
    /// follows it beside other tunnels ([`Links::open_following`]).
    device: Option<String>,
    /// Every raw socket of this tunnel (this thread's and the workers'),
    /// bound again when a followed source changes address.
    raw_handles: RefCell<Vec<Socket>>,
    /// UDP 500/4500 bound to the address before a [`Links::rebind`], kept
    /// until what was queued from that address (IKE deletes) is sent.
    retired: Option<(Ipv4Addr, DatagramSocket, DatagramSocket)>,
}

impl Links {
    /// Opens the raw GRE and ESP sockets and UDP 500/4500 on `nbma`
    /// around `tun`. `udp_offload` turns on UDP GSO/GRO for ESP-in-UDP.
    /// With `workers` > 1 the underlay is shared with forwarding workers
    /// ([`Links::for_worker`]): this thread takes share 0 of the raw GRE
    /// and ESP packets, and UDP 4500 is one socket of a group.
    pub fn open(tun: Tun, nbma: Ipv4Addr, udp_offload: bool, workers: usize) -> io::Result<Links> {
        Links::bound(tun, nbma, nbma, udp_offload, workers, None, None)
    }

    /// [`Links::open`] with the raw GRE and ESP sockets taking only the
    /// packets sent to `nbma`: one tunnel of several, each with its own
    /// source address.
    pub fn open_one_of_several(
        tun: Tun,
        nbma: Ipv4Addr,
        udp_offload: bool,
        workers: usize,
    ) -> io::Result<Links> {
        Links::bound(tun, nbma, nbma, udp_offload, workers, Some(nbma), None)
    }

    /// [`Links::open`] with UDP 500/4500 bound to every local address: the
    /// NBMA address of an interface source may change while they are open.
    pub fn open_any(
        tun: Tun,
        nbma: Ipv4Addr,
        udp_offload: bool,
        workers: usize,
    ) -> io::Result<Links> {
        Links::bound(
            tun,
            Ipv4Addr::UNSPECIFIED,
            nbma,
            udp_offload,
            workers,
            None,
            None,
        )
    }

    /// One tunnel of several whose source is the interface `device`: the
    /// raw GRE and ESP sockets take the packets sent to its address
    /// `nbma`, and are bound again when it changes
    /// ([`Links::follow_nbma`]); UDP 500/4500 take datagrams to any
    /// address that arrive on `device` (the other tunnels' sockets, bound
    /// to their own addresses, take theirs first).
    pub fn open_following(
        tun: Tun,
        nbma: Ipv4Addr,
        device: &str,
        udp_offload: bool,
        workers: usize,
    ) -> io::Result<Links> {
        Links::bound(
            tun,
            Ipv4Addr::UNSPECIFIED,
            nbma,
            udp_offload,
            workers,
            Some(nbma),
            Some(device),
        )
    }

    fn bound(
        tun: Tun,
        bind: Ipv4Addr,
        nbma: Ipv4Addr,
        udp_offload: bool,
        workers: usize,
        raw_local: Option<Ipv4Addr>,
        device: Option<&str>,
    ) -> io::Result<Links> {
        let gre = DatagramSocket::raw_ipv4(PROTO_GRE, direct::wanted(), raw_local)?;
        let esp = DatagramSocket::raw_ipv4(PROTO_ESP, direct::wanted(), raw_local)?;
        if workers > 1 {
            gre.take_share(0, workers)?;
            esp.take_share(0, workers)?;
        }
        let udp = |port, shared| match device {
            Some(d) => DatagramSocket::udp_on_device(
                SocketAddrV4::new(bind, port),
                udp_offload && port == NATT_PORT,
                shared,
                d,
            ),
            None if shared => {
                DatagramSocket::udp_shared(SocketAddrV4::new(bind, port), udp_offload)
            }
            None if port == NATT_PORT => {
                DatagramSocket::udp_with(SocketAddrV4::new(bind, port), udp_offload)
            }
            None => DatagramSocket::udp(SocketAddrV4::new(bind, port)),
        };
        let raw_handles = match device {
            Some(_) => vec![gre.handle()?, esp.handle()?],
            None => vec![],
        };
        Ok(Links {
            udp4500: udp(NATT_PORT, workers > 1)?,
            udp500: udp(IKE_PORT, false)?,
            gre,
            esp,
            tun,
            nbma: Cell::new(nbma),
            bind,
            udp_offload,
            workers,
            raw_local: Cell::new(raw_local),
            device: device.map(str::to_string),
            raw_handles: RefCell::new(raw_handles),
            retired: None,
        })
    }

    /// A followed source interface has a new address `nbma`: the raw
    /// sockets take the packets sent to it from now on (a no-op unless
    /// opened by [`Links::open_following`]).
    pub fn follow_nbma(&self, nbma: Ipv4Addr) {
        if self.device.is_none() || self.raw_local.get() == Some(nbma) {
            return;
        }
        for h in self.raw_handles.borrow().iter() {
            if let Err(e) = sockets::rebind_raw(h, nbma) {
                warn!(target: "dmvpn::gre", "{e}: GRE and ESP to {nbma} are not received yet");
                return;
            }
        }
        self.raw_local.set(Some(nbma));
    }

    /// The devices the forwarding functions use.
    pub fn wires(&self) -> Wires<'_> {
        Wires {
            tun: &self.tun,
            gre: &self.gre,
            esp: &self.esp,
            udp4500: &self.udp4500,
        }
    }

    /// Worker `index`'s own TUN queue and underlay sockets (share `index`
    /// of `of`). Call it inside the worker's runtime (`Runtime::enter`):
    /// that runtime drives them.
    pub fn for_worker(&self, index: usize, of: usize) -> io::Result<WorkerLinks> {
        let raw_local = self.raw_local.get();
        let gre = DatagramSocket::raw_ipv4(PROTO_GRE, direct::wanted(), raw_local)?;
        gre.take_share(index, of)?;
        let esp = DatagramSocket::raw_ipv4(PROTO_ESP, direct::wanted(), raw_local)?;
        esp.take_share(index, of)?;
        if self.device.is_some() {
            let mut handles = self.raw_handles.borrow_mut();
            handles.push(gre.handle()?);
            handles.push(esp.handle()?);
        }
        let at = SocketAddrV4::new(self.bind, NATT_PORT);
        let udp4500 = match &self.device {
            Some(d) => DatagramSocket::udp_on_device(at, self.udp_offload, true, d)?,
            None => DatagramSocket::udp_shared(at, self.udp_offload)?,
        };
        Ok(WorkerLinks {
            tun: self.tun.queue()?,
            gre,
            esp,
            udp4500,
            nbma: self.nbma.get(),
        })
    }

    /// Binds UDP 500/4500 to `bind` instead (a reload moved the tunnel
    /// source). The new sockets are open before the old ones go; if they
    /// cannot be, the old ones stay. The old ones still send what is
    /// queued from their address until [`Links::retire`].
    pub fn rebind(&mut self, bind: Ipv4Addr) -> io::Result<()> {
        let at = SocketAddrV4::new(bind, NATT_PORT);
        let udp4500 = if self.workers > 1 {
            DatagramSocket::udp_shared(at, self.udp_offload)?
        } else {
            DatagramSocket::udp_with(at, self.udp_offload)?
        };
        let udp500 = DatagramSocket::udp(SocketAddrV4::new(bind, IKE_PORT))?;
        let old500 = std::mem::replace(&mut self.udp500, udp500);
        let old4500 = std::mem::replace(&mut self.udp4500, udp4500);
        self.retired = Some((self.bind, old500, old4500));
        self.bind = bind;
        Ok(())
    }

    /// Closes the sockets a [`Links::rebind`] replaced.
    pub fn retire(&mut self) {
        self.retired = None;
    }
}

/// A forwarding worker's devices: its TUN queue, raw GRE and ESP sockets
/// taking its share of the packets, its UDP 4500 socket of the group.
pub struct WorkerLinks {
    pub tun: Tun,
    pub gre: DatagramSocket,
    pub esp: DatagramSocket,
    pub udp4500: DatagramSocket,
    /// The NBMA address when the worker started (the local address of
    /// its UDP datagrams; the primary's is the one that counts).
    pub nbma: Ipv4Addr,
}

impl WorkerLinks {
    pub fn wires(&self) -> Wires<'_> {
        Wires {
            tun: &self.tun,
            gre: &self.gre,
            esp: &self.esp,
            udp4500: &self.udp4500,
        }
    }
}

/// What the loop does besides moving packets; all optional, so that
/// tests run the same loop with only the devices.
#[derive(Default)]
pub struct Extras<'a> {
    /// Requests from the control socket's server task.
    pub control: Option<mpsc::Receiver<ControlRequest>>,
    /// The log filter `debug` requests switch.
    pub log: Option<&'a mut Logging>,
    /// Where key-log lines go.
    pub keylog: Option<File>,
    /// Feed the router the kernel's routes through the tunnel (change
    /// notifications, and a poll as a backstop).
    pub watch_routes: bool,
    /// Follow the tunnel source interface: a new address goes to the
    /// router ([`Router::handle_local_nbma`]). dmvpnd sets it for
    /// interface sources only.
    pub source: Option<super::source::SourceWatch>,
    /// Reseed the router from the OS random source every hour and return
    /// freed heap memory to the OS.
    pub housekeeping: bool,
    /// systemd notifications (ready, watchdog, status, stopping).
    pub systemd: Option<super::notify::Notifier>,
    /// The configuration file, read again on SIGHUP and `reload` requests.
    pub reload: Option<super::reload::Reload>,
    /// The control socket's and metrics endpoint's servers, which a
    /// reload may move.
    pub listeners: Option<&'a mut super::listeners::Listeners>,
    /// Install the routes the router reports ([`Router::poll_kernel_route`];
    /// build it with `Options::kernel_routes`) in the kernel's table,
    /// through the TUN device.
    pub kernel_routes: bool,
    /// Forwarding workers beside this loop ([`super::worker`]).
    pub workers: Option<super::worker::Workers>,
}

/// Runs `router` over `links` until `shutdown` completes. Time is
/// `epoch.elapsed()`. Errors on single packets are counted; only a failed
/// TUN device ends the loop with an error.
pub async fn run_loop(
    router: &mut Router,
    links: &mut Links,
    epoch: std::time::Instant,
    mut extras: Extras<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), super::DaemonError> {
    tokio::pin!(shutdown);
    let now = || Instant(epoch.elapsed());
    let mut out = Output {
        tun_tx: TunWriter::new(BATCH),
        ike_log: Throttle::default(),
        keylog: extras.keylog.take(),
    };
    let mut tun_rx = TunReader::new(&links.tun);
    let mut gre_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut esp_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut u4_rb = RecvBatch::for_socket(&links.udp4500, BATCH, BUF_SIZE);
    let mut u5_rb = RecvBatch::new(16, BUF_SIZE);
    let mut next_chore = now() + CHORE_INTERVAL;
    let mut ticks = 0u64;
    // The TUN device starts with its carrier on.
    let mut carrier = true;
    follow_line_protocol(router, &links.tun, &mut carrier);
    // Route changes re-read the tunnel routes at once (a hub learns a
    // spoke's LAN as soon as the routing daemon installs it); the poll
    // stays as a backstop.
    let mut route_watch = if extras.watch_routes {
        match Watch::routes() {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(target: "dmvpn::nhrp", "route change notifications unavailable ({e}): polling the routing table");
                None
            }
        }
    } else {
        None
    };
    // Address changes of the tunnel source, at once.
    let mut source = extras.source.take();
    let mut addr_watch = match source {
        Some(_) => match Watch::addresses() {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(target: "dmvpn::ctl", "address change notifications unavailable ({e}): polling the tunnel source");
                None
            }
        },
        None => None,
    };
    // Kernel calls run on a worker thread; their results come back here.
    let mut kernel = if extras.watch_routes || source.is_some() || extras.kernel_routes {
        Some(Kernel::start(&links.tun.name()).map_err(|e| {
            super::DaemonError::Runtime(io::Error::new(
                e.kind(),
                format!("kernel worker thread: {e}"),
            ))
        })?)
    } else {
        None
    };
    // What is queued at start (manual SAs' key-log lines, first messages).
    out.flush(router, links, now()).await;
    queue_kernel_routes(router, kernel.as_mut());
    // The TUN device's address, changed by a reload.
    let mut tun_addr = {
        let c = router.node().config();
        ((c.tunnel_addr, c.tunnel_prefix_len), c.tunnel_addr6)
    };
    let mut workers = extras.workers.take();
    let mut sd = extras.systemd.take();
    let mut reload = extras.reload.take();
    if let Some(sd) = sd.as_mut() {
        sd.ready(|| status_line(router, now()));
    }

    loop {
        if let Some(sd) = sd.as_mut() {
            sd.keepalive();
        }
        let deadline = router.poll_timeout().min(next_chore);
        let sleep_for = deadline.0.saturating_sub(epoch.elapsed());
        tokio::select! {
            _ = &mut shutdown => break,
            r = tun_rx.recv(&links.tun) => match r {
                Ok(_) => out.tun_burst(router, links, &mut tun_rx, now()).await,
                Err(e) if tun_io::is_packet_error(&e) => router.counters_mut().malformed += 1,
                Err(source) => return Err(super::DaemonError::TunFailed { name: links.tun.name(), source }),
            },
            r = links.gre.recv_batch(&mut gre_rb) => match r {
                Ok(k) => out.underlay_burst(router, links, now(), k, |i| Datagram::Gre(gre_rb.get(i).0)).await,
                Err(_) => router.counters_mut().recv_errors += 1,
            },
            r = links.esp.recv_batch(&mut esp_rb) => match r {
                Ok(k) => out.underlay_burst(router, links, now(), k, |i| Datagram::Esp(esp_rb.get(i).0)).await,
                Err(_) => router.counters_mut().recv_errors += 1,
            },
            r = links.udp4500.recv_batch(&mut u4_rb) => match r {
                Ok(k) => out.underlay_burst(router, links, now(), k, |i| {
                    let (payload, remote) = u4_rb.get(i);
                    Datagram::Udp { local: SocketAddrV4::new(links.nbma.get(), NATT_PORT), remote, payload }
                }).await,
                Err(_) => router.counters_mut().recv_errors += 1,
            },
            r = links.udp500.recv_batch(&mut u5_rb) => match r {
                Ok(k) => router.handle_underlay_burst(now(), (0..k).map(|i| {
                    let (payload, remote) = u5_rb.get(i);
                    Datagram::Udp { local: SocketAddrV4::new(links.nbma.get(), IKE_PORT), remote, payload }
                })),
                Err(_) => router.counters_mut().recv_errors += 1,
            },
            r = async {
                match &route_watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(_) => {
                    if let Some(k) = kernel.as_mut() {
                        k.read_tunnel_routes();
                    }
                }
                Err(e) => {
                    warn!(target: "dmvpn::nhrp", "route change notifications failed ({e}): polling the routing table");
                    route_watch = None;
                }
            },
            r = async {
                match &addr_watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(_) => follow_source(kernel.as_mut(), source.as_ref()),
                Err(e) => {
                    warn!(target: "dmvpn::ctl", "address change notifications failed ({e}): polling the tunnel source");
                    addr_watch = None;
                }
            },
            Some(done) = async {
                match kernel.as_mut() {
                    Some(k) => k.next().await,
                    None => std::future::pending().await,
                }
            } => match done {
                Done::TunnelRoutes(routes) => router.handle_kernel_routes(now(), &routes),
                Done::LocalPrefixes(lans) => router.handle_local_prefixes(now(), &lans),
                Done::Source(reading) => {
                    if let Some(a) = source.as_mut().and_then(|s| s.apply(links.nbma.get(), reading)) {
                        links.nbma.set(a);
                        links.follow_nbma(a);
                        router.handle_local_nbma(now(), a);
                    }
                }
                Done::Readdressed((a, l), Ok(())) => info!(target: "dmvpn::ctl", "{}: address {a}/{l}", links.tun.name()),
                Done::Readdressed((a, l), Err(e)) => warn!(target: "dmvpn::ctl", "cannot give {} address {a}/{l}: {e}", links.tun.name()),
                Done::Readdressed6(Some((a, l)), Ok(())) => info!(target: "dmvpn::ctl", "{}: IPv6 address {a}/{l}", links.tun.name()),
                Done::Readdressed6(None, Ok(())) => info!(target: "dmvpn::ctl", "{}: IPv6 address removed", links.tun.name()),
                Done::Readdressed6(Some((a, l)), Err(e)) => warn!(target: "dmvpn::ctl", "cannot give {} IPv6 address {a}/{l}: {e}", links.tun.name()),
                Done::Readdressed6(None, Err(e)) => warn!(target: "dmvpn::ctl", "cannot remove the IPv6 address of {}: {e}", links.tun.name()),
                Done::Route(r, Err(e)) => warn!(target: "dmvpn::nhrp", "cannot {r} through {} (proto {}): {e}", links.tun.name(), crate::runtime::rtnl::ROUTE_PROTOCOL),
                Done::Route(_, Ok(())) => {}
            },
            Some(report) = async {
                match workers.as_mut() {
                    Some(w) => w.reports.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                super::worker::take(router, now(), report);
                // What else the workers handed back, a batch at a time.
                for _ in 0..BATCH {
                    let Some(Ok(r)) = workers.as_mut().map(|w| w.reports.try_recv()) else {
                        break;
                    };
                    if router.should_flush() {
                        out.flush(router, links, now()).await;
                    }
                    super::worker::take(router, now(), r);
                }
            },
            Some(req) = async {
                match extras.control.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let resp = match (req.request, extras.log.as_deref_mut()) {
                    (Request::Debug { target, on }, Some(log)) => log.set(target, on),
                    (Request::Reload, log) => match &reload {
                        Some(r) => {
                            let outside = Outside { tun: &links.tun, keylog: &mut out.keylog, log, listeners: extras.listeners.as_deref_mut() };
                            let resp = r.apply(router, outside, now());
                            after_reload(links, &mut tun_rx, kernel.as_mut());
                            follow_reloaded_source(router, links, &mut source, &mut addr_watch, &mut kernel);
                            follow_reloaded_address(router, links, &mut tun_addr, &mut kernel);
                            // IKE deletes from the old source leave by the old sockets.
                            out.flush(router, links, now()).await;
                            links.retire();
                            resp
                        }
                        None => Response::error("this dmvpnd has no configuration file to reload"),
                    },
                    (r, _) => router.request(now(), r),
                };
                req.respond(resp);
            },
            Some(()) = async {
                match reload.as_mut() {
                    Some(r) => r.hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(r) = &reload {
                    info!(target: "dmvpn::ctl", interface = %links.tun.name(), "SIGHUP: reading {} again", r.path.display());
                    let outside = Outside { tun: &links.tun, keylog: &mut out.keylog, log: extras.log.as_deref_mut(), listeners: extras.listeners.as_deref_mut() };
                    r.apply(router, outside, now());
                    after_reload(links, &mut tun_rx, kernel.as_mut());
                    follow_reloaded_source(router, links, &mut source, &mut addr_watch, &mut kernel);
                    follow_reloaded_address(router, links, &mut tun_addr, &mut kernel);
                    out.flush(router, links, now()).await;
                    links.retire();
                }
            },
            _ = tokio::time::sleep(sleep_for) => {
                let t = now();
                if t >= next_chore {
                    next_chore = t + CHORE_INTERVAL;
                    ticks += 1;
                    if extras.watch_routes
                        && ticks % ROUTE_POLL_TICKS == 1
                        && let Some(k) = kernel.as_mut()
                    {
                        k.read_tunnel_routes();
                    }
                    if ticks % ROUTE_POLL_TICKS == 1 {
                        follow_source(kernel.as_mut(), source.as_ref());
                        // A LAN interface added, removed or renumbered.
                        if let Some(k) = kernel.as_mut() {
                            k.read_local_prefixes(links.nbma.get());
                        }
                    }
                    if extras.housekeeping {
                        housekeeping(router, ticks);
                    }
                    if let Some(sd) = sd.as_mut() {
                        sd.status(|| status_line(router, t));
                    }
                }
                router.handle_timeout(t);
            },
        }
        out.flush(router, links, now()).await;
        queue_kernel_routes(router, kernel.as_mut());
        follow_line_protocol(router, &links.tun, &mut carrier);
        if let Some(w) = &workers {
            w.send_updates(router);
        }
    }
    if let Some(sd) = sd.as_mut() {
        sd.stopping();
    }
    if let Some(w) = workers {
        w.stop();
    }
    // Routes still queued are installed or removed before the loop ends.
    if let Some(k) = kernel {
        k.finish();
    }
    Ok(())
}

/// What follows a reload in the loop: larger read buffers for a larger
/// MTU, the kernel worker told the tunnel's new name.
fn after_reload(links: &Links, tun_rx: &mut TunReader, kernel: Option<&mut Kernel>) {
    tun_rx.fit(&links.tun);
    if let Some(k) = kernel {
        k.renamed(&links.tun.name());
    }
}

/// Asks the kernel worker to read the tunnel source; a new NBMA address
/// reaches the router when the result comes back.
fn follow_source(kernel: Option<&mut Kernel>, source: Option<&super::source::SourceWatch>) {
    if let (Some(k), Some(s)) = (kernel, source) {
        k.read_source(&s.source);
    }
}

/// After a reload, makes the links follow the tunnel source the router
/// now has: a new address gets UDP 500/4500 bound to it (when they were
/// bound to the old one), a new interface is followed as at start, its
/// address going to the router once the kernel worker has read it.
fn follow_reloaded_source(
    router: &Router,
    links: &mut Links,
    source: &mut Option<SourceWatch>,
    addr_watch: &mut Option<Watch>,
    kernel: &mut Option<Kernel>,
) {
    let cfg = router.node().config();
    let wanted = match Source::of(cfg) {
        Ok(s) => s,
        Err(e) => {
            warn!(target: "dmvpn::ctl", "{e}: the tunnel source is not followed");
            return;
        }
    };
    let running = source
        .as_ref()
        .map_or(Source::Address(links.nbma.get()), |s| s.source.clone());
    if wanted == running {
        return;
    }
    let bind = match &wanted {
        Source::Address(a) => *a,
        Source::Interface { .. } => Ipv4Addr::UNSPECIFIED,
    };
    if !links.bind.is_unspecified() && links.bind != bind {
        match links.rebind(bind) {
            Ok(()) => {
                info!(target: "dmvpn::ctl", "UDP {IKE_PORT} and {NATT_PORT} now bound to {bind}")
            }
            Err(e) => {
                warn!(target: "dmvpn::ctl", "{e}: UDP {IKE_PORT} and {NATT_PORT} stay bound to {}", links.bind)
            }
        }
    }
    match wanted {
        Source::Address(a) => {
            links.nbma.set(a);
            *source = None;
        }
        Source::Interface { ref name, .. } => {
            info!(target: "dmvpn::ctl", "following tunnel source interface {name}");
            *source = Some(SourceWatch::new(wanted));
            if addr_watch.is_none() {
                *addr_watch = Watch::addresses().ok();
            }
            if kernel.is_none() {
                *kernel = Kernel::start(&links.tun.name()).ok();
            }
            follow_source(kernel.as_mut(), source.as_ref());
        }
    }
}

/// After a reload, gives the TUN device the tunnel address the router
/// now has (through the kernel worker).
fn follow_reloaded_address(
    router: &Router,
    links: &Links,
    tun_addr: &mut TunAddresses,
    kernel: &mut Option<Kernel>,
) {
    let c = router.node().config();
    let wanted = ((c.tunnel_addr, c.tunnel_prefix_len), c.tunnel_addr6);
    if wanted == *tun_addr {
        return;
    }
    if kernel.is_none() {
        *kernel = Kernel::start(&links.tun.name()).ok();
    }
    if let Some(k) = kernel.as_mut() {
        if wanted.0 != tun_addr.0 {
            k.readdress(tun_addr.0, wanted.0);
        }
        if wanted.1 != tun_addr.1 {
            k.readdress6(tun_addr.1, wanted.1);
        }
        *tun_addr = wanted;
    }
}

/// The TUN device's IPv4 address, and IPv6 address on a dual-stack tunnel.
type TunAddresses = ((Ipv4Addr, u8), Option<(std::net::Ipv6Addr, u8)>);

/// Hands the routes the router wants installed or removed to the kernel
/// worker (dropped when there is none).
fn queue_kernel_routes(router: &mut Router, mut kernel: Option<&mut Kernel>) {
    while let Some(r) = router.poll_kernel_route() {
        if let Some(k) = kernel.as_deref_mut() {
            k.route(r);
        }
    }
}

/// systemd's one-line status: NHSs up and peers, from the show views.
fn status_line(router: &mut Router, now: Instant) -> String {
    let nhs = match router.request(now, Request::ShowNhrpNhs) {
        Response::Ok(Reply::NhrpNhs(v)) => v,
        _ => Vec::new(),
    };
    let dmvpn = match router.request(now, Request::ShowDmvpn) {
        Response::Ok(Reply::Dmvpn(v)) => v,
        _ => Vec::new(),
    };
    super::notify::status_line(&nhs, &dmvpn)
}

/// Sends the IKE datagrams `router` has queued (a graceful stop's deletes).
pub async fn send_pending_ike(router: &mut Router, links: &Links, now: Instant) {
    let mut throttle = Throttle::default();
    while let Some(t) = router.poll_transmit() {
        send_ike(links, &t, &mut throttle, now).await;
    }
}

/// Hourly reseed from the OS, periodic heap trim.
fn housekeeping(router: &mut Router, ticks: u64) {
    if ticks.is_multiple_of(TRIM_TICKS) {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
    if ticks.is_multiple_of(RESEED_TICKS) {
        match os_seed() {
            Ok(s) => router.reseed(&s),
            Err(e) => warn!(target: "dmvpn::ctl", "{e}; keeping the current generators"),
        }
    }
}

/// 256 bits from the OS random source (getrandom(2)).
pub fn os_seed() -> Result<Seed, String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| format!("cannot read the OS random source: {e}"))?;
    Ok(Seed(b))
}

/// The writing side of the loop.
struct Output {
    tun_tx: TunWriter,
    ike_log: Throttle,
    keylog: Option<File>,
}

impl Output {
    /// Writes out everything the router queued: IKE datagrams, key-log
    /// lines, then the batches ([`forwarding::flush`]).
    async fn flush(&mut self, router: &mut Router, links: &Links, now: Instant) {
        while let Some(t) = router.poll_transmit() {
            send_ike(links, &t, &mut self.ike_log, now).await;
        }
        while let Some(line) = router.poll_keylog() {
            super::reload::write_keylog(self.keylog.as_mut(), &line);
        }
        forwarding::flush(router, &links.wires(), &mut self.tun_tx).await;
    }

    /// [`forwarding::tun_burst`] for the router.
    async fn tun_burst(
        &mut self,
        router: &mut Router,
        links: &Links,
        r: &mut TunReader,
        now: Instant,
    ) {
        forwarding::tun_burst(router, &links.wires(), &mut self.tun_tx, r, now).await;
    }

    /// [`forwarding::underlay_burst`] for the router.
    async fn underlay_burst<'a>(
        &mut self,
        router: &mut Router,
        links: &Links,
        now: Instant,
        k: usize,
        datagram: impl Fn(usize) -> Datagram<'a>,
    ) {
        forwarding::underlay_burst(router, &links.wires(), &mut self.tun_tx, now, k, datagram)
            .await;
    }
}

/// Sends an IKE datagram. Send errors are logged through `throttle`:
/// answers to spoofed sources fail in bulk.
async fn send_ike(links: &Links, t: &dmvpn_ike::Transmit, throttle: &mut Throttle, now: Instant) {
    let SocketAddr::V4(dst) = t.remote else {
        return;
    };
    let (udp500, udp4500) = match &links.retired {
        Some((a, u500, u4500)) if t.local.ip() == IpAddr::V4(*a) => (u500, u4500),
        _ => (&links.udp500, &links.udp4500),
    };
    let sock = if t.local.port() == NATT_PORT {
        udp4500
    } else {
        udp500
    };
    if let Err(e) = sock.send_to(&t.payload, dst).await
        && let Some(held) = throttle.allow(now)
    {
        warn!(target: "dmvpn::ike", peer = %dst.ip(), "cannot send IKE to {dst}: {e}{}", held_note(held));
    }
}

/// With `if_state` (IOS `if-state nhrp`) the tunnel's carrier follows the
/// node's line protocol: off while every NHS is down.
fn follow_line_protocol(router: &Router, tun: &Tun, carrier: &mut bool) {
    let up = router.node().line_protocol_up();
    if up == *carrier {
        return;
    }
    *carrier = up;
    let (name, state) = (tun.name(), if up { "up" } else { "down" });
    match tun.set_carrier(up) {
        Ok(()) => {
            info!(target: "dmvpn::nhrp", interface = %name, "Line protocol on Interface {name}, changed state to {state}")
        }
        Err(e) => {
            warn!(target: "dmvpn::nhrp", interface = %name, "cannot set {name}'s line protocol {state}: {e}")
        }
    }
}
