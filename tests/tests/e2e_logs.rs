//! dmvpnd's log as journald or a file gets it: plain text (no terminal
//! colour codes when stderr is not a terminal), `RUST_LOG` honoured, and
//! under systemd (stderr is the `JOURNAL_STREAM`) journald's native
//! protocol with the events' fields: read from a socket the test serves
//! at /run/systemd/journal/socket in dmvpnd's own mount namespace, and as
//! systemd's own journald stores them. Needs root (namespaces, TUN,
//! mounts) and systemd-journald.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmvpn_ctl::proto::{DebugTarget, Request};
use dmvpn_tests::*;

fn hub_config() -> String {
    seed_config(1)
}

fn seed_config(n: u8) -> String {
    SeedNode {
        ike: "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\n",
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: false,
        hub_map: false,
    }
    .config(n)
}

#[test]
fn log_to_a_file_has_no_colour_codes() {
    let mut lab = Lab::new("dlg");
    let ns = lab.node("n", 1);
    lab.start(&ns, &hub_config());
    lab.wait("the start line is logged", Duration::from_secs(10), || {
        lab.log(&ns).contains(" NBMA ")
    });
    let log = lab.log(&ns);
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    assert!(log.contains(" INFO "), "{log}");
}

#[test]
fn rust_log_overrides_the_configured_filter() {
    let mut lab = Lab::new("dlr");
    let ns = lab.node("n", 1);
    let cfg = lab.path("n.toml");
    let text = format!(
        "[control]\nsocket = \"{}\"\n[log]\nfilter = \"warn\"\n{}",
        lab.socket(&ns).display(),
        hub_config()
    );
    std::fs::write(&cfg, text).unwrap();
    let log = lab.path(&format!("{ns}.log"));
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, dmvpnd(), "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn dmvpnd");
    lab.daemons.push((ns.clone(), child));
    // With the configured "warn" the INFO start line would not appear.
    lab.wait(
        "RUST_LOG=info shows the start line",
        Duration::from_secs(10),
        || lab.log(&ns).contains(" INFO "),
    );
}

/// One journald native-protocol datagram: `NAME=value\n` fields, or
/// `NAME\n`, a 64-bit little-endian length, the value and `\n` (values
/// that may hold newlines). Later values of a name win.
fn journal_fields(mut d: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("a field ends with a newline");
        let line = &d[..nl];
        let (name, value, rest) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], &line[eq + 1..], &d[nl + 1..]),
            None => {
                let after = &d[nl + 1..];
                let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
                assert_eq!(after[8 + len], b'\n', "binary field ends with a newline");
                (line, &after[8..8 + len], &after[9 + len..])
            }
        };
        let name = String::from_utf8(name.to_vec()).unwrap();
        assert!(
            !name.is_empty()
                && !name.starts_with('_')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "journald would drop the field name {name:?}"
        );
        out.insert(name, String::from_utf8_lossy(value).into_owned());
        d = rest;
    }
    out
}

/// Starts dmvpnd in `ns` as systemd would run it with `StandardError=journal`:
/// `JOURNAL_STREAM` names its stderr (a file here), and in a mount
/// namespace of its own /run/systemd/journal is `journal_dir` (nothing
/// there when `None`). Returns its stderr's path.
fn start_under_systemd(
    lab: &mut Lab,
    ns: &str,
    config: &str,
    journal_dir: Option<&Path>,
) -> std::path::PathBuf {
    let sock = lab.socket(ns);
    let cfg = lab.path(&format!("{ns}.toml"));
    let text = format!(
        "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\n{config}",
        sock.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let log = lab.path(&format!("{ns}.log"));
    let stderr = std::fs::File::create(&log).unwrap();
    let meta = stderr.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut script = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal".to_string();
    if let Some(dir) = journal_dir {
        script += &format!(" && mount --bind {} /run/systemd/journal", dir.display());
    }
    script += &format!(" && exec {} --config {}", dmvpnd(), cfg.display());
    // `ip netns exec`, `unshare` and `sh` all exec: the child is dmvpnd.
    let child = Command::new("ip")
        .args([
            "netns", "exec", ns, "unshare", "--mount", "--", "sh", "-c", &script,
        ])
        .env("JOURNAL_STREAM", &stream)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn dmvpnd under unshare");
    lab.daemons.push((ns.to_string(), child));
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(lab.alive(ns), "dmvpnd exited: {}", lab.log(ns));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "dmvpnd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    log
}

#[test]
fn under_systemd_events_go_to_journald_with_their_fields() {
    let mut lab = Lab::new("dlj");
    let hub = lab.node("hub", 1);
    let spoke = lab.node("s1", 2);
    lab.start(&hub, &seed_config(1));
    let dir = lab.path("journal");
    std::fs::create_dir(&dir).unwrap();
    let journal = UnixDatagram::bind(dir.join("socket")).expect("bind the journal socket");
    journal
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Read the socket all along, as journald does: a sender blocks once
    // a few datagrams wait unread.
    let got = Arc::new(Mutex::new(Vec::<HashMap<String, String>>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (got, done) = (got.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !done.load(Ordering::SeqCst) {
                // An empty datagram is the layer's probe of the socket,
                // which journald discards.
                if let Ok(n @ 1..) = journal.recv(&mut buf) {
                    got.lock().unwrap().push(journal_fields(&buf[..n]));
                }
            }
        })
    };
    start_under_systemd(&mut lab, &spoke, &seed_config(2), Some(&dir));
    lab.wait("spoke registered", Duration::from_secs(30), || {
        lab.registered(&hub, &["172.16.0.2"])
    });
    for target in [DebugTarget::Nhrp, DebugTarget::CryptoIsakmp] {
        lab.ctl(&spoke, Request::Debug { target, on: true });
    }
    // Something to narrate: a resolution of an address nobody has.
    lab.ping(&spoke, "192.168.1.3", 2);

    let find = |got: &[HashMap<String, String>], prefix: &str| {
        got.iter()
            .find(|f| f.get("MESSAGE").is_some_and(|m| m.starts_with(prefix)))
            .cloned()
    };
    let complete = |got: &[HashMap<String, String>]| {
        find(got, "NHRP: NHS 192.168.1.1 (172.16.0.1) is up").is_some()
            && find(got, "IPSEC: SA with 172.16.0.1 installed").is_some()
            && got
                .iter()
                .any(|f| f.get("PRIORITY").map(String::as_str) == Some("7"))
    };
    lab.wait("the events in the journal", Duration::from_secs(20), || {
        complete(&got.lock().unwrap())
    });
    lab.stop_all();
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    let got = got.lock().unwrap().clone();
    let up = find(&got, "NHRP: NHS 192.168.1.1 (172.16.0.1) is up")
        .unwrap_or_else(|| panic!("no NHS-up event in {got:#?}"));
    println!("NHS up as journald gets it: {up:?}");
    let field = |f: &HashMap<String, String>, k: &str| f.get(k).cloned().unwrap_or_default();
    assert_eq!(field(&up, "NHS"), "192.168.1.1");
    assert_eq!(field(&up, "NBMA"), "172.16.0.1");
    assert_eq!(field(&up, "INTERFACE"), "Tunnel0");
    assert_eq!(
        field(&up, "PRIORITY"),
        "6",
        "INFO is syslog's informational"
    );
    assert_eq!(field(&up, "SYSLOG_IDENTIFIER"), "dmvpnd");
    assert_eq!(field(&up, "TARGET"), "dmvpn::nhrp");

    let sa = find(&got, "IPSEC: SA with 172.16.0.1 installed")
        .unwrap_or_else(|| panic!("no SA event in {got:#?}"));
    assert_eq!(field(&sa, "PEER"), "172.16.0.1");
    for spi in ["SPI_IN", "SPI_OUT"] {
        let v = field(&sa, spi);
        assert!(
            v.len() == 10 && v.starts_with("0x") && field(&sa, "MESSAGE").contains(&v),
            "{spi} = {v:?} in {sa:?}"
        );
    }
    let ike = find(&got, "ISAKMP: SA with 172.16.0.1 is up")
        .unwrap_or_else(|| panic!("no phase 1 event in {got:#?}"));
    assert!(field(&ike, "CONN_ID").parse::<u32>().is_ok(), "{ike:?}");
    assert_eq!(field(&ike, "PEER"), "172.16.0.1");

    // `debug nhrp` / `debug crypto isakmp` events are DEBUG: PRIORITY 7.
    let dbg = got
        .iter()
        .find(|f| f.get("PRIORITY").map(String::as_str) == Some("7"))
        .unwrap_or_else(|| panic!("no debug event after `debug nhrp` in {got:#?}"));
    assert!(field(dbg, "TARGET").starts_with("dmvpn::"), "{dbg:?}");

    // Every event is identified; the pre-shared key and the NHRP
    // password (both "cisco123") are in no field.
    for f in &got {
        assert_eq!(field(f, "SYSLOG_IDENTIFIER"), "dmvpnd", "{f:?}");
        assert!(
            f.values().all(|v| !v.contains("cisco123")),
            "secret logged: {f:?}"
        );
    }
    // Nothing went to stderr as well (journald would store it twice).
    let text = lab.log(&spoke);
    assert!(!text.contains("is up"), "events on stderr too:\n{text}");
}

#[test]
fn under_systemd_without_the_journal_socket_logs_text_to_stderr() {
    let mut lab = Lab::new("dln");
    let ns = lab.node("n", 1);
    start_under_systemd(&mut lab, &ns, &hub_config(), None);
    lab.wait("the start line is logged", Duration::from_secs(10), || {
        lab.log(&ns).contains(" NBMA ")
    });
    let log = lab.log(&ns);
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        log.contains("stderr is the journal but its socket cannot be reached"),
        "{log}"
    );
}

/// With systemd's own journald (started in dmvpnd's mount namespace,
/// its files in a directory the test reads with `journalctl -D`), and
/// dmvpnd's stderr a journald stream as `StandardError=journal` makes
/// it: entries arrive through the native protocol (`_TRANSPORT=journal`,
/// not `stdout`) with their fields.
#[test]
fn systemd_journald_stores_the_fields() {
    let journald = "/lib/systemd/systemd-journald";
    assert!(
        Path::new(journald).exists(),
        "{journald} missing (apt-get install systemd)"
    );
    let mut lab = Lab::new("dlr");
    let hub = lab.node("hub", 1);
    let spoke = lab.node("s1", 2);
    lab.start(&hub, &seed_config(1));
    let files = lab.path("journal-files");
    std::fs::create_dir(&files).unwrap();
    let pidfile = lab.path("journald.pid");
    let sock = lab.socket(&spoke);
    let cfg = lab.path(&format!("{spoke}.toml"));
    let text = format!(
        "[control]\nsocket = \"{}\"\n[log]\nfilter = \"info\"\n{}",
        sock.display(),
        seed_config(2)
    );
    std::fs::write(&cfg, text).unwrap();
    // journald on a private /run (its sockets) and /var/log (so it keeps
    // the journal under /run/log/journal, which is the test's directory),
    // with the cgroup file system it requires (`ip netns exec` mounted a
    // fresh /sys without it);
    // systemd-cat connects dmvpnd's stdout and stderr to a journald
    // stream, and JOURNAL_STREAM names that stream as systemd does.
    let script = format!(
        "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log \
         && mkdir -p /run/systemd/journal /run/log/journal \
         && mount --bind {files} /run/log/journal \
         && mount -t cgroup2 none /sys/fs/cgroup \
         && {{ {journald} & echo $! > {pid}; }} \
         && for i in $(seq 100); do systemd-cat -t probe true 2>/dev/null && break; sleep 0.05; done \
         && exec systemd-cat -t dmvpnd sh -c \
            'export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); exec {dmvpnd} --config {cfg}'",
        files = files.display(),
        pid = pidfile.display(),
        dmvpnd = dmvpnd(),
        cfg = cfg.display(),
    );
    let child = Command::new("ip")
        .args([
            "netns", "exec", &spoke, "unshare", "--mount", "--", "sh", "-c", &script,
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.path(&format!("{spoke}.log"))).unwrap())
        .spawn()
        .expect("spawn journald and dmvpnd");
    lab.daemons.push((spoke.clone(), child));
    let stop_journald = |pidfile: &Path| {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the journald this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    };
    let entries = |files: &Path| -> Vec<serde_json::Value> {
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(files)
            .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=dmvpnd"])
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let up = |e: &serde_json::Value| {
        e["MESSAGE"].as_str() == Some("NHRP: NHS 192.168.1.1 (172.16.0.1) is up")
    };
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lab.wait(
            "the NHS-up entry in the journal",
            Duration::from_secs(30),
            || entries(&files).iter().any(up),
        )
    }));
    let all = entries(&files);
    stop_journald(&pidfile);
    lab.stop_all();
    waited.unwrap_or_else(|_| panic!("journal: {all:#?}\nstderr: {}", lab.log(&spoke)));
    let e = all.iter().find(|e| up(e)).unwrap();
    println!("as journald stored it: {e}");
    assert_eq!(
        e["_TRANSPORT"], "journal",
        "native protocol, not the stream"
    );
    assert_eq!(e["NHS"], "192.168.1.1");
    assert_eq!(e["NBMA"], "172.16.0.1");
    assert_eq!(e["INTERFACE"], "Tunnel0");
    assert_eq!(e["PRIORITY"], "6");
    assert_eq!(e["TARGET"], "dmvpn::nhrp");
    // Nothing came as plain stream lines (that would be stderr text).
    assert!(all.iter().all(|e| e["_TRANSPORT"] == "journal"), "{all:#?}");
}
