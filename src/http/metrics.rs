//! Metric handles resolved once (per source, per listener) instead of looking labels up on every
//! request, and the exporter's upkeep, which keeps its memory bounded whether or not anyone
//! scrapes `/metrics` (SPEC §6.8).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use super::response::Outcome;

/// How often histogram samples are drained into their buckets without a scrape. Between two
/// runs the samples of one period are held: at 10,000 requests a second, under a megabyte.
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// One source's counters and latency histogram. Each handle is resolved on first use: sources
/// are built before the daemon installs its recorder (a handle taken earlier would record
/// nowhere), and `/metrics` shows an outcome once it has happened, as before.
pub struct SourceMetrics {
    source: Box<str>,
    requests: [OnceLock<Counter>; Outcome::COUNTED.len()],
    duration: OnceLock<Histogram>,
}

impl SourceMetrics {
    pub fn new(source: &str) -> SourceMetrics {
        SourceMetrics {
            source: source.into(),
            requests: Default::default(),
            duration: OnceLock::new(),
        }
    }

    /// Counts one request under `outcome` and records how long it took.
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        if let Some(slot) = outcome.index().and_then(|i| self.requests.get(i)) {
            slot.get_or_init(|| {
                metrics::counter!(
                    "payhook_requests_total",
                    "source" => self.source.to_string(),
                    "outcome" => outcome.label()
                )
            })
            .increment(1);
        }
        self.duration
            .get_or_init(|| {
                metrics::histogram!(
                    "payhook_request_duration_seconds",
                    "source" => self.source.to_string()
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

/// A listener's connection gauge and refusal counter (SPEC §7).
pub struct ListenerMetrics {
    pub open: metrics::Gauge,
    pub refused: Counter,
}

impl ListenerMetrics {
    pub fn new(listener: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            open: metrics::gauge!("payhook_connections_open", "listener" => listener),
            refused: metrics::counter!("payhook_connections_refused_total", "listener" => listener),
        }
    }
}

/// Runs the exporter's upkeep every `period` on a thread of its own for the life of the process,
/// so histogram samples are folded into buckets even when `/metrics` is never scraped.
pub fn spawn_upkeep(handle: PrometheusHandle, period: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the metrics upkeep thread");
    }
}

/// HELP lines for the metrics this module owns.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!("payhook_connections_open", "Open connections, by listener");
    describe_counter!(
        "payhook_connections_refused_total",
        "Connections closed or refused because the listener's connection limit was full"
    );
    describe_counter!(
        "payhook_log_lines_dropped_total",
        "Log lines dropped because stderr did not keep up"
    );
}
