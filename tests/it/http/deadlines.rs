//! One deadline per request (SPEC §2): heads, bodies and commits that outlast `request_timeout`,
//! and idle keep-alive connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_ends_within_request_timeout() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let port = daemon.port;
    let stop = CancellationToken::new();

    // A body trickled past the deadline: 408 request_timeout, counted, connection closed.
    let body_case = async {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let first_byte = Instant::now();
        w.write_all(slow_body_head(1000).as_bytes()).await.unwrap();
        trickle(
            w,
            vec![b' '; 1000],
            Duration::from_millis(100),
            stop.clone(),
        );
        let mut out = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT + MARGIN * 2, r.read_to_end(&mut out)).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            first_byte.elapsed(),
        )
    };
    // A head trickled past the deadline: cut off (with a 408) within the same bound.
    let head_case = async {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut r, w) = s.into_split();
        let first_byte = Instant::now();
        trickle(
            w,
            format!("{SLOW_HEAD}{}", "a".repeat(1000)).into_bytes(),
            Duration::from_millis(10),
            stop.clone(),
        );
        let mut out = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT + MARGIN * 2, r.read_to_end(&mut out)).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            first_byte.elapsed(),
        )
    };
    // A keep-alive connection: one good request, a pause, then a second request trickled. The
    // second one's deadline runs from its own first byte, not from the connection's start.
    let keep_alive_case = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let body = sample_event();
        let sig = payhook::testkit::pingpp::sign(&keys().signing, body.as_bytes());
        let req = format!(
            "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pingplusplus-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (mut r, mut w) = s.into_split();
        let second_start = Instant::now();
        w.write_all(slow_body_head(1000).as_bytes()).await.unwrap();
        trickle(
            w,
            vec![b' '; 1000],
            Duration::from_millis(100),
            stop.clone(),
        );
        let mut out = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT + MARGIN * 2, r.read_to_end(&mut out)).await;
        (
            first,
            String::from_utf8_lossy(&out).into_owned(),
            second_start.elapsed(),
        )
    };
    // An idle keep-alive connection is closed after request_timeout.
    let idle_case = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let t = Instant::now();
        let (_, closed) = read_to_close(&mut s, TIMEOUT + MARGIN * 2).await;
        (closed, t.elapsed())
    };
    let (
        (body_out, body_took),
        (head_out, head_took),
        (first, second, second_took),
        (idle_closed, idle_took),
    ) = tokio::join!(body_case, head_case, keep_alive_case, idle_case);
    stop.cancel();

    assert!(body_out.starts_with("HTTP/1.1 408"), "{body_out:?}");
    assert!(
        body_out.contains("\"error\":\"request_timeout\""),
        "{body_out}"
    );
    assert!(
        body_took >= TIMEOUT - Duration::from_millis(200) && body_took <= TIMEOUT + MARGIN,
        "body: 408 after {body_took:?}"
    );
    assert!(
        head_took <= TIMEOUT + MARGIN,
        "head: cut off after {head_took:?}"
    );
    assert!(head_out.starts_with("HTTP/1.1 408"), "{head_out:?}");
    assert!(
        head_out.contains("\"error\":\"request_timeout\""),
        "{head_out}"
    );
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 408"), "{second:?}");
    assert!(
        second_took >= TIMEOUT - Duration::from_millis(200) && second_took <= TIMEOUT + MARGIN,
        "second request on a kept-alive connection: 408 after {second_took:?}"
    );
    assert!(idle_closed, "idle connection never closed");
    assert!(
        idle_took >= TIMEOUT - Duration::from_millis(200) && idle_took <= TIMEOUT + MARGIN,
        "idle connection closed after {idle_took:?}"
    );
    let page = metrics_page(&daemon).await;
    assert_eq!(
        metric(
            &page,
            "payhook_requests_total{source=\"pingpp\",outcome=\"request_timeout\"}"
        ),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        send(&client(), "GET", &daemon.admin_url("/healthz"), &[], "")
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_past_the_deadline_answers_503_and_the_retry_is_a_duplicate() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pingpp");

    // Another writer holds the database's write lock (as a stuck CLI command would): the
    // daemon's writer waits in SQLite's busy handler (10 s), longer than request_timeout.
    let db = rusqlite::Connection::open(daemon.dir.path().join("payhook.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let body = sample_event();
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = Instant::now();
    let r = post_pingpp(&http, &url, &body).await;
    let took = t.elapsed();
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "unavailable");
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        took >= TIMEOUT - Duration::from_millis(200) && took <= TIMEOUT + MARGIN,
        "503 after {took:?}"
    );

    // The event committed once the lock went: the provider's retry is acknowledged, and the
    // event is published once.
    let r = post_pingpp(&http, &url, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = consumer.take(2, Duration::from_secs(10)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.body["data"]["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![id]);
    let page = metrics_page(&daemon).await;
    assert_eq!(
        metric(
            &page,
            "payhook_requests_total{source=\"pingpp\",outcome=\"unavailable\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &page,
            "payhook_requests_total{source=\"pingpp\",outcome=\"duplicate\"}"
        ),
        Some(1.0),
        "the retry found the event committed after its 503"
    );
    consumer.close().await;
}
