//! The public intake: `POST /hooks/{source}`. The order of checks is the order of cost: nothing is
//! read before the cheap refusals, nothing is parsed before the size check, nothing is stored
//! before the signature verifies, and nothing is acknowledged before the commit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use ipnet::IpNet;
use tokio::time::Instant;
use uuid::Uuid;

use super::conn::Ctx;
use super::metrics::SourceMetrics;
use super::response::{Body, LogText, Outcome, Rejection, text};
use crate::event::Event;
use crate::providers::{Inbound, Verifier};
use crate::store::{Inserted, Store};
use crate::text::Quoted;

pub struct Source {
    pub name: String,
    pub verifier: Arc<dyn Verifier>,
    /// Resolved once here rather than by label lookup on every request.
    pub metrics: SourceMetrics,
}

impl Source {
    pub fn new(name: String, verifier: Arc<dyn Verifier>) -> Source {
        Source {
            metrics: SourceMetrics::new(&name),
            name,
            verifier,
        }
    }
}

pub type Sources = HashMap<String, Arc<Source>>;

pub struct IntakeSettings {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub max_backlog: u64,
    /// Signed event times older than this are refused (`[server] max_event_age`); `None`: off.
    pub max_event_age: Option<Duration>,
}

pub struct Intake {
    /// Swapped whole on SIGHUP; a request keeps the `Arc` it started with.
    pub sources: RwLock<Arc<Sources>>,
    pub store: Store,
    pub settings: IntakeSettings,
    pub shutting_down: AtomicBool,
}

/// What one request ended as, for the log line.
struct Done {
    status: StatusCode,
    outcome: Outcome,
    event_id: Option<Uuid>,
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

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
        let client_ip = client_ip(req.headers(), ctx.peer.ip(), &self.settings.trusted_proxies);
        let source = req
            .uri()
            .path()
            .strip_prefix("/hooks/")
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .and_then(|n| self.sources().get(n).cloned());
        let Some(source) = source else {
            ctx.received();
            tracing::info!(
                path = %Quoted(req.uri().path()),
                status = 404,
                client_ip = %client_ip,
                "unknown hook"
            );
            return Rejection::NotFound.into_response();
        };
        let (response, done) = match self.intake(&source, req, &ctx).await {
            Ok(ok) => ok,
            Err(r) => {
                let done = Done {
                    status: r.status(),
                    outcome: r.outcome(),
                    event_id: None,
                    dedup_key: None,
                    error: Some(r.message()),
                };
                (r.into_response(), done)
            }
        };
        let elapsed = ctx.started.elapsed();
        source.metrics.record(done.outcome, elapsed);
        tracing::info!(
            source = %source.name,
            status = done.status.as_u16(),
            outcome = done.outcome.label(),
            event_id = %OrDash(done.event_id),
            dedup_key = %LogText(done.dedup_key.as_deref().unwrap_or("-")),
            client_ip = %client_ip,
            latency_ms = format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
            error = done.error.as_deref().unwrap_or(""),
            "webhook"
        );
        response
    }

    async fn intake(
        &self,
        source: &Source,
        req: Request<Incoming>,
        ctx: &Ctx,
    ) -> Result<(Response<Body>, Done), Rejection> {
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
        if ctx.both_lengths() {
            return Err(Rejection::Malformed(
                "both Content-Length and Transfer-Encoding".into(),
            ));
        }
        check_framing(req.headers())?;
        let max = self.settings.max_body_bytes;
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            match len.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(n) if n > max => return Err(Rejection::TooLarge(max)),
                Some(_) => {}
                None => return Err(Rejection::Malformed("invalid Content-Length".into())),
            }
        }
        let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().ok());
        let essence = content_type.map(|v| v.map(media_type));
        let essence = match &essence {
            None => None,
            Some(Some(e)) => Some(e.as_ref()),
            Some(None) => Some("invalid"),
        };
        if !source.verifier.accepts_content_type(essence) {
            return Err(Rejection::UnsupportedMediaType(format!(
                "{} does not send {}",
                source.verifier.provider(),
                essence.map_or("requests without a Content-Type".into(), |e| Quoted(e)
                    .to_string())
            )));
        }
        let raw_content_type = content_type.flatten().map(str::to_string);
        let (parts, body) = req.into_parts();
        let body = self.read_body(body, ctx.deadline).await?;
        ctx.received();

        let normalized = source.verifier.verify(&Inbound {
            headers: &parts.headers,
            body: &body,
        })?;
        let received_at = time::OffsetDateTime::now_utc();
        if let (Some(max_age), Some(signed)) = (self.settings.max_event_age, normalized.signed_time)
        {
            if outside_window(signed, received_at, max_age) {
                return Err(Rejection::Unauthorized("outside the replay window".into()));
            }
        }
        let event = Event::build(
            &source.name,
            source.verifier.provider(),
            normalized,
            received_at,
            raw_content_type,
            body,
        );
        let event_id = event.id;
        let dedup_key = event.dedup_key.clone();
        let content_hash = event.content_hash;
        // Bounded by what is left of the request's time. Past it the event may still commit;
        // the provider's retry is then a duplicate.
        let inserted = match tokio::time::timeout_at(ctx.deadline, self.store.insert(event)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Rejection::Unavailable(
                    "the store did not commit within request_timeout".into(),
                ));
            }
        };
        if let Inserted::Conflict { stored } = inserted {
            tracing::warn!(
                source = %source.name,
                event_id = %event_id,
                dedup_key = %Quoted(&dedup_key),
                stored_content_sha256 = %hex::encode(stored),
                received_content_sha256 = %hex::encode(content_hash),
                "conflict: same dedup key, different signed content; not published"
            );
        }
        let done = Done {
            status: StatusCode::OK,
            outcome: match inserted {
                Inserted::New => Outcome::Accepted,
                Inserted::Duplicate => Outcome::Duplicate,
                Inserted::Conflict { .. } => Outcome::Conflict,
            },
            event_id: Some(event_id),
            dedup_key: Some(dedup_key),
            error: None,
        };
        let ack = source.verifier.ack_body();
        Ok((text(StatusCode::OK, "text/plain; charset=utf-8", ack), done))
    }

    /// Reads the body within the size limit and the request's deadline.
    async fn read_body(&self, body: Incoming, deadline: Instant) -> Result<Bytes, Rejection> {
        let max = self.settings.max_body_bytes;
        let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        match tokio::time::timeout_at(deadline, limited.collect()).await {
            Err(_) => Err(Rejection::Timeout(self.settings.request_timeout)),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Err(Rejection::TooLarge(max))
                } else {
                    Err(Rejection::Malformed(format!(
                        "cannot read body: {}",
                        LogText(&e.to_string())
                    )))
                }
            }
        }
    }
}

/// A log field that may be absent: the value, or `-`.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Whether a signed event time lies before `now - max_age` (SPEC §6.3's replay window).
fn outside_window(
    signed: time::OffsetDateTime,
    now: time::OffsetDateTime,
    max_age: Duration,
) -> bool {
    let cutoff = time::Duration::try_from(max_age)
        .ok()
        .and_then(|age| now.checked_sub(age));
    cutoff.is_some_and(|cutoff| signed < cutoff)
}

/// Refuses what HTTP lets two parsers read differently (request smuggling through a proxy): a
/// transfer coding other than plain `chunked`, and repeated `Content-Length` or `Content-Type`
/// headers (both `Content-Length` and `Transfer-Encoding`: see [`Ctx::both_lengths`]). hyper
/// accepts some of these; nginx refuses them; payhook refuses them too.
fn check_framing(headers: &HeaderMap) -> Result<(), Rejection> {
    let count = |name| headers.get_all(name).iter().count();
    if count(TRANSFER_ENCODING) > 1
        || headers
            .get(TRANSFER_ENCODING)
            .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(Rejection::Malformed(
            "only Transfer-Encoding: chunked is accepted".into(),
        ));
    }
    if count(CONTENT_LENGTH) > 1 {
        return Err(Rejection::Malformed(
            "several Content-Length headers".into(),
        ));
    }
    if count(CONTENT_TYPE) > 1 {
        return Err(Rejection::UnsupportedMediaType(
            "several Content-Type headers".into(),
        ));
    }
    Ok(())
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy. Left-most entries are whatever the
/// client chose to send and are never believed.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries = || {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.rsplit(','))
            .map(|s| s.trim().parse::<IpAddr>())
    };
    // One entry that is not an address and none is believed. Two passes instead of collecting:
    // no allocation per request.
    if entries().any(|e| e.is_err()) {
        return peer;
    }
    let mut client = peer;
    for ip in entries().flatten() {
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// The media type without parameters, lower case (`application/json; charset=UTF-8` →
/// `application/json`); borrowed unless it has upper-case letters.
fn media_type(value: &str) -> Cow<'_, str> {
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(essence.to_ascii_lowercase())
    } else {
        Cow::Borrowed(essence)
    }
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
    fn replay_window_refuses_only_what_is_older_than_max_age() {
        let now = time::macros::datetime!(2026-01-31 12:00 UTC);
        let day = Duration::from_secs(86400);
        assert!(outside_window(
            now - time::Duration::days(30),
            now,
            29 * day
        ));
        assert!(!outside_window(
            now - time::Duration::days(28),
            now,
            29 * day
        ));
        // Future times and huge windows are not refused here.
        assert!(!outside_window(
            now + time::Duration::days(1),
            now,
            29 * day
        ));
        assert!(!outside_window(now, now, Duration::MAX));
    }

    #[test]
    fn media_type_drops_parameters_and_case() {
        assert_eq!(media_type("application/json"), "application/json");
        assert!(matches!(media_type("application/json"), Cow::Borrowed(_)));
        assert_eq!(
            media_type(" Application/JSON ; charset=UTF-8"),
            "application/json"
        );
        assert_eq!(media_type(""), "");
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
        assert_eq!(
            client_ip(&h("198.51.100.1, garbage"), local, &trusted),
            local
        );
        // Trusted hops on the right are skipped.
        assert_eq!(
            client_ip(&h("198.51.100.1, 127.0.0.1"), local, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&HeaderMap::new(), local, &trusted), local);
    }
}
