//! Logging with one global `EnvFilter` behind a reload handle, so
//! `dmvpnctl debug nhrp|crypto isakmp|crypto ipsec` can flip targets at
//! run time (reloading a per-layer filter would panic).
//!
//! Where the lines go: when stderr is the journal's stream (systemd
//! names it in `JOURNAL_STREAM`), events go to journald in its native
//! protocol, their fields (`PEER`, `NHS`, `NBMA`, `INTERFACE`, `SPI_IN`,
//! …) as journal fields beside `MESSAGE`, `PRIORITY` from the level and
//! `SYSLOG_IDENTIFIER=dmvpnd`. Otherwise, or when the journal's socket
//! cannot be reached, they are text on stderr.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use dmvpn_ctl::proto::{DebugSwitches, DebugTarget, Reply, Response};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub struct Logging {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    switches: DebugSwitches,
    /// `RUST_LOG` was set: it stays the filter whatever the file says.
    from_env: bool,
}

fn filter(s: &str) -> EnvFilter {
    EnvFilter::try_new(s).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Whether `JOURNAL_STREAM` ("DEVICE:INODE", decimal) names the file
/// `dev`/`ino`.
fn names_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Whether stderr is still the stream systemd connected to the journal:
/// a child whose stderr was redirected inherits `JOURNAL_STREAM` but
/// writes elsewhere.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    names_stream(&v.to_string_lossy(), meta.dev(), meta.ino())
}

/// The journald layer: field names as they are (`peer` → `PEER`),
/// syslog's levels (INFO is `6`, as journald gives plain stderr lines).
fn journal() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("dmvpnd".into())
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}

impl Logging {
    /// Installs the global subscriber with `base` (e.g. "info"), or with
    /// `RUST_LOG` when that is set, as tracing users expect: to journald
    /// under systemd, else to stderr. Colours only when stderr is a
    /// terminal (files and pipes get plain text).
    /// A second call (tests) leaves the first subscriber in place.
    pub fn init(base: &str) -> Logging {
        let env = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let base = env.as_deref().unwrap_or(base);
        let (layer, handle) = reload::Layer::new(filter(base));
        let (journal, unreachable) = match stderr_is_journal().then(journal) {
            Some(Ok(j)) => (Some(j), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let text = journal.is_none().then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(true)
        });
        let ok = tracing_subscriber::registry()
            .with(layer)
            .with(journal)
            .with(text)
            .try_init()
            .is_ok();
        if let (true, Some(e)) = (ok, unreachable) {
            tracing::warn!(
                target: "dmvpn::ctl",
                "stderr is the journal but its socket cannot be reached ({e}): logging text to stderr"
            );
        }
        Logging {
            handle: ok.then_some(handle),
            switches: DebugSwitches::new(base),
            from_env: env.is_some(),
        }
    }

    /// A reloaded `[log] filter` (unless `RUST_LOG` overrides it); the
    /// `debug` switches stay on.
    pub fn set_base(&mut self, base: &str) {
        if self.from_env {
            return;
        }
        self.switches.set_base(base);
        if let Some(h) = &self.handle
            && let Err(e) = h.reload(filter(&self.switches.filter()))
        {
            tracing::warn!(target: "dmvpn::ctl", "cannot change the log filter: {e}");
        }
    }

    /// `debug TARGET` / `no debug TARGET`.
    pub fn set(&mut self, target: DebugTarget, on: bool) -> Response {
        let reply: Reply = self.switches.set(target, on);
        if let Some(h) = &self.handle
            && let Err(e) = h.reload(filter(&self.switches.filter()))
        {
            return Response::error(format!("cannot change the log filter: {e}"));
        }
        Response::Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::names_stream;

    #[test]
    fn journal_stream_names_device_and_inode() {
        assert!(names_stream("65:12345", 65, 12345));
        assert!(names_stream("65:12345\n", 65, 12345));
        assert!(!names_stream("65:12345", 65, 12346));
        assert!(!names_stream("66:12345", 65, 12345));
        assert!(!names_stream("65", 65, 12345));
        assert!(!names_stream("", 0, 0));
        assert!(!names_stream("x:y", 0, 0));
    }
}
