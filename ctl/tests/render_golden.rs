//! IOS-shaped text for the fixed snapshots of `common`, compared with
//! `tests/golden/*.txt`, and the samples of docs/operations.md compared
//! with what the program prints for the command above each of them.
//! After a deliberate format change, regenerate with `UPDATE_GOLDEN=1`
//! and review the diff.

mod common;

use dmvpn_ctl::command;
use dmvpn_ctl::proto::{DebugTarget, Reply, Request, Response};
use dmvpn_ctl::render::{self, View};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(name: &str, text: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, want, "{name} differs from {}", path.display());
}

/// What `dmvpnctl LINE` prints against the fixture daemon.
fn output(line: &str) -> String {
    let words: Vec<String> = line.split_whitespace().map(String::from).collect();
    // `reload` is dmvpnctl's own subcommand, not an IOS command line.
    let parsed = match line {
        "reload" => command::Parsed {
            requests: vec![Request::Reload],
            view: View::Plain,
            interface: None,
        },
        _ => command::parse(&words).unwrap_or_else(|e| panic!("{line}: {e}")),
    };
    parsed
        .requests
        .iter()
        .map(|r| match common::answer(*r) {
            Response::Ok(reply) => render::render_view(&reply, parsed.view),
            Response::Error { message } => panic!("{line}: {message}"),
        })
        .collect()
}

/// Every rendering, by the command that prints it.
pub const GOLDEN: [(&str, &str); 13] = [
    ("show ip nhrp", "show_ip_nhrp.txt"),
    ("show ip nhrp brief", "show_ip_nhrp_brief.txt"),
    ("show ip nhrp nhs", "show_ip_nhrp_nhs.txt"),
    ("show ip nhrp traffic", "show_ip_nhrp_traffic.txt"),
    ("show dmvpn", "show_dmvpn.txt"),
    ("show dmvpn detail", "show_dmvpn_detail.txt"),
    ("show crypto isakmp sa", "show_crypto_isakmp_sa.txt"),
    (
        "show crypto isakmp sa detail",
        "show_crypto_isakmp_sa_detail.txt",
    ),
    ("show crypto ipsec sa", "show_crypto_ipsec_sa.txt"),
    ("show crypto session", "show_crypto_session.txt"),
    (
        "show crypto session detail",
        "show_crypto_session_detail.txt",
    ),
    ("debug nhrp", "debug_nhrp.txt"),
    ("reload", "reload.txt"),
];

#[test]
fn golden_renderings() {
    for (line, file) in GOLDEN {
        check(file, &output(line));
    }
}

/// The IOS facts the goldens must keep, spelled out.
#[test]
fn ios_layouts() {
    // dst is the responder: the SA the NATed spoke started has us as dst.
    let isakmp = output("show crypto isakmp sa");
    assert!(isakmp.contains("\n172.16.0.1      172.16.0.3      QM_IDLE           1001 ACTIVE\n"));
    assert!(isakmp.contains("\n172.16.0.3      172.16.9.2      QM_IDLE           1002 ACTIVE\n"));
    // detail: Local is always us; IOS's algorithm words.
    let detail = output("show crypto isakmp sa detail");
    assert!(detail.contains(
        "\n1002  172.16.0.3      172.16.9.2             ACTIVE aes  sha    psk  14 23:58:37 DN\n"
    ));
    // A peer with two entries counts 2, with the T2 and T1 attributes.
    let dmvpn = output("show dmvpn");
    assert!(dmvpn.contains(
        "\n     2 172.16.9.2          192.168.1.2    UP 00:01:23  DNT2\n                           192.168.1.2    UP 00:01:23  DNT1\n"
    ));
    assert!(dmvpn.contains("\n     1 UNKNOWN             192.168.1.4  NHRP 00:00:02    IX\n"));
    let nhrp = output("show ip nhrp");
    assert!(nhrp.contains("10.2.2.0/24 via 192.168.1.2\n   Tunnel0 created 00:01:23, expire 00:08:37\n   Type: dynamic, Flags: router used rib nho\n"));
    // Data-plane drops at the top of show crypto ipsec sa.
    let ipsec = output("show crypto ipsec sa");
    assert!(ipsec.starts_with(
        "interface: Tunnel0\n    Crypto map tag: Tunnel0-head-0, local addr 172.16.0.3\n    #send errors 2, #recv errors 1\n    #pkts no nhrp mapping (send) 2, #pkts invalid sa (rcv) 1\n"
    ));
}

#[test]
fn empty_tables() {
    assert_eq!(render::nhrp(&[]), "");
    assert_eq!(
        render::ipsec_sa(&dmvpn_ctl::proto::IpsecSaReport {
            interfaces: Vec::new(),
            peers: Vec::new()
        }),
        ""
    );
    assert_eq!(
        render::isakmp_sa(&[]),
        "IPv4 Crypto ISAKMP SA\n\
         dst             src             state          conn-id status\n\
         \n\
         IPv6 Crypto ISAKMP SA\n\
         \n"
    );
    assert!(render::dmvpn(&[]).starts_with("Legend: Attrb --> S - Static"));
    assert_eq!(
        render::crypto_session(&[]),
        "Crypto session current status\n\n"
    );
}

#[test]
fn debug_and_clear() {
    let on = Reply::Debug {
        target: DebugTarget::Nhrp,
        on: true,
    };
    assert_eq!(render::render(&on), "NHRP protocol debugging is on\n");
    let off = Reply::Debug {
        target: DebugTarget::CryptoIsakmp,
        on: false,
    };
    assert_eq!(render::render(&off), "Crypto ISAKMP debugging is off\n");
    assert_eq!(render::render(&Reply::Cleared { count: 5 }), "");
    assert_eq!(
        render::render_view(&Reply::Cleared { count: 5 }, View::Detail),
        ""
    );
}

#[test]
fn reload_reports() {
    let mut r = common::reload_report();
    r.warnings.clear();
    r.changes.retain(|c| c.key == "tunnel[0].nhrp.holdtime");
    assert_eq!(
        render::render(&Reply::Reloaded(r.clone())),
        "Reloaded /etc/dmvpn/dmvpnd.toml: 1 change\n  tunnel[0].nhrp.holdtime  from the next registration\n"
    );
    r.changes.clear();
    assert_eq!(
        render::render(&Reply::Reloaded(r)),
        "Reloaded /etc/dmvpn/dmvpnd.toml: no changes\n"
    );
}

#[test]
fn time_and_spi_formats() {
    assert_eq!(render::duration(0), "00:00:00");
    assert_eq!(render::duration(83), "00:01:23");
    assert_eq!(render::duration(86_399), "23:59:59");
    assert_eq!(render::duration(93_784), "1d02h");
    assert_eq!(render::duration(9 * 86_400 + 5), "1w2d");
    assert_eq!(render::duration(53 * 7 * 86_400), "1y1w");
    assert_eq!(render::spi(0x1A2B3C4D), "0x1A2B3C4D(439041101)");
    assert_eq!(render::spi(0xEA8C83C1), "0xEA8C83C1(3935077313)");
    // IOS does not pad: `0x53ABB47(87735111)`.
    assert_eq!(render::spi(0x53ABB47), "0x53ABB47(87735111)");
}

/// Splits docs/operations.md's sample section into (command, sample):
/// each "### `dmvpnctl COMMAND`" heading and the first code block under it.
fn doc_samples() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(root().join("../docs/operations.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        let Some(cmd) = l
            .strip_prefix("### `dmvpnctl ")
            .and_then(|r| r.strip_suffix('`'))
        else {
            continue;
        };
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
        }
        let mut sample = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            sample.push_str(l);
            sample.push('\n');
        }
        out.push((cmd.to_string(), sample));
    }
    out
}

/// docs/operations.md shows exactly what dmvpnctl prints, for every
/// rendering there is.
#[test]
fn operations_doc_samples_are_program_output() {
    let samples = doc_samples();
    for (cmd, sample) in &samples {
        assert_eq!(&output(cmd), sample, "sample of `dmvpnctl {cmd}`");
    }
    for (line, _) in GOLDEN {
        assert!(
            samples.iter().any(|(c, _)| c == line),
            "docs/operations.md has no sample of `{line}`"
        );
    }
}

/// Every IOS command dmvpnctl takes is in the docs' command table.
#[test]
fn operations_doc_lists_every_command() {
    let doc = std::fs::read_to_string(root().join("../docs/operations.md")).unwrap();
    for c in command::commands() {
        let c = c.replace("ADDRESS", "ADDR");
        let shown = doc
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.replace(['[', ']'], ""))
            .any(|l| l.contains(&c));
        assert!(
            shown,
            "`{c}` missing from the command table of docs/operations.md"
        );
    }
}

/// The fixture daemon's snapshots as OpenMetrics text, and the facts a
/// dashboard relies on.
#[test]
fn metrics_golden() {
    use dmvpn_ctl::proto::Request;
    use dmvpn_ctl::render::metrics::{Snapshot, render};
    let get = |r| match common::answer(r) {
        Response::Ok(reply) => reply,
        Response::Error { message } => panic!("{message}"),
    };
    let mut s = Snapshot::default();
    if let Reply::Dmvpn(v) = get(Request::ShowDmvpn) {
        s.dmvpn = v;
    }
    if let Reply::Nhrp(v) = get(Request::ShowNhrp) {
        s.nhrp = v;
    }
    if let Reply::NhrpNhs(v) = get(Request::ShowNhrpNhs) {
        s.nhs = v;
    }
    if let Reply::NhrpTraffic(v) = get(Request::ShowNhrpTraffic) {
        s.traffic = v;
    }
    if let Reply::IsakmpSa(v) = get(Request::ShowCryptoIsakmpSa) {
        s.isakmp = v;
    }
    if let Reply::IpsecSa(v) = get(Request::ShowCryptoIpsecSa) {
        s.ipsec = Some(v);
    }
    if let Reply::Stats(v) = get(Request::ShowStats) {
        s.stats = v;
    }
    let text = render(&s);
    check("metrics.txt", &text);
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("\ndmvpn_tunnels 1\n"), "{text}");
    assert!(
        text.contains("dmvpn_isakmp_sas{state=\"QM_IDLE\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE dmvpn_peer_packets counter\n"),
        "{text}"
    );
    for line in [
        "dmvpn_peer_bytes_total{peer=\"172.16.0.1\",direction=\"in\"} 111800\n",
        "dmvpn_ike_handshakes_started_total{interface=\"Tunnel0\",exchange=\"phase1\"} 3\n",
        "dmvpn_ike_handshakes_completed_total{interface=\"Tunnel0\",exchange=\"quick_mode\"} 2\n",
        "dmvpn_ike_handshakes_failed_total{interface=\"Tunnel0\",exchange=\"phase1\",reason=\"timeout\"} 1\n",
        "# TYPE dmvpn_nhrp_resolution_latency_seconds histogram\n",
        "# UNIT dmvpn_nhrp_resolution_latency_seconds seconds\n",
        "dmvpn_nhrp_resolution_latency_seconds_count{interface=\"Tunnel0\"} 3\n",
        // 4.2 ms and 8.7 ms are at most 10 ms; 1.5 s only from 2.5 s on.
        "dmvpn_nhrp_resolution_latency_seconds_bucket{le=\"0.01\",interface=\"Tunnel0\"} 2\n",
        "dmvpn_nhrp_resolution_latency_seconds_bucket{le=\"1.0\",interface=\"Tunnel0\"} 2\n",
        "dmvpn_nhrp_resolution_latency_seconds_bucket{le=\"2.5\",interface=\"Tunnel0\"} 3\n",
        "dmvpn_nhrp_resolution_latency_seconds_bucket{le=\"+Inf\",interface=\"Tunnel0\"} 3\n",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
}

/// Prometheus's own Python parser (Debian's python3-prometheus-client)
/// reads every family and sample of the metrics text.
#[test]
fn metrics_parse_with_the_reference_parser() {
    let text = std::fs::read_to_string(root().join("tests/golden/metrics.txt")).unwrap();
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
        fams = list(p(sys.stdin.read()))\n\
        print(len(fams), sum(len(f.samples) for f in fams))\n\
        for f in fams:\n\
        \x20   if f.type == 'histogram':\n\
        \x20       inf = [float(s.value) for s in f.samples if s.labels.get('le') == '+Inf']\n\
        \x20       print(f.name, f.unit, inf)\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (apt-get install python3-prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parser refused the text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("{families} {samples}").as_str()));
    // The resolution latency is read as a histogram in seconds, its +Inf
    // bucket holding every observation.
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["dmvpn_nhrp_resolution_latency_seconds seconds [3.0]"]
    );
}
