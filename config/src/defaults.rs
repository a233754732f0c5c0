//! Native defaults: modern and safe. The IOS importer writes IOS's own
//! (older, weaker) defaults explicitly instead of relying on these.

use crate::types::*;
use std::path::PathBuf;

pub const NHRP_HOLDTIME: u32 = 7200;
pub const TUNNEL_MTU: u16 = 1400;
pub const IKE_LIFETIME: u32 = 86400;
pub const IPSEC_LIFETIME_SECONDS: u32 = 3600;
pub const IPSEC_LIFETIME_KILOBYTES: u64 = 4_608_000;
pub const NAT_KEEPALIVE: u32 = 20;
pub const DPD_RETRIES: u32 = 5;
/// Half-open IKE SAs in all (IOS `crypto call admission limit ike in-negotiation-sa`).
pub const IN_NEGOTIATION_LIMIT: u32 = 1024;
/// Unverified half-open IKE SAs per source address.
pub const IN_NEGOTIATION_PER_PEER: u32 = 8;
pub const DPD_RETRY_INTERVAL: u32 = 2;
/// Idle seconds before R-U-THERE: with 5 retries 2 s apart a dead peer is
/// found 20 s after it was last heard, and recovery starts.
pub const DPD_INTERVAL: u32 = 10;
pub const CONTROL_SOCKET: &str = "/run/dmvpn/dmvpnd.sock";
pub const CONTROL_MODE: u32 = 0o600;
pub const LOG_FILTER: &str = "info";
/// Maximum NHRP authentication length (IOS truncates/refuses longer).
pub const NHRP_AUTH_MAX: usize = 8;
/// Learned NHRP cache entries a hub holds at most: room for 10,000 spokes'
/// registrations and their shortcuts.
pub const NHRP_MAX_CACHE_ENTRIES: u32 = 50_000;
/// Registrations one NBMA address may hold on a hub.
pub const NHRP_MAX_REGISTRATIONS_PER_NBMA: u32 = 128;

pub fn nhrp_holdtime() -> u32 {
    NHRP_HOLDTIME
}
/// IOS's default `ip nhrp max-send 100 every 10`.
pub const NHRP_MAX_SEND: u32 = 100;
pub const NHRP_MAX_SEND_INTERVAL: u32 = 10;

pub fn nhrp_max_send() -> u32 {
    NHRP_MAX_SEND
}
pub fn nhrp_max_send_interval() -> u32 {
    NHRP_MAX_SEND_INTERVAL
}
pub fn nhrp_max_cache_entries() -> u32 {
    NHRP_MAX_CACHE_ENTRIES
}
pub fn nhrp_max_registrations_per_nbma() -> u32 {
    NHRP_MAX_REGISTRATIONS_PER_NBMA
}
pub fn tunnel_mtu() -> u16 {
    TUNNEL_MTU
}
pub fn ike_encryption() -> IkeEncryption {
    IkeEncryption::Aes256
}
pub fn ike_hash() -> IkeHash {
    IkeHash::Sha256
}
pub fn ike_group() -> DhGroup {
    DhGroup::new(14).expect("14 is supported")
}
pub fn ike_lifetime() -> u32 {
    IKE_LIFETIME
}
pub fn ipsec_lifetime_seconds() -> u32 {
    IPSEC_LIFETIME_SECONDS
}
pub fn ipsec_lifetime_kilobytes() -> u64 {
    IPSEC_LIFETIME_KILOBYTES
}
pub fn transforms() -> Vec<Transform> {
    vec![Transform::EspAes(256), Transform::EspSha256Hmac]
}
pub fn nat_keepalive() -> u32 {
    NAT_KEEPALIVE
}
pub fn in_negotiation_limit() -> u32 {
    IN_NEGOTIATION_LIMIT
}
pub fn in_negotiation_per_peer() -> u32 {
    IN_NEGOTIATION_PER_PEER
}
/// Dead peer detection on, IOS's `crypto isakmp keepalive 10 2` with five
/// retries; `interval = 0` turns it off.
pub fn ike_dpd() -> Option<crate::schema::Dpd> {
    Some(crate::schema::Dpd {
        interval: DPD_INTERVAL,
        retry_interval: DPD_RETRY_INTERVAL,
        retries: DPD_RETRIES,
    })
}
pub fn dpd_retries() -> u32 {
    DPD_RETRIES
}
pub fn dpd_retry_interval() -> u32 {
    DPD_RETRY_INTERVAL
}
pub fn control_socket() -> PathBuf {
    PathBuf::from(CONTROL_SOCKET)
}
pub fn control_mode() -> FileMode {
    FileMode(CONTROL_MODE)
}
pub fn log_filter() -> String {
    LOG_FILTER.to_string()
}
pub fn yes() -> bool {
    true
}
pub fn ike_policies() -> Vec<crate::schema::IsakmpPolicy> {
    vec![crate::schema::IsakmpPolicy::default()]
}
