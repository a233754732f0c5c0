//! Quick Mode: ESP proposals, proxies, optional PFS, lifetimes with
//! RESPONDER-LIFETIME, NAT-T encapsulation, KEYMAT and child SA install.

use crate::crypto::{DhGroup, GroupId};
use crate::endpoint::{
    ChildRecord, ChildSa, Encapsulation, Endpoint, EspKeys, Event, HandleError, NatTVariant,
    Phase2Request, QuickMode, Retx, SaId, ike,
};
use crate::keys;
use crate::main_mode::ct_eq;
use crate::payload_list::{PayloadList, Spanned};
use crate::policy::{EspTransform, Mode, OfferedP2, decode_p2, encap_mode, encode_p2};
use crate::state::QmState;
use crate::wire::consts::{encap, exchange, life, notify, p2attr, proto};
use crate::wire::{
    self, Attribute, Header, IdPayload, Identity, NotifyPayload, Payload, Proposal, SaPayload,
};
use rand_core::{CryptoRng, RngCore};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// RFC 2407 default lifetime when a proposal carries none.
const DEFAULT_LIFE_SECS: u64 = 28800;

fn encap_value(mode: Mode, nat: Option<NatTVariant>) -> u16 {
    match (mode, nat) {
        (Mode::Tunnel, None) => encap::TUNNEL,
        (Mode::Transport, None) => encap::TRANSPORT,
        (Mode::Tunnel, Some(NatTVariant::Rfc)) => encap::UDP_TUNNEL,
        (Mode::Transport, Some(NatTVariant::Rfc)) => encap::UDP_TRANSPORT,
        (Mode::Tunnel, Some(NatTVariant::Draft)) => encap::UDP_TUNNEL_DRAFT,
        (Mode::Transport, Some(NatTVariant::Draft)) => encap::UDP_TRANSPORT_DRAFT,
    }
}

fn nat_oa(ip: IpAddr, draft: bool) -> Payload {
    Payload::NatOa {
        draft,
        addr: IdPayload {
            protocol: 0,
            port: 0,
            id: Identity::from_ip(ip),
        },
    }
}

/// Lifetime attributes for a RESPONDER-LIFETIME notify.
fn lifetime_attrs(secs: Option<u64>, kb: Option<u64>) -> Vec<u8> {
    let mut a = vec![];
    if let Some(s) = secs {
        a.push(Attribute::basic(p2attr::LIFE_TYPE, life::SECONDS));
        a.push(Attribute::number(p2attr::LIFE_DURATION, s));
    }
    if let Some(k) = kb {
        a.push(Attribute::basic(p2attr::LIFE_TYPE, life::KILOBYTES));
        a.push(Attribute::number(p2attr::LIFE_DURATION, k));
    }
    wire::emit_attributes(&a)
}

fn parse_lifetimes(data: &[u8]) -> (Option<u64>, Option<u64>) {
    let Ok(attrs) = wire::parse_attributes(data) else {
        return (None, None);
    };
    let (mut ty, mut s, mut k) = (None, None, None);
    for a in attrs {
        match a.ty {
            p2attr::LIFE_TYPE => ty = a.as_u64(),
            p2attr::LIFE_DURATION => match ty {
                Some(1) => s = a.as_u64(),
                Some(2) => k = a.as_u64(),
                _ => {}
            },
            _ => {}
        }
    }
    (s, k)
}

/// IOS name of an ESP transform id ("ESP_3DES").
fn esp_id_name(id: u8) -> &'static str {
    match id {
        2 => "ESP_DES",
        3 => "ESP_3DES",
        11 => "ESP_NULL",
        12 => "ESP_AES",
        20 => "ESP_GCM",
        _ => "ESP_UNKNOWN",
    }
}

fn min_opt(a: u64, b: Option<u64>) -> u64 {
    b.map_or(a, |b| a.min(b))
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    fn new_mid(&mut self, id: SaId) -> u32 {
        loop {
            let m = self.rng.next_u32();
            if m != 0 && !self.sas[&id].qms.contains_key(&m) {
                return m;
            }
        }
    }

    /// Start Quick Mode on an established phase 1.
    pub(crate) fn qm_initiate(
        &mut self,
        now: Instant,
        id: SaId,
        request: Phase2Request,
        rekey_of: Option<u32>,
    ) {
        let mid = self.new_mid(id);
        let ni = self.random_bytes(20);
        let pfs = self.cfg.pfs;
        let dh = pfs.map(|g| {
            let (p, public) = g.generate(&mut self.rng);
            (g, p, public)
        });
        let our_spi = self.spis.allocate();
        let (nat, natd) = {
            let s = &self.sas[&id];
            (
                s.nat().then_some(s.natt).flatten(),
                s.natt == Some(NatTVariant::Draft),
            )
        };
        let offered: Vec<(Mode, OfferedP2)> = self
            .cfg
            .transform_sets
            .iter()
            .map(|ts| {
                (
                    ts.mode,
                    OfferedP2 {
                        esp: ts.esp,
                        encap: encap_value(ts.mode, nat),
                        group: pfs,
                        life_secs: Some(self.cfg.sa_lifetime_secs as u64),
                        life_kb: Some(self.cfg.sa_lifetime_kb),
                    },
                )
            })
            .collect();
        let sa = SaPayload {
            doi: 1,
            situation: 1,
            proposals: offered
                .iter()
                .enumerate()
                .map(|(i, (_, o))| Proposal {
                    number: i as u8 + 1,
                    protocol: proto::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms: vec![encode_p2(1, o)],
                })
                .collect(),
        };
        let mut after = vec![Payload::Sa(sa), Payload::Nonce(ni.clone())];
        if let Some((_, _, public)) = &dh {
            after.push(Payload::Ke(public.clone()));
        }
        if let (Some(l), Some(r)) = (&request.local_proxy, &request.remote_proxy) {
            after.push(Payload::Id(l.clone()));
            after.push(Payload::Id(r.clone()));
        }
        let transport = offered.iter().any(|(m, _)| *m == Mode::Transport);
        if nat.is_some() && transport {
            let s = &self.sas[&id];
            after.push(nat_oa(s.natd_local.ip(), natd));
            after.push(nat_oa(s.natd_remote.ip(), natd));
        }
        let s = &self.sas[&id];
        let e = s.hs.established().expect("phase 1 complete");
        let k = &e.keys;
        let iv = keys::message_iv(k.prf, k.encr, &e.iv, mid);
        let hash = keys::hash1(k, mid, &wire::emit_payloads(&after).1);
        let mut payloads = vec![Payload::Hash(hash)];
        payloads.extend(after);
        let header = self.header(id, exchange::QUICK, mid);
        let (msg, next_iv) = Self::encrypt(k, header, &payloads, &iv);
        ike!(
            "ISAKMP ({}): beginning Quick Mode exchange, M-ID of {}",
            id,
            mid
        );
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_READY  New State = {}",
            id,
            mid,
            QmState::IQm1.ios_name()
        );
        let t = self.queue(id, msg);
        let deadline = now + self.cfg.retransmit_initial;
        self.sas.get_mut(&id).expect("sa").qms.insert(
            mid,
            QuickMode {
                initiator: true,
                state: QmState::IQm1,
                iv: next_iv,
                ni,
                nr: vec![],
                dh,
                our_spi,
                offered,
                request,
                rekey_of,
                last_tx: Some(t.clone()),
                last_rx: vec![],
                retx: Some(Retx {
                    deadline,
                    count: 0,
                    msg: t,
                }),
                done_at: None,
                pending_child: None,
            },
        );
    }

    /// Decrypt a phase 2 message; returns plaintext, payloads, next IV,
    /// the received HASH and the byte range it covers.
    #[allow(clippy::type_complexity)]
    fn qm_open(
        &self,
        id: SaId,
        data: &[u8],
        iv: &[u8],
    ) -> Result<(Vec<u8>, Spanned, Vec<u8>, Vec<u8>, std::ops::Range<usize>), HandleError> {
        let (h, body) = Header::parse(data)?;
        if !h.is_encrypted() {
            return Err(HandleError::Unexpected("cleartext quick mode"));
        }
        let k = &self.sas[&id]
            .hs
            .established()
            .ok_or(HandleError::Decrypt)?
            .keys;
        let (plain, next_iv) = Self::decrypt(k, body, iv)?;
        let p = wire::parse_payloads_spanned(h.next_payload, &plain).map_err(|e| {
            ike!("ISAKMP ({}): malformed phase 2 message: {}", id, e);
            HandleError::BadHash
        })?;
        let Some((Payload::Hash(got), first)) = p.first().cloned() else {
            return Err(HandleError::Missing("HASH"));
        };
        let end = p.last().map_or(first.end, |(_, r)| r.end);
        Ok((plain.clone(), p, next_iv, got, first.end..end))
    }

    pub(crate) fn qm_handle(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        if !self.sas[&id].is_established() {
            return Err(HandleError::Unexpected(
                "quick mode before phase 1 complete",
            ));
        }
        let mid = h.message_id;
        let state = match self.sas[&id].qms.get(&mid) {
            Some(q) if q.last_rx == data => {
                if let Some(t) = q.last_tx.clone() {
                    ike!(
                        "ISAKMP ({}): retransmission of QM {} detected, resending",
                        id,
                        mid
                    );
                    self.transmits.push_back(t);
                }
                return Ok(());
            }
            Some(q) => Some(q.state),
            None => None,
        };
        match state {
            None => {
                let open = self.sas[&id]
                    .qms
                    .values()
                    .filter(|q| q.done_at.is_none())
                    .count();
                if open >= crate::endpoint::MAX_QM_IN_PROGRESS {
                    return Err(HandleError::TooManyExchanges);
                }
                self.qm_responder_qm1(now, id, mid, data)
            }
            Some(QmState::IQm1) => self.qm_initiator_qm2(now, id, mid, data),
            Some(QmState::RQm2) => self.qm_responder_qm3(now, id, mid, data),
            Some(QmState::Complete) => Err(HandleError::Unexpected("quick mode already complete")),
        }
    }

    /// Match one proposed transform against our transform sets.
    fn p2_acceptable(&self, o: &OfferedP2, ke: bool) -> Option<Mode> {
        let (mode, _udp) = encap_mode(o.encap)?;
        for ts in &self.cfg.transform_sets {
            if ts.esp != o.esp {
                continue;
            }
            // IOS: a transport-mode set also accepts tunnel; tunnel sets need tunnel.
            if !(mode == ts.mode || ts.mode == Mode::Transport && mode == Mode::Tunnel) {
                continue;
            }
            match (self.cfg.pfs, o.group) {
                (Some(g), Some(h)) if g != h => continue,
                (Some(_), None) => continue,
                (_, Some(_)) if !ke => continue,
                _ => {}
            }
            return Some(mode);
        }
        None
    }

    /// Quick Mode collision: the peer's QM1 (message `mid` on SA `id`,
    /// nonce `ni`) asks for the selectors our own, still unanswered Quick
    /// Mode asks for (both ends wanted the same SA at once). Only one may
    /// go on, or two IPsec SA pairs come up: both ends see both nonces, so
    /// the Quick Mode with the higher initiator nonce goes on. True when
    /// the peer's goes on (ours, if any, is dropped quietly: it never got
    /// an answer, nothing was installed); false when ours does and the
    /// peer's QM1 is to be ignored (the peer drops it on seeing ours).
    fn qm_collision_lost(&mut self, id: SaId, mid: u32, ids: &[IdPayload], ni: &[u8]) -> bool {
        let req = match ids {
            [ci, cr, ..] => Phase2Request {
                local_proxy: Some(cr.clone()),
                remote_proxy: Some(ci.clone()),
            },
            _ => Phase2Request {
                local_proxy: None,
                remote_proxy: None,
            },
        };
        let peer = self.sas[&id].remote.ip();
        let ours = self.sa_peers.get(peer).find_map(|sid| {
            self.sas[&sid].qms.iter().find_map(|(m, q)| {
                (q.initiator
                    && q.state == QmState::IQm1
                    && q.rekey_of.is_none()
                    && q.request == req)
                    .then(|| (sid, *m, q.ni.as_slice() > ni))
            })
        });
        match ours {
            None => true,
            Some((_, m, true)) => {
                ike!(
                    "ISAKMP ({}): QM {} collides with our QM {} for the same proxies; ours goes on, ignoring it",
                    id,
                    mid,
                    m
                );
                false
            }
            Some((sid, m, false)) => {
                ike!(
                    "ISAKMP ({}): QM {} collides with our QM {} for the same proxies; the peer's goes on, dropping ours",
                    id,
                    mid,
                    m
                );
                self.sas.get_mut(&sid).expect("sa").qms.remove(&m);
                true
            }
        }
    }

    fn qm_responder_qm1(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let iv = {
            let s = &self.sas[&id];
            let e = s.hs.established().expect("complete");
            keys::message_iv(e.keys.prf, e.keys.encr, &e.iv, mid)
        };
        let (plain, p, next_iv, got, rest) = self.qm_open(id, data, &iv)?;
        let k = &self.sas[&id].hs.established().expect("complete").keys;
        if !ct_eq(&keys::hash1(k, mid, &plain[rest]), &got) {
            ike!("ISAKMP ({}): QM HASH(1) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        ike!(
            "ISAKMP ({}): processing HASH payload. message ID = {}",
            id,
            mid
        );
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let ni = p
            .find_nonce()
            .ok_or(HandleError::Missing("NONCE"))?
            .to_vec();
        let ke = p.find_ke().map(<[u8]>::to_vec);
        let ids: Vec<IdPayload> = p.ids().cloned().collect();
        let peer_oa = p.nat_oa_addrs().next();
        if !self.qm_collision_lost(id, mid, &ids, &ni) {
            return Ok(());
        }
        ike!(
            "ISAKMP ({}): processing SA payload. message ID = {}",
            id,
            mid
        );
        let mut chosen = None;
        'outer: for prop in &sa.proposals {
            ike!("ISAKMP ({}): Checking IPSec proposal {}", id, prop.number);
            if prop.protocol != proto::ESP || prop.spi.len() != 4 {
                continue;
            }
            for t in &prop.transforms {
                let Some(o) = decode_p2(t) else {
                    ike!("ISAKMP: transform {}, unsupported", t.number);
                    continue;
                };
                ike!(
                    "ISAKMP: transform {}, {}",
                    t.number,
                    esp_id_name(t.transform_id)
                );
                ike!("ISAKMP:   attributes in transform:");
                for line in crate::policy::describe_p2(t) {
                    ike!("ISAKMP:      {}", line);
                }
                if let Some(mode) = self.p2_acceptable(&o, ke.is_some()) {
                    ike!("ISAKMP ({}): atts are acceptable.", id);
                    chosen = Some((prop.clone(), t.clone(), o, mode));
                    break 'outer;
                }
                ike!("ISAKMP ({}): atts not acceptable.", id);
            }
        }
        let Some((prop, t, o, mode)) = chosen else {
            ike!(
                "ISAKMP ({}): IPSec policy invalidated proposal with error 256",
                id
            );
            let spi = sa
                .proposals
                .first()
                .map(|p| p.spi.clone())
                .unwrap_or_default();
            self.send_info(
                now,
                id,
                vec![Payload::Notify(NotifyPayload {
                    doi: 1,
                    protocol: proto::ESP,
                    spi,
                    msg_type: notify::NO_PROPOSAL_CHOSEN,
                    data: vec![],
                })],
            );
            return Err(HandleError::NoProposal);
        };
        ike!("ISAKMP ({}): QM Responder gets spi", id);
        let our_spi = self.spis.allocate();
        let peer_spi = u32::from_be_bytes(prop.spi[..4].try_into().expect("len 4"));
        let nr = self.random_bytes(20);
        let mut gqm = None;
        let mut our_ke = None;
        if let (Some(g), Some(ke)) = (o.group, &ke) {
            if ke.len() != g.public_len() {
                return Err(HandleError::BadKe);
            }
            let (p, public) = g.generate(&mut self.rng);
            gqm = Some(g.shared(&p, ke).map_err(|_| HandleError::BadKe)?);
            our_ke = Some(public);
        }
        // Lifetimes: the shorter wins; tell the initiator if ours is shorter.
        let ours_s = self.cfg.sa_lifetime_secs as u64;
        let ours_k = self.cfg.sa_lifetime_kb;
        let peer_s = o.life_secs.unwrap_or(DEFAULT_LIFE_SECS);
        let life_s = peer_s.min(ours_s);
        let life_k = min_opt(ours_k, o.life_kb);
        let notify_s = (ours_s < peer_s).then_some(ours_s);
        let notify_k = o.life_kb.is_some_and(|k| ours_k < k).then_some(ours_k);
        let mut after = vec![
            Payload::Sa(SaPayload {
                doi: sa.doi,
                situation: sa.situation,
                proposals: vec![Proposal {
                    number: prop.number,
                    protocol: proto::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms: vec![t],
                }],
            }),
            Payload::Nonce(nr.clone()),
        ];
        if let Some(k) = &our_ke {
            after.push(Payload::Ke(k.clone()));
        }
        for i in &ids {
            after.push(Payload::Id(i.clone()));
        }
        if notify_s.is_some() || notify_k.is_some() {
            ike!("ISAKMP ({}): sending RESPONDER-LIFETIME notify", id);
            after.push(Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: proto::ESP,
                spi: our_spi.to_be_bytes().to_vec(),
                msg_type: notify::RESPONDER_LIFETIME,
                data: lifetime_attrs(notify_s, notify_k),
            }));
        }
        let (udp, draft) = {
            let s = &self.sas[&id];
            (
                encap_mode(o.encap).is_some_and(|m| m.1),
                s.natt == Some(NatTVariant::Draft),
            )
        };
        if udp && mode == Mode::Transport && peer_oa.is_some() {
            let s = &self.sas[&id];
            after.push(nat_oa(s.natd_local.ip(), draft));
            after.push(nat_oa(s.natd_remote.ip(), draft));
        }
        let s = &self.sas[&id];
        let k = &s.hs.established().expect("complete").keys;
        let hash = keys::hash2(k, mid, &ni, &wire::emit_payloads(&after).1);
        let mut payloads = vec![Payload::Hash(hash)];
        payloads.extend(after);
        let (msg, iv2) = Self::encrypt(
            k,
            self.header(id, exchange::QUICK, mid),
            &payloads,
            &next_iv,
        );
        let (local_proxy, remote_proxy) = match ids.as_slice() {
            [ci, cr, ..] => (Some(cr.clone()), Some(ci.clone())),
            _ => (None, None),
        };
        let child = self.make_child(
            id,
            o.esp,
            mode,
            udp,
            our_spi,
            peer_spi,
            gqm.as_deref().map(|v| v.as_slice()),
            &ni,
            &nr,
            life_s,
            life_k,
            (local_proxy.clone(), remote_proxy.clone()),
            false,
            peer_oa,
        );
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_READY  New State = {}",
            id,
            mid,
            QmState::RQm2.ios_name()
        );
        let t = self.queue(id, msg);
        let deadline = now + self.cfg.retransmit_initial;
        self.sas.get_mut(&id).expect("sa").qms.insert(
            mid,
            QuickMode {
                initiator: false,
                state: QmState::RQm2,
                iv: iv2,
                ni,
                nr,
                dh: None,
                our_spi,
                offered: vec![],
                request: Phase2Request {
                    local_proxy,
                    remote_proxy,
                },
                rekey_of: None,
                last_tx: Some(t.clone()),
                last_rx: data.to_vec(),
                retx: Some(Retx {
                    deadline,
                    count: 0,
                    msg: t,
                }),
                done_at: None,
                pending_child: Some(child),
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn make_child(
        &self,
        id: SaId,
        esp: EspTransform,
        mode: Mode,
        udp: bool,
        our_spi: u32,
        peer_spi: u32,
        gqm: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        life_s: u64,
        life_k: u64,
        proxies: (Option<IdPayload>, Option<IdPayload>),
        initiator: bool,
        peer_original: Option<IpAddr>,
    ) -> ChildSa {
        let s = &self.sas[&id];
        let k = &s.hs.established().expect("complete").keys;
        let el = esp.encr.key_len();
        let il = esp.integ.map_or(0, |h| h.digest_len());
        let split = |km: zeroize::Zeroizing<Vec<u8>>| EspKeys {
            encryption: zeroize::Zeroizing::new(km[..el].to_vec()),
            integrity: zeroize::Zeroizing::new(km[el..].to_vec()),
        };
        let inbound = split(keys::keymat(
            k,
            gqm,
            proto::ESP,
            &our_spi.to_be_bytes(),
            ni,
            nr,
            el + il,
        ));
        let outbound = split(keys::keymat(
            k,
            gqm,
            proto::ESP,
            &peer_spi.to_be_bytes(),
            ni,
            nr,
            el + il,
        ));
        ChildSa {
            phase1: id,
            local: s.local,
            remote: s.remote,
            inbound_spi: our_spi,
            outbound_spi: peer_spi,
            transform: esp,
            mode,
            encapsulation: if udp {
                Encapsulation::Udp {
                    local_port: s.local.port(),
                    remote_port: s.remote.port(),
                }
            } else {
                Encapsulation::None
            },
            inbound,
            outbound,
            lifetime_secs: life_s.min(u32::MAX as u64) as u32,
            lifetime_kb: life_k,
            local_proxy: proxies.0,
            remote_proxy: proxies.1,
            initiator,
            peer_original,
        }
    }

    fn qm_initiator_qm2(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let iv = self.sas[&id].qms[&mid].iv.clone();
        let (plain, p, next_iv, got, rest) = self.qm_open(id, data, &iv)?;
        let (want, offered, ni) = {
            let s = &self.sas[&id];
            let q = &s.qms[&mid];
            let k = &s.hs.established().expect("complete").keys;
            (
                keys::hash2(k, mid, &q.ni, &plain[rest]),
                q.offered.clone(),
                q.ni.clone(),
            )
        };
        if !ct_eq(&want, &got) {
            ike!("ISAKMP ({}): QM HASH(2) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let nr = p
            .find_nonce()
            .ok_or(HandleError::Missing("NONCE"))?
            .to_vec();
        let ke = p.find_ke().map(<[u8]>::to_vec);
        let prop = sa.proposals.first().ok_or(HandleError::NoProposal)?;
        let t = prop.transforms.first().ok_or(HandleError::NoProposal)?;
        let o = decode_p2(t).ok_or(HandleError::NoProposal)?;
        if prop.spi.len() != 4 || prop.protocol != proto::ESP {
            return Err(HandleError::NoProposal);
        }
        let (mode, ours) = offered
            .get((prop.number as usize).wrapping_sub(1))
            .filter(|(_, x)| x.esp == o.esp && x.encap == o.encap && x.group == o.group)
            .cloned()
            .ok_or(HandleError::NoProposal)?;
        let peer_spi = u32::from_be_bytes(prop.spi[..4].try_into().expect("len 4"));
        let gqm = match (&self.sas[&id].qms[&mid].dh, &ke) {
            (Some((g, p, _)), Some(ke)) => {
                let g: GroupId = *g;
                if ke.len() != g.public_len() {
                    return Err(HandleError::BadKe);
                }
                Some(g.shared(p, ke).map_err(|_| HandleError::BadKe)?)
            }
            (None, None) => None,
            _ => return Err(HandleError::BadKe),
        };
        let mut life_s = min_opt(ours.life_secs.unwrap_or(DEFAULT_LIFE_SECS), o.life_secs);
        let mut life_k = min_opt(ours.life_kb.unwrap_or(u64::MAX), o.life_kb);
        for n in p
            .notifies()
            .filter(|n| n.msg_type == notify::RESPONDER_LIFETIME)
        {
            let (s, k) = parse_lifetimes(&n.data);
            ike!("ISAKMP ({}): processing RESPONDER_LIFETIME notify", id);
            life_s = min_opt(life_s, s);
            life_k = min_opt(life_k, k);
        }
        // The responder sends NAT-OAi then NAT-OAr; its own original address is the second.
        let peer_oa = p.nat_oa_addrs().next_back();
        let udp = encap_mode(o.encap).is_some_and(|m| m.1);
        let (our_spi, req, rekey_of) = {
            let q = &self.sas[&id].qms[&mid];
            (q.our_spi, q.request.clone(), q.rekey_of)
        };
        let child = self.make_child(
            id,
            o.esp,
            mode,
            udp,
            our_spi,
            peer_spi,
            gqm.as_deref().map(|v| v.as_slice()),
            &ni,
            &nr,
            life_s,
            life_k,
            (req.local_proxy.clone(), req.remote_proxy.clone()),
            true,
            peer_oa,
        );
        let s = &self.sas[&id];
        let k = &s.hs.established().expect("complete").keys;
        let h3 = keys::hash3(k, mid, &ni, &nr);
        let (msg, _) = Self::encrypt(
            k,
            self.header(id, exchange::QUICK, mid),
            &[Payload::Hash(h3)],
            &next_iv,
        );
        let t = self.queue(id, msg);
        {
            let q = self
                .sas
                .get_mut(&id)
                .expect("sa")
                .qms
                .get_mut(&mid)
                .expect("qm");
            q.nr = nr;
            q.state = QmState::Complete;
            q.retx = None;
            q.last_rx = data.to_vec();
            q.last_tx = Some(t);
            q.done_at = Some(now);
            q.dh = None;
        }
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_I_QM1  New State = {}",
            id,
            mid,
            QmState::Complete.ios_name()
        );
        self.install_child(now, child, req, rekey_of);
        Ok(())
    }

    fn qm_responder_qm3(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let iv = self.sas[&id].qms[&mid].iv.clone();
        let (_, _, _, got, _) = self.qm_open(id, data, &iv)?;
        let want = {
            let s = &self.sas[&id];
            let q = &s.qms[&mid];
            keys::hash3(
                &s.hs.established().expect("complete").keys,
                mid,
                &q.ni,
                &q.nr,
            )
        };
        if !ct_eq(&want, &got) {
            ike!("ISAKMP ({}): QM HASH(3) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        let (child, req) = {
            let q = self
                .sas
                .get_mut(&id)
                .expect("sa")
                .qms
                .get_mut(&mid)
                .expect("qm");
            q.state = QmState::Complete;
            q.retx = None;
            q.last_rx = data.to_vec();
            q.last_tx = None;
            q.done_at = Some(now);
            (q.pending_child.take(), q.request.clone())
        };
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_R_QM2  New State = {}",
            id,
            mid,
            QmState::Complete.ios_name()
        );
        if let Some(c) = child {
            self.install_child(now, c, req, None);
        }
        Ok(())
    }

    fn install_child(
        &mut self,
        now: Instant,
        c: ChildSa,
        req: Phase2Request,
        rekey_of: Option<u32>,
    ) {
        ike!("ISAKMP ({}): Creating IPSec SAs", c.phase1);
        ike!(
            "        inbound SA from {} to {} has spi {:#010X}, lifetime of {} seconds, {} kilobytes",
            c.remote.ip(),
            c.local.ip(),
            c.inbound_spi,
            c.lifetime_secs,
            c.lifetime_kb
        );
        ike!(
            "        outbound SA from {} to {} has spi {:#010X}, transform {}",
            c.local.ip(),
            c.remote.ip(),
            c.outbound_spi,
            c.transform.ios_name()
        );
        let life = Duration::from_secs(c.lifetime_secs as u64);
        let margin = self.cfg.rekey_margin.min(life / 2);
        self.insert_child(
            c.inbound_spi,
            ChildRecord {
                local: c.local,
                remote: c.remote,
                outbound_spi: c.outbound_spi,
                soft: c.initiator.then(|| now + life - margin),
                hard: now + life,
                request: req,
            },
        );
        match rekey_of {
            Some(old) => self.events.push_back(Event::ChildSaRekeyed {
                old_inbound_spi: old,
                new: c,
            }),
            None => self.events.push_back(Event::ChildSaInstalled(c)),
        }
    }
}
