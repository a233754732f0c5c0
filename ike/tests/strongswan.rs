//! Interop with a real strongSwan (charon, IKEv1 PSK) in a network
//! namespace, our engine on a real UDP socket in another. Needs root,
//! iproute2 and strongswan-charon/swanctl; fails loudly without them.
//!
//! Without kernel ESP charon cannot install the CHILD_SA, so a Quick Mode
//! ends with charon deleting (or refusing) the CHILD_SA; success is
//! agreement on every key charon logs (`ike = 4, chd = 4`). With the
//! `kernel-libipsec` plugin (user-space ESP, tunnel mode, UDP 4500) charon
//! does install it, and the tunnel-mode tests require that on both sides.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zeroize::Zeroizing;

const OURS: &str = "172.16.0.1";
const THEIRS: &str = "172.16.0.2";
/// Our address when behind the NAT router.
const NATTED: &str = "10.0.0.1";
const PSK: &str = "cisco123-interop";
/// The same two ends over IPv6 (seed 000 runs IKEv1 Main Mode over IPv6).
const OURS6: &str = "fd00:16::1";
const THEIRS6: &str = "fd00:16::2";

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "command failed: {cmd}");
}

/// Two namespaces joined by a veth pair and a charon; all removed on drop.
struct Lab {
    ns: String,
    dir: tempfile::TempDir,
    charon: Option<Child>,
    /// charon does ESP in user space (kernel-libipsec, tunnel mode, UDP 4500).
    libipsec: bool,
    /// Background swanctl commands, reaped on drop.
    bg: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, charon_conn: &str) -> Lab {
        Lab::new_with(tag, charon_conn, false)
    }

    /// Like `new`, with IPv6 addresses on the veth pair (`OURS6`, `THEIRS6`).
    fn new_v6(tag: &str, charon_conn: &str) -> Lab {
        let lab = Lab::new_with(tag, charon_conn, false);
        let ns = &lab.ns;
        sh(&format!(
            "ip -n {ns}a addr add {OURS6}/64 dev {ns}x nodad && \
             ip -n {ns}b addr add {THEIRS6}/64 dev {ns}y nodad"
        ));
        lab
    }

    fn new_with(tag: &str, charon_conn: &str, libipsec: bool) -> Lab {
        for tool in ["ip", "/usr/lib/ipsec/charon", "swanctl"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "{tool} missing: install iproute2 strongswan-charon strongswan-swanctl"
            );
        }
        let ns = format!("dmike{}{}", std::process::id() % 100000, tag);
        let lab = Lab {
            ns: ns.clone(),
            dir: tempfile::tempdir().unwrap(),
            charon: None,
            libipsec,
            bg: vec![],
        };
        sh(&format!(
            "ip netns add {ns}a && ip netns add {ns}b && \
             ip link add {ns}x netns {ns}a type veth peer name {ns}y netns {ns}b && \
             ip -n {ns}a addr add {OURS}/24 dev {ns}x && ip -n {ns}b addr add {THEIRS}/24 dev {ns}y && \
             ip -n {ns}a link set {ns}x up && ip -n {ns}b link set {ns}y up && \
             ip -n {ns}a link set lo up && ip -n {ns}b link set lo up"
        ));
        if libipsec {
            // libipsec routes the GRE selectors (the peer addresses) into
            // its TUN; keep charon's own UDP 4500 out of that loop.
            sh(&format!(
                "ip -n {ns}b rule add ipproto udp dport 4500 lookup main priority 100 && \
                 ip -n {ns}b rule add ipproto udp sport 4500 lookup main priority 101"
            ));
        }
        lab.start_charon(charon_conn)
    }

    /// Like `new`, but our namespace sits behind a masquerading router:
    /// a 10.0.0.1 -- 10.0.0.254 r 172.16.0.254 (masquerade) -- 172.16.0.2 b.
    fn new_nat(tag: &str, charon_conn: &str) -> Lab {
        let ns = format!("dmike{}{}", std::process::id() % 100000, tag);
        let lab = Lab {
            ns: ns.clone(),
            dir: tempfile::tempdir().unwrap(),
            charon: None,
            libipsec: false,
            bg: vec![],
        };
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg("command -v nft")
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "nft missing: install nftables"
        );
        sh(&format!(
            "ip netns add {ns}a && ip netns add {ns}r && ip netns add {ns}b && \
             ip link add {ns}x netns {ns}a type veth peer name {ns}p netns {ns}r && \
             ip link add {ns}q netns {ns}r type veth peer name {ns}y netns {ns}b && \
             ip -n {ns}a addr add {NATTED}/24 dev {ns}x && ip -n {ns}r addr add 10.0.0.254/24 dev {ns}p && \
             ip -n {ns}r addr add 172.16.0.254/24 dev {ns}q && ip -n {ns}b addr add {THEIRS}/24 dev {ns}y && \
             for n in a r b; do ip -n {ns}$n link set lo up; done && \
             ip -n {ns}a link set {ns}x up && ip -n {ns}r link set {ns}p up && \
             ip -n {ns}r link set {ns}q up && ip -n {ns}b link set {ns}y up && \
             ip -n {ns}a route add default via 10.0.0.254 && \
             ip netns exec {ns}r sysctl -qw net.ipv4.ip_forward=1 && \
             ip netns exec {ns}r nft add table ip nat && \
             ip netns exec {ns}r nft add chain ip nat post '{{ type nat hook postrouting priority 100 ; }}' && \
             ip netns exec {ns}r nft add rule ip nat post oifname {ns}q masquerade"
        ));
        lab.start_charon(charon_conn)
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).to_string_lossy().into_owned()
    }

    fn start_charon(mut self, conn: &str) -> Lab {
        let d = self.dir.path().to_string_lossy().into_owned();
        std::fs::create_dir_all(format!("{d}/run")).unwrap();
        let (kernel, libipsec) = if self.libipsec {
            (
                "kernel-libipsec kernel-netlink",
                "    kernel-libipsec {\n      allow_peer_ts = yes\n    }\n",
            )
        } else {
            ("kernel-netlink", "")
        };
        std::fs::write(
            self.path("strongswan.conf"),
            format!(
                "charon {{\n  load = random nonce openssl pem pkcs1 x509 pubkey hmac md5 sha1 sha2 aes des gcm kdf {kernel} socket-default vici\n  \
                 install_routes = no\n  i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n  \
                 retransmit_tries = 3\n  \
                 filelog {{\n    log {{\n      path = {d}/charon.log\n      flush_line = yes\n      default = 1\n      ike = 4\n      chd = 4\n      cfg = 2\n      net = 2\n      enc = 1\n    }}\n  }}\n  \
                 plugins {{\n{libipsec}    vici {{\n      socket = unix://{d}/charon.vici\n    }}\n  }}\n}}\n\
                 swanctl {{\n  socket = unix://{d}/charon.vici\n}}\n"
            ),
        )
        .unwrap();
        std::fs::write(self.path("swanctl.conf"), conn).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}b", self.ns), "sh", "-c"])
            .arg(format!(
                "mount --bind {d}/run /run && exec /usr/lib/ipsec/charon"
            ))
            .env("STRONGSWAN_CONF", self.path("strongswan.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn charon");
        self.charon = Some(child);
        let vici = self.path("charon.vici");
        let t0 = std::time::Instant::now();
        while !std::path::Path::new(&vici).exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "charon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.swanctl("--load-all");
        self
    }

    fn swanctl(&self, args: &str) {
        sh(&format!(
            "STRONGSWAN_CONF={} ip netns exec {}b swanctl {} --file {} -u unix://{} >> {} 2>&1",
            self.path("strongswan.conf"),
            self.ns,
            args,
            self.path("swanctl.conf"),
            self.path("charon.vici"),
            self.path("swanctl.out")
        ));
    }

    fn swanctl_bg(&mut self, args: &str) {
        let c = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "STRONGSWAN_CONF={} ip netns exec {}b swanctl {} -u unix://{} >> {} 2>&1",
                self.path("strongswan.conf"),
                self.ns,
                args,
                self.path("charon.vici"),
                self.path("swanctl.out")
            ))
            .spawn()
            .expect("swanctl");
        self.bg.push(c);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("charon.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.charon {
            // charon is `exec`ed by the shell we spawned: same pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        for c in &mut self.bg {
            let _ = c.wait();
        }
        let ns = &self.ns;
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip netns del {ns}a; ip netns del {ns}b; ip netns del {ns}r 2>/dev/null"
            ))
            .status();
    }
}

/// Hex dumps charon logs after a label, e.g. "SKEYID => 20 bytes @ 0x..." then rows.
fn charon_value(log: &str, label: &str) -> Option<Vec<u8>> {
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        let Some(pos) = l.find(label) else { continue };
        let rest = &l[pos + label.len()..];
        if !rest.trim_start().starts_with("=>") {
            continue;
        }
        let n: usize = rest
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())?;
        let mut out = vec![];
        for row in lines.by_ref() {
            // "   0: 12 34 ... 56  ascii"
            let Some(colon) = row.find(": ") else { break };
            let bytes = &row[colon + 2..];
            for tok in bytes.split_whitespace().take(16) {
                if tok.len() == 2
                    && let Ok(b) = u8::from_str_radix(tok, 16)
                {
                    out.push(b);
                }
                if out.len() == n {
                    return Some(out);
                }
            }
        }
        return Some(out);
    }
    None
}

struct Run {
    events: Vec<Event>,
    ike_keylog: Vec<String>,
    /// Initiator and responder cookies of the first phase 1 seen.
    cookies: Option<([u8; 8], [u8; 8])>,
    /// The engine's SAs when it stopped.
    isakmp: Vec<IsakmpSaInfo>,
    children: Vec<ChildSaInfo>,
}

/// Drive our engine on real UDP sockets inside namespace `ns` until `done`.
#[allow(clippy::type_complexity)]
fn run_engine(
    ns: String,
    ours: &'static str,
    cfg: EngineConfig,
    initiate: bool,
    done: fn(&[Event]) -> bool,
    timeout: Duration,
) -> Run {
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        let ours: IpAddr = ours.parse().unwrap();
        let theirs: IpAddr = if ours.is_ipv6() { THEIRS6 } else { THEIRS }
            .parse()
            .unwrap();
        let local = SocketAddr::new(ours, 500);
        let local4500 = SocketAddr::new(ours, 4500);
        let remote = SocketAddr::new(theirs, 500);
        let s500 = UdpSocket::bind(local).unwrap();
        let s4500 = UdpSocket::bind(local4500).unwrap();
        for s in [&s500, &s4500] {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        }
        let mut spi = 0xc0de_0000u32;
        let mut ep = Endpoint::new(
            cfg,
            ChaCha20Rng::seed_from_u64(std::process::id() as u64),
            Box::new(move || {
                spi += 1;
                spi
            }),
        );
        // The engine runs on real elapsed time: charon does.
        let epoch = std::time::Instant::now();
        let now = || Instant(epoch.elapsed());
        if initiate {
            let req = Phase2Request {
                local_proxy: Some(gre_proxy(local.ip())),
                remote_proxy: Some(gre_proxy(remote.ip())),
            };
            ep.initiate_phase2(now(), local, remote, req).unwrap();
        }
        let mut events = vec![];
        let mut ike_keylog = vec![];
        let mut cookies = None;
        let mut buf = vec![0u8; 65536];
        while epoch.elapsed() < timeout && !done(&events) {
            while let Some(t) = ep.poll_transmit() {
                let s = if t.local.port() == 4500 {
                    &s4500
                } else {
                    &s500
                };
                s.send_to(&t.payload, t.remote).unwrap();
            }
            for (s, l) in [(&s500, local), (&s4500, local4500)] {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    // ISAKMP header (after the non-ESP marker on 4500).
                    let h = if l.port() == 4500 { 4 } else { 0 };
                    if cookies.is_none() && n >= h + 16 && buf[h + 8..h + 16] != [0; 8] {
                        cookies = Some((
                            buf[h..h + 8].try_into().unwrap(),
                            buf[h + 8..h + 16].try_into().unwrap(),
                        ));
                    }
                    let _ = ep.handle(now(), l, from, &buf[..n]);
                }
            }
            let t = now();
            if ep.poll_timeout().is_some_and(|due| due <= t) {
                ep.handle_timeout(t);
            }
            while let Some(e) = ep.poll_event() {
                if let Event::Phase1Up { id, .. } = &e {
                    ike_keylog.extend(ep.ike_keylog_line(*id));
                }
                events.push(e);
            }
        }
        while let Some(t) = ep.poll_transmit() {
            let s = if t.local.port() == 4500 {
                &s4500
            } else {
                &s500
            };
            let _ = s.send_to(&t.payload, t.remote);
        }
        Run {
            events,
            ike_keylog,
            cookies,
            isakmp: ep.isakmp_sas(),
            children: ep.child_sas(),
        }
    })
    .join()
    .expect("engine thread")
}

fn our_cfg(
    encr: EncrAlg,
    hash: HashAlg,
    group: GroupId,
    esp: EspTransform,
    aggressive: bool,
) -> EngineConfig {
    EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr,
            hash,
            group,
            lifetime: 86400,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp,
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry {
            prefix: THEIRS.parse().unwrap(),
            len: 32,
            key: Zeroizing::new(PSK.as_bytes().to_vec()),
            initiate: if aggressive {
                InitiateMode::Aggressive
            } else {
                InitiateMode::Main
            },
        }],
        answer_aggressive: aggressive,
        ..Default::default()
    }
}

fn swanctl_conf(ike: &str, esp: &str, aggressive: bool) -> String {
    swanctl_conf_extra(ike, esp, aggressive, "")
}

fn swanctl_conf_extra(ike: &str, esp: &str, aggressive: bool, extra: &str) -> String {
    swanctl_conf_full(ike, esp, aggressive, extra, OURS)
}

fn swanctl_conf_full(ike: &str, esp: &str, aggressive: bool, extra: &str, remote: &str) -> String {
    let local = if remote.contains(':') {
        THEIRS6
    } else {
        THEIRS
    };
    format!(
        "connections {{\n  gre {{\n    version = 1\n    {extra}\n    aggressive = {}\n    local_addrs = {local}\n    remote_addrs = {remote}\n    proposals = {ike}\n    \
         local {{\n      auth = psk\n    }}\n    remote {{\n      auth = psk\n    }}\n    \
         children {{\n      gre {{\n        mode = transport\n        local_ts = dynamic[gre]\n        remote_ts = dynamic[gre]\n        esp_proposals = {esp}\n      }}\n    }}\n  }}\n}}\n\
         secrets {{\n  ike-1 {{\n    secret = \"{PSK}\"\n  }}\n}}\n",
        if aggressive { "yes" } else { "no" }
    )
}

fn child(events: &[Event]) -> Option<ChildSa> {
    events.iter().find_map(|e| match e {
        Event::ChildSaInstalled(c) => Some(c.clone()),
        _ => None,
    })
}

/// dumpcap on our side of the veth pair, writing a pcapng file until dropped.
struct Capture {
    child: Child,
    file: String,
    /// A socket in our namespace for marker datagrams.
    probe: UdpSocket,
}

impl Capture {
    fn start(lab: &Lab) -> Capture {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg("command -v dumpcap && command -v tshark")
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "dumpcap/tshark missing: install tshark"
        );
        let file = lab.path("wire.pcapng");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}a", lab.ns), "dumpcap", "-q"])
            .args(["-i", &format!("{}x", lab.ns), "-w", &file])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dumpcap");
        // Probe until a packet shows up in the file: then dumpcap is live.
        let ns = format!("/var/run/netns/{}a", lab.ns);
        let probe = std::thread::spawn(move || {
            let f = std::fs::File::open(ns).expect("netns");
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            UdpSocket::bind(format!("{OURS}:0")).expect("probe socket")
        })
        .join()
        .expect("probe thread");
        let c = Capture { child, file, probe };
        c.mark(b"dmvpn-capture-start");
        c
    }

    /// Send `marker` until dumpcap has written it to the file: everything
    /// before it is in the file too.
    fn mark(&self, marker: &[u8]) {
        let t0 = std::time::Instant::now();
        while !std::fs::read(&self.file).is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "dumpcap is not capturing"
            );
            let _ = self.probe.send_to(marker, format!("{THEIRS}:9"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop capturing and return the file.
    fn stop(mut self) -> String {
        self.mark(b"dmvpn-capture-end");
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// tshark's dissection of the ISAKMP messages in `pcap`, one line per
/// message: exchange type, encryption flag, responder cookie.
fn isakmp_summary(pcap: &str) -> Vec<(u8, bool, String)> {
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap,
            "-Y",
            "isakmp",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args(["-e", "isakmp.exchangetype", "-e", "isakmp.flag_e"])
        .args([
            "-e",
            "isakmp.rspi",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert!(
                f.len() >= 3 && f[3..].iter().all(|x| x.is_empty()),
                "malformed or expert info: {l}"
            );
            (
                f[0].parse().expect("exchange type"),
                matches!(f[1], "1" | "True" | "true"),
                f[2].to_string(),
            )
        })
        .collect()
}

/// Two namespaces and a charon configured for `ike`/`esp`, over IPv4 or
/// IPv6; returns the lab and our address.
fn lab_for(tag: &str, ike: &str, esp: &str, aggressive: bool, v6: bool) -> (Lab, &'static str) {
    if v6 {
        let conf = swanctl_conf_full(ike, esp, aggressive, "", OURS6);
        (Lab::new_v6(tag, &conf), OURS6)
    } else {
        (Lab::new(tag, &swanctl_conf(ike, esp, aggressive)), OURS)
    }
}

/// We initiate; charon answers. Keys must match what charon logs.
fn we_initiate(tag: &str, cfg: EngineConfig, ike: &str, esp: &str, aggressive: bool) {
    we_initiate_captured(tag, cfg, ike, esp, aggressive, false, false);
}

/// `we_initiate`, optionally capturing the wire; returns the capture file.
fn we_initiate_captured(
    tag: &str,
    cfg: EngineConfig,
    ike: &str,
    esp: &str,
    aggressive: bool,
    capture: bool,
    v6: bool,
) -> Option<(Lab, String)> {
    let cfg_p1 = (cfg.policies[0].hash, cfg.policies[0].encr);
    let (lab, ours) = lab_for(tag, ike, esp, aggressive, v6);
    let cap = capture.then(|| Capture::start(&lab));
    let run = run_engine(
        format!("{}a", lab.ns),
        ours,
        cfg,
        true,
        |ev| {
            ev.iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { .. } | Event::Phase2Failed { .. }))
        },
        Duration::from_secs(20),
    );
    let log = lab.log();
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Phase1Up { .. })),
        "phase 1 not up: {:?}\n{log}",
        run.events
    );
    let c = child(&run.events).unwrap_or_else(|| panic!("no child SA: {:?}\n{log}", run.events));
    check_phase1(&log, &run, &cfg_p1);
    if v6 {
        // GRE between the two IPv6 addresses, as charon saw it too.
        assert_eq!(c.local_proxy, Some(gre_proxy(OURS6.parse().unwrap())));
        assert_eq!(c.remote_proxy, Some(gre_proxy(THEIRS6.parse().unwrap())));
        for seen in [
            // Our identity is our IPv6 address (ID type 5).
            "established between fd00:16::2[fd00:16::2]...fd00:16::1[fd00:16::1]",
            "received: fd00:16::1/128[gre] => match: fd00:16::1/128[gre]",
            "received: fd00:16::2/128[gre] => match: fd00:16::2/128[gre]",
        ] {
            assert!(log.contains(seen), "no '{seen}' in charon's log:\n{log}");
        }
    }
    // ESP keys (charon is the responder: its "encryption initiator key" is our outbound).
    let ei = charon_value(&log, "encryption initiator key").expect("enc i");
    let er = charon_value(&log, "encryption responder key").expect("enc r");
    assert_eq!(hex::encode(&*c.outbound.encryption), hex::encode(&ei));
    assert_eq!(hex::encode(&*c.inbound.encryption), hex::encode(&er));
    if c.transform.integ.is_some() {
        let ii = charon_value(&log, "integrity initiator key").expect("int i");
        let ir = charon_value(&log, "integrity responder key").expect("int r");
        assert_eq!(hex::encode(&*c.outbound.integrity), hex::encode(&ii));
        assert_eq!(hex::encode(&*c.inbound.integrity), hex::encode(&ir));
    }
    assert!(
        log.contains("IKE_SA gre[1] state change: CONNECTING => ESTABLISHED"),
        "{log}"
    );
    if c.lifetime_secs != 3600 {
        panic!("lifetime {}", c.lifetime_secs);
    }
    cap.map(|c| {
        let f = c.stop();
        (lab, f)
    })
}

#[test]
fn strongswan_main_mode_seed_crypto_des_md5_group1() {
    we_initiate(
        "s",
        our_cfg(
            EncrAlg::Des,
            HashAlg::Md5,
            GroupId::Modp768,
            EspTransform {
                encr: EspEncr::TripleDes,
                integ: Some(HashAlg::Md5),
            },
            false,
        ),
        "des-md5-modp768",
        "3des-md5",
        false,
    );
}

#[test]
fn strongswan_aggressive_mode_gcm_with_ecp256_pfs() {
    let mut cfg = our_cfg(
        EncrAlg::Aes128,
        HashAlg::Sha1,
        GroupId::Modp1024,
        EspTransform {
            encr: EspEncr::AesGcm16(128),
            integ: None,
        },
        true,
    );
    cfg.pfs = Some(GroupId::Ecp256);
    we_initiate("a", cfg, "aes128-sha1-modp1024", "aes128gcm16-ecp256", true);
}

/// We start Aggressive Mode with charon and send the third message
/// encrypted, as IOS and libreswan do: tshark sees the encryption flag on
/// it, charon verifies HASH_I, and the Quick Mode that follows (its IV
/// derived from that message's last ciphertext block) yields the keys
/// charon logs.
#[test]
fn strongswan_aggressive_mode_third_message_encrypted() {
    let cfg = our_cfg(
        EncrAlg::Aes256,
        HashAlg::Sha256,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(256),
            integ: Some(HashAlg::Sha256),
        },
        true,
    );
    let (lab, pcap) = we_initiate_captured(
        "e",
        cfg,
        "aes256-sha256-modp2048",
        "aes256-sha256",
        true,
        true,
        false,
    )
    .expect("captured");
    let msgs = isakmp_summary(&pcap);
    let am: Vec<_> = msgs.iter().filter(|m| m.0 == 4).collect();
    assert!(am.len() >= 3, "{msgs:?}");
    // AM1 (no responder cookie yet) and AM2 in the clear, AM3 encrypted.
    assert!(!am[0].1 && !am[1].1, "{msgs:?}");
    assert!(
        am[2].1,
        "third Aggressive Mode message not encrypted: {msgs:?}"
    );
    // Quick Mode went both ways, encrypted.
    let qm: Vec<_> = msgs.iter().filter(|m| m.0 == 32).collect();
    assert!(qm.len() >= 2 && qm.iter().all(|m| m.1), "{msgs:?}");
    let log = lab.log();
    assert!(
        !log.contains("integrity check failed") && !log.contains("HASH payload mismatch"),
        "{log}"
    );
}

/// charon initiates, we answer: phase 1 keys must agree and charon must
/// accept our QM2 (it then fails only at kernel install).
#[test]
fn strongswan_initiates_main_mode_ecp384_pfs_modp1536() {
    let mut lab = Lab::new(
        "r",
        &swanctl_conf("aes256-sha384-ecp384", "aes256-sha1-modp1536", false),
    );
    lab.swanctl_bg("--initiate --child gre --timeout 5");
    let mut cfg = our_cfg(
        EncrAlg::Aes256,
        HashAlg::Sha384,
        GroupId::Ecp384,
        EspTransform {
            encr: EspEncr::AesCbc(256),
            integ: Some(HashAlg::Sha1),
        },
        false,
    );
    cfg.pfs = Some(GroupId::Modp1536);
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        false,
        |_| false,
        Duration::from_secs(4),
    );
    let log = lab.log();
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Phase1Up { .. })),
        "{:?}\n{log}",
        run.events
    );
    let ka = charon_value(&log, "encryption key Ka").expect("Ka");
    assert!(run.ike_keylog[0].ends_with(&format!(",{}", hex::encode(&ka))));
    assert!(
        log.contains("state change: CONNECTING => ESTABLISHED"),
        "{log}"
    );
    // charon verified our HASH(2) and derived keys (install fails without kernel ESP).
    assert!(
        log.contains("CHILD_SA gre{1} state change: CREATED => INSTALLING"),
        "{log}"
    );
    assert!(!log.contains("hash verification failed"), "{log}");
}

#[test]
fn strongswan_main_mode_aes256_sha256_modp2048() {
    we_initiate(
        "m",
        our_cfg(
            EncrAlg::Aes256,
            HashAlg::Sha256,
            GroupId::Modp2048,
            EspTransform {
                encr: EspEncr::AesCbc(256),
                integ: Some(HashAlg::Sha256),
            },
            false,
        ),
        "aes256-sha256-modp2048",
        "aes256-sha256",
        false,
    );
}

/// charon forces UDP encapsulation (`encap = yes` fakes NAT-D) and runs
/// DPD every second: we must float to 4500, agree on UDP-encapsulated
/// transport mode with the same keys, and answer its R-U-THERE.
#[test]
fn strongswan_forced_nat_t_and_dpd() {
    let lab = Lab::new(
        "n",
        &swanctl_conf_extra(
            "aes128-sha256-modp2048",
            "aes128-sha256",
            false,
            "encap = yes\n    dpd_delay = 1s",
        ),
    );
    let mut cfg = our_cfg(
        EncrAlg::Aes128,
        HashAlg::Sha256,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(128),
            integ: Some(HashAlg::Sha256),
        },
        false,
    );
    cfg.dpd = Some(DpdConfig {
        interval: Duration::from_secs(1),
        retry: Duration::from_secs(1),
        max_retries: 3,
    });
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        true,
        |_| false,
        Duration::from_secs(5),
    );
    let log = lab.log();
    let c = child(&run.events).unwrap_or_else(|| panic!("no child SA: {:?}\n{log}", run.events));
    assert_eq!(
        c.encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        },
        "{log}"
    );
    assert!(
        log.contains("from 172.16.0.1[4500] to 172.16.0.2[4500]"),
        "{log}"
    );
    let ei = charon_value(&log, "encryption initiator key").expect("enc i");
    assert_eq!(hex::encode(&*c.outbound.encryption), hex::encode(&ei));
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e, Event::PeerDead { .. })),
        "{:?}",
        run.events
    );
    assert!(!log.contains("DPD check timed out"), "{log}");
    // charon parsed (and verified the HASH of) our R-U-THERE-ACKs.
    assert!(
        log.contains("parsed INFORMATIONAL_V1 request") && log.contains("[ HASH N(DPD_ACK) ]"),
        "{log}"
    );
}

/// A real NAT (nftables masquerade) between us and charon: both sides
/// detect it from NAT-D, we float to 4500, keys still agree.
#[test]
fn strongswan_behind_real_nat() {
    let lab = Lab::new_nat(
        "t",
        &swanctl_conf_full(
            "aes256-sha1-modp2048",
            "aes256-sha1",
            false,
            "",
            "172.16.0.254",
        ),
    );
    let cfg = our_cfg(
        EncrAlg::Aes256,
        HashAlg::Sha1,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(256),
            integ: Some(HashAlg::Sha1),
        },
        false,
    );
    let run = run_engine(
        format!("{}a", lab.ns),
        NATTED,
        cfg,
        true,
        |ev| {
            ev.iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { .. } | Event::Phase2Failed { .. }))
        },
        Duration::from_secs(10),
    );
    let log = lab.log();
    let c = child(&run.events).unwrap_or_else(|| panic!("no child SA: {:?}\n{log}", run.events));
    assert_eq!(
        c.encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        },
        "{log}"
    );
    assert!(log.contains("remote host is behind NAT"), "{log}");
    let ei = charon_value(&log, "encryption initiator key").expect("enc i");
    let ii = charon_value(&log, "integrity initiator key").expect("int i");
    assert_eq!(hex::encode(&*c.outbound.encryption), hex::encode(&ei));
    assert_eq!(hex::encode(&*c.outbound.integrity), hex::encode(&ii));
}

/// Phase 1 keys against charon's log: our engine's Ka (key-log line) must
/// equal charon's, and SKEYID_d/a/e and Ka derived by our key schedule from
/// charon's SKEYID, g^xy and the cookies on the wire must equal charon's.
fn check_phase1(log: &str, run: &Run, (prf, encr): &(HashAlg, EncrAlg)) {
    let get = |label: &str| {
        charon_value(log, label).unwrap_or_else(|| panic!("no {label} in charon log\n{log}"))
    };
    let ka = get("encryption key Ka");
    assert!(
        run.ike_keylog
            .first()
            .is_some_and(|l| l.ends_with(&format!(",{}", hex::encode(&ka)))),
        "Ka: ours {:?} vs charon {}",
        run.ike_keylog,
        hex::encode(&ka)
    );
    let (ci, cr) = run.cookies.expect("no phase 1 cookies seen");
    let keys = dmvpn_ike::keys::derive_phase1(
        *prf,
        *encr,
        Zeroizing::new(get("SKEYID")),
        &get("shared Diffie Hellman secret"),
        &ci,
        &cr,
    );
    assert!(
        run.ike_keylog[0].contains(&hex::encode(ci)),
        "cookie: {:?}",
        run.ike_keylog
    );
    assert_eq!(
        hex::encode(&*keys.skeyid_d),
        hex::encode(get("SKEYID_d")),
        "SKEYID_d"
    );
    assert_eq!(
        hex::encode(&*keys.skeyid_a),
        hex::encode(get("SKEYID_a")),
        "SKEYID_a"
    );
    assert_eq!(
        hex::encode(&*keys.skeyid_e),
        hex::encode(get("SKEYID_e")),
        "SKEYID_e"
    );
    assert_eq!(hex::encode(&*keys.enc_key), hex::encode(&ka), "Ka");
}

/// charon initiates, we answer. Phase 1 keys must agree and charon must
/// verify our HASH(2) and derive its CHILD_SA keys (then install fails
/// without kernel ESP, so it never sends QM3).
fn they_initiate(tag: &str, cfg: EngineConfig, ike: &str, esp: &str, aggressive: bool, v6: bool) {
    let cfg_p1 = (cfg.policies[0].hash, cfg.policies[0].encr);
    let (mut lab, ours) = lab_for(tag, ike, esp, aggressive, v6);
    lab.swanctl_bg("--initiate --child gre --timeout 5");
    let run = run_engine(
        format!("{}a", lab.ns),
        ours,
        cfg,
        false,
        |_| false,
        Duration::from_secs(3),
    );
    let log = lab.log();
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Phase1Up { .. })),
        "{:?}\n{log}",
        run.events
    );
    check_phase1(&log, &run, &cfg_p1);
    assert!(
        log.contains("state change: CONNECTING => ESTABLISHED"),
        "{log}"
    );
    assert!(
        log.contains("CHILD_SA gre{1} state change: CREATED => INSTALLING"),
        "{log}"
    );
    assert!(
        charon_value(&log, "encryption initiator key").is_some(),
        "{log}"
    );
    assert!(!log.contains("hash verification failed"), "{log}");
}

/// An acceptance suite: charon's ike and esp proposals, our phase 1, our ESP.
type Suite = (
    &'static str,
    &'static str,
    (EncrAlg, HashAlg, GroupId),
    EspTransform,
);

/// The acceptance suites.
fn matrix_suites() -> [Suite; 3] {
    [
        (
            "aes128-sha1-modp1024",
            "aes128-sha1",
            (EncrAlg::Aes128, HashAlg::Sha1, GroupId::Modp1024),
            EspTransform {
                encr: EspEncr::AesCbc(128),
                integ: Some(HashAlg::Sha1),
            },
        ),
        (
            "aes256-sha256-modp2048",
            "aes256-sha256",
            (EncrAlg::Aes256, HashAlg::Sha256, GroupId::Modp2048),
            EspTransform {
                encr: EspEncr::AesCbc(256),
                integ: Some(HashAlg::Sha256),
            },
        ),
        (
            "3des-md5-modp1024",
            "3des-md5",
            (EncrAlg::TripleDes, HashAlg::Md5, GroupId::Modp1024),
            EspTransform {
                encr: EspEncr::TripleDes,
                integ: Some(HashAlg::Md5),
            },
        ),
    ]
}

/// Each suite in Main or Aggressive Mode, with us or charon initiating.
fn matrix(we_start: bool, aggressive: bool) {
    for (i, (ike, esp, (encr, hash, group), t)) in matrix_suites().into_iter().enumerate() {
        let what = format!(
            "{ike}/{esp} {} mode, {} initiating",
            if aggressive { "aggressive" } else { "main" },
            if we_start { "we" } else { "charon" }
        );
        let tag = format!(
            "{}{}{i}",
            if we_start { 'w' } else { 'c' },
            if aggressive { 'a' } else { 'm' }
        );
        let cfg = our_cfg(encr, hash, group, t, aggressive);
        let r = std::panic::catch_unwind(|| {
            if we_start {
                we_initiate(&tag, cfg, ike, esp, aggressive)
            } else {
                they_initiate(&tag, cfg, ike, esp, aggressive, false)
            }
        });
        assert!(r.is_ok(), "interop failed: {what}");
    }
}

#[test]
fn strongswan_matrix_we_initiate_main() {
    matrix(true, false);
}

#[test]
fn strongswan_matrix_we_initiate_aggressive() {
    matrix(true, true);
}

#[test]
fn strongswan_matrix_charon_initiates_main() {
    matrix(false, false);
}

#[test]
fn strongswan_matrix_charon_initiates_aggressive() {
    matrix(false, true);
}

/// charon with kernel-libipsec (user-space ESP, tunnel mode, UDP 4500)
/// and forced encapsulation: the CHILD_SA with GRE selectors between the
/// peer addresses is installed on both sides with the same keys.
#[test]
fn strongswan_libipsec_tunnel_over_udp4500_installs() {
    let lab = Lab::new_with(
        "l",
        &swanctl_conf_extra("aes128-sha1-modp2048", "aes128-sha1", false, "encap = yes")
            .replace("mode = transport", "mode = tunnel"),
        true,
    );
    let mut cfg = our_cfg(
        EncrAlg::Aes128,
        HashAlg::Sha1,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(128),
            integ: Some(HashAlg::Sha1),
        },
        false,
    );
    cfg.transform_sets[0].mode = Mode::Tunnel;
    let cfg_p1 = (HashAlg::Sha1, EncrAlg::Aes128);
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        true,
        |ev| {
            ev.iter().any(|e| {
                matches!(
                    e,
                    Event::ChildSaInstalled(_)
                        | Event::ChildSaDeleted { .. }
                        | Event::Phase2Failed { .. }
                )
            })
        },
        Duration::from_secs(10),
    );
    // charon installs after our QM3, which was sent as the engine stopped.
    let t0 = std::time::Instant::now();
    while !lab
        .log()
        .contains("CHILD_SA gre{1} state change: INSTALLING => INSTALLED")
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = lab.log();
    let c = child(&run.events).unwrap_or_else(|| panic!("no child SA: {:?}\n{log}", run.events));
    assert_eq!(c.mode, Mode::Tunnel);
    assert_eq!(
        c.encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        },
        "{log}"
    );
    check_phase1(&log, &run, &cfg_p1);
    assert!(
        log.contains("CHILD_SA gre{1} state change: INSTALLING => INSTALLED"),
        "{log}"
    );
    assert!(log.contains("CHILD_SA gre{1} established"), "{log}");
    assert!(!log.contains("DELETING"), "{log}");
    for (label, ours) in [
        ("encryption initiator key", &c.outbound.encryption),
        ("encryption responder key", &c.inbound.encryption),
        ("integrity initiator key", &c.outbound.integrity),
        ("integrity responder key", &c.inbound.integrity),
    ] {
        let theirs = charon_value(&log, label).unwrap_or_else(|| panic!("no {label}\n{log}"));
        assert_eq!(hex::encode(&**ours), hex::encode(&theirs), "{label}");
    }
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}b", lab.ns),
            "swanctl",
            "--list-sas",
        ])
        .args(["-u", &format!("unix://{}", lab.path("charon.vici"))])
        .env("STRONGSWAN_CONF", lab.path("strongswan.conf"))
        .output()
        .expect("swanctl --list-sas");
    let sas = String::from_utf8_lossy(&out.stdout);
    assert!(sas.contains("INSTALLED, TUNNEL-in-UDP"), "{sas}");
}

/// charon (kernel-libipsec) initiates tunnel mode with forced UDP
/// encapsulation: it installs after our QM2 and sends QM3, so we install
/// too and every ESP key is compared (charon's initiator keys are our
/// inbound ones).
#[test]
fn strongswan_libipsec_charon_initiates_tunnel_installs() {
    let mut lab = Lab::new_with(
        "k",
        &swanctl_conf_extra(
            "aes256-sha256-modp2048",
            "aes256-sha256",
            false,
            "encap = yes",
        )
        .replace("mode = transport", "mode = tunnel"),
        true,
    );
    lab.swanctl_bg("--initiate --child gre --timeout 5");
    let mut cfg = our_cfg(
        EncrAlg::Aes256,
        HashAlg::Sha256,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(256),
            integ: Some(HashAlg::Sha256),
        },
        false,
    );
    cfg.transform_sets[0].mode = Mode::Tunnel;
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        false,
        |ev| {
            ev.iter()
                .any(|e| matches!(e, Event::ChildSaInstalled(_) | Event::Phase2Failed { .. }))
        },
        Duration::from_secs(10),
    );
    let log = lab.log();
    let c = child(&run.events).unwrap_or_else(|| panic!("no child SA: {:?}\n{log}", run.events));
    assert_eq!(c.mode, Mode::Tunnel);
    assert_eq!(
        c.encapsulation,
        Encapsulation::Udp {
            local_port: 4500,
            remote_port: 4500
        },
        "{log}"
    );
    check_phase1(&log, &run, &(HashAlg::Sha256, EncrAlg::Aes256));
    assert!(
        log.contains("CHILD_SA gre{1} state change: INSTALLING => INSTALLED"),
        "{log}"
    );
    assert!(!log.contains("DELETING"), "{log}");
    for (label, ours) in [
        ("encryption initiator key", &c.inbound.encryption),
        ("encryption responder key", &c.outbound.encryption),
        ("integrity initiator key", &c.inbound.integrity),
        ("integrity responder key", &c.outbound.integrity),
    ] {
        let theirs = charon_value(&log, label).unwrap_or_else(|| panic!("no {label}\n{log}"));
        assert_eq!(hex::encode(&**ours), hex::encode(&theirs), "{label}");
    }
}

/// `swanctl --list-sas` in charon's namespace.
fn list_sas(lab: &Lab) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}b", lab.ns),
            "swanctl",
            "--list-sas",
        ])
        .args(["-u", &format!("unix://{}", lab.path("charon.vici"))])
        .env("STRONGSWAN_CONF", lab.path("strongswan.conf"))
        .output()
        .expect("swanctl --list-sas");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A libipsec charon (tunnel mode, UDP 4500) so that its CHILD_SAs live on,
/// and our tunnel-mode configuration with a short phase 1 lifetime.
fn rekey_lab(tag: &str, extra: &str) -> (Lab, EngineConfig) {
    let lab = Lab::new_with(
        tag,
        &swanctl_conf_extra("aes128-sha256-modp2048", "aes128-sha256", false, extra)
            .replace("mode = transport", "mode = tunnel"),
        true,
    );
    let mut cfg = our_cfg(
        EncrAlg::Aes128,
        HashAlg::Sha256,
        GroupId::Modp2048,
        EspTransform {
            encr: EspEncr::AesCbc(128),
            integ: Some(HashAlg::Sha256),
        },
        false,
    );
    cfg.transform_sets[0].mode = Mode::Tunnel;
    (lab, cfg)
}

/// Our phase 1 lifetime is 12 s: we start a new Main Mode (on port 4500,
/// where the first one floated) at 85-90 % of it, delete the old ISAKMP SA,
/// and the phase 2 rekey at 20 s runs on the new one. charon adopts its
/// CHILD_SA into the new IKE_SA; in the end both sides hold one ISAKMP SA
/// and installed IPsec SAs.
#[test]
fn strongswan_phase1_rekeyed_by_us() {
    let (lab, mut cfg) = rekey_lab("r", "encap = yes");
    cfg.policies[0].lifetime = 12;
    cfg.sa_lifetime_secs = 40;
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        true,
        |ev| {
            let replaced = ev.iter().any(
                |e| matches!(e, Event::Phase1Down { reason, .. } if *reason == Reason::Replaced),
            );
            let rekeyed = ev.iter().any(|e| matches!(e, Event::ChildSaRekeyed { .. }));
            replaced && rekeyed
        },
        Duration::from_secs(40),
    );
    let log = lab.log();
    let ups: Vec<u64> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Phase1Up { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 2, "{:?}\n{log}", run.events);
    let rekeyed = run
        .events
        .iter()
        .find_map(|e| match e {
            Event::ChildSaRekeyed { new, .. } => Some(new.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no phase 2 rekey: {:?}\n{log}", run.events));
    // Phase 2 rekeyed on the new ISAKMP SA.
    assert_eq!(rekeyed.phase1, ups[1]);
    assert!(
        !run.events.iter().any(|e| matches!(
            e,
            Event::ChildSaDeleted { .. } | Event::Phase2Failed { .. } | Event::Phase1Failed { .. }
        )),
        "{:?}\n{log}",
        run.events
    );
    assert_eq!(run.isakmp.len(), 1, "{:?}", run.isakmp);
    assert_eq!(run.isakmp[0].id, ups[1]);
    assert_eq!(run.isakmp[0].state, "QM_IDLE");
    assert_eq!(
        run.children.len(),
        2,
        "old and new IPsec SAs: {:?}",
        run.children
    );
    assert!(log.contains("detected reauth of existing IKE_SA"), "{log}");
    assert!(log.contains("received DELETE for IKE_SA gre[1]"), "{log}");
    let sas = list_sas(&lab);
    assert_eq!(sas.matches("ESTABLISHED").count(), 1, "{sas}");
    assert!(sas.contains("gre: #2, ESTABLISHED, IKEv1"), "{sas}");
    assert!(sas.contains("INSTALLED, TUNNEL-in-UDP"), "{sas}");
}

/// charon initiates and reauthenticates its IKE_SA after `rekey_time`
/// (IKEv1 has no in-place rekey): we accept the new Main Mode from a peer
/// we already hold an SA with. charon moves its CHILD_SA to the new IKE_SA
/// and deletes the old one at the old one's hard lifetime (as our own
/// lifetime timer does at the same moment); the IPsec SA lives on.
#[test]
fn strongswan_phase1_rekeyed_by_charon() {
    let (mut lab, mut cfg) = rekey_lab(
        "c",
        "encap = yes\n    rekey_time = 8s\n    over_time = 6s\n    rand_time = 1s",
    );
    lab.swanctl_bg("--initiate --child gre --timeout 5");
    // Only charon renews phase 1 here.
    cfg.phase1_rekey = false;
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
        cfg,
        false,
        |ev| {
            let ups = ev
                .iter()
                .filter(|e| matches!(e, Event::Phase1Up { .. }))
                .count();
            ups >= 2 && ev.iter().any(|e| matches!(e, Event::Phase1Down { .. }))
        },
        Duration::from_secs(30),
    );
    let log = lab.log();
    let ups: Vec<u64> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Phase1Up { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 2, "{:?}\n{log}", run.events);
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Phase1Down { id, .. } if *id == ups[0])),
        "{:?}\n{log}",
        run.events
    );
    assert!(
        !run.events.iter().any(|e| matches!(
            e,
            Event::ChildSaDeleted { .. } | Event::Phase2Failed { .. } | Event::Phase1Failed { .. }
        )),
        "{:?}\n{log}",
        run.events
    );
    // The new ISAKMP SA, which charon started, is the one left.
    assert_eq!(run.isakmp.len(), 1, "{:?}\n{:?}", run.isakmp, run.events);
    assert_eq!(run.isakmp[0].id, ups[1]);
    assert!(!run.isakmp[0].initiator);
    assert_eq!(run.children.len(), 1, "{:?}", run.children);
    assert!(
        log.contains("IKE_SA gre[2] state change: CONNECTING => ESTABLISHED"),
        "{log}"
    );
    assert!(
        !log.contains("CHILD_SA gre{1} state change: INSTALLED"),
        "{log}"
    );
    let sas = list_sas(&lab);
    assert_eq!(sas.matches("ESTABLISHED").count(), 1, "{sas}");
    assert!(sas.contains("INSTALLED, TUNNEL-in-UDP"), "{sas}");
}

/// IKEv1 Main Mode over IPv6 (as seed 000 runs it), each side initiating:
/// IPv6 identities and GRE proxies between the two IPv6 addresses, and
/// every phase 1 and ESP key equal to charon's.
#[test]
fn strongswan_main_mode_over_ipv6() {
    let cfg = || {
        let mut c = our_cfg(
            EncrAlg::Aes256,
            HashAlg::Sha256,
            GroupId::Modp2048,
            EspTransform {
                encr: EspEncr::AesCbc(256),
                integ: Some(HashAlg::Sha256),
            },
            false,
        );
        c.psks[0].prefix = THEIRS6.parse().unwrap();
        c.psks[0].len = 128;
        c
    };
    let (ike, esp) = ("aes256-sha256-modp2048", "aes256-sha256");
    we_initiate_captured("6w", cfg(), ike, esp, false, false, true);
    they_initiate("6c", cfg(), ike, esp, false, true);
}
