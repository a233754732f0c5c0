//! Interop with a real strongSwan (charon, IKEv1 PSK) in a network
//! namespace, our engine on a real UDP socket in another. Needs root,
//! iproute2 and strongswan-charon/swanctl; fails loudly without them.
//!
//! Without kernel ESP charon cannot install the CHILD_SA, so a Quick Mode
//! ends with charon deleting (or refusing) the CHILD_SA; success is
//! agreement on every key charon logs (`ike = 4, chd = 4`).

use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const OURS: &str = "172.16.0.1";
const THEIRS: &str = "172.16.0.2";
/// Our address when behind the NAT router.
const NATTED: &str = "10.0.0.1";
const PSK: &str = "cisco123-interop";

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "command failed: {cmd}");
}

/// Two namespaces joined by a veth pair and a charon; all removed on drop.
struct Lab {
    ns: String,
    dir: tempfile::TempDir,
    charon: Option<Child>,
    /// Background swanctl commands, reaped on drop.
    bg: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, charon_conn: &str) -> Lab {
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
            bg: vec![],
        };
        sh(&format!(
            "ip netns add {ns}a && ip netns add {ns}b && \
             ip link add {ns}x netns {ns}a type veth peer name {ns}y netns {ns}b && \
             ip -n {ns}a addr add {OURS}/24 dev {ns}x && ip -n {ns}b addr add {THEIRS}/24 dev {ns}y && \
             ip -n {ns}a link set {ns}x up && ip -n {ns}b link set {ns}y up && \
             ip -n {ns}a link set lo up && ip -n {ns}b link set lo up"
        ));
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
        std::fs::write(
            self.path("strongswan.conf"),
            format!(
                "charon {{\n  load = random nonce openssl pem pkcs1 x509 pubkey hmac md5 sha1 sha2 aes des gcm kdf kernel-netlink socket-default vici\n  \
                 install_routes = no\n  i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n  \
                 retransmit_tries = 3\n  \
                 filelog {{\n    log {{\n      path = {d}/charon.log\n      flush_line = yes\n      default = 1\n      ike = 4\n      chd = 4\n      cfg = 2\n      net = 2\n      enc = 1\n    }}\n  }}\n  \
                 plugins {{\n    vici {{\n      socket = unix://{d}/charon.vici\n    }}\n  }}\n}}\n\
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
        let t0 = Instant::now();
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
        let local: SocketAddr = format!("{ours}:500").parse().unwrap();
        let local4500: SocketAddr = format!("{ours}:4500").parse().unwrap();
        let remote: SocketAddr = format!("{THEIRS}:500").parse().unwrap();
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
        if initiate {
            let req = Phase2Request {
                local_proxy: Some(gre_proxy(local.ip())),
                remote_proxy: Some(gre_proxy(remote.ip())),
            };
            ep.initiate_phase2(Instant::now(), local, remote, req)
                .unwrap();
        }
        let t0 = Instant::now();
        let mut events = vec![];
        let mut ike_keylog = vec![];
        let mut buf = vec![0u8; 65536];
        while t0.elapsed() < timeout && !done(&events) {
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
                    let _ = ep.handle(Instant::now(), l, from, &buf[..n]);
                }
            }
            let now = Instant::now();
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
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
        Run { events, ike_keylog }
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
        }],
        aggressive,
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
    format!(
        "connections {{\n  gre {{\n    version = 1\n    {extra}\n    aggressive = {}\n    local_addrs = {THEIRS}\n    remote_addrs = {remote}\n    proposals = {ike}\n    \
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

/// We initiate; charon answers. Keys must match what charon logs.
fn we_initiate(tag: &str, cfg: EngineConfig, ike: &str, esp: &str, aggressive: bool) {
    let lab = Lab::new(tag, &swanctl_conf(ike, esp, aggressive));
    let run = run_engine(
        format!("{}a", lab.ns),
        OURS,
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
    // Phase 1 encryption key: our key-log line against charon's.
    let ka =
        charon_value(&log, "encryption key Ka").unwrap_or_else(|| panic!("no Ka in log\n{log}"));
    assert!(
        run.ike_keylog[0].ends_with(&format!(",{}", hex::encode(&ka))),
        "{:?} vs {}",
        run.ike_keylog,
        hex::encode(&ka)
    );
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
