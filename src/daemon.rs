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
use crate::store::{Store, now_ms};

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
    let (store, writer) = Store::open(&config.store.path, config.store.synchronous)
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
    let relay = tokio::spawn(crate::relay::run(
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
    let drain = timeout + Duration::from_secs(5);
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
    let retention = tokio::spawn(retention_loop(
        store.clone(),
        config.store.retention.0,
        http_stop.clone(),
    ));

    tracing::info!(%public_addr, %admin_addr, sources = intake.sources().len(), "payhook ready");
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = tokio::spawn(watchdog_loop(
        store.clone(),
        relay_state.clone(),
        config.amqp.confirm_timeout.0,
        http_stop.clone(),
    ));

    wait_for_stop(&shutdown, &intake, &config.path).await;

    tracing::info!("shutting down: no new connections, finishing requests in flight");
    notify(&[sd_notify::NotifyState::Stopping]);
    intake.shutting_down.store(true, Ordering::Relaxed);
    http_stop.cancel();
    let _ = public.await;
    let _ = admin_task.await;
    let _ = retention.await;
    watchdog.abort();

    // The relay finishes the batch it has handed to the broker; its confirms are bounded by
    // confirm_timeout, and we bound the whole wait once more in case the broker is wedged.
    relay_stop.cancel();
    let bound = config.amqp.confirm_timeout.0 + Duration::from_secs(5);
    if tokio::time::timeout(bound, relay).await.is_err() {
        tracing::warn!(
            "relay did not stop within {bound:?}; unconfirmed events stay pending and go out after restart"
        );
    }
    drop(intake);
    drop(store);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop(shutdown: &CancellationToken, intake: &Intake, config_path: &Path) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = recv(&mut term) => return,
            _ = recv(&mut int) => return,
            _ = recv(&mut hup) => reload(intake, config_path),
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

async fn retention_loop(store: Store, retention: Duration, stop: CancellationToken) {
    // A quarter of the retention, between 1 s and 10 min: short retentions (tests, small disks)
    // are honoured closely, long ones cost one cheap query every ten minutes.
    let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let cutoff = now_ms() - retention.as_millis() as i64;
        let mut total = 0;
        // Chunked: intake commits interleave between chunks.
        loop {
            match store.purge_published_before(cutoff).await {
                Ok(n) if n > 0 => total += n,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(purged = total, "retention: purged published events");
        }
    }
}

/// Pings systemd's watchdog only while the store writer and the relay show signs of life, so a
/// wedged disk or a dead relay gets the service restarted.
async fn watchdog_loop(
    store: Store,
    relay: Arc<RelayState>,
    confirm_timeout: Duration,
    stop: CancellationToken,
) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    let stale = Duration::from_micros(usec)
        .max(Duration::from_secs(5))
        .as_millis() as i64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let now = now_ms();
        let writer_ok = now - store.state.writer_heartbeat_ms.load(Ordering::Relaxed) < stale;
        // The relay beats between batches; one batch may take confirm_timeout, a connect 15 s.
        let relay_stale = stale.max((confirm_timeout + Duration::from_secs(20)).as_millis() as i64);
        let relay_ok = now - relay.heartbeat_ms.load(Ordering::Relaxed) < relay_stale;
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
