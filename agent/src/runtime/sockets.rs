//! Underlay sockets: raw IPv4 sockets for GRE (47) and ESP (50) and the
//! UDP 4500 socket for ESP-in-UDP, all non-blocking under tokio's
//! `AsyncFd`, with `recvmmsg`/`sendmmsg` batching (one system call per
//! burst instead of per packet: syscalls, not crypto, are the cost here).
//!
//! Raw sockets use IP_HDRINCL on send so the data plane writes the outer
//! header itself (TOS copied from the inner packet, TTL, DF); on receive
//! an IPv4 raw socket always returns the whole packet, header included.
//!
//! The UDP 4500 socket uses UDP GSO and GRO unless turned off: a run of
//! equal-sized datagrams to one peer leaves as one `UDP_SEGMENT` message
//! (one trip through the stack, cut by the kernel or the NIC), and runs
//! from one peer arrive coalesced (`UDP_GRO`) and are cut here. A kernel
//! without them refuses the socket option or the first GSO message, and
//! the socket goes on one datagram per message.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

pub use dmvpn_node::batch::SendBatch;

use super::direct::DirectPath;

/// Socket buffer size asked for; bursts of full-size packets need room.
const SOCKET_BUFFER: usize = 4 << 20;

/// Largest message handed to the kernel for UDP GSO, and the buffer size
/// a GRO receive batch needs.
pub const GSO_MAX: usize = 65535;
/// Segments per UDP GSO message (the kernel's limit is 64 or 128).
const GSO_SEGMENTS: usize = 64;

/// A batch of receive buffers for `recvmmsg`, allocated once. With UDP
/// GRO one buffer may hold several datagrams; [`RecvBatch::get`] returns
/// them one by one.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    srcs: Vec<SocketAddrV4>,
    /// GRO segment size per buffer (0: one datagram).
    seg: Vec<usize>,
    /// Datagrams: buffer index, offset, length.
    items: Vec<(usize, usize, usize)>,
    msgs: usize,
}

impl RecvBatch {
    /// `n` buffers of `size` bytes each.
    pub fn new(n: usize, size: usize) -> Self {
        RecvBatch {
            bufs: (0..n).map(|_| vec![0u8; size].into_boxed_slice()).collect(),
            lens: vec![0; n],
            srcs: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); n],
            seg: vec![0; n],
            items: Vec::with_capacity(n),
            msgs: 0,
        }
    }

    /// Buffers sized for `sock`: 64 KiB ones (fewer) when it coalesces
    /// datagrams with UDP GRO.
    pub fn for_socket(sock: &DatagramSocket, n: usize, size: usize) -> Self {
        if sock.gro {
            RecvBatch::new((n / 4).max(1), GSO_MAX)
        } else {
            RecvBatch::new(n, size)
        }
    }

    /// Datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `i`-th datagram and its source (port 0 for raw sockets).
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4) {
        let (b, off, len) = self.items[i];
        (&self.bufs[b][off..off + len], self.srcs[b])
    }

    /// Mutable access, for decrypting in place or reusing the buffer.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddrV4) {
        let (b, off, len) = self.items[i];
        (&mut self.bufs[b][off..off + len], self.srcs[b])
    }

    /// Messages the kernel returned in the last call (fewer than
    /// [`RecvBatch::len`] when GRO coalesced some).
    pub fn messages(&self) -> usize {
        self.msgs
    }

    /// Cuts the `msgs` buffers just received into datagrams.
    fn index(&mut self, msgs: usize) {
        self.msgs = msgs;
        self.items.clear();
        for b in 0..msgs {
            let (len, seg) = (self.lens[b], self.seg[b]);
            if seg == 0 || seg >= len {
                self.items.push((b, 0, len));
                continue;
            }
            let mut off = 0;
            while off < len {
                let l = seg.min(len - off);
                self.items.push((b, off, l));
                off += l;
            }
        }
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(s.sin_port),
    )
}

/// Control-message room per message: one `int` (UDP_GRO) or one `u16`
/// (UDP_SEGMENT), 8-byte aligned.
type Cmsg = [u64; 4];

/// One `recvmmsg` call (non-blocking); returns the number of datagrams
/// (GRO-coalesced ones counted once per segment).
fn recvmmsg(fd: RawFd, batch: &mut RecvBatch, gro: bool) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = batch.bufs.len().min(MAX);
    let mut iov: [MaybeUninit<libc::iovec>; MAX] = [const { MaybeUninit::uninit() }; MAX];
    // SAFETY: plain C structs, zero is valid.
    let mut names: [libc::sockaddr_in; MAX] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let mut ctrl: [Cmsg; MAX] = [[0; 4]; MAX];
    for i in 0..n {
        iov[i].write(libc::iovec {
            iov_base: batch.bufs[i].as_mut_ptr().cast(),
            iov_len: batch.bufs[i].len(),
        });
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
        if gro {
            msgs[i].msg_hdr.msg_control = ctrl[i].as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = size_of::<Cmsg>() as _;
        }
    }
    // SAFETY: every pointer refers to live buffers of the stated sizes for the call's duration.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        batch.items.clear();
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    for i in 0..r {
        batch.lens[i] = msgs[i].msg_len as usize;
        batch.srcs[i] = from_sockaddr(&names[i]);
        batch.seg[i] = if gro { gro_size(&msgs[i].msg_hdr) } else { 0 };
    }
    batch.index(r);
    Ok(batch.items.len())
}

/// The UDP_GRO segment size in a received message's control data (0 if none).
fn gro_size(h: &libc::msghdr) -> usize {
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_*
    // macros stay inside it, and the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

/// `sendmmsg` of `batch[from..to]` (non-blocking); returns how many
/// datagrams went out. With `gso`, each run of datagrams to one
/// destination whose sizes are equal (the last may be shorter) becomes one
/// UDP_SEGMENT message; the error of a failed first message comes with
/// the number of datagrams it carried.
fn sendmmsg(
    fd: RawFd,
    batch: &SendBatch,
    from: usize,
    to: usize,
    gso: bool,
) -> Result<usize, (io::Error, usize)> {
    const MAX: usize = 64;
    let mut iov: [MaybeUninit<libc::iovec>; MAX] = [const { MaybeUninit::uninit() }; MAX];
    // SAFETY: plain C structs, zero is valid.
    let mut names: [libc::sockaddr_in; MAX] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    let mut ctrl: [Cmsg; MAX] = [[0; 4]; MAX];
    // Datagrams in each message.
    let mut counts = [0usize; MAX];
    let mut m = 0;
    let mut j = from;
    let end = to.min(from + MAX);
    while j < end {
        let (dst, seg) = (batch.dst(j), batch.get(j).len());
        let mut k = 1;
        let mut total = seg;
        if gso {
            while j + k < end
                && k < GSO_SEGMENTS
                && batch.dst(j + k) == dst
                && batch.get(j + k).len() <= seg
                && total + batch.get(j + k).len() <= GSO_MAX - 28
            {
                total += batch.get(j + k).len();
                k += 1;
                if batch.get(j + k - 1).len() < seg {
                    break;
                }
            }
        }
        for i in 0..k {
            iov[j - from + i].write(libc::iovec {
                iov_base: batch.get(j + i).as_ptr() as *mut _,
                iov_len: batch.get(j + i).len(),
            });
        }
        names[m] = sockaddr(dst);
        let h = &mut msgs[m].msg_hdr;
        h.msg_name = (&mut names[m] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = iov[j - from].as_mut_ptr();
        h.msg_iovlen = k as _;
        if k > 1 {
            h.msg_control = ctrl[m].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE/LEN are pure size computations.
            h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            // SAFETY: msg_control points at ctrl[m], large enough for one
            // u16 control message; the first header is inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
            }
        }
        counts[m] = k;
        m += 1;
        j += k;
    }
    // SAFETY: as in `recvmmsg`; the kernel only reads the buffers.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), m as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err((io::Error::last_os_error(), counts[0]))
    } else {
        Ok(counts[..r as usize].iter().sum())
    }
}

fn sendto(fd: RawFd, pkt: &[u8], dst: SocketAddrV4) -> io::Result<usize> {
    let sa = sockaddr(dst);
    // SAFETY: pkt and sa are live for the call.
    let r = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            libc::MSG_DONTWAIT,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Asks for [`SOCKET_BUFFER`] bytes each way: with CAP_NET_ADMIN past
/// net.core.{r,w}mem_max (the *FORCE options), else up to those limits.
pub fn set_buffers(s: &impl AsRawFd) {
    let fd = s.as_raw_fd();
    let v = SOCKET_BUFFER as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| {
            // SAFETY: v outlives the call and its size is given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(force) != 0 {
            // Best effort: the kernel caps this at the sysctl limit.
            let _ = set(plain);
        }
    }
}

/// Makes the raw socket behind `handle` ([`DatagramSocket::handle`]) take
/// the packets sent to `local` from now on (bind(2) on a raw socket may
/// be repeated; `local` must be an address of this host).
pub fn rebind_raw(handle: &Socket, local: Ipv4Addr) -> io::Result<()> {
    handle
        .bind(&SocketAddrV4::new(local, 0).into())
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind raw IP socket to {local}: {e}"),
            )
        })
}

/// A non-blocking IPv4 datagram socket (raw or UDP) driven by tokio.
pub struct DatagramSocket {
    fd: AsyncFd<Socket>,
    /// Receives carry UDP_GRO segment sizes.
    gro: bool,
    /// Sends use UDP_SEGMENT; cleared for good the first time the kernel
    /// refuses a GSO message as such (old kernel, a device without
    /// checksum offload, or a path MTU below a segment).
    gso: AtomicBool,
    /// Raw sockets: the packet-socket path most packets leave by.
    direct: Option<DirectPath>,
}

impl DatagramSocket {
    fn new(s: Socket, gro: bool, gso: bool) -> io::Result<Self> {
        s.set_nonblocking(true)?;
        set_buffers(&s);
        // SAFETY: the socket2::Socket owns its descriptor, which stays open
        // and unchanged until the AsyncFd (and with it the Socket) is dropped.
        let fd = unsafe { AsyncFd::register(s) }?;
        Ok(DatagramSocket {
            fd,
            gro,
            gso: AtomicBool::new(gso),
            direct: None,
        })
    }

    /// A raw IPv4 socket for `protocol` (47 GRE, 50 ESP) with IP_HDRINCL:
    /// sends take a complete IPv4 packet, receives return one. With
    /// `direct`, batches leave through a packet socket where the kernel's
    /// tables allow ([`DirectPath`]).
    /// With `local` it takes only packets sent to that address (a node
    /// running several tunnels, each on its own source address).
    pub fn raw_ipv4(protocol: u8, direct: bool, local: Option<Ipv4Addr>) -> io::Result<Self> {
        let cannot = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open raw IP socket for protocol {protocol}: {e} (needs root or CAP_NET_RAW)"
                ),
            )
        };
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(protocol))),
        )
        .map_err(cannot)?;
        s.set_header_included_v4(true)?;
        if let Some(a) = local {
            s.bind(&SocketAddrV4::new(a, 0).into()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind raw IP socket for protocol {protocol} to {a}: {e}"),
                )
            })?;
        }
        let mut sock = Self::new(s, false, false)?;
        if direct {
            sock.direct = Some(DirectPath::open().map_err(cannot)?);
        }
        Ok(sock)
    }

    /// Another handle on this socket's descriptor, for
    /// [`rebind_raw`] from another thread than the one reading it.
    pub fn handle(&self) -> io::Result<Socket> {
        self.fd.get_ref().try_clone()
    }

    /// A UDP socket bound to `bind` (e.g. 0.0.0.0:4500 for NAT-T), one
    /// datagram per message each way.
    pub fn udp(bind: SocketAddrV4) -> io::Result<Self> {
        Self::udp_with(bind, false)
    }

    /// Like [`DatagramSocket::udp`]; with `offload`, UDP GSO on send and
    /// GRO on receive where the kernel has them. A packet capture on the
    /// host then shows runs of ESP datagrams as one super-datagram, which
    /// analysers cannot decrypt or check.
    pub fn udp_with(bind: SocketAddrV4, offload: bool) -> io::Result<Self> {
        Self::udp_opts(bind, offload, false, None)
    }

    /// Like [`DatagramSocket::udp_with`], one of several sockets bound
    /// alike (SO_REUSEPORT), one per forwarding worker: the kernel gives
    /// each remote address and port to one of them.
    pub fn udp_shared(bind: SocketAddrV4, offload: bool) -> io::Result<Self> {
        Self::udp_opts(bind, offload, true, None)
    }

    /// A UDP socket as [`DatagramSocket::udp_with`] (`shared`: as
    /// [`DatagramSocket::udp_shared`]) that takes only datagrams arriving
    /// on `device` and sends only through it (SO_BINDTODEVICE). Sockets
    /// bound to one address of the device take that address's datagrams
    /// first.
    pub fn udp_on_device(
        bind: SocketAddrV4,
        offload: bool,
        shared: bool,
        device: &str,
    ) -> io::Result<Self> {
        Self::udp_opts(bind, offload, shared, Some(device))
    }

    fn udp_opts(
        bind: SocketAddrV4,
        offload: bool,
        reuse_port: bool,
        device: Option<&str>,
    ) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        if let Some(d) = device {
            // Before bind(2): the kernel weighs the device in its port conflicts.
            s.bind_device(Some(d.as_bytes())).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind UDP {bind} to device {d}: {e}"),
                )
            })?;
        }
        s.bind(&bind.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {bind}: {e}")))?;
        let gro = offload && set_int(&s, libc::SOL_UDP, libc::UDP_GRO, 1);
        Self::new(s, gro, offload)
    }

    /// Makes this raw socket receive only the share `index` (of `of`) of
    /// the packets: those whose source address hashes to it. Every raw
    /// socket of a protocol gets a copy of every packet; with one filter
    /// per forwarding worker's socket, each packet reaches one worker,
    /// and all of one peer's reach the same one.
    pub fn take_share(&self, index: usize, of: usize) -> io::Result<()> {
        let filter = share_filter(index as u32, of as u32);
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prog and the filter it points to outlive the call, which
        // copies them; the size is given.
        let r = unsafe {
            libc::setsockopt(
                self.fd.get_ref().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// True when receives may hold GRO-coalesced datagrams (see [`RecvBatch::for_socket`]).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Waits for, then receives, a burst of datagrams (at least one).
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recvmmsg(fd.as_raw_fd(), batch, self.gro)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one datagram (a full IPv4 packet for raw sockets).
    pub async fn send_to(&self, pkt: &[u8], dst: SocketAddrV4) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sendto(fd.as_raw_fd(), pkt, dst)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends every queued datagram (as few `sendmmsg` calls as the kernel
    /// allows) and empties the batch. Datagrams the kernel refuses (e.g.
    /// no route) are counted in the returned error total, not retried.
    /// With a direct path, runs of packets it can take leave through it,
    /// the others through this socket, in queue order.
    pub async fn send_batch(&self, batch: &mut SendBatch) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        match &self.direct {
            None => self.send_range(batch, 0, batch.len(), &mut report).await?,
            Some(d) => {
                let mut plan = [None; 64];
                let mut at = 0;
                while at < batch.len() {
                    let n = (batch.len() - at).min(plan.len());
                    d.plan(batch, at, &mut plan[..n]);
                    let mut i = 0;
                    while i < n {
                        let direct = plan[i].is_some();
                        let mut j = i + 1;
                        while j < n && plan[j].is_some() == direct {
                            j += 1;
                        }
                        if direct {
                            let r = d.send(batch, at + i, at + j, &plan[i..j]).await?;
                            report.sent += r.direct;
                            report.direct += r.direct;
                            report.failed += r.failed;
                        } else {
                            self.send_range(batch, at + i, at + j, &mut report).await?;
                        }
                        i = j;
                    }
                    at += n;
                }
            }
        }
        batch.clear();
        Ok(report)
    }

    /// Sends `batch[from..to]` through this socket, adding to `report`.
    async fn send_range(
        &self,
        batch: &SendBatch,
        from: usize,
        to: usize,
        report: &mut SendReport,
    ) -> io::Result<()> {
        let mut done = from;
        while done < to {
            let mut guard = self.fd.writable().await?;
            let gso = self.gso.load(Ordering::Relaxed);
            let r = guard.try_io(|fd| match sendmmsg(fd.as_raw_fd(), batch, done, to, gso) {
                Err((e, _)) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
                r => Ok(r),
            });
            match r {
                Ok(Ok(Ok(0))) => {
                    report.failed += 1;
                    done += 1;
                }
                Ok(Ok(Ok(n))) => {
                    report.sent += n;
                    done += n;
                }
                Ok(Ok(Err((e, k)))) if k > 1 && refuses_gso(&e) => {
                    // This kernel or path cannot take GSO: one by one from now on.
                    self.gso.store(false, Ordering::Relaxed);
                    tracing::warn!(target: "dmvpn::crypto", "UDP GSO refused ({e}): ESP-in-UDP goes one datagram per message");
                }
                Ok(Ok(Err((_, k)))) => {
                    // Lost like a single datagram (no route, buffer full).
                    report.failed += k;
                    done += k;
                }
                Ok(Err(_)) => {
                    report.failed += 1;
                    done += 1;
                }
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// True for the errors a kernel gives a GSO message it cannot segment
/// (EINVAL: no UDP_SEGMENT or a bad segment count, EIO: the device has no
/// checksum offload, EMSGSIZE: a segment above the path MTU); others
/// (no route, no buffer space) are the datagrams' own and keep GSO on.
fn refuses_gso(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::EMSGSIZE | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// `setsockopt` of one int; true on success.
/// A classic BPF program for a raw IPv4 socket (it sees the IPv4 header
/// at offset 0) that keeps the packets whose source address, folded to
/// mix its bytes, is `index` modulo `of`.
fn share_filter(index: u32, of: u32) -> [libc::sock_filter; 11] {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LD_W_ABS: u16 = 0x20;
    const TAX: u16 = 0x07;
    const RSH_K: u16 = 0x74;
    const XOR_X: u16 = 0xac;
    const MOD_K: u16 = 0x94;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    [
        op(LD_W_ABS, 0, 0, 12),
        op(TAX, 0, 0, 0),
        op(RSH_K, 0, 0, 16),
        op(XOR_X, 0, 0, 0),
        op(TAX, 0, 0, 0),
        op(RSH_K, 0, 0, 8),
        op(XOR_X, 0, 0, 0),
        op(MOD_K, 0, 0, of.max(1)),
        op(JEQ_K, 0, 1, index),
        op(RET_K, 0, 0, u32::MAX),
        op(RET_K, 0, 0, 0),
    ]
}

fn set_int(s: &impl AsRawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: v outlives the call and its size is given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Outcome of [`DatagramSocket::send_batch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub failed: usize,
    /// Of `sent`, how many left through the direct path.
    pub direct: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Ten full datagrams and a short one to one peer, then one to another
    /// port: with GSO/GRO on loopback they travel coalesced and come out
    /// cut back into the same datagrams, in order.
    fn udp_batch_round_trip(offload: bool) -> (usize, usize) {
        rt().block_on(async {
            let lo = Ipv4Addr::LOCALHOST;
            let rx = DatagramSocket::udp_with(SocketAddrV4::new(lo, 0), offload).unwrap();
            let rx2 = DatagramSocket::udp_with(SocketAddrV4::new(lo, 0), offload).unwrap();
            let tx = DatagramSocket::udp_with(SocketAddrV4::new(lo, 0), offload).unwrap();
            let port = |s: &DatagramSocket| match s.fd.get_ref().local_addr().unwrap().as_socket() {
                Some(std::net::SocketAddr::V4(a)) => a.port(),
                _ => unreachable!(),
            };
            let (d1, d2) = (
                SocketAddrV4::new(lo, port(&rx)),
                SocketAddrV4::new(lo, port(&rx2)),
            );
            let mut b = SendBatch::new(16, 2048);
            let mut want = Vec::new();
            for k in 0..11u8 {
                let len = if k == 10 { 300 } else { 1200 };
                let d: Vec<u8> = (0..len).map(|i| k ^ (i as u8)).collect();
                assert!(b.push(&d, d1));
                want.push(d);
            }
            assert!(b.push(b"other peer", d2));
            let r = tx.send_batch(&mut b).await.unwrap();
            assert_eq!((r.sent, r.failed), (12, 0));
            let mut rb = RecvBatch::for_socket(&rx, 64, 2048);
            let mut got = Vec::new();
            let mut msgs = 0;
            while got.len() < want.len() {
                let n = rx.recv_batch(&mut rb).await.unwrap();
                msgs += rb.messages();
                got.extend((0..n).map(|i| rb.get(i).0.to_vec()));
            }
            assert_eq!(got, want);
            let mut rb2 = RecvBatch::for_socket(&rx2, 64, 2048);
            assert_eq!(rx2.recv_batch(&mut rb2).await.unwrap(), 1);
            assert_eq!(rb2.get(0).0, b"other peer");
            (got.len(), msgs)
        })
    }

    #[test]
    fn udp_gso_and_gro_keep_datagrams_intact() {
        let (n, msgs) = udp_batch_round_trip(true);
        // Loopback keeps a GSO message whole for a GRO socket.
        assert!(msgs < n, "{msgs} messages for {n} datagrams");
    }

    /// Runs `f` on a thread in a network namespace of its own whose
    /// loopback is up with MTU 1000 (set over rtnetlink). Needs root.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) moves only this thread into a new namespace.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "unshare(CLONE_NEWNET) needs root: {}",
                io::Error::last_os_error()
            );
            let lo = crate::runtime::rtnl::ifindex("lo").expect("lo");
            crate::runtime::rtnl::set_mtu(lo, 1000).expect("lo mtu");
            crate::runtime::rtnl::set_link_up(lo, true).expect("lo up");
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// Eight 1400-byte datagrams to `dst` from a GSO socket: the report
    /// and whether GSO is still on.
    fn gso_burst(dst: SocketAddrV4) -> (SendReport, bool) {
        rt().block_on(async {
            let tx = DatagramSocket::udp_with(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), true)
                .unwrap();
            let mut b = SendBatch::new(8, 2048);
            for _ in 0..8 {
                assert!(b.push(&[7u8; 1400], dst));
            }
            let r = tx.send_batch(&mut b).await.unwrap();
            (r, tx.gso.load(Ordering::Relaxed))
        })
    }

    #[test]
    fn gso_refused_by_the_path_falls_back_to_one_datagram_per_message() {
        // Segments above the route's MTU: the kernel refuses the GSO
        // message, and the datagrams leave one by one (fragmented).
        let (r, gso) =
            in_private_netns(|| gso_burst(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 4500)));
        assert_eq!((r.sent, r.failed, gso), (8, 0, false), "{r:?}");
    }

    #[test]
    fn gso_stays_on_when_datagrams_have_no_route() {
        // No route is the datagrams' problem, not GSO's.
        let (r, gso) =
            in_private_netns(|| gso_burst(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 4500)));
        assert_eq!((r.sent, r.failed, gso), (0, 8, true), "{r:?}");
    }

    #[test]
    fn udp_without_offload_one_message_per_datagram() {
        let (n, msgs) = udp_batch_round_trip(false);
        assert_eq!(msgs, n);
    }
}
