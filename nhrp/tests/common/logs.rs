//! Collects `dmvpn::nhrp` log lines with their level (a minimal tracing
//! subscriber). Use it only in test binaries whose every test installs it:
//! tracing caches callsite interest process-wide.

use std::sync::{Arc, Mutex};

use tracing::Level;

struct Collect(Arc<Mutex<Vec<(Level, String)>>>);

struct Msg<'a>(&'a mut String);

impl tracing::field::Visit for Msg<'_> {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(
            self.0,
            "{}{:?}",
            if f.name() == "message" { "" } else { " " },
            v
        );
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        assert_eq!(e.metadata().target(), "dmvpn::nhrp");
        let mut s = String::new();
        e.record(&mut Msg(&mut s));
        self.0.lock().unwrap().push((*e.metadata().level(), s));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` and returns every line logged meanwhile, with its level.
pub fn capture(f: impl FnOnce()) -> Vec<(Level, String)> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(Collect(logs.clone()), f);
    logs.lock().unwrap().clone()
}
