//! The kernel's routing tables and interface addresses over rtnetlink:
//! dumps of the main IPv4 and IPv6 tables, routes into an interface,
//! interfaces' addresses, and [`Watch`], the kernel's change
//! notifications. Messages are built and parsed by `netlink-packet-route`;
//! no `ip` process, no text.
//!
//! The calls are synchronous on a private netlink socket: a dump of the
//! main table is one request and a few multipart replies from the kernel,
//! with no process to start (`agent/tests/rtnl.rs` prints the time of a
//! dump of 10,000 routes beside `ip route show` of the same table).
//! Callers filter what they need. dmvpnd's event loop never makes them
//! itself: its kernel worker thread does (`daemon::kernel`).
//!
//! Routes dmvpnd learned through NHRP carry their own route protocol
//! number, [`ROUTE_PROTOCOL`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};

/// The route protocol number (`rtm_protocol`) of the routes dmvpnd
/// installs for what NHRP taught it: shortcuts and, on a hub, registered
/// clients. `ip route show proto 78` lists them. 78 is outside what the
/// kernel's headers, iproute2's `rt_protos`, FRR's zebra (11 and
/// 186-198; its nhrpd's routes are 191, which zebra takes for its own)
/// and BIRD (12) use, so no routing daemon mistakes these routes for its
/// own and removes them at its start. Routing daemons should not
/// redistribute them: the overlay's routing already covers what they
/// reach (docs/operations.md).
pub const ROUTE_PROTOCOL: u8 = 78;
/// The route protocol of the routes [`replace_route`] installs (the
/// kernel's `boot`, as `ip route` gives routes by default): the tunnel's
/// configured routes.
pub const CONFIGURED_PROTOCOL: u8 = 3;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Scope `link` (directly connected) rather than `universe`.
    pub link_scope: bool,
    /// Who installed it (`rtm_protocol`: 2 kernel, 4 static, 12 bird,
    /// [`ROUTE_PROTOCOL`] dmvpnd...).
    pub protocol: u8,
    /// Its metric (`rtm_priority`; 0 when not given).
    pub metric: u32,
}

/// Index of interface `name`, or an error naming it.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}: {}", io::Error::last_os_error()),
        )),
        i => Ok(i),
    }
}

fn socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    Ok(s)
}

fn send(s: &Socket, flags: u16, msg: RouteNetlinkMessage) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0u8; m.buffer_len()];
    m.serialize(&mut buf);
    s.send(&buf, 0)?;
    Ok(())
}

/// Reads replies until the dump ends or the request is acknowledged,
/// handing each message to `each`. A netlink error becomes an
/// `io::Error` with the kernel's errno.
fn replies(s: &Socket, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
    loop {
        let (buf, _) = s.recv_from_full()?;
        let mut at = 0;
        while at < buf.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(()),
                        Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                    };
                }
                NetlinkPayload::InnerMessage(m) => each(m),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
}

fn v4(a: &RouteAddress) -> Option<Ipv4Addr> {
    match a {
        RouteAddress::Inet(a) => Some(*a),
        _ => None,
    }
}

fn v6(a: &RouteAddress) -> Option<Ipv6Addr> {
    match a {
        RouteAddress::Inet6(a) => Some(*a),
        _ => None,
    }
}

/// One IPv6 route of the main table (a dual-stack tunnel's overlay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub gateway: Option<Ipv6Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Who installed it (`rtm_protocol`, as for [`Route`]).
    pub protocol: u8,
    /// Its metric (`rtm_priority`).
    pub metric: u32,
}

/// The unicast routes of the main IPv6 table, link-local ones left out.
pub fn main_table_v6() -> io::Result<Vec<Route6>> {
    dump_main_v6(None)
}

/// The unicast routes of the main IPv6 table through interface `oif`
/// (filtered as [`routes_through`] does).
pub fn routes_through_v6(oif: u32) -> io::Result<Vec<Route6>> {
    Ok(dump_main_v6(Some(oif))?
        .into_iter()
        .filter(|r| r.oif == Some(oif))
        .collect())
}

fn dump_main_v6(oif: Option<u32>) -> io::Result<Vec<Route6>> {
    let mut out = Vec::new();
    dump_unicast_main(AddressFamily::Inet6, oif, |r, f| {
        let route = Route6 {
            prefix: f
                .destination
                .as_ref()
                .and_then(v6)
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
            len: r.header.destination_prefix_length,
            gateway: f.gateway.as_ref().and_then(v6),
            oif: f.oif,
            protocol: u8::from(r.header.protocol),
            metric: f.metric,
        };
        if (route.prefix.segments()[0] & 0xffc0) != 0xfe80 {
            out.push(route);
        }
    })?;
    Ok(out)
}

/// The attributes of a route message that the dumps read.
#[derive(Default)]
struct RouteFields {
    destination: Option<RouteAddress>,
    gateway: Option<RouteAddress>,
    oif: Option<u32>,
    metric: u32,
}

/// Dumps the unicast routes of `family`'s main table (through `oif`,
/// filtered by the kernel where it can), handing each to `each`.
fn dump_unicast_main(
    family: AddressFamily,
    oif: Option<u32>,
    mut each: impl FnMut(&RouteMessage, RouteFields),
) -> io::Result<()> {
    let s = socket()?;
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    if let Some(i) = oif
        && s.set_netlink_get_strict_chk(true).is_ok()
    {
        req.header.table = RouteHeader::RT_TABLE_MAIN;
        req.attributes.push(RouteAttribute::Oif(i));
    }
    send(
        &s,
        NLM_F_REQUEST | NLM_F_DUMP,
        RouteNetlinkMessage::GetRoute(req),
    )?;
    replies(&s, |m| {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            return;
        };
        let mut table = u32::from(r.header.table);
        let mut f = RouteFields::default();
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(d) => f.destination = Some(d.clone()),
                RouteAttribute::Gateway(g) => f.gateway = Some(g.clone()),
                RouteAttribute::Oif(i) => f.oif = Some(*i),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => f.metric = *p,
                _ => {}
            }
        }
        if r.header.address_family == family
            && r.header.kind == RouteType::Unicast
            && table == u32::from(RouteHeader::RT_TABLE_MAIN)
        {
            each(&r, f);
        }
    })
}

/// The unicast routes of the main IPv4 table.
pub fn main_table() -> io::Result<Vec<Route>> {
    dump_main(None)
}

/// The unicast routes of the main IPv4 table through interface `oif`.
/// The kernel filters (strict dump checking): a large table of routes
/// through other interfaces costs a walk in the kernel, not thousands of
/// messages to read. A kernel without the filter sends everything, and
/// the same filter applies here.
pub fn routes_through(oif: u32) -> io::Result<Vec<Route>> {
    Ok(dump_main(Some(oif))?
        .into_iter()
        .filter(|r| r.oif == Some(oif))
        .collect())
}

fn dump_main(oif: Option<u32>) -> io::Result<Vec<Route>> {
    let mut out = Vec::new();
    dump_unicast_main(AddressFamily::Inet, oif, |r, f| {
        out.push(Route {
            prefix: f
                .destination
                .as_ref()
                .and_then(v4)
                .unwrap_or(Ipv4Addr::UNSPECIFIED),
            len: r.header.destination_prefix_length,
            gateway: f.gateway.as_ref().and_then(v4),
            oif: f.oif,
            link_scope: r.header.scope == RouteScope::Link,
            protocol: u8::from(r.header.protocol),
            metric: f.metric,
        })
    })?;
    Ok(out)
}

/// A unicast route of the main table: `prefix/len` into `oif`, through
/// `gateway` if given.
fn route_message(
    prefix: IpAddr,
    len: u8,
    gateway: Option<IpAddr>,
    oif: u32,
    protocol: RouteProtocol,
) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match prefix {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = len;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = protocol;
    // IPv6 routes are all of scope universe, device routes too.
    m.header.scope = match (gateway, prefix) {
        (None, IpAddr::V4(_)) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(prefix)));
    if let Some(g) = gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    m.attributes.push(RouteAttribute::Oif(oif));
    m
}

/// Sends one request and waits for the kernel's acknowledgement.
fn acknowledged(flags: u16, msg: RouteNetlinkMessage) -> io::Result<()> {
    let s = socket()?;
    send(&s, NLM_F_REQUEST | NLM_F_ACK | flags, msg)?;
    replies(&s, |_| {})
}

/// Routes `prefix/len` into interface `oif`, through `gateway` if given
/// (like `ip route replace PREFIX [via GW] dev IF`), waiting for the
/// kernel's acknowledgement.
pub fn replace_route(prefix: IpAddr, len: u8, gateway: Option<IpAddr>, oif: u32) -> io::Result<()> {
    let m = route_message(
        prefix,
        len,
        gateway,
        oif,
        RouteProtocol::from(CONFIGURED_PROTOCOL),
    );
    acknowledged(
        NLM_F_CREATE | NLM_F_REPLACE,
        RouteNetlinkMessage::NewRoute(m),
    )
}

/// Adds `prefix/len` into `oif` with route protocol `protocol` and
/// `metric` in front of any route of the same prefix and metric (like
/// `ip route prepend`): a routing daemon's or the operator's route stays
/// in the table, behind it, and comes back into use when it is removed.
/// The same route again is not an error.
pub fn add_route(prefix: IpAddr, len: u8, oif: u32, protocol: u8, metric: u32) -> io::Result<()> {
    let mut m = route_message(prefix, len, None, oif, RouteProtocol::from(protocol));
    if metric != 0 {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    match acknowledged(NLM_F_CREATE, RouteNetlinkMessage::NewRoute(m)) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Removes the route `prefix/len` into `oif` of protocol `protocol`, and
/// no other (a routing daemon's route of the same prefix stays). A route
/// already gone (its interface went down) is not an error.
pub fn delete_route(prefix: IpAddr, len: u8, oif: u32, protocol: u8) -> io::Result<()> {
    let m = route_message(prefix, len, None, oif, RouteProtocol::from(protocol));
    match acknowledged(0, RouteNetlinkMessage::DelRoute(m)) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        r => r,
    }
}

/// Sets the MTU of interface `index` (like `ip link set IF mtu N`),
/// waiting for the kernel's acknowledgement.
pub fn set_mtu(index: u32, mtu: u32) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Mtu(mtu));
    acknowledged(0, RouteNetlinkMessage::SetLink(m))
}

/// Sets interface `index` up or down (like `ip link set IF up|down`).
pub fn set_link_up(index: u32, up: bool) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    m.header.change_mask = LinkFlags::Up;
    acknowledged(0, RouteNetlinkMessage::SetLink(m))
}

/// Renames interface `index` (like `ip link set IF name NAME`); the
/// kernel renames only a link that is down.
pub fn set_link_name(index: u32, name: &str) -> io::Result<()> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    acknowledged(0, RouteNetlinkMessage::SetLink(m))
}

/// Adds `r` back into interface `oif` as it was (protocol, next hop and
/// metric); the same route again is not an error.
pub fn restore_route(r: &Route, oif: u32) -> io::Result<()> {
    let mut m = route_message(
        r.prefix.into(),
        r.len,
        r.gateway.map(IpAddr::V4),
        oif,
        RouteProtocol::from(r.protocol),
    );
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    match acknowledged(NLM_F_CREATE, RouteNetlinkMessage::NewRoute(m)) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Removes every route of protocol `protocol` into `oif` from the main
/// IPv4 and IPv6 tables; returns how many there were.
pub fn flush_routes(oif: u32, protocol: u8) -> io::Result<usize> {
    let mut mine: Vec<(IpAddr, u8)> = routes_through(oif)?
        .into_iter()
        .filter(|r| r.protocol == protocol && r.gateway.is_none())
        .map(|r| (IpAddr::V4(r.prefix), r.len))
        .collect();
    mine.extend(
        routes_through_v6(oif)?
            .into_iter()
            .filter(|r| r.protocol == protocol && r.gateway.is_none())
            .map(|r| (IpAddr::V6(r.prefix), r.len)),
    );
    for (p, l) in &mine {
        delete_route(*p, *l, oif, protocol)?;
    }
    Ok(mine.len())
}

fn address_message(index: u32, addr: IpAddr, len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = len;
    m.header.index = index;
    if addr.is_ipv6() {
        // The operator's address, usable at once: no duplicate address
        // detection holding it tentative.
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    m
}

/// Adds `addr/len` to interface `index` (like `ip addr add ADDR/LEN dev
/// IF`), waiting for the kernel's acknowledgement. The address already
/// there is not an error.
pub fn add_address(index: u32, addr: IpAddr, len: u8) -> io::Result<()> {
    let m = address_message(index, addr, len);
    match acknowledged(NLM_F_CREATE, RouteNetlinkMessage::NewAddress(m)) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Removes `addr/len` from interface `index` (like `ip addr del`). An
/// address already gone is not an error.
pub fn delete_address(index: u32, addr: IpAddr, len: u8) -> io::Result<()> {
    let m = address_message(index, addr, len);
    match acknowledged(0, RouteNetlinkMessage::DelAddress(m)) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        r => r,
    }
}

/// The IPv4 addresses of interface `index` with their prefix lengths,
/// primary addresses first (in the kernel's order), then secondary ones.
pub fn ipv4_addresses(index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let all = all_ipv4_addresses()?;
    let of = |secondary: bool| {
        all.iter()
            .filter(move |a| a.index == index && a.secondary == secondary)
            .map(|a| (a.addr, a.len))
    };
    Ok(of(false).chain(of(true)).collect())
}

/// Whether some interface holds IPv4 address `addr`.
pub fn has_ipv4_address(addr: Ipv4Addr) -> io::Result<bool> {
    Ok(all_ipv4_addresses()?.iter().any(|a| a.addr == addr))
}

/// The global IPv6 addresses of interface `index` (link-local ones left
/// out) with their prefix lengths, and whether each is still tentative
/// (duplicate address detection running).
pub fn ipv6_addresses(index: u32) -> io::Result<Vec<(Ipv6Addr, u8)>> {
    Ok(ipv6_address_states(index)?
        .into_iter()
        .map(|(a, l, _)| (a, l))
        .collect())
}

/// [`ipv6_addresses`] with each address's tentative flag.
pub fn ipv6_address_states(index: u32) -> io::Result<Vec<(Ipv6Addr, u8, bool)>> {
    let s = socket()?;
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet6;
    send(
        &s,
        NLM_F_REQUEST | NLM_F_DUMP,
        RouteNetlinkMessage::GetAddress(req),
    )?;
    let mut out = Vec::new();
    replies(&s, |m| {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            return;
        };
        if a.header.family != AddressFamily::Inet6 || a.header.index != index {
            return;
        }
        let mut tentative = a.header.flags.contains(AddressHeaderFlags::Tentative);
        let mut addr = None;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Address(IpAddr::V6(x)) => addr = Some(*x),
                AddressAttribute::Flags(f) => {
                    tentative |= f.contains(netlink_packet_route::address::AddressFlags::Tentative)
                }
                _ => {}
            }
        }
        if let Some(x) = addr.filter(|x| (x.segments()[0] & 0xffc0) != 0xfe80) {
            out.push((x, a.header.prefix_len, tentative));
        }
    })?;
    Ok(out)
}

/// One IPv4 address of an interface.
struct IfAddr {
    index: u32,
    addr: Ipv4Addr,
    len: u8,
    secondary: bool,
}

/// Every IPv4 address of every interface, in the kernel's order.
fn all_ipv4_addresses() -> io::Result<Vec<IfAddr>> {
    let s = socket()?;
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    send(
        &s,
        NLM_F_REQUEST | NLM_F_DUMP,
        RouteNetlinkMessage::GetAddress(req),
    )?;
    let mut out = Vec::new();
    replies(&s, |m| {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            return;
        };
        if a.header.family != AddressFamily::Inet {
            return;
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the
        // peer's on point-to-point links).
        let mut local = None;
        let mut address = None;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Local(IpAddr::V4(x)) => local = Some(*x),
                AddressAttribute::Address(IpAddr::V4(x)) => address = Some(*x),
                _ => {}
            }
        }
        if let Some(x) = local.or(address) {
            out.push(IfAddr {
                index: a.header.index,
                addr: x,
                len: a.header.prefix_len,
                secondary: a.header.flags.contains(AddressHeaderFlags::Secondary),
            });
        }
    })?;
    Ok(out)
}

/// The kernel's change notifications of one kind (a `NETLINK_ROUTE`
/// socket in a multicast group): a route a routing daemon or an operator
/// adds or removes, or an interface address that comes or goes, is seen
/// at once rather than at the next poll. The messages are not decoded,
/// only counted: the caller re-reads what it follows after each batch.
pub struct Watch {
    fd: AsyncFd<OwnedFd>,
}

impl Watch {
    /// IPv4 and IPv6 route changes (`RTMGRP_IPV4_ROUTE`,
    /// `RTMGRP_IPV6_ROUTE`).
    pub fn routes() -> io::Result<Watch> {
        Watch::open((libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE) as u32)
    }

    /// IPv4 interface address changes (`RTMGRP_IPV4_IFADDR`).
    pub fn addresses() -> io::Result<Watch> {
        Watch::open(libc::RTMGRP_IPV4_IFADDR as u32)
    }

    fn open(groups: u32) -> io::Result<Watch> {
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
        sa.nl_groups = groups;
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
        Ok(Watch { fd })
    }

    /// Waits until at least one change was notified, then drains every
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

/// `ip route get` for one destination after another over one socket: the
/// direct send path's next hops ([`super::direct`]), looked up on the send
/// path itself, once per destination and second. The kernel answers at
/// once; a receive timeout keeps an unanswered request from holding the
/// caller longer than [`RouteLookup::TIMEOUT`].
pub struct RouteLookup {
    s: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl RouteLookup {
    pub const TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

    pub fn open() -> io::Result<RouteLookup> {
        let s = socket()?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: Self::TIMEOUT.as_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` outlives the call and its size is given.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteLookup {
            s,
            seq: 0,
            buf: Vec::with_capacity(8192),
        })
    }

    /// The kernel's route to `dst`: outgoing interface and gateway, or
    /// `None` when it is not a unicast route through an interface (local,
    /// broadcast, unreachable...).
    pub fn get(&mut self, dst: Ipv4Addr) -> io::Result<Option<(u32, Option<Ipv4Addr>)>> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = 32;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            header,
            NetlinkPayload::from(RouteNetlinkMessage::GetRoute(m)),
        );
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.s.send(&out, 0)?;
        loop {
            self.buf.clear();
            let n = self.s.recv(&mut self.buf, 0)?;
            let mut at = 0;
            while at < n.min(self.buf.len()) {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                // A late answer to an earlier request that timed out.
                if m.header.sequence_number == self.seq {
                    match m.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(None),
                                Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                            };
                        }
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                            return Ok(unicast_hop(&r));
                        }
                        _ => return Ok(None),
                    }
                }
                if len == 0 {
                    break;
                }
                at += (len + 3) & !3;
            }
        }
    }
}

/// Interface and gateway of a unicast route (`None` for other kinds or
/// without an interface).
pub fn unicast_hop(r: &RouteMessage) -> Option<(u32, Option<Ipv4Addr>)> {
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut oif = None;
    let mut gateway = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateway = v4(g),
            _ => {}
        }
    }
    oif.map(|o| (o, gateway))
}
