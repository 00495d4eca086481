//! The command line of SPEC §4. Exit codes: 0 success, 1 runtime failure, 2 usage, 78 config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

mod events;
pub mod simulate;

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "payhook",
    version,
    about = "Payment webhooks: verify, store once, relay to RabbitMQ"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// Config file (else $PAYHOOK_CONFIG, ./config.toml, /etc/payhook/config.toml)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon
    Serve(ConfigArg),
    /// Load the config with its keys and secrets, and print a summary
    CheckConfig(ConfigArg),
    /// Inspect stored events
    Events {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Publish stored events again (same message id)
    Replay(events::ReplayArgs),
    /// Delete published events older than a duration (pending ones are never deleted)
    Purge(events::PurgeArgs),
    /// Send correctly signed sample webhooks to a running daemon and print a summary
    Simulate(simulate::SimulateArgs),
}

/// An error with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn runtime(m: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_RUNTIME,
            message: m.to_string(),
        }
    }
    pub fn config(m: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_CONFIG,
            message: m.to_string(),
        }
    }
    pub fn usage(m: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: m.to_string(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::config(e)
    }
}

pub fn load_config(explicit: Option<&Path>) -> Result<Config, Failure> {
    let path = crate::config::locate(explicit)?;
    Ok(Config::load(&path)?)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Serve(c) => serve(c.config.as_deref()),
        Command::CheckConfig(c) => check_config(c.config.as_deref()),
        Command::Events { config, command } => events::run(config.config.as_deref(), command),
        Command::Replay(a) => events::replay(a),
        Command::Purge(a) => events::purge(a),
        Command::Simulate(a) => simulate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("payhook: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)
}

fn serve(explicit: Option<&Path>) -> Result<(), Failure> {
    let config = load_config(explicit)?;
    // Held until serve returns, after the runtime: the queued lines are flushed at exit.
    let _log = crate::logging::init(config.log_format);
    config.amqp_urls()?;
    let sources = crate::daemon::build_sources(&config).map_err(Failure::config)?;
    if sources.is_empty() {
        tracing::warn!("no [[source]] configured: every hook path answers 404");
    }
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let listeners = crate::daemon::Listeners::bind(&config)
            .await
            .map_err(|e| Failure::runtime(format!("{e:#}")))?;
        crate::daemon::run(
            config,
            sources,
            listeners,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(|e| Failure::runtime(format!("{e:#}")))
    });
    // `run` bounded its own stop; a blocking task still stuck (a wedged disk) must not keep the
    // process alive past it.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

fn check_config(explicit: Option<&Path>) -> Result<(), Failure> {
    let config = load_config(explicit)?;
    let amqp_urls = config.amqp_urls()?;
    let sources = crate::daemon::build_sources(&config).map_err(Failure::config)?;
    println!("config:   {}", config.path.display());
    println!("public:   http://{}/hooks/{{source}}", config.server.listen);
    println!("admin:    http://{}", config.admin.listen);
    println!(
        "store:    {} (synchronous={:?}, retention={}, max_backlog={})",
        config.store.path.display(),
        config.store.synchronous,
        humantime::format_duration(config.store.retention.0),
        config.store.max_backlog
    );
    println!(
        "amqp:     {} exchange={:?} queue={:?} ({:?})",
        amqp_urls
            .iter()
            .map(|u| redact_url(u.expose()))
            .collect::<Vec<_>>()
            .join(", "),
        config.amqp.exchange,
        config.amqp.queue,
        config.amqp.queue_type
    );
    let mut names: Vec<_> = sources.values().collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    println!("sources:  {}", names.len());
    for s in names {
        println!("  /hooks/{:<20} provider={}", s.name, s.verifier.provider());
    }
    println!("ok");
    Ok(())
}

/// `amqp://user:pass@host` → `amqp://user:***@host`, for printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_password() {
        assert_eq!(
            super::redact_url("amqp://u:p@h:5672/%2f"),
            "amqp://u:***@h:5672/%2f"
        );
        assert_eq!(super::redact_url("amqp://h"), "amqp://h");
    }
}
