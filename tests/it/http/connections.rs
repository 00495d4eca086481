//! Idle and slow connections far past the listener's limit, while real webhooks on new
//! connections still get their 200 within two seconds (SPEC §6.8).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::harness::*;

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
