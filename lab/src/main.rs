//! `dmvpn-lab`: the 80/20 DMVPN traffic lab.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use dmvpn_lab::cli::{Cli, Command, SimArgs};
use dmvpn_lab::progress::Bar;
use dmvpn_lab::real::RealFactory;
use dmvpn_lab::{sim, svg};

/// Counts the hubs' heap when `DMVPN_LAB_HEAP=1` (see `dmvpn_lab::heap`).
#[global_allocator]
static ALLOC: dmvpn_lab::heap::Tagging = dmvpn_lab::heap::Tagging;

fn run_sim(a: &SimArgs) -> Result<(), String> {
    let cfg = a.config();
    cfg.validate()?;
    let mut factory = RealFactory::for_sim(&cfg);
    factory.crypto.group = a.ike_group;
    let mut bar = Bar::new(a.quiet);
    let report = sim::run(&cfg, &mut factory, &mut |d, t| bar.update(d, t))?;
    bar.finish();
    if let Some(p) = &a.json {
        std::fs::write(p, report.to_json())
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, svg::render(&report))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if !a.quiet {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = dmvpn_ctl::docgen::from_env(Cli::command, "1") {
        return code;
    }
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Command::Sim(a) => run_sim(a),
        Command::Netns(a) => dmvpn_lab::netns::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmvpn-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
