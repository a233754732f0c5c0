//! Several tunnels in one dmvpnd. Each `[[tunnel]]` runs its own router,
//! TUN device, underlay sockets (bound to its own source address) and
//! event loop; the control socket and the metrics endpoint are shared.
//! A request goes to every tunnel's loop, and their answers are merged
//! into one, as IOS lists every tunnel interface in one `show`.

use dmvpn_ctl::proto::{Reply, Request, Response};
use tokio::sync::mpsc;

use crate::runtime::control_socket::{ControlRequest, Handler};

/// Answers the control socket's and metrics endpoint's requests from
/// the tunnels' loops, until the listeners are gone.
pub async fn dispatch(
    mut requests: mpsc::Receiver<ControlRequest>,
    tunnels: Vec<mpsc::Sender<ControlRequest>>,
) {
    while let Some(req) = requests.recv().await {
        let tunnels = tunnels.clone();
        // A slow tunnel holds up only this request.
        tokio::spawn(async move {
            let request = req.request;
            // The log filter is the process's: the first tunnel's loop
            // holds it.
            let to = match request {
                Request::Debug { .. } => &tunnels[..1],
                _ => &tunnels[..],
            };
            let mut answers = Vec::with_capacity(to.len());
            for t in to {
                answers.push(t.handle(request).await);
            }
            req.respond(merge(answers));
        });
    }
}

/// One answer from the tunnels' answers: lists are joined in tunnel
/// order, counts added; the first refusal is the answer.
pub fn merge(answers: Vec<Response>) -> Response {
    let mut answers = answers.into_iter();
    let Some(first) = answers.next() else {
        return Response::error("no tunnel is running");
    };
    answers.fold(first, |a, b| match (a, b) {
        (e @ Response::Error { .. }, _) | (Response::Ok(_), e @ Response::Error { .. }) => e,
        (Response::Ok(a), Response::Ok(b)) => match join(a, b) {
            Ok(r) => Response::Ok(r),
            Err(message) => Response::Error { message },
        },
    })
}

fn join(a: Reply, b: Reply) -> Result<Reply, String> {
    use Reply::*;
    fn cat<T>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
        a.extend(b);
        a
    }
    fn union<T: PartialEq>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
        for x in b {
            if !a.contains(&x) {
                a.push(x);
            }
        }
        a
    }
    Ok(match (a, b) {
        (Nhrp(a), Nhrp(b)) => Nhrp(cat(a, b)),
        (NhrpNhs(a), NhrpNhs(b)) => NhrpNhs(cat(a, b)),
        (NhrpTraffic(a), NhrpTraffic(b)) => NhrpTraffic(cat(a, b)),
        (Dmvpn(a), Dmvpn(b)) => Dmvpn(cat(a, b)),
        (DmvpnDetail(mut a), DmvpnDetail(b)) => {
            a.interfaces.extend(b.interfaces);
            a.nhs.extend(b.nhs);
            a.sessions.extend(b.sessions);
            DmvpnDetail(a)
        }
        (IsakmpSa(a), IsakmpSa(b)) => IsakmpSa(cat(a, b)),
        (IpsecSa(mut a), IpsecSa(b)) => {
            a.interfaces.extend(b.interfaces);
            a.peers.extend(b.peers);
            IpsecSa(a)
        }
        (CryptoSession(a), CryptoSession(b)) => CryptoSession(cat(a, b)),
        (Cleared { count: a }, Cleared { count: b }) => Cleared { count: a + b },
        (d @ Debug { .. }, Debug { .. }) => d,
        // Keys shared by the tunnels (`[ike]`, `log.filter`, …) are
        // reported by each.
        (Reloaded(mut a), Reloaded(b)) => {
            a.changes = union(a.changes, b.changes);
            a.warnings = union(a.warnings, b.warnings);
            Reloaded(a)
        }
        (Stats(a), Stats(b)) => Stats(cat(a, b)),
        (a, b) => {
            return Err(format!(
                "the tunnels answered with different kinds ({} and {})",
                kind(&a),
                kind(&b)
            ));
        }
    })
}

fn kind(r: &Reply) -> &'static str {
    match r {
        Reply::Nhrp(_) => "nhrp",
        Reply::NhrpNhs(_) => "nhrp_nhs",
        Reply::NhrpTraffic(_) => "nhrp_traffic",
        Reply::Dmvpn(_) => "dmvpn",
        Reply::DmvpnDetail(_) => "dmvpn_detail",
        Reply::IsakmpSa(_) => "isakmp_sa",
        Reply::IpsecSa(_) => "ipsec_sa",
        Reply::CryptoSession(_) => "crypto_session",
        Reply::Cleared { .. } => "cleared",
        Reply::Debug { .. } => "debug",
        Reply::Reloaded(_) => "reloaded",
        Reply::Stats(_) => "stats",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmvpn_ctl::proto::{ConfigChange, ReloadReport};

    fn reloaded(keys: &[&str]) -> Response {
        Response::Ok(Reply::Reloaded(ReloadReport {
            file: "f".into(),
            changes: keys
                .iter()
                .map(|k| ConfigChange {
                    key: k.to_string(),
                    effect: "Now".into(),
                })
                .collect(),
            warnings: vec![],
        }))
    }

    #[test]
    fn counts_add_and_shared_keys_are_listed_once() {
        assert_eq!(
            merge(vec![
                Response::Ok(Reply::Cleared { count: 2 }),
                Response::Ok(Reply::Cleared { count: 3 })
            ]),
            Response::Ok(Reply::Cleared { count: 5 })
        );
        assert_eq!(
            merge(vec![
                reloaded(&["log.filter", "tunnel[0].mtu"]),
                reloaded(&["log.filter", "tunnel[1].mtu"])
            ]),
            reloaded(&["log.filter", "tunnel[0].mtu", "tunnel[1].mtu"])
        );
    }

    #[test]
    fn a_refusal_wins_and_no_tunnel_is_an_error() {
        let refused = Response::error("not reloaded");
        assert_eq!(
            merge(vec![reloaded(&["log.filter"]), refused.clone()]),
            refused
        );
        assert_eq!(merge(vec![refused.clone(), reloaded(&[])]), refused);
        assert!(matches!(merge(vec![]), Response::Error { .. }));
        assert!(matches!(
            merge(vec![
                reloaded(&[]),
                Response::Ok(Reply::Cleared { count: 1 })
            ]),
            Response::Error { .. }
        ));
    }

    #[test]
    fn lists_join_in_tunnel_order() {
        use dmvpn_ctl::proto::{DmvpnInterface, DmvpnRole};
        let tunnel = |name: &str| DmvpnInterface {
            interface: name.into(),
            role: DmvpnRole::Spoke,
            peers: Vec::new(),
            tunnel_addr: None,
            source: None,
            destination: None,
            protection: None,
            line_protocol_up: true,
            if_state: false,
        };
        let one = |name: &str| Response::Ok(Reply::Dmvpn(vec![tunnel(name)]));
        assert_eq!(
            merge(vec![one("Tunnel0"), one("Tunnel1")]),
            Response::Ok(Reply::Dmvpn(vec![tunnel("Tunnel0"), tunnel("Tunnel1")]))
        );
    }
}
