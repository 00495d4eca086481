//! Pinddpay: an MD5 token in the `sign-token` header over the raw JSON body and the app secret.
//!
//! The public documentation says only "MD5, 32-bit, upper case"; what exactly is hashed is
//! **unconfirmed**, hence the configurable [`SignScheme`] (default `md5(body+secret)`).
//!
//! Fields the provider always sends, and which this module therefore requires (else 400):
//! `eventId` (a non-empty string or an integer: it is the dedup key) and `eventName` (a non-empty
//! string: it is the event type). `appId` is required only when the source configures `app_id`
//! (then a missing or different `appId` is a 401). Everything else is optional and maps to null.

use std::path::Path;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Inbound, ProviderError, Verifier, hex_digest_eq};
use crate::event::{Category, Money, Normalized, Outcome, Payload};
use crate::secret::{Secret, SecretString};

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
    /// The app secret.
    pub secret: Secret,
    #[serde(default)]
    pub sign_scheme: SignScheme,
    /// When set, the body's `appId` must equal it.
    #[serde(default)]
    pub app_id: Option<String>,
}

pub struct Pinddpay {
    secret: SecretString,
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
        let secret = c.secret.resolve(base).map_err(|e| format!("secret: {e}"))?;
        if secret.expose().is_empty() {
            return Err("secret is empty".into());
        }
        if c.app_id.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err("app_id is empty: remove it or set the Pinddpay app id".into());
        }
        Ok(Pinddpay::new(secret, c.sign_scheme, c.app_id.clone()))
    }

    pub fn new(secret: SecretString, scheme: SignScheme, app_id: Option<String>) -> Pinddpay {
        Pinddpay {
            secret,
            scheme,
            app_id,
        }
    }

    fn check_signature(&self, req: &Inbound<'_>) -> Result<(), ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let header = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| unauthorized("missing sign-token header"))?
            .to_str()
            .map_err(|_| unauthorized("sign-token is not ASCII"))?
            .trim();
        if header.len() != 32 || !header.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unauthorized("sign-token is not 32 hex digits"));
        }
        let expected = digest(self.scheme, req.body, self.secret.expose());
        if !hex_digest_eq(&expected, header) {
            return Err(ProviderError::Unauthorized(format!(
                "sign-token does not match (sign_scheme {})",
                self.scheme.name()
            )));
        }
        Ok(())
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A string, or a number's JSON text (amounts and ids are sometimes sent as numbers).
fn text_field(v: Option<&Value>, key: &str) -> Option<String> {
    match v?.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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
pub fn parse_event_at(v: &Value) -> Option<OffsetDateTime> {
    match v {
        Value::Number(n) => from_unix(n.as_i64()?),
        Value::String(s) => {
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

/// Checks the fields Pinddpay always sends (see the module doc); returns `(eventId, eventName)`.
fn required(event: &Value) -> Result<(String, String), ProviderError> {
    if !event.is_object() {
        return Err(ProviderError::Malformed(
            "Pinddpay event must be a JSON object".into(),
        ));
    }
    let id = match event.get("eventId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => {
            return Err(ProviderError::Malformed(
                "Pinddpay event has no \"eventId\"".into(),
            ));
        }
    };
    let name = str_field(event, "eventName")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ProviderError::Malformed("Pinddpay event has no \"eventName\"".into()))?
        .to_string();
    Ok((id, name))
}

/// Maps a verified Pinddpay event (already parsed) to the normalized fields.
pub fn normalize(event: Value) -> Result<Normalized, ProviderError> {
    let (id, event_type) = required(&event)?;
    let order = event.get("order").filter(|o| o.is_object());
    let transaction = event.get("transaction").filter(|o| o.is_object());
    let refund = event.get("refund").filter(|o| o.is_object());
    let money = if event_type.starts_with("refund.") {
        Money::from_decimal(
            text_field(refund, "refundAmount").as_deref(),
            text_field(refund, "currency").as_deref(),
        )
    } else {
        Money::from_decimal(
            text_field(order, "amount").as_deref(),
            text_field(order, "currency").as_deref(),
        )
    };
    let last = event_type.rsplit('.').next().unwrap_or("");
    Ok(Normalized {
        category: category(&event_type),
        outcome: Outcome::from_word(last),
        provider_event_id: Some(id.clone()),
        dedup_key: id,
        order_no: text_field(order, "merchantOrderNo"),
        transaction_id: text_field(order, "tradeNo").or_else(|| text_field(transaction, "tradeNo")),
        money,
        livemode: None,
        occurred_at: event.get("eventAt").and_then(parse_event_at),
        signed_time: None,
        content_hash: [0; 32],
        event_type,
        payload: Payload::Json(event),
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
        let event: Value = serde_json::from_slice(req.body)
            .map_err(|e| ProviderError::Malformed(format!("body is not valid JSON: {e}")))?;
        required(&event)?;
        self.check_signature(req)?;
        if let Some(want) = &self.app_id {
            match str_field(&event, "appId") {
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
        normalize(event)
    }

    fn ack_body(&self) -> &'static str {
        "success"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::HeaderMap;
    use proptest::prelude::*;

    const SECRET: &str = "s3cr3t-app-secret";

    fn body(event_name: &str) -> String {
        serde_json::json!({
            "eventId": "evt_20240101_0001",
            "eventAt": "2024-01-02 03:04:05",
            "eventName": event_name,
            "appId": "app_42",
            "order": {
                "id": "o_1", "merchantOrderNo": "M-1001", "email": "a@example.com",
                "amount": "12.50", "quantity": 1, "tradeNo": "T-9", "currency": "usd",
                "country": "US", "status": "paid", "statusEn": "paid", "paymentMethod": "card",
                "rate": "1"
            },
            "refund": {"id": "r_1", "refundAmount": "2.25", "currency": "EUR", "refundAt": "x"}
        })
        .to_string()
    }

    fn verifier(scheme: SignScheme, app_id: Option<&str>) -> Pinddpay {
        Pinddpay::new(
            SecretString::new(SECRET),
            scheme,
            app_id.map(str::to_string),
        )
    }

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, token.parse().unwrap());
        h
    }

    fn run(v: &Pinddpay, body: &[u8], token: &str) -> Result<Normalized, ProviderError> {
        v.verify(&Inbound {
            headers: &headers(token),
            body,
        })
    }

    #[test]
    fn documented_md5_example() {
        assert_eq!(
            hex::encode_upper(Md5::digest(b"123456")),
            "E10ADC3949BA59ABBE56E057F20F883E"
        );
        assert_eq!(
            sign(SignScheme::SecretOnly, b"ignored", "123456"),
            "E10ADC3949BA59ABBE56E057F20F883E"
        );
    }

    #[test]
    fn schemes_hash_what_they_say() {
        assert_eq!(
            digest(SignScheme::BodySecret, b"{}", "k"),
            <[u8; 16]>::from(Md5::digest(b"{}k"))
        );
        assert_eq!(
            digest(SignScheme::SecretBody, b"{}", "k"),
            <[u8; 16]>::from(Md5::digest(b"k{}"))
        );
    }

    #[test]
    fn config_scheme_names() {
        let c: Config =
            toml::from_str("secret = \"x\"\nsign_scheme = \"md5(secret+body)\"").unwrap();
        assert_eq!(c.sign_scheme, SignScheme::SecretBody);
        let c: Config = toml::from_str("secret = { env = \"X\" }").unwrap();
        assert_eq!(c.sign_scheme, SignScheme::BodySecret);
        assert!(toml::from_str::<Config>("secret = \"x\"\nsign_scheme = \"sha1\"").is_err());
        assert!(toml::from_str::<Config>("secret = \"x\"\nextra = 1").is_err());
    }

    #[test]
    fn verifies_each_scheme_case_insensitively() {
        for scheme in [
            SignScheme::BodySecret,
            SignScheme::SecretBody,
            SignScheme::SecretOnly,
        ] {
            let b = body("order.paid");
            let tok = sign(scheme, b.as_bytes(), SECRET);
            let v = verifier(scheme, Some("app_42"));
            let n = run(&v, b.as_bytes(), &tok).unwrap();
            assert_eq!(n.dedup_key, "evt_20240101_0001");
            run(&v, b.as_bytes(), &tok.to_ascii_lowercase()).unwrap();
        }
    }

    #[test]
    fn maps_order_paid() {
        let b = body("order.paid");
        let n = run(
            &verifier(SignScheme::BodySecret, None),
            b.as_bytes(),
            &sign(SignScheme::BodySecret, b.as_bytes(), SECRET),
        )
        .unwrap();
        assert_eq!(n.event_type, "order.paid");
        assert_eq!(n.category, Category::Payment);
        assert_eq!(n.outcome, Outcome::Succeeded);
        assert_eq!(n.order_no.as_deref(), Some("M-1001"));
        assert_eq!(n.transaction_id.as_deref(), Some("T-9"));
        assert_eq!(n.money.amount.as_deref(), Some("12.50"));
        assert_eq!(n.money.amount_minor, Some(1250));
        assert_eq!(n.money.currency.as_deref(), Some("USD"));
        assert_eq!(n.provider_event_id.as_deref(), Some("evt_20240101_0001"));
        assert_eq!(
            n.occurred_at.unwrap(),
            time::macros::datetime!(2024-01-02 03:04:05 UTC)
        );
    }

    #[test]
    fn refund_uses_refund_amount() {
        let v: Value = serde_json::from_str(&body("refund.succeeded")).unwrap();
        let n = normalize(v).unwrap();
        assert_eq!(n.category, Category::Refund);
        assert_eq!(n.money.amount.as_deref(), Some("2.25"));
        assert_eq!(n.money.amount_minor, Some(225));
        assert_eq!(n.money.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn categories_and_outcomes() {
        assert_eq!(category("dispute.created"), Category::Dispute);
        assert_eq!(category("payout.completed"), Category::Payout);
        assert_eq!(category("subscription.cancelled"), Category::Subscription);
        assert_eq!(category("customer.updated"), Category::Other);
        let v = serde_json::json!({"eventId": 7, "eventName": "order.created", "transaction": {"tradeNo": "TT"}});
        let n = normalize(v).unwrap();
        assert_eq!(n.outcome, Outcome::Pending);
        assert_eq!(n.dedup_key, "7");
        assert_eq!(n.transaction_id.as_deref(), Some("TT"));
        assert_eq!(n.occurred_at, None);
        assert_eq!(n.money, Money::default());
    }

    #[test]
    fn event_at_forms() {
        let t = time::macros::datetime!(2024-01-02 03:04:05 UTC);
        for v in [
            serde_json::json!("2024-01-02T03:04:05Z"),
            serde_json::json!("2024-01-02T11:04:05+08:00"),
            serde_json::json!("2024-01-02 03:04:05"),
            serde_json::json!(1704164645),
            serde_json::json!(1704164645000i64),
            serde_json::json!("1704164645"),
            serde_json::json!("1704164645000"),
        ] {
            assert_eq!(parse_event_at(&v), Some(t), "{v}");
        }
        assert_eq!(parse_event_at(&serde_json::json!("yesterday")), None);
        assert_eq!(parse_event_at(&serde_json::json!(null)), None);
        assert_eq!(
            parse_event_at(&serde_json::json!("99999999999999999999")),
            None
        );
    }

    #[test]
    fn refusals() {
        let v = verifier(SignScheme::BodySecret, Some("app_42"));
        let b = body("order.paid");
        let tok = sign(SignScheme::BodySecret, b.as_bytes(), SECRET);
        // Tampered body.
        let t = b.replace("12.50", "99.50");
        assert!(matches!(
            run(&v, t.as_bytes(), &tok),
            Err(ProviderError::Unauthorized(_))
        ));
        // Wrong secret.
        let wrong = sign(SignScheme::BodySecret, b.as_bytes(), "other");
        assert!(matches!(
            run(&v, b.as_bytes(), &wrong),
            Err(ProviderError::Unauthorized(_))
        ));
        // Wrong scheme.
        let other = sign(SignScheme::SecretBody, b.as_bytes(), SECRET);
        assert!(matches!(
            run(&v, b.as_bytes(), &other),
            Err(ProviderError::Unauthorized(_))
        ));
        // Foreign app id, correctly signed.
        let f = b.replace("app_42", "app_43");
        let ftok = sign(SignScheme::BodySecret, f.as_bytes(), SECRET);
        assert!(matches!(
            run(&v, f.as_bytes(), &ftok),
            Err(ProviderError::Unauthorized(_))
        ));
        // Missing header, short header.
        let no_header = v.verify(&Inbound {
            headers: &HeaderMap::new(),
            body: b.as_bytes(),
        });
        assert!(matches!(no_header, Err(ProviderError::Unauthorized(_))));
        assert!(matches!(
            run(&v, b.as_bytes(), &tok[..31]),
            Err(ProviderError::Unauthorized(_))
        ));
        // Malformed.
        for m in [
            "not json",
            "[1,2]",
            "{\"eventName\":\"order.paid\"}",
            "{\"eventId\":\"e1\"}",
            "{\"eventId\":\"\",\"eventName\":\"order.paid\"}",
        ] {
            let tok = sign(SignScheme::BodySecret, m.as_bytes(), SECRET);
            assert!(
                matches!(
                    run(&v, m.as_bytes(), &tok),
                    Err(ProviderError::Malformed(_))
                ),
                "{m}"
            );
        }
    }

    fn arb_event() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9_-]{1,24}",
            prop::sample::select(vec![
                "order.created",
                "order.paid",
                "order.failed",
                "refund.succeeded",
                "dispute.created",
                "payout.completed",
                "subscription.cancelled",
                "something.else",
            ]),
            0u64..10_000_000,
            prop::sample::select(vec!["USD", "EUR", "JPY", "CNY", "BHD"]),
            "[\\PC]{0,16}",
            1_500_000_000i64..2_000_000_000,
        )
            .prop_map(|(id, name, cents, cur, email, at)| {
                serde_json::json!({
                    "eventId": id, "eventAt": at, "eventName": name, "appId": "app_42",
                    "order": {"merchantOrderNo": format!("M{cents}"), "amount": format!("{}.{:02}", cents / 100, cents % 100),
                              "currency": cur, "email": email, "tradeNo": format!("T{cents}")},
                    "refund": {"refundAmount": format!("{}", cents / 100), "currency": cur}
                })
                .to_string()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_events_verify(b in arb_event()) {
            let v = verifier(SignScheme::BodySecret, Some("app_42"));
            let tok = sign(SignScheme::BodySecret, b.as_bytes(), SECRET);
            let n = run(&v, b.as_bytes(), &tok).unwrap();
            let parsed: Value = serde_json::from_str(&b).unwrap();
            prop_assert_eq!(Some(n.dedup_key.as_str()), parsed["eventId"].as_str());
            prop_assert!(n.occurred_at.is_some());
            prop_assert!(n.money.amount.is_some());
        }

        #[test]
        fn any_changed_byte_is_refused(b in arb_event(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let v = verifier(SignScheme::BodySecret, Some("app_42"));
            let tok = sign(SignScheme::BodySecret, b.as_bytes(), SECRET);
            let mut t = b.into_bytes();
            let i = pos.index(t.len());
            t[i] ^= x;
            prop_assert!(run(&v, &t, &tok).is_err());
        }
    }
}
