//! V2 (legacy) notifications: flat form fields.

use super::{Lookup, Mapped, parse_time};
use crate::event::{Category, Money, Outcome};

pub(super) fn map(l: &Lookup<'_, '_>) -> Mapped {
    let payment_type = l.get("paymentType");
    let status = l.get("status");
    let txn = l.get("transactionId");
    let lower = |s: &str| s.to_ascii_lowercase();
    let event_type = match (&payment_type, &status) {
        (Some(p), Some(s)) => format!("{}.{}", lower(p), lower(s)),
        (Some(p), None) => lower(p),
        (None, _) => "notification".to_string(),
    };
    let dedup_key = txn.as_ref().map(|t| {
        format!(
            "{}:{t}:{}",
            payment_type.as_deref().unwrap_or(""),
            status.as_deref().unwrap_or("")
        )
    });
    let category = match payment_type.as_deref() {
        Some(p) if p.eq_ignore_ascii_case("REFUND") => Category::Refund,
        _ => Category::Payment,
    };
    Mapped {
        event_type,
        dedup_key,
        category,
        outcome: status
            .as_deref()
            .map(Outcome::from_word)
            .unwrap_or(Outcome::Info),
        order_no: l.get("merchantTransactionId"),
        transaction_id: txn,
        money: Money::from_decimal(l.get("amount").as_deref(), l.get("currency").as_deref()),
        occurred_at: l.get("transactionTime").as_deref().and_then(parse_time),
    }
}
