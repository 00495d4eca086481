//! The provider's side: real HTTP over loopback, and Ping++ events signed with a key made for
//! this run.

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Sha256;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON body expected, got {:?}", self.body))
    }
}

pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).expect("request"))
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Posts a Ping++ event signed with this run's key.
pub async fn post_pingpp(client: &HttpClient, url: &str, body: &str) -> Reply {
    let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
    send(
        client,
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", &sig),
        ],
        body.to_string(),
    )
    .await
}

pub fn sample_event() -> String {
    payhook::testkit::pingpp_event("charge.succeeded", &mut rand::thread_rng())
}

pub fn shared_vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors")
}

/// Load until the daemon goes away: `senders` tasks each post up to `each` fresh signed events
/// and report (event id, status) for every answer; a sender stops at its first connection error.
pub fn load(
    url: &str,
    senders: usize,
    each: usize,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, u16)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let http = client();
    for _ in 0..senders {
        let (http, url, tx) = (http.clone(), url.to_string(), tx.clone());
        tokio::spawn(async move {
            for _ in 0..each {
                let body = sample_event();
                let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
                let req = hyper::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("x-pingplusplus-signature", sig)
                    .body(Full::new(Bytes::from(body.clone())))
                    .expect("request");
                let Ok(resp) = http.request(req).await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&body).expect("sample is JSON");
                let id = v["id"].as_str().expect("sample has an id").to_string();
                let _ = tx.send((id, resp.status().as_u16()));
            }
        });
    }
    rx
}

/// An RSA key pair made for this run, as Ping++ would hold the private half.
pub struct Keys {
    pub signing: SigningKey<Sha256>,
    pub private_pem: String,
    pub public_pem: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        let private = RsaPrivateKey::new(&mut rng, 2048).expect("generate RSA key");
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM");
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("private PEM")
            .to_string();
        Keys {
            signing: SigningKey::new(private),
            private_pem,
            public_pem,
        }
    })
}
