//! `dmvpnctl import-ios FILE`: IOS configuration to TOML on stdout, notes
//! (unmapped lines, defaults applied, other routers) on stderr.

use dmvpn_config::{ImportOptions, import_ios};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// IOS configuration (`show running-config` output); `-` reads stdin.
    pub file: PathBuf,
    /// Import the router with this hostname when the input holds several.
    #[arg(long)]
    pub hostname: Option<String>,
}

pub fn run(args: &ImportArgs) -> ExitCode {
    let text = match crate::read_input(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dmvpnctl: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let opts = ImportOptions {
        hostname: args.hostname.clone(),
    };
    match import_ios(&text, &opts) {
        Ok(imp) => {
            if !crate::emit(&imp.toml) {
                return ExitCode::FAILURE;
            }
            for n in &imp.notes {
                eprintln!("import-ios: {n}");
            }
            if imp.config.has_secrets() {
                eprintln!("import-ios: the output holds keys: store it with mode 0600");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dmvpnctl: import-ios {}: {e}", args.file.display());
            ExitCode::FAILURE
        }
    }
}
