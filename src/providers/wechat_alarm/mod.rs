//! WeChat Pay (v2) alarm notices: a flat `<xml>` document signed with SHA-1 over sorted
//! `name=value` pairs plus the app's paySignKey (`appkey`).
//!
//! The document is read by the strict reader of [`xml`]. An alarm has exactly the seven known
//! elements (`AppId`, `ErrorType`, `Description`, `AlarmContent`, `TimeStamp`, `AppSignature`,
//! `SignMethod`; names case-insensitive): any other element is a 400, since the signature would
//! not cover it. `AppId`, `ErrorType`, `Description`, `AlarmContent` and `TimeStamp` are
//! required (missing: 400; `Description` and `AlarmContent` may be empty), `ErrorType` and
//! `TimeStamp` must be decimal digits (400; this also gives the signed text a single reading, as
//! `&` and `=` are not escaped in it); `AppSignature` and `SignMethod` missing are a 401, as a
//! missing signature.
//!
//! Everything derived comes from the signed content in canonical form (SPEC §6.3): trimmed
//! values under their canonical names, the signature payhook computed (not the received text,
//! whose case and padding the signature does not cover), `SignMethod` as `sha1`. The content
//! hash is the SHA-256 of the signed text without the key.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use super::{Inbound, ProviderError, Verifier, any_secret, hex_digest_eq, sha256};
use crate::duration::Dur;
use crate::event::{Category, Money, Normalized, Outcome, Payload};
use crate::secret::{SecretList, SecretString};
use crate::text::Quoted;

pub mod xml;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use xml::{XmlFields, parse_flat_xml, xml_trim};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The WeChat app id the alarms are for (`AppId` must equal it).
    pub app_id: String,
    /// The 128-character paySignKey of WeChat Pay v2 (not the partner key, not the AppSecret),
    /// or a list of them while one is rotated (any entry verifies).
    pub app_key: SecretList,
    /// When set, a `TimeStamp` further than this from now is refused (401). Off by default.
    #[serde(default)]
    pub max_clock_skew: Option<Dur>,
}

pub struct WechatAlarm {
    app_id: String,
    app_keys: Vec<SecretString>,
    max_clock_skew: Option<Duration>,
}

fn digest(pairs: &[(&str, &str)]) -> [u8; 20] {
    let mut kv: Vec<(String, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), xml_trim(v)))
        .collect();
    kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined = kv
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    Sha1::digest(joined.as_bytes()).into()
}

/// WeChat Pay v2's notice signature: names lower-cased, values trimmed, sorted by name, joined as
/// `name=value` with `&` (no URL-encoding), SHA-1, lower-case hex. The caller includes
/// `("appkey", key)` among the pairs.
pub fn v2_signature(pairs: &[(&str, &str)]) -> String {
    hex::encode(digest(pairs))
}

/// The elements of an alarm, by canonical name, in payload order.
const ELEMENTS: [&str; 7] = [
    "AppId",
    "ErrorType",
    "Description",
    "AlarmContent",
    "TimeStamp",
    "AppSignature",
    "SignMethod",
];

/// An alarm read from its document: each known element's trimmed value, by [`ELEMENTS`] index.
#[derive(Debug, Default)]
struct Alarm {
    values: [Option<String>; 7],
}

impl Alarm {
    fn from_fields(fields: XmlFields) -> Result<Alarm, ProviderError> {
        let mut a = Alarm::default();
        for (name, value) in fields {
            let i = ELEMENTS
                .iter()
                .position(|e| e.eq_ignore_ascii_case(&name))
                .ok_or_else(|| {
                    ProviderError::Malformed(format!(
                        "element <{}> is not part of an alarm notice (its signature would not \
                         cover it)",
                        Quoted(&name)
                    ))
                })?;
            // The reader already refused a name that appears twice (in any case).
            if let Some(slot) = a.values.get_mut(i) {
                *slot = Some(value);
            }
        }
        Ok(a)
    }

    fn get(&self, name: &str) -> Option<&str> {
        let i = ELEMENTS.iter().position(|e| *e == name)?;
        self.values.get(i)?.as_deref()
    }

    /// One of the five signed elements; missing is a 400.
    fn signed(&self, name: &str) -> Result<&str, ProviderError> {
        self.get(name)
            .ok_or_else(|| ProviderError::Malformed(format!("alarm has no <{name}>")))
    }
}

/// The five signed values, checked.
struct Signed<'a> {
    app_id: &'a str,
    error_type: &'a str,
    description: &'a str,
    alarm_content: &'a str,
    timestamp: &'a str,
}

impl<'a> Signed<'a> {
    fn read(a: &'a Alarm) -> Result<Signed<'a>, ProviderError> {
        let s = Signed {
            app_id: a.signed("AppId")?,
            error_type: a.signed("ErrorType")?,
            description: a.signed("Description")?,
            alarm_content: a.signed("AlarmContent")?,
            timestamp: a.signed("TimeStamp")?,
        };
        for (name, v) in [("ErrorType", s.error_type), ("TimeStamp", s.timestamp)] {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ProviderError::Malformed(format!(
                    "<{name}> is not decimal digits: {}",
                    Quoted(v)
                )));
            }
        }
        Ok(s)
    }

    /// The signed text, `name=value` sorted by name and joined with `&`, with the `appkey` pair
    /// when a key is given (the pre-image) or without it (the canonical content).
    fn text(&self, app_key: Option<&str>) -> String {
        let mut s = String::with_capacity(
            80 + self.alarm_content.len()
                + self.app_id.len()
                + self.description.len()
                + app_key.map_or(0, str::len),
        );
        for (i, (k, v)) in [
            ("alarmcontent", Some(self.alarm_content)),
            ("appid", Some(self.app_id)),
            ("appkey", app_key),
            ("description", Some(self.description)),
            ("errortype", Some(self.error_type)),
            ("timestamp", Some(self.timestamp)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .enumerate()
        {
            if i > 0 {
                s.push('&');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

impl WechatAlarm {
    pub fn from_config(c: &Config, base: &Path) -> Result<WechatAlarm, String> {
        if c.app_id.trim().is_empty() {
            return Err("app_id is empty".into());
        }
        let keys = c
            .app_key
            .resolve(base)
            .map_err(|e| format!("app_key: {e}"))?;
        if keys.iter().any(|k| k.expose().trim().is_empty()) {
            return Err("app_key is empty".into());
        }
        Ok(WechatAlarm::new(
            c.app_id.trim().to_string(),
            keys,
            c.max_clock_skew.map(|d| d.0),
        ))
    }

    /// `app_keys`: every accepted key (an alarm verifies if any of them signs it).
    pub fn new(
        app_id: String,
        app_keys: Vec<SecretString>,
        max_clock_skew: Option<Duration>,
    ) -> Self {
        WechatAlarm {
            app_id,
            app_keys,
            max_clock_skew,
        }
    }

    /// Checks the signature; returns the digest that matched.
    fn check(&self, alarm: &Alarm, signed: &Signed<'_>) -> Result<[u8; 20], ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let method = alarm
            .get("SignMethod")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| unauthorized("missing SignMethod"))?;
        if !method.eq_ignore_ascii_case("sha1") {
            return Err(unauthorized("SignMethod is not sha1"));
        }
        let given = alarm
            .get("AppSignature")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("missing AppSignature"))?;
        // Only XML whitespace was trimmed; U+3000, U+00A0 and the like make it not hex.
        if given.len() != 40 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unauthorized("AppSignature is not 40 hex digits"));
        }
        let mut found = None;
        any_secret(&self.app_keys, |key| {
            let d: [u8; 20] = Sha1::digest(signed.text(Some(key)).as_bytes()).into();
            let ok = hex_digest_eq(&d, given);
            if ok {
                found = Some(d);
            }
            ok
        });
        let digest = found.ok_or_else(|| unauthorized("AppSignature does not match"))?;
        if signed.app_id != self.app_id {
            return Err(unauthorized("AppId is not the configured app_id"));
        }
        if let Some(skew) = self.max_clock_skew {
            let ts = signed
                .timestamp
                .parse::<i64>()
                .map_err(|_| unauthorized("TimeStamp is not unix seconds"))?;
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let off = u64::try_from((i128::from(now) - i128::from(ts)).unsigned_abs())
                .unwrap_or(u64::MAX);
            if off > skew.as_secs() {
                return Err(unauthorized("TimeStamp is outside max_clock_skew"));
            }
        }
        Ok(digest)
    }
}

/// Maps a verified alarm, from its signed content only.
fn normalize(s: &Signed<'_>, digest: &[u8; 20]) -> Normalized {
    let sig = hex::encode(digest);
    let occurred_at = s
        .timestamp
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let mut payload = Map::new();
    for (k, v) in [
        ("AppId", s.app_id),
        ("ErrorType", s.error_type),
        ("Description", s.description),
        ("AlarmContent", s.alarm_content),
        ("TimeStamp", s.timestamp),
        ("AppSignature", &sig),
        ("SignMethod", "sha1"),
    ] {
        payload.insert(k.to_string(), Value::String(v.to_string()));
    }
    Normalized {
        event_type: format!("alarm.{}", s.error_type),
        provider_event_id: None,
        dedup_key: format!("{}:{}:{}:{sig}", s.app_id, s.error_type, s.timestamp),
        category: Category::Alarm,
        outcome: Outcome::Info,
        order_no: None,
        transaction_id: None,
        money: Money::default(),
        livemode: None,
        signed_time: occurred_at,
        occurred_at,
        content_hash: sha256(s.text(None).as_bytes()),
        payload: Payload::Json(Value::Object(payload)),
    }
}

impl Verifier for WechatAlarm {
    fn provider(&self) -> &'static str {
        "wechat_alarm"
    }

    fn accepts_content_type(&self, essence: Option<&str>) -> bool {
        matches!(essence, None | Some("text/xml" | "application/xml"))
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError> {
        let fields = parse_flat_xml(req.body).map_err(ProviderError::Malformed)?;
        let alarm = Alarm::from_fields(fields)?;
        let signed = Signed::read(&alarm)?;
        let digest = self.check(&alarm, &signed)?;
        Ok(normalize(&signed, &digest))
    }

    fn ack_body(&self) -> &'static str {
        "success"
    }
}
