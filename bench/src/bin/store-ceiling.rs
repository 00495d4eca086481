//! The store's ceiling: payhook's own durable store (`payhook::store::Store`: its writer thread,
//! schema, checkpointer and `synchronous = "full"`, every event fsynced before it is answered),
//! fed by C tasks on a two-worker runtime like the daemon's, each inserting one new event after
//! another: no HTTP, no verification, nothing else. Intake cannot go faster than this on the
//! same machine and disk, nor cost less CPU per event than this plus the HTTP ceiling's.
//!
//! The events are built before the clock starts: a Pinddpay-sized body of B bytes kept inside
//! the CloudEvent, as payhook stores a Pinddpay webhook (a message of about 1.5 KB for the
//! bench's 820-byte bodies), each with its own dedup key.
//!
//! `store-ceiling --dir D [--seconds S] [--concurrency C] [--body-bytes B] [--max-events N]`
//! prints one line of JSON: the rate, the process's CPU time per event (user + system, every
//! thread) and the mean events per commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use payhook::config::Synchronous;
use payhook::event::{Category, Event, Money, Normalized, Outcome, Payload};
use payhook::store::{Inserted, Store, StoreSettings};

struct Args {
    dir: PathBuf,
    seconds: f64,
    concurrency: usize,
    body_bytes: usize,
    max_events: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::new(),
        seconds: 5.0,
        concurrency: 64,
        body_bytes: 820,
        max_events: 400_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let n = || {
            v.parse::<f64>()
                .map_err(|_| format!("{k}: not a number: {v}"))
        };
        match k.as_str() {
            "--dir" => a.dir = PathBuf::from(&v),
            "--seconds" => a.seconds = n()?,
            "--concurrency" => a.concurrency = n()? as usize,
            "--body-bytes" => a.body_bytes = n()? as usize,
            "--max-events" => a.max_events = n()? as usize,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.dir.as_os_str().is_empty() {
        return Err("--dir is required (a directory on the disk payhook's store uses)".into());
    }
    Ok(a)
}

fn event(i: usize, body: &bytes::Bytes, now: time::OffsetDateTime) -> Event {
    let key = format!("store-ceiling-{i:09}");
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let n = Normalized {
        event_type: "order.paid".into(),
        provider_event_id: Some(key.clone()),
        dedup_key: key,
        category: Category::Payment,
        outcome: Outcome::Succeeded,
        order_no: Some(format!("ord_{i:012}")),
        transaction_id: None,
        money: Money::default(),
        livemode: None,
        occurred_at: Some(now),
        signed_time: None,
        content_hash: hash,
        payload: Payload::Body,
    };
    Event::build(
        "pinddpay",
        "pinddpay",
        n,
        now,
        Some("application/json".into()),
        body.clone(),
    )
}

const USAGE: &str = "usage: store-ceiling --dir D [--seconds S] [--concurrency C] [--body-bytes B] [--max-events N]";

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("store-ceiling: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    // A multi-thread runtime with a worker per core, as the daemon's.
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("runtime: {e}"))
        .and_then(|rt| rt.block_on(run(a)));
    match result {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("store-ceiling: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(a: Args) -> Result<serde_json::Value, String> {
    let body = bytes::Bytes::from(format!(
        "{{\"description\":\"{}\"}}",
        payhook_bench::samples::filler(a.body_bytes.saturating_sub(18))
    ));
    let now = time::OffsetDateTime::now_utc();
    let events: Vec<Event> = (0..a.max_events).map(|i| event(i, &body, now)).collect();
    let message_bytes = events.first().map_or(0, |e| e.message.len());
    let queue = Arc::new(std::sync::Mutex::new(events));

    let path = a.dir.join("store-ceiling.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    // The store records its commits through the `metrics` facade, as in the daemon.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))?;
    let (store, workers) = Store::open(&path, StoreSettings::new(Synchronous::Full))
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let store = Arc::new(store);
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let cpu0 = payhook_bench::procfs::self_cpu_time();
    let start = Instant::now();
    let tasks: Vec<_> = (0..a.concurrency.max(1))
        .map(|_| {
            let (store, queue, done) = (store.clone(), queue.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let next = queue.lock().map_or(None, |mut q| q.pop());
                    let Some(e) = next else { break };
                    match store.insert(e).await {
                        Ok(Inserted::New) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(other) => return Err(format!("an event came back {other:?}")),
                        Err(e) => return Err(format!("insert failed: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| format!("task: {e}"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = payhook_bench::procfs::self_cpu_time()
        .saturating_sub(cpu0)
        .as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let per_commit = events_per_commit(&metrics.render());
    drop(store);
    let _ = tokio::task::spawn_blocking(move || workers.writer.join()).await;
    let cpu_us = cpu * 1e6 / n.max(1) as f64;
    eprintln!(
        "store-ceiling: {n} events in {secs:.2}s with {} tasks = {:.0}/s; {cpu_us:.1} us CPU per event; \
         {:.1} events per commit; messages of {message_bytes} B",
        a.concurrency,
        n as f64 / secs,
        per_commit.unwrap_or(0.0)
    );
    Ok(serde_json::json!({
        "concurrency": a.concurrency,
        "secs": secs,
        "events": n,
        "rate": n as f64 / secs,
        "cpu_us_per_event": cpu_us,
        "message_bytes": message_bytes,
        "events_per_commit": per_commit,
    }))
}

/// Mean events per commit, from the store's `payhook_store_batch_events` (sum / count).
fn events_per_commit(rendered: &str) -> Option<f64> {
    use payhook_bench::metrics::sum;
    let count = sum(rendered, "payhook_store_batch_events_count")?;
    (count > 0.0).then(|| sum(rendered, "payhook_store_batch_events_sum").unwrap_or(0.0) / count)
}
