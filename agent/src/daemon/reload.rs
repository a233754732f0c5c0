//! Reloading the configuration file on SIGHUP or `dmvpnctl reload`: the
//! file is read and checked as `--check` does ([`dmvpn_config::Config::load`],
//! file permissions included) and handed to [`Router::reconfigure`]. A
//! file with errors, or a change that needs a restart, is logged and
//! answered with the reasons; the running configuration stays.

use std::path::PathBuf;

use dmvpn_ctl::proto::{ConfigChange, ReloadReport, Reply, Response};
use dmvpn_nhrp::Instant;
use dmvpn_node::Router;
use tokio::signal::unix::Signal;
use tracing::{info, warn};

use super::logging::Logging;

/// Where the configuration comes from, and the SIGHUP that asks for it
/// to be read again.
pub struct Reload {
    pub path: PathBuf,
    pub hangup: Signal,
}

impl Reload {
    /// Reads the file and applies it to `router` (and the log filter to
    /// `log`). Everything is logged; the answer is for `dmvpnctl reload`.
    pub fn apply(&self, router: &mut Router, log: Option<&mut Logging>, now: Instant) -> Response {
        let file = self.path.display().to_string();
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
        for w in &warnings {
            warn!(target: "dmvpn::ctl", "{w}");
        }
        // A new tunnel source must be there, as at start.
        let source_of = |c: &dmvpn_config::Config| c.tunnels.first().map(|t| t.source.clone());
        if source_of(&loaded.config) != source_of(&router.node().config().origin)
            && let Ok(n) = dmvpn_node::control::config_map::map(&loaded.config)
            && let Err(e) = present(&n)
        {
            warn!(target: "dmvpn::ctl", "{file} not reloaded: {e}; the running configuration stays");
            return Response::error(format!(
                "{file} not reloaded: {e}; the running configuration stays"
            ));
        }
        match router.reconfigure(now, &loaded.config) {
            Ok(summary) => {
                info!(
                    target: "dmvpn::ctl",
                    "{file} reloaded: {} change{}",
                    summary.changes.len(),
                    if summary.changes.len() == 1 { "" } else { "s" }
                );
                for c in &summary.changes {
                    info!(target: "dmvpn::ctl", "  {}: {}", c.key, c.effect.describe());
                }
                if summary.changes.iter().any(|c| c.key == "log.filter")
                    && let Some(log) = log
                {
                    log.set_base(&loaded.config.log.filter);
                }
                Response::Ok(Reply::Reloaded(ReloadReport {
                    file,
                    changes: summary
                        .changes
                        .iter()
                        .map(|c| ConfigChange {
                            key: c.key.clone(),
                            effect: c.effect.describe().to_string(),
                        })
                        .collect(),
                    warnings,
                }))
            }
            Err(e) => {
                warn!(target: "dmvpn::ctl", "{file} not reloaded: {e}; the running configuration stays");
                Response::error(format!(
                    "{file} not reloaded: {e}; the running configuration stays"
                ))
            }
        }
    }
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
