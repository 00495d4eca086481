//! The admin listener: liveness, readiness and metrics. Never exposed through the proxy.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;

use super::conn::Ctx;
use super::response::{Body, json, json_error, text};
use crate::relay::RelayState;
use crate::store::{Store, now_ms, queries};

pub struct Admin {
    pub store: Store,
    pub relay: Arc<RelayState>,
    pub max_backlog: u64,
    pub metrics: PrometheusHandle,
}

impl Admin {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
        // Admin requests carry no body worth waiting for.
        ctx.received();
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET",
            );
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            "/readyz" => self.readyz().await,
            "/metrics" => {
                self.refresh_gauges().await;
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    async fn oldest_age_seconds(&self) -> Option<f64> {
        let oldest = self
            .store
            .read(queries::oldest_pending_ms)
            .await
            .ok()
            .flatten()?;
        Some(((now_ms() - oldest).max(0) as f64) / 1000.0)
    }

    async fn refresh_gauges(&self) {
        metrics::counter!("payhook_log_lines_dropped_total")
            .absolute(crate::logging::dropped_lines());
        metrics::gauge!("payhook_backlog_events").set(self.store.backlog() as f64);
        metrics::gauge!("payhook_backlog_oldest_age_seconds")
            .set(self.oldest_age_seconds().await.unwrap_or(0.0));
        metrics::gauge!("payhook_amqp_connected").set(if self.relay.connected() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("payhook_publish_failing_events").set(self.relay.failing() as f64);
    }

    async fn readyz(&self) -> Response<Body> {
        let writable = self.store.writable();
        let backlog = self.store.backlog();
        let under = backlog < self.max_backlog;
        let ready = writable && under;
        let connected = self.relay.connected();
        let body = serde_json::json!({
            "ready": ready,
            "store": if writable { "writable" } else { "failing" },
            "broker": if connected { "connected" } else { "disconnected" },
            "broker_node": if connected { self.relay.node() } else { None },
            "backlog": backlog,
            "max_backlog": self.max_backlog,
            "oldest_unpublished_age_seconds": self.oldest_age_seconds().await,
            "failing_events": self.relay.failing(),
        });
        json(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &body,
        )
    }
}
