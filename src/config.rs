//! `config.toml`: parsed strictly (unknown keys are errors) so that a typo never silently turns a
//! safety setting off. Secrets are resolved at load time, so `check-config` proves they exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::providers::ProviderConfig;

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

/// A duration written as `"10s"`, `"30d"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// A secret as written in the config. Resolved into a [`SecretString`] by [`Secret::resolve`].
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Plain(String),
    Env { env: String },
    File { file: PathBuf },
    Credential { credential: String },
}

/// A resolved secret. `Debug` never prints it, so a stray `{:?}` cannot leak it into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl Secret {
    /// Reads the secret. File and credential contents lose one trailing newline, which editors
    /// and `echo` add but no provider key contains.
    pub fn resolve(&self, base: &Path) -> Result<SecretString, String> {
        let trim = |s: String| {
            s.strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s).to_string())
                .unwrap_or(s)
        };
        match self {
            Secret::Plain(s) => Ok(SecretString(s.clone())),
            Secret::Env { env } => std::env::var(env)
                .map(SecretString)
                .map_err(|_| format!("environment variable {env} is not set")),
            Secret::File { file } => {
                let path = base.join(file);
                std::fs::read_to_string(&path)
                    .map(|s| SecretString(trim(s)))
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
            }
            Secret::Credential { credential } => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!("credential {credential:?} requested but $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")
                })?;
                let path = Path::new(&dir).join(credential);
                std::fs::read_to_string(&path)
                    .map(|s| SecretString(trim(s)))
                    .map_err(|e| format!("cannot read credential {}: {e}", path.display()))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: u64,
    pub request_timeout: Dur,
    pub trusted_proxies: Vec<IpNet>,
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
    pub url: Secret,
    pub exchange: String,
    pub queue: String,
    pub queue_type: QueueType,
    pub confirm_timeout: Dur,
    pub max_in_flight: u32,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: Secret::Plain("amqp://guest:guest@127.0.0.1:5672/%2f".into()),
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
                && s.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(invalid(format!(
                    "source name {:?} must match [a-z0-9_-]+",
                    s.name
                )));
            }
            if !seen.insert(s.name.clone()) {
                return Err(invalid(format!("source name {:?} is used twice", s.name)));
            }
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

impl Config {
    /// Resolves `[amqp] url` (it may be a secret).
    pub fn amqp_url(&self) -> Result<SecretString, ConfigError> {
        self.amqp
            .url
            .resolve(&self.base_dir)
            .map_err(|e| ConfigError::Invalid {
                path: self.path.clone(),
                message: format!("[amqp] url: {e}"),
            })
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
    fn secret_forms() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "from-file\n").unwrap();
        let base = dir.path();
        assert_eq!(
            Secret::Plain("x".into()).resolve(base).unwrap().expose(),
            "x"
        );
        let f = Secret::File { file: "s".into() };
        assert_eq!(f.resolve(base).unwrap().expose(), "from-file");
        let e = Secret::Env {
            env: "PAYHOOK_TEST_SURELY_UNSET".into(),
        };
        assert!(e.resolve(base).is_err());
        assert_eq!(
            format!("{:?}", SecretString::new("hunter2")),
            "SecretString(***)"
        );
    }

    #[test]
    fn bad_source_names() {
        for name in ["Upper", "", "a b", "x/y"] {
            let text =
                format!("[[source]]\nname = {name:?}\nprovider = \"pingpp\"\npublic_keys = []\n");
            assert!(Config::parse(Path::new("c.toml"), &text).is_err(), "{name}");
        }
    }
}
