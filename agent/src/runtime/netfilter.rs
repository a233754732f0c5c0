//! Whether this host filters or rewrites the IPv4 packets it sends:
//! nftables base chains on the output or postrouting hook (families `ip`
//! and `inet`; iptables-nft builds the same chains), or legacy iptables
//! tables. Packets handed straight to a device skip those hooks, so the
//! direct send path stands aside while any exist.

use std::io;

use super::netlink::{Netlink, attrs};

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: libc::c_int = 12;
/// `NFTA_CHAIN_HOOK` (nested) and, inside it, `NFTA_HOOK_HOOKNUM`.
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_HOOK_HOOKNUM: u16 = 1;

/// True when outgoing IPv4 packets pass netfilter hooks that the direct
/// path would skip. When it cannot tell (no permission), it says true.
pub fn egress_hooked(nl: Option<&mut Netlink>) -> bool {
    legacy_iptables() || nl.is_some_and(|nl| nft_egress_chain(nl).unwrap_or(true))
}

/// Legacy iptables tables registered in this thread's namespace.
fn legacy_iptables() -> bool {
    std::fs::read_to_string("/proc/thread-self/net/ip_tables_names")
        .is_ok_and(|t| !t.trim().is_empty())
}

/// Any nftables base chain on IPv4 output or postrouting.
fn nft_egress_chain(nl: &mut Netlink) -> io::Result<bool> {
    let kind = ((libc::NFNL_SUBSYS_NFTABLES << 8) | libc::NFT_MSG_GETCHAIN) as u16;
    // struct nfgenmsg: every family, version 0, resource id 0.
    let body = [libc::AF_UNSPEC as u8, libc::NFNETLINK_V0 as u8, 0, 0];
    let mut found = false;
    match nl.request(kind, libc::NLM_F_DUMP as u16, &body, |_, chain| {
        found |= hooks_ipv4_egress(chain);
        true
    }) {
        Ok(()) => Ok(found),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => Err(e),
        // nf_tables absent: nothing can hook.
        Err(_) => Ok(false),
    }
}

/// One `NFT_MSG_NEWCHAIN` payload (nfgenmsg, attributes): a base chain of
/// family ip or inet on the output or postrouting hook.
fn hooks_ipv4_egress(chain: &[u8]) -> bool {
    let Some(&family) = chain.first() else {
        return false;
    };
    if !matches!(
        family as libc::c_int,
        libc::NFPROTO_IPV4 | libc::NFPROTO_INET
    ) {
        return false;
    }
    attrs(chain.get(4..).unwrap_or_default())
        .filter(|(k, _)| *k == NFTA_CHAIN_HOOK)
        .flat_map(|(_, hook)| attrs(hook))
        .any(|(k, v)| {
            k == NFTA_HOOK_HOOKNUM
                && <[u8; 4]>::try_from(v).is_ok_and(|n| {
                    matches!(
                        u32::from_be_bytes(n) as libc::c_int,
                        libc::NF_INET_LOCAL_OUT | libc::NF_INET_POST_ROUTING
                    )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::netlink::attr;

    fn chain(family: libc::c_int, hook: Option<u32>) -> Vec<u8> {
        let mut c = vec![family as u8, 0, 0, 0];
        c.extend(attr(3, b"out\0"));
        if let Some(h) = hook {
            let mut nested = attr(NFTA_HOOK_HOOKNUM, &h.to_be_bytes());
            nested.extend(attr(2, &0i32.to_be_bytes()));
            c.extend(attr(NFTA_CHAIN_HOOK | 0x8000, &nested));
        }
        c
    }

    #[test]
    fn only_ipv4_output_and_postrouting_base_chains_count() {
        let out = libc::NF_INET_LOCAL_OUT as u32;
        let post = libc::NF_INET_POST_ROUTING as u32;
        let input = libc::NF_INET_LOCAL_IN as u32;
        assert!(hooks_ipv4_egress(&chain(libc::NFPROTO_IPV4, Some(out))));
        assert!(hooks_ipv4_egress(&chain(libc::NFPROTO_INET, Some(post))));
        assert!(!hooks_ipv4_egress(&chain(libc::NFPROTO_IPV4, Some(input))));
        assert!(!hooks_ipv4_egress(&chain(libc::NFPROTO_IPV6, Some(out))));
        assert!(
            !hooks_ipv4_egress(&chain(libc::NFPROTO_IPV4, None)),
            "regular chain"
        );
        let c = chain(libc::NFPROTO_IPV4, Some(out));
        for cut in 0..c.len() {
            let _ = hooks_ipv4_egress(&c[..cut]);
        }
    }
}
