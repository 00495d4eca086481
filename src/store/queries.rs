//! Read queries, shared by the relay, the admin endpoints and the CLI.

use rusqlite::{Connection, OptionalExtension, Row, params};

/// What the relay needs to publish one stored event.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub id: String,
    pub source: String,
    pub provider: String,
    pub event_type: String,
    pub routing_key: String,
    pub subject: Option<String>,
    pub time_unix: i64,
    pub message: Vec<u8>,
}

pub fn count_pending(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM events WHERE published_at_ms IS NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// Unpublished events in receive order.
pub fn pending(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<PendingEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, source, provider, event_type, routing_key, subject, time_unix, message
         FROM events WHERE published_at_ms IS NULL ORDER BY seq LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok(PendingEvent {
            seq: r.get(0)?,
            id: r.get(1)?,
            source: r.get(2)?,
            provider: r.get(3)?,
            event_type: r.get(4)?,
            routing_key: r.get(5)?,
            subject: r.get(6)?,
            time_unix: r.get(7)?,
            message: r.get(8)?,
        })
    })?;
    rows.collect()
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
    #[serde(skip)]
    pub body: Vec<u8>,
    #[serde(skip)]
    pub message: Vec<u8>,
}

const ROW_COLUMNS: &str = "seq, id, source, provider, dedup_key, event_type, received_at_ms, \
                           published_at_ms, content_type, body, message";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        source: r.get(2)?,
        provider: r.get(3)?,
        dedup_key: r.get(4)?,
        event_type: r.get(5)?,
        received_at_ms: r.get(6)?,
        published_at_ms: r.get(7)?,
        content_type: r.get(8)?,
        body: r.get(9)?,
        message: r.get(10)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<EventRow>> {
    conn.query_row(
        &format!("SELECT {ROW_COLUMNS} FROM events WHERE id = ?1"),
        params![id],
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
        Some(StateFilter::Pending) => "AND published_at_ms IS NULL",
        Some(StateFilter::Published) => "AND published_at_ms IS NOT NULL",
    };
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM events WHERE (?1 IS NULL OR source = ?1) {state_sql}
         ORDER BY seq DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![source, limit as i64], event_row)?;
    rows.collect()
}

/// Ids of one source's events received in [since, until).
pub fn ids_in_range(
    conn: &Connection,
    source: &str,
    since_ms: i64,
    until_ms: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM events WHERE source = ?1 AND received_at_ms >= ?2 AND received_at_ms < ?3
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![source, since_ms, until_ms], |r| r.get(0))?;
    rows.collect()
}
