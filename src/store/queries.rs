//! Read queries, shared by the relay, the admin endpoints and the CLI.

use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

/// What the relay needs to publish one stored event.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub id: Uuid,
    pub source: String,
    pub provider: String,
    pub event_type: String,
    pub routing_key: String,
    pub subject: Option<String>,
    pub time_unix: i64,
    pub message: Vec<u8>,
    /// Failed publish attempts so far (the event's own backoff continues from here).
    pub attempts: u32,
    /// Unix ms before which the next attempt should not be made.
    pub next_attempt_ms: Option<i64>,
}

impl PendingEvent {
    /// Roughly what the event holds in memory, for the relay's byte budget.
    pub fn weight(&self) -> usize {
        self.message.len() + self.event_type.len() + self.routing_key.len() + 128
    }
}

pub fn count_pending(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM events WHERE published_at_ms IS NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap_or(0))
}

const PENDING_COLUMNS: &str = "e.seq, e.id, e.source, e.provider, e.event_type, e.routing_key, \
    e.subject, e.time_unix, m.message, e.attempts, e.next_attempt_ms";

/// Unpublished events after a sequence number, in receive order (through `events_pending`).
pub const PENDING_PAGE: &str = "SELECT e.seq, e.id, e.source, e.provider, e.event_type, \
    e.routing_key, e.subject, e.time_unix, m.message, e.attempts, e.next_attempt_ms \
    FROM events e JOIN messages m ON m.seq = e.seq \
    WHERE e.published_at_ms IS NULL AND e.seq > ?1 ORDER BY e.seq";

fn pending_row(r: &Row<'_>) -> rusqlite::Result<PendingEvent> {
    let id: Vec<u8> = r.get(1)?;
    let id = Uuid::from_slice(&id).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(PendingEvent {
        seq: r.get(0)?,
        id,
        source: r.get(2)?,
        provider: r.get(3)?,
        event_type: r.get(4)?,
        routing_key: r.get(5)?,
        subject: r.get(6)?,
        time_unix: r.get(7)?,
        message: r.get(8)?,
        attempts: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
        next_attempt_ms: r.get(10)?,
    })
}

/// One page of the relay's scan: what a row gave, in seq order.
pub struct PendingPage {
    /// Rows read, or the error that row gave (its seq is still known, so the relay can put that
    /// one event on its own backoff while the others flow).
    pub rows: Vec<(i64, Result<PendingEvent, String>)>,
    /// True when the scan reached the end of the pending rows.
    pub complete: bool,
}

/// Pending rows with `seq > after`, in seq order, until `max_bytes` of messages or `max_rows`.
pub fn pending_page(
    conn: &Connection,
    after: i64,
    max_rows: usize,
    max_bytes: usize,
) -> rusqlite::Result<PendingPage> {
    let mut stmt = conn.prepare_cached(PENDING_PAGE)?;
    let mut rows = stmt.query(params![after])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    loop {
        if out.len() >= max_rows || bytes >= max_bytes {
            return Ok(PendingPage {
                rows: out,
                complete: false,
            });
        }
        let Some(row) = rows.next()? else {
            return Ok(PendingPage {
                rows: out,
                complete: true,
            });
        };
        let seq: i64 = row.get(0)?;
        let ev = pending_row(row).map_err(|e| crate::text::clip(&e.to_string(), 200).to_string());
        if let Ok(e) = &ev {
            bytes += e.weight();
        }
        out.push((seq, ev));
    }
}

/// One pending event by seq (`None` when it is gone or no longer pending).
pub fn pending_by_seq(
    conn: &Connection,
    seq: i64,
) -> rusqlite::Result<Option<Result<PendingEvent, String>>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PENDING_COLUMNS} FROM events e JOIN messages m ON m.seq = e.seq
         WHERE e.seq = ?1 AND e.published_at_ms IS NULL"
    ))?;
    let mut rows = stmt.query(params![seq])?;
    match rows.next()? {
        None => Ok(None),
        Some(row) => {
            Ok(Some(pending_row(row).map_err(|e| {
                crate::text::clip(&e.to_string(), 200).to_string()
            })))
        }
    }
}

/// Receive time (unix ms) of the oldest unpublished event.
pub fn oldest_pending_ms(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT received_at_ms FROM events WHERE published_at_ms IS NULL ORDER BY seq LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// One stored event as the CLI shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub source: String,
    pub provider: String,
    pub dedup_key: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub published_at_ms: Option<i64>,
    pub content_type: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<i64>,
    /// The body exactly as received.
    #[serde(skip)]
    pub body: Vec<u8>,
    #[serde(skip)]
    pub message: Vec<u8>,
}

const ROW_COLUMNS: &str = "e.seq, e.id, e.source, e.provider, e.dedup_key, e.event_type, \
    e.received_at_ms, e.published_at_ms, e.content_type, e.attempts, e.last_error, \
    e.next_attempt_ms, m.body, m.body_offset, m.message";
const ROW_FROM: &str = "events e JOIN messages m ON m.seq = e.seq";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    let id: Vec<u8> = r.get(1)?;
    let id = Uuid::from_slice(&id)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| hex::encode(&id));
    let message: Vec<u8> = r.get(14)?;
    let body: Option<Vec<u8>> = r.get(12)?;
    let offset: Option<i64> = r.get(13)?;
    let body = match (body, offset) {
        (Some(b), _) => b,
        // The body sits inside the message: the CloudEvent ends with `}}` after it.
        (None, Some(off)) => usize::try_from(off)
            .ok()
            .and_then(|off| message.get(off..message.len().saturating_sub(2)))
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    Ok(EventRow {
        seq: r.get(0)?,
        id,
        source: r.get(2)?,
        provider: r.get(3)?,
        dedup_key: r.get(4)?,
        event_type: r.get(5)?,
        received_at_ms: r.get(6)?,
        published_at_ms: r.get(7)?,
        content_type: r.get(8)?,
        attempts: r.get(9)?,
        last_error: r.get(10)?,
        next_attempt_ms: r.get(11)?,
        body,
        message,
    })
}

pub fn get(conn: &Connection, id: &Uuid) -> rusqlite::Result<Option<EventRow>> {
    conn.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE e.id = ?1"),
        params![id.as_bytes().as_slice()],
        event_row,
    )
    .optional()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Pending,
    Published,
}

/// Newest first.
pub fn list(
    conn: &Connection,
    source: Option<&str>,
    state: Option<StateFilter>,
    limit: usize,
) -> rusqlite::Result<Vec<EventRow>> {
    let state_sql = match state {
        None => "",
        Some(StateFilter::Pending) => "AND e.published_at_ms IS NULL",
        Some(StateFilter::Published) => "AND e.published_at_ms IS NOT NULL",
    };
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE (?1 IS NULL OR e.source = ?1) {state_sql}
         ORDER BY e.seq DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![source, limit], event_row)?;
    rows.collect()
}

/// Ids of one source's events received in [since, until).
pub fn ids_in_range(
    conn: &Connection,
    source: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<Uuid>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM events WHERE source = ?1 AND received_at_ms >= ?2 AND received_at_ms < ?3
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![source, since_ms, until_ms], |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    let mut out = Vec::new();
    for id in rows {
        if let Ok(u) = Uuid::from_slice(&id?) {
            out.push(u);
        }
    }
    Ok(out)
}
