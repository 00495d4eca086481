//! The SQLite schema, versioned with `PRAGMA user_version`. A new version appends a step to
//! [`MIGRATIONS`]; existing steps never change, so any older file upgrades in place.

use rusqlite::Connection;

use crate::config::Synchronous;

const MIGRATIONS: &[&str] = &[
    // 1: events in receive order (`seq`), one row per (source, dedup_key).
    "CREATE TABLE events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT    NOT NULL UNIQUE,
        source          TEXT    NOT NULL,
        provider        TEXT    NOT NULL,
        dedup_key       TEXT    NOT NULL,
        event_type      TEXT    NOT NULL,
        routing_key     TEXT    NOT NULL,
        subject         TEXT,
        time_unix       INTEGER NOT NULL,
        received_at_ms  INTEGER NOT NULL,
        published_at_ms INTEGER,
        content_type    TEXT,
        body            BLOB    NOT NULL,
        message         BLOB    NOT NULL,
        UNIQUE (source, dedup_key)
    );
    CREATE INDEX events_pending ON events (seq) WHERE published_at_ms IS NULL;
    CREATE INDEX events_published ON events (published_at_ms) WHERE published_at_ms IS NOT NULL;
    CREATE INDEX events_source_received ON events (source, received_at_ms);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

/// Opens a connection with the pragmas every user of the file needs. WAL lets the CLI and the
/// relay read while the writer commits; the busy timeout keeps the CLI's writes from failing
/// while the daemon holds the write lock for one short transaction.
pub fn open(path: &std::path::Path, sync: Synchronous) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    Ok(conn)
}

/// Brings the file to the newest schema. Refuses a file written by a newer payhook.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {current} is newer than this payhook ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn version() -> usize {
    MIGRATIONS.len()
}
