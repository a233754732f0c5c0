//! Direct underlay sends: complete IPv4 packets (GRE, ESP) handed to the
//! outgoing Ethernet device through a packet socket (`AF_PACKET`,
//! `SOCK_DGRAM`). A raw IP socket costs the kernel a route lookup, the
//! netfilter output hooks and a neighbour lookup for every packet; the
//! packet socket skips them, which on this data plane's hot path is about
//! a third of the kernel's per-packet send work.
//!
//! The kernel's tables stay the authority. The next hop comes from a route
//! lookup (netlink `RTM_GETROUTE`, as `ip route get`) and its link-layer
//! address from the neighbour table (`/proc/thread-self/net/arp`, the
//! calling thread's namespace); both are read again every [`REFRESH`]. The first packet to each destination in each period
//! still goes through the raw socket, so the kernel goes on resolving and
//! confirming that neighbour as if it sent everything. Destinations
//! without a complete neighbour entry, local and non-unicast routes,
//! non-Ethernet devices and packets larger than the device MTU all go
//! through the raw socket.
//!
//! Packets sent this way still pass the device's queueing discipline and
//! show up in captures on the device, but they would skip the host's
//! netfilter output and postrouting hooks: while any are in use
//! ([`egress_hooked`]) every packet goes through the raw socket.
//! `DMVPND_DIRECT_SEND=0` turns this path off.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::netfilter::{NETLINK_NETFILTER, egress_hooked};
use super::netlink::Netlink;
use super::rtnl::RouteLookup;
use super::sockets::{SendBatch, set_buffers};

/// How long a looked-up next hop is used before it is looked up again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How soon a neighbour missing from the kernel's table is looked for
/// again (the kernel resolves it meanwhile, from the packets it sends).
const NEIGHBOUR_RETRY: Duration = Duration::from_millis(50);
/// Messages per `sendmmsg`.
const MAX: usize = 64;
/// `ETH_P_IP`.
const ETH_P_IP: u16 = 0x0800;
/// Complete entry (`ATF_COM`) in `/proc/net/arp`.
const ATF_COM: u32 = 0x2;

/// Whether raw sockets should use the direct path: yes unless
/// `DMVPND_DIRECT_SEND=0` is in the environment.
pub fn wanted() -> bool {
    std::env::var_os("DMVPND_DIRECT_SEND").is_none_or(|v| v != "0")
}

/// Where a packet to one destination leaves: device, next hop's MAC, MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub ifindex: i32,
    pub mac: [u8; 6],
    pub mtu: usize,
}

struct Entry {
    /// Device, next hop and MTU, if the kernel routes `dst` by unicast.
    route: Option<(i32, Ipv4Addr, usize)>,
    hop: Option<Hop>,
    period: u64,
}

/// Next hops by destination, valid for one refresh period.
struct Cache {
    period: u64,
    started: Instant,
    /// Start a new period at the next packet.
    stale: bool,
    /// Complete neighbour entries (address, ifindex) → MAC, read once per
    /// period and again when an address is missing.
    neighbours: Option<HashMap<(Ipv4Addr, i32), [u8; 6]>>,
    neighbours_at: Instant,
    /// Device MTUs by ifindex, read once per period.
    mtus: HashMap<i32, usize>,
    hops: HashMap<Ipv4Addr, Entry>,
    routes: Option<RouteLookup>,
    netfilter: Option<Netlink>,
    /// Netfilter hooks outgoing packets this period: all go through the kernel.
    hooked: bool,
}

/// The direct send path of one raw socket.
pub struct DirectPath {
    fd: AsyncFd<OwnedFd>,
    cache: Mutex<Cache>,
}

/// What one `send_batch` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectReport {
    /// Sent through the packet socket.
    pub direct: usize,
    /// Failed on the packet socket.
    pub failed: usize,
}

impl DirectPath {
    /// Opens the packet socket (needs CAP_NET_RAW). Its protocol is 0, so
    /// it receives nothing.
    pub fn open() -> io::Result<DirectPath> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_buffers(&fd);
        // SAFETY: the OwnedFd owns its descriptor, which stays open until
        // the AsyncFd (and with it the OwnedFd) is dropped.
        let fd = unsafe { AsyncFd::register(fd) }?;
        let mut netfilter = Netlink::open(NETLINK_NETFILTER).ok();
        let hooked = egress_hooked(netfilter.as_mut());
        if hooked {
            tracing::info!(target: "dmvpn::gre", "netfilter output/postrouting hooks present: plain ESP/GRE go through the kernel's IP output");
        }
        Ok(DirectPath {
            fd,
            cache: Mutex::new(Cache {
                period: 0,
                started: Instant::now(),
                stale: false,
                neighbours: None,
                neighbours_at: Instant::now(),
                mtus: HashMap::new(),
                hops: HashMap::new(),
                routes: RouteLookup::open().ok(),
                hooked,
                netfilter,
            }),
        })
    }

    /// Decides, for each packet of `batch[from..from + out.len()]`, whether
    /// it leaves directly (`Some(hop)`) or through the raw socket (`None`).
    pub fn plan(&self, batch: &SendBatch, from: usize, out: &mut [Option<Hop>]) {
        let now = Instant::now();
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.tick(now);
        for (k, slot) in out.iter_mut().enumerate() {
            let pkt = batch.get(from + k);
            *slot = c
                .hop(*batch.dst(from + k).ip(), now)
                .filter(|h| pkt.len() <= h.mtu);
        }
    }

    /// Forgets every next hop (after the device failed a send).
    fn forget(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).stale = true;
    }

    /// Sends `batch[from..to]`, all planned direct with `hops`, through
    /// the packet socket; returns how many went out and how many failed.
    pub async fn send(
        &self,
        batch: &SendBatch,
        from: usize,
        to: usize,
        hops: &[Option<Hop>],
    ) -> io::Result<DirectReport> {
        let mut r = DirectReport::default();
        while from + r.direct + r.failed < to {
            let at = from + r.direct + r.failed;
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sendmmsg_ll(fd.as_raw_fd(), batch, at, to, &hops[at - from..]))
            {
                Ok(Ok(0)) => r.failed += 1,
                Ok(Err(e)) => {
                    r.failed += 1;
                    // The device went away or down, or its MTU shrank: look
                    // every hop up again. A full queue (ENOBUFS) is just a drop.
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENXIO | libc::ENODEV | libc::ENETDOWN | libc::EMSGSIZE)
                    ) {
                        self.forget();
                    }
                }
                Ok(Ok(n)) => r.direct += n,
                Err(_would_block) => continue,
            }
        }
        Ok(r)
    }
}

impl Cache {
    fn tick(&mut self, now: Instant) {
        if self.stale || now.duration_since(self.started) >= REFRESH {
            self.started = now;
            self.stale = false;
            self.period += 1;
            self.neighbours = None;
            self.mtus.clear();
            let keep = self.period.saturating_sub(2);
            self.hops.retain(|_, e| e.period >= keep);
            let hooked = egress_hooked(self.netfilter.as_mut());
            if hooked != self.hooked {
                self.hooked = hooked;
                if hooked {
                    tracing::info!(target: "dmvpn::gre", "netfilter output/postrouting hooks present: plain ESP/GRE go through the kernel's IP output");
                } else {
                    tracing::info!(target: "dmvpn::gre", "no netfilter output hooks: plain ESP/GRE go straight to the NBMA interface");
                }
            }
        }
    }

    /// The next hop to `dst` for this period. The first ask in a period
    /// looks it up again and answers `None`: that packet goes through the
    /// kernel, which keeps the neighbour entry resolved and confirmed.
    fn hop(&mut self, dst: Ipv4Addr, now: Instant) -> Option<Hop> {
        if self.hooked {
            return None;
        }
        match self.hops.get(&dst) {
            Some(e) if e.period == self.period => {
                if e.hop.is_some() {
                    return e.hop;
                }
                // A route but no neighbour yet: the kernel may have
                // resolved it since.
                let (ifindex, next, mtu) = e.route?;
                let mac = self.neighbour(next, ifindex, now)?;
                let hop = Some(Hop { ifindex, mac, mtu });
                if let Some(e) = self.hops.get_mut(&dst) {
                    e.hop = hop;
                }
                hop
            }
            _ => {
                let route = self.route(dst);
                let hop = route.and_then(|(ifindex, next, mtu)| {
                    let mac = self.neighbour(next, ifindex, now)?;
                    Some(Hop { ifindex, mac, mtu })
                });
                self.hops.insert(
                    dst,
                    Entry {
                        route,
                        hop,
                        period: self.period,
                    },
                );
                None
            }
        }
    }

    /// Outgoing device, next hop and device MTU for `dst`.
    fn route(&mut self, dst: Ipv4Addr) -> Option<(i32, Ipv4Addr, usize)> {
        let (ifindex, gateway) = self.routes.as_mut()?.get(dst).ok()??;
        let ifindex = i32::try_from(ifindex).ok()?;
        let mtu = match self.mtus.get(&ifindex) {
            Some(m) => *m,
            None => {
                let m = device_mtu(ifindex)?;
                self.mtus.insert(ifindex, m);
                m
            }
        };
        Some((ifindex, gateway.unwrap_or(dst), mtu))
    }

    /// The MAC of neighbour `next` on `ifindex`, from a table read at most
    /// every [`NEIGHBOUR_RETRY`] while addresses are missing from it.
    fn neighbour(&mut self, next: Ipv4Addr, ifindex: i32, now: Instant) -> Option<[u8; 6]> {
        if let Some(t) = &self.neighbours {
            if let Some(mac) = t.get(&(next, ifindex)) {
                return Some(*mac);
            }
            if now.duration_since(self.neighbours_at) < NEIGHBOUR_RETRY {
                return None;
            }
        }
        let t = std::fs::read_to_string("/proc/thread-self/net/arp")
            .map(|t| parse_arp(&t, if_index))
            .unwrap_or_default();
        let mac = t.get(&(next, ifindex)).copied();
        self.neighbours = Some(t);
        self.neighbours_at = now;
        mac
    }
}

/// Complete Ethernet entries of `/proc/net/arp` text, keyed by address and
/// the device's index (`index` maps a device name to it).
fn parse_arp(text: &str, index: impl Fn(&str) -> Option<i32>) -> HashMap<(Ipv4Addr, i32), [u8; 6]> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [ip, hw_type, flags, mac, _mask, dev] = f[..] else {
            continue;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
        if hw_type != "0x1" || flags & ATF_COM == 0 {
            continue;
        }
        let (Ok(ip), Some(mac), Some(ix)) = (ip.parse::<Ipv4Addr>(), parse_mac(mac), index(dev))
        else {
            continue;
        };
        if mac != [0; 6] {
            out.insert((ip, ix), mac);
        }
    }
    out
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn if_index(name: &str) -> Option<i32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string for the call.
    let ix = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (ix != 0).then_some(ix as i32)
}

fn device_mtu(ifindex: i32) -> Option<usize> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { zeroed() };
    // SAFETY: ifr_name has IF_NAMESIZE bytes, as if_indextoname needs.
    if unsafe { libc::if_indextoname(ifindex as u32, req.ifr_name.as_mut_ptr()) }.is_null() {
        return None;
    }
    // SAFETY: plain socket(2) for the ioctl; closed by OwnedFd.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return None;
    }
    // SAFETY: s is a fresh descriptor.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_ifru.ifru_mtu.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    // SAFETY: the union holds a plain int either way (zeroed, or the MTU).
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    (r == 0).then_some(mtu as usize)
}

/// `sendmmsg` of `batch[from..to]` (at most [`MAX`]) on the packet socket,
/// each to its hop's device and MAC.
fn sendmmsg_ll(
    fd: RawFd,
    batch: &SendBatch,
    from: usize,
    to: usize,
    hops: &[Option<Hop>],
) -> io::Result<usize> {
    let n = (to - from).min(MAX);
    // SAFETY: plain C structs, zero is valid.
    let mut iov: [libc::iovec; MAX] = unsafe { zeroed() };
    let mut names: [libc::sockaddr_ll; MAX] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    for k in 0..n {
        let Some(hop) = hops[k] else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let pkt = batch.get(from + k);
        iov[k] = libc::iovec {
            iov_base: pkt.as_ptr() as *mut _,
            iov_len: pkt.len(),
        };
        let a = &mut names[k];
        a.sll_family = libc::AF_PACKET as u16;
        a.sll_protocol = ETH_P_IP.to_be();
        a.sll_ifindex = hop.ifindex;
        a.sll_halen = 6;
        a.sll_addr[..6].copy_from_slice(&hop.mac);
        let h = &mut msgs[k].msg_hdr;
        h.msg_name = (a as *mut libc::sockaddr_ll).cast();
        h.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        h.msg_iov = &mut iov[k];
        h.msg_iovlen = 1;
    }
    // SAFETY: every message points at live buffers and addresses above;
    // the kernel only reads them.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_table_keeps_complete_ethernet_entries() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.0.0.2         0x1         0x2         02:00:00:00:00:02     *        eth0\n\
                    10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    10.0.0.4         0x1         0x6         02:00:00:00:00:04     *        eth1\n\
                    10.0.0.5         0x200       0x2         02:00:00:00:00:05     *        eth0\n\
                    10.0.0.6         0x1         0x2         02:00:00:00:00:06     *        gone\n\
                    garbage line\n";
        let index = |d: &str| match d {
            "eth0" => Some(2),
            "eth1" => Some(3),
            _ => None,
        };
        let t = parse_arp(text, index);
        assert_eq!(t.len(), 2);
        assert_eq!(t[&("10.0.0.2".parse().unwrap(), 2)], [2, 0, 0, 0, 0, 2]);
        assert_eq!(t[&("10.0.0.4".parse().unwrap(), 3)], [2, 0, 0, 0, 0, 4]);
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("0a:1b:2c:3d:4e:5f"),
            Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f])
        );
        assert_eq!(parse_mac("0a:1b:2c:3d:4e"), None);
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f:00"), None);
        assert_eq!(parse_mac("zz:1b:2c:3d:4e:5f"), None);
    }

    #[test]
    fn route_lookup_answers_for_loopback_as_not_unicast() {
        // 127.0.0.1 is a local route in every namespace: never sent directly.
        let mut nl = RouteLookup::open().expect("netlink route socket");
        assert_eq!(nl.get(Ipv4Addr::LOCALHOST).expect("lookup"), None);
    }

    #[test]
    fn routes_need_unicast_and_a_device() {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
        let mut r = RouteMessage::default();
        r.header.kind = RouteType::Unicast;
        assert_eq!(super::super::rtnl::unicast_hop(&r), None, "no RTA_OIF");
        r.attributes.push(RouteAttribute::Oif(7));
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                10, 0, 0, 1,
            ))));
        assert_eq!(
            super::super::rtnl::unicast_hop(&r),
            Some((7, Some(Ipv4Addr::new(10, 0, 0, 1))))
        );
        r.header.kind = RouteType::Local;
        assert_eq!(super::super::rtnl::unicast_hop(&r), None);
    }
}
