//! `dmvpnd`: the per-node DMVPN agent.

use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::process::ExitCode;

/// Dynamic Multipoint VPN agent: NHRP, IKEv1 and a user-space mGRE/ESP data plane.
#[derive(Parser)]
#[command(name = "dmvpnd", version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration and exit (0 ok, non-zero with file:line errors).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    if let Some(code) = dmvpn_ctl::docgen::from_env(Args::command, "8") {
        return code;
    }
    let args = Args::parse();
    if args.check {
        return check(&args.config);
    }
    match dmvpn_agent::daemon::run(&args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmvpnd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `--check`: validate and exit; warnings and errors go to stderr, one line each.
fn check(path: &std::path::Path) -> ExitCode {
    match dmvpn_config::Config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for d in &errors.diagnostics {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}
