//! Quick Mode: ESP proposals, proxies, optional PFS, lifetimes with
//! RESPONDER-LIFETIME, NAT-T encapsulation, KEYMAT and child SA install.

use crate::Instant;
use crate::crypto::{DhGroup, GroupId};
use crate::endpoint::{
    ChildRecord, ChildSa, Encapsulation, Endpoint, EspKeys, Event, HandleError, NatTVariant,
    Phase2Request, QuickMode, Retx, SaId, ike,
};
use crate::informational::be_u32;
use crate::keys::{self, Phase1Keys};
use crate::main_mode::ct_eq;
use crate::payload_list::{PayloadList, Spanned};
use crate::policy::{EspTransform, Mode, OfferedP2, decode_p2, encap_mode, encode_p2};
use crate::state::{Keyed, QmAnswer, QmOffer, QmStage, QmState};
use crate::wire::consts::{encap, exchange, life, notify, p2attr, proto};
use crate::wire::{
    self, Attribute, Header, IdPayload, Identity, NotifyPayload, Payload, Proposal, SaPayload,
    Transform,
};
use rand_core::{CryptoRng, RngCore};
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

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

/// A decrypted Quick Mode message.
struct Opened {
    plain: Vec<u8>,
    payloads: Spanned,
    /// The IV of the next message: our answer, or the peer's next one.
    next_iv: Vec<u8>,
    /// The HASH payload that leads it.
    hash: Vec<u8>,
    /// What that HASH covers (everything after it).
    rest: Range<usize>,
}

impl Opened {
    fn covered(&self) -> &[u8] {
        self.plain.get(self.rest.clone()).unwrap_or_default()
    }
}

/// What a QM1 asks for.
struct Qm1 {
    sa: SaPayload,
    ni: Vec<u8>,
    /// PFS public value, if sent.
    ke: Option<Vec<u8>>,
    /// IDci, IDcr when sent.
    ids: Vec<IdPayload>,
    /// The initiator's original address (NAT-OA), if sent.
    peer_oa: Option<IpAddr>,
}

impl Qm1 {
    fn parse(p: &Spanned) -> Result<Qm1, HandleError> {
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let ni = p.find_nonce().ok_or(HandleError::Missing("NONCE"))?;
        Ok(Qm1 {
            sa: sa.clone(),
            ni: ni.to_vec(),
            ke: p.find_ke().map(<[u8]>::to_vec),
            ids: p.ids().cloned().collect(),
            peer_oa: p.nat_oa_addrs().next(),
        })
    }

    /// The selectors as we see them: ours are IDcr, the peer's IDci.
    fn request(&self) -> Phase2Request {
        match self.ids.as_slice() {
            [ci, cr, ..] => Phase2Request {
                local_proxy: Some(cr.clone()),
                remote_proxy: Some(ci.clone()),
            },
            _ => Phase2Request {
                local_proxy: None,
                remote_proxy: None,
            },
        }
    }
}

/// The proposal and transform a responder takes from a QM1.
struct Choice {
    number: u8,
    peer_spi: u32,
    transform: Transform,
    offer: OfferedP2,
    mode: Mode,
}

impl Choice {
    /// ESP in UDP (NAT-T).
    fn udp(&self) -> bool {
        encap_mode(self.offer.encap).is_some_and(|m| m.1)
    }
}

/// Lifetimes a responder agrees to: the shorter of the two wins, and the
/// initiator is told when ours is shorter (RESPONDER-LIFETIME).
struct Lifetimes {
    secs: u64,
    kb: u64,
    notify_secs: Option<u64>,
    notify_kb: Option<u64>,
}

fn agree_lifetimes(ours_s: u64, ours_k: u64, o: &OfferedP2) -> Lifetimes {
    let peer_s = o.life_secs.unwrap_or(DEFAULT_LIFE_SECS);
    Lifetimes {
        secs: peer_s.min(ours_s),
        kb: min_opt(ours_k, o.life_kb),
        notify_secs: (ours_s < peer_s).then_some(ours_s),
        notify_kb: o.life_kb.is_some_and(|k| ours_k < k).then_some(ours_k),
    }
}

/// What one IPsec SA pair is made of.
struct ChildParams<'a> {
    esp: EspTransform,
    mode: Mode,
    udp: bool,
    our_spi: u32,
    peer_spi: u32,
    /// PFS shared secret g(qm)^xy.
    gqm: Option<&'a [u8]>,
    ni: &'a [u8],
    nr: &'a [u8],
    life_secs: u64,
    life_kb: u64,
    request: &'a Phase2Request,
    initiator: bool,
    peer_original: Option<IpAddr>,
}

/// KEYMAT for one direction, split into encryption and integrity keys.
fn esp_keys(k: &Phase1Keys, p: &ChildParams, spi: u32) -> EspKeys {
    let el = p.esp.encr.key_len();
    let il = p.esp.integ.map_or(0, |h| h.digest_len());
    let km = keys::keymat(
        k,
        p.gqm,
        proto::ESP,
        &spi.to_be_bytes(),
        p.ni,
        p.nr,
        el + il,
    );
    let (e, i) = km.split_at(el.min(km.len()));
    EspKeys {
        encryption: zeroize::Zeroizing::new(e.to_vec()),
        integrity: zeroize::Zeroizing::new(i.to_vec()),
    }
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    fn new_mid(&mut self, id: SaId) -> u32 {
        loop {
            let m = self.rng.next_u32();
            if m != 0 && !self.sas.get(&id).is_some_and(|s| s.qms.contains_key(&m)) {
                return m;
            }
        }
    }

    /// Our Quick Mode `mid` on SA `id` while it waits for QM2, with its selectors.
    fn qm_offer(&self, id: SaId, mid: u32) -> Option<(&QmOffer, &Phase2Request)> {
        let q = self.sas.get(&id)?.qms.get(&mid)?;
        Some((q.offer()?, &q.request))
    }

    /// The peer's Quick Mode `mid` on SA `id` while it waits for QM3.
    fn qm_answer(&self, id: SaId, mid: u32) -> Option<&QmAnswer> {
        match &self.sas.get(&id)?.qms.get(&mid)?.stage {
            QmStage::RQm2(a) => Some(a),
            _ => None,
        }
    }

    /// Keys and last phase 1 CBC block of established SA `id`.
    fn established_keys(&self, id: SaId) -> Result<&Keyed, HandleError> {
        self.sas
            .get(&id)
            .and_then(|s| s.hs.established())
            .ok_or(HandleError::Unexpected(
                "quick mode before phase 1 complete",
            ))
    }

    /// Start Quick Mode on an established phase 1 (callers check that it is).
    pub(crate) fn qm_initiate(
        &mut self,
        now: Instant,
        id: SaId,
        request: Phase2Request,
        rekey_of: Option<u32>,
    ) {
        if self.established_keys(id).is_err() {
            return;
        }
        let mid = self.new_mid(id);
        let ni = self.random_bytes(20);
        let pfs = self.cfg.pfs;
        let dh = pfs.map(|g| {
            let (p, public) = g.generate(&mut self.rng);
            (g, p, public)
        });
        let our_spi = self.spis.allocate();
        let Some(s) = self.sas.get(&id) else { return };
        let (nat, natd) = (
            s.nat().then_some(s.natt).flatten(),
            s.natt == Some(NatTVariant::Draft),
        );
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
            after.push(nat_oa(s.natd_local.ip(), natd));
            after.push(nat_oa(s.natd_remote.ip(), natd));
        }
        let Ok(e) = self.established_keys(id) else {
            return;
        };
        let iv = keys::message_iv(e.keys.prf, e.keys.encr, &e.iv, mid);
        let hash = keys::hash1(&e.keys, mid, &wire::emit_payloads(&after).1);
        let mut payloads = vec![Payload::Hash(hash)];
        payloads.extend(after);
        let header = self.header(id, exchange::QUICK, mid);
        let (msg, next_iv) = Self::encrypt(&e.keys, header, &payloads, &iv);
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
        let Some(t) = self.queue(id, msg) else {
            return;
        };
        let deadline = now + self.cfg.retransmit_initial;
        let offer = QmOffer {
            iv: next_iv,
            ni,
            dh: dh.map(|(g, p, _)| (g, p)),
            our_spi,
            offered,
            rekey_of,
        };
        self.stats.handshakes.quick_mode.started += 1;
        if let Some(s) = self.sas.get_mut(&id) {
            s.qms.insert(
                mid,
                QuickMode {
                    stage: QmStage::IQm1(offer),
                    request,
                    last_tx: Some(t.clone()),
                    last_rx: vec![],
                    retx: Some(Retx {
                        deadline,
                        count: 0,
                        msg: t,
                    }),
                },
            );
        }
    }

    /// Decrypt a phase 2 message with `iv` and find the HASH that leads it.
    fn qm_open(&self, id: SaId, data: &[u8], iv: &[u8]) -> Result<Opened, HandleError> {
        let (h, body) = Header::parse(data)?;
        if !h.is_encrypted() {
            return Err(HandleError::Unexpected("cleartext quick mode"));
        }
        let k = &self.established_keys(id)?.keys;
        let (plain, next_iv) = Self::decrypt(k, body, iv)?;
        let payloads = wire::parse_payloads_spanned(h.next_payload, &plain).map_err(|e| {
            ike!("ISAKMP ({}): malformed phase 2 message: {}", id, e);
            HandleError::BadHash
        })?;
        let Some((Payload::Hash(hash), first)) = payloads.first().cloned() else {
            return Err(HandleError::Missing("HASH"));
        };
        let end = payloads.last().map_or(first.end, |(_, r)| r.end);
        Ok(Opened {
            plain,
            payloads,
            next_iv,
            hash,
            rest: first.end..end,
        })
    }

    pub(crate) fn qm_handle(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let s = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?;
        if !s.is_established() {
            return Err(HandleError::Unexpected(
                "quick mode before phase 1 complete",
            ));
        }
        let mid = h.message_id;
        let state = match s.qms.get(&mid) {
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
            Some(q) => Some(q.state()),
            None => None,
        };
        match state {
            None => {
                let open = s.qms.values().filter(|q| q.in_progress()).count();
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
    /// nonce `ni`) asks for the selectors `req` our own, still unanswered
    /// Quick Mode asks for (both ends wanted the same SA at once). Only one
    /// may go on, or two IPsec SA pairs come up: both ends see both nonces,
    /// so the Quick Mode with the higher initiator nonce goes on. True when
    /// the peer's goes on (ours, if any, is dropped quietly: it never got
    /// an answer, nothing was installed); false when ours does and the
    /// peer's QM1 is to be ignored (the peer drops it on seeing ours).
    fn qm_collision_lost(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        req: &Phase2Request,
        ni: &[u8],
    ) -> bool {
        let Some(peer) = self.sas.get(&id).map(|s| s.remote.ip()) else {
            return false;
        };
        let ours = self.sa_peers.get(peer).find_map(|sid| {
            self.sas.get(&sid)?.qms.iter().find_map(|(m, q)| {
                let o = q.offer()?;
                (o.rekey_of.is_none() && q.request == *req).then(|| (sid, *m, o.ni.as_slice() > ni))
            })
        });
        // Ours may be done just now: the peer's QM1 crossed our QM2 on the
        // wire. It lost if its nonce is the lower: the peer dropped it on
        // seeing ours, and would never confirm an answer. (Later, a QM1
        // for these selectors is a new request.)
        let recent = now.checked_sub(self.cfg.retransmit_initial);
        let done = self.sa_peers.get(peer).find_map(|sid| {
            self.sas
                .get(&sid)?
                .qms
                .iter()
                .find_map(|(m, q)| match &q.stage {
                    QmStage::Complete {
                        ni: Some(o),
                        done_at,
                        ..
                    } if q.request == *req
                        && o.as_slice() > ni
                        && recent.is_none_or(|r| *done_at > r) =>
                    {
                        Some(*m)
                    }
                    _ => None,
                })
        });
        if let (None, Some(m)) = (&ours, done) {
            ike!(
                "ISAKMP ({}): QM {} collided with our QM {} for the same proxies, which is done; ignoring it",
                id,
                mid,
                m
            );
            return false;
        }
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
                if let Some(s) = self.sas.get_mut(&sid) {
                    s.qms.remove(&m);
                }
                true
            }
        }
    }

    /// IKE_QM_READY, a peer's QM1: decrypt and check HASH(1), settle a
    /// collision, choose a proposal, allocate our SPI, answer with QM2 and
    /// key the IPsec SA pair, which waits for QM3.
    fn qm_responder_qm1(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let opened = self.open_qm1(id, mid, data)?;
        ike!(
            "ISAKMP ({}): processing HASH payload. message ID = {}",
            id,
            mid
        );
        let qm1 = Qm1::parse(&opened.payloads)?;
        let request = qm1.request();
        if !self.qm_collision_lost(now, id, mid, &request, &qm1.ni) {
            return Ok(());
        }
        ike!(
            "ISAKMP ({}): processing SA payload. message ID = {}",
            id,
            mid
        );
        let Some(choice) = self.choose_p2(id, &qm1) else {
            self.refuse_qm1(now, id, &qm1.sa);
            return Err(HandleError::NoProposal);
        };
        ike!("ISAKMP ({}): QM Responder gets spi", id);
        let our_spi = self.spis.allocate();
        let nr = self.random_bytes(20);
        let (gqm, our_ke) = self.pfs_responder(choice.offer.group, qm1.ke.as_deref())?;
        let life = agree_lifetimes(
            self.cfg.sa_lifetime_secs as u64,
            self.cfg.sa_lifetime_kb,
            &choice.offer,
        );
        let (msg, iv) = self.build_qm2(
            id,
            mid,
            &qm1,
            &choice,
            our_spi,
            &nr,
            our_ke,
            &life,
            &opened.next_iv,
        )?;
        let child = self.make_child(
            id,
            &ChildParams {
                esp: choice.offer.esp,
                mode: choice.mode,
                udp: choice.udp(),
                our_spi,
                peer_spi: choice.peer_spi,
                gqm: gqm.as_deref().map(|v| v.as_slice()),
                ni: &qm1.ni,
                nr: &nr,
                life_secs: life.secs,
                life_kb: life.kb,
                request: &request,
                initiator: false,
                peer_original: qm1.peer_oa,
            },
        )?;
        self.await_qm3(now, id, mid, data, msg, request, iv, qm1.ni, nr, child);
        Ok(())
    }

    /// QM1's IV (from the last phase 1 block and the M-ID), decryption and
    /// HASH(1) = prf(SKEYID_a, M-ID | rest).
    fn open_qm1(&self, id: SaId, mid: u32, data: &[u8]) -> Result<Opened, HandleError> {
        let e = self.established_keys(id)?;
        let iv = keys::message_iv(e.keys.prf, e.keys.encr, &e.iv, mid);
        let opened = self.qm_open(id, data, &iv)?;
        if !ct_eq(&keys::hash1(&e.keys, mid, opened.covered()), &opened.hash) {
            ike!("ISAKMP ({}): QM HASH(1) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        Ok(opened)
    }

    /// The first acceptable transform of the first ESP proposal that has
    /// one, narrated as IOS does.
    fn choose_p2(&self, id: SaId, qm1: &Qm1) -> Option<Choice> {
        for prop in &qm1.sa.proposals {
            ike!("ISAKMP ({}): Checking IPSec proposal {}", id, prop.number);
            let Some(peer_spi) = be_u32(&prop.spi).filter(|_| prop.protocol == proto::ESP) else {
                continue;
            };
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
                if let Some(mode) = self.p2_acceptable(&o, qm1.ke.is_some()) {
                    ike!("ISAKMP ({}): atts are acceptable.", id);
                    return Some(Choice {
                        number: prop.number,
                        peer_spi,
                        transform: t.clone(),
                        offer: o,
                        mode,
                    });
                }
                ike!("ISAKMP ({}): atts not acceptable.", id);
            }
        }
        None
    }

    /// Nothing acceptable: NO-PROPOSAL-CHOSEN, naming the first proposal's SPI.
    fn refuse_qm1(&mut self, now: Instant, id: SaId, sa: &SaPayload) {
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
    }

    /// PFS as responder: with a group agreed and the initiator's public
    /// value, our own and the shared secret.
    #[allow(clippy::type_complexity)]
    fn pfs_responder(
        &mut self,
        group: Option<GroupId>,
        ke: Option<&[u8]>,
    ) -> Result<(Option<zeroize::Zeroizing<Vec<u8>>>, Option<Vec<u8>>), HandleError> {
        let (Some(g), Some(ke)) = (group, ke) else {
            return Ok((None, None));
        };
        if ke.len() != g.public_len() {
            return Err(HandleError::BadKe);
        }
        let (p, public) = g.generate(&mut self.rng);
        let gqm = g.shared(&p, ke).map_err(|_| HandleError::BadKe)?;
        Ok((Some(gqm), Some(public)))
    }

    /// QM2: HASH(2), the chosen proposal with our SPI, Nr, [KE], the IDs
    /// back, [RESPONDER-LIFETIME], [NAT-OA]; encrypted with the IV QM1
    /// left. Returns the message and the IV of QM3.
    #[allow(clippy::too_many_arguments)]
    fn build_qm2(
        &self,
        id: SaId,
        mid: u32,
        qm1: &Qm1,
        choice: &Choice,
        our_spi: u32,
        nr: &[u8],
        our_ke: Option<Vec<u8>>,
        life: &Lifetimes,
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), HandleError> {
        let mut after = vec![
            Payload::Sa(SaPayload {
                doi: qm1.sa.doi,
                situation: qm1.sa.situation,
                proposals: vec![Proposal {
                    number: choice.number,
                    protocol: proto::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms: vec![choice.transform.clone()],
                }],
            }),
            Payload::Nonce(nr.to_vec()),
        ];
        if let Some(k) = our_ke {
            after.push(Payload::Ke(k));
        }
        for i in &qm1.ids {
            after.push(Payload::Id(i.clone()));
        }
        if life.notify_secs.is_some() || life.notify_kb.is_some() {
            ike!("ISAKMP ({}): sending RESPONDER-LIFETIME notify", id);
            after.push(Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: proto::ESP,
                spi: our_spi.to_be_bytes().to_vec(),
                msg_type: notify::RESPONDER_LIFETIME,
                data: lifetime_attrs(life.notify_secs, life.notify_kb),
            }));
        }
        let s = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?;
        if choice.udp() && choice.mode == Mode::Transport && qm1.peer_oa.is_some() {
            let draft = s.natt == Some(NatTVariant::Draft);
            after.push(nat_oa(s.natd_local.ip(), draft));
            after.push(nat_oa(s.natd_remote.ip(), draft));
        }
        let k = &self.established_keys(id)?.keys;
        let hash = keys::hash2(k, mid, &qm1.ni, &wire::emit_payloads(&after).1);
        let mut payloads = vec![Payload::Hash(hash)];
        payloads.extend(after);
        let header = self.header(id, exchange::QUICK, mid);
        Ok(Self::encrypt(k, header, &payloads, iv))
    }

    /// Send QM2 and keep the agreed SA pair until QM3 confirms it.
    #[allow(clippy::too_many_arguments)]
    fn await_qm3(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        qm1: &[u8],
        qm2: Vec<u8>,
        request: Phase2Request,
        iv: Vec<u8>,
        ni: Vec<u8>,
        nr: Vec<u8>,
        child: ChildSa,
    ) {
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_READY  New State = {}",
            id,
            mid,
            QmState::RQm2.ios_name()
        );
        let Some(t) = self.queue(id, qm2) else {
            return;
        };
        let deadline = now + self.cfg.retransmit_initial;
        self.stats.handshakes.quick_mode.started += 1;
        if let Some(s) = self.sas.get_mut(&id) {
            s.qms.insert(
                mid,
                QuickMode {
                    stage: QmStage::RQm2(QmAnswer {
                        iv,
                        ni,
                        nr,
                        child: Box::new(child),
                    }),
                    request,
                    last_tx: Some(t.clone()),
                    last_rx: qm1.to_vec(),
                    retx: Some(Retx {
                        deadline,
                        count: 0,
                        msg: t,
                    }),
                },
            );
        }
    }

    /// An IPsec SA pair keyed from phase 1 SA `id`: KEYMAT per direction
    /// (RFC 2409 5.5), encapsulation from the SA's ports.
    fn make_child(&self, id: SaId, p: &ChildParams) -> Result<ChildSa, HandleError> {
        let s = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?;
        let k = &self.established_keys(id)?.keys;
        Ok(ChildSa {
            phase1: id,
            local: s.local,
            remote: s.remote,
            inbound_spi: p.our_spi,
            outbound_spi: p.peer_spi,
            transform: p.esp,
            mode: p.mode,
            encapsulation: if p.udp {
                Encapsulation::Udp {
                    local_port: s.local.port(),
                    remote_port: s.remote.port(),
                }
            } else {
                Encapsulation::None
            },
            inbound: esp_keys(k, p, p.our_spi),
            outbound: esp_keys(k, p, p.peer_spi),
            lifetime_secs: p.life_secs.min(u32::MAX as u64) as u32,
            lifetime_kb: p.life_kb,
            local_proxy: p.request.local_proxy.clone(),
            remote_proxy: p.request.remote_proxy.clone(),
            initiator: p.initiator,
            peer_original: p.peer_original,
        })
    }

    /// IKE_QM_I_QM1, the responder's QM2: check HASH(2) and the choice
    /// against what we offered, key the SA pair, confirm with QM3.
    fn qm_initiator_qm2(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let not_ours = HandleError::Unexpected("QM2 without our QM1");
        let iv = self.qm_offer(id, mid).ok_or(not_ours.clone())?.0.iv.clone();
        let opened = self.qm_open(id, data, &iv)?;
        let (o, request) = self.qm_offer(id, mid).ok_or(not_ours)?;
        let k = &self.established_keys(id)?.keys;
        if !ct_eq(&keys::hash2(k, mid, &o.ni, opened.covered()), &opened.hash) {
            ike!("ISAKMP ({}): QM HASH(2) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        let p = &opened.payloads;
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let nr = p
            .find_nonce()
            .ok_or(HandleError::Missing("NONCE"))?
            .to_vec();
        let ke = p.find_ke();
        let prop = sa.proposals.first().ok_or(HandleError::NoProposal)?;
        let t = prop.transforms.first().ok_or(HandleError::NoProposal)?;
        let chosen = decode_p2(t).ok_or(HandleError::NoProposal)?;
        if prop.protocol != proto::ESP {
            return Err(HandleError::NoProposal);
        }
        let peer_spi = be_u32(&prop.spi).ok_or(HandleError::NoProposal)?;
        let (mode, ours) = o
            .offered
            .get((prop.number as usize).wrapping_sub(1))
            .filter(|(_, x)| {
                x.esp == chosen.esp && x.encap == chosen.encap && x.group == chosen.group
            })
            .ok_or(HandleError::NoProposal)?;
        let gqm = match (&o.dh, ke) {
            (Some((g, p)), Some(ke)) => {
                if ke.len() != g.public_len() {
                    return Err(HandleError::BadKe);
                }
                Some(g.shared(p, ke).map_err(|_| HandleError::BadKe)?)
            }
            (None, None) => None,
            _ => return Err(HandleError::BadKe),
        };
        let mut life_s = min_opt(
            ours.life_secs.unwrap_or(DEFAULT_LIFE_SECS),
            chosen.life_secs,
        );
        let mut life_k = min_opt(ours.life_kb.unwrap_or(u64::MAX), chosen.life_kb);
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
        let request = request.clone();
        let child = self.make_child(
            id,
            &ChildParams {
                esp: chosen.esp,
                mode: *mode,
                udp: encap_mode(chosen.encap).is_some_and(|m| m.1),
                our_spi: o.our_spi,
                peer_spi,
                gqm: gqm.as_deref().map(|v| v.as_slice()),
                ni: &o.ni,
                nr: &nr,
                life_secs: life_s,
                life_kb: life_k,
                request: &request,
                initiator: true,
                peer_original: peer_oa,
            },
        )?;
        let h3 = keys::hash3(k, mid, &o.ni, &nr);
        let rekey_of = o.rekey_of;
        let won_ni = rekey_of.is_none().then(|| o.ni.clone());
        let header = self.header(id, exchange::QUICK, mid);
        let (msg, _) = Self::encrypt(k, header, &[Payload::Hash(h3)], &opened.next_iv);
        let t = self.queue(id, msg);
        if let Some(q) = self.sas.get_mut(&id).and_then(|s| s.qms.get_mut(&mid)) {
            q.stage = QmStage::Complete {
                initiator: true,
                done_at: now,
                ni: won_ni,
            };
            q.retx = None;
            q.last_rx = data.to_vec();
            q.last_tx = t;
        }
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_I_QM1  New State = {}",
            id,
            mid,
            QmState::Complete.ios_name()
        );
        self.install_child(now, child, request, rekey_of);
        Ok(())
    }

    /// IKE_QM_R_QM2, the initiator's QM3: check HASH(3) and install the
    /// SA pair agreed in QM2.
    fn qm_responder_qm3(
        &mut self,
        now: Instant,
        id: SaId,
        mid: u32,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let not_ours = HandleError::Unexpected("QM3 without our QM2");
        let iv = self.qm_answer(id, mid).ok_or(not_ours.clone())?.iv.clone();
        let opened = self.qm_open(id, data, &iv)?;
        let a = self.qm_answer(id, mid).ok_or(not_ours)?;
        let want = keys::hash3(&self.established_keys(id)?.keys, mid, &a.ni, &a.nr);
        if !ct_eq(&want, &opened.hash) {
            ike!("ISAKMP ({}): QM HASH(3) mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        let q = self
            .sas
            .get_mut(&id)
            .and_then(|s| s.qms.get_mut(&mid))
            .ok_or(HandleError::Unexpected("QM3 without our QM2"))?;
        let done = QmStage::Complete {
            initiator: false,
            done_at: now,
            ni: None,
        };
        let QmStage::RQm2(a) = std::mem::replace(&mut q.stage, done) else {
            return Err(HandleError::Unexpected("QM3 without our QM2"));
        };
        q.retx = None;
        q.last_rx = data.to_vec();
        q.last_tx = None;
        let request = q.request.clone();
        ike!(
            "ISAKMP ({}): Node {}, Old State = IKE_QM_R_QM2  New State = {}",
            id,
            mid,
            QmState::Complete.ios_name()
        );
        self.install_child(now, *a.child, request, None);
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
        self.stats.handshakes.quick_mode.completed += 1;
        match rekey_of {
            Some(old) => self.events.push_back(Event::ChildSaRekeyed {
                old_inbound_spi: old,
                new: c,
            }),
            None => self.events.push_back(Event::ChildSaInstalled(c)),
        }
    }
}
