//! Timing for the `#[ignore]`d cost tests of each provider (`cargo test --release --lib --
//! --ignored --nocapture verify_cost`). The machine is shared, so besides wall time this reads
//! the thread's own CPU time from `/proc/thread-self/schedstat` (nanoseconds on a CPU), which
//! other processes do not inflate as much.

use std::time::Instant;

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` `n` times; prints and returns (wall ns/op, CPU ns/op).
pub fn measure(label: &str, n: u32, mut f: impl FnMut()) -> (u128, Option<u128>) {
    for _ in 0..n.min(1000) {
        f();
    }
    let cpu0 = thread_cpu_ns();
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let wall = t.elapsed().as_nanos() / u128::from(n);
    let cpu = cpu0
        .zip(thread_cpu_ns())
        .map(|(a, b)| u128::from(b.saturating_sub(a)) / u128::from(n));
    match cpu {
        Some(c) => println!("{label}: {c} ns/op CPU ({wall} ns/op wall)"),
        None => println!("{label}: {wall} ns/op wall"),
    }
    (wall, cpu)
}
