//! The group-commit writer: one thread, one connection, one transaction per batch of whatever is
//! waiting. Each caller is answered only after the commit that holds its row.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::{Notify, mpsc};

use super::{Command, Inserted, StoreError, StoreState, now_ms};

/// Upper bound on one transaction, so a flood cannot make one commit arbitrarily long.
const MAX_BATCH: usize = 1024;

pub(super) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Command>,
    state: Arc<StoreState>,
    notify: Arc<Notify>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, state, notify))
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    state: Arc<StoreState>,
    notify: Arc<Notify>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "store writer cannot start its timer");
            return;
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        state.writer_heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        // Wake up now and then even when idle: the heartbeat feeds the watchdog, and a store
        // that failed gets probed so readiness comes back by itself when the disk does.
        let first = match recv_timeout(&rt, &mut rx, Duration::from_secs(1)) {
            Recv::Got(c) => c,
            Recv::Idle => {
                if !state.writable.load(Ordering::Relaxed) {
                    let ok = probe(&mut conn).is_ok();
                    state.writable.store(ok, Ordering::Relaxed);
                }
                // `replay` run from the CLI makes rows pending behind our back; recount while
                // idle so the backlog figure heals by itself.
                if let Ok(n) = super::queries::count_pending(&conn) {
                    state.backlog.store(n, Ordering::Relaxed);
                }
                continue;
            }
            Recv::Closed => break,
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, &state, &notify);
    }
    // A clean checkpoint keeps the WAL small for the next start; failure here loses nothing.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

enum Recv {
    Got(Command),
    Idle,
    Closed,
}

/// `blocking_recv` has no timeout, so the thread drives its receiver on a tiny runtime of its own.
fn recv_timeout(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<Command>,
    timeout: Duration,
) -> Recv {
    match rt.block_on(async { tokio::time::timeout(timeout, rx.recv()).await }) {
        Ok(Some(c)) => Recv::Got(c),
        Ok(None) => Recv::Closed,
        Err(_) => Recv::Idle,
    }
}

fn probe(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('probe', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![now_ms().to_string()],
    )?;
    tx.commit()
}

enum Done {
    Insert(Inserted),
    Marked(u64),
    Purged(u64),
}

/// Published events are deleted in chunks, so one purge never holds the write lock for long.
pub fn purge_published(conn: &Connection, cutoff_ms: i64, chunk: i64) -> rusqlite::Result<u64> {
    conn.execute(
        "DELETE FROM events WHERE seq IN (
             SELECT seq FROM events
             WHERE published_at_ms IS NOT NULL AND received_at_ms < ?1 LIMIT ?2)",
        params![cutoff_ms, chunk],
    )
    .map(|n| n as u64)
}

fn apply(conn: &mut Connection, batch: &[Command]) -> rusqlite::Result<Vec<Done>> {
    let tx = conn.transaction()?;
    let mut done = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, source, provider, dedup_key, event_type, routing_key, subject,
                                 time_unix, received_at_ms, content_type, body, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (source, dedup_key) DO NOTHING",
        )?;
        let mut mark = tx.prepare_cached(
            "UPDATE events SET published_at_ms = ?1 WHERE seq = ?2 AND published_at_ms IS NULL",
        )?;
        let now = now_ms();
        for cmd in batch {
            match cmd {
                Command::Insert(e, _) => {
                    let n = insert.execute(params![
                        e.id.to_string(),
                        e.source,
                        e.provider,
                        e.dedup_key,
                        e.event_type,
                        e.routing_key,
                        e.subject,
                        e.time_unix,
                        (e.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
                        e.content_type,
                        &e.body[..],
                        e.message,
                    ])?;
                    done.push(Done::Insert(if n == 1 {
                        Inserted::New
                    } else {
                        Inserted::Duplicate
                    }));
                }
                Command::MarkPublished(seqs, _) => {
                    let mut n = 0;
                    for seq in seqs {
                        n += mark.execute(params![now, seq])? as u64;
                    }
                    done.push(Done::Marked(n));
                }
                Command::Purge(cutoff, _) => {
                    done.push(Done::Purged(purge_published(&tx, *cutoff, 10_000)?));
                }
            }
        }
    }
    tx.commit()?;
    Ok(done)
}

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Command>,
    state: &StoreState,
    notify: &Notify,
) {
    let started = Instant::now();
    let result = apply(conn, batch);
    metrics::histogram!("payhook_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("payhook_store_batch_events").record(batch.len() as f64);
    match result {
        Ok(done) => {
            state.writable.store(true, Ordering::Relaxed);
            // Counters first, replies after: whoever sees a 200 must also see it in the backlog.
            let added = done
                .iter()
                .filter(|d| matches!(d, Done::Insert(Inserted::New)))
                .count() as u64;
            let removed: u64 = done
                .iter()
                .map(|d| if let Done::Marked(n) = d { *n } else { 0 })
                .sum();
            state.backlog.fetch_add(added, Ordering::Relaxed);
            let _ = state
                .backlog
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(removed))
                });
            if added > 0 {
                notify.notify_one();
            }
            for (cmd, d) in batch.drain(..).zip(done) {
                match (cmd, d) {
                    (Command::Insert(_, reply), Done::Insert(r)) => {
                        let _ = reply.send(Ok(r));
                    }
                    (Command::MarkPublished(_, reply), Done::Marked(n))
                    | (Command::Purge(_, reply), Done::Purged(n)) => {
                        let _ = reply.send(Ok(n));
                    }
                    _ => unreachable!("results are produced in command order"),
                }
            }
        }
        Err(e) => {
            // The transaction rolled back: no partial rows. Everyone in it gets a 503 and the
            // provider retries later.
            tracing::error!(error = %e, events = batch.len(), "store commit failed");
            state.writable.store(false, Ordering::Relaxed);
            let msg = e.to_string();
            for cmd in batch.drain(..) {
                match cmd {
                    Command::Insert(_, reply) => {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                    Command::MarkPublished(_, reply) | Command::Purge(_, reply) => {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
        }
    }
}
