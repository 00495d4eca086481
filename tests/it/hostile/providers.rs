//! Hostile bodies for each provider. Where the provider signs the raw body (Ping++, Pinddpay) or
//! the parsed fields (PingPong, WeChat), the hostile body is signed correctly, so the case reaches
//! the parser: a correctly signed body that cannot be parsed is a 400, not a 401.

use payhook::providers::pingpong::{self, SignType};
use payhook::providers::{pinddpay, wechat_alarm};

use super::{Case, case, post};
use crate::harness::keys;

pub const PDD_SECRET: &str = "s3cret";
pub const PDD_APP: &str = "app_1";
pub const PP_ACC: &str = "2018092714313010016291";
pub const PP_SALT: &str = "F78BC96A55548B2319EE68E0";
pub const WX_APP: &str = "wxd930ea5d5a258f4f";
pub const WX_KEY: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";
/// Another app's key (WeChat's second documented example), to sign a foreign alarm.
const WX_APP2: &str = "wxf8b4f85f3a794e77";
const WX_KEY2: &str = "2Wozy2aksie1puXUBpWD8oZxiD1DfQuEaiC7KcRATv1Ino3mdopKaPGQQ7TtkNySuAmCaDCrw4xhPY5qKTBl7Fzm0RgR3c0WaVYIXZARsxzHV2x7iwPPzOz94dnwPWSn";

const MIB: usize = 1024 * 1024;
const BAD: u16 = 400;
const MALFORMED: &str = "malformed_payload";
const FORGED: u16 = 401;
const INVALID_SIGNATURE: &str = "invalid_signature";
const MEDIA: u16 = 415;
const UNSUPPORTED: &str = "unsupported_media_type";

/// The `[[source]]` tables of the catalogue's daemon (Ping++ `pingpp` comes with the harness).
pub fn sources() -> String {
    format!(
        r#"
[[source]]
name = "pinddpay"
provider = "pinddpay"
secret = "{PDD_SECRET}"
app_id = "{PDD_APP}"

[[source]]
name = "pingpong"
provider = "pingpong"
salt = "{PP_SALT}"
acc_ids = ["{PP_ACC}"]

[[source]]
name = "wechat"
provider = "wechat_alarm"
app_id = "{WX_APP}"
app_key = "{WX_KEY}"
"#
    )
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

// ---- Ping++ -----------------------------------------------------------------------------------

const PINGPP: &str = "/hooks/pingpp";
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn pingpp_sig(body: &[u8]) -> String {
    payhook::cli::simulate::pingpp_sign(&keys().signing, body)
}

/// Signed correctly, so only the body can be at fault.
fn pingpp_signed(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    post(
        PINGPP,
        &[JSON, ("X-Pingplusplus-Signature", &pingpp_sig(body))],
        body,
    )
}

fn pingpp_event() -> String {
    payhook::cli::simulate::pingpp_event("charge.succeeded", &mut rand::thread_rng())
}

fn pingpp_cases() -> Vec<Case> {
    let ev = pingpp_event();
    let sig = pingpp_sig(ev.as_bytes());
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let mut invalid_utf8 = ev.clone().into_bytes();
    let at = ev.find("\"object\":\"event\"").expect("sample has object") + 10;
    invalid_utf8[at] = 0xff;
    let huge = ev.replacen("\"created\":", "\"created\":1e400,\"x\":", 1);
    let long_key = format!("{{\"{}\":{{}}, \"type\":", "k".repeat(MIB));
    let urlsafe = sig.replace('+', "-").replace('/', "_");
    vec![
        case(
            "pingpp empty body, signed",
            BAD,
            MALFORMED,
            pingpp_signed(""),
        ),
        case(
            "pingpp truncated JSON, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&ev[..ev.len() / 2]),
        ),
        case(
            "pingpp 30000 nested arrays, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&nested),
        ),
        case(
            "pingpp 20000 nested objects, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&deep_object),
        ),
        case(
            "pingpp invalid UTF-8, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&invalid_utf8),
        ),
        case(
            "pingpp number 1e400, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&huge),
        ),
        case(
            "pingpp JSON array, signed",
            BAD,
            MALFORMED,
            pingpp_signed("[1,2,3]"),
        ),
        case(
            "pingpp 1 MiB key, truncated, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&long_key),
        ),
        case(
            "pingpp no signature header",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON], &ev),
        ),
        case(
            "pingpp garbled body, no signature",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON], "{not json"),
        ),
        case(
            "pingpp base64url signature",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON, ("X-Pingplusplus-Signature", &urlsafe)], &ev),
        ),
        case(
            "pingpp 8 KiB signature header",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[JSON, ("X-Pingplusplus-Signature", &"A".repeat(8 * 1024))],
                &ev,
            ),
        ),
        case(
            "pingpp two signature headers, good first",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[
                    JSON,
                    ("X-Pingplusplus-Signature", &sig),
                    ("X-Pingplusplus-Signature", "AAAA"),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp two signature headers, good last",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[
                    JSON,
                    ("X-Pingplusplus-Signature", "AAAA"),
                    ("x-pingplusplus-signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp text/plain",
            MEDIA,
            UNSUPPORTED,
            post(
                PINGPP,
                &[
                    ("Content-Type", "text/plain"),
                    ("X-Pingplusplus-Signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp no content type",
            MEDIA,
            UNSUPPORTED,
            post(PINGPP, &[("X-Pingplusplus-Signature", &sig)], &ev),
        ),
        case(
            "pingpp two content types",
            MEDIA,
            UNSUPPORTED,
            post(
                PINGPP,
                &[
                    JSON,
                    ("Content-Type", "text/plain"),
                    ("X-Pingplusplus-Signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp content type with a 0xFF byte",
            MEDIA,
            UNSUPPORTED,
            {
                let mut r = post(
                    PINGPP,
                    &[
                        ("Content-Type", "application/json;x=\u{1}"),
                        ("X-Pingplusplus-Signature", &sig),
                    ],
                    &ev,
                );
                let at = super::find(&r, b"\x01").expect("marker");
                r[at] = 0xff;
                r
            },
        ),
    ]
}

// ---- Pinddpay ---------------------------------------------------------------------------------

const PINDDPAY: &str = "/hooks/pinddpay";

fn pdd_signed(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let token = pinddpay::sign(pinddpay::SignScheme::BodySecret, body, PDD_SECRET);
    post(PINDDPAY, &[JSON, ("sign-token", &token)], body)
}

fn pdd_event() -> String {
    payhook::cli::simulate::pinddpay_event("order.paid", PDD_APP, &mut rand::thread_rng())
}

fn pinddpay_cases() -> Vec<Case> {
    let ev = pdd_event();
    let v: serde_json::Value = serde_json::from_str(&ev).expect("sample is JSON");
    let with = |key: &str, value: serde_json::Value| {
        let mut v = v.clone();
        v[key] = value;
        v.to_string()
    };
    let mut no_id = v.clone();
    no_id.as_object_mut().expect("object").remove("eventId");
    let token = pinddpay::sign(pinddpay::SignScheme::BodySecret, ev.as_bytes(), PDD_SECRET);
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

// ---- PingPong ---------------------------------------------------------------------------------

const PINGPONG: &str = "/hooks/pingpong";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// `sign` over these (key, text) pairs the way PingPong computes it.
fn pp_sign(fields: &[(&str, &str)], t: SignType) -> String {
    let content = pingpong::sign_content(PP_SALT, fields.iter().map(|(k, v)| (*k, Some(*v))));
    pingpong::sign(t, &content)
}

/// A JSON body of string members written in this order (repeats kept), with its `sign` first.
fn pp_json(fields: &[(&str, &str)]) -> String {
    let sign = pp_sign(fields, SignType::Sha256);
    let mut out = format!("{{\"sign\":\"{sign}\"");
    for (k, v) in fields {
        let k = serde_json::to_string(k).expect("string");
        let v = serde_json::to_string(v).expect("string");
        out.push_str(&format!(",{k}:{v}"));
    }
    out.push('}');
    out
}

/// A V2 form body of these fields (repeats kept), form-encoded, then `sign` (MD5).
fn pp_form(fields: &[(&str, &str)]) -> String {
    let sign = pp_sign(fields, SignType::Md5);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .append_pair("sign", &sign)
        .finish()
}

fn pp_biz(notify: &str) -> String {
    serde_json::json!({
        "amount": "10.000000", "currency": "USD", "merchantTransactionId": "PMT-1",
        "transactionId": "2023001", "notifyType": notify, "status": "SUCCESS",
        "transactionTime": (now() * 1000).to_string(),
    })
    .to_string()
}

/// A V4 payment notification's fields (accId, clientId, signType, bizContent) plus `extra`.
fn v4_fields<'a>(biz: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("accId", PP_ACC),
        ("clientId", "2018092714313010016"),
        ("signType", "SHA256"),
        ("bizContent", biz),
    ];
    f.extend_from_slice(extra);
    f
}

fn pingpong_cases() -> Vec<Case> {
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
            "pingpong number 1e400",
            BAD,
            MALFORMED,
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

// ---- WeChat alarms ----------------------------------------------------------------------------

const WECHAT: &str = "/hooks/wechat";
const XML: (&str, &str) = ("Content-Type", "text/xml");

fn wx_post(body: impl AsRef<[u8]>) -> Vec<u8> {
    post(WECHAT, &[XML], body)
}

/// A signed alarm with plain-text values (no CDATA), for cases that edit its text.
fn wx_alarm(app: &str, key: &str, error_type: &str) -> (String, String) {
    let ts = now().to_string();
    let sig = wechat_alarm::v2_signature(&[
        ("appid", app),
        ("errortype", error_type),
        ("description", "d"),
        ("alarmcontent", "c"),
        ("timestamp", &ts),
        ("appkey", key),
    ]);
    let xml = format!(
        "<xml><AppId>{app}</AppId><ErrorType>{error_type}</ErrorType><Description>d</Description>\
         <AlarmContent>c</AlarmContent><TimeStamp>{ts}</TimeStamp>\
         <AppSignature>{sig}</AppSignature><SignMethod>sha1</SignMethod></xml>"
    );
    (xml, sig)
}

fn wechat_cases() -> Vec<Case> {
    let (good, sig) = wx_alarm(WX_APP, WX_KEY, "1001");
    let (foreign, _) = wx_alarm(WX_APP2, WX_KEY2, "1001");
    let insert = |extra: &str| good.replacen("<SignMethod>", &format!("{extra}<SignMethod>"), 1);
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE xml [\n <!ENTITY l0 \"ha\">\n");
    for i in 1..10 {
        let prev = format!("&l{};", i - 1);
        laughs.push_str(&format!(" <!ENTITY l{i} \"{}\">\n", prev.repeat(10)));
    }
    laughs.push_str("]>\n");
    laughs.push_str(&good.replacen(
        "<Description>d</Description>",
        "<Description>&l9;</Description>",
        1,
    ));
    let xxe = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE xml [ <!ENTITY x SYSTEM \"file:///etc/passwd\"> ]>\n{}",
        good.replacen(
            "<Description>d</Description>",
            "<Description>&x;</Description>",
            1
        )
    );
    let xxe_param =
        format!("<!DOCTYPE xml [ <!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p; ]>{good}");
    let long_name = "N".repeat(MIB);
    let nested = format!(
        "<xml>{}{}</xml>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    let mut invalid_utf8 = good.clone().into_bytes();
    let at = good.find("<AlarmContent>c").expect("content") + 14;
    invalid_utf8[at] = 0xff;
    vec![
        case("wechat empty body", BAD, MALFORMED, wx_post("")),
        case(
            "wechat truncated XML",
            BAD,
            MALFORMED,
            wx_post(&good[..good.len() - 4]),
        ),
        case("wechat billion laughs", BAD, MALFORMED, wx_post(&laughs)),
        case("wechat XXE file entity", BAD, MALFORMED, wx_post(&xxe)),
        case(
            "wechat XXE parameter entity",
            BAD,
            MALFORMED,
            wx_post(&xxe_param),
        ),
        case(
            "wechat DOCTYPE alone",
            BAD,
            MALFORMED,
            wx_post(format!("<!DOCTYPE xml>{good}")),
        ),
        case(
            "wechat undefined entity",
            BAD,
            MALFORMED,
            wx_post(good.replacen(">d<", ">&nbsp;<", 1)),
        ),
        case(
            "wechat root other than xml",
            BAD,
            MALFORMED,
            wx_post(good.replace("<xml>", "<root>").replace("</xml>", "</root>")),
        ),
        case(
            "wechat two roots",
            BAD,
            MALFORMED,
            wx_post(format!("{good}<xml></xml>")),
        ),
        case(
            "wechat repeated element",
            BAD,
            MALFORMED,
            wx_post(insert("<ErrorType>1002</ErrorType>")),
        ),
        case(
            "wechat repeated element, other case",
            BAD,
            MALFORMED,
            wx_post(insert("<errortype>1001</errortype>")),
        ),
        case(
            "wechat nested element",
            BAD,
            MALFORMED,
            wx_post(good.replacen(">c<", "><b>c</b><", 1)),
        ),
        case(
            "wechat 20000 nested elements",
            BAD,
            MALFORMED,
            wx_post(&nested),
        ),
        case(
            "wechat unknown element, signed",
            BAD,
            MALFORMED,
            wx_post(insert("<Extra>x</Extra>")),
        ),
        case(
            "wechat 1 MiB element name",
            BAD,
            MALFORMED,
            wx_post(insert(&format!("<{long_name}>x</Other>"))),
        ),
        case(
            "wechat invalid UTF-8",
            BAD,
            MALFORMED,
            wx_post(&invalid_utf8),
        ),
        case(
            "wechat processing instruction",
            BAD,
            MALFORMED,
            wx_post(format!("<?evil x?>{good}")),
        ),
        case(
            "wechat CDATA outside a field",
            BAD,
            MALFORMED,
            wx_post(good.replacen("<xml>", "<xml><![CDATA[x]]>", 1)),
        ),
        case(
            "wechat signature + U+3000",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(good.replacen(&sig, &format!("{sig}\u{3000}"), 1)),
        ),
        case(
            "wechat signature of 39 digits",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(good.replacen(&sig, &sig[..39], 1)),
        ),
        case(
            "wechat SignMethod md5",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(good.replacen(">sha1<", ">md5<", 1)),
        ),
        case(
            "wechat other app, its own key",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(&foreign),
        ),
        case(
            "wechat description changed",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(good.replacen(">d<", ">e<", 1)),
        ),
        case(
            "wechat application/json",
            MEDIA,
            UNSUPPORTED,
            post(WECHAT, &[JSON], &good),
        ),
    ]
}

pub fn cases() -> Vec<Case> {
    let mut all = pingpp_cases();
    all.extend(pinddpay_cases());
    all.extend(pingpong_cases());
    all.extend(wechat_cases());
    all
}

/// A good webhook, signed for the catalogue's daemon, not yet framed as a request.
pub struct Signed {
    pub source: &'static str,
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub dedup_key: String,
}

impl Signed {
    /// The webhook as a provider would send it.
    pub fn request(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(self.path, &headers, &self.body)
    }
}

/// One fresh good webhook per provider (new ids on every call).
pub fn signed_webhooks() -> Vec<Signed> {
    let mut rng = rand::thread_rng();
    let mut out = Vec::new();
    let json = || ("Content-Type", "application/json".to_string());

    let ev = pingpp_event();
    let id = serde_json::from_str::<serde_json::Value>(&ev).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_string();
    out.push(Signed {
        source: "pingpp",
        path: PINGPP,
        headers: vec![
            json(),
            ("X-Pingplusplus-Signature", pingpp_sig(ev.as_bytes())),
        ],
        body: ev.into_bytes(),
        dedup_key: id,
    });

    let ev = pdd_event();
    let id = serde_json::from_str::<serde_json::Value>(&ev).expect("JSON")["eventId"]
        .as_str()
        .expect("eventId")
        .to_string();
    let token = pinddpay::sign(pinddpay::SignScheme::BodySecret, ev.as_bytes(), PDD_SECRET);
    out.push(Signed {
        source: "pinddpay",
        path: PINDDPAY,
        headers: vec![json(), ("sign-token", token)],
        body: ev.into_bytes(),
        dedup_key: id,
    });

    let (ct, body) = payhook::cli::simulate::pingpong_sample(PP_SALT, PP_ACC, "refund", &mut rng);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let biz: serde_json::Value =
        serde_json::from_str(v["bizContent"].as_str().expect("bizContent")).expect("JSON");
    let key = format!(
        "REFUND:{}:{}:SUCCESS",
        biz["transactionId"].as_str().expect("transactionId"),
        biz["refundId"].as_str().expect("refundId")
    );
    out.push(Signed {
        source: "pingpong",
        path: PINGPONG,
        headers: vec![("Content-Type", ct.to_string())],
        body: body.into_bytes(),
        dedup_key: key,
    });

    // Alarms carry no id: a random error type keeps two calls apart.
    let error_type = rand::Rng::gen_range(&mut rng, 2000..9999).to_string();
    let (xml, sig) = wx_alarm(WX_APP, WX_KEY, &error_type);
    let ts = xml
        .split("<TimeStamp>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("timestamp")
        .to_string();
    out.push(Signed {
        source: "wechat",
        path: WECHAT,
        headers: vec![("Content-Type", "text/xml".to_string())],
        body: xml.into_bytes(),
        dedup_key: format!("{WX_APP}:{error_type}:{ts}:{sig}"),
    });
    out
}
