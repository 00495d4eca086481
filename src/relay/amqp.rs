//! One AMQP session: a connection, a confirm-mode channel and the declared topology. The relay
//! throws a session away on any doubt and builds a new one; there is no partial recovery to get
//! wrong.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use crate::config::QueueType;
use crate::event::rfc3339_seconds;
use crate::store::PendingEvent;

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// Broker nodes in the order they are tried.
    pub urls: Vec<String>,
    pub exchange: String,
    pub queue: String,
    pub queue_type: QueueType,
    pub confirm_timeout: Duration,
    pub max_in_flight: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("connect: {0}")]
    Connect(lapin::Error),
    #[error("declare topology: {0}")]
    Declare(lapin::Error),
    #[error("publish: {0}")]
    Publish(lapin::Error),
    #[error("broker nacked the message")]
    Nack,
    #[error("message returned as unroutable ({0})")]
    Returned(String),
    #[error("no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("connection to the broker lost")]
    Disconnected,
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
}

impl RelayError {
    /// The `reason` label of `payhook_publish_retries_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayError::Connect(_) | RelayError::ConnectTimeout(_) => "connect",
            RelayError::Declare(_) => "declare",
            RelayError::Publish(_) | RelayError::Disconnected => "connection",
            RelayError::Nack => "nack",
            RelayError::Returned(_) => "returned",
            RelayError::ConfirmTimeout(_) => "confirm_timeout",
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Session {
    conn: Connection,
    channel: Channel,
    exchange: String,
    confirm_timeout: Duration,
}

/// Outcome of publishing one batch: the events the broker took, and the first failure if any.
pub struct BatchResult {
    pub confirmed: Vec<usize>,
    pub error: Option<RelayError>,
}

impl Session {
    /// Bounded: an unreachable (blackholed) broker must not stall the relay for the kernel's
    /// TCP timeout, which would also starve the watchdog.
    pub async fn open(s: &AmqpSettings) -> Result<Session, RelayError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::open_unbounded(s)).await {
            Ok(r) => r,
            Err(_) => Err(RelayError::ConnectTimeout(CONNECT_TIMEOUT)),
        }
    }

    async fn open_unbounded(s: &AmqpSettings) -> Result<Session, RelayError> {
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from("payhook"));
        let mut last = None;
        let mut conn = None;
        for url in &s.urls {
            match Connection::connect(url, props.clone()).await {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let conn = match (conn, last) {
            (Some(c), _) => c,
            (None, Some(e)) => return Err(RelayError::Connect(e)),
            (None, None) => return Err(RelayError::Disconnected),
        };
        let channel = conn.create_channel().await.map_err(RelayError::Connect)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(RelayError::Declare)?;
        declare(&channel, s).await?;
        Ok(Session {
            conn,
            channel,
            exchange: s.exchange.clone(),
            confirm_timeout: s.confirm_timeout,
        })
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }

    /// Publishes every event, then waits for their confirms in order. An event counts only when
    /// acked and not returned; the caller marks exactly `confirmed` as published.
    pub async fn publish_batch(&self, events: &[PendingEvent]) -> BatchResult {
        // One deadline for the whole batch: a broker that blocks publishers (memory or disk
        // alarm) stalls the writes themselves, not only the confirms.
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut confirms = Vec::with_capacity(events.len());
        let mut error = None;
        for ev in events {
            let publish = self.channel.basic_publish(
                self.exchange.as_str().into(),
                ev.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &ev.message,
                properties(ev),
            );
            match tokio::time::timeout_at(deadline, publish).await {
                Ok(Ok(c)) => confirms.push(c),
                Ok(Err(e)) => {
                    error = Some(RelayError::Publish(e));
                    break;
                }
                Err(_) => {
                    error = Some(RelayError::ConfirmTimeout(self.confirm_timeout));
                    break;
                }
            }
        }
        let mut confirmed = Vec::with_capacity(confirms.len());
        for (i, confirm) in confirms.into_iter().enumerate() {
            let failure = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => {
                    confirmed.push(i);
                    continue;
                }
                Ok(Ok(Confirmation::Ack(Some(ret)))) | Ok(Ok(Confirmation::Nack(Some(ret)))) => {
                    RelayError::Returned(ret.reply_text.to_string())
                }
                Ok(Ok(Confirmation::Nack(None))) => RelayError::Nack,
                Ok(Ok(Confirmation::NotRequested)) => RelayError::Nack,
                Ok(Err(e)) => RelayError::Publish(e),
                Err(_) => RelayError::ConfirmTimeout(self.confirm_timeout),
            };
            if error.is_none() {
                error = Some(failure);
            }
            if matches!(
                error,
                Some(RelayError::ConfirmTimeout(_)) | Some(RelayError::Publish(_))
            ) {
                break;
            }
        }
        BatchResult { confirmed, error }
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "payhook closing".into()).await;
    }
}

async fn declare(channel: &Channel, s: &AmqpSettings) -> Result<(), RelayError> {
    channel
        .exchange_declare(
            s.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RelayError::Declare)?;
    if s.queue.is_empty() {
        return Ok(());
    }
    let mut args = FieldTable::default();
    if s.queue_type == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(
            s.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(RelayError::Declare)?;
    channel
        .queue_bind(
            s.queue.as_str().into(),
            s.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(RelayError::Declare)?;
    Ok(())
}

/// The AMQP properties and CloudEvents headers of SPEC §5.
pub fn properties(ev: &PendingEvent) -> BasicProperties {
    let ce_type = format!("{}.{}", ev.provider, ev.event_type);
    let time = time::OffsetDateTime::from_unix_timestamp(ev.time_unix)
        .map(rfc3339_seconds)
        .unwrap_or_default();
    let mut headers = FieldTable::default();
    let mut put = |k: &str, v: &str| {
        headers.insert(k.into(), AMQPValue::LongString(v.into()));
    };
    put("cloudEvents_specversion", "1.0");
    put("cloudEvents_id", &ev.id);
    put("cloudEvents_source", &format!("payhook/{}", ev.source));
    put("cloudEvents_type", &ce_type);
    put("cloudEvents_time", &time);
    if let Some(s) = &ev.subject {
        put("cloudEvents_subject", s);
    }
    BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(ev.id.as_str().into())
        .with_type(ce_type.as_str().into())
        .with_timestamp(ev.time_unix.max(0) as u64)
        .with_app_id("payhook".into())
        .with_delivery_mode(2)
        .with_headers(headers)
}
