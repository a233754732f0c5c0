//! `dmvpnd`'s runtime: one tokio task that owns the TUN device, the raw
//! GRE/ESP sockets, UDP 500 and 4500, the data-plane engine and the
//! [`Node`], plus the control socket. Every protocol decision is the
//! Node's; this module moves bytes, time and requests.
//!
//! The TUN device runs with TSO/GRO offload when the kernel allows it;
//! `DMVPND_UDP_OFFLOAD=1` in the environment adds UDP GSO/GRO on the
//! ESP-in-UDP socket (see [`crate::runtime::sockets`] for the trade-off).
//! Plain ESP and GRE leave through a packet socket where the kernel's
//! route and neighbour tables allow, unless `DMVPND_DIRECT_SEND=0`
//! ([`crate::runtime::direct`]).

mod keylog;
mod logging;
mod notify;
mod routes;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::Path;

use dmvpn_ctl::proto::{Reply, Request, Response};
use dmvpn_ctl::server::{ControlRequest, ControlSocket, SocketOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use logging::Logging;

use crate::datapath::ip::{PROTO_ESP, PROTO_GRE};
use crate::datapath::sadb::Sadb;
use crate::node::log_limit::{Throttle, held_note};
use crate::node::{self, Node, Output};
use crate::runtime::dataplane::{self, BUF_SIZE, Engine, Event, Forwarding, Links, PeerMap};
use crate::runtime::direct;
use crate::runtime::sockets::{DatagramSocket, RecvBatch};
use crate::runtime::tun::{self as tun_io, Tun, TunConfig, TunReader, TunWriter};

const BATCH: usize = 64;
/// Stats ticks between reads of the kernel's tunnel routes.
const ROUTE_POLL_TICKS: u64 = 2;
/// Stats ticks between reseeds of the node's generators from the OS.
const RESEED_TICKS: u64 = 3600;
/// Stats ticks between returns of freed heap memory to the OS: state a
/// flood created and the engines dropped (half-open negotiations expire
/// after about two minutes) should not keep the process large.
const TRIM_TICKS: u64 = 10;

/// Loads the configuration, builds everything and runs until SIGINT or
/// SIGTERM. Errors are one line for the operator.
pub fn run(path: &Path) -> Result<(), String> {
    let loaded = dmvpn_config::Config::load(path).map_err(|e| {
        e.diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let cfg = loaded.config;
    let mut log = Logging::init(&cfg.log.filter);
    for w in &loaded.warnings {
        warn!(target: "dmvpn::ctl", "{w}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run_async(&cfg, &mut log))
}

async fn run_async(cfg: &dmvpn_config::Config, log: &mut Logging) -> Result<(), String> {
    let epoch = std::time::Instant::now();
    let now = |_: ()| dmvpn_nhrp::Instant(epoch.elapsed());
    let seed = os_seed()?;
    let mut ncfg = crate::node::config_map::map(cfg).map_err(|e| e.to_string())?;
    // Networks behind this node, answered in NHRP resolutions.
    if let Some(n) = ncfg.nhrp.as_mut() {
        n.local_prefixes = routes::local_prefixes(&ncfg.interface, ncfg.nbma)
            .into_iter()
            .map(|(p, l)| (IpAddr::V4(p), l))
            .collect();
    }
    let mut node = Node::from_node_config(ncfg.clone(), epoch, seed, now(()));

    let tun = Tun::open(&TunConfig {
        name: ncfg.interface.clone(),
        mtu: ncfg.mtu,
        ipv4: Some((ncfg.tunnel_addr, ncfg.tunnel_prefix_len)),
        offload: true,
    })
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!(
                "cannot create TUN device {}: permission denied (run as root or with CAP_NET_ADMIN)",
                ncfg.interface
            )
        } else {
            e.to_string()
        }
    })?;
    for (p, l) in &ncfg.routes {
        tun.add_route(IpAddr::V4(*p), *l)
            .map_err(|e| format!("cannot add route {p}/{l} via {}: {e}", ncfg.interface))?;
    }
    // Spoke-to-spoke packets relayed by the hub leave by the interface they
    // came in on; the kernel must not answer them with ICMP redirects.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/send_redirects", tun.name()),
        "0",
    );

    let gre = DatagramSocket::raw_ipv4(PROTO_GRE, direct::wanted()).map_err(|e| e.to_string())?;
    let esp = DatagramSocket::raw_ipv4(PROTO_ESP, direct::wanted()).map_err(|e| e.to_string())?;
    let udp4500 = DatagramSocket::udp_with(SocketAddrV4::new(ncfg.nbma, 4500), udp_offload())
        .map_err(|e| e.to_string())?;
    let udp500 =
        DatagramSocket::udp(SocketAddrV4::new(ncfg.nbma, 500)).map_err(|e| e.to_string())?;

    let mut keylog = match &cfg.log.key_log {
        Some(p) => {
            let f = keylog::open(p)?;
            node.set_keylog(true);
            Some(f)
        }
        None => None,
    };

    let socket = ControlSocket::bind(&SocketOptions::from_config(&cfg.control))
        .map_err(|e| e.to_string())?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlRequest>(16);
    let server = tokio::spawn(dmvpn_ctl::server::serve(socket, ctl_tx));

    let mut dp = Engine::new(node.dataplane_config(), Sadb::new(), PeerMap::new());
    dp.defer_seal = true;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;

    info!(
        target: "dmvpn::ctl",
        "dmvpnd {}: {} {}/{} NBMA {} up",
        ncfg.name, ncfg.interface, ncfg.tunnel_addr, ncfg.tunnel_prefix_len, ncfg.nbma
    );

    let mut tun_rx = TunReader::new(&tun);
    let mut tun_tx = TunWriter::new(BATCH);
    let links = Links {
        tun: &tun,
        gre: &gre,
        esp: &esp,
        udp: Some(&udp4500),
    };
    let mut gre_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut esp_rb = RecvBatch::new(BATCH, BUF_SIZE);
    let mut u4_rb = RecvBatch::for_socket(&udp4500, BATCH, BUF_SIZE);
    let mut u5_rb = RecvBatch::new(16, BUF_SIZE);
    let mut next_stats = now(()) + node::STATS_INTERVAL;
    let local500 = SocketAddr::new(IpAddr::V4(ncfg.nbma), 500);
    let mut ticks = 0u64;
    let mut ike_send_log = Throttle::default();
    // Route changes re-read the tunnel routes at once (a hub learns a
    // spoke's LAN as soon as the routing daemon installs it); the poll
    // stays as a backstop.
    let mut route_watch = match routes::RouteWatch::open() {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(target: "dmvpn::nhrp", "route change notifications unavailable ({e}): polling the routing table");
            None
        }
    };

    let mut sd = notify::Notifier::from_env();
    sd.ready(|| notify::status_line(&node.show_nhrp_nhs(now(())), &node.show_dmvpn(now(()))));
    loop {
        sd.keepalive();
        let deadline = node
            .poll_timeout()
            .map_or(next_stats, |t| t.min(next_stats));
        let sleep_for = deadline.0.saturating_sub(epoch.elapsed());
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            r = tun_rx.recv(&tun) => match r {
                Ok(_) => {
                    let mut fwd = NodeForwarding { node: &mut node, now: now(()) };
                    let _ = dataplane::tun_burst(&mut dp, &links, &mut tun_rx, &mut tun_tx, &mut fwd).await;
                }
                Err(e) if tun_io::is_packet_error(&e) => dp.counters.malformed += 1,
                Err(e) => return Err(format!("TUN {} failed: {e}", tun.name())),
            },
            r = gre.recv_batch(&mut gre_rb) => match r {
                Ok(k) => (0..k).for_each(|i| dp.inbound_gre_ip(gre_rb.get(i).0)),
                Err(_) => dp.counters.recv_errors += 1,
            },
            r = esp.recv_batch(&mut esp_rb) => match r {
                Ok(k) => dp.inbound_esp_recv(&esp_rb, k),
                Err(_) => dp.counters.recv_errors += 1,
            },
            r = udp4500.recv_batch(&mut u4_rb) => match r {
                Ok(k) => dp.inbound_udp_recv(&u4_rb, k),
                Err(_) => dp.counters.recv_errors += 1,
            },
            r = udp500.recv_batch(&mut u5_rb) => match r {
                Ok(k) => {
                    let t = now(());
                    for i in 0..k {
                        let (d, src) = u5_rb.get(i);
                        node.handle_ike(t, local500, SocketAddr::V4(src), d);
                    }
                }
                Err(_) => dp.counters.recv_errors += 1,
            },
            r = async {
                match &route_watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(_) => node.set_tunnel_routes(now(()), &routes::tunnel_routes(tun.name())),
                Err(e) => {
                    warn!(target: "dmvpn::nhrp", "route change notifications failed ({e}): polling the routing table");
                    route_watch = None;
                }
            },
            Some(req) = ctl_rx.recv() => {
                let t = now(());
                let resp = answer(&mut node, &dp, log, t, req.request);
                req.respond(resp);
            },
            _ = tokio::time::sleep(sleep_for) => {
                let t = now(());
                if t >= next_stats {
                    next_stats = t + node::STATS_INTERVAL;
                    let st = dp.stats();
                    node.handle_stats(t, &st);
                    ticks += 1;
                    if ticks.is_multiple_of(TRIM_TICKS) {
                        // SAFETY: malloc_trim has no preconditions.
                        unsafe { libc::malloc_trim(0) };
                    }
                    if ticks.is_multiple_of(RESEED_TICKS) {
                        match os_seed() {
                            Ok(s) => node.reseed(&s),
                            Err(e) => warn!(target: "dmvpn::ctl", "{e}; keeping the current generators"),
                        }
                    }
                    sd.status(|| notify::status_line(&node.show_nhrp_nhs(t), &node.show_dmvpn(t)));
                    if ticks % ROUTE_POLL_TICKS == 1 {
                        node.set_tunnel_routes(t, &routes::tunnel_routes(tun.name()));
                    }
                }
                node.handle_timeout(t);
            },
        }
        // Data-plane events → node → outputs → data plane, until quiet.
        for _ in 0..64 {
            let t = now(());
            let mut any = false;
            while let Some((src, packet)) = dp.nhrp_in.pop_front() {
                any = true;
                node.handle_dataplane_event(t, Event::Nhrp { src, packet });
            }
            while let Some((src, packet)) = dp.ike_in.pop_front() {
                any = true;
                node.handle_dataplane_event(t, Event::Ike { src, packet });
            }
            while let Some(peer) = dp.need_sa.pop_front() {
                any = true;
                node.handle_dataplane_event(t, Event::NeedSa { peer });
            }
            while let Some(o) = node.poll_output() {
                any = true;
                match o {
                    Output::Ike(x) => send_ike(&udp500, &udp4500, &x, &mut ike_send_log, t).await,
                    Output::Dataplane(c) => node::apply(&mut dp, c),
                    Output::KeyLog(line) => {
                        if let Some(f) = keylog.as_mut() {
                            let _ = writeln!(f, "{line}");
                        }
                    }
                }
            }
            let mut fwd = NodeForwarding {
                node: &mut node,
                now: now(()),
            };
            let _ = dataplane::flush(&mut dp, &links, &mut tun_tx, &mut fwd).await;
            if !any && dp.nhrp_in.is_empty() && dp.tun_out.is_empty() {
                break;
            }
        }
    }
    info!(target: "dmvpn::ctl", "dmvpnd: shutting down");
    sd.stopping();
    let t = now(());
    node.clear_crypto_sa(t, None);
    while let Some(o) = node.poll_output() {
        if let Output::Ike(x) = o {
            send_ike(&udp500, &udp4500, &x, &mut ike_send_log, t).await;
        }
    }
    server.abort();
    let _ = server.await;
    drop(tun);
    Ok(())
}

/// 256 bits from the OS random source (getrandom(2)).
fn os_seed() -> Result<node::Seed, String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| format!("cannot read the OS random source: {e}"))?;
    Ok(node::Seed(b))
}

/// `DMVPND_UDP_OFFLOAD=1` turns on UDP GSO/GRO for ESP-in-UDP: faster,
/// but captures on this host show runs of ESP datagrams as one
/// super-datagram that analysers cannot decrypt.
fn udp_offload() -> bool {
    std::env::var_os("DMVPND_UDP_OFFLOAD").is_some_and(|v| v == "1")
}

/// Sends an IKE datagram. Send errors are logged through `throttle`:
/// answers to spoofed sources fail in bulk.
async fn send_ike(
    udp500: &DatagramSocket,
    udp4500: &DatagramSocket,
    t: &dmvpn_ike::Transmit,
    throttle: &mut Throttle,
    now: dmvpn_nhrp::Instant,
) {
    let SocketAddr::V4(dst) = t.remote else {
        return;
    };
    let sock = if t.local.port() == 4500 {
        udp4500
    } else {
        udp500
    };
    if let Err(e) = sock.send_to(&t.payload, dst).await
        && let Some(held) = throttle.allow(now)
    {
        warn!(target: "dmvpn::ike", "cannot send IKE to {dst}: {e}{}", held_note(held));
    }
}

/// The node's part in forwarding: it sees outbound traffic (shortcut
/// and idle accounting), and on a hub packets from one spoke to another
/// are relayed (and seen by the node, for redirects) instead of going up
/// to the kernel and back.
struct NodeForwarding<'a> {
    node: &'a mut Node,
    now: dmvpn_nhrp::Instant,
}

impl Forwarding for NodeForwarding<'_> {
    fn observe(&mut self, pkt: &[u8]) {
        self.node.observe_outbound(self.now, pkt);
    }

    fn relay(&mut self, engine: &mut Engine, pkt: &[u8]) -> bool {
        if !self.node.should_relay(pkt) {
            return false;
        }
        self.node.observe_outbound(self.now, pkt);
        engine.outbound(pkt);
        true
    }
}

/// One control request.
fn answer(
    node: &mut Node,
    dp: &Engine,
    log: &mut Logging,
    now: dmvpn_nhrp::Instant,
    req: Request,
) -> Response {
    match req {
        Request::ShowNhrp => Response::Ok(Reply::Nhrp(node.show_nhrp(now))),
        Request::ShowNhrpNhs => Response::Ok(Reply::NhrpNhs(node.show_nhrp_nhs(now))),
        Request::ShowNhrpTraffic => {
            let st = dp.stats();
            Response::Ok(Reply::NhrpTraffic(node.show_nhrp_traffic(now, Some(&st))))
        }
        Request::ShowDmvpn => Response::Ok(Reply::Dmvpn(node.show_dmvpn(now))),
        Request::ShowDmvpnDetail => {
            let st = dp.stats();
            Response::Ok(Reply::DmvpnDetail(node.show_dmvpn_detail(now, Some(&st))))
        }
        Request::ShowCryptoIsakmpSa => Response::Ok(Reply::IsakmpSa(node.show_isakmp_sa(now))),
        Request::ShowCryptoIpsecSa => {
            let st = dp.stats();
            Response::Ok(Reply::IpsecSa(node.show_ipsec_sa_report(now, Some(&st))))
        }
        Request::ShowCryptoSession => {
            let st = dp.stats();
            Response::Ok(Reply::CryptoSession(
                node.show_crypto_session(now, Some(&st)),
            ))
        }
        Request::ClearNhrp => Response::Ok(Reply::Cleared {
            count: node.clear_nhrp(now),
        }),
        Request::ClearNhrpEntry {
            address,
            prefix_len,
        } => Response::Ok(Reply::Cleared {
            count: node.clear_nhrp_entry(now, address, prefix_len),
        }),
        Request::ClearCryptoSa { peer } => Response::Ok(Reply::Cleared {
            count: node.clear_crypto_sa(now, peer),
        }),
        // IOS's `clear crypto session` deletes the IKE and IPsec SAs, as
        // `clear crypto sa` does here.
        Request::ClearCryptoSession { remote } => Response::Ok(Reply::Cleared {
            count: node.clear_crypto_sa(now, remote),
        }),
        Request::Debug { target, on } => log.set(target, on),
    }
}
