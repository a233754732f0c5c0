//! The simulator with real nodes: determinism, the 80/20 mix, idle churn
//! and shortcuts taking traffic off the hub.

use std::time::Duration;

use dmvpn_lab::real::RealFactory;
use dmvpn_lab::report::Report;
use dmvpn_lab::sim::{self, SimConfig};

fn run(cfg: &SimConfig) -> Report {
    let mut f = RealFactory::for_sim(cfg);
    sim::run(cfg, &mut f, &mut |_, _| {}).expect("simulation runs")
}

fn base(spokes: usize, minutes: u64) -> SimConfig {
    let mut c = SimConfig::new(spokes, Duration::from_secs(60 * minutes));
    c.flows_per_minute = 2.0;
    c.idle_timeout = Duration::from_secs(60);
    c
}

#[test]
fn same_seed_same_report() {
    let mut c = base(12, 4);
    c.loss = 0.01;
    c.zipf = true;
    c.seed = 7;
    let a = run(&c);
    let b = run(&c);
    assert_eq!(a.deterministic_json(), b.deterministic_json());
    assert_eq!(a.registrations.spokes_registered, 12);
    assert!(a.traffic.spoke_to_spoke_direct > 0);
    c.seed = 8;
    let d = run(&c);
    assert_ne!(a.deterministic_json(), d.deterministic_json());
}

#[test]
fn no_spoke_to_spoke_no_spoke_tunnels() {
    let mut c = base(10, 5);
    c.spoke_to_spoke = 0.0;
    let r = run(&c);
    assert_eq!(r.registrations.spokes_registered, 10);
    assert!(
        r.traffic.packets_delivered > 500,
        "{}",
        r.traffic.packets_delivered
    );
    assert_eq!(r.tunnels.spoke_to_spoke_built, 0);
    assert_eq!(r.traffic.flows_spoke_to_spoke, 0);
    assert_eq!(
        r.traffic.spoke_to_spoke_direct + r.traffic.spoke_to_spoke_relayed,
        0
    );
    // Every spoke only ever has its hub tunnel.
    assert_eq!(r.tunnels.per_spoke_concurrent.peak, 1.0);
    assert_eq!(r.tunnels.hub_concurrent.peak, 10.0);
    assert_eq!(r.traffic.hub_share, 1.0);
    assert_eq!(
        r.traffic.packets_lost, 0,
        "no loss on the underlay, none end to end"
    );
}

#[test]
fn idle_timeout_decides_churn() {
    // Two spokes talking only to each other, a flow every ~2 minutes between them.
    let mut c = base(2, 40);
    c.spoke_to_spoke = 1.0;
    c.flows_per_minute = 0.25;
    c.idle_timeout = Duration::from_secs(60);
    let short = run(&c);
    c.idle_timeout = Duration::from_secs(3 * 3600);
    let long = run(&c);
    assert!(short.traffic.flows > 5);
    assert!(
        short.tunnels.spoke_to_spoke_built >= 3,
        "short idle timeout: {} built",
        short.tunnels.spoke_to_spoke_built
    );
    assert!(short.tunnels.spoke_to_spoke_torn_down >= 2);
    assert_eq!(long.tunnels.spoke_to_spoke_built, 1);
    assert_eq!(long.tunnels.spoke_to_spoke_torn_down, 0);
    // Churn means more traffic goes through the hub while tunnels are rebuilt.
    assert!(short.traffic.spoke_to_spoke_relayed > long.traffic.spoke_to_spoke_relayed);
}

#[test]
fn relayed_share_falls_as_shortcuts_form() {
    let mut c = base(4, 10);
    c.spoke_to_spoke = 1.0;
    c.flows_per_minute = 4.0;
    c.idle_timeout = Duration::from_secs(3600);
    let r = run(&c);
    let n = r.series.len();
    let share = |s: &[dmvpn_lab::report::Sample]| {
        let rel: u64 = s.iter().map(|x| x.relayed).sum();
        let dir: u64 = s.iter().map(|x| x.direct).sum();
        rel as f64 / (rel + dir).max(1) as f64
    };
    let early = share(&r.series[..n / 4]);
    let late = share(&r.series[n / 2..]);
    assert!(early > 0.0, "first packets go through the hub");
    assert!(late < early, "early {early}, late {late}");
    assert_eq!(late, 0.0, "all 6 pairs have shortcuts by then");
    assert_eq!(r.tunnels.spoke_to_spoke_built, 6);
    assert!(r.latency.tunnel_setup.count >= 6);
}

/// The hubs' `max_send` decides how many spoke-to-spoke flows get a
/// redirect: a tight limit holds Traffic Indications back, counted in the
/// report, and more traffic stays relayed through the hub.
#[test]
fn max_send_holds_redirects_back() {
    let mut c = base(30, 5);
    c.spoke_to_spoke = 0.5;
    let default = run(&c);
    c.max_send = 1;
    c.max_send_interval = 30;
    let tight = run(&c);
    assert_eq!(default.hub.traffic_indications_max_send, 0);
    assert!(default.hub.traffic_indications_sent > 10);
    assert!(
        tight.hub.traffic_indications_max_send > 0,
        "{:?}",
        tight.hub
    );
    assert!(tight.hub.traffic_indications_sent < default.hub.traffic_indications_sent);
    assert!(
        tight.traffic.relayed_share > default.traffic.relayed_share,
        "tight {} default {}",
        tight.traffic.relayed_share,
        default.traffic.relayed_share
    );
    assert!(
        tight
            .to_text()
            .contains("held back by max-send 1 every 30s"),
        "{}",
        tight.to_text()
    );
}
