//! The Prometheus view: the `show` snapshots as OpenMetrics text
//! (written by `prometheus-client`), for dmvpnd's `[metrics]` endpoint.

use std::net::IpAddr;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::proto::{
    DmvpnInterface, IpsecSaReport, IsakmpSa, NhrpEntry, NhrpTraffic, NhrpTypeCounts, NhsEntry,
};
use crate::stats::{Histogram, TunnelStats};

/// What one scrape reports: the answers to the `show` requests.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub dmvpn: Vec<DmvpnInterface>,
    pub nhrp: Vec<NhrpEntry>,
    pub nhs: Vec<NhsEntry>,
    pub traffic: Vec<NhrpTraffic>,
    pub isakmp: Vec<IsakmpSa>,
    pub ipsec: Option<IpsecSaReport>,
    pub stats: Vec<TunnelStats>,
}

/// The node's histograms (one per tunnel), written as one OpenMetrics
/// histogram family labelled by interface: the node keeps the buckets,
/// this only encodes them.
#[derive(Debug)]
struct Histograms(Vec<(Labels, Histogram)>);

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, h) in &self.0 {
            let mut buckets: Vec<(f64, u64)> =
                h.buckets.iter().map(|b| (b.le_secs, b.count)).collect();
            let bounded: u64 = buckets.iter().map(|b| b.1).sum();
            // The encoder writes `+Inf` for f64::MAX.
            buckets.push((f64::MAX, h.count.saturating_sub(bounded)));
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn set(f: &Family<Labels, Gauge>, labels: Labels, v: usize) {
    f.get_or_create(&labels)
        .set(i64::try_from(v).unwrap_or(i64::MAX));
}

fn add(f: &Family<Labels, Counter>, labels: Labels, v: u64) {
    f.get_or_create(&labels).inc_by(v);
}

fn ip(a: IpAddr) -> String {
    a.to_string()
}

fn by_type(t: &NhrpTypeCounts) -> [(&'static str, u64); 8] {
    [
        ("resolution_request", t.resolution_request),
        ("resolution_reply", t.resolution_reply),
        ("registration_request", t.registration_request),
        ("registration_reply", t.registration_reply),
        ("purge_request", t.purge_request),
        ("purge_reply", t.purge_reply),
        ("error_indication", t.error_indication),
        ("traffic_indication", t.traffic_indication),
    ]
}

/// The OpenMetrics text of one snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("dmvpn");

    let tunnels = Gauge::<i64>::default();
    tunnels.set(i64::try_from(s.dmvpn.len()).unwrap_or(i64::MAX));
    reg.register("tunnels", "Tunnel interfaces", tunnels);
    let line = gauge(
        &mut reg,
        "tunnel_line_protocol_up",
        "1 while the tunnel's line protocol is up (0: every NHS down, with if_state)",
    );
    for t in &s.dmvpn {
        set(
            &line,
            vec![("interface", t.interface.clone())],
            usize::from(t.line_protocol_up),
        );
    }
    let peers = gauge(
        &mut reg,
        "peers",
        "NHRP peer entries by tunnel and state (show dmvpn)",
    );
    for t in &s.dmvpn {
        for p in &t.peers {
            for e in &p.entries {
                let l = vec![
                    ("interface", t.interface.clone()),
                    ("state", e.state.as_str().to_string()),
                ];
                peers.get_or_create(&l).inc();
            }
        }
    }

    let cache = gauge(&mut reg, "nhrp_cache_entries", "NHRP cache entries by type");
    for e in &s.nhrp {
        let l = vec![
            ("interface", e.interface.clone()),
            ("type", format!("{:?}", e.entry_type).to_lowercase()),
        ];
        cache.get_or_create(&l).inc();
    }

    let nhs_up = gauge(
        &mut reg,
        "nhs_up",
        "1 when the NHS answers our registrations (R in show ip nhrp nhs)",
    );
    let sent = counter(
        &mut reg,
        "nhrp_registrations_sent",
        "Registration requests sent to the NHS",
    );
    let failed = counter(
        &mut reg,
        "nhrp_registrations_failed",
        "Registration requests to the NHS that failed",
    );
    let replies = counter(
        &mut reg,
        "nhrp_registration_replies",
        "Registration replies received from the NHS",
    );
    for n in &s.nhs {
        let l = vec![("interface", n.interface.clone()), ("nhs", ip(n.nhs))];
        set(&nhs_up, l.clone(), usize::from(n.state.is_up()));
        add(&sent, l.clone(), n.requests_sent);
        add(&failed, l.clone(), n.requests_failed);
        add(&replies, l, n.replies_received);
    }

    let packets = counter(
        &mut reg,
        "nhrp_packets",
        "NHRP packets by direction and type (show ip nhrp traffic)",
    );
    let nhrp_drops = counter(&mut reg, "nhrp_drops", "NHRP packets dropped, by reason");
    for t in &s.traffic {
        for (dir, counts) in [("sent", &t.sent), ("received", &t.received)] {
            for (kind, v) in by_type(counts) {
                let l = vec![
                    ("interface", t.interface.clone()),
                    ("direction", dir.to_string()),
                    ("type", kind.to_string()),
                ];
                add(&packets, l, v);
            }
        }
        for c in &t.drops {
            let l = vec![
                ("interface", t.interface.clone()),
                ("reason", c.key.clone()),
            ];
            add(&nhrp_drops, l, c.count);
        }
    }

    let isakmp = gauge(&mut reg, "isakmp_sas", "ISAKMP (IKE phase 1) SAs by state");
    for sa in &s.isakmp {
        let l = vec![("state", sa.state.as_str().to_string())];
        isakmp.get_or_create(&l).inc();
    }

    let ipsec = gauge(&mut reg, "ipsec_sas", "ESP SAs by direction");
    let peer_packets = counter(
        &mut reg,
        "peer_packets",
        "ESP packets to (out) and from (in) each peer",
    );
    let peer_drops = counter(
        &mut reg,
        "peer_drops",
        "ESP packets from each peer dropped, by reason",
    );
    let dp = counter(
        &mut reg,
        "dataplane",
        "Data-plane packet counters of each tunnel (show crypto ipsec sa)",
    );
    let dp_drops = counter(
        &mut reg,
        "dataplane_drops",
        "Packets the data plane dropped, by direction and reason",
    );
    if let Some(r) = &s.ipsec {
        set(&ipsec, vec![("direction", "in".into())], 0);
        set(&ipsec, vec![("direction", "out".into())], 0);
        for p in &r.peers {
            for (dir, sas) in [("in", &p.inbound), ("out", &p.outbound)] {
                let g = ipsec.get_or_create(&vec![("direction", dir.to_string())]);
                g.inc_by(i64::try_from(sas.len()).unwrap_or(i64::MAX));
            }
            let peer = ip(p.current_peer);
            add(
                &peer_packets,
                vec![("peer", peer.clone()), ("direction", "out".into())],
                p.counters.encaps,
            );
            add(
                &peer_packets,
                vec![("peer", peer.clone()), ("direction", "in".into())],
                p.counters.decaps,
            );
            for (reason, v) in [
                ("replay", p.counters.replay_failed),
                ("icv", p.counters.verify_failed),
                ("other", p.counters.recv_errors),
            ] {
                add(
                    &peer_drops,
                    vec![("peer", peer.clone()), ("reason", reason.into())],
                    v,
                );
            }
        }
        for i in &r.interfaces {
            for c in &i.counters {
                let l = vec![
                    ("interface", i.interface.clone()),
                    ("counter", c.key.clone()),
                ];
                add(&dp, l, c.count);
            }
            for (dir, list) in [("out", &i.send_errors), ("in", &i.recv_errors)] {
                for c in list.iter() {
                    let l = vec![
                        ("interface", i.interface.clone()),
                        ("direction", dir.to_string()),
                        ("reason", c.key.clone()),
                    ];
                    add(&dp_drops, l, c.count);
                }
            }
        }
    }

    let peer_bytes = counter(
        &mut reg,
        "peer_bytes",
        "ESP payload bytes to (out) and from (in) each peer",
    );
    if let Some(r) = &s.ipsec {
        for p in &r.peers {
            let peer = ip(p.current_peer);
            for (dir, v) in [("in", p.counters.bytes_in), ("out", p.counters.bytes_out)] {
                add(
                    &peer_bytes,
                    vec![("peer", peer.clone()), ("direction", dir.into())],
                    v,
                );
            }
        }
    }

    let started = counter(
        &mut reg,
        "ike_handshakes_started",
        "IKE negotiations started (phase1: Main or Aggressive Mode; quick_mode), both roles",
    );
    let completed = counter(
        &mut reg,
        "ike_handshakes_completed",
        "IKE negotiations completed",
    );
    let failed_hs = counter(
        &mut reg,
        "ike_handshakes_failed",
        "IKE negotiations failed, by reason",
    );
    let mut latency = Vec::new();
    for t in &s.stats {
        for (exchange, h) in [("phase1", &t.phase1), ("quick_mode", &t.quick_mode)] {
            let l = vec![
                ("interface", t.interface.clone()),
                ("exchange", exchange.to_string()),
            ];
            add(&started, l.clone(), h.started);
            add(&completed, l.clone(), h.completed);
            for c in &h.failed {
                let mut l = l.clone();
                l.push(("reason", c.key.clone()));
                add(&failed_hs, l, c.count);
            }
        }
        latency.push((
            vec![("interface", t.interface.clone())],
            t.resolution_latency.clone(),
        ));
    }
    reg.register_with_unit(
        "nhrp_resolution_latency",
        "From an NHRP Resolution Request's first transmission to its reply",
        Unit::Seconds,
        Histograms(latency),
    );

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &reg);
    sorted_samples(&text)
}

/// The labels of a sample line without a histogram's `le`: samples of one
/// series share it.
fn series(line: &str) -> String {
    let labels = line
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or("", |(l, _)| l);
    labels
        .split(',')
        .filter(|l| !l.starts_with("le="))
        .collect::<Vec<_>>()
        .join(",")
}

/// The samples of each family in label order (the registry keeps them in
/// hash order), so that two scrapes of the same state read the same. The
/// samples of one series (a histogram's sum, count and buckets) keep the
/// encoder's order.
fn sorted_samples(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut samples: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            samples.sort_by_cached_key(|s| series(s));
            for s in samples.drain(..) {
                out.push_str(s);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        } else {
            samples.push(line);
        }
    }
    samples.sort_by_cached_key(|s| series(s));
    for s in samples {
        out.push_str(s);
        out.push('\n');
    }
    out
}
