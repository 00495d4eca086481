//! The relay under the faults of issue 7: fields too long for AMQP short strings, events the
//! broker returns or nacks, a store that cannot record confirms, a broker that stops answering,
//! an in-memory feed that overflows. Real broker nodes, the real daemon, counted by message id.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

use crate::harness::*;

const PD_SECRET: &str = "relay-test-secret";

fn pinddpay_source(name: &str) -> String {
    format!("\n[[source]]\nname = \"{name}\"\nprovider = \"pinddpay\"\nsecret = \"{PD_SECRET}\"\n")
}

fn pinddpay_body(id: &str, event_name: &str, pad: usize) -> String {
    json!({
        "eventId": id,
        "eventAt": time::OffsetDateTime::now_utc().unix_timestamp(),
        "eventName": event_name,
        "appId": "app_relay",
        "order": {"merchantOrderNo": format!("M-{id}"), "amount": "1.00", "currency": "USD",
                  "email": "x".repeat(pad)},
    })
    .to_string()
}

async fn post_pinddpay(http: &HttpClient, url: &str, body: &str) -> Reply {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(body.as_bytes());
    h.update(PD_SECRET.as_bytes());
    let token = hex::encode_upper(h.finalize());
    send(
        http,
        "POST",
        url,
        &[("content-type", "application/json"), ("sign-token", &token)],
        body.to_string(),
    )
    .await
}

/// The value of one sample line of /metrics (`name{labels}` as written), 0 when absent.
async fn metric(http: &HttpClient, daemon: &Daemon, series: &str) -> f64 {
    let text = send(http, "GET", &daemon.admin_url("/metrics"), &[], "")
        .await
        .body;
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A raw channel on `url` for topology the test sets up itself.
async fn channel(url: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// Takes messages from `queue` until `n` distinct ids came or `within` passed; returns the
/// message ids in arrival order (duplicates included).
async fn drain_ids(ch: &lapin::Channel, queue: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut distinct = HashSet::new();
    while distinct.len() < n && Instant::now() < deadline {
        match ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic_get")
        {
            Some(m) => {
                let d = m.delivery;
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                let v: Value = serde_json::from_slice(&d.data).expect("JSON message");
                let key = v["data"]["dedup_key"].as_str().unwrap_or("").to_string();
                distinct.insert(key.clone());
                out.push(key);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    out
}

fn duplicates(ids: &[String]) -> Vec<String> {
    let mut seen = HashMap::new();
    for id in ids {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_field_length_makes_an_event_unpublishable() {
    let broker = Broker::shared();
    let long_source = "s".repeat(64);
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source(&long_source);
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url(&long_source);

    let long_type = format!("order.{}", "é".repeat(300));
    for (id, ty) in [
        ("long-1", long_type.as_str()),
        ("long-2", &"x".repeat(20_000)),
        ("after", "order.paid"),
    ] {
        let r = post_pinddpay(&http, &url, &pinddpay_body(id, ty, 0)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = consumer.take(3, Duration::from_secs(20)).await;
    assert_eq!(
        got.len(),
        3,
        "every event is published, and the relay goes on after them; log:\n{}",
        daemon.log()
    );
    let m = &got[0];
    assert_eq!(m.body["data"]["dedup_key"], "long-1");
    assert_eq!(
        m.body["type"],
        format!("pinddpay.{long_type}"),
        "the body keeps the whole type"
    );
    assert_eq!(
        m.header("cloudEvents_type").as_deref(),
        Some(format!("pinddpay.{long_type}").as_str())
    );
    assert!(m.routing_key.len() <= 255, "{}", m.routing_key.len());
    assert!(m.routing_key.starts_with(&format!("{long_source}.order.")));
    let prop_type = m.properties.kind().as_ref().unwrap().as_str().to_string();
    assert!(prop_type.len() <= 255);
    // Cut at a character boundary, then `~` and 8 hex digits of the SHA-256 of the whole type.
    use sha2::{Digest, Sha256};
    let tag = hex::encode(&Sha256::digest(long_type.as_bytes())[..4]);
    assert!(
        m.routing_key.ends_with(&format!("~{tag}")),
        "{}",
        m.routing_key
    );
    assert!(prop_type.ends_with(&format!("~{tag}")), "{prop_type}");
    assert_eq!(got[2].body["data"]["dedup_key"], "after");
    assert_eq!(got[2].routing_key, format!("{long_source}.order.paid"));

    // A 65-character source name is a configuration error (exit 78), found before serving.
    let bad = daemon.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[[source]]\nname = \"{}\"\nprovider = \"pinddpay\"\nsecret = \"x\"\n",
            "s".repeat(65)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_event_waits_on_its_own_backoff_while_the_others_flow() {
    let broker = Broker::shared();
    let queue = unique("payhook.narrow");
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source("pd");
    // No queue of payhook's own: the test binds only `pd.order.paid`.
    opts.queue = Some(String::new());
    let daemon = Daemon::start(opts);
    let exchange = std::fs::read_to_string(&daemon.config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("exchange = \"")
                .map(|r| r.trim_end_matches('"').to_string())
        })
        .unwrap();
    let (_conn, ch) = channel(&broker.url()).await;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "pd.order.paid".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let http = client();
    let url = daemon.url("pd");
    let connects_before = daemon.log().matches("connected to the broker").count();

    let r = post_pinddpay(&http, &url, &pinddpay_body("stray", "order.refunded", 0)).await;
    assert_eq!(r.status, 200);
    let started = Instant::now();
    for i in 0..300 {
        let r = post_pinddpay(
            &http,
            &url,
            &pinddpay_body(&format!("paid-{i}"), "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let ids = drain_ids(&ch, &queue, 300, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        300,
        "the routable events flow past the returned one; log:\n{}",
        daemon.log()
    );
    println!("300 routable events after an unroutable one: {took:?}");
    assert_eq!(
        daemon.log().matches("connected to the broker").count(),
        connects_before,
        "a returned message does not tear the session down"
    );
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["failing_events"] == 1)
        .await;
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "")
        .await
        .json();
    assert_eq!(ready["failing_events"], 1, "{ready}");
    assert_eq!(
        metric(&http, &daemon, "payhook_publish_failing_events").await,
        1.0
    );
    assert!(
        metric(
            &http,
            &daemon,
            "payhook_publish_retries_total{reason=\"returned\"}"
        )
        .await
            >= 1.0
    );
    let stray_id = payhook::event::event_id("pd", "stray").to_string();
    let shown: Value =
        serde_json::from_slice(&daemon.run_cli(&["events", "show", &stray_id]).stdout)
            .expect("events show prints JSON");
    assert_eq!(shown["state"], "pending");
    assert!(shown["attempts"].as_i64().unwrap() >= 1, "{shown}");
    assert!(
        shown["last_error"].as_str().unwrap().contains("NO_ROUTE"),
        "{shown}"
    );
    let listed = String::from_utf8(
        daemon
            .run_cli(&["events", "list", "--state", "pending", "--json"])
            .stdout,
    )
    .unwrap();
    let row: Value = serde_json::from_str(listed.lines().next().expect("one pending row")).unwrap();
    assert_eq!(row["id"], stray_id.as_str());
    assert!(row["attempts"].as_i64().unwrap() >= 1);

    // Once it becomes routable, its own backoff brings it out; `replay` resets the backoff.
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "pd.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let replayed = Instant::now();
    let out = daemon.run_cli(&["replay", &stray_id]);
    assert!(out.status.success(), "{out:?}");
    let late = drain_ids(&ch, &queue, 1, Duration::from_secs(40)).await;
    assert_eq!(late, vec!["stray".to_string()], "log:\n{}", daemon.log());
    println!("replayed event out after {:?}", replayed.elapsed());
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| {
            j["failing_events"] == 0 && j["backlog"] == 0
        })
        .await;
    assert_eq!(
        metric(&http, &daemon, "payhook_publish_failing_events").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_events_are_retried_until_the_queue_takes_them() {
    let broker = Broker::shared();
    let queue = unique("payhook.small");
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source("pd");
    opts.queue = Some(String::new());
    let daemon = Daemon::start(opts);
    let exchange = std::fs::read_to_string(&daemon.config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("exchange = \"")
                .map(|r| r.trim_end_matches('"').to_string())
        })
        .unwrap();
    let (_conn, ch) = channel(&broker.url()).await;
    // A queue that holds 5 and refuses (nacks) publishes past that.
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(5));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let http = client();
    for i in 0..12 {
        let r = post_pinddpay(
            &http,
            &daemon.url("pd"),
            &pinddpay_body(&format!("n-{i}"), "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["failing_events"] == 7)
        .await;
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "")
        .await
        .json();
    assert_eq!(ready["failing_events"], 7, "5 fit, 7 were nacked: {ready}");
    assert!(
        metric(
            &http,
            &daemon,
            "payhook_publish_retries_total{reason=\"nack\"}"
        )
        .await
            >= 7.0
    );
    // Consuming makes room; each nacked event comes back on its own backoff.
    let ids = drain_ids(&ch, &queue, 12, Duration::from_secs(60)).await;
    let distinct: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(distinct.len(), 12, "log:\n{}", daemon.log());
    assert!(
        duplicates(&ids).is_empty(),
        "a nacked message is not enqueued: {ids:?}"
    );
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| {
            j["failing_events"] == 0 && j["backlog"] == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_record_confirms_never_causes_a_republish_flood() {
    let broker = Broker::start();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source("pd");
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    consumer.close().await;
    let http = client();
    broker.crash();
    let mut sent = HashSet::new();
    for i in 0..40 {
        let id = format!("mark-{i}");
        let r = post_pinddpay(
            &http,
            &daemon.url("pd"),
            &pinddpay_body(&id, "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200);
        sent.insert(id);
    }
    // Another process holds the write lock: every commit of the daemon fails (busy) until the
    // test lets go, however long the broker takes to come back (not a fixed time: on a busy
    // machine the restart alone can outlast it, and then the fault never happens).
    let db = daemon.dir.path().join("payhook.db");
    let (release, released) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let _ = released.recv_timeout(Duration::from_secs(180));
        conn.execute_batch("COMMIT").unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    daemon
        .wait_readyz(&http, Duration::from_secs(60), |j| {
            j["broker"] == "connected"
        })
        .await;
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    // While confirms cannot be recorded the relay publishes each event once, then waits.
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(22);
    while Instant::now() < deadline {
        for m in consumer.take(1000, Duration::from_millis(500)).await {
            ids.push(m.body["data"]["dedup_key"].as_str().unwrap().to_string());
        }
    }
    let during: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(
        during, sent,
        "every event went out while the store was locked"
    );
    assert!(
        duplicates(&ids).is_empty(),
        "no event is published twice because its mark failed: {} messages for {} events",
        ids.len(),
        sent.len()
    );
    let _ = release.send(());
    locker.join().unwrap();
    // The marks go in once the lock is gone; nothing more is sent.
    daemon
        .wait_readyz(&http, Duration::from_secs(30), |j| j["backlog"] == 0)
        .await;
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "")
        .await
        .json();
    assert_eq!(ready["backlog"], 0, "log:\n{}", daemon.log());
    consumer.expect_no_more(Duration::from_secs(3)).await;
    assert!(
        daemon.log().contains("store commit failed"),
        "the fault was real"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_neither_hangs_the_relay_nor_delays_sigterm() {
    let broker = Broker::start();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source("pd");
    let mut daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    for i in 0..10 {
        let id = format!("before-{i}");
        let r = post_pinddpay(
            &http,
            &daemon.url("pd"),
            &pinddpay_body(&id, "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let mut sent = HashSet::new();
    assert_eq!(consumer.take(10, Duration::from_secs(20)).await.len(), 10);
    consumer.close().await;

    broker.signal("STOP");
    for i in 0..20 {
        let id = format!("stopped-{i}");
        let r = post_pinddpay(
            &http,
            &daemon.url("pd"),
            &pinddpay_body(&id, "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200, "intake never waits for the broker");
        sent.insert(id);
    }
    // The publishes go unconfirmed: within confirm_timeout (5 s) the relay gives the session up
    // and says so; it keeps beating.
    daemon
        .wait_readyz(&http, Duration::from_secs(20), |j| {
            j["broker"] == "disconnected"
        })
        .await;
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "")
        .await
        .json();
    assert_eq!(ready["broker"], "disconnected", "log:\n{}", daemon.log());
    assert_eq!(ready["broker_node"], Value::Null);

    let started = Instant::now();
    let status = daemon.terminate();
    let took = started.elapsed();
    println!("SIGTERM with a stopped broker: exit {status:?} after {took:?}");
    assert!(status.success(), "exit 0; log:\n{}", daemon.log());
    assert!(
        took <= Duration::from_secs(10),
        "within confirm_timeout (5 s) + 5 s: {took:?}"
    );

    broker.signal("CONT");
    daemon.spawn();
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let missing = consumer.missing(&sent, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "acknowledged but never published: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_to_the_relay_and_an_overflow_is_read_back_in_order() {
    let broker = Broker::start();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = pinddpay_source("pd");
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pd");
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| {
            j["broker"] == "connected"
        })
        .await;
    let reads = metric(&http, &daemon, "payhook_relay_store_reads_total").await;
    assert!(reads >= 1.0, "the relay reads the store once at start");

    // Streaming: 200 events reach the broker without a single store read.
    for i in 0..200 {
        let r = post_pinddpay(
            &http,
            &url,
            &pinddpay_body(&format!("s-{i}"), "order.paid", 0),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(consumer.take(200, Duration::from_secs(30)).await.len(), 200);
    assert_eq!(
        metric(&http, &daemon, "payhook_relay_store_reads_total").await,
        reads,
        "committed events came to the relay in memory"
    );
    consumer.close().await;

    // An outage longer than the in-memory feed (8 MiB): 700 events of ~16 KiB.
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["backlog"] == 0)
        .await;
    broker.crash();
    let mut order = Vec::new();
    for i in 0..700 {
        let id = format!("o-{i:04}");
        let r = post_pinddpay(&http, &url, &pinddpay_body(&id, "order.paid", 16_000)).await;
        assert_eq!(r.status, 200);
        order.push(id);
    }
    broker.restart();
    daemon
        .wait_readyz(&http, Duration::from_secs(60), |j| {
            j["broker"] == "connected"
        })
        .await;
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while got.len() < order.len() && Instant::now() < deadline {
        // (The broker, killed, may deliver the acked `s-` messages again: not ours to count.)
        for m in consumer.take(700, Duration::from_secs(1)).await {
            let key = m.body["data"]["dedup_key"].as_str().unwrap().to_string();
            if key.starts_with("o-") {
                got.push(key);
            }
        }
    }
    assert_eq!(got, order, "every event, once, in receive order");
    assert!(
        metric(&http, &daemon, "payhook_relay_store_reads_total").await > reads,
        "the overflow was read back from the store"
    );
}
