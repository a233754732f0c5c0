//! Text shaped like Cisco IOS `show` output, so engineers read it at a glance.
//! Every function returns whole lines, each ending in `\n`, with no trailing
//! blanks. One file per command family; the layouts follow IOS 15 captures.

mod dmvpn;
mod ipsec;
mod isakmp;
#[cfg(feature = "metrics")]
pub mod metrics;
mod nhrp;
mod reload;
mod session;

pub use dmvpn::{dmvpn, dmvpn_detail};
pub use ipsec::ipsec_sa;
pub use isakmp::{isakmp_sa, isakmp_sa_detail};
pub use nhrp::{nhrp, nhrp_brief, nhrp_traffic, nhs};
pub use reload::reload;
pub use session::{crypto_session, crypto_session_detail};

use crate::proto::*;
use dmvpn_wire::prefix::netmask_v4;
use std::net::IpAddr;

/// Which rendering of a reply: IOS shows the same state plain, with
/// `detail` or with `brief`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Plain,
    Detail,
    Brief,
}

/// Text for any reply in its plain view (what `dmvpnctl` prints without
/// `--json`).
pub fn render(reply: &Reply) -> String {
    render_view(reply, View::Plain)
}

/// Text for a reply in the given view; replies with a single view ignore it.
pub fn render_view(reply: &Reply, view: View) -> String {
    match reply {
        Reply::Nhrp(e) if view == View::Brief => nhrp_brief(e),
        Reply::Nhrp(e) => nhrp(e),
        Reply::NhrpNhs(e) => nhs(e),
        Reply::NhrpTraffic(t) => nhrp_traffic(t),
        Reply::Dmvpn(i) => dmvpn(i),
        Reply::DmvpnDetail(d) => dmvpn_detail(d),
        Reply::IsakmpSa(s) if view == View::Detail => isakmp_sa_detail(s),
        Reply::IsakmpSa(s) => isakmp_sa(s),
        Reply::IpsecSa(r) => ipsec_sa(r),
        Reply::CryptoSession(s) if view == View::Detail => crypto_session_detail(s),
        Reply::CryptoSession(s) => crypto_session(s),
        // IOS's `clear` commands print nothing.
        Reply::Cleared { .. } => String::new(),
        Reply::Stats(s) => crate::stats::render(s),
        Reply::Debug { target, on } => format!(
            "{} debugging is {}\n",
            target.ios_name(),
            if *on { "on" } else { "off" }
        ),
        Reply::Reloaded(r) => reload(r),
    }
}

/// IOS's elapsed-time format: `00:01:23` under a day, then `1d02h`,
/// `2w3d`, `1y4w`.
pub fn duration(secs: u64) -> String {
    const DAY: u64 = 86_400;
    const WEEK: u64 = 7 * DAY;
    const YEAR: u64 = 52 * WEEK;
    if secs < DAY {
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else if secs < WEEK {
        format!("{}d{:02}h", secs / DAY, secs % DAY / 3600)
    } else if secs < YEAR {
        format!("{}w{}d", secs / WEEK, secs % WEEK / DAY)
    } else {
        format!("{}y{}w", secs / YEAR, secs % YEAR / WEEK)
    }
}

/// `0x1A2B3C4D(439041101)`; IOS does not pad the hex digits.
pub fn spi(spi: u32) -> String {
    format!("0x{spi:X}({spi})")
}

/// Strips trailing blanks from every line (column padding at line ends).
fn trim_lines(s: String) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Interfaces in first-seen order, with their items.
fn group_by_interface<'a, T>(
    items: &'a [T],
    iface: impl Fn(&'a T) -> &'a str,
) -> Vec<(&'a str, Vec<&'a T>)> {
    let mut groups: Vec<(&'a str, Vec<&'a T>)> = Vec::new();
    for it in items {
        let name = iface(it);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(it),
            None => groups.push((name, vec![it])),
        }
    }
    groups
}

/// A dotted mask for IPv4, the prefix length for IPv6.
fn mask_text(addr: IpAddr, prefix_len: u8) -> String {
    match addr {
        IpAddr::V4(_) => std::net::Ipv4Addr::from(netmask_v4(prefix_len)).to_string(),
        IpAddr::V6(_) => prefix_len.to_string(),
    }
}

fn is_host(addr: IpAddr, prefix_len: u8) -> bool {
    prefix_len == if addr.is_ipv4() { 32 } else { 128 }
}
