//! The invariants every target checks, and small helpers to build requests.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::HeaderValue;
use payhook::event::{Event, Normalized, SHORT_STRING_MAX, bounded_name, event_id};
use payhook::providers::{Inbound, ProviderError, Verifier};
use serde_json::Value;

use super::MAX_MESSAGE;

/// With `PAYHOOK_FUZZ_LENIENT=1`, a broken *contract* invariant (a long error message, a changed
/// body that verifies as another event) is counted and reported on stderr instead of stopping the
/// run, so robustness (no panic, no hang, every accepted event publishable, nothing forged) can be
/// fuzzed at length on code whose contract fixes are still under way. Off by default: the corpus
/// replay in `cargo test` and normal fuzzing are strict.
fn lenient() -> bool {
    static L: OnceLock<bool> = OnceLock::new();
    *L.get_or_init(|| std::env::var_os("PAYHOOK_FUZZ_LENIENT").is_some_and(|v| v == "1"))
}

/// A broken contract invariant: panics, or in lenient mode counts it and reports the first of
/// each kind and then every power of two.
pub fn contract(kind: &'static str, message: std::fmt::Arguments<'_>) {
    use std::sync::Mutex;
    if !lenient() {
        panic!("{message}");
    }
    static SEEN: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let n = seen.entry(kind).or_insert(0);
    *n += 1;
    if n.is_power_of_two() {
        eprintln!("payhook-fuzz: contract [{kind}] broken {n} time(s); latest: {message}");
    }
}

pub type Verdict = Result<Normalized, ProviderError>;

pub fn run(v: &dyn Verifier, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let first = v.verify(&Inbound { headers, body });
    let again = v.verify(&Inbound { headers, body });
    assert_eq!(first, again, "the same request gave two different results");
    match &first {
        Ok(n) => check_accepted(v.provider(), n, body),
        Err(e) => check_error(e),
    }
    first
}

fn check_error(e: &ProviderError) {
    let (ProviderError::Malformed(m) | ProviderError::Unauthorized(m)) = e;
    if m.len() > MAX_MESSAGE {
        contract(
            "message length",
            format_args!(
                "an error message of {} bytes (SPEC §2 quotes at most 64 bytes of client text): {}",
                m.len(),
                payhook::text::Quoted(m)
            ),
        );
    }
}

/// A verified webhook must become a publishable event.
fn check_accepted(provider: &'static str, n: &Normalized, body: &[u8]) {
    let source = "fuzz";
    assert!(!n.dedup_key.is_empty(), "empty dedup key");
    let e = Event::build(
        source,
        provider,
        n.clone(),
        time::OffsetDateTime::now_utc(),
        Some("application/octet-stream".into()),
        Bytes::copy_from_slice(body),
    );
    assert!(
        e.routing_key.len() <= SHORT_STRING_MAX,
        "routing key of {} bytes",
        e.routing_key.len()
    );
    assert!(bounded_name(provider, &n.event_type).len() <= SHORT_STRING_MAX);
    assert_eq!(e.id, event_id(source, &n.dedup_key));
    let ce: Value = match serde_json::from_slice(&e.message) {
        Ok(v) => v,
        Err(err) => {
            // Consumers read it with a JSON parser like this one: an event they cannot read is
            // a poison message on the queue.
            contract(
                "CloudEvent not readable as JSON",
                format_args!("the CloudEvent is not JSON: {err}"),
            );
            return;
        }
    };
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(
        ce["id"].as_str(),
        Some(e.id.hyphenated().to_string().as_str())
    );
    assert_eq!(ce["data"]["dedup_key"].as_str(), Some(n.dedup_key.as_str()));
    assert_eq!(
        ce["data"]["event_type"].as_str(),
        Some(n.event_type.as_str())
    );
    assert_eq!(
        ce["type"].as_str(),
        Some(format!("{provider}.{}", n.event_type).as_str())
    );
    assert!(
        ce["data"].get("payload").is_some(),
        "the CloudEvent has no payload"
    );
    if let Some(off) = e.body_offset {
        assert_eq!(e.message.get(off..off + body.len()), Some(body));
    }
    if n.money.amount_minor.is_some() {
        assert!(
            n.money.currency.is_some(),
            "amount_minor without a currency"
        );
    }
}

/// A correctly signed body is accepted or malformed, never refused as forged.
pub fn assert_not_forged(what: &str, v: &Verdict) {
    if let Err(ProviderError::Unauthorized(m)) = v {
        panic!(
            "{what}: a correctly signed body was refused as forged: {}",
            payhook::text::Quoted(m)
        );
    }
}

/// SPEC §6.3: a change of bytes the signature does not cover is refused or keeps the dedup key
/// and the signed content; a change of signed bytes is refused.
pub fn assert_same_event(what: &str, original: &Verdict, changed: &Verdict) {
    if let Ok(c) = changed {
        match original {
            Ok(o) if o.dedup_key != c.dedup_key => contract(
                "new event from an unsigned change",
                format_args!(
                    "{what}: the changed body verifies as another event: {} then {}",
                    payhook::text::Quoted(&o.dedup_key),
                    payhook::text::Quoted(&c.dedup_key)
                ),
            ),
            Ok(o) if o.content_hash != c.content_hash => contract(
                "content hash of an unsigned change",
                format_args!("{what}: the changed body verifies with other signed content"),
            ),
            // A refused body that verifies once changed carries the same signed content; whether
            // the refusal was right is the business of the other checks.
            Ok(_) | Err(_) => {}
        }
    }
}

pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(*k, v);
        }
    }
    h
}

/// One byte of `data` xor'ed with a non-zero value, both chosen by the input itself so the
/// fuzzer can steer them.
pub fn flip(data: &[u8]) -> Option<Vec<u8>> {
    if data.is_empty() {
        return None;
    }
    let h = data
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)));
    let pos = (h as usize) % data.len();
    let x = ((h >> 24) as u8) | 1;
    let mut out = data.to_vec();
    out[pos] ^= x;
    Some(out)
}
