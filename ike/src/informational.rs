//! Informational exchanges: notifications, deletes and DPD (RFC 3706).

use crate::Instant;
use crate::endpoint::{Endpoint, Event, HandleError, SaId, ike};
use crate::keys;
use crate::main_mode::ct_eq;
use crate::reason::Reason;
use crate::wire::consts::{exchange, notify, notify_name, proto};
use crate::wire::{self, DeletePayload, Header, NotifyPayload, Payload};
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;

impl<R: RngCore + CryptoRng> Endpoint<R> {
    /// Send an encrypted informational exchange with HASH(1).
    pub(crate) fn send_info(&mut self, _now: Instant, id: SaId, payloads: Vec<Payload>) {
        if self.sas.get(&id).and_then(|s| s.hs.keyed()).is_none() {
            return;
        }
        let mid = loop {
            let m = self.rng.next_u32();
            if m != 0 {
                break m;
            }
        };
        let Some(k) = self.sas.get(&id).and_then(|s| s.hs.keyed()) else {
            return;
        };
        let iv = keys::message_iv(k.keys.prf, k.keys.encr, &k.iv, mid);
        let hash = keys::hash1(&k.keys, mid, &wire::emit_payloads(&payloads).1);
        let mut all = vec![Payload::Hash(hash)];
        all.extend(payloads);
        let header = self.header(id, exchange::INFORMATIONAL, mid);
        let (msg, _) = Self::encrypt(&k.keys, header, &all, &iv);
        self.queue(id, msg);
    }

    pub(crate) fn send_delete_esp(&mut self, now: Instant, remote: SocketAddr, inbound_spi: u32) {
        if let Some(id) = self.preferred_sa(remote.ip()) {
            ike!(
                "ISAKMP ({}): sending DELETE for ESP SPI {:#010X}",
                id,
                inbound_spi
            );
            self.send_info(
                now,
                id,
                vec![Payload::Delete(DeletePayload {
                    doi: 1,
                    protocol: proto::ESP,
                    spi_size: 4,
                    spis: vec![inbound_spi.to_be_bytes().to_vec()],
                })],
            );
        }
    }

    pub(crate) fn send_delete_isakmp(&mut self, now: Instant, id: SaId) {
        let Some(s) = self.sas.get(&id) else { return };
        if !s.is_established() {
            return;
        }
        let spi = [s.icookie, s.rcookie].concat();
        ike!("ISAKMP ({}): sending DELETE for the ISAKMP SA", id);
        self.send_info(
            now,
            id,
            vec![Payload::Delete(DeletePayload {
                doi: 1,
                protocol: proto::ISAKMP,
                spi_size: 16,
                spis: vec![spi],
            })],
        );
    }

    pub(crate) fn send_dpd(&mut self, now: Instant, id: SaId) {
        let retry = self.cfg.dpd.map(|d| d.retry).unwrap_or_default();
        let (seq, spi) = {
            let Some(s) = self.sas.get_mut(&id) else {
                return;
            };
            let tries = s.dpd.outstanding.map_or(0, |o| o.2);
            let seq = match s.dpd.outstanding {
                Some((seq, ..)) => seq,
                None => {
                    s.dpd.seq = s.dpd.seq.wrapping_add(1);
                    s.dpd.seq
                }
            };
            s.dpd.outstanding = Some((seq, now + retry, tries + 1));
            (seq, [s.icookie, s.rcookie].concat())
        };
        ike!("ISAKMP ({}): DPD/R_U_THERE sent, sequence {}", id, seq);
        self.send_info(
            now,
            id,
            vec![Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: proto::ISAKMP,
                spi,
                msg_type: notify::DPD_R_U_THERE,
                data: seq.to_be_bytes().to_vec(),
            })],
        );
    }

    pub(crate) fn info_handle(
        &mut self,
        now: Instant,
        id: SaId,
        h: Header,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let (_, body) = Header::parse(data)?;
        if !h.is_encrypted() {
            // Only a failing negotiation is told in the clear.
            let p = wire::parse_payloads(h.next_payload, body)?;
            let s = self
                .sas
                .get(&id)
                .ok_or(HandleError::Unexpected("SA gone"))?;
            let (est, remote) = (s.is_established(), s.remote);
            for x in p {
                if let Payload::Notify(n) = x {
                    ike!(
                        "ISAKMP ({}): received unencrypted notify {} from {}",
                        id,
                        notify_name(n.msg_type),
                        remote.ip()
                    );
                    if !est && n.msg_type < 8192 {
                        self.drop_phase1(now, id, Reason::from_notify(n.msg_type), false);
                        return Ok(());
                    }
                }
            }
            return Err(HandleError::Unexpected("unencrypted informational"));
        }
        let k = self
            .sas
            .get(&id)
            .and_then(|s| s.hs.keyed())
            .ok_or(HandleError::Decrypt)?;
        let iv = keys::message_iv(k.keys.prf, k.keys.encr, &k.iv, h.message_id);
        let (plain, _) = Self::decrypt(&k.keys, body, &iv)?;
        let p = wire::parse_payloads_spanned(h.next_payload, &plain)
            .map_err(|_| HandleError::BadHash)?;
        let Some((Payload::Hash(got), first)) = p.first().cloned() else {
            return Err(HandleError::Missing("HASH"));
        };
        let end = p.last().map_or(first.end, |(_, r)| r.end);
        let rest = plain.get(first.end..end).unwrap_or_default();
        if !ct_eq(&keys::hash1(&k.keys, h.message_id, rest), &got) {
            ike!("ISAKMP ({}): informational HASH mismatch, dropping", id);
            return Err(HandleError::BadHash);
        }
        for (x, _) in p.into_iter().skip(1) {
            // A delete earlier in the same message may have removed the SA.
            if !self.sas.contains_key(&id) {
                break;
            }
            match x {
                Payload::Notify(n) => self.on_notify(now, id, n),
                Payload::Delete(d) => self.on_delete(now, id, d),
                _ => {}
            }
        }
        Ok(())
    }

    fn on_notify(&mut self, now: Instant, id: SaId, n: NotifyPayload) {
        ike!(
            "ISAKMP ({}): processing NOTIFY {} protocol {}",
            id,
            notify_name(n.msg_type),
            n.protocol
        );
        match n.msg_type {
            notify::DPD_R_U_THERE => {
                let Some(s) = self.sas.get(&id) else { return };
                let spi = [s.icookie, s.rcookie].concat();
                ike!(
                    "ISAKMP ({}): DPD/R_U_THERE received, sending R_U_THERE_ACK",
                    id
                );
                self.send_info(
                    now,
                    id,
                    vec![Payload::Notify(NotifyPayload {
                        doi: 1,
                        protocol: proto::ISAKMP,
                        spi,
                        msg_type: notify::DPD_R_U_THERE_ACK,
                        data: n.data,
                    })],
                );
            }
            notify::DPD_R_U_THERE_ACK => {
                let Some(s) = self.sas.get_mut(&id) else {
                    return;
                };
                if let Some(seq) = be_u32(&n.data)
                    && s.dpd.outstanding.is_some_and(|o| o.0 == seq)
                {
                    s.dpd.outstanding = None;
                    s.last_heard = now;
                }
            }
            notify::INITIAL_CONTACT => {
                let Some(s) = self.sas.get(&id) else { return };
                let peer = s.remote.ip();
                self.purge_for_initial_contact(now, peer, id);
            }
            t if t < 8192 => {
                // An error about one of our Quick Modes (SPI = our proposal SPI).
                let Some(s) = self.sas.get_mut(&id) else {
                    return;
                };
                let remote = s.remote;
                let spi = be_u32(&n.spi);
                let mids: Vec<u32> = s
                    .qms
                    .iter()
                    .filter(|(_, q)| {
                        q.offer()
                            .is_some_and(|o| spi.is_none_or(|x| x == o.our_spi))
                    })
                    .map(|(m, _)| *m)
                    .collect();
                for m in mids {
                    s.qms.remove(&m);
                    let why = crate::handshakes::Failure::from(&Reason::from_notify(t));
                    self.stats.handshakes.quick_mode.fail(why);
                    self.events.push_back(Event::Phase2Failed {
                        remote,
                        reason: Reason::from_notify(t),
                    });
                }
            }
            _ => {}
        }
    }

    fn on_delete(&mut self, now: Instant, id: SaId, d: DeletePayload) {
        let Some(s) = self.sas.get(&id) else { return };
        let peer = s.remote.ip();
        match d.protocol {
            proto::ISAKMP => {
                // The DELETE names the SA by its cookies; it may travel on a
                // newer SA than the one it deletes (after a phase 1 rekey).
                let mut named: Vec<SaId> = d
                    .spis
                    .iter()
                    .filter_map(|s| {
                        let (ic, rc) = cookie_pair(s)?;
                        let sid = *self.by_cookie.get(&(ic, peer))?;
                        (self.sas.get(&sid)?.rcookie == rc).then_some(sid)
                    })
                    .collect();
                // A peer may name one SA twice.
                named.sort_unstable();
                named.dedup();
                if d.spis.is_empty() {
                    ike!("ISAKMP ({}): peer deleted the ISAKMP SA", id);
                    self.drop_phase1(now, id, Reason::PeerDelete, true);
                } else if named.is_empty() {
                    ike!(
                        "ISAKMP ({}): DELETE for an ISAKMP SA we do not hold, ignored",
                        id
                    );
                }
                for sid in named {
                    // Dropping one SA may retire and drop another it named.
                    let Some(s) = self.sas.get(&sid) else {
                        continue;
                    };
                    ike!("ISAKMP ({}): peer deleted the ISAKMP SA", sid);
                    let est = s.is_established();
                    self.drop_phase1(now, sid, Reason::PeerDelete, est);
                }
            }
            proto::ESP | proto::AH => {
                for out in d.spis.iter().filter_map(|s| be_u32(s)) {
                    // Normally the sender's inbound SPI (our outbound); a peer that
                    // failed to install may name ours instead.
                    let found = self.by_outbound.get(&(peer, out)).copied().or_else(|| {
                        self.children
                            .get(&out)
                            .is_some_and(|c| c.remote.ip() == peer)
                            .then_some(out)
                    });
                    if let Some(c) = found.and_then(|inb| self.remove_child(inb).map(|c| (inb, c)))
                    {
                        let (inb, c) = c;
                        ike!(
                            "IPSEC: peer deleted SA pair {:#010X}/{:#010X}",
                            inb,
                            c.outbound_spi
                        );
                        self.events.push_back(Event::ChildSaDeleted {
                            remote: c.remote,
                            inbound_spi: inb,
                            outbound_spi: c.outbound_spi,
                            reason: Reason::PeerDelete,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// An ISAKMP SPI (16 bytes) as its two cookies.
fn cookie_pair(spi: &[u8]) -> Option<([u8; 8], [u8; 8])> {
    let (ic, rc) = spi.split_at_checked(8)?;
    Some((ic.try_into().ok()?, rc.try_into().ok()?))
}

/// Exactly four bytes, big-endian (an IPsec SPI, a DPD sequence number).
pub(crate) fn be_u32(b: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}
