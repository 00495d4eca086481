//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) and seeds (`fuzz/seeds/TARGET/`)
//! through the fuzz targets' own code, so every `cargo test` re-checks what the fuzzer once
//! reached, with all its invariants, without cargo-fuzz or libFuzzer (scripts/fuzz runs those).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Once;

#[path = "../../fuzz/src/lib.rs"]
mod targets;

thread_local! {
    /// While replaying, this thread's panic messages go here instead of stderr.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, returning its panic message, if any, without printing it.
fn quietly(f: impl FnOnce()) -> Result<(), String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = CAUGHT.with(|c| {
                let mut c = c.borrow_mut();
                if let Some(m) = c.as_mut() {
                    *m = info.to_string();
                    true
                } else {
                    false
                }
            });
            if !quiet {
                default(info);
            }
        }));
    });
    CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let message = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    result.map_err(|_| message)
}

/// Runs every input of `target` through `f` and names each one that breaks an invariant.
fn replay(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    let mut failed = Vec::new();
    for dir in ["corpus", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            // A file a running fuzzer has just replaced is skipped, not a failure.
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            inputs += 1;
            if let Err(message) = quietly(|| f(&data)) {
                let name = path.strip_prefix(&root).unwrap_or(&path).display();
                let message: String = message.chars().take(400).collect();
                failed.push(format!("{name}: {message}"));
            }
        }
    }
    assert!(
        inputs > 0,
        "no corpus for {target} under {}",
        root.display()
    );
    assert!(
        failed.is_empty(),
        "{} of {inputs} {target} inputs break an invariant; replay one with \
         `cd fuzz && cargo fuzz run -s none -O {target} FILE`; the first ones:\n{}",
        failed.len(),
        failed[..failed.len().min(10)].join("\n")
    );
}

#[test]
fn fuzz_corpus_pingpp() {
    replay("pingpp", targets::pingpp);
}

#[test]
fn fuzz_corpus_pingpp_signature() {
    replay("pingpp_signature", targets::pingpp_signature);
}

#[test]
fn fuzz_corpus_pinddpay() {
    replay("pinddpay", targets::pinddpay);
}

#[test]
fn fuzz_corpus_pingpong_json() {
    replay("pingpong_json", targets::pingpong_json);
}

#[test]
fn fuzz_corpus_pingpong_form() {
    replay("pingpong_form", targets::pingpong_form);
}

#[test]
fn fuzz_corpus_wechat_alarm() {
    replay("wechat_alarm", targets::wechat_alarm);
}

#[test]
fn fuzz_corpus_xml() {
    replay("xml", targets::xml);
}

// Minimal reproducers of what the fuzzer found in the providers before issue 8's fixes, each
// through the same target code (and so the same invariant) that found it.

/// quick-xml's error for a mismatched end tag quotes both element names whole.
#[test]
fn fuzz_found_xml_error_quotes_a_long_element_name_whole() {
    let body = format!("<xml><{}>x</B></xml>", "A".repeat(2000));
    targets::xml(body.as_bytes());
}

/// PingPong quotes a JSON key whole in "field … is an object or array".
#[test]
fn fuzz_found_pingpong_error_quotes_a_long_key_whole() {
    let body = format!("{{\"{}\":{{}}}}", "k".repeat(2000));
    targets::pingpong_json(body.as_bytes());
}

/// A body without notifyType falls back to the hash of the raw body: whitespace, an added null
/// or empty member, or a `\u` escape made a new event of the same signed content.
#[test]
fn fuzz_found_pingpong_json_whitespace_is_a_new_event() {
    targets::pingpong_json(br#"{"accId":"1","signType":"SHA256"}"#);
}

/// The same for forms without transactionId: `+` against `%20` made a new event.
#[test]
fn fuzz_found_pingpong_form_plus_is_a_new_event() {
    targets::pingpong_form(b"accId=1&description=a+b");
}

/// The AppSignature comparison trimmed Unicode spaces but the dedup key used the raw value:
/// U+3000 after a captured signature made a new event.
#[test]
fn fuzz_found_wechat_signature_padding_is_a_new_event() {
    targets::wechat_alarm(
        b"<xml><AppId>wxd930ea5d5a258f4f</AppId><ErrorType>1001</ErrorType><Description>d</Description>\
          <AlarmContent>c</AlarmContent><TimeStamp>1795775106</TimeStamp><SignMethod>sha1</SignMethod></xml>",
    );
}

/// quick-xml reads `<\t/>` as an empty element with an empty name and `<a\0b/>` as one named
/// "a\0b", and the reader kept them as fields (found by `xml` with `-len_control=0` after 4.9
/// million runs, and by the strict run on the merged reader). The WeChat provider refuses both as
/// unknown elements; the reader alone should refuse names that are no XML names.
#[test]
fn fuzz_found_xml_accepts_element_names_that_are_no_xml_names() {
    targets::xml(b"<xml><a\0b/></xml>");
    targets::xml(b"<xml><\t/></xml>");
}

/// A member the provider does not map is skipped without checking its number's range, so a
/// signed body holding `7e975` is accepted and embedded byte for byte in the CloudEvent, which
/// serde_json (like many consumers) then refuses: "number out of range" (found by `pingpp` on the
/// merged providers after 853,452 runs).
#[test]
fn fuzz_found_pingpp_out_of_range_number_makes_an_unreadable_cloudevent() {
    targets::pingpp(br#"{"":7e975,"type":"e"}"#);
}

/// The same through Pinddpay.
#[test]
fn fuzz_found_pinddpay_out_of_range_number_makes_an_unreadable_cloudevent() {
    targets::pinddpay(br#"{"":7e975,"eventId":"e1","eventName":"order.paid"}"#);
}
