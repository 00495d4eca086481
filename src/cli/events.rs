//! `events`, `replay` and `purge`: they open the SQLite file themselves (WAL and the busy timeout
//! let them run beside the daemon) and keep each write to one short transaction.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use rusqlite::{Connection, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ConfigArg, Failure, load_config};
use crate::store::queries::{self, StateFilter};
use crate::store::schema;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// List stored events, newest first
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_parser = ["pending", "published"])]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Show one stored event
    Show {
        id: String,
        /// Print the body exactly as received
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Event ids to publish again
    ids: Vec<String>,
    #[arg(long, conflicts_with = "ids")]
    source: Option<String>,
    /// RFC 3339 time, or a duration meaning that long ago ("2h")
    #[arg(long, requires = "source")]
    since: Option<String>,
    #[arg(long, requires = "since")]
    until: Option<String>,
}

#[derive(Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Default: the configured retention
    #[arg(long)]
    older_than: Option<String>,
}

fn open(config: Option<&Path>) -> Result<Connection, Failure> {
    let config = load_config(config)?;
    let path = &config.store.path;
    if !path.exists() {
        return Err(Failure::runtime(format!(
            "no store at {} (has the daemon run?)",
            path.display()
        )));
    }
    let mut conn = schema::open(path, config.store.synchronous).map_err(Failure::runtime)?;
    schema::migrate(&mut conn).map_err(Failure::runtime)?;
    Ok(conn)
}

/// The fields `events list --json` and `events show` share.
fn row_json(r: &queries::EventRow) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "source": r.source, "provider": r.provider,
        "event_type": r.event_type, "dedup_key": r.dedup_key,
        "state": if r.published_at_ms.is_some() { "published" } else { "pending" },
        "received_at": fmt_ms(r.received_at_ms),
        "published_at": r.published_at_ms.map(fmt_ms),
        "attempts": r.attempts,
        "last_error": r.last_error,
        "next_attempt_at": if r.published_at_ms.is_none() { r.next_attempt_ms.map(fmt_ms) } else { None },
    })
}

fn fmt_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(crate::event::rfc3339_millis)
        .unwrap_or_else(|_| ms.to_string())
}

pub fn run(config: Option<&Path>, cmd: EventsCommand) -> Result<(), Failure> {
    let conn = open(config)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        EventsCommand::List {
            source,
            state,
            limit,
            json,
        } => {
            let state = state.map(|s| {
                if s == "pending" {
                    StateFilter::Pending
                } else {
                    StateFilter::Published
                }
            });
            let rows =
                queries::list(&conn, source.as_deref(), state, limit).map_err(Failure::runtime)?;
            if json {
                for r in &rows {
                    let _ = writeln!(out, "{}", row_json(r));
                }
            } else {
                let _ = writeln!(
                    out,
                    "{:<36}  {:<12}  {:<28}  {:<9}  {:<24}  {:>8}  DEDUP KEY",
                    "ID", "SOURCE", "TYPE", "STATE", "RECEIVED", "ATTEMPTS"
                );
                for r in &rows {
                    let _ = writeln!(
                        out,
                        "{:<36}  {:<12}  {:<28}  {:<9}  {:<24}  {:>8}  {}",
                        r.id,
                        r.source,
                        crate::text::clip(&r.event_type, 60),
                        if r.published_at_ms.is_some() {
                            "published"
                        } else {
                            "pending"
                        },
                        fmt_ms(r.received_at_ms),
                        r.attempts,
                        crate::text::clip(&r.dedup_key, 200)
                    );
                }
            }
        }
        EventsCommand::Show { id, raw } => {
            let uuid = uuid::Uuid::parse_str(id.trim())
                .map_err(|_| Failure::runtime(format!("no event {id:?} (event ids are UUIDs)")))?;
            let row = queries::get(&conn, &uuid)
                .map_err(Failure::runtime)?
                .ok_or_else(|| Failure::runtime(format!("no event {id}")))?;
            if raw {
                let _ = out.write_all(&row.body);
            } else {
                let message: serde_json::Value =
                    serde_json::from_slice(&row.message).unwrap_or_default();
                let mut v = row_json(&row);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("content_type".into(), row.content_type.clone().into());
                    obj.insert("body_bytes".into(), row.body.len().into());
                    obj.insert("cloudevent".into(), message);
                }
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// RFC 3339, or a duration meaning that long before now.
fn parse_time(s: &str) -> Result<i64, Failure> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX));
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| Failure::usage(format!("{s:?} is neither an RFC 3339 time nor a duration")))?;
    Ok(crate::clock::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

pub fn replay(a: ReplayArgs) -> Result<(), Failure> {
    let conn = open(a.config.config.as_deref())?;
    let ids: Vec<uuid::Uuid> = match (&a.source, &a.since) {
        (Some(source), Some(since)) => {
            let since = parse_time(since)?;
            let until = a
                .until
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(i64::MAX);
            queries::ids_in_range(&conn, source, since, until).map_err(Failure::runtime)?
        }
        (None, None) if !a.ids.is_empty() => a
            .ids
            .iter()
            .map(|s| {
                uuid::Uuid::parse_str(s.trim())
                    .map_err(|_| Failure::runtime(format!("no event {s:?} (event ids are UUIDs)")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(Failure::usage(
                "give event ids, or --source NAME --since TIME [--until TIME]",
            ));
        }
    };
    // The relay publishes whatever is pending, in receive order, with the stored message (same
    // id): consumers see exactly the message they saw the first time. Short transactions, so a
    // running daemon's writer is never held for long; the daemon notices the change within a
    // second and reads the store again.
    let mut conn = conn;
    let mut n = 0;
    let mut missing = Vec::new();
    for chunk in ids.chunks(500) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Failure::runtime)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE events SET published_at_ms = NULL, attempts = 0, last_error = NULL,
                         next_attempt_ms = NULL
                     WHERE id = ?1",
                )
                .map_err(Failure::runtime)?;
            for id in chunk {
                let changed = stmt
                    .execute(params![id.as_bytes().as_slice()])
                    .map_err(Failure::runtime)?;
                if changed == 0 {
                    missing.push(id.to_string());
                }
                n += changed;
            }
        }
        tx.commit().map_err(Failure::runtime)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("{n} event(s) queued for publishing again");
    if !missing.is_empty() {
        return Err(Failure::runtime(format!(
            "not found: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

pub fn purge(a: PurgeArgs) -> Result<(), Failure> {
    let config = load_config(a.config.config.as_deref())?;
    let older = match &a.older_than {
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| Failure::usage(format!("--older-than {s:?}: {e}")))?,
        None => config.store.retention.0,
    };
    let mut conn = open(a.config.config.as_deref())?;
    let cutoff =
        crate::clock::now_ms().saturating_sub(i64::try_from(older.as_millis()).unwrap_or(i64::MAX));
    let total =
        crate::store::maintenance::purge_all(&mut conn, cutoff).map_err(Failure::runtime)?;
    println!(
        "purged {total} published event(s) older than {}",
        humantime::format_duration(older)
    );
    Ok(())
}
