//! The normalized event every provider produces, and its encoding as the CloudEvent of SPEC §5.
//! The message is built once at intake and stored, so a replay years later sends the same bytes.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Payment,
    Refund,
    Dispute,
    Payout,
    Subscription,
    Authorization,
    Summary,
    Alarm,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Pending,
    Cancelled,
    Info,
}

impl Outcome {
    /// The shared status-word table of PROVIDERS.md ("Common rules"), case-insensitive.
    pub fn from_word(word: &str) -> Outcome {
        match word.trim().to_ascii_lowercase().as_str() {
            "created" | "pending" | "processing" | "init" | "auth_success" => Outcome::Pending,
            "paid" | "succeeded" | "success" | "completed" | "captured" | "sent" | "received" => {
                Outcome::Succeeded
            }
            "failed" | "declined" | "error" => Outcome::Failed,
            "cancelled" | "canceled" | "closed" | "expired" | "voided" | "cancel" => {
                Outcome::Cancelled
            }
            _ => Outcome::Info,
        }
    }
}

/// What the CloudEvent's `data.payload` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The request body itself, byte for byte. Only for a body the provider has already checked
    /// to be exactly one JSON value (its parse succeeded); it is neither parsed into a tree nor
    /// re-serialized, so the queue carries the signed bytes.
    Body,
    /// A JSON value the provider built (XML and form fields, PingPong's decoded `bizContent`).
    Json(Value),
}

impl Payload {
    /// The built value; `Null` for [`Payload::Body`] (whose JSON is the body itself).
    pub fn json(&self) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Payload::Body => &NULL,
            Payload::Json(v) => v,
        }
    }
}

/// What a provider module extracts from a verified webhook. Every field comes from content the
/// signature covers (SPEC §6.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub event_type: String,
    pub provider_event_id: Option<String>,
    pub dedup_key: String,
    pub category: Category,
    pub outcome: Outcome,
    pub order_no: Option<String>,
    pub transaction_id: Option<String>,
    pub money: Money,
    pub livemode: Option<bool>,
    pub occurred_at: Option<OffsetDateTime>,
    /// The event time the signature covers, for the replay window (`[server] max_event_age`);
    /// `None` when the provider signs none.
    pub signed_time: Option<OffsetDateTime>,
    /// SHA-256 of the signed content in its canonical form: two webhooks with the same dedup
    /// key and the same hash are duplicates; the same key with another hash is a conflict.
    pub content_hash: [u8; 32],
    pub payload: Payload,
}

/// Amount and currency as the CloudEvent carries them. Built only through the constructors, which
/// keep `amount_minor` exact or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Money {
    pub amount: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
}

/// ISO 4217 minor-unit exponent (JPY 0, CNY 2, BHD 3), from the maintained `iso_currency` table.
pub fn currency_exponent(code: &str) -> Option<u32> {
    iso_currency::Currency::from_code(code)?
        .exponent()
        .map(u32::from)
}

impl Money {
    /// From an integer amount in minor units (Ping++ `amount` in fen).
    pub fn from_minor(minor: Option<i64>, currency: Option<&str>) -> Money {
        let currency = normalize_currency(currency);
        let exp = currency.as_deref().and_then(currency_exponent);
        match (minor, exp) {
            (Some(m), Some(e)) => Money {
                amount: Some(format_minor(m, e)),
                amount_minor: Some(m),
                currency,
            },
            _ => Money {
                amount: None,
                amount_minor: None,
                currency,
            },
        }
    }

    /// From a decimal string in major units (`"100.000000"`, `"12.5"`). `amount_minor` is set only
    /// when the value is exact at the currency's exponent.
    pub fn from_decimal(amount: Option<&str>, currency: Option<&str>) -> Money {
        let currency = normalize_currency(currency);
        let amount = amount.map(str::trim).filter(|a| !a.is_empty());
        let exp = currency.as_deref().and_then(currency_exponent);
        let minor = match (amount, exp) {
            (Some(a), Some(e)) => decimal_to_minor(a, e),
            _ => None,
        };
        Money {
            amount: amount.map(str::to_string),
            amount_minor: minor,
            currency,
        }
    }
}

fn normalize_currency(c: Option<&str>) -> Option<String> {
    c.map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.to_ascii_uppercase())
}

fn format_minor(minor: i64, exp: u32) -> String {
    if exp == 0 {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(exp);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exp as usize
    )
}

/// `"100.000000"` at exponent 2 is 10000; `"1.005"` at exponent 2 is not exact, so `None`.
pub fn decimal_to_minor(s: &str, exp: u32) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exp = exp as usize;
    let (kept, dropped) = if frac.len() > exp {
        frac.split_at(exp)
    } else {
        (frac, "")
    };
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let mut value: i64 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    for _ in kept.len()..exp {
        value = value.checked_mul(10)?;
    }
    Some(if neg { -value } else { value })
}

/// The id of SPEC §5: the same webhook gets the same id on any host.
pub fn event_id(source: &str, dedup_key: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("payhook:{source}:{dedup_key}").as_bytes(),
    )
}

pub fn rfc3339_seconds(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn rfc3339_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// AMQP short strings (routing key, the `type` property) hold at most this many bytes.
pub const SHORT_STRING_MAX: usize = 255;

/// `{prefix}.{event_type}` within [`SHORT_STRING_MAX`] bytes (SPEC §5): when too long, the
/// event-type part is cut at a character boundary and ends in `~` and the first 8 hex digits
/// of the SHA-256 of the whole event type, so the result stays deterministic.
pub fn bounded_name(prefix: &str, event_type: &str) -> String {
    let whole = prefix.len() + 1 + event_type.len();
    if whole <= SHORT_STRING_MAX {
        let mut s = String::with_capacity(whole);
        s.push_str(prefix);
        s.push('.');
        s.push_str(event_type);
        return s;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(event_type.as_bytes());
    let tag = hex::encode(&digest[..4]);
    // prefix + "." + cut + "~" + 8 hex digits
    let room = SHORT_STRING_MAX.saturating_sub(prefix.len() + 1 + 1 + tag.len());
    let cut = crate::text::clip(event_type, room);
    let mut s = String::with_capacity(SHORT_STRING_MAX);
    s.push_str(prefix);
    s.push('.');
    s.push_str(cut);
    s.push('~');
    s.push_str(&tag);
    s
}

/// A verified, normalized webhook ready to be stored: everything the relay needs is in here.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub source: String,
    pub provider: &'static str,
    pub dedup_key: String,
    pub event_type: String,
    /// `{source}.{event_type}`, bounded (see [`bounded_name`]).
    pub routing_key: String,
    pub received_at: OffsetDateTime,
    /// Unix seconds of the CloudEvent `time`.
    pub time_unix: i64,
    pub subject: Option<String>,
    /// The CloudEvent, serialized: the AMQP message body.
    pub message: Vec<u8>,
    /// Where the request body sits inside `message` when the payload is the body itself
    /// ([`Payload::Body`]); the store then keeps one copy.
    pub body_offset: Option<usize>,
    pub content_type: Option<String>,
    pub content_hash: [u8; 32],
    pub body: bytes::Bytes,
}

/// The CloudEvent of SPEC §5 up to `data.payload`, which [`Event::build`] appends.
#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ce_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    time: &'a str,
    datacontenttype: &'static str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    provider: &'a str,
    source: &'a str,
    event_type: &'a str,
    provider_event_id: Option<&'a str>,
    dedup_key: &'a str,
    category: Category,
    outcome: Outcome,
    order_no: Option<&'a str>,
    transaction_id: Option<&'a str>,
    amount: Option<&'a str>,
    amount_minor: Option<i64>,
    currency: Option<&'a str>,
    livemode: Option<bool>,
    occurred_at: Option<String>,
    received_at: String,
}

impl Event {
    pub fn build(
        source: &str,
        provider: &'static str,
        n: Normalized,
        received_at: OffsetDateTime,
        content_type: Option<String>,
        body: bytes::Bytes,
    ) -> Event {
        let id = event_id(source, &n.dedup_key);
        let id_text = id.hyphenated().to_string();
        let time = n.occurred_at.unwrap_or(received_at);
        let ce_source = format!("payhook/{source}");
        let ce_type = format!("{provider}.{}", n.event_type);
        let time_text = rfc3339_seconds(time);
        let ce = CloudEvent {
            specversion: "1.0",
            id: &id_text,
            source: &ce_source,
            ce_type: &ce_type,
            subject: n.order_no.as_deref(),
            time: &time_text,
            datacontenttype: "application/json",
            data: Data {
                provider,
                source,
                event_type: &n.event_type,
                provider_event_id: n.provider_event_id.as_deref(),
                dedup_key: &n.dedup_key,
                category: n.category,
                outcome: n.outcome,
                order_no: n.order_no.as_deref(),
                transaction_id: n.transaction_id.as_deref(),
                amount: n.money.amount.as_deref(),
                amount_minor: n.money.amount_minor,
                currency: n.money.currency.as_deref(),
                livemode: n.livemode,
                occurred_at: n.occurred_at.map(rfc3339_seconds),
                received_at: rfc3339_millis(received_at),
            },
        };
        // `data` is the last member of the event and `payload` the last of `data`: serialize
        // the rest, drop the two closing braces, and append the payload.
        let extra = match &n.payload {
            Payload::Body => body.len(),
            Payload::Json(_) => 256,
        };
        let mut message = Vec::with_capacity(640 + extra + n.event_type.len() * 2);
        let mut body_offset = None;
        if serde_json::to_writer(&mut message, &ce).is_ok() && message.ends_with(b"}}") {
            message.truncate(message.len() - 2);
            message.extend_from_slice(b",\"payload\":");
            match &n.payload {
                Payload::Body => {
                    body_offset = Some(message.len());
                    message.extend_from_slice(&body);
                }
                Payload::Json(v) => {
                    if serde_json::to_writer(&mut message, v).is_err() {
                        message.extend_from_slice(b"null");
                    }
                }
            }
            message.extend_from_slice(b"}}");
        }
        Event {
            id,
            source: source.to_string(),
            provider,
            routing_key: bounded_name(source, &n.event_type),
            event_type: n.event_type,
            dedup_key: n.dedup_key,
            received_at,
            time_unix: time.unix_timestamp(),
            subject: n.order_no,
            message,
            body_offset,
            content_type,
            content_hash: n.content_hash,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_spec() {
        let id = event_id("pingpp", "evt_1");
        assert_eq!(id.get_version_num(), 5);
        assert_eq!(
            id,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"payhook:pingpp:evt_1")
        );
        assert_eq!(
            Uuid::NAMESPACE_URL.to_string(),
            "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal_to_minor("100.000000", 2), Some(10000));
        assert_eq!(decimal_to_minor("1.005", 2), None);
        assert_eq!(decimal_to_minor("12", 0), Some(12));
        assert_eq!(decimal_to_minor("12.5", 0), None);
        assert_eq!(decimal_to_minor("0.123", 3), Some(123));
        assert_eq!(decimal_to_minor("-1.5", 2), Some(-150));
        assert_eq!(decimal_to_minor("1e5", 2), None);
        assert_eq!(decimal_to_minor("", 2), None);
        assert_eq!(decimal_to_minor("99999999999999999999", 2), None);
    }

    #[test]
    fn money_by_iso_exponent() {
        let m = Money::from_minor(Some(100), Some("cny"));
        assert_eq!(m.amount.as_deref(), Some("1.00"));
        assert_eq!(m.amount_minor, Some(100));
        assert_eq!(m.currency.as_deref(), Some("CNY"));
        assert_eq!(
            Money::from_minor(Some(500), Some("JPY")).amount.as_deref(),
            Some("500")
        );
        assert_eq!(
            Money::from_minor(Some(1234), Some("BHD")).amount.as_deref(),
            Some("1.234")
        );
        let unknown = Money::from_minor(Some(100), Some("XYZ"));
        assert_eq!(unknown.amount_minor, None);
        let d = Money::from_decimal(Some("100.000000"), Some("usd"));
        assert_eq!(d.amount_minor, Some(10000));
        assert_eq!(d.amount.as_deref(), Some("100.000000"));
    }

    #[test]
    fn outcome_words() {
        assert_eq!(Outcome::from_word("SUCCESS"), Outcome::Succeeded);
        assert_eq!(Outcome::from_word("available"), Outcome::Info);
        assert_eq!(Outcome::from_word("Canceled"), Outcome::Cancelled);
        assert_eq!(Outcome::from_word("auth_success"), Outcome::Pending);
        assert_eq!(Outcome::from_word("declined"), Outcome::Failed);
    }

    #[test]
    fn bounded_names_fit_short_strings() {
        assert_eq!(
            bounded_name("src", "charge.succeeded"),
            "src.charge.succeeded"
        );
        let long = "é".repeat(300);
        let b = bounded_name(&"s".repeat(64), &long);
        assert!(b.len() <= SHORT_STRING_MAX, "{}", b.len());
        assert!(b.contains('~'));
        assert_eq!(b, bounded_name(&"s".repeat(64), &long), "deterministic");
        let other = format!("{}x", "é".repeat(300));
        assert_ne!(
            b,
            bounded_name(&"s".repeat(64), &other),
            "the hash tells them apart"
        );
        let exact = "a".repeat(SHORT_STRING_MAX - 2);
        assert_eq!(bounded_name("s", &exact).len(), SHORT_STRING_MAX);
        assert!(bounded_name("s", &format!("{exact}a")).len() <= SHORT_STRING_MAX);
    }

    fn normalized(payload: Payload) -> Normalized {
        Normalized {
            event_type: "charge.succeeded".into(),
            provider_event_id: Some("evt_1".into()),
            dedup_key: "evt_1".into(),
            category: Category::Payment,
            outcome: Outcome::Succeeded,
            order_no: Some("o1".into()),
            transaction_id: None,
            money: Money::from_minor(Some(100), Some("cny")),
            livemode: Some(true),
            occurred_at: None,
            signed_time: None,
            content_hash: [0; 32],
            payload,
        }
    }

    #[test]
    fn cloudevent_with_the_body_inside() {
        let body = bytes::Bytes::from_static(b" {\"a\": [1, \"\\u00e9\"]}\n");
        let at = time::macros::datetime!(2026-11-22 10:00:00.123 UTC);
        let e = Event::build(
            "src",
            "pingpp",
            normalized(Payload::Body),
            at,
            None,
            body.clone(),
        );
        let off = e.body_offset.unwrap();
        assert_eq!(&e.message[off..off + body.len()], &body[..]);
        let v: Value = serde_json::from_slice(&e.message).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["subject"], "o1");
        assert_eq!(v["time"], "2026-11-22T10:00:00Z");
        assert_eq!(v["data"]["received_at"], "2026-11-22T10:00:00.123Z");
        assert_eq!(v["data"]["occurred_at"], Value::Null);
        assert_eq!(v["data"]["amount"], "1.00");
        assert_eq!(v["data"]["payload"]["a"][1], "é");
        let keys: Vec<_> = v["data"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.last().map(String::as_str), Some("payload"));

        let j = Event::build(
            "src",
            "pingpp",
            normalized(Payload::Json(serde_json::json!({"k": "v"}))),
            at,
            None,
            body,
        );
        assert_eq!(j.body_offset, None);
        let v: Value = serde_json::from_slice(&j.message).unwrap();
        assert_eq!(v["data"]["payload"]["k"], "v");
    }
}
