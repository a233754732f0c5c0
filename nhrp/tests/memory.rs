//! Memory held per registration on an NHS, measured with a counting
//! global allocator: live heap bytes after N registrations minus before,
//! divided by N. Prints the figure and bounds it.
//!
//! `cargo test -p dmvpn-nhrp --release --test memory -- --nocapture`

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use dmvpn_nhrp::engine::Password;
use dmvpn_nhrp::ext::ExtBody;
use dmvpn_nhrp::wire::flags;
use dmvpn_nhrp::{Body, Cie, Config, Engine, Extension, Instant, Packet, PacketType};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn v4(a: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// A Cisco-shaped registration request from spoke `i`.
fn registration(i: u32) -> Vec<u8> {
    let mut p = Packet::new(
        PacketType::RegistrationRequest,
        v4(0xac10_0000 + i),
        v4(0x0a00_0000 + i),
        v4(0x0a00_0001),
        Body::Cies {
            request_id: i,
            cies: vec![Cie {
                prefix_len: 32,
                mtu: 1514,
                holding_time: 7200,
                ..Cie::default()
            }],
        },
    );
    p.flags = flags::REG_U | flags::CISCO_NAT;
    p.extensions = vec![
        Extension::new(ExtBody::ResponderAddress(None)),
        Extension::new(ExtBody::ForwardTransit(vec![])),
        Extension::new(ExtBody::ReverseTransit(vec![])),
        Extension::new(ExtBody::Authentication {
            auth_type: 1,
            data: b"cisco123".to_vec(),
        }),
        Extension::new(ExtBody::End),
    ];
    p.emit()
}

/// Live heap bytes per registration after `n` spokes registered.
fn bytes_per_entry(n: u32) -> f64 {
    let mut cfg = Config::new(v4(0xac10_ffff), v4(0x0a00_0001));
    // 10.0.0.0/8 holds every spoke; the bounds sized for 10,000 spokes
    // are raised to measure 100,000.
    cfg.tunnel_prefix_len = 8;
    cfg.max_cache_entries = 1_000_000;
    cfg.server = true;
    cfg.multicast_dynamic = true;
    cfg.authentication = Some(Password::new("cisco123"));
    let mut hub = Engine::new(cfg, Instant::ZERO);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 2..n + 2 {
        // The packet is built and freed inside the loop, so only what the
        // hub keeps stays live.
        hub.handle(Instant::ZERO, v4(0xac10_0000 + i), &registration(i));
        while hub.poll_transmit().is_some() {}
        while hub.poll_event().is_some() {}
    }
    let after = LIVE.load(Ordering::Relaxed);
    let registered = hub.multicast_nbmas().len();
    assert_eq!(registered, n as usize, "every spoke registered");
    let per = (after - before) as f64 / f64::from(n);
    drop(hub);
    per
}

#[test]
fn cache_bytes_per_registration() {
    for n in [10_000, 100_000] {
        let per = bytes_per_entry(n);
        println!("NHS memory: {n} registrations, {per:.0} bytes per cache entry");
        // A dynamic entry is ~100 bytes plus two time-index slots and hash
        // table slack; anything near a kilobyte means something leaks per
        // registration (a retained packet, an unbounded queue).
        assert!(per > 50.0 && per < 600.0, "{per} bytes per entry");
    }
}
