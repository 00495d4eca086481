//! Pinddpay, PingPong and WeChat alarms end to end: the providers' own samples (shared vectors)
//! and samples signed here go through the daemon and the broker with the documented fields.

use std::time::Duration;

use crate::harness::*;

const PP_ACC: &str = "2018092714313010016291";
const PP_SALT: &str = "F78BC96A55548B2319EE68E0";
const WX_APP: &str = "wxd930ea5d5a258f4f";
const WX_KEY: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";

fn sources() -> String {
    format!(
        r#"
[[source]]
name = "pingpong"
provider = "pingpong"
salt = "{PP_SALT}"
acc_ids = ["{PP_ACC}"]

[[source]]
name = "pingpong_other"
provider = "pingpong"
salt = "{PP_SALT}"
acc_ids = ["1234"]

[[source]]
name = "wechat"
provider = "wechat_alarm"
app_id = "{WX_APP}"
app_key = "{WX_KEY}"

[[source]]
name = "pinddpay"
provider = "pinddpay"
secret = "s3cret"
app_id = "app_1"
"#
    )
}

fn vector(path: &str) -> Vec<u8> {
    let p = shared_vectors().join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("shared vector {}: {e}", p.display()))
}

fn md5_upper(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode_upper(Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_providers_end_to_end() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = sources();
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let json_ct = ("content-type", "application/json");

    // PingPong V4 refund notification.
    let r = send(
        &http,
        "POST",
        &daemon.url("pingpong"),
        &[json_ct],
        vector("pingpong/generated_v4_refund_notification.json"),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "OK"),
        "log:\n{}",
        daemon.log()
    );
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(m.body["type"], "pingpong.refund.success");
    assert_eq!(m.routing_key, "pingpong.refund.success");
    assert_eq!(d["category"], "refund");
    assert_eq!(d["outcome"], "succeeded");
    assert_eq!(d["order_no"], "PMT-9ICSCWF9H51695189441815");
    assert_eq!(d["transaction_id"], "2023092050004595");
    assert_eq!(d["amount"], "10.00");
    assert_eq!(d["amount_minor"], 1000);
    assert_eq!(d["currency"], "USD");
    assert_eq!(
        d["dedup_key"],
        "REFUND:2023092050004595:2023092060000001:SUCCESS"
    );
    assert_eq!(d["occurred_at"], "2023-09-20T05:57:21Z");
    assert_eq!(
        d["payload"]["bizContent"]["refundId"], "2023092060000001",
        "bizContent decoded"
    );

    // PingPong's own signed envelope (SHA256, declined payment).
    let r = send(
        &http,
        "POST",
        &daemon.url("pingpong"),
        &[json_ct],
        vector("pingpong/v4_unifiedPay_response.json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(d["outcome"], "failed");
    assert_eq!(d["order_no"], "PMT-9ICSCWF9H51695189441815");
    assert_eq!(d["amount"], "100.000000");
    assert_eq!(d["payload"]["bizContent"]["status"], "FAILED");

    // V2 form notification.
    let r = send(
        &http,
        "POST",
        &daemon.url("pingpong"),
        &[("content-type", "application/x-www-form-urlencoded")],
        vector("pingpong/generated_v2_form_notification.form"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(d["order_no"], "M-1001");
    assert_eq!(d["amount_minor"], 10000);
    assert_eq!(d["currency"], "USD");
    assert_eq!(d["outcome"], "succeeded");
    assert_eq!(
        d["payload"].get("token"),
        None,
        "token= is empty: not signed, not in the payload"
    );

    // A foreign account id and a tampered body: 401, nothing published.
    let r = send(
        &http,
        "POST",
        &daemon.url("pingpong_other"),
        &[json_ct],
        vector("pingpong/generated_v4_refund_notification.json"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let tampered = String::from_utf8(vector("pingpong/generated_v4_refund_notification.json"))
        .unwrap()
        .replace("10.00", "99.00");
    let r = send(&http, "POST", &daemon.url("pingpong"), &[json_ct], tampered).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // WeChat alarm, the documented sample signed with WeChat's example key.
    let r = send(
        &http,
        "POST",
        &daemon.url("wechat"),
        &[("content-type", "text/xml")],
        vector("wechat/alarm_1001.xml"),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "log:\n{}",
        daemon.log()
    );
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(m.body["type"], "wechat_alarm.alarm.1001");
    assert_eq!(d["category"], "alarm");
    assert_eq!(d["outcome"], "info");
    assert_eq!(d["occurred_at"], "2014-03-03T15:32:20Z");
    assert_eq!(
        d["dedup_key"],
        format!("{WX_APP}:1001:1393860740:a7fdeb6930a2a070da542d2da9c674a55d10972c")
    );
    assert_eq!(d["payload"]["Description"], "错误描述");
    // Hostile XML: 400, and nothing read or expanded.
    for f in [
        "reject_xxe.xml",
        "reject_entity_expansion.xml",
        "reject_duplicate_field.xml",
    ] {
        let r = send(
            &http,
            "POST",
            &daemon.url("wechat"),
            &[("content-type", "application/xml")],
            vector(&format!("wechat/{f}")),
        )
        .await;
        assert_eq!(r.status, 400, "{f}: {}", r.body);
        assert_eq!(r.json()["error"], "malformed_payload");
    }
    let r = send(
        &http,
        "POST",
        &daemon.url("wechat"),
        &[("content-type", "text/xml")],
        vector("wechat/doc_example_unknown_key.xml"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Pinddpay, signed here with md5(body + secret).
    let body = r#"{"eventId":"ev_100","eventAt":"2024-05-01 08:00:00","eventName":"refund.succeeded","appId":"app_1","order":{"id":"o1","merchantOrderNo":"M-9","amount":"30.00","currency":"usd","tradeNo":"T-1"},"refund":{"id":"r1","refundAmount":"12.50","currency":"EUR","refundAt":"2024-05-01 08:00:00"}}"#;
    let sign = md5_upper(format!("{body}s3cret").as_bytes());
    let r = send(
        &http,
        "POST",
        &daemon.url("pinddpay"),
        &[json_ct, ("sign-token", &sign)],
        body,
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "log:\n{}",
        daemon.log()
    );
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(m.body["type"], "pinddpay.refund.succeeded");
    assert_eq!(d["category"], "refund");
    assert_eq!(d["outcome"], "succeeded");
    assert_eq!(d["order_no"], "M-9");
    assert_eq!(d["transaction_id"], "T-1");
    assert_eq!(d["amount"], "12.50");
    assert_eq!(d["amount_minor"], 1250);
    assert_eq!(d["currency"], "EUR");
    assert_eq!(d["occurred_at"], "2024-05-01T08:00:00Z");
    let r = send(
        &http,
        "POST",
        &daemon.url("pinddpay"),
        &[json_ct, ("sign-token", &sign.to_lowercase())],
        body,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "hex compared case-insensitively; a duplicate"
    );
    let r = send(
        &http,
        "POST",
        &daemon.url("pinddpay"),
        &[json_ct, ("sign-token", "E10ADC3949BA59ABBE56E057F20F883E")],
        body,
    )
    .await;
    assert_eq!(r.status, 401);

    consumer.expect_no_more(Duration::from_secs(2)).await;
    consumer.close().await;
}

/// Every secret form through the real daemon, disputes under both scopes, WeChat's whitespace
/// and split CDATA, the other Pinddpay schemes, and `simulate` for each provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_forms_disputes_cdata_and_simulate() {
    use payhook::providers::{pingpong, wechat_alarm};
    use serde_json::json;

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("pdd.secret"), "file-secret\n").unwrap();
    std::fs::write(secrets.path().join("pp-salt"), format!("{PP_SALT}\n")).unwrap();
    std::fs::write(secrets.path().join("wx.key"), WX_KEY).unwrap();
    let dir = secrets.path().display();
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.env = vec![
        ("PAYHOOK_IT_PDD_SECRET".into(), "env-secret".into()),
        (
            "CREDENTIALS_DIRECTORY".into(),
            secrets.path().display().to_string(),
        ),
    ];
    opts.extra_sources = format!(
        r#"
[[source]]
name = "pdd_secret_body"
provider = "pinddpay"
secret = {{ env = "PAYHOOK_IT_PDD_SECRET" }}
sign_scheme = "md5(secret+body)"

[[source]]
name = "pdd_secret_only"
provider = "pinddpay"
secret = {{ file = "{dir}/pdd.secret" }}
sign_scheme = "md5(secret)"

[[source]]
name = "pp_cred"
provider = "pingpong"
salt = {{ credential = "pp-salt" }}

[[source]]
name = "pp_accid"
provider = "pingpong"
salt = "{PP_SALT}"
dispute_sign_scope = "acc_id"

[[source]]
name = "wx_file"
provider = "wechat_alarm"
app_id = "{WX_APP}"
app_key = {{ file = "{dir}/wx.key" }}
"#
    );
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let json_ct = ("content-type", "application/json");

    // Pinddpay md5(secret+body), secret from the environment.
    let body = r#"{"eventId":"ev_sb","eventAt":1714550400000,"eventName":"order.paid","order":{"merchantOrderNo":"M-1","amount":"5","currency":"JPY"}}"#;
    let good = md5_upper(format!("env-secret{body}").as_bytes());
    let wrong = md5_upper(format!("{body}env-secret").as_bytes());
    let r = send(
        &http,
        "POST",
        &daemon.url("pdd_secret_body"),
        &[json_ct, ("sign-token", &wrong)],
        body,
    )
    .await;
    assert_eq!(r.status, 401, "the other scheme is refused");
    let r = send(
        &http,
        "POST",
        &daemon.url("pdd_secret_body"),
        &[json_ct, ("sign-token", &good)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "log:\n{}", daemon.log());
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    assert_eq!(m.body["data"]["amount_minor"], 5, "JPY has no minor unit");
    assert_eq!(
        m.body["data"]["occurred_at"], "2024-05-01T08:00:00Z",
        "eventAt in ms"
    );
    assert_eq!(m.body["data"]["category"], "payment");

    // md5(secret): a static token, secret from a file (its trailing newline dropped).
    let token = md5_upper(b"file-secret");
    let body = r#"{"eventId":"ev_so","eventName":"payout.failed"}"#;
    let r = send(
        &http,
        "POST",
        &daemon.url("pdd_secret_only"),
        &[json_ct, ("sign-token", &token)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    assert_eq!(m.body["data"]["category"], "payout");
    assert_eq!(m.body["data"]["outcome"], "failed");

    // A PingPong dispute signed over all fields, salt from $CREDENTIALS_DIRECTORY.
    let fields = [
        ("accId", json!(PP_ACC)),
        ("disputePspReference", json!("DP-7")),
        ("merchantReference", json!("PMT-7")),
        ("originalReference", json!("2023000007")),
        ("eventCode", json!("NOTIFICATION_OF_CHARGEBACK")),
        ("eventDate", json!("1695189441815")),
        ("amount", json!("25.50")),
        ("currency", json!("EUR")),
        ("reason", json!("Fraud")),
        ("defendable", json!(true)),
        ("signType", json!("SHA256")),
    ];
    let dispute =
        payhook::testkit::pingpong::signed_json(PP_SALT, pingpong::SignType::Sha256, &fields);
    let r = send(
        &http,
        "POST",
        &daemon.url("pp_cred"),
        &[json_ct],
        dispute.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "OK"),
        "log:\n{}",
        daemon.log()
    );
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    let d = &m.body["data"];
    assert_eq!(
        m.body["type"],
        "pingpong.dispute.notification_of_chargeback"
    );
    assert_eq!(d["category"], "dispute");
    assert_eq!(d["outcome"], "info");
    assert_eq!(d["order_no"], "PMT-7");
    assert_eq!(d["amount_minor"], 2550);
    assert_eq!(
        d["dedup_key"],
        "dispute:DP-7:NOTIFICATION_OF_CHARGEBACK:1695189441815"
    );
    assert_eq!(
        d["payload"]["defendable"], "true",
        "top-level scalars as signed: the JSON type is not"
    );

    // The accId-only signature: refused by default, accepted with dispute_sign_scope = "acc_id".
    let narrow = pingpong::sign(
        pingpong::SignType::Sha256,
        &format!("{PP_SALT}accId={PP_ACC}"),
    );
    let mut v: serde_json::Value = serde_json::from_str(&dispute).unwrap();
    v["sign"] = json!(narrow);
    v["disputePspReference"] = json!("DP-8");
    let r = send(
        &http,
        "POST",
        &daemon.url("pp_cred"),
        &[json_ct],
        v.to_string(),
    )
    .await;
    assert_eq!(r.status, 401, "accId-only is not accepted by default");
    let r = send(
        &http,
        "POST",
        &daemon.url("pp_accid"),
        &[json_ct],
        v.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        consumer.take(1, Duration::from_secs(20)).await[0].body["data"]["dedup_key"],
        "dispute:DP-8:NOTIFICATION_OF_CHARGEBACK:1695189441815"
    );

    // WeChat: values wrapped in whitespace and CDATA split in pieces; key from a file.
    let sig = wechat_alarm::v2_signature(&[
        ("appid", WX_APP),
        ("errortype", "1001"),
        ("description", "发货超时"),
        ("alarmcontent", "transaction_id=42"),
        ("timestamp", "1700000000"),
        ("appkey", WX_KEY),
    ]);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <AppId>\n    <![CDATA[{WX_APP}]]>\n  </AppId>\n  <ErrorType> 1001 </ErrorType>\n  \
         <Description><![CDATA[发货]]><![CDATA[超时]]></Description>\n  <AlarmContent>transaction_id=<![CDATA[42]]></AlarmContent>\n  \
         <TimeStamp>\n1700000000\n</TimeStamp>\n  <AppSignature> <![CDATA[{}]]> </AppSignature>\n  <SignMethod>SHA1</SignMethod>\n</xml>\n",
        sig.to_uppercase()
    );
    let r = send(&http, "POST", &daemon.url("wx_file"), &[], xml.clone()).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "no content type is fine for WeChat; log:\n{}",
        daemon.log()
    );
    let m = &consumer.take(1, Duration::from_secs(20)).await[0];
    assert_eq!(m.body["data"]["payload"]["Description"], "发货超时");
    assert_eq!(
        m.body["data"]["payload"]["AlarmContent"],
        "transaction_id=42"
    );
    let r = send(
        &http,
        "POST",
        &daemon.url("wx_file"),
        &[("content-type", "text/xml")],
        xml.replace("1700000000", "1700000001"),
    )
    .await;
    assert_eq!(r.status, 401, "a changed timestamp breaks the signature");
    let r = send(
        &http,
        "POST",
        &daemon.url("wx_file"),
        &[("content-type", "application/json")],
        xml,
    )
    .await;
    assert_eq!(r.status, 415);
    consumer.expect_no_more(Duration::from_secs(1)).await;

    // simulate builds correctly signed samples for every provider.
    for (source, ty) in [
        ("pdd_secret_body", "refund.succeeded"),
        ("pdd_secret_only", "order.paid"),
        ("pp_cred", "recharge"),
        ("pp_cred", "refund"),
        ("pp_cred", "dispute"),
        ("pp_cred", "v2"),
        ("wx_file", "1001"),
    ] {
        let out = daemon.run_cli(&["simulate", "--source", source, "--type", ty, "--count", "3"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("200=3"),
            "{source} {ty}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        consumer.take(21, Duration::from_secs(20)).await.len(),
        21,
        "7 runs of 3 distinct samples"
    );
    consumer.close().await;
}
