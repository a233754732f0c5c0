//! dmvpnd's NHRP routes in the kernel's routing table (route protocol
//! 78), with real dmvpnd processes in network namespaces: the hub lists
//! its registered spokes, a spoke its shortcut while it exists and not
//! after idle expiry, `clear ip nhrp`, `clear ip nhrp ADDR MASK` or a stop.
//! And forwarding goes on while routes change under the event loop (20
//! route changes per second): ping round trips with and without them.
//!
//! Needs root, iproute2 and ping; fails (never skips) without them.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DmvpnState, Reply, Request};
use dmvpn_tests::*;

/// dmvpnd's route protocol number.
const PROTO: &str = "78";

/// Hub + two spokes (+ LAN hosts, spoke 2's only if `s2_lan`) up and
/// registered.
fn seed_lab(idle: u32, s2_lan: bool) -> (Lab, [String; 3]) {
    let mut lab = Lab::new("kr");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    lab.lan_host(&s1, 2);
    if s2_lan {
        lab.lan_host(&s2, 3);
    }
    let cfg = |n: u8| {
        SeedNode {
            ike: SEED_IKE,
            transforms: SEED_TS,
            lifetime_seconds: 3600,
            idle_time: idle,
            dpd_retries: 5,
            phase3: false,
            hub_map: true,
        }
        .config(n)
    };
    lab.start(&hub, &cfg(1));
    lab.start(&s1, &cfg(2));
    lab.start(&s2, &cfg(3));
    hub_lan_routes(&lab, &hub);
    for s in [&s1, &s2] {
        lab.wait(
            "spoke registered with the hub",
            Duration::from_secs(30),
            || lab.peer_up(s, "172.16.0.1"),
        );
    }
    (lab, [hub, s1, s2])
}

/// `ip route show proto 78` in `ns`.
fn nhrp_routes(ns: &str) -> String {
    let o = sh(&["ip", "-n", ns, "-4", "route", "show", "proto", PROTO]);
    assert!(o.status.success(), "ip route show: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `ip route show proto 78` lists `prefix` through Tunnel0.
fn listed(ns: &str, prefix: &str) -> bool {
    nhrp_routes(ns)
        .lines()
        .any(|l| l.starts_with(&format!("{prefix} ")) && l.contains("dev Tunnel0"))
}

/// LAN host behind spoke 1 → LAN host behind spoke 2, until spoke 1 has
/// a shortcut for spoke 2's LAN and shows it in the kernel.
fn shortcut_to_lan(lab: &Lab, s1: &str) -> Duration {
    let h2 = format!("{}h2", lab.tag);
    lab.wait("LAN-to-LAN ping", Duration::from_secs(20), || {
        lab.ping(&h2, "10.3.0.10", 1) == 1
    });
    assert!(lab.ping(&h2, "10.3.0.10", 5) >= 4, "LAN-to-LAN ping");
    lab.wait(
        "spoke 1 shows its shortcut to 10.3.0.0/24 (proto 78)",
        Duration::from_secs(15),
        || listed(s1, "10.3.0.0/24"),
    )
}

#[test]
fn e2e_nhrp_routes_in_the_kernel() {
    let (mut lab, [hub, s1, _s2]) = seed_lab(60, true);
    lab.wait(
        "the hub shows both registrations (proto 78)",
        Duration::from_secs(10),
        || listed(&hub, "192.168.1.2") && listed(&hub, "192.168.1.3"),
    );
    eprintln!("hub: ip route show proto 78\n{}", nhrp_routes(&hub));
    assert!(
        !listed(&s1, "10.3.0.0/24"),
        "no shortcut before traffic: {}",
        nhrp_routes(&s1)
    );
    // The configured route (protocol boot) stays beside dmvpnd's.
    let configured = || {
        let o = sh(&[
            "ip",
            "-n",
            &s1,
            "route",
            "show",
            "10.3.0.0/24",
            "proto",
            "boot",
        ]);
        String::from_utf8_lossy(&o.stdout).contains("dev Tunnel0")
    };
    assert!(configured());

    // Shortcut up: listed while it exists, next to the configured route.
    let t = shortcut_to_lan(&lab, &s1);
    eprintln!(
        "s1: shortcut listed {t:?} after the first echo:\n{}",
        nhrp_routes(&s1)
    );
    assert!(configured(), "the configured route stays");
    // The hub learns nothing back from its own routes: its registrations
    // are still the only ones it shows.
    assert_eq!(
        nhrp_routes(&hub).lines().count(),
        2,
        "{}",
        nhrp_routes(&hub)
    );

    // No traffic for the idle time (60 s): the SA, the shortcut and its
    // route go.
    let s2_nbma: IpAddr = "172.16.0.3".parse().unwrap();
    let gone = lab.wait(
        "shortcut route gone after idle expiry",
        Duration::from_secs(120),
        || !listed(&s1, "10.3.0.0/24"),
    );
    assert!(
        !lab.ipsec(&s1).iter().any(|p| p.current_peer == s2_nbma),
        "idle expiry (not the NHRP holdtime) took it"
    );
    eprintln!("idle expiry: route gone {gone:?} after the last echo");
    assert!(configured(), "the configured route stays");

    // Back with traffic, then `clear ip nhrp`.
    shortcut_to_lan(&lab, &s1);
    let r = lab.ctl(&s1, Request::ClearNhrp);
    assert!(matches!(r, Reply::Cleared { .. }), "{r:?}");
    let t = lab.wait(
        "shortcut route gone after clear ip nhrp",
        Duration::from_secs(5),
        || !listed(&s1, "10.3.0.0/24"),
    );
    eprintln!("clear ip nhrp: route gone after {t:?}");

    // Back again, then `clear ip nhrp 10.3.0.0 255.255.255.0`.
    shortcut_to_lan(&lab, &s1);
    let r = lab.ctl(
        &s1,
        Request::ClearNhrpEntry {
            address: "10.3.0.0".parse().unwrap(),
            prefix_len: Some(24),
        },
    );
    assert!(matches!(r, Reply::Cleared { count } if count >= 1), "{r:?}");
    lab.wait(
        "shortcut route gone after clear ip nhrp 10.3.0.0 255.255.255.0",
        Duration::from_secs(5),
        || !listed(&s1, "10.3.0.0/24"),
    );
    assert!(configured(), "the configured route stays");

    // A stop removes what is left.
    shortcut_to_lan(&lab, &s1);
    lab.sigterm(&s1);
    let log = lab.log(&s1);
    assert!(
        log.contains("NHRP route(s) through Tunnel0 at stop"),
        "{log}"
    );
}

/// A LAN that appears behind a running spoke is answered for in NHRP
/// resolutions (a shortcut to it comes up) without a restart or reload;
/// one that goes is no longer claimed.
#[test]
fn e2e_a_lan_added_after_start_is_announced() {
    let (mut lab, [_hub, s1, s2]) = seed_lab(60, false);
    let t0 = Instant::now();
    lab.lan_host(&s2, 3);
    lab.wait("spoke 2 notes its new LAN", Duration::from_secs(10), || {
        lab.log(&s2).contains("10.3.0.0/24 is behind this node")
    });
    let noted = t0.elapsed();
    let t = shortcut_to_lan(&lab, &s1);
    eprintln!("LAN noted {noted:?} after it was added; shortcut listed {t:?} after the first echo");
    ok(&["ip", "-n", &s2, "link", "del", &format!("{}3l", lab.tag)]);
    lab.wait(
        "spoke 2 notes its LAN is gone",
        Duration::from_secs(10),
        || {
            lab.log(&s2)
                .contains("10.3.0.0/24 is no longer behind this node")
        },
    );
}

/// Round-trip times (ms) of `ping -c N -i 0.02` from `ns` to `dst`, and
/// how many were sent.
fn ping_rtts(ns: &str, dst: &str, n: u32) -> (Vec<f64>, u32) {
    let count = n.to_string();
    let o = sh(&[
        "ip", "netns", "exec", ns, "ping", "-n", "-c", &count, "-i", "0.02", "-W", "2", dst,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let mut rtts: Vec<f64> = out
        .lines()
        .filter(|l| l.contains(" bytes from ") && !l.contains("DUP!"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("time="))
                .and_then(|t| t.parse().ok())
        })
        .collect();
    rtts.sort_by(f64::total_cmp);
    (rtts, n)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Adds and deletes routes of unrelated prefixes through the tunnel (via
/// the hub's tunnel address, so dmvpnd reads and hands them to its node)
/// in `ns`, 20 changes a second, until told to stop; counts them.
fn churn(ns: &str, stop: Arc<AtomicBool>, done: Arc<AtomicU32>) -> std::thread::JoinHandle<()> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let mut i = 0u32;
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let prefix = format!("10.200.{}.0/24", (i / 2) % 250);
            let op = if i.is_multiple_of(2) { "add" } else { "del" };
            let mut c: Child = Command::new("ip")
                .args(["-n", &ns, "route", op, &prefix])
                .args(["via", "192.168.1.1", "dev", "Tunnel0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ip");
            if c.wait().expect("ip").success() {
                done.fetch_add(1, Ordering::SeqCst);
            }
            i += 1;
            // Paced on the start time: 20 a second whatever ip takes.
            let next = start + Duration::from_millis(50) * i;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    })
}

#[test]
fn e2e_route_changes_do_not_stall_forwarding() {
    let (lab, [_hub, s1, _s2]) = seed_lab(300, true);
    // Spoke to spoke over the shortcut (and its kernel route).
    let s2_nbma: IpAddr = "172.16.0.3".parse().unwrap();
    lab.wait("tunnel ping to spoke 2", Duration::from_secs(20), || {
        lab.ping(&s1, "192.168.1.3", 1) == 1
    });
    lab.wait("shortcut to spoke 2", Duration::from_secs(15), || {
        lab.dmvpn_peers(&s1)
            .iter()
            .any(|(n, st)| *n == s2_nbma && *st == DmvpnState::Up)
            && listed(&s1, "192.168.1.3")
    });
    // A table of 10,000 unrelated routes: each change makes dmvpnd read
    // the whole table again (off its event loop).
    let table: String = (0..10_000u32)
        .map(|i| {
            format!(
                "route add blackhole 10.{}.{}.0/24\n",
                128 + i / 256,
                i % 256
            )
        })
        .collect();
    let mut batch = Command::new("ip")
        .args(["-n", &s1, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    {
        use std::io::Write;
        let mut stdin = batch.stdin.take().expect("stdin");
        stdin.write_all(table.as_bytes()).expect("write routes");
    }
    assert!(batch.wait().expect("ip -batch").success());
    const N: u32 = 500;
    let (quiet, sent) = ping_rtts(&s1, "192.168.1.3", N);

    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU32::new(0));
    let t0 = Instant::now();
    let worker = churn(&s1, stop.clone(), changes.clone());
    let (busy, sent_busy) = ping_rtts(&s1, "192.168.1.3", N);
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let made = changes.load(Ordering::SeqCst);
    let _ = sh(&["ip", "-n", &s1, "route", "flush", "10.200.0.0/16"]);

    eprintln!(
        "ping RTT spoke to spoke, {N} echoes at 50/s, 10,000 other routes in the table: without route changes p50 {:.3} ms p99 {:.3} ms max {:.3} ms; \
         with {made} route changes in {secs:.1} s ({:.1}/s): p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        quiet[quiet.len() - 1],
        f64::from(made) / secs,
        percentile(&busy, 0.5),
        percentile(&busy, 0.99),
        busy[busy.len() - 1],
    );
    assert_eq!(quiet.len() as u32, sent, "no echo lost without changes");
    assert_eq!(
        busy.len() as u32,
        sent_busy,
        "no echo lost during route changes"
    );
    assert!(
        f64::from(made) >= 5.0 * secs,
        "the routes did change: {made} in {secs:.1} s"
    );
    // dmvpnd followed them: still running, still answering.
    assert!(matches!(lab.ctl(&s1, Request::ShowNhrp), Reply::Nhrp(_)));
}

/// Routes of protocol 78 left through a tunnel device that outlived the
/// dmvpnd that made them (a persistent TUN) are gone once dmvpnd has
/// started on it. (Bringing the device up drops every route through it
/// already; dmvpnd's own flush at start is the backstop.)
#[test]
fn e2e_stale_nhrp_routes_are_gone_after_start() {
    let mut lab = Lab::new("kr");
    let s1 = lab.node("s1", 2);
    ok(&[
        "ip", "-n", &s1, "tuntap", "add", "dev", "Tunnel0", "mode", "tun",
    ]);
    ok(&["ip", "-n", &s1, "link", "set", "Tunnel0", "up"]);
    ok(&[
        "ip",
        "-n",
        &s1,
        "route",
        "add",
        "10.9.0.0/24",
        "dev",
        "Tunnel0",
        "proto",
        PROTO,
    ]);
    assert!(listed(&s1, "10.9.0.0/24"));
    let cfg = SeedNode {
        ike: SEED_IKE,
        transforms: SEED_TS,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: false,
        hub_map: true,
    }
    .config(2);
    lab.start(&s1, &cfg);
    assert!(lab.alive(&s1), "dmvpnd runs on the persistent device");
    assert!(
        !listed(&s1, "10.9.0.0/24"),
        "stale route after start: {}",
        nhrp_routes(&s1)
    );
    // dmvpnd's configured routes are there: it did set the device up.
    let o = sh(&[
        "ip",
        "-n",
        &s1,
        "route",
        "show",
        "10.3.0.0/24",
        "proto",
        "boot",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("dev Tunnel0"),
        "{o:?}"
    );
}
