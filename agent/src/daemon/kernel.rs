//! dmvpnd's kernel calls, off the event loop: a worker thread reads the
//! routes through the tunnel, the networks behind the node and the
//! tunnel source's addresses, and
//! installs and removes the routes NHRP taught the router, one job at a
//! time in the order asked; each result comes back into the loop as a
//! [`Done`]. The loop only queues jobs and takes results, so a slow
//! netlink dump (a large table, a busy routing daemon) never holds up
//! packets.
//!
//! A burst of route or address notifications while a read is queued or
//! running costs one more read, after it, not one per notification.
//!
//! The thread is started from the loop's thread and so shares its
//! network namespace; it runs at the lowest CPU priority.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use dmvpn_node::control::KernelRoute;
use tokio::sync::mpsc;

use super::routes;
use super::source::{Reading, Source};
use crate::runtime::rtnl::{self, ROUTE_PROTOCOL};

/// Something for the worker to do.
#[derive(Debug)]
enum Job {
    /// Read the routes through the tunnel that name a next hop.
    TunnelRoutes,
    /// Read the networks behind this node (its NBMA address given).
    LocalPrefixes(Ipv4Addr),
    /// Read what the kernel says about the tunnel source.
    Source(Source),
    /// Install or remove a route into the tunnel ([`ROUTE_PROTOCOL`]).
    Route(KernelRoute),
    /// The tunnel interface has a new name.
    Renamed(String),
    /// Give the tunnel interface address `new` instead of `old`.
    Readdress {
        old: (Ipv4Addr, u8),
        new: (Ipv4Addr, u8),
    },
    /// Give the tunnel interface IPv6 address `new` instead of `old`
    /// (either may be none: a tunnel made or no longer dual-stack).
    Readdress6 {
        old: Option<(Ipv6Addr, u8)>,
        new: Option<(Ipv6Addr, u8)>,
    },
}

/// A job's result, for the loop.
#[derive(Debug)]
pub enum Done {
    /// The routes through the tunnel that name a next hop (dmvpnd's own
    /// left out), for [`dmvpn_node::Router::handle_kernel_routes`].
    TunnelRoutes(Vec<(IpAddr, u8, IpAddr)>),
    /// The networks directly connected behind this node, for
    /// [`dmvpn_node::Router::handle_local_prefixes`].
    LocalPrefixes(Vec<(IpAddr, u8)>),
    /// The tunnel source as the kernel sees it.
    Source(Reading),
    /// A route installed or removed, or why not.
    Route(KernelRoute, io::Result<()>),
    /// The tunnel interface's address changed to this one, or why not.
    Readdressed((Ipv4Addr, u8), io::Result<()>),
    /// The tunnel interface's IPv6 address changed to this one (none:
    /// removed), or why not.
    Readdressed6(Option<(Ipv6Addr, u8)>, io::Result<()>),
}

/// One read kind's state: at most one queued or running, and whether
/// another was asked for meanwhile.
#[derive(Debug, Default)]
struct Pending {
    busy: bool,
    again: bool,
}

impl Pending {
    /// Whether to queue a read now (otherwise one follows the current).
    fn ask(&mut self) -> bool {
        if self.busy {
            self.again = true;
            return false;
        }
        self.busy = true;
        true
    }

    /// The read finished: whether to queue another at once.
    fn finished(&mut self) -> bool {
        self.busy = std::mem::take(&mut self.again);
        self.busy
    }
}

/// The worker thread and its two queues.
pub struct Kernel {
    jobs: Option<std_mpsc::Sender<Job>>,
    done: mpsc::UnboundedReceiver<Done>,
    thread: Option<JoinHandle<()>>,
    routes: Pending,
    lans: Pending,
    source: Pending,
    /// The last source asked about (read again after a burst).
    last_source: Option<Source>,
    /// The NBMA address of the last read of the networks behind us.
    last_nbma: Ipv4Addr,
}

impl Kernel {
    /// Starts the worker for the tunnel interface `tunnel`.
    pub fn start(tunnel: &str) -> io::Result<Kernel> {
        let (jobs, rx) = std_mpsc::channel();
        let (tx, done) = mpsc::unbounded_channel();
        let tunnel = tunnel.to_string();
        let thread = std::thread::Builder::new()
            .name("dmvpnd-kernel".into())
            .spawn(move || work(tunnel, rx, tx))?;
        Ok(Kernel {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            routes: Pending::default(),
            lans: Pending::default(),
            source: Pending::default(),
            last_source: None,
            last_nbma: Ipv4Addr::UNSPECIFIED,
        })
    }

    fn queue(&self, job: Job) {
        if let Some(j) = &self.jobs {
            // The worker only stops when this side is dropped.
            let _ = j.send(job);
        }
    }

    /// The tunnel interface was renamed: jobs from now on use `name`.
    pub fn renamed(&mut self, name: &str) {
        self.queue(Job::Renamed(name.to_string()));
    }

    /// Reads the routes through the tunnel (after the current read, if
    /// one is under way).
    pub fn read_tunnel_routes(&mut self) {
        if self.routes.ask() {
            self.queue(Job::TunnelRoutes);
        }
    }

    /// Reads the networks behind this node, whose NBMA address is `nbma`
    /// (a read already queued or running is enough).
    pub fn read_local_prefixes(&mut self, nbma: Ipv4Addr) {
        self.last_nbma = nbma;
        if self.lans.ask() {
            self.queue(Job::LocalPrefixes(nbma));
        }
    }

    /// Reads what the kernel says about `source`.
    pub fn read_source(&mut self, source: &Source) {
        self.last_source = Some(source.clone());
        if self.source.ask() {
            self.queue(Job::Source(source.clone()));
        }
    }

    /// Installs or removes a route, after every job queued before.
    pub fn route(&mut self, r: KernelRoute) {
        self.queue(Job::Route(r));
    }

    /// Gives the tunnel interface address `new` in place of `old` (the
    /// new one first, so that the subnet stays reachable throughout).
    pub fn readdress(&mut self, old: (Ipv4Addr, u8), new: (Ipv4Addr, u8)) {
        self.queue(Job::Readdress { old, new });
    }

    /// [`Kernel::readdress`] for the IPv6 address of a dual-stack tunnel.
    pub fn readdress6(&mut self, old: Option<(Ipv6Addr, u8)>, new: Option<(Ipv6Addr, u8)>) {
        self.queue(Job::Readdress6 { old, new });
    }

    /// The next result (`None` once the worker is gone).
    pub async fn next(&mut self) -> Option<Done> {
        let d = self.done.recv().await?;
        match &d {
            Done::TunnelRoutes(_) if self.routes.finished() => self.queue(Job::TunnelRoutes),
            Done::LocalPrefixes(_) if self.lans.finished() => {
                self.queue(Job::LocalPrefixes(self.last_nbma));
            }
            Done::Source(_) if self.source.finished() => {
                if let Some(s) = self.last_source.clone() {
                    self.queue(Job::Source(s));
                }
            }
            _ => {}
        }
        Some(d)
    }

    /// Lets the worker finish what is queued (routes still to install or
    /// remove) and waits for it to end.
    pub fn finish(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The worker: one job at a time until the loop's side is dropped.
fn work(mut tunnel: String, jobs: std_mpsc::Receiver<Job>, done: mpsc::UnboundedSender<Done>) {
    // Background work at the lowest priority (nice 19), so that on a busy
    // CPU the event loop's thread is not preempted by a long dump: it
    // waits for packets, the worker for the CPU.
    // SAFETY: setpriority(2) on this thread's own id; no memory involved.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
    while let Ok(job) = jobs.recv() {
        let d = match job {
            Job::TunnelRoutes => Done::TunnelRoutes(routes::tunnel_routes(&tunnel)),
            Job::LocalPrefixes(nbma) => Done::LocalPrefixes(routes::local_prefixes(&tunnel, nbma)),
            Job::Source(s) => Done::Source(s.read()),
            Job::Route(r) => Done::Route(r, apply(&tunnel, r)),
            Job::Renamed(name) => {
                tunnel = name;
                continue;
            }
            Job::Readdress { old, new } => Done::Readdressed(new, readdress(&tunnel, old, new)),
            Job::Readdress6 { old, new } => Done::Readdressed6(new, readdress6(&tunnel, old, new)),
        };
        // The loop may have ended; the remaining route jobs still run.
        let _ = done.send(d);
    }
}

/// Installs or removes `r` through `tunnel`.
fn apply(tunnel: &str, r: KernelRoute) -> io::Result<()> {
    let oif = rtnl::ifindex(tunnel)?;
    match r {
        KernelRoute::Install { prefix, len } => {
            let metric = routes::metric_for(oif, prefix, len);
            rtnl::add_route(prefix, len, oif, ROUTE_PROTOCOL, metric)
        }
        KernelRoute::Remove { prefix, len } => rtnl::delete_route(prefix, len, oif, ROUTE_PROTOCOL),
    }
}

/// Adds `new` to `tunnel`, then removes `old`. A new address in the old
/// one's subnet is a secondary address, which the kernel would remove
/// with the primary one unless told to promote it.
fn readdress(tunnel: &str, old: (Ipv4Addr, u8), new: (Ipv4Addr, u8)) -> io::Result<()> {
    let index = rtnl::ifindex(tunnel)?;
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{tunnel}/promote_secondaries"),
        "1",
    )?;
    rtnl::add_address(index, new.0.into(), new.1)?;
    if old != new {
        rtnl::delete_address(index, old.0.into(), old.1)?;
    }
    Ok(())
}

/// Adds `new` to `tunnel` (IPv6 on for it, no duplicate address
/// detection), then removes `old`.
fn readdress6(
    tunnel: &str,
    old: Option<(Ipv6Addr, u8)>,
    new: Option<(Ipv6Addr, u8)>,
) -> io::Result<()> {
    let index = rtnl::ifindex(tunnel)?;
    if let Some((a, l)) = new {
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{tunnel}/disable_ipv6"),
            "0",
        )?;
        rtnl::add_address(index, IpAddr::V6(a), l)?;
    }
    if let Some((a, l)) = old.filter(|o| Some(*o) != new) {
        rtnl::delete_address(index, IpAddr::V6(a), l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Pending;

    #[test]
    fn a_burst_of_requests_is_one_more_read() {
        let mut p = Pending::default();
        assert!(p.ask(), "the first read is queued");
        assert!(!p.ask());
        assert!(!p.ask());
        assert!(p.finished(), "one more after it");
        assert!(!p.finished(), "and no further");
        assert!(p.ask());
    }
}
