//! `dmvpnctl reload`: the file's warnings, then what changed and when
//! it takes effect.

use crate::proto::ReloadReport;

pub fn reload(r: &ReloadReport) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        s.push_str(w);
        s.push('\n');
    }
    match r.changes.len() {
        0 => s.push_str(&format!("Reloaded {}: no changes\n", r.file)),
        n => {
            let plural = if n == 1 { "" } else { "s" };
            s.push_str(&format!("Reloaded {}: {n} change{plural}\n", r.file));
            let width = r.changes.iter().map(|c| c.key.len()).max().unwrap_or(0);
            for c in &r.changes {
                s.push_str(&format!("  {:<width$}  {}\n", c.key, c.effect));
            }
        }
    }
    s
}
