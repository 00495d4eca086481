//! Property tests of SPEC §6.3 for PingPong: for random valid webhooks of every shape,
//!
//! (a) every mutation of what the signature does not cover keeps the dedup key, the content
//!     hash and the payload: JSON whitespace, key order, string escapes (`\u00e9`, surrogate
//!     pairs, `\/`), added null and empty fields, `"1"` against `1` and `"true"` against `true`
//!     at the top level, the case of `sign`; in forms `+` against `%20`, percent-encoding of any
//!     byte (either hex case), field order, empty segments and empty fields, encoded keys;
//! (b) every change of signed content is refused: a character of a value or key changed,
//!     added or removed, a field dropped, the signature changed;
//! (c) a random byte flipped anywhere is refused or changes nothing (key, hash, payload);
//! (d) a signed text has one reading: of all the ways to split it into fields (merging and
//!     splitting at `&k=`), at most one is accepted.
//!
//! 256 cases per property by default; `PROPTEST_CASES=5000` for the long run.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::tests::{ACC1, FORM, JSON, SALT1, SALT2, pp, run, salts};
use super::*;

/// A top-level value: a JSON string, or the JSON text of a number or boolean.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Raw(String),
}

impl Val {
    fn text(&self) -> &str {
        match self {
            Val::Str(s) | Val::Raw(s) => s,
        }
    }
}

/// A webhook as its fields in sending order, and its signature.
#[derive(Debug, Clone)]
struct Hook {
    form: bool,
    fields: Vec<(String, Val)>,
    sign: String,
}

impl Hook {
    fn new(form: bool, sign_type: SignType, salt: &str, fields: Vec<(String, Val)>) -> Hook {
        let content = sign_content(
            salt,
            fields.iter().map(|(k, v)| (k.as_str(), Some(v.text()))),
        );
        Hook {
            form,
            sign: sign(sign_type, &content),
            fields,
        }
    }

    fn ct(&self) -> &'static str {
        if self.form { FORM } else { JSON }
    }

    /// The plain encoding, as PingPong would send it.
    fn plain(&self) -> String {
        if self.form {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.fields {
                s.append_pair(k, v.text());
            }
            s.append_pair("sign", &self.sign).finish()
        } else {
            let mut m = Map::new();
            for (k, v) in &self.fields {
                let v = match v {
                    Val::Str(s) => Value::String(s.clone()),
                    Val::Raw(r) => serde_json::from_str(r).expect("raw scalar"),
                };
                m.insert(k.clone(), v);
            }
            m.insert("sign".into(), Value::String(self.sign.clone()));
            Value::Object(m).to_string()
        }
    }
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Unicode, JSON specials, form specials, and now and then `&k=`.
    "[a-zA-Z0-9 é中😀\"\\\\/+%#,.:&=\n-]{1,16}"
}

fn v4_hook() -> impl Strategy<Value = Hook> {
    (
        prop::sample::select(vec!["RECHARGE", "REFUND", "CAPTURE", "VOID", "SIGN", ""]),
        prop::sample::select(vec!["SUCCESS", "FAILED", "AUTH_SUCCESS", ""]),
        "[0-9]{6,18}",
        text_strategy(),
        any::<bool>(),
        prop::collection::vec(("[a-z][a-zA-Z0-9_]{0,7}", text_strategy()), 0..3),
        1_500_000_000_000i64..2_000_000_000_000,
        any::<bool>(),
    )
        .prop_map(|(notify, status, txn, remark, md5, extra, t, with_url)| {
            let mut biz = Map::new();
            if !notify.is_empty() {
                biz.insert("notifyType".into(), json!(notify));
            }
            if !status.is_empty() {
                biz.insert("status".into(), json!(status));
            }
            biz.insert("transactionId".into(), json!(txn));
            biz.insert("refundId".into(), json!(format!("R{txn}")));
            biz.insert("amount".into(), json!("12.345000"));
            biz.insert("currency".into(), json!("BHD"));
            biz.insert("transactionTime".into(), json!(t.to_string()));
            biz.insert("remark".into(), json!(remark));
            biz.insert(
                "nested".into(),
                json!({"n": 1.5, "list": [true, null, "é"]}),
            );
            if with_url {
                biz.insert("notifyUrl".into(), json!("https://m.example/cb?z=1&zz=2"));
            }
            let sign_type = if md5 { SignType::Md5 } else { SignType::Sha256 };
            let mut fields = vec![
                ("accId".to_string(), Val::Str(ACC1.into())),
                ("clientId".into(), Val::Str("2018092714313010016".into())),
                (
                    "signType".into(),
                    Val::Str(if md5 { "MD5" } else { "SHA256" }.into()),
                ),
                (
                    "bizContent".into(),
                    Val::Str(Value::Object(biz).to_string()),
                ),
            ];
            for (k, v) in extra {
                if !fields.iter().any(|(f, _)| *f == k) && k != "sign" && k != "eventCode" {
                    fields.push((k, Val::Str(v)));
                }
            }
            Hook::new(false, sign_type, SALT1, fields)
        })
}

fn dispute_hook() -> impl Strategy<Value = Hook> {
    (
        prop::sample::select(vec!["NOTIFICATION_OF_CHARGEBACK", "PREARBITRATION", "x"]),
        proptest::option::of("[A-Z0-9-]{1,12}"),
        text_strategy(),
        any::<bool>(),
        1_500_000_000_000i64..2_000_000_000_000,
    )
        .prop_map(|(code, psp, reason, defendable, t)| {
            let mut fields = vec![
                ("accId".to_string(), Val::Str(ACC1.into())),
                ("eventCode".into(), Val::Str(code.into())),
                ("eventDate".into(), Val::Str(t.to_string())),
                ("amount".into(), Val::Str("5.00".into())),
                ("currency".into(), Val::Str("EUR".into())),
                ("reason".into(), Val::Str(reason)),
                ("defendable".into(), Val::Raw(defendable.to_string())),
                ("count".into(), Val::Raw("3".into())),
                ("signType".into(), Val::Str("SHA256".into())),
            ];
            if let Some(p) = psp {
                fields.push(("disputePspReference".into(), Val::Str(p)));
            }
            Hook::new(false, SignType::Sha256, SALT1, fields)
        })
}

fn v2_hook() -> impl Strategy<Value = Hook> {
    (
        proptest::option::of("[A-Z0-9]{1,12}"),
        prop::sample::select(vec!["SALE", "REFUND", ""]),
        prop::sample::select(vec!["SUCCESS", "FAILED"]),
        text_strategy(),
        any::<bool>(),
    )
        .prop_map(|(txn, payment_type, status, description, explicit_md5)| {
            let mut fields = vec![
                ("accId".to_string(), Val::Str(ACC1.into())),
                ("amount".into(), Val::Str("100.00".into())),
                ("currency".into(), Val::Str("USD".into())),
                ("description".into(), Val::Str(description)),
                ("status".into(), Val::Str(status.into())),
                ("transactionTime".into(), Val::Str("20230419135028".into())),
            ];
            if let Some(t) = txn {
                fields.push(("transactionId".into(), Val::Str(t)));
            }
            if !payment_type.is_empty() {
                fields.push(("paymentType".into(), Val::Str(payment_type.into())));
            }
            if explicit_md5 {
                fields.push(("signType".into(), Val::Str("MD5".into())));
            }
            Hook::new(true, SignType::Md5, SALT1, fields)
        })
}

fn any_hook() -> impl Strategy<Value = Hook> {
    prop_oneof![v4_hook(), dispute_hook(), v2_hook()]
}

const WS: [&str; 6] = ["", " ", "\n", "\t", "\r\n  ", "  "];

/// A JSON string literal for `s`, with characters escaped at random (`\uXXXX`, surrogate
/// pairs, the short escapes, `\/`).
fn json_str(s: &str, rng: &mut StdRng) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let must = c == '"' || c == '\\' || (c as u32) < 0x20;
        if must || rng.gen_bool(0.3) {
            match c {
                '"' if rng.gen_bool(0.5) => out.push_str("\\\""),
                '\\' if rng.gen_bool(0.5) => out.push_str("\\\\"),
                '/' if rng.gen_bool(0.5) => out.push_str("\\/"),
                '\n' if rng.gen_bool(0.5) => out.push_str("\\n"),
                _ => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        if rng.gen_bool(0.5) {
                            out.push_str(&format!("\\u{u:04x}"));
                        } else {
                            out.push_str(&format!("\\u{u:04X}"));
                        }
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Another encoding of the same signed content: whitespace, order, escapes, scalar types, added
/// null and empty fields, the case of `sign`.
fn json_variant(h: &Hook, rng: &mut StdRng) -> String {
    let mut members: Vec<(String, String)> = h
        .fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Val::Str(s) => {
                    let is_scalar_text = s == "true"
                        || s == "false"
                        || serde_json::from_str::<serde_json::Number>(s).is_ok();
                    if is_scalar_text && !s.contains(char::is_whitespace) && rng.gen_bool(0.5) {
                        s.clone()
                    } else {
                        json_str(s, rng)
                    }
                }
                Val::Raw(r) if rng.gen_bool(0.5) => json_str(r, rng),
                Val::Raw(r) => r.clone(),
            };
            (json_str(k, rng), value)
        })
        .collect();
    let sign = if rng.gen_bool(0.5) {
        h.sign.to_ascii_lowercase()
    } else {
        h.sign.clone()
    };
    members.push((json_str("sign", rng), json_str(&sign, rng)));
    for i in 0..rng.gen_range(0..3) {
        let value = if rng.gen_bool(0.5) { "null" } else { "\"\"" };
        members.push((json_str(&format!("unsignedExtra{i}"), rng), value.into()));
    }
    members.shuffle(rng);
    let ws = |rng: &mut StdRng| WS.choose(rng).copied().unwrap_or("");
    let mut out = String::new();
    out.push_str(ws(rng));
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(ws(rng));
        out.push_str(k);
        out.push_str(ws(rng));
        out.push(':');
        out.push_str(ws(rng));
        out.push_str(v);
        out.push_str(ws(rng));
    }
    out.push('}');
    out.push_str(ws(rng));
    out
}

/// `s` form-encoded with random choices: `+` or `%20`, any byte percent-encoded in either case.
fn form_str(s: &str, rng: &mut StdRng) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~*".contains(&b);
        if b == b' ' && rng.gen_bool(0.5) {
            out.push('+');
        } else if plain && !rng.gen_bool(0.3) {
            out.push(char::from(b));
        } else if rng.gen_bool(0.5) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn form_variant(h: &Hook, rng: &mut StdRng) -> String {
    let sign = if rng.gen_bool(0.5) {
        h.sign.to_ascii_lowercase()
    } else {
        h.sign.clone()
    };
    let mut pairs: Vec<String> = h
        .fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_str(k, rng), form_str(v.text(), rng)))
        .collect();
    pairs.push(format!("sign={}", form_str(&sign, rng)));
    for i in 0..rng.gen_range(0..3) {
        pairs.push(if rng.gen_bool(0.5) {
            format!("unsignedExtra{i}=")
        } else {
            format!("unsignedExtra{i}")
        });
    }
    for _ in 0..rng.gen_range(0..3) {
        pairs.push(String::new());
    }
    pairs.shuffle(rng);
    pairs.join("&")
}

fn variant(h: &Hook, rng: &mut StdRng) -> String {
    if h.form {
        form_variant(h, rng)
    } else {
        json_variant(h, rng)
    }
}

/// The hook's signed content changed in one place (the signature kept).
fn signed_change(h: &Hook, rng: &mut StdRng) -> Hook {
    let mut m = h.clone();
    let i = rng.gen_range(0..m.fields.len());
    let (k, v) = &mut m.fields[i];
    let mut s = v.text().to_string();
    match rng.gen_range(0..5) {
        0 => s.push('x'),
        1 => {
            s.pop();
        }
        2 => {
            let c = if s.starts_with('0') { '1' } else { '0' };
            s.replace_range(..s.chars().next().map_or(0, char::len_utf8), &c.to_string());
        }
        3 => {
            k.push('Z');
            return m;
        }
        _ => {
            m.fields.remove(i);
            return m;
        }
    }
    *v = match v {
        Val::Str(_) => Val::Str(s),
        Val::Raw(_) => Val::Str(s),
    };
    m
}

/// Whether the base hook is accepted; a random text may hold `&k=` and be refused as ambiguous.
fn base(h: &Hook, salt_list: &Pingpong) -> Option<Normalized> {
    match run(salt_list, h.ct(), h.plain().as_bytes()) {
        Ok(n) => Some(n),
        Err(ProviderError::Malformed(_)) => None,
        Err(e) => panic!("a signed hook is refused: {e}"),
    }
}

/// Every way to read `text` as fields: keys valid and increasing, values not empty.
fn readings(text: &str) -> Vec<Vec<(String, String)>> {
    fn go(
        text: &str,
        from: usize,
        prev: &str,
        acc: &mut Vec<(String, String)>,
        out: &mut Vec<Vec<(String, String)>>,
    ) {
        let Some(eq) = text[from..].find('=').map(|p| from + p) else {
            return;
        };
        let key = &text[from..eq];
        if !canonical::valid_key(key) || key <= prev {
            return;
        }
        let value_start = eq + 1;
        // The value ends at the end, or at any `&` that starts another field.
        let mut ends: Vec<usize> = text[value_start..]
            .match_indices('&')
            .map(|(p, _)| value_start + p)
            .collect();
        ends.push(text.len());
        for end in ends {
            if end == value_start {
                continue;
            }
            acc.push((key.to_string(), text[value_start..end].to_string()));
            if end == text.len() {
                out.push(acc.clone());
            } else {
                go(text, end + 1, key, acc, out);
            }
            acc.pop();
        }
    }
    let mut out = Vec::new();
    go(text, 0, "", &mut Vec::new(), &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn random_hooks_verify(h in any_hook()) {
        let salt_list = Pingpong::new(salts(&[SALT2, SALT1]), None, DisputeSignScope::All);
        if let Some(n) = base(&h, &salt_list) {
            let one = run(&pp(SALT1), h.ct(), h.plain().as_bytes()).unwrap();
            prop_assert_eq!(&n, &one);
            let text = sign_content("", h.fields.iter().map(|(k, v)| (k.as_str(), Some(v.text()))));
            prop_assert_eq!(n.content_hash, sha256(text.as_bytes()));
            if n.dedup_key.starts_with("sha256:") {
                prop_assert_eq!(&n.dedup_key, &hash_key(&n.content_hash));
            }
        }
    }

    /// (a)
    #[test]
    fn unsigned_mutations_keep_key_hash_and_payload(h in any_hook(), seed in any::<u64>()) {
        let v = pp(SALT1);
        let Some(b) = base(&h, &v) else { return Ok(()) };
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..8 {
            let body = variant(&h, &mut rng);
            let n = run(&v, h.ct(), body.as_bytes());
            prop_assert!(n.is_ok(), "{:?} refused: {:?}", body, n);
            let n = n.unwrap();
            prop_assert_eq!(&n.dedup_key, &b.dedup_key, "{}", body);
            prop_assert_eq!(n.content_hash, b.content_hash, "{}", body);
            prop_assert_eq!(&n.payload, &b.payload, "{}", body);
            prop_assert_eq!(&n.event_type, &b.event_type, "{}", body);
        }
    }

    /// (b)
    #[test]
    fn signed_changes_are_refused(h in any_hook(), seed in any::<u64>()) {
        let v = pp(SALT1);
        let Some(_) = base(&h, &v) else { return Ok(()) };
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..4 {
            let changed = signed_change(&h, &mut rng);
            let body = changed.plain();
            prop_assert!(run(&v, h.ct(), body.as_bytes()).is_err(), "{}", body);
        }
        let mut other_sign = h.clone();
        let digit = if other_sign.sign.starts_with('0') { "1" } else { "0" };
        other_sign.sign.replace_range(..1, digit);
        prop_assert!(run(&v, h.ct(), other_sign.plain().as_bytes()).is_err());
    }

    /// (c)
    #[test]
    fn random_byte_flips_are_refused_or_change_nothing(
        h in any_hook(),
        pos in any::<prop::sample::Index>(),
        x in 1u8..=255,
    ) {
        let v = pp(SALT1);
        let Some(b) = base(&h, &v) else { return Ok(()) };
        let mut body = h.plain().into_bytes();
        let i = pos.index(body.len());
        body[i] ^= x;
        if let Ok(n) = run(&v, h.ct(), &body) {
            prop_assert_eq!(&n.dedup_key, &b.dedup_key);
            prop_assert_eq!(n.content_hash, b.content_hash);
            prop_assert_eq!(&n.payload, &b.payload);
        }
    }

    /// (d)
    #[test]
    fn a_signed_text_has_one_reading(
        fields in prop::collection::btree_map(
            prop::sample::select(vec!["a", "ab", "b", "c", "d", "z"]),
            "[ab=&x]{1,5}",
            1..5,
        ),
        form in any::<bool>(),
    ) {
        let mut all: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("accId", "1"));
        if !form {
            all.push(("signType", "MD5"));
        }
        let text = sign_content("", all.iter().map(|(k, v)| (*k, Some(*v))));
        let signature = sign(SignType::Md5, &format!("{SALT1}{text}"));
        let v = pp(SALT1);
        let mut accepted = Vec::new();
        for reading in readings(&text) {
            let body = if form {
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, val) in &reading {
                    s.append_pair(k, val);
                }
                s.append_pair("sign", &signature).finish()
            } else {
                let mut m = Map::new();
                for (k, val) in &reading {
                    m.insert(k.clone(), Value::String(val.clone()));
                }
                m.insert("sign".into(), Value::String(signature.clone()));
                Value::Object(m).to_string()
            };
            if let Ok(n) = run(&v, if form { FORM } else { JSON }, body.as_bytes()) {
                accepted.push((reading, n));
            }
        }
        prop_assert!(accepted.len() <= 1, "{} readings accepted: {:?}", accepted.len(), accepted);
    }
}

#[test]
fn readings_enumerate_every_split() {
    let r = readings("a=x&c=y&b=z&d=w");
    assert!(r.contains(&vec![
        ("a".into(), "x".into()),
        ("c".into(), "y&b=z".into()),
        ("d".into(), "w".into())
    ]));
    assert!(r.contains(&vec![
        ("a".into(), "x&c=y".into()),
        ("b".into(), "z".into()),
        ("d".into(), "w".into())
    ]));
    assert!(r.contains(&vec![("a".into(), "x&c=y&b=z&d=w".into())]));
    assert_eq!(readings("a=").len(), 0);
}
