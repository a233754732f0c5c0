//! Negotiated or manual keys → data-plane SAs.

use rand_core::RngCore;
use std::net::IpAddr;

use super::config_map::{ManualSa, dataplane_algs};
use crate::datapath::esp::KeyError;
use crate::datapath::sadb::{InboundSa, Mode, OutboundSa, SaParams};

#[derive(Debug, thiserror::Error)]
pub enum SaError {
    #[error("transform not supported by the data plane")]
    Transform,
    #[error("{0}")]
    Key(#[from] KeyError),
}

fn seed(rng: &mut impl RngCore) -> [u8; 24] {
    let mut s = [0u8; 24];
    rng.fill_bytes(&mut s);
    s
}

/// The data-plane pair for an IKE child SA.
pub fn from_child(
    c: &dmvpn_ike::ChildSa,
    rng: &mut impl RngCore,
) -> Result<(InboundSa, OutboundSa), SaError> {
    let (enc, auth) = dataplane_algs(&c.transform).ok_or(SaError::Transform)?;
    let mode = match c.mode {
        dmvpn_ike::Mode::Transport => Mode::Transport,
        dmvpn_ike::Mode::Tunnel => Mode::Tunnel,
    };
    let peer = c.remote.ip();
    // Volume lifetime is left to IKE's time-based rekey.
    let i = InboundSa::new(&SaParams {
        spi: c.inbound_spi,
        peer,
        mode,
        enc,
        enc_key: &c.inbound.encryption,
        auth,
        auth_key: &c.inbound.integrity,
        lifetime_kb: None,
    })?;
    let o = OutboundSa::new(
        &SaParams {
            spi: c.outbound_spi,
            peer,
            mode,
            enc,
            enc_key: &c.outbound.encryption,
            auth,
            auth_key: &c.outbound.integrity,
            lifetime_kb: None,
        },
        &seed(rng),
    )?;
    Ok((i, o))
}

/// The data-plane pair for a manual SA.
pub fn manual(m: &ManualSa, rng: &mut impl RngCore) -> Result<(InboundSa, OutboundSa), SaError> {
    let peer = IpAddr::V4(m.peer);
    let i = InboundSa::new(&SaParams {
        spi: m.in_spi,
        peer,
        mode: m.mode,
        enc: m.enc,
        enc_key: &m.in_enc,
        auth: m.auth,
        auth_key: &m.in_auth,
        lifetime_kb: None,
    })?;
    let o = OutboundSa::new(
        &SaParams {
            spi: m.out_spi,
            peer,
            mode: m.mode,
            enc: m.enc,
            enc_key: &m.out_enc,
            auth: m.auth,
            auth_key: &m.out_auth,
            lifetime_kb: None,
        },
        &seed(rng),
    )?;
    Ok((i, o))
}

/// A manual SA in the shape IKE hands over, so key-log lines for it come
/// from the same formatter as for negotiated SAs.
pub fn manual_as_child(m: &ManualSa, local: std::net::Ipv4Addr) -> dmvpn_ike::ChildSa {
    let port = if m.udp { 4500 } else { 500 };
    let keys = |enc: &zeroize::Zeroizing<Vec<u8>>, auth: &zeroize::Zeroizing<Vec<u8>>| {
        dmvpn_ike::EspKeys {
            encryption: enc.clone(),
            integrity: auth.clone(),
        }
    };
    dmvpn_ike::ChildSa {
        phase1: 0,
        local: std::net::SocketAddr::new(IpAddr::V4(local), port),
        remote: std::net::SocketAddr::new(IpAddr::V4(m.peer), port),
        inbound_spi: m.in_spi,
        outbound_spi: m.out_spi,
        transform: m.transform,
        mode: match m.mode {
            Mode::Transport => dmvpn_ike::Mode::Transport,
            Mode::Tunnel => dmvpn_ike::Mode::Tunnel,
        },
        encapsulation: if m.udp {
            dmvpn_ike::Encapsulation::Udp {
                local_port: port,
                remote_port: port,
            }
        } else {
            dmvpn_ike::Encapsulation::None
        },
        inbound: keys(&m.in_enc, &m.in_auth),
        outbound: keys(&m.out_enc, &m.out_auth),
        lifetime_secs: 0,
        lifetime_kb: 0,
        local_proxy: None,
        remote_proxy: None,
        initiator: true,
        peer_original: None,
    }
}
