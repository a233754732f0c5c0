//! Fixed batches of outgoing datagrams: the engine fills them, a driver
//! writes them out (one `sendmmsg` per batch in dmvpnd) and clears them.

use std::net::{Ipv4Addr, SocketAddrV4};

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

    /// Where the `i`-th queued datagram goes.
    pub fn dst(&self, i: usize) -> SocketAddrV4 {
        self.dsts[i]
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

    /// Every buffer, queued or not, in queue order (to finish packets in place).
    pub fn bufs_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        self.bufs.iter_mut().map(|b| &mut b[..])
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

    /// Keeps, from index `from` on, only the datagrams for which `keep`
    /// is true, in order (buffers are swapped, not copied).
    pub fn retain_from(&mut self, from: usize, mut keep: impl FnMut(&[u8]) -> bool) {
        let mut w = from;
        for r in from..self.count {
            if keep(&self.bufs[r][..self.lens[r]]) {
                if w != r {
                    self.bufs.swap(w, r);
                    self.lens[w] = self.lens[r];
                    self.dsts[w] = self.dsts[r];
                }
                w += 1;
            }
        }
        self.count = w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_from_keeps_order_and_the_head() {
        let mut b = SendBatch::new(8, 16);
        let dst = |i: u16| SocketAddrV4::new(Ipv4Addr::LOCALHOST, i);
        for i in 0..6u8 {
            assert!(b.push(&[i; 3], dst(u16::from(i))));
        }
        b.retain_from(2, |p| p[0] % 2 == 1);
        let got: Vec<(u8, u16)> = (0..b.len())
            .map(|i| (b.get(i)[0], b.dst(i).port()))
            .collect();
        assert_eq!(got, vec![(0, 0), (1, 1), (3, 3), (5, 5)]);
        assert!(b.push(&[9; 4], dst(9)));
        assert_eq!((b.len(), b.get(4)), (5, &[9u8; 4][..]));
    }
}
