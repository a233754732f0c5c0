//! Reloading the configuration file on SIGHUP or `dmvpnctl reload`: the
//! file is read and checked as `--check` does ([`dmvpn_config::Config::load`],
//! file permissions included) and handed to [`Router::reconfigure`]. A
//! file with errors, or a change that needs a restart, is logged and
//! answered with the reasons; the running configuration stays.
//!
//! What lives outside the router changes here, before the router takes
//! the new configuration: a new key-log file is opened, new control and
//! metrics sockets are bound, the tunnel interface's name, MTU and routes
//! are set over rtnetlink. Any of these that fails refuses the reload with its reason
//! and undoes what was done; the old files and sockets are closed only
//! once everything succeeded.

use std::fs::File;

use std::path::PathBuf;

use dmvpn_ctl::proto::{ConfigChange, ReloadReport, Reply, Response};
use dmvpn_nhrp::Instant;
use dmvpn_node::Router;
use tokio::signal::unix::Signal;
use tracing::{info, warn};

use super::keylog;
use super::listeners::Listeners;
use super::logging::Logging;
use crate::runtime::tun::Tun;

/// Where the configuration comes from, and the SIGHUP that asks for it
/// to be read again.
pub struct Reload {
    pub path: PathBuf,
    pub hangup: Signal,
    /// Which of the file's tunnels this loop runs, and of how many.
    pub tunnel: usize,
    pub of: usize,
}

/// What a reload may change outside the router.
pub struct Outside<'a> {
    pub tun: &'a Tun,
    /// The open key-log file, if any.
    pub keylog: &'a mut Option<File>,
    pub log: Option<&'a mut Logging>,
    pub listeners: Option<&'a mut Listeners>,
}

impl Reload {
    /// Reads the file and applies it to `router` and to what is `outside`
    /// it. Everything is logged; the answer is for `dmvpnctl reload`.
    pub fn apply(&self, router: &mut Router, outside: Outside<'_>, now: Instant) -> Response {
        let file = self.path.display().to_string();
        let refuse = |reason: String| {
            warn!(target: "dmvpn::ctl", "{file} not reloaded: {reason}; the running configuration stays");
            Response::error(format!(
                "{file} not reloaded: {reason}; the running configuration stays"
            ))
        };
        let loaded = match dmvpn_config::Config::load(&self.path) {
            Ok(l) => l,
            Err(errors) => {
                warn!(target: "dmvpn::ctl", "{file} not reloaded, the running configuration stays:");
                for d in &errors.diagnostics {
                    warn!(target: "dmvpn::ctl", "{d}");
                }
                return Response::error(format!(
                    "{file} not reloaded, the running configuration stays:\n{errors}"
                ));
            }
        };
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
        if self.tunnel == 0 {
            for w in &warnings {
                warn!(target: "dmvpn::ctl", "{w}");
            }
        }
        let running = router.node().config().origin.clone();
        // One tunnel of several takes its own tunnel from the file.
        let sliced;
        // Where this loop's tunnel is in the file.
        let mut at = self.tunnel;
        let new = if self.of > 1 {
            let count = loaded.config.tunnels.len();
            if count != self.of {
                return refuse(format!(
                    "restart dmvpnd to add or remove a [[tunnel]] ({} running, {count} in the file)",
                    self.of
                ));
            }
            // This loop's tunnel is the one of its name (the tables may
            // have been reordered), else the one at its place (renamed).
            let name = &running.tunnels[0].name;
            at = loaded
                .config
                .tunnels
                .iter()
                .position(|t| t.name == *name)
                .unwrap_or(self.tunnel);
            sliced = loaded.config.for_tunnel(at);
            if sliced.tunnels[0].source != running.tunnels[0].source {
                return refuse(format!(
                    "restart dmvpnd to change tunnel[{at}].source: each of several tunnels is bound to its source address"
                ));
            }
            &sliced
        } else {
            &loaded.config
        };
        // What the router would refuse is refused before anything outside
        // it changes.
        let checked = dmvpn_node::reload::plan(&running, new).and_then(|_| {
            dmvpn_node::control::config_map::map(new)
                .map(|_| ())
                .map_err(Into::into)
        });
        if let Err(e) = checked {
            return refuse(e.to_string());
        }
        // A new tunnel source must be there, as at start.
        let source_of = |c: &dmvpn_config::Config| c.tunnels.first().map(|t| t.source.clone());
        if source_of(new) != source_of(&running)
            && let Ok(n) = dmvpn_node::control::config_map::map(new)
            && let Err(e) = present(&n)
        {
            return refuse(e);
        }
        let Outside {
            tun,
            keylog,
            log,
            listeners,
        } = outside;
        let new_keylog = if running.log.key_log != new.log.key_log {
            match new.log.key_log.as_deref().map(keylog::open).transpose() {
                Ok(f) => Some(f),
                Err(reason) => return refuse(reason),
            }
        } else {
            None
        };
        let sockets = match listeners.as_deref().map(|l| l.prepare(new)).transpose() {
            Ok(p) => p,
            Err(reason) => return refuse(reason),
        };
        if let Err(reason) = tunnel_settings(tun, &running, new) {
            return refuse(reason);
        }
        let summary = match router.reconfigure(now, new) {
            Ok(s) => s,
            Err(e) => return refuse(e.to_string()),
        };
        if let Some(f) = new_keylog {
            // Lines already queued belong to the old file.
            while let Some(line) = router.poll_keylog() {
                write_keylog(keylog.as_mut(), &line);
            }
            router.set_keylog(false);
            router.set_keylog(f.is_some());
            *keylog = f;
        }
        if let (Some(l), Some(p)) = (listeners, sockets) {
            l.commit(p);
        }
        if running.log.filter != new.log.filter
            && let Some(log) = log
        {
            log.set_base(&new.log.filter);
        }
        let interface = router.node().config().interface.clone();
        info!(
            target: "dmvpn::ctl",
            interface = %interface,
            "{file} reloaded: {} change{}",
            summary.changes.len(),
            if summary.changes.len() == 1 { "" } else { "s" }
        );
        for c in &summary.changes {
            info!(target: "dmvpn::ctl", interface = %interface, "  {}: {}", key_name(at, &c.key), c.effect.describe());
        }
        Response::Ok(Reply::Reloaded(ReloadReport {
            file,
            changes: summary
                .changes
                .iter()
                .map(|c| ConfigChange {
                    key: key_name(at, &c.key),
                    effect: c.effect.describe().to_string(),
                })
                .collect(),
            warnings,
        }))
    }
}

/// A changed key as the file names it: the loop's tunnel, `tunnel[0]`
/// of the configuration it runs, is `tunnel[at]` there.
fn key_name(at: usize, key: &str) -> String {
    match key.strip_prefix("tunnel[0]") {
        Some(rest) if at > 0 => format!("tunnel[{at}]{rest}"),
        _ => key.to_string(),
    }
}

/// Appends one key-log line (dropped when no file is open).
pub fn write_keylog(f: Option<&mut File>, line: &str) {
    use std::io::Write;
    if let Some(f) = f {
        let _ = writeln!(f, "{line}");
    }
}

/// Renames the tunnel interface, sets its MTU and adds and removes its
/// configured routes as `new` says. When one fails, what was done is
/// undone.
fn tunnel_settings(
    tun: &Tun,
    running: &dmvpn_config::Config,
    new: &dmvpn_config::Config,
) -> Result<(), String> {
    let (Some(old_t), Some(new_t)) = (running.tunnels.first(), new.tunnels.first()) else {
        return Ok(());
    };
    let old_name = tun.name();
    let old_mtu = tun.mtu();
    let undo = || {
        if tun.mtu() != old_mtu {
            let _ = tun.set_mtu(old_mtu);
        }
        if tun.name() != old_name {
            let _ = tun.rename(&old_name);
        }
    };
    if new_t.name != old_t.name {
        tun.rename(&new_t.name).map_err(|e| e.to_string())?;
    }
    if new_t.mtu != old_t.mtu
        && let Err(e) = tun.set_mtu(new_t.mtu)
    {
        undo();
        return Err(e.to_string());
    }
    // Both families: a dual-stack tunnel routes IPv6 prefixes too.
    let prefixes = |t: &dmvpn_config::Tunnel| -> Vec<(std::net::IpAddr, u8)> {
        t.routes
            .iter()
            .map(|r| (r.network(), r.prefix_len()))
            .collect()
    };
    let (old_routes, new_routes) = (prefixes(old_t), prefixes(new_t));
    let mut added = Vec::new();
    for &(p, l) in new_routes.iter().filter(|r| !old_routes.contains(r)) {
        if let Err(e) = tun.add_route(p, l) {
            for &(p, l) in &added {
                let _ = tun.delete_route(p, l);
            }
            undo();
            return Err(e.to_string());
        }
        added.push((p, l));
    }
    for &(p, l) in old_routes.iter().filter(|r| !new_routes.contains(r)) {
        if let Err(e) = tun.delete_route(p, l) {
            warn!(target: "dmvpn::ctl", "{e}");
        }
    }
    Ok(())
}

/// Whether the tunnel source of `cfg` is there: an interface that
/// exists, or an address of this host (UDP 500 and 4500 are bound to it).
fn present(cfg: &dmvpn_node::control::NodeConfig) -> Result<(), String> {
    match super::source::Source::of(cfg)? {
        super::source::Source::Address(a) => {
            match crate::runtime::rtnl::has_ipv4_address(a) {
                Ok(false) => Err(format!(
                    "tunnel {}: source {a} is not an address of this host",
                    cfg.interface
                )),
                // Unknown (netlink failed): binding the sockets says.
                _ => Ok(()),
            }
        }
        super::source::Source::Interface { .. } => Ok(()),
    }
}
