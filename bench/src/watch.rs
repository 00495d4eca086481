//! Watching the daemon's `/metrics` until a condition holds, e.g. until `payhook_published_total`
//! reaches N (end to end) or `payhook_backlog_events` falls to 0 (a drain), and timing it.
//!
//! The active period starts at the last poll before the counted metric first moved (so the rate
//! is, if anything, understated by one poll interval) and ends at the first poll where the
//! condition holds. With a pid, the daemon's CPU time over that same period is read from
//! `/proc/PID/stat` at each poll.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::metrics::{Condition, sum};
use crate::{instant_to_unix_ms, procfs, wire};

pub struct Watch {
    pub addr: String,
    pub until: Condition,
    /// The metric whose first change starts the active period, and whose delta is the work done.
    pub count_metric: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub pid: Option<u32>,
}

#[derive(Clone, Copy)]
struct Poll {
    at: Instant,
    count: f64,
    cpu: Option<Duration>,
}

async fn poll(w: &Watch) -> Option<(String, Poll)> {
    let at = Instant::now();
    let (status, text) = wire::get(&w.addr, "/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    let count = sum(&text, &w.count_metric).unwrap_or(0.0);
    let cpu = w.pid.and_then(procfs::cpu_time);
    Some((text, Poll { at, count, cpu }))
}

pub async fn run(w: &Watch) -> Value {
    let started = Instant::now();
    let mut baseline: Option<Poll> = None;
    let mut prev: Option<Poll> = None;
    let mut active_from: Option<Poll> = None;
    let mut polls = 0u64;
    let mut failed_polls = 0u64;
    let done = loop {
        if started.elapsed() > w.timeout {
            break None;
        }
        match poll(w).await {
            Some((text, p)) => {
                polls += 1;
                if baseline.is_none() {
                    baseline = Some(p);
                    prev = Some(p);
                }
                if active_from.is_none()
                    && let Some(b) = baseline.as_ref()
                    && p.count != b.count
                {
                    active_from = prev.take();
                }
                if w.until.holds(&text) {
                    break Some(p);
                }
                prev = Some(p);
            }
            None => failed_polls += 1,
        }
        tokio::time::sleep(w.interval).await;
    };
    let mem = w.pid.and_then(procfs::memory).unwrap_or_default();
    let mut out = json!({
        "until": format!("{}{}{}", w.until.name, if w.until.at_least { ">=" } else { "<=" }, w.until.value),
        "timed_out": done.is_none(),
        "polls": polls,
        "failed_polls": failed_polls,
        "start_unix_ms": instant_to_unix_ms(started),
        "rss_kib": mem.rss_kib,
        "hwm_kib": mem.hwm_kib,
    });
    let (Some(done), Some(base)) = (done, baseline) else {
        return out;
    };
    // The condition held at once, or the counted metric never moved: no active period.
    let from = active_from.unwrap_or(done);
    let delta = done.count - from.count;
    let secs = done.at.saturating_duration_since(from.at).as_secs_f64();
    out["baseline"] = json!(base.count);
    out["final"] = json!(done.count);
    out["delta"] = json!(delta);
    out["active_from_unix_ms"] = json!(instant_to_unix_ms(from.at));
    out["done_unix_ms"] = json!(instant_to_unix_ms(done.at));
    out["active_s"] = json!(secs);
    out["rate"] = json!(if secs > 0.0 { delta / secs } else { 0.0 });
    if let (Some(a), Some(b)) = (from.cpu, done.cpu) {
        let cpu = b.saturating_sub(a).as_secs_f64();
        out["cpu_s"] = json!(cpu);
        out["cpu_us_per_event"] = json!(if delta > 0.0 { cpu * 1e6 / delta } else { 0.0 });
    }
    out
}
