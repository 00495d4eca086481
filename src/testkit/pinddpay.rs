//! Pinddpay samples: webhooks shaped like the documented ones (signed by the caller with
//! [`crate::providers::pinddpay::sign`], per the source's `sign_scheme`).

use rand::Rng;

/// A Pinddpay webhook (`order.paid` unless told otherwise), dated now.
pub fn event(event_name: &str, app_id: &str, rng: &mut impl Rng) -> String {
    let now = time::OffsetDateTime::now_utc();
    let at = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let n: u64 = rng.gen_range(100_000_000..999_999_999);
    let cents: u64 = rng.gen_range(100..100_000);
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let status = event_name.rsplit('.').next().unwrap_or("paid");
    let mut event = serde_json::json!({
        "eventId": format!("evt{n}{:06}", rng.gen_range(0..1_000_000u32)),
        "eventAt": at,
        "eventName": event_name,
        "appId": app_id,
        "order": {
            "id": format!("{n}"), "merchantOrderNo": format!("M{n}"), "email": "buyer@example.com",
            "amount": amount, "quantity": 1, "tradeNo": format!("T{n}"), "currency": "USD",
            "country": "US", "status": status, "statusEn": status, "paymentMethod": "card",
            "rate": "1.0000"
        },
        "transaction": {"tradeNo": format!("T{n}"), "capturedAmount": amount, "currency": "USD"},
    });
    if event_name.starts_with("refund.") {
        event["refund"] = serde_json::json!({
            "id": format!("R{n}"), "refundAmount": amount, "currency": "USD", "refundAt": at,
        });
    } else if event_name.starts_with("dispute.") {
        event["dispute"] = serde_json::json!({
            "id": format!("D{n}"), "reason": "fraudulent", "disputeAt": at, "status": status,
        });
    }
    event.to_string()
}
