//! The tunnel interface: a TUN device (layer 3, no packet-information
//! header) carrying inner IPv4/IPv6 packets between the kernel and the
//! data plane. Addresses, MTU and link state are set with ioctls when the
//! device is built; routes through it with the `ip` command.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use tun_rs::{AsyncDevice, DeviceBuilder};

/// Transmit queue length of the TUN interface (kernel default 500).
const TX_QUEUE_LEN: u32 = 4096;

/// How to create the tunnel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name, e.g. `Tunnel0` (at most 15 bytes).
    pub name: String,
    /// IP MTU of the tunnel (IOS `ip mtu`, typically 1400).
    pub mtu: u16,
    /// Tunnel address and prefix length (IOS `ip address`).
    pub ipv4: Option<(Ipv4Addr, u8)>,
}

/// An open TUN device.
pub struct Tun {
    dev: AsyncDevice,
    name: String,
}

impl Tun {
    /// Creates and brings up the interface (needs CAP_NET_ADMIN).
    pub fn open(cfg: &TunConfig) -> io::Result<Tun> {
        // A longer transmit queue absorbs bursts from the kernel while the
        // data plane is busy with the previous batch.
        let mut b = DeviceBuilder::new()
            .tx_queue_len(TX_QUEUE_LEN)
            .name(cfg.name.clone())
            .mtu(cfg.mtu)
            .packet_information(false);
        if let Some((addr, prefix)) = cfg.ipv4 {
            b = b.ipv4(addr, prefix, None);
        }
        let dev = b.enable(true).build_async().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create TUN device {}: {e} (needs root or CAP_NET_ADMIN and /dev/net/tun)", cfg.name))
        })?;
        let name = dev.name().unwrap_or_else(|_| cfg.name.clone());
        Ok(Tun { dev, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one inner packet.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf).await
    }

    /// Reads one packet if one is ready, without waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.try_recv(buf)
    }

    /// Writes one inner packet towards the kernel.
    pub async fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.dev.send(pkt).await
    }

    /// Routes `prefix/len` into this interface (`ip route replace`).
    pub fn add_route(&self, prefix: IpAddr, len: u8) -> io::Result<()> {
        run_ip(&[
            "route",
            "replace",
            &format!("{prefix}/{len}"),
            "dev",
            &self.name,
        ])
    }
}

/// Runs `ip ARGS…`, turning a non-zero exit into an error with its stderr.
pub fn run_ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot run `ip` ({e}); install iproute2"))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
