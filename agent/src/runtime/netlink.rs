//! A minimal blocking netlink client for the one kernel query that
//! `netlink-packet-route` cannot express: the nftables chain list
//! (`NETLINK_NETFILTER`, nfnetlink messages), which [`super::netfilter`]
//! reads to know whether the direct send path must stand aside. No crate
//! of the workspace decodes nfnetlink; everything on `NETLINK_ROUTE`
//! (routes, addresses, change notifications) goes through
//! [`super::rtnl`]. A socket with a short receive timeout, and iterators
//! over messages and attributes that stop at the first malformed length
//! instead of trusting it.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `NLMSG_ERROR`, `NLMSG_DONE`.
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// Nested-attribute and byte-order flags carried in an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const HEADER: usize = 16;

/// A netlink socket of one protocol (`NETLINK_ROUTE`, `NETLINK_NETFILTER`).
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open(protocol: libc::c_int) -> io::Result<Netlink> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The kernel answers at once; never hang the data plane on it.
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

    /// Sends one request of `kind` with `flags` and `body` (everything
    /// after the netlink header), then hands each reply message of that
    /// request (type, payload) to `on_msg` until it returns false, a done
    /// message arrives or a non-multipart reply ends. A netlink error
    /// reply becomes the returned error.
    pub fn request(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        mut on_msg: impl FnMut(u16, &[u8]) -> bool,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = Vec::with_capacity(HEADER + body.len());
        req.extend_from_slice(&((HEADER + body.len()) as u32).to_ne_bytes());
        req.extend_from_slice(&kind.to_ne_bytes());
        req.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        // SAFETY: req is live and its length is given.
        if unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 << 10];
        loop {
            // SAFETY: buf is live and writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for m in messages(&buf[..n as usize]) {
                if m.seq != self.seq {
                    continue; // a late answer to an earlier, timed-out request
                }
                if m.kind == NLMSG_ERROR {
                    // struct nlmsgerr: a negative errno, or 0 for an acknowledgement.
                    let err = m
                        .payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return if err < 0 {
                        Err(io::Error::from_raw_os_error(-err))
                    } else {
                        Ok(())
                    };
                }
                if m.kind == NLMSG_DONE {
                    return Ok(());
                }
                if !on_msg(m.kind, m.payload) || m.flags & libc::NLM_F_MULTI as u16 == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// One netlink message.
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

pub fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The messages of one netlink datagram.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + HEADER > buf.len() {
            return None;
        }
        let len = u32_at(buf, off) as usize;
        if len < HEADER || off + len > buf.len() {
            return None;
        }
        let m = Message {
            kind: u16_at(buf, off + 4),
            flags: u16_at(buf, off + 6),
            seq: u32_at(buf, off + 8),
            payload: &buf[off + HEADER..off + len],
        };
        off += (len + 3) & !3;
        Some(m)
    })
}

/// One attribute (header, value, padding) as the kernel expects it.
pub fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize((a.len() + 3) & !3, 0);
    a
}

/// The attributes (type without flags, value) in `buf`.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 4 > buf.len() {
            return None;
        }
        let len = u16_at(buf, off) as usize;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let a = (
            u16_at(buf, off + 2) & NLA_TYPE_MASK,
            &buf[off + 4..off + len],
        );
        off += (len + 3) & !3;
        Some(a)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_walk_padding_and_stop_at_bad_lengths() {
        let mut buf = attr(1, &[1, 2, 3]);
        buf.extend(attr(0x8004, &[9, 9, 9, 9]));
        let got: Vec<(u16, Vec<u8>)> = attrs(&buf).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(got, vec![(1, vec![1, 2, 3]), (4, vec![9, 9, 9, 9])]);
        for cut in 0..buf.len() {
            assert!(attrs(&buf[..cut]).count() <= 2);
        }
        buf[8..10].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(attrs(&buf).count(), 1);
    }

    #[test]
    fn messages_stop_at_bad_lengths() {
        let mut m = vec![0u8; 20];
        m[..4].copy_from_slice(&20u32.to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        m[8..12].copy_from_slice(&5u32.to_ne_bytes());
        let mut two = m.clone();
        two.extend_from_slice(&m);
        let got: Vec<(u16, u32, usize)> = messages(&two)
            .map(|x| (x.kind, x.seq, x.payload.len()))
            .collect();
        assert_eq!(got, vec![(NLMSG_DONE, 5, 4), (NLMSG_DONE, 5, 4)]);
        for cut in 0..two.len() {
            let _ = messages(&two[..cut]).count();
        }
        m[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(messages(&m).count(), 0);
    }
}
