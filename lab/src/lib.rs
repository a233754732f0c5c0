//! dmvpn-lab: the 80/20 DMVPN traffic lab.
//!
//! - [`sim`]: a discrete-event simulator that runs nodes implementing
//!   [`node::LabNode`] over a simulated underlay on virtual time;
//!   [`real`] implements that trait with the real `dmvpn_node::Router`.
//! - [`report`]: statistics, text summary, JSON; [`svg`]: the chart.
//! - [`netns`]: the same traffic with real `dmvpnd` daemons in network
//!   namespaces.

pub mod cli;
pub mod cpu;
pub mod duration;
pub mod heap;
pub mod netns;
pub mod node;
pub mod packet;
pub mod progress;
pub mod real;
pub mod report;
pub mod sim;
pub mod svg;
pub mod topology;
