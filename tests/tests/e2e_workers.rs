//! Forwarding workers in real `dmvpnd` processes: a hub with
//! `workers = 2` and four IPsec spokes (seed topology, phase 3). The hub
//! runs a second forwarding thread on its own TUN queue and its share of
//! the spokes' ESP; flood pings from every spoke at once are all
//! answered, the hub's SAs refuse nothing, both of its forwarding threads
//! do the work, and spoke-to-spoke traffic (which the hub relays and
//! redirects) still gets its shortcut.
//!
//! Needs root, iproute2 and iputils-ping; fails (never skips) without them.

use std::fs;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use dmvpn_ctl::proto::DmvpnState;
use dmvpn_tests::*;

/// `IFF_MULTI_QUEUE` in `/sys/class/net/*/tun_flags`.
const IFF_MULTI_QUEUE: u32 = 0x0100;
const ECHOES: u32 = 3000;

fn seed(n: u8) -> String {
    let cfg = SeedNode {
        ike: MODERN_IKE,
        transforms: MODERN_TS,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 3,
        phase3: true,
        hub_map: false,
    }
    .config(n);
    let workers = if n == 1 { 2 } else { 1 };
    cfg.replacen("[node]\n", &format!("[node]\nworkers = {workers}\n"), 1)
}

/// utime + stime (clock ticks) of each thread of `pid`, by thread name.
fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let dir = t.expect("task").path();
        let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() > 12 {
            v.push((comm.trim().to_string(), f[11] + f[12]));
        }
    }
    v
}

fn ticks_of(threads: &[(String, u64)], name: &str) -> u64 {
    threads
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, t)| t)
        .sum()
}

#[test]
fn e2e_hub_forwards_on_two_threads() {
    let mut lab = Lab::new("wk");
    let hub = lab.node("hub", 1);
    let spokes: Vec<String> = (2..=5u8).map(|n| lab.node(&format!("s{n}"), n)).collect();
    lab.start(&hub, &seed(1));
    for (i, s) in spokes.iter().enumerate() {
        lab.start(s, &seed(i as u8 + 2));
    }
    let nbmas = ["172.16.0.2", "172.16.0.3", "172.16.0.4", "172.16.0.5"];
    lab.wait("every spoke registered", Duration::from_secs(40), || {
        lab.registered(&hub, &nbmas)
    });

    // A multi-queue TUN and a second forwarding thread.
    let flags = sh(&[
        "ip",
        "netns",
        "exec",
        &hub,
        "cat",
        "/sys/class/net/Tunnel0/tun_flags",
    ]);
    let flags = String::from_utf8_lossy(&flags.stdout);
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("tun_flags: {flags:?}"));
    assert_ne!(flags & IFF_MULTI_QUEUE, 0, "tun_flags {flags:#x}");
    let pid = lab.daemon(&hub).id();
    let before = thread_ticks(pid);
    assert!(
        before.iter().any(|(n, _)| n == "dmvpn-fwd1"),
        "threads: {before:?}"
    );
    assert!(lab.log(&hub).contains("2 forwarding threads"));

    // Every spoke floods the hub's tunnel address at once.
    let floods: Vec<_> = spokes
        .iter()
        .map(|s| {
            Command::new("ip")
                .args(["netns", "exec", s, "ping", "-n", "-q", "-f", "-s", "1300"])
                .args(["-c", &ECHOES.to_string(), "-W", "1", "192.168.1.1"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("ping")
        })
        .collect();
    for (s, p) in spokes.iter().zip(floods) {
        let (got, out) = ping_waited(p);
        assert_eq!(got, ECHOES, "{s}: flood ping answered:\n{out}");
    }
    let after = thread_ticks(pid);
    let (main, worker) = (
        ticks_of(&after, "dmvpnd") - ticks_of(&before, "dmvpnd"),
        ticks_of(&after, "dmvpn-fwd1") - ticks_of(&before, "dmvpn-fwd1"),
    );
    eprintln!("FIGURE hub CPU ticks during the floods: event loop {main}, worker {worker}");
    assert!(
        main > 0 && worker > 0,
        "both threads forwarded: event loop {main}, worker {worker} ticks"
    );

    // Nothing refused by the shared replay windows, every SA counted.
    for s in &nbmas {
        let sa = lab.ipsec_with(&hub, s).expect("SA with the spoke");
        assert!(
            sa.counters.decaps >= u64::from(ECHOES),
            "{s}: {:?}",
            sa.counters
        );
        assert_eq!(
            sa.counters.replay_failed + sa.counters.verify_failed + sa.counters.recv_errors,
            0,
            "{s}: {:?}",
            sa.counters
        );
    }

    // Spoke to spoke: relayed by the hub, then the shortcut.
    let s3: IpAddr = "172.16.0.3".parse().unwrap();
    let (got, out) = lab.ping_out(&spokes[0], "192.168.1.3", 10, &[]);
    assert!(got >= 8, "spoke-to-spoke ping: {got}/10\n{out}");
    lab.wait("shortcut to spoke 3", Duration::from_secs(10), || {
        lab.dmvpn_peers(&spokes[0])
            .iter()
            .any(|(n, st)| *n == s3 && *st == DmvpnState::Up)
    });
    assert_eq!(
        lab.ping(&spokes[0], "192.168.1.3", 5),
        5,
        "over the shortcut"
    );
    lab.stop_all();
}
