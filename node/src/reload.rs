//! What a reload changes: the running configuration and a new one are
//! compared key by key (`tunnel[0].nhrp.holdtime`, `ike.key[1].key`).
//! Every changed key is either applied in place, and then takes effect
//! at a known moment ([`Effect`]), or needs a restart of dmvpnd; one key
//! of the second kind refuses the whole reload, and the running
//! configuration stays.

use std::collections::BTreeSet;

use dmvpn_config::Config;
use serde_json::Value;
use thiserror::Error;

use crate::control::MapError;

/// When a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// At once (static mappings, NHSs, the NHRP password and limits, the
    /// log filter).
    Now,
    /// With the next registration sent; one already scheduled keeps its
    /// time.
    NextRegistration,
    /// For negotiations started from now on; established SAs keep what
    /// they negotiated.
    NewNegotiations,
    /// At once, for the SAs already up as well (idle time, DPD).
    ExistingSas,
    /// At once (a new tunnel source): when the address changes, SAs that
    /// named the old one are deleted and the node registers with its NHSs
    /// again.
    Rekey,
    /// At once: the node registers with its NHSs again (a new tunnel
    /// address).
    Reregister,
    /// At once: IPsec turned on (plain GRE refused, SAs negotiated) or
    /// off (SAs deleted, GRE sent plain).
    ProtectionSwitched,
    /// At once, by starting the tunnel again (a new role or tunnel mode:
    /// what the node held is of the other kind): every SA is deleted (the
    /// peers are told), NHRP starts afresh and registers at once, and the
    /// tunnel's counters start from zero. The process, its sockets and
    /// the tunnel interface stay.
    TunnelRestarted,
}

impl Effect {
    /// The words `dmvpnctl reload` and the log print.
    pub fn describe(self) -> &'static str {
        match self {
            Effect::Now => "applied now",
            Effect::NextRegistration => "from the next registration",
            Effect::NewNegotiations => "for new negotiations",
            Effect::ExistingSas => "applied now, to existing SAs too",
            Effect::Rekey => {
                "applied now; from a new address SAs are renegotiated and registrations sent again"
            }
            Effect::Reregister => "applied now; registrations sent again",
            Effect::ProtectionSwitched => {
                "applied now; SAs negotiated or deleted as protection requires"
            }
            Effect::TunnelRestarted => {
                "applied now; the tunnel starts again (SAs deleted, registrations sent again)"
            }
        }
    }
}

/// One changed key and when it takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key path, as in configuration diagnostics (`tunnel[0].nhrp.map`).
    pub key: String,
    pub effect: Effect,
}

/// What a reload applied (nothing when the file did not change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub changes: Vec<Change>,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReloadError {
    /// Keys that only a restart can change (a tunnel added or removed,
    /// which the configuration check refuses as well).
    #[error("restart dmvpnd to change {}", .keys.join(", "))]
    NeedsRestart { keys: Vec<String> },
    #[error(transparent)]
    Map(#[from] MapError),
}

/// Keys changed in place, by their path with array indices left out
/// (the first tunnel's are under `tunnel.`), most specific first. A key
/// is covered by an entry equal to it or one of its parents.
const IN_PLACE: &[(&str, Effect)] = &[
    ("node.name", Effect::Now),
    ("log.filter", Effect::Now),
    ("log.key_log", Effect::NewNegotiations),
    ("metrics", Effect::Now),
    ("control", Effect::Now),
    ("ike.dpd", Effect::ExistingSas),
    ("ike", Effect::NewNegotiations),
    ("ipsec.profile.idle_time", Effect::ExistingSas),
    ("ipsec.profile", Effect::NewNegotiations),
    ("ipsec.transform_set", Effect::NewNegotiations),
    ("tunnel.name", Effect::Now),
    ("tunnel.mtu", Effect::Now),
    ("tunnel.routes", Effect::Now),
    ("tunnel.nhrp.holdtime", Effect::NextRegistration),
    ("tunnel.nhrp.registration_timeout", Effect::NextRegistration),
    (
        "tunnel.nhrp.registration_no_unique",
        Effect::NextRegistration,
    ),
    ("tunnel.nhrp.map", Effect::Now),
    ("tunnel.nhrp.nhs", Effect::Now),
    ("tunnel.nhrp.authentication", Effect::Now),
    ("tunnel.nhrp.map_multicast_dynamic", Effect::Now),
    ("tunnel.nhrp.multicast", Effect::Now),
    ("tunnel.nhrp.redirect", Effect::Now),
    ("tunnel.nhrp.shortcut", Effect::Now),
    ("tunnel.nhrp.if_state", Effect::Now),
    ("tunnel.nhrp.registration_prefixes", Effect::Now),
    ("tunnel.nhrp.allowed_nbma", Effect::Now),
    ("tunnel.nhrp.max_send", Effect::Now),
    ("tunnel.nhrp.max_send_interval", Effect::Now),
    ("tunnel.nhrp.max_cache_entries", Effect::Now),
    ("tunnel.nhrp.max_registrations_per_nbma", Effect::Now),
    ("ipsec.manual_sa", Effect::Now),
    ("tunnel.key", Effect::Now),
    ("tunnel.nhrp.network_id", Effect::Now),
    ("tunnel.source", Effect::Rekey),
    ("tunnel.address", Effect::Reregister),
    // The IPv6 NHRP instance is made again with the tunnel.
    ("tunnel.address6", Effect::TunnelRestarted),
    // From a profile to another: new negotiations (see `plan`).
    ("tunnel.protection", Effect::ProtectionSwitched),
    ("node.role", Effect::TunnelRestarted),
    ("tunnel.mode", Effect::TunnelRestarted),
    ("tunnel.destination", Effect::TunnelRestarted),
    // NHRP on or off, or one of its keys not listed above.
    ("tunnel.nhrp", Effect::TunnelRestarted),
];

/// Compares the running configuration with a new one: the changes to
/// apply, or every key that needs a restart.
pub fn plan(running: &Config, new: &Config) -> Result<Vec<Change>, ReloadError> {
    let mut keys = Vec::new();
    diff("", &to_value(running), &to_value(new), &mut keys);
    // An NHS's NBMA address may come from a static mapping: removing or
    // changing that mapping moves the NHS, which is a change of its own.
    if keys.iter().all(|k| !k.starts_with("tunnel[0].nhrp.nhs")) && nhs_of(running) != nhs_of(new) {
        keys.push("tunnel[0].nhrp.nhs".into());
    }
    let mut changes = Vec::new();
    let mut restart = Vec::new();
    let protection = |c: &Config| c.tunnels.first().map(|t| t.protection.is_some());
    let same_protection = protection(running) == protection(new);
    let family = |c: &Config| c.tunnels.first().map(|t| t.address.addr().is_ipv4());
    let same_family = family(running) == family(new);
    for key in keys {
        if key == "tunnel[0].address" && !same_family {
            // IPv4 to an IPv6-only overlay or back: a new TUN setup.
            restart.push(key);
            continue;
        }
        if key == "tunnel[0].protection" && same_protection {
            // Another profile: IPsec stays on, new SAs use it.
            changes.push(Change {
                key,
                effect: Effect::NewNegotiations,
            });
            continue;
        }
        match effect(&key) {
            Some(effect) => changes.push(Change { key, effect }),
            None => restart.push(key),
        }
    }
    if restart.is_empty() {
        Ok(changes)
    } else {
        Err(ReloadError::NeedsRestart { keys: restart })
    }
}

fn to_value(c: &Config) -> Value {
    // Plain data (strings, numbers, lists, tables): it always serializes.
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// The first tunnel's NHSs as the node uses them: (address, NBMA, priority).
fn nhs_of(c: &Config) -> Vec<(std::net::IpAddr, Option<std::net::IpAddr>, u8)> {
    let Some(n) = c.tunnels.first().and_then(|t| t.nhrp.as_ref()) else {
        return Vec::new();
    };
    n.nhs
        .iter()
        .map(|s| (s.address, n.nhs_nbma(s), s.priority))
        .collect()
}

/// Paths where `a` and `b` differ: into tables key by key and into
/// same-length lists of tables entry by entry (an entry with several
/// changed keys that take effect alike is reported as a whole); any
/// other difference (a value, a list of values, a list that grew or
/// shrank, a key added or removed) is reported at its own path.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = Value::Null;
                diff(
                    &p,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y))
            if x.len() == y.len() && x.iter().chain(y).all(Value::is_object) =>
        {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                let entry = format!("{path}[{i}]");
                let mut inner = Vec::new();
                diff(&entry, u, v, &mut inner);
                // Several keys of one entry that all take effect alike are
                // one change of the entry (a static mapping replaced).
                let alike =
                    effect(&entry).is_some_and(|e| inner.iter().all(|k| effect(k) == Some(e)));
                if inner.len() > 1 && alike {
                    out.push(entry);
                } else {
                    out.extend(inner);
                }
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// When a change of `key` takes effect; `None`: it needs a restart.
fn effect(key: &str) -> Option<Effect> {
    // The node runs the first tunnel only; nothing else of `tunnel` is
    // changed in place.
    let general = match key.strip_prefix("tunnel[0].") {
        Some(rest) => format!("tunnel.{}", without_indices(rest)),
        None if key.starts_with("tunnel") => return None,
        None => without_indices(key),
    };
    IN_PLACE
        .iter()
        .find(|(k, _)| {
            general == *k
                || general
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .map(|(_, e)| *e)
}

fn without_indices(key: &str) -> String {
    let mut s = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => s.push(c),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = r#"
[node]
name = "hub"
role = "hub"
[log]
filter = "info"
[ike.dpd]
interval = 10
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[ipsec.transform_set]]
name = "gcm"
transforms = ["esp-gcm 256"]
mode = "transport"
[[ipsec.profile]]
name = "dmvpn"
transform_sets = ["gcm"]
idle_time = 600
[[tunnel]]
name = "Tunnel0"
address = "172.31.255.1/24"
source = "203.0.113.10"
mode = "gre-multipoint"
key = 0
protection = "dmvpn"
[tunnel.nhrp]
network_id = 1
holdtime = 600
redirect = true
"#;

    /// A spoke whose NHS's NBMA address comes from a static mapping.
    const SPOKE: &str = r#"
[node]
name = "spoke"
role = "spoke"
[[ike.key]]
peer = "0.0.0.0/0"
key = "cisco123"
[[tunnel]]
name = "Tunnel0"
address = "172.31.255.2/24"
source = "198.51.100.20"
mode = "gre-multipoint"
[tunnel.nhrp]
network_id = 1
authentication = "secret"
[[tunnel.nhrp.nhs]]
address = "172.31.255.1"
[[tunnel.nhrp.map]]
address = "172.31.255.1"
nbma = "203.0.113.10"
"#;

    fn cfg(text: &str) -> Config {
        Config::from_str(text, "t.toml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config
    }

    /// `text` with `from` replaced by `to` (which must be there).
    fn edit(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} not in {text}");
        text.replacen(from, to, 1)
    }

    fn keys(r: Result<Vec<Change>, ReloadError>) -> Vec<(String, Effect)> {
        r.unwrap().into_iter().map(|c| (c.key, c.effect)).collect()
    }

    fn restart(r: Result<Vec<Change>, ReloadError>) -> Vec<String> {
        match r {
            Err(ReloadError::NeedsRestart { keys }) => keys,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_same_file_changes_nothing() {
        assert_eq!(plan(&cfg(HUB), &cfg(HUB)), Ok(Vec::new()));
        assert_eq!(plan(&cfg(SPOKE), &cfg(SPOKE)), Ok(Vec::new()));
        // Spelling a default out is no change either.
        let explicit = edit(HUB, "redirect = true", "redirect = true\nshortcut = false");
        assert_eq!(plan(&cfg(HUB), &cfg(&explicit)), Ok(Vec::new()));
    }

    #[test]
    fn in_place_changes_say_when_they_apply() {
        let text = edit(HUB, "holdtime = 600", "holdtime = 300");
        let text = format!(
            "{text}[[tunnel.nhrp.map]]\naddress = \"172.31.255.99\"\nnbma = \"203.0.113.99\"\n"
        );
        let text = edit(&text, "idle_time = 600", "idle_time = 120");
        let text = edit(&text, "filter = \"info\"", "filter = \"debug\"");
        let text = edit(&text, "name = \"hub\"", "name = \"hub-east\"");
        let text = edit(&text, "redirect = true", "redirect = true\nmax_send = 1000");
        let got = keys(plan(&cfg(HUB), &cfg(&text)));
        assert_eq!(
            got,
            [
                ("ipsec.profile[0].idle_time".into(), Effect::ExistingSas),
                ("log.filter".into(), Effect::Now),
                ("node.name".into(), Effect::Now),
                ("tunnel[0].nhrp.holdtime".into(), Effect::NextRegistration),
                ("tunnel[0].nhrp.map".into(), Effect::Now),
                ("tunnel[0].nhrp.max_send".into(), Effect::Now),
            ]
        );
        for c in plan(&cfg(HUB), &cfg(&text)).unwrap() {
            assert!(!c.effect.describe().is_empty());
        }
    }

    #[test]
    fn keys_and_policies_apply_to_new_negotiations() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.ike.keys[0].key = dmvpn_config::types::Secret::new("another-key");
        new.ike.policies[0].lifetime = 3600;
        new.ike.dpd = None;
        new.ipsec.transform_sets[0].transforms = vec![dmvpn_config::types::Transform::EspGcm(128)];
        let got = keys(plan(&c, &new));
        assert_eq!(
            got,
            [
                ("ike.dpd".into(), Effect::ExistingSas),
                ("ike.key[0].key".into(), Effect::NewNegotiations),
                ("ike.policy[0].lifetime".into(), Effect::NewNegotiations),
                (
                    "ipsec.transform_set[0].transforms".into(),
                    Effect::NewNegotiations
                ),
            ]
        );
    }

    #[test]
    fn what_needs_a_restart_is_named_and_refuses_everything() {
        // Only a tunnel added or removed is left (which `--check` refuses
        // as well): named, and nothing else of the file applies.
        let c = cfg(HUB);
        let mut new = cfg(&edit(HUB, "holdtime = 600", "holdtime = 300"));
        new.tunnels.push(c.tunnels[0].clone());
        let r = plan(&c, &new);
        assert_eq!(
            r.clone().unwrap_err().to_string(),
            "restart dmvpnd to change tunnel"
        );
        assert_eq!(restart(r), ["tunnel"]);
        let mut new = c.clone();
        new.tunnels[0].protection = None;
        new.tunnels[0].source = dmvpn_config::types::TunnelSource::Interface("eth1".into());
        new.tunnels[0].mtu = 1300;
        new.tunnels[0].name = "Tunnel1".into();
        new.control.socket = "/tmp/other.sock".into();
        assert!(plan(&c, &new).is_ok(), "all of these apply in place");
    }

    #[test]
    fn a_new_role_or_tunnel_mode_starts_the_tunnel_again() {
        let c = cfg(HUB);
        let p2p = edit(
            HUB,
            "mode = \"gre-multipoint\"",
            "mode = \"gre\"\ndestination = \"203.0.113.20\"",
        );
        assert_eq!(
            keys(plan(&c, &cfg(&p2p))),
            [
                ("tunnel[0].destination".into(), Effect::TunnelRestarted),
                ("tunnel[0].mode".into(), Effect::TunnelRestarted),
            ]
        );
        let mut new = c.clone();
        new.node.role = dmvpn_config::types::Role::Spoke;
        assert_eq!(
            keys(plan(&c, &new)),
            [("node.role".into(), Effect::TunnelRestarted)]
        );
        let mut new = c.clone();
        new.tunnels[0].nhrp = None;
        assert_eq!(
            keys(plan(&c, &new)),
            [("tunnel[0].nhrp".into(), Effect::TunnelRestarted)]
        );
    }

    #[test]
    fn the_number_of_forwarding_threads_needs_a_restart() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.node.workers = dmvpn_config::types::Workers::Count(3);
        assert_eq!(restart(plan(&c, &new)), ["node.workers"]);
    }

    #[test]
    fn if_state_applies_now() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.tunnels[0].nhrp.as_mut().unwrap().if_state = true;
        assert_eq!(
            keys(plan(&c, &new)),
            [("tunnel[0].nhrp.if_state".into(), Effect::Now)]
        );
    }

    #[test]
    fn gre_key_network_id_and_manual_sas_apply_now() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.tunnels[0].nhrp.as_mut().unwrap().network_id = 7;
        new.tunnels[0].key = Some(42);
        assert_eq!(
            keys(plan(&c, &new)),
            [
                ("tunnel[0].key".into(), Effect::Now),
                ("tunnel[0].nhrp.network_id".into(), Effect::Now),
            ]
        );
        let sa = |spi: u32| {
            format!(
                "[[ipsec.manual_sa]]\npeer = \"203.0.113.50\"\ntransforms = [\"esp-aes 128\", \"esp-sha-hmac\"]\n\
                 [ipsec.manual_sa.inbound]\nspi = {spi}\nencryption_key = \"{k}\"\nauthentication_key = \"{a}\"\n\
                 [ipsec.manual_sa.outbound]\nspi = {o}\nencryption_key = \"{k}\"\nauthentication_key = \"{a}\"\n",
                o = spi + 1,
                k = "11".repeat(16),
                a = "aa".repeat(20)
            )
        };
        let one = format!("{HUB}{}", sa(4096));
        let other = format!("{HUB}{}", sa(8192));
        assert_eq!(
            keys(plan(&cfg(HUB), &cfg(&one))),
            [("ipsec.manual_sa".into(), Effect::Now)]
        );
        assert_eq!(
            keys(plan(&cfg(&one), &cfg(&other))),
            [("ipsec.manual_sa[0]".into(), Effect::Now)]
        );
        assert_eq!(
            keys(plan(&cfg(&one), &cfg(HUB))),
            [("ipsec.manual_sa".into(), Effect::Now)]
        );
    }

    #[test]
    fn protection_switches_now_and_another_profile_applies_to_new_negotiations() {
        let c = cfg(HUB);
        let mut off = c.clone();
        off.tunnels[0].protection = None;
        assert_eq!(
            keys(plan(&c, &off)),
            [("tunnel[0].protection".into(), Effect::ProtectionSwitched)]
        );
        assert_eq!(
            keys(plan(&off, &c)),
            [("tunnel[0].protection".into(), Effect::ProtectionSwitched)]
        );
        let mut other = c.clone();
        other.ipsec.profiles.push(c.ipsec.profiles[0].clone());
        other.ipsec.profiles[1].name = "other".into();
        other.tunnels[0].protection = Some("other".into());
        assert_eq!(
            keys(plan(&c, &other)),
            [
                ("ipsec.profile".into(), Effect::NewNegotiations),
                ("tunnel[0].protection".into(), Effect::NewNegotiations)
            ]
        );
    }

    #[test]
    fn a_new_source_or_address_registers_again() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.tunnels[0].source = dmvpn_config::types::TunnelSource::Interface("eth1".into());
        assert_eq!(
            keys(plan(&c, &new)),
            [("tunnel[0].source".into(), Effect::Rekey)]
        );
        assert!(Effect::Rekey.describe().contains("SAs are renegotiated"));
        let moved = edit(HUB, "172.31.255.1/24", "172.31.255.254/25");
        assert_eq!(
            keys(plan(&c, &cfg(&moved))),
            [("tunnel[0].address".into(), Effect::Reregister)]
        );
        assert!(
            Effect::Reregister
                .describe()
                .contains("registrations sent again")
        );
    }

    #[test]
    fn nhs_changes_apply_now_and_a_moved_static_mapping_moves_the_nhs() {
        let moved = edit(SPOKE, "nbma = \"203.0.113.10\"", "nbma = \"203.0.113.77\"");
        assert_eq!(
            keys(plan(&cfg(SPOKE), &cfg(&moved))),
            [
                ("tunnel[0].nhrp.map[0].nbma".into(), Effect::Now),
                ("tunnel[0].nhrp.nhs".into(), Effect::Now),
            ]
        );
        let second = format!(
            "{SPOKE}[[tunnel.nhrp.nhs]]\naddress = \"172.31.255.5\"\nnbma = \"203.0.113.50\"\n"
        );
        assert_eq!(
            keys(plan(&cfg(SPOKE), &cfg(&second))),
            [("tunnel[0].nhrp.nhs".into(), Effect::Now)]
        );
        assert_eq!(
            keys(plan(&cfg(&second), &cfg(SPOKE))),
            [("tunnel[0].nhrp.nhs".into(), Effect::Now)]
        );
        let reprioritized = edit(
            SPOKE,
            "address = \"172.31.255.1\"\n[[tunnel.nhrp.map]]",
            "address = \"172.31.255.1\"\npriority = 3\nmulticast = true\n[[tunnel.nhrp.map]]",
        );
        assert_eq!(
            keys(plan(&cfg(SPOKE), &cfg(&reprioritized))),
            [("tunnel[0].nhrp.nhs[0]".into(), Effect::Now)]
        );
        let other = format!(
            "{SPOKE}[[tunnel.nhrp.map]]\naddress = \"172.31.255.3\"\nnbma = \"198.51.100.30\"\n"
        );
        let other = edit(
            &other,
            "authentication = \"secret\"",
            "authentication = \"other\"",
        );
        assert_eq!(
            keys(plan(&cfg(SPOKE), &cfg(&other))),
            [
                ("tunnel[0].nhrp.authentication".into(), Effect::Now),
                ("tunnel[0].nhrp.map".into(), Effect::Now),
            ]
        );
    }

    #[test]
    fn an_entry_replaced_is_one_change() {
        let text = format!(
            "{HUB}[[tunnel.nhrp.map]]\naddress = \"172.31.255.99\"\nnbma = \"203.0.113.99\"\n"
        );
        let other = edit(&text, "172.31.255.99", "172.31.255.98");
        let other = edit(&other, "203.0.113.99", "203.0.113.98");
        assert_eq!(
            keys(plan(&cfg(&text), &cfg(&other))),
            [("tunnel[0].nhrp.map[0]".into(), Effect::Now)]
        );
        // Keys of one entry that take effect differently stay apart.
        let c = cfg(HUB);
        let mut new = c.clone();
        new.ipsec.profiles[0].idle_time = Some(120);
        new.ipsec.profiles[0].lifetime_seconds = 1800;
        assert_eq!(
            keys(plan(&c, &new)),
            [
                ("ipsec.profile[0].idle_time".into(), Effect::ExistingSas),
                (
                    "ipsec.profile[0].lifetime_seconds".into(),
                    Effect::NewNegotiations
                ),
            ]
        );
        // Keys needing a restart are all named.
        let mut new = c.clone();
        new.tunnels.push(c.tunnels[0].clone());
        new.tunnels[0].key = Some(9);
        assert_eq!(restart(plan(&c, &new)), ["tunnel"]);
    }

    #[test]
    fn daemon_side_keys_apply_in_place() {
        let c = cfg(HUB);
        let mut new = c.clone();
        new.tunnels[0].name = "Tunnel1".into();
        new.tunnels[0].mtu = 1300;
        new.tunnels[0].routes.push("10.9.0.0/16".parse().unwrap());
        new.log.key_log = Some("/var/lib/dmvpn/keys.log".into());
        new.metrics.listen = Some("127.0.0.1:9101".parse().unwrap());
        new.control.socket = "/tmp/other.sock".into();
        new.control.mode = dmvpn_config::types::FileMode(0o660);
        assert_eq!(
            keys(plan(&c, &new)),
            [
                ("control.mode".into(), Effect::Now),
                ("control.socket".into(), Effect::Now),
                ("log.key_log".into(), Effect::NewNegotiations),
                ("metrics".into(), Effect::Now),
                ("tunnel[0].mtu".into(), Effect::Now),
                ("tunnel[0].name".into(), Effect::Now),
                ("tunnel[0].routes".into(), Effect::Now),
            ]
        );
        // Removed again: the same keys.
        assert_eq!(plan(&new, &c).unwrap().len(), 7);
        // A second tunnel still needs a restart, and refuses the rest.
        let mut other = new.clone();
        other.tunnels.push(c.tunnels[0].clone());
        assert_eq!(restart(plan(&c, &other)), ["tunnel"]);
    }

    #[test]
    fn paths_leave_indices_out_only_for_matching() {
        assert_eq!(
            without_indices("ipsec.profile[2].idle_time"),
            "ipsec.profile.idle_time"
        );
        assert_eq!(effect("tunnel[1].nhrp.holdtime"), None);
        assert_eq!(
            effect("tunnel[0].nhrp.holdtime"),
            Some(Effect::NextRegistration)
        );
        assert_eq!(effect("tunnel[0].nhrp.map[3].nbma"), Some(Effect::Now));
        assert_eq!(
            effect("tunnel[0].mtux"),
            None,
            "a prefix of a word is not a parent"
        );
        assert_eq!(effect("log.keylog"), None);
        assert_eq!(effect("metricsx"), None);
        assert_eq!(effect("ipsec.manual_sa[1].inbound.spi"), Some(Effect::Now));
        assert_eq!(effect("ike.key[0].key"), Some(Effect::NewNegotiations));
    }
}
