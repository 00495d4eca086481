//! The durable store. One writer thread owns the only writing connection and commits requests in
//! groups (one transaction and one sync for everything that arrived together); readers use their
//! own connections, which WAL lets run beside it.
//!
//! Toward the relay the store is an outbox: every committed event goes into the [`Feed`] right
//! after its commit, the relay reports confirms and failures back through [`Records`], and the
//! writer folds those into its next commit. Maintenance (retention, checkpoints) runs in short
//! bounded steps outside the intake transactions (SPEC §6.10).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Beat;
use crate::config::Synchronous;
use crate::event::Event;

mod durability;
pub mod feed;
pub mod maintenance;
pub mod queries;
pub mod records;
pub mod schema;
mod writer;

pub use crate::clock::now_ms;
pub use feed::Feed;
pub use queries::{EventRow, PendingEvent};
pub use records::{Failure, Records};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store is shutting down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Same source, dedup key and signed content as a stored event.
    Duplicate,
    /// Same source and dedup key as a stored event, but other signed content (SPEC §6.3): not
    /// stored, not published. `stored` is the content hash of the event already stored.
    Conflict {
        stored: [u8; 32],
    },
}

/// One webhook waiting for the commit that stores it.
struct Insert {
    event: Box<Event>,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// State shared between the writer, the relay and the admin endpoints.
pub struct StoreState {
    /// Unpublished events. Counted once at open, then kept by the writer.
    pub backlog: AtomicU64,
    /// False after a failed commit, true again after the next good one.
    pub writable: AtomicBool,
    /// The writer's last sign of life, for readiness and the systemd watchdog.
    pub writer_beat: Beat,
}

/// How the store is opened by the daemon.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub synchronous: Synchronous,
    /// Published events older than this are purged (`None`: never, as in tests and the CLI).
    pub retention: Option<Duration>,
    /// The most the feed to the relay holds in memory.
    pub feed_bytes: usize,
}

impl StoreSettings {
    pub fn new(synchronous: Synchronous) -> Self {
        StoreSettings {
            synchronous,
            retention: None,
            feed_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Insert>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    pub state: Arc<StoreState>,
    /// Committed events on their way to the relay.
    pub feed: Arc<Feed>,
    /// The relay's confirms and failures on their way into the store.
    pub records: Arc<Records>,
}

/// The threads behind a [`Store`]; joined at shutdown.
pub struct Workers {
    pub writer: std::thread::JoinHandle<()>,
    pub checkpointer: std::thread::JoinHandle<()>,
}

impl Store {
    /// Opens (creating and migrating) the file and starts the writer and checkpoint threads.
    pub fn open(path: &Path, settings: StoreSettings) -> Result<(Store, Workers), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let sync = settings.synchronous;
        let mut conn = schema::open(path, sync)?;
        schema::migrate(&mut conn)?;
        // SQLite never syncs inside a commit: the writer syncs the WAL itself, and only for
        // commits that hold webhooks (see durability.rs).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints run on their own thread (below); the writer only finishes them, rarely.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            maintenance::WRITER_CHECKPOINT_PAGES,
        )?;
        let reader = schema::open(path, sync)?;
        let backlog = queries::count_pending(&reader)?;
        let state = Arc::new(StoreState {
            backlog: AtomicU64::new(backlog),
            writable: AtomicBool::new(true),
            writer_beat: Beat::default(),
        });
        let feed = Arc::new(Feed::new(settings.feed_bytes));
        let records = Arc::new(Records::default());
        // Bounded: when the disk is slower than intake, requests wait here instead of piling up.
        let (tx, rx) = mpsc::channel(8192);
        // The writer stops the checkpointer when it ends.
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = maintenance::spawn_checkpointer(path, sync, stop.clone())
            .map_err(|e| StoreError::Unavailable(format!("cannot start checkpointer: {e}")))?;
        let durability = match sync {
            Synchronous::Normal => durability::Durability::AtCommit,
            Synchronous::Full => durability::Durability::synced(path),
        };
        let shared = writer::Shared {
            state: state.clone(),
            feed: feed.clone(),
            records: records.clone(),
            stop: stop.clone(),
        };
        let writer = writer::spawn(writer::Writer::new(conn, rx, shared, &settings, durability))
            .map_err(|e| {
                stop.store(true, Ordering::Relaxed);
                StoreError::Unavailable(format!("cannot start writer thread: {e}"))
            })?;
        Ok((
            Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                path: path.to_path_buf(),
                state,
                feed,
                records,
            },
            Workers {
                writer,
                checkpointer,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves only after the transaction holding the event has committed (and, with
    /// `synchronous = "full"`, reached the disk).
    pub async fn insert(&self, event: Event) -> Result<Inserted, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Insert {
                event: Box::new(event),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read query on the shared reader connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("reader task failed: {e}")))?
    }

    pub fn backlog(&self) -> u64 {
        self.state.backlog.load(Ordering::Relaxed)
    }

    /// The last commit worked and the writer thread is alive (it beats at least every second,
    /// so a dead or wedged writer turns the store unwritable within seconds).
    pub fn writable(&self) -> bool {
        self.state.writable.load(Ordering::Relaxed)
            && self.state.writer_beat.age() < Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Category, Money, Normalized, Outcome, Payload};

    pub(crate) fn event(key: &str, hash: u8) -> Event {
        let n = Normalized {
            event_type: "charge.succeeded".into(),
            provider_event_id: Some(key.into()),
            dedup_key: key.into(),
            category: Category::Payment,
            outcome: Outcome::Succeeded,
            order_no: None,
            transaction_id: None,
            money: Money::default(),
            livemode: None,
            occurred_at: None,
            signed_time: None,
            content_hash: [hash; 32],
            payload: Payload::Body,
        };
        let old = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        Event::build(
            "s",
            "pingpp",
            n,
            old,
            None,
            bytes::Bytes::from_static(b"{\"k\":1}"),
        )
    }

    async fn wait_for(cond: impl Fn() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn dedup_conflict_feed_marks_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = StoreSettings::new(Synchronous::Full);
        settings.retention = Some(Duration::from_secs(1));
        let (store, workers) = Store::open(&dir.path().join("sub/x.db"), settings).unwrap();
        assert_eq!(store.insert(event("a", 1)).await.unwrap(), Inserted::New);
        assert_eq!(
            store.insert(event("a", 1)).await.unwrap(),
            Inserted::Duplicate
        );
        assert_eq!(
            store.insert(event("a", 2)).await.unwrap(),
            Inserted::Conflict { stored: [1; 32] }
        );
        assert_eq!(store.insert(event("b", 1)).await.unwrap(), Inserted::New);
        assert_eq!(store.backlog(), 2);
        let fed = store.feed.take();
        assert!(!fed.overflowed);
        let seqs: Vec<i64> = fed.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs.len(), 2);
        assert_eq!(fed.events[0].id, crate::event::event_id("s", "a"));

        // The body is kept once, inside the message, and comes back whole.
        let a = crate::event::event_id("s", "a");
        let row = store
            .read(move |c| queries::get(c, &a))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.body, b"{\"k\":1}");

        // A failure is recorded, then a confirm: the backlog drops without any insert.
        store.records.failed(Failure {
            seq: seqs[1],
            attempts: 3,
            error: "returned".into(),
            next_attempt_ms: 5,
        });
        store.records.published([seqs[0]]);
        assert!(store.records.is_unmarked(seqs[0]));
        wait_for(|| store.backlog() == 1).await;
        assert!(!store.records.is_unmarked(seqs[0]));
        let b = crate::event::event_id("s", "b");
        let row = store
            .read(move |c| queries::get(c, &b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 3);
        assert_eq!(row.last_error.as_deref(), Some("returned"));

        // Retention (1 s, events received long ago) removes the published one only.
        wait_for(|| {
            let c = rusqlite::Connection::open(dir.path().join("sub/x.db")).unwrap();
            c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
                .unwrap()
                == 1
        })
        .await;
        let left = store
            .read(|c| queries::pending_page(c, 0, 10, 1 << 20))
            .await
            .unwrap();
        assert_eq!(left.rows.len(), 1);
        assert_eq!(left.rows[0].0, seqs[1]);
        drop(store);
        workers.writer.join().unwrap();
    }
}
