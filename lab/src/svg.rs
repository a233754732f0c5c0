//! A two-panel SVG chart of a run: concurrent tunnels over time, and
//! spoke-to-spoke packets relayed by the hub versus sent direct.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;

struct Line<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn panel(out: &mut String, y0: f64, title: &str, xs: &[f64], lines: &[Line]) {
    let pw = W - LEFT - RIGHT;
    let ph = PANEL_H;
    let xmax = xs.last().copied().unwrap_or(1.0).max(1e-9);
    let ymax = nice_max(
        lines
            .iter()
            .flat_map(|l| l.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        y0 - 10.0,
        esc(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{y0:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#999"/>"##
    );
    for k in 0..=4 {
        let y = y0 + ph - ph * k as f64 / 4.0;
        let v = ymax * k as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        let x = LEFT + pw * k as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}s</text>"#,
            y0 + ph + 16.0,
            fmt_num(xmax * k as f64 / 4.0)
        );
    }
    for (n, l) in lines.iter().enumerate() {
        let mut d = String::new();
        for (i, (x, v)) in xs.iter().zip(&l.values).enumerate() {
            let px = LEFT + pw * x / xmax;
            let py = y0 + ph - ph * v / ymax;
            let _ = write!(d, "{}{px:.1},{py:.1} ", if i == 0 { "M" } else { "L" });
        }
        let _ = writeln!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
            d.trim_end(),
            l.color
        );
        let ly = y0 + 14.0 + 18.0 * n as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            LEFT + pw + 12.0,
            LEFT + pw + 32.0,
            l.color,
            LEFT + pw + 38.0,
            ly + 4.0,
            esc(l.name)
        );
    }
}

fn fmt_num(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Renders the report's time series as a standalone SVG document.
pub fn render(r: &Report) -> String {
    let xs: Vec<f64> = r.series.iter().map(|s| s.t_s).collect();
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "dmvpn-lab: {} spokes, {} hub(s), seed {}",
        r.config.get("spokes").map(String::as_str).unwrap_or("?"),
        r.config.get("hubs").map(String::as_str).unwrap_or("?"),
        r.config.get("seed").map(String::as_str).unwrap_or("?")
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="15">{}</text>"#,
        esc(&title)
    );
    panel(
        &mut out,
        TOP + 10.0,
        "Concurrent tunnels",
        &xs,
        &[
            Line {
                name: "hub tunnels",
                color: "#1f77b4",
                values: r.series.iter().map(|s| s.hub_tunnels as f64).collect(),
            },
            Line {
                name: "spoke-spoke",
                color: "#d62728",
                values: r.series.iter().map(|s| s.spoke_tunnels as f64).collect(),
            },
            Line {
                name: "busiest spoke",
                color: "#2ca02c",
                values: r
                    .series
                    .iter()
                    .map(|s| s.spoke_tunnels_max as f64)
                    .collect(),
            },
        ],
    );
    panel(
        &mut out,
        TOP + 10.0 + PANEL_H + GAP,
        "Spoke-to-spoke packets per interval",
        &xs,
        &[
            Line {
                name: "relayed by hub",
                color: "#ff7f0e",
                values: r.series.iter().map(|s| s.relayed as f64).collect(),
            },
            Line {
                name: "direct",
                color: "#9467bd",
                values: r.series.iter().map(|s| s.direct as f64).collect(),
            },
        ],
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Sample;

    #[test]
    fn well_formed_enough() {
        let r = Report {
            series: (1..=5)
                .map(|i| Sample {
                    t_s: i as f64 * 10.0,
                    hub_tunnels: i,
                    spoke_tunnels: i / 2,
                    relayed: 10 - i as u64,
                    direct: i as u64,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let s = render(&r);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<path").count(), 5);
        assert!(!s.contains("NaN"));
    }
}
