use std::sync::OnceLock;

use hyper::HeaderMap;
use proptest::prelude::*;
use rand::SeedableRng;
use rsa::BigUint;
use rsa::pkcs1v15::SigningKey;
use serde_json::Value;
use sha2::Sha256;

use super::*;
use crate::testkit::{pingpp_event, pingpp_sign};

struct Keys {
    signing: SigningKey<Sha256>,
    other: SigningKey<Sha256>,
    modulus: BigUint,
    /// Verifies with either key (a rotation in progress).
    both: Pingpp,
    /// Verifies with the first key only.
    one: Pingpp,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("keygen");
        let b = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("keygen");
        Keys {
            modulus: a.to_public_key().n().clone(),
            both: Pingpp::from_keys(vec![b.to_public_key(), a.to_public_key()]).unwrap(),
            one: Pingpp::from_keys(vec![a.to_public_key()]).unwrap(),
            signing: SigningKey::new(a),
            other: SigningKey::new(b),
        }
    })
}

fn headers(sigs: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for s in sigs {
        h.append(SIGNATURE_HEADER, s.parse().expect("header value"));
    }
    h
}

fn check_with(v: &Pingpp, body: &[u8], sigs: &[&str]) -> Result<Normalized, ProviderError> {
    v.verify(&Inbound {
        headers: &headers(sigs),
        body,
    })
}

fn check(body: &[u8], sig: &str) -> Result<Normalized, ProviderError> {
    check_with(&keys().one, body, &[sig])
}

fn signed(body: &str) -> Result<Normalized, ProviderError> {
    check(
        body.as_bytes(),
        &pingpp_sign(&keys().signing, body.as_bytes()),
    )
}

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
    let body = r#"{"id":"evt_1","object":"event","type":"charge.succeeded","livemode":true,"created":1458736932,"data":{"object":{"id":"ch_1","order_no":"123","amount":100,"currency":"cny"}}}"#;
    let n = signed(body).unwrap();
    assert_eq!(n.dedup_key, "evt_1");
    assert_eq!(n.provider_event_id.as_deref(), Some("evt_1"));
    assert_eq!(n.order_no.as_deref(), Some("123"));
    assert_eq!(n.transaction_id.as_deref(), Some("ch_1"));
    assert_eq!(n.money.amount.as_deref(), Some("1.00"));
    assert_eq!(n.money.currency.as_deref(), Some("CNY"));
    assert_eq!(n.outcome, Outcome::Succeeded);
    assert_eq!(n.livemode, Some(true));
    assert_eq!(n.occurred_at.unwrap().unix_timestamp(), 1458736932);
    assert_eq!(n.signed_time, n.occurred_at, "created is signed");
    assert_eq!(n.content_hash, sha256(body.as_bytes()));
    assert_eq!(n.payload, Payload::Body);
}

#[test]
fn old_payload_without_id_or_object() {
    let body = r#"{"type":"summary.daily.available","data":[]}"#;
    let n = signed(body).unwrap();
    assert_eq!(n.dedup_key, hash_key(&sha256(body.as_bytes())));
    assert_eq!(n.outcome, Outcome::Info);
    assert_eq!(n.money.amount, None);
    assert_eq!(n.signed_time, None);
    // Members of unexpected types map to null, as before.
    let body = r#"{"id":5,"type":"charge.succeeded","created":"x","livemode":"yes","data":{"object":[1]}}"#;
    let n = signed(body).unwrap();
    assert!(n.dedup_key.starts_with("sha256:"));
    assert_eq!((n.livemode, n.occurred_at, n.order_no), (None, None, None));
}

#[test]
fn malformed_after_a_good_signature() {
    for body in [
        r#"{"id":"evt_1"}"#,
        r#"{"id":"evt_1","type":""}"#,
        r#"["evt_1","charge.succeeded"]"#,
        r#"{"id":"evt_1","type":"charge.succeeded"} x"#,
        r#"{"id":"evt_1","type":"charge.succeeded","type":"refund.succeeded"}"#,
        r#"{"id":"evt_1","type":"charge.succeeded","x":"\ud800"}"#,
        "not json",
        "",
    ] {
        assert!(
            matches!(signed(body), Err(ProviderError::Malformed(_))),
            "{body}"
        );
    }
    // Invalid UTF-8 inside a member serde_json would only skip.
    let mut body = br#"{"id":"evt_1","type":"charge.succeeded","x":"#.to_vec();
    body.extend_from_slice(b"\"\xff\"}");
    let sig = pingpp_sign(&keys().signing, &body);
    assert!(matches!(
        check(&body, &sig),
        Err(ProviderError::Malformed(_))
    ));
}

#[test]
fn signature_is_checked_before_anything_is_parsed() {
    // A forged body that is not even JSON: 401, not 400 (nothing unsigned is parsed).
    let forged = check(b"{{{ not json", &pingpp_sign(&keys().signing, b"other"));
    assert!(matches!(forged, Err(ProviderError::Unauthorized(_))));
    for sigs in [&[][..], &[""], &["  "], &["!!!"]] {
        assert!(matches!(
            check_with(&keys().one, b"{}", sigs),
            Err(ProviderError::Unauthorized(_))
        ));
    }
}

#[test]
fn huge_keys_make_short_messages() {
    let key = "k".repeat(1 << 20);
    for body in [
        format!(r#"{{"{key}":1}}"#),
        format!(r#"{{"{key}":1,"type":"charge.succeeded""#),
        format!(r#"{{"type":"{key}"#),
        format!(r#"{{"type":"charge.succeeded","{key}":"\ud800"}}"#),
    ] {
        let e = signed(&body).unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
        let e = check(body.as_bytes(), "AAAA").unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
    }
}

#[test]
fn key_sizes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let small = rsa::RsaPrivateKey::new(&mut rng, 768)
        .unwrap()
        .to_public_key();
    assert!(Pingpp::from_keys(vec![small]).is_err());
    let legacy = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let v = Pingpp::from_keys(vec![legacy.to_public_key()]).unwrap();
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let sig = pingpp_sign(&SigningKey::new(legacy), body);
    check_with(&v, body, &[&sig]).unwrap();
    assert!(check(body, &sig).is_err(), "another key");
}

#[test]
fn shared_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/pingpp");
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let load = |p: &str| Pingpp::from_keys(vec![parse_public_key(&read(p)).unwrap()]).unwrap();
    let body = read("valid/charge_succeeded/body.json");
    let sig = String::from_utf8(read("valid/charge_succeeded/signature.b64")).unwrap();
    for key in ["pub.pem", "pub_csharp_bom_crlf.pem"] {
        let v = load(&format!("valid/charge_succeeded/{key}"));
        let n = check_with(&v, &body, &[sig.trim()]).unwrap();
        assert_eq!(n.event_type, "charge.succeeded");
        assert_eq!(n.content_hash, sha256(&body));
    }
    for case in [
        "trailing_newline",
        "pretty_printed",
        "amount_tampered",
        "wrong_key",
        "base64url_signature",
    ] {
        let v = load(&format!("invalid/{case}/pub.pem"));
        let body = read(&format!("invalid/{case}/body.json"));
        let sig = String::from_utf8(read(&format!("invalid/{case}/signature.b64"))).unwrap();
        assert!(
            matches!(
                check_with(&v, &body, &[sig.trim()]),
                Err(ProviderError::Unauthorized(_))
            ),
            "{case}"
        );
    }
}

const TYPES: [&str; 6] = [
    "charge.succeeded",
    "refund.succeeded",
    "transfer.succeeded",
    "summary.daily.available",
    "agreement.succeeded",
    "customs.succeeded",
];

/// `sig + n`, the same residue mod n, when it still fits in 256 bytes.
fn plus_modulus(sig: &str) -> Option<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = BigUint::from_bytes_be(&b64.decode(sig).ok()?) + &keys().modulus;
    let bytes = s.to_bytes_be();
    (bytes.len() == 256).then(|| b64.encode(bytes))
}

/// The mutations of a Ping++ webhook the signature does not cover: only the header's framing
/// (the body is covered byte for byte).
fn unsigned_mutations(body: &str, sig: &str) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("header padded with spaces", vec![format!("  {sig} ")]),
        ("header padded with a tab", vec![format!("\t{sig}")]),
        ("header repeated", vec![sig.to_string(), sig.to_string()]),
        (
            "a second, bogus header after the good one",
            vec![sig.to_string(), "AAAA".into()],
        ),
        (
            "signed with the other configured key",
            vec![pingpp_sign(&keys().other, body.as_bytes())],
        ),
    ]
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=5000 for the long run.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_events_verify(seed in any::<u64>(), t in 0..TYPES.len()) {
        let body = pingpp_event(TYPES[t], &mut rand::rngs::StdRng::seed_from_u64(seed));
        let n = signed(&body).expect("a signed event verifies");
        let v: Value = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(n.event_type.as_str(), TYPES[t]);
        prop_assert_eq!(Some(n.dedup_key.as_str()), v["id"].as_str());
        // Ping++ refund objects carry no currency: then the amount cannot be placed.
        let object = &v["data"]["object"];
        let expected = object["currency"].as_str().and(object["amount"].as_i64());
        prop_assert_eq!(n.money.amount_minor, expected);
        prop_assert_eq!(n.payload, Payload::Body);
        prop_assert_eq!(n.signed_time.map(|t| t.unix_timestamp()), v["created"].as_i64());
    }

    /// (a) Every mutation the signature does not cover keeps the dedup key and content hash.
    #[test]
    fn unsigned_mutations_keep_key_and_hash(seed in any::<u64>()) {
        let body = pingpp_event("charge.succeeded", &mut rand::rngs::StdRng::seed_from_u64(seed));
        let sig = pingpp_sign(&keys().signing, body.as_bytes());
        let base = check_with(&keys().both, body.as_bytes(), &[&sig]).unwrap();
        for (what, sigs) in unsigned_mutations(&body, &sig) {
            let sigs: Vec<&str> = sigs.iter().map(String::as_str).collect();
            match check_with(&keys().both, body.as_bytes(), &sigs) {
                Ok(n) => {
                    prop_assert_eq!(&n.dedup_key, &base.dedup_key, "{}", what);
                    prop_assert_eq!(n.content_hash, base.content_hash, "{}", what);
                }
                Err(e) => prop_assert!(matches!(e, ProviderError::Unauthorized(_)), "{}: {}", what, e),
            }
        }
    }

    /// (b) Every change of a signed byte is refused: any byte of the body flipped, inserted or
    /// removed, and any change of the signature itself.
    #[test]
    fn any_changed_byte_is_refused(
        seed in any::<u64>(),
        pos in any::<prop::sample::Index>(),
        x in 1u8..=255,
        kind in 0..3u8,
    ) {
        let body = pingpp_event("charge.succeeded", &mut rand::rngs::StdRng::seed_from_u64(seed));
        let sig = pingpp_sign(&keys().signing, body.as_bytes());
        let mut bytes = body.into_bytes();
        let i = pos.index(bytes.len());
        match kind {
            0 => bytes[i] ^= x,
            1 => bytes.insert(i, x),
            _ => { bytes.remove(i); }
        }
        prop_assert!(check(&bytes, &sig).is_err());
    }

    #[test]
    fn any_changed_signature_is_refused(seed in any::<u64>(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let body = pingpp_event("charge.succeeded", &mut rand::rngs::StdRng::seed_from_u64(seed));
        let sig = pingpp_sign(&keys().signing, body.as_bytes());
        let mut s = sig.clone().into_bytes();
        let i = pos.index(s.len());
        s[i] ^= x;
        if let Ok(s) = std::str::from_utf8(&s) {
            if let Ok(h) = s.parse::<hyper::header::HeaderValue>() {
                let mut headers = HeaderMap::new();
                headers.insert(SIGNATURE_HEADER, h);
                let r = keys().one.verify(&Inbound { headers: &headers, body: body.as_bytes() });
                prop_assert!(r.is_err(), "{:?}", s);
            }
        }
        if let Some(s) = plus_modulus(&sig) {
            prop_assert!(check(body.as_bytes(), &s).is_err(), "s + n");
        }
    }
}

/// `cargo test --release --lib -- --ignored --nocapture pingpp_verify_cost`
#[test]
#[ignore]
fn pingpp_verify_cost() {
    use crate::providers::bench::measure;
    let body = pingpp_event(
        "charge.succeeded",
        &mut rand::rngs::StdRng::seed_from_u64(1),
    );
    let sig = pingpp_sign(&keys().signing, body.as_bytes());
    let h = headers(&[&sig]);
    let req = Inbound {
        headers: &h,
        body: body.as_bytes(),
    };
    let label = format!("pingpp {} B: verify+normalize", body.len());
    measure(&label, 5_000, || {
        std::hint::black_box(keys().one.verify(std::hint::black_box(&req)).unwrap());
    });
    measure("pingpp: parse+normalize only", 100_000, || {
        std::hint::black_box(normalize(std::hint::black_box(body.as_bytes())).unwrap());
    });
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sig)
        .unwrap();
    let public = keys().signing.as_ref().to_public_key();
    let rsa_key = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public.clone());
    let rsa_sig = rsa::pkcs1v15::Signature::try_from(raw.as_slice()).unwrap();
    measure("pingpp: rsa crate verify alone (not used)", 2_000, || {
        use rsa::signature::Verifier as _;
        rsa_key.verify(body.as_bytes(), &rsa_sig).unwrap();
    });
    let ring_key = ring::signature::RsaPublicKeyComponents {
        n: public.n().to_bytes_be(),
        e: public.e().to_bytes_be(),
    };
    measure("pingpp: ring verify alone", 5_000, || {
        ring_key
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                body.as_bytes(),
                &raw,
            )
            .unwrap();
    });
}
