//! `payhook simulate`: sends correctly signed sample webhooks the way the provider would, and
//! prints what came back. It is both the operator's smoke test and the load generator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio::sync::Mutex;

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
    /// Requests per second across all workers (default: as fast as possible)
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
    let rt = super::runtime()?;
    let started = Instant::now();
    let report = rt.block_on(send_all(
        a.count,
        a.concurrency.max(1),
        a.rate,
        a.duplicates,
        uri,
        signer,
        a.event_type,
    ))?;
    print_summary(&report, a.count, started.elapsed());
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

async fn send_all(
    count: u64,
    concurrency: usize,
    rate: Option<f64>,
    duplicates: f64,
    uri: hyper::Uri,
    signer: Signer,
    event_type: Option<String>,
) -> Result<Report, Failure> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    // Jobs are made by one producer that also paces the rate; workers only send.
    let (tx, rx) = tokio::sync::mpsc::channel::<Sample>(concurrency * 2);
    let producer = tokio::spawn(async move {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
        let mut sent: Vec<Sample> = Vec::new();
        let mut ticker = rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r)));
        for _ in 0..count {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            let dup = !sent.is_empty() && rng.gen_range(0.0..100.0) < duplicates;
            let s = if dup {
                sent[rng.gen_range(0..sent.len())].clone()
            } else {
                let s = signer.sample(event_type.as_deref(), &mut rng);
                if sent.len() < 10_000 {
                    sent.push(s.clone());
                }
                s
            };
            if tx.send(s).await.is_err() {
                break;
            }
        }
    });
    let rx = Arc::new(Mutex::new(rx));
    let report = Arc::new(std::sync::Mutex::new(Report {
        statuses: BTreeMap::new(),
        latencies: Vec::new(),
    }));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let rx = rx.clone();
        let client = client.clone();
        let uri = uri.clone();
        let report = report.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(sample) = rx.lock().await.recv().await else {
                    break;
                };
                let mut req =
                    hyper::Request::post(uri.clone()).header("content-type", sample.content_type);
                for (k, v) in &sample.headers {
                    req = req.header(*k, v);
                }
                let Ok(req) = req.body(Full::new(sample.body.clone())) else {
                    break;
                };
                let t = Instant::now();
                let status = match client.request(req).await {
                    Ok(resp) => {
                        let s = resp.status().as_u16().to_string();
                        let _ = resp.into_body().collect().await;
                        s
                    }
                    Err(e) => format!("error: {e}"),
                };
                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                r.latencies.push(t.elapsed());
                *r.statuses.entry(status).or_default() += 1;
            }
        }));
    }
    let _ = producer.await;
    for w in workers {
        let _ = w.await;
    }
    let r = std::mem::replace(
        &mut *report.lock().unwrap_or_else(|p| p.into_inner()),
        Report {
            statuses: BTreeMap::new(),
            latencies: Vec::new(),
        },
    );
    Ok(r)
}

fn print_summary(r: &Report, count: u64, elapsed: Duration) {
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
