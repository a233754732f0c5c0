//! `contrib/dmvpnd.service` holds: dmvpnd runs under the unit's own
//! restrictions as far as a test can apply them outside systemd — the
//! unit's user (root, as the unit sets no `User=`) holding exactly the
//! unit's capabilities and no others (`setpriv`), no new privileges, the
//! environment systemd gives a `Type=notify` service — in a hub + spoke
//! namespace lab, forwards traffic, and tells
//! the test's notification socket READY=1, STATUS= and WATCHDOG=1 as it
//! would tell systemd. The sockets it holds are all of families the unit
//! allows, and each capability the unit grants is needed. The unit also
//! passes `systemd-analyze verify`.
//!
//! Needs root, iproute2, ping, util-linux's setpriv and systemd's
//! systemd-analyze; fails (never skips) without them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmvpn_tests::*;

/// Watchdog interval the test announces, short enough to see several
/// keep-alives.
const WATCHDOG_USEC: u64 = 2_000_000;

const IKE: &str = r#"
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
"#;
const TS: &str = r#"["esp-gcm 256"]"#;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/dmvpnd.service")
}

/// Every value of `key=` in the unit, split on whitespace, lines merged
/// as systemd merges list settings.
fn unit_list(key: &str) -> Vec<String> {
    let text = fs::read_to_string(unit_path()).expect("read the unit");
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

/// The unit's capabilities: what it grants (ambient) is all it allows
/// (bounding set).
fn unit_capabilities() -> Vec<String> {
    let ambient: BTreeSet<String> = unit_list("AmbientCapabilities").into_iter().collect();
    let bounding: BTreeSet<String> = unit_list("CapabilityBoundingSet").into_iter().collect();
    assert!(!ambient.is_empty(), "the unit grants capabilities");
    assert_eq!(ambient, bounding, "ambient and bounding sets differ");
    ambient.into_iter().collect()
}

/// The unit's user id: root unless it names another (which this test
/// does not know how to look up).
fn unit_uid() -> u32 {
    assert_eq!(unit_list("User"), Vec::<String>::new(), "User= set");
    assert_eq!(
        unit_list("DynamicUser"),
        Vec::<String>::new(),
        "DynamicUser= set"
    );
    0
}

/// `setpriv` arguments: the unit's user, no supplementary groups, exactly
/// `caps` (inheritable, ambient and bounding), no new privileges.
fn setpriv_args(caps: &[String]) -> Vec<String> {
    let uid = unit_uid();
    let list = caps
        .iter()
        .map(|c| {
            format!(
                "+{}",
                c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let set = format!("-all,{list}");
    let mut v = vec![
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_string(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
    ];
    assert_eq!(unit_list("NoNewPrivileges"), ["yes"]);
    v.push("--no-new-privs".to_string());
    v
}

/// A `NOTIFY_SOCKET` the daemon can send to.
struct NotifySocket {
    path: PathBuf,
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> NotifySocket {
        let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        NotifySocket {
            path,
            sock,
            seen: Vec::new(),
        }
    }

    /// Receives until a message has a line `line` (or panics after
    /// `limit`), then returns that message.
    fn wait_for(&mut self, line: &str, limit: Duration) -> String {
        self.wait_until(limit, |l| l == line)
            .unwrap_or_else(|| panic!("no {line} in {:?}", self.seen))
    }

    fn wait_until(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        while t0.elapsed() < limit {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(&want) {
                    return Some(msg);
                }
            }
        }
        None
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

/// Starts dmvpnd in `ns` as systemd would start the unit, but under
/// `setpriv` with `caps`; returns its notification socket.
fn start_as_service(lab: &mut Lab, ns: &str, config: &str, caps: &[String]) -> NotifySocket {
    let sock = lab.socket(ns);
    let text = format!(
        "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\nkey_log = \"{}\"\n{config}",
        sock.display(),
        lab.keylog(ns).display()
    );
    let path = lab.path(&format!("{ns}.toml"));
    fs::write(&path, text).expect("write config");
    let notify = NotifySocket::bind(lab.path(&format!("{ns}.notify")));
    let log = fs::File::create(lab.path(&format!("{ns}.log"))).expect("log");
    let mut cmd = Command::new("ip");
    // systemd names the pid the watchdog applies to; the shell execs, so
    // its pid is dmvpnd's.
    cmd.args(["netns", "exec", ns, "/bin/sh", "-c"])
        .arg("WATCHDOG_PID=$$ exec \"$@\"")
        .args(["sh", "setpriv"])
        .args(setpriv_args(caps))
        .arg(dmvpnd())
        .arg("--config")
        .arg(&path)
        // systemd's environment for the service: nothing inherited.
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .stdout(Stdio::null())
        .stderr(log);
    for kv in unit_list("Environment") {
        let (k, v) = kv.split_once('=').expect("Environment=KEY=VALUE");
        cmd.env(k, v);
    }
    // `ip netns exec`, the shell and `setpriv` exec: the child pid is dmvpnd's.
    let child = cmd.spawn().expect("spawn setpriv dmvpnd");
    lab.daemons.push((ns.to_string(), child));
    notify
}

/// The address families of the sockets process `pid` holds: each socket
/// descriptor is duplicated into the test (`pidfd_getfd`) and asked for
/// its domain.
fn socket_families(pid: u32) -> BTreeSet<&'static str> {
    // SAFETY: plain system calls; every descriptor obtained is closed.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as i32;
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    let mut families = BTreeSet::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).expect("read fds") {
        let fd = fd.expect("fd");
        let target = fs::read_link(fd.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let n: i32 = fd.file_name().to_string_lossy().parse().expect("fd number");
        // SAFETY: as above.
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, n, 0) } as i32;
        assert!(dup >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        let mut domain: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: domain and len are valid for the call.
        let r = unsafe {
            libc::getsockopt(
                dup,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut domain as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        // SAFETY: dup is ours.
        unsafe { libc::close(dup) };
        assert_eq!(r, 0, "SO_DOMAIN");
        families.insert(match domain {
            libc::AF_UNIX => "AF_UNIX",
            libc::AF_INET => "AF_INET",
            libc::AF_INET6 => "AF_INET6",
            libc::AF_NETLINK => "AF_NETLINK",
            libc::AF_PACKET => "AF_PACKET",
            other => panic!("dmvpnd holds a socket of family {other}"),
        });
    }
    // SAFETY: pidfd is ours.
    unsafe { libc::close(pidfd) };
    families
}

fn seed_config(n: u8) -> String {
    SeedNode {
        ike: IKE,
        transforms: TS,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: false,
        hub_map: true,
    }
    .config(n)
}

#[test]
fn e2e_service_restrictions_notify_and_forwarding() {
    let mut lab = Lab::new("sv");
    let caps = unit_capabilities();
    let hub = lab.node("hub", 1);
    let spoke = lab.node("s1", 2);
    lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&spoke, 2);

    let mut hub_notify = start_as_service(&mut lab, &hub, &seed_config(1), &caps);
    // READY=1 comes once the tunnel exists and the control socket listens.
    let ready = hub_notify.wait_for("READY=1", Duration::from_secs(10));
    assert!(lab.socket(&hub).exists(), "control socket before READY=1");
    ok(&["ip", "-n", &hub, "link", "show", "Tunnel0"]);
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready}");
    let mut spoke_notify = start_as_service(&mut lab, &spoke, &seed_config(2), &caps);
    spoke_notify.wait_for("READY=1", Duration::from_secs(10));
    assert!(lab.socket(&spoke).exists(), "control socket before READY=1");
    hub_lan_routes(&lab, &hub);
    for ns in [&hub, &spoke] {
        assert!(lab.alive(ns), "dmvpnd in {ns} exited: {}", lab.log(ns));
    }

    // The daemons run as the unit's user with exactly its capabilities.
    let pid = lab.daemon(&hub).id();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .expect("status field")
            .trim()
            .to_string()
    };
    assert!(
        field("Uid:").starts_with(&format!("{}\t", unit_uid())),
        "{status}"
    );
    let eff = u64::from_str_radix(&field("CapEff:"), 16).expect("CapEff");
    let bnd = u64::from_str_radix(&field("CapBnd:"), 16).expect("CapBnd");
    let want: u64 = caps.iter().map(|c| 1u64 << cap_number(c)).sum();
    assert_eq!(eff, want, "effective capabilities");
    assert_eq!(bnd, want, "bounding set");
    assert_eq!(field("NoNewPrivs:"), "1");

    // Traffic crosses the tunnel: spoke LAN host to hub LAN host.
    lab.wait("spoke registered", Duration::from_secs(20), || {
        lab.registered(&hub, &["172.16.0.2"])
    });
    let got = lab.ping(&h2, "10.1.0.10", 5);
    assert!(got >= 4, "pings answered across the tunnel: {got}/5");

    // Status lines follow the node's state.
    spoke_notify
        .wait_until(Duration::from_secs(10), |l| {
            l == "STATUS=1/1 NHS up, 1 peer up"
        })
        .unwrap_or_else(|| panic!("spoke status: {:?}", spoke_notify.seen));
    hub_notify
        .wait_until(Duration::from_secs(10), |l| l == "STATUS=1 peer up")
        .unwrap_or_else(|| panic!("hub status: {:?}", hub_notify.seen));
    // Keep-alives at half the announced watchdog interval.
    let t0 = Instant::now();
    let before = hub_notify.count("WATCHDOG=1");
    hub_notify.wait_until(Duration::from_secs(4), |_| false);
    let after = hub_notify.count("WATCHDOG=1");
    assert!(
        after - before >= 3,
        "WATCHDOG=1 about every second: {} in {:?}",
        after - before,
        t0.elapsed()
    );

    // Every socket is of a family the unit allows; the direct path's
    // packet socket is among them.
    let allowed: BTreeSet<String> = unit_list("RestrictAddressFamilies").into_iter().collect();
    for ns in [&hub, &spoke] {
        let families = socket_families(lab.daemon(ns).id());
        eprintln!("dmvpnd in {ns} holds sockets of {families:?}");
        assert!(families.contains("AF_PACKET"), "{families:?}");
        for f in &families {
            assert!(allowed.contains(*f), "dmvpnd opens {f}, the unit denies it");
        }
    }

    // SIGTERM: STOPPING=1, then a clean exit.
    lab.sigterm(&spoke);
    spoke_notify.wait_for("STOPPING=1", Duration::from_secs(5));
    lab.sigterm(&hub);
}

/// Each capability the unit grants is needed: without it dmvpnd cannot
/// start and says why.
#[test]
fn e2e_service_each_capability_needed() {
    let caps = unit_capabilities();
    for drop in &caps {
        let mut lab = Lab::new("sc");
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop).cloned().collect();
        let ns = lab.node("hub", 1);
        let mut notify = start_as_service(&mut lab, &ns, &seed_config(1), &fewer);
        let child = lab.daemon(&ns);
        let t0 = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "dmvpnd without {drop} still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!st.success(), "dmvpnd without {drop} exited with {st}");
        let log = lab.log(&ns).to_lowercase();
        assert!(
            log.contains("permission denied") || log.contains("not permitted"),
            "without {drop}: {log}"
        );
        assert_eq!(
            notify.wait_until(Duration::from_millis(300), |l| l == "READY=1"),
            None,
            "READY=1 without {drop}"
        );
    }
}

/// `systemd-analyze verify` accepts the unit (with ExecStart pointing at
/// the built binary).
#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = fs::read_to_string(unit_path())
        .expect("read the unit")
        .replace("/usr/sbin/dmvpnd", dmvpnd());
    let path = dir.path().join("dmvpnd.service");
    fs::write(&path, unit).expect("write");
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze (Debian package systemd)");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}

/// Linux capability numbers of the names the unit may use.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        other => panic!("capability {other} not known to this test"),
    }
}

/// A tunnel named after an interface that exists and is not a TUN device
/// (an operator reusing `eth1`) stops dmvpnd at start with that reason,
/// once, not a permissions hint.
#[test]
fn a_tunnel_named_like_another_interface_says_so() {
    let mut lab = Lab::new("tn");
    let ns = lab.node("hub", 1);
    ok(&[
        "ip", "-n", &ns, "link", "add", "wan9", "type", "veth", "peer", "name", "wan9p",
    ]);
    let cfg = seed_config(1).replace("name = \"Tunnel0\"", "name = \"wan9\"");
    assert!(cfg.contains("name = \"wan9\""));
    let err = lab.refused(&ns, &cfg);
    assert!(
        err.contains("cannot create TUN device wan9: an interface named wan9 exists and is not a TUN device (choose another tunnel name)"),
        "{err}"
    );
    assert_eq!(err.matches("cannot create TUN device").count(), 1, "{err}");
}
