//! Every validation error, with its message and position.

use dmvpn_config::{Config, Severity};

const BASE: &str = r#"[node]
name = "spoke1"
role = "spoke"

[[ike.policy]]
priority = 10

[[ike.key]]
peer = "0.0.0.0/0"
key = "averylongkey"

[[ipsec.transform_set]]
name = "ts"

[[ipsec.profile]]
name = "prof"
transform_sets = ["ts"]

[[tunnel]]
name = "Tunnel0"
address = "192.168.1.2/24"
source = "172.16.0.2"
key = 0
protection = "prof"

[tunnel.nhrp]
network_id = 1
authentication = "cisco123"

[[tunnel.nhrp.nhs]]
address = "192.168.1.1"
nbma = "172.16.0.1"
"#;

const MANUAL: &str = r#"
[[ipsec.manual_sa]]
peer = "172.16.0.1"
transforms = ["esp-aes 256", "esp-sha256-hmac"]
inbound = { spi = 0x1000, encryption_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", authentication_key = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" }
outbound = { spi = 0x1001, encryption_key = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f", authentication_key = "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" }
"#;

/// Errors as `LINE:COL: path: message`.
fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{}:{}: {}: {}", d.line, d.col, d.path, d.message))
            .collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    let loaded = Config::from_str(text, "t.toml").expect("valid");
    loaded
        .warnings
        .iter()
        .map(|d| format!("{}:{}: {}: {}", d.line, d.col, d.path, d.message))
        .collect()
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[track_caller]
fn assert_one(text: &str, want: &str) {
    let got = errors(text);
    assert_eq!(got, vec![want.to_string()], "{text}");
}

#[test]
fn base_is_valid() {
    let loaded = Config::from_str(BASE, "t.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.tunnels[0].mtu, 1400);
    assert_eq!(c.tunnels[0].nhrp.as_ref().unwrap().holdtime, 7200);
    assert_eq!(c.ike.policies[0].encryption.to_string(), "aes-256");
    assert_eq!(c.ike.policies[0].hash.to_string(), "sha256");
    assert_eq!(c.ike.policies[0].group.number(), 14);
    assert_eq!(
        c.ipsec.transform_sets[0]
            .transforms
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>(),
        ["esp-aes 256", "esp-sha256-hmac"]
    );
    assert_eq!(
        c.ipsec.transform_sets[0].mode,
        dmvpn_config::EspMode::Transport
    );
    assert_eq!(c.ipsec.profiles[0].lifetime_seconds, 3600);
    assert_eq!(c.control.mode.0, 0o600);
}

#[test]
fn full_line_format() {
    let e = Config::from_str(&edit("\"cisco123\"", "\"cisco1234\""), "spoke.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "spoke.toml:28:18: tunnel[0].nhrp.authentication: NHRP password must be 1-8 printable ASCII characters, got 9 (IOS accepts at most 8 characters; shorten it on every node)"
    );
}

#[test]
fn unknown_key() {
    let got = errors(&edit("key = 0", "kee = 0"));
    assert_eq!(got, ["23:1: tunnel[0].kee: unknown key `kee`"]);
    let e = Config::from_str(&edit("key = 0", "kee = 0"), "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:23:1: tunnel[0].kee: unknown key `kee` (valid keys here: name, address, address6, mtu, source, mode, destination, key, protection, routes, nhrp)"
    );
}

#[test]
fn unknown_top_level_table() {
    let got = errors(&format!("{BASE}\n[nhrp]\nfoo = 1\n"));
    assert_eq!(got, ["34:2: nhrp: unknown key `nhrp`"]);
}

#[test]
fn all_unknown_keys_are_reported() {
    let text = edit("key = 0", "kee = 0")
        .replace("priority = 10", "priorty = 10")
        .replace("nbma = \"172.16.0.1\"", "nbma = \"172.16.0.1\"\nweight = 3");
    assert_eq!(
        errors(&text),
        [
            "6:1: ike.policy[0].priorty: unknown key `priorty`",
            "23:1: tunnel[0].kee: unknown key `kee`",
            "33:1: tunnel[0].nhrp.nhs[0].weight: unknown key `weight`",
        ]
    );
}

#[test]
fn missing_field() {
    let got = errors(&edit("role = \"spoke\"\n", "\n"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("1:1: node: missing field `role`"),
        "{got:?}"
    );
}

#[test]
fn wrong_type() {
    let got = errors(&edit("key = 0\n", "key = 0\nmtu = \"1400\"\n"));
    assert_eq!(
        got,
        [
            "24:7: tunnel[0].mtu: mtu must be a number between 576 and 9000, without quotes (mtu = 1400)"
        ]
    );
    let got = errors(&edit("key = 0\n", "key = 0\nmtu = 70000\n"));
    assert_eq!(
        got,
        ["24:7: tunnel[0].mtu: mtu must be a number between 576 and 9000, got 70000"]
    );
    let e = Config::from_str(&edit("key = 0\n", "key = \"0\"\n"), "t").unwrap_err();
    assert!(
        e.to_string()
            .ends_with("(check the value's type in docs/configuration.md)"),
        "{e}"
    );
}

#[test]
fn bad_role() {
    let got = errors(&edit("role = \"spoke\"", "role = \"leaf\""));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("3:8: node.role: unknown variant `leaf`"),
        "{got:?}"
    );
}

#[test]
fn bad_address() {
    let got = errors(&edit("192.168.1.2/24", "192.168.1.300/24"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            "21:11: tunnel[0].address: `192.168.1.300` is not an IP address (write e.g. \"192.168.1.2/24\")"
        ),
        "{got:?}"
    );
}

#[test]
fn bad_prefix_length() {
    let got = errors(&edit("192.168.1.2/24", "192.168.1.2/33"));
    assert_eq!(
        got,
        ["21:11: tunnel[0].address: prefix length `/33` must be a number from 0 to 32"]
    );
    let got = errors(&edit("192.168.1.2/24", "192.168.1.2"));
    assert_eq!(
        got,
        ["21:11: tunnel[0].address: address needs a prefix length, e.g. \"192.168.1.2/24\""]
    );
}

#[test]
fn bad_nbma() {
    let got = errors(&edit("nbma = \"172.16.0.1\"", "nbma = \"172.16.0\""));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("32:8: tunnel[0].nhrp.nhs[0].nbma: invalid IP address syntax"),
        "{got:?}"
    );
}

#[test]
fn bad_source() {
    let got = errors(&edit(
        "source = \"172.16.0.2\"",
        "source = \"FastEthernet0/0\"",
    ));
    assert_eq!(
        got,
        [
            "22:10: tunnel[0].source: `FastEthernet0/0` is neither an IP address nor a Linux interface name (use e.g. \"172.16.0.1\" or \"eth0\")"
        ]
    );
}

#[test]
fn bad_dh_group() {
    let got = errors(&edit("priority = 10\n", "priority = 10\ngroup = 3\n"));
    assert_eq!(
        got,
        ["7:9: ike.policy[0].group: unsupported DH group 3 (use 1, 2, 5, 14, 15, 16, 19 or 20)"]
    );
}

#[test]
fn bad_transform_name() {
    let got = errors(&edit(
        "name = \"ts\"\n",
        "name = \"ts\"\ntransforms = [\"esp-null\"]\n",
    ));
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .starts_with("14:14: ipsec.transform_set[0].transforms: unknown transform `esp-null`"),
        "{got:?}"
    );
}

#[test]
fn duplicate_policy_priority() {
    assert_one(
        &format!("{BASE}\n[[ike.policy]]\npriority = 10\n"),
        "35:12: ike.policy[1].priority: duplicate policy priority 10 (also ike.policy[0])",
    );
}

#[test]
fn policy_priority_and_lifetime_range() {
    assert_one(
        &edit("priority = 10\n", "priority = 0\n"),
        "6:12: ike.policy[0].priority: priority 0 out of range",
    );
    assert_one(
        &edit("priority = 10\n", "priority = 10\nlifetime = 30\n"),
        "7:12: ike.policy[0].lifetime: lifetime 30 out of range",
    );
}

#[test]
fn profile_missing_transform_set() {
    assert_one(
        &edit("transform_sets = [\"ts\"]", "transform_sets = [\"nope\"]"),
        "17:19: ipsec.profile[0].transform_sets[0]: transform set `nope` is not defined",
    );
}

#[test]
fn profile_lifetime_range() {
    assert_one(
        &edit(
            "transform_sets = [\"ts\"]",
            "transform_sets = [\"ts\"]\nlifetime_seconds = 60",
        ),
        "18:20: ipsec.profile[0].lifetime_seconds: lifetime 60 s out of range",
    );
}

#[test]
fn tunnel_missing_profile() {
    assert_one(
        &edit("protection = \"prof\"", "protection = \"nope\""),
        "24:14: tunnel[0].protection: IPsec profile `nope` is not defined",
    );
}

#[test]
fn nhrp_password_too_long() {
    assert_one(
        &edit("\"cisco123\"", "\"cisco1234\""),
        "28:18: tunnel[0].nhrp.authentication: NHRP password must be 1-8 printable ASCII characters, got 9",
    );
}

#[test]
fn spoke_without_nhs() {
    let text = BASE
        .split("[[tunnel.nhrp.nhs]]")
        .next()
        .unwrap()
        .to_string();
    assert_one(
        &text,
        "26:1: tunnel[0].nhrp.nhs: a spoke needs at least one NHS",
    );
}

#[test]
fn nhs_without_nbma() {
    assert_one(
        &edit("nbma = \"172.16.0.1\"\n", ""),
        "30:1: tunnel[0].nhrp.nhs[0].nbma: no NBMA address known for NHS 192.168.1.1",
    );
    // A static map supplies it.
    let ok = format!(
        "{}\n[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n",
        edit("nbma = \"172.16.0.1\"\n", "")
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
}

#[test]
fn nbma_family_mismatch() {
    assert_one(
        &edit("nbma = \"172.16.0.1\"", "nbma = \"2001:db8::1\""),
        "32:8: tunnel[0].nhrp.nhs[0].nbma: NBMA address 2001:db8::1 is IPv6 but the tunnel source 172.16.0.2 is IPv4",
    );
}

#[test]
fn multipoint_without_nhrp() {
    let text = BASE.split("[tunnel.nhrp]").next().unwrap().to_string();
    assert_one(&text, "19:1: tunnel[0]: a multipoint tunnel needs NHRP");
}

#[test]
fn point_to_point_needs_destination() {
    let text = BASE
        .split("[tunnel.nhrp]")
        .next()
        .unwrap()
        .replace("key = 0\n", "mode = \"gre\"\n");
    assert_one(
        &text,
        "23:8: tunnel[0].mode: a point-to-point tunnel needs a destination",
    );
    let ok = text.replace(
        "mode = \"gre\"",
        "mode = \"gre\"\ndestination = \"172.16.0.1\"",
    );
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
}

#[test]
fn protected_tunnel_without_key() {
    let text = edit(
        "[[ike.key]]\npeer = \"0.0.0.0/0\"\nkey = \"averylongkey\"\n",
        "",
    );
    assert_one(
        &text,
        "21:14: tunnel[0].protection: the tunnel is protected but no pre-shared key is configured",
    );
}

#[test]
fn duplicate_psk_peer() {
    assert_one(
        &format!("{BASE}\n[[ike.key]]\npeer = \"0.0.0.0/0\"\nkey = \"anotherlongkey\"\n"),
        "35:8: ike.key[1].peer: duplicate key for 0.0.0.0/0",
    );
}

#[test]
fn psk_peers_accept_hosts_and_wildcards() {
    let text = format!(
        "{BASE}\n[[ike.key]]\npeer = \"::/0\"\nkey = \"anotherlongkey\"\n\n[[ike.key]]\npeer = \"172.16.0.9\"\nkey = \"anotherlongkey\"\n"
    );
    let c = Config::from_str(&text, "t").unwrap().config;
    assert_eq!(c.ike.keys[1].peer.to_string(), "::/0");
    assert_eq!(c.ike.keys[2].peer.to_string(), "172.16.0.9/32");
    assert_one(
        &edit("0.0.0.0/0", "10.1.2.3/8"),
        "9:8: ike.key[0].peer: prefix 10.1.2.3/8 has host bits set",
    );
}

#[test]
fn invalid_transform_combination() {
    assert_one(
        &edit(
            "name = \"ts\"\n",
            "name = \"ts\"\ntransforms = [\"esp-aes\", \"esp-3des\"]\n",
        ),
        "14:14: ipsec.transform_set[0].transforms: invalid transform combination [esp-aes 128, esp-3des]",
    );
    assert_one(
        &edit(
            "name = \"ts\"\n",
            "name = \"ts\"\ntransforms = [\"esp-gcm 256\", \"esp-sha-hmac\"]\n",
        ),
        "14:14: ipsec.transform_set[0].transforms: invalid transform combination [esp-gcm 256, esp-sha-hmac]",
    );
}

#[test]
fn manual_sa_valid() {
    let c = Config::from_str(&format!("{BASE}{MANUAL}"), "t")
        .unwrap()
        .config;
    let sa = &c.ipsec.manual_sas[0];
    assert_eq!(sa.inbound.spi, 0x1000);
    assert_eq!(sa.outbound.encryption_key.bytes().unwrap()[0], 0x40);
}

#[test]
fn manual_sa_wrong_key_length() {
    let text = format!("{BASE}{MANUAL}").replacen(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "0001020304050607",
        1,
    );
    let got = errors(&text);
    assert_eq!(
        got,
        [
            "37:44: ipsec.manual_sa[0].inbound.encryption_key: esp-aes 256 needs a 32-byte key, got 8 bytes"
        ]
    );
}

#[test]
fn manual_sa_bad_hex() {
    let text = format!("{BASE}{MANUAL}").replacen("202122", "2g2122", 1);
    let got = errors(&text);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("37:133: ipsec.manual_sa[0].inbound.authentication_key: invalid hex key: `g` is not a hex digit"),
        "{got:?}"
    );
}

#[test]
fn manual_sa_gcm_key_with_salt() {
    let gcm = format!("{BASE}{MANUAL}").replace(
        "[\"esp-aes 256\", \"esp-sha256-hmac\"]",
        "[\"esp-gcm 128\"]",
    );
    let got = errors(&gcm);
    assert!(got.contains(&"37:44: ipsec.manual_sa[0].inbound.encryption_key: esp-gcm 128 needs a 20-byte key (key + 4-byte salt), got 32 bytes".to_string()), "{got:?}");
    assert!(got.contains(&"37:133: ipsec.manual_sa[0].inbound.authentication_key: no integrity transform uses this key".to_string()), "{got:?}");
}

#[test]
fn manual_sa_weak_des_keys() {
    let with = |transforms: &str, key: &str| {
        format!("{BASE}{MANUAL}")
            .replace("[\"esp-aes 256\", \"esp-sha256-hmac\"]", transforms)
            .replacen(
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                key,
                1,
            )
    };
    let des = "[\"esp-des\", \"esp-sha256-hmac\"]";
    let tdes = "[\"esp-3des\", \"esp-sha256-hmac\"]";
    // The other SA direction keeps its 32-byte key: count only the inbound errors.
    let inbound = |text: &str| -> Vec<String> {
        errors(text)
            .into_iter()
            .filter(|e| e.contains("inbound.encryption_key"))
            .collect()
    };
    assert_eq!(
        inbound(&with(des, "0101010101010101")),
        [
            "37:44: ipsec.manual_sa[0].inbound.encryption_key: esp-des key is a DES weak or semi-weak key"
        ]
    );
    // Parity bits do not matter: 00.. is the weak key 01.. for DES.
    assert_eq!(inbound(&with(des, "e001e001f101f100")).len(), 1);
    assert_eq!(
        inbound(&with(des, "0123456789abcdef")),
        Vec::<String>::new()
    );
    assert_eq!(
        inbound(&with(
            tdes,
            "0123456789abcdef0123456789abcdef89abcdef01234567"
        )),
        [
            "37:44: ipsec.manual_sa[0].inbound.encryption_key: esp-3des key is a 3DES key whose first two or last two parts are equal (that is single DES)"
        ]
    );
    // k1 == k3 (two-key 3DES) stays allowed.
    assert_eq!(
        inbound(&with(
            tdes,
            "0123456789abcdef89abcdef012345670123456789abcdef"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn manual_sa_missing_auth_key() {
    let text = format!("{BASE}{MANUAL}").replacen(", authentication_key = \"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\"", "", 1);
    assert_one(
        &text,
        "37:11: ipsec.manual_sa[0].inbound: esp-sha256-hmac needs an authentication_key",
    );
}

#[test]
fn manual_sa_duplicate_and_reserved_spi() {
    let two = format!("{BASE}{MANUAL}{}", MANUAL.replace("0x1001", "0x1002"));
    assert_one(
        &two,
        "43:19: ipsec.manual_sa[1].inbound.spi: duplicate inbound SPI 0x1000 (also ipsec.manual_sa[0])",
    );
    let reserved = format!("{BASE}{MANUAL}").replacen("0x1000", "0x10", 1);
    assert_one(
        &reserved,
        "37:19: ipsec.manual_sa[0].inbound.spi: SPI 16 is reserved",
    );
}

#[test]
fn control_socket_must_be_absolute() {
    assert_one(
        &format!("{BASE}\n[control]\nsocket = \"dmvpnd.sock\"\n"),
        "35:10: control.socket: `dmvpnd.sock` is not an absolute path",
    );
}

#[test]
fn bad_file_mode() {
    let got = errors(&format!("{BASE}\n[control]\nmode = \"0999\"\n"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("35:8: control.mode: `0999` is not an octal file mode"),
        "{got:?}"
    );
}

#[test]
fn duplicate_tunnel_name() {
    let second = "\n[[tunnel]]\nname = \"Tunnel0\"\naddress = \"192.168.2.2/24\"\nsource = \"172.16.0.3\"\nmode = \"gre\"\ndestination = \"172.16.0.9\"\n";
    assert_eq!(
        errors(&format!("{BASE}{second}")),
        ["35:8: tunnel[1].name: duplicate tunnel name `Tunnel0`"]
    );
}

#[test]
fn tunnels_sharing_source_and_key() {
    let second = "\n[[tunnel]]\nname = \"Tunnel1\"\naddress = \"192.168.2.2/24\"\nsource = \"172.16.0.2\"\nkey = 0\n[tunnel.nhrp]\nnetwork_id = 2\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.2.1\"\nnbma = \"172.16.0.1\"\n";
    assert_eq!(
        errors(&format!("{BASE}{second}")),
        [
            SHARED_SOURCE,
            "38:7: tunnel[1].key: tunnels `Tunnel0` and `Tunnel1` (tunnel[0]) share source and GRE key; inbound packets cannot be told apart"
        ]
    );
    let other_key = format!("{BASE}{}", second.replace("key = 0", "key = 1"));
    assert_eq!(errors(&other_key), [SHARED_SOURCE]);
}

const SHARED_SOURCE: &str = "37:10: tunnel[1].source: tunnels `Tunnel0` (tunnel[0]) and `Tunnel1` share source 172.16.0.2; dmvpnd runs each of several tunnels on its own source address";

/// Dual-cloud: a second tunnel on its own source address or interface,
/// NHRP network and key is accepted; a shared source or manual SAs
/// beside it are not (yet).
#[test]
fn several_tunnels() {
    let second = "\n[[tunnel]]\nname = \"Tunnel1\"\naddress = \"192.168.2.2/24\"\nsource = \"172.16.1.2\"\nkey = 1\nprotection = \"prof\"\n[tunnel.nhrp]\nnetwork_id = 2\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.2.1\"\nnbma = \"172.16.1.1\"\n";
    let two = format!("{BASE}{second}");
    assert_eq!(errors(&two), Vec::<String>::new());
    let c = Config::from_str(&two, "t.toml").unwrap().config;
    assert_eq!(c.for_tunnel(1).tunnels, [c.tunnels[1].clone()]);
    assert_eq!(c.for_tunnel(1).ike, c.ike);
    // An interface source beside an address source, or two interfaces:
    // each tunnel still has its own source.
    let ifsrc = two.replace("source = \"172.16.1.2\"", "source = \"eth1\"");
    assert_eq!(errors(&ifsrc), Vec::<String>::new());
    let two_ifs = ifsrc.replacen("source = \"172.16.0.2\"", "source = \"eth0\"", 1);
    assert_eq!(errors(&two_ifs), Vec::<String>::new());
    // One interface followed by both is one source shared.
    let same_if = ifsrc.replacen("source = \"172.16.0.2\"", "source = \"eth1\"", 1);
    assert_eq!(
        errors(&same_if),
        [
            "37:10: tunnel[1].source: tunnels `Tunnel0` (tunnel[0]) and `Tunnel1` both follow interface eth1; dmvpnd runs each of several tunnels on its own source"
        ]
    );
    // A route into one tunnel covering the other's underlay, or routed
    // into both.
    let covering = two.replacen("key = 1\n", "key = 1\nroutes = [\"172.16.0.0/24\"]\n", 1);
    assert_eq!(
        errors(&covering),
        [
            "39:11: tunnel[1].routes[0]: route 172.16.0.0/24 covers 172.16.0.2, the NBMA address of the source of `Tunnel0` (tunnel[0]): the tunnel's own packets would be routed into the tunnel"
        ]
    );
    let both = two
        .replacen("key = 0\n", "key = 0\nroutes = [\"10.9.0.0/16\"]\n", 1)
        .replacen("key = 1\n", "key = 1\nroutes = [\"10.9.0.0/16\"]\n", 1);
    let got = errors(&both);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with("tunnel[1].routes[0]: route 10.9.0.0/16 is also in `routes` of `Tunnel0` (tunnel[0]): the kernel would keep only one"),
        "{got:?}"
    );
    // A route into Tunnel1 over Tunnel0's subnet.
    let over = two.replacen("key = 1\n", "key = 1\nroutes = [\"192.168.0.0/16\"]\n", 1);
    assert_eq!(
        errors(&over),
        [
            "39:11: tunnel[1].routes[0]: route 192.168.0.0/16 overlaps 192.168.1.0/24, the subnet of `Tunnel0` (tunnel[0]): it would take that tunnel's own traffic"
        ]
    );
    // Names that differ only by case.
    let case = two.replace("name = \"Tunnel1\"", "name = \"tunnel0\"");
    assert_eq!(
        errors(&case),
        ["35:8: tunnel[1].name: tunnel names `Tunnel0` and `tunnel0` differ only by case"]
    );
    let manual = format!("{two}{MANUAL}");
    let got = errors(&manual);
    assert!(
        got.iter().any(|e| e
            .ends_with("ipsec.manual_sa[0]: manual SAs are not supported with several tunnels")),
        "{got:?}"
    );
}

#[test]
fn route_with_host_bits() {
    assert_one(
        &edit("key = 0\n", "key = 0\nroutes = [\"10.3.0.1/24\"]\n"),
        "24:11: tunnel[0].routes[0]: route 10.3.0.1/24 has host bits set",
    );
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let text = edit("\"cisco123\"", "\"cisco1234\"").replace("[\"ts\"]", "[\"nope\"]");
    let got = errors(&text);
    assert_eq!(got.len(), 2, "{got:?}");
    // In file order.
    assert!(got[0].starts_with("17:19:"));
    assert!(got[1].starts_with("28:18:"));
}

#[test]
fn weak_choices_are_warned_about() {
    let text = edit(
        "priority = 10\n",
        "priority = 10\nencryption = \"des\"\nhash = \"md5\"\ngroup = 2\n",
    )
    .replace(
        "name = \"ts\"\n",
        "name = \"ts\"\ntransforms = [\"esp-des\", \"esp-md5-hmac\"]\n",
    );
    let w = warnings(&text);
    assert_eq!(
        w,
        [
            "7:14: ike.policy[0].encryption: des is weak",
            "8:8: ike.policy[0].hash: md5 is weak",
            "9:9: ike.policy[0].group: DH group 2 is weak",
            "17:15: ipsec.transform_set[0].transforms[0]: esp-des is weak",
            "17:26: ipsec.transform_set[0].transforms[1]: esp-md5-hmac is weak",
        ]
    );
    // 3DES warns as DES does; SHA-1 is old but not flagged.
    let tdes = edit(
        "priority = 10\n",
        "priority = 10\nencryption = \"3des\"\nhash = \"sha\"\n",
    )
    .replace(
        "name = \"ts\"\n",
        "name = \"ts\"\ntransforms = [\"esp-3des\", \"esp-sha-hmac\"]\n",
    );
    assert_eq!(
        warnings(&tdes),
        [
            "7:14: ike.policy[0].encryption: 3des is weak",
            "16:15: ipsec.transform_set[0].transforms[0]: esp-3des is weak",
        ]
    );
    let ok = edit(
        "priority = 10\n",
        "priority = 10\nencryption = \"aes-256\"\nhash = \"sha\"\n",
    );
    assert!(warnings(&ok).is_empty());
}

#[test]
fn aggressive_mode_and_key_log_warn() {
    let text = format!("{BASE}\n[log]\nkey_log = \"/tmp/esp.keys\"\n").replace(
        "[[ike.policy]]",
        "[ike]\nanswer_aggressive = true\n\n[[ike.policy]]",
    );
    let w = warnings(&text);
    assert_eq!(
        w,
        [
            "6:21: ike.answer_aggressive: Aggressive Mode sends a PSK-derived hash anyone can attack offline",
            "38:11: log.key_log: ESP keys will be written to a file",
        ]
    );
}

/// The old key still means "answer Aggressive Mode", with a warning that
/// names the new keys; it never silently disagrees with them.
#[test]
fn deprecated_aggressive_mode_is_answer_aggressive() {
    let text = BASE.replace(
        "[[ike.policy]]",
        "[ike]\naggressive_mode = true\n\n[[ike.policy]]",
    );
    let loaded = Config::from_str(&text, "t.toml").expect("valid");
    assert!(loaded.config.ike.answer_aggressive);
    assert!(
        loaded
            .config
            .ike
            .keys
            .iter()
            .all(|k| k.initiate_mode == dmvpn_config::InitiateMode::Main)
    );
    let w = warnings(&text);
    assert_eq!(
        w,
        [
            "6:19: ike.aggressive_mode: aggressive_mode is deprecated; it is read as answer_aggressive = true",
            "6:19: ike.aggressive_mode: Aggressive Mode sends a PSK-derived hash anyone can attack offline",
        ]
    );
    let help = Config::from_str(&text, "t.toml").unwrap().warnings[0]
        .help
        .clone();
    assert!(
        help.contains("answer_aggressive") && help.contains("initiate_mode"),
        "{help}"
    );
    // false stays false.
    let off = BASE.replace(
        "[[ike.policy]]",
        "[ike]\naggressive_mode = false\n\n[[ike.policy]]",
    );
    assert!(
        !Config::from_str(&off, "t.toml")
            .unwrap()
            .config
            .ike
            .answer_aggressive
    );
    // Both keys, disagreeing: an error, not a guess.
    let both = BASE.replace(
        "[[ike.policy]]",
        "[ike]\naggressive_mode = true\nanswer_aggressive = false\n\n[[ike.policy]]",
    );
    assert_one(
        &both,
        "6:19: ike.aggressive_mode: aggressive_mode = true contradicts answer_aggressive = false",
    );
}

#[test]
fn in_negotiation_limits() {
    let with = |extra: &str| {
        BASE.replace(
            "[[ike.policy]]",
            &format!("[ike]\n{extra}\n\n[[ike.policy]]"),
        )
    };
    let ok = Config::from_str(
        &with("in_negotiation_limit = 64\nin_negotiation_per_peer = 4"),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(
        (
            ok.config.ike.in_negotiation_limit,
            ok.config.ike.in_negotiation_per_peer
        ),
        (64, 4)
    );
    assert_one(
        &with("in_negotiation_limit = 0"),
        "6:24: ike.in_negotiation_limit: in-negotiation limit 0 out of range",
    );
    assert_one(
        &with("in_negotiation_limit = 4\nin_negotiation_per_peer = 5"),
        "7:27: ike.in_negotiation_per_peer: per-address in-negotiation limit 5 out of range",
    );
}

#[test]
fn initiate_mode_per_key() {
    let text = edit(
        "key = \"averylongkey\"\n",
        "key = \"averylongkey\"\ninitiate_mode = \"aggressive\"\n",
    );
    let loaded = Config::from_str(&text, "t.toml").expect("valid");
    assert_eq!(
        loaded.config.ike.keys[0].initiate_mode,
        dmvpn_config::InitiateMode::Aggressive
    );
    assert!(!loaded.config.ike.answer_aggressive);
    assert_eq!(
        warnings(&text),
        [
            "11:17: ike.key[0].initiate_mode: Aggressive Mode with 0.0.0.0/0 exposes a PSK-derived hash to anyone on the path"
        ]
    );
    let bad = edit(
        "key = \"averylongkey\"\n",
        "key = \"averylongkey\"\ninitiate_mode = \"fast\"\n",
    );
    let e = errors(&bad);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("ike.key[0].initiate_mode"), "{e:?}");
}

#[test]
fn secrets_in_readable_file_warn() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, BASE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let l = Config::load(&path).unwrap();
    assert_eq!(l.warnings.len(), 1);
    let w = l.warnings[0].to_string();
    let want = format!(
        "1:1: warning: file holds keys and {} has mode 0644: readable by group or others (chmod 600 {})",
        path.display(),
        path.display()
    );
    assert!(w.ends_with(&want), "{w}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn toml_syntax_error_is_located() {
    let got = errors(&edit("network_id = 1", "network_id = "));
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("27:14: "), "{got:?}");
}

#[test]
fn examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["hub.toml", "spoke1.toml", "spoke2.toml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let l = Config::from_str(&text, name).unwrap_or_else(|e| panic!("{e}"));
        let t = &l.config.tunnels[0];
        assert_eq!(t.key, Some(0));
        assert_eq!(t.nhrp.as_ref().unwrap().network_id, 1);
        assert!(t.nhrp.as_ref().unwrap().authentication.is_some());
    }
}

/// The remaining checks, each with its exact message and position.
#[test]
fn every_other_error() {
    let app = |extra: &str| format!("{BASE}{extra}");
    let ipsec_vti = edit(
        "key = 0\n",
        "key = 0\nmode = \"ipsec\"\ndestination = \"172.16.0.1\"\n",
    );
    let no_prot = BASE.split("[tunnel.nhrp]").next().unwrap().replace(
        "key = 0\nprotection = \"prof\"\n",
        "mode = \"ipsec\"\ndestination = \"172.16.0.1\"\n",
    );
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            edit("name = \"spoke1\"", "name = \"spoke 1\""),
            vec!["2:8: node.name: `spoke 1` is not a valid host name"],
        ),
        (
            edit("192.168.1.2/24", "192.168.1.2/32"),
            vec![
                "21:11: tunnel[0].address: host prefix /32 leaves no room for other tunnel members",
            ],
        ),
        (
            edit("key = 0\n", "key = 0\nmtu = 100\n"),
            vec!["24:7: tunnel[0].mtu: mtu must be a number between 576 and 9000, got 100"],
        ),
        (
            edit("key = 0\n", "key = 0\ndestination = \"172.16.0.1\"\n"),
            vec!["24:15: tunnel[0].destination: a multipoint tunnel has no fixed destination"],
        ),
        (
            edit(
                "key = 0\n",
                "key = 0\nmode = \"gre\"\ndestination = \"2001:db8::1\"\n",
            ),
            vec!["25:15: tunnel[0].destination: destination is IPv6 but source 172.16.0.2 is IPv4"],
        ),
        (
            ipsec_vti,
            vec![
                "23:7: tunnel[0].key: a GRE key has no meaning on an IPsec VTI",
                "24:8: tunnel[0].mode: IPsec virtual tunnel interfaces (mode = \"ipsec\") are not supported",
                "28:1: tunnel[0].nhrp: NHRP needs GRE; an IPsec VTI cannot carry it",
            ],
        ),
        (
            no_prot,
            vec![
                "19:1: tunnel[0].protection: mode = \"ipsec\" needs an IPsec profile",
                "23:8: tunnel[0].mode: IPsec virtual tunnel interfaces (mode = \"ipsec\") are not supported",
            ],
        ),
        (
            edit("network_id = 1", "network_id = 0"),
            vec!["27:14: tunnel[0].nhrp.network_id: network_id must not be 0"],
        ),
        (
            edit("network_id = 1\n", "network_id = 1\nholdtime = 70000\n"),
            vec!["28:12: tunnel[0].nhrp.holdtime: holdtime 70000 out of range"],
        ),
        (
            edit(
                "network_id = 1\n",
                "network_id = 1\nregistration_timeout = 0\n",
            ),
            vec!["28:24: tunnel[0].nhrp.registration_timeout: registration_timeout 0 out of range"],
        ),
        (
            edit(
                "network_id = 1\n",
                "network_id = 1\nmulticast = [\"2001:db8::9\"]\n",
            ),
            vec![
                "28:14: tunnel[0].nhrp.multicast[0]: NBMA address 2001:db8::9 is IPv6 but the tunnel source 172.16.0.2 is IPv4",
            ],
        ),
        (
            app("\n[[tunnel.nhrp.map]]\naddress = \"2001:db8::1\"\nnbma = \"172.16.0.1\"\n"),
            vec![
                "35:11: tunnel[0].nhrp.map[0].address: 2001:db8::1 is an IPv6 tunnel address but the tunnel has no IPv6 address",
            ],
        ),
        (
            app(
                "\n[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n\n[[tunnel.nhrp.map]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n",
            ),
            vec!["39:11: tunnel[0].nhrp.map[1].address: duplicate static map for 192.168.1.1"],
        ),
        (
            edit("address = \"192.168.1.1\"", "address = \"192.168.1.2\""),
            vec!["31:11: tunnel[0].nhrp.nhs[0].address: the NHS is this node's own tunnel address"],
        ),
        (
            app("\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.1.1\"\nnbma = \"172.16.0.1\"\n"),
            vec!["35:11: tunnel[0].nhrp.nhs[1].address: duplicate NHS 192.168.1.1"],
        ),
        (
            edit("key = \"averylongkey\"", "key = \"\""),
            vec!["10:7: ike.key[0].key: empty pre-shared key"],
        ),
        (
            edit("[[ike.policy]]", "[ike]\nfqdn = \"a b\"\n\n[[ike.policy]]"),
            vec!["6:8: ike.fqdn: `a b` is not a domain name"],
        ),
        (
            app("\n[ike.dpd]\ninterval = 5\n"),
            vec!["35:12: ike.dpd.interval: DPD interval 5 out of range"],
        ),
        (
            app("\n[ike.dpd]\ninterval = 10\nretry_interval = 1\nretries = 0\n"),
            vec![
                "36:18: ike.dpd.retry_interval: DPD retry interval 1 out of range",
                "37:11: ike.dpd.retries: DPD retries 0 out of range",
            ],
        ),
        (
            app("\n[ike.nat_traversal]\nkeepalive = 2\n"),
            vec!["35:13: ike.nat_traversal.keepalive: NAT keepalive 2 out of range"],
        ),
        (
            edit("[[ike.policy]]\npriority = 10\n", "[ike]\npolicy = []\n"),
            vec!["6:10: ike.policy: no ISAKMP policy"],
        ),
        (
            app("\n[[ipsec.transform_set]]\nname = \"ts\"\n"),
            vec!["35:8: ipsec.transform_set[1].name: duplicate or empty transform set name `ts`"],
        ),
        (
            app("\n[[ipsec.profile]]\nname = \"prof\"\ntransform_sets = [\"ts\"]\n"),
            vec!["35:8: ipsec.profile[1].name: duplicate or empty profile name `prof`"],
        ),
        (
            edit("transform_sets = [\"ts\"]", "transform_sets = []"),
            vec!["17:18: ipsec.profile[0].transform_sets: no transform set"],
        ),
        (
            edit(
                "transform_sets = [\"ts\"]",
                "transform_sets = [\"ts\"]\nlifetime_kilobytes = 100",
            ),
            vec!["18:22: ipsec.profile[0].lifetime_kilobytes: lifetime 100 KB out of range"],
        ),
        (
            edit(
                "transform_sets = [\"ts\"]",
                "transform_sets = [\"ts\"]\nidle_time = 10",
            ),
            vec!["18:13: ipsec.profile[0].idle_time: idle time 10 out of range"],
        ),
        (
            app("\n[control]\ngroup = \"a b\"\n"),
            vec!["35:9: control.group: `a b` is not a group name"],
        ),
        (
            app("\n[log]\nfilter = \" \"\n"),
            vec!["35:10: log.filter: empty log filter"],
        ),
        (
            app("\n[log]\nkey_log = \"esp.keys\"\n"),
            vec!["35:11: log.key_log: `esp.keys` is not an absolute path"],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(&text), want, "{text}");
    }
}

#[test]
fn every_other_warning() {
    let cases: Vec<(String, &str)> = vec![
        (
            edit("address = \"192.168.1.1\"", "address = \"192.168.2.1\""),
            "31:11: tunnel[0].nhrp.nhs[0].address: NHS 192.168.2.1 is outside the tunnel subnet 192.168.1.0/24",
        ),
        (
            edit("key = \"averylongkey\"", "key = \"short\""),
            "10:7: ike.key[0].key: pre-shared key shorter than 8 characters",
        ),
        (
            edit(
                "name = \"ts\"\n",
                "name = \"ts\"\ntransforms = [\"esp-aes 256\"]\n",
            ),
            "14:14: ipsec.transform_set[0].transforms: ESP without integrity protection",
        ),
        (
            edit(
                "transform_sets = [\"ts\"]",
                "transform_sets = [\"ts\"]\npfs = 2",
            ),
            "18:7: ipsec.profile[0].pfs: PFS group 2 is weak",
        ),
        (
            format!("{BASE}\n[control]\nmode = \"0666\"\n"),
            "35:8: control.mode: mode 0666 lets every local user control the daemon",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(warnings(&text), [want], "{text}");
    }
}

/// BASE as a hub (no NHS), with `protection` and `[tunnel.nhrp]` extras.
fn hub(protected: bool, nhrp_extra: &str) -> String {
    let mut t = BASE
        .split("[[tunnel.nhrp.nhs]]")
        .next()
        .unwrap()
        .replace("role = \"spoke\"", "role = \"hub\"")
        .replace("192.168.1.2/24", "192.168.1.1/24");
    if !protected {
        t = t.replace("protection = \"prof\"\n", "");
    }
    t.push_str(nhrp_extra);
    t
}

#[test]
fn unprotected_hub_needs_allowed_nbma_and_authentication() {
    let fix = "(add protection = \"<ipsec profile>\" (IOS `tunnel protection ipsec profile`), or set both allowed_nbma (the spokes' NBMA prefixes) and authentication)";
    let no_auth = hub(false, "").replace("authentication = \"cisco123\"\n", "");
    assert_one(
        &no_auth,
        "25:1: tunnel[0].nhrp: a hub on a tunnel without IPsec protection takes NHRP from anyone: neither allowed_nbma nor authentication is set",
    );
    assert_one(
        &hub(false, ""),
        "25:1: tunnel[0].nhrp: a hub on a tunnel without IPsec protection takes NHRP from anyone: allowed_nbma is not set",
    );
    assert_one(
        &format!("{no_auth}allowed_nbma = [\"172.16.0.0/24\"]\n"),
        "25:1: tunnel[0].nhrp: a hub on a tunnel without IPsec protection takes NHRP from anyone: authentication is not set",
    );
    let e = Config::from_str(&hub(false, ""), "t.toml").unwrap_err();
    assert!(e.to_string().contains(fix), "{e}");
    // Both set, or protection: fine. A spoke is not an NHS.
    assert!(
        errors(&hub(
            false,
            "allowed_nbma = [\"172.16.0.0/24\", \"172.16.1.9\"]\n"
        ))
        .is_empty()
    );
    assert!(errors(&hub(true, "")).is_empty());
    assert!(errors(&edit("protection = \"prof\"\n", "")).is_empty());
    // Open to everyone: allowed, but warned about.
    let open = hub(false, "allowed_nbma = [\"0.0.0.0/0\"]\n");
    assert_eq!(
        warnings(&open),
        [
            "29:17: tunnel[0].nhrp.allowed_nbma[0]: 0.0.0.0/0 accepts NHRP from any source on a tunnel without IPsec"
        ]
    );
}

#[test]
fn allowed_nbma_and_registration_prefixes_are_checked() {
    assert_one(
        &hub(false, "allowed_nbma = []\n"),
        "29:16: tunnel[0].nhrp.allowed_nbma: an empty list refuses NHRP from every spoke",
    );
    assert_one(
        &hub(true, "allowed_nbma = [\"172.16.0.1/24\"]\n"),
        "30:17: tunnel[0].nhrp.allowed_nbma[0]: prefix 172.16.0.1/24 has host bits set",
    );
    assert_one(
        &hub(true, "allowed_nbma = [\"2001:db8::/32\"]\n"),
        "30:17: tunnel[0].nhrp.allowed_nbma[0]: 2001:db8::/32 is IPv6 but the tunnel source 172.16.0.2 is IPv4",
    );
    assert!(matches!(
        Config::from_str(&hub(true, "allowed_nbma = [\"nope\"]\n"), "t.toml"),
        Err(e) if e.to_string().contains("`nope` is not an address or prefix")
    ));
    assert_one(
        &hub(true, "registration_prefixes = []\n"),
        "30:25: tunnel[0].nhrp.registration_prefixes: an empty list refuses every registration",
    );
    assert_one(
        &hub(
            true,
            "registration_prefixes = [\"192.168.1.0/24\", \"2001:db8::/32\"]\n",
        ),
        "30:44: tunnel[0].nhrp.registration_prefixes[1]: 2001:db8::/32 is not an IPv4 prefix",
    );
    assert_eq!(
        warnings(&hub(true, "registration_prefixes = [\"10.0.0.0/8\"]\n")),
        [
            "30:25: tunnel[0].nhrp.registration_prefixes: the tunnel subnet 192.168.1.0/24 is not listed"
        ]
    );
    assert!(
        errors(&hub(
            true,
            "registration_prefixes = [\"192.168.1.0/24\", \"10.0.0.0/8\"]\n"
        ))
        .is_empty()
    );
    assert_one(
        &hub(true, "max_cache_entries = 0\n"),
        "30:21: tunnel[0].nhrp.max_cache_entries: max_cache_entries 0 out of range",
    );
    assert_one(
        &hub(true, "max_send = 0\n"),
        "30:12: tunnel[0].nhrp.max_send: max_send 0 out of range",
    );
    assert_one(
        &hub(true, "max_send_interval = 5\n"),
        "30:21: tunnel[0].nhrp.max_send_interval: max_send_interval 5 out of range",
    );
    assert!(errors(&hub(true, "max_send = 5000\nmax_send_interval = 10\n")).is_empty());
    assert_eq!(
        warnings(&format!("{BASE}\n")).len(),
        0,
        "registration_no_unique absent on a spoke"
    );
}

#[test]
fn hub_routes_without_next_hop_warn() {
    let text = edit("role = \"spoke\"", "role = \"hub\"").replace(
        "protection = \"prof\"\n",
        "protection = \"prof\"\nroutes = [\"10.2.0.0/24\"]\n",
    );
    let w = warnings(&text);
    assert!(
        w.iter()
            .any(|l| l.contains("tunnel[0].routes: a hub has no NHS to send these prefixes to")),
        "{w:?}"
    );
    // On a spoke they go to the NHS: no warning.
    let spoke = BASE.replace(
        "protection = \"prof\"\n",
        "protection = \"prof\"\nroutes = [\"10.2.0.0/24\"]\n",
    );
    assert!(!warnings(&spoke).iter().any(|l| l.contains("routes")));
}

/// What dmvpnd cannot run is refused by `--check`, each with its own
/// message and position (the daemon maps only what passes).
#[test]
fn what_the_daemon_cannot_run() {
    let p2p = |extra: &str| {
        BASE.split("[tunnel.nhrp]")
            .next()
            .unwrap()
            .replace("key = 0\n", &format!("key = 0\n{extra}"))
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!(
                "{BASE}\n[[tunnel]]\nname = \"Tunnel1\"\naddress = \"192.168.2.2/24\"\nsource = \"172.16.0.2\"\nkey = 1\n[tunnel.nhrp]\nnetwork_id = 2\n[[tunnel.nhrp.nhs]]\naddress = \"192.168.2.1\"\nnbma = \"172.16.0.1\"\n"
            ),
            vec![SHARED_SOURCE],
        ),
        (
            edit(
                "address = \"192.168.1.2/24\"",
                "address = \"2001:db8:1::2/64\"",
            ),
            vec!["31:11: tunnel[0].nhrp.nhs[0].address: 192.168.1.1 is not an IPv6 tunnel address"],
        ),
        (
            edit("source = \"172.16.0.2\"", "source = \"2001:db8::2\""),
            vec![
                "22:10: tunnel[0].source: an IPv6 NBMA (underlay) address is not supported yet",
                "32:8: tunnel[0].nhrp.nhs[0].nbma: NBMA address 172.16.0.1 is IPv4 but the tunnel source 2001:db8::2 is IPv6",
            ],
        ),
        (
            p2p("mode = \"ipsec\"\ndestination = \"172.16.0.1\"\n"),
            vec![
                "23:7: tunnel[0].key: a GRE key has no meaning on an IPsec VTI",
                "24:8: tunnel[0].mode: IPsec virtual tunnel interfaces (mode = \"ipsec\") are not supported",
            ],
        ),
        (
            edit(
                "address = \"192.168.1.2/24\"",
                "address = \"192.168.1.0/24\"",
            ),
            vec!["21:11: tunnel[0].address: 192.168.1.0 is the network address of 192.168.1.0/24"],
        ),
        (
            edit(
                "address = \"192.168.1.2/24\"",
                "address = \"192.168.1.255/24\"",
            ),
            vec![
                "21:11: tunnel[0].address: 192.168.1.255 is the broadcast address of 192.168.1.0/24",
            ],
        ),
        (
            edit(
                "key = 0\n",
                "key = 0\nroutes = [\"10.1.0.0/16\", \"172.16.0.0/12\"]\n",
            ),
            vec![
                "24:26: tunnel[0].routes[1]: route 172.16.0.0/12 covers 172.16.0.2, the NBMA address of this node's source: the tunnel's own packets would be routed into the tunnel",
            ],
        ),
        (
            edit("key = 0\n", "key = 0\nroutes = [\"172.16.0.0/30\"]\n"),
            vec![
                "24:11: tunnel[0].routes[0]: route 172.16.0.0/30 covers 172.16.0.2, the NBMA address of this node's source: the tunnel's own packets would be routed into the tunnel",
            ],
        ),
        (
            format!(
                "{BASE}{}",
                MANUAL.replace("peer = \"172.16.0.1\"", "peer = \"2001:db8::1\"")
            ),
            vec![
                "35:8: ipsec.manual_sa[0].peer: an IPv6 NBMA (underlay) address is not supported yet",
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(&text), want, "{text}");
    }
    // A point-to-point /31 has no network or broadcast address.
    let p2p31 = p2p("mode = \"gre\"\ndestination = \"172.16.0.1\"\n")
        .replace("192.168.1.2/24", "192.168.1.0/31");
    assert!(errors(&p2p31).is_empty(), "{:?}", errors(&p2p31));
    // A route beside the underlay is fine.
    let ok = edit("key = 0\n", "key = 0\nroutes = [\"10.0.0.0/8\"]\n");
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    // An interface source runs on that interface's primary IPv4 address.
    let ifsrc = edit("source = \"172.16.0.2\"", "source = \"eth0\"");
    assert!(errors(&ifsrc).is_empty(), "{:?}", errors(&ifsrc));
    let loaded = dmvpn_config::Config::from_str(&ifsrc, "t.toml").unwrap();
    assert_eq!(
        loaded.config.tunnels[0].source,
        dmvpn_config::types::TunnelSource::Interface("eth0".into())
    );
}

#[test]
fn metrics_listen() {
    let on = |addr: &str| format!("{BASE}\n[metrics]\nlisten = \"{addr}\"\n");
    assert!(errors(&on("127.0.0.1:9465")).is_empty());
    assert!(
        warnings(&on("127.0.0.1:9465"))
            .iter()
            .all(|w| !w.contains("metrics"))
    );
    assert_eq!(
        warnings(&on("0.0.0.0:9465"))
            .into_iter()
            .filter(|w| w.contains("metrics"))
            .collect::<Vec<_>>(),
        [
            "35:10: metrics.listen: metrics on 0.0.0.0:9465 show peer addresses and counters to anyone who can reach it"
        ]
    );
    let got = errors(&on("localhost:9465"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("35:10: metrics.listen: invalid socket address syntax"),
        "{got:?}"
    );
}

#[test]
fn a_file_without_a_tunnel_is_refused() {
    // dmvpnd has nothing to run; `--check` says so as an error.
    let got = errors(BASE.split("[[tunnel]]").next().unwrap());
    assert_eq!(
        got,
        ["1:1: : no [[tunnel]] configured: dmvpnd has nothing to run"]
    );
}

#[test]
fn registration_timeout_must_be_shorter_than_holdtime() {
    let text = edit(
        "network_id = 1\n",
        "network_id = 1\nholdtime = 30\nregistration_timeout = 600\n",
    );
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("tunnel[0].nhrp.registration_timeout: registration_timeout 600 s is not shorter than holdtime 30 s"),
        "{got:?}"
    );
    let e = Config::from_str(&text, "t").unwrap_err().to_string();
    assert!(
        e.ends_with("(use at most holdtime/3 (10 s), or remove it to get that)"),
        "{e}"
    );
    // Shorter is fine.
    let ok = edit(
        "network_id = 1\n",
        "network_id = 1\nholdtime = 30\nregistration_timeout = 10\n",
    );
    assert!(errors(&ok).is_empty());
}

#[test]
fn parser_messages_in_plain_words() {
    // A Rust type name is spelt out.
    let e = Config::from_str(&edit("priority = 10", "priority = \"x\""), "t").unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("expected a whole number from 0 to 65535") && !e.contains("u16"),
        "{e}"
    );
    // A duplicate key and a broken string say what to do.
    let e =
        Config::from_str(&edit("priority = 10", "priority = 10\npriority = 20"), "t").unwrap_err();
    assert!(e.to_string().ends_with("(keep one of them)"), "{e}");
    let e = Config::from_str(&edit("name = \"spoke1\"", "name = \"spoke1"), "t").unwrap_err();
    assert!(
        e.to_string()
            .ends_with("(fix the TOML syntax here; see docs/configuration.md)"),
        "{e}"
    );
    let e =
        Config::from_str(&format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1\"\n"), "t").unwrap_err();
    assert!(
        e.to_string()
            .ends_with("(write ADDRESS:PORT, e.g. 127.0.0.1:9810)"),
        "{e}"
    );
}

#[test]
fn an_unreadable_file_is_named_without_a_position() {
    let e = Config::load("/nonexistent/dmvpn.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/dmvpn.toml: cannot read file:"),
        "{e}"
    );
}

#[test]
fn forwarding_threads() {
    use dmvpn_config::types::Workers;
    let with = |v: &str| {
        edit(
            "role = \"spoke\"\n",
            &format!("role = \"spoke\"\nworkers = {v}\n"),
        )
    };
    let parsed = |v: &str| {
        Config::from_str(&with(v), "t.toml")
            .unwrap()
            .config
            .node
            .workers
    };
    assert_eq!(
        Config::from_str(BASE, "t.toml")
            .unwrap()
            .config
            .node
            .workers,
        Workers::Auto
    );
    assert_eq!(parsed("\"auto\""), Workers::Auto);
    assert_eq!(parsed("4"), Workers::Count(4));
    assert_eq!(Workers::Auto.resolve(8), 8);
    assert_eq!(Workers::Count(2).resolve(8), 2);
    const HELP: &str = "workers must be \"auto\" (one per core) or a number between 1 and 64";
    assert_eq!(
        errors(&with("0")),
        [format!("4:11: node.workers: {HELP}, got 0")]
    );
    assert_eq!(
        errors(&with("65")),
        [format!("4:11: node.workers: {HELP}, got 65")]
    );
    assert_eq!(
        errors(&with("\"two\"")),
        [format!("4:11: node.workers: {HELP}, got \"two\"")]
    );
    assert_eq!(
        errors(&with("1.5")),
        [format!("4:11: node.workers: {HELP}, got 1.5")]
    );
    assert_eq!(
        errors(&with("true")),
        [format!("4:11: node.workers: {HELP}, got true")]
    );
    // A value out of range is not called a syntax error.
    let e = Config::from_str(&with("0"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.ends_with(", got 0 (see docs/configuration.md)"), "{e}");
}

/// A dual-stack tunnel: `address6` beside the IPv4 `address`, IPv6 NHSs,
/// maps and routes. Accepted as written; every way to get it wrong is
/// refused with what to write.
#[test]
fn dual_stack() {
    let dual = edit(
        "address = \"192.168.1.2/24\"",
        "address = \"192.168.1.2/24\"\naddress6 = \"2001:db8:100::2/64\"\nroutes = [\"2001:db8:3::/64\"]",
    ) + "\n[[tunnel.nhrp.nhs]]\naddress = \"2001:db8:100::1\"\nnbma = \"172.16.0.1\"\n\
         \n[[tunnel.nhrp.map]]\naddress = \"2001:db8:100::9\"\nnbma = \"172.16.0.9\"\n";
    assert!(errors(&dual).is_empty(), "{:?}", errors(&dual));
    let v6 = |from: &str, to: &str| {
        assert!(dual.contains(from), "{from}");
        dual.replacen(from, to, 1)
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            v6(
                "address6 = \"2001:db8:100::2/64\"",
                "address6 = \"2001:db8:100::2\"",
            ),
            vec![
                "22:12: tunnel[0].address6: address needs a prefix length, e.g. \"2001:db8:100::2/64\"",
            ],
        ),
        (
            v6(
                "address6 = \"2001:db8:100::2/64\"",
                "address6 = \"10.0.0.2/24\"",
            ),
            vec![
                "22:12: tunnel[0].address6: 10.0.0.2 is not an IPv6 address (address6 is the tunnel's IPv6 address, e.g. \"2001:db8:100::2/64\"; the IPv4 one is `address`)",
            ],
        ),
        (
            v6(
                "address6 = \"2001:db8:100::2/64\"",
                "address6 = \"fe80::2/64\"",
            ),
            vec![
                "22:12: tunnel[0].address6: fe80::2 cannot be a tunnel address (unspecified, loopback, multicast or link-local)",
            ],
        ),
        (
            v6(
                "address6 = \"2001:db8:100::2/64\"",
                "address6 = \"2001:db8:100::/64\"",
            ),
            vec![
                "22:12: tunnel[0].address6: 2001:db8:100:: is the subnet-router anycast address of 2001:db8:100::/64",
            ],
        ),
        (
            v6(
                "address6 = \"2001:db8:100::2/64\"",
                "address6 = \"2001:db8:100::2/128\"",
            ),
            vec!["22:12: tunnel[0].address6: prefix length /128 leaves no tunnel subnet"],
        ),
        (
            v6("address6 = \"2001:db8:100::2/64\"\n", ""),
            vec![
                "22:11: tunnel[0].routes[0]: route 2001:db8:3::/64 is IPv6 but the tunnel has no IPv6 address",
                "36:11: tunnel[0].nhrp.nhs[1].address: 2001:db8:100::1 is an IPv6 tunnel address but the tunnel has no IPv6 address",
                "40:11: tunnel[0].nhrp.map[0].address: 2001:db8:100::9 is an IPv6 tunnel address but the tunnel has no IPv6 address",
            ],
        ),
        (
            v6(
                "routes = [\"2001:db8:3::/64\"]",
                "routes = [\"2001:db8:100::/56\"]",
            ),
            vec![
                "23:11: tunnel[0].routes[0]: route 2001:db8:100::/56 overlaps the tunnel's own IPv6 subnet 2001:db8:100::/64",
            ],
        ),
        (
            v6(
                "source = \"172.16.0.2\"",
                "source = \"172.16.0.2\"\nmtu = 1200",
            ),
            vec!["25:7: tunnel[0].mtu: mtu 1200 is below 1280, the least IPv6 runs on"],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(&text), want, "{text}");
    }
    // An IPv6-only overlay: `address` is IPv6, every NHS, map and route too.
    let only = edit(
        "address = \"192.168.1.2/24\"",
        "address = \"2001:db8:100::2/64\"",
    )
    .replace("address = \"192.168.1.1\"", "address = \"2001:db8:100::1\"");
    assert!(errors(&only).is_empty(), "{:?}", errors(&only));
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            only.replace("key = 0\n", "key = 0\nroutes = [\"10.3.0.0/24\"]\n"),
            vec![
                "24:11: tunnel[0].routes[0]: route 10.3.0.0/24 is IPv4 but the tunnel has no IPv4 address",
            ],
        ),
        (
            only.replace(
                "address = \"2001:db8:100::2/64\"",
                "address = \"2001:db8:100::2/64\"\naddress6 = \"2001:db8:200::2/64\"",
            ),
            vec!["22:12: tunnel[0].address6: the tunnel's `address` is already IPv6"],
        ),
        (
            only.replace(
                "address = \"2001:db8:100::2/64\"",
                "address = \"fe80::2/64\"",
            ),
            vec![
                "21:11: tunnel[0].address: fe80::2 cannot be a tunnel address (unspecified, loopback, multicast or link-local)",
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(&text), want, "{text}");
    }
}
