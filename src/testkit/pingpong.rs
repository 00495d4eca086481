//! PingPong samples: V4 envelopes, disputes and V2 forms, signed with
//! [`crate::providers::pingpong::sign_content`] and [`crate::providers::pingpong::sign`].

use rand::Rng;
use serde_json::{Map, Value, json};

use crate::providers::pingpong::{SignType, sign, sign_content};

/// The text a top-level scalar is signed as: a string's decoded value, else the JSON text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A signed JSON body from top-level scalars in this order, with `sign` appended. Strings are
/// signed as themselves, other scalars as their JSON text, null and empty values left out.
pub fn signed_json(salt: &str, sign_type: SignType, fields: &[(&str, Value)]) -> String {
    let texts: Vec<(&str, Option<String>)> =
        fields.iter().map(|(k, v)| (*k, scalar_text(v))).collect();
    let content = sign_content(salt, texts.iter().map(|(k, v)| (*k, v.as_deref())));
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert((*k).to_string(), v.clone());
    }
    m.insert("sign".into(), Value::String(sign(sign_type, &content)));
    Value::Object(m).to_string()
}

/// A signed V2 form body from these fields (MD5 unless they carry another `signType`).
pub fn signed_form(salt: &str, fields: &[(&str, &str)]) -> String {
    let sign_type = fields
        .iter()
        .find(|(k, _)| *k == "signType")
        .and_then(|(_, v)| SignType::parse(v))
        .unwrap_or(SignType::Md5);
    let content = sign_content(salt, fields.iter().map(|(k, v)| (*k, Some(*v))));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .append_pair("sign", &sign(sign_type, &content))
        .finish()
}

/// A signed PingPong notification dated now. `kind`: `recharge` (default), `refund`, `capture`,
/// `void`, `auth`, `failed` (V4 JSON, SHA256), `dispute` (flat JSON), `v2` (form-encoded, MD5).
pub fn sample(salt: &str, acc_id: &str, kind: &str, rng: &mut impl Rng) -> (&'static str, String) {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let n: u64 = rng.gen_range(1_000_000_000..9_999_999_999);
    let cents: u64 = rng.gen_range(100..100_000);
    let amount = format!("{}.{:02}0000", cents / 100, cents % 100);
    let client_id = acc_id.get(..19).unwrap_or(acc_id);
    let kind = kind.to_ascii_lowercase();
    match kind.as_str() {
        "dispute" => {
            let body = signed_json(
                salt,
                SignType::Sha256,
                &[
                    ("accId", json!(acc_id)),
                    ("disputePspReference", json!(format!("DP{n}"))),
                    ("merchantReference", json!(format!("PMT-{n}"))),
                    ("originalReference", json!(format!("2023{n}"))),
                    ("eventCode", json!("NOTIFICATION_OF_CHARGEBACK")),
                    ("eventDate", json!(now_ms.to_string())),
                    ("chargebackStatus", json!("CHARGEBACK")),
                    ("amount", json!(amount)),
                    ("currency", json!("USD")),
                    ("reason", json!("Fraud")),
                    ("defendable", json!(true)),
                    ("signType", json!("SHA256")),
                ],
            );
            ("application/json", body)
        }
        "v2" => {
            let t = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year][month][day][hour][minute][second]"
                ))
                .unwrap_or_default();
            let (amount, txn, order) = (
                format!("{}.{:02}", cents / 100, cents % 100),
                format!("PS{n}"),
                format!("M-{n}"),
            );
            let body = signed_form(
                salt,
                &[
                    ("accId", acc_id),
                    ("clientId", client_id),
                    ("amount", &amount),
                    ("currency", "USD"),
                    ("code", "000000"),
                    ("description", "Transaction succeeded"),
                    ("merchantTransactionId", &order),
                    ("transactionId", &txn),
                    ("transactionTime", &t),
                    ("status", "SUCCESS"),
                    ("paymentType", "SALE"),
                    ("signType", "MD5"),
                    ("token", ""),
                ],
            );
            ("application/x-www-form-urlencoded", body)
        }
        _ => {
            let (notify, status) = match kind.as_str() {
                "refund" => ("REFUND", "SUCCESS"),
                "capture" => ("CAPTURE", "SUCCESS"),
                "void" => ("VOID", "SUCCESS"),
                "auth" => ("RECHARGE", "AUTH_SUCCESS"),
                "failed" => ("RECHARGE", "FAILED"),
                _ => ("RECHARGE", "SUCCESS"),
            };
            let mut biz = json!({
                "amount": amount, "currency": "USD", "merchantTransactionId": format!("PMT-{n}"),
                "transactionId": format!("2023{n}"), "notifyType": notify, "status": status,
            });
            let t = now_ms.to_string();
            match notify {
                "REFUND" => {
                    biz["refundTime"] = json!(t);
                    biz["refundId"] = json!(format!("2024{n}"));
                    biz["merchantRefundId"] = json!(format!("RF-{n}"));
                }
                "CAPTURE" => {
                    biz["captureTime"] = json!(t);
                    biz["merchantCaptureId"] = json!(format!("CP-{n}"));
                }
                "VOID" => {
                    biz["voidTime"] = json!(t);
                    biz["merchantVoidId"] = json!(format!("VD-{n}"));
                }
                _ => {
                    biz["transactionTime"] = json!(t);
                    biz["paymentMethod"] = json!({"type": "scheme", "brand": "VISA"});
                }
            }
            let body = signed_json(
                salt,
                SignType::Sha256,
                &[
                    ("accId", json!(acc_id)),
                    ("clientId", json!(client_id)),
                    ("code", json!("000000")),
                    ("description", json!("Transaction succeeded")),
                    ("signType", json!("SHA256")),
                    ("bizContent", json!(biz.to_string())),
                ],
            );
            ("application/json", body)
        }
    }
}
