//! `payhook simulate`: sends correctly signed sample webhooks the way the provider would, and
//! prints what came back. It is both the operator's smoke test and the load generator: every
//! sample is signed before the clock starts (in parallel on every core), so the rate and the
//! latencies it prints are the daemon's, not the signer's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;

use super::{ConfigArg, Failure, load_config};
use crate::providers::ProviderConfig;
use crate::testkit::{Sample, SampleMaker as Signer};

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The configured source to send to
    #[arg(long)]
    source: String,
    /// Event type (provider-specific; default: a successful payment). Pinddpay: the eventName;
    /// PingPong: recharge, refund, capture, void, auth, failed, dispute or v2; WeChat alarm: the
    /// ErrorType (default 1001)
    #[arg(long = "type")]
    event_type: Option<String>,
    #[arg(long, default_value_t = 1)]
    count: u64,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Requests per second across all workers (default: as fast as possible); latency then
    /// counts from each request's due time
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Percentage of requests that resend an earlier webhook, as providers' retries do
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Target URL (default: the source's hook on [server] listen)
    #[arg(long)]
    to: Option<String>,
    /// Ping++: the private key whose public half the source is configured with
    #[arg(long)]
    private_key: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate like 100 or 100/s")),
    }
}

fn load_private_key(path: &PathBuf) -> Result<rsa::RsaPrivateKey, Failure> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let pem = pem.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|e| Failure::usage(format!("{}: not an RSA private key: {e}", path.display())))
}

struct Report {
    statuses: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

/// Every request of the run, signed before the clock starts: `order[i]` is the sample that
/// request `i` sends (an earlier one again for `--duplicates`).
struct Prepared {
    samples: Vec<Sample>,
    order: Vec<usize>,
}

/// Signs the distinct samples on every core. Ping++ RSA signatures cost about a millisecond
/// each; made one at a time on the request path they were what a load test measured, not the
/// daemon. Memory: about one KiB per sample.
fn prepare(signer: &Signer, event_type: Option<&str>, count: u64, duplicates: f64) -> Prepared {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    let mut order = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut distinct = 0usize;
    for _ in 0..count {
        if distinct > 0 && rng.gen_range(0.0..100.0) < duplicates {
            order.push(rng.gen_range(0..distinct));
        } else {
            order.push(distinct);
            distinct += 1;
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(distinct.max(1));
    let per = distinct.div_ceil(threads);
    let samples = std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let n = per.min(distinct.saturating_sub(t * per));
                s.spawn(move || {
                    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
                    (0..n)
                        .map(|_| signer.sample(event_type, &mut rng))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    Prepared { samples, order }
}

pub fn run(a: SimulateArgs) -> Result<(), Failure> {
    let config = load_config(a.config.config.as_deref())?;
    let source = config
        .sources
        .iter()
        .find(|s| s.name == a.source)
        .ok_or_else(|| {
            Failure::usage(format!(
                "no source {:?} in {}",
                a.source,
                config.path.display()
            ))
        })?;
    let signer = match &source.provider {
        ProviderConfig::Pingpp(_) => {
            let path = a
                .private_key
                .as_ref()
                .ok_or_else(|| Failure::usage("Ping++ samples need --private-key PEM"))?;
            Signer::Pingpp(Box::new(rsa::pkcs1v15::SigningKey::new(load_private_key(
                path,
            )?)))
        }
        ProviderConfig::Pinddpay(c) => Signer::Pinddpay {
            secret: c
                .secret
                .resolve(&config.base_dir)
                .map_err(|e| Failure::config(format!("source {}: secret: {e}", a.source)))?,
            scheme: c.sign_scheme,
            app_id: c.app_id.clone(),
        },
        ProviderConfig::Pingpong(c) => Signer::Pingpong {
            salt: c
                .salt
                .resolve(&config.base_dir)
                .map_err(|e| Failure::config(format!("source {}: salt: {e}", a.source)))?,
            acc_id: c
                .acc_ids
                .as_ref()
                .and_then(|ids| ids.first().cloned())
                .unwrap_or_else(|| "2018092714313010016291".to_string()),
        },
        ProviderConfig::WechatAlarm(c) => Signer::WechatAlarm {
            app_id: c.app_id.trim().to_string(),
            app_key: c
                .app_key
                .resolve(&config.base_dir)
                .map_err(|e| Failure::config(format!("source {}: app_key: {e}", a.source)))?,
        },
    };
    if !(0.0..=100.0).contains(&a.duplicates) {
        return Err(Failure::usage("--duplicates is a percentage, 0 to 100"));
    }
    let url =
        a.to.clone()
            .unwrap_or_else(|| format!("http://{}/hooks/{}", config.server.listen, a.source));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Failure::usage(format!("--to {url:?}: {e}")))?;
    let prepared = prepare(&signer, a.event_type.as_deref(), a.count, a.duplicates);
    let distinct = prepared.samples.len();
    let rt = super::runtime()?;
    // The clock starts here, with every sample signed.
    let started = Instant::now();
    let report = rt.block_on(send_all(
        Arc::new(prepared),
        a.concurrency.max(1),
        a.rate,
        uri,
    ));
    print_summary(&report, a.count, distinct, started.elapsed());
    let failed: u64 = report
        .statuses
        .iter()
        .filter(|(k, _)| !k.starts_with('2'))
        .map(|(_, v)| v)
        .sum();
    if failed > 0 {
        return Err(Failure::runtime(format!(
            "{failed} request(s) did not get a 2xx"
        )));
    }
    Ok(())
}

/// Sends the prepared requests over `concurrency` workers. With `rate`, request `i` is due at
/// `start + i / rate` and its latency counts from that due time, so a daemon that stalls shows
/// in the percentiles rather than silently slowing the sender (no coordinated omission). The
/// timer fires up to a millisecond late, so a worker wakes a millisecond early and counts from
/// the due time or the actual send, whichever is earlier.
async fn send_all(
    prepared: Arc<Prepared>,
    concurrency: usize,
    rate: Option<f64>,
    uri: hyper::Uri,
) -> Report {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, uri, next, prepared) =
            (client.clone(), uri.clone(), next.clone(), prepared.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Report {
                statuses: BTreeMap::new(),
                latencies: Vec::new(),
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sample) = prepared.order.get(i).and_then(|&s| prepared.samples.get(s))
                else {
                    break;
                };
                let due = interval.map(|iv| start + iv.mul_f64(i as f64));
                if let Some(due) = due {
                    let wake = due.checked_sub(Duration::from_millis(1)).unwrap_or(due);
                    tokio::time::sleep_until(wake.into()).await;
                }
                let mut req =
                    hyper::Request::post(uri.clone()).header("content-type", sample.content_type);
                for (k, v) in &sample.headers {
                    req = req.header(*k, v);
                }
                let Ok(req) = req.body(Full::new(sample.body.clone())) else {
                    break;
                };
                let now = Instant::now();
                let from = due.map_or(now, |d| d.min(now));
                let status = match client.request(req).await {
                    Ok(resp) => {
                        let s = resp.status().as_u16().to_string();
                        let _ = resp.into_body().collect().await;
                        s
                    }
                    Err(e) => format!("error: {e}"),
                };
                mine.latencies.push(from.elapsed());
                *mine.statuses.entry(status).or_default() += 1;
            }
            mine
        }));
    }
    let mut report = Report {
        statuses: BTreeMap::new(),
        latencies: Vec::with_capacity(prepared.order.len()),
    };
    for w in workers {
        if let Ok(mine) = w.await {
            report.latencies.extend(mine.latencies);
            for (k, v) in mine.statuses {
                *report.statuses.entry(k).or_default() += v;
            }
        }
    }
    report
}

fn print_summary(r: &Report, count: u64, distinct: usize, elapsed: Duration) {
    let mut lat = r.latencies.clone();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (lat.len() as f64 - 1.0)).round() as usize;
        lat[i.min(lat.len() - 1)].as_secs_f64() * 1000.0
    };
    println!("sent:      {} of {count}", lat.len());
    // What a consumer should count on the queue: each distinct event once, the repeats
    // acknowledged but not published again.
    println!(
        "distinct:  {distinct} events (the other {} requests repeat one of them)",
        count.saturating_sub(distinct as u64)
    );
    let statuses: Vec<String> = r.statuses.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("status:    {}", statuses.join(" "));
    println!("elapsed:   {:.3}s", elapsed.as_secs_f64());
    println!(
        "rate:      {:.1} req/s",
        lat.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "latency:   p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        lat.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    );
}
