//! Secret files: the configuration and the key log (`Config::load`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dmvpn_config::Config;

const WITH_KEY: &str = r#"[node]
name = "spoke1"
role = "spoke"

[[ike.key]]
peer = "0.0.0.0/0"
key = "averylongkey"

[[ipsec.transform_set]]
name = "ts"

[[ipsec.profile]]
name = "prof"
transform_sets = ["ts"]

[[tunnel]]
name = "Tunnel0"
address = "192.168.1.2/24"
source = "172.16.0.2"
protection = "prof"

[tunnel.nhrp]
network_id = 1

[[tunnel.nhrp.nhs]]
address = "192.168.1.1"
nbma = "172.16.0.1"
"#;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn errors(path: &Path) -> Vec<String> {
    match Config::load(path) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect(),
    }
}

#[test]
fn config_with_keys_writable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for mode in [0o666, 0o620, 0o602] {
        write(&path, WITH_KEY, mode);
        let e = errors(&path);
        let want = format!(
            "1:1: file holds keys and {} has mode {mode:04o}: writable by group or others (chmod 600 {})",
            path.display(),
            path.display()
        );
        assert!(e.len() == 1 && e[0].ends_with(&want), "{mode:o}: {e:?}");
    }
    write(&path, WITH_KEY, 0o600);
    assert!(errors(&path).is_empty());
    // Without secrets the mode does not matter.
    let plain = WITH_KEY
        .replace(
            "[[ike.key]]\npeer = \"0.0.0.0/0\"\nkey = \"averylongkey\"\n",
            "",
        )
        .replace("protection = \"prof\"\n", "");
    write(&path, &plain, 0o666);
    if let Err(e) = Config::load(&path) {
        panic!("{e:?}");
    }
}

#[test]
fn config_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    write(&path, WITH_KEY, 0o600);
    std::os::unix::fs::chown(&path, Some(65534), None).expect("chown (the tests run as root)");
    let e = errors(&path);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("is owned by uid 65534, not by the user dmvpnd runs as (chown"),
        "{e:?}"
    );
}

fn with_key_log(dir: &Path, log: &Path) -> std::path::PathBuf {
    let path = dir.join("c.toml");
    let text = format!("{WITH_KEY}\n[log]\nkey_log = \"{}\"\n", log.display());
    write(&path, &text, 0o600);
    path
}

#[test]
fn key_log_symlink_foreign_or_open_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("esp_sa");
    let cfg = with_key_log(dir.path(), &log);
    // Not there yet, in an existing directory: fine (created 0600).
    assert!(errors(&cfg).is_empty());

    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &log).unwrap();
    let e = errors(&cfg);
    assert!(
        e.len() == 1 && e[0].contains("log.key_log: ") && e[0].contains("is a symbolic link"),
        "{e:?}"
    );
    std::fs::remove_file(&log).unwrap();

    write(&log, "", 0o644);
    let e = errors(&cfg);
    assert!(
        e.len() == 1 && e[0].contains("readable by group or others"),
        "{e:?}"
    );

    write(&log, "", 0o600);
    std::os::unix::fs::chown(&log, Some(65534), None).unwrap();
    let e = errors(&cfg);
    assert!(
        e.len() == 1 && e[0].contains("is owned by uid 65534"),
        "{e:?}"
    );
    std::fs::remove_file(&log).unwrap();

    std::fs::create_dir(&log).unwrap();
    let e = errors(&cfg);
    assert!(
        e.len() == 1 && e[0].contains("is a directory, not a regular file"),
        "{e:?}"
    );

    let cfg = with_key_log(dir.path(), &dir.path().join("missing/esp_sa"));
    let e = errors(&cfg);
    assert!(e.len() == 1 && e[0].contains("does not exist"), "{e:?}");
}
