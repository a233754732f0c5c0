//! `dmvpn-lab netns` end to end: real dmvpnd daemons in namespaces, 80/20
//! pings, and nothing left behind. Needs root, iproute2, nftables, ping and
//! the dmvpnd/dmvpnctl binaries next to dmvpn-lab (built by
//! `cargo test --workspace`); fails loudly without them.

use std::path::Path;
use std::process::Command;

fn namespaces() -> String {
    let o = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("`ip` (iproute2) is required");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn netns_lab_runs_and_cleans_up() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces)"
    );
    let lab = Path::new(env!("CARGO_BIN_EXE_dmvpn-lab"));
    let dir = lab.parent().unwrap();
    for b in ["dmvpnd", "dmvpnctl"] {
        assert!(
            dir.join(b).is_file(),
            "{b} missing in {}: build the workspace (cargo build --workspace) first",
            dir.display()
        );
    }
    let json = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(lab)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .args([
            "netns",
            "--spokes",
            "2",
            "--duration",
            "12s",
            "--flows-per-minute",
            "20",
            "--spoke-to-spoke",
            "0.5",
            "--quiet",
            "--json",
        ])
        .arg(json.path())
        .spawn()
        .unwrap();
    let prefix = format!("dl{}-", child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "netns failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("show dmvpn"), "{stdout}");
    assert!(stdout.contains("2/2 registered"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    assert!(v["flows"].as_u64().unwrap() > 0, "{v}");
    let sent = v["pings_sent"].as_u64().unwrap();
    let got = v["pings_received"].as_u64().unwrap();
    assert!(got * 10 >= sent * 9, "most pings answered: {got}/{sent}");
    assert_eq!(v["hub_tunnels_peak"].as_u64(), Some(2));
    if v["flows_spoke_to_spoke"].as_u64().unwrap() > 0 {
        // Shortcuts formed: most spoke-to-spoke pings went direct.
        assert!(v["spoke_to_spoke_direct_esp"].as_u64().unwrap() > 0, "{v}");
        assert!(v["relayed_share_approx"].as_f64().unwrap() < 0.5, "{v}");
    }
    let left: Vec<String> = namespaces()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn netns_without_daemon_binaries_fails_clearly_and_cleans_up() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (network namespaces)"
    );
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dmvpn-lab"))
        .args(["netns", "--spokes", "1", "--duration", "1s", "--bin-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("dmvpnd") && e.contains("not found"), "{e}");
}
