//! The routing table over rtnetlink, in a network namespace of the test
//! thread's own: what dmvpnd reads (connected LANs, routes via the tunnel)
//! and writes (routes into the tunnel), and the route-change watcher.
//! Needs root (CI runs as root); fails loudly without it.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use dmvpn_agent::daemon::routes;
use dmvpn_agent::runtime::rtnl;
use dmvpn_agent::runtime::rtnl::Watch;

/// Runs `f` on a thread inside a fresh network namespace with `lo` up.
fn in_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) affects only this thread's namespaces.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            std::io::Error::last_os_error()
        );
        ip(&["link", "set", "lo", "up"]);
        f();
    })
    .join()
    .unwrap();
}

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(o.status.success(), "ip {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An interface `name` with a carrier: one end of a veth pair whose other
/// end is up too.
fn link(name: &str) {
    let peer = format!("{name}p");
    ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    ip(&["link", "set", &peer, "up"]);
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn connected_networks_are_the_lans_except_the_nbma_one() {
    in_netns(|| {
        link("lan0");
        link("wan0");
        link("Tunnel0");
        for (dev, addr) in [
            ("lan0", "10.2.0.1/24"),
            ("wan0", "172.16.0.2/24"),
            ("Tunnel0", "192.168.1.2/24"),
        ] {
            ip(&["addr", "add", addr, "dev", dev]);
            ip(&["link", "set", dev, "up"]);
        }
        let mut got = routes::local_prefixes("Tunnel0", a("172.16.0.2"));
        got.sort();
        assert_eq!(got, vec![(a("10.2.0.0").into(), 24)]);
    });
}

#[test]
fn routes_into_the_tunnel_are_written_and_read_back() {
    in_netns(|| {
        link("Tunnel0");
        ip(&["addr", "add", "192.168.1.2/24", "dev", "Tunnel0"]);
        ip(&["link", "set", "Tunnel0", "up"]);
        let oif = rtnl::ifindex("Tunnel0").unwrap();
        // Replacing twice is not an error (as `ip route replace`).
        for _ in 0..2 {
            rtnl::replace_route(a("10.1.0.0").into(), 24, None, oif).unwrap();
        }
        rtnl::replace_route(a("10.3.0.0").into(), 24, Some(a("192.168.1.3").into()), oif).unwrap();
        let shown = ip(&["-4", "route", "show", "dev", "Tunnel0"]);
        assert!(shown.contains("10.1.0.0/24 scope link"), "{shown}");
        assert!(shown.contains("10.3.0.0/24 via 192.168.1.3"), "{shown}");
        assert_eq!(
            routes::tunnel_routes("Tunnel0"),
            vec![(a("10.3.0.0").into(), 24, a("192.168.1.3").into())]
        );
        // A kernel refusal comes back as an error with its reason.
        let e = rtnl::replace_route(a("10.4.0.0").into(), 24, Some(a("10.99.0.1").into()), oif)
            .unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e}");
        assert!(rtnl::ifindex("NoSuchIf0").is_err());
    });
}

#[test]
fn route_change_wakes_the_watcher() {
    in_netns(|| {
        ip(&["addr", "add", "10.8.0.1/24", "dev", "lo"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let w = Watch::routes().expect("netlink route socket");
            assert!(routes::tunnel_routes("lo").is_empty());
            ip(&[
                "route",
                "add",
                "10.9.0.0/24",
                "via",
                "10.8.0.2",
                "dev",
                "lo",
            ]);
            let n = tokio::time::timeout(Duration::from_secs(5), w.changed())
                .await
                .expect("no route notification within 5 s")
                .expect("netlink receive");
            assert!(n >= 1);
            assert_eq!(
                routes::tunnel_routes("lo"),
                vec![(a("10.9.0.0").into(), 24, a("10.8.0.2").into())]
            );
        });
    });
}

/// A table of 10,000 routes is read whole; prints the time of one dump
/// beside `ip route show` of the same table (figures, not assertions).
#[test]
fn dump_of_ten_thousand_routes() {
    in_netns(|| {
        link("Tunnel0");
        ip(&["addr", "add", "192.168.1.2/24", "dev", "Tunnel0"]);
        ip(&["link", "set", "Tunnel0", "up"]);
        let oif = rtnl::ifindex("Tunnel0").unwrap();
        for i in 0..10_000u32 {
            let p = Ipv4Addr::from(u32::from(a("10.0.0.0")) + (i << 8));
            rtnl::replace_route(p.into(), 24, Some(a("192.168.1.3").into()), oif).unwrap();
        }
        let mut dump = Vec::new();
        let mut fork = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let n = routes::tunnel_routes("Tunnel0").len();
            dump.push(t.elapsed());
            assert_eq!(n, 10_000);
            let t = Instant::now();
            let text = ip(&["-4", "-o", "route", "show", "dev", "Tunnel0"]);
            fork.push(t.elapsed());
            assert!(text.lines().count() >= 10_000);
        }
        dump.sort();
        fork.sort();
        println!(
            "10,000 routes: rtnetlink dump + filter median {:?}, `ip route show` median {:?}",
            dump[2], fork[2]
        );
    });
}

#[test]
fn interface_addresses_primary_first() {
    in_netns(|| {
        link("wan0");
        assert_eq!(
            rtnl::ipv4_addresses(rtnl::ifindex("wan0").unwrap()).unwrap(),
            vec![]
        );
        ip(&["addr", "add", "172.16.0.2/24", "dev", "wan0"]);
        ip(&["addr", "add", "172.16.0.9/24", "dev", "wan0"]);
        ip(&["addr", "add", "10.0.0.2/30", "dev", "wan0"]);
        let idx = rtnl::ifindex("wan0").unwrap();
        assert_eq!(
            rtnl::ipv4_addresses(idx).unwrap(),
            vec![
                (a("172.16.0.2"), 24),
                (a("10.0.0.2"), 30),
                (a("172.16.0.9"), 24)
            ]
        );
        ip(&["addr", "del", "172.16.0.2/24", "dev", "wan0"]);
        // Deleting a primary drops its secondaries too (no promotion by
        // default); the other subnet's address is left.
        assert_eq!(
            rtnl::ipv4_addresses(idx).unwrap(),
            vec![(a("10.0.0.2"), 30)]
        );
    });
}

/// An interface source: its primary address first, an address change
/// wakes the address watcher, and the source follows it.
#[test]
fn address_change_wakes_the_source_watcher() {
    use dmvpn_agent::daemon::source::{Source, SourceWatch};
    in_netns(|| {
        link("wan0");
        ip(&["addr", "add", "172.16.0.2/24", "dev", "wan0"]);
        ip(&["addr", "add", "172.16.0.9/24", "dev", "wan0"]);
        let index = rtnl::ifindex("wan0").unwrap();
        assert_eq!(
            rtnl::ipv4_addresses(index).unwrap(),
            vec![(a("172.16.0.2"), 24), (a("172.16.0.9"), 24)],
            "primary first"
        );
        assert!(rtnl::has_ipv4_address(a("172.16.0.9")).unwrap());
        let src = Source::Interface {
            name: "wan0".into(),
            index,
        };
        assert_eq!(src.current(), Some(a("172.16.0.2")));
        let mut follow = SourceWatch::new(src);
        assert_eq!(follow.check(a("172.16.0.2")), None, "unchanged");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let w = Watch::addresses().expect("netlink address socket");
            ip(&["addr", "flush", "dev", "wan0"]);
            ip(&["addr", "add", "172.16.0.22/24", "dev", "wan0"]);
            let n = tokio::time::timeout(Duration::from_secs(5), w.changed())
                .await
                .expect("no address notification within 5 s")
                .expect("netlink receive");
            assert!(n >= 1);
        });
        assert_eq!(follow.check(a("172.16.0.2")), Some(a("172.16.0.22")));
        assert!(!rtnl::has_ipv4_address(a("172.16.0.2")).unwrap());
        ip(&["addr", "flush", "dev", "wan0"]);
        assert_eq!(follow.check(a("172.16.0.22")), None, "no address: kept");
    });
}

/// dmvpnd's NHRP routes (route protocol 78): added in front of a route of
/// the same prefix without replacing it, removed alone, never read back
/// as a route through the tunnel, flushed together.
#[test]
fn learned_routes_sit_beside_other_routes_and_leave_alone() {
    use rtnl::ROUTE_PROTOCOL as P;
    in_netns(|| {
        link("Tunnel0");
        ip(&["addr", "add", "192.168.1.2/24", "dev", "Tunnel0"]);
        ip(&["link", "set", "Tunnel0", "up"]);
        let oif = rtnl::ifindex("Tunnel0").unwrap();
        // The operator's (or a configured) route of the same prefix.
        rtnl::replace_route(a("10.3.0.0").into(), 24, None, oif).unwrap();
        ip(&[
            "route",
            "add",
            "10.4.0.0/24",
            "via",
            "192.168.1.4",
            "dev",
            "Tunnel0",
        ]);
        for _ in 0..2 {
            rtnl::add_route(a("10.3.0.0").into(), 24, oif, P, 0).unwrap();
        }
        rtnl::add_route(a("192.168.1.3").into(), 32, oif, P, 0).unwrap();
        let mine = ip(&["-4", "route", "show", "proto", "78"]);
        let lines: Vec<&str> = mine.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "10.3.0.0/24 dev Tunnel0 scope link",
                "192.168.1.3 dev Tunnel0 scope link"
            ],
            "{mine}"
        );
        let both = ip(&["-4", "route", "show", "10.3.0.0/24"]);
        assert_eq!(both.lines().count(), 2, "{both}");
        assert!(
            both.lines().next().unwrap().contains("proto 78"),
            "in front: {both}"
        );
        assert_eq!(
            routes::tunnel_routes("Tunnel0"),
            vec![(a("10.4.0.0").into(), 24, a("192.168.1.4").into())],
            "dmvpnd's own routes are not read back"
        );
        for _ in 0..2 {
            rtnl::delete_route(a("10.3.0.0").into(), 24, oif, P).unwrap();
        }
        let left = ip(&["-4", "route", "show", "10.3.0.0/24"]);
        assert!(
            left.contains("10.3.0.0/24 dev Tunnel0") && !left.contains("proto 78"),
            "{left}"
        );
        rtnl::add_route(a("10.5.0.0").into(), 24, oif, P, 0).unwrap();
        assert_eq!(rtnl::flush_routes(oif, P).unwrap(), 2);
        assert_eq!(ip(&["-4", "route", "show", "proto", "78"]).trim(), "");
        assert_eq!(rtnl::flush_routes(oif, P).unwrap(), 0);
        let all = ip(&["-4", "route", "show", "dev", "Tunnel0"]);
        assert!(
            all.contains("10.3.0.0/24") && all.contains("10.4.0.0/24 via 192.168.1.4"),
            "{all}"
        );
    });
}

/// The kernel worker installs and removes routes and reads the routes
/// through the tunnel off the calling thread, results as events.
#[test]
fn the_kernel_worker_answers_with_events() {
    use dmvpn_agent::daemon::kernel::{Done, Kernel};
    use dmvpn_node::control::KernelRoute;
    in_netns(|| {
        link("Tunnel0");
        ip(&["addr", "add", "192.168.1.2/24", "dev", "Tunnel0"]);
        ip(&["link", "set", "Tunnel0", "up"]);
        ip(&[
            "route",
            "add",
            "10.4.0.0/24",
            "via",
            "192.168.1.4",
            "dev",
            "Tunnel0",
        ]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut k = Kernel::start("Tunnel0").expect("worker");
            let install = KernelRoute::Install {
                prefix: a("10.3.0.0").into(),
                len: 24,
            };
            k.route(install);
            k.read_tunnel_routes();
            // Asked again while the first read is queued: one more read.
            k.read_tunnel_routes();
            k.read_tunnel_routes();
            let mut got = Vec::new();
            while got.len() < 3 {
                let d = tokio::time::timeout(Duration::from_secs(5), k.next())
                    .await
                    .expect("an answer within 5 s")
                    .expect("worker running");
                got.push(d);
            }
            assert!(
                matches!(&got[0], Done::Route(r, Ok(())) if *r == install),
                "{got:?}"
            );
            for d in &got[1..] {
                match d {
                    Done::TunnelRoutes(v) => {
                        assert_eq!(
                            v,
                            &vec![(a("10.4.0.0").into(), 24, a("192.168.1.4").into())]
                        )
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(
                tokio::time::timeout(Duration::from_millis(300), k.next())
                    .await
                    .is_err(),
                "no third read"
            );
            k.route(KernelRoute::Remove {
                prefix: a("10.3.0.0").into(),
                len: 24,
            });
            k.finish();
        });
        assert_eq!(ip(&["-4", "route", "show", "proto", "78"]).trim(), "");
    });
}

/// The routes through one interface, filtered by the kernel: 10,000
/// routes through another interface are not read. Prints the time of
/// both reads (figures, not assertions).
#[test]
fn routes_through_one_interface_among_ten_thousand() {
    in_netns(|| {
        link("Tunnel0");
        link("lan0");
        for (dev, addr) in [("Tunnel0", "192.168.1.2/24"), ("lan0", "10.255.0.1/24")] {
            ip(&["addr", "add", addr, "dev", dev]);
            ip(&["link", "set", dev, "up"]);
        }
        let tun = rtnl::ifindex("Tunnel0").unwrap();
        let lan = rtnl::ifindex("lan0").unwrap();
        for i in 0..10_000u32 {
            let p = Ipv4Addr::from(u32::from(a("10.0.0.0")) + (i << 8));
            rtnl::replace_route(p.into(), 24, Some(a("10.255.0.2").into()), lan).unwrap();
        }
        rtnl::replace_route(
            a("172.20.0.0").into(),
            16,
            Some(a("192.168.1.3").into()),
            tun,
        )
        .unwrap();
        rtnl::add_route(a("172.21.0.0").into(), 16, tun, rtnl::ROUTE_PROTOCOL, 0).unwrap();
        let mut got: Vec<(Ipv4Addr, u8, u8)> = rtnl::routes_through(tun)
            .unwrap()
            .iter()
            .map(|r| (r.prefix, r.len, r.protocol))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (a("172.20.0.0"), 16, 3),
                (a("172.21.0.0"), 16, rtnl::ROUTE_PROTOCOL),
                (a("192.168.1.0"), 24, 2)
            ]
        );
        let (mut one, mut all) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            rtnl::routes_through(tun).unwrap();
            one.push(t.elapsed());
            let t = Instant::now();
            assert!(rtnl::main_table().unwrap().len() > 10_000);
            all.push(t.elapsed());
        }
        one.sort();
        all.sort();
        println!(
            "10,002 routes: routes through the tunnel median {:?}, whole table median {:?}",
            one[2], all[2]
        );
    });
}

/// A dual-stack tunnel's IPv6 side: its address goes in usable at once
/// (no duplicate address detection), dmvpnd's IPv6 routes sit beside a
/// configured route of the same prefix (one metric below it), routes via
/// an IPv6 next hop are read back, connected IPv6 LANs are found, and a
/// flush removes dmvpnd's routes of both families.
#[test]
fn ipv6_addresses_and_routes() {
    use rtnl::ROUTE_PROTOCOL as P;
    use std::net::{IpAddr, Ipv6Addr};
    in_netns(|| {
        let v6 = |s: &str| -> Ipv6Addr { s.parse().unwrap() };
        link("Tunnel0");
        ip(&["link", "set", "Tunnel0", "up"]);
        link("lan0");
        ip(&["addr", "add", "2001:db8:2::1/64", "dev", "lan0", "nodad"]);
        ip(&["link", "set", "lan0", "up"]);
        let oif = rtnl::ifindex("Tunnel0").unwrap();
        rtnl::add_address(oif, IpAddr::V6(v6("2001:db8:100::2")), 64).unwrap();
        let states = rtnl::ipv6_address_states(oif).unwrap();
        assert_eq!(
            states,
            [(v6("2001:db8:100::2"), 64, false)],
            "not tentative"
        );
        assert_eq!(
            rtnl::ipv6_addresses(oif).unwrap(),
            [(v6("2001:db8:100::2"), 64)]
        );
        // The configured route (the kernel's default metric, 1024).
        rtnl::replace_route(IpAddr::V6(v6("2001:db8:3::")), 64, None, oif).unwrap();
        rtnl::add_route(
            IpAddr::V6(v6("2001:db8:3::")),
            64,
            oif,
            P,
            routes::IPV6_METRIC,
        )
        .unwrap();
        rtnl::add_route(IpAddr::V4(a("10.3.0.0")), 24, oif, P, 0).unwrap();
        let both = ip(&["-6", "route", "show", "2001:db8:3::/64"]);
        assert_eq!(both.lines().count(), 2, "{both}");
        assert!(both.lines().next().unwrap().contains("proto 78"), "{both}");
        ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:4::/64",
            "via",
            "2001:db8:100::4",
            "dev",
            "Tunnel0",
        ]);
        let table = rtnl::routes_through_v6(oif).unwrap();
        assert!(
            table.iter().any(|r| r.prefix == v6("2001:db8:3::")
                && r.protocol == P
                && r.metric == routes::IPV6_METRIC),
            "{table:?}"
        );
        assert!(
            routes::tunnel_routes("Tunnel0").contains(&(
                IpAddr::V6(v6("2001:db8:4::")),
                64,
                IpAddr::V6(v6("2001:db8:100::4"))
            )),
            "{:?}",
            routes::tunnel_routes("Tunnel0")
        );
        let lans = routes::local_prefixes("Tunnel0", a("172.16.0.2"));
        assert!(
            lans.contains(&(IpAddr::V6(v6("2001:db8:2::")), 64)),
            "{lans:?}"
        );
        assert!(
            !lans
                .iter()
                .any(|(p, _)| *p == IpAddr::V6(v6("2001:db8:100::"))),
            "the tunnel's own subnet is no LAN: {lans:?}"
        );
        assert_eq!(rtnl::flush_routes(oif, P).unwrap(), 2);
        assert_eq!(ip(&["-6", "route", "show", "proto", "78"]).trim(), "");
        assert!(ip(&["-6", "route", "show", "2001:db8:3::/64"]).contains("2001:db8:3::/64"));
        rtnl::delete_address(oif, IpAddr::V6(v6("2001:db8:100::2")), 64).unwrap();
        assert!(rtnl::ipv6_addresses(oif).unwrap().is_empty());
    });
}
