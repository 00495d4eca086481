//! WeChat Pay (v2) alarm notices: a flat `<xml>` document signed with SHA-1 over sorted
//! `name=value` pairs plus the app's paySignKey (`appkey`).
//!
//! The XML reader is deliberately strict and small: no DOCTYPE, no entity declarations, no
//! entity references except the five predefined ones and numeric character references (nothing
//! is ever expanded from a declaration and no file or URL is ever read), exactly one `<xml>` root
//! holding only leaf fields, each at most once (names compared case-insensitively).
//!
//! Fields the notice always carries, and which this module requires: `AppId`, `ErrorType`,
//! `Description`, `AlarmContent`, `TimeStamp` (missing: 400; `Description` and `AlarmContent`
//! may be empty) and `AppSignature`, `SignMethod` (missing: 401, as a missing signature).
//! Other fields are kept in the payload but are not covered by the signature.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use super::{Inbound, ProviderError, Verifier, hex_digest_eq};
use crate::duration::Dur;
use crate::event::{Category, Money, Normalized, Outcome, Payload};
use crate::secret::{Secret, SecretString};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The WeChat app id the alarms are for (`AppId` must equal it).
    pub app_id: String,
    /// The 128-character paySignKey of WeChat Pay v2 (not the partner key, not the AppSecret).
    pub app_key: Secret,
    /// When set, a `TimeStamp` further than this from now is refused (401). Off by default.
    #[serde(default)]
    pub max_clock_skew: Option<Dur>,
}

pub struct WechatAlarm {
    app_id: String,
    app_key: SecretString,
    max_clock_skew: Option<Duration>,
}

/// The fields of a flat `<xml>` document in document order: names as written, values with their
/// text and CDATA pieces joined and then trimmed.
pub type XmlFields = Vec<(String, String)>;

fn name_of(e: &BytesStart<'_>) -> Result<String, String> {
    for a in e.attributes() {
        a.map_err(|err| format!("malformed attribute: {err}"))?;
    }
    std::str::from_utf8(e.name().as_ref())
        .map(str::to_string)
        .map_err(|_| "element name is not UTF-8".to_string())
}

/// Trims XML whitespace (space, tab, CR, LF) from both ends; other Unicode spaces are content.
pub fn xml_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn only_whitespace(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Reads a flat `<xml><Name>value</Name>…</xml>` document. Every deviation is an error message
/// (the caller answers 400).
pub fn parse_flat_xml(body: &[u8]) -> Result<XmlFields, String> {
    enum State {
        Before,
        Root,
        Field(String, String),
        After,
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not valid UTF-8".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut state = State::Before;
    let mut fields: XmlFields = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        state = match (state, ev) {
            (_, Event::DocType(_)) => {
                return Err("DOCTYPE and entity declarations are not accepted".into());
            }
            (_, Event::PI(_)) => return Err("processing instructions are not accepted".into()),
            (State::Before, Event::Decl(_)) => State::Before,
            (_, Event::Decl(_)) => return Err("misplaced XML declaration".into()),
            (s, Event::Comment(_)) => s,
            (State::Before, Event::Start(e)) => {
                if name_of(&e)? != "xml" {
                    return Err("the root element must be <xml>".into());
                }
                State::Root
            }
            (State::Before, Event::Empty(e)) => {
                if name_of(&e)? != "xml" {
                    return Err("the root element must be <xml>".into());
                }
                State::After
            }
            (State::Root, Event::Start(e)) => {
                let name = name_of(&e)?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(format!("field <{name}> appears twice"));
                }
                State::Field(name, String::new())
            }
            (State::Root, Event::Empty(e)) => {
                let name = name_of(&e)?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(format!("field <{name}> appears twice"));
                }
                fields.push((name, String::new()));
                State::Root
            }
            (State::Field(name, _), Event::Start(_) | Event::Empty(_)) => {
                return Err(format!("field <{name}> contains an element"));
            }
            (State::Field(name, value), Event::End(_)) => {
                fields.push((name, xml_trim(&value).to_string()));
                State::Root
            }
            (State::Root, Event::End(_)) => State::After,
            (State::Field(name, mut value), Event::Text(t)) => {
                value.push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
                State::Field(name, value)
            }
            (State::Field(name, mut value), Event::CData(c)) => {
                value.push_str(&c.decode().map_err(|e| format!("bad CDATA: {e}"))?);
                State::Field(name, value)
            }
            (State::Field(name, mut value), Event::GeneralRef(r)) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => value.push(c),
                        _ => return Err("invalid character reference".into()),
                    }
                } else {
                    let c = match &*r {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        other => {
                            return Err(format!(
                                "entity reference &{}; is not accepted",
                                String::from_utf8_lossy(other)
                            ));
                        }
                    };
                    value.push(c);
                }
                State::Field(name, value)
            }
            (s @ (State::Before | State::Root | State::After), Event::Text(t)) => {
                if !only_whitespace(&t) {
                    return Err("text outside a field".into());
                }
                s
            }
            (State::Field(..), Event::Eof) | (State::Before | State::Root, Event::Eof) => {
                return Err("unexpected end of document".into());
            }
            (State::After, Event::Eof) => break,
            (State::After, _) => return Err("content after the root element".into()),
            (_, Event::GeneralRef(_)) => return Err("entity reference outside a field".into()),
            (_, Event::CData(_)) => return Err("CDATA outside a field".into()),
            (_, Event::End(_)) => return Err("unexpected end tag".into()),
        };
    }
    Ok(fields)
}

fn digest(pairs: &[(&str, &str)]) -> [u8; 20] {
    let mut kv: Vec<(String, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), xml_trim(v)))
        .collect();
    kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined = kv
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    Sha1::digest(joined.as_bytes()).into()
}

/// WeChat Pay v2's notice signature: names lower-cased, values trimmed, sorted by name, joined as
/// `name=value` with `&` (no URL-encoding), SHA-1, lower-case hex. The caller includes
/// `("appkey", key)` among the pairs.
pub fn v2_signature(pairs: &[(&str, &str)]) -> String {
    hex::encode(digest(pairs))
}

/// The fields of an alarm that are signed, as `(lower-case name, value)`.
const SIGNED: [(&str, &str); 5] = [
    ("AppId", "appid"),
    ("ErrorType", "errortype"),
    ("Description", "description"),
    ("AlarmContent", "alarmcontent"),
    ("TimeStamp", "timestamp"),
];

fn field<'a>(fields: &'a XmlFields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn signed_pairs<'a>(
    fields: &'a XmlFields,
    app_key: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, ProviderError> {
    let mut pairs = Vec::with_capacity(6);
    for (name, lower) in SIGNED {
        let v = field(fields, name)
            .ok_or_else(|| ProviderError::Malformed(format!("alarm has no <{name}>")))?;
        pairs.push((lower, v));
    }
    pairs.push(("appkey", app_key));
    Ok(pairs)
}

/// A signed alarm notice as WeChat sends it (for `simulate` and tests): CDATA for text values.
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
    let cdata = |s: &str| format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"));
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

impl WechatAlarm {
    pub fn from_config(c: &Config, base: &Path) -> Result<WechatAlarm, String> {
        if c.app_id.trim().is_empty() {
            return Err("app_id is empty".into());
        }
        let key = c
            .app_key
            .resolve(base)
            .map_err(|e| format!("app_key: {e}"))?;
        if key.expose().trim().is_empty() {
            return Err("app_key is empty".into());
        }
        Ok(WechatAlarm::new(
            c.app_id.trim().to_string(),
            key,
            c.max_clock_skew.map(|d| d.0),
        ))
    }

    pub fn new(app_id: String, app_key: SecretString, max_clock_skew: Option<Duration>) -> Self {
        WechatAlarm {
            app_id,
            app_key,
            max_clock_skew,
        }
    }

    fn check(&self, fields: &XmlFields) -> Result<(), ProviderError> {
        let unauthorized = |m: &str| ProviderError::Unauthorized(m.to_string());
        let pairs = signed_pairs(fields, self.app_key.expose())?;
        let method = field(fields, "SignMethod")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| unauthorized("missing SignMethod"))?;
        if !method.eq_ignore_ascii_case("sha1") {
            return Err(unauthorized("SignMethod is not sha1"));
        }
        let given = field(fields, "AppSignature")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("missing AppSignature"))?;
        if !hex_digest_eq(&digest(&pairs), given) {
            return Err(unauthorized("AppSignature does not match"));
        }
        if field(fields, "AppId") != Some(self.app_id.as_str()) {
            return Err(unauthorized("AppId is not the configured app_id"));
        }
        if let Some(skew) = self.max_clock_skew {
            let ts = field(fields, "TimeStamp")
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| unauthorized("TimeStamp is not unix seconds"))?;
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let off = u64::try_from((i128::from(now) - i128::from(ts)).unsigned_abs())
                .unwrap_or(u64::MAX);
            if off > skew.as_secs() {
                return Err(unauthorized("TimeStamp is outside max_clock_skew"));
            }
        }
        Ok(())
    }
}

/// Maps a verified alarm to the normalized fields.
fn normalize(fields: XmlFields) -> Normalized {
    let get = |n: &str| field(&fields, n).unwrap_or("").to_string();
    let (app_id, error_type, ts) = (get("AppId"), get("ErrorType"), get("TimeStamp"));
    let sig = get("AppSignature").to_ascii_lowercase();
    let occurred_at = ts
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let mut payload = Map::new();
    for (k, v) in fields {
        payload.insert(k, Value::String(v));
    }
    Normalized {
        event_type: format!("alarm.{error_type}"),
        provider_event_id: None,
        dedup_key: format!("{app_id}:{error_type}:{ts}:{sig}"),
        category: Category::Alarm,
        outcome: Outcome::Info,
        order_no: None,
        transaction_id: None,
        money: Money::default(),
        livemode: None,
        signed_time: occurred_at,
        occurred_at,
        content_hash: [0; 32],
        payload: Payload::Json(Value::Object(payload)),
    }
}

impl Verifier for WechatAlarm {
    fn provider(&self) -> &'static str {
        "wechat_alarm"
    }

    fn accepts_content_type(&self, essence: Option<&str>) -> bool {
        matches!(essence, None | Some("text/xml" | "application/xml"))
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Normalized, ProviderError> {
        let fields = parse_flat_xml(req.body).map_err(ProviderError::Malformed)?;
        self.check(&fields)?;
        Ok(normalize(fields))
    }

    fn ack_body(&self) -> &'static str {
        "success"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::HeaderMap;
    use proptest::prelude::*;

    const APP1: &str = "wxd930ea5d5a258f4f";
    const KEY1: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";
    const APP2: &str = "wxf8b4f85f3a794e77";
    const KEY2: &str = "2Wozy2aksie1puXUBpWD8oZxiD1DfQuEaiC7KcRATv1Ino3mdopKaPGQQ7TtkNySuAmCaDCrw4xhPY5qKTBl7Fzm0RgR3c0WaVYIXZARsxzHV2x7iwPPzOz94dnwPWSn";

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

    fn w(app: &str, key: &str) -> WechatAlarm {
        WechatAlarm::new(app.into(), SecretString::new(key), None)
    }

    fn run(v: &WechatAlarm, body: &[u8]) -> Result<Normalized, ProviderError> {
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
        assert_eq!(field(&fields, "Description"), Some("错识描述"));
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
        let f =
            parse_flat_xml(b"<xml><A>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</A><B/></xml>").unwrap();
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
            SecretString::new(KEY1),
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
    }

    fn arb_alarm() -> impl Strategy<Value = (String, String, String, i64)> {
        (
            "[0-9]{4}",
            "[a-zA-Z0-9 <>&\\]\\PC]{0,24}",
            "[a-zA-Z0-9 <>&\\]\\PC]{0,24}",
            1_000_000_000i64..2_000_000_000,
        )
            .prop_map(|(e, d, c, t)| (e, xml_trim(&d).to_string(), xml_trim(&c).to_string(), t))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_alarms_verify((e, d, c, t) in arb_alarm()) {
            let body = signed_alarm_xml(APP1, KEY1, &e, &d, &c, t);
            let n = run(&w(APP1, KEY1), body.as_bytes()).unwrap();
            prop_assert_eq!(n.event_type, format!("alarm.{e}"));
            prop_assert_eq!(&n.payload.json()["Description"], &Value::String(d));
            prop_assert_eq!(&n.payload.json()["AlarmContent"], &Value::String(c));
            prop_assert_eq!(n.occurred_at.unwrap().unix_timestamp(), t);
        }

        #[test]
        fn any_changed_byte_is_refused((e, d, c, t) in arb_alarm(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let body = signed_alarm_xml(APP1, KEY1, &e, &d, &c, t);
            let mut b = body.clone().into_bytes();
            let i = pos.index(b.len());
            let orig = b[i];
            b[i] ^= x;
            // AppSignature (hex) and SignMethod are compared case-insensitively, so a case flip
            // of one of their letters is the same notice, not a change.
            let span = |tag: &str| {
                let open = format!("<{tag}><![CDATA[");
                let s = body.find(&open).map(|p| p + open.len()).unwrap_or(0);
                let e = body[s..].find("]]>").map(|p| s + p).unwrap_or(0);
                s..e
            };
            let neutral = (span("AppSignature").contains(&i) || span("SignMethod").contains(&i))
                && orig.is_ascii_alphabetic()
                && orig.eq_ignore_ascii_case(&b[i]);
            prop_assume!(!neutral);
            prop_assert!(run(&w(APP1, KEY1), &b).is_err());
        }
    }
}
