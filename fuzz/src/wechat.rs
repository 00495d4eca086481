//! WeChat alarms, re-signed over the fields the XML reader parsed, and the XML reader alone.

use payhook::providers::wechat_alarm as provider;

use super::check::{assert_not_forged, assert_same_event, contract, flip, headers, run};
use super::verifiers::wechat_verifier;
use super::{MAX_MESSAGE, WECHAT_APP, WECHAT_KEY};

/// A WeChat alarm: the fuzzed XML as it is, and with the `AppSignature` computed over the fields
/// as the reader parsed them inserted before `</xml>`; then with the signature padded by
/// whitespace (XML and Unicode), upper-cased, and one fuzz-chosen byte changed.
pub fn wechat_alarm(data: &[u8]) {
    let v = wechat_verifier();
    let h = headers(&[("content-type", "text/xml")]);
    let _ = run(v, &h, data);
    let Ok(fields) = provider::parse_flat_xml(data) else {
        return;
    };
    if fields
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("AppSignature"))
    {
        return;
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let signed_names = [
        "AppId",
        "ErrorType",
        "Description",
        "AlarmContent",
        "TimeStamp",
    ];
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for name in signed_names {
        pairs.push((name, get(name).unwrap_or("")));
    }
    pairs.push(("appkey", WECHAT_KEY));
    let sig = provider::v2_signature(&pairs);
    let Some(close) = rfind(data, b"</xml>") else {
        return;
    };
    let with = |sig_text: &str| -> Vec<u8> {
        let mut out = data[..close].to_vec();
        out.extend_from_slice(format!("<AppSignature>{sig_text}</AppSignature>").as_bytes());
        out.extend_from_slice(&data[close..]);
        out
    };
    let body = with(&sig);
    let signed = run(v, &h, &body);
    let complete = signed_names.iter().all(|n| get(n).is_some());
    let ours = get("AppId") == Some(WECHAT_APP);
    let sha1 = get("SignMethod").is_some_and(|m| m.eq_ignore_ascii_case("sha1"));
    let only_known = fields.iter().all(|(k, _)| {
        signed_names
            .iter()
            .chain(["SignMethod"].iter())
            .any(|n| n.eq_ignore_ascii_case(k))
    });
    // The signature went in before the last `</xml>`; where that is not the closing tag (one
    // inside a comment), the reader does not see it, and a refusal is right.
    let placed = provider::parse_flat_xml(&body).is_ok_and(|f| {
        f.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("AppSignature") && *v == sig)
            && f.len() == fields.len() + 1
    });
    if complete && ours && sha1 && only_known && placed {
        assert_not_forged("wechat_alarm", &signed);
    }
    for (what, variant) in [
        ("xml whitespace", format!(" \n{sig}\t ")),
        ("upper case", sig.to_ascii_uppercase()),
        ("U+3000", format!("{sig}\u{3000}")),
        ("U+00A0", format!("\u{a0}{sig}")),
        ("CDATA", format!("<![CDATA[{sig}]]>")),
        (
            "split CDATA",
            format!("<![CDATA[{}]]>{}", &sig[..20], &sig[20..]),
        ),
    ] {
        let changed = run(v, &h, &with(&variant));
        assert_same_event(
            &format!("wechat_alarm, signature {what}"),
            &signed,
            &changed,
        );
    }
    if let Some(changed) = flip(&body) {
        assert_same_event(
            "wechat_alarm + one changed byte",
            &signed,
            &run(v, &h, &changed),
        );
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The flat XML reader on its own: a document it accepts has unique field names, none empty or
/// holding whitespace or control characters, and trimmed values; a refusal has a short message.
pub fn xml(data: &[u8]) {
    match provider::parse_flat_xml(data) {
        Ok(fields) => {
            let mut names: Vec<String> =
                fields.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                contract("xml reader", format_args!("a field name appears twice"));
            }
            for (k, v) in &fields {
                if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    contract(
                        "xml reader",
                        format_args!(
                            "a field name that is no XML name: {}",
                            payhook::text::Quoted(k)
                        ),
                    );
                }
                assert_eq!(provider::xml_trim(v), v.as_str(), "an untrimmed value");
                assert!(
                    k.len() + v.len() <= data.len(),
                    "a field longer than the body"
                );
            }
        }
        Err(m) if m.len() > MAX_MESSAGE => contract(
            "message length",
            format_args!(
                "an error message of {} bytes: {}",
                m.len(),
                payhook::text::Quoted(&m)
            ),
        ),
        Err(_) => {}
    }
}
