//! The public intake: `POST /hooks/{source}`. The order of checks is the order of cost: nothing is
//! read before the cheap refusals, nothing is parsed before the size check, nothing is stored
//! before the signature verifies, and nothing is acknowledged before the commit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use ipnet::IpNet;

use super::response::{Body, Rejection, text};
use crate::event::Event;
use crate::providers::{Inbound, Verifier, media_type_essence};
use crate::store::{Inserted, Store};

pub struct Source {
    pub name: String,
    pub verifier: Arc<dyn Verifier>,
}

pub type Sources = HashMap<String, Arc<Source>>;

pub struct IntakeSettings {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub max_backlog: u64,
}

pub struct Intake {
    /// Swapped whole on SIGHUP; a request keeps the `Arc` it started with.
    pub sources: RwLock<Arc<Sources>>,
    pub store: Store,
    pub settings: IntakeSettings,
    pub shutting_down: AtomicBool,
}

/// What one request ended as, for the log line.
struct Outcome {
    status: StatusCode,
    outcome: &'static str,
    event_id: Option<String>,
    dedup_key: Option<String>,
    error: Option<String>,
}

impl Intake {
    pub fn sources(&self) -> Arc<Sources> {
        self.sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace_sources(&self, sources: Sources) {
        *self.sources.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(sources);
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let client_ip = client_ip(req.headers(), peer.ip(), &self.settings.trusted_proxies);
        let source_name = req
            .uri()
            .path()
            .strip_prefix("/hooks/")
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .map(str::to_string);
        let source = source_name
            .as_deref()
            .and_then(|n| self.sources().get(n).cloned());
        let Some(source) = source else {
            let r = Rejection::NotFound;
            tracing::info!(path = %req.uri().path(), status = 404, client_ip = %client_ip, "unknown hook");
            return r.into_response();
        };
        let (response, result) = match self.intake(&source, req).await {
            Ok((response, outcome)) => (response, outcome),
            Err(r) => {
                let o = Outcome {
                    status: r.status(),
                    outcome: r.outcome(),
                    event_id: None,
                    dedup_key: None,
                    error: Some(r.to_string()),
                };
                (r.into_response(), o)
            }
        };
        let elapsed = started.elapsed();
        metrics::counter!("payhook_requests_total", "source" => source.name.clone(), "outcome" => result.outcome)
            .increment(1);
        metrics::histogram!("payhook_request_duration_seconds", "source" => source.name.clone())
            .record(elapsed.as_secs_f64());
        tracing::info!(
            source = %source.name,
            status = result.status.as_u16(),
            outcome = result.outcome,
            event_id = result.event_id.as_deref().unwrap_or("-"),
            dedup_key = result.dedup_key.as_deref().unwrap_or("-"),
            client_ip = %client_ip,
            latency_ms = format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
            error = result.error.as_deref().unwrap_or(""),
            "webhook"
        );
        response
    }

    async fn intake(
        &self,
        source: &Source,
        req: Request<Incoming>,
    ) -> Result<(Response<Body>, Outcome), Rejection> {
        if req.method() != Method::POST {
            return Err(Rejection::MethodNotAllowed);
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Rejection::Unavailable("shutting down".into()));
        }
        if !self.store.writable() {
            return Err(Rejection::Unavailable("the store is not writable".into()));
        }
        if self.store.backlog() >= self.settings.max_backlog {
            return Err(Rejection::Unavailable(format!(
                "backlog of unpublished events is over max_backlog ({})",
                self.settings.max_backlog
            )));
        }
        let max = self.settings.max_body_bytes;
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            match len.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) if n > max => return Err(Rejection::TooLarge(max)),
                Some(_) => {}
                None => return Err(Rejection::Malformed("invalid Content-Length".into())),
            }
        }
        let content_type = req.headers().get(CONTENT_TYPE).map(|v| {
            v.to_str()
                .map(media_type_essence)
                .unwrap_or_else(|_| "invalid".into())
        });
        if !source
            .verifier
            .accepts_content_type(content_type.as_deref())
        {
            return Err(Rejection::UnsupportedMediaType(format!(
                "{} does not send {}",
                source.verifier.provider(),
                content_type
                    .as_deref()
                    .unwrap_or("requests without a Content-Type")
            )));
        }
        let raw_content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (parts, body) = req.into_parts();
        let body = self.read_body(body).await?;

        let normalized = source.verifier.verify(&Inbound {
            headers: &parts.headers,
            body: &body,
        })?;
        let event = Event::build(
            &source.name,
            source.verifier.provider(),
            normalized,
            time::OffsetDateTime::now_utc(),
            raw_content_type,
            body,
        );
        let event_id = event.id.to_string();
        let dedup_key = event.dedup_key.clone();
        let content_hash = event.content_hash;
        let inserted = self.store.insert(event).await?;
        if let Inserted::Conflict { stored } = inserted {
            tracing::warn!(
                source = %source.name,
                event_id = %event_id,
                dedup_key = %crate::text::Quoted(&dedup_key),
                stored_content_sha256 = %hex::encode(stored),
                received_content_sha256 = %hex::encode(content_hash),
                "conflict: same dedup key, different signed content; not published"
            );
        }
        let outcome = Outcome {
            status: StatusCode::OK,
            outcome: match inserted {
                Inserted::New => "accepted",
                Inserted::Duplicate => "duplicate",
                Inserted::Conflict { .. } => "conflict",
            },
            event_id: Some(event_id),
            dedup_key: Some(dedup_key),
            error: None,
        };
        let ack = source.verifier.ack_body();
        Ok((
            text(StatusCode::OK, "text/plain; charset=utf-8", ack),
            outcome,
        ))
    }

    /// Reads the body within the size limit and what is left of the request timeout.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Rejection> {
        let max = self.settings.max_body_bytes;
        let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.settings.request_timeout, limited.collect()).await {
            Err(_) => Err(Rejection::Timeout(self.settings.request_timeout)),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Err(Rejection::TooLarge(max))
                } else {
                    Err(Rejection::Malformed(format!("cannot read body: {e}")))
                }
            }
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy. Left-most entries are whatever the
/// client chose to send and are never believed.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(|s| s.parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    for ip in entries.into_iter().rev() {
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", xff.parse().unwrap());
        m
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(&h("198.51.100.1"), local, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&h("198.51.100.1"), remote, &trusted), remote);
        // A spoofed left-most entry is ignored: the proxy appended the real one.
        assert_eq!(
            client_ip(&h("1.2.3.4, 198.51.100.1"), local, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&h("garbage"), local, &trusted), local);
        assert_eq!(client_ip(&HeaderMap::new(), local, &trusted), local);
    }
}
