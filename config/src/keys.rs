//! The key tree of the schema, used to report every unknown key in one
//! pass (serde stops at the first). `tests::schema_keys_match_serde`
//! keeps it in step with the structs.

use crate::diag::Finding;
use toml_edit::{Item, TableLike, Value};

#[derive(Debug)]
pub enum Shape {
    Value,
    /// A table (or inline table) with these keys.
    Table(&'static [(&'static str, Shape)]),
    /// An array of tables (or of inline tables) with these keys.
    Tables(&'static [(&'static str, Shape)]),
}

use Shape::*;

const SA_KEYS: &[(&str, Shape)] = &[
    ("spi", Value),
    ("encryption_key", Value),
    ("authentication_key", Value),
];

pub const ROOT: &[(&str, Shape)] = &[
    (
        "node",
        Table(&[("name", Value), ("role", Value), ("workers", Value)]),
    ),
    (
        "control",
        Table(&[("socket", Value), ("mode", Value), ("group", Value)]),
    ),
    ("log", Table(&[("filter", Value), ("key_log", Value)])),
    ("metrics", Table(&[("listen", Value)])),
    (
        "ike",
        Table(&[
            ("identity", Value),
            ("fqdn", Value),
            ("answer_aggressive", Value),
            ("aggressive_mode", Value),
            ("in_negotiation_limit", Value),
            ("in_negotiation_per_peer", Value),
            (
                "dpd",
                Table(&[
                    ("interval", Value),
                    ("retry_interval", Value),
                    ("retries", Value),
                ]),
            ),
            (
                "nat_traversal",
                Table(&[("mode", Value), ("keepalive", Value)]),
            ),
            (
                "policy",
                Tables(&[
                    ("priority", Value),
                    ("encryption", Value),
                    ("hash", Value),
                    ("authentication", Value),
                    ("group", Value),
                    ("lifetime", Value),
                ]),
            ),
            (
                "key",
                Tables(&[("peer", Value), ("key", Value), ("initiate_mode", Value)]),
            ),
        ]),
    ),
    (
        "ipsec",
        Table(&[
            (
                "transform_set",
                Tables(&[("name", Value), ("transforms", Value), ("mode", Value)]),
            ),
            (
                "profile",
                Tables(&[
                    ("name", Value),
                    ("transform_sets", Value),
                    ("lifetime_seconds", Value),
                    ("lifetime_kilobytes", Value),
                    ("pfs", Value),
                    ("idle_time", Value),
                ]),
            ),
            (
                "manual_sa",
                Tables(&[
                    ("peer", Value),
                    ("transforms", Value),
                    ("mode", Value),
                    ("udp_encapsulation", Value),
                    ("inbound", Table(SA_KEYS)),
                    ("outbound", Table(SA_KEYS)),
                ]),
            ),
        ]),
    ),
    (
        "tunnel",
        Tables(&[
            ("name", Value),
            ("address", Value),
            ("address6", Value),
            ("mtu", Value),
            ("source", Value),
            ("mode", Value),
            ("destination", Value),
            ("key", Value),
            ("protection", Value),
            ("routes", Value),
            (
                "nhrp",
                Table(&[
                    ("network_id", Value),
                    ("authentication", Value),
                    ("holdtime", Value),
                    ("map_multicast_dynamic", Value),
                    ("multicast", Value),
                    ("redirect", Value),
                    ("shortcut", Value),
                    ("registration_timeout", Value),
                    ("registration_no_unique", Value),
                    ("if_state", Value),
                    ("registration_prefixes", Value),
                    ("allowed_nbma", Value),
                    ("max_send", Value),
                    ("max_send_interval", Value),
                    ("max_cache_entries", Value),
                    ("max_registrations_per_nbma", Value),
                    (
                        "nhs",
                        Tables(&[
                            ("address", Value),
                            ("nbma", Value),
                            ("priority", Value),
                            ("multicast", Value),
                        ]),
                    ),
                    ("map", Tables(&[("address", Value), ("nbma", Value)])),
                ]),
            ),
        ]),
    ),
];

/// Every unknown key in the document, with its key path.
pub fn unknown_keys(doc: &toml_edit::ImDocument<String>) -> Vec<(Finding, Option<usize>)> {
    let mut out = Vec::new();
    walk(doc.as_table(), ROOT, "", &mut out);
    out.sort_by_key(|(_, off)| *off);
    out
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn walk(
    t: &dyn TableLike,
    shape: &'static [(&'static str, Shape)],
    prefix: &str,
    out: &mut Vec<(Finding, Option<usize>)>,
) {
    for (k, item) in t.iter() {
        let path = join(prefix, k);
        let Some((_, sub)) = shape.iter().find(|(name, _)| *name == k) else {
            let span = t.get_key_value(k).and_then(|(key, _)| key.span());
            let valid: Vec<&str> = shape.iter().map(|(n, _)| *n).collect();
            out.push((
                Finding::error(
                    path,
                    format!("unknown key `{k}`"),
                    format!("valid keys here: {}", valid.join(", ")),
                ),
                span.map(|s| s.start),
            ));
            continue;
        };
        match (sub, item) {
            (Table(keys), _) => {
                if let Some(tl) = item.as_table_like() {
                    walk(tl, keys, &path, out);
                }
            }
            (Tables(keys), Item::ArrayOfTables(a)) => {
                for (i, el) in a.iter().enumerate() {
                    walk(el, keys, &format!("{path}[{i}]"), out);
                }
            }
            (Tables(keys), Item::Value(Value::Array(a))) => {
                for (i, el) in a.iter().enumerate() {
                    if let Value::InlineTable(it) = el {
                        walk(it, keys, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration using every key once: all must be known here and
    /// accepted by serde (whose structs deny unknown fields).
    const EVERY_KEY: &str = r#"
[node]
name = "n"
role = "hub"
workers = 2
[control]
socket = "/run/x.sock"
mode = "0600"
group = "dmvpn"
[log]
filter = "info"
key_log = "/tmp/k"
[metrics]
listen = "127.0.0.1:9465"
[ike]
identity = "fqdn"
fqdn = "n.example"
answer_aggressive = false
aggressive_mode = false
in_negotiation_limit = 1024
in_negotiation_per_peer = 8
[ike.dpd]
interval = 10
retry_interval = 2
retries = 5
[ike.nat_traversal]
mode = "auto"
keepalive = 20
[[ike.policy]]
priority = 10
encryption = "aes-256"
hash = "sha256"
authentication = "pre-share"
group = 14
lifetime = 86400
[[ike.key]]
peer = "0.0.0.0/0"
key = "abcdefghij"
initiate_mode = "main"
[[ipsec.transform_set]]
name = "t"
transforms = ["esp-aes 256", "esp-sha256-hmac"]
mode = "transport"
[[ipsec.profile]]
name = "p"
transform_sets = ["t"]
lifetime_seconds = 3600
lifetime_kilobytes = 4608000
pfs = 14
idle_time = 300
[[ipsec.manual_sa]]
peer = "172.16.0.2"
transforms = ["esp-gcm 128"]
mode = "transport"
udp_encapsulation = false
inbound = { spi = 4096, encryption_key = "000102030405060708090a0b0c0d0e0f10111213" }
outbound = { spi = 4097, encryption_key = "000102030405060708090a0b0c0d0e0f10111213", authentication_key = "00" }
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.1/24"
address6 = "2001:db8:100::1/64"
mtu = 1400
source = "172.16.0.1"
mode = "gre-multipoint"
destination = "172.16.0.9"
key = 0
protection = "p"
routes = ["10.0.0.0/8"]
[tunnel.nhrp]
network_id = 1
authentication = "secret"
holdtime = 7200
map_multicast_dynamic = true
multicast = ["172.16.0.9"]
redirect = true
shortcut = false
registration_timeout = 60
registration_no_unique = false
if_state = false
registration_prefixes = ["192.168.1.0/24", "10.0.0.0/8"]
allowed_nbma = ["172.16.0.0/24", "172.16.1.9"]
max_send = 100
max_send_interval = 10
max_cache_entries = 50000
max_registrations_per_nbma = 128
[[tunnel.nhrp.nhs]]
address = "192.168.1.2"
nbma = "172.16.0.2"
priority = 0
multicast = true
[[tunnel.nhrp.map]]
address = "192.168.1.2"
nbma = "172.16.0.2"
"#;

    fn count_leaves(shape: &[(&str, Shape)]) -> usize {
        shape
            .iter()
            .map(|(_, s)| match s {
                Value => 1,
                Table(k) | Tables(k) => count_leaves(k),
            })
            .sum()
    }

    #[test]
    fn schema_keys_match_serde() {
        let doc = toml_edit::ImDocument::parse(EVERY_KEY.to_string()).unwrap();
        assert!(unknown_keys(&doc).is_empty());
        // serde knows them too (it rejects unknown fields).
        let _: crate::Config = toml::from_str(EVERY_KEY).unwrap();
        // Every known leaf appears in EVERY_KEY (outbound repeats inbound's 3).
        let leaves = EVERY_KEY
            .lines()
            .filter(|l| l.contains(" = "))
            .map(|l| {
                if l.contains("= {") {
                    l.matches(" = ").count()
                } else {
                    1
                }
            })
            .sum::<usize>();
        // `inbound`/`outbound` are not leaves; inbound has no authentication_key.
        assert_eq!(leaves - 2, count_leaves(ROOT) - 1);
    }
}
