//! A one-line progress bar on stderr, only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Bar {
    enabled: bool,
    start: Instant,
    last_pct: i64,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        Bar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            start: Instant::now(),
            last_pct: -1,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled || total == 0 {
            return;
        }
        let pct = (done.min(total) * 100 / total) as i64;
        if pct == self.last_pct {
            return;
        }
        self.last_pct = pct;
        let filled = (pct / 2) as usize;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r[{}{}] {pct:3}%  virtual {:.0}s  wall {:.1}s ",
            "#".repeat(filled),
            " ".repeat(50 - filled),
            done as f64 / 1e6,
            self.start.elapsed().as_secs_f64()
        );
        let _ = e.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}
