//! The hand-off from the writer to the relay: events enter it right after the commit that
//! stored them, so the relay publishes without reading the store back.
//!
//! Memory is bounded: past `cap_bytes` the writer drops events from the feed and marks it
//! overflowed; the relay then reads the store from the last event it took (every dropped event is
//! committed, so it is there). The store is also read at start and whenever another process
//! changed it (`payhook replay` makes old rows pending again): the writer asks for a rescan.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::queries::PendingEvent;

#[derive(Default)]
struct Inner {
    queue: VecDeque<PendingEvent>,
    bytes: usize,
    /// Events were dropped since the relay last looked.
    overflowed: bool,
    /// Rows may have become pending behind our back: read every pending row again.
    rescan: bool,
}

pub struct Feed {
    inner: Mutex<Inner>,
    cap_bytes: usize,
    /// Woken after every push, overflow or rescan request.
    pub notify: Notify,
}

pub enum ScanEnd {
    Streaming(Vec<PendingEvent>),
    /// Events were dropped meanwhile: read on from where the scan is.
    Continue,
    /// Another process changed the store: read every pending row again.
    Restart,
}

/// What the relay takes from the feed.
pub struct Taken {
    pub events: Vec<PendingEvent>,
    pub overflowed: bool,
    pub rescan: bool,
}

impl Feed {
    pub fn new(cap_bytes: usize) -> Feed {
        Feed {
            inner: Mutex::new(Inner::default()),
            cap_bytes,
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the writer with the events of one commit, in seq order.
    pub fn push(&self, events: impl IntoIterator<Item = PendingEvent>) {
        let mut g = self.lock();
        for e in events {
            let w = e.weight();
            if g.overflowed || g.bytes + w > self.cap_bytes {
                // Once one is dropped, all later ones are too: the relay reads them from the
                // store in order, and nothing after a gap may overtake it.
                g.overflowed = true;
                continue;
            }
            g.bytes += w;
            g.queue.push_back(e);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// Called by the writer when another process changed the store.
    pub fn request_rescan(&self) {
        self.lock().rescan = true;
        self.notify.notify_one();
    }

    /// Everything queued, and the flags (which are cleared). After `overflowed` or `rescan` the
    /// relay must read the store: the events returned are then only a prefix of what is pending.
    pub fn take(&self) -> Taken {
        let mut g = self.lock();
        let events = Vec::from(std::mem::take(&mut g.queue));
        g.bytes = 0;
        let t = Taken {
            events,
            overflowed: std::mem::take(&mut g.overflowed),
            rescan: std::mem::take(&mut g.rescan),
        };
        drop(g);
        t
    }

    /// Ends a store scan that reached the last pending row. If nothing was dropped and no rescan
    /// was asked for since the scan's last read, the queued events go to the relay (those it
    /// already read from the store it skips by seq) and it streams again. Otherwise the queue is
    /// cleared (its events are in the store) and the scan goes on, or starts over.
    pub fn finish_scan(&self) -> ScanEnd {
        let mut g = self.lock();
        let end = if std::mem::take(&mut g.rescan) {
            ScanEnd::Restart
        } else if std::mem::take(&mut g.overflowed) {
            ScanEnd::Continue
        } else {
            g.bytes = 0;
            return ScanEnd::Streaming(Vec::from(std::mem::take(&mut g.queue)));
        };
        g.overflowed = false;
        g.queue.clear();
        g.bytes = 0;
        end
    }

    /// A rescan was asked for (checked by a scan in progress, which then starts over).
    pub fn take_rescan(&self) -> bool {
        std::mem::take(&mut self.lock().rescan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, bytes: usize) -> PendingEvent {
        PendingEvent {
            seq,
            id: uuid::Uuid::nil(),
            source: String::new(),
            provider: String::new(),
            event_type: String::new(),
            routing_key: String::new(),
            subject: None,
            time_unix: 0,
            message: vec![0; bytes],
            attempts: 0,
            next_attempt_ms: None,
        }
    }

    #[test]
    fn overflow_drops_everything_after_the_first_drop() {
        let f = Feed::new(1000);
        f.push([ev(1, 300), ev(2, 300), ev(3, 600), ev(4, 10)]);
        let t = f.take();
        assert_eq!(t.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(t.overflowed);
        f.push([ev(5, 10)]);
        let t = f.take();
        assert_eq!(t.events.len(), 1);
        assert!(!t.overflowed);
    }

    #[test]
    fn a_scan_ends_only_without_overflow_or_rescan() {
        let f = Feed::new(1000);
        f.push([ev(1, 10)]);
        f.request_rescan();
        assert!(matches!(f.finish_scan(), ScanEnd::Restart));
        f.push([ev(2, 3000)]);
        assert!(matches!(f.finish_scan(), ScanEnd::Continue));
        f.push([ev(3, 10)]);
        match f.finish_scan() {
            ScanEnd::Streaming(got) => {
                assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [3])
            }
            _ => panic!("expected streaming"),
        }
    }
}
