//! `DMVPN_GENERATE_DOCS=DIR dmvpnctl` writes its man page and completions
//! from the same definition as `--help`, and exits.

use std::process::Command;

#[test]
fn man_page_and_completions_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dmvpnctl"))
        .env(dmvpn_ctl::docgen::ENV, dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let man = std::fs::read_to_string(dir.path().join("man/dmvpnctl.8")).unwrap();
    assert!(
        man.starts_with(".ie"),
        "roff: {}",
        &man[..40.min(man.len())]
    );
    // The IOS command list of `--help` is in the page too.
    for c in dmvpn_ctl::command::commands() {
        assert!(man.contains(&c), "{c} missing from the man page");
    }
    for (file, needle) in [
        ("dmvpnctl.bash", "complete"),
        ("_dmvpnctl", "#compdef dmvpnctl"),
        ("dmvpnctl.fish", "complete -c dmvpnctl"),
    ] {
        let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
        assert!(text.contains(needle), "{file}: {text}");
        assert!(text.contains("socket"), "{file} completes --socket");
    }
}
