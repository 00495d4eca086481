//! Maintenance in short bounded steps (SPEC §6.10), so that a store of millions of events never
//! holds a webhook for more than a few milliseconds:
//!
//! - retention deletes published events through `events_retention`, an index holding only
//!   published rows by receive time, so each chunk finds exactly what it deletes; chunks are
//!   sized to take about 3 ms each, run between the writer's intake commits, and paced to 2,000
//!   rows a second so a catch-up over millions of rows never floods the disk;
//! - WAL checkpoints run on a thread of their own with a connection of their own: passive
//!   passes do the copying without the write lock, and the writer's own automatic checkpoint
//!   finishes the last frames so the WAL is reset even under a steady stream of commits (see
//!   [`spawn_checkpointer`]);
//!   `journal_size_limit` truncates the WAL file after a reset;
//! - the CLI's `purge` uses the same chunks at the same pace, so the daemon's writer gets the
//!   lock in between.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use crate::config::Synchronous;

/// The published events a retention chunk deletes, oldest first (through `events_retention`).
pub const RETENTION_SELECT: &str = "SELECT seq FROM events \
     WHERE published_at_ms IS NOT NULL AND received_at_ms < ?1 \
     ORDER BY received_at_ms LIMIT ?2";

/// Deletes up to `limit` published events received before `cutoff_ms` (their rows and their
/// messages); returns how many.
pub fn purge_chunk(conn: &Connection, cutoff_ms: i64, limit: usize) -> rusqlite::Result<usize> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let seqs: Vec<i64> = conn
        .prepare_cached(RETENTION_SELECT)?
        .query_map(params![cutoff_ms, limit], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut event = conn.prepare_cached("DELETE FROM events WHERE seq = ?1")?;
    let mut message = conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
    for seq in &seqs {
        event.execute(params![seq])?;
        message.execute(params![seq])?;
    }
    Ok(seqs.len())
}

/// Chunk sizes that keep each step near `TARGET`: doubled while steps are quick, halved when
/// one was slow.
#[derive(Debug)]
pub struct Chunker {
    size: usize,
}

impl Chunker {
    const TARGET: Duration = Duration::from_millis(3);
    const MIN: usize = 16;
    const MAX: usize = 4096;

    pub fn new() -> Chunker {
        Chunker { size: 256 }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn took(&mut self, d: Duration) {
        if d > Self::TARGET * 2 {
            self.size = (self.size / 2).max(Self::MIN);
        } else if d < Self::TARGET / 2 {
            self.size = (self.size * 2).min(Self::MAX);
        }
    }
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

/// Deleted rows per second at most while retention catches up. Each deleted row dirties pages
/// of WAL (its entry in the id index sits on a random page), and the WAL and its checkpoints
/// share the disk with intake's fsyncs. Measured over a store of 2 million rows with 500
/// webhooks a second (release build): at 5,000 rows a second intake's p99 went from 2 ms to
/// 32 ms, at 2,000 to 8 ms (slowest 35 ms). Chunk size barely mattered; the volume did. 2,000 a
/// second is still 170 million events a day: a catch-up over millions takes minutes.
const RETENTION_ROWS_PER_SECOND: u32 = 2000;

/// The retention schedule the writer runs: every `period`, chunks until nothing is left, paced
/// to [`RETENTION_ROWS_PER_SECOND`].
pub struct Retention {
    retention: Duration,
    period: Duration,
    /// When the next chunk may run (the next run's start when none is under way).
    next: Instant,
    active: bool,
    chunker: Chunker,
    purged: u64,
}

impl Retention {
    pub fn new(retention: Duration) -> Retention {
        // A quarter of the retention, between 1 s and 10 min: short retentions (tests, small
        // disks) are honoured closely, long ones cost one cheap query every ten minutes.
        let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        Retention {
            retention,
            period,
            next: Instant::now(),
            active: false,
            chunker: Chunker::new(),
            purged: 0,
        }
    }

    /// Whether a chunk should run now.
    pub fn due(&mut self) -> bool {
        if Instant::now() < self.next {
            return false;
        }
        self.active = true;
        true
    }

    /// When the writer should wake for the next chunk.
    pub fn next_step(&self) -> Instant {
        self.next
    }

    /// One chunk in its own transaction. The caller decides the sync level.
    pub fn step(&mut self, conn: &mut Connection) -> rusqlite::Result<()> {
        let cutoff = crate::clock::now_ms()
            .saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let size = self.chunker.size();
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = purge_chunk(&tx, cutoff, size)?;
        tx.commit()?;
        self.chunker.took(started.elapsed());
        self.purged += n as u64;
        if n < size {
            self.active = false;
            self.next = Instant::now() + self.period;
            if self.purged > 0 {
                tracing::info!(purged = self.purged, "retention: purged published events");
            }
            self.purged = 0;
        } else {
            let pace = Duration::from_secs_f64(n as f64 / f64::from(RETENTION_ROWS_PER_SECOND));
            self.next = started + pace;
        }
        Ok(())
    }
}

/// `payhook purge`: the same chunks in their own short transactions, at the same pace, so a
/// running daemon's writer gets the lock between them and the disk is not flooded. Each takes
/// the write lock at its start (IMMEDIATE): a transaction that read first and then wanted to
/// write after the daemon committed would fail at once, without waiting (SQLITE_BUSY).
pub fn purge_all(conn: &mut Connection, cutoff_ms: i64) -> rusqlite::Result<u64> {
    let mut chunker = Chunker::new();
    let mut total = 0u64;
    loop {
        let size = chunker.size();
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = purge_chunk(&tx, cutoff_ms, size)?;
        tx.commit()?;
        chunker.took(started.elapsed());
        total += n as u64;
        if n < size {
            return Ok(total);
        }
        let pace = Duration::from_secs_f64(n as f64 / f64::from(RETENTION_ROWS_PER_SECOND));
        std::thread::sleep(pace.saturating_sub(started.elapsed()));
    }
}

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The writer finishes a checkpoint itself once the WAL holds this many pages (32 MiB).
pub const WRITER_CHECKPOINT_PAGES: i64 = 8192;
/// A WAL this large means checkpoints cannot keep up (a reader holds an old snapshot): warn.
const WAL_WARN_PAGES: i64 = 256 * 1024;

/// Passive checkpoints on a thread and connection of their own, until `stop` is set.
///
/// A passive checkpoint copies the WAL into the database file without taking the write lock,
/// so it neither waits for intake nor makes it wait. Under a steady stream of commits it never
/// finishes on its own (new frames arrive while it copies), so the WAL would never be reset and
/// would grow without bound (it reached gigabytes while retention purged millions of rows). The
/// writer therefore keeps SQLite's automatic checkpoint at [`WRITER_CHECKPOINT_PAGES`]: when it
/// runs, between two commits, it finds nearly everything already copied by this thread and only
/// copies the last frames and syncs, then the next commit starts the WAL from its beginning.
pub fn spawn_checkpointer(
    path: &Path,
    sync: Synchronous,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let conn = match super::schema::open(&path, sync) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "checkpointer cannot open the store; the WAL will grow");
                    return;
                }
            };
            let mut warned = false;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                // (busy, frames in the WAL, frames checkpointed)
                let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match r {
                    Ok((_, log, done)) if log - done > WAL_WARN_PAGES && !warned => {
                        warned = true;
                        tracing::warn!(
                            wal_frames = log,
                            checkpointed = done,
                            "the WAL is not being checkpointed: is a reader holding a snapshot?"
                        );
                    }
                    Ok((_, log, done)) if log - done <= WAL_WARN_PAGES => warned = false,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "checkpoint failed; retrying"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunker_adapts() {
        let mut c = Chunker::new();
        c.took(Duration::from_millis(1));
        assert_eq!(c.size(), 512);
        c.took(Duration::from_millis(50));
        assert_eq!(c.size(), 256);
        for _ in 0..20 {
            c.took(Duration::from_millis(100));
        }
        assert_eq!(c.size(), Chunker::MIN);
    }
}
