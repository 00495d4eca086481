//! Ping++: hostile bodies signed with the test key, and hostile signature and content type headers.

use super::signed::*;
use super::*;

pub fn cases() -> Vec<Case> {
    let ev = pingpp_event();
    let sig = pingpp_sig(ev.as_bytes());
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let mut invalid_utf8 = ev.clone().into_bytes();
    let at = ev.find("\"object\":\"event\"").expect("sample has object") + 10;
    invalid_utf8[at] = 0xff;
    let huge = ev.replacen("\"created\":", "\"created\":1e400,\"x\":", 1);
    let long_key = format!("{{\"{}\":{{}}, \"type\":", "k".repeat(MIB));
    let urlsafe = sig.replace('+', "-").replace('/', "_");
    vec![
        case(
            "pingpp empty body, signed",
            BAD,
            MALFORMED,
            pingpp_signed(""),
        ),
        case(
            "pingpp truncated JSON, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&ev[..ev.len() / 2]),
        ),
        case(
            "pingpp 30000 nested arrays, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&nested),
        ),
        case(
            "pingpp 20000 nested objects, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&deep_object),
        ),
        case(
            "pingpp invalid UTF-8, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&invalid_utf8),
        ),
        case(
            "pingpp number 1e400, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&huge),
        ),
        // Found by fuzzing: the body is the payload, byte for byte; consumers must be able to
        // read every number in it.
        case(
            "pingpp number 7e975 in an unmapped member, signed",
            BAD,
            MALFORMED,
            pingpp_signed(ev.replacen('{', "{\"pad\":7e975,", 1)),
        ),
        case(
            "pingpp JSON array, signed",
            BAD,
            MALFORMED,
            pingpp_signed("[1,2,3]"),
        ),
        case(
            "pingpp 1 MiB key, truncated, signed",
            BAD,
            MALFORMED,
            pingpp_signed(&long_key),
        ),
        case(
            "pingpp no signature header",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON], &ev),
        ),
        case(
            "pingpp garbled body, no signature",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON], "{not json"),
        ),
        case(
            "pingpp base64url signature",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPP, &[JSON, ("X-Pingplusplus-Signature", &urlsafe)], &ev),
        ),
        case(
            "pingpp 8 KiB signature header",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[JSON, ("X-Pingplusplus-Signature", &"A".repeat(8 * 1024))],
                &ev,
            ),
        ),
        case(
            "pingpp two signature headers, good first",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[
                    JSON,
                    ("X-Pingplusplus-Signature", &sig),
                    ("X-Pingplusplus-Signature", "AAAA"),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp two signature headers, good last",
            FORGED,
            INVALID_SIGNATURE,
            post(
                PINGPP,
                &[
                    JSON,
                    ("X-Pingplusplus-Signature", "AAAA"),
                    ("x-pingplusplus-signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp text/plain",
            MEDIA,
            UNSUPPORTED,
            post(
                PINGPP,
                &[
                    ("Content-Type", "text/plain"),
                    ("X-Pingplusplus-Signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp no content type",
            MEDIA,
            UNSUPPORTED,
            post(PINGPP, &[("X-Pingplusplus-Signature", &sig)], &ev),
        ),
        case(
            "pingpp two content types",
            MEDIA,
            UNSUPPORTED,
            post(
                PINGPP,
                &[
                    JSON,
                    ("Content-Type", "text/plain"),
                    ("X-Pingplusplus-Signature", &sig),
                ],
                &ev,
            ),
        ),
        case(
            "pingpp content type with a 0xFF byte",
            MEDIA,
            UNSUPPORTED,
            {
                let mut r = post(
                    PINGPP,
                    &[
                        ("Content-Type", "application/json;x=\u{1}"),
                        ("X-Pingplusplus-Signature", &sig),
                    ],
                    &ev,
                );
                let at = super::find(&r, b"\x01").expect("marker");
                r[at] = 0xff;
                r
            },
        ),
    ]
}
