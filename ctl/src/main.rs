//! `dmvpnctl`: operator CLI for dmvpnd, with IOS-shaped commands and output.

use clap::{Args, Parser, Subcommand};
use dmvpn_ctl::client;
use dmvpn_ctl::proto::{DEFAULT_SOCKET, DebugTarget, Request, Response};
use dmvpn_ctl::render;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod import;

/// Exit status when dmvpnd cannot be reached (or answers garbage).
const EXIT_UNREACHABLE: u8 = 2;
/// Exit status when dmvpnd refuses a command.
const EXIT_REFUSED: u8 = 1;

/// Operate a dmvpnd node: show its NHRP and crypto state, clear it, switch
/// debugging on and off.
#[derive(Parser)]
#[command(name = "dmvpnctl", version)]
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
    /// Show NHRP, DMVPN and crypto state (IOS `show …`).
    #[command(subcommand, visible_alias = "sh")]
    Show(Show),
    /// Clear dynamic state (IOS `clear …`).
    #[command(subcommand)]
    Clear(Clear),
    /// Switch debug logging of an area on (or off with `off`).
    Debug(DebugArgs),
    /// Switch debug logging off (IOS `undebug …`; `undebug all` for every area).
    #[command(visible_alias = "u")]
    Undebug(UndebugArgs),
    /// IOS `no debug …`.
    #[command(subcommand)]
    No(NoCmd),
    /// Translate a Cisco IOS `show running-config` into dmvpnd TOML (stdout).
    ImportIos(import::ImportArgs),
}

#[derive(Subcommand)]
enum Show {
    /// NHRP cache (`show ip nhrp`); `show nhrp nhs` lists the NHSs.
    Nhrp {
        #[command(subcommand)]
        sub: Option<NhrpSub>,
    },
    /// `show ip nhrp [nhs]`.
    #[command(subcommand)]
    Ip(IpShow),
    /// DMVPN peers per tunnel (`show dmvpn`).
    Dmvpn,
    /// `show crypto isakmp sa` / `show crypto ipsec sa`.
    #[command(subcommand)]
    Crypto(CryptoShow),
}

#[derive(Subcommand)]
enum IpShow {
    /// NHRP cache; `show ip nhrp nhs` lists the NHSs.
    Nhrp {
        #[command(subcommand)]
        sub: Option<NhrpSub>,
    },
}

#[derive(Subcommand)]
enum NhrpSub {
    /// Next-hop servers: state, priority, requests sent and replies received.
    Nhs,
}

#[derive(Subcommand)]
enum CryptoShow {
    /// IKE phase 1: `show crypto isakmp sa`.
    #[command(subcommand)]
    Isakmp(SaWord),
    /// IPsec (ESP) SAs per peer with counters: `show crypto ipsec sa`.
    #[command(subcommand)]
    Ipsec(SaWord),
}

#[derive(Subcommand)]
enum SaWord {
    /// Security associations.
    Sa,
}

#[derive(Subcommand)]
enum Clear {
    /// Drop dynamic NHRP entries; static mappings stay (`clear ip nhrp`).
    Nhrp,
    /// `clear ip nhrp`.
    #[command(subcommand)]
    Ip(ClearIp),
    /// `clear crypto sa [[peer] ADDRESS]`.
    #[command(subcommand)]
    Crypto(ClearCrypto),
}

#[derive(Subcommand)]
enum ClearIp {
    /// Drop dynamic NHRP entries; static mappings stay.
    Nhrp,
}

#[derive(Subcommand)]
enum ClearCrypto {
    /// Delete IKE and IPsec SAs: all, or only those with one peer
    /// (`clear crypto sa 172.16.0.2` or `clear crypto sa peer 172.16.0.2`).
    Sa {
        /// Optional `peer` keyword, then the peer's NBMA address.
        #[arg(num_args = 0..=2, value_name = "[peer] ADDRESS")]
        words: Vec<String>,
    },
}

#[derive(Args)]
struct DebugArgs {
    /// `nhrp`, `crypto isakmp` or `crypto ipsec`, optionally followed by `off`.
    #[arg(required = true, num_args = 1..=3, value_name = "AREA [off]")]
    words: Vec<String>,
}

#[derive(Args)]
struct UndebugArgs {
    /// `nhrp`, `crypto isakmp`, `crypto ipsec` or `all`.
    #[arg(required = true, num_args = 1..=2, value_name = "AREA")]
    words: Vec<String>,
}

#[derive(Subcommand)]
enum NoCmd {
    /// Switch debug logging of an area off.
    Debug(UndebugArgs),
}

/// `nhrp` | `crypto isakmp` | `crypto ipsec` (IOS also says `isakmp` alone).
fn parse_area(words: &[String]) -> Result<DebugTarget, String> {
    let w: Vec<String> = words.iter().map(|s| s.to_ascii_lowercase()).collect();
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["nhrp"] | ["ip", "nhrp"] => Ok(DebugTarget::Nhrp),
        ["crypto", "isakmp"] | ["isakmp"] => Ok(DebugTarget::CryptoIsakmp),
        ["crypto", "ipsec"] | ["ipsec"] => Ok(DebugTarget::CryptoIpsec),
        _ => Err(format!(
            "unknown debug area `{}` (expected nhrp, crypto isakmp or crypto ipsec)",
            words.join(" ")
        )),
    }
}

fn debug_requests(words: &[String], default_on: bool) -> Result<Vec<Request>, String> {
    let (area, on) = match words.split_last() {
        Some((last, rest)) if last.eq_ignore_ascii_case("off") => (rest, false),
        _ => (words, default_on),
    };
    if !default_on && area.len() == 1 && area[0].eq_ignore_ascii_case("all") {
        return Ok(DebugTarget::ALL
            .into_iter()
            .map(|target| Request::Debug { target, on: false })
            .collect());
    }
    Ok(vec![Request::Debug {
        target: parse_area(area)?,
        on,
    }])
}

fn clear_crypto_peer(words: &[String]) -> Result<Option<IpAddr>, String> {
    let addr = match words {
        [] => return Ok(None),
        [p, a] if p.eq_ignore_ascii_case("peer") => a,
        [a] => a,
        _ => {
            return Err(format!(
                "expected `clear crypto sa [peer] ADDRESS`, got `{}`",
                words.join(" ")
            ));
        }
    };
    addr.parse()
        .map(Some)
        .map_err(|_| format!("`{addr}` is not an IP address"))
}

fn requests(cmd: &Command) -> Result<Vec<Request>, String> {
    let one = |r| Ok(vec![r]);
    match cmd {
        Command::Show(s) => match s {
            Show::Nhrp { sub: None } | Show::Ip(IpShow::Nhrp { sub: None }) => {
                one(Request::ShowNhrp)
            }
            Show::Nhrp {
                sub: Some(NhrpSub::Nhs),
            }
            | Show::Ip(IpShow::Nhrp {
                sub: Some(NhrpSub::Nhs),
            }) => one(Request::ShowNhrpNhs),
            Show::Dmvpn => one(Request::ShowDmvpn),
            Show::Crypto(CryptoShow::Isakmp(SaWord::Sa)) => one(Request::ShowCryptoIsakmpSa),
            Show::Crypto(CryptoShow::Ipsec(SaWord::Sa)) => one(Request::ShowCryptoIpsecSa),
        },
        Command::Clear(Clear::Nhrp) | Command::Clear(Clear::Ip(ClearIp::Nhrp)) => {
            one(Request::ClearNhrp)
        }
        Command::Clear(Clear::Crypto(ClearCrypto::Sa { words })) => one(Request::ClearCryptoSa {
            peer: clear_crypto_peer(words)?,
        }),
        Command::Debug(a) => debug_requests(&a.words, true),
        Command::Undebug(a) | Command::No(NoCmd::Debug(a)) => debug_requests(&a.words, false),
        Command::ImportIos(_) => unreachable!("handled before"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ImportIos(args) = &cli.command {
        return import::run(args);
    }
    let reqs = match requests(&cli.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmvpnctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let mut status = ExitCode::SUCCESS;
    for req in reqs {
        let resp = match client::request(&cli.socket, &req) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dmvpnctl: {e}");
                return ExitCode::from(EXIT_UNREACHABLE);
            }
        };
        if cli.json {
            match serde_json::to_string_pretty(&resp) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("dmvpnctl: cannot print JSON: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        match resp {
            Response::Ok(reply) => {
                if !cli.json {
                    print!("{}", render::render(&reply));
                }
            }
            Response::Error { message } => {
                eprintln!("dmvpnctl: dmvpnd: {message}");
                status = ExitCode::from(EXIT_REFUSED);
            }
        }
    }
    status
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
