//! Steady signed load through the balancer, a continuous consumer on the quorum queue that
//! stamps every delivery, and the figures the cluster tests report: counted by message id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness::{HttpClient, client, keys, sample_event};

/// The message id payhook gives a Ping++ webhook of source `pingpp` (SPEC §5: UUIDv5 in the URL
/// namespace of `payhook:{source}:{dedup_key}`; the dedup key is the Ping++ event id). Computed
/// here from the spec, not with payhook's own function.
pub fn message_id(event_id: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("payhook:pingpp:{event_id}").as_bytes(),
    )
    .to_string()
}

/// What the load saw, by message id.
#[derive(Default)]
pub struct LoadStats {
    /// Message ids of the webhooks answered 200.
    pub acked: HashSet<String>,
    /// Every other outcome: "HTTP 502", "error: …", "timeout", with its count.
    pub failures: BTreeMap<String, u64>,
    /// When each failure happened, seconds after the load started.
    pub failure_times: Vec<f64>,
    pub sent: u64,
}

impl LoadStats {
    pub fn non_200(&self) -> u64 {
        self.failures.values().sum()
    }

    /// The failures and when they came, for an assertion message.
    pub fn describe_failures(&self) -> String {
        let times: Vec<String> = self
            .failure_times
            .iter()
            .take(20)
            .map(|t| format!("+{t:.1}s"))
            .collect();
        format!("{:?} at {}", self.failures, times.join(" "))
    }
}

/// Signed Ping++ webhooks with fresh ids, posted at a steady rate until stopped.
pub struct Load {
    pub started: Instant,
    stop: CancellationToken,
    acked_now: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<LoadStats>,
}

impl Load {
    /// `rate` requests per second, at most `concurrency` in flight (a stalled target lowers the
    /// rate rather than piling up requests).
    pub fn start(url: String, rate: f64, concurrency: usize) -> Load {
        let stop = CancellationToken::new();
        let acked_now = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let task = tokio::spawn(run_load(
            url,
            rate,
            concurrency,
            stop.clone(),
            acked_now.clone(),
            started,
        ));
        Load {
            started,
            stop,
            acked_now,
            task,
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked_now.load(Ordering::Relaxed)
    }

    /// Stops sending, waits for the requests in flight and returns the stats and the end time.
    pub async fn stop(self) -> (LoadStats, Instant) {
        self.stop.cancel();
        let ended = Instant::now();
        let stats = self.task.await.expect("load task");
        (stats, ended)
    }
}

async fn run_load(
    url: String,
    rate: f64,
    concurrency: usize,
    stop: CancellationToken,
    acked_now: Arc<AtomicU64>,
    started: Instant,
) -> LoadStats {
    let http = client();
    let stats = Arc::new(Mutex::new(LoadStats::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore"),
        };
        let (http, url, stats) = (http.clone(), url.clone(), stats.clone());
        let acked_now = acked_now.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let (id, outcome) = post_one(&http, &url).await;
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            s.sent += 1;
            match outcome {
                Ok(()) => {
                    s.acked.insert(message_id(&id));
                    acked_now.fetch_add(1, Ordering::Relaxed);
                }
                Err(what) => {
                    *s.failures.entry(what).or_default() += 1;
                    s.failure_times.push(started.elapsed().as_secs_f64());
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(stats)
        .ok()
        .expect("every request task is done")
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
}

/// Posts one fresh signed event; Ok on 200, else what happened.
async fn post_one(http: &HttpClient, url: &str) -> (String, Result<(), String>) {
    let body = sample_event();
    let v: serde_json::Value = serde_json::from_str(&body).expect("sample is JSON");
    let id = v["id"].as_str().expect("sample has an id").to_string();
    let sig = payhook::testkit::pingpp_sign(&keys().signing, body.as_bytes());
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("x-pingplusplus-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let outcome = match tokio::time::timeout(Duration::from_secs(20), http.request(req)).await {
        Err(_) => Err("timeout (20 s)".to_string()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Ok(Ok(resp)) if resp.status() == 200 => {
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            Ok(())
        }
        Ok(Ok(resp)) => Err(format!("HTTP {}", resp.status().as_u16())),
    };
    (id, outcome)
}

/// One delivery seen by the watcher.
#[derive(Clone)]
pub struct Arrival {
    pub message_id: String,
    /// Set by the broker on a message it delivers again (to this consumer after a reconnect),
    /// as opposed to a message payhook published twice.
    pub redelivered: bool,
    pub at: Instant,
}

/// A consumer that stays on the queue through node losses: it consumes from the first node of
/// `urls` that answers, acks each delivery, and reconnects (next node) when its connection or
/// consumer ends. Every delivery is stamped on arrival.
pub struct QueueWatch {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl QueueWatch {
    pub fn start(urls: Vec<String>, queue: String) -> QueueWatch {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch(urls, queue, arrivals.clone(), stop.clone()));
        QueueWatch {
            arrivals,
            stop,
            task,
        }
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn arrived_ids(&self) -> HashSet<String> {
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| a.message_id.clone())
            .collect()
    }

    /// Waits until every id of `want` has arrived or `within` passes; returns the missing ones.
    pub async fn wait_for(&self, want: &HashSet<String>, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.arrived_ids();
            let missing: Vec<String> = want.difference(&seen).cloned().collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn watch(
    urls: Vec<String>,
    queue: String,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stop: CancellationToken,
) {
    let mut i = 0;
    while !stop.is_cancelled() {
        let url = &urls[i % urls.len()];
        i += 1;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = consume(url, &queue, &arrivals) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

/// Consumes until the connection or the consumer ends.
async fn consume(url: &str, queue: &str, arrivals: &Mutex<Vec<Arrival>>) {
    let connect = Connection::connect(url, ConnectionProperties::default());
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
        return;
    };
    let Ok(channel) = conn.create_channel().await else {
        return;
    };
    if channel
        .basic_qos(500, BasicQosOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let Ok(mut consumer) = channel
        .basic_consume(
            queue.into(),
            "payhook-cluster-watch".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    while let Some(Ok(d)) = consumer.next().await {
        let at = Instant::now();
        let message_id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arrival {
                message_id,
                redelivered: d.redelivered,
                at,
            });
        let _ = d.acker.ack(BasicAckOptions::default()).await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// A scenario's figures, by message id.
pub struct Figures {
    pub acknowledged: usize,
    /// Acknowledged ids that arrived on the queue (at least once).
    pub arrived: usize,
    pub missing: Vec<String>,
    /// Ids that arrived more than once.
    pub duplicates: usize,
    /// Of those, ids payhook published more than once (several deliveries not flagged
    /// redelivered); the rest are the broker redelivering to the watcher after a reconnect.
    pub published_twice: usize,
    pub non_200: u64,
    /// The longest time between consecutive arrivals while the load ran.
    pub longest_gap: Duration,
}

impl Figures {
    pub fn compute(
        stats: &LoadStats,
        load: (Instant, Instant),
        arrivals: &[Arrival],
        missing: Vec<String>,
    ) -> Figures {
        let mut all: HashMap<&str, usize> = HashMap::new();
        let mut fresh: HashMap<&str, usize> = HashMap::new();
        for a in arrivals {
            *all.entry(a.message_id.as_str()).or_default() += 1;
            if !a.redelivered {
                *fresh.entry(a.message_id.as_str()).or_default() += 1;
            }
        }
        Figures {
            acknowledged: stats.acked.len(),
            arrived: stats.acked.len() - missing.len(),
            missing,
            duplicates: all.values().filter(|&&n| n > 1).count(),
            published_twice: fresh.values().filter(|&&n| n > 1).count(),
            non_200: stats.non_200(),
            longest_gap: longest_gap(arrivals, load.0, load.1),
        }
    }

    pub fn line(&self, name: &str) -> String {
        format!(
            "{name}: acknowledged {}, arrived {}, missing {}, duplicates {} (published twice {}), \
             non-200 {}, longest publishing gap {:.1} s",
            self.acknowledged,
            self.arrived,
            self.missing.len(),
            self.duplicates,
            self.published_twice,
            self.non_200,
            self.longest_gap.as_secs_f64()
        )
    }
}

/// The longest stretch without an arrival that began within [from, to): from `from` to the
/// first arrival, between consecutive arrivals, and from the last arrival before `to` to the
/// next one (or to `to` when none came after).
pub fn longest_gap(arrivals: &[Arrival], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = arrivals
        .iter()
        .map(|a| a.at)
        .filter(|&t| t >= from)
        .collect();
    times.sort();
    let mut prev = from;
    let mut longest = Duration::ZERO;
    for t in times {
        if prev >= to {
            break;
        }
        longest = longest.max(t - prev);
        prev = t;
    }
    if prev < to {
        longest = longest.max(to - prev);
    }
    longest
}

/// A GET that tolerates a dead instance: the body, or None when it does not answer (5 s).
pub async fn get(http: &HttpClient, url: &str) -> Option<String> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), http.request(req))
        .await
        .ok()?
        .ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// `/readyz` of an instance as JSON (Null when it does not answer).
pub async fn readyz(http: &HttpClient, url: &str) -> serde_json::Value {
    get(http, url)
        .await
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// The sum of `payhook_published_total` over its sources, from an instance's `/metrics`
/// (None when it does not answer).
pub async fn published_total(http: &HttpClient, url: &str) -> Option<f64> {
    let body = get(http, url).await?;
    Some(
        body.lines()
            .filter(|l| l.starts_with("payhook_published_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}
