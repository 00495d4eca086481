use hyper::HeaderMap;
use proptest::prelude::*;
use serde_json::Value;

use super::*;

const SECRET: &str = "s3cr3t-app-secret";

fn body(event_name: &str) -> String {
    serde_json::json!({
        "eventId": "evt_20240101_0001",
        "eventAt": "2024-01-02 03:04:05",
        "eventName": event_name,
        "appId": "app_42",
        "order": {
            "id": "o_1", "merchantOrderNo": "M-1001", "email": "a@example.com",
            "amount": "12.50", "quantity": 1, "tradeNo": "T-9", "currency": "usd",
            "country": "US", "status": "paid", "statusEn": "paid", "paymentMethod": "card",
            "rate": "1"
        },
        "refund": {"id": "r_1", "refundAmount": "2.25", "currency": "EUR", "refundAt": "x"}
    })
    .to_string()
}

fn secrets(list: &[&str]) -> Vec<SecretString> {
    list.iter().map(|s| SecretString::new(*s)).collect()
}

fn verifier(scheme: SignScheme, app_id: Option<&str>) -> Pinddpay {
    Pinddpay::new(secrets(&[SECRET]), scheme, app_id.map(str::to_string))
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(SIGNATURE_HEADER, token.parse().unwrap());
    h
}

fn run(v: &Pinddpay, body: &[u8], token: &str) -> Result<Normalized, ProviderError> {
    v.verify(&Inbound {
        headers: &headers(token),
        body,
    })
}

/// Signs with the default scheme and runs through a verifier without `app_id`.
fn signed(body: &str) -> Result<Normalized, ProviderError> {
    run(
        &verifier(SignScheme::BodySecret, None),
        body.as_bytes(),
        &sign(SignScheme::BodySecret, body.as_bytes(), SECRET),
    )
}

#[test]
fn documented_md5_example() {
    assert_eq!(
        hex::encode_upper(Md5::digest(b"123456")),
        "E10ADC3949BA59ABBE56E057F20F883E"
    );
    assert_eq!(
        sign(SignScheme::SecretOnly, b"ignored", "123456"),
        "E10ADC3949BA59ABBE56E057F20F883E"
    );
}

#[test]
fn schemes_hash_what_they_say() {
    assert_eq!(
        digest(SignScheme::BodySecret, b"{}", "k"),
        <[u8; 16]>::from(Md5::digest(b"{}k"))
    );
    assert_eq!(
        digest(SignScheme::SecretBody, b"{}", "k"),
        <[u8; 16]>::from(Md5::digest(b"k{}"))
    );
}

#[test]
fn config_scheme_names_and_secret_lists() {
    let c: Config = toml::from_str("secret = \"x\"\nsign_scheme = \"md5(secret+body)\"").unwrap();
    assert_eq!(c.sign_scheme, SignScheme::SecretBody);
    let c: Config = toml::from_str("secret = { env = \"X\" }").unwrap();
    assert_eq!(c.sign_scheme, SignScheme::BodySecret);
    let c: Config = toml::from_str("secret = [\"new\", { env = \"OLD\" }]").unwrap();
    assert_eq!(c.secret.0.len(), 2);
    assert!(toml::from_str::<Config>("secret = \"x\"\nsign_scheme = \"sha1\"").is_err());
    assert!(toml::from_str::<Config>("secret = \"x\"\nextra = 1").is_err());
    let base = Path::new(".");
    for bad in ["secret = []", "secret = \"\"", "secret = [\"a\", \"\"]"] {
        let c: Config = toml::from_str(bad).unwrap();
        assert!(Pinddpay::from_config(&c, base).is_err(), "{bad}");
    }
}

#[test]
fn any_secret_of_the_list_verifies() {
    let b = body("order.paid");
    for scheme in [
        SignScheme::BodySecret,
        SignScheme::SecretBody,
        SignScheme::SecretOnly,
    ] {
        let v = Pinddpay::new(secrets(&["new-secret", "old-secret"]), scheme, None);
        let by_new = run(&v, b.as_bytes(), &sign(scheme, b.as_bytes(), "new-secret")).unwrap();
        let by_old = run(&v, b.as_bytes(), &sign(scheme, b.as_bytes(), "old-secret")).unwrap();
        assert_eq!(by_new, by_old, "the same event, whichever secret signed it");
        assert!(matches!(
            run(&v, b.as_bytes(), &sign(scheme, b.as_bytes(), "gone")),
            Err(ProviderError::Unauthorized(_))
        ));
    }
}

#[test]
fn verifies_each_scheme_case_insensitively() {
    for scheme in [
        SignScheme::BodySecret,
        SignScheme::SecretBody,
        SignScheme::SecretOnly,
    ] {
        let b = body("order.paid");
        let tok = sign(scheme, b.as_bytes(), SECRET);
        let v = verifier(scheme, Some("app_42"));
        let n = run(&v, b.as_bytes(), &tok).unwrap();
        assert_eq!(n.dedup_key, "evt_20240101_0001");
        assert_eq!(n.content_hash, sha256(b.as_bytes()));
        assert_eq!(n.payload, Payload::Body);
        let t = time::macros::datetime!(2024-01-02 03:04:05 UTC);
        assert_eq!(n.occurred_at, Some(t));
        let signed_time = (scheme != SignScheme::SecretOnly).then_some(t);
        assert_eq!(n.signed_time, signed_time, "md5(secret) signs no time");
        run(&v, b.as_bytes(), &tok.to_ascii_lowercase()).unwrap();
    }
}

#[test]
fn maps_order_paid() {
    let n = signed(&body("order.paid")).unwrap();
    assert_eq!(n.event_type, "order.paid");
    assert_eq!(n.category, Category::Payment);
    assert_eq!(n.outcome, Outcome::Succeeded);
    assert_eq!(n.order_no.as_deref(), Some("M-1001"));
    assert_eq!(n.transaction_id.as_deref(), Some("T-9"));
    assert_eq!(n.money.amount.as_deref(), Some("12.50"));
    assert_eq!(n.money.amount_minor, Some(1250));
    assert_eq!(n.money.currency.as_deref(), Some("USD"));
    assert_eq!(n.provider_event_id.as_deref(), Some("evt_20240101_0001"));
    assert_eq!(
        n.occurred_at.unwrap(),
        time::macros::datetime!(2024-01-02 03:04:05 UTC)
    );
}

#[test]
fn refund_uses_refund_amount() {
    let n = signed(&body("refund.succeeded")).unwrap();
    assert_eq!(n.category, Category::Refund);
    assert_eq!(n.money.amount.as_deref(), Some("2.25"));
    assert_eq!(n.money.amount_minor, Some(225));
    assert_eq!(n.money.currency.as_deref(), Some("EUR"));
}

#[test]
fn categories_and_outcomes() {
    assert_eq!(category("dispute.created"), Category::Dispute);
    assert_eq!(category("payout.completed"), Category::Payout);
    assert_eq!(category("subscription.cancelled"), Category::Subscription);
    assert_eq!(category("customer.updated"), Category::Other);
    let n =
        signed(r#"{"eventId": 7, "eventName": "order.created", "transaction": {"tradeNo": "TT"}}"#)
            .unwrap();
    assert_eq!(n.outcome, Outcome::Pending);
    assert_eq!(n.dedup_key, "7");
    assert_eq!(n.transaction_id.as_deref(), Some("TT"));
    assert_eq!(n.occurred_at, None);
    assert_eq!(n.signed_time, None);
    assert_eq!(n.money, Money::default());
    // Members of unexpected types map to null instead of refusing a signed webhook.
    let n = signed(
        r#"{"eventId":"e","eventName":"order.paid","order":[1],"refund":"x","eventAt":{"a":1}}"#,
    )
    .unwrap();
    assert_eq!((n.order_no, n.occurred_at), (None, None));
    let n = signed(
        r#"{"eventId":"e","eventName":"order.paid","order":{"amount":12.5,"currency":"USD"}}"#,
    )
    .unwrap();
    assert_eq!(n.money.amount_minor, Some(1250));
}

#[test]
fn event_at_forms() {
    let t = time::macros::datetime!(2024-01-02 03:04:05 UTC);
    let at = |json: &str| {
        let s: Scalar<'_> = serde_json::from_str(json).unwrap();
        parse_event_at(&s)
    };
    for v in [
        r#""2024-01-02T03:04:05Z""#,
        r#""2024-01-02T11:04:05+08:00""#,
        r#""2024-01-02 03:04:05""#,
        "1704164645",
        "1704164645000",
        r#""1704164645""#,
        r#""1704164645000""#,
    ] {
        assert_eq!(at(v), Some(t), "{v}");
    }
    assert_eq!(at(r#""yesterday""#), None);
    assert_eq!(at("null"), None);
    assert_eq!(at(r#""99999999999999999999""#), None);
}

#[test]
fn refusals() {
    let v = verifier(SignScheme::BodySecret, Some("app_42"));
    let b = body("order.paid");
    let tok = sign(SignScheme::BodySecret, b.as_bytes(), SECRET);
    // Tampered body.
    let t = b.replace("12.50", "99.50");
    assert!(matches!(
        run(&v, t.as_bytes(), &tok),
        Err(ProviderError::Unauthorized(_))
    ));
    // Wrong secret.
    let wrong = sign(SignScheme::BodySecret, b.as_bytes(), "other");
    assert!(matches!(
        run(&v, b.as_bytes(), &wrong),
        Err(ProviderError::Unauthorized(_))
    ));
    // Wrong scheme.
    let other = sign(SignScheme::SecretBody, b.as_bytes(), SECRET);
    assert!(matches!(
        run(&v, b.as_bytes(), &other),
        Err(ProviderError::Unauthorized(_))
    ));
    // Foreign app id, correctly signed.
    let f = b.replace("app_42", "app_43");
    let ftok = sign(SignScheme::BodySecret, f.as_bytes(), SECRET);
    assert!(matches!(
        run(&v, f.as_bytes(), &ftok),
        Err(ProviderError::Unauthorized(_))
    ));
    // Missing header, short header.
    let no_header = v.verify(&Inbound {
        headers: &HeaderMap::new(),
        body: b.as_bytes(),
    });
    assert!(matches!(no_header, Err(ProviderError::Unauthorized(_))));
    assert!(matches!(
        run(&v, b.as_bytes(), &tok[..31]),
        Err(ProviderError::Unauthorized(_))
    ));
    // Malformed, correctly signed.
    for m in [
        "not json",
        "[1,2]",
        "[\"e1\",\"order.paid\"]",
        "{\"eventName\":\"order.paid\"}",
        "{\"eventId\":\"e1\"}",
        "{\"eventId\":\"\",\"eventName\":\"order.paid\"}",
        "{\"eventId\":1.5,\"eventName\":\"order.paid\"}",
        "{\"eventId\":\"e1\",\"eventName\":\"order.paid\"} {}",
        "{\"eventId\":\"e1\",\"eventId\":\"e2\",\"eventName\":\"order.paid\"}",
        "{\"eventId\":\"e1\",\"eventName\":\"order.paid\",\"x\":\"\\udc00\"}",
    ] {
        let tok = sign(SignScheme::BodySecret, m.as_bytes(), SECRET);
        assert!(
            matches!(
                run(&verifier(SignScheme::BodySecret, None), m.as_bytes(), &tok),
                Err(ProviderError::Malformed(_))
            ),
            "{m}"
        );
    }
}

#[test]
fn token_is_checked_before_anything_is_parsed() {
    let v = verifier(SignScheme::BodySecret, None);
    assert!(matches!(
        run(&v, b"{{{ not json", &"0".repeat(32)),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn huge_keys_make_short_messages() {
    let key = "k".repeat(1 << 20);
    for body in [
        format!(r#"{{"{key}":1}}"#),
        format!(r#"{{"{key}":1"#),
        format!(r#"{{"eventId":"{key}"}}"#),
        format!(r#"{{"eventId":"e","eventName":"x","{key}":"\udc00"}}"#),
    ] {
        let e = signed(&body).unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
    }
}

fn arb_event() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9_-]{1,24}",
        prop::sample::select(vec![
            "order.created",
            "order.paid",
            "order.failed",
            "refund.succeeded",
            "dispute.created",
            "payout.completed",
            "subscription.cancelled",
            "something.else",
        ]),
        0u64..10_000_000,
        prop::sample::select(vec!["USD", "EUR", "JPY", "CNY", "BHD"]),
        "[\\PC]{0,16}",
        1_500_000_000i64..2_000_000_000,
        any::<bool>(),
    )
        .prop_map(|(id, name, cents, cur, email, at, with_refund)| {
            let mut v = serde_json::json!({
                "eventId": id, "eventAt": at, "eventName": name, "appId": "app_42",
                "order": {"merchantOrderNo": format!("M{cents}"), "amount": format!("{}.{:02}", cents / 100, cents % 100),
                          "currency": cur, "email": email, "tradeNo": format!("T{cents}")},
            });
            if with_refund {
                v["refund"] = serde_json::json!({"refundAmount": format!("{}", cents / 100), "currency": cur});
            }
            v.to_string()
        })
}

const SCHEMES: [SignScheme; 2] = [SignScheme::BodySecret, SignScheme::SecretBody];

proptest! {
    // 256 cases by default; PROPTEST_CASES=5000 for the long run.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_events_verify(b in arb_event(), s in 0..2usize) {
        let scheme = SCHEMES[s];
        let v = verifier(scheme, Some("app_42"));
        let n = run(&v, b.as_bytes(), &sign(scheme, b.as_bytes(), SECRET)).unwrap();
        let parsed: Value = serde_json::from_str(&b).unwrap();
        prop_assert_eq!(Some(n.dedup_key.as_str()), parsed["eventId"].as_str());
        prop_assert_eq!(n.signed_time.map(|t| t.unix_timestamp()), parsed["eventAt"].as_i64());
        let refund = parsed["eventName"].as_str().is_some_and(|e| e.starts_with("refund."));
        prop_assert_eq!(n.money.amount.is_some(), !refund || parsed["refund"].is_object());
        prop_assert_eq!(n.content_hash, sha256(b.as_bytes()));
    }

    /// (a) What the token does not cover: its case and the padding of the header.
    #[test]
    fn unsigned_mutations_keep_key_and_hash(b in arb_event(), s in 0..2usize, mask in any::<u32>()) {
        let scheme = SCHEMES[s];
        let v = Pinddpay::new(secrets(&["new", SECRET]), scheme, Some("app_42".into()));
        let tok = sign(scheme, b.as_bytes(), SECRET);
        let base = run(&v, b.as_bytes(), &tok).unwrap();
        let mixed: String = tok
            .chars()
            .enumerate()
            .map(|(i, c)| if mask >> (i % 32) & 1 == 1 { c.to_ascii_lowercase() } else { c })
            .collect();
        for (what, t) in [
            ("lower case", tok.to_ascii_lowercase()),
            ("mixed case", mixed),
            ("padded", format!("  {tok}\t")),
            ("signed with the other secret of the list", sign(scheme, b.as_bytes(), "new")),
        ] {
            let n = run(&v, b.as_bytes(), &t).unwrap();
            prop_assert_eq!(&n.dedup_key, &base.dedup_key, "{}", what);
            prop_assert_eq!(n.content_hash, base.content_hash, "{}", what);
        }
    }

    /// (b) Under the body schemes every byte of the body is signed: any change is refused.
    #[test]
    fn any_changed_byte_is_refused(
        b in arb_event(),
        s in 0..2usize,
        pos in any::<prop::sample::Index>(),
        x in 1u8..=255,
        kind in 0..3u8,
    ) {
        let scheme = SCHEMES[s];
        let v = verifier(scheme, Some("app_42"));
        let tok = sign(scheme, b.as_bytes(), SECRET);
        let mut t = b.into_bytes();
        let i = pos.index(t.len());
        match kind {
            0 => t[i] ^= x,
            1 => t.insert(i, x),
            _ => { t.remove(i); }
        }
        prop_assert!(run(&v, &t, &tok).is_err());
    }

    #[test]
    fn any_changed_token_digit_is_refused(b in arb_event(), pos in 0..32usize, d in 1u8..16) {
        let v = verifier(SignScheme::BodySecret, None);
        let tok = sign(SignScheme::BodySecret, b.as_bytes(), SECRET);
        let mut t = tok.into_bytes();
        let digit = u8::from_str_radix(std::str::from_utf8(&t[pos..=pos]).unwrap(), 16).unwrap();
        t[pos] = b"0123456789ABCDEF"[usize::from((digit + d) % 16)];
        let t = String::from_utf8(t).unwrap();
        prop_assert!(run(&v, b.as_bytes(), &t).is_err());
    }
}

/// `cargo test --release --lib -- --ignored --nocapture pinddpay_verify_cost`
#[test]
#[ignore]
fn pinddpay_verify_cost() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let b = crate::testkit::pinddpay_event("order.paid", "app_42", &mut rng);
    let v = verifier(SignScheme::BodySecret, Some("app_42"));
    let h = headers(&sign(SignScheme::BodySecret, b.as_bytes(), SECRET));
    let req = Inbound {
        headers: &h,
        body: b.as_bytes(),
    };
    let label = format!("pinddpay {} B: verify+normalize", b.len());
    crate::providers::bench::measure(&label, 100_000, || {
        std::hint::black_box(v.verify(std::hint::black_box(&req)).unwrap());
    });
}
