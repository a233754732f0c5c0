//! IOS import: translated values, round trip through validation, and the
//! reference documents as pasted.

use dmvpn_config::*;
use std::path::Path;

fn data(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
}

fn import(text: &str, host: Option<&str>) -> Imported {
    import_ios(
        text,
        &ImportOptions {
            hostname: host.map(String::from),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The printed TOML passes validation and means the same as the struct.
fn round_trip(imp: &Imported) -> Config {
    let loaded = Config::from_str(&imp.toml, "imported.toml")
        .unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
    assert_eq!(loaded.config.to_toml(), imp.config.to_toml());
    loaded.config
}

/// An input with crypto configuration but no tunnel dmvpnd runs: refused,
/// with what was translated and the notes.
fn crypto_only(text: &str) -> (Config, Vec<Note>) {
    match import_ios(text, &ImportOptions::default()) {
        Err(ImportError::NoTunnel { config, notes }) => (*config, notes),
        other => panic!("not refused for want of a tunnel: {other:?}"),
    }
}

fn has(notes: &[Note], needle: &str) -> bool {
    notes.iter().any(|n| n.to_string().contains(needle))
}

fn has_note(imp: &Imported, needle: &str) -> bool {
    imp.notes.iter().any(|n| n.to_string().contains(needle))
}

#[test]
fn hub_values() {
    let imp = import(&data("hub.ios"), None);
    let c = round_trip(&imp);
    assert_eq!(c.node.name, "hub");
    assert_eq!(c.node.role, Role::Hub);
    // `hash md5` + `authentication pre-share` only: IOS fills DES, group 1, 86400 s.
    let p = &c.ike.policies[0];
    assert_eq!(
        (
            p.priority,
            p.encryption,
            p.hash,
            p.group.number(),
            p.lifetime
        ),
        (10, IkeEncryption::Des, IkeHash::Md5, 1, 86400)
    );
    assert_eq!(c.ike.keys[0].peer.to_string(), "0.0.0.0/0");
    assert_eq!(c.ike.keys[0].key.expose(), "cisco123");
    assert!(
        c.ike.answer_aggressive,
        "IOS answers Aggressive Mode by default"
    );
    assert_eq!(c.ike.nat_traversal.keepalive, 0);
    let ts = &c.ipsec.transform_sets[0];
    assert_eq!(ts.name, "strong");
    assert_eq!(ts.transforms, [Transform::Esp3des, Transform::EspMd5Hmac]);
    assert_eq!(ts.mode, EspMode::Tunnel, "IOS default mode is tunnel");
    let pr = &c.ipsec.profiles[0];
    assert_eq!(
        (pr.name.as_str(), pr.lifetime_seconds, pr.lifetime_kilobytes),
        ("cisco", 120, 4_608_000)
    );
    assert_eq!(c.tunnels.len(), 1);
    let t = &c.tunnels[0];
    assert_eq!(t.name, "Tunnel0");
    assert_eq!(t.address.to_string(), "192.168.1.1/24");
    assert_eq!(t.mtu, 1440);
    assert_eq!(
        t.source,
        TunnelSource::Address("172.16.0.1".parse().unwrap())
    );
    assert_eq!(t.mode, TunnelMode::GreMultipoint);
    assert_eq!(t.key, Some(0));
    assert_eq!(t.protection.as_deref(), Some("cisco"));
    let n = t.nhrp.as_ref().unwrap();
    assert_eq!(n.network_id, 1);
    assert_eq!(n.authentication.as_ref().unwrap().expose(), "cisco123");
    assert_eq!(n.holdtime, 7200);
    assert!(n.map_multicast_dynamic);
    assert!(n.nhs.is_empty());
    // Unmapped lines are reported and kept as comments.
    for needle in [
        "line 68: not imported: router eigrp 90",
        "not imported: no ip redirects (interface Tunnel0)",
        "not imported: ip route 0.0.0.0/0 172.16.0.254",
        "not imported: line vty 0 4",
    ] {
        assert!(
            has_note(&imp, needle),
            "missing note {needle}: {:#?}",
            imp.notes
        );
        assert!(imp.toml.contains(needle), "{needle} not in output");
    }
    // Banner text, pager noise and headers are not configuration.
    assert!(!imp.toml.contains("Tunnel99"));
    assert!(!imp.toml.contains("More"));
    assert!(!imp.toml.contains("Building"));
    assert_eq!(imp.routers, ["hub"]);
}

#[test]
fn first_of_several_routers_by_default() {
    let imp = import(&data("spokes.ios"), None);
    assert_eq!(imp.routers, ["spoke1", "spoke2"]);
    assert_eq!(imp.selected, 0);
    assert!(has_note(
        &imp,
        "input holds 2 routers; imported `spoke1`, also found: spoke2 (choose with --hostname NAME)"
    ));
    let c = round_trip(&imp);
    assert_eq!(c.node.name, "spoke1");
    assert_eq!(c.node.role, Role::Spoke);
    assert_eq!(
        c.ike.dpd.as_ref().map(|d| (d.interval, d.retry_interval)),
        Some((10, 3))
    );
    assert_eq!(c.ike.nat_traversal.keepalive, 20);
    assert_eq!(c.ipsec.transform_sets[0].mode, EspMode::Transport);
    let pr = &c.ipsec.profiles[0];
    assert_eq!(pr.pfs.map(|g| g.number()), Some(14));
    assert_eq!(pr.idle_time, Some(300));
    assert_eq!(
        (pr.lifetime_seconds, pr.lifetime_kilobytes),
        (3600, 4_608_000)
    );
    // The shut-down Tunnel1 is left out, with a note.
    assert_eq!(c.tunnels.len(), 1);
    assert!(has_note(
        &imp,
        "not imported: interface Tunnel1 is shut down"
    ));
    let t = &c.tunnels[0];
    assert_eq!(t.mtu, 1400);
    assert_eq!(t.protection.as_deref(), Some("cisco"));
    // Routes into the tunnel, by interface and by next hop on the tunnel.
    assert_eq!(
        t.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        ["10.3.0.0/24", "10.1.0.0/16"]
    );
    let n = t.nhrp.as_ref().unwrap();
    assert_eq!(n.holdtime, 300);
    assert!(n.shortcut && !n.redirect);
    assert_eq!(n.registration_timeout, Some(60));
    assert_eq!(
        n.multicast,
        ["172.16.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(n.nhs.len(), 1);
    assert_eq!(n.nhs[0].address.to_string(), "192.168.1.1");
    // The NHS's NBMA address comes from the static map.
    assert_eq!(
        n.nhs[0].nbma.map(|a| a.to_string()).as_deref(),
        Some("172.16.0.1")
    );
    assert_eq!(n.map.len(), 1);
    assert!(has_note(&imp, "not imported: router ospf 1"));
    assert!(has_note(
        &imp,
        "ignored 2 line(s) of text that is not configuration: 1, 62"
    ));
}

#[test]
fn choose_router_by_hostname() {
    let imp = import(&data("spokes.ios"), Some("spoke2"));
    assert_eq!(imp.selected, 1);
    let c = round_trip(&imp);
    let p = &c.ike.policies[0];
    assert_eq!(
        (p.encryption, p.hash, p.group.number(), p.lifetime),
        (IkeEncryption::Aes256, IkeHash::Sha256, 14, 3600)
    );
    assert!(!c.ike.answer_aggressive);
    assert_eq!(c.ike.keys[0].peer.to_string(), "172.16.0.0/24");
    assert_eq!(
        c.ipsec.transform_sets[0].transforms,
        [Transform::EspGcm(256)]
    );
    // Global SA lifetimes apply to profiles without their own.
    let pr = &c.ipsec.profiles[0];
    assert_eq!(
        (pr.lifetime_seconds, pr.lifetime_kilobytes),
        (1800, 100_000)
    );
    // The tunnel's source is an interface with no address in the input:
    // it is written as that interface (dmvpnd follows its primary IPv4
    // address), with a note to check the Linux name.
    assert_eq!(c.tunnels.len(), 1);
    assert_eq!(
        c.tunnels[0].source,
        TunnelSource::Interface("gi0-0-1".into())
    );
    assert!(has_note(
        &imp,
        "tunnel source GigabitEthernet0/0/1 written as interface \"gi0-0-1\"; check the Linux name"
    ));
    assert!(
        !imp.notes
            .iter()
            .any(|n| n.text.contains("not imported: interface Tunnel0")),
        "the tunnel is imported"
    );
    // With the interface's address in the input, the tunnel is written
    // with that address as its source.
    let text = data("spokes.ios").replace(
        " tunnel protection ipsec profile cisco\n!\nend",
        " tunnel protection ipsec profile cisco\n!\ninterface GigabitEthernet0/0/1\n ip address 172.16.0.3 255.255.255.0\n!\nend",
    );
    let c = round_trip(&import(&text, Some("spoke2")));
    let t = &c.tunnels[0];
    // No `ip mtu`: IOS's derived value (1500 - 24 - 4 for the key).
    assert_eq!(t.mtu, 1472);
    assert_eq!(
        t.source,
        TunnelSource::Address("172.16.0.3".parse().unwrap())
    );
    let nhs = &t.nhrp.as_ref().unwrap().nhs[0];
    assert_eq!((nhs.priority, nhs.multicast), (1, true));
    assert_eq!(nhs.nbma.unwrap().to_string(), "172.16.0.1");

    let err = import_ios(
        &data("spokes.ios"),
        &ImportOptions {
            hostname: Some("spoke9".into()),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no router with hostname `spoke9` in the input (found: spoke1, spoke2)"
    );
}

#[test]
fn point_to_point_vti() {
    let (c, notes) = crypto_only(&data("vti.ios"));
    assert_eq!(c.node.name, "R2");
    // dmvpnd runs no VTI: the tunnel is a note, the crypto is imported.
    assert!(c.tunnels.is_empty());
    assert!(has(
        &notes,
        "not imported: interface Tunnel23: dmvpnd cannot run it (IPsec virtual tunnel interfaces (mode = \"ipsec\") are not supported)"
    ));
    assert_eq!(c.ike.keys[0].peer.to_string(), "172.16.0.3/32");
    let p = &c.ike.policies[0];
    // Only `authentication pre-share`: DES, SHA, group 1, 86400 s.
    assert_eq!(
        (p.encryption, p.hash, p.group.number(), p.lifetime),
        (IkeEncryption::Des, IkeHash::Sha1, 1, 86400)
    );
    assert_eq!(
        c.ipsec.transform_sets[0].transforms,
        [Transform::EspAes(128), Transform::EspShaHmac]
    );
    assert_eq!(c.ipsec.transform_sets[0].mode, EspMode::Transport);
    assert!(has(
        &notes,
        "not imported: ipv6 address FE80::23:2 link-local (interface Tunnel23)"
    ));
}

#[test]
fn crypto_map_as_profile() {
    let (c, notes) = crypto_only(&data("cryptomap.ios"));
    assert!(c.tunnels.is_empty());
    let pr = &c.ipsec.profiles[0];
    assert_eq!(pr.name, "VPN-10");
    assert_eq!(pr.transform_sets, ["TS"]);
    assert_eq!(pr.pfs.map(|g| g.number()), Some(14));
    assert_eq!(
        c.ipsec.transform_sets[0].transforms,
        [Transform::EspAes(256), Transform::EspSha256Hmac]
    );
    assert_eq!(c.ike.policies[0].priority, 20);
    assert!(has(
        &notes,
        "crypto map entry imported as IPsec profile `VPN-10`; its ACL selectors and peers [172.16.0.9] have no equivalent"
    ));
    assert!(has(&notes, "not imported: match address 101"));
    assert!(has(
        &notes,
        "not imported: crypto map VPN (interface FastEthernet0/0)"
    ));
}

#[test]
fn prose_only_is_a_clear_error() {
    let err = import_ios("Hello.\nThis is not a router.\n", &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::NothingFound));
}

// ---- the reference documents, exactly as pasted ----

/// The reference documents live in the project's shared folder beside the
/// checkout (`../shared/reference/seeds`), or where `DMVPN_SEEDS` points.
fn seeds_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("DMVPN_SEEDS")
        .map(Into::into)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/seeds")
        });
    assert!(
        dir.is_dir(),
        "reference seeds not found at {} (set DMVPN_SEEDS to their folder)",
        dir.display()
    );
    dir
}

fn seed(prefix: &str) -> String {
    let dir = seeds_dir();
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap();
    String::from_utf8_lossy(&std::fs::read(entry).unwrap()).into_owned()
}

#[test]
fn seed_000_ipv6_vti() {
    // A VTI over IPv6 sourced from an interface: no tunnel dmvpnd runs, so
    // the import is refused, with both reasons in one note.
    let (c, notes) = crypto_only(&seed("000_"));
    assert!(has(
        &notes,
        "not imported: interface Tunnel23: dmvpnd cannot run it (an IPv6 NBMA (underlay) address is not supported yet"
    ));
    assert!(has(&notes, "IPsec virtual tunnel interfaces"));
    // Notes on how the left-out tunnel was translated went with it.
    assert!(!has(&notes, "Tunnel23: no `ip mtu`"), "{notes:?}");
    // The crypto was translated all the same.
    assert_eq!(c.ike.keys[0].peer.to_string(), "::/0");
    assert_eq!(c.ipsec.transform_sets[0].mode, EspMode::Transport);
    assert_eq!(c.ike.policies[0].encryption, IkeEncryption::Des);
    // The second router ("Altro lato") is named.
    assert!(has(&notes, "choose with --hostname NAME"));
}

#[test]
fn seed_001_dmvpn_hub_and_spokes() {
    let text = seed("001_");
    let imp = import(&text, None);
    assert_eq!(imp.routers, ["sv9-2", "sv9-3", "sv9-4"]);
    let hub = round_trip(&imp);
    assert_eq!(hub.node.role, Role::Hub);
    let p = &hub.ike.policies[0];
    assert_eq!(
        (p.encryption, p.hash, p.group.number(), p.lifetime),
        (IkeEncryption::Des, IkeHash::Md5, 1, 86400)
    );
    assert_eq!(hub.ike.keys[0].peer.to_string(), "0.0.0.0/0");
    assert_eq!(
        hub.ipsec.transform_sets[0].transforms,
        [Transform::Esp3des, Transform::EspMd5Hmac]
    );
    assert_eq!(hub.ipsec.profiles[0].lifetime_seconds, 120);
    let t = &hub.tunnels[0];
    assert_eq!(
        (t.name.as_str(), t.address.to_string(), t.mtu, t.key),
        ("Tunnel0", "192.168.1.1/24".to_string(), 1440, Some(0))
    );
    assert_eq!(t.nhrp.as_ref().unwrap().network_id, 1);
    assert!(has_note(&imp, "not imported: router eigrp 90"));
    assert_initiates_main_answers_aggressive(&hub);
    for (host, addr) in [("sv9-3", "192.168.1.2/24"), ("sv9-4", "192.168.1.3/24")] {
        let imp = import(&text, Some(host));
        let c = round_trip(&imp);
        assert_initiates_main_answers_aggressive(&c);
        assert_eq!(c.node.role, Role::Spoke);
        let t = &c.tunnels[0];
        assert_eq!(t.address.to_string(), addr);
        let n = t.nhrp.as_ref().unwrap();
        assert_eq!(n.nhs[0].address.to_string(), "192.168.1.1");
        assert!(n.nhs[0].nbma.is_some());
    }
}

/// IOS starts Main Mode unless an ISAKMP profile says `initiate mode
/// aggressive`, and answers Aggressive Mode unless it is disabled.
fn assert_initiates_main_answers_aggressive(c: &Config) {
    assert!(!c.ike.keys.is_empty());
    for k in &c.ike.keys {
        assert_eq!(k.initiate_mode, InitiateMode::Main, "key for {}", k.peer);
    }
    assert!(c.ike.answer_aggressive);
    assert_eq!(c.ike.aggressive_mode, None);
    assert_eq!(c.ike.in_negotiation_limit, 1024);
    // The rendered TOML says nothing about initiating (Main is the default)
    // and never writes the deprecated key.
    let toml = c.to_toml();
    assert!(!toml.contains("initiate_mode"), "{toml}");
    assert!(!toml.contains("aggressive_mode"), "{toml}");
}

const AGGRESSIVE_PROFILE: &str = "hostname SPOKE-9
crypto keyring SPOKES
  pre-shared-key address 172.16.0.0 255.255.255.0 key Sp0keKey123
crypto keyring HUBS
  pre-shared-key address 172.16.9.1 key HubKey1234
crypto isakmp policy 10
 encr aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key Wildcard99 address 0.0.0.0
crypto isakmp aggressive-mode disable
crypto call admission limit ike in-negotiation-sa 200
crypto isakmp profile TO-HUB
   keyring HUBS
   match identity address 10.9.9.9 255.255.255.255
   initiate mode aggressive
crypto isakmp profile UNUSED
   keyring SPOKES
   initiate mode aggressive
crypto ipsec transform-set TS esp-aes 256 esp-sha256-hmac
 mode transport
crypto ipsec profile DMVPN
 set transform-set TS
 set isakmp-profile TO-HUB
interface Tunnel0
 ip address 192.168.1.9 255.255.255.0
 ip nhrp network-id 1
 ip nhrp nhs 192.168.1.1 nbma 172.16.9.1
 tunnel source 172.16.0.9
 tunnel mode gre multipoint
 tunnel protection ipsec profile DMVPN
end
";

/// `initiate mode aggressive` of a used ISAKMP profile applies to its
/// keyring's peers and its `match identity address` peers (a key entry of
/// their own, copied from the covering key); an unused profile changes
/// nothing; `aggressive-mode disable` turns answering off.
#[test]
fn isakmp_profile_initiate_mode_aggressive() {
    let imp = import(AGGRESSIVE_PROFILE, None);
    let c = round_trip(&imp);
    assert!(!c.ike.answer_aggressive);
    assert_eq!(
        (c.ike.in_negotiation_limit, c.ike.in_negotiation_per_peer),
        (200, 8)
    );
    let mode = |peer: &str| {
        c.ike
            .keys
            .iter()
            .find(|k| k.peer.to_string() == peer)
            .map(|k| (k.initiate_mode, k.key.expose().to_string()))
    };
    assert_eq!(
        mode("172.16.9.1/32"),
        Some((InitiateMode::Aggressive, "HubKey1234".into()))
    );
    assert_eq!(
        mode("10.9.9.9/32"),
        Some((InitiateMode::Aggressive, "Wildcard99".into()))
    );
    assert_eq!(
        mode("172.16.0.0/24"),
        Some((InitiateMode::Main, "Sp0keKey123".into()))
    );
    assert_eq!(
        mode("0.0.0.0/0"),
        Some((InitiateMode::Main, "Wildcard99".into()))
    );
    assert!(imp.toml.contains("initiate_mode = \"aggressive\""));
    assert!(has_note(
        &imp,
        "[[ike.key]] for 10.9.9.9/32 added (the key of 0.0.0.0/0)"
    ));
    assert!(has_note(
        &imp,
        "crypto isakmp profile UNUSED says `initiate mode aggressive` but no IPsec profile or crypto map uses it"
    ));
}

#[test]
fn seed_002_asa_crypto_map() {
    let (c, _) = crypto_only(&seed("002_"));
    assert_eq!(c.ipsec.profiles[0].name, "MAP-10");
    assert_eq!(c.ike.keys[0].peer.to_string(), "10.0.0.2/32");
    let p = &c.ike.policies[0];
    assert_eq!(
        (p.encryption, p.hash, p.group.number()),
        (IkeEncryption::TripleDes, IkeHash::Sha1, 2)
    );
}

#[test]
fn seed_003_has_no_router_config() {
    // strongSwan configuration and IOS commands glued without spaces.
    let err = import_ios(&seed("003_"), &ImportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no IOS router configuration found (expected `interface Tunnel…`, `crypto isakmp …`, `crypto ipsec …` or `crypto map …` commands)"
    );
}

#[test]
fn seed_004_asa_dynamic_map() {
    let (c, _) = crypto_only(&seed("004_"));
    assert_eq!(c.ipsec.transform_sets[0].name, "TRA");
    assert_eq!(c.ipsec.profiles[0].lifetime_seconds, 28800);
    let p = &c.ike.policies[0];
    assert_eq!((p.encryption, p.group.number()), (IkeEncryption::Aes128, 2));
}

#[test]
fn every_router_of_every_seed_validates() {
    for prefix in ["000_", "001_", "002_", "003_", "004_"] {
        let text = seed(prefix);
        let Ok(first) = import_ios(&text, &ImportOptions::default()) else {
            continue;
        };
        for name in first.routers.clone() {
            match import_ios(
                &text,
                &ImportOptions {
                    hostname: Some(name.clone()),
                },
            ) {
                Ok(imp) => {
                    round_trip(&imp);
                }
                Err(ImportError::NothingFound | ImportError::NoTunnel { .. }) => {}
                Err(e) => panic!("{prefix} {name}: {e}"),
            }
        }
    }
}

#[test]
fn ios15_keyring_and_encr() {
    let imp = import(&data("ios15-hub.ios"), None);
    let c = round_trip(&imp);
    assert_eq!(c.node.name, "HUB-1");
    let p = &c.ike.policies[0];
    assert_eq!(
        (p.encryption, p.hash, p.group.number()),
        (IkeEncryption::Aes256, IkeHash::Sha256, 14)
    );
    // The keyring's wildcard key and the global `address 0.0.0.0` one
    // cover the same peers: IOS uses the first.
    assert_eq!(c.ike.keys.len(), 1);
    assert_eq!(c.ike.keys[0].peer.to_string(), "0.0.0.0/0");
    assert_eq!(c.ike.keys[0].key.expose(), "Sup3rS3cretKey");
    assert!(has_note(
        &imp,
        "keyring `DMVPN` keys are imported as global keys"
    ));
    assert!(has_note(&imp, "not imported: second key for 0.0.0.0/0"));
    assert_eq!(
        c.ike.dpd.as_ref().map(|d| (d.interval, d.retry_interval)),
        Some((10, 2))
    );
    // A transform set with AH is left out as a whole.
    assert_eq!(c.ipsec.transform_sets.len(), 1);
    assert!(has_note(
        &imp,
        "not imported: crypto ipsec transform-set OLD esp-aes esp-sha-hmac ah-sha-hmac"
    ));
    assert!(has_note(&imp, "not imported: set isakmp-profile DMVPN-IKE"));
    let t = &c.tunnels[0];
    assert_eq!(
        t.source,
        TunnelSource::Address("172.16.0.1".parse().unwrap())
    );
    assert_eq!(t.key, Some(100));
    assert_eq!(t.routes[0].to_string(), "10.0.0.0/8");
    let n = t.nhrp.as_ref().unwrap();
    assert_eq!((n.network_id, n.holdtime, n.redirect), (100, 600, true));
    assert!(has_note(
        &imp,
        "not imported: ip tcp adjust-mss 1360 (interface Tunnel0)"
    ));
    assert!(has_note(
        &imp,
        "not imported: description DMVPN cloud (interface Tunnel0)"
    ));
}

/// IOS configurations that could not work on IOS either are refused with
/// the validation errors of what the translation would have been.
#[test]
fn incomplete_configs_are_refused_with_reasons() {
    let text = "hostname s1
crypto isakmp policy 10
 authentication pre-share
crypto ipsec transform-set T esp-aes esp-sha-hmac
crypto ipsec profile P
 set transform-set T
interface Tunnel0
 ip address 192.168.1.2 255.255.255.0
 ip nhrp network-id 1
 ip nhrp nhs 192.168.1.1
 tunnel source 172.16.0.2
 tunnel mode gre multipoint
 tunnel protection ipsec profile P
";
    let err = import_ios(text, &ImportOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("the translation does not validate:\n"),
        "{msg}"
    );
    assert!(
        msg.contains("tunnel[0].nhrp.nhs[0].nbma: no NBMA address known for NHS 192.168.1.1"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "tunnel[0].protection: the tunnel is protected but no pre-shared key is configured"
        ),
        "{msg}"
    );
}

#[test]
fn mgre_over_ipv6() {
    let text = "hostname v6hub
crypto isakmp policy 10
 encr aes 256
 hash sha256
 group 14
 authentication pre-share
crypto isakmp key k6k6k6k6 address ipv6 ::/0
crypto ipsec transform-set T esp-aes 256 esp-sha256-hmac
 mode transport
crypto ipsec profile P
 set transform-set T
interface Tunnel0
 ip address 192.168.1.1 255.255.255.0
 ip nhrp network-id 1
 ip nhrp map multicast dynamic
 tunnel source Ethernet0/0
 tunnel mode gre multipoint ipv6
 tunnel protection ipsec profile P
interface Ethernet0/0
 ip address 172.16.0.1 255.255.255.0
 ipv6 address 2001:DB8::1/64
end
";
    let (c, notes) = crypto_only(text);
    // The source resolves to the interface's IPv6 address, which dmvpnd
    // does not run yet: the tunnel is left out, saying why.
    assert!(c.tunnels.is_empty());
    assert!(has(
        &notes,
        "not imported: interface Tunnel0: dmvpnd cannot run it (an IPv6 NBMA (underlay) address is not supported yet)"
    ));
    assert_eq!(c.ike.keys[0].peer.to_string(), "::/0");
}

/// `ip nhrp registration no-unique` on a spoke.
#[test]
fn registration_no_unique() {
    let text = "hostname s1
crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k1k1k1k1 address 0.0.0.0 0.0.0.0
crypto ipsec transform-set T esp-aes esp-sha-hmac
crypto ipsec profile P
 set transform-set T
interface Tunnel0
 ip address 192.168.1.2 255.255.255.0
 ip nhrp network-id 1
 ip nhrp nhs 192.168.1.1 nbma 172.16.0.1
 ip nhrp registration no-unique
 tunnel source 172.16.0.2
 tunnel mode gre multipoint
 tunnel protection ipsec profile P
";
    let imp = import(text, None);
    let c = round_trip(&imp);
    assert!(c.tunnels[0].nhrp.as_ref().unwrap().registration_no_unique);
    assert!(
        imp.toml.contains("registration_no_unique = true"),
        "{}",
        imp.toml
    );
    assert!(!has_note(&imp, "no-unique"), "{:?}", imp.notes);
}

/// `ip nhrp max-send N every S` on a hub; without it, IOS's 100 every 10.
#[test]
fn max_send() {
    let hub = |extra: &str| {
        format!(
            "hostname hub
crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k1k1k1k1 address 0.0.0.0 0.0.0.0
crypto ipsec transform-set T esp-aes esp-sha-hmac
crypto ipsec profile P
 set transform-set T
interface Tunnel0
 ip address 192.168.1.1 255.255.255.0
 ip nhrp network-id 1
 ip nhrp map multicast dynamic
 ip nhrp redirect
{extra} tunnel source 172.16.0.1
 tunnel mode gre multipoint
 tunnel protection ipsec profile P
"
        )
    };
    let imp = import(&hub(" ip nhrp max-send 2000 every 20\n"), None);
    let n = round_trip(&imp).tunnels[0].nhrp.clone().unwrap();
    assert_eq!(
        (n.max_send, n.max_send_interval),
        (2000, 20),
        "{}",
        imp.toml
    );
    assert!(imp.toml.contains("max_send = 2000"), "{}", imp.toml);
    assert!(!has_note(&imp, "max-send"), "{:?}", imp.notes);
    let n = round_trip(&import(&hub(""), None)).tunnels[0]
        .nhrp
        .clone()
        .unwrap();
    assert_eq!((n.max_send, n.max_send_interval), (100, 10));
}

/// A hub without tunnel protection takes NHRP from anyone on IOS: the
/// translation says so explicitly (`allowed_nbma` open, with a note) and
/// validates only with an NHRP password, as `--check` demands.
#[test]
fn unprotected_hub_is_written_open_with_a_note() {
    let text = "hostname h1
interface Tunnel0
 ip address 192.168.1.1 255.255.255.0
 ip nhrp authentication cisco123
 ip nhrp network-id 1
 ip nhrp map multicast dynamic
 tunnel source 172.16.0.1
 tunnel mode gre multipoint
";
    let imp = import(text, None);
    let c = round_trip(&imp);
    let n = c.tunnels[0].nhrp.as_ref().unwrap();
    assert_eq!(n.allowed_nbma.as_ref().unwrap()[0].to_string(), "0.0.0.0/0");
    assert!(has_note(
        &imp,
        "Tunnel0: no tunnel protection, so IOS takes NHRP from any NBMA address"
    ));
    let err = import_ios(
        &text.replace(" ip nhrp authentication cisco123\n", ""),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("a hub on a tunnel without IPsec protection takes NHRP from anyone: authentication is not set"),
        "{err}"
    );
}

/// Dual cloud: Tunnel0 and Tunnel1 on their own source addresses (or
/// interfaces) are both imported; a third on Tunnel0's source is left
/// out with a note.
#[test]
fn dual_cloud_tunnels() {
    let tunnel = |n: u8, src: &str| {
        format!(
            "interface Tunnel{n}
 ip address 192.168.{c}.2 255.255.255.0
 ip nhrp network-id {c}
 ip nhrp nhs 192.168.{c}.1 nbma 172.16.{n}.1
 tunnel source {src}
 tunnel mode gre multipoint
 tunnel key {n}
 tunnel protection ipsec profile P
 if-state nhrp
",
            c = n + 1
        )
    };
    let head = "hostname s1
crypto isakmp policy 10
 encr aes 256
 hash sha256
 group 14
 authentication pre-share
crypto isakmp key k6k6k6k6 address 0.0.0.0 0.0.0.0
crypto ipsec transform-set T esp-aes 256 esp-sha-hmac
 mode transport
crypto ipsec profile P
 set transform-set T
";
    let text = format!(
        "{head}{}{}{}ip route 10.12.0.0 255.255.255.0 192.168.1.1\nip route 10.12.0.0 255.255.255.0 Tunnel1\nip route 10.13.0.0 255.255.255.0 192.168.1.1 20\nip route 10.13.0.0 255.255.255.0 192.168.2.1\n",
        tunnel(0, "172.16.0.2"),
        tunnel(1, "172.16.1.2"),
        tunnel(2, "172.16.0.2")
    );
    let imp = import(&text, None);
    let c = round_trip(&imp);
    let names: Vec<&str> = c.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Tunnel0", "Tunnel1"]);
    // One prefix into one tunnel; the backup is a note. A floating
    // static (distance 20) is the backup whatever its place.
    assert_eq!(c.tunnels[0].routes, ["10.12.0.0/24".parse().unwrap()]);
    assert_eq!(c.tunnels[1].routes, ["10.13.0.0/24".parse().unwrap()]);
    assert!(
        imp.notes.iter().any(|n| n.text
            == "not imported: ip route 10.13.0.0/24 192.168.1.1 20 (already routed into Tunnel1; the kernel keeps one route per prefix and metric: add this backup as `ip route add 10.13.0.0/24 dev Tunnel0 metric 20`, or run a routing daemon)"),
        "{:?}",
        imp.notes
    );
    assert!(
        imp.notes.iter().any(|n| n.text.starts_with(
            "not imported: ip route 10.12.0.0/24 Tunnel1 (already routed into Tunnel0;"
        )),
        "{:?}",
        imp.notes
    );
    // `if-state nhrp`: the line protocol follows the NHSs.
    assert!(c.tunnels.iter().all(|t| t.nhrp.as_ref().unwrap().if_state));
    assert!(
        imp.notes.iter().any(|n| n.text.starts_with(
            "not imported: interface Tunnel2: it shares source 172.16.0.2 with Tunnel0;"
        )),
        "{:?}",
        imp.notes
    );
    // Interface sources (no address for them in the input) beside an
    // address: each its own source, all imported; one interface named
    // twice is one source shared.
    let text = format!(
        "{head}{}{}{}",
        tunnel(0, "GigabitEthernet0/0"),
        tunnel(1, "172.16.1.2"),
        tunnel(2, "GigabitEthernet0/1")
    );
    let c = round_trip(&import(&text, None));
    let sources: Vec<String> = c.tunnels.iter().map(|t| t.source.to_string()).collect();
    assert_eq!(sources, ["gi0-0", "172.16.1.2", "gi0-1"]);
    let text = format!(
        "{head}{}{}",
        tunnel(0, "GigabitEthernet0/0"),
        tunnel(1, "GigabitEthernet0/0")
    );
    let imp = import(&text, None);
    assert_eq!(round_trip(&imp).tunnels.len(), 1);
    assert!(
        imp.notes.iter().any(|n| n.text.starts_with(
            "not imported: interface Tunnel1: it shares source gi0-0 with Tunnel0; dmvpnd runs several tunnels each on its own source"
        )),
        "{:?}",
        imp.notes
    );
}

/// A dual-stack spoke (`ip address` and `ipv6 address` on the tunnel,
/// `ipv6 nhrp nhs`/`map`, `ipv6 route`): one tunnel with `address6`,
/// IPv6 NHSs and routes, and a note for `ipv6 nhrp` settings the IPv6
/// instance takes from `ip nhrp`.
#[test]
fn dual_stack_tunnel() {
    let text = "hostname s2
crypto isakmp policy 10
 encr aes 256
 hash sha256
 group 14
 authentication pre-share
crypto isakmp key k6k6k6k6 address 0.0.0.0 0.0.0.0
crypto ipsec transform-set T esp-aes 256 esp-sha-hmac
 mode transport
crypto ipsec profile P
 set transform-set T
interface Tunnel0
 ip address 192.168.1.2 255.255.255.0
 ip mtu 1400
 ip nhrp network-id 1
 ip nhrp nhs 192.168.1.1 nbma 172.16.0.1
 ipv6 address 2001:DB8:100::2/64
 ipv6 nhrp network-id 1
 ipv6 nhrp nhs 2001:DB8:100::1 nbma 172.16.0.1 multicast
 ipv6 nhrp map 2001:DB8:100::9 172.16.0.9
 tunnel source 172.16.0.2
 tunnel mode gre multipoint
 tunnel protection ipsec profile P
ip route 10.3.0.0 255.255.255.0 Tunnel0
ipv6 route 2001:DB8:3::/64 Tunnel0
ipv6 route 2001:DB8:4::/64 2001:DB8:100::4
";
    let imp = import(text, None);
    let c = round_trip(&imp);
    let t = &c.tunnels[0];
    assert_eq!(t.address, "192.168.1.2/24".parse().unwrap());
    assert_eq!(t.address6, Some("2001:db8:100::2/64".parse().unwrap()));
    let n = t.nhrp.as_ref().unwrap();
    let nhs: Vec<(String, bool)> = n
        .nhs
        .iter()
        .map(|s| (s.address.to_string(), s.multicast))
        .collect();
    assert_eq!(
        nhs,
        [
            ("192.168.1.1".to_string(), false),
            ("2001:db8:100::1".to_string(), true)
        ]
    );
    assert_eq!(
        n.map[0].address,
        "2001:db8:100::9".parse::<std::net::IpAddr>().unwrap()
    );
    let routes: Vec<String> = t.routes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        routes,
        ["10.3.0.0/24", "2001:db8:3::/64", "2001:db8:4::/64"]
    );
    assert!(
        imp.notes.iter().any(|n| n.text.starts_with(
            "ipv6 nhrp network-id 1: dmvpnd's IPv6 NHRP instance takes the tunnel's `ip nhrp` settings"
        )),
        "{:?}",
        imp.notes
    );
}

/// An IPv6-only tunnel (`ipv6 address` alone, `ipv6 nhrp …`): `address`
/// is IPv6 and its NHRP settings are the `ipv6 nhrp` ones.
#[test]
fn ipv6_only_tunnel() {
    let text = "hostname s2
interface Tunnel0
 ipv6 address 2001:DB8:100::2/64
 ipv6 mtu 1400
 ip mtu 1400
 ipv6 nhrp authentication v6pass
 ipv6 nhrp network-id 7
 ipv6 nhrp holdtime 300
 ipv6 nhrp nhs 2001:DB8:100::1 nbma 172.16.0.1
 ipv6 nhrp shortcut
 tunnel source 172.16.0.2
 tunnel mode gre multipoint
ipv6 route 2001:DB8:3::/64 Tunnel0
";
    let imp = import(text, None);
    let c = round_trip(&imp);
    let t = &c.tunnels[0];
    assert_eq!(t.address, "2001:db8:100::2/64".parse().unwrap());
    assert_eq!(t.address6, None);
    let n = t.nhrp.as_ref().unwrap();
    assert_eq!((n.network_id, n.holdtime, n.shortcut), (7, 300, true));
    assert_eq!(
        n.authentication.as_ref().map(|a| a.expose().to_string()),
        Some("v6pass".into())
    );
    assert_eq!(
        n.nhs[0].address,
        "2001:db8:100::1".parse::<std::net::IpAddr>().unwrap()
    );
    let routes: Vec<String> = t.routes.iter().map(|r| r.to_string()).collect();
    assert_eq!(routes, ["2001:db8:3::/64"]);
}
