//! The HTTP layer against hostile clients (SPEC §2, §6.3, §6.8): thousands of idle and slow
//! connections cannot lock out a real webhook (`connections`), every request ends within
//! `request_timeout` (`deadlines`), each request on a kept-alive or pipelined connection is
//! judged on its own (`pipelining`), the replay window, and no request can write a long log line.

mod connections;
mod deadlines;
mod pipelining;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::harness::*;

/// The harness's `request_timeout`.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// What a request may take past its deadline before the test calls it a failure: the daemon's
/// timer resolution and a loaded two-core machine.
pub const MARGIN: Duration = Duration::from_millis(1500);

/// Thousands of sockets need more than the usual 1024 descriptors.
pub fn raise_open_file_limit(need: u64) {
    let got = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        got >= need,
        "this test needs {need} open files; the hard limit allows {got}"
    );
}

/// `name{labels} value` from a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub async fn metrics_page(daemon: &Daemon) -> String {
    send(&client(), "GET", &daemon.admin_url("/metrics"), &[], "")
        .await
        .body
}

/// The public listener's connection limit, as the daemon logged it at start.
pub fn public_limit(daemon: &Daemon) -> usize {
    let log = daemon.log();
    log.lines()
        .filter(|l| l.contains("connection limits"))
        .find_map(|l| {
            let rest = &l[l.find("public=")? + "public=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no connection limits in the log:\n{log}"))
}

/// Reads until the peer closes (or resets) the connection, or `within` passes; returns what
/// arrived and whether it was closed.
pub async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until they run out, a write fails, or `stop`.
pub fn trickle(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    bytes: Vec<u8>,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in bytes {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if w.write_all(&[b]).await.is_err() {
                return;
            }
        }
        // Keep the write half open: a FIN would end the request early.
        stop.cancelled().await;
    })
}

pub const SLOW_HEAD: &str =
    "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: ";

pub fn slow_body_head(len: usize) -> String {
    format!(
        "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pingplusplus-Signature: AAAA\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A Ping++ event signed now with this run's key, with `created` set `age` ago.
fn pingpp_created_ago(age: Duration) -> (String, String) {
    let mut v: serde_json::Value = serde_json::from_str(&sample_event()).unwrap();
    let created = time::OffsetDateTime::now_utc().unix_timestamp() - age.as_secs() as i64;
    v["created"] = created.into();
    let id = v["id"].as_str().unwrap().to_string();
    (v.to_string(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_older_than_max_event_age_are_refused() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.server = "max_event_age = \"1h\"".into();
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pingpp");

    let (old, _) = pingpp_created_ago(Duration::from_secs(2 * 3600));
    let r = post_pingpp(&http, &url, &old).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_signature");
    assert_eq!(r.json()["message"], "outside the replay window");

    let (fresh, fresh_id) = pingpp_created_ago(Duration::from_secs(30 * 60));
    let r = post_pingpp(&http, &url, &fresh).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let got = consumer.take(2, Duration::from_secs(10)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.body["data"]["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![fresh_id], "only the fresh event is published");
    let page = metrics_page(&daemon).await;
    assert_eq!(
        metric(
            &page,
            "payhook_requests_total{source=\"pingpp\",outcome=\"invalid_signature\"}"
        ),
        Some(1.0)
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_writes_a_long_log_line() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = r#"
[[source]]
name = "pdd"
provider = "pinddpay"
secret = "s3cret"
"#
    .into();
    let daemon = Daemon::start(opts);
    let http = client();
    let url = daemon.url("pingpp");
    let big_key = "k".repeat(60_000);

    // Bodies with huge keys: over the limit, signed (so they reach the parser), unsigned.
    let mib_key = format!("{{\"{}\":1}}", "k".repeat(1 << 20));
    // The daemon answers 413 from the Content-Length and closes: the client may still be
    // writing the body then (a broken pipe) rather than read the answer.
    let req = hyper::Request::post(&url)
        .header("content-type", "application/json")
        .header("x-pingplusplus-signature", "c2ln")
        .body(http_body_util::Full::new(bytes::Bytes::from(mib_key)))
        .unwrap();
    if let Ok(resp) = http.request(req).await {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let signed = format!("{{\"{big_key}\":1}}");
    let r = post_pingpp(&http, &url, &signed).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let pdd = format!("{{\"{big_key}\":1,\"eventId\":\"e1\",\"eventName\":\"order.paid\"}}");
    let sign = {
        use md5::{Digest, Md5};
        hex::encode_upper(Md5::digest(format!("{pdd}s3cret").as_bytes()))
    };
    let r = send(
        &http,
        "POST",
        &daemon.url("pdd"),
        &[("content-type", "application/json"), ("sign-token", &sign)],
        pdd,
    )
    .await;
    assert!(r.status < 500, "{} {}", r.status, r.body);
    // A long path, long header values, a huge header, bytes that are not UTF-8.
    let long_path = format!(
        "http://127.0.0.1:{}/hooks/{}",
        daemon.port,
        "p".repeat(12_000)
    );
    assert_eq!(send(&http, "POST", &long_path, &[], "{}").await.status, 404);
    let long_ct = format!("application/{}", "x".repeat(12_000));
    let r = send(&http, "POST", &url, &[("content-type", &long_ct)], "{}").await;
    assert_eq!(r.status, 415);
    assert!(r.body.len() < 1024, "{}", r.body.len());
    let long_xff = "1.2.3.4, ".repeat(600);
    let r = send(
        &http,
        "POST",
        &url,
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", &long_xff),
            ("x-pingplusplus-signature", &"A".repeat(6_000)),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 401);
    // Over the head limit (16 KiB) and a 1 MiB path: hyper refuses them before any handler.
    for raw in [
        format!(
            "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(1 << 20)
        )
        .into_bytes(),
        format!(
            "POST /hooks/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "p".repeat(1 << 20)
        )
        .into_bytes(),
        b"POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nX-Bad: \x01\x7f\r\nContent-Type: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            .to_vec(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).await.unwrap();
        let _ = s.write_all(&raw).await;
        let (out, closed) = read_to_close(&mut s, TIMEOUT + MARGIN).await;
        assert!(closed, "answered and closed: {out:?}");
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 4"), "{out:?}");
    }
    let r = send(&http, "GET", &daemon.admin_url("/healthz"), &[], "").await;
    assert_eq!(r.status, 200);

    // The log is written by a thread of its own: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = daemon.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 4096, "a log line of {longest} bytes");
    assert!(
        log.lines()
            .filter(|l| l.contains("webhook") || l.contains("unknown hook"))
            .count()
            >= 6,
        "the requests were logged:\n{log}"
    );
}
