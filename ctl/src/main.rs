//! `dmvpnctl`: operator CLI for dmvpnd.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("dmvpnctl: not implemented yet");
    ExitCode::FAILURE
}
