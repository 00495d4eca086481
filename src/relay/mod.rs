//! The outbox relay: the only path from the store to RabbitMQ. Intake never waits on it: a
//! broker outage only makes the backlog grow.
//!
//! - [`session`]: one connection to one broker node, with confirms; every call bounded.
//! - [`outbox`]: what to publish next, the sliding window, each failing event's own backoff.
//! - this module: the node list (fail over to the next node), the session backoff, the state
//!   `/readyz` and the watchdog read, and a supervisor that restarts the relay if it ever dies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::Beat;
use crate::store::Store;

pub mod backoff;
pub mod outbox;
pub mod session;

pub use session::{AmqpSettings, RelayError, Session};

use backoff::Backoff;
use outbox::Outbox;

/// What the rest of the daemon may know about the relay.
#[derive(Default)]
pub struct RelayState {
    connected: AtomicBool,
    /// `host:port` of the node in use.
    node: Mutex<Option<String>>,
    /// Events whose last publish attempt failed.
    failing: AtomicU64,
    /// The relay's last sign of life (monotonic), for readiness and the systemd watchdog.
    pub beat: Beat,
}

impl RelayState {
    /// Connected right now: the flag, and a relay that is alive to keep it true.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.beat.age() < Duration::from_secs(5)
    }

    pub fn node(&self) -> Option<String> {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn failing(&self) -> u64 {
        self.failing.load(Ordering::Relaxed)
    }

    fn set_connected(&self, node: Option<&str>) {
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = node.map(str::to_string);
        self.connected.store(node.is_some(), Ordering::Relaxed);
        metrics::gauge!("payhook_amqp_connected").set(if node.is_some() { 1.0 } else { 0.0 });
    }

    pub(crate) fn set_failing(&self, n: usize) {
        let n = n as u64;
        self.failing.store(n, Ordering::Relaxed);
        metrics::gauge!("payhook_publish_failing_events").set(n as f64);
    }
}

/// Runs the relay until `shutdown`, restarting it if it ever panics or returns early: a relay
/// that stops while the process runs is never silent.
pub async fn supervise(
    store: Store,
    settings: AmqpSettings,
    state: Arc<RelayState>,
    shutdown: CancellationToken,
) {
    let st = state.clone();
    let stop = shutdown.clone();
    supervise_with(&state, &shutdown, move || {
        run(store.clone(), settings.clone(), st.clone(), stop.clone())
    })
    .await
}

/// The supervision itself: `make` builds a fresh relay each time.
async fn supervise_with<F, Fut>(state: &RelayState, shutdown: &CancellationToken, make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let outcome = tokio::spawn(make()).await;
        state.set_connected(None);
        if shutdown.is_cancelled() {
            return;
        }
        match outcome {
            Ok(()) => tracing::error!("the relay stopped unexpectedly; restarting it"),
            Err(e) => tracing::error!(error = %e, "the relay failed; restarting it"),
        }
        metrics::counter!("payhook_relay_restarts_total").increment(1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A session that lived this long counts as a success: the backoff starts over.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// Connects to the nodes in turn and publishes until `shutdown`. On a failed session it moves
/// to the next node at once; after a whole round of failures (connects that failed, sessions
/// that ended within [`HEALTHY_SESSION`]) it backs off (0.2 s doubling to 10 s).
pub async fn run(
    store: Store,
    settings: AmqpSettings,
    state: Arc<RelayState>,
    shutdown: CancellationToken,
) {
    let nodes = settings.urls.len().max(1);
    let mut outbox = Outbox::new(store, settings.clone(), state.clone());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut node = 0usize;
    let mut failed_in_round = 0usize;
    state.set_connected(None);
    while !shutdown.is_cancelled() {
        state.beat.touch();
        let Some(url) = settings.urls.get(node % nodes) else {
            tracing::error!("no broker URL configured");
            return;
        };
        let opened = tokio::select! {
            s = beating(&state, Session::open(url, &settings)) => s,
            _ = shutdown.cancelled() => break,
        };
        let session = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the broker; events wait in the store");
                metrics::counter!("payhook_publish_retries_total", "reason" => e.reason())
                    .increment(1);
                node = (node + 1) % nodes;
                failed_in_round += 1;
                if failed_in_round >= nodes {
                    failed_in_round = 0;
                    pause(&state, &shutdown, backoff.take()).await;
                }
                continue;
            }
        };
        tracing::info!(node = %session.node, exchange = %settings.exchange, queue = %settings.queue, "connected to the broker");
        state.set_connected(Some(&session.node));
        let started = Instant::now();
        let result = outbox.run_session(&session, nodes > 1, &shutdown).await;
        state.set_connected(None);
        let node_name = session.node.clone();
        beating(&state, session.close()).await;
        match result {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = %node_name, error = %e, "publishing failed; moving on to the next broker node");
                metrics::counter!("payhook_publish_retries_total", "reason" => e.reason())
                    .increment(1);
                node = (node + 1) % nodes;
                if started.elapsed() >= HEALTHY_SESSION {
                    // It worked for a while: the next node gets its chance at once.
                    backoff.reset();
                    failed_in_round = 0;
                } else {
                    // Short-lived sessions count as failures: after a whole round of them,
                    // back off rather than churn through the nodes.
                    failed_in_round += 1;
                    if failed_in_round >= nodes {
                        failed_in_round = 0;
                        pause(&state, &shutdown, backoff.take()).await;
                    }
                }
            }
        }
    }
    state.set_connected(None);
}

/// Runs `fut` while beating, so a long connect or close is not mistaken for a hang.
async fn beating<F: std::future::Future>(state: &RelayState, fut: F) -> F::Output {
    tokio::pin!(fut);
    loop {
        state.beat.touch();
        tokio::select! {
            out = &mut fut => return out,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Sleeps (cancellably) while still beating.
async fn pause(state: &RelayState, shutdown: &CancellationToken, d: Duration) {
    let _ = beating(state, async {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.cancelled() => {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_relay_that_panics_or_ends_is_restarted_and_not_shown_connected() {
        let state = Arc::new(RelayState::default());
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (st, r, stop) = (state.clone(), runs.clone(), shutdown.clone());
        let sup = tokio::spawn(async move {
            supervise_with(&st.clone(), &stop.clone(), move || {
                let (st, r, stop) = (st.clone(), r.clone(), stop.clone());
                async move {
                    st.set_connected(Some("node:5672"));
                    match r.fetch_add(1, Ordering::SeqCst) {
                        0 => panic!("a bug in the relay"),
                        1 => {} // returns early
                        _ => stop.cancelled().await,
                    }
                }
            })
            .await
        });
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "restarted after a panic and an early end"
        );
        shutdown.cancel();
        sup.await.unwrap();
        assert!(
            !state.connected(),
            "a stopped relay never claims a connection"
        );
        assert_eq!(state.node(), None);
    }
}
