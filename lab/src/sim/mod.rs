//! The simulator: real nodes (behind [`LabNode`]) on a simulated underlay
//! in virtual time. Datagrams arrive after a fixed latency or are dropped
//! with a given probability; node timers come from `poll_timeout`; flows
//! come from [`traffic::Traffic`]. All randomness is seeded, so a seed
//! gives one run and one report.

pub mod queue;
pub mod traffic;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::node::{Datagram, LabEvent, LabNode, NodeFactory, NodeSpec, Output, Role};
use crate::packet::{self, Probe};
use crate::report::{Collector, Report};
use crate::topology;
use crate::{cpu, heap};
use queue::EventQueue;
use traffic::{Dest, Traffic};

/// Parameters of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub spokes: usize,
    pub hubs: usize,
    pub duration: Duration,
    pub spoke_to_spoke: f64,
    pub flows_per_minute: f64,
    pub idle_timeout: Duration,
    pub seed: u64,
    pub latency: Duration,
    pub loss: f64,
    pub zipf: bool,
    pub packets_per_flow: u32,
    pub packet_interval: Duration,
    pub packet_size: usize,
    /// Spokes boot at a uniformly random time in `[0, boot_spread)`.
    pub boot_spread: Duration,
    /// Number of points in the time series.
    pub samples: u32,
    /// Hubs send at most `max_send` Traffic Indications per
    /// `max_send_interval` seconds (IOS `ip nhrp max-send N every S`).
    pub max_send: u32,
    pub max_send_interval: u32,
}

impl SimConfig {
    pub fn new(spokes: usize, duration: Duration) -> Self {
        SimConfig {
            spokes,
            hubs: 1,
            duration,
            spoke_to_spoke: 0.2,
            flows_per_minute: 1.0,
            idle_timeout: Duration::from_secs(120),
            seed: 1,
            latency: Duration::from_millis(20),
            loss: 0.0,
            zipf: false,
            packets_per_flow: 10,
            packet_interval: Duration::from_millis(500),
            packet_size: 100,
            boot_spread: Duration::from_secs(10),
            samples: 120,
            max_send: dmvpn_config::defaults::NHRP_MAX_SEND,
            max_send_interval: dmvpn_config::defaults::NHRP_MAX_SEND_INTERVAL,
        }
    }

    /// Checks ranges; the error says which value is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.spokes == 0 || self.spokes > topology::MAX_SPOKES {
            return Err(format!(
                "--spokes {}: must be 1..={}",
                self.spokes,
                topology::MAX_SPOKES
            ));
        }
        if self.hubs == 0 || self.hubs > topology::MAX_HUBS {
            return Err(format!(
                "--hubs {}: must be 1..={}",
                self.hubs,
                topology::MAX_HUBS
            ));
        }
        if !(0.0..=1.0).contains(&self.spoke_to_spoke) {
            return Err(format!(
                "--spoke-to-spoke {}: a probability, must be between 0 and 1 (e.g. 0.2)",
                self.spoke_to_spoke
            ));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!(
                "--loss {}: a probability, must be at least 0 and below 1 (e.g. 0.01)",
                self.loss
            ));
        }
        if !(self.flows_per_minute > 0.0 && self.flows_per_minute <= 60_000.0) {
            return Err(format!(
                "--flows-per-minute {}: must be above 0 and at most 60000",
                self.flows_per_minute
            ));
        }
        if self.duration.is_zero() {
            return Err("--duration: must be longer than 0".into());
        }
        if self.idle_timeout.is_zero() {
            return Err("--idle-timeout: must be longer than 0".into());
        }
        if self.packets_per_flow == 0 {
            return Err("--packets-per-flow: must be at least 1".into());
        }
        if !(1..=65_535).contains(&self.max_send) {
            return Err(format!(
                "--max-send {}: must be 1..=65535 Traffic Indications per window",
                self.max_send
            ));
        }
        if !(10..=65_535).contains(&self.max_send_interval) {
            return Err(format!(
                "--max-send-interval {}: must be 10..=65535 seconds",
                self.max_send_interval
            ));
        }
        Ok(())
    }
}

enum Ev {
    Boot(usize),
    Datagram(usize, Datagram),
    Timer(usize),
    FlowStart(usize),
    FlowPacket(u32, u32),
    Sample,
}

/// A flow in progress or done.
pub(crate) struct Flow {
    pub src: usize,
    pub dest: Dest,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Progress callback: (virtual µs done, virtual µs total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Runs one simulation with nodes from `factory`.
pub fn run<F: NodeFactory>(
    cfg: &SimConfig,
    factory: &mut F,
    progress: Progress,
) -> Result<Report, String> {
    cfg.validate()?;
    let wall = Instant::now();
    let mem_before = cpu::memory();
    let hubs: Vec<NodeSpec> = (0..cfg.hubs).map(topology::hub).collect();
    let specs: Vec<NodeSpec> = hubs
        .iter()
        .cloned()
        .chain((0..cfg.spokes).map(topology::spoke))
        .collect();
    let mut seeder = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rng_net = ChaCha8Rng::seed_from_u64(seeder.r#gen());
    let mut rng_traffic = ChaCha8Rng::seed_from_u64(seeder.r#gen());
    let node_seed_base: u64 = seeder.r#gen();
    let traffic = Traffic::new(
        cfg.spokes,
        cfg.hubs,
        cfg.spoke_to_spoke,
        cfg.flows_per_minute,
        cfg.zipf,
    );

    let mut nodes: Vec<Option<F::Node>> = (0..specs.len()).map(|_| None).collect();
    let mut armed: Vec<Option<u64>> = vec![None; specs.len()];
    let mut q: EventQueue<Ev> = EventQueue::new();
    let end = us(cfg.duration);
    let lat = us(cfg.latency);
    let mut col = Collector::new(cfg, factory.policy());

    // Hubs boot first, spokes spread over the boot window.
    for i in 0..specs.len() {
        let at = if i < cfg.hubs || cfg.boot_spread.is_zero() {
            0
        } else {
            rng_traffic.gen_range(0..us(cfg.boot_spread))
        };
        q.push(at, Ev::Boot(i));
    }
    let sample_every = (end / u64::from(cfg.samples.max(1))).max(1);
    q.push(sample_every, Ev::Sample);

    let nbma_index = |a: Ipv4Addr| -> Option<usize> {
        match topology::owner_of_nbma(a)? {
            (Role::Hub, h) if h < cfg.hubs => Some(h),
            (Role::Spoke, k) if k < cfg.spokes => Some(cfg.hubs + k),
            _ => None,
        }
    };
    let mut flows: Vec<Flow> = Vec::new();
    let mut last_progress = 0u64;

    while let Some((now, ev)) = q.pop() {
        if now > end {
            break;
        }
        if now - last_progress > end / 200 {
            progress(now, end);
            last_progress = now;
        }
        let t = Duration::from_micros(now);
        // Which node was called, and from whom a datagram came (for delivered probes).
        let (i, from) = match ev {
            Ev::Boot(i) => {
                let seed = dmvpn_node::Seed::for_lab_node(node_seed_base, i as u64);
                let c0 = cpu::thread_ns();
                let owner = heap::Owner::enter(specs[i].role == Role::Hub);
                let n = factory.build(&specs[i], &hubs, seed, t)?;
                drop(owner);
                col.cpu(specs[i].role, cpu::thread_ns() - c0);
                nodes[i] = Some(n);
                col.booted(now, i);
                if specs[i].role == Role::Spoke {
                    q.push(
                        now + traffic.next_gap_us(&mut rng_traffic),
                        Ev::FlowStart(i),
                    );
                }
                (i, None)
            }
            Ev::Datagram(i, d) => {
                let Some(n) = nodes[i].as_mut() else { continue };
                let c0 = cpu::thread_ns();
                let _owner = heap::Owner::enter(specs[i].role == Role::Hub);
                n.handle_underlay(t, &d);
                col.cpu(specs[i].role, cpu::thread_ns() - c0);
                (i, Some(d.src))
            }
            Ev::Timer(i) => {
                let Some(n) = nodes[i].as_mut() else { continue };
                if armed[i] != Some(now) {
                    continue; // superseded
                }
                armed[i] = None;
                let c0 = cpu::thread_ns();
                let _owner = heap::Owner::enter(specs[i].role == Role::Hub);
                n.handle_timeout(t);
                col.cpu(specs[i].role, cpu::thread_ns() - c0);
                (i, None)
            }
            Ev::FlowStart(i) => {
                q.push(
                    now + traffic.next_gap_us(&mut rng_traffic),
                    Ev::FlowStart(i),
                );
                let dest = traffic.dest(i - cfg.hubs, &mut rng_traffic);
                let id = flows.len() as u32;
                flows.push(Flow { src: i, dest });
                col.flow_started(now, i, dest, cfg.hubs);
                for s in 0..cfg.packets_per_flow {
                    q.push(
                        now + u64::from(s) * us(cfg.packet_interval),
                        Ev::FlowPacket(id, s),
                    );
                }
                continue;
            }
            Ev::FlowPacket(id, seq) => {
                let f = &flows[id as usize];
                // A spoke's hosts are represented by its tunnel address: spokes
                // announce no LAN prefixes over NHRP, so a spoke LAN would
                // only be reachable with a routing protocol on top.
                let src = specs[f.src].tunnel;
                let dst = match f.dest {
                    Dest::Hub(h) => topology::lan_host(&specs[h]),
                    Dest::Spoke(k) => specs[cfg.hubs + k].tunnel,
                };
                let p = packet::build(
                    &Probe {
                        src,
                        dst,
                        flow: id,
                        seq,
                        sent_us: now,
                    },
                    cfg.packet_size,
                );
                col.packet_sent(now, f, cfg.hubs);
                let Some(n) = nodes[f.src].as_mut() else {
                    continue;
                };
                let c0 = cpu::thread_ns();
                let _owner = heap::Owner::enter(specs[f.src].role == Role::Hub);
                n.handle_lan(t, &p);
                col.cpu(specs[f.src].role, cpu::thread_ns() - c0);
                (f.src, None)
            }
            Ev::Sample => {
                col.sample(now, &specs, &nodes);
                if now + sample_every <= end {
                    q.push(now + sample_every, Ev::Sample);
                }
                continue;
            }
        };
        // Drain the node's outputs.
        let n = nodes[i].as_mut().expect("node exists");
        let hub = specs[i].role == Role::Hub;
        while let Some(o) = {
            let _owner = heap::Owner::enter(hub);
            n.poll_output()
        } {
            match o {
                Output::Send(d) => {
                    col.datagram(specs[i].role);
                    if cfg.loss > 0.0 && rng_net.r#gen::<f64>() < cfg.loss {
                        col.lost_on_wire();
                        continue;
                    }
                    match nbma_index(d.dst) {
                        Some(j) => q.push(now + lat, Ev::Datagram(j, d)),
                        None => col.unroutable(),
                    }
                }
                Output::Deliver(p) => {
                    if let Some(pr) = packet::parse(&p) {
                        let via_hub = from.and_then(nbma_index).is_some_and(|j| j < cfg.hubs);
                        col.delivered(now, i, &pr, &flows, via_hub, cfg.hubs);
                    }
                }
                Output::Event(e) => {
                    let peer = match &e {
                        LabEvent::Registered { nhs } => *nhs,
                        LabEvent::Resolved { peer }
                        | LabEvent::ShortcutUp { peer }
                        | LabEvent::ShortcutDown { peer }
                        | LabEvent::TunnelUp { peer }
                        | LabEvent::TunnelDown { peer }
                        | LabEvent::HandshakeStarted { peer } => *peer,
                    };
                    col.event(now, i, &e, nbma_index(peer), cfg.hubs);
                }
            }
        }
        if let Some(dl) = n.poll_timeout() {
            let at = us(dl).max(now);
            if armed[i] != Some(at) {
                armed[i] = Some(at);
                q.push(at, Ev::Timer(i));
            }
        }
    }
    progress(end, end);
    let mem_after = cpu::memory();
    Ok(col.finish(cfg, wall.elapsed(), mem_before, mem_after, &nodes))
}
