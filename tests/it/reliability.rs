//! What money depends on: nothing acknowledged is lost when the broker goes away or the daemon
//! is killed.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_does_not_stop_intake_and_events_go_out_in_order_after() {
    // Its own broker: stopping it must not disturb the other tests.
    let broker = Broker::start();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let http = client();
    // Wait until the relay has declared the queue, then take the broker away.
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let warmup = sample_event();
    let r = post_pingpp(&http, &daemon.url("pingpp"), &warmup).await;
    assert_eq!(r.status, 200);
    assert_eq!(consumer.take(1, Duration::from_secs(20)).await.len(), 1);
    let warmup: Value = serde_json::from_str(&warmup).unwrap();
    consumer.close().await;
    // Let the relay record the warm-up's confirm, so the backlog below counts only the outage.
    daemon
        .wait_readyz(&http, Duration::from_secs(10), |j| j["backlog"] == 0)
        .await;
    broker.crash();

    let mut sent = Vec::new();
    for _ in 0..20 {
        let body = sample_event();
        let r = post_pingpp(&http, &daemon.url("pingpp"), &body).await;
        assert_eq!(
            r.status, 200,
            "intake continues while the broker is down: {}",
            r.body
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        sent.push(v["id"].as_str().unwrap().to_string());
    }
    let ready = send(&http, "GET", &daemon.admin_url("/readyz"), &[], "").await;
    assert_eq!(
        ready.status, 200,
        "a broker outage alone keeps the daemon ready: {}",
        ready.body
    );
    let j = ready.json();
    assert_eq!(j["broker"], "disconnected");
    assert_eq!(j["backlog"], 20, "log:\n{}", daemon.log());
    assert!(j["oldest_unpublished_age_seconds"].as_f64().is_some());

    broker.restart();
    // A killed node may forget a queue declared seconds before; the relay declares it again on
    // reconnect, so read only once the relay is back.
    daemon
        .wait_readyz(&http, Duration::from_secs(60), |j| {
            j["broker"] == "connected"
        })
        .await;
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    // The broker was killed, so it may redeliver the warm-up message whose ack it never wrote.
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 20 && std::time::Instant::now() < deadline {
        for m in consumer.take(20 - got.len(), Duration::from_secs(1)).await {
            let key = m.body["data"]["dedup_key"].as_str().unwrap().to_string();
            if key != warmup["id"] {
                got.push(key);
            }
        }
    }
    assert_eq!(
        got,
        sent,
        "all 20, in receive order; log:\n{}",
        daemon.log()
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_loses_no_acknowledged_event() {
    let broker = Broker::shared();
    let mut daemon = Daemon::start(DaemonOptions::new(&broker.url()));

    // 16 senders; the daemon is killed once 100 webhooks have been acknowledged.
    let mut rx = load(&daemon.url("pingpp"), 16, 40);
    let mut acked = HashSet::new();
    while let Some((id, status)) = rx.recv().await {
        if status == 200 {
            acked.insert(id);
        }
        if acked.len() == 100 {
            daemon.kill9();
        }
    }
    assert!(
        acked.len() >= 100,
        "only {} acknowledged before the kill",
        acked.len()
    );

    daemon.spawn();
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    // Unacknowledged requests may or may not have been stored; every acknowledged one must be
    // on the queue (at least once).
    let missing = consumer.missing(&acked, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {missing:?}",
        missing.len()
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_after_publishing() {
    let broker = Broker::shared();
    let mut daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let http = client();
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let r = post_pingpp(&http, &daemon.url("pingpp"), &sample_event()).await;
    assert_eq!(r.status, 200);
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    // Published before the stop, or still pending and published after the restart.
    daemon.spawn();
    assert_eq!(consumer.take(1, Duration::from_secs(20)).await.len(), 1);
    consumer.close().await;
}
