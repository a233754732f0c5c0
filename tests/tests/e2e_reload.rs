//! Reloading the hub's configuration while traffic flows, on real
//! `dmvpnd` processes in network namespaces.
//!
//! The seed topology (hub 172.16.0.1 with LAN 10.1.0.0/24, spokes .2 and
//! .3 with LANs 10.2/10.3, IPsec, phase 3) with continuous pings
//! (`ping -D -i 0.2`) from spoke 1's LAN to spoke 2's LAN (over the
//! spoke-to-spoke shortcut) and from both spoke LANs to the hub's LAN
//! (through the hub). On the hub, in turn:
//!
//! - `dmvpnctl reload` of a file with a static NHRP mapping added and the
//!   holdtime changed: it answers with both keys, the mapping shows in
//!   `show ip nhrp`;
//! - `dmvpnctl reload` of a broken file: exit status 1 with the
//!   `FILE:LINE:COL` error; the daemon keeps running on the old
//!   configuration;
//! - `dmvpnctl reload` of a file with another control socket: refused,
//!   naming the key;
//! - SIGHUP after the mapping was replaced by another: the new one shows,
//!   the old one is gone;
//! - `[log] filter` raised to `warn`: the next reload (the mapping
//!   removed) is applied and no longer logged.
//!
//! Each step runs under traffic for 2 s. Throughout, no echo is lost,
//! and the hub's IPsec SAs (inbound and outbound SPIs, `show crypto
//! ipsec sa`) and ISAKMP SAs (conn-ids) are the ones it had before the
//! first reload: nothing was renegotiated.
//!
//! Then, on spoke 2, a reload that replaces its NHS (the hub) by another
//! (a spoke needs one), at an address nothing answers: `show ip nhrp
//! nhs` lists only the new one; and one with the hub again: the hub is
//! back and responding (`R`) within seconds, the other is gone, and
//! spoke 2's LAN reaches the hub's again.
//!
//! A second test reloads what lives outside the node on spoke 1, under
//! the same traffic: the tunnel MTU and routes, the metrics endpoint, the
//! key log and the control socket, then the tunnel interface's name (see
//! `e2e_reload_daemon_side_keys`).
//!
//! Needs root, iproute2 and iputils-ping; fails (never skips) without them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use dmvpn_ctl::proto::{NhrpEntryType, Reply, Request};
use dmvpn_tests::*;

const S1: &str = "172.16.0.2";
const S2: &str = "172.16.0.3";
const HUB_LAN: &str = "10.1.0.10";
const S2_LAN: &str = "10.3.0.10";

/// Node `n`'s configuration (1 = hub): the seed topology with AES/SHA-2
/// and group 14, phase 3, NHRP holdtime 600 s.
fn config(n: u8) -> String {
    SeedNode {
        ike: "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\nlifetime = 86400\n",
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: true,
        hub_map: false,
    }
    .config(n)
}

/// `text` with `from` replaced by `to` (which must be there).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in {text}");
    text.replacen(from, to, 1)
}

/// The hub's configuration with its holdtime at 300 s and a static
/// mapping of `address` to `nbma`.
fn hub_with_map(address: &str, nbma: &str) -> String {
    let text = edit(&config(1), "holdtime = 600", "holdtime = 300");
    format!("{text}[[tunnel.nhrp.map]]\naddress = \"{address}\"\nnbma = \"{nbma}\"\n")
}

/// What must not change across a reload: per IPsec peer its inbound and
/// outbound SPIs, and every ISAKMP SA's (remote, conn-id).
#[derive(Debug, PartialEq, Eq)]
struct Crypto {
    ipsec: BTreeSet<(IpAddr, Vec<u32>, Vec<u32>)>,
    isakmp: BTreeSet<(IpAddr, u32)>,
}

fn crypto(lab: &Lab, ns: &str) -> Crypto {
    let ipsec = lab
        .ipsec(ns)
        .iter()
        .map(|p| {
            let spis = |v: &[dmvpn_ctl::proto::EspSa]| v.iter().map(|e| e.spi).collect();
            (p.current_peer, spis(&p.inbound), spis(&p.outbound))
        })
        .collect();
    let isakmp = match lab.ctl(ns, Request::ShowCryptoIsakmpSa) {
        Reply::IsakmpSa(v) => v.iter().map(|s| (s.remote, s.conn_id)).collect(),
        r => panic!("unexpected reply {r:?}"),
    };
    Crypto { ipsec, isakmp }
}

/// The static NHRP entries of `ns`: (tunnel address, NBMA).
fn static_maps(lab: &Lab, ns: &str) -> BTreeSet<(IpAddr, Option<IpAddr>)> {
    match lab.ctl(ns, Request::ShowNhrp) {
        Reply::Nhrp(v) => v
            .iter()
            .filter(|e| e.entry_type == NhrpEntryType::Static)
            .map(|e| (e.prefix, e.nbma))
            .collect(),
        r => panic!("unexpected reply {r:?}"),
    }
}

fn has_map(lab: &Lab, ns: &str, address: &str, nbma: &str) -> bool {
    static_maps(lab, ns).contains(&(address.parse().unwrap(), Some(nbma.parse().unwrap())))
}

/// `dmvpnctl --socket SOCK reload` for `ns`.
fn ctl_reload(lab: &Lab, ns: &str) -> Output {
    Command::new(dmvpnctl())
        .arg("--socket")
        .arg(lab.socket(ns))
        .arg("reload")
        .output()
        .expect("run dmvpnctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `line` starts `FILE:LINE:COL: ` for `file` with numbers ≥ 1.
fn located(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{file}:")) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let num = |p: Option<&str>| {
        p.and_then(|x| x.parse::<u32>().ok())
            .is_some_and(|n| n >= 1)
    };
    num(parts.next()) && num(parts.next()) && parts.next().is_some_and(|r| r.starts_with(' '))
}

/// Sequence numbers missing between the first and the last echo
/// answered in `[from, to]`, and how many were answered there.
fn lost(echoes: &[Echo], from: f64, to: f64) -> (Vec<u32>, usize) {
    let seqs: BTreeSet<u32> = echoes
        .iter()
        .filter(|e| e.at >= from && e.at <= to)
        .map(|e| e.seq)
        .collect();
    let (Some(lo), Some(hi)) = (seqs.first(), seqs.last()) else {
        return (Vec::new(), 0);
    };
    (
        (*lo..=*hi).filter(|s| !seqs.contains(s)).collect(),
        seqs.len(),
    )
}

/// Waits until every pinger has had ten more echoes answered (2 s) since
/// `t`, so that each step runs under traffic for a while.
fn echoes_after(lab: &Lab, pingers: &[Pinger], t: f64, what: &str) {
    lab.wait(what, Duration::from_secs(15), || {
        pingers.iter().all(|p| p.answered_after(t) >= 10)
    });
}

#[test]
fn e2e_reload_keeps_sas_and_traffic() {
    let mut lab = Lab::new("rl");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    let _h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    let h3 = lab.lan_host(&s2, 3);
    for (n, ns) in [(1, &hub), (2, &s1), (3, &s2)] {
        lab.start(ns, &config(n));
    }
    hub_lan_routes(&lab, &hub);
    lab.wait("both spokes registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1, S2])
    });
    lab.wait("LAN pings through the hub", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1 && lab.ping(&h3, HUB_LAN, 1) == 1
    });
    // Phase 3: the hub redirects, spoke 1 resolves spoke 2's LAN and
    // brings up a direct SA.
    lab.wait(
        "the spoke-to-spoke shortcut",
        Duration::from_secs(30),
        || {
            lab.ping(&h2, S2_LAN, 1);
            lab.ipsec_with(&s1, S2)
                .is_some_and(|sa| !sa.inbound.is_empty() && sa.counters.decaps > 0)
        },
    );

    let pingers = [
        lab.pinger(&h2, S2_LAN),
        lab.pinger(&h2, HUB_LAN),
        lab.pinger(&h3, HUB_LAN),
    ];
    lab.wait("every pinger answered", Duration::from_secs(10), || {
        pingers.iter().all(|p| p.answered_after(p.started) >= 5)
    });
    let before = crypto(&lab, &hub);
    assert_eq!(before.ipsec.len(), 2, "SAs with both spokes: {before:?}");
    let t0 = unix_now();
    let cfg = lab.config_path(&hub).display().to_string();

    // 1. A static mapping added and the holdtime changed.
    lab.write_config(&hub, &hub_with_map("192.168.1.99", "172.16.0.99"));
    let out = ctl_reload(&lab, &hub);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("Reloaded {cfg}: 2 changes\n"))
            && stdout.contains("tunnel[0].nhrp.holdtime  from the next registration\n")
            && stdout.contains("tunnel[0].nhrp.map       applied now\n"),
        "{stdout}"
    );
    assert!(has_map(&lab, &hub, "192.168.1.99", "172.16.0.99"));
    println!("FIGURE reload 1 (map added, holdtime): {stdout}");

    echoes_after(&lab, &pingers, unix_now(), "traffic after the first reload");

    // 2. A broken file: refused with FILE:LINE:COL, the old configuration stays.
    let broken = edit(
        &hub_with_map("192.168.1.99", "172.16.0.99"),
        "holdtime = 300",
        "holdtime = \"soon\"",
    );
    lab.write_config(&hub, &broken);
    let out = ctl_reload(&lab, &hub);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "dmvpnctl: dmvpnd: {cfg} not reloaded, the running configuration stays:\n"
        )) && stderr
            .lines()
            .any(|l| located(l, &cfg) && l.contains("tunnel[0].nhrp.holdtime")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(lab.alive(&hub), "dmvpnd survives a broken file");
    assert!(
        lab.log(&hub)
            .lines()
            .any(|l| l.contains(&format!("{cfg}:")) && l.contains("holdtime")),
        "the error is logged: {}",
        lab.log(&hub)
    );
    assert!(
        has_map(&lab, &hub, "192.168.1.99", "172.16.0.99"),
        "old configuration kept"
    );

    echoes_after(&lab, &pingers, unix_now(), "traffic after the broken file");

    // 3. A file the daemon cannot run (a second tunnel on the same
    //    source address): refused with the
    //    check's message, nothing applied.
    let path = lab.config_path(&hub);
    lab.write_config(&hub, &hub_with_map("192.168.1.99", "172.16.0.99"));
    let text_now = std::fs::read_to_string(&path).expect("read config");
    let second = "[[tunnel]]\nname = \"Tunnel1\"\naddress = \"192.168.2.1/24\"\nsource = \"172.16.0.1\"\nmode = \"gre\"\ndestination = \"172.16.0.2\"\n";
    std::fs::write(&path, format!("{text_now}\n{second}")).expect("write config");
    let out = ctl_reload(&lab, &hub);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("share source 172.16.0.1"), "{stderr}");
    assert!(lab.alive(&hub));

    echoes_after(
        &lab,
        &pingers,
        unix_now(),
        "traffic after the refused change",
    );

    // 4. SIGHUP: the mapping replaced by another.
    lab.write_config(&hub, &hub_with_map("192.168.1.98", "172.16.0.98"));
    let pid = lab.daemon(&hub).id();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    lab.wait(
        "the new mapping after SIGHUP",
        Duration::from_secs(5),
        || has_map(&lab, &hub, "192.168.1.98", "172.16.0.98"),
    );
    assert!(
        !has_map(&lab, &hub, "192.168.1.99", "172.16.0.99"),
        "the removed mapping is purged: {:?}",
        static_maps(&lab, &hub)
    );
    assert!(lab.alive(&hub), "SIGHUP does not end dmvpnd");
    assert!(
        lab.log(&hub).contains(&format!("{cfg} reloaded: 1 change")),
        "{}",
        lab.log(&hub)
    );

    // 5. `[log] filter` follows a reload: at `warn`, the next reload
    //    (the mapping removed) is applied but no longer logged.
    let quiet = hub_with_map("192.168.1.98", "172.16.0.98");
    lab.write_config(&hub, &quiet);
    let path = lab.config_path(&hub);
    let warn = edit(
        &std::fs::read_to_string(&path).expect("read config"),
        "filter = \"info\"",
        "filter = \"warn\"",
    );
    std::fs::write(&path, &warn).expect("write config");
    let out = ctl_reload(&lab, &hub);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("log.filter  applied now\n"),
        "{stdout}{}",
        text(&out.stderr)
    );
    let logged = |lab: &Lab| lab.log(&hub).matches(" INFO ").count();
    let before_quiet = logged(&lab);
    let unmapped = edit(
        &warn,
        "[[tunnel.nhrp.map]]\naddress = \"192.168.1.98\"\nnbma = \"172.16.0.98\"\n",
        "",
    );
    std::fs::write(&path, unmapped).expect("write config");
    let out = ctl_reload(&lab, &hub);
    assert!(
        out.status.success() && text(&out.stdout).contains("tunnel[0].nhrp.map  applied now\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(!has_map(&lab, &hub, "192.168.1.98", "172.16.0.98"));
    assert_eq!(
        logged(&lab),
        before_quiet,
        "no INFO line since: {}",
        lab.log(&hub)
    );

    // Traffic went on meanwhile; let it run a little longer.
    let t1 = unix_now();
    echoes_after(&lab, &pingers, t1, "traffic after SIGHUP");
    let t_end = unix_now();
    let after = crypto(&lab, &hub);
    assert_eq!(after, before, "no SA renegotiated on the hub");
    assert!(lab.registered(&hub, &[S1, S2]), "registrations kept");
    for p in pingers {
        let what = p.what.clone();
        let echoes = p.stop();
        let (missing, answered) = lost(&echoes, t0 - 1.0, t_end);
        println!(
            "FIGURE {what}: {answered} echoes answered in the {:.1} s from 1 s before the first reload to 2 s after the last, {} lost",
            t_end - (t0 - 1.0),
            missing.len()
        );
        assert!(missing.is_empty(), "{what}: echoes lost: {missing:?}");
        let span = t_end - (t0 - 1.0);
        assert!(
            answered as f64 >= span / 0.2 * 0.8,
            "{what}: only {answered} echoes in {span:.1} s"
        );
    }

    // 6. Spoke 2's NHS replaced, then added back.
    let nhs = |lab: &Lab| match lab.ctl(&s2, Request::ShowNhrpNhs) {
        Reply::NhrpNhs(v) => v,
        r => panic!("unexpected reply {r:?}"),
    };
    let only = |lab: &Lab, nbma: &str| {
        let v = nhs(lab);
        v.len() == 1 && v[0].nbma == Some(nbma.parse().unwrap())
    };
    let responding = |lab: &Lab| only(lab, "172.16.0.1") && nhs(lab)[0].state.responding;
    assert!(responding(&lab), "{:?}", nhs(&lab));
    let spoke = config(3);
    let nhs_line = "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n";
    let elsewhere = "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.250\"\nnbma = \"172.16.0.250\"\n";
    lab.write_config(&s2, &edit(&spoke, nhs_line, elsewhere));
    let out = ctl_reload(&lab, &s2);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("tunnel[0].nhrp.nhs[0]  applied now\n"),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(
        only(&lab, "172.16.0.250"),
        "the hub is no NHS any more: {:?}",
        nhs(&lab)
    );
    lab.write_config(&s2, &spoke);
    let t_added = unix_now();
    let out = ctl_reload(&lab, &s2);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("tunnel[0].nhrp.nhs[0]  applied now\n"),
        "{stdout}{}",
        text(&out.stderr)
    );
    lab.wait(
        "the NHS back and responding",
        Duration::from_secs(5),
        || responding(&lab),
    );
    let back = nhs(&lab)[0].clone();
    println!(
        "FIGURE NHS added by reload: responding after {:.3} s ({} sent, {} replies)",
        unix_now() - t_added,
        back.requests_sent,
        back.replies_received
    );
    // A fresh NHS state: the counters started again with the reload.
    assert!(
        back.replies_received >= 1 && back.requests_sent <= 2,
        "{back:?}"
    );
    assert!(
        lab.log(&s2).contains("NHS 192.168.1.1 (172.16.0.1) added"),
        "{}",
        lab.log(&s2)
    );
    lab.wait(
        "spoke 2's LAN reaches the hub's again",
        Duration::from_secs(10),
        || lab.ping(&h3, HUB_LAN, 1) == 1,
    );
    assert!(lab.registered(&hub, &[S1, S2]));
}

/// Spoke 1's configuration file with its control socket at `socket`,
/// its key log at `keys`, `[metrics]` listening on `metrics` (if any),
/// and the tunnel's MTU and routes as `body` has them.
fn spoke_file(socket: &Path, keys: &Path, metrics: Option<&str>, body: &str) -> String {
    let metrics = metrics
        .map(|a| format!("[metrics]\nlisten = \"{a}\"\n"))
        .unwrap_or_default();
    format!(
        "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\nkey_log = \"{}\"\n{metrics}{body}",
        socket.display(),
        keys.display()
    )
}

/// A hub and one spoke, each with a LAN host, started with `hub_config`
/// and `spoke_config`: returned (lab, hub, spoke, the spoke's LAN host)
/// once the spoke has registered and its LAN reaches the hub's.
fn hub_and_spoke(tag: &str, hub_config: &str, spoke_config: &str) -> (Lab, String, String, String) {
    let mut lab = Lab::new(tag);
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let _h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    lab.start(&hub, hub_config);
    lab.start(&s1, spoke_config);
    hub_lan_routes(&lab, &hub);
    lab.wait("the spoke registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1])
    });
    lab.wait("LAN pings through the hub", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1
    });
    (lab, hub, s1, h2)
}

/// A ping every 0.2 s from `host` to the hub's LAN, once it is answered.
fn steady_pinger(lab: &Lab, host: &str) -> Pinger {
    let pinger = lab.pinger(host, HUB_LAN);
    lab.wait("the pinger answered", Duration::from_secs(5), || {
        pinger.answered_after(pinger.started) > 0
    });
    pinger
}

/// `dmvpnctl --socket SOCKET reload`, which must succeed: its output.
fn reload_at(socket: &Path) -> String {
    let out = Command::new(dmvpnctl())
        .arg("--socket")
        .arg(socket)
        .arg("reload")
        .output()
        .expect("run dmvpnctl");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    stdout
}

/// Whether `report` lists `key` with `effect`.
fn lists(report: &str, key: &str, effect: &str) -> bool {
    report.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some(key) && w.collect::<Vec<_>>().join(" ") == effect
    })
}

/// `GET /metrics` from `addr` inside `ns`: the body, or `None` when the
/// connection is refused.
fn scrape(ns: &str, addr: &str) -> Option<String> {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sS",
        "--max-time",
        "5",
        &format!("http://{addr}/metrics"),
    ]);
    out.status.success().then(|| text(&out.stdout))
}

/// `ip route show PREFIX` in `ns`.
fn tunnel_route(ns: &str, prefix: &str) -> String {
    text(&sh(&["ip", "-n", ns, "route", "show", prefix]).stdout)
}

/// The daemon's own keys change in place on spoke 1, under traffic: the
/// tunnel MTU (`ip link`), a tunnel route added then removed (`ip
/// route`), the metrics endpoint started then moved (the new address
/// scraped, the old one refused), the key log moved to a new file, and
/// the control socket moved and back (the reload that moved it is
/// answered; the new path answers, the old one is gone), then given
/// another mode in place. No echo is
/// lost and spoke 1's SAs stay; after a negotiation (its SA with the hub
/// cleared), the new key log holds the keys, with mode 0600, and the old
/// one got nothing more. Reloads that cannot bind the metrics address or
/// open the key log are refused with the reason and change nothing.
/// Last, the tunnel interface is renamed: its routes (configured, NHRP's,
/// the kernel's) are all back under the new name.
#[test]
fn e2e_reload_daemon_side_keys() {
    let mut lab = Lab::new("rd");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    let _h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    let h3 = lab.lan_host(&s2, 3);
    for (n, ns) in [(1, &hub), (2, &s1), (3, &s2)] {
        lab.start(ns, &config(n));
    }
    hub_lan_routes(&lab, &hub);
    lab.wait("both spokes registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1, S2])
    });
    lab.wait(
        "the spoke-to-spoke shortcut",
        Duration::from_secs(30),
        || {
            lab.ping(&h2, S2_LAN, 1);
            lab.ipsec_with(&s1, S2)
                .is_some_and(|sa| !sa.inbound.is_empty() && sa.counters.decaps > 0)
        },
    );
    let pingers = [
        lab.pinger(&h2, S2_LAN),
        lab.pinger(&h2, HUB_LAN),
        lab.pinger(&h3, HUB_LAN),
    ];
    lab.wait("every pinger answered", Duration::from_secs(10), || {
        pingers.iter().all(|p| p.answered_after(p.started) >= 5)
    });
    let before = crypto(&lab, &s1);
    assert_eq!(
        before.ipsec.len(),
        2,
        "SAs with the hub and spoke 2: {before:?}"
    );
    let t0 = unix_now();
    let old_socket = lab.socket(&s1);
    let new_socket = lab.path("s1-moved.sock");
    let old_keys = lab.keylog(&s1);
    let new_keys = lab.path("s1-new.keys");
    let old_keys_len = std::fs::metadata(&old_keys).expect("key log").len();
    assert!(text(&sh(&["ip", "-n", &s1, "link", "show", "Tunnel0"]).stdout).contains(" mtu 1400 "));
    assert!(tunnel_route(&s1, "10.9.0.0/24").is_empty());
    assert!(scrape(&s1, "127.0.0.1:9466").is_none());

    // 1. MTU 1300, a route added, metrics started, the key log and the
    //    control socket moved: asked on the old socket, answered there.
    let body = edit(&config(2), "mtu = 1400", "mtu = 1300");
    let body = edit(
        &body,
        "\"10.3.0.0/24\"]",
        "\"10.3.0.0/24\", \"10.9.0.0/24\"]",
    );
    let file = spoke_file(&new_socket, &new_keys, Some("127.0.0.1:9466"), &body);
    std::fs::write(lab.config_path(&s1), file).expect("write config");
    let report = reload_at(&old_socket);
    println!("FIGURE reload of the daemon's keys: {report}");
    for (key, effect) in [
        ("control.socket", "applied now"),
        ("log.key_log", "for new negotiations"),
        ("metrics", "applied now"),
        ("tunnel[0].mtu", "applied now"),
        ("tunnel[0].routes", "applied now"),
    ] {
        assert!(lists(&report, key, effect), "{key}: {report}");
    }
    assert!(report.contains(": 5 changes\n"), "{report}");
    let link = text(&sh(&["ip", "-n", &s1, "link", "show", "Tunnel0"]).stdout);
    assert!(link.contains(" mtu 1300 "), "{link}");
    let route = tunnel_route(&s1, "10.9.0.0/24");
    assert!(route.contains("dev Tunnel0"), "{route}");
    let body_m = scrape(&s1, "127.0.0.1:9466").expect("the new metrics endpoint answers");
    assert!(body_m.contains("dmvpn_"), "{body_m}");
    lab.wait(
        "the old control socket removed",
        Duration::from_secs(5),
        || !old_socket.exists(),
    );
    let peers = dmvpn_ctl::client::request(&new_socket, &Request::ShowDmvpn);
    assert!(
        matches!(peers, Ok(dmvpn_ctl::proto::Response::Ok(Reply::Dmvpn(_)))),
        "the moved socket answers: {peers:?}"
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&new_keys), 0o600, "the new key log is private");
    assert!(lab.alive(&s1));

    echoes_after(&lab, &pingers, unix_now(), "traffic after the first reload");

    // 2. The route removed, metrics moved, the control socket back.
    let body = edit(&config(2), "mtu = 1400", "mtu = 1300");
    let file = spoke_file(&old_socket, &new_keys, Some("127.0.0.1:9467"), &body);
    std::fs::write(lab.config_path(&s1), file).expect("write config");
    let report = reload_at(&new_socket);
    for (key, effect) in [
        ("control.socket", "applied now"),
        ("metrics.listen", "applied now"),
        ("tunnel[0].routes", "applied now"),
    ] {
        assert!(lists(&report, key, effect), "{key}: {report}");
    }
    assert!(report.contains(": 3 changes\n"), "{report}");
    assert!(tunnel_route(&s1, "10.9.0.0/24").is_empty(), "route removed");
    assert!(
        scrape(&s1, "127.0.0.1:9467").is_some_and(|b| b.contains("dmvpn_")),
        "the moved metrics endpoint answers"
    );
    assert!(
        scrape(&s1, "127.0.0.1:9466").is_none(),
        "the old one is closed"
    );
    lab.wait(
        "the moved control socket removed",
        Duration::from_secs(5),
        || !new_socket.exists(),
    );
    assert!(matches!(lab.ctl(&s1, Request::ShowDmvpn), Reply::Dmvpn(_)));

    // A new mode on the same path: applied to the socket file in place.
    assert_eq!(mode(&old_socket), 0o600);
    let file = spoke_file(&old_socket, &new_keys, Some("127.0.0.1:9467"), &body);
    let file = edit(&file, "[control]\n", "[control]\nmode = \"0660\"\n");
    std::fs::write(lab.config_path(&s1), file).expect("write config");
    let report = reload_at(&old_socket);
    assert!(
        lists(&report, "control.mode", "applied now") && report.contains(": 1 change\n"),
        "{report}"
    );
    assert_eq!(mode(&old_socket), 0o660, "the socket's new mode");
    assert!(matches!(lab.ctl(&s1, Request::ShowDmvpn), Reply::Dmvpn(_)));

    // 3. A metrics address that cannot be bound, then a key log that
    //    cannot be opened, each with a new MTU: refused with the reason,
    //    nothing applied, the endpoint still on the old address.
    let mtu_1280 = edit(&config(2), "mtu = 1400", "mtu = 1280");
    let no_dir = lab.path("missing/s1.keys");
    for (metrics, keys, reason) in [
        (
            "192.0.2.1:9468",
            new_keys.clone(),
            "cannot listen on 192.0.2.1:9468".to_string(),
        ),
        (
            "127.0.0.1:9467",
            no_dir.clone(),
            no_dir.display().to_string(),
        ),
    ] {
        let file = spoke_file(&old_socket, &keys, Some(metrics), &mtu_1280);
        std::fs::write(lab.config_path(&s1), file).expect("write config");
        let out = ctl_reload(&lab, &s1);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&reason) && stderr.contains("the running configuration stays"),
            "{stderr}"
        );
        println!("FIGURE refused reload: {stderr}");
        let link = text(&sh(&["ip", "-n", &s1, "link", "show", "Tunnel0"]).stdout);
        assert!(link.contains(" mtu 1300 "), "MTU kept: {link}");
        assert!(scrape(&s1, "127.0.0.1:9467").is_some(), "metrics kept");
    }
    assert!(lab.alive(&s1));

    echoes_after(
        &lab,
        &pingers,
        unix_now(),
        "traffic after the second reload",
    );
    let t_end = unix_now();
    assert_eq!(crypto(&lab, &s1), before, "no SA renegotiated on spoke 1");
    assert!(lab.registered(&hub, &[S1, S2]), "registrations kept");
    for p in pingers {
        let what = p.what.clone();
        let echoes = p.stop();
        let (missing, answered) = lost(&echoes, t0 - 1.0, t_end);
        println!(
            "FIGURE {what}: {answered} echoes answered across the daemon-side reloads ({:.1} s), {} lost",
            t_end - (t0 - 1.0),
            missing.len()
        );
        assert!(missing.is_empty(), "{what}: echoes lost: {missing:?}");
    }

    // The next negotiation's keys go to the new key log only.
    assert_eq!(
        std::fs::metadata(&old_keys).expect("old key log").len(),
        old_keys_len,
        "nothing more in the old key log"
    );
    lab.ctl(
        &s1,
        Request::ClearCryptoSa {
            peer: Some("172.16.0.1".parse().unwrap()),
        },
    );
    lab.wait(
        "the hub's new SA keys logged",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&new_keys)
                .is_ok_and(|k| k.lines().any(|l| l.contains("\"172.16.0.1\"")))
        },
    );
    assert_eq!(mode(&new_keys), 0o600);
    assert_eq!(
        std::fs::metadata(&old_keys).expect("old key log").len(),
        old_keys_len,
        "nothing more in the old key log"
    );

    // 4. The tunnel interface renamed: every route through it is back
    //    under the new name, `show dmvpn` names it, the SAs stay and the
    //    LANs reach each other again.
    lab.wait("traffic after the new SA", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1 && lab.ping(&h2, S2_LAN, 1) == 1
    });
    // In the kernel's order: a shortcut's proto 78 route stays in front
    // of the configured route of the same prefix.
    let routes_via = |dev: &str| -> Vec<String> {
        text(&sh(&["ip", "-n", &s1, "route", "show", "dev", dev]).stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let routes_before = routes_via("Tunnel0");
    assert!(
        routes_before.iter().any(|l| l.starts_with("10.1.0.0/24")),
        "{routes_before:?}"
    );
    let sas = crypto(&lab, &s1);
    let file = spoke_file(&old_socket, &new_keys, Some("127.0.0.1:9467"), &body);
    let file = edit(&file, "[control]\n", "[control]\nmode = \"0660\"\n");
    let file = edit(&file, "name = \"Tunnel0\"", "name = \"Tunnel7\"");
    std::fs::write(lab.config_path(&s1), file).expect("write config");
    let t_rename = unix_now();
    let report = reload_at(&old_socket);
    assert!(
        lists(&report, "tunnel[0].name", "applied now") && report.contains(": 1 change\n"),
        "{report}"
    );
    let link = text(&sh(&["ip", "-n", &s1, "link", "show", "Tunnel7"]).stdout);
    assert!(
        link.contains(" mtu 1300 ") && link.contains(",UP"),
        "{link}"
    );
    assert!(
        !sh(&["ip", "-n", &s1, "link", "show", "Tunnel0"])
            .status
            .success(),
        "no Tunnel0 any more"
    );
    assert_eq!(routes_via("Tunnel7"), routes_before, "every route back");
    match lab.ctl(&s1, Request::ShowDmvpn) {
        Reply::Dmvpn(v) => assert_eq!(v[0].interface, "Tunnel7"),
        r => panic!("unexpected reply {r:?}"),
    }
    let back = lab.wait(
        "the LANs through the renamed tunnel",
        Duration::from_secs(10),
        || lab.ping(&h2, HUB_LAN, 1) == 1 && lab.ping(&h2, S2_LAN, 1) == 1,
    );
    println!(
        "FIGURE tunnel renamed by reload: routes {routes_before:?} back, LANs answered {:.3} s after the reload ({back:?} of waiting)",
        unix_now() - t_rename
    );
    assert_eq!(crypto(&lab, &s1), sas, "no SA renegotiated by the rename");
}

/// A spoke's tunnel source moved by a reload: refused while the new
/// address is not the host's; once it is added to the NBMA interface,
/// `dmvpnctl reload` applies it;
/// dmvpnd binds IKE to the new address, re-keys and registers from it,
/// and LAN traffic to the hub resumes (the time from the reload to the
/// first answered echo is printed). The old address is then removed:
/// nothing depends on it any more.
#[test]
fn e2e_reload_moves_the_tunnel_source() {
    const MOVED: &str = "172.16.0.22";
    let (mut lab, hub, s1, h2) = hub_and_spoke("rs", &config(1), &config(2));
    let pinger = steady_pinger(&lab, &h2);
    let moved = edit(
        &config(2),
        &format!("source = \"{S1}\""),
        &format!("source = \"{MOVED}\""),
    );
    // Not yet an address of the spoke: refused.
    lab.write_config(&s1, &moved);
    let out = ctl_reload(&lab, &s1);
    let stderr = text(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && stderr.contains(&format!("source {MOVED} is not an address of this host")),
        "{stderr}"
    );
    // The old (primary) address is removed later: the new one, a
    // secondary in the same subnet, must survive that.
    ok(&[
        "ip",
        "netns",
        "exec",
        &s1,
        "sysctl",
        "-qw",
        "net.ipv4.conf.nbma0.promote_secondaries=1",
    ]);
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "add",
        &format!("{MOVED}/24"),
        "dev",
        "nbma0",
    ]);
    let t0 = unix_now();
    let out = ctl_reload(&lab, &s1);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains(
                "tunnel[0].source  applied now; from a new address SAs are renegotiated and registrations sent again\n"
            ),
        "{stdout}{}",
        text(&out.stderr)
    );
    lab.wait(
        "the hub lists the spoke at its new NBMA address",
        Duration::from_secs(15),
        || lab.registered(&hub, &[MOVED]),
    );
    lab.wait(
        "echoes answered after the reload",
        Duration::from_secs(10),
        || pinger.answered_after(t0) > 0,
    );
    let registered_after = unix_now() - t0;
    // IKE now listens on the new address.
    let udp = sh(&["ip", "netns", "exec", &s1, "ss", "-Hunl"]);
    let udp = text(&udp.stdout);
    assert!(
        udp.contains(&format!("{MOVED}:500")) && !udp.contains(&format!("{S1}:500")),
        "{udp}"
    );
    assert!(lab.peer_up(&hub, MOVED), "{:?}", lab.dmvpn_peers(&hub));
    // The old address gone: traffic goes on from the new one.
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "del",
        &format!("{S1}/24"),
        "dev",
        "nbma0",
    ]);
    let t1 = unix_now();
    lab.wait(
        "echoes after the old address went",
        Duration::from_secs(10),
        || pinger.answered_after(t1) >= 5,
    );
    let t_end = unix_now();
    let echoes = pinger.stop();
    // The pinger sends every 0.2 s: a longer gap after the reload is
    // the interruption.
    let gap = longest_gap(&echoes, t0, t_end);
    println!(
        "FIGURE tunnel source moved by reload: longest LAN traffic gap {:.2} s (from {:+.2} s to {:+.2} s around the reload); the hub listed the new address {registered_after:.2} s after it",
        gap.secs(),
        gap.from - t0,
        gap.to - t0
    );
    assert!(gap.secs() < 5.0, "{gap:?}");
    assert!(lab.alive(&s1), "the spoke was not restarted");
    assert!(
        !lab.registered(&hub, &[S1]),
        "the old mapping is gone from the hub"
    );
    assert!(
        lab.log(&s1)
            .contains(&format!("NBMA address changed from {S1} to {MOVED}")),
        "{}",
        lab.log(&s1)
    );

    // The source becomes the interface itself (its address is the one in
    // use: nothing moves); the interface is followed from then on: when
    // its address moves again, the spoke negotiates from the new one.
    // (Registering the address again from there waits for the hub to
    // find the old NBMA address dead, as e2e_source shows.)
    const THEN: &str = "172.16.0.23";
    lab.write_config(
        &s1,
        &edit(
            &config(2),
            &format!("source = \"{S1}\""),
            "source = \"nbma0\"",
        ),
    );
    let out = ctl_reload(&lab, &s1);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success()
            && stdout.lines().any(|l| {
                l.trim_start().starts_with("tunnel[0].source ") && l.contains("applied now;")
            }),
        "{stdout}{}",
        text(&out.stderr)
    );
    let udp = text(&sh(&["ip", "netns", "exec", &s1, "ss", "-Hunl"]).stdout);
    assert!(udp.contains("0.0.0.0:500"), "bound to any address: {udp}");
    for (args, what) in [(["add", THEN], "added"), (["del", MOVED], "removed")] {
        let out = sh(&[
            "ip",
            "-n",
            &s1,
            "addr",
            args[0],
            &format!("{}/24", args[1]),
            "dev",
            "nbma0",
        ]);
        assert!(
            out.status.success(),
            "address {what}: {}",
            text(&out.stderr)
        );
    }
    let t2 = unix_now();
    lab.wait(
        "an SA with the spoke at the interface's new address",
        Duration::from_secs(10),
        || {
            lab.ipsec_with(&hub, THEN)
                .is_some_and(|sa| !sa.inbound.is_empty())
        },
    );
    println!(
        "FIGURE interface source followed after a reload: SA from the new address {:.2} s after it moved",
        unix_now() - t2
    );
    assert!(
        lab.log(&s1)
            .contains(&format!("NBMA address changed from {MOVED} to {THEN}")),
        "{}",
        lab.log(&s1)
    );
}

/// A spoke's tunnel address changed by a reload: dmvpnd moves the TUN
/// device to the new address (the old one goes), registers it with the
/// hub at once over the SA it has, and the hub reaches the spoke at its
/// new address; the spoke's LAN traffic to the hub goes on (the longest
/// gap is printed).
#[test]
fn e2e_reload_changes_the_tunnel_address() {
    const NEW: &str = "192.168.1.12";
    let (mut lab, hub, s1, h2) = hub_and_spoke("ra", &config(1), &config(2));
    let pinger = steady_pinger(&lab, &h2);
    let before = crypto(&lab, &s1);
    lab.write_config(
        &s1,
        &edit(
            &config(2),
            "address = \"192.168.1.2/24\"",
            &format!("address = \"{NEW}/24\""),
        ),
    );
    let t0 = unix_now();
    let out = ctl_reload(&lab, &s1);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("tunnel[0].address  applied now; registrations sent again\n"),
        "{stdout}{}",
        text(&out.stderr)
    );
    let hub_has = |lab: &Lab, t: &str| match lab.ctl(&hub, Request::ShowNhrp) {
        Reply::Nhrp(v) => v.iter().any(|e| {
            e.prefix == t.parse::<IpAddr>().unwrap() && e.nbma == Some(S1.parse().unwrap())
        }),
        r => panic!("unexpected reply {r:?}"),
    };
    lab.wait(
        "the hub has the new address registered",
        Duration::from_secs(5),
        || hub_has(&lab, NEW),
    );
    let registered_after = unix_now() - t0;
    let tun = || {
        let out = sh(&[
            "ip", "-n", &s1, "-4", "-o", "addr", "show", "dev", "Tunnel0",
        ]);
        text(&out.stdout)
    };
    lab.wait(
        "Tunnel0 moved to the new address",
        Duration::from_secs(5),
        || {
            let t = tun();
            t.contains(&format!("inet {NEW}/24")) && !t.contains("inet 192.168.1.2/")
        },
    );
    lab.wait(
        "the hub reaches the new address",
        Duration::from_secs(10),
        || lab.ping(&hub, NEW, 1) == 1,
    );
    let t1 = unix_now();
    lab.wait("LAN traffic goes on", Duration::from_secs(10), || {
        pinger.answered_after(t1) >= 5
    });
    let t_end = unix_now();
    let echoes = pinger.stop();
    let gap = longest_gap(&echoes, t0, t_end);
    println!(
        "FIGURE tunnel address changed by reload: the hub had the new address {registered_after:.3} s after the reload; longest LAN traffic gap {:.2} s",
        gap.secs()
    );
    assert!(gap.secs() < 2.0, "{gap:?}");
    assert_eq!(crypto(&lab, &s1), before, "no SA renegotiated");
    assert!(lab.alive(&s1), "the spoke was not restarted");
}

/// Tunnel protection switched off and on by reloads, hub and spoke. Off:
/// the SAs are deleted and LAN traffic flows as plain GRE. On again on
/// the hub only: the spoke's plain GRE is refused (and logged as not
/// protected by IPsec); on the spoke too: an SA is negotiated and
/// traffic flows again (the time from that reload to the first answered
/// ping is printed).
#[test]
fn e2e_reload_switches_protection() {
    // Without IPsec a hub takes NHRP only from the NBMA prefixes allowed.
    let protected = |n: u8| {
        edit(
            &config(n),
            "network_id = 1\n",
            "network_id = 1\nallowed_nbma = [\"172.16.0.0/24\"]\n",
        )
    };
    let plain = |n: u8| edit(&protected(n), "protection = \"cisco\"\n", "");
    let (lab, hub, s1, h2) = hub_and_spoke("rp", &protected(1), &protected(2));
    let switched = |lab: &Lab, ns: &str| {
        let out = ctl_reload(lab, ns);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success()
                && stdout.contains(
                    "tunnel[0].protection  applied now; SAs negotiated or deleted as protection requires\n"
                ),
            "{stdout}{}",
            text(&out.stderr)
        );
    };
    let has_sa = |lab: &Lab, ns: &str, peer: &str| {
        lab.ipsec_with(ns, peer)
            .is_some_and(|sa| !sa.inbound.is_empty())
    };

    // Off, on both.
    lab.write_config(&hub, &plain(1));
    switched(&lab, &hub);
    lab.write_config(&s1, &plain(2));
    switched(&lab, &s1);
    assert!(!has_sa(&lab, &hub, S1) && !has_sa(&lab, &s1, "172.16.0.1"));
    lab.wait("LAN pings in plain GRE", Duration::from_secs(10), || {
        lab.ping(&h2, HUB_LAN, 1) == 1
    });
    assert!(
        !has_sa(&lab, &hub, S1),
        "no SA: {:?}",
        lab.ipsec_with(&hub, S1)
    );

    // On again, on the hub only: the spoke's plain GRE is refused.
    lab.write_config(&hub, &protected(1));
    switched(&lab, &hub);
    assert_eq!(lab.ping(&h2, HUB_LAN, 3), 0, "plain GRE refused");
    lab.wait(
        "the hub logs GRE not protected by IPsec",
        Duration::from_secs(15),
        || {
            lab.ping(&h2, HUB_LAN, 1);
            lab.log(&hub).contains("RECVD_PKT_NOT_IPSEC")
        },
    );

    // On the spoke too: an SA, and traffic again.
    lab.write_config(&s1, &protected(2));
    let t0 = unix_now();
    switched(&lab, &s1);
    lab.wait("LAN pings over IPsec", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1
    });
    println!(
        "FIGURE protection on again by reload: LAN ping answered {:.2} s after the spoke's reload",
        unix_now() - t0
    );
    assert!(has_sa(&lab, &hub, S1) && has_sa(&lab, &s1, "172.16.0.1"));
    assert!(lab.registered(&hub, &[S1]));
}

/// A spoke's multipoint tunnel made point-to-point to its hub by a
/// reload: the tunnel starts again in the running process (its SAs are
/// deleted and negotiated again, NHRP registers at once) and the spoke's
/// LAN traffic to the hub goes on; the gap is printed.
#[test]
fn e2e_reload_new_mode_starts_the_tunnel_again() {
    let (mut lab, hub, s1, h2) = hub_and_spoke("rm", &config(1), &config(2));
    let pinger = steady_pinger(&lab, &h2);
    let before = crypto(&lab, &s1);
    let pid = lab.daemon(&s1).id();
    lab.write_config(
        &s1,
        &edit(
            &config(2),
            "mode = \"gre-multipoint\"",
            "mode = \"gre\"\ndestination = \"172.16.0.1\"",
        ),
    );
    let t0 = unix_now();
    let out = ctl_reload(&lab, &s1);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success()
            && stdout.lines().any(|l| {
                l.trim_start().starts_with("tunnel[0].mode ")
                && l.ends_with(
                    "applied now; the tunnel starts again (SAs deleted, registrations sent again)",
                )
            }),
        "{stdout}{}",
        text(&out.stderr)
    );
    let t1 = unix_now();
    lab.wait("LAN traffic goes on", Duration::from_secs(15), || {
        pinger.answered_after(t1) >= 5
    });
    let t_end = unix_now();
    let echoes = pinger.stop();
    let gap = longest_gap(&echoes, t0, t_end);
    println!(
        "FIGURE tunnel mode changed by reload: longest LAN traffic gap {:.2} s",
        gap.secs()
    );
    assert!(
        lab.alive(&s1) && lab.daemon(&s1).id() == pid,
        "the same process"
    );
    assert_ne!(crypto(&lab, &s1), before, "SAs negotiated again");
    assert!(lab.registered(&hub, &[S1]));
    assert!(
        lab.log(&s1)
            .contains("the tunnel starts again under its new role or mode"),
        "{}",
        lab.log(&s1)
    );
}
