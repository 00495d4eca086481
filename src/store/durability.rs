//! Making a committed group durable before it is answered (`synchronous = "full"`).
//!
//! The writer commits with SQLite's `synchronous = NORMAL` (SQLite then syncs only around
//! checkpoints and when the WAL is reused, which keeps the file consistent) and, when the
//! group holds webhooks, calls `fdatasync` on the WAL file itself before anyone is answered:
//! the 200 comes only after the event is on disk (SPEC §6.1). The relay's records (confirms,
//! failures) and retention chunks commit without a sync of their own; the next synced commit
//! persists them, and at-least-once tolerates a lost mark.
//!
//! The writer syncs inline rather than handing each group to a sync thread, as an earlier
//! version did. The hand-off overlapped the fsync with the next group's inserts, but it cost two
//! thread wake-ups per group (a wake-up across cores costs 10-25 us on the virtual machines
//! measured) and kept groups small (11-12 events at 64 connections): the writer committed
//! whatever was waiting as soon as it could. Inline, whatever arrives during one fsync joins the
//! next group (18-20 events at 64 connections), which measured 10% less CPU per event at the
//! same or a higher rate (docs/PERFORMANCE.md). On a slow disk the groups grow to fill the wait.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::feed::Feed;
use super::queries::PendingEvent;
use super::{Inserted, StoreError, StoreState};

/// One committed group waiting to be answered.
pub(super) struct Committed {
    pub replies: Vec<(oneshot::Sender<Result<Inserted, StoreError>>, Inserted)>,
    pub fed: Vec<PendingEvent>,
}

/// When a committed group may be answered.
pub(super) enum Durability {
    /// `synchronous = "normal"`: right after the commit.
    AtCommit,
    /// `synchronous = "full"`: after an fdatasync of the WAL.
    Synced(WalSync),
}

impl Durability {
    pub fn synced(db: &Path) -> Durability {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Durability::Synced(WalSync {
            wal: PathBuf::from(wal),
            file: None,
        })
    }

    /// Answers a committed group once it is as durable as configured: on success, counters
    /// first, then the relay, then the replies (whoever sees a 200 also sees the event in the
    /// backlog); if the sync fails, a 503 for each.
    pub fn answer(&mut self, state: &StoreState, feed: &Feed, group: Committed) {
        match self {
            Durability::AtCommit => deliver(state, feed, group),
            Durability::Synced(sync) => match sync.sync() {
                Ok(()) => deliver(state, feed, group),
                Err(e) => {
                    // The rows are committed but maybe not on disk: answer 503, and the
                    // provider's retry finds them (a duplicate) or stores them again.
                    tracing::error!(error = %e, wal = %sync.wal.display(), "cannot sync the store's WAL");
                    state.writable.store(false, Ordering::Relaxed);
                    // They are in the store all the same: count them, and have the relay read
                    // them from there.
                    state
                        .backlog
                        .fetch_add(group.fed.len() as u64, Ordering::Relaxed);
                    feed.request_rescan();
                    let msg = format!("cannot sync the store: {e}");
                    for (reply, _) in group.replies {
                        let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                }
            },
        }
    }
}

/// The WAL file, opened at the first synced group: by then a commit has created it. SQLite
/// keeps it (the same inode) for as long as its connections are open; it only truncates it.
pub(super) struct WalSync {
    wal: PathBuf,
    file: Option<File>,
}

impl WalSync {
    fn sync(&mut self) -> std::io::Result<()> {
        let file = match &self.file {
            Some(f) => f,
            None => self.file.insert(File::open(&self.wal)?),
        };
        let r = file.sync_data();
        if r.is_err() {
            // Reopened next time.
            self.file = None;
        }
        r
    }
}

fn deliver(state: &StoreState, feed: &Feed, group: Committed) {
    state
        .backlog
        .fetch_add(group.fed.len() as u64, Ordering::Relaxed);
    if !group.fed.is_empty() {
        feed.push(group.fed);
    }
    for (reply, r) in group.replies {
        let _ = reply.send(Ok(r));
    }
}
