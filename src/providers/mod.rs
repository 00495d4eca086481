//! One verifier per provider behind one trait. Adding a provider means one new file here and one
//! arm in [`ProviderConfig`]; the HTTP layer, store and relay never look inside a provider.

use std::path::Path;
use std::sync::Arc;

use hyper::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::Normalized;
use crate::secret::SecretString;

#[cfg(test)]
mod bench;
pub mod json;
pub mod pinddpay;
pub mod pingpong;
pub mod pingpp;
pub mod wechat_alarm;

/// Why a webhook was refused. The HTTP layer maps these to 400 and 401 in one place.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The body cannot be parsed or lacks fields the provider always sends (400).
    #[error("{0}")]
    Malformed(String),
    /// Missing or wrong signature, or an app/account id that is not ours (401).
    #[error("{0}")]
    Unauthorized(String),
}

/// The parts of a request a provider may look at.
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub trait Verifier: Send + Sync + 'static {
    /// The `provider` name of the config and the CloudEvent type prefix.
    fn provider(&self) -> &'static str;
    /// Whether this media type (lower-cased, parameters removed; `None` when absent) is one the
    /// provider sends. Anything else is a 415 before the body is read.
    fn accepts_content_type(&self, essence: Option<&str>) -> bool;
    /// Verifies the signature over the body exactly as received, then normalizes it.
    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError>;
    /// The body the provider expects with a 200.
    fn ack_body(&self) -> &'static str;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum ProviderConfig {
    Pingpp(pingpp::Config),
    Pinddpay(pinddpay::Config),
    Pingpong(pingpong::Config),
    WechatAlarm(wechat_alarm::Config),
}

impl ProviderConfig {
    /// Loads keys and secrets. Errors are messages for the operator (config error, exit 78).
    pub fn build(&self, base: &Path) -> Result<Arc<dyn Verifier>, String> {
        Ok(match self {
            ProviderConfig::Pingpp(c) => Arc::new(pingpp::Pingpp::from_config(c, base)?),
            ProviderConfig::Pinddpay(c) => Arc::new(pinddpay::Pinddpay::from_config(c, base)?),
            ProviderConfig::Pingpong(c) => Arc::new(pingpong::Pingpong::from_config(c, base)?),
            ProviderConfig::WechatAlarm(c) => {
                Arc::new(wechat_alarm::WechatAlarm::from_config(c, base)?)
            }
        })
    }

    pub fn provider_name(&self) -> &'static str {
        match self {
            ProviderConfig::Pingpp(_) => "pingpp",
            ProviderConfig::Pinddpay(_) => "pinddpay",
            ProviderConfig::Pingpong(_) => "pingpong",
            ProviderConfig::WechatAlarm(_) => "wechat_alarm",
        }
    }
}

/// SHA-256 of `data`: the content hash of [`Normalized`] is this over the signed content.
/// The one signature header of a request, as ASCII text without surrounding ASCII whitespace.
/// Missing, repeated (which of two signatures would count?) or not ASCII: 401.
pub fn signature_header<'a>(
    headers: &'a hyper::HeaderMap,
    name: &'static str,
) -> Result<&'a str, ProviderError> {
    let mut all = headers.get_all(name).iter();
    let value = all
        .next()
        .ok_or_else(|| ProviderError::Unauthorized(format!("missing {name} header")))?;
    if all.next().is_some() {
        return Err(ProviderError::Unauthorized(format!(
            "several {name} headers"
        )));
    }
    value
        .to_str()
        .map(str::trim_ascii)
        .map_err(|_| ProviderError::Unauthorized(format!("{name} is not ASCII")))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The dedup key for webhooks that carry no usable id (PROVIDERS.md, common rules): `sha256:`
/// and the hex of the content hash, i.e. of the signed content in its canonical form (SPEC §6.3),
/// so bytes the signature does not cover cannot change it.
pub fn hash_key(content_hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    s.push_str(&hex::encode(content_hash));
    s
}

/// Constant-time comparison of a digest with its hex text as received, ignoring the case of the
/// hex letters (PROVIDERS.md). `given` must be exactly the hex digits: nothing is trimmed here
/// (callers trim only what their format defines as padding, never Unicode spaces), and any other
/// length or character is a mismatch.
pub fn hex_digest_eq(expected: &[u8], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    const MAX: usize = 64;
    let n = expected.len();
    if n == 0 || n > MAX || given.len() != 2 * n {
        return false;
    }
    let mut decoded = [0u8; MAX];
    // Decoding depends only on the received text, never on the expected digest.
    if hex::decode_to_slice(given, &mut decoded[..n]).is_err() {
        return false;
    }
    decoded[..n].ct_eq(expected).into()
}

/// Whether any of the secrets signs the request: `matches(secret)` is evaluated for every entry
/// (each comparison constant-time), so the time taken does not tell which entry matched.
pub fn any_secret(secrets: &[SecretString], mut matches: impl FnMut(&str) -> bool) -> bool {
    let mut ok = false;
    for s in secrets {
        ok |= matches(s.expose());
    }
    ok
}

/// `application/json; charset=utf-8` → `application/json`.
pub fn media_type_essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_compare_ignores_case_and_nothing_else() {
        let d = [0xab, 0x01];
        assert!(hex_digest_eq(&d, "AB01"));
        assert!(hex_digest_eq(&d, "ab01"));
        assert!(hex_digest_eq(&d, "aB01"));
        assert!(!hex_digest_eq(&d, "ab02"));
        assert!(!hex_digest_eq(&d, "ab0"));
        assert!(!hex_digest_eq(&d, "ab011"));
        // No trimming of any kind: padding is the caller's business, Unicode spaces never are.
        for padded in [
            " ab01",
            "ab01 ",
            "ab01\n",
            "ab01\u{3000}",
            "\u{a0}ab01",
            "ab01\u{feff}",
        ] {
            assert!(!hex_digest_eq(&d, padded), "{padded:?}");
        }
        assert!(!hex_digest_eq(&d, "+b01"));
        assert!(!hex_digest_eq(&[], ""));
    }

    #[test]
    fn any_secret_tries_every_entry() {
        let list = [SecretString::new("old"), SecretString::new("new")];
        let mut seen = Vec::new();
        assert!(any_secret(&list, |s| {
            seen.push(s.to_string());
            s == "old"
        }));
        assert_eq!(seen, ["old", "new"], "no early exit");
        assert!(!any_secret(&list, |s| s == "other"));
        assert!(!any_secret(&[], |_| true));
    }

    #[test]
    fn hash_keys() {
        assert_eq!(
            hash_key(&sha256(b"")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn essence() {
        assert_eq!(
            media_type_essence("Application/JSON; charset=UTF-8"),
            "application/json"
        );
    }
}
