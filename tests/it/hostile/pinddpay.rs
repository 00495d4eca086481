//! Pinddpay: hostile bodies signed with `md5(body+secret)`, and hostile tokens.

use super::signed::*;
use super::*;

pub fn cases() -> Vec<Case> {
    let ev = pdd_event();
    let v: serde_json::Value = serde_json::from_str(&ev).expect("sample is JSON");
    let with = |key: &str, value: serde_json::Value| {
        let mut v = v.clone();
        v[key] = value;
        v.to_string()
    };
    let mut no_id = v.clone();
    no_id.as_object_mut().expect("object").remove("eventId");
    let token = payhook::providers::pinddpay::sign(
        payhook::providers::pinddpay::SignScheme::BodySecret,
        ev.as_bytes(),
        PDD_SECRET,
    );
    let long_key = format!("{{\"{}\":1,\"eventName\":\"order.paid\"}}", "k".repeat(MIB));
    let mut invalid_utf8 = ev.clone().into_bytes();
    let at = ev.find("buyer@").expect("sample has an email");
    invalid_utf8[at] = 0xc3;
    invalid_utf8[at + 1] = 0x28;
    vec![
        case(
            "pinddpay empty body, signed",
            BAD,
            MALFORMED,
            pdd_signed(""),
        ),
        case(
            "pinddpay truncated JSON, signed",
            BAD,
            MALFORMED,
            pdd_signed(&ev[..ev.len() - 1]),
        ),
        case(
            "pinddpay 30000 nested arrays, signed",
            BAD,
            MALFORMED,
            pdd_signed(format!("{}{}", "[".repeat(30_000), "]".repeat(30_000))),
        ),
        case(
            "pinddpay invalid UTF-8, signed",
            BAD,
            MALFORMED,
            pdd_signed(&invalid_utf8),
        ),
        case(
            "pinddpay no eventId, signed",
            BAD,
            MALFORMED,
            pdd_signed(no_id.to_string()),
        ),
        case(
            "pinddpay eventId 1e400, signed",
            BAD,
            MALFORMED,
            pdd_signed(ev.replacen("\"eventId\":", "\"eventId\":1e400,\"x\":", 1)),
        ),
        case(
            "pinddpay number 7e975 in an unmapped member, signed",
            BAD,
            MALFORMED,
            pdd_signed(ev.replacen('{', "{\"pad\":7e975,", 1)),
        ),
        case(
            "pinddpay eventId null, signed",
            BAD,
            MALFORMED,
            pdd_signed(with("eventId", serde_json::Value::Null)),
        ),
        case(
            "pinddpay 1 MiB key, no eventId, signed",
            BAD,
            MALFORMED,
            pdd_signed(&long_key),
        ),
        case(
            "pinddpay wrong token",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINDDPAY,
                &[JSON, ("sign-token", "E10ADC3949BA59ABBE56E057F20F883E")],
                &ev,
            ),
        ),
        case(
            "pinddpay garbled body, no token",
            FORGED,
            INVALID_SIGNATURE,
            post(PINDDPAY, &[JSON], "{\"eventId\":"),
        ),
        case(
            "pinddpay two tokens, good first",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINDDPAY,
                &[
                    JSON,
                    ("sign-token", &token),
                    ("Sign-Token", &"0".repeat(32)),
                ],
                &ev,
            ),
        ),
        case(
            "pinddpay other appId, signed",
            FORGED,
            INVALID_SIGNATURE,
            pdd_signed(with("appId", "app_2".into())),
        ),
        case(
            "pinddpay form content type",
            MEDIA,
            UNSUPPORTED,
            post(
                PINDDPAY,
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("sign-token", &token),
                ],
                &ev,
            ),
        ),
    ]
}
