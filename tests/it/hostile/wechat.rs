//! WeChat alarms: hostile XML, and signatures padded or for another app.

use super::signed::*;
use super::*;

pub fn cases() -> Vec<Case> {
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
