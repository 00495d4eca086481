//! The documented status codes and JSON errors for everything that is not a good webhook, and
//! that none of it is published.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_the_documented_codes_and_publish_nothing() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pingpp");
    let body = sample_event();
    let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
    let json_ct = ("content-type", "application/json");

    // Unknown source and unknown paths.
    for path in ["/hooks/nope", "/hooks/", "/", "/hooks/pingpp/extra"] {
        let r = send(
            &http,
            "POST",
            &format!("http://127.0.0.1:{}{path}", daemon.port),
            &[json_ct],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found");
    }

    // Wrong method on a known hook.
    let r = send(&http, "GET", &url, &[], "").await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.headers.get("allow").map(|v| v.to_str().unwrap()),
        Some("POST")
    );
    assert_eq!(r.json()["error"], "method_not_allowed");

    // Too large by Content-Length (limit is 65536 in the test config)…
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000));
    let r = send(
        &http,
        "POST",
        &url,
        &[json_ct, ("x-pingplusplus-signature", &sig)],
        big.clone(),
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "payload_too_large");
    // …and while reading a chunked body that declares no length.
    let r = send_chunked(daemon.port, &big).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");

    // Content types Ping++ never sends; parameters are ignored.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = send(
            &http,
            "POST",
            &url,
            &[("content-type", ct), ("x-pingplusplus-signature", &sig)],
            body.clone(),
        )
        .await;
        assert_eq!(r.status, 415, "{ct}");
        assert_eq!(r.json()["error"], "unsupported_media_type");
    }
    let r = send(
        &http,
        "POST",
        &url,
        &[("x-pingplusplus-signature", &sig)],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 415, "no content type");

    // Malformed JSON (signed or not) and a signed event lacking its type.
    for bad in ["{not json", "", "[1,2", "{\"id\":\"evt_1\"}"] {
        let r = post_pingpp(&http, &url, bad).await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert_eq!(r.json()["error"], "malformed_payload");
    }

    // Missing, empty and wrong signatures.
    let r = send(&http, "POST", &url, &[json_ct], body.clone()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_signature");
    let r = send(
        &http,
        "POST",
        &url,
        &[json_ct, ("x-pingplusplus-signature", "")],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    let tampered = body.replacen("\"amount\":", "\"amount\":1", 1);
    let r = send(
        &http,
        "POST",
        &url,
        &[json_ct, ("x-pingplusplus-signature", &sig)],
        tampered,
    )
    .await;
    assert_eq!(r.status, 401);

    // No error body echoes a secret or the signature.
    assert!(
        !daemon.log().contains(&sig),
        "signatures never reach the log"
    );

    consumer.expect_no_more(Duration::from_secs(2)).await;

    // And the charset parameter is ignored for a good one.
    let r = send(
        &http,
        "POST",
        &url,
        &[
            ("content-type", "application/json; charset=UTF-8"),
            ("x-pingplusplus-signature", &sig),
        ],
        body.clone(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    assert_eq!(consumer.take(1, Duration::from_secs(20)).await.len(), 1);
    consumer.close().await;
}

/// Sends a chunked body by hand: hyper's client would add a Content-Length.
async fn send_chunked(port: u16, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = "POST /hooks/pingpp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(8192) {
        let frame = format!("{:x}\r\n", chunk.len());
        if s.write_all(frame.as_bytes()).await.is_err()
            || s.write_all(chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let http = client();
    let r = send(&http, "GET", &daemon.admin_url("/healthz"), &[], "").await;
    assert_eq!(r.status, 200);
    // The relay connects asynchronously; readiness does not depend on it.
    let r = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["store"], "writable");
    assert_eq!(j["backlog"], 0);
    let r = post_pingpp(&http, &daemon.url("pingpp"), &sample_event()).await;
    assert_eq!(r.status, 200);
    let r = send(&http, "GET", &daemon.admin_url("/metrics"), &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("payhook_requests_total{source=\"pingpp\",outcome=\"accepted\"} 1"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("payhook_store_commit_seconds"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_and_check_config_work_against_a_running_daemon() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;

    let out = daemon.run_cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/hooks/pingpp") && text.contains("guest:***@"),
        "{text}"
    );

    let key = daemon.dir.path().join("private.pem");
    std::fs::write(&key, &keys().private_pem).unwrap();
    let key = key.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let config = daemon.config.clone();
        move || {
            std::process::Command::new(BIN)
                .args([
                    "simulate",
                    "--source",
                    "pingpp",
                    "--count",
                    "30",
                    "--concurrency",
                    "4",
                ])
                .args([
                    "--duplicates",
                    "20",
                    "--rate",
                    "200/s",
                    "--private-key",
                    &key,
                    "--config",
                ])
                .arg(config)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sent:      30 of 30"), "{text}");
    assert!(text.contains("200=30"), "{text}");
    assert!(text.contains("p99="), "{text}");
    // Duplicates are acknowledged but published once: exactly the distinct events simulate
    // made, each once.
    let distinct: usize = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("distinct:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("simulate says how many events were distinct: {text}"));
    assert!((1..=30).contains(&distinct), "{text}");
    let msgs = consumer.take(distinct, Duration::from_secs(10)).await;
    consumer.expect_no_more(Duration::from_secs(1)).await;
    let ids: std::collections::HashSet<_> = msgs
        .iter()
        .map(|m| m.body["data"]["dedup_key"].to_string())
        .collect();
    assert_eq!(
        msgs.len(),
        distinct,
        "every distinct event published: {text}"
    );
    assert_eq!(ids.len(), distinct, "no event published twice");

    // A config error exits 78 and names the key.
    std::fs::write(
        daemon.dir.path().join("bad.toml"),
        "[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(daemon.dir.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    consumer.close().await;
}

#[test]
fn event_commands_need_no_secrets() {
    // A config whose AMQP URL is a credential that is not there: `events` still works, while
    // `check-config` reports the missing secret as a config error.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[amqp]\nurl = { credential = \"amqp-url\" }\n[store]\npath = \"p.db\"\n",
    )
    .unwrap();
    rusqlite::Connection::open(dir.path().join("p.db")).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap()
    };
    let out = run(&["events", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CREDENTIALS_DIRECTORY"));
}
