//! `dmvpnctl` as an operator runs it, against an in-process control server.

mod common;

use dmvpn_ctl::proto::{Reply, Request, Response};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run dmvpnctl")
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn golden(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn show_commands_print_ios_text() {
    let srv = common::start_fixture();
    let sock = format!("--socket={}", srv.path.display());
    let cases: Vec<(&str, &str)> = vec![
        ("show nhrp", "show_ip_nhrp.txt"),
        ("show ip nhrp", "show_ip_nhrp.txt"),
        ("sh ip nh", "show_ip_nhrp.txt"),
        ("sh ip nh br", "show_ip_nhrp_brief.txt"),
        ("show nhrp nhs", "show_ip_nhrp_nhs.txt"),
        ("show ip nhrp nhs detail", "show_ip_nhrp_nhs.txt"),
        ("sh ip nh traf", "show_ip_nhrp_traffic.txt"),
        ("show dmvpn", "show_dmvpn.txt"),
        ("sh dm", "show_dmvpn.txt"),
        ("sh dm det", "show_dmvpn_detail.txt"),
        ("show crypto isakmp sa", "show_crypto_isakmp_sa.txt"),
        ("sh cry isa sa", "show_crypto_isakmp_sa.txt"),
        (
            "show crypto isakmp sa detail",
            "show_crypto_isakmp_sa_detail.txt",
        ),
        ("show crypto ipsec sa", "show_crypto_ipsec_sa.txt"),
        ("show crypto session", "show_crypto_session.txt"),
        ("sh cry sess det", "show_crypto_session_detail.txt"),
    ];
    for (line, file) in cases {
        let args: Vec<&str> = line.split(' ').collect();
        let out = run(&srv.path, &args);
        assert_eq!(ok_stdout(&out), golden(file), "{line}");
    }
    // Options may also follow the command.
    let out = run(
        &srv.path,
        &["show", "dmvpn", "--socket", srv.path.to_str().unwrap()],
    );
    assert_eq!(ok_stdout(&out), golden("show_dmvpn.txt"));
    let out = run(&srv.path, &["sh", "dm", &sock]);
    assert_eq!(ok_stdout(&out), golden("show_dmvpn.txt"));
}

/// IOS's answers to a command line it cannot take: nothing reaches
/// dmvpnd, exit status 2.
#[test]
fn ios_command_line_errors() {
    let srv = common::start_fixture();
    for (args, want) in [
        (
            &["sh", "cry", "i", "sa"][..],
            "% Ambiguous command:  \"sh cry i sa\"\n",
        ),
        (
            &["show", "dmvpn", "foo"][..],
            "show dmvpn foo\n           ^\n% Invalid input detected at '^' marker.\n",
        ),
        (&["show", "crypto", "isakmp"][..], "% Incomplete command.\n"),
    ] {
        let out = run(&srv.path, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        assert_eq!(String::from_utf8(out.stderr).unwrap(), want, "{args:?}");
    }
    // `?` lists what may follow, as on IOS.
    let out = run(&srv.path, &["show", "crypto", "isakmp", "sa", "?"]);
    assert_eq!(
        ok_stdout(&out),
        "  detail  Local and remote, algorithms, lifetime\n  <cr>\n"
    );
}

#[test]
fn json_output_is_the_response() {
    let srv = common::start_fixture();
    for (args, req) in [
        (&["--json", "show", "ip", "nhrp"][..], Request::ShowNhrp),
        (
            &["show", "crypto", "ipsec", "sa", "--json"][..],
            Request::ShowCryptoIpsecSa,
        ),
        (&["--json", "clear", "nhrp"][..], Request::ClearNhrp),
        (
            &["sh", "ip", "nh", "traffic", "--json"][..],
            Request::ShowNhrpTraffic,
        ),
        (&["--json", "sh", "dm", "det"][..], Request::ShowDmvpnDetail),
        (
            &["--json", "sh", "cry", "ses"][..],
            Request::ShowCryptoSession,
        ),
    ] {
        let text = ok_stdout(&run(&srv.path, args));
        let got: Response = serde_json::from_str(&text).unwrap();
        assert_eq!(got, common::answer(req), "{args:?}");
    }
}

#[test]
fn clear_and_debug() {
    let srv = common::start_fixture();
    // IOS prints nothing for clear.
    assert_eq!(ok_stdout(&run(&srv.path, &["clear", "nhrp"])), "");
    assert_eq!(ok_stdout(&run(&srv.path, &["clear", "ip", "nhrp"])), "");
    assert_eq!(ok_stdout(&run(&srv.path, &["clear", "crypto", "sa"])), "");
    assert_eq!(
        ok_stdout(&run(
            &srv.path,
            &["clear", "crypto", "sa", "peer", "172.16.0.1"]
        )),
        ""
    );
    assert_eq!(
        ok_stdout(&run(&srv.path, &["clear", "crypto", "sa", "172.16.0.1"])),
        ""
    );
    for args in [
        &["clear", "ip", "nhrp", "192.168.1.2"][..],
        &["cle", "ip", "nh", "10.2.2.0", "255.255.255.0"][..],
        &["clear", "crypto", "session"][..],
        &["clear", "crypto", "session", "remote", "172.16.0.1"][..],
    ] {
        assert_eq!(ok_stdout(&run(&srv.path, args)), "", "{args:?}");
    }
    // dmvpnd refusing is one line and exit 1.
    let out = run(&srv.path, &["clear", "crypto", "sa", "172.16.0.99"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "dmvpnctl: dmvpnd: no SA with peer 172.16.0.99\n"
    );
    // A bad address never reaches the daemon.
    let out = run(&srv.path, &["clear", "crypto", "sa", "peer", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "clear crypto sa peer nonsense\n                     ^\n% Invalid input detected at '^' marker.\n"
    );

    for (args, want) in [
        (&["debug", "nhrp"][..], "NHRP protocol debugging is on\n"),
        (
            &["debug", "crypto", "isakmp"][..],
            "Crypto ISAKMP debugging is on\n",
        ),
        (
            &["debug", "crypto", "ipsec"][..],
            "Crypto IPSEC debugging is on\n",
        ),
        (
            &["debug", "nhrp", "off"][..],
            "NHRP protocol debugging is off\n",
        ),
        (
            &["undebug", "crypto", "isakmp"][..],
            "Crypto ISAKMP debugging is off\n",
        ),
        (
            &["no", "debug", "crypto", "ipsec"][..],
            "Crypto IPSEC debugging is off\n",
        ),
        (
            &["undebug", "all"][..],
            "NHRP protocol debugging is off\nCrypto ISAKMP debugging is off\nCrypto IPSEC debugging is off\n",
        ),
    ] {
        assert_eq!(ok_stdout(&run(&srv.path, args)), want, "{args:?}");
    }
    let out = run(&srv.path, &["debug", "bgp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .ends_with("% Invalid input detected at '^' marker.\n")
    );
    let out = run(&srv.path, &["--json", "debug", "nhrp"]);
    let got: Response = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        Response::Ok(Reply::Debug {
            target: dmvpn_ctl::proto::DebugTarget::Nhrp,
            on: true
        })
    );
}

#[test]
fn reload_prints_what_changed_or_why_not() {
    let srv = common::start_fixture();
    let out = run(&srv.path, &["reload"]);
    assert_eq!(ok_stdout(&out), golden("reload.txt"));
    let out = run(&srv.path, &["reload", "--json"]);
    let got: Response = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, common::answer(Request::Reload));
    // A refused reload: dmvpnd's message (the file's FILE:LINE:COL
    // errors) on stderr, exit status 1.
    let msg = "/etc/dmvpn/dmvpnd.toml not reloaded, the running configuration stays:\n\
               /etc/dmvpn/dmvpnd.toml:12:11: tunnel[0].nhrp.holdtime: invalid type: string \"x\", expected u32 \
               (check the value's type in docs/configuration.md)";
    let refusing = common::start(dmvpn_agent::runtime::control_socket::FnHandler(
        move |r| match r {
            Request::Reload => Response::error(msg),
            other => common::answer(other),
        },
    ));
    let out = run(&refusing.path, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("dmvpnctl: dmvpnd: {msg}\n")
    );
}

#[test]
fn daemon_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmvpnd.sock");
    let out = run(&path, &["show", "dmvpn"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "dmvpnctl: cannot reach dmvpnd at {}: no such file (is dmvpnd running? use --socket PATH)\n",
            path.display()
        )
    );
}

#[test]
fn default_socket_and_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("/run/dmvpn/dmvpnd.sock"), "{help}");
    for cmd in ["show", "clear", "debug", "undebug", "import-ios", "reload"] {
        assert!(help.contains(cmd), "{cmd} missing from {help}");
    }
    for c in dmvpn_ctl::command::commands() {
        assert!(
            help.contains(&format!("\n  {c}\n")),
            "{c} missing from {help}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
        .args(["show", "crypto", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("isakmp"));
}

/// The systemd unit runs the documented command with the privileges the
/// data plane needs and no option that would hide TUN or the interfaces.
#[test]
fn systemd_unit() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/dmvpnd.service");
    let unit = std::fs::read_to_string(p).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "ExecStart=/usr/sbin/dmvpnd --config /etc/dmvpn/dmvpnd.toml",
        "RuntimeDirectory=dmvpn",
        "Restart=on-failure",
        "DeviceAllow=/dev/net/tun rw",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(lines.contains(&want), "missing {want}");
    }
    let caps = lines
        .iter()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap();
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap}");
    }
    for bad in ["PrivateDevices=yes", "PrivateNetwork=yes"] {
        assert!(!lines.contains(&bad), "{bad} breaks TUN/raw sockets");
    }
    // The socket dmvpnctl looks for by default lives in RuntimeDirectory.
    assert!(dmvpn_ctl::proto::DEFAULT_SOCKET.starts_with("/run/dmvpn/"));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// dmvpnctl run as uid 65534 (nobody) with the given gid and no other groups.
fn run_as_nobody(gid: u32, socket: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg("--reuid=65534")
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_dmvpnctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

/// Mode 0600 keeps other users out, with a message saying why; a socket
/// given to a group lets that group's members in.
#[test]
fn other_users_are_refused_group_members_are_not() {
    use std::os::unix::fs::PermissionsExt;
    let srv = common::start_fixture();
    // Only the socket's own mode may stand in the way.
    for d in [srv.dir.path(), srv.path.parent().unwrap()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = if is_root() {
        run_as_nobody(65534, &srv.path, &["show", "dmvpn"])
    } else {
        // Not root: make the socket unusable even to its owner.
        std::fs::set_permissions(&srv.path, std::fs::Permissions::from_mode(0o000)).unwrap();
        run(&srv.path, &["show", "dmvpn"])
    };
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "dmvpnctl: cannot reach dmvpnd at {}: permission denied (run as root or a member of the control group)\n",
            srv.path.display()
        )
    );

    if is_root() {
        let srv = common::start_with(
            dmvpn_agent::runtime::control_socket::FnHandler(common::answer),
            Some("65533".into()),
        );
        for d in [srv.dir.path(), srv.path.parent().unwrap()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = run_as_nobody(65533, &srv.path, &["show", "dmvpn"]);
        assert_eq!(ok_stdout(&out), golden("show_dmvpn.txt"));
        let out = run_as_nobody(65534, &srv.path, &["show", "dmvpn"]);
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn json_of_a_command_of_several_requests_is_one_array() {
    let srv = common::start_fixture();
    let out = run(&srv.path, &["--json", "undebug", "all"]);
    let got: Vec<Response> = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter()
            .all(|r| matches!(r, Response::Ok(Reply::Debug { on: false, .. })))
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::process::Stdio;
    let srv = common::start_fixture();
    for _ in 0..5 {
        // stdout is a pipe whose reader is already gone (`| head -c 0`).
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
            .arg("--socket")
            .arg(&srv.path)
            .args(["--json", "show", "dmvpn", "detail"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_ne!(out.status.code(), Some(101), "{stderr}");
    }
}
