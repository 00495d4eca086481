//! V4 notifications: an envelope whose `bizContent` carries the payment, refund, capture or void
//! (`notifyType`), and one-click signing notices that may lack `notifyType`.

use super::{Lookup, Mapped, parse_time};
use crate::event::{Category, Money, Outcome};

pub(super) fn map(l: &Lookup<'_, '_>) -> Mapped {
    let notify = l.get("notifyType");
    let status = l.get("status");
    let notify_u = notify.as_deref().map(str::to_ascii_uppercase);
    let lower = |s: &str| s.to_ascii_lowercase();
    let event_type = match (&notify, &status) {
        (Some(n), Some(s)) => format!("{}.{}", lower(n), lower(s)),
        (Some(n), None) => lower(n),
        (None, _) => "notification".to_string(),
    };
    let category = match notify_u.as_deref() {
        Some("RECHARGE" | "CAPTURE" | "VOID") => Category::Payment,
        Some("REFUND") => Category::Refund,
        Some(n) if n.contains("SIGN") || n.contains("BIND") => Category::Authorization,
        _ => Category::Other,
    };
    let outcome = match (notify_u.as_deref(), status.as_deref()) {
        (_, None) => Outcome::Info,
        (Some("VOID"), Some(s)) if s.eq_ignore_ascii_case("SUCCESS") => Outcome::Cancelled,
        (_, Some(s)) => Outcome::from_word(s),
    };
    let txn = l.get("transactionId");
    let sub_id = l
        .get("refundId")
        .or_else(|| l.get("merchantRefundId"))
        .or_else(|| l.get("merchantCaptureId"))
        .or_else(|| l.get("merchantVoidId"));
    let dedup_key = match &notify {
        Some(n) if txn.is_some() || sub_id.is_some() => Some(format!(
            "{n}:{}:{}:{}",
            txn.as_deref().unwrap_or(""),
            sub_id.as_deref().unwrap_or(""),
            status.as_deref().unwrap_or("")
        )),
        _ => None,
    };
    let preferred = match notify_u.as_deref() {
        Some("REFUND") => "refundTime",
        Some("CAPTURE") => "captureTime",
        Some("VOID") => "voidTime",
        _ => "transactionTime",
    };
    let occurred_at = [
        preferred,
        "transactionTime",
        "refundTime",
        "captureTime",
        "voidTime",
    ]
    .iter()
    .find_map(|k| l.get(k).as_deref().and_then(parse_time));
    Mapped {
        event_type,
        dedup_key,
        category,
        outcome,
        order_no: l.get("merchantTransactionId"),
        transaction_id: txn,
        money: Money::from_decimal(l.get("amount").as_deref(), l.get("currency").as_deref()),
        occurred_at,
    }
}
