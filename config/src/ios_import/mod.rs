//! Translate a Cisco IOS `show running-config` (DMVPN hub or spoke, a
//! `tunnel protection` VTI, or crypto maps as far as they map) into our
//! configuration.
//!
//! IOS defaults are written out with IOS's values (policy: DES, SHA,
//! group 1, 86400 s; SA lifetime 3600 s / 4608000 KB; transform-set mode
//! tunnel; NHRP holdtime 7200) so that the translation means what the
//! router did. Every line that does not map is kept as a comment and
//! reported as a note, never dropped silently.

mod build;
mod collect;
mod commands;
mod lex;

use crate::{Config, Diagnostic};
use build::Builder;
use collect::collect;
use lex::lex;
use std::fmt::Write as _;

/// Options for [`import_ios`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which router to import when the text holds several (`hostname`).
    pub hostname: Option<String>,
}

/// A note for the operator: a line not imported, or a decision made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// 1-based input line (0 when not tied to a line).
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.text)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The translated configuration.
    pub config: Config,
    /// TOML text: the configuration plus the unmapped lines as comments.
    pub toml: String,
    /// Notes for stderr: unmapped lines, defaults applied, other routers.
    pub notes: Vec<Note>,
    /// Host names (or `router#N`) of every router found, in input order.
    pub routers: Vec<String>,
    /// Index into `routers` of the one imported.
    pub selected: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    #[error(
        "no IOS router configuration found (expected `interface Tunnel…`, `crypto isakmp …`, `crypto ipsec …` or `crypto map …` commands)"
    )]
    NothingFound,
    #[error("no router with hostname `{wanted}` in the input (found: {})", .found.join(", "))]
    NoSuchHost { wanted: String, found: Vec<String> },
    #[error("the translation does not validate:\n{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// Crypto configuration alone (an ASA or IOS crypto map), or only
    /// tunnels dmvpnd does not run: nothing dmvpnd can start. `config` is
    /// what was translated; the notes say why each tunnel was left out.
    #[error("no tunnel dmvpnd can run in this configuration (add an `interface Tunnel…` in mGRE or GRE mode to the input){}", .notes.iter().map(|n| format!("\n{n}")).collect::<String>())]
    NoTunnel {
        config: Box<Config>,
        notes: Vec<Note>,
    },
}

/// Translates IOS configuration text. See the module documentation.
pub fn import_ios(text: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let lexed = lex(text);
    let c = collect(&lexed.toks);
    let routers = c.routers;
    let names: Vec<String> = routers.iter().enumerate().map(|(i, r)| r.name(i)).collect();
    let selected = match &opts.hostname {
        Some(h) => names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(h))
            .ok_or_else(|| ImportError::NoSuchHost {
                wanted: h.clone(),
                found: names.clone(),
            })?,
        None => routers
            .iter()
            .position(|r| r.importable())
            .ok_or(ImportError::NothingFound)?,
    };
    let r = &routers[selected];
    if !r.importable() {
        return Err(ImportError::NothingFound);
    }
    let mut b = Builder {
        r,
        notes: Vec::new(),
    };
    let config = b.build();
    let mut notes = r.unmapped.clone();
    notes.extend(b.notes);
    notes.sort_by_key(|n| n.line);
    if names.len() > 1 {
        let others: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != selected)
            .map(|(_, n)| n.as_str())
            .collect();
        notes.push(Note {
            line: 0,
            text: format!(
                "input holds {} routers; imported `{}`, also found: {} (choose with --hostname NAME)",
                names.len(),
                names[selected],
                others.join(", ")
            ),
        });
    }
    if !c.prose_lines.is_empty() {
        notes.push(Note {
            line: 0,
            text: format!(
                "ignored {} line(s) of text that is not configuration: {}",
                c.prose_lines
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                ranges(&c.prose_lines)
            ),
        });
    }
    if config.tunnels.is_empty() {
        return Err(ImportError::NoTunnel {
            config: Box::new(config),
            notes,
        });
    }
    let toml = render(&config, &names[selected], &notes);
    // The output must pass validation; anything else is a bug to report.
    if let Err(e) = Config::from_str(&toml, "import") {
        return Err(ImportError::Invalid(e.diagnostics));
    }
    Ok(Imported {
        config,
        toml,
        notes,
        routers: names,
        selected,
    })
}

fn ranges(lines: &[usize]) -> String {
    let mut v: Vec<usize> = lines.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    if parts.len() > 12 {
        let n = parts.len() - 12;
        parts.truncate(12);
        parts.push(format!("and {n} more"));
    }
    parts.join(", ")
}

fn render(cfg: &Config, router: &str, notes: &[Note]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Translated from the Cisco IOS configuration of `{router}`."
    );
    s.push_str(
        "# IOS defaults are written out with IOS's values; review the notes at the end.\n\n",
    );
    s.push_str(&cfg.to_toml());
    if !notes.is_empty() {
        s.push_str("\n# Not imported / notes:\n");
        for n in notes {
            let text = n.to_string().replace('\n', " ");
            let _ = writeln!(s, "#   {text}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::build::linux_ifname;
    use super::commands::{canonical_ifname, mask_len};
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_len("255.255.255.0"), Some(24));
        assert_eq!(mask_len("0.0.0.0"), Some(0));
        assert_eq!(mask_len("255.255.255.255"), Some(32));
        assert_eq!(mask_len("255.0.255.0"), None);
        assert_eq!(mask_len("255.255.0"), None);
    }

    #[test]
    fn interface_names() {
        assert_eq!(canonical_ifname("Tu0"), "Tunnel0");
        assert_eq!(canonical_ifname("tunnel23"), "Tunnel23");
        assert_eq!(canonical_ifname("Tunne10"), "Tunnel10");
        assert_eq!(canonical_ifname("Fa0/0"), "FastEthernet0/0");
        assert_eq!(linux_ifname("FastEthernet0/0"), "fa0-0");
        assert_eq!(linux_ifname("GigabitEthernet0/0/1"), "gi0-0-1");
    }

    #[test]
    fn line_ranges() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9]), "1-3, 5, 9");
    }

    proptest::proptest! {
        #[test]
        fn import_never_panics(s in "\\PC{0,300}") {
            let _ = import_ios(&s, &ImportOptions::default());
        }

        #[test]
        fn import_of_command_soup_never_panics(
            words in proptest::collection::vec(proptest::sample::select(vec![
                "interface", "Tunnel0", "ip", "address", "10.0.0.1", "255.255.255.0", "nhrp",
                "nhs", "map", "multicast", "dynamic", "crypto", "isakmp", "policy", "10", "key",
                "cisco", "0.0.0.0", "ipsec", "profile", "transform-set", "esp-aes", "256", "set",
                "tunnel", "source", "mode", "gre", "multipoint", "protection", "hostname", "r1",
                "end", "!", "\n", "no", "network-id", "1", "!---", "x.", "map", "7", "seq",
            ]), 0..120)
        ) {
            let text = words.join(" ");
            let _ = import_ios(&text, &ImportOptions::default());
        }
    }
}
