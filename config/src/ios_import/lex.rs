//! Turns pasted IOS text into a flat word stream for the importer.
//!
//! Configurations arrive as people paste them: with `show run` headers,
//! banners, pager noise, `!---` annotations, lines joined or re-wrapped by
//! a document converter, prompts and prose around them. This pass removes
//! what is certainly noise and marks the rest: which words start a line,
//! which lie inside an annotation (prose), and where `!` separates
//! commands. Deciding what is a command is left to the parser.

use std::net::Ipv6Addr;

#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub text: String,
    /// 1-based line number in the input.
    pub line: usize,
    /// Segment number: segments are separated by line breaks and `!`.
    pub seg: usize,
    /// First word of its segment.
    pub seg_start: bool,
    /// First word of its physical line (ignoring noise before it).
    pub line_start: bool,
    /// Inside an `!---` annotation: prose unless a command follows a sentence end.
    pub prose: bool,
    /// Preceded in its segment by a word ending a sentence (`.` or `:`).
    pub after_stop: bool,
    /// A CLI prompt (`host#show run`); `text` holds the host name.
    pub prompt: bool,
}

/// Lexer output: words plus the line numbers of what was dropped as noise.
pub(crate) struct Lexed {
    pub toks: Vec<Tok>,
}

fn is_noise_line(t: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "Building configuration",
        "Current configuration",
        "Last configuration change",
        "NVRAM config last updated",
        "! Last configuration change",
        "! NVRAM config last updated",
    ];
    // A lone "1" is how some converters render a "!" line.
    t == "1" || t == "!" || PREFIXES.iter().any(|p| t.starts_with(p))
}

/// `host#show ...`, `host#`, `host(config)#`, `host>`: returns the host name.
fn prompt_name(t: &str) -> Option<String> {
    let first = t.split_whitespace().next()?;
    let idx = first.find(['#', '>'])?;
    let (name, rest) = first.split_at(idx);
    let name = match name.find('(') {
        Some(p) => &name[..p],
        None => name,
    };
    if name.is_empty()
        || !name.chars().next()?.is_ascii_alphabetic()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return None;
    }
    let after = format!("{}{}", &rest[1..], &t[first.len()..]);
    let after = after.trim_start();
    let cmd_like = after.is_empty()
        || [
            "sh", "show", "more", "write", "term", "conf", "ping", "debug",
        ]
        .iter()
        .any(|c| after.starts_with(c));
    cmd_like.then(|| name.to_string())
}

/// Merges `2001:` `DB8::3` (a space slipped into an IPv6 address).
fn merge_ipv6(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for w in words {
        if let Some(prev) = out.last_mut()
            && prev.ends_with(':')
            && !prev.starts_with('!')
        {
            let joined = format!("{prev}{w}");
            let addr_part = joined.split('/').next().unwrap_or("");
            if addr_part.parse::<Ipv6Addr>().is_ok() {
                *prev = joined;
                continue;
            }
        }
        out.push(w);
    }
    out
}

pub(crate) fn lex(text: &str) -> Lexed {
    let mut toks = Vec::new();
    let mut seg = 0usize;
    let mut banner_delim: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut line = raw.replace('\r', "").replace("--More--", " ");
        line = line.replace("<--- More --->", " ").replace('\u{8}', "");
        if let Some(d) = &banner_delim {
            if line.contains(d.as_str()) {
                banner_delim = None;
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() || is_noise_line(t) {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        if words.first() == Some(&"banner") && words.len() >= 2 {
            // banner motd ^C ... ^C  (the delimiter is the first character
            // after the banner type, `^C` typed as two characters).
            let after_type = t
                .split_once(words[1])
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            let delim = if after_type.starts_with("^C") {
                "^C".to_string()
            } else {
                after_type
                    .chars()
                    .next()
                    .map(String::from)
                    .unwrap_or_default()
            };
            if !delim.is_empty() {
                let body = &after_type[delim.len()..];
                if !body.contains(delim.as_str()) {
                    banner_delim = Some(delim);
                }
            }
            continue;
        }
        if let Some(name) = prompt_name(t) {
            seg += 1;
            toks.push(Tok {
                text: name,
                line: line_no,
                seg,
                seg_start: true,
                line_start: true,
                prose: false,
                after_stop: false,
                prompt: true,
            });
            continue;
        }
        let words = merge_ipv6(words.into_iter().map(String::from).collect());
        seg += 1;
        let mut prose = false;
        let mut seg_start = true;
        let mut line_start = true;
        let mut after_stop = false;
        for w in words {
            if let Some(rest) = w.strip_prefix("!---") {
                seg += 1;
                prose = true;
                seg_start = true;
                after_stop = false;
                if rest.is_empty() {
                    continue;
                }
                push(
                    &mut toks,
                    rest,
                    line_no,
                    seg,
                    &mut seg_start,
                    &mut line_start,
                    prose,
                    &mut after_stop,
                );
                continue;
            }
            if w.starts_with('!') {
                seg += 1;
                prose = false;
                seg_start = true;
                after_stop = false;
                continue;
            }
            push(
                &mut toks,
                &w,
                line_no,
                seg,
                &mut seg_start,
                &mut line_start,
                prose,
                &mut after_stop,
            );
        }
    }
    Lexed { toks }
}

#[allow(clippy::too_many_arguments)]
fn push(
    toks: &mut Vec<Tok>,
    w: &str,
    line: usize,
    seg: usize,
    seg_start: &mut bool,
    line_start: &mut bool,
    prose: bool,
    after_stop: &mut bool,
) {
    toks.push(Tok {
        text: w.to_string(),
        line,
        seg,
        seg_start: *seg_start,
        line_start: *line_start,
        prose,
        after_stop: *after_stop,
        prompt: false,
    });
    *seg_start = false;
    *line_start = false;
    *after_stop = w.ends_with('.') || w.ends_with(':');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        lex(text).toks.into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn drops_noise_and_banners() {
        let text = "Building configuration...\nCurrent configuration : 1827 bytes\n!\nbanner motd ^C\nhello\n^C\nhostname r1\n --More-- \nend\n";
        assert_eq!(words(text), ["hostname", "r1", "end"]);
        let one_line = "banner motd #hi there#\nhostname r2\n";
        assert_eq!(words(one_line), ["hostname", "r2"]);
    }

    #[test]
    fn prompts_and_annotations() {
        let l = lex("sv9-2#show run\n!--- a note. crypto isakmp policy 10\nfoo ! bar");
        assert!(l.toks[0].prompt && l.toks[0].text == "sv9-2");
        let crypto = l.toks.iter().find(|t| t.text == "crypto").unwrap();
        assert!(crypto.prose && crypto.after_stop && !crypto.seg_start);
        let bar = l.toks.iter().find(|t| t.text == "bar").unwrap();
        assert!(bar.seg_start && !bar.prose && !bar.line_start);
    }

    #[test]
    fn ipv6_with_space() {
        assert_eq!(
            words("tunnel destination 2001: DB8::3"),
            ["tunnel", "destination", "2001:DB8::3"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = lex(&s);
        }
    }
}
