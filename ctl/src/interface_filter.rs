//! One tunnel interface's part of an answer (`show dmvpn interface
//! Tunnel1`, `show ip nhrp Tunnel1`): dmvpnd answers for every tunnel,
//! the client keeps the one asked for. Names compare without case, as
//! IOS takes `tunnel1` for `Tunnel1`.

use crate::proto::Reply;

/// `reply` with only `name`'s entries. A reply that lists every tunnel
/// (`show dmvpn`, `show ip nhrp traffic`) and has none named so is an
/// error naming the tunnels there are.
pub fn only(reply: Reply, name: &str) -> Result<Reply, String> {
    let is = |i: &String| i.eq_ignore_ascii_case(name);
    let unknown = |all: Vec<String>| {
        Err(format!(
            "% {name} is not a tunnel interface of this dmvpnd (it runs {})",
            all.join(", ")
        ))
    };
    Ok(match reply {
        Reply::Nhrp(v) => Reply::Nhrp(v.into_iter().filter(|e| is(&e.interface)).collect()),
        Reply::NhrpNhs(v) => Reply::NhrpNhs(v.into_iter().filter(|e| is(&e.interface)).collect()),
        Reply::NhrpTraffic(v) => {
            if !v.iter().any(|t| is(&t.interface)) {
                return unknown(v.into_iter().map(|t| t.interface).collect());
            }
            Reply::NhrpTraffic(v.into_iter().filter(|t| is(&t.interface)).collect())
        }
        Reply::Dmvpn(v) => {
            if !v.iter().any(|t| is(&t.interface)) {
                return unknown(v.into_iter().map(|t| t.interface).collect());
            }
            Reply::Dmvpn(v.into_iter().filter(|t| is(&t.interface)).collect())
        }
        Reply::DmvpnDetail(mut d) => {
            if !d.interfaces.iter().any(|t| is(&t.interface)) {
                return unknown(d.interfaces.into_iter().map(|t| t.interface).collect());
            }
            d.interfaces.retain(|t| is(&t.interface));
            d.nhs.retain(|e| is(&e.interface));
            d.sessions.retain(|s| is(&s.interface));
            Reply::DmvpnDetail(d)
        }
        other => other,
    })
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
    fn keeps_the_tunnel_asked_for_or_names_the_others() {
        let both = Reply::Dmvpn(vec![tunnel("Tunnel0"), tunnel("Tunnel1")]);
        assert_eq!(
            only(both.clone(), "tunnel1"),
            Ok(Reply::Dmvpn(vec![tunnel("Tunnel1")]))
        );
        assert_eq!(
            only(both, "Tunnel9"),
            Err(
                "% Tunnel9 is not a tunnel interface of this dmvpnd (it runs Tunnel0, Tunnel1)"
                    .into()
            )
        );
        // A cache may hold nothing for a tunnel that exists.
        assert_eq!(
            only(Reply::Nhrp(vec![]), "Tunnel9"),
            Ok(Reply::Nhrp(vec![]))
        );
    }
}
