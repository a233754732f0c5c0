//! The workspace's binaries as the suites run them. This package owns none
//! of them, so cargo does not build them for its tests: they are looked up
//! in the target directory the test executable runs from
//! (`target/<profile>/deps/<test>` next to `target/<profile>/<binary>`).
//! `cargo test --workspace` builds them before any test runs, because
//! cargo builds a package's binaries whenever that package's integration
//! tests are selected, and agent, ctl and lab each have some.

use std::path::PathBuf;
use std::sync::OnceLock;

/// `target/<profile>/`, the directory that holds the workspace's binaries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    let deps = exe.parent().expect("test executable has a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Path of binary `name` in the test's target directory; panics, saying
/// how to build it, when it is not there.
fn find(name: &str) -> String {
    let dir = profile_dir();
    let path = dir.join(name);
    if !path.is_file() {
        let release = if dir.file_name().is_some_and(|n| n == "release") {
            " --release"
        } else {
            ""
        };
        panic!(
            "{} not found; build the binaries first: cargo build{release} --workspace --bins",
            path.display()
        );
    }
    path.into_os_string()
        .into_string()
        .expect("target directory path is UTF-8")
}

/// Full paths are UTF-8 strings so they fit in `Command::args` arrays.
fn cached(cell: &'static OnceLock<String>, name: &str) -> &'static str {
    cell.get_or_init(|| find(name))
}

/// The `dmvpnd` daemon.
pub fn dmvpnd() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    cached(&P, "dmvpnd")
}

/// The `dmvpnctl` operator command.
pub fn dmvpnctl() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    cached(&P, "dmvpnctl")
}

/// The `dmvpn-lab` traffic lab.
pub fn dmvpn_lab() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    cached(&P, "dmvpn-lab")
}
