//! Bench-only code for `scripts/bench`: the load generator's parts (signed samples built before
//! the clock starts, the raw HTTP/1.1 wire, the replay loop, the metrics watcher), the
//! readings of another process's CPU time and memory from `/proc`, and the report's table.
//!
//! Nothing here runs in the daemon. Panics are acceptable on operator error in these tools, but
//! they report errors instead where it costs nothing.

pub mod load;
pub mod metrics;
pub mod procfs;
pub mod report;
pub mod requests;
pub mod samples;
pub mod watch;
pub mod wire;

/// Milliseconds since the Unix epoch, to line up events seen by different processes.
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The wall-clock time (Unix ms) at which a past monotonic instant happened.
pub fn instant_to_unix_ms(t: std::time::Instant) -> f64 {
    unix_ms() - t.elapsed().as_secs_f64() * 1000.0
}

/// Parses "10", "10s", "500ms", "2m", "1h", "7d" into a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
