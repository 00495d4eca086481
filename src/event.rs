//! The normalized event every provider produces, and its encoding as the CloudEvent of SPEC §5.
//! The message is built once at intake and stored, so a replay years later sends the same bytes.

use serde::Serialize;
use serde_json::{Value, json};
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

/// What a provider module extracts from a verified webhook.
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
    pub payload: Value,
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

/// A verified, normalized webhook ready to be stored: everything the relay needs is in here.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub source: String,
    pub provider: &'static str,
    pub dedup_key: String,
    pub event_type: String,
    pub routing_key: String,
    pub received_at: OffsetDateTime,
    /// Unix seconds of the CloudEvent `time`.
    pub time_unix: i64,
    pub subject: Option<String>,
    /// The CloudEvent, serialized: the AMQP message body.
    pub message: Vec<u8>,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
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
        let time = n.occurred_at.unwrap_or(received_at);
        let mut ce = json!({
            "specversion": "1.0",
            "id": id.to_string(),
            "source": format!("payhook/{source}"),
            "type": format!("{provider}.{}", n.event_type),
        });
        let obj = ce.as_object_mut().expect("json! object");
        if let Some(s) = &n.order_no {
            obj.insert("subject".into(), Value::String(s.clone()));
        }
        obj.insert("time".into(), Value::String(rfc3339_seconds(time)));
        obj.insert("datacontenttype".into(), "application/json".into());
        obj.insert(
            "data".into(),
            json!({
                "provider": provider,
                "source": source,
                "event_type": n.event_type,
                "provider_event_id": n.provider_event_id,
                "dedup_key": n.dedup_key,
                "category": n.category,
                "outcome": n.outcome,
                "order_no": n.order_no,
                "transaction_id": n.transaction_id,
                "amount": n.money.amount,
                "amount_minor": n.money.amount_minor,
                "currency": n.money.currency,
                "livemode": n.livemode,
                "occurred_at": n.occurred_at.map(rfc3339_seconds),
                "received_at": rfc3339_millis(received_at),
                "payload": n.payload,
            }),
        );
        let message = serde_json::to_vec(&ce).expect("a JSON value always serializes");
        Event {
            id,
            source: source.to_string(),
            provider,
            routing_key: format!("{source}.{}", n.event_type),
            event_type: n.event_type,
            dedup_key: n.dedup_key,
            received_at,
            time_unix: time.unix_timestamp(),
            subject: n.order_no,
            message,
            content_type,
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
}
