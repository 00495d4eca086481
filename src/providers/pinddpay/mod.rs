//! Pinddpay: an MD5 token in the `sign-token` header over the raw JSON body and the app secret.
//!
//! The public documentation says only "MD5, 32-bit, upper case"; what exactly is hashed is
//! **unconfirmed**, hence the configurable [`SignScheme`] (default `md5(body+secret)`).
//!
//! Under the body schemes the signed content is the raw body: the token is checked over the
//! bytes before anything is parsed, the content hash is the body's SHA-256, the body goes into
//! the CloudEvent byte for byte, and `eventAt` is the signed event time. Under `md5(secret)`
//! nothing in the body is signed (the token is the same for every webhook): the body is still
//! hashed for the conflict check, but there is no signed time and no protection of the body.
//!
//! Fields the provider always sends, and which this module therefore requires (else 400):
//! `eventId` (a non-empty string or an integer: it is the dedup key) and `eventName` (a non-empty
//! string: it is the event type). `appId` is required only when the source configures `app_id`
//! (then a missing or different `appId` is a 401). Everything else is optional and maps to null.

use std::path::Path;

use md5::{Digest, Md5};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json::{Obj, Scalar, check_raw, json_error, utf8_body};
use super::{Inbound, ProviderError, Verifier, any_secret, hex_digest_eq, sha256};
use crate::event::{Category, Money, Normalized, Outcome, Payload};
use crate::secret::{SecretList, SecretString};

#[cfg(test)]
mod tests;

pub const SIGNATURE_HEADER: &str = "sign-token";

/// What the MD5 in `sign-token` is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SignScheme {
    /// MD5 over the raw body bytes followed by the secret's bytes.
    #[default]
    #[serde(rename = "md5(body+secret)")]
    BodySecret,
    /// MD5 over the secret's bytes followed by the raw body bytes.
    #[serde(rename = "md5(secret+body)")]
    SecretBody,
    /// MD5 over the secret alone: a static token that does not protect the body.
    #[serde(rename = "md5(secret)")]
    SecretOnly,
}

impl SignScheme {
    pub fn name(self) -> &'static str {
        match self {
            SignScheme::BodySecret => "md5(body+secret)",
            SignScheme::SecretBody => "md5(secret+body)",
            SignScheme::SecretOnly => "md5(secret)",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The app secret, or a list of them while one is rotated (any entry verifies).
    pub secret: SecretList,
    #[serde(default)]
    pub sign_scheme: SignScheme,
    /// When set, the body's `appId` must equal it.
    #[serde(default)]
    pub app_id: Option<String>,
}

pub struct Pinddpay {
    secrets: Vec<SecretString>,
    scheme: SignScheme,
    app_id: Option<String>,
}

/// The raw MD5 digest that `sign-token` carries (as hex) for this body, secret and scheme.
pub fn digest(scheme: SignScheme, body: &[u8], secret: &str) -> [u8; 16] {
    let mut h = Md5::new();
    match scheme {
        SignScheme::BodySecret => {
            h.update(body);
            h.update(secret.as_bytes());
        }
        SignScheme::SecretBody => {
            h.update(secret.as_bytes());
            h.update(body);
        }
        SignScheme::SecretOnly => h.update(secret.as_bytes()),
    }
    h.finalize().into()
}

/// The `sign-token` header value as Pinddpay sends it: 32 upper-case hex digits.
pub fn sign(scheme: SignScheme, body: &[u8], secret: &str) -> String {
    hex::encode_upper(digest(scheme, body, secret))
}

impl Pinddpay {
    pub fn from_config(c: &Config, base: &Path) -> Result<Pinddpay, String> {
        let secrets = c.secret.resolve(base).map_err(|e| format!("secret: {e}"))?;
        if c.app_id.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err("app_id is empty: remove it or set the Pinddpay app id".into());
        }
        if c.sign_scheme == SignScheme::SecretOnly {
            tracing::warn!(
                "pinddpay sign_scheme \"md5(secret)\" signs no part of the body: anyone who has \
                 seen one webhook's sign-token can send any body, and no event time is signed, so \
                 there is no replay window; use it only if real deliveries prove Pinddpay signs \
                 this way"
            );
        }
        Ok(Pinddpay::new(secrets, c.sign_scheme, c.app_id.clone()))
    }

    /// `secrets`: every accepted secret (a webhook verifies if any of them signs it).
    pub fn new(secrets: Vec<SecretString>, scheme: SignScheme, app_id: Option<String>) -> Pinddpay {
        Pinddpay {
            secrets,
            scheme,
            app_id,
        }
    }

    fn check_signature(&self, req: &Inbound<'_>) -> Result<(), ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let header = super::signature_header(req.headers, SIGNATURE_HEADER)?;
        if header.len() != 32 || !header.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unauthorized("sign-token is not 32 hex digits"));
        }
        let ok = match self.scheme {
            // The body is hashed once; each secret continues from that state.
            SignScheme::BodySecret => {
                let mut h = Md5::new();
                h.update(req.body);
                any_secret(&self.secrets, |s| {
                    let mut h = h.clone();
                    h.update(s.as_bytes());
                    hex_digest_eq(&h.finalize(), header)
                })
            }
            scheme => any_secret(&self.secrets, |s| {
                hex_digest_eq(&digest(scheme, req.body, s), header)
            }),
        };
        if !ok {
            return Err(ProviderError::Unauthorized(format!(
                "sign-token does not match (sign_scheme {})",
                self.scheme.name()
            )));
        }
        Ok(())
    }
}

/// The members of an event that are mapped; everything else is validated and skipped.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default, rename = "eventId")]
    event_id: Scalar<'a>,
    #[serde(borrow, default, rename = "eventAt")]
    event_at: Scalar<'a>,
    #[serde(borrow, default, rename = "eventName")]
    event_name: Scalar<'a>,
    #[serde(borrow, default, rename = "appId")]
    app_id: Scalar<'a>,
    #[serde(borrow, default)]
    order: Obj<Order<'a>>,
    #[serde(borrow, default)]
    transaction: Obj<Transaction<'a>>,
    #[serde(borrow, default)]
    refund: Obj<Refund<'a>>,
}

#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow, default, rename = "merchantOrderNo")]
    merchant_order_no: Scalar<'a>,
    #[serde(borrow, default, rename = "tradeNo")]
    trade_no: Scalar<'a>,
    #[serde(borrow, default)]
    amount: Scalar<'a>,
    #[serde(borrow, default)]
    currency: Scalar<'a>,
}

#[derive(Deserialize)]
struct Transaction<'a> {
    #[serde(borrow, default, rename = "tradeNo")]
    trade_no: Scalar<'a>,
}

#[derive(Deserialize)]
struct Refund<'a> {
    #[serde(borrow, default, rename = "refundAmount")]
    refund_amount: Scalar<'a>,
    #[serde(borrow, default)]
    currency: Scalar<'a>,
}

/// Unix seconds or milliseconds: values from 10^11 on are milliseconds (10^11 s is year 5138).
fn from_unix(n: i64) -> Option<OffsetDateTime> {
    if n.unsigned_abs() >= 100_000_000_000 {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(n) * 1_000_000).ok()
    } else {
        OffsetDateTime::from_unix_timestamp(n).ok()
    }
}

/// `eventAt`: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), or unix seconds/milliseconds as a number or
/// a string of digits. Anything else is `None` (the event is still accepted).
pub fn parse_event_at(v: &Scalar<'_>) -> Option<OffsetDateTime> {
    match v {
        Scalar::I64(_) | Scalar::U64(_) => from_unix(v.as_i64()?),
        Scalar::Str(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return from_unix(s.parse().ok()?);
            }
            if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
                return Some(t);
            }
            let fmt =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            time::PrimitiveDateTime::parse(s, &fmt)
                .ok()
                .map(|t| t.assume_utc())
        }
        _ => None,
    }
}

fn category(event_name: &str) -> Category {
    match event_name.split('.').next().unwrap_or("") {
        "order" => Category::Payment,
        "refund" => Category::Refund,
        "dispute" => Category::Dispute,
        "payout" => Category::Payout,
        "subscription" => Category::Subscription,
        _ => Category::Other,
    }
}

/// Parses and maps a body whose token has been checked. `signed`: whether the scheme covers
/// the body (then `eventAt` is the signed event time).
fn normalize(body: &[u8], signed: bool, app_id: Option<&str>) -> Result<Normalized, ProviderError> {
    let malformed = |m: &str| ProviderError::Malformed(m.to_string());
    let text = utf8_body(body)?;
    let Obj(event) = serde_json::from_str::<Obj<Event<'_>>>(text)
        .map_err(|e| json_error("body is not valid JSON", &e))?;
    let event = event.ok_or_else(|| malformed("Pinddpay event must be a JSON object"))?;
    check_raw(text)?;
    let id = match &event.event_id {
        Scalar::Str(s) if !s.trim().is_empty() => s.to_string(),
        Scalar::I64(_) | Scalar::U64(_) => event.event_id.text().unwrap_or_default(),
        _ => return Err(malformed("Pinddpay event has no \"eventId\"")),
    };
    let event_type = event
        .event_name
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| malformed("Pinddpay event has no \"eventName\""))?
        .to_string();
    if let Some(want) = app_id {
        match event.app_id.as_str() {
            Some(got) if got == want => {}
            Some(_) => {
                return Err(ProviderError::Unauthorized(
                    "appId is not the configured app_id".into(),
                ));
            }
            None => {
                return Err(ProviderError::Unauthorized(
                    "appId missing but app_id is configured".into(),
                ));
            }
        }
    }
    let order = event.order.0.as_ref();
    let money = if event_type.starts_with("refund.") {
        let refund = event.refund.0.as_ref();
        Money::from_decimal(
            refund.and_then(|r| r.refund_amount.text()).as_deref(),
            refund.and_then(|r| r.currency.text()).as_deref(),
        )
    } else {
        Money::from_decimal(
            order.and_then(|o| o.amount.text()).as_deref(),
            order.and_then(|o| o.currency.text()).as_deref(),
        )
    };
    let occurred_at = parse_event_at(&event.event_at);
    let last = event_type.rsplit('.').next().unwrap_or("");
    Ok(Normalized {
        category: category(&event_type),
        outcome: Outcome::from_word(last),
        provider_event_id: Some(id.clone()),
        dedup_key: id,
        order_no: order.and_then(|o| o.merchant_order_no.text()),
        transaction_id: order
            .and_then(|o| o.trade_no.text())
            .or_else(|| event.transaction.0.as_ref().and_then(|t| t.trade_no.text())),
        money,
        livemode: None,
        occurred_at,
        signed_time: if signed { occurred_at } else { None },
        content_hash: sha256(body),
        event_type,
        payload: Payload::Body,
    })
}

impl Verifier for Pinddpay {
    fn provider(&self) -> &'static str {
        "pinddpay"
    }

    fn accepts_content_type(&self, essence: Option<&str>) -> bool {
        essence == Some("application/json")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError> {
        // The token first: under the body schemes nothing unsigned is ever parsed.
        self.check_signature(req)?;
        normalize(
            req.body,
            self.scheme != SignScheme::SecretOnly,
            self.app_id.as_deref(),
        )
    }

    fn ack_body(&self) -> &'static str {
        "success"
    }
}
