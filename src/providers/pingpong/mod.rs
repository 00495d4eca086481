//! PingPong Checkout: `sign` = upper-hex SHA-256 or MD5 over the salt followed by every other
//! non-empty top-level field as `key=value`, sorted by key and joined with `&`.
//!
//! Three shapes arrive on the same hook:
//!
//! - V4 (`application/json`): an envelope of top-level strings (`accId`, `clientId`, `signType`,
//!   `sign`, `bizContent`, sometimes `version`, `code`, `description`); `bizContent` is a JSON
//!   document carried as a string, signed as the decoded string, character for character
//!   ([`v4`]).
//! - Disputes (`application/json`, recognised by a non-empty top-level `eventCode`): flat JSON
//!   ([`dispute`]). With `dispute_sign_scope = "acc_id"` the accId-only signature
//!   (`SHA256(salt + "accId=" + accId)`) is accepted as well, which does **not** protect the
//!   body (**unconfirmed** by public docs).
//! - V2 (`application/x-www-form-urlencoded`): flat form fields, MD5 when `signType` is absent
//!   ([`v2`]).
//!
//! The signature covers decoded values, not bytes, so everything is derived from the body's
//! canonical form ([`canonical`]): the dedup key, every normalized field, the payload and the
//! content hash (SHA-256 of the signed text without the salt). Bytes the signature does not
//! cover cannot make another event (SPEC §6.3).
//!
//! Fields PingPong always sends, and which this module requires (else 400): `accId` (non-empty)
//! and, in JSON bodies, a `bizContent` that holds JSON when present. Keys other than
//! `[A-Za-z0-9_]+`, a key twice, and a value that could be read as two fields are 400 too. A
//! missing `sign` or an unknown `signType` is a 401 (the signature cannot be checked).

use std::path::Path;

use md5::Md5;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json::{json_error, strict_value, utf8_body};
use super::{
    Inbound, ProviderError, Verifier, any_secret, hash_key, hex_digest_eq, media_type_essence,
    sha256,
};
use crate::event::{Category, Money, Normalized, Outcome, Payload};
use crate::secret::{SecretList, SecretString};

pub mod canonical;
mod dispute;
mod v2;
mod v4;

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use canonical::{Canonical, Shape};

/// Which fields a dispute (chargeback) notification's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeSignScope {
    /// The general rule over all fields (default).
    #[default]
    All,
    /// Also accept `SHA256(salt + "accId=" + accId)`; the body is then not protected.
    AccId,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The merchant "secret" from Key Management, or a list of them while one is rotated.
    pub salt: SecretList,
    /// When set, `accId` must be one of these.
    #[serde(default)]
    pub acc_ids: Option<Vec<String>>,
    #[serde(default)]
    pub dispute_sign_scope: DisputeSignScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignType {
    Sha256,
    Md5,
}

/// A digest of either type, without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    bytes: [u8; 32],
    len: usize,
}

impl Signature {
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
}

impl SignType {
    pub fn parse(s: &str) -> Option<SignType> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("SHA256") || s.eq_ignore_ascii_case("SHA-256") {
            Some(SignType::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(SignType::Md5)
        } else {
            None
        }
    }

    /// The digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Signature {
        let mut bytes = [0u8; 32];
        let len = match self {
            SignType::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                bytes.copy_from_slice(&h.finalize());
                32
            }
            SignType::Md5 => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                if let Some(dst) = bytes.get_mut(..16) {
                    dst.copy_from_slice(&h.finalize());
                }
                16
            }
        };
        Signature { bytes, len }
    }
}

/// The signature pre-image: salt, then every field but `sign` whose value is not null or empty,
/// sorted by key (byte order), as `key=value` joined with `&`, no URL-encoding.
pub fn sign_content<'a>(
    salt: &str,
    fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let mut kv: Vec<(&str, &str)> = fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            Some(v) if !v.is_empty() && k != "sign" => Some((k, v)),
            _ => None,
        })
        .collect();
    kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut s = String::from(salt);
    for (i, (k, v)) in kv.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// The `sign` value for a pre-image: upper-case hex.
pub fn sign(sign_type: SignType, content: &str) -> String {
    hex::encode_upper(sign_type.digest(&[content.as_bytes()]).as_bytes())
}

pub struct Pingpong {
    salts: Vec<SecretString>,
    acc_ids: Option<Vec<String>>,
    dispute_scope: DisputeSignScope,
}

/// Which signature a body carried.
struct Verified {
    signature: Signature,
    /// The accId-only dispute signature: nothing but `accId` is signed.
    acc_id_only: bool,
}

/// Millisecond unix time, `yyyyMMddHHmmss` (UTC, 14 digits), RFC 3339 or `yyyy-MM-dd HH:mm:ss`.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        if s.len() == 14 {
            let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
            return time::PrimitiveDateTime::parse(s, &fmt)
                .ok()
                .map(|t| t.assume_utc());
        }
        let ms: i64 = s.parse().ok()?;
        return OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok();
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

/// Where a mapping reads a field: `bizContent` first (V4 details live there), then the
/// envelope. A string is trimmed and must not be empty; a number in `bizContent` gives its text.
struct Lookup<'c, 'a> {
    canon: &'c Canonical<'a>,
    biz: Option<&'c Value>,
}

impl Lookup<'_, '_> {
    fn get(&self, key: &str) -> Option<String> {
        let from_biz = self.biz.and_then(|b| match b.get(key)? {
            Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        from_biz.or_else(|| {
            self.canon
                .get(key)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
    }
}

/// What a shape's mapping derives; `dedup_key` is `None` when the shape has no usable id (then
/// the content hash is the key).
struct Mapped {
    event_type: String,
    dedup_key: Option<String>,
    category: Category,
    outcome: Outcome,
    order_no: Option<String>,
    transaction_id: Option<String>,
    money: Money,
    occurred_at: Option<OffsetDateTime>,
}

impl Pingpong {
    pub fn from_config(c: &Config, base: &Path) -> Result<Pingpong, String> {
        let salts = c.salt.resolve(base).map_err(|e| format!("salt: {e}"))?;
        if let Some(ids) = &c.acc_ids {
            if ids.is_empty() || ids.iter().any(|i| i.trim().is_empty()) {
                return Err("acc_ids must list non-empty account ids (or be left out)".into());
            }
        }
        Ok(Pingpong::new(
            salts,
            c.acc_ids.clone(),
            c.dispute_sign_scope,
        ))
    }

    /// `salts`: every accepted salt (a webhook verifies if any of them signs it).
    pub fn new(
        salts: Vec<SecretString>,
        acc_ids: Option<Vec<String>>,
        dispute_scope: DisputeSignScope,
    ) -> Pingpong {
        Pingpong {
            salts,
            acc_ids,
            dispute_scope,
        }
    }

    fn check_signature(
        &self,
        canon: &Canonical<'_>,
        signed_text: &str,
    ) -> Result<Verified, ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let given = canon
            .get("sign")
            .ok_or_else(|| unauthorized("missing sign"))?;
        let sign_type = match (canon.get("signType"), canon.shape) {
            (Some(t), _) => {
                SignType::parse(t).ok_or_else(|| unauthorized("signType is not SHA256 or MD5"))?
            }
            (None, Shape::V2) => SignType::Md5,
            (None, _) => return Err(unauthorized("missing signType")),
        };
        let mut found = None;
        any_secret(&self.salts, |salt| {
            let d = sign_type.digest(&[salt.as_bytes(), signed_text.as_bytes()]);
            let ok = hex_digest_eq(d.as_bytes(), given);
            if ok {
                found = Some(d);
            }
            ok
        });
        if let Some(signature) = found {
            return Ok(Verified {
                signature,
                acc_id_only: false,
            });
        }
        if canon.shape == Shape::Dispute && self.dispute_scope == DisputeSignScope::AccId {
            let acc = canon.get("accId").unwrap_or("");
            any_secret(&self.salts, |salt| {
                let d = sign_type.digest(&[salt.as_bytes(), &b"accId="[..], acc.as_bytes()]);
                let ok = hex_digest_eq(d.as_bytes(), given);
                if ok {
                    found = Some(d);
                }
                ok
            });
            if let Some(signature) = found {
                return Ok(Verified {
                    signature,
                    acc_id_only: true,
                });
            }
        }
        Err(unauthorized("sign does not match"))
    }
}

/// Maps a verified body in canonical form.
fn normalize(
    canon: &Canonical<'_>,
    signed_text: &str,
    verified: &Verified,
) -> Result<Normalized, ProviderError> {
    let biz = match canon.get("bizContent") {
        Some(t) if canon.biz_is_json() => {
            Some(strict_value(t).map_err(|e| json_error("bizContent is not JSON", &e))?)
        }
        _ => None,
    };
    let lookup = Lookup {
        canon,
        biz: biz.as_ref(),
    };
    let m = match canon.shape {
        Shape::V4 => v4::map(&lookup),
        Shape::Dispute => dispute::map(&lookup),
        Shape::V2 => v2::map(&lookup),
    };
    let content_hash = sha256(signed_text.as_bytes());
    // The payload holds the canonical fields only, in signed order: values as the signed
    // strings (the JSON type of a top-level scalar is not signed), `bizContent` decoded, and
    // `sign` as the digest that matched, in PingPong's upper-case hex.
    let mut payload = Map::new();
    let mut biz = biz;
    for f in &canon.fields {
        let v = if f.key == "sign" {
            Value::String(hex::encode_upper(verified.signature.as_bytes()))
        } else if f.key == "bizContent" && canon.biz_is_json() {
            biz.take().unwrap_or(Value::Null)
        } else {
            Value::String(f.value.to_string())
        };
        payload.insert(f.key.to_string(), v);
    }
    Ok(Normalized {
        dedup_key: m.dedup_key.unwrap_or_else(|| hash_key(&content_hash)),
        event_type: m.event_type,
        provider_event_id: None,
        category: m.category,
        outcome: m.outcome,
        order_no: m.order_no,
        transaction_id: m.transaction_id,
        money: m.money,
        livemode: None,
        occurred_at: m.occurred_at,
        // The accId-only signature covers no time.
        signed_time: if verified.acc_id_only {
            None
        } else {
            m.occurred_at
        },
        content_hash,
        payload: Payload::Json(Value::Object(payload)),
    })
}

impl Verifier for Pingpong {
    fn provider(&self) -> &'static str {
        "pingpong"
    }

    fn accepts_content_type(&self, essence: Option<&str>) -> bool {
        matches!(
            essence,
            Some("application/json" | "application/x-www-form-urlencoded")
        )
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError> {
        let form = req
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type_essence)
            .is_some_and(|e| e == "application/x-www-form-urlencoded");
        let canon = if form {
            canonical::parse_form(req.body)?
        } else {
            canonical::parse_json(utf8_body(req.body)?)?
        };
        let acc_id = canon
            .get("accId")
            .ok_or_else(|| ProviderError::Malformed("PingPong notification has no accId".into()))?;
        let signed_text = canon.signed_text();
        let verified = self.check_signature(&canon, &signed_text)?;
        if let Some(ids) = &self.acc_ids {
            if !ids.iter().any(|i| i == acc_id) {
                return Err(ProviderError::Unauthorized(
                    "accId is not one of the configured acc_ids".into(),
                ));
            }
        }
        normalize(&canon, &signed_text, &verified)
    }

    fn ack_body(&self) -> &'static str {
        "OK"
    }
}
