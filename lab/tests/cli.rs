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
