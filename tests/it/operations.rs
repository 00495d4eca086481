//! Operating payhook: metrics and logs during traffic, the event CLI while the daemon runs,
//! retention, backpressure, SIGHUP, SIGTERM under load, and systemd notifications.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn event_id_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn cli_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.run_cli(args);
    assert!(
        out.status.success(),
        "payhook {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listed(daemon: &Daemon, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "list", "--json"];
    args.extend_from_slice(extra);
    cli_ok(daemon, &args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_logs_and_the_event_cli_while_running() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.top = "log_format = \"json\"".into();
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pingpp");

    let bodies: Vec<String> = (0..3).map(|_| sample_event()).collect();
    for b in &bodies {
        assert_eq!(post_pingpp(&http, &url, b).await.status, 200);
    }
    assert_eq!(post_pingpp(&http, &url, &bodies[0]).await.status, 200);
    let sig = payhook::testkit::pingpp_sign(&keys().signing, b"other");
    let r = send(
        &http,
        "POST",
        &url,
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", &sig),
        ],
        bodies[1].clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    let first = consumer.take(3, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 3);
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["backlog"] == 0)
        .await;

    // Metrics: every name of SPEC §7 that this traffic produces, with the right counts.
    let m = send(&http, "GET", &daemon.admin_url("/metrics"), &[], "")
        .await
        .body;
    for name in [
        "payhook_requests_total",
        "payhook_request_duration_seconds_bucket",
        "payhook_backlog_events",
        "payhook_backlog_oldest_age_seconds",
        "payhook_published_total",
        "payhook_amqp_connected",
        "payhook_store_commit_seconds_bucket",
        "payhook_store_batch_events_bucket",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
    for line in [
        "payhook_requests_total{source=\"pingpp\",outcome=\"accepted\"} 3",
        "payhook_requests_total{source=\"pingpp\",outcome=\"duplicate\"} 1",
        "payhook_requests_total{source=\"pingpp\",outcome=\"invalid_signature\"} 1",
        "payhook_published_total{source=\"pingpp\"} 3",
        "payhook_amqp_connected 1",
        "payhook_backlog_events 0",
    ] {
        assert!(
            m.lines().any(|l| l == line),
            "{line:?} not in /metrics:\n{m}"
        );
    }
    assert!(
        m.contains("# HELP payhook_requests_total"),
        "metrics are described"
    );

    // Logs: JSON, one line per request with the documented fields; no body, no signature.
    let log = daemon.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "webhook")
        .collect();
    assert_eq!(lines.len(), 5, "one line per request:\n{log}");
    for l in &lines {
        for field in [
            "source",
            "status",
            "outcome",
            "event_id",
            "dedup_key",
            "client_ip",
            "latency_ms",
        ] {
            assert!(!l[field].is_null(), "{field} missing in {l}");
        }
    }
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "duplicate").count(),
        1
    );
    assert_eq!(lines[0]["client_ip"], "127.0.0.1");
    assert!(
        !log.contains(&sig) && !log.contains("payhook simulate"),
        "no signature or body text in logs"
    );

    // events list / show / --raw.
    let rows = listed(&daemon, &[]);
    assert_eq!(rows.len(), 3, "duplicates are not stored twice");
    assert!(rows.iter().all(|r| r["state"] == "published"));
    let table = cli_ok(
        &daemon,
        &["events", "list", "--source", "pingpp", "--limit", "2"],
    );
    assert_eq!(table.lines().count(), 3, "header and two rows:\n{table}");
    let id = first[0].body["id"].as_str().unwrap().to_string();
    let raw = daemon.run_cli(&["events", "show", &id, "--raw"]).stdout;
    let sent = bodies
        .iter()
        .find(|b| event_id_of(b) == first[0].body["data"]["dedup_key"])
        .unwrap();
    assert_eq!(raw, sent.as_bytes(), "--raw prints the body byte for byte");
    let shown: Value = serde_json::from_str(&cli_ok(&daemon, &["events", "show", &id])).unwrap();
    assert_eq!(shown["cloudevent"], first[0].body);
    assert_eq!(
        daemon.run_cli(&["events", "show", "nope"]).status.code(),
        Some(1)
    );

    // replay: by id, then by source and time; the same message id goes out again.
    cli_ok(&daemon, &["replay", &id]);
    let again = consumer.take(1, Duration::from_secs(20)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0]
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
        Some(id.clone())
    );
    assert_eq!(
        again[0].body, first[0].body,
        "the same message, byte for byte as JSON"
    );
    cli_ok(&daemon, &["replay", "--source", "pingpp", "--since", "1h"]);
    let all = consumer.take(3, Duration::from_secs(20)).await;
    let ids: HashSet<_> = all.iter().map(|m| m.body["id"].to_string()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        daemon.run_cli(&["replay"]).status.code(),
        Some(2),
        "replay needs ids or a range"
    );

    // purge: published events go; the daemon keeps running.
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["backlog"] == 0)
        .await;
    let out = cli_ok(&daemon, &["purge", "--older-than", "0s"]);
    assert!(out.contains("purged 3"), "{out}");
    assert!(listed(&daemon, &[]).is_empty());
    assert_eq!(post_pingpp(&http, &url, &sample_event()).await.status, 200);
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_published_events_by_itself() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.store = "retention = \"2s\"".into();
    let daemon = Daemon::start(opts);
    let http = client();
    assert_eq!(
        post_pingpp(&http, &daemon.url("pingpp"), &sample_event())
            .await
            .status,
        200
    );
    assert_eq!(listed(&daemon, &[]).len(), 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listed(&daemon, &[]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "not purged after 15 s:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_backlog_intake_answers_503_and_comes_back_by_itself() {
    let broker = Broker::start();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.store = "max_backlog = 5".into();
    let daemon = Daemon::start(opts);
    let http = client();
    let url = daemon.url("pingpp");
    broker.crash();
    for _ in 0..5 {
        assert_eq!(post_pingpp(&http, &url, &sample_event()).await.status, 200);
    }
    let r = post_pingpp(&http, &url, &sample_event()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "unavailable");
    assert!(r.headers.contains_key("retry-after"));
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["backlog"], 5);
    let m = send(&http, "GET", &daemon.admin_url("/metrics"), &[], "")
        .await
        .body;
    assert!(
        m.contains("payhook_requests_total{source=\"pingpp\",outcome=\"unavailable\"} 1"),
        "{m}"
    );
    assert!(m.contains("payhook_publish_retries_total{reason="), "{m}");
    assert!(m.lines().any(|l| l == "payhook_amqp_connected 0"), "{m}");

    broker.restart();
    daemon
        .wait_readyz(&http, Duration::from_secs(60), |j| j["backlog"] == 0)
        .await;
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(post_pingpp(&http, &url, &sample_event()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_and_keeps_the_old_config_when_the_new_one_is_bad() {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let http = client();
    let url = daemon.url("pingpp");

    let new_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = new_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    std::fs::write(daemon.dir.path().join("next.pem"), pem).unwrap();
    let signer = SigningKey::<sha2::Sha256>::new(new_key);
    let post_new = || async {
        let body = sample_event();
        let sig = payhook::testkit::pingpp_sign(&signer, body.as_bytes());
        send(
            &http,
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("x-pingplusplus-signature", &sig),
            ],
            body,
        )
        .await
        .status
    };
    assert_eq!(post_new().await, 401, "the new key is not configured yet");

    let config = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        config.replace(
            "public_keys = [\"pingpp.pem\"]",
            "public_keys = [\"pingpp.pem\", \"next.pem\"]",
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while post_new().await != 200 {
        assert!(
            Instant::now() < deadline,
            "new key not active after SIGHUP:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post_pingpp(&http, &url, &sample_event()).await.status,
        200,
        "the old key still works"
    );

    std::fs::write(&daemon.config, "this is = not [valid toml").unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post_new().await,
        200,
        "a broken config leaves the running one in place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_requests_and_exits_zero() {
    let broker = Broker::shared();
    let mut daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let mut rx = load(&daemon.url("pingpp"), 8, 60);
    let mut acked = HashSet::new();
    let mut statuses = HashSet::new();
    let mut status = None;
    while let Some((id, s)) = rx.recv().await {
        statuses.insert(s);
        if s == 200 {
            acked.insert(id);
        }
        if acked.len() == 100 && status.is_none() {
            daemon.signal("TERM");
            status = Some(());
        }
    }
    let code = daemon.terminate();
    assert_eq!(code.code(), Some(0), "log:\n{}", daemon.log());
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "only 200 or 503 while draining: {statuses:?}"
    );
    assert!(daemon.log().contains("shutting down"));

    daemon.spawn();
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let missing = consumer.missing(&acked, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing",
        missing.len()
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_ready_watchdog_reloading_and_stopping() {
    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.env = vec![("NOTIFY_SOCKET".into(), path.display().to_string())];
    opts.watchdog_usec = Some(1_000_000);
    let mut daemon = Daemon::start(opts);

    let read_until = |want: &str, within: Duration| -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if got.iter().filter(|m| m.contains(want)).count() >= 1 {
                    break;
                }
            }
        }
        got
    };
    let got = read_until("READY=1", Duration::from_secs(10));
    assert!(got.iter().any(|m| m.contains("READY=1")), "{got:?}");
    // Pings at half the interval while the writer and the relay are alive.
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pings < 3 && Instant::now() < deadline {
        pings += read_until("WATCHDOG=1", Duration::from_secs(2))
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count();
    }
    assert!(pings >= 3, "watchdog pings: {pings}");
    daemon.signal("HUP");
    let got = read_until("RELOADING=1", Duration::from_secs(5));
    assert!(got.iter().any(|m| m.contains("RELOADING=1")), "{got:?}");
    daemon.signal("TERM");
    let got = read_until("STOPPING=1", Duration::from_secs(10));
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    assert_eq!(daemon.terminate().code(), Some(0));
}
