//! What the kernel routing table says about the overlay: networks behind
//! this node (answered in NHRP resolutions) and routes through the tunnel
//! with a next hop (installed by an operator or a routing daemon such as
//! FRR), which tell a hub which spoke owns a LAN.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use tokio::io::unix::AsyncFd;

/// `ip -4 -o route show …` output lines → (prefix, len, via, dev).
fn parse(out: &str) -> Vec<(Ipv4Addr, u8, Option<Ipv4Addr>, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        let Some(dst) = w.next() else { continue };
        let (p, l) = match dst.split_once('/') {
            Some((p, l)) => (p.parse().ok(), l.parse().ok()),
            None if dst == "default" => (Some(Ipv4Addr::UNSPECIFIED), Some(0)),
            None => (dst.parse().ok(), Some(32)),
        };
        let (Some(p), Some(l)) = (p, l) else { continue };
        let mut via = None;
        let mut dev = String::new();
        let rest: Vec<&str> = w.collect();
        for i in 0..rest.len().saturating_sub(1) {
            match rest[i] {
                "via" => via = rest[i + 1].parse().ok(),
                "dev" => dev = rest[i + 1].to_string(),
                _ => {}
            }
        }
        v.push((p, l, via, dev));
    }
    v
}

fn ip_route(args: &[&str]) -> String {
    Command::new("ip")
        .args(["-4", "-o", "route", "show"])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Directly connected networks on other interfaces than the tunnel,
/// except the one holding the NBMA address: the LANs behind this node.
pub fn local_prefixes(tunnel: &str, nbma: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    parse(&ip_route(&["scope", "link"]))
        .into_iter()
        .filter(|(p, l, via, dev)| {
            via.is_none() && dev != tunnel && *l > 0 && !contains(*p, *l, nbma) && !p.is_loopback()
        })
        .map(|(p, l, _, _)| (p, l))
        .collect()
}

/// Routes through `tunnel` that name a next hop.
pub fn tunnel_routes(tunnel: &str) -> Vec<(Ipv4Addr, u8, Ipv4Addr)> {
    parse(&ip_route(&["dev", tunnel]))
        .into_iter()
        .filter_map(|(p, l, via, _)| via.map(|v| (p, l, v)))
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
    let m = if l == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(l.min(32)))
    };
    u32::from(p) & m == u32::from(a) & m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_route_output() {
        let out = "10.3.0.0/24 via 192.168.1.3 dev Tunnel0 \n192.168.1.0/24 dev Tunnel0 proto kernel scope link src 192.168.1.1 \n";
        let r = parse(out);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            (
                "10.3.0.0".parse().unwrap(),
                24,
                Some("192.168.1.3".parse().unwrap()),
                "Tunnel0".into()
            )
        );
        assert_eq!(r[1].2, None);
    }

    /// In a network namespace of its own (this thread only): a route added
    /// with `ip route` wakes the watcher, and the table re-read shows it.
    /// Needs root (CI runs as root); fails without it.
    #[test]
    fn route_change_wakes_the_watcher() {
        std::thread::spawn(|| {
            // SAFETY: unshare(2) affects only this thread's namespaces.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "unshare(CLONE_NEWNET) needs root: {}",
                io::Error::last_os_error()
            );
            let ip = |args: &[&str]| {
                let o = Command::new("ip")
                    .args(args)
                    .output()
                    .expect("ip (iproute2)");
                assert!(o.status.success(), "ip {args:?}: {o:?}");
            };
            ip(&["link", "set", "lo", "up"]);
            ip(&["addr", "add", "10.8.0.1/24", "dev", "lo"]);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let w = RouteWatch::open().expect("netlink route socket");
                assert!(tunnel_routes("lo").is_empty());
                ip(&[
                    "route",
                    "add",
                    "10.9.0.0/24",
                    "via",
                    "10.8.0.2",
                    "dev",
                    "lo",
                ]);
                let n = tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
                    .await
                    .expect("no route notification within 5 s")
                    .expect("netlink receive");
                assert!(n >= 1);
                assert_eq!(
                    tunnel_routes("lo"),
                    vec![("10.9.0.0".parse().unwrap(), 24, "10.8.0.2".parse().unwrap())]
                );
            });
        })
        .join()
        .unwrap();
    }
}
