//! Ping++ end to end: the shared vectors, duplicates and concurrency, through a real broker.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn vector_sources() -> String {
    let v = shared_vectors().join("pingpp/valid/charge_succeeded");
    assert!(
        v.exists(),
        "the shared test vectors are missing: expected {} (a checkout of shared/ beside this repository)",
        v.display()
    );
    // Each invalid vector is checked against the key that ships with it.
    let mut invalid = String::new();
    for dir in invalid_vectors() {
        let name = dir.file_name().unwrap().to_str().unwrap();
        invalid.push_str(&format!(
            "\n[[source]]\nname = \"inv_{name}\"\nprovider = \"pingpp\"\npublic_keys = [\"{}\"]\n",
            dir.join("pub.pem").display()
        ));
    }
    invalid
        + &format!(
            r#"
[[source]]
name = "vector"
provider = "pingpp"
public_keys = ["{}"]

[[source]]
name = "vector_bom"
provider = "pingpp"
public_keys = ["{}"]
"#,
            v.join("pub.pem").display(),
            v.join("pub_csharp_bom_crlf.pem").display()
        )
}

fn invalid_vectors() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(shared_vectors().join("pingpp/invalid"))
        .expect("shared/vectors/pingpp/invalid")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_vectors_valid_is_published_with_the_documented_fields() {
    let broker = Broker::shared();
    let mut opts = DaemonOptions::new(&broker.url());
    opts.extra_sources = vector_sources();
    let daemon = Daemon::start(opts);
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();

    let dir = shared_vectors().join("pingpp/valid/charge_succeeded");
    let body = read(&dir.join("body.json"));
    let sig = String::from_utf8(read(&dir.join("signature.b64"))).unwrap();
    let sig = sig.trim();
    let r = send(
        &http,
        "POST",
        &daemon.url("vector"),
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", sig),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "success"),
        "log:\n{}",
        daemon.log()
    );

    let msgs = consumer.take(1, Duration::from_secs(20)).await;
    assert_eq!(
        msgs.len(),
        1,
        "one message expected; log:\n{}",
        daemon.log()
    );
    let m = &msgs[0];
    let id = "d29e4191-2db4-57a0-ba3a-10d467bf51cd"; // uuid5(URL, "payhook:vector:evt_eYa58Wd44Glerl8AgfYfd1sL")
    assert_eq!(m.routing_key, "vector.charge.succeeded");
    let p = &m.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/cloudevents+json")
    );
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some(id));
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some("pingpp.charge.succeeded")
    );
    assert_eq!(*p.timestamp(), Some(1434368075));
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("payhook"));
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(m.header("cloudEvents_specversion").as_deref(), Some("1.0"));
    assert_eq!(m.header("cloudEvents_id").as_deref(), Some(id));
    assert_eq!(
        m.header("cloudEvents_source").as_deref(),
        Some("payhook/vector")
    );
    assert_eq!(
        m.header("cloudEvents_type").as_deref(),
        Some("pingpp.charge.succeeded")
    );
    assert_eq!(
        m.header("cloudEvents_time").as_deref(),
        Some("2015-06-15T11:34:35Z")
    );
    assert_eq!(
        m.header("cloudEvents_subject").as_deref(),
        Some("2015d019f7cf6c0d")
    );

    let ce = &m.body;
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], id);
    assert_eq!(ce["source"], "payhook/vector");
    assert_eq!(ce["type"], "pingpp.charge.succeeded");
    assert_eq!(ce["subject"], "2015d019f7cf6c0d");
    assert_eq!(ce["time"], "2015-06-15T11:34:35Z");
    assert_eq!(ce["datacontenttype"], "application/json");
    let d = &ce["data"];
    let expect = json!({
        "provider": "pingpp",
        "source": "vector",
        "event_type": "charge.succeeded",
        "provider_event_id": "evt_eYa58Wd44Glerl8AgfYfd1sL",
        "dedup_key": "evt_eYa58Wd44Glerl8AgfYfd1sL",
        "category": "payment",
        "outcome": "succeeded",
        "order_no": "2015d019f7cf6c0d",
        "transaction_id": "ch_bq9IHKnn6GnLzsS0swOujr4x",
        "amount": "1.00",
        "amount_minor": 100,
        "currency": "CNY",
        "livemode": true,
        "occurred_at": "2015-06-15T11:34:35Z",
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&d[k], v, "data.{k}");
    }
    let received = d["received_at"].as_str().expect("received_at");
    assert!(
        received.ends_with('Z') && received.len() == 24,
        "{received}"
    );
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(d["payload"], payload);

    // The same key with a BOM and CRLF line ends loads and verifies too.
    let r = send(
        &http,
        "POST",
        &daemon.url("vector_bom"),
        &[
            ("content-type", "application/json"),
            ("x-pingplusplus-signature", sig),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200);
    let msgs = consumer.take(1, Duration::from_secs(20)).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body["source"], "payhook/vector_bom");

    // Every invalid vector: 401, and nothing reaches the queue.
    let mut seen = 0;
    for dir in invalid_vectors() {
        let body = read(&dir.join("body.json"));
        let sig = String::from_utf8(read(&dir.join("signature.b64"))).unwrap();
        let own = format!("inv_{}", dir.file_name().unwrap().to_str().unwrap());
        for source in [own.as_str()] {
            let r = send(
                &http,
                "POST",
                &daemon.url(source),
                &[
                    ("content-type", "application/json"),
                    ("x-pingplusplus-signature", sig.trim()),
                ],
                body.clone(),
            )
            .await;
            assert_eq!(
                r.status,
                401,
                "{} must be refused: {}",
                dir.display(),
                r.body
            );
            assert_eq!(r.json()["error"], "invalid_signature");
        }
        seen += 1;
    }
    assert!(seen >= 5, "expected the five invalid vectors, found {seen}");
    consumer.expect_no_more(Duration::from_secs(2)).await;
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_is_published_once() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let body = sample_event();
    for _ in 0..2 {
        let r = post_pingpp(&http, &daemon.url("pingpp"), &body).await;
        assert_eq!((r.status, r.body.as_str()), (200, "success"));
    }
    let msgs = consumer.take(2, Duration::from_secs(5)).await;
    assert_eq!(msgs.len(), 1, "a duplicate must not be published again");
    let evt: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msgs[0].body["data"]["dedup_key"], evt["id"]);
    assert!(
        daemon.log().contains("outcome=\"duplicate\""),
        "duplicate is logged"
    );
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_webhooks_give_two_hundred_messages() {
    let broker = Broker::shared();
    let daemon = Daemon::start(DaemonOptions::new(&broker.url()));
    let consumer = Consumer::connect(&broker.url(), &daemon.queue).await;
    let http = client();
    let url = daemon.url("pingpp");
    let mut tasks = Vec::new();
    let mut expected = HashSet::new();
    for _ in 0..200 {
        let body = sample_event();
        let evt: Value = serde_json::from_str(&body).unwrap();
        expected.insert(
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("payhook:pingpp:{}", evt["id"].as_str().unwrap()).as_bytes(),
            )
            .to_string(),
        );
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            post_pingpp(&http, &url, &body).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let msgs = consumer.take(200, Duration::from_secs(60)).await;
    let ids: HashSet<String> = msgs
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs.len(), 200, "log:\n{}", daemon.log());
    assert_eq!(
        ids, expected,
        "200 distinct ids, each the UUIDv5 of its event"
    );
    consumer.expect_no_more(Duration::from_secs(1)).await;
    consumer.close().await;
}
