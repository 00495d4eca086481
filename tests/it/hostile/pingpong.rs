//! PingPong: hostile JSON and form bodies signed over their fields the way PingPong signs them.

use payhook::providers::pingpong::{self, SignType};

use super::signed::*;
use super::*;

pub fn cases() -> Vec<Case> {
    let biz = pp_biz("RECHARGE");
    let v4 = |extra: &[(&'static str, &'static str)]| v4_fields(&biz, extra);
    let good = pp_json(&v4(&[]));
    let ms = (now() * 1000).to_string();
    let v2 = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = [
            ("accId", PP_ACC),
            ("amount", "10.00"),
            ("currency", "USD"),
            ("paymentType", "SALE"),
            ("status", "SUCCESS"),
            ("transactionId", "PS1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        f.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        f
    };
    let form_of = |f: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pp_form(&refs)
    };
    let dup_biz = format!(
        "{{\"notifyType\":\"RECHARGE\",\"status\":\"FAILED\",\"status\":\"SUCCESS\",\"transactionId\":\"2023002\",\"transactionTime\":\"{ms}\"}}"
    );
    let long_key = format!(
        "{{\"accId\":\"{PP_ACC}\",\"{}\":{{}},\"sign\":\"00\"}}",
        "k".repeat(MIB)
    );
    // A form whose percent-encoding is not UTF-8, signed over the text a lossy decoder sees.
    let lossy = {
        let fields = v2(&[("description", "\u{fffd}\u{fffd}")]);
        let refs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sign = pp_sign(&refs, SignType::Md5);
        let mut body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&refs[..refs.len() - 1])
            .finish();
        body.push_str(&format!("&description=%FF%FE&sign={sign}"));
        body
    };
    // Issue 8, item 3: a value that re-splits into another field with the same signed text.
    let resplit = form_of(&[
        ("accId".into(), PP_ACC.into()),
        ("merchantTransactionId".into(), "M-1&status=FAILED".into()),
        ("transactionId".into(), "PS2".into()),
    ]);
    let dispute_acc_only = {
        let sign = pingpong::sign(SignType::Sha256, &format!("{PP_SALT}accId={PP_ACC}"));
        serde_json::json!({
            "accId": PP_ACC, "disputePspReference": "DP1", "eventCode": "NOTIFICATION_OF_CHARGEBACK",
            "eventDate": ms, "amount": "10.00", "currency": "USD", "signType": "SHA256", "sign": sign,
        })
        .to_string()
    };
    let other_acc = pp_json(&[
        ("accId", "1234"),
        ("signType", "SHA256"),
        ("bizContent", biz.as_str()),
    ]);
    vec![
        case(
            "pingpong empty JSON body",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], ""),
        ),
        case(
            "pingpong truncated JSON",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], &good[..good.len() - 2]),
        ),
        case(
            "pingpong 30000 nested arrays",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)),
            ),
        ),
        case(
            "pingpong member holding an object",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                good.replacen("{", "{\"extra\":{\"a\":[1]},", 1),
            ),
        ),
        case("pingpong invalid UTF-8", BAD, MALFORMED, {
            let mut b = good.clone().into_bytes();
            let at = good.find("2018092714313010016\"").expect("clientId");
            b[at] = 0xff;
            post(PINGPONG, &[JSON], b)
        }),
        case(
            // A number is signed as its JSON text: 1e400 is only text to PingPong, and this one is
            // not signed.
            "pingpong number 1e400, not signed",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPONG, &[JSON], good.replacen("{", "{\"n\":1e400,", 1)),
        ),
        case(
            "pingpong duplicate JSON keys, signed",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                pp_json(&v4(&[("code", "000000"), ("code", "000001")])),
            ),
        ),
        case(
            "pingpong duplicate keys in bizContent, signed",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                pp_json(&[
                    ("accId", PP_ACC),
                    ("signType", "SHA256"),
                    ("bizContent", &dup_biz),
                ]),
            ),
        ),
        case(
            "pingpong key with a space, signed",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], pp_json(&v4(&[("a b", "x")]))),
        ),
        case(
            "pingpong key with a control byte, signed",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], pp_json(&v4(&[("a\u{1}", "x")]))),
        ),
        case(
            "pingpong 1 MiB key",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], &long_key),
        ),
        case(
            "pingpong bizContent not JSON, signed",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                pp_json(&[
                    ("accId", PP_ACC),
                    ("signType", "SHA256"),
                    ("bizContent", "{\"notifyType\":"),
                ]),
            ),
        ),
        case(
            "pingpong no accId, signed",
            BAD,
            MALFORMED,
            post(
                PINGPONG,
                &[JSON],
                pp_json(&[("signType", "SHA256"), ("bizContent", &biz)]),
            ),
        ),
        case(
            "pingpong JSON array",
            BAD,
            MALFORMED,
            post(PINGPONG, &[JSON], "[{\"accId\":\"1\"}]"),
        ),
        case(
            "pingpong repeated form keys, signed",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], form_of(&v2(&[("status", "FAILED")]))),
        ),
        case(
            "pingpong two sign fields in a form",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], format!("{}&sign=00", form_of(&v2(&[])))),
        ),
        case(
            "pingpong form value re-splits into fields",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], &resplit),
        ),
        case(
            "pingpong form with %FF%FE, signed as decoded",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], &lossy),
        ),
        case(
            "pingpong form of raw invalid UTF-8",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], b"accId=1&description=\xff\xfe"),
        ),
        case(
            "pingpong form key with a space, signed",
            BAD,
            MALFORMED,
            post(PINGPONG, &[FORM], form_of(&v2(&[("a b", "x")]))),
        ),
        case(
            "pingpong unknown signType, signed",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPONG,
                &[JSON],
                pp_json(&[
                    ("accId", PP_ACC),
                    ("signType", "SHA1"),
                    ("bizContent", &biz),
                ]),
            ),
        ),
        case(
            "pingpong sign missing",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPONG,
                &[JSON],
                serde_json::json!({"accId": PP_ACC, "signType": "SHA256", "bizContent": biz})
                    .to_string(),
            ),
        ),
        case(
            "pingpong foreign accId, signed",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPONG, &[JSON], &other_acc),
        ),
        case(
            "pingpong dispute signed over accId only",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPONG, &[JSON], &dispute_acc_only),
        ),
        case(
            "pingpong amount changed after signing",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPONG,
                &[JSON],
                good.replacen("10.000000", "99.000000", 1),
            ),
        ),
        case(
            "pingpong text/xml",
            MEDIA,
            UNSUPPORTED,
            post(PINGPONG, &[("Content-Type", "text/xml")], &good),
        ),
    ]
}
