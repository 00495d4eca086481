//! Several requests on one connection, kept alive or pipelined (written at once, before any
//! answer): each head is judged on its own. A request with both `Content-Length` and
//! `Transfer-Encoding` gets 400 wherever it stands on the connection, and is never published;
//! the requests around it are answered and published as usual.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A signed Ping++ event and its id.
fn signed() -> (String, String, String) {
    let ev = payhook::testkit::pingpp_event("charge.succeeded", &mut rand::thread_rng());
    let sig = payhook::testkit::pingpp_sign(&keys().signing, ev.as_bytes());
    let id = serde_json::from_str::<serde_json::Value>(&ev).expect("sample is JSON")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    (ev, sig, id)
}

enum Framing {
    Length,
    Chunked,
    /// `Content-Length` then `Transfer-Encoding: chunked`, the body chunked.
    LengthThenChunked,
    /// `Transfer-Encoding: chunked` then `Content-Length`, the body chunked.
    ChunkedThenLength,
}

/// A correctly signed POST of `ev` to the Ping++ hook, kept alive, framed as asked.
fn request(ev: &str, sig: &str, framing: Framing) -> Vec<u8> {
    let mut head = format!(
        "POST /hooks/pingpp HTTP/1.1\r\nHost: payhook.test\r\nContent-Type: application/json\r\n\
         X-Pingplusplus-Signature: {sig}\r\n"
    );
    let cl = format!("Content-Length: {}\r\n", ev.len());
    let te = "Transfer-Encoding: chunked\r\n";
    match framing {
        Framing::Length => head.push_str(&cl),
        Framing::Chunked => head.push_str(te),
        Framing::LengthThenChunked => head.push_str(&format!("{cl}{te}")),
        Framing::ChunkedThenLength => head.push_str(&format!("{te}{cl}")),
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    match framing {
        Framing::Length => out.extend_from_slice(ev.as_bytes()),
        _ => {
            for c in ev.as_bytes().chunks(100) {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

/// The answers in `raw` (HTTP/1.1 responses one after the other, each with a Content-Length):
/// status and `error` code (empty for a 2xx).
fn answers(raw: &[u8]) -> Vec<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut rest: &str = &text;
    let mut out = Vec::new();
    while let Some((head, after)) = rest.split_once("\r\n\r\n") {
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("a Content-Length: {head:?}"));
        let body = after
            .get(..len)
            .unwrap_or_else(|| panic!("a whole body: {after:?}"));
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|j| j["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        out.push((status, code));
        rest = after.get(len..).unwrap_or_default();
    }
    out
}

/// Writes `requests` on one connection, pipelined (all at once) or kept alive (each after the
/// previous answer), and returns every answer until the daemon closes the connection.
async fn exchange(port: u16, requests: &[Vec<u8>], pipelined: bool) -> Vec<(u16, String)> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut r, mut w) = s.into_split();
    let mut raw = Vec::new();
    if pipelined {
        w.write_all(&requests.concat()).await.expect("write");
    } else {
        for (i, req) in requests.iter().enumerate() {
            w.write_all(req).await.expect("write");
            // Read this request's answer before the next request goes out.
            let want = i + 1;
            while answers(&raw).len() < want {
                let mut buf = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf))
                    .await
                    .expect("an answer within 10 s")
                    .expect("read");
                assert!(n > 0, "closed before answer {want}: {:?}", answers(&raw));
                raw.extend_from_slice(&buf[..n]);
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut raw)).await;
    answers(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_lengths_are_refused_anywhere_on_a_connection() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let refused = (400, "malformed_payload".to_string());
    let ok = (200, String::new());
    let mut accepted = Vec::new();
    let mut smuggled = Vec::new();

    for (pipelined, first, pair) in [
        (true, Framing::Length, Framing::LengthThenChunked),
        (true, Framing::Chunked, Framing::ChunkedThenLength),
        (false, Framing::Length, Framing::ChunkedThenLength),
        (false, Framing::Chunked, Framing::LengthThenChunked),
    ] {
        let (a, a_sig, a_id) = signed();
        let (b, b_sig, b_id) = signed();
        let got = exchange(
            daemon.port,
            &[request(&a, &a_sig, first), request(&b, &b_sig, pair)],
            pipelined,
        )
        .await;
        // hyper closes a connection after a request with both (RFC 9112), so nothing follows.
        assert_eq!(got, [ok.clone(), refused.clone()], "pipelined {pipelined}");
        accepted.push(a_id);
        smuggled.push(b_id);
    }
    // A pair first, then requests behind it: it is refused, and the connection ends with it.
    let (c, c_sig, c_id) = signed();
    let (d, d_sig, d_id) = signed();
    let got = exchange(
        daemon.port,
        &[
            request(&c, &c_sig, Framing::LengthThenChunked),
            request(&d, &d_sig, Framing::Length),
        ],
        true,
    )
    .await;
    assert_eq!(got.first(), Some(&refused), "{got:?}");
    smuggled.push(c_id);
    // hyper ends the connection after the pair; were the one behind it answered, it would be
    // an ordinary request like any other.
    match got.get(1..) {
        Some([]) => {}
        Some([one]) if *one == ok => accepted.push(d_id),
        _ => panic!("after the pair: {got:?}"),
    }
    // Three ordinary requests pipelined: all answered, in order.
    let mut three = Vec::new();
    for framing in [Framing::Length, Framing::Chunked, Framing::Length] {
        let (e, e_sig, e_id) = signed();
        three.push(request(&e, &e_sig, framing));
        accepted.push(e_id);
    }
    let got = exchange(daemon.port, &three, true).await;
    assert_eq!(got, [ok.clone(), ok.clone(), ok.clone()]);

    let msgs = consumer.take(accepted.len(), Duration::from_secs(10)).await;
    let mut published: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.body["data"]["dedup_key"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    consumer.expect_no_more(Duration::from_secs(1)).await;
    published.sort();
    accepted.sort();
    assert_eq!(
        published, accepted,
        "exactly the accepted events are published"
    );
    assert!(smuggled.iter().all(|s| !published.contains(s)));
}
