//! `payhook serve`: wires the store, the relay and the two listeners together, and owns the
//! process lifecycle (systemd notifications, signals, orderly shutdown).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::admin::Admin;
use crate::http::hooks::{Intake, IntakeSettings, Source, Sources};
use crate::relay::{AmqpSettings, RelayState};
use crate::store::{Store, StoreSettings, Workers};

/// Loads every source's keys and secrets. Any failure is a configuration error.
pub fn build_sources(config: &Config) -> Result<Sources, String> {
    let mut sources = HashMap::new();
    for s in &config.sources {
        let verifier = s
            .provider
            .build(&config.base_dir)
            .map_err(|e| format!("source {:?}: {e}", s.name))?;
        sources.insert(
            s.name.clone(),
            Arc::new(Source::new(s.name.clone(), verifier)),
        );
    }
    Ok(sources)
}

/// The process-wide Prometheus recorder (the `metrics` facade allows one).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let batch = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("payhook_store_batch_events".into()),
                    &batch,
                )
                .and_then(|b| b.set_buckets(&latency));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => {
                    describe_metrics();
                    crate::http::metrics::describe();
                    // Histogram samples are drained by upkeep, not only by a scrape: memory stays
                    // bounded when nobody scrapes /metrics (SPEC §6.8).
                    crate::http::metrics::spawn_upkeep(
                        h.clone(),
                        crate::http::metrics::UPKEEP_PERIOD,
                    );
                    h
                }
                // Another recorder is installed (only in tests that run two daemons in one
                // process): keep a private one so /metrics still renders.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// HELP lines for /metrics (SPEC §7).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "payhook_requests_total",
        "Webhook requests by source and outcome"
    );
    describe_histogram!(
        "payhook_request_duration_seconds",
        Unit::Seconds,
        "Time from request to response, by source"
    );
    describe_gauge!(
        "payhook_backlog_events",
        "Stored events not yet confirmed by the broker"
    );
    describe_gauge!(
        "payhook_backlog_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest unpublished event"
    );
    describe_counter!(
        "payhook_published_total",
        "Events confirmed by the broker, by source"
    );
    describe_counter!(
        "payhook_publish_retries_total",
        "Publish failures that lead to a retry, by reason"
    );
    describe_gauge!(
        "payhook_amqp_connected",
        "1 while the relay holds a broker connection"
    );
    describe_gauge!(
        "payhook_publish_failing_events",
        "Events whose last publish attempt failed (each on its own backoff)"
    );
    describe_counter!(
        "payhook_relay_store_reads_total",
        "Pages of pending events the relay read from the store (at start, after an overflow of \
         the in-memory feed, after another process changed the store)"
    );
    describe_counter!(
        "payhook_relay_restarts_total",
        "Times the relay task died and was restarted"
    );
    describe_histogram!(
        "payhook_store_commit_seconds",
        Unit::Seconds,
        "SQLite group-commit duration"
    );
    describe_histogram!(
        "payhook_store_batch_events",
        "Commands per SQLite group commit"
    );
}

pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let public = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} ([server] listen)",
                    config.server.listen
                )
            })?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} ([admin] listen)", config.admin.listen)
            })?;
        Ok(Listeners { public, admin })
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(false, state);
}

/// Runs the daemon until `shutdown` is cancelled (or SIGTERM/SIGINT arrive), then drains.
pub async fn run(
    config: Config,
    sources: Sources,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = metrics_handle();
    let amqp_urls = config.amqp_urls()?;
    let mut store_settings = StoreSettings::new(config.store.synchronous);
    store_settings.retention = Some(config.store.retention.0);
    let (store, workers) = Store::open(&config.store.path, store_settings)
        .with_context(|| format!("cannot open the store {}", config.store.path.display()))?;
    tracing::info!(
        path = %config.store.path.display(),
        backlog = store.backlog(),
        "store open"
    );

    let relay_state = Arc::new(RelayState::default());
    let relay_stop = CancellationToken::new();
    let settings = AmqpSettings {
        urls: amqp_urls.iter().map(|u| u.expose().to_string()).collect(),
        exchange: config.amqp.exchange.clone(),
        queue: config.amqp.queue.clone(),
        queue_type: config.amqp.queue_type,
        confirm_timeout: config.amqp.confirm_timeout.0,
        max_in_flight: config.amqp.max_in_flight as usize,
    };
    let relay = tokio::spawn(crate::relay::supervise(
        store.clone(),
        settings,
        relay_state.clone(),
        relay_stop.clone(),
    ));

    let intake = Arc::new(Intake {
        sources: std::sync::RwLock::new(Arc::new(sources)),
        store: store.clone(),
        settings: IntakeSettings {
            max_body_bytes: config.server.max_body_bytes,
            request_timeout: config.server.request_timeout.0,
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_backlog: config.store.max_backlog,
            max_event_age: config.max_event_age(),
        },
        shutting_down: AtomicBool::new(false),
    });
    let admin = Arc::new(Admin {
        store: store.clone(),
        relay: relay_state.clone(),
        max_backlog: config.store.max_backlog,
        metrics,
    });

    let timeout = config.server.request_timeout.0;
    // SPEC §6.6: the process exits within confirm_timeout + 5 s of SIGTERM, whatever the broker
    // or the clients do. Requests in flight get what is left of that (at most their timeout).
    let stop_bound = config.amqp.confirm_timeout.0 + Duration::from_secs(4);
    let drain = timeout.min(stop_bound);
    let http_stop = CancellationToken::new();
    let public_addr = listeners.public.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let public = {
        let intake = intake.clone();
        tokio::spawn(crate::http::serve(
            listeners.public,
            crate::http::Listener::Public,
            http_stop.clone(),
            timeout,
            drain,
            move |req, ctx| intake.clone().handle(req, ctx),
        ))
    };
    let admin_task = tokio::spawn(crate::http::serve(
        listeners.admin,
        crate::http::Listener::Admin,
        http_stop.clone(),
        timeout,
        Duration::from_secs(1),
        move |req, ctx| admin.clone().handle(req, ctx),
    ));

    tracing::info!(%public_addr, %admin_addr, sources = intake.sources().len(), "payhook ready");
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = tokio::spawn(watchdog_loop(
        store.clone(),
        relay_state.clone(),
        http_stop.clone(),
    ));

    let writer_died = wait_for_stop(&shutdown, &intake, &config.path, &workers).await;

    tracing::info!("shutting down: no new connections, finishing requests in flight");
    notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = tokio::time::Instant::now() + stop_bound;
    intake.shutting_down.store(true, Ordering::Relaxed);
    http_stop.cancel();
    // The relay stops publishing and waits for the confirms it asked for (each bounded by
    // confirm_timeout), while the listeners drain; both are bounded once more as a whole.
    relay_stop.cancel();
    let stopping = async {
        let _ = public.await;
        let _ = admin_task.await;
        let _ = relay.await;
    };
    if tokio::time::timeout_at(deadline, stopping).await.is_err() {
        tracing::warn!(
            "not everything stopped within {stop_bound:?}; unconfirmed events stay pending and go out after the restart"
        );
    }
    watchdog.abort();
    drop(intake);
    drop(store);
    // The writer commits what it holds and checkpoints; a wedged disk must not hold the exit.
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1));
    let joined = tokio::task::spawn_blocking(move || {
        let _ = workers.writer.join();
        let _ = workers.checkpointer.join();
    });
    if tokio::time::timeout(left, joined).await.is_err() {
        tracing::warn!("the store writer did not finish in time");
    }
    if writer_died {
        anyhow::bail!("the store writer stopped; exiting so that the service is restarted");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM/SIGINT (or `shutdown`), reloading on SIGHUP. Returns true when it stopped
/// because the store writer thread died: the daemon then exits non-zero so systemd restarts it.
async fn wait_for_stop(
    shutdown: &CancellationToken,
    intake: &Intake,
    config_path: &Path,
    workers: &Workers,
) -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = recv(&mut term) => return false,
            _ = recv(&mut int) => return false,
            _ = recv(&mut hup) => reload(intake, config_path),
            _ = check.tick() => {
                if workers.writer.is_finished() {
                    tracing::error!("the store writer thread stopped");
                    return true;
                }
            }
        }
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGHUP: sources and keys are reloaded; everything else needs a restart. A config that does
/// not load is logged and the running one kept.
fn reload(intake: &Intake, path: &Path) {
    notify(&[sd_notify::NotifyState::Reloading]);
    let result = Config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| build_sources(&c));
    match result {
        Ok(sources) => {
            let names: Vec<_> = sources.keys().cloned().collect();
            intake.replace_sources(sources);
            tracing::info!(sources = ?names, "configuration reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload failed; keeping the running configuration"),
    }
    notify(&[sd_notify::NotifyState::Ready]);
}

/// Pings systemd's watchdog only while the store writer and the relay show signs of life, so a
/// wedged disk or a dead relay gets the service restarted. Both beat on the monotonic clock at
/// least every second, whatever they are waiting for.
async fn watchdog_loop(store: Store, relay: Arc<RelayState>, stop: CancellationToken) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    let stale = Duration::from_micros(usec).max(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let writer_ok = store.state.writer_beat.age() < stale;
        let relay_ok = relay.beat.age() < stale;
        if writer_ok && relay_ok {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                writer_ok,
                relay_ok,
                "a worker stopped responding; withholding the watchdog ping"
            );
        }
    }
}
