use hyper::HeaderMap;
use serde_json::json;

use super::canonical::parse_json;
use super::*;
use crate::testkit::pingpong::{signed_form, signed_json};

pub(super) const SALT1: &str = "F78BC96A55548B2319EE68E0";
pub(super) const SALT2: &str = "BCE27A281029F5EAF3CC0E82";
pub(super) const ACC1: &str = "2018092714313010016291";

macro_rules! vector {
    ($name:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/pingpong/",
            $name
        ))
        .expect(concat!("vector ", $name))
    };
}

pub(super) fn salts(list: &[&str]) -> Vec<SecretString> {
    list.iter().map(|s| SecretString::new(*s)).collect()
}

pub(super) fn pp(salt: &str) -> Pingpong {
    Pingpong::new(salts(&[salt]), None, DisputeSignScope::All)
}

pub(super) fn run(v: &Pingpong, ct: &str, body: &[u8]) -> Result<Normalized, ProviderError> {
    let mut h = HeaderMap::new();
    h.insert(hyper::header::CONTENT_TYPE, ct.parse().unwrap());
    v.verify(&Inbound { headers: &h, body })
}

pub(super) const JSON: &str = "application/json; charset=UTF-8";
pub(super) const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn unified_pay_vector_pre_image_and_signature() {
    let body = vector!("v4_unifiedPay_response.json");
    let want = vector!("v4_unifiedPay_response.signcontent.txt");
    let body_text = std::str::from_utf8(&body).unwrap();
    let env = parse_json(body_text).unwrap();
    assert_eq!(
        format!("{SALT1}{}", env.signed_text()).as_bytes(),
        &want[..]
    );
    let n = run(&pp(SALT1), JSON, &body).unwrap();
    assert_eq!(n.event_type, "notification");
    assert_eq!(n.outcome, Outcome::Failed);
    assert_eq!(n.money.amount.as_deref(), Some("100.000000"));
    assert_eq!(n.money.amount_minor, None); // no currency in this response
    assert_eq!(n.transaction_id.as_deref(), Some("2023092050004595"));
    assert_eq!(n.order_no.as_deref(), Some("PMT-9ICSCWF9H51695189441815"));
    assert!(n.dedup_key.starts_with("sha256:"));
    assert_eq!(
        n.payload.json()["bizContent"]["paymentMethod"]["type"],
        "scheme"
    );
    assert_eq!(n.payload.json()["code"], "301002");
    assert!(matches!(
        run(&pp(SALT2), JSON, &body),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn logistics_md5_vector() {
    let body = vector!("v4_logisticsUpload_md5.json");
    let want = vector!("v4_logisticsUpload_md5.signcontent.txt");
    let env = parse_json(std::str::from_utf8(&body).unwrap()).unwrap();
    assert_eq!(
        format!("{SALT2}{}", env.signed_text()).as_bytes(),
        &want[..]
    );
    let n = run(&pp(SALT2), JSON, &body).unwrap();
    assert_eq!(n.event_type, "notification");
    assert_eq!(n.category, Category::Other);
    assert!(matches!(
        run(&pp(SALT1), JSON, &body),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn generated_refund_vector() {
    let body = vector!("generated_v4_refund_notification.json");
    let n = run(&pp(SALT1), JSON, &body).unwrap();
    assert_eq!(n.event_type, "refund.success");
    assert_eq!(n.category, Category::Refund);
    assert_eq!(n.outcome, Outcome::Succeeded);
    assert_eq!(
        n.dedup_key,
        "REFUND:2023092050004595:2023092060000001:SUCCESS"
    );
    assert_eq!(n.money.amount_minor, Some(1000));
    assert_eq!(n.money.currency.as_deref(), Some("USD"));
    assert_eq!(
        n.occurred_at.unwrap().unix_timestamp_nanos(),
        1_695_189_441_815_000_000
    );
    assert_eq!(
        n.payload.json()["bizContent"]["refundId"],
        "2023092060000001"
    );
    // The same body with one value changed no longer verifies.
    let t = String::from_utf8(body).unwrap().replace("10.00", "90.00");
    assert!(matches!(
        run(&pp(SALT1), JSON, t.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn generated_v2_form_vector() {
    let body = vector!("generated_v2_form_notification.form");
    let n = run(&pp(SALT1), FORM, &body).unwrap();
    assert_eq!(n.event_type, "notification");
    assert_eq!(n.category, Category::Payment);
    assert_eq!(n.outcome, Outcome::Succeeded);
    assert_eq!(n.dedup_key, ":PS23041913502860034:SUCCESS");
    assert_eq!(n.money.amount_minor, Some(10000));
    assert_eq!(n.order_no.as_deref(), Some("M-1001"));
    assert_eq!(
        n.occurred_at.unwrap(),
        time::macros::datetime!(2023-04-19 13:50:28 UTC)
    );
    assert_eq!(n.payload.json()["description"], "Transaction succeeded");
    // token= is empty: not signed, so not in the payload either.
    assert_eq!(n.payload.json().get("token"), None);
    assert!(matches!(
        run(&pp(SALT2), FORM, &body),
        Err(ProviderError::Unauthorized(_))
    ));
    let t = String::from_utf8(body)
        .unwrap()
        .replace("amount=100.00", "amount=900.00");
    assert!(matches!(
        run(&pp(SALT1), FORM, t.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
}

pub(super) fn recharge_biz(status: &str, notify: &str) -> String {
    json!({
        "notifyType": notify, "status": status, "amount": "12.345000", "currency": "BHD",
        "transactionTime": "1695189441815", "merchantTransactionId": "M1",
        "transactionId": "T1", "merchantVoidId": "V1", "paymentMethod": {"type": "scheme"}
    })
    .to_string()
}

pub(super) fn envelope(salt: &str, biz: &str) -> String {
    signed_json(
        salt,
        SignType::Sha256,
        &[
            ("accId", json!(ACC1)),
            ("clientId", json!("2018092714313010016")),
            ("signType", json!("SHA256")),
            ("bizContent", json!(biz)),
        ],
    )
}

#[test]
fn recharge_void_and_auth_mapping() {
    let b = envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"));
    let n = run(&pp(SALT1), JSON, b.as_bytes()).unwrap();
    assert_eq!(n.event_type, "recharge.success");
    assert_eq!(n.category, Category::Payment);
    assert_eq!(n.outcome, Outcome::Succeeded);
    assert_eq!(n.money.amount_minor, Some(12345));
    assert_eq!(n.dedup_key, "RECHARGE:T1:V1:SUCCESS");
    let b = envelope(SALT1, &recharge_biz("SUCCESS", "VOID"));
    assert_eq!(
        run(&pp(SALT1), JSON, b.as_bytes()).unwrap().outcome,
        Outcome::Cancelled
    );
    let b = envelope(SALT1, &recharge_biz("AUTH_SUCCESS", "RECHARGE"));
    assert_eq!(
        run(&pp(SALT1), JSON, b.as_bytes()).unwrap().outcome,
        Outcome::Pending
    );
}

#[test]
fn top_level_scalars_take_their_json_text() {
    let b = signed_json(
        SALT1,
        SignType::Md5,
        &[
            ("accId", json!(ACC1)),
            ("signType", json!("MD5")),
            ("flag", json!(true)),
            ("n", json!(12.5)),
            ("nothing", Value::Null),
            ("empty", json!("")),
        ],
    );
    let env = parse_json(&b).unwrap();
    assert_eq!(
        env.signed_text(),
        format!("accId={ACC1}&flag=true&n=12.5&signType=MD5")
    );
    let n = run(&pp(SALT1), JSON, b.as_bytes()).unwrap();
    // The JSON type of a top-level scalar is not signed: the payload has the signed text.
    assert_eq!(n.payload.json()["flag"], "true");
    assert_eq!(n.payload.json()["n"], "12.5");
    assert_eq!(n.payload.json().get("nothing"), None);
    assert_eq!(n.payload.json().get("empty"), None);
}

#[test]
fn acc_id_allowlist() {
    let b = envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"));
    let ours = Pingpong::new(
        salts(&[SALT1]),
        Some(vec![ACC1.into()]),
        DisputeSignScope::All,
    );
    run(&ours, JSON, b.as_bytes()).unwrap();
    let other = Pingpong::new(
        salts(&[SALT1]),
        Some(vec!["2018092714313010016289".into()]),
        DisputeSignScope::All,
    );
    assert!(matches!(
        run(&other, JSON, b.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
}

pub(super) fn dispute_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("accId", json!(ACC1)),
        ("disputePspReference", json!("DP-1")),
        ("merchantReference", json!("M-7")),
        ("originalReference", json!("T-7")),
        ("eventCode", json!("NOTIFICATION_OF_CHARGEBACK")),
        ("eventDate", json!("1695189441815")),
        ("chargebackStatus", json!("OPEN")),
        ("amount", json!("5.00")),
        ("currency", json!("EUR")),
        ("reason", json!("Fraud")),
        ("defendable", json!(true)),
        ("signType", json!("SHA256")),
    ]
}

#[test]
fn disputes_by_scope() {
    let b = signed_json(SALT1, SignType::Sha256, &dispute_fields());
    let n = run(&pp(SALT1), JSON, b.as_bytes()).unwrap();
    assert_eq!(n.event_type, "dispute.notification_of_chargeback");
    assert_eq!(n.category, Category::Dispute);
    assert_eq!(n.outcome, Outcome::Info);
    assert_eq!(
        n.dedup_key,
        "dispute:DP-1:NOTIFICATION_OF_CHARGEBACK:1695189441815"
    );
    assert_eq!(n.order_no.as_deref(), Some("M-7"));
    assert_eq!(n.money.amount_minor, Some(500));
    assert_eq!(n.payload.json()["defendable"], "true", "as signed");
    assert_eq!(
        n.signed_time.unwrap().unix_timestamp_nanos(),
        1_695_189_441_815_000_000
    );

    // The accId-only signature.
    let mut m: Map<String, Value> = serde_json::from_str(&b).unwrap();
    let narrow = sign(SignType::Sha256, &format!("{SALT1}accId={ACC1}"));
    m.insert("sign".into(), Value::String(narrow));
    let narrow_body = Value::Object(m).to_string();
    assert!(matches!(
        run(&pp(SALT1), JSON, narrow_body.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
    let acc_scope = Pingpong::new(salts(&[SALT1]), None, DisputeSignScope::AccId);
    let narrow_n = run(&acc_scope, JSON, narrow_body.as_bytes()).unwrap();
    assert_eq!(narrow_n.signed_time, None, "only accId is signed");
    assert_eq!(
        narrow_n.content_hash, n.content_hash,
        "same canonical content"
    );
    assert_eq!(
        run(&acc_scope, JSON, b.as_bytes()).unwrap().signed_time,
        n.signed_time
    );
    // It does not protect the body: a changed amount still passes (the documented risk).
    let forged = narrow_body.replace("5.00", "9.00");
    run(&acc_scope, JSON, forged.as_bytes()).unwrap();
    // And never applies to non-dispute envelopes.
    let mut m: Map<String, Value> =
        serde_json::from_str(&envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"))).unwrap();
    m.insert(
        "sign".into(),
        Value::String(sign(SignType::Sha256, &format!("{SALT1}accId={ACC1}"))),
    );
    assert!(matches!(
        run(&acc_scope, JSON, Value::Object(m).to_string().as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn malformed_and_unauthorized_shapes() {
    let v = pp(SALT1);
    for body in [
        "not json".to_string(),
        "[]".to_string(),
        format!("{{\"accId\":\"{ACC1}\",\"nested\":{{}},\"sign\":\"00\"}}"),
        format!("{{\"accId\":\"{ACC1}\",\"list\":[1],\"sign\":\"00\"}}"),
        format!("{{\"accId\":\"{ACC1}\",\"accId\":\"x\",\"sign\":\"00\"}}"),
        "{\"signType\":\"MD5\",\"sign\":\"00\"}".to_string(),
    ] {
        assert!(
            matches!(
                run(&v, JSON, body.as_bytes()),
                Err(ProviderError::Malformed(_))
            ),
            "{body}"
        );
    }
    // bizContent that is not JSON, correctly signed.
    let b = envelope(SALT1, "{not json");
    assert!(matches!(
        run(&v, JSON, b.as_bytes()),
        Err(ProviderError::Malformed(_))
    ));
    for body in [
        format!("{{\"accId\":\"{ACC1}\",\"signType\":\"SHA256\"}}"),
        format!("{{\"accId\":\"{ACC1}\",\"signType\":\"SHA1\",\"sign\":\"AB\"}}"),
        format!("{{\"accId\":\"{ACC1}\",\"sign\":\"AB\"}}"),
    ] {
        assert!(
            matches!(
                run(&v, JSON, body.as_bytes()),
                Err(ProviderError::Unauthorized(_))
            ),
            "{body}"
        );
    }
    assert!(matches!(
        run(&v, FORM, b"a=1&a=2&accId=1"),
        Err(ProviderError::Malformed(_))
    ));
    assert!(matches!(
        run(&v, FORM, b"accId=1&sign=00"),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn v2_roundtrip_with_payment_type() {
    let body = signed_form(
        SALT1,
        &[
            ("accId", ACC1),
            ("paymentType", "SALE"),
            ("transactionId", "T9"),
            ("status", "FAILED"),
            ("amount", "1"),
            ("currency", "JPY"),
            ("description", "a b&c=d"),
        ],
    );
    let n = run(&pp(SALT1), FORM, body.as_bytes()).unwrap();
    assert_eq!(n.event_type, "sale.failed");
    assert_eq!(n.dedup_key, "SALE:T9:FAILED");
    assert_eq!(n.outcome, Outcome::Failed);
    assert_eq!(n.money.amount_minor, Some(1));
    assert_eq!(n.payload.json()["description"], "a b&c=d");
}

#[test]
fn config_keys() {
    let c: Config = toml::from_str(
        "salt = { credential = \"pp\" }\nacc_ids = [\"1\"]\ndispute_sign_scope = \"acc_id\"",
    )
    .unwrap();
    assert_eq!(c.dispute_sign_scope, DisputeSignScope::AccId);
    let c: Config = toml::from_str("salt = [\"new\", { env = \"OLD\" }]").unwrap();
    assert_eq!(c.salt.0.len(), 2);
    let c: Config = toml::from_str("salt = \"s\"").unwrap();
    assert_eq!(c.dispute_sign_scope, DisputeSignScope::All);
    assert!(c.acc_ids.is_none());
    assert!(toml::from_str::<Config>("salt = \"s\"\ndispute_sign_scope = \"none\"").is_err());
    assert!(toml::from_str::<Config>("salt = \"s\"\nsecret = \"x\"").is_err());
    let base = Path::new(".");
    let empty = toml::from_str::<Config>("salt = \"s\"\nacc_ids = []").unwrap();
    assert!(Pingpong::from_config(&empty, base).is_err());
}

#[test]
fn times() {
    assert_eq!(
        parse_time("20230419135028"),
        Some(time::macros::datetime!(2023-04-19 13:50:28 UTC))
    );
    assert_eq!(parse_time("garbage"), None);
    assert_eq!(parse_time("99999999999999999999"), None);
    assert_eq!(parse_time("20231399999999"), None);
}

#[test]
fn signed_times_per_shape() {
    let b = envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"));
    let n = run(&pp(SALT1), JSON, b.as_bytes()).unwrap();
    assert_eq!(
        n.signed_time.unwrap().unix_timestamp_nanos(),
        1_695_189_441_815_000_000,
        "bizContent transactionTime, ms"
    );
    let n = run(
        &pp(SALT1),
        FORM,
        &vector!("generated_v2_form_notification.form"),
    )
    .unwrap();
    assert_eq!(
        n.signed_time,
        Some(time::macros::datetime!(2023-04-19 13:50:28 UTC))
    );
    let n = run(&pp(SALT2), JSON, &vector!("v4_logisticsUpload_md5.json")).unwrap();
    assert_eq!(n.signed_time, None, "no time field");
}

#[test]
fn any_salt_of_the_list_verifies() {
    let b = envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"));
    let both = Pingpong::new(salts(&[SALT2, SALT1]), None, DisputeSignScope::All);
    let n = run(&both, JSON, b.as_bytes()).unwrap();
    assert_eq!(n, run(&pp(SALT1), JSON, b.as_bytes()).unwrap());
    let b2 = envelope(SALT2, &recharge_biz("SUCCESS", "RECHARGE"));
    assert_eq!(
        run(&both, JSON, b2.as_bytes()).unwrap().dedup_key,
        n.dedup_key
    );
    let v2 = signed_form(
        SALT2,
        &[
            ("accId", ACC1),
            ("transactionId", "T"),
            ("status", "SUCCESS"),
        ],
    );
    run(&both, FORM, v2.as_bytes()).unwrap();
    let neither = Pingpong::new(salts(&["x", "y"]), None, DisputeSignScope::All);
    assert!(matches!(
        run(&neither, JSON, b.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
    // The accId-only dispute signature by either salt, when allowed.
    let acc_scope = Pingpong::new(salts(&[SALT2, SALT1]), None, DisputeSignScope::AccId);
    let mut m: Map<String, Value> =
        serde_json::from_str(&signed_json(SALT1, SignType::Sha256, &dispute_fields())).unwrap();
    m.insert(
        "sign".into(),
        Value::String(sign(SignType::Sha256, &format!("{SALT1}accId={ACC1}"))),
    );
    run(&acc_scope, JSON, Value::Object(m).to_string().as_bytes()).unwrap();
    let base = Path::new(".");
    for bad in ["salt = []", "salt = \"\"", "salt = [\"a\", \"\"]"] {
        let c: Config = toml::from_str(bad).unwrap();
        assert!(Pingpong::from_config(&c, base).is_err(), "{bad}");
    }
}

/// `cargo test --release --lib -- --ignored --nocapture pingpong_verify_cost`
#[test]
#[ignore]
fn pingpong_verify_cost() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let v = pp(SALT1);
    for kind in ["recharge", "dispute", "v2"] {
        let (ct, body) = crate::testkit::pingpong_sample(SALT1, ACC1, kind, &mut rng);
        let mut h = HeaderMap::new();
        h.insert(hyper::header::CONTENT_TYPE, ct.parse().unwrap());
        let req = Inbound {
            headers: &h,
            body: body.as_bytes(),
        };
        let label = format!("pingpong {kind} {} B: verify+normalize", body.len());
        crate::providers::bench::measure(&label, 100_000, || {
            std::hint::black_box(v.verify(std::hint::black_box(&req)).unwrap());
        });
    }
}
