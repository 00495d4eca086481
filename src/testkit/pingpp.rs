//! Ping++ samples: events shaped like the real ones, signed with RSA-SHA256.

use rand::Rng;

/// The `X-Pingplusplus-Signature` value for `body`: standard base64 of the PKCS#1 v1.5 signature.
pub fn sign(key: &rsa::pkcs1v15::SigningKey<sha2::Sha256>, body: &[u8]) -> String {
    use base64::Engine;
    use rsa::signature::{SignatureEncoding, Signer as _};
    base64::engine::general_purpose::STANDARD.encode(key.sign(body).to_bytes())
}

/// A Ping++ event shaped like the real ones: one line, no trailing newline.
pub fn event(event_type: &str, rng: &mut impl Rng) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let order_no: u64 = rng.gen_range(100_000_000..999_999_999);
    let amount: u64 = rng.gen_range(1..100_000);
    let hex = |rng: &mut dyn rand::RngCore| format!("{:024x}", rng.gen_range(0..u128::MAX) >> 32);
    let object = if event_type.starts_with("refund.") {
        serde_json::json!({
            "id": format!("re_{}", hex(rng)), "object": "refund", "order_no": format!("{order_no}"),
            "amount": amount, "created": now, "succeed": true, "status": "succeeded",
            "time_succeed": now, "description": "退款", "charge": format!("ch_{}", hex(rng)),
            "charge_order_no": format!("{order_no}"), "transaction_no": format!("{}", order_no * 7),
        })
    } else {
        serde_json::json!({
            "id": format!("ch_{}", hex(rng)), "object": "charge", "created": now, "livemode": false,
            "paid": true, "refunded": false, "app": "app_1Gqj58ynP0mHeX1q", "channel": "alipay",
            "order_no": format!("{order_no}"), "client_ip": "127.0.0.1", "amount": amount,
            "amount_settle": amount, "currency": "cny", "subject": "测试订单", "body": "payhook simulate",
            "time_paid": now, "transaction_no": format!("{}", order_no * 7),
        })
    };
    serde_json::json!({
        "id": format!("evt_{}", hex(rng)), "created": now, "livemode": false, "type": event_type,
        "data": { "object": object }, "object": "event", "pending_webhooks": 0,
        "request": format!("iar_{}", hex(rng)),
    })
    .to_string()
}
