//! Interop with libreswan 4.10's pluto as the Aggressive Mode responder:
//! pluto in one network namespace, our engine on real UDP sockets in
//! another. The Debian `libreswan` package conflicts with strongSwan's, so
//! the test runs pluto from the unpacked package (`apt-get download
//! libreswan; dpkg-deb -x libreswan_*.deb /opt/libreswan`, or set
//! `LIBRESWAN_ROOT`), with its libraries (`libldns3
//! libevent-pthreads-2.1-7 libunbound8 libnss3-tools`) installed; pluto
//! looks for its helpers under /usr/libexec/ipsec, so that directory is
//! bind-mounted from the package inside pluto's namespace only. Needs root
//! and iproute2; fails loudly without them.
//!
//! Without kernel ESP pluto, as the Quick Mode responder, fails to install
//! its inbound SA before it would send QM2 ("netlink response for Add SA
//! ... Protocol not supported"); getting that far means it decrypted our
//! QM1, verified its HASH(1), accepted the proposal and derived KEYMAT.

use dmvpn_ike::Instant;
use dmvpn_ike::crypto::{EncrAlg, GroupId, HashAlg};
use dmvpn_ike::policy::gre_proxy;
use dmvpn_ike::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const OURS: &str = "172.16.0.1";
const THEIRS: &str = "172.16.0.2";
const PSK: &str = "libreswan-interop-key";

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "command failed: {cmd}");
}

fn root() -> String {
    std::env::var("LIBRESWAN_ROOT").unwrap_or_else(|_| "/opt/libreswan".into())
}

struct Lab {
    ns: String,
    dir: tempfile::TempDir,
    pluto: Option<Child>,
}

impl Lab {
    fn new(tag: &str, conn: &str) -> Lab {
        let pluto = format!("{}/usr/libexec/ipsec/pluto", root());
        assert!(
            std::path::Path::new(&pluto).exists(),
            "{pluto} missing: unpack the Debian libreswan 4.10 package there (see this file's header)"
        );
        for tool in ["ip", "certutil"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "{tool} missing: install iproute2 libnss3-tools"
            );
        }
        let ns = format!("dmlsw{}{}", std::process::id() % 100000, tag);
        let mut lab = Lab {
            ns: ns.clone(),
            dir: tempfile::tempdir().unwrap(),
            pluto: None,
        };
        sh(&format!(
            "ip netns add {ns}a && ip netns add {ns}b && \
             ip link add {ns}x netns {ns}a type veth peer name {ns}y netns {ns}b && \
             ip -n {ns}a addr add {OURS}/24 dev {ns}x && ip -n {ns}b addr add {THEIRS}/24 dev {ns}y && \
             ip -n {ns}a link set {ns}x up && ip -n {ns}b link set {ns}y up && \
             ip -n {ns}a link set lo up && ip -n {ns}b link set lo up"
        ));
        let d = lab.dir.path().to_string_lossy().into_owned();
        sh(&format!(
            "mkdir -p {d}/nss {d}/run && certutil -N -d sql:{d}/nss --empty-password"
        ));
        std::fs::write(lab.path("ipsec.conf"), conn).unwrap();
        std::fs::write(
            lab.path("ipsec.secrets"),
            format!("{THEIRS} {OURS} : PSK \"{PSK}\"\n"),
        )
        .unwrap();
        let r = root();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{ns}b"), "sh", "-c"])
            .arg(format!(
                "mount --bind {r}/usr/libexec /usr/libexec && mount --bind {d}/run /run && \
                 exec /usr/libexec/ipsec/pluto --nofork --config {d}/ipsec.conf \
                 --secretsfile {d}/ipsec.secrets --ipsecdir {d} --nssdir {d}/nss \
                 --rundir {d}/run --logfile {d}/pluto.log --debug crypt"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pluto");
        lab.pluto = Some(child);
        let t0 = std::time::Instant::now();
        while !lab
            .log()
            .contains(&format!("adding UDP interface {ns}y {THEIRS}:500"))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "pluto did not start:\n{}",
                lab.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).to_string_lossy().into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("pluto.log")).unwrap_or_default()
    }

    /// pluto's log without its debug lines (for failure messages).
    fn summary(&self) -> String {
        let log = self.log();
        let start = log.find("listening for IKE messages").unwrap_or(0);
        log[start..]
            .lines()
            .filter(|l| !l.contains(": | "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = &mut self.pluto {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let ns = &self.ns;
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns del {ns}a; ip netns del {ns}b"))
            .status();
    }
}

/// Run our engine in `ns` as the initiator until pluto's log (`log`)
/// holds `until` or `timeout` passes.
fn run_engine(
    ns: String,
    cfg: EngineConfig,
    timeout: Duration,
    log: String,
    until: &'static str,
) -> (Vec<Event>, Vec<Vec<u8>>) {
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let local: SocketAddr = format!("{OURS}:500").parse().unwrap();
        let remote: SocketAddr = format!("{THEIRS}:500").parse().unwrap();
        let s = UdpSocket::bind(local).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut spi = 0xc0de_0000u32;
        let mut ep = Endpoint::new(
            cfg,
            ChaCha20Rng::seed_from_u64(std::process::id() as u64),
            Box::new(move || {
                spi += 1;
                spi
            }),
        );
        let req = Phase2Request {
            local_proxy: Some(gre_proxy(local.ip())),
            remote_proxy: Some(gre_proxy(remote.ip())),
        };
        // The engine runs on real elapsed time: pluto does.
        let epoch = std::time::Instant::now();
        let now = || Instant(epoch.elapsed());
        ep.initiate_phase2(now(), local, remote, req).unwrap();
        let mut events = vec![];
        let mut wire = vec![];
        let mut buf = vec![0u8; 65536];
        let mut checked = std::time::Instant::now();
        while epoch.elapsed() < timeout {
            if checked.elapsed() > Duration::from_millis(100) {
                checked = std::time::Instant::now();
                if std::fs::read_to_string(&log).is_ok_and(|l| l.contains(until)) {
                    break;
                }
            }
            while let Some(t) = ep.poll_transmit() {
                wire.push(t.payload.clone());
                s.send_to(&t.payload, t.remote).unwrap();
            }
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                wire.push(buf[..n].to_vec());
                let _ = ep.handle(now(), local, from, &buf[..n]);
            }
            let t = now();
            if ep.poll_timeout().is_some_and(|due| due <= t) {
                ep.handle_timeout(t);
            }
            events.extend(std::iter::from_fn(|| ep.poll_event()));
        }
        (events, wire)
    })
    .join()
    .expect("engine thread")
}

/// We start Aggressive Mode with pluto as IOS would: the third message
/// encrypted, which pluto decrypts and whose HASH_I it verifies; then
/// Quick Mode (with PFS, which pluto requires by default), whose first
/// message pluto must decrypt and verify: when the third message came in
/// the clear it could not ("ISAKMP Hash Payload is larger than can fit").
#[test]
fn libreswan_answers_our_aggressive_mode_and_quick_mode() {
    let conn = format!(
        "config setup\n    ikev1-policy=accept\n\
         conn gre\n    ikev2=no\n    authby=secret\n    aggressive=yes\n    left={THEIRS}\n    right={OURS}\n    \
         type=transport\n    leftprotoport=gre\n    rightprotoport=gre\n    \
         ike=aes256-sha2_256;modp2048\n    phase2alg=aes256-sha2_256\n    auto=add\n"
    );
    let lab = Lab::new("am", &conn);
    let cfg = EngineConfig {
        policies: vec![IkePolicy {
            priority: 10,
            encr: EncrAlg::Aes256,
            hash: HashAlg::Sha256,
            group: GroupId::Modp2048,
            lifetime: 86400,
        }],
        transform_sets: vec![TransformSet {
            name: "t".into(),
            esp: EspTransform {
                encr: EspEncr::AesCbc(256),
                integ: Some(HashAlg::Sha256),
            },
            mode: Mode::Transport,
        }],
        psks: vec![PskEntry {
            initiate: InitiateMode::Aggressive,
            ..PskEntry::new(THEIRS.parse().unwrap(), 32, PSK.as_bytes())
        }],
        // pluto requires PFS by default, with the phase 1 group.
        pfs: Some(GroupId::Modp2048),
        ..Default::default()
    };
    let (events, wire) = run_engine(
        format!("{}a", lab.ns),
        cfg,
        Duration::from_secs(20),
        lab.path("pluto.log"),
        "setup_half_ipsec_sa() hit fail",
    );
    let log = lab.log();
    let sum = lab.summary();
    let am3 = wire
        .iter()
        .filter(|m| m.len() > 28 && m[18] == 4)
        .nth(2)
        .unwrap_or_else(|| panic!("no third AM message: {events:?}\n{sum}"));
    assert_eq!(am3[19] & 1, 1, "AM3 not encrypted");
    assert!(
        log.contains("IKE SA established"),
        "pluto did not establish phase 1: {events:?}\n{sum}"
    );
    assert!(!log.contains("larger than can fit"), "{sum}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Phase1Up { .. })),
        "{events:?}"
    );
    // QM1 decrypted, HASH(1) verified, proposal (with PFS) accepted, KEYMAT
    // derived; then only the kernel install fails.
    assert!(
        log.contains("responding to Quick Mode proposal"),
        "pluto did not accept our QM1: {events:?}\n{sum}"
    );
    assert!(log.contains("ESP KEYMAT"), "{sum}");
    assert!(
        log.contains("netlink response for Add SA"),
        "Quick Mode ended otherwise than at pluto's kernel install: {sum}"
    );
    assert!(!log.contains("does not match computed value"), "{sum}");
}
