//! A tiny in-memory network of NHRP engines on virtual time.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use dmvpn_nhrp::engine::Password;
use dmvpn_nhrp::{Config, Engine, Event, Instant, NhsConfig, Packet, PacketType};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub const HUB_NBMA: &str = "172.16.0.1";
pub const HUB_TUN: &str = "192.168.1.1";

pub fn hub_cfg() -> Config {
    let mut c = Config::new(ip(HUB_NBMA), ip(HUB_TUN));
    c.tunnel_prefix_len = 24;
    c.server = true;
    c.redirect = true;
    c.authentication = Some(Password::new("cisco123"));
    c.multicast_dynamic = true;
    c
}

pub fn spoke_cfg(n: u8) -> Config {
    let mut c = Config::new(ip(&format!("172.16.0.{n}")), ip(&format!("192.168.1.{n}")));
    c.tunnel_prefix_len = 24;
    c.nhs = vec![NhsConfig {
        protocol: ip(HUB_TUN),
        nbma: ip(HUB_NBMA),
        priority: 0,
    }];
    c.shortcut = true;
    c.authentication = Some(Password::new("cisco123"));
    c.local_prefixes = vec![(ip(&format!("10.{n}.0.0")), 16)];
    c
}

/// A sent packet, as seen on the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub from: IpAddr,
    pub to: IpAddr,
    pub packet: Packet,
}

pub struct Net {
    pub now: Instant,
    pub nodes: Vec<Engine>,
    /// real source NBMA → address seen by others (NAT).
    pub nat: HashMap<IpAddr, IpAddr>,
    /// NBMA addresses whose traffic (both ways) is dropped.
    pub down: HashSet<IpAddr>,
    /// Directed (from real NBMA, to NBMA) links that drop traffic.
    pub blocked: HashSet<(IpAddr, IpAddr)>,
    pub events: Vec<(usize, Event)>,
    pub wire: Vec<Seen>,
}

impl Net {
    pub fn new(cfgs: Vec<Config>) -> Net {
        let now = Instant::ZERO;
        Net {
            now,
            nodes: cfgs.into_iter().map(|c| Engine::new(c, now)).collect(),
            nat: HashMap::new(),
            down: HashSet::new(),
            blocked: HashSet::new(),
            events: Vec::new(),
            wire: Vec::new(),
        }
    }

    pub fn node_for(&self, addr: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| {
            let real = n.config().nbma;
            real == addr || self.nat.get(&real) == Some(&addr)
        })
    }

    pub fn pump(&mut self) {
        loop {
            let mut out = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = n.poll_transmit() {
                    out.push((i, t));
                }
                while let Some(e) = n.poll_event() {
                    self.events.push((i, e));
                }
            }
            if out.is_empty() {
                break;
            }
            for (i, t) in out {
                let real = self.nodes[i].config().nbma;
                let from = *self.nat.get(&real).unwrap_or(&real);
                self.wire.push(Seen {
                    at: self.now,
                    from,
                    to: t.dst_nbma,
                    packet: Packet::parse(&t.payload).expect("we emit valid packets"),
                });
                if self.down.contains(&real)
                    || self.down.contains(&t.dst_nbma)
                    || self.blocked.contains(&(real, t.dst_nbma))
                {
                    continue;
                }
                if let Some(j) = self.node_for(t.dst_nbma) {
                    self.nodes[j].handle(self.now, from, &t.payload);
                }
            }
        }
    }

    pub fn run_until(&mut self, t: Instant) {
        self.pump();
        loop {
            let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    for node in &mut self.nodes {
                        if node.poll_timeout().is_some_and(|x| x <= self.now) {
                            node.handle_timeout(self.now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = t;
    }

    pub fn secs(&mut self, s: u64) {
        let t = self.now + Duration::from_secs(s);
        self.run_until(t);
    }

    pub fn take_events(&mut self, node: usize) -> Vec<Event> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(i, _)| *i == node);
        self.events = rest;
        mine.into_iter().map(|(_, e)| e).collect()
    }

    pub fn sent(&self, ty: PacketType) -> Vec<&Seen> {
        self.wire
            .iter()
            .filter(|s| s.packet.packet_type == ty)
            .collect()
    }
}
