//! Command line of `dmvpn-lab`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;
use crate::sim::SimConfig;

#[derive(Debug, Parser)]
#[command(
    name = "dmvpn-lab",
    version,
    about = "80/20 DMVPN traffic lab: real dmvpn nodes on a simulated underlay, or real daemons in network namespaces",
    long_about = "80/20 DMVPN traffic lab.\n\n`sim` runs real dmvpn nodes (NHRP, IKEv1, ESP with real cryptography) in one process on virtual time over a simulated underlay with latency and loss. Most traffic goes from spokes to the hub's LAN, a share goes spoke to spoke and builds dynamic tunnels that age out when idle.\n\n`netns` does the same with real dmvpnd processes in network namespaces (needs root)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate hubs and spokes on virtual time and report tunnels, relaying and latencies.
    Sim(SimArgs),
    /// Run real dmvpnd daemons in network namespaces with 80/20 traffic (needs root).
    Netns(NetnsArgs),
}

fn probability(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| {
        format!("`{s}` is not a number; give a probability between 0 and 1, e.g. 0.2")
    })?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "{v} is outside 0..1; give a probability such as 0.2 (20 %)"
        ));
    }
    Ok(v)
}

fn positive_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number (flows per minute per spoke, e.g. 2)"))?;
    if !(v > 0.0 && v <= 60_000.0) {
        return Err(format!(
            "{v}: must be above 0 and at most 60000 flows per minute"
        ));
    }
    Ok(v)
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// IPsec profile idle time: dmvpnd accepts 60 s to 24 h, in whole seconds.
fn idle(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(60..=86_400).contains(&d.as_secs()) {
        return Err(format!(
            "{s}: the IPsec idle time must be between 60s and 24h"
        ));
    }
    Ok(Duration::from_secs(d.as_secs()))
}

fn dh_group(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(g @ (1 | 2 | 5 | 14 | 15 | 16 | 19 | 20)) => Ok(g),
        _ => Err(format!(
            "`{s}`: use a DH group dmvpnd supports: 1, 2, 5, 14, 15, 16, 19 or 20"
        )),
    }
}

fn count(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if v == 0 {
        return Err("must be at least 1".into());
    }
    Ok(v)
}

#[derive(Debug, Args, Clone)]
pub struct SimArgs {
    /// Number of spokes.
    #[arg(long, default_value = "20", value_parser = count)]
    pub spokes: usize,
    /// Number of hubs (every spoke registers with each).
    #[arg(long, default_value = "1", value_parser = count)]
    pub hubs: usize,
    /// Virtual time to simulate (e.g. 30s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub duration: Duration,
    /// Probability that a flow goes to another spoke's LAN instead of the hub's (0..1).
    #[arg(long = "spoke-to-spoke", default_value = "0.2", value_parser = probability)]
    pub spoke_to_spoke: f64,
    /// New flows per minute per spoke (Poisson arrivals).
    #[arg(long = "flows-per-minute", default_value = "1", value_parser = positive_rate)]
    pub flows_per_minute: f64,
    /// Idle time after which a spoke-to-spoke tunnel is torn down.
    #[arg(long = "idle-timeout", default_value = "2m", value_parser = idle)]
    pub idle_timeout: Duration,
    /// Seed of every random choice; the same seed gives the same report.
    #[arg(long, default_value = "1")]
    pub seed: u64,
    /// One-way underlay latency.
    #[arg(long, default_value = "20ms", value_parser = duration)]
    pub latency: Duration,
    /// Probability that an underlay datagram is dropped (0..1).
    #[arg(long, default_value = "0", value_parser = probability)]
    pub loss: f64,
    /// Pick spoke-to-spoke destinations by a Zipf law instead of uniformly.
    #[arg(long)]
    pub zipf: bool,
    /// Packets per flow.
    #[arg(long = "packets-per-flow", default_value = "10")]
    pub packets_per_flow: u32,
    /// Gap between a flow's packets.
    #[arg(long = "packet-interval", default_value = "500ms", value_parser = duration)]
    pub packet_interval: Duration,
    /// Spokes boot at random times within this window.
    #[arg(long = "boot-spread", default_value = "10s", value_parser = duration)]
    pub boot_spread: Duration,
    /// Hubs send at most this many Traffic Indications (phase 3 redirects)
    /// per --max-send-interval (IOS `ip nhrp max-send N every S`).
    #[arg(long = "max-send", default_value_t = dmvpn_config::defaults::NHRP_MAX_SEND)]
    pub max_send: u32,
    /// The window of --max-send, seconds (10..65535).
    #[arg(long = "max-send-interval", default_value_t = dmvpn_config::defaults::NHRP_MAX_SEND_INTERVAL)]
    pub max_send_interval: u32,
    /// IKE Diffie-Hellman group of every node: 19 (ECP-256, default), 20, 14, 15, 16, 5, 2 or 1.
    #[arg(long = "ike-group", default_value = "19", value_parser = dh_group)]
    pub ike_group: u16,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of tunnels and relayed/direct traffic over time.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress bar and no text summary.
    #[arg(long)]
    pub quiet: bool,
}

impl SimArgs {
    pub fn config(&self) -> SimConfig {
        SimConfig {
            spokes: self.spokes,
            hubs: self.hubs,
            duration: self.duration,
            spoke_to_spoke: self.spoke_to_spoke,
            flows_per_minute: self.flows_per_minute,
            idle_timeout: self.idle_timeout,
            seed: self.seed,
            latency: self.latency,
            loss: self.loss,
            zipf: self.zipf,
            packets_per_flow: self.packets_per_flow,
            packet_interval: self.packet_interval,
            packet_size: 100,
            boot_spread: self.boot_spread,
            samples: 120,
            max_send: self.max_send,
            max_send_interval: self.max_send_interval,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct NetnsArgs {
    /// Number of spokes (each with a LAN host behind it).
    #[arg(long, default_value = "3", value_parser = count)]
    pub spokes: usize,
    /// How long to run traffic.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub duration: Duration,
    /// Probability that a flow goes to another spoke's LAN (0..1).
    #[arg(long = "spoke-to-spoke", default_value = "0.2", value_parser = probability)]
    pub spoke_to_spoke: f64,
    /// New flows per minute per spoke.
    #[arg(long = "flows-per-minute", default_value = "6", value_parser = positive_rate)]
    pub flows_per_minute: f64,
    /// Idle time after which a spoke-to-spoke tunnel is torn down.
    #[arg(long = "idle-timeout", default_value = "60s", value_parser = idle)]
    pub idle_timeout: Duration,
    /// Seed of the traffic pattern.
    #[arg(long, default_value = "1")]
    pub seed: u64,
    /// The hub sends at most this many Traffic Indications per
    /// --max-send-interval (IOS `ip nhrp max-send N every S`).
    #[arg(long = "max-send", default_value_t = dmvpn_config::defaults::NHRP_MAX_SEND)]
    pub max_send: u32,
    /// The window of --max-send, seconds (10..65535).
    #[arg(long = "max-send-interval", default_value_t = dmvpn_config::defaults::NHRP_MAX_SEND_INTERVAL)]
    pub max_send_interval: u32,
    /// Directory holding dmvpnd and dmvpnctl (default: next to dmvpn-lab).
    #[arg(long = "bin-dir")]
    pub bin_dir: Option<PathBuf>,
    /// Keep the namespaces' logs and configs in this directory.
    #[arg(long = "work-dir")]
    pub work_dir: Option<PathBuf>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dmvpn-lab").chain(args.iter().copied()))
    }

    #[test]
    fn sim_defaults_and_values() {
        let Cli {
            cmd: Command::Sim(a),
        } = parse(&[
            "sim",
            "--spokes",
            "50",
            "--duration",
            "1h",
            "--latency",
            "5ms",
            "--loss",
            "0.01",
            "--zipf",
        ])
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(a.spokes, 50);
        assert_eq!(a.duration, Duration::from_secs(3600));
        assert_eq!(a.latency, Duration::from_millis(5));
        assert!(a.zipf);
        assert_eq!(a.spoke_to_spoke, 0.2);
    }

    #[test]
    fn bad_values_say_why() {
        let e = parse(&["sim", "--spoke-to-spoke", "1.5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside 0..1"), "{e}");
        let e = parse(&["sim", "--duration", "10 parsecs"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let e = parse(&["sim", "--idle-timeout", "30s"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 60s and 24h"), "{e}");
        let e = parse(&["sim", "--spokes", "0"]).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let e = parse(&["sim", "--flows-per-minute=-2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("above 0"), "{e}");
    }
}
