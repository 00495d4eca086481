//! Disputes (chargebacks): flat JSON recognised by a non-empty top-level `eventCode`.

use super::{Lookup, Mapped, parse_time};
use crate::event::{Category, Money, Outcome};

pub(super) fn map(l: &Lookup<'_, '_>) -> Mapped {
    let code = l.get("eventCode").unwrap_or_default();
    let date = l.get("eventDate");
    let dedup_key = l
        .get("disputePspReference")
        .map(|p| format!("dispute:{p}:{code}:{}", date.as_deref().unwrap_or_default()));
    Mapped {
        event_type: format!("dispute.{}", code.to_ascii_lowercase()),
        dedup_key,
        category: Category::Dispute,
        outcome: Outcome::Info,
        order_no: l.get("merchantReference"),
        transaction_id: l
            .get("transactionId")
            .or_else(|| l.get("originalReference")),
        money: Money::from_decimal(l.get("amount").as_deref(), l.get("currency").as_deref()),
        occurred_at: date.as_deref().and_then(parse_time),
    }
}
