//! Reading provider JSON without a `serde_json::Value` tree where the body itself is the payload
//! (Ping++, Pinddpay), and without trusting anything serde_json would let through silently.
//!
//! - [`Scalar`] and [`Obj`] read only the members a provider maps, into borrowed text, and
//!   tolerate a member of an unexpected type the way the providers' own SDKs do (it maps to null);
//!   serde_json still validates the whole document.
//! - [`strict_value`] builds a tree that refuses duplicate keys at every depth (PingPong's
//!   `bizContent`), since a duplicate would let two readers see two different documents.
//! - [`check_body_json`] covers what serde_json does not check in values it skips: UTF-8 inside
//!   strings and unpaired surrogate escapes. A body embedded byte for byte in the CloudEvent
//!   ([`crate::event::Payload::Body`]) must decode in every consumer.
//! - [`json_error`] turns a serde_json error into a message that quotes at most
//!   [`crate::text::QUOTE_MAX`] bytes of client text.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ProviderError;
use crate::text::{QUOTE_MAX, Quoted, clip};

/// A member a provider sends as a string or a number. Any other JSON value (null, a boolean, an
/// object, an array) is read, validated and dropped, except booleans, kept for `livemode`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    #[default]
    Other,
}

impl Scalar<'_> {
    /// A non-empty string, as sent.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// An integer sent as a JSON number.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::I64(n) => Some(n),
            Scalar::U64(n) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A string trimmed (when not empty then), or a number's JSON text (amounts and ids are
    /// sometimes sent as numbers).
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string),
            Scalar::I64(n) => Some(n.to_string()),
            Scalar::U64(n) => Some(n.to_string()),
            Scalar::F64(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            Scalar::Bool(_) | Scalar::Other => None,
        }
    }
}

/// Reads a map or a sequence to its end, validating it and keeping nothing.
fn drain_map<'de, A: MapAccess<'de>>(mut m: A) -> Result<(), A::Error> {
    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut s: A) -> Result<(), A::Error> {
    while s.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Scalar<'a>, A::Error> {
                drain_map(m).map(|()| Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Scalar<'a>, A::Error> {
                drain_seq(s).map(|()| Scalar::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON string, borrowed from the input when it holds no escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct CowStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A member that should be a JSON object: `Some` when it is one, `None` for any other value
/// (which is still validated). Unlike a derived struct alone, an array is never read as a struct.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(m)).map(|t| Obj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Obj<T>, A::Error> {
                drain_seq(s).map(|()| Obj(None))
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_unit<E>(self) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
            fn visit_none<E>(self) -> Result<Obj<T>, E> {
                Ok(Obj(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON value like `serde_json::Value`, but a key that appears twice in any object, at any
/// depth, is an error (serde_json keeps the last one silently).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Strict, A::Error> {
                let mut out = Vec::new();
                while let Some(Strict(v)) = s.next_element()? {
                    out.push(v);
                }
                Ok(Strict(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Strict, A::Error> {
                let mut out = Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate key {}",
                            Quoted(&k)
                        )));
                    }
                    let Strict(v) = m.next_value()?;
                    out.insert(k, v);
                }
                Ok(Strict(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one JSON document into a tree, refusing duplicate keys at every depth.
pub fn strict_value(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|Strict(v)| v)
}

/// A serde_json error as a message: serde may quote whole client strings (`invalid type:
/// string "…"`), so the text is cut to [`QUOTE_MAX`] bytes.
pub fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let cut = clip(&s, QUOTE_MAX);
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        s
    }
}

/// A 400 for a body or member that is not the JSON it should be.
pub fn json_error(what: &str, e: &serde_json::Error) -> ProviderError {
    ProviderError::Malformed(format!("{what}: {}", json_message(e)))
}

/// The body as UTF-8 text, for a JSON parse that borrows from it. serde_json does not check
/// UTF-8 inside strings it skips, so this is checked first, over the whole body.
pub fn utf8_body(body: &[u8]) -> Result<&str, ProviderError> {
    std::str::from_utf8(body).map_err(|e| {
        ProviderError::Malformed(format!(
            "body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// Checks what a successful serde_json parse does not guarantee for a body that goes into the
/// CloudEvent byte for byte, since serde_json skips the members a provider does not map without
/// decoding them:
///
/// - every `\u` escape of a UTF-16 surrogate is part of a proper pair;
/// - every number is finite as a double: `{"pad":7e975}` parses when skipped, but the CloudEvent
///   holding it would then be refused by serde_json and most consumers' parsers (a poison
///   message on the queue; found by fuzzing).
///
/// `text` must already have parsed as JSON, so every backslash is inside a string and starts a
/// well-formed escape, and every number token is well formed.
pub fn check_raw(text: &str) -> Result<(), ProviderError> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => i = skip_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let finite = text
                    .get(start..i)
                    .and_then(|t| t.parse::<f64>().ok())
                    .is_some_and(f64::is_finite);
                if !finite {
                    return Err(ProviderError::Malformed(
                        "body holds a number out of the range of a double".into(),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// From just after a string's opening quote to just after its closing one, checking the
/// surrogate escapes on the way.
fn skip_string(b: &[u8], mut i: usize) -> Result<usize, ProviderError> {
    let bad = || ProviderError::Malformed("body holds an unpaired UTF-16 surrogate escape".into());
    let unit = |at: usize| -> Option<u16> {
        let hex = b.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    loop {
        let off = b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&c| c == b'\\' || c == b'"'))
            .ok_or_else(|| ProviderError::Malformed("unterminated string".into()))?;
        let at = i + off;
        if b.get(at) == Some(&b'"') {
            return Ok(at + 1);
        }
        match b.get(at + 1) {
            Some(b'u') => {
                let u = unit(at + 2).ok_or_else(bad)?;
                if (0xD800..0xDC00).contains(&u) {
                    let pair = b.get(at + 6..at + 8) == Some(b"\\u")
                        && unit(at + 8).is_some_and(|l| (0xDC00..0xE000).contains(&l));
                    if !pair {
                        return Err(bad());
                    }
                    i = at + 12;
                } else if (0xDC00..0xE000).contains(&u) {
                    return Err(bad());
                } else {
                    i = at + 6;
                }
            }
            _ => i = at + 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow, default)]
        s: Scalar<'a>,
        #[serde(default)]
        o: Obj<Inner>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        n: Option<i64>,
    }

    #[test]
    fn scalars_borrow_and_tolerate_other_types() {
        let d: Doc = serde_json::from_str(r#"{"s":"abc","o":{"n":5}}"#).unwrap();
        assert!(matches!(d.s, Scalar::Str(Cow::Borrowed("abc"))));
        assert_eq!(d.o.0, Some(Inner { n: Some(5) }));
        let d: Doc = serde_json::from_str(r#"{"s":"a\u00e9","o":[1,{"n":2}]}"#).unwrap();
        assert_eq!(d.s.as_str(), Some("aé"));
        assert_eq!(d.o.0, None);
        let d: Doc = serde_json::from_str(r#"{"s":{"x":[1,2]},"o":"x","other":[{}]}"#).unwrap();
        assert_eq!(d.s, Scalar::Other);
        let d: Doc = serde_json::from_str(r#"{"s":12.5}"#).unwrap();
        assert_eq!(d.s.text().as_deref(), Some("12.5"));
        assert_eq!(d.s.as_i64(), None);
        let d: Doc = serde_json::from_str(r#"{"s":" x "}"#).unwrap();
        assert_eq!(d.s.text().as_deref(), Some("x"));
        // Still a JSON parser: syntax errors and duplicates of mapped members are errors.
        assert!(serde_json::from_str::<Doc>(r#"{"s":1,"s":2}"#).is_err());
        assert!(serde_json::from_str::<Doc>(r#"{"other":[1,]}"#).is_err());
        assert!(
            serde_json::from_str::<Obj<Doc>>(r#"[1]"#)
                .unwrap()
                .0
                .is_none()
        );
    }

    #[test]
    fn strict_values_refuse_duplicates_at_any_depth() {
        assert_eq!(
            strict_value(r#"{"a":[{"b":1.5,"c":null}]}"#).unwrap(),
            serde_json::json!({"a":[{"b":1.5,"c":null}]})
        );
        assert!(strict_value(r#"{"a":1,"a":1}"#).is_err());
        assert!(strict_value(r#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(
            strict_value(r#"{"a":1,"\u0061":2}"#).is_err(),
            "after decoding"
        );
        let long = "k".repeat(1 << 20);
        let e = strict_value(&format!(r#"{{"{long}":1,"{long}":2}}"#)).unwrap_err();
        assert!(json_message(&e).len() < 100, "{}", json_message(&e).len());
    }

    #[test]
    fn escapes() {
        for ok in [
            r#""a""#,
            r#""\ud83d\ude00""#,
            r#""\\ud800""#,
            r#""\u00e9\n\"\\""#,
            r#""\uD83D\uDE00x\u0041""#,
        ] {
            check_raw(ok).unwrap();
        }
        for bad in [
            r#""\ud800""#,
            r#""\ude00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
        ] {
            assert!(check_raw(bad).is_err(), "{bad}");
        }
        for ok in [
            r#"{"a":[1,-2.5e300,0,1E-400],"s":"1e999"}"#,
            r#"{"n":-0.0}"#,
        ] {
            check_raw(ok).unwrap();
        }
        for bad in [
            r#"{"pad":7e975}"#,
            r#"[1,-1e309]"#,
            &format!("[{}]", "9".repeat(400)),
        ] {
            assert!(check_raw(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_short() {
        let long = "v".repeat(1 << 20);
        let e = serde_json::from_str::<Inner>(&format!(r#"{{"n":"{long}"}}"#)).unwrap_err();
        let m = json_error("body", &e).to_string();
        assert!(m.len() < 100, "{}", m.len());
        assert!(utf8_body(b"\xff").is_err());
    }
}
