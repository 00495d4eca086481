//! PingPong: V4 and dispute JSON bodies and V2 forms, re-signed the way PingPong signs them.

use std::collections::BTreeMap;

use payhook::providers::pingpong as provider;
use serde_json::value::RawValue;

use super::PINGPONG_SALT;
use super::check::{Verdict, assert_not_forged, assert_same_event, flip, headers, run};
use super::verifiers::pingpong_verifier;

/// How a value is signed: a JSON string as its decoded text, another scalar as its JSON text,
/// null as nothing. `None` for objects, arrays and unreadable values.
fn pingpong_text(raw: &RawValue) -> Option<Option<String>> {
    let t = raw.get();
    match t.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(t).ok().map(Some),
        b'n' => Some(None),
        b'{' | b'[' => None,
        _ => Some(Some(t.to_string())),
    }
}

fn pingpong_sign_type(text: Option<&str>, default: provider::SignType) -> provider::SignType {
    match text.map(|t| t.trim().to_ascii_uppercase()).as_deref() {
        Some("MD5") => provider::SignType::Md5,
        Some("SHA256" | "SHA-256") => provider::SignType::Sha256,
        _ => default,
    }
}

fn plain_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn pingpong_request(body: &[u8], content_type: &str) -> Verdict {
    run(
        pingpong_verifier(),
        &headers(&[("content-type", content_type)]),
        body,
    )
}

/// A PingPong V4 or dispute JSON body. The fuzzed body is sent as it is, and again with the `sign`
/// computed the way PingPong computes it (inserted as the first member), then with changes the
/// signature does not cover (whitespace, an added null and an added empty member, an escaped
/// letter) and with one fuzz-chosen byte changed.
pub fn pingpong_json(data: &[u8]) {
    let ct = "application/json";
    let _ = pingpong_request(data, ct);

    // Parse the body the way PingPong signs it; duplicate keys keep the last value (the provider
    // refuses them anyway).
    let Ok(members) = serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(data) else {
        return;
    };
    if members.contains_key("sign") {
        return;
    }
    let mut texts: Vec<(&str, Option<String>)> = Vec::new();
    let mut all_strings = true;
    for (k, raw) in &members {
        match pingpong_text(raw) {
            Some(t) => {
                all_strings &= raw.get().starts_with('"') || t.is_none();
                texts.push((k.as_str(), t));
            }
            None => all_strings = false,
        }
    }
    let sign_type_text = texts
        .iter()
        .find(|(k, _)| *k == "signType")
        .and_then(|(_, t)| t.clone());
    let sign_type = pingpong_sign_type(sign_type_text.as_deref(), provider::SignType::Sha256);
    let content =
        provider::sign_content(PINGPONG_SALT, texts.iter().map(|(k, v)| (*k, v.as_deref())));
    let sign = provider::sign(sign_type, &content);
    let Some(open) = data.iter().position(|b| *b == b'{') else {
        return;
    };
    let member = if members.is_empty() {
        format!("\"sign\":\"{sign}\"")
    } else {
        format!("\"sign\":\"{sign}\",")
    };
    let insert = |at: usize, text: &str| -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + text.len() + member.len());
        out.extend_from_slice(&data[..=open]);
        out.extend_from_slice(member.as_bytes());
        let rest = &data[open + 1..];
        out.extend_from_slice(&rest[..at.min(rest.len())]);
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&rest[at.min(rest.len())..]);
        out
    };
    let body = insert(0, "");
    let signed = pingpong_request(&body, ct);
    // Only where the test's reading of the body is beyond doubt: every value a string, plain
    // keys, no duplicates, a known signType.
    let duplicates = has_duplicate_keys(data);
    if all_strings
        && !duplicates
        && members.keys().all(|k| plain_key(k))
        && sign_type_text
            .is_some_and(|t| matches!(t.trim().to_ascii_uppercase().as_str(), "MD5" | "SHA256"))
    {
        assert_not_forged("pingpong json", &signed);
    }

    let pad = insert(0, " \n\t");
    assert_same_event(
        "pingpong json + whitespace",
        &signed,
        &pingpong_request(&pad, ct),
    );
    if !members.contains_key("zz_null") {
        let null = insert(0, "\"zz_null\":null,");
        assert_same_event(
            "pingpong json + null member",
            &signed,
            &pingpong_request(&null, ct),
        );
    }
    if !members.contains_key("zz_empty") {
        let empty = insert(0, "\"zz_empty\":\"\",");
        assert_same_event(
            "pingpong json + empty member",
            &signed,
            &pingpong_request(&empty, ct),
        );
    }
    if let Some(escaped) = escape_one_letter(&body, open + 1 + member.len()) {
        assert_same_event(
            "pingpong json + \\u escape",
            &signed,
            &pingpong_request(&escaped, ct),
        );
    }
    if let Some(changed) = flip(&body) {
        assert_same_event(
            "pingpong json + one changed byte",
            &signed,
            &pingpong_request(&changed, ct),
        );
    }
}

/// Whether a JSON object's top level names a key twice (a map type would merge them).
fn has_duplicate_keys(data: &[u8]) -> bool {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut twice = false;
            while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                twice |= !seen.insert(k);
            }
            Ok(twice)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    serde::Deserializer::deserialize_map(&mut de, Keys).unwrap_or(false)
}

/// The body with the first ASCII letter of a JSON string value after `from` written as `\u00XX`.
fn escape_one_letter(body: &[u8], from: usize) -> Option<Vec<u8>> {
    // After `":"` starts a string value; change its first letter.
    let at =
        from + body.get(from..)?.windows(4).position(|w| {
            w[0] == b'"' && w[1] == b':' && w[2] == b'"' && w[3].is_ascii_alphabetic()
        })? + 3;
    let mut out = body[..at].to_vec();
    out.extend_from_slice(format!("\\u{:04x}", body[at]).as_bytes());
    out.extend_from_slice(&body[at + 1..]);
    Some(out)
}

/// A PingPong V2 form body, sent as it is and with `sign` appended as PingPong computes it over
/// the form-decoded values, then with `+` written as `%20`, an added empty field, and one
/// fuzz-chosen byte changed.
pub fn pingpong_form(data: &[u8]) {
    let ct = "application/x-www-form-urlencoded";
    let _ = pingpong_request(data, ct);
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let pairs: Vec<(String, String)> = form_urlencoded_parse(data);
    if pairs.iter().any(|(k, _)| k == "sign") {
        return;
    }
    let sign_type_text = pairs
        .iter()
        .find(|(k, _)| k == "signType")
        .map(|(_, v)| v.clone());
    let sign_type = pingpong_sign_type(sign_type_text.as_deref(), provider::SignType::Md5);
    let content = provider::sign_content(
        PINGPONG_SALT,
        pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
    );
    let sign = provider::sign(sign_type, &content);
    let mut body = data.to_vec();
    if !body.is_empty() && !body.ends_with(b"&") {
        body.push(b'&');
    }
    body.extend_from_slice(format!("sign={sign}").as_bytes());
    let signed = pingpong_request(&body, ct);
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let unique = keys.windows(2).all(|w| w[0] != w[1]);
    let known_type = sign_type_text
        .as_deref()
        .is_none_or(|t| matches!(t.trim().to_ascii_uppercase().as_str(), "MD5" | "SHA256"));
    if unique
        && known_type
        && keys.iter().all(|k| plain_key(k))
        && pairs.iter().any(|(k, _)| k == "accId")
    {
        assert_not_forged("pingpong form", &signed);
    }

    if let Some(i) = body.iter().position(|b| *b == b'+') {
        let mut spaced = body[..i].to_vec();
        spaced.extend_from_slice(b"%20");
        spaced.extend_from_slice(&body[i + 1..]);
        assert_same_event(
            "pingpong form + as %20",
            &signed,
            &pingpong_request(&spaced, ct),
        );
    }
    if !pairs.iter().any(|(k, _)| k == "zz_empty") {
        let mut empty = b"zz_empty=&".to_vec();
        empty.extend_from_slice(&body);
        assert_same_event(
            "pingpong form + empty field",
            &signed,
            &pingpong_request(&empty, ct),
        );
    }
    if let Some(changed) = flip(&body) {
        assert_same_event(
            "pingpong form + one changed byte",
            &signed,
            &pingpong_request(&changed, ct),
        );
    }
}

fn form_urlencoded_parse(data: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
