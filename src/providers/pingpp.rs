//! Ping++: RSA PKCS#1 v1.5 with SHA-256 over the raw body, in `X-Pingplusplus-Signature`.

use std::path::{Path, PathBuf};

use base64::Engine;
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{Inbound, ProviderError, Verifier, body_hash_key};
use crate::event::{Category, Money, Normalized, Outcome, Payload};

pub const SIGNATURE_HEADER: &str = "x-pingplusplus-signature";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PEM files; a webhook verifies if any of them verifies it, so keys rotate without a gap.
    pub public_keys: Vec<PathBuf>,
}

pub struct Pingpp {
    keys: Vec<VerifyingKey<Sha256>>,
    key_sizes: Vec<usize>,
}

/// Parses a PEM public key as Ping++'s dashboard and SDKs ship it: SPKI or PKCS#1, possibly with
/// a UTF-8 BOM and CRLF line ends.
pub fn parse_public_key(pem: &[u8]) -> Result<RsaPublicKey, String> {
    let pem = pem.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(pem);
    let text = std::str::from_utf8(pem).map_err(|_| "key file is not UTF-8 text".to_string())?;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    if text.contains("BEGIN RSA PUBLIC KEY") {
        RsaPublicKey::from_pkcs1_pem(text).map_err(|e| format!("bad PKCS#1 RSA public key: {e}"))
    } else if text.contains("BEGIN PUBLIC KEY") {
        RsaPublicKey::from_public_key_pem(text).map_err(|e| format!("bad RSA public key: {e}"))
    } else {
        Err("not a PEM public key (expected BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)".into())
    }
}

impl Pingpp {
    pub fn from_config(c: &Config, base: &Path) -> Result<Pingpp, String> {
        if c.public_keys.is_empty() {
            return Err("public_keys is empty: at least one Ping++ public key is required".into());
        }
        let mut keys = Vec::new();
        for p in &c.public_keys {
            let path = base.join(p);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read public key {}: {e}", path.display()))?;
            let key = parse_public_key(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
            keys.push(key);
        }
        Ok(Pingpp::from_keys(keys))
    }

    pub fn from_keys(keys: Vec<RsaPublicKey>) -> Pingpp {
        Pingpp {
            key_sizes: keys.iter().map(|k| k.size()).collect(),
            keys: keys.into_iter().map(VerifyingKey::new).collect(),
        }
    }

    fn check_signature(&self, req: &Inbound<'_>) -> Result<(), ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let header = req
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| unauthorized("missing X-Pingplusplus-Signature header"))?;
        let header = header
            .to_str()
            .map_err(|_| unauthorized("X-Pingplusplus-Signature is not ASCII"))?
            .trim();
        if header.is_empty() {
            return Err(unauthorized("empty X-Pingplusplus-Signature header"));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(header)
            .map_err(|_| unauthorized("X-Pingplusplus-Signature is not standard base64"))?;
        for (key, size) in self.keys.iter().zip(&self.key_sizes) {
            if raw.len() != *size {
                continue;
            }
            let Ok(sig) = Signature::try_from(raw.as_slice()) else {
                continue;
            };
            if key.verify(req.body, &sig).is_ok() {
                return Ok(());
            }
        }
        Err(unauthorized(
            "signature does not verify with any configured key",
        ))
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn category(event_type: &str) -> Category {
    let first = event_type.split('.').next().unwrap_or("");
    if event_type.starts_with("account.summary.") {
        return Category::Summary;
    }
    if event_type.starts_with("balance.withdrawal.") {
        return Category::Payout;
    }
    match first {
        "charge" | "order" | "recharge" => Category::Payment,
        "refund" | "batch_refund" => Category::Refund,
        "transfer" | "batch_transfer" | "red_envelope" => Category::Payout,
        "summary" => Category::Summary,
        "agreement" => Category::Authorization,
        _ => Category::Other,
    }
}

/// Maps a verified Ping++ event (already parsed) to the normalized fields.
pub fn normalize(event: Value, body: &[u8]) -> Result<Normalized, ProviderError> {
    if !event.is_object() {
        return Err(ProviderError::Malformed(
            "Ping++ event must be a JSON object".into(),
        ));
    }
    let event_type = str_field(&event, "type")
        .ok_or_else(|| ProviderError::Malformed("Ping++ event has no \"type\"".into()))?
        .to_string();
    let id = str_field(&event, "id").map(str::to_string);
    let dedup_key = id.clone().unwrap_or_else(|| body_hash_key(body));
    let occurred_at = event
        .get("created")
        .and_then(Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let object = event
        .get("data")
        .and_then(|d| d.get("object"))
        .filter(|o| o.is_object());
    let (order_no, transaction_id, money) = match object {
        Some(o) => (
            str_field(o, "order_no")
                .or_else(|| str_field(o, "charge_order_no"))
                .map(str::to_string),
            str_field(o, "id").map(str::to_string),
            Money::from_minor(
                o.get("amount").and_then(Value::as_i64),
                str_field(o, "currency"),
            ),
        ),
        None => (None, None, Money::default()),
    };
    let last = event_type.rsplit('.').next().unwrap_or("");
    Ok(Normalized {
        category: category(&event_type),
        outcome: Outcome::from_word(last),
        provider_event_id: id,
        dedup_key,
        order_no,
        transaction_id,
        money,
        livemode: event.get("livemode").and_then(Value::as_bool),
        signed_time: occurred_at,
        occurred_at,
        content_hash: sha2::Digest::finalize(<Sha256 as sha2::Digest>::new_with_prefix(body))
            .into(),
        event_type,
        payload: Payload::Json(event),
    })
}

impl Verifier for Pingpp {
    fn provider(&self) -> &'static str {
        "pingpp"
    }

    fn accepts_content_type(&self, essence: Option<&str>) -> bool {
        essence == Some("application/json")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError> {
        // Parsing first is safe (serde_json bounds depth) and lets a garbled body be told apart
        // from a forged one; the signature is still checked over the raw bytes.
        let event: Value = serde_json::from_slice(req.body)
            .map_err(|e| ProviderError::Malformed(format!("body is not valid JSON: {e}")))?;
        self.check_signature(req)?;
        normalize(event, req.body)
    }

    fn ack_body(&self) -> &'static str {
        "success"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(category("charge.succeeded"), Category::Payment);
        assert_eq!(category("batch_refund.succeeded"), Category::Refund);
        assert_eq!(category("balance.withdrawal.succeeded"), Category::Payout);
        assert_eq!(category("account.summary.available"), Category::Summary);
        assert_eq!(category("summary.daily.available"), Category::Summary);
        assert_eq!(category("agreement.succeeded"), Category::Authorization);
        assert_eq!(category("customs.succeeded"), Category::Other);
    }

    #[test]
    fn normalizes_charge() {
        let body = br#"{"id":"evt_1","object":"event","type":"charge.succeeded","livemode":true,"created":1458736932,"data":{"object":{"id":"ch_1","order_no":"123","amount":100,"currency":"cny"}}}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        let n = normalize(v, body).unwrap();
        assert_eq!(n.dedup_key, "evt_1");
        assert_eq!(n.order_no.as_deref(), Some("123"));
        assert_eq!(n.money.amount.as_deref(), Some("1.00"));
        assert_eq!(n.money.currency.as_deref(), Some("CNY"));
        assert_eq!(n.outcome, Outcome::Succeeded);
        assert_eq!(n.occurred_at.unwrap().unix_timestamp(), 1458736932);
    }

    #[test]
    fn old_payload_without_id_or_object() {
        let body = br#"{"type":"summary.daily.available","data":[]}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        let n = normalize(v, body).unwrap();
        assert!(n.dedup_key.starts_with("sha256:"));
        assert_eq!(n.outcome, Outcome::Info);
        assert_eq!(n.money.amount, None);
    }

    #[test]
    fn missing_type_is_malformed() {
        let body = br#"{"id":"evt_1"}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        assert!(matches!(
            normalize(v, body),
            Err(ProviderError::Malformed(_))
        ));
    }

    mod properties {
        use std::sync::OnceLock;

        use proptest::prelude::*;
        use rand::SeedableRng;
        use rsa::pkcs1v15::SigningKey;

        use super::*;
        use crate::cli::simulate::{pingpp_event, pingpp_sign};

        fn key() -> &'static (SigningKey<Sha256>, Pingpp) {
            static KEY: OnceLock<(SigningKey<Sha256>, Pingpp)> = OnceLock::new();
            KEY.get_or_init(|| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(7);
                let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("keygen");
                let verifier = Pingpp::from_keys(vec![private.to_public_key()]);
                (SigningKey::new(private), verifier)
            })
        }

        fn check(body: &[u8], sig: &str) -> Result<Normalized, ProviderError> {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                SIGNATURE_HEADER,
                sig.parse().expect("base64 is a header value"),
            );
            key().1.verify(&Inbound {
                headers: &headers,
                body,
            })
        }

        const TYPES: [&str; 6] = [
            "charge.succeeded",
            "refund.succeeded",
            "transfer.succeeded",
            "summary.daily.available",
            "agreement.succeeded",
            "customs.succeeded",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn random_events_verify(seed in any::<u64>(), t in 0..TYPES.len()) {
                let body = pingpp_event(TYPES[t], &mut rand::rngs::StdRng::seed_from_u64(seed));
                let sig = pingpp_sign(&key().0, body.as_bytes());
                let n = check(body.as_bytes(), &sig).expect("a signed event verifies");
                let v: Value = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(n.event_type.as_str(), TYPES[t]);
                prop_assert_eq!(Some(n.dedup_key.as_str()), v["id"].as_str());
                // Ping++ refund objects carry no currency: then the amount cannot be placed.
                let object = &v["data"]["object"];
                let expected = object["currency"].as_str().and(object["amount"].as_i64());
                prop_assert_eq!(n.money.amount_minor, expected);
                prop_assert_eq!(n.payload.json(), &v);
            }

            #[test]
            fn any_changed_byte_is_refused(seed in any::<u64>(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
                let body = pingpp_event("charge.succeeded", &mut rand::rngs::StdRng::seed_from_u64(seed));
                let sig = pingpp_sign(&key().0, body.as_bytes());
                let mut bytes = body.into_bytes();
                let i = pos.index(bytes.len());
                bytes[i] ^= x;
                prop_assert!(check(&bytes, &sig).is_err());
            }
        }
    }
}
