//! `dmvpnd`'s runtime: one tokio task that owns the TUN device, the raw
//! GRE/ESP sockets, UDP 500 and 4500 and the node's [`Router`], plus the
//! control socket's server task. Every protocol decision is the
//! router's; [`event_loop::run_loop`] moves bytes, time and requests.
//! With `[node] workers` above 1, forwarding threads ([`worker`]) forward
//! beside it, each on its own TUN queue and share of the underlay.
//!
//! The TUN device runs with TSO/GRO offload when the kernel allows it, and
//! the ESP-in-UDP socket with UDP GSO/GRO unless `DMVPND_UDP_OFFLOAD=0` is
//! in the environment (see [`crate::runtime::sockets`] for the trade-off).
//! Plain ESP and GRE leave through a packet socket where the kernel's
//! route and neighbour tables allow, unless `DMVPND_DIRECT_SEND=0`
//! ([`crate::runtime::direct`]).

mod error;
pub mod event_loop;
mod forwarding;
pub mod kernel;
mod keylog;
mod listeners;
mod logging;
pub mod metrics;
mod notify;
mod reload;
pub mod routes;
pub mod source;
mod tunnels;
pub mod worker;

use std::net::IpAddr;
use std::path::Path;

use crate::runtime::control_socket::ControlRequest;
use dmvpn_ctl::proto::Request;
use dmvpn_nhrp::Instant;
use dmvpn_node::Router;
use dmvpn_node::router::Options;
use tokio::signal::unix::{Signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use error::DaemonError;
pub use logging::Logging;

use crate::runtime::tun::{Tun, TunConfig};
use event_loop::{Extras, Links};

/// Loads the configuration, builds everything and runs until SIGINT or
/// SIGTERM; SIGHUP reads the configuration again and applies what
/// changed. Errors are one line for the operator.
pub fn run(path: &Path) -> Result<(), DaemonError> {
    let loaded = dmvpn_config::Config::load(path)?;
    let cfg = loaded.config;
    let mut log = Logging::init(&cfg.log.filter);
    for w in &loaded.warnings {
        warn!(target: "dmvpn::ctl", "{w}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    rt.block_on(run_async(path, &cfg, &mut log))
}

async fn run_async(
    path: &Path,
    cfg: &dmvpn_config::Config,
    log: &mut Logging,
) -> Result<(), DaemonError> {
    let epoch = std::time::Instant::now();
    let now = || Instant(epoch.elapsed());
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let of = cfg.tunnels.len().max(1);
    if of > 1 {
        // Several tunnels: each on its own source address or interface
        // (`--check` says so).
        for t in &cfg.tunnels {
            match &t.source {
                dmvpn_config::types::TunnelSource::Address(IpAddr::V4(a)) => routes::own_nbma(*a),
                dmvpn_config::types::TunnelSource::Interface(name) => {
                    if let Ok(i) = crate::runtime::rtnl::ifindex(name) {
                        routes::own_underlay(i);
                    }
                }
                dmvpn_config::types::TunnelSource::Address(IpAddr::V6(_)) => {}
            }
        }
    }
    let mut runs = Vec::with_capacity(of);
    for i in 0..of {
        let one = cfg.for_tunnel(i);
        match start_tunnel(&one, i, of, epoch, &mut sigint, &mut sigterm).await? {
            Some(run) => runs.push(run),
            None => return Ok(()),
        }
    }

    // Several tunnels share the control socket and the metrics endpoint.
    let handler = match runs.as_slice() {
        [one] => one.control_tx.clone(),
        _ => {
            let (tx, rx) = mpsc::channel::<ControlRequest>(16);
            let each = runs.iter().map(|r| r.control_tx.clone()).collect();
            tokio::spawn(tunnels::dispatch(rx, each));
            tx
        }
    };
    let mut listeners = listeners::Listeners::start(cfg, handler).await?;

    // One loop per tunnel; a signal, or one loop ending (its TUN device
    // failed), ends them all.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let results = {
        let stop_tx = &stop_tx;
        let mut log = Some(log);
        let mut shared = Some(&mut listeners);
        let mut loops = Vec::with_capacity(of);
        for (i, run) in runs.iter_mut().enumerate() {
            let extras = Extras {
                control: run.control.take(),
                log: log.take(),
                keylog: run.keylog.take(),
                watch_routes: true,
                source: run.watch.take(),
                housekeeping: true,
                systemd: (i == 0).then(notify::Notifier::from_env),
                reload: run.hangup.take().map(|hangup| reload::Reload {
                    path: path.to_path_buf(),
                    hangup,
                    tunnel: i,
                    of,
                }),
                listeners: shared.take(),
                kernel_routes: true,
                workers: run.workers.take(),
            };
            let mut stop = stop_rx.clone();
            loops.push(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let r =
                    event_loop::run_loop(&mut run.router, &mut run.links, epoch, extras, stopped)
                        .await;
                stop_tx.send_replace(true);
                r
            });
        }
        let mut stopping = stop_rx.clone();
        let signals = async {
            tokio::select! {
                _ = sigint.recv() => {},
                _ = sigterm.recv() => {},
                _ = stopping.wait_for(|s| *s) => {},
            }
            stop_tx.send_replace(true);
        };
        tokio::join!(signals, futures::future::join_all(loops)).1
    };

    info!(target: "dmvpn::ctl", "dmvpnd: shutting down");
    for run in &mut runs {
        let t = now();
        run.router.request(t, Request::ClearCryptoSa { peer: None });
        event_loop::send_pending_ike(&mut run.router, &run.links, t).await;
        flush_learned_routes(&run.links.tun.name(), "at stop");
    }
    listeners.stop().await;
    drop(runs);
    results.into_iter().collect()
}

/// One tunnel's parts, built before its loop runs.
struct TunnelRun {
    router: Router,
    links: Links,
    workers: Option<worker::Workers>,
    watch: Option<source::SourceWatch>,
    keylog: Option<std::fs::File>,
    hangup: Option<Signal>,
    control: Option<mpsc::Receiver<ControlRequest>>,
    control_tx: mpsc::Sender<ControlRequest>,
}

fn signal(kind: SignalKind) -> Result<Signal, DaemonError> {
    tokio::signal::unix::signal(kind).map_err(DaemonError::Signals)
}

/// Builds the router, TUN device, sockets and forwarding threads of
/// `cfg`'s one tunnel, number `index` of `of`. `None`: stopped by a signal while
/// waiting for the tunnel source's address.
async fn start_tunnel(
    cfg: &dmvpn_config::Config,
    index: usize,
    of: usize,
    epoch: std::time::Instant,
    sigint: &mut Signal,
    sigterm: &mut Signal,
) -> Result<Option<TunnelRun>, DaemonError> {
    let now = || Instant(epoch.elapsed());
    let seed = event_loop::os_seed().map_err(DaemonError::Random)?;
    let mut ncfg = dmvpn_node::control::config_map::map(cfg)?;
    ncfg.one_of(index, of);
    // From here on SIGHUP no longer ends the process: it asks for a
    // reload, which the event loop handles (one sent earlier waits).
    let hangup = signal(SignalKind::hangup())?;
    // The NBMA address: as configured, or the source interface's primary
    // IPv4 address (waiting for one if it has none yet).
    let src = source::Source::of(&ncfg).map_err(DaemonError::Source)?;
    let nbma = tokio::select! {
        a = src.first_address() => a,
        _ = sigint.recv() => return Ok(None),
        _ = sigterm.recv() => return Ok(None),
    };
    ncfg.set_nbma(nbma);
    // Networks behind this node, answered in NHRP resolutions.
    let lans = routes::local_prefixes(&ncfg.interface, ncfg.nbma);
    let lans_of = |v6: bool| -> Vec<(IpAddr, u8)> {
        lans.iter()
            .filter(|(p, _)| p.is_ipv6() == v6)
            .copied()
            .collect()
    };
    if let Some(n) = ncfg.nhrp.as_mut() {
        n.local_prefixes = lans_of(false);
    }
    if let Some(n) = ncfg.nhrp6.as_mut() {
        n.local_prefixes = lans_of(true);
    }
    let keylog = match &cfg.log.key_log {
        Some(p) => Some(keylog::open(p).map_err(|reason| DaemonError::KeyLog {
            path: p.clone(),
            reason,
        })?),
        None => None,
    };
    let opts = Options {
        keylog: keylog.is_some(),
        defer_seal: true,
        kernel_routes: true,
        ..Options::default()
    };
    let mut router = Router::with_options(ncfg.clone(), seed, now(), opts);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // "auto" shares the cores between the tunnels.
    let wanted = cfg.node.workers.resolve((cores / of).max(1));
    if wanted * of > cores {
        // Measured on 2 cores (bench-throughput aes-sha1): 64 threads
        // forward 0.4 Gbit/s, 2 threads 1.7.
        warn!(
            target: "dmvpn::gre",
            interface = %ncfg.interface,
            "workers = {wanted} per tunnel, {} in all, but only {cores} cores to run on: threads beyond the cores only contend; \"auto\" uses one per core",
            wanted * of
        );
    }
    let tun = Tun::open(&TunConfig {
        name: ncfg.interface.clone(),
        mtu: ncfg.mtu,
        ipv4: ncfg
            .overlay_v4
            .then_some((ncfg.tunnel_addr, ncfg.tunnel_prefix_len)),
        offload: true,
        queues: wanted,
    })
    .map_err(|source| DaemonError::Tun {
        name: ncfg.interface.clone(),
        source,
    })?;
    if of > 1
        && let Ok(i) = crate::runtime::rtnl::ifindex(&tun.name())
    {
        routes::own_tunnel(i);
    }
    // NHRP routes of an earlier run, through a device that outlived it
    // (a persistent TUN): that run's NHRP state is gone. Setting the
    // device up has dropped the routes through it already; this removes
    // any left.
    flush_learned_routes(&tun.name(), "of an earlier run");
    if let Some((a, l)) = ncfg.tunnel_addr6 {
        add_ipv6_address(&tun.name(), a, l).map_err(|source| DaemonError::Tun {
            name: ncfg.interface.clone(),
            source,
        })?;
    }
    let routes = ncfg.routes.iter().map(|(p, l)| (IpAddr::V4(*p), *l));
    let routes6 = ncfg.routes6.iter().map(|(p, l)| (IpAddr::V6(*p), *l));
    for (p, l) in routes.chain(routes6) {
        tun.add_route(p, l).map_err(|source| DaemonError::Route {
            prefix: format!("{p}/{l}"),
            tunnel: ncfg.interface.clone(),
            source,
        })?;
    }
    // Spoke-to-spoke packets relayed by the hub leave by the interface they
    // came in on; the kernel must not answer them with ICMP redirects.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/send_redirects", tun.name()),
        "0",
    );
    // With `if_state`, routes through a tunnel whose line protocol is down
    // (no carrier) give way to others, as on IOS.
    let _ = std::fs::write(
        format!(
            "/proc/sys/net/ipv4/conf/{}/ignore_routes_with_linkdown",
            tun.name()
        ),
        "1",
    );
    let threads = if tun.multi_queue() { wanted } else { 1 };
    let links = if let (source::Source::Interface { name, .. }, true) = (&src, of > 1) {
        Links::open_following(tun, ncfg.nbma, name, udp_offload(), threads)
    } else if src.follows_interface() {
        Links::open_any(tun, ncfg.nbma, udp_offload(), threads)
    } else if of > 1 {
        Links::open_one_of_several(tun, ncfg.nbma, udp_offload(), threads)
    } else {
        Links::open(tun, ncfg.nbma, udp_offload(), threads)
    }
    .map_err(DaemonError::Sockets)?;
    let workers = match threads {
        1 => {
            info!(target: "dmvpn::gre", interface = %ncfg.interface, "1 forwarding thread");
            None
        }
        n => Some(
            worker::Workers::start(&mut router, &links, n, epoch).map_err(DaemonError::Sockets)?,
        ),
    };

    let (control_tx, control) = mpsc::channel::<ControlRequest>(16);
    info!(
        target: "dmvpn::ctl",
        interface = %ncfg.interface,
        nbma = %ncfg.nbma,
        "dmvpnd {}: {} {} NBMA {} up",
        ncfg.name,
        ncfg.interface,
        tunnel_addresses(&ncfg),
        ncfg.nbma
    );
    Ok(Some(TunnelRun {
        router,
        links,
        workers,
        watch: src
            .follows_interface()
            .then(|| source::SourceWatch::new(src)),
        keylog,
        hangup: Some(hangup),
        control: Some(control),
        control_tx,
    }))
}

/// `192.168.1.2/24`, `192.168.1.2/24 2001:db8:100::2/64` (dual-stack)
/// or `2001:db8:100::2/64` (IPv6 only).
fn tunnel_addresses(c: &dmvpn_node::control::NodeConfig) -> String {
    let v4 = c
        .overlay_v4
        .then(|| format!("{}/{}", c.tunnel_addr, c.tunnel_prefix_len));
    let v6 = c.tunnel_addr6.map(|(a, l)| format!("{a}/{l}"));
    v4.into_iter().chain(v6).collect::<Vec<_>>().join(" ")
}

/// Gives the tunnel device its IPv6 address (a dual-stack tunnel), with
/// IPv6 on for it and no duplicate address detection: the address is
/// the operator's, usable at once.
fn add_ipv6_address(tunnel: &str, a: std::net::Ipv6Addr, len: u8) -> std::io::Result<()> {
    std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{tunnel}/disable_ipv6"),
        "0",
    )
    .map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot turn IPv6 on for {tunnel} (is IPv6 disabled on this host?): {e}"),
        )
    })?;
    let index = crate::runtime::rtnl::ifindex(tunnel)?;
    let have = crate::runtime::rtnl::ipv6_addresses(index)?;
    if !have.contains(&(a, len)) {
        crate::runtime::rtnl::add_address(index, IpAddr::V6(a), len).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot add {a}/{len} to {tunnel}: {e}"))
        })?;
    }
    Ok(())
}

/// Removes the routes dmvpnd installed through `tunnel` for what NHRP
/// taught it (route protocol [`rtnl::ROUTE_PROTOCOL`]); `when` is for the log.
fn flush_learned_routes(tunnel: &str, when: &str) {
    use crate::runtime::rtnl;
    match rtnl::ifindex(tunnel).and_then(|oif| rtnl::flush_routes(oif, rtnl::ROUTE_PROTOCOL)) {
        Ok(0) => {}
        Ok(n) => {
            info!(target: "dmvpn::nhrp", "removed {n} NHRP route(s) through {tunnel} {when} (proto {})", rtnl::ROUTE_PROTOCOL)
        }
        Err(e) => {
            warn!(target: "dmvpn::nhrp", "cannot remove the NHRP routes through {tunnel} {when}: {e}")
        }
    }
}

/// UDP GSO/GRO for ESP-in-UDP, on unless `DMVPND_UDP_OFFLOAD=0`: about
/// twice the throughput (`scripts/bench-throughput.sh`), but captures on
/// this host show runs of ESP datagrams as one super-datagram that
/// analysers cannot decrypt, so that is the switch for a capture.
fn udp_offload() -> bool {
    std::env::var_os("DMVPND_UDP_OFFLOAD").is_none_or(|v| v != "0")
}
