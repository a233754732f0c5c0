//! What the kernel routing table says about the overlay: networks behind
//! this node (answered in NHRP resolutions) and routes through the tunnel
//! with a next hop (installed by an operator or a routing daemon such as
//! FRR), which tell a hub which spoke owns a LAN.

use dmvpn_wire::Prefix;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

use crate::runtime::rtnl::{self, Route};

/// The main table, or nothing (logged) when the kernel does not answer.
fn main_table() -> Vec<Route> {
    rtnl::main_table().unwrap_or_else(|e| {
        tracing::warn!("cannot read the routing table: {e}");
        Vec::new()
    })
}

/// Directly connected networks on other interfaces than the tunnel,
/// except the one holding the NBMA address: the LANs behind this node.
pub fn local_prefixes(tunnel: &str, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    let tun = rtnl::ifindex(tunnel).ok();
    lan_prefixes(&main_table(), tun, nbma)
}

fn lan_prefixes(table: &[Route], tunnel: Option<u32>, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    table
        .iter()
        .filter(|r| {
            r.link_scope
                && r.gateway.is_none()
                && r.oif != tunnel
                && r.len > 0
                && !contains(r.prefix, r.len, nbma)
                && !r.prefix.is_loopback()
        })
        .map(|r| (r.prefix, r.len))
        .collect()
}

/// Routes through `tunnel` that name a next hop.
pub fn tunnel_routes(tunnel: &str) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    let Ok(tun) = rtnl::ifindex(tunnel) else {
        return Vec::new();
    };
    via_tunnel(&main_table(), tun)
}

fn via_tunnel(table: &[Route], tunnel: u32) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    table
        .iter()
        .filter(|r| r.oif == Some(tunnel))
        .filter_map(|r| r.gateway.map(|g| (r.prefix, r.len, g)))
        .collect()
}

/// The kernel's IPv4 route change notifications (a `NETLINK_ROUTE`
/// socket in the `RTMGRP_IPV4_ROUTE` group): a route a routing daemon or
/// an operator adds or removes is seen at once rather than at the next
/// poll of the table. The messages are not decoded, only counted: the
/// table is re-read (`tunnel_routes`) after each batch.
pub struct RouteWatch {
    fd: AsyncFd<OwnedFd>,
}

impl RouteWatch {
    pub fn open() -> io::Result<RouteWatch> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
        // SAFETY: `sa` is a valid sockaddr_nl of the length given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd keeps its descriptor open and unchanged
        // until the AsyncFd (and with it the OwnedFd) is dropped.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(RouteWatch { fd })
    }

    /// Waits until at least one IPv4 route changed, then drains every
    /// notification queued so far (a burst is one wake-up). A receive
    /// queue overflow (ENOBUFS: changes were lost) also counts as a change.
    pub async fn changed(&self) -> io::Result<usize> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut got = 0usize;
            loop {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(
                        self.fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                    )
                };
                if n >= 0 {
                    got += 1;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => got += 1,
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    _ => return Err(e),
                }
            }
            if got > 0 {
                return Ok(got);
            }
        }
    }
}

fn contains(p: Ipv4Addr, l: u8, a: Ipv4Addr) -> bool {
    Prefix::new(IpAddr::V4(p), l).contains_addr(IpAddr::V4(a))
}
