//! OSPF over the tunnel: hub + two spokes running real `dmvpnd`, with
//! bird (Debian `bird2`) in each node namespace. The tunnel is an OSPF
//! broadcast network with the hub as DR (spokes have priority 0, the
//! classic DMVPN design): spoke hellos reach the hub through the spokes'
//! multicast list (their NHS), the hub's reach every registered spoke
//! (`map multicast dynamic`). Each spoke announces its LAN and learns the
//! other's, with the other spoke's tunnel address as next hop.
//!
//! Needs root, iproute2, ping and bird2; fails (never skips) without them.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DmvpnState, Reply, Request, Response};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test needs root (namespaces, TUN, raw sockets)"
    );
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install iproute2/iputils-ping",
                args[0]
            )
        })
}

fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespaces, daemons and files of one test; all removed on drop.
struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    daemons: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        let tag = format!(
            "os{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            tag,
            dir: tempfile::tempdir().expect("tempdir"),
            namespaces: Vec::new(),
            daemons: Vec::new(),
        };
        let mut lab = lab;
        let sw = lab.ns("sw");
        ok(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ok(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        lab
    }

    fn ns(&mut self, name: &str) -> String {
        let n = format!("{}{name}", self.tag);
        ok(&["ip", "netns", "add", &n]);
        ok(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        self.namespaces.push(n.clone());
        n
    }

    /// A node namespace on the NBMA bridge with 172.16.0.N/24.
    fn node(&mut self, name: &str, n: u8) -> String {
        let ns = self.ns(name);
        let sw = format!("{}sw", self.tag);
        let (a, b) = (format!("{}{n}u", self.tag), format!("{}{n}s", self.tag));
        ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        ok(&["ip", "link", "set", &a, "netns", &ns]);
        ok(&["ip", "link", "set", &b, "netns", &sw]);
        ok(&["ip", "-n", &sw, "link", "set", &b, "master", "br0", "up"]);
        ok(&["ip", "-n", &ns, "link", "set", &a, "name", "nbma0", "up"]);
        ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("172.16.0.{n}/24"),
            "dev",
            "nbma0",
        ]);
        ok(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        ns
    }

    /// A LAN host namespace behind `router`: router 10.N.0.1, host 10.N.0.10.
    fn lan_host(&mut self, router: &str, n: u8) -> String {
        let ns = self.ns(&format!("h{n}"));
        let (a, b) = (format!("{}{n}l", self.tag), format!("{}{n}h", self.tag));
        ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        ok(&["ip", "link", "set", &a, "netns", router]);
        ok(&["ip", "link", "set", &b, "netns", &ns]);
        ok(&[
            "ip",
            "-n",
            router,
            "addr",
            "add",
            &format!("10.{n}.0.1/24"),
            "dev",
            &a,
        ]);
        ok(&["ip", "-n", router, "link", "set", &a, "up"]);
        ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.{n}.0.10/24"),
            "dev",
            &b,
        ]);
        ok(&["ip", "-n", &ns, "link", "set", &b, "up"]);
        ok(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{n}.0.1"),
        ]);
        ns
    }

    fn socket(&self, ns: &str) -> PathBuf {
        self.dir.path().join(format!("{ns}.sock"))
    }

    /// Starts dmvpnd in `ns` with `config` (the control section is added)
    /// and waits for its control socket.
    fn start(&mut self, ns: &str, config: &str) {
        let sock = self.socket(ns);
        let keylog = self.keylog(ns);
        let text = format!(
            "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\nkey_log = \"{}\"\n{config}",
            sock.display(),
            keylog.display()
        );
        let path = self.dir.path().join(format!("{ns}.toml"));
        fs::write(&path, text).expect("write config");
        let log = fs::File::create(self.dir.path().join(format!("{ns}.log"))).expect("log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_dmvpnd"),
                "--config",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dmvpnd");
        self.daemons.push((ns.to_string(), child));
        let t0 = Instant::now();
        while !sock.exists() {
            if let Some((_, c)) = self.daemons.last_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("dmvpnd in {ns} exited with {st}: {}", self.log(ns));
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "dmvpnd in {ns} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts bird in `ns` (foreground, its own config and control socket).
    fn bird(&mut self, ns: &str, config: &str) {
        let conf = self.dir.path().join(format!("{ns}.bird.conf"));
        fs::write(&conf, config).expect("write bird config");
        let sock = self.bird_socket(ns);
        let log = fs::File::create(self.dir.path().join(format!("{ns}.bird.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bird (install bird2)");
        self.daemons.push((format!("{ns}.bird"), child));
        let t0 = Instant::now();
        while !sock.exists() {
            if let Some((_, c)) = self.daemons.last_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "bird in {ns} exited with {st}: {}",
                    self.log(&format!("{ns}.bird"))
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "bird in {ns} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn bird_socket(&self, ns: &str) -> PathBuf {
        self.dir.path().join(format!("{ns}.bird.ctl"))
    }

    /// `birdc -s SOCK <args>` output.
    fn birdc(&self, ns: &str, args: &[&str]) -> String {
        let o = Command::new("birdc")
            .arg("-s")
            .arg(self.bird_socket(ns))
            .args(args)
            .output()
            .expect("run birdc (install bird2)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keylog(&self, ns: &str) -> PathBuf {
        self.dir.path().join(format!("{ns}.keys"))
    }

    fn log(&self, ns: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{ns}.log"))).unwrap_or_default()
    }

    fn ctl(&self, ns: &str, req: Request) -> Reply {
        match dmvpn_ctl::client::request(&self.socket(ns), &req) {
            Ok(Response::Ok(r)) => r,
            other => panic!("control request to {ns}: {other:?}"),
        }
    }

    /// `ping -c N -i 0.2 -W 1` from `ns`; returns packets received.
    fn ping(&self, ns: &str, dst: &str, n: u32) -> u32 {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-n",
            "-q",
            "-c",
            &n.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
            dst,
        ]);
        let out = String::from_utf8_lossy(&o.stdout);
        out.split(',')
            .find_map(|part| part.trim().strip_suffix(" received"))
            .and_then(|x| x.trim().parse().ok())
            .unwrap_or_else(|| panic!("cannot parse ping output: {out}"))
    }

    fn dmvpn_peers(&self, ns: &str) -> Vec<(IpAddr, DmvpnState)> {
        match self.ctl(ns, Request::ShowDmvpn) {
            Reply::Dmvpn(ifs) => ifs
                .iter()
                .flat_map(|i| i.peers.iter())
                .flat_map(|p| p.entries.iter().map(move |e| (p.nbma, e.state)))
                .collect(),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Polls `cond` every 20 ms until it holds or `limit` passes.
    fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
        let t0 = Instant::now();
        loop {
            if cond() {
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                let logs: String = self
                    .daemons
                    .iter()
                    .map(|(n, _)| format!("--- {n}\n{}", self.log(n)))
                    .collect();
                panic!("timed out waiting for {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.daemons {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c) in &mut self.daemons {
            let t0 = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.namespaces.iter().rev() {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

fn dmvpn_config(role: &str, n: u8) -> String {
    let nhrp = if role == "hub" {
        String::new()
    } else {
        "[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n".to_string()
    };
    format!(
        r#"
[node]
name = "n{n}"
role = "{role}"
[ike]
identity = "address"
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "strong"
transforms = ["esp-gcm 256"]
mode = "transport"
[[ipsec.profile]]
name = "cisco"
transform_sets = ["strong"]
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
mtu = 1400
source = "172.16.0.{n}"
mode = "gre-multipoint"
key = 0
protection = "cisco"
[tunnel.nhrp]
network_id = 1
authentication = "cisco123"
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
    )
}

/// bird: OSPF on Tunnel0 (broadcast, hub DR) and the LAN (stub); OSPF
/// routes to other LANs go to the kernel.
fn bird_config(n: u8, lan: Option<&str>) -> String {
    let priority = if n == 1 { 255 } else { 0 };
    let lan_if = lan
        .map(|l| format!("interface \"{l}\" {{ stub yes; }};"))
        .unwrap_or_default();
    format!(
        r#"
router id 192.168.1.{n};
log stderr all;
protocol device {{ scan time 1; }}
protocol kernel {{
    ipv4 {{
        import none;
        export filter {{
            if source = RTS_OSPF && net ~ [ 10.0.0.0/8{{24,24}} ] && net != 10.{n}.0.0/24 then accept;
            reject;
        }};
    }};
}}
protocol ospf v2 {{
    ipv4 {{ import all; export none; }};
    area 0 {{
        interface "Tunnel0" {{
            type broadcast;
            priority {priority};
            hello 1;
            dead 4;
            wait 2;
            retransmit 2;
        }};
        {lan_if}
    }};
}}
"#
    )
}

/// Lines of `show ospf neighbors` in state Full.
fn full_neighbors(lab: &Lab, ns: &str) -> Vec<String> {
    lab.birdc(ns, &["show", "ospf", "neighbors"])
        .lines()
        .filter(|l| l.contains("Full"))
        .map(str::to_string)
        .collect()
}

fn kernel_route(ns: &str, prefix: &str) -> String {
    let o = sh(&["ip", "-n", ns, "route", "show", prefix]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn ospf_adjacencies_and_lan_routes_over_multicast_replication() {
    let bird = sh(&["bird", "--version"]);
    assert!(
        bird.status.success() || !bird.stderr.is_empty(),
        "bird is missing: install bird2"
    );
    let mut lab = Lab::new();
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    let h1 = lab.lan_host(&s1, 2);
    lab.lan_host(&s2, 3);
    lab.start(&hub, &dmvpn_config("hub", 1));
    lab.start(&s1, &dmvpn_config("spoke", 2));
    lab.start(&s2, &dmvpn_config("spoke", 3));
    let hub_ip: IpAddr = "172.16.0.1".parse().unwrap();
    for s in [&s1, &s2] {
        lab.wait(
            "spoke registered with the hub",
            Duration::from_secs(60),
            || {
                lab.dmvpn_peers(s)
                    .iter()
                    .any(|(n, st)| *n == hub_ip && *st == DmvpnState::Up)
            },
        );
    }
    let t0 = Instant::now();
    let lan2 = format!("{}2l", lab.tag);
    let lan3 = format!("{}3l", lab.tag);
    lab.bird(&hub, &bird_config(1, None));
    lab.bird(&s1, &bird_config(2, Some(&lan2)));
    lab.bird(&s2, &bird_config(3, Some(&lan3)));

    lab.wait("hub Full with both spokes", Duration::from_secs(60), || {
        full_neighbors(&lab, &hub).len() == 2
    });
    let full = t0.elapsed();
    for s in [&s1, &s2] {
        lab.wait("spoke Full with the hub", Duration::from_secs(30), || {
            full_neighbors(&lab, s)
                .iter()
                .any(|l| l.contains("192.168.1.1"))
        });
    }
    lab.wait(
        "spokes learn each other's LAN",
        Duration::from_secs(60),
        || {
            kernel_route(&s1, "10.3.0.0/24").contains("via 192.168.1.3")
                && kernel_route(&s2, "10.2.0.0/24").contains("via 192.168.1.2")
        },
    );
    let learned = t0.elapsed();
    // The hub learns both LANs too (and relays between the spokes).
    lab.wait(
        "hub learns the spokes' LANs",
        Duration::from_secs(30),
        || {
            kernel_route(&hub, "10.2.0.0/24").contains("via 192.168.1.2")
                && kernel_route(&hub, "10.3.0.0/24").contains("via 192.168.1.3")
        },
    );
    eprintln!("OSPF Full on the hub after {full:?}; LAN routes on both spokes after {learned:?}");
    // LAN to LAN over the learned routes (first packets may cross the hub
    // while a spoke-to-spoke path comes up).
    let t1 = Instant::now();
    lab.wait("LAN-to-LAN ping", Duration::from_secs(30), || {
        lab.ping(&h1, "10.3.0.10", 1) == 1
    });
    assert!(
        lab.ping(&h1, "10.3.0.10", 10) >= 9,
        "LAN-to-LAN ping over OSPF routes"
    );
    eprintln!("first LAN-to-LAN echo after {:?}", t1.elapsed());
}
