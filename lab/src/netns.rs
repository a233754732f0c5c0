//! `dmvpn-lab netns`: real dmvpnd daemons in network namespaces.

use crate::cli::NetnsArgs;

pub fn run(_a: &NetnsArgs) -> Result<(), String> {
    Err("netns: not implemented yet".into())
}
