//! One AMQP session: a connection to one broker node, a confirm-mode channel and the declared
//! topology. The relay throws a session away on any doubt and builds a new one, on the next
//! node of the list; there is no partial recovery to get wrong. Every broker call here is
//! bounded by a timeout, `close()` included, so a broker that stops answering (SIGSTOP, a
//! blackhole) can never stall the relay.

use std::str::FromStr;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

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
    #[error("connect to {node}: {error}")]
    Connect { node: String, error: String },
    #[error("declare topology on {node}: {error}")]
    Declare { node: String, error: String },
    #[error("publish: {0}")]
    Publish(lapin::Error),
    #[error("no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("a publish did not go out within {0:?}")]
    PublishTimeout(Duration),
    #[error("confirms are not enabled on the channel")]
    NoConfirms,
    #[error("connection to the broker lost")]
    Disconnected,
    #[error("the broker blocked the connection (resource alarm)")]
    Blocked,
    #[error("no connection to {node} within {timeout:?}")]
    ConnectTimeout { node: String, timeout: Duration },
    #[error("the store did not answer: {0}")]
    Store(String),
    #[error("{0} publishes in a row were nacked: replacing the channel")]
    NackStorm(usize),
}

impl RelayError {
    /// The `reason` label of `payhook_publish_retries_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayError::Connect { .. } | RelayError::ConnectTimeout { .. } => "connect",
            RelayError::Declare { .. } | RelayError::NoConfirms => "declare",
            RelayError::Publish(_) | RelayError::Disconnected | RelayError::PublishTimeout(_) => {
                "connection"
            }
            RelayError::ConfirmTimeout(_) => "confirm_timeout",
            RelayError::Blocked => "blocked",
            RelayError::Store(_) => "store",
            RelayError::NackStorm(_) => "nack_storm",
        }
    }
}

/// Connect, open a channel, enable confirms and declare: all of it within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `close()` waits no longer than this for the broker's close-ok.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// AMQP heartbeat asked for when the URL does not say: a node that vanishes without a TCP reset
/// is noticed within twice this.
const DEFAULT_HEARTBEAT: u16 = 10;

pub struct Session {
    conn: Connection,
    channel: Channel,
    exchange: ShortString,
    /// `host:port` of the node, for logs and `/readyz` (never the credentials).
    pub node: String,
}

/// `host:port` of a URL, without credentials; the URL itself when it does not parse.
pub fn node_name(url: &str) -> String {
    match AMQPUri::from_str(url) {
        Ok(u) => format!("{}:{}", u.authority.host, u.authority.port),
        Err(_) => "(unparsable amqp url)".to_string(),
    }
}

impl Session {
    /// Connects to `url`, bounded by [`CONNECT_TIMEOUT`] as a whole: an unreachable
    /// (blackholed) or stopped node must not stall the relay for the kernel's TCP timeout.
    pub async fn open(url: &str, s: &AmqpSettings) -> Result<Session, RelayError> {
        let node = node_name(url);
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::open_unbounded(url, &node, s)).await {
            Ok(r) => r,
            Err(_) => Err(RelayError::ConnectTimeout {
                node,
                timeout: CONNECT_TIMEOUT,
            }),
        }
    }

    async fn open_unbounded(
        url: &str,
        node: &str,
        s: &AmqpSettings,
    ) -> Result<Session, RelayError> {
        let connect_err = |e: String| RelayError::Connect {
            node: node.to_string(),
            error: e,
        };
        let mut uri = AMQPUri::from_str(url).map_err(connect_err)?;
        uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT);
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from("payhook"));
        let conn = Connection::connect_uri(uri, props)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let declare_err = |e: lapin::Error| RelayError::Declare {
            node: node.to_string(),
            error: e.to_string(),
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(declare_err)?;
        declare(&channel, s).await.map_err(declare_err)?;
        let exchange =
            ShortString::try_new(s.exchange.as_str()).map_err(|e| RelayError::Declare {
                node: node.to_string(),
                error: e.to_string(),
            })?;
        Ok(Session {
            conn,
            channel,
            exchange,
            node: node.to_string(),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }

    /// The broker sent `connection.blocked` (memory or disk alarm): publishes stall.
    pub fn is_blocked(&self) -> bool {
        self.conn.status().blocked()
    }

    /// Hands one event to the connection. The returned future resolves when the frames are on
    /// their way; its output is the confirm to wait for. An event whose properties cannot be
    /// encoded gives `Ok(Err(reason))`: that event's own failure, not the session's.
    pub async fn publish(
        &self,
        ev: &PendingEvent,
    ) -> Result<Result<lapin::PublisherConfirm, String>, lapin::Error> {
        let (routing_key, props) = match envelope(ev) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        self.channel
            .basic_publish(
                self.exchange.clone(),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &ev.message,
                props,
            )
            .await
            .map(Ok)
    }

    /// Closes the connection, waiting at most [`CLOSE_TIMEOUT`] for the broker.
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            self.conn.close(200, ShortString::from("payhook closing")),
        )
        .await;
    }
}

async fn declare(channel: &Channel, s: &AmqpSettings) -> lapin::Result<()> {
    // Lengths were checked by the config (255 bytes at most), so these cannot fail; map anyway.
    let short =
        |v: &str| ShortString::try_new(v).map_err(|e| lapin::Error::from(std::io::Error::other(e)));
    channel
        .exchange_declare(
            short(&s.exchange)?,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if s.queue.is_empty() {
        return Ok(());
    }
    let mut args = FieldTable::default();
    if s.queue_type == QueueType::Quorum {
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(
            short(&s.queue)?,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            short(&s.queue)?,
            short(&s.exchange)?,
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// The routing key and the AMQP properties and CloudEvents headers of SPEC §5. The routing key
/// and `type` are bounded to 255 bytes; the `cloudEvents_type` header (a long string) keeps
/// the whole type.
pub fn envelope(ev: &PendingEvent) -> Result<(ShortString, BasicProperties), String> {
    let routing_key =
        ShortString::try_new(ev.routing_key.as_str()).map_err(|e| format!("routing key: {e}"))?;
    let ce_type = format!("{}.{}", ev.provider, ev.event_type);
    let short_type = ShortString::try_new(crate::event::bounded_name(&ev.provider, &ev.event_type))
        .map_err(|e| format!("type: {e}"))?;
    let time = time::OffsetDateTime::from_unix_timestamp(ev.time_unix)
        .map(rfc3339_seconds)
        .unwrap_or_default();
    let id = ev.id.hyphenated().to_string();
    let mut headers = FieldTable::default();
    let mut put = |k: &'static str, v: &str| {
        headers.insert(ShortString::from(k), AMQPValue::LongString(v.into()));
    };
    put("cloudEvents_specversion", "1.0");
    put("cloudEvents_id", &id);
    put("cloudEvents_source", &format!("payhook/{}", ev.source));
    put("cloudEvents_type", &ce_type);
    put("cloudEvents_time", &time);
    if let Some(s) = &ev.subject {
        put("cloudEvents_subject", s);
    }
    let props = BasicProperties::default()
        .with_content_type(ShortString::from("application/cloudevents+json"))
        .with_message_id(ShortString::try_new(id).map_err(|e| format!("message id: {e}"))?)
        .with_type(short_type)
        .with_timestamp(u64::try_from(ev.time_unix).unwrap_or(0))
        .with_app_id(ShortString::from("payhook"))
        .with_delivery_mode(2)
        .with_headers(headers);
    Ok((routing_key, props))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_hide_credentials() {
        assert_eq!(
            node_name("amqp://user:secret@10.0.0.5:5673/%2f"),
            "10.0.0.5:5673"
        );
        assert_eq!(node_name("amqp://localhost"), "localhost:5672");
    }

    #[test]
    fn long_fields_still_make_an_envelope() {
        let ev = PendingEvent {
            seq: 1,
            id: uuid::Uuid::nil(),
            source: "s".repeat(64),
            provider: "pinddpay".into(),
            event_type: "é".repeat(300),
            routing_key: crate::event::bounded_name(&"s".repeat(64), &"é".repeat(300)),
            subject: Some("x".repeat(10_000)),
            time_unix: -5,
            message: b"{}".to_vec(),
            attempts: 0,
            next_attempt_ms: None,
        };
        let (rk, props) = envelope(&ev).unwrap();
        assert!(rk.as_str().len() <= 255);
        assert!(props.kind().as_ref().unwrap().as_str().len() <= 255);
        let ce_type = props
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get("cloudEvents_type")
            .cloned();
        assert_eq!(
            ce_type,
            Some(AMQPValue::LongString(
                format!("pinddpay.{}", "é".repeat(300)).into()
            ))
        );
        // A stored routing key that is too long (a corrupt row) is that event's failure only.
        let bad = PendingEvent {
            routing_key: "r".repeat(300),
            ..ev
        };
        assert!(envelope(&bad).is_err());
    }
}
