//! The HTTP layer against hostile connections (SPEC §2, §6.8): thousands of idle and slow
//! connections cannot lock out a real webhook, every request ends within `request_timeout`,
//! the replay window, and no request can write a long log line.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::harness::*;

/// The harness's `request_timeout`.
const TIMEOUT: Duration = Duration::from_secs(5);
/// What a request may take past its deadline before the test calls it a failure: the daemon's
/// timer resolution and a loaded two-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// Thousands of sockets need more than the usual 1024 descriptors.
fn raise_open_file_limit(need: u64) {
    let got = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        got >= need,
        "this test needs {need} open files; the hard limit allows {got}"
    );
}

/// `name{labels} value` from a Prometheus text page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn metrics_page(daemon: &Daemon) -> String {
    send(&client(), "GET", &daemon.admin_url("/metrics"), &[], "")
        .await
        .body
}

/// The public listener's connection limit, as the daemon logged it at start.
fn public_limit(daemon: &Daemon) -> usize {
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
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, bool) {
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
fn trickle(
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

const SLOW_HEAD: &str =
    "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: ";

fn slow_body_head(len: usize) -> String {
    format!(
        "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pingplusplus-Signature: AAAA\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_do_not_lock_out_new_clients() {
    const IDLE: usize = 6000;
    const SLOW: usize = 200;
    raise_open_file_limit((IDLE + SLOW + 512) as u64);
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let limit = public_limit(&daemon);
    assert!(
        limit < IDLE,
        "the flood must be larger than the limit ({limit})"
    );
    let port = daemon.port;
    let stop = CancellationToken::new();

    // Idle connections that never send a byte. Each reports how old it was when the daemon
    // closed it; one closed well before request_timeout can only have been closed for room.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let open_idle = Arc::new(AtomicUsize::new(0));
    let idle_conn = {
        let (stop, closed_tx, open_idle) = (stop.clone(), closed_tx.clone(), open_idle.clone());
        move || {
            let (stop, closed_tx, open_idle) = (stop.clone(), closed_tx.clone(), open_idle.clone());
            async move {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return false;
                };
                let opened = Instant::now();
                open_idle.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    tokio::select! {
                        _ = s.read(&mut b) => { let _ = closed_tx.send(opened.elapsed()); }
                        _ = stop.cancelled() => {}
                    }
                    open_idle.fetch_sub(1, Ordering::Relaxed);
                });
                true
            }
        }
    };
    let flood_started = Instant::now();
    let mut openers = Vec::new();
    for _ in 0..8 {
        let idle_conn = idle_conn.clone();
        openers.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..IDLE / 8 {
                ok += usize::from(idle_conn().await);
            }
            ok
        }));
    }
    let mut opened = 0;
    for o in openers {
        opened += o.await.unwrap();
    }
    let flood_took = flood_started.elapsed();
    assert_eq!(
        opened, IDLE,
        "every connect succeeded: accept never stopped"
    );

    // Slow requests: heads and bodies sent a byte every 100 ms, never complete.
    let mut slow_closed = Vec::new();
    for i in 0..SLOW {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let bytes = if i % 2 == 0 {
            format!("{SLOW_HEAD}{}", "a".repeat(200)).into_bytes()
        } else {
            w.write_all(slow_body_head(500).as_bytes()).await.unwrap();
            vec![b' '; 500]
        };
        trickle(w, bytes, Duration::from_millis(100), stop.clone());
        let started = Instant::now();
        slow_closed.push(tokio::spawn(async move {
            let mut b = [0u8; 1024];
            loop {
                match r.read(&mut b).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                }
            }
        }));
    }

    // Keep the listener full: every idle connection the daemon closes is replaced (at most
    // 2,000 a second) for as long as real webhooks are being sent.
    let refill = {
        let (stop, open_idle, idle_conn) = (stop.clone(), open_idle.clone(), idle_conn.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let deficit = IDLE.saturating_sub(open_idle.load(Ordering::Relaxed));
                for _ in 0..deficit.min(20) {
                    idle_conn().await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Real, correctly signed webhooks, each on a new connection, spread over twice the
    // request_timeout so they meet the idle connections both young and timing out.
    let mut sent = HashSet::new();
    let mut slowest = Duration::ZERO;
    let mut into_full_listener = 0;
    let webhooks_started = Instant::now();
    for _ in 0..20 {
        let page = metrics_page(&daemon).await;
        let open = metric(&page, "payhook_connections_open{listener=\"public\"}");
        into_full_listener += usize::from(open == Some(limit as f64));
        let body = sample_event();
        let id: serde_json::Value = serde_json::from_str(&body).unwrap();
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            post_pingpp(&client(), &daemon.url("pingpp"), &body),
        )
        .await
        .unwrap_or_else(|_| panic!("a webhook waited over 2 s (flood of {IDLE}, limit {limit})"));
        assert_eq!(r.status, 200, "{}", r.body);
        slowest = slowest.max(t.elapsed());
        sent.insert(id["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        into_full_listener >= 10,
        "only {into_full_listener} of 20 webhooks met a full listener"
    );
    let webhooks_took = webhooks_started.elapsed();

    let page = metrics_page(&daemon).await;
    let refused = metric(
        &page,
        "payhook_connections_refused_total{listener=\"public\"}",
    )
    .expect("refusals counted");
    let open = metric(&page, "payhook_connections_open{listener=\"public\"}").expect("open gauge");
    stop.cancel();
    let _ = refill.await;

    // Every connection the daemon closed before any deadline could apply was closed for room,
    // and each such closure is counted.
    let mut early = 0usize;
    let mut closed = 0usize;
    while let Ok(age) = closed_rx.try_recv() {
        closed += 1;
        if age + Duration::from_millis(500) < TIMEOUT {
            early += 1;
        }
    }
    assert!(
        early >= IDLE - limit,
        "at least {} idle connections closed for room, saw {early}",
        IDLE - limit
    );
    assert!(
        refused >= early as f64,
        "refused_total {refused} < {early} connections closed for room"
    );
    assert!(open <= limit as f64, "open {open} over the limit {limit}");

    // Every slow request ended within request_timeout of its first byte (or sooner, for room).
    for h in slow_closed {
        let age = tokio::time::timeout(TIMEOUT + MARGIN * 2, h)
            .await
            .expect("a slow connection outlived request_timeout")
            .unwrap();
        assert!(age <= TIMEOUT + MARGIN, "slow connection open {age:?}");
    }

    // The daemon is healthy, and every acknowledged webhook is published.
    let http = client();
    assert_eq!(
        send(&http, "GET", &daemon.admin_url("/healthz"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        post_pingpp(&http, &daemon.url("pingpp"), &sample_event())
            .await
            .status,
        200
    );
    let missing = consumer.missing(&sent, Duration::from_secs(30)).await;
    assert!(
        missing.is_empty(),
        "acknowledged but not published: {missing:?}"
    );
    println!(
        "flood of {IDLE} idle + {SLOW} slow connections (opened in {flood_took:?}), limit {limit}: \
         {closed} closed by the daemon, {early} for room, refused_total {refused}; 20 webhooks \
         over {webhooks_took:?} ({into_full_listener} into a full listener), slowest {slowest:?}"
    );
    consumer.close().await;
}

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
        let sig = payhook::cli::simulate::pingpp_sign(&keys().signing, body.as_bytes());
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
    let r = post_pingpp(&http, &url, &mib_key).await;
    assert_eq!(r.status, 413);
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
