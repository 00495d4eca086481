//! Signed webhooks shaped like each provider's, each a distinct event: every id and dedup-key
//! part comes from a run tag and a sequence number, so N requests are N distinct events (random
//! ids would collide by the birthday bound at a million PingPong events).
//!
//! The bodies follow `payhook simulate`'s samples; the signatures come from payhook's own signing
//! functions, so a sample verifies exactly when the daemon's verifier agrees with them.
//!
//! Padding: `pad` goes into a text field the provider carries (a description or alarm content),
//! so a body can be grown to 64 KiB or 1 MiB for the cost curves. The pad is plain ASCII that
//! needs no escaping, so it appears verbatim in the body and the load generator can send one
//! shared copy of it between each request's own head and tail.

use std::path::Path;

use payhook::providers::pinddpay::{self, SignScheme};
use payhook::providers::pingpong;
use rsa::pkcs1v15::SigningKey;
use serde_json::json;
use sha2::Sha256;

/// Who signs, with what.
pub enum Provider {
    Pinddpay {
        secret: String,
        scheme: SignScheme,
        app_id: String,
    },
    Pingpong {
        salt: String,
        acc_id: String,
    },
    WechatAlarm {
        app_id: String,
        app_key: String,
    },
    Pingpp {
        key: Box<SigningKey<Sha256>>,
    },
}

/// One request as the provider sends it (built off the clock; allocation here is fine).
pub struct Sample {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn load_private_key(path: &Path) -> Result<rsa::RsaPrivateKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|e| format!("{}: not an RSA private key: {e}", path.display()))
}

/// Plain ASCII filler that JSON, XML CDATA and PingPong's sign content carry verbatim.
pub fn filler(len: usize) -> String {
    const WORDS: &[u8] = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do ";
    WORDS.iter().cycle().take(len).map(|&b| b as char).collect()
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Pinddpay { .. } => "pinddpay",
            Provider::Pingpong { .. } => "pingpong",
            Provider::WechatAlarm { .. } => "wechat_alarm",
            Provider::Pingpp { .. } => "pingpp",
        }
    }

    /// Sample number `seq` of the run `tag`, with `pad` in its free-text field.
    pub fn sample(&self, tag: &str, seq: u64, pad: &str) -> Sample {
        match self {
            Provider::Pinddpay {
                secret,
                scheme,
                app_id,
            } => {
                let body = pinddpay_body(tag, seq, app_id, pad);
                let sign = pinddpay::sign(*scheme, body.as_bytes(), secret);
                Sample {
                    content_type: "application/json",
                    headers: vec![(pinddpay::SIGNATURE_HEADER, sign)],
                    body,
                }
            }
            Provider::Pingpong { salt, acc_id } => Sample {
                content_type: "application/json",
                headers: Vec::new(),
                body: pingpong_body(salt, acc_id, tag, seq, pad),
            },
            Provider::WechatAlarm { app_id, app_key } => {
                let now = now_unix();
                let content =
                    format!("transaction_id=1900000109{tag}{seq:010}&timestamp={now}{pad}");
                Sample {
                    content_type: "text/xml",
                    headers: Vec::new(),
                    body: payhook::testkit::wechat::signed_alarm_xml(
                        app_id,
                        app_key,
                        "1001",
                        "发货超时",
                        &content,
                        now,
                    ),
                }
            }
            Provider::Pingpp { key } => {
                let body = pingpp_body(tag, seq, pad);
                let sig = payhook::testkit::pingpp::sign(key, body.as_bytes());
                Sample {
                    content_type: "application/json; charset=utf-8",
                    headers: vec![("X-Pingplusplus-Signature", sig)],
                    body,
                }
            }
        }
    }
}

fn amount(seq: u64) -> (u64, String) {
    let cents = 100 + (seq * 7919) % 99_900;
    (cents, format!("{}.{:02}", cents / 100, cents % 100))
}

/// A Pinddpay `order.paid` webhook like the documented ones (about 600 bytes unpadded).
fn pinddpay_body(tag: &str, seq: u64, app_id: &str, pad: &str) -> String {
    let at = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let n = format!("{tag}{seq:010}");
    let (_, amount) = amount(seq);
    let mut order = json!({
        "id": n, "merchantOrderNo": format!("M{n}"), "email": "buyer@example.com",
        "amount": amount, "quantity": 1, "tradeNo": format!("T{n}"), "currency": "USD",
        "country": "US", "status": "paid", "statusEn": "paid", "paymentMethod": "card",
        "rate": "1.0000"
    });
    if !pad.is_empty() {
        order["description"] = json!(pad);
    }
    json!({
        "eventId": format!("evt{n}"),
        "eventAt": at,
        "eventName": "order.paid",
        "appId": app_id,
        "order": order,
        "transaction": {"tradeNo": format!("T{n}"), "capturedAmount": amount, "currency": "USD"},
    })
    .to_string()
}

/// A PingPong V4 RECHARGE SUCCESS notice, signed with SHA-256 (dedup key: its transactionId).
fn pingpong_body(salt: &str, acc_id: &str, tag: &str, seq: u64, pad: &str) -> String {
    let now_ms = now_unix() * 1000;
    let n = format!("{tag}{seq:010}");
    let (cents, _) = amount(seq);
    let biz = json!({
        "amount": format!("{}.{:02}0000", cents / 100, cents % 100), "currency": "USD",
        "merchantTransactionId": format!("PMT-{n}"), "transactionId": format!("2023{n}"),
        "notifyType": "RECHARGE", "status": "SUCCESS", "transactionTime": now_ms.to_string(),
        "paymentMethod": {"type": "scheme", "brand": "VISA"},
    });
    let description = if pad.is_empty() {
        "Transaction succeeded".to_string()
    } else {
        format!("Transaction succeeded {pad}")
    };
    payhook::testkit::pingpong::signed_json(
        salt,
        pingpong::SignType::Sha256,
        &[
            ("accId", json!(acc_id)),
            ("clientId", json!(acc_id.get(..19).unwrap_or(acc_id))),
            ("code", json!("000000")),
            ("description", json!(description)),
            ("signType", json!("SHA256")),
            ("bizContent", json!(biz.to_string())),
        ],
    )
}

/// A Ping++ `charge.succeeded` event: one line, raw UTF-8, no trailing newline.
fn pingpp_body(tag: &str, seq: u64, pad: &str) -> String {
    let now = now_unix();
    let id = format!("{tag}{seq:016}");
    let (cents, _) = amount(seq);
    let order_no = format!("{}{seq:010}", 1 + seq % 9);
    let mut charge = json!({
        "id": format!("ch_{id}"), "object": "charge", "created": now, "livemode": false,
        "paid": true, "refunded": false, "app": "app_1Gqj58ynP0mHeX1q", "channel": "alipay",
        "order_no": order_no, "client_ip": "127.0.0.1", "amount": cents,
        "amount_settle": cents, "currency": "cny", "subject": "测试订单", "body": "payhook bench",
        "time_paid": now, "transaction_no": format!("{}", seq * 7 + 1_000_000_000),
    });
    if !pad.is_empty() {
        charge["description"] = json!(pad);
    }
    json!({
        "id": format!("evt_{id}"), "created": now, "livemode": false, "type": "charge.succeeded",
        "data": { "object": charge }, "object": "event", "pending_webhooks": 0,
        "request": format!("iar_{id}"),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_distinct_and_carry_the_pad() {
        let p = Provider::Pinddpay {
            secret: "s".into(),
            scheme: SignScheme::BodySecret,
            app_id: "app".into(),
        };
        let pad = filler(5000);
        let a = p.sample("t", 1, &pad);
        let b = p.sample("t", 2, &pad);
        assert_ne!(a.body, b.body);
        assert!(a.body.contains(&pad));
        let q = Provider::Pingpong {
            salt: "s".into(),
            acc_id: "2018092714313010016291".into(),
        };
        assert!(q.sample("t", 1, &pad).body.contains(&pad));
        let w = Provider::WechatAlarm {
            app_id: "wx".into(),
            app_key: "k".into(),
        };
        assert!(w.sample("t", 1, &pad).body.contains(&pad));
    }
}
