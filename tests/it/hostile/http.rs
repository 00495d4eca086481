//! Hostile HTTP: framing, lengths, headers, paths and timing, mostly against the Ping++ hook.
//! Bodies are valid, correctly signed events wherever the framing alone must cause the refusal,
//! so a daemon that let the framing through would publish and fail the catalogue twice.

use std::time::Duration;

use super::*;
use crate::harness::keys;

fn signed_event() -> (String, String) {
    let ev = payhook::testkit::pingpp_event("charge.succeeded", &mut rand::thread_rng());
    let sig = payhook::testkit::pingpp_sign(&keys().signing, ev.as_bytes());
    (ev, sig)
}

/// The head of a POST to the Ping++ hook with a good signature for `ev`, without a length.
fn head(sig: &str) -> Vec<String> {
    vec![
        "POST /hooks/pingpp HTTP/1.1".into(),
        "Host: payhook.test".into(),
        "Connection: close".into(),
        "Content-Type: application/json".into(),
        format!("X-Pingplusplus-Signature: {sig}"),
    ]
}

fn lines(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn cases() -> Vec<Case> {
    let (ev, sig) = signed_event();
    let json = ("Content-Type", "application/json");
    let signature = ("X-Pingplusplus-Signature", sig.as_str());
    let over = vec![b' '; MAX_BODY + 1];
    let over_sig = payhook::testkit::pingpp_sign(&keys().signing, &over);
    let with = |extra: &[&str], body: &[u8]| {
        let mut h = head(&sig);
        h.extend(extra.iter().map(|s| s.to_string()));
        raw(&lines(&h), body)
    };
    let cl = format!("Content-Length: {}", ev.len());
    let slow_byte = DEADLINE / 10;
    let mut cases = vec![
        // Paths and methods.
        case(
            "unknown source",
            404,
            "not_found",
            post("/hooks/nope", &[json, signature], &ev),
        ),
        case(
            "path of 8 KiB",
            404,
            "not_found",
            post(&format!("/hooks/{}", "p".repeat(8192)), &[json], &ev),
        ),
        case(
            "path with %FF%FE",
            404,
            "not_found",
            post("/hooks/%FF%FE", &[json], &ev),
        ),
        case(
            "path with ..",
            404,
            "not_found",
            post("/hooks/../hooks/pingpp", &[json, signature], &ev),
        ),
        case(
            "GET on a hook",
            405,
            "method_not_allowed",
            raw(
                &["GET /hooks/pingpp HTTP/1.1", "Host: x", "Connection: close"],
                "",
            ),
        ),
        case(
            "unknown method on a hook",
            405,
            "method_not_allowed",
            raw(
                &[
                    "FROB /hooks/pingpp HTTP/1.1",
                    "Host: x",
                    "Connection: close",
                    "Content-Length: 0",
                ],
                "",
            ),
        ),
        // Lengths.
        case(
            "body one byte over the limit, Content-Length",
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            post(
                "/hooks/pingpp",
                &[json, ("X-Pingplusplus-Signature", &over_sig)],
                &over,
            ),
        ),
        case(
            "body one byte over the limit, chunked",
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            {
                let mut h = head(&over_sig);
                h.push("Transfer-Encoding: chunked".into());
                raw(&lines(&h), chunked(&over, 64 * 1024))
            },
        ),
        case(
            "one chunk one byte over the limit",
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            {
                let mut h = head(&over_sig);
                h.push("Transfer-Encoding: chunked".into());
                raw(&lines(&h), chunked(&over, over.len()))
            },
        ),
        // The declared size alone proves nothing: the request runs out of time instead.
        case(
            "chunk declared over the limit, never sent",
            TIMEOUT,
            REQUEST_TIMEOUT,
            with(
                &["Transfer-Encoding: chunked"],
                format!("{:x}\r\n{}", MAX_BODY + 1, "x".repeat(1000)).as_bytes(),
            ),
        ),
        case(
            "Content-Length of 10 GiB, no body",
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            with(&["Content-Length: 10737418240"], b""),
        ),
        case(
            "Expect: 100-continue over the limit",
            TOO_LARGE,
            PAYLOAD_TOO_LARGE,
            with(
                &[
                    &format!("Content-Length: {}", MAX_BODY + 1),
                    "Expect: 100-continue",
                ],
                b"",
            ),
        ),
        case(
            "chunk size that overflows",
            BAD,
            MALFORMED,
            with(
                &["Transfer-Encoding: chunked"],
                b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n",
            ),
        ),
        case(
            "chunk size not hex",
            BAD,
            MALFORMED,
            with(&["Transfer-Encoding: chunked"], b"zz\r\nx\r\n0\r\n\r\n"),
        ),
        case(
            "two different Content-Lengths",
            BAD,
            BY_PARSER,
            with(
                &[&cl, &format!("Content-Length: {}", ev.len() + 5)],
                ev.as_bytes(),
            ),
        ),
        case(
            "Transfer-Encoding gzip, chunked",
            BAD,
            MALFORMED,
            with(
                &["Transfer-Encoding: gzip, chunked"],
                &chunked(ev.as_bytes(), 100),
            ),
        ),
        case(
            "Transfer-Encoding unknown",
            BAD,
            BY_PARSER,
            with(&["Transfer-Encoding: frob"], ev.as_bytes()),
        ),
        case(
            "Content-Length -1",
            BAD,
            BY_PARSER,
            with(&["Content-Length: -1"], ev.as_bytes()),
        ),
        case(
            "Content-Length not a number",
            BAD,
            BY_PARSER,
            with(&["Content-Length: 12abc"], ev.as_bytes()),
        ),
        case(
            "Content-Length of 30 digits",
            BAD,
            BY_PARSER,
            with(&["Content-Length: 123456789012345678901234567890"], b""),
        ),
        // Headers.
        case(
            "one header of 1 MiB",
            HEADERS_TOO_LARGE,
            BY_PARSER,
            with(
                &[&cl, &format!("X-Pad: {}", "a".repeat(1024 * 1024))],
                ev.as_bytes(),
            ),
        ),
        case("200 headers", HEADERS_TOO_LARGE, BY_PARSER, {
            let pads: Vec<String> = (0..200).map(|i| format!("X-Pad-{i}: {i}")).collect();
            let mut extra: Vec<&str> = pads.iter().map(String::as_str).collect();
            extra.push(&cl);
            with(&extra, ev.as_bytes())
        }),
        case(
            "header line without a colon",
            BAD,
            BY_PARSER,
            with(&[&cl, "NoColonHere"], ev.as_bytes()),
        ),
        case(
            "header name with a space",
            BAD,
            BY_PARSER,
            with(&[&cl, "Bad Name: x"], ev.as_bytes()),
        ),
        case("header value with a NUL byte", BAD, BY_PARSER, {
            let mut r = with(&[&cl, "X-Nul: a\u{1}b"], ev.as_bytes());
            let at = super::find(&r, b"\x01").expect("marker");
            r[at] = 0;
            r
        }),
        case(
            "folded header line",
            BAD,
            BY_PARSER,
            with(&[&cl, "X-Folded: a", " continued"], ev.as_bytes()),
        ),
        case(
            "request line of garbage",
            BAD,
            BY_PARSER,
            raw(&["\u{1}\u{2}\u{3} / HTTP/1.1", "Host: x"], ""),
        ),
        case(
            "HTTP version 9.9",
            BAD,
            BY_PARSER,
            raw(&["POST /hooks/pingpp HTTP/9.9", "Host: x", &cl], &ev),
        ),
        case(
            "X-Forwarded-For of 8 KiB, no signature",
            401,
            "invalid_signature",
            post(
                "/hooks/pingpp",
                &[json, ("X-Forwarded-For", &"1.2.3.4, ".repeat(900))],
                &ev,
            ),
        ),
        // Timing. The deadline is the whole request (SPEC §2).
        paced(
            "head a byte at a time, in time",
            401,
            "invalid_signature",
            Pace::ByteEvery(Duration::from_millis(2)),
            post("/hooks/pingpp", &[json], "{\"id\":\"evt_slow\"}"),
        ),
        paced(
            "body a byte at a time, in time",
            401,
            "invalid_signature",
            Pace::BodyByteEvery(Duration::from_millis(5)),
            post("/hooks/pingpp", &[json], "{\"id\":\"evt_slow\",\"x\":1}"),
        ),
        paced(
            "head a byte at a time, past the deadline",
            TIMEOUT,
            REQUEST_TIMEOUT,
            Pace::ByteEvery(slow_byte),
            post("/hooks/pingpp", &[json, signature], &ev),
        ),
        paced(
            "body a byte at a time, past the deadline",
            TIMEOUT,
            REQUEST_TIMEOUT,
            Pace::BodyByteEvery(slow_byte),
            post("/hooks/pingpp", &[json, signature], &ev),
        ),
        paced(
            "chunked body a byte at a time, past the deadline",
            TIMEOUT,
            REQUEST_TIMEOUT,
            Pace::BodyByteEvery(slow_byte),
            with(&["Transfer-Encoding: chunked"], &chunked(ev.as_bytes(), 16)),
        ),
        case(
            "body shorter than Content-Length",
            TIMEOUT,
            REQUEST_TIMEOUT,
            with(
                &[&format!("Content-Length: {}", ev.len() + 10)],
                ev.as_bytes(),
            ),
        ),
        case(
            "head never finished",
            TIMEOUT,
            REQUEST_TIMEOUT,
            b"POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: appl".to_vec(),
        ),
    ];
    // Conflicting lengths on every hook, each around a good signed webhook: accepting the
    // framing would publish it.
    for good in super::signed::signed_webhooks() {
        let name = match good.source {
            "pingpp" => "pingpp good webhook, Content-Length and chunked",
            "pinddpay" => "pinddpay good webhook, Content-Length and chunked",
            "pingpong" => "pingpong good webhook, Content-Length and chunked",
            _ => "wechat good webhook, Content-Length and chunked",
        };
        let mut head = vec![
            format!("POST {} HTTP/1.1", good.path),
            "Host: x".into(),
            "Connection: close".into(),
            format!("Content-Length: {}", good.body.len()),
            "Transfer-Encoding: chunked".into(),
        ];
        head.extend(good.headers.iter().map(|(k, v)| format!("{k}: {v}")));
        cases.push(case(
            name,
            BAD,
            MALFORMED,
            raw(&lines(&head), chunked(&good.body, 100)),
        ));
    }
    cases
}
