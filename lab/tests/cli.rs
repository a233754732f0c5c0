//! The `dmvpn-lab` binary: errors for bad values, report files.

use std::process::Command;

fn lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dmvpn-lab"))
}

#[test]
fn bad_probability_is_a_clear_error() {
    let o = lab()
        .args(["sim", "--spoke-to-spoke", "1.5"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--spoke-to-spoke") && e.contains("outside 0..1"),
        "{e}"
    );
}

#[test]
fn sim_writes_json_and_svg() {
    let d = tempfile::tempdir().unwrap();
    let (j, s) = (d.path().join("r.json"), d.path().join("r.svg"));
    let o = lab()
        .args([
            "sim",
            "--spokes",
            "6",
            "--duration",
            "2m",
            "--flows-per-minute",
            "3",
            "--seed",
            "3",
        ])
        .arg("--json")
        .arg(&j)
        .arg("--svg")
        .arg(&s)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("6/6 spokes registered"), "{text}");
    assert!(text.contains("DH group 19"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["registrations"]["spokes_registered"], 6);
    assert!(v["perf"]["wall_s"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(&s).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Concurrent tunnels"));
    // No progress bar when stderr is not a terminal.
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The hub's own heap: counted with `DMVPN_LAB_HEAP=1`, it grows with the
/// spokes registered; without it nothing is counted or printed.
#[test]
fn hub_heap_is_counted_on_request() {
    let run = |spokes: &str, heap: bool| {
        let mut c = lab();
        c.args([
            "sim",
            "--spokes",
            spokes,
            "--duration",
            "90s",
            "--seed",
            "2",
        ]);
        if heap {
            c.env("DMVPN_LAB_HEAP", "1");
        } else {
            c.env_remove("DMVPN_LAB_HEAP");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mib = |text: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("hub heap"))
            .unwrap_or_else(|| panic!("no hub heap line:\n{text}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (small, large) = (run("20", true), run("200", true));
    let (a, b) = (mib(&small), mib(&large));
    assert!(
        a > 0.0 && b > a * 3.0,
        "20 spokes: {a} MiB, 200 spokes: {b} MiB"
    );
    assert!(!run("20", false).contains("hub heap"));
}
