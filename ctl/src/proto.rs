//! Control-socket protocol: one JSON object per line, one request line from
//! the client, one response line from dmvpnd.
//!
//! The snapshot types carry what the matching IOS `show` command prints.
//! They depend on no other dmvpn crate: dmvpnd converts its own state into
//! them, so the wire format stays stable while internals change.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where dmvpnd listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/dmvpn/dmvpnd.sock";

/// Longest request line the server accepts (bytes, newline excluded).
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// Why a request line is refused; its text is what the server sends back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: empty line")]
    Empty,
    #[error("bad request: {len} bytes, longer than {MAX_REQUEST_LEN}")]
    TooLong { len: usize },
    /// Not one JSON object (or cut short).
    #[error("bad request: not a JSON object (column {column}: {message})")]
    NotJson { column: usize, message: String },
    /// JSON, but not a command this dmvpnd knows, or with wrong fields:
    /// typically a newer dmvpnctl than dmvpnd.
    #[error("bad request: {message} (is dmvpnctl newer than dmvpnd?)")]
    Unknown { message: String },
}

/// Parses one request line (surrounding blanks ignored).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Err(RequestError::Empty);
    }
    if line.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong { len: line.len() });
    }
    if line[0] != b'{' {
        return Err(RequestError::NotJson {
            column: 1,
            message: "a request is one object, e.g. {\"cmd\":\"show_dmvpn\"}".into(),
        });
    }
    serde_json::from_slice(line).map_err(|e| {
        use serde_json::error::Category;
        let message = e.to_string();
        match e.classify() {
            Category::Data => RequestError::Unknown { message },
            Category::Syntax | Category::Eof | Category::Io => RequestError::NotJson {
                column: e.column(),
                message,
            },
        }
    })
}

/// One operator command. Views of the same state (`show crypto isakmp
/// sa` and its `detail`, `show ip nhrp` and its `brief`, `show crypto
/// session` and its `detail`) share one request: the client picks the
/// rendering.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// `show ip nhrp [brief]`
    ShowNhrp,
    /// `show ipv6 nhrp [brief]`: a dual-stack tunnel's IPv6 entries.
    ShowIpv6Nhrp,
    /// `show ip nhrp nhs`
    ShowNhrpNhs,
    /// `show ip nhrp traffic`: NHRP packets by type, and drops.
    ShowNhrpTraffic,
    /// `show dmvpn`
    ShowDmvpn,
    /// `show dmvpn detail`: peers with their target networks, the NHSs
    /// and the crypto sessions, in one answer.
    ShowDmvpnDetail,
    /// `show crypto isakmp sa [detail]`
    ShowCryptoIsakmpSa,
    /// `show crypto ipsec sa`
    ShowCryptoIpsecSa,
    /// `show crypto session [detail]`
    ShowCryptoSession,
    /// `clear ip nhrp`: drop dynamic NHRP entries (static ones stay).
    ClearNhrp,
    /// `clear ip nhrp ADDRESS [MASK]`: drop the dynamic entry for exactly
    /// ADDRESS/MASK.
    ClearNhrpEntry {
        address: IpAddr,
        /// Prefix length of the entry; a host entry when left out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_len: Option<u8>,
    },
    /// `clear crypto sa [peer X]`: delete IKE and IPsec SAs (all, or one peer's).
    ClearCryptoSa {
        #[serde(default)]
        peer: Option<IpAddr>,
    },
    /// `clear crypto session [remote X]`: tear down the IKE and IPsec SAs
    /// of every session, or of the one with peer X.
    ClearCryptoSession {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<IpAddr>,
    },
    /// `debug …` / `undebug …`: switch a log target to debug level or back.
    Debug { target: DebugTarget, on: bool },
    /// `dmvpnctl reload` (not an IOS command): read the configuration
    /// file again, check it as `dmvpnd --check` does, and apply what
    /// changed in place. A file with errors, or a change that needs a
    /// restart, is refused and the running configuration stays.
    Reload,
    /// Counters with no IOS view: IKE negotiations, NHRP resolution
    /// latency (the metrics endpoint asks for them).
    ShowStats,
}

/// Log areas `debug` switches, named as on IOS.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DebugTarget {
    /// `debug nhrp` (NHRP and the GRE encapsulation it rides on).
    Nhrp,
    /// `debug crypto isakmp`
    CryptoIsakmp,
    /// `debug crypto ipsec` (ESP data plane and SA installation).
    CryptoIpsec,
}

impl DebugTarget {
    pub const ALL: [DebugTarget; 3] = [
        DebugTarget::Nhrp,
        DebugTarget::CryptoIsakmp,
        DebugTarget::CryptoIpsec,
    ];

    /// `tracing` targets this switch covers.
    pub fn tracing_targets(self) -> &'static [&'static str] {
        match self {
            DebugTarget::Nhrp => &["dmvpn::nhrp", "dmvpn::gre"],
            DebugTarget::CryptoIsakmp => &["dmvpn::ike"],
            DebugTarget::CryptoIpsec => &["dmvpn::esp"],
        }
    }

    /// The words IOS uses when it confirms the switch.
    pub fn ios_name(self) -> &'static str {
        match self {
            DebugTarget::Nhrp => "NHRP protocol",
            DebugTarget::CryptoIsakmp => "Crypto ISAKMP",
            DebugTarget::CryptoIpsec => "Crypto IPSEC",
        }
    }
}

/// An `EnvFilter` directive string: `base` plus `target=debug` for every
/// target switched on, e.g. `info,dmvpn::nhrp=debug,dmvpn::gre=debug`.
pub fn debug_filter<'a>(base: &str, on: impl IntoIterator<Item = &'a DebugTarget>) -> String {
    let mut s = base.to_string();
    for t in on {
        for name in t.tracing_targets() {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(name);
            s.push_str("=debug");
        }
    }
    s
}

/// Which `debug` switches are on, on top of the configured log filter.
/// dmvpnd keeps one and reloads its `EnvFilter` with [`DebugSwitches::filter`]
/// after every `debug` request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DebugSwitches {
    base: String,
    on: std::collections::BTreeSet<DebugTarget>,
}

impl DebugSwitches {
    /// `base` is the configured filter (`[log] filter`, e.g. `info`).
    pub fn new(base: impl Into<String>) -> Self {
        DebugSwitches {
            base: base.into(),
            on: Default::default(),
        }
    }

    /// Flips one switch and returns the reply for the client.
    pub fn set(&mut self, target: DebugTarget, on: bool) -> Reply {
        if on {
            self.on.insert(target);
        } else {
            self.on.remove(&target);
        }
        Reply::Debug { target, on }
    }

    pub fn is_on(&self, target: DebugTarget) -> bool {
        self.on.contains(&target)
    }

    /// The filter directive to load now.
    pub fn filter(&self) -> String {
        debug_filter(&self.base, &self.on)
    }

    /// A new configured filter (a reload); the switches stay as they are.
    pub fn set_base(&mut self, base: impl Into<String>) {
        self.base = base.into();
    }
}

/// dmvpnd's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error { message: String },
}

impl Response {
    pub fn error(message: impl Into<String>) -> Self {
        Response::Error {
            message: message.into(),
        }
    }
}

/// Successful answers, one per request kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Nhrp(Vec<NhrpEntry>),
    NhrpNhs(Vec<NhsEntry>),
    NhrpTraffic(Vec<NhrpTraffic>),
    Dmvpn(Vec<DmvpnInterface>),
    DmvpnDetail(DmvpnDetail),
    IsakmpSa(Vec<IsakmpSa>),
    IpsecSa(IpsecSaReport),
    CryptoSession(Vec<CryptoSession>),
    /// Answer to the `clear` commands: how many entries / SAs went away.
    Cleared {
        count: u64,
    },
    /// Answer to `debug`: the switch's new position.
    Debug {
        target: DebugTarget,
        on: bool,
    },
    /// Answer to `reload`: the file read and what changed.
    Reloaded(ReloadReport),
    Stats(Vec<crate::stats::TunnelStats>),
}

/// What a reload applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReloadReport {
    /// The configuration file read.
    pub file: String,
    /// Changed keys, in key order; empty when the file did not change.
    pub changes: Vec<ConfigChange>,
    /// Warnings about the file, `FILE:LINE:COL: warning: …`, as
    /// `dmvpnd --check` prints them.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One configuration key a reload changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// The key's path, as in configuration diagnostics (`tunnel[0].nhrp.holdtime`).
    pub key: String,
    /// When it takes effect (`applied now`, `from the next registration`, …).
    pub effect: String,
}

/// A named counter. `key` stays the same across releases (for scripts);
/// `label` is the words the text output prints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub label: String,
    pub count: u64,
}

impl Counter {
    pub fn new(key: &str, label: &str, count: u64) -> Counter {
        Counter {
            key: key.to_string(),
            label: label.to_string(),
            count,
        }
    }
}

// ---------------------------------------------------------------- NHRP cache

/// One `show ip nhrp` entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NhrpEntry {
    /// Protocol (tunnel-side) destination prefix.
    pub prefix: IpAddr,
    pub prefix_len: u8,
    /// Next hop's tunnel address; `None` for incomplete/negative entries.
    pub via: Option<IpAddr>,
    pub interface: String,
    /// Seconds since the entry was created.
    pub created_secs: u64,
    /// Seconds until it expires; `None` = never.
    pub expire_secs: Option<u64>,
    #[serde(rename = "type")]
    pub entry_type: NhrpEntryType,
    pub flags: Vec<NhrpFlag>,
    /// NBMA address packets are sent to (after NAT, as seen by us).
    pub nbma: Option<IpAddr>,
    /// NBMA address the peer claimed in its packets, when NAT changed it.
    #[serde(default)]
    pub claimed_nbma: Option<IpAddr>,
    /// Lookups that hit this entry (IOS prints it for incomplete entries).
    #[serde(default)]
    pub cache_hits: Option<u64>,
}

/// IOS's entry types: configured mappings and NHSs are `static`,
/// registrations and shortcuts `dynamic`, resolutions under way
/// `incomplete`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NhrpEntryType {
    Static,
    Dynamic,
    Incomplete,
    /// A resolution that failed (negative caching); IOS prints it as
    /// `incomplete` too, the JSON keeps it apart.
    Negative,
}

impl NhrpEntryType {
    /// The word IOS prints after `Type:`.
    pub fn as_str(self) -> &'static str {
        match self {
            NhrpEntryType::Static => "static",
            NhrpEntryType::Dynamic => "dynamic",
            NhrpEntryType::Incomplete | NhrpEntryType::Negative => "incomplete",
        }
    }
}

/// `Flags:` words of `show ip nhrp`, printed in this declaration order
/// (IOS's: `router implicit used nhop`, `unique registered used nhop`,
/// `router nhop rib nho`, `router unique local`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum NhrpFlag {
    /// The mapping leads to a router with networks behind it (shortcuts).
    Router,
    Authoritative,
    /// Learned from the source of a resolution request this node answered.
    Implicit,
    /// Registered with the unique flag: no other NBMA may take it over.
    Unique,
    /// The peer is behind NAT (its claimed NBMA address differs).
    Nat,
    /// Learned from a registration (hub side).
    Registered,
    /// The data path sent traffic with it since it was last refreshed.
    Used,
    /// The entry's address is itself a next hop (a tunnel address).
    Nhop,
    /// Installed for forwarding (IOS: an NHRP route in the RIB).
    Rib,
    /// Overrides the path via the hub (IOS: next-hop override).
    Nho,
    /// One of this node's own networks.
    Local,
    /// Resolution under way or failed.
    Negative,
    /// Mapping that does not trigger IPsec (IOS prints `(no-socket)`
    /// on its own line, not among the flags).
    NoSocket,
}

impl NhrpFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            NhrpFlag::Router => "router",
            NhrpFlag::Authoritative => "authoritative",
            NhrpFlag::Implicit => "implicit",
            NhrpFlag::Unique => "unique",
            NhrpFlag::Nat => "nat",
            NhrpFlag::Registered => "registered",
            NhrpFlag::Used => "used",
            NhrpFlag::Nhop => "nhop",
            NhrpFlag::Rib => "rib",
            NhrpFlag::Nho => "nho",
            NhrpFlag::Local => "local",
            NhrpFlag::Negative => "negative",
            NhrpFlag::NoSocket => "no-socket",
        }
    }

    /// The letter `show ip nhrp brief` prints for the flag, if any.
    pub fn brief(self) -> Option<char> {
        match self {
            NhrpFlag::Unique => Some('u'),
            NhrpFlag::Registered => Some('r'),
            NhrpFlag::Authoritative => Some('a'),
            NhrpFlag::Rib => Some('t'),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- NHRP traffic

/// NHRP packets of each type (`show ip nhrp traffic`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(default)]
pub struct NhrpTypeCounts {
    pub resolution_request: u64,
    pub resolution_reply: u64,
    pub registration_request: u64,
    pub registration_reply: u64,
    pub purge_request: u64,
    pub purge_reply: u64,
    pub error_indication: u64,
    pub traffic_indication: u64,
}

impl NhrpTypeCounts {
    pub fn total(&self) -> u64 {
        self.resolution_request
            + self.resolution_reply
            + self.registration_request
            + self.registration_reply
            + self.purge_request
            + self.purge_reply
            + self.error_indication
            + self.traffic_indication
    }
}

/// One tunnel's `show ip nhrp traffic`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NhrpTraffic {
    pub interface: String,
    /// `ip nhrp max-send`: at most this many Traffic Indications …
    pub max_send_packets: u32,
    /// … per this many seconds …
    pub max_send_secs: u64,
    /// … of which this many went out in the current window.
    pub max_send_used: u32,
    pub sent: NhrpTypeCounts,
    pub received: NhrpTypeCounts,
    /// Packets dropped, by reason (NHRP packets, and data packets that
    /// found no NHRP mapping).
    pub drops: Vec<Counter>,
}

// ---------------------------------------------------------------- NHS

/// One `show ip nhrp nhs detail` line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NhsEntry {
    pub interface: String,
    /// The NHS's tunnel address.
    pub nhs: IpAddr,
    pub nbma: Option<IpAddr>,
    pub priority: u32,
    pub cluster: u32,
    pub state: NhsState,
    pub requests_sent: u64,
    pub requests_failed: u64,
    pub replies_received: u64,
    /// Seconds since the last reply.
    #[serde(default)]
    pub last_reply_secs: Option<u64>,
    /// Request ID of the registration awaiting a reply (IOS "Pending
    /// Registration Requests").
    #[serde(default)]
    pub pending_request_id: Option<u32>,
    /// Seconds until that request is sent again.
    #[serde(default)]
    pub retransmit_secs: Option<u64>,
    /// The NHS refused our last registration (not `R` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<NhsRefusal>,
}

/// A registration the NHS answered with a CIE code other than success.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NhsRefusal {
    /// The CIE code (RFC 2332: 4 administratively prohibited, 5
    /// insufficient resources, 14 already registered by another NBMA
    /// address, …).
    pub code: u8,
    pub reason: String,
}

/// IOS's `E`/`R`/`W`/`D` letters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NhsState {
    /// R: the NHS answers our registrations (it is up).
    pub responding: bool,
    /// E: a registration is outstanding.
    pub expecting: bool,
    /// W: waiting (e.g. for IPsec) before the first request.
    pub waiting: bool,
    /// D: learned dynamically rather than configured.
    #[serde(default)]
    pub dynamic: bool,
}

impl NhsState {
    pub fn is_up(self) -> bool {
        self.responding
    }
    /// Letters in IOS order, e.g. `RE`.
    pub fn letters(self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.responding, 'R'),
            (self.expecting, 'E'),
            (self.waiting, 'W'),
            (self.dynamic, 'D'),
        ] {
            if on {
                s.push(c);
            }
        }
        s
    }
}

// ---------------------------------------------------------------- DMVPN

/// One tunnel interface in `show dmvpn`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DmvpnInterface {
    pub interface: String,
    pub role: DmvpnRole,
    pub peers: Vec<DmvpnPeer>,
    /// The tunnel's own address (`show dmvpn detail`).
    #[serde(default)]
    pub tunnel_addr: Option<IpAddr>,
    /// NBMA source address.
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Point-to-point tunnel destination; `None` for multipoint GRE.
    #[serde(default)]
    pub destination: Option<IpAddr>,
    /// IPsec profile protecting the tunnel.
    #[serde(default)]
    pub protection: Option<String>,
    /// Whether the line protocol is up: down while every NHS is down on
    /// a tunnel with `if_state` (IOS `if-state nhrp`).
    #[serde(default = "line_up")]
    pub line_protocol_up: bool,
    /// `if_state` is on (IOS `Interface State Control: Enabled`).
    #[serde(default)]
    pub if_state: bool,
}

fn line_up() -> bool {
    true
}

/// `show dmvpn detail`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DmvpnDetail {
    pub interfaces: Vec<DmvpnInterface>,
    pub nhs: Vec<NhsEntry>,
    pub sessions: Vec<CryptoSession>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DmvpnRole {
    Hub,
    Spoke,
    HubSpoke,
}

/// All NHRP entries sharing one NBMA peer (`# Ent` is `entries.len()`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DmvpnPeer {
    /// `None` while a resolution is under way (IOS prints `UNKNOWN`).
    pub nbma: Option<IpAddr>,
    pub entries: Vec<DmvpnPeerEntry>,
}

/// One NHRP entry of a peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DmvpnPeerEntry {
    /// The peer's tunnel address (the entry's next hop).
    pub tunnel: IpAddr,
    /// The entry's network (`Target Network` of `show dmvpn detail`).
    pub target: IpAddr,
    pub target_len: u8,
    pub state: DmvpnState,
    /// Seconds since the entry went up (or down).
    pub updn_secs: u64,
    pub attrs: Vec<DmvpnAttr>,
}

/// `State` column: how far the peer's tunnel got.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DmvpnState {
    Up,
    Down,
    /// IPsec up, NHRP not yet.
    Nhrp,
    /// IKE phase 1 in progress.
    Ike,
    /// IKE done, IPsec SAs not yet.
    Ipsec,
}

impl DmvpnState {
    pub fn as_str(self) -> &'static str {
        match self {
            DmvpnState::Up => "UP",
            DmvpnState::Down => "DOWN",
            DmvpnState::Nhrp => "NHRP",
            DmvpnState::Ike => "IKE",
            DmvpnState::Ipsec => "IPSEC",
        }
    }
}

/// `Attrb` letters of the IOS legend, printed in declaration order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DmvpnAttr {
    /// S - Static
    Static,
    /// D - Dynamic
    Dynamic,
    /// I - Incomplete
    Incomplete,
    /// N - NATed
    Nated,
    /// L - Local
    Local,
    /// X - No Socket
    NoSocket,
    /// T1 - Route Installed
    RouteInstalled,
    /// T2 - Nexthop-override
    NexthopOverride,
    /// C - CTS Capable
    CtsCapable,
    /// I2 - Temporary
    Temporary,
}

impl DmvpnAttr {
    pub fn code(self) -> &'static str {
        match self {
            DmvpnAttr::Static => "S",
            DmvpnAttr::Dynamic => "D",
            DmvpnAttr::Incomplete => "I",
            DmvpnAttr::Nated => "N",
            DmvpnAttr::Local => "L",
            DmvpnAttr::NoSocket => "X",
            DmvpnAttr::RouteInstalled => "T1",
            DmvpnAttr::NexthopOverride => "T2",
            DmvpnAttr::CtsCapable => "C",
            DmvpnAttr::Temporary => "I2",
        }
    }
}

// ---------------------------------------------------------------- ISAKMP

/// One `show crypto isakmp sa` row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IsakmpSa {
    pub local: IpAddr,
    pub remote: IpAddr,
    /// This node started the exchange.
    pub initiator: bool,
    pub state: IsakmpState,
    pub conn_id: u32,
    pub status: SaStatus,
    /// What `show crypto isakmp sa detail` adds, once phase 1 is done.
    #[serde(default)]
    pub details: Option<IsakmpDetails>,
}

impl IsakmpSa {
    /// IOS's `dst` column: the responder's address.
    pub fn dst(&self) -> IpAddr {
        if self.initiator {
            self.remote
        } else {
            self.local
        }
    }

    /// IOS's `src` column: the initiator's address.
    pub fn src(&self) -> IpAddr {
        if self.initiator {
            self.local
        } else {
            self.remote
        }
    }
}

/// Phase-1 state names as IOS prints them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsakmpState {
    #[serde(rename = "MM_NO_STATE")]
    MmNoState,
    #[serde(rename = "MM_SA_SETUP")]
    MmSaSetup,
    #[serde(rename = "MM_KEY_EXCH")]
    MmKeyExch,
    #[serde(rename = "MM_ACTIVE")]
    MmActive,
    #[serde(rename = "AG_NO_STATE")]
    AgNoState,
    #[serde(rename = "AG_INIT_EXCH")]
    AgInitExch,
    #[serde(rename = "AG_AUTH")]
    AgAuth,
    #[serde(rename = "QM_IDLE")]
    QmIdle,
}

impl IsakmpState {
    pub fn as_str(self) -> &'static str {
        match self {
            IsakmpState::MmNoState => "MM_NO_STATE",
            IsakmpState::MmSaSetup => "MM_SA_SETUP",
            IsakmpState::MmKeyExch => "MM_KEY_EXCH",
            IsakmpState::MmActive => "MM_ACTIVE",
            IsakmpState::AgNoState => "AG_NO_STATE",
            IsakmpState::AgInitExch => "AG_INIT_EXCH",
            IsakmpState::AgAuth => "AG_AUTH",
            IsakmpState::QmIdle => "QM_IDLE",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SaStatus {
    Active,
    Deleted,
    Standby,
    /// An ISAKMP SA being replaced by a newer one (phase 1 rekey).
    Stale,
}

impl SaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SaStatus::Active => "ACTIVE",
            SaStatus::Deleted => "DELETED",
            SaStatus::Standby => "STANDBY",
            SaStatus::Stale => "STALE",
        }
    }
}

/// Negotiated phase-1 parameters, spelled as IOS's detail view does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IsakmpDetails {
    /// `des`, `3des` or `aes` (IOS prints no key size here).
    pub encryption: String,
    /// Key size in bits, for scripts (`aes` is 128, 192 or 256).
    #[serde(default)]
    pub key_bits: u16,
    /// `md5`, `sha`, `sha256`, `sha384`, `sha512`.
    pub hash: String,
    /// `psk`, `rsig` …
    pub auth: String,
    pub dh_group: u16,
    /// Seconds left before the SA expires.
    pub lifetime_remaining_secs: u64,
    /// DPD negotiated (cap `D`).
    #[serde(default)]
    pub dpd: bool,
    /// NAT-T in use (cap `N`).
    #[serde(default)]
    pub nat_t: bool,
    /// Aggressive Mode was used (IOS shows it only in debugs; kept for JSON).
    #[serde(default)]
    pub aggressive: bool,
}

// ---------------------------------------------------------------- IPsec

/// `show crypto ipsec sa`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IpsecSaReport {
    /// Data-plane counters of each tunnel interface.
    pub interfaces: Vec<IpsecInterface>,
    pub peers: Vec<IpsecPeerSa>,
}

/// Data-plane counters of one tunnel interface, not tied to one SA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IpsecInterface {
    pub interface: String,
    /// `Crypto map tag:` — IOS names tunnel protection `Tunnel0-head-0`.
    pub crypto_map_tag: String,
    pub local_addr: IpAddr,
    /// Packets dropped on the way out, by reason (no SA yet, no NHRP
    /// mapping, queue full, …).
    pub send_errors: Vec<Counter>,
    /// Packets dropped on the way in, by reason (unknown SPI, plain GRE
    /// from a protected peer, malformed, …).
    pub recv_errors: Vec<Counter>,
    /// Every other data-plane counter (packets and bytes through).
    pub counters: Vec<Counter>,
}

/// `show crypto ipsec sa`, one block per (interface, peer, proxies).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IpsecPeerSa {
    pub interface: String,
    /// `Crypto map tag:` — IOS names tunnel protection `Tunnel0-head-0`.
    pub crypto_map_tag: String,
    pub local_addr: IpAddr,
    pub local_ident: ProxyIdent,
    pub remote_ident: ProxyIdent,
    pub current_peer: IpAddr,
    /// IKE port of the peer (500, or 4500 after NAT-T).
    pub peer_port: u16,
    pub counters: IpsecCounters,
    /// Path MTU toward the peer.
    pub path_mtu: u32,
    /// PFS group of the SAs, `None` without PFS.
    #[serde(default)]
    pub pfs_dh_group: Option<u16>,
    pub inbound: Vec<EspSa>,
    pub outbound: Vec<EspSa>,
}

/// `(addr/mask/prot/port)`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyIdent {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub protocol: u8,
    pub port: u16,
}

/// The `#pkts …` counters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(default)]
pub struct IpsecCounters {
    pub encaps: u64,
    pub encrypt: u64,
    pub digest: u64,
    pub decaps: u64,
    pub decrypt: u64,
    pub verify: u64,
    pub compressed: u64,
    pub decompressed: u64,
    pub not_compressed: u64,
    pub compr_failed: u64,
    pub not_decompressed: u64,
    pub decompress_failed: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Dropped by the anti-replay window.
    pub replay_failed: u64,
    /// Dropped on ICV (authentication) mismatch.
    pub verify_failed: u64,
    /// ESP payload bytes received (accepted) from the peer.
    pub bytes_in: u64,
    /// ESP payload bytes protected and sent to the peer.
    pub bytes_out: u64,
}

/// One ESP SA under `inbound esp sas:` / `outbound esp sas:`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EspSa {
    pub spi: u32,
    /// IOS spelling, e.g. `esp-3des esp-md5-hmac`.
    pub transform: String,
    pub mode: EspMode,
    pub conn_id: u32,
    /// `sa timing: remaining key lifetime (k/sec): (KB/SECS)`.
    pub remaining_kb: u64,
    pub remaining_secs: u64,
    pub iv_size: u8,
    pub replay_detection: bool,
    pub status: SaStatus,
}

// ---------------------------------------------------------------- crypto session

/// `show crypto session`: one peer's IKE and IPsec state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CryptoSession {
    pub interface: String,
    pub peer: IpAddr,
    /// The peer's IKE port (500, or 4500 after NAT-T).
    pub peer_port: u16,
    /// Seconds since the first IPsec SA with the peer came up.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    pub status: SessionStatus,
    /// The peer's phase 1 identity, once authenticated.
    #[serde(default)]
    pub phase1_id: Option<String>,
    pub ike_sas: Vec<SessionIkeSa>,
    pub flows: Vec<SessionFlow>,
}

/// `Session status:` of `show crypto session`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// IKE and IPsec SAs up.
    UpActive,
    /// IKE SA up, no IPsec SA.
    UpIdle,
    /// IPsec SAs without an IKE SA (manual keys, or IKE deleted).
    UpNoIke,
    /// IKE negotiating.
    DownNegotiating,
    Down,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::UpActive => "UP-ACTIVE",
            SessionStatus::UpIdle => "UP-IDLE",
            SessionStatus::UpNoIke => "UP-NO-IKE",
            SessionStatus::DownNegotiating => "DOWN-NEGOTIATING",
            SessionStatus::Down => "DOWN",
        }
    }
}

/// An IKE SA of a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SessionIkeSa {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// Phase 1 complete and not being replaced.
    pub active: bool,
    /// `D` (DPD), `N` (NAT-T), … as in `show crypto isakmp sa detail`.
    pub capabilities: String,
    pub conn_id: u32,
    /// Seconds before the SA expires (0 before phase 1 completes).
    pub lifetime_secs: u64,
}

/// An `IPSEC FLOW`: the proxies and the SAs protecting them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SessionFlow {
    pub local: ProxyIdent,
    pub remote: ProxyIdent,
    /// Inbound and outbound SAs installed.
    pub active_sas: u32,
    pub decrypted: u64,
    /// Inbound packets dropped (ICV, replay, length).
    pub decrypt_drops: u64,
    pub encrypted: u64,
    /// Outbound packets that failed to be sent.
    pub encrypt_drops: u64,
    /// `life (KB/Sec)` left of the current inbound and outbound SAs.
    pub inbound_life_kb: u64,
    pub inbound_life_secs: u64,
    pub outbound_life_kb: u64,
    pub outbound_life_secs: u64,
    #[serde(default)]
    pub outbound_spi: Option<u32>,
    /// IOS transform words, e.g. `esp-3des esp-md5-hmac`.
    pub transform: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EspMode {
    Transport,
    Tunnel,
}

impl EspMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EspMode::Transport => "Transport",
            EspMode::Tunnel => "Tunnel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form() {
        let r = Request::ClearCryptoSa {
            peer: Some("172.16.0.2".parse().unwrap()),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"cmd":"clear_crypto_sa","peer":"172.16.0.2"}"#);
        assert_eq!(
            serde_json::to_string(&Request::ShowNhrp).unwrap(),
            r#"{"cmd":"show_nhrp"}"#
        );
        // `peer` may be left out.
        let r: Request = serde_json::from_str(r#"{"cmd":"clear_crypto_sa"}"#).unwrap();
        assert_eq!(r, Request::ClearCryptoSa { peer: None });
        let one = Request::ClearNhrpEntry {
            address: "192.168.1.2".parse().unwrap(),
            prefix_len: None,
        };
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            r#"{"cmd":"clear_nhrp_entry","address":"192.168.1.2"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::ClearCryptoSession {
                remote: Some("172.16.0.2".parse().unwrap())
            })
            .unwrap(),
            r#"{"cmd":"clear_crypto_session","remote":"172.16.0.2"}"#
        );
        let d = Request::Debug {
            target: DebugTarget::CryptoIsakmp,
            on: true,
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"cmd":"debug","target":"crypto_isakmp","on":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"cmd":"reload"}"#
        );
    }

    #[test]
    fn response_wire_form() {
        let r = Response::error("nope");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"error":{"message":"nope"}}"#
        );
        let r = Response::Ok(Reply::Cleared { count: 3 });
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"ok":{"cleared":{"count":3}}}"#
        );
    }

    #[test]
    fn filter_directive() {
        assert_eq!(
            debug_filter("info", &[DebugTarget::Nhrp, DebugTarget::CryptoIpsec]),
            "info,dmvpn::nhrp=debug,dmvpn::gre=debug,dmvpn::esp=debug"
        );
        assert_eq!(
            debug_filter("", &[DebugTarget::CryptoIsakmp]),
            "dmvpn::ike=debug"
        );
    }

    #[test]
    fn debug_switches() {
        let mut d = DebugSwitches::new("info");
        assert_eq!(d.filter(), "info");
        assert_eq!(
            d.set(DebugTarget::CryptoIpsec, true),
            Reply::Debug {
                target: DebugTarget::CryptoIpsec,
                on: true
            }
        );
        d.set(DebugTarget::Nhrp, true);
        assert_eq!(
            d.filter(),
            "info,dmvpn::nhrp=debug,dmvpn::gre=debug,dmvpn::esp=debug"
        );
        d.set(DebugTarget::Nhrp, false);
        d.set(DebugTarget::CryptoIsakmp, false);
        assert!(!d.is_on(DebugTarget::Nhrp));
        assert!(d.is_on(DebugTarget::CryptoIpsec));
        assert_eq!(d.filter(), "info,dmvpn::esp=debug");
        d.set_base("warn");
        assert_eq!(d.filter(), "warn,dmvpn::esp=debug", "switches kept");
    }

    #[test]
    fn nhs_letters() {
        let s = NhsState {
            responding: true,
            expecting: true,
            ..Default::default()
        };
        assert_eq!(s.letters(), "RE");
        assert!(s.is_up());
    }
}
