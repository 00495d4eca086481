//! The replay loop: C keep-alive connections, each a task that claims the next request index,
//! writes its pre-serialized bytes and reads the status line back.
//!
//! Closed loop: a connection sends its next request as soon as the last one is answered.
//! Open loop (`rate`): request `i` is due at `start + i / rate`; its latency is measured from
//! that due time, not from when a connection got free to send it, so a stall in the daemon
//! shows in the percentiles instead of silently slowing the generator down (no coordinated
//! omission). The timer wheel fires up to 1 ms late, so a task sleeps until 1 ms before the due
//! time and measures from whichever is earlier, the due time or the actual send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::requests::Requests;
use crate::wire::Conn;

pub struct Plan {
    /// host:port
    pub addr: String,
    pub connections: usize,
    /// Requests to send at most.
    pub count: usize,
    /// Stop claiming new requests after this long (closed loop), or send for this long (open).
    pub duration: Option<Duration>,
    /// Requests per second (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// A request not answered within this is counted as a timeout and its connection dropped.
    pub timeout: Duration,
    /// Request index -> distinct request (for `--duplicates`); None: identity modulo distinct.
    pub order: Option<Vec<u32>>,
}

/// What one run saw.
pub struct Outcome {
    pub started: Instant,
    pub statuses: [u64; 600],
    pub errors: u64,
    pub timeouts: u64,
    pub retries: u64,
    /// Latency of answered requests, microseconds.
    pub latency: Histogram<u64>,
    pub first_ok: Option<Instant>,
    pub last_done: Option<Instant>,
}

impl Outcome {
    pub fn answered(&self) -> u64 {
        self.statuses.iter().sum()
    }
    pub fn ok(&self) -> u64 {
        self.statuses[200..300].iter().sum()
    }
    pub fn wall(&self) -> Duration {
        self.last_done
            .map(|t| t.saturating_duration_since(self.started))
            .unwrap_or_default()
    }
}

struct Shared {
    plan: Plan,
    requests: Arc<Requests>,
    next: AtomicUsize,
    /// Answered requests so far, for progress and memory samples.
    done: Arc<AtomicU64>,
    start: Instant,
}

struct Task {
    statuses: [u64; 600],
    errors: u64,
    timeouts: u64,
    retries: u64,
    latency: Histogram<u64>,
    first_ok: Option<Instant>,
    last_done: Option<Instant>,
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 1 hour at 3 significant digits: a fixed few hundred KiB, no growth while recording.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid bounds")
}

/// Opens every connection first (off the clock), then starts the clock and replays.
pub async fn run(
    plan: Plan,
    requests: Arc<Requests>,
    done: Arc<AtomicU64>,
) -> Result<Outcome, String> {
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections.max(1) {
        conns.push(
            Conn::connect(&plan.addr)
                .await
                .map_err(|e| format!("connect to {}: {e}", plan.addr))?,
        );
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        plan,
        requests,
        next: AtomicUsize::new(0),
        done,
        start,
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(worker(shared.clone(), c)))
        .collect();
    let mut out = Outcome {
        started: start,
        statuses: [0; 600],
        errors: 0,
        timeouts: 0,
        retries: 0,
        latency: histogram(),
        first_ok: None,
        last_done: None,
    };
    for t in tasks {
        let t = t
            .await
            .map_err(|e| format!("a connection task failed: {e}"))?;
        for (a, b) in out.statuses.iter_mut().zip(t.statuses.iter()) {
            *a += b;
        }
        out.errors += t.errors;
        out.timeouts += t.timeouts;
        out.retries += t.retries;
        out.latency
            .add(&t.latency)
            .map_err(|e| format!("merge histograms: {e}"))?;
        out.first_ok = min_opt(out.first_ok, t.first_ok);
        out.last_done = out.last_done.max(t.last_done);
    }
    Ok(out)
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

async fn worker(shared: Arc<Shared>, conn: Conn) -> Task {
    let plan = &shared.plan;
    let mut conn = Some(conn);
    // Requests sent on the current connection: a failure on a reused connection before any
    // answer may be the server closing an idle keep-alive connection; that one is retried once.
    let mut used = 0u64;
    let mut t = Task {
        statuses: [0; 600],
        errors: 0,
        timeouts: 0,
        retries: 0,
        latency: histogram(),
        first_ok: None,
        last_done: None,
    };
    let deadline = plan.duration.map(|d| shared.start + d);
    let interval = plan.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count {
            break;
        }
        let due = interval.map(|iv| shared.start + iv.mul_f64(i as f64));
        match (due, deadline) {
            (Some(due), Some(end)) if due >= end => break,
            (None, Some(end)) if Instant::now() >= end => break,
            _ => {}
        }
        if let Some(due) = due {
            tokio::time::sleep_until((due - Duration::from_millis(1)).into()).await;
        }
        let now = Instant::now();
        let from = due.map_or(now, |d| d.min(now));
        let idx = plan.order.as_ref().map_or(i, |o| o[i] as usize);
        let parts = shared.requests.get(idx);
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let r =
                tokio::time::timeout(plan.timeout, exchange(&mut conn, &plan.addr, parts)).await;
            match r {
                Ok(Err(e)) if attempt == 1 && used > 0 && is_stale(&e) => {
                    t.retries += 1;
                    conn = None;
                    used = 0;
                }
                other => break other,
            }
        };
        let end = Instant::now();
        match result {
            Ok(Ok(resp)) => {
                used += 1;
                let code = (resp.status as usize).min(599);
                t.statuses[code] += 1;
                t.latency
                    .saturating_record(end.duration_since(from).as_micros() as u64);
                if (200..300).contains(&code) && t.first_ok.is_none() {
                    t.first_ok = Some(end);
                }
                if resp.close {
                    conn = None;
                    used = 0;
                }
            }
            Ok(Err(_)) => {
                t.errors += 1;
                conn = None;
                used = 0;
                // A refused connection fails at once: do not spin through the whole count.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                t.timeouts += 1;
                conn = None;
                used = 0;
            }
        }
        t.last_done = Some(end);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    t
}

fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe)
}

async fn exchange(
    conn: &mut Option<Conn>,
    addr: &str,
    parts: [&[u8]; 3],
) -> std::io::Result<crate::wire::Response> {
    if conn.is_none() {
        *conn = Some(Conn::connect(addr).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Err(std::io::ErrorKind::NotConnected.into());
    };
    c.send(parts).await?;
    c.read_response(None).await
}
