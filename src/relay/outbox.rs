//! The publishing side of the outbox: what to publish next, a sliding window of unconfirmed
//! publishes, and each failing event's own backoff.
//!
//! Events arrive in memory from the store's feed right after their commit; the store itself is
//! read only at start, when the feed overflowed, and when another process changed it. Up to
//! `max_in_flight` publishes are unconfirmed at once, each settled by its own confirm (lapin
//! tracks them by delivery tag), so one slow confirm never holds a batch. A confirmed event is
//! reported to the store, which records it with its next commit; an event the broker returns or
//! nacks, or whose row cannot be read, goes on its own backoff while the rest keep flowing.
//! Receive (seq) order is kept, except around an event on its own backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::Confirmation;
use tokio_util::sync::CancellationToken;

use super::RelayState;
use super::backoff::event_delay;
use super::session::{AmqpSettings, RelayError, Session};
use crate::clock::now_ms;
use crate::store::feed::ScanEnd;
use crate::store::{Failure, PendingEvent, Store, queries};

/// Events held in memory ahead of the window (the feed holds as much again).
const READY_BYTES: usize = 4 * 1024 * 1024;
/// Unconfirmed message bytes at most (besides `max_in_flight`), so large bodies stay bounded.
const IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;
/// Rows per store read while catching up.
const PAGE_ROWS: usize = 1024;
/// Every store call of the relay is bounded by this.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// The loop wakes at least this often (heartbeat, connection and alarm checks).
const TICK: Duration = Duration::from_millis(250);
/// Events reloaded from the store per loop turn when their backoff ends.
const RELOADS_PER_TURN: usize = 64;
/// This many nacks in a row, without one ack, say the channel rather than the events is wrong
/// (a quorum queue whose leader was being elected when the channel opened nacks everything
/// until the channel is replaced): the session ends and its events go out on the next one.
const NACK_STORM: u32 = 32;
/// A nacked event is held this long for the verdict (one nack, or the whole channel?) before it
/// goes on its own backoff.
const NACK_HOLD: Duration = Duration::from_secs(1);

type ConfirmFuture = BoxFuture<'static, (i64, lapin::Result<Confirmation>)>;

/// What the relay keeps between sessions: the events ahead of the window and those on backoff.
pub struct Outbox {
    store: Store,
    settings: AmqpSettings,
    state: Arc<RelayState>,
    /// To publish, lowest seq first.
    ready: BTreeMap<i64, PendingEvent>,
    ready_bytes: usize,
    /// Events on their own backoff: due time per seq (their rows are read again when due).
    retry_due: HashMap<i64, Instant>,
    retry_order: BTreeSet<(Instant, i64)>,
    /// Failed attempts of events not yet confirmed.
    attempts: HashMap<i64, u32>,
    /// Highest seq taken from the feed or the store.
    cursor: i64,
    /// Reading the store (catching up) rather than streaming from the feed.
    scanning: bool,
    /// The last store read failed: don't retry before this.
    store_pause_until: Option<Instant>,
    published: HashMap<String, metrics::Counter>,
}

/// The window of one session.
#[derive(Default)]
struct Window {
    confirms: FuturesUnordered<ConfirmFuture>,
    events: HashMap<i64, PendingEvent>,
    bytes: usize,
    /// Publish deadlines, oldest first (entries whose event settled are skipped).
    deadlines: VecDeque<(Instant, i64)>,
    /// Nacks in a row without an ack.
    nack_streak: u32,
    /// Nacked events waiting for the verdict (see [`NACK_STORM`]).
    nacked: VecDeque<(Instant, PendingEvent)>,
}

impl Window {
    fn len(&self) -> usize {
        self.events.len()
    }

    /// The oldest unsettled publish's confirm deadline.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(t, seq)) = self.deadlines.front() {
            if self.events.contains_key(&seq) {
                return Some(t);
            }
            self.deadlines.pop_front();
        }
        None
    }

    fn take(&mut self, seq: i64) -> Option<PendingEvent> {
        let ev = self.events.remove(&seq)?;
        self.bytes = self.bytes.saturating_sub(ev.weight());
        Some(ev)
    }
}

impl Outbox {
    pub fn new(store: Store, settings: AmqpSettings, state: Arc<RelayState>) -> Outbox {
        Outbox {
            store,
            settings,
            state,
            ready: BTreeMap::new(),
            ready_bytes: 0,
            retry_due: HashMap::new(),
            retry_order: BTreeSet::new(),
            attempts: HashMap::new(),
            cursor: 0,
            scanning: true,
            store_pause_until: None,
            published: HashMap::new(),
        }
    }

    fn known(&self, seq: i64, in_flight: &HashMap<i64, PendingEvent>) -> bool {
        self.ready.contains_key(&seq)
            || in_flight.contains_key(&seq)
            || self.retry_due.contains_key(&seq)
            || self.store.records.is_unmarked(seq)
    }

    fn push_ready(&mut self, ev: PendingEvent) {
        self.ready_bytes += ev.weight();
        if let Some(old) = self.ready.insert(ev.seq, ev) {
            self.ready_bytes = self.ready_bytes.saturating_sub(old.weight());
        }
    }

    fn pop_ready(&mut self) -> Option<PendingEvent> {
        let (_, ev) = self.ready.pop_first()?;
        self.ready_bytes = self.ready_bytes.saturating_sub(ev.weight());
        Some(ev)
    }

    /// Takes an event read from the store or the feed: to the window's queue, or back on its
    /// backoff when an earlier run left it waiting.
    fn admit(&mut self, ev: PendingEvent) {
        if ev.attempts > 0 {
            self.attempts.insert(ev.seq, ev.attempts);
            let wait = ev
                .next_attempt_ms
                .map(|t| t.saturating_sub(now_ms()))
                .filter(|&ms| ms > 0)
                .and_then(|ms| u64::try_from(ms).ok());
            if let Some(ms) = wait {
                self.schedule_retry(ev.seq, Duration::from_millis(ms));
                return;
            }
        }
        self.push_ready(ev);
    }

    fn schedule_retry(&mut self, seq: i64, wait: Duration) {
        let due = Instant::now() + wait;
        if let Some(old) = self.retry_due.insert(seq, due) {
            self.retry_order.remove(&(old, seq));
        }
        self.retry_order.insert((due, seq));
        self.update_failing();
    }

    fn update_failing(&self) {
        self.state.set_failing(self.attempts.len());
    }

    /// Counts and records one failed attempt of an event; returns its attempts so far.
    fn note_failure(&mut self, seq: i64, reason: &'static str, error: &str) -> u32 {
        let attempts = self
            .attempts
            .get(&seq)
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        self.attempts.insert(seq, attempts);
        let wait = event_delay(attempts);
        metrics::counter!("payhook_publish_retries_total", "reason" => reason).increment(1);
        self.store.records.failed(Failure {
            seq,
            attempts,
            error: crate::text::clip(error, 500).to_string(),
            next_attempt_ms: now_ms()
                .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        });
        self.update_failing();
        attempts
    }

    /// One event failed on its own: record it and put it on its backoff.
    fn fail(&mut self, seq: i64, reason: &'static str, error: String) {
        let attempts = self.note_failure(seq, reason, &error);
        let wait = event_delay(attempts);
        tracing::warn!(
            seq,
            attempts,
            retry_in_s = wait.as_secs(),
            reason,
            error = %crate::text::clip(&error, 200),
            "event not published; it waits on its own backoff while the others flow"
        );
        self.schedule_retry(seq, wait);
    }

    /// Nacked events whose verdict is in: each failed on its own.
    fn release_nacked(&mut self, window: &mut Window, older_than: Option<Instant>) {
        while let Some((t, _)) = window.nacked.front() {
            if older_than.is_some_and(|limit| *t > limit) {
                break;
            }
            if let Some((_, ev)) = window.nacked.pop_front() {
                self.fail(ev.seq, "nack", "nacked by the broker".into());
            }
        }
    }

    /// Tops up the queue ahead of the window: from the feed while streaming, from the store
    /// while catching up.
    async fn refill(&mut self, in_flight: &HashMap<i64, PendingEvent>) {
        if self.scanning {
            self.scan(in_flight).await;
            return;
        }
        if self.ready_bytes >= READY_BYTES {
            return;
        }
        let taken = self.store.feed.take();
        for ev in taken.events {
            if ev.seq > self.cursor {
                self.cursor = ev.seq;
                self.admit(ev);
            }
        }
        if taken.rescan {
            self.scanning = true;
            self.cursor = 0;
        } else if taken.overflowed {
            self.scanning = true;
        }
    }

    /// Reads pending rows after the cursor until the queue is full or the store has no more;
    /// then hands over to the feed.
    async fn scan(&mut self, in_flight: &HashMap<i64, PendingEvent>) {
        if self.store_pause_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.store.feed.take_rescan() {
            self.cursor = 0;
        }
        while self.ready_bytes < READY_BYTES {
            let (after, room) = (self.cursor, READY_BYTES - self.ready_bytes);
            let read = self
                .store
                .read(move |c| queries::pending_page(c, after, PAGE_ROWS, room));
            metrics::counter!("payhook_relay_store_reads_total").increment(1);
            let page = match tokio::time::timeout(STORE_TIMEOUT, read).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return self.store_trouble(&e.to_string()),
                Err(_) => return self.store_trouble("no answer within 5 s"),
            };
            self.store_pause_until = None;
            for (seq, row) in page.rows {
                self.cursor = self.cursor.max(seq);
                // `payhook replay` of an event on its backoff resets its attempts: send it now.
                if let (Some(due), Ok(ev)) = (self.retry_due.get(&seq).copied(), &row)
                    && ev.attempts == 0
                {
                    self.retry_due.remove(&seq);
                    self.retry_order.remove(&(due, seq));
                    self.attempts.remove(&seq);
                    self.update_failing();
                }
                if self.known(seq, in_flight) {
                    continue;
                }
                match row {
                    Ok(ev) => self.admit(ev),
                    Err(e) => self.fail(seq, "unreadable", format!("row cannot be read: {e}")),
                }
            }
            if page.complete {
                match self.store.feed.finish_scan() {
                    ScanEnd::Streaming(events) => {
                        for ev in events {
                            if ev.seq > self.cursor {
                                self.cursor = ev.seq;
                                self.admit(ev);
                            }
                        }
                        self.scanning = false;
                        return;
                    }
                    ScanEnd::Continue => {}
                    ScanEnd::Restart => self.cursor = 0,
                }
            }
        }
    }

    fn store_trouble(&mut self, error: &str) {
        tracing::error!(error = %crate::text::clip(error, 300), "cannot read pending events; retrying in 1 s");
        metrics::counter!("payhook_publish_retries_total", "reason" => "store").increment(1);
        self.store_pause_until = Some(Instant::now() + Duration::from_secs(1));
    }

    /// Events whose backoff ended are read again (their row may have changed or gone).
    async fn reload_due(&mut self) {
        let now = Instant::now();
        let due: Vec<i64> = self
            .retry_order
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(RELOADS_PER_TURN)
            .map(|&(_, seq)| seq)
            .collect();
        for seq in due {
            let read = self.store.read(move |c| queries::pending_by_seq(c, seq));
            let row = match tokio::time::timeout(STORE_TIMEOUT, read).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return self.store_trouble(&e.to_string()),
                Err(_) => return self.store_trouble("no answer within 5 s"),
            };
            if let Some(t) = self.retry_due.remove(&seq) {
                self.retry_order.remove(&(t, seq));
            }
            match row {
                // Published meanwhile (a replay of a confirm) or purged: nothing to do.
                None => {
                    self.attempts.remove(&seq);
                    self.update_failing();
                }
                Some(Ok(ev)) => self.push_ready(ev),
                Some(Err(e)) => self.fail(seq, "unreadable", format!("row cannot be read: {e}")),
            }
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retry_order.first().map(|&(t, _)| t)
    }

    /// Publishes from the queue until the window is full. The publishes of one turn are handed
    /// to the connection together (their frames go out in seq order), then each one's confirm
    /// joins the window.
    async fn fill_window(
        &mut self,
        session: &Session,
        window: &mut Window,
    ) -> Result<(), RelayError> {
        let max = self.settings.max_in_flight;
        let mut batch = Vec::new();
        let mut bytes = window.bytes;
        while window.len() + batch.len() < max
            && (bytes < IN_FLIGHT_BYTES || window.len() + batch.len() == 0)
        {
            let Some(ev) = self.pop_ready() else { break };
            bytes += ev.weight();
            batch.push(ev);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let timeout = self.settings.confirm_timeout;
        let sends = futures_util::future::join_all(batch.iter().map(|ev| session.publish(ev)));
        let results = match tokio::time::timeout(timeout, sends).await {
            Ok(r) => r,
            Err(_) => {
                for ev in batch {
                    self.push_ready(ev);
                }
                return Err(RelayError::PublishTimeout(timeout));
            }
        };
        let deadline = Instant::now() + timeout;
        let mut broken = None;
        for (ev, result) in batch.into_iter().zip(results) {
            match result {
                Ok(Ok(confirm)) if broken.is_none() => {
                    let seq = ev.seq;
                    window
                        .confirms
                        .push(Box::pin(confirm.map(move |r| (seq, r))));
                    window.deadlines.push_back((deadline, seq));
                    window.bytes += ev.weight();
                    window.events.insert(seq, ev);
                }
                Ok(Err(reason)) => self.fail(ev.seq, "unencodable", reason),
                Ok(Ok(_)) => self.push_ready(ev),
                Err(e) => {
                    self.push_ready(ev);
                    broken.get_or_insert(RelayError::Publish(e));
                }
            }
        }
        broken.map_or(Ok(()), Err)
    }

    /// One confirm arrived.
    fn settle(
        &mut self,
        seq: i64,
        result: lapin::Result<Confirmation>,
        window: &mut Window,
        confirmed: &mut Vec<i64>,
    ) -> Result<(), RelayError> {
        let Some(ev) = window.take(seq) else {
            return Ok(());
        };
        match result {
            Ok(Confirmation::Ack(None)) => {
                window.nack_streak = 0;
                self.release_nacked(window, None);
                if self.attempts.remove(&seq).is_some() {
                    self.update_failing();
                }
                let counter = self.published.entry(ev.source.clone()).or_insert_with(
                    || metrics::counter!("payhook_published_total", "source" => ev.source.clone()),
                );
                counter.increment(1);
                confirmed.push(seq);
                Ok(())
            }
            Ok(Confirmation::Ack(Some(ret)) | Confirmation::Nack(Some(ret))) => {
                self.fail(
                    seq,
                    "returned",
                    format!(
                        "returned by the broker: {} {}",
                        ret.reply_code, ret.reply_text
                    ),
                );
                Ok(())
            }
            Ok(Confirmation::Nack(None)) => {
                window.nack_streak += 1;
                window.nacked.push_back((Instant::now(), ev));
                if window.nack_streak < NACK_STORM {
                    return Ok(());
                }
                // Every publish of this channel is nacked: its events go out on the next
                // session at once (each attempt is still recorded).
                let n = window.nacked.len();
                while let Some((_, ev)) = window.nacked.pop_front() {
                    self.note_failure(
                        ev.seq,
                        "nack",
                        "nacked by the broker (with every publish of its channel)",
                    );
                    self.push_ready(ev);
                }
                Err(RelayError::NackStorm(n))
            }
            Ok(Confirmation::NotRequested) => {
                self.push_ready(ev);
                Err(RelayError::NoConfirms)
            }
            Err(e) => {
                self.push_ready(ev);
                Err(RelayError::Publish(e))
            }
        }
    }

    /// Publishes over `session` until it fails (`Err`) or `shutdown` fires (`Ok`, after waiting
    /// for the confirms already asked for, each within `confirm_timeout`).
    pub async fn run_session(
        &mut self,
        session: &Session,
        several_nodes: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut window = Window::default();
        let mut confirmed = Vec::new();
        let result = loop {
            self.state.beat.touch();
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if !session.is_connected() {
                break Err(RelayError::Disconnected);
            }
            if several_nodes && session.is_blocked() {
                break Err(RelayError::Blocked);
            }
            self.refill(&window.events).await;
            self.reload_due().await;
            if let Err(e) = self.fill_window(session, &mut window).await {
                break Err(e);
            }
            let room = self.ready_bytes < READY_BYTES;
            let retry_at = self.next_retry();
            let deadline = window.next_deadline();
            let verdict_at = window.nacked.front().map(|(t, _)| *t + NACK_HOLD);
            let step = tokio::select! {
                Some((seq, r)) = window.confirms.next(), if window.len() > 0 => {
                    let mut step = self.settle(seq, r, &mut window, &mut confirmed);
                    // Settle whatever else has arrived, then report the confirms together.
                    while step.is_ok() {
                        match window.confirms.next().now_or_never() {
                            Some(Some((seq, r))) => step = self.settle(seq, r, &mut window, &mut confirmed),
                            _ => break,
                        }
                    }
                    step
                }
                _ = self.store.feed.notify.notified(), if room => Ok(()),
                _ = sleep_until(retry_at), if retry_at.is_some() => Ok(()),
                _ = sleep_until(verdict_at), if verdict_at.is_some() => {
                    self.release_nacked(&mut window, Instant::now().checked_sub(NACK_HOLD));
                    Ok(())
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    Err(RelayError::ConfirmTimeout(self.settings.confirm_timeout))
                }
                _ = tokio::time::sleep(TICK) => Ok(()),
                _ = shutdown.cancelled() => Ok(()),
            };
            if !confirmed.is_empty() {
                self.store.records.published(confirmed.drain(..));
            }
            if let Err(e) = step {
                break Err(e);
            }
        };
        if result.is_ok() {
            self.drain(&mut window, &mut confirmed).await;
        }
        self.release_nacked(&mut window, None);
        // Whatever is still unconfirmed goes back to the queue, to be published again by the
        // next session (or, after a stop, by the next start: it is still pending in the store).
        for (_, ev) in window.events.drain() {
            self.push_ready(ev);
        }
        result
    }

    /// At shutdown: wait for the confirms already asked for, each until its own deadline.
    async fn drain(&mut self, window: &mut Window, confirmed: &mut Vec<i64>) {
        while window.len() > 0 {
            self.state.beat.touch();
            let Some(deadline) = window.next_deadline() else {
                break;
            };
            tokio::select! {
                Some((seq, r)) = window.confirms.next() => {
                    if self.settle(seq, r, window, confirmed).is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        if !confirmed.is_empty() {
            self.store.records.published(confirmed.drain(..));
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
