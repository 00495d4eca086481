//! The group-commit writer: one thread, one connection, one transaction per batch of whatever is
//! waiting. Each caller is answered only after the commit that holds its row.
//!
//! The connection commits with `synchronous = NORMAL`; with `synchronous = "full"` in the config
//! the writer then syncs the WAL before it answers the group ([`super::durability`]).
//!
//! Besides intake it folds in the relay's records (confirms and failures: they ride along with
//! the next intake commit, or after [`RECORD_DELAY`] commit alone without waiting for an fsync),
//! runs retention chunks between commits, and notices when another process (the CLI) changed
//! the file, so the backlog is recounted and the relay rescans.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::durability::{Committed, Durability};
use super::feed::Feed;
use super::maintenance::Retention;
use super::queries::PendingEvent;
use super::records::{Failure, Records};
use super::{Insert, Inserted, StoreError, StoreSettings, StoreState};
use crate::clock::now_ms;

/// Upper bound on one transaction, so a flood cannot make one commit arbitrarily long.
const MAX_BATCH: usize = 1024;
/// How long the relay's records wait for an intake commit to ride along with.
const RECORD_DELAY: Duration = Duration::from_millis(5);
/// The writer wakes at least this often (heartbeat, probes, external changes).
const IDLE_WAKE: Duration = Duration::from_secs(1);

pub(super) struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Insert>,
    state: Arc<StoreState>,
    feed: Arc<Feed>,
    records: Arc<Records>,
    durability: Durability,
    retention: Option<Retention>,
    data_version: Option<i64>,
    last_version_check: Instant,
    stop: Arc<AtomicBool>,
}

pub(super) fn spawn(w: Writer) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || w.run())
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

enum Wake {
    Insert(Insert),
    Other,
    Closed,
}

/// What the writer shares with the rest of the store.
pub(super) struct Shared {
    pub state: Arc<StoreState>,
    pub feed: Arc<Feed>,
    pub records: Arc<Records>,
    /// Set when the writer ends, to stop the checkpointer.
    pub stop: Arc<AtomicBool>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        rx: mpsc::Receiver<Insert>,
        shared: Shared,
        settings: &StoreSettings,
        durability: Durability,
    ) -> Writer {
        let data_version = data_version(&conn).ok();
        Writer {
            conn,
            rx,
            state: shared.state,
            feed: shared.feed,
            records: shared.records,
            durability,
            retention: settings.retention.map(Retention::new),
            data_version,
            last_version_check: Instant::now(),
            stop: shared.stop,
        }
    }

    fn run(mut self) {
        // However this thread ends (a panic included), the checkpointer stops with it, so the
        // daemon can always exit.
        let _stop = StopOnDrop(self.stop.clone());
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "store writer cannot start its timer");
                self.stop.store(true, Ordering::Relaxed);
                return;
            }
        };
        let mut batch: Vec<Insert> = Vec::with_capacity(MAX_BATCH);
        loop {
            self.state.writer_beat.touch();
            match self.wait(&rt) {
                Wake::Insert(first) => batch.push(first),
                Wake::Other => {}
                Wake::Closed => break,
            }
            self.fill(&mut batch);
            let records_due = self
                .records
                .waiting_since()
                .is_some_and(|t| !batch.is_empty() || t.elapsed() >= RECORD_DELAY);
            let (published, failures) = if records_due {
                self.records.take()
            } else {
                (Vec::new(), Vec::new())
            };
            if !batch.is_empty() || !published.is_empty() || !failures.is_empty() {
                self.commit(&mut batch, published, failures);
            }
            self.housekeeping();
        }
        // Whatever the relay confirmed last goes in before we stop (best effort: a lost mark
        // only means one more publish after the restart).
        let (published, failures) = self.records.take();
        if !published.is_empty() || !failures.is_empty() {
            self.commit(&mut batch, published, failures);
        }
        // A clean checkpoint keeps the WAL small for the next start; failure here loses nothing.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    fn fill(&mut self, batch: &mut Vec<Insert>) {
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
    }

    /// Blocks until an insert arrives, the relay has records, housekeeping is due, or a second
    /// has passed. `blocking_recv` has no timeout, so the thread drives its receiver on a tiny
    /// runtime of its own.
    fn wait(&mut self, rt: &tokio::runtime::Runtime) -> Wake {
        let now = Instant::now();
        let mut until = now + IDLE_WAKE;
        if let Some(t) = self.records.waiting_since() {
            until = until.min(t + RECORD_DELAY);
        }
        if let Some(r) = &self.retention {
            until = until.min(r.next_step());
        }
        if until <= now {
            return match self.rx.try_recv() {
                Ok(c) => Wake::Insert(c),
                Err(mpsc::error::TryRecvError::Empty) => Wake::Other,
                Err(mpsc::error::TryRecvError::Disconnected) => Wake::Closed,
            };
        }
        let rx = &mut self.rx;
        let records = &self.records;
        rt.block_on(async {
            let deadline = tokio::time::Instant::from_std(until);
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => Wake::Insert(c),
                    None => Wake::Closed,
                },
                _ = records.notify.notified() => Wake::Other,
                _ = tokio::time::sleep_until(deadline) => Wake::Other,
            }
        })
    }

    fn commit(&mut self, batch: &mut Vec<Insert>, published: Vec<i64>, failures: Vec<Failure>) {
        let started = Instant::now();
        let events = batch.len();
        let result = apply(&mut self.conn, batch, &published, &failures);
        match result {
            Ok(done) => {
                self.state.writable.store(true, Ordering::Relaxed);
                self.records.committed(&published);
                let _ =
                    self.state
                        .backlog
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                            Some(b.saturating_sub(done.marked))
                        });
                if batch.is_empty() {
                    // The relay's records alone: nobody waits for them to reach the disk
                    // (at-least-once tolerates a lost mark; the next synced commit persists it).
                    return;
                }
                let committed = Committed {
                    replies: batch.drain(..).map(|i| i.reply).zip(done.results).collect(),
                    fed: done.fed,
                };
                self.durability.answer(&self.state, &self.feed, committed);
                // From the transaction's start until its webhooks are answered: with
                // `synchronous = "full"` the fsync is in it (what OPERATIONS.md alerts on).
                metrics::histogram!("payhook_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("payhook_store_batch_events").record(events as f64);
            }
            Err(e) => {
                // The transaction rolled back: no partial rows. Everyone in it gets a 503 and the
                // provider retries later; the relay's records wait for the next commit.
                tracing::error!(error = %e, events = batch.len(), "store commit failed");
                self.state.writable.store(false, Ordering::Relaxed);
                self.records.restore(published, failures);
                let msg = e.to_string();
                for ins in batch.drain(..) {
                    let _ = ins.reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Between commits: a retention chunk, a probe of a failed store, and a look for changes
    /// made by other processes.
    fn housekeeping(&mut self) {
        if !self.state.writable.load(Ordering::Relaxed) {
            let ok = probe(&mut self.conn).is_ok();
            self.state.writable.store(ok, Ordering::Relaxed);
            if !ok {
                return;
            }
        }
        if let Some(r) = &mut self.retention
            && r.due()
            && let Err(e) = r.step(&mut self.conn)
        {
            tracing::warn!(error = %e, "retention purge failed; retrying later");
        }
        if self.last_version_check.elapsed() >= IDLE_WAKE {
            self.last_version_check = Instant::now();
            self.external_changes();
        }
    }

    /// `PRAGMA data_version` changes when another connection committed: `payhook replay` made
    /// rows pending, or `purge` deleted some. Recount, and have the relay read the store again.
    fn external_changes(&mut self) {
        let Ok(v) = data_version(&self.conn) else {
            return;
        };
        if self.data_version.replace(v) == Some(v) {
            return;
        }
        if let Ok(n) = super::queries::count_pending(&self.conn) {
            self.state.backlog.store(n, Ordering::Relaxed);
        }
        self.feed.request_rescan();
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

fn probe(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('probe', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![now_ms().to_string()],
    )?;
    tx.commit()
}

struct Done {
    results: Vec<Inserted>,
    /// The new events, for the relay (moved out of the batch once they are bound).
    fed: Vec<PendingEvent>,
    marked: u64,
}

fn apply(
    conn: &mut Connection,
    batch: &mut [Insert],
    published: &[i64],
    failures: &[Failure],
) -> rusqlite::Result<Done> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut fed = Vec::new();
    let mut marked = 0u64;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, source, provider, dedup_key, event_type, routing_key, subject,
                                 time_unix, received_at_ms, content_type, content_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let mut insert_message = tx.prepare_cached(
            "INSERT INTO messages (seq, message, body, body_offset) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut stored_hash = tx.prepare_cached("SELECT content_hash FROM events WHERE id = ?1")?;
        for ins in batch.iter_mut() {
            let e = &mut *ins.event;
            let received_ms =
                i64::try_from(e.received_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let n = insert.execute(params![
                e.id.as_bytes().as_slice(),
                e.source,
                e.provider,
                e.dedup_key,
                e.event_type,
                e.routing_key,
                e.subject,
                e.time_unix,
                received_ms,
                e.content_type,
                e.content_hash.as_slice(),
            ])?;
            if n == 1 {
                let seq = tx.last_insert_rowid();
                // The body is stored once: inside the message when the payload is the body.
                let body: Option<&[u8]> = match e.body_offset {
                    Some(_) => None,
                    None => Some(&e.body[..]),
                };
                insert_message.execute(params![
                    seq,
                    e.message,
                    body,
                    e.body_offset.and_then(|o| i64::try_from(o).ok()),
                ])?;
                results.push(Inserted::New);
                fed.push(PendingEvent {
                    seq,
                    id: e.id,
                    source: e.source.clone(),
                    provider: e.provider.to_string(),
                    event_type: std::mem::take(&mut e.event_type),
                    routing_key: std::mem::take(&mut e.routing_key),
                    subject: e.subject.take(),
                    time_unix: e.time_unix,
                    message: std::mem::take(&mut e.message),
                    attempts: 0,
                    next_attempt_ms: None,
                });
                continue;
            }
            let stored: Option<Option<Vec<u8>>> = stored_hash
                .query_row(params![e.id.as_bytes().as_slice()], |r| r.get(0))
                .optional()?;
            results.push(match stored.flatten() {
                Some(h) if h.as_slice() != e.content_hash.as_slice() => Inserted::Conflict {
                    stored: <[u8; 32]>::try_from(h.as_slice()).unwrap_or([0; 32]),
                },
                // Same content, or a row from before content hashes were kept.
                _ => Inserted::Duplicate,
            });
        }
        let now = now_ms();
        if !published.is_empty() {
            let mut mark = tx.prepare_cached(
                "UPDATE events SET published_at_ms = ?1 WHERE seq = ?2 AND published_at_ms IS NULL",
            )?;
            for seq in published {
                marked += mark.execute(params![now, seq])? as u64;
            }
        }
        if !failures.is_empty() {
            let mut fail = tx.prepare_cached(
                "UPDATE events SET attempts = ?1, last_error = ?2, next_attempt_ms = ?3
                 WHERE seq = ?4 AND published_at_ms IS NULL",
            )?;
            for f in failures {
                fail.execute(params![f.attempts, f.error, f.next_attempt_ms, f.seq])?;
            }
        }
    }
    tx.commit()?;
    Ok(Done {
        results,
        fed,
        marked,
    })
}
