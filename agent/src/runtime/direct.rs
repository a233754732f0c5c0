//! Direct underlay sends: complete IPv4 packets (GRE, ESP) handed to the
//! outgoing Ethernet device through a packet socket (`AF_PACKET`,
//! `SOCK_DGRAM`). A raw IP socket costs the kernel a route lookup, the
//! netfilter output hooks and a neighbour lookup for every packet; the
//! packet socket skips them, which on this data plane's hot path is about
//! a third of the kernel's per-packet send work.
//!
//! The kernel's tables stay the authority. The next hop comes from a route
//! lookup (netlink `RTM_GETROUTE`, as `ip route get`) and its link-layer
//! address from the neighbour table (`/proc/thread-self/net/arp`: the calling thread's namespace); both are read again
//! every [`REFRESH`]. The first packet to each destination in each period
//! still goes through the raw socket, so the kernel goes on resolving and
//! confirming that neighbour as if it sent everything. Destinations
//! without a complete neighbour entry, local and non-unicast routes,
//! non-Ethernet devices and packets larger than the device MTU all go
//! through the raw socket.
//!
//! Packets sent this way still pass the device's queueing discipline and
//! show up in captures on the device, but the host's netfilter output and
//! postrouting hooks (nftables `output`/`postrouting` chains, SNAT on this
//! host) do not see them; `DMVPND_DIRECT_SEND=0` turns this path off.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

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
    netlink: Option<Netlink>,
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
                netlink: Netlink::open().ok(),
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

    /// Forgets every next hop (after a send error on the packet socket).
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
                Ok(Ok(0)) | Ok(Err(_)) => {
                    r.failed += 1;
                    self.forget();
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
        }
    }

    /// The next hop to `dst` for this period. The first ask in a period
    /// looks it up again and answers `None`: that packet goes through the
    /// kernel, which keeps the neighbour entry resolved and confirmed.
    fn hop(&mut self, dst: Ipv4Addr, now: Instant) -> Option<Hop> {
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
        let (ifindex, gateway) = self.netlink.as_mut()?.route(dst).ok()??;
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

/// A netlink route socket for single-route lookups.
struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// `struct rtmsg` (linux/rtnetlink.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RtMsg {
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    kind: u8,
    flags: u32,
}

/// An `RTM_GETROUTE` request for one IPv4 destination.
#[repr(C)]
struct RouteRequest {
    hdr: libc::nlmsghdr,
    rtm: RtMsg,
    attr_len: u16,
    attr_type: u16,
    dst: [u8; 4],
}

const RTN_UNICAST: u8 = 1;

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The kernel answers a route lookup at once; never hang the data plane on it.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: tv outlives the call and its size is given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// The kernel's route to `dst`: outgoing device and gateway, or
    /// `None` when it is not a plain unicast route (local, unreachable…).
    fn route(&mut self, dst: Ipv4Addr) -> io::Result<Option<(i32, Option<Ipv4Addr>)>> {
        self.seq = self.seq.wrapping_add(1);
        let req = RouteRequest {
            hdr: libc::nlmsghdr {
                nlmsg_len: size_of::<RouteRequest>() as u32,
                nlmsg_type: libc::RTM_GETROUTE,
                nlmsg_flags: libc::NLM_F_REQUEST as u16,
                nlmsg_seq: self.seq,
                nlmsg_pid: 0,
            },
            rtm: RtMsg {
                family: libc::AF_INET as u8,
                dst_len: 32,
                ..RtMsg::default()
            },
            attr_len: 8,
            attr_type: libc::RTA_DST,
            dst: dst.octets(),
        };
        // SAFETY: req is live and its size is given.
        let r = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                (&req as *const RouteRequest).cast(),
                size_of::<RouteRequest>(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is live and writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match parse_route_reply(&buf[..n as usize], self.seq) {
                Some(answer) => return Ok(answer),
                None => continue, // a stale reply to an earlier, timed-out request
            }
        }
    }
}

/// The answer to request `seq` in one netlink datagram: `Some(route)` for
/// our reply (`Some(None)` for an error or a non-unicast route), `None`
/// when the datagram answers something else.
fn parse_route_reply(buf: &[u8], seq: u32) -> Option<Option<(i32, Option<Ipv4Addr>)>> {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let hdr = size_of::<libc::nlmsghdr>();
    let mut off = 0;
    while off + hdr <= buf.len() {
        let len = u32_at(buf, off) as usize;
        if len < hdr || off + len > buf.len() {
            return None;
        }
        let (kind, mseq) = (u16_at(buf, off + 4), u32_at(buf, off + 8));
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        if mseq != seq {
            continue;
        }
        if kind == libc::NLMSG_ERROR as u16 {
            return Some(None);
        }
        if kind != libc::RTM_NEWROUTE || msg.len() < hdr + size_of::<RtMsg>() {
            continue;
        }
        if msg[hdr + 7] != RTN_UNICAST {
            return Some(None);
        }
        let (mut oif, mut gw) = (None, None);
        let mut a = hdr + size_of::<RtMsg>();
        while a + 4 <= msg.len() {
            let (alen, atype) = (u16_at(msg, a) as usize, u16_at(msg, a + 2));
            if alen < 4 || a + alen > msg.len() {
                break;
            }
            let v = &msg[a + 4..a + alen];
            match (atype, v.len()) {
                (libc::RTA_OIF, 4) => oif = Some(u32_at(v, 0) as i32),
                (libc::RTA_GATEWAY, 4) => gw = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
                _ => {}
            }
            a += (alen + 3) & !3;
        }
        return Some(oif.map(|o| (o, gw)));
    }
    None
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
        let mut nl = Netlink::open().expect("netlink route socket");
        assert_eq!(nl.route(Ipv4Addr::LOCALHOST).expect("lookup"), None);
    }

    #[test]
    fn route_replies_for_other_requests_are_skipped() {
        let mut msg = vec![0u8; 16 + 12];
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        msg[8..12].copy_from_slice(&7u32.to_ne_bytes());
        msg[16 + 7] = RTN_UNICAST;
        assert_eq!(parse_route_reply(&msg, 8), None);
        assert_eq!(
            parse_route_reply(&msg, 7),
            Some(None),
            "no RTA_OIF: not usable"
        );
        // Truncated or hostile lengths never panic.
        for cut in 0..msg.len() {
            let _ = parse_route_reply(&msg[..cut], 7);
        }
        msg[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse_route_reply(&msg, 7), None);
    }
}
