//! Logging to stderr with one global `EnvFilter` behind a reload handle,
//! so `dmvpnctl debug nhrp|crypto isakmp|crypto ipsec` can flip targets at
//! run time (reloading a per-layer filter would panic).

use dmvpn_ctl::proto::{DebugSwitches, DebugTarget, Reply, Response};
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

impl Logging {
    /// Installs the global subscriber with `base` (e.g. "info"), or with
    /// `RUST_LOG` when that is set, as tracing users expect. Colours only
    /// when stderr is a terminal (journald and files get plain text).
    /// A second call (tests) leaves the first subscriber in place.
    pub fn init(base: &str) -> Logging {
        let env = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let base = env.as_deref().unwrap_or(base);
        let (layer, handle) = reload::Layer::new(filter(base));
        let ok = tracing_subscriber::registry()
            .with(layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(true),
            )
            .try_init()
            .is_ok();
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
