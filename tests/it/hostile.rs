//! The hostile catalogue (issue 8): bad requests of every kind against the real daemon, each with
//! its documented status and JSON error code (docs/SECURITY.md, "What bad input gets"). Then:
//! nothing was published and nothing stored, no log line is over 4 KiB, `/healthz` answers, and
//! a good webhook per provider still gets 200 and is published (so a dead daemon cannot pass).
//!
//! Every request goes over a raw TCP socket, byte for byte as written here: hyper's client would
//! refuse or repair most of them. A case is one line of [`Case`] in `hostile/{pingpp, pinddpay,
//! pingpong, wechat, http}.rs`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

mod http;
mod pinddpay;
mod pingpong;
mod pingpp;
mod signed;
mod wechat;

// The documented answers (docs/SECURITY.md, "What bad input gets").
pub const BAD: u16 = 400;
pub const MALFORMED: &str = "malformed_payload";
pub const FORGED: u16 = 401;
pub const INVALID_SIGNATURE: &str = "invalid_signature";
pub const TOO_LARGE: u16 = 413;
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
pub const HEADERS_TOO_LARGE: u16 = 431;
pub const MEDIA: u16 = 415;
pub const UNSUPPORTED: &str = "unsupported_media_type";
pub const TIMEOUT: u16 = 408;
pub const REQUEST_TIMEOUT: &str = "request_timeout";
pub const MIB: usize = 1024 * 1024;
/// A refusal the HTTP parser writes itself, before any handler, with an empty body instead of
/// the JSON error (README, "Status codes"): only the status is checked.
pub const BY_PARSER: &str = "";

/// The body limit and deadline of the catalogue's daemon: room for 1 MiB keys, and a short
/// deadline so the cases that must time out finish soon.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
pub const DEADLINE: Duration = Duration::from_secs(3);

/// How the request's bytes go out.
#[derive(Clone, Copy)]
pub enum Pace {
    /// All at once. The connection stays open afterwards (an incomplete request stays incomplete).
    Whole,
    /// One byte, then this pause, and so on.
    ByteEvery(Duration),
    /// The head at once, then the body one byte per this pause.
    BodyByteEvery(Duration),
}

pub struct Case {
    pub name: &'static str,
    pub request: Vec<u8>,
    pub pace: Pace,
    pub status: u16,
    /// The `error` of the JSON body (SPEC §2: every non-2xx body is JSON). Empty: the status
    /// alone is checked (for answers the HTTP library writes itself, should the contract ever
    /// allow them without a JSON body).
    pub code: &'static str,
}

pub fn case(name: &'static str, status: u16, code: &'static str, request: Vec<u8>) -> Case {
    Case {
        name,
        request,
        pace: Pace::Whole,
        status,
        code,
    }
}

pub fn paced(
    name: &'static str,
    status: u16,
    code: &'static str,
    pace: Pace,
    request: Vec<u8>,
) -> Case {
    Case {
        name,
        request,
        pace,
        status,
        code,
    }
}

/// A POST as a provider would send it, with a Content-Length, plus these header lines.
pub fn post(path: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: payhook.test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A request written out in full: the head lines as given (CRLF added), then the body.
pub fn raw(lines: &[&str], body: impl AsRef<[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_ref());
    out
}

/// Webhooks signed correctly but with a signed event time past `max_event_age`: replays from
/// beyond the dedup window (SPEC §6.3), 401 for every provider that signs a time.
fn replays() -> Vec<Case> {
    use signed::*;
    let old = too_old();
    let mut ev: serde_json::Value = serde_json::from_str(&pingpp_event()).expect("sample is JSON");
    ev["created"] = old.into();
    let mut pdd: serde_json::Value = serde_json::from_str(&pdd_event()).expect("sample is JSON");
    pdd["eventAt"] = time::OffsetDateTime::from_unix_timestamp(old)
        .expect("a time")
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .expect("formats")
        .into();
    let biz = pp_biz_at("RECHARGE", old);
    let (alarm, _) = wx_alarm_at(WX_APP, WX_KEY, "1001", old);
    vec![
        case(
            "pingpp created 3 days ago, window 2 days",
            FORGED,
            INVALID_SIGNATURE,
            pingpp_signed(ev.to_string()),
        ),
        case(
            "pinddpay eventAt 3 days ago, window 2 days",
            FORGED,
            INVALID_SIGNATURE,
            pdd_signed(pdd.to_string()),
        ),
        case(
            "pingpong transactionTime 3 days ago, window 2 days",
            FORGED,
            INVALID_SIGNATURE,
            post(PINGPONG, &[JSON], pp_json(&v4_fields(&biz, &[]))),
        ),
        case(
            "wechat TimeStamp 3 days ago, window 2 days",
            FORGED,
            INVALID_SIGNATURE,
            wx_post(&alarm),
        ),
    ]
}

/// What came back on the socket.
#[derive(Debug)]
struct Answer {
    /// 0 when the connection closed (or the wait ended) without a status line.
    status: u16,
    body: String,
    elapsed: Duration,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one case and reads the first response. Writing and reading run side by side, so a
/// response sent before the server reads the whole body (413) is read before any reset.
async fn exchange(port: u16, request: Vec<u8>, pace: Pace) -> Answer {
    let started = Instant::now();
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Answer {
            status: 0,
            body: "connect failed".into(),
            elapsed: started.elapsed(),
        };
    };
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        match pace {
            Pace::Whole => {
                let _ = wr.write_all(&request).await;
            }
            Pace::ByteEvery(d) => {
                for b in &request {
                    if wr.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(d).await;
                }
            }
            Pace::BodyByteEvery(d) => {
                let split = find(&request, b"\r\n\r\n").map_or(0, |i| i + 4);
                if wr.write_all(&request[..split]).await.is_ok() {
                    for b in &request[split..] {
                        if wr.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(d).await;
                    }
                }
            }
        }
        // Keep the write half open (no FIN): an incomplete request must be ended by the server.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(wr);
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = started + Duration::from_secs(20);
    let answer = loop {
        if let Some(head_end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            let body_start = head_end + 4;
            if len.is_none_or(|n| buf.len() >= body_start + n) {
                let end = len.map_or(buf.len(), |n| body_start + n);
                break Answer {
                    status,
                    body: String::from_utf8_lossy(&buf[body_start..end]).into_owned(),
                    elapsed: started.elapsed(),
                };
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // Closed, reset or out of time: whatever arrived is the answer.
            _ => {
                let status = if buf.starts_with(b"HTTP/1.") {
                    String::from_utf8_lossy(&buf)
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                break Answer {
                    status,
                    body: String::from_utf8_lossy(&buf).into_owned(),
                    elapsed: started.elapsed(),
                };
            }
        }
    };
    writer.abort();
    answer
}

/// The catalogue's daemon: all four providers, a 2 MiB body limit, a 3 s request deadline and a
/// replay window of two days.
fn start_daemon(broker: &Broker) -> Daemon {
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = signed::sources();
    opts.server = format!("max_event_age = \"{}\"", signed::MAX_EVENT_AGE);
    let mut daemon = Daemon::start(opts);
    let text = std::fs::read_to_string(&daemon.config).expect("read config");
    let tuned = text
        .replacen(
            "max_body_bytes = 65536",
            &format!("max_body_bytes = {MAX_BODY}"),
            1,
        )
        .replacen(
            "request_timeout = \"5s\"",
            &format!("request_timeout = \"{}s\"", DEADLINE.as_secs()),
            1,
        );
    assert!(
        tuned.contains(&format!("max_body_bytes = {MAX_BODY}"))
            && tuned.contains(&format!("request_timeout = \"{}s\"", DEADLINE.as_secs())),
        "the harness config changed: set max_body_bytes and request_timeout another way"
    );
    std::fs::write(&daemon.config, tuned).expect("write config");
    daemon.kill9();
    daemon.spawn();
    daemon
}

/// Takes every message on `queue` until none has come for `quiet`: (routing key, body bytes).
async fn drain_raw(url: &str, queue: &str, quiet: Duration) -> Vec<(String, Vec<u8>)> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("test consumer connects");
    let channel = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
        {
            Ok(Some(m)) => {
                let d = m.delivery;
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                out.push((d.routing_key.to_string(), d.data.clone()));
                last = Instant::now();
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("basic_get failed: {e}"),
        }
    }
    let _ = conn.close(200, "bye".into()).await;
    out
}

fn events_listed(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.run_cli(&["events", "list", "--json"]);
    assert!(
        out.status.success(),
        "payhook events list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The log line limit of the catalogue: a request must never write a large line (SPEC §2).
const MAX_LOG_LINE: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_documented_status_and_publish_nothing() {
    let broker = Broker::shared();
    let daemon = start_daemon(broker);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;

    let mut cases = pingpp::cases();
    cases.extend(pinddpay::cases());
    cases.extend(pingpong::cases());
    cases.extend(wechat::cases());
    cases.extend(http::cases());
    cases.extend(replays());
    let names: HashSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    assert!(cases.len() >= 60, "{} cases", cases.len());

    // All at once: the slow cases overlap, and many open connections are part of the test.
    let port = daemon.port;
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let (request, pace) = (c.request.clone(), c.pace);
        set.spawn(async move { (i, exchange(port, request, pace).await) });
    }
    let mut answers: Vec<Option<Answer>> = (0..cases.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, a) = joined.expect("case task");
        answers[i] = Some(a);
    }

    let mut failures = Vec::new();
    let mut table = String::from("\nhostile catalogue:\n");
    for (c, a) in cases.iter().zip(&answers) {
        let a = a.as_ref().expect("every case answered");
        let code = serde_json::from_str::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        let ok = a.status == c.status && (c.code.is_empty() || code.as_deref() == Some(c.code));
        let got = format!(
            "{} {} ({:.1} s)",
            a.status,
            code.as_deref().unwrap_or("<no JSON error>"),
            a.elapsed.as_secs_f64()
        );
        let message: String = serde_json::from_str::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(|m| m.chars().take(60).collect()))
            .unwrap_or_default();
        table.push_str(&format!(
            "  {} {:<44} want {} {:<24} got {} {message:?}\n",
            if ok { "ok  " } else { "FAIL" },
            c.name,
            c.status,
            c.code,
            got
        ));
        if !ok {
            let body: String = a.body.chars().take(160).collect();
            failures.push(format!(
                "{}: want {} {}, got {got}: {body:?}",
                c.name, c.status, c.code
            ));
        }
    }
    println!("{table}");

    // Nothing published, nothing stored. Read as raw bytes: a message a JSON parser refuses is
    // itself a finding, not a reason to stop.
    for (routing_key, body) in drain_raw(&broker.url(), &daemon.queue, Duration::from_secs(3)).await
    {
        let key = serde_json::from_slice::<serde_json::Value>(&body)
            .map(|v| v["data"]["dedup_key"].to_string())
            .unwrap_or_else(|e| format!("<a message JSON parsers refuse: {e}>"));
        failures.push(format!("published: {routing_key} {key}"));
    }
    for row in events_listed(&daemon) {
        failures.push(format!("stored: {row}"));
    }

    // The daemon is alive and still takes good webhooks.
    let http = client();
    let r = send(&http, "GET", &daemon.admin_url("/healthz"), &[], "").await;
    if r.status != 200 {
        failures.push(format!("/healthz answered {}", r.status));
    }
    let mut want = HashSet::new();
    for good in signed::signed_webhooks() {
        let a = exchange(port, good.request(), Pace::Whole).await;
        if a.status != 200 {
            failures.push(format!(
                "a good {} webhook got {}: {}",
                good.source, a.status, a.body
            ));
        }
        want.insert(good.dedup_key);
    }
    let missing = consumer.missing(&want, Duration::from_secs(20)).await;
    if !missing.is_empty() {
        failures.push(format!("good webhooks not published: {missing:?}"));
    }
    let stored = events_listed(&daemon).len();
    if stored != want.len() {
        failures.push(format!(
            "{stored} events stored, want the {} good ones",
            want.len()
        ));
    }

    // No request wrote a large log line.
    for (i, line) in daemon.log().lines().enumerate() {
        if line.len() > MAX_LOG_LINE {
            let start: String = line.chars().take(200).collect();
            failures.push(format!(
                "log line {} is {} bytes: {start:?}…",
                i + 1,
                line.len()
            ));
        }
    }
    consumer.close().await;
    assert!(
        failures.is_empty(),
        "{} of {} cases or checks failed:\n{}{table}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
