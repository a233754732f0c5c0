//! `dmvpn-lab`: the 80/20 DMVPN traffic lab.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("dmvpn-lab: not implemented yet");
    ExitCode::FAILURE
}
