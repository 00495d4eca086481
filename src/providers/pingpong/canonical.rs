//! The canonical form of a PingPong body: what its signature covers, and nothing else.
//!
//! PingPong signs `salt + k1=v1&k2=v2&…`: every field but `sign` whose value is not null or
//! empty, sorted by key, values decoded (JSON strings unescaped, form values percent-decoded),
//! no escaping of `&` or `=`. So the signature does not cover JSON whitespace, key order,
//! escapes, `+` against `%20`, the JSON type of a scalar (`"1"` against `1`), or null and empty
//! fields. Everything payhook derives (shape, dedup key, normalized fields, payload, content
//! hash) is therefore computed from [`Canonical`], the decoded non-empty fields in sorted order,
//! never from the raw bytes. Two bodies with the same canonical form are the same event.
//!
//! Because `&` and `=` are not escaped, one signed text could be split into fields in more than
//! one way (`merchantTransactionId=M-1&status=FAILED` is one field or two). A body is accepted
//! only when its fields are the one split [`Canonical::check_split`] allows, so each signed text
//! has exactly one reading.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ProviderError;
use crate::providers::json::{CowStr, json_error};
use crate::text::Quoted;

fn malformed(m: impl Into<String>) -> ProviderError {
    ProviderError::Malformed(m.into())
}

/// How a body is read: it decides what the fields mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON envelope with `bizContent` (or a one-click signing notice without it).
    V4,
    /// Flat JSON with a non-empty top-level `eventCode`.
    Dispute,
    /// A form-encoded legacy notification.
    V2,
}

/// One signed field: decoded key and value, the value never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// A body in canonical form: its non-empty fields sorted by key (byte order), `sign` included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    pub shape: Shape,
    pub fields: Vec<Field<'a>>,
}

/// Keys PingPong uses: ASCII letters, digits and `_`. Anything else is refused, so no key can
/// carry `&` or `=` into the signed text.
pub fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl<'a> Canonical<'a> {
    /// Sorts the fields, refuses invalid and repeated keys (null and empty ones included), then
    /// drops the empty values.
    fn new(
        shape: Shape,
        mut all: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    ) -> Result<Self, ProviderError> {
        if let Some((k, _)) = all.iter().find(|(k, _)| !valid_key(k)) {
            return Err(malformed(format!(
                "field name {} has characters other than letters, digits and _",
                Quoted(k)
            )));
        }
        all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(malformed(format!(
                "field {} appears twice",
                Quoted(&w[0].0)
            )));
        }
        let fields: Vec<Field<'a>> = all
            .into_iter()
            .filter_map(|(key, value)| match value {
                Some(value) if !value.is_empty() => Some(Field { key, value }),
                _ => None,
            })
            .collect();
        let shape = match shape {
            Shape::V2 => Shape::V2,
            // An empty or null eventCode was dropped above: it cannot make a body a dispute.
            _ if fields.iter().any(|f| f.key == "eventCode") => Shape::Dispute,
            _ => Shape::V4,
        };
        let c = Canonical { shape, fields };
        c.check_split()?;
        Ok(c)
    }

    /// The value of a field (never empty).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .binary_search_by(|f| f.key.as_bytes().cmp(key.as_bytes()))
            .ok()
            .and_then(|i| self.fields.get(i))
            .map(|f| &*f.value)
    }

    /// Whether `bizContent` is read as JSON (then it must parse, which fixes its extent).
    pub fn biz_is_json(&self) -> bool {
        self.shape != Shape::V2
    }

    /// The signed text without the salt: `k=v` of every field but `sign`, joined with `&`.
    pub fn signed_text(&self) -> String {
        let len: usize = self
            .fields
            .iter()
            .map(|f| f.key.len() + f.value.len() + 2)
            .sum();
        let mut s = String::with_capacity(len);
        for f in self.fields.iter().filter(|f| f.key != "sign") {
            if !s.is_empty() {
                s.push('&');
            }
            s.push_str(&f.key);
            s.push('=');
            s.push_str(&f.value);
        }
        s
    }

    /// Refuses a body whose signed text could be read as other fields.
    ///
    /// A signed text is read by one rule: left to right, `&k=` (k a valid key) starts a new
    /// field exactly when the value so far is not empty and k sorts after the current key.
    /// The received fields must be that reading, i.e. no value of a field K holds `&k=` after at
    /// least one character with k > K. Otherwise two bodies could share a signed text and a
    /// signature but not their fields (a V2 `merchantTransactionId` of `M-1&status=FAILED`
    /// with the real `status` left out). `bizContent`, where it is JSON, is exempt: a JSON
    /// document followed by `&…` is not JSON, so its extent is already fixed.
    ///
    /// (Bounding k by the next key N as well, K < k < N, would not be enough: with
    /// `a=x&c=y&b=z&d=w`, both `a`,`c`,`d` and `a`,`b`,`d` would pass that test.)
    pub fn check_split(&self) -> Result<(), ProviderError> {
        for f in &self.fields {
            if f.key == "sign" || (f.key == "bizContent" && self.biz_is_json()) {
                continue;
            }
            if let Some(k) = split_point(&f.key, &f.value) {
                return Err(malformed(format!(
                    "the value of {} holds &{}=, which would read as another field: \
                     the signature could not tell the two apart",
                    Quoted(&f.key),
                    Quoted(k)
                )));
            }
        }
        Ok(())
    }
}

/// The first `&k=` in `value`, after at least one character, with k a valid key sorting after
/// `key`.
fn split_point<'v>(key: &str, value: &'v str) -> Option<&'v str> {
    let b = value.as_bytes();
    let mut from = 1;
    while let Some(off) = b
        .get(from..)
        .and_then(|r| r.iter().position(|&c| c == b'&'))
    {
        let start = from + off + 1;
        let len = b
            .get(start..)
            .map(|r| {
                r.iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count()
            })
            .unwrap_or(0);
        if len > 0 && b.get(start + len) == Some(&b'=') {
            let k = value.get(start..start + len)?;
            if k.as_bytes() > key.as_bytes() {
                return Some(k);
            }
        }
        from = start;
    }
    None
}

/// The top-level members of a JSON object, keys decoded, values unparsed.
struct RawPairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawPairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawPairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawPairs<'a>, A::Error> {
                let mut out = Vec::with_capacity(16);
                while let Some(CowStr(k)) = m.next_key::<CowStr<'a>>()? {
                    let v: &'a RawValue = m.next_value()?;
                    out.push((k, v));
                }
                Ok(RawPairs(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Reads a JSON body (V4 or dispute): top-level scalars only; strings decoded, numbers and
/// booleans as their JSON text, null and `""` left out.
pub fn parse_json(text: &str) -> Result<Canonical<'_>, ProviderError> {
    let RawPairs(pairs) =
        serde_json::from_str(text).map_err(|e| json_error("body is not a JSON object", &e))?;
    let mut all = Vec::with_capacity(pairs.len());
    for (key, raw) in pairs {
        let t = raw.get();
        let value = match t.as_bytes().first() {
            Some(b'"') => {
                let CowStr(s) = serde_json::from_str(t)
                    .map_err(|e| json_error(&format!("field {}", Quoted(&key)), &e))?;
                Some(s)
            }
            Some(b'{' | b'[') => {
                return Err(malformed(format!(
                    "field {} is an object or array; PingPong sends only scalars at the top level",
                    Quoted(&key)
                )));
            }
            Some(b'n') => None,
            _ => Some(Cow::Borrowed(t)),
        };
        all.push((key, value));
    }
    Canonical::new(Shape::V4, all)
}

/// `+` is a space, then percent-decoding; the result must be UTF-8.
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return Some(Cow::Borrowed(s));
    }
    let spaced = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

/// Reads a form body (V2): `&`-separated `key=value` pairs, both form-decoded; empty segments
/// skipped, empty values left out.
pub fn parse_form(body: &[u8]) -> Result<Canonical<'_>, ProviderError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("form body is not UTF-8"))?;
    let mut all = Vec::with_capacity(16);
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k).ok_or_else(|| {
            malformed(format!(
                "form field name {} is not UTF-8 once decoded",
                Quoted(k)
            ))
        })?;
        let value = form_decode(v).ok_or_else(|| {
            malformed(format!(
                "form field {} is not UTF-8 once decoded",
                Quoted(&key)
            ))
        })?;
        all.push((key, Some(value)));
    }
    if all.is_empty() {
        return Err(malformed("empty form body"));
    }
    Canonical::new(Shape::V2, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Canonical<'_>) -> Vec<String> {
        c.fields
            .iter()
            .map(|f| format!("{}={}", f.key, f.value))
            .collect()
    }

    #[test]
    fn json_forms_that_sign_alike_read_alike() {
        let a = parse_json(r#"{"b":"x é","a":1,"c":null,"d":"","sign":"S"}"#).unwrap();
        let b = parse_json("{ \"a\" : \"1\",\n\"\\u0062\":\"x \\u00e9\", \"sign\":\"S\"}").unwrap();
        assert_eq!(a, b);
        assert_eq!(keys(&a), ["a=1", "b=x é", "sign=S"]);
        assert_eq!(a.signed_text(), "a=1&b=x é");
        assert_eq!(a.get("b"), Some("x é"));
        assert_eq!(a.get("c"), None);
        assert_eq!(a.shape, Shape::V4);
    }

    #[test]
    fn form_forms_that_sign_alike_read_alike() {
        let a = parse_form(b"b=x+%C3%A9&a=1&&c=&sign=S").unwrap();
        let b = parse_form(b"a=%31&b=x%20\xc3\xa9&sign=S").unwrap();
        assert_eq!(a.fields, b.fields);
        assert_eq!(a.signed_text(), "a=1&b=x é");
        assert_eq!(a.shape, Shape::V2);
        assert!(parse_form(b"a=%FF").is_err(), "invalid UTF-8 once decoded");
        assert!(parse_form(b"a=\xff").is_err());
        assert!(parse_form(b"&&").is_err());
    }

    #[test]
    fn keys_and_duplicates() {
        for bad in [
            r#"{"a b":"1"}"#,
            r#"{"a&b":"1"}"#,
            r#"{"a=b":"1"}"#,
            r#"{"":"1"}"#,
            r#"{"é":"1"}"#,
            r#"{"a":"1","a":"2"}"#,
            r#"{"a":"1","a":null}"#,
            r#"{"a":"1","\u0061":""}"#,
        ] {
            assert!(parse_json(bad).is_err(), "{bad}");
        }
        for bad in [&b"a=1&a=2"[..], b"a=1&a=", b"a=1&a", b"a%20b=1", b"a%26b=1"] {
            assert!(parse_form(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn empty_event_code_is_not_a_dispute() {
        assert_eq!(parse_json(r#"{"eventCode":""}"#).unwrap().shape, Shape::V4);
        assert_eq!(
            parse_json(r#"{"eventCode":null}"#).unwrap().shape,
            Shape::V4
        );
        assert_eq!(
            parse_json(r#"{"eventCode":"X"}"#).unwrap().shape,
            Shape::Dispute
        );
        assert_eq!(parse_form(b"eventCode=X").unwrap().shape, Shape::V2);
    }

    #[test]
    fn only_one_split_is_accepted() {
        // The attack of issue 8, item 3, and its mirror.
        assert!(
            parse_form(b"merchantTransactionId=M-1%26status%3DFAILED&transactionId=T").is_err()
        );
        parse_form(b"merchantTransactionId=M-1&status=FAILED&transactionId=T").unwrap();
        // Values that hold &k= with k before the key stay accepted.
        parse_form(b"description=a+b%26c%3Dd").unwrap();
        parse_json(r#"{"bizContent":"{\"u\":\"https://x/?a=1&b=2\"}","accId":"1"}"#).unwrap();
        // bizContent, where it is JSON, is exempt: its JSON fixes its extent.
        parse_json(r#"{"bizContent":"{\"u\":\"https://x/?z=1&zz=2\"}","accId":"1"}"#).unwrap();
        assert!(parse_form(b"bizContent=x%26zz%3D1").is_err());
        // With an upper bound only (K < k < N) both of these would pass.
        parse_json(r#"{"a":"x","c":"y&b=z","d":"w"}"#).unwrap();
        assert!(parse_json(r#"{"a":"x&c=y","b":"z","d":"w"}"#).is_err());
        // The point must start a key and follow at least one character.
        parse_json(r#"{"a":"&b=1"}"#).unwrap();
        parse_json(r#"{"a":"x& b=1"}"#).unwrap();
        parse_json(r#"{"a":"x&b"}"#).unwrap();
        assert!(parse_json(r#"{"a":"x&&b=1"}"#).is_err());
        assert!(parse_json(r#"{"a":"x&b=1"}"#).is_err());
        // sign is not in the signed text.
        parse_json(r#"{"sign":"x&z=1"}"#).unwrap();
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point("a", "x&b=1"), Some("b"));
        assert_eq!(split_point("c", "x&b=1"), None);
        assert_eq!(split_point("a", "x&a=1"), None, "not after the key itself");
        assert_eq!(split_point("a", "x&b=1&c=2"), Some("b"));
        assert_eq!(split_point("b", "x&a=1&c=2"), Some("c"));
        assert_eq!(split_point("a", "&"), None);
        assert_eq!(split_point("a", "x&"), None);
        assert_eq!(split_point("a", "x&é=1"), None);
    }

    #[test]
    fn huge_keys_make_short_messages() {
        let k = "k".repeat(1 << 20);
        for body in [
            format!(r#"{{"{k} ":"1"}}"#),
            format!(r#"{{"{k}":"1","{k}":"2"}}"#),
            format!(r#"{{"{k}":{{}}}}"#),
            format!(r#"{{"a":"x&{k}=1"}}"#),
            format!(r#"{{"{k}":"\ud800"}}"#),
            format!(r#"{{"{k}":tru}}"#),
        ] {
            let e = parse_json(&body).unwrap_err().to_string();
            assert!(e.len() < 200, "{}: {e:.300}", e.len());
        }
        for body in [
            format!("{k}%20=1"),
            format!("{k}=%FF"),
            format!("{k}=1&{k}=2"),
        ] {
            let e = parse_form(body.as_bytes()).unwrap_err().to_string();
            assert!(e.len() < 200, "{}", e.len());
        }
    }
}
