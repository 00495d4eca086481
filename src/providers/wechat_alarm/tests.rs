use hyper::HeaderMap;

use super::*;
use crate::testkit::wechat::signed_alarm_xml;

pub(super) const APP1: &str = "wxd930ea5d5a258f4f";
pub(super) const KEY1: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";
pub(super) const APP2: &str = "wxf8b4f85f3a794e77";
pub(super) const KEY2: &str = "2Wozy2aksie1puXUBpWD8oZxiD1DfQuEaiC7KcRATv1Ino3mdopKaPGQQ7TtkNySuAmCaDCrw4xhPY5qKTBl7Fzm0RgR3c0WaVYIXZARsxzHV2x7iwPPzOz94dnwPWSn";

macro_rules! vector {
    ($name:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/wechat/",
            $name
        ))
        .expect(concat!("vector ", $name))
    };
}

pub(super) fn w(app: &str, key: &str) -> WechatAlarm {
    WechatAlarm::new(app.into(), vec![SecretString::new(key)], None)
}

pub(super) fn run(v: &WechatAlarm, body: &[u8]) -> Result<Normalized, ProviderError> {
    v.verify(&Inbound {
        headers: &HeaderMap::new(),
        body,
    })
}

#[test]
fn alarm_1001_vector_verifies() {
    let n = run(&w(APP1, KEY1), &vector!("alarm_1001.xml")).unwrap();
    assert_eq!(n.event_type, "alarm.1001");
    assert_eq!(n.category, Category::Alarm);
    assert_eq!(n.outcome, Outcome::Info);
    assert_eq!(
        n.dedup_key,
        "wxd930ea5d5a258f4f:1001:1393860740:a7fdeb6930a2a070da542d2da9c674a55d10972c"
    );
    assert_eq!(n.occurred_at.unwrap().unix_timestamp(), 1393860740);
    assert_eq!(n.payload.json()["Description"], "错误描述");
    assert_eq!(n.payload.json()["SignMethod"], "sha1");
    assert_eq!(
        n.signed_time.unwrap().unix_timestamp(),
        1393860740,
        "TimeStamp is signed"
    );
    assert_eq!(
        n.content_hash,
        sha256(
            "alarmcontent=错误详情&appid=wxd930ea5d5a258f4f&description=错误描述&errortype=1001\
             &timestamp=1393860740"
                .as_bytes()
        ),
        "the signed text without the key"
    );
    assert_eq!(n.order_no, None);
    assert_eq!(n.money, Money::default());
    // Wrong key, foreign app id.
    assert!(matches!(
        run(&w(APP1, KEY2), &vector!("alarm_1001.xml")),
        Err(ProviderError::Unauthorized(_))
    ));
    assert!(matches!(
        run(&w(APP2, KEY1), &vector!("alarm_1001.xml")),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn feedback_vector_checks_the_signing_function() {
    let body = vector!("feedback_request.xml");
    let text = String::from_utf8(body).unwrap();
    let (openid, ts) = ("oDF3iY9P32sK_5GgYiRkjsCo45bk", "1393400471");
    assert!(text.contains(openid) && text.contains(ts) && text.contains(APP2));
    let sig = "d60293982cc7c97a5a9d3383af761db763c07c86";
    assert!(text.contains(sig));
    assert_eq!(
        v2_signature(&[
            ("appid", APP2),
            ("appkey", KEY2),
            ("openid", openid),
            ("timestamp", ts)
        ]),
        sig
    );
    // Names are lower-cased and values trimmed by the function itself.
    assert_eq!(
        v2_signature(&[
            ("TimeStamp", ts),
            ("OpenId", &format!(" {openid}\n")),
            ("AppKey", KEY2),
            ("AppId", APP2)
        ]),
        sig
    );
    // The notice nests <PicInfo><item>…, which the flat alarm reader refuses.
    assert!(parse_flat_xml(text.as_bytes()).is_err());
}

#[test]
fn doc_example_parses_but_no_key_verifies_it() {
    let body = vector!("doc_example_unknown_key.xml");
    let fields = parse_flat_xml(&body).unwrap();
    assert_eq!(fields[2], ("Description".into(), "错识描述".into()));
    assert_eq!(fields.len(), 7);
    for key in [KEY1, KEY2, "", "x"] {
        assert!(matches!(
            run(&w(APP2, key), &body),
            Err(ProviderError::Unauthorized(_))
        ));
    }
}

#[test]
fn reject_vectors_are_malformed() {
    for body in [
        vector!("reject_duplicate_field.xml"),
        vector!("reject_entity_expansion.xml"),
        vector!("reject_xxe.xml"),
    ] {
        assert!(matches!(
            run(&w(APP1, KEY1), &body),
            Err(ProviderError::Malformed(_))
        ));
    }
}

#[test]
fn whitespace_and_split_cdata_are_accepted() {
    let sig = "a7fdeb6930a2a070da542d2da9c674a55d10972c";
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- alarm -->\n<xml>\n  <AppId>\n    <![CDATA[wxd930]]><![CDATA[ea5d5a258f4f]]>\n  </AppId>\n  \
         <ErrorType> 1001 </ErrorType>\n  <Description><![CDATA[错误]]>描述</Description>\n  \
         <AlarmContent><![CDATA[错]]><!-- c --><![CDATA[误详情]]></AlarmContent>\n  \
         <TimeStamp>\r\n1393860740\t</TimeStamp>\n  <AppSignature>  {}  </AppSignature>\n  \
         <SignMethod><![CDATA[ SHA1 ]]></SignMethod>\n</xml>\n\n",
        sig.to_ascii_uppercase()
    );
    let n = run(&w(APP1, KEY1), body.as_bytes()).unwrap();
    assert_eq!(
        n.dedup_key,
        format!("wxd930ea5d5a258f4f:1001:1393860740:{sig}")
    );
    assert_eq!(n.payload.json()["AppId"], APP1);
}

#[test]
fn predefined_and_numeric_references() {
    let f = parse_flat_xml(b"<xml><A>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</A><B/></xml>").unwrap();
    assert_eq!(
        f,
        vec![("A".into(), "<>&'\"AB".into()), ("B".into(), String::new())]
    );
}

#[test]
fn strict_reader_refusals() {
    for bad in [
        &b"<xml><A>&custom;</A></xml>"[..],
        b"<xml><A>&#0;</A></xml>",
        b"<root><A>x</A></root>",
        b"<xml><A>x</A><a>y</a></xml>",
        b"<xml><A><B>x</B></A></xml>",
        b"<xml><A>x</A></xml><xml/>",
        b"<xml><A>x</A></xml>trailing",
        b"<xml><A>x</A>",
        b"<xml><A>x</B></xml>",
        b"<xml>stray<A>x</A></xml>",
        b"<xml><A>\xff</A></xml>",
        b"",
        b"not xml",
        b"<?pi x?><xml/>",
        b"<!DOCTYPE xml><xml/>",
        b"<xml><A a=>x</A></xml>",
        b"<xml><A a=\"1\">x</A></xml>",
        b"<xml x=\"1\"><A>x</A></xml>",
    ] {
        assert!(
            parse_flat_xml(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn missing_fields_and_methods() {
    let good = String::from_utf8(vector!("alarm_1001.xml")).unwrap();
    let v = w(APP1, KEY1);
    let no_desc = good.replace("<Description><![CDATA[错误描述]]></Description>\n", "");
    assert!(matches!(
        run(&v, no_desc.as_bytes()),
        Err(ProviderError::Malformed(_))
    ));
    let md5 = good.replace("[sha1]", "[md5]");
    assert!(matches!(
        run(&v, md5.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
    let no_sig = good.replace("a7fdeb6930a2a070da542d2da9c674a55d10972c", "");
    assert!(matches!(
        run(&v, no_sig.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
    let tampered = good.replace("1393860740", "1393860741");
    assert!(matches!(
        run(&v, tampered.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
}

#[test]
fn clock_skew() {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let v = WechatAlarm::new(
        APP1.into(),
        vec![SecretString::new(KEY1)],
        Some(Duration::from_secs(300)),
    );
    let fresh = signed_alarm_xml(APP1, KEY1, "1001", "d", "c", now - 10);
    run(&v, fresh.as_bytes()).unwrap();
    let stale = signed_alarm_xml(APP1, KEY1, "1001", "d", "c", now - 3600);
    assert!(matches!(
        run(&v, stale.as_bytes()),
        Err(ProviderError::Unauthorized(_))
    ));
    // Off by default: the 2014 vector verifies without it.
    run(&w(APP1, KEY1), &vector!("alarm_1001.xml")).unwrap();
    let c: Config =
        toml::from_str("app_id = \"wx1\"\napp_key = { env = \"K\" }\nmax_clock_skew = \"5m\"")
            .unwrap();
    assert_eq!(c.max_clock_skew, Some(Dur(Duration::from_secs(300))));
    let c: Config =
        toml::from_str("app_id = \"wx1\"\napp_key = [\"new\", { env = \"OLD\" }]").unwrap();
    assert_eq!(c.app_key.0.len(), 2);
}

/// Issue 8, item 4: U+3000 or U+00A0 appended to a captured signature replayed it as a new
/// event (the comparison trimmed Unicode spaces, the dedup key used the raw text); and elements
/// the signature does not cover reached the payload.
#[test]
fn attack_padded_signature_and_unsigned_elements() {
    let good = String::from_utf8(vector!("alarm_1001.xml")).unwrap();
    let v = w(APP1, KEY1);
    let base = run(&v, good.as_bytes()).unwrap();
    let sig = "a7fdeb6930a2a070da542d2da9c674a55d10972c";
    for pad in [
        "\u{3000}", "\u{a0}", "\u{2003}", "\u{feff}", "\u{85}", "\u{200b}",
    ] {
        for padded in [format!("{sig}{pad}"), format!("{pad}{sig}")] {
            let body = good.replace(sig, &padded);
            assert!(
                matches!(
                    run(&v, body.as_bytes()),
                    Err(ProviderError::Unauthorized(_))
                ),
                "{padded:?}"
            );
        }
    }
    // XML whitespace and case are padding the format defines: the same event.
    for same in [
        format!(" \n{}\t", sig.to_ascii_uppercase()),
        "A7fdeb6930a2a070da542d2da9c674a55d10972C".to_string(),
    ] {
        let body = good.replace(sig, &same);
        let n = run(&v, body.as_bytes()).unwrap();
        assert_eq!(n.dedup_key, base.dedup_key);
        assert_eq!(n.content_hash, base.content_hash);
        assert_eq!(n.payload, base.payload);
    }
    for extra in [
        "<Extra>x</Extra>",
        "<OpenId>o1</OpenId>",
        "<Sign>x</Sign>",
        "<AppIdX/>",
    ] {
        let body = good.replace("</xml>", &format!("{extra}</xml>"));
        assert!(
            matches!(run(&v, body.as_bytes()), Err(ProviderError::Malformed(_))),
            "{extra}"
        );
    }
}

#[test]
fn payload_is_canonical() {
    let n = run(&w(APP1, KEY1), &vector!("alarm_1001.xml")).unwrap();
    let keys: Vec<&String> = n.payload.json().as_object().unwrap().keys().collect();
    assert_eq!(keys, ELEMENTS);
    let body = String::from_utf8(vector!("alarm_1001.xml"))
        .unwrap()
        .replace("AppSignature>", "APPSIGNATURE>")
        .replace(
            "<SignMethod><![CDATA[sha1]]></SignMethod>",
            "<signmethod>SHA1</signmethod>",
        )
        .replace(
            "a7fdeb6930a2a070da542d2da9c674a55d10972c",
            "A7FDEB6930A2A070DA542D2DA9C674A55D10972C",
        );
    let m = run(&w(APP1, KEY1), body.as_bytes()).unwrap();
    assert_eq!(m.payload, n.payload);
    assert_eq!(
        m.payload.json()["AppSignature"],
        "a7fdeb6930a2a070da542d2da9c674a55d10972c"
    );
}

#[test]
fn error_type_and_timestamp_are_digits() {
    // Signed correctly, but `&` in ErrorType or TimeStamp could move text between fields of the
    // unescaped signed text.
    for (e, t) in [
        ("1001&timestamp=1", "2"),
        ("x", "1"),
        ("1001", "12a"),
        ("1001", ""),
    ] {
        let sig = v2_signature(&[
            ("appid", APP1),
            ("errortype", e),
            ("description", "d"),
            ("alarmcontent", "c"),
            ("timestamp", t),
            ("appkey", KEY1),
        ]);
        let body = format!(
            "<xml><AppId>{APP1}</AppId><ErrorType><![CDATA[{e}]]></ErrorType><Description>d</Description>\
             <AlarmContent>c</AlarmContent><TimeStamp>{t}</TimeStamp><AppSignature>{sig}</AppSignature>\
             <SignMethod>sha1</SignMethod></xml>"
        );
        assert!(
            matches!(
                run(&w(APP1, KEY1), body.as_bytes()),
                Err(ProviderError::Malformed(_))
            ),
            "{e} {t}"
        );
    }
    // AlarmContent holds `&…=` in real alarms: still accepted.
    let body = signed_alarm_xml(
        APP1,
        KEY1,
        "1001",
        "d",
        "transaction_id=1&timestamp=2",
        1_700_000_000,
    );
    run(&w(APP1, KEY1), body.as_bytes()).unwrap();
}

#[test]
fn any_key_of_the_list_verifies() {
    let v = WechatAlarm::new(
        APP1.into(),
        vec![SecretString::new("new-key"), SecretString::new(KEY1)],
        None,
    );
    let a = run(&v, &vector!("alarm_1001.xml")).unwrap();
    let b = run(&w(APP1, KEY1), &vector!("alarm_1001.xml")).unwrap();
    assert_eq!(a, b);
    let by_new = signed_alarm_xml(APP1, "new-key", "1001", "d", "c", 1_700_000_000);
    run(&v, by_new.as_bytes()).unwrap();
    let neither = WechatAlarm::new(
        APP1.into(),
        vec![SecretString::new("x"), SecretString::new("y")],
        None,
    );
    assert!(matches!(
        run(&neither, &vector!("alarm_1001.xml")),
        Err(ProviderError::Unauthorized(_))
    ));
    let base = Path::new(".");
    for bad in [
        "app_id = \"wx\"\napp_key = []",
        "app_id = \"wx\"\napp_key = \" \"",
        "app_id = \"wx\"\napp_key = [\"a\", \"\"]",
    ] {
        let c: Config = toml::from_str(bad).unwrap();
        assert!(WechatAlarm::from_config(&c, base).is_err(), "{bad}");
    }
}

#[test]
fn huge_names_make_short_messages() {
    let long = "k".repeat(1 << 20);
    for body in [
        format!("<xml><{long}>x</{long}></xml>"),
        format!("<xml><A>x</A><{long}>x</{long}></xml>"),
        format!("<xml><A>x</A><a>y</a><{long}/></xml>"),
        format!("<xml><{long}>x</B></xml>"),
        format!("<xml><A>&{long};</A></xml>"),
        format!("<xml><{long} a=\"1\">x</{long}></xml>"),
        format!("<{long}/>"),
        format!("<xml><ErrorType>{long}</ErrorType></xml>"),
    ] {
        let e = run(&w(APP1, KEY1), body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{}: {:.200}", e.len(), e);
    }
    let mut fields = String::new();
    for e in ["AppId", "Description", "AlarmContent", "TimeStamp"] {
        fields.push_str(&format!("<{e}>1</{e}>"));
    }
    let e = run(
        &w(APP1, KEY1),
        format!("<xml>{fields}<ErrorType>{long}</ErrorType></xml>").as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.len() < 200, "{}", e.len());
}

/// `cargo test --release --lib -- --ignored --nocapture wechat_verify_cost`
#[test]
#[ignore]
fn wechat_verify_cost() {
    let body = signed_alarm_xml(
        APP1,
        KEY1,
        "1001",
        "发货超时",
        "transaction_id=1900000109123456789&timestamp=1700000000",
        1_700_000_000,
    );
    let v = w(APP1, KEY1);
    let h = HeaderMap::new();
    let req = Inbound {
        headers: &h,
        body: body.as_bytes(),
    };
    let label = format!("wechat_alarm {} B: verify+normalize", body.len());
    crate::providers::bench::measure(&label, 100_000, || {
        std::hint::black_box(v.verify(std::hint::black_box(&req)).unwrap());
    });
}
