//! dmvpn configuration: the TOML schema the daemon consumes, its native
//! defaults, validation with `file:line:col` diagnostics, and a translator
//! from Cisco IOS `show running-config`.
//!
//! ```no_run
//! let loaded = dmvpn_config::Config::load("hub.toml").expect("valid config");
//! for w in &loaded.warnings {
//!     eprintln!("{w}");
//! }
//! let cfg = loaded.config;
//! # let _ = cfg;
//! ```

pub mod defaults;
pub mod diag;
#[cfg(feature = "load")]
pub mod files;
pub mod ios_import;
mod keys;
mod lookup;
pub mod schema;
pub mod spans;
pub mod types;
pub mod validate;

pub use diag::{ConfigErrors, Diagnostic, Severity};
pub use ios_import::{ImportError, ImportOptions, Imported, Note, import_ios};
pub use schema::*;
pub use types::*;

use diag::Finding;
use spans::SpanMap;
#[cfg(feature = "load")]
use std::path::Path;

/// A validated configuration and the warnings found while checking it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// Reads, parses and validates a configuration file, then checks the
    /// files around it: a file holding secrets must belong to dmvpnd's
    /// user (or root) and be writable by nobody else (readable by others
    /// is a warning), and the key-log file must be safe to write keys to
    /// (see [`files`]).
    #[cfg(feature = "load")]
    pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigErrors> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                file: name.clone(),
                line: 0,
                col: 0,
                path: String::new(),
                message: format!("cannot read file: {e}"),
                help: "check the path and permissions".into(),
            }],
        })?;
        let mut loaded = Config::from_str(&text, &name)?;
        let mut findings = Vec::new();
        if loaded.config.has_secrets()
            && let Ok(meta) = std::fs::metadata(path)
        {
            for p in files::problems(&meta, files::current_uid()) {
                let (what, fix) = p.describe(path);
                let what = format!("file holds keys and {what}");
                findings.push(if p.refuses_reading() {
                    Finding::error("", what, fix)
                } else {
                    Finding::warning("", what, fix)
                });
            }
        }
        if let Some(k) = loaded.config.log.key_log.as_ref() {
            for (what, fix) in files::key_log_problems(k) {
                findings.push(Finding::error("log.key_log", what, fix));
            }
        }
        let spans = SpanMap::new(&text);
        let mut errors = Vec::new();
        for f in findings {
            let (line, col) = match spans.span_of(&f.path) {
                Some(s) if !f.path.is_empty() => spans.line_col(&text, s.start),
                _ => (1, 1),
            };
            let d = Diagnostic {
                severity: f.severity,
                file: name.clone(),
                line,
                col,
                path: f.path,
                message: f.message,
                help: f.help,
            };
            if d.is_error() {
                errors.push(d);
            } else {
                loaded.warnings.insert(0, d);
            }
        }
        if errors.is_empty() {
            Ok(loaded)
        } else {
            errors.extend(loaded.warnings);
            Err(ConfigErrors {
                diagnostics: errors,
            })
        }
    }

    /// Parses and validates configuration text; `file_name` is only used in
    /// diagnostics.
    pub fn from_str(text: &str, file_name: &str) -> Result<Loaded, ConfigErrors> {
        let spans = SpanMap::new(text);
        let locate = |f: Finding, offset: Option<usize>| {
            let (line, col) = offset.map_or((0, 0), |o| spans.line_col(text, o));
            Diagnostic {
                severity: f.severity,
                file: file_name.to_string(),
                line,
                col,
                path: f.path,
                message: f.message,
                help: f.help,
            }
        };
        // All unknown keys at once; serde would stop at the first.
        if let Some(doc) = spans.doc() {
            let unknown = keys::unknown_keys(doc);
            if !unknown.is_empty() {
                return Err(ConfigErrors {
                    diagnostics: unknown
                        .into_iter()
                        .map(|(f, off)| locate(f, off.or(Some(0))))
                        .collect(),
                });
            }
        }
        let mut config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                let offset = e.span().map(|s| s.start);
                let path = offset.map(|o| spans.path_at(o)).unwrap_or_default();
                let msg = e.message().lines().next().unwrap_or("invalid TOML");
                let (msg, help) = explain(msg);
                return Err(ConfigErrors {
                    diagnostics: vec![locate(Finding::error(path, msg, help), offset)],
                });
            }
        };
        // The deprecated `ike.aggressive_mode` stands for `answer_aggressive`
        // unless that is given too (validation reports any contradiction).
        let answer_given = spans.doc().is_some_and(|d| {
            d.get("ike")
                .and_then(|i| i.as_table_like())
                .is_some_and(|i| i.contains_key("answer_aggressive"))
        });
        if let Some(v) = config.ike.aggressive_mode
            && !answer_given
        {
            config.ike.answer_aggressive = v;
        }
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for f in validate::validate(&config) {
            let offset = spans.span_of(&f.path).map(|s| s.start);
            let d = locate(f, offset.or(Some(0)));
            if d.is_error() {
                errors.push(d)
            } else {
                warnings.push(d)
            }
        }
        // File order reads best.
        errors.sort_by_key(|d| (d.line, d.col));
        warnings.sort_by_key(|d| (d.line, d.col));
        if errors.is_empty() {
            Ok(Loaded { config, warnings })
        } else {
            errors.extend(warnings);
            Err(ConfigErrors {
                diagnostics: errors,
            })
        }
    }

    /// Renders the configuration as TOML (what `import-ios` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// A TOML or type error in an operator's words (Rust type names spelt
/// out), with what to do about it.
fn explain(msg: &str) -> (String, &'static str) {
    let mut msg = msg.trim_end_matches('.').to_string();
    for (ty, words) in [
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number"),
        ("i64", "a whole number"),
        ("f64", "a number"),
    ] {
        if let Some(head) = msg.strip_suffix(&format!("expected {ty}")) {
            msg = format!("{head}expected {words}");
        }
    }
    let help = if msg.starts_with("unknown field") {
        "remove it or fix its spelling"
    } else if msg.starts_with("missing field") {
        "add it"
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        "check the value's type in docs/configuration.md"
    } else if msg.starts_with("duplicate key") {
        "keep one of them"
    } else if msg.contains(" must be ") {
        "see docs/configuration.md"
    } else if msg.contains("socket address") {
        "write ADDRESS:PORT, e.g. 127.0.0.1:9810"
    } else if msg.contains("IP address") {
        "write an address such as 192.0.2.1, or ADDRESS/LENGTH where a prefix is meant"
    } else {
        "fix the TOML syntax here; see docs/configuration.md"
    };
    (msg, help)
}
