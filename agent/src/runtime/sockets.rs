//! Underlay sockets: raw IPv4 sockets for GRE (47) and ESP (50) and the
//! UDP 4500 socket for ESP-in-UDP, all non-blocking under tokio's
//! `AsyncFd`, with `recvmmsg`/`sendmmsg` batching (one system call per
//! burst instead of per packet: syscalls, not crypto, are the cost here).
//!
//! Raw sockets use IP_HDRINCL on send so the data plane writes the outer
//! header itself (TOS copied from the inner packet, TTL, DF); on receive
//! an IPv4 raw socket always returns the whole packet, header included.

use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Socket buffer size asked for; bursts of full-size packets need room.
const SOCKET_BUFFER: usize = 4 << 20;

/// A batch of receive buffers for `recvmmsg`, allocated once.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    srcs: Vec<SocketAddrV4>,
    count: usize,
}

impl RecvBatch {
    /// `n` buffers of `size` bytes each.
    pub fn new(n: usize, size: usize) -> Self {
        RecvBatch {
            bufs: (0..n).map(|_| vec![0u8; size].into_boxed_slice()).collect(),
            lens: vec![0; n],
            srcs: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); n],
            count: 0,
        }
    }

    /// Datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th datagram and its source (port 0 for raw sockets).
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4) {
        (&self.bufs[i][..self.lens[i]], self.srcs[i])
    }

    /// Mutable access, for decrypting in place or reusing the buffer.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddrV4) {
        let n = self.lens[i];
        (&mut self.bufs[i][..n], self.srcs[i])
    }
}

/// A batch of outgoing datagrams for `sendmmsg`, allocated once.
pub struct SendBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    dsts: Vec<SocketAddrV4>,
    count: usize,
}

impl SendBatch {
    pub fn new(n: usize, size: usize) -> Self {
        SendBatch {
            bufs: (0..n).map(|_| vec![0u8; size].into_boxed_slice()).collect(),
            lens: vec![0; n],
            dsts: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); n],
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th queued datagram.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    pub fn is_full(&self) -> bool {
        self.count == self.bufs.len()
    }

    /// Datagrams that can still be queued.
    pub fn free(&self) -> usize {
        self.bufs.len() - self.count
    }

    /// The next free buffer; fill it, then call [`SendBatch::commit`].
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.count).map(|b| &mut b[..])
    }

    /// Queues the first `len` bytes of the buffer returned by `next_buf`.
    pub fn commit(&mut self, len: usize, dst: SocketAddrV4) {
        if self.count < self.bufs.len() {
            self.lens[self.count] = len;
            self.dsts[self.count] = dst;
            self.count += 1;
        }
    }

    /// Copies `pkt` in and queues it; false if the batch is full or `pkt` too big.
    pub fn push(&mut self, pkt: &[u8], dst: SocketAddrV4) -> bool {
        match self.next_buf() {
            Some(b) if b.len() >= pkt.len() => {
                b[..pkt.len()].copy_from_slice(pkt);
                self.commit(pkt.len(), dst);
                true
            }
            _ => false,
        }
    }

    pub fn clear(&mut self) {
        self.count = 0;
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

/// One `recvmmsg` call (non-blocking); returns the number of datagrams.
fn recvmmsg(fd: RawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = batch.bufs.len().min(MAX);
    let mut iov: [MaybeUninit<libc::iovec>; MAX] = [const { MaybeUninit::uninit() }; MAX];
    // SAFETY: plain C structs, zero is valid.
    let mut names: [libc::sockaddr_in; MAX] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    for i in 0..n {
        iov[i].write(libc::iovec {
            iov_base: batch.bufs[i].as_mut_ptr().cast(),
            iov_len: batch.bufs[i].len(),
        });
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
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
        batch.count = 0;
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    for i in 0..r {
        batch.lens[i] = msgs[i].msg_len as usize;
        batch.srcs[i] = from_sockaddr(&names[i]);
    }
    batch.count = r;
    Ok(r)
}

/// `sendmmsg` of `batch[from..]` (non-blocking); returns how many went out.
fn sendmmsg(fd: RawFd, batch: &SendBatch, from: usize) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = (batch.count - from).min(MAX);
    let mut iov: [MaybeUninit<libc::iovec>; MAX] = [const { MaybeUninit::uninit() }; MAX];
    // SAFETY: plain C structs, zero is valid.
    let mut names: [libc::sockaddr_in; MAX] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { zeroed() };
    for i in 0..n {
        let j = from + i;
        iov[i].write(libc::iovec {
            iov_base: batch.bufs[j].as_ptr() as *mut _,
            iov_len: batch.lens[j],
        });
        names[i] = sockaddr(batch.dsts[j]);
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as in `recvmmsg`; the kernel only reads the buffers.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
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

/// A non-blocking IPv4 datagram socket (raw or UDP) driven by tokio.
pub struct DatagramSocket {
    fd: AsyncFd<Socket>,
}

impl DatagramSocket {
    fn new(s: Socket) -> io::Result<Self> {
        s.set_nonblocking(true)?;
        set_buffers(&s);
        // SAFETY: the socket2::Socket owns its descriptor, which stays open
        // and unchanged until the AsyncFd (and with it the Socket) is dropped.
        let fd = unsafe { AsyncFd::register(s) }?;
        Ok(DatagramSocket { fd })
    }

    /// A raw IPv4 socket for `protocol` (47 GRE, 50 ESP) with IP_HDRINCL:
    /// sends take a complete IPv4 packet, receives return one.
    pub fn raw_ipv4(protocol: u8) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(protocol)))).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open raw IP socket for protocol {protocol}: {e} (needs root or CAP_NET_RAW)"))
        })?;
        s.set_header_included_v4(true)?;
        Self::new(s)
    }

    /// A UDP socket bound to `bind` (e.g. 0.0.0.0:4500 for NAT-T).
    pub fn udp(bind: SocketAddrV4) -> io::Result<Self> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.bind(&bind.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {bind}: {e}")))?;
        Self::new(s)
    }

    /// Waits for, then receives, a burst of datagrams (at least one).
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recvmmsg(fd.as_raw_fd(), batch)) {
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
    pub async fn send_batch(&self, batch: &mut SendBatch) -> io::Result<SendReport> {
        let mut sent = 0;
        let mut failed = 0;
        while sent + failed < batch.count {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sendmmsg(fd.as_raw_fd(), batch, sent + failed)) {
                Ok(Ok(0)) | Ok(Err(_)) => failed += 1,
                Ok(Ok(n)) => sent += n,
                Err(_would_block) => continue,
            }
        }
        batch.clear();
        Ok(SendReport { sent, failed })
    }
}

/// Outcome of [`DatagramSocket::send_batch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub failed: usize,
}
