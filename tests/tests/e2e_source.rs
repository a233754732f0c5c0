//! A spoke whose tunnel source is an interface (`source = "nbma0"`), on
//! real `dmvpnd` processes in network namespaces: its NBMA address is
//! changed while it runs (`ip addr del` / `ip addr add` on nbma0, as a
//! DHCP lease change or a failover does), and the spoke registers again
//! from the new address without a restart.
//!
//! The seed topology's hub (172.16.0.1, LAN 10.1.0.0/24, IPsec, DPD 10 s
//! with 5 retries 2 s apart) and spoke 2 (172.16.0.2, LAN 10.2.0.0/24),
//! which moves to 172.16.0.22. A continuous ping from the spoke's LAN host
//! to the hub's LAN host times the move: the time to resume is from the
//! address change to the first answered echo after it. Each test prints
//! it as a `FIGURE` line and asserts its bound.
//!
//! Needs root, iproute2 and iputils-ping; fails (never skips) without them.

use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request};
use dmvpn_tests::*;

const S1: &str = "172.16.0.2";
const MOVED: &str = "172.16.0.22";
const HUB_LAN: &str = "10.1.0.10";
/// From the last packet heard to "peer is dead" on the hub (DPD).
const DPD_TIME: f64 = 10.0 + 5.0 * 2.0;

fn seed() -> SeedNode<'static> {
    SeedNode {
        ike: "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\nlifetime = 86400\n",
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: 3600,
        idle_time: 300,
        dpd_retries: 5,
        phase3: true,
        hub_map: false,
    }
}

/// Hub and spoke up, the spoke sourced from nbma0, LAN pings flowing;
/// then the spoke's address moves. Returns the seconds from the move to
/// the first echo answered after it.
fn spoke_address_moves(unique: bool, limit: f64) -> f64 {
    let mut lab = Lab::new("is");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let _h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    lab.start(&hub, &seed().config(1));
    hub_lan_routes(&lab, &hub);
    let mut spoke = seed()
        .config(2)
        .replace(&format!("source = \"{S1}\""), "source = \"nbma0\"");
    if !unique {
        spoke = spoke.replace(
            "network_id = 1\n",
            "network_id = 1\nregistration_no_unique = true\n",
        );
    }
    assert!(spoke.contains("source = \"nbma0\""));
    lab.start(&s1, &spoke);
    lab.wait("the spoke registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1])
    });
    lab.wait("LAN pings through the hub", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1
    });
    let pinger = lab.pinger(&h2, HUB_LAN);
    lab.wait("the pinger answered", Duration::from_secs(5), || {
        pinger.answered_after(pinger.started) > 0
    });

    let t0 = unix_now();
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "del",
        &format!("{S1}/24"),
        "dev",
        "nbma0",
    ]);
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "add",
        &format!("{MOVED}/24"),
        "dev",
        "nbma0",
    ]);
    lab.wait(
        "the hub lists the spoke at its new NBMA address",
        Duration::from_secs_f64(limit),
        || lab.registered(&hub, &[MOVED]),
    );
    lab.wait(
        "echoes answered after the move",
        Duration::from_secs(10),
        || pinger.answered_after(t0) > 0,
    );
    let echoes = pinger.stop();
    let resumed = first_answer_after(&echoes, t0).expect("an answered echo after the move");
    assert!(lab.alive(&s1), "the spoke was not restarted");
    assert!(
        !lab.registered(&hub, &[S1]),
        "the old mapping is gone from the hub"
    );
    // The spoke says it is registered (it holds a reply from the new address).
    match lab.ctl(&s1, Request::ShowNhrpNhs) {
        Reply::NhrpNhs(v) => assert!(v.iter().all(|e| e.state.responding), "{v:?}"),
        r => panic!("unexpected reply {r:?}"),
    }
    let log = lab.log(&s1);
    assert!(
        log.contains(&format!("NBMA address changed from {S1} to {MOVED}")),
        "the spoke logs the move:\n{log}"
    );
    resumed
}

#[test]
fn interface_source_moves_with_registration_no_unique() {
    let t = spoke_address_moves(false, 15.0);
    eprintln!(
        "FIGURE interface source moved (registration_no_unique): LAN traffic resumed {t:.2} s after the address change"
    );
    assert!(t < 15.0, "{t:.2} s");
}

#[test]
fn interface_source_moves_with_unique_registrations() {
    // The hub refuses the unique address from the new NBMA address while
    // the old registration's peer lives; DPD finds the old address dead,
    // and the spoke's next registration retry (its back-off after a
    // refusal doubles up to 32 s) takes the address over.
    let bound = DPD_TIME + 32.0 + 5.0;
    let t = spoke_address_moves(true, bound + 20.0);
    eprintln!(
        "FIGURE interface source moved (unique registrations, hub DPD {DPD_TIME} s): LAN traffic resumed {t:.2} s after the address change"
    );
    assert!(t <= bound, "{t:.2} s (bound {bound} s)");
}

#[test]
fn interface_source_without_an_address_waits_for_one() {
    let mut lab = Lab::new("iw");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let h2 = lab.lan_host(&s1, 2);
    let _h1 = lab.lan_host(&hub, 1);
    lab.start(&hub, &seed().config(1));
    hub_lan_routes(&lab, &hub);
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "del",
        &format!("{S1}/24"),
        "dev",
        "nbma0",
    ]);
    let spoke = seed()
        .config(2)
        .replace(&format!("source = \"{S1}\""), "source = \"nbma0\"");
    // The address comes while dmvpnd waits for it (its control socket
    // opens once the tunnel starts).
    let ns = s1.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{S1}/24"),
            "dev",
            "nbma0",
        ]);
    });
    lab.start(&s1, &spoke);
    later.join().unwrap();
    let log = lab.log(&s1);
    assert!(
        log.contains("tunnel source nbma0 has no IPv4 address yet: waiting for one"),
        "{log}"
    );
    lab.wait("the spoke registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1])
    });
    lab.wait("LAN pings through the hub", Duration::from_secs(15), || {
        lab.ping(&h2, HUB_LAN, 1) == 1
    });
}

#[test]
fn interface_source_that_does_not_exist_is_an_error() {
    let mut lab = Lab::new("ie");
    let s1 = lab.node("s1", 2);
    let spoke = seed()
        .config(2)
        .replace(&format!("source = \"{S1}\""), "source = \"wan9\"");
    let err = lab.refused(&s1, &spoke);
    assert!(
        err.contains("source interface wan9: no interface wan9"),
        "{err}"
    );
}

/// A hub sourced from an interface: it takes nbma0's address at start,
/// spokes register with it, their LANs reach each other through it and
/// then directly (a shortcut and an SA between the spokes); its address
/// flapping (removed and given back, as a DHCP renewal that lapsed does)
/// costs the spokes' traffic through it only while it is gone.
#[test]
fn hub_with_an_interface_source_serves_its_spokes() {
    const S2: &str = "172.16.0.3";
    let mut lab = Lab::new("ih");
    let hub = lab.node("hub", 1);
    let s1 = lab.node("s1", 2);
    let s2 = lab.node("s2", 3);
    let _h1 = lab.lan_host(&hub, 1);
    let h2 = lab.lan_host(&s1, 2);
    let _h3 = lab.lan_host(&s2, 3);
    let hub_cfg = seed()
        .config(1)
        .replace("source = \"172.16.0.1\"", "source = \"nbma0\"");
    assert!(hub_cfg.contains("source = \"nbma0\""));
    lab.start(&hub, &hub_cfg);
    hub_lan_routes(&lab, &hub);
    lab.start(&s1, &seed().config(2));
    lab.start(&s2, &seed().config(3));
    lab.wait("both spokes registered", Duration::from_secs(30), || {
        lab.registered(&hub, &[S1, S2])
    });
    lab.wait("spoke LAN to spoke LAN", Duration::from_secs(15), || {
        lab.ping(&h2, "10.3.0.10", 1) == 1
    });
    lab.wait(
        "a shortcut between the spokes",
        Duration::from_secs(15),
        || lab.ping(&h2, "10.3.0.10", 1) == 1 && lab.ipsec_with(&s1, S2).is_some(),
    );

    let pinger = lab.pinger(&h2, HUB_LAN);
    lab.wait("the pinger answered", Duration::from_secs(5), || {
        pinger.answered_after(pinger.started) > 0
    });
    let addr = "172.16.0.1/24";
    ok(&["ip", "-n", &hub, "addr", "del", addr, "dev", "nbma0"]);
    std::thread::sleep(Duration::from_secs(1));
    let back = unix_now();
    ok(&["ip", "-n", &hub, "addr", "add", addr, "dev", "nbma0"]);
    lab.wait(
        "echoes answered after the flap",
        Duration::from_secs(15),
        || pinger.answered_after(back) > 0,
    );
    let echoes = pinger.stop();
    let resumed = first_answer_after(&echoes, back).expect("an answered echo after the flap");
    eprintln!(
        "FIGURE hub interface source flapped for 1 s: spoke-to-hub LAN traffic resumed {resumed:.2} s after the address came back"
    );
    assert!(lab.alive(&hub), "the hub was not restarted");
    assert!(
        lab.registered(&hub, &[S1, S2]),
        "both spokes still registered"
    );
    assert_eq!(
        lab.ping(&h2, "10.3.0.10", 3),
        3,
        "spoke to spoke after the flap"
    );
}
