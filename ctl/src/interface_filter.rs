//! One tunnel interface's part of an answer (`show dmvpn interface
//! Tunnel1`, `show ip nhrp Tu1`): dmvpnd answers for every tunnel, the
//! client keeps the one asked for.

use crate::proto::Reply;

/// The tunnel of `running` that `asked` names: the name itself, in any
/// case (as IOS takes `tunnel1`), or IOS's short form (`Tu1`, `tun1`
/// for `Tunnel1`). Anything else is an error naming the tunnels there
/// are.
pub fn resolve(asked: &str, running: &[String]) -> Result<String, String> {
    let found = |n: &str| running.iter().find(|r| r.eq_ignore_ascii_case(n)).cloned();
    if let Some(r) = running.iter().find(|r| *r == asked) {
        return Ok(r.clone());
    }
    if let Some(r) = found(asked) {
        return Ok(r);
    }
    let digits = asked.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let letters = &asked[..asked.len() - digits.len()];
    if letters.len() >= 2
        && "tunnel".starts_with(&letters.to_ascii_lowercase())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Some(r) = found(&format!("Tunnel{digits}"))
    {
        return Ok(r);
    }
    Err(format!(
        "% {asked} is not a tunnel interface of this dmvpnd (it runs {})",
        running.join(", ")
    ))
}

/// `reply` with only the entries of the tunnel named `name` (as
/// [`resolve`] gave it).
pub fn only(reply: Reply, name: &str) -> Reply {
    let is = |i: &String| i == name;
    match reply {
        Reply::Nhrp(v) => Reply::Nhrp(v.into_iter().filter(|e| is(&e.interface)).collect()),
        Reply::NhrpNhs(v) => Reply::NhrpNhs(v.into_iter().filter(|e| is(&e.interface)).collect()),
        Reply::NhrpTraffic(v) => {
            Reply::NhrpTraffic(v.into_iter().filter(|t| is(&t.interface)).collect())
        }
        Reply::Dmvpn(v) => Reply::Dmvpn(v.into_iter().filter(|t| is(&t.interface)).collect()),
        Reply::DmvpnDetail(mut d) => {
            d.interfaces.retain(|t| is(&t.interface));
            d.nhs.retain(|e| is(&e.interface));
            d.sessions.retain(|s| is(&s.interface));
            Reply::DmvpnDetail(d)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DmvpnInterface, DmvpnRole};

    fn tunnel(name: &str) -> DmvpnInterface {
        DmvpnInterface {
            interface: name.into(),
            role: DmvpnRole::Spoke,
            peers: Vec::new(),
            tunnel_addr: None,
            source: None,
            destination: None,
            protection: None,
            line_protocol_up: true,
            if_state: false,
        }
    }

    #[test]
    fn names_as_ios_takes_them() {
        let running = ["Tunnel0".to_string(), "Tunnel1".to_string(), "wan9".into()];
        for asked in ["Tunnel1", "tunnel1", "TUNNEL1", "Tu1", "tun1", "tunn1"] {
            assert_eq!(resolve(asked, &running), Ok("Tunnel1".into()), "{asked}");
        }
        assert_eq!(resolve("WAN9", &running), Ok("wan9".into()));
        for asked in ["Tunnel9", "T1", "tunnels1", "Tu", "x1"] {
            assert_eq!(
                resolve(asked, &running),
                Err(format!(
                    "% {asked} is not a tunnel interface of this dmvpnd (it runs Tunnel0, Tunnel1, wan9)"
                )),
                "{asked}"
            );
        }
    }

    #[test]
    fn keeps_the_tunnel_asked_for() {
        let both = Reply::Dmvpn(vec![tunnel("Tunnel0"), tunnel("Tunnel1")]);
        assert_eq!(only(both, "Tunnel1"), Reply::Dmvpn(vec![tunnel("Tunnel1")]));
        assert_eq!(only(Reply::Nhrp(vec![]), "Tunnel1"), Reply::Nhrp(vec![]));
    }
}
