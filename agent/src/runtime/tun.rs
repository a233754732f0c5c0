//! The tunnel interface: a TUN device (layer 3, no packet-information
//! header) carrying inner IPv4/IPv6 packets between the kernel and the
//! data plane. Addresses, MTU and link state are set with ioctls when the
//! device is built (before the event loop runs); routes through it over
//! rtnetlink ([`super::rtnl`]).
//!
//! With offload (IFF_VNET_HDR + TUNSETOFFLOAD CSUM/TSO4/TSO6, as
//! wireguard-go does) the kernel hands over TCP super-packets of up to
//! 64 KiB, which [`TunReader`] cuts into MTU-sized segments, and
//! [`TunWriter`] coalesces the segments of one TCP/UDP flow back into
//! super-packets: one system call per burst instead of one per packet, on
//! both sides, and the receiving kernel stack handles one large skb. A
//! kernel that refuses the offloads gets the plain one-packet device.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use tun_rs::{AsyncDevice, DeviceBuilder, GROTable, VIRTIO_NET_HDR_LEN};

/// The route protocol of the routes the kernel derives from the
/// interface's addresses (it puts them back itself).
const KERNEL_PROTOCOL: u8 = 2;
/// Transmit queue length of the TUN interface (kernel default 500).
const TX_QUEUE_LEN: u32 = 4096;
/// Largest read from an offloading TUN: virtio-net header + 64 KiB packet.
const RAW_READ: usize = VIRTIO_NET_HDR_LEN + 65535;
/// Segment buffers per read: a 64 KiB super-packet cut at a small MSS
/// needs many; the kernel's MSS follows the TUN MTU, so 128 is ample.
const SEGMENTS: usize = 128;
/// Byte of the virtio-net header holding the GSO type (0 = none).
const VNET_GSO_TYPE: usize = 1;

/// How to create the tunnel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name, e.g. `Tunnel0` (at most 15 bytes).
    pub name: String,
    /// IP MTU of the tunnel (IOS `ip mtu`, typically 1400).
    pub mtu: u16,
    /// Tunnel address and prefix length (IOS `ip address`).
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// Ask for TSO/checksum offload; the device falls back to one packet
    /// per read/write when the kernel refuses.
    pub offload: bool,
    /// Queues wanted (IFF_MULTI_QUEUE when more than one): one per
    /// forwarding thread, each reading the flows the kernel puts on it.
    pub queues: usize,
}

/// An open TUN device.
pub struct Tun {
    dev: AsyncDevice,
    name: std::cell::RefCell<String>,
    mtu: std::cell::Cell<u16>,
    offload: bool,
    multi_queue: bool,
}

impl Tun {
    /// Creates and brings up the interface (needs CAP_NET_ADMIN).
    pub fn open(cfg: &TunConfig) -> io::Result<Tun> {
        let build = |offload: bool, multi_queue: bool| {
            // A longer transmit queue absorbs bursts from the kernel while
            // the data plane is busy with the previous batch.
            let mut b = DeviceBuilder::new()
                .tx_queue_len(TX_QUEUE_LEN)
                .name(cfg.name.clone())
                .mtu(cfg.mtu)
                .packet_information(false)
                .offload(offload)
                .multi_queue(multi_queue);
            if let Some((addr, prefix)) = cfg.ipv4 {
                b = b.ipv4(addr, prefix, None);
            }
            b.enable(true).build_async()
        };
        let mut multi_queue = cfg.queues > 1;
        let mut r = build(cfg.offload, multi_queue);
        if multi_queue && let Err(e) = &r {
            // A persistent device made without IFF_MULTI_QUEUE keeps its flags.
            tracing::warn!(target: "dmvpn::gre", "{}: no multi-queue TUN ({e}); one forwarding thread", cfg.name);
            multi_queue = false;
            r = build(cfg.offload, false);
        }
        if cfg.offload
            && let Err(e) = &r
        {
            // Old kernels and some sandboxes reject IFF_VNET_HDR or
            // TUNSETOFFLOAD; the plain device still works.
            tracing::info!(target: "dmvpn::gre", "TUN offload unavailable ({e}); one packet per read/write");
            r = build(false, multi_queue);
        }
        let dev = r.map_err(|e| why_no_tun(&cfg.name, e))?;
        let name = dev.name().unwrap_or_else(|_| cfg.name.clone());
        let offload = dev.tcp_gso();
        Ok(Tun {
            dev,
            name: std::cell::RefCell::new(name),
            mtu: std::cell::Cell::new(cfg.mtu),
            offload,
            multi_queue,
        })
    }

    /// Sets the link's carrier (`TUNSETCARRIER`, Linux 5.0): without it
    /// `ip link` shows NO-CARRIER and, with the interface's
    /// `ignore_routes_with_linkdown` set, routes through it give way to
    /// others (IOS's line protocol down).
    pub fn set_carrier(&self, up: bool) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        /// `_IOW('T', 226, int)`.
        const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
        let on: libc::c_int = up.into();
        // SAFETY: ioctl(2) on our own TUN descriptor, reading one int.
        let r = unsafe { libc::ioctl(self.dev.as_raw_fd(), TUNSETCARRIER, &on) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// True when the device has several queues ([`Tun::queue`]).
    pub fn multi_queue(&self) -> bool {
        self.multi_queue
    }

    /// Another queue of this multi-queue device, driven by the runtime
    /// this is called in (`Runtime::enter`).
    pub fn queue(&self) -> io::Result<Tun> {
        Ok(Tun {
            dev: self.dev.try_clone()?,
            name: std::cell::RefCell::new(self.name()),
            mtu: std::cell::Cell::new(self.mtu()),
            offload: self.offload,
            multi_queue: true,
        })
    }

    pub fn name(&self) -> String {
        self.name.borrow().clone()
    }

    /// Renames the interface (over rtnetlink). The kernel renames only a
    /// link that is down, and taking it down drops every route through it:
    /// the IPv4 routes of the main table through it (the tunnel's, NHRP's,
    /// a routing daemon's or the operator's) are read first and put back
    /// once it is up again under its new name; the subnet route comes
    /// back with the link. Its addresses stay.
    pub fn rename(&self, new: &str) -> io::Result<()> {
        use super::rtnl;
        let old = self.name();
        let err =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot rename {old} to {new}: {e}"));
        let index = rtnl::ifindex(&old).map_err(err)?;
        let routes: Vec<rtnl::Route> = rtnl::routes_through(index)
            .map_err(err)?
            .into_iter()
            .filter(|r| r.protocol != KERNEL_PROTOCOL)
            .collect();
        rtnl::set_link_up(index, false).map_err(err)?;
        let renamed = rtnl::set_link_name(index, new);
        let up = rtnl::set_link_up(index, true);
        // Each route is put in front of those of its prefix (`ip route
        // prepend`): last first, so that they end up in the order they had.
        for r in routes.iter().rev() {
            if let Err(e) = rtnl::restore_route(r, index) {
                tracing::warn!(target: "dmvpn::ctl", "cannot put back the route {}/{} into {}: {e}", r.prefix, r.len, if renamed.is_ok() { new } else { &old });
            }
        }
        renamed.map_err(err)?;
        *self.name.borrow_mut() = new.to_string();
        up.map_err(err)
    }

    /// True when the kernel accepted the offloads (virtio-net headers on
    /// every read and write).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu.get()
    }

    /// Records that the interface's MTU is now `mtu` (another queue's
    /// owner set it).
    pub fn assume_mtu(&self, mtu: u16) {
        self.mtu.set(mtu);
    }

    /// Sets the interface's MTU (over rtnetlink). Readers made before
    /// ([`TunReader::new`]) are made again for a larger one.
    pub fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        let index = super::rtnl::ifindex(&self.name())?;
        super::rtnl::set_mtu(index, u32::from(mtu)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot set the MTU of {} to {mtu}: {e}", self.name()),
            )
        })?;
        self.mtu.set(mtu);
        Ok(())
    }

    /// Removes the route of `prefix/len` into this interface that
    /// [`Tun::add_route`] installed (a route already gone is no error).
    pub fn delete_route(&self, prefix: IpAddr, len: u8) -> io::Result<()> {
        let oif = super::rtnl::ifindex(&self.name())?;
        super::rtnl::delete_route(prefix, len, oif, super::rtnl::CONFIGURED_PROTOCOL).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot remove the route {prefix}/{len} into {}: {e}",
                    self.name()
                ),
            )
        })
    }

    /// Routes `prefix/len` into this interface (as `ip route replace`).
    pub fn add_route(&self, prefix: IpAddr, len: u8) -> io::Result<()> {
        let oif = super::rtnl::ifindex(&self.name())?;
        super::rtnl::replace_route(prefix, len, None, oif).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot route {prefix}/{len} into {}: {e}", self.name()),
            )
        })
    }
}

/// Is this TUN error about one bad packet (the kernel's virtio header or
/// a GSO packet we cannot cut), rather than the device itself?
pub fn is_packet_error(e: &io::Error) -> bool {
    e.raw_os_error().is_none() && e.kind() != io::ErrorKind::WouldBlock
}

/// Receive side: one read per call, cut into inner packets.
///
/// This is the one system call per packet left on the forwarding path: a
/// TUN device has no batched read, and the kernel hands over as
/// super-packets only what TSO built (bulk TCP data), not TCP ACKs, ICMP
/// or UDP. Measured with `perf trace -s` on the receiving dmvpnd of
/// `scripts/bench-throughput.sh` case `aes-sha1-w1` (4 TCP streams), 5 s:
/// 624,179 ESP packets came in by 12,616 `recvmmsg` (49 per call) and went
/// to the TUN by 23,002 writes (27 packets per coalesced write), while the
/// 26,077 ACKs going back took 22,194 TUN reads (1.2 per read), 0.47 s of
/// the 2.4 s spent in system calls. More forwarding threads, each on its
/// own queue, are what spreads that cost.
pub struct TunReader {
    raw: Box<[u8]>,
    segs: Vec<Box<[u8]>>,
    sizes: Vec<usize>,
    count: usize,
}

impl TunReader {
    /// Buffers for a device with this MTU.
    pub fn new(tun: &Tun) -> Self {
        let seg = usize::from(tun.mtu()).max(dmvpn_node::engine::BUF_SIZE);
        TunReader {
            raw: vec![0u8; RAW_READ].into_boxed_slice(),
            segs: (0..SEGMENTS)
                .map(|_| vec![0u8; seg].into_boxed_slice())
                .collect(),
            sizes: vec![0; SEGMENTS],
            count: 0,
        }
    }

    /// Makes the buffers again if the device's MTU grew past them.
    pub fn fit(&mut self, tun: &Tun) {
        if self
            .segs
            .first()
            .is_some_and(|s| s.len() < usize::from(tun.mtu()))
        {
            *self = TunReader::new(tun);
        }
    }

    /// Waits for one read; returns the number of inner packets it held
    /// (more than one for an offloaded super-packet).
    pub async fn recv(&mut self, tun: &Tun) -> io::Result<usize> {
        self.count = 0;
        let n = tun
            .dev
            .recv_multiple(&mut self.raw, &mut self.segs, &mut self.sizes, 0)
            .await?;
        self.count = n;
        Ok(n)
    }

    /// Like [`TunReader::recv`] if a packet is ready; `WouldBlock` if not.
    pub fn try_recv(&mut self, tun: &Tun) -> io::Result<usize> {
        self.count = 0;
        let n = tun
            .dev
            .try_recv_multiple(&mut self.raw, &mut self.segs, &mut self.sizes, 0)?;
        self.count = n;
        Ok(n)
    }

    /// Inner packets of the last read.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th inner packet of the last read.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.segs[i][..self.sizes[i]]
    }
}

/// Transmit side: inner packets collected for one `send_multiple`, which
/// coalesces TCP/UDP segments of a flow into super-packets when the
/// device offloads (GRO in user space) and writes the rest one by one.
pub struct TunWriter {
    /// Each buffer: virtio-net header room, then the packet; capacity for
    /// a 64 KiB super-packet so coalescing never reallocates.
    bufs: Vec<Vec<u8>>,
    count: usize,
    gro: GROTable,
    /// Super-packets the last write produced.
    coalesced: usize,
}

impl TunWriter {
    /// Room for `n` packets per write.
    pub fn new(n: usize) -> Self {
        TunWriter {
            bufs: (0..n)
                .map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + 65535))
                .collect(),
            count: 0,
            gro: GROTable::new(),
            coalesced: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count == self.bufs.len()
    }

    /// Queues a copy of `pkt`; false if full or `pkt` is empty.
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        if pkt.is_empty() || self.is_full() {
            return false;
        }
        let b = &mut self.bufs[self.count];
        b.clear();
        b.resize(VIRTIO_NET_HDR_LEN, 0);
        b.extend_from_slice(pkt);
        self.count += 1;
        true
    }

    /// Drops the packet queued last.
    pub fn pop(&mut self) {
        self.count = self.count.saturating_sub(1);
    }

    /// The `i`-th queued packet.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][VIRTIO_NET_HDR_LEN..]
    }

    /// Super-packets (coalesced segments) written by the last [`TunWriter::write`].
    pub fn coalesced(&self) -> usize {
        self.coalesced
    }

    /// Writes everything queued, then empties the queue. Returns the
    /// number of inner packets handed over; an error means at least one
    /// write failed (the others still went out).
    pub async fn write(&mut self, tun: &Tun) -> io::Result<usize> {
        let n = self.count;
        self.count = 0;
        self.coalesced = 0;
        if n == 0 {
            return Ok(0);
        }
        let r = tun
            .dev
            .send_multiple(&mut self.gro, &mut self.bufs[..n], VIRTIO_NET_HDR_LEN)
            .await;
        if tun.offload {
            self.coalesced = self.bufs[..n]
                .iter()
                .filter(|b| b[VNET_GSO_TYPE] != 0)
                .count();
        }
        r.map(|_| n)
    }
}

/// The reason a TUN device could not be created, in the operator's terms
/// (the caller names the device).
fn why_no_tun(name: &str, e: io::Error) -> io::Error {
    let sys = std::path::Path::new("/sys/class/net").join(name);
    let why = if sys.exists() && !sys.join("tun_flags").exists() {
        format!(
            "an interface named {name} exists and is not a TUN device (choose another tunnel name)"
        )
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        format!("{e} (needs root or CAP_NET_ADMIN)")
    } else {
        format!("{e} (is /dev/net/tun there?)")
    };
    io::Error::new(e.kind(), why)
}
