//! Signing for the catalogue: the daemon's sources and secrets, and helpers that sign a (hostile)
//! body the way each provider does, so a case reaches the parser: a correctly signed body that
//! cannot be parsed is a 400, not a 401.

use payhook::providers::pingpong::{self, SignType};
use payhook::providers::{pinddpay, wechat_alarm};

use super::post;
use crate::harness::keys;

pub const PDD_SECRET: &str = "s3cret";
pub const PDD_APP: &str = "app_1";
pub const PP_ACC: &str = "2018092714313010016291";
pub const PP_SALT: &str = "F78BC96A55548B2319EE68E0";
pub const WX_APP: &str = "wxd930ea5d5a258f4f";
pub const WX_KEY: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";
/// Another app's key (WeChat's second documented example), to sign a foreign alarm.
pub const WX_APP2: &str = "wxf8b4f85f3a794e77";
pub const WX_KEY2: &str = "2Wozy2aksie1puXUBpWD8oZxiD1DfQuEaiC7KcRATv1Ino3mdopKaPGQQ7TtkNySuAmCaDCrw4xhPY5qKTBl7Fzm0RgR3c0WaVYIXZARsxzHV2x7iwPPzOz94dnwPWSn";

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

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The catalogue daemon's replay window (`[server] max_event_age`), and a signed time past it.
pub const MAX_EVENT_AGE: &str = "2d";
pub fn too_old() -> i64 {
    now() - 3 * 86_400
}

pub const PINGPP: &str = "/hooks/pingpp";
pub const JSON: (&str, &str) = ("Content-Type", "application/json");

pub fn pingpp_sig(body: &[u8]) -> String {
    payhook::testkit::pingpp_sign(&keys().signing, body)
}

/// Signed correctly, so only the body can be at fault.
pub fn pingpp_signed(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    post(
        PINGPP,
        &[JSON, ("X-Pingplusplus-Signature", &pingpp_sig(body))],
        body,
    )
}

pub fn pingpp_event() -> String {
    payhook::testkit::pingpp_event("charge.succeeded", &mut rand::thread_rng())
}

pub const PINDDPAY: &str = "/hooks/pinddpay";

pub fn pdd_signed(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let token = pinddpay::sign(pinddpay::SignScheme::BodySecret, body, PDD_SECRET);
    post(PINDDPAY, &[JSON, ("sign-token", &token)], body)
}

pub fn pdd_event() -> String {
    payhook::testkit::pinddpay_event("order.paid", PDD_APP, &mut rand::thread_rng())
}

pub const PINGPONG: &str = "/hooks/pingpong";
pub const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// `sign` over these (key, text) pairs the way PingPong computes it.
pub fn pp_sign(fields: &[(&str, &str)], t: SignType) -> String {
    let content = pingpong::sign_content(PP_SALT, fields.iter().map(|(k, v)| (*k, Some(*v))));
    pingpong::sign(t, &content)
}

/// A JSON body of string members written in this order (repeats kept), with its `sign` first.
pub fn pp_json(fields: &[(&str, &str)]) -> String {
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
pub fn pp_form(fields: &[(&str, &str)]) -> String {
    let sign = pp_sign(fields, SignType::Md5);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .append_pair("sign", &sign)
        .finish()
}

pub fn pp_biz(notify: &str) -> String {
    pp_biz_at(notify, now())
}

/// A V4 `bizContent` whose signed transaction time is `at` (unix seconds).
pub fn pp_biz_at(notify: &str, at: i64) -> String {
    serde_json::json!({
        "amount": "10.000000", "currency": "USD", "merchantTransactionId": "PMT-1",
        "transactionId": "2023001", "notifyType": notify, "status": "SUCCESS",
        "transactionTime": (at * 1000).to_string(),
    })
    .to_string()
}

/// A V4 payment notification's fields (accId, clientId, signType, bizContent) plus `extra`.
pub fn v4_fields<'a>(biz: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("accId", PP_ACC),
        ("clientId", "2018092714313010016"),
        ("signType", "SHA256"),
        ("bizContent", biz),
    ];
    f.extend_from_slice(extra);
    f
}

pub const WECHAT: &str = "/hooks/wechat";
pub const XML: (&str, &str) = ("Content-Type", "text/xml");

pub fn wx_post(body: impl AsRef<[u8]>) -> Vec<u8> {
    post(WECHAT, &[XML], body)
}

/// A signed alarm with plain-text values (no CDATA), for cases that edit its text.
pub fn wx_alarm(app: &str, key: &str, error_type: &str) -> (String, String) {
    wx_alarm_at(app, key, error_type, now())
}

/// The same with the signed `TimeStamp` `at`.
pub fn wx_alarm_at(app: &str, key: &str, error_type: &str, at: i64) -> (String, String) {
    let ts = at.to_string();
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

    let (ct, body) = payhook::testkit::pingpong_sample(PP_SALT, PP_ACC, "refund", &mut rng);
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
