//! `dmvpnctl`: operator CLI for dmvpnd, with IOS-shaped commands and output.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use dmvpn_ctl::command::{self, ParseError};
use dmvpn_ctl::proto::{DEFAULT_SOCKET, Reply, Request, Response};
use dmvpn_ctl::{client, interface_filter, render};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod import;

/// Exit status when dmvpnd cannot be reached (or answers garbage), or the
/// command line is wrong.
const EXIT_USAGE: u8 = 2;
/// Exit status when dmvpnd refuses a command.
const EXIT_REFUSED: u8 = 1;

/// Operate a dmvpnd node: show its NHRP and crypto state, clear it, switch
/// debugging on and off, reload its configuration.
#[derive(Parser)]
#[command(name = "dmvpnctl", version, arg_required_else_help = true)]
struct Cli {
    /// dmvpnd's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print dmvpnd's answer as JSON instead of IOS-style text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Translate a Cisco IOS `show running-config` into dmvpnd TOML (stdout).
    ImportIos(import::ImportArgs),
    /// Make dmvpnd re-read its configuration file and apply what changed.
    ///
    /// The file is checked as `dmvpnd --check` checks it. Changed keys
    /// are applied in place and listed with when each takes effect;
    /// tunnels, registrations and SAs stay up. A file with errors (printed
    /// as FILE:LINE:COL) or a change that needs a restart (the tunnel's
    /// name, address, source, mode or key, the NHRP network id, the role)
    /// is refused with exit status 1 and dmvpnd keeps its running
    /// configuration. SIGHUP (`systemctl reload dmvpnd`) does the same.
    Reload,
    /// An IOS command: `show …`, `clear …`, `debug …`, `undebug …`, `no debug …`.
    #[command(external_subcommand)]
    Ios(Vec<String>),
}

/// The IOS commands, for `--help`.
fn ios_help() -> String {
    let mut s = String::from(
        "IOS commands (each keyword may be shortened to any unambiguous prefix, \
         e.g. `sh ip nh br`, `sh cry isa sa det`; `?` after a word lists what may follow):\n",
    );
    for c in command::commands() {
        s.push_str("  ");
        s.push_str(&c);
        s.push('\n');
    }
    s.push_str(
        "`no debug …` is `undebug …`; `show nhrp …` and `clear nhrp …` need no `ip`.\n\
         \nExit status: 0 done; 1 dmvpnd refused the command; 2 dmvpnd could not be \
         reached or the command line is wrong.",
    );
    s
}

/// `--socket PATH`, `--socket=PATH` and `--json` may also follow an IOS
/// command; the remaining words are the command.
fn split_options(words: &[String], socket: &mut PathBuf, json: &mut bool) -> Vec<String> {
    let mut rest = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--json" {
            *json = true;
        } else if w == "--socket" {
            if let Some(p) = it.next() {
                *socket = PathBuf::from(p);
            }
        } else if let Some(p) = w.strip_prefix("--socket=") {
            *socket = PathBuf::from(p);
        } else {
            rest.push(w.clone());
        }
    }
    rest
}

fn main() -> ExitCode {
    if let Some(code) = dmvpn_ctl::docgen::from_env(|| Cli::command().after_help(ios_help()), "8") {
        return code;
    }
    let matches = Cli::command().after_help(ios_help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let (mut socket, mut json) = (cli.socket.clone(), cli.json);
    let parsed = match &cli.command {
        Command::ImportIos(args) => return import::run(args),
        Command::Reload => command::Parsed {
            requests: vec![Request::Reload],
            view: render::View::Plain,
            interface: None,
        },
        Command::Ios(words) => {
            let words = split_options(words, &mut socket, &mut json);
            match command::parse(&words) {
                Ok(p) => p,
                Err(ParseError::Help(h)) => {
                    emit(&h);
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    // `show … interface NAME`: the tunnel dmvpnd runs by that name.
    let interface = match &parsed.interface {
        Some(asked) => {
            let running = match client::request(&socket, &Request::ShowDmvpn) {
                Ok(Response::Ok(Reply::Dmvpn(v))) => v.into_iter().map(|t| t.interface).collect(),
                Ok(_) => Vec::new(),
                Err(e) => {
                    eprintln!("dmvpnctl: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match interface_filter::resolve(asked, &running) {
                Ok(name) => Some(name),
                Err(message) => {
                    if json {
                        emit(&format!(
                            "{}\n",
                            serde_json::to_string_pretty(&Response::error(message))
                                .unwrap_or_default()
                        ));
                    } else {
                        eprintln!("{message}");
                    }
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        None => None,
    };
    let mut status = ExitCode::SUCCESS;
    // With --json, one document: the response, or an array of them for a
    // command that is several requests (`undebug all`).
    let mut responses = Vec::new();
    for req in parsed.requests {
        let resp = match client::request(&socket, &req) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dmvpnctl: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let resp = match (resp, &interface) {
            (Response::Ok(reply), Some(name)) => Response::Ok(interface_filter::only(reply, name)),
            (r, _) => r,
        };
        match &resp {
            Response::Ok(reply) => {
                if !json && !emit(&render::render_view(reply, parsed.view)) {
                    return status;
                }
            }
            Response::Error { message } => {
                eprintln!("dmvpnctl: dmvpnd: {message}");
                status = ExitCode::from(EXIT_REFUSED);
            }
        }
        responses.push(resp);
    }
    if json {
        let doc = match responses.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        };
        match doc {
            Ok(s) => {
                emit(&format!("{s}\n"));
            }
            Err(e) => {
                eprintln!("dmvpnctl: cannot print JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    status
}

/// Writes `s` to stdout; false when it cannot. A reader that went away
/// (`dmvpnctl … | head`) ends the output quietly, as for other tools.
pub(crate) fn emit(s: &str) -> bool {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("dmvpnctl: cannot write the output: {e}");
            false
        }
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
