//! The hubs' own heap in `dmvpn-lab sim`. Thousands of spokes share the
//! process with the hubs, so the process's RSS cannot say what a hub
//! holds per spoke. With `DMVPN_LAB_HEAP=1` in the environment,
//! `dmvpn-lab` tags every allocation with who made it (a hub, or anything
//! else) and counts the bytes each side holds, wherever a block is later
//! freed. Without it the allocator passes straight to the system's, at no
//! cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

/// The allocator `dmvpn-lab` installs.
pub struct Tagging;

const UNDECIDED: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
/// 1 while a hub runs, 0 otherwise (the simulation is single-threaded).
static OWNER: AtomicU8 = AtomicU8::new(0);
static LIVE: [AtomicI64; 2] = [AtomicI64::new(0), AtomicI64::new(0)];

/// Whether allocations are tagged. Decided at the very first allocation,
/// before any block exists, so every block is freed as it was made.
fn on() -> bool {
    match MODE.load(Ordering::Relaxed) {
        OFF => false,
        ON => true,
        _ => {
            // getenv does not allocate (std::env would, re-entering here).
            // SAFETY: a NUL-terminated name; the result is only compared.
            let set = unsafe { !libc::getenv(c"DMVPN_LAB_HEAP".as_ptr()).is_null() };
            MODE.store(if set { ON } else { OFF }, Ordering::Relaxed);
            set
        }
    }
}

/// The header in front of a tagged block: the owner byte, padded to the
/// block's alignment.
fn header(layout: &Layout) -> usize {
    layout.align().max(16)
}

fn tagged(layout: &Layout) -> Option<Layout> {
    Layout::from_size_align(layout.size().checked_add(header(layout))?, layout.align()).ok()
}

// SAFETY: every block handed out is a System block (offset by a header
// when tagging, which is decided once, before the first block).
unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !on() {
            // SAFETY: the caller's layout, as is.
            return unsafe { System.alloc(layout) };
        }
        let Some(full) = tagged(&layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `full` has a non-zero size.
        let base = unsafe { System.alloc(full) };
        if base.is_null() {
            return base;
        }
        let owner = OWNER.load(Ordering::Relaxed);
        LIVE[usize::from(owner)].fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the header is inside the block, which is at least one
        // header long, and the returned pointer keeps the alignment.
        unsafe {
            base.write(owner);
            base.add(header(&layout))
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !on() {
            // SAFETY: allocated by `alloc` above with this layout, untagged.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: tagged blocks start one header before `ptr`.
        unsafe {
            let base = ptr.sub(header(&layout));
            let owner = base.read();
            LIVE[usize::from(owner & 1)].fetch_sub(layout.size() as i64, Ordering::Relaxed);
            let full = tagged(&layout).expect("allocated with this layout");
            System.dealloc(base, full);
        }
    }
}

/// Whether this run counts the hubs' heap (`DMVPN_LAB_HEAP` set).
pub fn counting() -> bool {
    on()
}

/// Bytes the hubs allocated and still hold.
pub fn hub_live_bytes() -> u64 {
    LIVE[1].load(Ordering::Relaxed).max(0) as u64
}

/// Allocations made while this guard lives belong to a hub if `hub`.
pub struct Owner(());

impl Owner {
    pub fn enter(hub: bool) -> Owner {
        OWNER.store(u8::from(hub), Ordering::Relaxed);
        Owner(())
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        OWNER.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_every_alignment() {
        for align in [1, 8, 16, 32, 64, 4096] {
            let l = Layout::from_size_align(24, align).unwrap();
            let h = header(&l);
            assert!(
                h >= 16 && h.is_multiple_of(align),
                "align {align}: header {h}"
            );
            assert_eq!(tagged(&l).unwrap().size(), 24 + h);
        }
    }
}
