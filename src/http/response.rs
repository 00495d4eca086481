//! Every refusal the public listener can give, mapped to status, error code and metric outcome in
//! one place (SPEC §2).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::providers::ProviderError;
use crate::store::StoreError;

pub type Body = Full<Bytes>;

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
    #[error("request not received within {0:?}")]
    Timeout(std::time::Duration),
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
            // A body that never arrived whole cannot be parsed; the provider retries it.
            Rejection::Malformed(_) | Rejection::Timeout(_) => "malformed_payload",
            Rejection::Unavailable(_) => "unavailable",
        }
    }

    /// The `outcome` label of `payhook_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::TooLarge(_) => "too_large",
            Rejection::UnsupportedMediaType(_) => "unsupported_media_type",
            Rejection::Unauthorized(_) => "invalid_signature",
            Rejection::Malformed(_) | Rejection::Timeout(_) => "malformed",
            Rejection::Unavailable(_) => "unavailable",
        }
    }

    pub fn into_response(&self) -> Response<Body> {
        let mut resp = json_error(self.status(), self.code(), &self.to_string());
        match self {
            Rejection::MethodNotAllowed => {
                resp.headers_mut()
                    .insert(ALLOW, "POST".parse().expect("static header"));
            }
            Rejection::Unavailable(_) => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, "5".parse().expect("static header"));
            }
            _ => {}
        }
        resp
    }
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message });
    json(status, &body)
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
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
        .insert(CONTENT_TYPE, content_type.parse().expect("static header"));
    resp
}
