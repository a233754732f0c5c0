//! Network namespaces on an NBMA bridge, real `dmvpnd` (and bird,
//! dumpcap, ping) processes, control requests and polling; everything is
//! removed on drop.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DmvpnState, IpsecPeerSa, Reply, Request, Response};

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test needs root (namespaces, TUN, raw sockets)"
    );
}

/// The `N received` of ping's summary line, if it printed one.
pub fn ping_received(out: &str) -> Option<u32> {
    out.lines()
        .find(|l| l.contains("packets transmitted"))?
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" received"))
        .and_then(|x| x.trim().parse().ok())
}

/// Waits for a `ping` started with its output piped: (received, output).
pub fn ping_waited(ping: std::process::Child) -> (u32, String) {
    let out = ping.wait_with_output().expect("ping output");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let got = ping_received(&out).unwrap_or_else(|| panic!("cannot parse ping output: {out}"));
    (got, out)
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install iproute2, iputils-ping, tshark and bird2",
                args[0]
            )
        })
}

pub fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

pub static SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespaces, daemons, captures and files of one test; removed on drop.
pub struct Lab {
    pub tag: String,
    pub dir: tempfile::TempDir,
    pub namespaces: Vec<String>,
    pub daemons: Vec<(String, Child)>,
    pub captures: Vec<Child>,
}

impl Lab {
    /// `prefix` keeps namespace names distinct between test binaries.
    pub fn new(prefix: &str) -> Lab {
        require_root();
        let tag = format!(
            "{prefix}{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            tag,
            dir: tempfile::tempdir().expect("tempdir"),
            namespaces: Vec::new(),
            daemons: Vec::new(),
            captures: Vec::new(),
        };
        let sw = lab.ns("sw");
        ok(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ok(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        lab
    }

    pub fn ns(&mut self, name: &str) -> String {
        let n = format!("{}{name}", self.tag);
        ok(&["ip", "netns", "add", &n]);
        self.namespaces.push(n.clone());
        ok(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        n
    }

    /// A node namespace on the NBMA bridge with 172.16.0.N/24 on `nbma0`.
    pub fn node(&mut self, name: &str, n: u8) -> String {
        let ns = self.ns(name);
        let sw = format!("{}sw", self.tag);
        let (a, b) = (format!("{}{n}u", self.tag), format!("{}{n}s", self.tag));
        ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        ok(&["ip", "link", "set", &a, "netns", &ns]);
        ok(&["ip", "link", "set", &b, "netns", &sw]);
        ok(&["ip", "-n", &sw, "link", "set", &b, "master", "br0", "up"]);
        ok(&["ip", "-n", &ns, "link", "set", &a, "name", "nbma0", "up"]);
        let addr = format!("172.16.0.{n}/24");
        ok(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "nbma0"]);
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
    pub fn lan_host(&mut self, router: &str, n: u8) -> String {
        let ns = self.ns(&format!("h{n}"));
        let (a, b) = (format!("{}{n}l", self.tag), format!("{}{n}h", self.tag));
        ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        ok(&["ip", "link", "set", &a, "netns", router]);
        ok(&["ip", "link", "set", &b, "netns", &ns]);
        let (ra, ha, gw) = (
            format!("10.{n}.0.1/24"),
            format!("10.{n}.0.10/24"),
            format!("10.{n}.0.1"),
        );
        ok(&["ip", "-n", router, "addr", "add", &ra, "dev", &a]);
        ok(&["ip", "-n", router, "link", "set", &a, "up"]);
        ok(&["ip", "-n", &ns, "addr", "add", &ha, "dev", &b]);
        ok(&["ip", "-n", &ns, "link", "set", &b, "up"]);
        ok(&["ip", "-n", &ns, "route", "add", "default", "via", &gw]);
        ns
    }

    /// Starts bird in `ns` (foreground, its own config and control socket).
    pub fn bird(&mut self, ns: &str, config: &str) {
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

    pub fn bird_socket(&self, ns: &str) -> PathBuf {
        self.dir.path().join(format!("{ns}.bird.ctl"))
    }

    /// `birdc -s SOCK <args>` output.
    pub fn birdc(&self, ns: &str, args: &[&str]) -> String {
        let o = Command::new("birdc")
            .arg("-s")
            .arg(self.bird_socket(ns))
            .args(args)
            .output()
            .expect("run birdc (install bird2)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self, ns: &str) -> PathBuf {
        self.path(&format!("{ns}.sock"))
    }

    pub fn keylog(&self, ns: &str) -> PathBuf {
        self.path(&format!("{ns}.keys"))
    }

    pub fn log(&self, ns: &str) -> String {
        fs::read_to_string(self.path(&format!("{ns}.log"))).unwrap_or_default()
    }

    /// The configuration file of `ns`'s dmvpnd.
    pub fn config_path(&self, ns: &str) -> PathBuf {
        self.path(&format!("{ns}.toml"))
    }

    /// Writes `ns`'s configuration file: `config` with the lab's control
    /// socket and key log added (what [`Lab::start`] runs, and what a
    /// reload reads).
    pub fn write_config(&self, ns: &str, config: &str) -> PathBuf {
        let text = format!(
            "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\nkey_log = \"{}\"\n{config}",
            self.socket(ns).display(),
            self.keylog(ns).display()
        );
        let path = self.config_path(ns);
        fs::write(&path, text).expect("write config");
        path
    }

    /// Runs dmvpnd in `ns` on `config` (as [`Lab::start`] writes it) to
    /// its exit, for configurations it must refuse: its stderr.
    pub fn refused(&self, ns: &str, config: &str) -> String {
        let path = self.write_config(ns, config);
        let out = Command::new("ip")
            .args(["netns", "exec", ns, crate::dmvpnd(), "--config"])
            .arg(&path)
            .output()
            .expect("run dmvpnd");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "dmvpnd in {ns} ran: {err}");
        err
    }

    /// Starts dmvpnd in `ns` (control socket and key log added to
    /// `config`) and waits for its control socket.
    pub fn start(&mut self, ns: &str, config: &str) {
        self.start_with_env(ns, config, &[]);
    }

    /// [`Lab::start`] with these variables added to dmvpnd's environment.
    pub fn start_with_env(&mut self, ns: &str, config: &str, env: &[(&str, &str)]) {
        let sock = self.socket(ns);
        let _ = fs::remove_file(&sock);
        let path = self.write_config(ns, config);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{ns}.log")))
            .expect("log");
        // `ip netns exec` execs the daemon: the child pid is dmvpnd's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, crate::dmvpnd(), "--config"])
            .arg(&path)
            .envs(env.iter().copied())
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
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn daemon(&mut self, ns: &str) -> &mut Child {
        &mut self
            .daemons
            .iter_mut()
            .rev()
            .find(|(n, _)| n == ns)
            .expect("daemon")
            .1
    }

    pub fn alive(&mut self, ns: &str) -> bool {
        matches!(self.daemon(ns).try_wait(), Ok(None))
    }

    /// Stops every daemon with SIGTERM and requires a clean exit.
    /// Every daemon is stopped before a failure is reported.
    pub fn stop_all(&mut self) {
        let mut unclean = Vec::new();
        for (ns, mut c) in self.daemons.drain(..) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().expect("wait");
            if !st.success() {
                unclean.push(format!("{ns}: {st}"));
            }
        }
        assert!(
            unclean.is_empty(),
            "dmvpnd: clean exit on SIGTERM: {unclean:?}"
        );
    }

    pub fn ctl(&self, ns: &str, req: Request) -> Reply {
        match dmvpn_ctl::client::request(&self.socket(ns), &req) {
            Ok(Response::Ok(r)) => r,
            other => panic!("control request to {ns}: {other:?}"),
        }
    }

    /// `ping -c N -i 0.2 -W 1 EXTRA… DST` in `ns`: (received, output).
    pub fn ping_out(&self, ns: &str, dst: &str, n: u32, extra: &[&str]) -> (u32, String) {
        let count = n.to_string();
        let mut args = vec![
            "ip", "netns", "exec", ns, "ping", "-n", "-c", &count, "-i", "0.2", "-W", "1",
        ];
        args.extend_from_slice(extra);
        args.push(dst);
        let o = sh(&args);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (ping_received(&out).unwrap_or(0), out)
    }

    /// Packets received by `ping -c N` from `ns` (0 when ping prints no
    /// summary, e.g. no route).
    pub fn ping(&self, ns: &str, dst: &str, n: u32) -> u32 {
        self.ping_out(ns, dst, n, &[]).0
    }

    pub fn dmvpn_peers(&self, ns: &str) -> Vec<(IpAddr, DmvpnState)> {
        match self.ctl(ns, Request::ShowDmvpn) {
            Reply::Dmvpn(ifs) => ifs
                .iter()
                .flat_map(|i| i.peers.iter())
                .flat_map(|p| {
                    p.entries
                        .iter()
                        .filter_map(move |e| Some((p.nbma?, e.state)))
                })
                .collect(),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    pub fn peer_up(&self, ns: &str, nbma: &str) -> bool {
        let ip: IpAddr = nbma.parse().unwrap();
        self.dmvpn_peers(ns)
            .iter()
            .any(|(n, st)| *n == ip && *st == DmvpnState::Up)
    }

    pub fn ipsec(&self, ns: &str) -> Vec<IpsecPeerSa> {
        match self.ctl(ns, Request::ShowCryptoIpsecSa) {
            Reply::IpsecSa(r) => r.peers,
            r => panic!("unexpected reply {r:?}"),
        }
    }

    pub fn ipsec_with(&self, ns: &str, peer: &str) -> Option<IpsecPeerSa> {
        let ip: IpAddr = peer.parse().unwrap();
        match self.ctl(ns, Request::ShowCryptoIpsecSa) {
            Reply::IpsecSa(r) => r.peers.into_iter().find(|p| p.current_peer == ip),
            r => panic!("unexpected reply {r:?}"),
        }
    }

    /// Polls `cond` every 20 ms until it holds or `limit` passes.
    pub fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
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

    /// Starts `dumpcap` on `dev` in `ns` writing classic pcap to `file`;
    /// returns once the capture file exists.
    pub fn capture(&mut self, ns: &str, dev: &str, file: &str) -> (usize, PathBuf) {
        let path = self.path(file);
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "dumpcap", "-q", "-P", "-i", dev, "-w"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run dumpcap (Debian package tshark)");
        self.captures.push(child);
        let idx = self.captures.len() - 1;
        let t0 = Instant::now();
        while fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < 24 {
            if let Ok(Some(st)) = self.captures[idx].try_wait() {
                panic!("dumpcap on {dev} in {ns} exited with {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "dumpcap did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // dumpcap writes the file header right after opening the device.
        (idx, path)
    }

    /// Stops capture `idx` (SIGINT, so dumpcap flushes) and waits for it.
    pub fn stop_capture(&mut self, idx: usize) {
        let c = &mut self.captures[idx];
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let _ = c.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.captures {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// IKE policy of the seed routers (DES, MD5, group 1: faithful to the
/// Cisco configuration guide, not a recommendation).
pub const SEED_IKE: &str = r#"
[[ike.policy]]
priority = 10
encryption = "des"
hash = "md5"
authentication = "pre-share"
group = 1
lifetime = 86400
"#;
/// Transform set of the seed routers.
pub const SEED_TS: &str = r#"["esp-3des", "esp-md5-hmac"]"#;
/// A modern IKE policy: AES-256, SHA-256, group 14.
pub const MODERN_IKE: &str = r#"
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
"#;
/// A modern transform set: AES-GCM-256.
pub const MODERN_TS: &str = r#"["esp-gcm 256"]"#;

/// The seed topology's node configuration: hub 1 and spokes 2, 3 on tunnel
/// 192.168.1.0/24, NBMA 172.16.0.n, a LAN 10.n.0.0/24 behind each spoke,
/// PSK "cisco123", GRE key 0, transport-mode protection.
pub struct SeedNode<'a> {
    /// `[[ike.policy]]` block(s).
    pub ike: &'a str,
    /// TOML array of the transform set's transforms.
    pub transforms: &'a str,
    pub lifetime_seconds: u32,
    pub idle_time: u32,
    pub dpd_retries: u32,
    /// Redirect on the hub, shortcut on the spokes.
    pub phase3: bool,
    /// A static NHRP map for the hub besides the NHS entry.
    pub hub_map: bool,
}

impl SeedNode<'_> {
    /// Configuration of node `n` (1 = hub). Spokes route the other LANs
    /// into the tunnel; the hub learns them from kernel routes
    /// ([`hub_lan_routes`]), as a routing daemon would install them.
    pub fn config(&self, n: u8) -> String {
        let role = if n == 1 { "hub" } else { "spoke" };
        let phase3 = self.phase3;
        let (routes, nhrp) = if n == 1 {
            ("[]".to_string(), format!("redirect = {phase3}\n"))
        } else {
            let others: Vec<String> = [1u8, 2, 3]
                .iter()
                .filter(|x| **x != n)
                .map(|x| format!("\"10.{x}.0.0/24\""))
                .collect();
            let mut nhrp = format!(
                "shortcut = {phase3}\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n"
            );
            if self.hub_map {
                nhrp += "[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n";
            }
            (format!("[{}]", others.join(", ")), nhrp)
        };
        let SeedNode {
            ike,
            transforms,
            lifetime_seconds,
            idle_time,
            dpd_retries,
            ..
        } = self;
        format!(
            r#"
[node]
name = "n{n}"
role = "{role}"
[ike]
identity = "address"
[ike.dpd]
interval = 10
retry_interval = 2
retries = {dpd_retries}
{ike}
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "ts"
transforms = {transforms}
mode = "transport"
[[ipsec.profile]]
name = "cisco"
transform_sets = ["ts"]
lifetime_seconds = {lifetime_seconds}
lifetime_kilobytes = 4608000
idle_time = {idle_time}
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.{n}/24"
mtu = 1400
source = "172.16.0.{n}"
mode = "gre-multipoint"
key = 0
protection = "cisco"
routes = {routes}
[tunnel.nhrp]
network_id = 1
authentication = "cisco123"
holdtime = 600
map_multicast_dynamic = true
{nhrp}"#
        )
    }
}

/// The hub's routes to the spokes' LANs via their tunnel addresses, as a
/// routing daemon would add them (retried until Tunnel0 exists).
pub fn hub_lan_routes(lab: &Lab, hub: &str) {
    lab.wait(
        "hub routes to the spoke LANs",
        Duration::from_secs(10),
        || {
            [2u8, 3].iter().all(|n| {
                sh(&[
                    "ip",
                    "-n",
                    hub,
                    "route",
                    "replace",
                    &format!("10.{n}.0.0/24"),
                    "via",
                    &format!("192.168.1.{n}"),
                    "dev",
                    "Tunnel0",
                ])
                .status
                .success()
            })
        },
    );
}

/// Seconds since the Unix epoch, as `ping -D` prints them.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// One answered echo of a [`Pinger`]: `ping -D`'s receive timestamp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Echo {
    pub at: f64,
    pub seq: u32,
}

/// The longest stretch without an answered echo in a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gap {
    /// Last answer before the gap (or the window's start).
    pub from: f64,
    /// First answer after it (or the window's end).
    pub to: f64,
}

impl Gap {
    pub fn secs(&self) -> f64 {
        self.to - self.from
    }
}

/// A continuous `ping -n -D -i 0.2 DST` in a namespace, its output in a
/// file of the lab; killed on drop.
pub struct Pinger {
    pub what: String,
    child: Child,
    out: PathBuf,
    pub started: f64,
}

impl Pinger {
    /// Answered echoes so far (ping flushes each line; duplicates ignored).
    pub fn echoes(&self) -> Vec<Echo> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let mut v: Vec<Echo> = text
            .lines()
            .filter(|l| l.contains(" bytes from ") && !l.contains("DUP!"))
            .filter_map(|l| {
                let at = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
                let seq = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("icmp_seq="))?
                    .parse()
                    .ok()?;
                Some(Echo { at, seq })
            })
            .collect();
        v.sort_by(|a, b| a.at.total_cmp(&b.at));
        v
    }

    /// Answered echoes received after `t`.
    pub fn answered_after(&self, t: f64) -> usize {
        self.echoes().iter().filter(|e| e.at > t).count()
    }

    /// Whether ping still runs (it must, for the whole measurement).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops ping (SIGINT) and returns every answered echo.
    pub fn stop(mut self) -> Vec<Echo> {
        assert!(
            self.running(),
            "ping {} exited early: {}",
            self.what,
            fs::read_to_string(&self.out).unwrap_or_default()
        );
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.echoes()
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The longest gap between consecutive answered echoes within
/// `[from, to]`, counting the window's ends as answers.
pub fn longest_gap(echoes: &[Echo], from: f64, to: f64) -> Gap {
    let mut points = vec![from];
    points.extend(echoes.iter().map(|e| e.at).filter(|t| *t > from && *t < to));
    points.push(to);
    points
        .windows(2)
        .map(|w| Gap {
            from: w[0],
            to: w[1],
        })
        .max_by(|a, b| a.secs().total_cmp(&b.secs()))
        .expect("two points")
}

/// Seconds from `t` to the first echo answered after it.
pub fn first_answer_after(echoes: &[Echo], t: f64) -> Option<f64> {
    echoes.iter().find(|e| e.at > t).map(|e| e.at - t)
}

impl Lab {
    /// Starts a continuous `ping -n -D -i 0.2 -W 1 DST` in `ns`.
    pub fn pinger(&self, ns: &str, dst: &str) -> Pinger {
        // `ip netns exec` would only report a missing ping in its output.
        sh(&["ping", "-V"]);
        let out = self.path(&format!("ping-{ns}-{dst}.txt"));
        let file = fs::File::create(&out).expect("ping output file");
        let err = file.try_clone().expect("ping output file");
        let started = unix_now();
        let child = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-n", "-D", "-i", "0.2", "-W", "1", dst,
            ])
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ping ({e}); install iputils-ping"));
        Pinger {
            what: format!("{ns} -> {dst}"),
            child,
            out,
            started,
        }
    }

    /// SIGKILLs the newest daemon of `ns` (no DELETE, no cleanup) and reaps it.
    pub fn kill9(&mut self, ns: &str) {
        let c = self.daemon(ns);
        c.kill().expect("SIGKILL");
        let _ = c.wait();
    }

    /// SIGTERMs the newest daemon of `ns` and requires a clean exit.
    pub fn sigterm(&mut self, ns: &str) {
        let c = self.daemon(ns);
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().expect("wait");
        assert!(st.success(), "dmvpnd in {ns}: clean exit on SIGTERM: {st}");
    }

    /// Drops every frame the NBMA switch forwards (an nftables `bridge`
    /// table in the switch namespace): a total underlay outage.
    pub fn underlay_down(&self) {
        sh(&["nft", "--version"]);
        let sw = format!("{}sw", self.tag);
        let rules = "table bridge outage {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n }\n}\n";
        let mut c = Command::new("ip")
            .args(["netns", "exec", &sw, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft ({e}); install nftables"));
        use std::io::Write;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("write nft rules");
        let o = c.wait_with_output().expect("nft");
        assert!(
            o.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Ends [`Lab::underlay_down`]'s outage.
    pub fn underlay_up(&self) {
        let sw = format!("{}sw", self.tag);
        ok(&[
            "ip", "netns", "exec", &sw, "nft", "delete", "table", "bridge", "outage",
        ]);
    }

    /// Whether the hub `hub` lists every NBMA address in `spokes` as Up
    /// (registered) in `show dmvpn`.
    pub fn registered(&self, hub: &str, spokes: &[&str]) -> bool {
        let p = self.dmvpn_peers(hub);
        spokes.iter().all(|s| {
            let ip: IpAddr = s.parse().unwrap();
            p.iter().any(|(n, st)| *n == ip && *st == DmvpnState::Up)
        })
    }
}

impl Lab {
    /// Registration replies `ns` has received from its NHSs (`show ip
    /// nhrp nhs`, summed): grows with every successful registration.
    pub fn nhs_replies(&self, ns: &str) -> u64 {
        match self.ctl(ns, Request::ShowNhrpNhs) {
            Reply::NhrpNhs(v) => v.iter().map(|e| e.replies_received).sum(),
            r => panic!("unexpected reply {r:?}"),
        }
    }
}
