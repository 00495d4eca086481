//! Ping++: the whole path with a 1024-bit test key, and the signature header alone.

use std::sync::OnceLock;

use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use payhook::providers::{ProviderError, pingpp as provider};

use super::check::{assert_not_forged, flip, headers, run};
use super::verifiers::pingpp_keys;

/// The whole Ping++ path: the fuzzed body signed with the test key, then verify, parse,
/// normalize and build the event; the body with one byte changed must be refused.
pub fn pingpp(data: &[u8]) {
    let (key, v) = pingpp_keys();
    let sig = payhook::testkit::pingpp_sign(key, data);
    let h = headers(&[
        (provider::SIGNATURE_HEADER, &sig),
        ("content-type", "application/json"),
    ]);
    let signed = run(v, &h, data);
    assert_not_forged("pingpp", &signed);
    if let Some(changed) = flip(data) {
        assert!(
            run(v, &h, &changed).is_err(),
            "pingpp: a changed body verifies"
        );
    }
}

/// The Ping++ signature header: any header value against a fixed, valid body. It verifies only
/// when it decodes to the one valid signature.
pub fn pingpp_signature(data: &[u8]) {
    static BODY: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    let (key, v) = pingpp_keys();
    let (body, good) = BODY.get_or_init(|| {
        use base64::Engine;
        use rand::SeedableRng;
        let body = payhook::testkit::pingpp_event(
            "charge.succeeded",
            &mut rand::rngs::StdRng::seed_from_u64(1),
        );
        let sig = payhook::testkit::pingpp_sign(key, body.as_bytes());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .expect("own signature is base64");
        (body, raw)
    });
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(provider::SIGNATURE_HEADER, value);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match run(v, &h, body.as_bytes()) {
        Ok(_) => {
            use base64::Engine;
            let text = std::str::from_utf8(data).unwrap_or("").trim();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default();
            assert_eq!(&decoded, good, "pingpp: a wrong signature header verifies");
        }
        Err(ProviderError::Unauthorized(_)) => {}
        Err(ProviderError::Malformed(m)) => panic!(
            "pingpp: a valid body is malformed because of its signature header: {}",
            payhook::text::Quoted(&m)
        ),
    }
}
