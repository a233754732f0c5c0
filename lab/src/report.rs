//! Statistics collected during a run, the report (text and JSON) built
//! from them. Everything under [`Report`] except `perf` is a function of
//! the configuration and seed; `perf` (wall/CPU time, memory) is not.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::duration::fmt_duration;
use crate::node::{LabEvent, LabNode, NodeSpec, Role};
use crate::packet::Probe;
use crate::sim::traffic::Dest;
use crate::sim::{Flow, SimConfig};

/// Median and 99th percentile of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(mut v: Vec<u64>) -> Self {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at =
            |q: f64| v[(((v.len() as f64) * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e3;
        Percentiles {
            count: v.len(),
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: *v.last().unwrap() as f64 / 1e3,
        }
    }
}

/// Peak and time-average of a sampled quantity.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeakMean {
    pub peak: f64,
    pub mean: f64,
}

impl PeakMean {
    fn of(v: impl Iterator<Item = f64>) -> Self {
        let (mut peak, mut sum, mut n) = (0f64, 0f64, 0usize);
        for x in v {
            peak = peak.max(x);
            sum += x;
            n += 1;
        }
        PeakMean {
            peak,
            mean: if n == 0 {
                0.0
            } else {
                (sum / n as f64 * 1000.0).round() / 1000.0
            },
        }
    }
}

/// One point of the time series (values over the preceding interval or at its end).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    pub t_s: f64,
    /// Tunnels (peers with IPsec SAs) on all hubs together.
    pub hub_tunnels: usize,
    pub hub_sas: usize,
    /// Spoke-to-spoke tunnels (pairs) up.
    pub spoke_tunnels: usize,
    /// Tunnels of the busiest spoke, and the average over spokes.
    pub spoke_tunnels_max: usize,
    pub spoke_tunnels_mean: f64,
    /// Spoke-to-spoke packets delivered in the interval, relayed by a hub / direct.
    pub relayed: u64,
    pub direct: u64,
    /// Packets delivered to hub LANs in the interval.
    pub to_hub_lan: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Registrations {
    pub spokes: usize,
    pub spokes_registered: usize,
    /// Registration replies received (first registrations and refreshes).
    pub replies: u64,
    /// Boot to first registration reply.
    pub latency: Percentiles,
    /// Virtual time at which the last spoke first registered.
    pub all_registered_at_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Tunnels {
    pub spoke_to_spoke_built: u64,
    pub spoke_to_spoke_torn_down: u64,
    pub spoke_to_spoke_concurrent: PeakMean,
    pub per_spoke_concurrent: PeakMean,
    pub hub_concurrent: PeakMean,
    pub hub_ipsec_sas: PeakMean,
    pub hub_ipsec_sas_at_end: usize,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Traffic {
    pub flows: u64,
    pub flows_spoke_to_spoke: u64,
    pub packets_sent: u64,
    pub packets_delivered: u64,
    pub to_hub_lan: u64,
    pub spoke_to_spoke_relayed: u64,
    pub spoke_to_spoke_direct: u64,
    /// Share of delivered spoke-to-spoke packets that went through a hub.
    pub relayed_share: f64,
    /// Share of all delivered packets the hub forwarded (hub LAN + relayed).
    pub hub_share: f64,
    /// Packets never delivered (sent early enough to have arrived, to a
    /// spoke that had registered).
    pub packets_lost: u64,
    /// Packets sent to a spoke that had not registered yet (still booting):
    /// the hub has no route for them; not counted as lost.
    pub packets_to_unregistered: u64,
    /// Packets delivered later than their path's latency: held during setup.
    pub packets_delayed: u64,
    pub datagrams_on_wire: u64,
    pub datagrams_lost_on_wire: u64,
    pub datagrams_unroutable: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latencies {
    /// First packet of a spoke-to-spoke flow with no tunnel → NHRP
    /// Resolution Reply at the sender (the answering spoke delays it until
    /// IPsec with the sender is up).
    pub resolution: Percentiles,
    /// Same start → IPsec SA with the other spoke at the sender.
    pub tunnel_setup: Percentiles,
    /// Same start → shortcut route installed (traffic goes direct).
    pub shortcut: Percentiles,
    /// End-to-end delivery of spoke-to-spoke packets.
    pub spoke_to_spoke_delivery: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Hub {
    /// Traffic Indications (phase 3 redirects) the hubs sent.
    pub traffic_indications_sent: u64,
    /// Traffic Indications held back by `max_send`: each leaves a flow
    /// relayed through the hub for longer.
    pub traffic_indications_max_send: u64,
    /// Traffic Indications held back because the same flow was just indicated.
    pub traffic_indications_holddown: u64,
    /// Most IPsec SAs completed by the hubs within one virtual second.
    pub peak_ike_handshakes_per_s: u64,
    pub ike_handshakes_completed: u64,
    pub ike_handshakes_started: u64,
    pub datagrams_sent: u64,
}

/// Wall clock, CPU and memory: differs between runs with the same seed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Perf {
    pub wall_s: f64,
    pub cpu_hub_s: f64,
    pub cpu_spokes_s: f64,
    pub cpu_per_spoke_ms: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    pub memory_per_spoke_kib: f64,
    /// The hubs' own heap at the end, with `DMVPN_LAB_HEAP=1` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_heap_bytes: Option<u64>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub config: BTreeMap<String, String>,
    pub ike_policy: String,
    pub registrations: Registrations,
    pub tunnels: Tunnels,
    pub traffic: Traffic,
    pub latency: Latencies,
    pub hub: Hub,
    pub series: Vec<Sample>,
    /// Not deterministic: leave out when comparing runs.
    pub perf: Perf,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The JSON without the `perf` section: equal for equal seeds.
    pub fn deterministic_json(&self) -> String {
        let mut r = self.clone();
        r.perf = Perf::default();
        r.to_json()
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let c = |k: &str| self.config.get(k).cloned().unwrap_or_default();
        let r = &self.registrations;
        let t = &self.tunnels;
        let tr = &self.traffic;
        let l = &self.latency;
        let pc = |p: &Percentiles| {
            if p.count == 0 {
                "n/a".to_string()
            } else {
                format!(
                    "median {:.1} ms, p99 {:.1} ms (n={})",
                    p.median_ms, p.p99_ms, p.count
                )
            }
        };
        let _ = writeln!(
            s,
            "dmvpn-lab sim: {} spokes, {} hub(s), {} virtual, seed {}, latency {}, loss {}",
            c("spokes"),
            c("hubs"),
            c("duration"),
            c("seed"),
            c("latency"),
            c("loss")
        );
        let _ = writeln!(
            s,
            "traffic: {} flows/min per spoke, spoke-to-spoke {}{}, idle timeout {}; IKE policy: {}",
            c("flows_per_minute"),
            c("spoke_to_spoke"),
            if c("zipf") == "true" { " (Zipf)" } else { "" },
            c("idle_timeout"),
            self.ike_policy
        );
        let _ = writeln!(
            s,
            "registrations     {}/{} spokes registered, {} replies, latency {}{}",
            r.spokes_registered,
            r.spokes,
            r.replies,
            pc(&r.latency),
            r.all_registered_at_s
                .map(|x| format!(", all by t={x:.1}s"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "spoke tunnels     {} built, {} torn down; concurrent peak {}, mean {:.2}",
            t.spoke_to_spoke_built,
            t.spoke_to_spoke_torn_down,
            t.spoke_to_spoke_concurrent.peak,
            t.spoke_to_spoke_concurrent.mean
        );
        let _ = writeln!(
            s,
            "per spoke         tunnels peak {}, mean {:.2} (hub tunnels included)",
            t.per_spoke_concurrent.peak, t.per_spoke_concurrent.mean
        );
        let _ = writeln!(
            s,
            "hub               tunnels peak {}, mean {:.1}; IPsec SAs peak {}, mean {:.1}, at end {}",
            t.hub_concurrent.peak,
            t.hub_concurrent.mean,
            t.hub_ipsec_sas.peak,
            t.hub_ipsec_sas.mean,
            t.hub_ipsec_sas_at_end
        );
        let _ = writeln!(
            s,
            "hub IKE           {} handshakes completed, peak {}/s",
            self.hub.ike_handshakes_completed, self.hub.peak_ike_handshakes_per_s
        );
        let _ = writeln!(
            s,
            "hub redirects     {} traffic indications sent, {} held back by max-send {}, {} by holddown",
            self.hub.traffic_indications_sent,
            self.hub.traffic_indications_max_send,
            c("max_send"),
            self.hub.traffic_indications_holddown
        );
        let _ = writeln!(
            s,
            "flows             {} ({} spoke-to-spoke); packets {} sent, {} delivered, {} lost, {} delayed by setup, {} to spokes still booting",
            tr.flows,
            tr.flows_spoke_to_spoke,
            tr.packets_sent,
            tr.packets_delivered,
            tr.packets_lost,
            tr.packets_delayed,
            tr.packets_to_unregistered
        );
        let _ = writeln!(
            s,
            "spoke-to-spoke    {} relayed by hub, {} direct: relayed share {:.1}%; hub forwarded {:.1}% of all traffic",
            tr.spoke_to_spoke_relayed,
            tr.spoke_to_spoke_direct,
            tr.relayed_share * 100.0,
            tr.hub_share * 100.0
        );
        let _ = writeln!(s, "resolution        {}", pc(&l.resolution));
        let _ = writeln!(s, "tunnel setup      {}", pc(&l.tunnel_setup));
        let _ = writeln!(s, "shortcut route    {}", pc(&l.shortcut));
        let _ = writeln!(s, "s2s delivery      {}", pc(&l.spoke_to_spoke_delivery));
        let _ = writeln!(
            s,
            "underlay          {} datagrams, {} dropped by loss, {} unroutable",
            tr.datagrams_on_wire, tr.datagrams_lost_on_wire, tr.datagrams_unroutable
        );
        let p = &self.perf;
        let _ = writeln!(
            s,
            "perf              wall {:.2}s; CPU hub {:.2}s, spokes {:.2}s ({:.2} ms/spoke); RSS {} → {} MiB, peak {} MiB, {:.1} KiB/spoke",
            p.wall_s,
            p.cpu_hub_s,
            p.cpu_spokes_s,
            p.cpu_per_spoke_ms,
            p.rss_before_kib / 1024,
            p.rss_after_kib / 1024,
            p.peak_rss_kib / 1024,
            p.memory_per_spoke_kib
        );
        if let Some(b) = p.hub_heap_bytes {
            let spokes = self.registrations.spokes_registered.max(1) as f64;
            let _ = writeln!(
                s,
                "hub heap          {:.1} MiB held at the end, {:.2} KiB per registered spoke",
                b as f64 / (1024.0 * 1024.0),
                b as f64 / 1024.0 / spokes
            );
        }
        s
    }
}

fn key(a: usize, b: usize) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Accumulates statistics while the simulation runs.
pub struct Collector {
    hubs: usize,
    policy: String,
    end_us: u64,
    lat_us: u64,
    booted_at: HashMap<usize, u64>,
    registered: HashSet<usize>,
    reg_latency: Vec<u64>,
    reg_replies: u64,
    last_first_reg: u64,
    /// Directed (node, peer) tunnels and shortcuts between spokes.
    s2s_up: HashSet<u64>,
    s2s_pairs: usize,
    built: u64,
    torn: u64,
    pending_res: HashMap<u64, u64>,
    pending_sc: HashMap<u64, u64>,
    sc_latency: Vec<u64>,
    pending_tun: HashMap<u64, u64>,
    res_latency: Vec<u64>,
    tun_latency: Vec<u64>,
    s2s_delivery: Vec<u64>,
    hub_hs_per_s: BTreeMap<u64, u64>,
    hub_hs_started: u64,
    hub_hs_done: u64,
    tr: Traffic,
    interval: Sample,
    series: Vec<Sample>,
    cpu_hub_ns: u64,
    cpu_spoke_ns: u64,
    hub_datagrams: u64,
    sent_counted: u64,
    delivered_counted: u64,
}

impl Collector {
    pub fn new(cfg: &SimConfig, policy: String) -> Self {
        Collector {
            hubs: cfg.hubs,
            policy,
            end_us: cfg.duration.as_micros() as u64,
            lat_us: cfg.latency.as_micros() as u64,
            booted_at: HashMap::new(),
            registered: HashSet::new(),
            reg_latency: Vec::new(),
            reg_replies: 0,
            last_first_reg: 0,
            s2s_up: HashSet::new(),
            s2s_pairs: 0,
            built: 0,
            torn: 0,
            pending_res: HashMap::new(),
            pending_sc: HashMap::new(),
            sc_latency: Vec::new(),
            pending_tun: HashMap::new(),
            res_latency: Vec::new(),
            tun_latency: Vec::new(),
            s2s_delivery: Vec::new(),
            hub_hs_per_s: BTreeMap::new(),
            hub_hs_started: 0,
            hub_hs_done: 0,
            tr: Traffic::default(),
            interval: Sample::default(),
            series: Vec::new(),
            cpu_hub_ns: 0,
            cpu_spoke_ns: 0,
            hub_datagrams: 0,
            sent_counted: 0,
            delivered_counted: 0,
        }
    }

    /// Packets sent this close to the end may still be in flight.
    fn countable(&self, sent_us: u64) -> bool {
        sent_us + 4 * self.lat_us + 2_000_000 < self.end_us
    }

    pub fn cpu(&mut self, role: Role, ns: u64) {
        match role {
            Role::Hub => self.cpu_hub_ns += ns,
            Role::Spoke => self.cpu_spoke_ns += ns,
        }
    }

    pub fn booted(&mut self, now: u64, i: usize) {
        if i >= self.hubs {
            self.booted_at.insert(i, now);
        }
    }

    pub fn datagram(&mut self, role: Role) {
        self.tr.datagrams_on_wire += 1;
        if role == Role::Hub {
            self.hub_datagrams += 1;
        }
    }

    pub fn lost_on_wire(&mut self) {
        self.tr.datagrams_lost_on_wire += 1;
    }

    pub fn unroutable(&mut self) {
        self.tr.datagrams_unroutable += 1;
    }

    pub(crate) fn flow_started(&mut self, _now: u64, _src: usize, dest: Dest, _hubs: usize) {
        self.tr.flows += 1;
        if matches!(dest, Dest::Spoke(_)) {
            self.tr.flows_spoke_to_spoke += 1;
        }
    }

    pub(crate) fn packet_sent(&mut self, now: u64, f: &Flow, hubs: usize) {
        self.tr.packets_sent += 1;
        if let Dest::Spoke(k) = f.dest
            && !self.registered.contains(&(hubs + k))
        {
            self.tr.packets_to_unregistered += 1;
        } else if self.countable(now) {
            self.sent_counted += 1;
        }
        if let Dest::Spoke(k) = f.dest {
            let (a, b) = (f.src, hubs + k);
            if !self.s2s_up.contains(&key(a, b)) {
                self.pending_tun.entry(key(a, b)).or_insert(now);
                self.pending_res.entry(key(a, b)).or_insert(now);
                self.pending_sc.entry(key(a, b)).or_insert(now);
            }
        }
    }

    pub(crate) fn delivered(
        &mut self,
        now: u64,
        _at: usize,
        p: &Probe,
        flows: &[Flow],
        via_hub: bool,
        _hubs: usize,
    ) {
        let Some(f) = flows.get(p.flow as usize) else {
            return;
        };
        self.tr.packets_delivered += 1;
        if self.countable(p.sent_us) {
            self.delivered_counted += 1;
        }
        let took = now.saturating_sub(p.sent_us);
        let expected = match f.dest {
            Dest::Hub(_) => {
                self.tr.to_hub_lan += 1;
                self.interval.to_hub_lan += 1;
                self.lat_us
            }
            Dest::Spoke(_) => {
                self.s2s_delivery.push(took);
                if via_hub {
                    self.tr.spoke_to_spoke_relayed += 1;
                    self.interval.relayed += 1;
                    2 * self.lat_us
                } else {
                    self.tr.spoke_to_spoke_direct += 1;
                    self.interval.direct += 1;
                    self.lat_us
                }
            }
        };
        if took > expected + 1_000 {
            self.tr.packets_delayed += 1;
        }
    }

    pub fn event(&mut self, now: u64, i: usize, e: &LabEvent, peer: Option<usize>, hubs: usize) {
        let spoke_pair = i >= hubs && peer.is_some_and(|j| j >= hubs);
        match e {
            LabEvent::Registered { .. } if i >= hubs => {
                self.reg_replies += 1;
                if self.registered.insert(i) {
                    let b = self.booted_at.get(&i).copied().unwrap_or(0);
                    self.reg_latency.push(now - b);
                    self.last_first_reg = self.last_first_reg.max(now);
                }
            }
            LabEvent::Resolved { .. } if spoke_pair => {
                if let Some(t0) = self.pending_res.remove(&key(i, peer.unwrap())) {
                    self.res_latency.push(now - t0);
                }
            }
            LabEvent::ShortcutUp { .. } if spoke_pair => {
                if let Some(t0) = self.pending_sc.remove(&key(i, peer.unwrap())) {
                    self.sc_latency.push(now - t0);
                }
            }
            LabEvent::TunnelUp { .. } => {
                if i < hubs {
                    self.hub_hs_done += 1;
                    *self.hub_hs_per_s.entry(now / 1_000_000).or_default() += 1;
                } else if spoke_pair {
                    let j = peer.unwrap();
                    if let Some(t0) = self.pending_tun.remove(&key(i, j)) {
                        self.tun_latency.push(now - t0);
                    }
                    if self.s2s_up.insert(key(i, j)) && !self.s2s_up.contains(&key(j, i)) {
                        self.built += 1;
                        self.s2s_pairs += 1;
                    }
                }
            }
            LabEvent::TunnelDown { .. } if spoke_pair => {
                let j = peer.unwrap();
                if self.s2s_up.remove(&key(i, j)) && !self.s2s_up.contains(&key(j, i)) {
                    self.torn += 1;
                    self.s2s_pairs -= 1;
                }
            }
            LabEvent::HandshakeStarted { .. } if i < hubs => self.hub_hs_started += 1,
            _ => {}
        }
    }

    pub fn sample<N: LabNode>(&mut self, now: u64, specs: &[NodeSpec], nodes: &[Option<N>]) {
        let mut s = std::mem::take(&mut self.interval);
        s.t_s = now as f64 / 1e6;
        let (mut sum, mut n) = (0usize, 0usize);
        for (spec, node) in specs.iter().zip(nodes) {
            let Some(node) = node else { continue };
            let c = node.counts();
            match spec.role {
                Role::Hub => {
                    s.hub_tunnels += c.tunnels;
                    s.hub_sas += c.ipsec_sas;
                }
                Role::Spoke => {
                    s.spoke_tunnels_max = s.spoke_tunnels_max.max(c.tunnels);
                    sum += c.tunnels;
                    n += 1;
                }
            }
        }
        s.spoke_tunnels_mean = if n == 0 {
            0.0
        } else {
            (sum as f64 / n as f64 * 1000.0).round() / 1000.0
        };
        s.spoke_tunnels = self.s2s_pairs;
        self.series.push(s);
    }

    pub fn finish<N: LabNode>(
        mut self,
        cfg: &SimConfig,
        wall: Duration,
        mem_before: (u64, u64),
        mem_after: (u64, u64),
        nodes: &[Option<N>],
    ) -> Report {
        let mut config = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            config.insert(k.to_string(), v);
        };
        put("spokes", cfg.spokes.to_string());
        put("hubs", cfg.hubs.to_string());
        put("duration", fmt_duration(cfg.duration));
        put("spoke_to_spoke", cfg.spoke_to_spoke.to_string());
        put("flows_per_minute", cfg.flows_per_minute.to_string());
        put("idle_timeout", fmt_duration(cfg.idle_timeout));
        put("seed", cfg.seed.to_string());
        put("latency", fmt_duration(cfg.latency));
        put("loss", cfg.loss.to_string());
        put("zipf", cfg.zipf.to_string());
        put("packets_per_flow", cfg.packets_per_flow.to_string());
        put("packet_interval", fmt_duration(cfg.packet_interval));
        put("boot_spread", fmt_duration(cfg.boot_spread));
        put(
            "max_send",
            format!("{} every {}s", cfg.max_send, cfg.max_send_interval),
        );
        let mut tr = std::mem::take(&mut self.tr);
        let s2s = tr.spoke_to_spoke_relayed + tr.spoke_to_spoke_direct;
        tr.relayed_share = ratio(tr.spoke_to_spoke_relayed, s2s);
        tr.hub_share = ratio(
            tr.spoke_to_spoke_relayed + tr.to_hub_lan,
            tr.packets_delivered,
        );
        tr.packets_lost = self.sent_counted.saturating_sub(self.delivered_counted);
        let hub_sas_end = nodes[..cfg.hubs]
            .iter()
            .flatten()
            .map(|n| n.counts().ipsec_sas)
            .sum();
        let hub_counts = nodes[..cfg.hubs].iter().flatten().map(|n| n.counts()).fold(
            crate::node::NodeCounts::default(),
            |mut a, c| {
                a.traffic_indications_sent += c.traffic_indications_sent;
                a.traffic_indications_max_send += c.traffic_indications_max_send;
                a.traffic_indications_holddown += c.traffic_indications_holddown;
                a
            },
        );
        let series = std::mem::take(&mut self.series);
        let pm = |f: &dyn Fn(&Sample) -> f64| PeakMean::of(series.iter().map(f));
        let tunnels = Tunnels {
            spoke_to_spoke_built: self.built,
            spoke_to_spoke_torn_down: self.torn,
            spoke_to_spoke_concurrent: pm(&|s| s.spoke_tunnels as f64),
            per_spoke_concurrent: PeakMean {
                peak: series
                    .iter()
                    .map(|s| s.spoke_tunnels_max as f64)
                    .fold(0.0, f64::max),
                mean: PeakMean::of(series.iter().map(|s| s.spoke_tunnels_mean)).mean,
            },
            hub_concurrent: pm(&|s| s.hub_tunnels as f64),
            hub_ipsec_sas: pm(&|s| s.hub_sas as f64),
            hub_ipsec_sas_at_end: hub_sas_end,
        };
        let spokes_registered = self.registered.len();
        let cpu_spokes_s = self.cpu_spoke_ns as f64 / 1e9;
        let rss_delta = mem_after.0.saturating_sub(mem_before.0);
        Report {
            config,
            ike_policy: self.policy.clone(),
            registrations: Registrations {
                spokes: cfg.spokes,
                spokes_registered,
                replies: self.reg_replies,
                latency: Percentiles::of(std::mem::take(&mut self.reg_latency)),
                all_registered_at_s: (spokes_registered == cfg.spokes)
                    .then(|| self.last_first_reg as f64 / 1e6),
            },
            tunnels,
            traffic: tr,
            latency: Latencies {
                resolution: Percentiles::of(std::mem::take(&mut self.res_latency)),
                tunnel_setup: Percentiles::of(std::mem::take(&mut self.tun_latency)),
                shortcut: Percentiles::of(std::mem::take(&mut self.sc_latency)),
                spoke_to_spoke_delivery: Percentiles::of(std::mem::take(&mut self.s2s_delivery)),
            },
            hub: Hub {
                traffic_indications_sent: hub_counts.traffic_indications_sent,
                traffic_indications_max_send: hub_counts.traffic_indications_max_send,
                traffic_indications_holddown: hub_counts.traffic_indications_holddown,
                peak_ike_handshakes_per_s: self.hub_hs_per_s.values().copied().max().unwrap_or(0),
                ike_handshakes_completed: self.hub_hs_done,
                ike_handshakes_started: self.hub_hs_started,
                datagrams_sent: self.hub_datagrams,
            },
            series,
            perf: Perf {
                wall_s: wall.as_secs_f64(),
                cpu_hub_s: self.cpu_hub_ns as f64 / 1e9,
                cpu_spokes_s,
                cpu_per_spoke_ms: cpu_spokes_s * 1e3 / cfg.spokes as f64,
                rss_before_kib: mem_before.0,
                rss_after_kib: mem_after.0,
                peak_rss_kib: mem_after.1,
                memory_per_spoke_kib: rss_delta as f64 / cfg.spokes as f64,
                hub_heap_bytes: crate::heap::counting().then(crate::heap::hub_live_bytes),
            },
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 1e6).round() / 1e6
    }
}
