//! Main Mode (identity protection), initiator and responder, with the
//! IOS proposal-selection rule and NAT-T detection.

use crate::Instant;
use crate::crypto::{DhGroup, DhPrivate, GroupId, HashAlg, Prf};
use crate::endpoint::{Endpoint, HandleError, NatTVariant, SaId, ike, narrate};
use crate::keys;
use crate::payload_list::{PayloadList, Spanned, body_of};
use crate::policy::{IkePolicy, decode_p1, p1_match};
use crate::reason::Reason;
use crate::state::{AuthInputs, Chosen, Handshake, KeyExchange, Keyed, Offered, P1State};
use crate::wire::consts::{exchange, notify, p1attr, proto};
use crate::wire::vendor::Vendor;
use crate::wire::{self, Header, NotifyPayload, Payload, Proposal, SaPayload, Transform};
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Constant-time equality for hashes.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The KE and NONCE payloads of a Main or Aggressive Mode message.
pub(crate) fn ke_nonce(p: &Spanned) -> Result<(Vec<u8>, Vec<u8>), HandleError> {
    let ke = p.find_ke().ok_or(HandleError::Missing("KE"))?;
    let nonce = p.find_nonce().ok_or(HandleError::Missing("NONCE"))?;
    Ok((ke.to_vec(), nonce.to_vec()))
}

/// What a peer's vendor IDs tell: DPD support and the NAT-T flavour.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PeerVendors {
    pub dpd: bool,
    pub natt: Option<NatTVariant>,
}

/// g^xy, SKEYID, SKEYID_d/a/e and the first phase 1 IV (RFC 2409 5 and
/// Appendix B), once both public values and nonces are known. `policy` is
/// the agreed one; its group is the group of `dh`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive_keys(
    policy: IkePolicy,
    psk: &[u8],
    dh: &DhPrivate,
    peer_public: &[u8],
    ni: &[u8],
    nr: &[u8],
    gxi: &[u8],
    gxr: &[u8],
    icookie: &[u8; 8],
    rcookie: &[u8; 8],
) -> Result<Keyed, HandleError> {
    let gxy = policy
        .group
        .shared(dh, peer_public)
        .map_err(|_| HandleError::BadKe)?;
    let skeyid = keys::skeyid_psk(policy.hash, psk, ni, nr);
    Ok(Keyed {
        policy,
        keys: keys::derive_phase1(policy.hash, policy.encr, skeyid, &gxy, icookie, rcookie),
        iv: keys::phase1_iv(policy.hash, policy.encr, gxi, gxr),
    })
}

/// Whether `got` is the HASH_I (`peer_is_initiator`) or HASH_R the peer
/// must send over its ID body `id_b`.
pub(crate) fn auth_ok(
    k: &Keyed,
    a: &AuthInputs,
    icookie: &[u8; 8],
    rcookie: &[u8; 8],
    id_b: &[u8],
    got: &[u8],
    peer_is_initiator: bool,
) -> bool {
    let want = keys::auth_hash(
        &k.keys,
        peer_is_initiator,
        &a.gxi,
        &a.gxr,
        icookie,
        rcookie,
        &a.sai_b,
        id_b,
    );
    ct_eq(&want, got) && got.len() == k.keys.prf.output_len()
}

/// A peer's public value must have the group's length and its nonce 8..=256 bytes (RFC 2409).
pub(crate) fn check_ke_nonce(group: GroupId, ke: &[u8], nonce: &[u8]) -> Result<(), HandleError> {
    if ke.len() != group.public_len() || !(8..=256).contains(&nonce.len()) {
        return Err(HandleError::BadKe);
    }
    Ok(())
}

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// Our phase 1 SA payload: all policies by priority, one proposal.
    pub(crate) fn p1_sa_payload(policies: &[IkePolicy]) -> SaPayload {
        SaPayload {
            doi: 1,
            situation: 1,
            proposals: vec![Proposal {
                number: 1,
                protocol: proto::ISAKMP,
                spi: vec![],
                transforms: policies
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.to_transform(i as u8 + 1))
                    .collect(),
            }],
        }
    }

    pub(crate) fn mm_initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        psk: Zeroizing<Vec<u8>>,
    ) -> SaId {
        let ic = self.new_cookie();
        let sa = Self::p1_sa_payload(&self.cfg.sorted_policies());
        let sai_b = wire::emit_payloads(&[Payload::Sa(sa.clone())]).1[4..].to_vec();
        let hs = Handshake::IMm1(Offered { sai_b, psk });
        let id = self.new_phase1(now, true, false, ic, [0; 8], local, remote, hs);
        ike!(
            "ISAKMP: ({}): found peer pre-shared key matching {}",
            id,
            remote.ip()
        );
        ike!("ISAKMP ({}): beginning Main Mode exchange", id);
        let mut payloads = vec![Payload::Sa(sa)];
        payloads.extend(self.our_vendor_ids());
        let msg = wire::Message {
            header: self.header(id, exchange::MAIN, 0),
            payloads,
        }
        .emit();
        narrate(id, P1State::Ready, P1State::IMm1);
        self.send_p1(now, id, msg, true);
        id
    }

    /// IOS selection: our policies in priority order, each against the
    /// peer's transforms in order; the first full match wins.
    pub(crate) fn select_p1(&self, sa: &SaPayload) -> Option<(IkePolicy, Transform, u8)> {
        for pol in self.cfg.sorted_policies() {
            for prop in sa.proposals.iter().filter(|p| p.protocol == proto::ISAKMP) {
                for t in &prop.transforms {
                    ike!(
                        "ISAKMP: Checking ISAKMP transform {} against priority {} policy",
                        t.number,
                        pol.priority
                    );
                    let Some(o) = decode_p1(t) else {
                        ike!("ISAKMP:      unsupported transform attributes");
                        continue;
                    };
                    ike!("ISAKMP:      encryption {}", o.encr.ios_name());
                    ike!("ISAKMP:      hash {}", o.hash.ios_name());
                    ike!("ISAKMP:      default group {}", o.group.ike_id());
                    ike!("ISAKMP:      auth pre-share");
                    if let Some(l) = o.lifetime {
                        ike!("ISAKMP:      life type in seconds");
                        match t.attributes.iter().find(|a| a.ty == p1attr::LIFE_DURATION) {
                            Some(crate::wire::Attribute {
                                value: crate::wire::AttrValue::Variable(b),
                                ..
                            }) => ike!(
                                "ISAKMP:      life duration (VPI) of  {}",
                                b.iter()
                                    .map(|x| format!("{x:#x}"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                            _ => ike!("ISAKMP:      life duration (basic) of {}", l),
                        }
                    }
                    if let Some(life) = p1_match(&pol, &o) {
                        ike!("ISAKMP: atts are acceptable. Next payload is 0");
                        ike!("ISAKMP: Returning Actual lifetime: {}", life);
                        let mut agreed = pol;
                        agreed.lifetime = life;
                        return Some((agreed, t.clone(), prop.number));
                    }
                    ike!("ISAKMP: atts are not acceptable. Next payload is 0");
                }
            }
        }
        None
    }

    /// Send an unencrypted notification (no SA exists or no keys yet).
    pub(crate) fn send_clear_notify(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        icookie: [u8; 8],
        rcookie: [u8; 8],
        msg_type: u16,
    ) {
        ike!(
            "ISAKMP: sending {} notify to {}",
            crate::wire::consts::notify_name(msg_type),
            remote.ip()
        );
        let m = wire::Message {
            header: Header {
                icookie,
                rcookie,
                next_payload: 0,
                version: 0x10,
                exchange: exchange::INFORMATIONAL,
                flags: 0,
                message_id: 0,
                length: 0,
            },
            payloads: vec![Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: proto::ISAKMP,
                spi: [icookie, rcookie].concat(),
                msg_type,
                data: vec![],
            })],
        };
        let payload = crate::endpoint::frame(local, remote, m.emit());
        self.transmits.push_back(crate::endpoint::Transmit {
            local,
            remote,
            payload,
        });
    }

    pub(crate) fn mm_responder_new(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), HandleError> {
        ike!(
            "ISAKMP (0): received packet from {} dport {} sport {} Global (N) NEW SA",
            remote.ip(),
            local.port(),
            remote.port()
        );
        let (h, body) = Header::parse(data)?;
        let p = wire::parse_payloads_spanned(h.next_payload, body)?;
        let (sa, range) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let Some(psk) = self.cfg.psk_for(remote.ip()).map(|e| e.key.clone()) else {
            ike!("ISAKMP: No pre-shared key with {}!", remote.ip());
            return Err(HandleError::NoPsk(remote.ip()));
        };
        ike!(
            "ISAKMP: (0):found peer pre-shared key matching {}",
            remote.ip()
        );
        ike!("ISAKMP (0): processing SA payload. message ID = 0");
        let Some((policy, chosen, prop_no)) = self.select_p1(sa) else {
            ike!(
                "ISAKMP (0): phase 1 SA policy not acceptable! (local {} remote {})",
                local.ip(),
                remote.ip()
            );
            self.send_clear_notify(local, remote, h.icookie, [0; 8], notify::NO_PROPOSAL_CHOSEN);
            let p1 = &mut self.stats.handshakes.phase1;
            p1.started += 1;
            p1.fail(crate::handshakes::Failure::NoProposalChosen);
            return Err(HandleError::NoProposal);
        };
        self.admit_half_open(remote.ip())?;
        let rc = self.new_cookie();
        let hs = Handshake::RMm2(Chosen {
            policy,
            sai_b: body_of(body, &range).to_vec(),
            psk,
        });
        let id = self.new_phase1(now, false, false, h.icookie, rc, local, remote, hs);
        self.note_crossing_responder(id);
        let payloads: Vec<Payload> = p.iter().map(|(x, _)| x.clone()).collect();
        self.note_vendor_ids(id, &payloads);
        let mut reply = vec![Payload::Sa(SaPayload {
            doi: sa.doi,
            situation: sa.situation,
            proposals: vec![Proposal {
                number: prop_no,
                protocol: proto::ISAKMP,
                spi: vec![],
                transforms: vec![chosen],
            }],
        })];
        narrate(id, P1State::Ready, P1State::RMm1);
        if let Some(s) = self.sas.get_mut(&id) {
            s.last_rx = data.to_vec();
            match s.natt {
                Some(NatTVariant::Rfc) => reply.push(Payload::VendorId(Vendor::NatTRfc.bytes())),
                Some(NatTVariant::Draft) => {
                    reply.push(Payload::VendorId(Vendor::NatTDraft02N.bytes()))
                }
                None => {}
            }
        }
        reply.push(Payload::VendorId(Vendor::Dpd.bytes()));
        let msg = wire::Message {
            header: self.header(id, exchange::MAIN, 0),
            payloads: reply,
        }
        .emit();
        narrate(id, P1State::RMm1, P1State::RMm2);
        self.send_p1(now, id, msg, true);
        Ok(())
    }

    /// A new DH key pair of `group` and a nonce: (private, public, nonce).
    pub(crate) fn new_ke_nonce(&mut self, group: GroupId) -> (DhPrivate, Vec<u8>, Vec<u8>) {
        let (private, public) = group.generate(&mut self.rng);
        let nonce = self.random_bytes(20);
        (private, public, nonce)
    }

    /// NAT-D hash: HASH(CKY-I | CKY-R | IP | Port).
    pub(crate) fn natd_hash(&self, id: SaId, hash: HashAlg, addr: SocketAddr) -> Vec<u8> {
        let Some(s) = self.sas.get(&id) else {
            return vec![];
        };
        let ip = match addr.ip() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        hash.hash(&[&s.icookie, &s.rcookie, &ip, &addr.port().to_be_bytes()])
    }

    /// Our NAT-D payloads: the peer's address as we send to it, then ours.
    pub(crate) fn natd_payloads(&mut self, id: SaId, hash: HashAlg) -> Vec<Payload> {
        let Some(s) = self.sas.get(&id) else {
            return vec![];
        };
        let Some(v) = s.natt else { return vec![] };
        let draft = v == NatTVariant::Draft;
        let (local, remote) = (s.natd_local, s.natd_remote);
        let theirs = self.natd_hash(id, hash, remote);
        let ours = if self.cfg.nat_t == crate::policy::NatTMode::Force {
            // Force mode: a hash that cannot match makes both sides encapsulate.
            self.random_bytes(theirs.len())
        } else {
            self.natd_hash(id, hash, local)
        };
        vec![
            Payload::NatD {
                draft,
                hash: theirs,
            },
            Payload::NatD { draft, hash: ours },
        ]
    }

    /// Compare received NAT-D payloads against what we see.
    pub(crate) fn natd_check(&mut self, id: SaId, hash: HashAlg, p: &[Payload]) {
        let Some(s) = self.sas.get(&id) else { return };
        if s.natt.is_none() {
            return;
        }
        let (local, remote) = (s.natd_local, s.natd_remote);
        let hashes: Vec<&Vec<u8>> = p
            .iter()
            .filter_map(|x| {
                if let Payload::NatD { hash, .. } = x {
                    Some(hash)
                } else {
                    None
                }
            })
            .collect();
        let Some((first, rest)) = hashes.split_first() else {
            return;
        };
        let mine = self.natd_hash(id, hash, local);
        let theirs = self.natd_hash(id, hash, remote);
        let nat_local = !ct_eq(first, &mine) || self.cfg.nat_t == crate::policy::NatTMode::Force;
        let nat_remote = !rest.iter().any(|h| ct_eq(h, &theirs));
        let Some(s) = self.sas.get_mut(&id) else {
            return;
        };
        s.nat_local = nat_local;
        s.nat_remote = nat_remote;
        if nat_local || nat_remote {
            ike!(
                "ISAKMP ({}): NAT found, {} behind a NAT device",
                id,
                if nat_local { "we are" } else { "the peer is" }
            );
        } else {
            ike!("ISAKMP ({}): NAT not found, no NAT-T", id);
        }
    }

    /// Move to UDP 4500 when a NAT was detected (initiator, before MM5/AM3).
    pub(crate) fn float(&mut self, id: SaId) {
        let Some(s) = self.sas.get_mut(&id) else {
            return;
        };
        if s.nat() && s.local.port() != crate::endpoint::NATT_PORT {
            s.local.set_port(crate::endpoint::NATT_PORT);
            s.remote.set_port(crate::endpoint::NATT_PORT);
            ike!("ISAKMP ({}): floating to port 4500", id);
        }
    }

    fn mm_parse_clear(data: &[u8]) -> Result<(Header, Spanned, Vec<u8>), HandleError> {
        let (h, body) = Header::parse(data)?;
        if h.is_encrypted() {
            return Err(HandleError::Unexpected("encrypted message before keys"));
        }
        Ok((
            h,
            wire::parse_payloads_spanned(h.next_payload, body)?,
            body.to_vec(),
        ))
    }

    /// Decrypt a phase 1 message with the SA's running IV.
    pub(crate) fn p1_decrypt(
        &self,
        id: SaId,
        data: &[u8],
    ) -> Result<(Vec<u8>, Spanned, Vec<u8>), HandleError> {
        let (h, body) = Header::parse(data)?;
        let s = self.sas.get(&id).ok_or(HandleError::Decrypt)?;
        let k = s.hs.keyed().ok_or(HandleError::Decrypt)?;
        if !h.is_encrypted() {
            return Err(HandleError::Unexpected("cleartext message after keys"));
        }
        let (plain, next_iv) = Self::decrypt(&k.keys, body, &k.iv)?;
        let p = wire::parse_payloads_spanned(h.next_payload, &plain).map_err(|_| {
            ike!(
                "ISAKMP ({}): decryption produced garbage: probable pre-shared key mismatch",
                id
            );
            HandleError::BadHash
        })?;
        Ok((plain, p, next_iv))
    }

    pub(crate) fn mm_handle(
        &mut self,
        now: Instant,
        id: SaId,
        _h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let state = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?
            .state();
        match state {
            P1State::IMm1 => self.mm_initiator_mm2(now, id, data),
            P1State::RMm2 => self.mm_responder_mm3(now, id, data),
            P1State::IMm3 => self.mm_initiator_mm4(now, id, data),
            P1State::RMm4 => self.mm_responder_mm5(now, id, data),
            P1State::IMm5 => self.mm_initiator_mm6(now, id, data),
            other => Err(HandleError::Unexpected(other.ios_name())),
        }
    }

    /// IKE_I_MM1: the responder's choice; our KE and nonce go out (MM3).
    fn mm_initiator_mm2(&mut self, now: Instant, id: SaId, data: &[u8]) -> Result<(), HandleError> {
        let (h, p, _) = Self::mm_parse_clear(data)?;
        if h.rcookie == [0; 8] {
            // Only the responder's MM2 carries its cookie; an MM1
            // claiming to be from the peer is not an answer.
            return Err(HandleError::Unexpected("MM2 without responder cookie"));
        }
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        ike!("ISAKMP ({}): processing SA payload. message ID = 0", id);
        let t = sa
            .proposals
            .first()
            .and_then(|p| p.transforms.first())
            .ok_or(HandleError::NoProposal)?;
        let o = decode_p1(t).ok_or(HandleError::NoProposal)?;
        let pol = self
            .cfg
            .sorted_policies()
            .into_iter()
            .find_map(|pol| {
                ike!(
                    "ISAKMP ({}): Checking ISAKMP transform {} against priority {} policy",
                    id,
                    t.number,
                    pol.priority
                );
                p1_match(&pol, &o).map(|l| IkePolicy { lifetime: l, ..pol })
            })
            .ok_or(HandleError::NoProposal)?;
        ike!("ISAKMP ({}): atts are acceptable. Next payload is 0", id);
        let payloads: Vec<Payload> = p.into_iter().map(|(x, _)| x).collect();
        self.note_vendor_ids(id, &payloads);
        if let Some(s) = self.sas.get_mut(&id) {
            s.retx = None;
            s.last_rx = data.to_vec();
        }
        narrate(id, P1State::IMm1, P1State::IMm2);
        let (dh, public, nonce) = self.new_ke_nonce(pol.group);
        let out_ke = Payload::Ke(public.clone());
        let out_nonce = Payload::Nonce(nonce.clone());
        self.transition(id, |hs| match hs {
            Handshake::IMm1(o) => Handshake::IMm3(KeyExchange {
                policy: pol,
                sai_b: o.sai_b,
                psk: o.psk,
                dh,
                public,
                nonce,
            }),
            other => other,
        });
        let mut out = vec![out_ke, out_nonce];
        out.extend(self.natd_payloads(id, pol.hash));
        let msg = wire::Message {
            header: self.header(id, exchange::MAIN, 0),
            payloads: out,
        }
        .emit();
        narrate(id, P1State::IMm2, P1State::IMm3);
        self.send_p1(now, id, msg, true);
        Ok(())
    }

    /// IKE_R_MM2: the initiator's KE and nonce; keys derived, ours go out (MM4).
    fn mm_responder_mm3(&mut self, now: Instant, id: SaId, data: &[u8]) -> Result<(), HandleError> {
        let (_, p, _) = Self::mm_parse_clear(data)?;
        let (gxi, ni) = ke_nonce(&p)?;
        let payloads: Vec<Payload> = p.into_iter().map(|(x, _)| x).collect();
        ike!("ISAKMP ({}): processing KE payload. message ID = 0", id);
        ike!("ISAKMP ({}): processing NONCE payload. message ID = 0", id);
        let policy = match self.sas.get(&id).map(|s| &s.hs) {
            Some(Handshake::RMm2(c)) => c.policy,
            _ => return Err(HandleError::Unexpected("MM3 outside IKE_R_MM2")),
        };
        check_ke_nonce(policy.group, &gxi, &ni)?;
        // The source answered our MM2: if its Main Mode crosses ours, one goes on.
        if self.settle_crossing(id) {
            return Ok(());
        }
        if let Some(s) = self.sas.get_mut(&id) {
            s.retx = None;
        }
        // The source answered our MM2: whatever follows is a negotiation.
        self.transition(id, |hs| match hs {
            Handshake::RMm2(c) => Handshake::RMm3(c),
            other => other,
        });
        narrate(id, P1State::RMm2, P1State::RMm3);
        let (dh, gxr, nr) = self.new_ke_nonce(policy.group);
        let keyed = match self.sas.get(&id) {
            Some(
                s @ crate::endpoint::Phase1 {
                    hs: Handshake::RMm3(c),
                    ..
                },
            ) => derive_keys(
                policy, &c.psk, &dh, &gxi, &ni, &nr, &gxi, &gxr, &s.icookie, &s.rcookie,
            ),
            _ => Err(HandleError::Unexpected("MM3 outside IKE_R_MM3")),
        };
        let keyed = match keyed {
            Ok(k) => k,
            Err(e) => {
                self.drop_phase1(now, id, Reason::InvalidKeyExchange, false);
                return Err(e);
            }
        };
        ike!("ISAKMP ({}): SKEYID state generated", id);
        self.natd_check(id, policy.hash, &payloads);
        let out_ke = Payload::Ke(gxr.clone());
        self.transition(id, |hs| match hs {
            Handshake::RMm3(c) => Handshake::RMm4(
                keyed,
                AuthInputs {
                    gxi,
                    gxr,
                    sai_b: c.sai_b,
                },
            ),
            other => other,
        });
        let mut out = vec![out_ke, Payload::Nonce(nr)];
        out.extend(self.natd_payloads(id, policy.hash));
        let msg = wire::Message {
            header: self.header(id, exchange::MAIN, 0),
            payloads: out,
        }
        .emit();
        if let Some(s) = self.sas.get_mut(&id) {
            s.last_rx = data.to_vec();
        }
        narrate(id, P1State::RMm3, P1State::RMm4);
        self.send_p1(now, id, msg, true);
        Ok(())
    }

    /// IKE_I_MM3: the responder's KE and nonce; keys derived, our ID and
    /// HASH_I go out encrypted (MM5).
    fn mm_initiator_mm4(&mut self, now: Instant, id: SaId, data: &[u8]) -> Result<(), HandleError> {
        let (_, p, _) = Self::mm_parse_clear(data)?;
        let (gxr, nr) = ke_nonce(&p)?;
        let payloads: Vec<Payload> = p.into_iter().map(|(x, _)| x).collect();
        ike!("ISAKMP ({}): processing KE payload. message ID = 0", id);
        ike!("ISAKMP ({}): processing NONCE payload. message ID = 0", id);
        let keyed = match self.sas.get(&id) {
            Some(
                s @ crate::endpoint::Phase1 {
                    hs: Handshake::IMm3(kx),
                    ..
                },
            ) => {
                check_ke_nonce(kx.policy.group, &gxr, &nr)?;
                derive_keys(
                    kx.policy, &kx.psk, &kx.dh, &gxr, &kx.nonce, &nr, &kx.public, &gxr, &s.icookie,
                    &s.rcookie,
                )?
            }
            _ => return Err(HandleError::Unexpected("MM4 outside IKE_I_MM3")),
        };
        ike!("ISAKMP ({}): SKEYID state generated", id);
        self.natd_check(id, keyed.policy.hash, &payloads);
        if let Some(s) = self.sas.get_mut(&id) {
            s.retx = None;
            s.last_rx = data.to_vec();
        }
        narrate(id, P1State::IMm3, P1State::IMm4);
        self.transition(id, |hs| match hs {
            Handshake::IMm3(kx) => Handshake::IMm5(
                keyed,
                AuthInputs {
                    gxi: kx.public,
                    gxr,
                    sai_b: kx.sai_b,
                },
            ),
            other => other,
        });
        self.float(id);
        let msg = self.build_auth_msg(id, exchange::MAIN, true)?;
        narrate(id, P1State::IMm4, P1State::IMm5);
        self.send_p1(now, id, msg, true);
        Ok(())
    }

    /// IKE_R_MM4: the initiator's ID and HASH_I; ours go out (MM6) and
    /// phase 1 is complete.
    fn mm_responder_mm5(&mut self, now: Instant, id: SaId, data: &[u8]) -> Result<(), HandleError> {
        let (plain, p, next_iv) = self.p1_decrypt(id, data)?;
        self.verify_auth(id, &plain, &p, true)?;
        if let Some(s) = self.sas.get_mut(&id) {
            if let Some(k) = s.hs.keyed_mut() {
                k.iv = next_iv;
            }
            s.retx = None;
            s.last_rx = data.to_vec();
        }
        narrate(id, P1State::RMm4, P1State::RMm5);
        self.honour_initial_contact(now, id, &p);
        let msg = self.build_auth_msg(id, exchange::MAIN, false)?;
        narrate(id, P1State::RMm5, P1State::RMm6);
        self.send_p1(now, id, msg, false);
        self.p1_complete(now, id, P1State::RMm6);
        Ok(())
    }

    /// IKE_I_MM5: the responder's ID and HASH_R; phase 1 is complete.
    fn mm_initiator_mm6(&mut self, now: Instant, id: SaId, data: &[u8]) -> Result<(), HandleError> {
        let (plain, p, next_iv) = self.p1_decrypt(id, data)?;
        self.verify_auth(id, &plain, &p, false)?;
        if let Some(s) = self.sas.get_mut(&id) {
            if let Some(k) = s.hs.keyed_mut() {
                k.iv = next_iv;
            }
            s.last_rx = data.to_vec();
            s.last_tx = None;
        }
        narrate(id, P1State::IMm5, P1State::IMm6);
        self.p1_complete(now, id, P1State::IMm6);
        Ok(())
    }

    /// ID + HASH_I/HASH_R (+ INITIAL-CONTACT from the initiator), encrypted
    /// in Main Mode; the running IV advances.
    pub(crate) fn build_auth_msg(
        &mut self,
        id: SaId,
        exch: u8,
        initiator: bool,
    ) -> Result<Vec<u8>, HandleError> {
        let gone = HandleError::Unexpected("authentication outside IKE_R_MM4/IKE_I_MM5");
        let local = self.sas.get(&id).ok_or(gone.clone())?.local;
        let idp = self.local_id(local);
        let s = self.sas.get(&id).ok_or(gone.clone())?;
        let (k, a) = match &s.hs {
            Handshake::RMm4(k, a) | Handshake::IMm5(k, a) => (k, a),
            _ => return Err(gone),
        };
        let hash = keys::auth_hash(
            &k.keys,
            initiator,
            &a.gxi,
            &a.gxr,
            &s.icookie,
            &s.rcookie,
            &a.sai_b,
            &idp.body(),
        );
        let mut payloads = vec![Payload::Id(idp), Payload::Hash(hash)];
        // IOS sends INITIAL-CONTACT only when it holds nothing with the peer;
        // during a phase 1 rekey it would wipe the peer's live SAs.
        if initiator && self.cfg.initial_contact && !self.has_other_state(s.remote.ip(), id) {
            payloads.push(Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: proto::ISAKMP,
                spi: [s.icookie, s.rcookie].concat(),
                msg_type: notify::INITIAL_CONTACT,
                data: vec![],
            }));
        }
        let header = self.header(id, exch, 0);
        let (msg, next_iv) = Self::encrypt(&k.keys, header, &payloads, &k.iv);
        if let Some(k) = self.sas.get_mut(&id).and_then(|s| s.hs.keyed_mut()) {
            k.iv = next_iv;
        }
        Ok(msg)
    }

    /// Verify the peer's ID/HASH; `peer_is_initiator` selects HASH_I.
    pub(crate) fn verify_auth(
        &mut self,
        id: SaId,
        plain: &[u8],
        p: &Spanned,
        peer_is_initiator: bool,
    ) -> Result<(), HandleError> {
        let (_, idr) = p.find_id().ok_or(HandleError::Missing("ID"))?;
        let got = p.find_hash().ok_or(HandleError::Missing("HASH"))?;
        ike!("ISAKMP ({}): processing ID payload. message ID = 0", id);
        ike!("ISAKMP ({}): processing HASH payload. message ID = 0", id);
        self.check_auth_hash(id, body_of(plain, &idr), got, peer_is_initiator)
    }

    /// Compare a received HASH_I/HASH_R against the one computed over
    /// `id_b`, in a state that waits for it.
    pub(crate) fn check_auth_hash(
        &self,
        id: SaId,
        id_b: &[u8],
        got: &[u8],
        peer_is_initiator: bool,
    ) -> Result<(), HandleError> {
        let s = self.sas.get(&id).ok_or(HandleError::BadHash)?;
        let (k, a) = match &s.hs {
            Handshake::RMm4(k, a) | Handshake::IMm5(k, a) | Handshake::RAm2(k, a, _) => (k, a),
            _ => return Err(HandleError::Unexpected("no authentication awaited")),
        };
        if !auth_ok(k, a, &s.icookie, &s.rcookie, id_b, got, peer_is_initiator) {
            ike!(
                "ISAKMP ({}): hash verification failed with {}: probable mismatch of pre-shared key",
                id,
                s.remote.ip()
            );
            return Err(HandleError::BadHash);
        }
        Ok(())
    }

    /// INITIAL-CONTACT: the peer rebooted; forget its older SAs.
    pub(crate) fn honour_initial_contact(&mut self, now: Instant, id: SaId, p: &Spanned) {
        let ic = p.notifies().any(|n| n.msg_type == notify::INITIAL_CONTACT);
        if ic && let Some(s) = self.sas.get(&id) {
            let peer = s.remote.ip();
            ike!(
                "ISAKMP ({}): received INITIAL-CONTACT from {}, clearing old SAs",
                id,
                peer
            );
            self.purge_for_initial_contact(now, peer, id);
        }
    }
}
