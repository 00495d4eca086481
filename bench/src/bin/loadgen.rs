//! The load generator of `scripts/bench`.
//!
//! `loadgen run`: builds N distinct signed webhooks before the clock starts (in parallel on every
//! core; Ping++ RSA signatures included), then replays them over keep-alive connections, closed
//! loop (`--concurrency C`) or open loop (`--rate R`). Prints one line of JSON on stdout for the
//! script and a human summary on stderr.
//!
//! `loadgen watch`: polls the daemon's /metrics until a condition holds and times it (a relay's
//! end-to-end or drain rate), with the daemon's CPU time over the same period.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use payhook::providers::pinddpay::SignScheme;
use payhook_bench::load::{self, Plan};
use payhook_bench::metrics::{self, Condition};
use payhook_bench::requests::{CacheKey, Requests, Target};
use payhook_bench::samples::{Provider, load_private_key};
use payhook_bench::watch::{self, Watch};
use payhook_bench::{instant_to_unix_ms, parse_duration, procfs, wire};
use rand::Rng;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "loadgen", about = "payhook's bench load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay pre-signed webhooks and report rate and latency
    Run(Box<RunArgs>),
    /// Poll /metrics until a condition holds; report the rate of a counter meanwhile
    Watch(WatchArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/hooks/bench
    #[arg(long)]
    url: String,
    /// pinddpay | pingpong | wechat_alarm | pingpp
    #[arg(long)]
    provider: String,
    /// Pinddpay: the app secret
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// Pinddpay: md5(body+secret) | md5(secret+body) | md5(secret)
    #[arg(long, default_value = "md5(body+secret)")]
    sign_scheme: String,
    /// Pinddpay and WeChat alarm: the app id
    #[arg(long, default_value = "app_bench")]
    app_id: String,
    /// PingPong: the salt
    #[arg(long, default_value = "bench-salt")]
    salt: String,
    /// PingPong: the accId
    #[arg(long, default_value = "2018092714313010016291")]
    acc_id: String,
    /// WeChat alarm: the app key
    #[arg(long, default_value = "bench-app-key")]
    app_key: String,
    /// Ping++: the private key (PEM) whose public half the source is configured with
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// Connections (closed loop: requests in flight)
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests to send at most
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Distinct requests to build (default: count); requests cycle through them, so a pool
    /// smaller than the count sends duplicates (fine for a bare server)
    #[arg(long)]
    pool: Option<usize>,
    /// Stop after this long (closed loop), or send for this long (open loop)
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Open loop: requests per second, latency measured from each request's due time
    #[arg(long)]
    rate: Option<f64>,
    /// Body size in bytes, padded in a free-text field (0: the provider's natural size)
    #[arg(long, default_value_t = 0)]
    body_size: usize,
    /// Percentage of requests that resend an earlier webhook
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Run tag in every id (default: random), so runs against one store never collide
    #[arg(long)]
    tag: Option<String>,
    /// The daemon's pid: report its CPU time over the run and sample its memory
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Memory sample interval with --watch-pid
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    sample_every: Duration,
    /// The daemon's admin address (host:port): scrape /metrics before and after (off the clock)
    #[arg(long)]
    metrics: Option<String>,
    /// Runtime worker threads (default: every core)
    #[arg(long)]
    threads: Option<usize>,
    /// Per-request timeout
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// A label echoed in the JSON
    #[arg(long, default_value = "")]
    label: String,
    /// Reuse the requests saved in this file by an earlier run with the same provider, key,
    /// path, body size and count, when younger than --cache-max-age; else build and save them.
    /// Its ids are fixed: use it only against a fresh store (Ping++ signing takes minutes).
    #[arg(long)]
    cache: Option<PathBuf>,
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    cache_max_age: Duration,
}

#[derive(clap::Args)]
struct WatchArgs {
    /// The daemon's admin address (host:port)
    #[arg(long)]
    metrics: String,
    /// NAME>=N or NAME<=N
    #[arg(long)]
    until: String,
    /// The counter whose change starts the clock and whose delta is the work done
    #[arg(long, default_value = "payhook_published_total")]
    count_metric: String,
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    interval: Duration,
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    timeout: Duration,
    /// The daemon's pid: its CPU time over the active period
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, default_value = "")]
    label: String,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(*a),
        Command::Watch(a) => watch_cmd(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

fn watch_cmd(a: WatchArgs) -> Result<(), String> {
    let until: Condition = a.until.parse()?;
    let w = Watch {
        addr: a.metrics,
        until,
        count_metric: a.count_metric,
        interval: a.interval,
        timeout: a.timeout,
        pid: a.pid,
    };
    let mut out = runtime(1)?.block_on(watch::run(&w));
    out["label"] = json!(a.label);
    eprintln!(
        "watch {}: {}",
        a.label,
        if out["timed_out"] == json!(true) {
            "TIMED OUT".to_string()
        } else {
            format!(
                "{:.0} events in {:.2}s = {:.0}/s, daemon CPU {:.1} us/event",
                out["delta"].as_f64().unwrap_or(0.0),
                out["active_s"].as_f64().unwrap_or(0.0),
                out["rate"].as_f64().unwrap_or(0.0),
                out["cpu_us_per_event"].as_f64().unwrap_or(f64::NAN)
            )
        }
    );
    println!("{out}");
    Ok(())
}

fn provider(a: &RunArgs) -> Result<Provider, String> {
    Ok(match a.provider.as_str() {
        "pinddpay" => Provider::Pinddpay {
            secret: a.secret.clone(),
            scheme: match a.sign_scheme.as_str() {
                "md5(body+secret)" => SignScheme::BodySecret,
                "md5(secret+body)" => SignScheme::SecretBody,
                "md5(secret)" => SignScheme::SecretOnly,
                other => return Err(format!("unknown --sign-scheme {other:?}")),
            },
            app_id: a.app_id.clone(),
        },
        "pingpong" => Provider::Pingpong {
            salt: a.salt.clone(),
            acc_id: a.acc_id.clone(),
        },
        "wechat_alarm" => Provider::WechatAlarm {
            app_id: a.app_id.clone(),
            app_key: a.app_key.clone(),
        },
        "pingpp" => {
            let path = a
                .private_key
                .as_ref()
                .ok_or("Ping++ needs --private-key PEM")?;
            Provider::Pingpp {
                key: Box::new(rsa::pkcs1v15::SigningKey::new(load_private_key(path)?)),
            }
        }
        other => return Err(format!("unknown --provider {other:?}")),
    })
}

/// Splits http://host:port/path into (host:port, /path).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

/// Request index -> distinct request, with `pct` percent resending an earlier one.
fn duplicate_order(count: usize, pct: f64, rng: &mut impl Rng) -> (Vec<u32>, usize) {
    let mut order = Vec::with_capacity(count);
    let mut distinct = 0u32;
    for _ in 0..count {
        if distinct > 0 && rng.gen_range(0.0..100.0) < pct {
            order.push(rng.gen_range(0..distinct));
        } else {
            order.push(distinct);
            distinct += 1;
        }
    }
    (order, distinct as usize)
}

/// The requests: from the cache file when it matches, else built (and saved when asked).
fn build(
    a: &RunArgs,
    provider: &Provider,
    target: &Target,
    distinct: usize,
    tag: &str,
) -> Result<(Requests, bool), String> {
    let Some(file) = &a.cache else {
        let r = Requests::generate(provider, target, distinct, tag, a.body_size, cores())?;
        return Ok((r, false));
    };
    let secret = match provider {
        Provider::Pingpp { .. } => a
            .private_key
            .as_ref()
            .map(|p| std::fs::read(p).unwrap_or_default())
            .unwrap_or_default(),
        _ => format!(
            "{}|{}|{}|{}|{}",
            a.secret, a.sign_scheme, a.app_id, a.salt, a.app_key
        )
        .into_bytes(),
    };
    use sha2::Digest;
    let key = CacheKey {
        identity: format!(
            "{} {} body={} key={:x}",
            provider.name(),
            target.path,
            a.body_size,
            sha2::Sha256::digest(&secret)
        ),
        distinct,
    };
    let fresh = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < a.cache_max_age);
    if fresh && let Ok(Some(r)) = Requests::load(file, &key) {
        return Ok((r, true));
    }
    let r = Requests::generate(provider, target, distinct, tag, a.body_size, cores())?;
    if let Err(e) = r.save(file, &key.identity) {
        eprintln!("loadgen: cannot save the cache {}: {e}", file.display());
    }
    Ok((r, false))
}

async fn scrape(addr: &Option<String>) -> Option<String> {
    let addr = addr.as_ref()?;
    match wire::get(addr, "/metrics").await {
        Ok((200, text)) => Some(text),
        _ => None,
    }
}

fn run(a: RunArgs) -> Result<(), String> {
    let provider = provider(&a)?;
    let (host, path) = split_url(&a.url)?;
    let target = Target { path };
    let mut rng = rand::thread_rng();
    let tag = a
        .tag
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rng.r#gen::<u32>()));
    let count = match (a.rate, a.duration) {
        (Some(r), Some(d)) => a.count.min((r * d.as_secs_f64()).ceil() as usize),
        _ => a.count,
    };
    let (order, distinct) = if a.duplicates > 0.0 {
        let (o, d) = duplicate_order(count, a.duplicates.min(100.0), &mut rng);
        (Some(o), d)
    } else {
        (None, a.pool.unwrap_or(count).min(count).max(1))
    };

    let gen_start = Instant::now();
    let (requests, cached) = build(&a, &provider, &target, distinct, &tag)?;
    let gen_s = gen_start.elapsed().as_secs_f64();
    eprintln!(
        "loadgen {}: {} distinct {} requests of ~{:.0} B bodies {} in {gen_s:.2}s",
        a.label,
        requests.distinct,
        provider.name(),
        requests.mean_body,
        if cached {
            "loaded from the cache"
        } else {
            "built"
        }
    );
    let mean_body = requests.mean_body;
    let requests = Arc::new(requests);
    let rt = runtime(a.threads.unwrap_or_else(cores))?;

    let before = rt.block_on(scrape(&a.metrics));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = a.watch_pid.map(|pid| {
        let (done, stop, every) = (done.clone(), stop.clone(), a.sample_every);
        std::thread::spawn(move || sample_memory(pid, &done, &stop, every))
    });
    let cpu0 = a.watch_pid.and_then(procfs::cpu_time);
    let self0 = procfs::self_cpu_time();
    let plan = Plan {
        addr: host,
        connections: a.concurrency.max(1),
        count,
        duration: a.duration,
        rate: a.rate,
        timeout: a.timeout,
        order,
    };
    let outcome = rt.block_on(load::run(plan, requests.clone(), done));
    let self_cpu = procfs::self_cpu_time().saturating_sub(self0);
    let cpu1 = a.watch_pid.and_then(procfs::cpu_time);
    stop.store(true, Ordering::Relaxed);
    let mem_samples = sampler.and_then(|s| s.join().ok()).unwrap_or_default();
    let outcome = outcome?;
    let after = rt.block_on(scrape(&a.metrics));

    let wall = outcome.wall().as_secs_f64().max(1e-9);
    let answered = outcome.answered();
    let sent = answered + outcome.errors + outcome.timeouts;
    let ok = outcome.ok();
    let pct = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    let statuses: serde_json::Map<String, Value> = outcome
        .statuses
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let mut out = json!({
        "label": a.label,
        "provider": provider.name(),
        "mode": if a.rate.is_some() { "open" } else { "closed" },
        "concurrency": a.concurrency,
        "target_rate": a.rate,
        "distinct": requests.distinct,
        "body_bytes": mean_body,
        "gen_s": gen_s,
        "sent": sent,
        "ok": ok,
        "status": statuses,
        "errors": outcome.errors,
        "timeouts": outcome.timeouts,
        "retries": outcome.retries,
        "wall_s": wall,
        "rate": answered as f64 / wall,
        "ok_rate": ok as f64 / wall,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": outcome.latency.max() as f64 / 1000.0,
        "mean_ms": outcome.latency.mean() / 1000.0,
        "start_unix_ms": instant_to_unix_ms(outcome.started),
        "first_ok_unix_ms": outcome.first_ok.map(instant_to_unix_ms),
        "end_unix_ms": outcome.last_done.map(instant_to_unix_ms),
        "loadgen_cpu_s": self_cpu.as_secs_f64(),
        "loadgen_cpu_us_per_req": self_cpu.as_secs_f64() * 1e6 / (sent.max(1) as f64),
    });
    if let Some(pid) = a.watch_pid {
        let mem = procfs::memory(pid).unwrap_or_default();
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        };
        out["daemon"] = json!({
            "cpu_s": cpu,
            "busy_cores": cpu.map(|c| c / wall),
            "cpu_us_per_ok": cpu.map(|c| c * 1e6 / (ok.max(1) as f64)),
            "rss_kib": mem.rss_kib,
            "hwm_kib": mem.hwm_kib,
            "mem": mem_samples,
        });
    }
    if let (Some(b), Some(e)) = (before, after) {
        let d = |name: &str| {
            metrics::sum(&e, name).unwrap_or(0.0) - metrics::sum(&b, name).unwrap_or(0.0)
        };
        let (events, commits) = (
            d("payhook_store_batch_events_sum"),
            d("payhook_store_batch_events_count"),
        );
        let (commit_s, commit_n) = (
            d("payhook_store_commit_seconds_sum"),
            d("payhook_store_commit_seconds_count"),
        );
        out["metrics"] = json!({
            "accepted": metrics::requests(&e, "accepted") - metrics::requests(&b, "accepted"),
            "duplicate": metrics::requests(&e, "duplicate") - metrics::requests(&b, "duplicate"),
            "batch_events": events,
            "commits": commits,
            "events_per_commit": if commits > 0.0 { events / commits } else { 0.0 },
            "commit_mean_ms": if commit_n > 0.0 { commit_s * 1000.0 / commit_n } else { 0.0 },
        });
    }
    summary(&out);
    println!("{out}");
    Ok(())
}

/// `[seconds since start, answered so far, VmRSS KiB, VmHWM KiB]` every `every`.
fn sample_memory(pid: u32, done: &AtomicU64, stop: &AtomicBool, every: Duration) -> Vec<[f64; 4]> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        if let Some(m) = procfs::memory(pid) {
            out.push([
                start.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed) as f64,
                m.rss_kib as f64,
                m.hwm_kib as f64,
            ]);
        }
        // Sleep in short steps so the run's end is seen promptly.
        let until = Instant::now() + every;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20).min(every));
        }
    }
}

fn summary(o: &Value) {
    let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
    eprintln!(
        "loadgen {}: sent {} ok {} status {} errors {} timeouts {} in {:.2}s = {:.0} req/s; \
         latency p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms; loadgen CPU {:.1} us/req",
        o["label"].as_str().unwrap_or(""),
        o["sent"],
        o["ok"],
        o["status"],
        o["errors"],
        o["timeouts"],
        f("wall_s"),
        f("rate"),
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms"),
        f("loadgen_cpu_us_per_req"),
    );
    if let Some(d) = o.get("daemon") {
        eprintln!(
            "  daemon: CPU {:.1} us per 2xx, RSS {} KiB, peak {} KiB",
            d["cpu_us_per_ok"].as_f64().unwrap_or(0.0),
            d["rss_kib"],
            d["hwm_kib"]
        );
    }
    if let Some(m) = o.get("metrics") {
        eprintln!(
            "  store: {} accepted, {:.1} events per commit",
            m["accepted"],
            m["events_per_commit"].as_f64().unwrap_or(0.0)
        );
    }
}
