//! Sans-IO NHRP engine: client (NHC) and server (NHS) in one state
//! machine, driven like quinn-proto.
//!
//! The caller feeds received NHRP packets with [`Engine::handle`], calls
//! [`Engine::handle_timeout`] when [`Engine::poll_timeout`] says so, and
//! drains [`Engine::poll_transmit`] (NHRP bytes to wrap in GRE towards an
//! NBMA address) and [`Engine::poll_event`]. Time is always an argument;
//! the engine reads no clock and needs no randomness (request IDs are a
//! counter seeded from the configuration).
//!
//! Debug narration goes to `tracing` target `dmvpn::nhrp`, phrased like
//! IOS `debug nhrp`. Passwords are never logged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tracing::{debug, info, warn};

use dmvpn_wire::prefix::{Prefix, PrefixMap, mask, max_len};
use subtle::ConstantTimeEq;

use crate::Instant;
use crate::cache::{Cache, CacheEntry, EntryType};
use crate::ext::{AUTH_TYPE_CLEARTEXT, ExtBody, Extension};
use crate::limit::{Reason, WarnLimiter};
use crate::traffic::Traffic;
use crate::wire::{
    Body, Cie, DEFAULT_HOP_COUNT, Packet, PacketType, addr_to_ip, code, error_code, flags,
    ip_to_addr,
};

mod reconfigure;

const TARGET: &str = "dmvpn::nhrp";
/// Bound on replies held for IPsec (hostile requesters cannot grow it).
const MAX_DELAYED: usize = 256;
/// Bound on resolutions in flight (a scan of destinations cannot grow it).
const MAX_PENDING_RESOLUTIONS: usize = 1024;
/// Default bound on learned cache entries: a 10,000-spoke hub holds one
/// registration and at most a few shortcuts per spoke.
pub const DEFAULT_MAX_CACHE_ENTRIES: usize = 50_000;
/// Default bound on registrations held for one NBMA address (several
/// spokes behind one NAT address share it).
pub const DEFAULT_MAX_REGISTRATIONS_PER_NBMA: usize = 128;
/// Default bound on CIEs handled in one Registration Request (IOS sends 1).
pub const DEFAULT_MAX_CIES_PER_REGISTRATION: usize = 16;

/// The cleartext NHRP password (`ip nhrp authentication`). `Debug` never
/// shows it; it is zeroed when dropped.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Password(Vec<u8>);

impl Password {
    /// A password; IOS allows at most 8 characters (longer ones are sent
    /// as given, validation belongs to the configuration).
    pub fn new(p: impl Into<Vec<u8>>) -> Password {
        Password(p.into())
    }

    /// The bytes sent in the authentication extension.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A next-hop server to register with (`ip nhrp nhs` + `ip nhrp map`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhsConfig {
    /// The NHS's tunnel (protocol) address.
    pub protocol: IpAddr,
    /// The NHS's NBMA address.
    pub nbma: IpAddr,
    /// Priority (lower value preferred for resolution requests, as IOS).
    pub priority: u8,
}

/// Engine configuration. Defaults follow IOS.
#[derive(Debug, Clone)]
pub struct Config {
    /// Interface name used in debug lines ("Tunnel0").
    pub interface: String,
    /// VRF number used in debug lines.
    pub vrf: u32,
    /// Our NBMA address.
    pub nbma: IpAddr,
    /// Our tunnel (protocol) address.
    pub protocol: IpAddr,
    /// Prefix length of the tunnel subnet (`ip address A M`). With
    /// `protocol` it gives the default of `registration_prefixes`.
    /// Default: the host length, so an NHS whose subnet is not set accepts
    /// no registrations.
    pub tunnel_prefix_len: u8,
    /// Networks behind us we answer resolution requests for (besides our
    /// own tunnel address), as (network, prefix length).
    pub local_prefixes: Vec<(IpAddr, u8)>,
    /// MTU advertised in CIEs.
    pub mtu: u16,
    /// Holding time advertised, seconds (7200).
    pub holding_time: u16,
    /// Cleartext password (`ip nhrp authentication`, at most 8 bytes).
    pub authentication: Option<Password>,
    /// Servers to register with.
    pub nhs: Vec<NhsConfig>,
    /// Static mappings (protocol, NBMA) (`ip nhrp map`).
    pub static_maps: Vec<(IpAddr, IpAddr)>,
    /// Set the unique flag on registrations (IOS default; off with
    /// `ip nhrp registration no-unique`).
    pub unique: bool,
    /// Re-registration interval; None = holding time / 3.
    pub registration_interval: Option<Duration>,
    /// Accept registrations and serve resolution requests (hub).
    pub server: bool,
    /// (NHS) Prefixes registrations may claim, as (network, prefix
    /// length); a registration outside all of them is refused with CIE
    /// code 4. None: the tunnel subnet only.
    pub registration_prefixes: Option<Vec<(IpAddr, u8)>>,
    /// (NHS) CIEs handled in one Registration Request; further ones are
    /// answered with code 5 without being looked at.
    pub max_cies_per_registration: usize,
    /// (NHS) Registrations one NBMA address may hold; a new one beyond is
    /// refused with code 5 (refreshes always succeed).
    pub max_registrations_per_nbma: usize,
    /// Learned cache entries (registrations, shortcuts, incomplete and
    /// negative entries) held at most; a new registration beyond is
    /// refused with code 5 (refreshes always succeed), a new shortcut is
    /// not cached.
    pub max_cache_entries: usize,
    /// NBMA source addresses NHRP is accepted from, as (network, prefix
    /// length); packets from elsewhere are dropped and counted. NHSs and
    /// static mappings are always accepted. None: any source (what a
    /// tunnel protected by IPsec uses, where only peers with an SA get
    /// through).
    pub allowed_nbma: Option<Vec<(IpAddr, u8)>>,
    /// Length of the interval over which warnings about refused input are
    /// summarised (see [`Stats::warnings_suppressed`]).
    pub warn_interval: Duration,
    /// Send Traffic Indications for relayed spoke-to-spoke traffic
    /// (`ip nhrp redirect`).
    pub redirect: bool,
    /// Act on Traffic Indications by resolving (`ip nhrp shortcut`).
    pub shortcut: bool,
    /// Hold resolution replies until the node reports an IPsec SA to the
    /// requester (protected tunnels).
    pub wait_for_ipsec: bool,
    /// First retransmission timeout.
    pub retransmit_initial: Duration,
    /// Retransmission back-off cap.
    pub retransmit_max: Duration,
    /// Retransmissions of a resolution request before giving up.
    pub resolution_retries: u32,
    /// Unanswered registration requests before an NHS is declared down.
    pub nhs_down_after: u32,
    /// Lifetime of a negative cache entry.
    pub negative_holding_time: Duration,
    /// Minimum interval between Traffic Indications for one
    /// (source, destination) pair.
    pub redirect_holddown: Duration,
    /// At most this many Traffic Indications per `max_send_interval`
    /// (`ip nhrp max-send 100 every 10`).
    pub max_send: u32,
    /// Window for `max_send`.
    pub max_send_interval: Duration,
    /// How long a reply delayed for IPsec is kept.
    pub delayed_timeout: Duration,
    /// First request ID (IDs then count up; reused on retransmission).
    pub initial_request_id: u32,
    /// Replicate multicast to every registered client
    /// (`ip nhrp map multicast dynamic`).
    pub multicast_dynamic: bool,
    /// Fixed multicast destinations (`ip nhrp map multicast NBMA`, and
    /// NHSs configured with `multicast`).
    pub multicast_static: Vec<IpAddr>,
}

impl Config {
    /// Defaults for a node with the given addresses.
    pub fn new(nbma: IpAddr, protocol: IpAddr) -> Config {
        Config {
            interface: "Tunnel0".into(),
            vrf: 0,
            nbma,
            protocol,
            tunnel_prefix_len: host_len(protocol),
            local_prefixes: Vec::new(),
            mtu: 1514,
            holding_time: 7200,
            authentication: None,
            nhs: Vec::new(),
            static_maps: Vec::new(),
            unique: true,
            registration_interval: None,
            server: false,
            registration_prefixes: None,
            max_cies_per_registration: DEFAULT_MAX_CIES_PER_REGISTRATION,
            max_registrations_per_nbma: DEFAULT_MAX_REGISTRATIONS_PER_NBMA,
            max_cache_entries: DEFAULT_MAX_CACHE_ENTRIES,
            allowed_nbma: None,
            warn_interval: Duration::from_secs(60),
            redirect: false,
            shortcut: false,
            wait_for_ipsec: false,
            retransmit_initial: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(64),
            resolution_retries: 3,
            nhs_down_after: 3,
            negative_holding_time: Duration::from_secs(15),
            redirect_holddown: Duration::from_secs(1),
            max_send: 100,
            max_send_interval: Duration::from_secs(10),
            delayed_timeout: Duration::from_secs(10),
            initial_request_id: 1,
            multicast_dynamic: false,
            multicast_static: Vec::new(),
        }
    }
}

/// A packet to send: NHRP bytes for GRE protocol 0x2001 to `dst_nbma`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination NBMA address.
    pub dst_nbma: IpAddr,
    /// The NHRP packet.
    pub payload: Vec<u8>,
}

/// Something the node should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A registration with this NHS succeeded (it was down).
    NhsUp {
        /// NHS tunnel address.
        nhs: IpAddr,
        /// NHS NBMA address.
        nbma: IpAddr,
    },
    /// The NHS stopped answering registrations.
    NhsDown {
        /// NHS tunnel address.
        nhs: IpAddr,
        /// NHS NBMA address.
        nbma: IpAddr,
    },
    /// The NHS refused our registration with a CIE code (reported when the
    /// code changes, not for every retry).
    RegistrationRejected {
        /// NHS tunnel address.
        nhs: IpAddr,
        /// CIE code (e.g. 14, already registered).
        code: u8,
    },
    /// We learnt that we are behind NAT: the NHS sees us at `nat_nbma`.
    NatDetected {
        /// Our post-NAT NBMA address.
        nat_nbma: IpAddr,
    },
    /// (NHS) a client registered, or changed NBMA address.
    PeerRegistered {
        /// Client tunnel address.
        protocol: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// Client NBMA address (post-NAT).
        nbma: IpAddr,
        /// NBMA address the client claimed, if different (behind NAT).
        claimed_nbma: Option<IpAddr>,
        /// Holding time, seconds.
        holding_time: u16,
    },
    /// (NHS) a registration expired or was purged.
    PeerExpired {
        /// Client tunnel address.
        protocol: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// Its NBMA address.
        nbma: Option<IpAddr>,
    },
    /// A shortcut (cached entry) was installed or changed.
    ShortcutUp {
        /// Destination network.
        prefix: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// Next-hop tunnel address.
        next_hop: IpAddr,
        /// NBMA address to send to.
        nbma: IpAddr,
    },
    /// A shortcut expired or was purged/cleared.
    ShortcutDown {
        /// Destination network.
        prefix: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// Its NBMA address.
        nbma: Option<IpAddr>,
    },
    /// A reply (positive or negative) answered our resolution request
    /// for `dst`, `after` its first transmission.
    ResolutionAnswered {
        /// Address we asked about.
        dst: IpAddr,
        /// From the request's first transmission to the reply.
        after: Duration,
    },
    /// A resolution failed (NAK code, or no answer when None).
    ResolutionFailed {
        /// Address we tried to resolve.
        dst: IpAddr,
        /// CIE code from a negative reply.
        code: Option<u8>,
    },
    /// A resolution reply to `nbma` is held until an IPsec SA to it is up;
    /// bring one up and call [`Engine::ipsec_up`].
    NeedIpsec {
        /// Requester's NBMA address.
        nbma: IpAddr,
    },
    /// An Error Indication arrived.
    ErrorIndication {
        /// Sender's NBMA address.
        from: IpAddr,
        /// RFC 2332 error code.
        code: u16,
    },
}

/// Registration state towards one NHS, for `show ip nhrp nhs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhsStatus {
    /// Configuration.
    pub config: NhsConfig,
    /// Whether the last registration succeeded and it still answers
    /// (IOS `R`); false while the NHS refuses our registrations.
    pub up: bool,
    /// CIE code of the last Registration Reply: 0 accepted, else why it
    /// was refused (e.g. 14, the address is registered by another NBMA
    /// address). None before the first reply.
    pub last_code: Option<u8>,
    /// Request ID of the registration in flight.
    pub request_id: Option<u32>,
    /// Registration requests sent that were not answered.
    pub unanswered: u32,
    /// When the last successful reply arrived.
    pub last_reply: Option<Instant>,
    /// Registration requests sent, retransmissions included (IOS `req-sent`).
    pub requests_sent: u64,
    /// Requests that timed out or were rejected (IOS `req-failed`).
    pub requests_failed: u64,
    /// Registration replies received (IOS `repl-recv`).
    pub replies_received: u64,
    /// When the registration is sent next (retransmission or refresh).
    pub next_attempt: Instant,
}

/// Counters. The `reg_refused_*` counters count refused registrations
/// (CIEs), not packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets handed to `handle`.
    pub rx: u64,
    /// Packets that failed to parse.
    pub rx_malformed: u64,
    /// Packets rejected for authentication.
    pub rx_auth_failed: u64,
    /// Packets from an NBMA address outside `allowed_nbma`, dropped.
    pub rx_nbma_refused: u64,
    /// (NHS) Registrations refused because a live registration of another
    /// NBMA address overlaps them, or they claim a configured or own
    /// address (code 14).
    pub reg_refused_unique: u64,
    /// (NHS) Registrations outside `registration_prefixes` (code 4).
    pub reg_refused_prefix: u64,
    /// (NHS) CIEs beyond `max_cies_per_registration` in one request (code 5).
    pub reg_refused_too_many_cies: u64,
    /// (NHS) New registrations from an NBMA address that already holds
    /// `max_registrations_per_nbma` (code 5).
    pub reg_refused_nbma_limit: u64,
    /// (NHS) New registrations while the cache holds `max_cache_entries`
    /// learned entries (code 5).
    pub reg_refused_cache_full: u64,
    /// (NHS) Registrations that replaced another NBMA address's
    /// registration, allowed because that one was made without the unique
    /// flag or its peer is gone ([`Engine::peer_gone`]).
    pub reg_takeovers: u64,
    /// Cache entries a Purge Request named but its sender does not own
    /// (kept).
    pub purge_refused: u64,
    /// Resolution Replies neither from an NHS (or static peer) nor from the
    /// NBMA address they name (ignored).
    pub res_reply_refused: u64,
    /// Resolution Requests not passed on: their requester's protocol
    /// address is not registered at the NBMA address they came from.
    pub res_request_refused: u64,
    /// Registration Replies matching a request of ours that came from
    /// another address than the NHS asked (ignored).
    pub reg_reply_refused: u64,
    /// Traffic Indications from an address that is not an NHS or static
    /// peer (ignored).
    pub traffic_indications_refused: u64,
    /// Shortcuts and negative entries not cached because the cache holds
    /// `max_cache_entries` learned entries.
    pub cache_full: u64,
    /// Warnings about refused input folded into a summary line instead of
    /// being logged one by one.
    pub warnings_suppressed: u64,
    /// Packets queued for sending.
    pub tx: u64,
    /// Error Indications sent.
    pub tx_errors: u64,
    /// Traffic Indications sent.
    pub tx_traffic_indications: u64,
    /// Traffic Indications not sent because the same flow was indicated
    /// within `redirect_holddown`.
    pub traffic_indications_holddown: u64,
    /// Traffic Indications not sent because `max_send` were already sent in
    /// the current window (`ip nhrp max-send`): each one leaves a flow
    /// relayed through the hub until it is indicated later.
    pub traffic_indications_max_send: u64,
}

/// The next hop for a destination, from [`Engine::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// Matched network.
    pub prefix: IpAddr,
    /// Matched prefix length.
    pub prefix_len: u8,
    /// Entry kind.
    pub kind: EntryType,
    /// NBMA address to send to.
    pub nbma: IpAddr,
    /// Next-hop tunnel address, when known.
    pub next_hop: Option<IpAddr>,
}

#[derive(Debug)]
struct Nhs {
    cfg: NhsConfig,
    up: bool,
    request_id: Option<u32>,
    bytes: Vec<u8>,
    next: Instant,
    backoff: Duration,
    unanswered: u32,
    last_reply: Option<Instant>,
    last_code: Option<u8>,
    /// Cumulative: requests sent (retransmissions too), requests that got
    /// no answer or were rejected, replies received.
    sent: u64,
    failed: u64,
    replies: u64,
}

impl Nhs {
    /// An NHS not registered with yet; its first registration is due at `now`.
    fn new(cfg: NhsConfig, now: Instant, backoff: Duration) -> Nhs {
        Nhs {
            cfg,
            up: false,
            request_id: None,
            bytes: Vec::new(),
            next: now,
            backoff,
            unanswered: 0,
            last_reply: None,
            last_code: None,
            sent: 0,
            failed: 0,
            replies: 0,
        }
    }
}

#[derive(Debug)]
struct Pending {
    dst: IpAddr,
    to: IpAddr,
    bytes: Vec<u8>,
    /// When the request was first sent (retransmissions keep it).
    sent: Instant,
    next: Instant,
    backoff: Duration,
    attempts: u32,
}

#[derive(Debug)]
struct Delayed {
    nbma: IpAddr,
    request_id: u32,
    src: Vec<u8>,
    dst: Vec<u8>,
    bytes: Vec<u8>,
    expires: Instant,
}

/// The NHRP engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    /// Reconfigurations so far (part of [`Engine::multicast_version`]).
    reconfigured: u64,
    cache: Cache,
    nhs: Vec<Nhs>,
    resolutions: HashMap<u32, Pending>,
    next_id: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    delayed: Vec<Delayed>,
    sa_up: HashSet<IpAddr>,
    routes: PrefixMap<IpAddr>,
    redirect_last: HashMap<(IpAddr, IpAddr), Instant>,
    send_window: (Instant, u32),
    nat_nbma: Option<IpAddr>,
    /// NBMA addresses whose peer the node reported gone while they hold
    /// registrations: those may be taken over.
    gone: HashSet<IpAddr>,
    warns: WarnLimiter,
    stats: Stats,
    traffic: Traffic,
}

fn host_len(a: IpAddr) -> u8 {
    max_len(a)
}

/// Addresses of an IPv4 or IPv6 packet, and the length of header + 8.
fn ip_endpoints(pkt: &[u8]) -> Option<(IpAddr, IpAddr, usize)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            Some((
                addr_to_ip(&pkt[12..16])?,
                addr_to_ip(&pkt[16..20])?,
                (ihl.max(20) + 8).min(pkt.len()),
            ))
        }
        6 if pkt.len() >= 40 => Some((
            addr_to_ip(&pkt[8..24])?,
            addr_to_ip(&pkt[24..40])?,
            48.min(pkt.len()),
        )),
        _ => None,
    }
}

impl Engine {
    /// A new engine; registrations to every NHS are due at `now`.
    pub fn new(cfg: Config, now: Instant) -> Engine {
        let mut cache = Cache::new();
        let mut local =
            CacheEntry::new(cfg.protocol, host_len(cfg.protocol), EntryType::Local, now);
        local.nbma = Some(cfg.nbma);
        local.next_hop = Some(cfg.protocol);
        cache.insert(local);
        for (p, l) in &cfg.local_prefixes {
            cache.insert(local_entry(&cfg, *p, *l, now));
        }
        for (p, n) in &cfg.static_maps {
            let mut e = CacheEntry::new(*p, host_len(*p), EntryType::Static, now);
            e.nbma = Some(*n);
            e.next_hop = Some(*p);
            cache.insert(e);
        }
        let nhs = cfg
            .nhs
            .iter()
            .map(|n| {
                let mut e = CacheEntry::new(n.protocol, host_len(n.protocol), EntryType::Nhs, now);
                e.nbma = Some(n.nbma);
                e.next_hop = Some(n.protocol);
                cache.insert(e);
                Nhs::new(n.clone(), now, cfg.retransmit_initial)
            })
            .collect();
        let cfg_warn = cfg.warn_interval;
        Engine {
            next_id: cfg.initial_request_id,
            cfg,
            cache,
            nhs,
            resolutions: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            delayed: Vec::new(),
            sa_up: HashSet::new(),
            routes: PrefixMap::new(),
            reconfigured: 0,
            redirect_last: HashMap::new(),
            send_window: (Instant::ZERO, 0),
            nat_nbma: None,
            gone: HashSet::new(),
            warns: WarnLimiter::new(cfg_warn),
            stats: Stats::default(),
            traffic: Traffic::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The cache (for `show ip nhrp`).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Packets sent and received by type (`show ip nhrp traffic`).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Traffic Indications sent in the current `max_send` window.
    pub fn max_send_used(&self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.send_window.0) >= self.cfg.max_send_interval {
            0
        } else {
            self.send_window.1
        }
    }

    /// Our post-NAT NBMA address, if an NHS told us we are behind NAT.
    pub fn nat_nbma(&self) -> Option<IpAddr> {
        self.nat_nbma
    }

    /// State of each NHS (for `show ip nhrp nhs`).
    pub fn nhs_status(&self) -> Vec<NhsStatus> {
        self.nhs
            .iter()
            .map(|n| NhsStatus {
                config: n.cfg.clone(),
                up: n.up,
                last_code: n.last_code,
                request_id: n.request_id,
                unanswered: n.unanswered,
                last_reply: n.last_reply,
                requests_sent: n.sent,
                requests_failed: n.failed,
                replies_received: n.replies,
                next_attempt: n.next,
            })
            .collect()
    }

    /// NBMA addresses multicast (routing protocol) packets go to: the
    /// configured ones (`ip nhrp map multicast NBMA`, NHSs marked
    /// `multicast`) and, with `ip nhrp map multicast dynamic`, every
    /// registered client.
    pub fn multicast_nbmas(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        if self.cfg.multicast_dynamic {
            // Already in order: on a hub this is the long part.
            v.extend(self.cache.registered_nbmas());
        }
        if !self.cfg.multicast_static.is_empty() {
            v.extend(&self.cfg.multicast_static);
            v.sort();
            v.dedup();
        }
        v
    }

    /// Changes whenever [`Engine::multicast_nbmas`] may have changed (a
    /// client's first registration or last one gone, a reconfiguration),
    /// so that a hub with thousands of clients rebuilds the list only then.
    pub fn multicast_version(&self) -> (u64, u64) {
        (self.cache.registered_nbmas_version(), self.reconfigured)
    }

    /// Whether any NHS is configured and none is up.
    pub fn every_nhs_down(&self) -> bool {
        !self.nhs.is_empty() && self.nhs.iter().all(|n| !n.up)
    }

    /// NBMA address of the preferred NHS (lowest priority value among
    /// those up, else the first configured).
    pub fn preferred_nhs(&self) -> Option<&NhsConfig> {
        self.nhs
            .iter()
            .filter(|n| n.up)
            .min_by_key(|n| n.cfg.priority)
            .or_else(|| self.nhs.first())
            .map(|n| &n.cfg)
    }

    /// Installs a route (network → next-hop tunnel address) the NHS uses
    /// to find which client owns a destination behind it.
    pub fn add_route(&mut self, prefix: IpAddr, prefix_len: u8, next_hop: IpAddr) {
        self.routes
            .insert(Prefix::new(prefix, prefix_len), next_hop);
    }

    /// Removes a route added with [`Engine::add_route`].
    pub fn remove_route(&mut self, prefix: IpAddr, prefix_len: u8) {
        self.routes.remove(&Prefix::new(prefix, prefix_len));
    }

    /// Next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        self.nhs.iter().for_each(|n| at(n.next));
        self.resolutions.values().for_each(|p| at(p.next));
        self.delayed.iter().for_each(|d| at(d.expires));
        if let Some(x) = self.cache.next_expiry() {
            at(x);
        }
        if let Some(x) = self.cache.next_refresh() {
            at(x);
        }
        if let Some(x) = self.warns.deadline() {
            at(x);
        }
        t
    }

    /// Longest-prefix lookup for the data path; marks the entry used (so
    /// it is re-resolved before it expires). None: send via the NHS.
    pub fn lookup(&mut self, dst: IpAddr) -> Option<NextHop> {
        let e = self.cache.lookup_mut(dst)?;
        if !e.is_complete() {
            return None;
        }
        e.used = true;
        Some(NextHop {
            prefix: e.prefix,
            prefix_len: e.prefix_len,
            kind: e.kind,
            nbma: e.nbma?,
            next_hop: e.next_hop,
        })
    }

    /// Tells the engine an IPsec SA to `nbma` is up: replies delayed for
    /// it are sent now, and resolution requests still unanswered are sent
    /// again (see [`Engine::resend_resolutions`]).
    pub fn ipsec_up(&mut self, now: Instant, nbma: IpAddr) {
        self.sa_up.insert(nbma);
        self.gone.remove(&nbma);
        self.resend_resolutions(now);
        let (ready, keep): (Vec<Delayed>, Vec<Delayed>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|d| d.nbma == nbma);
        self.delayed = keep;
        for d in ready {
            debug!(
                target: TARGET,
                "NHRP: Process delayed resolution request src:{} dst:{}",
                crate::wire::addr_to_string(&d.src),
                crate::wire::addr_to_string(&d.dst)
            );
            self.send(
                now,
                d.nbma,
                d.bytes,
                PacketType::ResolutionReply,
                &d.src,
                &d.dst,
            );
        }
    }

    /// Sends every pending resolution request again now (same request
    /// ID; the retransmission schedule is unchanged). The responder sends
    /// its reply the moment its SA to us is installed, right after Quick
    /// Mode's last message; when that reply overtakes the message we drop
    /// it (no SA yet) and would otherwise wait a full retransmission
    /// interval.
    pub fn resend_resolutions(&mut self, now: Instant) {
        let mut pending: Vec<(IpAddr, Vec<u8>, IpAddr)> = self
            .resolutions
            .values()
            .map(|p| (p.to, p.bytes.clone(), p.dst))
            .collect();
        pending.sort_by_key(|p| p.2);
        for (to, bytes, dst) in pending {
            debug!(target: TARGET, "NHRP: IPsec SA up, resending resolution request for {}", dst);
            self.send(
                now,
                to,
                bytes,
                PacketType::ResolutionRequest,
                &ip_to_addr(self.cfg.protocol),
                &ip_to_addr(dst),
            );
        }
    }

    /// Registers with every NHS now, resetting the back-off (e.g. when the
    /// IPsec SA to the hub has just come up, instead of waiting for the
    /// next retransmission). Requests in flight keep their IDs.
    pub fn register_now(&mut self, now: Instant) {
        for i in 0..self.nhs.len() {
            self.nhs[i].backoff = self.cfg.retransmit_initial;
            if self.nhs[i].request_id.is_some() {
                // A retransmission, not a new attempt to count.
                self.nhs[i].unanswered = self.nhs[i].unanswered.saturating_sub(1);
                self.nhs[i].failed = self.nhs[i].failed.saturating_sub(1);
            }
            self.send_registration(now, i);
        }
    }

    /// Registers with the NHS at `nbma` now (its IPsec SA has just come up
    /// or gone): the NHS may have restarted and lost our registration. A
    /// request already in flight (perhaps waiting for that SA) is not
    /// duplicated; its retransmission comes after the initial timeout.
    pub fn register_now_with(&mut self, now: Instant, nbma: IpAddr) {
        for i in 0..self.nhs.len() {
            if self.nhs[i].cfg.nbma != nbma {
                continue;
            }
            self.nhs[i].backoff = self.cfg.retransmit_initial;
            if self.nhs[i].request_id.is_some() {
                let soon = now + self.cfg.retransmit_initial;
                self.nhs[i].next = self.nhs[i].next.min(soon);
            } else {
                self.send_registration(now, i);
            }
        }
    }

    /// Drops the shortcuts through `nbma` (e.g. its idle IPsec SA was
    /// deleted): the next packet goes via the NHS again.
    pub fn forget_peer(&mut self, nbma: IpAddr) {
        let gone = self
            .cache
            .remove_if(|e| e.kind == EntryType::Cached && e.nbma == Some(nbma));
        for e in gone {
            debug!(target: TARGET, "NHRP: Removing shortcut {}/{} via {}", e.prefix, e.prefix_len, nbma);
            self.entry_gone_event(e);
        }
    }

    /// Tells the engine the IPsec SA to `nbma` went away.
    pub fn ipsec_down(&mut self, nbma: IpAddr) {
        self.sa_up.remove(&nbma);
    }

    /// (NHS) Tells the engine the peer at `nbma` is gone: its last IPsec
    /// SA was deleted, or dead peer detection declared it dead. Its
    /// registrations stay until they expire, but another NBMA address may
    /// now register their addresses even if they were unique (the old
    /// mapping is then purged, with [`Event::PeerExpired`]). This is how a
    /// spoke whose NBMA address changed gets its address back before the
    /// old registration's holding time runs out. A registration from
    /// `nbma`, or [`Engine::ipsec_up`] for it, undoes this.
    pub fn peer_gone(&mut self, nbma: IpAddr) {
        if self.cache.registrations_from(nbma) > 0 && self.gone.insert(nbma) {
            debug!(target: TARGET, "NHRP: Peer {} is gone; its registrations may be taken over", nbma);
        }
    }

    /// The networks behind this node changed (a LAN interface added,
    /// removed or renumbered): resolutions for them are answered from now
    /// on, and those no longer behind it are answered no more. The node's
    /// own tunnel address stays.
    pub fn set_local_prefixes(&mut self, now: Instant, prefixes: Vec<(IpAddr, u8)>) {
        let norm = |v: &[(IpAddr, u8)]| -> Vec<(IpAddr, u8)> {
            let mut v: Vec<(IpAddr, u8)> = v.iter().map(|(p, l)| (mask(*p, *l), *l)).collect();
            v.sort();
            v.dedup();
            v
        };
        let (old, new) = (norm(&self.cfg.local_prefixes), norm(&prefixes));
        if old == new {
            return;
        }
        let own = (self.cfg.protocol, host_len(self.cfg.protocol));
        for (p, l) in old.iter().filter(|x| !new.contains(x) && **x != own) {
            if self
                .cache
                .get(*p, *l)
                .is_some_and(|e| e.kind == EntryType::Local)
            {
                self.cache.remove(*p, *l);
            }
            info!(target: TARGET, interface = %self.cfg.interface, prefix = %p, prefix_len = l, "NHRP: {}/{} is no longer behind this node", p, l);
        }
        for (p, l) in new.iter().filter(|x| !old.contains(x) && **x != own) {
            self.cache.insert(local_entry(&self.cfg, *p, *l, now));
            info!(target: TARGET, interface = %self.cfg.interface, prefix = %p, prefix_len = l, "NHRP: {}/{} is behind this node", p, l);
        }
        self.cfg.local_prefixes = new;
    }

    /// Our NBMA address changed (the tunnel source moved): registrations
    /// go out with the new address at once, with fresh request IDs.
    /// Resolutions in flight and replies held for IPsec, which carry the
    /// old address, are dropped; the NAT address learnt from the NHS is
    /// forgotten until the next registration reply.
    pub fn set_nbma(&mut self, now: Instant, nbma: IpAddr) {
        if nbma == self.cfg.nbma {
            return;
        }
        info!(target: TARGET, interface = %self.cfg.interface, nbma = %nbma, old_nbma = %self.cfg.nbma, "NHRP: NBMA address changed from {} to {}, registering again", self.cfg.nbma, nbma);
        self.cfg.nbma = nbma;
        self.nat_nbma = None;
        let own: Vec<(IpAddr, u8)> = self
            .cache
            .iter()
            .filter(|e| e.kind == EntryType::Local)
            .map(|e| (e.prefix, e.prefix_len))
            .collect();
        for (p, l) in own {
            if let Some(e) = self.cache.get_mut(p, l) {
                e.nbma = Some(nbma);
            }
        }
        self.register_afresh(now);
    }

    /// What we sent under our old addresses is void: resolutions in
    /// flight and replies held for IPsec are dropped, and registrations go
    /// to every NHS at once with fresh request IDs.
    pub(crate) fn register_afresh(&mut self, now: Instant) {
        let pending: Vec<IpAddr> = self.resolutions.drain().map(|(_, p)| p.dst).collect();
        for dst in pending {
            self.remove_incomplete(dst);
        }
        self.delayed.clear();
        for i in 0..self.nhs.len() {
            self.nhs[i].request_id = None;
            self.nhs[i].unanswered = 0;
            self.send_registration(now, i);
        }
    }

    fn new_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn log_send(&self, what: &str, ty: PacketType, len: usize, src: &[u8], dst: &[u8]) {
        debug!(
            target: TARGET,
            "NHRP: {} {} via {} vrf {}, packet size: {}",
            what,
            ty.ios_name(),
            self.cfg.interface,
            self.cfg.vrf,
            len
        );
        debug!(
            target: TARGET,
            " src: {}, dst: {}",
            crate::wire::addr_to_string(src),
            crate::wire::addr_to_string(dst)
        );
    }

    fn send(
        &mut self,
        _now: Instant,
        to: IpAddr,
        bytes: Vec<u8>,
        ty: PacketType,
        src: &[u8],
        dst: &[u8],
    ) {
        self.log_send("Send", ty, bytes.len(), src, dst);
        debug!(target: TARGET, "NHRP: {} bytes out {}", bytes.len(), self.cfg.interface);
        self.stats.tx += 1;
        self.traffic.sent.count(ty);
        self.transmits.push_back(Transmit {
            dst_nbma: to,
            payload: bytes,
        });
    }

    fn own_cie(&self, prefix_len: u8) -> Cie {
        Cie {
            prefix_len,
            mtu: self.cfg.mtu,
            holding_time: self.cfg.holding_time,
            nbma: ip_to_addr(self.cfg.nbma),
            proto: ip_to_addr(self.cfg.protocol),
            ..Cie::default()
        }
    }

    fn auth_ext(&self) -> Option<Extension> {
        self.cfg.authentication.as_ref().map(|pw| {
            Extension::new(ExtBody::Authentication {
                auth_type: AUTH_TYPE_CLEARTEXT,
                data: pw.as_bytes().to_vec(),
            })
        })
    }

    /// Extensions in Cisco's request order: 8003 8004 8005 8007 0009 8000.
    fn request_extensions(&self, responder: bool, nat: Vec<Cie>) -> Vec<Extension> {
        let mut v = Vec::new();
        if responder {
            v.push(Extension::new(ExtBody::ResponderAddress(None)));
        }
        v.push(Extension::new(ExtBody::ForwardTransit(Vec::new())));
        v.push(Extension::new(ExtBody::ReverseTransit(Vec::new())));
        v.extend(self.auth_ext());
        v.push(Extension::new(ExtBody::NatAddress(nat)));
        v.push(Extension::new(ExtBody::End));
        v
    }

    /// Replaces the (hop-by-hop) authentication extension with ours.
    fn reauth(&self, exts: &mut Vec<Extension>) {
        let ours = self.auth_ext();
        let pos = exts
            .iter()
            .position(|e| matches!(e.body, ExtBody::Authentication { .. }));
        match (pos, ours) {
            (Some(i), Some(a)) => exts[i] = a,
            (Some(i), None) => {
                exts.remove(i);
            }
            (None, Some(a)) => insert_before_end(exts, a),
            (None, None) => {}
        }
    }

    /// Logs a warning about refused input through the rate limiter.
    fn refused(&mut self, now: Instant, reason: Reason, msg: impl FnOnce() -> String) {
        if self.warns.allow(now, reason) {
            warn!(target: TARGET, interface = %self.cfg.interface, "{}", msg());
        } else {
            self.stats.warnings_suppressed += 1;
            debug!(target: TARGET, "{}", msg());
        }
    }

    /// A configured peer that relays for others: an NHS, or a static
    /// mapping (`ip nhrp map`).
    fn is_relay(&self, nbma: IpAddr) -> bool {
        self.nhs.iter().any(|n| n.cfg.nbma == nbma)
            || self.cfg.static_maps.iter().any(|(_, n)| *n == nbma)
    }

    fn nbma_allowed(&self, from: IpAddr) -> bool {
        match &self.cfg.allowed_nbma {
            None => true,
            Some(list) => {
                list.iter()
                    .any(|(p, l)| Prefix::new(*p, *l).contains_addr(from))
                    || self.is_relay(from)
            }
        }
    }

    fn auth_ok(&self, p: &Packet) -> bool {
        let Some(pw) = &self.cfg.authentication else {
            return true;
        };
        p.extensions.iter().any(|e| match &e.body {
            ExtBody::Authentication { auth_type, data } => {
                *auth_type == AUTH_TYPE_CLEARTEXT && bool::from(data.ct_eq(pw.as_bytes()))
            }
            _ => false,
        })
    }

    fn send_error(&mut self, now: Instant, to: IpAddr, offending: &Packet, raw: &[u8], code: u16) {
        if offending.packet_type == PacketType::ErrorIndication {
            return; // never answer an error with an error
        }
        let size = raw.len().min(usize::from(u16::MAX) - 64);
        let mut e = Packet::new(
            PacketType::ErrorIndication,
            self.cfg.nbma,
            self.cfg.protocol,
            self.cfg.protocol,
            Body::Error {
                code,
                offset: 0,
                contents: raw[..size].to_vec(),
            },
        );
        e.dst_proto = offending.src_proto.clone();
        debug!(
            target: TARGET,
            "NHRP: Sending Error Indication ({}) to {}",
            error_code::name(code),
            to
        );
        self.stats.tx_errors += 1;
        let (s, d) = (e.src_proto.clone(), e.dst_proto.clone());
        self.send(now, to, e.emit(), PacketType::ErrorIndication, &s, &d);
    }

    /// Handles one received NHRP packet (the GRE payload) from `from_nbma`.
    pub fn handle(&mut self, now: Instant, from_nbma: IpAddr, bytes: &[u8]) {
        self.stats.rx += 1;
        self.warns.roll(now);
        if !self.nbma_allowed(from_nbma) {
            self.stats.rx_nbma_refused += 1;
            self.refused(now, Reason::NbmaNotAllowed, || {
                format!("NHRP: Packet from NBMA {from_nbma} dropped: not an allowed NBMA address")
            });
            return;
        }
        let p = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.rx_malformed += 1;
                debug!(target: TARGET, "NHRP: Drop malformed packet from {}: {}", from_nbma, e);
                return;
            }
        };
        self.traffic.received.count(p.packet_type);
        let raw = &bytes[..bytes.len().min(p.emit().len())];
        debug!(
            target: TARGET,
            "NHRP: Receive {} via {} vrf {}, packet size: {}",
            p.packet_type.ios_name(),
            self.cfg.interface,
            self.cfg.vrf,
            raw.len()
        );
        if p.packet_type == PacketType::ErrorIndication {
            self.on_error_indication(now, from_nbma, &p);
            return;
        }
        if let Some(ty) = p.unknown_compulsory_extension() {
            debug!(target: TARGET, "NHRP: Unrecognized compulsory extension {:#06x}", ty);
            self.send_error(now, from_nbma, &p, raw, error_code::UNRECOGNIZED_EXTENSION);
            return;
        }
        if !self.auth_ok(&p) {
            self.stats.rx_auth_failed += 1;
            let ty = p.packet_type.ios_name();
            self.refused(now, Reason::AuthFailed, || {
                format!("NHRP: Authentication failure for {ty} from {from_nbma}")
            });
            self.send_error(now, from_nbma, &p, raw, error_code::AUTHENTICATION_FAILURE);
            return;
        }
        if p.hop_count == 0 {
            debug!(target: TARGET, "NHRP: Drop packet with hop count 0 from {}", from_nbma);
            return;
        }
        match p.packet_type {
            PacketType::RegistrationRequest => self.on_registration_request(now, from_nbma, p),
            PacketType::RegistrationReply => self.on_registration_reply(now, from_nbma, &p),
            PacketType::ResolutionRequest => self.on_resolution_request(now, from_nbma, p, raw),
            PacketType::ResolutionReply => self.on_resolution_reply(now, from_nbma, &p, raw),
            PacketType::PurgeRequest => self.on_purge_request(now, from_nbma, p),
            PacketType::PurgeReply => {
                debug!(target: TARGET, "NHRP: Purge Reply from {}", from_nbma)
            }
            PacketType::TrafficIndication => self.on_traffic_indication(now, from_nbma, &p),
            PacketType::ErrorIndication => {}
        }
    }

    // ----- client: registration -------------------------------------

    fn registration_interval(&self) -> Duration {
        self.cfg
            .registration_interval
            .unwrap_or(Duration::from_secs(u64::from(self.cfg.holding_time) / 3))
    }

    fn send_registration(&mut self, now: Instant, i: usize) {
        if self.nhs[i].request_id.is_none() {
            let id = self.new_id();
            let n = &self.nhs[i].cfg;
            let host = host_len(self.cfg.protocol);
            let mut p = Packet::new(
                PacketType::RegistrationRequest,
                self.cfg.nbma,
                self.cfg.protocol,
                n.protocol,
                Body::Cies {
                    request_id: id,
                    cies: vec![Cie {
                        prefix_len: host,
                        mtu: self.cfg.mtu,
                        holding_time: self.cfg.holding_time,
                        ..Cie::default()
                    }],
                },
            );
            p.flags = flags::CISCO_NAT | if self.cfg.unique { flags::REG_U } else { 0 };
            // Cisco names the NHS as it sees it, so an NHS behind NAT can
            // tell.
            let nat = Cie {
                prefix_len: host_len(n.protocol),
                mtu: self.cfg.mtu,
                nbma: ip_to_addr(n.nbma),
                proto: ip_to_addr(n.protocol),
                ..Cie::default()
            };
            p.extensions = self.request_extensions(true, vec![nat]);
            self.nhs[i].request_id = Some(id);
            self.nhs[i].bytes = p.emit();
            self.nhs[i].backoff = self.cfg.retransmit_initial;
        } else {
            // The previous transmission went unanswered.
            self.nhs[i].unanswered += 1;
            self.nhs[i].failed += 1;
            if self.nhs[i].unanswered >= self.cfg.nhs_down_after && self.nhs[i].up {
                self.nhs[i].up = false;
                let (nhs, nbma) = (self.nhs[i].cfg.protocol, self.nhs[i].cfg.nbma);
                info!(target: TARGET, interface = %self.cfg.interface, nhs = %nhs, nbma = %nbma, "NHRP: NHS {} ({}) is down", nhs, nbma);
                self.events.push_back(Event::NhsDown { nhs, nbma });
            }
        }
        let n = &mut self.nhs[i];
        n.sent += 1;
        n.next = now + n.backoff;
        n.backoff = (n.backoff * 2).min(self.cfg.retransmit_max);
        let (to, bytes) = (n.cfg.nbma, n.bytes.clone());
        let (s, d) = (ip_to_addr(self.cfg.protocol), ip_to_addr(n.cfg.protocol));
        debug!(target: TARGET, "NHRP: Sending packet to NHS {} on {}", n.cfg.protocol, self.cfg.interface);
        self.send(now, to, bytes, PacketType::RegistrationRequest, &s, &d);
    }

    fn on_registration_reply(&mut self, now: Instant, from: IpAddr, p: &Packet) {
        let id = p.request_id();
        let Some(i) = self
            .nhs
            .iter()
            .position(|n| n.request_id.is_some() && n.request_id == id)
        else {
            debug!(target: TARGET, "NHRP: Registration Reply from {} matches no request", from);
            return;
        };
        if self.nhs[i].cfg.nbma != from {
            // Request IDs are guessable: only the NHS asked may answer.
            self.stats.reg_reply_refused += 1;
            let nhs = self.nhs[i].cfg.nbma;
            self.refused(now, Reason::RegistrationRefused, || {
                format!("NHRP: Registration Reply for NHS {nhs} came from {from}; ignored")
            });
            return;
        }
        let c = p.cies().first().map_or(code::SUCCESS, |c| c.code);
        let interval = self.registration_interval();
        let n = &mut self.nhs[i];
        n.request_id = None;
        n.unanswered = 0;
        n.replies += 1;
        let prev = n.last_code.replace(c);
        if c != code::SUCCESS {
            n.failed += 1;
            // Retry later with back-off; the NHS is not usable meanwhile.
            n.next = now + n.backoff;
            n.backoff = (n.backoff * 2).min(self.cfg.retransmit_max);
            let (nhs, nbma, was_up) = (n.cfg.protocol, n.cfg.nbma, n.up);
            n.up = false;
            if prev != Some(c) {
                // Once per change, not for every retry.
                warn!(
                    target: TARGET,
                    interface = %self.cfg.interface,
                    nhs = %nhs,
                    nbma = %nbma,
                    code = c,
                    "NHRP: Registration with NHS {} refused, code {} ({})",
                    nhs,
                    c,
                    code::name(c)
                );
                self.events
                    .push_back(Event::RegistrationRejected { nhs, code: c });
            }
            if was_up {
                info!(target: TARGET, interface = %self.cfg.interface, nhs = %nhs, nbma = %nbma, "NHRP: NHS {} ({}) is down", nhs, nbma);
                self.events.push_back(Event::NhsDown { nhs, nbma });
            }
            return;
        }
        if prev.is_some_and(|p| p != code::SUCCESS) {
            info!(target: TARGET, interface = %self.cfg.interface, nhs = %n.cfg.protocol, nbma = %n.cfg.nbma, "NHRP: Registration with NHS {} accepted", n.cfg.protocol);
        }
        n.last_reply = Some(now);
        n.next = now + interval;
        n.backoff = self.cfg.retransmit_initial;
        if !n.up {
            n.up = true;
            let (nhs, nbma) = (n.cfg.protocol, n.cfg.nbma);
            info!(target: TARGET, interface = %self.cfg.interface, nhs = %nhs, nbma = %nbma, "NHRP: NHS {} ({}) is up", nhs, nbma);
            self.events.push_back(Event::NhsUp { nhs, nbma });
        }
        // Cisco NAT extension: the NHS names the address it saw us from.
        let own = ip_to_addr(self.cfg.protocol);
        let seen = p
            .extensions
            .iter()
            .filter(|e| matches!(e.body, ExtBody::NatAddress(_)))
            .flat_map(|e| e.cies())
            .find(|c| c.proto == own)
            .and_then(|c| c.nbma_ip());
        let new_nat = seen.filter(|n| *n != self.cfg.nbma && self.nat_nbma != Some(*n));
        if let Some(nat) = new_nat {
            info!(target: TARGET, interface = %self.cfg.interface, nbma = %self.cfg.nbma, nat_nbma = %nat, "NHRP: NAT detected: NBMA {} is seen as {}", self.cfg.nbma, nat);
            self.nat_nbma = Some(nat);
            self.events.push_back(Event::NatDetected { nat_nbma: nat });
        }
    }

    // ----- server: registration -------------------------------------

    fn on_registration_request(&mut self, now: Instant, from: IpAddr, p: Packet) {
        if !self.cfg.server {
            debug!(target: TARGET, "NHRP: Not a server, ignoring Registration Request from {}", from);
            return;
        }
        let (Some(src_proto), Some(claimed)) = (p.src_proto_ip(), p.src_nbma_ip()) else {
            debug!(target: TARGET, "NHRP: Registration Request without IP addresses from {}", from);
            return;
        };
        let unique = p.flags & flags::REG_U != 0;
        let mut reply = p.clone();
        reply.packet_type = PacketType::RegistrationReply;
        reply.hop_count = DEFAULT_HOP_COUNT;
        let mut cies = reply.cies_mut().map(std::mem::take).unwrap_or_default();
        let max = self.cfg.max_cies_per_registration;
        if cies.len() > max {
            let extra = cies.len() - max;
            self.stats.reg_refused_too_many_cies += extra as u64;
            for c in &mut cies[max..] {
                c.code = code::INSUFFICIENT_RESOURCES;
            }
            self.refused(now, Reason::RegistrationRefused, || {
                format!("NHRP: Registration Request from {from} with {} CIEs: {extra} refused (at most {max})", max + extra)
            });
        }
        for c in cies.iter_mut().take(max) {
            let proto = if c.proto.is_empty() {
                Some(src_proto)
            } else {
                c.proto_ip()
            };
            let Some(proto) = proto else {
                c.code = code::ADMIN_PROHIBITED;
                continue;
            };
            let host = host_len(proto);
            // Old IOS sends 0xff; 0 would register a default route.
            let len = if c.prefix_len == 0 || c.prefix_len > host {
                host
            } else {
                c.prefix_len
            };
            let ht = if c.holding_time == 0 {
                self.cfg.holding_time
            } else {
                c.holding_time
            };
            let claim = if c.nbma.is_empty() {
                Some(claimed)
            } else {
                c.nbma_ip()
            };
            c.code = self.register(now, proto, len, from, claim.unwrap_or(claimed), unique, ht);
        }
        if let Some(v) = reply.cies_mut() {
            *v = cies;
        }
        let host = host_len(self.cfg.protocol);
        set_responder(&mut reply.extensions, self.own_cie(host));
        self.reauth(&mut reply.extensions);
        if from != claimed {
            // Tell the client its post-NAT address.
            let nat = Cie {
                prefix_len: host_len(src_proto),
                mtu: self.cfg.mtu,
                holding_time: self.cfg.holding_time,
                nbma: ip_to_addr(from),
                proto: ip_to_addr(src_proto),
                ..Cie::default()
            };
            set_nat(&mut reply.extensions, vec![nat]);
        }
        let (s, d) = (reply.src_proto.clone(), reply.dst_proto.clone());
        self.send(
            now,
            from,
            reply.emit(),
            PacketType::RegistrationReply,
            &s,
            &d,
        );
    }

    /// Whether a registration may claim `proto/len` at all.
    fn registration_allowed(&self, proto: IpAddr, len: u8) -> bool {
        let subnet = [(self.cfg.protocol, self.cfg.tunnel_prefix_len)];
        let allowed = self.cfg.registration_prefixes.as_deref().unwrap_or(&subnet);
        allowed
            .iter()
            .any(|(p, l)| Prefix::new(*p, *l).contains(&Prefix::new(proto, len)))
    }

    /// Registers `proto/len` at `real` (the NBMA address the request came
    /// from; `claimed` is the one it named). Returns the CIE code.
    ///
    /// Refused: prefixes outside `registration_prefixes` (4); prefixes
    /// overlapping an own or configured entry of another NBMA address, or
    /// a live registration of another NBMA address made with the unique
    /// flag whose peer is not gone (14); a new registration beyond the
    /// per-NBMA or total bound (5). Overlapping registrations of other
    /// NBMA addresses that are expired, not unique or whose peer is gone
    /// are purged. A refresh (same prefix, same NBMA address) is never
    /// refused for a bound.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        now: Instant,
        proto: IpAddr,
        len: u8,
        real: IpAddr,
        claimed: IpAddr,
        unique: bool,
        ht: u16,
    ) -> u8 {
        if !self.registration_allowed(proto, len) {
            self.stats.reg_refused_prefix += 1;
            self.refused(now, Reason::RegistrationRefused, || {
                format!(
                    "NHRP: Registration of {}/{} from {} refused: outside the prefixes registrations may claim",
                    mask(proto, len),
                    len,
                    real
                )
            });
            return code::ADMIN_PROHIBITED;
        }
        let old = self.cache.get(proto, len).cloned();
        let refresh = old
            .as_ref()
            .is_some_and(|o| o.kind == EntryType::Dynamic && o.nbma == Some(real));
        let mut stale: Vec<(IpAddr, u8, bool)> = Vec::new();
        let mut keep_static = false;
        // A refresh needs no search: nothing of another NBMA address that
        // overlaps an accepted registration is left behind.
        if !refresh {
            let mut conflict = None;
            for e in self.cache.overlapping(proto, len) {
                match e.kind {
                    EntryType::Dynamic if e.nbma == Some(real) => {}
                    EntryType::Dynamic => {
                        let live = e.expires.is_none_or(|t| t > now);
                        let gone = e.nbma.is_some_and(|n| self.gone.contains(&n));
                        if !live || !e.unique || gone {
                            stale.push((e.prefix, e.prefix_len, live));
                        } else {
                            conflict = Some(e);
                            break;
                        }
                    }
                    EntryType::Static | EntryType::Nhs if e.nbma == Some(real) => {
                        // Configured mappings outlive registrations:
                        // replacing one with a dynamic entry would lose it
                        // when that expires.
                        keep_static |= e.prefix == mask(proto, len) && e.prefix_len == len;
                    }
                    EntryType::Static | EntryType::Nhs | EntryType::Local => {
                        conflict = Some(e);
                        break;
                    }
                    EntryType::Cached | EntryType::Incomplete | EntryType::Negative => {}
                }
            }
            if let Some(o) = conflict {
                let (op, ol, on, kind) = (o.prefix, o.prefix_len, o.nbma, o.kind);
                self.stats.reg_refused_unique += 1;
                self.refused(now, Reason::RegistrationRefused, || {
                    let by = on.map_or("this node".to_string(), |n| n.to_string());
                    format!(
                        "NHRP: Unique address {}/{} already registered by {} ({} entry {}/{}), rejecting {}",
                        mask(proto, len),
                        len,
                        by,
                        kind,
                        op,
                        ol,
                        real
                    )
                });
                return code::ALREADY_REGISTERED;
            }
        }
        if keep_static {
            debug!(
                target: TARGET,
                "NHRP: {}/{} is statically mapped to {}, keeping the static entry",
                proto, len, real
            );
            return code::SUCCESS;
        }
        if !refresh && self.cache.registrations_from(real) >= self.cfg.max_registrations_per_nbma {
            self.stats.reg_refused_nbma_limit += 1;
            let max = self.cfg.max_registrations_per_nbma;
            self.refused(now, Reason::RegistrationRefused, || {
                format!("NHRP: Registration of {proto}/{len} from {real} refused: it holds {max} registrations already")
            });
            return code::INSUFFICIENT_RESOURCES;
        }
        if old.is_none() && self.cache.learned() >= self.cfg.max_cache_entries {
            self.stats.reg_refused_cache_full += 1;
            let max = self.cfg.max_cache_entries;
            self.refused(now, Reason::RegistrationRefused, || {
                format!("NHRP: Registration of {proto}/{len} from {real} refused: the cache holds {max} entries")
            });
            return code::INSUFFICIENT_RESOURCES;
        }
        for (p, l, live) in stale {
            if let Some(e) = self.cache.remove(p, l) {
                if live {
                    self.stats.reg_takeovers += 1;
                    info!(
                        target: TARGET,
                        interface = %self.cfg.interface,
                        peer = %p,
                        prefix_len = l,
                        nbma = %real,
                        "NHRP: {}/{} at NBMA {} replaced by a registration from {} ({})",
                        p,
                        l,
                        e.nbma.map_or("-".to_string(), |n| n.to_string()),
                        real,
                        if e.unique { "its peer is gone" } else { "it was not unique" }
                    );
                }
                self.entry_gone_event(e);
            }
        }
        self.gone.remove(&real);
        let mut e = CacheEntry::new(proto, len, EntryType::Dynamic, now);
        e.nbma = Some(real);
        e.claimed_nbma = (claimed != real).then_some(claimed);
        e.next_hop = Some(proto);
        e.expires = Some(now + Duration::from_secs(u64::from(ht)));
        e.holding_time = ht;
        e.unique = unique;
        let changed = old
            .as_ref()
            .is_none_or(|o| o.kind != EntryType::Dynamic || o.nbma != Some(real));
        self.cache.insert(e);
        if changed {
            info!(
                target: TARGET,
                interface = %self.cfg.interface,
                peer = %proto,
                prefix_len = len,
                nbma = %real,
                claimed_nbma = %claimed,
                "NHRP: Registered {}/{} at NBMA {}",
                proto,
                len,
                real
            );
            self.events.push_back(Event::PeerRegistered {
                protocol: proto,
                prefix_len: len,
                nbma: real,
                claimed_nbma: (claimed != real).then_some(claimed),
                holding_time: ht,
            });
        }
        code::SUCCESS
    }

    // ----- resolution -----------------------------------------------

    /// Asks the NHS for a shortcut to `dst` unless one exists or is being
    /// resolved (or resolution recently failed).
    pub fn resolve(&mut self, now: Instant, dst: IpAddr) {
        // Any matching entry (shortcut, registration, local, static,
        // resolution in progress or recently failed) makes a request moot.
        if self.cache.lookup(dst).is_some() {
            return;
        }
        self.send_resolution(now, dst, true);
    }

    fn send_resolution(&mut self, now: Instant, dst: IpAddr, mark_incomplete: bool) {
        if self.resolutions.values().any(|p| p.dst == dst) {
            return;
        }
        if self.resolutions.len() >= MAX_PENDING_RESOLUTIONS {
            debug!(target: TARGET, "NHRP: Too many resolutions in flight, not resolving {}", dst);
            return;
        }
        let Some(nhs) = self.preferred_nhs().cloned() else {
            debug!(target: TARGET, "NHRP: No NHS to resolve {}", dst);
            return;
        };
        if mark_incomplete && self.cache.learned() < self.cfg.max_cache_entries {
            let mut e = CacheEntry::new(dst, host_len(dst), EntryType::Incomplete, now);
            // Shown with the time the resolution gives up at (a negative
            // entry then takes its place); the margin keeps the cache's
            // own expiry from ever coming first.
            e.expires = Some(self.resolution_deadline(now) + Duration::from_secs(1));
            self.cache.insert(e);
        }
        let id = self.new_id();
        let mut p = Packet::new(
            PacketType::ResolutionRequest,
            self.cfg.nbma,
            self.cfg.protocol,
            dst,
            Body::Cies {
                request_id: id,
                cies: vec![Cie {
                    mtu: self.cfg.mtu,
                    holding_time: self.cfg.holding_time,
                    ..Cie::default()
                }],
            },
        );
        p.flags = flags::RES_Q | flags::RES_A | flags::RES_S | flags::CISCO_NAT;
        p.extensions = self.request_extensions(true, Vec::new());
        let bytes = p.emit();
        debug!(target: TARGET, "NHRP: Sending packet to NHS {} on {}", nhs.protocol, self.cfg.interface);
        self.send(
            now,
            nhs.nbma,
            bytes.clone(),
            p.packet_type,
            &p.src_proto,
            &p.dst_proto,
        );
        self.resolutions.insert(
            id,
            Pending {
                dst,
                to: nhs.nbma,
                bytes,
                sent: now,
                next: now + self.cfg.retransmit_initial,
                backoff: self.cfg.retransmit_initial * 2,
                attempts: 1,
            },
        );
    }

    /// When a resolution first sent at `now` and never answered is given
    /// up: its retransmissions back off from `retransmit_initial`.
    fn resolution_deadline(&self, now: Instant) -> Instant {
        let mut at = now + self.cfg.retransmit_initial;
        let mut backoff = self.cfg.retransmit_initial * 2;
        for _ in 0..self.cfg.resolution_retries {
            at += backoff;
            backoff = (backoff * 2).min(self.cfg.retransmit_max);
        }
        at
    }

    fn is_local(&self, dst: IpAddr) -> Option<u8> {
        if dst == self.cfg.protocol {
            return Some(host_len(dst));
        }
        self.cfg
            .local_prefixes
            .iter()
            .filter(|(p, l)| Prefix::new(*p, *l).contains_addr(dst))
            .map(|(_, l)| *l)
            .max()
    }

    fn on_resolution_request(&mut self, now: Instant, from: IpAddr, p: Packet, raw: &[u8]) {
        let Some(dst) = p.dst_proto_ip() else {
            self.send_error(now, from, &p, raw, error_code::PROTOCOL_ERROR);
            return;
        };
        let own = ip_to_addr(self.cfg.protocol);
        let looped = p
            .extensions
            .iter()
            .filter(|e| matches!(e.body, ExtBody::ForwardTransit(_)))
            .flat_map(|e| e.cies())
            .any(|c| c.proto == own);
        if looped {
            self.refused(now, Reason::LoopDetected, || {
                format!("NHRP: Loop detected in Resolution Request for {dst}")
            });
            self.send_error(now, from, &p, raw, error_code::LOOP_DETECTED);
            return;
        }
        if let Some(len) = self.is_local(dst) {
            self.answer_resolution(now, from, p, len);
            return;
        }
        if self.cfg.server {
            // Forward towards the client that owns the destination.
            let nh = self.routes.lookup(dst).map_or(dst, |(_, nh)| *nh);
            let owner = self
                .cache
                .lookup(nh)
                .filter(|e| matches!(e.kind, EntryType::Dynamic | EntryType::Static))
                .and_then(|e| e.nbma);
            if let Some(to) = owner {
                self.forward_resolution(now, from, p, raw, to);
                return;
            }
        }
        let up_nhs = self.nhs.iter().find(|n| n.up).map(|n| n.cfg.nbma);
        if let Some(to) = up_nhs.filter(|n| *n != from) {
            self.forward_resolution(now, from, p, raw, to);
            return;
        }
        self.nak_resolution(now, from, p, code::NO_BINDING);
    }

    fn requester_nbma(p: &Packet, from: IpAddr) -> IpAddr {
        let nat = p
            .extensions
            .iter()
            .filter(|e| matches!(e.body, ExtBody::NatAddress(_)))
            .flat_map(|e| e.cies())
            .find(|c| c.proto == p.src_proto)
            .and_then(|c| c.nbma_ip());
        nat.or(p.src_nbma_ip()).unwrap_or(from)
    }

    fn forward_resolution(
        &mut self,
        now: Instant,
        from: IpAddr,
        p: Packet,
        raw: &[u8],
        to: IpAddr,
    ) {
        // Passing a request on vouches for its requester: only for one
        // registered (or statically mapped) at the address it came from,
        // unless a relay already vouched for it.
        let src = p.src_proto_ip();
        let known = src
            .and_then(|a| self.cache.get(a, host_len(a)))
            .is_some_and(|e| {
                matches!(e.kind, EntryType::Dynamic | EntryType::Static) && e.nbma == Some(from)
            });
        if !known && !self.is_relay(from) {
            self.stats.res_request_refused += 1;
            self.refused(now, Reason::ResolutionRefused, || {
                let src = src.map_or("-".to_string(), |a| a.to_string());
                format!("NHRP: Resolution Request from {from} for {src}, which is not registered there; not forwarded")
            });
            return;
        }
        if p.hop_count <= 1 {
            self.send_error(now, from, &p, raw, error_code::HOP_COUNT_EXCEEDED);
            return;
        }
        let mut f = p;
        f.hop_count -= 1;
        let first_hop = !f
            .extensions
            .iter()
            .any(|e| matches!(&e.body, ExtBody::ForwardTransit(v) if !v.is_empty()));
        let claimed = Self::requester_nbma(&f, from);
        // Cisco records transit NHSs with prefix length 0.
        let me = self.own_cie(0);
        match f.extensions.iter_mut().find_map(|e| match &mut e.body {
            ExtBody::ForwardTransit(v) => Some(v),
            _ => None,
        }) {
            Some(v) => v.push(me),
            None => insert_before_end(
                &mut f.extensions,
                Extension::new(ExtBody::ForwardTransit(vec![me])),
            ),
        }
        self.reauth(&mut f.extensions);
        // A requester behind NAT, or one naming another address in its NAT
        // extension: name the address it sent from for the responder.
        if first_hop && (f.src_nbma_ip() != Some(from) || claimed != from) {
            let nat = Cie {
                prefix_len: host_len(self.cfg.protocol),
                mtu: self.cfg.mtu,
                holding_time: self.cfg.holding_time,
                nbma: ip_to_addr(from),
                proto: f.src_proto.clone(),
                ..Cie::default()
            };
            set_nat(&mut f.extensions, vec![nat]);
        }
        self.send_forwarded(to, &f);
    }

    fn nak_resolution(&mut self, now: Instant, from: IpAddr, p: Packet, c: u8) {
        // Back the way the request came (to `from`): a requester believes
        // a refusal only from the server it asked, which passes ours on.
        let mut r = p;
        r.packet_type = PacketType::ResolutionReply;
        r.hop_count = DEFAULT_HOP_COUNT;
        if let Some(v) = r.cies_mut() {
            for cie in v.iter_mut() {
                cie.code = c;
            }
            if v.is_empty() {
                v.push(Cie {
                    code: c,
                    ..Cie::default()
                });
            }
        }
        self.reauth(&mut r.extensions);
        let (s, d) = (r.src_proto.clone(), r.dst_proto.clone());
        self.send(now, from, r.emit(), PacketType::ResolutionReply, &s, &d);
    }

    fn answer_resolution(&mut self, now: Instant, from: IpAddr, p: Packet, len: u8) {
        // A request relayed by an NHS names the requester's address (the
        // NHS vouches for it with the NAT extension); one sent to us
        // directly is answered, and its sender cached, where it came from.
        let relayed = self.is_relay(from);
        let to = if relayed {
            Self::requester_nbma(&p, from)
        } else {
            from
        };
        let request_id = p.request_id().unwrap_or(0);
        if self
            .delayed
            .iter()
            .any(|d| d.nbma == to && d.request_id == request_id)
        {
            debug!(target: TARGET, "NHRP: Resolution request is already being processed (delayed).");
            return;
        }
        let req_ht = p.cies().first().map_or(0, |c| c.holding_time);
        let mut r = p;
        r.packet_type = PacketType::ResolutionReply;
        r.hop_count = DEFAULT_HOP_COUNT;
        r.flags |= flags::RES_A | flags::RES_D | flags::RES_U;
        if let Some(v) = r.cies_mut() {
            *v = vec![self.own_cie(len)];
        }
        let host = host_len(self.cfg.protocol);
        // Cisco's responder CIE in a resolution reply has prefix length 0
        // (in a registration reply, 32).
        set_responder(&mut r.extensions, self.own_cie(0));
        self.reauth(&mut r.extensions);
        if let Some(nat) = self.nat_nbma {
            let c = Cie {
                prefix_len: host,
                mtu: self.cfg.mtu,
                holding_time: self.cfg.holding_time,
                nbma: ip_to_addr(nat),
                proto: ip_to_addr(self.cfg.protocol),
                ..Cie::default()
            };
            set_nat(&mut r.extensions, vec![c]);
        }
        // The requester becomes a shortcut for us too when an NHS relayed
        // the request (and so vouches for the requester's addresses). One
        // sent to us directly only refreshes a shortcut that already leads
        // to its sender: nobody vouches for its source protocol address.
        if let Some(src) = r.src_proto_ip() {
            let ht = if req_ht == 0 {
                self.cfg.holding_time
            } else {
                req_ht
            };
            let refresh = self
                .cache
                .get(src, host_len(src))
                .is_some_and(|e| e.kind == EntryType::Cached && e.nbma == Some(to));
            if relayed || refresh {
                self.install_shortcut(now, src, host_len(src), src, to, r.src_nbma_ip(), ht);
            }
            // Learned only from the request we answer: IOS's `implicit`.
            if relayed
                && !refresh
                && let Some(e) = self.cache.get_mut(src, host_len(src))
                && e.kind == EntryType::Cached
            {
                e.implicit = true;
            }
        }
        let bytes = r.emit();
        if self.cfg.wait_for_ipsec && !self.sa_up.contains(&to) {
            debug!(
                target: TARGET,
                "NHRP: Delaying resolution request nbma src:{} nbma dst:{} reason:IPSEC-IFC: need to wait for IPsec SAs.",
                self.cfg.nbma,
                to
            );
            if self.delayed.len() >= MAX_DELAYED {
                let d = self.delayed.remove(0);
                debug!(target: TARGET, "NHRP: Delayed queue full, dropping reply to {}", d.nbma);
            }
            self.delayed.push(Delayed {
                nbma: to,
                request_id,
                src: r.src_proto.clone(),
                dst: r.dst_proto.clone(),
                bytes,
                expires: now + self.cfg.delayed_timeout,
            });
            self.events.push_back(Event::NeedIpsec { nbma: to });
            return;
        }
        debug!(
            target: TARGET,
            "NHRP: No need to delay processing of resolution event nbma src:{} nbma dst:{}",
            self.cfg.nbma,
            to
        );
        let (s, d) = (r.src_proto.clone(), r.dst_proto.clone());
        self.send(now, to, bytes, PacketType::ResolutionReply, &s, &d);
    }

    /// Caches `prefix/len` via `next_hop` at `nbma`; `claimed` is the NBMA
    /// address the peer named when it differs (the peer is behind NAT).
    #[allow(clippy::too_many_arguments)]
    fn install_shortcut(
        &mut self,
        now: Instant,
        prefix: IpAddr,
        len: u8,
        next_hop: IpAddr,
        nbma: IpAddr,
        claimed: Option<IpAddr>,
        ht: u16,
    ) {
        let old = self.cache.get(prefix, len).cloned();
        if old.as_ref().is_some_and(|o| {
            matches!(
                o.kind,
                EntryType::Local | EntryType::Static | EntryType::Nhs | EntryType::Dynamic
            )
        }) {
            return; // never override configured or registered entries
        }
        if old.is_none() && self.cache.learned() >= self.cfg.max_cache_entries {
            self.stats.cache_full += 1;
            debug!(target: TARGET, "NHRP: Cache full, shortcut {}/{} not cached", prefix, len);
            return;
        }
        let mut e = CacheEntry::new(prefix, len, EntryType::Cached, now);
        e.nbma = Some(nbma);
        e.claimed_nbma = claimed.filter(|c| *c != nbma);
        e.next_hop = Some(next_hop);
        e.holding_time = ht;
        e.expires = Some(now + Duration::from_secs(u64::from(ht)));
        let changed = old
            .as_ref()
            .is_none_or(|o| o.kind != EntryType::Cached || o.nbma != Some(nbma));
        self.cache.insert(e);
        if changed {
            let prefix = mask(prefix, len);
            info!(
                target: TARGET,
                interface = %self.cfg.interface,
                prefix = %prefix,
                prefix_len = len,
                peer = %next_hop,
                nbma = %nbma,
                "NHRP: Shortcut {}/{} via {} at NBMA {}",
                prefix,
                len,
                next_hop,
                nbma
            );
            self.events.push_back(Event::ShortcutUp {
                prefix,
                prefix_len: len,
                next_hop,
                nbma,
            });
        }
    }

    fn on_resolution_reply(&mut self, now: Instant, from: IpAddr, p: &Packet, raw: &[u8]) {
        let Some(id) = p.request_id() else { return };
        if p.src_proto != ip_to_addr(self.cfg.protocol) {
            // Not our request: an NHS relays replies that come back along
            // the request's path (RFC 2332 5.2.2; FRR-style responders).
            self.forward_reply(now, from, p.clone(), raw);
            return;
        }
        let Some(pending) = self.resolutions.get(&id) else {
            debug!(target: TARGET, "NHRP: Resolution Reply from {} matches no request", from);
            return;
        };
        if p.dst_proto_ip() != Some(pending.dst) {
            debug!(target: TARGET, "NHRP: Resolution Reply for the wrong destination from {}", from);
            return;
        }
        let (dst, asked, sent) = (pending.dst, pending.to, pending.sent);
        let Some(c) = p.cies().first().cloned() else {
            return;
        };
        let nat = p
            .extensions
            .iter()
            .filter(|e| matches!(e.body, ExtBody::NatAddress(_)))
            .flat_map(|e| e.cies())
            .find(|n| n.proto == c.proto)
            .and_then(|n| n.nbma_ip());
        let nbma = nat.or(c.nbma_ip());
        // Trusted: a reply from an NHS or static peer (which vouches for
        // what it relays), a refusal from the server we asked, or an
        // answer straight from the NBMA address it names (its post-NAT
        // address when it is behind NAT).
        let trusted = self.is_relay(from)
            || if c.code == code::SUCCESS {
                nbma == Some(from)
            } else {
                from == asked
            };
        if !trusted {
            self.stats.res_reply_refused += 1;
            self.refused(now, Reason::ResolutionRefused, || {
                if c.code == code::SUCCESS {
                    let named = nbma.map_or("no NBMA address".to_string(), |n| format!("NBMA {n}"));
                    format!("NHRP: Resolution Reply for {dst} from {from} names {named}, not its sender; ignored")
                } else {
                    format!("NHRP: negative Resolution Reply for {dst} from {from}, which was not asked ({asked} was); ignored")
                }
            });
            return;
        }
        self.resolutions.remove(&id);
        self.remove_incomplete(dst);
        self.events.push_back(Event::ResolutionAnswered {
            dst,
            after: now.saturating_duration_since(sent),
        });
        if c.code != code::SUCCESS {
            self.negative(now, dst, Some(c.code));
            return;
        }
        let next_hop = c.proto_ip().unwrap_or(dst);
        let Some(nbma) = nbma else {
            self.negative(now, dst, Some(c.code));
            return;
        };
        let host = host_len(dst);
        let len = if c.prefix_len > host {
            host
        } else {
            c.prefix_len
        };
        let ht = if c.holding_time == 0 {
            self.cfg.holding_time
        } else {
            c.holding_time
        };
        debug!(target: TARGET, "NHRP: netid_in = 0, to_us = 1");
        let claimed = c.nbma_ip();
        self.install_shortcut(now, dst, len, next_hop, nbma, claimed, ht);
        if next_hop != dst {
            let host = host_len(next_hop);
            self.install_shortcut(now, next_hop, host, next_hop, nbma, claimed, ht);
        }
    }

    fn forward_reply(&mut self, now: Instant, from: IpAddr, p: Packet, raw: &[u8]) {
        if !self.cfg.server {
            debug!(target: TARGET, "NHRP: Resolution Reply for another node from {}, dropped", from);
            return;
        }
        let own = ip_to_addr(self.cfg.protocol);
        let looped = p
            .extensions
            .iter()
            .filter(|e| matches!(e.body, ExtBody::ReverseTransit(_)))
            .flat_map(|e| e.cies())
            .any(|c| c.proto == own);
        if looped {
            self.refused(now, Reason::LoopDetected, || {
                format!("NHRP: Loop detected in Resolution Reply from {from}")
            });
            self.send_error(now, from, &p, raw, error_code::LOOP_DETECTED);
            return;
        }
        let to = p
            .src_proto_ip()
            .and_then(|a| self.cache.get(a, host_len(a)))
            .filter(|e| e.kind == EntryType::Dynamic)
            .and_then(|e| e.nbma);
        let Some(to) = to else {
            debug!(target: TARGET, "NHRP: No route back for Resolution Reply from {}", from);
            return;
        };
        if p.hop_count <= 1 {
            self.send_error(now, from, &p, raw, error_code::HOP_COUNT_EXCEEDED);
            return;
        }
        let mut f = p;
        f.hop_count -= 1;
        let me = self.own_cie(0);
        match f.extensions.iter_mut().find_map(|e| match &mut e.body {
            ExtBody::ReverseTransit(v) => Some(v),
            _ => None,
        }) {
            Some(v) => v.push(me),
            None => insert_before_end(
                &mut f.extensions,
                Extension::new(ExtBody::ReverseTransit(vec![me])),
            ),
        }
        // The requester trusts what its NHS relays: name the address the
        // answer really came from when the responder claims another one.
        if let Some(c) = f
            .cies()
            .first()
            .filter(|c| c.code == code::SUCCESS)
            .cloned()
        {
            let nat = f
                .extensions
                .iter()
                .filter(|e| matches!(e.body, ExtBody::NatAddress(_)))
                .flat_map(|e| e.cies())
                .find(|n| n.proto == c.proto)
                .and_then(|n| n.nbma_ip());
            if nat.or(c.nbma_ip()) != Some(from) && !self.is_relay(from) {
                let n = Cie {
                    prefix_len: c.prefix_len,
                    mtu: self.cfg.mtu,
                    holding_time: c.holding_time,
                    nbma: ip_to_addr(from),
                    proto: c.proto.clone(),
                    ..Cie::default()
                };
                set_nat(&mut f.extensions, vec![n]);
            }
        }
        self.reauth(&mut f.extensions);
        self.send_forwarded(to, &f);
    }

    /// Passes on an Error Indication meant for another station, towards
    /// the client registered (or statically mapped) with that protocol
    /// address. Nothing is added to it, and no error is ever sent about
    /// it. False when there is no such client other than the sender.
    fn forward_error(&mut self, from: IpAddr, p: &Packet) -> bool {
        if p.src_nbma == ip_to_addr(self.cfg.nbma) && p.src_proto == ip_to_addr(self.cfg.protocol) {
            debug!(target: TARGET, "NHRP: Own Error Indication came back from {}, dropped", from);
            return true;
        }
        let to = p
            .dst_proto_ip()
            .and_then(|a| self.cache.get(a, host_len(a)))
            .filter(|e| matches!(e.kind, EntryType::Dynamic | EntryType::Static))
            .and_then(|e| e.nbma)
            .filter(|&nbma| nbma != from);
        let Some(to) = to else {
            return false;
        };
        if p.hop_count <= 1 {
            debug!(target: TARGET, "NHRP: Error Indication from {} out of hops, dropped", from);
            return true;
        }
        let mut f = p.clone();
        f.hop_count -= 1;
        self.send_forwarded(to, &f);
        true
    }

    /// Sends a packet passing through this NHS on to `to`.
    fn send_forwarded(&mut self, to: IpAddr, f: &Packet) {
        let bytes = f.emit();
        self.log_send(
            "Forwarding",
            f.packet_type,
            bytes.len(),
            &f.src_proto,
            &f.dst_proto,
        );
        self.stats.tx += 1;
        self.traffic.sent.count(f.packet_type);
        self.transmits.push_back(Transmit {
            dst_nbma: to,
            payload: bytes,
        });
    }

    fn remove_incomplete(&mut self, dst: IpAddr) {
        let len = host_len(dst);
        if self
            .cache
            .get(dst, len)
            .is_some_and(|e| e.kind == EntryType::Incomplete)
        {
            self.cache.remove(dst, len);
        }
    }

    fn negative(&mut self, now: Instant, dst: IpAddr, c: Option<u8>) {
        let mut e = CacheEntry::new(dst, host_len(dst), EntryType::Negative, now);
        e.expires = Some(now + self.cfg.negative_holding_time);
        let old = self.cache.get(dst, host_len(dst));
        if old.is_none() && self.cache.learned() >= self.cfg.max_cache_entries {
            self.stats.cache_full += 1;
        } else if old.is_none_or(|o| matches!(o.kind, EntryType::Incomplete | EntryType::Negative))
        {
            self.cache.insert(e);
        }
        debug!(target: TARGET, "NHRP: Resolution of {} failed (code {:?})", dst, c);
        self.events
            .push_back(Event::ResolutionFailed { dst, code: c });
    }

    // ----- purge, traffic indication, errors ---------------------------

    fn on_purge_request(&mut self, now: Instant, from: IpAddr, p: Packet) {
        let mut targets: Vec<(IpAddr, u8)> = p
            .cies()
            .iter()
            .filter_map(|c| {
                let a = c.proto_ip()?;
                let l = if c.prefix_len == 0 || c.prefix_len > host_len(a) {
                    host_len(a)
                } else {
                    c.prefix_len
                };
                Some((a, l))
            })
            .collect();
        if targets.is_empty() {
            targets.extend(p.dst_proto_ip().map(|a| (a, host_len(a))));
        }
        // Only the owner of an entry may purge it: for a registration the
        // NBMA address that registered it, for a shortcut the peer it
        // leads to or one of our NHSs (which answered or relayed the
        // resolution).
        let from_nhs = self.nhs.iter().any(|n| n.cfg.nbma == from);
        let mut refused = 0u64;
        for (a, l) in targets {
            let gone = self.cache.remove_if(|e| {
                let named = matches!(e.kind, EntryType::Cached | EntryType::Dynamic)
                    && Prefix::new(a, l).contains(&Prefix::new(e.prefix, e.prefix_len));
                let owner = e.nbma == Some(from) || (e.kind == EntryType::Cached && from_nhs);
                refused += u64::from(named && !owner);
                named && owner
            });
            for e in gone {
                debug!(target: TARGET, "NHRP: Purged {}/{}", e.prefix, e.prefix_len);
                self.entry_gone_event(e);
            }
        }
        if refused > 0 {
            self.stats.purge_refused += refused;
            self.refused(now, Reason::PurgeRefused, || {
                format!("NHRP: Purge Request from {from}: {refused} entries it does not own kept")
            });
        }
        if p.flags & flags::PURGE_N == 0 {
            let mut r = p;
            r.packet_type = PacketType::PurgeReply;
            r.hop_count = DEFAULT_HOP_COUNT;
            self.reauth(&mut r.extensions);
            let (s, d) = (r.src_proto.clone(), r.dst_proto.clone());
            self.send(now, from, r.emit(), PacketType::PurgeReply, &s, &d);
        }
    }

    /// Sends a Purge Request for `prefix/len` to `to_nbma` (e.g. to peers
    /// that resolved a prefix we no longer serve).
    pub fn purge(&mut self, now: Instant, to_nbma: IpAddr, prefix: IpAddr, prefix_len: u8) {
        let id = self.new_id();
        let mut p = Packet::new(
            PacketType::PurgeRequest,
            self.cfg.nbma,
            self.cfg.protocol,
            prefix,
            Body::Cies {
                request_id: id,
                cies: vec![Cie {
                    prefix_len,
                    mtu: self.cfg.mtu,
                    proto: ip_to_addr(prefix),
                    ..Cie::default()
                }],
            },
        );
        p.extensions = self.request_extensions(false, Vec::new());
        let (s, d) = (p.src_proto.clone(), p.dst_proto.clone());
        self.send(now, to_nbma, p.emit(), PacketType::PurgeRequest, &s, &d);
    }

    fn entry_gone_event(&mut self, e: CacheEntry) {
        match e.kind {
            EntryType::Dynamic => self.events.push_back(Event::PeerExpired {
                protocol: e.prefix,
                prefix_len: e.prefix_len,
                nbma: e.nbma,
            }),
            EntryType::Cached => self.events.push_back(Event::ShortcutDown {
                prefix: e.prefix,
                prefix_len: e.prefix_len,
                nbma: e.nbma,
            }),
            _ => {}
        }
    }

    /// `clear ip nhrp ADDRESS [MASK]`: drops the dynamic, cached,
    /// incomplete or negative entry for exactly `prefix/prefix_len`
    /// (configured ones stay). Returns how many entries went (0 or 1).
    pub fn clear_entry(&mut self, prefix: IpAddr, prefix_len: u8) -> u64 {
        let clearable = self.cache.get(prefix, prefix_len).is_some_and(|e| {
            matches!(
                e.kind,
                EntryType::Dynamic
                    | EntryType::Cached
                    | EntryType::Incomplete
                    | EntryType::Negative
            )
        });
        if !clearable {
            return 0;
        }
        let host = prefix_len == host_len(prefix);
        self.resolutions.retain(|_, p| !(host && p.dst == prefix));
        match self.cache.remove(prefix, prefix_len) {
            Some(e) => {
                self.entry_gone_event(e);
                1
            }
            None => 0,
        }
    }

    /// `clear ip nhrp`: drops dynamic, cached, incomplete and negative
    /// entries.
    pub fn clear(&mut self) {
        let gone = self.cache.remove_if(|e| {
            matches!(
                e.kind,
                EntryType::Dynamic
                    | EntryType::Cached
                    | EntryType::Incomplete
                    | EntryType::Negative
            )
        });
        for e in gone {
            self.entry_gone_event(e);
        }
        self.resolutions.clear();
    }

    fn on_traffic_indication(&mut self, now: Instant, from: IpAddr, p: &Packet) {
        if !self.cfg.shortcut {
            debug!(target: TARGET, "NHRP: Traffic Indication ignored (shortcut disabled)");
            return;
        }
        if !self.is_relay(from) {
            // Only the hub that relayed our traffic has reason to send one.
            self.stats.traffic_indications_refused += 1;
            self.refused(now, Reason::ResolutionRefused, || {
                format!("NHRP: Traffic Indication from {from}, not an NHS; ignored")
            });
            return;
        }
        let Body::Traffic { contents, .. } = &p.body else {
            return;
        };
        let Some((_, dst, _)) = ip_endpoints(contents) else {
            debug!(target: TARGET, "NHRP: Traffic Indication without an IP header");
            return;
        };
        debug!(target: TARGET, "NHRP: Traffic Indication for {}: resolving", dst);
        self.resolve(now, dst);
    }

    /// (Hub, `redirect` on) a data packet from `from_nbma` was relayed
    /// back out of the tunnel: tell the sender to resolve a shortcut.
    /// Rate-limited per (source, destination) and globally.
    pub fn traffic_relayed(&mut self, now: Instant, from_nbma: IpAddr, packet: &[u8]) {
        if !self.cfg.redirect {
            return;
        }
        let Some((src, dst, take)) = ip_endpoints(packet) else {
            return;
        };
        if self
            .redirect_last
            .get(&(src, dst))
            .is_some_and(|t| now.saturating_duration_since(*t) < self.cfg.redirect_holddown)
        {
            self.stats.traffic_indications_holddown += 1;
            return;
        }
        if now.saturating_duration_since(self.send_window.0) >= self.cfg.max_send_interval {
            self.send_window = (now, 0);
        }
        if self.send_window.1 >= self.cfg.max_send {
            self.stats.traffic_indications_max_send += 1;
            return;
        }
        self.send_window.1 += 1;
        let hold = self.cfg.redirect_holddown;
        self.redirect_last
            .retain(|_, t| now.saturating_duration_since(*t) < hold);
        self.redirect_last.insert((src, dst), now);
        let mut p = Packet::new(
            PacketType::TrafficIndication,
            self.cfg.nbma,
            self.cfg.protocol,
            src,
            Body::Traffic {
                code: 0,
                unused: 0,
                contents: packet[..take].to_vec(),
            },
        );
        p.extensions = self.request_extensions(false, Vec::new());
        self.stats.tx_traffic_indications += 1;
        let (s, d) = (p.src_proto.clone(), p.dst_proto.clone());
        self.send(
            now,
            from_nbma,
            p.emit(),
            PacketType::TrafficIndication,
            &s,
            &d,
        );
    }

    fn on_error_indication(&mut self, now: Instant, from: IpAddr, p: &Packet) {
        // RFC 2332 §5.2.7: an Error Indication goes to the station that
        // sent the offending packet (its Destination Protocol Address),
        // routed like a reply; a transiting NHS passes it on. One it
        // cannot pass on is handled here, as it always was.
        if self.cfg.server
            && p.dst_proto != ip_to_addr(self.cfg.protocol)
            && self.forward_error(from, p)
        {
            return;
        }
        let Body::Error {
            code: c, contents, ..
        } = &p.body
        else {
            return;
        };
        let c = *c;
        self.refused(now, Reason::ErrorIndication, || {
            format!(
                "NHRP: Error Indication from {from}: {} ({c})",
                error_code::name(c)
            )
        });
        self.events
            .push_back(Event::ErrorIndication { from, code: c });
        let Ok(orig) = Packet::parse_unchecked(contents) else {
            return;
        };
        let Some(id) = orig.request_id() else { return };
        match orig.packet_type {
            // Only the station the request went to (or a relay on its
            // way) can have a say about it.
            PacketType::ResolutionRequest => {
                let ours = self
                    .resolutions
                    .get(&id)
                    .is_some_and(|pend| pend.to == from || self.is_relay(from));
                if let Some(pend) = ours.then(|| self.resolutions.remove(&id)).flatten() {
                    self.remove_incomplete(pend.dst);
                    self.negative(now, pend.dst, None);
                }
            }
            PacketType::RegistrationRequest => {
                if let Some(n) = self
                    .nhs
                    .iter_mut()
                    .find(|n| n.request_id == Some(id) && n.cfg.nbma == from)
                {
                    // Keep retrying with back-off, but as a fresh request.
                    n.request_id = None;
                    n.next = now + n.backoff;
                    n.backoff = (n.backoff * 2).min(self.cfg.retransmit_max);
                }
            }
            _ => {}
        }
    }

    // ----- timers ---------------------------------------------------

    /// Runs everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.warns.roll(now);
        for i in 0..self.nhs.len() {
            if self.nhs[i].next <= now {
                self.send_registration(now, i);
            }
        }
        let due: Vec<u32> = self
            .resolutions
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let give_up = self
                .resolutions
                .get(&id)
                .is_some_and(|p| p.attempts > self.cfg.resolution_retries);
            if give_up {
                if let Some(p) = self.resolutions.remove(&id) {
                    self.remove_incomplete(p.dst);
                    self.negative(now, p.dst, None);
                }
                continue;
            }
            if let Some(p) = self.resolutions.get_mut(&id) {
                p.attempts += 1;
                p.next = now + p.backoff;
                p.backoff = (p.backoff * 2).min(self.cfg.retransmit_max);
                let (to, bytes, dst) = (p.to, p.bytes.clone(), p.dst);
                self.send(
                    now,
                    to,
                    bytes,
                    PacketType::ResolutionRequest,
                    &ip_to_addr(self.cfg.protocol),
                    &ip_to_addr(dst),
                );
            }
        }
        let expired: Vec<usize> = (0..self.delayed.len())
            .filter(|i| self.delayed[*i].expires <= now)
            .collect();
        for i in expired.into_iter().rev() {
            let d = self.delayed.remove(i);
            debug!(target: TARGET, "NHRP: Dropping delayed resolution reply to {} (no IPsec SA)", d.nbma);
        }
        for e in self.cache.expire(now) {
            debug!(target: TARGET, "NHRP: Expired {} entry {}/{}", e.kind, e.prefix, e.prefix_len);
            self.entry_gone_event(e);
        }
        let cache = &self.cache;
        self.gone.retain(|n| cache.registrations_from(*n) > 0);
        let refresh = self.cache.take_due_refreshes(now);
        for (prefix, len) in refresh {
            // Only shortcuts the data path used since they were learnt.
            match self.cache.get_mut(prefix, len) {
                Some(e) if e.used => e.used = false,
                _ => continue,
            }
            debug!(target: TARGET, "NHRP: Refreshing used entry {}/{}", prefix, len);
            self.send_resolution(now, prefix, false);
        }
    }
}

/// The cache entry of `prefix/len`, a network behind this node.
fn local_entry(cfg: &Config, prefix: IpAddr, len: u8, now: Instant) -> CacheEntry {
    let mut e = CacheEntry::new(prefix, len, EntryType::Local, now);
    e.nbma = Some(cfg.nbma);
    e.next_hop = Some(cfg.protocol);
    e
}

fn insert_before_end(exts: &mut Vec<Extension>, e: Extension) {
    let at = exts
        .iter()
        .position(|x| matches!(x.body, ExtBody::End))
        .unwrap_or(exts.len());
    exts.insert(at, e);
}

fn set_responder(exts: &mut Vec<Extension>, c: Cie) {
    match exts
        .iter_mut()
        .find(|e| matches!(e.body, ExtBody::ResponderAddress(_)))
    {
        Some(e) => e.body = ExtBody::ResponderAddress(Some(c)),
        None => insert_before_end(exts, Extension::new(ExtBody::ResponderAddress(Some(c)))),
    }
}

fn set_nat(exts: &mut Vec<Extension>, cies: Vec<Cie>) {
    match exts
        .iter_mut()
        .find(|e| matches!(e.body, ExtBody::NatAddress(_)))
    {
        Some(e) => e.body = ExtBody::NatAddress(cies),
        None => insert_before_end(exts, Extension::new(ExtBody::NatAddress(cies))),
    }
}
