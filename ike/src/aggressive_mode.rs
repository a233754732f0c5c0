//! Aggressive Mode (PSK), initiator and responder. One DH group only: the
//! initiator offers the policies that share its first policy's group.

use crate::Instant;
use crate::endpoint::{Endpoint, HandleError, NatTVariant, SaId, ike, narrate};
use crate::keys;
use crate::main_mode::{auth_ok, check_ke_nonce, derive_keys, ke_nonce};
use crate::payload_list::{PayloadList, body_of};
use crate::policy::{IkePolicy, decode_p1, p1_match};
use crate::state::{AuthInputs, Handshake, KeyExchange, P1State};
use crate::wire::consts::{exchange, notify, proto};
use crate::wire::vendor::Vendor;
use crate::wire::{self, Header, Payload, Proposal, SaPayload};
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use zeroize::Zeroizing;

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// `None` without a policy to offer.
    pub(crate) fn am_initiate(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        psk: Zeroizing<Vec<u8>>,
    ) -> Option<SaId> {
        let all = self.cfg.sorted_policies();
        let group = all.first()?.group;
        let offered: Vec<IkePolicy> = all.into_iter().filter(|p| p.group == group).collect();
        let ic = self.new_cookie();
        let sa = Self::p1_sa_payload(&offered);
        let sai_b = wire::emit_payloads(&[Payload::Sa(sa.clone())]).1[4..].to_vec();
        let (dh, public, nonce) = self.new_ke_nonce(group);
        let (ke, ni) = (public.clone(), nonce.clone());
        let hs = Handshake::IAm1(KeyExchange {
            policy: offered[0],
            sai_b,
            psk,
            dh,
            public,
            nonce,
        });
        let id = self.new_phase1(now, true, true, ic, [0; 8], local, remote, hs);
        ike!("ISAKMP ({}): beginning Aggressive Mode exchange", id);
        let mut payloads = vec![
            Payload::Sa(sa),
            Payload::Ke(ke),
            Payload::Nonce(ni),
            Payload::Id(self.local_id(local)),
        ];
        payloads.extend(self.our_vendor_ids());
        let msg = wire::Message {
            header: self.header(id, exchange::AGGRESSIVE, 0),
            payloads,
        }
        .emit();
        narrate(id, P1State::Ready, P1State::IAm1);
        self.send_p1(now, id, msg, true);
        Some(id)
    }

    /// The third message (HASH_I, NAT-D), encrypted as IOS and libreswan
    /// send it (RFC 2408 4.7 encrypts it; RFC 2409 5.4 draws it in the
    /// clear, as strongSwan sends it). Encrypted, its last ciphertext block
    /// is the last phase 1 CBC block that Quick Mode IVs derive from, and
    /// every peer agrees. In the clear there is no such block and peers
    /// differ on what to hash instead: strongSwan (and we, as responder)
    /// the phase 1 IV, i.e. hash(g^xi | g^xr) cut to the block size as
    /// RFC 2409 Appendix B defines an IV; libreswan 4 the whole digest.
    fn am3_message(&mut self, id: SaId, payloads: &[Payload]) -> Result<Vec<u8>, HandleError> {
        let header = self.header(id, exchange::AGGRESSIVE, 0);
        #[cfg(test)]
        if self.am3_in_clear {
            return Ok(wire::Message {
                header,
                payloads: payloads.to_vec(),
            }
            .emit());
        }
        let k = match self.sas.get_mut(&id).map(|s| &mut s.hs) {
            Some(Handshake::IAm2(k)) => k,
            _ => return Err(HandleError::Unexpected("AM3 outside IKE_I_AM2")),
        };
        let (msg, next_iv) = Self::encrypt(&k.keys, header, payloads, &k.iv);
        k.iv = next_iv;
        Ok(msg)
    }

    pub(crate) fn am_responder_new(
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
        let (sa, sa_r) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let (gxi, ni) = ke_nonce(&p)?;
        let (_, id_r) = p.find_id().ok_or(HandleError::Missing("ID"))?;
        let Some(psk) = self.cfg.psk_for(remote.ip()).map(|e| e.key.clone()) else {
            ike!("ISAKMP: No pre-shared key with {}!", remote.ip());
            return Err(HandleError::NoPsk(remote.ip()));
        };
        let Some((policy, chosen, prop_no)) = self.select_p1(sa) else {
            self.send_clear_notify(local, remote, h.icookie, [0; 8], notify::NO_PROPOSAL_CHOSEN);
            let p1 = &mut self.stats.handshakes.phase1;
            p1.started += 1;
            p1.fail(crate::handshakes::Failure::NoProposalChosen);
            return Err(HandleError::NoProposal);
        };
        check_ke_nonce(policy.group, &gxi, &ni)?;
        self.admit_half_open(remote.ip())?;
        let rc = self.new_cookie();
        let (dh, gxr, nr) = self.new_ke_nonce(policy.group);
        // Keys before the SA: a public value the group refuses makes none.
        let keyed = derive_keys(
            policy, &psk, &dh, &gxi, &ni, &nr, &gxi, &gxr, &h.icookie, &rc,
        )?;
        let out_ke = Payload::Ke(gxr.clone());
        let auth = AuthInputs {
            gxi,
            gxr,
            sai_b: body_of(body, &sa_r).to_vec(),
        };
        let hs = Handshake::RAm2(keyed, auth, body_of(body, &id_r).to_vec());
        let id = self.new_phase1(now, false, true, h.icookie, rc, local, remote, hs);
        let payloads: Vec<Payload> = p.iter().map(|(x, _)| x.clone()).collect();
        self.note_vendor_ids(id, &payloads);
        narrate(id, P1State::Ready, P1State::RAm1);
        if let Some(s) = self.sas.get_mut(&id) {
            s.last_rx = data.to_vec();
        }
        ike!("ISAKMP ({}): SKEYID state generated", id);
        let idp = self.local_id(local);
        let (hash, natt) = match self.sas.get(&id) {
            Some(
                s @ crate::endpoint::Phase1 {
                    hs: Handshake::RAm2(k, a, _),
                    ..
                },
            ) => (
                keys::auth_hash(
                    &k.keys,
                    false,
                    &a.gxi,
                    &a.gxr,
                    &s.icookie,
                    &s.rcookie,
                    &a.sai_b,
                    &idp.body(),
                ),
                s.natt,
            ),
            _ => return Err(HandleError::Unexpected("SA gone")),
        };
        let mut out = vec![
            Payload::Sa(SaPayload {
                doi: sa.doi,
                situation: sa.situation,
                proposals: vec![Proposal {
                    number: prop_no,
                    protocol: proto::ISAKMP,
                    spi: vec![],
                    transforms: vec![chosen],
                }],
            }),
            out_ke,
            Payload::Nonce(nr),
            Payload::Id(idp),
            Payload::Hash(hash),
        ];
        match natt {
            Some(NatTVariant::Rfc) => out.push(Payload::VendorId(Vendor::NatTRfc.bytes())),
            Some(NatTVariant::Draft) => out.push(Payload::VendorId(Vendor::NatTDraft02N.bytes())),
            None => {}
        }
        out.push(Payload::VendorId(Vendor::Dpd.bytes()));
        out.extend(self.natd_payloads(id, policy.hash));
        let msg = wire::Message {
            header: self.header(id, exchange::AGGRESSIVE, 0),
            payloads: out,
        }
        .emit();
        narrate(id, P1State::RAm1, P1State::RAm2);
        self.send_p1(now, id, msg, true);
        Ok(())
    }

    pub(crate) fn am_handle(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let state = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?
            .state();
        match state {
            P1State::IAm1 => self.am_initiator_am2(now, id, h, data),
            P1State::RAm2 => self.am_responder_am3(now, id, h, data),
            other => Err(HandleError::Unexpected(other.ios_name())),
        }
    }

    /// IKE_I_AM1: the responder's choice, KE, nonce and HASH_R; keys
    /// derived, our HASH_I goes out (AM3) and phase 1 is complete. Nothing
    /// of the SA changes unless HASH_R verifies.
    fn am_initiator_am2(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let (_, body) = Header::parse(data)?;
        if h.is_encrypted() {
            return Err(HandleError::Unexpected("encrypted AM2"));
        }
        if h.rcookie == [0; 8] {
            return Err(HandleError::Unexpected("AM2 without responder cookie"));
        }
        let p = wire::parse_payloads_spanned(h.next_payload, body)?;
        let (sa, _) = p.find_sa().ok_or(HandleError::Missing("SA"))?;
        let (gxr, nr) = ke_nonce(&p)?;
        let hash_r = p.find_hash().ok_or(HandleError::Missing("HASH"))?;
        let (_, id_r) = p.find_id().ok_or(HandleError::Missing("ID"))?;
        let t = sa
            .proposals
            .first()
            .and_then(|p| p.transforms.first())
            .ok_or(HandleError::NoProposal)?;
        let o = decode_p1(t).ok_or(HandleError::NoProposal)?;
        let not_am1 = HandleError::Unexpected("AM2 outside IKE_I_AM1");
        let group = match self.sas.get(&id).map(|s| &s.hs) {
            Some(Handshake::IAm1(kx)) => kx.policy.group,
            _ => return Err(not_am1),
        };
        let pol = self
            .cfg
            .sorted_policies()
            .into_iter()
            .filter(|p| p.group == group)
            .find_map(|pol| p1_match(&pol, &o).map(|l| IkePolicy { lifetime: l, ..pol }))
            .ok_or(HandleError::NoProposal)?;
        ike!("ISAKMP ({}): atts are acceptable. Next payload is 0", id);
        check_ke_nonce(group, &gxr, &nr)?;
        let payloads: Vec<Payload> = p.iter().map(|(x, _)| x.clone()).collect();
        let vendors = self.peer_vendor_ids(id, &payloads);
        let (keyed, auth) = match self.sas.get(&id) {
            Some(
                s @ crate::endpoint::Phase1 {
                    hs: Handshake::IAm1(kx),
                    ..
                },
            ) => {
                let keyed = derive_keys(
                    pol, &kx.psk, &kx.dh, &gxr, &kx.nonce, &nr, &kx.public, &gxr, &s.icookie,
                    &h.rcookie,
                )?;
                ike!("ISAKMP ({}): SKEYID state generated", id);
                let auth = AuthInputs {
                    gxi: kx.public.clone(),
                    gxr,
                    sai_b: kx.sai_b.clone(),
                };
                let ok = auth_ok(
                    &keyed,
                    &auth,
                    &s.icookie,
                    &h.rcookie,
                    body_of(body, &id_r),
                    hash_r,
                    false,
                );
                if !ok {
                    ike!(
                        "ISAKMP ({}): hash verification failed with {}: probable mismatch of pre-shared key",
                        id,
                        s.remote.ip()
                    );
                    return Err(HandleError::BadHash);
                }
                (keyed, auth)
            }
            _ => return Err(not_am1),
        };
        // The responder is authenticated: from here on the SA changes.
        self.apply_vendor_ids(id, vendors);
        self.natd_check(id, pol.hash, &payloads);
        let natd = self.natd_payloads(id, pol.hash);
        if let Some(s) = self.sas.get_mut(&id) {
            s.retx = None;
            s.last_rx = data.to_vec();
        }
        narrate(id, P1State::IAm1, P1State::IAm2);
        self.transition(id, |hs| match hs {
            Handshake::IAm1(_) => Handshake::IAm2(keyed),
            other => other,
        });
        self.float(id);
        let local = self
            .sas
            .get(&id)
            .ok_or(HandleError::Unexpected("SA gone"))?
            .local;
        let idp = self.local_id(SocketAddr::new(local.ip(), 500));
        let hash_i = match self.sas.get(&id) {
            Some(
                s @ crate::endpoint::Phase1 {
                    hs: Handshake::IAm2(k),
                    ..
                },
            ) => keys::auth_hash(
                &k.keys,
                true,
                &auth.gxi,
                &auth.gxr,
                &s.icookie,
                &s.rcookie,
                &auth.sai_b,
                &idp.body(),
            ),
            _ => return Err(HandleError::Unexpected("SA gone")),
        };
        let mut out = vec![Payload::Hash(hash_i)];
        out.extend(natd);
        let msg = self.am3_message(id, &out)?;
        self.send_p1(now, id, msg, false);
        self.p1_complete(now, id, P1State::IAm2);
        Ok(())
    }

    /// IKE_R_AM2: the initiator's HASH_I (encrypted or not); phase 1 is complete.
    fn am_responder_am3(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let (_, body) = Header::parse(data)?;
        let (plain, next_iv) = if h.is_encrypted() {
            let k = self
                .sas
                .get(&id)
                .and_then(|s| s.hs.keyed())
                .ok_or(HandleError::Decrypt)?;
            let (p, iv) = Self::decrypt(&k.keys, body, &k.iv)?;
            (p, Some(iv))
        } else {
            (body.to_vec(), None)
        };
        let p = wire::parse_payloads_spanned(h.next_payload, &plain)
            .map_err(|_| HandleError::BadHash)?;
        let hash_i = p.find_hash().ok_or(HandleError::Missing("HASH"))?;
        let id_b = match self.sas.get(&id).map(|s| &s.hs) {
            Some(Handshake::RAm2(_, _, id_b)) => id_b.clone(),
            _ => return Err(HandleError::Unexpected("AM3 outside IKE_R_AM2")),
        };
        self.check_auth_hash(id, &id_b, hash_i, true)?;
        let payloads: Vec<Payload> = p.into_iter().map(|(x, _)| x).collect();
        let hash = self
            .sas
            .get(&id)
            .and_then(|s| s.hs.policy())
            .map(|p| p.hash)
            .ok_or(HandleError::Unexpected("SA gone"))?;
        self.natd_check(id, hash, &payloads);
        if let Some(s) = self.sas.get_mut(&id) {
            if let (Some(iv), Some(k)) = (next_iv, s.hs.keyed_mut()) {
                k.iv = iv;
            }
            s.retx = None;
            s.last_rx = data.to_vec();
            s.last_tx = None;
        }
        self.p1_complete(now, id, P1State::RAm2);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Instant;
    use crate::crypto::{EncrAlg, GroupId, HashAlg};
    use crate::policy::{EspEncr, EspTransform, InitiateMode, Mode, PskEntry, TransformSet};
    use crate::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::net::SocketAddr;

    fn cfg() -> EngineConfig {
        EngineConfig {
            policies: vec![IkePolicy {
                priority: 10,
                encr: EncrAlg::Aes256,
                hash: HashAlg::Sha256,
                group: GroupId::Modp1024,
                lifetime: 86400,
            }],
            transform_sets: vec![TransformSet {
                name: "t".into(),
                esp: EspTransform {
                    encr: EspEncr::AesCbc(128),
                    integ: Some(HashAlg::Sha1),
                },
                mode: Mode::Transport,
            }],
            psks: vec![PskEntry {
                initiate: InitiateMode::Aggressive,
                ..PskEntry::new("0.0.0.0".parse().unwrap(), 0, b"clear-am3")
            }],
            answer_aggressive: true,
            ..Default::default()
        }
    }

    type Ep = Endpoint<ChaCha20Rng>;

    /// Shuttle datagrams until quiet; returns every datagram (from_a, bytes).
    fn pump(a: &mut Ep, b: &mut Ep, la: SocketAddr, lb: SocketAddr) -> Vec<(bool, Vec<u8>)> {
        let now = Instant::from_secs(1);
        let mut log = vec![];
        loop {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                moved = true;
                log.push((true, t.payload.clone()));
                b.handle(now, lb, la, &t.payload).unwrap();
            }
            while let Some(t) = b.poll_transmit() {
                moved = true;
                log.push((false, t.payload.clone()));
                a.handle(now, la, lb, &t.payload).unwrap();
            }
            if !moved {
                return log;
            }
        }
    }

    fn installed(e: &mut Ep) -> Vec<ChildSa> {
        std::iter::from_fn(|| e.poll_event())
            .filter_map(|e| match e {
                Event::ChildSaInstalled(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// An initiator that sends AM3 in the clear (strongSwan does): the
    /// responder accepts it, and Quick Mode started from either side
    /// agrees on the IV derived from the unencrypted phase 1.
    #[test]
    fn cleartext_third_message_accepted_quick_mode_both_roles() {
        let mut spi = 0x100;
        let mut a = Endpoint::new(
            cfg(),
            ChaCha20Rng::seed_from_u64(1),
            Box::new(move || {
                spi += 1;
                spi
            }),
        );
        a.am3_in_clear = true;
        let mut spi = 0x200;
        let mut b = Endpoint::new(
            cfg(),
            ChaCha20Rng::seed_from_u64(2),
            Box::new(move || {
                spi += 1;
                spi
            }),
        );
        let la: SocketAddr = "172.16.0.1:500".parse().unwrap();
        let lb: SocketAddr = "172.16.0.2:500".parse().unwrap();
        let req = Phase2Request {
            local_proxy: Some(policy::gre_proxy(la.ip())),
            remote_proxy: Some(policy::gre_proxy(lb.ip())),
        };
        a.initiate_phase2(Instant::from_secs(1), la, lb, req)
            .unwrap();
        let log = pump(&mut a, &mut b, la, lb);
        assert_eq!(log[2].1[18], 4, "AM3");
        assert_eq!(log[2].1[19] & 1, 0, "AM3 in the clear");
        let (ca, cb) = (installed(&mut a), installed(&mut b));
        assert_eq!((ca.len(), cb.len()), (1, 1));
        assert_eq!(ca[0].outbound_spi, cb[0].inbound_spi);
        assert_eq!(*ca[0].outbound.encryption, *cb[0].inbound.encryption);
        // The responder starts the next Quick Mode.
        let req = Phase2Request {
            local_proxy: None,
            remote_proxy: None,
        };
        b.initiate_phase2(Instant::from_secs(1), lb, la, req)
            .unwrap();
        pump(&mut a, &mut b, la, lb);
        let (ca, cb) = (installed(&mut a), installed(&mut b));
        assert_eq!((ca.len(), cb.len()), (1, 1));
        assert!(cb[0].initiator);
        assert_eq!(*ca[0].inbound.encryption, *cb[0].outbound.encryption);
    }
}
