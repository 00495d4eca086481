//! Every refusal the public listener can give, mapped to status, error code and metric outcome in
//! one place (SPEC §2, §7).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::providers::ProviderError;
use crate::store::StoreError;

pub type Body = Full<Bytes>;

/// The longest error message a response body or a log line carries. Messages quote at most 64
/// bytes of client text (`crate::text::Quoted`); this is the last guard, whatever a provider
/// module or a store error put into one.
pub const MESSAGE_MAX: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such hook")]
    NotFound,
    #[error("use POST")]
    MethodNotAllowed,
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("headers and body not received within request_timeout ({})", humantime::format_duration(*.0))]
    Timeout(std::time::Duration),
}

/// The `outcome` label of `payhook_requests_total` (SPEC §7), one per way a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Conflict,
    InvalidSignature,
    Malformed,
    TooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    Unavailable,
    MethodNotAllowed,
    /// Unknown paths: logged, never counted per source (there is none).
    NotFound,
}

impl Outcome {
    /// Every outcome counted per source, in the order of [`Outcome::index`].
    pub const COUNTED: [Outcome; 10] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Conflict,
        Outcome::InvalidSignature,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::UnsupportedMediaType,
        Outcome::RequestTimeout,
        Outcome::Unavailable,
        Outcome::MethodNotAllowed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::InvalidSignature => "invalid_signature",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::NotFound => "not_found",
        }
    }

    /// Position in [`Outcome::COUNTED`]; `None` for outcomes not counted per source.
    pub fn index(self) -> Option<usize> {
        Outcome::COUNTED.iter().position(|o| *o == self)
    }
}

impl From<ProviderError> for Rejection {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Malformed(m) => Rejection::Malformed(m),
            ProviderError::Unauthorized(m) => Rejection::Unauthorized(m),
        }
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Rejection::Unavailable(e.to_string())
    }
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::TooLarge(_) => "payload_too_large",
            Rejection::UnsupportedMediaType(_) => "unsupported_media_type",
            Rejection::Unauthorized(_) => "invalid_signature",
            Rejection::Malformed(_) => "malformed_payload",
            Rejection::Timeout(_) => "request_timeout",
            Rejection::Unavailable(_) => "unavailable",
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Rejection::NotFound => Outcome::NotFound,
            Rejection::MethodNotAllowed => Outcome::MethodNotAllowed,
            Rejection::TooLarge(_) => Outcome::TooLarge,
            Rejection::UnsupportedMediaType(_) => Outcome::UnsupportedMediaType,
            Rejection::Unauthorized(_) => Outcome::InvalidSignature,
            Rejection::Malformed(_) => Outcome::Malformed,
            Rejection::Timeout(_) => Outcome::RequestTimeout,
            Rejection::Unavailable(_) => Outcome::Unavailable,
        }
    }

    /// The message for the response body and the log line, never longer than [`MESSAGE_MAX`].
    pub fn message(&self) -> String {
        bounded(self.to_string())
    }

    pub fn into_response(&self) -> Response<Body> {
        let mut resp = json_error(self.status(), self.code(), &self.message());
        match self {
            Rejection::MethodNotAllowed => {
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("POST"));
            }
            Rejection::Unavailable(_) => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // The rest of the body may still be on its way: the connection cannot be reused.
            Rejection::Timeout(_) => {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

/// `message` cut to [`MESSAGE_MAX`] bytes at a character boundary, marked with `…` when cut.
pub fn bounded(message: String) -> String {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let mut cut = crate::text::clip(&message, MESSAGE_MAX - '…'.len_utf8()).to_string();
    cut.push('…');
    cut
}

/// Text for a log field: at most `MAX` bytes, control characters escaped, so a value can neither
/// make a long line nor start a new one in the text format. Plain text is written unchanged.
pub struct LogText<'a>(pub &'a str);

impl LogText<'_> {
    const MAX: usize = 128;
}

impl fmt::Display for LogText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = crate::text::clip(self.0, Self::MAX);
        for c in cut.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        if cut.len() < self.0.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let message: Cow<'_, str> = if message.len() > MESSAGE_MAX {
        Cow::Owned(bounded(message.to_string()))
    } else {
        Cow::Borrowed(message)
    };
    let body = serde_json::json!({ "error": code, "message": message });
    json(status, &body)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_whatever_a_provider_put_in_them() {
        let huge = Rejection::Malformed(format!("unknown key {}", "k".repeat(1 << 20)));
        assert!(huge.message().len() <= MESSAGE_MAX);
        assert!(huge.message().ends_with('…'));
        let resp = huge.into_response();
        let body = resp.into_body();
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(body))
            .expect("a full body is ready")
            .expect("infallible")
            .to_bytes();
        assert!(bytes.len() < MESSAGE_MAX + 100, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(v["error"], "malformed_payload");
        // Multi-byte text is cut at a character boundary.
        let wide = Rejection::Unauthorized("é".repeat(1000));
        assert!(wide.message().len() <= MESSAGE_MAX);
        assert_eq!(Rejection::Malformed("short".into()).message(), "short");
    }

    #[test]
    fn timeouts_have_their_own_code_and_outcome() {
        let t = Rejection::Timeout(std::time::Duration::from_secs(10));
        assert_eq!(t.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(t.code(), "request_timeout");
        assert_eq!(t.outcome().label(), "request_timeout");
        assert_eq!(
            t.into_response()
                .headers()
                .get(CONNECTION)
                .map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
    }

    #[test]
    fn every_counted_outcome_has_an_index() {
        for (i, o) in Outcome::COUNTED.iter().enumerate() {
            assert_eq!(o.index(), Some(i));
        }
        assert_eq!(Outcome::NotFound.index(), None);
    }

    #[test]
    fn log_text_is_bounded_and_stays_on_one_line() {
        assert_eq!(LogText("evt_123").to_string(), "evt_123");
        assert_eq!(LogText("a\nb").to_string(), "a\\nb");
        let long = "x".repeat(10_000);
        assert!(LogText(&long).to_string().len() <= LogText::MAX + 3);
    }
}
