//! Pinddpay: the body signed under `md5(body+secret)` and `md5(secret)`.

use payhook::providers::pinddpay as provider;

use super::PINDDPAY_SECRET;
use super::check::{assert_not_forged, flip, headers, run};
use super::verifiers::pinddpay_verifier;

/// The fuzzed body signed under `md5(body+secret)` and under `md5(secret)`; under the first any
/// changed byte must be refused (`md5(secret)` does not protect the body: documented).
pub fn pinddpay(data: &[u8]) {
    use provider::SignScheme;
    let ct = ("content-type", "application/json");
    for scheme in [SignScheme::BodySecret, SignScheme::SecretOnly] {
        let v = pinddpay_verifier(scheme);
        let token = provider::sign(scheme, data, PINDDPAY_SECRET);
        let h = headers(&[(provider::SIGNATURE_HEADER, &token), ct]);
        let signed = run(v, &h, data);
        assert_not_forged("pinddpay", &signed);
        // A lower-case token is the same signature.
        let lower = headers(&[(provider::SIGNATURE_HEADER, &token.to_lowercase()), ct]);
        assert_eq!(run(v, &lower, data), signed, "pinddpay: hex case matters");
        if scheme == SignScheme::BodySecret {
            if let Some(changed) = flip(data) {
                assert!(
                    run(v, &h, &changed).is_err(),
                    "pinddpay: a changed body verifies"
                );
            }
        }
    }
    // Any body with a token that is not its signature is refused.
    let v = pinddpay_verifier(SignScheme::BodySecret);
    let h = headers(&[
        (
            provider::SIGNATURE_HEADER,
            "E10ADC3949BA59ABBE56E057F20F883E",
        ),
        ct,
    ]);
    assert!(
        run(v, &h, data).is_err(),
        "pinddpay: a wrong token verifies"
    );
}
