//! Convenience look-ups the daemon needs on a validated configuration.

use crate::schema::*;
use crate::types::Secret;
use std::net::IpAddr;

impl Ike {
    /// Pre-shared key for `peer`: the most specific matching prefix wins
    /// (so a host key beats the `0.0.0.0/0` wildcard, as on IOS).
    pub fn psk_for(&self, peer: IpAddr) -> Option<&Secret> {
        self.keys
            .iter()
            .filter(|k| k.peer.contains(&peer))
            .max_by_key(|k| k.peer.prefix_len())
            .map(|k| &k.key)
    }

    /// ISAKMP policies in the order they are offered and matched.
    pub fn policies_by_priority(&self) -> Vec<&IsakmpPolicy> {
        let mut v: Vec<&IsakmpPolicy> = self.policies.iter().collect();
        v.sort_by_key(|p| p.priority);
        v
    }
}

impl Nhrp {
    /// NBMA address of an NHS: its own `nbma`, else the static map's.
    pub fn nhs_nbma(&self, nhs: &Nhs) -> Option<IpAddr> {
        nhs.nbma.or_else(|| {
            self.map
                .iter()
                .find(|m| m.address == nhs.address)
                .map(|m| m.nbma)
        })
    }

    /// Seconds between registrations: the configured timeout, else
    /// holdtime / 3 (at least 1).
    pub fn registration_interval(&self) -> u32 {
        self.registration_timeout
            .unwrap_or((self.holdtime / 3).max(1))
    }
}

impl Config {
    /// The IPsec profile protecting `tunnel`, if any.
    pub fn tunnel_profile(&self, tunnel: &Tunnel) -> Option<&IpsecProfile> {
        tunnel.protection.as_deref().and_then(|p| self.profile(p))
    }

    /// A profile's transform sets, in preference order.
    pub fn profile_transform_sets(&self, profile: &IpsecProfile) -> Vec<&TransformSet> {
        profile
            .transform_sets
            .iter()
            .filter_map(|n| self.transform_set(n))
            .collect()
    }

    /// The FQDN identity: `ike.fqdn`, else the node name.
    pub fn fqdn(&self) -> &str {
        self.ike.fqdn.as_deref().unwrap_or(&self.node.name)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const TEXT: &str = r#"
[node]
name = "spoke1"
role = "spoke"
[[ike.policy]]
priority = 20
[[ike.policy]]
priority = 5
[[ike.key]]
peer = "0.0.0.0/0"
key = "wildcard-key"
[[ike.key]]
peer = "172.16.0.0/24"
key = "subnet-key1"
[[ike.key]]
peer = "172.16.0.1"
key = "host-key12"
[[ipsec.transform_set]]
name = "b"
[[ipsec.transform_set]]
name = "a"
[[ipsec.profile]]
name = "p"
transform_sets = ["a", "b"]
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.2/24"
source = "172.16.0.2"
protection = "p"
[tunnel.nhrp]
network_id = 1
holdtime = 300
[[tunnel.nhrp.nhs]]
address = "192.168.1.1"
[[tunnel.nhrp.map]]
address = "192.168.1.1"
nbma = "172.16.0.1"
"#;

    #[test]
    fn lookups() {
        let c = Config::from_str(TEXT, "t").unwrap().config;
        let psk = |a: &str| {
            c.ike
                .psk_for(a.parse().unwrap())
                .map(|s| s.expose().to_string())
        };
        assert_eq!(psk("172.16.0.1").as_deref(), Some("host-key12"));
        assert_eq!(psk("172.16.0.7").as_deref(), Some("subnet-key1"));
        assert_eq!(psk("10.0.0.1").as_deref(), Some("wildcard-key"));
        assert_eq!(psk("2001:db8::1"), None);
        let prios: Vec<u16> = c
            .ike
            .policies_by_priority()
            .iter()
            .map(|p| p.priority)
            .collect();
        assert_eq!(prios, [5, 20]);
        let t = &c.tunnels[0];
        let n = t.nhrp.as_ref().unwrap();
        assert_eq!(n.nhs_nbma(&n.nhs[0]), Some("172.16.0.1".parse().unwrap()));
        assert_eq!(n.registration_interval(), 100);
        let p = c.tunnel_profile(t).unwrap();
        let names: Vec<&str> = c
            .profile_transform_sets(p)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.fqdn(), "spoke1");
    }
}
