//! `dmvpnctl import-ios` as a user runs it: file or stdin in, TOML out,
//! notes on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config/tests/data")
        .join(name)
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dmvpnctl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn file_to_toml_with_notes() {
    let path = data("hub.ios");
    let out = run(&["import-ios", path.to_str().unwrap()], None);
    assert!(out.status.success());
    let toml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let loaded = dmvpn_config::Config::from_str(&toml, "stdout").unwrap();
    assert_eq!(loaded.config.node.name, "hub");
    assert!(
        stderr.contains("import-ios: line 68: not imported: router eigrp 90"),
        "{stderr}"
    );
    // Every stderr line is a note.
    assert!(
        stderr.lines().all(|l| l.starts_with("import-ios: ")),
        "{stderr}"
    );
}

#[test]
fn stdin_and_hostname() {
    let text = std::fs::read(data("spokes.ios")).unwrap();
    let out = run(&["import-ios", "--hostname", "spoke2", "-"], Some(&text));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let c = dmvpn_config::Config::from_str(&toml, "stdout")
        .unwrap()
        .config;
    assert_eq!(c.node.name, "spoke2");
}

#[test]
fn errors_are_one_line_and_nonzero() {
    let out = run(&["import-ios", "-"], Some(b"just some prose.\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "dmvpnctl: import-ios -: no IOS router configuration found (expected `interface Tunnel…`, `crypto isakmp …`, `crypto ipsec …` or `crypto map …` commands)\n"
    );
    let out = run(&["import-ios", "/nonexistent/x.cfg"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}

#[test]
fn a_configuration_without_a_tunnel_dmvpnd_runs_is_refused_with_the_reasons() {
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/seeds");
    let seeds = std::env::var_os("DMVPN_SEEDS").map_or(seeds, std::path::PathBuf::from);
    let seed = std::fs::read_dir(&seeds)
        .unwrap_or_else(|e| panic!("seeds at {}: {e}", seeds.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("000_"))
        .expect("seed 000");
    let out = run(&["import-ios", seed.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("no tunnel dmvpnd can run in this configuration")
            && stderr.contains("not imported: interface Tunnel23"),
        "{stderr}"
    );
}
