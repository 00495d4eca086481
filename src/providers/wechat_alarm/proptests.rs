//! Property tests of SPEC §6.3 for WeChat alarms: for random valid alarms,
//!
//! (a) every mutation the signature does not cover keeps the dedup key, the content hash and the
//!     payload: an XML declaration, comments anywhere (inside values too), whitespace between
//!     elements and around values, element order, the case of element names, CDATA split in
//!     pieces or plain text with the predefined and numeric references, empty elements written
//!     three ways, the case and XML-whitespace padding of `AppSignature` and `SignMethod`;
//! (b) every change of signed content is refused: a character of a signed value changed, added
//!     or removed, an element dropped or added, another signature or a signature padded with
//!     Unicode spaces, another `SignMethod`;
//! (c) a random byte flipped anywhere is refused or changes nothing.
//!
//! 256 cases per property by default; `PROPTEST_CASES=5000` for the long run.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::tests::{APP1, KEY1, run, w};
use super::*;
use crate::testkit::wechat::{cdata, signed_alarm_xml};

#[derive(Debug, Clone)]
struct Alarm {
    error_type: String,
    description: String,
    alarm_content: String,
    timestamp: i64,
}

impl Alarm {
    fn signature(&self) -> String {
        v2_signature(&[
            ("appid", APP1),
            ("errortype", &self.error_type),
            ("description", &self.description),
            ("alarmcontent", &self.alarm_content),
            ("timestamp", &self.timestamp.to_string()),
            ("appkey", KEY1),
        ])
    }

    fn plain(&self) -> String {
        signed_alarm_xml(
            APP1,
            KEY1,
            &self.error_type,
            &self.description,
            &self.alarm_content,
            self.timestamp,
        )
    }

    /// The elements as (name, value), the signature as computed.
    fn elements(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AppId", APP1.to_string()),
            ("ErrorType", self.error_type.clone()),
            ("Description", self.description.clone()),
            ("AlarmContent", self.alarm_content.clone()),
            ("TimeStamp", self.timestamp.to_string()),
            ("AppSignature", self.signature()),
            ("SignMethod", "sha1".to_string()),
        ]
    }
}

fn arb_alarm() -> impl Strategy<Value = Alarm> {
    let text = "[a-zA-Z0-9 <>&\"'=\\]\\PC]{0,24}";
    ("[0-9]{1,6}", text, text, 1_000_000_000i64..2_000_000_000).prop_map(
        |(error_type, d, c, timestamp)| Alarm {
            error_type,
            description: xml_trim(&d).to_string(),
            alarm_content: xml_trim(&c).to_string(),
            timestamp,
        },
    )
}

const WS: [&str; 5] = ["", " ", "\n", "\t", "\r\n  "];

fn ws(rng: &mut StdRng) -> &'static str {
    WS.choose(rng).copied().unwrap_or("")
}

/// `s` as XML character data: split in pieces, each plain text (escaped with the predefined or
/// numeric references) or CDATA, comments between pieces.
fn xml_value(s: &str, rng: &mut StdRng) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let n = rng.gen_range(1..=chars.len() - i);
        let piece: String = chars[i..i + n].iter().collect();
        i += n;
        if rng.gen_bool(0.2) {
            out.push_str("<!-- c -->");
        }
        if rng.gen_bool(0.5) {
            out.push_str(&cdata(&piece));
        } else {
            for c in piece.chars() {
                let r = rng.gen_range(0..4);
                match (c, r) {
                    ('<', 0 | 1) => out.push_str("&lt;"),
                    ('&', 0 | 1) => out.push_str("&amp;"),
                    ('>', 0) => out.push_str("&gt;"),
                    ('"', 0) => out.push_str("&quot;"),
                    ('\'', 0) => out.push_str("&apos;"),
                    ('<' | '&', _) | (_, 2) => out.push_str(&format!("&#{};", c as u32)),
                    (_, 3) => out.push_str(&format!("&#x{:X};", c as u32)),
                    _ => out.push(c),
                }
            }
        }
    }
    out
}

fn random_case(s: &str, rng: &mut StdRng) -> String {
    s.chars()
        .map(|c| {
            if rng.gen_bool(0.5) {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Another document with the same signed content.
fn variant(a: &Alarm, rng: &mut StdRng) -> String {
    let mut elements = a.elements();
    elements.shuffle(rng);
    let mut out = String::new();
    if rng.gen_bool(0.5) {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        out.push_str(ws(rng));
    }
    if rng.gen_bool(0.3) {
        out.push_str("<!-- alarm -->");
    }
    out.push_str("<xml>");
    for (name, value) in elements {
        out.push_str(ws(rng));
        let name = if rng.gen_bool(0.3) {
            random_case(name, rng)
        } else {
            name.to_string()
        };
        let value = match name.to_ascii_lowercase().as_str() {
            "appsignature" | "signmethod" => random_case(&value, rng),
            _ => value,
        };
        if value.is_empty() && rng.gen_bool(0.5) {
            out.push_str(&format!("<{name}/>"));
            continue;
        }
        let (pad_l, pad_r) = if value.is_empty() {
            ("", "")
        } else {
            (ws(rng), ws(rng))
        };
        out.push_str(&format!(
            "<{name}>{pad_l}{}{pad_r}</{name}>",
            xml_value(&value, rng)
        ));
    }
    out.push_str(ws(rng));
    out.push_str("</xml>");
    out.push_str(ws(rng));
    out
}

/// The alarm with its signed content changed in one place, the signature kept.
fn signed_change(a: &Alarm, rng: &mut StdRng) -> String {
    let sig = a.signature();
    let mut b = a.clone();
    match rng.gen_range(0..6) {
        0 => b.description.push('x'),
        1 => b.alarm_content = format!("{}y", b.alarm_content),
        2 => b.error_type.push('1'),
        3 => b.timestamp += 1,
        4 => {
            b.description = b.description.chars().skip(1).collect::<String>()
                + if b.description.is_empty() { "z" } else { "" };
        }
        _ => {
            let removed = [
                "AppId",
                "ErrorType",
                "Description",
                "AlarmContent",
                "TimeStamp",
            ]
            .choose(rng)
            .copied()
            .unwrap_or("AppId");
            let doc = a.plain();
            let start = doc.find(&format!("<{removed}>")).unwrap_or(0);
            let end = doc
                .find(&format!("</{removed}>"))
                .map_or(0, |e| e + removed.len() + 3);
            return format!("{}{}", &doc[..start], &doc[end..]);
        }
    }
    b.plain().replace(&b.signature(), &sig)
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_alarms_verify(a in arb_alarm()) {
        let n = run(&w(APP1, KEY1), a.plain().as_bytes()).unwrap();
        prop_assert_eq!(&n.event_type, &format!("alarm.{}", a.error_type));
        prop_assert_eq!(&n.payload.json()["Description"], &Value::String(a.description.clone()));
        prop_assert_eq!(&n.payload.json()["AlarmContent"], &Value::String(a.alarm_content.clone()));
        prop_assert_eq!(n.occurred_at.unwrap().unix_timestamp(), a.timestamp);
        prop_assert_eq!(n.signed_time, n.occurred_at);
        prop_assert_eq!(
            n.dedup_key,
            format!("{APP1}:{}:{}:{}", a.error_type, a.timestamp, a.signature())
        );
    }

    /// (a)
    #[test]
    fn unsigned_mutations_keep_key_hash_and_payload(a in arb_alarm(), seed in any::<u64>()) {
        let base = run(&w(APP1, KEY1), a.plain().as_bytes()).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..8 {
            let doc = variant(&a, &mut rng);
            let n = run(&w(APP1, KEY1), doc.as_bytes());
            prop_assert!(n.is_ok(), "{} refused: {:?}", doc, n);
            let n = n.unwrap();
            prop_assert_eq!(&n.dedup_key, &base.dedup_key, "{}", doc);
            prop_assert_eq!(n.content_hash, base.content_hash, "{}", doc);
            prop_assert_eq!(&n.payload, &base.payload, "{}", doc);
        }
    }

    /// (b)
    #[test]
    fn signed_changes_are_refused(a in arb_alarm(), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let v = w(APP1, KEY1);
        for _ in 0..4 {
            let doc = signed_change(&a, &mut rng);
            prop_assert!(run(&v, doc.as_bytes()).is_err(), "{}", doc);
        }
        let doc = a.plain();
        let sig = a.signature();
        let other = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
        for (what, changed) in [
            ("another signature", doc.replace(&sig, &other)),
            ("U+3000 after", doc.replace(&sig, &format!("{sig}\u{3000}"))),
            ("U+00A0 before", doc.replace(&sig, &format!("\u{a0}{sig}"))),
            ("another method", doc.replace("[sha1]", "[md5]")),
            ("an unsigned element", doc.replace("</xml>", "<Extra>x</Extra></xml>")),
        ] {
            prop_assert!(run(&v, changed.as_bytes()).is_err(), "{}", what);
        }
    }

    /// (c)
    #[test]
    fn random_byte_flips_are_refused_or_change_nothing(
        a in arb_alarm(),
        pos in any::<prop::sample::Index>(),
        x in 1u8..=255,
    ) {
        let base = run(&w(APP1, KEY1), a.plain().as_bytes()).unwrap();
        let mut doc = a.plain().into_bytes();
        let i = pos.index(doc.len());
        doc[i] ^= x;
        if let Ok(n) = run(&w(APP1, KEY1), &doc) {
            prop_assert_eq!(&n.dedup_key, &base.dedup_key);
            prop_assert_eq!(n.content_hash, base.content_hash);
            prop_assert_eq!(&n.payload, &base.payload);
        }
    }
}
