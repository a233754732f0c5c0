//! dmvpnd's log as journald or a file gets it: plain text (no terminal
//! colour codes when stderr is not a terminal), and `RUST_LOG` honoured.
//! Needs root (a namespace, TUN).

use std::process::{Command, Stdio};
use std::time::Duration;

use dmvpn_tests::*;

fn hub_config() -> String {
    SeedNode {
        ike: "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\n",
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: false,
        hub_map: false,
    }
    .config(1)
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
