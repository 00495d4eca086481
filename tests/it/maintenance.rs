//! Maintenance never stalls intake (SPEC §6.10): retention over a store of millions of rows and
//! `payhook purge` run while webhooks keep coming, and no webhook waits more than 100 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const SECRET: &str = "maintenance-secret";
const OLD_ROWS: i64 = 2_000_000;
const RECENT_ROWS: i64 = 300_000;

/// Builds the store before the daemon starts: `OLD_ROWS` published events received in 1970
/// (the daemon's 30-day retention purges them) and `RECENT_ROWS` published two hours ago (only
/// `payhook purge --older-than 1h` removes them). One SQL statement each.
fn build_large_store(path: &std::path::Path) {
    let mut conn =
        payhook::store::schema::open(path, payhook::config::Synchronous::Normal).unwrap();
    payhook::store::schema::migrate(&mut conn).unwrap();
    let now = payhook::clock::now_ms();
    let started = Instant::now();
    // Fast: no journal, no syncs, and the secondary indexes built once at the end (their SQL is
    // read from the schema itself, so this stays right when the schema changes).
    conn.pragma_update(None, "journal_mode", "OFF").unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let indexes: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}")).unwrap();
    }
    for (n, received) in [
        (OLD_ROWS, "1000 + x".to_string()),
        (RECENT_ROWS, format!("{} + x", now - 7_200_000)),
    ] {
        conn.execute_batch(&format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
             INSERT INTO events (id, source, provider, dedup_key, event_type, routing_key,
                                 time_unix, received_at_ms, published_at_ms, body, message)
             SELECT randomblob(16), 'pd', 'pinddpay', 'bulk-' || x || '-' || ({received}),
                    'order.paid', 'pd.order.paid', 0, {received}, {received} + 5,
                    x'7b7d', randomblob(150)
             FROM c"
        ))
        .unwrap();
    }
    for (_, sql) in &indexes {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    println!(
        "built a store of {} rows in {:?}",
        OLD_ROWS + RECENT_ROWS,
        started.elapsed()
    );
}

fn count(path: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Posts signed webhooks from `senders` tasks until `stop`; returns every latency.
fn load(
    url: String,
    senders: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Duration, u16)>>> {
    (0..senders)
        .map(|s| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = client();
                let mut out = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body =
                        json!({"eventId": format!("load-{s}-{i}"), "eventName": "order.paid",
                                      "eventAt": time::OffsetDateTime::now_utc().unix_timestamp(),
                                      "order": {"amount": "1.00", "currency": "USD"}})
                        .to_string();
                    let token = {
                        use md5::{Digest, Md5};
                        let mut h = Md5::new();
                        h.update(body.as_bytes());
                        h.update(SECRET.as_bytes());
                        hex::encode_upper(h.finalize())
                    };
                    let t = Instant::now();
                    let r = send(
                        &http,
                        "POST",
                        &url,
                        &[("content-type", "application/json"), ("sign-token", &token)],
                        body,
                    )
                    .await;
                    out.push((t.elapsed(), r.status));
                    // A steady load, not a flood: what a busy merchant sees.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                out
            })
        })
        .collect()
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<Vec<(Duration, u16)>>>) -> (usize, Duration) {
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    for t in tasks {
        for (d, status) in t.await.unwrap() {
            assert_eq!(status, 200, "intake answers while maintenance runs");
            n += 1;
            slowest = slowest.max(d);
        }
    }
    (n, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_purge_over_millions_of_rows_never_hold_a_webhook() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources =
        format!("\n[[source]]\nname = \"pd\"\nprovider = \"pinddpay\"\nsecret = \"{SECRET}\"\n");
    opts.prepare_store = Some(Box::new(build_large_store));
    let daemon = Daemon::start(opts);
    let db = daemon.dir.path().join("payhook.db");
    let url = daemon.url("pd");

    // Retention starts with the daemon; load runs until the old rows are gone.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(url.clone(), 4, stop.clone());
    let started = Instant::now();
    let old = "SELECT COUNT(*) FROM events WHERE published_at_ms IS NOT NULL AND received_at_ms < 10000000";
    while count(&db, old) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "retention did not finish; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let purge_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (n1, slowest) = finish(tasks).await;
    let n = n1;
    println!(
        "retention of {OLD_ROWS} rows: {purge_time:?}; {n} webhooks meanwhile, slowest {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a webhook waited {slowest:?} while retention ran"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM events WHERE received_at_ms > 10000000 AND dedup_key LIKE 'bulk-%'"
        ),
        RECENT_ROWS,
        "retention deletes only what is older than the retention"
    );

    // `payhook purge` from the CLI, beside the running daemon.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(url, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let out = daemon.run_cli(&["purge", "--older-than", "1h"]);
    let purge_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (n, slowest) = finish(tasks).await;
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("purged {RECENT_ROWS}")), "{said}");
    println!(
        "payhook purge of {RECENT_ROWS} rows: {purge_time:?}; {n} webhooks meanwhile, slowest {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a webhook waited {slowest:?} while `payhook purge` ran"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM events WHERE dedup_key LIKE 'bulk-%'"
        ),
        0
    );
    // Every webhook of the load is still there: maintenance removed only what it should.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM events WHERE dedup_key LIKE 'load-%'"
        ),
        i64::try_from(n1 + n).unwrap()
    );
}
