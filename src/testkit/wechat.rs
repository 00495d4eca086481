//! WeChat Pay alarm samples, signed with [`crate::providers::wechat_alarm::v2_signature`].

use rand::Rng;

use crate::providers::wechat_alarm::v2_signature;

/// `s` as CDATA, splitting any `]]>` it holds across two sections.
pub fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

/// A signed alarm notice as WeChat sends it: CDATA for text values.
pub fn signed_alarm_xml(
    app_id: &str,
    app_key: &str,
    error_type: &str,
    description: &str,
    alarm_content: &str,
    timestamp: i64,
) -> String {
    let ts = timestamp.to_string();
    let sig = v2_signature(&[
        ("appid", app_id),
        ("errortype", error_type),
        ("description", description),
        ("alarmcontent", alarm_content),
        ("timestamp", &ts),
        ("appkey", app_key),
    ]);
    format!(
        "<xml><AppId>{}</AppId><ErrorType>{error_type}</ErrorType><Description>{}</Description>\
         <AlarmContent>{}</AlarmContent><TimeStamp>{ts}</TimeStamp>\
         <AppSignature>{}</AppSignature><SignMethod>{}</SignMethod></xml>",
        cdata(app_id),
        cdata(description),
        cdata(alarm_content),
        cdata(&sig),
        cdata("sha1"),
    )
}

/// An alarm dated now; `error_type` defaults to 1001 (an `alarm.` prefix is allowed).
pub fn sample(app_id: &str, app_key: &str, error_type: Option<&str>, rng: &mut impl Rng) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let error_type = error_type
        .map(|t| t.strip_prefix("alarm.").unwrap_or(t))
        .unwrap_or("1001");
    let order: u64 = rng.gen_range(100_000_000..999_999_999);
    signed_alarm_xml(
        app_id,
        app_key,
        error_type,
        "发货超时",
        &format!("transaction_id=1900000109{order}&timestamp={now}"),
        now,
    )
}
