//! What the harness needs from a node: the node under test sits behind
//! [`LabNode`] so the simulator can be exercised with any implementation.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Virtual time since the start of a run.
pub type SimTime = Duration;

/// How a datagram travels on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Raw IP with this protocol number (47 GRE, 50 ESP).
    Ip(u8),
    /// UDP between these ports (500 IKE, 4500 NAT-T).
    Udp { src_port: u16, dst_port: u16 },
}

/// One underlay (NBMA) datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

/// What a node reports to the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabEvent {
    /// A spoke's registration with a hub was answered.
    Registered {
        nhs: Ipv4Addr,
    },
    /// A successful NHRP Resolution Reply naming this peer's NBMA address arrived.
    Resolved {
        peer: Ipv4Addr,
    },
    /// An NHRP shortcut to a peer's NBMA address was installed / removed.
    ShortcutUp {
        peer: Ipv4Addr,
    },
    ShortcutDown {
        peer: Ipv4Addr,
    },
    /// An IPsec SA pair with a peer was installed / removed.
    TunnelUp {
        peer: Ipv4Addr,
    },
    TunnelDown {
        peer: Ipv4Addr,
    },
    /// An IKE handshake with a peer started (for handshake-rate figures).
    HandshakeStarted {
        peer: Ipv4Addr,
    },
}

/// Something a node hands back after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send on the underlay.
    Send(Datagram),
    /// An inner IP packet for the node's LAN.
    Deliver(Vec<u8>),
    Event(LabEvent),
}

/// Counters a node can be asked for at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Peers with an IPsec SA (tunnels).
    pub tunnels: usize,
    /// IPsec SAs (each direction counts one).
    pub ipsec_sas: usize,
    /// NHRP cache entries.
    pub nhrp_entries: usize,
    /// Traffic Indications (phase 3 redirects) sent.
    pub traffic_indications_sent: u64,
    /// Traffic Indications held back by the `max_send` rate limit.
    pub traffic_indications_max_send: u64,
    /// Traffic Indications held back because the flow was indicated moments ago.
    pub traffic_indications_holddown: u64,
}

/// A DMVPN node driven on virtual time.
pub trait LabNode {
    /// An underlay datagram addressed to this node.
    fn handle_underlay(&mut self, now: SimTime, d: &Datagram);
    /// An inner IP packet from the node's LAN, to be routed into the overlay.
    fn handle_lan(&mut self, now: SimTime, packet: &[u8]);
    /// The deadline returned by [`LabNode::poll_timeout`] has passed.
    fn handle_timeout(&mut self, now: SimTime);
    fn poll_timeout(&self) -> Option<SimTime>;
    fn poll_output(&mut self) -> Option<Output>;
    fn counts(&self) -> NodeCounts;
}

/// The role of a node in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Hub,
    Spoke,
}

/// Addresses of one node in the lab topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub role: Role,
    /// Index among nodes of the same role.
    pub index: usize,
    pub nbma: Ipv4Addr,
    pub tunnel: Ipv4Addr,
    /// LAN prefix (a /24) behind the node.
    pub lan: Ipv4Addr,
}

/// Builds a node for a given spec; `hubs` lists every hub in the lab.
pub trait NodeFactory {
    type Node: LabNode;
    /// Builds a node booting at virtual time `now`.
    fn build(
        &mut self,
        spec: &NodeSpec,
        hubs: &[NodeSpec],
        seed: dmvpn_node::Seed,
        now: SimTime,
    ) -> Result<Self::Node, String>;
    /// Human description of the IKE policy in use (for the report).
    fn policy(&self) -> String;
}
