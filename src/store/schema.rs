//! The SQLite schema, versioned with `PRAGMA user_version`. A new version appends a step to
//! [`MIGRATIONS`]; existing steps never change, so any older file upgrades in place.

use std::time::Duration;

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
    // 2: the event's row is small and its bytes live in `messages` (same seq), so recording a
    // confirm or a failed attempt rewrites a row of ~150 bytes, not the whole message (a page of
    // WAL for every two events before); one unique index instead of two (the id is the UUIDv5 of
    // source and dedup key, so it is unique exactly when they are), the id as 16 bytes; the body
    // kept once (NULL when it sits inside the message at `body_offset`); the signed-content hash
    // for conflicts; publish attempts and the last error of events on their own backoff;
    // retention through an index that holds only published rows by receive time, so a purge
    // finds exactly what it deletes; no index by source and time (only `replay --source
    // --since` used it, a rare command that may scan). A rebuild: it runs once, before the
    // daemon reports ready.
    "CREATE TABLE events2 (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              BLOB    NOT NULL UNIQUE,
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
        content_hash    BLOB,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        next_attempt_ms INTEGER
    );
    CREATE TABLE messages (
        seq             INTEGER PRIMARY KEY,
        message         BLOB    NOT NULL,
        body            BLOB,
        body_offset     INTEGER
    );
    INSERT INTO events2 (seq, id, source, provider, dedup_key, event_type, routing_key, subject,
                         time_unix, received_at_ms, published_at_ms, content_type)
        SELECT seq, unhex(replace(id, '-', '')), source, provider, dedup_key, event_type,
               routing_key, subject, time_unix, received_at_ms, published_at_ms, content_type
        FROM events;
    INSERT INTO messages (seq, message, body) SELECT seq, message, body FROM events;
    DROP TABLE events;
    ALTER TABLE events2 RENAME TO events;
    CREATE INDEX events_pending ON events (seq) WHERE published_at_ms IS NULL;
    CREATE INDEX events_retention ON events (received_at_ms) WHERE published_at_ms IS NOT NULL;",
];

/// The most a WAL file keeps on disk after a checkpoint resets it.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Opens a connection with the pragmas every user of the file needs. WAL lets the CLI and the
/// relay read while the writer commits. Refuses a file system that cannot do WAL (some network
/// file systems): without it readers would block intake.
pub fn open(path: &std::path::Path, sync: Synchronous) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Waits for another process's short write (the CLI's chunks) in 1 ms steps instead of
    // SQLite's default back-off, which sleeps up to 100 ms at a time.
    conn.busy_handler(Some(busy_wait))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "{}: the file system cannot do SQLite's WAL mode (journal_mode is {mode:?}); \
             put the store on a local file system",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", sync_pragma(sync))?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(conn)
}

pub fn sync_pragma(sync: Synchronous) -> &'static str {
    match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

/// How long one connection waits for another's write lock before giving up (SQLITE_BUSY).
const BUSY_LIMIT: Duration = Duration::from_secs(10);

fn busy_wait(attempt: i32) -> bool {
    let waited = Duration::from_millis(u64::try_from(attempt).unwrap_or(0));
    if waited >= BUSY_LIMIT {
        return false;
    }
    std::thread::sleep(Duration::from_millis(1));
    true
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
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_files_upgrade_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = open(&path, Synchronous::Full).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO events (id, source, provider, dedup_key, event_type, routing_key,
                     time_unix, received_at_ms, published_at_ms, body, message)
                 VALUES ('6ba7b811-9dad-11d1-80b4-00c04fd430c8', 's', 'pingpp', 'k', 't', 's.t',
                     1, 2, NULL, x'7b7d', x'7b7d')",
                [],
            )
            .unwrap();
        }
        let mut conn = open(&path, Synchronous::Full).unwrap();
        migrate(&mut conn).unwrap();
        let (id, body): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT id, body FROM events JOIN messages USING (seq)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            uuid::Uuid::from_slice(&id).unwrap().to_string(),
            "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(body, b"{}");
        let v: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, version());
    }

    #[test]
    fn retention_and_relay_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("x.db"), Synchronous::Full).unwrap();
        migrate(&mut conn).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            let rows = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            rows.join("\n")
        };
        let p = plan(super::super::maintenance::RETENTION_SELECT);
        assert!(p.contains("events_retention"), "{p}");
        assert!(!p.contains("SCAN"), "{p}");
        let p = plan(super::super::queries::PENDING_PAGE);
        assert!(p.contains("events_pending"), "{p}");
    }
}
