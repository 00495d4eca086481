//! The relay's ceiling: a bare confirmed lapin publisher. It connects, selects confirm mode,
//! declares a topology like payhook's (durable topic exchange, durable queue bound with `#`) and
//! publishes N persistent mandatory messages, keeping up to W unconfirmed as a sliding window
//! tracked in delivery-tag order (RabbitMQ's publisher-confirm guide, "handling confirms
//! asynchronously"; lapin resolves each `PublisherConfirm` by its delivery tag). It prints its
//! rate and its own CPU time per message (getrusage: every thread, lapin's I/O included).
//!
//! `--like QUEUE` takes one message from QUEUE (payhook's) and publishes copies of its body and
//! properties, so the frames are the same size as payhook's CloudEvents. `--purge Q,...` empties
//! queues and exits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clap::Parser;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use payhook_bench::procfs;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "bare-publisher",
    about = "A bare confirmed lapin publisher (the relay's ceiling)"
)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "bench.bare")]
    exchange: String,
    #[arg(long, default_value = "bench.bare")]
    queue: String,
    /// Routing key (with --like: the taken message's)
    #[arg(long, default_value = "pinddpay.order.paid")]
    routing_key: String,
    /// Messages to publish
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Body size in bytes (ignored with --like)
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// Unconfirmed messages at most (payhook's max_in_flight)
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Copy body and properties from one message of this queue (left in place)
    #[arg(long)]
    like: Option<String>,
    /// With --like: purge that queue once the template is taken, so the broker starts as empty
    /// as for payhook
    #[arg(long)]
    purge_like: bool,
    /// Wait this long before the clock starts (after --purge-like, the broker is busy a moment)
    #[arg(long, value_parser = payhook_bench::parse_duration, default_value = "0s")]
    settle: Duration,
    /// Purge these queues (comma-separated) and exit
    #[arg(long)]
    purge: Option<String>,
    /// Delete our queue and exchange at the end
    #[arg(long)]
    cleanup: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-publisher: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(a: Args) -> Result<(), String> {
    let conn = Connection::connect(&a.url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    if let Some(queues) = &a.purge {
        for q in queues.split(',').filter(|q| !q.is_empty()) {
            // A queue that does not exist closes the channel: use a fresh one per queue.
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| format!("channel: {e}"))?;
            match ch.queue_purge(q.into(), QueuePurgeOptions::default()).await {
                Ok(n) => eprintln!("bare-publisher: purged {n} messages from {q}"),
                Err(e) => eprintln!("bare-publisher: purge {q}: {e}"),
            }
        }
        let _ = conn.close(200, "done".into()).await;
        return Ok(());
    }
    let (body, props, routing_key) = match &a.like {
        Some(q) => {
            let template = like(&channel, q).await?;
            if a.purge_like {
                channel
                    .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
                    .await
                    .map_err(|e| format!("purge {q}: {e}"))?;
            }
            template
        }
        None => (
            vec![b'x'; a.size],
            payhook_like_properties(),
            a.routing_key.clone(),
        ),
    };
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm_select: {e}"))?;
    declare(&channel, &a).await?;
    tokio::time::sleep(a.settle).await;

    let cpu0 = procfs::self_cpu_time();
    let t0 = Instant::now();
    let (mut acked, mut nacked, mut returned) = (0u64, 0u64, 0u64);
    let mut window = VecDeque::with_capacity(a.window);
    let mut tally = |c: Result<Confirmation, lapin::Error>| -> Result<(), String> {
        match c.map_err(|e| format!("confirm: {e}"))? {
            Confirmation::Ack(None) => acked += 1,
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => returned += 1,
            Confirmation::Nack(None) | Confirmation::NotRequested => nacked += 1,
        }
        Ok(())
    };
    for i in 0..a.count {
        if window.len() >= a.window.max(1)
            && let Some(c) = window.pop_front()
        {
            tally(c.await)?;
        }
        let props = props
            .clone()
            .with_message_id(format!("bare-{i}").as_str().into());
        let confirm = channel
            .basic_publish(
                a.exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                props,
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        window.push_back(confirm);
    }
    while let Some(c) = window.pop_front() {
        tally(c.await)?;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu = procfs::self_cpu_time().saturating_sub(cpu0).as_secs_f64();
    if a.cleanup {
        let _ = channel
            .queue_delete(a.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "done".into())).await;
    let out = json!({
        "count": a.count,
        "body_bytes": body.len(),
        "window": a.window,
        "acked": acked,
        "nacked": nacked,
        "returned": returned,
        "secs": secs,
        "rate": acked as f64 / secs,
        "cpu_s": cpu,
        "cpu_us_per_msg": cpu * 1e6 / (a.count.max(1) as f64),
    });
    eprintln!(
        "bare-publisher: {acked} acked ({nacked} nacked, {returned} returned) of {} B in {secs:.2}s \
         = {:.0} msg/s, window {}, CPU {:.1} us/msg",
        body.len(),
        acked as f64 / secs,
        a.window,
        cpu * 1e6 / (a.count.max(1) as f64)
    );
    println!("{out}");
    Ok(())
}

/// The properties payhook sets (SPEC §5), with values of typical length.
fn payhook_like_properties() -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in [
        ("cloudEvents_specversion", "1.0"),
        ("cloudEvents_id", "8d0f6c2e-6f1c-5b3e-9a51-0d5c3a0e8b1f"),
        ("cloudEvents_source", "payhook/bench"),
        ("cloudEvents_type", "pinddpay.order.paid"),
        ("cloudEvents_time", "2026-01-01T00:00:00Z"),
        ("cloudEvents_subject", "M1234567890123456"),
    ] {
        headers.insert(k.into(), AMQPValue::LongString(v.into()));
    }
    BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_type("pinddpay.order.paid".into())
        .with_timestamp(1_767_225_600)
        .with_app_id("payhook".into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// One message of `queue`, put back at once: its body and properties are the template.
async fn like(
    channel: &Channel,
    queue: &str,
) -> Result<(Vec<u8>, BasicProperties, String), String> {
    let got = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .map_err(|e| format!("basic_get {queue}: {e}"))?
        .ok_or_else(|| format!("--like {queue}: the queue is empty"))?;
    let d = got.delivery;
    let _ = channel
        .basic_reject(d.delivery_tag, BasicRejectOptions { requeue: true })
        .await;
    Ok((d.data, d.properties, d.routing_key.to_string()))
}

async fn declare(channel: &Channel, a: &Args) -> Result<(), String> {
    channel
        .exchange_declare(
            a.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("exchange_declare: {e}"))?;
    channel
        .queue_declare(
            a.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("queue_declare: {e}"))?;
    channel
        .queue_bind(
            a.queue.as_str().into(),
            a.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("queue_bind: {e}"))?;
    Ok(())
}
