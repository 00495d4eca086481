//! Correctly signed sample webhooks, one module per provider: what `payhook simulate` sends and
//! what the tests sign their fixtures with. They sign with the providers' own functions
//! ([`crate::providers`]), so a sample that verifies proves the pair agrees with itself; the
//! shared vectors prove it agrees with the providers.

use bytes::Bytes;
use rand::Rng;

use crate::secret::SecretString;

pub mod pinddpay;
pub mod pingpong;
pub mod pingpp;
pub mod wechat;

pub use pinddpay::event as pinddpay_event;
pub use pingpong::sample as pingpong_sample;
pub use pingpp::{event as pingpp_event, sign as pingpp_sign};

/// A request as the provider would send it.
#[derive(Clone)]
pub struct Sample {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// Builds signed samples for one source. Shared secrets may be lists (rotation); samples are
/// signed with the first entry, the one a provider would use after a rotation is written down
/// as "new first".
pub enum SampleMaker {
    Pingpp(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
    Pinddpay {
        secret: Vec<SecretString>,
        scheme: crate::providers::pinddpay::SignScheme,
        app_id: Option<String>,
    },
    Pingpong {
        salt: Vec<SecretString>,
        acc_id: String,
    },
    WechatAlarm {
        app_id: String,
        app_key: Vec<SecretString>,
    },
}

fn first(list: &[SecretString]) -> &str {
    list.first().map(SecretString::expose).unwrap_or("")
}

impl SampleMaker {
    /// A fresh sample; `event_type` is provider-specific (see `payhook simulate --help`).
    pub fn sample(&self, event_type: Option<&str>, rng: &mut impl Rng) -> Sample {
        match self {
            SampleMaker::Pingpp(key) => {
                let body = pingpp::event(event_type.unwrap_or("charge.succeeded"), rng);
                Sample {
                    content_type: "application/json; charset=utf-8",
                    headers: vec![(
                        "X-Pingplusplus-Signature",
                        pingpp::sign(key, body.as_bytes()),
                    )],
                    body: Bytes::from(body),
                }
            }
            SampleMaker::Pinddpay {
                secret,
                scheme,
                app_id,
            } => {
                let body = pinddpay::event(
                    event_type.unwrap_or("order.paid"),
                    app_id.as_deref().unwrap_or("app_simulate"),
                    rng,
                );
                Sample {
                    content_type: "application/json",
                    headers: vec![(
                        crate::providers::pinddpay::SIGNATURE_HEADER,
                        crate::providers::pinddpay::sign(*scheme, body.as_bytes(), first(secret)),
                    )],
                    body: Bytes::from(body),
                }
            }
            SampleMaker::Pingpong { salt, acc_id } => {
                let (content_type, body) =
                    pingpong::sample(first(salt), acc_id, event_type.unwrap_or("recharge"), rng);
                Sample {
                    content_type,
                    headers: Vec::new(),
                    body: Bytes::from(body),
                }
            }
            SampleMaker::WechatAlarm { app_id, app_key } => {
                let body = wechat::sample(app_id, first(app_key), event_type, rng);
                Sample {
                    content_type: "text/xml",
                    headers: Vec::new(),
                    body: Bytes::from(body),
                }
            }
        }
    }
}
