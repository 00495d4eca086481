//! What the relay reports back to the store: events the broker confirmed, and events whose
//! publish failed (for their own backoff). The writer folds these into its next commit, so they
//! never cost an fsync of their own; a mark lost in a crash only means one more publish after
//! the restart (at-least-once).
//!
//! Until its mark is committed, a confirmed event is "unmarked": a store scan must skip it, or a
//! failing store would make the relay publish the same events again and again.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

/// A failed publish attempt of one event.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seq: i64,
    pub attempts: u32,
    pub error: String,
    pub next_attempt_ms: i64,
}

#[derive(Default)]
struct Inner {
    published: Vec<i64>,
    failures: Vec<Failure>,
    unmarked: HashSet<i64>,
    /// When the oldest record still waiting for a commit arrived.
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Records {
    inner: Mutex<Inner>,
    pub(super) notify: Notify,
}

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn published(&self, seqs: impl IntoIterator<Item = i64>) {
        let mut g = self.lock();
        for seq in seqs {
            g.published.push(seq);
            g.unmarked.insert(seq);
        }
        g.since.get_or_insert_with(Instant::now);
        drop(g);
        self.notify.notify_one();
    }

    pub fn failed(&self, f: Failure) {
        let mut g = self.lock();
        g.failures.push(f);
        g.since.get_or_insert_with(Instant::now);
        drop(g);
        self.notify.notify_one();
    }

    /// Confirmed by the broker, not yet recorded in the store.
    pub fn is_unmarked(&self, seq: i64) -> bool {
        self.lock().unmarked.contains(&seq)
    }

    pub fn unmarked_len(&self) -> usize {
        self.lock().unmarked.len()
    }

    /// When the oldest waiting record arrived, if any is waiting.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        self.lock().since
    }

    pub(super) fn take(&self) -> (Vec<i64>, Vec<Failure>) {
        let mut g = self.lock();
        g.since = None;
        (
            std::mem::take(&mut g.published),
            std::mem::take(&mut g.failures),
        )
    }

    /// The commit holding these marks succeeded.
    pub(super) fn committed(&self, published: &[i64]) {
        let mut g = self.lock();
        for seq in published {
            g.unmarked.remove(seq);
        }
    }

    /// The commit failed: keep the records for the next one.
    pub(super) fn restore(&self, published: Vec<i64>, failures: Vec<Failure>) {
        if published.is_empty() && failures.is_empty() {
            return;
        }
        let mut g = self.lock();
        // In front: a newer failure of the same event must still be applied last.
        g.published.splice(0..0, published);
        g.failures.splice(0..0, failures);
        g.since.get_or_insert_with(Instant::now);
    }
}
