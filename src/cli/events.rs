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
                    "{:<36}  {:<12}  {:<28}  {:<9}  {:<24}  DEDUP KEY",
                    "ID", "SOURCE", "TYPE", "STATE", "RECEIVED"
                );
                for r in &rows {
                    let _ = writeln!(
                        out,
                        "{:<36}  {:<12}  {:<28}  {:<9}  {:<24}  {}",
                        r.id,
                        r.source,
                        r.event_type,
                        if r.published_at_ms.is_some() {
                            "published"
                        } else {
                            "pending"
                        },
                        fmt_ms(r.received_at_ms),
                        r.dedup_key
                    );
                }
            }
        }
        EventsCommand::Show { id, raw } => {
            let row = queries::get(&conn, &id)
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
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| Failure::usage(format!("{s:?} is neither an RFC 3339 time nor a duration")))?;
    Ok(crate::store::now_ms() - d.as_millis() as i64)
}

pub fn replay(a: ReplayArgs) -> Result<(), Failure> {
    let conn = open(a.config.config.as_deref())?;
    let ids = match (&a.source, &a.since) {
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
        (None, None) if !a.ids.is_empty() => a.ids.clone(),
        _ => {
            return Err(Failure::usage(
                "give event ids, or --source NAME --since TIME [--until TIME]",
            ));
        }
    };
    // The relay publishes whatever is pending, in receive order, with the stored message (same
    // id): consumers see exactly the message they saw the first time.
    let mut n = 0;
    let mut missing = Vec::new();
    for id in &ids {
        let changed = conn
            .execute(
                "UPDATE events SET published_at_ms = NULL WHERE id = ?1",
                params![id],
            )
            .map_err(Failure::runtime)?;
        if changed == 0 {
            missing.push(id.clone());
        }
        n += changed;
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
    let conn = open(a.config.config.as_deref())?;
    let cutoff = crate::store::now_ms() - older.as_millis() as i64;
    let mut total = 0;
    loop {
        let n = crate::store::purge_published(&conn, cutoff, 5_000).map_err(Failure::runtime)?;
        total += n;
        if n == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "purged {total} published event(s) older than {}",
        humantime::format_duration(older)
    );
    Ok(())
}
