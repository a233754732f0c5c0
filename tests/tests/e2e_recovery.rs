//! Recovery from faults, on real `dmvpnd` processes in network namespaces.
//!
//! The seed topology (hub 172.16.0.1 with LAN 10.1.0.0/24, spokes .2 and
//! .3 with LANs 10.2/10.3, IPsec, phase 3, the default NHRP holdtime so
//! that no registration refresh falls inside a test) and these faults:
//! the hub restarted after SIGTERM (it sends DELETEs) and after SIGKILL
//! (it does not); a spoke killed while it holds a live shortcut, restarted
//! at once or after the other spoke has given it up; a total underlay
//! outage of 40 s (an nftables `bridge` table dropping everything the NBMA
//! switch forwards); `clear crypto sa` on the hub. Each is run with DPD
//! (`interval = 10`, the default 5 retries 2 s apart: a dead peer is found
//! 20 s after it was last heard) and the main ones without DPD as well.
//!
//! Continuous pings between LAN hosts (`ping -D -i 0.2`) time every fault:
//! the outage is the longest gap between consecutive answered echoes, the
//! recovery the time from the event to the first answer after it. Each
//! test prints its figures as `FIGURE` lines and asserts its bound.
//!
//! Needs root, iproute2, iputils-ping and nftables; fails (never skips)
//! without them.

use std::net::IpAddr;
use std::thread::sleep;
use std::time::Duration;

use dmvpn_ctl::proto::{Reply, Request};
use dmvpn_tests::*;

const HUB: &str = "172.16.0.1";
const S1: &str = "172.16.0.2";
const S2: &str = "172.16.0.3";
const HUB_LAN: &str = "10.1.0.10";
const S1_LAN: &str = "10.2.0.10";
const S2_LAN: &str = "10.3.0.10";

/// `[ike.dpd]` as configured: R-U-THERE after 10 s without hearing from
/// the peer, then the default 5 retries 2 s apart.
const DPD_INTERVAL: f64 = 10.0;
const DPD_RETRIES: u32 = 5;
const DPD_RETRY_INTERVAL: f64 = 2.0;
/// From the last packet heard to "peer is dead".
const DPD_TIME: f64 = DPD_INTERVAL + DPD_RETRIES as f64 * DPD_RETRY_INTERVAL;

/// What varies between runs.
#[derive(Clone, Copy, Debug)]
struct Setup {
    dpd: bool,
    /// Phase 1 lifetime, seconds.
    ike_lifetime: u32,
    /// Phase 2 lifetime, seconds.
    ipsec_lifetime: u32,
}

const WITH_DPD: Setup = Setup {
    dpd: true,
    ike_lifetime: 86400,
    ipsec_lifetime: 3600,
};

fn without(text: String, part: &str) -> String {
    assert!(
        text.contains(part),
        "the seed configuration no longer holds {part:?}:\n{text}"
    );
    text.replace(part, "")
}

/// Node `n`'s configuration (1 = hub): the seed topology with AES/SHA-2,
/// group 14, phase 3, the default NHRP holdtime, DPD as `setup` says.
fn config(n: u8, setup: Setup) -> String {
    let ike = format!(
        "[[ike.policy]]\npriority = 10\nencryption = \"aes-128\"\nhash = \"sha256\"\ngroup = 14\nlifetime = {}\n",
        setup.ike_lifetime
    );
    let text = SeedNode {
        ike: &ike,
        transforms: r#"["esp-aes 128", "esp-sha-hmac"]"#,
        lifetime_seconds: setup.ipsec_lifetime,
        idle_time: 300,
        dpd_retries: DPD_RETRIES,
        phase3: true,
        hub_map: false,
    }
    .config(n);
    let text = without(text, "holdtime = 600\n");
    if setup.dpd {
        text
    } else {
        text.replace(
            &format!("[ike.dpd]\ninterval = 10\nretry_interval = 2\nretries = {DPD_RETRIES}\n"),
            "[ike.dpd]\ninterval = 0\n",
        )
    }
}

/// The running seed topology.
struct Net {
    lab: Lab,
    setup: Setup,
    hub: String,
    s1: String,
    s2: String,
    /// LAN hosts behind the hub, spoke 1 and spoke 2.
    h1: String,
    h2: String,
    h3: String,
}

impl Net {
    /// Hub and both spokes started, registered, LAN pings through the hub.
    fn up(setup: Setup) -> Net {
        let mut lab = Lab::new("rc");
        let hub = lab.node("hub", 1);
        let s1 = lab.node("s1", 2);
        let s2 = lab.node("s2", 3);
        let h1 = lab.lan_host(&hub, 1);
        let h2 = lab.lan_host(&s1, 2);
        let h3 = lab.lan_host(&s2, 3);
        let mut net = Net {
            lab,
            setup,
            hub,
            s1,
            s2,
            h1,
            h2,
            h3,
        };
        for n in 1..=3 {
            net.start(n);
        }
        let lab = &net.lab;
        lab.wait("both spokes registered", Duration::from_secs(30), || {
            lab.registered(&net.hub, &[S1, S2])
        });
        lab.wait("LAN pings through the hub", Duration::from_secs(15), || {
            lab.ping(&net.h2, HUB_LAN, 1) == 1 && lab.ping(&net.h3, HUB_LAN, 1) == 1
        });
        net
    }

    fn ns(&self, n: u8) -> String {
        match n {
            1 => self.hub.clone(),
            2 => self.s1.clone(),
            _ => self.s2.clone(),
        }
    }

    /// Starts (or restarts) node `n`; the hub gets its routes to the spoke
    /// LANs back, as a routing daemon would add them again.
    fn start(&mut self, n: u8) {
        let ns = self.ns(n);
        self.lab.start(&ns, &config(n, self.setup));
        if n == 1 {
            hub_lan_routes(&self.lab, &ns);
        }
    }

    /// Whether `spoke` holds a shortcut for `lan` through `nbma` with an
    /// IPsec SA to it; returns that SA's inbound SPIs.
    fn shortcut(&self, spoke: &str, lan: &str, nbma: &str) -> Option<Vec<u32>> {
        let lan: IpAddr = lan.parse().unwrap();
        let ip: IpAddr = nbma.parse().unwrap();
        let listed = match self.lab.ctl(spoke, Request::ShowNhrp) {
            Reply::Nhrp(v) => v.iter().any(|e| e.prefix == lan && e.nbma == Some(ip)),
            r => panic!("unexpected reply {r:?}"),
        };
        if !listed {
            return None;
        }
        self.lab
            .ipsec_with(spoke, nbma)
            .map(|sa| sa.inbound.iter().map(|s| s.spi).collect())
            .filter(|v: &Vec<u32>| !v.is_empty())
    }

    /// Packets `spoke` has encrypted towards `nbma` (0 without an SA).
    fn encaps(&self, spoke: &str, nbma: &str) -> u64 {
        self.lab
            .ipsec_with(spoke, nbma)
            .map_or(0, |sa| sa.counters.encaps)
    }

    /// Both spokes registered with the hub, and each has had a
    /// registration reply since the counts in `before`.
    fn registered_since(&self, before: [u64; 2]) -> bool {
        self.lab.registered(&self.hub, &[S1, S2])
            && self.lab.nhs_replies(&self.s1) > before[0]
            && self.lab.nhs_replies(&self.s2) > before[1]
    }

    fn replies(&self) -> [u64; 2] {
        [
            self.lab.nhs_replies(&self.s1),
            self.lab.nhs_replies(&self.s2),
        ]
    }
}

/// Waits until `p` has `n` answers after `t`.
fn answered(lab: &Lab, p: &Pinger, t: f64, n: usize, limit: f64) {
    lab.wait(
        &format!("echoes answered ({})", p.what),
        Duration::from_secs_f64(limit),
        || p.answered_after(t) >= n,
    );
}

// ------------------------------------------------------------ hub restart

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    /// SIGTERM: the hub deletes its SAs (the spokes are told) and exits.
    Term,
    /// SIGKILL: the spokes are told nothing.
    Kill,
}

/// Hub restart figures, seconds from the restart.
#[derive(Debug)]
struct HubRestart {
    /// Both spokes registered again (the hub lists them up, each spoke
    /// received a new registration reply).
    registered: f64,
    /// First answered spoke-LAN -> hub-LAN echo, per spoke.
    answered: [f64; 2],
    /// Longest gap between answered echoes, per spoke.
    outage: [f64; 2],
}

/// Stops the hub as `how` says, starts it again at once, and times the
/// spokes' return with pings from both spoke LANs to the hub LAN.
fn hub_restart(setup: Setup, how: Stop, limit: f64) -> HubRestart {
    let mut net = Net::up(setup);
    let p2 = net.lab.pinger(&net.h2, HUB_LAN);
    let p3 = net.lab.pinger(&net.h3, HUB_LAN);
    let t = unix_now();
    answered(&net.lab, &p2, t, 5, 10.0);
    answered(&net.lab, &p3, t, 5, 10.0);
    let before = net.replies();
    let stopped = unix_now();
    let hub = net.hub.clone();
    match how {
        Stop::Term => net.lab.sigterm(&hub),
        Stop::Kill => net.lab.kill9(&hub),
    }
    let restart = unix_now();
    net.start(1);
    net.lab.wait(
        "both spokes registered again",
        Duration::from_secs_f64(limit),
        || net.registered_since(before),
    );
    let registered = unix_now() - restart;
    answered(&net.lab, &p2, restart, 1, limit);
    answered(&net.lab, &p3, restart, 1, limit);
    sleep(Duration::from_secs(1));
    let end = unix_now();
    let (e2, e3) = (p2.stop(), p3.stop());
    let f = HubRestart {
        registered,
        answered: [
            first_answer_after(&e2, restart).expect("answered"),
            first_answer_after(&e3, restart).expect("answered"),
        ],
        outage: [
            longest_gap(&e2, stopped, end).secs(),
            longest_gap(&e3, stopped, end).secs(),
        ],
    };
    assert!(
        net.lab.alive(&net.s1) && net.lab.alive(&net.s2),
        "spokes survive"
    );
    f
}

fn print_hub_restart(label: &str, f: &HubRestart) {
    eprintln!(
        "FIGURE {label}: spokes registered again {:.2} s after the restart; spoke LAN -> hub LAN echoes answered again after {:.2} s / {:.2} s; outage (longest gap) {:.2} s / {:.2} s",
        f.registered, f.answered[0], f.answered[1], f.outage[0], f.outage[1]
    );
}

#[test]
fn hub_restart_sigterm() {
    let f = hub_restart(WITH_DPD, Stop::Term, 30.0);
    print_hub_restart("hub restart after SIGTERM (DPD on)", &f);
    assert!(
        f.registered <= 5.0,
        "spokes registered again {:.2} s after the restart (bound 5 s)",
        f.registered
    );
    for a in f.answered {
        assert!(
            a <= 5.0,
            "spoke LAN -> hub LAN answered {a:.2} s after the restart (bound 5 s)"
        );
    }
}

#[test]
fn hub_restart_sigkill() {
    let bound = DPD_TIME + 5.0;
    let f = hub_restart(WITH_DPD, Stop::Kill, bound + 30.0);
    print_hub_restart("hub restart after SIGKILL (DPD on)", &f);
    assert!(
        f.registered <= bound,
        "spokes registered again {:.2} s after the restart (bound: DPD {DPD_TIME} s + 5 s)",
        f.registered
    );
    for a in f.answered {
        assert!(
            a <= bound,
            "spoke LAN -> hub LAN answered {a:.2} s after the restart (bound {bound} s)"
        );
    }
}

// ------------------------------------------- (a) spoke killed with a shortcut

/// Brings up spoke 1's shortcut to spoke 2's LAN with a continuous
/// LAN-to-LAN ping; returns that ping and the shortcut SA's inbound SPIs.
fn live_shortcut(net: &Net) -> (Pinger, Vec<u32>) {
    let lan = net.lab.pinger(&net.h2, S2_LAN);
    let mut spis = None;
    net.lab.wait(
        "spoke 1's shortcut to spoke 2's LAN",
        Duration::from_secs(20),
        || {
            spis = net.shortcut(&net.s1, "10.3.0.0", S2);
            spis.is_some()
        },
    );
    // Echoes now travel the shortcut.
    let t = unix_now();
    answered(&net.lab, &lan, t, 5, 10.0);
    let before = net.encaps(&net.s1, S2);
    answered(&net.lab, &lan, unix_now(), 3, 10.0);
    assert!(
        net.encaps(&net.s1, S2) >= before + 3,
        "LAN-to-LAN echoes go direct"
    );
    (lan, spis.expect("shortcut"))
}

/// Spoke crash figures, seconds.
#[derive(Debug)]
struct SpokeCrash {
    /// Longest gap of the LAN-to-LAN echoes (spoke 1 LAN -> spoke 2 LAN).
    outage: f64,
    /// From the restart to the first answered LAN-to-LAN echo.
    answered: f64,
    /// From the restart to the new shortcut (new SA) on spoke 1.
    shortcut: f64,
    /// Longest gaps of spoke 1 LAN -> hub LAN and hub LAN -> spoke 1 LAN.
    others: [f64; 2],
    /// From the restart to the first answered hub LAN -> spoke 2 LAN echo.
    hub_answered: f64,
}

/// Stops spoke 2 as `how` says while spoke 1 sends to its LAN through a
/// shortcut, and starts it again after `down` seconds.
fn spoke_crash(setup: Setup, how: Stop, down: f64, limit: f64) -> SpokeCrash {
    let mut net = Net::up(setup);
    let to_hub = net.lab.pinger(&net.h2, HUB_LAN);
    let from_hub = net.lab.pinger(&net.h1, S1_LAN);
    let hub_to_s2 = net.lab.pinger(&net.h1, S2_LAN);
    let (lan, old) = live_shortcut(&net);
    answered(&net.lab, &hub_to_s2, unix_now(), 3, 10.0);
    let killed = unix_now();
    let s2 = net.s2.clone();
    match how {
        Stop::Term => net.lab.sigterm(&s2),
        Stop::Kill => net.lab.kill9(&s2),
    }
    sleep(Duration::from_secs_f64(down));
    let restart = unix_now();
    net.start(3);
    answered(&net.lab, &hub_to_s2, restart, 1, limit);
    answered(&net.lab, &lan, restart, 1, limit);
    let mut shortcut = 0.0;
    net.lab.wait(
        "a new shortcut from spoke 1 to spoke 2",
        Duration::from_secs(15),
        || {
            let new = net
                .shortcut(&net.s1, "10.3.0.0", S2)
                .is_some_and(|s| s.iter().all(|spi| !old.contains(spi)));
            shortcut = unix_now() - restart;
            new
        },
    );
    let before = net.encaps(&net.s1, S2);
    answered(&net.lab, &lan, unix_now(), 5, 10.0);
    assert!(
        net.encaps(&net.s1, S2) >= before + 5,
        "LAN-to-LAN echoes go direct again"
    );
    let end = unix_now();
    let (el, eh, ef) = (lan.stop(), to_hub.stop(), from_hub.stop());
    let e2 = hub_to_s2.stop();
    SpokeCrash {
        hub_answered: first_answer_after(&e2, restart).expect("answered"),
        outage: longest_gap(&el, killed, end).secs(),
        answered: first_answer_after(&el, restart).expect("answered"),
        shortcut,
        others: [
            longest_gap(&eh, killed, end).secs(),
            longest_gap(&ef, killed, end).secs(),
        ],
    }
}

fn print_spoke_crash(label: &str, down: f64, f: &SpokeCrash) {
    eprintln!(
        "FIGURE {label}: spoke 2 down {down:.0} s; hub LAN -> spoke 2 LAN answered {:.2} s after the restart; spoke 1 LAN -> spoke 2 LAN outage (longest gap) {:.2} s, answered again {:.2} s and a new shortcut {:.2} s after the restart; spoke 1 LAN <-> hub LAN longest gaps {:.2} s / {:.2} s",
        f.hub_answered, f.outage, f.answered, f.shortcut, f.others[0], f.others[1]
    );
}

/// Spoke 2 is back within 2 s, before spoke 1 could notice: spoke 1's
/// stale shortcut is the only obstacle, and DPD must remove it. Bound:
/// the DPD time + 2 s from the kill; the hub LAN stays reachable
/// throughout; the shortcut is rebuilt afterwards.
#[test]
fn fault_a_spoke_killed_and_restarted_at_once() {
    let f = spoke_crash(WITH_DPD, Stop::Kill, 2.0, DPD_TIME + 30.0);
    print_spoke_crash(
        "spoke kill -9 + restart with a live shortcut (DPD on)",
        2.0,
        &f,
    );
    assert!(
        f.outage <= DPD_TIME + 2.0,
        "LAN-to-LAN black hole {:.2} s (bound: DPD {DPD_TIME} s + 2 s)",
        f.outage
    );
    for g in f.others {
        assert!(g <= 1.0, "spoke 1 <-> hub LAN traffic interrupted {g:.2} s");
    }
    assert!(
        f.hub_answered <= 5.0,
        "hub LAN -> spoke 2 LAN answered {:.2} s after the restart (bound 5 s)",
        f.hub_answered
    );
}

/// Spoke 2 stays down: spoke 1 gives up the shortcut (SA and NHRP entry)
/// within the DPD time + 2 s and sends to spoke 2's LAN through the hub
/// again; its traffic with the hub LAN is never interrupted; once spoke 2
/// is back, LAN-to-LAN echoes are answered and the shortcut returns.
#[test]
fn fault_a_spoke_killed_falls_back_to_the_hub() {
    let mut net = Net::up(WITH_DPD);
    let to_hub = net.lab.pinger(&net.h2, HUB_LAN);
    let from_hub = net.lab.pinger(&net.h1, S1_LAN);
    let (lan, _) = live_shortcut(&net);
    let hub_rx = |net: &Net| {
        net.lab
            .ipsec_with(&net.hub, S1)
            .map_or(0, |sa| sa.counters.decaps)
    };
    let rate = |net: &Net| {
        let (rx0, t0) = (hub_rx(net), unix_now());
        sleep(Duration::from_secs(3));
        (hub_rx(net) - rx0) as f64 / (unix_now() - t0)
    };
    // Through the hub before the kill: spoke 1 LAN <-> hub LAN only.
    let base = rate(&net);
    let killed = unix_now();
    let s2 = net.s2.clone();
    net.lab.kill9(&s2);
    let lan_net: IpAddr = "10.3.0.0".parse().unwrap();
    let s2_nbma: IpAddr = S2.parse().unwrap();
    net.lab.wait(
        "spoke 1 gives up its shortcut to the dead spoke",
        Duration::from_secs_f64(DPD_TIME + 15.0),
        || {
            let entry = match net.lab.ctl(&net.s1, Request::ShowNhrp) {
                Reply::Nhrp(v) => v
                    .iter()
                    .any(|e| e.prefix == lan_net && e.nbma == Some(s2_nbma)),
                r => panic!("unexpected reply {r:?}"),
            };
            !entry && net.lab.ipsec_with(&net.s1, S2).is_none()
        },
    );
    let fallback = unix_now() - killed;
    // Echoes to spoke 2's LAN (5/s) now reach the hub too, where they
    // wait for spoke 2.
    let via_hub = rate(&net);
    assert!(
        via_hub >= base + 3.5,
        "spoke 1 sends to spoke 2's LAN through the hub: {via_hub:.1} packets/s from spoke 1 at the hub, {base:.1} before"
    );
    let wait = (DPD_TIME + 4.0 - (unix_now() - killed)).max(0.0);
    sleep(Duration::from_secs_f64(wait));
    let restart = unix_now();
    net.start(3);
    answered(&net.lab, &lan, restart, 1, 30.0);
    let answered_after = first_answer_after(&lan.echoes(), restart).expect("answered");
    let mut shortcut = 0.0;
    net.lab.wait(
        "the shortcut back after spoke 2's restart",
        Duration::from_secs(15),
        || {
            shortcut = unix_now() - restart;
            net.shortcut(&net.s1, "10.3.0.0", S2).is_some()
        },
    );
    let end = unix_now();
    let (eh, ef) = (to_hub.stop(), from_hub.stop());
    let others = [
        longest_gap(&eh, killed, end).secs(),
        longest_gap(&ef, killed, end).secs(),
    ];
    drop(lan);
    eprintln!(
        "FIGURE spoke kill -9, down {:.0} s (DPD on): spoke 1 dropped the dead shortcut {fallback:.2} s after the kill and sent through the hub ({via_hub:.1} packets/s from spoke 1 at the hub, {base:.1} before the kill); after the restart LAN-to-LAN echoes answered in {answered_after:.2} s, shortcut back in {shortcut:.2} s; spoke 1 LAN <-> hub LAN longest gaps {:.2} s / {:.2} s",
        restart - killed,
        others[0],
        others[1]
    );
    assert!(
        fallback <= DPD_TIME + 2.0,
        "the dead shortcut stayed {fallback:.2} s (bound: DPD {DPD_TIME} s + 2 s)"
    );
    assert!(
        answered_after <= 5.0,
        "LAN-to-LAN answered {answered_after:.2} s after the restart (bound 5 s)"
    );
    for g in others {
        assert!(g <= 1.0, "spoke 1 <-> hub LAN traffic interrupted {g:.2} s");
    }
}

// ------------------------------------------------- (b) underlay outage

/// Underlay outage figures, seconds from the restore.
#[derive(Debug)]
struct Outage {
    /// Both spokes registered with the hub (hub lists them up, each spoke
    /// shows its NHS responding) with IPsec SAs on both sides.
    registered: f64,
    /// First answered echo: spoke 1 LAN -> hub LAN, spoke 2 LAN -> hub
    /// LAN, spoke 1 LAN -> spoke 2 LAN.
    answered: [f64; 3],
}

/// Drops every frame on the NBMA switch for `secs` seconds, then
/// restores it; times registrations, SAs and three flows.
fn underlay_outage(setup: Setup, secs: f64, limit: f64) -> Outage {
    let net = Net::up(setup);
    let a = net.lab.pinger(&net.h2, HUB_LAN);
    let b = net.lab.pinger(&net.h3, HUB_LAN);
    let (c, _) = live_shortcut(&net);
    net.lab.underlay_down();
    // From when the drop rule is in: starting nft in the switch's
    // namespace can take a second or more on a busy machine, and echoes
    // still cross meanwhile.
    let down = unix_now();
    assert_eq!(
        net.lab.ping(&net.s1, HUB, 2),
        0,
        "the switch drops the underlay"
    );
    sleep(Duration::from_secs_f64((down + secs - unix_now()).max(0.0)));
    net.lab.underlay_up();
    let restored = unix_now();
    let lab = &net.lab;
    lab.wait(
        "registrations and SAs back after the outage",
        Duration::from_secs_f64(limit),
        || {
            lab.registered(&net.hub, &[S1, S2])
                && lab.peer_up(&net.s1, HUB)
                && lab.peer_up(&net.s2, HUB)
                && lab.ipsec_with(&net.s1, HUB).is_some()
                && lab.ipsec_with(&net.s2, HUB).is_some()
        },
    );
    let registered = unix_now() - restored;
    for p in [&a, &b, &c] {
        answered(lab, p, restored, 1, limit);
    }
    let [ea, eb, ec] = [a.stop(), b.stop(), c.stop()];
    let after = |e: &[Echo]| first_answer_after(e, restored).expect("answered");
    for (e, what) in [(&ea, "1 -> hub"), (&eb, "2 -> hub"), (&ec, "1 -> 2")] {
        let last = e.iter().rev().find(|x| x.at < restored);
        assert!(
            last.is_none_or(|x| x.at < down + 1.5),
            "LAN {what}: echoes answered during the outage: {last:?}"
        );
    }
    Outage {
        registered,
        answered: [after(&ea), after(&eb), after(&ec)],
    }
}

fn print_outage(label: &str, secs: f64, f: &Outage) {
    eprintln!(
        "FIGURE {label}: {secs:.0} s total underlay outage; after the restore: registrations and SAs back in {:.2} s, echoes answered again in {:.2} s (spoke 1 LAN -> hub LAN), {:.2} s (spoke 2 LAN -> hub LAN), {:.2} s (spoke 1 LAN -> spoke 2 LAN)",
        f.registered, f.answered[0], f.answered[1], f.answered[2]
    );
}

#[test]
fn fault_b_underlay_outage() {
    let bound = DPD_TIME + 5.0;
    let f = underlay_outage(WITH_DPD, 40.0, bound + 30.0);
    print_outage("underlay outage (DPD on)", 40.0, &f);
    assert!(
        f.registered <= bound,
        "registrations back {:.2} s after the restore (bound: DPD {DPD_TIME} s + 5 s)",
        f.registered
    );
    for a in f.answered {
        assert!(
            a <= bound,
            "traffic back {a:.2} s after the restore (bound {bound} s)"
        );
    }
}

// --------------------------------------------- (c) clear crypto sa on the hub

/// `clear crypto sa` on the hub, for one spoke then for all: each spoke
/// told of it registers again at once (a new registration reply within
/// 3 s) and its LAN traffic resumes; a spoke not named is untouched.
#[test]
fn fault_c_clear_crypto_sa_on_the_hub() {
    let net = Net::up(WITH_DPD);
    let lab = &net.lab;
    let p2 = lab.pinger(&net.h2, HUB_LAN);
    let p3 = lab.pinger(&net.h3, HUB_LAN);
    answered(lab, &p2, unix_now(), 5, 10.0);
    answered(lab, &p3, unix_now(), 5, 10.0);
    let bound = 3.0;

    let before = net.replies();
    let old_spis: Vec<u32> = lab
        .ipsec_with(&net.s1, HUB)
        .expect("SA")
        .inbound
        .iter()
        .map(|s| s.spi)
        .collect();
    let one = unix_now();
    let r = lab.ctl(
        &net.hub,
        Request::ClearCryptoSa {
            peer: Some(S1.parse().unwrap()),
        },
    );
    assert!(matches!(r, Reply::Cleared { count } if count >= 1), "{r:?}");
    lab.wait("spoke 1 registered again", Duration::from_secs(20), || {
        lab.nhs_replies(&net.s1) > before[0]
            && lab.registered(&net.hub, &[S1])
            && lab
                .ipsec_with(&net.s1, HUB)
                .is_some_and(|sa| sa.inbound.iter().all(|s| !old_spis.contains(&s.spi)))
    });
    let reg_one = unix_now() - one;
    answered(lab, &p2, one, 3, 20.0);
    let mid = unix_now();
    assert_eq!(
        lab.nhs_replies(&net.s2),
        before[1],
        "spoke 2 not involved in clearing spoke 1's SAs"
    );

    let before = net.replies();
    let all = unix_now();
    let r = lab.ctl(&net.hub, Request::ClearCryptoSa { peer: None });
    assert!(matches!(r, Reply::Cleared { count } if count >= 2), "{r:?}");
    lab.wait(
        "both spokes registered again",
        Duration::from_secs(20),
        || net.registered_since(before),
    );
    let reg_all = unix_now() - all;
    answered(lab, &p2, all, 3, 20.0);
    answered(lab, &p3, all, 3, 20.0);
    sleep(Duration::from_secs(1));
    let end = unix_now();
    let (e2, e3) = (p2.stop(), p3.stop());
    let one_back = first_answer_after(&e2, one).expect("answered");
    let one_gap = longest_gap(&e2, one - 0.5, mid).secs();
    let other_gap = longest_gap(&e3, one - 0.5, mid).secs();
    let all_back = [
        first_answer_after(&e2, all).expect("answered"),
        first_answer_after(&e3, all).expect("answered"),
    ];
    let all_gap = [
        longest_gap(&e2, all - 0.5, end).secs(),
        longest_gap(&e3, all - 0.5, end).secs(),
    ];
    eprintln!(
        "FIGURE clear crypto sa peer {S1} on the hub: spoke 1 registered again {reg_one:.2} s later, its LAN echoes answered after {one_back:.2} s (longest gap {one_gap:.2} s); spoke 2's longest gap meanwhile {other_gap:.2} s"
    );
    eprintln!(
        "FIGURE clear crypto sa (all) on the hub: both spokes registered again {reg_all:.2} s later; LAN echoes answered after {:.2} s / {:.2} s (longest gaps {:.2} s / {:.2} s)",
        all_back[0], all_back[1], all_gap[0], all_gap[1]
    );
    assert!(
        reg_one <= bound,
        "spoke 1 registered again after {reg_one:.2} s"
    );
    assert!(
        reg_all <= bound,
        "spokes registered again after {reg_all:.2} s"
    );
    assert!(other_gap <= 1.0, "spoke 2 interrupted {other_gap:.2} s");
    for g in [one_gap, all_gap[0], all_gap[1]] {
        assert!(g <= bound, "LAN traffic interrupted {g:.2} s");
    }
}

// ------------------------------------------------ figures without DPD

/// The same faults with DPD off (`interval = 0`). Nothing then
/// notices a peer that went silent: a crashed hub is found out only when
/// the spoke's ISAKMP SA with it ends, a crashed spoke's shortcut only
/// when its IPsec SA ends. Short lifetimes (phase 1 180 s, phase 2 120 s,
/// in the defaults' order) keep the run short; the bounds are those
/// lifetimes. The cases run side by side, each in its own lab.
#[test]
fn dpd_off_recovery_figures() {
    let setup = Setup {
        dpd: false,
        ike_lifetime: 180,
        ipsec_lifetime: 120,
    };
    let (p1, p2) = (setup.ike_lifetime as f64, setup.ipsec_lifetime as f64);
    std::thread::scope(|s| {
        let term = s.spawn(|| hub_restart(setup, Stop::Term, 30.0));
        let kill = s.spawn(|| hub_restart(setup, Stop::Kill, p1 + 60.0));
        let spoke = s.spawn(|| spoke_crash(setup, Stop::Kill, 2.0, p2 + 60.0));
        let spoke_term = s.spawn(|| spoke_crash(setup, Stop::Term, 2.0, 30.0));
        let outage = s.spawn(|| underlay_outage(setup, 40.0, 30.0));
        let term = term.join().expect("hub restart after SIGTERM");
        print_hub_restart("hub restart after SIGTERM (no DPD)", &term);
        let kill = kill.join().expect("hub restart after SIGKILL");
        print_hub_restart(
            &format!("hub restart after SIGKILL (no DPD, phase 1 lifetime {p1} s)"),
            &kill,
        );
        let spoke = spoke.join().expect("spoke crash");
        print_spoke_crash(
            &format!(
                "spoke kill -9 + restart with a live shortcut (no DPD, phase 2 lifetime {p2} s)"
            ),
            2.0,
            &spoke,
        );
        let spoke_term = spoke_term.join().expect("spoke restart");
        print_spoke_crash(
            "spoke SIGTERM + restart with a live shortcut (no DPD)",
            2.0,
            &spoke_term,
        );
        let outage = outage.join().expect("underlay outage");
        print_outage("underlay outage (no DPD)", 40.0, &outage);
        // DELETEs on shutdown need no DPD.
        assert!(term.registered <= 5.0, "{term:?}");
        assert!(term.answered.iter().all(|a| *a <= 5.0), "{term:?}");
        // The spoke keeps using its ISAKMP SA with the crashed hub until
        // that SA's lifetime ends; then it negotiates with the new hub.
        assert!(kill.registered <= p1 + 10.0, "{kill:?}");
        // The dead shortcut goes when its IPsec SA's lifetime ends.
        assert!(spoke.outage <= p2 + 10.0, "{spoke:?}");
        assert!(spoke.hub_answered <= 5.0, "{spoke:?}");
        assert!(spoke.others.iter().all(|g| *g <= 1.0), "{spoke:?}");
        // A spoke that stops cleanly deletes its SAs: the other spoke
        // drops the shortcut at once.
        assert!(spoke_term.outage <= 2.0 + 5.0, "{spoke_term:?}");
        assert!(spoke_term.hub_answered <= 5.0, "{spoke_term:?}");
        assert!(
            spoke_term.others.iter().all(|g| *g <= 1.0),
            "{spoke_term:?}"
        );
        // Nobody gave up on anybody: the SAs carry on after the restore.
        assert!(outage.registered <= 5.0, "{outage:?}");
        assert!(outage.answered.iter().all(|a| *a <= 5.0), "{outage:?}");
    });
}

// ------------------------------------- a spoke back on a new NBMA address

/// Spoke 1 comes back with another NBMA address (a new lease, another
/// uplink): `how` stops it, its address changes, it starts with the new
/// one. The hub refuses the tunnel address to the new NBMA address while
/// the old registration's peer may still be alive (CIE code 14, shown on
/// the spoke), and lets it take over once that peer is gone (its DELETE
/// after SIGTERM; DPD after SIGKILL). Returns seconds from the start to
/// the hub listing the new address up with LAN traffic flowing.
fn spoke_moves(how: Stop, limit: f64) -> f64 {
    const MOVED: &str = "172.16.0.22";
    let mut net = Net::up(WITH_DPD);
    let s1 = net.s1.clone();
    match how {
        Stop::Term => net.lab.sigterm(&s1),
        Stop::Kill => net.lab.kill9(&s1),
    }
    ok(&[
        "ip",
        "-n",
        &s1,
        "addr",
        "del",
        "172.16.0.2/24",
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
    let text = config(2, WITH_DPD).replace(
        &format!("source = \"{S1}\""),
        &format!("source = \"{MOVED}\""),
    );
    assert!(text.contains(MOVED), "the spoke's source address changed");
    let t0 = unix_now();
    net.lab.start(&s1, &text);
    if how == Stop::Kill {
        // The hub still holds the old address's SAs: refused, and the
        // spoke says so instead of claiming it is registered.
        net.lab.wait(
            "the moved spoke sees its registration refused",
            Duration::from_secs(15),
            || match net.lab.ctl(&s1, Request::ShowNhrpNhs) {
                Reply::NhrpNhs(v) => v.iter().any(|e| {
                    !e.state.responding && e.refused.as_ref().is_some_and(|r| r.code == 14)
                }),
                r => panic!("unexpected reply {r:?}"),
            },
        );
    }
    net.lab.wait(
        "the hub lists the spoke at its new NBMA address",
        Duration::from_secs_f64(limit),
        || net.lab.registered(&net.hub, &[MOVED]) && net.lab.ping(&net.h2, HUB_LAN, 1) == 1,
    );
    let back = unix_now() - t0;
    assert!(
        !net.lab.registered(&net.hub, &[S1]),
        "the old mapping is gone"
    );
    back
}

#[test]
fn spoke_moved_to_a_new_nbma_address_after_sigterm() {
    let t = spoke_moves(Stop::Term, 15.0);
    eprintln!(
        "FIGURE spoke back on a new NBMA address after SIGTERM: registered and LAN traffic flowing {t:.2} s after its start"
    );
    assert!(t <= 5.0, "{t:.2} s");
}

#[test]
fn spoke_moved_to_a_new_nbma_address_after_sigkill() {
    // DPD on the hub finds the old address dead; the spoke's next
    // registration retry (its back-off after a refusal doubles up to 32 s)
    // then takes the address over.
    let bound = DPD_TIME + 32.0 + 5.0;
    let t = spoke_moves(Stop::Kill, bound + 20.0);
    eprintln!(
        "FIGURE spoke back on a new NBMA address after SIGKILL: registered and LAN traffic flowing {t:.2} s after its start (DPD on the hub {DPD_TIME} s)"
    );
    assert!(t <= bound, "{t:.2} s (bound {bound} s)");
}
