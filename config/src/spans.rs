//! Map key paths (`tunnel[0].nhrp.nhs[1].address`) to positions in the
//! TOML text and back, using toml_edit's span-preserving parser.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2].c` into segments.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(Seg::Key(rest[..i].to_string()));
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(n) = stripped[..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

pub fn format_path(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A parsed document for span look-ups.
pub struct SpanMap {
    doc: Option<ImDocument<String>>,
    line_starts: Vec<usize>,
    text_len: usize,
}

impl SpanMap {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SpanMap {
            doc: ImDocument::parse(text.to_string()).ok(),
            line_starts,
            text_len: text.len(),
        }
    }

    /// The span-preserving document, if the text is valid TOML.
    pub fn doc(&self) -> Option<&ImDocument<String>> {
        self.doc.as_ref()
    }

    /// 1-based (line, column) of a byte offset; column counts characters.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text_len);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line + 1, col)
    }

    /// Span of the value at `path` (or of its key, or the nearest
    /// existing ancestor when the key is missing).
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        walk_table_like(doc.as_table(), &parse_path(path))
    }

    /// Key path of the innermost key or value whose span holds `offset`.
    pub fn path_at(&self, offset: usize) -> String {
        let Some(doc) = self.doc.as_ref() else {
            return String::new();
        };
        let mut segs = Vec::new();
        find_in_table_like(doc.as_table(), offset, &mut segs);
        format_path(&segs)
    }
}

fn walk_table_like(t: &dyn toml_edit::TableLike, segs: &[Seg]) -> Option<Range<usize>> {
    let (first, rest) = segs.split_first()?;
    let Seg::Key(k) = first else { return None };
    let (key, item) = t.get_key_value(k)?;
    let here = item.span().or_else(|| key.span());
    let Some((next, rest2)) = rest.split_first() else {
        return here;
    };
    let deeper = match (next, item) {
        (Seg::Key(_), _) => item
            .as_table_like()
            .and_then(|tl| walk_table_like(tl, rest)),
        (Seg::Index(i), Item::ArrayOfTables(a)) => a.get(*i).and_then(|t| {
            if rest2.is_empty() {
                t.span()
            } else {
                walk_table_like(t, rest2).or_else(|| t.span())
            }
        }),
        (Seg::Index(i), Item::Value(Value::Array(a))) => a.get(*i).and_then(|v| {
            if rest2.is_empty() {
                v.span()
            } else if let Value::InlineTable(t) = v {
                walk_table_like(t, rest2)
            } else {
                None
            }
        }),
        _ => None,
    };
    deeper.or(here)
}

fn contains(r: &Option<Range<usize>>, offset: usize) -> bool {
    r.as_ref()
        .is_some_and(|r| r.start <= offset && offset < r.end.max(r.start + 1))
}

fn find_in_table_like(t: &dyn toml_edit::TableLike, offset: usize, segs: &mut Vec<Seg>) -> bool {
    for (k, item) in t.iter() {
        let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
        segs.push(Seg::Key(k.to_string()));
        if find_in_item(item, offset, segs) || contains(&key_span, offset) {
            return true;
        }
        segs.pop();
    }
    false
}

fn find_in_item(item: &Item, offset: usize, segs: &mut Vec<Seg>) -> bool {
    match item {
        Item::Table(t) => find_in_table_like(t, offset, segs) || contains(&t.span(), offset),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                segs.push(Seg::Index(i));
                if find_in_table_like(t, offset, segs) || contains(&t.span(), offset) {
                    return true;
                }
                segs.pop();
            }
            false
        }
        Item::Value(v) => find_in_value(v, offset, segs),
        Item::None => false,
    }
}

fn find_in_value(v: &Value, offset: usize, segs: &mut Vec<Seg>) -> bool {
    match v {
        Value::InlineTable(t) => find_in_table_like(t, offset, segs) || contains(&v.span(), offset),
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                segs.push(Seg::Index(i));
                if find_in_value(e, offset, segs) {
                    return true;
                }
                segs.pop();
            }
            contains(&v.span(), offset)
        }
        _ => contains(&v.span(), offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[node]\nname = \"a\"\n\n[[tunnel]]\nname = \"t0\"\n[tunnel.nhrp]\nnetwork_id = 1\n[[tunnel.nhrp.nhs]]\naddress = \"1.2.3.4\"\n[[tunnel]]\nname = \"t1\"\nroutes = [\"10.0.0.0/8\", \"bad\"]\n";

    #[test]
    fn path_round_trip() {
        let p = "tunnel[0].nhrp.nhs[1].address";
        assert_eq!(format_path(&parse_path(p)), p);
    }

    #[test]
    fn spans_to_lines() {
        let m = SpanMap::new(DOC);
        let at = |p: &str| m.line_col(DOC, m.span_of(p).unwrap().start);
        assert_eq!(at("node.name"), (2, 8));
        assert_eq!(at("tunnel[0].nhrp.network_id"), (7, 14));
        assert_eq!(at("tunnel[0].nhrp.nhs[0].address"), (9, 11));
        assert_eq!(at("tunnel[1].name"), (11, 8));
        assert_eq!(at("tunnel[1].routes[1]"), (12, 25));
        // Missing key: nearest ancestor.
        assert_eq!(at("tunnel[1].mtu").0, 10);
    }

    #[test]
    fn offsets_to_paths() {
        let m = SpanMap::new(DOC);
        let off = DOC.find("\"bad\"").unwrap();
        assert_eq!(m.path_at(off), "tunnel[1].routes[1]");
        let off = DOC.find("network_id").unwrap();
        assert_eq!(m.path_at(off), "tunnel[0].nhrp.network_id");
    }
}
