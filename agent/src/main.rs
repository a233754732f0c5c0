//! `dmvpnd`: the per-node DMVPN agent.

use clap::Parser;
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
    let args = Args::parse();
    let _ = (&args.config, args.check);
    eprintln!("dmvpnd: not implemented yet");
    ExitCode::FAILURE
}
