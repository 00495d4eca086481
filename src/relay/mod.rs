//! The outbox relay: reads unpublished events from the store in receive order and publishes them
//! with broker confirms. It is the only path from the store to RabbitMQ, and intake never waits on
//! it: a broker outage only makes the backlog grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, now_ms};

pub mod amqp;

pub use amqp::{AmqpSettings, RelayError, Session};

#[derive(Default)]
pub struct RelayState {
    pub connected: AtomicBool,
    /// Unix ms of the relay loop's last sign of life, for the systemd watchdog.
    pub heartbeat_ms: AtomicI64,
}

/// Capped exponential backoff: retry forever, but never hammer a broker that is down.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Backoff { next: Self::MIN }
    }
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
    fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

fn set_connected(state: &RelayState, up: bool) {
    state.connected.store(up, Ordering::Relaxed);
    metrics::gauge!("payhook_amqp_connected").set(if up { 1.0 } else { 0.0 });
}

/// Runs until `shutdown` fires. A batch already handed to the broker is always waited for (its
/// confirms are bounded by `confirm_timeout`), so a clean stop leaves nothing half-published.
pub async fn run(
    store: Store,
    settings: AmqpSettings,
    state: Arc<RelayState>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    set_connected(&state, false);
    while !shutdown.is_cancelled() {
        state.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        let session = tokio::select! {
            s = Session::open(&settings) => s,
            _ = shutdown.cancelled() => break,
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the broker; events wait in the store");
                metrics::counter!("payhook_publish_retries_total", "reason" => e.reason())
                    .increment(1);
                pause(&state, &shutdown, backoff.take()).await;
                continue;
            }
        };
        tracing::info!(exchange = %settings.exchange, queue = %settings.queue, "connected to the broker");
        set_connected(&state, true);
        match publish_loop(&store, &session, &settings, &state, &shutdown, &mut backoff).await {
            Ok(()) => {
                session.close().await;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "publishing failed; reconnecting");
                metrics::counter!("payhook_publish_retries_total", "reason" => e.reason())
                    .increment(1);
                set_connected(&state, false);
                session.close().await;
                pause(&state, &shutdown, backoff.take()).await;
            }
        }
    }
    set_connected(&state, false);
}

/// Sleeps (cancellably) while still beating, so a long backoff is not mistaken for a hang.
async fn pause(state: &RelayState, shutdown: &CancellationToken, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        state.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        let step = (until - tokio::time::Instant::now()).min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Returns `Ok` on shutdown, `Err` when the session must be replaced.
async fn publish_loop(
    store: &Store,
    session: &Session,
    settings: &AmqpSettings,
    state: &RelayState,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
    let limit = settings.max_in_flight;
    loop {
        state.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let batch = match store
            .read(move |c| crate::store::queries::pending(c, limit))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending events");
                pause(state, shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if !session.is_connected() {
                return Err(RelayError::Disconnected);
            }
            tokio::select! {
                _ = store.new_events.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            continue;
        }
        let result = session.publish_batch(&batch).await;
        if !result.confirmed.is_empty() {
            let seqs: Vec<i64> = result.confirmed.iter().map(|&i| batch[i].seq).collect();
            for &i in &result.confirmed {
                metrics::counter!("payhook_published_total", "source" => batch[i].source.clone())
                    .increment(1);
            }
            // Waiting for the mark keeps the next read from seeing these rows as pending again.
            if let Err(e) = store.mark_published(seqs).await {
                tracing::error!(error = %e, "cannot mark events published; they will be sent again");
                pause(state, shutdown, Duration::from_secs(1)).await;
            }
        }
        match result.error {
            None => backoff.reset(),
            Some(e) => return Err(e),
        }
    }
}
