//! `dmvpn-lab netns`: a hub and spokes as real `dmvpnd` processes in
//! network namespaces, each with a LAN host behind it, 80/20 ping flows
//! from the LAN hosts, a summary, and removal of everything created —
//! also on Ctrl-C or failure (a drop guard owns namespaces and daemons).
//!
//! Layout (prefix `dl<pid>`): `P-wan` holds a bridge joining every node's
//! `wan0` (NBMA 172.16.0.0/24, hub .1, spoke k .1+k); node `P-nK` has a
//! LAN `lan0` to host namespace `P-hK` (hub LAN 10.255.0.0/24, spoke k
//! 10.k.0.0/24, host .10). Tunnel 192.168.1.0/24. Spokes announce no LAN
//! prefix over NHRP, so each spoke masquerades its LAN into the tunnel;
//! spoke-to-spoke flows ping the other spoke's tunnel address.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cli::NetnsArgs;
use crate::node::{NodeSpec, Role};
use crate::real::RealFactory;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted; cleaned up".into())
    } else {
        Ok(())
    }
}

/// Runs a command to completion; the error carries its stderr.
fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run `{}`: {e} (is iproute2/nftables installed?)",
                args[0]
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// Everything the lab created; dropping it removes it all.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    daemons: Vec<(String, Child)>,
}

impl Lab {
    fn ns(&mut self, name: &str) -> Result<String, String> {
        let full = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &full])?;
        self.namespaces.push(full.clone());
        in_ns(&full, &["ip", "link", "set", "lo", "up"])?;
        Ok(full)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.daemons {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn find_bin(dir: &Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    let dir = match dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot locate dmvpn-lab: {e}"))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build it (`cargo build -p dmvpn-agent -p dmvpn-ctl`) or pass --bin-dir",
            p.display()
        ))
    }
}

/// Peers (NBMA) with at least one entry in state `up`, from `show dmvpn --json`.
fn up_peers(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(n), Some(serde_json::Value::Array(es))) = (m.get("nbma"), m.get("entries"))
                && es
                    .iter()
                    .any(|e| e.get("state").and_then(|s| s.as_str()) == Some("up"))
            {
                out.insert(n.as_str().unwrap_or_default().to_string());
            }
            m.values().for_each(|x| up_peers(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| up_peers(x, out)),
        _ => {}
    }
}

struct Node {
    ns: String,
    socket: PathBuf,
    nbma: Ipv4Addr,
    tunnel: Ipv4Addr,
}

fn show(ctl: &Path, n: &Node, json: bool) -> Result<String, String> {
    let s = n.socket.display().to_string();
    let ctl = ctl.display().to_string();
    let mut a = vec![ctl.as_str(), "--socket", s.as_str()];
    if json {
        a.push("--json");
    }
    a.extend(["show", "dmvpn"]);
    sh(&a)
}

/// Ping payload size: ESP packets this big carry pings, never NHRP, so the
/// spokes' nft counters tell direct spoke-to-spoke packets apart.
const PING_SIZE: usize = 600;

/// One ping flow's outcome.
struct FlowResult {
    spoke_to_spoke: bool,
    sent: u64,
    received: u64,
    rtts_ms: Vec<f64>,
}

fn ping(ns: &str, dst: Ipv4Addr, count: u32) -> FlowResult {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-s",
            &PING_SIZE.to_string(),
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
        ])
        .arg(dst.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rtts_ms: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    FlowResult {
        spoke_to_spoke: false,
        sent: u64::from(count),
        received: rtts_ms.len() as u64,
        rtts_ms,
    }
}

#[derive(Serialize, Default)]
struct Summary {
    spokes: usize,
    duration_s: f64,
    registered: usize,
    flows: u64,
    flows_spoke_to_spoke: u64,
    pings_sent: u64,
    pings_received: u64,
    rtt_median_ms: f64,
    rtt_p99_ms: f64,
    first_ping_lost_or_slow: u64,
    spoke_tunnels_peak: usize,
    spoke_tunnels_mean: f64,
    hub_tunnels_peak: usize,
    /// ESP packets sent spoke to spoke directly (requests and replies, plus
    /// a few NHRP messages).
    spoke_to_spoke_direct_esp: u64,
    /// 1 − direct / spoke-to-spoke ping packets: the share the hub relayed.
    relayed_share_approx: f64,
}

pub fn run(a: &NetnsArgs) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("netns needs root (it creates network namespaces, veth pairs and TUN devices): run it with sudo".into());
    }
    if a.spokes > 200 {
        return Err(format!("--spokes {}: at most 200 in netns mode", a.spokes));
    }
    let dmvpnd = find_bin(&a.bin_dir, "dmvpnd")?;
    let ctl = find_bin(&a.bin_dir, "dmvpnctl")?;
    for tool in ["ip", "nft", "ping"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "`{tool}` not found: install iproute2, nftables and iputils-ping"
            ));
        }
    }
    // SAFETY: installing an async-signal-safe handler that only stores an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let tmp;
    let work: PathBuf = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("dmvpn-lab-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            tmp
        }
    };
    let mut lab = Lab {
        prefix: format!("dl{}", std::process::id()),
        namespaces: Vec::new(),
        daemons: Vec::new(),
    };
    let r = run_in(a, &mut lab, &work, &dmvpnd, &ctl);
    drop(lab);
    if a.work_dir.is_none() {
        if r.is_ok() {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            eprintln!("dmvpn-lab: logs and configs kept in {}", work.display());
        }
    }
    r
}

fn run_in(
    a: &NetnsArgs,
    lab: &mut Lab,
    work: &Path,
    dmvpnd: &Path,
    ctl: &Path,
) -> Result<(), String> {
    let wan = lab.ns("wan")?;
    in_ns(&wan, &["ip", "link", "add", "br0", "type", "bridge"])?;
    in_ns(&wan, &["ip", "link", "set", "br0", "up"])?;
    let hub_spec = NodeSpec {
        role: Role::Hub,
        index: 0,
        nbma: Ipv4Addr::new(172, 16, 0, 1),
        tunnel: Ipv4Addr::new(192, 168, 1, 1),
        lan: Ipv4Addr::new(10, 255, 0, 0),
    };
    let mut factory = RealFactory::new(a.idle_timeout);
    factory.max_send = Some((a.max_send, a.max_send_interval));
    let mut nodes = Vec::new();
    for k in 0..=a.spokes {
        interrupted()?;
        let spec = if k == 0 {
            hub_spec.clone()
        } else {
            NodeSpec {
                role: Role::Spoke,
                index: k,
                nbma: Ipv4Addr::new(172, 16, 0, 1 + k as u8),
                tunnel: Ipv4Addr::new(192, 168, 1, 1 + k as u8),
                lan: Ipv4Addr::new(10, k as u8, 0, 0),
            }
        };
        let ns = lab.ns(&format!("n{k}"))?;
        let host = lab.ns(&format!("h{k}"))?;
        let v = format!("v{k}");
        sh(&[
            "ip", "link", "add", &v, "netns", &wan, "type", "veth", "peer", "name", "wan0",
            "netns", &ns,
        ])?;
        in_ns(&wan, &["ip", "link", "set", &v, "master", "br0", "up"])?;
        in_ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", spec.nbma),
                "dev",
                "wan0",
            ],
        )?;
        in_ns(&ns, &["ip", "link", "set", "wan0", "up"])?;
        sh(&[
            "ip", "link", "add", "lan0", "netns", &ns, "type", "veth", "peer", "name", "eth0",
            "netns", &host,
        ])?;
        let o = spec.lan.octets();
        let gw = Ipv4Addr::new(o[0], o[1], o[2], 1);
        let hip = Ipv4Addr::new(o[0], o[1], o[2], 10);
        in_ns(
            &ns,
            &["ip", "addr", "add", &format!("{gw}/24"), "dev", "lan0"],
        )?;
        in_ns(&ns, &["ip", "link", "set", "lan0", "up"])?;
        in_ns(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        in_ns(
            &host,
            &["ip", "addr", "add", &format!("{hip}/24"), "dev", "eth0"],
        )?;
        in_ns(&host, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(
            &host,
            &["ip", "route", "add", "default", "via", &gw.to_string()],
        )?;
        if k > 0 {
            let rules = format!(
                "table ip dmvpnlab {{\n counter to_hub {{ }}\n counter direct {{ }}\n chain post {{\n  type nat hook postrouting priority 100;\n  ip saddr {}/24 oifname != \"lan0\" oifname != \"wan0\" masquerade\n }}\n chain out {{\n  type filter hook output priority 0;\n  ip protocol esp ip length > {big} ip daddr {} counter name to_hub\n  ip protocol esp ip length > {big} ip daddr != {} counter name direct\n }}\n}}\n",
                spec.lan,
                hub_spec.nbma,
                hub_spec.nbma,
                big = PING_SIZE
            );
            let mut c = Command::new("ip")
                .args(["netns", "exec", &ns, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| format!("nft: {e}"))?;
            c.stdin
                .take()
                .unwrap()
                .write_all(rules.as_bytes())
                .map_err(|e| e.to_string())?;
            if !c.wait().map_err(|e| e.to_string())?.success() {
                return Err("nft rejected the masquerade rule".into());
            }
        }
        let socket = work.join(format!("n{k}.sock"));
        let extra = format!(
            "[control]\nsocket = \"{}\"\nmode = \"0600\"\n",
            socket.display()
        );
        let text = factory.config_text_with(&spec, std::slice::from_ref(&hub_spec), 24, &extra);
        let cfg = work.join(format!("n{k}.toml"));
        std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let log =
            std::fs::File::create(work.join(format!("n{k}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(dmvpnd)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start dmvpnd: {e}"))?;
        lab.daemons.push((ns.clone(), child));
        nodes.push((
            Node {
                ns,
                socket,
                nbma: spec.nbma,
                tunnel: spec.tunnel,
            },
            host,
        ));
    }
    // Every daemon must come up and open its control socket.
    let t0 = Instant::now();
    for (i, (n, _)) in nodes.iter().enumerate() {
        loop {
            interrupted()?;
            if let Some(st) = lab.daemons[i].1.try_wait().map_err(|e| e.to_string())? {
                let log =
                    std::fs::read_to_string(work.join(format!("n{i}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "dmvpnd in {} exited ({st}) before opening its control socket; last log lines:\n  {}",
                    n.ns,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
                ));
            }
            if n.socket.exists() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                return Err(format!(
                    "dmvpnd in {} did not open {} within 15 s",
                    n.ns,
                    n.socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Wait (bounded) for every spoke to be up at the hub.
    let hub = &nodes[0].0;
    let mut registered = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        interrupted()?;
        let mut up = BTreeSet::new();
        if let Ok(j) = show(ctl, hub, true)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&j)
        {
            up_peers(&v, &mut up);
        }
        registered = nodes[1..]
            .iter()
            .filter(|(n, _)| up.contains(&n.nbma.to_string()))
            .count();
        if registered == a.spokes {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if !a.quiet {
        eprintln!(
            "dmvpn-lab: {registered}/{} spokes up at the hub; running traffic for {:?}",
            a.spokes, a.duration
        );
    }
    // Traffic: Poisson flow starts per spoke LAN host, each flow 5 pings.
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut starts: Vec<(Duration, usize, Option<usize>)> = Vec::new();
    for k in 1..=a.spokes {
        let mut t = 0f64;
        loop {
            t += -(60.0 / a.flows_per_minute) * (1.0 - rng.r#gen::<f64>()).ln();
            if t >= a.duration.as_secs_f64() {
                break;
            }
            let s2s = a.spokes > 1 && rng.r#gen::<f64>() < a.spoke_to_spoke;
            let dst = s2s.then(|| {
                let j = rng.gen_range(1..a.spokes);
                if j >= k { j + 1 } else { j }
            });
            starts.push((Duration::from_secs_f64(t), k, dst));
        }
    }
    starts.sort_by_key(|s| s.0);
    let (tx, rx) = mpsc::channel::<FlowResult>();
    let begin = Instant::now();
    let mut next = 0;
    let mut samples: Vec<(usize, usize)> = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(2);
    let mut threads = Vec::new();
    while begin.elapsed() < a.duration {
        interrupted()?;
        while next < starts.len() && starts[next].0 <= begin.elapsed() {
            let (_, k, dst) = starts[next];
            next += 1;
            let host = nodes[k].1.clone();
            let to = match dst {
                None => Ipv4Addr::new(10, 255, 0, 10),
                Some(j) => nodes[j].0.tunnel,
            };
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                let mut r = ping(&host, to, 5);
                r.spoke_to_spoke = dst.is_some();
                let _ = tx.send(r);
            }));
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            let count = |n: &Node| {
                let mut up = BTreeSet::new();
                if let Ok(v) = show(ctl, n, true).and_then(|j| {
                    serde_json::from_str::<serde_json::Value>(&j).map_err(|e| e.to_string())
                }) {
                    up_peers(&v, &mut up);
                }
                up.remove(&Ipv4Addr::new(172, 16, 0, 1).to_string());
                up.len()
            };
            let hub_t = count(&nodes[0].0);
            let s2s: usize = nodes[1..].iter().map(|(n, _)| count(n)).sum::<usize>() / 2;
            samples.push((hub_t, s2s));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in threads {
        let _ = t.join();
    }
    drop(tx);
    let results: Vec<FlowResult> = rx.iter().collect();
    let mut rtts: Vec<f64> = results
        .iter()
        .flat_map(|r| r.rtts_ms.iter().copied())
        .collect();
    rtts.sort_by(|x, y| x.total_cmp(y));
    let pct = |q: f64| {
        if rtts.is_empty() {
            0.0
        } else {
            rtts[((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1]
        }
    };
    let sum = Summary {
        spokes: a.spokes,
        duration_s: a.duration.as_secs_f64(),
        registered,
        flows: results.len() as u64,
        flows_spoke_to_spoke: results.iter().filter(|r| r.spoke_to_spoke).count() as u64,
        pings_sent: results.iter().map(|r| r.sent).sum(),
        pings_received: results.iter().map(|r| r.received).sum(),
        rtt_median_ms: pct(0.5),
        rtt_p99_ms: pct(0.99),
        first_ping_lost_or_slow: results
            .iter()
            .filter(|r| r.rtts_ms.len() < r.sent as usize)
            .count() as u64,
        spoke_tunnels_peak: samples.iter().map(|s| s.1).max().unwrap_or(0),
        spoke_tunnels_mean: if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|s| s.1 as f64).sum::<f64>() / samples.len() as f64
        },
        hub_tunnels_peak: samples.iter().map(|s| s.0).max().unwrap_or(0),
        ..Default::default()
    };
    // ESP packets the spokes sent straight to another spoke (nft counters).
    let direct: u64 = nodes[1..]
        .iter()
        .map(|(n, _)| {
            in_ns(
                &n.ns,
                &["nft", "list", "counter", "ip", "dmvpnlab", "direct"],
            )
            .ok()
            .and_then(|t| {
                t.split("packets ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
        })
        .sum();
    let s2s_packets: u64 = results
        .iter()
        .filter(|r| r.spoke_to_spoke)
        .map(|r| r.sent + r.received)
        .sum();
    let mut sum = sum;
    sum.spoke_to_spoke_direct_esp = direct;
    sum.relayed_share_approx = if s2s_packets == 0 {
        0.0
    } else {
        s2s_packets.saturating_sub(direct) as f64 / s2s_packets as f64
    };
    for (n, _) in &nodes {
        println!("=== {} ({}) show dmvpn", n.ns, n.nbma);
        match show(ctl, n, false) {
            Ok(s) => print!("{s}"),
            Err(e) => println!("  ({e})"),
        }
    }
    println!(
        "dmvpn-lab netns: {} spokes, {}/{} registered, {:.0}s of traffic",
        sum.spokes, sum.registered, sum.spokes, sum.duration_s
    );
    println!(
        "flows             {} ({} spoke-to-spoke); pings {} sent, {} answered; flows with a lost ping {}",
        sum.flows,
        sum.flows_spoke_to_spoke,
        sum.pings_sent,
        sum.pings_received,
        sum.first_ping_lost_or_slow
    );
    println!(
        "rtt               median {:.2} ms, p99 {:.2} ms",
        sum.rtt_median_ms, sum.rtt_p99_ms
    );
    println!(
        "tunnels           spoke-to-spoke peak {}, mean {:.2}; hub peak {}",
        sum.spoke_tunnels_peak, sum.spoke_tunnels_mean, sum.hub_tunnels_peak
    );
    println!(
        "spoke-to-spoke    {} ESP packets direct; relayed by the hub ≈ {:.1}%",
        sum.spoke_to_spoke_direct_esp,
        sum.relayed_share_approx * 100.0
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&sum).unwrap())
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if sum.registered < a.spokes {
        return Err(format!(
            "only {}/{} spokes came up at the hub",
            sum.registered, a.spokes
        ));
    }
    Ok(())
}
