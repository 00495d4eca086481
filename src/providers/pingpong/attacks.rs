//! The attacks of issue 8 on PingPong (items 1-3 and 5), each exactly as reported: they pass
//! only when a captured, correctly signed webhook cannot be turned into another event.

use serde_json::json;

use super::tests::{ACC1, FORM, JSON, SALT1, envelope, pp, recharge_biz, run};
use super::*;
use crate::testkit::pingpong::{signed_form, signed_json};

/// Issue 8, item 1: `"eventCode":""` added to a captured V4 payment notification still verifies
/// (empty values are not signed) and must not turn it into a new `dispute` event.
#[test]
fn attack_empty_event_code_does_not_make_a_dispute() {
    let captured = envelope(SALT1, &recharge_biz("SUCCESS", "RECHARGE"));
    let base = run(&pp(SALT1), JSON, captured.as_bytes()).unwrap();
    for added in [r#""eventCode":"""#, r#""eventCode":null"#] {
        let mutated = captured.replacen('{', &format!("{{{added},"), 1);
        match run(&pp(SALT1), JSON, mutated.as_bytes()) {
            Ok(n) => {
                assert_eq!(n.event_type, base.event_type, "{added}");
                assert_eq!(n.category, Category::Payment, "{added}");
                assert_eq!(n.dedup_key, base.dedup_key, "{added}");
                assert_eq!(n.content_hash, base.content_hash, "{added}");
                assert_eq!(n.payload, base.payload, "{added}");
            }
            Err(e) => assert!(matches!(e, ProviderError::Malformed(_)), "{e}"),
        }
    }
}

/// Issue 8, item 2: where the dedup key falls back to a hash, bytes the signature does not cover
/// (whitespace, key order, `\u00e9` against `é`, an added null, `+` against `%20`) must not give
/// a new key.
#[test]
fn attack_hash_keys_survive_unsigned_changes() {
    // A dispute without disputePspReference, a V4 body without notifyType, a V2 form without
    // transactionId: all fall back to the content hash.
    let dispute = signed_json(
        SALT1,
        SignType::Sha256,
        &[
            ("accId", json!(ACC1)),
            ("eventCode", json!("REQUEST_FOR_INFORMATION")),
            ("reason", json!("Fraude répétée")),
            ("signType", json!("SHA256")),
        ],
    );
    let v4 = envelope(SALT1, r#"{"status":"SUCCESS","remark":"café"}"#);
    for captured in [dispute, v4] {
        let base = run(&pp(SALT1), JSON, captured.as_bytes()).unwrap();
        assert!(base.dedup_key.starts_with("sha256:"), "{}", base.dedup_key);
        let v: Map<String, Value> = serde_json::from_str(&captured).unwrap();
        let mut reversed = Map::new();
        for (k, val) in v.iter().rev() {
            reversed.insert(k.clone(), val.clone());
        }
        let reordered = Value::Object(reversed).to_string();
        let escaped = captured.replace('é', "\\u00e9");
        assert_ne!(escaped, captured);
        for (what, mutated) in [
            ("whitespace", serde_json::to_string_pretty(&v).unwrap()),
            ("key order", reordered),
            ("escapes", escaped),
            ("added null", captured.replacen('{', r#"{"x":null,"#, 1)),
            ("added empty", captured.replacen('{', r#"{"y":"","#, 1)),
        ] {
            let n = run(&pp(SALT1), JSON, mutated.as_bytes()).unwrap();
            assert_eq!(n.dedup_key, base.dedup_key, "{what}");
            assert_eq!(n.content_hash, base.content_hash, "{what}");
            assert_eq!(n.payload, base.payload, "{what}");
        }
    }
    let form = signed_form(
        SALT1,
        &[
            ("accId", ACC1),
            ("description", "paid in full"),
            ("status", "SUCCESS"),
        ],
    );
    assert!(form.contains("paid+in+full"));
    let base = run(&pp(SALT1), FORM, form.as_bytes()).unwrap();
    assert!(base.dedup_key.starts_with("sha256:"));
    for (what, mutated) in [
        ("%20 for +", form.replace('+', "%20")),
        ("%41 for A", form.replace("SUCCESS", "%53UCCESS")),
        ("empty field", format!("x=&{form}")),
        ("empty segment", format!("&&{form}&")),
        (
            "field order",
            form.split('&').rev().collect::<Vec<_>>().join("&"),
        ),
    ] {
        let n = run(&pp(SALT1), FORM, mutated.as_bytes()).unwrap();
        assert_eq!(n.dedup_key, base.dedup_key, "{what}");
        assert_eq!(n.content_hash, base.content_hash, "{what}");
        assert_eq!(n.payload, base.payload, "{what}");
    }
}

/// Issue 8, item 3: `&` and `=` are not escaped in the signed text, so a V2 form could be
/// re-split: a value holding `M-1&status=FAILED`, the real `status` field dropped.
#[test]
fn attack_resplit_form_is_refused() {
    let captured = signed_form(
        SALT1,
        &[
            ("accId", ACC1),
            ("merchantTransactionId", "M-1"),
            ("paymentType", "SALE"),
            ("status", "SUCCESS"),
            ("transactionId", "T-1"),
        ],
    );
    let base = run(&pp(SALT1), FORM, captured.as_bytes()).unwrap();
    assert_eq!(base.dedup_key, "SALE:T-1:SUCCESS");
    // Same signed text: …&merchantTransactionId=M-1&paymentType=SALE&status=SUCCESS&…, read as
    // one merchantTransactionId and no paymentType or status.
    let sign_value = captured.rsplit_once("sign=").unwrap().1;
    let merged = format!(
        "accId={ACC1}&merchantTransactionId=M-1%26paymentType%3DSALE%26status%3DSUCCESS\
         &transactionId=T-1&sign={sign_value}"
    );
    assert!(matches!(
        run(&pp(SALT1), FORM, merged.as_bytes()),
        Err(ProviderError::Malformed(_))
    ));
    // The reverse: a captured form whose value holds `&status=FAILED` cannot be split into a
    // status field either (such a form is refused from the start).
    let holding = signed_form(
        SALT1,
        &[
            ("accId", ACC1),
            ("merchantTransactionId", "M-1&status=FAILED"),
        ],
    );
    assert!(matches!(
        run(&pp(SALT1), FORM, holding.as_bytes()),
        Err(ProviderError::Malformed(_))
    ));
    let sign_value = holding.rsplit_once("sign=").unwrap().1;
    let split = format!("accId={ACC1}&merchantTransactionId=M-1&status=FAILED&sign={sign_value}");
    let n = run(&pp(SALT1), FORM, split.as_bytes());
    // This one is the maximal reading of its signed text: it verifies, and it is what the
    // signed text says.
    assert_eq!(n.unwrap().outcome, Outcome::Failed);
}

/// The counterexample to bounding the split by the next key only: a V2 form whose
/// `notifyUrl` holds `&q=…` must not be readable as a `q` field that swallows `paymentType`.
#[test]
fn attack_split_past_the_next_key_is_refused() {
    let captured = signed_form(
        SALT1,
        &[
            ("accId", ACC1),
            ("notifyUrl", "https://m.example/cb?p=1&q=2"),
            ("paymentType", "SALE"),
            ("status", "SUCCESS"),
            ("transactionId", "T-1"),
        ],
    );
    assert!(matches!(
        run(&pp(SALT1), FORM, captured.as_bytes()),
        Err(ProviderError::Malformed(_))
    ));
}

#[test]
fn huge_keys_make_short_messages() {
    let k = "k".repeat(1 << 20);
    for body in [
        format!(r#"{{"{k}":"1"}}"#),
        format!(r#"{{"accId":"1","{k}":"1","{k}":"2"}}"#),
        format!(r#"{{"accId":"1","{k} ":"1"}}"#),
    ] {
        let e = run(&pp(SALT1), JSON, body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{}", e.len());
    }
    let biz = format!(r#"{{"{k}":1,"{k}":2}}"#);
    let e = run(&pp(SALT1), JSON, envelope(SALT1, &biz).as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.len() < 200, "{}", e.len());
    let e = run(&pp(SALT1), FORM, format!("accId=1&{k}%zz=1").as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.len() < 200, "{}", e.len());
}

#[test]
fn duplicate_keys_in_biz_content_are_refused() {
    for biz in [
        r#"{"status":"SUCCESS","status":"FAILED"}"#,
        r#"{"a":{"b":1,"b":2}}"#,
    ] {
        let b = envelope(SALT1, biz);
        assert!(matches!(
            run(&pp(SALT1), JSON, b.as_bytes()),
            Err(ProviderError::Malformed(_))
        ));
    }
}
