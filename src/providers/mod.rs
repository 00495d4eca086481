//! One verifier per provider behind one trait. Adding a provider means one new file here and one
//! arm in [`ProviderConfig`]; the HTTP layer, store and relay never look inside a provider.

use std::path::Path;
use std::sync::Arc;

use hyper::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::Normalized;

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

/// The dedup key for webhooks that carry no usable id (PROVIDERS.md, common rules).
pub fn body_hash_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Constant-time comparison of two hex digests, ignoring case.
pub fn hex_digest_eq(expected: &[u8], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given = given.trim().to_ascii_lowercase();
    let expected = hex::encode(expected);
    expected.as_bytes().ct_eq(given.as_bytes()).into()
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
    fn hex_compare_ignores_case() {
        let d = [0xab, 0x01];
        assert!(hex_digest_eq(&d, "AB01"));
        assert!(hex_digest_eq(&d, "ab01"));
        assert!(!hex_digest_eq(&d, "ab02"));
        assert!(!hex_digest_eq(&d, "ab0"));
    }

    #[test]
    fn essence() {
        assert_eq!(
            media_type_essence("Application/JSON; charset=UTF-8"),
            "application/json"
        );
    }
}
