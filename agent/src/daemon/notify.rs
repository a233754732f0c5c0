//! systemd service notifications (`Type=notify`): `READY=1` once the
//! tunnel, the sockets and the control socket are up, `WATCHDOG=1` from
//! the event loop at half the `WatchdogSec=` interval, a one-line
//! `STATUS=` (`systemctl status dmvpnd`) and `STOPPING=1` on shutdown.
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd)
//! every call does nothing.

use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DmvpnInterface, DmvpnState, NhsEntry};
use sd_notify::NotifyState;
use tracing::warn;

pub struct Notifier {
    /// Started by systemd (`NOTIFY_SOCKET` set): only then is the status
    /// line worth computing.
    enabled: bool,
    /// Half the watchdog interval, when systemd asks for keep-alives.
    keepalive: Option<Duration>,
    next_keepalive: Instant,
    last_status: String,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let mut usec = 0u64;
        let keepalive = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec) / 2)
            .filter(|d| !d.is_zero());
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            keepalive,
            next_keepalive: Instant::now(),
            last_status: String::new(),
        }
    }

    /// The node is up: tunnel created, sockets bound, control socket
    /// listening.
    pub fn ready(&mut self, status: impl FnOnce() -> String) {
        if self.enabled {
            self.last_status = status();
            send(&[NotifyState::Ready, NotifyState::Status(&self.last_status)]);
        }
    }

    /// Called on every turn of the event loop; sends `WATCHDOG=1` when
    /// half the watchdog interval has passed since the last one, so a
    /// stuck loop gets the service restarted.
    pub fn keepalive(&mut self) {
        if let Some(every) = self.keepalive {
            let now = Instant::now();
            if now >= self.next_keepalive {
                self.next_keepalive = now + every;
                send(&[NotifyState::Watchdog]);
            }
        }
    }

    /// Sends `STATUS=` when the line changed.
    pub fn status(&mut self, status: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let status = status();
        if status != self.last_status {
            send(&[NotifyState::Status(&status)]);
            self.last_status = status;
        }
    }

    pub fn stopping(&mut self) {
        if self.enabled {
            send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
        }
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(target: "dmvpn::ctl", "cannot notify systemd: {e}");
    }
}

/// `STATUS=` line: NHSs answering out of those configured (spokes), and
/// peers whose tunnel is up, e.g. `2/2 NHS up, 14 peers up`.
pub fn status_line(nhs: &[NhsEntry], interfaces: &[DmvpnInterface]) -> String {
    let peers = interfaces
        .iter()
        .flat_map(|i| i.peers.iter())
        .filter(|p| p.entries.iter().any(|e| e.state == DmvpnState::Up))
        .count();
    let peers = format!("{peers} peer{} up", if peers == 1 { "" } else { "s" });
    if nhs.is_empty() {
        peers
    } else {
        let up = nhs.iter().filter(|n| n.state.is_up()).count();
        format!("{up}/{} NHS up, {peers}", nhs.len())
    }
}
