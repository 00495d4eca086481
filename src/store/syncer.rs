//! Durability off the writer's path (`synchronous = "full"`).
//!
//! SQLite in WAL mode with `synchronous = FULL` fsyncs the WAL inside every commit, so the one
//! writer thread sits idle for the fsync and the next group of webhooks waits behind it. Instead
//! the writer commits with `synchronous = NORMAL` (SQLite then syncs only around checkpoints and
//! when the WAL is reused, which keeps the file consistent) and hands each committed group to
//! this thread, which calls `fdatasync` on the WAL file and only then answers the group's
//! requests (and hands its events to the relay). While it syncs, the writer already commits the
//! next group, and one fdatasync covers every group committed before it started: the 200 still
//! comes only after the event is on disk (SPEC §6.1), but the disk's latency no longer limits
//! the writer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::feed::Feed;
use super::queries::PendingEvent;
use super::{Inserted, StoreError, StoreState};

/// One committed group waiting to be made durable.
pub(super) struct Committed {
    pub replies: Vec<(oneshot::Sender<Result<Inserted, StoreError>>, Inserted)>,
    pub fed: Vec<PendingEvent>,
}

/// Where committed groups go to be answered.
pub(super) enum Durability {
    /// `synchronous = "normal"`: answered right after the commit.
    AtCommit,
    /// `synchronous = "full"`: answered by the syncer thread after an fdatasync of the WAL.
    Syncer(SyncerHandle),
}

/// The writer's side of the syncer.
pub(super) struct SyncerHandle {
    tx: mpsc::Sender<Committed>,
    gate: Arc<Gate>,
}

/// Groups handed over that no fdatasync has taken up yet, and a wake-up when one does.
#[derive(Default)]
struct Gate {
    queued: AtomicUsize,
    taken: tokio::sync::Notify,
}

impl SyncerHandle {
    pub fn send(&self, c: Committed) -> Result<(), mpsc::SendError<Committed>> {
        self.gate.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(c).inspect_err(|_| {
            self.gate.queued.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Whether a committed group still waits for the next fdatasync. Committing another group
    /// then gains nothing (the same fdatasync will answer both) and costs WAL pages: the writer
    /// waits for [`SyncerHandle::taken`] and commits one larger group instead.
    pub fn backed_up(&self) -> bool {
        self.gate.queued.load(Ordering::Acquire) > 0
    }

    /// Resolves when the syncer takes up the waiting groups.
    pub async fn taken(&self) {
        self.gate.taken.notified().await;
    }
}

/// Answers a group whose commit is durable: counters first, then the relay, then the replies
/// (whoever sees a 200 also sees the event in the backlog).
pub(super) fn deliver(state: &StoreState, feed: &Feed, groups: Vec<Committed>) {
    let new: usize = groups.iter().map(|g| g.fed.len()).sum();
    state.backlog.fetch_add(new as u64, Ordering::Relaxed);
    let mut fed = Vec::with_capacity(new);
    let mut replies = Vec::new();
    for g in groups {
        fed.extend(g.fed);
        replies.extend(g.replies);
    }
    if !fed.is_empty() {
        feed.push(fed);
    }
    for (reply, r) in replies {
        let _ = reply.send(Ok(r));
    }
}

pub(super) fn spawn(
    db: &Path,
    state: Arc<StoreState>,
    feed: Arc<Feed>,
) -> std::io::Result<(SyncerHandle, std::thread::JoinHandle<()>)> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let (tx, rx) = mpsc::channel::<Committed>();
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let handle = std::thread::Builder::new()
        .name("store-sync".into())
        .spawn(move || run(&wal, &rx, &g, &state, &feed))?;
    Ok((SyncerHandle { tx, gate }, handle))
}

/// Until the writer is gone: take every group committed so far, one fdatasync, answer them all.
fn run(wal: &Path, rx: &mpsc::Receiver<Committed>, gate: &Gate, state: &StoreState, feed: &Feed) {
    // Opened at the first group: by then a commit has created the WAL file. SQLite keeps it
    // (the same inode) for as long as its connections are open; it only truncates it.
    let mut file: Option<File> = None;
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(more) = rx.try_recv() {
            groups.push(more);
        }
        gate.queued.fetch_sub(groups.len(), Ordering::AcqRel);
        gate.taken.notify_one();
        let synced = match &file {
            Some(f) => f.sync_data(),
            None => File::open(wal).and_then(|f| {
                let r = f.sync_data();
                file = Some(f);
                r
            }),
        };
        match synced {
            Ok(()) => deliver(state, feed, groups),
            Err(e) => {
                // The rows are committed but maybe not on disk: answer 503, and the provider's
                // retry finds them (a duplicate) or stores them again. Reopen next time.
                tracing::error!(error = %e, wal = %wal.display(), "cannot sync the store's WAL");
                state.writable.store(false, Ordering::Relaxed);
                file = None;
                // They are in the store all the same: count them, and have the relay read them
                // from there.
                let new: usize = groups.iter().map(|g| g.fed.len()).sum();
                state.backlog.fetch_add(new as u64, Ordering::Relaxed);
                feed.request_rescan();
                let msg = format!("cannot sync the store: {e}");
                for g in groups {
                    for (reply, _) in g.replies {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            }
        }
    }
}
