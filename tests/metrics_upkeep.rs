//! Metrics memory stays bounded when nobody scrapes `/metrics` (SPEC §6.8): the daemon's recorder
//! drains histogram samples into fixed buckets on a timer of its own.
//!
//! A test binary of its own, because it counts every byte the process holds through a global
//! allocator; nothing else runs in it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: isize = 1 << 20;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Records a sample every few milliseconds (as light traffic would) until the bytes held fall
/// under `target`, or `within` passes; returns what is held then.
fn trickle_until_below(h: &metrics::Histogram, target: isize, within: Duration) -> isize {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        h.record(0.001);
        if live() < target {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    live()
}

#[test]
fn histogram_samples_are_drained_without_any_scrape() {
    // The daemon's own recorder, with its upkeep thread; /metrics is never rendered here.
    let _handle = payhook::daemon::metrics_handle();
    let h = metrics::histogram!("payhook_request_duration_seconds", "source" => "upkeep-test");
    h.record(0.001);
    let period = payhook::http::metrics::UPKEEP_PERIOD;
    // Prime: hold some samples and wait for the upkeep thread to drain them, so each round below
    // starts right after an upkeep run and its million samples are all held until the next one.
    let empty = live();
    for _ in 0..200_000 {
        h.record(0.5);
    }
    let baseline = trickle_until_below(&h, empty + MIB / 2, period * 2 + Duration::from_secs(1));
    assert!(
        baseline < empty + MIB / 2,
        "the upkeep thread never drained 200,000 samples ({} bytes held)",
        baseline - empty
    );

    let mut after_drain = Vec::new();
    for round in 0..2 {
        let before = live();
        for i in 0..1_000_000u32 {
            h.record(f64::from(i % 1000) / 1000.0);
        }
        let held = live() - before;
        // The samples are kept until upkeep drains them: proof that the count below measures.
        assert!(
            held > 4 * MIB,
            "round {round}: a million samples hold only {held} bytes"
        );
        let now = trickle_until_below(&h, baseline + 2 * MIB, period * 2 + Duration::from_secs(1));
        after_drain.push((held, now - baseline));
        assert!(
            now - baseline < 2 * MIB,
            "round {round}: {} bytes still held {:?} after a million samples (held {held})",
            now - baseline,
            period * 2
        );
    }
    println!(
        "(bytes held by a million samples, bytes over the baseline once drained): {:?}",
        after_drain
    );
}
