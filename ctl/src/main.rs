//! `dmvpnctl`: operator CLI for dmvpnd.

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

mod import;

/// Operate a dmvpnd node.
#[derive(Parser)]
#[command(name = "dmvpnctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Translate a Cisco IOS `show running-config` into dmvpnd TOML (stdout).
    ImportIos(import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ImportIos(args) => import::run(&args),
    }
}

/// Reads a file, or stdin for `-`.
pub(crate) fn read_input(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        // Pasted text may not be valid UTF-8 (Latin-1 banners); be lenient.
        let bytes = std::fs::read(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
