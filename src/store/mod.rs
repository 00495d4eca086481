//! The durable store. One writer thread owns the only writing connection and commits requests in
//! groups (one transaction and one sync for everything that arrived together); readers use their
//! own connections, which WAL lets run beside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::Synchronous;
use crate::event::Event;

pub mod queries;
pub mod schema;
mod writer;

pub use writer::purge_published;

pub use queries::{EventRow, PendingEvent};

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

enum Command {
    Insert(Box<Event>, oneshot::Sender<Result<Inserted, StoreError>>),
    MarkPublished(Vec<i64>, oneshot::Sender<Result<u64, StoreError>>),
    /// Deletes published events received before the cutoff (unix ms). Pending ones never go.
    Purge(i64, oneshot::Sender<Result<u64, StoreError>>),
}

/// State shared between the writer, the relay and the admin endpoints.
#[derive(Default)]
pub struct StoreState {
    /// Unpublished events. Counted once at open, then kept by the writer.
    pub backlog: AtomicU64,
    /// False after a failed commit, true again after the next good one.
    pub writable: AtomicBool,
    /// Unix ms of the writer's last sign of life, for the systemd watchdog.
    pub writer_heartbeat_ms: AtomicI64,
}

#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    pub state: Arc<StoreState>,
    /// Woken after every commit that stored something new, so the relay needs no polling.
    pub new_events: Arc<Notify>,
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Store {
    /// Opens (creating and migrating) the file and starts the writer thread.
    pub fn open(
        path: &Path,
        sync: Synchronous,
    ) -> Result<(Store, std::thread::JoinHandle<()>), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut conn = schema::open(path, sync)?;
        schema::migrate(&mut conn)?;
        let reader = schema::open(path, sync)?;
        let backlog = queries::count_pending(&reader)?;
        let state = Arc::new(StoreState {
            backlog: AtomicU64::new(backlog),
            writable: AtomicBool::new(true),
            writer_heartbeat_ms: AtomicI64::new(now_ms()),
        });
        let new_events = Arc::new(Notify::new());
        // Bounded: when the disk is slower than intake, requests wait here instead of piling up.
        let (tx, rx) = mpsc::channel(8192);
        let handle = writer::spawn(conn, rx, state.clone(), new_events.clone())
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok((
            Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                path: path.to_path_buf(),
                state,
                new_events,
            },
            handle,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves only after the transaction holding the event has committed (and, with
    /// `synchronous = "full"`, reached the disk).
    pub async fn insert(&self, event: Event) -> Result<Inserted, StoreError> {
        self.ask(|reply| Command::Insert(Box::new(event), reply))
            .await
    }

    pub async fn mark_published(&self, seqs: Vec<i64>) -> Result<u64, StoreError> {
        self.ask(|reply| Command::MarkPublished(seqs, reply)).await
    }

    pub async fn purge_published_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.ask(|reply| Command::Purge(cutoff_ms, reply)).await
    }

    /// Hands a command to the writer and waits for the commit that carries it.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(command(tx))
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
        let beat = self.state.writer_heartbeat_ms.load(Ordering::Relaxed);
        self.state.writable.load(Ordering::Relaxed) && now_ms() - beat < 10_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Category, Money, Normalized, Outcome, Payload};

    fn event(key: &str) -> Event {
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
            content_hash: [0; 32],
            payload: Payload::Json(serde_json::json!({})),
        };
        let old = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        Event::build(
            "s",
            "pingpp",
            n,
            old,
            None,
            bytes::Bytes::from_static(b"{}"),
        )
    }

    #[tokio::test]
    async fn dedup_backlog_and_purge_never_touches_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(&dir.path().join("sub/x.db"), Synchronous::Full).unwrap();
        assert_eq!(store.insert(event("a")).await.unwrap(), Inserted::New);
        assert_eq!(store.insert(event("a")).await.unwrap(), Inserted::Duplicate);
        assert_eq!(store.insert(event("b")).await.unwrap(), Inserted::New);
        assert_eq!(store.backlog(), 2);
        let pending = store.read(|c| queries::pending(c, 10)).await.unwrap();
        assert_eq!(
            pending.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
            vec![
                crate::event::event_id("s", "a").to_string(),
                crate::event::event_id("s", "b").to_string()
            ]
        );
        assert_eq!(store.mark_published(vec![pending[0].seq]).await.unwrap(), 1);
        assert_eq!(store.backlog(), 1);
        // Both rows are "old"; only the published one may go.
        assert_eq!(store.purge_published_before(now_ms()).await.unwrap(), 1);
        let left = store.read(|c| queries::pending(c, 10)).await.unwrap();
        assert_eq!(left.len(), 1);
        drop(store);
        writer.join().unwrap();
    }
}
