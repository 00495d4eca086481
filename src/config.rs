//! `config.toml`: parsed strictly (unknown keys are errors) so that a typo never silently turns a
//! safety setting off. Secrets are resolved at load time, so `check-config` proves they exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::duration::{Dur, DurOrOff};
use crate::providers::ProviderConfig;
use crate::secret::{Secret, SecretList, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no config file: pass --config, set PAYHOOK_CONFIG, or create ./config.toml or /etc/payhook/config.toml"
    )]
    NotFound,
}

/// Where the config comes from, in the order of SPEC §3.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PAYHOOK_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    for candidate in ["config.toml", "/etc/payhook/config.toml"] {
        let p = PathBuf::from(candidate);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(ConfigError::NotFound)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub request_timeout: Dur,
    pub trusted_proxies: Vec<IpNet>,
    /// Signed event times older than this are refused (SPEC §6.3). `None`: not written, so
    /// derived from the retention by [`Config::max_event_age`].
    pub max_event_age: Option<DurOrOff>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout: Dur(Duration::from_secs(10)),
            trusted_proxies: vec![
                "127.0.0.1/32".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
            max_event_age: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub retention: Dur,
    pub max_backlog: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("payhook.db"),
            synchronous: Synchronous::Full,
            retention: Dur(Duration::from_secs(30 * 86400)),
            max_backlog: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// One node, or the nodes of a cluster in the order the relay tries them.
    pub url: SecretList,
    pub exchange: String,
    pub queue: String,
    pub queue_type: QueueType,
    pub confirm_timeout: Dur,
    pub max_in_flight: u32,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: Secret::Plain("amqp://guest:guest@127.0.0.1:5672/%2f".into()).into(),
            exchange: "payhook.events".into(),
            queue: "payhook.events".into(),
            queue_type: QueueType::Classic,
            confirm_timeout: Dur(Duration::from_secs(10)),
            max_in_flight: 256,
        }
    }
}

/// One `[[source]]`. Unknown keys are refused by the provider's own config struct, which sees
/// every key but `name` (serde cannot deny unknown fields through `flatten` itself).
#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    pub name: String,
    #[serde(flatten)]
    pub provider: ProviderConfig,
}

/// The file as written, before secrets and keys are loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub amqp: AmqpConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
}

/// The loaded config: paths made absolute. Secrets stay unresolved until a command needs them,
/// so `events` and `purge` work on a host where only the service can read the credentials.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub log_format: LogFormat,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub amqp: AmqpConfig,
    pub sources: Vec<SourceConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());

        let mut seen = std::collections::HashSet::new();
        for s in &raw.sources {
            let valid = !s.name.is_empty()
                && s.name.len() <= MAX_SOURCE_NAME
                && s.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(invalid(format!(
                    "source name {} must match [a-z0-9_-]{{1,{MAX_SOURCE_NAME}}}",
                    crate::text::Quoted(&s.name)
                )));
            }
            if !seen.insert(s.name.clone()) {
                return Err(invalid(format!("source name {:?} is used twice", s.name)));
            }
        }
        for (key, d) in [
            ("[server] request_timeout", raw.server.request_timeout),
            ("[amqp] confirm_timeout", raw.amqp.confirm_timeout),
            ("[store] retention", raw.store.retention),
        ] {
            if d.0.is_zero() {
                return Err(invalid(format!("{key} must be more than zero")));
            }
        }
        if let Some(DurOrOff::On(age)) = raw.server.max_event_age {
            if age.is_zero() || age >= raw.store.retention.0 {
                return Err(invalid(format!(
                    "[server] max_event_age ({}) must be more than zero and less than [store] \
                     retention ({}), or \"off\"",
                    humantime::format_duration(age),
                    raw.store.retention
                )));
            }
        }
        // AMQP short strings hold 255 bytes; the broker refuses longer names anyway.
        for (key, name) in [
            ("[amqp] exchange", &raw.amqp.exchange),
            ("[amqp] queue", &raw.amqp.queue),
        ] {
            if name.len() > 255 {
                return Err(invalid(format!("{key} is longer than 255 bytes")));
            }
        }
        if raw.amqp.url.0.is_empty() {
            return Err(invalid("[amqp] url lists no broker".into()));
        }
        if raw.amqp.max_in_flight == 0 {
            return Err(invalid("[amqp] max_in_flight must be at least 1".into()));
        }
        if raw.server.max_body_bytes == 0 {
            return Err(invalid("[server] max_body_bytes must be at least 1".into()));
        }
        let mut store = raw.store;
        store.path = base_dir.join(&store.path);
        Ok(Config {
            path: path.to_path_buf(),
            base_dir,
            log_format: raw.log_format,
            server: raw.server,
            admin: raw.admin,
            store,
            amqp: raw.amqp,
            sources: raw.sources,
        })
    }
}

/// Source names are short enough that `{source}.{event_type}` routing keys and
/// `payhook/{source}` CloudEvent sources always fit the broker's 255-byte short strings.
pub const MAX_SOURCE_NAME: usize = 64;

impl Config {
    /// Resolves `[amqp] url` (each entry may be a secret): the broker nodes in the order given.
    pub fn amqp_urls(&self) -> Result<Vec<SecretString>, ConfigError> {
        self.amqp
            .url
            .resolve(&self.base_dir)
            .map_err(|e| ConfigError::Invalid {
                path: self.path.clone(),
                message: format!("[amqp] url: {e}"),
            })
    }

    /// The replay window of SPEC §6.3: as written, else the retention less one day (half of a
    /// retention under two days). `None` when it is "off".
    pub fn max_event_age(&self) -> Option<Duration> {
        match self.server.max_event_age {
            Some(DurOrOff::Off) => None,
            Some(DurOrOff::On(d)) => Some(d),
            None => {
                let r = self.store.retention.0;
                let day = Duration::from_secs(86400);
                Some(if r < 2 * day { r / 2 } else { r - day })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = Config::parse(
            Path::new("/etc/payhook/config.toml"),
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_body = 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/etc/payhook/config.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("max_body"), "{err}");
    }

    #[test]
    fn unknown_key_in_source_is_an_error() {
        let err = Config::parse(
            Path::new("c.toml"),
            "[[source]]\nname = \"a\"\nprovider = \"pingpp\"\npublic_keys = []\npublic_kyes = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("public_kyes"), "{err}");
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse(Path::new("/srv/ph/config.toml"), "").unwrap();
        assert_eq!(c.store.path, PathBuf::from("/srv/ph/payhook.db"));
        assert_eq!(c.server.max_body_bytes, 1048576);
        assert_eq!(c.store.retention.0, Duration::from_secs(30 * 86400));
        assert_eq!(c.amqp.max_in_flight, 256);
    }

    #[test]
    fn bad_source_names() {
        let long = "a".repeat(MAX_SOURCE_NAME + 1);
        for name in ["Upper", "", "a b", "x/y", long.as_str()] {
            let text =
                format!("[[source]]\nname = {name:?}\nprovider = \"pingpp\"\npublic_keys = []\n");
            assert!(Config::parse(Path::new("c.toml"), &text).is_err(), "{name}");
        }
    }

    #[test]
    fn zero_durations_and_event_age() {
        for (table, key) in [
            ("server", "request_timeout"),
            ("amqp", "confirm_timeout"),
            ("store", "retention"),
        ] {
            let text = format!("[{table}]\n{key} = \"0s\"\n");
            let err = Config::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let c = Config::parse(Path::new("c.toml"), "").unwrap();
        assert_eq!(c.max_event_age(), Some(Duration::from_secs(29 * 86400)));
        let c = Config::parse(Path::new("c.toml"), "[store]\nretention = \"1d\"").unwrap();
        assert_eq!(c.max_event_age(), Some(Duration::from_secs(43200)));
        let c = Config::parse(Path::new("c.toml"), "[server]\nmax_event_age = \"off\"").unwrap();
        assert_eq!(c.max_event_age(), None);
        assert!(Config::parse(Path::new("c.toml"), "[server]\nmax_event_age = \"30d\"").is_err());
        assert!(Config::parse(Path::new("c.toml"), "[server]\nmax_event_age = \"0s\"").is_err());
    }

    #[test]
    fn amqp_url_list() {
        let c = Config::parse(
            Path::new("c.toml"),
            "[amqp]\nurl = [\"amqp://a\", { env = \"PAYHOOK_TEST_URL_B\" }]\n",
        )
        .unwrap();
        assert_eq!(c.amqp.url.0.len(), 2);
        assert!(Config::parse(Path::new("c.toml"), "[amqp]\nurl = []\n").is_err());
    }
}
