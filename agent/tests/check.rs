//! `dmvpnd --check` on the shipped examples and on broken files.

use std::path::PathBuf;
use std::process::Command;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmvpnd"))
        .arg("--config")
        .arg(path)
        .arg("--check")
        .output()
        .expect("run dmvpnd")
}

/// Every file in examples/ passes `--check`; the modern pair draws no
/// crypto warning, the seed-faithful files (DES, 3DES, MD5, group 1) do.
#[test]
fn examples_pass_check() {
    let mut names: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        assert!(
            name.ends_with(".toml"),
            "examples/{name} is not a configuration"
        );
        let out = check(&examples().join(name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        // Every stderr line is a located warning.
        for line in stderr.lines() {
            assert!(
                line.contains(": warning: "),
                "{name}: unexpected line {line}"
            );
        }
        let weak: Vec<&str> = stderr.lines().filter(|l| l.contains(" is weak")).collect();
        if name.starts_with("modern-") {
            assert!(weak.is_empty(), "{name}: {weak:?}");
        } else {
            for want in [
                "encryption: des is weak",
                "esp-3des is weak",
                "esp-md5-hmac is weak",
            ] {
                assert!(weak.iter().any(|l| l.contains(want)), "{name}: {want}");
            }
        }
    }
}

#[test]
fn broken_file_fails_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(examples().join("spoke1.toml"))
        .unwrap()
        .replace(
            "authentication = \"cisco123\"",
            "authentication = \"much-too-long\"",
        )
        .replace(
            "transform_sets = [\"strong\"]",
            "transform_sets = [\"missing\"]",
        );
    std::fs::write(&path, &text).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let want_auth = format!(
        "{}:{}:18: tunnel[0].nhrp.authentication: NHRP password must be 1-8 printable ASCII characters, got 13",
        path.display(),
        line_of("much-too-long")
    );
    assert!(stderr.contains(&want_auth), "{stderr}");
    let want_ts = format!(
        "{}:{}:19: ipsec.profile[0].transform_sets[0]: transform set `missing` is not defined",
        path.display(),
        line_of("[\"missing\"]")
    );
    assert!(stderr.contains(&want_ts), "{stderr}");
}

#[test]
fn missing_file_is_one_clear_line() {
    let out = check(std::path::Path::new("/nonexistent/dmvpn.toml"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read file"), "{stderr}");
}

/// Whatever `import-ios` prints passes `dmvpnd --check`: every router of
/// every IOS test file and of the reference documents as pasted.
#[test]
fn imported_configs_pass_check() {
    use std::os::unix::fs::PermissionsExt;
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/tests/data");
    let mut inputs: Vec<PathBuf> = Vec::new();
    let seeds = std::env::var_os("DMVPN_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/seeds")
        });
    assert!(
        seeds.is_dir(),
        "reference seeds not found at {} (set DMVPN_SEEDS to their folder)",
        seeds.display()
    );
    for dir in [data.clone(), seeds] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ios" || x == "txt") {
                inputs.push(p);
            }
        }
    }
    inputs.sort();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for input in &inputs {
        let bytes = std::fs::read(input).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let Ok(first) = dmvpn_config::import_ios(&text, &Default::default()) else {
            continue;
        };
        for host in first.routers.clone() {
            let opts = dmvpn_config::ImportOptions {
                hostname: Some(host.clone()),
            };
            match dmvpn_config::import_ios(&text, &opts) {
                Ok(imp) => {
                    let path = dir.path().join(format!("{checked}.toml"));
                    std::fs::write(&path, &imp.toml).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .unwrap();
                    let out = check(&path);
                    assert!(
                        out.status.success(),
                        "{}/{host}: {}",
                        input.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    checked += 1;
                }
                // Refused, with the reason, rather than written out.
                Err(
                    dmvpn_config::ImportError::NothingFound
                    | dmvpn_config::ImportError::NoTunnel { .. },
                ) => {}
                Err(e) => panic!("{}/{host}: {e}", input.display()),
            }
        }
    }
    // The routers with a tunnel dmvpnd runs, in the IOS test files and
    // the seeds (crypto maps alone and VTIs are refused).
    assert!(checked >= 7, "only {checked} imports checked");
}

/// The daemon refuses what `--check` refuses, with the same located lines
/// and the same exit status (2).
#[test]
fn the_daemon_refuses_a_broken_file_as_check_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(examples().join("spoke1.toml"))
        .unwrap()
        .replace("mtu = 1400", "mtu = 100");
    std::fs::write(&path, &text).unwrap();
    let checked = check(&path);
    let run = Command::new(env!("CARGO_BIN_EXE_dmvpnd"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run dmvpnd");
    assert_eq!(checked.status.code(), Some(2));
    assert_eq!(run.status.code(), Some(2));
    let check_err = String::from_utf8_lossy(&checked.stderr);
    let run_err = String::from_utf8_lossy(&run.stderr);
    let line = check_err
        .lines()
        .find(|l| l.contains("tunnel[0].mtu: mtu must be a number between 576 and 9000"))
        .unwrap_or_else(|| panic!("{check_err}"));
    assert!(run_err.contains(line), "{run_err}");
}
