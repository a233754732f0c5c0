//! Human durations on the command line: `20ms`, `30s`, `5m`, `1h`, `1h30m`.

use std::time::Duration;

/// Parses `20ms`, `30s`, `5m`, `1h`, combinations such as `1h30m`, and a
/// bare number meaning seconds. Fractions are allowed (`1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (examples: 20ms, 30s, 5m, 1h)".into());
    }
    if let Ok(v) = t.parse::<f64>() {
        return secs(v, s);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{s}`: number without a unit (use ms, s, m or h)"))?;
        if num_len == 0 {
            return Err(format!(
                "`{s}`: expected a number (examples: 20ms, 30s, 5m, 1h)"
            ));
        }
        let v: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{s}`: bad number `{}`", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            u => return Err(format!("`{s}`: unknown unit `{u}` (use ms, s, m or h)")),
        };
        total += v * mult;
        rest = &rest[unit_len..];
    }
    secs(total, s)
}

fn secs(v: f64, s: &str) -> Result<Duration, String> {
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("`{s}`: duration out of range"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Short human form used in reports: `850µs`, `12.3ms`, `4.20s`, `2m05s`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else if us < 120_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    }

    #[test]
    fn errors() {
        for bad in ["", "s", "10x", "-1s", "ms20", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
