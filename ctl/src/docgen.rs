//! Man pages and shell completions, generated from a binary's own clap
//! definition so they cannot drift from `--help`.
//!
//! Each binary calls [`from_env`] first thing: with
//! `DMVPN_GENERATE_DOCS=DIR` in the environment it writes
//! `DIR/man/NAME.SECTION`, `DIR/completions/NAME.bash`, `_NAME` (zsh) and
//! `NAME.fish`, then exits. `scripts/package.sh` uses this to build the
//! Debian package.

use std::path::Path;
use std::process::ExitCode;

use clap_complete::Shell;

pub const ENV: &str = "DMVPN_GENERATE_DOCS";

/// Writes the docs and returns the exit status when [`ENV`] is set;
/// `None` otherwise (run normally).
pub fn from_env(command: impl FnOnce() -> clap::Command, section: &str) -> Option<ExitCode> {
    let dir = std::env::var_os(ENV)?;
    let mut cmd = command();
    Some(match write(&mut cmd, Path::new(&dir), section) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "{}: cannot write docs to {}: {e}",
                cmd.get_name(),
                Path::new(&dir).display()
            );
            ExitCode::FAILURE
        }
    })
}

/// The man page (`section`) and bash, zsh and fish completions of `cmd`.
pub fn write(cmd: &mut clap::Command, dir: &Path, section: &str) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .render(&mut page)?;
    std::fs::write(man.join(format!("{name}.{section}")), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, cmd, &name, &completions)?;
    }
    Ok(())
}
